//! Live progress out: publishes what runs offer ([`ProgressSink`]) on the agent's own
//! `fleet.agent.<id>.progress` with core NATS (no stream stores it; the API forwards it to
//! whoever watches the task). Only while connected, each send bounded in time, nothing
//! kept for later: progress that cannot go now is dropped and counted, and a run never
//! waits for it.
//!
//! [`ProgressSink`]: crate::executor::ProgressSink

use std::time::Duration;

use async_nats::connection::State;
use chrono::Utc;
use fleet_events::ids::AgentId;
use fleet_events::protocol::Progress;
use fleet_events::subject::{AgentSubject, Channel};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::executor::progress::PUBLISHED_METRIC;

/// Progress messages waiting for the publisher, at most (more are dropped).
pub const QUEUE: usize = 16;
/// How long one publish may take before it counts as failed.
const SEND_WITHIN: Duration = Duration::from_secs(1);
/// Progress older than this when its turn comes is dropped: it is no news any more.
const STALE_AFTER: Duration = Duration::from_secs(3);

/// Publishes `agent`'s progress from `queue` on `client` until `shutdown`.
pub async fn publish(
    client: async_nats::Client,
    agent: AgentId,
    mut queue: mpsc::Receiver<Progress>,
    shutdown: CancellationToken,
) {
    let subject = AgentSubject {
        agent,
        channel: Channel::Progress,
    }
    .to_string();
    loop {
        let progress = tokio::select! {
            () = shutdown.cancelled() => return,
            progress = queue.recv() => match progress {
                Some(progress) => progress,
                None => return,
            },
        };
        let outcome = send(&client, &subject, &progress).await;
        metrics::counter!(PUBLISHED_METRIC, "outcome" => outcome).increment(1);
    }
}

/// Sends one message now or not at all; what became of it, as the metric's label.
async fn send(client: &async_nats::Client, subject: &str, progress: &Progress) -> &'static str {
    let age = Utc::now().signed_duration_since(progress.at);
    if age.to_std().is_ok_and(|age| age > STALE_AFTER) {
        return "dropped";
    }
    // While disconnected async-nats would hold the message and send it after the
    // reconnect: old news by then.
    if client.connection_state() != State::Connected {
        return "disconnected";
    }
    let payload = match progress.to_wire() {
        Ok(payload) => payload,
        Err(error) => {
            tracing::debug!(%error, "progress cannot be encoded");
            return "failed";
        }
    };
    match tokio::time::timeout(
        SEND_WITHIN,
        client.publish(subject.to_owned(), payload.into()),
    )
    .await
    {
        Ok(Ok(())) => "sent",
        Ok(Err(error)) => {
            tracing::debug!(%error, "progress not sent");
            "failed"
        }
        Err(_) => "failed",
    }
}
