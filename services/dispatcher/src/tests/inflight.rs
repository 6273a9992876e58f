//! In flight: a planned task is not planned again until its event is back or it is
//! abandoned; what a dispatch carries.

use fleet_events::event::{Event, TaskEvent};
use fleet_events::protocol::Command;
use fleet_events::settings::AgentSettings;
use fleet_events::store::Expect;

use super::super::WaitReason;
use super::{AGENT, World, at, backup, limits, tasks};

#[test]
fn a_task_being_dispatched_is_not_planned_twice_until_abandoned() {
    // Given a task returned by a plan whose append is in flight
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let task = w.schedule(AGENT, 0, backup(5));
    let first = w.plan(1);
    assert_eq!(tasks(&first), vec![task]);

    // Then it is not planned again, even after unrelated events
    w.register(AGENT, AgentSettings::default());
    assert!(w.plan(2).is_empty());
    assert!(w.fleet.is_dispatching(task));
    assert_eq!(
        w.fleet.why_waiting(task, at(2)),
        Some(WaitReason::Dispatching)
    );
    assert_eq!(w.fleet.stats(at(2)).dispatching, 1);

    // When the append fails and the task is abandoned, it is planned again
    assert!(w.fleet.abandon(task));
    assert!(!w.fleet.abandon(task), "only once");
    let again = w.plan(3);
    assert_eq!(tasks(&again), vec![task]);
    assert_eq!(again[0].attempt, 1);

    // And once its event is back, abandoning does nothing
    w.confirm(&again);
    assert!(!w.fleet.is_dispatching(task));
    assert!(!w.fleet.abandon(task));
    assert!(w.plan(5).is_empty());
    assert_eq!(w.fleet.stats(at(5)).on_agents, 1);
}

#[test]
fn a_task_cancelled_while_in_flight_frees_its_slot() {
    // Given a one-slot agent whose one task is being dispatched, and another waiting
    let mut w = World::new();
    w.register(AGENT, limits(1, None));
    let task = w.schedule(AGENT, 0, backup(5));
    let other = w.schedule(AGENT, 1, backup(5));
    assert_eq!(tasks(&w.plan(2)), vec![task]);

    // When an operator's cancel wins the race
    let cancelled = TaskEvent::Cancelled {
        reason: "by operator".into(),
    };
    w.on_task(3, task, cancelled);

    // Then the lost append's abandon does nothing, and the other task goes
    assert!(!w.fleet.abandon(task));
    assert_eq!(tasks(&w.plan(4)), vec![other]);
}

#[test]
fn a_dispatch_carries_the_event_the_command_and_their_ids() {
    // Given a due task whose last event is the log's sequence 2
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let task = w.schedule(AGENT, 0, backup(5));
    let scheduled = w.log[1].envelope.clone();

    // When it is planned
    let plan = w.plan(7);
    let d = &plan[0];

    // Then the event is attempt 1 to the agent, caused by the task's last event
    assert_eq!((d.task, d.agent, d.attempt), (task, AGENT, 1));
    assert_eq!(d.tenant, fleet_events::samples::tenant());
    assert_eq!(
        d.envelope.event,
        Event::Task {
            task,
            event: TaskEvent::Dispatched {
                agent: AGENT,
                attempt: 1
            }
        }
    );
    assert_eq!(d.envelope.at, at(7));
    assert_eq!(d.envelope.causation, Some(scheduled.id));
    assert_eq!(d.envelope.correlation, scheduled.correlation);
    assert_eq!(d.expect, Expect::LastSeq(2));
    assert_eq!(d.event_msg_id(), format!("dispatch:{task}:1"));

    // And the command is the order to run it, on the agent's task subject
    let Command::Run(order) = &d.command.command else {
        panic!("a run command, got {:?}", d.command);
    };
    assert_eq!((order.task, order.attempt), (task, 1));
    assert_eq!(order.dispatched_at, at(7));
    assert_eq!(order.spec.priority, 5);
    assert_eq!(d.command_msg_id(), format!("run:{task}:1"));
    assert_eq!(d.subject(), format!("fleet.agent.{AGENT}.tasks"));
}

#[test]
fn without_sequences_the_append_expects_nothing() {
    let mut fleet = super::Fleet::new(super::DispatchConfig::default());
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    w.schedule(AGENT, 0, backup(5));
    for stored in &w.log {
        fleet.apply(&stored.envelope);
    }
    let plan = fleet.plan(at(1), &mut super::AdmitAll);
    assert_eq!(plan[0].expect, Expect::Any);
}

#[test]
fn a_dispatcher_taking_over_owes_the_orders_of_unacknowledged_attempts() {
    // Given three tasks dispatched by an instance that then died, one acknowledged since
    let mut w = World::new();
    w.register(AGENT, limits(10, None));
    let first = w.schedule(AGENT, 0, backup(5));
    let second = w.schedule(AGENT, 0, backup(5));
    let third = w.schedule(AGENT, 0, backup(5));
    let plan = w.plan(1);
    assert_eq!(plan.len(), 3);
    w.confirm(&plan);
    w.on_task(2, second, TaskEvent::Acknowledged { attempt: 1 });

    // Then a new instance, folded from the same log, owes exactly the first and third
    // orders, identical to what was first sent (same msg id, spec and dispatch time)
    let mut fresh = World::new();
    for stored in &w.log {
        fresh.fleet.apply_stored(stored);
    }
    let owed = fresh.fleet.unacknowledged_orders();
    let mut want: Vec<_> = plan
        .iter()
        .filter(|d| d.task != second)
        .map(|d| (d.subject(), d.command.clone()))
        .collect();
    want.sort_by_key(|(_, command)| command.msg_id());
    let got: Vec<_> = owed
        .iter()
        .map(|r| (r.subject.clone(), r.command.clone()))
        .collect();
    assert_eq!(got, want);
    assert!(owed.iter().all(
        |r| matches!(&r.command.command, Command::Run(o) if o.task == first || o.task == third)
    ));

    // And a task being dispatched by this instance (its event not back yet) is not owed
    let fourth = w.schedule(AGENT, 3, backup(5));
    assert_eq!(tasks(&w.plan(4)), vec![fourth]);
    assert_eq!(w.fleet.unacknowledged_orders().len(), 2);
}
