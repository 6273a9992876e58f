//! The notifier's decisions, pure: events folded from the log and a time passed in →
//! events to append and notifications to deliver.
//!
//! Exactly once per rule and event: a notification's id is derived from (rule, event) and
//! its `notification.triggered` is appended with expected sequence 0; each attempt is
//! claimed (`notification.sending`) with the notification's last sequence before it is
//! sent, so of several notifier instances only one sends it, and its outcome is appended
//! after the claim. A claim left without an outcome for [`NotifierConfig::claim_timeout`]
//! (its sender died) is recorded as failed and the next attempt is made: the target may
//! then see the notification twice, with the same `Fleet-Notification-Id`.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AssignmentEvent, Event, Message, NotificationEvent, RuleEvent};
use fleet_events::ids::{
    AgentId, AssignmentId, NotificationId, PolicyId, RuleId, TaskId, TenantId,
};
use fleet_events::notify::{RuleSpec, Trigger};
use fleet_events::store::{Expect, Stored};

use super::facts::Facts;
use super::{overdue, render};

/// The notifier's settings.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// A claimed attempt with no outcome after this long was abandoned by its sender.
    pub claim_timeout: TimeDelta,
    /// Events older than this when first seen are not notified (a notifier started on a
    /// long log, or down for days, does not flood its targets with old news).
    pub max_age: TimeDelta,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            claim_timeout: TimeDelta::seconds(60),
            max_age: TimeDelta::hours(24),
        }
    }
}

/// The events this core decides, as every core returns them.
pub use fleet_events::store::ToAppend;

/// One attempt to deliver, once its claim is appended.
#[derive(Debug, Clone)]
pub struct Job {
    pub notification: NotificationId,
    pub tenant: TenantId,
    pub rule: RuleId,
    pub spec: RuleSpec,
    pub message: Message,
    pub attempt: u32,
}

/// What the service does next.
#[derive(Debug, Clone)]
pub enum Action {
    /// Append an event; `note` is released when done.
    Append {
        write: ToAppend,
        note: Option<NotificationId>,
    },
    /// Append the claim; if it is ours, deliver, then append [`Notifier::finished`].
    Deliver { claim: ToAppend, job: Box<Job> },
}

struct RuleFacts {
    tenant: TenantId,
    spec: RuleSpec,
    /// Events at or before this sequence are older than the rule.
    since_seq: u64,
    deleted: bool,
}

/// A notification triggered and not yet delivered or dead-lettered.
struct Note {
    envelope: Envelope,
    rule: RuleId,
    message: Message,
    seq: u64,
    /// Attempts with a recorded outcome.
    done: u32,
    /// The attempt claimed and when, until its outcome is recorded.
    claimed: Option<(u32, DateTime<Utc>)>,
    next_at: DateTime<Utc>,
    last_error: String,
}

/// A notification decided but not yet in the log.
struct Planned {
    rule: RuleId,
    source: Envelope,
    message: Message,
}

struct Watch {
    tenant: TenantId,
    policy: PolicyId,
    agent: AgentId,
    last_success: Option<(DateTime<Utc>, TaskId)>,
    /// While overdue: the last success `assignment.overdue` named (a later one catches
    /// up).
    overdue: Option<Option<DateTime<Utc>>>,
    seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Note(NotificationId),
    Watch(AssignmentId),
}

/// The notifier's state.
pub struct Notifier {
    config: NotifierConfig,
    facts: Facts,
    rules: HashMap<RuleId, RuleFacts>,
    planned: HashMap<NotificationId, Planned>,
    notes: HashMap<NotificationId, Note>,
    watches: HashMap<AssignmentId, Watch>,
    timers: BTreeSet<(DateTime<Utc>, Key)>,
    timer_of: HashMap<Key, DateTime<Utc>>,
    in_flight: HashSet<NotificationId>,
    stale: u64,
}

impl Notifier {
    pub fn new(config: NotifierConfig) -> Self {
        Self {
            config,
            facts: Facts::default(),
            rules: HashMap::new(),
            planned: HashMap::new(),
            notes: HashMap::new(),
            watches: HashMap::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
            in_flight: HashSet::new(),
            stale: 0,
        }
    }

    /// Folds one stored event.
    pub fn apply(&mut self, stored: &Stored) {
        let env = &stored.envelope;
        let tenant = &env.tenant;
        let mut task_facts = None;
        match &env.event {
            Event::Agent { agent, event } => {
                self.facts.agent(tenant, *agent, event);
                if self
                    .facts
                    .agents
                    .get(agent)
                    .is_some_and(|a| a.decommissioned)
                {
                    let gone: Vec<_> = self
                        .watches
                        .iter()
                        .filter(|(_, w)| w.agent == *agent)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in gone {
                        self.drop_watch(id);
                    }
                }
            }
            Event::Policy { policy, event } => {
                self.facts.policy(tenant, *policy, event, env.at);
                self.refresh_policy(*policy);
            }
            Event::Task { task, event } => {
                task_facts = self.facts.task(tenant, *task, event);
                if let (fleet_events::event::TaskEvent::Succeeded { .. }, Some(t)) =
                    (event, &task_facts)
                    && t.kind.is_scheduled()
                {
                    let id = AssignmentId::for_pair(t.policy, t.agent);
                    if let Some(w) = self.watches.get_mut(&id) {
                        w.last_success = Some((env.at, *task));
                        self.refresh_watch(id);
                    }
                }
            }
            Event::Rule { rule, .. } => self.apply_rule(*rule, stored),
            Event::Notification {
                notification,
                event,
            } => self.apply_note(*notification, stored, event),
            Event::Assignment { assignment, event } => {
                if let Some(w) = self.watches.get_mut(assignment) {
                    w.seq = stored.seq;
                    w.overdue = match event {
                        AssignmentEvent::Overdue { last_success, .. } => Some(*last_success),
                        AssignmentEvent::CaughtUp { .. } => None,
                    };
                    self.refresh_watch(*assignment);
                }
            }
            Event::Tenant(_) | Event::Repo { .. } => {}
        }
        let wanted = render::trigger(&env.event).is_some_and(|trigger| {
            self.rules.values().any(|r| {
                !r.deleted && r.tenant == env.tenant && r.spec.triggers().contains(&trigger)
            })
        });
        if wanted && let Some(message) = render::message(env, &self.facts, task_facts.as_ref()) {
            self.plan(stored, message);
        }
    }

    fn apply_rule(&mut self, rule: RuleId, stored: &Stored) {
        let env = &stored.envelope;
        let Event::Rule { event, .. } = &env.event else {
            return;
        };
        match event {
            RuleEvent::Defined { spec } => {
                let entry = self.rules.entry(rule).or_insert_with(|| RuleFacts {
                    tenant: env.tenant.clone(),
                    spec: (**spec).clone(),
                    since_seq: stored.seq,
                    deleted: false,
                });
                if entry.deleted {
                    entry.since_seq = stored.seq;
                    entry.deleted = false;
                }
                entry.spec = (**spec).clone();
            }
            RuleEvent::Deleted => {
                if let Some(r) = self.rules.get_mut(&rule) {
                    r.deleted = true;
                }
            }
            RuleEvent::TestRequested { by } => {
                if let Some(r) = self.rules.get(&rule).filter(|r| !r.deleted) {
                    let message = render::test_message(env, &r.spec.name, by);
                    let id = NotificationId::for_event(rule, env.id);
                    self.planned.insert(
                        id,
                        Planned {
                            rule,
                            source: env.clone(),
                            message,
                        },
                    );
                }
            }
        }
    }

    fn apply_note(&mut self, id: NotificationId, stored: &Stored, event: &NotificationEvent) {
        let env = &stored.envelope;
        match event {
            NotificationEvent::Triggered { rule, message, .. } => {
                self.planned.remove(&id);
                self.notes.insert(
                    id,
                    Note {
                        envelope: env.clone(),
                        rule: *rule,
                        message: (**message).clone(),
                        seq: stored.seq,
                        done: 0,
                        claimed: None,
                        next_at: env.at,
                        last_error: String::new(),
                    },
                );
            }
            NotificationEvent::Sending { attempt } => {
                if let Some(n) = self.notes.get_mut(&id) {
                    n.seq = stored.seq;
                    n.claimed = Some((*attempt, env.at));
                }
            }
            NotificationEvent::Failed {
                attempt,
                error,
                retry_at,
            } => {
                if let Some(n) = self.notes.get_mut(&id) {
                    n.seq = stored.seq;
                    n.claimed = None;
                    n.done = *attempt;
                    n.next_at = *retry_at;
                    n.last_error.clone_from(error);
                }
            }
            NotificationEvent::Delivered { .. } | NotificationEvent::DeadLettered { .. } => {
                self.notes.remove(&id);
                self.unschedule(Key::Note(id));
                return;
            }
        }
        self.refresh_note(id);
    }

    /// Plans a notification of every rule `message` matches.
    fn plan(&mut self, stored: &Stored, message: Message) {
        let env = &stored.envelope;
        let Some(trigger) = message.trigger else {
            return;
        };
        for (id, rule) in &self.rules {
            if rule.deleted
                || rule.tenant != env.tenant
                || stored.seq <= rule.since_seq
                || !matches(&rule.spec, trigger, &message)
            {
                continue;
            }
            let note = NotificationId::for_event(*id, env.id);
            if self.notes.contains_key(&note) {
                continue;
            }
            self.planned.insert(
                note,
                Planned {
                    rule: *id,
                    source: env.clone(),
                    message: message.clone(),
                },
            );
        }
    }

    /// What is due at `now`: notifications to trigger, attempts to make or to give up on,
    /// assignments overdue or caught up. Call it once caught up with the log.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Action> {
        let mut out = Vec::new();
        let planned: Vec<NotificationId> = self
            .planned
            .keys()
            .filter(|id| !self.in_flight.contains(id))
            .copied()
            .collect();
        for id in planned {
            let Some(p) = self.planned.get(&id) else {
                continue;
            };
            if p.message.at < now - self.config.max_age {
                self.planned.remove(&id);
                self.stale += 1;
                continue;
            }
            let envelope = Envelope::caused_by(
                &p.source,
                now,
                Event::Notification {
                    notification: id,
                    event: NotificationEvent::Triggered {
                        rule: p.rule,
                        source: p.source.id,
                        message: Box::new(p.message.clone()),
                    },
                },
            );
            self.in_flight.insert(id);
            out.push(Action::Append {
                write: ToAppend {
                    envelope,
                    msg_id: format!("notify:{id}"),
                    expect: Expect::LastSeq(0),
                },
                note: Some(id),
            });
        }
        while let Some(&(at, key)) = self.timers.first() {
            if at > now {
                break;
            }
            self.unschedule(key);
            match key {
                Key::Note(id) => {
                    if let Some(action) = self.note_due(id, now) {
                        self.in_flight.insert(id);
                        out.push(action);
                    }
                }
                Key::Watch(id) => out.extend(self.watch_due(id, now)),
            }
        }
        out
    }

    fn note_due(&mut self, id: NotificationId, now: DateTime<Utc>) -> Option<Action> {
        if self.in_flight.contains(&id) {
            return None;
        }
        let note = self.notes.get(&id)?;
        let rule = self.rules.get(&note.rule);
        let write = |event| ToAppend {
            envelope: Envelope::caused_by(
                &note.envelope,
                now,
                Event::Notification {
                    notification: id,
                    event,
                },
            ),
            msg_id: String::new(),
            expect: Expect::LastSeq(note.seq),
        };
        let Some(rule) = rule.filter(|r| !r.deleted) else {
            let mut w = write(NotificationEvent::DeadLettered {
                attempts: note.done,
                error: "the rule was deleted".into(),
            });
            w.msg_id = format!("notify-dead:{id}");
            return Some(Action::Append {
                write: w,
                note: Some(id),
            });
        };
        if let Some((attempt, _)) = note.claimed {
            // Its sender died (ours is in flight, and was excluded above).
            let error = "the notifier sending this attempt stopped; its outcome is unknown";
            let mut w = write(outcome_event(&rule.spec, attempt, Err(error.into()), now));
            w.msg_id = format!("notify-abandoned:{id}:{attempt}");
            return Some(Action::Append {
                write: w,
                note: Some(id),
            });
        }
        let attempt = note.done + 1;
        let mut claim = write(NotificationEvent::Sending { attempt });
        claim.msg_id = format!("notify-send:{id}:{attempt}");
        Some(Action::Deliver {
            claim,
            job: Box::new(Job {
                notification: id,
                tenant: note.envelope.tenant.clone(),
                rule: note.rule,
                spec: rule.spec.clone(),
                message: note.message.clone(),
                attempt,
            }),
        })
    }

    /// The outcome of `job`'s attempt, to append after its claim (at `claim_seq`).
    pub fn finished(
        &self,
        job: &Job,
        claim: &Envelope,
        claim_seq: u64,
        result: Result<u16, String>,
        now: DateTime<Utc>,
    ) -> ToAppend {
        let event = outcome_event(&job.spec, job.attempt, result, now);
        ToAppend {
            envelope: Envelope::caused_by(
                claim,
                now,
                Event::Notification {
                    notification: job.notification,
                    event,
                },
            ),
            msg_id: format!("notify-outcome:{}:{}", job.notification, job.attempt),
            expect: Expect::LastSeq(claim_seq),
        }
    }

    /// The action for `id` is over (whatever its outcome): its next step comes from the log.
    pub fn release(&mut self, id: NotificationId, now: DateTime<Utc>) {
        self.in_flight.remove(&id);
        if self.notes.contains_key(&id) {
            // In case the log does not move (a lost race), look again shortly.
            self.schedule(Key::Note(id), now + TimeDelta::seconds(5));
        }
    }

    fn watch_due(&mut self, id: AssignmentId, now: DateTime<Utc>) -> Option<Action> {
        let w = self.watches.get(&id)?;
        let (event, msg_id) = match (w.overdue, w.last_success) {
            (Some(overdue), Some((at, task))) if caught_up(overdue, at) => (
                AssignmentEvent::CaughtUp {
                    policy: w.policy,
                    agent: w.agent,
                    task,
                    succeeded_at: at,
                },
                format!("caught-up:{id}:{task}"),
            ),
            (Some(_), _) => return None,
            (None, last) => {
                let policy = self.facts.policies.get(&w.policy)?;
                let assigned_at = *policy.agents.get(&w.agent)?;
                let last = last.map(|(at, _)| at);
                let due = overdue::due_at(policy, assigned_at, last)?;
                if due > now {
                    self.schedule(Key::Watch(id), due);
                    return None;
                }
                (
                    AssignmentEvent::Overdue {
                        policy: w.policy,
                        agent: w.agent,
                        due,
                        last_success: last,
                    },
                    format!("overdue:{id}:{}", due.timestamp_micros()),
                )
            }
        };
        let write = ToAppend {
            envelope: Envelope::new(
                w.tenant.clone(),
                now,
                Event::Assignment {
                    assignment: id,
                    event,
                },
            ),
            msg_id,
            expect: Expect::LastSeq(w.seq),
        };
        // Looked at again shortly if the log does not move (a lost race).
        self.schedule(Key::Watch(id), now + TimeDelta::seconds(5));
        Some(Action::Append { write, note: None })
    }

    /// Keeps a watch for every assignment of `policy`, and drops the others.
    fn refresh_policy(&mut self, policy: PolicyId) {
        let Some(p) = self.facts.policies.get(&policy) else {
            return;
        };
        // A decommissioned agent is never judged, even while still assigned.
        let retired = |a: &AgentId| self.facts.agents.get(a).is_some_and(|a| a.decommissioned);
        let assigned: Vec<AgentId> = p.agents.keys().filter(|a| !retired(a)).copied().collect();
        let tenant = p.tenant.clone();
        let stale: Vec<AssignmentId> = self
            .watches
            .iter()
            .filter(|(_, w)| w.policy == policy && !assigned.contains(&w.agent))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.drop_watch(id);
        }
        for agent in assigned {
            let id = AssignmentId::for_pair(policy, agent);
            self.watches.entry(id).or_insert_with(|| Watch {
                tenant: tenant.clone(),
                policy,
                agent,
                last_success: None,
                overdue: None,
                seq: 0,
            });
            self.refresh_watch(id);
        }
    }

    fn refresh_watch(&mut self, id: AssignmentId) {
        let Some(w) = self.watches.get(&id) else {
            return;
        };
        let at = match (w.overdue, w.last_success) {
            (Some(overdue), Some((at, _))) if caught_up(overdue, at) => {
                Some(DateTime::<Utc>::MIN_UTC)
            }
            (Some(_), _) => None,
            (None, last) => self.facts.policies.get(&w.policy).and_then(|p| {
                let assigned_at = *p.agents.get(&w.agent)?;
                overdue::due_at(p, assigned_at, last.map(|(at, _)| at))
            }),
        };
        match at {
            Some(at) => self.schedule(Key::Watch(id), at),
            None => self.unschedule(Key::Watch(id)),
        }
    }

    fn drop_watch(&mut self, id: AssignmentId) {
        self.watches.remove(&id);
        self.unschedule(Key::Watch(id));
    }

    fn refresh_note(&mut self, id: NotificationId) {
        let Some(n) = self.notes.get(&id) else {
            return;
        };
        let at = match n.claimed {
            Some((_, at)) => at + self.config.claim_timeout,
            None => n.next_at,
        };
        self.schedule(Key::Note(id), at);
    }

    fn schedule(&mut self, key: Key, at: DateTime<Utc>) {
        self.unschedule(key);
        self.timers.insert((at, key));
        self.timer_of.insert(key, at);
    }

    fn unschedule(&mut self, key: Key) {
        if let Some(at) = self.timer_of.remove(&key) {
            self.timers.remove(&(at, key));
        }
    }

    /// When [`Notifier::due`] next has something to do; `Some(now-ish)` if work is planned.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let timer = self.timers.first().map(|(at, _)| *at);
        if self.planned.keys().any(|id| !self.in_flight.contains(id)) {
            return Some(DateTime::<Utc>::MIN_UTC);
        }
        timer
    }

    /// Notifications triggered and not yet delivered or dead-lettered.
    pub fn pending(&self) -> usize {
        self.notes.len()
    }

    /// Events not notified because they were older than the configured age.
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Assignments overdue now, by tenant, policy and agent: what the gauge shows.
    pub fn overdue(&self) -> impl Iterator<Item = (&TenantId, PolicyId, AgentId)> + '_ {
        self.watches
            .values()
            .filter(|w| w.overdue.is_some())
            .map(|w| (&w.tenant, w.policy, w.agent))
    }

    /// The facts, for names in logs and metrics.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }
}

/// Whether a success at `at` ends an overdue spell that named `last` as its last success.
fn caught_up(last: Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
    last.is_none_or(|last| at > last)
}

/// Whether `spec` reacts to `trigger` with this message's policy and agent.
fn matches(spec: &RuleSpec, trigger: Trigger, message: &Message) -> bool {
    let named = |filter: &[String], name: Option<&str>| {
        filter.is_empty() || name.is_some_and(|n| filter.iter().any(|f| f == n))
    };
    spec.triggers().contains(&trigger)
        && named(
            &spec.policies,
            message.policy.as_ref().map(|p| p.name.as_str()),
        )
        && named(
            &spec.agents,
            message.agent.as_ref().map(|a| a.name.as_str()),
        )
}

/// The event recording an attempt's result: delivered, failed with its next attempt, or
/// dead-lettered when the rule's budget is spent.
fn outcome_event(
    spec: &RuleSpec,
    attempt: u32,
    result: Result<u16, String>,
    now: DateTime<Utc>,
) -> NotificationEvent {
    match result {
        Ok(status) => NotificationEvent::Delivered { attempt, status },
        Err(error) if attempt >= spec.retry.max_attempts => NotificationEvent::DeadLettered {
            attempts: attempt,
            error,
        },
        Err(error) => NotificationEvent::Failed {
            attempt,
            error,
            retry_at: now + backoff(spec, attempt),
        },
    }
}

/// The wait after failed attempt `attempt`: base · 2^(attempt−1), capped.
pub fn backoff(spec: &RuleSpec, attempt: u32) -> TimeDelta {
    let r = &spec.retry;
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1).min(30))
        .unwrap_or(u64::MAX);
    let secs = r
        .base_delay_secs
        .saturating_mul(factor)
        .min(r.max_delay_secs);
    TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}
