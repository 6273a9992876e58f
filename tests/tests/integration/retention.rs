//! A backup policy's retention is applied after each of its backups, to its own snapshots
//! only: the real `fleet-agent` binary and real restic back up two policies into one
//! repository (same host, same paths: only the `policy:<id>` tag tells their snapshots
//! apart), one keeping the last 3, the other without retention. Afterwards restic lists
//! exactly the keeping policy's 3 newest snapshots and every one of the other's, and each
//! backup of the keeping policy has `task.retention_applied` (what forget kept and removed,
//! by id) between its start and its success. Real nats-server, the control plane in this
//! process.
//!
//! The agent binary is the one built beside this test binary (`cargo build -p fleet-agent`).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fleet_agent::restic::output::{Snapshot, parse_snapshots};
use fleet_control::serve::Service;
use fleet_events::event::{Event, RetentionOutcome, RunDetail, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, Retention};
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_tests::restic::Repo;
use tokio_util::sync::CancellationToken;

use crate::support::agent::{AgentProcess, SECRET, backup_spec};
use crate::support::{
    append_at, eventually, fleet, register, services, stop, system, task_events, tenant,
};

/// The keeping policy's backups, and how many it keeps.
const RUNS: usize = 5;
const KEEP: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_policy_keeping_3_of_5_runs_leaves_3_and_another_policys_snapshots_alone() {
    let f = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("file.txt"), "some content\n".repeat(50)).expect("data");
    let repo = Repo::init(dir.path(), "retention password");
    let agent = AgentId::generate();
    register(&f.store, agent, AgentSettings::default()).await;
    let shutdown = CancellationToken::new();
    let control = services(
        &f.store,
        &[Service::Dispatcher, Service::Intake, Service::Retry],
        &system(),
        &shutdown,
    );
    let config = agent_config(dir.path(), &f.server.url(), agent, &repo.password_file);
    let mut process = AgentProcess::start(&config, "agent");

    let keeping = Policy {
        id: PolicyId::generate(),
        spec: PolicySpec {
            retention: Retention {
                keep_last: Some(KEEP),
                ..Retention::default()
            },
            ..backup_spec(&repo, &data)
        },
    };
    let other = Policy {
        id: PolicyId::generate(),
        spec: PolicySpec {
            retention: Retention::default(),
            ..backup_spec(&repo, &data)
        },
    };
    // The other policy backs up before, between and after the keeping one's runs.
    let order = [
        &other, &keeping, &keeping, &other, &keeping, &keeping, &keeping, &other,
    ];
    let start = Utc::now();
    let mut runs: Vec<(PolicyId, TaskId, Vec<TaskEvent>)> = Vec::new();
    for (n, policy) in order.into_iter().enumerate() {
        let fire_at = start + chrono::TimeDelta::seconds(n as i64);
        let task = policy.schedule(&f.store, agent, fire_at).await;
        let events = succeeded(&f.store, task).await;
        runs.push((policy.id, task, events));
    }
    process.stop();
    stop(&shutdown, control).await;

    let snapshot_of = |events: &[TaskEvent]| match events.last() {
        Some(TaskEvent::Succeeded { summary, .. }) => match &summary.detail {
            RunDetail::Backup(backup) => backup.snapshot_id.clone().expect("a snapshot id"),
            detail => panic!("not a backup: {detail:?}"),
        },
        last => panic!("not a success: {last:?}"),
    };
    let mine: Vec<&(PolicyId, TaskId, Vec<TaskEvent>)> =
        runs.iter().filter(|r| r.0 == keeping.id).collect();
    let theirs: Vec<&(PolicyId, TaskId, Vec<TaskEvent>)> =
        runs.iter().filter(|r| r.0 == other.id).collect();
    assert_eq!(mine.len(), RUNS);
    let my_snapshots: Vec<String> = mine.iter().map(|r| snapshot_of(&r.2)).collect();
    let their_snapshots: Vec<String> = theirs.iter().map(|r| snapshot_of(&r.2)).collect();

    // The keeping policy's history: each backup tells its retention before its success,
    // the later ones what they removed (the oldest of the policy, by id).
    for (n, (_, task, events)) in mine.iter().enumerate() {
        let names: Vec<&str> = events.iter().map(|e| e.event_type().name()).collect();
        assert_eq!(
            names,
            [
                "task.scheduled",
                "task.dispatched",
                "task.acknowledged",
                "task.started",
                "task.retention_applied",
                "task.succeeded"
            ],
            "run {n} ({task})"
        );
        let Some(TaskEvent::RetentionApplied {
            attempt: 1,
            kept,
            removed,
            removed_ids,
            outcome: RetentionOutcome::Applied,
        }) = events.get(4)
        else {
            panic!("run {n}: the retention was applied: {events:#?}")
        };
        let kept_now = (n as u64 + 1).min(u64::from(KEEP));
        let removed_ids: Vec<String> = removed_ids.clone();
        let expected_removed: Vec<String> = match n.checked_sub(KEEP as usize) {
            Some(oldest) => vec![short(&my_snapshots[oldest])],
            None => Vec::new(),
        };
        assert_eq!(
            (*kept, *removed, &removed_ids),
            (kept_now, expected_removed.len() as u64, &expected_removed),
            "run {n} ({task})"
        );
    }
    // The other policy has no retention: no forget, no event.
    for (_, task, events) in &theirs {
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, TaskEvent::RetentionApplied { .. })),
            "task {task}: {events:#?}"
        );
    }

    let listed = parse_snapshots(&repo.snapshots_json()).expect("restic snapshots --json");
    let tagged = |policy: PolicyId| {
        let tag = format!("policy:{policy}");
        let of: Vec<&Snapshot> = listed.iter().filter(|s| s.tags.contains(&tag)).collect();
        of
    };
    let left_mine = tagged(keeping.id);
    assert_eq!(left_mine.len(), KEEP as usize, "{listed:#?}");
    for id in &my_snapshots[RUNS - KEEP as usize..] {
        assert!(left_mine.iter().any(|s| s.has_id(id)), "{id} kept");
    }
    let left_theirs = tagged(other.id);
    assert_eq!(left_theirs.len(), their_snapshots.len(), "{listed:#?}");
    for id in &their_snapshots {
        assert!(left_theirs.iter().any(|s| s.has_id(id)), "{id} untouched");
    }
    assert_eq!(listed.len(), KEEP as usize + their_snapshots.len());
}

/// A policy of the scenario: its id and spec.
struct Policy {
    id: PolicyId,
    spec: PolicySpec,
}

impl Policy {
    /// Schedules a task of this policy on `agent`, due at `fire_at`.
    async fn schedule(&self, store: &EventStore, agent: AgentId, fire_at: DateTime<Utc>) -> TaskId {
        let task = TaskId::for_fire(self.id, agent, fire_at);
        let event = TaskEvent::Scheduled {
            policy: self.id,
            agent,
            fire_at,
            run_at: fire_at,
            spec: Box::new(self.spec.clone()),
        };
        append_at(store, Event::Task { task, event }, Utc::now()).await;
        task
    }
}

/// Waits for `task` to succeed; its history.
async fn succeeded(store: &EventStore, task: TaskId) -> Vec<TaskEvent> {
    eventually("the backup to succeed", Duration::from_secs(60), || async {
        let events = task_events(store, task).await;
        match events.last() {
            Some(TaskEvent::Succeeded { .. }) => ControlFlow::Break(events),
            _ => ControlFlow::Continue(events),
        }
    })
    .await
}

/// restic's short id (0.14's backup summary has it; newer versions give the full id).
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// The agent's configuration file: identity, this server, the repository's password file.
fn agent_config(dir: &Path, nats: &str, agent: AgentId, password: &Path) -> PathBuf {
    let path = dir.join("agent.yaml");
    let yaml = format!(
        "natsUrl: {nats}\nstateDir: {state}\nagentId: {agent}\ntenant: {tenant}\n\
         hostname: retention-host\nheartbeatSecs: 1\nstopGraceSecs: 2\n\
         secrets:\n  {SECRET}:\n    passwordFile: {pw}\n",
        state = dir.join("state").display(),
        tenant = tenant(),
        pw = password.display(),
    );
    std::fs::write(&path, yaml).expect("agent config");
    path
}
