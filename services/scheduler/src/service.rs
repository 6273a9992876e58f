//! The scheduler service: follows the log into the core and appends its decisions.
//!
//! Exactly once: a decision's task id is derived from (policy, agent, fire time) and is
//! appended with its msg id and `Expect::LastSeq(0)` on the task's own subject, so a
//! second scheduler instance, or this one restarted, loses the race with a conflict and
//! moves on. Appends that fail because NATS is unavailable are retried with the same msg
//! id until they succeed or the service stops.

use fleet_events::store::{Append, AppendError, EventStore, Expect, ReadError};
use fleet_events::subject;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Decision, Scheduler};
use fleet_runtime::clock::Clock;
use fleet_runtime::follow::{Follower, append_retrying};
use fleet_runtime::lease::{self, Held};
use fleet_runtime::snapshot::Snapshots;

/// Runs the scheduler until `shutdown` is cancelled. Every instance follows the log (a warm
/// standby); only while `held` reads true does it decide fires, so taking over costs no
/// replay. Stops acting between decisions, never in the middle of appending one. Starts
/// from its snapshot when `snapshots` has a usable one, writes one when due and at a
/// clean stop.
pub async fn run(
    store: EventStore,
    clock: Clock,
    mut held: Held,
    snapshots: Snapshots,
    shutdown: CancellationToken,
) -> Result<(), ReadError> {
    let start = snapshots.start(&store, Scheduler::new).await;
    let (mut core, mut last_seq, mut writer) = (start.state, start.covers, start.writer);
    let mut log = Follower::open_from(
        store.clone(),
        subject::all_events(),
        "scheduler",
        last_seq + 1,
    )
    .await?;
    while !log.caught_up() {
        match log.next(&shutdown).await {
            Some(stored) => {
                core.apply(&stored.envelope);
                last_seq = stored.seq;
            }
            None => return Ok(()),
        }
    }
    tracing::info!(seq = last_seq, "scheduler caught up with the log");
    writer.maybe_write(&core, last_seq).await;
    let mut active = false;
    loop {
        let holds = *held.borrow_and_update();
        match (active, holds) {
            (false, true) => {
                tracing::info!("scheduler active");
                active = true;
                // The first time: missed runs; after a standby spell, what fell due.
                let decisions = core.start(clock.now());
                write(&store, decisions, &shutdown).await;
            }
            (true, false) => {
                tracing::info!("scheduler standing by");
                active = false;
            }
            _ => {}
        }
        let wake = if active { core.next_due() } else { None };
        tokio::select! {
            item = log.next(&shutdown) => match item {
                Some(stored) => {
                    core.apply(&stored.envelope);
                    last_seq = stored.seq;
                    writer.maybe_write(&core, last_seq).await;
                }
                None => break,
            },
            () = lease::changed(&mut held) => {}
            () = clock.sleep_until_some(wake) => {
                let decisions = core.due(clock.now());
                write(&store, decisions, &shutdown).await;
            }
        }
    }
    writer.write(&core, last_seq).await;
    Ok(())
}

/// Decisions appended at once: each is its own task's subject, so they need no order
/// among them, and a top-of-hour fire of thousands of pairs is recorded in a moment
/// rather than one round trip after another (which held back the dispatch of the pairs
/// whose jitter is short).
const IN_FLIGHT: usize = 256;

/// Appends every decision, up to [`IN_FLIGHT`] at once, those due soonest first (a
/// top-of-hour fire of 30,000 pairs takes seconds to record; in the core's order a pair
/// whose jitter is a second waited for thousands due minutes later): each decision's
/// cancellations of replaced runs first, then the decision.
async fn write(store: &EventStore, mut decisions: Vec<Decision>, shutdown: &CancellationToken) {
    decisions.sort_by_key(Decision::run_at);
    futures::stream::iter(decisions)
        .for_each_concurrent(IN_FLIGHT, |decision| write_one(store, decision, shutdown))
        .await;
}

async fn write_one(store: &EventStore, decision: Decision, shutdown: &CancellationToken) {
    for cancel in &decision.cancels {
        let subject = cancel.envelope.subject();
        let Ok(last) = store.last_sequence(&subject).await else {
            tracing::warn!(task = %cancel.task, "cannot read the task to cancel; it keeps running");
            continue;
        };
        let append = Append {
            envelope: &cancel.envelope,
            msg_id: &cancel.msg_id,
            expect: Expect::LastSeq(last),
        };
        if let Err(e) = append_retrying(store, append, shutdown).await {
            tracing::info!(task = %cancel.task, error = %e, "replaced run was not cancelled (it changed meanwhile)");
        }
    }
    let append = Append {
        envelope: &decision.envelope,
        msg_id: &decision.msg_id,
        expect: Expect::LastSeq(0),
    };
    match append_retrying(store, append, shutdown).await {
        Ok(appended) if !appended.duplicate => {
            let outcome = decision.outcome.name();
            metrics::counter!("fleet_scheduler_decisions_total", "outcome" => outcome).increment(1);
            tracing::info!(task = %decision.task, policy = %decision.policy, agent = %decision.agent, fire_at = %decision.fire_at, outcome, "task recorded");
        }
        Ok(_) | Err(AppendError::Conflict { .. }) => {
            tracing::debug!(task = %decision.task, "another scheduler recorded this fire");
        }
        Err(e) => {
            tracing::error!(task = %decision.task, error = %e, "decision could not be recorded")
        }
    }
}
