//! Stale restic locks after a crash: before the next run on a repository that had an
//! attempt running when the agent died, `restic unlock` (stale locks only, never
//! `--remove-all`) with that run's secret; the mark in the local state is cleared only
//! after it succeeded.
//!
//! The unlock is told in the run's report: the agent protocol has no field for a note on
//! a success, so it goes in front of a failure's message ([`annotate`]), and into the
//! agent's log and `fleet_agent_stale_unlocks_total{outcome}` either way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_events::event::{TaskError, repo_of};
use fleet_events::ids::{RepoId, TaskId};
use fleet_events::protocol::{ReportStatus, TaskOrder};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::executor::{Context, RunOutcome, unlock};

/// The longest `restic unlock` may take; the run goes ahead after it either way.
pub const UNLOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a failed unlock's message a note carries (restic's last lines).
const NOTE_ERROR_MAX: usize = 512;

/// One lock per repository, so that two runs starting together on a marked repository
/// unlock it once.
#[derive(Default)]
pub(super) struct Gates(Mutex<HashMap<RepoId, Arc<Mutex<()>>>>);

impl Gates {
    async fn of(&self, repo: RepoId) -> Arc<Mutex<()>> {
        self.0.lock().await.entry(repo).or_default().clone()
    }
}

/// What the unlock before a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlock {
    /// `restic unlock` succeeded: stale locks are gone (there may have been none).
    Done { interrupted: Vec<(TaskId, u32)> },
    /// `restic unlock` failed; the mark stays for the next run.
    Failed {
        interrupted: Vec<(TaskId, u32)>,
        error: TaskError,
    },
}

impl Unlock {
    /// One sentence for the task's history, naming the interrupted attempts.
    pub fn note(&self) -> String {
        let (Unlock::Done { interrupted } | Unlock::Failed { interrupted, .. }) = self;
        let attempts: Vec<String> = interrupted
            .iter()
            .map(|(task, attempt)| format!("task {task} attempt {attempt}"))
            .collect();
        let why = format!(
            "{} was running on this repository when the agent stopped",
            attempts.join(", ")
        );
        match self {
            Unlock::Done { .. } => {
                format!("before this run the agent ran `restic unlock` (stale locks only): {why}")
            }
            Unlock::Failed { error, .. } => format!(
                "before this run `restic unlock` failed ({}: {}): {why}",
                error.class.as_str(),
                tail(&error.message, NOTE_ERROR_MAX)
            ),
        }
    }
}

/// `status` with the note of `unlock` in front of a failure's message (the failure's own
/// text cut from the front if both do not fit); other statuses as they are.
pub fn annotate(status: ReportStatus, unlock: Option<&Unlock>) -> ReportStatus {
    let (ReportStatus::Failed(error), Some(unlock)) = (&status, unlock) else {
        return status;
    };
    let note = unlock.note();
    let budget = TaskError::MAX_MESSAGE.saturating_sub(note.len() + 2);
    let message = format!("{note}; {}", tail(&error.message, budget));
    ReportStatus::Failed(TaskError::new(error.class, &message, error.exit_code))
}

/// The last `max` bytes of `text` at most, from a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Unlocks the repository of `order` if the local state marks it, once per repository
/// however many runs start together; `None` if it was not marked (or the run was
/// cancelled meanwhile). Runs inside the attempt's slot.
pub(super) async fn before_run(
    shared: &Shared,
    order: &TaskOrder,
    ctx: &Context<'_>,
    cancel: CancellationToken,
) -> Option<Unlock> {
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
    marked()?;
    let gate = shared.unlock_gates.of(repo).await;
    let _held = gate.lock().await;
    let mark = marked()?;
    let interrupted = mark.interrupted.clone();
    let run_timeout = Duration::from_secs(order.spec.execution.run_timeout_secs);
    let timeout = UNLOCK_TIMEOUT.min(run_timeout);
    let outcome = match unlock(order, ctx, timeout, cancel).await {
        RunOutcome::Cancelled => return None,
        RunOutcome::Finished(ReportStatus::Failed(error)) => {
            tracing::warn!(task_id = %order.task, ?interrupted, class = error.class.as_str(),
                message = %error.message, "restic unlock failed; the run goes ahead, the next one tries again");
            Unlock::Failed { interrupted, error }
        }
        RunOutcome::Finished(_) => {
            if let Err(error) = shared.state.unlocked(repo, &mark).await {
                tracing::error!(task_id = %order.task, %error, "cannot clear the unlock mark; the next run unlocks again");
            }
            tracing::info!(task_id = %order.task, ?interrupted,
                "restic unlock removed the stale locks of the attempts the agent left running");
            Unlock::Done { interrupted }
        }
    };
    let name = match outcome {
        Unlock::Done { .. } => "done",
        Unlock::Failed { .. } => "failed",
    };
    metrics::counter!("fleet_agent_stale_unlocks_total", "outcome" => name).increment(1);
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use fleet_events::event::ErrorClass;
    use fleet_events::samples;

    use super::*;

    fn done() -> Unlock {
        Unlock::Done {
            interrupted: vec![(samples::TASK, 2)],
        }
    }

    #[test]
    fn the_note_names_the_interrupted_attempts_and_what_unlock_did() {
        let note = done().note();
        assert!(note.contains("`restic unlock`"), "{note}");
        assert!(
            note.contains(&format!("task {} attempt 2", samples::TASK)),
            "{note}"
        );
        let failed = Unlock::Failed {
            interrupted: vec![(samples::TASK, 1), (samples::TASK, 2)],
            error: TaskError::new(ErrorClass::Auth, "wrong password", Some(1)),
        };
        let note = failed.note();
        assert!(note.contains("failed (auth: wrong password)"), "{note}");
        assert!(note.contains("attempt 1, task"), "{note}");
    }

    #[test]
    fn a_failure_carries_the_note_first_and_keeps_its_class_and_code() {
        let error = TaskError::new(ErrorClass::Lock, "repository is already locked", Some(1));
        let status = annotate(ReportStatus::Failed(error), Some(&done()));
        let ReportStatus::Failed(annotated) = status else {
            panic!("{status:?}")
        };
        assert_eq!(
            (annotated.class, annotated.exit_code),
            (ErrorClass::Lock, Some(1))
        );
        assert!(
            annotated.message.starts_with(&done().note()),
            "{}",
            annotated.message
        );
        assert!(
            annotated
                .message
                .ends_with("; repository is already locked")
        );
    }

    #[test]
    fn a_long_failure_keeps_the_note_and_the_end_of_its_text() {
        let error = TaskError {
            class: ErrorClass::Permanent,
            message: format!("{}Fatal: the last line", "é".repeat(TaskError::MAX_MESSAGE)),
            exit_code: Some(1),
        };
        let ReportStatus::Failed(annotated) = annotate(ReportStatus::Failed(error), Some(&done()))
        else {
            unreachable!("a failure stays a failure")
        };
        assert!(annotated.message.len() <= TaskError::MAX_MESSAGE);
        assert!(annotated.message.starts_with(&done().note()));
        assert!(annotated.message.ends_with("Fatal: the last line"));
    }

    #[test]
    fn other_statuses_and_runs_without_an_unlock_are_unchanged() {
        let error = TaskError::new(ErrorClass::Network, "unreachable", None);
        let failed = ReportStatus::Failed(error);
        assert_eq!(annotate(failed.clone(), None), failed);
        assert_eq!(
            annotate(ReportStatus::Interrupted, Some(&done())),
            ReportStatus::Interrupted
        );
    }
}
