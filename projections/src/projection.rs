//! The contract of a read model: which events it reads, which sled trees it owns, and how
//! one event changes them.

use fleet_events::store::Stored;
use fleet_events::subject;
use sled::IVec;
use sled::transaction::TransactionalTree;

use crate::error::ApplyError;
use crate::retention::Retention;

/// A read model folded from the event log into sled trees.
///
/// The runtime ([`crate::Checkpointed`]) calls [`Projection::apply`] inside one sled
/// transaction over the model's trees and its checkpoint, so state and checkpoint move
/// together; a rebuild calls it on trees held in memory ([`crate::bulk`]), written out
/// at the end. One transaction may apply several events in order, each reading what the
/// earlier ones wrote. `apply` must therefore be a pure function of the event and of what
/// it reads through the transaction: sled re-runs it on a conflict (and the runtime
/// re-runs a batch's events when one is rejected), and a rebuild must produce the same
/// bytes as the incremental run (no clocks, no randomness, no IO). Range scans are not
/// available inside a transaction: key the state so that one event touches known keys.
pub trait Projection: Send + Sync {
    /// The projection's name: its key in the `meta` tree and its metric label.
    const NAME: &'static str;

    /// The trees the model owns, named `<NAME>.<something>`, handed to
    /// [`Projection::apply`] in this order. A rebuild drops all of them.
    const TREES: &'static [&'static str];

    /// The format version of what the model stores. A database written with another
    /// version is rebuilt when opened: bump it whenever the stored bytes change.
    const VERSION: u32 = 1;

    /// The subject filter of the events it reads; every event by default.
    fn filter(&self) -> String {
        subject::all_events()
    }

    /// Applies one event to `trees` (one per [`Projection::TREES`] entry, in order). An
    /// event the model does not care about is `Ok(())`; one it refuses is
    /// [`ApplyError::Rejected`], and whatever `apply` wrote for it is discarded.
    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError>;

    /// How long the model keeps finished work in its per-task trees, if it forgets it
    /// with age: `apply` lists each finished item in the retention's queue tree, and the
    /// runtime hands the items that fall behind the horizon to [`Projection::retire`].
    /// None by default: the model keeps everything.
    fn retention(&self) -> Option<Retention> {
        None
    }

    /// Retires one finished item, listed in the retention queue under `key` with `value`:
    /// removes what the model keeps of it per task (what it keeps per day stays). The
    /// runtime removes the queue entry in the same transaction. Pure, like `apply`.
    fn retire(&self, trees: &[&dyn ModelTree], key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        let _ = (trees, key, value);
        Ok(())
    }
}

/// What [`Projection::apply`] may do with one of its trees: read, write and remove a key.
/// Writes take effect for later reads at once; the caller decides whether they are kept.
pub trait ModelTree {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<IVec>, ApplyError>;
    /// Stores `value` under `key`.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), ApplyError>;
    /// Removes `key`, if present.
    fn remove(&self, key: &[u8]) -> Result<(), ApplyError>;
}

impl<T: ModelTree + ?Sized> ModelTree for &T {
    fn get(&self, key: &[u8]) -> Result<Option<IVec>, ApplyError> {
        (**self).get(key)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        (**self).insert(key, value)
    }

    fn remove(&self, key: &[u8]) -> Result<(), ApplyError> {
        (**self).remove(key)
    }
}

impl ModelTree for TransactionalTree {
    fn get(&self, key: &[u8]) -> Result<Option<IVec>, ApplyError> {
        Ok(TransactionalTree::get(self, key)?)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        TransactionalTree::insert(self, key, value)?;
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), ApplyError> {
        TransactionalTree::remove(self, key)?;
        Ok(())
    }
}

/// Refuses (`subject_mismatch`) an event not stored under its own subject: a model must
/// not file an event under an aggregate or tenant other than the one it names.
pub fn check_subject(stored: &Stored) -> Result<(), ApplyError> {
    if !stored.envelope.belongs_on(&stored.subject) {
        return Err(ApplyError::rejected(
            "subject_mismatch",
            format!("the event belongs on {}", stored.envelope.subject()),
        ));
    }
    Ok(())
}
