//! The operator HTTP API (axum), versioned under `/v1`, JSON in camelCase. Reads go to the
//! projector as NATS queries (the API never opens sled); every request is authenticated
//! with a tenant bearer token and sees only that tenant.
//!
//! Built so far: the read endpoints, `/healthz` and `/readyz`. Writes (policies, agent
//! settings, cancel), events and the OpenAPI document come next.

mod auth;
mod error;
mod read;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use fleet_events::store::EventStore;
use tokio_util::sync::CancellationToken;

pub use auth::Caller;
pub use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    pub store: EventStore,
}

/// The API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/v1/agents", get(read::agents))
        .route("/v1/agents/{id}", get(read::agent))
        .route("/v1/agents/{id}/backoff-status", get(read::backoff_status))
        .route("/v1/tasks", get(read::tasks))
        .route("/v1/tasks/{id}", get(read::task))
        .route("/v1/runs", get(read::runs))
        .route("/v1/policies", get(read::policies))
        .route("/v1/policies/{id}", get(read::policy))
        .route("/v1/repositories", get(read::repos))
        .route("/v1/summary", get(read::summary))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(api)
}

/// Ready when connected to NATS.
async fn ready(axum::extract::State(api): axum::extract::State<Api>) -> (StatusCode, &'static str) {
    match api.store.jetstream().client().connection_state() {
        async_nats::connection::State::Connected => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not connected to NATS"),
    }
}

/// Serves the API on `addr` until `shutdown`.
pub async fn run(
    store: EventStore,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "API listening");
    axum::serve(listener, router(Api { store }))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving the API")
}
