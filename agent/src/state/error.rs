//! What can go wrong with the agent's local state, and what the caller does about it.

use fleet_events::codec::CodecError;
use fleet_events::ids::TaskId;

use super::record::Stage;

/// Why the agent's local state refused or failed an operation. Nothing was changed
/// unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// sled failed (I/O error, disk full, damaged files, the directory is locked by another
    /// agent process). Do not ack the NATS message that caused the call; the agent stops
    /// and an operator looks at the state directory.
    #[error("agent state storage: {0}")]
    Storage(#[from] sled::Error),
    /// A stored value cannot be read back (damage, or written by another build). The
    /// agent stops; an operator moves the state directory aside (the control plane
    /// retries lost attempts).
    #[error("agent state, tree {tree}: {reason}; move the state directory aside")]
    Corrupt { tree: &'static str, reason: String },
    /// `start` or `finish` for an attempt this agent never accepted (or already forgot):
    /// a bug in the caller. Do not run restic for it.
    #[error("task {task} attempt {attempt} was never accepted by this agent")]
    UnknownTask { task: TaskId, attempt: u32 },
    /// The attempt cannot move from `from` to `to` (started twice, finished twice,
    /// succeeded without starting): a bug in the caller; the stored stage stands.
    #[error("task {task} attempt {attempt} cannot move from {from} to {to}")]
    IllegalMove {
        task: TaskId,
        attempt: u32,
        from: Stage,
        to: Stage,
    },
    /// The report does not belong to the move (another task or attempt, or a status that
    /// does not fit): a bug in the caller.
    #[error("report does not fit: {0}")]
    ReportMismatch(String),
    /// The report or order cannot be encoded (too large: shorten the error text and call
    /// again).
    #[error("cannot encode for the agent state: {0}")]
    Encode(#[from] CodecError),
}

impl StateError {
    /// A stored value that cannot be read back.
    pub(crate) fn corrupt(tree: &'static str, reason: impl std::fmt::Display) -> Self {
        StateError::Corrupt {
            tree,
            reason: reason.to_string(),
        }
    }

    /// A value that postcard cannot encode (not expected for our types).
    pub(crate) fn encode(reason: impl std::fmt::Display) -> Self {
        StateError::Encode(CodecError::Malformed(reason.to_string()))
    }

    /// A short stable name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StateError::Storage(_) => "storage",
            StateError::Corrupt { .. } => "corrupt",
            StateError::UnknownTask { .. } => "unknown_task",
            StateError::IllegalMove { .. } => "illegal_move",
            StateError::ReportMismatch(_) => "report_mismatch",
            StateError::Encode(_) => "encode",
        }
    }
}
