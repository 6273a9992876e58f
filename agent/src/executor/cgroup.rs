//! CPU quotas for restic through cgroups: which hierarchy to use, where, and what to write,
//! decided without IO; `host` does the file side ([`CpuLimiter`] at agent start, one
//! [`Leaf`] per attempt).
//!
//! `cpuQuotaPercent` is a share of one core, enforced over a period of 100 ms:
//! - cgroup v2 (preferred), when the probe finds the agent's own cgroup `<dir>` able to
//!   give children a `cpu.max` (a systemd service with `Delegate=`). cgroup v2 lets only
//!   leaves hold processes once `+cpu` is in `<dir>/cgroup.subtree_control`, so the agent
//!   first moves itself into the leaf `<dir>/fleet-agent`; each attempt's restic then runs
//!   in `<dir>/restic-<task>-<attempt>` with `cpu.max` = `<percent * 1000> 100000`.
//! - cgroup v1 fallback, when a `cpu` hierarchy is mounted (found in
//!   `/proc/self/mountinfo`, the agent's place in it in `/proc/self/cgroup`) and writable:
//!   `<mount>/<own path>/fleet-agent/restic-<task>-<attempt>` with `cpu.cfs_period_us` =
//!   100000 and `cpu.cfs_quota_us` = `<percent * 1000>`. The agent stays where it is.
//! - neither: the quota is not enforced. The agent logs one warning at start saying why
//!   (only when a quota is configured); restic still runs under `nice`/`ionice`.
//!
//! restic joins its leaf between fork and exec ([`Leaf::join_on_exec`] writes `0` to the
//! leaf's `cgroup.procs`, which moves the writing process in v1 and in v2), so none of its
//! instructions run outside it and its children inherit it. The leaf is removed when the
//! attempt ended; empty leaves left by a crash are removed at the next start. A leaf that
//! cannot be set up is a warning, never a failed task: restic then runs without the quota.

mod host;

#[cfg(test)]
mod real_tests;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use fleet_events::ids::TaskId;

use crate::probe::CpuQuota;

pub use host::{CpuLimiter, Leaf, LeafError, host_facts, v1_cpu};

/// The agent's own leaf (v2) and the parent of restic's leaves (v1).
pub const AGENT_LEAF: &str = "fleet-agent";
/// The name of every restic leaf starts with this.
pub const LEAF_PREFIX: &str = "restic-";
/// The CFS period: quotas are microseconds of CPU time per this many microseconds.
pub const PERIOD_US: u32 = 100_000;

/// Where restic's leaves are made, and how their quota is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// cgroup v2: leaves under `base`, the agent's cgroup, beside the agent's own leaf.
    V2 { base: PathBuf },
    /// cgroup v1 `cpu` hierarchy: leaves under `base`, `<own cgroup>/fleet-agent`.
    V1 { base: PathBuf },
}

impl Backend {
    /// The directory restic's leaves are made in.
    pub fn base(&self) -> &Path {
        match self {
            Self::V2 { base } | Self::V1 { base } => base,
        }
    }

    /// The leaf of one attempt.
    pub fn leaf_dir(&self, task: TaskId, attempt: u32) -> PathBuf {
        self.base().join(leaf_name(task, attempt))
    }

    /// The files a leaf gets for `percent` of one core, in the order to write them.
    pub fn quota_files(&self, percent: u16) -> Vec<(&'static str, String)> {
        let quota = quota_us(percent).to_string();
        match self {
            Self::V2 { .. } => vec![("cpu.max", format!("{quota} {PERIOD_US}"))],
            Self::V1 { .. } => vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota),
            ],
        }
    }

    /// `cgroup v2` or `cgroup v1`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::V2 { .. } => "cgroup v2",
            Self::V1 { .. } => "cgroup v1",
        }
    }
}

/// Whether the agent can cap restic's CPU with a cgroup v1 `cpu` hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V1Cpu {
    /// Child cgroups of `dir`, the agent's own cgroup in that hierarchy, can get a quota.
    Available { dir: PathBuf },
    /// No cgroup v1 hierarchy with the `cpu` controller is mounted.
    NotMounted,
    /// `/proc/self/cgroup` names no cgroup of the agent in a `cpu` hierarchy.
    NotInHierarchy,
    /// The agent's cgroup `path` lies outside every mount of the hierarchy.
    OutsideMount { path: String },
    /// The kernel has no CFS bandwidth control: no `cpu.cfs_quota_us` in `dir`.
    NoQuotaFile { dir: PathBuf },
    /// The agent may not create cgroups in `dir`.
    NotWritable { dir: PathBuf },
}

impl fmt::Display for V1Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Available { dir } => {
                write!(f, "yes (cpu.cfs_quota_us under {})", dir.display())
            }
            Self::NotMounted => write!(f, "no (no cgroup v1 cpu hierarchy is mounted)"),
            Self::NotInHierarchy => write!(f, "no (/proc/self/cgroup names no cpu cgroup)"),
            Self::OutsideMount { path } => {
                write!(
                    f,
                    "no (the agent's cpu cgroup {path} is outside its mounts)"
                )
            }
            Self::NoQuotaFile { dir } => write!(
                f,
                "no (no cpu.cfs_quota_us in {}: no CFS bandwidth control)",
                dir.display()
            ),
            Self::NotWritable { dir } => write!(f, "no ({} is not writable)", dir.display()),
        }
    }
}

/// Why a configured quota is not enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unenforced {
    /// Neither hierarchy is usable; the probe says why for each.
    #[error("no usable cgroup: cgroup v2 {v2}; cgroup v1 {v1}")]
    NoCgroup { v2: CpuQuota, v1: V1Cpu },
    /// The chosen hierarchy could not be prepared at start.
    #[error("cannot prepare {} ({backend}): {error}", dir.display())]
    Setup {
        backend: &'static str,
        dir: PathBuf,
        error: String,
    },
}

/// The hierarchy to use: cgroup v2 when the probe found it usable, else a usable v1 `cpu`
/// hierarchy, else none (and why).
pub fn choose(v2: &CpuQuota, v1: &V1Cpu) -> Result<Backend, Unenforced> {
    if let CpuQuota::Available { dir } = v2 {
        return Ok(Backend::V2 { base: v2_base(dir) });
    }
    if let V1Cpu::Available { dir } = v1 {
        return Ok(Backend::V1 {
            base: dir.join(AGENT_LEAF),
        });
    }
    Err(Unenforced::NoCgroup {
        v2: v2.clone(),
        v1: v1.clone(),
    })
}

/// The v2 cgroup restic's leaves go in, given the agent's own: its parent when the agent
/// already sits in its leaf (an earlier start in the same process), else itself.
pub fn v2_base(own: &Path) -> PathBuf {
    match own.parent() {
        Some(parent) if own.file_name().is_some_and(|name| name == AGENT_LEAF) => parent.to_owned(),
        _ => own.to_owned(),
    }
}

/// The leaf name of one attempt: `restic-<task>-<attempt>`.
pub fn leaf_name(task: TaskId, attempt: u32) -> String {
    format!("{LEAF_PREFIX}{task}-{attempt}")
}

/// Whether a directory name is a restic leaf (removed at start when empty).
pub fn is_leaf_name(name: &str) -> bool {
    name.len() > LEAF_PREFIX.len() && name.starts_with(LEAF_PREFIX)
}

/// CPU time per [`PERIOD_US`] for `percent` of one core (clamped to 1..=6400).
pub fn quota_us(percent: u16) -> u32 {
    u32::from(percent.clamp(1, 6400)) * (PERIOD_US / 100)
}

/// The agent's cgroup in the v1 `cpu` hierarchy, from `/proc/self/cgroup`
/// (`<id>:<controllers>:<path>`, the controllers comma-separated).
pub fn v1_cpu_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim();
        (controllers.split(',').any(|c| c == "cpu") && path.starts_with('/')).then_some(path)
    })
}

/// One line of `/proc/self/mountinfo`, the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The path in the mounted filesystem that is the mount's root (for a cgroup
    /// hierarchy: the cgroup mounted there).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

impl Mount {
    /// One line of `/proc/self/mountinfo`: `id parent major:minor root mount-point options
    /// [optional fields...] - fstype source super-options`. `None` if it is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        let mut rest = fields.skip(1).skip_while(|field| *field != "-");
        rest.next()?;
        let fstype = rest.next()?;
        let _source = rest.next()?;
        let super_options = rest.next()?;
        Some(Self {
            root: unescape(root),
            mount_point: unescape(mount_point),
            fstype: fstype.to_owned(),
            super_options: super_options.to_owned(),
        })
    }

    /// Whether this is a cgroup v1 hierarchy with the `cpu` controller.
    pub fn is_v1_cpu(&self) -> bool {
        self.fstype == "cgroup" && self.super_options.split(',').any(|o| o == "cpu")
    }

    /// Where the cgroup `path` of this hierarchy is, if under this mount's root.
    pub fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let below = Path::new(path).strip_prefix(&self.root).ok()?;
        let mut dir = self.mount_point.clone();
        for component in below.components() {
            match component {
                Component::Normal(name) => dir.push(name),
                _ => return None,
            }
        }
        Some(dir)
    }
}

/// The agent's own directory in the v1 `cpu` hierarchy, from `/proc/self/mountinfo` and
/// `/proc/self/cgroup`; or why there is none. No IO: whether it can be used is checked by
/// [`v1_cpu`].
pub fn v1_cpu_dir(mountinfo: &str, proc_self_cgroup: &str) -> Result<PathBuf, V1Cpu> {
    let mounts: Vec<Mount> = mountinfo
        .lines()
        .filter_map(Mount::parse)
        .filter(Mount::is_v1_cpu)
        .collect();
    if mounts.is_empty() {
        return Err(V1Cpu::NotMounted);
    }
    let path = v1_cpu_path(proc_self_cgroup).ok_or(V1Cpu::NotInHierarchy)?;
    mounts
        .iter()
        .find_map(|mount| mount.dir_of(path))
        .ok_or_else(|| V1Cpu::OutsideMount {
            path: path.to_owned(),
        })
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        let value = octal.and_then(|digits| {
            let value = digits
                .iter()
                .fold(0u16, |acc, d| acc * 8 + u16::from(d - b'0'));
            u8::try_from(value).ok()
        });
        match value {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}
