//! Hooks: plans, environments and bounded output (pure), and real processes: exit codes,
//! a missing program, a hang killed at its timeout with its children, a cancel.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_events::event::{ErrorClass, HookOutcome, MAX_HOOK_OUTPUT};
use fleet_events::policy::{HookStage, PolicyHooks, TaskKind};
use fleet_events::samples;
use tokio_util::sync::CancellationToken;

use super::book::{HookBook, HookDef};
use super::env::{RunEnd, TaskInfo, environment};
use super::process;
use super::tail::Tail;

fn def(command: &[&str]) -> HookDef {
    HookDef {
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        timeout: Duration::from_secs(10),
        cwd: None,
        env: BTreeMap::new(),
    }
}

fn book() -> HookBook {
    HookBook {
        hooks: BTreeMap::from([
            ("dump-db".to_owned(), def(&["/bin/true"])),
            ("ping".to_owned(), def(&["/bin/true"])),
        ]),
        config: Some("/etc/fleet-agent.yaml".into()),
    }
}

fn info() -> TaskInfo<'static> {
    TaskInfo {
        task: samples::TASK,
        policy: samples::POLICY,
        policy_name: "nightly home",
        kind: TaskKind::Backup,
        attempt: 2,
    }
}

#[test]
fn a_plan_resolves_every_stage_and_orders_the_after_run() {
    let book = book();
    let hooks = PolicyHooks {
        before: vec!["dump-db".into()],
        after: vec!["ping".into()],
        on_failure: vec!["dump-db".into()],
        ..PolicyHooks::default()
    };
    let plan = book.plan(&hooks).expect("all defined");
    assert_eq!(plan.before.len(), 1);
    assert_eq!(plan.before[0].stage, HookStage::Before);
    let failed: Vec<_> = plan.after_run(false).map(|h| (h.name, h.stage)).collect();
    assert_eq!(
        failed,
        [
            ("dump-db", HookStage::OnFailure),
            ("ping", HookStage::After)
        ]
    );
    let succeeded: Vec<_> = plan.after_run(true).map(|h| h.name).collect();
    assert_eq!(succeeded, ["ping"]);
    assert!(
        book.plan(&PolicyHooks::default())
            .expect("none")
            .before
            .is_empty()
    );
}

#[test]
fn a_hook_the_agent_does_not_define_is_a_clear_error_naming_the_file() {
    let hooks = PolicyHooks {
        on_success: vec!["ping".into(), "x".into()],
        ..PolicyHooks::default()
    };
    let error = book().plan(&hooks).expect_err("x is not defined");
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(
        error.message,
        "hook 'x' is not defined in this agent's configuration (hooks: in /etc/fleet-agent.yaml)"
    );
}

#[test]
fn the_environment_has_the_task_and_nothing_secret() {
    let agent = |name: &str| -> Option<OsString> {
        match name {
            "PATH" => Some("/usr/bin:/bin".into()),
            "HOME" => Some("/root".into()),
            "RESTIC_PASSWORD" | "REPO_PASS" | "FLEET_AGENT_ENROLLMENT_TOKEN" => {
                Some("secret".into())
            }
            _ => None,
        }
    };
    let mut hook = def(&["/bin/true"]);
    hook.env.insert("DB_HOST".into(), "db-1".into());
    let end = RunEnd {
        succeeded: true,
        snapshot: Some("5e1c0a3f".into()),
        error: None,
    };
    let env: BTreeMap<String, OsString> =
        environment(&info(), HookStage::After, Some(&end), &hook, agent)
            .into_iter()
            .collect();
    let get = |name: &str| env.get(name).map(|v| v.to_string_lossy().into_owned());
    assert_eq!(get("FLEET_TASK"), Some(samples::TASK.to_string()));
    assert_eq!(get("FLEET_POLICY"), Some(samples::POLICY.to_string()));
    assert_eq!(get("FLEET_POLICY_NAME").as_deref(), Some("nightly home"));
    assert_eq!(get("FLEET_KIND").as_deref(), Some("backup"));
    assert_eq!(get("FLEET_ATTEMPT").as_deref(), Some("2"));
    assert_eq!(get("FLEET_HOOK_STAGE").as_deref(), Some("after"));
    assert_eq!(get("FLEET_OUTCOME").as_deref(), Some("success"));
    assert_eq!(get("FLEET_SNAPSHOT").as_deref(), Some("5e1c0a3f"));
    assert_eq!(get("FLEET_ERROR"), None);
    assert_eq!(get("DB_HOST").as_deref(), Some("db-1"));
    assert_eq!(get("PATH").as_deref(), Some("/usr/bin:/bin"));
    assert!(
        env.values().all(|v| v != "secret"),
        "no secret of the agent's: {env:?}"
    );

    let failed = RunEnd {
        succeeded: false,
        snapshot: None,
        error: Some(ErrorClass::Lock),
    };
    let env: BTreeMap<String, OsString> =
        environment(&info(), HookStage::OnFailure, Some(&failed), &hook, agent)
            .into_iter()
            .collect();
    assert_eq!(env["FLEET_OUTCOME"], "failure");
    assert_eq!(env["FLEET_ERROR"], "lock");
    assert!(!env.contains_key("FLEET_SNAPSHOT"));
    let before: BTreeMap<String, OsString> =
        environment(&info(), HookStage::Before, None, &hook, agent)
            .into_iter()
            .collect();
    assert_eq!(before["FLEET_HOOK_STAGE"], "before");
    assert!(!before.contains_key("FLEET_OUTCOME"));
}

#[test]
fn output_keeps_the_last_bytes_and_says_it_was_cut() {
    let mut tail = Tail::new(8);
    tail.push(b"abc");
    tail.push(b"def");
    assert_eq!(tail.clone().finish(), ("abcdef".into(), false));
    tail.push(b"ghij");
    assert_eq!(tail.clone().finish(), ("cdefghij".into(), true));
    let mut big = Tail::new(8);
    big.push(&[b'x'; 100]);
    assert_eq!(big.finish(), ("x".repeat(8), true));
    // A character cut in half by the bound is dropped, not garbled.
    let mut utf8 = Tail::new(5);
    utf8.push("aéééé".as_bytes());
    let (text, cut) = utf8.finish();
    assert!(cut);
    assert_eq!(text, "éé");
}

#[test]
fn check_config_lists_hooks_without_env_values() {
    let mut hook = def(&[
        "/usr/local/bin/dump-db",
        "--out",
        "/var/backups/db dump.sql",
    ]);
    hook.env.insert("PGPASSWORD".into(), "hunter2".into());
    hook.cwd = Some("/var/backups".into());
    let book = HookBook {
        hooks: BTreeMap::from([("dump-db".to_owned(), hook)]),
        config: None,
    };
    let listing = book.listing();
    assert_eq!(
        listing,
        "hooks: 1\n  dump-db: /usr/local/bin/dump-db --out '/var/backups/db dump.sql' \
         (timeout 10s, cwd /var/backups, env PGPASSWORD)\n"
    );
    assert!(!format!("{book:?}").contains("hunter2"));
    assert_eq!(HookBook::default().listing(), "hooks: none\n");
}

/// An executable script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn path_env() -> Vec<(String, OsString)> {
    vec![("PATH".into(), "/usr/bin:/bin".into())]
}

async fn run(def: &HookDef) -> process::Ran {
    process::run(def, path_env(), def.timeout, &CancellationToken::new()).await
}

#[tokio::test]
async fn exit_codes_and_a_missing_program_are_told_apart() {
    let dir = tempfile::tempdir().expect("tmp");
    let ok = script(dir.path(), "ok", "echo dumped; echo warn >&2");
    let ran = run(&def(&[ok.to_str().unwrap()])).await;
    assert_eq!(ran.outcome, HookOutcome::Exited(0));
    assert!(ran.output.contains("dumped") && ran.output.contains("warn"));
    assert!(!ran.output_cut);
    let three = script(dir.path(), "three", "exit 3");
    assert_eq!(
        run(&def(&[three.to_str().unwrap()])).await.outcome,
        HookOutcome::Exited(3)
    );
    let missing = dir.path().join("not-there");
    assert_eq!(
        run(&def(&[missing.to_str().unwrap()])).await.outcome,
        HookOutcome::NotFound
    );
    let mut elsewhere = def(&[ok.to_str().unwrap()]);
    elsewhere.cwd = Some(dir.path().join("no-such-dir"));
    assert!(matches!(
        run(&elsewhere).await.outcome,
        HookOutcome::NotStarted(why) if why.contains("no-such-dir")
    ));
    // No shell: a metacharacter is an argument like any other.
    let echo = script(dir.path(), "echo", "printf '%s' \"$1\"");
    let ran = run(&def(&[echo.to_str().unwrap(), "a; rm -rf /tmp/x"])).await;
    assert_eq!(ran.output, "a; rm -rf /tmp/x");
}

#[tokio::test]
async fn long_output_is_bounded_to_its_last_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let chatty = script(
        dir.path(),
        "chatty",
        "i=0; while [ $i -lt 2000 ]; do echo \"line $i of a chatty hook\"; i=$((i+1)); done; echo last >&2",
    );
    let ran = run(&def(&[chatty.to_str().unwrap()])).await;
    assert_eq!(ran.outcome, HookOutcome::Exited(0));
    assert!(ran.output_cut);
    assert!(ran.output.len() <= MAX_HOOK_OUTPUT, "{}", ran.output.len());
    assert!(ran.output.trim_end().ends_with("last"), "{}", ran.output);
    assert!(!ran.output.contains("line 0 "));
}

fn alive(pid: i32) -> bool {
    // A zombie waiting for its reaper is dead for our purpose.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_hook_that_hangs_is_killed_at_its_timeout_with_its_children() {
    let dir = tempfile::tempdir().expect("tmp");
    let pids = dir.path().join("pids");
    let hang = script(
        dir.path(),
        "hang",
        &format!(
            "sleep 300 & echo $! > {p}; echo started; sleep 300",
            p = pids.display()
        ),
    );
    let mut hook = def(&[hang.to_str().unwrap()]);
    hook.timeout = Duration::from_secs(1);
    let began = std::time::Instant::now();
    let ran = run(&hook).await;
    assert_eq!(ran.outcome, HookOutcome::TimedOut);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert!(ran.output.contains("started"));
    let child: i32 = std::fs::read_to_string(&pids)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !alive(child)
    });
    assert!(gone, "the hook's child {child} outlived its timeout");
}

#[tokio::test]
async fn a_cancel_stops_a_running_hook() {
    let dir = tempfile::tempdir().expect("tmp");
    let hang = script(dir.path(), "hang", "sleep 300");
    let hook = def(&[hang.to_str().unwrap()]);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
    });
    let ran = process::run(&hook, path_env(), hook.timeout, &cancel).await;
    assert_eq!(ran.outcome, HookOutcome::Cancelled);
    assert!(ran.duration < Duration::from_secs(5));
}

#[tokio::test]
async fn a_hook_sees_only_the_environment_it_is_given() {
    let dir = tempfile::tempdir().expect("tmp");
    let env_file = dir.path().join("env");
    let dump = script(dir.path(), "dump", &format!("env > {}", env_file.display()));
    // SAFETY (test): set before the hook is spawned, in this test's process only; no other
    // test reads this variable.
    unsafe { std::env::set_var("FLEET_HOOK_TEST_SECRET", "do-not-leak") };
    let ran = run(&def(&[dump.to_str().unwrap()])).await;
    assert_eq!(ran.outcome, HookOutcome::Exited(0));
    let seen = std::fs::read_to_string(&env_file).expect("env");
    assert!(!seen.contains("do-not-leak"), "{seen}");
    assert!(seen.contains("PATH=/usr/bin:/bin"), "{seen}");
}
