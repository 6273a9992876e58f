//! `GET /v1/snapshots/{id}/ls`: one directory of a snapshot, a page at a time, listed by an
//! agent that holds the repository's secret (`restic ls` on the agent, request/reply on
//! `fleet.agent.<agent>.browse`). Listings are never stored: each page is asked for anew.
//!
//! The policy (id or name) names the repository and the secret; the agent (id or name)
//! must be the caller's tenant's and in service. The agent answers only requests of its own
//! tenant and only with names, kinds, sizes and times.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use fleet_events::browse::{BrowseReply, BrowseRequest, DEFAULT_PAGE};
use fleet_events::codec::Wire;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::subject::{AgentSubject, Channel};
use fleet_events::validation::{FieldError, Invalid};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::write_policy::{policy_ref, resolve_agent};
use fleet_command::policy::{self, PolicyState};

/// How long the agent may take to list (restic reads the repository's index first).
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// `GET /v1/snapshots/{id}/ls` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LsParams {
    policy: Option<String>,
    agent: Option<String>,
    path: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/snapshots/{id}/ls?policy=&agent=&path=&after=&limit=`.
pub async fn ls(
    State(api): State<Api>,
    caller: Caller,
    Path(snapshot): Path<String>,
    params: Result<Query<LsParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut problems = Vec::new();
    let mut missing = |field: &str| {
        problems.push(FieldError {
            field: field.into(),
            message: "is required".into(),
        })
    };
    if params.policy.is_none() {
        missing("policy");
    }
    if params.agent.is_none() {
        missing("agent");
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(Invalid(problems)));
    }
    let policy_id = policy_ref(&caller.tenant, params.policy.as_deref().unwrap_or_default());
    let agent = resolve_agent(&api, &caller, params.agent.as_deref().unwrap_or_default())
        .await?
        .map_err(|message| {
            ApiError::invalid(Invalid(vec![FieldError {
                field: "agent".into(),
                message,
            }]))
        })?;
    let history = api
        .store
        .history(&policy::subject(&caller.tenant, policy_id))
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read the event log: {e}")))?;
    let state = PolicyState::fold(&history.events);
    let spec = match (state.spec, state.live) {
        (Some(spec), true) => spec,
        _ => return Err(ApiError::not_found(format!("no policy {policy_id}"))),
    };
    let request = BrowseRequest {
        schema: SCHEMA_VERSION,
        tenant: caller.tenant.clone(),
        policy: policy_id,
        repository: spec.repository,
        snapshot,
        path: params.path.unwrap_or_else(|| "/".into()),
        after: params.after,
        limit: params.limit.unwrap_or(DEFAULT_PAGE),
    };
    request.validate().map_err(ApiError::invalid)?;
    let payload = request
        .to_wire()
        .map_err(|e| ApiError::bad_request(format!("the request is too large: {e}")))?;
    let subject = AgentSubject {
        agent,
        channel: Channel::Browse,
    }
    .to_string();
    let client = api.store.jetstream().client();
    let asked = async_nats::Request::new()
        .payload(payload.into())
        .timeout(Some(ANSWER_WITHIN));
    let message = client.send_request(subject, asked).await.map_err(|e| {
        use async_nats::RequestErrorKind as K;
        match e.kind() {
            K::NoResponders => ApiError::unavailable(format!(
                "agent {agent} is not connected (or too old to browse snapshots)"
            )),
            K::TimedOut => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "agent_timeout",
                format!("agent {agent} did not answer within {ANSWER_WITHIN:?}"),
            ),
            _ => ApiError::unavailable(format!("cannot reach agent {agent}: {e}")),
        }
    })?;
    let reply = BrowseReply::from_wire(&message.payload).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent_answer",
            format!("agent {agent} answered something that is not a listing: {e}"),
        )
    })?;
    match reply.result {
        Ok(page) => Ok(Json(json!({
            "snapshot": request.snapshot,
            "agent": agent,
            "policy": policy_id,
            "path": page.path,
            "entries": page.entries.iter().map(|e| json!({
                "name": e.name, "kind": e.kind, "size": e.size, "mtime": e.mtime,
            })).collect::<Vec<_>>(),
            "next": page.next,
        }))),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent_refused",
            format!(
                "agent {agent} could not list it ({}): {}",
                error.class.as_str(),
                error.message
            ),
        )),
    }
}
