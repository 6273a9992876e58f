//! A watchdog on replays: a consumer that delivers nothing while the log holds more for
//! its filter has gone away without a word, and the replay says so instead of waiting
//! forever.
//!
//! It happens on nats-server 2.9.10 clusters: async-nats recreates an ordered consumer
//! that misses its heartbeats under a fixed name, retrying forever, and 2.9.10 may have
//! placed that name on a node that is down, which never answers (2.9.15 and later skip
//! offline peers). Every reader already reopens its replay after an error.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::read::Delivered;
use super::{EventStore, ReadError};

/// Silence after which a replay asks whether the log has more for it: longer than
/// async-nats takes to notice missed heartbeats (10 s) and recreate the consumer itself.
pub const STALL_AFTER: Duration = Duration::from_secs(15);

/// Replays that ended because their consumer went silent with events left to deliver.
pub const STALLS_METRIC: &str = "fleet_replay_stalls_total";

struct Watch {
    inner: BoxStream<'static, Delivered>,
    store: EventStore,
    filter: String,
    stall_after: Duration,
    /// The last stream sequence delivered (or the one before the replay's start).
    seen: u64,
    ended: bool,
}

/// `inner` (a replay of `filter` from `from`), ending with an error once it stays silent
/// for the store's stall time while the log has a later event matching `filter`.
pub(super) fn watched(
    inner: BoxStream<'static, Delivered>,
    store: EventStore,
    filter: &str,
    from: u64,
) -> BoxStream<'static, Delivered> {
    let watch = Watch {
        inner,
        stall_after: store.stall_after,
        store,
        filter: filter.to_owned(),
        seen: from.saturating_sub(1),
        ended: false,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        if watch.ended {
            return None;
        }
        loop {
            match tokio::time::timeout(watch.stall_after, watch.inner.next()).await {
                Ok(Some(item)) => {
                    if let Some(seq) = item.1 {
                        watch.seen = watch.seen.max(seq);
                    }
                    return Some((item, watch));
                }
                Ok(None) => return None,
                Err(_) => {
                    // Idle with nothing to deliver, or NATS cannot tell now: keep waiting.
                    let last = match watch.store.last_sequence(&watch.filter).await {
                        Ok(last) => last,
                        Err(e) => {
                            tracing::debug!(filter = %watch.filter, error = %e, "replay silent; the log's end is unknown");
                            continue;
                        }
                    };
                    if last <= watch.seen {
                        tracing::trace!(filter = %watch.filter, seen = watch.seen, "replay idle");
                        continue;
                    }
                    metrics::counter!(STALLS_METRIC).increment(1);
                    watch.ended = true;
                    let error = ReadError::Nats {
                        what: format!("replay of {}", watch.filter),
                        message: format!(
                            "nothing delivered for {:?} after sequence {} although the log reaches {last}: its consumer is gone",
                            watch.stall_after, watch.seen
                        ),
                    };
                    return Some(((Err(error), None), watch));
                }
            }
        }
    })
    .boxed()
}
