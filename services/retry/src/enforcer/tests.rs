//! The enforcer against an in-memory log that checks expected sequences like the store.

mod circuits;
mod retries;
mod snapshot;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{ErrorClass, Event, TaskError, TaskEvent};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::policy::{PolicySpec, RetryBudget};
use fleet_events::samples::{self, AGENT, POLICY, at};
use fleet_events::store::{Expect, Stored};

use super::*;

/// The event log: appends check `Expect` as JetStream does.
#[derive(Default)]
struct Log {
    events: Vec<Stored>,
    last: HashMap<String, u64>,
}

impl Log {
    fn push(&mut self, envelope: Envelope) -> Stored {
        let seq = self.events.len() as u64 + 1;
        let subject = envelope.subject();
        self.last.insert(subject.clone(), seq);
        let stored = Stored {
            seq,
            subject,
            envelope,
        };
        self.events.push(stored.clone());
        stored
    }

    /// Stores the decision unless its subject moved on.
    fn append(&mut self, decision: &ToAppend) -> Option<Stored> {
        let subject = decision.envelope.subject();
        let last = self.last.get(&subject).copied().unwrap_or(0);
        (decision.expect == Expect::LastSeq(last)).then(|| self.push(decision.envelope.clone()))
    }
}

/// A log and a live enforcer following it.
struct Given {
    log: Log,
    enforcer: Enforcer,
}

impl Given {
    fn new() -> Self {
        Self {
            log: Log::default(),
            enforcer: Enforcer::new(CircuitConfig::default()),
        }
    }

    /// Something else (scheduler, dispatcher, intake) appends `event` at `now`; the
    /// enforcer sees it live.
    fn event(&mut self, task: TaskId, event: TaskEvent, now: DateTime<Utc>) -> Vec<ToAppend> {
        let envelope = Envelope::new(samples::tenant(), now, Event::Task { task, event });
        let stored = self.log.push(envelope);
        self.enforcer.on_event(&stored, now)
    }

    /// Appends the enforcer's decisions and lets it see them come back; returns what was
    /// stored.
    fn commit(&mut self, decisions: &[ToAppend], now: DateTime<Utc>) -> Vec<Stored> {
        let mut stored = Vec::new();
        for d in decisions {
            if let Some(s) = self.log.append(d) {
                let more = self.enforcer.on_event(&s, now);
                assert!(more.is_empty(), "reading back its own decision: {more:?}");
                stored.push(s);
            }
        }
        stored
    }

    /// A task of `spec` scheduled on `agent` at `at(fire)`.
    fn scheduled(&mut self, agent: AgentId, fire: i64, spec: PolicySpec) -> TaskId {
        let task = TaskId::for_fire(POLICY, agent, at(fire));
        let event = TaskEvent::Scheduled {
            policy: POLICY,
            agent,
            fire_at: at(fire),
            run_at: at(fire),
            spec: Box::new(spec),
        };
        assert!(self.event(task, event, at(fire)).is_empty());
        task
    }

    /// Attempt `attempt` dispatched to `agent` and started at `now`.
    fn running(&mut self, task: TaskId, agent: AgentId, attempt: u32, now: DateTime<Utc>) {
        assert!(
            self.event(task, TaskEvent::Dispatched { agent, attempt }, now)
                .is_empty()
        );
        assert!(
            self.event(task, TaskEvent::Started { attempt }, now)
                .is_empty()
        );
    }

    /// A fresh enforcer fed the whole log.
    fn replayed(&self) -> Enforcer {
        let mut fresh = Enforcer::new(CircuitConfig::default());
        for stored in &self.log.events {
            fresh.apply(stored);
        }
        fresh
    }
}

fn failed(attempt: u32, class: ErrorClass) -> TaskEvent {
    TaskEvent::Failed {
        attempt,
        error: TaskError::new(class, "boom", Some(1)),
    }
}

fn with_budget(max_retries: u32) -> PolicySpec {
    PolicySpec {
        retry: RetryBudget {
            max_retries,
            ..RetryBudget::default()
        },
        ..samples::policy_spec()
    }
}

/// The task event of the only decision in `decisions`.
fn only_task_event(decisions: &[ToAppend]) -> &TaskEvent {
    match decisions {
        [
            ToAppend {
                envelope:
                    Envelope {
                        event: Event::Task { event, .. },
                        ..
                    },
                ..
            },
        ] => event,
        other => panic!("expected one task decision, got {other:?}"),
    }
}

/// Pending retries, sorted.
fn pending(enforcer: &Enforcer) -> Vec<(TaskId, DateTime<Utc>)> {
    let mut p: Vec<_> = enforcer.pending().collect();
    p.sort();
    p
}

/// A task decision with the same content regardless of the envelope id and time.
fn content(d: &ToAppend) -> (&Event, &str, Expect) {
    (&d.envelope.event, d.msg_id.as_str(), d.expect)
}
