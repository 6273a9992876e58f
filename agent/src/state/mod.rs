//! The agent's local state in sled: which attempts it accepted and where each stands, the
//! outbox of reports not yet stored by JetStream, and the agent's identity. This is what
//! makes the agent safe against redelivered tasks, crashes and NATS outages.
//!
//! Trees:
//! - `tasks`: task UUID bytes + attempt big-endian → [`TaskRecord`] (postcard: a
//!   [`Header`] with the [`Stage`], kind and times, then the
//!   [`TaskOrder`](fleet_events::protocol::TaskOrder), then the operator's
//!   [`TaskRequest`](fleet_events::event::TaskRequest) if any; format 1 records, without
//!   it, are still read).
//! - `outbox`: [`OutboxKey`] (u64 big-endian from `generate_id`, so in write order) →
//!   [`AgentReport`](fleet_events::protocol::AgentReport) wire bytes.
//! - `meta`: `identity` → postcard [`Identity`]; later the agent's credentials.
//! - `unlocks`: repository id → [`UnlockMark`]: repositories to `restic unlock` before
//!   their next run, because an attempt was running on them when the agent died.
//!
//! Guarantees:
//! - Each move ([`AgentState::accept`], [`AgentState::start`], [`AgentState::finish`])
//!   writes the record and appends its report to the outbox in one sled transaction, and
//!   is flushed to disk before it returns. The caller acks the NATS message only after
//!   `accept` returned, so an acked task is never lost; a redelivered attempt is
//!   [`Accepted::Duplicate`] and never runs restic twice.
//! - An attempt left [`Stage::Running`] by a crash is listed by
//!   [`AgentState::interrupted`] and finished by [`AgentState::recover`] (with an
//!   `Interrupted` report, so the control plane marks the attempt lost and retries it); the
//!   same transaction marks its repository for `restic unlock`, and the mark stays until
//!   [`AgentState::record_unlock`] clears it after an unlock succeeded, in the transaction
//!   that appends the unlock's report (of the next attempt on the repository).
//! - Reports told between the start and the end of an attempt (the retention after a
//!   backup, the parts of a snapshot listing) are appended by
//!   [`AgentState::record_retention`] and [`AgentState::record_listing`] while the attempt
//!   runs, so they go out before its final report.
//! - Finished records are kept for deduplication at least [`KEEP_FINISHED`].
//!
//! Calls block on sled briefly (mostly in memory); flushing is async. [`AgentState`] is
//! cheap to clone and shared between the agent's tasks.

mod error;
mod moves;
mod outbox;
mod record;
mod scan;
mod unlock;

use std::fmt;
use std::path::Path;

use fleet_events::ids::{AgentId, TaskId, TenantId};
use serde::{Deserialize, Serialize};

pub use error::StateError;
pub use moves::Accepted;
pub use outbox::{OUTBOX, OutboxEntry, OutboxKey};
pub use record::{Header, Stage, TaskRecord};
pub use scan::KEEP_FINISHED;
pub use unlock::{UNLOCKS, UnlockMark};

use record::TASKS;

/// The tree of the agent's identity and other settings of its own.
pub const META: &str = "meta";
const IDENTITY: &[u8] = b"identity";

/// Who this agent is: set when it is enrolled, read at every start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub agent: AgentId,
    pub tenant: TenantId,
}

/// The agent's local state: a sled database in one directory.
#[derive(Clone)]
pub struct AgentState {
    db: sled::Db,
    tasks: sled::Tree,
    outbox: sled::Tree,
    meta: sled::Tree,
    unlocks: sled::Tree,
    /// Attempts that were [`Stage::Running`] when the database was opened.
    interrupted: Vec<(TaskId, u32)>,
}

impl fmt::Debug for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentState")
            .field("interrupted", &self.interrupted)
            .finish_non_exhaustive()
    }
}

impl AgentState {
    /// Opens (or creates) the state in `dir`, and notes the attempts a previous run left
    /// running (see [`AgentState::interrupted`]). Fails with [`StateError::Storage`] if
    /// another process holds the directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StateError> {
        let db = open_sled(dir.as_ref())?;
        let tasks = db.open_tree(TASKS)?;
        let outbox = db.open_tree(OUTBOX)?;
        let meta = db.open_tree(META)?;
        let unlocks = db.open_tree(UNLOCKS)?;
        let mut state = Self {
            db,
            tasks,
            outbox,
            meta,
            unlocks,
            interrupted: Vec::new(),
        };
        state.interrupted = state
            .records_in(Stage::Running)?
            .into_iter()
            .map(|r| (r.order.task, r.order.attempt))
            .collect();
        Ok(state)
    }

    /// Records who this agent is, durably.
    pub async fn set_identity(&self, identity: &Identity) -> Result<(), StateError> {
        let bytes = postcard::to_stdvec(identity).map_err(StateError::encode)?;
        self.meta.insert(IDENTITY, bytes)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Who this agent is; `None` before it was enrolled.
    pub fn identity(&self) -> Result<Option<Identity>, StateError> {
        let Some(bytes) = self.meta.get(IDENTITY)? else {
            return Ok(None);
        };
        postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| StateError::corrupt(META, format!("identity: {e}")))
    }

    /// The stored record of one attempt, if this agent has it.
    pub fn record(&self, task: TaskId, attempt: u32) -> Result<Option<TaskRecord>, StateError> {
        match self.tasks.get(record::task_key(task, attempt))? {
            Some(bytes) => TaskRecord::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }
}

use fleet_events::local_db::open_sled;

#[cfg(test)]
mod tests;
