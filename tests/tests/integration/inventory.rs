//! The snapshot inventory end to end: the real agent (its runtime in this process) runs
//! real restic; after each backup (and its retention's forget) it lists the repository,
//! intake turns the listing into `repo.snapshots_changed` and the projector's snapshot
//! model shows exactly what restic lists. A snapshot made by hand with restic appears,
//! marked external, after a refresh task. Nothing is parked. Real nats-server.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::Utc;
use fleet_agent::restic::output::parse_snapshots;
use fleet_agent::state::AgentState;
use fleet_control::projector::query::{Query, ask};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::event::{Event, PolicyEvent, RepoEvent, TaskEvent, TaskRequest, repo_of};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, Retention, TaskKind};
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_events::streams;
use fleet_events::subject::{AggregateId, EventSubject};
use fleet_tests::restic::Repo;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::agent::{agent_config, backup_spec, spawn_agent};
use crate::support::{
    append, eventually, fleet, register, services, stop, system, task_events, tenant,
};

/// Waits for `task` to succeed.
async fn succeeded(store: &EventStore, task: TaskId) {
    eventually("the task to succeed", Duration::from_secs(60), || async {
        let events = task_events(store, task).await;
        match events.last() {
            Some(TaskEvent::Succeeded { .. }) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(events),
        }
    })
    .await;
}

/// Full ids restic lists.
fn restic_ids(repo: &Repo) -> BTreeSet<String> {
    let listed = parse_snapshots(&repo.snapshots_json()).expect("restic snapshots --json");
    listed.iter().map(|s| s.id.clone()).collect()
}

/// The projector's page of the repository, once its ids are `expected`.
async fn inventory_is(
    client: &async_nats::Client,
    spec: &PolicySpec,
    expected: &BTreeSet<String>,
) -> Value {
    let query = Query::RepoSnapshots {
        id: repo_of(spec),
        limit: None,
        cursor: None,
    };
    eventually(
        "the inventory to match restic",
        Duration::from_secs(30),
        || async {
            let page = ask(client, &tenant(), &query).await;
            let ids: BTreeSet<String> = page
                .as_ref()
                .ok()
                .and_then(|p| p["snapshots"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect();
            match page {
                Ok(page) if ids == *expected => ControlFlow::Break(page),
                other => ControlFlow::Continue((ids, other.map_err(|e| e.to_string()))),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_follows_backups_forgets_and_a_refresh_and_marks_snapshots_made_by_hand() {
    let f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("file.txt"), "inventory\n".repeat(100)).expect("data");
    let repo = Repo::init(dir.path(), "inventory password");
    let agent = AgentId::generate();
    register(&f.store, agent, AgentSettings::default()).await;
    let shutdown = CancellationToken::new();
    let config = ServiceConfig {
        projections_dir: Some(dir.path().join("projections")),
        history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
        ..system()
    };
    let control = services(
        &f.store,
        &[
            Service::Dispatcher,
            Service::Intake,
            Service::Retry,
            Service::Projector,
        ],
        &config,
        &shutdown,
    );
    let state = AgentState::open(dir.path().join("state")).expect("agent state");
    let config = agent_config(agent, &repo, AgentSettings::default());
    let runtime = spawn_agent(&f.client, config, &state, &shutdown);

    // A backup policy keeping the last 2, run 3 times.
    let spec = PolicySpec {
        retention: Retention {
            keep_last: Some(2),
            ..Retention::default()
        },
        ..backup_spec(&repo, &data)
    };
    let policy = PolicyId::for_name(&tenant(), &spec.name);
    let created = PolicyEvent::Created {
        spec: Box::new(spec.clone()),
    };
    append(
        &f.store,
        Event::Policy {
            policy,
            event: created,
        },
    )
    .await;
    let start = Utc::now();
    for n in 0..3 {
        let fire_at = start + chrono::TimeDelta::seconds(n);
        let task = TaskId::for_fire(policy, agent, fire_at);
        let event = TaskEvent::Scheduled {
            policy,
            agent,
            fire_at,
            run_at: fire_at,
            spec: Box::new(spec.clone()),
        };
        append(&f.store, Event::Task { task, event }).await;
        succeeded(&f.store, task).await;
    }
    let kept = restic_ids(&repo);
    assert_eq!(kept.len(), 2, "the retention kept 2");
    let page = inventory_is(&f.client, &spec, &kept).await;
    for snapshot in page["snapshots"].as_array().expect("snapshots") {
        assert_eq!(snapshot["external"], false, "{snapshot}");
        assert_eq!(snapshot["policyName"], spec.name, "{snapshot}");
        let host = spec.execution.host.as_deref().unwrap_or("scenario-host");
        assert_eq!(snapshot["host"], host, "{snapshot}");
        assert_eq!(
            snapshot["addedBy"]["agent"],
            agent.to_string(),
            "{snapshot}"
        );
    }
    assert_eq!(page["repository"]["url"], spec.repository.url);
    assert_eq!(page["repository"]["snapshotCount"], 2);

    // A snapshot made by hand, then a refresh.
    let data_arg = data.display().to_string();
    let by_hand = repo.restic(&["backup", &data_arg, "--host", "by-hand", "--tag", "manual"]);
    assert!(by_hand.status.success(), "{by_hand:?}");
    let refresh = TaskId::generate();
    let requested = TaskEvent::Requested {
        policy,
        agent,
        run_at: Utc::now(),
        spec: Box::new(PolicySpec {
            kind: TaskKind::Refresh,
            ..spec.clone()
        }),
        request: TaskRequest::Refresh,
        by: "scenario".into(),
    };
    append(
        &f.store,
        Event::Task {
            task: refresh,
            event: requested,
        },
    )
    .await;
    succeeded(&f.store, refresh).await;
    let all = restic_ids(&repo);
    assert_eq!(all.len(), 3);
    let page = inventory_is(&f.client, &spec, &all).await;
    let external: Vec<&Value> = page["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .filter(|s| s["external"] == true)
        .collect();
    assert_eq!(external.len(), 1, "{page}");
    assert_eq!(external[0]["host"], "by-hand");
    assert_eq!(external[0]["tags"], serde_json::json!(["manual"]));
    assert_eq!(external[0]["addedBy"]["task"], refresh.to_string());

    shutdown.cancel();
    runtime.await.expect("agent stopped");
    stop(&shutdown, control).await;

    // The repository's log: only changes (a listing that found nothing new wrote nothing),
    // every one from this agent; nothing was parked.
    let subject = EventSubject {
        tenant: tenant(),
        aggregate: AggregateId::Repo(repo_of(&spec)),
    };
    let history = f.store.history(&subject).await.expect("history");
    for stored in &history.events {
        let Event::Repo {
            event:
                RepoEvent::SnapshotsChanged {
                    agent: by,
                    added,
                    removed,
                    ..
                },
            ..
        } = &stored.envelope.event
        else {
            panic!("not a snapshot change: {stored:?}");
        };
        assert_eq!(*by, agent);
        assert!(!added.is_empty() || !removed.is_empty(), "{stored:?}");
    }
    let parked = f
        .store
        .jetstream()
        .get_stream_no_info(streams::PARKED)
        .await
        .expect("stream");
    assert!(
        parked.get_raw_message(1).await.is_err(),
        "nothing is parked"
    );
}
