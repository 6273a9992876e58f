//! The event endpoints: `GET /v1/events` (one aggregate's history, or the caller's tenant's
//! whole log, filtered by time) and `GET /v1/events/stream` (the tenant's events as they
//! are appended, as server-sent events, resumable with `Last-Event-ID`).
//!
//! The tenant is always the caller's: every read is under `fleet.evt.<tenant>.`, so another
//! tenant's aggregate simply has no history here. A stream ends when its client goes away,
//! when its token is revoked, or when the API shuts down.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::sse::{Event as Frame, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fleet_events::enroll::TokenText;
use fleet_events::event::{Event, TenantEvent};
use fleet_events::ids::TenantId;
use fleet_events::store::{EventStore, ReadError, Stored};
use fleet_events::subject::{self, AggregateId, EventSubject};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::event_json::EventJson;
use fleet_identity::tenant;
use fleet_runtime::follow::Follower;
use tokio_util::sync::CancellationToken;

/// Events a listing returns when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 1000;
/// Most events a listing returns.
pub const MAX_LIMIT: usize = 10_000;
/// How often an idle stream sends `: keepalive`.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// `GET /v1/events` and `GET /v1/events/stream`.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/v1/events", get(list))
        .route("/v1/events/stream", get(stream))
}

/// `GET /v1/events` parameters, as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    agent: Option<String>,
    policy: Option<String>,
    task: Option<String>,
    repo: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

/// What a listing reads: one aggregate or the whole tenant, the events that occurred in
/// `[since, until)`, at most `limit` of them (the first ones, in log order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selection {
    aggregate: Option<AggregateId>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: usize,
}

impl Selection {
    fn contains(&self, at: DateTime<Utc>) -> bool {
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at < until)
    }
}

/// Checks the parameters: at most one aggregate, valid ids, a window that is not reversed,
/// a limit from 1 to [`MAX_LIMIT`].
fn select(params: ListParams) -> Result<Selection, ApiError> {
    let named = [
        ("agent", params.agent),
        ("policy", params.policy),
        ("task", params.task),
        ("repo", params.repo),
    ];
    let mut named = named
        .into_iter()
        .filter_map(|(kind, id)| id.map(|id| (kind, id)));
    let aggregate = match (named.next(), named.next()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "name at most one of agent, policy, task and repo",
            ));
        }
        (Some((kind, id)), None) => Some(aggregate(kind, &id)?),
        (None, _) => None,
    };
    if let (Some(since), Some(until)) = (params.since, params.until)
        && since > until
    {
        return Err(ApiError::bad_request("since must not be after until"));
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    Ok(Selection {
        aggregate,
        since: params.since,
        until: params.until,
        limit,
    })
}

fn aggregate(kind: &str, id: &str) -> Result<AggregateId, ApiError> {
    let bad = |_| ApiError::bad_request(format!("{id:?} is not a {kind} id"));
    Ok(match kind {
        "agent" => AggregateId::Agent(id.parse().map_err(bad)?),
        "policy" => AggregateId::Policy(id.parse().map_err(bad)?),
        "task" => AggregateId::Task(id.parse().map_err(bad)?),
        _ => AggregateId::Repo(id.parse().map_err(bad)?),
    })
}

/// The answer of `GET /v1/events`.
#[derive(Debug, Serialize)]
struct Listing {
    events: Vec<EventJson>,
}

async fn list(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Listing>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let selection = select(params)?;
    let events = match &selection.aggregate {
        Some(aggregate) => {
            let stored = history(&api.store, &caller.tenant, aggregate.clone()).await?;
            if stored.is_empty() {
                let kind = aggregate.kind().token();
                return Err(ApiError::not_found(format!("no such {kind}")));
            }
            stored
                .iter()
                .filter(|s| selection.contains(s.envelope.at))
                .take(selection.limit)
                .map(EventJson::from)
                .collect()
        }
        None => tenant_log(&api.store, &caller.tenant, &selection).await?,
    };
    Ok(Json(Listing { events }))
}

/// Every event of `aggregate` under `tenant`, in order (none for another tenant's).
pub(super) async fn history(
    store: &EventStore,
    tenant: &TenantId,
    aggregate: AggregateId,
) -> Result<Vec<Stored>, ApiError> {
    let subject = EventSubject {
        tenant: tenant.clone(),
        aggregate,
    };
    let history = store.history(&subject).await.map_err(unreadable)?;
    Ok(history.events)
}

/// The first events of the tenant's log that `selection` takes, in log order.
async fn tenant_log(
    store: &EventStore,
    tenant: &TenantId,
    selection: &Selection,
) -> Result<Vec<EventJson>, ApiError> {
    let mut log = store
        .replay(&subject::tenant_events(tenant), 1)
        .await
        .map_err(unreadable)?;
    let mut events = Vec::new();
    while events.len() < selection.limit {
        match log.next().await {
            None => break,
            Some(Ok(stored)) if selection.contains(stored.envelope.at) => {
                events.push(EventJson::from(&stored));
            }
            Some(Ok(_)) => {}
            Some(Err(ReadError::Undecodable {
                seq,
                subject,
                error,
            })) => passed_over(seq, &subject, &error),
            Some(Err(e)) => return Err(unreadable(e)),
        }
    }
    Ok(events)
}

fn unreadable(error: ReadError) -> ApiError {
    ApiError::unavailable(format!("cannot read the event log: {error}"))
}

fn passed_over(seq: u64, subject: &str, error: &dyn std::fmt::Display) {
    metrics::counter!("fleet_undecodable_events_total", "service" => "api").increment(1);
    tracing::warn!(seq, %subject, %error, "passing over an undecodable event");
}

async fn stream(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Frame, axum::Error>>>, ApiError> {
    let token = bearer(&headers)?;
    let filter = subject::tenant_events(&caller.tenant);
    let from = match last_event_id(&headers)? {
        Some(seq) => seq.saturating_add(1),
        None => api.store.last_sequence(&filter).await.map_err(unreadable)? + 1,
    };
    let log = Follower::open_at(api.store.clone(), filter, "api", from)
        .await
        .map_err(unreadable)?;
    tracing::debug!(tenant = %caller.tenant, from, "event stream opened");
    let stopped = api.shutdown.clone().cancelled_owned();
    let live = Live {
        store: api.store,
        caller,
        token,
        log,
        shutdown: api.shutdown,
    };
    let frames = futures::stream::unfold(live, |mut live| async move {
        let stored = live.next().await?;
        Some((frame(&stored), live))
    })
    .take_until(stopped);
    let keep_alive = KeepAlive::new().interval(KEEP_ALIVE).text("keepalive");
    Ok(Sse::new(frames).keep_alive(keep_alive))
}

/// One SSE frame: `id: <seq>`, `event: <type>`, `data: <Event JSON>`.
fn frame(stored: &Stored) -> Result<Frame, axum::Error> {
    let event = EventJson::from(stored);
    Frame::default()
        .id(stored.seq.to_string())
        .event(event.event_type)
        .json_data(&event)
}

/// The caller's token again (the `Caller` extractor has accepted it already), so that the
/// stream can end once it is revoked.
fn bearer(headers: &HeaderMap) -> Result<TokenText, ApiError> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|text| TokenText::parse(text).ok())
        .ok_or_else(|| ApiError::unauthorized("token not accepted"))
}

/// The sequence the client saw last, from `Last-Event-ID`.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event's seq"))
}

/// A client's position in its tenant's log while it streams.
struct Live {
    store: EventStore,
    caller: Caller,
    token: TokenText,
    /// The tenant's events from where the client starts: undecodable ones passed over
    /// (counted), a broken subscription reopened where it stopped.
    log: Follower,
    shutdown: CancellationToken,
}

impl Live {
    /// The next event; `None` once the caller's token is revoked (or cannot be checked)
    /// or the API stops.
    async fn next(&mut self) -> Option<Stored> {
        let stored = self.log.next(&self.shutdown).await?;
        if is_revocation(&stored.envelope.event) && !self.still_allowed().await {
            tracing::info!(tenant = %self.caller.tenant, "token revoked; event stream ended");
            return None;
        }
        Some(stored)
    }

    /// Whether the caller's token is still live with its role (`&mut`: a `Live` is `Send`,
    /// not `Sync`).
    async fn still_allowed(&mut self) -> bool {
        match tenant::book(&self.store, &self.caller.tenant).await {
            Ok((book, _)) => book.check(&self.token, &[self.caller.role]).is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-check a streaming token");
                false
            }
        }
    }
}

fn is_revocation(event: &Event) -> bool {
    matches!(event, Event::Tenant(TenantEvent::TokenRevoked { .. }))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, StatusCode, Uri};
    use fleet_events::ids::{AgentId, TaskId};

    use super::*;

    fn selection(query: &str) -> Result<Selection, ApiError> {
        let uri: Uri = format!("/v1/events?{query}").parse().expect("uri");
        let Query(params) = Query::<ListParams>::try_from_uri(&uri)
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        select(params)
    }

    fn refused(query: &str) -> String {
        match selection(query) {
            Err(e) if e.status == StatusCode::BAD_REQUEST => e.message,
            other => panic!("{query:?} gave {other:?}"),
        }
    }

    #[test]
    fn no_filter_is_the_whole_tenant_with_the_default_limit() {
        let s = selection("").expect("valid");
        assert_eq!(s.aggregate, None);
        assert_eq!(s.limit, DEFAULT_LIMIT);
        assert_eq!(selection("limit=10000").expect("valid").limit, MAX_LIMIT);
    }

    #[test]
    fn one_aggregate_filter_names_its_aggregate() {
        let task = TaskId::generate();
        let s = selection(&format!("task={task}&limit=5")).expect("valid");
        assert_eq!(s.aggregate, Some(AggregateId::Task(task)));
        assert_eq!(s.limit, 5);
        let agent = AgentId::generate();
        let s = selection(&format!("agent={agent}")).expect("valid");
        assert_eq!(s.aggregate, Some(AggregateId::Agent(agent)));
    }

    #[test]
    fn bad_parameters_are_refused_with_the_reason() {
        let (agent, task) = (AgentId::generate(), TaskId::generate());
        assert!(refused(&format!("agent={agent}&task={task}")).contains("at most one"));
        assert!(refused("policy=nightly").contains("not a policy id"));
        assert!(refused("repo=").contains("not a repo id"));
        assert!(refused("limit=10001").contains("limit"));
        assert!(refused("limit=0").contains("limit"));
        assert!(refused("limit=-1").contains("limit"));
        assert!(refused("since=yesterday").contains("since"));
        assert!(refused("tsk=1").contains("tsk"));
        let reversed = "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z";
        assert!(refused(reversed).contains("until"));
    }

    #[test]
    fn the_window_includes_since_and_excludes_until() {
        let s = selection("since=2026-01-01T00:00:00Z&until=2026-01-01T00:01:00Z").expect("ok");
        let at = |secs: i64| DateTime::from_timestamp(1_767_225_600 + secs, 0).expect("time");
        assert!(!s.contains(at(-1)));
        assert!(s.contains(at(0)));
        assert!(s.contains(at(59)));
        assert!(!s.contains(at(60)));
        assert!(selection("").expect("ok").contains(at(0)));
    }

    #[test]
    fn last_event_id_is_a_sequence_number() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).expect("none"), None);
        headers.insert("last-event-id", HeaderValue::from_static(" 42 "));
        assert_eq!(last_event_id(&headers).expect("seq"), Some(42));
        headers.insert("last-event-id", HeaderValue::from_static("abc"));
        assert!(last_event_id(&headers).is_err());
    }

    #[test]
    fn only_a_revocation_makes_a_stream_recheck_its_token() {
        let revoked = Event::Tenant(TenantEvent::TokenRevoked {
            token: fleet_events::ids::TokenId::generate(),
        });
        assert!(is_revocation(&revoked));
        let created = Event::Tenant(TenantEvent::Created { name: "x".into() });
        assert!(!is_revocation(&created));
    }
}
