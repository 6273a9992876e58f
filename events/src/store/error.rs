//! What can go wrong talking to the store, and what the caller does about it.

use crate::codec::CodecError;

/// Setting up streams failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stream exists with a different meaning: an operator must reconcile it by hand.
    #[error("stream {stream} exists with a conflicting configuration: {}", differences.join("; "))]
    StreamConflict {
        stream: String,
        differences: Vec<String>,
    },
    /// NATS refused or did not answer; retry later.
    #[error("{what}: {message}")]
    Nats { what: String, message: String },
}

impl StoreError {
    pub(crate) fn nats(what: String, e: impl std::fmt::Display) -> Self {
        StoreError::Nats {
            what,
            message: e.to_string(),
        }
    }
}

/// An append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Someone else appended to the subject first: re-read the aggregate, decide again.
    #[error("conflict on {subject}: its last sequence is no longer {expected}")]
    Conflict { subject: String, expected: u64 },
    /// The event cannot be written (too large): fix the event, do not retry.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// NATS did not confirm in time or the connection broke: retry with the same msg id,
    /// which deduplicates if the first attempt was stored after all.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The server refused the message for another reason.
    #[error("event store refused the append: {0}")]
    Rejected(String),
}

/// A read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// One stored message is not an event: the caller counts or parks it and goes on.
    #[error("message {seq} on {subject} is not an event: {error}")]
    Undecodable {
        seq: u64,
        subject: String,
        error: CodecError,
    },
    /// NATS refused or did not answer; retry later.
    #[error("{what}: {message}")]
    Nats { what: String, message: String },
}

impl ReadError {
    pub(crate) fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        ReadError::Nats {
            what: what.into(),
            message: e.to_string(),
        }
    }
}
