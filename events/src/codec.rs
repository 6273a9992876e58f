//! The wire format: postcard, size-bounded, refusing garbage with a typed error.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, SCHEMA_VERSION};

/// Largest encoded event. Larger events are refused when written; larger payloads are
/// refused before decoding.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Why bytes are not an event, or an event cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Too large to store or to decode; the caller parks the message.
    #[error("event is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    /// Written by a newer build; the caller parks it until this build is upgraded.
    #[error("event has schema version {found}, this build reads up to {SCHEMA_VERSION}")]
    UnsupportedSchema { found: u16 },
    /// Not an event: truncated, garbage, or an unknown variant.
    #[error("not a valid event: {0}")]
    Malformed(String),
}

impl CodecError {
    /// A short stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::TooLarge { .. } => "too_large",
            CodecError::UnsupportedSchema { .. } => "unsupported_schema",
            CodecError::Malformed(_) => "malformed",
        }
    }
}

/// Messages that can be decoded from the wire (events and the agent protocol).
pub trait Wire: Sized {
    /// Decodes one message payload.
    fn from_wire(bytes: &[u8]) -> Result<Self, CodecError>;
}

impl Wire for Envelope {
    fn from_wire(bytes: &[u8]) -> Result<Self, CodecError> {
        decode(bytes)
    }
}

/// Encodes an envelope, refusing one larger than [`MAX_EVENT_BYTES`].
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
    encode_versioned(envelope)
}

/// Decodes an envelope. Never panics: anything that is not exactly one envelope of a known
/// schema is an error.
pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    decode_versioned(bytes)
}

/// Encodes any of our wire messages (whose first field is the schema version), refusing
/// one larger than [`MAX_EVENT_BYTES`].
pub fn encode_versioned<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = postcard::to_stdvec(message).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes one of our wire messages whose first field is the schema version: the size is
/// checked first, then the version, then the whole message, which must use every byte.
pub fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    let (schema, _) = postcard::take_from_bytes::<u16>(bytes)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if schema > SCHEMA_VERSION || schema == 0 {
        return Err(CodecError::UnsupportedSchema { found: schema });
    }
    let (message, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Malformed(format!(
            "{} bytes after the end of the message",
            rest.len()
        )));
    }
    Ok(message)
}

/// Implements [`Wire`] (decode with the schema check) and `to_wire` (encode) for message
/// types sent outside the event log.
macro_rules! impl_wire {
    ($($t:ty),+) => {$(
        impl $crate::codec::Wire for $t {
            fn from_wire(bytes: &[u8]) -> Result<Self, $crate::codec::CodecError> {
                $crate::codec::decode_versioned(bytes)
            }
        }

        impl $t {
            /// Encodes the message for the wire.
            pub fn to_wire(&self) -> Result<Vec<u8>, $crate::codec::CodecError> {
                $crate::codec::encode_versioned(self)
            }
        }
    )+};
}
pub(crate) use impl_wire;
