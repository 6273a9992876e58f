//! Maintenance of a [`Checkpointed`] projection: resetting it for a rebuild (safely
//! across a crash) and dumping everything it stores (its retention horizon included).

use super::{Checkpointed, Entry};
use crate::checkpoint::{META, REJECTED, rebuilding_key, rejected_prefix};
use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::retention::retired_key;

impl<P: Projection> Checkpointed<P> {
    /// Empties the model's trees and drops its rejected events and its checkpoint, so the next
    /// catch-up replays from sequence 1. Safe against a crash: a marker written first
    /// makes the next [`Checkpointed::open`] finish the job.
    pub fn reset(&mut self) -> Result<(), ProjectionError> {
        self.meta().insert(rebuilding_key(P::NAME), &[])?;
        self.db.flush()?;
        self.finish_reset()
    }

    pub(super) fn finish_reset(&mut self) -> Result<(), ProjectionError> {
        // Cleared rather than dropped: `Db::drop_tree` leaves every handle on the tree
        // (a query holding a clone) pointing at nothing.
        for tree in self.trees() {
            tree.clear()?;
        }
        let mut batch = sled::Batch::default();
        for key in self
            .rejected_tree()
            .scan_prefix(rejected_prefix(P::NAME))
            .keys()
        {
            batch.remove(key?);
        }
        self.rejected_tree().apply_batch(batch)?;
        self.meta().remove(P::NAME)?;
        self.meta().remove(retired_key(P::NAME))?;
        self.retired.store(
            super::retire::NOTHING_RETIRED,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.meta().remove(rebuilding_key(P::NAME))?;
        self.db.flush()?;
        tracing::info!(projection = P::NAME, "projection reset");
        Ok(())
    }

    /// Everything the projection stores, in a fixed order: its checkpoint, its rejected
    /// events, then each tree of the model. Two databases hold the same read model when
    /// their dumps are equal.
    pub fn dump(&self) -> Result<Vec<Entry>, ProjectionError> {
        let entry = |tree: &str, key: &[u8], value: &[u8]| Entry {
            tree: tree.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let mut out = Vec::new();
        if let Some(value) = self.meta().get(P::NAME)? {
            out.push(entry(META, P::NAME.as_bytes(), &value));
        }
        let retired = retired_key(P::NAME);
        if let Some(value) = self.meta().get(&retired)? {
            out.push(entry(META, &retired, &value));
        }
        for item in self.rejected_tree().scan_prefix(rejected_prefix(P::NAME)) {
            let (key, value) = item?;
            out.push(entry(REJECTED, &key, &value));
        }
        for (name, tree) in P::TREES.iter().zip(self.trees()) {
            for item in tree.iter() {
                let (key, value) = item?;
                out.push(entry(name, &key, &value));
            }
        }
        Ok(out)
    }
}
