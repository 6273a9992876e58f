//! The HTTP API over real HTTP against a real nats-server, with the projector behind it:
//! bearer tokens decide the tenant and the role, another tenant's objects are 404, a
//! revoked token stops working at once, bad ids are 400.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::Utc;
use fleet_events::event::Role;
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::settings::AgentSettings;
use fleet_services::serve::{Service, ServiceConfig};
use fleet_services::tenant;
use tokio_util::sync::CancellationToken;

use crate::support::http::get;
use crate::support::{eventually, fleet, register, spawn_service, stop, system};

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
            .contains("status")
    );
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
