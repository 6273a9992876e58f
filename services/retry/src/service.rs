//! The retry-budget enforcer service: follows the log into the [`Enforcer`] and appends
//! its decisions (retries, exhaustion, retry-due, circuit changes).
//!
//! Due times live in the log (`RetryScheduled.due_at`): a restarted enforcer folds them
//! back and fires each retry once, on time. Decisions carry deterministic msg ids and
//! expected sequences, so two instances write each decision once.

use fleet_events::store::{AppendError, EventStore, ReadError};
use fleet_events::subject;
use tokio_util::sync::CancellationToken;

use super::{CircuitConfig, Enforcer, ToAppend};
use fleet_runtime::clock::Clock;
use fleet_runtime::follow::{Follower, append_retrying};
use fleet_runtime::pace::Pace;
use fleet_runtime::snapshot::Snapshots;

/// Runs the enforcer until `shutdown` is cancelled. Starts from its snapshot when
/// `snapshots` has a usable one, writes one when due and at a clean stop.
pub async fn run(
    store: EventStore,
    clock: Clock,
    circuit: CircuitConfig,
    snapshots: Snapshots,
    shutdown: CancellationToken,
) -> Result<(), ReadError> {
    let start = snapshots.start(&store, || Enforcer::new(circuit)).await;
    let (mut core, mut last_seq, mut writer) = (start.state, start.covers, start.writer);
    let mut log =
        Follower::open_from(store.clone(), subject::all_events(), "retry", last_seq + 1).await?;
    while !log.caught_up() {
        match log.next(&shutdown).await {
            Some(stored) => {
                core.apply(&stored);
                last_seq = stored.seq;
            }
            None => return Ok(()),
        }
    }
    tracing::info!(seq = last_seq, "retry enforcer caught up with the log");
    writer.maybe_write(&core, last_seq).await;
    let decisions = core.pending_decisions(clock.now());
    write(&store, decisions, &shutdown).await;
    let mut gauges = Pace::second();
    loop {
        let wake = core.next_wake();
        tokio::select! {
            item = log.next(&shutdown) => match item {
                Some(stored) => {
                    let decisions = core.on_event(&stored, clock.now());
                    last_seq = stored.seq;
                    write(&store, decisions, &shutdown).await;
                    writer.maybe_write(&core, last_seq).await;
                }
                None => {
                    writer.write(&core, last_seq).await;
                    return Ok(());
                }
            },
            () = clock.sleep_until_some(wake) => {
                let now = clock.now();
                let mut decisions = core.due(now);
                decisions.extend(core.pending_decisions(now));
                write(&store, decisions, &shutdown).await;
            }
        }
        // The gauges pass over every task: once a second, not after every event.
        if gauges.due() {
            metrics::gauge!("fleet_tasks_in_backoff").set(core.pending().count() as f64);
            let now = clock.now();
            let open = core
                .breakers()
                .filter(|(_, _, b)| !matches!(b.state(now), super::CircuitState::Closed))
                .count();
            metrics::gauge!("fleet_open_circuits").set(open as f64);
        }
    }
}

async fn write(store: &EventStore, decisions: Vec<ToAppend>, shutdown: &CancellationToken) {
    for decision in decisions {
        let append = decision.as_append();
        let kind = decision.envelope.event.event_type().name();
        match append_retrying(store, append, shutdown).await {
            Ok(appended) if !appended.duplicate => {
                metrics::counter!("fleet_retry_decisions_total", "event" => kind).increment(1);
                tracing::info!(subject = %decision.envelope.subject(), event = kind, "retry decision recorded");
            }
            Ok(_) | Err(AppendError::Conflict { .. }) => {
                tracing::debug!(event = kind, "decision already recorded or overtaken");
            }
            Err(e) => {
                tracing::error!(event = kind, error = %e, "retry decision could not be recorded")
            }
        }
    }
}
