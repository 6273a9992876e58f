//! Circuits: a repository whose gate does not admit holds its tasks, others flow; an open
//! circuit's cool-down is a wake-up; a half-open circuit lets one probe through.

use chrono::{DateTime, Utc};
use fleet_events::event::{Event, RepoEvent};
use fleet_events::ids::{RepoId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::settings::AgentSettings;

use super::super::{Circuits, RepoGate, WaitReason};
use super::{AGENT, World, agent, at, limits, spec, tasks};

const A: &str = "/srv/restic/a";
const B: &str = "/srv/restic/b";

/// A gate closed to one repository.
struct Closed(RepoId);

impl RepoGate for Closed {
    fn admits(&mut self, _: &TenantId, repo: RepoId, _: TaskId, _: DateTime<Utc>) -> bool {
        repo != self.0
    }
}

fn on_repo(w: &mut World, secs: i64, url: &str, event: RepoEvent) {
    let repo = RepoId::for_url(url);
    w.event(secs, Event::Repo { repo, event });
}

#[test]
fn a_closed_gate_holds_its_repository_while_others_flow() {
    // Given an agent with room and a due task on each of two repositories
    let mut w = World::new();
    w.register(AGENT, limits(4, None));
    let on_a = w.schedule(AGENT, 0, spec(TaskKind::Backup, 9, A));
    let on_b = w.schedule(AGENT, 1, spec(TaskKind::Backup, 1, B));

    // When the gate refuses repository A
    let plan = w.plan_with(2, &mut Closed(RepoId::for_url(A)));

    // Then only B's task goes, and A's task says the repository holds it
    assert_eq!(tasks(&plan), vec![on_b]);
    assert_eq!(
        w.fleet.why_waiting(on_a, at(2)),
        Some(WaitReason::RepositoryProbing)
    );
}

#[test]
fn an_open_circuit_holds_tasks_until_its_cool_down_then_admits_one_probe() {
    // Given two agents with a due task each on repository A, whose circuit opened until 60
    let mut w = World::new();
    let mut circuits = Circuits::new();
    w.register(agent(1), AgentSettings::default());
    w.register(agent(2), AgentSettings::default());
    let first = w.schedule(agent(1), 0, spec(TaskKind::Backup, 9, A));
    let second = w.schedule(agent(2), 1, spec(TaskKind::Backup, 5, A));
    let other = w.schedule(agent(2), 2, spec(TaskKind::Check, 1, B));
    let opened = RepoEvent::CircuitOpened {
        until: at(60),
        failures: 5,
    };
    on_repo(&mut w, 3, A, opened);
    for stored in &w.log {
        circuits.apply(&stored.envelope);
    }

    // When a plan runs during the cool-down
    let plan = w.plan_with(10, &mut circuits);

    // Then only the other repository's task goes; A's wait with the circuit's end
    assert_eq!(tasks(&plan), vec![other]);
    let open = Some(WaitReason::RepositoryCircuitOpen { until: at(60) });
    assert_eq!(w.fleet.why_waiting(first, at(10)), open);
    assert_eq!(w.fleet.why_waiting(second, at(10)), open);
    assert_eq!(w.fleet.next_wakeup(), Some(at(60)));

    // When the cool-down ends, the most urgent task goes alone, as the probe
    assert_eq!(tasks(&w.plan_with(60, &mut circuits)), vec![first]);
    assert_eq!(
        w.fleet.why_waiting(second, at(60)),
        Some(WaitReason::RepositoryProbing)
    );

    // When the probe succeeded and the circuit closed, the rest flows at once
    let closed = RepoEvent::CircuitClosed;
    on_repo(&mut w, 70, A, closed);
    circuits.apply(&w.log[w.log.len() - 1].envelope);
    assert!(w.fleet.needs_plan(at(71)));
    assert_eq!(tasks(&w.plan_with(71, &mut circuits)), vec![second]);
}
