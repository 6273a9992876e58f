//! What the benchmarks over a long log share: raw ordered replay (the yardstick), the
//! read models' rebuild, and a bounded wait for either.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use fleet_control::projector::ReadModels;
use fleet_events::store::EventStore;
use fleet_events::streams;
use fleet_events::subject;
use futures::StreamExt;

/// Days the rebuilt read models keep runs and ended tasks: FLEET_BENCH_HISTORY_DAYS,
/// default the projector's.
pub fn history_days() -> u32 {
    std::env::var("FLEET_BENCH_HISTORY_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fleet_control::projector::DEFAULT_HISTORY_DAYS)
}

/// Events per second.
pub fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// An ordered consumer over every event from sequence 1 to `last`, nothing decoded.
pub async fn raw_replay(js: &async_nats::jetstream::Context, last: u64) -> f64 {
    let start = Instant::now();
    let stream = js
        .get_stream_no_info(streams::EVENTS)
        .await
        .expect("stream");
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            filter_subject: subject::all_events(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: 1 },
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    loop {
        let message = messages.next().await.expect("open").expect("message");
        let seq = message.info().expect("info").stream_sequence;
        if std::hint::black_box(seq) >= last {
            break;
        }
    }
    rate(last, start.elapsed())
}

/// Runs `work` on its own task and waits at most `limit` for it. A sled call that never
/// returns blocks its worker thread for good; the timer runs on the other worker.
pub async fn within<T: Send + 'static>(
    limit: Duration,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let task = tokio::spawn(work);
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => Some(joined.expect("the task ran")),
        Err(_) => None,
    }
}

/// Opens every read model in a fresh directory and rebuilds them from sequence 1, as
/// `fleet projections rebuild` does; checks that each reached the end of what it reads,
/// with nothing rejected. `None` if it did not finish within `limit`.
pub async fn rebuild(store: &EventStore, last: u64, limit: Duration) -> Option<f64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, task_store) = (dir.path().to_owned(), store.clone());
    let (models, took) = within(limit, async move {
        let start = Instant::now();
        let mut models = ReadModels::open(&path, history_days()).expect("open the read models");
        models.rebuild(&task_store).await.expect("rebuilt");
        (models, start.elapsed())
    })
    .await?;
    let status = models.status(store).await.expect("status");
    for row in &status {
        assert_eq!(row.lag, 0, "{} caught up: {row:?}", row.projection);
        assert_eq!(
            row.rejected, 0,
            "{} rejected nothing: {row:?}",
            row.projection
        );
    }
    let all = status.iter().map(|row| row.checkpoint).max();
    assert_eq!(
        all,
        Some(last),
        "a model that reads every event reached the end"
    );
    Some(rate(last, took))
}
