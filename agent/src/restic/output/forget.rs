//! `restic forget --json` (with or without `--prune`): what was kept and removed, and the
//! ids of the removed snapshots.

use fleet_events::event::PruneSummary;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::{OutputError, json_arrays};

/// One group of snapshots (same host, paths and tags) and what forget did with it.
#[derive(Deserialize)]
struct Group {
    #[serde(default)]
    keep: Option<Vec<IgnoredAny>>,
    /// Snapshots as restic prints them; only their ids are read, and any shape is counted.
    #[serde(default)]
    remove: Option<Vec<Value>>,
}

/// restic's short id of a removed snapshot, else the first 8 characters of its full id.
fn short_id(snapshot: &Value) -> Option<String> {
    let text = |key| {
        snapshot
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match text("short_id") {
        Some(short) => Some(short.to_owned()),
        None => Some(text("id")?.chars().take(SHORT_ID).collect()),
    }
}

/// The length of restic's short snapshot ids.
const SHORT_ID: usize = 8;

/// Sums kept and removed snapshots over the groups of `forget --json`'s stdout. The JSON
/// array may be surrounded by prune's text lines (as in 0.14, where it comes first);
/// `remove` is null when a group lost nothing.
pub fn parse_forget(stdout: &str) -> Result<PruneSummary, OutputError> {
    let arrays = json_arrays::<Group>(stdout);
    if arrays.is_empty() {
        return Err(OutputError::NoJsonArray { command: "forget" });
    }
    let mut summary = PruneSummary::default();
    for group in arrays.iter().flatten() {
        summary.snapshots_kept += group.keep.as_ref().map_or(0, |l| l.len() as u64);
        summary.snapshots_removed += group.remove.as_ref().map_or(0, |l| l.len() as u64);
    }
    Ok(summary)
}

/// The short ids of the snapshots `forget --json` removed, in its order, over all groups
/// (entries without an id are left out; [`parse_forget`] counts them). Empty when there
/// is no JSON array.
pub fn removed_ids(stdout: &str) -> Vec<String> {
    json_arrays::<Group>(stdout)
        .into_iter()
        .flatten()
        .flat_map(|group| group.remove.unwrap_or_default())
        .filter_map(|snapshot| short_id(&snapshot))
        .collect()
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
    fn reads_what_a_real_0_14_forget_of_one_policy_removed() {
        assert_eq!(
            parse_forget(captured::FORGET_POLICY_STDOUT),
            Ok(summary(1, 2))
        );
        assert_eq!(
            removed_ids(captured::FORGET_POLICY_STDOUT),
            ["35f165f2", "1f09f8c6"]
        );
        assert_eq!(
            parse_forget(captured::FORGET_POLICY_NOTHING_STDOUT),
            Ok(summary(1, 0))
        );
        assert_eq!(
            removed_ids(captured::FORGET_POLICY_NOTHING_STDOUT),
            Vec::<String>::new()
        );
        assert_eq!(
            removed_ids(captured::FORGET_PRUNE_STDOUT),
            ["481bd44e", "bdda295f"]
        );
    }

    #[test]
    fn removed_ids_fall_back_to_the_full_id_and_skip_entries_without_one() {
        let stdout = r#"[{"keep":[],"remove":[{"id":"0123456789abcdef"},{"short_id":"","id":"fedcba9876543210"},{}]},{"remove":null},{"remove":[{"short_id":"aaaabbbb","id":"aaaabbbbcccc"},"odd"]}]"#;
        assert_eq!(removed_ids(stdout), ["01234567", "fedcba98", "aaaabbbb"]);
        assert_eq!(parse_forget(stdout), Ok(summary(0, 5)));
        assert_eq!(removed_ids(""), Vec::<String>::new());
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
