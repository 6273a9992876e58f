//! The scheduler: policies and assignments become tasks at their fire times.
//!
//! This module is the pure decision core: no IO, no clock, no async. The service around it
//! replays the log into [`Scheduler::apply`], calls [`Scheduler::start`] once, then calls
//! [`Scheduler::due`] whenever [`Scheduler::next_due`] passes (and keeps applying every new
//! event of the log, including the ones it appended itself), appending each [`Decision`].
//!
//! # Layout
//! - this file: the [`Scheduler`] state and its read-only queries.
//! - `state`: folding log events into policies, (policy, agent) pairs and unfinished tasks.
//! - `decide`: [`Decision`], [`Scheduler::start`] (missed runs) and [`Scheduler::due`].
//! - `queue`: the min-heap of next fire times, invalidated lazily by generation numbers.
//! - `fires`: fire-time arithmetic (latest missed fire, memoized next fires).
//! - `jitter`: the deterministic per-pair spread, [`jitter_for`].
//! - `snapshot`: the folded state as written down and read back at start.
//!
//! # Invariants
//! - A fire time is decided at most once per instance: a pair's `floor` (the latest fire
//!   recorded in the log, or not owed because of an assignment, resume or update) and its
//!   `decided` (the latest fire this instance decided) only move forward, and only fires
//!   strictly after both are decided.
//! - A snapshot (`snapshot`) holds only what the log says: `decided`, the queue and its
//!   generations are this instance's own and are built again after a start from one.
//! - Decisions depend only on the log and the `now` passed in: two instances fed the same
//!   log decide the same task ids, msg ids and events (envelope ids and times differ).
//! - The core learns about tasks only from the log, never from its own decisions, so a
//!   lost append race cannot leave it believing in a task the log does not have.
//! - Catch-up after downtime is at most one decision per pair, never a burst.

mod decide;
mod fires;
mod jitter;
mod queue;
mod snapshot;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::task_state::Task;

pub use decide::{Cancel, Decision, Outcome};
pub use jitter::jitter_for;

use queue::Queue;
use state::{PairState, PolicyState};

/// The scheduler's state, folded from the event log.
#[derive(Debug)]
pub struct Scheduler {
    policies: HashMap<PolicyId, PolicyState>,
    /// Every (policy, agent) pair ever assigned or seen in a task event; ordered, so that
    /// [`Scheduler::start`] decides in the same order on every instance.
    pairs: BTreeMap<(PolicyId, AgentId), PairState>,
    /// The policies each agent is assigned to.
    by_agent: HashMap<AgentId, HashSet<PolicyId>>,
    decommissioned: HashSet<AgentId>,
    /// Unfinished tasks, folded (without their spec, which the scheduler does not need).
    tasks: HashMap<TaskId, Task>,
    queue: Queue,
    started: bool,
    /// The latest instant seen: event times and every `now` passed in.
    clock: DateTime<Utc>,
    /// The latest event time folded (the log's part of `clock`).
    last_event_at: DateTime<Utc>,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Queue entries popped so far (live or stale): the work `due` has done.
    pub popped: u64,
    /// Entries in the queue, stale ones included.
    pub queued: usize,
    /// Known (policy, agent) pairs.
    pub pairs: usize,
    /// Tasks the scheduler knows to be unfinished.
    pub unfinished: usize,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    /// An empty scheduler, before any event.
    pub fn new() -> Self {
        Self {
            policies: HashMap::new(),
            pairs: BTreeMap::new(),
            by_agent: HashMap::new(),
            decommissioned: HashSet::new(),
            tasks: HashMap::new(),
            queue: Queue::default(),
            started: false,
            clock: DateTime::UNIX_EPOCH,
            last_event_at: DateTime::UNIX_EPOCH,
        }
    }

    /// The earliest queued fire time, if any: call [`Scheduler::due`] once it has passed.
    /// It may belong to an entry that has since been invalidated; waking for it is harmless.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.queue.peek()
    }

    /// The next `n` fire times of `policy` after the latest instant the scheduler knows (the
    /// last `now` given to it, or the latest event time); empty for a paused, deleted or
    /// unknown policy, or one without a valid schedule. Jitter is not included.
    pub fn upcoming(&self, policy: PolicyId, n: usize) -> Vec<DateTime<Utc>> {
        self.upcoming_after(policy, self.clock, n)
    }

    /// The next `n` fire times of `policy` strictly after `after`; see [`Scheduler::upcoming`].
    pub fn upcoming_after(
        &self,
        policy: PolicyId,
        after: DateTime<Utc>,
        n: usize,
    ) -> Vec<DateTime<Utc>> {
        match self.policies.get(&policy).and_then(PolicyState::active) {
            Some((_, compiled)) => compiled.fires_after(after).take(n).collect(),
            None => Vec::new(),
        }
    }

    /// Counters for metrics and tests.
    pub fn stats(&self) -> Stats {
        Stats {
            popped: self.queue.popped(),
            queued: self.queue.len(),
            pairs: self.pairs.len(),
            unfinished: self.tasks.len(),
        }
    }
}

/// The `Nats-Msg-Id` of the task for `policy` on `agent` at `fire_at`:
/// `sched:<policy>:<agent>:<fire_at in Unix microseconds>`.
pub fn msg_id(policy: PolicyId, agent: AgentId, fire_at: DateTime<Utc>) -> String {
    format!("sched:{policy}:{agent}:{}", fire_at.timestamp_micros())
}

#[cfg(test)]
mod tests;

mod service;
pub use service::run;
