//! The outbox: reports waiting for JetStream, in the order they were written.
//!
//! The sender drains it in order and removes a report only after JetStream stored it
//! (the publish ack). A crash between the ack and the removal, or a lost removal (removals
//! are not flushed), sends the report again; that is safe because each report carries a
//! deterministic msg id ([`AgentReport::msg_id`]): JetStream drops a resend within its
//! duplicate window and intake recognises a report it has already applied.

use fleet_events::codec::{CodecError, Wire};
use fleet_events::protocol::AgentReport;

use super::AgentState;
use super::error::StateError;

/// The tree of reports waiting for JetStream.
pub const OUTBOX: &str = "outbox";

/// The place of one report in the outbox; keys sort in write order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxKey(u64);

impl OutboxKey {
    pub(crate) fn new(id: u64) -> Self {
        Self(id)
    }

    /// The id, for logs.
    pub fn id(self) -> u64 {
        self.0
    }

    pub(crate) fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(u64::from_be_bytes(bytes.try_into().ok()?)))
    }
}

/// One report in the outbox. `report` is an error if the stored bytes are not a report
/// this build reads (damage, or written by a newer build before a downgrade): the sender
/// logs it and removes it; the control plane gives the attempt up as lost and retries it.
pub type OutboxEntry = (OutboxKey, Result<AgentReport, CodecError>);

impl AgentState {
    /// Every report waiting for JetStream, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StateError> {
        self.outbox
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let key = OutboxKey::from_bytes(&key)
                    .ok_or_else(|| StateError::corrupt(OUTBOX, "a key is not 8 bytes"))?;
                Ok((key, AgentReport::from_wire(&value)))
            })
            .collect()
    }

    /// Removes one report after JetStream stored it. `false` if it was gone already.
    /// Not flushed: a removal lost in a crash only sends the report once more.
    pub fn remove(&self, key: OutboxKey) -> Result<bool, StateError> {
        Ok(self.outbox.remove(key.to_bytes())?.is_some())
    }

    /// How many reports wait for JetStream (for heartbeats; counts the tree, so call it
    /// per heartbeat, not per message).
    pub fn outbox_depth(&self) -> u32 {
        u32::try_from(self.outbox.len()).unwrap_or(u32::MAX)
    }
}
