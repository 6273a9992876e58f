//! `fleet-agent status`: what the running agent last wrote about itself.
//!
//! The running agent holds an exclusive lock on its sled state, so `status` never opens
//! it. Instead the runtime writes [`STATUS_FILE`] into the state directory on every
//! heartbeat ([`write()`]: a temporary file in the same directory, then a rename, so a
//! reader sees the old file or the new one, never half of one), and `status` reads it.
//! A status older than [`STALE_AFTER_BEATS`] heartbeat intervals means the agent is not
//! running ([`is_stale`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::KindCounts;
use serde::{Deserialize, Serialize};

/// Kind counts as a status file holds them; kinds a file does not name (one written
/// before restores and refreshes) count 0.
#[derive(Default, Deserialize)]
#[serde(default)]
struct FileCounts {
    backup: u16,
    check: u16,
    prune: u16,
    restore: u16,
    refresh: u16,
}

fn counts<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<KindCounts, D::Error> {
    let c = FileCounts::deserialize(deserializer)?;
    Ok(KindCounts {
        backup: c.backup,
        check: c.check,
        prune: c.prune,
        restore: c.restore,
        refresh: c.refresh,
    })
}

/// The status file's name in the state directory.
pub const STATUS_FILE: &str = "status.json";
/// The temporary file a new status is written to before it is renamed.
const TEMP_FILE: &str = ".status.json.tmp";
/// A status older than this many heartbeat intervals means the agent is not running.
pub const STALE_AFTER_BEATS: u32 = 3;
/// Exit code of `fleet-agent status` when the agent is not running (stale or no status).
pub const EX_NOT_RUNNING: u8 = 3;

/// What the agent writes about itself on every heartbeat (`status.json`, camelCase).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub agent_id: AgentId,
    pub tenant: TenantId,
    /// When this status was written (RFC 3339).
    pub at: DateTime<Utc>,
    #[serde(deserialize_with = "counts")]
    pub running: KindCounts,
    /// Accepted but waiting for a free slot.
    #[serde(deserialize_with = "counts")]
    pub queued: KindCounts,
    /// Reports not yet stored by JetStream.
    pub outbox_depth: u32,
    /// Whether the last heartbeat was stored by JetStream.
    pub last_heartbeat_ok: bool,
    /// When the last heartbeat was sent (or tried); `None` before the first.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// When a heartbeat was last stored; `None` if none was yet.
    pub last_heartbeat_ok_at: Option<DateTime<Utc>>,
    pub restic_version: String,
    pub agent_version: String,
    /// restic's CPU quota and whether it is enforced; absent when none is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<String>,
}

/// The status file in the state directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(STATUS_FILE)
}

/// Writes `status` into `dir` atomically: a temporary file in `dir`, then a rename over
/// [`STATUS_FILE`].
pub fn write(dir: &Path, status: &Status) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    json.push(b'\n');
    let temp = dir.join(TEMP_FILE);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&json)?;
    drop(file);
    std::fs::rename(&temp, path(dir))
}

/// Whether a status written `at` says, at `now`, that the agent is no longer running: it
/// is older than [`STALE_AFTER_BEATS`] heartbeat intervals. A status from the future
/// (clock changes) is not stale.
pub fn is_stale(at: DateTime<Utc>, now: DateTime<Utc>, heartbeat_every: Duration) -> bool {
    let limit = heartbeat_every.saturating_mul(STALE_AFTER_BEATS);
    match (now - at).to_std() {
        Ok(age) => age > limit,
        Err(_) => false,
    }
}

/// A time as `fleet-agent status` shows it: RFC 3339, in seconds.
pub fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `fleet-agent status` as a small table; `now` gives the age of the status.
pub fn render(status: &Status, now: DateTime<Utc>) -> String {
    let age = (now - status.at).num_seconds().max(0);
    let heartbeat = match (status.last_heartbeat_at, status.last_heartbeat_ok) {
        (None, _) => "none sent yet".to_owned(),
        (Some(at), true) => format!("ok at {}", time(at)),
        (Some(at), false) => match status.last_heartbeat_ok_at {
            Some(ok) => format!("failed at {} (last ok at {})", time(at), time(ok)),
            None => format!("failed at {} (none ok yet)", time(at)),
        },
    };
    let mut out = String::new();
    let mut row = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{name:<15}{value}");
    };
    row("agent", &status.agent_id);
    row("tenant", &status.tenant);
    row("status at", &format!("{} ({age} s ago)", time(status.at)));
    row("heartbeat", &heartbeat);
    row(
        "outbox",
        &format!("{} report(s) waiting", status.outbox_depth),
    );
    row("restic", &status.restic_version);
    row("agent version", &status.agent_version);
    if let Some(cpu_quota) = &status.cpu_quota {
        row("cpu quota", cpu_quota);
    }
    let kinds: Vec<String> = TaskKind::ALL
        .iter()
        .map(|kind| format!("{:>8}", kind.as_str()))
        .collect();
    row("", &kinds.join(""));
    for (name, counts) in [("running", &status.running), ("queued", &status.queued)] {
        let counts: Vec<String> = TaskKind::ALL
            .iter()
            .map(|kind| format!("{:>8}", counts.get(*kind)))
            .collect();
        row(name, &counts.join(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("RFC 3339")
    }

    fn sample() -> Status {
        Status {
            agent_id: "0192f1c4-5e6a-7b8c-9d0e-1f2a3b4c5d6e".parse().expect("id"),
            tenant: TenantId::new("acme".to_owned()).expect("tenant"),
            at: at("2025-01-02T03:04:05Z"),
            running: KindCounts {
                backup: 1,
                ..KindCounts::default()
            },
            queued: KindCounts {
                backup: 2,
                prune: 1,
                restore: 1,
                ..KindCounts::default()
            },
            outbox_depth: 4,
            last_heartbeat_ok: false,
            last_heartbeat_at: Some(at("2025-01-02T03:04:05Z")),
            last_heartbeat_ok_at: Some(at("2025-01-02T03:03:55Z")),
            restic_version: "0.17.3".into(),
            agent_version: "0.1.0".into(),
            cpu_quota: Some("50% of one core (cgroup v1, /sys/fs/cgroup/cpu/fleet-agent)".into()),
        }
    }

    #[test]
    fn renders_a_table() {
        let text = render(&sample(), at("2025-01-02T03:04:12Z"));
        let expected = "\
agent          0192f1c4-5e6a-7b8c-9d0e-1f2a3b4c5d6e
tenant         acme
status at      2025-01-02T03:04:05Z (7 s ago)
heartbeat      failed at 2025-01-02T03:04:05Z (last ok at 2025-01-02T03:03:55Z)
outbox         4 report(s) waiting
restic         0.17.3
agent version  0.1.0
cpu quota      50% of one core (cgroup v1, /sys/fs/cgroup/cpu/fleet-agent)
                 backup   check   prune restore refresh
running               1       0       0       0       0
queued                2       0       1       1       0
";
        assert_eq!(text, expected);
    }

    #[test]
    fn renders_heartbeat_states() {
        let now = at("2025-01-02T03:04:05Z");
        let mut status = sample();
        status.last_heartbeat_ok = true;
        assert!(render(&status, now).contains("heartbeat      ok at 2025-01-02T03:04:05Z\n"));
        status.last_heartbeat_at = None;
        assert!(render(&status, now).contains("heartbeat      none sent yet\n"));
        status.last_heartbeat_at = Some(now);
        status.last_heartbeat_ok = false;
        status.last_heartbeat_ok_at = None;
        assert!(render(&status, now).contains("(none ok yet)"));
    }

    #[test]
    fn json_is_camel_case_rfc3339_and_round_trips() {
        let status = sample();
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["agentId"], "0192f1c4-5e6a-7b8c-9d0e-1f2a3b4c5d6e");
        assert_eq!(json["at"], "2025-01-02T03:04:05Z");
        assert_eq!(json["running"]["backup"], 1);
        assert_eq!(json["outboxDepth"], 4);
        assert_eq!(json["lastHeartbeatOk"], false);
        assert_eq!(json["lastHeartbeatOkAt"], "2025-01-02T03:03:55Z");
        assert_eq!(
            json["cpuQuota"],
            "50% of one core (cgroup v1, /sys/fs/cgroup/cpu/fleet-agent)"
        );
        let back: Status = serde_json::from_value(json).expect("parse");
        assert_eq!(back, status);
    }

    #[test]
    fn no_cpu_quota_no_row_and_older_files_still_parse() {
        let mut status = sample();
        status.cpu_quota = None;
        assert!(!render(&status, status.at).contains("cpu quota"));
        let mut json = serde_json::to_value(&status).expect("json");
        assert!(json.get("cpuQuota").is_none(), "{json}");
        json.as_object_mut().expect("an object").remove("cpuQuota");
        let back: Status = serde_json::from_value(json.clone()).expect("parse");
        assert_eq!(back, status);
        // Written by an agent that counted backup, check and prune only.
        for counts in ["running", "queued"] {
            let kinds = json[counts].as_object_mut().expect("counts");
            kinds.remove("restore");
            kinds.remove("refresh");
        }
        let back: Status = serde_json::from_value(json).expect("parse");
        assert_eq!((back.queued.restore, back.queued.prune), (0, 1));
    }

    #[test]
    fn stale_after_three_intervals() {
        let written = at("2025-01-02T03:04:05Z");
        let every = Duration::from_secs(10);
        let later = |secs| written + chrono::Duration::seconds(secs);
        assert!(!is_stale(written, later(0), every));
        assert!(!is_stale(written, later(30), every));
        assert!(is_stale(written, later(31), every));
        assert!(is_stale(written, later(3600), every));
        assert!(!is_stale(written, later(-60), every), "from the future");
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut status = sample();
        write(dir.path(), &status).expect("write");
        status.outbox_depth = 0;
        write(dir.path(), &status).expect("write again");
        let text = std::fs::read_to_string(path(dir.path())).expect("read");
        let back: Status = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, status);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [STATUS_FILE]);
    }
}
