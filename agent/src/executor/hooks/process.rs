//! One hook's process: spawned without a shell in a process group of its own, with only
//! the environment it is given, its stdout and stderr on one pipe (so they are kept in the
//! order written, as a terminal shows them) and bounded; killed with its whole group at
//! its timeout or when the attempt is cancelled, and its leftovers killed when it exits.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use fleet_events::event::{HookOutcome, MAX_HOOK_OUTPUT};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::book::HookDef;
use super::tail::Tail;
use crate::executor::run::die_with_agent;

/// How long output is still read after the hook exited (a descendant in another process
/// group may hold its pipe open).
const DRAIN: Duration = Duration::from_secs(2);

/// What one hook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub outcome: HookOutcome,
    pub output: String,
    pub output_cut: bool,
    pub duration: Duration,
}

/// Runs `def` with exactly `env`, for at most `timeout`.
pub async fn run(
    def: &HookDef,
    env: Vec<(String, OsString)>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Ran {
    let began = Instant::now();
    let not_started = |outcome| Ran {
        outcome,
        output: String::new(),
        output_cut: false,
        duration: began.elapsed(),
    };
    let Some((program, args)) = def.command.split_first() else {
        return not_started(HookOutcome::NotStarted("no command".into()));
    };
    // One pipe for both streams: two pipes read side by side lose the order between them
    // (a last line on stderr could be read before the stdout written ahead of it).
    let pipe = std::io::pipe().and_then(|(reader, stdout)| {
        let stderr = stdout.try_clone()?;
        Ok((
            pipe::Receiver::from_owned_fd(reader.into())?,
            stdout,
            stderr,
        ))
    });
    let (reader, stdout, stderr) = match pipe {
        Ok(pipe) => pipe,
        Err(e) => return not_started(HookOutcome::NotStarted(format!("no pipe: {e}"))),
    };
    let mut output = Some(reader);
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &def.cwd {
        if !cwd.is_dir() {
            let why = format!("working directory {} is not a directory", cwd.display());
            return not_started(HookOutcome::NotStarted(why));
        }
        command.current_dir(cwd);
    }
    die_with_agent(&mut command);
    let spawned = command.spawn();
    // Our copies of the write ends go, so the pipe ends when the hook and its children close it.
    drop(command);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return not_started(HookOutcome::NotFound);
        }
        Err(e) => return not_started(HookOutcome::NotStarted(e.to_string())),
    };
    let group = child.id();
    let mut tail = Tail::new(MAX_HOOK_OUTPUT);
    let mut buf = [0u8; 4096];
    let mut exited: Option<ExitStatus> = None;
    let deadline = sleep_until(began + timeout);
    tokio::pin!(deadline);
    // Armed when the hook exits.
    let drain = sleep(DRAIN);
    tokio::pin!(drain);
    let outcome = loop {
        if let Some(status) = exited
            && output.is_none()
        {
            break outcome_of(status);
        }
        tokio::select! {
            read = read_some(&mut output, &mut buf) => match read {
                Some(n) => tail.push(&buf[..n]),
                None => output = None,
            },
            status = child.wait(), if exited.is_none() => {
                let Ok(status) = status else {
                    kill_group(group);
                    break HookOutcome::NotStarted("lost track of the process".into());
                };
                exited = Some(status);
                // Whatever it left behind in its group goes with it.
                kill_group(group);
                drain.as_mut().reset(Instant::now() + DRAIN);
            },
            () = &mut drain, if exited.is_some() => break exited.map_or(HookOutcome::TimedOut, outcome_of),
            () = &mut deadline, if exited.is_none() => {
                kill_group(group);
                break HookOutcome::TimedOut;
            },
            () = cancel.cancelled(), if exited.is_none() => {
                kill_group(group);
                break HookOutcome::Cancelled;
            },
        }
    };
    if exited.is_none() {
        // Killed above: reap it.
        let _ = child.wait().await;
    }
    let (output, output_cut) = tail.finish();
    Ran {
        outcome,
        output,
        output_cut,
        duration: began.elapsed(),
    }
}

/// The next bytes of `pipe` (`None` at its end or on an error; a gone pipe never resolves,
/// so `select!` waits on the other branches).
async fn read_some(pipe: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(pipe) => match pipe.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

fn outcome_of(status: ExitStatus) -> HookOutcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => HookOutcome::Exited(code),
        (None, Some(signal)) => HookOutcome::Killed(signal),
        (None, None) => HookOutcome::Killed(0),
    }
}

/// SIGKILL to the hook's process group (its id is the hook's pid).
fn kill_group(group: Option<u32>) {
    let Some(group) = group.and_then(|g| libc::pid_t::try_from(g).ok()) else {
        return;
    };
    // SAFETY: killpg(2) with a pid we spawned as a group leader; no memory is involved.
    unsafe {
        libc::killpg(group, libc::SIGKILL);
    }
}
