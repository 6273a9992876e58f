//! The restore's decisions, and restic's restore and ls output as captured.

use fleet_events::samples;

use super::*;
use crate::restic::captured;

fn file(size: u64, secs: i64) -> Facts {
    Facts {
        entry: Entry::File,
        size,
        mtime: Some(samples::at(secs)),
    }
}

fn of(entry: Entry) -> Facts {
    Facts {
        entry,
        ..file(0, 0)
    }
}

#[test]
fn overwrite_policies_decide_for_existing_files() {
    let snap = file(10, 5);
    let same = file(10, 5);
    let resized = file(11, 5);
    let touched = file(10, 6);
    for policy in [Overwrite::Never, Overwrite::IfChanged, Overwrite::Always] {
        assert_eq!(decide(policy, &snap, None), Action::Restore, "{policy:?}");
    }
    assert_eq!(
        decide(Overwrite::Never, &snap, Some(&resized)),
        Action::Skip
    );
    assert_eq!(
        decide(Overwrite::Always, &snap, Some(&same)),
        Action::Restore
    );
    assert_eq!(
        decide(Overwrite::IfChanged, &snap, Some(&same)),
        Action::Skip
    );
    for changed in [resized, touched, of(Entry::Symlink)] {
        assert_eq!(
            decide(Overwrite::IfChanged, &snap, Some(&changed)),
            Action::Restore,
            "{changed:?}"
        );
    }
    // A symlink's size is not compared (ls does not give it), its time is.
    let link = Facts {
        size: 3,
        ..of(Entry::Symlink)
    };
    assert_eq!(
        decide(Overwrite::IfChanged, &link, Some(&of(Entry::Symlink))),
        Action::Skip
    );
}

#[test]
fn directories_merge_and_are_never_replaced() {
    let dir = of(Entry::Dir);
    for policy in [Overwrite::Never, Overwrite::IfChanged, Overwrite::Always] {
        assert_eq!(decide(policy, &dir, Some(&dir)), Action::Merge);
        assert!(matches!(
            decide(policy, &dir, Some(&file(1, 1))),
            Action::Conflict(_)
        ));
        assert!(matches!(
            decide(policy, &file(1, 1), Some(&dir)),
            Action::Conflict(_)
        ));
        assert!(matches!(
            decide(policy, &dir, Some(&of(Entry::Symlink))),
            Action::Conflict(_)
        ));
    }
}

#[test]
fn includes_select_paths_below_them_and_lead_to_them() {
    let inc = Includes::new(&["/srv/data/sub/".into(), "/etc/hosts".into()]);
    assert!(inc.selects("/srv/data/sub"));
    assert!(inc.selects("/srv/data/sub/deep/file"));
    assert!(inc.selects("/etc/hosts"));
    assert!(!inc.selects("/srv/data/subway"));
    assert!(!inc.selects("/srv/data"));
    assert!(!inc.selects("/etc/hosts.allow"));
    assert!(inc.leads_to("/srv") && inc.leads_to("/srv/data") && inc.leads_to("/etc"));
    assert!(!inc.leads_to("/srv/data/sub") && !inc.leads_to("/sr"));
    let all = Includes::new(&[]);
    assert!(all.selects("/anything") && !all.leads_to("/anything"));
    assert_eq!(Includes::new(&["/".into(), "/x".into()]), all);
}

#[test]
fn the_tally_keeps_a_few_bounded_samples() {
    let mut tally = Tally::default();
    tally.restored(5);
    tally.restored(7);
    tally.skipped();
    for i in 0..15 {
        tally.error(|| format!("/f{i}: {}", "é".repeat(1000)));
    }
    let summary = tally.summary("ab", true);
    assert_eq!(
        (
            summary.files_restored,
            summary.bytes_restored,
            summary.files_skipped,
            summary.errors
        ),
        (2, 12, 1, 15)
    );
    assert_eq!(summary.error_samples.len(), MAX_ERROR_SAMPLES);
    assert!(summary.error_samples[9].starts_with("/f9: "));
    assert!(summary.error_samples.iter().all(|s| s.len() <= 512));
    assert!(summary.dry_run);
}

#[test]
fn real_ls_output_is_read_in_both_shapes() {
    let lines: Vec<LsLine> = captured::LS_STDOUT.lines().map(parse_ls_line).collect();
    assert_eq!(lines[0], LsLine::Snapshot);
    assert_eq!(lines.len(), 8);
    let LsLine::Node { path, facts } = &lines[4] else {
        panic!("{:?}", lines[4])
    };
    assert_eq!(path, "/tmp/rz/data/a.txt");
    assert_eq!((facts.entry, facts.size), (Entry::File, 6));
    let mtime = facts.mtime.expect("a time");
    assert_eq!(mtime.to_rfc3339(), "2026-12-03T23:57:36.285007660+00:00");
    assert!(matches!(&lines[5], LsLine::Node { facts, .. } if facts.entry == Entry::Symlink));
    assert!(matches!(&lines[1], LsLine::Node { facts, .. } if facts.entry == Entry::Dir));
    assert_eq!(parse_ls_line(captured::LS_0_18_NODE), lines[4]);
    assert_eq!(parse_ls_line("not json"), LsLine::Other);
    assert_eq!(
        parse_ls_line(r#"{"message_type":"summary"}"#),
        LsLine::Other
    );
}

#[test]
fn real_restore_errors_are_counted_with_their_paths() {
    for stderr in [
        captured::RESTORE_ERRORS_STDERR,
        captured::RESTORE_ERRORS_0_18_STDERR,
    ] {
        let lines: Vec<RestoreLine> = stderr.lines().map(parse_restore_line).collect();
        assert!(
            matches!(&lines[0], RestoreLine::Error(e) if e.starts_with("/tmp/ry/data/big: ") && e.contains("ciphertext verification failed")),
            "{lines:?}"
        );
        assert!(matches!(&lines[1], RestoreLine::Error(_)));
        assert_eq!(lines[2], RestoreLine::Count(2));
    }
    let json = r#"{"message_type":"error","error":{"message":"permission denied"},"during":"restore","item":"/srv/x"}"#;
    assert_eq!(
        parse_restore_line(json),
        RestoreLine::Error("/srv/x: permission denied".into())
    );
    assert_eq!(
        parse_restore_line("restoring <Snapshot ...>"),
        RestoreLine::Other
    );
    // restic 0.18 under --json ends with an exit_error carrying the count.
    let exit = r#"{"message_type":"exit_error","code":1,"message":"Fatal: There were 2 errors\n"}"#;
    assert_eq!(parse_restore_line(exit), RestoreLine::Count(2));
    let other = r#"{"message_type":"exit_error","code":1,"message":"Fatal: wrong password"}"#;
    assert_eq!(parse_restore_line(other), RestoreLine::Other);
}

#[test]
fn a_missing_snapshot_is_recognised_in_every_version() {
    for said in [
        captured::LS_MISSING_STDERR,
        captured::RESTORE_MISSING_STDERR,
        captured::RESTORE_MISSING_0_18_STDERR,
    ] {
        assert!(says_snapshot_missing(said), "{said}");
    }
    assert!(!says_snapshot_missing(captured::WRONG_PASSWORD_STDERR));
    assert!(!says_snapshot_missing(
        "Fatal: failed to load snapshot abab: connection refused"
    ));
    let error = missing_snapshot(&"ab".repeat(32), captured::LS_MISSING_STDERR, Some(0));
    assert_eq!(
        (error.class, error.exit_code),
        (ErrorClass::Permanent, Some(0))
    );
    assert!(
        error.message.starts_with(&format!(
            "snapshot {} is not in the repository; Ignoring",
            "ab".repeat(32)
        )),
        "{error:?}"
    );
}
