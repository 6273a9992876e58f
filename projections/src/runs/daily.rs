//! The run model's per-day totals (tree `runs.daily`): what each policy did on each agent
//! per UTC day, kept for as long as the model lives while the runs themselves leave
//! after the retention's days.
//!
//! Every total is stored under three keys of the tenant (tenant, zero byte, then):
//! `P` policy agent day (a policy's history, per agent), `A` agent policy day (an
//! agent's history, per policy) and `T` day (the tenant's). Days are [`day_bytes`].

use chrono::{DateTime, NaiveDate, Utc};
use fleet_events::event::RunDetail;
use fleet_events::ids::{AgentId, PolicyId, TenantId};
use fleet_events::task_state::TaskStatus;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::view::{RunOutcome, RunView, decode, encode, tenant_prefix};
use crate::error::ApplyError;
use crate::projection::ModelTree;
use crate::retention::{day_bytes, day_from_bytes};

const DAILY: &str = "runs.daily";

/// What ended on one UTC day, for one policy on one agent or for a whole tenant
/// (postcard; fields are only ever appended, and a change bumps the model's version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayTotals {
    /// Attempts that ended, by outcome.
    pub succeeded: u64,
    pub failed: u64,
    pub lost: u64,
    pub cancelled: u64,
    pub exhausted: u64,
    /// The attempts' durations added up, in milliseconds.
    pub duration_ms: u64,
    /// Bytes the day's successful backups added to their repositories.
    pub data_added_bytes: u64,
    /// Tasks skipped by their schedule (the previous one still ran, or the agent was
    /// gone), given up after their retries, or cancelled before or while they ran.
    pub tasks_skipped: u64,
    pub tasks_exhausted: u64,
    pub tasks_cancelled: u64,
}

impl DayTotals {
    /// Attempts that ended on the day.
    pub fn runs(&self) -> u64 {
        self.succeeded + self.failed + self.lost + self.cancelled + self.exhausted
    }

    fn add_run(&mut self, run: &RunView) {
        match run.outcome {
            RunOutcome::Succeeded => self.succeeded += 1,
            RunOutcome::Failed { .. } => self.failed += 1,
            RunOutcome::Lost { .. } => self.lost += 1,
            RunOutcome::Cancelled { .. } => self.cancelled += 1,
            RunOutcome::Exhausted { .. } => self.exhausted += 1,
        }
        self.duration_ms = self.duration_ms.saturating_add(run.duration_ms);
        if let Some(RunDetail::Backup(backup)) = run.summary.as_ref().map(|s| &s.detail) {
            self.data_added_bytes = self
                .data_added_bytes
                .saturating_add(backup.data_added_bytes);
        }
    }

    fn add_task_end(&mut self, status: TaskStatus) {
        match status {
            TaskStatus::Skipped => self.tasks_skipped += 1,
            TaskStatus::Exhausted => self.tasks_exhausted += 1,
            TaskStatus::Cancelled => self.tasks_cancelled += 1,
            _ => {}
        }
    }
}

/// One stored total: whose it is and which day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub day: NaiveDate,
    /// `None` in a tenant's total.
    pub policy: Option<PolicyId>,
    /// `None` in a tenant's total.
    pub agent: Option<AgentId>,
    pub totals: DayTotals,
}

/// Whose totals [`crate::Checkpointed::<crate::Runs>::days`] lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayFilter {
    pub policy: Option<PolicyId>,
    pub agent: Option<AgentId>,
    /// Days on or after this.
    pub since: Option<NaiveDate>,
}

/// The three keys of the totals of `policy` on `agent` on the day of `at`.
fn keys(tenant: &TenantId, policy: PolicyId, agent: AgentId, at: DateTime<Utc>) -> [Vec<u8>; 3] {
    let day = day_bytes(at);
    let (p, a) = (*policy.uuid().as_bytes(), *agent.uuid().as_bytes());
    let key = |family: u8, parts: &[&[u8]]| {
        let mut key = tenant_prefix(tenant);
        key.push(family);
        parts.iter().for_each(|part| key.extend_from_slice(part));
        key
    };
    [
        key(b'P', &[&p, &a, &day]),
        key(b'A', &[&a, &p, &day]),
        key(b'T', &[&day]),
    ]
}

/// Adds to the three totals `run` belongs to.
pub(super) fn add_run(tree: &dyn ModelTree, run: &RunView) -> Result<(), ApplyError> {
    for key in keys(&run.tenant, run.policy, run.agent, run.finished_at) {
        update(tree, &key, |totals| totals.add_run(run))?;
    }
    Ok(())
}

/// Adds a task of `policy` on `agent` that ended at `at` in `status` (skipped, given up
/// or cancelled; other ends are counted by their run).
pub(super) fn add_task_end(
    tree: &dyn ModelTree,
    tenant: &TenantId,
    (policy, agent): (PolicyId, AgentId),
    at: DateTime<Utc>,
    status: TaskStatus,
) -> Result<(), ApplyError> {
    if !matches!(
        status,
        TaskStatus::Skipped | TaskStatus::Exhausted | TaskStatus::Cancelled
    ) {
        return Ok(());
    }
    for key in keys(tenant, policy, agent, at) {
        update(tree, &key, |totals| totals.add_task_end(status))?;
    }
    Ok(())
}

fn update(
    tree: &dyn ModelTree,
    key: &[u8],
    change: impl FnOnce(&mut DayTotals),
) -> Result<(), ApplyError> {
    let mut totals: DayTotals = match tree.get(key)? {
        Some(bytes) => decode(&bytes).map_err(|e| ApplyError::corrupt(DAILY, e))?,
        None => DayTotals::default(),
    };
    change(&mut totals);
    let bytes = encode(&totals).map_err(|e| ApplyError::corrupt(DAILY, e))?;
    tree.insert(key, &bytes)
}

/// The prefix `filter` reads in `tenant`'s totals, and how many id bytes follow it before
/// the day (the other party of a `P`/`A` key, or none).
pub(super) fn prefix(tenant: &TenantId, filter: &DayFilter) -> (Vec<u8>, usize) {
    let mut key = tenant_prefix(tenant);
    match (filter.policy, filter.agent) {
        (Some(policy), agent) => {
            key.push(b'P');
            key.extend_from_slice(policy.uuid().as_bytes());
            match agent {
                Some(agent) => {
                    key.extend_from_slice(agent.uuid().as_bytes());
                    (key, 0)
                }
                None => (key, 16),
            }
        }
        (None, Some(agent)) => {
            key.push(b'A');
            key.extend_from_slice(agent.uuid().as_bytes());
            (key, 16)
        }
        (None, None) => {
            key.push(b'T');
            (key, 0)
        }
    }
}

/// One stored total read back under `prefix` (see [`prefix`]).
pub(super) fn read(
    filter: &DayFilter,
    prefix_len: usize,
    other: usize,
    key: &[u8],
    value: &[u8],
) -> Result<Day, String> {
    let rest = key
        .get(prefix_len..)
        .ok_or("a key shorter than its prefix")?;
    let (id, day) = rest.split_at_checked(other).ok_or("a key without a day")?;
    let day = day_from_bytes(day).ok_or("a key's day is not 4 bytes")?;
    let id = match id {
        [] => None,
        bytes => Some(Uuid::from_slice(bytes).map_err(|e| e.to_string())?),
    };
    let (policy, agent) = match (filter.policy, filter.agent) {
        (Some(policy), Some(agent)) => (Some(policy), Some(agent)),
        (Some(policy), None) => (Some(policy), id.map(AgentId::from_uuid)),
        (None, Some(agent)) => (id.map(PolicyId::from_uuid), Some(agent)),
        (None, None) => (None, None),
    };
    let totals = decode(value).map_err(|e| e.to_string())?;
    Ok(Day {
        day,
        policy,
        agent,
        totals,
    })
}
