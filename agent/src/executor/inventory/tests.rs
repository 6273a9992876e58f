//! Listings from real restic output, and cuts that fit in reports and cover every
//! snapshot exactly once.

use chrono::TimeDelta;
use fleet_events::codec::MAX_EVENT_BYTES;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::ids::RepoId;
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::samples;

use super::*;
use crate::restic::{captured, parse_snapshots};

fn listed_at() -> DateTime<Utc> {
    samples::at(9_000)
}

/// A snapshot as restic 0.14 lists it: `n` gives its id, time and a long path.
fn restic_snapshot(n: u32) -> Snapshot {
    Snapshot {
        id: format!("{n:08x}{:056x}", 0),
        short_id: format!("{n:08x}"),
        // Several snapshots share a second: the id orders them.
        time: (samples::at(0) + TimeDelta::seconds(i64::from(n / 3))).to_rfc3339(),
        hostname: format!("host-{}", n % 7),
        paths: vec![format!("/srv/data/volume-{n}/with/a/rather/long/path")],
        tags: vec![
            format!("policy:{}", samples::POLICY),
            format!("task:0191f3c0-{n:04x}-7000-8000-000000000000"),
        ],
        summary: None,
    }
}

fn report(listing: SnapshotListing) -> AgentReport {
    AgentReport {
        schema: SCHEMA_VERSION,
        agent: samples::AGENT,
        tenant: samples::tenant(),
        task: samples::TASK,
        attempt: u32::MAX,
        at: listed_at(),
        status: ReportStatus::SnapshotsListed {
            repo: RepoId::for_url("sftp:backup@nas:/srv/restic"),
            listing,
        },
    }
}

#[test]
fn a_real_listing_becomes_snapshot_infos() {
    let mut listed = parse_snapshots(captured::SNAPSHOTS_STDOUT).expect("0.14");
    listed.extend(parse_snapshots(captured::SNAPSHOTS_0_18_STDOUT).expect("0.18"));
    let Inventory {
        snapshots,
        unreadable,
    } = inventory(listed);
    assert_eq!(unreadable, 0);
    assert_eq!(snapshots.len(), 2);
    let old = &snapshots[0];
    assert_eq!(old.short_id(), "bdda295f");
    assert_eq!(old.time.to_rfc3339(), "2026-11-22T08:20:44.753842995+00:00");
    assert_eq!(
        (old.host.as_str(), &old.paths[..]),
        ("vm", &["/tmp/rx/data".to_owned()][..])
    );
    assert_eq!(
        (old.size_bytes, old.files),
        (None, None),
        "0.14 has no summary"
    );
    let new = &snapshots[1];
    assert_eq!(new.short_id(), "0ff1d3c8");
    assert_eq!(
        (new.size_bytes, new.files),
        (Some(8), Some(2)),
        "0.18's summary"
    );
}

#[test]
fn infos_are_sorted_capped_and_unreadable_ones_counted() {
    let mut many = restic_snapshot(1);
    many.paths = (0..100).map(|i| format!("/p/{i}")).collect();
    many.tags = (0..100).map(|i| format!("t{i}")).collect();
    let mut bad_id = restic_snapshot(2);
    bad_id.id = "abc".into();
    let mut bad_time = restic_snapshot(3);
    bad_time.time = "yesterday".into();
    let early = Snapshot {
        time: "2020-01-01T00:00:00+02:00".into(),
        ..restic_snapshot(4)
    };
    let twice = restic_snapshot(5);
    let got = inventory(vec![many, bad_id, bad_time, early, twice.clone(), twice]);
    assert_eq!(got.unreadable, 2);
    let ids: Vec<&str> = got.snapshots.iter().map(SnapshotInfo::short_id).collect();
    assert_eq!(ids, ["00000004", "00000001", "00000005"]);
    assert_eq!(
        got.snapshots[0].time.to_rfc3339(),
        "2019-12-31T22:00:00+00:00"
    );
    let capped = &got.snapshots[1];
    assert_eq!((capped.paths.len(), capped.more_paths), (64, 36));
    assert_eq!(capped.tags.len(), 64);
}

#[test]
fn a_huge_snapshot_is_shrunk_keeping_the_fleet_tags() {
    let mut huge = restic_snapshot(1);
    huge.paths = (0..64)
        .map(|i| format!("/{i}/{}", "p".repeat(4000)))
        .collect();
    huge.tags
        .extend((0..60).map(|i| format!("{i}{}", "t".repeat(3000))));
    let info = &inventory(vec![huge]).snapshots[0];
    assert!(encoded(info) <= MAX_SNAPSHOT_BYTES, "{}", encoded(info));
    assert_eq!(info.paths.len() as u32 + info.more_paths, 64);
    assert_eq!(
        info.tag("policy"),
        Some(samples::POLICY.to_string().as_str())
    );
    assert!(info.tag("task").is_some());

    let mut one_path = restic_snapshot(2);
    one_path.paths = vec!["/".to_owned() + &"q".repeat(100_000)];
    let info = &inventory(vec![one_path]).snapshots[0];
    assert!(encoded(info) <= MAX_SNAPSHOT_BYTES, "{}", encoded(info));
    assert!(info.paths[0].starts_with("/qqq"));
}

#[test]
fn no_snapshot_is_one_part_without_bounds() {
    let cut = parts(listed_at(), Vec::new());
    assert_eq!(
        cut,
        [SnapshotListing {
            listed_at: listed_at(),
            part: 0,
            parts: 1,
            after: None,
            through: None,
            snapshots: Vec::new(),
        }]
    );
}

#[test]
fn five_thousand_snapshots_are_cut_into_chained_parts_that_fit() {
    let all = inventory((0..5000).map(restic_snapshot).collect()).snapshots;
    assert_eq!(all.len(), 5000);
    let cut = parts(listed_at(), all.clone());
    assert!(cut.len() > 5, "{} parts", cut.len());
    let count = u32::try_from(cut.len()).expect("a count");
    let mut largest = 0;
    for (n, part) in cut.iter().enumerate() {
        assert_eq!((part.part as usize, part.parts), (n, count));
        assert_eq!(part.listed_at, listed_at());
        assert!(!part.snapshots.is_empty());
        assert!(encoded(&part.snapshots) <= MAX_PART_BYTES);
        let wire = report(part.clone()).to_wire().expect("fits in a report");
        assert!(wire.len() < MAX_EVENT_BYTES, "{}", wire.len());
        largest = largest.max(wire.len());
        match n {
            0 => assert_eq!(part.after, None),
            _ => assert_eq!(part.after, cut[n - 1].through),
        }
        match n + 1 == cut.len() {
            true => assert_eq!(part.through, None),
            false => assert_eq!(part.through, part.snapshots.last().map(SnapshotInfo::key)),
        }
        for s in &part.snapshots {
            assert!(part.covers(&s.key()), "{} in part {n}", s.id);
        }
    }
    for s in &all {
        let holders: Vec<u32> = cut
            .iter()
            .filter(|p| p.covers(&s.key()))
            .map(|p| p.part)
            .collect();
        assert_eq!(holders.len(), 1, "{} covered by {holders:?}", s.id);
        let holder = &cut[holders[0] as usize];
        assert!(
            holder.snapshots.contains(s),
            "{} listed where covered",
            s.id
        );
    }
    let listed: usize = cut.iter().map(|p| p.snapshots.len()).sum();
    assert_eq!(listed, 5000);
    eprintln!(
        "5000 snapshots: {} parts, largest report {largest} bytes",
        cut.len()
    );
}

#[test]
fn snapshots_of_the_largest_allowed_size_still_fit() {
    let mut big = restic_snapshot(1);
    big.paths = (0..64)
        .map(|i| format!("/{i}/{}", "p".repeat(4000)))
        .collect();
    let all = inventory(
        (0..40)
            .map(|n| Snapshot {
                id: format!("{n:064x}"),
                ..big.clone()
            })
            .collect(),
    )
    .snapshots;
    for part in parts(listed_at(), all) {
        let wire = report(part).to_wire().expect("fits in a report");
        assert!(wire.len() < MAX_EVENT_BYTES, "{}", wire.len());
    }
}
