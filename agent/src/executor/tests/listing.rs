//! Snapshot listings against the real restic: a refresh lists every snapshot, the fleet's
//! and those made by hand; backups (after their retention) and prunes list too; a failed
//! listing fails no backup.

use std::fs;

use fleet_events::event::{
    ErrorClass, RefreshSummary, RetentionOutcome, RunDetail, SnapshotListing, TaskRequest,
};
use fleet_events::ids::RepoId;
use fleet_events::policy::{Retention, TaskKind};
use fleet_events::protocol::{ReportStatus, TaskOrder};
use fleet_events::samples;
use tokio_util::sync::CancellationToken;

use super::lab::{HOST, Lab};
use crate::executor::{Executed, RunOutcome, SecretSource};

/// The listing's one part, checked to be about the lab's repository.
fn only_part(lab: &Lab, listing: &[ReportStatus]) -> SnapshotListing {
    let [ReportStatus::SnapshotsListed { repo, listing }] = listing else {
        panic!("one part: {listing:?}")
    };
    let url = lab.repo().to_string_lossy().into_owned();
    assert_eq!(*repo, RepoId::for_url(&url));
    assert_eq!((listing.part, listing.parts), (0, 1));
    assert_eq!((&listing.after, &listing.through), (&None, &None));
    listing.clone()
}

fn refresh_order(lab: &Lab) -> TaskOrder {
    lab.order(TaskKind::Refresh, &lab.dir.path().join("data"))
}

#[tokio::test]
async fn a_refresh_lists_the_fleets_snapshots_and_those_made_by_hand() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let order = refresh_order(&lab);
    let empty = lab.execute_request(&order, &TaskRequest::Refresh).await;
    assert!(
        matches!(&empty.outcome, RunOutcome::Finished(ReportStatus::Succeeded(s)) if s.detail == RunDetail::Refresh(RefreshSummary { snapshots: 0 })),
        "{empty:?}"
    );
    assert!(only_part(&lab, &empty.listing).snapshots.is_empty());

    let data = lab.data(2);
    let (backup, _) = lab.backup(&data).await;
    let other = lab.dir.path().join("by-hand");
    fs::create_dir_all(&other).expect("a directory");
    fs::write(other.join("notes.txt"), "made without the fleet").expect("a file");
    let by_hand = lab.hand_backup(&other);

    let Executed {
        outcome,
        retention,
        listing,
        ..
    } = lab.execute_request(&order, &TaskRequest::Refresh).await;
    assert_eq!(retention, None);
    let RunOutcome::Finished(ReportStatus::Succeeded(summary)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (summary.kind, summary.detail),
        (
            TaskKind::Refresh,
            RunDetail::Refresh(RefreshSummary { snapshots: 2 })
        )
    );
    let part = only_part(&lab, &listing);
    let [fleets, hand] = &part.snapshots[..] else {
        panic!("two snapshots: {part:?}")
    };
    assert!(fleets.time <= hand.time, "oldest first");
    assert_eq!(
        fleets.tag("policy"),
        Some(backup.policy.to_string().as_str())
    );
    assert_eq!(fleets.tag("task"), Some(backup.task.to_string().as_str()));
    assert_eq!(fleets.host, HOST);
    assert_eq!(fleets.paths, [data.to_string_lossy()]);
    assert_eq!(hand.id, by_hand);
    assert!(hand.tags.is_empty(), "{hand:?}");
    assert_eq!(hand.paths, [other.to_string_lossy()]);
    assert_ne!(hand.host, HOST, "restic's own host name");
}

#[tokio::test]
async fn backups_list_after_their_retention_and_prunes_after_pruning() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let data = lab.data(1);
    let mut ids = Vec::new();
    for n in 0..2 {
        fs::write(data.join("changing"), format!("version {n}")).expect("data");
        let mut order = lab.order(TaskKind::Backup, &data);
        order.spec.retention = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let Executed {
            outcome,
            retention,
            listing,
            ..
        } = lab.execute_all(&order, CancellationToken::new()).await;
        assert!(
            matches!(outcome, RunOutcome::Finished(ReportStatus::Succeeded(_))),
            "{outcome:?}"
        );
        let removed = u64::from(n > 0);
        assert!(
            matches!(retention, Some(ReportStatus::RetentionApplied { removed: r, outcome: RetentionOutcome::Applied, .. }) if r == removed),
            "{retention:?}"
        );
        let part = only_part(&lab, &listing);
        assert_eq!(part.snapshots.len(), 1, "listed after the forget: {part:?}");
        assert_eq!(
            part.snapshots[0].tag("task"),
            Some(order.task.to_string().as_str())
        );
        ids.push(part.snapshots[0].id.clone());
    }
    // Three by hand (another host): the lab's prune keeps the last two of each host and
    // paths, so it removes the oldest of these and keeps the fleet's.
    let by_hand: Vec<String> = (0..3).map(|_| lab.hand_backup(&data)).collect();
    let prune = lab.order(TaskKind::Prune, &data);
    let executed = lab.execute_all(&prune, CancellationToken::new()).await;
    assert!(
        matches!(&executed.outcome, RunOutcome::Finished(ReportStatus::Succeeded(s)) if matches!(&s.detail, RunDetail::Prune(p) if p.snapshots_removed == 1)),
        "{executed:?}"
    );
    let part = only_part(&lab, &executed.listing);
    let mut listed: Vec<&str> = part.snapshots.iter().map(|s| s.id.as_str()).collect();
    listed.sort_unstable();
    let mut kept = vec![ids[1].as_str(), by_hand[1].as_str(), by_hand[2].as_str()];
    kept.sort_unstable();
    assert_eq!(listed, kept, "listed after pruning");

    // A check changes nothing: it lists nothing.
    let check = lab
        .execute_all(&lab.order(TaskKind::Check, &data), CancellationToken::new())
        .await;
    assert!(check.listing.is_empty());
}

/// The password command answers once (for the backup) and then fails: the listing after
/// the backup fails, and the backup still succeeds, with no listing.
#[tokio::test]
async fn a_failed_listing_fails_no_backup() {
    let Some(mut lab) = Lab::new() else { return };
    lab.init().await;
    let counter = lab.dir.path().join("asked");
    let command = format!(
        "sh -c 'if [ -e {0} ]; then echo no more >&2; exit 1; fi; touch {0}; echo {1}'",
        counter.display(),
        super::lab::PASSWORD
    );
    lab.secrets
        .insert("once".into(), SecretSource::Command(command));
    let mut order = lab.order(TaskKind::Backup, &lab.data(1));
    order.spec.repository.secret = "once".into();
    let Executed {
        outcome,
        retention,
        listing,
        ..
    } = lab.execute_all(&order, CancellationToken::new()).await;
    assert!(
        matches!(outcome, RunOutcome::Finished(ReportStatus::Succeeded(_))),
        "{outcome:?}"
    );
    assert_eq!((retention, listing), (None, Vec::new()));
    assert!(counter.exists(), "the backup asked for the password");
    assert_eq!(lab.snapshots().len(), 1);
}

#[tokio::test]
async fn a_refresh_with_the_wrong_password_is_auth_and_lists_nothing() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let mut order = refresh_order(&lab);
    order.spec.repository.secret = "wrong".into();
    let executed = lab.execute_request(&order, &TaskRequest::Refresh).await;
    let RunOutcome::Finished(ReportStatus::Failed(error)) = &executed.outcome else {
        panic!("{executed:?}")
    };
    assert_eq!(error.class, ErrorClass::Auth, "{error:?}");
    assert!(executed.listing.is_empty());
    // A refresh asked with a restore's request (or none) is refused before restic runs.
    let mut odd = refresh_order(&lab);
    odd.spec.kind = TaskKind::Refresh;
    let restore = TaskRequest::Restore(samples::restore_request());
    let executed = lab.execute_request(&odd, &restore).await;
    assert!(
        matches!(&executed.outcome, RunOutcome::Finished(ReportStatus::Failed(e)) if e.class == ErrorClass::Permanent && e.message.contains("a refresh task came with a restore request")),
        "{executed:?}"
    );
}
