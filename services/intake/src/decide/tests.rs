//! Intake's judgement: legal reports become events, resent ones are recognised, hostile
//! ones are rejected with a reason.

use fleet_events::envelope::{Envelope, SCHEMA_VERSION};
use fleet_events::event::{ErrorClass, Event, RetentionOutcome, TaskError, TaskEvent};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::samples;
use fleet_events::store::Stored;

use super::{Verdict, judge};

fn history(events: Vec<TaskEvent>) -> Vec<Stored> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let envelope = Envelope::new(
                samples::tenant(),
                samples::at(i as i64),
                Event::Task {
                    task: samples::TASK,
                    event,
                },
            );
            Stored {
                seq: i as u64 + 1,
                subject: envelope.subject(),
                envelope,
            }
        })
        .collect()
}

fn scheduled_and_dispatched() -> Vec<Stored> {
    let Event::Task {
        event: scheduled, ..
    } = samples::event(fleet_events::event::EventType::TaskScheduled)
    else {
        unreachable!("a task sample")
    };
    history(vec![
        scheduled,
        TaskEvent::Dispatched {
            agent: samples::AGENT,
            attempt: 1,
        },
    ])
}

fn report(agent: AgentId, task: TaskId, status: ReportStatus) -> AgentReport {
    AgentReport {
        schema: SCHEMA_VERSION,
        agent,
        tenant: samples::tenant(),
        task,
        attempt: 1,
        at: samples::at(10),
        status,
    }
}

#[test]
fn a_legal_report_becomes_its_event() {
    let verdict = judge(
        samples::AGENT,
        &report(samples::AGENT, samples::TASK, ReportStatus::Started),
        &scheduled_and_dispatched(),
    );
    assert_eq!(verdict, Verdict::Append(TaskEvent::Started { attempt: 1 }));
}

#[test]
fn a_resent_report_is_already_recorded() {
    let mut log = scheduled_and_dispatched();
    log.extend(
        history(vec![TaskEvent::Started { attempt: 1 }])
            .into_iter()
            .map(|mut s| {
                s.seq = 3;
                s
            }),
    );
    let verdict = judge(
        samples::AGENT,
        &report(samples::AGENT, samples::TASK, ReportStatus::Started),
        &log,
    );
    assert_eq!(verdict, Verdict::AlreadyRecorded);
}

#[test]
fn hostile_reports_are_rejected_with_reasons() {
    let other = AgentId::generate();
    let log = scheduled_and_dispatched();
    let cases = [
        (
            other,
            report(samples::AGENT, samples::TASK, ReportStatus::Started),
            "came from agent",
        ),
        (
            other,
            report(other, samples::TASK, ReportStatus::Started),
            "belongs to agent",
        ),
        (
            samples::AGENT,
            report(samples::AGENT, TaskId::generate(), ReportStatus::Started),
            "does not exist",
        ),
    ];
    for (sender, report, why) in cases {
        let history = if report.task == samples::TASK {
            log.clone()
        } else {
            Vec::new()
        };
        match judge(sender, &report, &history) {
            Verdict::Reject(reason) => assert!(reason.contains(why), "{reason} lacks {why}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    let mut stale = report(
        samples::AGENT,
        samples::TASK,
        ReportStatus::Failed(TaskError::new(ErrorClass::Network, "x", None)),
    );
    stale.attempt = 7;
    assert!(matches!(
        judge(samples::AGENT, &stale, &log),
        Verdict::Reject(_)
    ));
}

#[test]
fn a_final_report_on_an_attempt_already_settled_is_superseded_not_parked() {
    let mut log = scheduled_and_dispatched();
    let cancelled = history(vec![TaskEvent::Cancelled {
        reason: "operator".into(),
    }]);
    log.extend(cancelled.into_iter().map(|mut s| {
        s.seq = 3;
        s
    }));
    let late = report(samples::AGENT, samples::TASK, ReportStatus::Interrupted);
    assert_eq!(judge(samples::AGENT, &late, &log), Verdict::Superseded);
    // The agent may have started before it heard of the cancel.
    let started = report(samples::AGENT, samples::TASK, ReportStatus::Started);
    assert_eq!(judge(samples::AGENT, &started, &log), Verdict::Superseded);
    // Not for attempts never dispatched.
    let mut unknown = report(samples::AGENT, samples::TASK, ReportStatus::Interrupted);
    unknown.attempt = 2;
    assert!(matches!(
        judge(samples::AGENT, &unknown, &log),
        Verdict::Reject(_)
    ));
}

fn succeeded() -> ReportStatus {
    ReportStatus::Succeeded(fleet_events::event::RunSummary {
        kind: fleet_events::policy::TaskKind::Check,
        duration_ms: 1,
        detail: fleet_events::event::RunDetail::Check,
    })
}

/// `scheduled_and_dispatched` followed by `events`, numbered on.
fn dispatched_then(events: Vec<TaskEvent>) -> Vec<Stored> {
    let mut log = scheduled_and_dispatched();
    let from = log.len() as u64;
    log.extend(history(events).into_iter().enumerate().map(|(i, mut s)| {
        s.seq = from + i as u64 + 1;
        s
    }));
    log
}

#[test]
fn reports_that_overtook_each_other_wait_or_are_late_but_are_never_parked() {
    let success = report(samples::AGENT, samples::TASK, succeeded());
    // The start is still on its way: the success waits for it.
    assert_eq!(
        judge(samples::AGENT, &success, &scheduled_and_dispatched()),
        Verdict::Early
    );
    let acknowledged = dispatched_then(vec![TaskEvent::Acknowledged { attempt: 1 }]);
    assert_eq!(
        judge(samples::AGENT, &success, &acknowledged),
        Verdict::Early
    );
    // The start came first (it may skip the acknowledgement): the acknowledgement is late.
    let started = dispatched_then(vec![TaskEvent::Started { attempt: 1 }]);
    let ack = report(samples::AGENT, samples::TASK, ReportStatus::Acknowledged);
    assert_eq!(judge(samples::AGENT, &ack, &started), Verdict::Late);
    assert_eq!(
        judge(samples::AGENT, &success, &started),
        Verdict::Append(TaskEvent::Succeeded {
            attempt: 1,
            summary: match succeeded() {
                ReportStatus::Succeeded(s) => s,
                _ => unreachable!(),
            },
        })
    );
    // After the attempt ended, an acknowledgement still in flight is history.
    let ended = dispatched_then(vec![
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Succeeded {
            attempt: 1,
            summary: match succeeded() {
                ReportStatus::Succeeded(s) => s,
                _ => unreachable!(),
            },
        },
    ]);
    assert_eq!(judge(samples::AGENT, &ack, &ended), Verdict::Superseded);
    // Early or late only for the attempt on the agent: another attempt's is rejected.
    let mut other_attempt = report(samples::AGENT, samples::TASK, succeeded());
    other_attempt.attempt = 2;
    assert!(matches!(
        judge(samples::AGENT, &other_attempt, &started),
        Verdict::Reject(_)
    ));
}

fn unlock_ran() -> ReportStatus {
    ReportStatus::UnlockRan {
        interrupted: samples::interrupted(),
        outcome: samples::unlock_failed(),
    }
}

fn unlock_event(attempt: u32) -> TaskEvent {
    TaskEvent::UnlockRan {
        attempt,
        interrupted: samples::interrupted(),
        outcome: samples::unlock_failed(),
    }
}

#[test]
fn an_unlock_report_of_the_attempt_on_its_agent_becomes_its_event() {
    let unlock = report(samples::AGENT, samples::TASK, unlock_ran());
    // Sent after the acknowledgement, before the start.
    let acknowledged = dispatched_then(vec![TaskEvent::Acknowledged { attempt: 1 }]);
    assert_eq!(
        judge(samples::AGENT, &unlock, &acknowledged),
        Verdict::Append(unlock_event(1))
    );
    // The start overtook it: still recorded.
    let started = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
    ]);
    assert_eq!(
        judge(samples::AGENT, &unlock, &started),
        Verdict::Append(unlock_event(1))
    );
    // It overtook the acknowledgement: judged again once that is in the log.
    assert_eq!(
        judge(samples::AGENT, &unlock, &scheduled_and_dispatched()),
        Verdict::Early
    );
    // Resent after it was recorded.
    let recorded = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        unlock_event(1),
    ]);
    assert_eq!(
        judge(samples::AGENT, &unlock, &recorded),
        Verdict::AlreadyRecorded
    );
    // The attempt ended before it arrived: acknowledged without an event.
    let failed = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Auth, "wrong password", Some(1)),
        },
    ]);
    assert_eq!(judge(samples::AGENT, &unlock, &failed), Verdict::Superseded);
}

#[test]
fn a_forged_or_stray_unlock_report_is_rejected() {
    let other = AgentId::generate();
    let acknowledged = dispatched_then(vec![TaskEvent::Acknowledged { attempt: 1 }]);
    let cases = [
        // Another agent, about this agent's task, on its own subject.
        (
            other,
            report(other, samples::TASK, unlock_ran()),
            "belongs to agent",
        ),
        // Naming this agent, on another agent's subject.
        (
            other,
            report(samples::AGENT, samples::TASK, unlock_ran()),
            "came from agent",
        ),
    ];
    for (sender, report, why) in cases {
        match judge(sender, &report, &acknowledged) {
            Verdict::Reject(reason) => assert!(reason.contains(why), "{reason} lacks {why}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    let mut another_attempt = report(samples::AGENT, samples::TASK, unlock_ran());
    another_attempt.attempt = 2;
    match judge(samples::AGENT, &another_attempt, &acknowledged) {
        Verdict::Reject(reason) => assert!(reason.contains("attempt 2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let never = report(samples::AGENT, TaskId::generate(), unlock_ran());
    assert!(matches!(
        judge(samples::AGENT, &never, &[]),
        Verdict::Reject(_)
    ));
}

fn retention(outcome: RetentionOutcome) -> ReportStatus {
    samples::retention_report(outcome)
}

#[test]
fn a_retention_report_of_the_running_attempt_becomes_its_event_even_after_the_success() {
    let applied = report(
        samples::AGENT,
        samples::TASK,
        retention(RetentionOutcome::Applied),
    );
    let event = samples::retention_event(1, RetentionOutcome::Applied);
    let started = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
    ]);
    assert_eq!(
        judge(samples::AGENT, &applied, &started),
        Verdict::Append(event.clone())
    );
    // The failure is carried as it is: it fails nothing.
    let failed = report(
        samples::AGENT,
        samples::TASK,
        retention(samples::retention_failed()),
    );
    assert_eq!(
        judge(samples::AGENT, &failed, &started),
        Verdict::Append(samples::retention_event(1, samples::retention_failed()))
    );
    // The success overtook it (another intake instance, a retry): still recorded.
    let ReportStatus::Succeeded(summary) = succeeded() else {
        unreachable!("a success")
    };
    let after_success = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Succeeded {
            attempt: 1,
            summary,
        },
    ]);
    assert_eq!(
        judge(samples::AGENT, &applied, &after_success),
        Verdict::Append(event.clone())
    );
    // Ahead of the start: judged again once that is in the log.
    let acknowledged = dispatched_then(vec![TaskEvent::Acknowledged { attempt: 1 }]);
    assert_eq!(
        judge(samples::AGENT, &applied, &acknowledged),
        Verdict::Early
    );
    assert_eq!(
        judge(samples::AGENT, &applied, &scheduled_and_dispatched()),
        Verdict::Early
    );
    // Resent after it was recorded.
    let mut recorded = started.clone();
    recorded.extend(history(vec![event]).into_iter().map(|mut s| {
        s.seq = 5;
        s
    }));
    assert_eq!(
        judge(samples::AGENT, &applied, &recorded),
        Verdict::AlreadyRecorded
    );
    // The control plane ended the attempt otherwise (the run-timeout backstop).
    let timed_out = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(
                ErrorClass::Timeout,
                "no result within the run timeout",
                None,
            ),
        },
    ]);
    assert_eq!(
        judge(samples::AGENT, &applied, &timed_out),
        Verdict::Superseded
    );
}

#[test]
fn a_forged_or_stray_retention_report_is_rejected() {
    let other = AgentId::generate();
    let started = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
    ]);
    let status = || retention(RetentionOutcome::Applied);
    let cases = [
        // Another agent, about this agent's task, on its own subject.
        (
            other,
            report(other, samples::TASK, status()),
            "belongs to agent",
        ),
        // Naming this agent, on another agent's subject.
        (
            other,
            report(samples::AGENT, samples::TASK, status()),
            "came from agent",
        ),
    ];
    for (sender, report, why) in cases {
        match judge(sender, &report, &started) {
            Verdict::Reject(reason) => assert!(reason.contains(why), "{reason} lacks {why}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    let mut another_attempt = report(samples::AGENT, samples::TASK, status());
    another_attempt.attempt = 2;
    match judge(samples::AGENT, &another_attempt, &started) {
        Verdict::Reject(reason) => assert!(reason.contains("attempt 2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let never = report(samples::AGENT, TaskId::generate(), status());
    assert!(matches!(
        judge(samples::AGENT, &never, &[]),
        Verdict::Reject(_)
    ));
}

#[test]
fn a_hook_report_becomes_its_event_each_hook_once_even_after_the_failure() {
    use fleet_events::event::HookOutcome;
    use fleet_events::policy::HookStage;
    let hook = samples::hook_run(HookStage::Before, HookOutcome::Exited(3));
    let ran = report(
        samples::AGENT,
        samples::TASK,
        ReportStatus::HookRan(hook.clone()),
    );
    let event = TaskEvent::HookRan {
        attempt: 1,
        hook: hook.clone(),
    };
    let started = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
    ]);
    assert_eq!(
        judge(samples::AGENT, &ran, &started),
        Verdict::Append(event.clone())
    );
    // Ahead of the start: judged again once that is in the log.
    let acknowledged = dispatched_then(vec![TaskEvent::Acknowledged { attempt: 1 }]);
    assert_eq!(judge(samples::AGENT, &ran, &acknowledged), Verdict::Early);
    // The failure it caused overtook it, and the enforcer gave up: still recorded.
    let failed = dispatched_then(vec![
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Hook, "before-hook dump-db exited 3", None),
        },
        TaskEvent::Exhausted {
            attempts: 1,
            reason: fleet_events::event::ExhaustedReason::NotRetryable(ErrorClass::Hook),
        },
    ]);
    assert_eq!(
        judge(samples::AGENT, &ran, &failed),
        Verdict::Append(event.clone())
    );
    // Resent after it was recorded; another hook of the same attempt is news.
    let mut recorded = started.clone();
    recorded.extend(history(vec![event]).into_iter().map(|mut s| {
        s.seq = 5;
        s
    }));
    assert_eq!(
        judge(samples::AGENT, &ran, &recorded),
        Verdict::AlreadyRecorded
    );
    let after = report(
        samples::AGENT,
        samples::TASK,
        ReportStatus::HookRan(fleet_events::event::HookRun {
            stage: HookStage::After,
            ..hook
        }),
    );
    assert!(matches!(
        judge(samples::AGENT, &after, &recorded),
        Verdict::Append(TaskEvent::HookRan { .. })
    ));
    // Another agent's word about it is parked.
    let forged = report(
        AgentId::from_uuid(uuid::Uuid::from_u128(0xbad)),
        samples::TASK,
        ReportStatus::HookRan(samples::hook_run(HookStage::Before, HookOutcome::Exited(0))),
    );
    assert!(matches!(
        judge(forged.agent, &forged, &started),
        Verdict::Reject(_)
    ));
}
