//! Liveness: silence is judged from each agent's last heartbeat as the server stored it,
//! which a new dispatcher instance reads back, never from the instance's own start.

use std::time::Duration;

use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::protocol::KindCounts;
use fleet_events::samples::AGENT;

use super::*;

const LEASE: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(60);

fn offline_events(w: &World, secs: i64) -> Vec<AgentEvent> {
    w.fleet
        .liveness(at(secs), LEASE, GRACE)
        .into_iter()
        .filter_map(|e| match e.envelope.event {
            Event::Agent { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

fn lost_tasks(w: &World, secs: i64) -> Vec<TaskId> {
    w.fleet
        .liveness(at(secs), LEASE, GRACE)
        .into_iter()
        .filter_map(|e| match e.envelope.event {
            Event::Task {
                task,
                event: TaskEvent::Lost { .. },
            } => Some(task),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restarted_dispatcher_judges_silence_from_the_last_heartbeat_not_from_its_start() {
    // Given a log where the agent registered and was heard at 10 s, then fell silent
    let mut w = World::new();
    w.register(AGENT, limits(2, None));
    w.on_agent(
        10,
        AGENT,
        AgentEvent::CameOnline {
            agent_version: "0.1.0".into(),
            restic_version: "0.18.0".into(),
        },
    );
    w.heartbeat(10, AGENT, KindCounts::default());
    // When a new instance starts at 100 s (long past the lease) and reads it all back
    // Then the agent goes offline at once, last seen at 10 s
    assert_eq!(
        offline_events(&w, 100),
        [AgentEvent::WentOffline { last_seen: at(10) }]
    );
    // And a heartbeat within the lease keeps it online
    w.heartbeat(95, AGENT, KindCounts::default());
    assert!(offline_events(&w, 100).is_empty());
    assert_eq!(
        offline_events(&w, 126),
        [AgentEvent::WentOffline { last_seen: at(95) }]
    );
}

#[test]
fn an_agent_never_heard_since_its_registration_goes_offline_a_lease_after_it() {
    let mut w = World::new();
    w.register(AGENT, limits(2, None));
    assert!(offline_events(&w, 30).is_empty());
    assert_eq!(
        offline_events(&w, 31),
        [AgentEvent::WentOffline { last_seen: at(0) }]
    );
}

#[test]
fn an_offline_agent_loses_its_attempts_a_grace_after_its_lease_whoever_is_counting() {
    // Given an agent running a task, last heard at 5 s, offline since then
    let mut w = World::new();
    w.register(AGENT, limits(2, None));
    let task = w.schedule(AGENT, 1, backup(5));
    let plan = w.plan(1);
    w.confirm(&plan);
    w.on_task(2, task, TaskEvent::Acknowledged { attempt: 1 });
    w.on_task(3, task, TaskEvent::Started { attempt: 1 });
    w.on_agent(40, AGENT, AgentEvent::WentOffline { last_seen: at(5) });
    // Then its attempt is lost only after lease + grace from when it was last seen
    assert!(lost_tasks(&w, 95).is_empty());
    assert_eq!(lost_tasks(&w, 96), [task]);
}

#[test]
fn an_old_heartbeat_read_back_at_start_does_not_bring_an_offline_agent_back() {
    let mut w = World::new();
    w.register(AGENT, limits(2, None));
    w.on_agent(40, AGENT, AgentEvent::WentOffline { last_seen: at(5) });
    // The heartbeat the agent went silent after, as a new instance reads it back.
    assert_eq!(w.fleet.came_online_key(AGENT, at(5), at(200), LEASE), None);
    // A later heartbeat, but older than the lease: not back either.
    assert_eq!(
        w.fleet.came_online_key(AGENT, at(100), at(200), LEASE),
        None
    );
    // A fresh one after it went offline: back.
    assert!(
        w.fleet
            .came_online_key(AGENT, at(190), at(200), LEASE)
            .is_some()
    );
}

#[test]
fn an_agent_that_beats_less_often_than_the_lease_gets_three_of_its_intervals() {
    // Given an agent that says it beats every 60 s (a 30 s lease would call it offline
    // between any two of its heartbeats), running a task
    let mut w = World::new();
    w.register(AGENT, limits(2, None));
    let task = w.schedule(AGENT, 1, backup(5));
    let plan = w.plan(1);
    w.confirm(&plan);
    w.on_task(2, task, TaskEvent::Started { attempt: 1 });
    let mut beat = heartbeat(10, AGENT, KindCounts::default());
    beat.every_secs = 60;
    w.fleet.observe_heartbeat(&beat, at(10));
    // Then it stays online between heartbeats, and through two missed ones
    assert!(offline_events(&w, 71).is_empty());
    assert!(offline_events(&w, 190).is_empty());
    // And goes offline after the third, last seen at its heartbeat
    assert_eq!(
        offline_events(&w, 191),
        [AgentEvent::WentOffline { last_seen: at(10) }]
    );
    // And loses its attempt a grace after its own lease, not the configured one
    w.on_agent(191, AGENT, AgentEvent::WentOffline { last_seen: at(10) });
    assert!(lost_tasks(&w, 250).is_empty());
    assert_eq!(lost_tasks(&w, 251), [task]);
    // A heartbeat as fresh as its own lease brings it back; the configured lease alone
    // would call that heartbeat stale
    let lease = crate::agent_lease(LEASE, beat.every_secs);
    assert!(
        w.fleet
            .came_online_key(AGENT, at(260), at(300), lease)
            .is_some()
    );
    assert_eq!(
        w.fleet.came_online_key(AGENT, at(260), at(300), LEASE),
        None
    );
}

#[test]
fn an_agent_lease_is_the_configured_one_unless_its_beats_are_further_apart() {
    use crate::agent_lease;
    let secs = Duration::from_secs;
    // The default agent (10 s) and one that does not say (0): the lease.
    assert_eq!(agent_lease(LEASE, 10), LEASE);
    assert_eq!(agent_lease(LEASE, 0), LEASE);
    assert_eq!(agent_lease(LEASE, 30), secs(90));
    assert_eq!(agent_lease(secs(600), 30), secs(600));
    assert_eq!(agent_lease(LEASE, u16::MAX), secs(3 * 65_535));
}
