//! One aggregate's history, read message by message from the stream leader (no consumer).
//!
//! Writers read an aggregate before every decision, so this is the hottest read. A
//! consumer per read would cost a JetStream meta-layer proposal in a cluster, and
//! nats-server 2.9.10 places an ephemeral consumer on a random peer of the stream, dead
//! or alive: with one node of three down, a third of such reads would time out. Message
//! gets with `next_by_subj` need neither: a direct get (`allow_direct`, answered by any
//! replica, as fast as a small replay on one server) and, when that replica has not yet
//! stored the next message, `STREAM.MSG.GET` from the stream leader. A long history reads
//! its tail through an ordered consumer.

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, RawMessageErrorKind, Stream};
use futures::TryStreamExt;

use super::{EventStore, ReadError, Stored};
use crate::codec::decode;
use crate::subject::EventSubject;

/// Events read one request each before the rest of a history is replayed by a consumer.
pub const HISTORY_BY_GET: usize = 64;

/// One aggregate's events and the sequence to expect when appending after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub events: Vec<Stored>,
    /// The stream sequence of the subject's last event; 0 if it has none.
    pub last_seq: u64,
}

impl EventStore {
    /// Every event of one aggregate, in order, up to its last event at the time of the
    /// call. An undecodable event is an error: a writer must not decide on a partial
    /// history.
    pub async fn history(&self, subject: &EventSubject) -> Result<History, ReadError> {
        self.history_since(subject, 0).await
    }

    /// The events of one aggregate after stream sequence `after` (a reader that folded the
    /// aggregate up to `after` catches up), read like [`EventStore::history`]: by message
    /// gets, nothing at all when nothing was appended since.
    pub async fn history_since(
        &self,
        subject: &EventSubject,
        after: u64,
    ) -> Result<History, ReadError> {
        let subject = subject.to_string();
        let last_seq = self.last_sequence(&subject).await?;
        let mut events = Vec::new();
        if last_seq <= after {
            return Ok(History { events, last_seq });
        }
        let stream = self.events_stream().await?;
        let mut next = after + 1;
        while next <= last_seq {
            if events.len() == HISTORY_BY_GET {
                let tail: Vec<Stored> = self
                    .replay_until(&subject, next, last_seq)
                    .await?
                    .try_collect()
                    .await?;
                events.extend(tail);
                break;
            }
            let Some(message) = next_message(&stream, &subject, next).await? else {
                // Removed by the stream's limits since `last_seq` was read.
                break;
            };
            let stored = stored(message)?;
            next = stored.seq + 1;
            events.push(stored);
        }
        Ok(History { events, last_seq })
    }

    /// The sequence of the message on `subject` after sequence `after` that carries
    /// `msg_id`, reading at most `limit` messages; `None` if there is none among them.
    pub(super) async fn find_msg_id(
        &self,
        subject: &str,
        after: u64,
        msg_id: &str,
        limit: usize,
    ) -> Result<Option<u64>, ReadError> {
        let stream = self.events_stream().await?;
        let mut from = after + 1;
        for _ in 0..limit {
            let Some(message) = next_message(&stream, subject, from).await? else {
                return Ok(None);
            };
            let id = message.headers.get(async_nats::header::NATS_MESSAGE_ID);
            if id.map(|v| v.as_str()) == Some(msg_id) {
                return Ok(Some(message.sequence));
            }
            from = message.sequence + 1;
        }
        Ok(None)
    }
}

/// The first message on `subject` at or after sequence `from`, if there is one. A replica
/// holds a prefix of the stream, so what it returns is right; if it has nothing yet, the
/// leader is asked.
async fn next_message(
    stream: &Stream<()>,
    subject: &str,
    from: u64,
) -> Result<Option<StreamMessage>, ReadError> {
    let what = || format!("history of {subject}");
    match stream
        .direct_get_next_for_subject(subject, Some(from))
        .await
    {
        Ok(message) => return Ok(Some(message)),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
        Err(e) => return Err(ReadError::nats(what(), e)),
    }
    match stream.get_first_raw_message_by_subject(subject, from).await {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(ReadError::nats(what(), e)),
    }
}

/// A message got from the stream as an event, or why it is not one.
fn stored(message: StreamMessage) -> Result<Stored, ReadError> {
    let subject = message.subject.to_string();
    match decode(&message.payload) {
        Ok(envelope) => Ok(Stored {
            seq: message.sequence,
            subject,
            envelope,
        }),
        Err(error) => Err(ReadError::Undecodable {
            seq: message.sequence,
            subject,
            error,
        }),
    }
}
