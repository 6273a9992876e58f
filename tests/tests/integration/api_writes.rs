//! The API's write side over real HTTP against a real nats-server, with the projector
//! behind it: policies created and applied from documents (agents by name), every problem
//! of an invalid policy listed with nothing appended, `If-Match` conflicts, pause, assign,
//! run now, cancel, agent settings and decommissioning; read-only and foreign tokens
//! change nothing.

use std::ops::ControlFlow;
use std::time::Duration;

use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::PolicyId;
use fleet_events::store::EventStore;
use serde_json::{Value, json};

use crate::support::http::{Response, call, call_with, get};
use crate::support::{TwoTenants, eventually, fleet, log, serve_api, stop, two_tenants};

fn policy(name: &str, agents: &[&str]) -> Value {
    json!({
        "name": name,
        "schedule": {"cron": {"expr": "0 2 * * *", "timezone": "Europe/Berlin"}},
        "kind": "backup",
        "repository": {"url": "/srv/restic/db", "secret": "db-repo"},
        "include": ["/var/lib/db"],
        "retention": {"keepDaily": 7},
        "agents": agents,
    })
}

async fn end_of_log(store: &EventStore) -> u64 {
    store.last_sequence("fleet.evt.>").await.expect("last seq")
}

fn problems(response: &Response) -> Vec<String> {
    response.body["error"]["problems"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|p| p["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn operators_change_the_fleet_through_the_api() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let served = serve_api(store);
    let addr = served.addr;
    let TwoTenants {
        acme,
        admin,
        reader,
        stranger,
        ..
    } = two_tenants(store).await;
    let admin = Some(admin.text.expose());
    let reader = Some(reader.text.expose());
    let stranger = Some(stranger.text.expose());
    let wait_api = eventually("the API", Duration::from_secs(20), || async {
        match get(addr, "/healthz", None).await.status {
            200 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    });
    wait_api.await;

    // Agents registered ahead of their machines: once each.
    let mut agents = Vec::new();
    for name in ["db-1", "web-1"] {
        let body = json!({"machineId": format!("machine-{name}"), "name": name});
        let created = call(addr, "POST", "/v1/agents", admin, Some(&body)).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        assert_eq!(created.body["events"], json!(["agent.registered"]));
        agents.push(created.body["id"].as_str().expect("id").to_owned());
        let again = call(addr, "POST", "/v1/agents", admin, Some(&body)).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body["events"], json!([]), "registered once");
    }
    let (db, web) = (agents[0].clone(), agents[1].clone());
    let listed = eventually("both agents listed", Duration::from_secs(20), || async {
        let listed = get(addr, "/v1/agents", admin).await;
        match listed.body.as_array().map(Vec::len) {
            Some(2) => ControlFlow::Break(listed),
            _ => ControlFlow::Continue(listed),
        }
    })
    .await;
    assert_eq!(listed.status, 200);
    // Pages by name, and a name filter.
    let names = |response: &Response| -> Vec<String> {
        response.body.as_array().map_or_else(Vec::new, |items| {
            items
                .iter()
                .filter_map(|a| a["name"].as_str().map(str::to_owned))
                .collect()
        })
    };
    let first = get(addr, "/v1/agents?limit=1", admin).await;
    let second = get(addr, "/v1/agents?limit=1&offset=1", admin).await;
    let past = get(addr, "/v1/agents?limit=1&offset=2", admin).await;
    assert_eq!(
        (names(&first), names(&second)),
        (vec!["db-1".to_owned()], vec!["web-1".to_owned()])
    );
    assert!(names(&past).is_empty());
    let named = get(addr, "/v1/agents?name=web-1", admin).await;
    assert_eq!(names(&named), ["web-1"]);
    let zero = get(addr, "/v1/agents?limit=0", admin).await;
    assert_eq!(zero.status, 400, "{:?}", zero.body);

    // An invalid policy: every problem listed, nothing appended.
    let before = end_of_log(store).await;
    let mut bad = policy("bad", &["db-1", "nobody"]);
    bad["schedule"] = json!({"cron": {"expr": "every night", "timezone": "Mars/Olympus"}});
    bad["include"] = json!([]);
    bad["retention"] = json!({"keepDaily": -1});
    let refused = call(addr, "POST", "/v1/policies", admin, Some(&bad)).await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    let fields = problems(&refused);
    for field in [
        "schedule.cron.expr",
        "schedule.cron.timezone",
        "include",
        "retention.keepDaily",
        "agents[1]",
    ] {
        assert!(fields.contains(&field.to_owned()), "{field}: {fields:?}");
    }
    assert_eq!(end_of_log(store).await, before, "nothing appended");

    // Create with agents by name; a second create of the name is a conflict.
    let created = call(
        addr,
        "POST",
        "/v1/policies",
        admin,
        Some(&policy("db", &["db-1"])),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(
        created.body["events"],
        json!(["policy.created", "policy.assigned"])
    );
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(id, PolicyId::for_name(&acme, "db").to_string());
    let twice = call(
        addr,
        "POST",
        "/v1/policies",
        admin,
        Some(&policy("db", &["db-1"])),
    )
    .await;
    assert_eq!(twice.status, 409, "{:?}", twice.body);

    // Apply is idempotent and converges: same document, no events; new agents, one each.
    let same = call(
        addr,
        "POST",
        "/v1/policies/apply",
        admin,
        Some(&policy("db", &["db-1"])),
    )
    .await;
    assert_eq!((same.status, same.body["events"].clone()), (200, json!([])));
    assert_eq!(same.body["created"], false);
    let moved = policy("db", &[web.as_str()]);
    let applied = call(addr, "POST", "/v1/policies/apply", admin, Some(&moved)).await;
    assert_eq!(
        applied.body["events"],
        json!(["policy.assigned", "policy.unassigned"]),
        "{:?}",
        applied.body
    );

    // The read side catches up; the policy's version guards an update.
    let path = format!("/v1/policies/{id}");
    let seen = eventually("the policy on web-1", Duration::from_secs(20), || async {
        let seen = get(addr, &path, admin).await;
        match seen.body["agents"] == json!([web.clone()]) {
            true => ControlFlow::Break(seen),
            false => ControlFlow::Continue(seen),
        }
    })
    .await;
    let version = seen.body["version"].as_u64().expect("version").to_string();
    let mut spec = policy("db", &[]);
    spec.as_object_mut().expect("object").remove("agents");
    spec["priority"] = json!(9);
    let headers = [("If-Match", version.as_str())];
    let first = call_with(addr, "PUT", &path, admin, &headers, Some(&spec)).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["events"], json!(["policy.updated"]));
    spec["priority"] = json!(1);
    let second = call_with(addr, "PUT", &path, admin, &headers, Some(&spec)).await;
    assert_eq!(
        second.status, 409,
        "a stale version loses: {:?}",
        second.body
    );
    let renamed = call(addr, "PUT", &path, admin, Some(&policy_renamed())).await;
    assert_eq!(renamed.status, 400, "{:?}", renamed.body);

    // Pause twice is one event; by name as well as by id.
    let paused = call(addr, "POST", "/v1/policies/db/pause", admin, None).await;
    assert_eq!(paused.body["events"], json!(["policy.paused"]));
    let again = call(addr, "POST", &format!("{path}/pause"), admin, None).await;
    assert_eq!(
        (again.status, again.body["events"].clone()),
        (200, json!([]))
    );

    // Run now: one task on the assigned agent, due at once; cancel it, once.
    let run = call(addr, "POST", &format!("{path}/run"), admin, None).await;
    assert_eq!(run.status, 202, "{:?}", run.body);
    let task = run.body["tasks"][0].as_str().expect("a task").to_owned();
    let cancel_path = format!("/v1/tasks/{task}/cancel");
    let reason = json!({"reason": "wrong window"});
    let cancelled = call(addr, "POST", &cancel_path, admin, Some(&reason)).await;
    assert_eq!(
        cancelled.body["events"],
        json!(["task.cancelled"]),
        "{:?}",
        cancelled.body
    );
    let twice = call(addr, "POST", &cancel_path, admin, None).await;
    assert_eq!(twice.status, 409, "an ended task: {:?}", twice.body);

    // Assignment checks the agent; unassign is idempotent.
    let assign = format!("{path}/agents/{db}");
    assert_eq!(call(addr, "POST", &assign, admin, None).await.status, 200);
    let unknown = format!("{path}/agents/{}", fleet_events::ids::AgentId::generate());
    assert_eq!(call(addr, "POST", &unknown, admin, None).await.status, 404);
    assert_eq!(call(addr, "DELETE", &assign, admin, None).await.status, 200);
    let removed = call(addr, "DELETE", &assign, admin, None).await;
    assert_eq!(removed.body["events"], json!([]));

    // Agent settings: a merge patch, every problem named.
    let settings = format!("/v1/agents/{web}/settings");
    let patch = json!({"maxConcurrent": 3, "perKind": {"backup": 1}});
    let changed = call(addr, "PATCH", &settings, admin, Some(&patch)).await;
    assert_eq!(
        changed.body["events"],
        json!(["agent.settings_changed"]),
        "{:?}",
        changed.body
    );
    let wrong = json!({"maxConcurrent": 0, "colour": "red"});
    let wrong = call(addr, "PATCH", &settings, admin, Some(&wrong)).await;
    assert_eq!(wrong.status, 400);
    assert!(
        problems(&wrong).contains(&"colour".to_owned()),
        "{:?}",
        wrong.body
    );

    // Read-only and foreign tokens change nothing.
    let before = end_of_log(store).await;
    for (token, status) in [(reader, 403), (stranger, 404)] {
        for (method, endpoint) in [
            ("POST", format!("{path}/resume")),
            ("DELETE", path.clone()),
            ("POST", format!("/v1/agents/{web}/decommission")),
            ("PATCH", settings.clone()),
            ("POST", format!("/v1/tasks/{task}/cancel")),
        ] {
            let body = json!({});
            let response = call(addr, method, &endpoint, token, Some(&body)).await;
            assert_eq!(
                response.status, status,
                "{method} {endpoint}: {:?}",
                response.body
            );
        }
    }
    assert_eq!(end_of_log(store).await, before, "nothing appended");

    // Decommissioned agents take no new assignments; a deleted name can be created again.
    let retire = format!("/v1/agents/{db}/decommission");
    assert_eq!(call(addr, "POST", &retire, admin, None).await.status, 200);
    assert_eq!(call(addr, "POST", &assign, admin, None).await.status, 409);
    assert_eq!(call(addr, "DELETE", &path, admin, None).await.status, 200);
    assert_eq!(
        call(addr, "POST", &format!("{path}/pause"), admin, None)
            .await
            .status,
        404
    );
    let reborn = call(
        addr,
        "POST",
        "/v1/policies",
        admin,
        Some(&policy("db", &["web-1"])),
    )
    .await;
    assert_eq!(reborn.status, 201, "{:?}", reborn.body);

    let kinds: Vec<&'static str> = log(store, &format!("fleet.evt.acme.policy.{id}"))
        .await
        .iter()
        .map(|stored| stored.envelope.event.event_type().name())
        .collect();
    assert_eq!(
        kinds,
        [
            "policy.created",
            "policy.assigned",
            "policy.assigned",
            "policy.unassigned",
            "policy.updated",
            "policy.paused",
            "policy.assigned",
            "policy.unassigned",
            "policy.deleted",
            "policy.created",
            "policy.assigned",
        ]
    );
    let tasks: Vec<TaskEvent> = log(store, &format!("fleet.evt.acme.task.{task}"))
        .await
        .into_iter()
        .filter_map(|stored| match stored.envelope.event {
            Event::Task { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    assert!(matches!(
        tasks.as_slice(),
        [TaskEvent::Scheduled { .. }, TaskEvent::Cancelled { .. }]
    ));
    stop(&served.shutdown, served.services).await;
}

fn policy_renamed() -> Value {
    let mut spec = policy("db renamed", &[]);
    spec.as_object_mut().expect("object").remove("agents");
    spec
}

/// The API decides commands at the time of the clock it is given (a manual one here, as in
/// scenarios), not the wall clock: the events it appends carry that time.
#[tokio::test]
async fn the_api_decides_at_the_clock_it_is_given() {
    use chrono::TimeZone;
    use fleet_control::clock::{Clock, ManualClock};

    let fleet = fleet().await;
    let store = &fleet.store;
    let TwoTenants { admin, .. } = two_tenants(store).await;
    let then = chrono::Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap();
    let (listener, addr) = crate::support::api_listener();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let api = crate::support::spawn_api(
        store,
        Clock::Manual(ManualClock::new(then)),
        listener,
        Default::default(),
        &shutdown,
    );
    let body = json!({"machineId": "machine-clocked", "name": "clocked"});
    let created = call(
        addr,
        "POST",
        "/v1/agents",
        Some(admin.text.expose()),
        Some(&body),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let registered: Vec<_> = log(store, "fleet.evt.>")
        .await
        .into_iter()
        .filter(|s| matches!(s.envelope.event, Event::Agent { .. }))
        .collect();
    assert_eq!(registered.len(), 1);
    assert_eq!(
        registered[0].envelope.at, then,
        "the event carries the API's clock"
    );
    shutdown.cancel();
    api.await.expect("the API stops");
}
