//! Overlap: a fire while the pair's previous task is unfinished.

use super::*;

/// The log and a started scheduler after the 03:00 run of `overlap` was scheduled and
/// dispatched (still unfinished).
fn running(overlap: Overlap) -> (Scheduler, Vec<Envelope>, TaskId) {
    let spec = PolicySpec {
        overlap,
        ..hourly()
    };
    let mut log = policy_on(spec, &[AGENT]);
    let mut s = given(&log);
    s.start(samples::at(1));
    let first = s.due(hour(0));
    record(&mut s, &mut log, &first);
    let task = first[0].task;
    let dispatched = TaskEvent::Dispatched {
        agent: AGENT,
        attempt: 1,
    };
    let env = on_task(task, hour(0) + mins(5), dispatched);
    s.apply(&env);
    log.push(env);
    (s, log, task)
}

#[test]
fn forbid_records_a_skipped_task_naming_the_running_one() {
    let (mut s, mut log, running_task) = running(Overlap::Forbid);
    let decisions = s.due(hour(1));
    assert_eq!(
        outcomes(&decisions),
        vec![(AGENT, hour(1), Outcome::SkippedOverlap)]
    );
    assert!(matches!(
        &decisions[0].envelope.event,
        Event::Task { task, event: TaskEvent::Skipped { reason: SkipReason::Overlap { running }, .. } }
            if *running == running_task && *task == TaskId::for_fire(POLICY, AGENT, hour(1))
    ));
    record(&mut s, &mut log, &decisions);
    // Once the running task has ended, the next fire runs.
    let cancelled = TaskEvent::Cancelled {
        reason: "operator".into(),
    };
    s.apply(&on_task(running_task, hour(1) + mins(1), cancelled));
    assert_eq!(
        outcomes(&s.due(hour(2))),
        vec![(AGENT, hour(2), Outcome::Scheduled)]
    );
}

#[test]
fn replace_cancels_the_unfinished_task_and_schedules_the_new_one() {
    let (mut s, mut log, old) = running(Overlap::Replace);
    let decisions = s.due(hour(1));
    assert_eq!(
        outcomes(&decisions),
        vec![(AGENT, hour(1), Outcome::Replaced)]
    );
    let d = &decisions[0];
    assert!(matches!(
        &d.envelope.event,
        Event::Task {
            event: TaskEvent::Scheduled { .. },
            ..
        }
    ));
    assert_eq!(d.cancels.len(), 1);
    let cancel = &d.cancels[0];
    assert_eq!(cancel.task, old);
    assert_eq!(cancel.msg_id, format!("{}:cancel:{old}", d.msg_id));
    assert_eq!(cancel.envelope.correlation, d.envelope.correlation);
    assert_eq!(
        cancel.envelope.event,
        Event::Task {
            task: old,
            event: TaskEvent::Cancelled {
                reason: "replaced by the run of 2026-11-22T04:00:00Z".into()
            }
        }
    );
    record(&mut s, &mut log, &decisions);
    assert_eq!(s.stats().unfinished, 1, "only the new task is unfinished");
    // The next fire replaces the new task only.
    let next = s.due(hour(2));
    let cancelled: Vec<TaskId> = next[0].cancels.iter().map(|c| c.task).collect();
    assert_eq!(cancelled, vec![d.task]);
}

#[test]
fn allow_schedules_regardless() {
    let (mut s, _log, _) = running(Overlap::Allow);
    assert_eq!(
        outcomes(&s.due(hour(1))),
        vec![(AGENT, hour(1), Outcome::Scheduled)]
    );
}
