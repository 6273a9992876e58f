//! Who is calling: a tenant bearer token (`Authorization: Bearer rft1.<tenant>.<hex>`)
//! checked against the tenant's token events on every request, so a revoked token stops
//! working at once. The tenant comes from the token alone, never from a header.
//!
//! A token not accepted (a guess, a revoked token) is answered only after the delay the
//! API's [`Throttle`](super::Throttle) sets for the client's IP; an accepted token never
//! waits. A request with no token guesses nothing: it is answered 401 at once and not
//! counted. A live token whose role may not read (an enrollment token) is 403, at once and
//! not counted: its holder is known, only not allowed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use fleet_events::enroll::TokenText;
use fleet_events::event::Role;
use fleet_events::ids::{TenantId, TokenId};

use super::Api;
use super::error::ApiError;
use fleet_identity::tenant;

/// Roles whose tokens may read through the API.
const READERS: [Role; 2] = [Role::Admin, Role::ReadOnly];
/// Every role: a live token of any of them is known, whatever it may do.
const ALL_ROLES: [Role; 3] = [Role::Admin, Role::ReadOnly, Role::Enroll];

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub role: Role,
    /// The token's id, which the log may name (never its secret).
    pub token: TokenId,
    /// The label it was issued with (may be empty).
    pub label: String,
}

impl Caller {
    /// Refuses a read-only caller a change.
    pub fn may_change(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::forbidden("this token may only read")),
        }
    }

    /// Who is calling, for the log: the token's label and id (`ops (token …)`).
    pub fn name(&self) -> String {
        match self.label.trim() {
            "" => format!("token {}", self.token),
            label => format!("{label} (token {})", self.token),
        }
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let refused = match authenticate(parts, api).await {
            Ok(caller) => return Ok(caller),
            Err(Refused::Counted(refused)) => refused,
            Err(Refused::AtOnce(refused)) => return Err(refused),
        };
        let delay = record_failure(api, client_ip(parts));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Err(refused)
    }
}

/// Why a request has no caller, and whether that counts as a failed guess.
enum Refused {
    /// A token that is not accepted: counted and slowed.
    Counted(ApiError),
    /// No token at all, a known token not allowed to read, or the tokens unreadable.
    AtOnce(ApiError),
}

/// The caller the request's token names, or why there is none.
async fn authenticate(parts: &Parts, api: &Api) -> Result<Caller, Refused> {
    let not_accepted = || Refused::Counted(ApiError::unauthorized("token not accepted"));
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            Refused::AtOnce(ApiError::unauthorized("send Authorization: Bearer <token>"))
        })?;
    let text = header.strip_prefix("Bearer ").ok_or_else(|| {
        Refused::Counted(ApiError::unauthorized("send Authorization: Bearer <token>"))
    })?;
    let token = TokenText::parse(text).map_err(|_| not_accepted())?;
    let (book, _) = tenant::book(&api.store, token.tenant())
        .await
        .map_err(|e| {
            Refused::AtOnce(ApiError::unavailable(format!(
                "cannot read the tenant's tokens: {e}"
            )))
        })?;
    let issued = book
        .check(&token, &ALL_ROLES)
        .filter(|_| book.exists)
        .ok_or_else(not_accepted)?;
    if !READERS.contains(&issued.role) {
        return Err(Refused::AtOnce(ApiError::forbidden(
            "an enrollment token only registers agents: it may not use the API (use an admin or read-only token)",
        )));
    }
    let label = book
        .tokens()
        .iter()
        .find(|(id, ..)| *id == issued.id)
        .map(|(_, _, label, _)| label.clone())
        .unwrap_or_default();
    Ok(Caller {
        tenant: token.tenant().clone(),
        role: issued.role,
        token: issued.id,
        label,
    })
}

/// The peer's IP; all peers share one when the router is served without connect info.
fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// Counts a failed authentication from `ip`; how long to wait before answering it.
fn record_failure(api: &Api, ip: IpAddr) -> Duration {
    let delay = api
        .throttle
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .failed(ip, Instant::now());
    metrics::counter!("fleet_api_auth_failures_total").increment(1);
    if !delay.is_zero() {
        metrics::counter!("fleet_api_auth_delayed_total").increment(1);
        tracing::debug!(%ip, delay_ms = delay.as_millis(), "failed authentication delayed");
    }
    delay
}
