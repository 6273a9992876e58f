//! One simulated agent: registers with the enrollment token and its own nkey, connects
//! with that key once the rendered authorization admits it, consumes its own durable task
//! consumer, reports each attempt (acknowledged, started, then succeeded or failed) and
//! heartbeats; and the tally of what every agent saw.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_nats::ConnectErrorKind;
use async_nats::jetstream::message::PublishMessage;
use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::access::{
    ENROLL_INBOX_PREFIX, agent_consumer, agent_consumer_config, agent_inbox_prefix,
};
use fleet_events::codec::Wire;
use fleet_events::enroll::{
    REGISTER_SUBJECT, RegisterOutcome, RegisterReply, RegisterRequest, Rejection,
};
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{ErrorClass, RunDetail, RunSummary, TaskError};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::protocol::{
    AgentCommand, AgentReport, Command, Heartbeat, KindCounts, ReportStatus, TaskOrder,
};
use fleet_events::settings::AgentSettings;
use fleet_events::store::Backoff;
use fleet_events::streams;
use fleet_events::subject::{AgentSubject, Channel};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::Pair;

/// What every simulated agent does.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub run_for: Duration,
    /// Percentage of tasks whose first attempt fails with a network error.
    pub fail_percent: u32,
    pub heartbeat_every: Duration,
}

/// What the agents saw, for the report.
#[derive(Debug, Default)]
pub struct Tally {
    inner: Mutex<Seen>,
    pub heartbeats: AtomicU64,
    pub heartbeats_unstored: AtomicU64,
    pub reports: AtomicU64,
    pub report_retries: AtomicU64,
    /// Orders of an attempt received again (only acked, as fleet-agent does).
    pub duplicates: AtomicU64,
    /// Connection attempts refused while waiting to be admitted.
    pub refused: AtomicU64,
}

#[derive(Debug, Default)]
struct Seen {
    /// Each expected pair's due time (fire + its jitter).
    due: HashMap<Pair, DateTime<Utc>>,
    fire: Option<DateTime<Utc>>,
    jitter: TimeDelta,
    /// Due to first attempt's command, and where it went, for the expected pairs whose
    /// agent had no failed task waiting for its retry.
    free: Vec<Parts>,
    /// Due to first attempt's command, in seconds, for first attempts whose agent had a failed task waiting for its retry:
    /// the dispatcher holds an agent's new work while one of its tasks backs off.
    held: Vec<f64>,
    /// Each agent's failed tasks not yet succeeded.
    failing: HashMap<AgentId, HashSet<TaskId>>,
    /// First attempts received after the fire's jitter window closed, of `free`.
    outside_window: usize,
    /// The same, of `held`.
    held_outside_window: usize,
    last_first_dispatch: Option<DateTime<Utc>>,
    succeeded: HashSet<TaskId>,
    last_success: Option<DateTime<Utc>>,
    attempts: u64,
    failed: u64,
    /// Tasks of pairs the simulation did not expect (none, unless the scheduler is wrong).
    unexpected: u64,
}

/// Where a first attempt's latency went: due time to the dispatcher's order (the control
/// plane: scheduling, holds, the dispatcher's backlog), and the order to its arrival at the
/// agent (JetStream and the agent's pull). Both clocks are this machine's.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub task: TaskId,
    pub agent: AgentId,
    pub latency: f64,
    /// Due time to `dispatched_at` of the order, in seconds (0 if dispatched early).
    pub control: f64,
    /// `dispatched_at` to arrival, in seconds.
    pub delivery: f64,
}

/// The latencies and counts the tally holds.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub expected: usize,
    /// Of the first attempts no backoff held (`parts`' latencies, in the same order).
    pub latencies: Vec<f64>,
    /// Where each of `latencies` went.
    pub parts: Vec<Parts>,
    pub held: Vec<f64>,
    /// Of the first attempts no backoff held, those received after the window closed.
    pub outside_window: usize,
    /// Of those held, those received after the window closed.
    pub held_outside_window: usize,
    pub last_first_dispatch: Option<DateTime<Utc>>,
    pub succeeded: usize,
    pub last_success: Option<DateTime<Utc>>,
    pub attempts: u64,
    pub failed: u64,
    pub unexpected: u64,
}

impl Tally {
    /// The pairs that fire at `fire`, each due after its jitter.
    pub fn expect(&self, pairs: &[Pair], fire: DateTime<Utc>, jitter_secs: u32) {
        let mut seen = self.inner.lock().expect("tally");
        seen.fire = Some(fire);
        seen.jitter = TimeDelta::seconds(i64::from(jitter_secs));
        for (policy, agent) in pairs {
            let jitter = fleet_scheduler::jitter_for(*policy, *agent, jitter_secs);
            seen.due.insert((*policy, *agent), fire + jitter);
        }
    }

    /// True once every expected pair's task has succeeded.
    pub fn all_succeeded(&self) -> bool {
        let seen = self.inner.lock().expect("tally");
        !seen.due.is_empty() && seen.succeeded.len() >= seen.due.len()
    }

    pub fn counts(&self) -> Counts {
        let seen = self.inner.lock().expect("tally");
        Counts {
            expected: seen.due.len(),
            latencies: seen.free.iter().map(|p| p.latency).collect(),
            parts: seen.free.clone(),
            held: seen.held.clone(),
            outside_window: seen.outside_window,
            held_outside_window: seen.held_outside_window,
            last_first_dispatch: seen.last_first_dispatch,
            succeeded: seen.succeeded.len(),
            last_success: seen.last_success,
            attempts: seen.attempts,
            failed: seen.failed,
            unexpected: seen.unexpected,
        }
    }

    fn received(&self, agent: AgentId, order: &TaskOrder, at: DateTime<Utc>) {
        let mut seen = self.inner.lock().expect("tally");
        seen.attempts += 1;
        let Some(due) = seen.due.get(&(order.policy, agent)).copied() else {
            seen.unexpected += 1;
            return;
        };
        if order.attempt != 1 {
            return;
        }
        let latency = (at - due).as_seconds_f64().max(0.0);
        let held = seen.failing.get(&agent).is_some_and(|f| !f.is_empty());
        match held {
            true => seen.held.push(latency),
            false => {
                seen.free.push(Parts {
                    task: order.task,
                    agent,
                    latency,
                    control: (order.dispatched_at - due).as_seconds_f64().max(0.0),
                    delivery: (at - order.dispatched_at).as_seconds_f64().max(0.0),
                });
            }
        }
        if let Some(fire) = seen.fire
            && at > fire + seen.jitter
        {
            match held {
                true => seen.held_outside_window += 1,
                false => seen.outside_window += 1,
            }
        }
        seen.last_first_dispatch = seen.last_first_dispatch.max(Some(at));
    }

    fn finished(&self, agent: AgentId, task: TaskId, ok: bool, at: DateTime<Utc>) {
        let mut seen = self.inner.lock().expect("tally");
        let failing = seen.failing.entry(agent).or_default();
        if ok {
            failing.remove(&task);
            seen.succeeded.insert(task);
            seen.last_success = seen.last_success.max(Some(at));
        } else {
            failing.insert(task);
            seen.failed += 1;
        }
    }
}

/// Registers agent number `n`, connects it with its own key once admitted, opens its task
/// consumer and starts it; returns its id. It runs until `stop`.
pub async fn start(
    n: usize,
    url: &str,
    token: &str,
    behaviour: Behaviour,
    tally: std::sync::Arc<Tally>,
    stop: CancellationToken,
) -> anyhow::Result<AgentId> {
    let key = nkeys::KeyPair::new_user();
    let agent = register(n, url, token, &key).await?;
    let client = connect_as(url, agent, &key, &tally).await?;
    let js = async_nats::jetstream::new(client);
    let messages = loop {
        // The access service creates the consumer too; whoever comes first makes it.
        let opened = async {
            let stream = js.get_stream_no_info(streams::DISPATCH).await?;
            let consumer = stream
                .get_or_create_consumer(&agent_consumer(agent), agent_consumer_config(agent))
                .await?;
            anyhow::Ok(consumer.messages().await?)
        };
        match opened.await {
            Ok(messages) => break messages,
            Err(error) => {
                tracing::debug!(agent_id = %agent, %error, "task consumer not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let running = std::sync::Arc::new(AtomicU64::new(0));
    tokio::spawn(heartbeats(
        js.clone(),
        agent,
        n,
        behaviour.heartbeat_every,
        running.clone(),
        tally.clone(),
        stop.clone(),
    ));
    tokio::spawn(work(js, agent, messages, behaviour, running, tally, stop));
    Ok(agent)
}

/// The registration request/reply, over a connection without credentials (the enrolling
/// user), retried while the registrar does not answer.
async fn register(
    n: usize,
    url: &str,
    token: &str,
    key: &nkeys::KeyPair,
) -> anyhow::Result<AgentId> {
    let token = fleet_events::enroll::TokenText::parse(token).context("the enrollment token")?;
    let mut request = RegisterRequest::new(
        &token,
        format!("sim-machine-{n:06}"),
        format!("sim-{n:06}"),
        format!("sim-{n:06}.example"),
    );
    request.nats_key = key.public_key();
    request.agent_version = "fleet-sim".into();
    // Room for every policy of the agent at once: the agents are never what waits.
    request.settings = AgentSettings {
        max_concurrent: 8,
        ..AgentSettings::default()
    };
    let client = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(ENROLL_INBOX_PREFIX)
        .connect(url)
        .await
        .context("connecting to register")?;
    let payload = request.to_wire().context("encoding the registration")?;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let answer = loop {
        let asked = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(REGISTER_SUBJECT, payload.clone().into()),
        )
        .await;
        // As fleet-agent does: no answer, or "unavailable", is asked again.
        if let Ok(Ok(message)) = asked {
            match RegisterReply::from_wire(&message.payload)?.outcome {
                RegisterOutcome::Registered { agent, .. } => break agent,
                RegisterOutcome::Rejected {
                    reason: Rejection::Unavailable,
                    ..
                } => {}
                RegisterOutcome::Rejected { reason, message } => {
                    anyhow::bail!("registration refused ({reason:?}): {message}")
                }
            }
        }
        let _ = backoff.pause(&CancellationToken::new()).await;
    };
    client.drain().await.ok();
    Ok(answer)
}

/// Connects with the agent's key and inbox prefix, asking again with backoff (1 s doubling
/// to 30 s, as fleet-agent does) while the server does not admit the key yet.
async fn connect_as(
    url: &str,
    agent: AgentId,
    key: &nkeys::KeyPair,
    tally: &Tally,
) -> anyhow::Result<async_nats::Client> {
    let seed = key.seed().context("the agent's seed")?;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let connected = async_nats::ConnectOptions::new()
            .nkey(seed.clone())
            .custom_inbox_prefix(agent_inbox_prefix(agent))
            .connect(url)
            .await;
        match connected {
            Ok(client) => return Ok(client),
            Err(error)
                if matches!(
                    error.kind(),
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
                ) =>
            {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(agent_id = %agent, %error, "cannot connect; retrying"),
        }
        let _ = backoff.pause(&CancellationToken::new()).await;
    }
}

type Messages = async_nats::jetstream::consumer::pull::Stream;

/// Takes orders from the agent's consumer: each attempt once, acknowledged and started at
/// once, finished after `run_for`.
async fn work(
    js: async_nats::jetstream::Context,
    agent: AgentId,
    mut messages: Messages,
    behaviour: Behaviour,
    running: std::sync::Arc<AtomicU64>,
    tally: std::sync::Arc<Tally>,
    stop: CancellationToken,
) {
    let mut accepted: HashSet<(TaskId, u32)> = HashSet::new();
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            m = messages.next() => match m {
                Some(Ok(m)) => m,
                Some(Err(_)) => continue,
                None => return,
            },
        };
        let received = Utc::now();
        let order = match AgentCommand::from_wire(&message.payload) {
            Ok(AgentCommand {
                command: Command::Run(order) | Command::RunRequested { order, .. },
                ..
            }) => order,
            _ => {
                message.ack().await.ok();
                continue;
            }
        };
        if !accepted.insert((order.task, order.attempt)) {
            tally.duplicates.fetch_add(1, Ordering::Relaxed);
            message.double_ack().await.ok();
            continue;
        }
        tally.received(agent, &order, received);
        report(&js, agent, &order, ReportStatus::Acknowledged, &tally).await;
        message.double_ack().await.ok();
        let (js, tally, running, stop) = (js.clone(), tally.clone(), running.clone(), stop.clone());
        tokio::spawn(async move {
            running.fetch_add(1, Ordering::Relaxed);
            report(&js, agent, &order, ReportStatus::Started, &tally).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(behaviour.run_for) => {}
            }
            running.fetch_sub(1, Ordering::Relaxed);
            let fails = order.attempt == 1 && fails_first(order.task, behaviour.fail_percent);
            let status = match fails {
                false => ReportStatus::Succeeded(RunSummary {
                    kind: order.spec.kind,
                    duration_ms: behaviour.run_for.as_millis() as u64,
                    detail: RunDetail::Backup(Default::default()),
                }),
                true => ReportStatus::Failed(TaskError::new(
                    ErrorClass::Network,
                    "simulated: connection reset by peer",
                    Some(1),
                )),
            };
            report(&js, agent, &order, status, &tally).await;
            tally.finished(agent, order.task, !fails, Utc::now());
        });
    }
}

/// Whether the first attempt of `task` fails: `percent` of tasks, by a stable hash of the id.
pub fn fails_first(task: TaskId, percent: u32) -> bool {
    let bytes = task.uuid().as_u128();
    let spread = (bytes ^ (bytes >> 64)) as u64;
    (spread.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 100 < u64::from(percent)
}

/// Sends a report until JetStream stored it, as fleet-agent's outbox does.
async fn report(
    js: &async_nats::jetstream::Context,
    agent: AgentId,
    order: &TaskOrder,
    status: ReportStatus,
    tally: &Tally,
) {
    let report = AgentReport {
        schema: SCHEMA_VERSION,
        agent,
        tenant: order.tenant.clone(),
        task: order.task,
        attempt: order.attempt,
        at: Utc::now(),
        status,
    };
    let subject = AgentSubject {
        agent,
        channel: Channel::Reports,
    }
    .to_string();
    let Ok(payload) = report.to_wire() else {
        return;
    };
    tally.reports.fetch_add(1, Ordering::Relaxed);
    loop {
        let message = PublishMessage::build()
            .payload(payload.clone().into())
            .message_id(report.msg_id());
        if let Ok(ack) = js.send_publish(subject.clone(), message).await
            && ack.await.is_ok()
        {
            return;
        }
        tally.report_retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A heartbeat every `every`, the first after a spread so that agents do not beat in step.
async fn heartbeats(
    js: async_nats::jetstream::Context,
    agent: AgentId,
    n: usize,
    every: Duration,
    running: std::sync::Arc<AtomicU64>,
    tally: std::sync::Arc<Tally>,
    stop: CancellationToken,
) {
    let subject = AgentSubject {
        agent,
        channel: Channel::Heartbeat,
    }
    .to_string();
    let spread = every.mul_f64((n % 1000) as f64 / 1000.0);
    let mut first = true;
    loop {
        let beat = Heartbeat {
            schema: SCHEMA_VERSION,
            agent,
            tenant: crate::control::tenant(),
            at: Utc::now(),
            running: KindCounts {
                backup: running.load(Ordering::Relaxed) as u16,
                ..KindCounts::default()
            },
            queued: KindCounts::default(),
            agent_version: "fleet-sim".into(),
            restic_version: "none".into(),
            outbox_depth: 0,
            every_secs: u16::try_from(every.as_secs()).unwrap_or(u16::MAX),
        };
        let stored = match beat.to_wire() {
            Ok(payload) => match js.publish(subject.clone(), payload.into()).await {
                Ok(ack) => tokio::time::timeout(every, ack)
                    .await
                    .is_ok_and(|a| a.is_ok()),
                Err(_) => false,
            },
            Err(_) => false,
        };
        match stored {
            true => tally.heartbeats.fetch_add(1, Ordering::Relaxed),
            false => tally.heartbeats_unstored.fetch_add(1, Ordering::Relaxed),
        };
        let wait = if std::mem::take(&mut first) {
            spread
        } else {
            every
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
