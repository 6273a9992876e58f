//! The JSON shapes of notification rules, notifications and overdue assignments.

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, EventId, NotificationId, PolicyId, RuleId};
use fleet_events::notify::{RuleSpec, Trigger};
use serde::{Deserialize, Serialize};

/// One live notification rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub id: RuleId,
    pub spec: RuleSpec,
    /// What it reacts to: `spec.on`, or the default triggers when that is empty.
    pub triggers: Vec<Trigger>,
    /// The stream sequence of its last event.
    pub version: u64,
    pub defined_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last test notification asked for: when, and by whom.
    pub tested_at: Option<DateTime<Utc>>,
    pub tested_by: Option<String>,
}

/// One notification and how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: NotificationId,
    pub rule: RuleId,
    /// The rule's name when it was triggered.
    pub rule_name: Option<String>,
    /// The event it tells about.
    pub source: EventId,
    /// `None` for a test notification.
    pub trigger: Option<Trigger>,
    pub event_type: String,
    pub title: String,
    pub text: String,
    /// When the event it tells about happened.
    pub at: DateTime<Utc>,
    /// pending, sending, delivered, failed or deadLettered.
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A policy overdue on one of its agents (in a policy's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverdueAgent {
    pub agent: AgentId,
    /// No success since then.
    pub since: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
}

/// A policy overdue on an agent (in an agent's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverduePolicy {
    pub policy: PolicyId,
    pub since: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
}
