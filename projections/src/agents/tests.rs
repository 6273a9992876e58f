//! The agent read model without a server: registration and liveness, held tasks and
//! saturation, backoff, placeholders, what it rejects, redelivery, rebuilds and batches.

use fleet_events::envelope::Envelope;
use fleet_events::event::{
    AgentEvent, ErrorClass, Event, EventType, LostReason, TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, TaskId, TenantId};
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::protocol::KindCounts;
use fleet_events::samples::{self, AGENT, POLICY};
use fleet_events::settings::{AgentSettings, KindLimits};
use fleet_events::store::Stored;

use super::*;
use crate::runtime::Outcome;

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

/// A model on a temporary database, and the log applied to it.
struct Fleet {
    _dir: tempfile::TempDir,
    model: Checkpointed<Agents>,
    log: Vec<Stored>,
}

impl Fleet {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = Checkpointed::open(dir.path(), Agents).unwrap();
        Self {
            _dir: dir,
            model,
            log: Vec::new(),
        }
    }

    /// Appends `event` of `tenant` at the next sequence (its time is `at(seq)`) and
    /// applies it.
    fn push(&mut self, tenant: &TenantId, event: Event) -> Outcome {
        let seq = self.log.len() as u64 + 1;
        let envelope = Envelope::new(tenant.clone(), samples::at(seq as i64), event);
        let stored = Stored {
            seq,
            subject: envelope.subject(),
            envelope,
        };
        self.log.push(stored.clone());
        self.model.apply(Ok(stored)).unwrap()
    }

    fn agent(&mut self, tenant: &TenantId, agent: AgentId, event: AgentEvent) -> Outcome {
        self.push(tenant, Event::Agent { agent, event })
    }

    fn task(&mut self, tenant: &TenantId, task: TaskId, event: TaskEvent) -> Outcome {
        self.push(tenant, Event::Task { task, event })
    }

    fn register(&mut self, tenant: &TenantId, agent: AgentId, name: &str, settings: AgentSettings) {
        let event = AgentEvent::Registered {
            name: name.into(),
            hostname: format!("{name}.example.net"),
            settings,
        };
        assert_eq!(self.agent(tenant, agent, event), Outcome::Applied);
    }

    /// Schedules a new task of `kind` on `agent` and dispatches its first attempt.
    fn dispatch(&mut self, tenant: &TenantId, agent: AgentId, kind: TaskKind) -> TaskId {
        let task = TaskId::generate();
        assert_eq!(
            self.task(tenant, task, scheduled(agent, kind)),
            Outcome::Applied
        );
        assert_eq!(
            self.task(tenant, task, TaskEvent::Dispatched { agent, attempt: 1 }),
            Outcome::Applied
        );
        task
    }

    /// Fails attempt `attempt` of `task` and schedules its retry at `at(due)`.
    fn back_off(&mut self, tenant: &TenantId, task: TaskId, attempt: u32, due: i64) {
        let failed = TaskEvent::Failed {
            attempt,
            error: TaskError::new(ErrorClass::Network, "unreachable", Some(1)),
        };
        let retry = TaskEvent::RetryScheduled {
            attempt,
            due_at: samples::at(due),
            delay_ms: 1000,
        };
        assert_eq!(self.task(tenant, task, failed), Outcome::Applied);
        assert_eq!(self.task(tenant, task, retry), Outcome::Applied);
    }

    fn view(&self, agent: AgentId) -> AgentView {
        self.model.agent(agent).unwrap().unwrap()
    }
}

fn scheduled(agent: AgentId, kind: TaskKind) -> TaskEvent {
    TaskEvent::Scheduled {
        policy: POLICY,
        agent,
        fire_at: samples::at(0),
        run_at: samples::at(0),
        spec: Box::new(PolicySpec {
            kind,
            ..samples::policy_spec()
        }),
    }
}

fn counts(backup: u16, check: u16, prune: u16) -> KindCounts {
    KindCounts {
        backup,
        check,
        prune,
        ..KindCounts::default()
    }
}

fn limits(max_concurrent: u16, per_kind: KindLimits) -> AgentSettings {
    AgentSettings {
        max_concurrent,
        per_kind,
        ..AgentSettings::default()
    }
}

#[test]
fn registration_settings_and_liveness_are_kept() {
    let mut fleet = Fleet::new();
    let acme = tenant("acme");
    fleet.register(&acme, AGENT, "db-1", AgentSettings::default());
    let view = fleet.view(AGENT);
    assert!(view.registered);
    assert_eq!((view.tenant.clone(), view.agent), (acme.clone(), AGENT));
    assert_eq!(
        (view.name.as_str(), view.hostname.as_str()),
        ("db-1", "db-1.example.net")
    );
    assert_eq!(view.registered_at, Some(samples::at(1)));
    assert_eq!(
        (view.online, view.last_seen, view.decommissioned),
        (false, None, false)
    );

    let settings = samples::agent_settings();
    let changed = AgentEvent::SettingsChanged {
        settings: settings.clone(),
    };
    fleet.agent(&acme, AGENT, changed);
    assert_eq!(fleet.view(AGENT).settings, settings);

    let online = AgentEvent::CameOnline {
        agent_version: "0.2.0".into(),
        restic_version: "0.16.4".into(),
    };
    fleet.agent(&acme, AGENT, online);
    let view = fleet.view(AGENT);
    assert!(view.online);
    assert_eq!(view.last_seen, Some(samples::at(3)));
    assert_eq!(view.agent_version.as_deref(), Some("0.2.0"));
    assert_eq!(view.restic_version.as_deref(), Some("0.16.4"));

    let offline = AgentEvent::WentOffline {
        last_seen: samples::at(-5),
    };
    fleet.agent(&acme, AGENT, offline);
    let view = fleet.view(AGENT);
    assert!(!view.online);
    assert_eq!(view.last_seen, Some(samples::at(-5)));
    assert_eq!(
        view.agent_version.as_deref(),
        Some("0.2.0"),
        "versions stay"
    );

    fleet.agent(&acme, AGENT, AgentEvent::Decommissioned);
    assert!(fleet.view(AGENT).decommissioned);
    assert_eq!(fleet.view(AGENT).registered_at, Some(samples::at(1)));
}

#[test]
fn agents_are_listed_per_tenant_by_name() {
    let mut fleet = Fleet::new();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (zulu, alpha, other) = (
        AgentId::generate(),
        AgentId::generate(),
        AgentId::generate(),
    );
    fleet.register(&acme, zulu, "zulu", AgentSettings::default());
    fleet.register(&acme, alpha, "alpha", AgentSettings::default());
    fleet.register(&globex, other, "alpha", AgentSettings::default());
    let names: Vec<_> = fleet
        .model
        .list(&acme)
        .unwrap()
        .into_iter()
        .map(|v| v.agent)
        .collect();
    assert_eq!(names, [alpha, zulu]);
    assert_eq!(fleet.model.list(&globex).unwrap().len(), 1);
    assert!(fleet.model.list(&tenant("initech")).unwrap().is_empty());
    assert_eq!(fleet.model.agent(AgentId::generate()).unwrap(), None);
}

#[test]
fn a_task_on_an_unknown_agent_makes_a_placeholder() {
    let mut fleet = Fleet::new();
    let acme = tenant("acme");
    let stranger = AgentId::generate();
    let task = TaskId::generate();
    fleet.task(&acme, task, scheduled(stranger, TaskKind::Backup));
    let queued = fleet.view(stranger);
    assert!(!queued.registered, "a placeholder counts the queued task");
    assert_eq!(
        (queued.queued, queued.running),
        (counts(1, 0, 0), counts(0, 0, 0))
    );
    let dispatched = TaskEvent::Dispatched {
        agent: stranger,
        attempt: 1,
    };
    assert_eq!(fleet.task(&acme, task, dispatched), Outcome::Applied);
    let view = fleet.view(stranger);
    assert!(!view.registered);
    assert_eq!(
        (view.tenant.clone(), view.name.as_str()),
        (acme.clone(), "")
    );
    assert_eq!((view.registered_at, view.running), (None, counts(1, 0, 0)));
    assert_eq!(fleet.model.list(&acme).unwrap(), [view]);

    fleet.register(&acme, stranger, "late", samples::agent_settings());
    let view = fleet.view(stranger);
    assert!(view.registered);
    assert_eq!(view.name, "late");
    assert_eq!(view.running, counts(1, 0, 0), "what it held is kept");
}

#[test]
fn events_of_another_tenant_or_on_the_wrong_subject_are_rejected() {
    let mut fleet = Fleet::new();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    fleet.register(&acme, AGENT, "db-1", AgentSettings::default());
    let task = fleet.dispatch(&acme, AGENT, TaskKind::Backup);
    let before = fleet.view(AGENT);
    let online = AgentEvent::CameOnline {
        agent_version: "0.2.0".into(),
        restic_version: "0.16.4".into(),
    };
    assert_eq!(
        fleet.agent(&globex, AGENT, online.clone()),
        Outcome::Rejected("tenant_mismatch")
    );
    let intruder = TaskId::generate();
    assert_eq!(
        fleet.task(&globex, intruder, scheduled(AGENT, TaskKind::Backup)),
        Outcome::Rejected("tenant_mismatch"),
        "a task of another tenant's agent"
    );
    assert_eq!(
        fleet.task(&globex, task, TaskEvent::Started { attempt: 1 }),
        Outcome::Rejected("tenant_mismatch")
    );
    assert_eq!(
        fleet.task(
            &acme,
            task,
            TaskEvent::Succeeded {
                attempt: 1,
                summary: match samples::event(EventType::TaskSucceeded) {
                    Event::Task {
                        event: TaskEvent::Succeeded { summary, .. },
                        ..
                    } => summary,
                    _ => unreachable!(),
                },
            }
        ),
        Outcome::Rejected("illegal_transition"),
        "succeeded before started"
    );
    let envelope = Envelope::new(
        acme.clone(),
        samples::at(99),
        Event::Agent {
            agent: AGENT,
            event: online,
        },
    );
    let elsewhere = Stored {
        seq: 99,
        subject: format!("fleet.evt.acme.agent.{}", AgentId::generate()),
        envelope,
    };
    assert_eq!(
        fleet.model.apply(Ok(elsewhere)).unwrap(),
        Outcome::Rejected("subject_mismatch")
    );
    assert_eq!(fleet.view(AGENT), before);
    assert_eq!(fleet.model.status().unwrap().rejected, 5);
}

#[test]
fn a_rebuild_stores_what_the_incremental_run_stored() {
    let mut fleet = Fleet::new();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    fleet.push(&acme, samples::event(EventType::TenantCreated));
    fleet.push(&acme, samples::event(EventType::PolicyCreated));
    fleet.register(&acme, AGENT, "db-1", samples::agent_settings());
    let stranger = AgentId::generate();
    let done = fleet.dispatch(&acme, AGENT, TaskKind::Backup);
    fleet.task(&acme, done, TaskEvent::Started { attempt: 1 });
    let retried = fleet.dispatch(&acme, AGENT, TaskKind::Check);
    fleet.back_off(&acme, retried, 1, 700);
    fleet.dispatch(&acme, stranger, TaskKind::Prune);
    let online = AgentEvent::CameOnline {
        agent_version: "0.2.0".into(),
        restic_version: "0.16.4".into(),
    };
    fleet.agent(&globex, AGENT, online.clone());
    fleet.agent(&acme, AGENT, online);
    fleet.dispatch(&acme, AGENT, TaskKind::Backup);
    let incremental = fleet.model.dump().unwrap();
    assert_eq!(fleet.model.status().unwrap().rejected, 1);

    fleet.model.reset().unwrap();
    for stored in &fleet.log {
        fleet.model.apply(Ok(stored.clone())).unwrap();
    }
    assert_eq!(fleet.model.dump().unwrap(), incremental);

    let fresh = Fleet::new();
    for stored in &fleet.log {
        fresh.model.apply(Ok(stored.clone())).unwrap();
    }
    assert_eq!(fresh.model.dump().unwrap(), incremental);

    let batched = crate::testing::assert_batches_equal_one_by_one(|| Agents, &fleet.log);
    assert_eq!(batched, incremental);
}

#[test]
fn views_round_trip() {
    let mut view = AgentView::placeholder(tenant("acme"), AGENT);
    view.add_backoff(TaskId::generate(), samples::at(5));
    assert!(view.hold(TaskKind::Backup));
    assert_eq!(AgentView::decode(&view.encode().unwrap()).unwrap(), view);
    assert!(!view.release(TaskKind::Prune), "nothing to release");
    assert!(!view.remove_backoff(TaskId::generate()));
    view.running.check = u16::MAX;
    assert!(!view.hold(TaskKind::Check), "no overflow");
}

mod counts;
