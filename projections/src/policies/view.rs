//! [`PolicyView`]: one policy as the policy read model stores it, its next fire times,
//! and the keys of the policy trees.
//!
//! The view is postcard, which is not self-describing: fields are only ever appended, and
//! any change to what is stored bumps `Policies::VERSION`, so a database written by an
//! older build is rebuilt rather than misread.

use chrono::serde::ts_microseconds;
use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, PolicyId, TenantId};
use fleet_events::policy::PolicySpec;
use serde::{Deserialize, Serialize};

/// The most fire times [`PolicyView::next_fires`] returns.
pub const MAX_NEXT_FIRES: usize = 1000;

/// One policy (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// The tenant whose subject the policy's events are stored under.
    pub tenant: TenantId,
    pub id: PolicyId,
    /// The spec as last created or updated.
    pub spec: PolicySpec,
    pub paused: bool,
    /// A deleted policy is kept, with no agents; it accepts no more events but a new
    /// creation (of the same name, hence the same id).
    pub deleted: bool,
    /// The agents it is assigned to, sorted.
    pub agents: Vec<AgentId>,
    /// When it was created.
    #[serde(with = "ts_microseconds")]
    pub created_at: DateTime<Utc>,
    /// When its last event happened.
    #[serde(with = "ts_microseconds")]
    pub updated_at: DateTime<Utc>,
    /// How many of its events the model applied: 1 after its creation.
    pub revision: u64,
    /// The stream sequence of its last event: the expected sequence a writer sends to
    /// change it only if nothing changed it since (`If-Match` in the API).
    pub version: u64,
}

impl PolicyView {
    /// A policy just created.
    pub fn created(
        tenant: TenantId,
        id: PolicyId,
        spec: PolicySpec,
        at: DateTime<Utc>,
        version: u64,
    ) -> PolicyView {
        PolicyView {
            tenant,
            id,
            spec,
            paused: false,
            deleted: false,
            agents: Vec::new(),
            created_at: at,
            updated_at: at,
            revision: 1,
            version,
        }
    }

    /// Adds `agent` to the assigned agents, keeping them sorted and unique.
    pub(crate) fn assign(&mut self, agent: AgentId) {
        if let Err(at) = self.agents.binary_search(&agent) {
            self.agents.insert(at, agent);
        }
    }

    /// Removes `agent` from the assigned agents.
    pub(crate) fn unassign(&mut self, agent: AgentId) {
        if let Ok(at) = self.agents.binary_search(&agent) {
            self.agents.remove(at);
        }
    }

    /// The next `n` (at most [`MAX_NEXT_FIRES`]) times the schedule fires strictly after
    /// `after`, without the per-agent jitter. Empty for a paused or deleted policy, or one
    /// whose schedule does not compile.
    pub fn next_fires(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        if self.paused || self.deleted {
            return Vec::new();
        }
        match self.spec.schedule.compile() {
            Ok(compiled) => compiled
                .fires_after(after)
                .take(n.min(MAX_NEXT_FIRES))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The `policies.by_id` key: the policy's UUID bytes.
pub(crate) fn policy_key(policy: PolicyId) -> [u8; 16] {
    *policy.uuid().as_bytes()
}

/// The prefix of a tenant's `policies.by_tenant` keys: the tenant, a zero byte (tenant
/// slugs have none).
pub(crate) fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

/// The `policies.by_tenant` key: tenant, zero byte, policy UUID.
pub(crate) fn tenant_key(tenant: &TenantId, policy: PolicyId) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(policy.uuid().as_bytes());
    key
}
