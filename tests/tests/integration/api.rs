//! The HTTP API over real HTTP against a real nats-server, with the projector behind it:
//! bearer tokens decide the tenant and the role, another tenant's objects are 404, a
//! revoked token stops working at once, bad ids are 400; every endpoint the OpenAPI
//! document names is routed and answers as documented.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::Utc;
use fleet_events::event::{
    BackupSummary, ErrorClass, Event, RepoEvent, Role, RunDetail, RunSummary, TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, RepoId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::EventStore;
use fleet_services::serve::{Service, ServiceConfig};
use fleet_services::tenant;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::http::{call, call_with, get};
use crate::support::openapi::assert_documented;
use crate::support::sse;
use crate::support::{append, eventually, fleet, register, schedule, spawn_service, stop, system};

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test]
async fn tokens_scope_every_read_to_their_tenant() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let config = ServiceConfig {
        projections_dir: Some(dir.path().to_owned()),
        api_addr: Some(addr),
        ..system()
    };
    let shutdown = CancellationToken::new();
    let services = vec![
        spawn_service(store, Service::Projector, config.clone(), &shutdown),
        spawn_service(store, Service::Api, config, &shutdown),
    ];

    let acme = crate::support::tenant();
    let other = TenantId::new("other").expect("slug");
    for (tenant, name) in [(&acme, "Acme"), (&other, "Other")] {
        tenant::create(store, tenant, name, Utc::now())
            .await
            .expect("tenant");
    }
    let admin = tenant::issue(store, &acme, Role::Admin, "ops", Utc::now())
        .await
        .expect("token");
    let reader = tenant::issue(store, &acme, Role::ReadOnly, "dash", Utc::now())
        .await
        .expect("token");
    let enroll = tenant::issue(store, &acme, Role::Enroll, "agents", Utc::now())
        .await
        .expect("token");
    let stranger = tenant::issue(store, &other, Role::Admin, "ops", Utc::now())
        .await
        .expect("token");
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

    // No token, a garbled one, an enrollment token: 401 with a reason.
    for token in [None, Some("rft1.acme.nope"), Some(enroll.text.expose())] {
        let refused = get(addr, "/v1/agents", token).await;
        assert_eq!(refused.status, 401, "{token:?}: {:?}", refused.body);
        assert_eq!(refused.body["error"]["code"], "unauthorized");
    }

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

/// The projector and the API on a free port, with an admin token of the scenario's tenant.
struct Running {
    addr: SocketAddr,
    token: String,
    shutdown: CancellationToken,
    services: Vec<JoinHandle<()>>,
    _projections: tempfile::TempDir,
}

async fn start(store: &EventStore) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let config = ServiceConfig {
        projections_dir: Some(dir.path().to_owned()),
        api_addr: Some(addr),
        ..system()
    };
    let shutdown = CancellationToken::new();
    let services = vec![
        spawn_service(store, Service::Projector, config.clone(), &shutdown),
        spawn_service(store, Service::Api, config, &shutdown),
    ];
    let acme = crate::support::tenant();
    tenant::create(store, &acme, "Acme", Utc::now())
        .await
        .expect("tenant");
    let admin = tenant::issue(store, &acme, Role::Admin, "ops", Utc::now())
        .await
        .expect("token");
    let token = admin.text.expose().to_owned();
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
        shutdown,
        services,
        _projections: dir,
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
    let api = start(&fleet.store).await;
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
    let api = start(store).await;
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
        "name": "db nightly",
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
    let run = call(addr, "POST", "/v1/policies/db%20nightly/run", token, None).await;
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
        ("/v1/policies", "/v1/policies".to_owned()),
        ("/v1/policies/{id}", "/v1/policies/db%20nightly".to_owned()),
        ("/v1/repositories", "/v1/repositories".to_owned()),
        ("/v1/summary", "/v1/summary".to_owned()),
        ("/v1/events", format!("/v1/events?task={task}")),
        ("/v1/events", "/v1/events".to_owned()),
    ] {
        let response = get(addr, &path, token).await;
        assert_documented(&doc, template, "get", &response, 200);
        let empty = response.body.as_array().is_some_and(Vec::is_empty);
        assert!(!empty, "{path} answered an empty list: nothing was checked");
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
        "/v1/policies/db%20nightly",
        token,
        &[("If-Match", "1")],
        None,
    )
    .await;
    assert_documented(&doc, "/v1/policies/{id}", "delete", &stale, 409);
    stop(&api.shutdown, api.services).await;
}
