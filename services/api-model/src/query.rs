//! The query protocol of the read models: JSON requests on `fleet.ctl.query.<tenant>`
//! ([`Query`]), JSON answers ([`Answer`]); and [`ask`], the client the API and the CLI
//! use (they never open sled).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use fleet_events::ids::{AgentId, PolicyId, RepoId, RuleId, TaskId, TenantId};
use fleet_events::subject;
use serde::{Deserialize, Serialize};

/// How long a caller waits for the projector.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most items a list returns.
pub const MAX_LIMIT: usize = 1000;
/// Items a list returns when the caller names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Agents answered when no limit is asked: a page of about 0.3 MiB.
pub const DEFAULT_AGENT_LIMIT: usize = 500;
/// Most snapshots a page holds (a page is also cut short to stay well below NATS's
/// message size: snapshots may carry many paths).
pub const MAX_SNAPSHOT_LIMIT: usize = 500;

/// A question about one tenant's read models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "query",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Query {
    /// Tasks, newest fire time first.
    Tasks {
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        agent: Option<AgentId>,
        #[serde(default)]
        policy: Option<PolicyId>,
        #[serde(default)]
        since: Option<DateTime<Utc>>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// One task's state.
    Task { id: TaskId },
    /// How many tasks are in each status.
    TaskCounts,
    /// The agents by name (then id), a page at a time: `offset` skips, `limit` (default
    /// [`DEFAULT_AGENT_LIMIT`], at most [`MAX_LIMIT`]) bounds the answer below NATS's
    /// message size; `name` keeps the agents with that name or hostname.
    Agents {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default)]
        offset: Option<usize>,
    },
    /// One agent.
    Agent { id: AgentId },
    /// One agent's backoff: its tasks waiting for a retry and when.
    AgentBackoff { id: AgentId },
    /// Finished attempts, newest first, with restic's summaries.
    Runs {
        #[serde(default)]
        agent: Option<AgentId>,
        #[serde(default)]
        policy: Option<PolicyId>,
        #[serde(default)]
        outcome: Option<String>,
        #[serde(default)]
        since: Option<DateTime<Utc>>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// What ended per UTC day, newest day first: per agent for a policy, per policy for
    /// an agent, for the pair when both are given, the tenant's when neither is. Kept
    /// for as long as the read models live, after the runs themselves have left.
    History {
        #[serde(default)]
        policy: Option<PolicyId>,
        #[serde(default)]
        agent: Option<AgentId>,
        /// Days on or after this one.
        #[serde(default)]
        since: Option<NaiveDate>,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Policies with assignments and next fire times (deleted ones only if asked).
    /// The policies by name (then id), a page at a time: `offset` skips, `limit` (default
    /// [`DEFAULT_AGENT_LIMIT`], at most [`MAX_LIMIT`]) bounds the answer below NATS's
    /// message size.
    Policies {
        #[serde(default)]
        include_deleted: bool,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default)]
        offset: Option<usize>,
    },
    /// One policy.
    Policy { id: PolicyId },
    /// Repositories and their circuits.
    Repos,
    /// One repository's snapshots, newest first, a page at a time (`cursor`: the previous
    /// page's `nextCursor`; `limit` default [`DEFAULT_LIMIT`], at most
    /// [`MAX_SNAPSHOT_LIMIT`]); `not_found` for a repository the tenant does not know.
    RepoSnapshots {
        id: RepoId,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default)]
        cursor: Option<String>,
    },
    /// The tenant's snapshots across its repositories, newest first, a page at a time:
    /// those of one repository, of one host (`agent`: that agent's hostname; an agent the
    /// tenant does not have matches nothing), made by one policy (its `policy:<id>` tag).
    Snapshots {
        #[serde(default)]
        repo: Option<RepoId>,
        #[serde(default)]
        agent: Option<AgentId>,
        #[serde(default)]
        host: Option<String>,
        #[serde(default)]
        policy: Option<PolicyId>,
        #[serde(default)]
        limit: Option<usize>,
        #[serde(default)]
        cursor: Option<String>,
    },
    /// The fleet at a glance: agents, tasks, circuits, and each policy's last success
    /// per agent with stale ones marked.
    Summary,
    /// The live notification rules, by name.
    Rules,
    /// One live notification rule; `not_found` for one that is not (deleted, never
    /// defined, another tenant's).
    Rule { id: RuleId },
    /// Notifications, newest first: of one rule, in one state (pending, sending,
    /// delivered, failed, deadLettered); `limit` default [`DEFAULT_LIMIT`], at most
    /// [`MAX_LIMIT`].
    Notifications {
        #[serde(default)]
        rule: Option<RuleId>,
        #[serde(default)]
        state: Option<String>,
        #[serde(default)]
        limit: Option<usize>,
    },
}

impl Query {
    /// A short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Query::Tasks { .. } => "tasks",
            Query::Task { .. } => "task",
            Query::TaskCounts => "task_counts",
            Query::Agents { .. } => "agents",
            Query::Agent { .. } => "agent",
            Query::AgentBackoff { .. } => "agent_backoff",
            Query::Runs { .. } => "runs",
            Query::History { .. } => "history",
            Query::Policies { .. } => "policies",
            Query::Policy { .. } => "policy",
            Query::Repos => "repos",
            Query::RepoSnapshots { .. } => "repo_snapshots",
            Query::Snapshots { .. } => "snapshots",
            Query::Summary => "summary",
            Query::Rules => "rules",
            Query::Rule { .. } => "rule",
            Query::Notifications { .. } => "notifications",
        }
    }
}

/// What went wrong with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is not a query, or a field is not valid.
    BadRequest,
    /// No such object in this tenant (another tenant's object is not found either).
    NotFound,
    /// The read model could not answer (storage trouble).
    Unavailable,
}

/// The answer to a query: `{"ok": …}` or `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    Ok(serde_json::Value),
    Error { code: ErrorCode, message: String },
}

impl Answer {
    /// An error answer.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Answer::Error {
            code,
            message: message.into(),
        }
    }
}

/// Why [`ask`] got no data.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("the projector does not answer (is `fleet up` or `fleet serve projector` running?)")]
    NoProjector,
    #[error("the projector's answer is not valid: {0}")]
    BadAnswer(String),
    #[error("cannot send the query: {0}")]
    Transport(String),
}

/// Asks the projector `query` about `tenant`.
pub async fn ask(
    client: &async_nats::Client,
    tenant: &TenantId,
    query: &Query,
) -> Result<serde_json::Value, AskError> {
    let body = serde_json::to_vec(query).map_err(|e| AskError::Transport(e.to_string()))?;
    request(client, subject::query(tenant), body).await
}

/// Sends `body` on `subject` and decodes the [`Answer`].
pub async fn request(
    client: &async_nats::Client,
    subject: String,
    body: Vec<u8>,
) -> Result<serde_json::Value, AskError> {
    let sent = tokio::time::timeout(QUERY_TIMEOUT, client.request(subject, body.into())).await;
    let message = match sent {
        Err(_) => return Err(AskError::NoProjector),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(AskError::NoProjector);
        }
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
            return Err(AskError::NoProjector);
        }
        Ok(Err(e)) => return Err(AskError::Transport(e.to_string())),
        Ok(Ok(message)) => message,
    };
    match serde_json::from_slice::<Answer>(&message.payload) {
        Ok(Answer::Ok(value)) => Ok(value),
        Ok(Answer::Error { code, message }) => Err(AskError::Refused { code, message }),
        Err(e) => Err(AskError::BadAnswer(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_as_camel_case_json() {
        let query: Query = serde_json::from_str(
            r#"{"query":"tasks","status":"failed","since":"2026-11-01T00:00:00Z"}"#,
        )
        .expect("parses");
        assert!(
            matches!(query, Query::Tasks { status: Some(s), limit: None, .. } if s == "failed")
        );
        let counts: Query = serde_json::from_str(r#"{"query":"taskCounts"}"#).expect("parses");
        assert_eq!(counts, Query::TaskCounts);
        assert!(serde_json::from_str::<Query>(r#"{"query":"dropTables"}"#).is_err());
    }

    #[test]
    fn answers_are_ok_or_error() {
        let ok = serde_json::to_string(&Answer::Ok(serde_json::json!([1]))).expect("json");
        assert_eq!(ok, r#"{"ok":[1]}"#);
        let error = Answer::error(ErrorCode::NotFound, "no task");
        let text = serde_json::to_string(&error).expect("json");
        assert_eq!(
            text,
            r#"{"error":{"code":"not_found","message":"no task"}}"#
        );
    }
}
