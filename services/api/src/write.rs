//! The write endpoints for agents and tasks, and what every write shares: the admin check,
//! JSON bodies read with clear errors, `If-Match` versions, and the answer
//! `{"id", "version", "events"}` (201 when something was created).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::settings::AgentSettings;
use fleet_events::validation::{FieldError, Invalid};
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use fleet_command::{Written, agent, task};

/// A write's answer.
pub type Reply = Result<(StatusCode, Json<Value>), ApiError>;

/// Reads a JSON body; an empty body is `{}`.
pub fn body(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

/// The version in an `If-Match` header (`"42"`, `42` or `W/"42"`), if one was sent.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request("If-Match must be a version number (as read from the object)")
    })
}

/// Parses a path id, naming what it should have been.
pub fn path_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a {what} id")))
}

/// The answer to a write on the aggregate `id`.
pub fn written(id: impl ToString, written: &Written, created: bool) -> (StatusCode, Json<Value>) {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "id": id.to_string(),
        "version": written.version,
        "events": written.types(),
    });
    (status, Json(body))
}

/// Counts a write by command and outcome (`ok`, `unchanged`, or the error code).
pub fn count(command: &'static str, result: Result<&Written, &ApiError>) {
    let outcome = match result {
        Ok(w) if w.events.is_empty() => "unchanged",
        Ok(_) => "ok",
        Err(e) => e.code,
    };
    metrics::counter!("fleet_api_writes_total", "command" => command, "outcome" => outcome)
        .increment(1);
}

fn text_field(fields: &Value, name: &str) -> Result<Option<String>, Invalid> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(Invalid(vec![FieldError {
            field: name.into(),
            message: "must be a string".into(),
        }])),
    }
}

/// `POST /v1/agents`: registers a machine ahead of its agent.
pub async fn register(State(api): State<Api>, caller: Caller, raw: Bytes) -> Reply {
    caller.may_change()?;
    let fields = body(&raw)?;
    let request = preregistration(&fields).map_err(ApiError::invalid)?;
    let result = agent::preregister(&api.store, &caller.tenant, request, api.clock.now())
        .await
        .map_err(ApiError::from);
    count("agent.register", result.as_ref().map(|(_, done)| done));
    let (id, done) = result?;
    let created = !done.events.is_empty();
    Ok(written(id, &done, created))
}

fn preregistration(fields: &Value) -> Result<agent::Preregistration, Invalid> {
    let machine = text_field(fields, "machineId")?.unwrap_or_default();
    let name = text_field(fields, "name")?.unwrap_or_else(|| machine.clone());
    let hostname = text_field(fields, "hostname")?.unwrap_or_else(|| name.clone());
    let settings = match fields.get("settings") {
        None | Some(Value::Null) => AgentSettings::default(),
        Some(value) => agent::patched(&AgentSettings::default(), value).map_err(|invalid| {
            Invalid(
                invalid
                    .0
                    .into_iter()
                    .map(|e| FieldError {
                        field: format!("settings.{}", e.field),
                        message: e.message,
                    })
                    .collect(),
            )
        })?,
    };
    Ok(agent::Preregistration {
        machine,
        name,
        hostname,
        settings,
    })
}

/// `PATCH /v1/agents/{id}/settings`: merges the fields sent into the agent's settings.
pub async fn settings(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> Reply {
    caller.may_change()?;
    let id: AgentId = path_id(&id, "agent")?;
    let patch = body(&raw)?;
    let result = agent::change_settings(&api.store, &caller.tenant, id, &patch, api.clock.now())
        .await
        .map_err(ApiError::from);
    count("agent.settings", result.as_ref());
    Ok(written(id, &result?, false))
}

/// `POST /v1/agents/{id}/decommission`.
pub async fn decommission(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Reply {
    caller.may_change()?;
    let id: AgentId = path_id(&id, "agent")?;
    let result = agent::decommission(&api.store, &caller.tenant, id, api.clock.now())
        .await
        .map_err(ApiError::from);
    count("agent.decommission", result.as_ref());
    Ok(written(id, &result?, false))
}

/// `POST /v1/tasks/{id}/cancel` with an optional `{"reason"}`.
pub async fn cancel(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> Reply {
    caller.may_change()?;
    let id: TaskId = path_id(&id, "task")?;
    let fields = body(&raw)?;
    let reason = text_field(&fields, "reason")
        .map_err(ApiError::invalid)?
        .unwrap_or_default();
    let result = task::cancel(&api.store, &caller.tenant, id, &reason, api.clock.now())
        .await
        .map_err(ApiError::from);
    count("task.cancel", result.as_ref());
    Ok(written(id, &result?, false))
}
