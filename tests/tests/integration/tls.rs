//! TLS for NATS against a real nats-server that requires it, with certificate authorities
//! generated in the test: a client trusting the CA uses the event store; clients without
//! it are refused; an agent with `natsCaFile` registers and then connects as itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use async_nats::rustls::{CertificateError, Error as RustlsError};
use async_nats::{ConnectError, ConnectErrorKind};
use chrono::Utc;
use fleet_agent::config::{Env, RawConfig, validate};
use fleet_agent::enroll::{self, EnrollError, Source};
use fleet_control::serve::Service;
use fleet_control::tenant;
use fleet_events::event::Role;
use fleet_events::ids::AgentId;
use fleet_events::store::connect::{NatsAccess, load_or_create_key};
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::streams::StreamOptions;
use fleet_tests::NatsServer;
use fleet_tests::pki::Pki;
use tokio_util::sync::CancellationToken;

use crate::support::{self, agent_event, spawn_service, stop, system};

/// Starts nats-server requiring TLS with `pki`'s certificate; the handshake timeout is
/// raised from its short default so a busy machine does not fail the test.
fn tls_server(pki: &Pki) -> NatsServer {
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 10\n}}\n",
        pki.cert.display(),
        pki.key.display(),
    );
    NatsServer::start_configured_with(&config, &[]).expect("start nats-server with TLS")
}

/// The rustls error that ended the TLS handshake, if that is why connecting failed.
/// async-nats 0.51 reports a failed handshake as `ConnectErrorKind::Io` (tokio-rustls's
/// `io::Error` holding rustls's error); `ConnectErrorKind::Tls` is only for TLS that could
/// not be set up (unreadable root certificates).
fn handshake_error(error: &ConnectError) -> Option<&RustlsError> {
    std::error::Error::source(error)?
        .downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<RustlsError>()
}

/// Whether the client refused the server's certificate as signed by an unknown issuer.
fn unknown_issuer(error: &ConnectError) -> bool {
    matches!(
        handshake_error(error),
        Some(RustlsError::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    )
}

#[tokio::test]
async fn a_client_trusting_the_ca_uses_the_event_store_over_tls() {
    let pki = Pki::generate();
    let server = tls_server(&pki);

    // The server's INFO requires TLS, and a client speaking plain text gets no PONG: the
    // server ends the connection (its handshake fails).
    let tcp = TcpStream::connect(("127.0.0.1", server.port())).expect("TCP connects");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut plain = BufReader::new(tcp);
    let mut info = String::new();
    plain.read_line(&mut info).expect("INFO");
    assert!(info.contains("\"tls_required\":true"), "{info}");
    plain
        .get_mut()
        .write_all(b"CONNECT {}\r\nPING\r\n")
        .expect("sent");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("PONG"));

    let client = NatsAccess::tls(Some(pki.ca.clone()))
        .connect(&support::servers(&server))
        .await
        .expect("connects over TLS");
    let store = EventStore::new(client);
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("ensure streams");
    let envelope = agent_event(AgentId::generate(), 1);
    let msg_id = envelope.id.to_string();
    let append = Append {
        envelope: &envelope,
        msg_id: &msg_id,
        expect: Expect::Any,
    };
    store.append(append).await.expect("appended");
    let subject = envelope.event.subject(&support::tenant());
    let history = store.history(&subject).await.expect("history");
    let read: Vec<_> = history.events.into_iter().map(|s| s.envelope).collect();
    assert_eq!(read, vec![envelope]);
}

#[tokio::test]
async fn clients_not_trusting_the_ca_are_refused() {
    let pki = Pki::generate();
    let server = tls_server(&pki);
    // Without a CA the client still upgrades (the server's INFO requires TLS), trusting
    // only the system's roots (or failing to set TLS up where they cannot be read); with
    // the other CA it trusts that one only. Neither signed the server's certificate.
    let url = support::servers(&server);
    let error = NatsAccess::tls(None)
        .connect(&url)
        .await
        .expect_err("no CA");
    assert!(
        unknown_issuer(&error) || error.kind() == ConnectErrorKind::Tls,
        "{error:?}"
    );
    let other = NatsAccess::tls(Some(pki.other_ca.clone()));
    let error = other.connect(&url).await.expect_err("the other CA");
    assert!(unknown_issuer(&error), "{error:?}");
}

#[tokio::test]
async fn an_agent_with_nats_ca_file_registers_and_connects_as_itself_over_tls() {
    let pki = Pki::generate();
    let server = tls_server(&pki);
    let access = NatsAccess::tls(Some(pki.ca.clone()));
    let store = EventStore::new(
        access
            .connect(&support::servers(&server))
            .await
            .expect("connects"),
    );
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("ensure streams");
    let tenant = support::tenant();
    tenant::create(&store, &tenant, "Acme", Utc::now())
        .await
        .expect("tenant created");
    let token = tenant::issue(&store, &tenant, Role::Enroll, "agents", Utc::now())
        .await
        .expect("token issued");
    let shutdown = CancellationToken::new();
    let registrar = spawn_service(&store, Service::Registrar, system(), &shutdown);

    let state = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "natsUrl: {}\nnatsCaFile: {}\nstateDir: {}\nenrollmentToken: {}\nmachineId: m-tls\n",
        server.url(),
        pki.ca.display(),
        state.path().display(),
        token.text.expose(),
    );
    let raw = RawConfig::parse(&yaml).expect("parses").overlay(&Env);
    let config = validate(raw).expect("valid");
    assert_eq!(config.nats_ca_file.as_ref(), Some(&pki.ca));
    let key = load_or_create_key(&config.nats_key_file).expect("key");
    // As `fleet-agent run` builds it: the configured CA, no key yet.
    let connection = enroll::Connection {
        config: &config,
        access: NatsAccess::tls(config.nats_ca_file.clone()),
        key: &key,
        wait_for_server: false,
    };
    let (identity, source) = enroll::resolve(&connection, &shutdown)
        .await
        .expect("registered over TLS");
    assert_eq!(source, Source::Registered { new: true });
    assert_eq!(identity.agent, AgentId::for_machine(&tenant, "m-tls"));
    // With its key and inbox prefix; this server has no authorization, so the key is
    // presented but not checked here.
    let agent = enroll::connect_as(&connection, &identity, &shutdown)
        .await
        .expect("connects as the agent over TLS");
    agent.flush().await.expect("the connection works");

    // The same agent trusting the other CA cannot even ask to register.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut untrusting = config.clone();
    untrusting.state_dir = elsewhere.path().to_owned();
    let refused = enroll::Connection {
        config: &untrusting,
        access: NatsAccess::tls(Some(pki.other_ca.clone())),
        ..connection
    };
    let result = enroll::resolve(&refused, &shutdown).await;
    assert!(matches!(result, Err(EnrollError::Connect(_))), "{result:?}");
    stop(&shutdown, [registrar]).await;
}
