//! Heartbeats: the agent is alive, how loaded it is, and how many reports wait.

use std::sync::Arc;

use chrono::Utc;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::protocol::Heartbeat;
use fleet_events::subject::{AgentSubject, Channel};
use tokio_util::sync::CancellationToken;

use super::Shared;

/// Sends a heartbeat every interval until shutdown.
pub async fn beat(shared: Arc<Shared>, shutdown: CancellationToken) {
    let subject = AgentSubject {
        agent: shared.config.agent,
        channel: Channel::Heartbeat,
    }
    .to_string();
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
        };
        match beat.to_wire() {
            Ok(payload) => match shared.js.publish(subject.clone(), payload.into()).await {
                Ok(ack) => {
                    if let Err(e) = ack.await {
                        tracing::debug!(error = %e, "heartbeat not stored");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "heartbeat not sent"),
            },
            Err(e) => tracing::error!(error = %e, "heartbeat cannot be encoded"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(shared.config.heartbeat_every) => {}
        }
    }
}
