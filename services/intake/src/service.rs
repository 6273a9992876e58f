//! The intake service: a durable consumer of every agent's reports. Several instances
//! share the consumer; each report is appended once, with the task's expected sequence
//! and a msg id derived from the report.

use std::sync::Arc;
use std::time::Duration;

use fleet_events::envelope::Envelope;
use fleet_events::event::Event;
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::store::consume::{self, ConsumeError, Delivery, Durable, Outcome};
use fleet_events::store::{Append, AppendError, EventStore, Expect, History, Stored};
use fleet_events::streams;
use fleet_events::subject::{self, AgentSubject, AggregateId, Channel, EventSubject};
use tokio_util::sync::CancellationToken;

use super::cache::HistoryCache;
use super::listing::judge_listing;
use super::snapshots::{self, InventoryCache};
use super::{Verdict, judge};
use fleet_runtime::clock::Clock;

/// The durable consumer shared by intake instances.
pub const REPORTS_CONSUMER: &str = "intake-reports";

/// Task histories kept between reports.
const CACHED_TASKS: usize = 10_000;

/// Repository inventories kept between snapshot listings.
const CACHED_INVENTORIES: usize = 256;

/// Deliveries of one report before it is parked: with [`retry_delay`], about two minutes,
/// longer than a NATS node takes to fail over.
const ATTEMPTS: u64 = 30;

/// How long to wait before judging a report again after its `attempt`-th delivery: 1 s
/// more each time, at most 5 s.
fn retry_delay(attempt: u64) -> Duration {
    Duration::from_secs(attempt.clamp(1, 5))
}

/// Consumes reports until `shutdown` is cancelled.
pub async fn run(
    store: EventStore,
    clock: Clock,
    shutdown: CancellationToken,
) -> Result<(), ConsumeError> {
    let durable = Durable {
        max_attempts: ATTEMPTS,
        ..Durable::new(
            streams::INTAKE,
            REPORTS_CONSUMER,
            &subject::all_agents(Channel::Reports),
        )
    };
    let caches = Arc::new(Caches {
        tasks: HistoryCache::new(CACHED_TASKS),
        inventories: InventoryCache::new(CACHED_INVENTORIES),
    });
    consume::run(
        &store,
        &durable,
        shutdown,
        |delivery: Delivery<AgentReport>| {
            let (store, clock, caches) = (store.clone(), clock.clone(), caches.clone());
            async move { handle(&store, &clock, &caches, delivery).await }
        },
    )
    .await
}

/// What intake keeps between reports (speed only, never a verdict).
struct Caches {
    tasks: HistoryCache,
    inventories: InventoryCache,
}

async fn handle(
    store: &EventStore,
    clock: &Clock,
    caches: &Caches,
    delivery: Delivery<AgentReport>,
) -> Outcome {
    let cache = &caches.tasks;
    let report = delivery.value;
    let sender = match AgentSubject::parse(&delivery.subject) {
        Ok(s) => s.agent,
        Err(e) => return Outcome::Park(e.to_string()),
    };
    let task_subject = EventSubject {
        tenant: report.tenant.clone(),
        aggregate: AggregateId::Task(report.task),
    };
    let key = task_subject.to_string();
    let cached = cache.get(&key);
    let from_cache = cached.is_some();
    let mut history = match cached {
        Some(history) => history,
        None => match store.history(&task_subject).await {
            Ok(history) => history,
            Err(e) => {
                tracing::warn!(task = %report.task, error = %e, "cannot read the task; report retried");
                return Outcome::Retry(retry_delay(delivery.attempt));
            }
        },
    };
    if let ReportStatus::SnapshotsListed { .. } = report.status {
        let now = clock.now();
        if from_cache && judge_listing(sender, &report, &history.events, now).is_err() {
            // The cached history may be stale: judge again on the log before parking.
            match store.history(&task_subject).await {
                Ok(fresh) => history = fresh,
                Err(e) => {
                    tracing::warn!(task = %report.task, error = %e, "cannot read the task; report retried");
                    return Outcome::Retry(retry_delay(delivery.attempt));
                }
            }
        }
        return match judge_listing(sender, &report, &history.events, now) {
            Ok(accepted) => {
                let retry = retry_delay(delivery.attempt);
                snapshots::record(
                    store,
                    clock,
                    &caches.inventories,
                    &report,
                    sender,
                    accepted,
                    retry,
                )
                .await
            }
            Err(reason) => {
                metrics::counter!("fleet_intake_rejected_reports_total").increment(1);
                Outcome::Park(reason)
            }
        };
    }
    let mut verdict = judge(sender, &report, &history.events);
    if from_cache && matches!(verdict, Verdict::Reject(_) | Verdict::Early) {
        // The cached history may be stale: judge again on the log before parking.
        match store.history(&task_subject).await {
            Ok(fresh) => {
                history = fresh;
                verdict = judge(sender, &report, &history.events);
            }
            Err(e) => {
                tracing::warn!(task = %report.task, error = %e, "cannot read the task; report retried");
                return Outcome::Retry(retry_delay(delivery.attempt));
            }
        }
    }
    let event = match verdict {
        Verdict::Append(event) => event,
        Verdict::AlreadyRecorded => return Outcome::Done,
        Verdict::Superseded => {
            metrics::counter!("fleet_intake_superseded_reports_total").increment(1);
            tracing::info!(task = %report.task, attempt = report.attempt, status = report.status.name(), "report about an attempt the control plane already settled");
            return Outcome::Done;
        }
        Verdict::Late => {
            metrics::counter!("fleet_intake_late_reports_total").increment(1);
            tracing::debug!(task = %report.task, attempt = report.attempt, status = report.status.name(), "report of a step the log has passed");
            return Outcome::Done;
        }
        Verdict::Early if delivery.attempt < ATTEMPTS => {
            cache.forget(&key);
            metrics::counter!("fleet_intake_early_reports_total").increment(1);
            tracing::debug!(task = %report.task, attempt = report.attempt, status = report.status.name(), "report ahead of the log; judged again shortly");
            return Outcome::Retry(retry_delay(delivery.attempt));
        }
        Verdict::Early => {
            cache.forget(&key);
            metrics::counter!("fleet_intake_rejected_reports_total").increment(1);
            return Outcome::Park(format!(
                "{} came before the attempt's earlier steps, which never arrived",
                report.status.name()
            ));
        }
        Verdict::Reject(reason) => {
            cache.forget(&key);
            metrics::counter!("fleet_intake_rejected_reports_total").increment(1);
            return Outcome::Park(reason);
        }
    };
    let cause = history.events.last().map(|s| &s.envelope);
    let event = Event::Task {
        task: report.task,
        event,
    };
    let envelope = match cause {
        Some(cause) => Envelope::caused_by(cause, clock.now(), event),
        None => Envelope::new(report.tenant.clone(), clock.now(), event),
    };
    let msg_id = format!("report:{}", report.msg_id());
    let append = Append {
        envelope: &envelope,
        msg_id: &msg_id,
        expect: Expect::LastSeq(history.last_seq),
    };
    match store.append(append).await {
        Ok(appended) => {
            remember(cache, key, history, appended.seq, envelope.clone());
            metrics::counter!("fleet_intake_reports_total", "status" => report.status.name())
                .increment(1);
            if let ReportStatus::Failed(error) = &report.status {
                metrics::counter!("fleet_tasks_failed_total", "class" => error.class.as_str())
                    .increment(1);
            }
            tracing::info!(task = %report.task, agent = %sender, attempt = report.attempt, status = report.status.name(), "report recorded");
            Outcome::Done
        }
        // Someone appended to the task meanwhile: judge again on the new history.
        Err(AppendError::Conflict { .. }) => {
            cache.forget(&key);
            Outcome::Retry(Duration::from_millis(50))
        }
        Err(AppendError::Unavailable(reason)) => {
            tracing::warn!(task = %report.task, %reason, "event store unavailable; report retried");
            Outcome::Retry(retry_delay(delivery.attempt))
        }
        Err(e) => Outcome::Park(format!("the event could not be stored: {e}")),
    }
}

/// Caches the history with the event just appended, or forgets a task that has ended
/// (its agent sends no more reports).
fn remember(cache: &HistoryCache, key: String, mut history: History, seq: u64, envelope: Envelope) {
    let ended = matches!(
        envelope.event,
        Event::Task {
            event: fleet_events::event::TaskEvent::Succeeded { .. },
            ..
        }
    );
    if ended {
        cache.forget(&key);
        return;
    }
    history.events.push(Stored {
        seq,
        subject: key.clone(),
        envelope,
    });
    history.last_seq = seq;
    cache.put(key, history);
}
