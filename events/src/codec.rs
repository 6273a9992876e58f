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
    #[error("written with schema version {found}; this build reads up to {SCHEMA_VERSION}")]
    UnsupportedSchema { found: u16 },
    /// Not a message: truncated, garbage, or an unknown variant; the problem in words.
    #[error("{0}")]
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
    /// What the message is, in a word, for park reasons and logs: `event`, `report`,
    /// `heartbeat`, `command`, `registration`, ...
    const WHAT: &'static str;

    /// Decodes one message payload.
    fn from_wire(bytes: &[u8]) -> Result<Self, CodecError>;
}

impl Wire for Envelope {
    const WHAT: &'static str = "event";
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
    let bytes = postcard::to_stdvec(message).map_err(|e| CodecError::Malformed(in_words(&e)))?;
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
    let (schema, _) =
        postcard::take_from_bytes::<u16>(bytes).map_err(|e| CodecError::Malformed(in_words(&e)))?;
    if schema > SCHEMA_VERSION || schema == 0 {
        return Err(CodecError::UnsupportedSchema { found: schema });
    }
    let (message, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| CodecError::Malformed(in_words(&e)))?;
    if !rest.is_empty() {
        return Err(CodecError::Malformed(format!(
            "{} bytes follow the end of the message (garbage, or another format)",
            rest.len()
        )));
    }
    Ok(message)
}

/// What a postcard error says about the bytes, in words (postcard's own texts name its
/// internals: varints, buffers, serde).
fn in_words(error: &postcard::Error) -> String {
    use postcard::Error as E;
    match error {
        E::DeserializeUnexpectedEnd => "it ends before the message does (truncated)",
        E::DeserializeBadVarint => "a number in it is not encoded as one",
        E::DeserializeBadBool => "a yes/no field holds another value",
        E::DeserializeBadChar | E::DeserializeBadUtf8 => "a text field is not valid UTF-8",
        E::DeserializeBadOption => "an optional field is neither present nor absent",
        E::DeserializeBadEnum | E::DeserializeBadEncoding | E::SerdeDeCustom => {
            "a field holds a value this build does not know (garbage, or written by a newer build)"
        }
        E::SerializeBufferFull | E::SerializeSeqLengthUnknown | E::SerdeSerCustom => {
            "it could not be encoded"
        }
        _ => "it is not in the wire format",
    }
    .to_owned()
}

/// Implements [`Wire`] (decode with the schema check) and `to_wire` (encode) for message
/// types sent outside the event log.
macro_rules! impl_wire {
    ($($t:ty => $what:literal),+) => {$(
        impl $crate::codec::Wire for $t {
            const WHAT: &'static str = $what;
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
