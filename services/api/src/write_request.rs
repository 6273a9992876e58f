//! The endpoints that ask an agent for a task no schedule makes: `POST /v1/restores` (a
//! restore of one snapshot) and `POST /v1/policies/{id}/refresh` (the repository's snapshot
//! inventory). Both answer 202 with the task id: the task is requested, not yet run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fleet_events::event::{Overwrite, RestoreRequest, TaskRequest};
use fleet_events::ids::{AgentId, PolicyId};
use fleet_events::validation::{FieldError, Invalid, Problems};
use serde_json::{Map, Value, json};

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::write::{Reply, body};
use super::write_policy::{policy_ref, resolve_agent};
use fleet_command::{CommandError, request};

/// The fields a restore request may carry.
const RESTORE_FIELDS: [&str; 7] = [
    "policy",
    "agent",
    "snapshot",
    "target",
    "include",
    "dryRun",
    "overwrite",
];

/// A restore request as sent, before names are resolved: every problem at once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RestoreBody {
    policy: String,
    agent: String,
    request: RestoreRequest,
}

fn restore_body(fields: &Value) -> Result<RestoreBody, Invalid> {
    let mut p = Problems::default();
    let Value::Object(map) = fields else {
        p.add("", "the body must be a JSON object");
        return Err(p.finish().unwrap_err());
    };
    for name in map.keys() {
        p.check(RESTORE_FIELDS.contains(&name.as_str()), name, || {
            format!("unknown field; known: {}", RESTORE_FIELDS.join(", "))
        });
    }
    let policy = required_text(&mut p, map, "policy");
    let agent = required_text(&mut p, map, "agent");
    let snapshot = required_text(&mut p, map, "snapshot");
    let target = required_text(&mut p, map, "target");
    let include = match map.get("include") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => text.clone(),
                _ => {
                    p.add(format!("include[{i}]"), "must be a string");
                    // A stand-in that keeps the later paths' indexes; the body is refused.
                    "/".to_owned()
                }
            })
            .collect(),
        Some(_) => {
            p.add("include", "must be a list of absolute paths");
            Vec::new()
        }
    };
    let dry_run = match map.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.add("dryRun", "must be true or false");
            false
        }
    };
    let overwrite = match map.get("overwrite") {
        None | Some(Value::Null) => Overwrite::default(),
        Some(Value::String(text)) => match overwrite_named(text) {
            Some(o) => o,
            None => {
                p.add("overwrite", "must be never, ifChanged or always");
                Overwrite::default()
            }
        },
        Some(_) => {
            p.add("overwrite", "must be never, ifChanged or always");
            Overwrite::default()
        }
    };
    let request = RestoreRequest {
        snapshot,
        include,
        target,
        dry_run,
        overwrite,
    };
    // The request's own checks only on fields that were given, so a missing one is named
    // once.
    if let Err(invalid) = request.validate() {
        for e in invalid.0 {
            let given = map.contains_key(e.field.split('[').next().unwrap_or(&e.field));
            if given {
                p.add(e.field, e.message);
            }
        }
    }
    p.finish()?;
    Ok(RestoreBody {
        policy,
        agent,
        request,
    })
}

/// The overwrite policy named `text` (`ifChanged` or `if-changed`).
pub fn overwrite_named(text: &str) -> Option<Overwrite> {
    match text {
        "never" => Some(Overwrite::Never),
        "ifChanged" | "if-changed" => Some(Overwrite::IfChanged),
        "always" => Some(Overwrite::Always),
        _ => None,
    }
}

fn required_text(p: &mut Problems, map: &Map<String, Value>, name: &str) -> String {
    match map.get(name) {
        Some(Value::String(text)) if !text.trim().is_empty() => text.clone(),
        None | Some(Value::Null) => {
            p.add(name, "is required");
            String::new()
        }
        Some(Value::String(_)) => {
            p.add(name, "must not be empty");
            String::new()
        }
        Some(_) => {
            p.add(name, "must be a string");
            String::new()
        }
    }
}

/// `POST /v1/restores`: `{"policy", "agent", "snapshot", "target", "include"?, "dryRun"?,
/// "overwrite"?}`. The policy (id or name) gives the repository and the secret's name; the
/// agent (id or name) must hold that secret.
pub async fn restore(State(api): State<Api>, caller: Caller, raw: Bytes) -> Reply {
    caller.may_change()?;
    let fields = body(&raw)?;
    let sent = restore_body(&fields).map_err(ApiError::invalid)?;
    let agent = agent_field(&api, &caller, &sent.agent).await?;
    let policy = policy_ref(&caller.tenant, &sent.policy);
    let request = TaskRequest::Restore(sent.request);
    ask(&api, &caller, "restore", policy, Some(agent), request).await
}

/// `POST /v1/policies/{id}/refresh` with an optional `{"agent"}` (id or name; default: the
/// first agent the policy is assigned to): list the policy's repository into the snapshot
/// inventory.
pub async fn refresh(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> Reply {
    caller.may_change()?;
    let fields = body(&raw)?;
    let agent = match fields.get("agent") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(agent_field(&api, &caller, text).await?),
        Some(_) => {
            return Err(ApiError::invalid(Invalid(vec![FieldError {
                field: "agent".into(),
                message: "must be an agent id or name".into(),
            }])));
        }
    };
    let policy = policy_ref(&caller.tenant, &id);
    ask(
        &api,
        &caller,
        "refresh",
        policy,
        agent,
        TaskRequest::Refresh,
    )
    .await
}

async fn agent_field(api: &Api, caller: &Caller, text: &str) -> Result<AgentId, ApiError> {
    resolve_agent(api, caller, text).await?.map_err(|message| {
        ApiError::invalid(Invalid(vec![FieldError {
            field: "agent".into(),
            message,
        }]))
    })
}

async fn ask(
    api: &Api,
    caller: &Caller,
    command: &'static str,
    policy: PolicyId,
    agent: Option<AgentId>,
    request: TaskRequest,
) -> Reply {
    let by = format!("token {}", caller.token);
    let result = request::request(
        &api.store,
        &caller.tenant,
        policy,
        agent,
        request,
        by,
        api.clock.now(),
    )
    .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CommandError::Invalid(_)) => "invalid",
        Err(CommandError::NotFound(_)) => "not_found",
        Err(CommandError::Conflict(_)) => "conflict",
        Err(CommandError::Unavailable(_)) => "error",
    };
    metrics::counter!("fleet_api_writes_total", "command" => command, "outcome" => outcome)
        .increment(1);
    let (task, event) = result?;
    let agent = match &event {
        fleet_events::event::TaskEvent::Requested { agent, .. } => Some(*agent),
        _ => None,
    };
    let body = json!({
        "id": task.to_string(),
        "task": task.to_string(),
        "agent": agent,
        "policy": policy,
        "events": ["task.requested"],
    });
    Ok((StatusCode::ACCEPTED, Json(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_body_reports_every_problem_at_once() {
        let sent = json!({
            "agent": 7,
            "snapshot": "abc",
            "target": "relative/dir",
            "include": ["/ok", 3, "rel"],
            "dryRun": "yes",
            "overwrite": "sometimes",
            "colour": "blue",
        });
        let problems = restore_body(&sent).unwrap_err();
        for field in [
            "policy",
            "agent",
            "snapshot",
            "target",
            "include[1]",
            "include[2]",
            "dryRun",
            "overwrite",
            "colour",
        ] {
            assert!(problems.mentions(field), "{field} in {problems:?}");
        }
    }

    #[test]
    fn a_good_restore_body_defaults_to_never_overwrite_and_no_dry_run() {
        let id = "ab".repeat(32);
        let sent = json!({
            "policy": "nightly", "agent": "db-1", "snapshot": id, "target": "/var/restore",
        });
        let body = restore_body(&sent).unwrap();
        assert_eq!(body.policy, "nightly");
        assert_eq!(body.request.overwrite, Overwrite::Never);
        assert!(!body.request.dry_run && body.request.include.is_empty());
        assert_eq!(overwrite_named("if-changed"), Some(Overwrite::IfChanged));
    }
}
