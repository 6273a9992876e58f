//! Answering the notification queries (rules, one rule, the notification log) and the
//! overdue policies an agent's answer carries.

use fleet_events::ids::{AgentId, RuleId, TenantId};
use fleet_projections::{NotificationFilter, NotificationState};
use serde_json::Value;

use super::super::dto;
use super::super::models::ReadModels;
use super::super::query::ErrorCode;
use super::{Refusal, limit, named, to_json};

/// `GET /v1/rules`: the live rules by name.
pub fn rules(models: &ReadModels, tenant: &TenantId) -> Result<Value, Refusal> {
    let rules: Vec<dto::Rule> = models
        .notifications
        .rules(tenant)?
        .iter()
        .map(dto::rule)
        .collect();
    to_json(rules)
}

/// `GET /v1/rules/{id}`.
pub fn rule(models: &ReadModels, tenant: &TenantId, id: RuleId) -> Result<Value, Refusal> {
    match models.notifications.rule(tenant, id)? {
        Some(view) => to_json(dto::rule(&view)),
        None => Err(Refusal(ErrorCode::NotFound, format!("no rule {id}"))),
    }
}

/// `GET /v1/notifications`: newest first, of one rule, in one state.
pub fn notifications(
    models: &ReadModels,
    tenant: &TenantId,
    rule: Option<RuleId>,
    state: Option<&str>,
    asked: Option<usize>,
) -> Result<Value, Refusal> {
    let state = named(state, &NotificationState::ALL, |s| s.as_str(), "state")?;
    let filter = NotificationFilter { rule, state };
    let items: Vec<dto::Notification> = models
        .notifications
        .notifications(tenant, &filter, limit(asked)?)?
        .iter()
        .map(dto::notification)
        .collect();
    to_json(items)
}

/// The live policies assigned to `agent` that are overdue on it, by policy.
pub fn overdue_on_agent(
    models: &ReadModels,
    tenant: &TenantId,
    agent: AgentId,
) -> Result<Vec<dto::OverduePolicy>, Refusal> {
    let mut out = Vec::new();
    for overdue in models.notifications.overdue_of_agent(tenant, agent)? {
        let assigned = models.policies.policy(overdue.policy)?.is_some_and(|p| {
            p.tenant == *tenant && !p.deleted && p.agents.binary_search(&agent).is_ok()
        });
        if assigned {
            out.push(dto::OverduePolicy {
                policy: overdue.policy,
                since: overdue.since,
                last_success: overdue.last_success,
            });
        }
    }
    Ok(out)
}
