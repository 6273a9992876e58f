//! The real `fleet-agent` binary given tasks an operator asked for, straight on its task
//! subject (no control plane): a refresh sends its listing before its success, a restore
//! brings a deleted file back, a restore whose secret the agent lacks fails naming it.
//! The reports are read from the agent's reports subject in the order it sent them. Real
//! nats-server, real restic.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use fleet_events::codec::Wire;
use fleet_events::event::{
    ErrorClass, Overwrite, RefreshSummary, RestoreRequest, RunDetail, TaskRequest,
};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId};
use fleet_events::policy::{PolicySpec, RepositoryRef, TaskKind};
use fleet_events::protocol::{AgentCommand, AgentReport, Command, ReportStatus, TaskOrder};
use fleet_events::samples;
use fleet_events::streams;
use fleet_events::subject::{AgentSubject, Channel};
use futures::StreamExt;

fn order(agent: AgentId, kind: TaskKind, repo: &str, secret: &str) -> TaskOrder {
    let spec = PolicySpec {
        kind,
        repository: RepositoryRef {
            url: repo.into(),
            secret: secret.into(),
        },
        ..samples::policy_spec()
    };
    TaskOrder {
        tenant: common::tenant(),
        task: TaskId::for_fire(PolicyId::generate(), agent, chrono::Utc::now()),
        attempt: 1,
        policy: PolicyId::generate(),
        spec: Box::new(spec),
        dispatched_at: chrono::Utc::now(),
    }
}

/// Reports of each task (added to `seen`) until every task in `tasks` has its final one
/// or `until` says so.
async fn reports_until(
    js: &jetstream::Context,
    agent: AgentId,
    seen: &mut HashMap<TaskId, Vec<ReportStatus>>,
    until: impl Fn(&HashMap<TaskId, Vec<ReportStatus>>) -> bool,
) {
    let subject = AgentSubject {
        agent,
        channel: Channel::Reports,
    }
    .to_string();
    let stream = js.get_stream(streams::INTAKE).await.expect("intake stream");
    let consumer = stream
        .get_or_create_consumer(
            "scenario",
            pull::Config {
                durable_name: Some("scenario".into()),
                filter_subject: subject,
                ..Default::default()
            },
        )
        .await
        .expect("a consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !until(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, messages.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; reports so far: {seen:#?}"))
            .expect("a message")
            .expect("readable");
        let report = AgentReport::from_wire(&message.payload).expect("a report");
        message.double_ack().await.expect("acked");
        seen.entry(report.task).or_default().push(report.status);
    }
}

/// Reports of each task until every task in `tasks` has its final one.
async fn reports_until_final(
    js: &jetstream::Context,
    agent: AgentId,
    tasks: &[TaskId],
) -> HashMap<TaskId, Vec<ReportStatus>> {
    let mut seen = HashMap::new();
    let done = |seen: &HashMap<TaskId, Vec<ReportStatus>>| {
        tasks.iter().all(|t| {
            seen.get(t).is_some_and(|s| {
                s.iter()
                    .any(|r| matches!(r, ReportStatus::Succeeded(_) | ReportStatus::Failed(_)))
            })
        })
    };
    reports_until(js, agent, &mut seen, done).await;
    seen
}

/// Puts `order` with `request` on the agent's task subject.
async fn send(js: &jetstream::Context, agent: AgentId, order: &TaskOrder, request: TaskRequest) {
    let subject = AgentSubject {
        agent,
        channel: Channel::Tasks,
    };
    let command = AgentCommand::new(Command::RunRequested {
        order: order.clone(),
        request,
    });
    let payload = command.to_wire().expect("encodes");
    js.publish(subject.to_string(), payload.into())
        .await
        .expect("published")
        .await
        .expect("stored");
}

fn names(statuses: &[ReportStatus]) -> Vec<&'static str> {
    statuses.iter().map(ReportStatus::name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_restores_and_refreshes_report_in_order() {
    let (server, _store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let restic = fleet_tests::restic::Repo::init(dir.path(), "requested test");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    let original = b"the file an operator wants back\n".repeat(100);
    std::fs::write(data.join("wanted.txt"), &original).expect("a file");
    let data_str = data.display().to_string();
    let out = restic.restic(&["backup", "--json", &data_str]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(data.join("wanted.txt")).expect("deleted");
    let snapshots =
        fleet_agent::restic::output::parse_snapshots(&restic.snapshots_json()).expect("snapshots");
    let snapshot = snapshots[0].id.clone();

    let agent = AgentId::generate();
    let config = common::write_config(
        dir.path(),
        &server.url(),
        agent,
        "requested-host",
        &restic.password_file,
        "heartbeatSecs: 1\n",
    );
    let mut running = common::start_agent(&config);

    let url = restic.path.display().to_string();
    let refresh = order(agent, TaskKind::Refresh, &url, "repo");
    let target = dir.path().join("restored");
    let restore = order(agent, TaskKind::Restore, &url, "repo");
    let request = RestoreRequest {
        snapshot: snapshot.clone(),
        include: vec![format!("{data_str}/wanted.txt")],
        target: target.display().to_string(),
        dry_run: false,
        overwrite: Overwrite::Never,
    };
    let stranger = order(agent, TaskKind::Restore, &url, "not-on-this-agent");
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    for (order, request) in [
        (&refresh, TaskRequest::Refresh),
        (&restore, TaskRequest::Restore(request.clone())),
        (&stranger, TaskRequest::Restore(request.clone())),
    ] {
        send(&js, agent, order, request).await;
    }

    let reports =
        reports_until_final(&js, agent, &[refresh.task, restore.task, stranger.task]).await;
    common::signal_group(&mut running, libc::SIGTERM);

    let refreshed = &reports[&refresh.task];
    assert_eq!(
        names(refreshed),
        ["acknowledged", "started", "snapshots_listed", "succeeded"]
    );
    let ReportStatus::SnapshotsListed { repo, listing } = &refreshed[2] else {
        panic!("{refreshed:?}")
    };
    assert_eq!(*repo, RepoId::for_url(&url));
    assert_eq!(
        (listing.part, listing.parts, listing.snapshots.len()),
        (0, 1, 1)
    );
    assert_eq!(listing.snapshots[0].id, snapshot);
    assert!(
        matches!(&refreshed[3], ReportStatus::Succeeded(s) if s.detail == RunDetail::Refresh(RefreshSummary { snapshots: 1 })),
        "{refreshed:?}"
    );

    let restored = &reports[&restore.task];
    assert_eq!(names(restored), ["acknowledged", "started", "succeeded"]);
    let ReportStatus::Succeeded(summary) = &restored[2] else {
        panic!("{restored:?}")
    };
    let RunDetail::Restore(restore_summary) = &summary.detail else {
        panic!("{summary:?}")
    };
    assert_eq!(
        (
            restore_summary.files_restored,
            restore_summary.bytes_restored,
            restore_summary.errors
        ),
        (1, original.len() as u64, 0)
    );
    let back = target
        .join(data_str.trim_start_matches('/'))
        .join("wanted.txt");
    assert_eq!(std::fs::read(&back).expect("restored"), original);

    let refused = &reports[&stranger.task];
    assert_eq!(names(refused), ["acknowledged", "started", "failed"]);
    let ReportStatus::Failed(error) = &refused[2] else {
        panic!("{refused:?}")
    };
    assert_eq!(error.class, ErrorClass::Permanent);
    assert!(error.message.contains("\"not-on-this-agent\""), "{error:?}");
}

/// A restore accepted but waiting for the agent's only slot when the agent is killed runs
/// after the restart with its request (kept with the attempt in the agent's state), after
/// the unlock the killed run calls for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_restore_runs_after_a_restart_with_its_request() {
    let (server, _store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let restic = fleet_tests::restic::Repo::init(dir.path(), "restart test");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::write(data.join("wanted.txt"), "kept across a crash\n").expect("a file");
    let data_str = data.display().to_string();
    let out = restic.restic(&["backup", &data_str]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshots =
        fleet_agent::restic::output::parse_snapshots(&restic.snapshots_json()).expect("snapshots");

    let agent = AgentId::generate();
    // `slow` never answers in time: its refresh holds the only slot.
    let extra = "  slow:\n    passwordCommand: sleep 120\nsettings:\n  maxConcurrent: 1\nheartbeatSecs: 1\n";
    let config = common::write_config(
        dir.path(),
        &server.url(),
        agent,
        "restart-host",
        &restic.password_file,
        extra,
    );
    let mut first = common::start_agent(&config);
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    let url = restic.path.display().to_string();
    let slow = order(agent, TaskKind::Refresh, &url, "slow");
    let restore = order(agent, TaskKind::Restore, &url, "repo");
    let target = dir.path().join("restored");
    let request = RestoreRequest {
        snapshot: snapshots[0].id.clone(),
        include: Vec::new(),
        target: target.display().to_string(),
        dry_run: false,
        overwrite: Overwrite::Never,
    };
    send(&js, agent, &slow, TaskRequest::Refresh).await;
    let mut seen = HashMap::new();
    let has = |seen: &HashMap<TaskId, Vec<ReportStatus>>, task: TaskId, name: &str| {
        seen.get(&task)
            .is_some_and(|s: &Vec<ReportStatus>| s.iter().any(|r| r.name() == name))
    };
    reports_until(&js, agent, &mut seen, |s| has(s, slow.task, "started")).await;
    send(&js, agent, &restore, TaskRequest::Restore(request)).await;
    reports_until(&js, agent, &mut seen, |s| {
        has(s, restore.task, "acknowledged")
    })
    .await;
    common::signal_group(&mut first, libc::SIGKILL);
    assert!(!target.exists(), "the restore waited for the slot");

    let mut second = common::start_agent(&config);
    reports_until(&js, agent, &mut seen, |s| {
        has(s, slow.task, "interrupted") && has(s, restore.task, "succeeded")
    })
    .await;
    common::signal_group(&mut second, libc::SIGTERM);
    assert_eq!(
        names(&seen[&slow.task]),
        ["acknowledged", "started", "interrupted"]
    );
    assert_eq!(
        names(&seen[&restore.task]),
        ["acknowledged", "unlock_ran", "started", "succeeded"]
    );
    let back = target
        .join(data_str.trim_start_matches('/'))
        .join("wanted.txt");
    assert_eq!(
        std::fs::read_to_string(&back).expect("restored"),
        "kept across a crash\n"
    );
}
