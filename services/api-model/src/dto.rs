//! The JSON shapes of the read models' answers (camelCase, RFC 3339 times), as the API
//! serves them and its clients read them: `Serialize` for the projector, `Deserialize`
//! for the CLI and tests. The projector builds them from its stored views
//! (`fleet_projector::dto`).

use chrono::{DateTime, NaiveDate, Utc};
use fleet_events::event::ErrorClass;
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId};
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::protocol::KindCounts;
use fleet_events::settings::AgentSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod notify;
mod snapshots;
pub use notify::{Notification, OverdueAgent, OverduePolicy, Rule};
pub use snapshots::{AddedBy, ListedBy, NamedPolicy, Snapshot, SnapshotPage, SnapshotRepository};

/// One task as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: TaskId,
    /// Its state: scheduled, dispatched, running, failed, retry_scheduled, succeeded, ...
    pub status: String,
    pub policy: PolicyId,
    pub agent: AgentId,
    /// `None` for a skipped task.
    pub kind: Option<TaskKind>,
    /// The current attempt: 0 before the first dispatch.
    pub attempt: u32,
    pub last_error: Option<ErrorClass>,
    pub fire_at: DateTime<Utc>,
    pub run_at: Option<DateTime<Utc>>,
    pub retry_due_at: Option<DateTime<Utc>>,
}

/// One task with its history, as `GET /v1/tasks/{id}` answers: the task, and `events`, every
/// event of it in log order (the event log's JSON, see `GET /v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    pub events: Vec<Value>,
}

/// One agent as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// When it was last heard: its last heartbeat as the server stored it (live, accurate
    /// to one heartbeat interval), or what the log last said of it (registered, back
    /// online, gone offline) if that is later or no heartbeat is known.
    pub last_seen: Option<DateTime<Utc>>,
    /// For an offline agent: since when, its last heartbeat before it went offline.
    pub offline_since: Option<DateTime<Utc>>,
    pub agent_version: Option<String>,
    pub restic_version: Option<String>,
    pub settings: AgentSettings,
    /// Tasks the agent holds (dispatched, acknowledged, started), all kinds.
    pub running_tasks: u32,
    pub running_by_kind: KindCounts,
    /// Tasks waiting for dispatch to the agent (scheduled, or due for a retry).
    pub queue_depth: u32,
    pub queued_by_kind: KindCounts,
    pub saturated: bool,
    /// Why it is saturated: which limit is reached.
    pub saturation: Option<String>,
    /// When its earliest retry is due: until then the dispatcher holds its new work.
    pub backoff_until: Option<DateTime<Utc>>,
    pub pending_retries: usize,
    /// The live policies assigned to it that are overdue here (the notifier's
    /// `assignment.overdue`, until `assignment.caught_up`).
    pub overdue: Vec<OverduePolicy>,
}

/// One task waiting for its retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    pub task: TaskId,
    pub due_at: DateTime<Utc>,
}

/// An agent's backoff status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackoffStatus {
    pub agent: AgentId,
    /// True while a retry is pending: the dispatcher holds new work for this agent.
    pub in_backoff: bool,
    pub backoff_until: Option<DateTime<Utc>>,
    pub pending_retries: usize,
    pub retries: Vec<Retry>,
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub task: TaskId,
    pub attempt: u32,
    pub policy: PolicyId,
    pub agent: AgentId,
    pub kind: TaskKind,
    /// succeeded, failed, lost, cancelled or exhausted.
    pub outcome: String,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    /// See [`run_summary`].
    pub summary: Option<Value>,
    pub snapshot_id: Option<String>,
    /// False when restic's start was not reported: `startedAt` is then the dispatch time.
    pub started: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
}

/// What ended on one UTC day: for a policy on an agent, or for the whole tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryDay {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: NaiveDate,
    /// `null` in a tenant's day.
    pub policy: Option<PolicyId>,
    /// `null` in a tenant's day.
    pub agent: Option<AgentId>,
    /// Attempts that ended on the day, then by outcome.
    pub runs: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub lost: u64,
    pub cancelled: u64,
    pub exhausted: u64,
    /// The attempts' durations added up.
    pub duration_ms: u64,
    /// Bytes the day's successful backups added to their repositories.
    pub data_added_bytes: u64,
    /// Tasks that ended without a successful run: skipped by their schedule, given up
    /// after their retries, cancelled.
    pub tasks_skipped: u64,
    pub tasks_exhausted: u64,
    pub tasks_cancelled: u64,
}

/// One policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub id: PolicyId,
    pub spec: PolicySpec,
    pub paused: bool,
    pub deleted: bool,
    pub agents: Vec<AgentId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revision: u64,
    /// The stream sequence of its last event: send it as `If-Match` to update only if
    /// nothing changed it since.
    pub version: u64,
    /// The next fire times (before jitter); none while paused.
    pub next_fires: Vec<DateTime<Utc>>,
    /// Its agents on which it is overdue (the notifier's `assignment.overdue`, until
    /// `assignment.caught_up`), by agent.
    pub overdue: Vec<OverdueAgent>,
}

/// One repository's circuit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repo {
    pub id: RepoId,
    /// closed or open.
    pub circuit: String,
    pub open_until: Option<DateTime<Utc>>,
    pub failures: u32,
    pub changed_at: DateTime<Utc>,
}

/// Agents by state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCounts {
    pub total: usize,
    pub online: usize,
    pub saturated: usize,
    pub in_backoff: usize,
    pub decommissioned: usize,
}

/// Whether one policy's backups on one agent are current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    pub policy: PolicyId,
    pub policy_name: String,
    pub agent: AgentId,
    pub last_success_at: Option<DateTime<Utc>>,
    pub snapshot_id: Option<String>,
    /// No success within two schedule periods (counted from the policy's creation when it
    /// never succeeded).
    pub stale: bool,
    /// Since when the notifier has found it overdue (`assignment.overdue`), until it
    /// caught up.
    pub overdue_since: Option<DateTime<Utc>>,
}

/// The fleet at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub agents: AgentCounts,
    /// Every task the log holds by its current status: ended tasks stay counted after
    /// retention retires them from the per-task views.
    pub tasks: serde_json::Map<String, serde_json::Value>,
    pub policies: usize,
    pub paused_policies: usize,
    pub open_circuits: usize,
    pub freshness: Vec<Freshness>,
    pub stale: usize,
    /// Days of the log's clock the read models keep runs and ended tasks; older ones
    /// remain as per-day totals (`GET /v1/history`).
    pub history_days: u32,
}
