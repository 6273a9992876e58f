//! Runs one restic invocation to its end: output collected, run timeout, cancellation and
//! an unreachable repository ([`ReachWatch`]) enforced (SIGINT, so restic removes its lock,
//! then SIGKILL after a grace period), in its CPU-quota cgroup when it has one. On Linux
//! restic dies with the agent: the kernel kills it when the agent's process ends, however
//! it ends (`die_with_agent`).

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use fleet_events::event::{ErrorClass, TaskError};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::cgroup::Leaf;
use super::collect::{Collected, Stream};
use super::command::Invocation;
use super::priority::{Wrappers, command_line};
use super::secrets::RESTIC_SECRET_VARS;
use crate::restic::{ReachWatch, ResticVersion, failure};

/// How long restic may clean up (remove its lock) after SIGINT before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long restic may retry to reach a repository before the run fails as `network`.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(120);
/// How long output is still read after restic exited, in case a child of restic (ssh, a
/// password command) holds the pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// restic ran to its end or was stopped at the run timeout: report this.
    Finished(ReportStatus),
    /// The run was cancelled and restic stopped; not a failure of the task.
    Cancelled,
}

/// Why the agent stopped restic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Cancel,
    Unreachable,
}

/// Runs `inv` (a `kind` task) at its priority, within `limits`, in the cgroup
/// `limits.leaf` when given (restic joins it before it execs). If restic cannot start in
/// the leaf, it starts without it, after a warning: a quota never fails a task.
pub async fn run_limited(
    inv: &Invocation,
    kind: TaskKind,
    limits: Limits<'_>,
    cancel: CancellationToken,
) -> RunOutcome {
    run_judged(inv, kind, limits, cancel, &mut |_, _| {}).await
}

/// [`run_observed`], then restic's exit and output judged as [`run_with_grace`] does.
pub(super) async fn run_judged(
    inv: &Invocation,
    kind: TaskKind,
    limits: Limits<'_>,
    cancel: CancellationToken,
    observe: Observer<'_>,
) -> RunOutcome {
    let version = limits.version;
    match run_observed(inv, kind, limits, cancel, observe).await {
        Ended::Exited {
            code,
            collected,
            duration_ms,
        } => RunOutcome::Finished((*collected).finish(code, duration_ms, version)),
        Ended::Outcome(outcome) => outcome,
    }
}

/// How a restic run ended, before what it printed is judged.
#[derive(Debug)]
pub(super) enum Ended {
    /// restic exited by itself with `code` (`None`: a signal the agent did not send).
    Exited {
        code: Option<i32>,
        collected: Box<Collected>,
        duration_ms: u64,
    },
    /// The run is over otherwise: stopped at its timeout (a failure), cancelled, or
    /// restic could not be started or waited for (a failure).
    Outcome(RunOutcome),
}

/// [`run_limited`] without judging restic's exit: the caller reads what it printed.
pub(super) async fn run_to_end(
    inv: &Invocation,
    kind: TaskKind,
    limits: Limits<'_>,
    cancel: CancellationToken,
) -> Ended {
    run_observed(inv, kind, limits, cancel, &mut |_, _| {}).await
}

/// How long a run may take, how it is stopped, and where it runs.
#[derive(Clone, Copy)]
pub struct Limits<'a> {
    pub timeout: Duration,
    /// Between SIGINT and SIGKILL.
    pub grace: Duration,
    /// How long restic may retry to reach the repository ([`ReachWatch`]).
    pub unreachable_after: Duration,
    pub version: &'a ResticVersion,
    /// The attempt's CPU-quota cgroup, if any.
    pub leaf: Option<&'a Leaf>,
}

impl<'a> Limits<'a> {
    /// The agent's limits from `ctx`, `timeout` for this run, outside any cgroup.
    pub fn of(ctx: &super::Context<'a>, timeout: Duration) -> Self {
        Self {
            timeout,
            grace: ctx.grace,
            unreachable_after: ctx.unreachable_after,
            version: ctx.version,
            leaf: None,
        }
    }

    /// In the CPU-quota cgroup `leaf`, if any.
    pub fn in_leaf(self, leaf: Option<&'a Leaf>) -> Self {
        Self { leaf, ..self }
    }
}

/// Sees every line restic prints, as it comes, before it is collected: for output too
/// large to keep (`ls` of a whole snapshot, a restore's errors) and for live progress
/// (status lines). It runs on the runtime's
/// thread between two lines, so it must be quick.
pub(super) type Observer<'o> = &'o mut (dyn FnMut(Stream, &str) + Send);

/// [`run_to_end`] with an [`Observer`] of every line.
pub(super) async fn run_observed(
    inv: &Invocation,
    kind: TaskKind,
    limits: Limits<'_>,
    cancel: CancellationToken,
    observe: Observer<'_>,
) -> Ended {
    let Limits {
        timeout,
        grace,
        unreachable_after,
        version,
        leaf,
    } = limits;
    let (program, args) = command_line(inv, wrappers());
    let started = Instant::now();
    let spawned = match leaf {
        Some(leaf) => match command(&program, &args, inv, Some(leaf)).spawn() {
            Ok(child) => Ok(child),
            Err(error) => {
                warn!(%error, cgroup = %leaf.dir().display(),
                    "restic could not start in its cgroup; starting it without the CPU quota");
                command(&program, &args, inv, None).spawn()
            }
        },
        None => command(&program, &args, inv, None).spawn(),
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let class = match error.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    ErrorClass::Permanent
                }
                _ => ErrorClass::Resource,
            };
            let message = format!("could not start {}: {error}", program.display());
            let error = TaskError::new(class, &message, None);
            return Ended::Outcome(RunOutcome::Finished(ReportStatus::Failed(error)));
        }
    };
    let pid = child.id();
    debug!(pid, kind = kind.as_str(), args = ?inv.args, "restic started");

    let (tx, mut rx) = mpsc::channel(256);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(read_lines(stdout, Stream::Out, tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(read_lines(stderr, Stream::Err, tx.clone()));
    }
    drop(tx);

    let mut collected = Collected::new(kind);
    let mut reach = ReachWatch::new(unreachable_after);
    let deadline = started + timeout;
    let far = started + Duration::from_secs(86_400 * 365);
    let mut stop: Option<(Stop, Instant)> = None;
    let mut killed = false;
    let mut status = None;
    let mut drain_until = far;
    let mut lines_open = true;
    while lines_open || status.is_none() {
        let kill_at = stop.map_or(far, |(_, at)| at);
        let give_up_at = reach.give_up_at();
        let running = status.is_none();
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some((stream, line)) => {
                    observe(stream, &line);
                    reach.line(stream == Stream::Err, &line, Instant::now().into_std());
                    collected.push(stream, line);
                }
                None => lines_open = false,
            },
            result = child.wait(), if running => {
                status = Some(result);
                drain_until = Instant::now() + DRAIN_AFTER_EXIT;
            }
            () = sleep_until(deadline), if running && stop.is_none() => {
                warn!(pid, kind = kind.as_str(), ?timeout, "restic passed the run timeout; interrupting it");
                interrupt(pid);
                stop = Some((Stop::Timeout, Instant::now() + grace));
            }
            () = sleep_until(give_up_at.map_or(far, Instant::from_std)),
                if running && stop.is_none() && give_up_at.is_some() =>
            {
                warn!(pid, kind = kind.as_str(), ?unreachable_after,
                    "restic keeps retrying to reach the repository; interrupting it");
                interrupt(pid);
                stop = Some((Stop::Unreachable, Instant::now() + grace));
            }
            () = cancel.cancelled(), if running && stop.is_none() => {
                debug!(pid, kind = kind.as_str(), "run cancelled; interrupting restic");
                interrupt(pid);
                stop = Some((Stop::Cancel, Instant::now() + grace));
            }
            () = sleep_until(kill_at), if running && !killed => {
                warn!(pid, ?grace, "restic still runs after SIGINT; killing it");
                if let Err(error) = child.start_kill() {
                    warn!(pid, %error, "could not kill restic");
                }
                killed = true;
            }
            () = sleep_until(drain_until), if !running => {
                debug!(pid, "restic exited but its output stays open; not waiting for it");
                break;
            }
        }
    }
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    let code = match status {
        Some(Ok(status)) => status.code(),
        Some(Err(error)) => {
            let message = format!("waiting for restic failed: {error}");
            let error = TaskError::new(ErrorClass::Resource, &message, None);
            return Ended::Outcome(RunOutcome::Finished(ReportStatus::Failed(error)));
        }
        None => None,
    };
    debug!(pid, ?code, duration_ms, "restic ended");
    match stop {
        Some((Stop::Cancel, _)) => Ended::Outcome(RunOutcome::Cancelled),
        Some((Stop::Timeout, _)) => Ended::Outcome(RunOutcome::Finished(ReportStatus::Failed(
            failure(version, code, collected.stderr(), true),
        ))),
        Some((Stop::Unreachable, _)) => {
            Ended::Outcome(RunOutcome::Finished(ReportStatus::Failed(reach.error())))
        }
        None => Ended::Exited {
            code,
            collected: Box::new(collected),
            duration_ms,
        },
    }
}

/// The command that spawns restic (behind its wrappers), joining `leaf` if given.
fn command(program: &Path, args: &[OsString], inv: &Invocation, leaf: Option<&Leaf>) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    for var in RESTIC_SECRET_VARS {
        command.env_remove(var);
    }
    command
        .envs(inv.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(leaf) = leaf {
        leaf.join_on_exec(&mut command);
    }
    die_with_agent(&mut command);
    command
}

/// Asks the kernel to kill the spawned process (SIGKILL) when the agent dies, however it
/// dies (`prctl(PR_SET_PDEATHSIG)`, Linux only), so no restic outlives the agent.
///
/// SIGKILL, not SIGINT or SIGTERM, because a gentler signal buys nothing and costs time:
/// restic 0.14 dies on SIGTERM without cleaning up; on SIGINT restic first reports the
/// signal on its stderr, whose reader is gone, and usually dies of SIGPIPE right there with
/// its lock still in place; and when it does clean up, removing its lock can wait more
/// than 10 s behind uploads slowed by `--limit-upload`, while a restarted agent may already
/// start the next run. restic's repository survives a kill at any point (an unfinished
/// backup leaves only unreferenced data for the next prune); the lock it leaves is removed
/// by `restic unlock` before the next run on that repository ([`crate::runtime::unlock`]).
/// The setting survives the `ionice`/`nice` execs (neither is setuid: the kernel clears
/// it only on an exec that changes credentials).
///
/// The kernel ties the signal to the *thread* that forked, not to the process: a spawn from
/// a thread that ends before the agent does (a `spawn_blocking` thread, which tokio ends
/// after 10 s idle) would kill restic mid-run. The agent spawns restic from its runtime's
/// worker threads, which live as long as the agent; keep it that way.
#[cfg(target_os = "linux")]
pub(crate) fn die_with_agent(command: &mut Command) {
    let agent = std::process::id();
    // SAFETY: the hook runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), which are async-signal-safe; it allocates nothing (an OS error is a code).
    unsafe {
        command.pre_exec(move || {
            // A failure leaves restic without the signal; a protection never fails a task.
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            // The agent died between fork and prctl: the signal will never come.
            if u32::try_from(libc::getppid()).ok() != Some(agent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere than Linux there is no parent-death signal: a killed agent's restic runs on
/// until a write to its closed output fails.
#[cfg(not(target_os = "linux"))]
pub(crate) fn die_with_agent(_: &mut Command) {}

/// Sends SIGINT to restic (the wrappers exec it, so `pid` is restic once it started).
fn interrupt(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|pid| libc::pid_t::try_from(pid).ok()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions. The child is not reaped yet (the
    // caller only interrupts a running child), so the pid cannot have been reused.
    let result = unsafe { libc::kill(pid, libc::SIGINT) };
    if result != 0 {
        debug!(pid, error = %std::io::Error::last_os_error(), "SIGINT not delivered");
    }
}

/// Reads `stream` line by line (lossy UTF-8, line ends trimmed) into `tx`.
async fn read_lines(
    stream: impl AsyncRead + Unpin,
    which: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while buf.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if tx.send((which, line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `nice` and `ionice` from PATH, looked up once; warns once when neither is there.
fn wrappers() -> &'static Wrappers {
    static WRAPPERS: OnceLock<Wrappers> = OnceLock::new();
    WRAPPERS.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = Wrappers::from_path(&path);
        if found.is_empty() {
            warn!("neither nice nor ionice is on PATH: restic runs at the agent's priority");
        } else if found.nice.is_none() || found.ionice.is_none() {
            warn!(nice = ?found.nice, ionice = ?found.ionice, "restic runs without one of nice/ionice");
        }
        found
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use fleet_events::settings::IoClass;

    use super::*;

    /// The parent-death signal: a child is killed as soon as the thread that spawned it
    /// ends, which is why restic is spawned only from threads that live as long as the
    /// agent. The agent's death by SIGKILL ends all its threads the same way.
    #[test]
    fn a_child_is_killed_when_the_thread_that_spawned_it_ends() {
        let inv = Invocation {
            program: "sleep".into(),
            args: vec!["30".into()],
            env: Vec::new(),
            nice: 0,
            io_class: IoClass::Idle,
        };
        let pid = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let child = command(&inv.program, &inv.args, &inv, None)
                    .spawn()
                    .expect("sleep starts");
                let pid = child.id().expect("running");
                // Neither killed on drop nor reaped here: only the signal may end it.
                std::mem::forget(child);
                pid
            })
        })
        .join()
        .expect("the spawning thread ended");
        let pid = libc::pid_t::try_from(pid).expect("a pid");
        let mut status = 0;
        // SAFETY: waitpid(2) on this process's own child, with a valid status pointer.
        let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(reaped, pid, "{}", std::io::Error::last_os_error());
        assert!(libc::WIFSIGNALED(status), "exited by itself: {status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGKILL);
    }
}
