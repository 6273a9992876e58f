//! Rebuilding in memory ([`super::super::bulk`]) stores what applying the same messages one
//! at a time stores, rejections and undecodable messages included, whether it keeps
//! everything in memory or hands entries to its writer as it goes (reading them back
//! from the handed-off sets and from sled); an interrupted one is undone on open.

use super::*;

/// Rejected, undecodable and repeated messages among ordinary ones.
fn messages() -> Vec<Result<Stored, ReadError>> {
    vec![
        Ok(event(1, "a")),
        Ok(event(2, "b")),
        Ok(event(3, "refuse")),
        Ok(event(4, "a")),
        undecodable(5),
        Ok(event(6, "b")),
        Ok(event(6, "b")),
        Ok(event(7, "c")),
        Ok(event(8, "refuse")),
        Ok(event(9, "a")),
    ]
}

fn one_at_a_time() -> (Vec<Outcome>, Vec<Entry>) {
    let (_dir, model) = open();
    let outcomes = messages()
        .into_iter()
        .map(|item| model.apply(item).unwrap())
        .collect();
    (outcomes, model.dump().unwrap())
}

/// Rebuilds `model` in memory from `messages()`, writing out every `write_out_at` entries.
fn in_memory(model: &mut Checkpointed<Counting>, write_out_at: usize) -> (Vec<Outcome>, Progress) {
    let mut rebuild = model.in_memory().write_out_at(write_out_at);
    rebuild.begin().unwrap();
    let mut outcomes = Vec::new();
    for item in messages() {
        outcomes.push(rebuild.feed(&item).unwrap());
        rebuild.write_out_if_large().unwrap();
    }
    (outcomes, rebuild.finish().unwrap())
}

#[test]
fn a_rebuild_in_memory_stores_what_one_at_a_time_stores() {
    let (expected, dump) = one_at_a_time();
    for write_out_at in [1, 2, WRITE_OUT_ENTRIES] {
        let (_dir, mut model) = open();
        // What it held before is dropped.
        model.apply(Ok(event(1, "old"))).unwrap();
        let (outcomes, progress) = in_memory(&mut model, write_out_at);
        assert_eq!(outcomes, expected, "spilling at {write_out_at}");
        assert_eq!(model.dump().unwrap(), dump, "spilling at {write_out_at}");
        assert_eq!(
            progress,
            Progress {
                applied: 6,
                skipped: 1,
                rejected: 3,
                checkpoint: 9
            }
        );
        assert_eq!(count(&model, &event(1, "a").subject), Some(6));
        let rejected: Vec<u64> = model.rejected().unwrap().iter().map(|r| r.seq).collect();
        assert_eq!(rejected, [3, 5, 8]);
    }
}

#[test]
fn corrupt_state_stops_a_rebuild_and_the_next_open_resets_the_model() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut model = Checkpointed::open(dir.path(), Counting).unwrap();
        let mut rebuild = model.in_memory().write_out_at(1);
        rebuild.begin().unwrap();
        rebuild.feed(&Ok(event(1, "a"))).unwrap();
        rebuild.write_out_if_large().unwrap();
        let err = rebuild.feed(&Ok(event(2, "corrupt"))).unwrap_err();
        assert!(matches!(err, ProjectionError::Corrupt { .. }), "{err}");
        // Dropping it waits for its writer: half a rebuild is on disk, marked as such.
        drop(rebuild);
        assert_eq!(count(&model, &event(1, "a").subject), Some(1));
        model.db().flush().unwrap();
    }
    let model = Checkpointed::open(dir.path(), Counting).unwrap();
    assert!(model.dump().unwrap().is_empty(), "{:?}", model.dump());
    assert_eq!(model.checkpoint().unwrap(), 0);
}

#[test]
fn a_transport_error_is_returned_not_recorded() {
    let (_dir, mut model) = open();
    let mut rebuild = model.in_memory();
    rebuild.begin().unwrap();
    let err = rebuild.feed(&nats_error()).unwrap_err();
    assert!(matches!(err, ProjectionError::Read(_)), "{err}");
    let progress = rebuild.finish().unwrap();
    assert_eq!(progress, Progress::default());
    assert!(model.dump().unwrap().is_empty());
}
