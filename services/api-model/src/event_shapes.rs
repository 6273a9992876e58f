//! The JSON of what events carry (a run's summary, a snapshot, an operator's request), one
//! shape wherever it is shown: the read models' answers and the event log's JSON.

use fleet_events::event::{RunDetail, RunSummary, SnapshotInfo, TaskRequest};
use serde_json::{Value, json};

/// A run's summary as JSON: camelCase, the kind's details under `backup` or `prune`.
pub fn run_summary(summary: &RunSummary) -> Value {
    let mut value = json!({ "kind": summary.kind, "durationMs": summary.duration_ms });
    match &summary.detail {
        RunDetail::Backup(b) => {
            value["backup"] = json!({
                "snapshotId": b.snapshot_id,
                "filesNew": b.files_new,
                "filesChanged": b.files_changed,
                "filesUnmodified": b.files_unmodified,
                "dirsNew": b.dirs_new,
                "dirsChanged": b.dirs_changed,
                "dirsUnmodified": b.dirs_unmodified,
                "dataBlobs": b.data_blobs,
                "treeBlobs": b.tree_blobs,
                "dataAddedBytes": b.data_added_bytes,
                "totalFilesProcessed": b.total_files_processed,
                "totalBytesProcessed": b.total_bytes_processed,
                "unreadableFiles": b.unreadable_files,
            });
        }
        RunDetail::Check => {}
        RunDetail::Prune(p) => {
            value["prune"] = json!({
                "snapshotsKept": p.snapshots_kept,
                "snapshotsRemoved": p.snapshots_removed,
            });
        }
        RunDetail::Restore(r) => {
            value["restore"] = json!({
                "snapshotId": r.snapshot,
                "dryRun": r.dry_run,
                "filesRestored": r.files_restored,
                "bytesRestored": r.bytes_restored,
                "filesSkipped": r.files_skipped,
                "errors": r.errors,
                "errorSamples": r.error_samples,
            });
        }
        RunDetail::Refresh(r) => {
            value["refresh"] = json!({ "snapshots": r.snapshots });
        }
    }
    value
}

/// A snapshot as JSON: camelCase, RFC 3339 time, the fleet's own tags read out.
pub fn snapshot_json(s: &SnapshotInfo) -> Value {
    json!({
        "id": s.id,
        "shortId": s.short_id(),
        "time": s.time,
        "host": s.host,
        "paths": s.paths,
        "morePaths": s.more_paths,
        "tags": s.tags,
        "sizeBytes": s.size_bytes,
        "files": s.files,
        "policy": s.tag("policy"),
        "task": s.tag("task"),
    })
}

/// An operator's request (restore, refresh) as JSON.
pub fn request_json(request: &TaskRequest) -> Value {
    match request {
        TaskRequest::Restore(r) => json!({
            "kind": "restore",
            "snapshotId": r.snapshot,
            "include": r.include,
            "target": r.target,
            "dryRun": r.dry_run,
            "overwrite": r.overwrite.as_str(),
        }),
        TaskRequest::Refresh => json!({ "kind": "refresh" }),
    }
}
