//! Restores against the real restic: deleted files come back byte for byte, a dry run
//! writes nothing and counts what a restore would do, the overwrite policies decide about
//! files the target has, restic's per-file errors are counted, and failures say why.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fleet_events::event::{
    ErrorClass, Overwrite, RestoreRequest, RestoreSummary, RunDetail, TaskRequest,
};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{ReportStatus, TaskOrder};

use super::lab::Lab;
use crate::executor::{Executed, RunOutcome};

/// Deterministic bytes that do not compress (so restic stores them in their own pack).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The data tree of these tests, in `lab`'s data directory.
struct Tree {
    data: PathBuf,
}

impl Tree {
    fn new(lab: &Lab) -> Self {
        let data = lab.dir.path().join("data");
        fs::create_dir_all(data.join("sub/deeper")).expect("data directories");
        fs::write(data.join("keep.txt"), "the same in every snapshot\n").expect("file");
        fs::write(data.join("changing.txt"), "version 1\n").expect("file");
        fs::write(data.join("gone.bin"), noise(20_000, 1)).expect("file");
        fs::write(data.join("sub/deeper/report.txt"), "quarterly numbers\n").expect("file");
        Self { data }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.data.join(rel)
    }

    /// The snapshot path of `rel`.
    fn snapshot_path(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    /// Where `rel` lands in `target`.
    fn in_target(&self, target: &Path, rel: &str) -> PathBuf {
        target.join(self.snapshot_path(rel).trim_start_matches('/'))
    }
}

fn restore_order(lab: &Lab, data: &Path) -> TaskOrder {
    lab.order(TaskKind::Restore, data)
}

fn request(snapshot: &str, include: &[String], target: &Path) -> RestoreRequest {
    RestoreRequest {
        snapshot: snapshot.to_owned(),
        include: include.to_vec(),
        target: target.to_string_lossy().into_owned(),
        dry_run: false,
        overwrite: Overwrite::Never,
    }
}

/// Runs the restore, which must succeed; its summary.
async fn restored(lab: &Lab, order: &TaskOrder, request: RestoreRequest) -> RestoreSummary {
    let Executed {
        outcome,
        retention,
        listing,
        ..
    } = lab
        .execute_request(order, &TaskRequest::Restore(request))
        .await;
    assert_eq!(
        (retention, listing),
        (None, Vec::new()),
        "a restore lists nothing"
    );
    let RunOutcome::Finished(ReportStatus::Succeeded(summary)) = outcome else {
        panic!("the restore failed: {outcome:?}")
    };
    assert_eq!(summary.kind, TaskKind::Restore);
    let RunDetail::Restore(restore) = summary.detail else {
        panic!("not a restore: {summary:?}")
    };
    restore
}

/// Runs the restore, which must fail; its error.
async fn restore_error(
    lab: &Lab,
    order: &TaskOrder,
    request: RestoreRequest,
) -> fleet_events::event::TaskError {
    match lab
        .execute_request(order, &TaskRequest::Restore(request))
        .await
        .outcome
    {
        RunOutcome::Finished(ReportStatus::Failed(error)) => error,
        other => panic!("not a failure: {other:?}"),
    }
}

fn counts(s: &RestoreSummary) -> (u64, u64, u64, u64) {
    (
        s.files_restored,
        s.bytes_restored,
        s.files_skipped,
        s.errors,
    )
}

/// What is in `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("a directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn mtime(path: &Path) -> SystemTime {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .expect("a modification time")
}

/// A full snapshot id from the short one a backup's summary gives (0.14).
fn full_id(lab: &Lab, short: &str) -> String {
    let snapshots = lab.snapshots();
    snapshots
        .iter()
        .find(|s| s.has_id(short))
        .map(|s| s.id.clone())
        .expect("the snapshot is listed")
}

#[tokio::test]
async fn deleted_files_come_back_byte_for_byte_and_a_dry_run_writes_nothing() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let tree = Tree::new(&lab);
    let gone = fs::read(tree.path("gone.bin")).expect("original");
    let report = fs::read(tree.path("sub/deeper/report.txt")).expect("original");
    let gone_mtime = mtime(&tree.path("gone.bin"));
    let (_, first) = lab.backup(&tree.data).await;
    let first = full_id(&lab, &first.snapshot_id.expect("an id"));
    fs::write(tree.path("changing.txt"), "version 2, longer\n").expect("change");
    fs::remove_file(tree.path("gone.bin")).expect("delete");
    fs::remove_dir_all(tree.path("sub")).expect("delete");
    lab.backup(&tree.data).await;

    let target = lab.dir.path().join("restored");
    let include = [tree.snapshot_path("gone.bin"), tree.snapshot_path("sub")];
    let order = restore_order(&lab, &tree.data);
    let dry = RestoreRequest {
        dry_run: true,
        ..request(&first, &include, &target)
    };
    let summary = restored(&lab, &order, dry).await;
    let bytes = (gone.len() + report.len()) as u64;
    assert_eq!(counts(&summary), (2, bytes, 0, 0), "{summary:?}");
    assert!(summary.dry_run && summary.error_samples.is_empty());
    assert_eq!(summary.snapshot, first);
    assert!(
        !target.exists(),
        "a dry run does not even create the target"
    );

    let summary = restored(&lab, &order, request(&first, &include, &target)).await;
    assert_eq!(counts(&summary), (2, bytes, 0, 0), "{summary:?}");
    assert!(!summary.dry_run);
    assert_eq!(
        fs::read(tree.in_target(&target, "gone.bin")).expect("restored"),
        gone
    );
    assert_eq!(
        fs::read(tree.in_target(&target, "sub/deeper/report.txt")).expect("restored"),
        report
    );
    assert_eq!(
        mtime(&tree.in_target(&target, "gone.bin")),
        gone_mtime,
        "restic's time kept"
    );
    assert!(
        !tree.in_target(&target, "keep.txt").exists(),
        "not included"
    );
    assert!(
        !tree.in_target(&target, "changing.txt").exists(),
        "not included"
    );
    let top = tree
        .snapshot_path("")
        .trim_start_matches('/')
        .split('/')
        .next()
        .map(str::to_owned);
    assert_eq!(
        names(&target),
        [top.expect("a first component")],
        "no staging left"
    );
}

#[tokio::test]
async fn overwrite_policies_decide_about_files_the_target_has() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let tree = Tree::new(&lab);
    let (_, snapshot) = lab.backup(&tree.data).await;
    let snapshot = full_id(&lab, &snapshot.snapshot_id.expect("an id"));
    let original = |rel: &str| fs::read(tree.path(rel)).expect("original");
    let target = lab.dir.path().join("target");
    let order = restore_order(&lab, &tree.data);
    let all = [tree.snapshot_path("")];
    let with = |overwrite, dry_run| RestoreRequest {
        overwrite,
        dry_run,
        ..request(&snapshot, &all, &target)
    };
    // A first restore fills the target: four files.
    let first = restored(&lab, &order, with(Overwrite::Never, false)).await;
    assert_eq!(
        (first.files_restored, first.files_skipped),
        (4, 0),
        "{first:?}"
    );

    // Local changes: one file's contents, one file's time only; one local file more.
    let changed = tree.in_target(&target, "changing.txt");
    fs::write(&changed, "edited on the machine\n").expect("edit");
    let touched = tree.in_target(&target, "keep.txt");
    let file = fs::File::options()
        .write(true)
        .open(&touched)
        .expect("open");
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .expect("touch");
    drop(file);
    let local = tree.in_target(&target, "local-only.txt");
    fs::write(&local, "mine").expect("local file");

    let dry = restored(&lab, &order, with(Overwrite::Never, true)).await;
    assert_eq!(counts(&dry), (0, 0, 4, 0), "{dry:?}");
    let never = restored(&lab, &order, with(Overwrite::Never, false)).await;
    assert_eq!(counts(&never), (0, 0, 4, 0), "{never:?}");
    assert_eq!(
        fs::read(&changed).expect("kept"),
        b"edited on the machine\n"
    );

    let changed_bytes = (original("changing.txt").len() + original("keep.txt").len()) as u64;
    let dry = restored(&lab, &order, with(Overwrite::IfChanged, true)).await;
    assert_eq!(counts(&dry), (2, changed_bytes, 2, 0), "{dry:?}");
    assert_eq!(
        fs::read(&changed).expect("untouched by a dry run"),
        b"edited on the machine\n"
    );
    let if_changed = restored(&lab, &order, with(Overwrite::IfChanged, false)).await;
    assert_eq!(
        counts(&if_changed),
        (2, changed_bytes, 2, 0),
        "{if_changed:?}"
    );
    assert_eq!(
        fs::read(&changed).expect("replaced"),
        original("changing.txt")
    );
    assert_eq!(
        mtime(&touched),
        mtime(&tree.path("keep.txt")),
        "its time is the snapshot's"
    );
    // Now the target matches the snapshot: nothing changed, nothing to replace.
    let again = restored(&lab, &order, with(Overwrite::IfChanged, false)).await;
    assert_eq!(counts(&again), (0, 0, 4, 0), "{again:?}");

    fs::write(&changed, "edited again\n").expect("edit");
    let always = restored(&lab, &order, with(Overwrite::Always, false)).await;
    let every_byte: u64 = [
        "keep.txt",
        "changing.txt",
        "gone.bin",
        "sub/deeper/report.txt",
    ]
    .iter()
    .map(|rel| original(rel).len() as u64)
    .sum();
    assert_eq!(counts(&always), (4, every_byte, 0, 0), "{always:?}");
    assert_eq!(
        fs::read(&changed).expect("replaced"),
        original("changing.txt")
    );
    assert_eq!(
        fs::read(&local).expect("a restore deletes nothing"),
        b"mine"
    );
}

#[tokio::test]
async fn a_directory_in_the_way_is_an_error_and_the_rest_is_restored() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let tree = Tree::new(&lab);
    let (_, snapshot) = lab.backup(&tree.data).await;
    let snapshot = full_id(&lab, &snapshot.snapshot_id.expect("an id"));
    let target = lab.dir.path().join("target");
    // Where the snapshot has a file and a directory, the target has the other kind.
    fs::create_dir_all(tree.in_target(&target, "keep.txt")).expect("a directory");
    fs::create_dir_all(tree.in_target(&target, "")).expect("data");
    fs::write(tree.in_target(&target, "sub"), "a file").expect("a file");
    let order = restore_order(&lab, &tree.data);
    let all = [tree.snapshot_path("")];
    for dry_run in [true, false] {
        let summary = restored(
            &lab,
            &order,
            RestoreRequest {
                dry_run,
                overwrite: Overwrite::Always,
                ..request(&snapshot, &all, &target)
            },
        )
        .await;
        assert_eq!(
            (
                summary.files_restored,
                summary.files_skipped,
                summary.errors
            ),
            (2, 0, 2),
            "dry {dry_run}: {summary:?}"
        );
        let samples = summary.error_samples.join("\n");
        assert!(
            samples.contains("keep.txt: exists in the target as a directory"),
            "{samples}"
        );
        assert!(
            samples.contains("sub: exists in the target and is not a directory"),
            "{samples}"
        );
    }
    assert!(
        tree.in_target(&target, "keep.txt").is_dir(),
        "never replaced"
    );
    assert_eq!(
        fs::read(tree.in_target(&target, "sub")).expect("kept"),
        b"a file"
    );
    assert!(tree.in_target(&target, "gone.bin").is_file());
}

/// restic cannot read one file's data (its pack was damaged): the others are restored,
/// and the errors are counted with restic's words.
#[tokio::test]
async fn restics_file_errors_are_counted_and_do_not_fail_the_restore() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let tree = Tree::new(&lab);
    lab.backup(&tree.data).await;
    let packs = |repo: &Path| -> Vec<PathBuf> {
        let mut all = Vec::new();
        for dir in fs::read_dir(repo.join("data")).expect("data").flatten() {
            all.extend(
                fs::read_dir(dir.path())
                    .expect("packs")
                    .flatten()
                    .map(|e| e.path()),
            );
        }
        all
    };
    let before = packs(&lab.repo());
    fs::write(tree.path("big.bin"), noise(1_000_000, 7)).expect("a big file");
    let (_, second) = lab.backup(&tree.data).await;
    let second = full_id(&lab, &second.snapshot_id.expect("an id"));
    let data_pack = packs(&lab.repo())
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("the big file's pack");
    let size = fs::metadata(&data_pack).expect("pack").len() as usize;
    let writable = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    fs::set_permissions(&data_pack, writable).expect("writable");
    fs::write(&data_pack, noise(size, 99)).expect("damage");

    let target = lab.dir.path().join("target");
    let order = restore_order(&lab, &tree.data);
    let summary = restored(&lab, &order, request(&second, &[], &target)).await;
    assert_eq!(summary.files_restored, 4, "{summary:?}");
    assert!(summary.errors >= 1, "{summary:?}");
    let big = tree.snapshot_path("big.bin");
    assert!(
        summary
            .error_samples
            .iter()
            .all(|s| s.starts_with(&format!("{big}: "))),
        "{:?}",
        summary.error_samples
    );
    assert!(!tree.in_target(&target, "big.bin").exists());
    assert_eq!(
        fs::read(tree.in_target(&target, "gone.bin")).expect("restored"),
        fs::read(tree.path("gone.bin")).expect("original")
    );
    assert_eq!(
        names(&target).len(),
        1,
        "no staging left: {:?}",
        names(&target)
    );
}

#[tokio::test]
async fn a_missing_snapshot_a_wrong_password_and_an_unknown_secret_fail_clearly() {
    let Some(lab) = Lab::new() else { return };
    lab.init().await;
    let tree = Tree::new(&lab);
    lab.backup(&tree.data).await;
    let target = lab.dir.path().join("target");
    let order = restore_order(&lab, &tree.data);
    let missing = "ab".repeat(32);
    for dry_run in [true, false] {
        let asked = RestoreRequest {
            dry_run,
            ..request(&missing, &[], &target)
        };
        let error = restore_error(&lab, &order, asked).await;
        assert_eq!(error.class, ErrorClass::Permanent, "{error:?}");
        assert!(
            error
                .message
                .starts_with(&format!("snapshot {missing} is not in the repository")),
            "dry {dry_run}: {error:?}"
        );
    }
    assert!(
        !target
            .join(crate::executor::staging_name(order.task))
            .exists()
    );

    let snapshot = lab.snapshots()[0].id.clone();
    let mut wrong = order.clone();
    wrong.spec.repository.secret = "wrong".into();
    let error = restore_error(&lab, &wrong, request(&snapshot, &[], &target)).await;
    assert_eq!(error.class, ErrorClass::Auth, "{error:?}");

    let mut unknown = order.clone();
    unknown.spec.repository.secret = "vault-of-another-agent".into();
    for asked in [
        TaskRequest::Restore(request(&snapshot, &[], &target)),
        TaskRequest::Refresh,
    ] {
        let mut order = unknown.clone();
        if asked == TaskRequest::Refresh {
            order.spec.kind = TaskKind::Refresh;
        }
        let RunOutcome::Finished(ReportStatus::Failed(error)) =
            lab.execute_request(&order, &asked).await.outcome
        else {
            panic!("{asked:?} without its secret succeeded")
        };
        assert_eq!(error.class, ErrorClass::Permanent, "{error:?}");
        assert!(
            error
                .message
                .contains("\"vault-of-another-agent\" is not configured on this agent"),
            "{error:?}"
        );
    }

    let relative = RestoreRequest {
        target: "relative/dir".into(),
        ..request(&snapshot, &[], &target)
    };
    let error = restore_error(&lab, &order, relative).await;
    assert_eq!(error.class, ErrorClass::Permanent, "{error:?}");
    assert!(error.message.contains("not an absolute path"), "{error:?}");
}
