//! The moves of one attempt: accept, start, finish. Each writes the record and appends
//! its report to the outbox in one transaction, then flushes. Recovery's finish also marks
//! the attempt's repository for `restic unlock`, in the same transaction.

use fleet_events::event::TaskRequest;
use fleet_events::ids::{RepoId, TaskId};
use fleet_events::protocol::{AgentReport, ReportStatus, TaskOrder};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::AgentState;
use super::error::StateError;
use super::outbox::OutboxKey;
use super::record::{Header, Stage, TaskRecord, task_key};
use super::unlock;

/// What [`AgentState::accept`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The attempt is new: it is recorded and its `Acknowledged` report is in the outbox.
    /// Ack the message, then run the attempt.
    New,
    /// The attempt was accepted before (a redelivery): nothing changed. Ack the message
    /// and do not run it again.
    Duplicate,
}

pub(super) type Tx<T> = Result<T, ConflictableTransactionError<StateError>>;

pub(super) fn abort<T>(error: StateError) -> Tx<T> {
    Err(ConflictableTransactionError::Abort(error))
}

pub(super) fn settle<T>(result: Result<T, TransactionError<StateError>>) -> Result<T, StateError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StateError::Storage(e),
    })
}

impl AgentState {
    /// Records a new attempt (with what an operator asked for, if it is such a task) and
    /// its `Acknowledged` report, durably, unless this (task, attempt) is known already.
    /// Ack the NATS message only after this returned `Ok`: the record is on disk then (a
    /// duplicate is flushed too, in case the first call failed after writing).
    pub async fn accept(
        &self,
        order: &TaskOrder,
        request: Option<&TaskRequest>,
        report: AgentReport,
    ) -> Result<Accepted, StateError> {
        fits(&report, order.task, order.attempt)?;
        if report.tenant != order.tenant {
            return Err(StateError::ReportMismatch(format!(
                "report of tenant {} for an order of tenant {}",
                report.tenant, order.tenant
            )));
        }
        if report.status != ReportStatus::Acknowledged {
            return Err(StateError::ReportMismatch(format!(
                "accept takes an acknowledged report, not {}",
                report.status.name()
            )));
        }
        let key = task_key(order.task, order.attempt);
        let record = TaskRecord::accepted(order, request, report.at).encode()?;
        let wire = report.to_wire()?;
        let id = OutboxKey::new(self.db.generate_id()?).to_bytes();
        let outcome = settle((&self.tasks, &self.outbox).transaction(|(tasks, outbox)| {
            if tasks.get(key)?.is_some() {
                return Ok(Accepted::Duplicate);
            }
            tasks.insert(&key, record.as_slice())?;
            outbox.insert(&id, wire.as_slice())?;
            Ok(Accepted::New)
        }))?;
        self.db.flush_async().await?;
        Ok(outcome)
    }

    /// Marks an accepted attempt running and appends its `Started` report, durably. Call
    /// it before starting restic.
    pub async fn start(
        &self,
        task: TaskId,
        attempt: u32,
        report: AgentReport,
    ) -> Result<(), StateError> {
        if report.status != ReportStatus::Started {
            return Err(StateError::ReportMismatch(format!(
                "start takes a started report, not {}",
                report.status.name()
            )));
        }
        self.advance(task, attempt, Stage::Running, &report)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Appends the `RetentionApplied` report of a running attempt (its backup succeeded
    /// and `restic forget` ran) to the outbox, durably, without moving the attempt: call it
    /// before [`AgentState::finish`], so that the report goes out before the success. An
    /// attempt that is not running here is refused.
    pub async fn record_retention(&self, report: AgentReport) -> Result<(), StateError> {
        if !matches!(report.status, ReportStatus::RetentionApplied { .. }) {
            return Err(StateError::ReportMismatch(format!(
                "record_retention takes a retention_applied report, not {}",
                report.status.name()
            )));
        }
        self.record_running(std::slice::from_ref(&report)).await
    }

    /// Appends the `SnapshotsListed` reports of a running attempt (every part of one
    /// listing, in order) to the outbox in one transaction, durably, without moving the
    /// attempt: call it before [`AgentState::finish`], so that the parts go out before the
    /// success. Reports of another kind, of several attempts, or of an attempt that is not
    /// running here are refused.
    pub async fn record_listing(&self, reports: &[AgentReport]) -> Result<(), StateError> {
        for report in reports {
            if !matches!(report.status, ReportStatus::SnapshotsListed { .. }) {
                return Err(StateError::ReportMismatch(format!(
                    "record_listing takes snapshots_listed reports, not {}",
                    report.status.name()
                )));
            }
        }
        self.record_running(reports).await
    }

    /// Appends the `HookRan` reports of a running attempt (the hooks of one stage, in the
    /// order they ran) to the outbox in one transaction, durably, without moving the
    /// attempt: call it before [`AgentState::finish`], so that they go out before the
    /// outcome. Reports of another kind, of several attempts, or of an attempt that is not
    /// running here are refused.
    pub async fn record_hooks(&self, reports: &[AgentReport]) -> Result<(), StateError> {
        if let Some(other) = reports
            .iter()
            .find(|r| !matches!(r.status, ReportStatus::HookRan(_)))
        {
            return Err(StateError::ReportMismatch(format!(
                "record_hooks takes hook_ran reports, not {}",
                other.status.name()
            )));
        }
        self.record_running(reports).await
    }

    /// Appends `reports`, all about one running attempt, to the outbox in one transaction
    /// and flushes.
    async fn record_running(&self, reports: &[AgentReport]) -> Result<(), StateError> {
        let Some(first) = reports.first() else {
            return Ok(());
        };
        let (task, attempt) = (first.task, first.attempt);
        let mut entries = Vec::with_capacity(reports.len());
        for report in reports {
            fits(report, task, attempt)?;
            let id = OutboxKey::new(self.db.generate_id()?).to_bytes();
            entries.push((id, report.to_wire()?));
        }
        let key = task_key(task, attempt);
        settle((&self.tasks, &self.outbox).transaction(|(tasks, outbox)| {
            let Some(bytes) = tasks.get(key)? else {
                return abort(StateError::UnknownTask { task, attempt });
            };
            let stage = match Header::decode(&bytes) {
                Ok((header, _)) => header.stage,
                Err(e) => return abort(e),
            };
            if stage != Stage::Running {
                return abort(StateError::ReportMismatch(format!(
                    "a {} report for task {task} attempt {attempt}, which is {stage}, not running",
                    first.status.name()
                )));
            }
            for (id, wire) in &entries {
                outbox.insert(id, wire.as_slice())?;
            }
            Ok(())
        }))?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Marks an attempt finished and appends its final report (`Succeeded` after a
    /// start; `Failed` or `Interrupted` after accept or start), durably.
    pub async fn finish(
        &self,
        task: TaskId,
        attempt: u32,
        report: AgentReport,
    ) -> Result<(), StateError> {
        self.finish_unflushed(task, attempt, &report)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// [`AgentState::finish`] without the flush, for callers that flush once after many.
    pub(super) fn finish_unflushed(
        &self,
        task: TaskId,
        attempt: u32,
        report: &AgentReport,
    ) -> Result<(), StateError> {
        final_report(report)?;
        self.advance(task, attempt, Stage::Finished, report)
    }

    /// Moves (task, attempt) to `to` and appends `report`, in one transaction.
    fn advance(
        &self,
        task: TaskId,
        attempt: u32,
        to: Stage,
        report: &AgentReport,
    ) -> Result<(), StateError> {
        let change = self.change(task, attempt, to, report)?;
        settle(
            (&self.tasks, &self.outbox).transaction(|(tasks, outbox)| change.apply(tasks, outbox)),
        )
    }

    /// Finishes an attempt that was running when the agent died with `report` and marks
    /// `repo` for `restic unlock` before its next run, in one transaction (not flushed).
    pub(super) fn finish_interrupted_unflushed(
        &self,
        task: TaskId,
        attempt: u32,
        report: &AgentReport,
        repo: RepoId,
    ) -> Result<(), StateError> {
        final_report(report)?;
        let change = self.change(task, attempt, Stage::Finished, report)?;
        let trees = (&self.tasks, &self.outbox, &self.unlocks);
        settle(trees.transaction(|(tasks, outbox, unlocks)| {
            change.apply(tasks, outbox)?;
            unlock::mark(unlocks, repo, (task, attempt), report.at)
        }))
    }

    /// A stage change with its report encoded and its outbox key taken, ready to apply.
    fn change<'a>(
        &self,
        task: TaskId,
        attempt: u32,
        to: Stage,
        report: &'a AgentReport,
    ) -> Result<Change<'a>, StateError> {
        fits(report, task, attempt)?;
        Ok(Change {
            task,
            attempt,
            to,
            report,
            wire: report.to_wire()?,
            id: OutboxKey::new(self.db.generate_id()?).to_bytes(),
        })
    }
}

/// One stage change of an attempt and the report that tells it.
struct Change<'a> {
    task: TaskId,
    attempt: u32,
    to: Stage,
    report: &'a AgentReport,
    wire: Vec<u8>,
    id: [u8; 8],
}

impl Change<'_> {
    /// Moves the record to the new stage and appends the report, inside a transaction.
    fn apply(&self, tasks: &TransactionalTree, outbox: &TransactionalTree) -> Tx<()> {
        let (task, attempt, to) = (self.task, self.attempt, self.to);
        let key = task_key(task, attempt);
        let Some(bytes) = tasks.get(key)? else {
            return abort(StateError::UnknownTask { task, attempt });
        };
        let (mut header, order) = match Header::decode(&bytes) {
            Ok(parts) => parts,
            Err(e) => return abort(e),
        };
        let from = header.stage;
        if !legal(from, to, &self.report.status) {
            return abort(StateError::IllegalMove {
                task,
                attempt,
                from,
                to,
            });
        }
        header.stage = to;
        match to {
            Stage::Running => header.started_at = Some(self.report.at),
            Stage::Finished => header.finished_at = Some(self.report.at),
            Stage::Accepted => {}
        }
        let mut value = match postcard::to_stdvec(&header) {
            Ok(value) => value,
            Err(e) => return abort(StateError::encode(e)),
        };
        value.extend_from_slice(order);
        tasks.insert(&key, value)?;
        outbox.insert(&self.id, self.wire.as_slice())?;
        Ok(())
    }
}

/// Refuses a report that does not end an attempt.
fn final_report(report: &AgentReport) -> Result<(), StateError> {
    match report.status {
        ReportStatus::Succeeded(_) | ReportStatus::Failed(_) | ReportStatus::Interrupted => Ok(()),
        ReportStatus::Acknowledged
        | ReportStatus::Started
        | ReportStatus::UnlockRan { .. }
        | ReportStatus::RetentionApplied { .. }
        | ReportStatus::HookRan(_)
        | ReportStatus::SnapshotsListed { .. } => Err(StateError::ReportMismatch(format!(
            "finish takes a final report, not {}",
            report.status.name()
        ))),
    }
}

/// Whether an attempt at `from` may move to `to` with a report of `status`.
fn legal(from: Stage, to: Stage, status: &ReportStatus) -> bool {
    match (from, to) {
        (Stage::Accepted, Stage::Running) => true,
        (Stage::Running, Stage::Finished) => true,
        (Stage::Accepted, Stage::Finished) => !matches!(status, ReportStatus::Succeeded(_)),
        _ => false,
    }
}

/// Refuses a report about another attempt.
fn fits(report: &AgentReport, task: TaskId, attempt: u32) -> Result<(), StateError> {
    if report.task != task || report.attempt != attempt {
        return Err(StateError::ReportMismatch(format!(
            "report for task {} attempt {}, expected task {task} attempt {attempt}",
            report.task, report.attempt
        )));
    }
    Ok(())
}
