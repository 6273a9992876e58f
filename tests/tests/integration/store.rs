//! The event store against a real nats-server: optimistic concurrency, deduplication,
//! history and replay, dead-lettering, and durability across kill -9.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{Config, RetentionPolicy};
use fleet_events::envelope::Envelope;
use fleet_events::ids::AgentId;
use fleet_events::store::consume::{self, Durable, Outcome};
use fleet_events::store::{
    Append, AppendError, Appended, EventStore, Expect, HISTORY_BY_GET, ReadError, StoreError,
    Stored,
};
use fleet_events::streams::{self, StreamOptions};
use fleet_events::subject::{self, EventSubject};
use fleet_tests::NatsServer;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::support::{
    agent_event, connect, delete_event_consumers, fleet, park_reason, parked, tenant,
};

fn append(envelope: &Envelope, msg_id: &str, expect: Expect) -> Append<'static> {
    // Leaked so the test can hand out 'static borrows; a test process is short-lived.
    let envelope: &'static Envelope = Box::leak(Box::new(envelope.clone()));
    let msg_id: &'static str = Box::leak(msg_id.to_owned().into_boxed_str());
    Append {
        envelope,
        msg_id,
        expect,
    }
}

/// Appends `events` in order, the n-th with message id `{prefix}{n}`.
async fn append_numbered(
    store: &EventStore,
    events: &[Envelope],
    prefix: &str,
) -> Vec<Result<Appended, AppendError>> {
    store
        .append_many(
            events
                .iter()
                .enumerate()
                .map(|(n, e)| append(e, &format!("{prefix}{n}"), Expect::Any)),
        )
        .await
}

fn subject_of(agent: AgentId) -> EventSubject {
    agent_event(agent, 0).event.subject(&tenant())
}

#[tokio::test]
async fn expected_sequences_detect_lost_races() {
    let f = fleet().await;
    let agent = AgentId::generate();
    let first = f
        .store
        .append(append(&agent_event(agent, 1), "a1", Expect::LastSeq(0)))
        .await
        .expect("empty subject accepts expect 0");
    let second = f
        .store
        .append(append(
            &agent_event(agent, 2),
            "a2",
            Expect::LastSeq(first.seq),
        ))
        .await
        .expect("right sequence accepted");
    assert!(second.seq > first.seq);

    let stale = f
        .store
        .append(append(
            &agent_event(agent, 3),
            "a3",
            Expect::LastSeq(first.seq),
        ))
        .await;
    assert!(matches!(stale, Err(AppendError::Conflict { expected, .. }) if expected == first.seq));
    let not_empty = f
        .store
        .append(append(&agent_event(agent, 4), "a4", Expect::LastSeq(0)))
        .await;
    assert!(matches!(not_empty, Err(AppendError::Conflict { .. })));

    let history = f.store.history(&subject_of(agent)).await.expect("history");
    assert_eq!(history.last_seq, second.seq);
    assert_eq!(history.events.len(), 2, "the losers were not stored");
}

#[tokio::test]
async fn repeated_msg_ids_are_stored_once() {
    let f = fleet().await;
    let agent = AgentId::generate();
    let event = agent_event(agent, 1);
    let first = f
        .store
        .append(append(&event, "same-id", Expect::Any))
        .await
        .expect("stored");
    let again = f
        .store
        .append(append(&event, "same-id", Expect::Any))
        .await
        .expect("dedup is ok");
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    // A retry of an expected-sequence append whose ack was lost is a duplicate too, on
    // every server version (2.9 checks the msg id first, later versions the sequence).
    let retry = f
        .store
        .append(append(&event, "same-id", Expect::LastSeq(0)))
        .await
        .expect("a retry is not a conflict");
    assert!(retry.duplicate);
    assert_eq!(retry.seq, first.seq);
    // Also after another writer appended to the aggregate.
    let later = agent_event(agent, 2);
    let other = f
        .store
        .append(append(&later, "other-id", Expect::LastSeq(first.seq)))
        .await
        .expect("stored");
    let retry = f
        .store
        .append(append(&event, "same-id", Expect::LastSeq(0)))
        .await
        .expect("a late retry is not a conflict");
    assert_eq!((retry.seq, retry.duplicate), (first.seq, true));
    // A new msg id with the same stale expectation is a lost race.
    let stale = f
        .store
        .append(append(&later, "third-id", Expect::LastSeq(first.seq)))
        .await;
    assert!(
        matches!(&stale, Err(AppendError::Conflict { subject, expected })
            if *subject == subject_of(agent).to_string() && *expected == first.seq),
        "{stale:?}"
    );
    let history = f.store.history(&subject_of(agent)).await.expect("history");
    assert_eq!(history.events.len(), 2);
    assert_eq!(history.last_seq, other.seq);
}

#[tokio::test]
async fn history_and_replay_return_exactly_what_was_appended() {
    let f = fleet().await;
    let (a, b) = (AgentId::generate(), AgentId::generate());
    // `a` has more events than a history reads one by one: the rest comes by replay.
    let total = 2 * (HISTORY_BY_GET + 10);
    let events: Vec<Envelope> = (0..total)
        .map(|n| agent_event(if n % 2 == 0 { a } else { b }, n))
        .collect();
    let results = append_numbered(&f.store, &events, "m").await;
    let seqs: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("appended").seq)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order: {seqs:?}"
    );

    let history = f.store.history(&subject_of(a)).await.expect("history");
    let want: Vec<&Envelope> = events.iter().step_by(2).collect();
    let got: Vec<&Envelope> = history.events.iter().map(|s| &s.envelope).collect();
    assert_eq!(got, want);
    assert_eq!(history.last_seq, seqs[total - 2]);
    let history_seqs: Vec<u64> = history.events.iter().map(|s| s.seq).collect();
    let want_seqs: Vec<u64> = seqs.iter().copied().step_by(2).collect();
    assert_eq!(history_seqs, want_seqs);

    let c = AgentId::generate();
    let short = [agent_event(c, 1), agent_event(c, 2)];
    append_numbered(&f.store, &short, "c").await;
    let history = f.store.history(&subject_of(c)).await.expect("history");
    let got: Vec<&Envelope> = history.events.iter().map(|s| &s.envelope).collect();
    assert_eq!(got, short.iter().collect::<Vec<_>>());
    // A reader that folded c up to its first event catches up with the second alone, and
    // one that is current reads nothing.
    let since = f
        .store
        .history_since(&subject_of(c), history.events[0].seq)
        .await
        .expect("history since");
    assert_eq!(since.events.len(), 1);
    assert_eq!(since.events[0].envelope, short[1]);
    assert_eq!(since.last_seq, history.last_seq);
    let current = f
        .store
        .history_since(&subject_of(c), history.last_seq)
        .await
        .expect("history since the end");
    assert!(current.events.is_empty());
    assert_eq!(current.last_seq, history.last_seq);

    let from = seqs[10];
    let replayed: Vec<Stored> = f
        .store
        .replay(&subject::all_events(), from)
        .await
        .expect("replay")
        .try_collect()
        .await
        .expect("all decode");
    assert_eq!(replayed.len(), total - 10 + short.len());
    assert_eq!(replayed[0].seq, from);
    let got: Vec<&Envelope> = replayed.iter().map(|s| &s.envelope).collect();
    let want: Vec<&Envelope> = events[10..].iter().chain(&short).collect();
    assert_eq!(got, want);

    let nothing: Vec<Stored> = f
        .store
        .replay(
            &subject::all_events(),
            seqs[total - 1] + short.len() as u64 + 1,
        )
        .await
        .expect("replay past the end")
        .try_collect()
        .await
        .expect("empty");
    assert!(nothing.is_empty());
    let unknown = f
        .store
        .history(&subject_of(AgentId::generate()))
        .await
        .expect("history");
    assert_eq!(unknown.last_seq, 0);
    assert!(unknown.events.is_empty());
}

#[tokio::test]
async fn garbage_is_parked_with_its_reason_and_replay_goes_on() {
    let f = fleet().await;
    let agent = AgentId::generate();
    let good = agent_event(agent, 1);
    f.store
        .append(append(&good, "good-1", Expect::Any))
        .await
        .expect("stored");
    let js = async_nats::jetstream::new(f.client.clone());
    let garbage_subject = subject_of(agent).to_string();
    js.publish(garbage_subject.clone(), vec![0xff, 0x00, 0x13].into())
        .await
        .expect("sent")
        .await
        .expect("stored");
    let rejected = agent_event(agent, 2);
    f.store
        .append(append(&rejected, "bad-2", Expect::Any))
        .await
        .expect("stored");
    let last = agent_event(agent, 3);
    f.store
        .append(append(&last, "good-3", Expect::Any))
        .await
        .expect("stored");

    // A replay reports the garbage and still delivers what follows.
    let items: Vec<Result<Stored, ReadError>> = f
        .store
        .replay(&subject::all_events(), 1)
        .await
        .expect("replay")
        .collect()
        .await;
    assert_eq!(items.len(), 4);
    assert!(matches!(
        items[1],
        Err(ReadError::Undecodable { seq: 2, .. })
    ));
    // A history refuses to decide on a partial aggregate.
    assert!(f.store.history(&subject_of(agent)).await.is_err());

    let handled = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let durable = Durable::new(streams::EVENTS, "test-projection", &subject::all_events());
    let runner = {
        let (store, handled, shutdown) = (f.store.clone(), handled.clone(), shutdown.clone());
        let rejected_id = rejected.id;
        tokio::spawn(async move {
            consume::run(
                &store,
                &durable,
                shutdown,
                |d: consume::Delivery<Envelope>| {
                    let handled = handled.clone();
                    async move {
                        if d.value.id == rejected_id {
                            return Outcome::Park("agent name is not allowed".into());
                        }
                        handled.lock().await.push(d.value);
                        Outcome::Done
                    }
                },
            )
            .await
        })
    };
    let parked = parked(&f.store, 2, Duration::from_secs(10)).await;
    shutdown.cancel();
    runner.await.expect("joined").expect("ran");

    assert_eq!(*handled.lock().await, vec![good, last]);
    let kinds: Vec<(String, String)> = parked.iter().map(park_reason).collect();
    assert_eq!(kinds[0].0, "undecodable");
    assert!(
        kinds[0].1.starts_with("undecodable event: ") && kinds[0].1.contains("schema version 127"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds[1],
        (
            "rejected".into(),
            "rejected event: agent name is not allowed".into()
        )
    );
    assert_eq!(parked[0].payload.as_ref(), &[0xff, 0x00, 0x13]);
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let mut f = fleet().await;
    let agent = AgentId::generate();
    let events: Vec<Envelope> = (0..500).map(|n| agent_event(agent, n)).collect();
    let results = append_numbered(&f.store, &events, "k").await;
    assert!(results.iter().all(Result::is_ok));

    f.server.kill().expect("kill -9");
    f.server.restart().expect("restart on the same store");
    let client = connect(&f.server.url()).await;
    let store = EventStore::new(client);
    let history = store
        .history(&subject_of(agent))
        .await
        .expect("history after restart");
    let got: Vec<Envelope> = history.events.into_iter().map(|s| s.envelope).collect();
    assert_eq!(got, events);
}

#[tokio::test]
async fn ensure_streams_is_idempotent_and_refuses_conflicts() {
    let f = fleet().await;
    f.store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("second ensure is fine");

    let server = NatsServer::start().expect("start");
    let client = connect(&server.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(Config {
        name: streams::EVENTS.into(),
        subjects: vec![subject::all_events()],
        retention: RetentionPolicy::Interest,
        ..Config::default()
    })
    .await
    .expect("foreign stream");
    let err = EventStore::new(client)
        .ensure_streams(&StreamOptions::default())
        .await
        .expect_err("conflict");
    match err {
        StoreError::StreamConflict {
            stream,
            differences,
        } => {
            assert_eq!(stream, streams::EVENTS);
            assert!(
                differences.iter().any(|d| d.starts_with("retention")),
                "{differences:?}"
            );
            assert!(
                differences.iter().any(|d| d.starts_with("deny_delete")),
                "{differences:?}"
            );
        }
        other => panic!("expected a conflict, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_whose_consumer_vanished_ends_with_an_error_instead_of_waiting_forever() {
    // The consumer is deleted behind the client's back, as a node that dies with it would;
    // the store is told to call silence a stall after 300 ms (15 s by default).
    let f = fleet().await;
    let store = f.store.clone().with_stall_after(Duration::from_millis(300));
    let agent = AgentId::generate();
    let events = [agent_event(agent, 1), agent_event(agent, 2)];
    append_numbered(&store, &events, "w").await;
    let mut follow = store
        .follow(&subject::all_events(), 1)
        .await
        .expect("follow");
    for _ in 0..2 {
        follow.next().await.expect("an event").expect("decodes");
    }
    // Idle with nothing left to deliver is not a stall.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), follow.next())
            .await
            .is_err(),
        "an idle follow keeps waiting"
    );

    let names = delete_event_consumers(&f.store).await;
    assert_eq!(names.len(), 1, "the follow's consumer: {names:?}");
    append_numbered(&store, &[agent_event(agent, 3)], "x").await;

    match tokio::time::timeout(Duration::from_secs(5), follow.next()).await {
        Ok(Some(Err(ReadError::Nats { message, .. }))) => {
            assert!(message.contains("consumer is gone"), "{message}")
        }
        other => panic!("expected the stall to be reported, got {other:?}"),
    }
    assert!(follow.next().await.is_none(), "and the follow ends there");
}

/// A deployment of an earlier version kept heartbeats in `FLEET_INTAKE`, read by a durable
/// consumer: `ensure_streams` deletes that consumer, narrows the stream to reports (keeping
/// the reports waiting there) and gives heartbeats their own stream.
#[tokio::test]
async fn ensure_streams_moves_heartbeats_out_of_an_earlier_intake_stream() {
    use async_nats::jetstream::consumer::pull;
    use fleet_events::subject::{AgentSubject, Channel};

    let server = NatsServer::start().expect("start");
    let client = connect(&server.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    let old = Config {
        subjects: streams::intake_before_heartbeats(),
        description: Some("restic-fleet reports and heartbeats from agents".into()),
        ..streams::intake(&StreamOptions::default())
    };
    let intake = js.create_stream(old).await.expect("old intake");
    let beats = subject::all_agents(Channel::Heartbeat);
    intake
        .create_consumer(pull::Config {
            durable_name: Some("dispatcher-heartbeats".into()),
            filter_subject: beats.clone(),
            ..Default::default()
        })
        .await
        .expect("old heartbeat consumer");
    let agent = AgentId::generate();
    let reports = AgentSubject {
        agent,
        channel: Channel::Reports,
    }
    .to_string();
    js.publish(reports, "a waiting report".into())
        .await
        .expect("published")
        .await
        .expect("stored");

    let store = EventStore::new(client);
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("moved");
    let mut intake = js.get_stream(streams::INTAKE).await.expect("intake");
    let info = intake.info().await.expect("info").clone();
    assert_eq!(
        info.config.subjects,
        vec![subject::all_agents(Channel::Reports)]
    );
    assert_eq!(info.state.messages, 1, "the waiting report is kept");
    let consumers: Vec<_> = intake.consumer_names().try_collect().await.expect("names");
    assert!(consumers.is_empty(), "{consumers:?}");
    let mut heartbeats = js
        .get_stream(streams::HEARTBEATS)
        .await
        .expect("heartbeats");
    let config = heartbeats.info().await.expect("info").config.clone();
    assert_eq!(config.subjects, vec![beats]);
    assert_eq!(config.max_messages_per_subject, 1);
    // Running it again changes nothing.
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("second ensure is fine");
}

/// One durable consumer per agent: the dispatch stream takes more than the thousand
/// consumers nats-server 2.15 allows a stream that sets no limit; a stream an earlier
/// version created without a limit has it raised by `ensure_streams` (where the server
/// holds it unlimited, 2.9, it is left so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatch_stream_takes_a_consumer_for_each_of_thousands_of_agents() {
    let server = NatsServer::start().expect("start nats-server");
    let client = connect(&server.url()).await;
    let store = EventStore::new(client.clone());
    // As a version before the limit created it.
    let mut earlier = streams::dispatch(&StreamOptions::default());
    earlier.max_consumers = -1;
    store
        .jetstream()
        .create_stream(earlier)
        .await
        .expect("the earlier stream");
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("streams");
    let mut stream = store
        .jetstream()
        .get_stream(streams::DISPATCH)
        .await
        .expect("stream");
    let limit = stream.info().await.expect("info").config.max_consumers;
    assert!(
        limit <= 0 || limit >= streams::MAX_AGENT_CONSUMERS,
        "unlimited, or raised to the agents' limit: {limit}"
    );
    let agents: Vec<AgentId> = (0..1100).map(|_| AgentId::generate()).collect();
    futures::stream::iter(&agents)
        .for_each_concurrent(32, |agent| {
            let stream = stream.clone();
            async move {
                stream
                    .get_or_create_consumer(
                        &fleet_events::access::agent_consumer(*agent),
                        fleet_events::access::agent_consumer_config(*agent),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("the consumer of {agent}: {e}"));
            }
        })
        .await;
    let count = stream.info().await.expect("info").state.consumer_count;
    assert_eq!(count, 1100);
}
