//! One directory of a snapshot, a page at a time, for an operator's browse request:
//! `restic ls --json <snapshot> <dir>` run like a task's restic (environment, password
//! variable, priority, parent-death signal, timeout, cancel; no CPU-quota cgroup and no
//! slot: the runtime bounds how many run at once), its lines read as they come
//! ([`page::Listing`], pure) into names, kinds, sizes and times. Nothing is stored.

pub mod page;

use std::time::Duration;

use fleet_events::browse::{BrowsePage, BrowseRequest};
use fleet_events::event::{ErrorClass, TaskError};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::collect::Stream;
use super::command::ls_dir_invocation;
use super::restore::plan::{missing_snapshot, says_snapshot_missing};
use super::run::{Ended, Limits, RunOutcome, run_observed};
use super::secrets;
use crate::restic::failure;
use page::{Found, Listing};

/// How long one listing may take: restic reads the repository's index first. Below the
/// API's 120 s, with room for waiting for a turn.
pub const BROWSE_TIMEOUT: Duration = Duration::from_secs(100);

/// Lists the page `request` asks for, within `timeout`. Why there is none: the request
/// is not valid (permanent, every problem), the secret is not configured here (as for a
/// run), the snapshot or the path is not there or is not a directory (permanent), restic
/// failed (classified like a run's failure), or the agent is stopping (`cancel`).
pub async fn list(
    request: &BrowseRequest,
    ctx: &Context<'_>,
    timeout: Duration,
    cancel: CancellationToken,
) -> Result<BrowsePage, TaskError> {
    request
        .validate()
        .map_err(|problems| permanent(format!("the browse request is not valid: {problems}")))?;
    let password = secrets::resolve(&request.repository.secret, ctx.secrets)?;
    let dir = page::normalise(&request.path);
    let inv = ls_dir_invocation(
        &request.repository.url,
        ctx.settings,
        &password,
        ctx.restic,
        &request.snapshot,
        &dir,
    );
    let limits = Limits::of(ctx, timeout);
    let mut listing = Listing::new(&dir, request.after.clone(), request.limit);
    let ended = {
        let mut observe = |stream: Stream, line: &str| {
            if stream == Stream::Out {
                listing.line(line);
            }
        };
        // Judged here, not by kind; a restore's keeps no stdout, which `ls` needs not.
        run_observed(&inv, TaskKind::Restore, limits, cancel, &mut observe).await
    };
    let snapshot = &request.snapshot;
    let found = match ended {
        Ended::Outcome(RunOutcome::Cancelled) => {
            return Err(TaskError::new(
                ErrorClass::Resource,
                "the agent is stopping",
                None,
            ));
        }
        Ended::Outcome(RunOutcome::Finished(ReportStatus::Failed(error))) => return Err(error),
        Ended::Outcome(RunOutcome::Finished(_)) => {
            return Err(permanent("restic ended oddly".into()));
        }
        Ended::Exited {
            code: Some(0),
            mut collected,
            ..
        } => match listing.finish() {
            Found::NoSnapshot => {
                return Err(missing_snapshot(snapshot, collected.stderr(), Some(0)));
            }
            found => found,
        },
        Ended::Exited {
            code,
            mut collected,
            ..
        } => {
            let stderr = collected.stderr();
            let error = failure(ctx.version, code, stderr, false);
            return Err(
                match error.class == ErrorClass::Permanent && says_snapshot_missing(stderr) {
                    true => missing_snapshot(snapshot, &error.message, code),
                    false => error,
                },
            );
        }
    };
    match found {
        Found::Entries { entries, more } => page::fit(dir.clone(), entries, more)
            .ok_or_else(|| permanent(format!("an entry of {dir} is too large to list"))),
        Found::NoPath => Err(permanent(format!(
            "{dir} is not in snapshot {}",
            short(snapshot)
        ))),
        Found::NotADirectory => Err(permanent(format!(
            "{dir} is not a directory in snapshot {}",
            short(snapshot)
        ))),
        Found::NoSnapshot => Err(missing_snapshot(snapshot, "", Some(0))),
    }
}

/// The first 8 characters of a snapshot id, as restic shows it.
fn short(snapshot: &str) -> &str {
    snapshot.get(..8).unwrap_or(snapshot)
}

fn permanent(message: String) -> TaskError {
    TaskError::new(ErrorClass::Permanent, &message, None)
}
