//! What the runtime keeps beside a projection's own trees, and its byte layout: the
//! checkpoint in the `meta` tree (key = projection name) and rejected events in the
//! `rejected` tree (key = projection name, a zero byte, the sequence big-endian).

use serde::{Deserialize, Serialize};

/// The tree of checkpoints, shared by every projection of a database.
pub const META: &str = "meta";
/// The tree of rejected events, shared by every projection of a database.
pub const REJECTED: &str = "rejected";

/// A stored checkpoint: the last stream sequence applied and the model's format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub seq: u64,
    pub version: u32,
}

impl Checkpoint {
    const LEN: usize = 12;

    /// Sequence then version, both big-endian.
    pub fn encode(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..].copy_from_slice(&self.version.to_be_bytes());
        out
    }

    /// `None` if `bytes` is not a checkpoint.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let (seq, version) = bytes.split_at(8);
        Some(Self {
            seq: u64::from_be_bytes(seq.try_into().ok()?),
            version: u32::from_be_bytes(version.try_into().ok()?),
        })
    }
}

/// The `meta` key marking a rebuild in progress: if present when a database is opened,
/// the rebuild was interrupted and is finished before anything else.
pub(crate) fn rebuilding_key(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.extend_from_slice(b"\0rebuilding");
    key
}

/// The prefix of every `rejected` key of one projection.
pub(crate) fn rejected_prefix(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key
}

/// The `rejected` key of one event.
pub(crate) fn rejected_key(name: &str, seq: u64) -> Vec<u8> {
    let mut key = rejected_prefix(name);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence in a `rejected` key of projection `name`.
pub(crate) fn rejected_seq(name: &str, key: &[u8]) -> Option<u64> {
    let seq = key.strip_prefix(rejected_prefix(name).as_slice())?;
    Some(u64::from_be_bytes(seq.try_into().ok()?))
}

/// The stored value of a rejected event (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rejection {
    pub subject: String,
    pub kind: String,
    pub reason: String,
}

/// An event a projection did not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    /// Its stream sequence.
    pub seq: u64,
    /// The subject it was stored under.
    pub subject: String,
    /// A short stable name: `undecodable`, or the model's rejection kind.
    pub kind: String,
    /// What was wrong, in words.
    pub reason: String,
}

/// Where a projection stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// The last stream sequence applied (or rejected); 0 before the first event.
    pub checkpoint: u64,
    /// How many events it has rejected.
    pub rejected: u64,
}

impl Status {
    /// How far behind a log whose last sequence is `last_seq` it is. Events the filter
    /// does not match count too, so a caught-up projection may show a small lag.
    pub fn lag(&self, last_seq: u64) -> u64 {
        last_seq.saturating_sub(self.checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_refuse_garbage() {
        let cp = Checkpoint {
            seq: 1 << 40 | 7,
            version: 3,
        };
        assert_eq!(Checkpoint::decode(&cp.encode()), Some(cp));
        assert_eq!(Checkpoint::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn rejected_keys_sort_by_sequence_within_a_projection() {
        assert!(rejected_key("tasks", 2) < rejected_key("tasks", 256));
        assert_eq!(rejected_seq("tasks", &rejected_key("tasks", 99)), Some(99));
        assert_eq!(rejected_seq("agents", &rejected_key("tasks", 99)), None);
        assert!(!rejected_key("tasks", 1).starts_with(&rejected_prefix("task")));
    }
}
