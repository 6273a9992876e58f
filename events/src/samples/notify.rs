//! Sample notification rules, notifications and assignment events.

use uuid::Uuid;

use super::{AGENT, POLICY, TASK, at, tenant};
use crate::event::{
    AssignmentEvent, Event, EventType, Message, Named, NotificationEvent, RuleEvent,
};
use crate::ids::{AssignmentId, EventId, NotificationId, RepoId, RuleId};
use crate::notify::{DeliveryRetry, RuleSpec, Target, TargetKind, Trigger};

/// A webhook rule using most of the model.
pub fn rule_spec() -> RuleSpec {
    RuleSpec {
        name: "ops-webhook".into(),
        on: vec![Trigger::TaskExhausted, Trigger::PolicyOverdue],
        policies: vec!["nightly home".into()],
        agents: vec![],
        target: Target {
            kind: TargetKind::Webhook,
            url: None,
            url_secret: Some("ops-hook".into()),
            hmac_secret: Some("ops-hook-key".into()),
        },
        retry: DeliveryRetry::default(),
    }
}

/// The sample rule's id.
pub fn rule() -> RuleId {
    RuleId::for_name(&tenant(), "ops-webhook")
}

/// The sample notification: the sample rule about the sample event.
pub fn notification() -> NotificationId {
    NotificationId::for_event(rule(), source())
}

fn source() -> EventId {
    EventId::from_uuid(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_e000))
}

/// A sample message: the sample task exhausted.
pub fn message() -> Message {
    Message {
        trigger: Some(Trigger::TaskExhausted),
        event_type: "task.exhausted".into(),
        at: at(30),
        title: "backup of nightly home on db-1 failed for good".into(),
        text: "network: connection refused (after 6 attempts)".into(),
        policy: Some(Named {
            id: POLICY,
            name: "nightly home".into(),
        }),
        agent: Some(Named {
            id: AGENT,
            name: "db-1".into(),
        }),
        task: Some(TASK),
        repo: Some(RepoId::for_url("sftp:backup@nas:/srv/restic")),
    }
}

/// The sample event of a notification, rule or assignment type; `None` for other types.
pub fn event(t: EventType) -> Option<Event> {
    use EventType as T;
    let of_rule = |event| Event::Rule {
        rule: rule(),
        event,
    };
    let note = |event| Event::Notification {
        notification: notification(),
        event,
    };
    let assignment = |event| Event::Assignment {
        assignment: AssignmentId::for_pair(POLICY, AGENT),
        event,
    };
    Some(match t {
        T::RuleDefined => of_rule(RuleEvent::Defined {
            spec: Box::new(rule_spec()),
        }),
        T::RuleDeleted => of_rule(RuleEvent::Deleted),
        T::RuleTestRequested => of_rule(RuleEvent::TestRequested { by: "ops".into() }),
        T::NotificationTriggered => note(NotificationEvent::Triggered {
            rule: rule(),
            source: source(),
            message: Box::new(message()),
        }),
        T::NotificationSending => note(NotificationEvent::Sending { attempt: 2 }),
        T::NotificationDelivered => note(NotificationEvent::Delivered {
            attempt: 2,
            status: 204,
        }),
        T::NotificationFailed => note(NotificationEvent::Failed {
            attempt: 1,
            error: "503 Service Unavailable".into(),
            retry_at: at(40),
        }),
        T::NotificationDeadLettered => note(NotificationEvent::DeadLettered {
            attempts: 8,
            error: "connection refused".into(),
        }),
        T::AssignmentOverdue => assignment(AssignmentEvent::Overdue {
            policy: POLICY,
            agent: AGENT,
            due: at(3600),
            last_success: Some(at(0)),
        }),
        T::AssignmentCaughtUp => assignment(AssignmentEvent::CaughtUp {
            policy: POLICY,
            agent: AGENT,
            task: TASK,
            succeeded_at: at(4000),
        }),
        _ => return None,
    })
}

/// Nested variants the samples by type leave out.
pub fn variants() -> Vec<(String, Event)> {
    let mut test = message();
    test.trigger = None;
    test.event_type = "rule.test_requested".into();
    vec![
        (
            "notification.triggered+test".into(),
            Event::Notification {
                notification: notification(),
                event: NotificationEvent::Triggered {
                    rule: rule(),
                    source: source(),
                    message: Box::new(test),
                },
            },
        ),
        (
            "assignment.overdue+never".into(),
            Event::Assignment {
                assignment: AssignmentId::for_pair(POLICY, AGENT),
                event: AssignmentEvent::Overdue {
                    policy: POLICY,
                    agent: AGENT,
                    due: at(7200),
                    last_success: None,
                },
            },
        ),
    ]
}
