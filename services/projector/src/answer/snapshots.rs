//! Answering the snapshot queries: a page of one repository's snapshots, or of the
//! tenant's across repositories, each snapshot with its policy (or external) and its
//! repository's URL.

use std::collections::HashMap;

use fleet_events::ids::{AgentId, PolicyId, RepoId, TenantId};
use fleet_projections::{SnapshotCursor, SnapshotFilter, SnapshotPage};
use serde_json::Value;

use super::super::dto;
use super::super::models::ReadModels;
use super::super::query::{DEFAULT_LIMIT, ErrorCode, MAX_SNAPSHOT_LIMIT};
use super::{Refusal, to_json};

/// Most bytes of snapshots (as JSON) in one answer, well below NATS's 1 MiB message
/// limit; a page that would be larger ends early, its cursor where it ended.
const PAGE_BYTES: usize = 512 * 1024;

fn limit(asked: Option<usize>) -> Result<usize, Refusal> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_SNAPSHOT_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Refusal(
            ErrorCode::BadRequest,
            format!("limit must be 1 to {MAX_SNAPSHOT_LIMIT}"),
        )),
    }
}

fn cursor(text: Option<&str>) -> Result<Option<SnapshotCursor>, Refusal> {
    text.map(|t| t.parse())
        .transpose()
        .map_err(|e: fleet_projections::snapshots::BadCursor| {
            Refusal(ErrorCode::BadRequest, e.to_string())
        })
}

/// `GET /v1/repositories/{id}/snapshots`: the repository and a page of its snapshots.
pub fn repo_snapshots(
    models: &ReadModels,
    tenant: &TenantId,
    id: RepoId,
    asked: Option<usize>,
    after: Option<&str>,
) -> Result<Value, Refusal> {
    let Some(inventory) = models.snapshots.repo(tenant, id)? else {
        return Err(Refusal(ErrorCode::NotFound, format!("no repository {id}")));
    };
    let filter = SnapshotFilter {
        repo: Some(id),
        ..SnapshotFilter::default()
    };
    let page = models
        .snapshots
        .list(tenant, &filter, limit(asked)?, cursor(after)?.as_ref())?;
    let mut policies = Vec::new();
    for policy in &inventory.policies {
        if let Some(known) = models.snapshots.policy(tenant, *policy)? {
            policies.push(dto::NamedPolicy {
                id: known.id,
                name: known.name,
            });
        }
    }
    let mut answer = render(models, tenant, page)?;
    answer.repository = Some(dto::snapshot_repository(&inventory, policies));
    to_json(answer)
}

/// Which of the tenant's snapshots `GET /v1/snapshots` lists.
pub struct Wanted {
    pub repo: Option<RepoId>,
    pub agent: Option<AgentId>,
    pub host: Option<String>,
    pub policy: Option<PolicyId>,
}

/// `GET /v1/snapshots`: a page of the tenant's snapshots that pass the filters.
pub fn snapshots(
    models: &ReadModels,
    tenant: &TenantId,
    wanted: Wanted,
    asked: Option<usize>,
    after: Option<&str>,
) -> Result<Value, Refusal> {
    let host = match (wanted.agent, wanted.host) {
        (Some(_), Some(_)) => {
            return Err(Refusal(
                ErrorCode::BadRequest,
                "name an agent or a host, not both".into(),
            ));
        }
        (Some(id), None) => match models.agents.agent(id)? {
            Some(view) if view.tenant == *tenant => Some(view.hostname),
            // Like every list's agent filter: an agent the tenant does not have has none.
            _ => {
                return to_json(dto::SnapshotPage {
                    repository: None,
                    snapshots: Vec::new(),
                    next_cursor: None,
                });
            }
        },
        (None, host) => host,
    };
    let filter = SnapshotFilter {
        repo: wanted.repo,
        host,
        policy: wanted.policy,
    };
    let page = models
        .snapshots
        .list(tenant, &filter, limit(asked)?, cursor(after)?.as_ref())?;
    to_json(render(models, tenant, page)?)
}

/// The page as JSON: each snapshot with its policy and its repository's URL, cut short
/// at [`PAGE_BYTES`].
fn render(
    models: &ReadModels,
    tenant: &TenantId,
    page: SnapshotPage,
) -> Result<dto::SnapshotPage, Refusal> {
    let mut urls: HashMap<RepoId, Option<String>> = HashMap::new();
    let mut snapshots = Vec::with_capacity(page.items.len());
    let (mut bytes, mut next) = (0, page.next.map(|c| c.to_string()));
    for (i, view) in page.items.iter().enumerate() {
        let url = match urls.get(&view.repo) {
            Some(url) => url.clone(),
            None => {
                let url = models
                    .snapshots
                    .repo(tenant, view.repo)?
                    .and_then(|r| r.url);
                urls.insert(view.repo, url.clone());
                url
            }
        };
        let policy = models.snapshots.policy_of(view)?;
        let snapshot = dto::snapshot(view, policy.as_ref(), url.as_deref());
        bytes += serde_json::to_vec(&snapshot).map_or(0, |b| b.len());
        if bytes > PAGE_BYTES && i > 0 {
            next = Some(page.items[i - 1].cursor().to_string());
            break;
        }
        snapshots.push(snapshot);
    }
    Ok(dto::SnapshotPage {
        repository: None,
        snapshots,
        next_cursor: next,
    })
}

#[cfg(test)]
mod tests;
