//! The browse page from restic 0.14's `ls` lines: children only, pages after a name,
//! missing snapshots and paths, and replies kept within the size limit.

use fleet_events::browse::BrowseReply;

use super::*;

const SNAPSHOT: &str = r#"{"time":"2026-12-04T00:40:12.339947363Z","tree":"24f9","paths":["/tmp/lsx/data"],"hostname":"vm","username":"root","id":"c9b795f48bd736c24320eefdedb49223977050e04af4fa77af1fc7f3b3dc58c1","short_id":"c9b795f4","struct_type":"snapshot"}"#;

/// A node line as restic 0.14 prints it.
fn node(path: &str, kind: &str, size: u64) -> String {
    let name = path.rsplit('/').next().unwrap_or_default();
    format!(
        r#"{{"name":"{name}","type":"{kind}","path":"{path}","uid":0,"gid":0,"size":{size},"mode":420,"mtime":"2026-12-04T00:40:10.097483628Z","struct_type":"node"}}"#
    )
}

/// `restic ls --json <id> /tmp/lsx/data` on the directory of a real 0.14 run (shuffled
/// and with a deeper node, as a recursive listing would add).
fn data_lines() -> Vec<String> {
    vec![
        SNAPSHOT.to_owned(),
        node("/tmp/lsx/data", "dir", 0),
        node("/tmp/lsx/data/sub", "dir", 0),
        node("/tmp/lsx/data/a.txt", "file", 6),
        node("/tmp/lsx/data/sub/deeper", "dir", 0),
        node("/tmp/lsx/data/link", "symlink", 0),
        node("/tmp/lsx/data/emptydir", "dir", 0),
        node("/tmp/lsx/data/fifo", "fifo", 0),
        "not json".to_owned(),
    ]
}

fn list(dir: &str, lines: &[String], after: Option<&str>, limit: u32) -> Found {
    let mut listing = Listing::new(dir, after.map(str::to_owned), limit);
    for line in lines {
        listing.line(line);
    }
    listing.finish()
}

fn names(found: &Found) -> (Vec<&str>, bool) {
    match found {
        Found::Entries { entries, more } => {
            (entries.iter().map(|e| e.name.as_str()).collect(), *more)
        }
        other => panic!("not a page: {other:?}"),
    }
}

#[test]
fn paths_are_normalised() {
    assert_eq!(normalise("/"), "/");
    assert_eq!(normalise("//"), "/");
    assert_eq!(normalise("/srv/data/"), "/srv/data");
    assert_eq!(normalise("/srv//./data/."), "/srv/data");
}

#[test]
fn only_the_directorys_children_sorted_with_kinds_and_sizes() {
    let found = list("/tmp/lsx/data", &data_lines(), None, 200);
    let Found::Entries { entries, more } = &found else {
        panic!("{found:?}")
    };
    assert!(!more);
    let seen: Vec<(&str, EntryKind, Option<u64>)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(
        seen,
        [
            ("a.txt", EntryKind::File, Some(6)),
            ("emptydir", EntryKind::Dir, None),
            ("fifo", EntryKind::Other, None),
            ("link", EntryKind::Symlink, None),
            ("sub", EntryKind::Dir, None),
        ]
    );
    assert!(entries.iter().all(|e| e.mtime.is_some()));
}

#[test]
fn pages_follow_after_and_limit() {
    let lines = data_lines();
    assert_eq!(
        names(&list("/tmp/lsx/data", &lines, None, 2)),
        (vec!["a.txt", "emptydir"], true)
    );
    assert_eq!(
        names(&list("/tmp/lsx/data", &lines, Some("emptydir"), 2)),
        (vec!["fifo", "link"], true)
    );
    assert_eq!(
        names(&list("/tmp/lsx/data", &lines, Some("link"), 2)),
        (vec!["sub"], false)
    );
    assert_eq!(
        names(&list("/tmp/lsx/data", &lines, Some("link"), 1)),
        (vec!["sub"], false),
        "exactly the last one: nothing more"
    );
    assert_eq!(
        names(&list("/tmp/lsx/data", &lines, Some("sub"), 2)),
        (vec![], false)
    );
    // A name that is not in the directory still orders: after "b" comes "emptydir".
    assert_eq!(
        names(&list("/tmp/lsx/data", &lines, Some("b"), 1)),
        (vec!["emptydir"], true)
    );
}

#[test]
fn a_large_directory_keeps_only_a_page_in_memory() {
    let mut listing = Listing::new("/d", None, 3);
    listing.line(SNAPSHOT);
    listing.line(&node("/d", "dir", 0));
    for n in (0..10_000).rev() {
        listing.line(&node(&format!("/d/f{n:05}"), "file", n));
        assert!(listing.kept.len() <= 4);
    }
    assert_eq!(
        names(&listing.finish()),
        (vec!["f00000", "f00001", "f00002"], true)
    );
}

#[test]
fn the_top_of_a_snapshot_has_no_line_of_its_own() {
    let lines = vec![SNAPSHOT.to_owned(), node("/tmp", "dir", 0)];
    assert_eq!(names(&list("/", &lines, None, 10)), (vec!["tmp"], false));
    assert_eq!(
        names(&list("/", &[SNAPSHOT.to_owned()], None, 10)),
        (vec![], false),
        "an empty snapshot's top is an empty directory"
    );
}

#[test]
fn missing_snapshot_missing_path_and_a_file() {
    assert_eq!(list("/tmp/lsx/data", &[], None, 10), Found::NoSnapshot);
    assert_eq!(
        list("/tmp/lsx/nope", &[SNAPSHOT.to_owned()], None, 10),
        Found::NoPath
    );
    let file = vec![SNAPSHOT.to_owned(), node("/tmp/lsx/data/a.txt", "file", 6)];
    assert_eq!(
        list("/tmp/lsx/data/a.txt", &file, None, 10),
        Found::NotADirectory
    );
    let empty = vec![
        SNAPSHOT.to_owned(),
        node("/tmp/lsx/data/emptydir", "dir", 0),
    ];
    assert_eq!(
        names(&list("/tmp/lsx/data/emptydir", &empty, None, 10)),
        (vec![], false)
    );
}

fn entries(n: usize, name_len: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            name: format!("{i:06}{}", "x".repeat(name_len.saturating_sub(6))),
            kind: EntryKind::File,
            size: Some(u64::MAX),
            mtime: Some(fleet_events::samples::at(1)),
        })
        .collect()
}

fn encoded(page: &BrowsePage) -> usize {
    BrowseReply {
        schema: SCHEMA_VERSION,
        result: Ok(page.clone()),
    }
    .to_wire()
    .expect("within the limit")
    .len()
}

#[test]
fn a_page_that_fits_is_kept_whole() {
    let page = fit("/d".into(), entries(1000, 20), false).expect("fits");
    assert_eq!((page.entries.len(), page.next.as_deref()), (1000, None));
    let page = fit("/d".into(), entries(3, 20), true).expect("fits");
    assert_eq!(page.next.as_deref(), Some(page.entries[2].name.as_str()));
    let page = fit("/".into(), Vec::new(), false).expect("fits");
    assert_eq!((page.entries.len(), page.next), (0, None));
}

#[test]
fn a_page_too_large_is_cut_with_next_set() {
    let path = format!("/{}", "p".repeat(4000));
    for name_len in [200, 255, 1000, 4000] {
        let page = fit(path.clone(), entries(1000, name_len), false).expect("fits");
        let n = page.entries.len();
        assert!(n > 0 && n < 1000, "{name_len}: {n}");
        assert_eq!(
            page.next.as_deref(),
            Some(page.entries[n - 1].name.as_str())
        );
        let size = encoded(&page);
        assert!(size <= MAX_EVENT_BYTES, "{size}");
        assert!(
            size > MAX_EVENT_BYTES - 2 * (name_len + 40),
            "not cut too short: {size}"
        );
    }
    assert_eq!(fit("/".into(), entries(1, 70_000), false), None);
}
