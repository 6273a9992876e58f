//! Tests of the `backup --json` parser, on captured restic 0.14 output and on lines written
//! from newer restic releases' source.

use super::*;
use crate::restic::captured;

fn feed_all(output: &mut BackupOutput, text: &str) {
    for line in text.lines() {
        output.feed(line);
    }
}

#[test]
fn reads_the_summary_of_a_real_0_14_backup() {
    let mut output = BackupOutput::new();
    feed_all(&mut output, captured::BACKUP_STDOUT);

    let expected = BackupSummary {
        snapshot_id: Some("bdda295f".to_owned()),
        files_new: 4,
        dirs_new: 2,
        data_blobs: 4,
        tree_blobs: 3,
        data_added_bytes: 2083,
        total_files_processed: 4,
        total_bytes_processed: 23,
        ..BackupSummary::default()
    };
    assert_eq!(output.summary(), Some(&expected));
    assert_eq!(output.total_duration_secs(), Some(0.216593633));
    assert_eq!(output.error_count(), 0);
    assert_eq!(output.finish(Some(0)), Some(expected));
    let progress = output.progress().expect("a status line");
    assert_eq!((progress.total_files, progress.total_bytes), (1, 7));
}

#[test]
fn counts_unreadable_files_of_a_partial_snapshot() {
    let mut output = BackupOutput::new();
    feed_all(&mut output, captured::PARTIAL_STDOUT);
    feed_all(&mut output, captured::PARTIAL_STDERR);

    assert_eq!(output.error_count(), 1);
    let error = &output.errors()[0];
    assert_eq!(error.message, "read /proc/self/mem: errno 5");
    assert_eq!(error.item.as_deref(), Some("/proc/self/mem"));
    assert_eq!(error.during.as_deref(), Some("archival"));
    let summary = output.finish(Some(3)).expect("a summary");
    assert_eq!(summary.unreadable_files, 1);
    assert_eq!(summary.snapshot_id.as_deref(), Some("f0a81a1d"));
}

#[test]
fn partial_exit_code_means_at_least_one_unreadable_file() {
    let mut output = BackupOutput::new();
    feed_all(&mut output, captured::PARTIAL_STDOUT);
    assert_eq!(output.finish(Some(3)).map(|s| s.unreadable_files), Some(1));
}

#[test]
fn treats_the_no_estimate_value_as_none_and_empty_errors_as_unknown() {
    let lines: Vec<Line> = captured::STDIN_INTERRUPTED
        .lines()
        .map(parse_line)
        .collect();
    let Line::Status(progress) = &lines[1] else {
        panic!("a status line: {:?}", lines[1]);
    };
    assert_eq!(progress.seconds_remaining, None);
    assert_eq!(progress.seconds_elapsed, 1);
    assert_eq!(progress.current_files, ["/stdin"]);
    let Line::Error(error) = &lines[3] else {
        panic!("an error line: {:?}", lines[3]);
    };
    assert_eq!(error.message, "read /stdin");
    assert_eq!(
        lines[4],
        Line::Other("Fatal: unable to save snapshot: snapshot is empty".to_owned())
    );
}

#[test]
fn reads_newer_versions_with_extra_fields() {
    // Shapes of restic 0.17 (from its source): extra fields, `error.message`.
    let summary = r#"{"message_type":"summary","dry_run":false,"files_new":2,"files_changed":1,"files_unmodified":0,"dirs_new":1,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":1,"data_added":300,"data_added_packed":200,"total_files_processed":3,"total_bytes_processed":90,"backup_start":"2024-08-01T10:00:00Z","backup_end":"2024-08-01T10:00:02Z","total_duration":2.5,"snapshot_id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}"#;
    let Line::Summary {
        summary,
        total_duration_secs,
    } = parse_line(summary)
    else {
        panic!("a summary line");
    };
    assert_eq!((summary.files_new, summary.files_changed), (2, 1));
    assert_eq!(summary.data_added_bytes, 300);
    assert_eq!(total_duration_secs, Some(2.5));

    let error = r#"{"message_type":"error","error":{"message":"open /x: permission denied"},"during":"archival","item":"/x"}"#;
    let Line::Error(error) = parse_line(error) else {
        panic!("an error line");
    };
    assert_eq!(error.message, "open /x: permission denied");
    assert_eq!(error.item.as_deref(), Some("/x"));
}

#[test]
fn numbers_of_another_type_do_not_reject_the_line() {
    let line = r#"{"message_type":"status","percent_done":0.5,"total_files":12.0,"files_done":-1,"bytes_done":"many","error_count":null}"#;
    let Line::Status(progress) = parse_line(line) else {
        panic!("a status line");
    };
    assert_eq!(progress.percent_done, 0.5);
    assert_eq!((progress.total_files, progress.files_done), (12, 0));
    assert_eq!((progress.bytes_done, progress.error_count), (0, 0));
}

#[test]
fn anything_else_is_other_and_never_panics() {
    let cases = [
        "",
        "   ",
        "Warning: at least one source file could not be read",
        "{not json",
        "{}",
        r#"{"message_type":"verbose_status","action":"new","item":"/x"}"#,
        r#"{"message_type":7}"#,
        "[1,2,3]",
        "\u{1F600} \u{0} \\",
    ];
    for text in cases {
        assert_eq!(parse_line(text), Line::Other(text.to_owned()), "{text:?}");
    }
}

#[test]
fn status_error_count_is_used_when_error_lines_went_elsewhere() {
    let mut output = BackupOutput::new();
    output.feed(r#"{"message_type":"status","percent_done":1,"error_count":4}"#);
    assert_eq!(output.error_count(), 4);
    assert_eq!(output.finish(Some(3)), None, "no summary was printed");
}

#[test]
fn keeps_a_bounded_number_of_error_lines() {
    let mut output = BackupOutput::new();
    let line = r#"{"message_type":"error","error":"x","item":"/y"}"#;
    for _ in 0..BackupOutput::MAX_KEPT_ERRORS + 5 {
        output.feed(line);
    }
    assert_eq!(output.errors().len(), BackupOutput::MAX_KEPT_ERRORS);
    assert_eq!(
        output.error_count(),
        BackupOutput::MAX_KEPT_ERRORS as u64 + 5
    );
}
