//! The restic command line and environment for one task, built without IO.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_events::event::{ErrorClass, TaskError};
use fleet_events::policy::{PolicySpec, Retention, TaskKind};
use fleet_events::protocol::TaskOrder;
use fleet_events::settings::{AgentSettings, IoClass};

use super::progress::{FPS, FPS_VAR};
use super::secrets::PasswordEnv;
use crate::restic::output::ResticVersion;

/// One restic run, ready to spawn: restic's arguments and the environment it needs (the
/// repository and the password variable, never on the command line; for runs whose
/// progress is followed, `RESTIC_PROGRESS_FPS`), plus the priority to run it at
/// ([`super::priority::command_line`] wraps it in `ionice`/`nice`).
#[derive(Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The restic binary.
    pub program: PathBuf,
    /// restic's arguments, global options first.
    pub args: Vec<OsString>,
    /// `RESTIC_REPOSITORY`, one password variable, and maybe `RESTIC_PROGRESS_FPS`.
    pub env: Vec<(String, OsString)>,
    /// CPU niceness, -20 to 19.
    pub nice: i8,
    pub io_class: IoClass,
}

impl fmt::Debug for Invocation {
    /// Environment values are left out: one of them may be the password itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Invocation")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env)
            .field("nice", &self.nice)
            .field("io_class", &self.io_class)
            .finish()
    }
}

/// The restic run for `order`: `backup` (status lines at a calm rate, [`reporting_progress`]),
/// `check` or `forget --prune`, with the agent's bandwidth limits and priority. `hostname` is the `--host` of backups whose policy sets
/// none. A spec restic cannot run (a backup without paths, a prune without retention
/// rules) is a `Permanent` error, and so are restores and refreshes, which are built from
/// their request ([`restore_invocation`], [`ls_invocation`], [`snapshots_invocation`]).
pub fn invocation(
    order: &TaskOrder,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
    hostname: &str,
) -> Result<Invocation, TaskError> {
    let spec = &order.spec;
    let command = match spec.kind {
        TaskKind::Backup => {
            let args = backup_args(order, hostname)?;
            let inv = build(&spec.repository.url, settings, password, restic, args);
            return Ok(reporting_progress(inv, false));
        }
        TaskKind::Check => vec!["check".into()],
        TaskKind::Prune => forget_args(spec)?,
        TaskKind::Restore | TaskKind::Refresh => {
            return Err(permanent(&format!(
                "a {} task runs from an operator's request, not from a policy",
                spec.kind.as_str()
            )));
        }
    };
    Ok(build(
        &spec.repository.url,
        settings,
        password,
        restic,
        command,
    ))
}

/// `restic init` for the repository of `order`, with the same environment and limits.
pub fn init_invocation(
    order: &TaskOrder,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
) -> Invocation {
    let url = &order.spec.repository.url;
    build(url, settings, password, restic, vec!["init".into()])
}

/// `restic unlock` for the repository of `order`: removes only stale locks (older than 30
/// minutes, or made on this host by a process that is gone), never `--remove-all`.
pub fn unlock_invocation(
    order: &TaskOrder,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
) -> Invocation {
    let url = &order.spec.repository.url;
    build(url, settings, password, restic, vec!["unlock".into()])
}

/// `restic snapshots --json` on the repository of `order`: every snapshot, as a JSON
/// array (plain and portable: no `--no-lock`, which 0.14 lacks for this command).
pub fn snapshots_invocation(
    order: &TaskOrder,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
) -> Invocation {
    let url = &order.spec.repository.url;
    let args = vec!["snapshots".into(), "--json".into()];
    build(url, settings, password, restic, args)
}

/// `restic restore <snapshot> --target <staging>` with one `--include` per path of
/// `include` (none: the whole snapshot). Each path is escaped so that restic matches it
/// literally, not as a pattern.
pub fn restore_invocation(
    order: &TaskOrder,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
    snapshot: &str,
    include: &[String],
    staging: &Path,
) -> Invocation {
    let url = &order.spec.repository.url;
    let mut args: Vec<OsString> = vec![
        "restore".into(),
        snapshot.into(),
        "--target".into(),
        staging.into(),
    ];
    for path in include {
        args.extend(["--include".into(), literal_pattern(path).into()]);
    }
    build(url, settings, password, restic, args)
}

/// `restic ls --json <snapshot>`: every node of the snapshot, one JSON object a line
/// after the snapshot's own. Without paths: restic 0.14 lists only a directory's direct
/// children when given one (newer versions need `--recursive`), so the caller filters.
pub fn ls_invocation(
    order: &TaskOrder,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
    snapshot: &str,
) -> Invocation {
    let url = &order.spec.repository.url;
    let args = vec!["ls".into(), "--json".into(), snapshot.into()];
    build(url, settings, password, restic, args)
}

/// `restic ls --json <snapshot> <dir>` on the repository at `url`: the snapshot's line,
/// then `dir` itself and its direct children (restic 0.14 to 0.18; nothing but the
/// snapshot's line when `dir` is not in it). `dir` is absolute, so never an option.
pub fn ls_dir_invocation(
    url: &str,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
    snapshot: &str,
    dir: &str,
) -> Invocation {
    let args = vec!["ls".into(), "--json".into(), snapshot.into(), dir.into()];
    build(url, settings, password, restic, args)
}

/// `inv` asking restic for status lines at a calm rate (`RESTIC_PROGRESS_FPS`, read from
/// restic 0.12, see [`FPS`]; under `--json` restic otherwise prints up to 60 a second),
/// with `--json` added when `json` (for a command that prints status lines only with it,
/// like `restore`).
pub fn reporting_progress(mut inv: Invocation, json: bool) -> Invocation {
    if json {
        inv.args.push("--json".into());
    }
    inv.env.push((FPS_VAR.into(), FPS.into()));
    inv
}

/// `path` as a restic filter pattern that matches only itself: restic matches each path
/// component with Go's `filepath.Match`, where `\` escapes `*`, `?`, `[` and itself.
pub fn literal_pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How long a task's restic waits for a lock held by another restic (`--retry-lock`)
/// before it fails with "lock failed", unless the agent's `lockWaitSecs` says otherwise:
/// long enough to ride out a neighbour's short run (a `snapshots` or a quick backup),
/// short against a task's timeout.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// The global arguments that make restic wait up to `wait` for a lock: `--retry-lock`
/// where the version has it (0.16+), none before (0.14 would refuse the unknown flag) or
/// when `wait` is zero.
pub fn retry_lock_args(version: &ResticVersion, wait: Duration) -> Vec<OsString> {
    if version.has_retry_lock() && !wait.is_zero() {
        vec![
            "--retry-lock".into(),
            format!("{}s", wait.as_secs().max(1)).into(),
        ]
    } else {
        Vec::new()
    }
}

/// `inv` with [`retry_lock_args`] for `version` and `wait` before its command.
pub fn with_retry_lock(mut inv: Invocation, version: &ResticVersion, wait: Duration) -> Invocation {
    let mut args = retry_lock_args(version, wait);
    args.append(&mut inv.args);
    inv.args = args;
    inv
}

fn build(
    url: &str,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
    command: Vec<OsString>,
) -> Invocation {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(kib) = settings.upload_kib_s {
        args.extend(["--limit-upload".into(), kib.to_string().into()]);
    }
    if let Some(kib) = settings.download_kib_s {
        args.extend(["--limit-download".into(), kib.to_string().into()]);
    }
    args.extend(command);
    Invocation {
        program: restic.to_path_buf(),
        args,
        env: vec![
            ("RESTIC_REPOSITORY".into(), url.into()),
            (password.var.into(), password.value.clone()),
        ],
        nice: settings.nice,
        io_class: settings.io_class,
    }
}

fn backup_args(order: &TaskOrder, hostname: &str) -> Result<Vec<OsString>, TaskError> {
    let spec = &order.spec;
    if spec.include.is_empty() {
        return Err(permanent("a backup policy without paths to back up"));
    }
    let mut args: Vec<OsString> = vec!["backup".into(), "--json".into()];
    let tags = [
        format!("policy:{}", order.policy),
        format!("task:{}", order.task),
    ];
    for tag in tags.into_iter().chain(spec.execution.tags.iter().cloned()) {
        args.extend(["--tag".into(), tag.into()]);
    }
    let host = spec.execution.host.as_deref().unwrap_or(hostname);
    args.extend(["--host".into(), host.into()]);
    for pattern in &spec.exclude {
        args.extend(["--exclude".into(), pattern.into()]);
    }
    args.extend(spec.include.iter().map(OsString::from));
    Ok(args)
}

fn forget_args(spec: &PolicySpec) -> Result<Vec<OsString>, TaskError> {
    if spec.retention.is_empty() {
        // restic would forget nothing and prune anyway.
        return Err(permanent("a prune policy without retention rules"));
    }
    let mut args: Vec<OsString> = vec!["forget".into(), "--prune".into(), "--json".into()];
    args.extend(keep_args(&spec.retention));
    Ok(args)
}

/// `restic forget` after a backup of `order`'s policy: `--keep-*` of its retention, applied
/// only to the snapshots tagged `policy:<id>` (every backup of the policy carries the tag,
/// `backup_args`), grouped by host and paths (not by tags: each snapshot also carries its
/// own `task:<id>`), with the same environment, limits and priority as the backup. Never
/// `--prune`: prune is a kind of its own, on its own schedule. `None` when the policy has no
/// retention rules (restic would refuse to forget).
pub fn retention_invocation(
    order: &TaskOrder,
    settings: &AgentSettings,
    password: &PasswordEnv,
    restic: &Path,
) -> Option<Invocation> {
    let retention = &order.spec.retention;
    if retention.is_empty() {
        return None;
    }
    let mut args: Vec<OsString> = vec![
        "forget".into(),
        "--json".into(),
        "--tag".into(),
        format!("policy:{}", order.policy).into(),
        "--group-by".into(),
        "host,paths".into(),
    ];
    args.extend(keep_args(retention));
    let url = &order.spec.repository.url;
    Some(build(url, settings, password, restic, args))
}

/// restic's `--keep-*` options for `retention`, in a fixed order.
fn keep_args(retention: &Retention) -> Vec<OsString> {
    let r = retention;
    let counts = [
        ("--keep-last", r.keep_last),
        ("--keep-hourly", r.keep_hourly),
        ("--keep-daily", r.keep_daily),
        ("--keep-weekly", r.keep_weekly),
        ("--keep-monthly", r.keep_monthly),
        ("--keep-yearly", r.keep_yearly),
    ];
    let mut args: Vec<OsString> = Vec::new();
    for (flag, n) in counts {
        if let Some(n) = n {
            args.extend([flag.into(), n.to_string().into()]);
        }
    }
    if let Some(within) = &r.keep_within {
        args.extend(["--keep-within".into(), within.into()]);
    }
    for tag in &r.keep_tags {
        args.extend(["--keep-tag".into(), tag.into()]);
    }
    args
}

fn permanent(message: &str) -> TaskError {
    TaskError::new(ErrorClass::Permanent, message, None)
}

#[cfg(test)]
mod tests;
