//! What the acting instance owes beyond its appends: each timed-out attempt failed once
//! (until the log ends it), the cancel an agent holding a cancelled task is owed, and the
//! `came_online` owed for agents heard while standing by.

use std::time::Duration;

use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::protocol::{Command, KindCounts};
use fleet_events::settings::AgentSettings;

use super::{AGENT, World, at, backup, heartbeat, tasks};

const MARGIN: Duration = Duration::from_secs(30);
const LEASE: Duration = Duration::from_secs(30);

#[test]
fn a_timed_out_attempt_is_taken_once_with_its_cancel_and_again_for_its_retry() {
    // Given attempt 1 of a task with a 600 s run timeout, started at 10
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let mut spec = backup(5);
    spec.execution.run_timeout_secs = 600;
    let task = w.schedule(AGENT, 0, spec);
    let plan = w.plan(1);
    assert_eq!(tasks(&plan), vec![task]);
    w.confirm(&plan)
        .on_task(10, task, TaskEvent::Started { attempt: 1 });

    // When its timeout and margin have run out
    let out = w.fleet.take_timeouts(at(640), MARGIN);

    // Then it is taken once, with the cancel its agent is owed
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].task, out[0].attempt, out[0].agent),
        (task, 1, AGENT)
    );
    assert_eq!(out[0].failure.msg_id, format!("timeout:{task}:1"));
    assert_eq!(out[0].cancel.subject, format!("fleet.agent.{AGENT}.tasks"));
    let Command::Cancel {
        task: cancelled,
        attempt,
        reason,
    } = &out[0].cancel.command.command
    else {
        panic!("a cancel: {:?}", out[0].cancel.command);
    };
    assert_eq!(
        (*cancelled, *attempt, reason.as_str()),
        (task, 1, "run timeout")
    );

    // And not again while the log has not shown its end (the failure still on its way)
    assert!(w.fleet.take_timeouts(at(700), MARGIN).is_empty());

    // When the failure is in the log and attempt 2 starts, then times out too
    w.event(701, out[0].failure.envelope.event.clone());
    let retry = TaskEvent::RetryScheduled {
        attempt: 1,
        due_at: at(702),
        delay_ms: 1_000,
    };
    w.on_task(701, task, retry)
        .on_task(702, task, TaskEvent::RetryDue);
    let plan = w.plan(703);
    assert_eq!(tasks(&plan), vec![task]);
    w.confirm(&plan)
        .on_task(704, task, TaskEvent::Started { attempt: 2 });
    let again = w.fleet.take_timeouts(at(704 + 630), MARGIN);

    // Then attempt 2 is taken, once
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert!(w.fleet.take_timeouts(at(2000), MARGIN).is_empty());
}

#[test]
fn a_cancel_is_owed_only_for_a_task_an_agent_holds() {
    // Given a task running on the agent and one still scheduled (on another policy)
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let running = w.schedule(AGENT, 0, backup(5));
    let plan = w.plan(1);
    w.confirm(&plan)
        .on_task(2, running, TaskEvent::Started { attempt: 1 });
    let waiting = w.schedule_at(AGENT, 3, 10_000, backup(5));

    // When the log cancels each
    let cancel = |task| Event::Task {
        task,
        event: TaskEvent::Cancelled {
            reason: "operator".into(),
        },
    };
    let held = w.fleet.cancel_owed(&w.next(4, cancel(running)));
    let not_held = w.fleet.cancel_owed(&w.next(4, cancel(waiting)));

    // Then only the agent holding the running one is told, with its attempt and reason
    let held = held.expect("owed a cancel");
    assert_eq!(held.subject, format!("fleet.agent.{AGENT}.tasks"));
    assert!(
        matches!(&held.command.command, Command::Cancel { task, attempt: 1, reason }
            if *task == running && reason == "operator"),
        "{:?}",
        held.command
    );
    assert_eq!(not_held, None);
    // And any other event owes nothing
    let started = Event::Task {
        task: running,
        event: TaskEvent::Started { attempt: 1 },
    };
    assert_eq!(w.fleet.cancel_owed(&w.next(5, started)), None);
}

#[test]
fn an_agent_heard_while_standing_by_is_owed_its_return_once_at_takeover() {
    // Given an agent the log has offline since 40
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    w.on_agent(40, AGENT, AgentEvent::WentOffline { last_seen: at(5) });

    // When a standby hears an old heartbeat, then a fresh one
    w.fleet.heard_standing_by(
        &heartbeat(5, AGENT, KindCounts::default()),
        at(5),
        at(100),
        LEASE,
    );
    assert!(
        w.fleet.take_owed_online().is_empty(),
        "an old heartbeat owes nothing"
    );
    let fresh = heartbeat(95, AGENT, KindCounts::default());
    w.fleet.heard_standing_by(&fresh, at(95), at(100), LEASE);

    // Then taking over finds it owed, once
    let owed = w.fleet.take_owed_online();
    assert_eq!(owed.len(), 1);
    assert_eq!((owed[0].0.agent, owed[0].1), (AGENT, at(95)));
    assert!(w.fleet.take_owed_online().is_empty());

    // And once the log has it back, a heartbeat owes nothing more
    w.fleet.heard_standing_by(&fresh, at(95), at(100), LEASE);
    w.on_agent(
        101,
        AGENT,
        AgentEvent::CameOnline {
            agent_version: "0.1.0".into(),
            restic_version: "0.18.0".into(),
        },
    );
    let later = heartbeat(110, AGENT, KindCounts::default());
    w.fleet.heard_standing_by(&later, at(110), at(111), LEASE);
    assert!(w.fleet.take_owed_online().is_empty());
}
