//! Running services: one (`fleet serve <service>`) or all of them (`fleet up`), each on its
//! own task, all stopped by one cancellation token; each registers its counters at zero
//! as it starts.

use std::net::SocketAddr;

use anyhow::Context;
use fleet_events::store::EventStore;
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;

use crate::lease::{Held, Lease};

use crate::clock::Clock;
use crate::dispatcher::DispatcherConfig;
use crate::retry::CircuitConfig;

/// The services of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// NATS authorization from the agents' keys; agents' task consumers.
    Access,
    /// Policies and assignments to tasks.
    Scheduler,
    /// Failures to retries, exhaustion and circuit breakers.
    Retry,
    /// Agents' reports to task events.
    Intake,
    /// Tasks to agents with room; heartbeats and leases.
    Dispatcher,
    /// Agents' registrations with enrollment tokens.
    Registrar,
    /// Read models from the log, and the queries they answer.
    Projector,
    /// The operator HTTP API.
    Api,
    /// Notification rules to webhooks and chat; overdue policies.
    Notifier,
}

impl Service {
    /// Every service `fleet up` runs.
    pub const ALL: [Service; 9] = [
        Service::Access,
        Service::Scheduler,
        Service::Dispatcher,
        Service::Intake,
        Service::Retry,
        Service::Registrar,
        Service::Projector,
        Service::Api,
        Service::Notifier,
    ];

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Access => "access",
            Service::Scheduler => "scheduler",
            Service::Retry => "retry",
            Service::Intake => "intake",
            Service::Dispatcher => "dispatcher",
            Service::Registrar => "registrar",
            Service::Projector => "projector",
            Service::Api => "api",
            Service::Notifier => "notifier",
        }
    }
}

/// Settings the services share.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub clock: Clock,
    pub circuit: CircuitConfig,
    pub dispatcher: DispatcherConfig,
    /// Where the projector keeps its read models (sled); required by the projector.
    pub projections_dir: Option<std::path::PathBuf>,
    /// Days of the log's clock the projector keeps ended tasks and runs (`--history-days`;
    /// their per-day totals stay).
    pub history_days: u32,
    /// Where the API listens; required by the API.
    pub api_addr: Option<SocketAddr>,
    /// How the API slows failed authentications.
    pub api_throttle: crate::api::ThrottlePolicy,
    /// The API's certificate and key: HTTPS only when given.
    pub api_tls: Option<crate::api::https::TlsFiles>,
    /// What the access service renders and whom it tells; `None`: it only creates the
    /// agents' task consumers.
    pub access: Option<crate::access::AccessConfig>,
    /// The notifier's secrets, CA and limits.
    pub notifier: crate::notifier::NotifierSettings,
    /// Where services keep snapshots of their folded state (`--snapshot-dir`); off: every
    /// start replays the log.
    pub snapshots: fleet_runtime::snapshot::Snapshots,
}

/// Runs one service until `shutdown` is cancelled.
pub async fn run(
    service: Service,
    store: EventStore,
    config: ServiceConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(service = service.name(), "service starting");
    crate::telemetry::metrics_catalog::register(service);
    let name = service.name();
    let context = || format!("the {name} service stopped");
    match service {
        Service::Access => {
            let access = config.access.unwrap_or(crate::access::AccessConfig {
                out: None,
                render: crate::access::render::RenderConfig {
                    control_keys: Vec::new(),
                    anonymous_enroll: true,
                },
                reload: crate::access::Reload::Never,
            });
            crate::access::run(store, access, shutdown)
                .await
                .with_context(context)?
        }
        Service::Scheduler => {
            let (clock, snapshots) = (config.clock, config.snapshots);
            under_lease(&store, "scheduler", &shutdown, |held| {
                let (store, clock, snapshots) = (store.clone(), clock.clone(), snapshots.clone());
                crate::scheduler::run(store, clock, held, snapshots, shutdown.clone())
            })
            .await
            .with_context(context)?
        }
        Service::Retry => {
            let (clock, circuit, snapshots) = (config.clock, config.circuit, config.snapshots);
            crate::retry::run(store, clock, circuit, snapshots, shutdown)
                .await
                .with_context(context)?
        }
        Service::Intake => crate::intake::run(store, config.clock, shutdown)
            .await
            .with_context(context)?,
        Service::Dispatcher => {
            let (clock, dispatcher) = (config.clock, config.dispatcher);
            let snapshots = config.snapshots;
            under_lease(&store, "dispatcher", &shutdown, |held| {
                let (store, clock, config) = (store.clone(), clock.clone(), dispatcher.clone());
                let (snapshots, shutdown) = (snapshots.clone(), shutdown.clone());
                crate::dispatcher::run(store, clock, config, held, snapshots, shutdown)
            })
            .await
            .with_context(context)?
        }
        Service::Registrar => crate::enroll::run(store, config.clock, shutdown)
            .await
            .with_context(context)?,
        Service::Projector => {
            let dir = config.projections_dir.context(
                "the projector needs a directory for its read models (--projections-dir)",
            )?;
            crate::projector::run(store, config.clock, &dir, config.history_days, shutdown)
                .await
                .with_context(context)?
        }
        Service::Api => {
            let addr = config
                .api_addr
                .context("the API needs an address to listen on (--api-addr)")?;
            // The API shows this process's metrics on /metrics.
            if let Err(error) = install_metrics(None) {
                tracing::warn!(%error, "no metrics on /metrics");
            }
            crate::api::run(
                store,
                config.clock,
                addr,
                config.api_throttle,
                config.api_tls.as_ref(),
                shutdown,
            )
            .await
            .with_context(context)?
        }
        Service::Notifier => crate::notifier::run(store, config.clock, config.notifier, shutdown)
            .await
            .with_context(context)?,
    }
    tracing::info!(service = service.name(), "service stopped");
    Ok(())
}

/// Runs a leased service (`work`, given whether this instance holds lease `name`) until
/// `shutdown`, then releases the lease so a standby takes over at once. An error from
/// `work` (NATS failing over while it opened the log) is logged and `work` starts again:
/// the lease stays queued meanwhile.
async fn under_lease<F, Fut, E>(
    store: &EventStore,
    name: &str,
    shutdown: &CancellationToken,
    mut work: F,
) -> Result<(), E>
where
    F: FnMut(Held) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let lease = Lease::spawn(store, name);
    let result = loop {
        match work(lease.held()).await {
            Err(error) if !shutdown.is_cancelled() => {
                tracing::warn!(lease = name, %error, "service failed; starting it again");
                tokio::select! {
                    () = shutdown.cancelled() => break Ok(()),
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
            result => break result,
        }
    };
    lease.stop().await;
    result
}

/// Runs `services` side by side until `shutdown` is cancelled or one of them fails, which
/// stops the others.
pub async fn run_all(
    services: &[Service],
    store: EventStore,
    config: ServiceConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel();
    for service in services {
        let (store, config, shutdown, failed) = (
            store.clone(),
            config.clone(),
            shutdown.clone(),
            failed_tx.clone(),
        );
        let service = *service;
        tracker.spawn(async move {
            if let Err(e) = run(service, store, config, shutdown.clone()).await {
                let _ = failed.send(e);
                shutdown.cancel();
            }
        });
    }
    tracker.close();
    drop(failed_tx);
    tracker.wait().await;
    match failed_rx.recv().await {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Installs this process's Prometheus recorder, serving it on `listener` if one is given
/// (see [`crate::telemetry::install`] and [`crate::telemetry::bind`]).
pub fn install_metrics(listener: Option<tokio::net::TcpListener>) -> anyhow::Result<()> {
    crate::telemetry::install(listener)
}
