//! The event-store client over JetStream: the one module of this crate that does IO.
//!
//! - [`EventStore::ensure_streams`] creates or checks the streams.
//! - [`EventStore::append`] writes one event with a msg id and an optional expected last
//!   subject sequence (optimistic concurrency); [`EventStore::append_many`] pipelines acks.
//! - [`EventStore::history`], [`EventStore::replay`] and [`EventStore::follow`] read.
//! - [`consume`] runs a durable consumer whose undecodable or rejected messages are parked.
//! - [`connect`] builds a client's connection: nkey, TLS CA, inbox prefix;
//!   [`NatsServers`] the server list it connects to.

mod append;
mod backoff;
pub mod connect;
pub mod consume;
mod error;
mod history;
mod read;
mod servers;
mod watch;

use std::time::Duration;

use async_nats::jetstream::{self, context::ContextBuilder};

pub use append::{Append, Appended, Expect, ToAppend};
pub use backoff::Backoff;
pub use error::{AppendError, ReadError, StoreError};
pub use history::{HISTORY_BY_GET, History};
pub use read::{CREATE_RETRIES_METRIC, Stored};
pub use servers::{BadNatsServers, NatsServers};
pub use watch::{STALL_AFTER, STALLS_METRIC};

use crate::streams::{self, StreamOptions};

/// Acks awaited at once by pipelined appends.
pub const PIPELINE_WINDOW: usize = 2048;

/// A handle on the event log and the other fleet streams. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventStore {
    js: jetstream::Context,
    /// See [`EventStore::with_stall_after`].
    stall_after: Duration,
}

impl EventStore {
    /// A store over `client`. Publishing waits (rather than failing) when too many acks
    /// are outstanding.
    pub fn new(client: async_nats::Client) -> Self {
        let js = ContextBuilder::new()
            .timeout(Duration::from_secs(10))
            .max_ack_inflight(PIPELINE_WINDOW * 2)
            .backpressure_on_inflight(true)
            .build(client);
        Self {
            js,
            stall_after: STALL_AFTER,
        }
    }

    /// How long a replay or follow may deliver nothing while the log holds more for it
    /// before it ends with an error (its consumer is gone); [`STALL_AFTER`] by default.
    pub fn with_stall_after(self, stall_after: Duration) -> Self {
        Self {
            stall_after,
            ..self
        }
    }

    /// The JetStream context, for services that publish to agents' subjects.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Creates every fleet stream that is missing and updates limits that differ. A stream
    /// that exists with other subjects, retention, storage or protection is an error
    /// naming each difference: the operator must look, not us overwrite.
    pub async fn ensure_streams(&self, opts: &StreamOptions) -> Result<(), StoreError> {
        for wanted in streams::all(opts) {
            let name = wanted.name.clone();
            match self.js.get_stream(&name).await {
                Ok(mut stream) => {
                    let info = stream
                        .info()
                        .await
                        .map_err(|e| StoreError::nats(format!("stream {name} info"), e))?;
                    let mut existing = info.config.clone();
                    if name == streams::INTAKE
                        && existing.subjects == streams::intake_before_heartbeats()
                    {
                        self.move_heartbeats_out_of_intake(&mut stream, &wanted)
                            .await?;
                        existing.subjects.clone_from(&wanted.subjects);
                    }
                    let differences = streams::conflicts(&wanted, &existing);
                    if !differences.is_empty() {
                        return Err(StoreError::StreamConflict {
                            stream: name,
                            differences,
                        });
                    }
                    if streams::raises_consumers(&wanted, &existing) {
                        match self.js.update_stream(&wanted).await {
                            Ok(_) => {
                                tracing::info!(stream = %name, max_consumers = wanted.max_consumers, "stream's consumer limit raised");
                                continue;
                            }
                            // nats-server before 2.13 cannot change it; before 2.15 none
                            // (what it has) means no limit.
                            Err(e) => {
                                tracing::debug!(stream = %name, error = %e, "the server keeps the stream's consumer limit")
                            }
                        }
                    }
                    if streams::needs_update(&wanted, &existing) {
                        self.js
                            .update_stream(&streams::keeping_consumers(&wanted, &existing))
                            .await
                            .map_err(|e| StoreError::nats(format!("update stream {name}"), e))?;
                        tracing::info!(stream = %name, "stream limits updated");
                    }
                }
                Err(e) if is_not_found(&e) => {
                    self.js
                        .create_stream(wanted)
                        .await
                        .map_err(|e| StoreError::nats(format!("create stream {name}"), e))?;
                    tracing::info!(stream = %name, "stream created");
                }
                Err(e) => return Err(StoreError::nats(format!("stream {name}"), e)),
            }
        }
        Ok(())
    }
}

impl EventStore {
    /// Earlier versions kept heartbeats in `FLEET_INTAKE`, read by a durable consumer
    /// that removed them. Deletes that consumer (a heartbeat is worth nothing once a newer
    /// one comes) and narrows the stream to reports, so `FLEET_HEARTBEATS` can take the
    /// subject.
    async fn move_heartbeats_out_of_intake(
        &self,
        stream: &mut jetstream::stream::Stream,
        wanted: &jetstream::stream::Config,
    ) -> Result<(), StoreError> {
        use futures::TryStreamExt;
        let beats = streams::intake_before_heartbeats()[1].clone();
        let consumers: Vec<_> = stream
            .consumers()
            .try_collect()
            .await
            .map_err(|e| StoreError::nats("list FLEET_INTAKE consumers".into(), e))?;
        for consumer in consumers {
            if consumer.config.filter_subject == beats {
                stream
                    .delete_consumer(&consumer.name)
                    .await
                    .map_err(|e| StoreError::nats("delete the old heartbeat consumer".into(), e))?;
            }
        }
        self.js
            .update_stream(wanted)
            .await
            .map_err(|e| StoreError::nats("move heartbeats out of FLEET_INTAKE".into(), e))?;
        tracing::info!("heartbeats moved from FLEET_INTAKE to their own stream");
        Ok(())
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(err) => {
            err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}
