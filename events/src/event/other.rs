//! Events of the tenant, agent, policy and repository aggregates.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::snapshot::SnapshotInfo;
use crate::ids::{AgentId, TaskId, TokenId};
use crate::policy::PolicySpec;
use crate::settings::AgentSettings;

/// What an API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Read and change everything of the tenant.
    Admin,
    /// Read everything of the tenant, change nothing.
    ReadOnly,
    /// Register agents, nothing else.
    Enroll,
}

/// Something that happened to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantEvent {
    Created {
        name: String,
    },
    /// A token was issued. Only its SHA-256 hash is recorded; the token itself was shown
    /// once to whoever asked for it.
    TokenIssued {
        token: TokenId,
        role: Role,
        label: String,
        sha256: [u8; 32],
    },
    TokenRevoked {
        token: TokenId,
    },
}

/// Something that happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentEvent {
    Registered {
        name: String,
        hostname: String,
        settings: AgentSettings,
    },
    SettingsChanged {
        settings: AgentSettings,
    },
    /// A heartbeat arrived from an agent that was offline (or never seen).
    CameOnline {
        agent_version: String,
        restic_version: String,
    },
    /// No heartbeat arrived within the lease.
    WentOffline {
        #[serde(with = "chrono::serde::ts_microseconds")]
        last_seen: DateTime<Utc>,
    },
    /// The agent is retired: it gets no more work.
    Decommissioned,
    /// The NATS public key (an nkey, `U…`) the agent connects with: the control plane
    /// renders a server authorization block for it, limited to the agent's own subjects.
    /// It replaces any earlier key. The key's seed never leaves the agent.
    KeyAuthorized {
        nkey: String,
    },
}

/// Something that happened to a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyEvent {
    Created { spec: Box<PolicySpec> },
    Updated { spec: Box<PolicySpec> },
    Paused,
    Resumed,
    Deleted,
    AssignedToAgent { agent: AgentId },
    UnassignedFromAgent { agent: AgentId },
}

/// Something that happened to a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepoEvent {
    /// Repeated network failures: the repository's tasks are held until `until`, then one
    /// probe task is let through.
    CircuitOpened {
        #[serde(with = "chrono::serde::ts_microseconds")]
        until: DateTime<Utc>,
        failures: u32,
    },
    /// A probe succeeded: tasks flow again.
    CircuitClosed,
    /// A listing (one part of it) an agent reported changed the repository's snapshot
    /// inventory: `added` are new in the part's range, `removed` are gone from it. Written
    /// only when something changed; a large change is cut into several events.
    SnapshotsChanged {
        /// The task whose run listed the repository.
        task: TaskId,
        agent: AgentId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        listed_at: DateTime<Utc>,
        added: Vec<SnapshotInfo>,
        removed: Vec<SnapshotInfo>,
    },
}
