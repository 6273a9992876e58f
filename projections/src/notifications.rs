//! The notification read model: each tenant's live notification rules, its notifications
//! with how their delivery went (pending, sending, delivered, failed, dead-lettered),
//! newest first, and which policies are overdue on which agents.
//!
//! Trees (every key starts with the tenant and a zero byte):
//! `notifications.rules` (rule UUID → postcard [`RuleView`]; a deleted rule is removed),
//! `notifications.by_id` (notification UUID → postcard [`NotificationView`]),
//! `notifications.by_time` (triggering sequence, notification UUID → nothing: the index
//! listed newest first), `notifications.overdue` (policy UUID, agent UUID → postcard
//! [`Overdue`]) and `notifications.overdue_by_agent` (agent UUID, policy UUID → nothing).
//!
//! Rejection kinds: `subject_mismatch` (the event is not stored under its own subject),
//! `unknown_rule` (a deletion or test of a rule that is not live), `unknown_notification`
//! (a delivery event before its `notification.triggered`), `already_triggered` (a second
//! one), `notification_settled` (an event after delivered or dead-lettered),
//! `assignment_mismatch` (an assignment event whose aggregate is not its policy and
//! agent's). Events of other aggregates are ignored.

mod view;

use fleet_events::envelope::Envelope;
use fleet_events::event::{AssignmentEvent, Event, NotificationEvent, RuleEvent};
use fleet_events::ids::{AgentId, AssignmentId, NotificationId, PolicyId, RuleId, TenantId};
use fleet_events::store::Stored;

pub use view::{NotificationState, NotificationView, Overdue, RuleView};
use view::{agent_overdue_key, notification_key, overdue_key, overdue_prefix, rule_key, time_key};

use crate::stored::{decode, load, store, tenant_prefix};

use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection, check_subject};
use crate::runtime::Checkpointed;

const RULES: &str = "notifications.rules";
const BY_ID: &str = "notifications.by_id";
const BY_TIME: &str = "notifications.by_time";
const OVERDUE: &str = "notifications.overdue";
const OVERDUE_BY_AGENT: &str = "notifications.overdue_by_agent";

/// The notification read model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifications;

impl Projection for Notifications {
    const NAME: &'static str = "notifications";
    const TREES: &'static [&'static str] = &[RULES, BY_ID, BY_TIME, OVERDUE, OVERDUE_BY_AGENT];

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let [rules, by_id, by_time, overdue, by_agent] = trees else {
            return Err(ApplyError::corrupt(
                RULES,
                "expected the five notification trees",
            ));
        };
        let envelope = &stored.envelope;
        match &envelope.event {
            Event::Rule { rule, event } => {
                check_subject(stored)?;
                rule_changed(*rules, stored.seq, envelope, *rule, event)
            }
            Event::Notification {
                notification,
                event,
            } => {
                check_subject(stored)?;
                let trees = [*rules, *by_id, *by_time];
                notified(&trees, stored.seq, envelope, *notification, event)
            }
            Event::Assignment { assignment, event } => {
                check_subject(stored)?;
                assigned(&[*overdue, *by_agent], envelope, *assignment, event)
            }
            _ => Ok(()),
        }
    }
}

fn rule_changed(
    rules: &dyn ModelTree,
    seq: u64,
    envelope: &Envelope,
    rule: RuleId,
    event: &RuleEvent,
) -> Result<(), ApplyError> {
    let key = rule_key(&envelope.tenant, rule);
    let current: Option<RuleView> = load(rules, RULES, &key)?;
    let unknown = || ApplyError::rejected("unknown_rule", format!("rule {rule} is not defined"));
    match event {
        RuleEvent::Defined { spec } => {
            let view = match current {
                Some(view) => RuleView {
                    spec: (**spec).clone(),
                    version: seq,
                    updated_at: envelope.at,
                    ..view
                },
                None => RuleView {
                    tenant: envelope.tenant.clone(),
                    id: rule,
                    spec: (**spec).clone(),
                    version: seq,
                    defined_at: envelope.at,
                    updated_at: envelope.at,
                    tested_at: None,
                    tested_by: None,
                },
            };
            store(rules, RULES, &key, &view)
        }
        RuleEvent::Deleted => {
            current.ok_or_else(unknown)?;
            rules.remove(&key)
        }
        RuleEvent::TestRequested { by } => {
            let mut view = current.ok_or_else(unknown)?;
            view.version = seq;
            view.tested_at = Some(envelope.at);
            view.tested_by = Some(by.clone());
            store(rules, RULES, &key, &view)
        }
    }
}

fn notified(
    trees: &[&dyn ModelTree; 3],
    seq: u64,
    envelope: &Envelope,
    id: NotificationId,
    event: &NotificationEvent,
) -> Result<(), ApplyError> {
    let [rules, by_id, by_time] = *trees;
    let tenant = &envelope.tenant;
    let key = notification_key(tenant, id);
    let current: Option<NotificationView> = load(by_id, BY_ID, &key)?;
    let mut view = match (current, event) {
        (
            None,
            NotificationEvent::Triggered {
                rule,
                source,
                message,
            },
        ) => {
            let known: Option<RuleView> = load(rules, RULES, &rule_key(tenant, *rule))?;
            by_time.insert(&time_key(tenant, seq, id), &[])?;
            NotificationView {
                tenant: tenant.clone(),
                id,
                rule: *rule,
                rule_name: known.map(|r| r.spec.name),
                source: *source,
                trigger: message.trigger,
                event_type: message.event_type.clone(),
                title: message.title.clone(),
                text: message.text.clone(),
                at: message.at,
                triggered_seq: seq,
                state: NotificationState::Pending,
                attempts: 0,
                last_error: None,
                last_status: None,
                next_attempt_at: None,
                delivered_at: None,
                updated_at: envelope.at,
            }
        }
        (Some(_), NotificationEvent::Triggered { .. }) => {
            return Err(ApplyError::rejected(
                "already_triggered",
                format!("notification {id} was triggered already"),
            ));
        }
        (None, _) => {
            return Err(ApplyError::rejected(
                "unknown_notification",
                format!("notification {id} was never triggered"),
            ));
        }
        (Some(view), _) if view.state.is_settled() => {
            return Err(ApplyError::rejected(
                "notification_settled",
                format!("notification {id} is {} already", view.state.as_str()),
            ));
        }
        (Some(view), event) => delivery(view, envelope, event),
    };
    view.updated_at = envelope.at;
    store(by_id, BY_ID, &key, &view)
}

/// `view` after one delivery event (not a trigger).
fn delivery(
    mut view: NotificationView,
    envelope: &Envelope,
    event: &NotificationEvent,
) -> NotificationView {
    match event {
        NotificationEvent::Triggered { .. } => {}
        NotificationEvent::Sending { attempt } => {
            view.state = NotificationState::Sending;
            view.attempts = view.attempts.max(*attempt);
            view.next_attempt_at = None;
        }
        NotificationEvent::Delivered { attempt, status } => {
            view.state = NotificationState::Delivered;
            view.attempts = view.attempts.max(*attempt);
            view.last_status = Some(*status);
            view.next_attempt_at = None;
            view.delivered_at = Some(envelope.at);
        }
        NotificationEvent::Failed {
            attempt,
            error,
            retry_at,
        } => {
            view.state = NotificationState::Failed;
            view.attempts = view.attempts.max(*attempt);
            view.last_error = Some(error.clone());
            view.next_attempt_at = Some(*retry_at);
        }
        NotificationEvent::DeadLettered { attempts, error } => {
            view.state = NotificationState::DeadLettered;
            view.attempts = view.attempts.max(*attempts);
            view.last_error = Some(error.clone());
            view.next_attempt_at = None;
        }
    }
    view
}

fn assigned(
    trees: &[&dyn ModelTree; 2],
    envelope: &Envelope,
    assignment: AssignmentId,
    event: &AssignmentEvent,
) -> Result<(), ApplyError> {
    let [overdue, by_agent] = *trees;
    let tenant = &envelope.tenant;
    let (policy, agent) = match event {
        AssignmentEvent::Overdue { policy, agent, .. }
        | AssignmentEvent::CaughtUp { policy, agent, .. } => (*policy, *agent),
    };
    if AssignmentId::for_pair(policy, agent) != assignment {
        return Err(ApplyError::rejected(
            "assignment_mismatch",
            format!("assignment {assignment} is not policy {policy} on agent {agent}"),
        ));
    }
    let key = overdue_key(tenant, policy, agent);
    match event {
        AssignmentEvent::Overdue {
            due, last_success, ..
        } => {
            // Overdue already: it stays overdue since the first time.
            if overdue.get(&key)?.is_none() {
                let view = Overdue {
                    policy,
                    agent,
                    since: *due,
                    last_success: *last_success,
                };
                store(overdue, OVERDUE, &key, &view)?;
                by_agent.insert(&agent_overdue_key(tenant, agent, policy), &[])?;
            }
            Ok(())
        }
        AssignmentEvent::CaughtUp { .. } => {
            overdue.remove(&key)?;
            by_agent.remove(&agent_overdue_key(tenant, agent, policy))
        }
    }
}

/// Which notifications a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    pub rule: Option<RuleId>,
    pub state: Option<NotificationState>,
}

impl Checkpointed<Notifications> {
    /// `tenant`'s live rules, by name.
    pub fn rules(&self, tenant: &TenantId) -> Result<Vec<RuleView>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[0].scan_prefix(tenant_prefix(tenant)) {
            let (_, bytes) = item?;
            out.push(decode::<RuleView>(&bytes).map_err(|e| corrupt(RULES, e))?);
        }
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    /// `tenant`'s rule `id`, if it is live.
    pub fn rule(&self, tenant: &TenantId, id: RuleId) -> Result<Option<RuleView>, ProjectionError> {
        match self.trees()[0].get(rule_key(tenant, id))? {
            Some(bytes) => decode(&bytes).map(Some).map_err(|e| corrupt(RULES, e)),
            None => Ok(None),
        }
    }

    /// At most `limit` of `tenant`'s notifications that pass `filter`, newest first.
    pub fn notifications(
        &self,
        tenant: &TenantId,
        filter: &NotificationFilter,
        limit: usize,
    ) -> Result<Vec<NotificationView>, ProjectionError> {
        let prefix = tenant_prefix(tenant);
        let mut out = Vec::new();
        for key in self.trees()[2].scan_prefix(&prefix).keys().rev() {
            if out.len() >= limit {
                break;
            }
            let key = key?;
            let id = key.get(prefix.len() + 8..).unwrap_or_default();
            let mut by_id = prefix.clone();
            by_id.extend_from_slice(id);
            let bytes = self.trees()[1]
                .get(&by_id)?
                .ok_or_else(|| corrupt(BY_TIME, "a key names no stored notification"))?;
            let view: NotificationView = decode(&bytes).map_err(|e| corrupt(BY_ID, e))?;
            let wanted = filter.rule.is_none_or(|rule| view.rule == rule)
                && filter.state.is_none_or(|state| view.state == state);
            if wanted {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// Every policy overdue on an agent of `tenant`, by policy then agent.
    pub fn overdue(&self, tenant: &TenantId) -> Result<Vec<Overdue>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[3].scan_prefix(tenant_prefix(tenant)) {
            let (_, bytes) = item?;
            out.push(decode::<Overdue>(&bytes).map_err(|e| corrupt(OVERDUE, e))?);
        }
        Ok(out)
    }

    /// The agents `policy` is overdue on, by agent.
    pub fn overdue_of_policy(
        &self,
        tenant: &TenantId,
        policy: PolicyId,
    ) -> Result<Vec<Overdue>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[3].scan_prefix(overdue_prefix(tenant, &policy.uuid())) {
            let (_, bytes) = item?;
            out.push(decode::<Overdue>(&bytes).map_err(|e| corrupt(OVERDUE, e))?);
        }
        Ok(out)
    }

    /// The policies overdue on `agent`, by policy.
    pub fn overdue_of_agent(
        &self,
        tenant: &TenantId,
        agent: AgentId,
    ) -> Result<Vec<Overdue>, ProjectionError> {
        let prefix = overdue_prefix(tenant, &agent.uuid());
        let mut out = Vec::new();
        for key in self.trees()[4].scan_prefix(&prefix).keys() {
            let key = key?;
            let policy = key
                .get(prefix.len()..)
                .and_then(|b| uuid::Uuid::from_slice(b).ok())
                .map(PolicyId::from_uuid)
                .ok_or_else(|| corrupt(OVERDUE_BY_AGENT, "a key holds no policy"))?;
            let bytes = self.trees()[3]
                .get(overdue_key(tenant, policy, agent))?
                .ok_or_else(|| corrupt(OVERDUE_BY_AGENT, "a key names nothing overdue"))?;
            out.push(decode::<Overdue>(&bytes).map_err(|e| corrupt(OVERDUE, e))?);
        }
        Ok(out)
    }
}

fn corrupt(tree: &str, reason: impl ToString) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: Notifications::NAME,
        tree: tree.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
