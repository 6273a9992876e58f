//! The control-plane services a scenario runs, each on its own task, all stopped by one
//! cancellation token.

use fleet_control::api::ThrottlePolicy;
use fleet_control::clock::{Clock, ManualClock};
use fleet_control::dispatcher::DispatcherConfig;
use fleet_control::retry::CircuitConfig;
use fleet_control::serve::{self, Service, ServiceConfig};
use fleet_events::store::EventStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Default settings on the system clock.
pub fn system() -> ServiceConfig {
    ServiceConfig {
        clock: Clock::System,
        circuit: CircuitConfig::default(),
        dispatcher: DispatcherConfig::default(),
        projections_dir: None,
        history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
        api_addr: None,
        api_throttle: ThrottlePolicy::default(),
        api_tls: None,
        access: None,
        notifier: Default::default(),
        snapshots: Default::default(),
    }
}

/// Default settings on `clock`.
pub fn manual(clock: &ManualClock) -> ServiceConfig {
    ServiceConfig {
        clock: Clock::Manual(clock.clone()),
        ..system()
    }
}

/// Starts `service` until `shutdown` is cancelled; the task panics if the service fails.
pub fn spawn_service(
    store: &EventStore,
    service: Service,
    config: ServiceConfig,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let (store, shutdown) = (store.clone(), shutdown.clone());
    tokio::spawn(async move {
        serve::run(service, store, config, shutdown)
            .await
            .unwrap_or_else(|e| panic!("the {} service failed: {e:#}", service.name()));
    })
}

/// A listener on a port of 127.0.0.1 the system chose, kept open for the API: no other
/// process can take the port between choosing and listening.
pub fn api_listener() -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    (listener, addr)
}

/// Runs the API on `listener`, deciding commands at `clock`'s time (failed authentications
/// slowed by `throttle`).
pub fn spawn_api(
    store: &EventStore,
    clock: Clock,
    listener: tokio::net::TcpListener,
    throttle: ThrottlePolicy,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let (store, shutdown) = (store.clone(), shutdown.clone());
    tokio::spawn(async move {
        // As `fleet serve api` does: the API shows this process's metrics on /metrics.
        fleet_control::serve::install_metrics(None).expect("the metrics recorder");
        fleet_control::api::serve(store, clock, listener, throttle, None, shutdown)
            .await
            .unwrap_or_else(|e| panic!("the API failed: {e:#}"));
    })
}

/// Starts each of `services` (a service listed twice runs twice) with `config`.
pub fn services(
    store: &EventStore,
    services: &[Service],
    config: &ServiceConfig,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    services
        .iter()
        .map(|service| spawn_service(store, *service, config.clone(), shutdown))
        .collect()
}

/// Cancels `shutdown` and joins `tasks` in order; a task that panicked fails the scenario.
pub async fn stop(shutdown: &CancellationToken, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
    shutdown.cancel();
    for task in tasks {
        task.await.expect("joined");
    }
}

/// The projector and the HTTP API, running on a free loopback port with a temporary
/// projections directory.
pub struct ServedApi {
    pub addr: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub services: Vec<JoinHandle<()>>,
    /// Held so the read models live as long as the scenario.
    pub projections: tempfile::TempDir,
}

/// Starts the projector and the API on `store` (the API may not be listening yet), with
/// failed authentications slowed as in production.
pub fn serve_api(store: &EventStore) -> ServedApi {
    serve_api_with(store, ThrottlePolicy::default())
}

/// [`serve_api`] with failed authentications slowed by `throttle`.
pub fn serve_api_with(store: &EventStore, throttle: ThrottlePolicy) -> ServedApi {
    let projections = tempfile::tempdir().expect("tempdir");
    let (listener, addr) = api_listener();
    let config = ServiceConfig {
        projections_dir: Some(projections.path().to_owned()),
        history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
        ..system()
    };
    let shutdown = CancellationToken::new();
    let services = vec![
        spawn_service(store, Service::Projector, config, &shutdown),
        spawn_api(store, Clock::System, listener, throttle, &shutdown),
    ];
    ServedApi {
        addr,
        shutdown,
        services,
        projections,
    }
}

/// A throttle that never slows anyone, for scenarios that send bad tokens on purpose to
/// every endpoint.
pub fn unthrottled() -> ThrottlePolicy {
    ThrottlePolicy {
        free: u32::MAX,
        ..ThrottlePolicy::default()
    }
}
