//! `restic backup --json`: status, summary and error lines, and an accumulator over them.

use fleet_events::event::BackupSummary;
use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::Value;

use super::{lenient_f64, lenient_strings, lenient_u64};
use crate::restic::classify::is_partial_success;

/// A `status` line: how far the backup is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// From 0.0 to 1.0.
    #[serde(deserialize_with = "lenient_fraction")]
    pub percent_done: f64,
    #[serde(deserialize_with = "lenient_u64")]
    pub total_files: u64,
    #[serde(deserialize_with = "lenient_u64")]
    pub files_done: u64,
    #[serde(deserialize_with = "lenient_u64")]
    pub total_bytes: u64,
    #[serde(deserialize_with = "lenient_u64")]
    pub bytes_done: u64,
    #[serde(deserialize_with = "lenient_u64")]
    pub error_count: u64,
    #[serde(deserialize_with = "lenient_u64")]
    pub seconds_elapsed: u64,
    /// restic's estimate; `None` while it has none (0.14 then prints 2^63).
    #[serde(deserialize_with = "estimate")]
    pub seconds_remaining: Option<u64>,
    /// The files being read right now.
    #[serde(deserialize_with = "lenient_strings")]
    pub current_files: Vec<String>,
}

/// An `error` line: one item restic could not back up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorLine {
    /// What went wrong, such as `read /proc/self/mem: errno 5`.
    pub message: String,
    /// The path concerned, when restic names one.
    pub item: Option<String>,
    /// The phase, such as `archival` or `scan`.
    pub during: Option<String>,
}

/// One line of `restic backup --json` output (stdout or stderr).
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A `status` line.
    Status(Progress),
    /// The `summary` line. `unreadable_files` is 0 here: only the exit code and the error
    /// count tell (see [`BackupOutput::finish`]).
    Summary {
        summary: BackupSummary,
        /// restic's own measure of the run, in seconds.
        total_duration_secs: Option<f64>,
    },
    /// An `error` line.
    Error(ErrorLine),
    /// Anything else, verbatim: text (warnings, `Fatal: ...`), or JSON that is not a known
    /// message (such as `verbose_status`).
    Other(String),
}

/// Parses one line; never fails: what is not a known message is [`Line::Other`].
pub fn parse_line(line: &str) -> Line {
    let other = || Line::Other(line.to_owned());
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return other();
    }
    let Ok(message) = serde_json::from_str::<Message>(trimmed) else {
        return other();
    };
    match message {
        Message::Status(progress) => Line::Status(progress),
        Message::Summary(raw) => Line::Summary {
            total_duration_secs: raw.total_duration,
            summary: raw.into_summary(),
        },
        Message::Error(raw) => Line::Error(raw.into_error_line()),
        Message::Unknown => other(),
    }
}

/// Everything a backup printed, fed line by line from stdout and stderr (restic 0.14 prints
/// `error` lines on stderr, newer versions may print them on stdout; order does not matter).
#[derive(Debug, Clone, Default)]
pub struct BackupOutput {
    progress: Option<Progress>,
    summary: Option<(BackupSummary, Option<f64>)>,
    errors: Vec<ErrorLine>,
    error_lines: u64,
}

impl BackupOutput {
    /// Error lines kept for [`errors`](Self::errors); later ones are only counted.
    pub const MAX_KEPT_ERRORS: usize = 100;

    /// An accumulator that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and records one line, and returns it (to log [`Line::Other`], say).
    pub fn feed(&mut self, line: &str) -> Line {
        let parsed = parse_line(line);
        match &parsed {
            Line::Status(progress) => self.progress = Some(progress.clone()),
            Line::Summary {
                summary,
                total_duration_secs,
            } => self.summary = Some((summary.clone(), *total_duration_secs)),
            Line::Error(error) => {
                self.error_lines += 1;
                if self.errors.len() < Self::MAX_KEPT_ERRORS {
                    self.errors.push(error.clone());
                }
            }
            Line::Other(_) => {}
        }
        parsed
    }

    /// The last status line.
    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    /// The summary line, with `unreadable_files` 0.
    pub fn summary(&self) -> Option<&BackupSummary> {
        self.summary.as_ref().map(|(summary, _)| summary)
    }

    /// restic's measure of the run, in seconds, from the summary line.
    pub fn total_duration_secs(&self) -> Option<f64> {
        self.summary.as_ref().and_then(|(_, duration)| *duration)
    }

    /// The first [`MAX_KEPT_ERRORS`](Self::MAX_KEPT_ERRORS) error lines.
    pub fn errors(&self) -> &[ErrorLine] {
        &self.errors
    }

    /// How many items failed: the error lines seen, or the last status line's count if
    /// that is higher.
    pub fn error_count(&self) -> u64 {
        let reported = self.progress.as_ref().map_or(0, |p| p.error_count);
        self.error_lines.max(reported)
    }

    /// The summary of a finished run, with `unreadable_files` set from the error count
    /// (at least 1 when the exit code says the snapshot is partial); `None` when restic
    /// printed no summary.
    pub fn finish(&self, exit_code: Option<i32>) -> Option<BackupSummary> {
        let mut summary = self.summary()?.clone();
        let floor = u64::from(is_partial_success(exit_code));
        summary.unreadable_files = self.error_count().max(floor);
        Some(summary)
    }
}

#[derive(Deserialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
enum Message {
    Status(Progress),
    Summary(RawSummary),
    Error(RawError),
    #[serde(other)]
    Unknown,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawSummary {
    #[serde(deserialize_with = "lenient_u64")]
    files_new: u64,
    #[serde(deserialize_with = "lenient_u64")]
    files_changed: u64,
    #[serde(deserialize_with = "lenient_u64")]
    files_unmodified: u64,
    #[serde(deserialize_with = "lenient_u64")]
    dirs_new: u64,
    #[serde(deserialize_with = "lenient_u64")]
    dirs_changed: u64,
    #[serde(deserialize_with = "lenient_u64")]
    dirs_unmodified: u64,
    #[serde(deserialize_with = "lenient_u64")]
    data_blobs: u64,
    #[serde(deserialize_with = "lenient_u64")]
    tree_blobs: u64,
    #[serde(deserialize_with = "lenient_u64")]
    data_added: u64,
    #[serde(deserialize_with = "lenient_u64")]
    total_files_processed: u64,
    #[serde(deserialize_with = "lenient_u64")]
    total_bytes_processed: u64,
    #[serde(deserialize_with = "lenient_f64")]
    total_duration: Option<f64>,
    snapshot_id: Option<Value>,
}

impl RawSummary {
    fn into_summary(self) -> BackupSummary {
        let snapshot_id = match self.snapshot_id {
            Some(Value::String(id)) if !id.is_empty() => Some(id),
            _ => None,
        };
        BackupSummary {
            snapshot_id,
            files_new: self.files_new,
            files_changed: self.files_changed,
            files_unmodified: self.files_unmodified,
            dirs_new: self.dirs_new,
            dirs_changed: self.dirs_changed,
            dirs_unmodified: self.dirs_unmodified,
            data_blobs: self.data_blobs,
            tree_blobs: self.tree_blobs,
            data_added_bytes: self.data_added,
            total_files_processed: self.total_files_processed,
            total_bytes_processed: self.total_bytes_processed,
            unreadable_files: 0,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawError {
    error: Value,
    item: Option<Value>,
    during: Option<Value>,
}

impl RawError {
    fn into_error_line(self) -> ErrorLine {
        let message = error_message(&self.error);
        ErrorLine {
            message: if message.is_empty() {
                "unknown error".to_owned()
            } else {
                message
            },
            item: self.item.and_then(non_empty_string),
            during: self.during.and_then(non_empty_string),
        }
    }
}

/// The `error` field's text. Newer restic prints `{"message": "..."}`; 0.14 marshals Go's
/// error value as is, such as `{"Op":"read","Path":"/x","Err":5}` (5 is the errno), or
/// `{}` for errors without exported fields.
fn error_message(error: &Value) -> String {
    match error {
        Value::String(text) => text.clone(),
        Value::Object(fields) => {
            if let Some(Value::String(text)) = fields.get("message") {
                return text.clone();
            }
            let op = fields.get("Op").and_then(Value::as_str);
            let path = fields.get("Path").and_then(Value::as_str);
            let cause = match fields.get("Err") {
                Some(Value::String(text)) => Some(text.clone()),
                Some(Value::Number(errno)) => Some(format!("errno {errno}")),
                _ => None,
            };
            match (op, path, cause) {
                (Some(op), Some(path), Some(cause)) => format!("{op} {path}: {cause}"),
                (Some(op), Some(path), None) => format!("{op} {path}"),
                (_, _, Some(cause)) => cause,
                _ if fields.is_empty() => String::new(),
                _ => error.to_string(),
            }
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn non_empty_string(value: Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text),
        _ => None,
    }
}

pub(super) fn lenient_fraction<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<f64, D::Error> {
    Ok(lenient_f64(deserializer)?.unwrap_or(0.0))
}

/// `seconds_remaining`, or `None` when absent or restic's "unknown" (2^63 and above).
pub(super) fn estimate<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let seconds = Value::deserialize(deserializer)?.as_u64();
    Ok(seconds.filter(|&s| s < 1 << 63))
}

#[cfg(test)]
mod tests;
