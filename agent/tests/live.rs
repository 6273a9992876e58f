//! The real `fleet-agent` binary seen by an operator's tools, with no control plane: a
//! backup slowed by the agent's upload limit publishes its live progress on
//! `fleet.agent.<id>.progress` (about one a second, rising, about its own attempt, all
//! before its success report), and the agent answers browse requests on
//! `fleet.agent.<id>.browse` with pages of a snapshot's directory, or why there is none,
//! also after the server restarted.
//! Real nats-server, real restic.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use fleet_events::browse::{BrowsePage, BrowseReply, BrowseRequest, EntryKind};
use fleet_events::codec::Wire;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{ErrorClass, TaskError};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::{PolicySpec, RepositoryRef, Retention, TaskKind};
use fleet_events::protocol::{
    AgentCommand, AgentReport, Command, Heartbeat, Progress, ReportStatus, TaskOrder,
};
use fleet_events::samples;
use fleet_events::subject::{AgentSubject, Channel};
use futures::StreamExt;

fn subject(agent: AgentId, channel: Channel) -> String {
    AgentSubject { agent, channel }.to_string()
}

/// What the scenario saw on the agent's subjects, in the order NATS delivered it.
#[derive(Debug)]
enum Seen {
    Progress(Progress, Instant),
    Report(ReportStatus),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backup_publishes_its_progress_about_once_a_second() {
    let (server, _store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let restic = fleet_tests::restic::Repo::init(dir.path(), "progress test");
    let data = dir.path().join("data");
    // restic reads the first ~55 MiB at once into packs waiting for upload, then as fast
    // as the limit lets them go: 160 MiB at 16 MiB/s reads for about 6 s.
    fleet_tests::restic::incompressible_data(&data, 160);
    let agent = AgentId::generate();
    let config = common::write_config(
        dir.path(),
        &server.url(),
        agent,
        "progress-host",
        &restic.password_file,
        "settings:\n  uploadKibS: 16384\nheartbeatSecs: 1\n",
    );
    let client = async_nats::connect(server.url()).await.expect("connect");
    // One subscription for progress and reports: NATS delivers them in the agent's order.
    let mut watch = client
        .subscribe(format!("fleet.agent.{agent}.>"))
        .await
        .expect("subscribed");
    client.flush().await.expect("flushed");
    let mut running = common::start_agent(&config);

    let spec = PolicySpec {
        kind: TaskKind::Backup,
        repository: RepositoryRef {
            url: restic.path.display().to_string(),
            secret: "repo".into(),
        },
        include: vec![data.display().to_string()],
        exclude: Vec::new(),
        retention: Retention::default(),
        ..samples::policy_spec()
    };
    let policy = PolicyId::generate();
    let order = TaskOrder {
        tenant: common::tenant(),
        task: TaskId::for_fire(policy, agent, chrono::Utc::now()),
        attempt: 1,
        policy,
        spec: Box::new(spec),
        dispatched_at: chrono::Utc::now(),
    };
    let command = AgentCommand::new(Command::Run(order.clone()));
    jetstream::new(client.clone())
        .publish(
            subject(agent, Channel::Tasks),
            command.to_wire().expect("encodes").into(),
        )
        .await
        .expect("sent")
        .await
        .expect("stored");

    let (progress_subject, reports, heartbeats) = (
        subject(agent, Channel::Progress),
        subject(agent, Channel::Reports),
        subject(agent, Channel::Heartbeat),
    );
    // Each heartbeat says the interval of this agent's configuration (`heartbeatSecs: 1`),
    // by which the control plane's lease judges its silence.
    let mut beats = 0;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut succeeded_at = None;
    // Until the success, and two seconds more: no progress may follow it.
    while succeeded_at.is_none_or(|at: Instant| at.elapsed() < Duration::from_secs(2)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(message) =
            tokio::time::timeout(left.min(Duration::from_secs(2)), watch.next()).await
        else {
            assert!(Instant::now() < deadline, "timed out; seen {seen:#?}");
            continue;
        };
        let message = message.expect("subscribed");
        if message.subject.as_str() == progress_subject {
            let progress = Progress::from_wire(&message.payload).expect("a progress message");
            seen.push(Seen::Progress(progress, Instant::now()));
        } else if message.subject.as_str() == reports {
            let report = AgentReport::from_wire(&message.payload).expect("a report");
            assert_eq!(report.task, order.task);
            if matches!(report.status, ReportStatus::Failed(_)) {
                panic!("the backup failed: {report:?}");
            }
            if matches!(report.status, ReportStatus::Succeeded(_)) {
                succeeded_at = Some(Instant::now());
            }
            seen.push(Seen::Report(report.status));
        } else if message.subject.as_str() == heartbeats {
            let beat = Heartbeat::from_wire(&message.payload).expect("a heartbeat");
            assert_eq!(beat.every_secs, 1, "the configured interval");
            beats += 1;
        }
    }
    assert!(beats > 0, "heartbeats were published");
    common::signal_group(&mut running, libc::SIGTERM);

    let success = seen
        .iter()
        .position(|s| matches!(s, Seen::Report(ReportStatus::Succeeded(_))))
        .expect("a success");
    let started = seen
        .iter()
        .position(|s| matches!(s, Seen::Report(ReportStatus::Started)))
        .expect("a start");
    let progress: Vec<(usize, &Progress, Instant)> = seen
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Seen::Progress(p, at) => Some((i, p, *at)),
            Seen::Report(_) => None,
        })
        .collect();
    let gaps: Vec<u128> = progress
        .windows(2)
        .map(|w| w[1].2.duration_since(w[0].2).as_millis())
        .collect();
    let last = progress.last().expect("progress was published");
    eprintln!(
        "{} progress messages, received at intervals (ms) {gaps:?}; done_bp {:?}; the last {} ms before the success report",
        progress.len(),
        progress.iter().map(|p| p.1.done_bp).collect::<Vec<_>>(),
        match &seen[success] {
            Seen::Report(_) => succeeded_at
                .map(|s| s.duration_since(last.2).as_millis())
                .unwrap_or_default(),
            Seen::Progress(..) => 0,
        }
    );
    assert!(progress.len() >= 4, "several progress messages: {seen:#?}");
    assert!(
        progress
            .iter()
            .all(|(i, _, _)| *i > started && *i < success),
        "all progress between the start and the success: {seen:#?}"
    );
    // About one a second: the agent lets a line 50 ms early pass; delivery adds jitter.
    assert!(
        gaps.iter().all(|&ms| ms >= 850),
        "faster than one a second: {gaps:?}"
    );
    for (_, p, _) in &progress {
        assert_eq!(
            (p.agent, &p.tenant, p.task, p.attempt, p.kind),
            (agent, &order.tenant, order.task, 1, TaskKind::Backup)
        );
        assert_eq!(p.schema, SCHEMA_VERSION);
    }
    for pair in progress.windows(2) {
        assert!(pair[1].1.done_bp >= pair[0].1.done_bp, "{progress:#?}");
        assert!(
            pair[1].1.bytes_done >= pair[0].1.bytes_done,
            "{progress:#?}"
        );
    }
    let (first, last) = (progress[0].1, last.1);
    assert!(
        last.done_bp > first.done_bp && last.bytes_done > first.bytes_done,
        "rising: {first:?} .. {last:?}"
    );
    assert_eq!(last.bytes_total, 160 << 20);
}

fn browse_request(url: &str, snapshot: &str, path: &str) -> BrowseRequest {
    BrowseRequest {
        schema: SCHEMA_VERSION,
        tenant: common::tenant(),
        policy: PolicyId::generate(),
        repository: RepositoryRef {
            url: url.to_owned(),
            secret: "repo".into(),
        },
        snapshot: snapshot.to_owned(),
        path: path.to_owned(),
        after: None,
        limit: 2,
    }
}

/// Asks the agent (retrying while it is not subscribed yet) and reads its answer.
async fn ask(client: &async_nats::Client, agent: AgentId, payload: Vec<u8>) -> BrowseReply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = async_nats::Request::new()
            .payload(payload.clone().into())
            .timeout(Some(Duration::from_secs(60)));
        match client
            .send_request(subject(agent, Channel::Browse), request)
            .await
        {
            Ok(message) => return BrowseReply::from_wire(&message.payload).expect("a reply"),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                assert!(Instant::now() < deadline, "the agent never subscribed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no answer: {e}"),
        }
    }
}

async fn page(client: &async_nats::Client, agent: AgentId, request: &BrowseRequest) -> BrowsePage {
    let reply = ask(client, agent, request.to_wire().expect("encodes")).await;
    reply.result.expect("a page")
}

async fn refused(client: &async_nats::Client, agent: AgentId, payload: Vec<u8>) -> TaskError {
    let reply = ask(client, agent, payload).await;
    reply.result.expect_err("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_browse_requests_with_pages_or_why_not() {
    let (mut server, _store) = common::nats().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let restic = fleet_tests::restic::Repo::init(dir.path(), "browse test");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).expect("data");
    for (name, body) in [("a.txt", "a"), ("b.txt", "bb"), ("c.txt", "ccc")] {
        std::fs::write(data.join(name), body).expect("a file");
    }
    std::fs::write(data.join("sub/inner"), "x").expect("a file");
    let out = restic.restic(&["backup", &data.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshots =
        fleet_agent::restic::output::parse_snapshots(&restic.snapshots_json()).expect("snapshots");
    let snapshot = snapshots[0].id.clone();
    let agent = AgentId::generate();
    let config = common::write_config(
        dir.path(),
        &server.url(),
        agent,
        "browse-host",
        &restic.password_file,
        "heartbeatSecs: 1\n",
    );
    let mut running = common::start_agent(&config);
    let client = async_nats::connect(server.url()).await.expect("connect");
    let url = restic.path.display().to_string();
    let dir_path = data.display().to_string();

    // Pages of two, each after the last one's `next`.
    let first = page(&client, agent, &browse_request(&url, &snapshot, &dir_path)).await;
    let names = |p: &BrowsePage| -> Vec<(String, EntryKind, Option<u64>)> {
        p.entries
            .iter()
            .map(|e| (e.name.clone(), e.kind, e.size))
            .collect()
    };
    assert_eq!(
        names(&first),
        [
            ("a.txt".into(), EntryKind::File, Some(1)),
            ("b.txt".into(), EntryKind::File, Some(2)),
        ]
    );
    assert_eq!(
        (first.path.as_str(), first.next.as_deref()),
        (dir_path.as_str(), Some("b.txt"))
    );
    let second = page(
        &client,
        agent,
        &BrowseRequest {
            after: first.next.clone(),
            ..browse_request(&url, &snapshot, &dir_path)
        },
    )
    .await;
    assert_eq!(
        names(&second),
        [
            ("c.txt".into(), EntryKind::File, Some(3)),
            ("sub".into(), EntryKind::Dir, None),
        ]
    );
    assert_eq!(second.next, None, "the last page");

    // Another tenant's request is refused as such; garbage is answered, not dropped.
    let other = BrowseRequest {
        tenant: TenantId::new("globex").expect("tenant"),
        ..browse_request(&url, &snapshot, &dir_path)
    };
    let error = refused(&client, agent, other.to_wire().expect("encodes")).await;
    assert_eq!(error.class, ErrorClass::Auth, "{error:?}");
    let error = refused(&client, agent, b"not a request".to_vec()).await;
    assert_eq!(error.class, ErrorClass::Permanent, "{error:?}");
    assert!(error.message.contains("not a browse request"), "{error:?}");

    // A secret the agent lacks is named; a snapshot not in the repository is permanent.
    let mut stranger = browse_request(&url, &snapshot, &dir_path);
    stranger.repository.secret = "not-on-this-agent".into();
    let error = refused(&client, agent, stranger.to_wire().expect("encodes")).await;
    assert_eq!(error.class, ErrorClass::Permanent, "{error:?}");
    assert!(error.message.contains("\"not-on-this-agent\""), "{error:?}");
    let missing = browse_request(&url, &"cd".repeat(32), &dir_path);
    let error = refused(&client, agent, missing.to_wire().expect("encodes")).await;
    assert_eq!(error.class, ErrorClass::Permanent, "{error:?}");
    assert!(
        error.message.contains("is not in the repository"),
        "{error:?}"
    );

    // After the server restarts, the agent (reconnected, subscribed again) still answers.
    server.restart().expect("nats-server restarts");
    let again = page(&client, agent, &browse_request(&url, &snapshot, &dir_path)).await;
    assert_eq!(again, first);
    common::signal_group(&mut running, libc::SIGTERM);
}
