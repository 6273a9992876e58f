//! A repository's snapshot inventory as intake folds it from the repository's
//! `repo.snapshots_changed` events, and the pure decision that turns one part of an agent's
//! listing into the events that bring the inventory up to date.
//!
//! A part is the whole truth for its key range (`after`, `through`]: what it holds and the
//! inventory lacks is added; what the inventory holds in that range and the part lacks is
//! removed. Parts of one listing can therefore be applied alone and in any order. A part of
//! a listing older than one already applied changes nothing (its view of the repository is
//! stale), and a part that finds the inventory as it is writes no event.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use chrono::{DateTime, Utc};
use fleet_events::codec::{MAX_EVENT_BYTES, encode_versioned};
use fleet_events::event::{RepoEvent, SnapshotInfo, SnapshotKey, SnapshotListing};
use fleet_events::ids::{AgentId, TaskId};

/// Most bytes of snapshots (postcard) in one event: the rest of the envelope (ids, tenant,
/// times, a few length prefixes) takes well under a kilobyte, so an event stays far below
/// [`MAX_EVENT_BYTES`].
pub const EVENT_BUDGET: usize = MAX_EVENT_BYTES * 3 / 4;

/// One repository's snapshots as the log records them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub snapshots: BTreeMap<SnapshotKey, SnapshotInfo>,
    /// The newest `listed_at` applied: listings older than this are ignored.
    pub newest: Option<DateTime<Utc>>,
}

impl Inventory {
    /// Folds one event of the repository; events other than a snapshot change are ignored.
    pub fn apply(&mut self, event: &RepoEvent) {
        let RepoEvent::SnapshotsChanged {
            listed_at,
            added,
            removed,
            ..
        } = event
        else {
            return;
        };
        for snapshot in removed {
            self.snapshots.remove(&snapshot.key());
        }
        for snapshot in added {
            self.snapshots.insert(snapshot.key(), snapshot.clone());
        }
        self.newest = self.newest.max(Some(*listed_at));
    }

    /// The snapshots of the inventory in `part`'s range.
    fn covered(&self, part: &SnapshotListing) -> Vec<&SnapshotInfo> {
        // `BTreeMap::range` panics on a range given backwards: such a part covers nothing
        // (intake refuses it before deciding).
        if matches!((&part.after, &part.through), (Some(a), Some(t)) if a >= t) {
            return Vec::new();
        }
        let lower = part
            .after
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Excluded);
        let upper = part
            .through
            .as_ref()
            .map_or(Bound::Unbounded, Bound::Included);
        self.snapshots
            .range((lower, upper))
            .map(|(_, s)| s)
            .collect()
    }
}

/// What the inventory's part of the repository is missing and holds in excess, cut into
/// events that each stay well under [`MAX_EVENT_BYTES`]; none if nothing changed or the
/// part belongs to a listing older than one already applied.
pub fn decide(
    inventory: &Inventory,
    part: &SnapshotListing,
    task: TaskId,
    agent: AgentId,
) -> Vec<RepoEvent> {
    if inventory
        .newest
        .is_some_and(|newest| part.listed_at < newest)
    {
        return Vec::new();
    }
    let mut held = HashSet::new();
    let mut added = Vec::new();
    for snapshot in &part.snapshots {
        let key = snapshot.key();
        if !inventory.snapshots.contains_key(&key) && !held.contains(&key) {
            added.push(snapshot.clone());
        }
        held.insert(key);
    }
    let removed: Vec<SnapshotInfo> = inventory
        .covered(part)
        .into_iter()
        .filter(|s| !held.contains(&s.key()))
        .cloned()
        .collect();
    cut(added, removed, EVENT_BUDGET)
        .into_iter()
        .map(|(added, removed)| RepoEvent::SnapshotsChanged {
            task,
            agent,
            listed_at: part.listed_at,
            added,
            removed,
        })
        .collect()
}

type Change = (Vec<SnapshotInfo>, Vec<SnapshotInfo>);

/// `added` and `removed` in consecutive pieces of at most `budget` encoded bytes each.
fn cut(added: Vec<SnapshotInfo>, removed: Vec<SnapshotInfo>, budget: usize) -> Vec<Change> {
    let mut pieces: Vec<Change> = Vec::new();
    let mut current: Change = (Vec::new(), Vec::new());
    let mut used = 0;
    let items = added
        .into_iter()
        .map(|s| (true, s))
        .chain(removed.into_iter().map(|s| (false, s)));
    for (is_added, snapshot) in items {
        let snapshot = fit(snapshot, budget);
        let size = encoded_size(&snapshot);
        if used + size > budget && used > 0 {
            pieces.push(std::mem::take(&mut current));
            used = 0;
        }
        used += size;
        if is_added {
            current.0.push(snapshot);
        } else {
            current.1.push(snapshot);
        }
    }
    if used > 0 {
        pieces.push(current);
    }
    pieces
}

/// A snapshot's encoded size (postcard), with a few bytes for its share of the list's
/// length prefix; one too large to encode at all counts as the whole limit.
fn encoded_size(snapshot: &SnapshotInfo) -> usize {
    encode_versioned(snapshot).map_or(MAX_EVENT_BYTES, |bytes| bytes.len()) + 3
}

/// `snapshot`, cut down to `budget` bytes if it is larger (a pathological one: dozens of
/// very long paths or tags): paths go first (counted in `more_paths`), then tags that are
/// not the fleet's own. The key (time, id) and the fleet's tags are always kept.
fn fit(mut snapshot: SnapshotInfo, budget: usize) -> SnapshotInfo {
    while encoded_size(&snapshot) > budget {
        if snapshot.paths.pop().is_some() {
            snapshot.more_paths = snapshot.more_paths.saturating_add(1);
            continue;
        }
        let foreign = snapshot
            .tags
            .iter()
            .rposition(|t| !t.starts_with("policy:") && !t.starts_with("task:"));
        match foreign {
            Some(i) => {
                snapshot.tags.remove(i);
            }
            None => break,
        }
    }
    snapshot
}

#[cfg(test)]
mod tests;
