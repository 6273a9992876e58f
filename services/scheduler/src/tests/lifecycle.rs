//! Policy and assignment changes take effect on the next `due`, without a restart.

use super::*;

/// A started scheduler running `hourly()` on `agents`.
fn started(agents: &[AgentId]) -> Scheduler {
    let mut s = given(&policy_on(hourly(), agents));
    s.start(samples::at(1));
    s
}

#[test]
fn a_paused_policy_skips_its_fires_and_resumes_without_catching_up() {
    let mut s = started(&[AGENT]);
    s.apply(&on_policy(POLICY, hour(0) - mins(10), PolicyEvent::Paused));
    assert!(s.upcoming(POLICY, 1).is_empty());
    assert!(s.due(hour(0)).is_empty());
    assert!(s.due(hour(1)).is_empty());
    s.apply(&on_policy(POLICY, hour(1) + mins(5), PolicyEvent::Resumed));
    assert!(s.due(hour(1) + mins(6)).is_empty(), "no catch-up on resume");
    assert_eq!(
        outcomes(&s.due(hour(2))),
        vec![(AGENT, hour(2), Outcome::Scheduled)]
    );
}

#[test]
fn an_update_reschedules_from_the_update_on() {
    let mut s = started(&[AGENT]);
    let half_past = PolicySpec {
        schedule: cron("30 * * * *"),
        ..hourly()
    };
    let spec = Box::new(half_past.clone());
    s.apply(&on_policy(
        POLICY,
        hour(0) + mins(5),
        PolicyEvent::Updated { spec },
    ));
    assert!(s.due(hour(0) + mins(29)).is_empty());
    let decisions = s.due(hour(0) + mins(30));
    assert_eq!(
        outcomes(&decisions),
        vec![(AGENT, hour(0) + mins(30), Outcome::Scheduled)]
    );
    assert!(matches!(
        &decisions[0].envelope.event,
        Event::Task { event: TaskEvent::Scheduled { spec, .. }, .. } if **spec == half_past
    ));
    // The old schedule's 04:00 is gone.
    assert!(s.due(hour(1)).is_empty());
}

#[test]
fn a_deleted_policy_never_fires_again() {
    let mut s = started(&[agent(1), agent(2)]);
    s.apply(&on_policy(POLICY, hour(0) - mins(1), PolicyEvent::Deleted));
    assert!(s.due(hour(5)).is_empty());
    assert!(s.upcoming(POLICY, 3).is_empty());
    // Later events of a deleted policy change nothing.
    s.apply(&assigned(POLICY, agent(3), hour(5)));
    assert!(s.due(hour(7)).is_empty());
}

#[test]
fn a_deleted_policys_name_created_again_fires_only_where_assigned_again() {
    let mut s = started(&[agent(1), agent(2)]);
    s.apply(&on_policy(POLICY, hour(0) - mins(1), PolicyEvent::Deleted));
    let spec = Box::new(hourly());
    s.apply(&on_policy(POLICY, hour(2), PolicyEvent::Created { spec }));
    assert!(s.due(hour(3)).is_empty(), "its old assignments died");
    s.apply(&assigned(POLICY, agent(2), hour(3) + mins(5)));
    assert_eq!(
        outcomes(&s.due(hour(4))),
        vec![(agent(2), hour(4), Outcome::Scheduled)]
    );
}

#[test]
fn an_assignment_after_start_fires_from_its_next_fire_on() {
    let mut s = started(&[agent(1)]);
    assert_eq!(s.due(hour(0)).len(), 1);
    s.apply(&assigned(POLICY, agent(2), hour(0) + mins(10)));
    assert!(s.due(hour(0) + mins(20)).is_empty());
    assert_eq!(
        outcomes(&s.due(hour(1))),
        vec![
            (agent(1), hour(1), Outcome::Scheduled),
            (agent(2), hour(1), Outcome::Scheduled)
        ]
    );
}

#[test]
fn an_unassigned_pair_dies_and_a_reassigned_one_does_not_catch_up() {
    let mut s = started(&[agent(1), agent(2)]);
    let unassign = PolicyEvent::UnassignedFromAgent { agent: agent(2) };
    s.apply(&on_policy(POLICY, hour(0) - mins(10), unassign));
    assert_eq!(
        outcomes(&s.due(hour(0))),
        vec![(agent(1), hour(0), Outcome::Scheduled)]
    );
    s.apply(&assigned(POLICY, agent(2), hour(0) + mins(10)));
    assert!(s.due(hour(0) + mins(20)).is_empty());
    assert_eq!(s.due(hour(1)).len(), 2);
}

#[test]
fn a_decommissioned_agent_is_unassigned_everywhere() {
    let mut log = policy_on(hourly(), &[agent(1), agent(2)]);
    log.push(created(policy(1), hourly(), samples::at(0)));
    log.push(assigned(policy(1), agent(2), samples::at(0)));
    let mut s = given(&log);
    s.start(samples::at(1));
    let gone = Event::Agent {
        agent: agent(2),
        event: AgentEvent::Decommissioned,
    };
    s.apply(&Envelope::new(samples::tenant(), hour(0) - mins(1), gone));
    assert_eq!(
        outcomes(&s.due(hour(0))),
        vec![(agent(1), hour(0), Outcome::Scheduled)]
    );
    // It cannot be assigned again.
    s.apply(&assigned(policy(1), agent(2), hour(0) + mins(1)));
    assert!(s.due(hour(1)).iter().all(|d| d.agent == agent(1)));
}
