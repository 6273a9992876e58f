//! `restic snapshots --json`: the snapshots in a repository.

use serde::Deserialize;

use super::{OutputError, json_arrays, lenient_strings, number_as_u64};

/// One snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Snapshot {
    /// The full id (64 hex digits).
    pub id: String,
    /// The id's first 8 hex digits.
    #[serde(default)]
    pub short_id: String,
    /// When the backup started, RFC 3339 with the host's offset.
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default, deserialize_with = "lenient_strings")]
    pub paths: Vec<String>,
    /// Empty when the snapshot has none (restic then omits the field).
    #[serde(default, deserialize_with = "lenient_strings")]
    pub tags: Vec<String>,
    /// What the backup processed: restic 0.17 and later; `None` before, or when it is not
    /// an object.
    #[serde(default, deserialize_with = "lenient_summary")]
    pub summary: Option<SnapshotSummary>,
}

/// The totals of the backup that made a snapshot (restic 0.17+); a total that is absent
/// or not a number is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct SnapshotSummary {
    #[serde(default, deserialize_with = "lenient_count")]
    pub total_files_processed: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    pub total_bytes_processed: Option<u64>,
}

/// A JSON number as a `u64` (negatives 0, fractions cut); anything else `None`.
fn lenient_count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Ok(number_as_u64(&serde_json::Value::deserialize(
        deserializer,
    )?))
}

/// A summary object; anything else (absent, null, another shape) is `None`.
fn lenient_summary<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SnapshotSummary>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::Object(_) => serde_json::from_value(value).ok(),
        _ => None,
    })
}

impl Snapshot {
    /// Whether `id` names this snapshot: the full id or a prefix of it, as in a backup
    /// summary's `snapshot_id` (restic 0.14 prints the short id there).
    pub fn has_id(&self, id: &str) -> bool {
        !id.is_empty() && self.id.starts_with(id)
    }
}

/// The snapshots in `snapshots --json`'s stdout, oldest first (restic's order).
pub fn parse_snapshots(stdout: &str) -> Result<Vec<Snapshot>, OutputError> {
    json_arrays::<Snapshot>(stdout)
        .into_iter()
        .next()
        .ok_or(OutputError::NoJsonArray {
            command: "snapshots",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restic::captured;

    #[test]
    fn reads_a_real_0_14_listing() {
        let snapshots = parse_snapshots(captured::SNAPSHOTS_STDOUT).expect("a listing");
        assert_eq!(
            snapshots,
            [Snapshot {
                id: "bdda295f720686d44a195094995d61d0f7557f71875c5787624478db1353e308".to_owned(),
                short_id: "bdda295f".to_owned(),
                time: "2026-11-22T08:20:44.753842995Z".to_owned(),
                hostname: "vm".to_owned(),
                paths: vec!["/tmp/rx/data".to_owned()],
                tags: Vec::new(),
                summary: None,
            }]
        );
        assert!(snapshots[0].has_id("bdda295f"));
        assert!(snapshots[0].has_id(&snapshots[0].id));
        assert!(!snapshots[0].has_id("") && !snapshots[0].has_id("4af78ca8"));
    }

    #[test]
    fn reads_tags_and_newer_fields() {
        let stdout = r#"[{"id":"ab","short_id":"ab","time":"t","hostname":"h","paths":["/p"],"tags":["daily"],"program_version":"restic 0.17.3","summary":{"files_new":1}}]"#;
        let snapshots = parse_snapshots(stdout).expect("a listing");
        assert_eq!(snapshots[0].tags, ["daily"]);
        assert_eq!(snapshots[0].summary, Some(SnapshotSummary::default()));
    }

    #[test]
    fn reads_a_real_0_18_summary() {
        let snapshots = parse_snapshots(captured::SNAPSHOTS_0_18_STDOUT).expect("a listing");
        assert_eq!(
            snapshots[0].summary,
            Some(SnapshotSummary {
                total_files_processed: Some(2),
                total_bytes_processed: Some(8)
            })
        );
        let odd =
            r#"[{"id":"ab","summary":"none"},{"id":"cd","summary":{"total_bytes_processed":-1}}]"#;
        let snapshots = parse_snapshots(odd).expect("a listing");
        assert_eq!(snapshots[0].summary, None);
        let summary = snapshots[1].summary.expect("an object");
        assert_eq!(
            (summary.total_bytes_processed, summary.total_files_processed),
            (Some(0), None)
        );
    }

    #[test]
    fn empty_repository_and_no_listing() {
        assert_eq!(parse_snapshots("[]\n"), Ok(Vec::new()));
        assert_eq!(
            parse_snapshots("Fatal: wrong password or no key found\n"),
            Err(OutputError::NoJsonArray {
                command: "snapshots"
            })
        );
    }
}
