//! Reading the log: one aggregate's history, a bounded replay, a live follow.

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::{EventStore, ReadError};
use crate::codec::decode;
use crate::envelope::Envelope;
use crate::streams::EVENTS;
use crate::subject::EventSubject;

/// An event as stored: its stream sequence, subject and envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub subject: String,
    pub envelope: Envelope,
}

/// One aggregate's events and the sequence to expect when appending after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub events: Vec<Stored>,
    /// The stream sequence of the subject's last event; 0 if it has none.
    pub last_seq: u64,
}

/// One replayed message: the event or why not, and its stream sequence.
type Delivered = (Result<Stored, ReadError>, Option<u64>);

impl EventStore {
    /// The stream sequence of the last event on `subject`, 0 if there is none. `subject`
    /// may be a filter with wildcards (`fleet.evt.>` gives the end of the log).
    pub async fn last_sequence(&self, subject: &str) -> Result<u64, ReadError> {
        let stream = self
            .js
            .get_stream_no_info(EVENTS)
            .await
            .map_err(|e| ReadError::nats("event stream", e))?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(ReadError::nats(format!("last message on {subject}"), e)),
        }
    }

    /// Every event of one aggregate, in order, up to its last event at the time of the
    /// call. An undecodable event is an error: a writer must not decide on a partial
    /// history.
    pub async fn history(&self, subject: &EventSubject) -> Result<History, ReadError> {
        let subject = subject.to_string();
        let last_seq = self.last_sequence(&subject).await?;
        let events: Vec<Stored> = self
            .replay_until(&subject, 1, last_seq)
            .await?
            .try_collect()
            .await?;
        Ok(History { events, last_seq })
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
    async fn replay_until(
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

    /// An ordered push consumer from `from`, yielding each decoded event (or why it is not
    /// one) with its stream sequence (`None` when the transport failed).
    async fn ordered(
        &self,
        filter: &str,
        from: u64,
    ) -> Result<BoxStream<'static, Delivered>, ReadError> {
        let stream = self
            .js
            .get_stream_no_info(EVENTS)
            .await
            .map_err(|e| ReadError::nats("event stream", e))?;
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.js.client().new_inbox(),
                filter_subject: filter.to_owned(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| ReadError::nats(format!("replay consumer for {filter}"), e))?;
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
        Ok(decoded.boxed())
    }
}
