//! Liveness through the faults real deployments see: nats-server killed and restarted on
//! its store, the control plane restarted, then killed (its lease never released), and an
//! agent killed for good. The dead agent still goes offline on time, judged from its last
//! heartbeat (which outlives every restart), its attempt is lost after the grace and
//! retried, and "last seen" follows heartbeats. Real clock, real nats-server.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use fleet_control::dispatcher::DispatcherConfig;
use fleet_control::projector::query::{Query, ask};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::AgentId;
use fleet_events::policy::{PolicySpec, RetryBudget};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_events::streams::LEASE_TTL;
use fleet_events::subject;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour};
use crate::support::{
    eventually, fleet, log, register, schedule, services, spawn_service, stop, system,
    task_event_seen, task_events, tenant,
};

const LEASE: Duration = Duration::from_secs(8);
const GRACE: Duration = Duration::from_secs(4);

fn config() -> ServiceConfig {
    ServiceConfig {
        dispatcher: DispatcherConfig {
            lease: LEASE,
            grace: GRACE,
            ..DispatcherConfig::default()
        },
        ..system()
    }
}

/// The control plane minus the projector, which runs on throughout.
fn control_plane(store: &EventStore, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
    let running = [Service::Dispatcher, Service::Intake, Service::Retry];
    services(store, &running, &config(), shutdown)
}

/// The agent as the projector answers it; the error in words while the projector cannot
/// answer (NATS restarting).
async fn agent(client: &async_nats::Client, id: AgentId) -> Value {
    let query = Query::Agent { id };
    match ask(client, &tenant(), &query).await {
        Ok(answer) => answer,
        Err(e) => Value::String(format!("{e:?}")),
    }
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value.as_str().and_then(|s| s.parse().ok())
}

/// Waits until the projector shows `id` heard after `after`; returns that time.
async fn heard_after(
    client: &async_nats::Client,
    id: AgentId,
    after: DateTime<Utc>,
) -> DateTime<Utc> {
    eventually("a heartbeat heard", Duration::from_secs(30), || async {
        let seen = agent(client, id).await;
        match time(&seen["lastSeen"]) {
            Some(t) if t > after => ControlFlow::Break(t),
            _ => ControlFlow::Continue(seen),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_after_server_and_control_plane_restarts_goes_offline_and_loses_its_task_on_time()
 {
    let mut f = fleet().await;
    let (doomed, alive) = (AgentId::generate(), AgentId::generate());
    let two = AgentSettings {
        max_concurrent: 2,
        ..AgentSettings::default()
    };
    register(&f.store, doomed, two.clone()).await;
    register(&f.store, alive, two).await;
    let spec = PolicySpec {
        retry: RetryBudget {
            max_retries: 3,
            base_delay_secs: 1,
            max_delay_secs: 1,
        },
        ..samples::policy_spec()
    };
    let task = schedule(&f.store, doomed, spec, Utc::now()).await;

    let projections = tempfile::tempdir().expect("tempdir");
    let projector_down = CancellationToken::new();
    let projector = spawn_service(
        &f.store,
        Service::Projector,
        ServiceConfig {
            projections_dir: Some(projections.path().to_owned()),
            history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
            ..config()
        },
        &projector_down,
    );
    let first = CancellationToken::new();
    let plane = control_plane(&f.store, &first);
    let js = async_nats::jetstream::new(f.client.clone());
    let agent_down = CancellationToken::new();
    let agents_down = CancellationToken::new();
    let long = Behaviour::succeeds_after(Duration::from_secs(3600));
    let (_, doomed_task) = scripted_agent::spawn(js.clone(), doomed, long, agent_down.clone());
    let (_, alive_task) = scripted_agent::spawn(js, alive, long, agents_down.clone());
    wait_until(&f.store, task, |e| {
        matches!(e, TaskEvent::Started { attempt: 1 })
    })
    .await;

    // nats-server is killed and comes back on its store; then the control plane restarts.
    f.server.kill().expect("kill nats-server");
    f.server.restart().expect("start nats-server again");
    let restarted = Utc::now();
    stop(&first, plane).await;
    let second = CancellationToken::new();
    let plane = control_plane(&f.store, &second);
    // "Last seen" moves with heartbeats, for both agents, through the restarts.
    let before = heard_after(&f.client, alive, restarted).await;
    heard_after(&f.client, alive, before).await;
    heard_after(&f.client, doomed, restarted).await;

    // The agent dies for good; two seconds later the control plane dies too (its leases
    // are not released), and a new one starts: it takes the leases over after the TTL.
    stop(&agent_down, [doomed_task]).await;
    let died = Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for service in plane {
        service.abort();
        let _ = service.await;
    }
    drop(second);
    let third = CancellationToken::new();
    let plane = control_plane(&f.store, &third);

    let (last_seen, offline_at) =
        eventually("the agent offline", Duration::from_secs(60), || async {
            let events = log(&f.store, &subject::all_events()).await;
            let offline = events.iter().find_map(|s| match &s.envelope.event {
                Event::Agent {
                    agent,
                    event: AgentEvent::WentOffline { last_seen },
                } if *agent == doomed => Some((*last_seen, s.envelope.at)),
                _ => None,
            });
            match offline {
                Some(found) => ControlFlow::Break(found),
                None => ControlFlow::Continue(events.len()),
            }
        })
        .await;
    // Its last heartbeat, as stored: within a heartbeat (200 ms) and a clock tick of its death.
    assert!(
        last_seen <= died && died - last_seen < TimeDelta::seconds(2),
        "last seen {last_seen}, died {died}"
    );
    // Offline as soon as a new instance could act (after the TTL): an instance that judged
    // silence from its own start would have waited a whole lease more.
    let late = (offline_at - died).to_std().expect("after the death");
    let bound = Duration::from_secs(2) + LEASE_TTL + Duration::from_secs(4);
    assert!(
        late < bound,
        "offline {late:?} after the death, bound {bound:?}"
    );

    // Lost after the grace, then retried: the retry waits while its agent is offline.
    wait_until(&f.store, task, |e| {
        matches!(e, TaskEvent::Lost { attempt: 1, .. })
    })
    .await;
    wait_until(&f.store, task, |e| matches!(e, TaskEvent::RetryDue)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = task_events(&f.store, task).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, TaskEvent::Dispatched { attempt: 2, .. })),
        "nothing dispatched to the dead agent: {events:?}"
    );

    // The dashboard's and the CLI's source: the dead agent offline since its last
    // heartbeat, the live one heard a moment ago.
    let shown = eventually(
        "the agent offline in the read model",
        Duration::from_secs(15),
        || async {
            let shown = agent(&f.client, doomed).await;
            if shown["online"] == false {
                ControlFlow::Break(shown)
            } else {
                ControlFlow::Continue(shown)
            }
        },
    )
    .await;
    assert_eq!(time(&shown["offlineSince"]), Some(last_seen), "{shown}");
    assert_eq!(time(&shown["lastSeen"]), Some(last_seen), "{shown}");
    let now = Utc::now();
    let seen = time(&agent(&f.client, alive).await["lastSeen"]).expect("heard");
    assert!(
        now - seen < TimeDelta::seconds(2),
        "live agent seen {seen}, now {now}"
    );

    stop(&third, plane).await;
    stop(&agents_down, [alive_task]).await;
    stop(&projector_down, [projector]).await;
}

async fn wait_until(
    store: &EventStore,
    task: fleet_events::ids::TaskId,
    found: impl Fn(&TaskEvent) -> bool,
) {
    task_event_seen(store, task, Duration::from_secs(60), found).await;
}

/// A dispatcher standing by hears an agent's first heartbeat; the agent says nothing more.
/// Once the dispatcher takes over, the log still learns the agent came online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_heard_only_while_the_dispatcher_stood_by_is_recorded_online_at_takeover() {
    use fleet_control::lease::Lease;
    use fleet_events::protocol::{Heartbeat, KindCounts};
    use fleet_events::subject::{AgentSubject, Channel};

    let f = fleet().await;
    let agent = AgentId::generate();
    register(&f.store, agent, AgentSettings::default()).await;
    // Another instance holds the dispatcher's lease.
    let holder = Lease::spawn(&f.store, "dispatcher");
    let mut held = holder.held();
    while !*held.borrow_and_update() {
        held.changed().await.expect("lease kept");
    }
    let shutdown = CancellationToken::new();
    let standby = spawn_service(&f.store, Service::Dispatcher, config(), &shutdown);
    let beat = Heartbeat {
        schema: fleet_events::envelope::SCHEMA_VERSION,
        agent,
        tenant: tenant(),
        at: Utc::now(),
        running: KindCounts::default(),
        queued: KindCounts::default(),
        agent_version: "0.1.0".into(),
        restic_version: "0.18.0".into(),
        outbox_depth: 0,
        every_secs: 0,
    };
    let subject = AgentSubject {
        agent,
        channel: Channel::Heartbeat,
    };
    let js = async_nats::jetstream::new(f.client.clone());
    js.publish(subject.to_string(), beat.to_wire().expect("encodes").into())
        .await
        .expect("published")
        .await
        .expect("stored");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let came_online = |events: &[fleet_events::store::Stored]| {
        events.iter().any(|s| {
            matches!(&s.envelope.event, Event::Agent { agent: a, event: AgentEvent::CameOnline { .. } } if *a == agent)
        })
    };
    let events = log(&f.store, &subject::all_events()).await;
    assert!(!came_online(&events), "a standby records nothing");

    // The holder stops; the standby takes over and records what it heard.
    holder.stop().await;
    eventually(
        "the agent recorded online",
        Duration::from_secs(15),
        || async {
            let events = log(&f.store, &subject::all_events()).await;
            if came_online(&events) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(events.len())
            }
        },
    )
    .await;
    stop(&shutdown, [standby]).await;
}
