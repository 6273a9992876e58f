//! The dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against the API with the projector behind it. Signing in with a read-only
//! token shows the overview; events appended afterwards make the agent saturated and put a
//! task into backoff, and the page shows both without being reloaded; the task's timeline
//! lists its events in log order. Screenshots go to `FLEET_SCREENSHOTS_DIR` (default: a
//! temporary directory).
//!
//! Needs `chromium` and `chromium-driver` (Debian: `apt-get install -y chromium
//! chromium-driver`); without them the test fails saying so.

use std::net::SocketAddr;
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use fleet_control::tenant;
use fleet_events::event::{
    AgentEvent, AssignmentEvent, BackupSummary, ErrorClass, Event, Role, RunDetail, RunSummary,
    TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, AssignmentId, PolicyId, TaskId};
use fleet_events::policy::TaskKind;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use serde_json::{Value, json};

use crate::support::browser::{
    Chromedriver, DEADLINE, click, poll, screenshot, screenshots_dir, sign_in,
};
use crate::support::http::{call, get};
use crate::support::{append, append_at, eventually, fleet, serve_api, stop};

#[tokio::test]
async fn the_dashboard_shows_saturation_and_backoff_live() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let served = serve_api(store);
    let addr = served.addr;
    let acme = crate::support::tenant();
    tenant::create(store, &acme, "Acme", Utc::now())
        .await
        .expect("tenant");
    let admin = tenant::issue(store, &acme, Role::Admin, "ops", Utc::now())
        .await
        .expect("token");
    let reader = tenant::issue(store, &acme, Role::ReadOnly, "dashboard", Utc::now())
        .await
        .expect("token");
    let admin = admin.text.expose();

    // An online agent that takes one task at once, a policy assigned to it, and a few
    // finished backups of the last hours for the runs view.
    let agent = AgentId::generate();
    let settings = AgentSettings {
        max_concurrent: 1,
        ..AgentSettings::default()
    };
    let registered = AgentEvent::Registered {
        name: "db-1".into(),
        hostname: "db-1.example.net".into(),
        settings,
    };
    append(
        store,
        Event::Agent {
            agent,
            event: registered,
        },
    )
    .await;
    let online = AgentEvent::CameOnline {
        agent_version: "0.1.0".into(),
        restic_version: "0.16.4".into(),
    };
    append(
        store,
        Event::Agent {
            agent,
            event: online,
        },
    )
    .await;
    // A second agent, offline for five minutes.
    let gone = AgentId::generate();
    let gone_registered = AgentEvent::Registered {
        name: "db-2".into(),
        hostname: "db-2.example.net".into(),
        settings: AgentSettings::default(),
    };
    let offline = AgentEvent::WentOffline {
        last_seen: Utc::now() - minutes(5),
    };
    for event in [gone_registered, offline] {
        append(store, Event::Agent { agent: gone, event }).await;
    }
    wait_for_projector(addr, admin).await;
    let policy = create_policy(addr, admin, agent).await;
    let now = Utc::now();
    for (hours_ago, mib, secs) in [(7, 412, 95), (6, 38, 21), (5, 55, 24), (4, 12, 14)] {
        past_backup(store, policy, agent, now - hours(hours_ago), mib, secs).await;
    }
    for (hours_ago, mib, secs) in [(3, 140, 48), (2, 9, 11), (1, 61, 27)] {
        past_backup(store, policy, agent, now - hours(hours_ago), mib, secs).await;
    }

    let driver = Chromedriver::start();
    let browser = driver.session().await;
    sign_in(&browser, addr, reader.text.expose()).await;

    let row = format!("tr[data-agent=\"{agent}\"]");
    let agent_row = format!(
        "const row = document.querySelector('{row}');
         if (!row) return null;
         const badge = row.querySelector('.badge.backoff');
         return {{
           saturated: row.querySelector('.bar').dataset.saturated,
           backoff: badge ? badge.textContent : null,
           online: row.textContent.includes('online'),
           live: document.getElementById('live').dataset.state,
           notReloaded: window.notReloaded === true,
         }};"
    );
    let seen = poll(&browser, "the agent on the overview", &agent_row, |row| {
        row["online"] == true && row["live"] == "live"
    })
    .await;
    assert_eq!(seen["saturated"], "false", "{seen}");
    assert_eq!(seen["backoff"], Value::Null, "{seen}");
    // A mark on this page: a reload would lose it.
    browser
        .execute("window.notReloaded = true; return true;", vec![])
        .await
        .expect("mark the page");

    // Live: one task fails and waits for its retry, another one occupies the only slot.
    let failing = scheduled(store, policy, agent, now - minutes(2)).await;
    let error = TaskError::new(
        ErrorClass::Network,
        "Fatal: unable to open repository: dial tcp 10.0.0.7:22: connect: connection refused",
        Some(1),
    );
    for event in [
        TaskEvent::Dispatched { agent, attempt: 1 },
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Failed { attempt: 1, error },
        TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: Utc::now() + minutes(30),
            delay_ms: 1_800_000,
        },
    ] {
        let event = Event::Task {
            task: failing,
            event,
        };
        append(store, event).await;
    }
    let running = scheduled(store, policy, agent, now - minutes(1)).await;
    for event in [
        TaskEvent::Dispatched { agent, attempt: 1 },
        TaskEvent::Started { attempt: 1 },
    ] {
        append(
            store,
            Event::Task {
                task: running,
                event,
            },
        )
        .await;
    }

    let seen = poll(
        &browser,
        "saturation and backoff, live",
        &agent_row,
        |row| row["saturated"] == "true" && !row["backoff"].is_null(),
    )
    .await;
    assert_eq!(seen["notReloaded"], true, "the page was reloaded: {seen}");
    let badge = seen["backoff"].as_str().unwrap_or_default();
    assert!(is_until_badge(badge), "backoff badge {badge:?}");
    // The cards count what is so now: one task failed and waits for its retry, none was
    // given up today.
    let cards = poll(
        &browser,
        "the task counts",
        "const card = (label) => [...document.querySelectorAll('.card')]
           .find((c) => c.querySelector('.label').textContent === label);
         const value = (label) => { const c = card(label); return c ? c.querySelector('.value').textContent : null; };
         return { retrying: value('failed, to be retried'), givenUp: value('given up today (UTC)'),
                  tone: card('failed, to be retried')?.className };",
        |cards| cards["retrying"] == "1",
    )
    .await;
    assert_eq!(cards["givenUp"], "0", "{cards}");
    assert_eq!(cards["tone"], "card warn", "{cards}");

    // "Last seen" is the last heartbeat: none yet for db-1; once it beats, the overview
    // shows it within a refresh, without a reload. db-2 says since when it is offline.
    let cells = |id: AgentId| {
        format!(
            "const row = document.querySelector('tr[data-agent=\"{id}\"]');
             if (!row) return null;
             const since = row.querySelector('.offline-since');
             const time = row.cells[4].querySelector('time');
             return {{
               lastSeen: row.cells[4].textContent,
               lastSeenMs: time ? Date.parse(time.getAttribute('datetime')) : null,
               state: row.cells[1].textContent,
               since: since ? since.textContent : null,
               notReloaded: window.notReloaded === true,
             }};"
        )
    };
    let db2 = poll(&browser, "db-2 offline", &cells(gone), |row| {
        !row["since"].is_null()
    })
    .await;
    assert!(
        db2["state"]
            .as_str()
            .unwrap_or_default()
            .starts_with("offline"),
        "{db2}"
    );
    assert!(
        db2["since"]
            .as_str()
            .unwrap_or_default()
            .starts_with("since 20"),
        "{db2}"
    );
    assert!(
        db2["lastSeen"]
            .as_str()
            .unwrap_or_default()
            .contains("(5 min"),
        "{db2}"
    );
    let sent = Utc::now().timestamp_millis();
    heartbeat(&fleet.client, agent).await;
    let db1 = poll(&browser, "db-1 heard", &cells(agent), |row| {
        row["lastSeenMs"]
            .as_i64()
            .is_some_and(|ms| ms >= sent - 100)
    })
    .await;
    assert!(
        db1["lastSeen"]
            .as_str()
            .unwrap_or_default()
            .ends_with(" ago)"),
        "{db1}"
    );
    assert_eq!(db1["notReloaded"], true, "the page was reloaded: {db1}");
    let shots = screenshots_dir();
    screenshot(&browser, &shots, "dashboard-overview.png").await;

    // The agent's page: its backoff names the failing task.
    click(&browser, &format!("{row} a")).await;
    let task_link = format!("a[href=\"#/tasks/{failing}\"]");
    poll(
        &browser,
        "the agent's backoff",
        &format!("return document.querySelector('.agent {task_link}') !== null;"),
        |found| found == &Value::Bool(true),
    )
    .await;
    screenshot(&browser, &shots, "dashboard-agent.png").await;

    // The task's timeline, oldest first.
    click(&browser, &format!(".agent {task_link}")).await;
    let timeline = poll(
        &browser,
        "the task's timeline",
        "const items = [...document.querySelectorAll('.task .timeline li')];
         return items.map((li) => ({type: li.dataset.type, seq: Number(li.dataset.seq)}));",
        |items| items.as_array().is_some_and(|items| items.len() >= 6),
    )
    .await;
    let types: Vec<&str> = timeline
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.failed",
            "task.retry_scheduled",
        ]
    );
    let seqs: Vec<u64> = timeline
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "not in log order: {seqs:?}"
    );
    // The task's agent and policy by the names a person knows them by, the agent linked.
    let named = browser
        .execute(
            "const text = (s) => document.querySelector(s)?.textContent ?? null;
             return {
               agent: text('.task dd.agent'),
               agentHref: document.querySelector('.task dd.agent a')?.getAttribute('href'),
               policy: text('.task dd.policy'),
               crumb: text('.task .crumbs'),
             };",
            vec![],
        )
        .await
        .expect("the task's names");
    assert_eq!(named["agent"], "db-1", "{named}");
    assert_eq!(named["agentHref"], format!("#/agents/{agent}"), "{named}");
    assert_eq!(named["policy"], "db-nightly", "{named}");
    assert_eq!(named["crumb"], "Overview › db-1 › task", "{named}");
    screenshot(&browser, &shots, "dashboard-task.png").await;

    // Runs with their charts, and the policies with their schedules.
    click(&browser, "#nav a[href=\"#/runs\"]").await;
    poll(
        &browser,
        "the runs' charts",
        "return document.querySelectorAll('svg.chart circle').length;",
        |dots| dots.as_u64().is_some_and(|n| n >= 14),
    )
    .await;
    // What ended per UTC day agrees with the runs listed below it (all of them are
    // within the days kept), and the page says how long runs are kept.
    let per_day = browser
        .execute(
            "const days = [...document.querySelectorAll('tr[data-day]')];
             const runs = days.reduce((n, tr) => n + Number(tr.cells[1].textContent), 0);
             const succeeded = days.reduce((n, tr) => n + Number(tr.cells[2].textContent), 0);
             const listed = [...document.querySelectorAll('table')].pop().tBodies[0].rows;
             return { days: days.length, runs, succeeded, listed: listed.length,
                      ok: [...listed].filter((r) => r.textContent.includes('succeeded')).length,
                      note: [...document.querySelectorAll('p.muted')].map((p) => p.textContent).join() };",
            vec![],
        )
        .await
        .expect("the days");
    assert!(
        per_day["days"]
            .as_u64()
            .is_some_and(|n| (1..=2).contains(&n)),
        "{per_day}"
    );
    assert_eq!(per_day["runs"], per_day["listed"], "{per_day}");
    assert_eq!(per_day["succeeded"], per_day["ok"], "{per_day}");
    assert!(per_day["ok"].as_u64().is_some_and(|n| n >= 7), "{per_day}");
    assert!(
        per_day["note"]
            .as_str()
            .is_some_and(|n| n.contains("Runs are kept for 90 days")),
        "{per_day}"
    );
    screenshot(&browser, &shots, "dashboard-runs.png").await;
    click(&browser, "#nav a[href=\"#/policies\"]").await;
    let schedule = poll(
        &browser,
        "the policies",
        "const cell = document.querySelector('.schedule'); return cell && cell.textContent;",
        |text| text.is_string(),
    )
    .await;
    assert_eq!(schedule, "every day at 02:00 (Europe/Berlin)");
    // The fire times are shown in the browser's time zone: the header names it, and the
    // first is 02:00 in Berlin.
    let fires = browser
        .execute(
            "const th = [...document.querySelectorAll('th')].find((t) => t.textContent.startsWith('Next fires'));
             return [th && th.textContent, document.querySelector('ul.fires time').getAttribute('datetime'),
                     Intl.DateTimeFormat().resolvedOptions().timeZone];",
            vec![],
        )
        .await
        .expect("the fire times");
    let zone = fires[2].as_str().unwrap_or_default();
    assert!(!zone.is_empty(), "{fires}");
    assert_eq!(
        fires[0],
        format!("Next fires ({zone}, before jitter)"),
        "{fires}"
    );
    let first: chrono::DateTime<Utc> = fires[1]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("an RFC 3339 time");
    let berlin = first.with_timezone(&chrono_tz::Europe::Berlin);
    assert_eq!(berlin.format("%H:%M").to_string(), "02:00", "{fires}");
    // Days in words as the scheduler reads them: five fields as crontab(5) (0 and 7 are
    // Sunday), the cron crate's six fields with 1 = Sunday; what cannot be said plainly
    // is shown as written.
    let words = browser
        .execute(
            "return import('/ui/view-policies.js').then((m) => [
               '0 2 * * 1-5', '0 2 * * 0', '0 2 * * 7', '30 4 * * 1,3', '0 2 * * MON-FRI',
               '0 0 2 * * 1', '0 0 2 * * 1-5',
             ].map(m.cronWords));",
            vec![],
        )
        .await
        .expect("the schedule words");
    assert_eq!(
        words,
        json!([
            "every weekday at 02:00",
            "every Sunday at 02:00",
            "every Sunday at 02:00",
            "every Monday and Wednesday at 04:30",
            "every weekday at 02:00",
            "every Sunday at 02:00",
            "cron 0 0 2 * * 1-5",
        ])
    );
    screenshot(&browser, &shots, "dashboard-policies.png").await;

    // The notifier finds the policy overdue on db-1: the policies page says so live, the
    // agent's page names the policy, and catching up clears both.
    let assignment = AssignmentId::for_pair(policy, agent);
    let due = Utc::now() - minutes(20);
    let overdue = AssignmentEvent::Overdue {
        policy,
        agent,
        due,
        last_success: Some(now - hours(1)),
    };
    append(
        store,
        Event::Assignment {
            assignment,
            event: overdue,
        },
    )
    .await;
    let state = "const b = document.querySelector('table .badge.bad'); return b && b.textContent;";
    let shown = poll(&browser, "the overdue policy", state, |text| {
        text.is_string()
    })
    .await;
    assert_eq!(shown, "overdue on 1 of 1 agent");
    let agents_cell = format!(
        "const a = document.querySelector('a[href=\"#/agents/{agent}\"]'); \
         return a && a.closest('td').textContent;"
    );
    let cell = poll(&browser, "the policy's agents", &agents_cell, |t| {
        t.is_string()
    })
    .await;
    assert_eq!(
        cell, "db-1",
        "the agents cell shows the agents' names as links"
    );
    screenshot(&browser, &shots, "dashboard-overdue.png").await;
    click(&browser, &format!("a[href=\"#/agents/{agent}\"]")).await;
    let panel = poll(
        &browser,
        "the agent's overdue policies",
        "const t = [...document.querySelectorAll('table')].find((t) => \
           t.caption && t.caption.textContent === 'Policies overdue on this agent'); \
         return t ? t.tBodies[0].textContent : null;",
        |text| text.is_string(),
    )
    .await;
    let panel = panel.as_str().unwrap_or_default();
    assert!(
        panel.contains("db-nightly") && panel.contains("overdue since"),
        "{panel}"
    );
    let caught_up = AssignmentEvent::CaughtUp {
        policy,
        agent,
        task: TaskId::generate(),
        succeeded_at: Utc::now(),
    };
    append(
        store,
        Event::Assignment {
            assignment,
            event: caught_up,
        },
    )
    .await;
    click(&browser, "#nav a[href=\"#/policies\"]").await;
    poll(
        &browser,
        "the policy caught up",
        "const b = document.querySelector('table .badge.good'); return b && b.textContent;",
        |text| text.as_str() == Some("active"),
    )
    .await;

    browser.close().await.expect("close the browser");
    drop(driver);
    stop(&served.shutdown, served.services).await;
}

/// One heartbeat of `agent` (tenant acme), as the agent sends it.
async fn heartbeat(client: &async_nats::Client, agent: AgentId) {
    let beat = fleet_events::protocol::Heartbeat {
        schema: fleet_events::envelope::SCHEMA_VERSION,
        agent,
        tenant: crate::support::tenant(),
        at: Utc::now(),
        running: Default::default(),
        queued: Default::default(),
        agent_version: "0.1.0".into(),
        restic_version: "0.16.4".into(),
        outbox_depth: 0,
        every_secs: 0,
    };
    let subject = fleet_events::subject::AgentSubject {
        agent,
        channel: fleet_events::subject::Channel::Heartbeat,
    };
    let js = async_nats::jetstream::new(client.clone());
    js.publish(subject.to_string(), beat.to_wire().expect("encodes").into())
        .await
        .expect("published")
        .await
        .expect("stored");
}

/// "backoff until HH:MM".
fn is_until_badge(text: &str) -> bool {
    let Some(time) = text.strip_prefix("backoff until ") else {
        return false;
    };
    let bytes = time.as_bytes();
    bytes.len() == 5 && bytes[2] == b':' && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit())
}

async fn wait_for_projector(addr: SocketAddr, token: &str) {
    eventually("the API and the projector", DEADLINE, || async {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return ControlFlow::Continue("not listening".to_owned());
        }
        let response = get(addr, "/v1/agents", Some(token)).await;
        match response.body.as_array().map(Vec::len) {
            Some(2) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(response.text),
        }
    })
    .await;
}

/// Creates the policy `db-nightly`, assigned to `agent`, through the API.
async fn create_policy(addr: SocketAddr, token: &str, agent: AgentId) -> PolicyId {
    let document = json!({
        "name": "db-nightly",
        "schedule": {"cron": {"expr": "0 2 * * *", "timezone": "Europe/Berlin"}},
        "kind": "backup",
        "repository": {"url": "sftp:backup@vault:/srv/restic/db", "secret": "db-repo"},
        "include": ["/var/lib/postgresql"],
        "agents": [agent.to_string()],
    });
    let created = call(addr, "POST", "/v1/policies", Some(token), Some(&document)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the policy's id")
}

/// A task of `policy` on `agent`, scheduled for `fire_at`.
async fn scheduled(
    store: &fleet_events::store::EventStore,
    policy: PolicyId,
    agent: AgentId,
    fire_at: DateTime<Utc>,
) -> TaskId {
    let task = TaskId::for_fire(policy, agent, fire_at);
    let event = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(samples::policy_spec()),
    };
    append_at(store, Event::Task { task, event }, fire_at).await;
    task
}

/// A backup that ran at `at`, added `mib` MiB and took `secs` seconds.
async fn past_backup(
    store: &fleet_events::store::EventStore,
    policy: PolicyId,
    agent: AgentId,
    at: DateTime<Utc>,
    mib: u64,
    secs: i64,
) {
    let task = scheduled(store, policy, agent, at).await;
    let summary = RunSummary {
        kind: TaskKind::Backup,
        duration_ms: secs as u64 * 1000,
        detail: RunDetail::Backup(BackupSummary {
            snapshot_id: Some(format!("{:08x}", at.timestamp())),
            files_new: mib * 3,
            data_added_bytes: mib * 1024 * 1024,
            ..BackupSummary::default()
        }),
    };
    let steps = [
        (TaskEvent::Dispatched { agent, attempt: 1 }, at),
        (
            TaskEvent::Started { attempt: 1 },
            at + chrono::Duration::seconds(1),
        ),
        (
            TaskEvent::Succeeded {
                attempt: 1,
                summary,
            },
            at + chrono::Duration::seconds(1 + secs),
        ),
    ];
    for (event, when) in steps {
        append_at(store, Event::Task { task, event }, when).await;
    }
}

fn hours(n: i64) -> chrono::Duration {
    chrono::Duration::hours(n)
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}
