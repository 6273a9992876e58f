//! The event endpoints over real HTTP against a real nats-server, with the projector behind
//! the API: a task's history in order (also inside `GET /v1/tasks/{id}`), the tenant's log
//! by time, another tenant's objects 404, bad tokens and filters refused, and the live
//! stream: only the caller's tenant, ids = stream sequences, resumed after `Last-Event-ID`,
//! ended when the token is revoked, kept alive while idle.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_control::tenant;
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, ErrorClass, Event, Role, RunDetail, RunSummary, TaskError};
use fleet_events::event::{BackupSummary, TaskEvent};
use fleet_events::ids::{AgentId, TaskId, TenantId, TokenId};
use fleet_events::policy::TaskKind;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::http::get;
use crate::support::sse::{self, Read};
use crate::support::{Fleet, append, eventually, fleet, register, schedule, spawn_service};
use crate::support::{stop, system};

/// How long a scenario waits for something it expects over HTTP.
const WAIT: Duration = Duration::from_secs(20);

/// A server, the projector and the API, the tenants `acme` and `other` with tokens.
struct Scenario {
    fleet: Fleet,
    addr: SocketAddr,
    shutdown: CancellationToken,
    services: Vec<JoinHandle<()>>,
    admin: String,
    reader: String,
    reader_id: TokenId,
    stranger: String,
    _dir: tempfile::TempDir,
}

impl Scenario {
    async fn start() -> Self {
        let fleet = fleet().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (listener, addr) = crate::support::api_listener();
        let config = ServiceConfig {
            projections_dir: Some(dir.path().to_owned()),
            history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
            ..system()
        };
        let shutdown = CancellationToken::new();
        let services = vec![
            spawn_service(&fleet.store, Service::Projector, config, &shutdown),
            crate::support::spawn_api(
                &fleet.store,
                fleet_control::clock::Clock::System,
                listener,
                Default::default(),
                &shutdown,
            ),
        ];
        let store = &fleet.store;
        for (tenant, name) in [(&acme(), "Acme"), (&other(), "Other")] {
            tenant::create(store, tenant, name, Utc::now())
                .await
                .expect("tenant");
        }
        let issue = |tenant: TenantId, role, label| async move {
            tenant::issue(store, &tenant, role, label, Utc::now())
                .await
                .expect("token")
        };
        let admin = issue(acme(), Role::Admin, "ops").await;
        let reader = issue(acme(), Role::ReadOnly, "dash").await;
        let stranger = issue(other(), Role::Admin, "ops").await;
        let scenario = Scenario {
            addr,
            shutdown,
            services,
            admin: admin.text.expose().to_owned(),
            reader: reader.text.expose().to_owned(),
            reader_id: reader.id,
            stranger: stranger.text.expose().to_owned(),
            _dir: dir,
            fleet,
        };
        let healthy = || async {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => ControlFlow::Break(()),
                Err(e) => ControlFlow::Continue(e.to_string()),
            }
        };
        eventually("the API to listen", WAIT, healthy).await;
        scenario
    }

    fn store(&self) -> &EventStore {
        &self.fleet.store
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = get(self.addr, path, Some(token)).await;
        (response.status, response.body)
    }

    async fn stop(self) {
        stop(&self.shutdown, self.services).await;
    }
}

fn acme() -> TenantId {
    crate::support::tenant()
}

fn other() -> TenantId {
    TenantId::new("other").expect("slug")
}

/// `agent` came online in `tenant` at `at`, with `n` in its version so events differ.
fn came_online(tenant: TenantId, agent: AgentId, n: u32, at: DateTime<Utc>) -> Envelope {
    let event = AgentEvent::CameOnline {
        agent_version: format!("0.1.{n}"),
        restic_version: "0.14.0".into(),
    };
    Envelope::new(tenant, at, Event::Agent { agent, event })
}

/// Appends `envelope` and returns its stream sequence.
async fn put(store: &EventStore, envelope: Envelope) -> u64 {
    let msg_id = envelope.id.to_string();
    let append = Append {
        envelope: &envelope,
        msg_id: &msg_id,
        expect: Expect::Any,
    };
    store.append(append).await.expect("stored").seq
}

fn events(body: &Value) -> &Vec<Value> {
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {body}"))
}

fn field<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().map(|e| &e[name]).collect()
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

async fn task_event(store: &EventStore, task: TaskId, event: TaskEvent) {
    append(store, Event::Task { task, event }).await;
}

#[tokio::test]
async fn a_task_history_reads_in_order_with_types_and_summaries() {
    let scenario = Scenario::start().await;
    let store = scenario.store();
    let agent = AgentId::generate();
    register(store, agent, AgentSettings::default()).await;
    let fire_at = Utc.with_ymd_and_hms(2030, 5, 6, 12, 0, 0).unwrap();
    let task = schedule(store, agent, samples::policy_spec(), fire_at).await;
    let due = Utc.with_ymd_and_hms(2030, 5, 6, 12, 3, 4).unwrap();
    let success = RunSummary {
        kind: TaskKind::Backup,
        duration_ms: 2_000,
        detail: RunDetail::Backup(BackupSummary {
            snapshot_id: Some("abc123".into()),
            total_files_processed: 10,
            ..BackupSummary::default()
        }),
    };
    for event in [
        TaskEvent::Dispatched { agent, attempt: 1 },
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Network, "connection refused", None),
        },
        TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: due,
            delay_ms: 30_000,
        },
        TaskEvent::RetryDue,
        TaskEvent::Dispatched { agent, attempt: 2 },
        TaskEvent::Started { attempt: 2 },
        TaskEvent::Succeeded {
            attempt: 2,
            summary: success,
        },
    ] {
        task_event(store, task, event).await;
    }

    let path = format!("/v1/events?task={task}");
    let (status, body) = scenario.get(&path, &scenario.reader).await;
    assert_eq!(status, 200, "{body}");
    let history = events(&body);
    assert_eq!(
        field(history, "type"),
        [
            "task.scheduled",
            "task.dispatched",
            "task.acknowledged",
            "task.started",
            "task.failed",
            "task.retry_scheduled",
            "task.retry_due",
            "task.dispatched",
            "task.started",
            "task.succeeded",
        ]
    );
    let stored = store
        .history(&fleet_events::subject::EventSubject {
            tenant: acme(),
            aggregate: fleet_events::subject::AggregateId::Task(task),
        })
        .await
        .expect("history");
    let stored_seqs: Vec<u64> = stored.events.iter().map(|s| s.seq).collect();
    assert_eq!(
        seqs(history),
        stored_seqs,
        "in log order, seq = stream sequence"
    );
    let ids: Vec<Value> = stored
        .events
        .iter()
        .map(|s| Value::from(s.envelope.id.to_string()))
        .collect();
    let listed_ids: Vec<Value> = field(history, "id").into_iter().cloned().collect();
    assert_eq!(listed_ids, ids);
    let spec_name = &samples::policy_spec().name;
    assert_eq!(
        history[0]["summary"],
        format!("backup {spec_name:?} scheduled on agent {agent} for 2030-05-06 12:00Z"),
        "times on another day than the event's show their date"
    );
    assert_eq!(
        history[4]["summary"],
        "attempt 1 failed (network): connection refused"
    );
    assert_eq!(
        history[5]["summary"].as_str().expect("summary"),
        "retry 1 due at 2030-05-06 12:03:04Z in 30 s"
    );
    assert!(
        history[9]["summary"]
            .as_str()
            .expect("summary")
            .starts_with("attempt 2 succeeded in 2 s: snapshot abc123"),
        "{}",
        history[9]["summary"]
    );
    for event in history {
        assert_eq!(event["tenant"], "acme");
        assert_eq!(event["aggregate"]["kind"], "task");
        assert_eq!(event["aggregate"]["id"], task.to_string());
        let occurred = event["occurredAt"].as_str().expect("time");
        assert!(DateTime::parse_from_rfc3339(occurred).is_ok(), "{occurred}");
    }
    assert_eq!(history[0]["data"]["fireAt"], "2030-05-06T12:00:00Z");
    assert_eq!(history[0]["data"]["agent"], agent.to_string());
    assert_eq!(history[4]["data"]["error"]["class"], "network");
    assert_eq!(history[5]["data"]["delayMs"], 30_000);
    assert_eq!(
        history[9]["data"]["summary"]["backup"]["snapshotId"],
        "abc123"
    );

    // The same history inside the task's view, once the projector has it.
    let task_path = format!("/v1/tasks/{task}");
    let view = eventually("the task to succeed in the read model", WAIT, || async {
        match scenario.get(&task_path, &scenario.admin).await {
            (200, view) if view["status"] == "succeeded" => ControlFlow::Break(view),
            other => ControlFlow::Continue(other),
        }
    })
    .await;
    assert_eq!(view["id"], task.to_string());
    assert_eq!(view["attempt"], 2);
    assert_eq!(&view["events"], &body["events"]);

    // A time window and a limit on one aggregate.
    let (status, limited) = scenario
        .get(&format!("{path}&limit=3"), &scenario.admin)
        .await;
    assert_eq!(status, 200);
    assert_eq!(seqs(events(&limited)), stored_seqs[..3]);

    // Another tenant's token: no such task, and none of its events.
    for foreign in [&path, &task_path] {
        let (status, body) = scenario.get(foreign, &scenario.stranger).await;
        assert_eq!(status, 404, "{foreign}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body.get("events"), None);
        assert!(!body.to_string().contains("task.scheduled"), "{body}");
    }
    let (status, body) = scenario
        .get(
            &format!("/v1/events?agent={}", AgentId::generate()),
            &scenario.admin,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["message"], "no such agent");

    // Two aggregate filters, a bad id, a limit too high: 400 with the reason.
    for (bad, reason) in [
        (format!("{path}&agent={agent}"), "at most one"),
        ("/v1/events?task=nope".to_owned(), "not a task id"),
        ("/v1/events?limit=10001".to_owned(), "limit"),
    ] {
        let (status, body) = scenario.get(&bad, &scenario.admin).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{bad}: {message}");
    }

    // No token, a bad token: 401, for the listing and the stream alike.
    for token in [None, Some("rft1.acme.nope")] {
        let response = get(scenario.addr, &path, token).await;
        assert_eq!(response.status, 401, "{token:?}: {:?}", response.body);
        assert_eq!(response.body["error"]["code"], "unauthorized");
        let stream = sse::open(scenario.addr, "/v1/events/stream", token, None).await;
        assert_eq!(stream.status, 401, "{token:?}");
        assert_eq!(stream.body["error"]["code"], "unauthorized");
    }
    scenario.stop().await;
}

#[tokio::test]
async fn the_tenant_log_is_listed_by_time_and_only_the_callers() {
    let scenario = Scenario::start().await;
    let store = scenario.store();
    let agent = AgentId::generate();
    let base = Utc.with_ymd_and_hms(2001, 2, 3, 4, 5, 0).unwrap();
    let at = |secs: i64| base + chrono::Duration::seconds(secs);
    let mut acme_seqs = Vec::new();
    for n in 0..5 {
        acme_seqs.push(put(store, came_online(acme(), agent, n, at(i64::from(n)))).await);
        // The other tenant's event at the same moment, in between in the log.
        put(
            store,
            came_online(other(), agent, 100 + n, at(i64::from(n))),
        )
        .await;
    }

    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let window = format!(
        "/v1/events?since={}&until={}",
        rfc3339(at(1)),
        rfc3339(at(3))
    );
    let (status, body) = scenario.get(&window, &scenario.reader).await;
    assert_eq!(status, 200, "{body}");
    let listed = events(&body);
    assert_eq!(
        seqs(listed),
        acme_seqs[1..3],
        "since included, until excluded"
    );
    assert_eq!(
        field(listed, "summary"),
        [
            "came online (agent 0.1.1, restic 0.14.0)",
            "came online (agent 0.1.2, restic 0.14.0)"
        ]
    );
    assert_eq!(listed[0]["occurredAt"], "2001-02-03T04:05:01Z");
    assert_eq!(listed[0]["data"]["agentVersion"], "0.1.1");
    assert_eq!(listed[0]["aggregate"]["kind"], "agent");

    // The whole tenant: its own creation and tokens, then the agent events; nothing else.
    let (status, body) = scenario.get("/v1/events", &scenario.admin).await;
    assert_eq!(status, 200);
    let all = events(&body);
    let types = field(all, "type");
    assert_eq!(
        types[..4],
        [
            "tenant.created",
            "tenant.token_issued",
            "tenant.token_issued",
            "agent.came_online"
        ]
    );
    assert_eq!(seqs(&all[3..]), acme_seqs);
    assert!(all.iter().all(|e| e["tenant"] == "acme"), "{body}");
    let listed_seqs = seqs(all);
    assert!(
        listed_seqs.windows(2).all(|w| w[0] < w[1]),
        "{listed_seqs:?}"
    );
    let issued = &all[1];
    assert_eq!(issued["data"]["role"], "admin");
    assert_eq!(issued["data"]["label"], "ops");
    assert!(
        !body.to_string().contains("sha256"),
        "a token's hash is never shown"
    );

    // The first events of the log, in order, up to the limit.
    let (status, body) = scenario.get("/v1/events?limit=2", &scenario.admin).await;
    assert_eq!(status, 200);
    assert_eq!(seqs(events(&body)), listed_seqs[..2]);

    // The other tenant sees only its own.
    let (status, body) = scenario.get("/v1/events", &scenario.stranger).await;
    assert_eq!(status, 200);
    let theirs = events(&body);
    assert_eq!(
        theirs.len(),
        1 + 1 + 5,
        "created, one token, five agent events"
    );
    assert!(theirs.iter().all(|e| e["tenant"] == "other"), "{body}");
    scenario.stop().await;
}

#[tokio::test]
async fn the_stream_shows_only_the_tenants_new_events_and_resumes_after_last_event_id() {
    let scenario = Scenario::start().await;
    let store = scenario.store();
    let agent = AgentId::generate();
    let before = put(store, came_online(acme(), agent, 0, Utc::now())).await;

    let mut stream = sse::open(
        scenario.addr,
        "/v1/events/stream",
        Some(&scenario.reader),
        None,
    )
    .await;
    assert_eq!(stream.status, 200, "{}", stream.body);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let mut mine = Vec::new();
    for n in 1..=3 {
        mine.push(put(store, came_online(acme(), agent, n, Utc::now())).await);
        put(store, came_online(other(), agent, 100 + n, Utc::now())).await;
    }
    let frames = stream.events(3, WAIT).await;
    let ids: Vec<Option<String>> = frames.iter().map(|f| f.id.clone()).collect();
    let expected: Vec<Option<String>> = mine.iter().map(|s| Some(s.to_string())).collect();
    assert_eq!(
        ids, expected,
        "from now on, only acme's, in order, ids = seqs"
    );
    assert!(mine[0] > before);
    for (frame, (n, seq)) in frames.iter().zip((1..).zip(&mine)) {
        assert_eq!(frame.event.as_deref(), Some("agent.came_online"));
        let event = frame.json();
        assert_eq!(event["seq"], *seq);
        assert_eq!(event["tenant"], "acme");
        assert_eq!(event["type"], "agent.came_online");
        assert_eq!(event["data"]["agentVersion"], format!("0.1.{n}"));
        assert_eq!(
            event["summary"],
            format!("came online (agent 0.1.{n}, restic 0.14.0)")
        );
    }
    match stream.next(Duration::from_millis(500)).await {
        Read::TimedOut => {}
        other => panic!("nothing else is acme's, yet: {other:?}"),
    }
    drop(stream);

    // Reconnecting after the first: the rest, then what comes next, live.
    let mut resumed = sse::open(
        scenario.addr,
        "/v1/events/stream",
        Some(&scenario.admin),
        Some(mine[0]),
    )
    .await;
    assert_eq!(resumed.status, 200);
    let replayed = resumed.events(2, WAIT).await;
    let replayed: Vec<Option<String>> = replayed.iter().map(|f| f.id.clone()).collect();
    assert_eq!(replayed, expected[1..]);
    let live = put(store, came_online(acme(), agent, 4, Utc::now())).await;
    let next = resumed.events(1, WAIT).await;
    assert_eq!(
        next.first().and_then(|f| f.id.clone()),
        Some(live.to_string())
    );
    drop(resumed);
    scenario.stop().await;
}

#[tokio::test]
async fn a_revoked_token_ends_its_stream() {
    let scenario = Scenario::start().await;
    let store = scenario.store();
    let open = |token: String| {
        let addr = scenario.addr;
        async move { sse::open(addr, "/v1/events/stream", Some(&token), None).await }
    };
    let mut reader = open(scenario.reader.clone()).await;
    let mut admin = open(scenario.admin.clone()).await;
    assert_eq!((reader.status, admin.status), (200, 200));

    tenant::revoke(store, &acme(), scenario.reader_id, Utc::now())
        .await
        .expect("revoked");
    let agent = AgentId::generate();
    let after = put(store, came_online(acme(), agent, 1, Utc::now())).await;

    match reader.next(WAIT).await {
        Read::Ended => {}
        other => panic!("the revoked token's stream goes on: {other:?}"),
    }
    let seen = admin.events(2, WAIT).await;
    let types: Vec<Option<&str>> = seen.iter().map(|f| f.event.as_deref()).collect();
    assert_eq!(
        types,
        [Some("tenant.token_revoked"), Some("agent.came_online")]
    );
    assert_eq!(seen[1].id, Some(after.to_string()));
    assert_eq!(
        seen[0].json()["data"]["token"],
        scenario.reader_id.to_string()
    );
    let refused = open(scenario.reader.clone()).await;
    assert_eq!(refused.status, 401);
    drop((reader, admin, refused));
    scenario.stop().await;
}

#[tokio::test]
async fn an_idle_stream_sends_keepalive_comments() {
    let scenario = Scenario::start().await;
    let mut stream = sse::open(
        scenario.addr,
        "/v1/events/stream",
        Some(&scenario.reader),
        None,
    )
    .await;
    assert_eq!(stream.status, 200);
    match stream.next(Duration::from_secs(20)).await {
        Read::Frame(frame) => {
            assert_eq!(frame.comments, ["keepalive"]);
            assert_eq!((frame.id, frame.event), (None, None));
        }
        other => panic!("no keep-alive within 20 s: {other:?}"),
    }
    drop(stream);
    scenario.stop().await;
}

#[tokio::test]
async fn shutting_down_ends_open_streams() {
    let scenario = Scenario::start().await;
    let path = "/v1/events/stream";
    let mut stream = sse::open(scenario.addr, path, Some(&scenario.reader), None).await;
    assert_eq!(stream.status, 200);
    let stopping = tokio::time::timeout(Duration::from_secs(10), scenario.stop());
    assert!(
        stopping.await.is_ok(),
        "the API waits for a streaming client to leave"
    );
    match stream.next(WAIT).await {
        Read::Ended => {}
        other => panic!("the stream outlives the API: {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_goes_on_across_a_restart_of_nats_server() {
    let mut scenario = Scenario::start().await;
    let agent = AgentId::generate();
    let mut stream = sse::open(
        scenario.addr,
        "/v1/events/stream",
        Some(&scenario.reader),
        None,
    )
    .await;
    assert_eq!(stream.status, 200, "{}", stream.body);
    let first = put(scenario.store(), came_online(acme(), agent, 1, Utc::now())).await;
    let seen = stream.events(1, WAIT).await;
    assert_eq!(seen[0].id, Some(first.to_string()));

    // The server restarts under the open stream (same store, same port).
    scenario
        .fleet
        .server
        .restart()
        .expect("restart nats-server");
    // One envelope, one msg id: a try stored but not acknowledged is not stored twice.
    let envelope = came_online(acme(), agent, 2, Utc::now());
    let msg_id = envelope.id.to_string();
    let again = eventually("an append after the restart", WAIT, || async {
        let append = Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::Any,
        };
        match scenario.store().append(append).await {
            Ok(stored) => ControlFlow::Break(stored.seq),
            Err(e) => ControlFlow::Continue(e.to_string()),
        }
    })
    .await;

    // The stream's subscription is reopened where it stopped: the next event arrives.
    let seen = stream.events(1, WAIT).await;
    assert_eq!(seen[0].id, Some(again.to_string()), "{seen:?}");
    drop(stream);
    scenario.stop().await;
}
