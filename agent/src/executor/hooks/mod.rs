//! A policy's hooks on this agent: the policy names them, the agent's own configuration
//! says what each runs. Before-hooks run once the attempt started, before restic: the
//! first that does not exit 0 fails the task (class `hook`) and restic does not run. Once
//! the run ended, `onSuccess` or `onFailure` hooks run, then `after` hooks; their failures
//! are recorded and change nothing. Each run is a `HookRan` report.
//!
//! - [`book`]: the definitions and a task's plan (every name resolved first), pure.
//! - [`env`]: a hook's environment, pure (no secret of the agent's ever reaches it).
//! - [`tail`]: the bounded output, pure.
//! - [`process`]: one hook's process (no shell, own process group, timeout, cancel).

pub mod book;
pub mod env;
pub mod process;
pub mod tail;

#[cfg(test)]
mod tests;

use std::time::Duration;

use fleet_events::event::{ErrorClass, HookOutcome, HookRun, TaskError};
use fleet_events::protocol::ReportStatus;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use book::{HookBook, HookDef, Plan, Planned};
pub use env::{RunEnd, TaskInfo};

/// What the before-hooks did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    /// One `HookRan` per hook that ran, in order.
    pub reports: Vec<ReportStatus>,
    /// Set when one failed: the task fails with it, restic does not run.
    pub failure: Option<TaskError>,
    /// The attempt was cancelled while one ran.
    pub cancelled: bool,
}

/// Runs the plan's before-hooks in order, each within its timeout and the attempt's
/// `deadline`, stopping at the first that does not succeed.
pub async fn run_before(
    plan: &Plan<'_>,
    info: &TaskInfo<'_>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Before {
    let mut before = Before {
        reports: Vec::new(),
        failure: None,
        cancelled: false,
    };
    for hook in &plan.before {
        let left = deadline.saturating_duration_since(Instant::now());
        let run = run_one(hook, info, None, left, cancel).await;
        let failed = !run.succeeded();
        before.cancelled = run.outcome == HookOutcome::Cancelled;
        if failed && !before.cancelled {
            let message = format!(
                "before-hook '{}' {}; restic did not run",
                hook.name,
                run.outcome.describe()
            );
            before.failure = Some(TaskError::new(ErrorClass::Hook, &message, None));
        }
        before.reports.push(ReportStatus::HookRan(run));
        if failed {
            break;
        }
    }
    before
}

/// Runs the hooks due once the run ended as `end` (`onSuccess` or `onFailure`, then
/// `after`), each within its own timeout, whatever the others did; stops only on cancel.
pub async fn run_after(
    plan: &Plan<'_>,
    info: &TaskInfo<'_>,
    end: &RunEnd,
    cancel: &CancellationToken,
) -> Vec<ReportStatus> {
    let mut reports = Vec::new();
    for hook in plan.after_run(end.succeeded) {
        let run = run_one(hook, info, Some(end), hook.def.timeout, cancel).await;
        let cancelled = run.outcome == HookOutcome::Cancelled;
        reports.push(ReportStatus::HookRan(run));
        if cancelled {
            break;
        }
    }
    reports
}

/// Runs one hook within `limit` (at most its own timeout), logs and counts it.
async fn run_one(
    hook: &Planned<'_>,
    info: &TaskInfo<'_>,
    end: Option<&RunEnd>,
    limit: Duration,
    cancel: &CancellationToken,
) -> HookRun {
    let env = env::environment(info, hook.stage, end, hook.def, |name| {
        std::env::var_os(name)
    });
    let timeout = hook.def.timeout.min(limit);
    let ran = process::run(hook.def, env, timeout, cancel).await;
    let run = HookRun {
        name: hook.name.to_owned(),
        stage: hook.stage,
        outcome: ran.outcome,
        duration_ms: u64::try_from(ran.duration.as_millis()).unwrap_or(u64::MAX),
        output: ran.output,
        output_cut: ran.output_cut,
    };
    let outcome = outcome_name(&run.outcome);
    if run.succeeded() {
        tracing::info!(task_id = %info.task, attempt = info.attempt, hook = hook.name,
            stage = hook.stage.as_str(), duration_ms = run.duration_ms, "hook succeeded");
    } else {
        tracing::warn!(task_id = %info.task, attempt = info.attempt, hook = hook.name,
            stage = hook.stage.as_str(), outcome = %run.outcome.describe(), "hook failed");
    }
    metrics::counter!("fleet_agent_hooks_total", "stage" => hook.stage.as_str(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("fleet_agent_hook_duration_seconds", "stage" => hook.stage.as_str())
        .record(ran.duration.as_secs_f64());
    run
}

/// A short stable name for metrics labels.
fn outcome_name(outcome: &HookOutcome) -> &'static str {
    match outcome {
        HookOutcome::Exited(0) => "succeeded",
        HookOutcome::Exited(_) => "exited",
        HookOutcome::Killed(_) => "killed",
        HookOutcome::TimedOut => "timed_out",
        HookOutcome::NotFound => "not_found",
        HookOutcome::NotStarted(_) => "not_started",
        HookOutcome::Cancelled => "cancelled",
    }
}

/// How long a hook may run when its definition names no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest timeout a hook may have.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
