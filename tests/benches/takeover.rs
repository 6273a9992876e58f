//! Dispatcher failover with a long log, in one run against one nats-server.
//!
//! `cargo bench -p fleet-tests --bench takeover` (events: FLEET_BENCH_EVENTS, default
//! 1,000,000; `NATS_SERVER_BIN` picks the server). Appends a realistic log (see `mix`),
//! registers one agent that heartbeats every second, then measures, each time from the
//! moment a new task is due to the moment it is dispatched:
//! - cold start: a dispatcher started on the log (replay of every event, then the lease);
//! - takeover: the holder killed (its lease never released) while a warm standby runs:
//!   the lease's TTL, then the standby acts with no replay;
//! - handover: the holder stopped (its lease released) while a warm standby runs.
//!
//! and prints them with how the cold start compares to a handover: what a standby that
//! replayed the log at takeover (the earlier design) would have cost on top of the TTL.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_control::clock::Clock;
use fleet_control::serve::{self, Service, ServiceConfig};
use fleet_events::envelope::{Envelope, SCHEMA_VERSION};
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::protocol::{Heartbeat, KindCounts};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::streams::{LEASE_TTL, StreamOptions};
use fleet_events::subject::{self, AgentSubject, Channel};
use fleet_tests::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod mix;
use mix::mix;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A dispatcher instance on its own connection.
async fn dispatcher(url: &str, shutdown: &CancellationToken) -> JoinHandle<()> {
    let client = async_nats::connect(url).await.expect("connect");
    let store = EventStore::new(client);
    let config = ServiceConfig {
        clock: Clock::System,
        circuit: Default::default(),
        dispatcher: Default::default(),
        projections_dir: None,
        history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
        api_addr: None,
        api_throttle: Default::default(),
        api_tls: None,
        access: None,
        notifier: Default::default(),
        snapshots: Default::default(),
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        serve::run(Service::Dispatcher, store, config, shutdown)
            .await
            .expect("dispatcher runs");
    })
}

/// Appends a task of a new policy for `agent`, due now; how long until it is dispatched.
async fn time_to_dispatch(store: &EventStore, tenant: &TenantId, agent: AgentId) -> Duration {
    let policy = PolicyId::generate();
    let fire_at = Utc::now();
    let task = TaskId::for_fire(policy, agent, fire_at);
    let event = Event::Task {
        task,
        event: TaskEvent::Scheduled {
            policy,
            agent,
            fire_at,
            run_at: fire_at,
            spec: Box::new(samples::policy_spec()),
        },
    };
    let envelope = Envelope::new(tenant.clone(), fire_at, event);
    let start = Instant::now();
    let msg_id = envelope.id.to_string();
    let appended = store
        .append(Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::Any,
        })
        .await
        .expect("scheduled");
    let subject = envelope.subject();
    loop {
        let last = store.last_sequence(&subject).await.expect("task subject");
        if last > appended.seq {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Heartbeats of `agent` every second until `shutdown`.
fn heartbeats(
    client: async_nats::Client,
    tenant: TenantId,
    agent: AgentId,
    shutdown: CancellationToken,
) {
    let js = async_nats::jetstream::new(client);
    let subject = AgentSubject {
        agent,
        channel: Channel::Heartbeat,
    }
    .to_string();
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            let beat = Heartbeat {
                schema: SCHEMA_VERSION,
                agent,
                tenant: tenant.clone(),
                at: Utc::now(),
                running: KindCounts::default(),
                queued: KindCounts::default(),
                agent_version: "bench".into(),
                restic_version: "bench".into(),
                outbox_depth: 0,
                every_secs: 0,
            };
            let payload = beat.to_wire().expect("encodes");
            if let Ok(ack) = js.publish(subject.clone(), payload.into()).await {
                let _ = ack.await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn main() -> ExitCode {
    let n = env_or("FLEET_BENCH_EVENTS", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let server = NatsServer::start().expect("nats-server");
        let url = server.url();
        let client = async_nats::connect(&url).await.expect("connect");
        let version = client.server_info().version;
        let store = EventStore::new(client.clone());
        store
            .ensure_streams(&StreamOptions::default())
            .await
            .expect("streams");

        let mix = mix(n);
        let appended = mix.append(&store).await;
        let tenant = mix.tenants[0].clone();
        drop(mix);

        let agent = AgentId::generate();
        let registered = Event::Agent {
            agent,
            event: AgentEvent::Registered {
                name: "bench".into(),
                hostname: "bench".into(),
                settings: AgentSettings {
                    max_concurrent: 1000,
                    ..AgentSettings::default()
                },
            },
        };
        let envelope = Envelope::new(tenant.clone(), Utc::now(), registered);
        let msg_id = envelope.id.to_string();
        store
            .append(Append {
                envelope: &envelope,
                msg_id: &msg_id,
                expect: Expect::Any,
            })
            .await
            .expect("registered");
        let beating = CancellationToken::new();
        heartbeats(client.clone(), tenant.clone(), agent, beating.clone());
        let last = store
            .last_sequence(&subject::all_events())
            .await
            .expect("end");
        println!(
            "dispatcher failover (nats-server {version}): a log of {last} events, appended in {appended:.1?}"
        );

        // Cold start: one instance, nothing warm.
        let a_stop = CancellationToken::new();
        let started = Instant::now();
        let a = dispatcher(&url, &a_stop).await;
        time_to_dispatch(&store, &tenant, agent).await;
        let cold = started.elapsed();
        println!(
            "  cold start (replay {last} events, take the lease, dispatch): {:.2} s",
            cold.as_secs_f64()
        );

        // A warm standby joins; give it the cold start's time (and more) to catch up.
        let b_stop = CancellationToken::new();
        let b = dispatcher(&url, &b_stop).await;
        tokio::time::sleep(cold * 2 + Duration::from_secs(5)).await;
        a.abort();
        let _ = a.await;
        let takeover = time_to_dispatch(&store, &tenant, agent).await;
        println!(
            "  takeover after the holder is killed (lease TTL {} s, then act): {:.2} s",
            LEASE_TTL.as_secs(),
            takeover.as_secs_f64()
        );

        // Another warm standby; the holder stops and releases its lease.
        let c_stop = CancellationToken::new();
        let c = dispatcher(&url, &c_stop).await;
        tokio::time::sleep(cold * 2 + Duration::from_secs(5)).await;
        b_stop.cancel();
        let handover = time_to_dispatch(&store, &tenant, agent).await;
        b.await.expect("stopped");
        println!(
            "  handover after the holder stops: {:.2} s",
            handover.as_secs_f64()
        );
        println!(
            "  a standby replaying the log at takeover would add about {:.1} s: {:.0}x a warm handover",
            (cold.saturating_sub(handover)).as_secs_f64(),
            cold.as_secs_f64() / handover.as_secs_f64().max(0.001)
        );
        c_stop.cancel();
        c.await.expect("stopped");
        beating.cancel();
        drop(server);
        ExitCode::SUCCESS
    })
}
