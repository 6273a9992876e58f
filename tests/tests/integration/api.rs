//! The HTTP API over real HTTP against a real nats-server, with the projector behind it:
//! bearer tokens decide the tenant and the role, another tenant's objects are 404, a
//! revoked token stops working at once, bad ids are 400; every endpoint the OpenAPI
//! document names is routed and answers as documented, and none of them gives another
//! tenant's token anything of a tenant's objects; repeated failed authentications from
//! one client are answered ever later, while its valid token is still answered.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleet_control::api::ThrottlePolicy;
use fleet_control::tenant;
use fleet_events::enroll::TokenText;
use fleet_events::event::{
    AssignmentEvent, BackupSummary, ErrorClass, Event, Message, NotificationEvent, RepoEvent, Role,
    RunDetail, RunSummary, SnapshotInfo, TaskError, TaskEvent,
};
use fleet_events::ids::{
    AgentId, AssignmentId, EventId, NotificationId, PolicyId, RepoId, RuleId, TaskId, TenantId,
};
use fleet_events::policy::TaskKind;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_events::subject;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::http::{Response, call, call_with, get};
use crate::support::openapi::assert_documented;
use crate::support::sse;
use crate::support::{
    TwoTenants, append, eventually, fleet, log, register, schedule, serve_api, serve_api_with,
    stop, two_tenants, unthrottled,
};

#[tokio::test]
async fn tokens_scope_every_read_to_their_tenant() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let served = serve_api(store);
    let (addr, shutdown, services) = (served.addr, served.shutdown.clone(), served.services);

    let TwoTenants {
        acme,
        admin,
        reader,
        enroll,
        stranger,
        ..
    } = two_tenants(store).await;
    let agent = AgentId::generate();
    register(store, agent, AgentSettings::default()).await;

    let path = format!("/v1/agents/{agent}");
    let seen = eventually(
        "the agent through the API",
        Duration::from_secs(20),
        || async {
            let response = get(addr, &path, Some(admin.text.expose())).await;
            match response.status {
                200 => ControlFlow::Break(response.body),
                _ => ControlFlow::Continue(response),
            }
        },
    )
    .await;
    assert_eq!(seen["id"], agent.to_string());
    assert_eq!(seen["saturated"], false);
    assert_eq!(seen["pendingRetries"], 0);

    let listed = get(addr, "/v1/agents", Some(reader.text.expose())).await;
    assert_eq!(listed.status, 200, "a read-only token reads");
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));

    // Another tenant's token: the agent does not exist for it, its list is empty.
    let foreign = get(addr, &path, Some(stranger.text.expose())).await;
    assert_eq!(foreign.status, 404, "{:?}", foreign.body);
    let foreign_list = get(addr, "/v1/agents", Some(stranger.text.expose())).await;
    assert_eq!(foreign_list.body, serde_json::json!([]));

    // No token, a garbled one: 401 with a reason.
    for token in [None, Some("rft1.acme.nope")] {
        let refused = get(addr, "/v1/agents", token).await;
        assert_eq!(refused.status, 401, "{token:?}: {:?}", refused.body);
        assert_eq!(refused.body["error"]["code"], "unauthorized");
    }
    // An enrollment token is known, only not allowed: 403, saying what it is for.
    let enrolling = get(addr, "/v1/agents", Some(enroll.text.expose())).await;
    assert_eq!(enrolling.status, 403, "{:?}", enrolling.body);
    assert_eq!(enrolling.body["error"]["code"], "forbidden");
    assert!(
        enrolling.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("enrollment token only registers agents")),
        "{:?}",
        enrolling.body
    );

    // Bad input is 400 with the problem named; an unknown endpoint is 404.
    let bad_id = get(addr, "/v1/agents/not-a-uuid", Some(admin.text.expose())).await;
    assert_eq!(bad_id.status, 400);
    let bad_state = get(addr, "/v1/tasks?state=sleeping", Some(admin.text.expose())).await;
    assert_eq!(bad_state.status, 400, "{:?}", bad_state.body);
    assert!(
        bad_state.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("state")
    );
    // A query string that does not parse, or a method a path does not take: JSON errors.
    let bad_since = get(addr, "/v1/runs?since=yesterday", Some(admin.text.expose())).await;
    assert_eq!(bad_since.status, 400);
    assert_eq!(
        bad_since.body["error"]["code"], "bad_request",
        "{:?}",
        bad_since.body
    );
    let wrong_method = call(addr, "PUT", "/v1/agents", Some(admin.text.expose()), None).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.body["error"]["code"], "method_not_allowed");
    assert_eq!(
        get(addr, "/v1/nothing", Some(admin.text.expose()))
            .await
            .status,
        404
    );

    for endpoint in [
        "/v1/tasks",
        "/v1/runs",
        "/v1/policies",
        "/v1/repositories",
        "/v1/summary",
    ] {
        let response = get(addr, endpoint, Some(admin.text.expose())).await;
        assert_eq!(response.status, 200, "{endpoint}: {:?}", response.body);
    }
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
    assert_eq!(get(addr, "/readyz", None).await.status, 200);

    // Revoking a token takes effect on the next request.
    tenant::revoke(store, &acme, reader.id, Utc::now())
        .await
        .expect("revoked");
    assert_eq!(
        get(addr, "/v1/agents", Some(reader.text.expose()))
            .await
            .status,
        401
    );
    stop(&shutdown, services).await;
}

#[tokio::test]
async fn repeated_bad_tokens_are_answered_late_but_a_valid_token_is_not_held_back() {
    let fleet = fleet().await;
    let api = start(&fleet.store, ThrottlePolicy::default()).await;
    let (addr, token) = (api.addr, Some(api.token.as_str()));
    // Well-formed, of the scenario's tenant, never issued.
    let guess = TokenText::from_secret(&crate::support::tenant(), &[7; 32]);
    let guess = Some(guess.expose());

    // The first five failures from this client are free (their timing is not asserted).
    for attempt in 1..=5 {
        let refused = get(addr, "/v1/agents", guess).await;
        assert_eq!(refused.status, 401, "attempt {attempt}: {:?}", refused.body);
    }
    // Then each waits at least twice as long as the one before.
    refused_after(addr, guess, Duration::from_millis(250)).await;
    refused_after(addr, guess, Duration::from_millis(500)).await;
    // A request with no token guesses nothing: answered at once, and not counted; nor is
    // a live enrollment token, refused 403 at once.
    // (A counted failure here would wait 1 s or more.)
    for (token, status) in [(None, 401), (Some(api.enroll.as_str()), 403)].repeat(3) {
        let started = Instant::now();
        assert_eq!(get(addr, "/v1/agents", token).await.status, status);
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{status} held back {:?}",
            started.elapsed()
        );
    }
    refused_after(addr, guess, Duration::from_millis(1000)).await;

    // The same client with a valid token is answered, and does not launder its count:
    // the next failure waits longer still.
    let answered = get(addr, "/v1/agents", token).await;
    assert_eq!(answered.status, 200, "{:?}", answered.body);
    refused_after(addr, guess, Duration::from_millis(2000)).await;
    stop(&api.shutdown, api.services).await;
}

#[tokio::test]
async fn refusals_below_the_handlers_are_json_too() {
    let fleet = fleet().await;
    let api = start(&fleet.store, unthrottled()).await;
    // A body larger than the API reads: refused once the limit is passed, in the API's JSON
    // error shape (the rest of the declared body is never sent).
    let mut stream = tokio::net::TcpStream::connect(api.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/policies HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: 3000000\r\n\r\n{{\"name\": ",
        api.token
    );
    let mut request = head.into_bytes();
    request.resize(request.len() + 2_200_000, b' ');
    tokio::io::AsyncWriteExt::write_all(&mut stream, &request)
        .await
        .expect("send");
    // The server answers without the rest of the body, and may wait for it before it
    // closes: read the answer by its Content-Length.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let (status, body) = loop {
        let n = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::AsyncReadExt::read(&mut stream, &mut chunk),
        )
        .await
        .expect("an answer within 20 s")
        .expect("read");
        raw.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if n == 0 || length.is_some_and(|length| body.len() >= length) {
                break (head.to_owned(), body.to_owned());
            }
        }
        assert!(n > 0, "closed before an answer: {text}");
    };
    let raw = format!("{status}\n\n{body}");
    assert!(status.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(
        status
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{raw}"
    );
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("2097152 bytes")),
        "{body}"
    );

    // Headers past the API's limits (a cookie jar, a runaway proxy): 431 in the same shape,
    // saying the limits, whether by bytes or by fields.
    let padding = "x".repeat(40 * 1024);
    let big = call_with(
        api.addr,
        "GET",
        "/v1/agents",
        Some(&api.token),
        &[("X-Padding", &padding)],
        None,
    )
    .await;
    assert_eq!(big.status, 431, "{}", big.text);
    assert_eq!(
        big.body["error"]["code"], "headers_too_large",
        "{}",
        big.text
    );
    let said = big.body["error"]["message"].as_str().unwrap_or_default();
    assert!(said.contains("at most 32768 bytes in 100 fields"), "{said}");
    let names: Vec<String> = (0..150).map(|i| format!("X-Field-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let many = call_with(api.addr, "GET", "/v1/agents", Some(&api.token), &many, None).await;
    assert_eq!(many.status, 431, "{}", many.text);
    assert_eq!(
        many.body["error"]["code"], "headers_too_large",
        "{}",
        many.text
    );
    // Within the limits, the same request is answered.
    let fine = call_with(
        api.addr,
        "GET",
        "/v1/agents",
        Some(&api.token),
        &[("X-Padding", "short")],
        None,
    )
    .await;
    assert_eq!(fine.status, 200, "{}", fine.text);
    stop(&api.shutdown, api.services).await;
}

/// Asks for the agents with `token`, which must be refused, and no sooner than `at_least`.
async fn refused_after(addr: SocketAddr, token: Option<&str>, at_least: Duration) {
    let started = Instant::now();
    let refused = get(addr, "/v1/agents", token).await;
    let took = started.elapsed();
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_eq!(refused.body["error"]["code"], "unauthorized");
    assert!(
        took >= at_least,
        "refused after {took:?}, not after {at_least:?}"
    );
}

/// The projector and the API on a free port, with an admin token and an enrollment token
/// of the scenario's tenant.
struct Running {
    addr: SocketAddr,
    token: String,
    enroll: String,
    shutdown: CancellationToken,
    services: Vec<JoinHandle<()>>,
    _projections: tempfile::TempDir,
}

/// Failed authentications are slowed by `throttle` (the scenarios that send a bad token
/// to every endpoint pass [`unthrottled`]).
async fn start(store: &EventStore, throttle: ThrottlePolicy) -> Running {
    let served = serve_api_with(store, throttle);
    let (addr, shutdown, services) = (served.addr, served.shutdown.clone(), served.services);
    let acme = crate::support::tenant();
    tenant::create(store, &acme, "Acme", Utc::now())
        .await
        .expect("tenant");
    let admin = tenant::issue(store, &acme, Role::Admin, "ops", Utc::now())
        .await
        .expect("token");
    let token = admin.text.expose().to_owned();
    let enroll = tenant::issue(store, &acme, Role::Enroll, "agents", Utc::now())
        .await
        .expect("token")
        .text
        .expose()
        .to_owned();
    eventually("the API listening", Duration::from_secs(20), || async {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => ControlFlow::Break(()),
            Err(e) => ControlFlow::Continue(e.to_string()),
        }
    })
    .await;
    // The projector answers too, so that a missing object is its 404, not a 503.
    eventually("the projector", Duration::from_secs(20), || async {
        let response = get(addr, "/v1/agents", Some(&token)).await;
        match response.status {
            200 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(response),
        }
    })
    .await;
    Running {
        addr,
        token,
        enroll,
        shutdown,
        services,
        _projections: served.projections,
    }
}

/// The OpenAPI document the API serves, without a token.
async fn openapi(addr: SocketAddr) -> Value {
    let served = get(addr, "/v1/openapi.json", None).await;
    assert_eq!(served.status, 200, "{:?}", served.body);
    let version = served.body["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.0."), "openapi {version:?}");
    served.body
}

/// `path` with each `{parameter}` replaced by a fresh id.
fn filled(path: &str) -> String {
    path.split('/')
        .map(|part| match part.starts_with('{') && part.ends_with('}') {
            true => AgentId::generate().to_string(),
            false => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_endpoint_is_routed_and_answers_as_documented() {
    let fleet = fleet().await;
    let api = start(&fleet.store, unthrottled()).await;
    let (addr, token) = (api.addr, api.token.as_str());
    let doc = openapi(addr).await;

    // Every documented operation, with fresh ids in its path and `{}` for a body: never
    // 405 nor the router's fallback, always a documented status; without a token, 401
    // exactly when the operation needs one.
    let paths = doc["paths"].as_object().expect("paths");
    let mut probed = 0;
    for (template, item) in paths {
        let path = filled(template);
        for (method, operation) in item.as_object().expect("a path item") {
            if method == "parameters" {
                continue;
            }
            let method = method.to_uppercase();
            let public = operation["security"].as_array().is_some_and(Vec::is_empty);
            let body = operation.get("requestBody").map(|_| json!({}));
            for token in [Some(token), None] {
                let (status, answer) = if template == "/v1/events/stream" {
                    // It streams: read the status line and the headers only.
                    let stream = sse::open(addr, &path, token, None).await;
                    (stream.status, stream.body)
                } else {
                    let response = call(addr, &method, &path, token, body.as_ref()).await;
                    (response.status, response.body)
                };
                let who = if token.is_some() { "admin" } else { "no token" };
                let what = format!("{method} {path} ({who}) answered {status}: {answer}");
                assert_ne!(status, 405, "{what}");
                let fallback = Value::from("no such endpoint");
                assert!(
                    status != 404 || answer["error"]["message"] != fallback,
                    "{what}"
                );
                let documented = operation["responses"].get(status.to_string()).is_some();
                assert!(documented, "{what}: not a documented status");
                if token.is_none() {
                    assert_eq!(status == 401, !public, "{what}");
                }
            }
            probed += 1;
        }
    }
    assert!(probed >= 29, "only {probed} operations documented");
    stop(&api.shutdown, api.services).await;
}

#[tokio::test]
async fn answers_have_the_documented_shapes() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let api = start(store, unthrottled()).await;
    let (addr, token) = (api.addr, Some(api.token.as_str()));
    let doc = openapi(addr).await;

    // An agent, a policy on it run now, a run that succeeded, one that failed and waits
    // for its retry, and a repository whose circuit is open.
    let registration = json!({
        "machineId": "machine-db1",
        "name": "db1",
        "settings": {"maxConcurrent": 3, "perKind": {"prune": 1}, "ioClass": "idle"},
    });
    let registered = call(addr, "POST", "/v1/agents", token, Some(&registration)).await;
    assert_documented(&doc, "/v1/agents", "post", &registered, 201);
    let agent: AgentId = registered.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("agent id");
    let url = "/srv/restic/db";
    let policy = json!({
        "name": "db-nightly",
        "schedule": {"interval": {"everySecs": 3600}},
        "kind": "backup",
        "repository": {"url": url, "secret": "db-repo"},
        "include": ["/var/lib/db"],
        "retention": {"keepDaily": 7, "keepWithin": "14d"},
        "execution": {"runTimeoutSecs": 600, "tags": ["db"]},
        "missed": {"runOnce": {"startingDeadlineSecs": 600}},
        "agents": [agent.to_string()],
    });
    let created = call(addr, "POST", "/v1/policies", token, Some(&policy)).await;
    assert_documented(&doc, "/v1/policies", "post", &created, 201);
    let applied = call(addr, "POST", "/v1/policies/apply", token, Some(&policy)).await;
    assert_documented(&doc, "/v1/policies/apply", "post", &applied, 200);
    let run = call(addr, "POST", "/v1/policies/db-nightly/run", token, None).await;
    assert_documented(&doc, "/v1/policies/{id}/run", "post", &run, 202);
    let task: TaskId = run.body["tasks"][0]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("task id");
    let summary = RunSummary {
        kind: TaskKind::Backup,
        duration_ms: 1500,
        detail: RunDetail::Backup(BackupSummary {
            snapshot_id: Some("5e1c0a3f".into()),
            files_new: 3,
            ..BackupSummary::default()
        }),
    };
    for event in [
        TaskEvent::Dispatched { agent, attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Succeeded {
            attempt: 1,
            summary,
        },
    ] {
        append(store, Event::Task { task, event }).await;
    }
    let failing = schedule(store, agent, samples::policy_spec(), Utc::now()).await;
    let error = TaskError::new(ErrorClass::MissingRepository, "no repository", Some(10));
    for event in [
        TaskEvent::Dispatched { agent, attempt: 1 },
        TaskEvent::Failed { attempt: 1, error },
        TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: Utc::now() + chrono::Duration::hours(1),
            delay_ms: 3_600_000,
        },
    ] {
        append(
            store,
            Event::Task {
                task: failing,
                event,
            },
        )
        .await;
    }
    let event = RepoEvent::CircuitOpened {
        until: Utc::now() + chrono::Duration::minutes(5),
        failures: 5,
    };
    let repo = RepoId::for_url(url);
    append(store, Event::Repo { repo, event }).await;
    let (agent, task) = (agent.to_string(), task.to_string());
    // Each read model follows the log on its own: wait for all of them.
    let count = |path: String| async move {
        let response = get(addr, &path, token).await;
        response.body.as_array().map_or(0, Vec::len)
    };
    eventually("the read models", Duration::from_secs(20), || async {
        let seen = [
            count("/v1/runs".into()).await,
            count("/v1/repositories".into()).await,
            count("/v1/tasks?state=retry_scheduled".into()).await,
            count("/v1/tasks?state=succeeded".into()).await,
            count("/v1/policies".into()).await,
        ];
        let backoff = get(addr, &format!("/v1/agents/{agent}/backoff-status"), token).await;
        let retries = backoff.body["retries"].as_array().map_or(0, Vec::len);
        match (seen, retries) {
            ([2, 1, 1, 1, 1], 1) => ControlFlow::Break(()),
            _ => ControlFlow::Continue((seen, retries)),
        }
    })
    .await;

    for (template, path) in [
        ("/v1/agents", "/v1/agents".to_owned()),
        ("/v1/agents/{id}", format!("/v1/agents/{agent}")),
        (
            "/v1/agents/{id}/backoff-status",
            format!("/v1/agents/{agent}/backoff-status"),
        ),
        ("/v1/tasks", "/v1/tasks".to_owned()),
        ("/v1/tasks/{id}", format!("/v1/tasks/{task}")),
        ("/v1/runs", "/v1/runs".to_owned()),
        ("/v1/history", "/v1/history".to_owned()),
        ("/v1/history", format!("/v1/history?agent={agent}")),
        ("/v1/policies", "/v1/policies".to_owned()),
        ("/v1/policies/{id}", "/v1/policies/db-nightly".to_owned()),
        ("/v1/repositories", "/v1/repositories".to_owned()),
        ("/v1/summary", "/v1/summary".to_owned()),
        ("/v1/events", format!("/v1/events?task={task}")),
        ("/v1/events", "/v1/events".to_owned()),
    ] {
        let response = get(addr, &path, token).await;
        assert_documented(&doc, template, "get", &response, 200);
        let empty = response.body.as_array().is_some_and(Vec::is_empty);
        assert!(!empty, "{path} answered an empty list: nothing was checked");
        assert_typed(template, &response.body);
    }

    // Errors, with and without problems.
    let invalid = json!({"name": "x", "schedule": {"interval": {"everySecs": 1}}});
    let refused = call(addr, "POST", "/v1/policies", token, Some(&invalid)).await;
    assert_documented(&doc, "/v1/policies", "post", &refused, 400);
    assert!(
        refused.body["error"]["problems"].is_array(),
        "{}",
        refused.body
    );
    let missing = get(addr, &format!("/v1/tasks/{}", TaskId::generate()), token).await;
    assert_documented(&doc, "/v1/tasks/{id}", "get", &missing, 404);
    let stale = call_with(
        addr,
        "DELETE",
        "/v1/policies/db-nightly",
        token,
        &[("If-Match", "1")],
        None,
    )
    .await;
    assert_documented(&doc, "/v1/policies/{id}", "delete", &stale, 409);
    stop(&api.shutdown, api.services).await;
}

/// Acme's policy in the cross-tenant sweep.
const ACME_POLICY: &str = "db-nightly";
/// Its repository.
const ACME_REPO: &str = "/srv/restic/acme-db";
/// A policy name no tenant has.
const NO_POLICY: &str = "no such policy";
/// Acme's notification rule in the sweep.
const ACME_RULE: &str = "db-pager";
/// A rule name no tenant has.
const NO_RULE: &str = "no-such-rule";

/// A policy document of acme's policy assigned to `agent`.
fn policy_document(agent: &str) -> Value {
    json!({
        "name": ACME_POLICY,
        "schedule": {"interval": {"everySecs": 3600}},
        "kind": "backup",
        "repository": {"url": ACME_REPO, "secret": "db-repo"},
        "include": ["/var/lib/db"],
        "retention": {"keepDaily": 7},
        "agents": [agent],
    })
}

/// What the sweep names acme's objects with: acme's ids, or fresh ones no tenant has.
#[derive(Debug, Clone)]
struct Names {
    agent: String,
    policy: String,
    /// The policy's name, percent-encoded for a path.
    policy_name: String,
    task: String,
    repo: String,
    /// A snapshot of acme's inventory.
    snapshot: String,
    /// The policy's `version`, for `If-Match`.
    version: String,
    /// A notification rule.
    rule: String,
    rule_name: String,
}

impl Names {
    /// Fresh ids and name (with `acme`'s version, so only the objects differ).
    fn fresh(acme: &Names) -> Names {
        Names {
            agent: AgentId::generate().to_string(),
            policy: PolicyId::generate().to_string(),
            policy_name: NO_POLICY.replace(' ', "%20"),
            task: TaskId::generate().to_string(),
            repo: RepoId::for_url("/srv/restic/nowhere").to_string(),
            snapshot: "f0".repeat(32),
            version: acme.version.clone(),
            rule: RuleId::generate().to_string(),
            rule_name: NO_RULE.to_owned(),
        }
    }

    /// The values of the path parameter `reference` (a `#/components/parameters/..`).
    fn path(&self, template: &str, reference: &str) -> Vec<String> {
        match reference.rsplit('/').next() {
            Some("AgentId" | "AssignedAgent") => vec![self.agent.clone()],
            Some("TaskId") => vec![self.task.clone()],
            Some("RepoId") => vec![self.repo.clone()],
            Some("SnapshotId") => vec![self.snapshot.clone()],
            Some("PolicyRef") => vec![self.policy.clone(), self.policy_name.clone()],
            Some("RuleRef") => vec![self.rule.clone(), self.rule_name.clone()],
            _ => panic!("{template}: which of acme's objects does {reference:?} name? Say so here"),
        }
    }

    /// The value of the id filter `name`.
    fn filter(&self, template: &str, name: &str) -> String {
        match name {
            "agent" => self.agent.clone(),
            "policy" => self.policy.clone(),
            "task" => self.task.clone(),
            "repo" => self.repo.clone(),
            _ => panic!("{template}: which of acme's objects does ?{name}= name? Say so here"),
        }
    }
}

/// One request of the sweep.
#[derive(Debug, Clone)]
struct Probe {
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Probe {
    /// Everything the request says, to tell an echo of it from a leak.
    fn text(&self) -> String {
        let body = self.body.as_ref().map(Value::to_string).unwrap_or_default();
        let path = self.path.replace("%20", " ");
        format!("{} {path} {:?} {body}", self.path, self.headers)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    async fn send(&self, addr: SocketAddr, method: &str, token: &str) -> Response {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let body = self.body.as_ref();
        call_with(addr, method, &self.path, Some(token), &headers, body).await
    }
}

/// Every request the sweep sends to one operation: each filling of its path parameters
/// from `names`; without a query, then with each id filter alone and each boolean option
/// set; without a header, then with each documented one; with a valid policy document
/// naming `names.agent` where one is taken, else `{}`.
fn probes(
    doc: &Value,
    template: &str,
    item: &Value,
    operation: &Value,
    names: &Names,
) -> Vec<Probe> {
    let declared = item["parameters"].as_array().into_iter().flatten();
    let declared = declared.chain(operation["parameters"].as_array().into_iter().flatten());
    let (mut paths, mut queries) = (vec![template.to_owned()], vec![String::new()]);
    let mut required = Vec::new();
    let mut headers = vec![Vec::new()];
    for parameter in declared {
        let reference = parameter["$ref"].as_str().unwrap_or_default();
        let parameter = match reference.strip_prefix('#') {
            Some(pointer) => doc.pointer(pointer).expect("a documented parameter"),
            None => parameter,
        };
        let name = parameter["name"].as_str().expect("a named parameter");
        match parameter["in"].as_str() {
            Some("path") => {
                let values = names.path(template, reference);
                let slot = format!("{{{name}}}");
                paths = (paths.iter())
                    .flat_map(|path| values.iter().map(|value| path.replace(&slot, value)))
                    .collect();
            }
            // A required id or name: acme's, in every probe.
            Some("query") if parameter["required"] == true => {
                required.push(format!("{name}={}", names.filter(template, name)));
            }
            Some("query") if parameter["schema"]["$ref"] == "#/components/schemas/Uuid" => {
                queries.push(format!("?{name}={}", names.filter(template, name)));
            }
            Some("query") if parameter["schema"]["type"] == "boolean" => {
                queries.push(format!("?{name}=true"));
            }
            Some("header") => {
                let value = match name {
                    "If-Match" => names.version.clone(),
                    "Last-Event-ID" => "0".to_owned(),
                    _ => panic!("{template}: what should the header {name} say? Say so here"),
                };
                headers.push(vec![(name.to_owned(), value)]);
            }
            // Other query parameters only narrow a listing: without them it shows the most.
            _ => {}
        }
    }
    if !required.is_empty() {
        let required = required.join("&");
        queries = (queries.iter())
            .map(|q| match q.strip_prefix('?') {
                Some(rest) => format!("?{required}&{rest}"),
                None => format!("?{required}"),
            })
            .collect();
    }
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    let body = operation.get("requestBody").map(|_| match schema.as_str() {
        Some("#/components/schemas/RestoreRequest") => json!({
            "policy": names.policy, "agent": names.agent, "snapshot": names.snapshot,
            "target": "/var/restore",
        }),
        Some("#/components/schemas/PolicyDocument") => policy_document(&names.agent),
        Some("#/components/schemas/PolicySpec") => {
            let mut spec = policy_document(&names.agent);
            spec.as_object_mut().map(|fields| fields.remove("agents"));
            spec
        }
        _ => json!({}),
    });
    let mut probes = Vec::new();
    for path in &paths {
        for query in &queries {
            for headers in &headers {
                probes.push(Probe {
                    path: format!("{path}{query}"),
                    headers: headers.clone(),
                    body: body.clone(),
                });
            }
        }
    }
    probes
}

/// The statuses another tenant's admin may get from `method template` naming acme's
/// objects, why, and the one problem a 400 must name.
fn refusal(
    method: &str,
    template: &str,
    probe: &Probe,
) -> (&'static [u16], &'static str, Option<&'static str>) {
    let filtered = probe.path.contains('?');
    match (method, template) {
        ("POST", "/v1/policies" | "/v1/policies/apply") => (
            &[400],
            "the document is valid but names acme's agent, which `other` does not have",
            Some("agents[0]"),
        ),
        ("POST", "/v1/agents") => (&[400], "`{}` names no machine, whoever sends it", None),
        ("POST", "/v1/rules") => (&[400], "`{}` is no rule, whoever sends it", None),
        ("POST", "/v1/restores") => (
            &[400],
            "the restore is valid but names acme's agent, which `other` does not have",
            Some("agent"),
        ),
        ("GET", "/v1/snapshots/{id}/ls") => (
            &[400],
            "it names acme's agent, which `other` does not have",
            Some("agent"),
        ),
        ("GET", "/v1/events") if filtered => {
            (&[404], "acme's aggregate has no history in `other`", None)
        }
        _ if template.contains('{') => (
            &[403, 404],
            "acme's object does not exist for `other`",
            None,
        ),
        ("GET", _) => (
            &[200],
            "`other`'s own listing, with nothing of acme's",
            None,
        ),
        _ => panic!("{method} {template}: what may another tenant get here? Say so in `refusal`"),
    }
}

/// Whether `text` is a UUID in its hyphenated form.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Every UUID in `text`.
fn uuids(text: &str) -> BTreeSet<String> {
    (0..text.len())
        .filter_map(|at| text.get(at..at + 36).filter(|s| is_uuid(s)))
        .map(str::to_owned)
        .collect()
}

/// `text` with every UUID and every policy name of the sweep replaced by a placeholder, so
/// that answers about different objects compare.
fn masked(text: &str) -> String {
    let text = text
        .replace(ACME_POLICY, "<name>")
        .replace(NO_POLICY, "<name>")
        .replace(ACME_RULE, "<name>")
        .replace(NO_RULE, "<name>");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(c) = rest.chars().next() {
        match rest.get(..36).filter(|s| is_uuid(s)) {
            Some(_) => {
                out.push_str("<id>");
                rest = &rest[36..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// Asserts that an answer to `request` names nothing of acme's (`needles`: what, text),
/// except, in a refusal, what the request itself sent (an echo tells the caller nothing).
fn assert_no_acme(
    answer: &str,
    status: u16,
    request: &str,
    needles: &[(String, String)],
    what: &str,
) {
    for (name, needle) in needles {
        let echo = status >= 400 && request.contains(needle.as_str());
        assert!(
            echo || !answer.contains(needle.as_str()),
            "{what}: the answer names {name} ({needle}): {answer}"
        );
    }
}

/// Settings of the service, the same for every tenant: numbers that count nothing.
const SETTINGS: [&str; 1] = ["historyDays"];

/// Asserts that `value`, a 200 answer to `other`, holds nothing but `other`'s own: every
/// event is of its tenant and in its log (`own`), every other list is empty, every count 0
/// (the service's [`SETTINGS`] aside).
fn assert_nothing_but_own(value: &Value, own: &BTreeSet<u64>, what: &str) {
    match value {
        Value::Object(fields) if fields.contains_key("tenant") => {
            assert_eq!(fields["tenant"], "other", "{what}: {value}");
            let seq = fields["seq"].as_u64().unwrap_or_default();
            assert!(
                own.contains(&seq),
                "{what}: not an event of other's: {value}"
            );
        }
        Value::Object(fields) => fields
            .iter()
            .filter(|(name, _)| !SETTINGS.contains(&name.as_str()))
            .for_each(|(_, field)| assert_nothing_but_own(field, own, what)),
        Value::Array(items) => items
            .iter()
            .for_each(|item| assert_nothing_but_own(item, own, what)),
        Value::Number(n) => assert_eq!(n.as_u64(), Some(0), "{what}: a count of acme's?"),
        _ => {}
    }
}

/// The position and subject of every event `filter` matches.
async fn positions(store: &EventStore, filter: &str) -> Vec<(u64, String)> {
    let stored = log(store, filter).await;
    stored.into_iter().map(|s| (s.seq, s.subject)).collect()
}

#[tokio::test]
async fn another_tenants_token_gets_nothing_from_any_endpoint() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let api = start(store, unthrottled()).await;
    let (addr, mine) = (api.addr, Some(api.token.as_str()));
    let doc = openapi(addr).await;

    // Acme: an agent, a policy assigned to it, a task run now that succeeded, and the
    // policy's repository with its circuit open.
    let registration = json!({"machineId": "machine-acme-primary", "name": "acme-primary"});
    let registered = call(addr, "POST", "/v1/agents", mine, Some(&registration)).await;
    assert_eq!(registered.status, 201, "{}", registered.text);
    let agent: AgentId = registered.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("agent id");
    let document = policy_document(&agent.to_string());
    let created = call(addr, "POST", "/v1/policies", mine, Some(&document)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let policy_path = format!("/v1/policies/{}", ACME_POLICY.replace(' ', "%20"));
    let run = call(addr, "POST", &format!("{policy_path}/run"), mine, None).await;
    assert_eq!(run.status, 202, "{}", run.text);
    let task: TaskId = run.body["tasks"][0]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("task id");
    let snapshot = "5e1c0a3f9b7d4e21";
    let summary = RunSummary {
        kind: TaskKind::Backup,
        duration_ms: 1500,
        detail: RunDetail::Backup(BackupSummary {
            snapshot_id: Some(snapshot.into()),
            ..BackupSummary::default()
        }),
    };
    for event in [
        TaskEvent::Dispatched { agent, attempt: 1 },
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Succeeded {
            attempt: 1,
            summary,
        },
    ] {
        append(store, Event::Task { task, event }).await;
    }
    let repo = RepoId::for_url(ACME_REPO);
    let event = RepoEvent::CircuitOpened {
        until: Utc::now() + chrono::Duration::minutes(5),
        failures: 5,
    };
    append(store, Event::Repo { repo, event }).await;
    // And one snapshot in the repository's inventory, listed by its agent.
    let acme_snapshot = "ac".repeat(32);
    let listed = RepoEvent::SnapshotsChanged {
        task,
        agent,
        listed_at: Utc::now(),
        added: vec![SnapshotInfo {
            id: acme_snapshot.clone(),
            time: Utc::now(),
            host: "acme-primary".into(),
            paths: vec!["/var/lib/db".into()],
            more_paths: 0,
            tags: vec![format!("task:{task}")],
            size_bytes: Some(4096),
            files: Some(3),
        }],
        removed: vec![],
    };
    append(
        store,
        Event::Repo {
            repo,
            event: listed,
        },
    )
    .await;
    // A notification rule, a notification it triggered and the policy overdue on its agent.
    let rule_document = json!({
        "name": ACME_RULE,
        "target": {"kind": "ntfy", "url": "https://ntfy.example/acme-db"},
    });
    let defined = call(addr, "POST", "/v1/rules", mine, Some(&rule_document)).await;
    assert_eq!(defined.status, 201, "{}", defined.text);
    let rule = RuleId::for_name(&crate::support::tenant(), ACME_RULE);
    let source = EventId::generate();
    let message = Message {
        trigger: None,
        event_type: "rule.test_requested".into(),
        at: Utc::now(),
        title: "a test of db-pager".into(),
        text: "acme-primary".into(),
        policy: None,
        agent: None,
        task: Some(task),
        repo: Some(repo),
    };
    let notification = NotificationId::for_event(rule, source);
    let event = NotificationEvent::Triggered {
        rule,
        source,
        message: Box::new(message),
    };
    append(
        store,
        Event::Notification {
            notification,
            event,
        },
    )
    .await;
    let policy_id = PolicyId::for_name(&crate::support::tenant(), ACME_POLICY);
    let event = AssignmentEvent::Overdue {
        policy: policy_id,
        agent,
        due: Utc::now(),
        last_success: None,
    };
    let assignment = AssignmentId::for_pair(policy_id, agent);
    append(store, Event::Assignment { assignment, event }).await;
    // Acme's read models hold all of it, so that a leak would have something to show.
    let count = |path: &'static str| async move {
        let response = get(addr, path, mine).await;
        response.body.as_array().map_or(0, Vec::len)
    };
    eventually("acme's read models", Duration::from_secs(20), || async {
        let seen = [
            count("/v1/agents").await,
            count("/v1/policies").await,
            count("/v1/tasks?state=succeeded").await,
            count("/v1/runs").await,
            count("/v1/repositories").await,
            count("/v1/rules").await,
            count("/v1/notifications").await,
        ];
        match seen {
            [1, 1, 1, 1, 1, 1, 1] => ControlFlow::Break(()),
            _ => ControlFlow::Continue(seen),
        }
    })
    .await;
    eventually("acme's snapshots", Duration::from_secs(20), || async {
        let page = get(addr, "/v1/snapshots", mine).await;
        match page.body["snapshots"].as_array().map(Vec::len) {
            Some(1) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(page.text),
        }
    })
    .await;
    let policy = get(addr, &policy_path, mine).await;
    assert_eq!(policy.status, 200, "{}", policy.text);
    let acme = Names {
        agent: agent.to_string(),
        policy: policy.body["id"].as_str().expect("policy id").to_owned(),
        policy_name: ACME_POLICY.replace(' ', "%20"),
        task: task.to_string(),
        repo: repo.to_string(),
        snapshot: acme_snapshot.clone(),
        version: policy.body["version"].to_string(),
        rule: rule.to_string(),
        rule_name: ACME_RULE.to_owned(),
    };
    let fresh = Names::fresh(&acme);

    // Other: a tenant with an admin token and nothing else.
    let other = TenantId::new("other").expect("slug");
    tenant::create(store, &other, "Other", Utc::now())
        .await
        .expect("tenant");
    let theirs = tenant::issue(store, &other, Role::Admin, "ops", Utc::now())
        .await
        .expect("token");
    let theirs = theirs.text.expose().to_owned();
    let garbage = format!("rft1.acme.{}", "0".repeat(64));

    // What nothing answered to `other` may name: everything acme has told the log (every
    // id in its events: agent, policy, task, repository, tokens, events, correlations),
    // its names, its repository, its snapshot, its token.
    let acme_tenant = crate::support::tenant();
    let acme_log = log(store, &subject::tenant_events(&acme_tenant)).await;
    let mut needles = vec![
        ("acme's slug".to_owned(), "acme".to_owned()),
        ("acme's agent's name".into(), "acme-primary".into()),
        ("acme's policy's name".into(), ACME_POLICY.into()),
        ("acme's repository".into(), ACME_REPO.into()),
        ("acme's snapshot".into(), snapshot.into()),
        ("acme's listed snapshot".into(), acme_snapshot.clone()),
        ("acme's token".into(), api.token.clone()),
        ("acme's rule's name".into(), ACME_RULE.into()),
        ("acme's rule's URL".into(), "ntfy.example/acme-db".into()),
    ];
    for stored in &acme_log {
        let envelope = serde_json::to_string(&stored.envelope).expect("JSON");
        for id in uuids(&format!("{} {envelope}", stored.subject)) {
            needles.push((format!("an id in acme's {}", stored.subject), id));
        }
    }
    // They are found in acme's own answers, so that finding none in other's means something.
    for path in [
        "/v1/agents",
        "/v1/policies",
        "/v1/tasks",
        "/v1/runs",
        "/v1/repositories",
        "/v1/snapshots",
        "/v1/events",
        "/v1/rules",
        "/v1/notifications",
    ] {
        let answer = get(addr, path, mine).await;
        let found = needles
            .iter()
            .any(|(_, needle)| answer.text.contains(needle));
        assert!(
            found,
            "{path} as acme names nothing of acme's: {}",
            answer.text
        );
    }
    let everything = subject::all_events();
    let other_events = subject::tenant_events(&other);
    let before = positions(store, &everything).await;
    let acme_before = positions(store, &subject::tenant_events(&acme_tenant)).await;
    let other_before = positions(store, &other_events).await;
    let other_log = log(store, &other_events).await;
    let made: Vec<&str> = other_log
        .iter()
        .map(|s| s.envelope.event.event_type().name())
        .collect();
    assert_eq!(
        made,
        ["tenant.created", "tenant.token_issued"],
        "other's log"
    );
    let own: BTreeSet<u64> = other_log.iter().map(|s| s.seq).collect();

    // Every documented operation, with acme's ids wherever it takes one, as `other`'s
    // admin; the same with fresh ids, which must answer alike; and with a garbage token.
    let mut streams = Vec::new();
    let mut probed = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if method == "parameters" {
                continue;
            }
            let method = method.to_uppercase();
            let public = operation["security"].as_array().is_some_and(Vec::is_empty);
            // A stream of one object (a task's progress) refuses another tenant's before
            // it starts: it is probed like any answer.
            let streaming = operation["responses"]["200"]["content"]
                .get("text/event-stream")
                .is_some()
                && !template.contains('{');
            let theirs_probes = probes(&doc, template, item, operation, &acme);
            let controls = probes(&doc, template, item, operation, &fresh);
            for (probe, control) in theirs_probes.iter().zip(&controls) {
                let what = format!("{method} {} {:?} as other", probe.path, probe.headers);
                let request = format!("{} {garbage}", probe.text());
                if streaming {
                    let last = probe
                        .header("Last-Event-ID")
                        .map(|v| v.parse().expect("seq"));
                    let stream = sse::open(addr, &probe.path, Some(&theirs), last).await;
                    assert_eq!(stream.status, 200, "{what}: {}", stream.body);
                    let refused = sse::open(addr, &probe.path, Some(&garbage), last).await;
                    assert_eq!(
                        refused.status, 401,
                        "{what}, garbage token: {}",
                        refused.body
                    );
                    let answer = refused.body.to_string();
                    assert_no_acme(&answer, 401, &request, &needles, &what);
                    streams.push((what, last, stream));
                    continue;
                }
                let answer = probe.send(addr, &method, &theirs).await;
                let documented = operation["responses"].get(answer.status.to_string());
                assert!(
                    documented.is_some(),
                    "{what}: {} is not documented",
                    answer.status
                );
                assert_no_acme(&answer.text, answer.status, &request, &needles, &what);
                if !public {
                    let (allowed, why, problem) = refusal(&method, template, probe);
                    assert!(
                        allowed.contains(&answer.status),
                        "{what}: {} where {allowed:?} ({why}): {}",
                        answer.status,
                        answer.text
                    );
                    if let Some(field) = problem {
                        let problems = &answer.body["error"]["problems"];
                        let fields: Vec<&Value> = problems
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|p| &p["field"])
                            .collect();
                        assert_eq!(fields, [field], "{what} ({why}): {}", answer.text);
                    }
                    if answer.status == 200 {
                        assert_nothing_but_own(&answer.body, &own, &what);
                    }
                    let refused = probe.send(addr, &method, &garbage).await;
                    assert_eq!(
                        refused.status, 401,
                        "{what}, garbage token: {}",
                        refused.text
                    );
                    assert_eq!(refused.body["error"]["code"], "unauthorized", "{what}");
                    assert_no_acme(&refused.text, 401, &request, &needles, &what);
                    // Acme's object is not told apart from one nobody has.
                    let unknown = control.send(addr, &method, &theirs).await;
                    assert_eq!(
                        (unknown.status, masked(&unknown.text)),
                        (answer.status, masked(&answer.text)),
                        "{what}: acme's objects answer otherwise than unknown ones ({})",
                        control.path
                    );
                }
            }
            probed += 1;
        }
    }
    assert!(probed >= 29, "only {probed} operations documented");
    assert_eq!(streams.len(), 2, "a live and a resumed stream");

    // None of it wrote anything: not for acme, not for other, not for anyone.
    let acme_events = subject::tenant_events(&acme_tenant);
    assert_eq!(
        positions(store, &acme_events).await,
        acme_before,
        "acme's log changed"
    );
    assert_eq!(
        positions(store, &other_events).await,
        other_before,
        "other's log changed"
    );
    assert_eq!(
        positions(store, &everything).await,
        before,
        "the log changed"
    );

    // Live: an event of acme's reaches acme's stream, not other's (which replays only
    // its own); then one of other's reaches both of other's, first.
    let mut acme_stream = sse::open(addr, "/v1/events/stream", mine, None).await;
    assert_eq!(acme_stream.status, 200, "{}", acme_stream.body);
    let paused = call(addr, "POST", &format!("{policy_path}/pause"), mine, None).await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    let seen = acme_stream.events(1, Duration::from_secs(10)).await;
    let types: Vec<Option<&str>> = seen.iter().map(|f| f.event.as_deref()).collect();
    assert_eq!(types, [Some("policy.paused")], "acme's own stream");
    let quiet = Duration::from_secs(3);
    let reads = streams
        .iter_mut()
        .map(|(_, _, stream)| stream.events(10, quiet));
    let heard = futures::future::join_all(reads).await;
    for ((what, last, _), frames) in streams.iter().zip(&heard) {
        for frame in frames {
            assert_no_acme(&frame.data, 200, "", &needles, what);
            assert_eq!(frame.json()["tenant"], "other", "{what}: {}", frame.data);
        }
        let ids: Vec<Option<String>> = frames.iter().map(|f| f.id.clone()).collect();
        let expected: Vec<Option<String>> = match last {
            Some(_) => own.iter().map(|seq| Some(seq.to_string())).collect(),
            None => Vec::new(),
        };
        assert_eq!(ids, expected, "{what}: only other's own, replayed");
    }
    let late = tenant::issue(store, &other, Role::ReadOnly, "late", Utc::now())
        .await
        .expect("token");
    for (what, _, stream) in &mut streams {
        let next = stream.events(1, Duration::from_secs(10)).await;
        let frame = next
            .first()
            .unwrap_or_else(|| panic!("{what}: other's stream is dead"));
        let event = frame.json();
        assert_eq!(event["type"], "tenant.token_issued", "{what}: {event}");
        assert_eq!(
            event["data"]["token"],
            late.id.to_string(),
            "{what}: {event}"
        );
    }
    drop((streams, acme_stream));

    // The log gained what acme's token did and the token the scenario issued, no more.
    let end = log(store, &everything).await;
    let kept: Vec<(u64, String)> = (end.iter().take(before.len()))
        .map(|s| (s.seq, s.subject.clone()))
        .collect();
    assert_eq!(kept, before);
    let gained: Vec<(String, &str)> = (end.iter().skip(before.len()))
        .map(|s| {
            (
                s.envelope.tenant.to_string(),
                s.envelope.event.event_type().name(),
            )
        })
        .collect();
    let gained: Vec<(&str, &str)> = gained.iter().map(|(t, e)| (t.as_str(), *e)).collect();
    assert_eq!(
        gained,
        [("acme", "policy.paused"), ("other", "tenant.token_issued")],
        "the log gained"
    );
    stop(&api.shutdown, api.services).await;
}

/// The answer to `template` read back by the typed shapes clients use
/// (`fleet_api_model::dto`) says exactly what was served: nothing lost, nothing added.
fn assert_typed(template: &str, body: &Value) {
    use fleet_control::projector::dto;
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(body: &Value) -> Value {
        let typed: T = serde_json::from_value(body.clone()).unwrap_or_else(|e| {
            panic!(
                "does not read as {}: {e}: {body}",
                std::any::type_name::<T>()
            )
        });
        serde_json::to_value(typed).expect("serializes")
    }
    let again = match template {
        "/v1/agents" => round::<Vec<dto::Agent>>(body),
        "/v1/agents/{id}" => round::<dto::Agent>(body),
        "/v1/agents/{id}/backoff-status" => round::<dto::BackoffStatus>(body),
        "/v1/tasks" => round::<Vec<dto::Task>>(body),
        "/v1/tasks/{id}" => round::<dto::TaskDetail>(body),
        "/v1/runs" => round::<Vec<dto::Run>>(body),
        "/v1/history" => round::<Vec<dto::HistoryDay>>(body),
        "/v1/policies" => round::<Vec<dto::Policy>>(body),
        "/v1/policies/{id}" => round::<dto::Policy>(body),
        "/v1/repositories" => round::<Vec<dto::Repo>>(body),
        "/v1/summary" => round::<dto::Summary>(body),
        _ => return,
    };
    assert_eq!(&again, body, "{template} read back by its typed shape");
}
