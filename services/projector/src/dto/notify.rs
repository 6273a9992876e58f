//! The JSON shapes of notification rules, notifications and overdue assignments.

use fleet_api_model::dto::{Notification, OverdueAgent, Rule};
use fleet_events::ids::AgentId;
use fleet_projections::{NotificationView, Overdue, RuleView};

/// The rule `view` shows.
pub fn rule(view: &RuleView) -> Rule {
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

/// The notification `view` shows.
pub fn notification(view: &NotificationView) -> Notification {
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
        state: view.state.as_str().to_owned(),
        attempts: view.attempts,
        last_error: view.last_error.clone(),
        last_status: view.last_status,
        next_attempt_at: view.next_attempt_at,
        delivered_at: view.delivered_at,
        updated_at: view.updated_at,
    }
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
