//! What can go wrong applying events to a read model, and what the caller does about it.

use fleet_events::store::ReadError;
use sled::transaction::UnabortableTransactionError;

/// Why a projection did not apply one event. Returned by [`crate::Projection::apply`].
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The model refuses the event (an illegal transition, an event on the wrong
    /// subject). Nothing it wrote is kept; the runtime records the event in the `rejected`
    /// tree, moves the checkpoint past it and goes on. `kind` is a short stable name for
    /// the metric label; `reason` says what was wrong.
    #[error("rejected ({kind}): {reason}")]
    Rejected { kind: &'static str, reason: String },
    /// What the model stored cannot be read back (another format, damage): the runtime
    /// stops; rebuild the projection.
    #[error("tree {tree}: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    /// Reading or writing through the transaction failed. Produced by `?` on
    /// [`sled::transaction::TransactionalTree`] calls; a conflict re-runs `apply`.
    #[error(transparent)]
    Transaction(#[from] UnabortableTransactionError),
}

impl ApplyError {
    /// An event the model refuses.
    pub fn rejected(kind: &'static str, reason: impl Into<String>) -> Self {
        ApplyError::Rejected {
            kind,
            reason: reason.into(),
        }
    }

    /// A stored value that cannot be read back.
    pub fn corrupt(tree: &'static str, reason: impl std::fmt::Display) -> Self {
        ApplyError::Corrupt {
            tree,
            reason: reason.to_string(),
        }
    }
}

/// Why a projection stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The projection's definition breaks a rule of the runtime (tree names): a bug, fix
    /// the code.
    #[error("projection {projection} is defined wrongly: {reason}")]
    Definition {
        projection: &'static str,
        reason: String,
    },
    /// sled failed (I/O error, disk full, damaged files): an operator looks; the
    /// projection can always be rebuilt from the log into a fresh directory.
    #[error("sled: {0}")]
    Storage(#[from] sled::Error),
    /// Stored state is not what this build writes: rebuild the projection.
    #[error("projection {projection}, tree {tree}: {reason}; rebuild it")]
    Corrupt {
        projection: &'static str,
        tree: String,
        reason: String,
    },
    /// The event store could not be read: retry later ([`crate::Checkpointed::run`]
    /// retries by itself).
    #[error("reading the event log: {0}")]
    Read(ReadError),
}
