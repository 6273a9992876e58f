//! What the read models' unit tests share: stored events built from `fleet_events`
//! types, a model on a temporary database, and the rebuild-equals-incremental check.

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::Event;
use fleet_events::ids::TenantId;
use fleet_events::samples;
use fleet_events::store::Stored;

use crate::projection::Projection;
use crate::runtime::{Checkpointed, Outcome};

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
/// database and resets and replays the first one: all three dumps must be equal.
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

    model.reset().unwrap();
    for event in events {
        model.apply(Ok(event.clone())).unwrap();
    }
    assert_eq!(model.dump().unwrap(), incremental, "reset and replayed");
    (dir, model)
}
