//! The file-system side of a restore: what an entry is (never following a symlink), and
//! moving restic's staging directory into the target under the overwrite policy.
//!
//! Blocking: run it off the runtime's worker threads (`spawn_blocking`); it spawns no
//! process.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use fleet_events::event::Overwrite;
use tokio_util::sync::CancellationToken;

use super::plan::{Action, Entry, Facts, Tally, decide};

/// The facts of what `path` is, without following a symlink; `None` if nothing is there.
pub fn lstat(path: &Path) -> io::Result<Option<Facts>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(facts(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn facts(meta: &Metadata) -> Facts {
    let kind = meta.file_type();
    let entry = if kind.is_dir() {
        Entry::Dir
    } else if kind.is_file() {
        Entry::File
    } else if kind.is_symlink() {
        Entry::Symlink
    } else {
        Entry::Other
    };
    Facts {
        entry,
        size: if entry == Entry::File { meta.len() } else { 0 },
        mtime: meta.modified().ok().map(DateTime::<Utc>::from),
    }
}

/// Where a snapshot path lands in `target`.
pub fn in_target(target: &Path, snapshot_path: &str) -> PathBuf {
    target.join(snapshot_path.trim_start_matches('/'))
}

/// Why moving stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Cancelled,
    TimedOut,
}

/// When to stop moving files.
#[derive(Debug, Clone)]
pub struct Stop {
    pub cancel: CancellationToken,
    pub deadline: Instant,
}

impl Stop {
    fn check(&self) -> Result<(), Stopped> {
        if self.cancel.is_cancelled() {
            Err(Stopped::Cancelled)
        } else if Instant::now() >= self.deadline {
            Err(Stopped::TimedOut)
        } else {
            Ok(())
        }
    }
}

/// Moves what restic restored into `staging` (the snapshot's paths below it) into
/// `target`, entry by entry, as [`decide`] says: a missing entry is renamed into place (a
/// missing directory with everything in it, keeping restic's times and modes), a
/// directory both have is merged, an existing file is replaced (rename over it) or left,
/// and a conflict is an error. Counts into `tally`. Stops between two entries when `stop`
/// says so; what was moved stays moved.
pub fn merge(
    staging: &Path,
    target: &Path,
    overwrite: Overwrite,
    tally: &mut Tally,
    stop: &Stop,
) -> Result<(), Stopped> {
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        stop.check()?;
        let from_dir = staging.join(&rel);
        let entries = match writable(&from_dir).and_then(|()| fs::read_dir(&from_dir)) {
            Ok(entries) => entries,
            Err(e) => {
                tally.error(|| {
                    format!(
                        "{}: cannot be read from the staging directory: {e}",
                        shown(&rel)
                    )
                });
                continue;
            }
        };
        for entry in entries {
            stop.check()?;
            let name = match entry {
                Ok(entry) => entry.file_name(),
                Err(e) => {
                    tally.error(|| format!("{}: cannot be listed: {e}", shown(&rel)));
                    continue;
                }
            };
            let rel = rel.join(name);
            let (from, to) = (staging.join(&rel), target.join(&rel));
            let staged = match lstat(&from) {
                Ok(Some(facts)) => facts,
                Ok(None) => continue,
                Err(e) => {
                    tally.error(|| format!("{}: {e}", shown(&rel)));
                    continue;
                }
            };
            let existing = match lstat(&to) {
                Ok(existing) => existing,
                Err(e) => {
                    tally
                        .error(|| format!("{}: cannot be checked in the target: {e}", shown(&rel)));
                    continue;
                }
            };
            match decide(overwrite, &staged, existing.as_ref()) {
                Action::Restore => {
                    let (files, bytes) = match staged.entry {
                        Entry::Dir => count(&from),
                        _ => (1, staged.size),
                    };
                    match fs::rename(&from, &to) {
                        Ok(()) => tally.restored_many(files, bytes),
                        Err(e) => tally.error(|| {
                            format!("{}: cannot be moved into the target: {e}", shown(&rel))
                        }),
                    }
                }
                Action::Merge => dirs.push(rel),
                Action::Skip => tally.skipped(),
                Action::Conflict(why) => {
                    tally.error(|| format!("{}: {why}; not restored", shown(&rel)));
                }
            }
        }
    }
    Ok(())
}

/// A path below the staging directory as the snapshot path it is.
fn shown(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// The entries that are not directories in the tree at `dir` and the bytes of its
/// regular files (symlinks not followed; unreadable parts not counted).
fn count(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match lstat(&path) {
                Ok(Some(facts)) if facts.entry == Entry::Dir => dirs.push(path),
                Ok(Some(facts)) => {
                    files += 1;
                    bytes += facts.size;
                }
                _ => {}
            }
        }
    }
    (files, bytes)
}

/// Lets the agent's user move entries out of a staged directory: restic gives restored
/// directories their snapshot's mode, which may be read-only (root needs no such help).
fn writable(dir: &Path) -> io::Result<()> {
    let mode = fs::symlink_metadata(dir)?.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    Ok(())
}

/// Removes `path` and everything below it, never following a symlink (a symlink is
/// removed itself), making read-only directories writable on the way. Nothing there is
/// fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let Some(facts) = lstat(path)? else {
        return Ok(());
    };
    if facts.entry != Entry::Dir {
        return fs::remove_file(path);
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mut dirs = vec![path.to_path_buf()];
            while let Some(dir) = dirs.pop() {
                writable(&dir)?;
                for entry in fs::read_dir(&dir)?.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs.push(entry.path());
                    }
                }
            }
            fs::remove_dir_all(path)
        }
        other => other,
    }
}
