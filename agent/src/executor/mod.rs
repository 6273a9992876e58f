//! Runs one task's restic: secret → command line → process (priority, timeout, cancel) →
//! report, with `restic init` first when the policy allows creating a missing repository;
//! [`unlock()`] runs `restic unlock` on a task's repository (the runtime does, after a crash).
//! Restores and refreshes, which operators ask for, run from their request.
//!
//! - [`secrets`]: a policy's secret name to restic's password variable.
//! - [`command`]: the restic invocation for a task, pure.
//! - [`priority`]: `ionice`/`nice` wrapping, pure.
//! - [`cgroup`]: the CPU quota (`cpuQuotaPercent`): a cgroup (v2, else v1) per attempt
//!   that restic joins before it execs; without either, a warning at start.
//! - [`run()`]: one process to its end; [`collect`] turns its output into a report.
//! - [`retention`]: after a successful backup whose policy has retention, `restic forget`
//!   on the policy's own snapshots, reported before the success ([`Executed::retention`]).
//! - [`inventory`] (pure) and `listing`: `restic snapshots --json` cut into
//!   `SnapshotsListed` parts, the whole of a refresh and a last step after a successful
//!   backup or prune ([`Executed::listing`]).
//! - `restore`: a restore through a staging directory in the target, or a dry run.
//! - [`progress`]: restic's status lines while a backup or a restore (restic 0.16+) runs,
//!   as `Progress` messages, at most one a second, handed to the runtime without waiting.
//! - [`browse`]: one directory of a snapshot, a page at a time (`restic ls`), for an
//!   operator's browse request; nothing is stored.
//! - [`hooks`]: the policy's hooks, the agent's own commands by name, before restic and
//!   after the run ([`Executed::before_hooks`], [`Executed::after_hooks`]).
//!
//! Invariants: secrets reach restic only through its environment, never argv; neither logs
//! nor errors carry a secret value ([`Invocation`]'s `Debug` leaves the environment out); a
//! cancelled run is [`RunOutcome::Cancelled`], not a failure.

pub mod browse;
pub mod cgroup;
pub mod collect;
pub mod command;
pub mod hooks;
pub mod inventory;
mod listing;
pub mod priority;
pub mod progress;
mod restore;
pub mod retention;
pub mod run;
pub mod secrets;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use fleet_events::event::{ErrorClass, RunDetail, TaskError, TaskRequest};
use fleet_events::policy::{PolicyHooks, TaskKind};
use fleet_events::protocol::{ReportStatus, TaskOrder};
use fleet_events::settings::AgentSettings;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::restic::ResticVersion;

pub use cgroup::CpuLimiter;
pub use command::LOCK_WAIT;
pub use command::{
    Invocation, init_invocation, invocation, ls_invocation, restore_invocation,
    retention_invocation, snapshots_invocation, unlock_invocation,
};
pub use hooks::{HookBook, HookDef};
pub use priority::Wrappers;
pub use progress::ProgressSink;
pub use restore::staging_name;
pub use run::{Limits, RunOutcome, STOP_GRACE, UNREACHABLE_AFTER, run_limited};
pub use secrets::{PasswordEnv, SecretSource};

/// What the executor needs from the agent besides the order.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub settings: &'a AgentSettings,
    /// Secret name → where the password is, from the agent's local configuration.
    pub secrets: &'a HashMap<String, SecretSource>,
    /// The restic binary.
    pub restic: &'a Path,
    /// The `--host` of backups whose policy sets none.
    pub hostname: &'a str,
    pub version: &'a ResticVersion,
    /// Between SIGINT and SIGKILL when a run is stopped ([`STOP_GRACE`] by default).
    pub grace: Duration,
    /// How long restic may retry to reach a repository ([`UNREACHABLE_AFTER`] by default).
    pub unreachable_after: Duration,
    /// How long a task's restic waits for a lock another restic holds
    /// ([`command::LOCK_WAIT`] by default; zero: not at all).
    pub lock_wait: Duration,
    /// The CPU quota restic runs under; `None` for none.
    pub cpu: Option<&'a CpuLimiter>,
    /// Where a run's live progress goes; `None` reports none.
    pub progress: Option<&'a ProgressSink>,
    /// The hooks this agent defines, which policies name.
    pub hooks: &'a HookBook,
}

/// What [`execute`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// How the task's run ended.
    pub outcome: RunOutcome,
    /// After a successful backup (exit 0 or 3) whose policy has retention: the
    /// `RetentionApplied` report of the `restic forget` that followed it, to be sent before
    /// the success. A failed forget is told here; it does not change `outcome`.
    pub retention: Option<ReportStatus>,
    /// The parts of the repository's snapshot listing (`SnapshotsListed`), in order, to be
    /// sent before the final report: a refresh's, and the one after a successful backup
    /// (after its retention) or prune. Empty otherwise, and when that listing failed.
    pub listing: Vec<ReportStatus>,
    /// The `HookRan` reports of the before-hooks, in order, to be sent first.
    pub before_hooks: Vec<ReportStatus>,
    /// The `HookRan` reports of the hooks run after the run (`onSuccess` or `onFailure`,
    /// then `after`), to be sent last before the final report.
    pub after_hooks: Vec<ReportStatus>,
}

impl Executed {
    /// An outcome with nothing else to report.
    fn only(outcome: RunOutcome) -> Self {
        Self {
            outcome,
            retention: None,
            listing: Vec::new(),
            before_hooks: Vec::new(),
            after_hooks: Vec::new(),
        }
    }
}

/// Runs `order` (with `request`, for a task an operator asked for) to its end. The
/// policy's run timeout covers everything, `restic init`, the retention's `restic forget`
/// and the listing included; a missing repository is created (once) only with
/// `execution.init_if_missing`, and never for a restore or a refresh. A successful
/// summary's duration is the task's run alone, without the init, the forget or the
/// listing. restic runs in the attempt's CPU-quota cgroup, if any, removed when the
/// attempt ended. A cancel while forget or the listing runs ends the attempt as
/// cancelled, like a cancel during the backup.
///
/// The policy's hooks (none for a restore or a refresh) are resolved in the agent's
/// [`HookBook`] first: a name it does not define fails the task before anything runs.
/// Before-hooks run within the run timeout too; a failed one fails the task (class
/// `hook`) without running restic. Once the run has an outcome (not after a cancel), the
/// `onSuccess` or `onFailure` hooks and then the `after` hooks run, each within its own
/// timeout, changing nothing.
pub async fn execute(
    order: &TaskOrder,
    request: Option<&TaskRequest>,
    ctx: &Context<'_>,
    cancel: CancellationToken,
) -> Executed {
    let none = PolicyHooks::default();
    let named = if request.is_none() {
        &order.spec.hooks
    } else {
        &none
    };
    let plan = match ctx.hooks.plan(named) {
        Ok(plan) => plan,
        Err(error) => return Executed::only(RunOutcome::Finished(ReportStatus::Failed(error))),
    };
    let info = hooks::TaskInfo {
        task: order.task,
        policy: order.policy,
        policy_name: &order.spec.name,
        kind: order.spec.kind,
        attempt: order.attempt,
    };
    let deadline = Instant::now() + Duration::from_secs(order.spec.execution.run_timeout_secs);
    let before = hooks::run_before(&plan, &info, deadline, &cancel).await;
    let mut executed = if before.cancelled {
        Executed::only(RunOutcome::Cancelled)
    } else if let Some(error) = before.failure {
        Executed::only(RunOutcome::Finished(ReportStatus::Failed(error)))
    } else {
        let leaf = ctx.cpu.and_then(|cpu| cpu.leaf(order.task, order.attempt));
        let executed =
            execute_in(order, request, ctx, cancel.clone(), leaf.as_ref(), deadline).await;
        if let Some(leaf) = leaf {
            leaf.remove().await;
        }
        executed
    };
    executed.before_hooks = before.reports;
    if let RunOutcome::Finished(status) = &executed.outcome {
        let end = run_end(status);
        executed.after_hooks = hooks::run_after(&plan, &info, &end, &cancel).await;
    }
    executed
}

/// How a run that ended with `status` ended, for the hooks after it.
fn run_end(status: &ReportStatus) -> hooks::RunEnd {
    match status {
        ReportStatus::Succeeded(summary) => hooks::RunEnd {
            succeeded: true,
            snapshot: match &summary.detail {
                RunDetail::Backup(backup) => backup.snapshot_id.clone(),
                _ => None,
            },
            error: None,
        },
        ReportStatus::Failed(error) => hooks::RunEnd {
            succeeded: false,
            snapshot: None,
            error: Some(error.class),
        },
        _ => hooks::RunEnd {
            succeeded: false,
            snapshot: None,
            error: None,
        },
    }
}

/// Runs `restic unlock` on the repository of `order` with its secret, within `timeout`:
/// it removes only stale locks (older than 30 minutes, or made on this host by a process
/// that is gone), so a live restic's lock is never touched. Exit 0 is
/// `Finished(Succeeded)`, whether or not there was a lock; anything else is classified like
/// a `check`. Not in a CPU-quota cgroup (a short run).
pub async fn unlock(
    order: &TaskOrder,
    ctx: &Context<'_>,
    timeout: Duration,
    cancel: CancellationToken,
) -> RunOutcome {
    let password = match secrets::resolve(&order.spec.repository.secret, ctx.secrets) {
        Ok(password) => password,
        Err(error) => return RunOutcome::Finished(ReportStatus::Failed(error)),
    };
    let inv = unlock_invocation(order, ctx.settings, &password, ctx.restic);
    run_limited(&inv, TaskKind::Check, Limits::of(ctx, timeout), cancel).await
}

async fn execute_in(
    order: &TaskOrder,
    request: Option<&TaskRequest>,
    ctx: &Context<'_>,
    cancel: CancellationToken,
    leaf: Option<&cgroup::Leaf>,
    deadline: Instant,
) -> Executed {
    let only = Executed::only;
    let failed = |error| only(RunOutcome::Finished(ReportStatus::Failed(error)));
    let password = match secrets::resolve(&order.spec.repository.secret, ctx.secrets) {
        Ok(password) => password,
        Err(error) => return failed(error),
    };
    let kind = order.spec.kind;
    let left = || deadline.saturating_duration_since(Instant::now());
    match (kind, request) {
        (TaskKind::Restore, Some(TaskRequest::Restore(request))) => {
            let run = restore::Run {
                order,
                request,
                ctx,
                password: &password,
                deadline,
                cancel,
                leaf,
            };
            return only(restore::restore(run).await);
        }
        (TaskKind::Refresh, Some(TaskRequest::Refresh)) => {
            let (outcome, listing) =
                listing::refresh(order, ctx, &password, left(), cancel, leaf).await;
            return Executed {
                listing,
                ..only(outcome)
            };
        }
        (TaskKind::Backup | TaskKind::Check | TaskKind::Prune, None) => {}
        (kind, request) => return failed(mismatch(kind, request)),
    }
    let inv = match invocation(order, ctx.settings, &password, ctx.restic, ctx.hostname) {
        Ok(inv) => command::with_retry_lock(inv, ctx.version, ctx.lock_wait),
        Err(error) => return failed(error),
    };
    let run_once = |inv: Invocation, kind: TaskKind| {
        let cancel = cancel.clone();
        async move { run_limited(&inv, kind, Limits::of(ctx, left()).in_leaf(leaf), cancel).await }
    };
    // The task's own run, whose status lines (a backup's) are its live progress.
    let run_main = |inv: Invocation| {
        let cancel = cancel.clone();
        async move {
            let limits = Limits::of(ctx, left()).in_leaf(leaf);
            let mut reporter = ctx
                .progress
                .map(|sink| progress::Reporter::new(sink, order));
            let mut observe = |stream: collect::Stream, line: &str| {
                if let (collect::Stream::Out, Some(reporter)) = (stream, reporter.as_mut()) {
                    reporter.line(line);
                }
            };
            run::run_judged(&inv, kind, limits, cancel, &mut observe).await
        }
    };

    let mut outcome = run_main(inv.clone()).await;
    let missing = matches!(
        &outcome,
        RunOutcome::Finished(ReportStatus::Failed(e)) if e.class == ErrorClass::MissingRepository
    );
    if missing && order.spec.execution.init_if_missing {
        info!(task_id = %order.task, "repository missing; running restic init (initIfMissing)");
        let init = init_invocation(order, ctx.settings, &password, ctx.restic);
        // `init` is judged like `check`: exit 0 is success, anything else is classified.
        outcome = match run_once(init, TaskKind::Check).await {
            RunOutcome::Finished(ReportStatus::Succeeded(_)) => run_main(inv).await,
            other => other,
        };
    }
    let succeeded = matches!(&outcome, RunOutcome::Finished(ReportStatus::Succeeded(_)));
    if !succeeded || kind == TaskKind::Check {
        return only(outcome);
    }
    let forget = match kind {
        TaskKind::Backup => retention_invocation(order, ctx.settings, &password, ctx.restic),
        _ => None,
    };
    let retention = match forget {
        Some(forget) => match retention::apply(&forget, ctx, left(), cancel.clone(), leaf).await {
            Some(report) => Some(report),
            None => return only(RunOutcome::Cancelled),
        },
        None => None,
    };
    match listing::after_run(order, ctx, &password, left(), cancel, leaf).await {
        Some(listing) => Executed {
            retention,
            listing,
            ..only(outcome)
        },
        None => Executed {
            retention,
            ..only(RunOutcome::Cancelled)
        },
    }
}

/// A kind and a request that do not go together (a build of the control plane that
/// disagrees with this one): permanent.
fn mismatch(kind: TaskKind, request: Option<&TaskRequest>) -> TaskError {
    let asked = match request {
        None => "no request",
        Some(TaskRequest::Restore(_)) => "a restore request",
        Some(TaskRequest::Refresh) => "a refresh request",
    };
    let message = format!("a {} task came with {asked}", kind.as_str());
    TaskError::new(ErrorClass::Permanent, &message, None)
}
