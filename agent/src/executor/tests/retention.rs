//! The retention after a backup against the real restic: only the policy's own snapshots
//! are forgotten, what was removed is reported, and a failed forget fails no backup.

use std::fs;

use fleet_events::event::{ErrorClass, RetentionOutcome, RunDetail};
use fleet_events::ids::PolicyId;
use fleet_events::policy::{Retention, TaskKind};
use fleet_events::protocol::{ReportStatus, TaskOrder};
use tokio_util::sync::CancellationToken;

use super::lab::Lab;
use crate::executor::{Executed, RunOutcome};

/// A backup of `data` by `policy` keeping the last `keep` (no retention for `None`).
fn backup(lab: &Lab, data: &std::path::Path, policy: PolicyId, keep: Option<u32>) -> TaskOrder {
    let mut order = lab.order(TaskKind::Backup, data);
    order.policy = policy;
    order.spec.retention = Retention {
        keep_last: keep,
        ..Retention::default()
    };
    order
}

/// Runs `order`, which must succeed; its snapshot's id and the retention report.
async fn run(lab: &Lab, order: &TaskOrder) -> (String, Option<ReportStatus>) {
    let Executed {
        outcome, retention, ..
    } = lab.execute_all(order, CancellationToken::new()).await;
    let RunOutcome::Finished(ReportStatus::Succeeded(summary)) = outcome else {
        panic!("the backup failed: {outcome:?}")
    };
    let RunDetail::Backup(backup) = summary.detail else {
        panic!("not a backup: {summary:?}")
    };
    (backup.snapshot_id.expect("a snapshot"), retention)
}

fn applied(kept: u64, removed: u64, removed_ids: Vec<String>) -> Option<ReportStatus> {
    Some(ReportStatus::RetentionApplied {
        kept,
        removed,
        removed_ids,
        outcome: RetentionOutcome::Applied,
    })
}

/// restic's short id of a snapshot id (0.14 prints short ids in a backup's summary, newer
/// versions full ones).
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

#[tokio::test]
async fn a_backup_forgets_only_its_own_policys_older_snapshots() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(2);
    let (mine, other) = (PolicyId::generate(), PolicyId::generate());
    let mut my_ids: Vec<String> = Vec::new();
    let mut other_ids = Vec::new();
    // Same host, same paths: only the policy tag tells the two policies' snapshots apart.
    for (n, keep_other) in [(0, None), (1, Some(5)), (2, None)] {
        fs::write(data.join("changing"), format!("version {n}")).expect("data file");
        let (id, retention) = run(&lab, &backup(&lab, &data, mine, Some(2))).await;
        let expected = match n {
            0 => applied(1, 0, vec![]),
            1 => applied(2, 0, vec![]),
            _ => applied(2, 1, vec![short(&my_ids[0])]),
        };
        assert_eq!(retention, expected, "backup {n} of the policy keeping 2");
        my_ids.push(id);
        // The other policy keeps 5 when it has retention: its forget leaves mine alone too.
        let (id, retention) = run(&lab, &backup(&lab, &data, other, keep_other)).await;
        match keep_other {
            Some(_) => assert_eq!(retention, applied(2, 0, vec![]), "its first and second"),
            None => assert_eq!(retention, None, "no retention, no forget"),
        }
        other_ids.push(id);
    }
    let left = lab.snapshots();
    assert_eq!(left.len(), 5, "{left:?}");
    for id in my_ids[1..].iter().chain(&other_ids) {
        assert!(left.iter().any(|s| s.has_id(id)), "{id} in {left:?}");
    }
    assert!(!left.iter().any(|s| s.has_id(&my_ids[0])), "{left:?}");
}

/// A partial backup (exit 3: a file could not be read) made a snapshot: the retention
/// applies after it too.
#[tokio::test]
async fn a_partial_backup_applies_the_retention_too() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(1);
    let mut partial = backup(&lab, &data, PolicyId::generate(), Some(1));
    partial.spec.include.push("/proc/self/mem".into());
    let mut first = None;
    for n in 0..2 {
        let Executed {
            outcome, retention, ..
        } = lab.execute_all(&partial, CancellationToken::new()).await;
        let RunOutcome::Finished(ReportStatus::Succeeded(summary)) = outcome else {
            panic!("{outcome:?}")
        };
        let RunDetail::Backup(backup) = summary.detail else {
            panic!("{summary:?}")
        };
        assert_eq!(backup.unreadable_files, 1, "{backup:?}");
        let expected = match n {
            0 => applied(1, 0, vec![]),
            _ => applied(1, 1, first.iter().map(|id: &String| short(id)).collect()),
        };
        assert_eq!(retention, expected, "partial backup {n}");
        first = backup.snapshot_id;
    }
}

/// Another restic's lock (a backup running meanwhile) makes forget fail: the backup still
/// succeeded, and the retention report says why it was not applied.
#[tokio::test]
async fn a_failed_forget_fails_no_backup() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(1);
    let policy = PolicyId::generate();
    run(&lab, &backup(&lab, &data, policy, Some(1))).await;
    let mut holder = lab.holding_a_lock();
    let (_, retention) = run(&lab, &backup(&lab, &data, policy, Some(1))).await;
    let Some(ReportStatus::RetentionApplied {
        removed: 0,
        outcome: RetentionOutcome::Failed(error),
        ..
    }) = &retention
    else {
        panic!("a failed retention: {retention:?}")
    };
    assert_eq!(error.class, ErrorClass::Lock, "{error:?}");
    assert!(
        error.message.contains("locked"),
        "restic's words: {error:?}"
    );
    let mut stdin = holder.stdin.take().expect("piped");
    std::io::Write::write_all(&mut stdin, b"held data").expect("restic reads its stdin");
    drop(stdin);
    assert!(holder.wait().expect("reaped").success());
    assert_eq!(
        lab.snapshots().len(),
        3,
        "both backups and the lock holder's"
    );
}
