//! The repository read model: each repository's circuit breaker (closed, or open until
//! a time after so many failures) and when it last changed.
//!
//! Tree: `repos.circuits` (tenant, zero byte, repository UUID → postcard [`RepoView`]).
//! A repository id is derived from its URL alone, so two tenants naming the same URL
//! share an id; their circuits are still apart (the retry enforcer keeps one breaker per
//! tenant and repository, and the events are stored per tenant), which is why the key
//! starts with the tenant and why a repository's events can never belong to another
//! tenant's record.
//!
//! Rejection kind: `subject_mismatch` (the event is not stored under its own subject).
//! Events of other aggregates are ignored.

mod view;

use fleet_events::event::{Event, RepoEvent};
use fleet_events::ids::{RepoId, TenantId};
use fleet_events::store::Stored;
use fleet_events::subject::{self, Aggregate};

pub use view::{Circuit, RepoView};
use view::{repo_key, tenant_prefix};

use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection, check_subject};
use crate::runtime::Checkpointed;

const CIRCUITS: &str = "repos.circuits";

/// The repository read model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Repos;

impl Projection for Repos {
    const NAME: &'static str = "repos";
    const TREES: &'static [&'static str] = &[CIRCUITS];

    fn filter(&self) -> String {
        subject::aggregate_events(Aggregate::Repo)
    }

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let [circuits] = trees else {
            return Err(ApplyError::corrupt(CIRCUITS, "expected the circuit tree"));
        };
        let envelope = &stored.envelope;
        check_subject(stored)?;
        let Event::Repo { repo, event } = &envelope.event else {
            return Ok(());
        };
        let circuit = match event {
            RepoEvent::CircuitOpened { until, failures } => Circuit::Open {
                until: *until,
                failures: *failures,
            },
            RepoEvent::CircuitClosed => Circuit::Closed,
            // The snapshot inventory is a model of its own.
            RepoEvent::SnapshotsChanged { .. } => return Ok(()),
        };
        let view = RepoView {
            tenant: envelope.tenant.clone(),
            id: *repo,
            circuit,
            changed_at: envelope.at,
        };
        let bytes = view
            .encode()
            .map_err(|e| ApplyError::corrupt(CIRCUITS, format!("repository {repo}: {e}")))?;
        circuits.insert(&repo_key(&envelope.tenant, *repo), &bytes)?;
        Ok(())
    }
}

impl Checkpointed<Repos> {
    /// `tenant`'s repository `id`, if its circuit ever opened or closed.
    pub fn repo(&self, tenant: &TenantId, id: RepoId) -> Result<Option<RepoView>, ProjectionError> {
        let Some(bytes) = self.trees()[0].get(repo_key(tenant, id))? else {
            return Ok(None);
        };
        RepoView::decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(format!("repository {id}: {e}")))
    }

    /// `tenant`'s repositories whose circuit ever opened or closed, by repository UUID.
    pub fn list(&self, tenant: &TenantId) -> Result<Vec<RepoView>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[0].scan_prefix(tenant_prefix(tenant)) {
            let (_, value) = item?;
            out.push(RepoView::decode(&value).map_err(|e| corrupt(e.to_string()))?);
        }
        Ok(out)
    }
}

fn corrupt(reason: String) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: Repos::NAME,
        tree: CIRCUITS.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;
