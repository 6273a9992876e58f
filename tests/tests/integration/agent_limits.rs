//! The agent's own limits, observed on real restic processes: ten tasks with a limit of 2
//! never run more than 2 restic at once, and a redelivered task does not run again.
//!
//! restic is real; a wrapper script around it records when each process starts and ends,
//! with its arguments: each backup is followed by `restic snapshots` in the same slot, so
//! every restic counts towards the limit and only `backup`s count as the tasks' runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use chrono::Utc;
use fleet_agent::runtime::AgentConfig;
use fleet_agent::state::AgentState;
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, Retention};
use fleet_events::protocol::{AgentCommand, Command as AgentCmd, TaskOrder};
use fleet_events::settings::AgentSettings;
use fleet_events::subject::{AgentSubject, Channel};
use tokio_util::sync::CancellationToken;

use crate::support::agent::{agent_config, backup_spec, spawn_agent};
use crate::support::{eventually, fleet, tenant};

/// A restic that logs `start <args>` and `end <args>` lines around the real one.
fn wrapper(dir: &Path, log: &Path) -> std::path::PathBuf {
    let path = dir.join("restic-observed");
    let real = String::from_utf8_lossy(
        &Command::new("sh")
            .args(["-c", "command -v restic"])
            .output()
            .expect("sh")
            .stdout,
    )
    .trim()
    .to_owned();
    let script = format!(
        "#!/bin/sh\necho \"start $*\" >> {log}\n{real} \"$@\"\nrc=$?\necho \"end $*\" >> {log}\nexit $rc\n",
        log = log.display()
    );
    std::fs::write(&path, script).expect("wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_with_a_limit_of_two_never_run_more_than_two_restic() {
    let f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log) = (dir.path().join("data"), dir.path().join("restic.log"));
    std::fs::create_dir_all(&data).expect("data");
    std::fs::write(data.join("file"), "x".repeat(10_000)).expect("file");
    let restic_repo = fleet_tests::restic::Repo::init(dir.path(), "limits");

    let agent = AgentId::generate();
    let settings = AgentSettings {
        max_concurrent: 2,
        ..AgentSettings::default()
    };
    let state = AgentState::open(dir.path().join("state")).expect("state");
    let config = AgentConfig {
        restic: wrapper(dir.path(), &log),
        ..agent_config(agent, &restic_repo, settings)
    };
    let shutdown = CancellationToken::new();
    let agent_run = spawn_agent(&f.client, config, &state, &shutdown);

    let js = async_nats::jetstream::new(f.client.clone());
    let subject = AgentSubject {
        agent,
        channel: Channel::Tasks,
    }
    .to_string();
    // No retention: one restic per task (a retention adds a `restic forget` after each
    // backup, in the same slot).
    let spec = PolicySpec {
        retention: Retention::default(),
        ..backup_spec(&restic_repo, &data)
    };
    let mut first = None;
    for n in 0..10 {
        let policy = PolicyId::generate();
        let order = TaskOrder {
            tenant: tenant(),
            task: TaskId::for_fire(policy, agent, Utc::now()),
            attempt: 1,
            policy,
            spec: Box::new(spec.clone()),
            dispatched_at: Utc::now(),
        };
        let payload = AgentCommand::new(AgentCmd::Run(order))
            .to_wire()
            .expect("encodes");
        if n == 0 {
            first = Some(payload.clone());
        }
        js.send_publish(
            subject.clone(),
            PublishMessage::build().payload(payload.into()),
        )
        .await
        .expect("sent")
        .await
        .expect("stored");
    }
    // The first order again, as a redelivery would bring it (no msg id: JetStream stores it).
    let again = first.expect("first order");
    js.publish(subject.clone(), again.into())
        .await
        .expect("sent")
        .await
        .expect("stored");

    eventually(
        "every task to finish and its reports to be sent",
        Duration::from_secs(120),
        || async {
            let lines = std::fs::read_to_string(&log).unwrap_or_default();
            let ends = lines.lines().filter(|l| is_backup(l, "end")).count();
            let idle = state.running().map(|r| r.total() == 0).unwrap_or(false)
                && state.queued().map(|q| q.total() == 0).unwrap_or(false);
            match ends >= 10 && idle && state.outbox_depth() == 0 {
                true => std::ops::ControlFlow::Break(()),
                false => std::ops::ControlFlow::Continue((ends, state.outbox_depth())),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    agent_run.await.expect("joined");

    let lines = std::fs::read_to_string(&log).expect("log");
    let (mut running, mut most) = (0, 0);
    for line in lines.lines() {
        running += if line.starts_with("start") { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(
        lines.lines().filter(|l| is_backup(l, "start")).count(),
        10,
        "the redelivered task did not run again:\n{lines}"
    );
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("start") && !is_backup(l, "start")),
        "the listing after each backup runs restic too:\n{lines}"
    );
    assert!(most <= 2, "{most} restic processes at once");
    assert_eq!(most, 2, "the agent used both of its slots");
}

/// Whether `line` of the wrapper's log is `what` (`start` or `end`) of a `restic backup`.
fn is_backup(line: &str, what: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some(what) && words.any(|word| word == "backup")
}
