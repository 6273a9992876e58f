//! restic's `status` lines, whichever command prints them: `backup --json` (every
//! version) and `restore --json` (0.16 and newer), read leniently into one shape.

use serde::Deserialize;

use super::backup::{estimate, lenient_fraction};
use super::lenient_u64;

/// How far a running restic is. Counts and sizes only: restic's `current_files` is never
/// read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Status {
    /// From 0.0 to 1.0, as restic printed it.
    pub percent_done: f64,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub seconds_elapsed: u64,
    /// restic's estimate, when it has one (backups only).
    pub seconds_remaining: Option<u64>,
    /// Items that failed so far (backups only).
    pub errors: u64,
}

impl Status {
    /// `percent_done` in hundredths of a percent, 0 to 10 000 (out-of-range and non-finite
    /// values clamped, NaN as 0).
    pub fn done_bp(&self) -> u16 {
        let bp = (self.percent_done * 10_000.0).round();
        match bp.is_nan() {
            true => 0,
            // `as` saturates; the clamp keeps it within 10 000.
            false => bp.clamp(0.0, 10_000.0) as u16,
        }
    }
}

/// The fields of both shapes; a missing or odd field is 0 (or `None`).
#[derive(Default, Deserialize)]
#[serde(default)]
struct Raw {
    message_type: Option<String>,
    #[serde(deserialize_with = "lenient_fraction")]
    percent_done: f64,
    #[serde(deserialize_with = "lenient_u64")]
    total_files: u64,
    #[serde(deserialize_with = "lenient_u64")]
    total_bytes: u64,
    #[serde(deserialize_with = "lenient_u64")]
    seconds_elapsed: u64,
    #[serde(deserialize_with = "estimate")]
    seconds_remaining: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    error_count: u64,
    // backup
    #[serde(deserialize_with = "lenient_u64")]
    files_done: u64,
    #[serde(deserialize_with = "lenient_u64")]
    bytes_done: u64,
    // restore: files written, and (0.17+) files left as they were.
    #[serde(deserialize_with = "lenient_u64")]
    files_restored: u64,
    #[serde(deserialize_with = "lenient_u64")]
    files_skipped: u64,
    #[serde(deserialize_with = "lenient_u64")]
    bytes_restored: u64,
    #[serde(deserialize_with = "lenient_u64")]
    bytes_skipped: u64,
}

/// The status in `line`, if it is a JSON object with `"message_type": "status"`;
/// anything else (text, other messages, broken JSON) is `None`. Never fails.
pub fn parse_status(line: &str) -> Option<Status> {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let raw: Raw = serde_json::from_str(trimmed).ok()?;
    if raw.message_type.as_deref() != Some("status") {
        return None;
    }
    Some(Status {
        percent_done: raw.percent_done,
        files_done: raw.files_done + raw.files_restored + raw.files_skipped,
        files_total: raw.total_files,
        bytes_done: raw.bytes_done + raw.bytes_restored + raw.bytes_skipped,
        bytes_total: raw.total_bytes,
        seconds_elapsed: raw.seconds_elapsed,
        seconds_remaining: raw.seconds_remaining,
        errors: raw.error_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_backup_status_line_of_0_14_without_its_file_names() {
        let line = r#"{"message_type":"status","seconds_elapsed":3,"percent_done":0.8040862265087310,"total_files":2,"files_done":1,"total_bytes":220200960,"bytes_done":177060559,"current_files":["/secret/name"]}"#;
        let status = parse_status(line).expect("a status");
        assert_eq!(
            status,
            Status {
                percent_done: 0.804_086_226_508_731,
                files_done: 1,
                files_total: 2,
                bytes_done: 177_060_559,
                bytes_total: 220_200_960,
                seconds_elapsed: 3,
                seconds_remaining: None,
                errors: 0,
            }
        );
        assert_eq!(status.done_bp(), 8041);
    }

    #[test]
    fn reads_a_restore_status_line_of_0_16_and_0_18() {
        let v016 = r#"{"message_type":"status","seconds_elapsed":1,"percent_done":0.5,"total_files":4,"files_restored":2,"total_bytes":100,"bytes_restored":50}"#;
        let status = parse_status(v016).expect("a status");
        assert_eq!((status.files_done, status.bytes_done), (2, 50));
        assert_eq!((status.files_total, status.bytes_total), (4, 100));
        let v018 = r#"{"message_type":"status","percent_done":0.25,"total_files":4,"files_restored":1,"files_skipped":1,"total_bytes":100,"bytes_restored":25,"bytes_skipped":10}"#;
        let status = parse_status(v018).expect("a status");
        assert_eq!((status.files_done, status.bytes_done), (2, 35));
        assert_eq!((status.seconds_elapsed, status.done_bp()), (0, 2500));
    }

    #[test]
    fn missing_and_odd_fields_default() {
        let status = parse_status(r#"{"message_type":"status"}"#).expect("a status");
        assert_eq!(status, Status::default());
        let odd = r#"{"message_type":"status","percent_done":"x","total_files":-3,"files_done":2.7,"seconds_remaining":9223372036854775808,"error_count":null}"#;
        let status = parse_status(odd).expect("a status");
        assert_eq!((status.files_total, status.files_done), (0, 2));
        assert_eq!((status.seconds_remaining, status.errors), (None, 0));
        let estimated = r#"{"message_type":"status","seconds_remaining":42,"error_count":2}"#;
        let status = parse_status(estimated).expect("a status");
        assert_eq!((status.seconds_remaining, status.errors), (Some(42), 2));
    }

    #[test]
    fn done_bp_is_clamped() {
        let at = |percent_done| Status {
            percent_done,
            ..Status::default()
        };
        assert_eq!(at(1.0).done_bp(), 10_000);
        assert_eq!(at(1.7).done_bp(), 10_000);
        assert_eq!(at(-0.2).done_bp(), 0);
        assert_eq!(at(f64::NAN).done_bp(), 0);
        assert_eq!(at(f64::INFINITY).done_bp(), 10_000);
        assert_eq!(at(0.00004).done_bp(), 0);
        assert_eq!(at(0.00005).done_bp(), 1);
    }

    #[test]
    fn anything_else_is_none() {
        for line in [
            "",
            "[0:01] 10.00%",
            "{",
            r#"{"message_type":"summary","files_new":1}"#,
            r#"{"message_type":"verbose_status","action":"new"}"#,
            r#"{"struct_type":"node","name":"x"}"#,
            r#"["status"]"#,
        ] {
            assert_eq!(parse_status(line), None, "{line:?}");
        }
    }
}
