//! Isolation enforced by nats-server itself, running the authorization config the access
//! service renders from the log: agents enroll with their own keys, and every attempt by
//! agent A on agent B's subjects, consumers, the event log or the streams is made and
//! refused by the server; a report A forges about B's task is parked by intake; a
//! decommissioned agent is shut out.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use chrono::Utc;
use fleet_agent::config::{Env, RawConfig, validate};
use fleet_agent::enroll::{self, Identity};
use fleet_control::access::book::AccessBook;
use fleet_control::access::render::{RenderConfig, render};
use fleet_control::access::{AccessConfig, Reload};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_control::tenant;
use fleet_events::access::agent_consumer;
use fleet_events::enroll::REGISTER_SUBJECT;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{AgentEvent, Event, Role, TaskEvent};
use fleet_events::ids::{PolicyId, TaskId};
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::samples;
use fleet_events::store::EventStore;
use fleet_events::store::connect::{NatsAccess, load_or_create_key};
use fleet_events::streams::{self, StreamOptions};
use fleet_events::subject::{AgentSubject, Channel, query};
use fleet_tests::NatsServer;
use tokio_util::sync::CancellationToken;

use crate::support::{
    self, append, append_at, eventually, park_reason, parked, spawn_service, system, task_events,
    tenant,
};

/// How long a refused request is given before it counts as unanswered.
const REFUSED_WITHIN: Duration = Duration::from_secs(2);
/// The auth file beside the server's configuration, which includes it.
const AUTH_FILE: &str = "auth.conf";

/// A nats-server running the rendered config, the control plane on it, two agents of
/// tenant acme (A and B) connected with their own keys.
struct Secured {
    server: NatsServer,
    store: EventStore,
    shutdown: CancellationToken,
    a: Agent,
    b: Agent,
    _dirs: Vec<tempfile::TempDir>,
}

struct Agent {
    identity: Identity,
    key: nkeys::KeyPair,
    client: async_nats::Client,
    js: jetstream::Context,
}

/// A nats-server running the rendered config (nothing admitted but the control plane and
/// anonymous enrollment), registrar and intake on it, tenant acme; the configuration that
/// runs the access service (not started: the caller starts it).
async fn secured_server() -> (NatsServer, EventStore, ServiceConfig, CancellationToken) {
    crate::support::log_from_env();
    let control = nkeys::KeyPair::new_user();
    let render_config = RenderConfig {
        control_keys: vec![control.public_key()],
        anonymous_enroll: true,
    };
    let initial = render(&AccessBook::default(), &render_config);
    let server = NatsServer::start_configured_with(
        &format!("include \"{AUTH_FILE}\"\n"),
        &[(AUTH_FILE, &initial)],
    )
    .expect("start nats-server with the rendered config");
    let client = NatsAccess::default()
        .with_key(&control)
        .connect(&support::servers(&server))
        .await
        .expect("the control plane's key is admitted");
    let store = EventStore::new(client);
    store
        .ensure_streams(&StreamOptions::default())
        .await
        .expect("streams");
    let shutdown = CancellationToken::new();
    let mut config = system();
    config.access = Some(AccessConfig {
        out: Some(server.config_dir().join(AUTH_FILE)),
        render: render_config,
        reload: Reload::Pid(server.pid().expect("running")),
    });
    for service in [Service::Registrar, Service::Intake] {
        spawn_service(&store, service, config.clone(), &shutdown);
    }
    tenant::create(&store, &tenant(), "Acme", Utc::now())
        .await
        .expect("tenant");
    (server, store, config, shutdown)
}

async fn secured() -> Secured {
    let (server, store, config, shutdown) = secured_server().await;
    spawn_service(&store, Service::Access, config, &shutdown);
    let token = tenant::issue(&store, &tenant(), Role::Enroll, "agents", Utc::now())
        .await
        .expect("token");
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let url = server.url();
    let a = enrolled(
        &url,
        token.text.expose(),
        dir_a.path(),
        "machine-a",
        &shutdown,
    )
    .await;
    let b = enrolled(
        &url,
        token.text.expose(),
        dir_b.path(),
        "machine-b",
        &shutdown,
    )
    .await;
    Secured {
        server,
        store,
        shutdown,
        a,
        b,
        _dirs: vec![dir_a, dir_b],
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// An agent that registers with `token` (its key created in `state`) and connects as
/// itself once the server admits its key.
async fn enrolled(
    url: &str,
    token: &str,
    state: &Path,
    machine: &str,
    shutdown: &CancellationToken,
) -> Agent {
    let yaml = format!(
        "natsUrl: {url}\nstateDir: {}\nenrollmentToken: {token}\nmachineId: {machine}\n\
         hostname: {machine}\n",
        state.display()
    );
    let config = validate(RawConfig::parse(&yaml).expect("yaml").overlay(&Env)).expect("valid");
    let key = load_or_create_key(&config.nats_key_file).expect("key");
    let connection = enroll::Connection {
        config: &config,
        access: NatsAccess::default(),
        key: &key,
        wait_for_server: false,
    };
    let (identity, _) = enroll::resolve(&connection, shutdown)
        .await
        .expect("registered");
    let client = tokio::time::timeout(
        Duration::from_secs(30),
        enroll::connect_as(&connection, &identity, shutdown),
    )
    .await
    .expect("the server admits the new key within 30 s")
    .expect("connected as the agent");
    let js = jetstream::ContextBuilder::new()
        .timeout(REFUSED_WITHIN)
        .build(client.clone());
    Agent {
        identity,
        key,
        client,
        js,
    }
}

/// Asserts that `attempt` fails or goes unanswered: the server refused it.
async fn refused<T, E: std::fmt::Debug>(what: &str, attempt: impl Future<Output = Result<T, E>>) {
    if let Ok(Ok(_)) = tokio::time::timeout(REFUSED_WITHIN * 2, attempt).await {
        panic!("{what}: allowed, but must be refused");
    }
}

/// Returns once the server has taken every subscription `agent` made before: the agent
/// publishes on its progress subject and the control plane (`progress`, subscribed there)
/// receives it. The server handles a connection's messages in order, and a client's
/// `flush` only writes them out, so without this a request from another connection can
/// arrive first and be answered "no responders".
async fn server_holds_subscriptions_of(agent: &Agent, progress: &mut async_nats::Subscriber) {
    use futures::StreamExt;
    agent
        .client
        .publish(subject(agent, Channel::Progress), "subscribed".into())
        .await
        .expect("sent");
    agent.client.flush().await.expect("flushed");
    let marker = tokio::time::timeout(REFUSED_WITHIN * 5, progress.next())
        .await
        .expect("the agent's marker arrives")
        .expect("a message");
    assert_eq!(&marker.payload[..], b"subscribed");
}

/// Subscribes the control plane's `client` to `subject` and returns once the server holds
/// the subscription: a marker the control plane publishes there itself comes back (a
/// connection's messages are handled in order; `flush` alone only writes to the socket, so
/// an agent's publish on another connection could reach the server first and be lost).
async fn control_listens(client: &async_nats::Client, subject: String) -> async_nats::Subscriber {
    use futures::StreamExt;
    let mut subscriber = client.subscribe(subject.clone()).await.expect("subscribed");
    client
        .publish(subject, "listening".into())
        .await
        .expect("sent");
    client.flush().await.expect("flushed");
    let marker = tokio::time::timeout(REFUSED_WITHIN * 5, subscriber.next())
        .await
        .expect("the control plane's own marker arrives")
        .expect("a message");
    assert_eq!(&marker.payload[..], b"listening");
    subscriber
}

fn subject(agent: &Agent, channel: Channel) -> String {
    AgentSubject {
        agent: agent.identity.agent,
        channel,
    }
    .to_string()
}

/// Publishes a task message for `agent` as the dispatcher would (any bytes do here).
async fn order(store: &EventStore, agent: &Agent, body: &'static str) {
    store
        .jetstream()
        .publish(subject(agent, Channel::Tasks), body.into())
        .await
        .expect("sent")
        .await
        .expect("stored");
}

/// Pulls one message from `agent`'s own consumer, as `agent`.
async fn pull_own(agent: &Agent) -> Option<String> {
    use futures::StreamExt;
    let stream = agent
        .js
        .get_stream_no_info(streams::DISPATCH)
        .await
        .expect("stream handle");
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_consumer(&agent_consumer(agent.identity.agent))
        .await
        .expect("an agent may read its own consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(REFUSED_WITHIN)
        .messages()
        .await
        .expect("an agent may pull from its own consumer");
    let message = batch.next().await?.expect("message");
    message.ack().await.expect("an agent may ack its own tasks");
    Some(String::from_utf8_lossy(&message.payload).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_can_touch_nothing_but_its_own_subjects() {
    let s = secured().await;
    let (a, b) = (&s.a, &s.b);

    // What A may do works: pull and ack its own task, publish its own heartbeat.
    order(&s.store, a, "for a").await;
    order(&s.store, b, "for b").await;
    assert_eq!(pull_own(a).await.as_deref(), Some("for a"));
    a.js.publish(subject(a, Channel::Heartbeat), "beat".into())
        .await
        .expect("sent")
        .await
        .expect("A's own heartbeat is stored");

    // A cannot read B's consumer or pull B's tasks, by the API or by a raw request.
    let dispatch =
        a.js.get_stream_no_info(streams::DISPATCH)
            .await
            .expect("handle");
    let b_consumer = agent_consumer(b.identity.agent);
    refused(
        "A reads B's consumer",
        dispatch.get_consumer::<pull::Config>(&b_consumer),
    )
    .await;
    let next = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{b_consumer}",
        streams::DISPATCH
    );
    refused(
        "A pulls B's task",
        a.client
            .request(next.clone(), r#"{"batch":1,"expires":1000000000}"#.into()),
    )
    .await;
    refused(
        "A creates a consumer on B's tasks",
        dispatch.create_consumer(pull::Config {
            durable_name: Some("stolen".into()),
            filter_subject: subject(b, Channel::Tasks),
            ..Default::default()
        }),
    )
    .await;

    // A's subscriptions to B's subjects and inbox get nothing, though B's task is
    // published and B pulls it (through its inbox) meanwhile.
    let mut a_progress =
        control_listens(&s.store.jetstream().client(), subject(a, Channel::Progress)).await;
    let mut snoops = Vec::new();
    for filter in [
        subject(b, Channel::Tasks),
        format!(
            "{}.>",
            fleet_events::access::agent_inbox_prefix(b.identity.agent)
        ),
        ">".to_owned(),
        "_INBOX.>".to_owned(),
    ] {
        snoops.push(a.client.subscribe(filter).await.expect("sent"));
    }
    // The server has handled (and refused) those subscriptions before B's task is sent.
    server_holds_subscriptions_of(a, &mut a_progress).await;
    order(&s.store, b, "again for b").await;
    assert_eq!(
        pull_own(b).await.as_deref(),
        Some("for b"),
        "B's task waited for B"
    );
    assert_eq!(pull_own(b).await.as_deref(), Some("again for b"));
    for mut snoop in snoops {
        use futures::StreamExt;
        let got = tokio::time::timeout(REFUSED_WITHIN, snoop.next()).await;
        assert!(
            !matches!(got, Ok(Some(_))),
            "A received a message on another agent's subject"
        );
    }

    // A cannot publish B's reports or heartbeats, nor into the event log.
    let intake = s
        .store
        .jetstream()
        .get_stream(streams::INTAKE)
        .await
        .expect("intake");
    for channel in [Channel::Reports, Channel::Heartbeat] {
        let target = subject(b, channel);
        refused(
            "A publishes as B",
            publish_stored(&a.js, target.clone(), b"forged".to_vec()),
        )
        .await;
        assert!(
            intake
                .get_last_raw_message_by_subject(&target)
                .await
                .is_err(),
            "nothing A sent is on {target}"
        );
    }
    let event_subject = format!("fleet.evt.{}.task.{}", tenant(), TaskId::generate());
    refused(
        "A appends to the event log",
        publish_stored(&a.js, event_subject.clone(), b"forged".to_vec()),
    )
    .await;
    let events = s
        .store
        .jetstream()
        .get_stream(streams::EVENTS)
        .await
        .expect("events");
    assert!(
        events
            .get_last_raw_message_by_subject(&event_subject)
            .await
            .is_err()
    );

    // A cannot read the event log: no stream info, no message get, no consumer, and the
    // projector's queries are not A's to ask.
    refused("A reads the log's info", a.js.get_stream(streams::EVENTS)).await;
    let log =
        a.js.get_stream_no_info(streams::EVENTS)
            .await
            .expect("handle");
    refused("A gets a message of the log", log.get_raw_message(1)).await;
    refused(
        "A opens a consumer on the log",
        log.create_consumer(jetstream::consumer::push::OrderedConfig {
            deliver_subject: format!(
                "{}.log",
                fleet_events::access::agent_inbox_prefix(a.identity.agent)
            ),
            ..Default::default()
        }),
    )
    .await;
    refused(
        "A asks the projector",
        a.client
            .request(query(&tenant()), r#"{"query":"agents"}"#.into()),
    )
    .await;

    // A can delete or purge no stream; every stream is still whole.
    for name in [
        streams::EVENTS,
        streams::DISPATCH,
        streams::INTAKE,
        streams::PARKED,
        streams::LEASES,
    ] {
        refused("A deletes a stream", a.js.delete_stream(name)).await;
        let handle = a.js.get_stream_no_info(name).await.expect("handle");
        refused("A purges a stream", async { handle.purge().await }).await;
    }
    let info = events
        .clone()
        .info()
        .await
        .expect("the log is still there")
        .clone();
    assert!(info.state.messages > 0, "the log was not purged");
    // The refusals were the server's: its log names them.
    let log = std::fs::read_to_string(s.server.log_path()).expect("server log");
    let key = a.key.public_key();
    for (kind, refused) in [
        ("Publish", next),
        (
            "Publish",
            format!("$JS.API.STREAM.DELETE.{}", streams::EVENTS),
        ),
        ("Subscription", subject(b, Channel::Tasks)),
    ] {
        assert!(
            logged_violation(&log, &key, kind, &refused),
            "the server log lacks the {kind} violation of {key} on {refused}; its violations:\n{}",
            log.lines()
                .filter(|l| l.contains("Violation"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    s.shutdown.cancel();
}

/// Live progress and browsing are confined too: A publishes progress and answers browse
/// requests only on its own subjects (answering the control plane's request on its reply
/// subject, which `allow_responses` permits once); B's progress, B's browse requests and
/// asking B for a listing are refused by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_publishes_progress_and_answers_browse_requests_only_as_itself() {
    use futures::StreamExt;
    let s = secured().await;
    let (a, b) = (&s.a, &s.b);
    let control = s.store.jetstream().client();

    // A's own progress reaches the control plane; progress on B's subject never does.
    let mut a_progress = control_listens(&control, subject(a, Channel::Progress)).await;
    let mut b_progress = control_listens(&control, subject(b, Channel::Progress)).await;
    a.client
        .publish(subject(a, Channel::Progress), "mine".into())
        .await
        .expect("sent");
    a.client
        .publish(subject(b, Channel::Progress), "forged".into())
        .await
        .expect("sent (the server refuses it)");
    a.client.flush().await.expect("flushed");
    let got = tokio::time::timeout(REFUSED_WITHIN * 2, a_progress.next())
        .await
        .expect("A's own progress arrives")
        .expect("a message");
    assert_eq!(&got.payload[..], b"mine");
    let forged = tokio::time::timeout(REFUSED_WITHIN, b_progress.next()).await;
    assert!(
        !matches!(forged, Ok(Some(_))),
        "A's progress on B's subject arrived"
    );

    // B listens on its browse subject; A tries to listen there too and to ask B.
    let mut b_browse = b
        .client
        .subscribe(subject(b, Channel::Browse))
        .await
        .expect("B may listen to its own browse subject");
    server_holds_subscriptions_of(b, &mut b_progress).await;
    let mut snoop = a
        .client
        .subscribe(subject(b, Channel::Browse))
        .await
        .expect("sent (the server refuses it)");
    a.client.flush().await.expect("flushed");
    refused(
        "A asks B for a listing",
        a.client.request(subject(b, Channel::Browse), "ls".into()),
    )
    .await;
    let asked = tokio::time::timeout(REFUSED_WITHIN, b_browse.next()).await;
    assert!(!matches!(asked, Ok(Some(_))), "A's request reached B");

    // The control plane asks B: B answers, and A's subscription saw nothing.
    let b_client = b.client.clone();
    let b_answers = tokio::spawn(async move {
        let request = b_browse.next().await.expect("the control plane's request");
        let reply = request.reply.expect("a reply subject");
        b_client
            .publish(reply, "B's page".into())
            .await
            .expect("sent");
        b_client.flush().await.expect("flushed");
    });
    let reply = tokio::time::timeout(
        REFUSED_WITHIN * 5,
        control.request(subject(b, Channel::Browse), "ls /".into()),
    )
    .await
    .expect("B answers in time")
    .expect("B's answer");
    assert_eq!(&reply.payload[..], b"B's page");
    b_answers.await.expect("joined");
    let snooped = tokio::time::timeout(REFUSED_WITHIN, snoop.next()).await;
    assert!(
        !matches!(snooped, Ok(Some(_))),
        "A received a request made to B"
    );

    // A answers the control plane's request to A on the request's reply subject.
    let mut a_browse = a
        .client
        .subscribe(subject(a, Channel::Browse))
        .await
        .expect("A may listen to its own browse subject");
    server_holds_subscriptions_of(a, &mut a_progress).await;
    let a_client = a.client.clone();
    let answering = tokio::spawn(async move {
        let request = a_browse.next().await.expect("the control plane's request");
        assert_eq!(&request.payload[..], b"ls /srv");
        let reply = request.reply.expect("a reply subject");
        a_client
            .publish(reply, "page of /srv".into())
            .await
            .expect("sent");
        a_client.flush().await.expect("flushed");
    });
    let reply = tokio::time::timeout(
        REFUSED_WITHIN * 5,
        control.request(subject(a, Channel::Browse), "ls /srv".into()),
    )
    .await
    .expect("A answers in time")
    .expect("the answer is allowed through");
    assert_eq!(&reply.payload[..], b"page of /srv");
    answering.await.expect("joined");

    let log = std::fs::read_to_string(s.server.log_path()).expect("server log");
    let key = a.key.public_key();
    for (kind, subject) in [
        ("Publish", subject(b, Channel::Progress)),
        ("Publish", subject(b, Channel::Browse)),
        ("Subscription", subject(b, Channel::Browse)),
    ] {
        assert!(
            logged_violation(&log, &key, kind, &subject),
            "the server log lacks the {kind} violation of {key} on {subject}"
        );
    }
    s.shutdown.cancel();
}

/// Whether the server logged a `kind` ("Publish" or "Subscription") violation by `key` on
/// `subject`. nats-server 2.9 writes `Publish Violation - Nkey "KEY", Subject "S"`, later
/// versions `"$G/nkey:KEY" - Publish Violation - Subject "S"`.
fn logged_violation(log: &str, key: &str, kind: &str, subject: &str) -> bool {
    let (kind, subject) = (format!("{kind} Violation"), format!("Subject {subject:?}"));
    log.lines()
        .any(|line| line.contains(key) && line.contains(&kind) && line.contains(&subject))
}

async fn publish_stored(
    js: &jetstream::Context,
    subject: String,
    payload: Vec<u8>,
) -> Result<(), String> {
    let ack = js
        .publish(subject, payload.into())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_reports_are_parked_and_a_decommissioned_agent_is_shut_out() {
    let s = secured().await;
    let (a, b) = (&s.a, &s.b);
    let at = samples::at(0);
    let policy = PolicyId::generate();
    let task = TaskId::for_fire(policy, b.identity.agent, at);
    for event in [
        TaskEvent::Scheduled {
            policy,
            agent: b.identity.agent,
            fire_at: at,
            run_at: at,
            spec: Box::new(samples::policy_spec()),
        },
        TaskEvent::Dispatched {
            agent: b.identity.agent,
            attempt: 1,
        },
    ] {
        append_at(&s.store, Event::Task { task, event }, at).await;
    }

    // A reports on its own subject (which it may) about B's task: once as itself, once
    // claiming to be B. Both are stored, judged and parked.
    for claimed in [a.identity.agent, b.identity.agent] {
        let report = AgentReport {
            schema: SCHEMA_VERSION,
            agent: claimed,
            tenant: tenant(),
            task,
            attempt: 1,
            at: samples::at(5),
            status: ReportStatus::Started,
        };
        publish_stored(
            &a.js,
            subject(a, Channel::Reports),
            report.to_wire().expect("encodes"),
        )
        .await
        .expect("A may report on its own subject");
    }
    let parked = parked(&s.store, 2, Duration::from_secs(15)).await;
    for message in &parked {
        let (kind, reason) = park_reason(message);
        assert_eq!(kind, "rejected", "{reason}");
    }
    let events = task_events(&s.store, task).await;
    assert_eq!(events.len(), 2, "B's task did not move: {events:?}");

    // An anonymous connection may only ask to register.
    let anonymous = async_nats::connect(s.server.url())
        .await
        .expect("anonymous");
    let anonymous_js = jetstream::ContextBuilder::new()
        .timeout(REFUSED_WITHIN)
        .build(anonymous.clone());
    refused(
        "an anonymous client appends to the log",
        publish_stored(
            &anonymous_js,
            format!("fleet.evt.{}.agent.{}", tenant(), a.identity.agent),
            b"forged".to_vec(),
        ),
    )
    .await;
    refused(
        "an anonymous client asks for a registration answer elsewhere",
        anonymous.request(REGISTER_SUBJECT, b"x".to_vec().into()),
    )
    .await;

    // Decommissioning B removes its user: the server no longer admits its key.
    append(
        &s.store,
        Event::Agent {
            agent: b.identity.agent,
            event: AgentEvent::Decommissioned,
        },
    )
    .await;
    let url = support::servers(&s.server);
    eventually("B's key to be refused", Duration::from_secs(20), || {
        let access = NatsAccess::default().with_key(&b.key);
        let url = url.clone();
        async move {
            match access.connect(&url).await {
                Err(error)
                    if error.kind() == async_nats::ConnectErrorKind::AuthorizationViolation =>
                {
                    std::ops::ControlFlow::Break(())
                }
                other => std::ops::ControlFlow::Continue(format!("{:?}", other.map(|_| ()))),
            }
        }
    })
    .await;
    let still = NatsAccess::default().with_key(&a.key).connect(&url).await;
    assert!(still.is_ok(), "A is still admitted");
    drop(b.client.clone());
    s.shutdown.cancel();
}

/// The real `fleet-agent run`, enrolling: its first connections as itself are refused
/// until the access service has reloaded the server with its key (here it starts only once
/// the agent has been refused, as when it lags or restarts). That is a normal step of a
/// first start, told by the agent's own WARN line; async-nats's ERROR line
/// (`authorization violation`) for each refusal is not shown then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolling_agent_logs_no_error_while_its_key_is_authorized() {
    let (server, store, config, shutdown) = secured_server().await;
    let token = tenant::issue(&store, &tenant(), Role::Enroll, "agents", Utc::now())
        .await
        .expect("token");
    let dir = tempdir();
    let agent_config = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "natsUrl: {}\nstateDir: {}\nenrollmentToken: {}\nmachineId: machine-c\n\
             hostname: machine-c\n",
            server.url(),
            dir.path().join("state").display(),
            token.text.expose()
        ),
    )
    .expect("agent config");
    let agent = crate::support::agent::AgentProcess::start(&agent_config, "enrolling");
    let log_has = |what: &'static str| {
        let log = agent.log();
        async move {
            if log.contains(what) {
                std::ops::ControlFlow::Break(log)
            } else {
                std::ops::ControlFlow::Continue(log)
            }
        }
    };
    let within = Duration::from_secs(60);
    eventually("the agent is refused", within, || {
        log_has("does not admit this agent's key yet")
    })
    .await;
    spawn_service(&store, Service::Access, config, &shutdown);
    let log = eventually("the agent starts as itself", within, || {
        log_has("agent starting")
    })
    .await;
    assert!(log.contains("Registered { new: true }"), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{log}");
    shutdown.cancel();
}

/// Registers machine `machine` with `key` over a connection without credentials, as an
/// enrolling fleet-agent does; returns the agent id.
async fn register_key(
    url: &str,
    token: &fleet_events::enroll::TokenText,
    machine: &str,
    key: &nkeys::KeyPair,
) -> fleet_events::ids::AgentId {
    use fleet_events::codec::Wire;
    use fleet_events::enroll::{RegisterOutcome, RegisterReply, RegisterRequest};
    let client = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(fleet_events::access::ENROLL_INBOX_PREFIX)
        .connect(url)
        .await
        .expect("an enrolling connection");
    let mut request = RegisterRequest::new(token, machine.into(), machine.into(), machine.into());
    request.nats_key = key.public_key();
    let reply = client
        .request(REGISTER_SUBJECT, request.to_wire().expect("encodes").into())
        .await
        .expect("the registrar answers");
    match RegisterReply::from_wire(&reply.payload)
        .expect("a reply")
        .outcome
    {
        RegisterOutcome::Registered { agent, .. } => agent,
        other => panic!("{machine} not registered: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_arriving_together_are_admitted_by_a_few_reloads_not_one_each() {
    let (server, store, config, shutdown) = secured_server().await;
    spawn_service(&store, Service::Access, config, &shutdown);
    let token = tenant::issue(&store, &tenant(), Role::Enroll, "agents", Utc::now())
        .await
        .expect("token");
    let reloads = || {
        let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
        log.matches("Reloaded server configuration").count()
    };
    let before = reloads();
    let url = server.url();
    let machines: Vec<(String, nkeys::KeyPair)> = (0..20)
        .map(|n| (format!("burst-{n:02}"), nkeys::KeyPair::new_user()))
        .collect();
    let agents = futures::future::join_all(
        machines
            .iter()
            .map(|(machine, key)| register_key(&url, &token.text, machine, key)),
    )
    .await;
    let distinct: std::collections::HashSet<_> = agents.iter().collect();
    assert_eq!(distinct.len(), 20, "one agent per machine");
    // Every key is admitted: each agent connects as itself.
    for (machine, key) in &machines {
        let access = NatsAccess::default().with_key(key);
        eventually(
            &format!("{machine} is admitted"),
            Duration::from_secs(30),
            || {
                let (access, servers) = (access.clone(), support::servers(&server));
                async move {
                    match access.connect(&servers).await {
                        Ok(_) => std::ops::ControlFlow::Break(()),
                        Err(e) => std::ops::ControlFlow::Continue(e.to_string()),
                    }
                }
            },
        )
        .await;
    }
    let made = reloads() - before;
    println!("20 registrations admitted by {made} reloads");
    assert!(
        (1..=3).contains(&made),
        "20 registrations within a second were admitted by {made} reloads (expected them \
         batched into 1 to 3)"
    );
    shutdown.cancel();
}
