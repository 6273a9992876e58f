//! The retry-budget enforcer against a real nats-server: retries inside the budget with
//! bounded, growing ceilings, permanent errors stop at once, exhaustion is recorded, a
//! restart during a backoff still fires the retry once, and five network failures on one
//! repository open its circuit.
//!
//! The agent side is scripted here by appending task events directly; the clock is faked
//! (a manual clock), since backoffs are seconds to an hour long.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fleet_control::clock::ManualClock;
use fleet_control::serve::Service;
use fleet_events::event::{ErrorClass, Event, ExhaustedReason, RepoEvent, TaskError, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, RetryBudget};
use fleet_events::samples;
use fleet_events::store::EventStore;
use fleet_events::subject;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{
    Fleet, append_at, eventually, fleet, log, manual, spawn_service, stop, task_events,
};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0)
        .single()
        .expect("valid")
}

/// A scripted task: appends the events an agent's reports would lead to.
struct Script<'a> {
    store: &'a EventStore,
    task: TaskId,
    agent: AgentId,
}

impl<'a> Script<'a> {
    async fn scheduled(
        store: &'a EventStore,
        spec: PolicySpec,
        agent: AgentId,
        at: DateTime<Utc>,
    ) -> Script<'a> {
        let policy = PolicyId::generate();
        let task = TaskId::for_fire(policy, agent, at);
        let script = Script { store, task, agent };
        script
            .append(
                TaskEvent::Scheduled {
                    policy,
                    agent,
                    fire_at: at,
                    run_at: at,
                    spec: Box::new(spec),
                },
                at,
            )
            .await;
        script
    }

    async fn append(&self, event: TaskEvent, at: DateTime<Utc>) {
        let task = self.task;
        append_at(self.store, Event::Task { task, event }, at).await;
    }

    async fn run_and_fail(&self, attempt: u32, class: ErrorClass, at: DateTime<Utc>) {
        self.append(
            TaskEvent::Dispatched {
                agent: self.agent,
                attempt,
            },
            at,
        )
        .await;
        self.append(TaskEvent::Started { attempt }, at).await;
        let error = TaskError::new(class, class.as_str(), Some(1));
        self.append(TaskEvent::Failed { attempt, error }, at).await;
    }
}

/// Waits until the task's last event satisfies `done`, and returns its events.
async fn wait_until(
    store: &EventStore,
    task: TaskId,
    done: impl Fn(&TaskEvent) -> bool,
) -> Vec<TaskEvent> {
    eventually("the task's last event", Duration::from_secs(15), || async {
        let events = task_events(store, task).await;
        if events.last().is_some_and(&done) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(events)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    task_events(store, task).await
}

/// The retry-budget enforcer on `clock`.
fn spawn_enforcer(
    store: &EventStore,
    clock: &ManualClock,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    spawn_service(store, Service::Retry, manual(clock), shutdown)
}

/// A started fleet with one enforcer on a manual clock set to [`start`].
async fn enforced() -> (Fleet, ManualClock, CancellationToken, JoinHandle<()>) {
    let f = fleet().await;
    let clock = ManualClock::new(start());
    let shutdown = CancellationToken::new();
    let enforcer = spawn_enforcer(&f.store, &clock, &shutdown);
    (f, clock, shutdown, enforcer)
}

fn budget_spec(max_retries: u32) -> PolicySpec {
    PolicySpec {
        retry: RetryBudget {
            max_retries,
            base_delay_secs: 30,
            max_delay_secs: 3600,
        },
        ..samples::policy_spec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_inside_the_budget_then_exhaust() {
    let (f, clock, shutdown, enforcer) = enforced().await;
    let script = Script::scheduled(&f.store, budget_spec(2), AgentId::generate(), start()).await;

    for attempt in 1..=3 {
        script
            .run_and_fail(attempt, ErrorClass::Network, clock.now())
            .await;
        if attempt == 3 {
            break;
        }
        let events = wait_until(&f.store, script.task, |e| {
            matches!(e, TaskEvent::RetryScheduled { .. })
        })
        .await;
        let Some(TaskEvent::RetryScheduled {
            attempt: a,
            delay_ms,
            due_at,
        }) = events.last().cloned()
        else {
            unreachable!("waited for it")
        };
        assert_eq!(a, attempt);
        let ceiling = 30_000u64 << (attempt - 1);
        assert!(
            (1000..=ceiling).contains(&delay_ms),
            "attempt {attempt}: {delay_ms} ms"
        );
        assert_eq!(
            due_at,
            clock.now() + TimeDelta::milliseconds(delay_ms as i64)
        );
        clock.advance(TimeDelta::milliseconds(delay_ms as i64));
        wait_until(&f.store, script.task, |e| matches!(e, TaskEvent::RetryDue)).await;
    }
    let events = wait_until(&f.store, script.task, |e| {
        matches!(e, TaskEvent::Exhausted { .. })
    })
    .await;
    assert_eq!(
        events.last(),
        Some(&TaskEvent::Exhausted {
            attempts: 3,
            reason: ExhaustedReason::BudgetSpent
        })
    );
    let retries = events
        .iter()
        .filter(|e| matches!(e, TaskEvent::RetryScheduled { .. }))
        .count();
    let dues = events
        .iter()
        .filter(|e| matches!(e, TaskEvent::RetryDue))
        .count();
    assert_eq!((retries, dues), (2, 2), "{events:#?}");
    stop(&shutdown, [enforcer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_stop_at_once() {
    let (f, clock, shutdown, enforcer) = enforced().await;
    for class in [
        ErrorClass::Auth,
        ErrorClass::Permanent,
        ErrorClass::MissingRepository,
    ] {
        let script =
            Script::scheduled(&f.store, budget_spec(5), AgentId::generate(), start()).await;
        script.run_and_fail(1, class, clock.now()).await;
        let events = wait_until(&f.store, script.task, |e| {
            matches!(e, TaskEvent::Exhausted { .. })
        })
        .await;
        assert_eq!(
            events.last(),
            Some(&TaskEvent::Exhausted {
                attempts: 1,
                reason: ExhaustedReason::NotRetryable(class)
            })
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, TaskEvent::RetryScheduled { .. }))
        );
    }
    stop(&shutdown, [enforcer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_backoff_still_fires_the_retry_once() {
    let (f, clock, shutdown, enforcer) = enforced().await;
    let script = Script::scheduled(&f.store, budget_spec(5), AgentId::generate(), start()).await;
    script.run_and_fail(1, ErrorClass::Lock, clock.now()).await;
    wait_until(&f.store, script.task, |e| {
        matches!(e, TaskEvent::RetryScheduled { .. })
    })
    .await;
    stop(&shutdown, [enforcer]).await;

    // Down while the retry falls due; two instances come back.
    clock.advance(TimeDelta::hours(2));
    let shutdown = CancellationToken::new();
    let enforcers = [
        spawn_enforcer(&f.store, &clock, &shutdown),
        spawn_enforcer(&f.store, &clock, &shutdown),
    ];
    let events = wait_until(&f.store, script.task, |e| matches!(e, TaskEvent::RetryDue)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_later = task_events(&f.store, script.task).await;
    assert_eq!(events, events_later);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TaskEvent::RetryDue))
            .count(),
        1,
        "{events:#?}"
    );
    stop(&shutdown, enforcers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_network_failures_on_one_repository_open_its_circuit() {
    let (f, clock, shutdown, enforcer) = enforced().await;
    let spec = budget_spec(5);
    let repo = fleet_events::event::repo_of(&spec);
    let mut last = None;
    for _ in 0..5 {
        let script = Script::scheduled(&f.store, spec.clone(), AgentId::generate(), start()).await;
        script
            .run_and_fail(1, ErrorClass::Network, clock.now())
            .await;
        last = Some(
            wait_until(&f.store, script.task, |e| {
                matches!(e, TaskEvent::RetryScheduled { .. })
            })
            .await,
        );
    }
    assert!(last.is_some());
    let opened = eventually("the circuit to open", Duration::from_secs(10), || async {
        let all = log(
            &f.store,
            &subject::aggregate_events(subject::Aggregate::Repo),
        )
        .await;
        let opened: Vec<RepoEvent> = all
            .into_iter()
            .filter_map(|s| match s.envelope.event {
                Event::Repo { repo: r, event } if r == repo => Some(event),
                _ => None,
            })
            .collect();
        if opened.is_empty() {
            ControlFlow::Continue(opened)
        } else {
            ControlFlow::Break(opened)
        }
    })
    .await;
    assert_eq!(
        opened,
        vec![RepoEvent::CircuitOpened {
            until: clock.now() + TimeDelta::seconds(60),
            failures: 5
        }]
    );
    stop(&shutdown, [enforcer]).await;
}
