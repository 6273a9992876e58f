//! Following the event log from a service: catch-up, then live, surviving NATS restarts;
//! and appending with retries while NATS is unavailable.

use std::time::Duration;

use fleet_events::store::{Append, AppendError, Appended, EventStore, ReadError, Stored};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

/// How long a broken subscription rests before it is reopened.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// A service's position in the log.
pub struct Follower {
    store: EventStore,
    filter: String,
    service: &'static str,
    next_seq: u64,
    /// The last matching sequence when the follower was opened: catch-up ends there.
    end: u64,
    log: Option<Events>,
    /// The reopening in progress after a broken subscription, kept here so that dropping
    /// a [`Follower::next`] call (a `select!` taking another branch) does not restart it.
    reopening: Option<BoxFuture<'static, Result<Events, ReadError>>>,
}

type Events = BoxStream<'static, Result<Stored, ReadError>>;

impl Follower {
    /// Follows `filter` from the start of the log.
    pub async fn open(
        store: EventStore,
        filter: String,
        service: &'static str,
    ) -> Result<Self, ReadError> {
        Self::open_from(store, filter, service, 1).await
    }

    /// Follows `filter` from sequence `from` on, catching up with what the log holds now
    /// (a service starting from a snapshot that covers `from - 1`).
    pub async fn open_from(
        store: EventStore,
        filter: String,
        service: &'static str,
        from: u64,
    ) -> Result<Self, ReadError> {
        let end = store.last_sequence(&filter).await?;
        let log = store.follow(&filter, from.max(1)).await?;
        Ok(Self {
            store,
            filter,
            service,
            next_seq: from.max(1),
            end,
            log: Some(log),
            reopening: None,
        })
    }

    /// The sequence of the next event to read: everything before it has been read.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Follows `filter` from sequence `from` on (a client resuming where it stopped, or
    /// starting at the end): nothing to catch up with, [`Follower::caught_up`] at once.
    pub async fn open_at(
        store: EventStore,
        filter: String,
        service: &'static str,
        from: u64,
    ) -> Result<Self, ReadError> {
        let log = store.follow(&filter, from).await?;
        Ok(Self {
            store,
            filter,
            service,
            next_seq: from,
            end: from.saturating_sub(1),
            log: Some(log),
            reopening: None,
        })
    }

    /// True once every event that existed when the follower was opened has been read.
    pub fn caught_up(&self) -> bool {
        self.next_seq > self.end
    }

    /// The next event; `None` only once `shutdown` is cancelled. An undecodable event is
    /// counted in `fleet_undecodable_events_total{service}`, logged and passed over (the
    /// projections record it); a broken subscription is reopened where it stopped.
    ///
    /// Cancel-safe: a call dropped before it returns loses no event and no progress of a
    /// reopening, so it can be one branch of a `select!`.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Stored> {
        loop {
            let Some(log) = self.log.as_mut() else {
                let (store, filter, from) =
                    (self.store.clone(), self.filter.clone(), self.next_seq);
                let reopening = self.reopening.get_or_insert_with(|| {
                    Box::pin(async move {
                        tokio::time::sleep(REOPEN_AFTER).await;
                        store.follow(&filter, from).await
                    })
                });
                let reopened = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    reopened = reopening => reopened,
                };
                self.reopening = None;
                match reopened {
                    Ok(log) => self.log = Some(log),
                    Err(e) => {
                        tracing::warn!(service = self.service, error = %e, "cannot reopen the log")
                    }
                }
                continue;
            };
            let item = tokio::select! {
                () = shutdown.cancelled() => return None,
                item = log.next() => item,
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
                    tracing::warn!(
                        service = self.service,
                        "the log subscription ended; reopening"
                    );
                    self.log = None;
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
    let mut backoff = Backoff::nats();
    loop {
        match store.append(append).await {
            Err(AppendError::Unavailable(reason)) if !shutdown.is_cancelled() => {
                tracing::warn!(%reason, "event store unavailable; retrying the append");
                let _ = backoff.pause(shutdown).await;
            }
            other => return other,
        }
    }
}

/// Waits between two tries against NATS (200 ms doubling up to 5 s, ended by a shutdown).
pub use fleet_events::store::Backoff;
