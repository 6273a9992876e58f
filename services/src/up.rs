//! `fleet up`: restic-fleet on one machine. Starts a local nats-server unless a URL is
//! given, ensures the streams, and runs every service until SIGINT or SIGTERM; with
//! `--demo` also a local agent and a sample policy ([`crate::demo`]).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use fleet_events::store::EventStore;
use fleet_events::streams::StreamOptions;
use tokio_util::sync::CancellationToken;

use crate::demo::{self, DemoConfig};
use crate::local_nats::{LocalNats, LocalNatsConfig};
use crate::serve::{Service, ServiceConfig, run_all};

/// What `fleet up` needs.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Use this NATS server instead of starting one.
    pub nats_url: Option<String>,
    /// Where the local server keeps its store and log.
    pub data_dir: PathBuf,
    /// Port of the local server.
    pub nats_port: u16,
    pub streams: StreamOptions,
    pub services: ServiceConfig,
    /// Also run the demo: a local agent and a sample policy.
    pub demo: Option<DemoConfig>,
}

/// Runs until `shutdown` is cancelled, then stops what it started.
pub async fn run(config: UpConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let local = match &config.nats_url {
        Some(_) => None,
        None => Some(
            LocalNats::start(&LocalNatsConfig {
                data_dir: config.data_dir.clone(),
                host: "127.0.0.1".into(),
                port: config.nats_port,
                binary: OsString::from("nats-server"),
            })
            .await
            .context("starting the local nats-server")?,
        ),
    };
    let url = match (&config.nats_url, &local) {
        (Some(url), _) => url.clone(),
        (None, Some(local)) => local.url().to_owned(),
        (None, None) => unreachable!("a local server is started when no URL is given"),
    };
    let result = serve(&url, &config, shutdown).await;
    if let Some(local) = local {
        local
            .stop()
            .await
            .context("stopping the local nats-server")?;
        tracing::info!("local nats-server stopped");
    }
    result
}

async fn serve(url: &str, config: &UpConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    let store = EventStore::new(client);
    store
        .ensure_streams(&config.streams)
        .await
        .context("ensuring the JetStream streams")?;
    tracing::info!(nats = %url, replicas = config.streams.replicas, "restic-fleet is up: streams ready");
    let Some(demo_config) = &config.demo else {
        return run_all(&Service::ALL, store, config.services.clone(), shutdown).await;
    };
    let services = tokio::spawn(run_all(
        &Service::ALL,
        store.clone(),
        config.services.clone(),
        shutdown.clone(),
    ));
    let demo = demo::run(&store, url, demo_config, shutdown.clone()).await;
    // A failed demo stops everything: `fleet up --demo` without its demo is not what was
    // asked for.
    shutdown.cancel();
    let services = services
        .await
        .map_err(|e| anyhow::anyhow!("the services panicked: {e}"))?;
    demo.context("the demo failed")?;
    services
}
