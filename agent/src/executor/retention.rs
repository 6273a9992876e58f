//! A backup policy's retention, applied after each successful backup: `restic forget`
//! (never `--prune`: prune is a kind of its own, on its own schedule) on the policy's own
//! snapshots ([`retention_invocation`](super::command::retention_invocation)), and the `RetentionApplied` report of what it kept
//! and removed, or why it failed.
//!
//! - After a partial backup (exit 3) too: its snapshot exists and counts like any other in
//!   restic's rules; skipping it would leave the retention unapplied for as long as one
//!   file stays unreadable.
//! - A failed forget does not fail the backup, whose snapshot exists: the report carries
//!   restic's classified error (operators see it in the task's history) and the next backup
//!   applies the retention again.
//! - It runs like the backup (environment, limits, priority, CPU-quota cgroup, parent-death
//!   signal) within what is left of the run timeout.

use std::time::Duration;

use fleet_events::event::{ErrorClass, MAX_REMOVED_IDS, PruneSummary, RetentionOutcome, TaskError};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::cgroup::Leaf;
use super::command::Invocation;
use super::run::{Ended, Limits, RunOutcome, run_to_end};
use crate::restic::{failure, parse_forget, removed_ids};

/// Runs `forget` (a [`retention_invocation`](super::command::retention_invocation)) within `timeout` and returns its report;
/// `None` if the attempt was cancelled meanwhile (restic was stopped).
pub(super) async fn apply(
    forget: &Invocation,
    ctx: &Context<'_>,
    timeout: Duration,
    cancel: CancellationToken,
    leaf: Option<&Leaf>,
) -> Option<ReportStatus> {
    if timeout.is_zero() {
        return Some(failed(TaskError::new(
            ErrorClass::Timeout,
            "the backup used the whole run timeout: restic forget did not run",
            None,
        )));
    }
    // Judged as a prune: its stdout (forget's JSON) is kept for reading.
    let limits = Limits::of(ctx, timeout).in_leaf(leaf);
    let ended = run_to_end(forget, TaskKind::Prune, limits, cancel).await;
    Some(match ended {
        Ended::Outcome(RunOutcome::Cancelled) => return None,
        Ended::Outcome(RunOutcome::Finished(ReportStatus::Failed(error))) => failed(error),
        Ended::Outcome(RunOutcome::Finished(other)) => failed(TaskError::new(
            ErrorClass::Permanent,
            &format!("restic forget ended as {}", other.name()),
            None,
        )),
        Ended::Exited {
            code: Some(0),
            collected,
            ..
        } => {
            let (stdout, cut) = collected.stdout();
            applied(stdout, cut)
        }
        Ended::Exited {
            code,
            mut collected,
            ..
        } => failed(failure(ctx.version, code, collected.stderr(), false)),
    })
}

/// The report of a forget that exited 0 having printed `stdout` (`cut`: more than the
/// agent keeps): kept and removed counts from [`parse_forget`], and the short ids of the
/// removed snapshots, at most [`MAX_REMOVED_IDS`]. restic 0.14 prints nothing at all when
/// no snapshot carries the tag: nothing kept, nothing removed.
pub fn applied(stdout: &str, cut: bool) -> ReportStatus {
    let summary = match parse_forget(stdout) {
        Ok(summary) => summary,
        Err(_) if stdout.trim().is_empty() && !cut => PruneSummary::default(),
        Err(error) => {
            let why = match cut {
                true => "restic forget printed more than the agent keeps".to_owned(),
                false => format!("restic forget exited 0, but {error}"),
            };
            return failed(TaskError::new(ErrorClass::Permanent, &why, Some(0)));
        }
    };
    let mut ids = removed_ids(stdout);
    ids.truncate(MAX_REMOVED_IDS);
    ReportStatus::RetentionApplied {
        kept: summary.snapshots_kept,
        removed: summary.snapshots_removed,
        removed_ids: ids,
        outcome: RetentionOutcome::Applied,
    }
}

/// The report of a forget that failed with `error`: nothing is known to be removed.
pub fn failed(error: TaskError) -> ReportStatus {
    ReportStatus::RetentionApplied {
        kept: 0,
        removed: 0,
        removed_ids: Vec::new(),
        outcome: RetentionOutcome::Failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restic::captured;

    fn applied_with(kept: u64, removed: u64, ids: &[&str]) -> ReportStatus {
        ReportStatus::RetentionApplied {
            kept,
            removed,
            removed_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            outcome: RetentionOutcome::Applied,
        }
    }

    #[test]
    fn a_real_forget_of_one_policy_reports_its_counts_and_the_removed_ids() {
        assert_eq!(
            applied(captured::FORGET_POLICY_STDOUT, false),
            applied_with(1, 2, &["35f165f2", "1f09f8c6"])
        );
        assert_eq!(
            applied(captured::FORGET_POLICY_NOTHING_STDOUT, false),
            applied_with(1, 0, &[])
        );
        assert_eq!(
            applied(captured::FORGET_NO_MATCH_STDOUT, false),
            applied_with(0, 0, &[])
        );
    }

    #[test]
    fn the_ids_are_bounded_and_the_counts_are_not() {
        let remove: Vec<String> = (0..250)
            .map(|n| format!(r#"{{"id":"{n:064x}","short_id":"{n:08x}"}}"#))
            .collect();
        let stdout = format!(r#"[{{"keep":[{{}}],"remove":[{}]}}]"#, remove.join(","));
        let ReportStatus::RetentionApplied {
            kept,
            removed,
            removed_ids,
            outcome,
        } = applied(&stdout, false)
        else {
            panic!("a retention report")
        };
        assert_eq!(
            (kept, removed, outcome),
            (1, 250, RetentionOutcome::Applied)
        );
        assert_eq!(removed_ids.len(), MAX_REMOVED_IDS);
        assert_eq!(removed_ids[0], "00000000");
        assert_eq!(removed_ids[99], format!("{:08x}", 99));
    }

    #[test]
    fn unreadable_output_is_a_failed_retention() {
        for (stdout, cut, says) in [
            ("loading indexes...\n", false, "no JSON array"),
            ("[{\"keep\":[", true, "more than the agent keeps"),
        ] {
            let ReportStatus::RetentionApplied {
                outcome: RetentionOutcome::Failed(error),
                removed: 0,
                ..
            } = applied(stdout, cut)
            else {
                panic!("{stdout:?} is a failure")
            };
            assert_eq!(error.class, ErrorClass::Permanent);
            assert!(error.message.contains(says), "{error:?}");
        }
    }
}
