//! Leases in NATS: what must run once across instances (the scheduler's fires, the
//! dispatcher's heartbeats and liveness) runs only in the instance holding its lease, a
//! key of the `fleet_leases` bucket (see `fleet_events::streams::leases`).
//!
//! A holder renews its key every [`RENEW_EVERY`] with the revision it last wrote
//! (optimistic concurrency); the bucket drops a key [`LEASE_TTL`] after its last write,
//! so the lease of a holder that died lapses and a standby's `create` then succeeds. A
//! holder that cannot renew for [`GIVE_UP_AFTER`] (NATS unreachable), or finds another
//! revision, stops its work before the lease can lapse elsewhere. Stopping is cooperative
//! (between decisions), so for a moment two holders may act: every write is still
//! guarded by msg ids and expected sequences, which is what keeps effects exactly-once;
//! the lease only keeps the work from being done twice.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, Store};
use fleet_events::store::EventStore;
use fleet_events::streams::{LEASE_TTL, LEASES_BUCKET};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often a holder renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How long a holder keeps working without a successful renewal: well inside
/// [`LEASE_TTL`], so it has stopped before anyone else can take the lease.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(7);
/// How often a standby tries to take the lease.
pub const STANDBY_POLL: Duration = Duration::from_secs(1);

const _: () = assert!(GIVE_UP_AFTER.as_secs() + RENEW_EVERY.as_secs() <= LEASE_TTL.as_secs());

/// Runs `work` whenever this instance holds lease `name`, until `shutdown` is cancelled.
/// `work` gets a token that is cancelled when the lease is lost (then this waits for it
/// to return and tries to take the lease again) or at shutdown (then the lease is
/// released so a standby takes over at once). An error from `work` (NATS failing over)
/// releases the lease and is logged, and this instance queues for the lease again.
pub async fn run_under_lease<F, Fut, E>(
    store: &EventStore,
    name: &str,
    shutdown: CancellationToken,
    mut work: F,
) -> Result<(), E>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let holder = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
    let Some(bucket) = open_bucket(store, &shutdown).await else {
        return Ok(());
    };
    loop {
        let Some(mut revision) = acquire(&bucket, name, &holder, &shutdown).await else {
            return Ok(());
        };
        tracing::info!(lease = name, holder, "lease taken: this instance is active");
        metrics::gauge!("fleet_lease_held", "lease" => name.to_owned()).set(1.0);
        metrics::counter!("fleet_lease_acquired_total", "lease" => name.to_owned()).increment(1);
        let token = shutdown.child_token();
        let mut job = pin!(work(token.clone()));
        let mut renew = tokio::time::interval_at(Instant::now() + RENEW_EVERY, RENEW_EVERY);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renewed = Instant::now();
        let ended = loop {
            tokio::select! {
                result = &mut job => break Some(result),
                _ = renew.tick() => {
                    match bucket.update(name, holder.clone().into(), revision).await {
                        Ok(next) => {
                            revision = next;
                            renewed = Instant::now();
                        }
                        Err(error) if renewed.elapsed() < GIVE_UP_AFTER
                            && !is_taken(&bucket, name, &holder).await => {
                            tracing::warn!(lease = name, %error, "cannot renew the lease; retrying");
                        }
                        Err(error) => {
                            tracing::warn!(lease = name, %error, "lease lost: stopping this instance's work");
                            token.cancel();
                            break None;
                        }
                    }
                }
            }
        };
        metrics::gauge!("fleet_lease_held", "lease" => name.to_owned()).set(0.0);
        match ended {
            None => {
                // Lost: let the work stop between decisions, then queue for the lease.
                let _ = job.await;
            }
            Some(result) => {
                if let Err(error) = bucket.delete_expect_revision(name, Some(revision)).await {
                    tracing::info!(lease = name, %error, "lease not released; it lapses by itself");
                } else {
                    tracing::info!(lease = name, "lease released");
                }
                match result {
                    Err(error) if !shutdown.is_cancelled() => {
                        // NATS failing over, say: another instance (or this one, after a
                        // pause) takes the work up again.
                        tracing::warn!(lease = name, %error, "work under the lease failed; standing by again");
                        if pause(&shutdown, STANDBY_POLL).await {
                            return Ok(());
                        }
                    }
                    result => return result,
                }
            }
        }
    }
}

/// The leases bucket, waiting while NATS or the bucket is not there; `None` at shutdown.
async fn open_bucket(store: &EventStore, shutdown: &CancellationToken) -> Option<Store> {
    loop {
        match store.jetstream().get_key_value(LEASES_BUCKET).await {
            Ok(bucket) => return Some(bucket),
            Err(error) => {
                tracing::warn!(%error, "cannot open the leases bucket (run `fleet streams ensure`?); retrying")
            }
        }
        if pause(shutdown, STANDBY_POLL).await {
            return None;
        }
    }
}

/// Takes lease `name` as soon as it is free; its revision, or `None` at shutdown.
async fn acquire(
    bucket: &Store,
    name: &str,
    holder: &str,
    shutdown: &CancellationToken,
) -> Option<u64> {
    let mut waiting = false;
    loop {
        match bucket.create(name, holder.to_owned().into()).await {
            Ok(revision) => return Some(revision),
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => {
                if !waiting {
                    tracing::info!(
                        lease = name,
                        "another instance holds the lease: standing by"
                    );
                    waiting = true;
                }
            }
            Err(error) => tracing::warn!(lease = name, %error, "cannot take the lease; retrying"),
        }
        if pause(shutdown, STANDBY_POLL).await {
            return None;
        }
    }
}

/// Whether the lease is no longer ours (held by someone else, or lapsed): a failed
/// renewal is then final. Unknown (NATS unreachable) counts as still ours.
async fn is_taken(bucket: &Store, name: &str, holder: &str) -> bool {
    match bucket.entry(name).await {
        Ok(Some(entry)) => {
            entry.operation != Operation::Put || entry.value.as_ref() != holder.as_bytes()
        }
        Ok(None) => true,
        Err(_) => false,
    }
}

/// Sleeps `how_long`; true if `shutdown` came first.
async fn pause(shutdown: &CancellationToken, how_long: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(how_long) => false,
    }
}
