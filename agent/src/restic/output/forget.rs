//! `restic forget --json` (with or without `--prune`): what was kept and removed.

use fleet_events::event::PruneSummary;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{OutputError, json_arrays};

/// One group of snapshots (same host, paths and tags) and what forget did with it.
#[derive(Deserialize)]
struct Group {
    #[serde(default)]
    keep: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    remove: Option<Vec<IgnoredAny>>,
}

/// Sums kept and removed snapshots over the groups of `forget --json`'s stdout. The JSON
/// array may be surrounded by prune's text lines (as in 0.14, where it comes first);
/// `remove` is null when a group lost nothing.
pub fn parse_forget(stdout: &str) -> Result<PruneSummary, OutputError> {
    let arrays = json_arrays::<Group>(stdout);
    if arrays.is_empty() {
        return Err(OutputError::NoJsonArray { command: "forget" });
    }
    let count = |list: &Option<Vec<IgnoredAny>>| list.as_ref().map_or(0, |l| l.len() as u64);
    let mut summary = PruneSummary::default();
    for group in arrays.iter().flatten() {
        summary.snapshots_kept += count(&group.keep);
        summary.snapshots_removed += count(&group.remove);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restic::captured;

    fn summary(kept: u64, removed: u64) -> PruneSummary {
        PruneSummary {
            snapshots_kept: kept,
            snapshots_removed: removed,
        }
    }

    #[test]
    fn reads_a_real_0_14_forget_prune_run() {
        assert_eq!(
            parse_forget(captured::FORGET_PRUNE_STDOUT),
            Ok(summary(1, 2))
        );
    }

    #[test]
    fn an_empty_repository_forgets_nothing() {
        assert_eq!(
            parse_forget(captured::FORGET_EMPTY_STDOUT),
            Ok(summary(0, 0))
        );
    }

    #[test]
    fn sums_groups_and_finds_the_array_among_text() {
        let stdout = "Applying Policy: keep 1 latest snapshots\n\
            [0:00] 100.00%  1 / 1 snapshots\n  \
            [{\"host\":\"a\",\"keep\":[{\"id\":\"1\"}],\"remove\":null,\"reasons\":[]},\
            {\"host\":\"b\",\"keep\":[{},{}],\"remove\":[{},{},{}],\"new_field\":1}] trailing\n\
            done\n";
        assert_eq!(parse_forget(stdout), Ok(summary(3, 3)));
    }

    #[test]
    fn no_array_is_an_error() {
        for stdout in [
            "",
            "Fatal: wrong password or no key found\n",
            "[0:00] 10%\n",
        ] {
            assert_eq!(
                parse_forget(stdout),
                Err(OutputError::NoJsonArray { command: "forget" }),
                "{stdout:?}"
            );
        }
    }
}
