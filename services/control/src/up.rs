//! `fleet up`: restic-fleet on one machine. Starts a local nats-server unless a URL is
//! given, ensures the streams, and runs every service until SIGINT or SIGTERM; with
//! `--demo` also a local agent and a sample policy ([`crate::demo`]).
//!
//! The local server enforces per-agent credentials: the control plane connects with its
//! key (`DATA_DIR/control.nk`, created once), and the access service renders the
//! authorization config (`DATA_DIR/nats-auth.conf`) from the log and reloads the server.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use fleet_events::store::{EventStore, NatsServers};
use fleet_events::streams::StreamOptions;
use tokio_util::sync::CancellationToken;

use fleet_events::store::connect::{NatsAccess, load_or_create_key};

use crate::access::render::RenderConfig;
use crate::access::{AccessConfig, Reload};
use crate::demo::{self, DemoConfig};
use crate::local_nats::{AUTH_FILE, LocalNats, LocalNatsConfig};
use crate::serve::{Service, ServiceConfig, run_all};

/// What `fleet up` needs.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Use these NATS servers instead of starting one.
    pub nats_url: Option<NatsServers>,
    /// Where the local server keeps its store and log.
    pub data_dir: PathBuf,
    /// Port of the local server.
    pub nats_port: u16,
    pub streams: StreamOptions,
    pub services: ServiceConfig,
    /// Also run the demo: a local agent and a sample policy.
    pub demo: Option<DemoConfig>,
    /// The control plane's key for a server given by URL (the local server's is
    /// `DATA_DIR/control.nk`).
    pub nats_key_file: Option<PathBuf>,
    /// The CA of the server's TLS certificate.
    pub nats_ca_file: Option<PathBuf>,
    /// The local server's TLS certificate and key.
    pub nats_tls: Option<(PathBuf, PathBuf)>,
}

/// The control plane's key in the data directory.
pub const CONTROL_KEY_FILE: &str = "control.nk";
/// Where `--api-tls-self-signed` keeps its CA and certificate, in the data directory.
pub const API_TLS_DIR: &str = "api-tls";

/// The names a self-signed API certificate is made for: the loopback names, this
/// machine's hostname, the API's own IP when it listens on one, then `extra`, each once.
pub fn self_signed_names(api_addr: std::net::SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    names.push(hostname.trim().to_owned());
    if !api_addr.ip().is_unspecified() {
        names.push(api_addr.ip().to_string());
    }
    names.extend(extra.iter().map(|n| n.trim().to_owned()));
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// Runs until `shutdown` is cancelled, then stops what it started.
pub async fn run(mut config: UpConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut access = NatsAccess::tls(config.nats_ca_file.clone());
    if let Some(servers) = config.nats_url.clone() {
        if let Some(file) = &config.nats_key_file {
            access = access.with_seed_file(file)?;
        }
        return serve(&servers, &access, &config, shutdown).await;
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let key_file = config.data_dir.join(CONTROL_KEY_FILE);
    let control = load_or_create_key(&key_file).context("the control plane's NATS key")?;
    let render = RenderConfig {
        control_keys: vec![control.public_key()],
        anonymous_enroll: true,
    };
    let auth_file = config.data_dir.join(AUTH_FILE);
    // The access service renders the agents once it has caught up with the log; until
    // then (a first start, or a new control key) the control plane must get in.
    let current = std::fs::read_to_string(&auth_file).unwrap_or_default();
    if !current.contains(&control.public_key()) {
        crate::access::render_bootstrap(&render, &auth_file)?;
    }
    let local = LocalNats::start(&LocalNatsConfig {
        data_dir: config.data_dir.clone(),
        host: "127.0.0.1".into(),
        port: config.nats_port,
        binary: OsString::from("nats-server"),
        tls: config.nats_tls.clone(),
    })
    .await
    .context("starting the local nats-server")?;
    config.services.access = Some(AccessConfig {
        out: Some(auth_file),
        render,
        reload: local.pid().map_or(Reload::Never, Reload::Pid),
    });
    let servers = local.url().parse().context("the local nats-server's URL")?;
    let result = serve(&servers, &access.with_key(&control), &config, shutdown).await;
    local
        .stop()
        .await
        .context("stopping the local nats-server")?;
    tracing::info!("local nats-server stopped");
    result
}

async fn serve(
    servers: &NatsServers,
    access: &NatsAccess,
    config: &UpConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = access
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {servers}"))?;
    let store = EventStore::new(client);
    store
        .ensure_streams(&config.streams)
        .await
        .context("ensuring the JetStream streams")?;
    tracing::info!(nats = %servers, replicas = config.streams.replicas, "restic-fleet is up: streams ready");
    let Some(demo_config) = &config.demo else {
        return run_all(&Service::ALL, store, config.services.clone(), shutdown).await;
    };
    let services = tokio::spawn(run_all(
        &Service::ALL,
        store.clone(),
        config.services.clone(),
        shutdown.clone(),
    ));
    let demo = demo::run(&store, &servers.urls(), demo_config, shutdown.clone()).await;
    // A failed demo stops everything: `fleet up --demo` without its demo is not what was
    // asked for.
    shutdown.cancel();
    let services = services
        .await
        .map_err(|e| anyhow::anyhow!("the services panicked: {e}"))?;
    demo.context("the demo failed")?;
    services
}
