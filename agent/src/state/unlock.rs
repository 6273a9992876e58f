//! Repositories that need `restic unlock`: an attempt was running on them when the agent
//! died, so its restic may have left a lock behind. The mark is written by recovery in the
//! transaction that finishes the attempt, and cleared only after an unlock succeeded, in
//! the transaction that puts the unlock's report in the outbox ([`AgentState::record_unlock`]),
//! so a crash between the restart and the unlock still unlocks later, and a cleared mark
//! always has its report on the way to the task's history.
//!
//! Tree `unlocks`: [`RepoId`] as text (not the URL, which may hold credentials) →
//! postcard [`UnlockMark`].

use chrono::{DateTime, Utc};
use fleet_events::event::UnlockOutcome;
use fleet_events::ids::{RepoId, TaskId};
use fleet_events::protocol::{AgentReport, ReportStatus};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionalTree;

use super::AgentState;
use super::error::StateError;
use super::moves::{Tx, abort, settle};
use super::outbox::OutboxKey;
use super::record::{Header, Stage, task_key};

/// The tree of repositories to unlock before their next run.
pub const UNLOCKS: &str = "unlocks";

/// The layout version written first in every mark.
const FORMAT: u16 = 1;

/// Why a repository needs `restic unlock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockMark {
    format: u16,
    /// The attempts that were running on the repository when the agent died, in the order
    /// they were recovered.
    pub interrupted: Vec<(TaskId, u32)>,
    /// When the first of them was recovered.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub marked_at: DateTime<Utc>,
}

impl UnlockMark {
    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mark: Self =
            postcard::from_bytes(bytes).map_err(|e| StateError::corrupt(UNLOCKS, e))?;
        if mark.format != FORMAT {
            return Err(StateError::corrupt(
                UNLOCKS,
                format!("mark format {}, this build reads {FORMAT}", mark.format),
            ));
        }
        Ok(mark)
    }
}

/// Adds `attempt` to the mark of `repo` (creating it at `at`), inside a transaction.
/// Adding an attempt twice (a transaction run again) changes nothing.
pub(super) fn mark(
    unlocks: &TransactionalTree,
    repo: RepoId,
    attempt: (TaskId, u32),
    at: DateTime<Utc>,
) -> Tx<()> {
    let key = repo.to_string();
    let mut mark = match unlocks.get(key.as_bytes())? {
        Some(bytes) => match UnlockMark::decode(&bytes) {
            Ok(mark) => mark,
            Err(e) => return abort(e),
        },
        None => UnlockMark {
            format: FORMAT,
            interrupted: Vec::new(),
            marked_at: at,
        },
    };
    if !mark.interrupted.contains(&attempt) {
        mark.interrupted.push(attempt);
    }
    match postcard::to_stdvec(&mark) {
        Ok(bytes) => {
            unlocks.insert(key.as_bytes(), bytes)?;
            Ok(())
        }
        Err(e) => abort(StateError::encode(e)),
    }
}

impl AgentState {
    /// Why `repo` needs `restic unlock` before its next run; `None` if it does not.
    pub fn unlock_mark(&self, repo: RepoId) -> Result<Option<UnlockMark>, StateError> {
        match self.unlocks.get(repo.to_string())? {
            Some(bytes) => UnlockMark::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every repository waiting for `restic unlock`, in key order.
    pub fn unlock_marks(&self) -> Result<Vec<(RepoId, UnlockMark)>, StateError> {
        self.unlocks
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let repo = std::str::from_utf8(&key)
                    .ok()
                    .and_then(|key| key.parse().ok())
                    .ok_or_else(|| StateError::corrupt(UNLOCKS, "a key is not a repository id"))?;
                Ok((repo, UnlockMark::decode(&value)?))
            })
            .collect()
    }

    /// Records what `restic unlock` on `repo` did before a run: appends `report` (the
    /// `UnlockRan` report of the attempt about to run, accepted or running here) to the
    /// outbox and, if the unlock succeeded, clears the mark of `repo`, in one transaction,
    /// durably. A mark that changed since `seen` was read (not expected: marks are made at
    /// start only) is left for the next run. Returns whether the mark was cleared.
    pub async fn record_unlock(
        &self,
        repo: RepoId,
        seen: &UnlockMark,
        report: AgentReport,
    ) -> Result<bool, StateError> {
        let ReportStatus::UnlockRan { outcome, .. } = &report.status else {
            return Err(StateError::ReportMismatch(format!(
                "record_unlock takes an unlock_ran report, not {}",
                report.status.name()
            )));
        };
        let clear = matches!(outcome, UnlockOutcome::Unlocked);
        let (task, attempt) = (report.task, report.attempt);
        let key = task_key(task, attempt);
        let seen = postcard::to_stdvec(seen).map_err(StateError::encode)?;
        let mark_key = repo.to_string();
        let wire = report.to_wire()?;
        let id = OutboxKey::new(self.db.generate_id()?).to_bytes();
        let trees = (&self.tasks, &self.outbox, &self.unlocks);
        let cleared = settle(trees.transaction(|(tasks, outbox, unlocks)| {
            let Some(record) = tasks.get(key)? else {
                return abort(StateError::UnknownTask { task, attempt });
            };
            let stage = match Header::decode(&record) {
                Ok((header, _)) => header.stage,
                Err(e) => return abort(e),
            };
            if stage == Stage::Finished {
                return abort(StateError::ReportMismatch(format!(
                    "an unlock report for task {task} attempt {attempt}, which is finished"
                )));
            }
            outbox.insert(&id, wire.as_slice())?;
            let current = unlocks.get(mark_key.as_bytes())?;
            if clear && current.as_deref() == Some(seen.as_slice()) {
                unlocks.remove(mark_key.as_bytes())?;
                return Ok(true);
            }
            Ok(false)
        }))?;
        self.db.flush_async().await?;
        Ok(cleared)
    }
}
