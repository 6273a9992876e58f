//! The enforcer feeding repository breakers from task outcomes.

use fleet_events::event::{EventType, RepoEvent, repo_of};
use fleet_events::ids::RepoId;

use super::*;
use crate::circuit::CircuitState;

fn repo() -> RepoId {
    repo_of(&samples::policy_spec())
}

fn succeeded(attempt: u32) -> TaskEvent {
    match samples::event(EventType::TaskSucceeded) {
        Event::Task {
            event: TaskEvent::Succeeded { summary, .. },
            ..
        } => TaskEvent::Succeeded { attempt, summary },
        other => panic!("not a success: {other:?}"),
    }
}

/// A task of `spec` on a new agent, failing attempt 1 with `class` at `at(secs)`.
fn fails(g: &mut Given, spec: PolicySpec, class: ErrorClass, secs: i64) -> Vec<ToAppend> {
    let agent = AgentId::generate();
    let task = g.scheduled(agent, secs, spec);
    g.running(task, agent, 1, at(secs));
    g.event(task, failed(1, class), at(secs))
}

fn repo_events(decisions: &[ToAppend]) -> Vec<&RepoEvent> {
    decisions
        .iter()
        .filter_map(|d| match &d.envelope.event {
            Event::Repo { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

fn state(enforcer: &Enforcer, now: DateTime<Utc>) -> Option<CircuitState> {
    enforcer
        .breaker(&samples::tenant(), repo())
        .map(|b| b.state(now))
}

#[test]
fn given_four_network_failures_across_agents_when_a_fifth_arrives_then_the_circuit_opens() {
    let mut g = Given::new();
    for secs in 1..=4 {
        let decided = fails(&mut g, samples::policy_spec(), ErrorClass::Network, secs);
        assert!(repo_events(&decided).is_empty(), "failure {secs}");
        g.commit(&decided, at(secs));
    }
    // A failure of another class, or on another repository, changes nothing.
    let mut elsewhere = samples::policy_spec();
    elsewhere.repository.url = "sftp:backup@other:/srv/restic".into();
    assert!(repo_events(&fails(&mut g, elsewhere, ErrorClass::Network, 5)).is_empty());
    assert!(repo_events(&fails(&mut g, samples::policy_spec(), ErrorClass::Lock, 6)).is_empty());
    // when
    let fifth = fails(&mut g, samples::policy_spec(), ErrorClass::Network, 10);
    // then: the retry and the opening
    assert_eq!(fifth.len(), 2);
    let opened = RepoEvent::CircuitOpened {
        until: at(70),
        failures: 5,
    };
    assert_eq!(repo_events(&fifth), [&opened]);
    let d = &fifth[1];
    assert_eq!(d.expect, Expect::LastSeq(0));
    assert_eq!(d.msg_id, format!("circuit:acme:{}:0", repo()));
    assert_eq!(
        d.envelope.subject(),
        format!("fleet.evt.acme.repo.{}", repo())
    );
    // A sixth failure before the log brings the opening does not open it twice.
    let sixth = fails(&mut g, samples::policy_spec(), ErrorClass::Network, 11);
    assert!(repo_events(&sixth).is_empty());
    // Open only once the log says so.
    assert_eq!(state(&g.enforcer, at(12)), Some(CircuitState::Closed));
    g.commit(&fifth, at(12));
    assert_eq!(
        state(&g.enforcer, at(12)),
        Some(CircuitState::Open { until: at(70) })
    );
}

#[test]
fn given_an_open_circuit_when_a_task_of_its_repository_succeeds_then_it_closes() {
    let mut g = Given::new();
    let mut opening = Vec::new();
    for secs in 1..=5 {
        opening = fails(&mut g, samples::policy_spec(), ErrorClass::Network, secs);
        g.commit(&opening, at(secs));
    }
    let opened_seq = g.log.events.len() as u64;
    assert_eq!(repo_events(&opening).len(), 1);
    // when: the probe succeeds after the cool-down
    let agent = AgentId::generate();
    let probe = g.scheduled(agent, 80, samples::policy_spec());
    g.running(probe, agent, 1, at(80));
    let closing = g.event(probe, succeeded(1), at(90));
    // then
    assert_eq!(repo_events(&closing), [&RepoEvent::CircuitClosed]);
    assert_eq!(closing[0].expect, Expect::LastSeq(opened_seq));
    g.commit(&closing, at(90));
    assert_eq!(state(&g.enforcer, at(90)), Some(CircuitState::Closed));
    // and a fresh enforcer replaying the log has the same breaker and owes nothing
    let fresh = g.replayed();
    assert_eq!(
        fresh.breaker(&samples::tenant(), repo()),
        g.enforcer.breaker(&samples::tenant(), repo())
    );
    assert_eq!(fresh.breakers().count(), 1);
}

#[test]
fn given_a_lost_opening_when_the_log_is_replayed_then_the_opening_is_owed() {
    // given: five network failures whose retries were stored but whose opening was not
    let mut g = Given::new();
    for secs in 1..=5 {
        let decided = fails(&mut g, samples::policy_spec(), ErrorClass::Network, secs);
        let retries: Vec<ToAppend> = decided
            .into_iter()
            .filter(|d| matches!(d.envelope.event, Event::Task { .. }))
            .collect();
        g.commit(&retries, at(secs));
    }
    // when
    let owed = g.replayed().pending_decisions(at(20));
    // then
    let opened = RepoEvent::CircuitOpened {
        until: at(80),
        failures: 5,
    };
    assert_eq!(repo_events(&owed), [&opened]);
    assert_eq!(owed.len(), 1);
}
