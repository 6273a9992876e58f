//! The circuit breaker end to end: five network failures on one repository open its
//! circuit, the dispatcher holds the repository's retries during the cool-down, one probe
//! goes after it, and its success closes the circuit and lets the rest go.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, ErrorClass, Event, RepoEvent, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, RetryBudget};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect, Stored};
use fleet_events::subject;
use fleet_services::clock::Clock;
use fleet_services::dispatcher::DispatcherConfig;
use fleet_services::retry::CircuitConfig;
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

async fn log(store: &EventStore) -> Vec<Stored> {
    store
        .replay(&subject::all_events(), 1)
        .await
        .expect("replay")
        .try_collect()
        .await
        .expect("decodes")
}

async fn wait_until(
    store: &EventStore,
    what: &str,
    done: impl Fn(&[Stored]) -> bool,
) -> Vec<Stored> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = log(store).await;
        if done(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(events: &[Stored], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|s| f(&s.envelope.event)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_failures_open_the_circuit_and_a_probe_closes_it() {
    let f = fleet().await;
    let agent = AgentId::generate();
    let settings = AgentSettings {
        max_concurrent: 5,
        ..AgentSettings::default()
    };
    let registered = AgentEvent::Registered {
        name: "a".into(),
        hostname: "a".into(),
        settings,
    };
    append(
        &f.store,
        Event::Agent {
            agent,
            event: registered,
        },
    )
    .await;
    let spec = PolicySpec {
        retry: RetryBudget {
            max_retries: 5,
            base_delay_secs: 1,
            max_delay_secs: 1,
        },
        ..samples::policy_spec()
    };
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let policy = PolicyId::generate();
        let fire_at = Utc::now();
        let task = TaskId::for_fire(policy, agent, fire_at);
        let event = TaskEvent::Scheduled {
            policy,
            agent,
            fire_at,
            run_at: fire_at,
            spec: Box::new(spec.clone()),
        };
        append(&f.store, Event::Task { task, event }).await;
        tasks.push(task);
    }

    let shutdown = CancellationToken::new();
    let circuit = CircuitConfig {
        threshold: 5,
        cool_down: Duration::from_secs(2),
    };
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
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::retry::run(store, Clock::System, circuit, token)
            .await
            .expect("retry");
    }));

    let js = async_nats::jetstream::new(f.client.clone());
    let failing = CancellationToken::new();
    let down = Behaviour {
        run_for: Duration::from_millis(50),
        fail: Some(ErrorClass::Network),
    };
    let (_, first) = scripted_agent::spawn(js.clone(), agent, down, failing.clone());
    let opened = wait_until(&f.store, "the circuit to open", |events| {
        count(events, |e| {
            matches!(
                e,
                Event::Repo {
                    event: RepoEvent::CircuitOpened { .. },
                    ..
                }
            )
        }) == 1
    })
    .await;
    failing.cancel();
    first.await.expect("joined");
    let until: DateTime<Utc> = opened
        .iter()
        .find_map(|s| match &s.envelope.event {
            Event::Repo {
                event: RepoEvent::CircuitOpened { until, failures },
                ..
            } => {
                assert_eq!(*failures, 5);
                Some(*until)
            }
            _ => None,
        })
        .expect("opened");

    let healthy = Behaviour {
        run_for: Duration::from_millis(50),
        fail: None,
    };
    let (_, second) = scripted_agent::spawn(js, agent, healthy, shutdown.clone());
    let events = wait_until(&f.store, "every task to succeed", |events| {
        count(events, |e| {
            matches!(
                e,
                Event::Task {
                    event: TaskEvent::Succeeded { .. },
                    ..
                }
            )
        }) == tasks.len()
    })
    .await;
    shutdown.cancel();
    for s in services {
        s.await.expect("joined");
    }
    second.await.expect("joined");

    // After the opening: nothing dispatched before `until`, then exactly one probe before
    // the circuit closes.
    let open_at = events
        .iter()
        .position(|s| {
            matches!(
                s.envelope.event,
                Event::Repo {
                    event: RepoEvent::CircuitOpened { .. },
                    ..
                }
            )
        })
        .expect("opened");
    let closed_at = events
        .iter()
        .position(|s| {
            matches!(
                s.envelope.event,
                Event::Repo {
                    event: RepoEvent::CircuitClosed,
                    ..
                }
            )
        })
        .expect("the probe's success closed the circuit");
    let dispatched_while_open: Vec<&Stored> = events[open_at..closed_at]
        .iter()
        .filter(|s| {
            matches!(
                s.envelope.event,
                Event::Task {
                    event: TaskEvent::Dispatched { .. },
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        dispatched_while_open.len(),
        1,
        "one probe while the circuit was not closed"
    );
    assert!(
        dispatched_while_open[0].envelope.at >= until,
        "the probe waited for the cool-down"
    );
}
