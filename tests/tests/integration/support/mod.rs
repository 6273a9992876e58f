//! Shared scenario helpers: a started server with a connected store, sample events, the
//! event log (`events`), running services (`services`), the in-process agent (`agent`),
//! waiting for things (`wait`), HTTP and server-sent-events clients (`http`, `sse`), and
//! answers checked against the API's OpenAPI document (`openapi`).

pub mod agent;
pub mod browser;
mod events;
pub mod http;
pub mod openapi;
pub mod receiver;
mod services;
pub mod sse;
mod tenants;
mod wait;

pub use events::{
    append, append_at, delete_event_consumers, log, register, schedule, task_events, task_log,
};
pub use services::{
    api_listener, manual, serve_api, serve_api_with, services, spawn_api, spawn_service, stop,
    system, unthrottled,
};
pub use tenants::{TwoTenants, two_tenants};
pub use wait::{eventually, park_reason, parked, succeeded, task_event_seen};

use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::samples;
use fleet_events::store::{EventStore, NatsServers};
use fleet_events::streams::StreamOptions;
use fleet_tests::NatsServer;

/// Creates the streams replicated 3 times on a cluster, waiting for its JetStream meta
/// leader to be elected.
pub async fn ensure_replicated(store: &EventStore) {
    let replicated = StreamOptions {
        replicas: 3,
        ..StreamOptions::default()
    };
    eventually(
        "the streams, replicated 3 times",
        std::time::Duration::from_secs(30),
        || async {
            match store.ensure_streams(&replicated).await {
                Ok(()) => std::ops::ControlFlow::Break(()),
                // Until the JetStream meta leader is elected.
                Err(e) => std::ops::ControlFlow::Continue(e.to_string()),
            }
        },
    )
    .await;
}

/// The server as the list clients connect to.
pub fn servers(server: &NatsServer) -> NatsServers {
    server.url().parse().expect("the harness's URL")
}

/// Shows the services' logs in the test's output when `RUST_LOG` is set (for instance
/// `RUST_LOG=fleet_control=info`); silent otherwise.
pub fn log_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A running nats-server, a client on it and a store with the fleet streams.
pub struct Fleet {
    /// Held so the server lives as long as the scenario.
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub store: EventStore,
}

/// Connects to `url`, retrying while the server restarts.
pub async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .expect("connect to nats-server")
}

/// Starts a server and ensures the streams.
pub async fn fleet() -> Fleet {
    let server = NatsServer::start().expect("start nats-server");
    let client = connect(&server.url()).await;
    let store = EventStore::new(client.clone());
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("ensure streams");
    Fleet {
        server,
        client,
        store,
    }
}

/// The tenant of the scenarios.
pub fn tenant() -> TenantId {
    TenantId::new("acme").expect("valid")
}

/// An agent event of `agent` whose name carries `n`, so events are told apart.
pub fn agent_event(agent: AgentId, n: usize) -> Envelope {
    Envelope::new(
        tenant(),
        samples::at(n as i64),
        Event::Agent {
            agent,
            event: AgentEvent::CameOnline {
                agent_version: format!("0.1.{n}"),
                restic_version: "0.14.0".into(),
            },
        },
    )
}
