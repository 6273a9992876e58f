//! What the agent knows about restic: its output formats and its failure modes, without IO.

pub mod classify;
pub mod output;
pub mod reach;

#[cfg(test)]
pub(crate) mod captured;
#[cfg(test)]
mod real_tests;

pub use classify::{classify, failure, is_partial_success};
pub use output::{
    BackupOutput, ErrorLine, Line, OutputError, Progress, ResticVersion, Snapshot, SnapshotSummary,
    parse_forget, parse_line, parse_snapshots, removed_ids,
};
pub use reach::ReachWatch;
