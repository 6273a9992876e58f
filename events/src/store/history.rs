//! One aggregate's history, read message by message from the stream leader (no consumer).
//!
//! Writers read an aggregate before every decision, so this is the hottest read. A
//! consumer per read would cost a JetStream meta-layer proposal in a cluster, and
//! nats-server 2.9.10 places an ephemeral consumer on a random peer of the stream, dead
//! or alive: with one node of three down, a third of such reads would time out. Direct
//! `STREAM.MSG.GET` requests with `next_by_subj` need neither; a long history reads its
//! tail through an ordered consumer.

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::RawMessageErrorKind;
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
        let subject = subject.to_string();
        let last_seq = self.last_sequence(&subject).await?;
        let stream = self.events_stream().await?;
        let mut events = Vec::new();
        let mut next = 1;
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
            let message = match stream
                .get_first_raw_message_by_subject(&subject, next)
                .await
            {
                Ok(message) => message,
                // Removed by the stream's limits since `last_seq` was read.
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(ReadError::nats(format!("history of {subject}"), e)),
            };
            let stored = stored(message)?;
            next = stored.seq + 1;
            events.push(stored);
        }
        Ok(History { events, last_seq })
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
