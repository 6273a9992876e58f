//! Failures become retries or end the task; retries fall due once; replays decide nothing
//! twice.

use chrono::TimeDelta;
use fleet_events::event::ExhaustedReason;
use fleet_events::event::LostReason;

use super::*;
use crate::backoff::{self, jitter_for};
use crate::circuit::later;

/// A task of the sample policy, running attempt 1 since `at(10)`.
fn running_task(g: &mut Given, fire: i64, spec: PolicySpec) -> TaskId {
    let task = g.scheduled(AGENT, fire, spec);
    g.running(task, AGENT, 1, at(fire + 10));
    task
}

#[test]
fn given_a_running_task_when_it_fails_on_the_network_then_a_retry_is_scheduled_after_the_backoff() {
    let mut g = Given::new();
    let task = running_task(&mut g, 0, samples::policy_spec());
    // when
    let decisions = g.event(task, failed(1, ErrorClass::Network), at(100));
    // then
    let delay = backoff::delay(1, &RetryBudget::default(), jitter_for(task, 1));
    assert!(delay >= Duration::from_secs(1) && delay <= Duration::from_secs(30));
    assert_eq!(
        only_task_event(&decisions),
        &TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: later(at(100), delay),
            delay_ms: delay.as_millis() as u64,
        }
    );
    let failure = &g.log.events[g.log.events.len() - 1];
    let d = &decisions[0];
    assert_eq!(d.expect, Expect::LastSeq(failure.seq));
    assert_eq!(d.msg_id, format!("retry:{task}:1"));
    assert_eq!(d.envelope.causation, Some(failure.envelope.id));
    assert_eq!(d.envelope.correlation, failure.envelope.correlation);
    assert_eq!(d.envelope.at, at(100));
    g.commit(&decisions, at(100));
    assert_eq!(pending(&g.enforcer), [(task, later(at(100), delay))]);
}

#[test]
fn given_a_scheduled_retry_then_retry_due_is_issued_once_when_due() {
    let mut g = Given::new();
    let task = running_task(&mut g, 0, samples::policy_spec());
    let decided = g.event(task, failed(1, ErrorClass::Lock), at(100));
    g.commit(&decided, at(100));
    let due_at = pending(&g.enforcer)[0].1;
    assert_eq!(g.enforcer.next_wake(), Some(due_at));
    // when not yet due, then nothing
    assert!(
        g.enforcer
            .due(due_at - TimeDelta::milliseconds(1))
            .is_empty()
    );
    // when due, then once
    let due = g.enforcer.due(due_at);
    assert_eq!(only_task_event(&due), &TaskEvent::RetryDue);
    assert_eq!(due[0].msg_id, format!("retry-due:{task}:1"));
    assert!(g.enforcer.due(due_at + TimeDelta::seconds(1)).is_empty());
    assert!(g.enforcer.pending_decisions(due_at).is_empty());
    // An append that never came back is issued again after RESEND_AFTER, identically.
    let again = g.enforcer.due(later(due_at, RESEND_AFTER));
    assert_eq!(again.len(), 1);
    assert_eq!(content(&again[0]), content(&due[0]));
    // Only one of them can be stored; then nothing is due any more.
    assert_eq!(g.commit(&due, due_at).len(), 1);
    assert!(g.commit(&again, due_at).is_empty());
    assert!(g.enforcer.due(at(1_000_000)).is_empty());
    assert_eq!(g.enforcer.next_wake(), None);
    assert!(pending(&g.enforcer).is_empty());
}

#[test]
fn given_a_budget_of_two_when_the_third_attempt_fails_then_the_task_is_exhausted() {
    let mut g = Given::new();
    let task = g.scheduled(AGENT, 0, with_budget(2));
    let mut now = at(10);
    for attempt in 1..=2 {
        g.running(task, AGENT, attempt, now);
        let decided = g.event(task, failed(attempt, ErrorClass::Timeout), now);
        assert!(matches!(
            only_task_event(&decided),
            TaskEvent::RetryScheduled { attempt: a, .. } if *a == attempt
        ));
        g.commit(&decided, now);
        now = pending(&g.enforcer)[0].1;
        let due = g.enforcer.due(now);
        assert_eq!(g.commit(&due, now).len(), 1);
    }
    // when
    g.running(task, AGENT, 3, now);
    let decided = g.event(task, failed(3, ErrorClass::Timeout), now);
    // then
    assert_eq!(
        only_task_event(&decided),
        &TaskEvent::Exhausted {
            attempts: 3,
            reason: ExhaustedReason::BudgetSpent
        }
    );
    assert_eq!(g.commit(&decided, now).len(), 1);
    assert!(
        g.enforcer.task(task).is_none(),
        "finished tasks are forgotten"
    );
    assert!(g.enforcer.pending_decisions(now).is_empty());
}

#[test]
fn given_a_failure_never_retried_then_the_task_is_exhausted_at_once() {
    for class in [
        ErrorClass::Auth,
        ErrorClass::Permanent,
        ErrorClass::MissingRepository,
    ] {
        let mut g = Given::new();
        let task = running_task(&mut g, 0, samples::policy_spec());
        let decided = g.event(task, failed(1, class), at(100));
        assert_eq!(
            only_task_event(&decided),
            &TaskEvent::Exhausted {
                attempts: 1,
                reason: ExhaustedReason::NotRetryable(class)
            }
        );
    }
}

#[test]
fn given_a_lost_attempt_then_it_is_retried_as_class_lost() {
    let mut g = Given::new();
    let task = running_task(&mut g, 0, samples::policy_spec());
    let lost = TaskEvent::Lost {
        attempt: 1,
        reason: LostReason::LeaseExpired,
    };
    let decided = g.event(task, lost, at(100));
    let delay = backoff::delay(1, &RetryBudget::default(), jitter_for(task, 1));
    assert_eq!(
        only_task_event(&decided),
        &TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: later(at(100), delay),
            delay_ms: delay.as_millis() as u64,
        }
    );
    g.commit(&decided, at(100));
    let retried = g.enforcer.task(task).map(|t| t.last_error);
    assert_eq!(retried, Some(Some(ErrorClass::Lost)));
    // A lost attempt says nothing about the repository.
    let repo = fleet_events::event::repo_of(&samples::policy_spec());
    assert!(g.enforcer.breaker(&samples::tenant(), repo).is_none());
}

#[test]
fn given_a_replayed_log_then_only_failures_without_a_decision_in_it_are_decided() {
    // given: a retry pending, a task exhausted, and a failure whose decision was lost
    let mut g = Given::new();
    let retried = running_task(&mut g, 0, samples::policy_spec());
    let decided = g.event(retried, failed(1, ErrorClass::Network), at(100));
    g.commit(&decided, at(100));
    let ended = running_task(&mut g, 60, samples::policy_spec());
    let decided = g.event(ended, failed(1, ErrorClass::Auth), at(110));
    g.commit(&decided, at(110));
    let crashed = running_task(&mut g, 120, samples::policy_spec());
    let lost = g.event(crashed, failed(1, ErrorClass::Resource), at(200));
    // when: a fresh enforcer replays the log
    let mut fresh = g.replayed();
    // then: the same timers, and only the missing decision is owed
    assert_eq!(pending(&fresh), pending(&g.enforcer));
    let owed = fresh.pending_decisions(at(300));
    assert_eq!(owed.len(), 1);
    assert_eq!(
        (&owed[0].msg_id, owed[0].expect),
        (&lost[0].msg_id, lost[0].expect)
    );
    let stored = g.log.append(&owed[0]).map(|s| fresh.on_event(&s, at(300)));
    assert_eq!(stored, Some(vec![]));
    assert!(fresh.pending_decisions(at(400)).is_empty());
    assert!(g.replayed().pending_decisions(at(400)).is_empty());
    // and every pending retry falls due once
    let due = fresh.due(at(100_000));
    assert_eq!(due.len(), 2);
    assert!(fresh.due(at(100_001)).is_empty());
}

#[test]
fn two_enforcers_deciding_on_the_same_failure_write_it_once() {
    let mut g = Given::new();
    let task = running_task(&mut g, 0, samples::policy_spec());
    let first = g.event(task, failed(1, ErrorClass::Network), at(100));
    let second = g.replayed().pending_decisions(at(100));
    assert_eq!(content(&first[0]), content(&second[0]));
    assert!(g.log.append(&first[0]).is_some());
    assert!(g.log.append(&second[0]).is_none());
}

#[test]
fn an_illegal_event_is_ignored_but_later_decisions_expect_its_sequence() {
    let mut g = Given::new();
    let task = running_task(&mut g, 0, samples::policy_spec());
    let first = g.event(task, failed(1, ErrorClass::Network), at(100));
    // when: a report for an attempt that does not exist
    let again = g.event(task, failed(7, ErrorClass::Network), at(101));
    // then: the state is unchanged, and since the first decision can no longer be
    // appended (its subject moved on), it is issued again expecting the new sequence
    let state = g.enforcer.task(task).map(|t| (t.status, t.attempt));
    assert_eq!(state, Some((TaskStatus::Failed, 1)));
    assert!(matches!(
        only_task_event(&again),
        TaskEvent::RetryScheduled { attempt: 1, .. }
    ));
    assert_eq!(again[0].msg_id, first[0].msg_id);
    assert_eq!(again[0].expect, Expect::LastSeq(g.log.events.len() as u64));
    assert!(g.log.append(&first[0]).is_none());
    assert!(g.log.append(&again[0]).is_some());
}

#[test]
fn a_cancelled_retry_never_falls_due() {
    let mut g = Given::new();
    let task = running_task(&mut g, 0, samples::policy_spec());
    let decided = g.event(task, failed(1, ErrorClass::Network), at(100));
    g.commit(&decided, at(100));
    let cancel = TaskEvent::Cancelled {
        reason: "operator".into(),
    };
    assert!(g.event(task, cancel, at(101)).is_empty());
    assert!(g.enforcer.due(at(100_000)).is_empty());
    assert!(g.enforcer.task(task).is_none());
}

#[test]
fn given_a_backup_when_its_retention_is_recorded_before_or_after_the_success_then_nothing_is_decided()
 {
    let mut g = Given::new();
    let retention = || {
        samples::retention_event(
            1,
            fleet_events::event::RetentionOutcome::Failed(TaskError::new(
                ErrorClass::Lock,
                "locked",
                Some(1),
            )),
        )
    };
    let task = running_task(&mut g, 0, samples::policy_spec());
    // A failed forget before the success fails nothing.
    assert!(g.event(task, retention(), at(20)).is_empty());
    assert_eq!(
        g.enforcer.task(task).map(|t| t.status),
        Some(TaskStatus::Running)
    );
    let Event::Task {
        event: TaskEvent::Succeeded { summary, .. },
        ..
    } = samples::event(fleet_events::event::EventType::TaskSucceeded)
    else {
        unreachable!("a success")
    };
    let succeeded = TaskEvent::Succeeded {
        attempt: 1,
        summary,
    };
    assert!(g.event(task, succeeded, at(30)).is_empty());
    // One recorded after the success (overtaken in intake): the task is forgotten already.
    assert!(g.event(task, retention(), at(31)).is_empty());
    assert_eq!(g.enforcer.task(task), None);
    assert!(pending(&g.enforcer).is_empty());
    assert!(pending(&g.replayed()).is_empty());
}
