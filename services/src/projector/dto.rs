//! The JSON shapes of query answers (camelCase, RFC 3339 times): built from the read
//! models' stored views, which keep compact forms of their own.

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::protocol::KindCounts;
use fleet_events::settings::AgentSettings;
use fleet_projections::AgentView;
use serde::Serialize;

/// One agent as operators see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub hostname: String,
    /// False for an agent the log knows only from tasks sent to it.
    pub registered: bool,
    pub registered_at: Option<DateTime<Utc>>,
    pub decommissioned: bool,
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    pub restic_version: Option<String>,
    pub settings: AgentSettings,
    /// Tasks the agent holds (dispatched, acknowledged, started), all kinds.
    pub running_tasks: u32,
    pub running_by_kind: KindCounts,
    pub saturated: bool,
    /// Why it is saturated: which limit is reached.
    pub saturation: Option<String>,
    /// When its earliest retry is due: until then the dispatcher holds its new work.
    pub backoff_until: Option<DateTime<Utc>>,
    pub pending_retries: usize,
}

impl From<&AgentView> for Agent {
    fn from(view: &AgentView) -> Self {
        let saturation = view.saturation();
        Agent {
            id: view.agent,
            name: view.name.clone(),
            hostname: view.hostname.clone(),
            registered: view.registered,
            registered_at: view.registered_at,
            decommissioned: view.decommissioned,
            online: view.online,
            last_seen: view.last_seen,
            agent_version: view.agent_version.clone(),
            restic_version: view.restic_version.clone(),
            settings: view.settings.clone(),
            running_tasks: view.running.total(),
            running_by_kind: view.running,
            saturated: saturation.is_some(),
            saturation: saturation.map(|s| s.to_string()),
            backoff_until: view.earliest_retry(),
            pending_retries: view.pending_retries(),
        }
    }
}

/// One task waiting for its retry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    pub task: TaskId,
    pub due_at: DateTime<Utc>,
}

/// An agent's backoff status.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackoffStatus {
    pub agent: AgentId,
    /// True while a retry is pending: the dispatcher holds new work for this agent.
    pub in_backoff: bool,
    pub backoff_until: Option<DateTime<Utc>>,
    pub pending_retries: usize,
    pub retries: Vec<Retry>,
}

impl From<&AgentView> for BackoffStatus {
    fn from(view: &AgentView) -> Self {
        BackoffStatus {
            agent: view.agent,
            in_backoff: !view.backoff.is_empty(),
            backoff_until: view.earliest_retry(),
            pending_retries: view.pending_retries(),
            retries: view
                .backoff
                .iter()
                .map(|b| Retry {
                    task: b.task,
                    due_at: b.due_at,
                })
                .collect(),
        }
    }
}
