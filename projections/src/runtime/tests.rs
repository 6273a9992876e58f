//! The runtime without a server: exactly-once application, one event at a time and in
//! batches, rejections, reset and its recovery, format versions, definitions, and the
//! metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleet_events::codec::CodecError;
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, EventType, TenantEvent};
use fleet_events::samples;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use super::*;
use crate::checkpoint::rebuilding_key;
use crate::drive::Progress;

/// Counts events per subject; refuses a tenant named "refuse" after writing for it, and
/// reports one named "corrupt" as corrupt state.
struct Counting;

impl Projection for Counting {
    const NAME: &'static str = "counting";
    const TREES: &'static [&'static str] = &["counting.by_subject"];

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let tree = &trees[0];
        let count = tree
            .get(stored.subject.as_bytes())?
            .map_or(0, |b| u64::from_be_bytes(b.as_ref().try_into().unwrap()));
        tree.insert(stored.subject.as_bytes(), &(count + 1).to_be_bytes())?;
        if let Event::Tenant(TenantEvent::Created { name }) = &stored.envelope.event {
            match name.as_str() {
                "refuse" => {
                    return Err(ApplyError::rejected(
                        "refused",
                        "the tenant is named refuse",
                    ));
                }
                "corrupt" => return Err(ApplyError::corrupt("counting.by_subject", "damaged")),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The same model at another format version.
struct CountingV2;

impl Projection for CountingV2 {
    const NAME: &'static str = Counting::NAME;
    const TREES: &'static [&'static str] = Counting::TREES;
    const VERSION: u32 = 2;

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        Counting.apply(trees, stored)
    }
}

fn event(seq: u64, name: &str) -> Stored {
    let mut envelope: Envelope = samples::envelope(EventType::TenantCreated);
    envelope.event = Event::Tenant(TenantEvent::Created { name: name.into() });
    Stored {
        seq,
        subject: envelope.subject(),
        envelope,
    }
}

fn count(model: &Checkpointed<impl Projection>, subject: &str) -> Option<u64> {
    model.trees()[0]
        .get(subject)
        .unwrap()
        .map(|b| u64::from_be_bytes(b.as_ref().try_into().unwrap()))
}

fn open() -> (tempfile::TempDir, Checkpointed<Counting>) {
    let dir = tempfile::tempdir().unwrap();
    let model = Checkpointed::open(dir.path(), Counting).unwrap();
    (dir, model)
}

#[test]
fn events_apply_once_in_sequence_order() {
    let (_dir, model) = open();
    let e = event(3, "a");
    assert_eq!(model.checkpoint().unwrap(), 0);
    assert_eq!(model.apply(Ok(e.clone())).unwrap(), Outcome::Applied);
    assert_eq!(model.apply(Ok(e.clone())).unwrap(), Outcome::Skipped);
    assert_eq!(model.apply(Ok(event(2, "a"))).unwrap(), Outcome::Skipped);
    assert_eq!(count(&model, &e.subject), Some(1));
    assert_eq!(model.apply(Ok(event(7, "a"))).unwrap(), Outcome::Applied);
    assert_eq!(count(&model, &e.subject), Some(2));
    assert_eq!(
        model.status().unwrap(),
        Status {
            checkpoint: 7,
            rejected: 0
        }
    );
    assert_eq!(model.status().unwrap().lag(10), 3);
}

#[test]
fn a_rejected_event_keeps_no_state_but_moves_the_checkpoint() {
    let (_dir, model) = open();
    let refused = event(4, "refuse");
    assert_eq!(
        model.apply(Ok(refused.clone())).unwrap(),
        Outcome::Rejected("refused")
    );
    assert_eq!(
        count(&model, &refused.subject),
        None,
        "its write is discarded"
    );
    assert_eq!(model.checkpoint().unwrap(), 4);
    assert_eq!(model.apply(Ok(refused.clone())).unwrap(), Outcome::Skipped);
    let undecodable = Err(ReadError::Undecodable {
        seq: 5,
        subject: "fleet.evt.acme.task.x".into(),
        error: CodecError::Malformed("garbage".into()),
    });
    assert_eq!(
        model.apply(undecodable).unwrap(),
        Outcome::Rejected("undecodable")
    );
    assert_eq!(model.apply(Ok(event(6, "b"))).unwrap(), Outcome::Applied);
    let rejected = model.rejected().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0].seq, 4);
    assert_eq!(rejected[0].kind, "refused");
    assert_eq!(rejected[0].subject, refused.subject);
    assert_eq!(rejected[1].seq, 5);
    assert_eq!(rejected[1].kind, "undecodable");
    assert!(rejected[1].reason.contains("garbage"));
    assert_eq!(model.status().unwrap().rejected, 2);
}

fn undecodable(seq: u64) -> Result<Stored, ReadError> {
    Err(ReadError::Undecodable {
        seq,
        subject: "fleet.evt.acme.task.x".into(),
        error: CodecError::Malformed("garbage".into()),
    })
}

fn nats_error() -> Result<Stored, ReadError> {
    Err(ReadError::Nats {
        what: "replay".into(),
        message: "timed out".into(),
    })
}

/// Applies `first` one at a time to two fresh databases, then `batch()` one at a time to
/// the first and as one batch to the second: returns both outcomes, both dumps and the
/// second model.
#[allow(clippy::type_complexity)]
fn one_by_one_and_batched(
    first: &[Stored],
    batch: impl Fn() -> Vec<Result<Stored, ReadError>>,
) -> (
    (Vec<Outcome>, Vec<Entry>),
    (Vec<Outcome>, Vec<Entry>),
    tempfile::TempDir,
    Checkpointed<Counting>,
) {
    let (_one_dir, one) = open();
    let (dir, batched) = open();
    for event in first {
        let outcome = one.apply(Ok(event.clone())).unwrap();
        assert_eq!(batched.apply(Ok(event.clone())).unwrap(), outcome);
    }
    let outcomes: Vec<Outcome> = batch()
        .into_iter()
        .map(|item| one.apply(item).unwrap())
        .collect();
    let batch_outcomes = batched.apply_batch(batch()).unwrap();
    (
        (outcomes, one.dump().unwrap()),
        (batch_outcomes, batched.dump().unwrap()),
        dir,
        batched,
    )
}

#[test]
fn a_batch_stores_what_one_event_at_a_time_stores() {
    // Redelivered events (at or below the checkpoint) first, a duplicate inside the
    // batch, rejected and undecodable messages in the middle and at the end.
    let first = [event(1, "a"), event(2, "b")];
    let batch = || {
        vec![
            Ok(event(1, "a")),
            Ok(event(2, "b")),
            Ok(event(3, "a")),
            Ok(event(4, "a")),
            Ok(event(5, "refuse")),
            Ok(event(6, "a")),
            undecodable(7),
            Ok(event(8, "b")),
            Ok(event(8, "b")),
            undecodable(8),
            Ok(event(9, "refuse")),
        ]
    };
    let (one, batched, _dir, model) = one_by_one_and_batched(&first, batch);
    assert_eq!(batched, one);
    use Outcome::*;
    assert_eq!(
        batched.0,
        [
            Skipped,
            Skipped,
            Applied,
            Applied,
            Rejected("refused"),
            Applied,
            Rejected("undecodable"),
            Applied,
            Skipped,
            Skipped,
            Rejected("refused"),
        ]
    );
    assert_eq!(model.checkpoint().unwrap(), 9);
    assert_eq!(count(&model, &event(1, "a").subject), Some(2 + 4));
    let rejected: Vec<u64> = model.rejected().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(rejected, [5, 7, 9]);
}

#[test]
fn a_batch_entirely_at_or_below_the_checkpoint_changes_nothing() {
    let first = [event(1, "a"), event(2, "refuse"), event(3, "a")];
    let batch = || vec![Ok(event(2, "refuse")), undecodable(3), Ok(event(3, "a"))];
    let (one, batched, _dir, model) = one_by_one_and_batched(&first, batch);
    assert_eq!(batched, one);
    assert_eq!(batched.0, [Outcome::Skipped; 3]);
    assert_eq!(model.checkpoint().unwrap(), 3);
}

#[test]
fn reads_within_a_batch_see_the_batchs_earlier_writes() {
    let (_dir, model) = open();
    let batch = (1..=5).map(|seq| Ok(event(seq, "a"))).collect();
    assert_eq!(
        model.apply_batch(batch).unwrap(),
        [Outcome::Applied; 5],
        "one transaction"
    );
    assert_eq!(count(&model, &event(1, "a").subject), Some(5));
    assert_eq!(model.checkpoint().unwrap(), 5);
    assert_eq!(model.apply_batch(vec![]).unwrap(), []);
}

#[test]
fn corrupt_state_in_a_batch_keeps_what_came_before_it_as_one_at_a_time_would() {
    let (_dir, model) = open();
    let batch = vec![
        Ok(event(1, "a")),
        Ok(event(2, "refuse")),
        Ok(event(3, "a")),
        Ok(event(4, "corrupt")),
        Ok(event(5, "a")),
    ];
    let err = model.apply_batch(batch).unwrap_err();
    assert!(matches!(err, ProjectionError::Corrupt { .. }), "{err}");
    assert_eq!(model.checkpoint().unwrap(), 3);
    assert_eq!(count(&model, &event(1, "a").subject), Some(2));
    assert_eq!(model.status().unwrap().rejected, 1);
}

#[test]
fn a_transport_error_ends_a_batch_after_what_came_before_it() {
    let (_dir, model) = open();
    let batch = vec![
        Ok(event(1, "a")),
        Ok(event(2, "a")),
        nats_error(),
        Ok(event(4, "a")),
    ];
    let err = model.apply_batch(batch).unwrap_err();
    assert!(matches!(err, ProjectionError::Read(_)), "{err}");
    assert_eq!(model.checkpoint().unwrap(), 2);
    assert_eq!(count(&model, &event(1, "a").subject), Some(2));
}

#[test]
fn a_transport_error_is_returned_and_changes_nothing() {
    let (_dir, model) = open();
    let err = model
        .apply(Err(ReadError::Nats {
            what: "replay".into(),
            message: "timed out".into(),
        }))
        .unwrap_err();
    assert!(matches!(err, ProjectionError::Read(_)));
    assert!(model.dump().unwrap().is_empty());
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let model = Checkpointed::open(dir.path(), Counting).unwrap();
        model.apply(Ok(event(1, "a"))).unwrap();
        model.apply(Ok(event(2, "refuse"))).unwrap();
        model.db().flush().unwrap();
        model.dump().unwrap()
    };
    let model = Checkpointed::open(dir.path(), Counting).unwrap();
    assert_eq!(model.dump().unwrap(), before);
    assert_eq!(model.checkpoint().unwrap(), 2);
}

#[test]
fn reset_drops_state_rejections_and_checkpoint_only_of_its_projection() {
    let (_dir, mut model) = open();
    model.apply(Ok(event(1, "a"))).unwrap();
    model.apply(Ok(event(2, "refuse"))).unwrap();
    // Another projection's checkpoint and rejections in the same database stay.
    model
        .db()
        .open_tree(META)
        .unwrap()
        .insert("other", &[1])
        .unwrap();
    model
        .db()
        .open_tree(REJECTED)
        .unwrap()
        .insert(rejected_key("other", 2), &[1])
        .unwrap();
    model.reset().unwrap();
    assert!(model.dump().unwrap().is_empty());
    assert_eq!(model.checkpoint().unwrap(), 0);
    assert_eq!(model.apply(Ok(event(1, "a"))).unwrap(), Outcome::Applied);
    assert_eq!(model.db().open_tree(META).unwrap().len(), 2);
    assert_eq!(model.db().open_tree(REJECTED).unwrap().len(), 1);
}

#[test]
fn an_interrupted_reset_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let model = Checkpointed::open(dir.path(), Counting).unwrap();
        model.apply(Ok(event(1, "a"))).unwrap();
        model
            .db()
            .open_tree(META)
            .unwrap()
            .insert(rebuilding_key(Counting::NAME), &[])
            .unwrap();
        model.db().flush().unwrap();
    }
    let model = Checkpointed::open(dir.path(), Counting).unwrap();
    assert!(model.dump().unwrap().is_empty());
    assert!(
        !model
            .db()
            .open_tree(META)
            .unwrap()
            .contains_key(rebuilding_key(Counting::NAME))
            .unwrap()
    );
}

#[test]
fn another_format_version_is_reset_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let model = Checkpointed::open(dir.path(), Counting).unwrap();
        model.apply(Ok(event(1, "a"))).unwrap();
    }
    let model = Checkpointed::open(dir.path(), CountingV2).unwrap();
    assert!(model.dump().unwrap().is_empty());
    model.apply(Ok(event(1, "a"))).unwrap();
    drop(model);
    let model = Checkpointed::open(dir.path(), CountingV2).unwrap();
    assert_eq!(model.checkpoint().unwrap(), 1, "the same version is kept");
}

struct Misnamed;

impl Projection for Misnamed {
    const NAME: &'static str = "misnamed";
    const TREES: &'static [&'static str] = &["other.tree"];

    fn apply(&self, _: &[&dyn ModelTree], _: &Stored) -> Result<(), ApplyError> {
        Ok(())
    }
}

struct Twice;

impl Projection for Twice {
    const NAME: &'static str = "twice";
    const TREES: &'static [&'static str] = &["twice.a", "twice.a"];

    fn apply(&self, _: &[&dyn ModelTree], _: &Stored) -> Result<(), ApplyError> {
        Ok(())
    }
}

#[test]
fn definitions_that_could_clobber_other_projections_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    assert!(matches!(
        Checkpointed::with_db(db.clone(), Misnamed),
        Err(ProjectionError::Definition { .. })
    ));
    assert!(matches!(
        Checkpointed::with_db(db, Twice),
        Err(ProjectionError::Definition { .. })
    ));
}

/// Records counter increments by name and labels.
#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, id: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(id).map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        let counter = self.0.lock().unwrap().entry(id).or_default().clone();
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn rejections_are_counted_once_by_projection_and_reason() {
    let (_dir, model) = open();
    let counters = Counters::default();
    metrics::with_local_recorder(&counters, || {
        model.apply(Ok(event(1, "refuse"))).unwrap();
        model.apply(Ok(event(1, "refuse"))).unwrap();
        model.apply(Ok(event(2, "a"))).unwrap();
    });
    assert_eq!(
        counters.get("fleet_projection_rejected_events_total{projection=counting,reason=refused}"),
        1
    );
    assert_eq!(
        counters.get("fleet_projection_applied_events_total{projection=counting}"),
        1
    );
}

#[test]
fn a_batch_counts_each_applied_and_rejected_event_once() {
    let (_dir, model) = open();
    let counters = Counters::default();
    metrics::with_local_recorder(&counters, || {
        let batch = vec![
            Ok(event(1, "a")),
            Ok(event(2, "refuse")),
            Ok(event(3, "a")),
            Ok(event(3, "a")),
            Ok(event(4, "a")),
        ];
        model.apply_batch(batch).unwrap();
        model.apply_batch(vec![Ok(event(4, "a"))]).unwrap();
    });
    assert_eq!(
        counters.get("fleet_projection_rejected_events_total{projection=counting,reason=refused}"),
        1
    );
    assert_eq!(
        counters.get("fleet_projection_applied_events_total{projection=counting}"),
        3
    );
}

mod bulk;

/// Many models of one database flushing at once (the projector's loops after a burst)
/// all finish: sled's `flush_async` ran each flush on sled's own pool, whose 7 standing
/// threads then all waited for a log write queued behind them, for ever. The flushes run
/// on a thread of their own, so that a deadlock fails this test instead of hanging it.
#[test]
fn many_models_flushing_one_database_at_once_all_finish() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        let result = runtime.block_on(async {
            let (dir, model) = open();
            let model = std::sync::Arc::new(model);
            let mut loops = Vec::new();
            for writer in 0..12u64 {
                let model = model.clone();
                loops.push(tokio::spawn(async move {
                    for round in 0..200u64 {
                        let name = format!("w{writer}-{round}-{}", "x".repeat(4096));
                        let _ = model.apply(Ok(event(writer * 1000 + round + 1, &name)));
                        model.flush().await?;
                    }
                    Ok::<(), ProjectionError>(())
                }));
            }
            let mut result = Ok(());
            for flushed in futures::future::join_all(loops).await {
                result = result.and(flushed.expect("joined"));
            }
            drop(dir);
            result
        });
        let _ = done_tx.send(result);
    });
    let outcome = done_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("every flush finished within two minutes (not deadlocked)");
    outcome.expect("flushed");
}
