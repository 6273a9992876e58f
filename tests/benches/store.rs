//! Event-store throughput against raw JetStream, in one run against one nats-server.
//!
//! `cargo bench -p fleet-tests --bench store` (events per round: FLEET_BENCH_EVENTS,
//! default 200000; rounds: FLEET_BENCH_ROUNDS, default 5). Prints the median of each
//! figure and the ratios the event-store targets are stated in:
//! store append >= 0.9x a raw publish of the same messages (the events' own subjects in
//! FLEET_EVENTS, msg id and headers included), replay with decode >= 0.5x raw replay. Raw
//! publishes into a stream of their own, header-less, with only a msg id and with an
//! append's headers, show what the server charges for deduplication and headers, which no
//! client code can win back (the earlier target, 0.8x a header-less raw publish, is
//! retired for that reason; its ratio is still printed). The store appends first in every
//! other round, so neither side always meets the larger server state.
//! `NATS_SERVER_BIN` picks another nats-server binary, to compare server versions.

use std::future::IntoFuture;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Config;
use bytes::Bytes;
use fleet_events::codec::encode;
use fleet_events::envelope::{Envelope, HEADER_EVENT_TYPE, HEADER_SCHEMA};
use fleet_events::event::{AgentEvent, Event};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::samples;
use fleet_events::store::{Append, EventStore, Expect, PIPELINE_WINDOW};
use fleet_events::streams::{self, StreamOptions};
use fleet_events::subject;
use fleet_tests::NatsServer;
use futures::StreamExt;
use futures::stream::FuturesOrdered;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn events(n: usize, round: usize) -> Vec<(Envelope, String)> {
    let tenant = TenantId::new("bench").unwrap_or_else(|_| unreachable!());
    let agents: Vec<AgentId> = (0..1000).map(|_| AgentId::generate()).collect();
    (0..n)
        .map(|i| {
            let event = Event::Agent {
                agent: agents[i % agents.len()],
                event: AgentEvent::CameOnline {
                    agent_version: "0.1.0".into(),
                    restic_version: "0.14.0".into(),
                },
            };
            let envelope = Envelope::new(tenant.clone(), samples::at(i as i64), event);
            (envelope, format!("bench:{round}:{i}"))
        })
        .collect()
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Which headers a raw publish carries.
#[derive(Clone, Copy, PartialEq)]
enum Headers {
    /// None: the baseline the targets are stated against.
    None,
    /// Only `Nats-Msg-Id`: what the server's deduplication alone costs.
    MsgId,
    /// The same headers an append sends (msg id, event type, schema).
    Append,
}

/// Where a raw publish goes.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// The events' subjects under a `bench.` prefix, in a plain stream of its own.
    BenchStream,
    /// The events' own subjects in `FLEET_EVENTS`, as the store appends them: the very
    /// same messages, so the store's ratio to this is what its code costs.
    EventsStream,
}

/// Publishes the already encoded events to the same subjects under a `bench.` prefix, into
/// a plain stream: JetStream's cost without the store's. The header variants tell the cost
/// the server charges for headers and deduplication apart from the cost of the store's code.
async fn raw_publish(
    js: &async_nats::jetstream::Context,
    batch: &[(String, Bytes, String)],
    headers: Headers,
    target: Target,
) -> f64 {
    let start = Instant::now();
    let mut in_flight: FuturesOrdered<<PublishAckFuture as IntoFuture>::IntoFuture> =
        FuturesOrdered::new();
    for (subject, payload, msg_id) in batch {
        if in_flight.len() >= PIPELINE_WINDOW
            && let Some(ack) = in_flight.next().await
        {
            ack.expect("raw ack");
        }
        let mut message = PublishMessage::build().payload(payload.clone());
        // Each variant has its own msg ids: the server would answer a repeated one as a
        // duplicate without storing it.
        match headers {
            Headers::None => {}
            Headers::MsgId => message = message.message_id(format!("id:{msg_id}")),
            Headers::Append => {
                let prefix = match target {
                    Target::BenchStream => "append",
                    Target::EventsStream => "same",
                };
                message = message
                    .message_id(format!("{prefix}:{msg_id}"))
                    .header(HEADER_EVENT_TYPE, "agent.came_online")
                    .header(HEADER_SCHEMA, "1");
            }
        }
        let subject = match target {
            Target::BenchStream => format!("bench.{subject}"),
            Target::EventsStream => subject.clone(),
        };
        let ack = js
            .send_publish(subject, message)
            .await
            .expect("raw publish");
        in_flight.push_back(ack.into_future());
    }
    while let Some(ack) = in_flight.next().await {
        ack.expect("raw ack");
    }
    rate(batch.len(), start.elapsed())
}

async fn store_append(store: &EventStore, batch: &[(Envelope, String)]) -> f64 {
    let start = Instant::now();
    let results = store
        .append_many(batch.iter().map(|(envelope, msg_id)| Append {
            envelope,
            msg_id,
            expect: Expect::Any,
        }))
        .await;
    let took = start.elapsed();
    assert!(results.iter().all(Result::is_ok), "every append stored");
    rate(batch.len(), took)
}

async fn raw_replay(js: &async_nats::jetstream::Context, from: u64, n: usize) -> f64 {
    let start = Instant::now();
    let stream = js
        .get_stream_no_info(streams::EVENTS)
        .await
        .expect("stream");
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            filter_subject: subject::all_events(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut seen = 0;
    while seen < n {
        let message = messages.next().await.expect("open").expect("message");
        std::hint::black_box(message.info().expect("info").stream_sequence);
        seen += 1;
    }
    rate(n, start.elapsed())
}

async fn store_replay(store: &EventStore, from: u64, n: usize) -> f64 {
    let start = Instant::now();
    let mut replay = store
        .replay(&subject::all_events(), from)
        .await
        .expect("replay");
    let mut seen = 0;
    while let Some(item) = replay.next().await {
        std::hint::black_box(item.expect("decodes").seq);
        seen += 1;
    }
    assert_eq!(seen, n, "the replay ends at the end of the log");
    rate(n, start.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let n = env_or("FLEET_BENCH_EVENTS", 200_000);
    let rounds = env_or("FLEET_BENCH_ROUNDS", 5).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let server = NatsServer::start().expect("nats-server");
        let client = async_nats::connect(server.url()).await.expect("connect");
        let store = EventStore::new(client.clone());
        store.ensure_streams(&StreamOptions::default()).await.expect("streams");
        let js = store.jetstream().clone();
        js.create_stream(Config {
            name: "BENCH_RAW".into(),
            subjects: vec!["bench.>".into()],
            ..Config::default()
        })
        .await
        .expect("raw stream");

        let size = encode(&events(1, 0)[0].0).expect("encodes").len();
        let mut figures: Vec<[f64; 7]> = Vec::new();
        for round in 0..rounds {
            let batch = events(n, round + 1);
            let raw: Vec<(String, Bytes, String)> = batch
                .iter()
                .map(|(e, id)| (e.subject(), Bytes::from(encode(e).expect("encodes")), id.clone()))
                .collect();
            // The store's append and the raw publish of the same messages run one after the
            // other, the store first in every other round: the later run finds the server's
            // deduplication map and files larger, so neither side is always the later one.
            let (mut same, mut append) = (0.0, 0.0);
            if round % 2 == 1 {
                append = store_append(&store, &batch).await;
                same = raw_publish(&js, &raw, Headers::Append, Target::EventsStream).await;
            }
            let publish = raw_publish(&js, &raw, Headers::None, Target::BenchStream).await;
            let msg_id = raw_publish(&js, &raw, Headers::MsgId, Target::BenchStream).await;
            let headed = raw_publish(&js, &raw, Headers::Append, Target::BenchStream).await;
            if round % 2 == 0 {
                same = raw_publish(&js, &raw, Headers::Append, Target::EventsStream).await;
                append = store_append(&store, &batch).await;
            }
            let info = js.get_stream(streams::EVENTS).await.expect("info");
            // The replays read the last n events of the log: the store's appends or the
            // raw publish of the same messages, the same bytes either way.
            let from = info.cached_info().state.last_sequence + 1 - n as u64;
            let replay = raw_replay(&js, from, n).await;
            let decoded = store_replay(&store, from, n).await;
            figures.push([publish, msg_id, headed, same, append, replay, decoded]);
        }
        // Rates drift between rounds on a shared machine: ratios are taken within a round,
        // then their median.
        let rate = |k: usize| median(figures.iter().map(|f| f[k]).collect());
        let ratio = |k: usize, of: usize| median(figures.iter().map(|f| f[k] / f[of]).collect());
        let spread = |k: usize, of: usize| {
            let ratios = figures.iter().map(|f| f[k] / f[of]);
            let low = ratios.clone().fold(f64::INFINITY, f64::min);
            (low, ratios.fold(0.0, f64::max))
        };
        let version = client.server_info().version;
        println!(
            "event store vs raw JetStream (nats-server {version}): {n} events of {size} bytes, medians of {rounds} rounds"
        );
        println!("  raw async publish             {:>10.0} msg/s", rate(0));
        println!(
            "  raw publish, msg id only      {:>10.0} msg/s   {:.2} of raw: the server's deduplication",
            rate(1),
            ratio(1, 0)
        );
        println!(
            "  raw publish, append headers   {:>10.0} msg/s   {:.2} of raw: deduplication and headers",
            rate(2),
            ratio(2, 0)
        );
        println!(
            "  raw publish, same messages    {:>10.0} msg/s   {:.2} of raw: the events' own subjects and headers, in FLEET_EVENTS",
            rate(3),
            ratio(3, 0)
        );
        println!(
            "  store append_many             {:>10.0} msg/s   {:.2} of header-less raw; {:.2} of raw with the same headers in a bench stream; ratio {:.2} of the same messages (rounds {:.2}-{:.2}; target >= 0.90)",
            rate(4),
            ratio(4, 0),
            ratio(4, 2),
            ratio(4, 3),
            spread(4, 3).0,
            spread(4, 3).1
        );
        println!("  raw ordered replay            {:>10.0} msg/s", rate(5));
        println!(
            "  store replay+decode           {:>10.0} msg/s   ratio {:.2} (target >= 0.50)",
            rate(6),
            ratio(6, 5)
        );
    });
    ExitCode::SUCCESS
}
