//! The dispatcher with intake against a real nats-server and a scripted agent: an agent
//! limited to 2 never holds more than 2 tasks, held work drains in priority then time
//! order, and two dispatchers never dispatch a task twice.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fleet_control::dispatcher::DispatcherConfig;
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::policy::PolicySpec;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_events::subject;
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour, Observed};
use crate::support::{
    append, eventually, fleet, log, manual, register, schedule, services, spawn_service, stop,
    succeeded, system, task_event_seen, task_events,
};

/// Registers `agent` with room for two tasks.
async fn register_two(store: &EventStore, agent: AgentId) {
    let settings = AgentSettings {
        max_concurrent: 2,
        ..AgentSettings::default()
    };
    register(store, agent, settings).await;
}

/// Schedules a task of `agent` with `priority`, due `secs_ago` seconds ago.
async fn schedule_due(store: &EventStore, agent: AgentId, priority: u8, secs_ago: i64) -> TaskId {
    let spec = PolicySpec {
        priority,
        ..samples::policy_spec()
    };
    let fire_at = Utc::now() - TimeDelta::seconds(secs_ago);
    schedule(store, agent, spec, fire_at).await
}

/// Waits until one of the task's events satisfies `found`.
async fn wait_for(store: &EventStore, task: TaskId, found: impl Fn(&TaskEvent) -> bool) {
    task_event_seen(store, task, Duration::from_secs(30), found).await;
}

/// Waits until the agent has received a cancel command.
async fn wait_for_cancel(observed: &Observed, what: &str) {
    eventually(what, Duration::from_secs(15), || async {
        match observed.cancels.load(Ordering::SeqCst) {
            0 => ControlFlow::Continue(0),
            n => ControlFlow::Break(n),
        }
    })
    .await;
}

/// The names of the task's events, in log order.
async fn kinds_of(store: &EventStore, task: TaskId) -> Vec<&'static str> {
    let events = task_events(store, task).await;
    events.iter().map(|e| e.event_type().name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_agent_drains_by_priority_and_no_task_is_dispatched_twice() {
    let f = fleet().await;
    let agent = AgentId::generate();
    register_two(&f.store, agent).await;
    // (priority, seconds since due): drain order must be 9, 7, 5 (older), 5, 3, 1.
    let wanted = [(1, 10), (9, 10), (5, 20), (5, 10), (3, 10), (7, 10)];
    let mut tasks = HashMap::new();
    for (priority, ago) in wanted {
        tasks.insert(
            schedule_due(&f.store, agent, priority, ago).await,
            (priority, ago),
        );
    }

    let shutdown = CancellationToken::new();
    let running = [Service::Dispatcher, Service::Dispatcher, Service::Intake];
    let services = services(&f.store, &running, &system(), &shutdown);
    let js = async_nats::jetstream::new(f.client.clone());
    let behaviour = Behaviour::succeeds_after(Duration::from_millis(300));
    let (observed, agent_task) = scripted_agent::spawn(js, agent, behaviour, shutdown.clone());

    let log = succeeded(&f.store, tasks.len(), Duration::from_secs(30)).await;
    stop(&shutdown, services.into_iter().chain([agent_task])).await;

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
    assert!(observed.max_running.load(Ordering::SeqCst) <= 2);
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
    register_two(&f.store, agent).await;
    let spec = PolicySpec {
        retry: fleet_events::policy::RetryBudget {
            max_retries: 3,
            base_delay_secs: 1,
            max_delay_secs: 1,
        },
        ..samples::policy_spec()
    };
    let task = schedule(&f.store, agent, spec, Utc::now()).await;

    // The agent heartbeats before the dispatcher starts: with a lease of one second, an
    // agent registered longer ago and not yet heard would rightly be offline at once.
    let js = async_nats::jetstream::new(f.client.clone());
    let agent_down = CancellationToken::new();
    let long = Behaviour::succeeds_after(Duration::from_secs(3600));
    let (_, first) = scripted_agent::spawn(js.clone(), agent, long, agent_down.clone());
    let shutdown = CancellationToken::new();
    let config = ServiceConfig {
        dispatcher: DispatcherConfig {
            lease: Duration::from_secs(1),
            grace: Duration::from_secs(1),
            ..DispatcherConfig::default()
        },
        ..system()
    };
    let running = [Service::Dispatcher, Service::Intake, Service::Retry];
    let services = services(&f.store, &running, &config, &shutdown);

    // The agent starts the task, then goes silent for good.
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::Started { attempt: 1 })
    })
    .await;
    stop(&agent_down, [first]).await;
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::RetryScheduled { attempt: 1, .. })
    })
    .await;

    // Back: the retry goes to it and succeeds.
    let quick = Behaviour::succeeds_after(Duration::from_millis(100));
    let (_, second) = scripted_agent::spawn(js, agent, quick, shutdown.clone());
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::Succeeded { attempt: 2, .. })
    })
    .await;
    stop(&shutdown, services.into_iter().chain([second])).await;

    assert_eq!(
        kinds_of(&f.store, task).await,
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
    let all = log(&f.store, &subject::all_events()).await;
    let agent_events: Vec<&str> = all
        .iter()
        .filter(|s| matches!(&s.envelope.event, Event::Agent { agent: a, .. } if *a == agent))
        .map(|s| s.envelope.event.event_type().name())
        .collect();
    assert_eq!(
        agent_events,
        [
            "agent.registered",
            // Its first heartbeat: the read models learn it is online, and its versions.
            "agent.came_online",
            "agent.went_offline",
            "agent.came_online"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_task_tells_its_agent() {
    let f = fleet().await;
    let agent = AgentId::generate();
    register_two(&f.store, agent).await;
    let task = schedule_due(&f.store, agent, 5, 1).await;
    let shutdown = CancellationToken::new();
    let running = [Service::Dispatcher, Service::Intake];
    let services = services(&f.store, &running, &system(), &shutdown);
    let js = async_nats::jetstream::new(f.client.clone());
    let long = Behaviour::succeeds_after(Duration::from_secs(3600));
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
    wait_for_cancel(&observed, "the agent to hear of the cancel").await;
    stop(&shutdown, services.into_iter().chain([agent_task])).await;
    assert_eq!(observed.cancels.load(Ordering::SeqCst), 1);
}

/// An agent that starts a task and then hangs while still heartbeating: once the policy's
/// run timeout and the margin have passed since the start, the dispatcher fails the attempt
/// as timed out and tells the agent to cancel it. The dispatcher runs on a manual clock (with
/// a lease that cannot run out meanwhile), so the scenario does not wait out the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_run_timeout_is_timed_out_and_its_agent_told() {
    use fleet_control::clock::ManualClock;
    use fleet_events::event::ErrorClass;

    let f = fleet().await;
    let agent = AgentId::generate();
    register_two(&f.store, agent).await;
    let mut spec = samples::policy_spec();
    spec.execution.run_timeout_secs = 60;
    let task = schedule(&f.store, agent, spec, Utc::now() - TimeDelta::seconds(1)).await;

    // The intake stamps events with the real clock, so the manual one starts from it.
    let clock = ManualClock::new(Utc::now());
    let shutdown = CancellationToken::new();
    let config = ServiceConfig {
        dispatcher: DispatcherConfig {
            lease: Duration::from_secs(3600),
            timeout_margin: Duration::from_secs(1),
            ..DispatcherConfig::default()
        },
        ..manual(&clock)
    };
    let services = [
        spawn_service(&f.store, Service::Dispatcher, config, &shutdown),
        spawn_service(&f.store, Service::Intake, system(), &shutdown),
    ];
    let js = async_nats::jetstream::new(f.client.clone());
    let hangs = Behaviour::succeeds_after(Duration::from_secs(3600));
    let (observed, agent_task) = scripted_agent::spawn(js, agent, hangs, shutdown.clone());
    wait_for(&f.store, task, |e| {
        matches!(e, TaskEvent::Started { attempt: 1 })
    })
    .await;
    let all = log(
        &f.store,
        &subject::aggregate_events(subject::Aggregate::Task),
    )
    .await;
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
    clock.advance(started_at + TimeDelta::seconds(30) - clock.now());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timed_out = |e: &TaskEvent| match e {
        TaskEvent::Failed { attempt: 1, error } => error.class == ErrorClass::Timeout,
        _ => false,
    };
    assert!(!task_events(&f.store, task).await.iter().any(timed_out));
    assert_eq!(observed.cancels.load(Ordering::SeqCst), 0);

    // Past the run timeout and the margin, the attempt fails and the agent hears of it.
    clock.advance(started_at + TimeDelta::seconds(62) - clock.now());
    wait_for(&f.store, task, timed_out).await;
    wait_for_cancel(&observed, "the agent to hear of the timeout").await;
    // Time goes on: the attempt is not failed, nor cancelled, twice.
    clock.advance(TimeDelta::seconds(60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(&shutdown, services.into_iter().chain([agent_task])).await;

    assert_eq!(observed.cancels.load(Ordering::SeqCst), 1);
    assert_eq!(
        kinds_of(&f.store, task).await,
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.failed",
        ]
    );
    let message = task_events(&f.store, task)
        .await
        .into_iter()
        .find_map(|e| match e {
            TaskEvent::Failed { error, .. } => Some(error.message),
            _ => None,
        });
    assert_eq!(
        message.as_deref(),
        Some("no result within the run timeout of 60 s (control plane)")
    );
}
