//! Limits: total, per kind and the agent's own queue are never exceeded.

use fleet_events::policy::TaskKind;
use fleet_events::protocol::KindCounts;
use fleet_events::settings::AgentSettings;

use super::super::{Saturation, WaitReason, Why};
use super::{AGENT, World, backup, limits, spec, tasks};

#[test]
fn an_agent_limited_to_two_never_holds_more_across_plans() {
    // Given an agent with the default limit of 2 and five due backups
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let all: Vec<_> = (0..5).map(|i| w.schedule(AGENT, i, backup(5))).collect();

    // When plans run, are confirmed, and tasks finish one by one
    let first = w.plan(10);
    assert_eq!(tasks(&first), all[..2]);
    assert!(w.plan(11).is_empty(), "in flight counts against the limit");
    w.confirm(&first);
    assert!(w.plan(12).is_empty(), "dispatched counts against the limit");
    assert_eq!(
        w.fleet.saturation(AGENT),
        Some(Saturation::Saturated(Why::TotalLimit { used: 2, limit: 2 }))
    );

    let mut done = 0;
    let mut held = first;
    for round in 0..3 {
        let secs = 20 + round * 10;
        w.succeed(secs, held[0].task, 1);
        done += 1;
        let next = w.plan(secs + 1);
        // Then each finished task frees exactly one slot
        assert_eq!(next.len(), 1, "round {round}");
        assert_eq!(next[0].task, all[done + 1]);
        w.confirm(&next);
        let view = w
            .fleet
            .agent(AGENT, super::at(secs + 2))
            .expect("known agent");
        assert!(view.running + view.dispatched + view.dispatching <= 2);
        held = vec![held[1].clone(), next[0].clone()];
    }
    assert_eq!(w.fleet.waiting_tasks(), 0);
}

#[test]
fn a_full_kind_waits_while_another_kind_goes() {
    // Given an agent with 3 slots of which 1 for backups, three backups and a check
    let mut w = World::new();
    w.register(AGENT, limits(3, Some(1)));
    let b1 = w.schedule(AGENT, 0, backup(5));
    let b2 = w.schedule(AGENT, 1, backup(5));
    let b3 = w.schedule(AGENT, 2, backup(5));
    let check = w.schedule(AGENT, 3, spec(TaskKind::Check, 1, "/srv/restic/a"));

    // When the plan runs
    let plan = w.plan(10);

    // Then one backup and the check go, despite the check's lower priority
    assert_eq!(tasks(&plan), vec![b1, check]);
    let kind_full = WaitReason::AgentSaturated(Why::KindLimit {
        kind: TaskKind::Backup,
        used: 1,
        limit: 1,
    });
    assert_eq!(w.fleet.why_waiting(b2, super::at(10)), Some(kind_full));
    assert_eq!(w.fleet.why_waiting(b3, super::at(10)), Some(kind_full));
    // And the agent as a whole is not saturated
    assert_eq!(w.fleet.saturation(AGENT), Some(Saturation::Free));
    assert_eq!(w.fleet.saturated_agents(), 0);

    // When the backup finishes, the next backup goes
    w.confirm(&plan).succeed(20, b1, 1);
    assert_eq!(tasks(&w.plan(21)), vec![b2]);
}

#[test]
fn a_queue_past_the_threshold_saturates_the_agent() {
    // Given an agent with room whose own queue holds 3 tasks (threshold 2)
    let mut w = World::new();
    w.register(AGENT, limits(4, None));
    let task = w.schedule(AGENT, 0, backup(5));
    let queued = KindCounts {
        backup: 2,
        check: 1,
        ..KindCounts::default()
    };
    w.heartbeat(5, AGENT, queued);

    // Then nothing goes, and the reason is the queue
    assert!(w.plan(10).is_empty());
    let why = Why::QueueThreshold {
        queued: 3,
        threshold: 2,
    };
    assert_eq!(w.fleet.saturation(AGENT), Some(Saturation::Saturated(why)));
    assert_eq!(
        w.fleet.why_waiting(task, super::at(10)),
        Some(WaitReason::AgentSaturated(why))
    );
    assert_eq!(w.fleet.saturated_agents(), 1);

    // When the next heartbeat shows the queue drained, the task goes at once
    w.heartbeat(15, AGENT, KindCounts::default());
    assert!(w.fleet.needs_plan(super::at(16)));
    assert_eq!(tasks(&w.plan(16)), vec![task]);
}

#[test]
fn a_lower_limit_holds_new_work_until_the_agent_is_under_it() {
    // Given an agent of 3 slots holding 3 tasks
    let mut w = World::new();
    w.register(AGENT, limits(3, None));
    let first: Vec<_> = (0..3).map(|i| w.schedule(AGENT, i, backup(5))).collect();
    let plan = w.plan(5);
    w.confirm(&plan);
    let next = w.schedule(AGENT, 6, backup(5));

    // When its limit drops to 1 and two tasks finish
    let lower = fleet_events::event::AgentEvent::SettingsChanged {
        settings: limits(1, None),
    };
    w.on_agent(7, AGENT, lower);
    w.succeed(8, first[0], 1).succeed(9, first[1], 1);

    // Then nothing goes while one still runs against a limit of 1
    assert!(w.plan(10).is_empty());
    w.succeed(11, first[2], 1);
    assert_eq!(tasks(&w.plan(12)), vec![next]);
}
