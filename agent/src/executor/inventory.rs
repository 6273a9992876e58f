//! A repository's snapshot listing as the agent reports it, pure: restic's snapshots
//! ([`Snapshot`]) to [`SnapshotInfo`]s, and a sorted listing cut into [`SnapshotListing`]
//! parts small enough for one report each.
//!
//! - Paths and tags are capped at [`MAX_SNAPSHOT_LIST`] (`more_paths` counts the paths
//!   left out), and one snapshot takes at most [`MAX_SNAPSHOT_BYTES`] encoded (more paths,
//!   then tags other than the fleet's own, go first), so any snapshot fits in a part.
//! - Parts hold at most [`MAX_PART_BYTES`] of snapshots (postcard), well under
//!   [`MAX_EVENT_BYTES`](fleet_events::codec::MAX_EVENT_BYTES) for the whole report; their
//!   ranges chain: the first starts with `after: None`, each next one after the previous
//!   one's `through`, the last ends with `through: None`. An empty listing is one part
//!   with no bounds (the repository has no snapshot).

use chrono::{DateTime, Utc};
use fleet_events::event::{MAX_SNAPSHOT_LIST, SnapshotInfo, SnapshotListing, is_snapshot_id};

use crate::restic::Snapshot;

/// Most snapshot bytes (postcard) in one part.
pub const MAX_PART_BYTES: usize = 48 * 1024;
/// Most bytes (postcard) one snapshot takes in a part.
pub const MAX_SNAPSHOT_BYTES: usize = 8 * 1024;
/// Longest host name kept.
const MAX_HOST: usize = 255;
/// The tag prefixes the fleet reads back; kept when other tags make way.
const FLEET_TAGS: [&str; 2] = ["policy:", "task:"];

/// What restic listed, as the inventory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Sorted by [`SnapshotInfo::key`], one per id.
    pub snapshots: Vec<SnapshotInfo>,
    /// Snapshots left out because restic's id or time cannot be read (never seen from
    /// restic; counted so the caller can say so).
    pub unreadable: usize,
}

/// restic's `snapshots` as [`SnapshotInfo`]s, sorted and without duplicate ids.
pub fn inventory(listed: Vec<Snapshot>) -> Inventory {
    let mut unreadable = 0;
    let mut snapshots: Vec<SnapshotInfo> = listed
        .into_iter()
        .filter_map(|s| {
            let info = info(s);
            unreadable += usize::from(info.is_none());
            info
        })
        .collect();
    snapshots.sort_by_key(SnapshotInfo::key);
    snapshots.dedup_by(|a, b| a.id == b.id);
    Inventory {
        snapshots,
        unreadable,
    }
}

/// One snapshot; `None` without a full id or a readable time.
fn info(s: Snapshot) -> Option<SnapshotInfo> {
    if !is_snapshot_id(&s.id) {
        return None;
    }
    let time = DateTime::parse_from_rfc3339(&s.time)
        .ok()?
        .with_timezone(&Utc);
    let mut paths = s.paths;
    let more_paths = paths.len().saturating_sub(MAX_SNAPSHOT_LIST);
    paths.truncate(MAX_SNAPSHOT_LIST);
    let mut tags = s.tags;
    tags.truncate(MAX_SNAPSHOT_LIST);
    let summary = s.summary.unwrap_or_default();
    let mut info = SnapshotInfo {
        id: s.id,
        time,
        host: cut(s.hostname, MAX_HOST),
        paths,
        more_paths: u32::try_from(more_paths).unwrap_or(u32::MAX),
        tags,
        size_bytes: summary.total_bytes_processed,
        files: summary.total_files_processed,
    };
    shrink(&mut info);
    Some(info)
}

/// Drops paths (counted in `more_paths`), then tags that are not the fleet's, until the
/// snapshot takes at most [`MAX_SNAPSHOT_BYTES`]; then cuts what is left to fit.
fn shrink(info: &mut SnapshotInfo) {
    while encoded(info) > MAX_SNAPSHOT_BYTES {
        if info.paths.len() > 1 {
            info.paths.pop();
            info.more_paths = info.more_paths.saturating_add(1);
        } else if let Some(at) = info
            .tags
            .iter()
            .rposition(|t| !FLEET_TAGS.iter().any(|p| t.starts_with(p)))
        {
            info.tags.remove(at);
        } else {
            // One enormous path or fleet tag: keep a bounded beginning of each.
            let each = MAX_SNAPSHOT_BYTES / (2 * (info.paths.len() + info.tags.len()).max(1));
            for text in info.paths.iter_mut().chain(info.tags.iter_mut()) {
                *text = cut(std::mem::take(text), each);
            }
            return;
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Bytes `value` takes in postcard.
fn encoded<T: serde::Serialize>(value: &T) -> usize {
    postcard::to_stdvec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// `snapshots` (sorted by key, as [`inventory`] returns them) cut into parts of at most
/// [`MAX_PART_BYTES`] of snapshots each, all listed at `listed_at`, with chained ranges.
pub fn parts(listed_at: DateTime<Utc>, snapshots: Vec<SnapshotInfo>) -> Vec<SnapshotListing> {
    let mut groups: Vec<Vec<SnapshotInfo>> = vec![Vec::new()];
    let mut bytes = 0;
    for snapshot in snapshots {
        let size = encoded(&snapshot);
        let full = groups.last().is_some_and(|g| !g.is_empty());
        if full && bytes + size > MAX_PART_BYTES {
            groups.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(group) = groups.last_mut() {
            group.push(snapshot);
        }
    }
    let count = u32::try_from(groups.len()).unwrap_or(u32::MAX);
    let mut out: Vec<SnapshotListing> = Vec::with_capacity(groups.len());
    let mut after = None;
    for (n, group) in groups.into_iter().enumerate() {
        let part = u32::try_from(n).unwrap_or(u32::MAX);
        let through = match part + 1 == count {
            true => None,
            false => group.last().map(SnapshotInfo::key),
        };
        out.push(SnapshotListing {
            listed_at,
            part,
            parts: count,
            after: after.take(),
            through: through.clone(),
            snapshots: group,
        });
        after = through;
    }
    out
}

#[cfg(test)]
mod tests;
