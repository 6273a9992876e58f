//! The moves of one attempt: accept, start, finish. Each writes the record and appends
//! its report to the outbox in one transaction, then flushes.

use fleet_events::ids::TaskId;
use fleet_events::protocol::{AgentReport, ReportStatus, TaskOrder};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::AgentState;
use super::error::StateError;
use super::outbox::OutboxKey;
use super::record::{Header, Stage, TaskRecord, task_key};

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

type Tx<T> = Result<T, ConflictableTransactionError<StateError>>;

fn abort<T>(error: StateError) -> Tx<T> {
    Err(ConflictableTransactionError::Abort(error))
}

fn settle<T>(result: Result<T, TransactionError<StateError>>) -> Result<T, StateError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StateError::Storage(e),
    })
}

impl AgentState {
    /// Records a new attempt with its `Acknowledged` report, durably, unless this
    /// (task, attempt) is known already. Ack the NATS message only after this returned
    /// `Ok`: the record is on disk then (a duplicate is flushed too, in case the first
    /// call failed after writing).
    pub async fn accept(
        &self,
        order: &TaskOrder,
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
        let record = TaskRecord::accepted(order, report.at).encode()?;
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
        match report.status {
            ReportStatus::Succeeded(_) | ReportStatus::Failed(_) | ReportStatus::Interrupted => {}
            ReportStatus::Acknowledged | ReportStatus::Started => {
                return Err(StateError::ReportMismatch(format!(
                    "finish takes a final report, not {}",
                    report.status.name()
                )));
            }
        }
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
        fits(report, task, attempt)?;
        let key = task_key(task, attempt);
        let wire = report.to_wire()?;
        let id = OutboxKey::new(self.db.generate_id()?).to_bytes();
        settle((&self.tasks, &self.outbox).transaction(|(tasks, outbox)| {
            let Some(bytes) = tasks.get(key)? else {
                return abort(StateError::UnknownTask { task, attempt });
            };
            let (mut header, order) = match Header::decode(&bytes) {
                Ok(parts) => parts,
                Err(e) => return abort(e),
            };
            let from = header.stage;
            if !legal(from, to, &report.status) {
                return abort(StateError::IllegalMove {
                    task,
                    attempt,
                    from,
                    to,
                });
            }
            header.stage = to;
            match to {
                Stage::Running => header.started_at = Some(report.at),
                Stage::Finished => header.finished_at = Some(report.at),
                Stage::Accepted => {}
            }
            let mut value = match postcard::to_stdvec(&header) {
                Ok(value) => value,
                Err(e) => return abort(StateError::encode(e)),
            };
            value.extend_from_slice(order);
            tasks.insert(&key, value)?;
            outbox.insert(&id, wire.as_slice())?;
            Ok(())
        }))
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
