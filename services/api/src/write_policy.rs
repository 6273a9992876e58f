//! The policy write endpoints: create, apply, update, delete, pause, resume, run now,
//! assign and unassign. A policy path takes its id or its name; agents in a document are
//! ids or names, each checked to be registered and in service.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use fleet_events::event::{Event, PolicyEvent};
use fleet_events::ids::{AgentId, PolicyId, TenantId};
use fleet_events::validation::{FieldError, Invalid};
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::write::{Reply, body, count, if_match, path_id, written};
use fleet_api_model::names::agents_named;
use fleet_api_model::query::{Query, ask};
use fleet_command::document::{self, PolicyDocument};
use fleet_command::policy::{self, Declared, PolicyCommand};
use fleet_command::{CommandError, agent};

/// The policy a path names: its id, or its name (ids are derived from names).
pub(super) fn policy_ref(tenant: &TenantId, text: &str) -> PolicyId {
    text.parse()
        .unwrap_or_else(|_| PolicyId::for_name(tenant, text))
}

/// Resolves a document's agents (ids or names) to agents in service; every agent that
/// cannot be resolved is a problem of its `agents[i]` field.
async fn resolve_agents(
    api: &Api,
    caller: &Caller,
    refs: &[String],
) -> Result<Vec<AgentId>, ApiError> {
    let mut agents = Vec::with_capacity(refs.len());
    let mut problems = Vec::new();
    for (i, text) in refs.iter().enumerate() {
        match resolve_agent(api, caller, text).await? {
            Ok(id) => agents.push(id),
            Err(message) => problems.push(FieldError {
                field: format!("agents[{i}]"),
                message,
            }),
        }
    }
    if problems.is_empty() {
        Ok(agents)
    } else {
        Err(ApiError::invalid(Invalid(problems)))
    }
}

/// One agent in service by id or name; the inner `Err` says why it cannot be used.
pub(super) async fn resolve_agent(
    api: &Api,
    caller: &Caller,
    text: &str,
) -> Result<Result<AgentId, String>, ApiError> {
    let id = match text.parse::<AgentId>() {
        Ok(id) => id,
        Err(_) => {
            let client = api.store.jetstream().client();
            let query = Query::Agents {
                name: Some(text.to_owned()),
                limit: None,
                offset: None,
            };
            let named = match ask(&client, &caller.tenant, &query).await? {
                Value::Array(items) => items,
                _ => return Err(ApiError::unavailable("the agents answer is no list")),
            };
            match by_name(&named, text) {
                Ok(id) => id,
                Err(message) => return Ok(Err(message)),
            }
        }
    };
    Ok(agent::check_usable(&api.store, &caller.tenant, id)
        .await?
        .map(|()| id)
        .map_err(|refusal| refusal.to_string()))
}

/// The one agent in service named `name` (or with that hostname), among the projector's
/// agents: a decommissioned agent is never meant here.
fn by_name(agents: &[Value], name: &str) -> Result<AgentId, String> {
    let matches: Vec<AgentId> = agents_named(agents, name)
        .live
        .into_iter()
        .filter_map(|a| a["id"].as_str()?.parse().ok())
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no agent named {name:?} in this tenant")),
        many => Err(format!(
            "{} agents are named {name:?}; name the agent by its id",
            many.len()
        )),
    }
}

/// A document read from the body, with its agents resolved.
async fn declared(api: &Api, caller: &Caller, raw: &Bytes) -> Result<Declared, ApiError> {
    let fields = body(raw)?;
    // Problems in the document and in its agents are reported together.
    let read = document::read(&fields);
    let refs = match &read {
        Ok(doc) => doc.agents.clone().unwrap_or_default(),
        Err(_) => fields["agents"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let agents = resolve_agents(api, caller, &refs).await;
    match (read, agents) {
        (Ok(doc), Ok(agents)) => Ok(Declared {
            agents: doc.agents.map(|_| agents),
            spec: doc.spec,
            paused: doc.paused,
        }),
        (Err(mut invalid), Err(e)) => {
            invalid.0.extend(e.problems);
            Err(ApiError::invalid(invalid))
        }
        (Err(invalid), Ok(_)) => Err(ApiError::invalid(invalid)),
        (Ok(_), Err(e)) => Err(e),
    }
}

async fn run(
    api: &Api,
    caller: &Caller,
    name: &'static str,
    policy: PolicyId,
    command: PolicyCommand,
    version: Option<u64>,
) -> Result<fleet_command::Written, ApiError> {
    let result = policy::run(
        &api.store,
        &caller.tenant,
        policy,
        command,
        version,
        api.clock.now(),
    )
    .await
    .map_err(ApiError::from);
    count(name, result.as_ref());
    result
}

fn created(done: &fleet_command::Written) -> bool {
    done.events.iter().any(|e| {
        matches!(
            e,
            Event::Policy {
                event: PolicyEvent::Created { .. },
                ..
            }
        )
    })
}

/// `POST /v1/policies`: a new policy; a live one of that name is 409.
pub async fn create(State(api): State<Api>, caller: Caller, raw: Bytes) -> Reply {
    caller.may_change()?;
    let declared = declared(&api, &caller, &raw).await?;
    let id = PolicyId::for_name(&caller.tenant, &declared.spec.name);
    let command = PolicyCommand::Create(declared);
    let done = run(&api, &caller, "policy.create", id, command, None).await?;
    Ok(written(id, &done, true))
}

/// `POST /v1/policies/apply`: create or bring to what the document declares.
pub async fn apply(State(api): State<Api>, caller: Caller, raw: Bytes) -> Reply {
    caller.may_change()?;
    let declared = declared(&api, &caller, &raw).await?;
    let id = PolicyId::for_name(&caller.tenant, &declared.spec.name);
    let command = PolicyCommand::Apply(declared);
    let done = run(&api, &caller, "policy.apply", id, command, None).await?;
    let is_new = created(&done);
    let (status, Json(mut answer)) = written(id, &done, is_new);
    answer["created"] = json!(is_new);
    Ok((status, Json(answer)))
}

/// `PUT /v1/policies/{id}`: replaces the spec (agents and pause have their own calls).
pub async fn update(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Reply {
    caller.may_change()?;
    let id = policy_ref(&caller.tenant, &id);
    let version = if_match(&headers)?;
    let PolicyDocument {
        spec,
        agents,
        paused,
    } = document::read(&body(&raw)?).map_err(ApiError::invalid)?;
    let mut problems = Vec::new();
    if agents.is_some() {
        problems.push(("agents", "set agents with assign/unassign or apply"));
    }
    if paused.is_some() {
        problems.push(("paused", "pause or resume with their own calls, or apply"));
    }
    if !problems.is_empty() {
        let problems = problems
            .into_iter()
            .map(|(field, message)| FieldError {
                field: field.into(),
                message: message.into(),
            })
            .collect();
        return Err(ApiError::invalid(Invalid(problems)));
    }
    let command = PolicyCommand::Update(Box::new(spec));
    let done = run(&api, &caller, "policy.update", id, command, version).await?;
    Ok(written(id, &done, false))
}

/// `DELETE /v1/policies/{id}`, `POST .../pause`, `POST .../resume`.
async fn simple(
    api: Api,
    caller: Caller,
    id: String,
    headers: HeaderMap,
    name: &'static str,
    command: PolicyCommand,
) -> Reply {
    caller.may_change()?;
    let id = policy_ref(&caller.tenant, &id);
    let version = if_match(&headers)?;
    let done = run(&api, &caller, name, id, command, version).await?;
    Ok(written(id, &done, false))
}

pub async fn delete(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    simple(
        api,
        caller,
        id,
        headers,
        "policy.delete",
        PolicyCommand::Delete,
    )
    .await
}

pub async fn pause(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    simple(
        api,
        caller,
        id,
        headers,
        "policy.pause",
        PolicyCommand::Pause,
    )
    .await
}

pub async fn resume(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    simple(
        api,
        caller,
        id,
        headers,
        "policy.resume",
        PolicyCommand::Resume,
    )
    .await
}

/// `POST /v1/policies/{id}/agents/{agentId}`: the agent must be registered and in service.
pub async fn assign(
    State(api): State<Api>,
    caller: Caller,
    Path((id, agent_id)): Path<(String, String)>,
) -> Reply {
    caller.may_change()?;
    let id = policy_ref(&caller.tenant, &id);
    let agent_id: AgentId = path_id(&agent_id, "agent")?;
    // Not found (never registered here) is 404, decommissioned 409: the refusal says which.
    agent::check_usable(&api.store, &caller.tenant, agent_id).await??;
    let command = PolicyCommand::Assign(agent_id);
    let done = run(&api, &caller, "policy.assign", id, command, None).await?;
    Ok(written(id, &done, false))
}

/// `DELETE /v1/policies/{id}/agents/{agentId}`.
pub async fn unassign(
    State(api): State<Api>,
    caller: Caller,
    Path((id, agent_id)): Path<(String, String)>,
) -> Reply {
    caller.may_change()?;
    let id = policy_ref(&caller.tenant, &id);
    let agent_id: AgentId = path_id(&agent_id, "agent")?;
    let command = PolicyCommand::Unassign(agent_id);
    let done = run(&api, &caller, "policy.unassign", id, command, None).await?;
    Ok(written(id, &done, false))
}

/// `POST /v1/policies/{id}/run` with an optional `{"agent"}`: a task per assigned agent
/// (or for the one named), due at once. 202: the tasks are scheduled, not yet run.
pub async fn run_now(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> Reply {
    caller.may_change()?;
    let id = policy_ref(&caller.tenant, &id);
    let fields = body(&raw)?;
    let agent = match &fields["agent"] {
        Value::Null => None,
        Value::String(text) => Some(path_id::<AgentId>(text, "agent")?),
        _ => return Err(ApiError::bad_request("agent must be an agent id")),
    };
    let result = policy::run_now(&api.store, &caller.tenant, id, agent, api.clock.now()).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(CommandError::NotFound(_)) => "not_found",
        Err(CommandError::Conflict(_)) => "conflict",
        Err(_) => "error",
    };
    metrics::counter!("fleet_api_writes_total", "command" => "policy.run", "outcome" => outcome)
        .increment(1);
    let (version, tasks) = result?;
    let body = json!({
        "id": id.to_string(),
        "version": version,
        "events": vec!["task.scheduled"; tasks.len()],
        "tasks": tasks.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    Ok((StatusCode::ACCEPTED, Json(body)))
}
