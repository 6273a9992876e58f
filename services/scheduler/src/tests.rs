//! Scheduler tests, given/when/then: given a log, when the clock reaches a time, then these
//! decisions. Helpers here; scenarios by theme in `tests/`.

mod firing;
mod instances;
mod lifecycle;
mod missed;
mod overlap;
mod scale;
mod snapshot;

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, PolicyEvent, SkipReason, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::{MissedRun, Overlap, PolicySpec};
use fleet_events::samples::{self, AGENT, POLICY};
use fleet_events::schedule::Schedule;
use uuid::Uuid;

use super::{Decision, Outcome, Scheduler, jitter_for, msg_id};

/// The `n`th test agent (`AGENT` is the 0th).
fn agent(n: u128) -> AgentId {
    AgentId::from_uuid(Uuid::from_u128(AGENT.uuid().as_u128() + n))
}

/// The `n`th test policy (`POLICY` is the 0th).
fn policy(n: u128) -> PolicyId {
    PolicyId::from_uuid(Uuid::from_u128(POLICY.uuid().as_u128() + n))
}

/// 03:00 UTC on the sample day (the first full hour after `samples::at(0)`) plus `h` hours.
fn hour(h: i64) -> DateTime<Utc> {
    samples::at(2800 + h * 3600)
}

fn mins(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

fn cron(expr: &str) -> Schedule {
    Schedule::Cron {
        expr: expr.into(),
        timezone: "UTC".into(),
    }
}

/// `0 * * * *` in UTC, overlap allowed, a missed run made up within an hour.
fn hourly() -> PolicySpec {
    PolicySpec {
        schedule: cron("0 * * * *"),
        overlap: Overlap::Allow,
        missed: MissedRun::RunOnce {
            starting_deadline_secs: 3600,
        },
        ..samples::policy_spec()
    }
}

fn on_policy(policy: PolicyId, at: DateTime<Utc>, event: PolicyEvent) -> Envelope {
    Envelope::new(samples::tenant(), at, Event::Policy { policy, event })
}

fn created(policy: PolicyId, spec: PolicySpec, at: DateTime<Utc>) -> Envelope {
    let spec = Box::new(spec);
    on_policy(policy, at, PolicyEvent::Created { spec })
}

fn assigned(policy: PolicyId, agent: AgentId, at: DateTime<Utc>) -> Envelope {
    on_policy(policy, at, PolicyEvent::AssignedToAgent { agent })
}

fn on_task(task: TaskId, at: DateTime<Utc>, event: TaskEvent) -> Envelope {
    Envelope::new(samples::tenant(), at, Event::Task { task, event })
}

/// `spec` created at `samples::at(0)` and assigned to `agents` at once.
fn policy_on(spec: PolicySpec, agents: &[AgentId]) -> Vec<Envelope> {
    let mut log = vec![created(POLICY, spec, samples::at(0))];
    log.extend(agents.iter().map(|a| assigned(POLICY, *a, samples::at(0))));
    log
}

fn given(log: &[Envelope]) -> Scheduler {
    let mut s = Scheduler::new();
    for env in log {
        s.apply(env);
    }
    s
}

/// The events of `decisions`, in append order, as the log would hold them.
fn events(decisions: &[Decision]) -> Vec<Envelope> {
    let mut out = Vec::new();
    for d in decisions {
        out.extend(d.cancels.iter().map(|c| c.envelope.clone()));
        out.push(d.envelope.clone());
    }
    out
}

/// Appends `decisions` to `log` and feeds them to `s`, as the IO layer and the log would.
fn record(s: &mut Scheduler, log: &mut Vec<Envelope>, decisions: &[Decision]) {
    for env in events(decisions) {
        s.apply(&env);
        log.push(env);
    }
}

/// Everything of a decision but the envelopes' ids and times, which differ per instance.
type Key = (
    TenantId,
    (PolicyId, AgentId, DateTime<Utc>, Outcome, TaskId, String),
    Event,
    Vec<(TaskId, String, Event)>,
);

fn key(d: &Decision) -> Key {
    let cancels = d.cancels.iter();
    (
        d.tenant.clone(),
        (
            d.policy,
            d.agent,
            d.fire_at,
            d.outcome,
            d.task,
            d.msg_id.clone(),
        ),
        d.envelope.event.clone(),
        cancels
            .map(|c| (c.task, c.msg_id.clone(), c.envelope.event.clone()))
            .collect(),
    )
}

fn outcomes(decisions: &[Decision]) -> Vec<(AgentId, DateTime<Utc>, Outcome)> {
    decisions
        .iter()
        .map(|d| (d.agent, d.fire_at, d.outcome))
        .collect()
}
