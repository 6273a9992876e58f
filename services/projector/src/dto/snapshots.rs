//! The JSON shapes of the snapshot inventory: a snapshot, the repository it is in, and a
//! page of them with the cursor of the next.

use fleet_api_model::dto::{AddedBy, ListedBy, NamedPolicy, Snapshot, SnapshotRepository};
use fleet_projections::{PolicyRef, RepoInventory, SnapshotView};

/// `view`, made by `policy` (`None`: external), in the repository at `url`.
pub fn snapshot(view: &SnapshotView, policy: Option<&PolicyRef>, url: Option<&str>) -> Snapshot {
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

/// `inventory`, its policies named by `policies`.
pub fn snapshot_repository(
    inventory: &RepoInventory,
    policies: Vec<NamedPolicy>,
) -> SnapshotRepository {
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
