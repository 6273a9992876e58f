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
            DateTime::from_timestamp_nanos(
                i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(i64::MAX),
            ),
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
                    "heartbeat names agent {} but came from agent {}",
                    heartbeat.agent, s.agent
                ),
            ),
            Err(e) => ("rejected", e.to_string()),
        },
    };
    let parking = Parking {
        consumer: reader,
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
