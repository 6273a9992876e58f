//! [`RepoView`]: one repository's circuit breaker as the repository read model stores it,
//! and the key of its tree.
//!
//! The view is postcard, which is not self-describing: fields and variants are only ever
//! appended, and any change to what is stored bumps `Repos::VERSION`, so a database
//! written by an older build is rebuilt rather than misread.

use chrono::serde::ts_microseconds;
use chrono::{DateTime, Utc};
use fleet_events::ids::{RepoId, TenantId};
use serde::{Deserialize, Serialize};

/// A repository's circuit breaker as the log last set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Circuit {
    /// Tasks flow.
    Closed,
    /// `failures` network failures in a row: tasks are held until `until`, then one
    /// probe task is let through.
    Open {
        #[serde(with = "ts_microseconds")]
        until: DateTime<Utc>,
        failures: u32,
    },
}

/// One repository of one tenant (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoView {
    pub tenant: TenantId,
    pub id: RepoId,
    pub circuit: Circuit,
    /// When the circuit last opened or closed.
    #[serde(with = "ts_microseconds")]
    pub changed_at: DateTime<Utc>,
}

impl RepoView {
    /// Whether the circuit holds the repository's tasks at `now`: open, and its cool-down
    /// not yet over (after it, a probe task may run).
    pub fn holds_tasks_at(&self, now: DateTime<Utc>) -> bool {
        matches!(self.circuit, Circuit::Open { until, .. } if now < until)
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The prefix of a tenant's `repos.circuits` keys: the tenant, a zero byte (tenant slugs
/// have none).
pub(crate) fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

/// The `repos.circuits` key: tenant, zero byte, repository UUID.
pub(crate) fn repo_key(tenant: &TenantId, repo: RepoId) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    key.extend_from_slice(repo.uuid().as_bytes());
    key
}
