//! What a restore through the fleet costs against `restic restore` run by hand on the same
//! snapshot, in the same run.
//!
//! `cargo bench -p fleet-agent --bench restore` (needs `nats-server` and `restic` on PATH)
//! backs 256 MiB of incompressible data (FLEET_BENCH_MIB) up once, then, for
//! FLEET_BENCH_ROUNDS rounds (default 3), restores the whole snapshot into a fresh empty
//! directory both ways, alternating which goes first:
//! - direct: `restic restore <id> --target <dir>`;
//! - through the agent: from appending `task.requested` (a restore) until `task.succeeded`
//!   is in the task's history (polled every 20 ms): dispatch, acknowledgement, restic under
//!   the agent into its staging directory, the move into the target, the report, intake.
//!
//! It prints each round, the medians, MiB/s both ways and the ratio direct / through (1.0:
//! as fast as restic alone). The agent runs restic under `ionice`/`nice` (the default
//! settings); the direct run has normal priority. Both use restic's cache. Nothing is
//! asserted: the benchmark only prints.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_events::event::{Event, Overwrite, RestoreRequest, TaskEvent, TaskRequest};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, RepositoryRef, TaskKind};
use fleet_events::samples;
use fleet_events::store::EventStore;
use tokio_util::sync::CancellationToken;

fn restic(repo: &Path, password: &Path, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", password)
        .stdin(Stdio::null())
        .output()
        .expect("restic runs (apt-get install -y restic)")
}

fn ok(out: std::process::Output, what: &str) -> std::process::Output {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `restic restore` by hand: its wall time.
fn direct(repo: &Path, password: &Path, snapshot: &str, target: &Path) -> Duration {
    let target = target.display().to_string();
    let started = Instant::now();
    ok(
        restic(repo, password, &["restore", snapshot, "--target", &target]),
        "restic restore",
    );
    started.elapsed()
}

/// One restore task through the loop: wall time from `task.requested` to `task.succeeded`.
async fn through_agent(
    store: &EventStore,
    agent: AgentId,
    repo: &Path,
    snapshot: &str,
    target: &Path,
) -> Duration {
    let spec = PolicySpec {
        kind: TaskKind::Restore,
        repository: RepositoryRef {
            url: repo.display().to_string(),
            secret: "repo".into(),
        },
        ..samples::policy_spec()
    };
    let request = TaskRequest::Restore(RestoreRequest {
        snapshot: snapshot.to_owned(),
        include: vec![],
        target: target.display().to_string(),
        dry_run: false,
        overwrite: Overwrite::Never,
    });
    let task = TaskId::generate();
    let requested = TaskEvent::Requested {
        policy: PolicyId::generate(),
        agent,
        run_at: Utc::now(),
        spec: Box::new(spec),
        request,
        by: "bench".into(),
    };
    let started = Instant::now();
    common::append(
        store,
        Event::Task {
            task,
            event: requested,
        },
    )
    .await;
    let deadline = started + Duration::from_secs(600);
    loop {
        let events = common::task_events(store, task).await;
        for event in &events {
            match event {
                TaskEvent::Succeeded { .. } => return started.elapsed(),
                TaskEvent::Failed { .. } | TaskEvent::Exhausted { .. } => {
                    panic!("the restore through the agent failed: {events:#?}")
                }
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "no task.succeeded: {events:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
            .max(1)
    };
    let (rounds, mib) = (env("FLEET_BENCH_ROUNDS", 3), env("FLEET_BENCH_MIB", 256));
    let version = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "restic not found".into());
    println!("fleet-agent restore bench: {version}; {mib} MiB, {rounds} rounds");

    let (server, store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, password, repo) = (
        dir.path().join("data"),
        dir.path().join("pw"),
        dir.path().join("repo"),
    );
    fleet_tests::restic::incompressible_data(&data, mib);
    std::fs::write(&password, "restore bench").expect("password");
    ok(restic(&repo, &password, &["init"]), "restic init");
    let data_arg = data.display().to_string();
    let backup = ok(
        restic(&repo, &password, &["backup", "--json", &data_arg]),
        "restic backup",
    );
    let snapshot = String::from_utf8_lossy(&backup.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .and_then(|v| v["snapshot_id"].as_str().map(str::to_owned))
        .expect("the backup's snapshot id");
    let snapshot = if snapshot.len() == 64 {
        snapshot
    } else {
        // restic 0.14 prints the short id: ask for the full one.
        let listed = ok(
            restic(&repo, &password, &["snapshots", "--json", &snapshot]),
            "restic snapshots",
        );
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
        listed[0]["id"].as_str().expect("full id").to_owned()
    };

    let agent = AgentId::generate();
    common::register(&store, agent, "bench").await;
    let shutdown = CancellationToken::new();
    let control = common::control_plane(&store, &shutdown);
    let config = common::write_config(
        dir.path(),
        &server.url(),
        agent,
        "bench-host",
        &password,
        "",
    );
    let mut child = common::start_agent(&config);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (mut by_hand, mut by_agent) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = (dir.path().join("direct"), dir.path().join("agent"));
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
        let direct_first = round % 2 == 0;
        let mut d = None;
        if direct_first {
            d = Some(direct(&repo, &password, &snapshot, &a));
        }
        let t = through_agent(&store, agent, &repo, &snapshot, &b).await;
        let d = d.unwrap_or_else(|| direct(&repo, &password, &snapshot, &a));
        let restored = b.join(data.strip_prefix("/").expect("absolute"));
        assert!(
            restored.is_dir(),
            "nothing restored at {}",
            restored.display()
        );
        println!(
            "  round {} ({} first): direct {:.3} s, through the agent {:.3} s",
            round + 1,
            if direct_first { "direct" } else { "agent" },
            d.as_secs_f64(),
            t.as_secs_f64()
        );
        by_hand.push(d);
        by_agent.push(t);
    }
    let (d, t) = (median(&by_hand), median(&by_agent));
    let rate = |x: Duration| mib as f64 / x.as_secs_f64();
    println!(
        "median direct {:.3} s ({:.1} MiB/s), through the agent {:.3} s ({:.1} MiB/s)",
        d.as_secs_f64(),
        rate(d),
        t.as_secs_f64(),
        rate(t)
    );
    println!(
        "throughput ratio through the agent / direct: {:.3}",
        d.as_secs_f64() / t.as_secs_f64()
    );
    common::signal_group(&mut child, libc::SIGTERM);
    shutdown.cancel();
    for c in control {
        c.await.expect("joined").expect("service ran");
    }
    ExitCode::SUCCESS
}
