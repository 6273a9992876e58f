//! The `fleet` CLI's API verbs end to end: the real `fleet` binary against `fleet up`
//! (every service and the HTTP API) on a real nats-server. A tenant is made with `fleet
//! tenant create`; agents and policies are written with the CLI's own verbs; one finished
//! run is appended to the log as an agent's reports would leave it. Checks tables, `-o
//! json`, name resolution, the event timeline, `events tail`, and the exit codes (65
//! invalid, 66 not found, 69 unreachable, 75 conflict, 77 not allowed).
//!
//! Needs nats-server installed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::PolicySpec;
use fleet_tests::NatsServer;
use serde_json::Value;

mod support;
use support::{Fleet, Ran, free_port, token_after};

/// `fleet up` against a NATS server; stopped with SIGTERM when dropped.
struct Up(Child);

impl Up {
    fn start(nats_url: &str, data: &Path, api_port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_fleet"))
            .args(["up", "--nats-url", nats_url, "--data-dir"])
            .arg(data)
            .arg("--api-addr")
            .arg(format!("127.0.0.1:{api_port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start fleet up");
        Up(child)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two policies; the backup fires on 29 February only, so the scheduler never adds a task
/// of its own while the test runs.
const POLICIES: &str = "\
name: nightly
kind: backup
schedule:
  cron: {expr: '0 2 29 2 *', timezone: UTC}
repository: {url: /srv/restic/main, secret: main}
include: [/etc, /home]
retention: {keepDaily: 7}
agents: [web-1]
---
# checked weekly, paused for now
name: weekly-check
kind: check
schedule: {interval: {everySecs: 604800}}
repository: {url: /srv/restic/main, secret: main}
paused: true
---
";

/// Appends a finished backup run of `policy` (`spec`) on an agent the dispatcher does not
/// know (so it never dispatches the task itself), restic started two minutes ago.
async fn append_run(nats_url: &str, policy: PolicyId, spec: PolicySpec) -> (TaskId, AgentId) {
    let agent = AgentId::generate();
    let started = Utc::now() - chrono::TimeDelta::seconds(120);
    let task = support::append_run_at(nats_url, (policy, agent), spec, started).await;
    (task, agent)
}

/// The lines `events tail` prints, as they come.
fn tail_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_and_writes_through_the_api_with_the_contracts_exit_codes() {
    let nats = NatsServer::start().expect("nats-server");
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _up = Up::start(&nats.url(), data.path(), port);
    let api = format!("http://127.0.0.1:{port}");
    let anonymous = Fleet {
        api: api.clone(),
        token: None,
    };

    // A well-formed token of no tenant: refused (77) once the API answers at all.
    let stranger = anonymous.with_token(&format!("rft1.nobody.{}", "0".repeat(64)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let ran = stranger.run(&["agent", "ls"]);
        if ran.code != 69 {
            break ran;
        }
        assert!(Instant::now() < deadline, "the API never came up: {ran:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(refused.code, 77, "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert!(refused.stderr.starts_with("fleet: "), "{refused:?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");

    // Nothing listens there: 69, naming the URL and how to start the API.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let unreachable = stranger.fails(&["agent", "ls", "--api", &nowhere], 69);
    assert!(unreachable.contains(&nowhere), "{unreachable}");
    assert!(unreachable.contains("fleet up"), "{unreachable}");
    assert_eq!(unreachable.lines().count(), 1, "{unreachable}");
    // No token at all: 77 before anything is sent; a scheme other than http(s) is refused
    // as usage (64).
    assert!(
        anonymous
            .fails(&["policy", "ls"], 77)
            .contains("no API token")
    );
    let ftp = stranger.fails(&["policy", "ls", "--api", "ftp://127.0.0.1:1"], 64);
    assert!(ftp.contains("https://"), "{ftp}");

    // A tenant, its admin token and a read-only one.
    let nats_url = nats.url();
    let created = anonymous.ok(&["tenant", "create", "acme", "--nats-url", &nats_url]);
    let fleet = anonymous.with_token(&token_after(&created, "admin token"));
    let issued = anonymous.ok(&[
        "tenant",
        "token",
        "acme",
        "--role",
        "read-only",
        "--nats-url",
        &nats_url,
    ]);
    let reader = anonymous.with_token(&token_after(&issued, "read-only token"));

    // Agents: pre-registered by machine id, idempotently.
    let registered = fleet.ok(&["agent", "register", "machine-1", "--name", "web-1"]);
    assert!(
        registered.starts_with("agent ")
            && registered.ends_with(" registered for machine machine-1\n"),
        "{registered}"
    );
    let agent_id = registered.split_whitespace().nth(1).expect("id").to_owned();
    let again = fleet.ok(&["agent", "register", "machine-1", "--name", "web-1"]);
    assert_eq!(
        again,
        format!("machine machine-1 is registered already, as agent {agent_id}\n")
    );
    let listed = fleet.eventually(&["agent", "ls"], "web-1 listed", |out| {
        out.contains("web-1")
    });
    let lines: Vec<&str> = listed.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{listed}");
    assert!(
        lines[1].starts_with("web-1 ") && lines[1].contains(&agent_id),
        "{listed}"
    );
    let agents = fleet.json(&["agent", "ls"]);
    assert_eq!(agents[0]["id"], agent_id, "{agents}");
    let shown = fleet.ok(&["agent", "show", "web-1"]);
    for line in [
        "name:            web-1",
        "saturated:       no",
        "pending retries: 0",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} in\n{shown}");
    }

    // Settings: a patch of the flags given; a bad value is 65 with the field named once.
    assert_eq!(
        fleet.ok(&[
            "agent",
            "settings",
            "web-1",
            "--max-concurrent",
            "4",
            "--backup",
            "2"
        ]),
        "agent web-1: settings changed (agent.settings_changed)\n"
    );
    let bad = fleet.fails(&["agent", "settings", "web-1", "--prune", "0"], 65);
    assert!(bad.contains("perKind.prune"), "{bad}");
    assert_eq!(bad.matches("perKind.prune").count(), 1, "{bad}");
    fleet.eventually(&["agent", "show", "web-1"], "new settings", |out| {
        out.contains("max concurrent:  4") && out.contains("per-kind limits: backup 2, check -")
    });
    assert!(
        fleet
            .fails(&["agent", "show", "web-9"], 66)
            .contains("\"web-9\"")
    );

    // Policies from YAML: two documents, created, then unchanged; create again conflicts.
    let file = data.path().join("policies.yaml");
    std::fs::write(&file, POLICIES).expect("write");
    let file = file.to_str().expect("utf-8 path");
    assert_eq!(
        fleet.ok(&["policy", "apply", "-f", file]),
        "policy nightly: created (policy.created, policy.assigned)\n\
         policy weekly-check: created (policy.created, policy.paused)\n"
    );
    assert_eq!(
        fleet.ok(&["policy", "apply", "-f", file]),
        "policy nightly: unchanged\npolicy weekly-check: unchanged\n"
    );
    let conflict = fleet.fails(&["policy", "create", "-f", file], 75);
    assert!(
        conflict.starts_with(&format!("fleet: policy nightly (document 1 of {file}): ")),
        "{conflict}"
    );
    // From stdin: an update; a broken document is 65 with its problem, bad YAML too.
    let updated = POLICIES.replace("keepDaily: 7", "keepDaily: 14");
    let ran = fleet.run_with_stdin(&["policy", "apply", "-f", "-"], &updated);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout,
        "policy nightly: updated (policy.updated)\npolicy weekly-check: unchanged\n"
    );
    let ran = fleet.run_with_stdin(
        &["policy", "apply", "-f", "-"],
        "name: broken\nkind: backup\nschedule: {interval: {everySecs: 3600}}\n",
    );
    assert_eq!(ran.code, 65, "{ran:?}");
    assert!(
        ran.stderr
            .starts_with("fleet: policy broken (document 1 of stdin): ")
            && ran.stderr.contains("repository"),
        "{ran:?}"
    );
    let ran = fleet.run_with_stdin(&["policy", "create", "-f", "-"], "name: [x\n");
    assert_eq!(ran.code, 65, "{ran:?}");
    assert!(
        ran.stderr
            .starts_with("fleet: reading stdin: YAML document 1: "),
        "{ran:?}"
    );

    let policies = fleet.eventually(&["policy", "ls"], "both policies", |out| {
        out.contains("nightly") && out.contains("weekly-check")
    });
    let nightly = policies
        .lines()
        .find(|l| l.starts_with("nightly "))
        .expect("nightly row");
    for cell in ["backup", "cron 0 2 29 2 * (UTC)", " 1 ", "active"] {
        assert!(nightly.contains(cell), "{cell:?} in {nightly}");
    }
    let weekly = policies
        .lines()
        .find(|l| l.starts_with("weekly-check "))
        .expect("weekly row");
    assert!(
        weekly.contains("every 7d") && weekly.contains("paused"),
        "{weekly}"
    );
    let shown = fleet.eventually(&["policy", "show", "nightly"], "the update", |out| {
        out.contains("keep daily 14")
    });
    for line in [
        "state:       active",
        "schedule:    cron 0 2 29 2 * (UTC)",
        "repository:  /srv/restic/main (secret main)",
        "include:     /etc, /home",
        "missed runs: run once within 1h",
        &format!("agents:      web-1 ({agent_id})"),
    ] {
        assert!(shown.lines().any(|l| l == line), "{line:?} in\n{shown}");
    }
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("next fires:  ") && l.ends_with("T02:00:00Z")),
        "{shown}"
    );
    let policy = fleet.json(&["policy", "show", "nightly"]);
    let policy_id: PolicyId = policy["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("policy id");

    // Pause and resume, by name; a read-only token may look but not change (77).
    assert_eq!(
        fleet.ok(&["policy", "pause", "nightly"]),
        "policy nightly: paused (policy.paused)\n"
    );
    assert_eq!(
        fleet.ok(&["policy", "pause", "nightly"]),
        "policy nightly: unchanged\n"
    );
    fleet.eventually(&["policy", "show", "nightly"], "paused", |out| {
        out.contains("state:       paused") && out.contains("next fires:  -")
    });
    assert!(reader.ok(&["policy", "ls"]).contains("nightly"));
    let denied = reader.fails(&["policy", "resume", "nightly"], 77);
    assert_eq!(denied.lines().count(), 1, "{denied}");
    assert_eq!(
        fleet.ok(&["policy", "resume", "nightly"]),
        "policy nightly: resumed (policy.resumed)\n"
    );

    // Assignments by agent name; a decommissioned agent cannot be assigned (409).
    assert_eq!(
        fleet.ok(&["policy", "unassign", "nightly", "web-1"]),
        "policy nightly: unassigned from agent web-1 (policy.unassigned)\n"
    );
    assert_eq!(
        fleet.ok(&["policy", "assign", "nightly", "web-1"]),
        "policy nightly: assigned to agent web-1 (policy.assigned)\n"
    );
    fleet.ok(&["agent", "register", "machine-2", "--name", "old-box"]);
    fleet.eventually(&["agent", "ls"], "old-box listed", |out| {
        out.contains("old-box")
    });
    assert_eq!(
        fleet.ok(&["agent", "decommission", "old-box"]),
        "agent old-box: decommissioned (agent.decommissioned)\n"
    );
    fleet.eventually(&["agent", "ls"], "old-box decommissioned", |out| {
        out.lines()
            .any(|l| l.starts_with("old-box ") && l.contains("decommissioned"))
    });
    fleet.fails(&["policy", "assign", "nightly", "old-box"], 75);

    // Run now: one task for the one assigned agent; cancelled; cancelling again is 409.
    let ran = fleet.ok(&["policy", "run", "nightly"]);
    let mut lines = ran.lines();
    assert_eq!(
        lines.next(),
        Some("policy nightly: 1 task scheduled"),
        "{ran}"
    );
    let task = lines
        .next()
        .and_then(|l| l.strip_prefix("  task "))
        .expect("task line")
        .to_owned();
    assert_eq!(
        fleet.ok(&["task", "cancel", &task, "--reason", "testing"]),
        format!("task {task}: cancelled (task.cancelled)\n")
    );
    fleet.fails(&["task", "cancel", &task], 75);
    let history = fleet.eventually(&["task", "show", &task], "cancelled", |out| {
        out.contains("status:       cancelled")
    });
    assert!(history.contains("policy:       nightly ("), "{history}");
    let events: Vec<&str> = history
        .lines()
        .skip_while(|l| *l != "events:")
        .skip(1)
        .collect();
    assert_eq!(
        events.first().and_then(|l| l.split_whitespace().nth(2)),
        Some("task.scheduled"),
        "{history}"
    );
    assert_eq!(
        events.last().and_then(|l| l.split_whitespace().nth(2)),
        Some("task.cancelled"),
        "{history}"
    );
    assert!(
        events.last().is_some_and(|l| l.contains("testing")),
        "{history}"
    );

    // A finished run, as an agent's reports leave it: runs, tasks, filters, history.
    let spec: PolicySpec = serde_json::from_value(policy["spec"].clone()).expect("spec");
    let (done, other_agent) = append_run(&nats_url, policy_id, spec).await;
    let done = done.to_string();
    let runs = fleet.eventually(&["runs"], "the run", |out| out.contains("succeeded"));
    let row = runs
        .lines()
        .find(|l| l.contains(&done))
        .expect("the run's row");
    for cell in [
        "nightly",
        "backup",
        "succeeded",
        "1m01s",
        &done,
        "snapshot 5e1c0a3f",
    ] {
        assert!(row.contains(cell), "{cell:?} in {runs}");
    }
    let json = fleet.json(&["runs", "--policy", "nightly", "--outcome", "succeeded"]);
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json[0]["snapshotId"], "5e1c0a3fd00dfeed");
    let other_agent = other_agent.to_string();
    let listed = fleet.ok(&[
        "task",
        "ls",
        "--state",
        "succeeded",
        "--agent",
        &other_agent,
    ]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains(&done) && listed.contains("nightly"),
        "{listed}"
    );
    let all = fleet.json(&["task", "ls", "--policy", "nightly", "--since", "1h"]);
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    assert!(
        fleet
            .ok(&["task", "ls", "--state", "running"])
            .lines()
            .count()
            == 1,
        "only the header"
    );

    // Events: one aggregate's history, one line each, in order; the API's JSON.
    let replay = fleet.ok(&["events", "replay", "--task", &done]);
    let types: Vec<&str> = replay
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "task.scheduled",
            "task.dispatched",
            "task.started",
            "task.succeeded"
        ],
        "{replay}"
    );
    assert!(
        replay.lines().all(|l| l.contains(&format!("task/{done}"))),
        "{replay}"
    );
    let json = fleet.json(&["events", "replay", "--policy", "nightly", "--since", "1h"]);
    let types: Vec<&str> = json["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"policy.created"), "{json}");
    assert!(types.contains(&"policy.paused"), "{json}");
    let agent_events = fleet.ok(&["events", "replay", "--agent", "web-1"]);
    assert!(
        agent_events.contains("agent.settings_changed"),
        "{agent_events}"
    );

    // Not found (66) and bad ids (65) from the API itself.
    let missing = TaskId::for_fire(policy_id, AgentId::generate(), Utc::now()).to_string();
    fleet.fails(&["task", "show", &missing], 66);
    fleet.fails(&["policy", "show", &PolicyId::generate().to_string()], 66);
    fleet.fails(&["task", "show", "not-a-task"], 65);

    // The token from a file, trailing newline and all, by flag or by environment.
    let token_file = data.path().join("token");
    std::fs::write(
        &token_file,
        format!("{}\n", fleet.token.as_deref().unwrap_or_default()),
    )
    .expect("write");
    let token_file = token_file.to_str().expect("utf-8 path");
    assert!(
        anonymous
            .ok(&["policy", "ls", "--token-file", token_file])
            .contains("nightly")
    );
    let ran: Ran = anonymous
        .command(&["agent", "ls"])
        .env("FLEET_TOKEN_FILE", token_file)
        .output()
        .expect("fleet runs")
        .into();
    assert!(ran.code == 0 && ran.stdout.contains("web-1"), "{ran:?}");

    // Delete: gone from the list.
    assert_eq!(
        fleet.ok(&["policy", "delete", "weekly-check"]),
        "policy weekly-check: deleted (policy.deleted)\n"
    );
    fleet.eventually(&["policy", "ls"], "weekly-check deleted", |out| {
        !out.contains("weekly-check")
    });

    // Tail: events as they are appended, one JSON object per line, until Ctrl-C.
    let mut tail = fleet
        .command(&["events", "tail", "-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail");
    let lines = tail_lines(&mut tail);
    // The stream starts from now: write until the tail shows something, to know it
    // listens (another service's event, an agent going offline, would do as well).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut nice = 0;
    loop {
        nice = (nice + 1) % 19;
        fleet.ok(&["agent", "settings", "web-1", "--nice", &nice.to_string()]);
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            let event: Value = serde_json::from_str(&line).expect("a JSON line");
            assert!(event["type"].is_string(), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "events tail shows nothing");
    }
    // A write now arrives as one JSON line.
    fleet.ok(&["policy", "pause", "nightly"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let paused = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the pause, live");
        let event: Value = serde_json::from_str(&line).expect("a JSON line");
        if event["type"] == "policy.paused" {
            break event;
        }
    };
    assert_eq!(paused["aggregate"]["kind"], "policy", "{paused}");
    assert_eq!(paused["aggregate"]["id"], policy_id.to_string(), "{paused}");
    assert!(paused["seq"].is_u64(), "{paused}");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(tail.id() as i32, libc::SIGINT) };
    let status = tail.wait().expect("tail ends");
    assert!(status.success(), "Ctrl-C ends the tail cleanly: {status:?}");
}

/// `--nats-url` takes several servers (a cluster's nodes): one down is skipped. A URL's
/// password never reaches the output, whether the server answers, is down, or the URL is
/// malformed.
#[test]
fn nats_url_takes_a_list_and_never_shows_a_password() {
    let server = NatsServer::start().expect("nats-server");
    let dead = free_port();
    let fleet = |nats_url: &str| -> Ran {
        Command::new(env!("CARGO_BIN_EXE_fleet"))
            .args(["streams", "ensure", "--nats-url", nats_url])
            .env_remove("FLEET_NATS_KEY_FILE")
            .env_remove("FLEET_NATS_CA_FILE")
            .output()
            .expect("fleet runs")
            .into()
    };
    let live = server.port();
    let ran = fleet(&format!(
        "nats://127.0.0.1:{dead}, nats://fleet:s3cret@127.0.0.1:{live}"
    ));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout.trim(),
        format!("streams ready on nats://127.0.0.1:{dead},nats://127.0.0.1:{live}")
    );
    assert!(!ran.stderr.contains("s3cret"), "{ran:?}");

    let ran = fleet(&format!("nats://fleet:s3cret@127.0.0.1:{dead}"));
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr
            .contains(&format!("connecting to NATS at nats://127.0.0.1:{dead}")),
        "{ran:?}"
    );
    assert!(!ran.stderr.contains("s3cret"), "{ran:?}");

    let ran = fleet("nats://fleet:s3cret@[bad");
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stderr
            .contains("--nats-url (FLEET_NATS_URL) is not a list of NATS server URLs"),
        "{ran:?}"
    );
    assert!(!ran.stderr.contains("s3cret"), "{ran:?}");
}
