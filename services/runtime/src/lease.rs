//! Leases in NATS: what must run once across instances (the scheduler's fires, the
//! dispatcher's heartbeats, liveness and dispatches) is done only by the instance holding
//! its lease, a key of the `fleet_service_leases` bucket (see
//! `fleet_events::streams::leases`). Every instance, holder or standby, keeps its state
//! current; the lease only says which one acts.
//!
//! # Design (correct on nats-server 2.9.10 and current releases)
//! - The key's value names its holder (a fresh id per acquisition); an empty value means
//!   released. Keys never expire by age and are never deleted: every write is a
//!   compare-and-set on the revision last seen (`Nats-Expected-Last-Subject-Sequence`).
//!   nats-server 2.9.10 mishandles a key whose message expired by max age after a restart
//!   (see the notes), so nothing here relies on expiry.
//! - The holder rewrites its key every [`RENEW_EVERY`]. It stops acting once
//!   [`GIVE_UP_AFTER`] has passed, by its own monotonic clock, since it *sent* the last
//!   renewal that succeeded, or as soon as it reads another holder in the key.
//! - A standby polls the key every [`STANDBY_POLL`]. A released key is taken at once. A
//!   held key is taken once the standby has seen the same revision for [`LEASE_TTL`] by its
//!   own monotonic clock: it first saw that revision after it was stored, so after its
//!   holder sent it, so the holder had given up [`LEASE_TTL`] − [`GIVE_UP_AFTER`] earlier.
//!   No clocks of two machines are ever compared, and a server restart only pauses both.
//! - Two standbys racing for one revision: the compare-and-set lets one win.
//! - A renewal whose ack was lost (stored, but the holder never heard) is found by
//!   reading the key: the holder's own id at a newer revision is adopted.
//!
//! Stopping is cooperative (between decisions), so for a moment two instances may act:
//! every write is still guarded by msg ids and expected sequences, which is what keeps
//! effects exactly-once; the lease keeps the work from being done twice.

use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use fleet_events::store::EventStore;
use fleet_events::streams::{LEASE_TTL, LEASES_BUCKET};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a holder renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How long a holder acts without a renewal that succeeded: well inside [`LEASE_TTL`], so
/// it has stopped before anyone else can take the lease.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(6);
/// How often a standby reads the lease.
pub const STANDBY_POLL: Duration = Duration::from_secs(1);

const _: () = assert!(GIVE_UP_AFTER.as_secs() + RENEW_EVERY.as_secs() <= LEASE_TTL.as_secs());

/// What a reading of the lease key showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The key was never written.
    Missing,
    /// Released (empty value, or a delete marker), at this revision.
    Released(u64),
    /// Held by `holder`, at this revision.
    Held { revision: u64, holder: String },
    /// NATS did not answer.
    Unknown,
}

/// A revision a standby has seen, and since when (its own clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    pub revision: u64,
    pub since: Instant,
}

/// What a standby does after a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyStep {
    /// Create the key (expecting it to be empty).
    Create,
    /// Take the lease over, expecting this revision.
    Take(u64),
    /// Keep waiting.
    Wait,
}

/// The standby's decision, pure: `sighting` is updated to what was seen. A key held by
/// an earlier turn of this same instance (`instance`: the prefix of its holder ids) is as
/// good as released: that turn stopped acting before this one began to wait (after a NATS
/// outage longer than [`GIVE_UP_AFTER`], say), so there is nothing to wait out.
pub fn standby_step(
    sighting: &mut Option<Sighting>,
    observed: &Observed,
    instance: &str,
    now: Instant,
    ttl: Duration,
) -> StandbyStep {
    match observed {
        Observed::Missing => StandbyStep::Create,
        Observed::Released(revision) => StandbyStep::Take(*revision),
        Observed::Unknown => StandbyStep::Wait,
        Observed::Held { revision, holder }
            if holder
                .strip_prefix(instance)
                .is_some_and(|turn| turn.starts_with('-')) =>
        {
            StandbyStep::Take(*revision)
        }
        Observed::Held { revision, .. } => match sighting {
            Some(seen) if seen.revision == *revision => {
                if now.duration_since(seen.since) >= ttl {
                    StandbyStep::Take(*revision)
                } else {
                    StandbyStep::Wait
                }
            }
            _ => {
                *sighting = Some(Sighting {
                    revision: *revision,
                    since: now,
                });
                StandbyStep::Wait
            }
        },
    }
}

/// What a holder does after a renewal failed and the key was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderStep {
    /// Our own write at a newer revision (its ack was lost): renew from there.
    Adopt(u64),
    /// Still ours as far as we know: try again at the next renewal.
    Retry,
    /// Someone else holds it, or it was released or removed: stop acting.
    Lost,
}

/// The holder's decision after a failed renewal, pure.
pub fn holder_step(observed: &Observed, holder: &str, revision: u64) -> HolderStep {
    match observed {
        Observed::Held {
            revision: seen,
            holder: who,
        } if who == holder => {
            if *seen > revision {
                HolderStep::Adopt(*seen)
            } else {
                HolderStep::Retry
            }
        }
        Observed::Unknown => HolderStep::Retry,
        _ => HolderStep::Lost,
    }
}

/// Whether this instance holds a lease, as the services read it.
pub type Held = watch::Receiver<bool>;

/// A lease kept by a background task: taken when free, renewed while held, released on
/// [`Lease::stop`].
pub struct Lease {
    held: Held,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Lease {
    /// Starts queueing for lease `name`.
    pub fn spawn(store: &EventStore, name: &str) -> Self {
        // Registered at zero: a standby shows 0 held, and flapping alerts see the counters.
        metrics::gauge!("fleet_lease_held", "lease" => name.to_owned()).set(0.0);
        metrics::counter!("fleet_lease_acquired_total", "lease" => name.to_owned()).increment(0);
        metrics::counter!("fleet_lease_lost_total", "lease" => name.to_owned()).increment(0);
        let (tx, held) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(store.clone(), name.to_owned(), tx, stop.clone()));
        Self { held, stop, task }
    }

    /// Whether this instance holds the lease now, and changes of it.
    pub fn held(&self) -> Held {
        self.held.clone()
    }

    /// Stops renewing without releasing, as a process killed with SIGKILL would: a standby
    /// takes over once [`LEASE_TTL`] has passed. For fault tests.
    pub fn crash(self) {
        drop(self);
    }

    /// Stops renewing and releases the lease if held, so a standby takes over at once.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Lease {
    /// A lease dropped without [`Lease::stop`] (its service's future dropped, as when the
    /// process dies) stops renewing without releasing.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `held` changes; for ever if it cannot change any more.
pub async fn changed(held: &mut Held) {
    if held.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn keep(store: EventStore, name: String, held: watch::Sender<bool>, stop: CancellationToken) {
    let Some(bucket) = open_bucket(&store, &stop).await else {
        return;
    };
    let instance = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
    for turn in 1u64.. {
        let holder = format!("{instance}-{turn}");
        let Some((mut revision, mut renewed)) =
            acquire(&bucket, &name, &instance, &holder, &stop).await
        else {
            return;
        };
        tracing::info!(lease = %name, holder, "lease taken: this instance is active");
        metrics::gauge!("fleet_lease_held", "lease" => name.clone()).set(1.0);
        metrics::counter!("fleet_lease_acquired_total", "lease" => name.clone()).increment(1);
        held.send_replace(true);
        let released = loop {
            let next = renewed + RENEW_EVERY;
            tokio::select! {
                () = stop.cancelled() => {
                    release(&bucket, &name, revision).await;
                    break true;
                }
                () = tokio::time::sleep_until(next) => {}
            }
            let sent = Instant::now();
            let renewal = tokio::time::timeout(
                RENEW_EVERY,
                bucket.update(&name, holder.clone().into(), revision),
            )
            .await;
            match renewal {
                Ok(Ok(next)) => {
                    revision = next;
                    renewed = sent;
                    continue;
                }
                Ok(Err(error)) => {
                    tracing::debug!(lease = %name, %error, "lease renewal refused");
                }
                Err(_) => tracing::debug!(lease = %name, "lease renewal unanswered"),
            }
            match holder_step(&observe(&bucket, &name).await, &holder, revision) {
                HolderStep::Adopt(seen) => revision = seen,
                HolderStep::Retry if renewed.elapsed() < GIVE_UP_AFTER => {
                    tracing::warn!(lease = %name, "cannot renew the lease; retrying");
                }
                HolderStep::Retry | HolderStep::Lost => break false,
            }
            if renewed.elapsed() >= GIVE_UP_AFTER {
                break false;
            }
        };
        held.send_replace(false);
        metrics::gauge!("fleet_lease_held", "lease" => name.clone()).set(0.0);
        if released {
            return;
        }
        metrics::counter!("fleet_lease_lost_total", "lease" => name.clone()).increment(1);
        tracing::warn!(lease = %name, "lease lost: this instance stops acting and stands by");
    }
}

/// Reads the lease key.
async fn observe(bucket: &Store, name: &str) -> Observed {
    match tokio::time::timeout(STANDBY_POLL, bucket.entry(name)).await {
        Ok(Ok(None)) => Observed::Missing,
        Ok(Ok(Some(entry))) if entry.operation != Operation::Put || entry.value.is_empty() => {
            Observed::Released(entry.revision)
        }
        Ok(Ok(Some(entry))) => Observed::Held {
            revision: entry.revision,
            holder: String::from_utf8_lossy(&entry.value).into_owned(),
        },
        Ok(Err(error)) => {
            tracing::debug!(lease = name, %error, "cannot read the lease");
            Observed::Unknown
        }
        Err(_) => Observed::Unknown,
    }
}

/// Takes lease `name` as soon as the rules allow: its revision and when the winning write
/// was sent, or `None` when stopped.
async fn acquire(
    bucket: &Store,
    name: &str,
    instance: &str,
    holder: &str,
    stop: &CancellationToken,
) -> Option<(u64, Instant)> {
    let mut sighting = None;
    let mut waiting = false;
    loop {
        let observed = observe(bucket, name).await;
        let step = standby_step(
            &mut sighting,
            &observed,
            instance,
            Instant::now(),
            LEASE_TTL,
        );
        let sent = Instant::now();
        let taken = match step {
            StandbyStep::Wait => {
                if !waiting && matches!(observed, Observed::Held { .. }) {
                    tracing::info!(
                        lease = name,
                        "another instance holds the lease: standing by"
                    );
                    waiting = true;
                }
                None
            }
            StandbyStep::Create => bucket.create(name, holder.to_owned().into()).await.ok(),
            StandbyStep::Take(revision) => {
                let taken = bucket
                    .update(name, holder.to_owned().into(), revision)
                    .await
                    .ok();
                if taken.is_some()
                    && matches!(&observed, Observed::Held { holder, .. } if !holder.starts_with(instance))
                {
                    tracing::warn!(lease = name, "the holder stopped renewing: taking over");
                }
                taken
            }
        };
        if let Some(revision) = taken {
            return Some((revision, sent));
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(STANDBY_POLL) => {}
        }
    }
}

/// Writes the released marker, so a standby takes over without waiting.
async fn release(bucket: &Store, name: &str, revision: u64) {
    match bucket.update(name, String::new().into(), revision).await {
        Ok(_) => tracing::info!(lease = name, "lease released"),
        Err(error) => {
            tracing::info!(lease = name, %error, "lease not released; a standby takes it after its TTL")
        }
    }
}

/// The leases bucket, waiting while NATS or the bucket is not there; `None` when stopped.
async fn open_bucket(store: &EventStore, stop: &CancellationToken) -> Option<Store> {
    loop {
        match store.jetstream().get_key_value(LEASES_BUCKET).await {
            Ok(bucket) => return Some(bucket),
            Err(error) => {
                tracing::warn!(%error, "cannot open the leases bucket (run `fleet streams ensure`?); retrying")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(STANDBY_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn held(revision: u64, holder: &str) -> Observed {
        Observed::Held {
            revision,
            holder: holder.into(),
        }
    }

    #[test]
    fn a_standby_creates_a_missing_key_and_takes_a_released_one_at_once() {
        let now = Instant::now();
        let mut seen = None;
        assert_eq!(
            standby_step(&mut seen, &Observed::Missing, "me", now, TTL),
            StandbyStep::Create
        );
        assert_eq!(
            standby_step(&mut seen, &Observed::Released(7), "me", now, TTL),
            StandbyStep::Take(7)
        );
    }

    #[test]
    fn a_standby_takes_back_at_once_a_key_its_own_earlier_turn_held() {
        let now = Instant::now();
        let mut seen = None;
        assert_eq!(
            standby_step(&mut seen, &held(5, "me-1"), "me", now, TTL),
            StandbyStep::Take(5)
        );
        // Another instance whose id merely starts the same is not us.
        assert_eq!(
            standby_step(&mut seen, &held(5, "mess-1"), "me", now, TTL),
            StandbyStep::Wait
        );
    }

    #[test]
    fn a_standby_takes_a_held_key_only_after_its_revision_stood_still_for_the_ttl() {
        let start = Instant::now();
        let mut seen = None;
        let step = |seen: &mut Option<Sighting>, o: &Observed, secs: u64| {
            standby_step(seen, o, "me", start + Duration::from_secs(secs), TTL)
        };
        assert_eq!(step(&mut seen, &held(3, "a"), 0), StandbyStep::Wait);
        assert_eq!(step(&mut seen, &held(3, "a"), 9), StandbyStep::Wait);
        // Renewed: the wait starts again from the new revision.
        assert_eq!(step(&mut seen, &held(4, "a"), 9), StandbyStep::Wait);
        assert_eq!(step(&mut seen, &held(4, "a"), 18), StandbyStep::Wait);
        // NATS silent for a while: time still counts from the first sighting.
        assert_eq!(step(&mut seen, &Observed::Unknown, 18), StandbyStep::Wait);
        assert_eq!(step(&mut seen, &held(4, "a"), 19), StandbyStep::Take(4));
    }

    #[test]
    fn a_holder_adopts_its_own_newer_write_and_stops_when_another_holds_the_key() {
        assert_eq!(holder_step(&held(9, "me"), "me", 8), HolderStep::Adopt(9));
        assert_eq!(holder_step(&held(8, "me"), "me", 8), HolderStep::Retry);
        assert_eq!(holder_step(&Observed::Unknown, "me", 8), HolderStep::Retry);
        assert_eq!(holder_step(&held(9, "b"), "me", 8), HolderStep::Lost);
        assert_eq!(
            holder_step(&Observed::Released(9), "me", 8),
            HolderStep::Lost
        );
        assert_eq!(holder_step(&Observed::Missing, "me", 8), HolderStep::Lost);
    }
}
