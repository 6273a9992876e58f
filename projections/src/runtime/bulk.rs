//! Rebuilding a [`Checkpointed`] projection in memory: its events are applied by the same
//! [`Projection::apply`] as always, to pending writes held in memory ([`Overlay`])
//! instead of a sled transaction per batch. Overwrites of one key (a task's every state,
//! an agent's every count) cost a map insert; every [`WRITE_OUT_ENTRIES`] entries a tree
//! hands what it holds to the model's writer thread, which writes them to sled in key
//! order while the rebuild goes on, so sled sees (nearly) only final values and memory
//! stays bounded.
//!
//! Crash safety: [`Rebuild::begin`] resets the model and leaves the `rebuilding` marker
//! on disk until [`Rebuild::finish`] has written everything and then the checkpoint; a
//! database opened with the marker present is reset again ([`Checkpointed::with_db`]),
//! so a half-written rebuild is never mistaken for a model.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hash::Hasher;
use std::ops::Range;
use std::sync::{Arc, mpsc};

use fxhash::{FxHashMap, FxHashSet, FxHasher};

use fleet_events::store::{ReadError, Stored};
use sled::IVec;
use sled::transaction::UnabortableTransactionError;

use super::{Checkpointed, Outcome, corrupt};
use crate::checkpoint::{Checkpoint, REJECTED, Rejection, rebuilding_key, rejected_key};
use crate::drive::Progress;
use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection};
use crate::retention::{Retired, retired_key};

/// Entries a tree holds in memory before they are handed to the model's writer thread,
/// which writes them to sled while the rebuild goes on: bounds a rebuild's memory and
/// overlaps sled's (slow) writes with applying events.
pub const WRITE_OUT_ENTRIES: usize = 2048;

/// Sets of entries handed to the writer and not yet written, per model: when there are
/// more, the rebuild waits for the writer.
const MAX_IN_FLIGHT: usize = 4;

/// One model being rebuilt in memory, whatever its projection: what
/// [`crate::drive::rebuild_together`] drives.
pub trait Rebuild: Send {
    /// The projection's name.
    fn name(&self) -> &'static str;
    /// The subject filter of the events it reads.
    fn filter(&self) -> String;
    /// Drops the model's state and marks it as being rebuilt.
    fn begin(&mut self) -> Result<(), ProjectionError>;
    /// Applies one replayed message (in stream order, matching [`Rebuild::filter`]).
    /// Rejections are recorded as the incremental path records them; only storage
    /// trouble or corrupt state is an `Err`.
    fn feed(&mut self, item: &Result<Stored, ReadError>) -> Result<Outcome, ProjectionError>;
    /// Hands the entries of each tree that holds [`WRITE_OUT_ENTRIES`] or more to the
    /// writer thread; waits for it if it is too far behind. Call between messages.
    fn write_out_if_large(&mut self) -> Result<(), ProjectionError>;
    /// Writes everything, then the checkpoint, removes the marker and flushes.
    fn finish(&mut self) -> Result<Progress, ProjectionError>;
}

/// A tree's pending writes: a value, or `None` for a removal. Keys are short and ours,
/// so the fast non-keyed hash (sled's own) is enough.
type Pending = FxHashMap<Vec<u8>, Option<IVec>>;

/// A key the current event wrote (its bytes in [`Overlay::undo_keys`]), with its entry in
/// the pending writes before.
type Undo = (Range<usize>, Option<Option<IVec>>);

/// A tree's pending writes over its sled tree; what one event wrote can be undone.
pub(super) struct Overlay {
    pub(super) base: sled::Tree,
    writes: RefCell<Pending>,
    undo: RefCell<Vec<Undo>>,
    /// The keys of `undo`, one after the other: no allocation per write.
    undo_keys: RefCell<Vec<u8>>,
    /// Writes handed to the writer thread, oldest first, until it has written them.
    handed: RefCell<VecDeque<Arc<Pending>>>,
    /// Hashes of every key handed to the writer: a key not among them is not in `base`
    /// either, so reading it needs no sled lookup (a new task's keys, mostly).
    handed_keys: RefCell<FxHashSet<u64>>,
}

impl Overlay {
    fn new(base: sled::Tree) -> Self {
        Self {
            base,
            writes: RefCell::default(),
            undo: RefCell::default(),
            undo_keys: RefCell::default(),
            handed: RefCell::default(),
            handed_keys: RefCell::default(),
        }
    }

    fn write(&self, key: &[u8], value: Option<IVec>) {
        let mut writes = self.writes.borrow_mut();
        let before = match writes.get_mut(key) {
            Some(entry) => Some(std::mem::replace(entry, value)),
            None => writes.insert(key.to_vec(), value),
        };
        let mut keys = self.undo_keys.borrow_mut();
        let start = keys.len();
        keys.extend_from_slice(key);
        self.undo.borrow_mut().push((start..keys.len(), before));
    }

    /// Keeps what the current event wrote.
    fn commit(&self) {
        self.undo.borrow_mut().clear();
        self.undo_keys.borrow_mut().clear();
    }

    /// Drops what the current event wrote.
    fn rollback(&self) {
        let mut writes = self.writes.borrow_mut();
        let keys = std::mem::take(&mut *self.undo_keys.borrow_mut());
        for (range, before) in self.undo.borrow_mut().drain(..).rev() {
            let key = &keys[range];
            match before {
                Some(entry) => writes.insert(key.to_vec(), entry),
                None => writes.remove(key),
            };
        }
    }

    fn len(&self) -> usize {
        self.writes.borrow().len()
    }

    /// Takes the pending writes for the writer; they stay readable until it has written
    /// them ([`Overlay::written_one`]).
    fn hand_off(&self) -> Arc<Pending> {
        let pending = Arc::new(std::mem::take(&mut *self.writes.borrow_mut()));
        self.handed_keys
            .borrow_mut()
            .extend(pending.keys().map(|key| key_hash(key)));
        self.handed.borrow_mut().push_back(Arc::clone(&pending));
        pending
    }

    /// The oldest handed-off writes are in sled now.
    fn written_one(&self) {
        self.handed.borrow_mut().pop_front();
    }

    fn clear(&self) {
        self.writes.borrow_mut().clear();
        self.undo.borrow_mut().clear();
        self.undo_keys.borrow_mut().clear();
        self.handed.borrow_mut().clear();
        self.handed_keys.borrow_mut().clear();
    }
}

impl ModelTree for Overlay {
    fn get(&self, key: &[u8]) -> Result<Option<IVec>, ApplyError> {
        if let Some(entry) = self.writes.borrow().get(key) {
            return Ok(entry.clone());
        }
        if !self.handed_keys.borrow().contains(&key_hash(key)) {
            return Ok(None);
        }
        for pending in self.handed.borrow().iter().rev() {
            if let Some(entry) = pending.get(key) {
                return Ok(entry.clone());
            }
        }
        self.base
            .get(key)
            .map_err(|e| ApplyError::Transaction(UnabortableTransactionError::Storage(e)))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        self.write(key, Some(IVec::from(value)));
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), ApplyError> {
        self.write(key, None);
        Ok(())
    }
}

/// The hash [`Overlay::handed_keys`] keeps of a key.
fn key_hash(key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key);
    hasher.finish()
}

/// Writes `pending` to `tree` in one batch, in key order (sled fills its pages in order
/// instead of splitting them all over).
fn write(tree: &sled::Tree, pending: &Pending) -> Result<(), sled::Error> {
    let mut entries: Vec<_> = pending.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut batch = sled::Batch::default();
    for (key, value) in entries {
        match value {
            Some(value) => batch.insert(key.as_slice(), value.clone()),
            None => batch.remove(key.as_slice()),
        }
    }
    tree.apply_batch(batch)
}

/// What the writer thread is asked: write these entries to the tree at this index.
type Job = (usize, sled::Tree, Arc<Pending>);

/// A model's writer thread: writes handed-off entries in the order given, and answers
/// with the index of each tree written.
struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Result<usize, sled::Error>>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: usize,
}

impl Writer {
    fn start() -> Result<Self, ProjectionError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rebuild-writer".into())
            .spawn(move || {
                for (index, tree, pending) in inbox {
                    let result = write(&tree, &pending).map(|()| index);
                    if outbox.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| ProjectionError::Storage(sled::Error::Io(e)))?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: 0,
        })
    }

    fn send(&mut self, job: Job) -> Result<(), ProjectionError> {
        let stopped = || writer_stopped("it stopped taking work");
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(job).map_err(|_| stopped())?;
        self.in_flight += 1;
        Ok(())
    }

    /// The indexes of trees written since the last call; waits until at most `max` jobs
    /// are in flight.
    fn finished(&mut self, max: usize) -> Result<Vec<usize>, ProjectionError> {
        let mut out = Vec::new();
        loop {
            let next = if self.in_flight > max {
                self.done.recv().map_err(|_| writer_stopped("it ended"))
            } else {
                match self.done.try_recv() {
                    Ok(result) => Ok(result),
                    Err(mpsc::TryRecvError::Empty) => return Ok(out),
                    Err(mpsc::TryRecvError::Disconnected) => Err(writer_stopped("it ended")),
                }
            };
            self.in_flight -= 1;
            out.push(next??);
        }
    }
}

impl Drop for Writer {
    /// Lets the thread finish what it was given, so nothing writes behind a later reset.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn writer_stopped(how: &str) -> ProjectionError {
    ProjectionError::Storage(sled::Error::ReportableBug(format!(
        "the rebuild's writer thread is gone: {how}"
    )))
}

/// A [`Checkpointed`] projection rebuilt in memory ([`Checkpointed::in_memory`]).
pub struct InMemory<'a, P: Projection> {
    pub(super) model: &'a mut Checkpointed<P>,
    pub(super) trees: Vec<Overlay>,
    rejected: Vec<(u64, Rejection)>,
    checkpoint: u64,
    progress: Progress,
    write_out_at: usize,
    /// Started with the first hand-off.
    writer: Option<Writer>,
    /// The retention horizon reached (see `runtime/retire.rs`).
    pub(super) retired: i64,
}

impl<P: Projection> Checkpointed<P> {
    /// This model as a [`Rebuild`]: see [`crate::drive::rebuild_together`].
    pub fn in_memory(&mut self) -> InMemory<'_, P> {
        let trees = self.trees().iter().cloned().map(Overlay::new).collect();
        InMemory {
            model: self,
            trees,
            rejected: Vec::new(),
            checkpoint: 0,
            progress: Progress::default(),
            write_out_at: WRITE_OUT_ENTRIES,
            writer: None,
            retired: super::retire::NOTHING_RETIRED,
        }
    }
}

impl<'a, P: Projection> InMemory<'a, P> {
    /// Hands a tree's entries to the writer once it holds `entries`, instead of
    /// [`WRITE_OUT_ENTRIES`] (tests use a small number to exercise reads through
    /// handed-off entries and sled).
    pub fn write_out_at(self, entries: usize) -> Self {
        Self {
            write_out_at: entries.max(1),
            ..self
        }
    }
}

impl<P: Projection> InMemory<'_, P> {
    /// Hands the entries of every tree holding at least `at` to the writer, then notes
    /// what it has written, waiting while more than `max_in_flight` sets are unwritten.
    pub(super) fn hand_off(
        &mut self,
        at: usize,
        max_in_flight: usize,
    ) -> Result<(), ProjectionError> {
        for (index, tree) in self.trees.iter().enumerate() {
            if tree.len() >= at.max(1) {
                if self.writer.is_none() {
                    self.writer = Some(Writer::start()?);
                }
                let pending = tree.hand_off();
                if let Some(writer) = &mut self.writer {
                    writer.send((index, tree.base.clone(), pending))?;
                }
            }
        }
        if let Some(writer) = &mut self.writer {
            for index in writer.finished(max_in_flight)? {
                self.trees[index].written_one();
            }
        }
        Ok(())
    }

    /// Keeps what the trees were given since the last commit.
    pub(super) fn commit_all(&self) {
        self.trees.iter().for_each(Overlay::commit);
    }

    fn apply(&mut self, stored: &Stored) -> Result<Outcome, ProjectionError> {
        self.retire_for(stored)?;
        let trees: Vec<&dyn ModelTree> = self.trees.iter().map(|t| t as &dyn ModelTree).collect();
        let result = self.model.projection.apply(&trees, stored);
        match result {
            Ok(()) => {
                self.trees.iter().for_each(Overlay::commit);
                self.checkpoint = stored.seq;
                Ok(Outcome::Applied)
            }
            Err(ApplyError::Rejected { kind, reason }) => {
                self.trees.iter().for_each(Overlay::rollback);
                Ok(self.reject(stored.seq, &stored.subject, kind, reason))
            }
            Err(ApplyError::Corrupt { tree, reason }) => Err(corrupt::<P>(tree, reason)),
            Err(ApplyError::Transaction(e)) => Err(match e {
                UnabortableTransactionError::Storage(e) => ProjectionError::Storage(e),
                UnabortableTransactionError::Conflict => {
                    corrupt::<P>(REJECTED, "a conflict outside a transaction")
                }
            }),
        }
    }

    fn reject(&mut self, seq: u64, subject: &str, kind: &'static str, reason: String) -> Outcome {
        super::count_rejected::<P>(seq, subject, kind, &reason);
        self.rejected.push((
            seq,
            Rejection {
                subject: subject.to_owned(),
                kind: kind.to_owned(),
                reason,
            },
        ));
        self.checkpoint = seq;
        Outcome::Rejected(kind)
    }
}

impl<P: Projection> Rebuild for InMemory<'_, P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn filter(&self) -> String {
        self.model.projection.filter()
    }

    fn begin(&mut self) -> Result<(), ProjectionError> {
        self.model.reset()?;
        self.model.meta().insert(rebuilding_key(P::NAME), &[])?;
        self.model.db.flush()?;
        self.writer = None;
        self.trees.iter().for_each(Overlay::clear);
        self.rejected.clear();
        self.checkpoint = 0;
        self.retired = super::retire::NOTHING_RETIRED;
        self.progress = Progress::default();
        Ok(())
    }

    fn feed(&mut self, item: &Result<Stored, ReadError>) -> Result<Outcome, ProjectionError> {
        let outcome = match item {
            Ok(stored) if stored.seq <= self.checkpoint => Outcome::Skipped,
            Ok(stored) => self.apply(stored)?,
            Err(ReadError::Undecodable { seq, .. }) if *seq <= self.checkpoint => Outcome::Skipped,
            Err(ReadError::Undecodable {
                seq,
                subject,
                error,
            }) => self.reject(*seq, subject, "undecodable", error.to_string()),
            Err(ReadError::Nats { what, message }) => {
                return Err(ProjectionError::Read(ReadError::Nats {
                    what: what.clone(),
                    message: message.clone(),
                }));
            }
        };
        match outcome {
            Outcome::Applied => self.progress.applied += 1,
            Outcome::Skipped => self.progress.skipped += 1,
            Outcome::Rejected(_) => self.progress.rejected += 1,
        }
        Ok(outcome)
    }

    fn write_out_if_large(&mut self) -> Result<(), ProjectionError> {
        self.hand_off(self.write_out_at, MAX_IN_FLIGHT)
    }

    fn finish(&mut self) -> Result<Progress, ProjectionError> {
        self.hand_off(1, 0)?;
        self.writer = None;
        let mut rejected = sled::Batch::default();
        for (seq, record) in self.rejected.drain(..) {
            let value = postcard::to_stdvec(&record).map_err(|e| corrupt::<P>(REJECTED, e))?;
            rejected.insert(rejected_key(P::NAME, seq), value);
        }
        self.model.rejected_tree().apply_batch(rejected)?;
        // Everything written out is on disk before the checkpoint says it is there.
        self.model.db.flush()?;
        let mut meta = sled::Batch::default();
        if self.checkpoint > 0 {
            let checkpoint = Checkpoint {
                seq: self.checkpoint,
                version: P::VERSION,
            };
            meta.insert(P::NAME, checkpoint.encode().to_vec());
        }
        if let Some(retention) = self.model.projection.retention()
            && self.retired != super::retire::NOTHING_RETIRED
        {
            let retired = Retired {
                before: self.retired,
                days: retention.days,
            };
            meta.insert(retired_key(P::NAME), retired.encode().to_vec());
        }
        meta.remove(rebuilding_key(P::NAME));
        self.model.meta().apply_batch(meta)?;
        self.model
            .retired
            .store(self.retired, std::sync::atomic::Ordering::Relaxed);
        self.model.db.flush()?;
        if self.progress.applied > 0 {
            self.model.applied(self.progress.applied, self.checkpoint);
        }
        self.progress.checkpoint = self.checkpoint;
        Ok(self.progress)
    }
}
