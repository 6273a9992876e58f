//! The task read model without a server: folding, counts, what it rejects, and batches.

use fleet_events::envelope::Envelope;
use fleet_events::event::{ErrorClass, Event, EventType, TaskError, TaskEvent};
use fleet_events::ids::{TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::samples::{self, AGENT, POLICY};
use fleet_events::store::Stored;
use fleet_events::task_state::TaskStatus;

use super::*;
use crate::runtime::Outcome;

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn stored(seq: u64, tenant: &TenantId, task: TaskId, event: TaskEvent) -> Stored {
    let envelope = Envelope::new(
        tenant.clone(),
        samples::at(seq as i64),
        Event::Task { task, event },
    );
    Stored {
        seq,
        subject: envelope.subject(),
        envelope,
    }
}

fn scheduled() -> TaskEvent {
    let Event::Task { event, .. } = samples::event(EventType::TaskScheduled) else {
        unreachable!()
    };
    event
}

fn failed(attempt: u32, class: ErrorClass) -> TaskEvent {
    TaskEvent::Failed {
        attempt,
        error: TaskError::new(class, "boom", Some(1)),
    }
}

fn open() -> (tempfile::TempDir, Checkpointed<Tasks>) {
    let dir = tempfile::tempdir().unwrap();
    let model = Checkpointed::open(dir.path(), Tasks::default()).unwrap();
    (dir, model)
}

fn count(model: &Checkpointed<Tasks>, tenant: &TenantId, status: TaskStatus) -> u64 {
    let counts = model.status_counts(tenant).unwrap();
    counts.into_iter().find(|(s, _)| *s == status).unwrap().1
}

#[test]
fn a_task_is_folded_from_its_events() {
    let (_dir, model) = open();
    let acme = tenant("acme");
    let task = TaskId::generate();
    let events = [
        scheduled(),
        TaskEvent::Dispatched {
            agent: AGENT,
            attempt: 1,
        },
        TaskEvent::Started { attempt: 1 },
        failed(1, ErrorClass::Network),
        TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: samples::at(900),
            delay_ms: 900_000,
        },
    ];
    for (i, event) in events.into_iter().enumerate() {
        let outcome = model
            .apply(Ok(stored(i as u64 + 1, &acme, task, event)))
            .unwrap();
        assert_eq!(outcome, Outcome::Applied);
    }
    let view = model.task(task).unwrap().unwrap();
    assert_eq!(view.status(), Some(TaskStatus::RetryScheduled));
    assert_eq!(view.status, "retry_scheduled");
    assert_eq!(view.tenant, acme);
    assert_eq!((view.policy, view.agent), (POLICY, AGENT));
    assert_eq!(view.kind, Some(TaskKind::Backup));
    assert_eq!(view.attempt, 1);
    assert_eq!(view.last_error, Some(ErrorClass::Network));
    assert_eq!(view.fire_at, samples::at(0));
    assert_eq!(view.run_at, Some(samples::at(137)));
    assert_eq!(view.retry_due_at, Some(samples::at(900)));
    assert_eq!(count(&model, &acme, TaskStatus::RetryScheduled), 1);
    assert_eq!(count(&model, &acme, TaskStatus::Scheduled), 0);
    let stored_counts: Vec<_> = model.trees()[1].iter().collect();
    assert_eq!(stored_counts.len(), 1, "zero counts are not stored");
    assert_eq!(model.task(TaskId::generate()).unwrap(), None);
}

#[test]
fn counts_are_per_tenant() {
    let (_dir, model) = open();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    for (seq, t) in [(1, &acme), (2, &acme), (3, &globex)] {
        model
            .apply(Ok(stored(seq, t, TaskId::generate(), scheduled())))
            .unwrap();
    }
    assert_eq!(count(&model, &acme, TaskStatus::Scheduled), 2);
    assert_eq!(count(&model, &globex, TaskStatus::Scheduled), 1);
    assert_eq!(count(&model, &tenant("other"), TaskStatus::Scheduled), 0);
}

#[test]
fn illegal_transitions_are_rejected_and_leave_the_task_as_it_was() {
    let (_dir, model) = open();
    let acme = tenant("acme");
    let task = TaskId::generate();
    model
        .apply(Ok(stored(1, &acme, task, scheduled())))
        .unwrap();
    let before = model.dump().unwrap();
    let succeeded = TaskEvent::Started { attempt: 1 };
    assert_eq!(
        model.apply(Ok(stored(2, &acme, task, succeeded))).unwrap(),
        Outcome::Rejected("illegal_transition")
    );
    assert_eq!(
        model
            .apply(Ok(stored(3, &acme, task, scheduled())))
            .unwrap(),
        Outcome::Rejected("illegal_transition")
    );
    let never_scheduled = TaskEvent::Dispatched {
        agent: AGENT,
        attempt: 1,
    };
    assert_eq!(
        model
            .apply(Ok(stored(4, &acme, TaskId::generate(), never_scheduled)))
            .unwrap(),
        Outcome::Rejected("illegal_transition")
    );
    let after: Vec<_> = model
        .dump()
        .unwrap()
        .into_iter()
        .filter(|e| e.tree != "meta" && e.tree != "rejected")
        .collect();
    let before: Vec<_> = before.into_iter().filter(|e| e.tree != "meta").collect();
    assert_eq!(after, before);
    assert_eq!(model.status().unwrap().rejected, 3);
    assert_eq!(model.checkpoint().unwrap(), 4);
}

#[test]
fn a_task_scheduled_and_dispatched_in_one_batch_is_dispatched() {
    let (_dir, model) = open();
    let acme = tenant("acme");
    let task = TaskId::generate();
    let dispatched = TaskEvent::Dispatched {
        agent: AGENT,
        attempt: 1,
    };
    let batch = vec![
        Ok(stored(1, &acme, task, scheduled())),
        Ok(stored(2, &acme, task, dispatched)),
        Ok(stored(3, &acme, task, TaskEvent::Started { attempt: 1 })),
    ];
    assert_eq!(model.apply_batch(batch).unwrap(), [Outcome::Applied; 3]);
    let view = model.task(task).unwrap().unwrap();
    assert_eq!(
        (view.status(), view.attempt),
        (Some(TaskStatus::Running), 1)
    );
    assert_eq!(count(&model, &acme, TaskStatus::Running), 1);
    assert_eq!(count(&model, &acme, TaskStatus::Scheduled), 0);
    assert_eq!(model.checkpoint().unwrap(), 3);
}

#[test]
fn a_batch_with_illegal_transitions_stores_what_one_event_at_a_time_stores() {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (t1, t2) = (TaskId::generate(), TaskId::generate());
    let dispatched = TaskEvent::Dispatched {
        agent: AGENT,
        attempt: 1,
    };
    let events = [
        stored(1, &acme, t1, scheduled()),
        stored(2, &acme, t1, dispatched.clone()),
        stored(3, &acme, t2, dispatched.clone()),
        stored(4, &acme, t2, scheduled()),
        stored(5, &globex, t1, TaskEvent::Started { attempt: 1 }),
        stored(6, &acme, t1, TaskEvent::Started { attempt: 1 }),
        stored(7, &acme, t2, dispatched),
        stored(8, &acme, t1, scheduled()),
        stored(9, &acme, t1, failed(1, ErrorClass::Network)),
    ];
    let dump = crate::testing::assert_batches_equal_one_by_one(Tasks::default, &events);
    assert!(dump.iter().any(|e| e.tree == "rejected"));
    let (_dir, model) = open();
    let outcomes = model
        .apply_batch(events.iter().cloned().map(Ok).collect())
        .unwrap();
    use Outcome::*;
    assert_eq!(
        outcomes,
        [
            Applied,
            Applied,
            Rejected("illegal_transition"),
            Applied,
            Rejected("tenant_mismatch"),
            Applied,
            Applied,
            Rejected("illegal_transition"),
            Applied,
        ]
    );
    assert_eq!(count(&model, &acme, TaskStatus::Failed), 1);
    assert_eq!(count(&model, &acme, TaskStatus::Dispatched), 1);
}

#[test]
fn events_on_the_wrong_subject_or_tenant_are_rejected() {
    let (_dir, model) = open();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let task = TaskId::generate();
    model
        .apply(Ok(stored(1, &acme, task, scheduled())))
        .unwrap();
    let dispatched = TaskEvent::Dispatched {
        agent: AGENT,
        attempt: 1,
    };
    assert_eq!(
        model
            .apply(Ok(stored(2, &globex, task, dispatched.clone())))
            .unwrap(),
        Outcome::Rejected("tenant_mismatch")
    );
    let mut elsewhere = stored(3, &acme, task, dispatched);
    elsewhere.subject = format!("fleet.evt.acme.task.{}", TaskId::generate());
    assert_eq!(
        model.apply(Ok(elsewhere)).unwrap(),
        Outcome::Rejected("subject_mismatch")
    );
    let mut agent_event = Envelope::new(
        acme.clone(),
        samples::at(0),
        samples::event(EventType::AgentCameOnline),
    );
    agent_event.tenant = acme.clone();
    let wrong = Stored {
        seq: 4,
        subject: format!("fleet.evt.acme.task.{task}"),
        envelope: agent_event,
    };
    assert_eq!(
        model.apply(Ok(wrong)).unwrap(),
        Outcome::Rejected("not_a_task_event")
    );
    assert_eq!(
        model.task(task).unwrap().unwrap().status(),
        Some(TaskStatus::Scheduled)
    );
}

#[test]
fn views_round_trip() {
    let (_dir, model) = open();
    let acme = tenant("acme");
    let task = TaskId::generate();
    model
        .apply(Ok(stored(1, &acme, task, scheduled())))
        .unwrap();
    let view = model.task(task).unwrap().unwrap();
    assert_eq!(TaskView::decode(&view.encode().unwrap()).unwrap(), view);
    let folded = view.to_task().unwrap();
    assert_eq!(folded.status, TaskStatus::Scheduled);
    assert_eq!(folded.spec, None);
}

fn unlock_ran(attempt: u32) -> TaskEvent {
    TaskEvent::UnlockRan {
        attempt,
        interrupted: samples::interrupted(),
        outcome: samples::unlock_failed(),
    }
}

#[test]
fn an_unlock_is_kept_in_the_log_and_changes_no_status_or_count() {
    let acme = tenant("acme");
    let (task, other) = (TaskId::generate(), TaskId::generate());
    let dispatched = |attempt| TaskEvent::Dispatched {
        agent: AGENT,
        attempt,
    };
    let events = [
        stored(1, &acme, task, scheduled()),
        stored(2, &acme, task, dispatched(1)),
        stored(3, &acme, task, TaskEvent::Acknowledged { attempt: 1 }),
        stored(4, &acme, task, unlock_ran(1)),
        stored(5, &acme, other, scheduled()),
        stored(6, &acme, other, dispatched(1)),
        // Before its acknowledgement: illegal, rejected like any other.
        stored(7, &acme, other, unlock_ran(1)),
        stored(8, &acme, task, TaskEvent::Started { attempt: 1 }),
        // A second unlock (the first failed; a crash before the start ran it again).
        stored(9, &acme, task, unlock_ran(1)),
        stored(10, &acme, task, failed(1, ErrorClass::Auth)),
        // After the attempt ended: rejected.
        stored(11, &acme, task, unlock_ran(1)),
    ];
    let (_dir, model) = crate::testing::assert_rebuild_equals_incremental(Tasks::default, &events);
    let view = model.task(task).unwrap().unwrap();
    assert_eq!(view.status(), Some(TaskStatus::Failed));
    assert_eq!(view.last_error, Some(ErrorClass::Auth));
    assert_eq!(count(&model, &acme, TaskStatus::Failed), 1);
    assert_eq!(count(&model, &acme, TaskStatus::Dispatched), 1);
    assert_eq!(model.status().unwrap().rejected, 2);

    let (_dir, model) = open();
    let outcomes: Vec<Outcome> = events[..4]
        .iter()
        .map(|e| model.apply(Ok(e.clone())).unwrap())
        .collect();
    assert_eq!(outcomes, [Outcome::Applied; 4]);
    let view = model.task(task).unwrap().unwrap();
    assert_eq!(view.status(), Some(TaskStatus::Acknowledged));
    assert_eq!(view.last_error, None, "a failed unlock is no failed run");
    assert_eq!(count(&model, &acme, TaskStatus::Acknowledged), 1);
}

#[test]
fn a_retention_is_kept_in_the_log_and_changes_no_status_or_count() {
    let acme = tenant("acme");
    let (task, other) = (TaskId::generate(), TaskId::generate());
    let retention = |attempt| samples::retention_event(attempt, samples::retention_failed());
    let Event::Task {
        event: succeeded, ..
    } = samples::event(EventType::TaskSucceeded)
    else {
        unreachable!("a task sample")
    };
    let TaskEvent::Succeeded { summary, .. } = succeeded else {
        unreachable!("a success")
    };
    let succeeded = TaskEvent::Succeeded {
        attempt: 1,
        summary,
    };
    let dispatched = |attempt| TaskEvent::Dispatched {
        agent: AGENT,
        attempt,
    };
    let events = [
        stored(1, &acme, task, scheduled()),
        stored(2, &acme, task, dispatched(1)),
        stored(3, &acme, task, TaskEvent::Acknowledged { attempt: 1 }),
        // Before the start: illegal, rejected like any other.
        stored(4, &acme, task, retention(1)),
        stored(5, &acme, task, TaskEvent::Started { attempt: 1 }),
        stored(6, &acme, task, retention(1)),
        stored(7, &acme, task, succeeded.clone()),
        // After the success (overtaken in intake): kept, nothing moves.
        stored(8, &acme, task, retention(1)),
        stored(9, &acme, other, scheduled()),
        stored(10, &acme, other, dispatched(1)),
        stored(11, &acme, other, TaskEvent::Started { attempt: 1 }),
        stored(12, &acme, other, failed(1, ErrorClass::Timeout)),
        // After a failure: rejected.
        stored(13, &acme, other, retention(1)),
    ];
    let (_dir, model) = crate::testing::assert_rebuild_equals_incremental(Tasks::default, &events);
    let view = model.task(task).unwrap().unwrap();
    assert_eq!(view.status(), Some(TaskStatus::Succeeded));
    assert_eq!(view.last_error, None, "a failed forget is no failed run");
    assert_eq!(count(&model, &acme, TaskStatus::Succeeded), 1);
    assert_eq!(count(&model, &acme, TaskStatus::Failed), 1);
    assert_eq!(model.status().unwrap().rejected, 2);

    let (_dir, model) = open();
    let outcomes: Vec<Outcome> = events[..6]
        .iter()
        .map(|e| model.apply(Ok(e.clone())).unwrap())
        .collect();
    assert_eq!(
        outcomes[3],
        Outcome::Rejected("illegal_transition"),
        "{outcomes:?}"
    );
    let view = model.task(task).unwrap().unwrap();
    assert_eq!(view.status(), Some(TaskStatus::Running));
    assert_eq!(count(&model, &acme, TaskStatus::Running), 1);
}
