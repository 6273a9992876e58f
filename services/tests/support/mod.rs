//! What the tests that run the real `fleet` binary share: free ports, the fleet-agent
//! binary next to it, running `fleet` against one API with one token, and a finished run
//! appended to the log as an agent's reports leave it.
//!
//! Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{BackupSummary, Event, RunDetail, RunSummary, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::store::{Append, EventStore, Expect};
use serde_json::Value;

pub mod running;

/// A free TCP port on loopback (the OS's pick, released for the server to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The fleet-agent binary, built next to `fleet` (the workspace test run builds it).
pub fn agent_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_fleet")).with_file_name("fleet-agent");
    assert!(
        path.is_file(),
        "{} is missing: build it (cargo build -p fleet-agent --bin fleet-agent), or run the \
         workspace tests (cargo nextest run --workspace), which build it",
        path.display()
    );
    path
}

/// What one `fleet` run left.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Ran {
    fn from(output: Output) -> Self {
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs the `fleet` binary against one API with one token (none of the caller's own
/// FLEET_* settings leak in).
#[derive(Debug, Clone)]
pub struct Fleet {
    pub api: String,
    pub token: Option<String>,
}

impl Fleet {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleet"));
        command
            .args(args)
            .env("FLEET_API_URL", &self.api)
            .env_remove("FLEET_TOKEN")
            .env_remove("FLEET_TOKEN_FILE")
            .env("RUST_LOG", "warn");
        if let Some(token) = &self.token {
            command.env("FLEET_TOKEN", token);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        self.command(args).output().expect("fleet runs").into()
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Ran {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fleet runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("fleet ends").into()
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args);
        assert_eq!(ran.code, 0, "fleet {args:?}: {ran:?}");
        assert!(ran.stderr.is_empty(), "fleet {args:?}: {ran:?}");
        ran.stdout
    }

    /// Runs a command with `-o json`; its JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
        let out = self.ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("fleet {args:?}: {e}: {out}"))
    }

    /// Runs a command that must fail with `code`; its stderr, which is one `fleet: ` line
    /// (plus problem lines).
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let ran = self.run(args);
        assert_eq!(ran.code, code, "fleet {args:?}: {ran:?}");
        assert!(ran.stderr.starts_with("fleet: "), "fleet {args:?}: {ran:?}");
        assert!(ran.stdout.is_empty(), "fleet {args:?}: {ran:?}");
        ran.stderr
    }

    /// Runs `args` until `done` holds for its stdout (the projector catches up), for at
    /// most 20 s; the last stdout.
    pub fn eventually(&self, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ran = self.run(args);
            if ran.code == 0 && done(&ran.stdout) {
                return ran.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: fleet {args:?} still gives {ran:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn with_token(&self, token: &str) -> Fleet {
        Fleet {
            api: self.api.clone(),
            token: Some(token.to_owned()),
        }
    }
}

impl Fleet {
    /// `fleet tenant create <tenant>` on `nats_url`, tried until the control plane is up
    /// (60 s at most): its output, with the tokens.
    pub fn create_tenant(&self, tenant: &str, nats_url: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ran = self.run(&["tenant", "create", tenant, "--nats-url", nats_url]);
            if ran.code == 0 {
                return ran.stdout;
            }
            assert!(std::time::Instant::now() < deadline, "{ran:?}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// The token printed on the line after the one starting with `heading`.
pub fn token_after(stdout: &str, heading: &str) -> String {
    let mut lines = stdout.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("no {heading:?} in {stdout}"));
    let token = lines.next().expect("token line").trim().to_owned();
    assert!(token.starts_with("rft1."), "{stdout}");
    token
}

/// Appends a finished backup run of `policy` (`spec`) on `agent` to acme's log, as the
/// agent's reports would leave it: fired a second before `started`, restic ran for 61 s
/// and added 1 MiB. An agent the dispatcher does not know never gets the task itself.
pub async fn append_run_at(
    nats_url: &str,
    (policy, agent): (PolicyId, AgentId),
    spec: PolicySpec,
    started: DateTime<Utc>,
) -> TaskId {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let store = EventStore::new(client);
    let tenant = TenantId::new("acme").expect("slug");
    let fire_at = started - chrono::TimeDelta::seconds(1);
    let task = TaskId::for_fire(policy, agent, fire_at);
    let summary = RunSummary {
        kind: TaskKind::Backup,
        duration_ms: 61_000,
        detail: RunDetail::Backup(BackupSummary {
            snapshot_id: Some("5e1c0a3fd00dfeed".into()),
            data_added_bytes: 1 << 20,
            ..BackupSummary::default()
        }),
    };
    let events = [
        (
            fire_at,
            TaskEvent::Scheduled {
                policy,
                agent,
                fire_at,
                run_at: fire_at,
                spec: Box::new(spec),
            },
        ),
        (fire_at, TaskEvent::Dispatched { agent, attempt: 1 }),
        (started, TaskEvent::Started { attempt: 1 }),
        (
            started + chrono::TimeDelta::seconds(61),
            TaskEvent::Succeeded {
                attempt: 1,
                summary,
            },
        ),
    ];
    for (at, event) in events {
        let envelope = Envelope::new(tenant.clone(), at, Event::Task { task, event });
        let msg_id = envelope.id.to_string();
        store
            .append(Append {
                envelope: &envelope,
                msg_id: &msg_id,
                expect: Expect::Any,
            })
            .await
            .expect("appended");
    }
    task
}
