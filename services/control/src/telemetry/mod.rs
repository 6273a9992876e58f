//! The `fleet` process's metrics: the catalogue of every metric with its HELP text and
//! buckets ([`metrics_catalog`]), the per-agent, per-policy and per-repository gauges
//! rendered from the read models ([`fleet_state`]), the Prometheus recorder and the
//! `/metrics` listener that serves both.

pub use fleet_projector::fleet_state;
pub mod metrics_catalog;

use std::net::SocketAddr;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static METRICS: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Binds the `/metrics` listener on `addr`, so a taken address fails the start before
/// anything is installed. Must run inside the tokio runtime.
pub fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .with_context(|| format!("serving metrics on {addr}"))
}

/// Installs this process's Prometheus recorder, once, with every catalogued metric
/// described and every histogram's buckets; with a `listener` (see [`bind`]) also serves
/// it on `http://<listener>/metrics` (the API serves it on its own `/metrics` too). A
/// second call changes nothing. Must run inside the tokio runtime.
pub fn install(listener: Option<tokio::net::TcpListener>) -> anyhow::Result<()> {
    if METRICS.get().is_some() {
        if let Some(addr) = listener.and_then(|l| l.local_addr().ok()) {
            tracing::warn!(%addr, "metrics are installed already; not listening again");
        }
        return Ok(());
    }
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in metrics_catalog::BUCKETS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .with_context(|| format!("buckets of {name}"))?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    fleet_events::metrics_catalog::describe(fleet_events::metrics_catalog::CATALOG);
    fleet_events::metrics_catalog::describe(fleet_projections::metrics_catalog::CATALOG);
    fleet_events::metrics_catalog::describe(metrics_catalog::CATALOG);
    fleet_events::metrics_catalog::register_store();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let source = handle.clone();
    fleet_runtime::metrics_text::set_source(move || source.render() + &fleet_state::text());
    let _ = METRICS.set(handle);
    if let Some(listener) = listener {
        let app = axum::Router::new().route("/metrics", axum::routing::get(serve_text));
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the metrics listener stopped");
            }
        });
    }
    Ok(())
}

/// The Prometheus text of this process's metrics, if [`install`] ran: the recorder's
/// and the fleet gauges the projector last published.
pub fn text() -> Option<String> {
    fleet_runtime::metrics_text::text()
}

async fn serve_text() -> (
    axum::http::StatusCode,
    [(&'static str, &'static str); 1],
    String,
) {
    let content_type = [("content-type", "text/plain; version=0.0.4")];
    match text() {
        Some(text) => (axum::http::StatusCode::OK, content_type, text),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            content_type,
            "no metrics recorder is installed in this process\n".to_owned(),
        ),
    }
}
