//! The dashboard with the real agent behind it (its runtime in this process, running real
//! restic): a running backup's progress on its task's page, and a restore asked for from a
//! snapshot's page after browsing its files. Real nats-server, headless Chromium.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fantoccini::Locator;
use fleet_control::serve::Service;
use fleet_control::tenant;
use fleet_events::event::{Event, PolicyEvent, Role, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::PolicySpec;
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_tests::restic::Repo;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::agent::{agent_config, backup_spec, spawn_agent};
use crate::support::browser::{Chromedriver, click, poll, screenshot, screenshots_dir, sign_in};
use crate::support::{
    Fleet, append, fleet, register, serve_api, services, stop, system, task_events,
};

/// Dispatch, intake and retry, and the real agent with a repository in `dir`.
struct RealAgent {
    agent: AgentId,
    repo: Repo,
    shutdown: CancellationToken,
    control: Vec<JoinHandle<()>>,
    runtime: JoinHandle<()>,
}

impl RealAgent {
    async fn start(fleet: &Fleet, dir: &Path, settings: AgentSettings) -> RealAgent {
        let repo = Repo::init(dir, "dashboard password");
        let agent = AgentId::generate();
        register(&fleet.store, agent, settings.clone()).await;
        let shutdown = CancellationToken::new();
        let control = services(
            &fleet.store,
            &[Service::Dispatcher, Service::Intake, Service::Retry],
            &system(),
            &shutdown,
        );
        let state = fleet_agent::state::AgentState::open(dir.join("state")).expect("agent state");
        let config = agent_config(agent, &repo, settings);
        let runtime = spawn_agent(&fleet.client, config, &state, &shutdown);
        RealAgent {
            agent,
            repo,
            shutdown,
            control,
            runtime,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.runtime.await;
        stop(&self.shutdown, self.control).await;
    }
}

/// Tenant acme and an admin token of it.
async fn admin_token(store: &EventStore) -> String {
    let acme = crate::support::tenant();
    tenant::create(store, &acme, "Acme", Utc::now())
        .await
        .expect("tenant");
    let admin = tenant::issue(store, &acme, Role::Admin, "ops", Utc::now())
        .await
        .expect("token");
    admin.text.expose().to_owned()
}

/// Creates the policy `spec` and schedules one task of it on `agent` now.
async fn backup_now(store: &EventStore, agent: AgentId, spec: PolicySpec) -> (PolicyId, TaskId) {
    let policy = create_policy(store, &spec).await;
    let fire_at = Utc::now();
    let task = schedule(store, policy, agent, spec, fire_at).await;
    (policy, task)
}

/// Creates the policy `spec` of tenant acme.
async fn create_policy(store: &EventStore, spec: &PolicySpec) -> PolicyId {
    let policy = PolicyId::for_name(&crate::support::tenant(), &spec.name);
    let created = PolicyEvent::Created {
        spec: Box::new(spec.clone()),
    };
    append(
        store,
        Event::Policy {
            policy,
            event: created,
        },
    )
    .await;
    policy
}

/// Schedules the task of `policy` (whose spec is `spec`) on `agent` for `fire_at`.
async fn schedule(
    store: &EventStore,
    policy: PolicyId,
    agent: AgentId,
    spec: PolicySpec,
    fire_at: DateTime<Utc>,
) -> TaskId {
    let task = TaskId::for_fire(policy, agent, fire_at);
    let scheduled = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    append(
        store,
        Event::Task {
            task,
            event: scheduled,
        },
    )
    .await;
    task
}

/// Waits for `task` to succeed (at most 2 minutes).
async fn succeeded(store: &EventStore, task: TaskId) -> Vec<TaskEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let events = task_events(store, task).await;
        if matches!(events.last(), Some(TaskEvent::Succeeded { .. })) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task} did not succeed: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real backup of 150 MiB, its upload limited so that it runs for several seconds, by
/// the real agent (its runtime in this process) and restic: its progress (restic's status
/// lines, published by the agent on its progress subject) reaches the task's page in
/// Chromium as a rising bar, and `fleet task watch` prints it and ends with the success.
/// Prints the latency from restic's status line (the agent's clock) to the page (the
/// browser's; one machine) and the interval between updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backup_shows_its_progress_in_the_browser_and_in_fleet_task_watch() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let served = serve_api(store);
    let addr = served.addr;
    let admin = admin_token(store).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    fleet_tests::restic::incompressible_data(&data, 150);
    let settings = AgentSettings {
        upload_kib_s: Some(20_000),
        ..AgentSettings::default()
    };
    let real = RealAgent::start(&fleet, dir.path(), settings).await;
    let agent = real.agent;

    let driver = Chromedriver::start();
    let browser = driver.session().await;
    sign_in(&browser, addr, &admin).await;
    poll(
        &browser,
        "the overview",
        "return document.getElementById('live').dataset.state;",
        |state| state == "live",
    )
    .await;

    // The backup, and its page open before it starts.
    let spec = PolicySpec {
        name: "progress".into(),
        ..backup_spec(&real.repo, &data)
    };
    let policy = create_policy(store, &spec).await;
    let fire_at = Utc::now();
    let task = TaskId::for_fire(policy, agent, fire_at);
    browser
        .goto(&format!("http://{addr}/#/tasks/{task}"))
        .await
        .expect("open the task's page");
    let fleet_bin = crate::support::agent::agent_binary().with_file_name("fleet");
    schedule(store, policy, agent, spec, fire_at).await;
    let watch = Command::new(&fleet_bin)
        .args(["task", "watch", &task.to_string()])
        .env("FLEET_API_URL", format!("http://{addr}"))
        .env("FLEET_TOKEN", &admin)
        .env_remove("FLEET_TOKEN_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", fleet_bin.display()));

    // The page's bar while the backup runs: every distinct update it showed.
    let read = "const p = document.querySelector('[data-progress-task]');
                if (!p || !p.dataset.at) return null;
                return {percent: Number(p.dataset.percent), at: p.dataset.at,
                        shownAt: p.dataset.shownAt,
                        words: p.querySelector('.progress-words').textContent};";
    let mut seen: Vec<Value> = Vec::new();
    let mut shot = false;
    let shots = screenshots_dir();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let events = task_events(store, task).await;
        if matches!(events.last(), Some(TaskEvent::Succeeded { .. })) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backup did not end: {events:?}"
        );
        if let Ok(value) = browser.execute(read, vec![]).await
            && !value.is_null()
            && seen.last().is_none_or(|last| last["at"] != value["at"])
        {
            if !shot && value["percent"].as_f64().is_some_and(|p| p > 20.0) {
                screenshot(&browser, &shots, "dashboard-progress.png").await;
                shot = true;
            }
            seen.push(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.len() >= 3,
        "the page showed {} progress updates: {seen:?}",
        seen.len()
    );
    let percents: Vec<f64> = seen.iter().filter_map(|v| v["percent"].as_f64()).collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "the bar went back: {percents:?}"
    );
    assert!(
        percents.iter().any(|p| *p > 0.0 && *p < 100.0),
        "no update mid-way: {percents:?}"
    );
    let words = seen
        .last()
        .and_then(|v| v["words"].as_str())
        .unwrap_or_default();
    assert!(
        words.contains("MiB of") && words.contains("files"),
        "the words under the bar: {words}"
    );
    let ms = |v: &Value, key: &str| {
        v[key]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
    };
    let mut latencies: Vec<i64> = seen
        .iter()
        .filter_map(|v| Some(ms(v, "shownAt")? - ms(v, "at")?))
        .collect();
    latencies.sort_unstable();
    let ats: Vec<i64> = seen.iter().filter_map(|v| ms(v, "at")).collect();
    let gaps: Vec<i64> = ats.windows(2).map(|w| w[1] - w[0]).collect();
    println!(
        "progress: {} updates shown; restic status line to page: median {} ms, max {} ms; \
         between updates: min {} ms, median {} ms",
        seen.len(),
        latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default(),
        latencies.last().copied().unwrap_or_default(),
        gaps.iter().min().copied().unwrap_or_default(),
        {
            let mut g = gaps.clone();
            g.sort_unstable();
            g.get(g.len() / 2).copied().unwrap_or_default()
        },
    );

    // `fleet task watch` printed the progress and ends with the success.
    let out = tokio::task::spawn_blocking(move || watch.wait_with_output())
        .await
        .expect("join")
        .expect("fleet task watch ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let progress_lines = stdout.lines().filter(|l| l.contains("% ")).count();
    assert!(progress_lines >= 3, "{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("[succeeded]")),
        "{stdout}"
    );

    browser.close().await.expect("close the browser");
    drop(driver);
    real.stop().await;
    stop(&served.shutdown, served.services).await;
}

/// An operator restores from the dashboard: the Snapshots page lists the backup's snapshot;
/// its page lists the backed-up directory on the agent (restic ls, on demand); a file is
/// picked in the browser, a target typed, Restore pressed; the page links the restore task,
/// whose page shows it succeed, and the file is back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_browses_a_snapshot_and_restores_a_file_from_the_dashboard() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let served = serve_api(store);
    let addr = served.addr;
    let admin = admin_token(store).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("reports")).expect("data");
    let report: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(data.join("reports/q3.bin"), &report).expect("write");
    std::fs::write(data.join("readme.txt"), "hello\n").expect("write");
    let real = RealAgent::start(&fleet, dir.path(), AgentSettings::default()).await;
    let spec = PolicySpec {
        name: "files".into(),
        ..backup_spec(&real.repo, &data)
    };
    let (_, backup) = backup_now(store, real.agent, spec).await;
    succeeded(store, backup).await;
    std::fs::remove_file(data.join("reports/q3.bin")).expect("delete");

    let driver = Chromedriver::start();
    let browser = driver.session().await;
    sign_in(&browser, addr, &admin).await;
    click(&browser, "#nav a[href=\"#/snapshots\"]").await;
    let id = poll(
        &browser,
        "the snapshot in the Snapshots view",
        "const a = document.querySelector('a[href^=\"#/snapshots/\"]');
         return a && a.getAttribute('href').split('/').pop();",
        |id| id.as_str().is_some_and(|id| id.len() == 64),
    )
    .await;
    let id = id.as_str().expect("id").to_owned();
    let row = poll(
        &browser,
        "the snapshot's row",
        "const r = document.querySelector('tbody tr'); return r && r.textContent;",
        |text| text.as_str().is_some_and(|t| t.contains("files")),
    )
    .await;
    assert!(row.as_str().is_some_and(|t| t.contains(&id[..8])), "{row}");
    let shots = screenshots_dir();
    screenshot(&browser, &shots, "dashboard-snapshots.png").await;

    // The snapshot's page: list its files on the agent, open the data directory.
    click(&browser, &format!("a[href=\"#/snapshots/{id}\"]")).await;
    poll(
        &browser,
        "the snapshot's page",
        "return document.querySelector('#browse') !== null;",
        |found| found == true,
    )
    .await;
    click(&browser, "#browse").await;
    let mut path = String::new();
    for part in data.iter().skip(1) {
        let part = part.to_str().expect("utf-8");
        path = format!("{path}/{part}");
        let button = format!("tr[data-name=\"{part}\"] button.link");
        poll(
            &browser,
            &format!("{path} listed"),
            &format!("return document.querySelector('{button}') !== null;"),
            |found| found == true,
        )
        .await;
        click(&browser, &button).await;
    }
    let names = poll(
        &browser,
        "the data directory's entries",
        "return [...document.querySelectorAll('.entries tbody tr')].map(r => r.dataset.name);",
        |names| names.as_array().is_some_and(|n| n.len() == 2),
    )
    .await;
    assert_eq!(names, serde_json::json!(["readme.txt", "reports"]));
    click(&browser, "tr[data-name=\"reports\"] button.link").await;
    poll(
        &browser,
        "the reports directory",
        "return document.querySelector('tr[data-name=\"q3.bin\"]') !== null;",
        |found| found == true,
    )
    .await;
    let size = poll(
        &browser,
        "the file's size",
        "return document.querySelector('tr[data-name=\"q3.bin\"]').children[2].textContent;",
        |text| text.is_string(),
    )
    .await;
    assert_eq!(size, "97.7 KiB");

    // Pick the file, name a target, restore.
    click(&browser, "tr[data-name=\"q3.bin\"] input[type=checkbox]").await;
    let target = dir.path().join("restored");
    browser
        .find(Locator::Css("#restore-target"))
        .await
        .expect("target input")
        .send_keys(target.to_str().expect("utf-8"))
        .await
        .expect("type the target");
    let include = poll(
        &browser,
        "the picked path in the form",
        "return document.querySelector('#restore-include').value;",
        |text| text.is_string(),
    )
    .await;
    let wanted = data.join("reports/q3.bin");
    assert_eq!(include, wanted.to_str().expect("utf-8"));
    screenshot(&browser, &shots, "dashboard-snapshot.png").await;
    click(&browser, "#restore-submit").await;
    let task = poll(
        &browser,
        "the restore requested",
        "const r = document.querySelector('.restore-result');
         return r && r.dataset.task ? r.dataset.task : (r && r.textContent.startsWith('Asking') ? null : r && r.textContent);",
        |task| task.as_str().is_some_and(|t| t.len() == 36),
    )
    .await;
    let task: TaskId = task.as_str().expect("task").parse().expect("a task id");
    succeeded(store, task).await;
    let back = std::fs::read(target.join(wanted.strip_prefix("/").expect("absolute")))
        .expect("the restored file");
    assert!(back == report, "the restored file differs");
    click(&browser, &format!("a[href=\"#/tasks/{task}\"]")).await;
    let summary: Value = poll(
        &browser,
        "the restore's success on its page",
        "const e = document.querySelector('li[data-type=\"task.succeeded\"] .summary');
         return e && e.textContent;",
        |text| text.is_string(),
    )
    .await;
    assert!(
        summary
            .as_str()
            .is_some_and(|s| s.contains("restored 1 file")),
        "{summary}"
    );

    browser.close().await.expect("close the browser");
    drop(driver);
    real.stop().await;
    stop(&served.shutdown, served.services).await;
}
