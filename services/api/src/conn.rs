//! The API's connection loop (plain TCP or TLS): hyper's HTTP/1 server, each request
//! given its peer's address, every connection finished gracefully on shutdown.
//!
//! Its own loop rather than `axum::serve` for one reason: header limits. hyper answers a
//! request whose headers pass its limits itself, with a 431 and an *empty* body, before
//! the API sees it. So hyper's limits are set well above the API's
//! ([`HYPER_MAX_HEADER_BYTES`], [`HYPER_MAX_HEADERS`]) and the API's own
//! ([`MAX_HEADER_BYTES`], [`MAX_HEADERS`]) are checked by [`limit_headers`], which answers
//! in the API's JSON shape. Only a request past hyper's limits still gets hyper's empty 431.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::error::ApiError;

/// The most header bytes (names and values) the API takes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields the API takes.
pub const MAX_HEADERS: usize = 100;
/// hyper's read buffer, which bounds a request's head (past it: hyper's empty 431).
const HYPER_MAX_HEADER_BYTES: usize = 1024 * 1024;
/// The most header fields hyper parses (past it: hyper's empty 431).
const HYPER_MAX_HEADERS: usize = 1000;
/// A client must send its request's head within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on every connection `listener` accepts until `shutdown`; then stops
/// accepting, lets each connection finish the request it is in, and returns.
pub async fn serve<L>(mut listener: L, app: Router, shutdown: CancellationToken)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(HYPER_MAX_HEADER_BYTES)
        .max_headers(HYPER_MAX_HEADERS)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        let stop = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%peer, %error, "API connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// A middleware: a request with more header bytes or fields than the API takes is
/// answered 431 in the API's JSON shape, saying the limits.
pub async fn limit_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADERS {
        let message = format!(
            "the request's headers are {bytes} bytes in {} fields; the API takes at most \
             {MAX_HEADER_BYTES} bytes in {MAX_HEADERS} fields",
            headers.len()
        );
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            message,
        )
        .into_response();
    }
    next.run(request).await
}
