//! The run read model: one record per finished attempt (succeeded, failed, lost, or
//! cancelled while an agent held it), newest first per tenant; the last success of each
//! policy on each agent (for stale backups); and per-day totals per policy and agent
//! (`runs/daily.rs`), which outlive the runs.
//!
//! Trees: `runs.tasks` (task UUID bytes → postcard task record: tenant, policy, agent,
//! kind, the task's state for [`Task::fold`], when the current attempt started),
//! `runs.by_time` (tenant, zero byte, finished time, task UUID, attempt → postcard
//! [`RunView`]), `runs.last_success` (tenant, zero byte, policy UUID, agent UUID →
//! postcard [`LastSuccess`]), `runs.daily` ([`DayTotals`], see `runs/daily.rs`) and
//! `runs.retiring`, the retention's queue: the finish time, then `R` and the run's
//! `runs.by_time` key (value empty), or `T` and the UUID of a task that ended. `apply`
//! cannot scan, so the task record carries what a run needs from the task's earlier
//! events.
//!
//! Retention ([`crate::retention`]): runs and the records of ended tasks leave after
//! [`Runs::keeping`] days of the log's clock; the last successes and the per-day totals
//! stay. An event for a task retired that way is refused like one for a task never seen.
//!
//! Rejection kinds: `subject_mismatch` (the event is not stored under its own subject),
//! `tenant_mismatch` (the task exists under another tenant), `illegal_transition`
//! ([`Task::fold`] refuses the event). Events of other aggregates are ignored.

mod daily;
mod view;

use chrono::{DateTime, Utc};
use fleet_events::event::{Event, RunDetail, TaskEvent};
use fleet_events::ids::{TaskId, TenantId};
use fleet_events::store::Stored;
use fleet_events::subject::{self, Aggregate};
use fleet_events::task_state::Task;

pub use daily::{Day, DayFilter, DayTotals};
pub use view::{LastSuccess, RunFilter, RunOutcome, RunOutcomeKind, RunView};
use view::{
    TaskRecord, decode, encode, last_success_key, run_key, task_key, tenant_end, tenant_prefix,
    time_bytes,
};

use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection, check_subject};
use crate::retention::{self, Retention};
use crate::runtime::Checkpointed;

const TASKS: &str = "runs.tasks";
const BY_TIME: &str = "runs.by_time";
const LAST_SUCCESS: &str = "runs.last_success";
const DAILY: &str = "runs.daily";
const RETIRING: &str = "runs.retiring";

/// A queue entry for a run (its `runs.by_time` key follows).
const QUEUED_RUN: u8 = b'R';
/// A queue entry for an ended task's record (its UUID follows).
const QUEUED_TASK: u8 = b'T';

/// The run read model, keeping runs for a number of days of the log's clock.
#[derive(Debug, Clone, Copy)]
pub struct Runs {
    days: u32,
}

impl Runs {
    /// Keeps runs and ended tasks' records for `days` days (at least 1, at most
    /// [`retention::MAX_DAYS`]).
    pub fn keeping(days: u32) -> Self {
        Self {
            days: days.clamp(1, retention::MAX_DAYS),
        }
    }

    /// The days it keeps.
    pub fn days(&self) -> u32 {
        self.days
    }
}

impl Default for Runs {
    /// [`retention::DEFAULT_DAYS`].
    fn default() -> Self {
        Self::keeping(retention::DEFAULT_DAYS)
    }
}

impl Projection for Runs {
    const NAME: &'static str = "runs";
    const TREES: &'static [&'static str] = &[TASKS, BY_TIME, LAST_SUCCESS, DAILY, RETIRING];
    const VERSION: u32 = 2;

    fn retention(&self) -> Option<Retention> {
        Some(Retention {
            days: self.days,
            queue: 4,
        })
    }

    fn retire(&self, trees: &[&dyn ModelTree], key: &[u8], _: &[u8]) -> Result<(), ApplyError> {
        let [tasks, by_time, ..] = trees else {
            return Err(ApplyError::corrupt(TASKS, "expected the five run trees"));
        };
        match key.get(8..) {
            Some([QUEUED_RUN, run_key @ ..]) => by_time.remove(run_key),
            Some([QUEUED_TASK, task @ ..]) if task.len() == 16 => tasks.remove(task),
            _ => Err(ApplyError::corrupt(
                RETIRING,
                "an entry of neither a run nor a task",
            )),
        }
    }

    fn filter(&self) -> String {
        subject::aggregate_events(Aggregate::Task)
    }

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let [tasks, by_time, last_success, daily, retiring] = trees else {
            return Err(ApplyError::corrupt(TASKS, "expected the five run trees"));
        };
        let envelope = &stored.envelope;
        check_subject(stored)?;
        let Event::Task { task, event } = &envelope.event else {
            return Ok(());
        };
        let key = task_key(*task);
        let current: Option<TaskRecord> = match tasks.get(&key)? {
            Some(bytes) => Some(decode(&bytes).map_err(|e| corrupt_record(*task, e))?),
            None => None,
        };
        if let Some(record) = &current
            && record.view.tenant != envelope.tenant
        {
            return Err(ApplyError::rejected(
                "tenant_mismatch",
                format!("task {task} belongs to tenant {}", record.view.tenant),
            ));
        }
        let before = match &current {
            Some(record) => Some(record.view.to_task().ok_or_else(|| {
                corrupt_record(*task, format!("unknown status {:?}", record.view.status))
            })?),
            None => None,
        };
        let after = Task::fold(before.as_ref(), event)
            .map_err(|e| ApplyError::rejected("illegal_transition", e.to_string()))?;
        let mut record = TaskRecord::new(&after, envelope.tenant.clone(), current.as_ref());
        match event {
            TaskEvent::Dispatched { .. } => {
                record.started = false;
                record.started_at = Some(envelope.at);
            }
            TaskEvent::Started { .. } => {
                record.started = true;
                record.started_at = Some(envelope.at);
            }
            _ => {}
        }
        let ended =
            before.as_ref().is_some_and(|t| t.status.is_on_agent()) && !after.status.is_on_agent();
        if ended && let Some(run) = finished_run(*task, &record, event, envelope.at)? {
            let bytes = encode(&run).map_err(|e| ApplyError::corrupt(BY_TIME, e))?;
            let key = run_key(&envelope.tenant, &run);
            by_time.insert(&key, &bytes)?;
            retiring.insert(&queued(envelope.at, QUEUED_RUN, &key), &[])?;
            if run.outcome == RunOutcome::Succeeded {
                note_success(last_success, &run)?;
            }
            daily::add_run(*daily, &run)?;
        }
        if after.status.is_terminal() && !before.as_ref().is_some_and(|t| t.status.is_terminal()) {
            retiring.insert(&queued(envelope.at, QUEUED_TASK, &key), &[])?;
            let pair = (after.policy, after.agent);
            daily::add_task_end(*daily, &envelope.tenant, pair, envelope.at, after.status)?;
        }
        let bytes = encode(&record).map_err(|e| corrupt_record(*task, e))?;
        tasks.insert(&key, &bytes)?;
        Ok(())
    }
}

/// A `runs.retiring` key: when the item finished, what it is, and its key.
fn queued(at: DateTime<Utc>, what: u8, key: &[u8]) -> Vec<u8> {
    let mut out = retention::time_bytes(at).to_vec();
    out.push(what);
    out.extend_from_slice(key);
    out
}

/// The run that `event` ends, if it ends one with a result.
fn finished_run(
    task: TaskId,
    record: &TaskRecord,
    event: &TaskEvent,
    at: DateTime<Utc>,
) -> Result<Option<RunView>, ApplyError> {
    let (outcome, summary, error) = match event {
        TaskEvent::Succeeded { summary, .. } => (RunOutcome::Succeeded, Some(summary), None),
        TaskEvent::Failed { error, .. } => {
            (RunOutcome::Failed { class: error.class }, None, Some(error))
        }
        TaskEvent::Lost { reason, .. } => (RunOutcome::Lost { reason: *reason }, None, None),
        TaskEvent::Cancelled { reason } => (
            RunOutcome::Cancelled {
                reason: reason.clone(),
            },
            None,
            None,
        ),
        TaskEvent::Exhausted { reason, .. } => {
            (RunOutcome::Exhausted { reason: *reason }, None, None)
        }
        _ => return Ok(None),
    };
    let kind = record
        .view
        .kind
        .ok_or_else(|| corrupt_record(task, "an attempt of a task without a kind"))?;
    let started_at = record
        .started_at
        .ok_or_else(|| corrupt_record(task, "an attempt that never started"))?;
    let duration_ms = (at - started_at).num_milliseconds().max(0) as u64;
    Ok(Some(RunView {
        tenant: record.view.tenant.clone(),
        task,
        attempt: record.view.attempt,
        policy: record.view.policy,
        agent: record.view.agent,
        kind,
        outcome,
        summary: summary.cloned(),
        error: error.cloned(),
        started: record.started,
        started_at,
        finished_at: at,
        duration_ms,
    }))
}

/// Makes `run` the last success of its policy and agent unless a later one is stored.
fn note_success(tree: &dyn ModelTree, run: &RunView) -> Result<(), ApplyError> {
    let key = last_success_key(&run.tenant, run.policy, run.agent);
    if let Some(bytes) = tree.get(&key)? {
        let stored: LastSuccess =
            decode(&bytes).map_err(|e| ApplyError::corrupt(LAST_SUCCESS, e))?;
        if stored.at > run.finished_at {
            return Ok(());
        }
    }
    let snapshot_id = match run.summary.as_ref().map(|s| &s.detail) {
        Some(RunDetail::Backup(b)) => b.snapshot_id.clone(),
        _ => None,
    };
    let success = LastSuccess {
        policy: run.policy,
        agent: run.agent,
        kind: run.kind,
        task: run.task,
        attempt: run.attempt,
        at: run.finished_at,
        snapshot_id,
    };
    let bytes = encode(&success).map_err(|e| ApplyError::corrupt(LAST_SUCCESS, e))?;
    tree.insert(&key, &bytes)?;
    Ok(())
}

fn corrupt_record(task: TaskId, reason: impl std::fmt::Display) -> ApplyError {
    ApplyError::corrupt(TASKS, format!("task {task}: {reason}"))
}

impl Checkpointed<Runs> {
    /// Up to `limit` of `tenant`'s runs that pass `filter`, newest (by finish time) first.
    pub fn list(
        &self,
        tenant: &TenantId,
        filter: &RunFilter,
        limit: usize,
    ) -> Result<Vec<RunView>, ProjectionError> {
        let mut from = tenant_prefix(tenant);
        if let Some(since) = filter.since {
            from.extend_from_slice(&time_bytes(since));
        }
        let mut out = Vec::new();
        for item in self.trees()[1].range(from..tenant_end(tenant)).rev() {
            if out.len() >= limit {
                break;
            }
            let (_, value) = item?;
            let run: RunView = decode(&value).map_err(|e| corrupt(BY_TIME, e))?;
            if filter.matches(&run) {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// The last success of each of `tenant`'s policies on each agent it ran on, by policy
    /// then agent UUID.
    pub fn last_successes(&self, tenant: &TenantId) -> Result<Vec<LastSuccess>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[2].scan_prefix(tenant_prefix(tenant)) {
            let (_, value) = item?;
            out.push(decode(&value).map_err(|e| corrupt(LAST_SUCCESS, e))?);
        }
        Ok(out)
    }
}

impl Checkpointed<Runs> {
    /// Up to `limit` of `tenant`'s per-day totals that pass `filter`, newest day first:
    /// per agent for a policy, per policy for an agent, one for both, the tenant's for
    /// neither.
    pub fn days(
        &self,
        tenant: &TenantId,
        filter: &DayFilter,
        limit: usize,
    ) -> Result<Vec<Day>, ProjectionError> {
        let (prefix, other) = daily::prefix(tenant, filter);
        let mut out = Vec::new();
        for item in self.trees()[3].scan_prefix(&prefix) {
            let (key, value) = item?;
            let day = daily::read(filter, prefix.len(), other, &key, &value)
                .map_err(|e| corrupt(DAILY, e))?;
            if filter.since.is_none_or(|since| day.day >= since) {
                out.push(day);
            }
        }
        out.sort_by(|a, b| (b.day, a.policy, a.agent).cmp(&(a.day, b.policy, b.agent)));
        out.truncate(limit);
        Ok(out)
    }
}

fn corrupt(tree: &str, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: Runs::NAME,
        tree: tree.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;
