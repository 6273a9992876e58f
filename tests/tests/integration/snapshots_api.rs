//! The snapshot inventory over the HTTP API, against a real nats-server with the projector
//! behind it: a repository's page and the tenant's list have the documented shapes, page
//! through cursors, filter by repository, agent and policy and tell the fleet's snapshots
//! from external ones; another tenant, even one sharing the repository's URL, sees none of
//! them and cannot tell this tenant's repository from one nobody has.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::Utc;
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, PolicyEvent, RepoEvent, SnapshotInfo};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect};
use serde_json::Value;

use crate::support::http::get;
use crate::support::openapi::assert_documented;
use crate::support::{eventually, fleet, serve_api, stop, two_tenants};

/// Appends `event` of `tenant`.
async fn append(store: &EventStore, tenant: &TenantId, event: Event) {
    let envelope = Envelope::new(tenant.clone(), Utc::now(), event);
    let msg_id = envelope.id.to_string();
    let append = Append {
        envelope: &envelope,
        msg_id: &msg_id,
        expect: Expect::Any,
    };
    store.append(append).await.expect("stored");
}

/// Snapshot `n` of `host`, made `100 - n` minutes ago, by `policy` if given; its short id
/// is [`short`]`(n)`.
fn snapshot(n: u32, host: &str, policy: Option<PolicyId>) -> SnapshotInfo {
    let tags = policy
        .map(|p| vec![format!("policy:{p}")])
        .unwrap_or_default();
    SnapshotInfo {
        id: short(n).repeat(8),
        time: Utc::now() - chrono::Duration::minutes(i64::from(100 - n)),
        host: host.into(),
        paths: vec!["/srv/data".into()],
        more_paths: 0,
        tags,
        size_bytes: Some(1024),
        files: Some(2),
    }
}

fn listed(repo: RepoId, agent: AgentId, added: Vec<SnapshotInfo>) -> Event {
    Event::Repo {
        repo,
        event: RepoEvent::SnapshotsChanged {
            task: TaskId::generate(),
            agent,
            listed_at: Utc::now(),
            added,
            removed: vec![],
        },
    }
}

/// The short ids a page lists, in its order.
fn short_ids(page: &Value) -> Vec<String> {
    page["snapshots"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|s| s["shortId"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn short(n: u32) -> String {
    format!("{n:08x}")
}

fn ids(ns: &[u32]) -> Vec<String> {
    ns.iter().map(|n| short(*n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_listed_paged_and_filtered_and_another_tenant_sees_none() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let served = serve_api(store);
    let addr = served.addr;
    let tenants = two_tenants(store).await;
    let (acme, other) = (tenants.acme.clone(), TenantId::new("other").expect("slug"));
    let mine = Some(tenants.admin.text.expose());
    let theirs = Some(tenants.stranger.text.expose());

    // Acme: an agent on db-1, a policy on a repository of its own holding two of the
    // policy's snapshots (db-1, web-1) and one made by hand on db-1; and a snapshot in a
    // repository whose URL other uses too.
    let agent = AgentId::generate();
    append(
        store,
        &acme,
        Event::Agent {
            agent,
            event: AgentEvent::Registered {
                name: "db-1".into(),
                hostname: "db-1".into(),
                settings: AgentSettings::default(),
            },
        },
    )
    .await;
    let mut spec = samples::policy_spec();
    spec.name = "db nightly".into();
    spec.repository.url = "/srv/restic/acme-only".into();
    let policy = PolicyId::for_name(&acme, &spec.name);
    let own = RepoId::for_url(&spec.repository.url);
    append(
        store,
        &acme,
        Event::Policy {
            policy,
            event: PolicyEvent::Created {
                spec: Box::new(spec.clone()),
            },
        },
    )
    .await;
    append(
        store,
        &acme,
        listed(
            own,
            agent,
            vec![
                snapshot(1, "db-1", Some(policy)),
                snapshot(2, "db-1", None),
                snapshot(3, "web-1", Some(policy)),
            ],
        ),
    )
    .await;
    let shared = RepoId::for_url("/srv/restic/shared");
    append(
        store,
        &acme,
        listed(shared, agent, vec![snapshot(4, "db-1", None)]),
    )
    .await;
    // Other: its own snapshot in the shared repository.
    append(
        store,
        &other,
        listed(shared, AgentId::generate(), vec![snapshot(9, "db-1", None)]),
    )
    .await;

    let doc = get(addr, "/v1/openapi.json", None).await.body;
    let repo_path = |repo: RepoId, query: &str| format!("/v1/repositories/{repo}/snapshots{query}");
    let page = eventually("acme's inventory", Duration::from_secs(20), || async {
        let page = get(addr, &repo_path(own, ""), mine).await;
        match page.body["snapshots"].as_array().map(Vec::len) {
            Some(3) => ControlFlow::Break(page),
            _ => ControlFlow::Continue(page.text),
        }
    })
    .await;
    assert_documented(&doc, "/v1/repositories/{id}/snapshots", "get", &page, 200);
    let body = &page.body;
    assert_eq!(short_ids(body), ids(&[3, 2, 1]), "newest first");
    assert_eq!(body["repository"]["url"], spec.repository.url);
    assert_eq!(body["repository"]["policies"][0]["name"], "db nightly");
    assert_eq!(body["repository"]["snapshotCount"], 3);
    let external: Vec<&Value> = body["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| &s["external"])
        .collect();
    assert_eq!(external, [false, true, false]);
    assert_eq!(body["snapshots"][0]["policyName"], "db nightly");
    assert_eq!(body["snapshots"][0]["repo"], own.to_string());
    assert_eq!(body["snapshots"][0]["repoUrl"], spec.repository.url);

    // A page at a time.
    let first = get(addr, &repo_path(own, "?limit=2"), mine).await;
    assert_eq!(short_ids(&first.body), ids(&[3, 2]));
    let cursor = first.body["nextCursor"].as_str().expect("a next page");
    let rest = get(
        addr,
        &repo_path(own, &format!("?limit=2&cursor={cursor}")),
        mine,
    )
    .await;
    assert_eq!(short_ids(&rest.body), ids(&[1]));
    assert_eq!(rest.body["nextCursor"], Value::Null);
    let bad = get(addr, &repo_path(own, "?cursor=nope"), mine).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let bad = get(addr, "/v1/repositories/not-an-id/snapshots", mine).await;
    assert_eq!(bad.status, 400, "{}", bad.text);

    // The tenant's list, filtered.
    let all = get(addr, "/v1/snapshots", mine).await;
    assert_documented(&doc, "/v1/snapshots", "get", &all, 200);
    assert_eq!(short_ids(&all.body), ids(&[4, 3, 2, 1]));
    for (query, expected) in [
        (format!("?repo={shared}"), ids(&[4])),
        (format!("?agent={agent}"), ids(&[4, 2, 1])),
        ("?host=web-1".to_owned(), ids(&[3])),
        (format!("?policy={policy}"), ids(&[3, 1])),
        (format!("?agent={agent}&policy={policy}"), ids(&[1])),
        (format!("?agent={}", AgentId::generate()), vec![]),
    ] {
        let page = get(addr, &format!("/v1/snapshots{query}"), mine).await;
        assert_eq!(short_ids(&page.body), expected, "{query}: {}", page.text);
    }

    // Another tenant: acme's repository is unknown, exactly like one nobody has; the
    // shared URL shows only its own snapshot; filters naming acme's objects find nothing.
    let unknown = RepoId::for_url("/srv/restic/nobody");
    let refused = get(addr, &repo_path(own, ""), theirs).await;
    assert_documented(
        &doc,
        "/v1/repositories/{id}/snapshots",
        "get",
        &refused,
        404,
    );
    let nobody = get(addr, &repo_path(unknown, ""), theirs).await;
    assert_eq!(
        refused.text.replace(&own.to_string(), "<id>"),
        nobody.text.replace(&unknown.to_string(), "<id>"),
    );
    let shared_page = get(addr, &repo_path(shared, ""), theirs).await;
    assert_eq!(short_ids(&shared_page.body), ids(&[9]));
    assert_eq!(shared_page.body["repository"]["url"], Value::Null);
    let their_all = get(addr, "/v1/snapshots", theirs).await;
    assert_eq!(short_ids(&their_all.body), ids(&[9]));
    for query in [
        format!("?repo={own}"),
        format!("?agent={agent}"),
        format!("?policy={policy}"),
    ] {
        let page = get(addr, &format!("/v1/snapshots{query}"), theirs).await;
        assert_eq!(page.status, 200, "{query}: {}", page.text);
        assert_eq!(short_ids(&page.body), Vec::<String>::new(), "{query}");
    }
    let acme_texts = [spec.repository.url.as_str(), "db nightly"];
    for answer in [&refused, &shared_page, &their_all] {
        for n in [1, 2, 3, 4] {
            assert!(!answer.text.contains(&short(n)), "{}", answer.text);
        }
        for text in acme_texts {
            assert!(!answer.text.contains(text), "{}", answer.text);
        }
    }
    stop(&served.shutdown, served.services).await;
}
