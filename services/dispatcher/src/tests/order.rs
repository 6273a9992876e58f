//! Order: held work drains by priority, then run time, then id; plans are deterministic;
//! a retry goes out again as the next attempt.

use fleet_events::event::{ErrorClass, TaskError, TaskEvent};
use fleet_events::policy::TaskKind;
use fleet_events::settings::AgentSettings;

use super::super::{DispatchConfig, WaitReason};
use super::{AGENT, World, agent, at, backup, limits, spec, tasks};

#[test]
fn held_work_drains_in_priority_then_time_order_as_tasks_finish() {
    // Given a one-slot agent busy with a task, and four tasks waiting
    let mut w = World::new();
    w.register(AGENT, limits(1, None));
    let busy = w.schedule(AGENT, 0, backup(5));
    let plan = w.plan(1);
    w.confirm(&plan);
    let low_early = w.schedule(AGENT, 2, backup(1));
    let high_late = w.schedule(AGENT, 4, backup(9));
    let mid_late = w.schedule(AGENT, 5, backup(5));
    let high_early = w.schedule(AGENT, 3, backup(9));
    assert!(w.plan(6).is_empty());
    assert_eq!(
        w.fleet.waiting_for(AGENT),
        vec![high_early, high_late, mid_late, low_early]
    );

    // When each running task finishes, the next plan takes the next in line
    let mut running = busy;
    let mut order = Vec::new();
    for step in 0..4 {
        let secs = 10 + step * 10;
        w.succeed(secs, running, 1);
        let next = w.plan(secs + 1);
        assert_eq!(next.len(), 1);
        w.confirm(&next);
        running = next[0].task;
        order.push(running);
    }

    // Then the order is priority first, then the earlier run time
    assert_eq!(order, vec![high_early, high_late, mid_late, low_early]);
}

#[test]
fn two_cores_fed_the_same_log_plan_the_same() {
    // Given a log over several agents with limits, kinds and priorities
    let mut w = World::new();
    w.register(agent(1), limits(2, Some(1)));
    w.register(agent(2), AgentSettings::default());
    w.register(agent(3), limits(3, None));
    for i in 0..12 {
        let kind = if i % 3 == 0 {
            TaskKind::Check
        } else {
            TaskKind::Backup
        };
        let url = format!("/srv/restic/{}", i % 4);
        w.schedule(
            agent(1 + (i % 3) as u128),
            i,
            spec(kind, (i % 5) as u8, &url),
        );
    }

    // When two fresh cores replay it and plan at the same time
    let plan = |log: &[fleet_events::store::Stored]| {
        let mut fleet = super::Fleet::new(DispatchConfig::default());
        for stored in log {
            fleet.apply_stored(stored);
        }
        fleet.plan(at(20), &mut super::AdmitAll)
    };
    let (a, b) = (plan(&w.log), plan(&w.log));

    // Then they choose the same tasks, agents, attempts and commands, in the same order
    let key = |p: &[super::Dispatch]| {
        p.iter()
            .map(|d| (d.task, d.agent, d.attempt, d.expect, d.command.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&a), key(&b));
    assert_eq!(a.len(), 2 + 2 + 3);
    assert_eq!(key(&a), key(&w.plan(20)), "the incremental core agrees");
}

#[test]
fn a_due_retry_goes_out_again_as_the_next_attempt() {
    // Given a task whose first attempt failed and whose retry fell due
    let mut w = World::with(DispatchConfig {
        respect_agent_backoff: false,
        ..DispatchConfig::default()
    });
    w.register(AGENT, AgentSettings::default());
    let task = w.schedule(AGENT, 0, backup(5));
    let first = w.plan(1);
    w.confirm(&first);
    let error = TaskError::new(ErrorClass::Network, "connection refused", Some(1));
    w.on_task(5, task, TaskEvent::Failed { attempt: 1, error });
    let retry = TaskEvent::RetryScheduled {
        attempt: 1,
        due_at: at(65),
        delay_ms: 60_000,
    };
    w.on_task(6, task, retry);
    assert!(w.plan(7).is_empty());
    assert_eq!(
        w.fleet.why_waiting(task, at(7)),
        None,
        "in backoff, not waiting"
    );
    assert_eq!(
        w.fleet.agent(AGENT, at(7)).map(|a| a.pending_retries),
        Some(1)
    );

    // When the retry is due
    w.on_task(65, task, TaskEvent::RetryDue);
    let plan = w.plan(65);

    // Then it goes out as attempt 2
    assert_eq!(tasks(&plan), vec![task]);
    assert_eq!(plan[0].attempt, 2);
    assert_eq!(
        plan[0].envelope.event,
        fleet_events::event::Event::Task {
            task,
            event: TaskEvent::Dispatched {
                agent: AGENT,
                attempt: 2
            }
        }
    );
}

#[test]
fn with_one_slot_left_the_lower_priority_waits_behind() {
    // Given a one-slot agent and two due tasks, before any plan
    let mut w = World::new();
    w.register(AGENT, limits(1, None));
    let low = w.schedule(AGENT, 0, backup(1));
    let high = w.schedule(AGENT, 1, backup(9));

    // Then the higher goes next, the lower waits behind it
    assert_eq!(w.fleet.why_waiting(high, at(2)), None);
    assert_eq!(
        w.fleet.why_waiting(low, at(2)),
        Some(WaitReason::BehindHigherPriority { ahead: 1 })
    );
    assert_eq!(tasks(&w.plan(2)), vec![high]);
}
