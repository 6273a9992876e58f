//! Heartbeats: the agent is alive, how loaded it is, and how many reports wait. Each
//! heartbeat also writes `status.json` into the state directory, when one is set
//! (see [`crate::status`]), for `fleet-agent status`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::protocol::Heartbeat;
use fleet_events::subject::{AgentSubject, Channel};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::status::{self, Status};

/// Sends a heartbeat every interval until shutdown.
pub async fn beat(shared: Arc<Shared>, shutdown: CancellationToken) {
    let subject = AgentSubject {
        agent: shared.config.agent,
        channel: Channel::Heartbeat,
    }
    .to_string();
    let mut last_ok_at: Option<DateTime<Utc>> = None;
    let mut status_written = true;
    loop {
        let beat = Heartbeat {
            schema: SCHEMA_VERSION,
            agent: shared.config.agent,
            tenant: shared.config.tenant.clone(),
            at: Utc::now(),
            running: shared.state.running().unwrap_or_default(),
            queued: shared.state.queued().unwrap_or_default(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            restic_version: shared.config.restic_version.to_string(),
            outbox_depth: shared.state.outbox_depth(),
            every_secs: u16::try_from(shared.config.heartbeat_every.as_secs()).unwrap_or(u16::MAX),
        };
        metrics::gauge!("fleet_agent_outbox_depth").set(f64::from(beat.outbox_depth));
        metrics::gauge!("fleet_agent_concurrency_limit")
            .set(f64::from(shared.config.settings.max_concurrent));
        // Bounded by one interval, so that the status file stays fresh while NATS is down.
        let sent = tokio::time::timeout(
            shared.config.heartbeat_every,
            send(&shared, &subject, &beat),
        )
        .await
        .unwrap_or_else(|_| {
            tracing::debug!("heartbeat not stored within one interval");
            false
        });
        if sent {
            last_ok_at = Some(beat.at);
        }
        if let Some(dir) = shared.config.status_dir.as_deref() {
            let status = Status {
                agent_id: beat.agent,
                tenant: beat.tenant,
                at: Utc::now(),
                running: beat.running,
                queued: beat.queued,
                outbox_depth: beat.outbox_depth,
                last_heartbeat_ok: sent,
                last_heartbeat_at: Some(beat.at),
                last_heartbeat_ok_at: last_ok_at,
                restic_version: beat.restic_version,
                agent_version: beat.agent_version,
                cpu_quota: shared.cpu.summary(),
            };
            match status::write(dir, &status) {
                Ok(()) => status_written = true,
                // Warn once, not on every beat.
                Err(e) if status_written => {
                    status_written = false;
                    tracing::warn!(error = %e, dir = %dir.display(),
                        "cannot write the status file");
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(shared.config.heartbeat_every) => {}
        }
    }
}

/// Publishes one heartbeat; whether JetStream stored it.
async fn send(shared: &Shared, subject: &str, beat: &Heartbeat) -> bool {
    let payload = match beat.to_wire() {
        Ok(payload) => payload,
        Err(e) => {
            tracing::error!(error = %e, "heartbeat cannot be encoded");
            return false;
        }
    };
    match shared.js.publish(subject.to_owned(), payload.into()).await {
        Ok(ack) => match ack.await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat not stored");
                false
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "heartbeat not sent");
            false
        }
    }
}
