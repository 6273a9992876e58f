//! Reads over all task records: crash recovery, pending attempts, heartbeat counts and
//! forgetting old finished records. Scans decode only each record's header, except for
//! the records they return.

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::event::repo_of;
use fleet_events::ids::TaskId;
use fleet_events::protocol::{AgentReport, KindCounts, TaskOrder};

use super::AgentState;
use super::error::StateError;
use super::record::{Header, Stage, TaskRecord};

/// How long a finished record is kept to recognise a redelivered task: more than the
/// dispatch stream's max age
/// ([`AGENT_MESSAGE_MAX_AGE`](fleet_events::streams::AGENT_MESSAGE_MAX_AGE), 7 days), so
/// no task can come back after its record is gone. Pass `now - KEEP_FINISHED` to
/// [`AgentState::forget_finished`]; a shorter cutoff could run an attempt twice.
pub const KEEP_FINISHED: TimeDelta = TimeDelta::days(8);

impl AgentState {
    /// The attempts that were running when the state was opened: the agent died during
    /// the run, and its outcome is unknown. Finish them with [`AgentState::recover`].
    pub fn interrupted(&self) -> &[(TaskId, u32)] {
        &self.interrupted
    }

    /// Finishes every attempt of [`AgentState::interrupted`] that is still running with
    /// the report `make_report` gives for its order (normally `Interrupted`, so the
    /// control plane marks the attempt lost and retries it) and marks its repository for
    /// `restic unlock` ([`AgentState::unlock_mark`]), one transaction each, and flushes
    /// once. Returns the attempts it finished; calling it again finishes none.
    pub async fn recover(
        &self,
        make_report: impl Fn(&TaskOrder) -> AgentReport,
    ) -> Result<Vec<(TaskId, u32)>, StateError> {
        let mut done = Vec::new();
        for &(task, attempt) in &self.interrupted {
            let Some(record) = self.record(task, attempt)? else {
                continue;
            };
            if record.header.stage != Stage::Running {
                continue;
            }
            let repo = repo_of(&record.order.spec);
            let report = make_report(&record.order);
            self.finish_interrupted_unflushed(task, attempt, &report, repo)?;
            done.push((task, attempt));
        }
        self.db.flush_async().await?;
        Ok(done)
    }

    /// Accepted attempts that have not started (each order with its request, if an
    /// operator asked for it), oldest first: after a restart the agent starts them as
    /// slots free up.
    pub fn pending(&self) -> Result<Vec<TaskRecord>, StateError> {
        let mut records = self.records_in(Stage::Accepted)?;
        records.sort_by_key(|r| r.header.accepted_at);
        Ok(records)
    }

    /// Running attempts by kind, for heartbeats.
    pub fn running(&self) -> Result<KindCounts, StateError> {
        self.count(Stage::Running)
    }

    /// Accepted attempts waiting for a slot, by kind, for heartbeats.
    pub fn queued(&self) -> Result<KindCounts, StateError> {
        self.count(Stage::Accepted)
    }

    /// Removes finished records that finished before `older_than` (use
    /// `now - KEEP_FINISHED`); returns how many. Not flushed: a removal lost in a crash is
    /// done again next time.
    pub fn forget_finished(&self, older_than: DateTime<Utc>) -> Result<usize, StateError> {
        let mut old = Vec::new();
        for item in self.tasks.iter() {
            let (key, value) = item?;
            let (header, _) = Header::decode(&value)?;
            if header.stage == Stage::Finished
                && header.finished_at.is_some_and(|at| at < older_than)
            {
                old.push(key);
            }
        }
        for key in &old {
            self.tasks.remove(key)?;
        }
        Ok(old.len())
    }

    /// Every record at `stage`, in key order.
    pub(super) fn records_in(&self, stage: Stage) -> Result<Vec<TaskRecord>, StateError> {
        let mut out = Vec::new();
        for item in self.tasks.iter() {
            let (_, value) = item?;
            if Header::decode(&value)?.0.stage == stage {
                out.push(TaskRecord::decode(&value)?);
            }
        }
        Ok(out)
    }

    fn count(&self, stage: Stage) -> Result<KindCounts, StateError> {
        let mut counts = KindCounts::default();
        for item in self.tasks.iter() {
            let (_, value) = item?;
            let (header, _) = Header::decode(&value)?;
            if header.stage == stage {
                let slot = counts.get_mut(header.kind);
                *slot = slot.saturating_add(1);
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_records_outlive_redelivery() {
        let max_age = fleet_events::streams::AGENT_MESSAGE_MAX_AGE;
        assert!(KEEP_FINISHED.to_std().is_ok_and(|keep| keep > max_age));
    }
}
