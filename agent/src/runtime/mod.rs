//! The agent at work: its own task subject in, reports and heartbeats out, restic in
//! between, within its limits, losing no result.
//!
//! - `intake`: the durable pull consumer of `fleet.agent.<id>.tasks`; an order is acked
//!   only after it is recorded (and flushed) in the local state; a redelivered attempt is
//!   acked and never runs twice.
//! - `slots`: total and per-kind concurrency (restores and refreshes: total only); never
//!   more restic processes than allowed. After a successful backup the retention's
//!   `RetentionApplied` report, then the listing's `SnapshotsListed` parts (after a backup,
//!   a prune or a refresh), are recorded before the final report (they ran in its slot).
//! - `outbox`: sends recorded reports in order and removes each once JetStream stored it.
//! - `heartbeat`: load, versions and outbox depth every interval.
//! - `progress`: runs' live progress on `fleet.agent.<id>.progress` (core NATS), at most
//!   one message a second per attempt, dropped rather than kept when it cannot go now.
//! - `browse`: answers browse requests on `fleet.agent.<id>.browse` (request/reply) with a
//!   page of a snapshot's directory (`restic ls`, at most two at once, no slot).
//! - [`unlock`]: `restic unlock` before the next run on a repository that had an attempt
//!   running when the agent died, reported (`UnlockRan`) before that run's start.
//!
//! On start, the CPU quota is prepared ([`crate::executor::cgroup`]; one warning if it is
//! configured but cannot be enforced), an attempt that was running when the agent died is
//! finished with an `Interrupted` report (the control plane retries it) and its repository
//! marked for `restic unlock` before its next run, and accepted attempts not yet started
//! are queued again.

mod browse;
mod heartbeat;
mod intake;
mod outbox;
mod progress;
mod slots;
pub mod unlock;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::protocol::{AgentReport, ReportStatus, TaskOrder};
use fleet_events::settings::AgentSettings;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::executor::{CpuLimiter, HookBook, ProgressSink, SecretSource};
use crate::restic::output::ResticVersion;
use crate::state::{AgentState, StateError};

/// What the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub agent: AgentId,
    pub tenant: TenantId,
    pub settings: AgentSettings,
    /// Secret name → where the repository password is.
    pub secrets: HashMap<String, SecretSource>,
    pub restic: PathBuf,
    pub restic_version: ResticVersion,
    /// `--host` of backups whose policy names none.
    pub hostname: String,
    pub heartbeat_every: Duration,
    /// Between SIGINT and SIGKILL when restic is stopped.
    pub stop_grace: Duration,
    /// How long restic may retry to reach a repository before the run fails.
    pub unreachable_after: Duration,
    /// How long a task's restic waits for a lock another restic holds.
    pub lock_wait: Duration,
    /// Where each heartbeat also writes `status.json` for `fleet-agent status` (the state
    /// directory); `None` writes no status file.
    pub status_dir: Option<PathBuf>,
    /// The hooks policies may name (the configuration's `hooks:`).
    pub hooks: HookBook,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("local state: {0}")]
    State(#[from] StateError),
    #[error("NATS: {0}")]
    Nats(String),
}

/// What the agent's tasks share.
struct Shared {
    config: AgentConfig,
    state: AgentState,
    /// Core NATS: progress out, browse requests in.
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    /// Where runs offer their live progress (the `progress` publisher's queue).
    progress: ProgressSink,
    /// Wakes the outbox sender when a report was recorded.
    reports: Notify,
    /// The CPU quota of restic processes.
    cpu: CpuLimiter,
    /// Cancel tokens of running or queued attempts.
    running: Mutex<HashMap<(fleet_events::ids::TaskId, u32), CancellationToken>>,
    /// One unlock at a time per repository.
    unlock_gates: unlock::Gates,
}

impl Shared {
    fn report(&self, order: &TaskOrder, status: ReportStatus) -> AgentReport {
        AgentReport {
            schema: SCHEMA_VERSION,
            agent: self.config.agent,
            tenant: order.tenant.clone(),
            task: order.task,
            attempt: order.attempt,
            at: Utc::now(),
            status,
        }
    }
}

/// Runs the agent until `shutdown` is cancelled. Running restic processes are stopped
/// (SIGINT, then SIGKILL after the grace) and their attempts reported as interrupted on
/// the next start.
pub async fn run(
    client: async_nats::Client,
    config: AgentConfig,
    state: AgentState,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let cpu = CpuLimiter::start(config.settings.cpu_quota_percent);
    let (progress, progress_queue) = ProgressSink::new(config.agent, progress::QUEUE);
    let publisher = tokio::spawn(progress::publish(
        client.clone(),
        config.agent,
        progress_queue,
        shutdown.clone(),
    ));
    let shared = Arc::new(Shared {
        js: async_nats::jetstream::new(client.clone()),
        client,
        progress,
        cpu,
        config,
        state,
        reports: Notify::new(),
        running: Mutex::new(HashMap::new()),
        unlock_gates: unlock::Gates::default(),
    });
    let recovered = shared
        .state
        .recover(|order| shared.report(order, ReportStatus::Interrupted))
        .await?;
    for (task, attempt) in &recovered {
        tracing::warn!(%task, attempt, "attempt was running when the agent stopped; reported interrupted, its repository is unlocked before its next run");
    }
    let slots = slots::Slots::new(&shared.config.settings);
    for record in shared.state.pending()? {
        let (order, request) = (record.order, record.request);
        slots::spawn_task(
            shared.clone(),
            slots.clone(),
            order,
            request,
            shutdown.clone(),
        )
        .await;
    }
    let sender = tokio::spawn(outbox::send(shared.clone(), shutdown.clone()));
    let beats = tokio::spawn(heartbeat::beat(shared.clone(), shutdown.clone()));
    let browsing = tokio::spawn(browse::serve(shared.clone(), shutdown.clone()));
    let result = intake::consume(shared.clone(), slots, shutdown.clone()).await;
    shutdown.cancel();
    let _ = sender.await;
    let _ = beats.await;
    let _ = browsing.await;
    let _ = publisher.await;
    result
}
