//! Accept, start, finish, the outbox and the identity.

use fleet_events::ids::TaskId;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use fleet_events::samples;

use super::*;
use crate::state::{Accepted, Identity, Stage};

#[tokio::test]
async fn a_redelivered_attempt_is_a_duplicate_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let o = order(1, 1, TaskKind::Backup);
    let ack = report(&o, 1, ReportStatus::Acknowledged);
    assert_eq!(
        state.accept(&o, None, ack.clone()).await.unwrap(),
        Accepted::New
    );
    let again = report(&o, 5, ReportStatus::Acknowledged);
    assert_eq!(
        state.accept(&o, None, again).await.unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(outbox_statuses(&state), [(o.task, "acknowledged")]);
    let record = state.record(o.task, 1).unwrap().unwrap();
    assert_eq!(record.header.accepted_at, samples::at(1));

    // Another attempt of the same task is new.
    let next = order(1, 2, TaskKind::Backup);
    let ack2 = report(&next, 6, ReportStatus::Acknowledged);
    assert_eq!(
        state.accept(&next, None, ack2).await.unwrap(),
        Accepted::New
    );
    assert_eq!(state.outbox_depth(), 2);
}

#[tokio::test]
async fn records_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let o = order(1, 3, TaskKind::Check);
    let identity = Identity {
        agent: samples::AGENT,
        tenant: samples::tenant(),
    };
    {
        let state = AgentState::open(dir.path()).unwrap();
        assert_eq!(state.identity().unwrap(), None);
        state.set_identity(&identity).await.unwrap();
        let ack = report(&o, 1, ReportStatus::Acknowledged);
        state.accept(&o, None, ack).await.unwrap();
    }
    let state = AgentState::open(dir.path()).unwrap();
    assert_eq!(state.identity().unwrap(), Some(identity));
    let record = state.record(o.task, 3).unwrap().unwrap();
    assert_eq!((record.header.stage, &record.order), (Stage::Accepted, &o));
    let ack = report(&o, 9, ReportStatus::Acknowledged);
    assert_eq!(
        state.accept(&o, None, ack).await.unwrap(),
        Accepted::Duplicate
    );
    let pending: Vec<_> = state
        .pending()
        .unwrap()
        .into_iter()
        .map(|r| r.order)
        .collect();
    assert_eq!(pending, std::slice::from_ref(&o));
    assert_eq!(outbox_statuses(&state), [(o.task, "acknowledged")]);
}

#[tokio::test]
async fn start_and_finish_move_stages_and_append_reports_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let a = order(1, 1, TaskKind::Backup);
    let b = order(2, 1, TaskKind::Check);
    run(&state, &a).await;
    let ack = report(&b, 3, ReportStatus::Acknowledged);
    state.accept(&b, None, ack).await.unwrap();
    state
        .finish(a.task, 1, report(&a, 4, succeeded()))
        .await
        .unwrap();
    // Failing before restic starts (no secret, cancelled while queued) is allowed.
    state
        .finish(b.task, 1, report(&b, 5, failed()))
        .await
        .unwrap();

    let record = state.record(a.task, 1).unwrap().unwrap();
    assert_eq!(record.header.stage, Stage::Finished);
    assert_eq!(record.header.started_at, Some(samples::at(2)));
    assert_eq!(record.header.finished_at, Some(samples::at(4)));
    assert_eq!(record.order, a);
    assert_eq!(
        outbox_statuses(&state),
        [
            (a.task, "acknowledged"),
            (a.task, "started"),
            (b.task, "acknowledged"),
            (a.task, "succeeded"),
            (b.task, "failed"),
        ]
    );
}

#[tokio::test]
async fn the_outbox_drains_in_order_and_remove_deletes_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let orders: Vec<_> = (1..=3).map(|n| order(n, 1, TaskKind::Prune)).collect();
    for (i, o) in orders.iter().enumerate().rev() {
        let ack = report(o, i as i64, ReportStatus::Acknowledged);
        state.accept(o, None, ack).await.unwrap();
    }
    let entries = state.outbox().unwrap();
    let keys: Vec<_> = entries.iter().map(|(k, _)| *k).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    let tasks: Vec<TaskId> = entries.into_iter().map(|(_, r)| r.unwrap().task).collect();
    assert_eq!(tasks, [orders[2].task, orders[1].task, orders[0].task]);

    assert!(state.remove(keys[1]).unwrap());
    assert!(!state.remove(keys[1]).unwrap());
    assert_eq!(state.outbox_depth(), 2);
    let left: Vec<_> = state
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, [keys[0], keys[2]]);
}

#[tokio::test]
async fn illegal_moves_are_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let o = order(1, 1, TaskKind::Backup);
    let unknown = state.finish(o.task, 1, report(&o, 1, failed())).await;
    assert!(matches!(
        unknown,
        Err(StateError::UnknownTask { attempt: 1, .. })
    ));
    let unknown = state
        .start(o.task, 1, report(&o, 1, ReportStatus::Started))
        .await;
    assert!(matches!(unknown, Err(StateError::UnknownTask { .. })));

    let ack = report(&o, 1, ReportStatus::Acknowledged);
    state.accept(&o, None, ack).await.unwrap();
    let early = state.finish(o.task, 1, report(&o, 2, succeeded())).await;
    assert!(matches!(
        early,
        Err(StateError::IllegalMove {
            from: Stage::Accepted,
            to: Stage::Finished,
            ..
        })
    ));
    let started = report(&o, 2, ReportStatus::Started);
    state.start(o.task, 1, started.clone()).await.unwrap();
    let twice = state.start(o.task, 1, started).await;
    assert!(matches!(
        twice,
        Err(StateError::IllegalMove {
            from: Stage::Running,
            to: Stage::Running,
            ..
        })
    ));
    let not_final = state
        .finish(o.task, 1, report(&o, 3, ReportStatus::Started))
        .await;
    assert!(matches!(not_final, Err(StateError::ReportMismatch(_))));
    let other = order(2, 1, TaskKind::Backup);
    let wrong_task = state.finish(o.task, 1, report(&other, 3, failed())).await;
    assert!(matches!(wrong_task, Err(StateError::ReportMismatch(_))));
    let wrong_status = state
        .accept(&other, None, report(&other, 3, ReportStatus::Started))
        .await;
    assert!(matches!(wrong_status, Err(StateError::ReportMismatch(_))));

    state
        .finish(o.task, 1, report(&o, 4, failed()))
        .await
        .unwrap();
    let again = state.finish(o.task, 1, report(&o, 5, failed())).await;
    assert!(matches!(
        again,
        Err(StateError::IllegalMove {
            from: Stage::Finished,
            ..
        })
    ));
    assert_eq!(state.outbox_depth(), 3);
    assert_eq!(state.record(other.task, 1).unwrap(), None);
}

#[tokio::test]
async fn damaged_values_are_typed_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let o = order(1, 1, TaskKind::Backup);
    let ack = report(&o, 1, ReportStatus::Acknowledged);
    state.accept(&o, None, ack).await.unwrap();
    let garbage = crate::state::OutboxKey::new(u64::MAX);
    state
        .outbox
        .insert(garbage.to_bytes(), &[0xff, 0xff])
        .unwrap();
    let entries = state.outbox().unwrap();
    assert!(entries[0].1.is_ok());
    assert_eq!(entries[1].0, garbage);
    assert!(entries[1].1.is_err());

    let key = crate::state::record::task_key(o.task, 1);
    state.tasks.insert(key, &[1, 0, 9]).unwrap();
    let started = report(&o, 2, ReportStatus::Started);
    let corrupt = state.start(o.task, 1, started).await;
    assert!(matches!(
        corrupt,
        Err(StateError::Corrupt { tree: "tasks", .. })
    ));
    assert!(matches!(state.running(), Err(StateError::Corrupt { .. })));
}

#[tokio::test]
async fn a_retention_report_goes_out_before_the_success_and_only_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let o = order(1, 1, TaskKind::Backup);
    let retention = |secs| {
        report(
            &o,
            secs,
            samples::retention_report(fleet_events::event::RetentionOutcome::Applied),
        )
    };
    let ack = report(&o, 1, ReportStatus::Acknowledged);
    state.accept(&o, None, ack).await.unwrap();
    let early = state.record_retention(retention(2)).await.unwrap_err();
    assert!(early.to_string().contains("not running"), "{early}");
    let started = report(&o, 2, ReportStatus::Started);
    state.start(o.task, 1, started).await.unwrap();
    state.record_retention(retention(3)).await.unwrap();
    let record = state.record(o.task, 1).unwrap().unwrap();
    assert_eq!(
        record.header.stage,
        Stage::Running,
        "the attempt did not move"
    );
    assert!(matches!(
        state.record_retention(report(&o, 3, succeeded())).await,
        Err(StateError::ReportMismatch(_))
    ));
    assert!(matches!(
        state.finish(o.task, 1, retention(3)).await,
        Err(StateError::ReportMismatch(_))
    ));
    state
        .finish(o.task, 1, report(&o, 4, succeeded()))
        .await
        .unwrap();
    assert!(
        state.record_retention(retention(5)).await.is_err(),
        "finished"
    );
    let other = order(2, 1, TaskKind::Backup);
    let unknown = report(
        &other,
        5,
        samples::retention_report(samples::retention_failed()),
    );
    assert!(matches!(
        state.record_retention(unknown).await,
        Err(StateError::UnknownTask { .. })
    ));
    assert_eq!(
        outbox_statuses(&state),
        [
            (o.task, "acknowledged"),
            (o.task, "started"),
            (o.task, "retention_applied"),
            (o.task, "succeeded"),
        ]
    );
}

#[tokio::test]
async fn listing_parts_go_out_in_order_before_the_success_and_only_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let o = order(1, 1, TaskKind::Prune);
    let part = |n: u32| {
        let listing = fleet_events::event::SnapshotListing {
            part: n,
            parts: 3,
            ..samples::listing()
        };
        let repo = fleet_events::ids::RepoId::for_url("/srv/restic");
        report(&o, 3, ReportStatus::SnapshotsListed { repo, listing })
    };
    let parts: Vec<_> = (0..3).map(part).collect();
    state
        .accept(&o, None, report(&o, 1, ReportStatus::Acknowledged))
        .await
        .unwrap();
    let early = state.record_listing(&parts).await.unwrap_err();
    assert!(early.to_string().contains("not running"), "{early}");
    state
        .start(o.task, 1, report(&o, 2, ReportStatus::Started))
        .await
        .unwrap();
    let mixed = [part(0), report(&o, 3, succeeded())];
    assert!(matches!(
        state.record_listing(&mixed).await,
        Err(StateError::ReportMismatch(_))
    ));
    let other = order(2, 1, TaskKind::Prune);
    let elsewhere = [part(0), report(&other, 3, part(1).status)];
    assert!(matches!(
        state.record_listing(&elsewhere).await,
        Err(StateError::ReportMismatch(_))
    ));
    state.record_listing(&[]).await.unwrap();
    state.record_listing(&parts).await.unwrap();
    state
        .finish(o.task, 1, report(&o, 4, succeeded()))
        .await
        .unwrap();
    let sent: Vec<String> = state
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.unwrap().msg_id())
        .collect();
    let id = |rest: &str| format!("{}:1:{rest}", o.task);
    assert_eq!(
        sent,
        [
            id("acknowledged"),
            id("started"),
            id("snapshots_listed:0"),
            id("snapshots_listed:1"),
            id("snapshots_listed:2"),
            id("succeeded"),
        ]
    );
}

#[tokio::test]
async fn a_request_is_kept_with_its_attempt_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let o = order(1, 1, TaskKind::Restore);
    let request = fleet_events::event::TaskRequest::Restore(samples::restore_request());
    {
        let state = AgentState::open(dir.path()).unwrap();
        let ack = report(&o, 1, ReportStatus::Acknowledged);
        state.accept(&o, Some(&request), ack).await.unwrap();
    }
    let state = AgentState::open(dir.path()).unwrap();
    let pending = state.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (&pending[0].order, &pending[0].request),
        (&o, &Some(request.clone()))
    );
    assert_eq!(state.queued().unwrap().restore, 1);
    state
        .start(o.task, 1, report(&o, 2, ReportStatus::Started))
        .await
        .unwrap();
    assert_eq!(state.running().unwrap().restore, 1);
    let record = state.record(o.task, 1).unwrap().unwrap();
    assert_eq!(record.request, Some(request), "kept through the move");
}

/// A record written by a build of format 1 (header and order, no request) is read, moved
/// and finished by this build.
#[tokio::test]
async fn a_format_1_record_moves_like_any_other() {
    #[derive(serde::Serialize)]
    struct WrittenV1<'a> {
        format: u16,
        stage: Stage,
        kind: TaskKind,
        #[serde(with = "chrono::serde::ts_microseconds")]
        accepted_at: chrono::DateTime<chrono::Utc>,
        #[serde(with = "chrono::serde::ts_microseconds_option")]
        started_at: Option<chrono::DateTime<chrono::Utc>>,
        #[serde(with = "chrono::serde::ts_microseconds_option")]
        finished_at: Option<chrono::DateTime<chrono::Utc>>,
        order: &'a TaskOrder,
    }
    let dir = tempfile::tempdir().unwrap();
    let o = order(1, 1, TaskKind::Backup);
    {
        let state = AgentState::open(dir.path()).unwrap();
        let old = WrittenV1 {
            format: 1,
            stage: Stage::Accepted,
            kind: TaskKind::Backup,
            accepted_at: samples::at(1),
            started_at: None,
            finished_at: None,
            order: &o,
        };
        let key = crate::state::record::task_key(o.task, 1);
        // Format 1 was written before policies had hooks: the spec in schema 1's layout.
        let schema_1 = fleet_events::envelope::SCHEMA_VERSION;
        let bytes =
            fleet_events::codec::with_layout(schema_1, || postcard::to_stdvec(&old)).unwrap();
        state.tasks.insert(key, bytes).unwrap();
    }
    let state = AgentState::open(dir.path()).unwrap();
    let pending = state.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((&pending[0].order, &pending[0].request), (&o, &None));
    assert_eq!(state.queued().unwrap().backup, 1);
    state
        .start(o.task, 1, report(&o, 2, ReportStatus::Started))
        .await
        .unwrap();
    state
        .finish(o.task, 1, report(&o, 3, succeeded()))
        .await
        .unwrap();
    let record = state.record(o.task, 1).unwrap().unwrap();
    assert_eq!(
        (record.header.stage, record.order, record.request),
        (Stage::Finished, o, None)
    );
}
