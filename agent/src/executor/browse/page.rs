//! One page of a directory from `restic ls --json <snapshot> <dir>`, pure: which lines
//! are the directory's children, the page after a name (memory bounded by the page, not
//! by the directory), cut to a count and to the size a reply may have.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use fleet_events::browse::{BrowsePage, BrowseReply, Entry, EntryKind};
use fleet_events::codec::MAX_EVENT_BYTES;
use fleet_events::envelope::SCHEMA_VERSION;

use crate::executor::restore::plan::{self, LsLine, parse_ls_line};

/// `path` without empty or `.` components and without a trailing `/` (`/` stays `/`).
/// The request's path is checked first: absolute, without `..`.
pub fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// What the listing found, once restic is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// restic printed no snapshot line: the snapshot is not in the repository.
    NoSnapshot,
    /// The snapshot has nothing at this path.
    NoPath,
    /// The path is a file (or a link, or another non-directory).
    NotADirectory,
    /// The page's entries, sorted by name, and whether more come after them.
    Entries { entries: Vec<Entry>, more: bool },
}

/// Reads `restic ls --json` lines, keeping only the smallest names after `after`.
#[derive(Debug)]
pub struct Listing {
    dir: String,
    after: Option<String>,
    /// The page's size plus one (to know whether more remain).
    keep: usize,
    saw_snapshot: bool,
    /// The kind of `dir` itself, when restic listed it (never for `/`).
    own: Option<plan::Entry>,
    /// The kept entries, the largest name on top.
    kept: BinaryHeap<ByName>,
}

impl Listing {
    /// A listing of `dir` (normalised) for a page of `limit` entries after `after`.
    pub fn new(dir: &str, after: Option<String>, limit: u32) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Self {
            dir: dir.to_owned(),
            after,
            keep: limit.saturating_add(1),
            saw_snapshot: false,
            own: None,
            kept: BinaryHeap::new(),
        }
    }

    /// One line restic printed on stdout.
    pub fn line(&mut self, line: &str) {
        let (path, facts) = match parse_ls_line(line) {
            LsLine::Snapshot => {
                self.saw_snapshot = true;
                return;
            }
            LsLine::Node { path, facts } => (path, facts),
            LsLine::Other => return,
        };
        if path == self.dir {
            self.own = Some(facts.entry);
            return;
        }
        let Some((parent, name)) = path.rsplit_once('/') else {
            return;
        };
        let parent = if parent.is_empty() { "/" } else { parent };
        if parent != self.dir || name.is_empty() {
            return;
        }
        if self.after.as_deref().is_some_and(|after| name <= after) {
            return;
        }
        if self.kept.len() >= self.keep
            && self
                .kept
                .peek()
                .is_some_and(|top| name >= top.0.name.as_str())
        {
            return;
        }
        self.kept.push(ByName(entry(name, facts)));
        if self.kept.len() > self.keep {
            self.kept.pop();
        }
    }

    /// What was found. A directory that exists is listed even when empty; one with
    /// children listed but no line of its own is taken to exist too.
    pub fn finish(self) -> Found {
        if !self.saw_snapshot {
            return Found::NoSnapshot;
        }
        match self.own {
            Some(plan::Entry::Dir) => {}
            Some(_) => return Found::NotADirectory,
            None if self.dir == "/" || !self.kept.is_empty() => {}
            None => return Found::NoPath,
        }
        let mut entries: Vec<Entry> = self
            .kept
            .into_sorted_vec()
            .into_iter()
            .map(|e| e.0)
            .collect();
        let more = entries.len() >= self.keep;
        entries.truncate(self.keep - 1);
        Found::Entries { entries, more }
    }
}

/// The page of `path` holding `entries` (sorted), shortened until its reply encodes
/// within [`MAX_EVENT_BYTES`]; `next` is the last entry's name when `more` remain or the
/// page was cut. `None` when not even one entry fits (a name tens of KiB long).
pub fn fit(path: String, mut entries: Vec<Entry>, more: bool) -> Option<BrowsePage> {
    let total = entries.len();
    let mut page = BrowsePage {
        path,
        entries: Vec::new(),
        next: None,
    };
    // The empty page (its count and `next` one byte each), with room for a longer count.
    let mut size = encoded_len(&page)? + VARINT_MAX;
    let mut fits = 0;
    for entry in &entries {
        size += postcard::to_stdvec(entry).ok()?.len();
        // If this is the last entry, its name may also be `next`.
        if size + VARINT_MAX + entry.name.len() > MAX_EVENT_BYTES {
            break;
        }
        fits += 1;
    }
    if fits == 0 && total > 0 {
        return None;
    }
    entries.truncate(fits);
    page.next = match more || fits < total {
        true => entries.last().map(|e| e.name.clone()),
        false => None,
    };
    page.entries = entries;
    Some(page)
}

/// The most bytes postcard spends on a length (a `u32`-sized varint).
const VARINT_MAX: usize = 5;

fn encoded_len(page: &BrowsePage) -> Option<usize> {
    let reply = BrowseReply {
        schema: SCHEMA_VERSION,
        result: Ok(page.clone()),
    };
    postcard::to_stdvec(&reply).ok().map(|bytes| bytes.len())
}

/// An entry of the reply from restic's node.
fn entry(name: &str, facts: plan::Facts) -> Entry {
    let (kind, size) = match facts.entry {
        plan::Entry::Dir => (EntryKind::Dir, None),
        plan::Entry::File => (EntryKind::File, Some(facts.size)),
        plan::Entry::Symlink => (EntryKind::Symlink, None),
        plan::Entry::Other => (EntryKind::Other, None),
    };
    Entry {
        name: name.to_owned(),
        kind,
        size,
        mtime: facts.mtime,
    }
}

/// An entry ordered by its name alone.
#[derive(Debug)]
struct ByName(Entry);

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.name.cmp(&other.0.name)
    }
}

#[cfg(test)]
mod tests;
