//! What a restic run printed, kept within bounds, and the report it adds up to.

use std::time::{Duration, Instant};

use fleet_events::event::{ErrorClass, RunDetail, RunSummary, TaskError};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use tracing::debug;

use crate::restic::{BackupOutput, Line, ResticVersion, failure, is_partial_success, parse_forget};

/// The end of stderr kept for classifying a failure (restic prints the fatal error last).
pub const STDERR_TAIL: usize = 64 * 1024;
/// Most stdout kept for commands whose output is parsed at the end (`forget --json`).
const STDOUT_MAX: usize = 32 * 1024 * 1024;
/// A backup's progress is logged at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// The output of one run so far.
#[derive(Debug)]
pub struct Collected {
    kind: TaskKind,
    backup: BackupOutput,
    stdout: String,
    stdout_cut: bool,
    stderr: String,
    last_progress_log: Option<Instant>,
}

impl Collected {
    /// Nothing seen yet from a `kind` run.
    pub fn new(kind: TaskKind) -> Self {
        Self {
            kind,
            backup: BackupOutput::new(),
            stdout: String::new(),
            stdout_cut: false,
            stderr: String::new(),
            last_progress_log: None,
        }
    }

    /// Records one line (without its line end).
    pub fn push(&mut self, stream: Stream, line: String) {
        if self.kind == TaskKind::Backup {
            // restic 0.14 prints `error` lines on stderr, newer versions on stdout.
            if let Line::Status(progress) = self.backup.feed(&line) {
                let due = self
                    .last_progress_log
                    .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
                if due {
                    self.last_progress_log = Some(Instant::now());
                    debug!(
                        percent_done = progress.percent_done,
                        files_done = progress.files_done,
                        bytes_done = progress.bytes_done,
                        "backup progress"
                    );
                }
            }
        }
        match stream {
            Stream::Out if keeps_stdout(self.kind) => {
                if self.stdout.len() + line.len() < STDOUT_MAX {
                    self.stdout.push_str(&line);
                    self.stdout.push('\n');
                } else {
                    self.stdout_cut = true;
                }
            }
            Stream::Out => {}
            Stream::Err => {
                self.stderr.push_str(&line);
                self.stderr.push('\n');
                if self.stderr.len() > 2 * STDERR_TAIL {
                    self.keep_stderr_tail();
                }
            }
        }
    }

    /// What a check, prune or refresh printed on stdout (at most 32 MiB), and whether more
    /// was cut off. Backups and restores keep none (their lines go to a parser or an
    /// observer as they come).
    pub fn stdout(&self) -> (&str, bool) {
        (&self.stdout, self.stdout_cut)
    }

    /// The last [`STDERR_TAIL`] bytes of stderr at most.
    pub fn stderr(&mut self) -> &str {
        self.keep_stderr_tail();
        &self.stderr
    }

    fn keep_stderr_tail(&mut self) {
        if self.stderr.len() <= STDERR_TAIL {
            return;
        }
        let mut start = self.stderr.len() - STDERR_TAIL;
        while !self.stderr.is_char_boundary(start) {
            start += 1;
        }
        self.stderr.drain(..start);
    }

    /// The report of a run that ended by itself with `code` (`None`: killed by a signal).
    pub fn finish(
        mut self,
        code: Option<i32>,
        duration_ms: u64,
        version: &ResticVersion,
    ) -> ReportStatus {
        let kind = self.kind;
        let ok = code == Some(0) || (kind == TaskKind::Backup && is_partial_success(code));
        if !ok {
            return ReportStatus::Failed(failure(version, code, self.stderr(), false));
        }
        let detail = match kind {
            TaskKind::Backup => match self.backup.finish(code) {
                Some(summary) => RunDetail::Backup(summary),
                None => return odd(code, "restic backup printed no summary line"),
            },
            TaskKind::Check => RunDetail::Check,
            TaskKind::Prune => match parse_forget(&self.stdout) {
                Ok(summary) => RunDetail::Prune(summary),
                Err(_) if self.stdout_cut => {
                    return odd(code, "restic forget printed more than the agent keeps");
                }
                Err(error) => return odd(code, &error.to_string()),
            },
            // Judged by their own modules (`restore`, `listing`), which read what restic
            // printed as it came and do more than run restic.
            TaskKind::Restore | TaskKind::Refresh => {
                return odd(code, "this run is judged by its own module");
            }
        };
        ReportStatus::Succeeded(RunSummary {
            kind,
            duration_ms,
            detail,
        })
    }
}

/// Whether stdout is kept for reading at the end.
fn keeps_stdout(kind: TaskKind) -> bool {
    match kind {
        TaskKind::Check | TaskKind::Prune | TaskKind::Refresh => true,
        TaskKind::Backup | TaskKind::Restore => false,
    }
}

/// restic said it succeeded but its output cannot be read.
fn odd(code: Option<i32>, message: &str) -> ReportStatus {
    ReportStatus::Failed(TaskError::new(ErrorClass::Permanent, message, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from restic 0.14.0 (see `restic/captured.rs`).
    const PARTIAL_STDOUT: &str = r#"{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":9}
{"message_type":"summary","files_new":5,"files_changed":0,"files_unmodified":0,"dirs_new":4,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":0,"tree_blobs":3,"data_added":1047,"total_files_processed":5,"total_bytes_processed":30,"total_duration":0.225959805,"snapshot_id":"f0a81a1d"}
"#;
    const PARTIAL_STDERR: &str = r#"{"message_type":"error","error":{"Op":"read","Path":"/proc/self/mem","Err":5},"during":"archival","item":"/proc/self/mem"}
Warning: at least one source file could not be read
"#;
    const FORGET_STDOUT: &str = r#"[{"tags":null,"host":"vm","paths":["/d"],"keep":[{"id":"4af78ca8"}],"remove":[{"id":"481bd44e"},{"id":"bdda295f"}]}]
loading indexes...
done
"#;
    const WRONG_PASSWORD_STDERR: &str = "Fatal: wrong password or no key found\n";

    fn feed(kind: TaskKind, stdout: &str, stderr: &str) -> Collected {
        let mut c = Collected::new(kind);
        stdout.lines().for_each(|l| c.push(Stream::Out, l.into()));
        stderr.lines().for_each(|l| c.push(Stream::Err, l.into()));
        c
    }

    fn v014() -> ResticVersion {
        ResticVersion::new(0, 14, 0)
    }

    #[test]
    fn partial_backup_is_a_success_with_unreadable_files() {
        let c = feed(TaskKind::Backup, PARTIAL_STDOUT, PARTIAL_STDERR);
        let ReportStatus::Succeeded(summary) = c.finish(Some(3), 5, &v014()) else {
            panic!("not a success");
        };
        let RunDetail::Backup(backup) = summary.detail else {
            panic!("not a backup");
        };
        assert_eq!((backup.files_new, backup.unreadable_files), (5, 1));
    }

    #[test]
    fn prune_summary_and_failures() {
        let c = feed(TaskKind::Prune, FORGET_STDOUT, "");
        let ReportStatus::Succeeded(summary) = c.finish(Some(0), 5, &v014()) else {
            panic!("not a success");
        };
        assert!(matches!(summary.detail, RunDetail::Prune(p) if p.snapshots_removed == 2));
        let c = feed(TaskKind::Check, "", WRONG_PASSWORD_STDERR);
        let ReportStatus::Failed(error) = c.finish(Some(1), 5, &v014()) else {
            panic!("not a failure");
        };
        assert_eq!(error.class, ErrorClass::Auth);
        // Exit 3 is only a partial success for backups.
        let c = feed(TaskKind::Check, "", "");
        assert!(matches!(
            c.finish(Some(3), 5, &v014()),
            ReportStatus::Failed(_)
        ));
    }

    #[test]
    fn stderr_keeps_its_tail() {
        let mut c = Collected::new(TaskKind::Check);
        for i in 0..20_000 {
            c.push(Stream::Err, format!("line {i} ééé"));
        }
        let tail = c.stderr();
        assert!(tail.len() <= STDERR_TAIL);
        assert!(tail.ends_with("line 19999 ééé\n"));
    }
}
