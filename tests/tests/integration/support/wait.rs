//! Waiting, with a deadline, for what a scenario expects to happen.

use std::fmt::Debug;
use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use fleet_events::event::TaskEvent;
use fleet_events::ids::TaskId;
use fleet_events::store::EventStore;
use fleet_events::store::consume::{HEADER_PARK_KIND, HEADER_PARK_REASON};
use fleet_events::streams;

use super::{task_events, task_log};

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Runs `check` until it breaks with a value, which it returns; fails the scenario if that
/// takes longer than `within`, showing what the last check continued with.
pub async fn eventually<T, S, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    S: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<T, S>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            ControlFlow::Break(value) => return value,
            ControlFlow::Continue(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last seen: {seen:#?}"
            ),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until one of `task`'s events satisfies `found`, within `within`.
pub async fn task_event_seen(
    store: &EventStore,
    task: TaskId,
    within: Duration,
    found: impl Fn(&TaskEvent) -> bool,
) {
    eventually("the task event waited for", within, || async {
        let events = task_events(store, task).await;
        if events.iter().any(&found) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(events)
        }
    })
    .await;
}

/// Waits until `n` tasks have succeeded, within `within`, and returns the task log.
pub async fn succeeded(store: &EventStore, n: usize, within: Duration) -> Vec<(TaskId, TaskEvent)> {
    let what = format!("{n} tasks to succeed");
    eventually(&what, within, || async {
        let log = task_log(store).await;
        let done = log
            .iter()
            .filter(|(_, e)| matches!(e, TaskEvent::Succeeded { .. }))
            .count();
        if done == n {
            ControlFlow::Break(log)
        } else {
            ControlFlow::Continue((done, log))
        }
    })
    .await
}

/// Waits until `FLEET_PARKED` holds messages 1 to `n`, within `within`, and returns them.
pub async fn parked(store: &EventStore, n: u64, within: Duration) -> Vec<StreamMessage> {
    let stream = &store
        .jetstream()
        .get_stream_no_info(streams::PARKED)
        .await
        .expect("stream");
    let what = format!("{n} parked messages");
    eventually(&what, within, || async move {
        let mut found = Vec::new();
        for seq in 1..=n {
            match stream.get_raw_message(seq).await {
                Ok(m) => found.push(m),
                Err(e) => return ControlFlow::Continue(format!("message {seq}: {e}")),
            }
        }
        ControlFlow::Break(found)
    })
    .await
}

/// The kind and the reason a parked message carries in its headers.
pub fn park_reason(message: &StreamMessage) -> (String, String) {
    let header = |name| {
        message
            .headers
            .get(name)
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    (header(HEADER_PARK_KIND), header(HEADER_PARK_REASON))
}
