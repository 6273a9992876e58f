//! The executor against the real restic and temporary repositories (see [`lab`]); each
//! test skips, saying so, when restic is not installed.

mod browse;
mod hooks;
mod lab;
mod listing;
mod progress;
mod restore;
mod retention;

use std::fs;
use std::time::{Duration, Instant};

use fleet_events::event::{ErrorClass, RunDetail};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use fleet_events::settings::IoClass;
use tokio_util::sync::CancellationToken;

use self::lab::{HOST, Lab};
use super::*;

fn failed_class(status: &ReportStatus) -> ErrorClass {
    match status {
        ReportStatus::Failed(error) => error.class,
        other => panic!("not a failure: {other:?}"),
    }
}

#[tokio::test]
async fn backup_is_tagged_and_summarised() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(4);
    let (order, summary) = lab.backup(&data).await;
    assert_eq!(summary.files_new, 4, "{summary:?}");
    assert!(summary.data_added_bytes > 0, "{summary:?}");
    let id = summary.snapshot_id.expect("a snapshot id");

    let snapshots = lab.snapshots();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let snapshot = &snapshots[0];
    assert!(snapshot.has_id(&id), "{id} in {snapshot:?}");
    for tag in [
        format!("policy:{}", order.policy),
        format!("task:{}", order.task),
        "lab".into(),
    ] {
        assert!(snapshot.tags.contains(&tag), "{tag} in {:?}", snapshot.tags);
    }
    assert_eq!(snapshot.hostname, HOST);
}

/// With a quota on a usable cgroup, restic runs in its attempt's leaf, removed afterwards.
#[tokio::test]
async fn backup_under_a_cpu_quota_leaves_no_cgroup() {
    let Some(mut lab) = Lab::new() else { return };
    let cpu = CpuLimiter::start(Some(50));
    let CpuLimiter::Enforced { backend, .. } = &cpu else {
        eprintln!("SKIPPED: {}", cpu.summary().unwrap_or_default());
        return;
    };
    let backend = backend.clone();
    lab.cpu = Some(cpu);
    lab.init().await;
    let (order, summary) = lab.backup(&lab.data(2)).await;
    assert_eq!(summary.files_new, 2, "{summary:?}");
    let leaf = backend.leaf_dir(order.task, order.attempt);
    assert!(!leaf.exists(), "{} removed", leaf.display());
}

#[tokio::test]
async fn check_succeeds() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let status = lab.report(&lab.order(TaskKind::Check, &lab.data(1))).await;
    assert!(
        matches!(&status, ReportStatus::Succeeded(s) if s.detail == RunDetail::Check),
        "{status:?}"
    );
}

/// A pack file grown by a disk or backend fault: `check` fails, not retried (the
/// repository needs an operator), and the task's error carries restic's own account of
/// the damage, so the operator sees which pack and what to do without logging in.
#[tokio::test]
async fn check_of_a_damaged_repository_fails_with_restics_account() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    lab.backup(&lab.data(3)).await;
    let pack = fs::read_dir(lab.repo().join("data"))
        .expect("data directory")
        .flat_map(|dir| fs::read_dir(dir.expect("an entry").path()).expect("a pack directory"))
        .map(|pack| pack.expect("a pack").path())
        .next()
        .expect("one pack");
    let mut bytes = fs::read(&pack).expect("the pack");
    bytes.extend_from_slice(b"garbage");
    fs::write(&pack, bytes).expect("the pack damaged");
    let name = pack.file_name().and_then(|n| n.to_str()).expect("a name");

    let status = lab.report(&lab.order(TaskKind::Check, &lab.data(1))).await;
    let ReportStatus::Failed(error) = &status else {
        panic!("{status:?}")
    };
    assert_eq!(error.class, ErrorClass::Permanent, "{status:?}");
    assert_eq!(error.exit_code, Some(1), "{status:?}");
    assert!(
        error
            .message
            .contains(&format!("pack {name}: unexpected file size")),
        "{status:?}"
    );
    assert!(
        error.message.contains("repository contains errors"),
        "{status:?}"
    );
    if lab.version >= crate::restic::ResticVersion::new(0, 18, 0) {
        assert!(
            error
                .message
                .contains(&format!("restic repair packs {name}")),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn prune_keeps_the_two_newest_of_four() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(2);
    let mut ids = Vec::new();
    for i in 0..4 {
        fs::write(data.join("changing"), format!("version {i}")).expect("data file");
        let (_, summary) = lab.backup(&data).await;
        ids.push(summary.snapshot_id.expect("a snapshot id"));
    }
    let status = lab.report(&lab.order(TaskKind::Prune, &data)).await;
    let ReportStatus::Succeeded(summary) = status else {
        panic!("{status:?}")
    };
    let RunDetail::Prune(pruned) = summary.detail else {
        panic!("{summary:?}")
    };
    assert_eq!((pruned.snapshots_kept, pruned.snapshots_removed), (2, 2));

    let left = lab.snapshots();
    assert_eq!(left.len(), 2, "{left:?}");
    for newest in &ids[2..] {
        assert!(
            left.iter().any(|s| s.has_id(newest)),
            "{newest} in {left:?}"
        );
    }
}

#[tokio::test]
async fn wrong_password_is_auth() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let mut order = lab.order(TaskKind::Backup, &lab.data(1));
    order.spec.repository.secret = "wrong".into();
    let status = lab.report(&order).await;
    assert_eq!(failed_class(&status), ErrorClass::Auth, "{status:?}");
}

#[tokio::test]
async fn unknown_secret_is_permanent_before_restic_runs() {
    let Some(lab) = Lab::new() else { return };
    let mut order = lab.order(TaskKind::Backup, &lab.data(1));
    order.spec.repository.secret = "nobody-configured-this".into();
    let status = lab.report(&order).await;
    assert_eq!(failed_class(&status), ErrorClass::Permanent, "{status:?}");
}

#[tokio::test]
async fn missing_repository_fails_or_is_created() {
    let Some(lab) = Lab::new() else { return };
    let data = lab.data(3);
    let mut order = lab.order(TaskKind::Backup, &data);
    let status = lab.report(&order).await;
    assert_eq!(
        failed_class(&status),
        ErrorClass::MissingRepository,
        "{status:?}"
    );
    assert!(!lab.repo().join("config").exists());

    order.spec.execution.init_if_missing = true;
    let status = lab.report(&order).await;
    assert!(
        matches!(&status, ReportStatus::Succeeded(s) if matches!(&s.detail, RunDetail::Backup(b) if b.files_new == 3)),
        "{status:?}"
    );
    assert!(lab.repo().join("config").exists());
    assert_eq!(lab.snapshots().len(), 1);
}

/// Nothing listens where the repository should be. restic 0.14 gives up by itself; 0.17
/// and later retry for 15 minutes, so the agent stops them after `unreachableAfterSecs`
/// (the lab's is [`lab::UNREACHABLE_IN_TESTS`]). Either way the task fails as `network`,
/// with the transport's error, long before its run timeout (60 s).
#[tokio::test]
async fn unreachable_repository_is_network_well_before_the_run_timeout() {
    let Some(lab) = Lab::new() else { return };
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    // A backup, and a check, which prints lines of its own before it opens the repository.
    for kind in [TaskKind::Backup, TaskKind::Check] {
        let mut order = lab.order(kind, &lab.data(1));
        order.spec.repository.url = format!("rest:http://127.0.0.1:{port}/repo");
        let started = Instant::now();
        let status = lab.report(&order).await;
        let ReportStatus::Failed(error) = &status else {
            panic!("{status:?}")
        };
        assert_eq!(error.class, ErrorClass::Network, "{kind:?}: {status:?}");
        assert!(error.message.contains("connection refused"), "{status:?}");
        if lab.version >= crate::restic::ResticVersion::new(0, 17, 0) {
            assert!(
                error.message.contains("could not be reached for 4 s"),
                "{kind:?}: {status:?}"
            );
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(60),
            "{kind:?} took {took:?}: the run timeout, not the watch"
        );
    }
}

#[tokio::test]
async fn run_timeout_stops_restic_and_reports_timeout() {
    let Some(mut lab) = Lab::new() else { return };
    lab.init().await;
    let mut order = lab.order(TaskKind::Backup, &lab.data(1));
    order.spec.repository.secret = lab.hanging_secret().into();
    order.spec.execution.run_timeout_secs = 1;
    let started = Instant::now();
    let status = lab.report(&order).await;
    assert_eq!(failed_class(&status), ErrorClass::Timeout, "{status:?}");
    let ReportStatus::Failed(error) = &status else {
        unreachable!()
    };
    if lab.version < crate::restic::ResticVersion::new(0, 17, 0) {
        // restic handled SIGINT itself (cleanup, then exit 130): no SIGKILL was needed.
        assert_eq!(error.exit_code, Some(130), "{status:?}");
    } else {
        // restic 0.18 stays blocked opening the password file after SIGINT (its cleanup
        // waits for the command to return): it is killed after the grace, no exit code.
        assert!(matches!(error.exit_code, Some(130) | None), "{status:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cancel_stops_restic_and_is_not_a_failure() {
    let Some(mut lab) = Lab::new() else { return };
    lab.init().await;
    let mut order = lab.order(TaskKind::Backup, &lab.data(1));
    order.spec.repository.secret = lab.hanging_secret().into();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    assert_eq!(lab.execute(&order, cancel).await, RunOutcome::Cancelled);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// `restic unlock` through the executor removes the lock of a restic killed with SIGKILL
/// (stale: made on this host by a process that is gone) and keeps a live restic's.
#[tokio::test]
async fn unlock_removes_a_dead_restics_lock_and_keeps_a_live_ones() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let mut dead = lab.holding_a_lock();
    dead.kill().expect("SIGKILL");
    dead.wait().expect("reaped");
    let stale = lab.locks();
    let mut live = lab.holding_a_lock();
    assert_eq!(lab.locks().len(), 2);

    let order = lab.order(TaskKind::Backup, &lab.data(1));
    let outcome = lab.unlock(&order).await;
    assert!(
        matches!(outcome, RunOutcome::Finished(ReportStatus::Succeeded(_))),
        "{outcome:?}"
    );
    let left = lab.locks();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!stale.contains(&left[0]), "the dead restic's lock is gone");

    let mut stdin = live.stdin.take().expect("piped");
    std::io::Write::write_all(&mut stdin, b"held data").expect("restic reads its stdin");
    drop(stdin);
    assert!(live.wait().expect("reaped").success());
    assert_eq!(lab.locks(), Vec::<String>::new());
}

#[tokio::test]
async fn unlock_with_the_wrong_password_is_auth() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let mut order = lab.order(TaskKind::Backup, &lab.data(1));
    order.spec.repository.secret = "wrong".into();
    let RunOutcome::Finished(status) = lab.unlock(&order).await else {
        panic!("not cancelled")
    };
    assert_eq!(failed_class(&status), ErrorClass::Auth, "{status:?}");
}

/// A program that ignores SIGINT is killed after the grace period.
#[tokio::test]
async fn sigint_ignored_means_sigkill_after_the_grace() {
    let inv = Invocation {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), "trap '' INT; exec sleep 30".into()],
        env: Vec::new(),
        nice: 0,
        io_class: IoClass::BestEffort { level: 4 },
    };
    let version = crate::restic::ResticVersion::new(0, 14, 0);
    let started = Instant::now();
    let timeout = Duration::from_millis(300);
    let grace = Duration::from_millis(300);
    let outcome = run_limited(
        &inv,
        TaskKind::Check,
        Limits {
            timeout,
            grace,
            unreachable_after: UNREACHABLE_AFTER,
            version: &version,
            leaf: None,
        },
        CancellationToken::new(),
    )
    .await;
    let RunOutcome::Finished(ReportStatus::Failed(error)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((error.class, error.exit_code), (ErrorClass::Timeout, None));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
