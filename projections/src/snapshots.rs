//! The snapshot read model: each repository's snapshots as the log's
//! `repo.snapshots_changed` events leave them, per tenant, with the agent and task whose
//! listing added each; per repository its URL (from the tenant's policies naming it), the
//! policies naming it and the newest listing that changed it; and what it knows of each
//! policy to name a snapshot's policy.
//!
//! Trees: `snapshots.by_repo` (tenant, zero byte, repository UUID, time, id → postcard
//! [`SnapshotView`]), `snapshots.by_time` (tenant, zero byte, time, repository UUID, id →
//! nothing: the index of a tenant's snapshots across repositories, newest first),
//! `snapshots.repos` (tenant, zero byte, repository UUID → postcard [`RepoInventory`]) and
//! `snapshots.policies` (tenant, zero byte, policy UUID → postcard [`PolicyRef`]).
//!
//! Rules:
//! - A snapshot is the fleet's when its `policy:<id>` tag names a policy of the tenant
//!   that the log has created (live or deleted since: its snapshots stay the fleet's);
//!   otherwise it is external (made by hand, by another tool, or by another tenant's
//!   policy on a shared repository). See [`Checkpointed::<Snapshots>::policy_of`].
//! - The agent filter of the API matches a snapshot's host (restic's `--host`, the agent's
//!   hostname unless a policy sets another), so snapshots made by hand on a machine are
//!   found with its agent's; the agent whose listing added a snapshot is shown but not
//!   filtered on (a refresh on one agent adds every snapshot it finds).
//! - A repository is known to a tenant once one of its policies names it or a listing of
//!   it changed the inventory; another tenant's repository of the same URL is its own.
//!
//! Rejection kind: `subject_mismatch` (the event is not stored under its own subject).
//! Policy events the policy model refuses (an update of an unknown or deleted policy, a
//! second creation of a live one) are ignored here. Other events are ignored.

mod view;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, PolicyEvent, RepoEvent, SnapshotInfo, repo_of};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId};
use fleet_events::store::Stored;

pub use view::{
    BadCursor, Cursor, Listing, Page, PolicyRef, RepoInventory, SnapshotFilter, SnapshotView,
};
use view::{policy_key, repo_key, snapshot_key, time_key};

use crate::stored::{decode, encode, load, store, tenant_prefix};

use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection, check_subject};
use crate::runtime::Checkpointed;

const BY_REPO: &str = "snapshots.by_repo";
const BY_TIME: &str = "snapshots.by_time";
const REPOS: &str = "snapshots.repos";
const POLICIES: &str = "snapshots.policies";

/// The snapshot read model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshots;

impl Projection for Snapshots {
    const NAME: &'static str = "snapshots";
    const TREES: &'static [&'static str] = &[BY_REPO, BY_TIME, REPOS, POLICIES];

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let [by_repo, by_time, repos, policies] = trees else {
            return Err(ApplyError::corrupt(
                BY_REPO,
                "expected the four snapshot trees",
            ));
        };
        let envelope = &stored.envelope;
        match &envelope.event {
            Event::Repo {
                repo,
                event:
                    RepoEvent::SnapshotsChanged {
                        task,
                        agent,
                        listed_at,
                        added,
                        removed,
                    },
            } => {
                check_subject(stored)?;
                let change = Change {
                    repo: *repo,
                    task: *task,
                    agent: *agent,
                    listed_at: *listed_at,
                    added,
                    removed,
                };
                changed(&[*by_repo, *by_time, *repos], envelope, change)
            }
            Event::Policy { policy, event } => {
                check_subject(stored)?;
                policy_changed(*repos, *policies, envelope, *policy, event)
            }
            _ => Ok(()),
        }
    }
}

struct Change<'a> {
    repo: RepoId,
    task: TaskId,
    agent: AgentId,
    listed_at: DateTime<Utc>,
    added: &'a [SnapshotInfo],
    removed: &'a [SnapshotInfo],
}

fn changed(
    trees: &[&dyn ModelTree; 3],
    envelope: &Envelope,
    change: Change<'_>,
) -> Result<(), ApplyError> {
    let [by_repo, by_time, repos] = *trees;
    let (tenant, repo) = (&envelope.tenant, change.repo);
    let mut inventory = load::<RepoInventory>(repos, REPOS, &repo_key(tenant, repo))?
        .unwrap_or_else(|| RepoInventory::new(tenant.clone(), repo));
    for snapshot in change.removed {
        let key = snapshot_key(tenant, repo, snapshot.time, &snapshot.id);
        if by_repo.get(&key)?.is_some() {
            by_repo.remove(&key)?;
            by_time.remove(&time_key(tenant, repo, snapshot.time, &snapshot.id))?;
            inventory.snapshots = inventory.snapshots.saturating_sub(1);
        }
    }
    for snapshot in change.added {
        let key = snapshot_key(tenant, repo, snapshot.time, &snapshot.id);
        // Already there: it keeps the listing that first added it.
        if by_repo.get(&key)?.is_some() {
            continue;
        }
        let view = SnapshotView {
            tenant: tenant.clone(),
            repo,
            info: snapshot.clone(),
            added_by_task: change.task,
            added_by_agent: change.agent,
            added_at: change.listed_at,
        };
        let bytes = encode(&view).map_err(|e| ApplyError::corrupt(BY_REPO, e))?;
        by_repo.insert(&key, &bytes)?;
        by_time.insert(&time_key(tenant, repo, snapshot.time, &snapshot.id), &[])?;
        inventory.snapshots += 1;
    }
    let newer = inventory
        .last_listing
        .as_ref()
        .is_none_or(|l| change.listed_at >= l.listed_at);
    if newer {
        inventory.last_listing = Some(Listing {
            listed_at: change.listed_at,
            task: change.task,
            agent: change.agent,
        });
    }
    store(repos, REPOS, &repo_key(tenant, repo), &inventory)
}

fn policy_changed(
    repos: &dyn ModelTree,
    policies: &dyn ModelTree,
    envelope: &Envelope,
    policy: PolicyId,
    event: &PolicyEvent,
) -> Result<(), ApplyError> {
    let tenant = &envelope.tenant;
    let key = policy_key(tenant, policy);
    let current = load::<PolicyRef>(policies, POLICIES, &key)?;
    let live = current.as_ref().filter(|p| !p.deleted);
    let spec = match event {
        PolicyEvent::Created { spec } if live.is_none() => spec,
        PolicyEvent::Updated { spec } if live.is_some() => spec,
        PolicyEvent::Deleted => {
            if let Some(old) = live {
                unname(repos, tenant, old.repo, policy)?;
                let deleted = PolicyRef {
                    deleted: true,
                    ..old.clone()
                };
                store(policies, POLICIES, &key, &deleted)?;
            }
            return Ok(());
        }
        _ => return Ok(()),
    };
    let repo = repo_of(spec);
    if let Some(old) = live
        && old.repo != repo
    {
        unname(repos, tenant, old.repo, policy)?;
    }
    let inventory_key = repo_key(tenant, repo);
    let mut inventory = load::<RepoInventory>(repos, REPOS, &inventory_key)?
        .unwrap_or_else(|| RepoInventory::new(tenant.clone(), repo));
    inventory.url = Some(spec.repository.url.clone());
    if !inventory.policies.contains(&policy) {
        inventory.policies.push(policy);
    }
    store(repos, REPOS, &inventory_key, &inventory)?;
    let named = PolicyRef {
        id: policy,
        name: spec.name.clone(),
        repo,
        deleted: false,
    };
    store(policies, POLICIES, &key, &named)
}

/// Takes `policy` off the policies naming `repo`.
fn unname(
    repos: &dyn ModelTree,
    tenant: &TenantId,
    repo: RepoId,
    policy: PolicyId,
) -> Result<(), ApplyError> {
    let key = repo_key(tenant, repo);
    if let Some(mut inventory) = load::<RepoInventory>(repos, REPOS, &key)? {
        inventory.policies.retain(|p| *p != policy);
        store(repos, REPOS, &key, &inventory)?;
    }
    Ok(())
}

impl Checkpointed<Snapshots> {
    /// `tenant`'s repository `id`, if the tenant knows it.
    pub fn repo(
        &self,
        tenant: &TenantId,
        id: RepoId,
    ) -> Result<Option<RepoInventory>, ProjectionError> {
        let Some(bytes) = self.trees()[2].get(repo_key(tenant, id))? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(REPOS, format!("repository {id}: {e}")))
    }

    /// `tenant`'s known repositories, by repository UUID.
    pub fn repos(&self, tenant: &TenantId) -> Result<Vec<RepoInventory>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[2].scan_prefix(tenant_prefix(tenant)) {
            let (_, value) = item?;
            out.push(decode(&value).map_err(|e| corrupt(REPOS, e))?);
        }
        Ok(out)
    }

    /// What the model knows of `tenant`'s policy `id`.
    pub fn policy(
        &self,
        tenant: &TenantId,
        id: PolicyId,
    ) -> Result<Option<PolicyRef>, ProjectionError> {
        let Some(bytes) = self.trees()[3].get(policy_key(tenant, id))? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(POLICIES, format!("policy {id}: {e}")))
    }

    /// The policy of the tenant that made `snapshot`, or `None` for an external snapshot
    /// (no `policy:<id>` tag naming a policy of the snapshot's tenant that the log ever
    /// created).
    pub fn policy_of(&self, snapshot: &SnapshotView) -> Result<Option<PolicyRef>, ProjectionError> {
        match snapshot.policy() {
            Some(id) => self.policy(&snapshot.tenant, id),
            None => Ok(None),
        }
    }

    /// Up to `limit` of `tenant`'s snapshots that pass `filter`, newest first (by time,
    /// then repository and id), starting after `after` (a cursor of an earlier page).
    pub fn list(
        &self,
        tenant: &TenantId,
        filter: &SnapshotFilter,
        limit: usize,
        after: Option<&Cursor>,
    ) -> Result<Page, ProjectionError> {
        if let Some(repo) = filter.repo {
            let prefix = repo_key(tenant, repo);
            let end = after.map(|c| snapshot_key(tenant, repo, c.time, &c.id));
            let keys = self.keys(0, prefix, end);
            return page(keys, limit, filter, |_, value| self.view(value));
        }
        let prefix = tenant_prefix(tenant);
        let end = after.map(|c| time_key(tenant, c.repo, c.time, &c.id));
        let keys = self.keys(1, prefix.clone(), end);
        page(keys, limit, filter, |key, _| {
            let by_repo = by_repo_key(&prefix, key)
                .ok_or_else(|| corrupt(BY_TIME, "a key too short for a snapshot"))?;
            let value = self.trees()[0]
                .get(&by_repo)?
                .ok_or_else(|| corrupt(BY_TIME, "a key names no stored snapshot"))?;
            self.view(&value)
        })
    }

    /// The keys and values of tree `tree` from `prefix` up to `end` (or the prefix's end),
    /// last first.
    fn keys(
        &self,
        tree: usize,
        prefix: Vec<u8>,
        end: Option<Vec<u8>>,
    ) -> Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + '_> {
        let tree = &self.trees()[tree];
        match end {
            Some(end) => Box::new(tree.range(prefix..end).rev()),
            None => Box::new(tree.scan_prefix(prefix).rev()),
        }
    }

    fn view(&self, bytes: &[u8]) -> Result<SnapshotView, ProjectionError> {
        decode(bytes).map_err(|e| corrupt(BY_REPO, e))
    }
}

/// A page of up to `limit` views that pass `filter` from `items`, with the cursor of its
/// last one if more may follow.
fn page(
    items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    limit: usize,
    filter: &SnapshotFilter,
    view: impl Fn(&[u8], &[u8]) -> Result<SnapshotView, ProjectionError>,
) -> Result<Page, ProjectionError> {
    let mut out = Vec::new();
    for item in items {
        let (key, value) = item?;
        let view = view(&key, &value)?;
        if !filter.matches(&view) {
            continue;
        }
        if out.len() == limit {
            let next = out.last().map(SnapshotView::cursor);
            return Ok(Page { items: out, next });
        }
        out.push(view);
    }
    Ok(Page {
        items: out,
        next: None,
    })
}

/// The `snapshots.by_repo` key of a `snapshots.by_time` key (tenant prefix `prefix`, time,
/// repository, id).
fn by_repo_key(prefix: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let rest = key.get(prefix.len()..)?;
    let (time, rest) = (rest.get(..8)?, rest.get(8..)?);
    let (repo, id) = (rest.get(..16)?, rest.get(16..)?);
    let mut out = prefix.to_vec();
    out.extend_from_slice(repo);
    out.extend_from_slice(time);
    out.extend_from_slice(id);
    Some(out)
}

fn corrupt(tree: &str, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: Snapshots::NAME,
        tree: tree.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
