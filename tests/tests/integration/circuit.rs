//! The circuit breaker end to end: five network failures on one repository open its
//! circuit, the dispatcher holds the repository's retries during the cool-down, one probe
//! goes after it, and its success closes the circuit and lets the rest go.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fleet_control::retry::CircuitConfig;
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::event::{ErrorClass, Event, RepoEvent, TaskEvent};
use fleet_events::ids::AgentId;
use fleet_events::policy::{PolicySpec, RetryBudget};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{EventStore, Stored};
use fleet_events::subject;
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour};
use crate::support::{eventually, fleet, log, register, schedule, services, stop, system};

/// Waits until the whole log satisfies `done`, and returns it.
async fn wait_until(
    store: &EventStore,
    what: &str,
    done: impl Fn(&[Stored]) -> bool,
) -> Vec<Stored> {
    eventually(what, Duration::from_secs(30), || async {
        let events = log(store, &subject::all_events()).await;
        if done(&events) {
            ControlFlow::Break(events)
        } else {
            ControlFlow::Continue(format!("{} events", events.len()))
        }
    })
    .await
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
    register(&f.store, agent, settings).await;
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
        tasks.push(schedule(&f.store, agent, spec.clone(), Utc::now()).await);
    }

    let shutdown = CancellationToken::new();
    let config = ServiceConfig {
        circuit: CircuitConfig {
            threshold: 5,
            cool_down: Duration::from_secs(2),
        },
        ..system()
    };
    let running = [Service::Dispatcher, Service::Intake, Service::Retry];
    let services = services(&f.store, &running, &config, &shutdown);

    let js = async_nats::jetstream::new(f.client.clone());
    let failing = CancellationToken::new();
    let down = Behaviour::fails_after(Duration::from_millis(50), ErrorClass::Network);
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
    stop(&failing, [first]).await;
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

    let healthy = Behaviour::succeeds_after(Duration::from_millis(50));
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
    stop(&shutdown, services.into_iter().chain([second])).await;

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
