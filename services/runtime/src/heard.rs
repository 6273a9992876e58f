//! Agents' heartbeats as every reader sees them: `FLEET_HEARTBEATS` keeps the last one of
//! each agent with the time the server stored it, so a reader that starts (a dispatcher
//! taking over, a projector restarting) learns when each agent was last heard instead of
//! assuming they all just were. Readers follow it with an ordered consumer that starts at
//! each agent's last heartbeat and then delivers new ones live; a broken subscription
//! (NATS restarting) is reopened the same way.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use chrono::{DateTime, Utc};
use fleet_events::codec::Wire;
use fleet_events::ids::AgentId;
use fleet_events::protocol::Heartbeat;
use fleet_events::store::EventStore;
use fleet_events::store::consume::{Parking, park};
use fleet_events::streams::HEARTBEATS;
use fleet_events::subject::{self, AgentSubject, Channel};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a broken subscription rests before it is reopened.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// One heartbeat and when the server stored it.
#[derive(Debug, Clone)]
pub struct Beat {
    pub heartbeat: Heartbeat,
    /// The server's time of storing it: when the agent was last heard of, by a clock
    /// every reader shares (the agent's own `at` may be skewed).
    pub stored_at: DateTime<Utc>,
}

/// Sends every agent's last heartbeat, then each new one, into `beats` until `shutdown`
/// or until `beats` is closed. A heartbeat that cannot be decoded, or that names another
/// agent than the subject it came on, is parked (once, whichever reader sees it first)
/// on `fleet.parked.<reader>`.
pub async fn follow(
    store: EventStore,
    reader: &'static str,
    beats: mpsc::Sender<Beat>,
    shutdown: CancellationToken,
) {
    let parked_subject = match subject::parked(reader) {
        Ok(subject) => subject,
        Err(e) => {
            tracing::error!(reader, error = %e, "heartbeats cannot be read by this name");
            return;
        }
    };
    loop {
        let messages = tokio::select! {
            () = shutdown.cancelled() => return,
            opened = open(&store) => opened,
        };
        match messages {
            Ok(mut messages) => loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => {
                        tracing::warn!(reader, error = %e, "heartbeats: subscription broken; reopening");
                        break;
                    }
                    None => break,
                };
                let Some(beat) = read(&store, reader, &parked_subject, &message).await else {
                    continue;
                };
                if beats.send(beat).await.is_err() {
                    return;
                }
            },
            Err(e) => tracing::warn!(reader, error = %e, "cannot follow heartbeats; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REOPEN_AFTER) => {}
        }
    }
}

/// An ordered consumer from each agent's last heartbeat.
async fn open(store: &EventStore) -> Result<push::Ordered, String> {
    let stream = store
        .jetstream()
        .get_stream_no_info(HEARTBEATS)
        .await
        .map_err(|e| e.to_string())?;
    let config = push::OrderedConfig {
        deliver_subject: store.jetstream().client().new_inbox(),
        filter_subject: subject::all_agents(Channel::Heartbeat),
        deliver_policy: DeliverPolicy::LastPerSubject,
        ..Default::default()
    };
    let consumer = tokio::time::timeout(Duration::from_secs(10), stream.create_consumer(config))
        .await
        .map_err(|_| "no answer creating the consumer".to_owned())?
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// The beat a message holds, or `None` once it is parked.
async fn read(
    store: &EventStore,
    reader: &'static str,
    parked_subject: &str,
    message: &async_nats::jetstream::Message,
) -> Option<Beat> {
    let (seq, stored_at) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            // Microseconds, as the log keeps times: a "last seen" recorded in an event
            // then equals the heartbeat's.
            DateTime::from_timestamp_micros(
                i64::try_from(info.published.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
            )
            .unwrap_or_else(Utc::now),
        ),
        Err(_) => (0, Utc::now()),
    };
    let subject = message.subject.as_str();
    let problem = match Heartbeat::from_wire(&message.payload) {
        Err(e) => ("undecodable", e.to_string()),
        Ok(heartbeat) => match AgentSubject::parse(subject) {
            Ok(s) if s.agent == heartbeat.agent => {
                return Some(Beat {
                    heartbeat,
                    stored_at,
                });
            }
            Ok(s) => (
                "rejected",
                format!(
                    "it names agent {} but came from agent {}",
                    heartbeat.agent, s.agent
                ),
            ),
            Err(e) => ("rejected", e.to_string()),
        },
    };
    let parking = Parking {
        consumer: reader,
        what: Heartbeat::WHAT,
        parked_subject,
        stream: HEARTBEATS,
        seq,
        subject,
        payload: message.payload.clone(),
    };
    if let Err(e) = park(store, parking, problem.0, &problem.1).await {
        tracing::warn!(reader, seq, error = %e, "could not park a heartbeat");
    }
    None
}

/// Each agent's last heartbeat time, live: what "last seen" shows. Kept in memory, fed by
/// [`LastHeard::follow`]; it is not part of the log, so read models rebuilt from the log
/// stay equal to the incremental ones.
#[derive(Debug, Clone, Default)]
pub struct LastHeard {
    heard: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<AgentId, DateTime<Utc>>>>,
}

impl LastHeard {
    /// When `agent` was last heard, if a heartbeat of it is known.
    pub fn get(&self, agent: AgentId) -> Option<DateTime<Utc>> {
        self.heard.read().ok()?.get(&agent).copied()
    }

    /// Records a heartbeat of `agent` stored at `at` (an older one changes nothing).
    pub fn record(&self, agent: AgentId, at: DateTime<Utc>) {
        if let Ok(mut heard) = self.heard.write() {
            let last = heard.entry(agent).or_insert(at);
            *last = (*last).max(at);
        }
    }

    /// Follows the heartbeats into this map until `shutdown` (see [`follow`]).
    pub async fn follow(
        &self,
        store: EventStore,
        reader: &'static str,
        shutdown: CancellationToken,
    ) {
        let (tx, mut rx) = mpsc::channel(1024);
        let following = tokio::spawn(follow(store, reader, tx, shutdown));
        while let Some(beat) = rx.recv().await {
            self.record(beat.heartbeat.agent, beat.stored_at.min(Utc::now()));
        }
        let _ = following.await;
    }
}
