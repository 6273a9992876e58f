//! A restore an operator asked for: one snapshot (or some of its paths) into a target
//! directory on this agent, honouring the overwrite policy, or a dry run that only counts.
//! The same on restic 0.14 and newer: no `--overwrite` or restore `--dry-run` (0.14 has
//! neither); the agent decides itself.
//!
//! - Real: `restic restore <id> --target <staging> [--include <path>]...` into a hidden
//!   directory inside the target named after the task (`.restic-fleet-restore-<task>`: one
//!   file system, so moves are renames; one an earlier attempt left is removed first), then
//!   [`fs::merge`] moves each entry into the target as [`plan::decide`] says, and the
//!   staging directory is removed. Files keep the times and modes restic gave them.
//!   From restic 0.16 with `--json`: its status lines are the attempt's live progress
//!   ([`super::progress`]).
//! - Dry: `restic ls --json <id>`, each selected entry compared with the target
//!   ([`dry::DryRun`]); nothing is written, not even the target.
//! - restic's per-file errors (`ignoring error for <path>: <why>`; 0.14 to 0.18 then exit
//!   1 with `There were N errors`) do not fail the restore: what restic restored is moved,
//!   and the summary counts the errors with a few samples (paths and restic's words only).
//!   Any other failure is classified like every run; a snapshot that is not in the
//!   repository is a permanent failure that says so.
//! - Cancel and the run timeout stop restic like any run; while files move they stop the
//!   move between two entries (what moved stays), and the staging directory goes.

mod dry;
mod fs;
pub(super) mod plan;

use std::io;
use std::path::{Path, PathBuf};

use fleet_events::event::{ErrorClass, RestoreRequest, RunDetail, RunSummary, TaskError};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{ReportStatus, TaskOrder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Context;
use super::cgroup::Leaf;
use super::collect::Stream;
use super::command::{ls_invocation, reporting_progress, restore_invocation};
use super::progress::Reporter;
use super::run::{Ended, Limits, RunOutcome, run_observed};
use super::secrets::PasswordEnv;
use crate::restic::failure;
use plan::{
    Includes, RestoreLine, Tally, missing_snapshot, parse_restore_line, says_snapshot_missing,
};

/// The name of the staging directory of `task` inside the target.
pub fn staging_name(task: impl std::fmt::Display) -> String {
    format!(".restic-fleet-restore-{task}")
}

/// What the restore runs with.
pub(super) struct Run<'a> {
    pub order: &'a TaskOrder,
    pub request: &'a RestoreRequest,
    pub ctx: &'a Context<'a>,
    pub password: &'a PasswordEnv,
    /// The end of the run timeout.
    pub deadline: Instant,
    pub cancel: CancellationToken,
    pub leaf: Option<&'a Leaf>,
}

impl Run<'_> {
    fn limits(&self) -> Limits<'_> {
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        Limits::of(self.ctx, timeout).in_leaf(self.leaf)
    }

    /// The summary of a restore that ran to its end.
    fn succeeded(&self, tally: Tally, began: Instant) -> RunOutcome {
        let summary = tally.summary(&self.request.snapshot, self.request.dry_run);
        info!(task_id = %self.order.task, dry_run = summary.dry_run,
            files_restored = summary.files_restored, bytes_restored = summary.bytes_restored,
            files_skipped = summary.files_skipped, errors = summary.errors, "restore done");
        if !summary.dry_run {
            metrics::counter!("fleet_agent_files_restored_total").increment(summary.files_restored);
        }
        RunOutcome::Finished(ReportStatus::Succeeded(RunSummary {
            kind: TaskKind::Restore,
            duration_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail: RunDetail::Restore(summary),
        }))
    }

    /// The failure of a restic that exited with `code` having said `stderr`.
    fn restic_failed(&self, code: Option<i32>, stderr: &str) -> RunOutcome {
        let error = failure(self.ctx.version, code, stderr, false);
        let error = match error.class == ErrorClass::Permanent && says_snapshot_missing(stderr) {
            true => missing_snapshot(&self.request.snapshot, &error.message, code),
            false => error,
        };
        failed(error)
    }
}

/// Runs the restore (or the dry run) of `run`.
pub(super) async fn restore(run: Run<'_>) -> RunOutcome {
    if let Err(problems) = run.request.validate() {
        return failed(permanent(format!(
            "the restore request is not valid: {problems}"
        )));
    }
    let target = PathBuf::from(&run.request.target);
    match std::fs::metadata(&target) {
        Ok(meta) if !meta.is_dir() => {
            let message = format!(
                "the target {} exists and is not a directory",
                target.display()
            );
            return failed(permanent(message));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return failed(io_error(&format!("the target {}", target.display()), &e)),
    }
    match run.request.dry_run {
        true => dry_run(&run, target).await,
        false => real(&run, target).await,
    }
}

async fn dry_run(run: &Run<'_>, target: PathBuf) -> RunOutcome {
    let began = Instant::now();
    let (ctx, request) = (run.ctx, run.request);
    let inv = ls_invocation(
        run.order,
        ctx.settings,
        run.password,
        ctx.restic,
        &request.snapshot,
    );
    let mut dry = dry::DryRun::new(target, Includes::new(&request.include), request.overwrite);
    let mut observe = |stream: Stream, line: &str| dry.line(stream, line);
    let ended = run_observed(
        &inv,
        TaskKind::Restore,
        run.limits(),
        run.cancel.clone(),
        &mut observe,
    )
    .await;
    match ended {
        Ended::Outcome(outcome) => outcome,
        Ended::Exited {
            code: Some(0),
            mut collected,
            ..
        } if !dry.saw_snapshot => failed(missing_snapshot(
            &request.snapshot,
            collected.stderr(),
            Some(0),
        )),
        Ended::Exited { code: Some(0), .. } => run.succeeded(dry.tally, began),
        Ended::Exited {
            code,
            mut collected,
            ..
        } => run.restic_failed(code, collected.stderr()),
    }
}

/// restic's per-file errors, as they come.
#[derive(Default)]
struct ResticErrors {
    tally: Tally,
    /// restic's own count (`There were N errors`).
    reported: Option<u64>,
}

async fn real(run: &Run<'_>, target: PathBuf) -> RunOutcome {
    let began = Instant::now();
    let staging = target.join(staging_name(run.order.task));
    if let Err(error) = prepare(&target, &staging).await {
        return failed(error);
    }
    let (ctx, request) = (run.ctx, run.request);
    let inv = restore_invocation(
        run.order,
        ctx.settings,
        run.password,
        ctx.restic,
        &request.snapshot,
        &request.include,
        &staging,
    );
    // Status lines (live progress) only with `--json`, from restic 0.16.
    let json = ctx.version.has_restore_json();
    let inv = match json {
        true => reporting_progress(inv, true),
        false => inv,
    };
    let mut reporter = ctx
        .progress
        .filter(|_| json)
        .map(|sink| Reporter::new(sink, run.order));
    let mut errors = ResticErrors::default();
    let mut observe = |stream: Stream, line: &str| match parse_restore_line(line) {
        RestoreLine::Error(sample) => errors.tally.error(|| sample),
        RestoreLine::Count(n) => errors.reported = Some(n),
        RestoreLine::Other => {
            if let (Stream::Out, Some(reporter)) = (stream, reporter.as_mut()) {
                reporter.line(line);
            }
        }
    };
    let ended = run_observed(
        &inv,
        TaskKind::Restore,
        run.limits(),
        run.cancel.clone(),
        &mut observe,
    )
    .await;
    let outcome = match ended {
        Ended::Outcome(outcome) => outcome,
        Ended::Exited { code, .. }
            if code == Some(0) || (code == Some(1) && errors.reported.is_some()) =>
        {
            let mut tally = errors.tally;
            tally.errors = tally.errors.max(errors.reported.unwrap_or(0));
            match move_into(run, &staging, &target, tally).await {
                Ok(mut tally) => {
                    if let Err(e) = clean_up(run, &staging).await {
                        let staging = staging.display();
                        tally.error(|| {
                            format!("{staging}: the staging directory could not be removed: {e}")
                        });
                    }
                    return run.succeeded(tally, began);
                }
                Err(outcome) => outcome,
            }
        }
        Ended::Exited {
            code,
            mut collected,
            ..
        } => run.restic_failed(code, collected.stderr()),
    };
    // The outcome stands whether or not the staging directory goes (a warning says so).
    let _ = clean_up(run, &staging).await;
    outcome
}

/// Creates the target if missing and an empty staging directory in it (removing one an
/// earlier attempt left).
async fn prepare(target: &Path, staging: &Path) -> Result<(), TaskError> {
    let (target, staging) = (target.to_path_buf(), staging.to_path_buf());
    let made = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&target)
            .map_err(|e| io_error(&format!("creating the target {}", target.display()), &e))?;
        fs::remove_tree(&staging).map_err(|e| {
            io_error(
                &format!(
                    "removing the staging directory {} an earlier attempt left",
                    staging.display()
                ),
                &e,
            )
        })?;
        std::fs::create_dir(&staging).map_err(|e| {
            io_error(
                &format!("creating the staging directory {}", staging.display()),
                &e,
            )
        })
    })
    .await;
    made.unwrap_or_else(|e| Err(permanent(format!("preparing the restore failed: {e}"))))
}

/// Moves what restic restored into the target; the tally with the moves counted, or how
/// the attempt ended instead (cancelled, timed out).
async fn move_into(
    run: &Run<'_>,
    staging: &Path,
    target: &Path,
    mut tally: Tally,
) -> Result<Tally, RunOutcome> {
    let stop = fs::Stop {
        cancel: run.cancel.clone(),
        deadline: run.deadline.into_std(),
    };
    let (staging, target, overwrite) = (
        staging.to_path_buf(),
        target.to_path_buf(),
        run.request.overwrite,
    );
    let moved = tokio::task::spawn_blocking(move || {
        let result = fs::merge(&staging, &target, overwrite, &mut tally, &stop);
        (tally, result)
    })
    .await;
    match moved {
        Ok((tally, Ok(()))) => Ok(tally),
        Ok((_, Err(fs::Stopped::Cancelled))) => Err(RunOutcome::Cancelled),
        Ok((tally, Err(fs::Stopped::TimedOut))) => Err(failed(TaskError::new(
            ErrorClass::Timeout,
            &format!(
                "the run timeout passed while moving restored files into the target; {} were moved",
                tally.files_restored
            ),
            None,
        ))),
        Err(e) => Err(failed(permanent(format!(
            "moving restored files failed: {e}"
        )))),
    }
}

/// Removes the staging directory; a failure is logged and returned.
async fn clean_up(run: &Run<'_>, staging: &Path) -> io::Result<()> {
    let path = staging.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || fs::remove_tree(&path))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    if let Err(e) = &removed {
        warn!(task_id = %run.order.task, staging = %staging.display(), error = %e,
            "the restore's staging directory could not be removed");
    }
    removed
}

fn failed(error: TaskError) -> RunOutcome {
    RunOutcome::Finished(ReportStatus::Failed(error))
}

fn permanent(message: String) -> TaskError {
    TaskError::new(ErrorClass::Permanent, &message, None)
}

/// A file-system error of the agent's own: out of space is a resource, the rest
/// permanent (permissions, a file in the way).
fn io_error(doing: &str, error: &io::Error) -> TaskError {
    let class = match error.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT | libc::ENOMEM | libc::EMFILE | libc::ENFILE) => {
            ErrorClass::Resource
        }
        _ => ErrorClass::Permanent,
    };
    TaskError::new(class, &format!("{doing}: {error}"), None)
}
