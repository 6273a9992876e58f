//! Holds: decommissioned, offline, unknown and backing-off agents get nothing, tasks not
//! yet due wait for their time, and `why_waiting` says which.

use fleet_events::event::{AgentEvent, ErrorClass, TaskError, TaskEvent};
use fleet_events::settings::AgentSettings;

use super::super::{DispatchConfig, WaitReason};
use super::{AGENT, World, agent, at, backup, limits, tasks};

#[test]
fn a_decommissioned_agent_gets_nothing() {
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let task = w.schedule(AGENT, 0, backup(5));
    w.on_agent(1, AGENT, AgentEvent::Decommissioned);

    assert!(w.plan(5).is_empty());
    assert_eq!(
        w.fleet.why_waiting(task, at(5)),
        Some(WaitReason::AgentDecommissioned)
    );
    // Coming online again does not revive it
    let online = AgentEvent::CameOnline {
        agent_version: "0.1.0".into(),
        restic_version: "0.18.0".into(),
    };
    w.on_agent(6, AGENT, online);
    assert!(w.plan(7).is_empty());
    assert_eq!(w.fleet.stats(at(7)).agents, 0);
}

#[test]
fn an_offline_agent_gets_nothing_until_it_comes_back() {
    // Given an agent that went offline with a task due
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    w.on_agent(2, AGENT, AgentEvent::WentOffline { last_seen: at(1) });
    let task = w.schedule(AGENT, 3, backup(5));

    // Then the task waits centrally
    assert!(w.plan(5).is_empty());
    assert_eq!(
        w.fleet.why_waiting(task, at(5)),
        Some(WaitReason::AgentOffline { since: Some(at(1)) })
    );
    assert_eq!(w.fleet.next_wakeup(), None, "an event, not time, ends this");

    // When it comes back, the task goes
    let online = AgentEvent::CameOnline {
        agent_version: "0.1.0".into(),
        restic_version: "0.18.0".into(),
    };
    w.on_agent(9, AGENT, online);
    assert_eq!(tasks(&w.plan(10)), vec![task]);
}

#[test]
fn dispatch_to_offline_sends_to_offline_agents_too() {
    let mut w = World::with(DispatchConfig {
        dispatch_to_offline: true,
        ..DispatchConfig::default()
    });
    w.register(AGENT, AgentSettings::default());
    w.on_agent(2, AGENT, AgentEvent::WentOffline { last_seen: at(1) });
    let task = w.schedule(AGENT, 3, backup(5));
    assert_eq!(tasks(&w.plan(5)), vec![task]);
}

#[test]
fn an_unregistered_agent_gets_nothing() {
    let mut w = World::new();
    let task = w.schedule(agent(7), 0, backup(5));
    assert!(w.plan(5).is_empty());
    assert_eq!(
        w.fleet.why_waiting(task, at(5)),
        Some(WaitReason::AgentUnknown)
    );
    w.register(agent(7), AgentSettings::default());
    assert_eq!(tasks(&w.plan(6)), vec![task]);
}

/// An agent with one task in backoff until `at(100)` and another task due.
fn backing_off(config: DispatchConfig) -> (World, fleet_events::ids::TaskId) {
    let mut w = World::with(config);
    w.register(AGENT, limits(4, None));
    let failing = w.schedule(AGENT, 0, backup(5));
    let plan = w.plan(1);
    w.confirm(&plan);
    let error = TaskError::new(ErrorClass::Lock, "repository is already locked", Some(1));
    w.on_task(2, failing, TaskEvent::Failed { attempt: 1, error });
    let retry = TaskEvent::RetryScheduled {
        attempt: 1,
        due_at: at(100),
        delay_ms: 98_000,
    };
    w.on_task(3, failing, retry);
    let other = w.schedule(AGENT, 4, backup(5));
    (w, other)
}

#[test]
fn an_agent_in_backoff_gets_nothing_until_the_backoff_ends() {
    // Given an agent with a task in backoff until 100 and another task due
    let (mut w, other) = backing_off(DispatchConfig::default());

    // Then nothing goes; the reason and the wake-up name the backoff's end
    assert!(w.plan(5).is_empty());
    assert_eq!(
        w.fleet.why_waiting(other, at(5)),
        Some(WaitReason::AgentInBackoff { until: at(100) })
    );
    assert_eq!(w.fleet.next_wakeup(), Some(at(100)));
    let view = w.fleet.agent(AGENT, at(5)).expect("known agent");
    assert_eq!(view.backoff_until, Some(at(100)));
    assert_eq!(w.fleet.stats(at(5)).in_backoff, 1);

    // When the clock reaches it (no event needed), the other task goes
    assert!(!w.fleet.needs_plan(at(99)));
    assert!(w.fleet.needs_plan(at(100)));
    assert_eq!(tasks(&w.plan(100)), vec![other]);
}

#[test]
fn without_respect_for_backoff_the_agent_keeps_working() {
    let (mut w, other) = backing_off(DispatchConfig {
        respect_agent_backoff: false,
        ..DispatchConfig::default()
    });
    assert_eq!(tasks(&w.plan(5)), vec![other]);
}

#[test]
fn a_task_not_yet_due_waits_and_the_wakeup_names_its_time() {
    // Given a task fired at 0 with jitter: due at 300
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let task = w.schedule_at(AGENT, 0, 300, backup(5));

    // Then it waits for its time, and the dispatcher sleeps until then
    assert!(w.plan(10).is_empty());
    assert_eq!(
        w.fleet.why_waiting(task, at(10)),
        Some(WaitReason::NotYetDue { run_at: at(300) })
    );
    assert_eq!(w.fleet.next_wakeup(), Some(at(300)));
    assert!(w.plan(299).is_empty());

    // When the time comes, it goes
    assert_eq!(tasks(&w.plan(300)), vec![task]);
    assert_eq!(w.fleet.next_wakeup(), None);
}

#[test]
fn a_saturated_agent_gets_nothing_and_says_so() {
    let mut w = World::new();
    w.register(AGENT, limits(1, None));
    let first = w.schedule(AGENT, 0, backup(5));
    let second = w.schedule(AGENT, 1, backup(5));
    assert_eq!(tasks(&w.plan(2)), vec![first]);
    let reason = w.fleet.why_waiting(second, at(2)).expect("waits");
    assert_eq!(reason.code(), "agent_saturated");
    assert_eq!(
        reason.to_string(),
        "the agent is saturated: 1 of 1 task slots in use"
    );
    assert_eq!(w.fleet.stats(at(2)).saturated, 1);
}

#[test]
fn another_tenants_agent_and_heartbeats_change_nothing() {
    // Given an agent of `acme` with a task due, and an agent of `other` with one too
    let mut w = World::new();
    w.register(AGENT, limits(1, None));
    let task = w.schedule(AGENT, 0, backup(5));
    let other = fleet_events::ids::TenantId::new("other").expect("a valid slug");
    let foreign = fleet_events::envelope::Envelope::new(
        other.clone(),
        at(1),
        fleet_events::event::Event::Agent {
            agent: AGENT,
            event: AgentEvent::Decommissioned,
        },
    );

    // When `other` claims the agent and sends its heartbeats
    w.fleet.apply(&foreign);
    let mut beat = fleet_events::protocol::Heartbeat {
        schema: fleet_events::envelope::SCHEMA_VERSION,
        agent: AGENT,
        tenant: other,
        at: at(2),
        running: Default::default(),
        queued: Default::default(),
        agent_version: "0.1.0".into(),
        restic_version: "0.18.0".into(),
        outbox_depth: 0,
        every_secs: 0,
    };
    beat.queued.backup = 9;
    w.fleet.observe_heartbeat(&beat, at(2));

    // Then the agent still works for its own tenant
    assert_eq!(w.fleet.why_waiting(task, at(3)), None);
    assert_eq!(tasks(&w.plan(3)), vec![task]);
}
