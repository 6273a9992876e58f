//! The JSON shapes of the snapshot inventory: a snapshot, the repository it is in, and a
//! page of them with the cursor of the next.

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId};
use fleet_projections::{PolicyRef, RepoInventory, SnapshotView};
use serde::Serialize;

/// One snapshot of a repository's inventory.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddedBy {
    pub task: TaskId,
    pub agent: AgentId,
    pub listed_at: DateTime<Utc>,
}

impl Snapshot {
    /// `view`, made by `policy` (`None`: external), in the repository at `url`.
    pub fn new(view: &SnapshotView, policy: Option<&PolicyRef>, url: Option<&str>) -> Self {
        let info = &view.info;
        Snapshot {
            id: info.id.clone(),
            short_id: info.short_id().to_owned(),
            time: info.time,
            host: info.host.clone(),
            paths: info.paths.clone(),
            more_paths: info.more_paths,
            tags: info.tags.clone(),
            size_bytes: info.size_bytes,
            files: info.files,
            repo: view.repo,
            repo_url: url.map(str::to_owned),
            policy: info.tag("policy").map(str::to_owned),
            policy_name: policy.map(|p| p.name.clone()),
            external: policy.is_none(),
            task: info.tag("task").map(str::to_owned),
            added_by: AddedBy {
                task: view.added_by_task,
                agent: view.added_by_agent,
                listed_at: view.added_at,
            },
        }
    }
}

/// A policy by id and name.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedPolicy {
    pub id: PolicyId,
    pub name: String,
}

/// Who last listed a repository.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedBy {
    pub task: TaskId,
    pub agent: AgentId,
}

/// A repository as the inventory knows it.
#[derive(Debug, Clone, Serialize)]
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

impl SnapshotRepository {
    /// `inventory`, its policies named by `policies`.
    pub fn new(inventory: &RepoInventory, policies: Vec<NamedPolicy>) -> Self {
        let last = inventory.last_listing.as_ref();
        SnapshotRepository {
            id: inventory.id,
            url: inventory.url.clone(),
            policies,
            snapshot_count: inventory.snapshots,
            last_listed_at: last.map(|l| l.listed_at),
            last_listed_by: last.map(|l| ListedBy {
                task: l.task,
                agent: l.agent,
            }),
        }
    }
}

/// A page of snapshots, newest first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPage {
    /// The repository, when the page is one repository's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<SnapshotRepository>,
    pub snapshots: Vec<Snapshot>,
    /// Send it as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}
