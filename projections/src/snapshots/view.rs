//! What the snapshot read model stores: [`SnapshotView`] (one snapshot of one repository),
//! [`RepoInventory`] (per tenant and repository), [`PolicyRef`] (what the model knows of a
//! policy), the keys of its trees and [`Cursor`], where a page of snapshots ends.
//!
//! Every stored struct is postcard, which is not self-describing: fields and variants are
//! only ever appended, and any change to what is stored bumps `Snapshots::VERSION`, so a
//! database written by an older build is rebuilt rather than misread. [`SnapshotInfo`] is
//! the event's own type, pinned by the event golden files.

use std::fmt;
use std::str::FromStr;

use chrono::serde::ts_microseconds;
use chrono::{DateTime, Utc};
use fleet_events::event::SnapshotInfo;
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId};
use serde::{Deserialize, Serialize};

use crate::stored::tenant_prefix;

/// One snapshot of one of a tenant's repositories (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotView {
    pub tenant: TenantId,
    pub repo: RepoId,
    /// The snapshot as the listing that added it reported it.
    pub info: SnapshotInfo,
    /// The task whose listing added it to the inventory.
    pub added_by_task: TaskId,
    /// The agent that listed it.
    pub added_by_agent: AgentId,
    /// When that agent listed it.
    #[serde(with = "ts_microseconds")]
    pub added_at: DateTime<Utc>,
}

impl SnapshotView {
    /// The policy its `policy:<id>` tag names, if it has one that is a policy id.
    pub fn policy(&self) -> Option<PolicyId> {
        self.info.tag("policy").and_then(|p| p.parse().ok())
    }

    /// The task its `task:<id>` tag names, if it has one that is a task id.
    pub fn task(&self) -> Option<TaskId> {
        self.info.tag("task").and_then(|t| t.parse().ok())
    }

    /// Where the snapshot sorts in a page: newest first.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            time: self.info.time,
            repo: self.repo,
            id: self.info.id.clone(),
        }
    }
}

/// The newest listing that changed a repository's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    #[serde(with = "ts_microseconds")]
    pub listed_at: DateTime<Utc>,
    pub task: TaskId,
    pub agent: AgentId,
}

/// One of a tenant's repositories as the inventory knows it (postcard): known once a policy
/// of the tenant names it or a listing of it changed the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoInventory {
    pub tenant: TenantId,
    pub id: RepoId,
    /// The repository's URL, as the last policy naming it spelt it (never a secret: the
    /// policy names the secret, the agent holds it).
    pub url: Option<String>,
    /// The tenant's live policies that name it, in the order they first did.
    pub policies: Vec<PolicyId>,
    /// Snapshots in the inventory.
    pub snapshots: u64,
    /// The newest listing that changed the inventory (a listing that finds it unchanged
    /// writes no event, so the model does not see it).
    pub last_listing: Option<Listing>,
}

impl RepoInventory {
    /// A repository the model knows nothing of yet.
    pub fn new(tenant: TenantId, id: RepoId) -> Self {
        Self {
            tenant,
            id,
            url: None,
            policies: Vec::new(),
            snapshots: 0,
            last_listing: None,
        }
    }
}

/// What the snapshot model knows of one of a tenant's policies (postcard), to name a
/// snapshot's policy and to tell the fleet's snapshots from external ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub id: PolicyId,
    pub name: String,
    /// The repository its spec names (the last one, for an updated policy).
    pub repo: RepoId,
    pub deleted: bool,
}

/// Which of a tenant's snapshots a list returns: every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    pub repo: Option<RepoId>,
    /// restic's host of the snapshot.
    pub host: Option<String>,
    /// The policy its `policy:<id>` tag names.
    pub policy: Option<PolicyId>,
}

impl SnapshotFilter {
    /// Whether `view` passes the filter.
    pub fn matches(&self, view: &SnapshotView) -> bool {
        self.repo.is_none_or(|r| r == view.repo)
            && self.host.as_ref().is_none_or(|h| *h == view.info.host)
            && self.policy.is_none_or(|p| Some(p) == view.policy())
    }
}

/// A page of snapshots, newest first; `next` is where the next page starts, `None` on the
/// last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<SnapshotView>,
    pub next: Option<Cursor>,
}

/// Where a page ended: the last snapshot returned. Written `<time µs>.<repo uuid>.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub repo: RepoId,
    pub id: String,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.time.timestamp_micros(),
            self.repo.uuid().simple(),
            self.id
        )
    }
}

/// A cursor that is not one the model wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a cursor of a snapshot page")]
pub struct BadCursor(pub String);

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadCursor(text.to_owned());
        let mut parts = text.splitn(3, '.');
        let (Some(time), Some(repo), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let time = time
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(bad)?;
        let repo = uuid::Uuid::try_parse(repo)
            .map(RepoId::from_uuid)
            .map_err(|_| bad())?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Cursor {
            time,
            repo,
            id: id.to_owned(),
        })
    }
}

/// Microseconds since the epoch, big-endian, offset by 2^63 so that keys sort by time
/// before 1970 too.
fn time_bytes(at: DateTime<Utc>) -> [u8; 8] {
    ((at.timestamp_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The `snapshots.repos` key, and the prefix of the repository's `snapshots.by_repo`
/// keys: tenant, zero byte, repository UUID.
pub(crate) fn repo_key(tenant: &TenantId, repo: RepoId) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(repo.uuid().as_bytes());
    key
}

/// The `snapshots.by_repo` key: tenant, zero byte, repository UUID, time, id, so a
/// repository's snapshots sort as restic lists them (by time, then id).
pub(crate) fn snapshot_key(
    tenant: &TenantId,
    repo: RepoId,
    time: DateTime<Utc>,
    id: &str,
) -> Vec<u8> {
    let mut key = repo_key(tenant, repo);
    key.extend_from_slice(&time_bytes(time));
    key.extend_from_slice(id.as_bytes());
    key
}

/// The `snapshots.by_time` key: tenant, zero byte, time, repository UUID, id, so a
/// tenant's snapshots sort by time across repositories.
pub(crate) fn time_key(tenant: &TenantId, repo: RepoId, time: DateTime<Utc>, id: &str) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(&time_bytes(time));
    key.extend_from_slice(repo.uuid().as_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The `snapshots.policies` key: tenant, zero byte, policy UUID.
pub(crate) fn policy_key(tenant: &TenantId, policy: PolicyId) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(policy.uuid().as_bytes());
    key
}
