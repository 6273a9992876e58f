//! Which trigger an event is, and the message that tells it, in words an operator reads on
//! a phone: what, where, and the error. Pure.

use chrono::{DateTime, Utc};
use fleet_api_model::words;
use fleet_events::envelope::Envelope;
use fleet_events::event::{
    AgentEvent, AssignmentEvent, Event, ExhaustedReason, Message, Named, RepoEvent, TaskError,
    TaskEvent,
};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::notify::Trigger;

use super::facts::{Facts, TaskFacts};

/// Longest text kept from an error.
const MAX_ERROR_TEXT: usize = 1000;

/// The trigger `event` is, if any: cheap, asked before a message is worded.
pub fn trigger(event: &Event) -> Option<Trigger> {
    Some(match event {
        Event::Task { event, .. } => match event {
            TaskEvent::Failed { .. } => Trigger::TaskFailed,
            TaskEvent::Exhausted { .. } => Trigger::TaskExhausted,
            TaskEvent::Succeeded { .. } => Trigger::TaskSucceeded,
            _ => return None,
        },
        Event::Agent { event, .. } => match event {
            AgentEvent::WentOffline { .. } => Trigger::AgentOffline,
            AgentEvent::CameOnline { .. } => Trigger::AgentOnline,
            _ => return None,
        },
        Event::Repo { event, .. } => match event {
            RepoEvent::CircuitOpened { .. } => Trigger::CircuitOpened,
            RepoEvent::CircuitClosed => Trigger::CircuitClosed,
            RepoEvent::SnapshotsChanged { .. } => return None,
        },
        Event::Assignment { event, .. } => match event {
            AssignmentEvent::Overdue { .. } => Trigger::PolicyOverdue,
            AssignmentEvent::CaughtUp { .. } => Trigger::PolicyCaughtUp,
        },
        _ => return None,
    })
}

/// The trigger `envelope` is and the message telling it, or `None` if no rule can react to
/// it. `task` is the task's facts as they were before this event (for task events).
pub fn message(envelope: &Envelope, facts: &Facts, task: Option<&TaskFacts>) -> Option<Message> {
    let at = envelope.at;
    let event_type = envelope.event.event_type().name().to_owned();
    let named_policy = |id: PolicyId| Named {
        id,
        name: facts.policy_name(id),
    };
    let named_agent = |id: AgentId| Named {
        id,
        name: facts.agent_name(id),
    };
    let base = |trigger, title: String, text: String| Message {
        trigger: Some(trigger),
        event_type: event_type.clone(),
        at,
        title,
        text,
        policy: None,
        agent: None,
        task: None,
        repo: None,
    };
    match &envelope.event {
        Event::Task { task: id, event } => {
            let t = task?;
            let (trigger, title, text) = task_words(event, t, facts)?;
            Some(Message {
                policy: Some(named_policy(t.policy)),
                agent: Some(named_agent(t.agent)),
                task: Some(*id),
                repo: Some(t.repo),
                ..base(trigger, title, text)
            })
        }
        Event::Agent { agent, event } => {
            let name = facts.agent_name(*agent);
            let (trigger, title, text) = match event {
                AgentEvent::WentOffline { last_seen } => (
                    Trigger::AgentOffline,
                    format!("agent {name} went offline"),
                    format!(
                        "No heartbeat since {}. Its tasks wait; tasks it held are retried \
                         elsewhere or when it returns.",
                        time(*last_seen)
                    ),
                ),
                AgentEvent::CameOnline { agent_version, .. } => (
                    Trigger::AgentOnline,
                    format!("agent {name} is back online"),
                    format!("Heard from again (agent {agent_version})."),
                ),
                _ => return None,
            };
            Some(Message {
                agent: Some(named_agent(*agent)),
                ..base(trigger, title, text)
            })
        }
        Event::Repo { repo, event } => {
            let (trigger, title, text) = match event {
                RepoEvent::CircuitOpened { until, failures } => (
                    Trigger::CircuitOpened,
                    format!("repository {repo}: circuit opened"),
                    format!(
                        "{failures} network failures in a row: its tasks are held until {}, \
                         then one probe task is let through.",
                        time(*until)
                    ),
                ),
                RepoEvent::CircuitClosed => (
                    Trigger::CircuitClosed,
                    format!("repository {repo}: circuit closed"),
                    "A task succeeded: its tasks flow again.".to_owned(),
                ),
                RepoEvent::SnapshotsChanged { .. } => return None,
            };
            Some(Message {
                repo: Some(*repo),
                ..base(trigger, title, text)
            })
        }
        Event::Assignment { event, .. } => {
            let (trigger, policy, agent, title, text) = match event {
                AssignmentEvent::Overdue {
                    policy,
                    agent,
                    due,
                    last_success,
                } => (
                    Trigger::PolicyOverdue,
                    *policy,
                    *agent,
                    format!(
                        "{} on {} is overdue",
                        facts.policy_name(*policy),
                        facts.agent_name(*agent)
                    ),
                    match last_success {
                        Some(last) => format!(
                            "No success since {}; one was due by {}.",
                            time(*last),
                            time(*due)
                        ),
                        None => format!("Never succeeded; a success was due by {}.", time(*due)),
                    },
                ),
                AssignmentEvent::CaughtUp {
                    policy,
                    agent,
                    succeeded_at,
                    ..
                } => (
                    Trigger::PolicyCaughtUp,
                    *policy,
                    *agent,
                    format!(
                        "{} on {} caught up",
                        facts.policy_name(*policy),
                        facts.agent_name(*agent)
                    ),
                    format!("Succeeded again at {}.", time(*succeeded_at)),
                ),
            };
            Some(Message {
                policy: Some(named_policy(policy)),
                agent: Some(named_agent(agent)),
                ..base(trigger, title, text)
            })
        }
        _ => None,
    }
}

fn task_words(
    event: &TaskEvent,
    t: &TaskFacts,
    facts: &Facts,
) -> Option<(Trigger, String, String)> {
    let what = format!(
        "{} of {} on {}",
        t.kind.as_str(),
        facts.policy_name(t.policy),
        facts.agent_name(t.agent)
    );
    Some(match event {
        TaskEvent::Failed { attempt, error } => (
            Trigger::TaskFailed,
            format!("{what} failed (attempt {attempt})"),
            error_text(error),
        ),
        TaskEvent::Exhausted { attempts, reason } => {
            let why = match reason {
                ExhaustedReason::NotRetryable(class) => {
                    format!("a {} error is not retried", class.as_str())
                }
                ExhaustedReason::BudgetSpent => "its retry budget is spent".to_owned(),
            };
            let last = t
                .last_error
                .as_ref()
                .map_or_else(String::new, |e| format!("\n{}", error_text(e)));
            (
                Trigger::TaskExhausted,
                format!("{what} failed for good"),
                format!("After {attempts} attempts: {why}.{last}"),
            )
        }
        TaskEvent::Succeeded { attempt, summary } => (
            Trigger::TaskSucceeded,
            format!("{what} succeeded"),
            succeeded_text(*attempt, summary.duration_ms),
        ),
        _ => return None,
    })
}

/// A success's text: its attempt and how long it took, in prose.
fn succeeded_text(attempt: u32, duration_ms: u64) -> String {
    format!("Attempt {attempt}, {}.", words::duration(duration_ms))
}

fn error_text(error: &TaskError) -> String {
    let mut text = format!("{}: {}", error.class.as_str(), error.message.trim());
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A test notification's message.
pub fn test_message(envelope: &Envelope, rule_name: &str, by: &str) -> Message {
    Message {
        trigger: None,
        event_type: envelope.event.event_type().name().to_owned(),
        at: envelope.at,
        title: format!("test notification of rule {rule_name}"),
        text: format!("Asked for by {by}. If you read this, the rule's target works."),
        policy: None,
        agent: None,
        task: None::<TaskId>,
        repo: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_says_its_attempt_and_how_long_it_took_in_prose() {
        assert_eq!(succeeded_text(1, 125_000), "Attempt 1, 2 min 5 s.");
        assert_eq!(succeeded_text(2, 850), "Attempt 2, 850 ms.");
    }
}
