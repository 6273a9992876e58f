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
    /// Written by: CLI `fleet tenant create` + demo, via
    /// `services/identity/src/tenant/mod.rs` (`tenant_cmd.rs`, `demo.rs`); msg id
    /// `tenant-created:{tenant}`.
    Created { name: String },
    /// A token was issued. Only its SHA-256 hash is recorded; the token itself was shown
    /// once to whoever asked for it.
    ///
    /// Written by: CLI `fleet tenant` (create/token) + demo, via
    /// `services/identity/src/tenant/mod.rs` issue; msg id `token-issued:{token}`.
    TokenIssued {
        token: TokenId,
        role: Role,
        label: String,
        sha256: [u8; 32],
    },
    /// Written by: CLI `fleet tenant revoke`, via `services/identity/src/tenant/mod.rs`
    /// revoke; msg id `token-revoked:{token}`.
    TokenRevoked { token: TokenId },
}

/// Something that happened to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentEvent {
    /// Written by: registrar (`services/identity/src/enroll/judge.rs`, appended in
    /// `identity/src/enroll/mod.rs`); API preregister (`services/command/src/agent.rs`);
    /// msg id registrar `register:{agent}`; API: event id (`command/src/lib.rs`
    /// append_chain).
    Registered {
        name: String,
        hostname: String,
        settings: AgentSettings,
    },
    /// Written by: API command (`services/command/src/agent.rs` change_settings); msg id
    /// event id (`command/src/lib.rs` append_chain).
    SettingsChanged { settings: AgentSettings },
    /// A heartbeat arrived from an agent that was offline (or never seen).
    ///
    /// Written by: dispatcher (`services/dispatcher/src/service.rs` came_online); msg id
    /// `online:{agent}:{offline_since µs}` or `heard:{agent}` (`came_online_key`,
    /// `dispatcher/src/view.rs`).
    CameOnline {
        agent_version: String,
        restic_version: String,
    },
    /// No heartbeat arrived within the lease.
    ///
    /// Written by: dispatcher (`services/dispatcher/src/liveness.rs`, appended in
    /// `service.rs`); msg id `offline:{agent}:{last_seen µs}`.
    WentOffline {
        #[serde(with = "chrono::serde::ts_microseconds")]
        last_seen: DateTime<Utc>,
    },
    /// The agent is retired: it gets no more work.
    ///
    /// Written by: API command (`services/command/src/agent.rs` decommission); msg id event
    /// id (`command/src/lib.rs` append_chain).
    Decommissioned,
    /// The NATS public key (an nkey, `U…`) the agent connects with: the control plane
    /// renders a server authorization block for it, limited to the agent's own subjects.
    /// It replaces any earlier key. The key's seed never leaves the agent.
    ///
    /// Written by: registrar (`services/identity/src/enroll/judge.rs`, appended in
    /// `identity/src/enroll/mod.rs`); msg id `key:{agent}:{nkey}`.
    KeyAuthorized { nkey: String },
}

/// Something that happened to a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyEvent {
    /// Written by: API command (`services/command/src/policy.rs`, via
    /// `api/src/write_policy.rs`); demo (`services/src/demo.rs`, the same command); msg id
    /// event id (`command/src/lib.rs` append_chain).
    Created { spec: Box<PolicySpec> },
    /// Written by: API command (`services/command/src/policy.rs`); msg id event id
    /// (`command/src/lib.rs` append_chain).
    Updated { spec: Box<PolicySpec> },
    /// Written by: API command (`services/command/src/policy.rs`); msg id event id
    /// (`command/src/lib.rs` append_chain).
    Paused,
    /// Written by: API command (`services/command/src/policy.rs`); msg id event id
    /// (`command/src/lib.rs` append_chain).
    Resumed,
    /// Written by: API command (`services/command/src/policy.rs`); msg id event id
    /// (`command/src/lib.rs` append_chain).
    Deleted,
    /// Written by: API command (`services/command/src/policy.rs`); demo
    /// (`services/src/demo.rs`, the same command); msg id event id (`command/src/lib.rs`
    /// append_chain).
    AssignedToAgent { agent: AgentId },
    /// Written by: API command (`services/command/src/policy.rs`); msg id event id
    /// (`command/src/lib.rs` append_chain).
    UnassignedFromAgent { agent: AgentId },
}

/// Something that happened to a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepoEvent {
    /// Repeated network failures: the repository's tasks are held until `until`, then one
    /// probe task is let through.
    ///
    /// Written by: retry enforcer (`services/retry/src/circuit.rs` Breaker::decide,
    /// `retry/src/enforcer/decide.rs`); msg id `circuit:{tenant}:{repo}:{seq}`.
    CircuitOpened {
        #[serde(with = "chrono::serde::ts_microseconds")]
        until: DateTime<Utc>,
        failures: u32,
    },
    /// A probe succeeded: tasks flow again.
    ///
    /// Written by: retry enforcer (`services/retry/src/circuit.rs` Breaker::decide,
    /// `retry/src/enforcer/decide.rs`); msg id `circuit:{tenant}:{repo}:{seq}`.
    CircuitClosed,
    /// A listing (one part of it) an agent reported changed the repository's snapshot
    /// inventory: `added` are new in the part's range, `removed` are gone from it. Written
    /// only when something changed; a large change is cut into several events.
    ///
    /// Written by: intake (`services/intake/src/inventory.rs` decide, appended in
    /// `intake/src/snapshots.rs`); msg id
    /// `snapshots:{task}:{attempt}:{part}:{n}:{last_seq}`.
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
