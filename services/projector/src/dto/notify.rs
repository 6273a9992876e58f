//! The JSON shapes of notification rules, notifications and overdue assignments.

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, EventId, NotificationId, PolicyId, RuleId};
use fleet_events::notify::{RuleSpec, Trigger};
use fleet_projections::{NotificationView, Overdue, RuleView};
use serde::Serialize;

/// One live notification rule.
#[derive(Debug, Clone, Serialize)]
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

impl From<&RuleView> for Rule {
    fn from(view: &RuleView) -> Self {
        Rule {
            id: view.id,
            spec: view.spec.clone(),
            triggers: view.spec.triggers().to_vec(),
            version: view.version,
            defined_at: view.defined_at,
            updated_at: view.updated_at,
            tested_at: view.tested_at,
            tested_by: view.tested_by.clone(),
        }
    }
}

/// One notification and how its delivery went.
#[derive(Debug, Clone, Serialize)]
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
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<&NotificationView> for Notification {
    fn from(view: &NotificationView) -> Self {
        Notification {
            id: view.id,
            rule: view.rule,
            rule_name: view.rule_name.clone(),
            source: view.source,
            trigger: view.trigger,
            event_type: view.event_type.clone(),
            title: view.title.clone(),
            text: view.text.clone(),
            at: view.at,
            state: view.state.as_str(),
            attempts: view.attempts,
            last_error: view.last_error.clone(),
            last_status: view.last_status,
            next_attempt_at: view.next_attempt_at,
            delivered_at: view.delivered_at,
            updated_at: view.updated_at,
        }
    }
}

/// A policy overdue on one of its agents (in a policy's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverdueAgent {
    pub agent: AgentId,
    /// No success since then.
    pub since: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
}

/// A policy overdue on an agent (in an agent's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverduePolicy {
    pub policy: PolicyId,
    pub since: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
}

/// Of `overdue`, the agents among `assigned`, by agent.
pub fn overdue_agents(overdue: &[Overdue], assigned: &[AgentId]) -> Vec<OverdueAgent> {
    let mut out: Vec<OverdueAgent> = overdue
        .iter()
        .filter(|o| assigned.contains(&o.agent))
        .map(|o| OverdueAgent {
            agent: o.agent,
            since: o.since,
            last_success: o.last_success,
        })
        .collect();
    out.sort_by_key(|o| o.agent);
    out
}
