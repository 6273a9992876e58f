//! Services' snapshots against a real nats-server: a scheduler stopped writes its
//! snapshot, and started again reads only the log's tail after it and decides on; a
//! damaged snapshot, or one of another event stream, is not used (a full replay instead).
//!
//! The clock is faked (a manual clock): cron fires hours apart. Everything else is real.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fleet_control::clock::ManualClock;
use fleet_control::scheduler::Scheduler;
use fleet_control::serve::Service;
use fleet_control::snapshot::{Snapshots, StreamMark};
use fleet_events::event::{Event, PolicyEvent, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId};
use fleet_events::policy::{MissedRun, Overlap, PolicySpec};
use fleet_events::samples;
use fleet_events::schedule::Schedule;
use fleet_events::store::EventStore;
use tokio_util::sync::CancellationToken;

use crate::support::{append_at, eventually, fleet, manual, spawn_service, stop, task_log};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 30)
        .single()
        .expect("valid")
}

/// An hourly policy assigned to `agent`, created at `at`.
async fn hourly_on(store: &EventStore, agent: AgentId, at: DateTime<Utc>) -> PolicyId {
    let spec = PolicySpec {
        schedule: Schedule::Cron {
            expr: "0 * * * *".into(),
            timezone: "UTC".into(),
        },
        overlap: Overlap::Allow,
        // The scheduler may start after the clock moved: a missed fire is run once.
        missed: MissedRun::RunOnce {
            starting_deadline_secs: 3600,
        },
        jitter_secs: 0,
        ..samples::policy_spec()
    };
    let policy = PolicyId::generate();
    let created = PolicyEvent::Created {
        spec: Box::new(spec),
    };
    append_at(
        store,
        Event::Policy {
            policy,
            event: created,
        },
        at,
    )
    .await;
    let assigned = PolicyEvent::AssignedToAgent { agent };
    append_at(
        store,
        Event::Policy {
            policy,
            event: assigned,
        },
        at,
    )
    .await;
    policy
}

/// Waits until `n` tasks are scheduled; returns their (policy, fire time)s.
async fn scheduled(store: &EventStore, n: usize) -> Vec<(PolicyId, DateTime<Utc>)> {
    eventually(&format!("{n} tasks"), Duration::from_secs(20), || async {
        let found: Vec<_> = task_log(store)
            .await
            .into_iter()
            .filter_map(|(_, e)| match e {
                TaskEvent::Scheduled {
                    policy, fire_at, ..
                } => Some((policy, fire_at)),
                _ => None,
            })
            .collect();
        match found.len() >= n {
            true => ControlFlow::Break(found),
            false => ControlFlow::Continue(found),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_restarted_from_its_snapshot_reads_only_the_tail_and_decides_on() {
    let f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = Snapshots::in_dir(dir.path());
    let clock = ManualClock::new(start());
    let first = hourly_on(&f.store, AgentId::generate(), start()).await;
    let mut config = manual(&clock);
    config.snapshots = snapshots.clone();

    let shutdown = CancellationToken::new();
    let scheduler = spawn_service(&f.store, Service::Scheduler, config.clone(), &shutdown);
    clock.advance(TimeDelta::minutes(60));
    assert_eq!(scheduled(&f.store, 1).await.len(), 1);
    stop(&shutdown, [scheduler]).await;
    // The clean stop wrote a snapshot covering the whole log as it was.
    let covered = f
        .store
        .last_sequence(&fleet_events::subject::all_events())
        .await
        .expect("the log's end");
    let read = snapshots.start(&f.store, Scheduler::new).await;
    assert_eq!(
        read.covers, covered,
        "the snapshot covers the log up to its stop"
    );

    // While it is stopped, another policy; started again, it reads only the tail.
    let second = hourly_on(
        &f.store,
        AgentId::generate(),
        start() + TimeDelta::minutes(61),
    )
    .await;
    let shutdown = CancellationToken::new();
    let scheduler = spawn_service(&f.store, Service::Scheduler, config, &shutdown);
    clock.advance(TimeDelta::minutes(60));
    let fires = scheduled(&f.store, 3).await;
    let hour = |h: u32| {
        Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0)
            .single()
            .expect("valid")
    };
    let mut expected = vec![(first, hour(4)), (first, hour(5)), (second, hour(5))];
    let mut got = fires.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "each fire once: none owed twice, none lost");
    stop(&shutdown, [scheduler]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_or_one_of_another_log_is_not_used() {
    let f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = Snapshots::in_dir(dir.path());
    let clock = ManualClock::new(start());
    hourly_on(&f.store, AgentId::generate(), start()).await;
    let mut config = manual(&clock);
    config.snapshots = snapshots.clone();
    let shutdown = CancellationToken::new();
    let scheduler = spawn_service(&f.store, Service::Scheduler, config, &shutdown);
    clock.advance(TimeDelta::minutes(60));
    scheduled(&f.store, 1).await;
    stop(&shutdown, [scheduler]).await;
    let path = snapshots.path("scheduler").expect("a path");
    let good = std::fs::read(&path).expect("the snapshot was written");
    assert!(snapshots.start(&f.store, Scheduler::new).await.covers > 0);

    // One byte flipped: the checksum no longer matches.
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&path, &flipped).expect("write");
    assert_eq!(snapshots.start(&f.store, Scheduler::new).await.covers, 0);
    // Cut short, as a full disk would leave it.
    std::fs::write(&path, &good[..good.len() / 3]).expect("write");
    assert_eq!(snapshots.start(&f.store, Scheduler::new).await.covers, 0);

    // The intact snapshot against another server's log (a stream created anew).
    std::fs::write(&path, &good).expect("write");
    let other = fleet().await;
    let mark = StreamMark::read(&other.store)
        .await
        .expect("the other stream");
    let header = fleet_control::snapshot::decode::<Scheduler>(&good, Scheduler::new())
        .expect("the snapshot itself is sound")
        .0;
    assert!(mark.check(&header).is_err(), "another stream is told apart");
    assert_eq!(
        snapshots.start(&other.store, Scheduler::new).await.covers,
        0
    );
    assert!(snapshots.start(&f.store, Scheduler::new).await.covers > 0);
}
