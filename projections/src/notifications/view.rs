//! What the notification read model stores: [`RuleView`] (one live rule),
//! [`NotificationView`] (one notification and how its delivery went), [`Overdue`] (one
//! policy overdue on one agent), and the keys of its trees.
//!
//! Every stored struct is postcard, which is not self-describing: fields and variants are
//! only ever appended, and any change to what is stored bumps `Notifications::VERSION`, so
//! a database written by an older build is rebuilt rather than misread.

use chrono::serde::{ts_microseconds, ts_microseconds_option};
use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, EventId, NotificationId, PolicyId, RuleId, TenantId};
pub use fleet_events::notify::NotificationState;
use fleet_events::notify::{RuleSpec, Trigger};
use serde::{Deserialize, Serialize};

use crate::stored::tenant_prefix;

/// One live rule (postcard); a deleted rule is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub tenant: TenantId,
    pub id: RuleId,
    /// The spec as last defined.
    pub spec: RuleSpec,
    /// The stream sequence of its last event.
    pub version: u64,
    /// When it was first defined (since its last deletion, if any).
    #[serde(with = "ts_microseconds")]
    pub defined_at: DateTime<Utc>,
    /// When it was last defined (replaced).
    #[serde(with = "ts_microseconds")]
    pub updated_at: DateTime<Utc>,
    /// The last test an operator asked for: when, and who.
    #[serde(with = "ts_microseconds_option")]
    pub tested_at: Option<DateTime<Utc>>,
    pub tested_by: Option<String>,
}

/// One notification (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationView {
    pub tenant: TenantId,
    pub id: NotificationId,
    pub rule: RuleId,
    /// The rule's name when the notification was triggered (`None`: the model did not
    /// know the rule then).
    pub rule_name: Option<String>,
    /// The event it tells about.
    pub source: EventId,
    /// What happened; `None` for a test an operator asked for.
    pub trigger: Option<Trigger>,
    pub event_type: String,
    pub title: String,
    pub text: String,
    /// When the event it tells about happened.
    #[serde(with = "ts_microseconds")]
    pub at: DateTime<Utc>,
    /// The stream sequence of its `notification.triggered`: the list's order.
    pub triggered_seq: u64,
    pub state: NotificationState,
    /// Attempts made (claimed) so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The HTTP status of the attempt that delivered it.
    pub last_status: Option<u16>,
    /// When the next attempt is due (state failed).
    #[serde(with = "ts_microseconds_option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(with = "ts_microseconds_option")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// When its last event happened.
    #[serde(with = "ts_microseconds")]
    pub updated_at: DateTime<Utc>,
}

/// One policy overdue on one agent (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    pub policy: PolicyId,
    pub agent: AgentId,
    /// Since when: the due time the notifier found passed without a success.
    #[serde(with = "ts_microseconds")]
    pub since: DateTime<Utc>,
    #[serde(with = "ts_microseconds_option")]
    pub last_success: Option<DateTime<Utc>>,
}

/// The tenant's prefix followed by `parts`.
fn key(tenant: &TenantId, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = tenant_prefix(tenant);
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

/// `notifications.rules`: tenant, zero byte, rule UUID.
pub(crate) fn rule_key(tenant: &TenantId, rule: RuleId) -> Vec<u8> {
    key(tenant, &[rule.uuid().as_bytes()])
}

/// `notifications.by_id`: tenant, zero byte, notification UUID.
pub(crate) fn notification_key(tenant: &TenantId, id: NotificationId) -> Vec<u8> {
    key(tenant, &[id.uuid().as_bytes()])
}

/// `notifications.by_time`: tenant, zero byte, the triggering sequence (big-endian, so
/// keys sort by it), notification UUID.
pub(crate) fn time_key(tenant: &TenantId, seq: u64, id: NotificationId) -> Vec<u8> {
    key(tenant, &[&seq.to_be_bytes(), id.uuid().as_bytes()])
}

/// `notifications.overdue`: tenant, zero byte, policy UUID, agent UUID.
pub(crate) fn overdue_key(tenant: &TenantId, policy: PolicyId, agent: AgentId) -> Vec<u8> {
    key(tenant, &[policy.uuid().as_bytes(), agent.uuid().as_bytes()])
}

/// `notifications.overdue_by_agent`: tenant, zero byte, agent UUID, policy UUID.
pub(crate) fn agent_overdue_key(tenant: &TenantId, agent: AgentId, policy: PolicyId) -> Vec<u8> {
    key(tenant, &[agent.uuid().as_bytes(), policy.uuid().as_bytes()])
}

/// The prefix of one policy's (or one agent's) overdue keys.
pub(crate) fn overdue_prefix(tenant: &TenantId, id: &uuid::Uuid) -> Vec<u8> {
    key(tenant, &[id.as_bytes()])
}
