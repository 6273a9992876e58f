//! Events of notification rules, of notifications and of assignments (a policy on an
//! agent: where "overdue" is judged). All are written by the control plane: rules by the
//! API, notifications and overdue conditions by the notifier.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, EventId, PolicyId, RepoId, RuleId, TaskId};
use crate::notify::{RuleSpec, Trigger};

/// Something that happened to a notification rule (written by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleEvent {
    /// The rule was created or replaced.
    ///
    /// Written by: API command (`services/command/src/rule.rs`, via
    /// `api/src/write_rule.rs`); msg id event id (`command/src/lib.rs` append_chain).
    Defined { spec: Box<RuleSpec> },
    /// Written by: API command (`services/command/src/rule.rs`); msg id event id
    /// (`command/src/lib.rs` append_chain).
    Deleted,
    /// An operator asked for a test notification through this rule.
    ///
    /// Written by: API command (`services/command/src/rule.rs`); msg id event id
    /// (`command/src/lib.rs` append_chain).
    TestRequested {
        /// Who asked (the token's name).
        by: String,
    },
}

/// What a notification says, rendered once when it is triggered so every attempt sends
/// the same words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What happened; `None` for a test an operator asked for.
    pub trigger: Option<Trigger>,
    /// The event's type name, such as `task.exhausted`.
    pub event_type: String,
    /// When the event happened.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    /// One line: "backup of nightly on web-1 failed for good".
    pub title: String,
    /// More lines: the error, the next step.
    pub text: String,
    pub policy: Option<Named<PolicyId>>,
    pub agent: Option<Named<AgentId>>,
    pub task: Option<TaskId>,
    pub repo: Option<RepoId>,
}

/// An id with the name it had when the message was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named<T> {
    pub id: T,
    pub name: String,
}

/// Something that happened to one notification (one rule telling about one event),
/// written by the notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationEvent {
    /// A rule matched an event: the notification exists and will be delivered. Appended
    /// with expected sequence 0 on the notification's subject, so one event notifies once
    /// per rule, whichever notifier instance sees it.
    ///
    /// Written by: notifier (`services/notifier/src/core.rs` due, appended in
    /// `notifier/src/service.rs`); msg id `notify:{notification}`.
    Triggered {
        rule: RuleId,
        /// The event it tells about.
        source: EventId,
        message: Box<Message>,
    },
    /// The notifier claims an attempt before it sends it (expected sequence: of several
    /// instances only one sends it).
    ///
    /// Written by: notifier (`services/notifier/src/core.rs` note_due); msg id
    /// `notify-send:{notification}:{attempt}`.
    Sending { attempt: u32 },
    /// The target accepted it (a 2xx status).
    ///
    /// Written by: notifier (`services/notifier/src/core.rs` finished/outcome_event); msg
    /// id `notify-outcome:{notification}:{attempt}`.
    Delivered { attempt: u32, status: u16 },
    /// The attempt failed; the next one is due at `retry_at`.
    ///
    /// Written by: notifier (`services/notifier/src/core.rs` outcome_event); msg id
    /// `notify-outcome:{notification}:{attempt}` or
    /// `notify-abandoned:{notification}:{attempt}`.
    Failed {
        attempt: u32,
        error: String,
        #[serde(with = "chrono::serde::ts_microseconds")]
        retry_at: DateTime<Utc>,
    },
    /// The rule's retry budget is spent: no more attempts.
    ///
    /// Written by: notifier (`services/notifier/src/core.rs`); msg id
    /// `notify-outcome:{id}:{attempt}`, `notify-abandoned:{id}:{attempt}`, or
    /// `notify-dead:{id}` (rule deleted).
    DeadLettered { attempts: u32, error: String },
}

/// Something that happened to an assignment (a policy on an agent), written by the
/// notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignmentEvent {
    /// No success since `due`: the second scheduled fire after the last success (or after
    /// the assignment) has come, so at least one whole period went by without a backup.
    ///
    /// Written by: notifier (`services/notifier/src/core.rs` watch_due); msg id
    /// `overdue:{assignment}:{due µs}`.
    Overdue {
        policy: PolicyId,
        agent: AgentId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        due: DateTime<Utc>,
        #[serde(with = "chrono::serde::ts_microseconds_option")]
        last_success: Option<DateTime<Utc>>,
    },
    /// An overdue assignment succeeded again.
    ///
    /// Written by: notifier (`services/notifier/src/core.rs` watch_due); msg id
    /// `caught-up:{assignment}:{task}`.
    CaughtUp {
        policy: PolicyId,
        agent: AgentId,
        task: TaskId,
        #[serde(with = "chrono::serde::ts_microseconds")]
        succeeded_at: DateTime<Utc>,
    },
}
