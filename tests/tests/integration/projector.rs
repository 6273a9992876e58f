//! The projector against a real nats-server: read models follow the log, queries over
//! NATS show saturation, backoff, runs and policies, another tenant sees nothing, and a
//! rebuild from sequence 1 stores exactly what the live run stored.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fleet_control::projector::ReadModels;
use fleet_control::projector::query::{AskError, ErrorCode, Query, ask};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::event::{ErrorClass, Event, PolicyEvent, TaskError, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TenantId};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{append, eventually, fleet, register, schedule, spawn_service, stop, system};

fn task(task: fleet_events::ids::TaskId, event: TaskEvent) -> Event {
    Event::Task { task, event }
}

#[tokio::test]
async fn queries_follow_the_log_and_a_rebuild_matches() {
    let fleet = fleet().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServiceConfig {
        projections_dir: Some(dir.path().to_owned()),
        history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
        ..system()
    };
    let shutdown = CancellationToken::new();
    let projector = spawn_service(&fleet.store, Service::Projector, config, &shutdown);
    let store = &fleet.store;

    let agent = AgentId::generate();
    let settings = AgentSettings {
        max_concurrent: 1,
        ..AgentSettings::default()
    };
    register(store, agent, settings).await;
    let policy = PolicyId::generate();
    let created = PolicyEvent::Created {
        spec: Box::new(samples::policy_spec()),
    };
    append(
        store,
        Event::Policy {
            policy,
            event: created,
        },
    )
    .await;
    let assigned = PolicyEvent::AssignedToAgent { agent };
    append(
        store,
        Event::Policy {
            policy,
            event: assigned,
        },
    )
    .await;

    // One task runs (the agent's one slot), another failed and waits for its retry.
    let now = Utc::now();
    let running = schedule(store, agent, samples::policy_spec(), now).await;
    append(
        store,
        task(running, TaskEvent::Dispatched { agent, attempt: 1 }),
    )
    .await;
    append(store, task(running, TaskEvent::Started { attempt: 1 })).await;
    let failing = schedule(
        store,
        agent,
        samples::policy_spec(),
        now - TimeDelta::minutes(1),
    )
    .await;
    append(
        store,
        task(failing, TaskEvent::Dispatched { agent, attempt: 1 }),
    )
    .await;
    append(store, task(failing, TaskEvent::Started { attempt: 1 })).await;
    let error = TaskError::new(ErrorClass::Network, "connection refused", Some(1));
    append(
        store,
        task(failing, TaskEvent::Failed { attempt: 1, error }),
    )
    .await;
    let due_at = now + TimeDelta::minutes(10);
    let retry = TaskEvent::RetryScheduled {
        attempt: 1,
        due_at,
        delay_ms: 600_000,
    };
    append(store, task(failing, retry)).await;
    let repo = fleet_events::ids::RepoId::for_url(&samples::policy_spec().repository.url);
    let opened = fleet_events::event::RepoEvent::CircuitOpened {
        until: now + TimeDelta::minutes(1),
        failures: 5,
    };
    append(
        store,
        Event::Repo {
            repo,
            event: opened,
        },
    )
    .await;

    let tenant = crate::support::tenant();
    let client = &fleet.client;
    let seen: Value = eventually(
        "the agent saturated and in backoff",
        Duration::from_secs(20),
        || async {
            match ask(client, &tenant, &Query::Agent { id: agent }).await {
                Ok(view) if view["saturated"] == true && view["pendingRetries"] == 1 => {
                    ControlFlow::Break(view)
                }
                other => ControlFlow::Continue(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(seen["runningTasks"], 1);
    assert_eq!(seen["name"], "scripted");
    assert!(
        seen["saturation"]
            .as_str()
            .unwrap_or_default()
            .contains("1"),
        "{seen}"
    );
    let until = seen["backoffUntil"].as_str().expect("a backoff time");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(until)
            .expect("RFC 3339")
            .timestamp(),
        due_at.timestamp()
    );

    let backoff = ask(client, &tenant, &Query::AgentBackoff { id: agent })
        .await
        .expect("backoff");
    assert_eq!(backoff["retries"][0]["task"], failing.to_string());

    let waiting = Query::Tasks {
        status: Some("retry_scheduled".into()),
        agent: None,
        policy: None,
        since: None,
        limit: None,
    };
    let tasks = ask(client, &tenant, &waiting).await.expect("tasks");
    assert_eq!(tasks.as_array().map(Vec::len), Some(1), "{tasks}");
    assert_eq!(tasks[0]["id"], failing.to_string());

    let runs = Query::Runs {
        agent: Some(agent),
        policy: None,
        outcome: Some("failed".into()),
        since: None,
        limit: Some(10),
    };
    let runs = ask(client, &tenant, &runs).await.expect("runs");
    assert_eq!(runs[0]["task"], failing.to_string());
    assert_eq!(runs[0]["errorClass"], "network", "{runs}");

    let policies = ask(
        client,
        &tenant,
        &Query::Policies {
            include_deleted: false,
            limit: None,
            offset: None,
        },
    )
    .await
    .expect("policies");
    assert_eq!(policies[0]["agents"][0], agent.to_string());
    assert_eq!(policies[0]["nextFires"].as_array().map(Vec::len), Some(5));

    let summary = ask(client, &tenant, &Query::Summary)
        .await
        .expect("summary");
    assert_eq!(summary["agents"]["saturated"], 1, "{summary}");
    assert_eq!(summary["agents"]["inBackoff"], 1, "{summary}");
    assert_eq!(summary["openCircuits"], 1, "{summary}");
    let repos = ask(client, &tenant, &Query::Repos).await.expect("repos");
    assert_eq!(repos[0]["circuit"], "open", "{repos}");

    // Another tenant asking about this agent learns nothing.
    let other = TenantId::new("other").expect("slug");
    match ask(client, &other, &Query::Agent { id: agent }).await {
        Err(AskError::Refused {
            code: ErrorCode::NotFound,
            ..
        }) => {}
        other => panic!("another tenant must get not-found, got {other:?}"),
    }
    let listed = ask(
        client,
        &other,
        &Query::Agents {
            name: None,
            limit: None,
            offset: None,
        },
    )
    .await
    .expect("agents");
    assert_eq!(listed, Value::Array(Vec::new()));

    // A request that is not a query gets a reasoned answer.
    let garbage = client
        .request(
            fleet_events::subject::query(&tenant),
            "{\"query\":\"dropAll\"}".into(),
        )
        .await
        .expect("answered");
    let text = String::from_utf8_lossy(&garbage.payload);
    assert!(text.contains("bad_request"), "{text}");

    // Caught up: no model lags behind the events it reads.
    let status = eventually("every model caught up", Duration::from_secs(20), || async {
        let answer = fleet_control::projector::query::request(
            client,
            fleet_events::subject::projections_status(),
            b"{}".to_vec(),
        )
        .await;
        match answer.as_ref().ok().and_then(Value::as_array) {
            Some(rows)
                if rows
                    .iter()
                    .all(|row| row["lag"] == 0 && row["checkpoint"] != 0) =>
            {
                ControlFlow::Break(rows.clone())
            }
            _ => ControlFlow::Continue(format!("{answer:?}")),
        }
    })
    .await;
    assert_eq!(
        status.len(),
        7,
        "tasks, agents, runs, policies, repos, snapshots, notifications"
    );
    stop(&shutdown, [projector]).await;

    // A rebuild from sequence 1 stores the same bytes as the live run.
    let mut models = ReadModels::open(dir.path(), fleet_control::projector::DEFAULT_HISTORY_DAYS)
        .expect("reopen");
    let before = dumps(&models);
    models.rebuild(store).await.expect("rebuilt");
    assert_eq!(dumps(&models), before);
    assert!(
        before.iter().all(|d| !d.is_empty()),
        "every model holds something"
    );
}

fn dumps(models: &ReadModels) -> Vec<Vec<fleet_projections::Entry>> {
    vec![
        models.tasks.dump().expect("dump"),
        models.agents.dump().expect("dump"),
        models.runs.dump().expect("dump"),
        models.policies.dump().expect("dump"),
        models.repos.dump().expect("dump"),
        models.snapshots.dump().expect("dump"),
        models.notifications.dump().expect("dump"),
    ]
}
