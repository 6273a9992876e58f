//! The real `fleet-agent` binary killed with SIGKILL mid-backup (with its restic, as
//! systemd kills a service's whole control group) and started again: the attempt is
//! reported interrupted, retried and finished, and the repository holds exactly one
//! snapshot. Real nats-server, real restic, the control plane in this process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::{PolicySpec, RepositoryRef, RetryBudget};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::streams::StreamOptions;
use fleet_events::subject::{AggregateId, EventSubject};
use fleet_services::clock::Clock;
use fleet_services::serve::{Service, ServiceConfig};
use fleet_tests::NatsServer;
use tokio_util::sync::CancellationToken;

async fn append(store: &EventStore, tenant: &TenantId, event: Event) {
    let envelope = Envelope::new(tenant.clone(), Utc::now(), event);
    let msg_id = envelope.id.to_string();
    store
        .append(Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::Any,
        })
        .await
        .expect("stored");
}

async fn task_events(store: &EventStore, tenant: &TenantId, task: TaskId) -> Vec<TaskEvent> {
    let subject = EventSubject {
        tenant: tenant.clone(),
        aggregate: AggregateId::Task(task),
    };
    store
        .history(&subject)
        .await
        .expect("history")
        .events
        .into_iter()
        .filter_map(|s| match s.envelope.event {
            Event::Task { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

async fn wait_for(
    store: &EventStore,
    tenant: &TenantId,
    task: TaskId,
    what: &str,
    found: impl Fn(&TaskEvent) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let events = task_events(store, tenant, task).await;
        if events.iter().any(&found) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the agent binary in its own process group.
fn start_agent(config: &Path) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(["run", "--config"])
        .arg(config)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fleet-agent starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_backup_reports_the_task_and_makes_no_duplicate_snapshot() {
    let server = NatsServer::start().expect("nats-server");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let store = EventStore::new(client);
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("streams");
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, data, password) = (
        dir.path().join("repo"),
        dir.path().join("data"),
        dir.path().join("password"),
    );
    fleet_tests::restic::incompressible_data(&data, 256);
    let restic_repo = fleet_tests::restic::Repo::init(dir.path(), "crash test");

    let tenant = TenantId::new("acme").expect("tenant");
    let agent = AgentId::generate();
    let registered = AgentEvent::Registered {
        name: "crash".into(),
        hostname: "crash".into(),
        settings: AgentSettings::default(),
    };
    append(
        &store,
        &tenant,
        Event::Agent {
            agent,
            event: registered,
        },
    )
    .await;
    let spec = PolicySpec {
        repository: RepositoryRef {
            url: repo.display().to_string(),
            secret: "repo".into(),
        },
        include: vec![data.display().to_string()],
        exclude: vec![],
        retry: RetryBudget {
            max_retries: 3,
            base_delay_secs: 1,
            max_delay_secs: 1,
        },
        ..samples::policy_spec()
    };
    let policy = PolicyId::generate();
    let fire_at = Utc::now();
    let task = TaskId::for_fire(policy, agent, fire_at);
    let scheduled = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    append(
        &store,
        &tenant,
        Event::Task {
            task,
            event: scheduled,
        },
    )
    .await;

    let shutdown = CancellationToken::new();
    let mut control = Vec::new();
    for service in [Service::Dispatcher, Service::Intake, Service::Retry] {
        let config = ServiceConfig {
            clock: Clock::System,
            circuit: Default::default(),
            dispatcher: Default::default(),
        };
        let (store, shutdown) = (store.clone(), shutdown.clone());
        control.push(tokio::spawn(async move {
            fleet_services::serve::run(service, store, config, shutdown).await
        }));
    }
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "natsUrl: {url}\nstateDir: {state}\nagentId: {agent}\ntenant: acme\nhostname: crash-host\nheartbeatSecs: 1\nsecrets:\n  repo:\n    passwordFile: {pw}\n",
            url = server.url(),
            state = dir.path().join("state").display(),
            pw = password.display()
        ),
    )
    .expect("config");

    let mut first = start_agent(&config);
    wait_for(&store, &tenant, task, "the backup to start", |e| {
        matches!(e, TaskEvent::Started { attempt: 1 })
    })
    .await;
    // SIGKILL to the agent's whole process group: the agent and its restic.
    let pgid = i32::try_from(first.id()).expect("pid");
    // SAFETY: kill(2) on a process group this test created.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    first.wait().expect("reaped");

    let mut second = start_agent(&config);
    wait_for(&store, &tenant, task, "the retry to succeed", |e| {
        matches!(e, TaskEvent::Succeeded { attempt: 2, .. })
    })
    .await;
    let pgid = i32::try_from(second.id()).expect("pid");
    // SAFETY: as above; SIGTERM lets it stop gracefully.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    second.wait().expect("reaped");
    shutdown.cancel();
    for c in control {
        c.await.expect("joined").expect("service ran");
    }

    let names: Vec<&str> = task_events(&store, &tenant, task)
        .await
        .iter()
        .map(|e| e.event_type().name())
        .collect();
    assert_eq!(
        names,
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.lost",
            "task.retry_scheduled",
            "task.retry_due",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.succeeded",
        ]
    );
    let snapshots = fleet_agent::restic::output::parse_snapshots(&restic_repo.snapshots_json())
        .expect("snapshots");
    assert_eq!(
        snapshots.len(),
        1,
        "the killed run left no snapshot, the retry made one"
    );
}
