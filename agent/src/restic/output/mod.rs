//! Lenient parsers for restic's `--json` output and for `restic version`.
//!
//! Newer restic versions add fields and message types, so unknown fields are ignored,
//! missing fields default, numbers of an unexpected type become 0, and text that is not
//! JSON is passed through rather than rejected.

mod backup;
mod forget;
mod snapshots;
mod status;
mod version;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::Value;

pub use backup::{BackupOutput, ErrorLine, Line, Progress, parse_line};
pub use forget::{parse_forget, removed_ids};
pub use snapshots::{Snapshot, SnapshotSummary, parse_snapshots};
pub use status::{Status, parse_status};
pub use version::ResticVersion;

/// restic printed something that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// `restic version` did not print `restic X.Y[.Z] ...`: the program is not restic, or
    /// it failed. Report the agent as unable to run restic.
    #[error("not the output of `restic version`: {0:?}")]
    NotVersion(String),
    /// No JSON array was found in the output of `restic <command> --json`: restic failed
    /// before printing it. Classify its exit code and stderr instead.
    #[error("no JSON array in the output of `restic {command} --json`")]
    NoJsonArray {
        /// The restic command, such as `forget`.
        command: &'static str,
    },
}

/// Every JSON array of `T` found in `text`, in order. An array may be the whole text or
/// start a line (restic surrounds some with progress text); lines that start with `[` but
/// are not JSON, such as `[0:00] 100.00%`, are skipped.
fn json_arrays<T: DeserializeOwned>(text: &str) -> Vec<Vec<T>> {
    if let Ok(all) = serde_json::from_str::<Vec<T>>(text) {
        return vec![all];
    }
    text.lines()
        .filter_map(|line| {
            let start = line.trim_start();
            if !start.starts_with('[') {
                return None;
            }
            // The first value only: text after the array on the same line is ignored.
            serde_json::Deserializer::from_str(start)
                .into_iter::<Vec<T>>()
                .next()?
                .ok()
        })
        .collect()
}

/// Any JSON number as a `u64`: negatives become 0 and fractions are cut; anything else
/// (null, a string) becomes 0.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(number_as_u64(&Value::deserialize(deserializer)?).unwrap_or(0))
}

/// Any JSON number as an `f64`; anything else becomes `None`.
fn lenient_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    Ok(Value::deserialize(deserializer)?.as_f64())
}

/// The strings of a JSON array; null or anything else becomes an empty list.
fn lenient_strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::String(text) => Some(text),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

fn number_as_u64(value: &Value) -> Option<u64> {
    let Value::Number(number) = value else {
        return None;
    };
    number.as_u64().or_else(|| {
        // Negative or fractional: `as` saturates, so negatives become 0.
        number.as_f64().map(|float| float as u64)
    })
}
