//! A dry run: `restic ls --json <snapshot>` read line by line as restic prints it, each
//! selected entry compared with the target under the overwrite policy, the same decision
//! a real restore takes ([`decide`]). Writes nothing, not even the target.

use std::path::PathBuf;

use fleet_events::event::Overwrite;

use super::fs::{in_target, lstat};
use super::plan::{Action, Entry, Includes, LsLine, Tally, decide, is_below, parse_ls_line};
use crate::executor::collect::Stream;

/// What the listing showed so far.
#[derive(Debug)]
pub struct DryRun {
    target: PathBuf,
    includes: Includes,
    overwrite: Overwrite,
    pub tally: Tally,
    /// restic printed the snapshot: it exists (0.14 exits 0 for a missing one).
    pub saw_snapshot: bool,
    /// Snapshot directories that cannot be restored (a conflict): nothing below counts.
    blocked: Vec<String>,
}

impl DryRun {
    pub fn new(target: PathBuf, includes: Includes, overwrite: Overwrite) -> Self {
        Self {
            target,
            includes,
            overwrite,
            tally: Tally::default(),
            saw_snapshot: false,
            blocked: Vec::new(),
        }
    }

    /// Takes one line of restic's output. One `lstat` per selected entry: quick enough to
    /// run between two lines on the runtime's thread.
    pub fn line(&mut self, stream: Stream, line: &str) {
        if stream != Stream::Out {
            return;
        }
        let (path, facts) = match parse_ls_line(line) {
            LsLine::Snapshot => {
                self.saw_snapshot = true;
                return;
            }
            LsLine::Node { path, facts } => (path, facts),
            LsLine::Other => return,
        };
        let selected = self.includes.selects(&path);
        if !selected && !self.includes.leads_to(&path) {
            return;
        }
        if self.blocked.iter().any(|dir| is_below(&path, dir)) {
            return;
        }
        let existing = match lstat(&in_target(&self.target, &path)) {
            Ok(existing) => existing,
            Err(e) => {
                self.tally
                    .error(|| format!("{path}: cannot be checked in the target: {e}"));
                self.block(facts.entry, path);
                return;
            }
        };
        match decide(self.overwrite, &facts, existing.as_ref()) {
            Action::Conflict(why) => {
                self.tally.error(|| format!("{path}: {why}; not restored"));
                self.block(facts.entry, path);
            }
            // A directory on the way to an include path: restic creates it, nothing more.
            _ if !selected => {}
            Action::Restore if facts.entry == Entry::Dir => {}
            Action::Restore => self.tally.restored(facts.size),
            Action::Merge => {}
            Action::Skip => self.tally.skipped(),
        }
    }

    fn block(&mut self, entry: Entry, path: String) {
        if entry == Entry::Dir {
            self.blocked.push(path);
        }
    }
}
