//! The real `fleet-agent` binary killed with SIGKILL mid-backup (with its restic, as
//! systemd kills a service's whole control group) and started again: the attempt is
//! reported interrupted, its repository unlocked before the retry (told in the task's
//! history), the retry finished, and the repository holds exactly one snapshot. Real nats-server, real restic, the control plane in this process.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, RepositoryRef, RetryBudget};
use fleet_events::samples;
use fleet_events::store::EventStore;
use tokio_util::sync::CancellationToken;

async fn wait_for(
    store: &EventStore,
    task: TaskId,
    what: &str,
    found: impl Fn(&TaskEvent) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let events = common::task_events(store, task).await;
        if events.iter().any(&found) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_backup_reports_the_task_and_makes_no_duplicate_snapshot() {
    let (server, store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, data) = (dir.path().join("repo"), dir.path().join("data"));
    fleet_tests::restic::incompressible_data(&data, 256);
    let restic_repo = fleet_tests::restic::Repo::init(dir.path(), "crash test");
    let agent = AgentId::generate();
    common::register(&store, agent, "crash").await;
    let spec = PolicySpec {
        repository: RepositoryRef {
            url: repo.display().to_string(),
            secret: "repo".into(),
        },
        include: vec![data.display().to_string()],
        exclude: vec![],
        retry: RetryBudget {
            max_retries: 3,
            base_delay_secs: 1,
            max_delay_secs: 1,
        },
        ..samples::policy_spec()
    };
    let policy = PolicyId::generate();
    let fire_at = Utc::now();
    let task = TaskId::for_fire(policy, agent, fire_at);
    let scheduled = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    common::append(
        &store,
        Event::Task {
            task,
            event: scheduled,
        },
    )
    .await;

    let shutdown = CancellationToken::new();
    let control = common::control_plane(&store, &shutdown);
    let config = common::write_config(
        dir.path(),
        &server.url(),
        agent,
        "crash-host",
        &restic_repo.password_file,
        "heartbeatSecs: 1\n",
    );

    let mut first = common::start_agent(&config);
    wait_for(&store, task, "the backup to start", |e| {
        matches!(e, TaskEvent::Started { attempt: 1 })
    })
    .await;
    // SIGKILL to the agent's whole process group: the agent and its restic.
    common::signal_group(&mut first, libc::SIGKILL);

    let mut second = common::start_agent(&config);
    wait_for(&store, task, "the retry to succeed", |e| {
        matches!(e, TaskEvent::Succeeded { attempt: 2, .. })
    })
    .await;
    common::signal_group(&mut second, libc::SIGTERM);
    shutdown.cancel();
    for c in control {
        c.await.expect("joined").expect("service ran");
    }

    let names: Vec<&str> = common::task_events(&store, task)
        .await
        .iter()
        .map(|e| e.event_type().name())
        .collect();
    assert_eq!(
        names,
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.lost",
            "task.retry_scheduled",
            "task.retry_due",
            "task.dispatched",
            "task.acknowledged",
            // restic unlock on the repository the killed run had locked, before the retry.
            "task.unlock_ran",
            "task.started",
            // The policy's retention, applied after the backup, before its success.
            "task.retention_applied",
            "task.succeeded",
        ]
    );
    let snapshots = fleet_agent::restic::output::parse_snapshots(&restic_repo.snapshots_json())
        .expect("snapshots");
    assert_eq!(
        snapshots.len(),
        1,
        "the killed run left no snapshot, the retry made one"
    );
}
