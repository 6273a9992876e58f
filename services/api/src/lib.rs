//! The operator HTTP API (axum), versioned under `/v1`, JSON in camelCase. Reads go to the
//! projector as NATS queries (the API never opens sled); every request is authenticated
//! with a tenant bearer token and sees only that tenant.
//!
//! Writes run commands of [`fleet_command`] against the event log (admin tokens only;
//! notification rules in `write_rule`, their reads and the notification log in
//! `read_notify`);
//! `/metrics` shows this process's Prometheus metrics, requests counted per route;
//! `/v1/openapi.json` is the API's OpenAPI document (no token needed); `/` and `/ui/` serve
//! the operator dashboard's embedded files (no token needed: the page reads `/v1` with one).
//! Failed authentications are answered late once a client IP has failed too often
//! ([`Throttle`]); the API is served with each connection's peer address for that, by
//! its own connection loop ([`conn`]), which also answers oversized headers in JSON.

mod auth;
mod browse;
mod conn;
mod error;
mod event_json;
mod events;
pub mod https;
mod openapi;
use fleet_api_model::notify_json;
mod progress;
mod read;
mod read_notify;
pub mod self_signed;
mod throttle;
mod ui;
mod write;
mod write_policy;
mod write_request;
mod write_rule;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use fleet_events::store::EventStore;
use fleet_runtime::clock::Clock;
use tokio_util::sync::CancellationToken;

pub use auth::Caller;
pub use error::ApiError;
pub use throttle::{Throttle, ThrottlePolicy};

/// What every handler shares.
#[derive(Clone)]
pub struct Api {
    pub store: EventStore,
    /// The time commands are decided at (the system clock but in scenarios).
    pub clock: Clock,
    /// Cancelled when the API stops: event streams end then, so that a graceful shutdown
    /// does not wait for their clients to leave.
    pub shutdown: CancellationToken,
    /// Failed authentications per client IP (never locked across an `.await`).
    pub throttle: Arc<Mutex<Throttle>>,
}

/// The API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/", get(ui::index))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/agents", get(read::agents).post(write::register))
        .route("/v1/agents/{id}", get(read::agent))
        .route("/v1/agents/{id}/backoff-status", get(read::backoff_status))
        .route(
            "/v1/agents/{id}/settings",
            axum::routing::patch(write::settings),
        )
        .route("/v1/agents/{id}/decommission", post(write::decommission))
        .route("/v1/tasks", get(read::tasks))
        .route("/v1/tasks/{id}", get(read::task))
        .route("/v1/tasks/{id}/cancel", post(write::cancel))
        .route("/v1/tasks/{id}/progress", get(progress::stream))
        .route("/v1/runs", get(read::runs))
        .route("/v1/history", get(read::history))
        .route(
            "/v1/policies",
            get(read::policies).post(write_policy::create),
        )
        .route("/v1/policies/apply", post(write_policy::apply))
        .route(
            "/v1/policies/{id}",
            get(read::policy)
                .put(write_policy::update)
                .delete(write_policy::delete),
        )
        .route("/v1/policies/{id}/pause", post(write_policy::pause))
        .route("/v1/policies/{id}/resume", post(write_policy::resume))
        .route("/v1/policies/{id}/run", post(write_policy::run_now))
        .route("/v1/policies/{id}/refresh", post(write_request::refresh))
        .route("/v1/restores", post(write_request::restore))
        .route("/v1/snapshots/{id}/ls", get(browse::ls))
        .route(
            "/v1/policies/{id}/agents/{agent}",
            post(write_policy::assign).delete(write_policy::unassign),
        )
        .route("/v1/repositories", get(read::repos))
        .route("/v1/repositories/{id}/snapshots", get(read::repo_snapshots))
        .route("/v1/snapshots", get(read::snapshots))
        .route("/v1/summary", get(read::summary))
        .route(
            "/v1/rules",
            get(read_notify::rules).post(write_rule::define),
        )
        .route(
            "/v1/rules/{id}",
            get(read_notify::rule).delete(write_rule::delete),
        )
        .route("/v1/rules/{id}/test", post(write_rule::test))
        .route("/v1/notifications", get(read_notify::notifications))
        .merge(events::routes())
        .merge(ui::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (see /v1/openapi.json)",
            )
        })
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::extract::DefaultBodyLimit::max(error::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(conn::limit_headers))
        .layer(axum::middleware::from_fn(count_request))
        .with_state(api)
}

/// Counts each request by method, route template and status, and times it.
async fn count_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("fleet_api_requests_total", &labels).increment(1);
    metrics::histogram!("fleet_api_request_seconds", &labels[..2])
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: this process's metrics in the Prometheus text format.
async fn metrics_text() -> (StatusCode, String) {
    match fleet_runtime::metrics_text::text() {
        Some(text) => (StatusCode::OK, text),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no metrics recorder is installed in this process\n".to_owned(),
        ),
    }
}

/// Ready when connected to NATS.
async fn ready(axum::extract::State(api): axum::extract::State<Api>) -> (StatusCode, &'static str) {
    match api.store.jetstream().client().connection_state() {
        async_nats::connection::State::Connected => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not connected to NATS"),
    }
}

/// Serves the API on `addr` until `shutdown`, slowing failed authentications by
/// `throttle`; over HTTPS only when `tls` is given.
pub async fn run(
    store: EventStore,
    clock: Clock,
    addr: SocketAddr,
    throttle: ThrottlePolicy,
    tls: Option<&https::TlsFiles>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Read before binding: a bad certificate is told at once, with its file.
    let tls = tls.map(https::server_config).transpose()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    serve_on(store, clock, listener, throttle, tls, shutdown).await
}

/// Serves the API on `listener`, already bound (tests bind port 0 and keep the listener,
/// so no other process can take the port between choosing and listening), until
/// `shutdown`; over HTTPS only when `tls` is given.
pub async fn serve(
    store: EventStore,
    clock: Clock,
    listener: tokio::net::TcpListener,
    throttle: ThrottlePolicy,
    tls: Option<&https::TlsFiles>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = tls.map(https::server_config).transpose()?;
    serve_on(store, clock, listener, throttle, tls, shutdown).await
}

async fn serve_on(
    store: EventStore,
    clock: Clock,
    listener: tokio::net::TcpListener,
    throttle: ThrottlePolicy,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("the API's address")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "API listening");
    let api = Api {
        store,
        clock,
        shutdown: shutdown.clone(),
        throttle: Arc::new(Mutex::new(Throttle::new(throttle))),
    };
    let app = router(api);
    match tls {
        None => conn::serve(listener, app, shutdown).await,
        Some(config) => {
            let listener = https::TlsListener::new(listener, config, shutdown.clone())?;
            conn::serve(listener, app, shutdown).await;
        }
    }
    Ok(())
}
