//! Enrollment against a real nats-server: an agent registers with a tenant token through
//! the registrar, keeps its identity, re-registers idempotently, and bad or revoked tokens
//! are refused; the token is found in no stream.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use fleet_agent::config::{Env, RawConfig, ValidConfig, validate};
use fleet_agent::enroll::{self, EnrollError, Source};
use fleet_control::serve::Service;
use fleet_control::tenant;
use fleet_events::access::ENROLL_INBOX_PREFIX;
use fleet_events::codec::Wire;
use fleet_events::enroll::{REGISTER_SUBJECT, RegisterOutcome, RegisterReply, Rejection};
use fleet_events::event::{AgentEvent, Event, Role};
use fleet_events::ids::AgentId;
use fleet_events::store::connect::{NatsAccess, load_or_create_key};
use fleet_events::streams;
use tokio_util::sync::CancellationToken;

use crate::support::{self, fleet, log, spawn_service, stop, system};

/// An agent configuration for `url` with `token`, keeping state in `state_dir`.
fn config(url: &str, token: &str, state_dir: &Path, machine: &str) -> ValidConfig {
    let yaml = format!(
        "natsUrl: {url}\nstateDir: {}\nenrollmentToken: {token}\nmachineId: {machine}\n\
         hostname: db-1\nname: database one\nsettings:\n  maxConcurrent: 3\n",
        state_dir.display()
    );
    let raw = RawConfig::parse(&yaml).expect("parses").overlay(&Env);
    validate(raw).expect("valid")
}

/// Resolves the identity of `config` as the agent does (its key created on first use),
/// without connecting as the agent afterwards.
async fn resolve(
    config: &ValidConfig,
    shutdown: &CancellationToken,
) -> Result<(enroll::Identity, Source), EnrollError> {
    std::fs::create_dir_all(&config.state_dir).expect("state dir");
    let key = load_or_create_key(&config.nats_key_file).expect("key");
    let connection = enroll::Connection {
        config,
        access: NatsAccess::default(),
        key: &key,
        wait_for_server: false,
    };
    enroll::resolve(&connection, shutdown).await
}

fn registrations(events: &[fleet_events::store::Stored]) -> Vec<(AgentId, String)> {
    events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::Agent {
                agent,
                event: AgentEvent::Registered { name, .. },
            } => Some((*agent, name.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_agent_enrolls_once_and_keeps_its_identity() {
    let fleet = fleet().await;
    let tenant = support::tenant();
    tenant::create(&fleet.store, &tenant, "Acme", Utc::now())
        .await
        .expect("tenant created");
    let token = tenant::issue(&fleet.store, &tenant, Role::Enroll, "agents", Utc::now())
        .await
        .expect("token issued");
    let state = tempfile::tempdir().expect("tempdir");
    let config = config(
        &fleet.server.url(),
        token.text.expose(),
        state.path(),
        "m-1",
    );
    let shutdown = CancellationToken::new();

    // The agent asks before the registrar runs: it retries until it is answered.
    let early = config.clone();
    let cancel = shutdown.clone();
    let asking = tokio::spawn(async move { resolve(&early, &cancel).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let registrar = spawn_service(&fleet.store, Service::Registrar, system(), &shutdown);
    let (identity, source) = asking.await.expect("joined").expect("registered");
    assert_eq!(source, Source::Registered { new: true });
    assert_eq!(identity.tenant, tenant);
    assert_eq!(identity.agent, AgentId::for_machine(&tenant, "m-1"));
    let stored = enroll::load(state.path())
        .expect("readable")
        .expect("stored");
    assert_eq!(stored.identity, identity);
    assert_eq!(stored.name, "database one");

    // A restart reads the identity; it does not ask again.
    let again = resolve(&config, &shutdown).await;
    assert_eq!(again.expect("stored").1, Source::Stored);

    // The same machine with a fresh state directory but its key gets the same agent,
    // not a second one.
    let fresh = tempfile::tempdir().expect("tempdir");
    let mut reinstalled = config.clone();
    reinstalled.state_dir = fresh.path().to_owned();
    let (same, source) = resolve(&reinstalled, &shutdown)
        .await
        .expect("registered again");
    assert_eq!(same, identity);
    assert_eq!(source, Source::Registered { new: false });

    // With another key, an enrollment token may not take the agent over; an admin may.
    let rekeyed_dir = tempfile::tempdir().expect("tempdir");
    let mut rekeyed = config.clone();
    rekeyed.state_dir = rekeyed_dir.path().to_owned();
    rekeyed.nats_key_file = rekeyed_dir.path().join("nats.nk");
    assert_refused(resolve(&rekeyed, &shutdown).await, Rejection::KeyMismatch);
    let admin = tenant::issue(&fleet.store, &tenant, Role::Admin, "ops", Utc::now())
        .await
        .expect("token issued");
    let by_admin = self::config(
        &fleet.server.url(),
        admin.text.expose(),
        rekeyed_dir.path(),
        "m-1",
    );
    let (same, _) = resolve(&by_admin, &shutdown).await.expect("key replaced");
    assert_eq!(same, identity);

    let events = log(&fleet.store, "fleet.evt.>").await;
    assert_eq!(
        registrations(&events),
        vec![(identity.agent, "database one".to_owned())],
        "one registration event, with the agent's name"
    );
    let keys: Vec<&str> = events
        .iter()
        .filter_map(|stored| match &stored.envelope.event {
            Event::Agent {
                event: AgentEvent::KeyAuthorized { nkey },
                ..
            } => Some(nkey.as_str()),
            _ => None,
        })
        .collect();
    let first = load_or_create_key(&config.nats_key_file).expect("key");
    let second = load_or_create_key(&rekeyed.nats_key_file).expect("key");
    assert_eq!(
        keys,
        vec![first.public_key(), second.public_key()],
        "the first key, then the admin's replacement: never a seed"
    );
    let Some(Event::Agent {
        event: AgentEvent::Registered {
            settings, hostname, ..
        },
        ..
    }) = events
        .iter()
        .map(|s| &s.envelope.event)
        .find(|e| matches!(e, Event::Agent { .. }))
    else {
        panic!("no registration event");
    };
    assert_eq!(settings.max_concurrent, 3);
    assert_eq!(hostname, "db-1");

    // The token is in no stream: not in the log, not parked, nowhere.
    assert_no_stream_holds(&fleet.client, token.text.expose()).await;
    stop(&shutdown, [registrar]).await;
}

#[tokio::test]
async fn bad_revoked_and_garbled_requests_are_refused() {
    let fleet = fleet().await;
    let tenant = support::tenant();
    tenant::create(&fleet.store, &tenant, "Acme", Utc::now())
        .await
        .expect("tenant created");
    let enroll = tenant::issue(&fleet.store, &tenant, Role::Enroll, "agents", Utc::now())
        .await
        .expect("issued");
    let read_only = tenant::issue(&fleet.store, &tenant, Role::ReadOnly, "dash", Utc::now())
        .await
        .expect("issued");
    let shutdown = CancellationToken::new();
    let registrar = spawn_service(&fleet.store, Service::Registrar, system(), &shutdown);
    let url = fleet.server.url();
    let dir = tempfile::tempdir().expect("tempdir");

    // A read-only token may not enroll.
    let refused = resolve(
        &config(&url, read_only.text.expose(), dir.path(), "m-ro"),
        &shutdown,
    )
    .await;
    assert_refused(refused, Rejection::TokenNotAccepted);

    // A token of a tenant that does not exist.
    let stranger = fleet_events::enroll::TokenText::from_secret(
        &fleet_events::ids::TenantId::new("nobody").expect("slug"),
        &[9; 32],
    );
    let refused = resolve(
        &config(&url, stranger.expose(), dir.path(), "m-x"),
        &shutdown,
    )
    .await;
    assert_refused(refused, Rejection::TokenNotAccepted);

    // A revoked token stops working at once.
    tenant::revoke(&fleet.store, &tenant, enroll.id, Utc::now())
        .await
        .expect("revoked");
    let refused = resolve(
        &config(&url, enroll.text.expose(), dir.path(), "m-2"),
        &shutdown,
    )
    .await;
    assert_refused(refused, Rejection::TokenNotAccepted);
    assert!(enroll::load(dir.path()).expect("readable").is_none());

    // Garbage on the subject gets a reasoned answer, not silence.
    let enrolling = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(ENROLL_INBOX_PREFIX)
        .connect(&url)
        .await
        .expect("connects");
    let answer = enrolling
        .request(REGISTER_SUBJECT, vec![0xff; 40].into())
        .await
        .expect("answered");
    let reply = RegisterReply::from_wire(&answer.payload).expect("decodes");
    assert!(matches!(
        reply.outcome,
        RegisterOutcome::Rejected {
            reason: Rejection::Malformed,
            ..
        }
    ));
    // A request whose reply subject is not an enrolling inbox is not answered: the
    // registrar publishes only where registering machines listen.
    let elsewhere = tokio::time::timeout(
        Duration::from_secs(3),
        fleet
            .client
            .request(REGISTER_SUBJECT, vec![0xff; 40].into()),
    )
    .await;
    assert!(
        !matches!(elsewhere, Ok(Ok(_))),
        "answered on a non-enrolling inbox"
    );
    let events = log(&fleet.store, "fleet.evt.>").await;
    assert!(registrations(&events).is_empty(), "nothing was registered");
    stop(&shutdown, [registrar]).await;
}

fn assert_refused(result: Result<(enroll::Identity, Source), EnrollError>, want: Rejection) {
    match result {
        Err(EnrollError::Refused { reason, .. }) if reason == want => {}
        other => panic!("expected a refusal ({want:?}), got {other:?}"),
    }
}

/// Reads every message of every fleet stream and fails if one contains `needle`.
async fn assert_no_stream_holds(client: &async_nats::Client, needle: &str) {
    let js = async_nats::jetstream::new(client.clone());
    for name in [
        streams::EVENTS,
        streams::DISPATCH,
        streams::INTAKE,
        streams::PARKED,
    ] {
        let stream = js.get_stream(name).await.expect("stream");
        let last = stream.cached_info().state.last_sequence;
        for seq in 1..=last {
            let Ok(message) = stream.get_raw_message(seq).await else {
                continue;
            };
            let text = String::from_utf8_lossy(&message.payload);
            let headers = format!("{:?}", message.headers);
            assert!(
                !text.contains(needle) && !headers.contains(needle),
                "{name} message {seq} holds the secret"
            );
        }
    }
}

/// Tokens issued and revoked at the same time, by several operators: each decision is
/// appended expecting the tenant's last sequence, so every one lands once, in order, and
/// the book folded from the log has them all (the loser of a race decides again).
#[tokio::test]
async fn tokens_issued_and_revoked_at_once_all_land_in_order() {
    let fleet = fleet().await;
    let acme = support::tenant();
    tenant::create(&fleet.store, &acme, "Acme", Utc::now())
        .await
        .expect("tenant");
    let first = tenant::issue(&fleet.store, &acme, Role::Admin, "first", Utc::now())
        .await
        .expect("a token");
    let issues = (0..6).map(|i| {
        let (store, acme) = (fleet.store.clone(), acme.clone());
        tokio::spawn(async move {
            tenant::issue(&store, &acme, Role::Enroll, &format!("n{i}"), Utc::now()).await
        })
    });
    let revokes = (0..3).map(|_| {
        let (store, acme) = (fleet.store.clone(), acme.clone());
        tokio::spawn(async move { tenant::revoke(&store, &acme, first.id, Utc::now()).await })
    });
    let revokes: Vec<_> = revokes.collect();
    let mut ids = Vec::new();
    for issue in issues.collect::<Vec<_>>() {
        ids.push(issue.await.expect("joined").expect("issued").id);
    }
    for revoke in revokes {
        revoke
            .await
            .expect("joined")
            .expect("revoked, or already revoked");
    }
    let (book, _) = tenant::book(&fleet.store, &acme).await.expect("the book");
    for id in &ids {
        assert!(book.is_live(*id), "token {id} is in the log");
    }
    assert!(!book.is_live(first.id), "the first token is revoked");
    let history = fleet
        .store
        .history(&tenant::subject(&acme))
        .await
        .expect("history");
    let revoked = history
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.envelope.event,
                Event::Tenant(fleet_events::event::TenantEvent::TokenRevoked { .. })
            )
        })
        .count();
    assert_eq!(revoked, 1, "revoked once, however often asked");
    // 1 creation + 1 first token + 6 tokens + 1 revocation.
    assert_eq!(history.events.len(), 9);
}
