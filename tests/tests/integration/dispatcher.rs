//! The dispatcher with intake against a real nats-server and a scripted agent: an agent
//! limited to 2 never holds more than 2 tasks, held work drains in priority then time
//! order, and two dispatchers never dispatch a task twice.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::PolicySpec;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect, Stored};
use fleet_events::subject;
use fleet_services::clock::Clock;
use fleet_services::dispatcher::DispatcherConfig;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour};
use crate::support::{fleet, tenant};

async fn append(store: &EventStore, event: Event) {
    let envelope = Envelope::new(tenant(), Utc::now(), event);
    let msg_id = envelope.id.to_string();
    store
        .append(Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::Any,
        })
        .await
        .expect("stored");
}

async fn register(store: &EventStore, agent: AgentId, max_concurrent: u16) {
    let settings = AgentSettings {
        max_concurrent,
        ..AgentSettings::default()
    };
    let event = AgentEvent::Registered {
        name: "scripted".into(),
        hostname: "scripted".into(),
        settings,
    };
    append(store, Event::Agent { agent, event }).await;
}

/// Schedules a task of `agent` with `priority`, due `secs_ago` seconds ago.
async fn schedule(store: &EventStore, agent: AgentId, priority: u8, secs_ago: i64) -> TaskId {
    let policy = PolicyId::generate();
    let fire_at = Utc::now() - TimeDelta::seconds(secs_ago);
    let task = TaskId::for_fire(policy, agent, fire_at);
    let spec = PolicySpec {
        priority,
        ..samples::policy_spec()
    };
    let event = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    append(store, Event::Task { task, event }).await;
    task
}

async fn task_log(store: &EventStore) -> Vec<(TaskId, TaskEvent)> {
    let all: Vec<Stored> = store
        .replay(&subject::aggregate_events(subject::Aggregate::Task), 1)
        .await
        .expect("replay")
        .try_collect()
        .await
        .expect("decodes");
    all.into_iter()
        .filter_map(|s| match s.envelope.event {
            Event::Task { task, event } => Some((task, event)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_agent_drains_by_priority_and_no_task_is_dispatched_twice() {
    let f = fleet().await;
    let agent = AgentId::generate();
    register(&f.store, agent, 2).await;
    // (priority, seconds since due): drain order must be 9, 7, 5 (older), 5, 3, 1.
    let wanted = [(1, 10), (9, 10), (5, 20), (5, 10), (3, 10), (7, 10)];
    let mut tasks = HashMap::new();
    for (priority, ago) in wanted {
        tasks.insert(
            schedule(&f.store, agent, priority, ago).await,
            (priority, ago),
        );
    }

    let shutdown = CancellationToken::new();
    let mut services = Vec::new();
    for _ in 0..2 {
        let (store, token) = (f.store.clone(), shutdown.clone());
        services.push(tokio::spawn(async move {
            fleet_services::dispatcher::run(
                store,
                Clock::System,
                DispatcherConfig::default(),
                token,
            )
            .await
            .expect("dispatcher");
        }));
    }
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::intake::run(store, Clock::System, token)
            .await
            .expect("intake");
    }));
    let js = async_nats::jetstream::new(f.client.clone());
    let behaviour = Behaviour {
        run_for: Duration::from_millis(300),
        fail: None,
    };
    let (observed, agent_task) = scripted_agent::spawn(js, agent, behaviour, shutdown.clone());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = task_log(&f.store).await;
        let done = log
            .iter()
            .filter(|(_, e)| matches!(e, TaskEvent::Succeeded { .. }))
            .count();
        if done == tasks.len() {
            break log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {} finished: {log:#?}",
            tasks.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.cancel();
    for s in services {
        s.await.expect("joined");
    }
    agent_task.await.expect("joined");

    let mut holding = 0i32;
    let mut max_holding = 0;
    let mut dispatched = Vec::new();
    for (task, event) in &log {
        match event {
            TaskEvent::Dispatched { attempt, .. } => {
                holding += 1;
                dispatched.push((*task, *attempt));
            }
            TaskEvent::Succeeded { .. } | TaskEvent::Failed { .. } => holding -= 1,
            _ => {}
        }
        max_holding = max_holding.max(holding);
    }
    assert!(
        max_holding <= 2,
        "the log shows {max_holding} tasks on the agent at once"
    );
    assert!(
        observed
            .max_running
            .load(std::sync::atomic::Ordering::SeqCst)
            <= 2
    );
    assert_eq!(
        dispatched.len(),
        tasks.len(),
        "each task dispatched exactly once: {dispatched:?}"
    );
    let order: Vec<(u8, i64)> = dispatched.iter().map(|(t, _)| tasks[t]).collect();
    assert_eq!(
        order,
        vec![(9, 10), (7, 10), (5, 20), (5, 10), (3, 10), (1, 10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_goes_offline_and_its_task_is_lost_then_retried_when_it_is_back() {
    let f = fleet().await;
    let agent = AgentId::generate();
    register(&f.store, agent, 2).await;
    let policy = PolicyId::generate();
    let fire_at = Utc::now();
    let task = TaskId::for_fire(policy, agent, fire_at);
    let spec = PolicySpec {
        retry: fleet_events::policy::RetryBudget {
            max_retries: 3,
            base_delay_secs: 1,
            max_delay_secs: 1,
        },
        ..samples::policy_spec()
    };
    let event = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    append(&f.store, Event::Task { task, event }).await;

    let shutdown = CancellationToken::new();
    let config = DispatcherConfig {
        lease: Duration::from_secs(1),
        grace: Duration::from_secs(1),
        ..DispatcherConfig::default()
    };
    let mut services = Vec::new();
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::dispatcher::run(store, Clock::System, config, token)
            .await
            .expect("dispatcher");
    }));
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::intake::run(store, Clock::System, token)
            .await
            .expect("intake");
    }));
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        let circuit = fleet_services::retry::CircuitConfig::default();
        fleet_services::retry::run(store, Clock::System, circuit, token)
            .await
            .expect("retry");
    }));

    // The agent starts the task, then goes silent for good.
    let js = async_nats::jetstream::new(f.client.clone());
    let agent_down = CancellationToken::new();
    let long = Behaviour {
        run_for: Duration::from_secs(3600),
        fail: None,
    };
    let (_, first) = scripted_agent::spawn(js.clone(), agent, long, agent_down.clone());
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::Started { attempt: 1 })
    })
    .await;
    agent_down.cancel();
    first.await.expect("joined");
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::RetryScheduled { attempt: 1, .. })
    })
    .await;

    // Back: the retry goes to it and succeeds.
    let quick = Behaviour {
        run_for: Duration::from_millis(100),
        fail: None,
    };
    let (_, second) = scripted_agent::spawn(js, agent, quick, shutdown.clone());
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::Succeeded { attempt: 2, .. })
    })
    .await;
    shutdown.cancel();
    for s in services {
        s.await.expect("joined");
    }
    second.await.expect("joined");

    let log = task_log(&f.store).await;
    let kinds: Vec<&str> = log
        .iter()
        .filter(|(t, _)| *t == task)
        .map(|(_, e)| e.event_type().name())
        .collect();
    assert_eq!(
        kinds,
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.lost",
            "task.retry_scheduled",
            "task.retry_due",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.succeeded",
        ]
    );
    let all: Vec<Stored> = f
        .store
        .replay(&subject::all_events(), 1)
        .await
        .expect("replay")
        .try_collect()
        .await
        .expect("decodes");
    let agent_events: Vec<&str> = all
        .iter()
        .filter(|s| matches!(&s.envelope.event, Event::Agent { agent: a, .. } if *a == agent))
        .map(|s| s.envelope.event.event_type().name())
        .collect();
    assert_eq!(
        agent_events,
        [
            "agent.registered",
            "agent.went_offline",
            "agent.came_online"
        ]
    );
}

/// Waits until one of the task's events satisfies `found`.
async fn wait_for(store: &EventStore, task: TaskId, found: impl Fn(&TaskEvent) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = task_log(store).await;
        if log.iter().any(|(t, e)| *t == task && found(e)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_task_tells_its_agent() {
    let f = fleet().await;
    let agent = AgentId::generate();
    register(&f.store, agent, 2).await;
    let task = schedule(&f.store, agent, 5, 1).await;
    let shutdown = CancellationToken::new();
    let mut services = Vec::new();
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::dispatcher::run(store, Clock::System, DispatcherConfig::default(), token)
            .await
            .expect("dispatcher");
    }));
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::intake::run(store, Clock::System, token)
            .await
            .expect("intake");
    }));
    let js = async_nats::jetstream::new(f.client.clone());
    let long = Behaviour {
        run_for: Duration::from_secs(3600),
        fail: None,
    };
    let (observed, agent_task) = scripted_agent::spawn(js, agent, long, shutdown.clone());
    wait_for(&f.store, task, |e| matches!(e, TaskEvent::Started { .. })).await;

    append(
        &f.store,
        Event::Task {
            task,
            event: TaskEvent::Cancelled {
                reason: "operator".into(),
            },
        },
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while observed.cancels.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never heard of the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    for s in services {
        s.await.expect("joined");
    }
    agent_task.await.expect("joined");
    assert_eq!(
        observed.cancels.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// An agent that starts a task and then hangs while still heartbeating: once the policy's
/// run timeout and the margin have passed since the start, the dispatcher fails the attempt
/// as timed out and tells the agent to cancel it. The dispatcher runs on a manual clock (with
/// a lease that cannot run out meanwhile), so the scenario does not wait out the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_run_timeout_is_timed_out_and_its_agent_told() {
    use fleet_events::event::ErrorClass;
    use fleet_services::clock::ManualClock;
    use std::sync::atomic::Ordering;

    let f = fleet().await;
    let agent = AgentId::generate();
    register(&f.store, agent, 2).await;
    let policy = PolicyId::generate();
    let fire_at = Utc::now() - TimeDelta::seconds(1);
    let task = TaskId::for_fire(policy, agent, fire_at);
    let mut spec = samples::policy_spec();
    spec.execution.run_timeout_secs = 60;
    let event = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    append(&f.store, Event::Task { task, event }).await;

    // The intake stamps events with the real clock, so the manual one starts from it.
    let manual = ManualClock::new(Utc::now());
    let shutdown = CancellationToken::new();
    let config = DispatcherConfig {
        lease: Duration::from_secs(3600),
        timeout_margin: Duration::from_secs(1),
        ..DispatcherConfig::default()
    };
    let mut services = Vec::new();
    let (store, token, clock) = (f.store.clone(), shutdown.clone(), manual.clone());
    services.push(tokio::spawn(async move {
        fleet_services::dispatcher::run(store, Clock::Manual(clock), config, token)
            .await
            .expect("dispatcher");
    }));
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::intake::run(store, Clock::System, token)
            .await
            .expect("intake");
    }));
    let js = async_nats::jetstream::new(f.client.clone());
    let hangs = Behaviour {
        run_for: Duration::from_secs(3600),
        fail: None,
    };
    let (observed, agent_task) = scripted_agent::spawn(js, agent, hangs, shutdown.clone());
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::Started { attempt: 1 })
    })
    .await;
    let all: Vec<Stored> = f
        .store
        .replay(&subject::aggregate_events(subject::Aggregate::Task), 1)
        .await
        .expect("replay")
        .try_collect()
        .await
        .expect("decodes");
    let started_at = all
        .iter()
        .find(|s| {
            matches!(
                &s.envelope.event,
                Event::Task { task: t, event: TaskEvent::Started { .. } } if *t == task
            )
        })
        .map(|s| s.envelope.at)
        .expect("started");

    // Halfway through the run timeout, nothing happens.
    manual.advance(started_at + TimeDelta::seconds(30) - manual.now());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timed_out = |e: &TaskEvent| match e {
        TaskEvent::Failed { attempt: 1, error } => error.class == ErrorClass::Timeout,
        _ => false,
    };
    assert!(
        !task_log(&f.store)
            .await
            .iter()
            .any(|(t, e)| *t == task && timed_out(e))
    );
    assert_eq!(observed.cancels.load(Ordering::SeqCst), 0);

    // Past the run timeout and the margin, the attempt fails and the agent hears of it.
    manual.advance(started_at + TimeDelta::seconds(62) - manual.now());
    wait_for(&f.store, task, timed_out).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while observed.cancels.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never heard of the timeout"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time goes on: the attempt is not failed, nor cancelled, twice.
    manual.advance(TimeDelta::seconds(60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    for s in services {
        s.await.expect("joined");
    }
    agent_task.await.expect("joined");

    assert_eq!(observed.cancels.load(Ordering::SeqCst), 1);
    let log = task_log(&f.store).await;
    let kinds: Vec<&str> = log
        .iter()
        .filter(|(t, _)| *t == task)
        .map(|(_, e)| e.event_type().name())
        .collect();
    assert_eq!(
        kinds,
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.failed",
        ]
    );
    let message = log.iter().find_map(|(t, e)| match e {
        TaskEvent::Failed { error, .. } if *t == task => Some(error.message.clone()),
        _ => None,
    });
    assert_eq!(
        message.as_deref(),
        Some("no result within the run timeout of 60 s (control plane)")
    );
}
