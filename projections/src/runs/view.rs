//! What the run read model stores: [`RunView`] (one finished attempt), [`LastSuccess`]
//! (per policy and agent), the task record it keeps to know where a run comes from, and
//! the keys of the run trees.
//!
//! Every stored struct is postcard, which is not self-describing: fields and variants are
//! only ever appended, and any change to what is stored bumps `Runs::VERSION`, so a
//! database written by an older build is rebuilt rather than misread. The task record
//! embeds the tasks model's [`TaskView`]: a change to its stored bytes bumps this model's
//! version too.

use chrono::serde::{ts_microseconds, ts_microseconds_option};
use chrono::{DateTime, Utc};
use fleet_events::event::{ErrorClass, ExhaustedReason, LostReason, RunSummary, TaskError};

use crate::tasks::TaskView;
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::task_state::Task;
use serde::{Deserialize, Serialize};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcome {
    /// restic finished successfully; the run's summary says what it did.
    Succeeded,
    /// The attempt failed; the run's error says how.
    Failed { class: ErrorClass },
    /// The agent holding the attempt was lost.
    Lost { reason: LostReason },
    /// The task was cancelled while an agent held the attempt.
    Cancelled { reason: String },
    /// The task was given up while an agent held the attempt.
    Exhausted { reason: ExhaustedReason },
}

impl RunOutcome {
    /// The outcome without its details, for filtering.
    pub fn kind(&self) -> RunOutcomeKind {
        match self {
            RunOutcome::Succeeded => RunOutcomeKind::Succeeded,
            RunOutcome::Failed { .. } => RunOutcomeKind::Failed,
            RunOutcome::Lost { .. } => RunOutcomeKind::Lost,
            RunOutcome::Cancelled { .. } => RunOutcomeKind::Cancelled,
            RunOutcome::Exhausted { .. } => RunOutcomeKind::Exhausted,
        }
    }
}

pub use fleet_events::task_state::RunOutcomeKind;

/// One finished attempt of a task (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    pub tenant: TenantId,
    pub task: TaskId,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub policy: PolicyId,
    pub agent: AgentId,
    pub kind: TaskKind,
    pub outcome: RunOutcome,
    /// What a successful run did.
    pub summary: Option<RunSummary>,
    /// How a failed run failed.
    pub error: Option<TaskError>,
    /// Whether the agent reported that restic started; if not, `started_at` is the
    /// dispatch time.
    pub started: bool,
    /// When restic started, else when the attempt was dispatched.
    #[serde(with = "ts_microseconds")]
    pub started_at: DateTime<Utc>,
    /// When the event that ended the attempt happened.
    #[serde(with = "ts_microseconds")]
    pub finished_at: DateTime<Utc>,
    /// From `started_at` to `finished_at`, in milliseconds (0 if the clocks disagree).
    pub duration_ms: u64,
}

/// The last successful run of a policy on an agent (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSuccess {
    pub policy: PolicyId,
    pub agent: AgentId,
    pub kind: TaskKind,
    pub task: TaskId,
    pub attempt: u32,
    /// When it finished.
    #[serde(with = "ts_microseconds")]
    pub at: DateTime<Utc>,
    /// The snapshot a backup made.
    pub snapshot_id: Option<String>,
}

/// Which runs [`crate::Checkpointed::<crate::Runs>::list`] returns: every field that is
/// set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub agent: Option<AgentId>,
    pub policy: Option<PolicyId>,
    pub kind: Option<TaskKind>,
    pub outcome: Option<RunOutcomeKind>,
    /// Runs finished at or after this.
    pub since: Option<DateTime<Utc>>,
}

impl RunFilter {
    /// Whether `run` passes the filter.
    pub fn matches(&self, run: &RunView) -> bool {
        self.agent.is_none_or(|a| a == run.agent)
            && self.policy.is_none_or(|p| p == run.policy)
            && self.kind.is_none_or(|k| k == run.kind)
            && self.outcome.is_none_or(|o| o == run.outcome.kind())
            && self.since.is_none_or(|s| run.finished_at >= s)
    }
}

/// What the model keeps of a task between its events (postcard): the tasks model's
/// [`TaskView`] (to check each event with [`Task::fold`]), plus where the current attempt
/// comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskRecord {
    pub view: TaskView,
    /// Whether restic started in the current attempt.
    pub started: bool,
    /// When the current attempt started (restic), else when it was dispatched.
    #[serde(with = "ts_microseconds_option")]
    pub started_at: Option<DateTime<Utc>>,
}

impl TaskRecord {
    /// The record of `task`, keeping the kind and the attempt's start from `before`.
    pub fn new(task: &Task, tenant: TenantId, before: Option<&TaskRecord>) -> Self {
        let kind = task.kind().or(before.and_then(|r| r.view.kind));
        Self {
            view: TaskView::new(task, tenant, kind),
            started: before.is_some_and(|r| r.started),
            started_at: before.and_then(|r| r.started_at),
        }
    }
}

/// Postcard encoding of the stored structs.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Postcard decoding of the stored structs.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// The `runs.tasks` key: the task's UUID bytes.
pub(crate) fn task_key(task: TaskId) -> [u8; 16] {
    *task.uuid().as_bytes()
}

/// The prefix of a tenant's keys in `runs.by_time` and `runs.last_success`: the tenant,
/// a zero byte (tenant slugs have none).
pub(crate) fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

/// The first key after every key of `tenant`: the tenant, the byte 1.
pub(crate) fn tenant_end(tenant: &TenantId) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(1);
    key
}

/// Microseconds since the epoch, big-endian, offset by 2^63 so that keys sort by time
/// before 1970 too.
pub(crate) fn time_bytes(at: DateTime<Utc>) -> [u8; 8] {
    ((at.timestamp_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The `runs.by_time` key: tenant, zero byte, finished time, task UUID, attempt
/// (big-endian), so a tenant's runs sort by when they finished.
pub(crate) fn run_key(tenant: &TenantId, run: &RunView) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(&time_bytes(run.finished_at));
    key.extend_from_slice(run.task.uuid().as_bytes());
    key.extend_from_slice(&run.attempt.to_be_bytes());
    key
}

/// The `runs.last_success` key: tenant, zero byte, policy UUID, agent UUID.
pub(crate) fn last_success_key(tenant: &TenantId, policy: PolicyId, agent: AgentId) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(policy.uuid().as_bytes());
    key.extend_from_slice(agent.uuid().as_bytes());
    key
}
