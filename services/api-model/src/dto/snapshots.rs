//! The JSON shapes of the snapshot inventory: snapshots, their repositories, a page.

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId};
use serde::{Deserialize, Serialize};

/// One snapshot of a repository's inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// restic's full snapshot id.
    pub id: String,
    /// Its first 8 hex digits, as restic shows it.
    pub short_id: String,
    pub time: DateTime<Utc>,
    pub host: String,
    pub paths: Vec<String>,
    /// Paths beyond those listed.
    pub more_paths: u32,
    pub tags: Vec<String>,
    /// Bytes the backup read (restic 0.17 and later), when known.
    pub size_bytes: Option<u64>,
    pub files: Option<u64>,
    /// The repository's id.
    pub repo: RepoId,
    /// The repository's URL, when a policy of the tenant names it.
    pub repo_url: Option<String>,
    /// The policy its `policy:<id>` tag names, as the tag spells it.
    pub policy: Option<String>,
    /// That policy's name, when it is one of the tenant's.
    pub policy_name: Option<String>,
    /// Made outside the fleet: no `policy:<id>` tag naming a policy of this tenant (by
    /// hand, by another tool, or by another tenant sharing the repository).
    pub external: bool,
    /// The task its `task:<id>` tag names, as the tag spells it.
    pub task: Option<String>,
    /// The listing that first added it to the inventory.
    pub added_by: AddedBy,
}

/// The listing that added a snapshot to the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddedBy {
    pub task: TaskId,
    pub agent: AgentId,
    pub listed_at: DateTime<Utc>,
}

/// A policy by id and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedPolicy {
    pub id: PolicyId,
    pub name: String,
}

/// Who last listed a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedBy {
    pub task: TaskId,
    pub agent: AgentId,
}

/// A repository as the inventory knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRepository {
    pub id: RepoId,
    /// As the last policy naming it spells it; `None` if no policy of the tenant did.
    pub url: Option<String>,
    /// The tenant's live policies naming it.
    pub policies: Vec<NamedPolicy>,
    pub snapshot_count: u64,
    /// The newest listing that changed the inventory (one that finds it unchanged is not
    /// recorded).
    pub last_listed_at: Option<DateTime<Utc>>,
    pub last_listed_by: Option<ListedBy>,
}

/// A page of snapshots, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPage {
    /// The repository, when the page is one repository's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<SnapshotRepository>,
    pub snapshots: Vec<Snapshot>,
    /// Send it as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
