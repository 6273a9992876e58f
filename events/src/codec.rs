//! The wire format: postcard, size-bounded, refusing garbage with a typed error.
//!
//! Every message starts with its schema version, which also selects the layout of a
//! policy spec inside it (schema 1 has no `hooks`): the codec sets that layout for the
//! duration of one encode or decode ([`with_layout`]), and the spec's `hooks` field reads
//! it (`policy::hooks::wire`). Nothing else depends on it.

use std::cell::Cell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, NEWEST_SCHEMA};

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
    #[error("written with schema version {found}; this build reads up to {NEWEST_SCHEMA}")]
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

thread_local! {
    /// The schema whose layout postcard reads and writes on this thread.
    static LAYOUT: Cell<u16> = const { Cell::new(NEWEST_SCHEMA) };
}

/// Runs `f`, which encodes or decodes postcard, with policy specs in the layout of
/// `schema` (1: without hooks). Outside it the layout is the newest. For stores that keep
/// postcard written by older builds (the agent's task records); the codec does this itself
/// for every message, by the schema the message carries.
pub fn with_layout<R>(schema: u16, f: impl FnOnce() -> R) -> R {
    struct Restore(u16);
    impl Drop for Restore {
        fn drop(&mut self) {
            LAYOUT.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LAYOUT.with(|l| l.replace(schema)));
    f()
}

/// The layout in force on this thread (see [`with_layout`]).
pub(crate) fn layout() -> u16 {
    LAYOUT.with(Cell::get)
}

/// Encodes an envelope in the schema it names, refusing one larger than
/// [`MAX_EVENT_BYTES`] and one whose event that schema cannot hold (hooks in schema 1).
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
    encode_in(envelope.schema, envelope.event.schema(), envelope)
}

/// Encodes `message`, which names `schema` first and needs at least `needed`.
pub(crate) fn encode_in<T: Serialize>(
    schema: u16,
    needed: u16,
    message: &T,
) -> Result<Vec<u8>, CodecError> {
    if schema < needed || schema > NEWEST_SCHEMA || schema == 0 {
        return Err(CodecError::Malformed(format!(
            "written as schema {schema}, but its content needs schema {needed} \
             (up to {NEWEST_SCHEMA})"
        )));
    }
    with_layout(schema, || encode_versioned(message))
}

/// Decodes an envelope. Never panics: anything that is not exactly one envelope of a known
/// schema is an error.
pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
    decode_versioned(bytes)
}

/// Encodes any of our wire messages (whose first field is the schema version), refusing
/// one larger than [`MAX_EVENT_BYTES`]. A policy spec inside is written in the layout in
/// force ([`with_layout`]; the newest outside one).
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
    if schema > NEWEST_SCHEMA || schema == 0 {
        return Err(CodecError::UnsupportedSchema { found: schema });
    }
    let (message, rest) = with_layout(schema, || postcard::take_from_bytes::<T>(bytes))
        .map_err(|e| CodecError::Malformed(in_words(&e)))?;
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
