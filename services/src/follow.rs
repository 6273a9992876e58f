//! Following the event log from a service: catch-up, then live, surviving NATS restarts;
//! and appending with retries while NATS is unavailable.

use std::time::Duration;

use fleet_events::store::{Append, AppendError, Appended, EventStore, ReadError, Stored};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

/// A service's position in the log.
pub struct Follower {
    store: EventStore,
    filter: String,
    service: &'static str,
    next_seq: u64,
    /// The last matching sequence when the follower was opened: catch-up ends there.
    end: u64,
    log: Option<BoxStream<'static, Result<Stored, ReadError>>>,
}

impl Follower {
    /// Follows `filter` from the start of the log.
    pub async fn open(
        store: EventStore,
        filter: String,
        service: &'static str,
    ) -> Result<Self, ReadError> {
        let end = store.last_sequence(&filter).await?;
        let log = store.follow(&filter, 1).await?;
        Ok(Self {
            store,
            filter,
            service,
            next_seq: 1,
            end,
            log: Some(log),
        })
    }

    /// True once every event that existed when the follower was opened has been read.
    pub fn caught_up(&self) -> bool {
        self.next_seq > self.end
    }

    /// The next event; `None` only once `shutdown` is cancelled. An undecodable event is
    /// counted in `fleet_undecodable_events_total{service}`, logged and passed over (the
    /// projections record it); a broken subscription is reopened where it stopped.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Stored> {
        loop {
            let item = match self.log.as_mut() {
                Some(log) => tokio::select! {
                    () = shutdown.cancelled() => return None,
                    item = log.next() => item,
                },
                None => None,
            };
            match item {
                Some(Ok(stored)) => {
                    self.next_seq = stored.seq + 1;
                    return Some(stored);
                }
                Some(Err(ReadError::Undecodable {
                    seq,
                    subject,
                    error,
                })) => {
                    metrics::counter!("fleet_undecodable_events_total", "service" => self.service)
                        .increment(1);
                    tracing::warn!(service = self.service, seq, %subject, %error, "passing over an undecodable event");
                    self.next_seq = seq + 1;
                }
                Some(Err(e)) => {
                    tracing::warn!(service = self.service, error = %e, "reading the log failed; reopening");
                    self.log = None;
                }
                None => {
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    match self.store.follow(&self.filter, self.next_seq).await {
                        Ok(log) => self.log = Some(log),
                        Err(e) => {
                            tracing::warn!(service = self.service, error = %e, "cannot reopen the log")
                        }
                    }
                }
            }
        }
    }
}

/// Appends, retrying with the same msg id (so a stored-but-unacknowledged first try is
/// deduplicated) while NATS is unavailable and `shutdown` is not cancelled.
pub async fn append_retrying(
    store: &EventStore,
    append: Append<'_>,
    shutdown: &CancellationToken,
) -> Result<Appended, AppendError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match store.append(append).await {
            Err(AppendError::Unavailable(reason)) if !shutdown.is_cancelled() => {
                tracing::warn!(%reason, "event store unavailable; retrying the append");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
