//! The "done when", end to end and visible at every step through both the HTTP API
//! and the `fleet` CLI: a tenant is created, an agent registers, a policy is applied from
//! YAML and assigned, its task runs, fails, backs off (backoff-status shows it), and
//! succeeds; saturation shows while the agent is full.
//!
//! Everything is real; nothing is faked: a nats-server started by the fleet-tests harness,
//! `fleet up` (every service and the HTTP API) on it, `fleet tenant create`, a
//! `fleet-agent run` child process that enrolls with the tenant's enrollment token, and
//! restic (0.14 or later) against a temporary repository. The first attempt fails for a
//! real reason: a real `restic prune`, stopped with SIGSTOP while it holds the repository's
//! exclusive lock, makes the agent's backup fail with "repository is already locked
//! exclusively" (class `lock`, retried). The test then releases the lock as an operator
//! would (kill the prune, `restic unlock`), and the next retry backs 5 MiB of random data
//! up at the agent's upload limit of 1000 KiB/s, long enough to watch the agent saturated
//! (its total limit is 1). The upload limit is in the agent's own configuration: settings
//! changed with `fleet agent settings` reach the dispatcher, not the agent's restic. The
//! API is read with raw HTTP/1.1 GETs.
//!
//! Needs nats-server and restic installed, and the fleet-agent binary built next to
//! `fleet` (`cargo build -p fleet-agent --bin fleet-agent`; the workspace test run builds
//! it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_tests::NatsServer;
use fleet_tests::restic::{Repo, incompressible_data};
use serde_json::Value;

mod scan;
mod support;
use support::running::{Api, Guard, eventually, fleet_up, quoted, wait_ready, write_private};
use support::{Fleet, agent_binary, free_port, token_after};

const TENANT: &str = "scenario";
const AGENT_NAME: &str = "scenario-agent";
const POLICY: &str = "scenario-backup";
/// The repository password's secret name, in the policy and the agent's configuration.
const SECRET: &str = "scenario-repo";
/// The agent's restic upload limit, KiB/s: 5 MiB take about 5 s.
const UPLOAD_KIB_S: u64 = 1000;
const DATA_MIB: usize = 5;

/// `fleet-agent run` with a configuration in `dir` that enrolls with `token`, heartbeats
/// every second, waits 2 s for a held lock (restic 0.16+; 0.14 does not wait) and limits
/// restic's uploads to [`UPLOAD_KIB_S`].
fn start_agent(dir: &Path, nats_url: &str, token: &str, password_file: &Path) -> Guard {
    let token_file = dir.join("enrollment.token");
    write_private(&token_file, &format!("{token}\n"));
    let config = dir.join("agent.yaml");
    let yaml = format!(
        "natsUrl: '{nats_url}'\nstateDir: {}\nenrollmentTokenFile: {}\n\
         machineId: scenario-machine-1\nname: {AGENT_NAME}\nheartbeatSecs: 1\n\
         stopGraceSecs: 5\nlockWaitSecs: 2\nsettings:\n  uploadKibS: {UPLOAD_KIB_S}\n\
         secrets:\n  {SECRET}:\n    passwordFile: {}\n",
        quoted(&dir.join("agent-state")),
        quoted(&token_file),
        quoted(password_file),
    );
    std::fs::write(&config, yaml).expect("agent config");
    let child = Command::new(agent_binary())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .spawn()
        .expect("start fleet-agent");
    Guard {
        child,
        grace: Duration::from_secs(20),
    }
}

/// A real `restic prune`, stopped (SIGSTOP) while it holds the repository's exclusive
/// lock; killed (SIGKILL) and reaped when released or dropped.
struct HeldLock {
    prune: Option<Child>,
}

impl HeldLock {
    /// Starts prunes until one is caught holding its lock (polling `locks/` every
    /// millisecond), and checks with `restic cat lock` that the lock is exclusive and the
    /// stopped prune's.
    fn take(repo: &Repo) -> HeldLock {
        let locks = repo.path.join("locks");
        for _ in 0..10 {
            let mut prune = Command::new("restic")
                .args(["prune", "--no-cache"])
                .env("RESTIC_REPOSITORY", &repo.path)
                .env("RESTIC_PASSWORD_FILE", &repo.password_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("restic prune");
            let pid = prune.id() as i32;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Some(lock) = lock_files(&locks).into_iter().next() {
                    // SAFETY: kill(2) on our own child's pid, not yet reaped.
                    unsafe { libc::kill(pid, libc::SIGSTOP) };
                    if let Some(held) = exclusive_lock_of(repo, &lock, pid) {
                        assert!(held, "the prune's lock {lock} is not exclusive");
                        return HeldLock { prune: Some(prune) };
                    }
                    // Gone, or not completely written yet: let the prune go on.
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGCONT) };
                }
                if let Ok(Some(_)) = prune.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = prune.kill();
            let _ = prune.wait();
            let _ = repo.restic(&["unlock"]);
        }
        panic!("no restic prune was caught holding the repository lock in 10 tries");
    }

    /// Kills the stopped prune and reaps it; its lock stays behind, stale.
    fn release(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut prune) = self.prune.take() {
            let _ = prune.kill();
            let _ = prune.wait();
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The lock files in the repository's `locks/` directory.
fn lock_files(locks: &Path) -> Vec<String> {
    std::fs::read_dir(locks)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether lock `id` is exclusive, if it is readable and held by process `pid`.
fn exclusive_lock_of(repo: &Repo, id: &str, pid: i32) -> Option<bool> {
    let out = repo.restic(&["cat", "lock", id, "--no-lock"]);
    let lock: Value = serde_json::from_slice(&out.stdout).ok()?;
    (lock["pid"].as_i64() == Some(i64::from(pid))).then(|| lock["exclusive"] == true)
}

/// The event types of a task's history (`events` of `GET /v1/tasks/{id}`, or of
/// `fleet events replay -o json`).
fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

/// Whether an agent holds the task (`GET /v1/tasks/{id}`) now.
fn on_agent(view: &Value) -> bool {
    matches!(
        view["status"].as_str(),
        Some("dispatched" | "acknowledged" | "running")
    )
}

/// The `task.failed` events of a history.
fn failures(events: &Value) -> Vec<Value> {
    events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "task.failed")
        .cloned()
        .collect()
}

#[test]
fn a_policy_from_yaml_fails_on_a_lock_backs_off_and_succeeds_with_the_agent_saturated() {
    let started = Instant::now();
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _up = fleet_up(&nats.url(), &dir.path().join("fleet-data"), port);
    let addr = format!("127.0.0.1:{port}");
    wait_ready(&addr);

    // 1. A tenant; its admin token for the CLI and the API, its enrollment token for the
    // agent, which registers and comes online.
    let anonymous = Fleet {
        api: format!("http://{addr}"),
        token: None,
    };
    let created = anonymous.ok(&["tenant", "create", TENANT, "--nats-url", &nats.url()]);
    let admin = token_after(&created, "admin token");
    let enroll = token_after(&created, "enrollment token");
    let fleet = Fleet {
        api: anonymous.api.clone(),
        token: Some(admin.clone()),
    };
    let api = Api {
        addr: addr.clone(),
        token: admin,
    };
    let repo_dir = dir.path().join("restic");
    std::fs::create_dir(&repo_dir).expect("mkdir");
    let password_file = repo_dir.join("password");
    write_private(&password_file, "correct horse battery staple\n");
    let _agent = start_agent(dir.path(), &nats.url(), &enroll, &password_file);

    let agent = eventually(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "agent online in `fleet agent ls`",
        |last| {
            let agents = fleet.json(&["agent", "ls"]);
            *last = agents.to_string();
            let agent = agents.as_array()?.first()?.clone();
            (agent["online"] == true).then_some(agent)
        },
    );
    assert_eq!(
        fleet.json(&["agent", "ls"]).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(agent["name"], AGENT_NAME, "{agent}");
    assert_eq!(agent["registered"], true, "{agent}");
    let agent_id = agent["id"].as_str().expect("agent id").to_owned();
    let listed = api.ok("/v1/agents");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], agent_id, "{listed}");
    assert_eq!(listed[0]["online"], true, "{listed}");
    // The agent registered with the settings of its configuration: the upload limit its
    // restic runs with.
    assert_eq!(
        listed[0]["settings"]["uploadKibS"], UPLOAD_KIB_S,
        "{listed}"
    );

    // 2. At most one task at a time.
    assert_eq!(
        fleet.ok(&[
            "agent",
            "settings",
            AGENT_NAME,
            "--max-concurrent",
            "1",
            "--upload-kib",
            &UPLOAD_KIB_S.to_string(),
        ]),
        format!("agent {AGENT_NAME}: settings changed (agent.settings_changed)\n")
    );
    let agent_path = format!("/v1/agents/{agent_id}");
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "maxConcurrent 1 in `fleet agent show` and the API",
        |_| {
            let shown = fleet.json(&["agent", "show", &agent_id]);
            let read = api.ok(&agent_path);
            (shown["settings"]["maxConcurrent"] == 1 && read["settings"]["maxConcurrent"] == 1)
                .then_some(())
        },
    );
    let agent = api.ok(&agent_path);
    assert_eq!(agent["settings"]["uploadKibS"], UPLOAD_KIB_S, "{agent}");
    assert_eq!(agent["saturated"], false, "{agent}");
    assert_eq!(agent["runningTasks"], 0, "{agent}");

    // 3. A repository and 5 MiB of random data; the policy from YAML, assigned by agent
    // name. It fires on 29 February only, so the scheduler adds no task of its own while
    // the test runs (an interval fires on multiples of its period since the epoch, so
    // even everySecs 3600 would fire at the next full hour).
    let repo = Repo::init(&repo_dir, "correct horse battery staple\n");
    let data = dir.path().join("data");
    incompressible_data(&data, DATA_MIB);
    let policy_file = dir.path().join("policy.yaml");
    let yaml = format!(
        "name: {POLICY}\nkind: backup\nschedule:\n  cron: {{expr: '0 2 29 2 *', timezone: UTC}}\n\
         repository: {{url: {}, secret: {SECRET}}}\ninclude: [{}]\n\
         retry: {{maxRetries: 5, baseDelaySecs: 2, maxDelaySecs: 30}}\n\
         execution: {{runTimeoutSecs: 600}}\nagents: [{AGENT_NAME}]\n",
        quoted(&repo.path),
        quoted(&data),
    );
    std::fs::write(&policy_file, yaml).expect("policy file");
    let policy_file = policy_file.to_str().expect("utf-8 path");
    assert_eq!(
        fleet.ok(&["policy", "apply", "-f", policy_file]),
        format!("policy {POLICY}: created (policy.created, policy.assigned)\n")
    );
    let policy_path = format!("/v1/policies/{POLICY}");
    let policy = eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the policy assigned in `fleet policy show`",
        |_| {
            let shown = fleet.run(&["policy", "show", POLICY, "-o", "json"]);
            let policy: Value = serde_json::from_str(&shown.stdout).ok()?;
            (policy["agents"] == serde_json::json!([agent_id])).then_some(policy)
        },
    );
    assert_eq!(policy["spec"]["retry"]["baseDelaySecs"], 2, "{policy}");
    assert_eq!(policy["paused"], false, "{policy}");
    let read = api.ok(&policy_path);
    assert_eq!(read["id"], policy["id"], "{read}");
    assert_eq!(read["agents"], serde_json::json!([agent_id]), "{read}");
    assert_eq!(
        fleet.json(&["task", "ls", "--policy", POLICY]),
        serde_json::json!([]),
        "no task before the run"
    );

    // 4. Another restic holds the repository's exclusive lock.
    let lock = HeldLock::take(&repo);

    // 5. Run now: the attempt fails on the lock, and the task backs off.
    let ran = fleet.json(&["policy", "run", POLICY]);
    let tasks = ran["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1, "{ran}");
    let task = tasks[0].as_str().expect("task id").to_owned();
    let task_path = format!("/v1/tasks/{task}");
    let failed = eventually(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "task.failed in GET /v1/tasks/{id}",
        |_| {
            let (status, view) = api.get(&task_path);
            (status == 200)
                .then(|| failures(&view["events"]).into_iter().next())
                .flatten()
        },
    );
    assert_eq!(failed["data"]["attempt"], 1, "{failed}");
    assert_eq!(failed["data"]["error"]["class"], "lock", "{failed}");
    let message = failed["data"]["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("already locked"), "{failed}");
    let replayed = fleet.json(&["events", "replay", "--task", &task]);
    let first = failures(&replayed["events"]).into_iter().next();
    assert_eq!(first.as_ref(), Some(&failed), "{replayed}");

    // While the lock is held every attempt fails and is retried after a delay; during
    // one such delay, backoff-status, the task and `fleet agent show` all show it.
    let backoff_path = format!("/v1/agents/{agent_id}/backoff-status");
    let (backoff, shown) = eventually(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "the task in backoff, in the API and the CLI at once",
        |last| {
            let backoff = api.ok(&backoff_path);
            *last = backoff.to_string();
            let waiting = backoff["inBackoff"] == true
                && backoff["retries"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["task"] == task.as_str()));
            if !waiting {
                return None;
            }
            let view = api.ok(&task_path);
            assert!(
                !matches!(view["status"].as_str(), Some("exhausted" | "succeeded")),
                "{view}"
            );
            let shown = fleet.json(&["agent", "show", &agent_id]);
            *last = format!("{backoff}; task {}; agent {shown}", view["status"]);
            let pending = shown["pendingRetries"].as_u64().unwrap_or(0) >= 1;
            (view["status"] == "retry_scheduled" && pending && shown["backoffUntil"].is_string())
                .then_some((backoff, shown))
        },
    );
    assert!(backoff["pendingRetries"].as_u64() >= Some(1), "{backoff}");
    assert!(backoff["backoffUntil"].is_string(), "{backoff}");
    assert!(
        backoff["retries"][0]["dueAt"].is_string(),
        "{backoff} ({shown})"
    );
    let replayed = fleet.json(&["events", "replay", "--task", &task]);
    let so_far = types(&replayed["events"]);
    assert!(
        so_far.iter().any(|t| t == "task.retry_scheduled"),
        "{so_far:?}"
    );

    // 6. The operator ends the other restic and removes its stale lock.
    lock.release();
    assert!(
        !lock_files(&repo.path.join("locks")).is_empty(),
        "the killed prune's lock stays until `restic unlock`"
    );
    let unlocked = repo.restic(&["unlock"]);
    assert!(
        unlocked.status.success(),
        "restic unlock: {}",
        String::from_utf8_lossy(&unlocked.stderr)
    );
    assert!(
        lock_files(&repo.path.join("locks")).is_empty(),
        "restic unlock left a lock"
    );

    // The next retry backs up at 1000 KiB/s: the agent is full (1 of 1) while it runs.
    // A retry dispatched before the unlock finished still fails on the stale lock, so
    // watch attempts until the one seen saturating the agent is the one that succeeds.
    let mut failed_before = 0;
    let (saturated, shown, held_attempt, done) = loop {
        let (saturated, attempt) = eventually(
            Duration::from_secs(120),
            Duration::from_millis(100),
            "the agent saturated by a new attempt in GET /v1/agents/{id}",
            |last| {
                let agent = api.ok(&agent_path);
                *last = agent.to_string();
                if agent["saturated"] != true {
                    return None;
                }
                let view = api.ok(&task_path);
                let attempt = view["attempt"].as_u64()?;
                (attempt > failed_before && on_agent(&view)).then_some((agent, attempt))
            },
        );
        // The CLI shows the same while that attempt runs.
        let shown = eventually(
            Duration::from_secs(60),
            Duration::from_millis(100),
            "`fleet agent show` during the attempt",
            |_| {
                let shown = fleet.json(&["agent", "show", &agent_id]);
                if shown["saturated"] == true {
                    return Some(Some(shown));
                }
                let view = api.ok(&task_path);
                (view["attempt"] != attempt || !on_agent(&view)).then_some(None)
            },
        );
        let ended = eventually(
            Duration::from_secs(180),
            Duration::from_millis(250),
            "the end of the attempt in `fleet task show`",
            |last| {
                let view = fleet.json(&["task", "show", &task]);
                *last = view["status"].to_string();
                assert!(view["status"] != "exhausted", "{view}");
                let failed = failures(&view["events"])
                    .iter()
                    .any(|f| f["data"]["attempt"] == attempt);
                let succeeded = view["status"] == "succeeded";
                (failed || succeeded).then_some(view)
            },
        );
        if ended["status"] == "succeeded" {
            break (saturated, shown, attempt, ended);
        }
        failed_before = attempt;
    };
    assert!(held_attempt >= 2, "saturated by a retry: {done}");
    assert_eq!(saturated["runningTasks"], 1, "{saturated}");
    assert_eq!(
        saturated["saturation"], "1 of 1 task slots in use",
        "{saturated}"
    );
    let shown = shown.expect("`fleet agent show` saw the agent saturated");
    assert_eq!(shown["saturation"], "1 of 1 task slots in use", "{shown}");
    assert_eq!(shown["runningTasks"], 1, "{shown}");

    // 7. The task succeeded: task, runs, history and the repository agree.
    let attempts = done["attempt"].as_u64().expect("attempt");
    assert_eq!(
        attempts, held_attempt,
        "saturated during the successful attempt"
    );
    let history = &done["events"];
    let failed = failures(history);
    assert_eq!(failed.len() as u64, attempts - 1, "{history}");
    for failure in &failed {
        assert_eq!(failure["data"]["error"]["class"], "lock", "{failure}");
    }
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the agent idle and out of backoff",
        |_| {
            let agent = api.ok(&agent_path);
            let backoff = api.ok(&backoff_path);
            (agent["saturated"] == false
                && agent["runningTasks"] == 0
                && agent["pendingRetries"] == 0
                && backoff["inBackoff"] == false)
                .then_some(())
        },
    );

    let runs = eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "every attempt in `fleet runs`",
        |last| {
            let runs = fleet.json(&["runs", "--policy", POLICY]);
            *last = runs.to_string();
            (runs.as_array()?.len() as u64 == attempts).then_some(runs)
        },
    );
    let runs = runs.as_array().expect("runs");
    assert_eq!(runs.len() as u64, attempts, "{runs:?}");
    let failed_runs: Vec<&Value> = runs.iter().filter(|r| r["outcome"] == "failed").collect();
    assert_eq!(failed_runs.len() as u64, attempts - 1, "{runs:?}");
    assert!(
        failed_runs.iter().all(|r| r["errorClass"] == "lock"),
        "{runs:?}"
    );
    let succeeded: Vec<&Value> = runs
        .iter()
        .filter(|r| r["outcome"] == "succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{runs:?}");
    let run = succeeded[0];
    assert_eq!(run["task"], task.as_str(), "{run}");
    assert_eq!(run["attempt"], attempts, "{run}");
    let snapshot = run["snapshotId"].as_str().expect("snapshot id").to_owned();
    // 5 MiB at 1000 KiB/s: restic's upload limit held the run for seconds.
    assert!(run["durationMs"].as_u64() >= Some(3000), "{run}");
    let api_runs = api.ok(&format!(
        "/v1/runs?policy={}",
        policy["id"].as_str().expect("id")
    ));
    assert_eq!(
        api_runs.as_array().map(Vec::len),
        Some(runs.len()),
        "{api_runs}"
    );

    // The whole history, in log order: attempts that failed on the lock and were retried,
    // then the one that succeeded.
    let replay = fleet.ok(&["events", "replay", "--task", &task]);
    let table: Vec<&str> = replay
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default())
        .collect();
    let mut expected = vec!["task.scheduled"];
    for _ in 1..attempts {
        expected.extend([
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.failed",
            "task.retry_scheduled",
            "task.retry_due",
        ]);
    }
    expected.extend([
        "task.dispatched",
        "task.acknowledged",
        "task.started",
        "task.succeeded",
    ]);
    assert_eq!(table, expected, "{replay}");
    assert_eq!(types(history), expected, "GET /v1/tasks/{{id}} events");
    let dispatched: Vec<u64> = history
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "task.dispatched")
        .filter_map(|e| e["data"]["attempt"].as_u64())
        .collect();
    assert_eq!(dispatched, (1..=attempts).collect::<Vec<_>>(), "{history}");

    let snapshots: Value = serde_json::from_str(&repo.snapshots_json()).expect("snapshots");
    let snapshots = snapshots.as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let id = snapshots[0]["id"].as_str().expect("id");
    assert!(id.starts_with(&snapshot), "{snapshot} is {snapshots:?}");
    assert_eq!(
        snapshots[0]["paths"],
        serde_json::json!([data.display().to_string()]),
        "{snapshots:?}"
    );
    // 8. No secret is stored: not the repository password, not a token, not the agent's
    // NATS seed, in any stream or any read model's file.
    let seed = std::fs::read_to_string(dir.path().join("agent-state/nats.nk")).expect("seed");
    let password = std::fs::read_to_string(&password_file).expect("password");
    let (messages, files) = scan::assert_no_secret_stored(
        &nats.url(),
        &[&dir.path().join("fleet-data/projections")],
        &[
            ("repository password", password.trim()),
            ("admin token", &api.token),
            ("enrollment token", &enroll),
            ("agent's NATS seed", seed.trim()),
        ],
        AGENT_NAME,
    );
    eprintln!("scan: no secret in {messages} stream messages or {files} read-model files");
    eprintln!(
        "scenario: {attempts} attempts ({} failed on the lock), the backup took {} ms, \
         {:.1} s in all",
        attempts - 1,
        run["durationMs"],
        started.elapsed().as_secs_f64()
    );
}
