//! The notification rule write endpoints: define (create or replace by name), delete, and
//! ask for a test notification. A rule path takes its id or its name; a document is JSON,
//! or YAML when sent as `application/yaml`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use fleet_events::ids::{RuleId, TenantId};
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::write::{Reply, body, count, written};
use fleet_command::rule::{self, RuleCommand, RuleWritten};
use fleet_command::rule_document;

/// The rule a path names: its id, or its name (ids are derived from names).
pub(super) fn rule_ref(tenant: &TenantId, text: &str) -> RuleId {
    text.parse()
        .unwrap_or_else(|_| RuleId::for_name(tenant, text))
}

/// Whether the body is YAML by its `Content-Type`.
fn is_yaml(headers: &HeaderMap) -> bool {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = kind.split(';').next().unwrap_or_default().trim();
    ["application/yaml", "application/x-yaml", "text/yaml"]
        .iter()
        .any(|yaml| kind.eq_ignore_ascii_case(yaml))
}

/// The document in the body: YAML when its `Content-Type` says so, else JSON.
fn document(headers: &HeaderMap, raw: &Bytes) -> Result<Value, ApiError> {
    if !is_yaml(headers) {
        return body(raw);
    }
    serde_norway::from_slice::<Value>(raw)
        .map_err(|e| ApiError::bad_request(format!("the body is not one YAML document: {e}")))
}

async fn run(
    api: &Api,
    caller: &Caller,
    name: &'static str,
    id: RuleId,
    command: RuleCommand,
) -> Result<RuleWritten, ApiError> {
    let result = rule::run(&api.store, &caller.tenant, id, command, api.clock.now())
        .await
        .map_err(ApiError::from);
    count(name, result.as_ref().map(|done| &done.written));
    result
}

/// `POST /v1/rules`: creates the rule (201) or replaces the one of that name (200; an
/// identical one writes nothing).
pub async fn define(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    raw: Bytes,
) -> Reply {
    caller.may_change()?;
    let spec = rule_document::read(&document(&headers, &raw)?).map_err(ApiError::invalid)?;
    let id = RuleId::for_name(&caller.tenant, &spec.name);
    let done = run(
        &api,
        &caller,
        "rule.define",
        id,
        RuleCommand::Define(Box::new(spec)),
    )
    .await?;
    let created = done.was_new && !done.written.events.is_empty();
    let (status, Json(mut answer)) = written(id, &done.written, created);
    answer["created"] = json!(created);
    Ok((status, Json(answer)))
}

/// `DELETE /v1/rules/{id}`: a rule that is not defined is 404.
pub async fn delete(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Reply {
    caller.may_change()?;
    let id = rule_ref(&caller.tenant, &id);
    let done = run(&api, &caller, "rule.delete", id, RuleCommand::Delete).await?;
    Ok(written(id, &done.written, false))
}

/// `POST /v1/rules/{id}/test`: asks the notifier for a test notification through the rule
/// (`rule.test_requested`, naming the caller's token). 202: asked for, not yet sent.
pub async fn test(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Reply {
    caller.may_change()?;
    let id = rule_ref(&caller.tenant, &id);
    let command = RuleCommand::Test { by: caller.name() };
    let done = run(&api, &caller, "rule.test", id, command).await?;
    let (_, answer) = written(id, &done.written, false);
    Ok((StatusCode::ACCEPTED, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_read_when_the_content_type_says_so() {
        let mut headers = HeaderMap::new();
        let raw = Bytes::from_static(b"name: ops\non: [taskFailed]\n");
        assert!(document(&headers, &raw).is_err(), "JSON by default");
        headers.insert(
            header::CONTENT_TYPE,
            "application/yaml; charset=utf-8".parse().unwrap(),
        );
        let value = document(&headers, &raw).expect("YAML");
        assert_eq!(value, json!({"name": "ops", "on": ["taskFailed"]}));
        let two = Bytes::from_static(b"name: a\n---\nname: b\n");
        assert_eq!(document(&headers, &two).unwrap_err().status, 400);
    }

    #[test]
    fn a_rule_is_named_by_id_or_name() {
        let tenant = TenantId::new("acme").unwrap();
        let id = RuleId::for_name(&tenant, "ops");
        assert_eq!(rule_ref(&tenant, "ops"), id);
        assert_eq!(rule_ref(&tenant, &id.to_string()), id);
    }
}
