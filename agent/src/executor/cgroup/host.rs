//! The file side of CPU quotas: what this host's cgroups offer, the agent's hierarchy
//! prepared once at start ([`CpuLimiter`]), and one leaf cgroup per attempt ([`Leaf`]).

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_events::ids::TaskId;
use tracing::{debug, info, warn};

use super::{AGENT_LEAF, Backend, Unenforced, V1Cpu, choose, is_leaf_name, v1_cpu_dir};
use crate::probe::{self, CGROUP_ROOT, CpuQuota};

/// How often, and how far apart, removing a busy leaf is tried.
const REMOVE_TRIES: u32 = 20;
const REMOVE_PAUSE: Duration = Duration::from_millis(50);

/// What this host offers for CPU quotas: cgroup v2 (as `fleet-agent probe` sees it) and
/// the v1 `cpu` hierarchy.
pub fn host_facts() -> (CpuQuota, V1Cpu) {
    let self_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v2 = probe::cpu_quota(Path::new(CGROUP_ROOT), probe::cgroup_v2_path(&self_cgroup));
    (v2, v1_cpu(&mountinfo, &self_cgroup))
}

/// Whether the v1 `cpu` hierarchy can cap restic: the agent's directory in it (see
/// [`v1_cpu_dir`]) has `cpu.cfs_quota_us` and takes a child cgroup (tested by creating and
/// removing one).
pub fn v1_cpu(mountinfo: &str, proc_self_cgroup: &str) -> V1Cpu {
    let dir = match v1_cpu_dir(mountinfo, proc_self_cgroup) {
        Ok(dir) => dir,
        Err(reason) => return reason,
    };
    if !dir.join("cpu.cfs_quota_us").is_file() {
        return V1Cpu::NoQuotaFile { dir };
    }
    let probe = dir.join(format!("fleet-agent-probe-{}", std::process::id()));
    if fs::create_dir(&probe).is_err() {
        return V1Cpu::NotWritable { dir };
    }
    let _ = fs::remove_dir(&probe);
    V1Cpu::Available { dir }
}

/// The agent's CPU quota for restic, decided and prepared once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuLimiter {
    /// No `cpuQuotaPercent` configured.
    Off,
    /// Each attempt gets a leaf with `percent` of one core.
    Enforced { backend: Backend, percent: u16 },
    /// Configured but not enforced (warned once at start): restic runs without a quota.
    Unenforced { percent: u16, reason: Unenforced },
}

impl CpuLimiter {
    /// Decides and prepares the quota on this host; see [`CpuLimiter::start_with`].
    pub fn start(percent: Option<u16>) -> Self {
        let Some(percent) = percent else {
            return Self::Off;
        };
        let (v2, v1) = host_facts();
        Self::start_with(percent, &v2, &v1)
    }

    /// Chooses the hierarchy ([`choose`]), prepares it (v2: the agent moves into its leaf
    /// and `+cpu` is enabled for its cgroup's children; v1: the `fleet-agent` directory),
    /// removes empty restic leaves a crash left behind, and warns once if the quota cannot
    /// be enforced.
    pub fn start_with(percent: u16, v2: &CpuQuota, v1: &V1Cpu) -> Self {
        match choose(v2, v1).and_then(|backend| prepare(&backend).map(|()| backend)) {
            Ok(backend) => {
                sweep(backend.base());
                info!(percent, cgroup = %backend.base().display(), backend = backend.name(),
                    "restic's CPU quota is enforced");
                Self::Enforced { backend, percent }
            }
            Err(reason) => {
                warn!(percent, %reason,
                    "cpuQuotaPercent is not enforced; restic still runs under nice/ionice \
                     (where installed)");
                Self::Unenforced { percent, reason }
            }
        }
    }

    /// Whether attempts get a quota.
    pub fn is_enforced(&self) -> bool {
        matches!(self, Self::Enforced { .. })
    }

    /// The leaf for one attempt, with its quota written; `None` when no quota is enforced,
    /// or (after a warning) when the leaf cannot be set up: restic then runs without it.
    pub fn leaf(&self, task: TaskId, attempt: u32) -> Option<Leaf> {
        let Self::Enforced { backend, percent } = self else {
            return None;
        };
        let dir = backend.leaf_dir(task, attempt);
        match Leaf::create(dir.clone(), &backend.quota_files(*percent)) {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                warn!(task_id = %task, attempt, %error,
                    "cannot set up restic's cgroup; it runs without the CPU quota");
                None
            }
        }
    }

    /// One line for `fleet-agent status`; `None` when no quota is configured.
    pub fn summary(&self) -> Option<String> {
        match self {
            Self::Off => None,
            Self::Enforced { backend, percent } => Some(format!(
                "{percent}% of one core ({}, {})",
                backend.name(),
                backend.base().display()
            )),
            Self::Unenforced { percent, reason } => {
                Some(format!("{percent}% of one core, not enforced: {reason}"))
            }
        }
    }
}

/// Makes the hierarchy ready for leaves.
fn prepare(backend: &Backend) -> Result<(), Unenforced> {
    let setup = |dir: &Path, error: String| Unenforced::Setup {
        backend: backend.name(),
        dir: dir.to_owned(),
        error,
    };
    match backend {
        Backend::V1 { base } => {
            create_dir(base).map_err(|e| setup(base, format!("mkdir {}: {e}", base.display())))
        }
        Backend::V2 { base } => {
            let agent = base.join(AGENT_LEAF);
            create_dir(&agent)
                .map_err(|e| setup(base, format!("mkdir {}: {e}", agent.display())))?;
            // "0" moves the writing process (all its threads) into the leaf.
            let procs = agent.join("cgroup.procs");
            fs::write(&procs, "0").map_err(|e| {
                setup(
                    base,
                    format!("moving the agent to {}: {e}", procs.display()),
                )
            })?;
            let control = base.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control).unwrap_or_default();
            if probe::lists_cpu_controller(&enabled) {
                return Ok(());
            }
            fs::write(&control, "+cpu").map_err(|e| {
                // Back where it was, so nothing changed.
                let _ = fs::write(base.join("cgroup.procs"), "0");
                let _ = fs::remove_dir(&agent);
                let hint = if e.raw_os_error() == Some(libc::EBUSY) {
                    " (other processes share the agent's cgroup)"
                } else {
                    ""
                };
                setup(base, format!("+cpu in {}: {e}{hint}", control.display()))
            })
        }
    }
}

/// `mkdir`, an existing directory being fine.
fn create_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Removes the restic leaves in `base` that are empty (their processes gone): leftovers
/// of an agent that died while restic ran. A leaf still in use stays.
fn sweep(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_leaf = name.to_str().is_some_and(is_leaf_name)
            && entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !is_leaf {
            continue;
        }
        match fs::remove_dir(entry.path()) {
            Ok(()) => info!(cgroup = %entry.path().display(), "removed a leftover restic cgroup"),
            Err(error) => debug!(cgroup = %entry.path().display(), %error,
                "leftover restic cgroup not removed"),
        }
    }
}

/// A leaf could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct LeafError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// One attempt's cgroup, with its quota written. [`Leaf::remove`] it when restic ended;
/// dropped otherwise, it is removed if already empty, else at the next agent start.
#[derive(Debug)]
pub struct Leaf {
    dir: PathBuf,
    /// `<dir>/cgroup.procs`, made before any fork: nothing is allocated after it.
    procs: CString,
    removed: bool,
}

impl Leaf {
    /// Creates the leaf `dir` (reusing one that exists) and writes `files` into it; on an
    /// error, the new directory is removed again.
    pub fn create(dir: PathBuf, files: &[(&str, String)]) -> Result<Self, LeafError> {
        let fail = |path: &Path| {
            let path = path.to_owned();
            move |source| LeafError { path, source }
        };
        let procs_path = dir.join("cgroup.procs");
        let procs = CString::new(procs_path.as_os_str().as_bytes())
            .map_err(|e| fail(&procs_path)(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        create_dir(&dir).map_err(fail(&dir))?;
        let leaf = Self {
            dir,
            procs,
            removed: false,
        };
        for (name, contents) in files {
            let path = leaf.dir.join(name);
            fs::write(&path, contents).map_err(fail(&path))?;
        }
        Ok(leaf)
    }

    /// The leaf's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the process `command` spawns join this leaf before it execs: a `pre_exec`
    /// hook writes `0` to the leaf's `cgroup.procs`. If that fails, the spawn fails with
    /// the hook's error and nothing ran.
    pub fn join_on_exec(&self, command: &mut tokio::process::Command) {
        let procs = self.procs.clone();
        // SAFETY: the hook runs in the forked child before exec. It calls only open(2),
        // write(2) and close(2), which are async-signal-safe, on a path allocated before
        // the fork, and allocates nothing itself.
        unsafe {
            command.pre_exec(move || join(&procs));
        }
    }

    /// Removes the leaf, trying again for a second while it is busy (a process of
    /// restic's not yet gone); warns if it stays.
    pub async fn remove(mut self) {
        self.removed = true;
        for left in (0..REMOVE_TRIES).rev() {
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && left > 0 => {
                    tokio::time::sleep(REMOVE_PAUSE).await;
                }
                Err(error) => {
                    warn!(cgroup = %self.dir.display(), %error,
                        "cannot remove restic's cgroup; the next start removes it once empty");
                    return;
                }
            }
        }
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs`.
/// Async-signal-safe: no allocation, only open/write/close.
fn join(procs: &CStr) -> io::Result<()> {
    // SAFETY: `procs` is a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open; the buffer is one valid byte.
    let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    let result = match written {
        1 => Ok(()),
        n if n < 0 => Err(io::Error::last_os_error()),
        _ => Err(io::Error::from(io::ErrorKind::WriteZero)),
    };
    // SAFETY: `fd` is open and closed once.
    unsafe { libc::close(fd) };
    result
}
