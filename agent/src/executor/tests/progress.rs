//! Live progress against the real restic: a backup slowed by the upload limit offers
//! several messages, at most one a second, rising, about its own attempt; a restore offers
//! them from restic 0.16 on (`restore --json`), none before.

use fleet_events::event::{Overwrite, RestoreRequest, TaskRequest};
use fleet_events::ids::AgentId;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{Progress, ReportStatus};
use tokio::sync::mpsc;

use super::lab::Lab;
use crate::executor::{ProgressSink, RunOutcome};

fn drain(queue: &mut mpsc::Receiver<Progress>) -> Vec<Progress> {
    let mut seen = Vec::new();
    while let Ok(progress) = queue.try_recv() {
        seen.push(progress);
    }
    seen
}

/// Checks what every run's progress must be; prints the intervals seen.
fn check_series(what: &str, seen: &[Progress]) {
    let gaps: Vec<i64> = seen
        .windows(2)
        .map(|w| (w[1].at - w[0].at).num_milliseconds())
        .collect();
    eprintln!(
        "{what}: {} progress messages, intervals (ms) {gaps:?}",
        seen.len()
    );
    // `at` is the wall clock, the throttle's the monotonic one: allow a little skew.
    assert!(
        gaps.iter().all(|&ms| ms >= 950),
        "{what}: faster than one a second: {gaps:?}"
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1].bytes_done >= pair[0].bytes_done,
            "{what}: {seen:#?}"
        );
        assert!(pair[1].done_bp >= pair[0].done_bp, "{what}: {seen:#?}");
    }
}

#[tokio::test]
async fn a_slow_backup_reports_progress_once_a_second_and_a_restore_from_0_16() {
    let Some(mut lab) = Lab::new() else { return };
    let agent = AgentId::generate();
    let (sink, mut queue) = ProgressSink::new(agent, 64);
    lab.progress = Some(sink);
    // restic 0.14 reads the first ~55 MiB at once into packs waiting for upload, then as
    // fast as they go: 96 MiB at 12 MiB/s reads for about 3 s, uploads for about 8.
    lab.settings.upload_kib_s = Some(12 * 1024);
    lab.settings.download_kib_s = Some(24 * 1024);
    lab.init().await;
    let data = lab.dir.path().join("big");
    fleet_tests::restic::incompressible_data(&data, 96);
    assert!(drain(&mut queue).is_empty(), "init reports no progress");

    let (order, summary) = lab.backup(&data).await;
    let seen = drain(&mut queue);
    check_series("backup", &seen);
    assert!(seen.len() >= 3, "several messages: {seen:#?}");
    for progress in &seen {
        assert_eq!(
            (
                progress.agent,
                progress.task,
                progress.attempt,
                progress.kind
            ),
            (agent, order.task, order.attempt, TaskKind::Backup)
        );
        assert_eq!(progress.tenant, order.tenant);
        assert!(progress.done_bp <= 10_000 && progress.files_done <= progress.files_total);
    }
    let last = seen.last().expect("one");
    assert!(
        last.bytes_done > 0 && last.bytes_total >= last.bytes_done,
        "{last:?}"
    );
    assert!(summary.total_bytes_processed >= 96 << 20, "{summary:?}");

    let mut restore = lab.order(TaskKind::Restore, &data);
    restore.task = fleet_events::ids::TaskId::generate();
    let request = RestoreRequest {
        snapshot: lab.snapshots()[0].id.clone(),
        include: Vec::new(),
        target: lab.dir.path().join("restored").display().to_string(),
        dry_run: false,
        overwrite: Overwrite::Never,
    };
    let executed = lab
        .execute_request(&restore, &TaskRequest::Restore(request))
        .await;
    assert!(
        matches!(
            executed.outcome,
            RunOutcome::Finished(ReportStatus::Succeeded(_))
        ),
        "{executed:?}"
    );
    let seen = drain(&mut queue);
    check_series("restore", &seen);
    if lab.version.has_restore_json() {
        assert!(
            !seen.is_empty(),
            "restic {} prints status lines",
            lab.version
        );
        assert!(
            seen.iter()
                .all(|p| p.task == restore.task && p.kind == TaskKind::Restore)
        );
    } else {
        assert!(
            seen.is_empty(),
            "restic {} has no restore --json",
            lab.version
        );
    }
}
