//! `fleet notify` end to end: the real `fleet` binary against `fleet up` on a real
//! nats-server. Rules are added from YAML on stdin and from options, listed, tested and
//! removed; notifications are appended to the log as the notifier writes them and read
//! back with `fleet notify log`. Checks the tables, `-o json`, every problem of a bad rule
//! on its own line (65), a refused credential URL, a read-only token (77), an unknown
//! rule (66), and that another tenant sees nothing.
//!
//! Needs nats-server installed.

use chrono::{TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, Message, NotificationEvent, RuleEvent};
use fleet_events::ids::{EventId, NotificationId, RuleId, TenantId};
use fleet_events::notify::Trigger;
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::subject::{AggregateId, EventSubject};
use fleet_tests::NatsServer;
use serde_json::Value;

mod support;
use support::running::fleet_up;
use support::{Fleet, free_port, token_after};

const RULES: &str = "\
name: ops-pager
on: [taskExhausted, policyOverdue]
target: {kind: webhook, urlSecret: ops-hook, hmacSecret: ops-hook-key}
---
# the team's channel
name: chat
target: {kind: ntfy, url: 'https://ntfy.example/fleet'}
policies: [nightly]
";

const BAD: &str = "\
name: Bad Name
on: [taskExploded]
target: {kind: pager, url: 'https://x.example/?token=1'}
retry: {maxAttempts: 0}
";

/// Appends `events` of acme's notification `id`, as the notifier writes them.
async fn notify(store: &EventStore, id: NotificationId, events: Vec<NotificationEvent>) {
    for event in events {
        let event = Event::Notification {
            notification: id,
            event,
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
}

/// A notification of `rule` titled `title`: its id and its trigger.
fn triggered(rule: RuleId, title: &str) -> (NotificationId, NotificationEvent) {
    let source = EventId::generate();
    let message = Message {
        trigger: Some(Trigger::TaskExhausted),
        event_type: "task.exhausted".into(),
        at: Utc::now(),
        title: title.into(),
        text: "network: connection refused".into(),
        policy: None,
        agent: None,
        task: None,
        repo: None,
    };
    let event = NotificationEvent::Triggered {
        rule,
        source,
        message: Box::new(message),
    };
    (NotificationId::for_event(rule, source), event)
}

/// The cells of a table's line (cells are two or more spaces apart).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The rows (without the header) with a cell `cell`, each as its cells.
fn rows_with<'a>(table: &'a str, cell: &str) -> Vec<Vec<&'a str>> {
    table
        .lines()
        .skip(1)
        .map(cells)
        .filter(|row| row.contains(&cell))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_notify_adds_lists_tests_logs_and_removes_rules() {
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
    fleet.eventually(&["notify", "ls"], "the API up", |out| {
        out.starts_with("NAME")
    });

    // Two rules from YAML; the same again changes nothing; one more from options.
    let ran = fleet.run_with_stdin(&["notify", "add", "-f", "-"], RULES);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout,
        "rule ops-pager: created (rule.defined)\nrule chat: created (rule.defined)\n"
    );
    let ran = fleet.run_with_stdin(&["notify", "add", "-f", "-"], RULES);
    assert_eq!(
        ran.stdout, "rule ops-pager: unchanged\nrule chat: unchanged\n",
        "{ran:?}"
    );
    let added = fleet.ok(&[
        "notify",
        "add",
        "hc",
        "--healthchecks-secret",
        "hc-db",
        "--on",
        "policyOverdue",
        "--on",
        "policyCaughtUp",
        "--policy",
        "nightly",
    ]);
    assert_eq!(added, "rule hc: created (rule.defined)\n");

    // Refused: every problem on its own line, a credential URL with the hint; nothing added.
    let ran = fleet.run_with_stdin(&["notify", "add", "-f", "-"], BAD);
    assert_eq!(ran.code, 65, "{ran:?}");
    for field in [
        "name:",
        "on[0]:",
        "target.kind:",
        "target.url:",
        "retry.maxAttempts:",
    ] {
        assert!(
            ran.stderr
                .lines()
                .any(|l| l.trim_start().starts_with(field)),
            "{field} in {}",
            ran.stderr
        );
    }
    let refused = fleet.fails(
        &[
            "notify",
            "add",
            "leak",
            "--webhook",
            "https://u:pw@hooks.example/x",
        ],
        65,
    );
    assert!(refused.contains("target.url"), "{refused}");
    assert!(refused.contains("urlSecret"), "{refused}");

    let table = fleet.eventually(&["notify", "ls"], "three rules", |out| {
        out.lines().count() == 4
    });
    let header: Vec<&str> = table
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "ON", "TARGET", "POLICIES", "AGENTS", "UPDATED"]
    );
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["chat", "hc", "ops-pager"], "by name:\n{table}");
    assert_eq!(
        rows_with(&table, "ops-pager")[0][..5],
        [
            "ops-pager",
            "taskExhausted, policyOverdue",
            "webhook (secret ops-hook), signed (secret ops-hook-key)",
            "all",
            "all"
        ],
        "{table}"
    );
    assert_eq!(
        rows_with(&table, "chat")[0][..5],
        [
            "chat",
            "default",
            "ntfy https://ntfy.example/fleet",
            "nightly",
            "all"
        ],
        "{table}"
    );
    let json = fleet.json(&["notify", "ls"]);
    assert_eq!(json[2]["triggers"][1], "policyOverdue", "{json}");
    assert!(!table.contains("u:pw") && !json.to_string().contains("leak"));

    // Read-only: reads, may not change; unknown rules are 66.
    reader.ok(&["notify", "ls"]);
    reader.fails(&["notify", "rm", "ops-pager"], 77);
    reader.fails(&["notify", "test", "ops-pager"], 77);
    fleet.fails(&["notify", "test", "nope"], 66);

    // A test asked for: rule.test_requested in the rule's history, naming the token.
    let tested = fleet.ok(&["notify", "test", "ops-pager"]);
    assert!(
        tested.starts_with("rule ops-pager: test notification asked for (rule.test_requested)"),
        "{tested}"
    );
    let client = async_nats::connect(&nats_url).await.expect("connect");
    let store = EventStore::new(client);
    let acme = TenantId::new("acme").expect("slug");
    let rule = RuleId::for_name(&acme, "ops-pager");
    let subject = EventSubject {
        tenant: acme.clone(),
        aggregate: AggregateId::Rule(rule),
    };
    let history = store.history(&subject).await.expect("history");
    let asked = history.events.iter().any(|s| {
        matches!(
            &s.envelope.event,
            Event::Rule {
                event: RuleEvent::TestRequested { .. },
                ..
            }
        )
    });
    assert!(asked, "{:?}", history.events);

    // The log: one delivered, one failing, as the notifier writes them.
    let (delivered, event) = triggered(rule, "backup of nightly on db-1 failed for good");
    notify(
        &store,
        delivered,
        vec![
            event,
            NotificationEvent::Sending { attempt: 1 },
            NotificationEvent::Delivered {
                attempt: 1,
                status: 204,
            },
        ],
    )
    .await;
    let (failing, event) = triggered(rule, "check of weekly on db-2 failed for good");
    notify(
        &store,
        failing,
        vec![
            event,
            NotificationEvent::Sending { attempt: 1 },
            NotificationEvent::Failed {
                attempt: 1,
                error: "HTTP 503".into(),
                retry_at: Utc::now() + TimeDelta::minutes(2),
            },
        ],
    )
    .await;
    let log = fleet.eventually(&["notify", "log"], "both notifications", |out| {
        out.contains("HTTP 503")
    });
    let header: Vec<&str> = log
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "TIME", "RULE", "EVENT", "STATE", "ATTEMPTS", "TITLE", "OUTCOME"
        ]
    );
    let titles: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("failed for good"))
        .map(|l| {
            if l.contains("weekly") {
                "failing"
            } else {
                "delivered"
            }
        })
        .collect();
    assert_eq!(titles, ["failing", "delivered"], "newest first:\n{log}");
    let ok = rows_with(&log, "backup of nightly on db-1 failed for good");
    assert_eq!(
        ok[0][1..],
        [
            "ops-pager",
            "taskExhausted",
            "delivered",
            "1",
            "backup of nightly on db-1 failed for good",
            "HTTP 204"
        ],
        "{log}"
    );
    let failed = fleet.ok(&["notify", "log", "--state", "failed"]);
    assert!(failed.contains("HTTP 503; next attempt"), "{failed}");
    assert!(
        failed.lines().skip(1).all(|l| cells(l)[3] == "failed"),
        "{failed}"
    );
    let one = fleet.ok(&["notify", "log", "--rule", "ops-pager", "--limit", "1"]);
    assert_eq!(one.lines().count(), 2, "{one}");
    let chat = fleet.ok(&["notify", "log", "--rule", "chat"]);
    assert_eq!(chat.lines().count(), 1, "only the header: {chat}");
    let json = fleet.json(&["notify", "log", "--state", "delivered"]);
    let items = json.as_array().expect("a list");
    assert!(
        items
            .iter()
            .any(|n| n["lastStatus"] == 204 && n["attempts"] == 1),
        "{json}"
    );
    assert!(items.iter().all(|n| n["state"] == "delivered"), "{json}");

    // Removed: gone from the list; again: 66.
    assert_eq!(
        fleet.ok(&["notify", "rm", "chat"]),
        "rule chat: deleted (rule.deleted)\n"
    );
    fleet.fails(&["notify", "rm", "chat"], 66);
    fleet.eventually(&["notify", "ls"], "chat gone", |out| {
        out.lines().count() == 3 && rows_with(out, "chat").is_empty()
    });

    // Another tenant sees none of it.
    let other = anonymous.ok(&["tenant", "create", "other", "--nats-url", &nats_url]);
    let other = anonymous.with_token(&token_after(&other, "admin token"));
    assert_eq!(other.ok(&["notify", "ls"]).lines().count(), 1);
    assert_eq!(other.ok(&["notify", "log"]).lines().count(), 1);
    other.fails(&["notify", "test", "ops-pager"], 66);
    let theirs: Value = other.json(&["notify", "log"]);
    assert_eq!(theirs, Value::Array(vec![]));
}
