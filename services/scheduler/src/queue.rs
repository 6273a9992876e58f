//! The fire-time queue: a min-heap of (fire time, policy, agent, generation) entries.
//!
//! Entries are never removed from the middle: a change to a pair bumps the pair's
//! generation, and an entry whose generation is no longer the pair's is dropped when it is
//! popped (lazy invalidation). A tick therefore costs O(due · log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, PolicyId};

use super::Scheduler;
use super::fires::Fires;
use super::state::PolicyState;

/// One queued fire time of one pair. Ordered by time, then policy, then agent, so every
/// instance pops in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry {
    pub at: DateTime<Utc>,
    pub policy: PolicyId,
    pub agent: AgentId,
    /// The pair's generation when the entry was pushed.
    pub generation: u64,
}

/// Stale entries beyond this many (above twice the live ones) trigger a rebuild.
const SLACK: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    popped: u64,
}

impl Queue {
    pub fn push(&mut self, entry: Entry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest entry if it is at or before `now`, removed from the queue.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Option<Entry> {
        let Reverse(top) = self.heap.peek()?;
        if top.at > now {
            return None;
        }
        self.popped += 1;
        self.heap.pop().map(|Reverse(entry)| entry)
    }

    /// The earliest entry's time.
    pub fn peek(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Entries popped so far.
    pub fn popped(&self) -> u64 {
        self.popped
    }

    /// True when stale entries outnumber `live` ones enough to be worth a rebuild.
    pub fn needs_compaction(&self, live: usize) -> bool {
        self.heap.len() > 2 * live + SLACK
    }

    /// Replaces the queue's entries with `live` ones, dropping every stale entry.
    pub fn rebuild(&mut self, live: impl IntoIterator<Item = Entry>) {
        self.heap = live.into_iter().map(Reverse).collect();
    }
}

impl Scheduler {
    /// Invalidates the pair's queued fire and, once started, queues its next fire after its
    /// floor if it is live (assigned to an active policy).
    pub(super) fn requeue(&mut self, policy: PolicyId, agent: AgentId, fires: &mut Fires) {
        let active = self.policies.get(&policy).and_then(PolicyState::active);
        let Some(pair) = self.pairs.get_mut(&(policy, agent)) else {
            return;
        };
        pair.generation += 1;
        pair.next = None;
        if let (true, true, Some((_, compiled))) = (self.started, pair.assigned, active) {
            pair.next = fires.next_after(policy, compiled, pair.owed_after());
        }
        if let Some(at) = pair.next {
            let generation = pair.generation;
            self.queue.push(Entry {
                at,
                policy,
                agent,
                generation,
            });
            self.compact();
        }
    }

    /// Drops stale queue entries once they outnumber the live ones.
    pub(super) fn compact(&mut self) {
        if !self.queue.needs_compaction(self.pairs.len()) {
            return;
        }
        let live = self.pairs.iter().filter_map(|(&(policy, agent), pair)| {
            pair.next.map(|at| Entry {
                at,
                policy,
                agent,
                generation: pair.generation,
            })
        });
        self.queue.rebuild(live);
    }
}
