//! What one hook did: the record of `task.hook_ran` and of the agent's `HookRan` report.

use serde::{Deserialize, Serialize};

use crate::policy::HookStage;

/// Most bytes of a hook's output kept (its last ones).
pub const MAX_HOOK_OUTPUT: usize = 4096;

/// One run of one hook of a task's attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    /// The hook's name in the policy and in the agent's configuration.
    pub name: String,
    pub stage: HookStage,
    pub outcome: HookOutcome,
    pub duration_ms: u64,
    /// The last [`MAX_HOOK_OUTPUT`] bytes of stdout and stderr, interleaved as they came
    /// (lossy UTF-8).
    pub output: String,
    /// True if earlier output was cut off.
    pub output_cut: bool,
}

impl HookRun {
    /// True if the hook ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.outcome == HookOutcome::Exited(0)
    }
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookOutcome {
    /// It exited with this code (0 is success).
    Exited(i32),
    /// A signal it did not get from the agent ended it.
    Killed(i32),
    /// It passed its timeout: the agent killed it and its process group.
    TimedOut,
    /// Its program does not exist.
    NotFound,
    /// It could not be started, for this reason (permissions, a missing directory).
    NotStarted(String),
    /// The attempt was cancelled while it ran: the agent killed it.
    Cancelled,
}

impl HookOutcome {
    /// A few words for logs, errors and the task's history.
    pub fn describe(&self) -> String {
        match self {
            HookOutcome::Exited(0) => "succeeded".into(),
            HookOutcome::Exited(code) => format!("exited with code {code}"),
            HookOutcome::Killed(signal) => format!("killed by signal {signal}"),
            HookOutcome::TimedOut => "timed out and was killed".into(),
            HookOutcome::NotFound => "its program was not found".into(),
            HookOutcome::NotStarted(why) => format!("could not start: {why}"),
            HookOutcome::Cancelled => "was stopped: the attempt was cancelled".into(),
        }
    }
}
