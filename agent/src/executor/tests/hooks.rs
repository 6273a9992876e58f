//! A policy's hooks around the real restic: a failing before-hook fails the task (class
//! `hook`) and restic never runs; after-hooks see the outcome and the new snapshot and no
//! secret; a hook the agent does not define is a clear error before anything runs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_events::event::{ErrorClass, HookOutcome, HookRun, RunDetail};
use fleet_events::policy::{HookStage, PolicyHooks, TaskKind};
use fleet_events::protocol::{ReportStatus, TaskOrder};
use tokio_util::sync::CancellationToken;

use super::lab::{Lab, PASSWORD};
use crate::executor::{Executed, HookBook, HookDef, RunOutcome};

/// A hook running `body` with `/bin/sh` (a script file: hooks themselves have no shell).
fn hook(dir: &Path, name: &str, body: &str, timeout: Duration) -> (String, HookDef) {
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let def = HookDef {
        command: vec![path.display().to_string()],
        timeout,
        cwd: None,
        env: BTreeMap::new(),
    };
    (name.to_owned(), def)
}

fn book(hooks: Vec<(String, HookDef)>) -> HookBook {
    HookBook {
        hooks: hooks.into_iter().collect(),
        config: Some(PathBuf::from("/etc/fleet-agent/agent.yaml")),
    }
}

fn with_hooks(mut order: TaskOrder, hooks: PolicyHooks) -> TaskOrder {
    order.spec.hooks = hooks;
    order
}

fn ran(reports: &[ReportStatus]) -> Vec<(&str, HookStage, &HookOutcome)> {
    reports
        .iter()
        .map(|r| match r {
            ReportStatus::HookRan(HookRun {
                name,
                stage,
                outcome,
                ..
            }) => (name.as_str(), *stage, outcome),
            other => panic!("not a hook's run: {other:?}"),
        })
        .collect()
}

/// `NAME=value` lines written by `env > file`.
fn env_of(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn a_failing_before_hook_fails_the_task_with_class_hook_and_restic_never_runs() {
    let Some(mut lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(2);
    let dir = lab.dir.path().to_owned();
    let seen = dir.join("on-failure.env");
    lab.hooks = book(vec![
        hook(
            &dir,
            "dump-db",
            "echo 'pg_dump: connection refused' >&2; exit 3",
            Duration::from_secs(30),
        ),
        hook(
            &dir,
            "page",
            &format!("env > {}", seen.display()),
            Duration::from_secs(30),
        ),
        hook(&dir, "cheer", "exit 0", Duration::from_secs(30)),
    ]);
    let order = with_hooks(
        lab.order(TaskKind::Backup, &data),
        PolicyHooks {
            before: vec!["dump-db".into(), "cheer".into()],
            on_success: vec!["cheer".into()],
            on_failure: vec!["page".into()],
            ..PolicyHooks::default()
        },
    );
    let Executed {
        outcome,
        before_hooks,
        after_hooks,
        ..
    } = lab.execute_all(&order, CancellationToken::new()).await;
    let RunOutcome::Finished(ReportStatus::Failed(error)) = outcome else {
        panic!("the task should fail: {outcome:?}")
    };
    assert_eq!(error.class, ErrorClass::Hook);
    assert_eq!(
        error.message,
        "before-hook 'dump-db' exited with code 3; restic did not run"
    );
    assert!(lab.snapshots().is_empty(), "restic never ran");
    assert_eq!(
        ran(&before_hooks),
        [("dump-db", HookStage::Before, &HookOutcome::Exited(3))],
        "the first failure stops the before-hooks"
    );
    let ReportStatus::HookRan(dump) = &before_hooks[0] else {
        unreachable!()
    };
    assert!(dump.output.contains("connection refused"), "{dump:?}");
    assert_eq!(
        ran(&after_hooks),
        [("page", HookStage::OnFailure, &HookOutcome::Exited(0))]
    );
    let env = env_of(&seen);
    assert_eq!(env["FLEET_OUTCOME"], "failure");
    assert_eq!(env["FLEET_ERROR"], "hook");
    assert!(!env.contains_key("FLEET_SNAPSHOT"));
}

#[tokio::test]
async fn a_hanging_before_hook_is_killed_at_its_timeout_and_fails_the_task() {
    let Some(mut lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(1);
    let dir = lab.dir.path().to_owned();
    lab.hooks = book(vec![hook(
        &dir,
        "hang",
        "sleep 300",
        Duration::from_secs(1),
    )]);
    let order = with_hooks(
        lab.order(TaskKind::Backup, &data),
        PolicyHooks {
            before: vec!["hang".into()],
            ..PolicyHooks::default()
        },
    );
    let began = std::time::Instant::now();
    let executed = lab.execute_all(&order, CancellationToken::new()).await;
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    let RunOutcome::Finished(ReportStatus::Failed(error)) = &executed.outcome else {
        panic!("{:?}", executed.outcome)
    };
    assert_eq!(error.class, ErrorClass::Hook);
    assert!(error.message.contains("timed out"), "{error:?}");
    assert_eq!(
        ran(&executed.before_hooks),
        [("hang", HookStage::Before, &HookOutcome::TimedOut)]
    );
    assert!(lab.snapshots().is_empty());
}

#[tokio::test]
async fn after_hooks_see_the_new_snapshot_and_no_secret() {
    let Some(mut lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(3);
    let dir = lab.dir.path().to_owned();
    let (before_env, after_env) = (dir.join("before.env"), dir.join("after.env"));
    lab.hooks = book(vec![
        hook(
            &dir,
            "dump-db",
            &format!("env > {}; echo dumped", before_env.display()),
            Duration::from_secs(30),
        ),
        hook(
            &dir,
            "ping",
            &format!("env > {}", after_env.display()),
            Duration::from_secs(30),
        ),
        hook(&dir, "fail-quietly", "exit 1", Duration::from_secs(30)),
    ]);
    let order = with_hooks(
        lab.order(TaskKind::Backup, &data),
        PolicyHooks {
            before: vec!["dump-db".into()],
            on_success: vec!["fail-quietly".into()],
            after: vec!["ping".into()],
            ..PolicyHooks::default()
        },
    );
    let Executed {
        outcome,
        before_hooks,
        after_hooks,
        ..
    } = lab.execute_all(&order, CancellationToken::new()).await;
    let RunOutcome::Finished(ReportStatus::Succeeded(summary)) = outcome else {
        panic!("a failing onSuccess hook changes nothing: {outcome:?}")
    };
    let RunDetail::Backup(backup) = summary.detail else {
        panic!("{summary:?}")
    };
    let snapshot = backup.snapshot_id.expect("a snapshot");
    assert_eq!(lab.snapshots().len(), 1);
    assert_eq!(
        ran(&before_hooks),
        [("dump-db", HookStage::Before, &HookOutcome::Exited(0))]
    );
    assert_eq!(
        ran(&after_hooks),
        [
            (
                "fail-quietly",
                HookStage::OnSuccess,
                &HookOutcome::Exited(1)
            ),
            ("ping", HookStage::After, &HookOutcome::Exited(0)),
        ],
        "a failed hook after the run stops none of the others"
    );
    let after = env_of(&after_env);
    assert_eq!(after["FLEET_SNAPSHOT"], snapshot);
    assert_eq!(after["FLEET_OUTCOME"], "success");
    assert_eq!(after["FLEET_HOOK_STAGE"], "after");
    assert_eq!(after["FLEET_KIND"], "backup");
    assert_eq!(after["FLEET_TASK"], order.task.to_string());
    assert_eq!(after["FLEET_POLICY"], order.policy.to_string());
    assert_eq!(after["FLEET_POLICY_NAME"], order.spec.name);
    assert_eq!(after["FLEET_ATTEMPT"], order.attempt.to_string());
    let before = env_of(&before_env);
    assert_eq!(before["FLEET_HOOK_STAGE"], "before");
    assert!(!before.contains_key("FLEET_OUTCOME"));
    for env in [&before, &after] {
        assert!(
            env.keys().all(|k| !k.starts_with("RESTIC_")),
            "no restic variable reaches a hook: {env:?}"
        );
        assert!(env.values().all(|v| !v.contains(PASSWORD)), "{env:?}");
    }
}

#[tokio::test]
async fn a_hook_the_agent_does_not_define_is_a_clear_error_before_anything_runs() {
    let Some(mut lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(1);
    let dir = lab.dir.path().to_owned();
    let marker = dir.join("ran");
    lab.hooks = book(vec![hook(
        &dir,
        "dump-db",
        &format!("touch {}", marker.display()),
        Duration::from_secs(30),
    )]);
    let order = with_hooks(
        lab.order(TaskKind::Backup, &data),
        PolicyHooks {
            before: vec!["dump-db".into()],
            after: vec!["x".into()],
            ..PolicyHooks::default()
        },
    );
    let executed = lab.execute_all(&order, CancellationToken::new()).await;
    let RunOutcome::Finished(ReportStatus::Failed(error)) = &executed.outcome else {
        panic!("{:?}", executed.outcome)
    };
    assert_eq!(error.class, ErrorClass::Permanent);
    assert_eq!(
        error.message,
        "hook 'x' is not defined in this agent's configuration (hooks: in /etc/fleet-agent/agent.yaml)"
    );
    assert!(executed.before_hooks.is_empty() && executed.after_hooks.is_empty());
    assert!(!marker.exists(), "no hook ran");
    assert!(lab.snapshots().is_empty(), "restic never ran");
}
