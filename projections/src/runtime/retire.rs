//! Retiring a [`Checkpointed`] model's finished work as the log's clock moves (see
//! [`crate::retention`]): before an event whose horizon is past the stored one is
//! applied, every item the model queued as finished before that horizon goes through
//! [`Projection::retire`], in chunks of [`RETIRE_CHUNK`] items per transaction, and then
//! the new horizon is stored.
//!
//! Crash safety: a chunk removes its queue entries in the transaction that retires them,
//! so a retirement cut short goes on where it stopped when the event that called for it
//! is applied again; the horizon is stored only after the last chunk, and before that
//! event's checkpoint. Retiring is idempotent and happens at the same events in every
//! path (one by one, in batches, rebuilt in memory), so all of them store the same bytes.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use fleet_events::store::{ReadError, Stored};
use sled::IVec;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::bulk::InMemory;
use super::{Abort, Checkpointed, OWN, corrupt, dyn_trees};
use crate::checkpoint::META;
use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection};
use crate::retention::{Retention, Retired, micros_bytes, retired_key};

/// Queue entries retired per transaction: bounds a transaction's size when a day of a
/// large fleet (hundreds of thousands of runs) leaves the window at once.
pub const RETIRE_CHUNK: usize = 1024;

/// The horizon before any event: nothing retired.
pub(super) const NOTHING_RETIRED: i64 = i64::MIN;

/// The time an item carries, if it is an event.
fn event_time(item: &Result<Stored, ReadError>) -> Option<DateTime<Utc>> {
    item.as_ref().ok().map(|stored| stored.envelope.at)
}

impl<P: Projection> Checkpointed<P> {
    /// Reads the stored horizon at open. A model kept with other days than the
    /// projection's are reset for a rebuild: what it retired with fewer days is gone, and
    /// what it kept with more must not stay, so only a rebuild gives what these days give.
    pub(super) fn load_retention(&mut self) -> Result<(), ProjectionError> {
        let stored = match self.meta().get(retired_key(P::NAME))? {
            None => None,
            Some(bytes) => Some(
                Retired::decode(&bytes)
                    .ok_or_else(|| corrupt::<P>(META, "the retention is not 12 bytes"))?,
            ),
        };
        if let (Some(retention), Some(stored)) = (self.projection.retention(), stored)
            && stored.days != retention.days
        {
            tracing::warn!(
                projection = P::NAME,
                stored_days = stored.days,
                days = retention.days,
                "kept for another number of days: resetting for a rebuild"
            );
            self.reset()?;
            return Ok(());
        }
        let before = stored.map_or(NOTHING_RETIRED, |r| r.before);
        self.retired.store(before, Ordering::Relaxed);
        Ok(())
    }

    /// The horizon everything before which is retired (microseconds); [`i64::MIN`] before
    /// the first event or without a retention.
    pub fn retired_before(&self) -> i64 {
        self.retired.load(Ordering::Relaxed)
    }

    /// Whether `item` moves the horizon past the stored one.
    pub(super) fn moves_horizon(&self, item: &Result<Stored, ReadError>) -> bool {
        match (self.projection.retention(), event_time(item)) {
            (Some(retention), Some(at)) => retention.horizon(at) > self.retired_before(),
            _ => false,
        }
    }

    /// Retires what `item`'s horizon calls for, if it moves it.
    pub(super) fn retire_for(
        &self,
        item: &Result<Stored, ReadError>,
    ) -> Result<(), ProjectionError> {
        let (Some(retention), Some(at)) = (self.projection.retention(), event_time(item)) else {
            return Ok(());
        };
        let target = retention.horizon(at);
        if target <= self.retired_before() {
            return Ok(());
        }
        let mut retired = 0;
        loop {
            let chunk = self.retire_chunk(retention, target)?;
            if chunk == 0 {
                break;
            }
            retired += chunk;
        }
        let stored = Retired {
            before: target,
            days: retention.days,
        };
        self.meta().insert(retired_key(P::NAME), &stored.encode())?;
        self.retired.store(target, Ordering::Relaxed);
        counted::<P>(retired, target);
        Ok(())
    }

    /// Retires up to [`RETIRE_CHUNK`] queued items that ended before `target` in one
    /// transaction; returns how many (0: none are left).
    pub(crate) fn retire_chunk(
        &self,
        retention: Retention,
        target: i64,
    ) -> Result<usize, ProjectionError> {
        let end = micros_bytes(target);
        let chunk: Vec<(IVec, IVec)> = self.trees()[retention.queue]
            .range(..end.as_slice())
            .take(RETIRE_CHUNK)
            .collect::<Result<_, _>>()?;
        if chunk.is_empty() {
            return Ok(0);
        }
        let queue = P::TREES[retention.queue];
        let result = self.all[OWN..].transaction(|trees| {
            let model = dyn_trees(trees);
            for (key, value) in &chunk {
                trees[retention.queue].remove(key)?;
                match self.projection.retire(&model, key, value) {
                    Ok(()) => {}
                    Err(ApplyError::Transaction(e)) => return Err(e.into()),
                    Err(e) => {
                        let (tree, reason) = refusal::<P>(e, queue);
                        let abort = Abort::Corrupt { tree, reason };
                        return Err(ConflictableTransactionError::Abort(abort));
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(chunk.len()),
            Err(TransactionError::Abort(Abort::Corrupt { tree, reason })) => {
                Err(corrupt::<P>(tree, reason))
            }
            Err(TransactionError::Abort(Abort::Rejected { reason, .. })) => {
                Err(corrupt::<P>(queue, reason))
            }
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}

impl<P: Projection> InMemory<'_, P> {
    /// [`Checkpointed::retire_for`] during a rebuild: the pending writes go to sled first
    /// (the queue is scanned there), then each chunk is retired through the in-memory
    /// trees like an event.
    pub(super) fn retire_for(&mut self, stored: &Stored) -> Result<(), ProjectionError> {
        let Some(retention) = self.model.projection.retention() else {
            return Ok(());
        };
        let target = retention.horizon(stored.envelope.at);
        if target <= self.retired {
            return Ok(());
        }
        let end = micros_bytes(target);
        let mut retired = 0;
        loop {
            self.hand_off(1, 0)?;
            let chunk: Vec<(IVec, IVec)> = self.trees[retention.queue]
                .base
                .range(..end.as_slice())
                .take(RETIRE_CHUNK)
                .collect::<Result<_, _>>()?;
            if chunk.is_empty() {
                break;
            }
            let trees: Vec<&dyn ModelTree> =
                self.trees.iter().map(|t| t as &dyn ModelTree).collect();
            for (key, value) in &chunk {
                let result = trees[retention.queue]
                    .remove(key)
                    .and_then(|()| self.model.projection.retire(&trees, key, value));
                if let Err(e) = result {
                    let (tree, reason) = refusal::<P>(e, P::TREES[retention.queue]);
                    return Err(corrupt::<P>(tree, reason));
                }
            }
            self.commit_all();
            retired += chunk.len();
        }
        self.retired = target;
        counted::<P>(retired, target);
        Ok(())
    }
}

/// Why retiring an item failed, as corrupt state (the tree, what is wrong): an item the
/// model queued is its own, so a refusal means the queue (tree `queue`) does not match
/// the model.
fn refusal<P: Projection>(e: ApplyError, queue: &'static str) -> (&'static str, String) {
    match e {
        ApplyError::Rejected { reason, .. } => (queue, reason),
        ApplyError::Corrupt { tree, reason } => (tree, reason),
        ApplyError::Transaction(e) => (P::NAME, format!("retiring outside a transaction: {e:?}")),
    }
}

/// Counts and logs a retirement of `retired` items up to `target`.
fn counted<P: Projection>(retired: usize, target: i64) {
    if retired == 0 {
        return;
    }
    metrics::counter!("fleet_projection_retired_total", "projection" => P::NAME)
        .increment(retired as u64);
    let before = DateTime::from_timestamp_micros(target).map(|t| t.to_rfc3339());
    tracing::info!(
        projection = P::NAME,
        retired,
        before = before.as_deref().unwrap_or("?"),
        "finished work retired from the read model"
    );
}
