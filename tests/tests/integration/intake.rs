//! Intake against a real nats-server: agents' reports become task events; reports about
//! another agent's task, illegal transitions and garbage are parked with reasons; a
//! resent report is recorded once; a success that overtook its start waits for it. A
//! snapshot listing changes its repository's inventory once, and only from the agent that
//! ran an attempt on that repository.

use std::time::Duration;

use fleet_control::serve::Service;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{
    Event, RepoEvent, RunDetail, RunSummary, SnapshotListing, TaskEvent, repo_of,
};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::samples;
use fleet_events::store::EventStore;
use fleet_events::streams;
use fleet_events::subject::{AgentSubject, AggregateId, Channel, EventSubject};
use tokio_util::sync::CancellationToken;

use crate::support::{append_at, fleet, park_reason, parked, spawn_service, stop, system, tenant};

/// A task of `agent`, scheduled and dispatched (attempt 1).
async fn dispatched_task(store: &EventStore, agent: AgentId) -> TaskId {
    let policy = PolicyId::generate();
    let at = samples::at(0);
    let task = TaskId::for_fire(policy, agent, at);
    let events = [
        TaskEvent::Scheduled {
            policy,
            agent,
            fire_at: at,
            run_at: at,
            spec: Box::new(samples::policy_spec()),
        },
        TaskEvent::Dispatched { agent, attempt: 1 },
    ];
    for event in events {
        append_at(store, Event::Task { task, event }, at).await;
    }
    task
}

fn report(agent: AgentId, task: TaskId, status: ReportStatus) -> AgentReport {
    AgentReport {
        schema: SCHEMA_VERSION,
        agent,
        tenant: tenant(),
        task,
        attempt: 1,
        at: samples::at(5),
        status,
    }
}

async fn send(js: &async_nats::jetstream::Context, from: AgentId, payload: Vec<u8>) {
    let subject = AgentSubject {
        agent: from,
        channel: Channel::Reports,
    }
    .to_string();
    js.publish(subject, payload.into())
        .await
        .expect("sent")
        .await
        .expect("stored");
}

async fn task_events(store: &EventStore, task: TaskId) -> Vec<TaskEvent> {
    let subject = EventSubject {
        tenant: tenant(),
        aggregate: AggregateId::Task(task),
    };
    let history = store.history(&subject).await.expect("history");
    history
        .events
        .into_iter()
        .filter_map(|s| match s.envelope.event {
            Event::Task { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_checked_and_hostile_ones_parked() {
    let f = fleet().await;
    let (a, b) = (AgentId::generate(), AgentId::generate());
    let task_a = dispatched_task(&f.store, a).await;
    let task_b = dispatched_task(&f.store, b).await;
    let shutdown = CancellationToken::new();
    let intake = spawn_service(&f.store, Service::Intake, system(), &shutdown);
    let js = async_nats::jetstream::new(f.client.clone());

    let started = report(a, task_a, ReportStatus::Started)
        .to_wire()
        .expect("encodes");
    send(&js, a, started.clone()).await;
    send(&js, a, started).await; // resent from the outbox
    send(
        &js,
        a,
        report(b, task_b, ReportStatus::Started)
            .to_wire()
            .expect("encodes"),
    )
    .await; // forged
    let mut unknown_attempt = report(a, task_a, ReportStatus::Started);
    unknown_attempt.attempt = 2;
    send(&js, a, unknown_attempt.to_wire().expect("encodes")).await; // never dispatched
    send(&js, a, vec![0xde, 0xad, 0xbe, 0xef]).await; // garbage
    let success = ReportStatus::Succeeded(RunSummary {
        kind: TaskKind::Check,
        duration_ms: 5,
        detail: RunDetail::Check,
    });
    send(
        &js,
        b,
        report(b, task_b, success).to_wire().expect("encodes"),
    )
    .await; // before its start: waits
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(
        &js,
        b,
        report(b, task_b, ReportStatus::Started)
            .to_wire()
            .expect("encodes"),
    )
    .await;
    crate::support::eventually("B's task to succeed", Duration::from_secs(15), || async {
        let events = task_events(&f.store, task_b).await;
        match events.last() {
            Some(TaskEvent::Succeeded { .. }) => std::ops::ControlFlow::Break(()),
            _ => std::ops::ControlFlow::Continue(events),
        }
    })
    .await;

    let parked = parked(&f.store, 3, Duration::from_secs(15)).await;
    // A little later, still nothing else is parked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = f
        .store
        .jetstream()
        .get_stream_no_info(streams::PARKED)
        .await
        .expect("stream");
    assert!(
        stream.get_raw_message(4).await.is_err(),
        "nothing else is parked"
    );
    stop(&shutdown, [intake]).await;

    assert_eq!(
        task_events(&f.store, task_a).await.last(),
        Some(&TaskEvent::Started { attempt: 1 })
    );
    assert_eq!(
        task_events(&f.store, task_a).await.len(),
        3,
        "the resent report is recorded once"
    );
    let b_events: Vec<&str> = task_events(&f.store, task_b)
        .await
        .iter()
        .map(|e| e.event_type().name())
        .collect();
    assert_eq!(
        b_events,
        [
            "task.scheduled",
            "task.dispatched",
            "task.started",
            "task.succeeded"
        ],
        "nothing forged applied to B's task; its success waited for its start"
    );
    let reasons: Vec<(String, String)> = parked.iter().map(park_reason).collect();
    assert_eq!(reasons[0].0, "rejected");
    assert!(reasons[0].1.contains("came from agent"), "{reasons:?}");
    assert_eq!(reasons[1].0, "rejected");
    assert!(reasons[1].1.contains("not legal"), "{reasons:?}");
    assert_eq!(reasons[2].0, "undecodable");
}

/// The events on `tenant`'s repository `repo`.
async fn repo_events(store: &EventStore, repo: RepoId) -> Vec<RepoEvent> {
    let subject = EventSubject {
        tenant: tenant(),
        aggregate: AggregateId::Repo(repo),
    };
    let history = store.history(&subject).await.expect("history");
    history
        .events
        .into_iter()
        .filter_map(|s| match s.envelope.event {
            Event::Repo { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_changes_the_inventory_once_and_only_from_the_agent_of_the_repository() {
    let f = fleet().await;
    let (a, b) = (AgentId::generate(), AgentId::generate());
    let task_a = dispatched_task(&f.store, a).await;
    let task_b = dispatched_task(&f.store, b).await;
    let repo = repo_of(&samples::policy_spec());
    let elsewhere = RepoId::for_url("/srv/another-tenants-repository");
    let shutdown = CancellationToken::new();
    let intake = spawn_service(&f.store, Service::Intake, system(), &shutdown);
    let js = async_nats::jetstream::new(f.client.clone());
    let listed = |agent, task, repo, listed_at| {
        let listing = SnapshotListing {
            listed_at: samples::at(listed_at),
            ..samples::listing()
        };
        report(agent, task, ReportStatus::SnapshotsListed { repo, listing })
            .to_wire()
            .expect("encodes")
    };

    send(&js, a, listed(a, task_a, repo, 7)).await;
    crate::support::eventually(
        "the inventory to change",
        Duration::from_secs(15),
        || async {
            match repo_events(&f.store, repo).await.as_slice() {
                [_] => std::ops::ControlFlow::Break(()),
                other => std::ops::ControlFlow::Continue(other.len()),
            }
        },
    )
    .await;
    send(&js, a, listed(a, task_a, repo, 7)).await; // resent from the outbox
    send(&js, a, listed(a, task_a, repo, 8)).await; // listed again, nothing new
    send(&js, a, listed(b, task_b, repo, 9)).await; // forged: B's task, from A
    send(&js, a, listed(a, task_b, repo, 9)).await; // B's task, in A's name
    send(&js, a, listed(a, task_a, elsewhere, 9)).await; // another repository
    let parked = parked(&f.store, 3, Duration::from_secs(15)).await;

    let events = repo_events(&f.store, repo).await;
    let [
        RepoEvent::SnapshotsChanged {
            task,
            agent,
            listed_at,
            added,
            removed,
        },
    ] = events.as_slice()
    else {
        panic!("one change expected: {events:?}");
    };
    assert_eq!((*task, *agent, *listed_at), (task_a, a, samples::at(7)));
    assert_eq!(added, &samples::listing().snapshots);
    assert!(removed.is_empty());
    assert!(repo_events(&f.store, elsewhere).await.is_empty());
    let reasons: Vec<(String, String)> = parked.iter().map(park_reason).collect();
    assert!(
        reasons.iter().all(|(kind, _)| kind == "rejected"),
        "{reasons:?}"
    );
    assert!(reasons[0].1.contains("came from agent"), "{reasons:?}");
    assert!(reasons[1].1.contains("belongs to agent"), "{reasons:?}");
    assert!(reasons[2].1.contains("uses repository"), "{reasons:?}");

    // Another writer of the repository (the retry enforcer's circuit) between two
    // listings: intake reads what it has not folded yet and records only the change.
    let opened = RepoEvent::CircuitOpened {
        until: samples::at(100),
        failures: 5,
    };
    let event = Event::Repo {
        repo,
        event: opened,
    };
    append_at(&f.store, event, samples::at(9)).await;
    let later = SnapshotListing {
        listed_at: samples::at(10),
        snapshots: vec![samples::snapshot(3), samples::snapshot(5)],
        ..samples::listing()
    };
    let status = ReportStatus::SnapshotsListed {
        repo,
        listing: later,
    };
    send(
        &js,
        a,
        report(a, task_a, status).to_wire().expect("encodes"),
    )
    .await;
    let events =
        crate::support::eventually("the second change", Duration::from_secs(15), || async {
            match repo_events(&f.store, repo).await {
                events if events.len() == 3 => std::ops::ControlFlow::Break(events),
                events => std::ops::ControlFlow::Continue(events.len()),
            }
        })
        .await;
    stop(&shutdown, [intake]).await;
    let RepoEvent::SnapshotsChanged { added, removed, .. } = &events[2] else {
        panic!("a change expected: {events:?}");
    };
    assert_eq!(added, &vec![samples::snapshot(5)]);
    assert_eq!(removed, &vec![samples::snapshot(1)]);
}
