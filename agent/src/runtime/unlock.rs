//! Stale restic locks after a crash: before the next run on a repository that had an
//! attempt running when the agent died, `restic unlock` (stale locks only, never
//! `--remove-all`) with that run's secret; the mark in the local state is cleared only
//! after it succeeded.
//!
//! The unlock is told in the task's history: an `UnlockRan` report of the run that follows
//! it (naming the interrupted attempts, and restic's error if it failed) goes through the
//! outbox before that run's `Started` report, in the transaction that clears the mark; and
//! into the agent's log and `fleet_agent_stale_unlocks_total{outcome}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_events::event::{InterruptedAttempt, UnlockOutcome, repo_of};
use fleet_events::ids::{RepoId, TaskId};
use fleet_events::protocol::{ReportStatus, TaskOrder};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::executor::{Context, RunOutcome, unlock};

/// The longest `restic unlock` may take; the run goes ahead after it either way.
pub const UNLOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// One lock per repository, so that two runs starting together on a marked repository
/// unlock it once.
#[derive(Default)]
pub(super) struct Gates(Mutex<HashMap<RepoId, Arc<Mutex<()>>>>);

impl Gates {
    async fn of(&self, repo: RepoId) -> Arc<Mutex<()>> {
        self.0.lock().await.entry(repo).or_default().clone()
    }
}

/// The attempt was cancelled (by the control plane or the agent's shutdown) while
/// `restic unlock` ran before it: it must not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cancelled;

/// The report telling what `restic unlock` did (`finished`, as the executor classified
/// it) because the `interrupted` attempts were running on the repository.
pub fn unlock_report(interrupted: &[(TaskId, u32)], finished: ReportStatus) -> ReportStatus {
    let outcome = match finished {
        ReportStatus::Failed(error) => UnlockOutcome::Failed(error),
        _ => UnlockOutcome::Unlocked,
    };
    ReportStatus::UnlockRan {
        interrupted: interrupted
            .iter()
            .map(|&(task, attempt)| InterruptedAttempt { task, attempt })
            .collect(),
        outcome,
    }
}

/// Unlocks the repository of `order` if the local state marks it, once per repository
/// however many runs start together, and records the `UnlockRan` report of `order`'s
/// attempt (and wakes the outbox sender). Nothing happens for a repository without a mark.
/// Runs inside the attempt's slot, before its start is recorded.
pub(super) async fn before_run(
    shared: &Shared,
    order: &TaskOrder,
    ctx: &Context<'_>,
    cancel: CancellationToken,
) -> Result<(), Cancelled> {
    let repo = repo_of(&order.spec);
    let marked = || match shared.state.unlock_mark(repo) {
        Ok(mark) => mark,
        Err(error) => {
            tracing::error!(task_id = %order.task, %error, "cannot read whether the repository needs restic unlock");
            None
        }
    };
    // Most runs find no mark and take no gate; a marked repository is read again once its
    // gate is held, since a run that held it before may have unlocked it.
    if marked().is_none() {
        return Ok(());
    }
    let gate = shared.unlock_gates.of(repo).await;
    let _held = gate.lock().await;
    let Some(mark) = marked() else {
        return Ok(());
    };
    let interrupted = &mark.interrupted;
    let run_timeout = Duration::from_secs(order.spec.execution.run_timeout_secs);
    let timeout = UNLOCK_TIMEOUT.min(run_timeout);
    let finished = match unlock(order, ctx, timeout, cancel).await {
        RunOutcome::Cancelled => return Err(Cancelled),
        RunOutcome::Finished(status) => status,
    };
    let name = match &finished {
        ReportStatus::Failed(error) => {
            tracing::warn!(task_id = %order.task, ?interrupted, class = error.class.as_str(),
                message = %error.message, "restic unlock failed; the run goes ahead, the next one tries again");
            "failed"
        }
        _ => {
            tracing::info!(task_id = %order.task, ?interrupted,
                "restic unlock removed the stale locks of the attempts the agent left running");
            "done"
        }
    };
    metrics::counter!("fleet_agent_stale_unlocks_total", "outcome" => name).increment(1);
    let report = shared.report(order, unlock_report(interrupted, finished));
    match shared.state.record_unlock(repo, &mark, report).await {
        Ok(_) => shared.reports.notify_one(),
        Err(error) => {
            tracing::error!(task_id = %order.task, %error, "cannot record the unlock; the mark stays and the next run unlocks again")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use fleet_events::event::{ErrorClass, RunDetail, RunSummary, TaskError};
    use fleet_events::policy::TaskKind;
    use fleet_events::samples;

    use super::*;

    #[test]
    fn the_report_names_the_interrupted_attempts_and_what_unlock_did() {
        let other = TaskId::generate();
        let interrupted = [(samples::TASK, 1), (other, 3)];
        let named = vec![
            InterruptedAttempt {
                task: samples::TASK,
                attempt: 1,
            },
            InterruptedAttempt {
                task: other,
                attempt: 3,
            },
        ];
        let done = ReportStatus::Succeeded(RunSummary {
            kind: TaskKind::Check,
            duration_ms: 40,
            detail: RunDetail::Check,
        });
        assert_eq!(
            unlock_report(&interrupted, done),
            ReportStatus::UnlockRan {
                interrupted: named.clone(),
                outcome: UnlockOutcome::Unlocked,
            }
        );
        let error = TaskError::new(ErrorClass::Auth, "wrong password", Some(1));
        assert_eq!(
            unlock_report(&interrupted, ReportStatus::Failed(error.clone())),
            ReportStatus::UnlockRan {
                interrupted: named,
                outcome: UnlockOutcome::Failed(error),
            }
        );
    }
}
