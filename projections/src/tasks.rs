//! The task read model: each task's state folded with [`Task::fold`], and the number of
//! tasks in each status per tenant.
//!
//! Trees: `tasks.by_id` (task UUID bytes → postcard [`TaskView`]), `tasks.counts`
//! (tenant, zero byte, status → big-endian u64; a zero count is removed) and
//! `tasks.retiring`, the retention's queue (the time the task ended, its UUID → empty).
//!
//! Retention ([`crate::retention`]): a task that ended (succeeded, skipped, given up,
//! cancelled) leaves `tasks.by_id` after [`Tasks::keeping`] days of the log's clock; the
//! counts stay, so they count every task the log holds, and the run model keeps what
//! ended per day. An event for a task retired that way is refused like one for a task
//! never seen.
//!
//! Rejection kinds: `illegal_transition` ([`Task::fold`] refuses the event),
//! `subject_mismatch` (the event is not stored under its own subject), `tenant_mismatch`
//! (the task exists under another tenant), `not_a_task_event`.

mod view;

use chrono::{DateTime, Utc};
use fleet_events::event::Event;
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::store::Stored;
use fleet_events::subject::{self, Aggregate};
use fleet_events::task_state::{Task, TaskStatus};

pub use view::TaskView;
use view::{counts_key, counts_prefix, decode_count, task_key};

use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection, check_subject};
use crate::retention::{self, Retention};
use crate::runtime::Checkpointed;

const BY_ID: &str = "tasks.by_id";
const COUNTS: &str = "tasks.counts";
const RETIRING: &str = "tasks.retiring";

/// The task read model, keeping ended tasks for a number of days of the log's clock.
#[derive(Debug, Clone, Copy)]
pub struct Tasks {
    days: u32,
}

impl Tasks {
    /// Keeps ended tasks for `days` days (at least 1, at most [`retention::MAX_DAYS`]).
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

impl Default for Tasks {
    /// [`retention::DEFAULT_DAYS`].
    fn default() -> Self {
        Self::keeping(retention::DEFAULT_DAYS)
    }
}

impl Projection for Tasks {
    const NAME: &'static str = "tasks";
    const TREES: &'static [&'static str] = &[BY_ID, COUNTS, RETIRING];
    const VERSION: u32 = 2;

    fn retention(&self) -> Option<Retention> {
        Some(Retention {
            days: self.days,
            queue: 2,
        })
    }

    fn retire(&self, trees: &[&dyn ModelTree], key: &[u8], _: &[u8]) -> Result<(), ApplyError> {
        match key.get(8..) {
            Some(task) if task.len() == 16 => trees[0].remove(task),
            _ => Err(ApplyError::corrupt(RETIRING, "an entry without a task")),
        }
    }

    fn filter(&self) -> String {
        subject::aggregate_events(Aggregate::Task)
    }

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let [by_id, counts, retiring] = trees else {
            return Err(ApplyError::corrupt(BY_ID, "expected the three task trees"));
        };
        let envelope = &stored.envelope;
        let Event::Task { task, event } = &envelope.event else {
            return Err(ApplyError::rejected(
                "not_a_task_event",
                format!("{} on a task subject", envelope.event.event_type().name()),
            ));
        };
        check_subject(stored)?;
        let key = task_key(*task);
        let current = match by_id.get(&key)? {
            Some(bytes) => Some(TaskView::decode(&bytes).map_err(|e| corrupt_view(*task, e))?),
            None => None,
        };
        if let Some(view) = &current
            && view.tenant != envelope.tenant
        {
            return Err(ApplyError::rejected(
                "tenant_mismatch",
                format!("task {task} belongs to tenant {}", view.tenant),
            ));
        }
        let before =
            match &current {
                Some(view) => Some(view.to_task().ok_or_else(|| {
                    corrupt_view(*task, format!("unknown status {:?}", view.status))
                })?),
                None => None,
            };
        let after = Task::fold(before.as_ref(), event)
            .map_err(|e| ApplyError::rejected("illegal_transition", e.to_string()))?;
        let kind = after.kind().or(current.as_ref().and_then(|v| v.kind));
        let view = TaskView::new(&after, envelope.tenant.clone(), kind);
        let bytes = view.encode().map_err(|e| corrupt_view(*task, e))?;
        by_id.insert(&key, &bytes)?;
        let from = before.map(|t| t.status);
        if after.status.is_terminal() && !from.is_some_and(TaskStatus::is_terminal) {
            let mut queued = retention::time_bytes(envelope.at).to_vec();
            queued.extend_from_slice(&key);
            retiring.insert(&queued, &[])?;
        }
        if from != Some(after.status) {
            if let Some(from) = from {
                add(counts, &envelope.tenant, from, -1)?;
            }
            add(counts, &envelope.tenant, after.status, 1)?;
        }
        Ok(())
    }
}

fn corrupt_view(task: TaskId, reason: impl std::fmt::Display) -> ApplyError {
    ApplyError::corrupt(BY_ID, format!("task {task}: {reason}"))
}

/// Adds `delta` to the count of `status` in `tenant`, removing a count that reaches 0.
fn add(
    counts: &dyn ModelTree,
    tenant: &TenantId,
    status: TaskStatus,
    delta: i64,
) -> Result<(), ApplyError> {
    let key = counts_key(tenant, status);
    let current = match counts.get(&key)? {
        Some(bytes) => decode_count(&bytes)
            .ok_or_else(|| ApplyError::corrupt(COUNTS, "a count is not 8 bytes"))?,
        None => 0,
    };
    let next = current.checked_add_signed(delta).ok_or_else(|| {
        ApplyError::corrupt(COUNTS, format!("{tenant} {status}: {current} {delta:+}"))
    })?;
    if next == 0 {
        counts.remove(&key)?;
    } else {
        counts.insert(&key, &next.to_be_bytes())?;
    }
    Ok(())
}

impl Checkpointed<Tasks> {
    /// The task `id`, if the model has seen it.
    pub fn task(&self, id: TaskId) -> Result<Option<TaskView>, ProjectionError> {
        let Some(bytes) = self.trees()[0].get(task_key(id))? else {
            return Ok(None);
        };
        TaskView::decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(BY_ID, format!("task {id}: {e}")))
    }

    /// `tenant`'s tasks that pass `filter`, newest fire time first, at most `limit`.
    /// A scan of every task: fine for the tens of thousands a read model holds.
    pub fn list(
        &self,
        tenant: &TenantId,
        filter: &TaskFilter,
        limit: usize,
    ) -> Result<Vec<(TaskId, TaskView)>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[0].iter() {
            let (key, value) = item?;
            let view =
                TaskView::decode(&value).map_err(|e| corrupt(BY_ID, format!("a task: {e}")))?;
            if view.tenant != *tenant || !filter.passes(&view) {
                continue;
            }
            let uuid = uuid::Uuid::from_slice(&key)
                .map_err(|_| corrupt(BY_ID, "a key is not a task id"))?;
            out.push((TaskId::from_uuid(uuid), view));
        }
        out.sort_by(|a, b| b.1.fire_at.cmp(&a.1.fire_at).then(b.0.cmp(&a.0)));
        out.truncate(limit);
        Ok(out)
    }

    /// How many of `tenant`'s tasks are in each status, in [`TaskStatus::ALL`] order.
    pub fn status_counts(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(TaskStatus, u64)>, ProjectionError> {
        let mut out: Vec<(TaskStatus, u64)> = TaskStatus::ALL.map(|s| (s, 0)).into();
        let prefix = counts_prefix(tenant);
        for item in self.trees()[1].scan_prefix(&prefix) {
            let (key, value) = item?;
            let name = &key[prefix.len()..];
            let slot = out
                .iter_mut()
                .find(|(s, _)| s.as_str().as_bytes() == name)
                .ok_or_else(|| corrupt(COUNTS, "a key names no status"))?;
            slot.1 =
                decode_count(&value).ok_or_else(|| corrupt(COUNTS, "a count is not 8 bytes"))?;
        }
        Ok(out)
    }
}

/// Which tasks [`Checkpointed::<Tasks>::list`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub agent: Option<AgentId>,
    pub policy: Option<PolicyId>,
    /// Fired at or after this.
    pub since: Option<DateTime<Utc>>,
}

impl TaskFilter {
    /// Whether `view` passes.
    pub fn passes(&self, view: &TaskView) -> bool {
        self.status.is_none_or(|s| view.status() == Some(s))
            && self.agent.is_none_or(|a| view.agent == a)
            && self.policy.is_none_or(|p| view.policy == p)
            && self.since.is_none_or(|since| view.fire_at >= since)
    }
}

fn corrupt(tree: &str, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: Tasks::NAME,
        tree: tree.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
