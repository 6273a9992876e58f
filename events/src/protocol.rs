//! The agent protocol: what the control plane sends an agent on `fleet.agent.<id>.tasks`
//! and what an agent sends back on `.reports` and `.heartbeat`.
//!
//! Like events, every message is postcard with the schema version first, at most
//! [`crate::codec::MAX_EVENT_BYTES`]; variants and fields are only ever appended. A run
//! command is written in schema 1 unless its policy has hooks (schema 2), so agents that
//! read only schema 1 keep running every task without hooks and park the others.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, Wire, decode_versioned, encode_in};
use crate::envelope::SCHEMA_VERSION;
use crate::event::{
    HookRun, InterruptedAttempt, RetentionOutcome, RunSummary, SnapshotListing, TaskError,
    TaskRequest, UnlockOutcome,
};
use crate::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId};
use crate::policy::{PolicySpec, TaskKind};

/// Control plane to agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCommand {
    pub schema: u16,
    pub command: Command,
}

/// What the agent is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Run attempt `order.attempt` of a task.
    Run(TaskOrder),
    /// Stop the attempt if it runs, and do not start it if it has not.
    Cancel {
        task: TaskId,
        attempt: u32,
        reason: String,
    },
    /// Run attempt `order.attempt` of a task an operator asked for (a restore or an
    /// inventory refresh): `order.spec` names the repository and its secret, `request` what
    /// to do. An agent too old to know this variant parks the command.
    RunRequested {
        order: TaskOrder,
        request: TaskRequest,
    },
}

/// One attempt of a task, with everything the agent needs to run it except secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOrder {
    pub tenant: TenantId,
    pub task: TaskId,
    pub attempt: u32,
    pub policy: PolicyId,
    pub spec: Box<PolicySpec>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub dispatched_at: DateTime<Utc>,
}

impl Command {
    /// The command that runs `order`: [`Command::Run`] for a scheduled task,
    /// [`Command::RunRequested`] for one an operator asked for.
    pub fn run(order: TaskOrder, request: Option<TaskRequest>) -> Self {
        match request {
            None => Command::Run(order),
            Some(request) => Command::RunRequested { order, request },
        }
    }
}

impl Command {
    /// The oldest schema that holds the command: 2 for a run whose policy has hooks, else 1.
    pub fn schema(&self) -> u16 {
        match self {
            Command::Run(order) | Command::RunRequested { order, .. } => order.spec.schema(),
            Command::Cancel { .. } => SCHEMA_VERSION,
        }
    }
}

impl AgentCommand {
    /// A command in the oldest schema that holds it ([`Command::schema`]).
    pub fn new(command: Command) -> Self {
        Self {
            schema: command.schema(),
            command,
        }
    }

    /// Encodes the command for the wire, in the schema it names; one naming a schema too
    /// old for its content (hooks in schema 1) is refused.
    pub fn to_wire(&self) -> Result<Vec<u8>, CodecError> {
        encode_in(self.schema, self.command.schema(), self)
    }

    /// The msg id that makes re-publishing this command idempotent.
    pub fn msg_id(&self) -> String {
        match &self.command {
            Command::Run(order) | Command::RunRequested { order, .. } => {
                format!("run:{}:{}", order.task, order.attempt)
            }
            Command::Cancel { task, attempt, .. } => format!("cancel:{task}:{attempt}"),
        }
    }
}

/// Agent to control plane: what happened to one attempt of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    pub schema: u16,
    pub agent: AgentId,
    pub tenant: TenantId,
    pub task: TaskId,
    pub attempt: u32,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub status: ReportStatus,
}

/// The news in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    /// The agent recorded the task in its local state.
    Acknowledged,
    /// restic started.
    Started,
    Succeeded(RunSummary),
    Failed(TaskError),
    /// The agent restarted while the attempt ran; the run's outcome is unknown.
    Interrupted,
    /// Before running the attempt, the agent ran `restic unlock` (stale locks only) on its
    /// repository, because the `interrupted` attempts were running there when it stopped.
    UnlockRan {
        interrupted: Vec<InterruptedAttempt>,
        outcome: UnlockOutcome,
    },
    /// After the attempt's backup succeeded, the agent ran `restic forget` (no `--prune`)
    /// with the policy's retention on the policy's own snapshots; sent before `Succeeded`.
    /// `removed_ids` holds at most [`crate::event::MAX_REMOVED_IDS`] short ids.
    RetentionApplied {
        kept: u64,
        removed: u64,
        removed_ids: Vec<String>,
        outcome: RetentionOutcome,
    },
    /// The agent listed the repository's snapshots (`restic snapshots`) after a backup,
    /// a prune or for a refresh; one report per part of the listing, each complete for its
    /// range of snapshots. Sent before `Succeeded`.
    SnapshotsListed {
        repo: RepoId,
        listing: SnapshotListing,
    },
    /// The agent ran one of the policy's hooks; sent before the attempt's final report.
    HookRan(HookRun),
}

impl ReportStatus {
    /// Every value of [`ReportStatus::name`].
    pub const NAMES: [&'static str; 8] = [
        "acknowledged",
        "started",
        "succeeded",
        "failed",
        "interrupted",
        "unlock_ran",
        "retention_applied",
        "snapshots_listed",
    ];

    /// A short stable name, used in msg ids and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ReportStatus::Acknowledged => "acknowledged",
            ReportStatus::Started => "started",
            ReportStatus::Succeeded(_) => "succeeded",
            ReportStatus::Failed(_) => "failed",
            ReportStatus::Interrupted => "interrupted",
            ReportStatus::UnlockRan { .. } => "unlock_ran",
            ReportStatus::RetentionApplied { .. } => "retention_applied",
            ReportStatus::SnapshotsListed { .. } => "snapshots_listed",
            ReportStatus::HookRan(_) => "hook_ran",
        }
    }
}

impl AgentReport {
    /// The msg id that makes resending this report (from the agent's outbox) idempotent.
    pub fn msg_id(&self) -> String {
        let (task, attempt, name) = (self.task, self.attempt, self.status.name());
        match &self.status {
            ReportStatus::SnapshotsListed { listing, .. } => {
                format!("{task}:{attempt}:{name}:{}", listing.part)
            }
            ReportStatus::HookRan(hook) => {
                format!(
                    "{task}:{attempt}:{name}:{}:{}",
                    hook.stage.as_str(),
                    hook.name
                )
            }
            _ => format!("{task}:{attempt}:{name}"),
        }
    }
}

/// Tasks per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    pub backup: u16,
    pub check: u16,
    pub prune: u16,
    pub restore: u16,
    pub refresh: u16,
}

impl KindCounts {
    /// The count for `kind`.
    pub fn get(&self, kind: TaskKind) -> u16 {
        match kind {
            TaskKind::Backup => self.backup,
            TaskKind::Check => self.check,
            TaskKind::Prune => self.prune,
            TaskKind::Restore => self.restore,
            TaskKind::Refresh => self.refresh,
        }
    }

    /// The count for `kind`, to change.
    pub fn get_mut(&mut self, kind: TaskKind) -> &mut u16 {
        match kind {
            TaskKind::Backup => &mut self.backup,
            TaskKind::Check => &mut self.check,
            TaskKind::Prune => &mut self.prune,
            TaskKind::Restore => &mut self.restore,
            TaskKind::Refresh => &mut self.refresh,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> u32 {
        TaskKind::ALL.iter().map(|k| u32::from(self.get(*k))).sum()
    }
}

/// Agent to control plane: alive, and how loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub schema: u16,
    pub agent: AgentId,
    pub tenant: TenantId,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub running: KindCounts,
    /// Accepted but waiting for a free slot on the agent.
    pub queued: KindCounts,
    pub agent_version: String,
    pub restic_version: String,
    /// Reports not yet stored by JetStream.
    pub outbox_depth: u32,
    /// Seconds between this agent's heartbeats (its `heartbeatSecs`); 0 from agents that
    /// do not say (builds before it was sent). The control plane gives an agent at least
    /// three of them before it calls the agent offline, however short its own lease.
    pub every_secs: u16,
}

/// Agent to operators, on `fleet.agent.<id>.progress` (core NATS, never stored): restic's
/// latest status line for a running attempt, sent at most about once a second per task.
/// Counts and sizes only, never a file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub schema: u16,
    pub agent: AgentId,
    pub tenant: TenantId,
    pub task: TaskId,
    pub attempt: u32,
    pub kind: TaskKind,
    /// When restic printed it (the agent's clock).
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    /// restic's `percent_done` in hundredths of a percent, 0 to 10 000.
    pub done_bp: u16,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub seconds_elapsed: u64,
    /// restic's estimate, when it has one.
    pub seconds_remaining: Option<u64>,
    pub errors: u64,
}

impl Progress {
    /// The share done, 0.0 to 1.0.
    pub fn fraction(&self) -> f64 {
        f64::from(self.done_bp.min(10_000)) / 10_000.0
    }
}

crate::codec::impl_wire!(AgentReport => "report", Progress => "progress");

impl Wire for AgentCommand {
    const WHAT: &'static str = "command";
    fn from_wire(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_versioned(bytes)
    }
}

impl Heartbeat {
    /// Encodes the message for the wire.
    pub fn to_wire(&self) -> Result<Vec<u8>, CodecError> {
        crate::codec::encode_versioned(self)
    }
}

impl Wire for Heartbeat {
    const WHAT: &'static str = "heartbeat";
    /// Decodes a heartbeat, also in the layouts of agents that do not send their interval
    /// and of those that count only backup, check and prune (before restores and refreshes
    /// were kinds), so an agent not yet upgraded stays online.
    fn from_wire(bytes: &[u8]) -> Result<Self, CodecError> {
        decode_versioned::<Heartbeat>(bytes).or_else(|error| match error {
            CodecError::Malformed(_) => decode_versioned::<legacy::UnpacedHeartbeat>(bytes)
                .map(Heartbeat::from)
                .or_else(|_| decode_versioned::<legacy::Heartbeat>(bytes).map(Heartbeat::from))
                .map_err(|_| error),
            other => Err(other),
        })
    }
}

/// Layouts of earlier builds, read for compatibility.
mod legacy {
    use chrono::{DateTime, Utc};
    use serde::Deserialize;

    use crate::ids::{AgentId, TenantId};

    /// A heartbeat without the agent's interval (`every_secs`).
    #[derive(Deserialize)]
    pub struct UnpacedHeartbeat {
        schema: u16,
        agent: AgentId,
        tenant: TenantId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        at: DateTime<Utc>,
        running: super::KindCounts,
        queued: super::KindCounts,
        agent_version: String,
        restic_version: String,
        outbox_depth: u32,
    }

    impl From<UnpacedHeartbeat> for super::Heartbeat {
        fn from(b: UnpacedHeartbeat) -> Self {
            super::Heartbeat {
                schema: b.schema,
                agent: b.agent,
                tenant: b.tenant,
                at: b.at,
                running: b.running,
                queued: b.queued,
                agent_version: b.agent_version,
                restic_version: b.restic_version,
                outbox_depth: b.outbox_depth,
                every_secs: 0,
            }
        }
    }

    /// Kind counts before restore and refresh.
    #[derive(Deserialize)]
    pub struct KindCounts {
        backup: u16,
        check: u16,
        prune: u16,
    }

    /// A heartbeat with [`KindCounts`] of three kinds.
    #[derive(Deserialize)]
    pub struct Heartbeat {
        schema: u16,
        agent: AgentId,
        tenant: TenantId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        at: DateTime<Utc>,
        running: KindCounts,
        queued: KindCounts,
        agent_version: String,
        restic_version: String,
        outbox_depth: u32,
    }

    impl From<KindCounts> for super::KindCounts {
        fn from(c: KindCounts) -> Self {
            super::KindCounts {
                backup: c.backup,
                check: c.check,
                prune: c.prune,
                ..super::KindCounts::default()
            }
        }
    }

    impl From<Heartbeat> for super::Heartbeat {
        fn from(b: Heartbeat) -> Self {
            super::Heartbeat {
                schema: b.schema,
                agent: b.agent,
                tenant: b.tenant,
                at: b.at,
                running: b.running.into(),
                queued: b.queued.into(),
                agent_version: b.agent_version,
                restic_version: b.restic_version,
                outbox_depth: b.outbox_depth,
                every_secs: 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Wire;
    use crate::event::{ErrorClass, RunDetail};
    use crate::samples;

    fn report(status: ReportStatus) -> AgentReport {
        AgentReport {
            schema: SCHEMA_VERSION,
            agent: samples::AGENT,
            tenant: samples::tenant(),
            task: samples::TASK,
            attempt: 2,
            at: samples::at(5),
            status,
        }
    }

    #[test]
    fn messages_round_trip() {
        let run = AgentCommand::new(Command::Run(TaskOrder {
            tenant: samples::tenant(),
            task: samples::TASK,
            attempt: 1,
            policy: samples::POLICY,
            spec: Box::new(samples::policy_spec()),
            dispatched_at: samples::at(3),
        }));
        assert_eq!(
            AgentCommand::from_wire(&run.to_wire().unwrap()),
            Ok(run.clone())
        );
        assert_eq!(run.msg_id(), format!("run:{}:1", samples::TASK));

        for status in [
            ReportStatus::Acknowledged,
            ReportStatus::Started,
            ReportStatus::Succeeded(RunSummary {
                kind: TaskKind::Check,
                duration_ms: 10,
                detail: RunDetail::Check,
            }),
            ReportStatus::Failed(TaskError::new(ErrorClass::Auth, "wrong password", Some(1))),
            ReportStatus::Interrupted,
            ReportStatus::UnlockRan {
                interrupted: samples::interrupted(),
                outcome: samples::unlock_failed(),
            },
            samples::retention_report(samples::retention_failed()),
        ] {
            let r = report(status);
            assert_eq!(AgentReport::from_wire(&r.to_wire().unwrap()), Ok(r));
        }

        let beat = Heartbeat {
            schema: SCHEMA_VERSION,
            agent: samples::AGENT,
            tenant: samples::tenant(),
            at: samples::at(9),
            running: KindCounts {
                backup: 1,
                ..KindCounts::default()
            },
            queued: KindCounts::default(),
            agent_version: "0.1.0".into(),
            restic_version: "0.14.0".into(),
            outbox_depth: 0,
            every_secs: 300,
        };
        assert_eq!(
            Heartbeat::from_wire(&beat.to_wire().unwrap()),
            Ok(beat.clone())
        );
        assert_eq!(beat.running.total(), 1);
    }

    #[test]
    fn garbage_and_other_messages_are_refused() {
        let mut truncated = report(ReportStatus::Started).to_wire().unwrap();
        truncated.pop();
        assert!(AgentReport::from_wire(&truncated).is_err());
        assert!(AgentReport::from_wire(&[0xff, 0xff, 0xff]).is_err());
        assert!(AgentReport::from_wire(&[]).is_err());
    }
}
