//! The notifier's decisions on a log kept in memory (expected sequences and msg ids
//! enforced as the event store does), with one or two notifier instances.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{
    AgentEvent, ErrorClass, Event, ExhaustedReason, NotificationEvent, PolicyEvent, RuleEvent,
    RunDetail, RunSummary, TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, PolicyId, RuleId, TaskId, TenantId};
use fleet_events::notify::{DeliveryRetry, RuleSpec, Target, TargetKind, Trigger};
use fleet_events::policy::TaskKind;
use fleet_events::samples;
use fleet_events::schedule::Schedule;
use fleet_events::store::{Expect, Stored};

use super::core::{Action, Notifier, NotifierConfig, ToAppend};

fn t(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0)
        .single()
        .expect("valid")
}

fn acme() -> TenantId {
    TenantId::new("acme").expect("slug")
}

/// The log: subjects' last sequences and msg ids seen, as JetStream keeps them.
#[derive(Default)]
struct Log {
    events: Vec<Stored>,
    last: HashMap<String, u64>,
    ids: HashSet<String>,
}

impl Log {
    fn push(&mut self, envelope: Envelope) -> u64 {
        let seq = self.events.len() as u64 + 1;
        let subject = envelope.subject();
        self.last.insert(subject.clone(), seq);
        self.events.push(Stored {
            seq,
            subject,
            envelope,
        });
        seq
    }

    fn event(&mut self, at: DateTime<Utc>, event: Event) -> u64 {
        self.push(Envelope::new(acme(), at, event))
    }

    /// Appends as the store would: `None` for a duplicate or a conflict.
    fn append(&mut self, write: &ToAppend) -> Option<u64> {
        if !write.msg_id.is_empty() && !self.ids.insert(write.msg_id.clone()) {
            return None;
        }
        let last = self
            .last
            .get(&write.envelope.subject())
            .copied()
            .unwrap_or(0);
        match write.expect {
            Expect::LastSeq(n) if n != last => None,
            _ => Some(self.push(write.envelope.clone())),
        }
    }

    /// The notifier's events in the log.
    fn types(&self) -> Vec<&'static str> {
        self.of("notification.")
            .into_iter()
            .chain(self.of("assignment."))
            .collect()
    }

    /// The types of events in the log whose name starts with `prefix`, in order.
    fn of(&self, prefix: &str) -> Vec<&'static str> {
        self.events
            .iter()
            .map(|s| s.envelope.event.event_type().name())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }
}

/// One notifier instance reading the log.
struct Instance {
    core: Notifier,
    read: usize,
}

impl Instance {
    fn new() -> Self {
        Self {
            core: Notifier::new(NotifierConfig {
                claim_timeout: TimeDelta::seconds(60),
                max_age: TimeDelta::hours(24),
            }),
            read: 0,
        }
    }

    fn catch_up(&mut self, log: &Log) {
        for stored in &log.events[self.read..] {
            self.core.apply(stored);
        }
        self.read = log.events.len();
    }

    /// Acts at `now`; each delivery gets `answer`. Returns the attempts it sent.
    fn act(&mut self, log: &mut Log, now: DateTime<Utc>, answer: Result<u16, String>) -> u32 {
        self.catch_up(log);
        let mut sent = 0;
        for action in self.core.due(now) {
            match action {
                Action::Append { write, note } => {
                    log.append(&write);
                    if let Some(id) = note {
                        self.core.release(id, now);
                    }
                }
                Action::Deliver { claim, job } => {
                    if let Some(seq) = log.append(&claim) {
                        sent += 1;
                        let outcome =
                            self.core
                                .finished(&job, &claim.envelope, seq, answer.clone(), now);
                        log.append(&outcome);
                    }
                    self.core.release(job.notification, now);
                }
            }
            self.catch_up(log);
        }
        sent
    }

    /// Acts until nothing more happens at `now`; the attempts sent.
    fn settle(&mut self, log: &mut Log, now: DateTime<Utc>, answer: Result<u16, String>) -> u32 {
        let mut sent = 0;
        for _ in 0..10 {
            let before = log.events.len();
            sent += self.act(log, now, answer.clone());
            if log.events.len() == before {
                break;
            }
        }
        sent
    }
}

const AGENT: AgentId = samples::AGENT;
const POLICY: PolicyId = samples::POLICY;

fn rule(name: &str, on: Vec<Trigger>, retry: DeliveryRetry) -> (RuleId, Event) {
    let id = RuleId::for_name(&acme(), name);
    let spec = RuleSpec {
        name: name.into(),
        on,
        policies: vec![],
        agents: vec![],
        target: Target {
            kind: TargetKind::Webhook,
            url: Some("http://127.0.0.1:9/hook".into()),
            url_secret: None,
            hmac_secret: None,
        },
        retry,
    };
    (
        id,
        Event::Rule {
            rule: id,
            event: RuleEvent::Defined {
                spec: Box::new(spec),
            },
        },
    )
}

/// A fleet: the sample agent, an hourly backup policy assigned to it, and a rule.
fn fleet(log: &mut Log, retry: DeliveryRetry) -> RuleId {
    log.event(
        t(0, 0),
        Event::Agent {
            agent: AGENT,
            event: AgentEvent::Registered {
                name: "db-1".into(),
                hostname: "db-1.example".into(),
                settings: samples::agent_settings(),
            },
        },
    );
    let spec = fleet_events::policy::PolicySpec {
        name: "hourly".into(),
        schedule: Schedule::Cron {
            expr: "0 * * * *".into(),
            timezone: "UTC".into(),
        },
        jitter_secs: 0,
        ..samples::policy_spec()
    };
    log.event(
        t(0, 0),
        Event::Policy {
            policy: POLICY,
            event: PolicyEvent::Created {
                spec: Box::new(spec),
            },
        },
    );
    log.event(
        t(0, 0),
        Event::Policy {
            policy: POLICY,
            event: PolicyEvent::AssignedToAgent { agent: AGENT },
        },
    );
    let (id, event) = rule("ops", vec![Trigger::TaskExhausted], retry);
    log.event(t(0, 0), event);
    id
}

fn task_event(log: &mut Log, task: TaskId, at: DateTime<Utc>, event: TaskEvent) {
    log.event(at, Event::Task { task, event });
}

fn exhausted_task(log: &mut Log, at: DateTime<Utc>) -> TaskId {
    let task = TaskId::for_fire(POLICY, AGENT, at);
    let spec = samples::policy_spec();
    task_event(
        log,
        task,
        at,
        TaskEvent::Scheduled {
            policy: POLICY,
            agent: AGENT,
            fire_at: at,
            run_at: at,
            spec: Box::new(spec),
        },
    );
    task_event(
        log,
        task,
        at,
        TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Auth, "wrong password", Some(12)),
        },
    );
    task_event(
        log,
        task,
        at,
        TaskEvent::Exhausted {
            attempts: 1,
            reason: ExhaustedReason::NotRetryable(ErrorClass::Auth),
        },
    );
    task
}

fn succeeded(log: &mut Log, at: DateTime<Utc>) {
    let task = TaskId::for_fire(POLICY, AGENT, at);
    task_event(
        log,
        task,
        at,
        TaskEvent::Scheduled {
            policy: POLICY,
            agent: AGENT,
            fire_at: at,
            run_at: at,
            spec: Box::new(samples::policy_spec()),
        },
    );
    task_event(
        log,
        task,
        at,
        TaskEvent::Succeeded {
            attempt: 1,
            summary: RunSummary {
                kind: TaskKind::Backup,
                duration_ms: 1000,
                detail: RunDetail::Check,
            },
        },
    );
}

#[test]
fn an_exhausted_task_is_notified_once_and_delivered() {
    // Given a rule on exhausted tasks and a task that failed for good
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    exhausted_task(&mut log, t(0, 30));
    let mut n = Instance::new();
    // When the notifier acts, and acts again later
    let sent = n.settle(&mut log, t(0, 31), Ok(204));
    let again = n.settle(&mut log, t(5, 0), Ok(204));
    // Then one notification was triggered, claimed, sent and delivered, once
    assert_eq!((sent, again), (1, 0));
    assert_eq!(
        log.of("notification."),
        [
            "notification.triggered",
            "notification.sending",
            "notification.delivered"
        ]
    );
    let Some(Event::Notification {
        event: NotificationEvent::Triggered { message, .. },
        ..
    }) = log.events.iter().map(|s| &s.envelope.event).find(|e| {
        matches!(
            e,
            Event::Notification {
                event: NotificationEvent::Triggered { .. },
                ..
            }
        )
    })
    else {
        panic!("no trigger in the log");
    };
    assert_eq!(message.title, "backup of hourly on db-1 failed for good");
    assert!(
        message.text.contains("auth: wrong password"),
        "{}",
        message.text
    );
}

#[test]
fn a_failing_target_is_retried_with_backoff_then_dead_lettered() {
    let mut log = Log::default();
    let retry = DeliveryRetry {
        max_attempts: 3,
        base_delay_secs: 10,
        max_delay_secs: 900,
    };
    fleet(&mut log, retry);
    exhausted_task(&mut log, t(0, 30));
    let mut n = Instance::new();
    let fail = || Err("HTTP 503 Service Unavailable".to_owned());
    assert_eq!(n.settle(&mut log, t(0, 31), fail()), 1);
    // Not before its backoff (10 s), then after it; the second wait doubles.
    let at = t(0, 31);
    assert_eq!(n.settle(&mut log, at + TimeDelta::seconds(9), fail()), 0);
    assert_eq!(n.settle(&mut log, at + TimeDelta::seconds(10), fail()), 1);
    assert_eq!(n.settle(&mut log, at + TimeDelta::seconds(29), fail()), 0);
    assert_eq!(n.settle(&mut log, at + TimeDelta::seconds(30), fail()), 1);
    assert_eq!(n.settle(&mut log, at + TimeDelta::hours(2), fail()), 0);
    assert_eq!(
        log.of("notification.").last().copied(),
        Some("notification.dead_lettered")
    );
}

#[test]
fn a_target_that_fails_then_recovers_gets_it_once() {
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    exhausted_task(&mut log, t(0, 30));
    let mut n = Instance::new();
    n.settle(&mut log, t(0, 31), Err("HTTP 500".into()));
    let sent = n.settle(&mut log, t(1, 0), Ok(200));
    assert_eq!(sent, 1);
    assert_eq!(
        log.of("notification."),
        [
            "notification.triggered",
            "notification.sending",
            "notification.failed",
            "notification.sending",
            "notification.delivered"
        ]
    );
    assert_eq!(n.settle(&mut log, t(3, 0), Ok(200)), 0);
}

#[test]
fn two_instances_send_each_attempt_once() {
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    exhausted_task(&mut log, t(0, 30));
    let (mut a, mut b) = (Instance::new(), Instance::new());
    a.catch_up(&log);
    b.catch_up(&log);
    // Both decide before either sees the other's writes.
    let actions_a = a.core.due(t(0, 31));
    let actions_b = b.core.due(t(0, 31));
    assert_eq!((actions_a.len(), actions_b.len()), (1, 1));
    for (instance, actions) in [(&mut a, actions_a), (&mut b, actions_b)] {
        for action in actions {
            if let Action::Append { write, note } = action {
                log.append(&write);
                if let Some(id) = note {
                    instance.core.release(id, t(0, 31));
                }
            }
        }
    }
    let sent = a.settle(&mut log, t(0, 32), Ok(200)) + b.settle(&mut log, t(0, 32), Ok(200));
    assert_eq!(sent, 1);
    assert_eq!(
        log.of("notification."),
        [
            "notification.triggered",
            "notification.sending",
            "notification.delivered"
        ]
    );
}

#[test]
fn a_claim_whose_sender_died_is_failed_after_the_timeout_and_sent_again() {
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    exhausted_task(&mut log, t(0, 30));
    // Given an instance that claimed attempt 1 and died before recording its outcome
    let mut dead = Instance::new();
    dead.catch_up(&log);
    for action in dead.core.due(t(0, 31)) {
        if let Action::Append { write, note } = action {
            log.append(&write);
            dead.core.release(note.expect("a trigger"), t(0, 31));
        }
    }
    dead.catch_up(&log);
    for action in dead.core.due(t(0, 31)) {
        if let Action::Deliver { claim, .. } = action {
            log.append(&claim);
        }
    }
    // When another instance looks before and after the claim timeout
    let mut live = Instance::new();
    assert_eq!(
        live.settle(&mut log, t(0, 31) + TimeDelta::seconds(59), Ok(200)),
        0
    );
    let sent = live.settle(&mut log, t(0, 40), Ok(200)) + live.settle(&mut log, t(0, 45), Ok(200));
    // Then attempt 1 is recorded as failed (outcome unknown) and attempt 2 delivered after
    // the rule's backoff
    assert_eq!(sent, 1);
    assert_eq!(
        log.of("notification."),
        [
            "notification.triggered",
            "notification.sending",
            "notification.failed",
            "notification.sending",
            "notification.delivered"
        ]
    );
}

#[test]
fn old_events_and_events_before_the_rule_are_not_notified() {
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    exhausted_task(&mut log, t(0, 30));
    let mut n = Instance::new();
    // A day and more later, a notifier starting on this log sends nothing.
    assert_eq!(
        n.settle(&mut log, t(0, 31) + TimeDelta::hours(25), Ok(200)),
        0
    );
    assert_eq!(n.core.stale(), 1);
    // A rule defined after an event does not notify it.
    let mut log = Log::default();
    log.event(
        t(0, 0),
        rule(
            "late",
            vec![Trigger::AgentOffline],
            DeliveryRetry::default(),
        )
        .1,
    );
    let _ = exhausted_task(&mut log, t(0, 30));
    let mut n = Instance::new();
    assert_eq!(n.settle(&mut log, t(0, 31), Ok(200)), 0);
}

#[test]
fn rule_filters_by_policy_and_agent_name() {
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    let (_, event) = rule(
        "other",
        vec![Trigger::TaskExhausted],
        DeliveryRetry::default(),
    );
    let Event::Rule {
        rule: id,
        event: RuleEvent::Defined { mut spec },
    } = event
    else {
        unreachable!()
    };
    spec.policies = vec!["not-this-one".into()];
    log.event(
        t(0, 0),
        Event::Rule {
            rule: id,
            event: RuleEvent::Defined { spec },
        },
    );
    exhausted_task(&mut log, t(0, 30));
    let mut n = Instance::new();
    // Only the unfiltered rule "ops" notifies.
    assert_eq!(n.settle(&mut log, t(0, 31), Ok(200)), 1);
}

#[test]
fn a_policy_is_overdue_at_its_second_fire_without_success_and_catches_up() {
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    let (_, event) = rule(
        "late",
        vec![Trigger::PolicyOverdue, Trigger::PolicyCaughtUp],
        DeliveryRetry::default(),
    );
    log.event(t(0, 0), event);
    succeeded(&mut log, t(1, 25));
    let mut n = Instance::new();
    n.settle(&mut log, t(2, 59), Ok(200));
    assert!(log.types().is_empty(), "{:?}", log.types());
    n.settle(&mut log, t(3, 0), Ok(200));
    assert_eq!(log.of("assignment."), ["assignment.overdue"]);
    assert_eq!(n.core.overdue().count(), 1);
    // Overdue once, however often it looks.
    n.settle(&mut log, t(4, 30), Ok(200));
    let overdue = log
        .types()
        .iter()
        .filter(|t| **t == "assignment.overdue")
        .count();
    assert_eq!(overdue, 1);
    // A success catches it up, and both are notified.
    succeeded(&mut log, t(4, 40));
    n.settle(&mut log, t(4, 41), Ok(200));
    assert_eq!(n.core.overdue().count(), 0);
    let types = log.types();
    assert!(types.contains(&"assignment.caught_up"), "{types:?}");
    let delivered = types
        .iter()
        .filter(|t| **t == "notification.delivered")
        .count();
    assert_eq!(delivered, 2, "{types:?}");
}

#[test]
fn a_test_request_sends_a_test_notification() {
    let mut log = Log::default();
    let id = fleet(&mut log, DeliveryRetry::default());
    log.event(
        t(0, 5),
        Event::Rule {
            rule: id,
            event: RuleEvent::TestRequested { by: "ops".into() },
        },
    );
    let mut n = Instance::new();
    assert_eq!(n.settle(&mut log, t(0, 6), Ok(200)), 1);
}

#[test]
fn a_decommissioned_agent_is_never_overdue_even_after_its_policy_changes() {
    let mut log = Log::default();
    fleet(&mut log, DeliveryRetry::default());
    log.event(
        t(0, 10),
        Event::Agent {
            agent: AGENT,
            event: AgentEvent::Decommissioned,
        },
    );
    // The policy is paused and resumed (still assigned to the retired agent).
    for event in [PolicyEvent::Paused, PolicyEvent::Resumed] {
        log.event(
            t(0, 20),
            Event::Policy {
                policy: POLICY,
                event,
            },
        );
    }
    let mut n = Instance::new();
    n.settle(&mut log, t(6, 0), Ok(200));
    assert!(log.of("assignment.").is_empty(), "{:?}", log.types());
    assert_eq!(n.core.overdue().count(), 0);
}
