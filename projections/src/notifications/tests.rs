//! The notification read model without a server: rules defined, replaced, tested and
//! deleted; notifications folded through their delivery states and listed newest first;
//! overdue assignments and their recovery; what it rejects; rebuild equals incremental.

use fleet_events::event::{AssignmentEvent, Event, Message, NotificationEvent, RuleEvent};
use fleet_events::ids::{AgentId, AssignmentId, EventId, NotificationId, PolicyId, RuleId};
use fleet_events::notify::{DeliveryRetry, RuleSpec, Target, TargetKind, Trigger};
use fleet_events::samples;

use super::*;
use crate::runtime::Outcome;
use crate::testing::{Log, assert_rebuild_equals_incremental, open, tenant};

fn spec(name: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        on: vec![Trigger::TaskExhausted],
        policies: vec![],
        agents: vec![],
        target: Target {
            kind: TargetKind::Webhook,
            url: Some("https://hooks.example/fleet".into()),
            url_secret: None,
            hmac_secret: None,
        },
        retry: DeliveryRetry::default(),
    }
}

fn rule(tenant: &TenantId, name: &str) -> RuleId {
    RuleId::for_name(tenant, name)
}

fn on_rule(rule: RuleId, event: RuleEvent) -> Event {
    Event::Rule { rule, event }
}

fn defined(name: &str) -> RuleEvent {
    RuleEvent::Defined {
        spec: Box::new(spec(name)),
    }
}

fn note(notification: NotificationId, event: NotificationEvent) -> Event {
    Event::Notification {
        notification,
        event,
    }
}

/// A notification of `rule` titled `title` (its id from a fresh source event).
fn triggered(rule: RuleId, title: &str) -> (NotificationId, Event) {
    let source = EventId::generate();
    let id = NotificationId::for_event(rule, source);
    let message = Message {
        trigger: Some(Trigger::TaskExhausted),
        event_type: "task.exhausted".into(),
        at: samples::at(5),
        title: title.into(),
        text: "network: connection refused".into(),
        policy: None,
        agent: None,
        task: Some(samples::TASK),
        repo: None,
    };
    let event = NotificationEvent::Triggered {
        rule,
        source,
        message: Box::new(message),
    };
    (id, note(id, event))
}

fn failed(attempt: u32, secs: i64) -> NotificationEvent {
    NotificationEvent::Failed {
        attempt,
        error: "HTTP 503".into(),
        retry_at: samples::at(secs),
    }
}

fn overdue(policy: PolicyId, agent: AgentId, due: i64) -> Event {
    Event::Assignment {
        assignment: AssignmentId::for_pair(policy, agent),
        event: AssignmentEvent::Overdue {
            policy,
            agent,
            due: samples::at(due),
            last_success: None,
        },
    }
}

fn caught_up(policy: PolicyId, agent: AgentId) -> Event {
    Event::Assignment {
        assignment: AssignmentId::for_pair(policy, agent),
        event: AssignmentEvent::CaughtUp {
            policy,
            agent,
            task: samples::TASK,
            succeeded_at: samples::at(900),
        },
    }
}

fn kinds(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Applied => "applied",
            Outcome::Rejected(kind) => kind,
            Outcome::Skipped => "skipped",
        })
        .collect()
}

#[test]
fn rules_are_defined_replaced_tested_and_deleted_per_tenant() {
    let (_dir, model) = open(Notifications);
    let (acme, other) = (tenant("acme"), tenant("other"));
    let (ops, chat) = (rule(&acme, "ops"), rule(&acme, "chat"));
    let mut log = Log::default();
    log.push(&acme, 0, on_rule(ops, defined("ops")));
    log.push(&acme, 1, on_rule(chat, defined("chat")));
    let mut replaced = spec("ops");
    replaced.on = vec![Trigger::TaskFailed];
    let replace = RuleEvent::Defined {
        spec: Box::new(replaced.clone()),
    };
    log.push(&acme, 2, on_rule(ops, replace));
    let test = RuleEvent::TestRequested { by: "ci".into() };
    log.push(&acme, 3, on_rule(ops, test));
    log.push(&other, 4, on_rule(rule(&other, "ops"), defined("ops")));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));

    let names: Vec<String> = model
        .rules(&acme)
        .unwrap()
        .into_iter()
        .map(|r| r.spec.name)
        .collect();
    assert_eq!(names, ["chat", "ops"], "by name");
    let view = model.rule(&acme, ops).unwrap().expect("live");
    assert_eq!(view.spec, replaced);
    assert_eq!(view.version, 4, "the sequence of its last event, the test");
    assert_eq!(view.defined_at, samples::at(0), "first defined");
    assert_eq!(view.updated_at, samples::at(2), "replaced");
    assert_eq!(
        (view.tested_at, view.tested_by.as_deref()),
        (Some(samples::at(3)), Some("ci"))
    );
    assert_eq!(model.rules(&other).unwrap().len(), 1);
    assert_eq!(model.rule(&other, ops).unwrap(), None, "acme's rule");

    let deleted = log.push(&acme, 5, on_rule(ops, RuleEvent::Deleted));
    assert_eq!(model.apply(Ok(deleted)).unwrap(), Outcome::Applied);
    assert_eq!(model.rule(&acme, ops).unwrap(), None, "gone");
    assert_eq!(model.rules(&acme).unwrap().len(), 1);
    // Defined again: first defined now.
    let again = log.push(&acme, 6, on_rule(ops, defined("ops")));
    model.apply(Ok(again)).unwrap();
    let view = model.rule(&acme, ops).unwrap().expect("live again");
    assert_eq!((view.defined_at, view.tested_at), (samples::at(6), None));
}

#[test]
fn a_notification_goes_through_its_delivery_states() {
    let (_dir, model) = open(Notifications);
    let acme = tenant("acme");
    let ops = rule(&acme, "ops");
    let mut log = Log::default();
    log.push(&acme, 0, on_rule(ops, defined("ops")));
    let (id, trigger) = triggered(ops, "backup failed for good");
    log.push(&acme, 10, trigger);
    log.apply_to(&model);
    let state = |model: &Checkpointed<Notifications>| {
        let all = model
            .notifications(&acme, &NotificationFilter::default(), 10)
            .unwrap();
        assert_eq!(all.len(), 1);
        all.into_iter().next().unwrap()
    };
    let view = state(&model);
    assert_eq!(view.id, id);
    assert_eq!(view.rule_name.as_deref(), Some("ops"));
    assert_eq!(view.title, "backup failed for good");
    assert_eq!(view.trigger, Some(Trigger::TaskExhausted));
    assert_eq!(view.event_type, "task.exhausted");
    assert_eq!((view.state, view.attempts), (NotificationState::Pending, 0));

    let steps = [
        (
            NotificationEvent::Sending { attempt: 1 },
            NotificationState::Sending,
        ),
        (failed(1, 40), NotificationState::Failed),
        (
            NotificationEvent::Sending { attempt: 2 },
            NotificationState::Sending,
        ),
        (
            NotificationEvent::Delivered {
                attempt: 2,
                status: 204,
            },
            NotificationState::Delivered,
        ),
    ];
    for (n, (event, expected)) in steps.into_iter().enumerate() {
        let stored = log.push(&acme, 20 + n as i64, note(id, event));
        assert_eq!(model.apply(Ok(stored)).unwrap(), Outcome::Applied);
        assert_eq!(state(&model).state, expected, "step {n}");
        if expected == NotificationState::Failed {
            let view = state(&model);
            assert_eq!(view.next_attempt_at, Some(samples::at(40)));
            assert_eq!(view.last_error.as_deref(), Some("HTTP 503"));
            assert_eq!(view.attempts, 1);
        }
    }
    let view = state(&model);
    assert_eq!(view.attempts, 2);
    assert_eq!(view.last_status, Some(204));
    assert_eq!(view.next_attempt_at, None);
    assert_eq!(view.delivered_at, Some(samples::at(23)));
    assert_eq!(view.last_error.as_deref(), Some("HTTP 503"), "kept");
}

#[test]
fn notifications_are_listed_newest_first_and_filtered() {
    let (_dir, model) = open(Notifications);
    let (acme, other) = (tenant("acme"), tenant("other"));
    let (ops, chat) = (rule(&acme, "ops"), rule(&acme, "chat"));
    let mut log = Log::default();
    log.push(&acme, 0, on_rule(ops, defined("ops")));
    let (first, event) = triggered(ops, "first");
    log.push(&acme, 1, event);
    let (second, event) = triggered(chat, "second, of a rule never defined");
    log.push(&acme, 2, event);
    let (third, event) = triggered(ops, "third");
    log.push(&acme, 3, event);
    log.push(&other, 4, triggered(rule(&other, "ops"), "other's").1);
    log.push(&acme, 5, note(first, failed(1, 60)));
    let dead = NotificationEvent::DeadLettered {
        attempts: 1,
        error: "HTTP 410".into(),
    };
    log.push(&acme, 6, note(third, dead));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));

    let list = |filter: NotificationFilter, limit| -> Vec<NotificationId> {
        let items = model.notifications(&acme, &filter, limit).unwrap();
        items.into_iter().map(|n| n.id).collect()
    };
    let all = NotificationFilter::default();
    assert_eq!(list(all.clone(), 10), [third, second, first]);
    assert_eq!(list(all, 2), [third, second]);
    let of_ops = NotificationFilter {
        rule: Some(ops),
        state: None,
    };
    assert_eq!(list(of_ops, 10), [third, first]);
    let failing = NotificationFilter {
        rule: None,
        state: Some(NotificationState::Failed),
    };
    assert_eq!(list(failing, 10), [first]);
    let pending = NotificationFilter {
        rule: Some(chat),
        state: Some(NotificationState::Pending),
    };
    assert_eq!(list(pending, 1), [second]);
    let unnamed = model
        .notifications(&acme, &NotificationFilter::default(), 10)
        .unwrap();
    assert_eq!(unnamed[1].rule_name, None, "the rule was never defined");
    let theirs = model
        .notifications(&other, &NotificationFilter::default(), 10)
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].title, "other's");
}

#[test]
fn overdue_assignments_are_kept_until_they_catch_up() {
    let (_dir, model) = open(Notifications);
    let (acme, other) = (tenant("acme"), tenant("other"));
    let (policy, second) = (PolicyId::generate(), PolicyId::generate());
    let (agent, web) = (AgentId::generate(), AgentId::generate());
    let mut log = Log::default();
    log.push(&acme, 0, overdue(policy, agent, 100));
    log.push(&acme, 1, overdue(policy, web, 110));
    log.push(&acme, 2, overdue(second, agent, 120));
    // Told again: still overdue since the first due time.
    log.push(&acme, 3, overdue(policy, agent, 200));
    log.push(&other, 4, overdue(policy, agent, 300));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));

    let mut agents: Vec<(AgentId, i64)> = model
        .overdue_of_policy(&acme, policy)
        .unwrap()
        .into_iter()
        .map(|o| (o.agent, o.since.timestamp() - samples::at(0).timestamp()))
        .collect();
    agents.sort();
    let mut expected = vec![(agent, 100), (web, 110)];
    expected.sort();
    assert_eq!(agents, expected);
    let mut policies: Vec<PolicyId> = model
        .overdue_of_agent(&acme, agent)
        .unwrap()
        .into_iter()
        .map(|o| o.policy)
        .collect();
    policies.sort();
    let mut both = vec![policy, second];
    both.sort();
    assert_eq!(policies, both);

    let back = log.push(&acme, 5, caught_up(policy, agent));
    assert_eq!(model.apply(Ok(back)).unwrap(), Outcome::Applied);
    let left: Vec<AgentId> = model
        .overdue_of_policy(&acme, policy)
        .unwrap()
        .into_iter()
        .map(|o| o.agent)
        .collect();
    assert_eq!(left, [web]);
    let of_agent = model.overdue_of_agent(&acme, agent).unwrap();
    assert_eq!(of_agent.len(), 1);
    assert_eq!(of_agent[0].policy, second);
    assert_eq!(model.overdue_of_policy(&other, policy).unwrap().len(), 1);
    assert_eq!(model.overdue(&acme).unwrap().len(), 2);
    assert_eq!(model.overdue(&other).unwrap().len(), 1);
}

#[test]
fn events_out_of_order_are_rejected() {
    let (_dir, model) = open(Notifications);
    let acme = tenant("acme");
    let ops = rule(&acme, "ops");
    let (id, trigger) = triggered(ops, "t");
    let (policy, agent) = (PolicyId::generate(), AgentId::generate());
    let mut log = Log::default();
    log.push(&acme, 0, on_rule(ops, RuleEvent::Deleted));
    log.push(
        &acme,
        1,
        on_rule(ops, RuleEvent::TestRequested { by: "x".into() }),
    );
    log.push(
        &acme,
        2,
        note(id, NotificationEvent::Sending { attempt: 1 }),
    );
    log.push(&acme, 3, trigger.clone());
    log.push(&acme, 4, trigger);
    let delivered = NotificationEvent::Delivered {
        attempt: 1,
        status: 200,
    };
    log.push(&acme, 5, note(id, delivered));
    log.push(&acme, 6, note(id, failed(2, 9)));
    let mut mismatched = overdue(policy, agent, 1);
    if let Event::Assignment { assignment, .. } = &mut mismatched {
        *assignment = AssignmentId::for_pair(policy, AgentId::generate());
    }
    log.push(&acme, 7, mismatched);
    let outcomes = log.apply_to(&model);
    assert_eq!(
        kinds(&outcomes),
        [
            "unknown_rule",
            "unknown_rule",
            "unknown_notification",
            "applied",
            "already_triggered",
            "applied",
            "notification_settled",
            "assignment_mismatch",
        ]
    );
    assert_eq!(model.overdue_of_policy(&acme, policy).unwrap(), vec![]);
}

#[test]
fn rebuild_equals_incremental() {
    let (acme, other) = (tenant("acme"), tenant("other"));
    let (ops, chat) = (rule(&acme, "ops"), rule(&acme, "chat"));
    let (policy, agent) = (PolicyId::generate(), AgentId::generate());
    let mut log = Log::default();
    log.push(&acme, 0, on_rule(ops, defined("ops")));
    log.push(&acme, 1, on_rule(chat, defined("chat")));
    let mut ids = Vec::new();
    for n in 0..6 {
        let (id, event) = triggered(if n % 2 == 0 { ops } else { chat }, &format!("n{n}"));
        log.push(&acme, 2 + n, event);
        ids.push(id);
    }
    log.push(&other, 9, triggered(rule(&other, "ops"), "theirs").1);
    log.push(
        &acme,
        10,
        note(ids[0], NotificationEvent::Sending { attempt: 1 }),
    );
    log.push(&acme, 11, note(ids[0], failed(1, 30)));
    log.push(
        &acme,
        12,
        note(ids[1], NotificationEvent::Sending { attempt: 1 }),
    );
    let delivered = NotificationEvent::Delivered {
        attempt: 1,
        status: 200,
    };
    log.push(&acme, 13, note(ids[1], delivered));
    log.push(
        &acme,
        14,
        on_rule(chat, RuleEvent::TestRequested { by: "me".into() }),
    );
    log.push(&acme, 15, overdue(policy, agent, 50));
    log.push(&acme, 16, on_rule(ops, RuleEvent::Deleted));
    log.push(&acme, 17, caught_up(policy, agent));
    log.push(&acme, 18, overdue(policy, agent, 70));
    // Rejected ones are part of the log too.
    log.push(&acme, 19, note(ids[1], failed(2, 90)));
    // Events of other models are ignored.
    log.push(
        &acme,
        20,
        samples::event(fleet_events::event::EventType::TaskFailed),
    );
    let (_dir, model) = assert_rebuild_equals_incremental(|| Notifications, &log.events);
    let all = model
        .notifications(&acme, &NotificationFilter::default(), 100)
        .unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(model.rules(&acme).unwrap().len(), 1);
    assert_eq!(model.overdue_of_agent(&acme, agent).unwrap().len(), 1);
}
