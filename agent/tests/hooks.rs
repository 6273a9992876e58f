//! A policy's hooks through the whole loop: the real `fleet-agent` binary, whose own
//! configuration defines the hooks, runs the tasks the control plane (in this process)
//! dispatches. A failing before-hook fails its task with class `hook`, which is not retried,
//! and restic never runs; an after-hook sees the new snapshot's id; each hook's run is a
//! `task.hook_ran` in the task's history, its output bounded. Real nats-server, real
//! restic.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_events::event::{
    ErrorClass, Event, ExhaustedReason, HookOutcome, MAX_HOOK_OUTPUT, RunDetail, TaskEvent,
};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{HookStage, PolicyHooks, PolicySpec, RepositoryRef, Retention};
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

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

async fn schedule(store: &EventStore, agent: AgentId, spec: PolicySpec) -> TaskId {
    let policy = PolicyId::generate();
    let fire_at = Utc::now();
    let task = TaskId::for_fire(policy, agent, fire_at);
    let event = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    common::append(store, Event::Task { task, event }).await;
    task
}

fn names(events: &[TaskEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event_type().name()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_around_tasks_and_are_told_in_their_history() {
    let (server, store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::write(data.join("a.txt"), "hooks").expect("data");
    let restic_repo = fleet_tests::restic::Repo::init(dir.path(), "hooks test");
    let agent = AgentId::generate();
    common::register(&store, agent, "hooks").await;
    let after_env = dir.path().join("after.env");
    let failing = script(
        dir.path(),
        "dump-db",
        // More output than is kept, the end of it saying why.
        "i=0; while [ $i -lt 500 ]; do echo \"dumping table $i\"; i=$((i+1)); done\n\
         echo 'pg_dump: connection refused' >&2; exit 3",
    );
    let ping = script(
        dir.path(),
        "ping",
        &format!("env > {}", after_env.display()),
    );
    let extra = format!(
        "heartbeatSecs: 1\nhooks:\n  dump-db: {{ command: [\"{failing}\"], timeout: 30s }}\n\
         \x20 ping: {{ command: [\"{ping}\", \"--quiet\"], timeout: 1m }}\n"
    );
    let config = common::write_config(
        dir.path(),
        &server.url(),
        agent,
        "hooks-host",
        &restic_repo.password_file,
        &extra,
    );
    let base = PolicySpec {
        repository: RepositoryRef {
            url: restic_repo.path.display().to_string(),
            secret: "repo".into(),
        },
        include: vec![data.display().to_string()],
        exclude: vec![],
        retention: Retention::default(),
        ..samples::policy_spec()
    };
    let dumped = schedule(
        &store,
        agent,
        PolicySpec {
            hooks: PolicyHooks {
                before: vec!["dump-db".into()],
                ..PolicyHooks::default()
            },
            ..base.clone()
        },
    )
    .await;
    let pinged = schedule(
        &store,
        agent,
        PolicySpec {
            hooks: PolicyHooks {
                after: vec!["ping".into()],
                ..PolicyHooks::default()
            },
            ..base
        },
    )
    .await;

    let shutdown = CancellationToken::new();
    let control = common::control_plane(&store, &shutdown);
    let mut running = common::start_agent(&config);
    wait_for(&store, dumped, "the hook's failure to end the task", |e| {
        matches!(e, TaskEvent::Exhausted { .. })
    })
    .await;
    wait_for(&store, pinged, "the backup to succeed", |e| {
        matches!(e, TaskEvent::Succeeded { .. })
    })
    .await;
    // The after-hook's record comes before the success; wait a little for stray events.
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::signal_group(&mut running, libc::SIGTERM);
    shutdown.cancel();
    for c in control {
        c.await.expect("joined").expect("service ran");
    }

    let failed = common::task_events(&store, dumped).await;
    assert_eq!(
        names(&failed),
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.hook_ran",
            "task.failed",
            "task.exhausted",
        ]
    );
    let TaskEvent::HookRan { hook, .. } = &failed[4] else {
        unreachable!()
    };
    assert_eq!(
        (hook.name.as_str(), hook.stage, &hook.outcome),
        ("dump-db", HookStage::Before, &HookOutcome::Exited(3))
    );
    assert!(hook.output_cut && hook.output.len() <= MAX_HOOK_OUTPUT);
    assert!(
        hook.output.contains("pg_dump: connection refused"),
        "{hook:?}"
    );
    let TaskEvent::Failed { error, .. } = &failed[5] else {
        unreachable!()
    };
    assert_eq!(error.class, ErrorClass::Hook);
    assert!(
        error.message.contains("'dump-db' exited with code 3"),
        "{error:?}"
    );
    assert_eq!(
        failed[6],
        TaskEvent::Exhausted {
            attempts: 1,
            reason: ExhaustedReason::NotRetryable(ErrorClass::Hook),
        },
        "a hook's failure is not retried unless the policy says so"
    );

    let succeeded = common::task_events(&store, pinged).await;
    assert_eq!(
        names(&succeeded),
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.hook_ran",
            "task.succeeded",
        ]
    );
    let TaskEvent::Succeeded { summary, .. } = &succeeded[5] else {
        unreachable!()
    };
    let RunDetail::Backup(backup) = &summary.detail else {
        panic!("{summary:?}")
    };
    let snapshot = backup.snapshot_id.clone().expect("a snapshot");
    let env = std::fs::read_to_string(&after_env).expect("the after-hook ran");
    assert!(
        env.contains(&format!("FLEET_SNAPSHOT={snapshot}\n")),
        "{env}"
    );
    assert!(env.contains("FLEET_OUTCOME=success\n"), "{env}");
    assert!(env.contains(&format!("FLEET_TASK={pinged}\n")), "{env}");
    assert!(!env.contains("RESTIC_"), "{env}");
    let password = std::fs::read_to_string(&restic_repo.password_file).expect("password");
    assert!(!env.contains(password.trim()), "no secret reaches a hook");

    let snapshots = fleet_agent::restic::output::parse_snapshots(&restic_repo.snapshots_json())
        .expect("snapshots");
    assert_eq!(
        snapshots.len(),
        1,
        "the failed before-hook's backup never ran"
    );
}
