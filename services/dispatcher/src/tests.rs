//! Dispatcher tests, given/when/then: given a log (and heartbeats), when a plan runs at a
//! time, then these dispatches and these reasons to wait. Helpers here; scenarios by theme
//! in `tests/`.

mod circuit;
mod holds;
mod inflight;
mod limits;
mod liveness;
mod order;
mod owed;
mod snapshot;
mod timeouts;

use chrono::{DateTime, Utc};
use fleet_events::envelope::{Envelope, SCHEMA_VERSION};
use fleet_events::event::{AgentEvent, Event, RunDetail, RunSummary, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::protocol::{Heartbeat, KindCounts};
use fleet_events::samples::{self, AGENT, POLICY};
use fleet_events::settings::{AgentSettings, KindLimits};
use fleet_events::store::Stored;
use uuid::Uuid;

use super::{AdmitAll, Dispatch, DispatchConfig, Fleet, RepoGate};

/// The `n`th test agent (`AGENT` is the 0th).
fn agent(n: u128) -> AgentId {
    AgentId::from_uuid(Uuid::from_u128(AGENT.uuid().as_u128() + n))
}

/// The `n`th test policy (`POLICY` is the 0th).
fn policy(n: u128) -> PolicyId {
    PolicyId::from_uuid(Uuid::from_u128(POLICY.uuid().as_u128() + n))
}

fn at(secs: i64) -> DateTime<Utc> {
    samples::at(secs)
}

/// A policy of `kind` at `priority` on the repository at `url`.
fn spec(kind: TaskKind, priority: u8, url: &str) -> PolicySpec {
    let mut spec = samples::policy_spec();
    spec.kind = kind;
    spec.priority = priority;
    spec.repository.url = url.into();
    spec
}

fn backup(priority: u8) -> PolicySpec {
    spec(TaskKind::Backup, priority, "/srv/restic/a")
}

/// A total limit and an optional backup limit.
fn limits(total: u16, backup: Option<u16>) -> AgentSettings {
    AgentSettings {
        max_concurrent: total,
        per_kind: KindLimits {
            backup,
            ..KindLimits::default()
        },
        ..AgentSettings::default()
    }
}

/// The log so far and a dispatcher fed with it, stream sequence by stream sequence.
struct World {
    fleet: Fleet,
    log: Vec<Stored>,
    /// Policies handed out by `schedule`, so each task has its own.
    policies: u128,
}

impl World {
    fn new() -> Self {
        Self::with(DispatchConfig::default())
    }

    fn with(config: DispatchConfig) -> Self {
        Self {
            fleet: Fleet::new(config),
            log: Vec::new(),
            policies: 0,
        }
    }

    /// Appends `event` at `secs` to the log and applies it.
    fn event(&mut self, secs: i64, event: Event) -> &mut Self {
        let stored = self.next(secs, event);
        self.fleet.apply_stored(&stored);
        self.log.push(stored);
        self
    }

    /// `event` at `secs` as the log would store it next, not yet applied.
    fn next(&self, secs: i64, event: Event) -> Stored {
        let envelope = Envelope::new(samples::tenant(), at(secs), event);
        Stored {
            seq: self.log.len() as u64 + 1,
            subject: envelope.subject(),
            envelope,
        }
    }

    fn on_agent(&mut self, secs: i64, agent: AgentId, event: AgentEvent) -> &mut Self {
        self.event(secs, Event::Agent { agent, event })
    }

    fn register(&mut self, agent: AgentId, settings: AgentSettings) -> &mut Self {
        let registered = AgentEvent::Registered {
            name: "db".into(),
            hostname: "db.example.net".into(),
            settings,
        };
        self.on_agent(0, agent, registered)
    }

    fn on_task(&mut self, secs: i64, task: TaskId, event: TaskEvent) -> &mut Self {
        self.event(secs, Event::Task { task, event })
    }

    /// Schedules a task of `spec` on `agent`, fired at `fire` and due at `run`.
    fn schedule_at(&mut self, agent: AgentId, fire: i64, run: i64, spec: PolicySpec) -> TaskId {
        self.policies += 1;
        let policy = policy(self.policies);
        let task = TaskId::for_fire(policy, agent, at(fire));
        let scheduled = TaskEvent::Scheduled {
            policy,
            agent,
            fire_at: at(fire),
            run_at: at(run),
            spec: Box::new(spec),
        };
        self.on_task(fire, task, scheduled);
        task
    }

    /// Schedules a task of `spec` on `agent`, due when it fires at `secs`.
    fn schedule(&mut self, agent: AgentId, secs: i64, spec: PolicySpec) -> TaskId {
        self.schedule_at(agent, secs, secs, spec)
    }

    fn plan(&mut self, secs: i64) -> Vec<Dispatch> {
        self.plan_with(secs, &mut AdmitAll)
    }

    fn plan_with(&mut self, secs: i64, gate: &mut impl RepoGate) -> Vec<Dispatch> {
        self.fleet.plan(at(secs), gate)
    }

    /// Appends the dispatches' events, as the service would.
    fn confirm(&mut self, dispatches: &[Dispatch]) -> &mut Self {
        for d in dispatches {
            let secs = (d.envelope.at - at(0)).num_seconds();
            self.event(secs, d.envelope.event.clone());
        }
        self
    }

    /// Starts and finishes attempt `attempt` of `task` successfully.
    fn succeed(&mut self, secs: i64, task: TaskId, attempt: u32) -> &mut Self {
        let summary = RunSummary {
            kind: TaskKind::Backup,
            duration_ms: 1000,
            detail: RunDetail::Check,
        };
        self.on_task(secs, task, TaskEvent::Started { attempt })
            .on_task(secs, task, TaskEvent::Succeeded { attempt, summary })
    }

    fn heartbeat(&mut self, secs: i64, agent: AgentId, queued: KindCounts) -> &mut Self {
        self.fleet
            .observe_heartbeat(&heartbeat(secs, agent, queued), at(secs));
        self
    }
}

/// `agent`'s heartbeat sent at `secs`, with `queued` waiting on it.
fn heartbeat(secs: i64, agent: AgentId, queued: KindCounts) -> Heartbeat {
    Heartbeat {
        schema: SCHEMA_VERSION,
        agent,
        tenant: samples::tenant(),
        at: at(secs),
        running: KindCounts::default(),
        queued,
        agent_version: "0.1.0".into(),
        restic_version: "0.18.0".into(),
        outbox_depth: 0,
        every_secs: 0,
    }
}

/// The tasks of a plan, in order.
fn tasks(plan: &[Dispatch]) -> Vec<TaskId> {
    plan.iter().map(|d| d.task).collect()
}
