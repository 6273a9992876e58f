//! What the agent costs: its idle memory, and a backup through the whole loop against the
//! same `restic backup` run by hand.
//!
//! `cargo bench -p fleet-agent --bench agent` (needs `nats-server`, `restic`, and for the
//! agent's priority wrappers `nice` and `ionice`, on PATH) prints, from one run:
//! - the idle RSS of the real `fleet-agent` binary: VmRSS and VmHWM from
//!   `/proc/<pid>/status`, in MiB, 3 s after it started against a real nats-server with
//!   the control plane (dispatcher, intake, retry enforcer) running in this process;
//! - the wall time of a first backup of 128 MiB of incompressible data into a fresh
//!   repository, FLEET_BENCH_ROUNDS rounds (default 3), medians:
//!   - direct: `restic backup --json --tag … --host … <data>`, the flags the agent uses;
//!   - through the agent: from appending `task.scheduled` until `task.succeeded` is in the
//!     task's history (polled every 20 ms): dispatch, acknowledgement, restic under the
//!     agent, the report and its intake;
//!   - the ratio through-agent / direct, and the restic run as timed by the agent
//!     (`RunSummary.duration_ms`): the difference is the loop's own overhead.
//!
//! The agent runs restic under `ionice -c 2 -n 7` and `nice -n 10` (the default
//! `AgentSettings`); the direct run has normal priority. Both use restic's default cache
//! (neither passes `--no-cache`); each repository is new, so the cache is cold for both.
//! Direct and agent runs alternate which goes first in each round. Nothing is asserted:
//! the benchmark only prints.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{Execution, PolicySpec, RepositoryRef, Retention};
use fleet_events::samples;
use fleet_events::store::EventStore;
use tokio_util::sync::CancellationToken;

const DATA_MIB: usize = 128;
const HOST: &str = "bench-host";
const EXTRA_TAG: &str = "bench";

fn restic(repo: &Path, password: &Path, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", password)
        .stdin(Stdio::null())
        .output()
        .expect("restic runs (apt-get install -y restic)")
}

/// VmRSS and VmHWM of `pid` in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib = |field: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .expect("field in /proc/<pid>/status")
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

fn fresh_repo(path: &Path, password: &Path) {
    let _ = std::fs::remove_dir_all(path);
    let out = restic(path, password, &["init"]);
    assert!(
        out.status.success(),
        "restic init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `restic backup` by hand with the agent's flags; wall time and restic's own
/// `total_duration` from its summary line.
fn direct_backup(repo: &Path, password: &Path, data: &Path) -> (Duration, Option<f64>) {
    let (policy, task) = (PolicyId::generate(), TaskId::generate());
    let (policy_tag, task_tag) = (format!("policy:{policy}"), format!("task:{task}"));
    let data = data.display().to_string();
    let args = [
        "backup",
        "--json",
        "--tag",
        &policy_tag,
        "--tag",
        &task_tag,
        "--tag",
        EXTRA_TAG,
        "--host",
        HOST,
        &data,
    ];
    let started = Instant::now();
    let out = restic(repo, password, &args);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "restic backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reported = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .and_then(|v| v["total_duration"].as_f64());
    (took, reported)
}

/// One backup task through the loop: wall time from `task.scheduled` to `task.succeeded`
/// and the restic run's duration as the agent reported it.
async fn agent_backup(
    store: &EventStore,
    agent: AgentId,
    repo: &Path,
    data: &Path,
) -> (Duration, Duration) {
    let spec = PolicySpec {
        repository: RepositoryRef {
            url: repo.display().to_string(),
            secret: "repo".into(),
        },
        include: vec![data.display().to_string()],
        exclude: vec![],
        execution: Execution {
            run_timeout_secs: 3600,
            tags: vec![EXTRA_TAG.into()],
            host: Some(HOST.into()),
            init_if_missing: false,
        },
        // The backup alone, like the direct run: no `restic forget` after it.
        retention: Retention::default(),
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
    let started = Instant::now();
    common::append(
        store,
        Event::Task {
            task,
            event: scheduled,
        },
    )
    .await;
    let deadline = started + Duration::from_secs(600);
    loop {
        let events = common::task_events(store, task).await;
        for event in &events {
            match event {
                TaskEvent::Succeeded { summary, .. } => {
                    return (
                        started.elapsed(),
                        Duration::from_millis(summary.duration_ms),
                    );
                }
                TaskEvent::Failed { .. } | TaskEvent::Exhausted { .. } => {
                    panic!("the backup through the agent failed: {events:#?}")
                }
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for task.succeeded: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; any filter argument is ignored.
    let rounds: usize = std::env::var("FLEET_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let version = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "restic not found".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("fleet-agent bench: {version}; {cpus} CPUs");

    let (server, store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, password) = (dir.path().join("data"), dir.path().join("pw"));
    fleet_tests::restic::incompressible_data(&data, DATA_MIB);
    std::fs::write(&password, "agent bench").expect("password");

    let agent = AgentId::generate();
    common::register(&store, agent, "bench").await;
    let shutdown = CancellationToken::new();
    let control = common::control_plane(&store, &shutdown);
    let config = common::write_config(dir.path(), &server.url(), agent, HOST, &password, "");

    // 1. Idle memory.
    let mut child = common::start_agent(&config);
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = memory_mib(pid);
    println!("idle agent, 3 s after start: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB");

    // 2. A backup directly and through the agent, fresh repositories each round.
    println!(
        "first backup of {DATA_MIB} MiB incompressible data into a fresh repository, {rounds} rounds:"
    );
    let (mut direct, mut through, mut in_agent) = (Vec::new(), Vec::new(), Vec::new());
    let mut overhead = Vec::new();
    let mut restic_reported = Vec::new();
    for round in 0..rounds {
        let (repo_a, repo_b) = (dir.path().join("repo-a"), dir.path().join("repo-b"));
        fresh_repo(&repo_a, &password);
        fresh_repo(&repo_b, &password);
        let direct_first = round % 2 == 0;
        let mut d = None;
        if direct_first {
            d = Some(direct_backup(&repo_a, &password, &data));
        }
        let (wall, run) = agent_backup(&store, agent, &repo_b, &data).await;
        let (d_wall, d_reported) = match d {
            Some(d) => d,
            None => direct_backup(&repo_a, &password, &data),
        };
        println!(
            "  round {n} ({first} first): direct {dw} (restic's total_duration {rep}), through agent {aw} (restic run {run}, loop {over} ms)",
            n = round + 1,
            first = if direct_first { "direct" } else { "agent" },
            dw = secs(d_wall),
            rep = d_reported.map_or("?".into(), |s| format!("{s:.3} s")),
            aw = secs(wall),
            run = secs(run),
            over = wall.saturating_sub(run).as_millis(),
        );
        direct.push(d_wall);
        through.push(wall);
        in_agent.push(run);
        overhead.push(wall.saturating_sub(run));
        if let Some(s) = d_reported {
            restic_reported.push(Duration::from_secs_f64(s));
        }
        let _ = std::fs::remove_dir_all(&repo_a);
        let _ = std::fs::remove_dir_all(&repo_b);
    }
    let (md, mt, mr) = (median(&direct), median(&through), median(&in_agent));
    println!("median direct:        {}", secs(md));
    if !restic_reported.is_empty() {
        println!(
            "  restic's own total_duration (direct): {}",
            secs(median(&restic_reported))
        );
    }
    println!("median through agent: {}", secs(mt));
    println!(
        "  restic run as timed by the agent (RunSummary.duration_ms): {}",
        secs(mr)
    );
    println!(
        "  loop overhead (through agent - restic run, median of rounds): {} ms",
        median(&overhead).as_millis()
    );
    println!(
        "ratio through agent / direct: {:.3}x",
        mt.as_secs_f64() / md.as_secs_f64()
    );
    println!(
        "note: the agent runs restic under `ionice -c 2 -n 7` and `nice -n 10` (default AgentSettings); the direct run has normal priority"
    );
    let (rss, hwm) = memory_mib(pid);
    println!("agent after the backups: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB");

    // SIGTERM lets the agent stop gracefully.
    common::signal_group(&mut child, libc::SIGTERM);
    shutdown.cancel();
    for c in control {
        c.await.expect("joined").expect("service ran");
    }
    ExitCode::SUCCESS
}
