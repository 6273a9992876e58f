//! Reading the log: one aggregate's history, a bounded replay, a live follow.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::stream::{ConsumerErrorKind, LastRawMessageErrorKind, Stream};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::watch::watched;
use super::{EventStore, ReadError};
use crate::codec::decode;
use crate::envelope::Envelope;
use crate::streams::EVENTS;

/// An event as stored: its stream sequence, subject and envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub subject: String,
    pub envelope: Envelope,
}

/// How long each attempt to create a replay consumer may take. nats-server 2.9.10 places
/// an ordered (R1) consumer on a random peer of a replicated stream even when that peer is
/// down; the create request then gets no answer, and another attempt is placed afresh.
/// Later servers skip peers known to be offline.
const CREATE_WAITS: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(3),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// Replay consumers created again after an attempt got no answer.
pub const CREATE_RETRIES_METRIC: &str = "fleet_replay_consumer_retries_total";

/// One replayed message: the event or why not, and its stream sequence.
pub(super) type Delivered = (Result<Stored, ReadError>, Option<u64>);

impl EventStore {
    /// The stream sequence of the last event on `subject`, 0 if there is none. `subject`
    /// may be a filter with wildcards (`fleet.evt.>` gives the end of the log).
    pub async fn last_sequence(&self, subject: &str) -> Result<u64, ReadError> {
        let stream = self.events_stream().await?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(ReadError::nats(format!("last message on {subject}"), e)),
        }
    }

    /// The events matching `filter` from stream sequence `from` up to the last matching
    /// event at the time of the call; the stream then ends. An undecodable message is an
    /// `Err` item and the replay goes on.
    pub async fn replay(
        &self,
        filter: &str,
        from: u64,
    ) -> Result<BoxStream<'static, Result<Stored, ReadError>>, ReadError> {
        let until = self.last_sequence(filter).await?;
        self.replay_until(filter, from, until).await
    }

    /// The replay of `filter` from `from` that ends with the message at stream sequence
    /// `until` (the last one matching). The end is known by sequence, not by the
    /// consumer's pending count, which nats-server 2.9 can over-count by one.
    pub(super) async fn replay_until(
        &self,
        filter: &str,
        from: u64,
        until: u64,
    ) -> Result<BoxStream<'static, Result<Stored, ReadError>>, ReadError> {
        if until == 0 || until < from.max(1) {
            return Ok(futures::stream::empty().boxed());
        }
        let messages = self.ordered(filter, from).await?;
        let bounded =
            futures::stream::unfold((messages, false), move |(mut messages, done)| async move {
                if done {
                    return None;
                }
                let (result, seq) = messages.next().await?;
                // The end: the last matching message, or the transport failed.
                let done = seq.is_none_or(|s| s >= until);
                Some((result, (messages, done)))
            });
        Ok(bounded.boxed())
    }

    /// The events matching `filter` from stream sequence `from`, then every new one as it
    /// is appended; never ends by itself.
    pub async fn follow(
        &self,
        filter: &str,
        from: u64,
    ) -> Result<BoxStream<'static, Result<Stored, ReadError>>, ReadError> {
        let messages = self.ordered(filter, from).await?;
        Ok(messages.map(|(result, _)| result).boxed())
    }

    /// The event stream's handle (no request is made).
    pub(super) async fn events_stream(&self) -> Result<Stream<()>, ReadError> {
        self.js
            .get_stream_no_info(EVENTS)
            .await
            .map_err(|e| ReadError::nats("event stream", e))
    }

    /// An ordered push consumer from `from`, yielding each decoded event (or why it is not
    /// one) with its stream sequence (`None` when the transport failed).
    async fn ordered(
        &self,
        filter: &str,
        from: u64,
    ) -> Result<BoxStream<'static, Delivered>, ReadError> {
        let stream = self.events_stream().await?;
        let config = push::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ..Default::default()
        };
        let what = || format!("replay consumer for {filter}");
        let mut waits = CREATE_WAITS.iter().peekable();
        let consumer = loop {
            let wait = *waits.next().expect("CREATE_WAITS is not empty");
            let config = push::OrderedConfig {
                deliver_subject: self.js.client().new_inbox(),
                ..config.clone()
            };
            match tokio::time::timeout(wait, stream.create_consumer(config)).await {
                Ok(Ok(consumer)) => break consumer,
                Ok(Err(e)) if e.kind() != ConsumerErrorKind::TimedOut || waits.peek().is_none() => {
                    return Err(ReadError::nats(what(), e));
                }
                Err(_) if waits.peek().is_none() => {
                    return Err(ReadError::nats(
                        what(),
                        format!("no answer within {wait:?}"),
                    ));
                }
                // Placed on a node that is down: a new request may land elsewhere.
                Ok(Err(_)) | Err(_) => {
                    metrics::counter!(CREATE_RETRIES_METRIC).increment(1);
                }
            }
        };
        let messages = consumer
            .messages()
            .await
            .map_err(|e| ReadError::nats(format!("replay of {filter}"), e))?;
        let decoded = messages.map(|item| {
            let message = match item {
                Ok(message) => message,
                Err(e) => return (Err(ReadError::nats("replay", e)), None),
            };
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => return (Err(ReadError::nats("replay message info", e)), None),
            };
            let subject = message.subject.to_string();
            let result = match decode(&message.payload) {
                Ok(envelope) => Ok(Stored {
                    seq,
                    subject,
                    envelope,
                }),
                Err(error) => Err(ReadError::Undecodable {
                    seq,
                    subject,
                    error,
                }),
            };
            (result, Some(seq))
        });
        Ok(watched(decoded.boxed(), self.clone(), filter, from))
    }
}
