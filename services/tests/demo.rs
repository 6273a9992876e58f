//! `fleet up --demo`, the README's run command, end to end: the real `fleet` binary starts
//! its own nats-server, the services and a real `fleet-agent` child, which enrolls; the
//! demo policy's backup runs real restic and lands in the log and in the repository.
//! A second start on the same data directory reuses everything.
//!
//! Needs nats-server and restic installed, and the fleet-agent binary built next to
//! `fleet` (the workspace test run builds it).

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use fleet_events::event::{AgentEvent, Event, PolicyEvent, TaskEvent, TenantEvent};
use fleet_events::store::connect::{NatsAccess, read_key};
use fleet_events::store::{EventStore, Stored};
use futures::TryStreamExt;

mod support;
use support::{agent_binary, free_port};

/// `fleet up --demo` on `data` and `port`, every 60 s (the shortest interval allowed).
fn start(data: &Path, port: u16, api_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["up", "--demo", "--demo-every-secs", "60", "--nats-port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data)
        .arg("--agent-binary")
        .arg(agent_binary())
        .arg("--api-addr")
        .arg(format!("127.0.0.1:{api_port}"))
        .env("RUST_LOG", "info")
        .spawn()
        .expect("start fleet up --demo")
}

/// SIGTERM, then the exit status (SIGKILL after 60 s fails the test).
fn stop(mut child: Child) -> ExitStatus {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    for _ in 0..600 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("fleet up did not stop within 60 s of SIGTERM");
}

/// Connects as the control plane, with the key `fleet up` keeps in `data`.
async fn connect(data: &Path, port: u16) -> EventStore {
    let key_file = data.join("control.nk");
    let mut key = None;
    for _ in 0..300 {
        if let Ok(found) = read_key(&key_file) {
            key = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = key.expect("fleet up writes its control key");
    let client = NatsAccess::default()
        .with_key(&key)
        .options()
        .retry_on_initial_connect()
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .expect("connect");
    EventStore::new(client)
}

/// Whether a connection without credentials can read the log's stream info.
async fn anonymous_reads_the_log(port: u16) -> bool {
    let Ok(client) = async_nats::connect(format!("nats://127.0.0.1:{port}")).await else {
        return false;
    };
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client);
    js.get_stream(fleet_events::streams::EVENTS).await.is_ok()
}

async fn log(store: &EventStore) -> Vec<Stored> {
    match store.replay("fleet.evt.>", 1).await {
        Ok(replay) => replay.try_collect().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Polls the log until `done` holds, for at most `within`.
async fn wait_for(
    store: &EventStore,
    within: Duration,
    what: &str,
    done: impl Fn(&[Stored]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done(&log(store).await) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn count(events: &[Stored], matches: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|s| matches(&s.envelope.event)).count()
}

fn succeeded(events: &[Stored]) -> usize {
    count(events, |e| {
        matches!(
            e,
            Event::Task {
                event: TaskEvent::Succeeded { .. },
                ..
            }
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_up_demo_backs_the_sample_up_and_restarts_cleanly() {
    let data = tempfile::tempdir().expect("tempdir");
    let (port, api_port) = (free_port(), free_port());
    let fleet = start(data.path(), port, api_port);
    let store = connect(data.path(), port).await;
    wait_for(
        &store,
        Duration::from_secs(150),
        "succeeded backup",
        |events| succeeded(events) >= 1,
    )
    .await;

    // The local server runs the rendered authorization: the demo agent works with its own
    // key, and a connection without credentials cannot read the log.
    assert!(
        !anonymous_reads_the_log(port).await,
        "an anonymous client read the event log"
    );
    let auth = std::fs::read_to_string(data.path().join("nats-auth.conf")).expect("auth file");
    assert!(
        auth.contains("# agent "),
        "the demo agent has its block:\n{auth}"
    );

    // The demo's admin token (0600) works for the CLI over the API.
    let demo = data.path().join("demo");
    let admin = demo.join("admin.token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&admin)
        .expect("admin token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner reads the token");
    let listed = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["agent", "ls", "-o", "json", "--api"])
        .arg(format!("http://127.0.0.1:{api_port}"))
        .arg("--token-file")
        .arg(&admin)
        .output()
        .expect("fleet agent ls");
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(
        stdout.contains("demo-agent"),
        "the demo agent is listed: {stdout}"
    );
    assert!(stop(fleet).success(), "fleet up exits 0 on SIGTERM");

    // The snapshot is in the demo repository, tagged by the policy.
    let output = Command::new("restic")
        .args(["snapshots", "--json", "--no-lock", "-r"])
        .arg(demo.join("repo"))
        .arg("--password-file")
        .arg(demo.join("repo-password"))
        .output()
        .expect("restic runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let snapshots = String::from_utf8_lossy(&output.stdout);
    assert!(snapshots.contains("\"demo\""), "tagged demo: {snapshots}");
    assert!(
        snapshots.contains("sample"),
        "of the sample directory: {snapshots}"
    );

    // A second start reuses the tenant, the agent's identity and the policy.
    let status_file = demo.join("agent-state").join("status.json");
    let before = std::fs::metadata(&status_file)
        .and_then(|m| m.modified())
        .expect("status");
    let port = free_port();
    let fleet = start(data.path(), port, free_port());
    let store = connect(data.path(), port).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&status_file)
        .and_then(|m| m.modified())
        .ok()
        <= Some(before)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not run again"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = log(&store).await;
    assert!(stop(fleet).success(), "fleet up exits 0 on SIGTERM");
    let once = |what: &str, n: usize| assert_eq!(n, 1, "{what} exactly once");
    once(
        "tenant created",
        count(&events, |e| {
            matches!(e, Event::Tenant(TenantEvent::Created { .. }))
        }),
    );
    once(
        "agent registered",
        count(&events, |e| {
            matches!(
                e,
                Event::Agent {
                    event: AgentEvent::Registered { .. },
                    ..
                }
            )
        }),
    );
    once(
        "policy created",
        count(&events, |e| {
            matches!(
                e,
                Event::Policy {
                    event: PolicyEvent::Created { .. },
                    ..
                }
            )
        }),
    );
    once(
        "admin token issued",
        count(&events, |e| {
            matches!(
                e,
                Event::Tenant(TenantEvent::TokenIssued {
                    role: fleet_events::event::Role::Admin,
                    ..
                })
            )
        }),
    );
    once(
        "policy assigned",
        count(&events, |e| {
            matches!(
                e,
                Event::Policy {
                    event: PolicyEvent::AssignedToAgent { .. },
                    ..
                }
            )
        }),
    );
}

/// The demo's policy goes through the write side's commands: an operator's change is kept,
/// and a deleted demo policy is created (and assigned) again on the next start.
#[tokio::test]
async fn the_demo_policy_is_created_again_after_an_operator_deleted_it() {
    use fleet_control::command::policy::{self, PolicyCommand, PolicyState};
    use fleet_control::demo;

    let nats = fleet_tests::NatsServer::start().expect("nats-server");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let store = EventStore::new(client);
    store
        .ensure_streams(&fleet_events::streams::StreamOptions::default())
        .await
        .expect("streams");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = demo::DemoConfig {
        dir: dir.path().to_owned(),
        agent_binary: "fleet-agent".into(),
        every_secs: 120,
        nats_ca_file: None,
    };
    let now = chrono::Utc::now();
    let state = |store: EventStore| async move {
        let history = store
            .history(&policy::subject(&demo::tenant(), demo::policy()))
            .await
            .expect("history");
        (PolicyState::fold(&history.events), history.last_seq)
    };

    demo::ensure_policy(&store, &config, now)
        .await
        .expect("first start");
    let (first, version) = state(store.clone()).await;
    assert!(first.live, "created");
    assert_eq!(
        first.agents,
        [demo::agent()].into(),
        "assigned to the demo agent"
    );
    demo::ensure_policy(&store, &config, now)
        .await
        .expect("again");
    assert_eq!(
        state(store.clone()).await.1,
        version,
        "nothing appended a second time"
    );

    // An operator's change (here: another interval) is kept by the next start.
    let mut changed = demo::spec(dir.path(), 600);
    changed.name = first.spec.as_ref().expect("spec").name.clone();
    let update = PolicyCommand::Update(Box::new(changed.clone()));
    policy::run(&store, &demo::tenant(), demo::policy(), update, None, now)
        .await
        .expect("update");
    demo::ensure_policy(&store, &config, now)
        .await
        .expect("after an update");
    assert_eq!(state(store.clone()).await.0.spec, Some(changed));

    // Deleted: the next start creates and assigns it again.
    let delete = PolicyCommand::Delete;
    policy::run(&store, &demo::tenant(), demo::policy(), delete, None, now)
        .await
        .expect("delete");
    assert!(!state(store.clone()).await.0.live, "deleted");
    demo::ensure_policy(&store, &config, now)
        .await
        .expect("after a delete");
    let (again, _) = state(store.clone()).await;
    assert!(again.live, "created again");
    assert_eq!(again.agents, [demo::agent()].into(), "and assigned again");
    assert_eq!(again.spec, Some(demo::spec(dir.path(), 120)));
}
