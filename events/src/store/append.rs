//! Appending events: msg ids for deduplication, expected sequences for concurrency.
//!
//! A retry of an expected-sequence append whose ack was lost must answer "duplicate", as
//! a retry of any other append does. A single nats-server 2.9 checks the msg id before the
//! expected sequence and answers so; 2.10 and later, and a replicated stream's leader on
//! 2.9 (for an expected sequence above 0), check the expected sequence first and answer
//! "wrong last sequence". So a conflict is looked at before it is reported: if the
//! subject holds this msg id after the expected sequence, the append was stored before.

use std::borrow::Cow;

use async_nats::HeaderName;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt;
use futures::stream::FuturesOrdered;

use super::{AppendError, EventStore, PIPELINE_WINDOW};
use crate::codec::encode;
use crate::envelope::{Envelope, HEADER_EVENT_TYPE, HEADER_SCHEMA, SCHEMA_VERSION};

/// Header names built once: a name from a `&str` would be allocated per message.
const EVENT_TYPE: HeaderName = HeaderName::from_static(HEADER_EVENT_TYPE);
const SCHEMA: HeaderName = HeaderName::from_static(HEADER_SCHEMA);
/// [`SCHEMA_VERSION`] as header text.
const SCHEMA_VERSION_TEXT: &str = "1";
/// Messages read after the expected sequence, looking for the msg id of an append that
/// conflicted. A retry follows its lost ack within seconds, when few events can have been
/// appended to one aggregate; past this many the conflict is reported as it is.
const CONFLICT_SCAN_LIMIT: usize = 256;

/// What the writer expects of the subject before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No check: for events whose validity does not depend on the aggregate's state.
    Any,
    /// The subject's last stream sequence must be this; 0 means the subject must be empty.
    LastSeq(u64),
}

/// One event to append.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    pub envelope: &'a Envelope,
    /// `Nats-Msg-Id`: the same id within the duplicate window is stored once.
    pub msg_id: &'a str,
    pub expect: Expect,
}

/// An event a decision wants appended, owned (the one type every core returns its
/// writes in): the envelope, its `Nats-Msg-Id` (the same for every issue of the same
/// decision, by any instance) and what the subject must hold before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToAppend {
    pub envelope: Envelope,
    pub msg_id: String,
    pub expect: Expect,
}

impl ToAppend {
    /// Borrowed as an [`Append`], for [`EventStore::append`].
    pub fn as_append(&self) -> Append<'_> {
        Append {
            envelope: &self.envelope,
            msg_id: &self.msg_id,
            expect: self.expect,
        }
    }
}

/// Where an event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its stream sequence.
    pub seq: u64,
    /// True if an event with this msg id was stored before (this one was not stored again).
    pub duplicate: bool,
}

struct Sent {
    /// What an expected-sequence append needs if it conflicts.
    conditional: Option<Conditional>,
    ack: PublishAckFuture,
}

struct Conditional {
    subject: String,
    msg_id: String,
    expected: u64,
}

impl EventStore {
    /// Appends one event and waits for the server to store it.
    pub async fn append(&self, item: Append<'_>) -> Result<Appended, AppendError> {
        let sent = self.send(item).await?;
        self.finish(sent).await
    }

    /// Appends events in order with up to [`PIPELINE_WINDOW`] acks in flight; one result
    /// per event, in order. A failed event does not stop the others.
    pub async fn append_many<'a>(
        &self,
        items: impl IntoIterator<Item = Append<'a>>,
    ) -> Vec<Result<Appended, AppendError>> {
        let mut results = Vec::new();
        let mut in_flight = FuturesOrdered::new();
        for item in items {
            if in_flight.len() >= PIPELINE_WINDOW
                && let Some(result) = in_flight.next().await
            {
                results.push(result);
            }
            match self.send(item).await {
                Ok(sent) => in_flight.push_back(futures::future::Either::Left(self.finish(sent))),
                Err(e) => in_flight.push_back(futures::future::Either::Right(async { Err(e) })),
            }
        }
        while let Some(result) = in_flight.next().await {
            results.push(result);
        }
        results
    }

    async fn send(&self, item: Append<'_>) -> Result<Sent, AppendError> {
        let payload = encode(item.envelope)?;
        let subject = item.envelope.subject();
        let schema = if item.envelope.schema == SCHEMA_VERSION {
            Cow::Borrowed(SCHEMA_VERSION_TEXT)
        } else {
            Cow::Owned(item.envelope.schema.to_string())
        };
        let mut message = PublishMessage::build()
            .payload(payload.into())
            .message_id(item.msg_id)
            .header(EVENT_TYPE, item.envelope.event.event_type().name())
            .header(SCHEMA, schema.as_ref());
        // Only an expected-sequence append can conflict and needs the subject afterwards.
        let conditional = match item.expect {
            Expect::LastSeq(expected) => {
                message = message.expected_last_subject_sequence(expected);
                Some(Conditional {
                    subject: subject.clone(),
                    msg_id: item.msg_id.to_owned(),
                    expected,
                })
            }
            Expect::Any => None,
        };
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(|e| map_publish_error(e.kind(), &e.to_string()))?;
        Ok(Sent { conditional, ack })
    }

    async fn finish(&self, sent: Sent) -> Result<Appended, AppendError> {
        match sent.ack.await {
            Ok(ack) => Ok(Appended {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => match sent.conditional {
                // Boxed: rare, and it would make every in-flight ack's future larger.
                Some(c) => Box::pin(self.conflict_or_duplicate(c)).await,
                None => Err(map_publish_error(e.kind(), &e.to_string())),
            },
            Err(e) => Err(map_publish_error(e.kind(), &e.to_string())),
        }
    }

    /// A lost race, or the retry of an append that was stored (see the module's doc).
    async fn conflict_or_duplicate(&self, c: Conditional) -> Result<Appended, AppendError> {
        match self
            .find_msg_id(&c.subject, c.expected, &c.msg_id, CONFLICT_SCAN_LIMIT)
            .await
        {
            Ok(Some(seq)) => Ok(Appended {
                seq,
                duplicate: true,
            }),
            Ok(None) => Err(AppendError::Conflict {
                subject: c.subject,
                expected: c.expected,
            }),
            // Whether it was stored cannot be told: the writer retries with the same id.
            Err(e) => Err(AppendError::Unavailable(format!(
                "{} conflicted and could not be checked for msg id {}: {e}",
                c.subject, c.msg_id
            ))),
        }
    }
}

fn map_publish_error(kind: PublishErrorKind, text: &str) -> AppendError {
    match kind {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending
        | PublishErrorKind::StreamNotFound => AppendError::Unavailable(text.to_owned()),
        _ => AppendError::Rejected(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_header_text_matches_the_version() {
        assert_eq!(SCHEMA_VERSION_TEXT, SCHEMA_VERSION.to_string());
    }
}
