//! The real `fleet-agent` binary killed with SIGKILL (the agent alone, not its process
//! group) while restic backs up: restic dies with it within 5 s (the parent-death signal)
//! leaving its lock, and the restarted agent runs `restic unlock` before its next run on
//! the repository, so no lock is left. The unlock is told in the agent's log and in the
//! task's history (`task.unlock_ran` before the retry's start, whether it succeeded or
//! failed). Real nats-server, real restic, the control plane in this process.
//!
//! The agent binary is the one built beside this test binary (the workspace test run
//! builds it; otherwise `cargo build -p fleet-agent`): [`AgentProcess`].

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use fleet_agent::state::AgentState;
use fleet_control::serve::Service;
use fleet_events::event::{ErrorClass, InterruptedAttempt, LostReason, TaskEvent, UnlockOutcome};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::policy::{PolicySpec, RetryBudget};
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_tests::restic::Repo;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::agent::{AgentProcess, SECRET, backup_spec};
use crate::support::{Fleet, eventually, fleet, register, schedule, services, system, tenant};
use crate::support::{stop, task_events};

/// MiB backed up: at [`SLOW_KIB_S`] the first run takes about half a minute.
const DATA_MIB: usize = 24;
/// The first agent's upload limit (restic `--limit-upload`), so it is killed mid-backup.
const SLOW_KIB_S: u32 = 1024;
/// restic's progress rate for the first agent: one status line in hours, so that restic
/// writes nothing while it runs. Otherwise a killed agent's restic dies of SIGPIPE on its
/// next status line anyway, and the scenario could not tell whether the parent-death
/// signal works.
const QUIET: (&str, &str) = ("RESTIC_PROGRESS_FPS", "0.0001");
/// What the agent logs when `restic unlock` succeeded.
const UNLOCKED_LINE: &str = "restic unlock removed the stale locks";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_leaves_no_restic_and_no_lock_after_its_restart() {
    let crash = Crash::mid_backup().await;

    let mut second = AgentProcess::start(&crash.config(&crash.repo.password_file, ""), "second");
    crash
        .wait_for("the retry to succeed", |e| {
            matches!(e, TaskEvent::Succeeded { attempt: 2, .. })
        })
        .await;
    assert_eq!(
        locks(&crash.repo),
        Vec::<String>::new(),
        "a lock is left after the restart's run (after the kill: {:?})",
        crash.locks_after_kill
    );
    second.stop();
    let log = second.log();
    assert!(
        log.lines()
            .any(|l| l.contains(UNLOCKED_LINE) && l.contains(&crash.task.to_string())),
        "the agent's log tells the unlock before the retry:\n{log}"
    );
    let state = AgentState::open(crash.dir.path().join("state")).expect("the agent's state");
    assert_eq!(
        state.unlock_marks().expect("marks"),
        [],
        "the mark is cleared"
    );

    let events = task_events(&crash.fleet.store, crash.task).await;
    assert!(
        events.contains(&TaskEvent::Lost {
            attempt: 1,
            reason: LostReason::AgentRestarted
        }),
        "{events:#?}"
    );
    assert_eq!(
        retry_steps(&events),
        [
            TaskEvent::Acknowledged { attempt: 2 },
            TaskEvent::UnlockRan {
                attempt: 2,
                interrupted: crash.interrupted(),
                outcome: UnlockOutcome::Unlocked,
            },
            TaskEvent::Started { attempt: 2 },
        ],
        "the unlock is in the task's history, before the retry's start: {events:#?}"
    );
    crash.stop().await;
}

/// The restarted agent cannot open the repository (its password was changed meanwhile):
/// the unlock fails and the task's history says so (restic's error, the interrupted
/// attempt) before the retry's start; the retry fails on its own, with restic's own
/// message; the mark stays for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_unlock_is_told_in_the_task_history_and_tried_again_later() {
    let crash = Crash::mid_backup().await;
    let wrong = crash.dir.path().join("changed-password");
    std::fs::write(&wrong, "not the repository's password").expect("password file");

    let mut second = AgentProcess::start(&crash.config(&wrong, ""), "second");
    let events = crash
        .wait_for("the retry to fail", |e| {
            matches!(e, TaskEvent::Failed { attempt: 2, .. })
        })
        .await;
    second.stop();
    let steps = retry_steps(&events);
    let [
        TaskEvent::Acknowledged { attempt: 2 },
        TaskEvent::UnlockRan {
            attempt: 2,
            interrupted,
            outcome: UnlockOutcome::Failed(unlock_error),
        },
        TaskEvent::Started { attempt: 2 },
        TaskEvent::Failed {
            attempt: 2,
            error: run_error,
        },
    ] = steps.as_slice()
    else {
        panic!("acknowledged, the failed unlock, started, failed: {events:#?}")
    };
    assert_eq!(*interrupted, crash.interrupted());
    assert_eq!(unlock_error.class, ErrorClass::Auth, "{unlock_error:?}");
    assert!(
        unlock_error.message.contains("wrong password"),
        "restic's own words: {unlock_error:?}"
    );
    assert_eq!(run_error.class, ErrorClass::Auth, "{run_error:?}");
    assert!(
        !run_error.message.contains("unlock"),
        "the run's failure is its own: {run_error:?}"
    );
    let state = AgentState::open(crash.dir.path().join("state")).expect("the agent's state");
    let marks = state.unlock_marks().expect("marks");
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].1.interrupted, [(crash.task, 1)]);
    crash.stop().await;
}

/// The events of attempt 2 (the retry, on the restarted agent) from its acknowledgement
/// to its start, and the failure that follows it if there is one.
fn retry_steps(events: &[TaskEvent]) -> Vec<TaskEvent> {
    let from = events
        .iter()
        .position(|e| matches!(e, TaskEvent::Acknowledged { attempt: 2 }))
        .unwrap_or(events.len());
    let mut steps = Vec::new();
    for event in &events[from..] {
        steps.push(event.clone());
        if !matches!(
            event,
            TaskEvent::Acknowledged { .. } | TaskEvent::UnlockRan { .. }
        ) {
            break;
        }
    }
    if let Some(failed @ TaskEvent::Failed { attempt: 2, .. }) = events.get(from + steps.len()) {
        steps.push(failed.clone());
    }
    steps
}

/// A scenario after the first agent was killed mid-backup, its restic gone.
struct Crash {
    fleet: Fleet,
    dir: tempfile::TempDir,
    repo: Repo,
    agent: AgentId,
    task: TaskId,
    shutdown: CancellationToken,
    control: Vec<JoinHandle<()>>,
    /// The repository's locks once restic was gone, before any restart: its own.
    locks_after_kill: Vec<String>,
}

impl Crash {
    /// Starts the control plane and a slow agent on a backup task (retried after 1 s),
    /// kills the agent with SIGKILL while its restic holds the repository's lock, and
    /// checks that no restic of that agent is left 5 s later.
    async fn mid_backup() -> Crash {
        let fleet = fleet().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fleet_tests::restic::incompressible_data(&data, DATA_MIB);
        let repo = Repo::init(dir.path(), "crash password");
        let agent = AgentId::generate();
        register(&fleet.store, agent, AgentSettings::default()).await;
        let spec = PolicySpec {
            retry: RetryBudget {
                max_retries: 2,
                base_delay_secs: 1,
                max_delay_secs: 1,
            },
            ..backup_spec(&repo, &data)
        };
        let task = schedule(&fleet.store, agent, spec, Utc::now()).await;
        let shutdown = CancellationToken::new();
        let control = services(
            &fleet.store,
            &[Service::Dispatcher, Service::Intake, Service::Retry],
            &system(),
            &shutdown,
        );
        let mut crash = Crash {
            fleet,
            dir,
            repo,
            agent,
            task,
            shutdown,
            control,
            locks_after_kill: Vec::new(),
        };

        let slow = format!("settings:\n  uploadKibS: {SLOW_KIB_S}\n");
        let config = crash.config(&crash.repo.password_file, &slow);
        let mut first = AgentProcess::start_with(&config, "first", &[QUIET]);
        crash
            .wait_for("the backup to start", |e| {
                matches!(e, TaskEvent::Started { attempt: 1 })
            })
            .await;
        let agent_pid = first.pid();
        let repo = crash.repo.clone();
        let children = eventually(
            "the agent's restic to hold the repository's lock",
            Duration::from_secs(30),
            || {
                let repo = repo.clone();
                async move {
                    let procs = restic_processes(&repo.path);
                    let children: Vec<u32> = procs
                        .iter()
                        .filter(|p| p.ppid == agent_pid)
                        .map(|p| p.pid)
                        .collect();
                    if !children.is_empty() && !locks(&repo).is_empty() {
                        ControlFlow::Break(children)
                    } else {
                        ControlFlow::Continue(procs)
                    }
                }
            },
        )
        .await;

        first.kill();
        let repo = crash.repo.clone();
        eventually(
            "the agent's restic to die with it",
            Duration::from_secs(5),
            || {
                let (repo, children) = (repo.clone(), children.clone());
                async move {
                    let left: Vec<Proc> = restic_processes(&repo.path)
                        .into_iter()
                        .filter(|p| p.ppid == agent_pid || children.contains(&p.pid))
                        .collect();
                    if left.is_empty() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(left)
                    }
                }
            },
        )
        .await;
        let strays = restic_processes(&crash.repo.path);
        assert!(
            strays.is_empty(),
            "no restic runs on the repository: {strays:?}"
        );
        crash.locks_after_kill = locks(&crash.repo);
        assert!(
            !crash.locks_after_kill.is_empty(),
            "restic, killed with the agent, could not remove its lock"
        );
        crash
    }

    /// The attempt the kill interrupted, as an unlock names it.
    fn interrupted(&self) -> Vec<InterruptedAttempt> {
        vec![InterruptedAttempt {
            task: self.task,
            attempt: 1,
        }]
    }

    /// Writes the agent's configuration with the secret `repo` read from `password` and
    /// `extra` YAML lines, and returns its path.
    fn config(&self, password: &Path, extra: &str) -> PathBuf {
        let path = self.dir.path().join("agent.yaml");
        let yaml = format!(
            "natsUrl: {nats}\nstateDir: {state}\nagentId: {agent}\ntenant: {tenant}\n\
             hostname: crash-host\nheartbeatSecs: 1\nstopGraceSecs: 2\n\
             secrets:\n  {SECRET}:\n    passwordFile: {pw}\n{extra}",
            nats = self.fleet.server.url(),
            state = self.dir.path().join("state").display(),
            agent = self.agent,
            tenant = tenant(),
            pw = password.display(),
        );
        std::fs::write(&path, yaml).expect("agent config");
        path
    }

    /// Waits until the task's history has an event `found` matches; returns the history.
    async fn wait_for(&self, what: &str, found: impl Fn(&TaskEvent) -> bool) -> Vec<TaskEvent> {
        let (store, task): (&EventStore, TaskId) = (&self.fleet.store, self.task);
        eventually(what, Duration::from_secs(90), || async {
            let events = task_events(store, task).await;
            if events.iter().any(&found) {
                ControlFlow::Break(events)
            } else {
                ControlFlow::Continue(events)
            }
        })
        .await
    }

    async fn stop(self) {
        stop(&self.shutdown, self.control).await;
    }
}

/// The lock ids of `repo`, as `restic list locks --no-lock` prints them.
fn locks(repo: &Repo) -> Vec<String> {
    let out = repo.restic(&["list", "locks", "--no-lock"]);
    assert!(
        out.status.success(),
        "restic list locks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A live process from `/proc`.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
}

/// The live (not zombie) processes running restic (or its `ionice`/`nice` wrappers) on
/// the repository at `repo` (their `RESTIC_REPOSITORY`).
fn restic_processes(repo: &Path) -> Vec<Proc> {
    let wanted = format!("RESTIC_REPOSITORY={}", repo.display()).into_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        // A process may end while it is read: anything unreadable is skipped.
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let runs_restic = args
            .iter()
            .any(|a| Path::new(a).file_name().is_some_and(|n| n == "restic"));
        if !runs_restic {
            continue;
        }
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == wanted.as_slice()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let mut after = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace();
        let state = after.next().unwrap_or("?");
        let ppid = after.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" {
            found.push(Proc { pid, ppid });
        }
    }
    found
}
