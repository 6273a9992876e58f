//! Answering one query from the read models (reads only; no IO beyond sled).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use fleet_events::ids::TenantId;
use fleet_events::task_state::TaskStatus;
use fleet_projections::runs::DayFilter;
use fleet_projections::{ProjectionError, RunFilter, RunOutcomeKind, TaskFilter};
use serde::Serialize;
use serde_json::{Value, json};

use super::dto;
use super::models::ReadModels;
use super::query::{Answer, DEFAULT_AGENT_LIMIT, DEFAULT_LIMIT, ErrorCode, MAX_LIMIT, Query};

mod notify;
mod snapshots;

/// The answer to `query` about `tenant` at `now`.
pub fn answer(models: &ReadModels, tenant: &TenantId, query: Query, now: DateTime<Utc>) -> Answer {
    match reply(models, tenant, query, now) {
        Ok(value) => Answer::Ok(value),
        Err(Refusal(code, message)) => Answer::error(code, message),
    }
}

struct Refusal(ErrorCode, String);

impl From<ProjectionError> for Refusal {
    fn from(error: ProjectionError) -> Self {
        tracing::error!(%error, "a read model cannot answer");
        Refusal(
            ErrorCode::Unavailable,
            format!("the read model cannot answer: {error}"),
        )
    }
}

fn to_json(value: impl Serialize) -> Result<Value, Refusal> {
    serde_json::to_value(value).map_err(|e| Refusal(ErrorCode::Unavailable, e.to_string()))
}

/// The one of `all` whose name is `text`; `None` if no text was given.
fn named<T: Copy>(
    text: Option<&str>,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    field: &str,
) -> Result<Option<T>, Refusal> {
    let Some(text) = text else {
        return Ok(None);
    };
    match all.iter().copied().find(|item| name(*item) == text) {
        Some(item) => Ok(Some(item)),
        None => {
            let names: Vec<&str> = all.iter().map(|item| name(*item)).collect();
            Err(Refusal(
                ErrorCode::BadRequest,
                format!("{field} must be one of {}", names.join(", ")),
            ))
        }
    }
}

/// The page size of a list of agents or policies: [`DEFAULT_AGENT_LIMIT`] unless asked.
fn page_limit(asked: Option<usize>) -> Result<usize, Refusal> {
    match asked {
        None => Ok(DEFAULT_AGENT_LIMIT),
        Some(_) => limit(asked),
    }
}

fn limit(asked: Option<usize>) -> Result<usize, Refusal> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Refusal(
            ErrorCode::BadRequest,
            format!("limit must be 1 to {MAX_LIMIT}"),
        )),
    }
}

fn reply(
    models: &ReadModels,
    tenant: &TenantId,
    query: Query,
    now: DateTime<Utc>,
) -> Result<Value, Refusal> {
    match query {
        Query::Tasks {
            status,
            agent,
            policy,
            since,
            limit: asked,
        } => {
            let status = named(status.as_deref(), &TaskStatus::ALL, |s| s.as_str(), "state")?;
            let filter = TaskFilter {
                status,
                agent,
                policy,
                since,
            };
            let tasks = models.tasks.list(tenant, &filter, limit(asked)?)?;
            let items: Vec<dto::Task> = tasks
                .iter()
                .map(|(id, view)| dto::task(*id, view))
                .collect();
            to_json(items)
        }
        Query::Task { id } => match models.tasks.task(id)? {
            Some(view) if view.tenant == *tenant => to_json(dto::task(id, &view)),
            _ => Err(Refusal(
                ErrorCode::NotFound,
                format!(
                    "no task {id} (an ended task leaves the read models after {} days; \
                     `fleet events replay --task {id}` shows it from the log)",
                    models.tasks.projection().days()
                ),
            )),
        },
        Query::Agents {
            name,
            limit: asked,
            offset,
        } => {
            let limit = page_limit(asked)?;
            let named = |view: &fleet_projections::AgentView| {
                name.as_deref()
                    .is_none_or(|name| view.name == name || view.hostname == name)
            };
            let agents: Vec<dto::Agent> = models
                .agents
                .list(tenant)?
                .iter()
                .filter(|view| named(view))
                .skip(offset.unwrap_or(0))
                .take(limit)
                .map(|view| agent(models, tenant, view))
                .collect::<Result<_, Refusal>>()?;
            to_json(agents)
        }
        Query::Agent { id } => match models.agents.agent(id)? {
            Some(view) if view.tenant == *tenant => to_json(agent(models, tenant, &view)?),
            _ => Err(Refusal(ErrorCode::NotFound, format!("no agent {id}"))),
        },
        Query::AgentBackoff { id } => match models.agents.agent(id)? {
            Some(view) if view.tenant == *tenant => to_json(dto::backoff_status(&view)),
            _ => Err(Refusal(ErrorCode::NotFound, format!("no agent {id}"))),
        },
        Query::TaskCounts => Ok(Value::Object(task_counts(models, tenant)?)),
        Query::Runs {
            agent,
            policy,
            outcome,
            since,
            limit: asked,
        } => {
            let outcome = named(
                outcome.as_deref(),
                &RunOutcomeKind::ALL,
                |k| k.as_str(),
                "outcome",
            )?;
            let filter = RunFilter {
                agent,
                policy,
                kind: None,
                outcome,
                since,
            };
            let runs: Vec<dto::Run> = models
                .runs
                .list(tenant, &filter, limit(asked)?)?
                .iter()
                .map(dto::run)
                .collect();
            to_json(runs)
        }
        Query::History {
            policy,
            agent,
            since,
            limit: asked,
        } => {
            let filter = DayFilter {
                policy,
                agent,
                since,
            };
            let days: Vec<dto::HistoryDay> = models
                .runs
                .days(tenant, &filter, limit(asked)?)?
                .iter()
                .map(dto::history_day)
                .collect();
            to_json(days)
        }
        Query::Policies {
            include_deleted,
            limit: asked,
            offset,
        } => {
            let limit = page_limit(asked)?;
            let mut overdue: HashMap<_, Vec<_>> = HashMap::new();
            for o in models.notifications.overdue(tenant)? {
                overdue.entry(o.policy).or_default().push(o);
            }
            let policies: Vec<dto::Policy> = models
                .policies
                .list(tenant, include_deleted)?
                .iter()
                .skip(offset.unwrap_or(0))
                .take(limit)
                .map(|view| {
                    let mine = overdue.get(&view.id).map_or(&[][..], Vec::as_slice);
                    dto::policy(view, now, mine)
                })
                .collect();
            to_json(policies)
        }
        Query::Policy { id } => match models.policies.policy(id)? {
            Some(view) if view.tenant == *tenant => {
                let overdue = models.notifications.overdue_of_policy(tenant, id)?;
                to_json(dto::policy(&view, now, &overdue))
            }
            _ => Err(Refusal(ErrorCode::NotFound, format!("no policy {id}"))),
        },
        Query::Repos => {
            let repos: Vec<dto::Repo> = models.repos.list(tenant)?.iter().map(dto::repo).collect();
            to_json(repos)
        }
        Query::RepoSnapshots {
            id,
            limit: asked,
            cursor,
        } => snapshots::repo_snapshots(models, tenant, id, asked, cursor.as_deref()),
        Query::Snapshots {
            repo,
            agent,
            host,
            policy,
            limit: asked,
            cursor,
        } => {
            let wanted = snapshots::Wanted {
                repo,
                agent,
                host,
                policy,
            };
            snapshots::snapshots(models, tenant, wanted, asked, cursor.as_deref())
        }
        Query::Summary => to_json(summary(models, tenant, now)?),
        Query::Rules => notify::rules(models, tenant),
        Query::Rule { id } => notify::rule(models, tenant, id),
        Query::Notifications {
            rule,
            state,
            limit: asked,
        } => notify::notifications(models, tenant, rule, state.as_deref(), asked),
    }
}

/// An agent as operators see it: last heard from its heartbeats, with its overdue
/// policies.
fn agent(
    models: &ReadModels,
    tenant: &TenantId,
    view: &fleet_projections::AgentView,
) -> Result<dto::Agent, Refusal> {
    let mut agent = dto::agent(view, models.heard.get(view.agent));
    agent.overdue = notify::overdue_on_agent(models, tenant, view.agent)?;
    Ok(agent)
}

fn task_counts(
    models: &ReadModels,
    tenant: &TenantId,
) -> Result<serde_json::Map<String, Value>, Refusal> {
    Ok(models
        .tasks
        .status_counts(tenant)?
        .into_iter()
        .map(|(status, n)| (status.as_str().to_owned(), json!(n)))
        .collect())
}

fn summary(
    models: &ReadModels,
    tenant: &TenantId,
    now: DateTime<Utc>,
) -> Result<dto::Summary, Refusal> {
    let agents = models.agents.list(tenant)?;
    let mut counts = dto::AgentCounts::default();
    for agent in agents.iter().filter(|a| a.registered) {
        counts.total += 1;
        counts.online += usize::from(agent.online && !agent.decommissioned);
        counts.saturated += usize::from(agent.is_saturated());
        counts.in_backoff += usize::from(agent.pending_retries() > 0);
        counts.decommissioned += usize::from(agent.decommissioned);
    }
    let policies = models.policies.list(tenant, false)?;
    let successes = models.runs.last_successes(tenant)?;
    let overdue = models.notifications.overdue(tenant)?;
    let freshness = dto::freshness(&policies, &successes, &overdue, now);
    let open_circuits = models
        .repos
        .list(tenant)?
        .iter()
        .filter(|r| r.holds_tasks_at(now))
        .count();
    Ok(dto::Summary {
        agents: counts,
        tasks: task_counts(models, tenant)?,
        policies: policies.len(),
        paused_policies: policies.iter().filter(|p| p.paused).count(),
        open_circuits,
        stale: freshness.iter().filter(|f| f.stale).count(),
        freshness,
        history_days: models.runs.projection().days(),
    })
}
