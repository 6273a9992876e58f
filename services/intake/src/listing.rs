//! Intake's judgement of a snapshot listing report, pure: whether the sending agent may
//! write the repository's inventory with it.
//!
//! A listing rewrites what operators see of a repository, so it is taken only from the
//! agent that ran an attempt on that repository: the task exists under the report's
//! tenant, belongs to the sending agent, the log shows the attempt dispatched to it, and
//! the task's repository is the one the listing names. Any attempt so dispatched will do,
//! whatever became of it since (the listing is the repository as the agent saw it, and
//! reports may overtake each other: parts arrive after the success, too). The listing
//! itself must be well formed, and not dated ahead of the control plane's clock by more
//! than [`MAX_CLOCK_AHEAD`]: a listing from the future would make every real one look
//! older and so be ignored.

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, SnapshotListing, TaskEvent, is_snapshot_id};
use fleet_events::ids::{AgentId, RepoId};
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::store::Stored;
use fleet_events::task_state::Task;

/// How far ahead of the control plane's clock a listing may be dated (agents' clocks
/// agree with it to within seconds, by NTP).
pub const MAX_CLOCK_AHEAD: TimeDelta = TimeDelta::minutes(5);

/// A listing the sending agent may apply to its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'a> {
    pub repo: RepoId,
    pub listing: &'a SnapshotListing,
    /// The task's last event: what the repository's events are caused by.
    pub cause: &'a Envelope,
}

/// Judges `report`, a snapshot listing that arrived on the subject of `sender`, against
/// the task's history at `now`: the listing to apply, or why to park it.
pub fn judge_listing<'a>(
    sender: AgentId,
    report: &'a AgentReport,
    history: &'a [Stored],
    now: DateTime<Utc>,
) -> Result<Accepted<'a>, String> {
    let ReportStatus::SnapshotsListed { repo, listing } = &report.status else {
        return Err(format!(
            "{} is not a snapshot listing",
            report.status.name()
        ));
    };
    if report.agent != sender {
        return Err(format!(
            "report names agent {} but came from agent {sender}",
            report.agent
        ));
    }
    let mut task: Option<Task> = None;
    let mut dispatched = false;
    for stored in history {
        let Event::Task { event, .. } = &stored.envelope.event else {
            continue;
        };
        if let Ok(next) = Task::fold(task.as_ref(), event) {
            task = Some(next);
        }
        dispatched |= matches!(event, TaskEvent::Dispatched { agent, attempt }
            if *agent == sender && *attempt == report.attempt);
    }
    let (Some(task), Some(cause)) = (task, history.last()) else {
        return Err(format!("task {} does not exist", report.task));
    };
    if task.agent != sender {
        return Err(format!(
            "task {} belongs to agent {}, not {sender}",
            report.task, task.agent
        ));
    }
    if !dispatched {
        return Err(format!(
            "attempt {} of task {} was never dispatched to agent {sender}",
            report.attempt, report.task
        ));
    }
    match task.repo() {
        Some(used) if used == *repo => {}
        Some(used) => {
            return Err(format!(
                "task {} uses repository {used}, not {repo}",
                report.task
            ));
        }
        None => return Err(format!("task {} names no repository", report.task)),
    }
    check(listing, now)?;
    Ok(Accepted {
        repo: *repo,
        listing,
        cause: &cause.envelope,
    })
}

/// Every way a listing part can be malformed, first found first.
fn check(listing: &SnapshotListing, now: DateTime<Utc>) -> Result<(), String> {
    if listing.part >= listing.parts {
        return Err(format!(
            "part {} of a listing in {} parts",
            listing.part, listing.parts
        ));
    }
    if let (Some(after), Some(through)) = (&listing.after, &listing.through)
        && after >= through
    {
        return Err("the part's range ends before it starts".into());
    }
    if listing.listed_at > now + MAX_CLOCK_AHEAD {
        return Err(format!(
            "the listing is dated {}, ahead of the control plane's clock ({now})",
            listing.listed_at
        ));
    }
    let mut keys = std::collections::HashSet::new();
    for snapshot in &listing.snapshots {
        if !is_snapshot_id(&snapshot.id) {
            return Err(format!(
                "{:?} is not a full restic snapshot id",
                snapshot.id
            ));
        }
        let key = snapshot.key();
        if !listing.covers(&key) {
            return Err(format!(
                "snapshot {} is outside the part's range",
                snapshot.short_id()
            ));
        }
        if !keys.insert(key) {
            return Err(format!("snapshot {} is listed twice", snapshot.short_id()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
