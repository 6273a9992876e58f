//! Every (status, event) pair of the task state machine, and the attempt and agent checks.

use super::*;
use crate::event::{
    Event, EventType, InterruptedAttempt, LostReason, RetentionOutcome, TaskError, UnlockOutcome,
};
use crate::ids::AgentId;
use crate::samples;

/// One sample task event of every task event type.
fn task_events() -> Vec<TaskEvent> {
    EventType::ALL
        .iter()
        .filter_map(|t| match samples::event(*t) {
            Event::Task { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

/// The legal transitions, written out independently of `next_status`.
fn expected(from: Option<TaskStatus>, event: EventType) -> Option<TaskStatus> {
    use EventType as E;
    use TaskStatus as S;
    const TABLE: &[(Option<TaskStatus>, EventType, TaskStatus)] = &[
        (None, E::TaskScheduled, S::Scheduled),
        (None, E::TaskSkipped, S::Skipped),
        (None, E::TaskRequested, S::Scheduled),
        (Some(S::Scheduled), E::TaskDispatched, S::Dispatched),
        (Some(S::RetryDue), E::TaskDispatched, S::Dispatched),
        (Some(S::Dispatched), E::TaskAcknowledged, S::Acknowledged),
        (Some(S::Dispatched), E::TaskStarted, S::Running),
        (Some(S::Acknowledged), E::TaskStarted, S::Running),
        (Some(S::Running), E::TaskSucceeded, S::Succeeded),
        (Some(S::Dispatched), E::TaskFailed, S::Failed),
        (Some(S::Acknowledged), E::TaskFailed, S::Failed),
        (Some(S::Running), E::TaskFailed, S::Failed),
        (Some(S::Dispatched), E::TaskLost, S::Lost),
        (Some(S::Acknowledged), E::TaskLost, S::Lost),
        (Some(S::Running), E::TaskLost, S::Lost),
        (Some(S::Failed), E::TaskRetryScheduled, S::RetryScheduled),
        (Some(S::Lost), E::TaskRetryScheduled, S::RetryScheduled),
        (Some(S::Failed), E::TaskExhausted, S::Exhausted),
        (Some(S::Lost), E::TaskExhausted, S::Exhausted),
        (Some(S::RetryScheduled), E::TaskRetryDue, S::RetryDue),
        (Some(S::Scheduled), E::TaskCancelled, S::Cancelled),
        (Some(S::Dispatched), E::TaskCancelled, S::Cancelled),
        (Some(S::Acknowledged), E::TaskCancelled, S::Cancelled),
        (Some(S::Running), E::TaskCancelled, S::Cancelled),
        (Some(S::Failed), E::TaskCancelled, S::Cancelled),
        (Some(S::RetryScheduled), E::TaskCancelled, S::Cancelled),
        (Some(S::RetryDue), E::TaskCancelled, S::Cancelled),
        (Some(S::Lost), E::TaskCancelled, S::Cancelled),
        (Some(S::Acknowledged), E::TaskUnlockRan, S::Acknowledged),
        (Some(S::Running), E::TaskUnlockRan, S::Running),
        (Some(S::Running), E::TaskRetentionApplied, S::Running),
        (Some(S::Succeeded), E::TaskRetentionApplied, S::Succeeded),
        (Some(S::Running), E::TaskHookRan, S::Running),
        (Some(S::Succeeded), E::TaskHookRan, S::Succeeded),
        (Some(S::Failed), E::TaskHookRan, S::Failed),
        (Some(S::RetryScheduled), E::TaskHookRan, S::RetryScheduled),
        (Some(S::RetryDue), E::TaskHookRan, S::RetryDue),
        (Some(S::Exhausted), E::TaskHookRan, S::Exhausted),
    ];
    TABLE
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|(_, _, to)| *to)
}

#[test]
fn every_status_event_pair_follows_the_table() {
    let events = task_events();
    assert_eq!(events.len(), 16, "one sample per task event type");
    let froms = std::iter::once(None).chain(TaskStatus::ALL.into_iter().map(Some));
    let mut pairs = 0;
    let mut legal = 0;
    for from in froms {
        for event in &events {
            let got = next_status(from, event);
            assert_eq!(
                got,
                expected(from, event.event_type()),
                "{from:?} + {}",
                event.event_type().name()
            );
            pairs += 1;
            legal += usize::from(got.is_some());
        }
    }
    assert_eq!(pairs, 13 * 16);
    assert_eq!(legal, 38);
}

/// Nothing moves a task out of a terminal status. The events a terminal status takes are
/// the retention after a success and a hook's record after the attempt ended (their
/// reports may reach the log after the outcome's), and they leave the status as it is.
#[test]
fn terminal_statuses_accept_nothing_but_a_late_retention_or_hook() {
    for status in TaskStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
        for event in task_events() {
            let late_retention = status == TaskStatus::Succeeded
                && matches!(event, TaskEvent::RetentionApplied { .. });
            let late_hook = matches!(status, TaskStatus::Succeeded | TaskStatus::Exhausted)
                && matches!(event, TaskEvent::HookRan { .. });
            let expected = (late_retention || late_hook).then_some(status);
            assert_eq!(next_status(Some(status), &event), expected, "{status}");
        }
    }
}

fn scheduled() -> Task {
    let Event::Task { event, .. } = samples::event(EventType::TaskScheduled) else {
        unreachable!("sample is a task event")
    };
    Task::create(&event).expect("scheduled creates")
}

#[test]
fn a_task_runs_fails_retries_and_succeeds() {
    let agent = scheduled().agent;
    let steps = [
        TaskEvent::Dispatched { agent, attempt: 1 },
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Network, "connection refused", Some(1)),
        },
        TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: samples::at(60),
            delay_ms: 60_000,
        },
        TaskEvent::RetryDue,
        TaskEvent::Dispatched { agent, attempt: 2 },
        TaskEvent::Started { attempt: 2 },
    ];
    let mut task = scheduled();
    for step in &steps {
        task = task.apply(step).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.attempt, 2);
    assert_eq!(task.last_error, Some(ErrorClass::Network));
    assert_eq!(task.retry_due_at, None);
}

#[test]
fn stale_attempts_and_foreign_agents_are_refused() {
    let task = scheduled();
    let other = AgentId::generate();
    let err = task
        .apply(&TaskEvent::Dispatched {
            agent: other,
            attempt: 1,
        })
        .unwrap_err();
    assert!(err.reason.contains("belongs to agent"), "{err}");
    assert!(
        task.apply(&TaskEvent::Dispatched {
            agent: task.agent,
            attempt: 2
        })
        .is_err()
    );

    let running = task
        .apply(&TaskEvent::Dispatched {
            agent: task.agent,
            attempt: 1,
        })
        .and_then(|t| t.apply(&TaskEvent::Started { attempt: 1 }))
        .expect("legal");
    let stale = running
        .apply(&TaskEvent::Lost {
            attempt: 0,
            reason: LostReason::LeaseExpired,
        })
        .unwrap_err();
    assert!(stale.reason.contains("attempt 0"), "{stale}");
}

#[test]
fn lost_tasks_remember_why_and_creation_needs_a_first_event() {
    let task = scheduled();
    let lost = task
        .apply(&TaskEvent::Dispatched {
            agent: task.agent,
            attempt: 1,
        })
        .and_then(|t| {
            t.apply(&TaskEvent::Lost {
                attempt: 1,
                reason: LostReason::LeaseExpired,
            })
        })
        .and_then(|t| {
            t.apply(&TaskEvent::RetryScheduled {
                attempt: 1,
                due_at: samples::at(30),
                delay_ms: 30_000,
            })
        })
        .expect("legal");
    assert_eq!(lost.last_error, Some(ErrorClass::Lost));
    assert_eq!(lost.retry_due_at, Some(samples::at(30)));

    let err = Task::create(&TaskEvent::RetryDue).unwrap_err();
    assert_eq!(err.from, None);
    assert!(err.to_string().contains("does not exist yet"), "{err}");
    assert!(Task::fold(Some(&task), &TaskEvent::RetryDue).is_err());
}

/// An unlock of `attempt` that failed, naming attempt 1 of the same task.
fn unlock_ran(attempt: u32) -> TaskEvent {
    TaskEvent::UnlockRan {
        attempt,
        interrupted: vec![InterruptedAttempt {
            task: samples::TASK,
            attempt: 1,
        }],
        outcome: UnlockOutcome::Failed(TaskError::new(ErrorClass::Auth, "wrong password", None)),
    }
}

#[test]
fn an_unlock_is_recorded_on_the_agent_and_changes_nothing_else() {
    let task = scheduled();
    let dispatched = task
        .apply(&TaskEvent::Dispatched {
            agent: task.agent,
            attempt: 1,
        })
        .expect("legal");
    let early = dispatched.apply(&unlock_ran(1)).unwrap_err();
    assert_eq!(early.from, Some(TaskStatus::Dispatched));
    let acknowledged = dispatched
        .apply(&TaskEvent::Acknowledged { attempt: 1 })
        .expect("legal");
    assert_eq!(
        acknowledged.apply(&unlock_ran(1)).as_ref(),
        Ok(&acknowledged),
        "neither the status nor the last error changes"
    );
    let running = acknowledged
        .apply(&TaskEvent::Started { attempt: 1 })
        .expect("legal");
    assert_eq!(running.apply(&unlock_ran(1)).as_ref(), Ok(&running));
    let other = running.apply(&unlock_ran(2)).unwrap_err();
    assert!(other.reason.contains("attempt 2"), "{other}");
    let failed = running
        .apply(&TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Auth, "wrong password", Some(1)),
        })
        .expect("legal");
    assert!(failed.apply(&unlock_ran(1)).is_err(), "the attempt ended");
    assert!(Task::create(&unlock_ran(1)).is_err());
}

#[test]
fn a_retention_is_recorded_while_running_or_after_the_success_and_changes_nothing() {
    let task = scheduled();
    let retention = |attempt| samples::retention_event(attempt, samples::retention_failed());
    let acknowledged = [
        TaskEvent::Dispatched {
            agent: task.agent,
            attempt: 1,
        },
        TaskEvent::Acknowledged { attempt: 1 },
    ]
    .iter()
    .try_fold(task, |t, e| t.apply(e))
    .expect("legal");
    let early = acknowledged.apply(&retention(1)).unwrap_err();
    assert_eq!(
        early.from,
        Some(TaskStatus::Acknowledged),
        "after the start only"
    );
    let running = acknowledged
        .apply(&TaskEvent::Started { attempt: 1 })
        .expect("legal");
    assert_eq!(
        running.apply(&retention(1)).as_ref(),
        Ok(&running),
        "a failed forget is no failed run"
    );
    assert!(running.apply(&retention(2)).is_err(), "another attempt");
    let Event::Task {
        event: TaskEvent::Succeeded { summary, .. },
        ..
    } = samples::event(EventType::TaskSucceeded)
    else {
        unreachable!("the sample is a success")
    };
    let succeeded = running
        .apply(&TaskEvent::Succeeded {
            attempt: 1,
            summary,
        })
        .expect("legal");
    let applied = samples::retention_event(1, RetentionOutcome::Applied);
    assert_eq!(succeeded.apply(&applied).as_ref(), Ok(&succeeded));
    let failed = running
        .apply(&TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Timeout, "timed out", None),
        })
        .expect("legal");
    assert!(failed.apply(&applied).is_err(), "only after a success");
    assert!(Task::create(&applied).is_err());
}
