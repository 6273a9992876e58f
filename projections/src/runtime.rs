//! [`Checkpointed`]: one projection over a sled database, applying events exactly once
//! in transactions that also move its checkpoint (a batch of events per transaction, or
//! one event); status and rejected events.
//!
//! Reset and dump are in `runtime/maintenance.rs`; rebuilding in memory in
//! `runtime/bulk.rs`; retiring finished work with age in `runtime/retire.rs`; the async
//! drivers (catch-up, follow, rebuild) in `drive.rs`.

use std::path::Path;
use std::sync::atomic::AtomicI64;

use fleet_events::store::{ReadError, Stored};
use sled::Tree;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

use crate::checkpoint::{
    Checkpoint, META, REJECTED, RejectedEvent, Rejection, Status, rebuilding_key, rejected_key,
    rejected_prefix, rejected_seq,
};
use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection};

pub use bulk::{InMemory, Rebuild, WRITE_OUT_ENTRIES};
pub use retire::RETIRE_CHUNK;

/// The runtime's own trees come first in `all`: `meta`, then `rejected`.
const OWN: usize = 2;

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; the checkpoint is its sequence.
    Applied,
    /// At or below the checkpoint: applied before, nothing changed.
    Skipped,
    /// Recorded as rejected with this kind; the checkpoint is its sequence.
    Rejected(&'static str),
}

/// One key and value of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The tree's name: `meta`, `rejected`, or one of [`Projection::TREES`].
    pub tree: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Why a transaction was aborted.
enum Abort {
    Rejected { kind: &'static str, reason: String },
    Corrupt { tree: &'static str, reason: String },
}

type TxResult<T> = Result<T, ConflictableTransactionError<Abort>>;

/// Why a batch transaction was aborted: the index of the first message it cannot apply
/// in bulk.
struct StopAt(usize);

/// Turns an abort of the per-event kind into a stop of a batch at `at`.
fn stop_at(
    at: usize,
) -> impl Fn(ConflictableTransactionError<Abort>) -> ConflictableTransactionError<StopAt> {
    move |e| match e {
        ConflictableTransactionError::Abort(_) => ConflictableTransactionError::Abort(StopAt(at)),
        ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
        ConflictableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
    }
}

/// A projection `P` over a sled database: state and checkpoint in one transaction.
///
/// Durability: the state change of an event (or of a batch of events, see
/// [`Checkpointed::apply_batch`]), the checkpoint and (for a rejected event) its
/// `rejected` record are one sled transaction, so after a crash sled recovers them
/// together or not at all. What was applied but not yet flushed may be lost; the
/// checkpoint is lost with it, so those events are applied again from the log: exactly
/// once in effect. The drivers flush after a catch-up and every second while following;
/// anything that must survive a crash (an ack, a reply that depends on the read model)
/// waits for [`Checkpointed::flush`].
///
/// Opening and applying block on sled (fast, mostly in memory); flushing is async.
pub struct Checkpointed<P: Projection> {
    projection: P,
    db: sled::Db,
    /// `meta`, `rejected`, then `P::TREES` in order.
    all: Vec<Tree>,
    /// The stored retention horizon (see `runtime/retire.rs`), read once at open.
    retired: AtomicI64,
}

impl<P: Projection> Checkpointed<P> {
    /// Opens (or creates) the database at `path` for `projection`.
    pub fn open(path: impl AsRef<Path>, projection: P) -> Result<Self, ProjectionError> {
        Self::with_db(open_sled(path.as_ref())?, projection)
    }

    /// Uses an open database, which other projections may share. Finishes an interrupted
    /// rebuild, and resets a model stored with another [`Projection::VERSION`].
    pub fn with_db(db: sled::Db, projection: P) -> Result<Self, ProjectionError> {
        check_definition::<P>()?;
        let mut all = Vec::with_capacity(OWN + P::TREES.len());
        for name in [META, REJECTED].iter().chain(P::TREES) {
            all.push(db.open_tree(name)?);
        }
        let mut this = Self {
            projection,
            db,
            all,
            retired: AtomicI64::new(retire::NOTHING_RETIRED),
        };
        if this.meta().contains_key(rebuilding_key(P::NAME))? {
            tracing::warn!(projection = P::NAME, "finishing an interrupted rebuild");
            this.finish_reset()?;
        } else if let Some(stored) = this.stored_checkpoint()?
            && stored.version != P::VERSION
        {
            tracing::warn!(
                projection = P::NAME,
                stored = stored.version,
                current = P::VERSION,
                "stored with another format version: resetting for a rebuild"
            );
            this.reset()?;
        }
        this.load_retention()?;
        Ok(this)
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The model's trees, in [`Projection::TREES`] order, for queries.
    pub fn trees(&self) -> &[Tree] {
        &self.all[OWN..]
    }

    /// The database.
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    fn meta(&self) -> &Tree {
        &self.all[0]
    }

    fn rejected_tree(&self) -> &Tree {
        &self.all[1]
    }

    fn stored_checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError> {
        match self.meta().get(P::NAME)? {
            None => Ok(None),
            Some(bytes) => Checkpoint::decode(&bytes)
                .map(Some)
                .ok_or_else(|| corrupt::<P>(META, "the checkpoint is not 12 bytes")),
        }
    }

    /// The last stream sequence applied (or rejected); 0 before the first.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(self.stored_checkpoint()?.map_or(0, |c| c.seq))
    }

    /// The checkpoint and the number of rejected events.
    pub fn status(&self) -> Result<Status, ProjectionError> {
        let rejected = self.rejected_tree().scan_prefix(rejected_prefix(P::NAME));
        Ok(Status {
            checkpoint: self.checkpoint()?,
            rejected: u64::try_from(rejected.count()).unwrap_or(u64::MAX),
        })
    }

    /// Every event the projection rejected, in sequence order.
    pub fn rejected(&self) -> Result<Vec<RejectedEvent>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.rejected_tree().scan_prefix(rejected_prefix(P::NAME)) {
            let (key, value) = item?;
            let seq = rejected_seq(P::NAME, &key)
                .ok_or_else(|| corrupt::<P>(REJECTED, "a key is not name and sequence"))?;
            let record: Rejection =
                postcard::from_bytes(&value).map_err(|e| corrupt::<P>(REJECTED, e))?;
            out.push(RejectedEvent {
                seq,
                subject: record.subject,
                kind: record.kind,
                reason: record.reason,
            });
        }
        Ok(out)
    }

    /// Applies one replayed message: an event, or why it is not one. An event at or below
    /// the checkpoint is skipped; an undecodable message or an event the model rejects is
    /// recorded in `rejected` with the checkpoint, counted and logged. Only a transport
    /// error ([`ProjectionError::Read`]), storage trouble or corrupt state is an `Err`.
    pub fn apply(&self, item: Result<Stored, ReadError>) -> Result<Outcome, ProjectionError> {
        self.retire_for(&item)?;
        match item {
            Ok(stored) => self.apply_event(&stored),
            Err(ReadError::Undecodable {
                seq,
                subject,
                error,
            }) => self.reject(seq, &subject, "undecodable", &error.to_string()),
            Err(e) => Err(ProjectionError::Read(e)),
        }
    }

    /// Applies replayed messages in order, with the outcome of each: the same outcomes, and
    /// the same stored bytes, as [`Checkpointed::apply`] on each in turn, in far fewer
    /// transactions. The events are applied in one transaction that reads the checkpoint
    /// once, skips what is at or below it, and writes the last applied sequence as the
    /// new checkpoint; an event sees what the batch's earlier events wrote. If an event is
    /// rejected, a message is undecodable or the model reports corrupt state, nothing of
    /// that transaction is kept: the events before it are applied in one transaction,
    /// that one on its own as [`Checkpointed::apply`] does (recorded as rejected, or the
    /// error returned), and the rest as a batch again. A transport error ends the batch:
    /// what comes before it is applied, then it is returned as [`ProjectionError::Read`].
    pub fn apply_batch(
        &self,
        mut items: Vec<Result<Stored, ReadError>>,
    ) -> Result<Vec<Outcome>, ProjectionError> {
        let transport = items
            .iter()
            .position(|item| matches!(item, Err(ReadError::Nats { .. })));
        let error = transport
            .and_then(|at| items.drain(at..).next())
            .and_then(Result::err);
        let mut outcomes = Vec::with_capacity(items.len());
        let mut all = items.as_slice();
        while let Some(first) = all.first() {
            // A batch ends before an event that moves the retention horizon: what it
            // calls for is retired between the two, as one by one.
            self.retire_for(first)?;
            let end = 1 + all[1..]
                .iter()
                .position(|item| self.moves_horizon(item))
                .unwrap_or(all.len() - 1);
            self.apply_segment(&all[..end], &mut outcomes)?;
            all = &all[end..];
        }
        match error {
            Some(e) => Err(ProjectionError::Read(e)),
            None => Ok(outcomes),
        }
    }

    /// [`Checkpointed::apply_batch`] of messages that do not move the retention horizon.
    fn apply_segment(
        &self,
        items: &[Result<Stored, ReadError>],
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), ProjectionError> {
        let mut rest = items;
        while !rest.is_empty() {
            match self.try_batch(rest)? {
                Ok(applied) => {
                    outcomes.extend(applied);
                    break;
                }
                Err(at) => {
                    // The messages before `at` go through in bulk. (They can only stop
                    // again if something else changed the model in between: then they
                    // are applied one at a time too.)
                    if at > 0 {
                        match self.try_batch(&rest[..at])? {
                            Ok(applied) => outcomes.extend(applied),
                            Err(_) => {
                                for item in &rest[..at] {
                                    outcomes.push(self.apply_ref(item)?);
                                }
                            }
                        }
                    }
                    outcomes.push(self.apply_ref(&rest[at])?);
                    rest = &rest[at + 1..];
                }
            }
        }
        Ok(())
    }

    /// [`Checkpointed::apply`] of a borrowed message.
    fn apply_ref(&self, item: &Result<Stored, ReadError>) -> Result<Outcome, ProjectionError> {
        match item {
            Ok(stored) => self.apply_event(stored),
            Err(ReadError::Undecodable {
                seq,
                subject,
                error,
            }) => self.reject(*seq, subject, "undecodable", &error.to_string()),
            Err(ReadError::Nats { what, message }) => Err(ProjectionError::Read(ReadError::Nats {
                what: what.clone(),
                message: message.clone(),
            })),
        }
    }

    /// Applies `items` (events and undecodable messages) in one transaction, or returns the
    /// index of the first one that cannot be applied in bulk (rejected, undecodable,
    /// corrupt state) with nothing changed.
    fn try_batch(
        &self,
        items: &[Result<Stored, ReadError>],
    ) -> Result<Result<Vec<Outcome>, usize>, ProjectionError> {
        let result = self.all.as_slice().transaction(|trees| {
            let (own, model) = trees.split_at(OWN);
            let model = dyn_trees(model);
            let start = checkpoint_in::<P>(&own[0]).map_err(stop_at(0))?;
            let mut checkpoint = start;
            let mut outcomes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let stored = match item {
                    Ok(stored) if stored.seq <= checkpoint => {
                        outcomes.push(Outcome::Skipped);
                        continue;
                    }
                    Ok(stored) => stored,
                    Err(ReadError::Undecodable { seq, .. }) if *seq <= checkpoint => {
                        outcomes.push(Outcome::Skipped);
                        continue;
                    }
                    Err(_) => return Err(ConflictableTransactionError::Abort(StopAt(i))),
                };
                match self.projection.apply(&model, stored) {
                    Ok(()) => {}
                    Err(ApplyError::Transaction(e)) => return Err(e.into()),
                    Err(ApplyError::Rejected { .. } | ApplyError::Corrupt { .. }) => {
                        return Err(ConflictableTransactionError::Abort(StopAt(i)));
                    }
                }
                checkpoint = stored.seq;
                outcomes.push(Outcome::Applied);
            }
            if checkpoint != start {
                write_checkpoint::<P>(&own[0], checkpoint).map_err(stop_at(0))?;
            }
            Ok((outcomes, checkpoint))
        });
        match result {
            Ok((outcomes, checkpoint)) => {
                let applied = outcomes.iter().filter(|o| **o == Outcome::Applied).count();
                if applied > 0 {
                    self.applied(applied as u64, checkpoint);
                }
                Ok(Ok(outcomes))
            }
            Err(TransactionError::Abort(StopAt(at))) => Ok(Err(at)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn apply_event(&self, stored: &Stored) -> Result<Outcome, ProjectionError> {
        let result = self.all.as_slice().transaction(|trees| {
            let (own, model) = trees.split_at(OWN);
            if checkpoint_in::<P>(&own[0])? >= stored.seq {
                return Ok(Outcome::Skipped);
            }
            match self.projection.apply(&dyn_trees(model), stored) {
                Ok(()) => {}
                Err(ApplyError::Transaction(e)) => return Err(e.into()),
                Err(ApplyError::Rejected { kind, reason }) => {
                    return Err(ConflictableTransactionError::Abort(Abort::Rejected {
                        kind,
                        reason,
                    }));
                }
                Err(ApplyError::Corrupt { tree, reason }) => {
                    return Err(ConflictableTransactionError::Abort(Abort::Corrupt {
                        tree,
                        reason,
                    }));
                }
            }
            write_checkpoint::<P>(&own[0], stored.seq)?;
            Ok(Outcome::Applied)
        });
        match result {
            Ok(outcome) => {
                if outcome == Outcome::Applied {
                    self.applied(1, stored.seq);
                }
                Ok(outcome)
            }
            Err(TransactionError::Abort(Abort::Rejected { kind, reason })) => {
                self.reject(stored.seq, &stored.subject, kind, &reason)
            }
            Err(TransactionError::Abort(Abort::Corrupt { tree, reason })) => {
                Err(corrupt::<P>(tree, reason))
            }
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Records `seq` as rejected and moves the checkpoint past it, in one transaction.
    fn reject(
        &self,
        seq: u64,
        subject: &str,
        kind: &'static str,
        reason: &str,
    ) -> Result<Outcome, ProjectionError> {
        let record = Rejection {
            subject: subject.to_owned(),
            kind: kind.to_owned(),
            reason: reason.to_owned(),
        };
        let value = postcard::to_stdvec(&record).map_err(|e| corrupt::<P>(REJECTED, e))?;
        let key = rejected_key(P::NAME, seq);
        let result = self.all[..OWN].transaction(|own| {
            if checkpoint_in::<P>(&own[0])? >= seq {
                return Ok(Outcome::Skipped);
            }
            own[1].insert(key.as_slice(), value.as_slice())?;
            write_checkpoint::<P>(&own[0], seq)?;
            Ok(Outcome::Rejected(kind))
        });
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(TransactionError::Abort(Abort::Corrupt { tree, reason })) => {
                return Err(corrupt::<P>(tree, reason));
            }
            Err(TransactionError::Abort(Abort::Rejected { reason, .. })) => {
                return Err(corrupt::<P>(REJECTED, reason));
            }
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        if let Outcome::Rejected(kind) = outcome {
            count_rejected::<P>(seq, subject, kind, reason);
        }
        Ok(outcome)
    }

    /// Counts `n` applied events; the checkpoint is now `seq`.
    fn applied(&self, n: u64, seq: u64) {
        metrics::counter!("fleet_projection_applied_events_total", "projection" => P::NAME)
            .increment(n);
        metrics::gauge!("fleet_projection_checkpoint_sequence", "projection" => P::NAME)
            .set(seq as f64);
    }

    /// Writes everything applied so far to disk.
    ///
    /// On a blocking thread of tokio, not with sled's `flush_async`: that runs the flush on
    /// sled's own pool, whose 7 standing threads also write the log buffers a flush waits
    /// for, and which adds a thread only when more than 7 tasks queue. Seven read models
    /// flushing one database at once took every thread and waited for ever.
    pub async fn flush(&self) -> Result<(), ProjectionError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| sled::Error::Io(std::io::Error::other(e)))??;
        Ok(())
    }
}

/// A transaction's trees as [`Projection::apply`] takes them.
fn dyn_trees(trees: &[TransactionalTree]) -> Vec<&dyn ModelTree> {
    trees.iter().map(|tree| tree as &dyn ModelTree).collect()
}

/// Counts and logs the rejection of `seq`; the checkpoint is now `seq`.
fn count_rejected<P: Projection>(seq: u64, subject: &str, kind: &'static str, reason: &str) {
    metrics::counter!(
        "fleet_projection_rejected_events_total",
        "projection" => P::NAME,
        "reason" => kind
    )
    .increment(1);
    tracing::warn!(projection = P::NAME, seq, subject, reason = kind, detail = %reason, "event rejected");
    metrics::gauge!("fleet_projection_checkpoint_sequence", "projection" => P::NAME)
        .set(seq as f64);
}

fn check_definition<P: Projection>() -> Result<(), ProjectionError> {
    let wrong = |reason: String| ProjectionError::Definition {
        projection: P::NAME,
        reason,
    };
    if P::NAME.is_empty() || P::NAME.contains('\0') {
        return Err(wrong(
            "the name must be non-empty, without zero bytes".into(),
        ));
    }
    let prefix = format!("{}.", P::NAME);
    for (i, name) in P::TREES.iter().enumerate() {
        if !name.starts_with(&prefix) || name.len() == prefix.len() {
            return Err(wrong(format!(
                "tree {name:?} is not named {prefix}<something>"
            )));
        }
        if P::TREES[..i].contains(name) {
            return Err(wrong(format!("tree {name:?} is listed twice")));
        }
    }
    Ok(())
}

fn corrupt<P: Projection>(tree: &str, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: P::NAME,
        tree: tree.to_owned(),
        reason: reason.to_string(),
    }
}

fn checkpoint_in<P: Projection>(meta: &TransactionalTree) -> TxResult<u64> {
    match meta.get(P::NAME)? {
        None => Ok(0),
        Some(bytes) => Checkpoint::decode(&bytes).map(|c| c.seq).ok_or_else(|| {
            ConflictableTransactionError::Abort(Abort::Corrupt {
                tree: META,
                reason: "the checkpoint is not 12 bytes".into(),
            })
        }),
    }
}

fn write_checkpoint<P: Projection>(meta: &TransactionalTree, seq: u64) -> TxResult<()> {
    let checkpoint = Checkpoint {
        seq,
        version: P::VERSION,
    };
    meta.insert(P::NAME, &checkpoint.encode())?;
    Ok(())
}

mod bulk;
mod maintenance;
mod retire;
#[cfg(test)]
mod tests;

/// Opening a sled database, one way for the agent and the read models.
pub use fleet_events::local_db::open_sled;
