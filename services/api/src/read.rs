//! The read endpoints: each asks the projector one query about the caller's tenant and
//! returns its answer as JSON (another tenant's object is 404, like a missing one); a
//! task also carries its history from the event log.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as Params, State};
use chrono::{DateTime, NaiveDate, Utc};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId};
use fleet_events::subject::AggregateId;
use serde::Deserialize;
use serde_json::Value;

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::event_json::EventJson;
use super::events;
use fleet_api_model::query::{Query, ask};

type Answer = Result<Json<Value>, ApiError>;

async fn forward(api: &Api, caller: &Caller, query: Query) -> Answer {
    let client = api.store.jetstream().client();
    Ok(Json(ask(&client, &caller.tenant, &query).await?))
}

/// A query string that does not parse: a JSON 400 naming the problem.
fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

/// Parses a path id, naming what it should have been.
fn id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{text:?} is not a {what} id")))
}

/// `GET /v1/agents` options: a page of agents by name.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentParams {
    name: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

pub async fn agents(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Params<AgentParams>, QueryRejection>,
) -> Answer {
    let Params(params) = params.map_err(bad_query)?;
    let query = Query::Agents {
        name: params.name,
        limit: params.limit,
        offset: params.offset,
    };
    forward(&api, &caller, query).await
}

pub async fn agent(State(api): State<Api>, caller: Caller, Path(agent): Path<String>) -> Answer {
    let id: AgentId = id(&agent, "agent")?;
    forward(&api, &caller, Query::Agent { id }).await
}

pub async fn backoff_status(
    State(api): State<Api>,
    caller: Caller,
    Path(agent): Path<String>,
) -> Answer {
    let id: AgentId = id(&agent, "agent")?;
    forward(&api, &caller, Query::AgentBackoff { id }).await
}

/// `GET /v1/tasks` filters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskParams {
    /// The task's `status` (`state` is the documented name; both are accepted).
    #[serde(alias = "status")]
    state: Option<String>,
    agent: Option<AgentId>,
    policy: Option<PolicyId>,
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

pub async fn tasks(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Params<TaskParams>, QueryRejection>,
) -> Answer {
    let Params(params) = params.map_err(bad_query)?;
    let query = Query::Tasks {
        status: params.state,
        agent: params.agent,
        policy: params.policy,
        since: params.since,
        limit: params.limit,
    };
    forward(&api, &caller, query).await
}

/// The projector's view of the task plus `events`: its whole history, in log order
/// (`fleet_api_model::dto::TaskDetail`).
pub async fn task(State(api): State<Api>, caller: Caller, Path(task): Path<String>) -> Answer {
    let id: TaskId = id(&task, "task")?;
    // The projector first: its 404 covers unknown tasks and other tenants' alike.
    let Json(mut view) = forward(&api, &caller, Query::Task { id }).await?;
    let history = events::history(&api.store, &caller.tenant, AggregateId::Task(id)).await?;
    let events: Vec<EventJson> = history.iter().map(EventJson::from).collect();
    let events = serde_json::to_value(events)
        .map_err(|e| ApiError::unavailable(format!("cannot render the task's events: {e}")))?;
    let Some(fields) = view.as_object_mut() else {
        return Err(ApiError::unavailable(
            "the projector's task answer is not an object",
        ));
    };
    fields.insert("events".into(), events);
    Ok(Json(view))
}

/// `GET /v1/runs` filters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunParams {
    agent: Option<AgentId>,
    policy: Option<PolicyId>,
    outcome: Option<String>,
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

pub async fn runs(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Params<RunParams>, QueryRejection>,
) -> Answer {
    let Params(params) = params.map_err(bad_query)?;
    let query = Query::Runs {
        agent: params.agent,
        policy: params.policy,
        outcome: params.outcome,
        since: params.since,
        limit: params.limit,
    };
    forward(&api, &caller, query).await
}

/// `GET /v1/history` options: whose days, from which day, how many.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    policy: Option<PolicyId>,
    agent: Option<AgentId>,
    /// A UTC day, `YYYY-MM-DD`.
    since: Option<NaiveDate>,
    limit: Option<usize>,
}

pub async fn history(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Params<HistoryParams>, QueryRejection>,
) -> Answer {
    let Params(params) = params.map_err(bad_query)?;
    let query = Query::History {
        policy: params.policy,
        agent: params.agent,
        since: params.since,
        limit: params.limit,
    };
    forward(&api, &caller, query).await
}

/// `GET /v1/policies` options: a page of policies by name.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyParams {
    #[serde(default)]
    include_deleted: bool,
    limit: Option<usize>,
    offset: Option<usize>,
}

pub async fn policies(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Params<PolicyParams>, QueryRejection>,
) -> Answer {
    let Params(params) = params.map_err(bad_query)?;
    let query = Query::Policies {
        include_deleted: params.include_deleted,
        limit: params.limit,
        offset: params.offset,
    };
    forward(&api, &caller, query).await
}

/// `GET /v1/policies/{id}`: by id, or by name (a policy's id is its name's).
pub async fn policy(State(api): State<Api>, caller: Caller, Path(policy): Path<String>) -> Answer {
    let id = policy
        .parse()
        .unwrap_or_else(|_| PolicyId::for_name(&caller.tenant, &policy));
    forward(&api, &caller, Query::Policy { id }).await
}

pub async fn repos(State(api): State<Api>, caller: Caller) -> Answer {
    forward(&api, &caller, Query::Repos).await
}

/// `GET /v1/repositories/{id}/snapshots` options: a page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageParams {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// The repository (404 if the tenant does not know it) and a page of its snapshots.
pub async fn repo_snapshots(
    State(api): State<Api>,
    caller: Caller,
    Path(repo): Path<String>,
    params: Result<Params<PageParams>, QueryRejection>,
) -> Answer {
    let id: RepoId = id(&repo, "repository")?;
    let Params(params) = params.map_err(bad_query)?;
    let query = Query::RepoSnapshots {
        id,
        limit: params.limit,
        cursor: params.cursor,
    };
    forward(&api, &caller, query).await
}

/// `GET /v1/snapshots` filters and page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotParams {
    repo: Option<RepoId>,
    agent: Option<AgentId>,
    host: Option<String>,
    policy: Option<PolicyId>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A page of the tenant's snapshots across its repositories.
pub async fn snapshots(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Params<SnapshotParams>, QueryRejection>,
) -> Answer {
    let Params(params) = params.map_err(bad_query)?;
    let query = Query::Snapshots {
        repo: params.repo,
        agent: params.agent,
        host: params.host,
        policy: params.policy,
        limit: params.limit,
        cursor: params.cursor,
    };
    forward(&api, &caller, query).await
}

pub async fn summary(State(api): State<Api>, caller: Caller) -> Answer {
    forward(&api, &caller, Query::Summary).await
}
