//! Agent settings: how much work an agent takes at once and how hard restic may push it.

use serde::{Deserialize, Serialize};

use crate::policy::TaskKind;
use crate::validation::{Invalid, Problems};

/// Most tasks one agent may run at once.
pub const MAX_CONCURRENCY: u16 = 64;

/// Per-kind concurrency limits; `None` means only the total limit applies. Restores and
/// inventory refreshes, which run only when an operator asks, have no limit of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KindLimits {
    pub backup: Option<u16>,
    pub check: Option<u16>,
    pub prune: Option<u16>,
}

impl KindLimits {
    /// The limit for `kind`, if one is set.
    pub fn get(&self, kind: TaskKind) -> Option<u16> {
        match kind {
            TaskKind::Backup => self.backup,
            TaskKind::Check => self.check,
            TaskKind::Prune => self.prune,
            TaskKind::Restore | TaskKind::Refresh => None,
        }
    }
}

/// The IO scheduling class restic runs in (`ionice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IoClass {
    /// Only when no other process wants the disk.
    Idle,
    /// Best effort at a level from 0 (highest) to 7 (lowest).
    BestEffort { level: u8 },
}

/// The settings of one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentSettings {
    /// Tasks running or dispatched at once, all kinds together.
    pub max_concurrent: u16,
    /// Tasks at once per kind, each at most `max_concurrent`.
    pub per_kind: KindLimits,
    /// CPU share restic may use, in percent of one core (cgroup v2 `cpu.max`, else cgroup v1
    /// `cpu.cfs_quota_us`), 1 to 6400.
    pub cpu_quota_percent: Option<u16>,
    /// restic `--limit-upload`, in KiB/s.
    pub upload_kib_s: Option<u32>,
    /// restic `--limit-download`, in KiB/s.
    pub download_kib_s: Option<u32>,
    /// CPU niceness of restic, -20 to 19.
    pub nice: i8,
    pub io_class: IoClass,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            per_kind: KindLimits::default(),
            cpu_quota_percent: None,
            upload_kib_s: None,
            download_kib_s: None,
            nice: 10,
            io_class: IoClass::BestEffort { level: 7 },
        }
    }
}

impl AgentSettings {
    /// The number of tasks of `kind` this agent may hold at once.
    pub fn limit_for(&self, kind: TaskKind) -> u16 {
        self.per_kind
            .get(kind)
            .map_or(self.max_concurrent, |k| k.min(self.max_concurrent))
    }

    /// Checks every field; returns every problem found.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        p.check(
            (1..=MAX_CONCURRENCY).contains(&self.max_concurrent),
            "maxConcurrent",
            || format!("must be between 1 and {MAX_CONCURRENCY}"),
        );
        for kind in TaskKind::ALL {
            if let Some(limit) = self.per_kind.get(kind) {
                let field = format!("perKind.{}", kind.as_str());
                p.check(limit >= 1, &field, || {
                    "must be at least 1 (leave it out to use only the total)".into()
                });
                p.check(limit <= self.max_concurrent, &field, || {
                    format!("must not exceed maxConcurrent ({})", self.max_concurrent)
                });
            }
        }
        if let Some(cpu) = self.cpu_quota_percent {
            p.check((1..=6400).contains(&cpu), "cpuQuotaPercent", || {
                "must be between 1 and 6400 (percent of one core)".into()
            });
        }
        for (field, limit) in [
            ("uploadKibS", self.upload_kib_s),
            ("downloadKibS", self.download_kib_s),
        ] {
            p.check(limit != Some(0), field, || {
                "must be at least 1 KiB/s (leave it out for no limit)".into()
            });
        }
        p.check((-20..=19).contains(&self.nice), "nice", || {
            "must be between -20 and 19".into()
        });
        if let IoClass::BestEffort { level } = self.io_class {
            p.check(level <= 7, "ioClass.bestEffort.level", || {
                "must be between 0 and 7".into()
            });
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limit_two() {
        let s = AgentSettings::default();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.limit_for(TaskKind::Backup), 2);
    }

    #[test]
    fn per_kind_limits_cap_at_the_total() {
        let s = AgentSettings {
            max_concurrent: 4,
            per_kind: KindLimits {
                prune: Some(1),
                ..KindLimits::default()
            },
            ..AgentSettings::default()
        };
        assert_eq!(s.limit_for(TaskKind::Prune), 1);
        assert_eq!(s.limit_for(TaskKind::Check), 4);
    }

    #[test]
    fn every_problem_is_reported() {
        let s = AgentSettings {
            max_concurrent: 0,
            per_kind: KindLimits {
                backup: Some(0),
                check: Some(3),
                prune: None,
            },
            cpu_quota_percent: Some(0),
            upload_kib_s: Some(0),
            download_kib_s: Some(0),
            nice: 30,
            io_class: IoClass::BestEffort { level: 9 },
        };
        let err = s.validate().unwrap_err();
        for field in [
            "maxConcurrent",
            "perKind.backup",
            "perKind.check",
            "cpuQuotaPercent",
            "uploadKibS",
            "downloadKibS",
            "nice",
            "ioClass.bestEffort.level",
        ] {
            assert!(err.mentions(field), "{field} missing in {err}");
        }
    }
}
