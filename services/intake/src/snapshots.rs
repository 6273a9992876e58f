//! Recording an accepted snapshot listing: the repository's inventory is folded from its
//! events (kept between reports, per tenant and repository, with the sequence it was
//! folded up to, so that only the events appended since are read), the pure
//! [`inventory::decide`] says what changed, and each event is appended expecting the
//! repository subject's last sequence. A lost race is decided again on the new history.
//!
//! Msg ids are `snapshots:<task>:<attempt>:<part>:<n>:<expected sequence>`: the expected
//! sequence makes them unique per decision, so that an event decided again after a lost
//! race (the `n`-th of a new decision) is never taken for the retry of an earlier one and
//! dropped by deduplication; a resent report decided again finds its change applied and
//! writes nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use fleet_events::envelope::Envelope;
use fleet_events::event::Event;
use fleet_events::ids::{AgentId, RepoId, TenantId};
use fleet_events::protocol::AgentReport;
use fleet_events::store::consume::Outcome;
use fleet_events::store::{Append, AppendError, EventStore, Expect, ReadError, Stored};
use fleet_events::subject::{AggregateId, EventSubject};

use super::inventory::{self, Inventory};
use super::listing::Accepted;
use fleet_runtime::clock::Clock;

/// A repository's inventory folded up to a stream sequence of its subject.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub inventory: Inventory,
    /// The last sequence folded: the repository subject's last event then (0: none).
    pub last_seq: u64,
}

impl Known {
    fn fold(&mut self, stored: &Stored) {
        if let Event::Repo { event, .. } = &stored.envelope.event {
            self.inventory.apply(event);
        }
        self.last_seq = self.last_seq.max(stored.seq);
    }
}

type RepoKey = (TenantId, RepoId);

/// Inventories intake has folded, by tenant and repository, at most `capacity` of them
/// (emptied when full). A cached inventory is only ever a starting point: the events
/// appended after its sequence are read before each decision, so the cache changes speed,
/// never a decision.
#[derive(Debug)]
pub struct InventoryCache {
    entries: Mutex<HashMap<RepoKey, Known>>,
    capacity: usize,
}

impl InventoryCache {
    /// An empty cache holding at most `capacity` inventories.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn get(&self, key: &RepoKey) -> Option<Known> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    /// Keeps `known` unless a later fold of the repository is kept already.
    fn put(&self, key: RepoKey, known: Known) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries
            .get(&key)
            .is_some_and(|k| k.last_seq > known.last_seq)
        {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, known);
    }
}

/// The repository's inventory as the log has it now: the cached fold plus the events
/// appended since, or the whole history.
async fn catch_up(
    store: &EventStore,
    cache: &InventoryCache,
    key: &RepoKey,
    subject: &EventSubject,
) -> Result<Known, ReadError> {
    let Some(mut known) = cache.get(key) else {
        let history = store.history(subject).await?;
        let mut known = Known::default();
        for stored in &history.events {
            known.fold(stored);
        }
        known.last_seq = history.last_seq;
        return Ok(known);
    };
    // By message gets, like every writer's read; nothing to read when nothing was appended.
    let tail = store.history_since(subject, known.last_seq).await?;
    for stored in &tail.events {
        known.fold(stored);
    }
    known.last_seq = known.last_seq.max(tail.last_seq);
    Ok(known)
}

/// Applies the accepted listing part of `report` (from `sender`) to its repository's
/// inventory. `retry` is the delay before the report is judged again after a failure.
pub async fn record(
    store: &EventStore,
    clock: &Clock,
    cache: &InventoryCache,
    report: &AgentReport,
    sender: AgentId,
    accepted: Accepted<'_>,
    retry: Duration,
) -> Outcome {
    let (repo, listing) = (accepted.repo, accepted.listing);
    let key = (report.tenant.clone(), repo);
    let subject = EventSubject {
        tenant: report.tenant.clone(),
        aggregate: AggregateId::Repo(repo),
    };
    let mut known = match catch_up(store, cache, &key, &subject).await {
        Ok(known) => known,
        Err(error) => {
            tracing::warn!(%repo, %error, "cannot read the repository; listing retried");
            return Outcome::Retry(retry);
        }
    };
    let events = inventory::decide(&known.inventory, listing, report.task, sender);
    if events.is_empty() {
        let older = known
            .inventory
            .newest
            .is_some_and(|newest| listing.listed_at < newest);
        if older {
            metrics::counter!("fleet_intake_late_reports_total").increment(1);
        }
        tracing::debug!(task = %report.task, %repo, part = listing.part, older, "listing changes nothing");
        cache.put(key, known);
        return Outcome::Done;
    }
    let count = events.len();
    for (n, event) in events.into_iter().enumerate() {
        let msg_id = format!(
            "snapshots:{}:{}:{}:{n}:{}",
            report.task, report.attempt, listing.part, known.last_seq
        );
        let event = Event::Repo { repo, event };
        let envelope = Envelope::caused_by(accepted.cause, clock.now(), event);
        let append = Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::LastSeq(known.last_seq),
        };
        let outcome = match store.append(append).await {
            Ok(appended) => {
                if let Event::Repo { event, .. } = &envelope.event {
                    known.inventory.apply(event);
                }
                known.last_seq = appended.seq;
                continue;
            }
            // Someone appended to the repository meanwhile: decide again on its history.
            Err(AppendError::Conflict { .. }) => Outcome::Retry(Duration::from_millis(50)),
            Err(AppendError::Unavailable(reason)) => {
                tracing::warn!(%repo, %reason, "event store unavailable; listing retried");
                Outcome::Retry(retry)
            }
            Err(e) => Outcome::Park(format!("the event could not be stored: {e}")),
        };
        cache.put(key, known);
        return outcome;
    }
    cache.put(key, known);
    metrics::counter!("fleet_intake_reports_total", "status" => report.status.name()).increment(1);
    tracing::info!(task = %report.task, agent = %sender, %repo, part = listing.part, events = count, "snapshot inventory changed");
    Outcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_latest_fold_and_stays_bounded() {
        let cache = InventoryCache::new(2);
        let tenant = TenantId::new("acme").unwrap();
        let key = |url: &str| (tenant.clone(), RepoId::for_url(url));
        let at = |last_seq| Known {
            last_seq,
            ..Known::default()
        };
        cache.put(key("/a"), at(7));
        cache.put(key("/a"), at(5));
        assert_eq!(cache.get(&key("/a")).map(|k| k.last_seq), Some(7));
        cache.put(key("/b"), at(1));
        cache.put(key("/c"), at(1));
        assert!(cache.get(&key("/a")).is_none() && cache.get(&key("/c")).is_some());
    }
}
