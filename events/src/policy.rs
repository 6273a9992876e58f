//! The policy model: what to back up, where, when, how long to keep it, how to retry.
//!
//! A [`PolicySpec`] is validated with [`PolicySpec::validate`], which reports every problem
//! at once. Only valid specs enter the log.

pub mod hooks;

use serde::{Deserialize, Serialize};

pub use hooks::{HookStage, MAX_HOOKS_PER_STAGE, PolicyHooks};

use crate::envelope::{SCHEMA_HOOKS, SCHEMA_VERSION};
use crate::ids::check_slug;
use crate::schedule::Schedule;
use crate::validation::{Invalid, Problems};

/// What a task does with restic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// `restic backup` of the policy's paths.
    Backup,
    /// `restic check`.
    Check,
    /// `restic forget --prune` with the policy's retention.
    Prune,
    /// `restic restore` of one snapshot, asked for by an operator (never scheduled).
    Restore,
    /// `restic snapshots`: the repository's snapshot inventory, asked for by an operator
    /// (never scheduled; backups and prunes list the snapshots too).
    Refresh,
}

impl TaskKind {
    /// Every kind, in a fixed order.
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Backup,
        TaskKind::Check,
        TaskKind::Prune,
        TaskKind::Restore,
        TaskKind::Refresh,
    ];

    /// The kinds a policy may schedule; the others run only when an operator asks.
    pub const SCHEDULED: [TaskKind; 3] = [TaskKind::Backup, TaskKind::Check, TaskKind::Prune];

    /// The lowercase name used in configuration and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Backup => "backup",
            TaskKind::Check => "check",
            TaskKind::Prune => "prune",
            TaskKind::Restore => "restore",
            TaskKind::Refresh => "refresh",
        }
    }

    /// True for the kinds a policy may schedule.
    pub fn is_scheduled(self) -> bool {
        Self::SCHEDULED.contains(&self)
    }
}

/// A repository and the name of the secret that opens it. The secret itself lives only in
/// the agent's local configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRef {
    /// A restic repository location: an absolute path or `sftp:`, `rest:`, `s3:`, `b2:`,
    /// `azure:`, `gs:`, `swift:`, `rclone:` URL.
    pub url: String,
    /// The name of the agent-local secret holding the repository password.
    pub secret: String,
}

/// Which snapshots `forget` keeps (restic's `--keep-*` options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// A restic duration such as `1y6m` or `14d`: keep everything this recent.
    pub keep_within: Option<String>,
    /// Keep snapshots with any of these tags.
    pub keep_tags: Vec<String>,
}

impl Retention {
    /// True if no rule is set (restic's forget would refuse to run).
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
    }

    fn counts(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("retention.keepLast", self.keep_last),
            ("retention.keepHourly", self.keep_hourly),
            ("retention.keepDaily", self.keep_daily),
            ("retention.keepWeekly", self.keep_weekly),
            ("retention.keepMonthly", self.keep_monthly),
            ("retention.keepYearly", self.keep_yearly),
        ]
    }
}

/// How a run is carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Execution {
    /// A run still going after this long is ended and reported as a timeout.
    pub run_timeout_secs: u64,
    /// Extra restic tags on every snapshot (the agent adds policy and task tags itself).
    pub tags: Vec<String>,
    /// The `--host` recorded in snapshots; the agent's hostname when unset.
    pub host: Option<String>,
    /// Run `restic init` when the repository does not exist yet.
    pub init_if_missing: bool,
}

impl Default for Execution {
    fn default() -> Self {
        Self {
            run_timeout_secs: 6 * 3600,
            tags: Vec::new(),
            host: None,
            init_if_missing: false,
        }
    }
}

/// How often and how patiently a failed task is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryBudget {
    /// Retries after the first attempt; 0 never retries.
    pub max_retries: u32,
    /// The delay before the first retry, doubled for each further one.
    pub base_delay_secs: u64,
    /// No delay is longer than this.
    pub max_delay_secs: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            max_retries: 5,
            base_delay_secs: 30,
            max_delay_secs: 3600,
        }
    }
}

/// What happens when a run is due while the previous one on the same agent is unfinished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Run both.
    Allow,
    /// Record the new run as skipped, with the reason.
    #[default]
    Forbid,
    /// Cancel the unfinished run and start the new one.
    Replace,
}

/// What happens to fire times missed while the scheduler was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MissedRun {
    /// Forget them; wait for the next fire time.
    Skip,
    /// Run once (never a burst) if the latest missed time is at most this old.
    #[serde(rename_all = "camelCase")]
    RunOnce { starting_deadline_secs: u64 },
}

impl Default for MissedRun {
    fn default() -> Self {
        MissedRun::RunOnce {
            starting_deadline_secs: 3600,
        }
    }
}

/// A backup policy as operators write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    pub name: String,
    pub schedule: Schedule,
    pub kind: TaskKind,
    pub repository: RepositoryRef,
    /// Absolute paths to back up (backup policies only).
    #[serde(default)]
    pub include: Vec<String>,
    /// restic `--exclude` patterns.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub execution: Execution,
    #[serde(default)]
    pub retry: RetryBudget,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub missed: MissedRun,
    /// Higher runs first when agents are busy.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Each (policy, agent) pair fires up to this much after the schedule, spread
    /// deterministically so a fleet does not start all at once.
    #[serde(default)]
    pub jitter_secs: u32,
    /// Commands the agent runs around the task, named as its own configuration names them;
    /// none by default. Only schema 2 carries this field ([`hooks::wire`]).
    #[serde(default, with = "hooks::wire")]
    pub hooks: PolicyHooks,
}

fn default_priority() -> u8 {
    5
}

const MAX_NAME: usize = 128;
const MAX_PATH: usize = 4096;
const MAX_URL: usize = 1024;
const MAX_TAG: usize = 64;
const DAY: u64 = 24 * 3600;
const URL_SCHEMES: [&str; 9] = [
    "local:", "sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:",
];

impl PolicySpec {
    /// Checks every field; returns every problem found.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        if check_text(&mut p, "name", &self.name, MAX_NAME) {
            check_name_chars(&mut p, &self.name);
        }
        p.check(self.kind.is_scheduled(), "kind", || {
            format!(
                "a policy schedules backup, check or prune; {} runs only when asked \
                 (`fleet restore`, `fleet repo refresh`)",
                self.kind.as_str()
            )
        });
        self.schedule.check(&mut p, self.jitter_secs);
        check_repository(&mut p, &self.repository);
        self.check_paths(&mut p);
        self.check_retention(&mut p);
        check_execution(&mut p, &self.execution);
        check_retry(&mut p, &self.retry);
        if let MissedRun::RunOnce {
            starting_deadline_secs,
        } = self.missed
        {
            p.check(
                (1..=7 * DAY).contains(&starting_deadline_secs),
                "missed.runOnce.startingDeadlineSecs",
                || "must be between 1 second and 7 days".into(),
            );
        }
        p.check(self.jitter_secs <= 3600, "jitterSecs", || {
            "must be at most 3600 (one hour)".into()
        });
        self.hooks.check(&mut p, self.kind);
        p.finish()
    }

    /// The oldest wire schema that holds this spec: 1 without hooks, 2 with them.
    pub fn schema(&self) -> u16 {
        if self.hooks.is_empty() {
            SCHEMA_VERSION
        } else {
            SCHEMA_HOOKS
        }
    }

    fn check_paths(&self, p: &mut Problems) {
        if self.kind == TaskKind::Backup {
            p.check(!self.include.is_empty(), "include", || {
                "a backup policy needs at least one path".into()
            });
        } else {
            p.check(self.include.is_empty(), "include", || {
                format!(
                    "only backup policies take paths, not {}",
                    self.kind.as_str()
                )
            });
        }
        for (i, path) in self.include.iter().enumerate() {
            let field = format!("include[{i}]");
            if check_text(p, &field, path, MAX_PATH) {
                p.check(is_absolute(path), &field, || {
                    format!("{path:?} is not an absolute path")
                });
            }
        }
        for (i, pattern) in self.exclude.iter().enumerate() {
            check_text(p, &format!("exclude[{i}]"), pattern, MAX_PATH);
        }
    }

    fn check_retention(&self, p: &mut Problems) {
        let r = &self.retention;
        if self.kind == TaskKind::Prune {
            p.check(!r.is_empty(), "retention", || {
                "a prune policy needs at least one keep rule".into()
            });
        }
        for (field, count) in r.counts() {
            p.check(count != Some(0), field, || {
                "must be at least 1 (leave it out to not use the rule)".into()
            });
        }
        if let Some(within) = &r.keep_within {
            p.check(is_restic_duration(within), "retention.keepWithin", || {
                format!("{within:?} is not a duration such as 14d, 6m or 1y6m (units y, m, d, h)")
            });
        }
        for (i, tag) in r.keep_tags.iter().enumerate() {
            check_tag(p, &format!("retention.keepTags[{i}]"), tag);
        }
    }
}

fn check_repository(p: &mut Problems, repo: &RepositoryRef) {
    if check_text(p, "repository.url", &repo.url, MAX_URL) {
        let url = repo.url.as_str();
        let known = is_absolute(url) || URL_SCHEMES.iter().any(|s| url.starts_with(s));
        p.check(known, "repository.url", || {
            format!(
                "{url:?} is neither an absolute path nor a restic URL ({})",
                URL_SCHEMES.join(", ")
            )
        });
        p.check(url.trim() == url, "repository.url", || {
            "must not start or end with whitespace".into()
        });
    }
    if let Err(e) = check_slug("secret", &repo.secret) {
        p.add("repository.secret", e.to_string());
    }
}

fn check_execution(p: &mut Problems, exec: &Execution) {
    p.check(
        (60..=7 * DAY).contains(&exec.run_timeout_secs),
        "execution.runTimeoutSecs",
        || "must be between 60 seconds and 7 days".into(),
    );
    for (i, tag) in exec.tags.iter().enumerate() {
        check_tag(p, &format!("execution.tags[{i}]"), tag);
    }
    if let Some(host) = &exec.host {
        let ok = !host.is_empty() && host.len() <= 253 && !host.chars().any(char::is_whitespace);
        p.check(ok, "execution.host", || {
            "must be 1 to 253 characters without whitespace".into()
        });
    }
}

fn check_retry(p: &mut Problems, retry: &RetryBudget) {
    p.check(retry.max_retries <= 100, "retry.maxRetries", || {
        "must be at most 100".into()
    });
    p.check(
        (1..=3600).contains(&retry.base_delay_secs),
        "retry.baseDelaySecs",
        || "must be between 1 second and one hour".into(),
    );
    p.check(
        retry.max_delay_secs >= retry.base_delay_secs && retry.max_delay_secs <= DAY,
        "retry.maxDelaySecs",
        || "must be at least the base delay and at most one day".into(),
    );
}

/// Records a problem unless `value` is non-empty, at most `max` bytes and free of control
/// characters; returns whether it was fine.
fn check_text(p: &mut Problems, field: &str, value: &str, max: usize) -> bool {
    let problem = if value.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if value.len() > max {
        Some(format!("must be at most {max} bytes"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    };
    let ok = problem.is_none();
    if let Some(message) = problem {
        p.add(field, message);
    }
    ok
}

/// A policy's name appears in URLs (`/v1/policies/{name}`), command lines (`fleet policy
/// show NAME`), hook environments and restic tags: letters, digits, `.`, `_` and `-`,
/// starting with a letter or digit, so it never needs quoting or escaping.
fn check_name_chars(p: &mut Problems, name: &str) {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let bad: Vec<char> = name.chars().filter(|c| !allowed(*c)).collect();
    if !bad.is_empty() {
        let mut shown: Vec<String> = bad.iter().map(|c| format!("{c:?}")).collect();
        shown.dedup();
        p.add(
            "name",
            format!(
                "may hold only letters, digits, '.', '_' and '-' (found {}): for example \"db-nightly\"",
                shown.join(", ")
            ),
        );
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        p.add("name", "must start with a letter or a digit".to_owned());
    }
}

fn check_tag(p: &mut Problems, field: &str, tag: &str) {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG
        && !tag.contains(',')
        && !tag.chars().any(|c| c.is_whitespace() || c.is_control());
    p.check(ok, field, || {
        format!("{tag:?} is not a tag: 1 to {MAX_TAG} characters, no commas or whitespace")
    });
}

fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    path.starts_with('/')
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'\\' | b'/'))
}

/// `1y6m`, `14d`, `12h`: one or more number-unit pairs, units y, m, d, h.
fn is_restic_duration(s: &str) -> bool {
    let mut digits = 0;
    let mut pairs = 0;
    for c in s.chars() {
        match c {
            '0'..='9' => digits += 1,
            'y' | 'm' | 'd' | 'h' if digits > 0 => {
                digits = 0;
                pairs += 1;
            }
            _ => return false,
        }
    }
    digits == 0 && pairs > 0
}

#[cfg(test)]
mod tests;
