//! Browsing a snapshot: the request an operator's API sends an agent on
//! `fleet.agent.<id>.browse` (core NATS request/reply, never stored) and the page of a
//! directory listing (`restic ls`) the agent answers with. Names, kinds, sizes and times
//! only: never a file's contents.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{TaskError, is_snapshot_id};
use crate::ids::{PolicyId, TenantId};
use crate::policy::RepositoryRef;
use crate::validation::{Invalid, Problems};

/// Most entries one page holds.
pub const MAX_PAGE: u32 = 1000;
/// Entries a page holds when the request names no limit.
pub const DEFAULT_PAGE: u32 = 200;
/// Longest path or cursor in a request.
const MAX_PATH: usize = 4096;

/// List one directory of a snapshot, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowseRequest {
    pub schema: u16,
    /// The agent refuses a request for another tenant.
    pub tenant: TenantId,
    /// The policy whose repository and secret name are given (for the agent's log).
    pub policy: PolicyId,
    pub repository: RepositoryRef,
    /// restic's full snapshot id.
    pub snapshot: String,
    /// An absolute directory in the snapshot (`/` for its top).
    pub path: String,
    /// Entries after this name (the previous page's `next`); `None` from the start.
    pub after: Option<String>,
    /// At most this many entries, 1 to [`MAX_PAGE`].
    pub limit: u32,
}

impl BrowseRequest {
    /// Checks the operator's part of the request; every problem at once.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        p.check(is_snapshot_id(&self.snapshot), "snapshot", || {
            format!("{:?} is not a full restic snapshot id", self.snapshot)
        });
        let path_ok = self.path.starts_with('/')
            && self.path.len() <= MAX_PATH
            && !self.path.chars().any(char::is_control)
            && !self.path.split('/').any(|c| c == "..");
        p.check(path_ok, "path", || {
            "must be an absolute path without \"..\" or control characters".into()
        });
        if let Some(after) = &self.after {
            p.check(
                after.len() <= MAX_PATH && !after.chars().any(char::is_control),
                "after",
                || "must be a name from the previous page".into(),
            );
        }
        p.check((1..=MAX_PAGE).contains(&self.limit), "limit", || {
            format!("must be between 1 and {MAX_PAGE}")
        });
        p.finish()
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of a directory in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    /// Bytes, for files.
    pub size: Option<u64>,
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub mtime: Option<DateTime<Utc>>,
}

/// One page of a directory, entries sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowsePage {
    pub path: String,
    pub entries: Vec<Entry>,
    /// The `after` of the next page; `None` on the last one.
    pub next: Option<String>,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowseReply {
    pub schema: u16,
    /// The page, or why there is none (classified like a run's failure: a wrong password
    /// is `auth`, another tenant's request `auth`, a secret the agent does not hold or a
    /// snapshot or path that does not exist `permanent`).
    pub result: Result<BrowsePage, TaskError>,
}

crate::codec::impl_wire!(BrowseRequest => "browse request", BrowseReply => "browse reply");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Wire;
    use crate::envelope::SCHEMA_VERSION;
    use crate::samples;

    fn request() -> BrowseRequest {
        BrowseRequest {
            schema: SCHEMA_VERSION,
            tenant: samples::tenant(),
            policy: samples::POLICY,
            repository: samples::policy_spec().repository,
            snapshot: "ab".repeat(32),
            path: "/srv/data".into(),
            after: None,
            limit: DEFAULT_PAGE,
        }
    }

    #[test]
    fn a_browse_request_reports_every_problem_and_round_trips() {
        assert_eq!(request().validate(), Ok(()));
        let bad = BrowseRequest {
            snapshot: "x".into(),
            path: "srv/../etc".into(),
            limit: 0,
            ..request()
        };
        let problems = bad.validate().unwrap_err();
        for field in ["snapshot", "path", "limit"] {
            assert!(problems.mentions(field), "{field}: {problems:?}");
        }
        let r = request();
        assert_eq!(BrowseRequest::from_wire(&r.to_wire().unwrap()), Ok(r));
        let reply = BrowseReply {
            schema: SCHEMA_VERSION,
            result: Ok(BrowsePage {
                path: "/srv/data".into(),
                entries: vec![Entry {
                    name: "report.txt".into(),
                    kind: EntryKind::File,
                    size: Some(12),
                    mtime: Some(samples::at(3)),
                }],
                next: Some("report.txt".into()),
            }),
        };
        assert_eq!(BrowseReply::from_wire(&reply.to_wire().unwrap()), Ok(reply));
    }
}
