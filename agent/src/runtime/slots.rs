//! Concurrency: a semaphore for all tasks and one per scheduled kind (restores and
//! refreshes take only a total slot), so that the agent never runs more restic processes
//! than its settings allow, whatever NATS redelivers.

use std::sync::Arc;

use fleet_events::event::{RetentionOutcome, TaskRequest};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{ReportStatus, TaskOrder};
use fleet_events::settings::AgentSettings;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Shared, unlock};
use crate::executor::{Context, RunOutcome, execute};

/// The agent's free slots.
#[derive(Clone)]
pub struct Slots {
    total: Arc<Semaphore>,
    backup: Arc<Semaphore>,
    check: Arc<Semaphore>,
    prune: Arc<Semaphore>,
}

impl Slots {
    /// Slots for `settings`' total and per-kind limits.
    pub fn new(settings: &AgentSettings) -> Self {
        let limit = |kind| Arc::new(Semaphore::new(usize::from(settings.limit_for(kind))));
        Self {
            total: Arc::new(Semaphore::new(usize::from(settings.max_concurrent))),
            backup: limit(TaskKind::Backup),
            check: limit(TaskKind::Check),
            prune: limit(TaskKind::Prune),
        }
    }

    /// The semaphore of `kind`; `None` for kinds that count only against the total
    /// (restore, refresh: no per-kind limit).
    fn kind(&self, kind: TaskKind) -> Option<&Arc<Semaphore>> {
        match kind {
            TaskKind::Backup => Some(&self.backup),
            TaskKind::Check => Some(&self.check),
            TaskKind::Prune => Some(&self.prune),
            TaskKind::Restore | TaskKind::Refresh => None,
        }
    }
}

/// Queues an accepted attempt (with the operator's request, for a restore or a refresh):
/// it starts when a slot of its kind (if it has one) and a total slot are free, runs
/// restic, and records its outcome.
pub async fn spawn_task(
    shared: Arc<Shared>,
    slots: Slots,
    order: TaskOrder,
    request: Option<TaskRequest>,
    shutdown: CancellationToken,
) {
    let cancel = shutdown.child_token();
    shared
        .running
        .lock()
        .await
        .insert((order.task, order.attempt), cancel.clone());
    tokio::spawn(async move {
        let key = (order.task, order.attempt);
        run_task(&shared, &slots, &order, request.as_ref(), cancel, &shutdown).await;
        shared.running.lock().await.remove(&key);
    });
}

async fn run_task(
    shared: &Shared,
    slots: &Slots,
    order: &TaskOrder,
    request: Option<&TaskRequest>,
    cancel: CancellationToken,
    shutdown: &CancellationToken,
) {
    let kind = order.spec.kind;
    // Kind first, then total: a task waiting for its kind does not hold a total slot.
    let permits = tokio::select! {
        () = cancel.cancelled() => None,
        permits = async {
            let kind_permit = match slots.kind(kind) {
                Some(semaphore) => Some(semaphore.clone().acquire_owned().await.ok()?),
                None => None,
            };
            let total_permit = slots.total.clone().acquire_owned().await.ok()?;
            Some((kind_permit, total_permit))
        } => permits,
    };
    let Some(_permits) = permits else {
        abandon(shared, order, shutdown).await;
        return;
    };
    let config = &shared.config;
    let ctx = Context {
        settings: &config.settings,
        secrets: &config.secrets,
        restic: &config.restic,
        hostname: &config.hostname,
        version: &config.restic_version,
        grace: config.stop_grace,
        unreachable_after: config.unreachable_after,
        lock_wait: config.lock_wait,
        cpu: Some(&shared.cpu),
        progress: Some(&shared.progress),
        hooks: &config.hooks,
    };
    // Before the start, so that the task's history tells the unlock before the run.
    if unlock::before_run(shared, order, &ctx, cancel.clone())
        .await
        .is_err()
    {
        abandon(shared, order, shutdown).await;
        return;
    }
    let started = shared.report(order, ReportStatus::Started);
    if let Err(e) = shared.state.start(order.task, order.attempt, started).await {
        tracing::error!(task = %order.task, error = %e, "cannot record the start; not running");
        return;
    }
    shared.reports.notify_one();
    tracing::info!(task = %order.task, attempt = order.attempt, kind = kind.as_str(), "restic starting");
    metrics::gauge!("fleet_agent_tasks_running", "kind" => kind.as_str()).increment(1.0);
    let began = std::time::Instant::now();
    let executed = execute(order, request, &ctx, cancel.clone()).await;
    record_hooks(shared, order, executed.before_hooks).await;
    if let Some(retention) = executed.retention {
        record_retention(shared, order, retention).await;
    }
    if !executed.listing.is_empty() {
        record_listing(shared, order, executed.listing).await;
    }
    record_hooks(shared, order, executed.after_hooks).await;
    let status = match executed.outcome {
        RunOutcome::Finished(status) => status,
        // Stopped by the control plane or by the agent's shutdown: the outcome is unknown.
        RunOutcome::Cancelled => ReportStatus::Interrupted,
    };
    tracing::info!(task = %order.task, attempt = order.attempt, outcome = status.name(), "restic finished");
    metrics::gauge!("fleet_agent_tasks_running", "kind" => kind.as_str()).decrement(1.0);
    metrics::histogram!("fleet_agent_restic_duration_seconds", "kind" => kind.as_str(), "outcome" => status.name())
        .record(began.elapsed().as_secs_f64());
    metrics::counter!("fleet_agent_tasks_total", "kind" => kind.as_str(), "outcome" => status.name())
        .increment(1);
    if let ReportStatus::Succeeded(summary) = &status
        && let fleet_events::event::RunDetail::Backup(backup) = &summary.detail
    {
        metrics::counter!("fleet_agent_bytes_added_total").increment(backup.data_added_bytes);
    }
    let report = shared.report(order, status);
    match shared.state.finish(order.task, order.attempt, report).await {
        Ok(()) => shared.reports.notify_one(),
        Err(e) => tracing::error!(task = %order.task, error = %e, "cannot record the outcome"),
    }
}

/// Logs, counts and puts in the outbox (before the success) what `restic forget` did
/// after the backup. A report that cannot be recorded is logged; the success still is.
async fn record_retention(shared: &Shared, order: &TaskOrder, retention: ReportStatus) {
    if let ReportStatus::RetentionApplied {
        kept,
        removed,
        outcome,
        ..
    } = &retention
    {
        let name = match outcome {
            RetentionOutcome::Applied => {
                tracing::info!(task_id = %order.task, attempt = order.attempt, kept, removed,
                    "retention applied to the policy's snapshots");
                metrics::counter!("fleet_agent_snapshots_forgotten_total").increment(*removed);
                "applied"
            }
            RetentionOutcome::Failed(error) => {
                tracing::warn!(task_id = %order.task, attempt = order.attempt,
                    class = error.class.as_str(), message = %error.message,
                    "restic forget after the backup failed; the backup stands, the next one applies the retention again");
                "failed"
            }
        };
        metrics::counter!("fleet_agent_retention_runs_total", "outcome" => name).increment(1);
    }
    let report = shared.report(order, retention);
    match shared.state.record_retention(report).await {
        Ok(()) => shared.reports.notify_one(),
        Err(e) => tracing::error!(task_id = %order.task, error = %e, "cannot record the retention"),
    }
}

/// Puts in the outbox (before the final report, in order, in one transaction) the parts
/// of the snapshot listing. Parts that cannot be recorded are logged; the outcome still
/// is (the next run lists again).
async fn record_listing(shared: &Shared, order: &TaskOrder, listing: Vec<ReportStatus>) {
    let reports: Vec<_> = listing
        .into_iter()
        .map(|status| shared.report(order, status))
        .collect();
    match shared.state.record_listing(&reports).await {
        Ok(()) => shared.reports.notify_one(),
        Err(e) => {
            tracing::error!(task_id = %order.task, error = %e, "cannot record the snapshot listing");
        }
    }
}

/// Puts in the outbox (before the final report, in order, in one transaction) what the
/// hooks of one stage did. Reports that cannot be recorded are logged; the outcome still
/// is.
async fn record_hooks(shared: &Shared, order: &TaskOrder, hooks: Vec<ReportStatus>) {
    if hooks.is_empty() {
        return;
    }
    let reports: Vec<_> = hooks
        .into_iter()
        .map(|status| shared.report(order, status))
        .collect();
    match shared.state.record_hooks(&reports).await {
        Ok(()) => shared.reports.notify_one(),
        Err(e) => {
            tracing::error!(task_id = %order.task, error = %e, "cannot record the hooks' runs")
        }
    }
}

/// An attempt stopped before it started: cancelled by the control plane, it is finished
/// as interrupted so that it never runs later; at the agent's shutdown it stays accepted
/// and runs after the restart.
async fn abandon(shared: &Shared, order: &TaskOrder, shutdown: &CancellationToken) {
    if shutdown.is_cancelled() {
        return;
    }
    let report = shared.report(order, ReportStatus::Interrupted);
    if let Err(e) = shared.state.finish(order.task, order.attempt, report).await {
        tracing::error!(task = %order.task, error = %e, "cannot record the cancel");
    }
    shared.reports.notify_one();
}
