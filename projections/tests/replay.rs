//! The task read model against a real nats-server: incremental catch-up across a restart,
//! rejected events, idempotent re-runs, a rebuild that stores the same bytes, and live
//! following until shutdown, including across a server restart.

use std::sync::Arc;
use std::time::Duration;

use fleet_events::envelope::Envelope;
use fleet_events::event::{
    AgentEvent, ErrorClass, Event, ExhaustedReason, LostReason, SkipReason, TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::samples::{self, AGENT, POLICY};
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::streams::StreamOptions;
use fleet_events::task_state::TaskStatus;
use fleet_projections::{Checkpointed, Outcome, Projection, Tasks};
use fleet_tests::NatsServer;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

struct Fleet {
    server: NatsServer,
    client: async_nats::Client,
    store: EventStore,
}

async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .expect("connect")
}

async fn fleet() -> Fleet {
    let server = NatsServer::start().expect("start nats-server");
    let client = connect(&server.url()).await;
    let store = EventStore::new(client.clone());
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("ensure streams");
    Fleet {
        server,
        client,
        store,
    }
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn globex() -> TenantId {
    TenantId::new("globex").unwrap()
}

fn task(tenant: &TenantId, secs: i64, task: TaskId, event: TaskEvent) -> Envelope {
    Envelope::new(
        tenant.clone(),
        samples::at(secs),
        Event::Task { task, event },
    )
}

fn scheduled(fire: i64) -> TaskEvent {
    TaskEvent::Scheduled {
        policy: POLICY,
        agent: AGENT,
        fire_at: samples::at(fire),
        run_at: samples::at(fire + 30),
        spec: Box::new(samples::policy_spec()),
    }
}

fn dispatched(attempt: u32) -> TaskEvent {
    TaskEvent::Dispatched {
        agent: AGENT,
        attempt,
    }
}

fn failed(attempt: u32, class: ErrorClass) -> TaskEvent {
    TaskEvent::Failed {
        attempt,
        error: TaskError::new(class, "it broke", Some(1)),
    }
}

fn succeeded(attempt: u32) -> TaskEvent {
    let Event::Task {
        event: TaskEvent::Succeeded { summary, .. },
        ..
    } = samples::event(fleet_events::event::EventType::TaskSucceeded)
    else {
        unreachable!()
    };
    TaskEvent::Succeeded { attempt, summary }
}

fn came_online(n: i64) -> Envelope {
    Envelope::new(
        acme(),
        samples::at(n),
        Event::Agent {
            agent: AgentId::generate(),
            event: AgentEvent::CameOnline {
                agent_version: "0.1.0".into(),
                restic_version: "0.14.0".into(),
            },
        },
    )
}

/// Appends `envelopes` in order; their stream sequences.
async fn append(store: &EventStore, envelopes: &[Envelope]) -> Vec<u64> {
    let ids: Vec<String> = envelopes.iter().map(|e| e.id.to_string()).collect();
    let items = envelopes.iter().zip(&ids).map(|(envelope, msg_id)| Append {
        envelope,
        msg_id,
        expect: Expect::Any,
    });
    store
        .append_many(items)
        .await
        .into_iter()
        .map(|r| r.expect("append").seq)
        .collect()
}

/// Publishes bytes that are not an event onto a task subject; its sequence.
async fn publish_garbage(client: &async_nats::Client) -> u64 {
    let subject = format!("fleet.evt.acme.task.{}", TaskId::generate());
    async_nats::jetstream::new(client.clone())
        .publish(subject, vec![0xff].into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence
}

fn count(model: &Checkpointed<Tasks>, tenant: &TenantId, status: TaskStatus) -> u64 {
    let counts = model.status_counts(tenant).unwrap();
    counts.into_iter().find(|(s, _)| *s == status).unwrap().1
}

struct Ids {
    t1: TaskId,
    t2: TaskId,
    t3: TaskId,
    t4: TaskId,
    t5: TaskId,
    never_started: TaskId,
}

impl Ids {
    fn new() -> Self {
        Self {
            t1: TaskId::generate(),
            t2: TaskId::generate(),
            t3: TaskId::generate(),
            t4: TaskId::generate(),
            t5: TaskId::generate(),
            never_started: TaskId::generate(),
        }
    }
}

/// T1 fails on the network, is retried and succeeds; T2 fails on auth and is exhausted;
/// plus an agent event the projection does not read and another tenant's task.
fn first_half(ids: &Ids) -> Vec<Envelope> {
    let (a, g) = (acme(), globex());
    vec![
        task(&a, 0, ids.t1, scheduled(0)),
        came_online(1),
        task(&a, 2, ids.t2, scheduled(2)),
        task(&a, 30, ids.t1, dispatched(1)),
        task(&a, 31, ids.t1, TaskEvent::Started { attempt: 1 }),
        task(&a, 32, ids.t2, dispatched(1)),
        task(&a, 40, ids.t1, failed(1, ErrorClass::Network)),
        task(&a, 41, ids.t2, TaskEvent::Acknowledged { attempt: 1 }),
        task(
            &a,
            42,
            ids.t1,
            TaskEvent::RetryScheduled {
                attempt: 1,
                due_at: samples::at(100),
                delay_ms: 58_000,
            },
        ),
        task(&g, 43, ids.t5, scheduled(43)),
    ]
}

/// Before the garbage message: the rest of T2, T1's retry, and an illegal Succeeded.
fn second_half_before(ids: &Ids) -> Vec<Envelope> {
    let a = acme();
    vec![
        task(&a, 50, ids.t2, TaskEvent::Started { attempt: 1 }),
        task(&a, 100, ids.t1, TaskEvent::RetryDue),
        task(&a, 101, ids.t2, failed(1, ErrorClass::Auth)),
        task(&a, 102, ids.t1, dispatched(2)),
        task(
            &a,
            103,
            ids.t2,
            TaskEvent::Exhausted {
                attempts: 1,
                reason: ExhaustedReason::NotRetryable(ErrorClass::Auth),
            },
        ),
        task(&a, 104, ids.never_started, succeeded(1)),
    ]
}

/// After the garbage message: T1 succeeds, T3 is dispatched, T4 skipped, T5 lost.
fn second_half_after(ids: &Ids) -> Vec<Envelope> {
    let (a, g) = (acme(), globex());
    vec![
        task(&a, 110, ids.t1, TaskEvent::Started { attempt: 2 }),
        task(&a, 111, ids.t3, scheduled(111)),
        task(&a, 170, ids.t1, succeeded(2)),
        task(
            &a,
            171,
            ids.t4,
            TaskEvent::Skipped {
                policy: POLICY,
                agent: AGENT,
                fire_at: samples::at(171),
                reason: SkipReason::Missed,
            },
        ),
        task(&g, 172, ids.t5, dispatched(1)),
        task(
            &g,
            173,
            ids.t5,
            TaskEvent::Lost {
                attempt: 1,
                reason: LostReason::LeaseExpired,
            },
        ),
        task(
            &g,
            174,
            ids.t5,
            TaskEvent::RetryScheduled {
                attempt: 1,
                due_at: samples::at(400),
                delay_ms: 226_000,
            },
        ),
        task(&a, 175, ids.t3, dispatched(1)),
    ]
}

#[tokio::test]
async fn incremental_catch_up_and_rebuild_store_the_same_bytes() {
    let f = fleet().await;
    let ids = Ids::new();
    let dir = tempfile::tempdir().unwrap();

    let first = append(&f.store, &first_half(&ids)).await;
    {
        let model = Checkpointed::open(dir.path(), Tasks::default()).unwrap();
        let progress = model.catch_up(&f.store).await.unwrap();
        assert_eq!(progress.applied, 9, "the agent event is not read");
        assert_eq!(progress.rejected, 0);
        assert_eq!(progress.checkpoint, *first.last().unwrap());
        let t1 = model.task(ids.t1).unwrap().unwrap();
        assert_eq!(t1.status(), Some(TaskStatus::RetryScheduled));
        assert_eq!(t1.retry_due_at, Some(samples::at(100)));
    }

    let before = append(&f.store, &second_half_before(&ids)).await;
    let garbage = publish_garbage(&f.client).await;
    let after = append(&f.store, &second_half_after(&ids)).await;
    let model = Checkpointed::open(dir.path(), Tasks::default()).unwrap();
    assert_eq!(model.checkpoint().unwrap(), *first.last().unwrap());
    let progress = model.catch_up(&f.store).await.unwrap();
    assert_eq!(progress.applied, 5 + 8);
    assert_eq!(progress.rejected, 2);
    assert_eq!(progress.skipped, 0);
    assert_eq!(progress.checkpoint, *after.last().unwrap());

    let t1 = model.task(ids.t1).unwrap().unwrap();
    assert_eq!(t1.status(), Some(TaskStatus::Succeeded));
    assert_eq!(t1.tenant, acme());
    assert_eq!((t1.policy, t1.agent), (POLICY, AGENT));
    assert_eq!(t1.kind, Some(TaskKind::Backup));
    assert_eq!(t1.attempt, 2);
    assert_eq!(t1.last_error, Some(ErrorClass::Network));
    assert_eq!(t1.fire_at, samples::at(0));
    assert_eq!(t1.run_at, Some(samples::at(30)));
    assert_eq!(t1.retry_due_at, None);
    let t2 = model.task(ids.t2).unwrap().unwrap();
    assert_eq!(t2.status(), Some(TaskStatus::Exhausted));
    assert_eq!(t2.last_error, Some(ErrorClass::Auth));
    let t3 = model.task(ids.t3).unwrap().unwrap();
    assert_eq!((t3.status(), t3.attempt), (Some(TaskStatus::Dispatched), 1));
    let t4 = model.task(ids.t4).unwrap().unwrap();
    assert_eq!(
        (t4.status(), t4.kind, t4.run_at),
        (Some(TaskStatus::Skipped), None, None)
    );
    let t5 = model.task(ids.t5).unwrap().unwrap();
    assert_eq!(t5.status(), Some(TaskStatus::RetryScheduled));
    assert_eq!(t5.tenant, globex());
    assert_eq!(t5.last_error, Some(ErrorClass::Lost));
    assert_eq!(model.task(ids.never_started).unwrap(), None);

    let (a, g) = (acme(), globex());
    for (status, n) in [
        (TaskStatus::Succeeded, 1),
        (TaskStatus::Exhausted, 1),
        (TaskStatus::Dispatched, 1),
        (TaskStatus::Skipped, 1),
        (TaskStatus::Scheduled, 0),
        (TaskStatus::RetryScheduled, 0),
    ] {
        assert_eq!(count(&model, &a, status), n, "acme {status}");
    }
    assert_eq!(count(&model, &g, TaskStatus::RetryScheduled), 1);
    assert_eq!(count(&model, &g, TaskStatus::Scheduled), 0);

    let rejected = model.rejected().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].seq, *before.last().unwrap());
    assert_eq!(rejected[0].kind, "illegal_transition");
    assert!(
        rejected[0]
            .subject
            .ends_with(&ids.never_started.to_string())
    );
    assert_eq!(rejected[1].seq, garbage);
    assert_eq!(rejected[1].kind, "undecodable");
    assert_eq!(model.status().unwrap().rejected, 2);

    // Everything again: nothing changes. (Read up to the last sequence rather than to the
    // end of the replay, which nats-server 2.9.10 does not always report.)
    let incremental = model.dump().unwrap();
    let last = *after.last().unwrap();
    let mut replay = f.store.replay(&Tasks::default().filter(), 1).await.unwrap();
    let mut replayed = 0;
    while let Some(item) = replay.next().await {
        let seq = match &item {
            Ok(stored) => stored.seq,
            Err(_) => garbage,
        };
        assert_eq!(model.apply(item).unwrap(), Outcome::Skipped);
        replayed += 1;
        if seq == last {
            break;
        }
    }
    assert_eq!(replayed, 9 + 5 + 1 + 1 + 8);
    assert_eq!(model.catch_up(&f.store).await.unwrap().applied, 0);
    assert_eq!(model.dump().unwrap(), incremental);

    // From scratch in another directory, and in place.
    let other = tempfile::tempdir().unwrap();
    let rebuilt = fleet_projections::rebuild(other.path(), Tasks::default(), &f.store)
        .await
        .unwrap();
    assert_eq!(rebuilt.dump().unwrap(), incremental);
    let mut model = model;
    let progress = model.rebuild(&f.store).await.unwrap();
    assert_eq!((progress.applied, progress.rejected), (9 + 5 + 8, 2));
    assert_eq!(model.dump().unwrap(), incremental);
}

/// Polls until the model's checkpoint reaches `seq`.
async fn wait_for(model: &Checkpointed<Tasks>, seq: u64) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while model.checkpoint().unwrap() < seq {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "checkpoint {} never reached {seq}",
        model.checkpoint().unwrap()
    );
}

#[tokio::test]
async fn following_applies_new_events_until_shutdown_and_survives_a_server_restart() {
    let mut f = fleet().await;
    let ids = Ids::new();
    let dir = tempfile::tempdir().unwrap();
    let first = append(&f.store, &first_half(&ids)).await;

    let model = Arc::new(Checkpointed::open(dir.path(), Tasks::default()).unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (model, store, shutdown) = (model.clone(), f.store.clone(), shutdown.clone());
        async move { model.run(&store, shutdown).await }
    });
    wait_for(&model, *first.last().unwrap()).await;

    let before = append(&f.store, &second_half_before(&ids)).await;
    let garbage = publish_garbage(&f.client).await;
    wait_for(&model, garbage).await;
    assert_eq!(model.status().unwrap().rejected, 2);
    assert_eq!(
        model.task(ids.t2).unwrap().unwrap().status(),
        Some(TaskStatus::Exhausted)
    );
    assert!(garbage > *before.last().unwrap());

    // The follower keeps its client, which must reconnect; the writer uses a new one.
    f.server.restart().expect("restart nats-server");
    let writer = EventStore::new(connect(&f.server.url()).await);
    let after = append(&writer, &second_half_after(&ids)).await;
    wait_for(&model, *after.last().unwrap()).await;
    assert_eq!(
        model.task(ids.t1).unwrap().unwrap().status(),
        Some(TaskStatus::Succeeded)
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops on shutdown")
        .expect("no panic")
        .expect("no error");
    let followed = model.dump().unwrap();
    drop(model);

    let reopened = Checkpointed::open(dir.path(), Tasks::default()).unwrap();
    assert_eq!(reopened.dump().unwrap(), followed);
    let other = tempfile::tempdir().unwrap();
    let rebuilt = fleet_projections::rebuild(other.path(), Tasks::default(), &f.store)
        .await
        .unwrap();
    assert_eq!(rebuilt.dump().unwrap(), followed);
}
