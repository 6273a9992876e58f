//! What the read models' unit tests share: stored events built from `fleet_events`
//! types, a model on a temporary database, and the rebuild-equals-incremental check
//! (which also applies the log in batches).

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::Event;
use fleet_events::ids::TenantId;
use fleet_events::samples;
use fleet_events::store::Stored;

use crate::projection::Projection;
use crate::runtime::{Checkpointed, Entry, Outcome, Rebuild};

/// The tenant named `name`.
pub fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

/// `event` of `tenant` at `at`, stored as sequence `seq` under its own subject.
pub fn stored(seq: u64, tenant: &TenantId, at: DateTime<Utc>, event: Event) -> Stored {
    let envelope = Envelope::new(tenant.clone(), at, event);
    Stored {
        seq,
        subject: envelope.subject(),
        envelope,
    }
}

/// A log being written: each event pushed gets the next sequence.
#[derive(Default)]
pub struct Log {
    pub events: Vec<Stored>,
}

impl Log {
    /// Appends `event` of `tenant` at `samples::at(secs)`; returns it.
    pub fn push(&mut self, tenant: &TenantId, secs: i64, event: Event) -> Stored {
        let seq = self.events.len() as u64 + 1;
        let stored = stored(seq, tenant, samples::at(secs), event);
        self.events.push(stored.clone());
        stored
    }

    /// Applies every event to `model`; returns the outcomes.
    pub fn apply_to<P: Projection>(&self, model: &Checkpointed<P>) -> Vec<Outcome> {
        self.events
            .iter()
            .map(|e| model.apply(Ok(e.clone())).unwrap())
            .collect()
    }
}

/// `projection` over a fresh temporary database.
pub fn open<P: Projection>(projection: P) -> (tempfile::TempDir, Checkpointed<P>) {
    let dir = tempfile::tempdir().unwrap();
    let model = Checkpointed::open(dir.path(), projection).unwrap();
    (dir, model)
}

/// Applies `events` incrementally (in three runs, reopening the database between them
/// and redelivering what the previous run applied), then rebuilds them into a fresh
/// database, applies them in batches to another (see [`assert_batches_equal_one_by_one`]),
/// resets and replays the first one, and rebuilds it in memory (keeping everything in
/// memory, then writing out every 3 entries): all the dumps must be equal.
/// Returns the incremental model.
pub fn assert_rebuild_equals_incremental<P: Projection>(
    make: impl Fn() -> P,
    events: &[Stored],
) -> (tempfile::TempDir, Checkpointed<P>) {
    let dir = tempfile::tempdir().unwrap();
    let third = events.len().div_ceil(3);
    let mut done: usize = 0;
    for chunk in events.chunks(third.max(1)) {
        let model = Checkpointed::open(dir.path(), make()).unwrap();
        for event in &events[done.saturating_sub(2)..done] {
            assert_eq!(model.apply(Ok(event.clone())).unwrap(), Outcome::Skipped);
        }
        for event in chunk {
            model.apply(Ok(event.clone())).unwrap();
        }
        done += chunk.len();
        model.db().flush().unwrap();
    }
    let mut model = Checkpointed::open(dir.path(), make()).unwrap();
    let incremental = model.dump().unwrap();
    assert!(!incremental.is_empty());

    let (_other, rebuilt) = open(make());
    for event in events {
        rebuilt.apply(Ok(event.clone())).unwrap();
    }
    assert_eq!(rebuilt.dump().unwrap(), incremental, "rebuilt elsewhere");
    let batched = assert_batches_equal_one_by_one(&make, events);
    assert_eq!(batched, incremental, "applied in batches");

    model.reset().unwrap();
    for event in events {
        model.apply(Ok(event.clone())).unwrap();
    }
    assert_eq!(model.dump().unwrap(), incremental, "reset and replayed");

    for write_out_at in [crate::runtime::WRITE_OUT_ENTRIES, 3] {
        let mut in_memory = model.in_memory().write_out_at(write_out_at);
        in_memory.begin().unwrap();
        for chunk in events.chunks(5) {
            for event in chunk {
                in_memory.feed(&Ok(event.clone())).unwrap();
            }
            in_memory.write_out_if_large().unwrap();
        }
        let progress = in_memory.finish().unwrap();
        assert_eq!(progress.checkpoint, events.last().map_or(0, |e| e.seq));
        let dump = model.dump().unwrap();
        assert_eq!(
            dump, incremental,
            "rebuilt in memory, spilling at {write_out_at}"
        );
    }
    (dir, model)
}

/// Applies `events` one at a time to a fresh database, and in batches to another: batches
/// of 1 to 7 events (so they straddle every boundary), each starting with the last 2
/// events of the batch before (redelivered, at or below the checkpoint), then the whole
/// log again as one batch (all skipped); and to a third as one batch. The outcomes and
/// the dumps must be the same; returns the dump.
pub fn assert_batches_equal_one_by_one<P: Projection>(
    make: impl Fn() -> P,
    events: &[Stored],
) -> Vec<Entry> {
    let (_one_dir, one) = open(make());
    let expected: Vec<Outcome> = events
        .iter()
        .map(|e| one.apply(Ok(e.clone())).unwrap())
        .collect();
    let dump = one.dump().unwrap();

    let (_batch_dir, batched) = open(make());
    let (mut done, mut size) = (0, 1);
    while done < events.len() {
        let from = done.saturating_sub(2);
        let to = (done + size).min(events.len());
        let batch = events[from..to].iter().cloned().map(Ok).collect();
        let outcomes = batched.apply_batch(batch).unwrap();
        let (again, new) = outcomes.split_at(done - from);
        assert!(again.iter().all(|o| *o == Outcome::Skipped), "{again:?}");
        assert_eq!(
            new,
            &expected[done..to],
            "batch of events {}..{to}",
            done + 1
        );
        done = to;
        size = size % 7 + 1;
    }
    assert_eq!(batched.dump().unwrap(), dump, "applied in batches");
    let all = || events.iter().cloned().map(Ok).collect();
    let outcomes = batched.apply_batch(all()).unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Skipped));
    assert_eq!(batched.dump().unwrap(), dump, "redelivered in one batch");

    let (_whole_dir, whole) = open(make());
    assert_eq!(whole.apply_batch(all()).unwrap(), expected);
    assert_eq!(whole.dump().unwrap(), dump, "applied in one batch");
    dump
}
