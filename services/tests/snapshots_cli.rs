//! `fleet snapshots` end to end: the real `fleet` binary against `fleet up` on a real
//! nats-server. A tenant, an agent and a policy are made with the CLI's own verbs; a
//! listing's change of the inventory is appended to the log as intake would write it.
//! Checks the table (policy name or external, the fleet's tags left out), the filters by
//! repository (id or URL), agent and policy (names), `--limit`, `--json` and `-o json`,
//! 66 for a repository the tenant does not know, and that another tenant sees nothing.
//!
//! Needs nats-server installed.

use chrono::{TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, RepoEvent, SnapshotInfo};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId};
use fleet_events::store::{Append, EventStore, Expect};
use fleet_tests::NatsServer;
use serde_json::Value;

mod support;
use support::running::fleet_up;
use support::{Fleet, free_port, token_after};

/// Fires on 29 February only, so the scheduler adds no task while the test runs.
const POLICY: &str = "\
name: nightly
kind: backup
schedule:
  cron: {expr: '0 2 29 2 *', timezone: UTC}
repository: {url: /srv/restic/main, secret: main}
include: [/srv]
agents: [db-1]
";

fn snapshot(id: &str, minutes_ago: i64, host: &str, tags: Vec<String>) -> SnapshotInfo {
    SnapshotInfo {
        id: id.repeat(8),
        time: Utc::now() - TimeDelta::minutes(minutes_ago),
        host: host.into(),
        paths: vec!["/srv".into()],
        more_paths: 0,
        tags,
        size_bytes: Some(3 * 1024 * 1024),
        files: Some(12),
    }
}

/// Appends the change a listing of `repo` by `agent` makes, as intake writes it.
async fn listed(nats_url: &str, repo: RepoId, agent: AgentId, added: Vec<SnapshotInfo>) {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let store = EventStore::new(client);
    let event = Event::Repo {
        repo,
        event: RepoEvent::SnapshotsChanged {
            task: TaskId::generate(),
            agent,
            listed_at: Utc::now(),
            added,
            removed: vec![],
        },
    };
    let envelope = Envelope::new(TenantId::new("acme").expect("slug"), Utc::now(), event);
    let msg_id = envelope.id.to_string();
    let append = Append {
        envelope: &envelope,
        msg_id: &msg_id,
        expect: Expect::Any,
    };
    store.append(append).await.expect("appended");
}

/// The table's rows (without the header), each as its cells.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_snapshots_lists_filters_and_names_policies() {
    let nats = NatsServer::start().expect("nats-server");
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let nats_url = nats.url();
    let _up = fleet_up(&nats_url, data.path(), port);
    let anonymous = Fleet {
        api: format!("http://127.0.0.1:{port}"),
        token: None,
    };
    let created = anonymous.create_tenant("acme", &nats_url);
    let fleet = anonymous.with_token(&token_after(&created, "admin token"));
    let registered = fleet.eventually(
        &["agent", "register", "machine-1", "--name", "db-1"],
        "the API up",
        |_| true,
    );
    let agent: AgentId = registered
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .expect("agent id");
    // The policy names its agent by name: the projector must know it.
    fleet.eventually(&["agent", "ls"], "db-1 listed", |out| out.contains("db-1"));
    let ran = fleet.run_with_stdin(&["policy", "apply", "-f", "-"], POLICY);
    assert_eq!(ran.code, 0, "{ran:?}");
    let acme = TenantId::new("acme").expect("slug");
    let policy = PolicyId::for_name(&acme, "nightly");
    let repo = RepoId::for_url("/srv/restic/main");
    let ours = snapshot(
        "5e1c0a3f",
        10,
        "db-1",
        vec![
            format!("policy:{policy}"),
            format!("task:{}", TaskId::generate()),
            "db".into(),
        ],
    );
    let by_hand = snapshot("0badf00d", 60, "laptop", vec!["manual".into()]);
    listed(&nats_url, repo, agent, vec![ours, by_hand]).await;

    let table = fleet.eventually(&["snapshots"], "both snapshots", |out| {
        out.lines().count() == 3
    });
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "TIME", "HOST", "PATHS", "SIZE", "POLICY", "TAGS"]
    );
    let listed_rows = rows(&table);
    let short: Vec<&str> = listed_rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(short, ["5e1c0a3f", "0badf00d"], "newest first:\n{table}");
    assert_eq!(
        listed_rows[0][2..],
        ["db-1", "/srv", "3.0 MiB", "nightly", "db"],
        "{table}"
    );
    assert_eq!(
        listed_rows[1][2..],
        ["laptop", "/srv", "3.0 MiB", "external", "manual"]
    );

    let one = |args: &[&str]| -> Vec<String> {
        let out = fleet.ok(args);
        rows(&out).into_iter().map(|r| r[0].clone()).collect()
    };
    assert_eq!(one(&["snapshots", "--policy", "nightly"]), ["5e1c0a3f"]);
    assert_eq!(one(&["snapshots", "--agent", "db-1"]), ["5e1c0a3f"]);
    assert_eq!(one(&["snapshots", "--limit", "1"]), ["5e1c0a3f"]);
    assert_eq!(
        one(&["snapshots", "--repo", &repo.to_string()]),
        ["5e1c0a3f", "0badf00d"]
    );
    for json in [
        fleet.ok(&["snapshots", "--repo", "/srv/restic/main", "--json"]),
        fleet.ok(&["snapshots", "--repo", "/srv/restic/main", "-o", "json"]),
    ] {
        let json: Value = serde_json::from_str(&json).expect("JSON");
        let items = json.as_array().expect("an array of snapshots");
        assert_eq!(items.len(), 2, "{json}");
        assert_eq!(items[0]["id"], "5e1c0a3f".repeat(8));
        assert_eq!(items[0]["repoUrl"], "/srv/restic/main");
        assert_eq!(items[1]["external"], true);
    }
    let unknown = fleet.fails(&["snapshots", "--repo", "/srv/restic/nowhere"], 66);
    assert!(unknown.contains("no repository"), "{unknown}");

    // Another tenant: nothing of acme's, and acme's repository is unknown to it.
    let other = anonymous.ok(&["tenant", "create", "other", "--nats-url", &nats_url]);
    let other = anonymous.with_token(&token_after(&other, "admin token"));
    let theirs = other.ok(&["snapshots"]);
    assert_eq!(theirs.lines().count(), 1, "only the header: {theirs}");
    other.fails(&["snapshots", "--repo", "/srv/restic/main"], 66);
}
