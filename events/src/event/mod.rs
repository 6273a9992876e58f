//! The event catalogue: everything that can happen, named in the past tense.
//!
//! The wire format is postcard, which is not self-describing: variants and fields are only
//! ever appended, never reordered or removed (golden files in `tests/golden` pin them).

mod hook;
mod notify;
mod other;
mod snapshot;
mod task;

use serde::{Deserialize, Serialize};

pub use hook::{HookOutcome, HookRun, MAX_HOOK_OUTPUT};
pub use notify::{AssignmentEvent, Message, Named, NotificationEvent, RuleEvent};
pub use other::{AgentEvent, PolicyEvent, RepoEvent, Role, TenantEvent};
pub use snapshot::{
    MAX_RESTORE_INCLUDES, MAX_SNAPSHOT_LIST, Overwrite, RestoreRequest, SnapshotInfo, SnapshotKey,
    SnapshotListing, TaskRequest, is_snapshot_id,
};
pub use task::{
    BackupSummary, ErrorClass, ExhaustedReason, InterruptedAttempt, LostReason, MAX_ERROR_SAMPLES,
    MAX_REMOVED_IDS, PruneSummary, RefreshSummary, RestoreSummary, RetentionOutcome, RunDetail,
    RunSummary, SkipReason, TaskError, TaskEvent, UnlockOutcome, repo_of,
};

use crate::ids::{
    AgentId, AssignmentId, NotificationId, PolicyId, RepoId, RuleId, TaskId, TenantId,
};
use crate::subject::{AggregateId, EventSubject};

/// One event, naming the aggregate it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The tenant aggregate's id is the envelope's tenant.
    Tenant(TenantEvent),
    Agent {
        agent: AgentId,
        event: AgentEvent,
    },
    Policy {
        policy: PolicyId,
        event: PolicyEvent,
    },
    Task {
        task: TaskId,
        event: TaskEvent,
    },
    Repo {
        repo: RepoId,
        event: RepoEvent,
    },
    /// A notification rule (written by the API).
    Rule {
        rule: RuleId,
        event: RuleEvent,
    },
    /// One notification (written by the notifier).
    Notification {
        notification: NotificationId,
        event: NotificationEvent,
    },
    /// A policy on an agent: overdue and caught up (written by the notifier).
    Assignment {
        assignment: AssignmentId,
        event: AssignmentEvent,
    },
}

impl Event {
    /// The aggregate this event belongs to.
    pub fn aggregate(&self, tenant: &TenantId) -> AggregateId {
        match self {
            Event::Tenant(_) => AggregateId::Tenant(tenant.clone()),
            Event::Agent { agent, .. } => AggregateId::Agent(*agent),
            Event::Policy { policy, .. } => AggregateId::Policy(*policy),
            Event::Task { task, .. } => AggregateId::Task(*task),
            Event::Repo { repo, .. } => AggregateId::Repo(*repo),
            Event::Rule { rule, .. } => AggregateId::Rule(*rule),
            Event::Notification { notification, .. } => AggregateId::Notification(*notification),
            Event::Assignment { assignment, .. } => AggregateId::Assignment(*assignment),
        }
    }

    /// The subject this event is stored under.
    pub fn subject(&self, tenant: &TenantId) -> EventSubject {
        EventSubject {
            tenant: tenant.clone(),
            aggregate: self.aggregate(tenant),
        }
    }

    /// The oldest wire schema that holds this event: 1, or 2 for a policy spec with hooks.
    pub fn schema(&self) -> u16 {
        let spec = match self {
            Event::Policy {
                event: PolicyEvent::Created { spec } | PolicyEvent::Updated { spec },
                ..
            }
            | Event::Task {
                event: TaskEvent::Scheduled { spec, .. } | TaskEvent::Requested { spec, .. },
                ..
            } => spec,
            _ => return crate::envelope::SCHEMA_VERSION,
        };
        spec.schema()
    }

    /// The event's type, as named in the `Fleet-Event-Type` header.
    pub fn event_type(&self) -> EventType {
        use EventType as T;
        match self {
            Event::Tenant(e) => match e {
                TenantEvent::Created { .. } => T::TenantCreated,
                TenantEvent::TokenIssued { .. } => T::TenantTokenIssued,
                TenantEvent::TokenRevoked { .. } => T::TenantTokenRevoked,
            },
            Event::Agent { event, .. } => match event {
                AgentEvent::Registered { .. } => T::AgentRegistered,
                AgentEvent::SettingsChanged { .. } => T::AgentSettingsChanged,
                AgentEvent::CameOnline { .. } => T::AgentCameOnline,
                AgentEvent::WentOffline { .. } => T::AgentWentOffline,
                AgentEvent::Decommissioned => T::AgentDecommissioned,
                AgentEvent::KeyAuthorized { .. } => T::AgentKeyAuthorized,
            },
            Event::Policy { event, .. } => match event {
                PolicyEvent::Created { .. } => T::PolicyCreated,
                PolicyEvent::Updated { .. } => T::PolicyUpdated,
                PolicyEvent::Paused => T::PolicyPaused,
                PolicyEvent::Resumed => T::PolicyResumed,
                PolicyEvent::Deleted => T::PolicyDeleted,
                PolicyEvent::AssignedToAgent { .. } => T::PolicyAssigned,
                PolicyEvent::UnassignedFromAgent { .. } => T::PolicyUnassigned,
            },
            Event::Task { event, .. } => event.event_type(),
            Event::Repo { event, .. } => match event {
                RepoEvent::CircuitOpened { .. } => T::RepoCircuitOpened,
                RepoEvent::CircuitClosed => T::RepoCircuitClosed,
                RepoEvent::SnapshotsChanged { .. } => T::RepoSnapshotsChanged,
            },
            Event::Rule { event, .. } => match event {
                RuleEvent::Defined { .. } => T::RuleDefined,
                RuleEvent::Deleted => T::RuleDeleted,
                RuleEvent::TestRequested { .. } => T::RuleTestRequested,
            },
            Event::Notification { event, .. } => match event {
                NotificationEvent::Triggered { .. } => T::NotificationTriggered,
                NotificationEvent::Sending { .. } => T::NotificationSending,
                NotificationEvent::Delivered { .. } => T::NotificationDelivered,
                NotificationEvent::Failed { .. } => T::NotificationFailed,
                NotificationEvent::DeadLettered { .. } => T::NotificationDeadLettered,
            },
            Event::Assignment { event, .. } => match event {
                AssignmentEvent::Overdue { .. } => T::AssignmentOverdue,
                AssignmentEvent::CaughtUp { .. } => T::AssignmentCaughtUp,
            },
        }
    }
}

macro_rules! event_types {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// The type of an event, without its data: what headers and metrics name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType { $($variant),+ }

        impl EventType {
            /// Every event type.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            /// The dotted name, such as `task.scheduled`.
            pub fn name(self) -> &'static str {
                match self { $(EventType::$variant => $name),+ }
            }

            /// The type with this dotted name.
            pub fn from_name(name: &str) -> Option<EventType> {
                match name { $($name => Some(EventType::$variant),)+ _ => None }
            }
        }
    };
}

event_types! {
    TenantCreated => "tenant.created",
    TenantTokenIssued => "tenant.token_issued",
    TenantTokenRevoked => "tenant.token_revoked",
    AgentRegistered => "agent.registered",
    AgentSettingsChanged => "agent.settings_changed",
    AgentCameOnline => "agent.came_online",
    AgentWentOffline => "agent.went_offline",
    AgentDecommissioned => "agent.decommissioned",
    PolicyCreated => "policy.created",
    PolicyUpdated => "policy.updated",
    PolicyPaused => "policy.paused",
    PolicyResumed => "policy.resumed",
    PolicyDeleted => "policy.deleted",
    PolicyAssigned => "policy.assigned",
    PolicyUnassigned => "policy.unassigned",
    TaskScheduled => "task.scheduled",
    TaskSkipped => "task.skipped",
    TaskDispatched => "task.dispatched",
    TaskAcknowledged => "task.acknowledged",
    TaskStarted => "task.started",
    TaskSucceeded => "task.succeeded",
    TaskFailed => "task.failed",
    TaskRetryScheduled => "task.retry_scheduled",
    TaskRetryDue => "task.retry_due",
    TaskExhausted => "task.exhausted",
    TaskCancelled => "task.cancelled",
    TaskLost => "task.lost",
    RepoCircuitOpened => "repo.circuit_opened",
    RepoCircuitClosed => "repo.circuit_closed",
    AgentKeyAuthorized => "agent.key_authorized",
    TaskUnlockRan => "task.unlock_ran",
    TaskRetentionApplied => "task.retention_applied",
    TaskRequested => "task.requested",
    RepoSnapshotsChanged => "repo.snapshots_changed",
    RuleDefined => "rule.defined",
    RuleDeleted => "rule.deleted",
    RuleTestRequested => "rule.test_requested",
    NotificationTriggered => "notification.triggered",
    NotificationSending => "notification.sending",
    NotificationDelivered => "notification.delivered",
    NotificationFailed => "notification.failed",
    NotificationDeadLettered => "notification.dead_lettered",
    AssignmentOverdue => "assignment.overdue",
    AssignmentCaughtUp => "assignment.caught_up",
    TaskHookRan => "task.hook_ran",
}
