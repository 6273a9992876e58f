//! Metrics Prometheus users can rely on, checked by Prometheus's own `promtool`: the real
//! `/metrics` of every process (`fleet up` with `--metrics-addr` and its API, a standby
//! `fleet serve scheduler`, a `fleet-agent run`) after a backup ran and 1000 garbage
//! reports were parked passes `promtool check metrics` with nothing to say; the parking is
//! counted one by one but logged in a bounded number of lines; and the alert rules pass
//! `promtool check rules` and their unit tests.
//!
//! Needs nats-server, restic and promtool (Debian's `prometheus` package; `scripts/deps
//! --test` installs it), and the fleet-agent binary built next to `fleet`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_tests::NatsServer;
use fleet_tests::restic::{Repo, incompressible_data};

mod support;
use support::running::{Guard, eventually, quoted, wait_ready, write_private};
use support::{Fleet, agent_binary, free_port, token_after};

const TENANT: &str = "metrics";
const AGENT_NAME: &str = "metrics-agent";
const POLICY: &str = "metrics-backup";
const SECRET: &str = "metrics-repo";
const GARBAGE: usize = 1000;

/// promtool, which the CI installs: a missing one fails the test with what to install.
fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "promtool is missing: install Debian's `prometheus` package \
             (scripts/deps --test, or apt-get install prometheus)"
        )
    })
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// Runs promtool with `args` in `dir`, `stdin` on its standard input: (success, output).
fn run_promtool(dir: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("promtool ends");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let (ok, out) = run_promtool(&deploy(), &["check", "rules", "alerts.yml"], "");
    assert!(ok, "promtool check rules: {out}");
    let (ok, out) = run_promtool(&deploy(), &["test", "rules", "alerts.test.yml"], "");
    assert!(ok, "promtool test rules: {out}");
    let (ok, out) = run_promtool(&deploy(), &["check", "config", "prometheus.yml"], "");
    assert!(ok, "promtool check config: {out}");
}

/// GET http://`addr``path`: the body of a 200 answer.
fn scrape(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{addr}{path}: {head}");
    body.to_owned()
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn value(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `fleet` with `args`, its stderr (the log) into `log`.
fn fleet(args: &[&str], log: &Path) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start fleet");
    Guard {
        child,
        grace: Duration::from_secs(20),
    }
}

fn start_agent(dir: &Path, nats_url: &str, token: &str, password: &Path, metrics: &str) -> Guard {
    let token_file = dir.join("enrollment.token");
    write_private(&token_file, &format!("{token}\n"));
    let config = dir.join("agent.yaml");
    let yaml = format!(
        "natsUrl: '{nats_url}'\nstateDir: {}\nenrollmentTokenFile: {}\n\
         machineId: metrics-machine-1\nname: {AGENT_NAME}\nheartbeatSecs: 1\n\
         metricsAddr: '{metrics}'\nsecrets:\n  {SECRET}:\n    passwordFile: {}\n",
        quoted(&dir.join("agent-state")),
        quoted(&token_file),
        quoted(password),
    );
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

/// Publishes `n` messages that are no report on `agent`'s report subject, each stored.
fn publish_garbage(nats_url: &str, agent: &str, n: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(nats_url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let subject = format!("fleet.agent.{agent}.reports");
        let mut acks = Vec::with_capacity(n);
        for i in 0..n {
            // Schema 1, then bytes that end in the middle of a report.
            let garbage = vec![1, 0xff, (i % 251) as u8];
            acks.push(
                js.publish(subject.clone(), garbage.into())
                    .await
                    .expect("sent"),
            );
        }
        for ack in acks {
            ack.await.expect("stored");
        }
    });
}

/// promtool's verdict on one scrape: nothing to say.
fn check_metrics(what: &str, text: &str) {
    let (ok, out) = run_promtool(Path::new("."), &["check", "metrics"], text);
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics on {what}:\n{out}\n---\n{text}"
    );
}

#[test]
fn every_process_serves_metrics_promtool_accepts_and_parking_is_counted_not_logged() {
    promtool();
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let (api_port, up_metrics, standby_metrics, agent_metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let up_log = dir.path().join("up.log");
    let _up = fleet(
        &[
            "up",
            "--nats-url",
            &nats.url(),
            "--data-dir",
            dir.path().join("fleet-data").to_str().expect("utf-8"),
            "--api-addr",
            &format!("127.0.0.1:{api_port}"),
            "--metrics-addr",
            &format!("127.0.0.1:{up_metrics}"),
        ],
        &up_log,
    );
    let api = format!("127.0.0.1:{api_port}");
    wait_ready(&api);
    // A second scheduler as `fleet serve` runs it in a deployment: a standby.
    let _standby = fleet(
        &[
            "serve",
            "scheduler",
            "--nats-url",
            &nats.url(),
            "--metrics-addr",
            &format!("127.0.0.1:{standby_metrics}"),
        ],
        &dir.path().join("standby.log"),
    );

    let anonymous = Fleet {
        api: format!("http://{api}"),
        token: None,
    };
    let created = anonymous.ok(&["tenant", "create", TENANT, "--nats-url", &nats.url()]);
    let fleet_cli = anonymous.with_token(&token_after(&created, "admin token"));
    let repo_dir = dir.path().join("restic");
    std::fs::create_dir(&repo_dir).expect("mkdir");
    let password = repo_dir.join("password");
    write_private(&password, "correct horse battery staple\n");
    let agent_addr = format!("127.0.0.1:{agent_metrics}");
    let enroll = token_after(&created, "enrollment token");
    let _agent = start_agent(dir.path(), &nats.url(), &enroll, &password, &agent_addr);
    let agent_id = eventually(
        Duration::from_secs(60),
        Duration::from_millis(250),
        "the agent online",
        |last| {
            let agents = fleet_cli.json(&["agent", "ls"]);
            *last = agents.to_string();
            let agent = agents.as_array()?.first()?.clone();
            (agent["online"] == true).then(|| agent["id"].as_str().map(str::to_owned))?
        },
    );

    // A backup runs to success.
    let repo = Repo::init(&repo_dir, "correct horse battery staple\n");
    let data = dir.path().join("data");
    incompressible_data(&data, 1);
    let policy_file = dir.path().join("policy.yaml");
    let yaml = format!(
        "name: {POLICY}\nkind: backup\nschedule:\n  cron: {{expr: '0 2 29 2 *', timezone: UTC}}\n\
         repository: {{url: {}, secret: {SECRET}}}\ninclude: [{}]\nagents: [{AGENT_NAME}]\n",
        quoted(&repo.path),
        quoted(&data),
    );
    std::fs::write(&policy_file, yaml).expect("policy file");
    fleet_cli.ok(&[
        "policy",
        "apply",
        "-f",
        policy_file.to_str().expect("utf-8"),
    ]);
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the policy assigned",
        |_| {
            let policy = fleet_cli.json(&["policy", "show", POLICY]);
            (policy["agents"].as_array()?.len() == 1).then_some(())
        },
    );
    fleet_cli.ok(&["policy", "run", POLICY]);
    eventually(
        Duration::from_secs(120),
        Duration::from_millis(250),
        "a successful run",
        |last| {
            let runs = fleet_cli.json(&["runs", "--policy", POLICY]);
            *last = runs.to_string();
            runs.as_array()?
                .iter()
                .any(|r| r["outcome"] == "succeeded")
                .then_some(())
        },
    );

    // A burst of garbage on the agent's report subject: every message parked.
    let parking_started = Instant::now();
    publish_garbage(&nats.url(), &agent_id, GARBAGE);
    let up_addr = format!("127.0.0.1:{up_metrics}");
    let parked = [r#"consumer="intake-reports""#, r#"kind="undecodable""#];
    let up_text = eventually(
        Duration::from_secs(120),
        Duration::from_millis(500),
        "1000 parked reports counted and the fleet gauges published",
        |last| {
            let text = scrape(&up_addr, "/metrics");
            *last = format!("{:?}", value(&text, "fleet_parked_messages_total", &parked));
            let counted = value(&text, "fleet_parked_messages_total", &parked)? as usize;
            let success = value(&text, "fleet_policy_last_success_timestamp_seconds", &[]);
            (counted == GARBAGE && success.is_some()).then_some(text)
        },
    );
    let parked_in = parking_started.elapsed();

    // Every process's metrics pass promtool.
    let api_text = scrape(&api, "/metrics");
    let standby_text = scrape(&format!("127.0.0.1:{standby_metrics}"), "/metrics");
    let agent_text = scrape(&agent_addr, "/metrics");
    check_metrics("fleet up", &up_text);
    check_metrics("the API", &api_text);
    check_metrics("fleet serve scheduler (standby)", &standby_text);
    check_metrics("fleet-agent", &agent_text);

    // What they say: histograms, not summaries; counters at zero before they count; the
    // fleet gauges of the live fleet.
    assert!(
        !up_text.contains("quantile="),
        "a summary is left:\n{up_text}"
    );
    assert!(
        !agent_text.contains("quantile="),
        "a summary is left:\n{agent_text}"
    );
    assert!(up_text.contains("# TYPE fleet_dispatch_delay_seconds histogram"));
    assert!(up_text.contains("fleet_dispatch_delay_seconds_bucket{le=\"3600\"} 1"));
    let agent = format!("agent=\"{agent_id}\"");
    assert_eq!(value(&up_text, "fleet_agent_online", &[&agent]), Some(1.0));
    assert_eq!(
        value(
            &up_text,
            "fleet_policy_tasks_in_backoff",
            &[r#"policy="metrics-backup""#]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &up_text,
            "fleet_tasks_failed_total",
            &[r#"class="network""#]
        ),
        Some(0.0),
        "counted at zero"
    );
    assert_eq!(
        value(&standby_text, "fleet_lease_held", &[r#"lease="scheduler""#]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &standby_text,
            "fleet_scheduler_decisions_total",
            &[r#"outcome="scheduled""#]
        ),
        Some(0.0)
    );
    assert!(agent_text.contains("# TYPE fleet_agent_restic_duration_seconds histogram"));
    assert_eq!(
        value(
            &agent_text,
            "fleet_agent_restic_duration_seconds_count",
            &[r#"kind="backup""#, r#"outcome="succeeded""#]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &agent_text,
            "fleet_agent_tasks_total",
            &[r#"kind="prune""#, r#"outcome="failed""#]
        ),
        Some(0.0)
    );

    // The log: the first parking in full, then at most one summary a minute.
    let log = std::fs::read_to_string(&up_log).expect("log");
    let parking_lines: Vec<&str> = log.lines().filter(|l| l.contains("parked")).collect();
    let bound = 1 + parked_in.as_secs() as usize / 60 + 1;
    eprintln!(
        "{GARBAGE} parked in {parked_in:?}, logged as:\n{}",
        parking_lines.join("\n")
    );
    assert!(
        !parking_lines.is_empty() && parking_lines.len() <= bound,
        "{} lines about parking (at most {bound}):\n{}",
        parking_lines.len(),
        parking_lines.join("\n")
    );
    assert!(
        parking_lines[0].contains("undecodable report: "),
        "the reason names the message and the problem: {}",
        parking_lines[0]
    );
}
