//! Restore, end to end, as an operator does it with the `fleet` CLI: a backup runs, files
//! are deleted and changed, a snapshot is made by hand, `fleet repo refresh` brings it into
//! the inventory as external, `fleet snapshot ls` browses a directory on the agent, and
//! `fleet restore` brings the deleted file back byte for byte (after a dry run that writes
//! nothing), leaves a changed file in a non-empty target alone by default, replaces it with
//! `--overwrite always`, and is refused clearly on an agent without the repository's secret
//! and to another tenant.
//!
//! Everything is real: a nats-server from the fleet-tests harness, `fleet up`, two
//! `fleet-agent run` processes enrolled with a token (one holds the repository's secret,
//! the other does not) and restic against a temporary repository. Needs the fleet-agent
//! binary next to `fleet` (the workspace test run builds it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fleet_tests::NatsServer;
use fleet_tests::restic::Repo;
use serde_json::Value;

mod scan;
mod support;
use support::running::{Guard, eventually, fleet_up, quoted, wait_ready, write_private};
use support::{Fleet, Ran, agent_binary, free_port, token_after};

const TENANT: &str = "restorers";
const POLICY: &str = "files-nightly";
const SECRET: &str = "files-repo";
const PASSWORD: &str = "correct horse battery staple\n";
/// A file's contents, restored several times: never stored anywhere.
const CONTENTS: &str = "these contents stay on the machines 7f3a9c21";

/// `fleet-agent run` named `name`, holding the repository's secret only when
/// `password_file` is given.
fn start_agent(
    dir: &Path,
    name: &str,
    nats_url: &str,
    token: &str,
    password_file: Option<&Path>,
) -> Guard {
    std::fs::create_dir_all(dir).expect("agent dir");
    let token_file = dir.join("enrollment.token");
    write_private(&token_file, &format!("{token}\n"));
    let secrets = match password_file {
        Some(file) => format!(
            "secrets:\n  {SECRET}:\n    passwordFile: {}\n",
            quoted(file)
        ),
        None => String::new(),
    };
    let yaml = format!(
        "natsUrl: '{nats_url}'\nstateDir: {}\nenrollmentTokenFile: {}\n\
         machineId: {name}-machine\nname: {name}\nheartbeatSecs: 1\nstopGraceSecs: 5\n{secrets}",
        quoted(&dir.join("state")),
        quoted(&token_file),
    );
    let config = dir.join("agent.yaml");
    std::fs::write(&config, yaml).expect("agent config");
    let child = Command::new(agent_binary())
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .spawn()
        .expect("start fleet-agent");
    Guard {
        child,
        grace: Duration::from_secs(20),
    }
}

/// Waits for `task` to end; its view (`fleet task show -o json`).
fn ended(fleet: &Fleet, task: &str) -> Value {
    eventually(
        Duration::from_secs(120),
        Duration::from_millis(250),
        "the task's end",
        |last| {
            let view = fleet.json(&["task", "show", task]);
            *last = view.to_string();
            let status = view["status"].as_str()?;
            matches!(status, "succeeded" | "exhausted" | "cancelled").then_some(view)
        },
    )
}

/// The summary of the task's `task.succeeded` event.
fn success_summary(view: &Value) -> String {
    view["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["type"] == "task.succeeded")
        .and_then(|e| e["summary"].as_str())
        .unwrap_or_else(|| panic!("no success in {view}"))
        .to_owned()
}

/// `fleet restore SNAPSHOT --agent AGENT --target TARGET EXTRA... --watch`.
fn restore(fleet: &Fleet, snapshot: &str, agent: &str, target: &Path, extra: &[&str]) -> Ran {
    let target = target.to_str().expect("utf-8");
    let mut args = vec!["restore", snapshot, "--agent", agent, "--target", target];
    args.extend_from_slice(extra);
    args.push("--watch");
    fleet.run(&args)
}

/// The task id in `fleet restore`'s first line.
fn requested_task(stdout: &str) -> String {
    stdout
        .lines()
        .next()
        .and_then(|l| l.rsplit("task ").next())
        .map(str::trim)
        .unwrap_or_else(|| panic!("no task in {stdout}"))
        .to_owned()
}

/// `path` under `target`, as restic lays a restore out (the snapshot path below the target).
fn under(target: &Path, path: &Path) -> PathBuf {
    target.join(path.strip_prefix("/").expect("absolute"))
}

#[test]
fn an_operator_restores_deleted_files_from_the_inventory_and_strangers_cannot() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _up = fleet_up(&nats.url(), &dir.path().join("fleet-data"), port);
    let addr = format!("127.0.0.1:{port}");
    wait_ready(&addr);
    let anonymous = Fleet {
        api: format!("http://{addr}"),
        token: None,
    };
    let created = anonymous.ok(&["tenant", "create", TENANT, "--nats-url", &nats.url()]);
    let fleet = anonymous.with_token(&token_after(&created, "admin token"));
    let enroll = token_after(&created, "enrollment token");

    // A repository, its password with agent "keeper" only, and data to back up.
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir(&repo_dir).expect("repo dir");
    let repo = Repo::init(&repo_dir, PASSWORD);
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("docs")).expect("data");
    let report: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("docs/report.bin"), &report).expect("write");
    std::fs::write(data.join("notes.txt"), "first version\n").expect("write");
    std::fs::write(data.join("keep.txt"), format!("{CONTENTS}\n")).expect("write");
    let _keeper = start_agent(
        &dir.path().join("keeper"),
        "keeper",
        &nats.url(),
        &enroll,
        Some(&repo.password_file),
    );
    let _stranger = start_agent(
        &dir.path().join("stranger"),
        "stranger",
        &nats.url(),
        &enroll,
        None,
    );
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "both agents online",
        |last| {
            let agents = fleet.json(&["agent", "ls"]);
            *last = agents.to_string();
            let online = agents
                .as_array()?
                .iter()
                .filter(|a| a["online"] == true)
                .count();
            (online == 2).then_some(())
        },
    );

    // 1. The policy backs the data up once (it fires on 29 February only).
    let policy_file = dir.path().join("policy.yaml");
    let yaml = format!(
        "name: {POLICY}\nkind: backup\nschedule:\n  cron: {{expr: '0 2 29 2 *', timezone: UTC}}\n\
         repository: {{url: {}, secret: {SECRET}}}\ninclude: [{}]\n\
         retry: {{maxRetries: 1, baseDelaySecs: 1, maxDelaySecs: 2}}\nagents: [keeper]\n",
        quoted(&repo.path),
        quoted(&data),
    );
    std::fs::write(&policy_file, yaml).expect("policy");
    fleet.ok(&[
        "policy",
        "apply",
        "-f",
        policy_file.to_str().expect("utf-8"),
    ]);
    let ran = fleet.json(&["policy", "run", POLICY]);
    let backup = ran["tasks"][0].as_str().expect("task").to_owned();
    assert_eq!(ended(&fleet, &backup)["status"], "succeeded");

    // The inventory shows the backup's snapshot, the fleet's, by policy name.
    let inventory = eventually(
        Duration::from_secs(30),
        Duration::from_millis(250),
        "the backup's snapshot in `fleet snapshots`",
        |last| {
            let list = fleet.json(&["snapshots"]);
            *last = list.to_string();
            (list.as_array()?.len() == 1).then_some(list)
        },
    );
    let ours = inventory[0].clone();
    assert_eq!(ours["external"], false, "{ours}");
    assert_eq!(ours["policyName"], POLICY, "{ours}");
    let snapshot = ours["id"].as_str().expect("id").to_owned();
    let short = &snapshot[..8];
    let table = fleet.ok(&["snapshots"]);
    assert!(table.contains(short) && table.contains(POLICY), "{table}");

    // 2. A file is deleted, one changed; a snapshot made by hand appears after a refresh,
    // marked external.
    std::fs::remove_file(data.join("docs/report.bin")).expect("delete");
    std::fs::write(data.join("notes.txt"), "second version, longer\n").expect("change");
    let by_hand = repo.restic(&["backup", "--tag", "by-hand", data.to_str().expect("utf-8")]);
    assert!(by_hand.status.success(), "{by_hand:?}");
    let refreshed = fleet.ok(&["repo", "refresh", POLICY]);
    assert!(
        refreshed.starts_with("inventory refresh requested: task "),
        "{refreshed}"
    );
    let external = eventually(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "the hand-made snapshot in the inventory",
        |last| {
            let list = fleet.json(&["snapshots"]);
            *last = list.to_string();
            list.as_array()?
                .iter()
                .find(|s| s["external"] == true)
                .cloned()
        },
    );
    assert!(
        external["tags"]
            .as_array()
            .expect("tags")
            .contains(&Value::from("by-hand")),
        "{external}"
    );

    // 3. Browse: the backed-up directory as the agent lists it.
    let docs = data.join("docs");
    let listed = fleet.json(&[
        "snapshot",
        "ls",
        short,
        docs.to_str().expect("utf-8"),
        "--agent",
        "keeper",
    ]);
    let entries = listed["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{listed}");
    assert_eq!(entries[0]["name"], "report.bin");
    assert_eq!(entries[0]["size"], report.len());
    let top = fleet.ok(&[
        "snapshot",
        "ls",
        short,
        data.to_str().expect("utf-8"),
        "--agent",
        "keeper",
    ]);
    assert!(top.contains("docs/") && top.contains("notes.txt"), "{top}");

    // 4. A dry run writes nothing and says what it would restore.
    let target = dir.path().join("restored");
    let wanted = docs.join("report.bin");
    let include = ["--include", wanted.to_str().expect("utf-8")];
    let dry = restore(
        &fleet,
        short,
        "keeper",
        &target,
        &[&include[..], &["--dry-run"]].concat(),
    );
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(!target.exists(), "a dry run wrote {}", target.display());
    let dry_task = requested_task(&dry.stdout);
    let summary = success_summary(&fleet.json(&["task", "show", &dry_task]));
    assert!(summary.contains("would restore 1 file"), "{summary}");

    // 5. The restore brings the deleted file back, byte for byte.
    let restored = restore(&fleet, short, "keeper", &target, &include);
    assert_eq!(restored.code, 0, "{restored:?}");
    assert!(restored.stdout.contains("[succeeded]"), "{restored:?}");
    let back = std::fs::read(under(&target, &wanted)).expect("the restored file");
    assert!(
        back == report,
        "the restored file differs from the original"
    );
    let view = fleet.json(&["task", "show", &requested_task(&restored.stdout)]);
    assert_eq!(view["kind"], "restore", "{view}");
    assert!(success_summary(&view).contains("restored 1 file"), "{view}");

    // 6. Into a target that holds a changed file: left alone by default, replaced with
    // --overwrite always.
    let second = dir.path().join("second");
    let notes = under(&second, &data.join("notes.txt"));
    std::fs::create_dir_all(notes.parent().expect("parent")).expect("mkdir");
    std::fs::write(&notes, "edited since\n").expect("write");
    let kept = restore(&fleet, short, "keeper", &second, &["--overwrite", "never"]);
    assert_eq!(kept.code, 0, "{kept:?}");
    assert_eq!(
        std::fs::read_to_string(&notes).expect("notes"),
        "edited since\n"
    );
    assert_eq!(
        std::fs::read(under(&second, &wanted)).expect("report"),
        report,
        "the rest is restored"
    );
    let summary = success_summary(&fleet.json(&["task", "show", &requested_task(&kept.stdout)]));
    assert!(summary.contains("1 existing left alone"), "{summary}");
    let replaced = restore(&fleet, short, "keeper", &second, &["--overwrite", "always"]);
    assert_eq!(replaced.code, 0, "{replaced:?}");
    assert_eq!(
        std::fs::read_to_string(&notes).expect("notes"),
        "first version\n"
    );

    // 7. An agent without the secret cannot: the task ends, not retried, saying why.
    let refused = restore(&fleet, short, "stranger", &dir.path().join("nope"), &[]);
    assert_ne!(refused.code, 0, "{refused:?}");
    let view = ended(&fleet, &requested_task(&refused.stdout));
    assert_eq!(view["status"], "exhausted", "{view}");
    let history = view["events"].to_string();
    assert!(
        history.contains(SECRET),
        "the failure names the missing secret: {history}"
    );
    assert!(!dir.path().join("nope").exists());

    // 8. Another tenant sees no snapshot and cannot restore or browse this one.
    let other = anonymous.ok(&["tenant", "create", "others", "--nats-url", &nats.url()]);
    let stranger = anonymous.with_token(&token_after(&other, "admin token"));
    assert_eq!(stranger.json(&["snapshots"]), serde_json::json!([]));
    let target = dir.path().join("theirs");
    let target = target.to_str().expect("utf-8");
    stranger.fails(
        &["restore", short, "--agent", "keeper", "--target", target],
        66,
    );
    stranger.fails(&["snapshot", "ls", short, "--agent", "keeper"], 66);
    let keeper = fleet.json(&["agent", "show", "keeper"])["id"]
        .as_str()
        .expect("agent id")
        .to_owned();
    let policy = fleet.json(&["policy", "show", POLICY])["id"]
        .as_str()
        .expect("policy id")
        .to_owned();
    let api = support::running::Api {
        addr: addr.clone(),
        token: token_after(&other, "admin token"),
    };
    let (status, body) = api.get(&format!(
        "/v1/snapshots/{snapshot}/ls?policy={policy}&agent={keeper}"
    ));
    assert!(status == 400 || status == 404, "{status}: {body}");
    let forged = serde_json::json!({
        "policy": policy, "agent": keeper, "snapshot": snapshot, "target": target,
    });
    let (status, body) = api.post("/v1/restores", &forged);
    assert!(status == 400 || status == 404, "{status}: {body}");
    assert!(!Path::new(target).exists());

    // 9. Neither the password nor a restored file's contents nor a token is in any stream
    // or read model; the policy's name is (the scan reads what it should).
    let (messages, files) = scan::assert_no_secret_stored(
        &nats.url(),
        &[&dir.path().join("fleet-data/projections")],
        &[
            ("repository password", PASSWORD.trim()),
            ("a restored file's contents", CONTENTS),
            ("admin token", fleet.token.as_deref().expect("token")),
            ("enrollment token", &enroll),
        ],
        POLICY,
    );
    eprintln!("scan: nothing secret in {messages} stream messages or {files} read-model files");
}
