//! nats-server killed for 30 s while the agent runs a backup: the result waits in the
//! agent's outbox and arrives once after the server is back.

use std::time::Duration;

use chrono::Utc;
use fleet_agent::restic::output::parse_snapshots;
use fleet_agent::state::AgentState;
use fleet_control::serve::Service;
use fleet_events::event::TaskEvent;
use fleet_events::ids::AgentId;
use fleet_events::settings::AgentSettings;
use tokio_util::sync::CancellationToken;

use crate::support::agent::{agent_config, backup_spec, spawn_agent};
use crate::support::{eventually, fleet, register, schedule, services, stop, system, task_events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_made_while_nats_is_down_arrives_once_after_reconnect() {
    let mut f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    fleet_tests::restic::incompressible_data(&data, 256);
    let restic_repo = fleet_tests::restic::Repo::init(dir.path(), "outage test");

    let agent = AgentId::generate();
    register(&f.store, agent, AgentSettings::default()).await;
    let task = schedule(
        &f.store,
        agent,
        backup_spec(&restic_repo, &data),
        Utc::now(),
    )
    .await;
    let shutdown = CancellationToken::new();
    let control = services(
        &f.store,
        &[Service::Dispatcher, Service::Intake, Service::Retry],
        &system(),
        &shutdown,
    );
    let state = AgentState::open(dir.path().join("agent-state")).expect("state");
    let config = agent_config(agent, &restic_repo, AgentSettings::default());
    let agent_run = spawn_agent(&f.client, config, &state, &shutdown);

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
