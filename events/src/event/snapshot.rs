//! Snapshots as the inventory knows them, listings the agents report, and what operators
//! ask agents to do on demand (restore, refresh).
//!
//! Only names, ids, times, sizes and counts: never a password, a file's contents or
//! restored data.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validation::{Invalid, Problems};

/// Most paths or tags kept per snapshot; `more_paths` counts the rest.
pub const MAX_SNAPSHOT_LIST: usize = 64;

/// One restic snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// restic's full snapshot id (64 hex digits).
    pub id: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub time: DateTime<Utc>,
    pub host: String,
    /// The backed-up paths, at most [`MAX_SNAPSHOT_LIST`].
    pub paths: Vec<String>,
    /// Paths beyond the first [`MAX_SNAPSHOT_LIST`].
    pub more_paths: u32,
    /// restic tags, at most [`MAX_SNAPSHOT_LIST`]; the fleet's own are `policy:<id>` and
    /// `task:<id>`.
    pub tags: Vec<String>,
    /// Bytes the backup read (restic's summary, 0.17 and later), when known.
    pub size_bytes: Option<u64>,
    /// Files in the snapshot (restic's summary), when known.
    pub files: Option<u64>,
}

impl SnapshotInfo {
    /// Where the snapshot sorts in a listing.
    pub fn key(&self) -> SnapshotKey {
        SnapshotKey {
            time: self.time,
            id: self.id.clone(),
        }
    }

    /// The value of the snapshot's `prefix:` tag (`policy`, `task`), if it has one.
    pub fn tag(&self, prefix: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| {
            t.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(':'))
        })
    }

    /// restic's short id: the first 8 hex digits.
    pub fn short_id(&self) -> &str {
        self.id.get(..8).unwrap_or(&self.id)
    }
}

/// The order of snapshots in a listing: by time, then id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotKey {
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub time: DateTime<Utc>,
    pub id: String,
}

impl Ord for SnapshotKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, &self.id).cmp(&(other.time, &other.id))
    }
}

impl PartialOrd for SnapshotKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One part of a repository's snapshot listing. A listing, sorted by [`SnapshotKey`], is cut
/// into parts small enough for one message; each part is the whole truth for its range
/// (`after`, `through`], so each can be applied alone and in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotListing {
    /// When the agent ran `restic snapshots`; a listing older than one already applied to
    /// the repository is ignored.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub listed_at: DateTime<Utc>,
    /// This part's number, from 0.
    pub part: u32,
    pub parts: u32,
    /// The range starts after this key; `None`: from the first snapshot.
    pub after: Option<SnapshotKey>,
    /// The range ends with this key; `None`: to the last snapshot.
    pub through: Option<SnapshotKey>,
    pub snapshots: Vec<SnapshotInfo>,
}

impl SnapshotListing {
    /// True if `key` is in this part's range.
    pub fn covers(&self, key: &SnapshotKey) -> bool {
        self.after.as_ref().is_none_or(|a| key > a)
            && self.through.as_ref().is_none_or(|t| key <= t)
    }
}

/// What an operator asked an agent to do, beyond what policies schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskRequest {
    Restore(RestoreRequest),
    /// List the repository's snapshots into the inventory.
    Refresh,
}

/// A restore: which snapshot, which of its paths, where to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// restic's full snapshot id.
    pub snapshot: String,
    /// Absolute paths in the snapshot (files or directories); empty: the whole snapshot.
    pub include: Vec<String>,
    /// The absolute directory on the agent that receives the files (under their snapshot
    /// paths, as restic's `--target` does).
    pub target: String,
    /// Count what would be restored; write nothing.
    pub dry_run: bool,
    pub overwrite: Overwrite,
}

/// What a restore does with a file that already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Overwrite {
    /// Leave it as it is (counted as skipped).
    #[default]
    Never,
    /// Replace it when its size or modification time differs from the snapshot's.
    IfChanged,
    /// Always replace it.
    Always,
}

impl Overwrite {
    /// The name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Overwrite::Never => "never",
            Overwrite::IfChanged => "ifChanged",
            Overwrite::Always => "always",
        }
    }
}

const MAX_PATH: usize = 4096;
/// Most include paths in one restore.
pub const MAX_RESTORE_INCLUDES: usize = 256;

impl RestoreRequest {
    /// Checks every field; returns every problem found.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        p.check(is_snapshot_id(&self.snapshot), "snapshot", || {
            format!(
                "{:?} is not a full restic snapshot id (64 hex digits)",
                self.snapshot
            )
        });
        check_path(&mut p, "target", &self.target);
        p.check(self.target != "/", "target", || {
            "restoring onto / is refused: name a directory to restore into".into()
        });
        p.check(
            self.include.len() <= MAX_RESTORE_INCLUDES,
            "include",
            || format!("at most {MAX_RESTORE_INCLUDES} paths"),
        );
        for (i, path) in self.include.iter().enumerate() {
            check_path(&mut p, &format!("include[{i}]"), path);
        }
        p.finish()
    }
}

/// True for restic's full snapshot id: 64 lowercase hex digits.
pub fn is_snapshot_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_path(p: &mut Problems, field: &str, path: &str) {
    let problem = if !path.starts_with('/') {
        Some(format!("{path:?} is not an absolute path"))
    } else if path.len() > MAX_PATH {
        Some(format!("must be at most {MAX_PATH} bytes"))
    } else if path.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else if path.split('/').any(|c| c == "..") {
        Some(format!("{path:?} must not contain \"..\""))
    } else {
        None
    };
    if let Some(message) = problem {
        p.add(field, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore() -> RestoreRequest {
        RestoreRequest {
            snapshot: "a".repeat(64),
            include: vec!["/srv/data/report.txt".into()],
            target: "/var/restore".into(),
            dry_run: false,
            overwrite: Overwrite::Never,
        }
    }

    #[test]
    fn a_restore_reports_every_problem_at_once() {
        assert_eq!(restore().validate(), Ok(()));
        let bad = RestoreRequest {
            snapshot: "abc".into(),
            include: vec!["relative".into(), "/srv/../etc".into()],
            target: "/".into(),
            ..restore()
        };
        let problems = bad.validate().unwrap_err();
        for field in ["snapshot", "target", "include[0]", "include[1]"] {
            assert!(problems.mentions(field), "{field} in {problems:?}");
        }
    }

    #[test]
    fn a_listing_part_covers_its_range_only() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let key = |s: i64, id: &str| SnapshotKey {
            time: at(s),
            id: id.into(),
        };
        let part = SnapshotListing {
            listed_at: at(100),
            part: 1,
            parts: 3,
            after: Some(key(10, "b")),
            through: Some(key(20, "a")),
            snapshots: vec![],
        };
        assert!(!part.covers(&key(10, "b")));
        assert!(part.covers(&key(10, "c")));
        assert!(part.covers(&key(20, "a")));
        assert!(!part.covers(&key(20, "b")));
        let all = SnapshotListing {
            after: None,
            through: None,
            ..part
        };
        assert!(all.covers(&key(0, "0")));
    }

    #[test]
    fn fleet_tags_are_found_by_prefix() {
        let s = SnapshotInfo {
            id: "0123456789".repeat(6) + "abcd",
            time: DateTime::from_timestamp(0, 0).unwrap(),
            host: "h".into(),
            paths: vec![],
            more_paths: 0,
            tags: vec!["nightly".into(), "policy:p1".into()],
            size_bytes: None,
            files: None,
        };
        assert_eq!(s.tag("policy"), Some("p1"));
        assert_eq!(s.tag("task"), None);
        assert_eq!(s.short_id(), "01234567");
    }
}
