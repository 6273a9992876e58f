//! The run read model without a server: which events end an attempt, what a run records,
//! listing with filters newest first, the last success, and what it rejects.

use fleet_events::event::{
    BackupSummary, ErrorClass, Event, ExhaustedReason, LostReason, RunDetail, RunSummary,
    TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::TaskKind;
use fleet_events::samples::{self, AGENT, POLICY};

use super::*;
use crate::runtime::Outcome;
use crate::testing::{Log, assert_rebuild_equals_incremental, open, tenant};

fn on(task: TaskId, event: TaskEvent) -> Event {
    Event::Task { task, event }
}

fn scheduled(policy: PolicyId, agent: AgentId, kind: TaskKind) -> TaskEvent {
    let mut spec = samples::policy_spec();
    spec.kind = kind;
    TaskEvent::Scheduled {
        policy,
        agent,
        fire_at: samples::at(0),
        run_at: samples::at(0),
        spec: Box::new(spec),
    }
}

fn dispatched(attempt: u32) -> TaskEvent {
    TaskEvent::Dispatched {
        agent: AGENT,
        attempt,
    }
}

fn succeeded(attempt: u32, snapshot: &str) -> TaskEvent {
    TaskEvent::Succeeded {
        attempt,
        summary: RunSummary {
            kind: TaskKind::Backup,
            duration_ms: 7_000,
            detail: RunDetail::Backup(BackupSummary {
                snapshot_id: Some(snapshot.into()),
                files_new: 3,
                data_added_bytes: 4096,
                ..BackupSummary::default()
            }),
        },
    }
}

fn failed(attempt: u32, class: ErrorClass) -> TaskEvent {
    TaskEvent::Failed {
        attempt,
        error: TaskError::new(class, "boom", Some(1)),
    }
}

/// Schedules a task of `policy` on `agent` at `secs`, dispatches it, starts it, and ends
/// its first attempt with `end` ten seconds later.
fn one_run(
    log: &mut Log,
    tenant: &TenantId,
    secs: i64,
    (policy, agent, kind): (PolicyId, AgentId, TaskKind),
    end: TaskEvent,
) -> TaskId {
    let task = TaskId::generate();
    log.push(tenant, secs, on(task, scheduled(policy, agent, kind)));
    let dispatch = TaskEvent::Dispatched { agent, attempt: 1 };
    log.push(tenant, secs + 1, on(task, dispatch));
    log.push(
        tenant,
        secs + 2,
        on(task, TaskEvent::Started { attempt: 1 }),
    );
    log.push(tenant, secs + 12, on(task, end));
    task
}

fn all(model: &Checkpointed<Runs>, tenant: &TenantId) -> Vec<RunView> {
    model
        .list(tenant, &RunFilter::default(), usize::MAX)
        .unwrap()
}

#[test]
fn attempts_that_end_are_recorded_with_their_results() {
    let (_dir, model) = open(Runs::default());
    let acme = tenant("acme");
    let task = TaskId::generate();
    let mut log = Log::default();
    log.push(
        &acme,
        0,
        on(task, scheduled(POLICY, AGENT, TaskKind::Backup)),
    );
    log.push(&acme, 10, on(task, dispatched(1)));
    log.push(&acme, 11, on(task, TaskEvent::Acknowledged { attempt: 1 }));
    log.push(&acme, 15, on(task, TaskEvent::Started { attempt: 1 }));
    log.push(&acme, 20, on(task, failed(1, ErrorClass::Network)));
    let retry = TaskEvent::RetryScheduled {
        attempt: 1,
        due_at: samples::at(60),
        delay_ms: 40_000,
    };
    log.push(&acme, 21, on(task, retry));
    log.push(&acme, 60, on(task, TaskEvent::RetryDue));
    log.push(&acme, 61, on(task, dispatched(2)));
    log.push(&acme, 70, on(task, TaskEvent::Started { attempt: 2 }));
    log.push(&acme, 100, on(task, succeeded(2, "abc123")));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));

    let runs = all(&model, &acme);
    assert_eq!(runs.len(), 2);
    let (second, first) = (&runs[0], &runs[1]);
    assert_eq!((first.task, first.attempt), (task, 1));
    assert_eq!((first.policy, first.agent), (POLICY, AGENT));
    assert_eq!(first.kind, TaskKind::Backup);
    assert_eq!(
        first.outcome,
        RunOutcome::Failed {
            class: ErrorClass::Network
        }
    );
    assert_eq!(first.error.as_ref().map(|e| e.exit_code), Some(Some(1)));
    assert_eq!(first.summary, None);
    assert!(first.started);
    assert_eq!(first.started_at, samples::at(15));
    assert_eq!(first.finished_at, samples::at(20));
    assert_eq!(first.duration_ms, 5_000);

    assert_eq!(
        (second.attempt, &second.outcome),
        (2, &RunOutcome::Succeeded)
    );
    assert_eq!(second.error, None);
    let Some(RunSummary {
        detail: RunDetail::Backup(backup),
        ..
    }) = &second.summary
    else {
        panic!("a backup summary: {second:?}");
    };
    assert_eq!(backup.snapshot_id.as_deref(), Some("abc123"));
    assert_eq!(second.started_at, samples::at(70));
    assert_eq!(second.duration_ms, 30_000);
    assert_eq!(second.tenant, acme);
}

#[test]
fn lost_and_cancelled_attempts_are_runs_but_cancelling_a_waiting_task_is_not() {
    let (_dir, model) = open(Runs::default());
    let acme = tenant("acme");
    let mut log = Log::default();
    let (lost, cancelled, waiting) = (TaskId::generate(), TaskId::generate(), TaskId::generate());
    let backup = scheduled(POLICY, AGENT, TaskKind::Backup);
    log.push(&acme, 0, on(lost, backup.clone()));
    log.push(&acme, 1, on(lost, dispatched(1)));
    let lease = TaskEvent::Lost {
        attempt: 1,
        reason: LostReason::LeaseExpired,
    };
    log.push(&acme, 91, on(lost, lease));
    let exhausted = TaskEvent::Exhausted {
        attempts: 1,
        reason: ExhaustedReason::BudgetSpent,
    };
    log.push(&acme, 92, on(lost, exhausted));
    log.push(&acme, 100, on(cancelled, backup.clone()));
    log.push(&acme, 101, on(cancelled, dispatched(1)));
    log.push(&acme, 102, on(cancelled, TaskEvent::Started { attempt: 1 }));
    let replaced = TaskEvent::Cancelled {
        reason: "replaced".into(),
    };
    log.push(&acme, 110, on(cancelled, replaced.clone()));
    log.push(&acme, 200, on(waiting, backup));
    log.push(&acme, 201, on(waiting, replaced));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));

    let runs = all(&model, &acme);
    assert_eq!(
        runs.len(),
        2,
        "exhaustion and a waiting task's cancel end no attempt"
    );
    assert_eq!(runs[0].task, cancelled);
    assert_eq!(
        runs[0].outcome,
        RunOutcome::Cancelled {
            reason: "replaced".into()
        }
    );
    assert_eq!(runs[1].task, lost);
    assert_eq!(
        runs[1].outcome,
        RunOutcome::Lost {
            reason: LostReason::LeaseExpired
        }
    );
    assert!(!runs[1].started, "never started: timed from the dispatch");
    assert_eq!(runs[1].started_at, samples::at(1));
    assert_eq!(runs[1].duration_ms, 90_000);
}

#[test]
fn lists_are_per_tenant_newest_first_filtered_and_limited() {
    let (_dir, model) = open(Runs::default());
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (other_agent, other_policy) = (AgentId::generate(), PolicyId::generate());
    let backup = (POLICY, AGENT, TaskKind::Backup);
    let check = (other_policy, other_agent, TaskKind::Check);
    let mut log = Log::default();
    let t1 = one_run(&mut log, &acme, 0, backup, succeeded(1, "s1"));
    let t2 = one_run(&mut log, &acme, 100, check, failed(1, ErrorClass::Lock));
    let t3 = one_run(&mut log, &acme, 200, backup, failed(1, ErrorClass::Auth));
    let t4 = one_run(&mut log, &acme, 300, check, succeeded(1, "s4"));
    one_run(&mut log, &globex, 400, backup, succeeded(1, "g1"));
    log.apply_to(&model);

    let tasks = |filter: RunFilter, limit| -> Vec<TaskId> {
        let runs = model.list(&acme, &filter, limit).unwrap();
        runs.iter().map(|r| r.task).collect()
    };
    assert_eq!(tasks(RunFilter::default(), 10), [t4, t3, t2, t1]);
    assert_eq!(tasks(RunFilter::default(), 2), [t4, t3]);
    assert_eq!(tasks(RunFilter::default(), 0), []);
    let by_agent = RunFilter {
        agent: Some(other_agent),
        ..RunFilter::default()
    };
    assert_eq!(tasks(by_agent, 10), [t4, t2]);
    let by_policy = RunFilter {
        policy: Some(POLICY),
        ..RunFilter::default()
    };
    assert_eq!(tasks(by_policy, 10), [t3, t1]);
    let by_kind = RunFilter {
        kind: Some(TaskKind::Check),
        ..RunFilter::default()
    };
    assert_eq!(tasks(by_kind, 1), [t4]);
    let failures = RunFilter {
        outcome: Some(RunOutcomeKind::Failed),
        ..RunFilter::default()
    };
    assert_eq!(tasks(failures, 10), [t3, t2]);
    let since = RunFilter {
        since: Some(samples::at(212)),
        ..RunFilter::default()
    };
    assert_eq!(tasks(since, 10), [t4, t3], "since is inclusive");
    let combined = RunFilter {
        policy: Some(POLICY),
        outcome: Some(RunOutcomeKind::Succeeded),
        since: Some(samples::at(1)),
        ..RunFilter::default()
    };
    assert_eq!(tasks(combined, 10), [t1]);
    assert_eq!(all(&model, &globex).len(), 1);
    assert!(
        all(&model, &tenant("acm")).is_empty(),
        "no prefix confusion"
    );
}

#[test]
fn the_last_success_moves_forward_only() {
    let (_dir, model) = open(Runs::default());
    let acme = tenant("acme");
    let other_agent = AgentId::generate();
    let mut log = Log::default();
    one_run(
        &mut log,
        &acme,
        0,
        (POLICY, AGENT, TaskKind::Backup),
        succeeded(1, "old"),
    );
    let pair = (POLICY, other_agent, TaskKind::Backup);
    let newer = one_run(&mut log, &acme, 100, pair, succeeded(1, "b1"));
    one_run(&mut log, &acme, 200, pair, failed(1, ErrorClass::Network));
    log.apply_to(&model);
    let last = model.last_successes(&acme).unwrap();
    assert_eq!(last.len(), 2);
    let on_other = last.iter().find(|s| s.agent == other_agent).unwrap();
    assert_eq!((on_other.task, on_other.policy), (newer, POLICY));
    assert_eq!(on_other.at, samples::at(112));
    assert_eq!(on_other.snapshot_id.as_deref(), Some("b1"));
    assert_eq!(on_other.kind, TaskKind::Backup);

    let latest = one_run(&mut log, &acme, 300, pair, succeeded(1, "b2"));
    // A success reported late, finishing before the stored one, does not move it back.
    one_run(&mut log, &acme, 50, pair, succeeded(1, "stale"));
    log.apply_to(&model);
    let last = model.last_successes(&acme).unwrap();
    let on_other = last.iter().find(|s| s.agent == other_agent).unwrap();
    assert_eq!(on_other.task, latest);
    assert_eq!(on_other.snapshot_id.as_deref(), Some("b2"));
    assert!(model.last_successes(&tenant("globex")).unwrap().is_empty());
}

#[test]
fn wrong_tenants_subjects_and_transitions_are_rejected_other_aggregates_ignored() {
    let (_dir, model) = open(Runs::default());
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let task = TaskId::generate();
    let mut log = Log::default();
    log.push(
        &acme,
        0,
        on(task, scheduled(POLICY, AGENT, TaskKind::Backup)),
    );
    log.push(&globex, 1, on(task, dispatched(1)));
    let mut elsewhere = log.push(&acme, 2, on(task, dispatched(1)));
    elsewhere.subject = format!("fleet.evt.acme.task.{}", TaskId::generate());
    log.events[2] = elsewhere;
    log.push(&acme, 3, on(task, TaskEvent::Started { attempt: 1 }));
    log.push(
        &acme,
        4,
        samples::event(fleet_events::event::EventType::PolicyPaused),
    );
    let outcomes = log.apply_to(&model);
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Rejected("tenant_mismatch"),
            Outcome::Rejected("subject_mismatch"),
            Outcome::Rejected("illegal_transition"),
            Outcome::Applied,
        ]
    );
    assert!(all(&model, &acme).is_empty());
    assert_eq!(model.status().unwrap().rejected, 3);
}

#[test]
fn a_rebuild_stores_what_the_incremental_run_stored() {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let mut log = Log::default();
    let pair = (POLICY, AGENT, TaskKind::Backup);
    let task = one_run(&mut log, &acme, 0, pair, failed(1, ErrorClass::Network));
    log.push(
        &acme,
        13,
        on(
            task,
            TaskEvent::Cancelled {
                reason: "op".into(),
            },
        ),
    );
    one_run(&mut log, &acme, 20, pair, succeeded(1, "s"));
    one_run(&mut log, &globex, 30, pair, succeeded(1, "g"));
    log.push(&globex, 40, on(task, TaskEvent::RetryDue));
    let check = (PolicyId::generate(), AGENT, TaskKind::Check);
    one_run(&mut log, &acme, 50, check, failed(1, ErrorClass::Lock));
    let (_dir, model) = assert_rebuild_equals_incremental(Runs::default, &log.events);
    assert_eq!(model.status().unwrap().rejected, 1);
    assert_eq!(all(&model, &acme).len(), 3);
}

#[test]
fn an_unlock_before_the_start_makes_no_run_and_no_part_of_its_duration() {
    let acme = tenant("acme");
    let task = TaskId::generate();
    let mut log = Log::default();
    log.push(
        &acme,
        0,
        on(task, scheduled(POLICY, AGENT, TaskKind::Backup)),
    );
    log.push(&acme, 1, on(task, dispatched(1)));
    log.push(&acme, 2, on(task, TaskEvent::Acknowledged { attempt: 1 }));
    let unlock = TaskEvent::UnlockRan {
        attempt: 1,
        interrupted: samples::interrupted(),
        outcome: fleet_events::event::UnlockOutcome::Unlocked,
    };
    log.push(&acme, 30, on(task, unlock));
    log.push(&acme, 31, on(task, TaskEvent::Started { attempt: 1 }));
    log.push(&acme, 41, on(task, succeeded(1, "s")));
    let (_dir, model) = assert_rebuild_equals_incremental(Runs::default, &log.events);
    assert_eq!(model.status().unwrap().rejected, 0);
    let runs = all(&model, &acme);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].started_at, samples::at(31));
    assert_eq!(runs[0].duration_ms, 10_000);
}

#[test]
fn a_retention_before_or_after_the_success_makes_no_second_run_and_moves_nothing() {
    let acme = tenant("acme");
    let (task, late) = (TaskId::generate(), TaskId::generate());
    let retention =
        |attempt| samples::retention_event(attempt, fleet_events::event::RetentionOutcome::Applied);
    let mut log = Log::default();
    for (t, base) in [(task, 0), (late, 100)] {
        log.push(
            &acme,
            base,
            on(t, scheduled(POLICY, AGENT, TaskKind::Backup)),
        );
        log.push(&acme, base + 1, on(t, dispatched(1)));
        log.push(&acme, base + 2, on(t, TaskEvent::Started { attempt: 1 }));
    }
    // Reported before the success, as the agent sends it.
    log.push(&acme, 10, on(task, retention(1)));
    log.push(&acme, 12, on(task, succeeded(1, "s1")));
    // Overtaken by the success in intake: recorded after it.
    log.push(&acme, 110, on(late, succeeded(1, "s2")));
    log.push(&acme, 111, on(late, retention(1)));
    let (_dir, model) = assert_rebuild_equals_incremental(Runs::default, &log.events);
    assert_eq!(model.status().unwrap().rejected, 0);
    let runs = all(&model, &acme);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let first = runs.iter().find(|r| r.task == task).unwrap();
    assert_eq!(first.finished_at, samples::at(12));
    assert_eq!(first.duration_ms, 10_000);
    let second = runs.iter().find(|r| r.task == late).unwrap();
    assert_eq!(second.finished_at, samples::at(110));
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    let last = model.last_successes(&acme).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(
        (last[0].task, last[0].at, last[0].snapshot_id.as_deref()),
        (late, samples::at(110), Some("s2"))
    );
}
