//! The scheduler service: follows the log into the core and appends its decisions.
//!
//! Exactly once: a decision's task id is derived from (policy, agent, fire time) and is
//! appended with its msg id and `Expect::LastSeq(0)` on the task's own subject, so a
//! second scheduler instance, or this one restarted, loses the race with a conflict and
//! moves on. Appends that fail because NATS is unavailable are retried with the same msg
//! id until they succeed or the service stops.

use std::time::Duration;

use fleet_events::store::{Append, AppendError, EventStore, Expect, ReadError, Stored};
use fleet_events::subject;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use super::{Decision, Outcome, Scheduler};
use crate::clock::Clock;

/// Runs the scheduler until `shutdown` is cancelled. Stops between decisions, never in the
/// middle of appending one.
pub async fn run(
    store: EventStore,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), ReadError> {
    let mut core = Scheduler::new();
    let end = store.last_sequence(&subject::all_events()).await?;
    let mut next_seq = 1;
    let mut log = store.follow(&subject::all_events(), next_seq).await?;
    while next_seq <= end {
        match next_event(&mut log, &shutdown).await {
            Some(item) => next_seq = apply(&mut core, item, next_seq),
            None if shutdown.is_cancelled() => return Ok(()),
            None => log = reopen(&store, next_seq, &shutdown).await?,
        }
    }
    tracing::info!(events = end, "scheduler caught up with the log");
    let decisions = core.start(clock.now());
    write(&store, decisions, &shutdown).await;
    while !shutdown.is_cancelled() {
        let wake = core.next_due();
        tokio::select! {
            () = shutdown.cancelled() => break,
            item = next_event(&mut log, &shutdown) => match item {
                Some(item) => next_seq = apply(&mut core, item, next_seq),
                None if shutdown.is_cancelled() => break,
                None => log = reopen(&store, next_seq, &shutdown).await?,
            },
            () = sleep_until(&clock, wake) => {
                let decisions = core.due(clock.now());
                write(&store, decisions, &shutdown).await;
            }
        }
    }
    Ok(())
}

async fn sleep_until(clock: &Clock, wake: Option<chrono::DateTime<chrono::Utc>>) {
    match wake {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_event(
    log: &mut BoxStream<'static, Result<Stored, ReadError>>,
    shutdown: &CancellationToken,
) -> Option<Result<Stored, ReadError>> {
    tokio::select! {
        () = shutdown.cancelled() => None,
        item = log.next() => item,
    }
}

/// Applies one item of the log; returns the next sequence to read.
fn apply(core: &mut Scheduler, item: Result<Stored, ReadError>, next_seq: u64) -> u64 {
    match item {
        Ok(stored) => {
            core.apply(&stored.envelope);
            stored.seq + 1
        }
        Err(ReadError::Undecodable {
            seq,
            subject,
            error,
        }) => {
            metrics::counter!("fleet_scheduler_undecodable_events_total").increment(1);
            tracing::warn!(seq, %subject, %error, "scheduler skips an undecodable event");
            seq + 1
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the log failed; resuming");
            next_seq
        }
    }
}

/// Opens the log again from `from` after a pause, until it works or shutdown.
async fn reopen(
    store: &EventStore,
    from: u64,
    shutdown: &CancellationToken,
) -> Result<BoxStream<'static, Result<Stored, ReadError>>, ReadError> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(futures::stream::empty().boxed()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        match store.follow(&subject::all_events(), from).await {
            Ok(log) => return Ok(log),
            Err(e) => tracing::warn!(error = %e, "cannot reopen the log; retrying"),
        }
    }
}

/// Appends every decision: cancellations of replaced runs first, then the decision.
async fn write(store: &EventStore, decisions: Vec<Decision>, shutdown: &CancellationToken) {
    for decision in decisions {
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
                let outcome = outcome_name(decision.outcome);
                metrics::counter!("fleet_scheduler_decisions_total", "outcome" => outcome)
                    .increment(1);
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
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Scheduled => "scheduled",
        Outcome::Replaced => "replaced",
        Outcome::SkippedOverlap => "skipped_overlap",
        Outcome::SkippedMissed => "skipped_missed",
    }
}

/// Appends, retrying with the same msg id while NATS is unavailable.
async fn append_retrying(
    store: &EventStore,
    append: Append<'_>,
    shutdown: &CancellationToken,
) -> Result<fleet_events::store::Appended, AppendError> {
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
