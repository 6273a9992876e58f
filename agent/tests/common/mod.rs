//! Shared by the agent's end-to-end test and its benchmark: a nats-server with the
//! streams, the control plane in this process, the real `fleet-agent` binary with a
//! written configuration, and the event log as the scenario sees it.

#![allow(dead_code)] // each user (a test binary, the bench) needs a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use chrono::Utc;
use fleet_control::clock::Clock;
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::{AgentId, TaskId, TenantId};
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::streams::StreamOptions;
use fleet_events::subject::{AggregateId, EventSubject};
use fleet_tests::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The scenarios' tenant.
pub fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

/// A nats-server with the fleet's streams, and a store on it.
pub async fn nats() -> (NatsServer, EventStore) {
    let server = NatsServer::start().expect("nats-server");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let store = EventStore::new(client);
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("streams");
    (server, store)
}

/// Appends one event of the scenarios' tenant, now.
pub async fn append(store: &EventStore, event: Event) {
    let envelope = Envelope::new(tenant(), Utc::now(), event);
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

/// Registers `agent` with default settings, as the operator side will.
pub async fn register(store: &EventStore, agent: AgentId, name: &str) {
    let event = AgentEvent::Registered {
        name: name.into(),
        hostname: name.into(),
        settings: AgentSettings::default(),
    };
    append(store, Event::Agent { agent, event }).await;
}

/// The task's events, in order.
pub async fn task_events(store: &EventStore, task: TaskId) -> Vec<TaskEvent> {
    let subject = EventSubject {
        tenant: tenant(),
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

/// Dispatcher, intake and retry enforcer on the system clock, until `shutdown`.
pub fn control_plane(
    store: &EventStore,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<anyhow::Result<()>>> {
    [Service::Dispatcher, Service::Intake, Service::Retry]
        .into_iter()
        .map(|service| {
            let config = ServiceConfig {
                clock: Clock::System,
                circuit: Default::default(),
                dispatcher: Default::default(),
                projections_dir: None,
                history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
                api_addr: None,
                api_throttle: Default::default(),
                api_tls: None,
                access: None,
                notifier: Default::default(),
                snapshots: Default::default(),
            };
            let (store, shutdown) = (store.clone(), shutdown.clone());
            tokio::spawn(async move {
                fleet_control::serve::run(service, store, config, shutdown).await
            })
        })
        .collect()
}

/// Writes `<dir>/agent.yaml` for `agent` on `nats_url`, state in `<dir>/state`, the secret
/// `repo` read from `password`; `extra` is appended as is (more YAML lines).
pub fn write_config(
    dir: &Path,
    nats_url: &str,
    agent: AgentId,
    hostname: &str,
    password: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join("agent.yaml");
    let yaml = format!(
        "natsUrl: {nats_url}\nstateDir: {state}\nagentId: {agent}\ntenant: {tenant}\nhostname: {hostname}\n\
         secrets:\n  repo:\n    passwordFile: {pw}\n{extra}",
        state = dir.join("state").display(),
        tenant = tenant(),
        pw = password.display(),
    );
    std::fs::write(&path, yaml).expect("config");
    path
}

/// Starts the agent binary in its own process group.
pub fn start_agent(config: &Path) -> Child {
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

/// Sends `signal` to the agent's whole process group (the agent and its restic) and reaps it.
pub fn signal_group(child: &mut Child, signal: i32) {
    let pgid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on a process group the scenario created.
    unsafe {
        libc::kill(-pgid, signal);
    }
    child.wait().expect("reaped");
}
