//! The JSON data and one-line summaries of notification rule, notification and assignment
//! events, as the API shows them and the notifier sends them.

use chrono::{DateTime, Utc};
use fleet_events::event::{AssignmentEvent, Event, Message, NotificationEvent, RuleEvent};
use serde_json::{Value, json};

/// The event's own fields; `None` for events of other aggregates.
pub fn data(event: &Event) -> Option<Value> {
    Some(match event {
        Event::Rule { event, .. } => match event {
            RuleEvent::Defined { spec } => json!({ "spec": spec }),
            RuleEvent::Deleted => json!({}),
            RuleEvent::TestRequested { by } => json!({ "by": by }),
        },
        Event::Notification { event, .. } => match event {
            NotificationEvent::Triggered {
                rule,
                source,
                message,
            } => json!({ "rule": rule, "source": source, "message": message_json(message) }),
            NotificationEvent::Sending { attempt } => json!({ "attempt": attempt }),
            NotificationEvent::Delivered { attempt, status } => {
                json!({ "attempt": attempt, "status": status })
            }
            NotificationEvent::Failed {
                attempt,
                error,
                retry_at,
            } => json!({ "attempt": attempt, "error": error, "retryAt": retry_at }),
            NotificationEvent::DeadLettered { attempts, error } => {
                json!({ "attempts": attempts, "error": error })
            }
        },
        Event::Assignment { event, .. } => match event {
            AssignmentEvent::Overdue {
                policy,
                agent,
                due,
                last_success,
            } => json!({
                "policy": policy, "agent": agent, "due": due, "lastSuccess": last_success,
            }),
            AssignmentEvent::CaughtUp {
                policy,
                agent,
                task,
                succeeded_at,
            } => json!({
                "policy": policy, "agent": agent, "task": task, "succeededAt": succeeded_at,
            }),
        },
        _ => return None,
    })
}

/// A notification's message as JSON (what `fleet notify log` and webhooks show).
pub fn message_json(message: &Message) -> Value {
    json!({
        "trigger": message.trigger.map(|t| t.as_str()),
        "eventType": message.event_type,
        "at": message.at,
        "title": message.title,
        "text": message.text,
        "policy": message.policy.as_ref().map(|p| json!({ "id": p.id, "name": p.name })),
        "agent": message.agent.as_ref().map(|a| json!({ "id": a.id, "name": a.name })),
        "task": message.task,
        "repository": message.repo,
    })
}

/// One line for people; `None` for events of other aggregates.
pub fn summary(event: &Event, at: &dyn Fn(DateTime<Utc>) -> String) -> Option<String> {
    Some(match event {
        Event::Rule { event, .. } => match event {
            RuleEvent::Defined { spec } => format!(
                "rule {} defined: {} to a {} target",
                spec.name,
                spec.triggers()
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                spec.target.kind.as_str()
            ),
            RuleEvent::Deleted => "rule deleted".into(),
            RuleEvent::TestRequested { by } => format!("test notification asked for by {by}"),
        },
        Event::Notification { event, .. } => match event {
            NotificationEvent::Triggered { message, .. } => {
                format!("notification: {}", message.title)
            }
            NotificationEvent::Sending { attempt } => format!("sending, attempt {attempt}"),
            NotificationEvent::Delivered { attempt, status } => {
                format!("delivered on attempt {attempt} (HTTP {status})")
            }
            NotificationEvent::Failed {
                attempt,
                error,
                retry_at,
            } => format!(
                "attempt {attempt} failed: {error}; next attempt at {}",
                at(*retry_at)
            ),
            NotificationEvent::DeadLettered { attempts, error } => {
                format!("dead-lettered after {attempts} attempts: {error}")
            }
        },
        Event::Assignment { event, .. } => match event {
            AssignmentEvent::Overdue {
                due, last_success, ..
            } => match last_success {
                Some(last) => format!("overdue since {}: last success {}", at(*due), at(*last)),
                None => format!("overdue since {}: never succeeded", at(*due)),
            },
            AssignmentEvent::CaughtUp { succeeded_at, .. } => {
                format!("caught up: succeeded at {}", at(*succeeded_at))
            }
        },
        _ => return None,
    })
}
