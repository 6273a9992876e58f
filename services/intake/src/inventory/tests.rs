//! The inventory decision, given the repository's events, when a part of a listing
//! arrives, then these events (or none).

use fleet_events::codec::{MAX_EVENT_BYTES, encode};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, RepoEvent, SnapshotInfo, SnapshotKey, SnapshotListing};
use fleet_events::ids::{RepoId, TenantId};
use fleet_events::samples;

use super::{Inventory, decide};

fn snapshot(n: u32) -> SnapshotInfo {
    SnapshotInfo {
        id: format!("{n:064x}"),
        time: samples::at(i64::from(n) * 60),
        host: "db-1".into(),
        paths: vec!["/srv/data".into(), "/etc".into()],
        more_paths: 0,
        tags: vec![
            format!("policy:{}", samples::POLICY),
            format!("task:{}", samples::TASK),
        ],
        size_bytes: Some(1_000_000 + u64::from(n)),
        files: Some(4015),
    }
}

fn key(n: u32) -> SnapshotKey {
    snapshot(n).key()
}

/// A listing at `listed_at` of the whole repository, in one part.
fn whole(listed_at: i64, snapshots: &[u32]) -> SnapshotListing {
    SnapshotListing {
        listed_at: samples::at(listed_at),
        part: 0,
        parts: 1,
        after: None,
        through: None,
        snapshots: snapshots.iter().map(|n| snapshot(*n)).collect(),
    }
}

/// The inventory the events leave.
fn given(events: &[RepoEvent]) -> Inventory {
    let mut inventory = Inventory::default();
    for event in events {
        inventory.apply(event);
    }
    inventory
}

fn when(inventory: &Inventory, part: &SnapshotListing) -> Vec<RepoEvent> {
    decide(inventory, part, samples::TASK, samples::AGENT)
}

fn ids(snapshots: &[SnapshotInfo]) -> Vec<String> {
    snapshots.iter().map(|s| s.id.clone()).collect()
}

fn numbered(ns: &[u32]) -> Vec<String> {
    ns.iter().map(|n| snapshot(*n).id).collect()
}

/// The one event's added and removed ids.
fn change(events: &[RepoEvent]) -> (Vec<String>, Vec<String>) {
    let [RepoEvent::SnapshotsChanged { added, removed, .. }] = events else {
        panic!("one change expected, got {events:?}");
    };
    (ids(added), ids(removed))
}

#[test]
fn the_first_listing_adds_every_snapshot() {
    let events = when(&given(&[]), &whole(100, &[1, 2, 3]));
    assert_eq!(change(&events), (numbered(&[1, 2, 3]), vec![]));
    let RepoEvent::SnapshotsChanged {
        task,
        agent,
        listed_at,
        ..
    } = &events[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (*task, *agent, *listed_at),
        (samples::TASK, samples::AGENT, samples::at(100))
    );
    assert_eq!(given(&events).newest, Some(samples::at(100)));
}

#[test]
fn a_repeated_part_changes_nothing() {
    let part = whole(100, &[1, 2, 3]);
    let first = when(&given(&[]), &part);
    assert_eq!(when(&given(&first), &part), vec![]);
    // A later listing finding the same snapshots changes nothing either.
    assert_eq!(when(&given(&first), &whole(200, &[1, 2, 3])), vec![]);
}

#[test]
fn a_later_listing_adds_and_removes_what_changed() {
    let first = when(&given(&[]), &whole(100, &[1, 2, 3]));
    let events = when(&given(&first), &whole(200, &[2, 3, 4]));
    assert_eq!(change(&events), (numbered(&[4]), numbered(&[1])));
    let mut log = first;
    log.extend(events);
    let keys: Vec<SnapshotKey> = given(&log).snapshots.into_keys().collect();
    assert_eq!(keys, vec![key(2), key(3), key(4)]);
}

#[test]
fn a_part_removes_only_within_its_range() {
    let first = when(&given(&[]), &whole(100, &[1, 2, 3, 4, 5, 6]));
    // The second part of a later listing: snapshots after 2 through 4; it holds 3 only.
    let part = SnapshotListing {
        listed_at: samples::at(200),
        part: 1,
        parts: 3,
        after: Some(key(2)),
        through: Some(key(4)),
        snapshots: vec![snapshot(3)],
    };
    assert_eq!(
        change(&when(&given(&first), &part)),
        (vec![], numbered(&[4]))
    );
    // The last part of a listing holding nothing after 5: 6 goes, 1 to 5 stay.
    let last = SnapshotListing {
        after: Some(key(5)),
        through: None,
        snapshots: vec![],
        ..part.clone()
    };
    assert_eq!(
        change(&when(&given(&first), &last)),
        (vec![], numbered(&[6]))
    );
    // The first part, up to 1, holding a snapshot made before 1 that is new.
    let earliest = SnapshotListing {
        after: None,
        through: Some(key(1)),
        snapshots: vec![snapshot(0), snapshot(1)],
        ..part
    };
    assert_eq!(
        change(&when(&given(&first), &earliest)),
        (numbered(&[0]), vec![])
    );
}

#[test]
fn an_older_listing_after_a_newer_one_changes_nothing() {
    let newer = when(&given(&[]), &whole(200, &[2, 3]));
    // Listed before snapshot 2 existed and 1 was forgotten: stale, ignored.
    assert_eq!(when(&given(&newer), &whole(100, &[1])), vec![]);
    // Another part of the same listing (same time) still applies.
    let same_time = SnapshotListing {
        part: 1,
        parts: 2,
        after: Some(key(3)),
        ..whole(200, &[4])
    };
    assert_eq!(
        change(&when(&given(&newer), &same_time)),
        (numbered(&[4]), vec![])
    );
}

/// A listing of `snapshots` at `listed_at` cut into parts at the given boundaries.
fn parts(listed_at: i64, snapshots: &[u32], cuts: &[u32]) -> Vec<SnapshotListing> {
    let mut bounds: Vec<Option<SnapshotKey>> = vec![None];
    bounds.extend(cuts.iter().map(|n| Some(key(*n))));
    bounds.push(None);
    let parts = bounds.len() as u32 - 1;
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let mut part = SnapshotListing {
                listed_at: samples::at(listed_at),
                part: i as u32,
                parts,
                after: w[0].clone(),
                through: w[1].clone(),
                snapshots: vec![],
            };
            part.snapshots = snapshots
                .iter()
                .map(|n| snapshot(*n))
                .filter(|s| part.covers(&s.key()))
                .collect();
            part
        })
        .collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for i in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(i, n - 1);
            out.push(p);
        }
    }
    out
}

#[test]
fn parts_applied_in_any_order_give_the_same_inventory() {
    let before = when(&given(&[]), &whole(100, &[1, 2, 4, 6, 7, 9, 12]));
    let listing = parts(200, &[2, 3, 5, 6, 9, 10, 11, 13], &[4, 9]);
    assert_eq!(listing.len(), 3);
    let mut results = Vec::new();
    for order in permutations(listing.len()) {
        let mut log = before.clone();
        for i in order {
            let events = when(&given(&log), &listing[i]);
            log.extend(events);
        }
        let inventory = given(&log);
        let keys: Vec<SnapshotKey> = inventory.snapshots.keys().cloned().collect();
        results.push((keys, inventory.newest));
    }
    let expected: Vec<SnapshotKey> = [2, 3, 5, 6, 9, 10, 11, 13].map(key).to_vec();
    for result in &results {
        assert_eq!(result, &(expected.clone(), Some(samples::at(200))));
    }
}

#[test]
fn a_large_change_is_cut_into_events_that_each_fit_the_log() {
    let big = |n: u32| SnapshotInfo {
        paths: (0..8)
            .map(|i| format!("/srv/projects/department-{i}/shared/archive/{n}"))
            .collect(),
        tags: vec![
            format!("policy:{}", samples::POLICY),
            format!("task:{}", samples::TASK),
            "nightly".into(),
            "weekly-offsite-copy".into(),
        ],
        ..snapshot(n)
    };
    let part = SnapshotListing {
        snapshots: (0..5000).map(big).collect(),
        ..whole(100, &[])
    };
    // 5000 new ones, and 5000 old ones gone.
    let old = when(
        &given(&[]),
        &SnapshotListing {
            snapshots: (10_000..15_000).map(big).collect(),
            ..whole(50, &[])
        },
    );
    let events = when(&given(&old), &part);
    assert!(events.len() > 2, "{} events", events.len());
    // The longest tenant slug, a caused-by envelope: the largest envelope there can be.
    let tenant = TenantId::new("t".repeat(63)).unwrap();
    let cause = Envelope::new(
        tenant.clone(),
        samples::at(0),
        samples::event(fleet_events::event::EventType::TaskStarted),
    );
    let repo = RepoId::for_url("sftp:backup@nas:/srv/restic");
    let (mut added, mut removed) = (0, 0);
    for event in &events {
        let RepoEvent::SnapshotsChanged {
            added: a,
            removed: r,
            ..
        } = event
        else {
            unreachable!()
        };
        added += a.len();
        removed += r.len();
        let envelope = Envelope::caused_by(
            &cause,
            samples::at(1),
            Event::Repo {
                repo,
                event: event.clone(),
            },
        );
        let bytes = encode(&envelope).expect("each event encodes");
        assert!(bytes.len() < MAX_EVENT_BYTES, "{} bytes", bytes.len());
    }
    assert_eq!((added, removed), (5000, 5000));
    let mut log = old;
    log.extend(events);
    let inventory = given(&log);
    assert_eq!(inventory.snapshots.len(), 5000);
    assert!(inventory.snapshots.contains_key(&key(4999)));
    assert_eq!(when(&inventory, &part), vec![], "applied in full");
}

#[test]
fn a_snapshot_too_large_for_one_event_keeps_its_key_and_fleet_tags() {
    let huge = SnapshotInfo {
        paths: (0..64)
            .map(|i| format!("/{i}/{}", "p".repeat(1000)))
            .collect(),
        tags: {
            let mut tags: Vec<String> =
                (0..30).map(|i| format!("{i}{}", "t".repeat(900))).collect();
            tags.push(format!("policy:{}", samples::POLICY));
            tags
        },
        ..snapshot(1)
    };
    let part = SnapshotListing {
        snapshots: vec![huge.clone()],
        ..whole(100, &[])
    };
    let events = when(&given(&[]), &part);
    let [RepoEvent::SnapshotsChanged { added, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    let kept = &added[0];
    assert_eq!(kept.key(), huge.key());
    assert_eq!(kept.tag("policy"), huge.tag("policy"));
    assert_eq!(kept.paths.len() as u32 + kept.more_paths, 64);
    assert!(kept.paths.len() < 64);
}
