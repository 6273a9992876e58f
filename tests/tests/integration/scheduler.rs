//! The scheduler service against a real nats-server: exactly one task per (policy, agent,
//! fire time) while two schedulers run, and the missed-run policy after downtime.
//!
//! The clock is faked (a manual clock shared by the schedulers): cron fires minutes and
//! hours apart. Everything else is real.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fleet_control::clock::ManualClock;
use fleet_control::serve::Service;
use fleet_events::event::{Event, PolicyEvent, SkipReason, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{MissedRun, Overlap, PolicySpec};
use fleet_events::samples;
use fleet_events::schedule::Schedule;
use fleet_events::store::EventStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{append_at, eventually, fleet, manual, spawn_service, stop, task_log};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 30)
        .single()
        .expect("valid")
}

fn spec(cron: &str, missed: MissedRun) -> PolicySpec {
    PolicySpec {
        schedule: Schedule::Cron {
            expr: cron.into(),
            timezone: "UTC".into(),
        },
        overlap: Overlap::Allow,
        missed,
        jitter_secs: 0,
        ..samples::policy_spec()
    }
}

/// Creates a policy assigned to `agents`, at `at`.
async fn policy(
    store: &EventStore,
    at: DateTime<Utc>,
    spec: PolicySpec,
    agents: &[AgentId],
) -> PolicyId {
    let policy = PolicyId::generate();
    let event = PolicyEvent::Created {
        spec: Box::new(spec),
    };
    append_at(store, Event::Policy { policy, event }, at).await;
    for agent in agents {
        let event = PolicyEvent::AssignedToAgent { agent: *agent };
        append_at(store, Event::Policy { policy, event }, at).await;
    }
    policy
}

/// A scheduler on `clock`.
fn spawn_scheduler(
    store: &EventStore,
    clock: &ManualClock,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    spawn_service(store, Service::Scheduler, manual(clock), shutdown)
}

/// Every task event that creates a task, in log order.
async fn task_creations(store: &EventStore) -> Vec<(TaskId, TaskEvent)> {
    let events = task_log(store).await;
    events
        .into_iter()
        .filter(|(_, e)| matches!(e, TaskEvent::Scheduled { .. } | TaskEvent::Skipped { .. }))
        .collect()
}

/// Waits until `n` tasks exist, then a little longer to catch any extra one.
async fn wait_for_tasks(store: &EventStore, n: usize) -> Vec<(TaskId, TaskEvent)> {
    let what = format!("{n} tasks");
    eventually(&what, Duration::from_secs(15), || async {
        let found = task_creations(store).await;
        if found.len() >= n {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(found.len())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    task_creations(store).await
}

fn fire_of(event: &TaskEvent) -> (AgentId, DateTime<Utc>) {
    match event {
        TaskEvent::Scheduled { agent, fire_at, .. } | TaskEvent::Skipped { agent, fire_at, .. } => {
            (*agent, *fire_at)
        }
        other => panic!("not a creation: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_make_one_task_per_agent_per_fire() {
    let f = fleet().await;
    let clock = ManualClock::new(start());
    let agents = [
        AgentId::generate(),
        AgentId::generate(),
        AgentId::generate(),
    ];
    // RunOnce: a scheduler that catches up only after the clock moved decides the same
    // task for the first fire (as a missed run) as one that was already waiting.
    let run_once = MissedRun::RunOnce {
        starting_deadline_secs: 3600,
    };
    policy(&f.store, start(), spec("* * * * *", run_once), &agents).await;
    let shutdown = CancellationToken::new();
    let schedulers = [
        spawn_scheduler(&f.store, &clock, &shutdown),
        spawn_scheduler(&f.store, &clock, &shutdown),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    for minute in 1..=3 {
        clock.advance(TimeDelta::seconds(60));
        wait_for_tasks(&f.store, 3 * minute).await;
    }
    let tasks = wait_for_tasks(&f.store, 9).await;
    stop(&shutdown, schedulers).await;

    assert_eq!(
        tasks.len(),
        9,
        "exactly one task per agent per fire: {tasks:#?}"
    );
    let fires: BTreeSet<(AgentId, DateTime<Utc>)> = tasks.iter().map(|(_, e)| fire_of(e)).collect();
    assert_eq!(fires.len(), 9);
    let minutes: BTreeSet<DateTime<Utc>> = fires.iter().map(|(_, at)| *at).collect();
    let want: BTreeSet<DateTime<Utc>> = (1..=3)
        .map(|m| start() - TimeDelta::seconds(30) + TimeDelta::minutes(m))
        .collect();
    assert_eq!(minutes, want);
    assert!(
        tasks
            .iter()
            .all(|(_, e)| matches!(e, TaskEvent::Scheduled { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_the_missed_run_policy_is_followed() {
    let f = fleet().await;
    let clock = ManualClock::new(start());
    let (a, b, c) = (
        AgentId::generate(),
        AgentId::generate(),
        AgentId::generate(),
    );
    let hourly = "0 * * * *";
    let run_once = |secs| MissedRun::RunOnce {
        starting_deadline_secs: secs,
    };
    let missed = [
        (run_once(3600), a),
        (MissedRun::Skip, b),
        (run_once(600), c),
    ];
    for (missed, agent) in missed {
        policy(&f.store, start(), spec(hourly, missed), &[agent]).await;
    }

    let shutdown = CancellationToken::new();
    let scheduler = spawn_scheduler(&f.store, &clock, &shutdown);
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.advance(TimeDelta::hours(1));
    assert_eq!(
        wait_for_tasks(&f.store, 3).await.len(),
        3,
        "one run each at 04:00"
    );
    stop(&shutdown, [scheduler]).await;

    // Down from 04:00:30 to 07:20:30: the 05:00, 06:00 and 07:00 fires are missed.
    clock.advance(TimeDelta::minutes(200));
    let shutdown = CancellationToken::new();
    let scheduler = spawn_scheduler(&f.store, &clock, &shutdown);
    let tasks = wait_for_tasks(&f.store, 6).await;
    stop(&shutdown, [scheduler]).await;

    let after: Vec<&(TaskId, TaskEvent)> = tasks[3..].iter().collect();
    assert_eq!(
        after.len(),
        3,
        "one decision per pair, never a burst: {after:#?}"
    );
    let seven = Utc
        .with_ymd_and_hms(2026, 11, 22, 7, 0, 0)
        .single()
        .expect("valid");
    for (_, event) in &after {
        let (agent, fire_at) = fire_of(event);
        assert_eq!(fire_at, seven, "only the latest missed fire counts");
        match (agent, event) {
            (x, TaskEvent::Scheduled { .. }) if x == a => {}
            (
                x,
                TaskEvent::Skipped {
                    reason: SkipReason::Missed,
                    ..
                },
            ) if x == b || x == c => {}
            other => panic!("unexpected decision {other:?}"),
        }
    }
}
