//! Read-model retention end to end, as an operator meets it: `fleet up --history-days 2`
//! on a real nats-server, a backup run five days old and one from today appended to the
//! log as an agent's reports leave them. `fleet runs` lists today's run only, `fleet task
//! show` of the old task says where it went and how to see it, `fleet history` shows both
//! days, per agent for the policy and for the whole tenant. `fleet projections rebuild`
//! with the same days gives the same answers.
//!
//! Needs nats-server installed.

use chrono::{TimeDelta, Utc};
use fleet_events::ids::{AgentId, PolicyId};
use fleet_events::policy::PolicySpec;
use serde_json::Value;

mod support;
use support::running::fleet_up_with;
use support::{Fleet, append_run_at, free_port, token_after};

/// Fires on 29 February only: the scheduler adds no task of its own while the test runs.
const POLICY: &str = "\
name: nightly
kind: backup
schedule:
  cron: {expr: '0 2 29 2 *', timezone: UTC}
repository: {url: /srv/restic/main, secret: main}
include: [/etc]
";

/// What the operator sees of the two runs: the days listed by `fleet history` for the
/// policy, the runs by `fleet runs`, the old task by `fleet task show`.
fn check_answers(fleet: &Fleet, old_task: &str, old_day: &str, today: &str, agent: &str) {
    let days = fleet.eventually(
        &["history", "--policy", "nightly", "-o", "json"],
        "both days in the history",
        |out| {
            serde_json::from_str::<Value>(out)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                == Some(2)
        },
    );
    let days: Value = serde_json::from_str(&days).expect("json");
    assert_eq!(days[0]["day"], today, "newest first: {days}");
    assert_eq!(days[1]["day"], old_day, "{days}");
    for day in days.as_array().expect("days") {
        assert_eq!(day["agent"], agent, "{day}");
        assert_eq!(
            (day["runs"].as_u64(), day["succeeded"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(day["dataAddedBytes"], 1 << 20, "{day}");
    }

    let runs = fleet.json(&["runs"]);
    let listed: Vec<&Value> = runs.as_array().expect("runs").iter().collect();
    assert_eq!(
        listed.len(),
        1,
        "the old run has left the read models: {runs}"
    );
    assert_ne!(listed[0]["task"], old_task);

    let refused = fleet.fails(&["task", "show", old_task], 66);
    assert!(
        refused.contains("leaves the read models after 2 days")
            && refused.contains(&format!("fleet events replay --task {old_task}")),
        "{refused}"
    );

    let table = fleet.ok(&["history", "--policy", "nightly"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two days: {table}");
    assert!(
        lines[0].starts_with("DAY") && lines[0].contains("SUCCEEDED"),
        "{table}"
    );
    for (line, day) in lines[1..].iter().zip([today, old_day]) {
        assert!(
            line.starts_with(&format!("{day}  nightly  {agent}")),
            "{table}"
        );
        assert!(
            line.contains("1m01s") && line.ends_with("1.0 MiB"),
            "{table}"
        );
    }
    let tenant = fleet.ok(&["history"]);
    assert!(
        !tenant.contains("nightly"),
        "the tenant's days name no policy: {tenant}"
    );
    assert!(
        tenant.contains(old_day) && tenant.contains(today),
        "{tenant}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_runs_leave_the_read_models_and_their_days_stay() {
    let nats = fleet_tests::NatsServer::start().expect("nats-server");
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let nats_url = nats.url();
    let up = fleet_up_with(&nats_url, data.path(), port, &["--history-days", "2"]);
    let anonymous = Fleet {
        api: format!("http://127.0.0.1:{port}"),
        token: None,
    };
    let created = anonymous.create_tenant("acme", &nats_url);
    let fleet = anonymous.with_token(&token_after(&created, "admin token"));
    fleet.eventually(&["policy", "ls"], "the API up", |_| true);
    let ran = fleet.run_with_stdin(&["policy", "apply", "-f", "-"], POLICY);
    assert_eq!(ran.code, 0, "{ran:?}");
    let policy = fleet.json(&["policy", "show", "nightly"]);
    let id: PolicyId = policy["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("id");
    let spec: PolicySpec = serde_json::from_value(policy["spec"].clone()).expect("spec");

    let agent = AgentId::generate();
    let now = Utc::now();
    let five_days_ago = now - TimeDelta::days(5);
    let old = append_run_at(&nats_url, (id, agent), spec.clone(), five_days_ago).await;
    append_run_at(&nats_url, (id, agent), spec, now - TimeDelta::minutes(2)).await;
    let old_day = (five_days_ago + TimeDelta::seconds(61))
        .format("%Y-%m-%d")
        .to_string();
    let today = (now - TimeDelta::minutes(2) + TimeDelta::seconds(61))
        .format("%Y-%m-%d")
        .to_string();
    let (old, agent) = (old.to_string(), agent.to_string());
    check_answers(&fleet, &old, &old_day, &today, &agent);

    // Rebuilt from the log with the same days: the same answers.
    drop(up);
    let projections = data.path().join("projections");
    let rebuilt = std::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args([
            "projections",
            "rebuild",
            "--history-days",
            "2",
            "--nats-url",
            &nats_url,
        ])
        .arg("--projections-dir")
        .arg(&projections)
        .output()
        .expect("fleet projections rebuild");
    let said = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(
        rebuilt.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(said.contains("runs: rebuilt up to sequence"), "{said}");
    let _up = fleet_up_with(&nats_url, data.path(), port, &["--history-days", "2"]);
    check_answers(&fleet, &old, &old_day, &today, &agent);
}
