//! The policy read model: each policy's spec, pause and deletion, assigned agents and
//! revision, listed per tenant by name.
//!
//! Trees: `policies.by_id` (policy UUID bytes → postcard [`PolicyView`]) and
//! `policies.by_tenant` (tenant, zero byte, policy UUID → nothing: the index
//! [`Checkpointed::<Policies>::list`] scans).
//!
//! Rejection kinds: `subject_mismatch` (the event is not stored under its own subject),
//! `tenant_mismatch` (the policy exists under another tenant), `unknown_policy` (an event
//! before the policy's creation), `already_created` (a second creation of a live policy),
//! `policy_deleted` (an event after its deletion, other than a new creation). The
//! scheduler ignores the same events, so the model
//! shows the policies it schedules. Events of other aggregates are ignored.

mod view;

use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, PolicyEvent};
use fleet_events::ids::{PolicyId, TenantId};
use fleet_events::store::Stored;
use fleet_events::subject::{self, Aggregate};

pub use view::{MAX_NEXT_FIRES, PolicyView};
use view::{policy_key, tenant_key, tenant_prefix};

use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection, check_subject};
use crate::runtime::Checkpointed;

const BY_ID: &str = "policies.by_id";
const BY_TENANT: &str = "policies.by_tenant";

/// The policy read model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policies;

impl Projection for Policies {
    const NAME: &'static str = "policies";
    /// 2: views record their `version`, and a deleted policy may be created again.
    /// 3: a view's spec ends with its `hooks` (a view stored without them is rebuilt).
    const VERSION: u32 = 3;
    const TREES: &'static [&'static str] = &[BY_ID, BY_TENANT];

    fn filter(&self) -> String {
        subject::aggregate_events(Aggregate::Policy)
    }

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let [by_id, by_tenant] = trees else {
            return Err(ApplyError::corrupt(BY_ID, "expected the two policy trees"));
        };
        let envelope = &stored.envelope;
        check_subject(stored)?;
        let Event::Policy { policy, event } = &envelope.event else {
            return Ok(());
        };
        let key = policy_key(*policy);
        let current = match by_id.get(&key)? {
            Some(bytes) => Some(PolicyView::decode(&bytes).map_err(|e| corrupt_view(*policy, e))?),
            None => None,
        };
        if let Some(view) = &current
            && view.tenant != envelope.tenant
        {
            return Err(ApplyError::rejected(
                "tenant_mismatch",
                format!("policy {policy} belongs to tenant {}", view.tenant),
            ));
        }
        let created = current.is_none();
        let view = fold(current, *policy, stored.seq, envelope, event)?;
        if created {
            by_tenant.insert(&tenant_key(&envelope.tenant, *policy), &[])?;
        }
        let bytes = view.encode().map_err(|e| corrupt_view(*policy, e))?;
        by_id.insert(&key, &bytes)?;
        Ok(())
    }
}

/// The policy after `event`, or why the event does not apply to it.
fn fold(
    current: Option<PolicyView>,
    policy: PolicyId,
    seq: u64,
    envelope: &Envelope,
    event: &PolicyEvent,
) -> Result<PolicyView, ApplyError> {
    let mut view = match (current, event) {
        (None, PolicyEvent::Created { spec }) => {
            let tenant = envelope.tenant.clone();
            return Ok(PolicyView::created(
                tenant,
                policy,
                (**spec).clone(),
                envelope.at,
                seq,
            ));
        }
        // A deleted policy's name is created again: a fresh policy under the same id,
        // whose revision goes on counting the subject's events.
        (Some(old), PolicyEvent::Created { spec }) if old.deleted => {
            let mut view = PolicyView::created(
                envelope.tenant.clone(),
                policy,
                (**spec).clone(),
                envelope.at,
                seq,
            );
            view.revision = old.revision + 1;
            return Ok(view);
        }
        (None, _) => {
            return Err(ApplyError::rejected(
                "unknown_policy",
                format!("policy {policy} was never created"),
            ));
        }
        (Some(_), PolicyEvent::Created { .. }) => {
            return Err(ApplyError::rejected(
                "already_created",
                format!("policy {policy} exists already"),
            ));
        }
        (Some(view), _) if view.deleted => {
            return Err(ApplyError::rejected(
                "policy_deleted",
                format!("policy {policy} is deleted"),
            ));
        }
        (Some(view), _) => view,
    };
    match event {
        PolicyEvent::Created { .. } => {}
        PolicyEvent::Updated { spec } => view.spec = (**spec).clone(),
        PolicyEvent::Paused => view.paused = true,
        PolicyEvent::Resumed => view.paused = false,
        PolicyEvent::Deleted => {
            view.deleted = true;
            view.agents.clear();
        }
        PolicyEvent::AssignedToAgent { agent } => view.assign(*agent),
        PolicyEvent::UnassignedFromAgent { agent } => view.unassign(*agent),
    }
    view.updated_at = envelope.at;
    view.revision += 1;
    view.version = seq;
    Ok(view)
}

fn corrupt_view(policy: PolicyId, reason: impl std::fmt::Display) -> ApplyError {
    ApplyError::corrupt(BY_ID, format!("policy {policy}: {reason}"))
}

impl Checkpointed<Policies> {
    /// The policy `id`, if the model has seen it (deleted or not).
    pub fn policy(&self, id: PolicyId) -> Result<Option<PolicyView>, ProjectionError> {
        let Some(bytes) = self.trees()[0].get(policy_key(id))? else {
            return Ok(None);
        };
        PolicyView::decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(BY_ID, format!("policy {id}: {e}")))
    }

    /// Every policy of every tenant that is not deleted, by id.
    pub fn all_live(&self) -> Result<Vec<PolicyView>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[0].iter() {
            let (_, bytes) = item?;
            let view = PolicyView::decode(&bytes).map_err(|e| corrupt(BY_ID, e.to_string()))?;
            if !view.deleted {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// `tenant`'s policies sorted by name (then id), deleted ones only if
    /// `include_deleted`.
    pub fn list(
        &self,
        tenant: &TenantId,
        include_deleted: bool,
    ) -> Result<Vec<PolicyView>, ProjectionError> {
        let prefix = tenant_prefix(tenant);
        let mut out = Vec::new();
        for key in self.trees()[1].scan_prefix(&prefix).keys() {
            let key = key?;
            let bytes = self.trees()[0]
                .get(&key[prefix.len()..])?
                .ok_or_else(|| corrupt(BY_TENANT, "a key names no stored policy"))?;
            let view = PolicyView::decode(&bytes).map_err(|e| corrupt(BY_ID, e.to_string()))?;
            if include_deleted || !view.deleted {
                out.push(view);
            }
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}

fn corrupt(tree: &str, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: Policies::NAME,
        tree: tree.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
