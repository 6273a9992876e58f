//! `fleet-agent probe`: what this host can do for the agent (restic and its capabilities,
//! CPU quotas with cgroup v2 or the cgroup v1 fallback, `nice` and `ionice`).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::executor::cgroup::{self, V1Cpu};
use crate::restic::{OutputError, ResticVersion};

/// Exit code when restic is missing or does not work (`EX_UNAVAILABLE`, sysexits.h).
pub const EX_UNAVAILABLE: u8 = 69;

/// Where cgroup v2 is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What this host can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The restic program as given (a name looked up on PATH, or a path).
    pub restic_program: OsString,
    pub restic: ResticVersion,
    pub cpu_quota: CpuQuota,
    /// The cgroup v1 `cpu` hierarchy, used when cgroup v2 is not.
    pub cpu_quota_v1: V1Cpu,
    /// Where `nice` is, if on PATH.
    pub nice: Option<PathBuf>,
    /// Where `ionice` is, if on PATH.
    pub ionice: Option<PathBuf>,
}

/// Whether the agent can cap restic's CPU with cgroup v2 `cpu.max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuQuota {
    /// Child cgroups of `dir`, the agent's own cgroup, can get a `cpu.max`.
    Available { dir: PathBuf },
    /// The cgroup root is not a cgroup v2 (unified) hierarchy: no `cgroup.controllers`.
    NoCgroupV2,
    /// The `cpu` controller is not available in `dir`.
    NoCpuController { dir: PathBuf },
    /// The agent may not create cgroups in `dir`.
    NotWritable { dir: PathBuf },
}

/// Why restic cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No such program: install restic or say where it is.
    #[error(
        "restic not found ({program}): install it with `apt-get install -y restic`, \
         or name it with --restic PATH or the RESTIC environment variable"
    )]
    ResticMissing { program: String },
    /// The program exists but could not be started (permissions, not executable).
    #[error("cannot run {program}: {source}")]
    ResticUnrunnable {
        program: String,
        #[source]
        source: io::Error,
    },
    /// `restic version` ran and failed.
    #[error("`{program} version` failed ({status}): {stderr}")]
    ResticFailed {
        program: String,
        status: String,
        stderr: String,
    },
    /// The program's version output is not restic's.
    #[error("{program} does not look like restic: {source}")]
    NotRestic {
        program: String,
        #[source]
        source: OutputError,
    },
}

/// The restic program to use: `--restic`, else a non-empty `RESTIC` variable, else
/// `restic` on PATH.
pub fn restic_program(flag: Option<OsString>, env: Option<OsString>) -> OsString {
    flag.or(env.filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "restic".into())
}

/// Probes this host: runs `<restic> version`, looks at cgroups and PATH.
pub fn run(restic: &OsStr) -> Result<Report, ProbeError> {
    let version = restic_version(restic)?;
    let (cpu_quota, cpu_quota_v1) = cgroup::host_facts();
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(Report {
        restic_program: restic.to_owned(),
        restic: version,
        cpu_quota,
        cpu_quota_v1,
        nice: find_in_path("nice", &path),
        ionice: find_in_path("ionice", &path),
    })
}

/// Runs `<program> version` and parses its output.
pub fn restic_version(program: &OsStr) -> Result<ResticVersion, ProbeError> {
    let name = program.to_string_lossy().into_owned();
    let output = match Command::new(program).arg("version").output() {
        Ok(output) => output,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ProbeError::ResticMissing { program: name });
        }
        Err(source) => {
            return Err(ProbeError::ResticUnrunnable {
                program: name,
                source,
            });
        }
    };
    if !output.status.success() {
        return Err(ProbeError::ResticFailed {
            program: name,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    ResticVersion::parse(&String::from_utf8_lossy(&output.stdout)).map_err(|source| {
        ProbeError::NotRestic {
            program: name,
            source,
        }
    })
}

/// The agent's cgroup v2 path from `/proc/self/cgroup` (the `0::<path>` line).
pub fn cgroup_v2_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim)
        .filter(|path| path.starts_with('/'))
}

/// Whether a `cgroup.controllers` file lists `cpu` (not just `cpuset`).
pub fn lists_cpu_controller(controllers: &str) -> bool {
    controllers.split_whitespace().any(|name| name == "cpu")
}

/// Whether child cgroups of the agent's cgroup (`own`, relative to `root`; the root when
/// unknown) can get a `cpu.max`. Writability is tested by creating and removing an empty
/// child directory.
pub fn cpu_quota(root: &Path, own: Option<&str>) -> CpuQuota {
    let Ok(root_controllers) = fs::read_to_string(root.join("cgroup.controllers")) else {
        return CpuQuota::NoCgroupV2;
    };
    let dir = match own {
        Some(own) => root.join(own.trim_start_matches('/')),
        None => root.to_owned(),
    };
    let controllers =
        fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or(root_controllers);
    if !lists_cpu_controller(&controllers) {
        return CpuQuota::NoCpuController { dir };
    }
    let probe = dir.join(format!("fleet-agent-probe-{}", std::process::id()));
    if fs::create_dir(&probe).is_err() {
        return CpuQuota::NotWritable { dir };
    }
    // An empty cgroup (or directory) is removed with rmdir; a leftover would be harmless.
    let _ = fs::remove_dir(&probe);
    CpuQuota::Available { dir }
}

/// The first executable file named `name` in the directories of a PATH value.
pub fn find_in_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |yes: bool| if yes { "yes" } else { "no" };
        let v = &self.restic;
        let program = self.restic_program.to_string_lossy();
        writeln!(f, "restic:             {v} ({program})")?;
        writeln!(
            f,
            "typed exit codes:   {} (restic >= 0.17)",
            yes_no(v.has_typed_exit_codes())
        )?;
        writeln!(
            f,
            "--retry-lock:       {} (restic >= 0.16)",
            yes_no(v.has_retry_lock())
        )?;
        writeln!(f, "cpu quotas:         {}", self.cpu_quota)?;
        if !matches!(self.cpu_quota, CpuQuota::Available { .. }) {
            writeln!(f, "cgroup v1 fallback: {}", self.cpu_quota_v1)?;
        }
        for (name, found) in [("nice", &self.nice), ("ionice", &self.ionice)] {
            let found = match found {
                Some(path) => format!("yes ({})", path.display()),
                None => "no (not on PATH)".to_owned(),
            };
            writeln!(f, "{:<20}{found}", format!("{name}:"))?;
        }
        Ok(())
    }
}

impl fmt::Display for CpuQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Available { dir } => write!(f, "yes (cgroup v2 cpu.max under {})", dir.display()),
            Self::NoCgroupV2 => write!(f, "no ({CGROUP_ROOT} is not a cgroup v2 hierarchy)"),
            Self::NoCpuController { dir } => {
                write!(f, "no (no cpu controller in {})", dir.display())
            }
            Self::NotWritable { dir } => write!(f, "no ({} is not writable)", dir.display()),
        }
    }
}

#[cfg(test)]
mod tests;
