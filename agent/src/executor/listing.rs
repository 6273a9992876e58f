//! Listing a repository's snapshots (`restic snapshots --json`) into `SnapshotsListed`
//! reports: the whole task of a refresh, and a last step after a successful backup (after
//! its retention) or prune, so the inventory follows every change the fleet makes.
//!
//! After a backup or a prune a failed listing fails nothing: it is logged (restic's
//! classified error, no secret) and no part is sent; the next run lists again. A cancel
//! while it runs ends the attempt as cancelled, like a cancel during the forget.

use std::time::Duration;

use chrono::Utc;
use fleet_events::event::{
    ErrorClass, RefreshSummary, RunDetail, RunSummary, SnapshotListing, TaskError,
};
use fleet_events::ids::RepoId;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{ReportStatus, TaskOrder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Context;
use super::cgroup::Leaf;
use super::command::snapshots_invocation;
use super::inventory::{inventory, parts};
use super::run::{Ended, Limits, RunOutcome, run_to_end};
use super::secrets::PasswordEnv;
use crate::restic::{failure, parse_snapshots};

/// What listing the snapshots gave.
#[derive(Debug)]
pub(super) enum Listed {
    /// The listing, cut into parts (at least one), and how many snapshots it holds.
    Parts {
        parts: Vec<SnapshotListing>,
        snapshots: u64,
        duration_ms: u64,
    },
    Failed(TaskError),
    /// The attempt was cancelled meanwhile; restic was stopped.
    Cancelled,
}

/// Runs `restic snapshots --json` on the repository of `order` within `timeout`; counted
/// in `fleet_agent_snapshot_listings_total{outcome}` (listed, failed).
pub(super) async fn list(
    order: &TaskOrder,
    ctx: &Context<'_>,
    password: &PasswordEnv,
    timeout: Duration,
    cancel: CancellationToken,
    leaf: Option<&Leaf>,
) -> Listed {
    let listed = list_uncounted(order, ctx, password, timeout, cancel, leaf).await;
    let outcome = match &listed {
        Listed::Parts { .. } => "listed",
        Listed::Failed(_) => "failed",
        Listed::Cancelled => return listed,
    };
    metrics::counter!("fleet_agent_snapshot_listings_total", "outcome" => outcome).increment(1);
    listed
}

async fn list_uncounted(
    order: &TaskOrder,
    ctx: &Context<'_>,
    password: &PasswordEnv,
    timeout: Duration,
    cancel: CancellationToken,
    leaf: Option<&Leaf>,
) -> Listed {
    if timeout.is_zero() {
        let message = "the run timeout was used up: restic snapshots did not run";
        return Listed::Failed(TaskError::new(ErrorClass::Timeout, message, None));
    }
    let inv = snapshots_invocation(order, ctx.settings, password, ctx.restic);
    let listed_at = Utc::now();
    let began = Instant::now();
    let limits = Limits::of(ctx, timeout).in_leaf(leaf);
    let ended = run_to_end(&inv, TaskKind::Refresh, limits, cancel).await;
    let duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    match ended {
        Ended::Outcome(RunOutcome::Cancelled) => Listed::Cancelled,
        Ended::Outcome(RunOutcome::Finished(ReportStatus::Failed(error))) => Listed::Failed(error),
        Ended::Outcome(RunOutcome::Finished(other)) => Listed::Failed(TaskError::new(
            ErrorClass::Permanent,
            &format!("restic snapshots ended as {}", other.name()),
            None,
        )),
        Ended::Exited {
            code: Some(0),
            collected,
            ..
        } => {
            let (stdout, cut) = collected.stdout();
            let listed = match parse_snapshots(stdout) {
                Ok(listed) => listed,
                Err(error) => {
                    let why = match cut {
                        true => "restic snapshots printed more than the agent keeps".to_owned(),
                        false => format!("restic snapshots exited 0, but {error}"),
                    };
                    return Listed::Failed(TaskError::new(ErrorClass::Permanent, &why, Some(0)));
                }
            };
            let inventory = inventory(listed);
            if inventory.unreadable > 0 {
                warn!(task_id = %order.task, unreadable = inventory.unreadable,
                    "restic listed snapshots whose id or time cannot be read; left out");
            }
            let snapshots = inventory.snapshots.len() as u64;
            Listed::Parts {
                parts: parts(listed_at, inventory.snapshots),
                snapshots,
                duration_ms,
            }
        }
        Ended::Exited {
            code,
            mut collected,
            ..
        } => Listed::Failed(failure(ctx.version, code, collected.stderr(), false)),
    }
}

/// The `SnapshotsListed` reports of `parts`, about the repository of `order`.
pub(super) fn reports(order: &TaskOrder, parts: Vec<SnapshotListing>) -> Vec<ReportStatus> {
    let repo = RepoId::for_url(&order.spec.repository.url);
    parts
        .into_iter()
        .map(|listing| ReportStatus::SnapshotsListed { repo, listing })
        .collect()
}

/// A refresh: the listing's parts, and its success (`Refresh` with the snapshot count),
/// or restic's classified failure.
pub(super) async fn refresh(
    order: &TaskOrder,
    ctx: &Context<'_>,
    password: &PasswordEnv,
    timeout: Duration,
    cancel: CancellationToken,
    leaf: Option<&Leaf>,
) -> (RunOutcome, Vec<ReportStatus>) {
    match list(order, ctx, password, timeout, cancel, leaf).await {
        Listed::Parts {
            parts,
            snapshots,
            duration_ms,
        } => {
            info!(task_id = %order.task, snapshots, parts = parts.len(), "repository listed");
            let summary = RunSummary {
                kind: TaskKind::Refresh,
                duration_ms,
                detail: RunDetail::Refresh(RefreshSummary { snapshots }),
            };
            let outcome = RunOutcome::Finished(ReportStatus::Succeeded(summary));
            (outcome, reports(order, parts))
        }
        Listed::Failed(error) => (
            RunOutcome::Finished(ReportStatus::Failed(error)),
            Vec::new(),
        ),
        Listed::Cancelled => (RunOutcome::Cancelled, Vec::new()),
    }
}

/// The listing after a successful backup or prune: its reports, empty after a failure
/// (logged); `None` if the attempt was cancelled meanwhile.
pub(super) async fn after_run(
    order: &TaskOrder,
    ctx: &Context<'_>,
    password: &PasswordEnv,
    timeout: Duration,
    cancel: CancellationToken,
    leaf: Option<&Leaf>,
) -> Option<Vec<ReportStatus>> {
    match list(order, ctx, password, timeout, cancel, leaf).await {
        Listed::Parts {
            parts, snapshots, ..
        } => {
            info!(task_id = %order.task, attempt = order.attempt, snapshots, parts = parts.len(),
                "repository listed after the run");
            Some(reports(order, parts))
        }
        Listed::Failed(error) => {
            warn!(task_id = %order.task, attempt = order.attempt, kind = order.spec.kind.as_str(),
                class = error.class.as_str(), message = %error.message,
                "restic snapshots after the run failed; the run stands, the next one lists again");
            Some(Vec::new())
        }
        Listed::Cancelled => None,
    }
}
