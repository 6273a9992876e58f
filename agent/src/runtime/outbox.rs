//! Sends the outbox in order: each report is published with its msg id and removed only
//! once JetStream stored it, so an agent that loses NATS for an hour loses no result.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use fleet_events::subject::{AgentSubject, Channel};
use tokio_util::sync::CancellationToken;

use super::Shared;

/// Drains the outbox whenever a report is recorded (and every second), until shutdown;
/// a last drain is tried on shutdown.
pub async fn send(shared: Arc<Shared>, shutdown: CancellationToken) {
    let subject = AgentSubject {
        agent: shared.config.agent,
        channel: Channel::Reports,
    }
    .to_string();
    loop {
        drain(&shared, &subject).await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = shared.reports.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    drain(&shared, &subject).await;
}

/// Sends reports oldest first and stops at the first that JetStream did not store, so
/// order is kept.
async fn drain(shared: &Shared, subject: &str) {
    let entries = match shared.state.outbox() {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            return;
        }
    };
    for (key, report) in entries {
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "an outbox entry is unreadable; removed (the attempt will be retried as lost)");
                let _ = shared.state.remove(key);
                continue;
            }
        };
        let payload = match report.to_wire() {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "a report cannot be encoded; removed");
                let _ = shared.state.remove(key);
                continue;
            }
        };
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(report.msg_id());
        let stored = match shared.js.send_publish(subject.to_owned(), message).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                if let Err(e) = shared.state.remove(key) {
                    tracing::error!(error = %e, "cannot remove a sent report; it will be sent again");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, depth = shared.state.outbox_depth(), "reports wait for NATS");
                return;
            }
        }
    }
}
