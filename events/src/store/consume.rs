//! Durable consumption with explicit acks. A message that cannot be decoded, that the
//! handler rejects, or that keeps failing is parked on `fleet.parked.<consumer>` with its
//! reason and counted in `fleet_parked_messages_total`, then acked: never redelivered
//! forever, never silently dropped.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::EventStore;
pub use crate::codec::Wire;
use crate::ids::IdError;
use crate::subject;

/// Header on a parked message: why it was parked, in words, naming what the message is
/// ("undecodable report: it ends before the message does (truncated)").
pub const HEADER_PARK_REASON: &str = "Fleet-Park-Reason";
/// Header on a parked message: `undecodable`, `rejected` or `retries_exhausted`.
pub const HEADER_PARK_KIND: &str = "Fleet-Park-Kind";
/// Header on a parked message: the subject it arrived on.
pub const HEADER_ORIGIN_SUBJECT: &str = "Fleet-Origin-Subject";
/// Header on a parked message: its stream and sequence, `STREAM:SEQ`.
pub const HEADER_ORIGIN: &str = "Fleet-Origin";

/// A durable consumer to run.
#[derive(Debug, Clone)]
pub struct Durable {
    pub stream: String,
    /// The durable name; also names the parked subject, so it must be a slug.
    pub name: String,
    /// One filter subject (several filters need nats-server 2.10).
    pub filter: String,
    /// Where a new consumer starts.
    pub deliver: DeliverPolicy,
    /// Redelivered if not acked within this.
    pub ack_wait: Duration,
    /// Deliveries of one message after which a handler asking to retry parks it instead.
    pub max_attempts: u64,
}

impl Durable {
    /// A consumer of `filter` on `stream` from the beginning, acks within 30 s, at most 10
    /// attempts per message.
    pub fn new(stream: &str, name: &str, filter: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            name: name.to_owned(),
            filter: filter.to_owned(),
            deliver: DeliverPolicy::All,
            ack_wait: Duration::from_secs(30),
            max_attempts: 10,
        }
    }
}

/// One decoded message.
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    pub seq: u64,
    pub subject: String,
    /// 1 on first delivery, more on redeliveries.
    pub attempt: u64,
    pub value: T,
}

/// What the handler did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: ack it.
    Done,
    /// Could not handle it now (a dependency is down): deliver it again after the delay.
    Retry(Duration),
    /// It can never be handled: park it with this reason.
    Park(String),
}

/// Why a consumer could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("consumer name: {0}")]
    BadName(#[from] IdError),
}

/// Runs `handler` on every message of `durable` until `shutdown` is cancelled. The
/// handler's future is always completed before shutdown is honoured, so stopping happens
/// only between messages. Connection trouble is retried, not returned.
pub async fn run<T, F, Fut>(
    store: &EventStore,
    durable: &Durable,
    shutdown: CancellationToken,
    mut handler: F,
) -> Result<(), ConsumeError>
where
    T: Wire,
    F: FnMut(Delivery<T>) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let parked_subject = subject::parked(&durable.name)?;
    while !shutdown.is_cancelled() {
        let mut messages = match open(store, durable).await {
            Ok(messages) => messages,
            Err(e) => {
                crate::repeat::warn_repeated(
                    &format!("cannot open consumer {}", durable.name),
                    "retry",
                    || {
                        tracing::warn!(consumer = %durable.name, error = %e, "cannot open consumer; retrying");
                    },
                );
                pause(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    handle(store, durable, &parked_subject, message, &mut handler).await;
                }
                Some(Err(e)) => {
                    let key = format!("stream errors on consumer {}", durable.name);
                    crate::repeat::warn_repeated(&key, "error", || {
                        tracing::warn!(consumer = %durable.name, error = %e, "consumer stream error");
                    });
                }
                None => break,
            }
        }
        pause(&shutdown, Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn pause(shutdown: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

async fn open(store: &EventStore, durable: &Durable) -> Result<pull::Stream, String> {
    let stream = store
        .js
        .get_stream_no_info(&durable.stream)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .get_or_create_consumer(
            &durable.name,
            pull::Config {
                durable_name: Some(durable.name.clone()),
                filter_subject: durable.filter.clone(),
                deliver_policy: durable.deliver,
                ack_policy: AckPolicy::Explicit,
                ack_wait: durable.ack_wait,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

async fn handle<T, F, Fut>(
    store: &EventStore,
    durable: &Durable,
    parked_subject: &str,
    message: Message,
    handler: &mut F,
) where
    T: Wire,
    F: FnMut(Delivery<T>) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let (seq, attempt) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            u64::try_from(info.delivered).unwrap_or(1),
        ),
        Err(_) => (0, 1),
    };
    let subject = message.subject.to_string();
    let outcome = match T::from_wire(&message.payload) {
        Err(e) => Err(("undecodable", e.to_string())),
        Ok(value) => {
            let delivery = Delivery {
                seq,
                subject: subject.clone(),
                attempt,
                value,
            };
            match handler(delivery).await {
                Outcome::Done => Ok(None),
                Outcome::Retry(_) if attempt >= durable.max_attempts => Err((
                    "retries_exhausted",
                    format!("still failing after {attempt} deliveries"),
                )),
                Outcome::Retry(delay) => Ok(Some(delay)),
                Outcome::Park(reason) => Err(("rejected", reason)),
            }
        }
    };
    let acked = match outcome {
        Ok(None) => message.ack().await,
        Ok(Some(delay)) => message.ack_with(AckKind::Nak(Some(delay))).await,
        Err((kind, reason)) => {
            let parking = Parking {
                consumer: &durable.name,
                what: T::WHAT,
                parked_subject,
                stream: &durable.stream,
                seq,
                subject: &subject,
                payload: message.payload.clone(),
            };
            if let Err(e) = park(store, parking, kind, &reason).await {
                // Not acked: the message comes back after ack_wait and is parked then.
                tracing::warn!(consumer = %durable.name, seq, error = %e, "could not park message");
                return;
            }
            message.double_ack().await
        }
    };
    if let Err(e) = acked {
        crate::repeat::warn_repeated(
            &format!("acks failed on consumer {}", durable.name),
            "ack",
            || {
                tracing::warn!(consumer = %durable.name, seq, error = %e, "ack failed; the message will be redelivered");
            },
        );
    }
}

/// A message to park: where it came from and what it held.
pub struct Parking<'a> {
    /// The reader that could not handle it.
    pub consumer: &'a str,
    /// What the message is ([`Wire::WHAT`]): `report`, `heartbeat`, `event`, ...
    pub what: &'static str,
    /// `fleet.parked.<consumer>`.
    pub parked_subject: &'a str,
    /// The stream and sequence it was read from.
    pub stream: &'a str,
    pub seq: u64,
    /// The subject it arrived on.
    pub subject: &'a str,
    pub payload: bytes::Bytes,
}

/// Parks a message with its reason (`kind`: `undecodable`, `rejected`, ...; the stored
/// reason names what the message is), counts every one and logs them rate-limited: the
/// first of a consumer in full, then one summary line a minute. The msg id is its origin
/// (`park:STREAM:SEQ`), so readers that each see the message (several instances
/// following one stream) park it once.
pub async fn park(
    store: &EventStore,
    parking: Parking<'_>,
    kind: &'static str,
    reason: &str,
) -> Result<(), String> {
    let Parking {
        consumer,
        what,
        parked_subject,
        stream,
        seq,
        subject,
        payload,
    } = parking;
    let origin = format!("{stream}:{seq}");
    let category = category(kind, what);
    let reason = format!("{category}: {reason}");
    let park = PublishMessage::build()
        .payload(payload)
        .message_id(format!("park:{origin}"))
        .header(HEADER_PARK_KIND, kind)
        .header(HEADER_PARK_REASON, header_safe(&reason).as_str())
        .header(HEADER_ORIGIN_SUBJECT, subject)
        .header(HEADER_ORIGIN, origin.as_str());
    match store.js.send_publish(parked_subject.to_owned(), park).await {
        Ok(ack) => ack.await.map_err(|e| e.to_string())?,
        Err(e) => return Err(e.to_string()),
    };
    metrics::counter!("fleet_parked_messages_total", "consumer" => consumer.to_owned(), "kind" => kind)
        .increment(1);
    crate::repeat::warn_repeated(&format!("parked on {consumer}"), &category, || {
        tracing::warn!(consumer, seq, subject, kind, reason, "message parked");
    });
    Ok(())
}

/// A parking's category in words: `undecodable report`, `rejected heartbeat`, `event
/// still failing`.
fn category(kind: &str, what: &str) -> String {
    match kind {
        "retries_exhausted" => format!("{what} still failing"),
        kind => format!("{kind} {what}"),
    }
}

/// A header value: one line, at most 1 KiB.
fn header_safe(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut end = line.len().min(1024);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_owned()
}
