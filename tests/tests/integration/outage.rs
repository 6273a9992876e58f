//! nats-server killed for 30 s while the agent runs a backup: the result waits in the
//! agent's outbox and arrives once after the server is back.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use fleet_agent::executor::SecretSource;
use fleet_agent::restic::output::{ResticVersion, parse_snapshots};
use fleet_agent::runtime::{AgentConfig, run};
use fleet_agent::state::AgentState;
use fleet_events::event::TaskEvent;
use fleet_events::ids::AgentId;
use fleet_events::policy::{PolicySpec, RepositoryRef};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_services::serve::Service;
use tokio_util::sync::CancellationToken;

use crate::support::{
    eventually, fleet, register, schedule, services, stop, system, task_events, tenant,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_made_while_nats_is_down_arrives_once_after_reconnect() {
    let mut f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (repo, data, password) = (
        dir.path().join("repo"),
        dir.path().join("data"),
        dir.path().join("password"),
    );
    fleet_tests::restic::incompressible_data(&data, 256);
    let restic_repo = fleet_tests::restic::Repo::init(dir.path(), "outage test");
    let version = ResticVersion::parse(&fleet_tests::restic::version_output()).expect("version");

    let agent = AgentId::generate();
    register(&f.store, agent, AgentSettings::default()).await;
    let spec = PolicySpec {
        repository: RepositoryRef {
            url: repo.display().to_string(),
            secret: "repo".into(),
        },
        include: vec![data.display().to_string()],
        exclude: vec![],
        ..samples::policy_spec()
    };
    let task = schedule(&f.store, agent, spec, Utc::now()).await;
    let shutdown = CancellationToken::new();
    let control = services(
        &f.store,
        &[Service::Dispatcher, Service::Intake, Service::Retry],
        &system(),
        &shutdown,
    );
    let state = AgentState::open(dir.path().join("agent-state")).expect("state");
    let config = AgentConfig {
        agent,
        tenant: tenant(),
        settings: AgentSettings::default(),
        secrets: HashMap::from([("repo".to_owned(), SecretSource::File(password.clone()))]),
        restic: "restic".into(),
        restic_version: version,
        hostname: "outage-host".into(),
        heartbeat_every: Duration::from_millis(500),
        stop_grace: Duration::from_secs(2),
        status_dir: None,
    };
    let agent_run = {
        let (client, state, shutdown) = (f.client.clone(), state.clone(), shutdown.clone());
        tokio::spawn(async move {
            run(client, config, state, shutdown)
                .await
                .expect("agent ran")
        })
    };

    eventually("the backup to start", Duration::from_secs(30), || async {
        let events = task_events(&f.store, task).await;
        match events
            .iter()
            .any(|e| matches!(e, TaskEvent::Started { .. }))
        {
            true => std::ops::ControlFlow::Break(()),
            false => std::ops::ControlFlow::Continue(events),
        }
    })
    .await;
    f.server.kill().expect("kill -9 nats-server");
    // The backup finishes while NATS is down: its result waits in the outbox.
    eventually(
        "the result to wait in the outbox",
        Duration::from_secs(60),
        || async {
            let depth = state.outbox_depth();
            let finished = state.running().map(|r| r.total() == 0).unwrap_or(false);
            match depth >= 1 && finished {
                true => std::ops::ControlFlow::Break(()),
                false => std::ops::ControlFlow::Continue((depth, finished)),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    f.server
        .restart()
        .expect("nats-server back on the same store and port");

    let events = eventually(
        "the result after reconnect",
        Duration::from_secs(60),
        || async {
            let events = task_events(&f.store, task).await;
            match events
                .iter()
                .any(|e| matches!(e, TaskEvent::Succeeded { .. }))
            {
                true => std::ops::ControlFlow::Break(events),
                false => std::ops::ControlFlow::Continue(events),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events_later = task_events(&f.store, task).await;
    let mut tasks = control;
    tasks.push(agent_run);
    stop(&shutdown, tasks).await;

    assert_eq!(events, events_later, "nothing arrived twice");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TaskEvent::Succeeded { .. }))
            .count(),
        1
    );
    assert_eq!(state.outbox_depth(), 0, "the outbox drained");
    let snapshots = parse_snapshots(&restic_repo.snapshots_json()).expect("snapshots");
    assert_eq!(snapshots.len(), 1, "one backup, one snapshot");
}
