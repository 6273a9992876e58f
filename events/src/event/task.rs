//! Events of the task aggregate and the run results they carry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::EventType;
use crate::event::hook::HookRun;
use crate::event::snapshot::TaskRequest;
use crate::ids::{AgentId, PolicyId, RepoId, TaskId};
use crate::policy::{PolicySpec, TaskKind};

/// Something that happened to one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskEvent {
    /// The scheduler created the task: `policy` is due on `agent`. `spec` is the policy as
    /// it was at that moment, so later edits do not change a task already made.
    ///
    /// Written by: scheduler (`services/scheduler/src/decide.rs`, appended in
    /// `service.rs`); API run-now (`command/src/policy.rs`); msg id
    /// `sched:{policy}:{agent}:{fire_at µs}` (`scheduler::msg_id`); run-now
    /// `scheduled:{task}`.
    Scheduled {
        policy: PolicyId,
        agent: AgentId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        fire_at: DateTime<Utc>,
        /// The fire time plus the pair's jitter: not dispatched before this.
        #[serde(with = "chrono::serde::ts_microseconds")]
        run_at: DateTime<Utc>,
        spec: Box<PolicySpec>,
    },
    /// The scheduler did not create a run for this fire time, and says why.
    ///
    /// Written by: scheduler (`services/scheduler/src/decide.rs`); msg id
    /// `sched:{policy}:{agent}:{fire_at µs}` (`scheduler::msg_id`).
    Skipped {
        policy: PolicyId,
        agent: AgentId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        fire_at: DateTime<Utc>,
        reason: SkipReason,
    },
    /// The dispatcher handed attempt `attempt` (1 for the first) to the agent.
    ///
    /// Written by: dispatcher (`services/dispatcher/src/plan.rs`, appended in
    /// `service.rs`); msg id `dispatch:{task}:{attempt}` (`Dispatch::event_msg_id`).
    Dispatched { agent: AgentId, attempt: u32 },
    /// The agent recorded the task in its local state.
    ///
    /// Written by: intake (`services/intake/src/decide.rs`, appended in
    /// `intake/src/service.rs`); msg id `report:{task}:{attempt}:acknowledged`
    /// (`AgentReport::msg_id`).
    Acknowledged { attempt: u32 },
    /// restic started.
    ///
    /// Written by: intake (`services/intake/src/decide.rs`, appended in
    /// `intake/src/service.rs`); msg id `report:{task}:{attempt}:started`
    /// (`AgentReport::msg_id`).
    Started { attempt: u32 },
    /// restic finished successfully.
    ///
    /// Written by: intake (`services/intake/src/decide.rs`, appended in
    /// `intake/src/service.rs`); msg id `report:{task}:{attempt}:succeeded`
    /// (`AgentReport::msg_id`).
    Succeeded { attempt: u32, summary: RunSummary },
    /// The attempt failed; `error` says how, classified.
    ///
    /// Written by: intake (agent report, `intake/src/decide.rs`); dispatcher run timeout
    /// (`services/dispatcher/src/timeouts.rs`); msg id intake
    /// `report:{task}:{attempt}:failed`; dispatcher `timeout:{task}:{attempt}`.
    Failed { attempt: u32, error: TaskError },
    /// The attempt will be retried once `due_at` has passed.
    ///
    /// Written by: retry enforcer (`services/retry/src/enforcer/decide.rs`, appended in
    /// `retry/src/service.rs`); msg id `retry:{task}:{attempt}`.
    RetryScheduled {
        attempt: u32,
        #[serde(with = "chrono::serde::ts_microseconds")]
        due_at: DateTime<Utc>,
        delay_ms: u64,
    },
    /// The retry delay has passed: the task waits for dispatch again.
    ///
    /// Written by: retry enforcer (`services/retry/src/enforcer/decide.rs`); msg id
    /// `retry-due:{task}:{attempt}`.
    RetryDue,
    /// The task failed permanently.
    ///
    /// Written by: retry enforcer (`services/retry/src/enforcer/decide.rs`); msg id
    /// `retry:{task}:{attempt}`.
    Exhausted {
        attempts: u32,
        reason: ExhaustedReason,
    },
    /// An operator or the overlap policy cancelled the task.
    ///
    /// Written by: API command (`services/command/src/task.rs`); scheduler overlap replace
    /// (`scheduler/src/decide.rs`); msg id API: event id (append_chain); scheduler
    /// `sched:{policy}:{agent}:{fire µs}:cancel:{old}`.
    Cancelled { reason: String },
    /// The agent holding the attempt went silent past its lease (or came back without it).
    ///
    /// Written by: dispatcher lease expiry (`services/dispatcher/src/liveness.rs`); intake
    /// (report interrupted); msg id dispatcher `lost:{task}:{attempt}`; intake
    /// `report:{task}:{attempt}:interrupted`.
    Lost { attempt: u32, reason: LostReason },
    /// Before running `attempt`, the agent ran `restic unlock` (stale locks only, never
    /// `--remove-all`) on the task's repository, because the `interrupted` attempts were
    /// running there when the agent stopped and their restic may have left a lock. Legal
    /// while the attempt is acknowledged or running; the task's status does not change.
    ///
    /// Written by: intake (`services/intake/src/decide.rs`, appended in
    /// `intake/src/service.rs`); msg id `report:{task}:{attempt}:unlock_ran`
    /// (`AgentReport::msg_id`).
    UnlockRan {
        attempt: u32,
        interrupted: Vec<InterruptedAttempt>,
        outcome: UnlockOutcome,
    },
    /// After the backup of `attempt` succeeded, the agent applied the policy's retention
    /// to the policy's own snapshots: `restic forget` (never `--prune`) on the snapshots
    /// tagged `policy:<id>`, grouped by host and paths. Legal while the attempt is running
    /// and after it succeeded (reports may overtake each other in intake); the task's
    /// status does not change.
    ///
    /// Written by: intake (`services/intake/src/decide.rs`, appended in
    /// `intake/src/service.rs`); msg id `report:{task}:{attempt}:retention_applied`
    /// (`AgentReport::msg_id`).
    RetentionApplied {
        attempt: u32,
        /// Snapshots of the policy forget kept.
        kept: u64,
        /// Snapshots of the policy forget removed.
        removed: u64,
        /// Short ids of the removed snapshots, at most [`MAX_REMOVED_IDS`]; `removed`
        /// counts them all.
        removed_ids: Vec<String>,
        outcome: RetentionOutcome,
    },
    /// An operator asked for a task no schedule makes: a restore or an inventory refresh,
    /// on `agent`, with the repository and secret of `policy` (`spec` is that policy as it
    /// was, its kind set to the request's). From here on it runs like a scheduled task
    /// (status scheduled, same dispatch, limits, retries and isolation); the scheduler's
    /// overlap rules ignore it.
    ///
    /// Written by: API command (`services/command/src/request.rs`, via
    /// `api/src/write_request.rs`); msg id `requested:{task}`.
    Requested {
        policy: PolicyId,
        agent: AgentId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        run_at: DateTime<Utc>,
        spec: Box<PolicySpec>,
        request: TaskRequest,
        /// Who asked (the token's name), for the task's history.
        by: String,
    },
    /// The agent ran one of the policy's hooks for `attempt` (its configuration's command
    /// of that name). A before-hook that failed is followed by the attempt's failure
    /// (class `hook`); other stages never change the outcome. Legal while the attempt
    /// runs and after it ended (reports may overtake each other in intake); the task's
    /// status does not change.
    ///
    /// Written by: intake (`services/intake/src/decide.rs`, appended in
    /// `intake/src/service.rs`); msg id `report:{task}:{attempt}:hook_ran:{stage}:{hook}`
    /// (`AgentReport::msg_id`).
    HookRan { attempt: u32, hook: HookRun },
}

impl TaskEvent {
    /// The event's type, as named in the `Fleet-Event-Type` header.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Scheduled { .. } => EventType::TaskScheduled,
            Self::Skipped { .. } => EventType::TaskSkipped,
            Self::Dispatched { .. } => EventType::TaskDispatched,
            Self::Acknowledged { .. } => EventType::TaskAcknowledged,
            Self::Started { .. } => EventType::TaskStarted,
            Self::Succeeded { .. } => EventType::TaskSucceeded,
            Self::Failed { .. } => EventType::TaskFailed,
            Self::RetryScheduled { .. } => EventType::TaskRetryScheduled,
            Self::RetryDue => EventType::TaskRetryDue,
            Self::Exhausted { .. } => EventType::TaskExhausted,
            Self::Cancelled { .. } => EventType::TaskCancelled,
            Self::Lost { .. } => EventType::TaskLost,
            Self::UnlockRan { .. } => EventType::TaskUnlockRan,
            Self::RetentionApplied { .. } => EventType::TaskRetentionApplied,
            Self::Requested { .. } => EventType::TaskRequested,
            Self::HookRan { .. } => EventType::TaskHookRan,
        }
    }
}

/// Why a fire time produced no run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SkipReason {
    /// The overlap policy forbids a second run while `running` is unfinished.
    Overlap { running: TaskId },
    /// The fire time was missed (scheduler down) and the policy says skip, or its starting
    /// deadline passed.
    Missed,
}

/// How a failure is classified; the class decides whether and how the task is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorClass {
    /// The repository or NATS could not be reached.
    Network,
    /// The machine ran out of something (disk, memory, file handles).
    Resource,
    /// The repository is locked by another restic.
    Lock,
    /// Wrong password or credentials.
    Auth,
    /// There is no repository at the location.
    MissingRepository,
    /// Anything that will fail the same way again (bad configuration, unreadable paths).
    Permanent,
    /// The run passed its policy's run timeout.
    Timeout,
    /// The agent holding the task was lost.
    Lost,
    /// A before-hook failed, timed out or is not defined on the agent: restic did not
    /// run. Retried only when the policy's hooks say `retryOnFailure`.
    Hook,
}

impl ErrorClass {
    /// Every class, in a fixed order.
    pub const ALL: [ErrorClass; 9] = [
        ErrorClass::Network,
        ErrorClass::Resource,
        ErrorClass::Lock,
        ErrorClass::Auth,
        ErrorClass::MissingRepository,
        ErrorClass::Permanent,
        ErrorClass::Timeout,
        ErrorClass::Lost,
        ErrorClass::Hook,
    ];

    /// The lowercase name used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Network => "network",
            ErrorClass::Resource => "resource",
            ErrorClass::Lock => "lock",
            ErrorClass::Auth => "auth",
            ErrorClass::MissingRepository => "missing_repository",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Lost => "lost",
            ErrorClass::Hook => "hook",
        }
    }
}

/// A classified failure of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub class: ErrorClass,
    /// What restic (or the agent) said, at most [`TaskError::MAX_MESSAGE`] bytes.
    pub message: String,
    /// restic's exit code, when it ran.
    pub exit_code: Option<i32>,
}

impl TaskError {
    /// Longest message kept; longer ones are cut at a character boundary.
    pub const MAX_MESSAGE: usize = 4096;

    /// A classified error whose message is cut to [`TaskError::MAX_MESSAGE`].
    pub fn new(class: ErrorClass, message: &str, exit_code: Option<i32>) -> Self {
        let mut end = message.len().min(Self::MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            class,
            message: message[..end].to_owned(),
            exit_code,
        }
    }
}

/// Why a task failed permanently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExhaustedReason {
    /// The last failure's class is never retried (auth, permanent, missing repository).
    NotRetryable(ErrorClass),
    /// Every retry of the budget was used.
    BudgetSpent,
}

/// Why an attempt was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LostReason {
    /// No heartbeat from the agent within its lease and grace period.
    LeaseExpired,
    /// The agent restarted and reported the attempt as interrupted.
    AgentRestarted,
    /// The agent was decommissioned.
    AgentDecommissioned,
}

/// One attempt of a task (this one or another on the same repository) that was running
/// when its agent stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InterruptedAttempt {
    pub task: TaskId,
    pub attempt: u32,
}

/// What `restic unlock` before a run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnlockOutcome {
    /// It succeeded: no stale lock is left on the repository (there may have been none).
    Unlocked,
    /// It failed, classified like a run's failure (restic's message, no secret); the run
    /// went ahead, and the agent tries again before its next run on the repository.
    Failed(TaskError),
}

/// Most snapshot ids a retention report names; the counts cover the rest.
pub const MAX_REMOVED_IDS: usize = 100;

/// How `restic forget` after a backup ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionOutcome {
    /// It ran to its end: the counts and ids say what it kept and removed.
    Applied,
    /// It failed, classified like a run's failure (restic's message, no secret). The
    /// backup's snapshot exists, so the backup still succeeded; the counts are those restic
    /// printed before failing (usually none), and the next backup applies the retention
    /// again.
    Failed(TaskError),
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub kind: TaskKind,
    pub duration_ms: u64,
    pub detail: RunDetail,
}

/// Kind-specific results of a successful run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunDetail {
    Backup(BackupSummary),
    /// `restic check` found no errors.
    Check,
    Prune(PruneSummary),
    Restore(RestoreSummary),
    Refresh(RefreshSummary),
}

/// restic backup's summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub snapshot_id: Option<String>,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added_bytes: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Files restic could not read (exit code 3): the snapshot is partial.
    pub unreadable_files: u64,
}

/// What `forget --prune` kept and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneSummary {
    pub snapshots_kept: u64,
    pub snapshots_removed: u64,
}

/// What a restore did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSummary {
    /// restic's full snapshot id.
    pub snapshot: String,
    pub dry_run: bool,
    /// Files written into the target (dry: that would be).
    pub files_restored: u64,
    pub bytes_restored: u64,
    /// Files left alone because they exist in the target and the overwrite policy keeps
    /// them.
    pub files_skipped: u64,
    /// Files restic or the agent could not restore.
    pub errors: u64,
    /// The first few of those errors (paths and restic's words, no contents).
    pub error_samples: Vec<String>,
}

/// Most error messages a restore summary keeps.
pub const MAX_ERROR_SAMPLES: usize = 10;

/// What an inventory refresh found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshSummary {
    /// Snapshots in the repository.
    pub snapshots: u64,
}

/// The repository a scheduled task uses.
pub fn repo_of(spec: &PolicySpec) -> RepoId {
    RepoId::for_url(&spec.repository.url)
}
