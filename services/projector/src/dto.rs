//! The JSON shapes of query answers (camelCase, RFC 3339 times): built from the read
//! models' stored views, which keep compact forms of their own.

use chrono::{DateTime, Utc};
use fleet_events::event::{ErrorClass, RunDetail, RunSummary};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId};
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::protocol::KindCounts;
use fleet_events::settings::AgentSettings;
use fleet_projections::{
    AgentView, Circuit, LastSuccess, Overdue, PolicyView, RepoView, RunView, TaskView,
};
use serde::Serialize;
use serde_json::Value;

mod notify;
mod snapshots;
pub use notify::{Notification, OverdueAgent, OverduePolicy, Rule, overdue_agents};
pub use snapshots::{AddedBy, ListedBy, NamedPolicy, Snapshot, SnapshotPage, SnapshotRepository};
// One shape for what events carry, wherever shown.
pub use fleet_api_model::event_shapes::{request_json, run_summary, snapshot_json};

/// One task as operators see it.
#[derive(Debug, Clone, Serialize)]
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

impl Task {
    pub fn new(id: TaskId, view: &TaskView) -> Self {
        Task {
            id,
            status: view.status.clone(),
            policy: view.policy,
            agent: view.agent,
            kind: view.kind,
            attempt: view.attempt,
            last_error: view.last_error,
            fire_at: view.fire_at,
            run_at: view.run_at,
            retry_due_at: view.retry_due_at,
        }
    }
}

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

impl Agent {
    /// The agent `view` shows, last heard at `heard` (from its heartbeats, if known).
    pub fn new(view: &AgentView, heard: Option<DateTime<Utc>>) -> Self {
        let mut agent = Agent::from(view);
        agent.last_seen = agent.last_seen.max(heard);
        agent
    }
}

impl From<&AgentView> for Agent {
    fn from(view: &AgentView) -> Self {
        let saturation = view.saturation();
        let offline = view.registered && !view.online && !view.decommissioned;
        Agent {
            id: view.agent,
            name: view.name.clone(),
            hostname: view.hostname.clone(),
            registered: view.registered,
            registered_at: view.registered_at,
            decommissioned: view.decommissioned,
            online: view.online,
            last_seen: view.last_seen,
            offline_since: if offline { view.last_seen } else { None },
            agent_version: view.agent_version.clone(),
            restic_version: view.restic_version.clone(),
            settings: view.settings.clone(),
            running_tasks: view.running.total(),
            running_by_kind: view.running,
            queue_depth: view.queued.total(),
            queued_by_kind: view.queued,
            saturated: saturation.is_some(),
            saturation: saturation.map(|s| s.to_string()),
            backoff_until: view.earliest_retry(),
            pending_retries: view.pending_retries(),
            overdue: Vec::new(),
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

/// One finished attempt.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub task: TaskId,
    pub attempt: u32,
    pub policy: PolicyId,
    pub agent: AgentId,
    pub kind: TaskKind,
    /// succeeded, failed, lost, cancelled or exhausted.
    pub outcome: &'static str,
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

impl From<&RunView> for Run {
    fn from(view: &RunView) -> Self {
        Run {
            task: view.task,
            attempt: view.attempt,
            policy: view.policy,
            agent: view.agent,
            kind: view.kind,
            outcome: view.outcome.kind().as_str(),
            error_class: view.error.as_ref().map(|e| e.class),
            error: view.error.as_ref().map(|e| e.message.clone()),
            snapshot_id: view.summary.as_ref().and_then(snapshot_of),
            summary: view.summary.as_ref().map(run_summary),
            started: view.started,
            started_at: view.started_at,
            finished_at: view.finished_at,
            duration_ms: view.duration_ms,
        }
    }
}

/// The snapshot a backup made, if the summary is a backup's.
fn snapshot_of(summary: &RunSummary) -> Option<String> {
    match &summary.detail {
        RunDetail::Backup(backup) => backup.snapshot_id.clone(),
        _ => None,
    }
}

/// How many next fire times a policy shows.
pub const NEXT_FIRES: usize = 5;

/// One policy.
#[derive(Debug, Clone, Serialize)]
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

impl Policy {
    /// The policy `view` shows at `now`; `overdue` holds its overdue assignments (those
    /// of agents it is no longer assigned to are left out).
    pub fn new(view: &PolicyView, now: DateTime<Utc>, overdue: &[Overdue]) -> Self {
        Policy {
            id: view.id,
            spec: view.spec.clone(),
            paused: view.paused,
            deleted: view.deleted,
            agents: view.agents.clone(),
            created_at: view.created_at,
            updated_at: view.updated_at,
            revision: view.revision,
            version: view.version,
            next_fires: view.next_fires(now, NEXT_FIRES),
            overdue: overdue_agents(overdue, &view.agents),
        }
    }
}

/// One repository's circuit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repo {
    pub id: RepoId,
    /// closed or open.
    pub circuit: &'static str,
    pub open_until: Option<DateTime<Utc>>,
    pub failures: u32,
    pub changed_at: DateTime<Utc>,
}

impl From<&RepoView> for Repo {
    fn from(view: &RepoView) -> Self {
        let (circuit, open_until, failures) = match view.circuit {
            Circuit::Closed => ("closed", None, 0),
            Circuit::Open { until, failures } => ("open", Some(until), failures),
        };
        Repo {
            id: view.id,
            circuit,
            open_until,
            failures,
            changed_at: view.changed_at,
        }
    }
}

/// Agents by state.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCounts {
    pub total: usize,
    pub online: usize,
    pub saturated: usize,
    pub in_backoff: usize,
    pub decommissioned: usize,
}

/// Whether one policy's backups on one agent are current.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub agents: AgentCounts,
    pub tasks: serde_json::Map<String, serde_json::Value>,
    pub policies: usize,
    pub paused_policies: usize,
    pub open_circuits: usize,
    pub freshness: Vec<Freshness>,
    pub stale: usize,
}

/// The freshness of every assigned (policy, agent) pair of active policies at `now`, with
/// the pairs `overdue` holds marked.
pub fn freshness(
    policies: &[PolicyView],
    successes: &[LastSuccess],
    overdue: &[Overdue],
    now: DateTime<Utc>,
) -> Vec<Freshness> {
    let mut out = Vec::new();
    for policy in policies.iter().filter(|p| !p.deleted && !p.paused) {
        let fires = policy.next_fires(now, 2);
        let period = match fires.as_slice() {
            [a, b] => Some(*b - *a),
            _ => None,
        };
        for agent in &policy.agents {
            let last = successes
                .iter()
                .find(|s| s.policy == policy.id && s.agent == *agent);
            let since = last.map_or(policy.created_at, |s| s.at);
            let stale = period.is_some_and(|period| now - since > period * 2);
            out.push(Freshness {
                policy: policy.id,
                policy_name: policy.spec.name.clone(),
                agent: *agent,
                last_success_at: last.map(|s| s.at),
                snapshot_id: last.and_then(|s| s.snapshot_id.clone()),
                stale,
                overdue_since: overdue
                    .iter()
                    .find(|o| o.policy == policy.id && o.agent == *agent)
                    .map(|o| o.since),
            });
        }
    }
    out
}
