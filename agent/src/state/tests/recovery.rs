//! Crash recovery, pending attempts, heartbeat counts and forgetting old records.

use chrono::TimeDelta;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{KindCounts, ReportStatus};
use fleet_events::samples;

use super::*;
use crate::state::{KEEP_FINISHED, Stage};

#[tokio::test]
async fn an_attempt_left_running_by_a_crash_is_recovered_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = order(1, 2, TaskKind::Backup);
    let queued = order(2, 1, TaskKind::Check);
    {
        let state = AgentState::open(dir.path()).unwrap();
        assert!(state.interrupted().is_empty());
        run(&state, &crashed).await;
        let ack = report(&queued, 3, ReportStatus::Acknowledged);
        state.accept(&queued, None, ack).await.unwrap();
        // The agent dies here: no finish.
    }
    let state = AgentState::open(dir.path()).unwrap();
    assert_eq!(state.interrupted(), [(crashed.task, 2)]);
    let pending: Vec<_> = state
        .pending()
        .unwrap()
        .into_iter()
        .map(|r| r.order)
        .collect();
    assert_eq!(pending, std::slice::from_ref(&queued));

    // Attempts started after the restart are not taken for interrupted ones.
    let fresh = order(3, 1, TaskKind::Prune);
    run(&state, &fresh).await;

    let done = state
        .recover(|o| report(o, 10, ReportStatus::Interrupted))
        .await
        .unwrap();
    assert_eq!(done, [(crashed.task, 2)]);
    let record = state.record(crashed.task, 2).unwrap().unwrap();
    assert_eq!(record.header.stage, Stage::Finished);
    let last = state.outbox().unwrap().pop().unwrap().1.unwrap();
    assert_eq!((last.task, last.attempt), (crashed.task, 2));
    assert_eq!(last.status, ReportStatus::Interrupted);
    assert_eq!(last.at, samples::at(10));

    // Recovering again finishes nothing; the fresh attempt still runs.
    let again = state.recover(|o| report(o, 11, ReportStatus::Interrupted));
    assert_eq!(again.await.unwrap(), []);
    let fresh_record = state.record(fresh.task, 1).unwrap().unwrap();
    assert_eq!(fresh_record.header.stage, Stage::Running);
}

#[tokio::test]
async fn counts_by_kind_for_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    run(&state, &order(1, 1, TaskKind::Backup)).await;
    run(&state, &order(2, 1, TaskKind::Backup)).await;
    run(&state, &order(3, 1, TaskKind::Prune)).await;
    for (n, kind) in [
        (4, TaskKind::Check),
        (5, TaskKind::Check),
        (6, TaskKind::Backup),
    ] {
        let o = order(n, 1, kind);
        let ack = report(&o, 1, ReportStatus::Acknowledged);
        state.accept(&o, None, ack).await.unwrap();
    }
    let done = order(2, 1, TaskKind::Backup);
    state
        .finish(done.task, 1, report(&done, 9, failed()))
        .await
        .unwrap();

    let running = state.running().unwrap();
    assert_eq!(
        running,
        KindCounts {
            backup: 1,
            prune: 1,
            ..KindCounts::default()
        }
    );
    let queued = state.queued().unwrap();
    assert_eq!(
        queued,
        KindCounts {
            backup: 1,
            check: 2,
            ..KindCounts::default()
        }
    );
    assert_eq!(queued.get(TaskKind::Check), 2);
}

#[tokio::test]
async fn forget_finished_keeps_recent_and_unfinished_records() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let old = order(1, 1, TaskKind::Backup);
    let recent = order(2, 1, TaskKind::Backup);
    let active = order(3, 1, TaskKind::Backup);
    for o in [&old, &recent, &active] {
        run(&state, o).await;
    }
    state
        .finish(old.task, 1, report(&old, 100, failed()))
        .await
        .unwrap();
    let late = 100 + 9 * 24 * 3600;
    state
        .finish(recent.task, 1, report(&recent, late, succeeded()))
        .await
        .unwrap();

    let now = samples::at(late) + TimeDelta::hours(1);
    assert_eq!(state.forget_finished(now - KEEP_FINISHED).unwrap(), 1);
    assert_eq!(state.record(old.task, 1).unwrap(), None);
    assert!(state.record(recent.task, 1).unwrap().is_some());
    assert!(state.record(active.task, 1).unwrap().is_some());
    assert_eq!(state.forget_finished(now - KEEP_FINISHED).unwrap(), 0);
    // The outbox is not touched by housekeeping.
    assert_eq!(state.outbox_depth(), 8);
}
