//! The whole loop with the real agent: the control plane dispatches a backup task, the
//! fleet-agent runtime records it, runs real restic against a temporary repository and
//! reports the summary (and the retention applied after it); the snapshot carries the
//! policy and task tags.

use std::time::Duration;

use chrono::Utc;
use fleet_agent::restic::output::parse_snapshots;
use fleet_agent::state::AgentState;
use fleet_control::serve::Service;
use fleet_events::event::{RunDetail, TaskEvent};
use fleet_events::ids::AgentId;
use fleet_events::settings::AgentSettings;
use tokio_util::sync::CancellationToken;

use crate::support::agent::{agent_config, backup_spec, spawn_agent};
use crate::support::{eventually, fleet, register, schedule, services, stop, system, task_events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_task_runs_real_restic_through_the_agent() {
    let f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    for n in 0..3 {
        std::fs::write(
            data.join(format!("file-{n}.txt")),
            format!("content {n}\n").repeat(100),
        )
        .expect("write");
    }
    let restic_repo = fleet_tests::restic::Repo::init(dir.path(), "correct horse battery staple");

    let agent = AgentId::generate();
    register(&f.store, agent, AgentSettings::default()).await;
    let task = schedule(
        &f.store,
        agent,
        backup_spec(&restic_repo, &data),
        Utc::now(),
    )
    .await;

    let shutdown = CancellationToken::new();
    let control = services(
        &f.store,
        &[Service::Dispatcher, Service::Intake, Service::Retry],
        &system(),
        &shutdown,
    );
    let config = agent_config(agent, &restic_repo, AgentSettings::default());
    let state = AgentState::open(dir.path().join("agent-state")).expect("state");
    let agent_run = spawn_agent(&f.client, config, &state, &shutdown);

    let events = eventually("the backup to succeed", Duration::from_secs(60), || async {
        let events = task_events(&f.store, task).await;
        if events
            .iter()
            .any(|e| matches!(e, TaskEvent::Succeeded { .. }))
        {
            std::ops::ControlFlow::Break(events)
        } else {
            std::ops::ControlFlow::Continue(events)
        }
    })
    .await;
    let mut tasks = control;
    tasks.push(agent_run);
    stop(&shutdown, tasks).await;

    let names: Vec<&str> = events.iter().map(|e| e.event_type().name()).collect();
    assert_eq!(
        names,
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            // The policy's retention (the sample's), applied after the backup.
            "task.retention_applied",
            "task.succeeded"
        ]
    );
    let Some(TaskEvent::Succeeded { summary, .. }) = events.last() else {
        unreachable!("checked")
    };
    let RunDetail::Backup(backup) = &summary.detail else {
        panic!("not a backup summary: {summary:?}")
    };
    assert_eq!(backup.files_new, 3);
    assert!(backup.data_added_bytes > 0);
    let snapshots = parse_snapshots(&restic_repo.snapshots_json()).expect("snapshots");
    assert_eq!(snapshots.len(), 1);
    let snapshot = &snapshots[0];
    assert!(snapshot.has_id(backup.snapshot_id.as_deref().expect("a snapshot id")));
    let policy = match &events[0] {
        TaskEvent::Scheduled { policy, .. } => policy.to_owned(),
        other => panic!("{other:?}"),
    };
    assert!(
        snapshot.tags.contains(&format!("policy:{policy}")),
        "{:?}",
        snapshot.tags
    );
    assert!(
        snapshot.tags.contains(&format!("task:{task}")),
        "{:?}",
        snapshot.tags
    );
}
