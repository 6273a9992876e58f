//! The decisions of a restore, pure: which snapshot paths the request selects, what
//! happens to each entry given what the target holds and the overwrite policy, the
//! tally reported at the end, and what restic's output says (`ls` nodes, restore errors,
//! a missing snapshot).

use chrono::{DateTime, Utc};
use fleet_events::event::{ErrorClass, MAX_ERROR_SAMPLES, Overwrite, RestoreSummary, TaskError};
use serde::Deserialize;

/// Longest error sample kept.
const MAX_SAMPLE: usize = 512;

/// What kind of entry a path is (a symlink is never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File,
    Symlink,
    /// A device, a FIFO or a socket.
    Other,
}

/// What the restore compares: the entry's kind, size (regular files) and modification
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub entry: Entry,
    pub size: u64,
    pub mtime: Option<DateTime<Utc>>,
}

/// What to do with one entry of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write it into the target (a missing directory: with everything in it).
    Restore,
    /// A directory the target has too: decide for each entry inside.
    Merge,
    /// Leave the target's entry as it is (counted as skipped).
    Skip,
    /// It cannot be restored there without removing something else: an error, and the
    /// target is left as it is (with everything below it, for a directory).
    Conflict(&'static str),
}

/// The action for an entry of the snapshot (`snapshot`) where the target holds
/// `existing`, under `overwrite`. A directory is never replaced, and never by a file.
pub fn decide(overwrite: Overwrite, snapshot: &Facts, existing: Option<&Facts>) -> Action {
    let Some(existing) = existing else {
        return Action::Restore;
    };
    match (snapshot.entry, existing.entry) {
        (Entry::Dir, Entry::Dir) => Action::Merge,
        (Entry::Dir, _) => Action::Conflict("exists in the target and is not a directory"),
        (_, Entry::Dir) => Action::Conflict("exists in the target as a directory"),
        _ => match overwrite {
            Overwrite::Never => Action::Skip,
            Overwrite::Always => Action::Restore,
            Overwrite::IfChanged if changed(snapshot, existing) => Action::Restore,
            Overwrite::IfChanged => Action::Skip,
        },
    }
}

/// Whether the target's entry differs from the snapshot's: another kind, another
/// modification time, or (regular files) another size.
fn changed(snapshot: &Facts, existing: &Facts) -> bool {
    snapshot.entry != existing.entry
        || snapshot.mtime != existing.mtime
        || (snapshot.entry == Entry::File && snapshot.size != existing.size)
}

/// The request's include paths, normalised (no trailing `/`); none selects everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Includes(Vec<String>);

impl Includes {
    pub fn new(paths: &[String]) -> Self {
        let mut paths: Vec<String> = paths
            .iter()
            .map(|p| match p.trim_end_matches('/') {
                "" => "/".to_owned(),
                trimmed => trimmed.to_owned(),
            })
            .collect();
        if paths.iter().any(|p| p == "/") {
            paths.clear();
        }
        Self(paths)
    }

    /// Whether restic restores `path` (of the snapshot): it is an include path or lies
    /// below one.
    pub fn selects(&self, path: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|inc| path == inc || is_below(path, inc))
    }

    /// Whether `path` is a directory above an include path: restic creates it on the way.
    pub fn leads_to(&self, path: &str) -> bool {
        self.0.iter().any(|inc| is_below(inc, path))
    }
}

/// Whether `path` lies strictly below the directory `dir`.
pub fn is_below(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path.len() > dir.len() + 1 && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// What a restore did or would do, as it is counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub files_restored: u64,
    pub bytes_restored: u64,
    pub files_skipped: u64,
    pub errors: u64,
    pub samples: Vec<String>,
}

impl Tally {
    /// One entry (not a directory) restored, of `size` bytes.
    pub fn restored(&mut self, size: u64) {
        self.restored_many(1, size);
    }

    /// `files` entries (not directories) restored at once, of `bytes` together.
    pub fn restored_many(&mut self, files: u64, bytes: u64) {
        self.files_restored += files;
        self.bytes_restored += bytes;
    }

    pub fn skipped(&mut self) {
        self.files_skipped += 1;
    }

    /// One error; its text is kept if fewer than [`MAX_ERROR_SAMPLES`] are.
    pub fn error(&mut self, sample: impl FnOnce() -> String) {
        self.errors += 1;
        if self.samples.len() < MAX_ERROR_SAMPLES {
            self.samples.push(cut(sample(), MAX_SAMPLE));
        }
    }

    /// The report's summary of this tally.
    pub fn summary(self, snapshot: &str, dry_run: bool) -> RestoreSummary {
        RestoreSummary {
            snapshot: snapshot.to_owned(),
            dry_run,
            files_restored: self.files_restored,
            bytes_restored: self.bytes_restored,
            files_skipped: self.files_skipped,
            errors: self.errors,
            error_samples: self.samples,
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, `…` marking the cut.
fn cut(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One line of `restic ls --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsLine {
    /// The snapshot itself, printed first: the snapshot exists.
    Snapshot,
    /// One entry, with its path in the snapshot.
    Node { path: String, facts: Facts },
    /// Anything else (text, unknown messages).
    Other,
}

#[derive(Deserialize)]
struct LsJson {
    #[serde(default)]
    struct_type: Option<String>,
    #[serde(default)]
    message_type: Option<String>,
    #[serde(default, rename = "type")]
    node_type: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    size: Option<serde_json::Value>,
    #[serde(default)]
    mtime: Option<String>,
}

/// Reads one line of `restic ls --json` (0.14: `struct_type`; 0.17+: `message_type` too).
pub fn parse_ls_line(line: &str) -> LsLine {
    let Ok(json) = serde_json::from_str::<LsJson>(line) else {
        return LsLine::Other;
    };
    let what = json.struct_type.or(json.message_type);
    match what.as_deref() {
        Some("snapshot") => LsLine::Snapshot,
        Some("node") => {
            let Some(path) = json.path else {
                return LsLine::Other;
            };
            let entry = match json.node_type.as_deref() {
                Some("dir") => Entry::Dir,
                Some("file") => Entry::File,
                Some("symlink") => Entry::Symlink,
                _ => Entry::Other,
            };
            let size = match entry {
                Entry::File => json.size.and_then(|v| v.as_u64()).unwrap_or(0),
                _ => 0,
            };
            let mtime = json
                .mtime
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc));
            LsLine::Node {
                path,
                facts: Facts { entry, size, mtime },
            }
        }
        _ => LsLine::Other,
    }
}

/// What one line of a restore's output says about errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreLine {
    /// One file's error: its path and restic's words.
    Error(String),
    /// `There were N errors`: restic's own count, at the end.
    Count(u64),
    Other,
}

/// Reads one line of `restic restore` (text: `ignoring error for <path>: <why>`, the same
/// from 0.14 to 0.18; or a JSON `error` message of newer versions under `--json`; the
/// count as text, or under `--json` from 0.18 as the message of an `exit_error`).
pub fn parse_restore_line(line: &str) -> RestoreLine {
    if let Some(rest) = line.strip_prefix("ignoring error for ") {
        return RestoreLine::Error(rest.to_owned());
    }
    if let Some(n) = error_count(line) {
        return RestoreLine::Count(n);
    }
    if line.trim_start().starts_with('{')
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
        && value.get("message_type").and_then(|t| t.as_str()) == Some("exit_error")
        && let Some(n) = value
            .get("message")
            .and_then(|m| m.as_str())
            .and_then(error_count)
    {
        return RestoreLine::Count(n);
    }
    if line.trim_start().starts_with('{')
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
        && value.get("message_type").and_then(|t| t.as_str()) == Some("error")
    {
        let item = value.get("item").and_then(|i| i.as_str()).unwrap_or("?");
        let error = value.get("error");
        let message = error
            .and_then(|e| e.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .or_else(|| error.map(|e| e.to_string()))
            .unwrap_or_default();
        return RestoreLine::Error(format!("{item}: {message}"));
    }
    RestoreLine::Other
}

/// N of `[Fatal: ]There were N errors` (and a line end), restic's count at the end.
fn error_count(text: &str) -> Option<u64> {
    text.trim()
        .trim_start_matches("Fatal: ")
        .strip_prefix("There were ")
        .and_then(|rest| rest.strip_suffix(" errors"))
        .and_then(|n| n.trim().parse().ok())
}

/// restic's words for a snapshot id that is not in the repository (0.14: `no matching ID
/// found`; 0.18: `failed to find snapshot`, `failed to load snapshot ... no such file`).
pub fn says_snapshot_missing(stderr: &str) -> bool {
    let text = stderr.to_lowercase();
    text.contains("no matching id found")
        || text.contains("failed to find snapshot")
        || (text.contains("failed to load snapshot") && text.contains("no such file"))
}

/// The error of a restore whose snapshot is not in the repository: permanent, naming it,
/// then what restic said (if anything).
pub fn missing_snapshot(snapshot: &str, said: &str, exit_code: Option<i32>) -> TaskError {
    let said = said.trim();
    let message = match said.is_empty() {
        true => format!("snapshot {snapshot} is not in the repository"),
        false => format!("snapshot {snapshot} is not in the repository; {said}"),
    };
    TaskError::new(ErrorClass::Permanent, &message, exit_code)
}

#[cfg(test)]
mod tests;
