//! Run timeouts: an attempt on an agent with no result past its policy's run timeout plus
//! the margin fails as timed out, once, counted from its start (or its dispatch).

use std::time::Duration;

use fleet_events::event::{ErrorClass, Event, LostReason, TaskError, TaskEvent};
use fleet_events::ids::TaskId;
use fleet_events::policy::PolicySpec;
use fleet_events::settings::AgentSettings;
use fleet_events::store::Expect;

use super::{AGENT, World, at, backup, tasks};

const MARGIN: Duration = Duration::from_secs(30);

/// A backup whose runs time out after `secs`.
fn timing_out_after(secs: u64) -> PolicySpec {
    let mut spec = backup(5);
    spec.execution.run_timeout_secs = secs;
    spec
}

/// A task of a 600 s run timeout fired at `fire`, dispatched a second later and
/// acknowledged a second after that.
fn dispatched(w: &mut World, fire: i64) -> TaskId {
    let task = w.schedule(AGENT, fire, timing_out_after(600));
    let plan = w.plan(fire + 1);
    assert_eq!(tasks(&plan), vec![task]);
    w.confirm(&plan)
        .on_task(fire + 2, task, TaskEvent::Acknowledged { attempt: 1 });
    task
}

#[test]
fn a_running_task_past_its_run_timeout_and_margin_fails_once_as_timed_out() {
    // Given a task started at 10 with a run timeout of 600 s
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let task = dispatched(&mut w, 0);
    w.on_task(10, task, TaskEvent::Started { attempt: 1 });
    let started = w.log.last().map(|s| (s.seq, s.envelope.clone()));
    let Some((seq, started)) = started else {
        unreachable!("the log holds the start")
    };

    // Then nothing before 10 + 600 + 30
    assert!(w.fleet.timeouts(at(639), MARGIN).is_empty());

    // When the margin has run out too
    let out = w.fleet.timeouts(at(640), MARGIN);

    // Then one failure of attempt 1, classed timeout, following the task's last event
    assert_eq!(out.len(), 1);
    let e = &out[0];
    let error = TaskError::new(
        ErrorClass::Timeout,
        "no result within the run timeout of 600 s (control plane)",
        None,
    );
    assert_eq!(
        e.envelope.event,
        Event::Task {
            task,
            event: TaskEvent::Failed { attempt: 1, error }
        }
    );
    assert_eq!(e.msg_id, format!("timeout:{task}:1"));
    assert_eq!(e.expect, Expect::LastSeq(seq));
    assert_eq!(e.envelope.at, at(640));
    assert_eq!(e.envelope.correlation, started.correlation);
    assert_eq!(e.envelope.causation, Some(started.id));

    // And once the failure is in the log, nothing more
    w.event(640, e.envelope.event.clone());
    assert!(w.fleet.timeouts(at(10_000), MARGIN).is_empty());
    assert_eq!(w.fleet.next_timeout(at(640), MARGIN), None);
}

#[test]
fn a_task_that_never_started_counts_from_its_dispatch() {
    // Given a task dispatched at 1 and acknowledged, never started
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let task = dispatched(&mut w, 0);

    // Then it times out at 1 + 600 + 30
    assert!(w.fleet.timeouts(at(630), MARGIN).is_empty());
    let out = w.fleet.timeouts(at(631), MARGIN);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].msg_id, format!("timeout:{task}:1"));
}

#[test]
fn finished_lost_and_in_flight_tasks_do_not_time_out() {
    // Given a task that succeeded, one that was lost, and one still being dispatched
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let done = dispatched(&mut w, 0);
    w.succeed(10, done, 1);
    let lost = dispatched(&mut w, 20);
    w.on_task(30, lost, TaskEvent::Started { attempt: 1 });
    let lease = TaskEvent::Lost {
        attempt: 1,
        reason: LostReason::LeaseExpired,
    };
    w.on_task(100, lost, lease);
    let in_flight = w.schedule(AGENT, 200, timing_out_after(600));
    assert_eq!(tasks(&w.plan(201)), vec![in_flight]);

    // Then long after every run timeout, nothing times out and there is nothing to wake for
    assert!(w.fleet.timeouts(at(100_000), MARGIN).is_empty());
    assert_eq!(w.fleet.next_timeout(at(0), MARGIN), None);
}

#[test]
fn the_wake_up_is_the_next_timeout_still_ahead() {
    // Given one task started at 10 (600 s) and one started at 50 (60 s)
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let long = dispatched(&mut w, 0);
    w.on_task(10, long, TaskEvent::Started { attempt: 1 });
    let short = w.schedule(AGENT, 40, timing_out_after(60));
    let plan = w.plan(41);
    w.confirm(&plan)
        .on_task(50, short, TaskEvent::Started { attempt: 1 });

    // Then the loop wakes at 50 + 60 + 30, then at 10 + 600 + 30, then never
    assert_eq!(w.fleet.next_timeout(at(50), MARGIN), Some(at(140)));
    assert_eq!(w.fleet.timeouts(at(140), MARGIN).len(), 1);
    assert_eq!(w.fleet.next_timeout(at(140), MARGIN), Some(at(640)));
    assert_eq!(w.fleet.timeouts(at(640), MARGIN).len(), 2);
    assert_eq!(w.fleet.next_timeout(at(640), MARGIN), None);
}

#[test]
fn a_retry_counts_from_its_own_start() {
    // Given attempt 1 started at 10, failed at 20 and retried: attempt 2 started at 500
    let mut w = World::new();
    w.register(AGENT, AgentSettings::default());
    let task = dispatched(&mut w, 0);
    let failed = TaskEvent::Failed {
        attempt: 1,
        error: TaskError::new(ErrorClass::Network, "unreachable", Some(1)),
    };
    let retry = TaskEvent::RetryScheduled {
        attempt: 1,
        due_at: at(30),
        delay_ms: 10_000,
    };
    w.on_task(10, task, TaskEvent::Started { attempt: 1 })
        .on_task(20, task, failed)
        .on_task(20, task, retry)
        .on_task(30, task, TaskEvent::RetryDue);
    let plan = w.plan(400);
    assert_eq!(plan[0].attempt, 2);
    w.confirm(&plan)
        .on_task(500, task, TaskEvent::Started { attempt: 2 });

    // Then it times out at 500 + 600 + 30, as attempt 2
    assert_eq!(w.fleet.next_timeout(at(500), MARGIN), Some(at(1130)));
    assert!(w.fleet.timeouts(at(1129), MARGIN).is_empty());
    let out = w.fleet.timeouts(at(1130), MARGIN);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].msg_id, format!("timeout:{task}:2"));
}
