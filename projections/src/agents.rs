//! The agent read model: each agent's registration, settings and liveness, the tasks it
//! holds per kind, and its tasks waiting for a retry.
//!
//! Reads every event (the default filter); applies those of the agent and task
//! aggregates. Trees: `agents.by_id` (agent UUID bytes → postcard [`AgentView`]) and
//! `agents.tasks` (task UUID bytes → postcard [`TaskView`], the compact form the tasks
//! model stores, folded with [`Task::fold`]), so a task event finds its agent and what
//! the task counted for before in two lookups. A change to either stored form changes
//! this model's format: bump [`Projection::VERSION`].
//!
//! A task counts towards its agent while [`TaskStatus::is_on_agent`] (held, per kind),
//! while it waits for dispatch (scheduled or retry due: queued, per kind) and while
//! [`TaskStatus::RetryScheduled`] (backoff, with its due time). A task naming an
//! agent never registered creates a placeholder view (`registered: false`) once it
//! counts, so nothing it holds goes uncounted.
//!
//! Rejection kinds: `subject_mismatch` (the event is not stored under its own subject),
//! `tenant_mismatch` (the agent or task exists under another tenant),
//! `illegal_transition` ([`Task::fold`] refuses the task event), `count_overflow` (an
//! agent would hold more than 65,535 tasks of one kind).

mod view;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::{AgentId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::store::Stored;
use fleet_events::task_state::{Task, TaskStatus};

pub use view::{AgentView, Backoff, Saturation};
use view::{agent_key, task_key};

use crate::error::{ApplyError, ProjectionError};
use crate::projection::{ModelTree, Projection, check_subject};
use crate::runtime::Checkpointed;
use crate::tasks::TaskView;

const BY_ID: &str = "agents.by_id";
const TASKS: &str = "agents.tasks";

/// The agent read model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Agents;

impl Projection for Agents {
    const NAME: &'static str = "agents";
    /// 2: views count queued tasks; 3: counts of five kinds (restore, refresh).
    const VERSION: u32 = 3;
    const TREES: &'static [&'static str] = &[BY_ID, TASKS];

    fn apply(&self, trees: &[&dyn ModelTree], stored: &Stored) -> Result<(), ApplyError> {
        let [by_id, tasks] = trees else {
            return Err(ApplyError::corrupt(BY_ID, "expected the two agent trees"));
        };
        let envelope = &stored.envelope;
        if !matches!(envelope.event, Event::Agent { .. } | Event::Task { .. }) {
            return Ok(());
        }
        check_subject(stored)?;
        match &envelope.event {
            Event::Agent { agent, event } => apply_agent(by_id, envelope, *agent, event),
            Event::Task { task, event } => apply_task(by_id, tasks, envelope, *task, event),
            _ => Ok(()),
        }
    }
}

fn apply_agent(
    by_id: &dyn ModelTree,
    envelope: &Envelope,
    agent: AgentId,
    event: &AgentEvent,
) -> Result<(), ApplyError> {
    let mut view = load_agent(by_id, agent, &envelope.tenant)?
        .unwrap_or_else(|| AgentView::placeholder(envelope.tenant.clone(), agent));
    view.apply(envelope.at, event);
    store_agent(by_id, &view)
}

fn apply_task(
    by_id: &dyn ModelTree,
    tasks: &dyn ModelTree,
    envelope: &Envelope,
    task: TaskId,
    event: &TaskEvent,
) -> Result<(), ApplyError> {
    let key = task_key(task);
    let record = match tasks.get(&key)? {
        Some(bytes) => Some(TaskView::decode(&bytes).map_err(|e| corrupt_task(task, e))?),
        None => None,
    };
    if let Some(record) = &record
        && record.tenant != envelope.tenant
    {
        return Err(ApplyError::rejected(
            "tenant_mismatch",
            format!("task {task} belongs to tenant {}", record.tenant),
        ));
    }
    let before =
        match &record {
            Some(record) => Some(record.to_task().ok_or_else(|| {
                corrupt_task(task, format!("unknown status {:?}", record.status))
            })?),
            None => None,
        };
    let after = Task::fold(before.as_ref(), event)
        .map_err(|e| ApplyError::rejected("illegal_transition", e.to_string()))?;
    let kind = after.kind().or(record.as_ref().and_then(|r| r.kind));
    let current = load_agent(by_id, after.agent, &envelope.tenant)?;
    let bytes = TaskView::new(&after, envelope.tenant.clone(), kind)
        .encode()
        .map_err(|e| corrupt_task(task, e))?;
    tasks.insert(&key, &bytes)?;
    let from = match &before {
        Some(before) => Load::of(task, before, kind)?,
        None => Load::Nothing,
    };
    let to = Load::of(task, &after, kind)?;
    if from == to {
        return Ok(());
    }
    let mut view =
        current.unwrap_or_else(|| AgentView::placeholder(envelope.tenant.clone(), after.agent));
    recount(&mut view, task, from, to)?;
    store_agent(by_id, &view)
}

/// Moves what `task` counts for on `view` from `from` to `to`.
fn recount(view: &mut AgentView, task: TaskId, from: Load, to: Load) -> Result<(), ApplyError> {
    let counted = match from {
        Load::Nothing => true,
        Load::Held(kind) => view.release(kind),
        Load::Queued(kind) => view.dequeue(kind),
        Load::Backoff(_) => view.remove_backoff(task),
    };
    if !counted {
        return Err(corrupt_agent(
            view.agent,
            format!("task {task} was not counted"),
        ));
    }
    match to {
        Load::Nothing => {}
        Load::Held(kind) => {
            if !view.hold(kind) {
                return Err(ApplyError::rejected(
                    "count_overflow",
                    format!(
                        "agent {} holds too many {} tasks",
                        view.agent,
                        kind.as_str()
                    ),
                ));
            }
        }
        Load::Queued(kind) => {
            if !view.enqueue(kind) {
                return Err(ApplyError::rejected(
                    "count_overflow",
                    format!(
                        "agent {} has too many {} tasks queued",
                        view.agent,
                        kind.as_str()
                    ),
                ));
            }
        }
        Load::Backoff(due_at) => view.add_backoff(task, due_at),
    }
    Ok(())
}

/// What one task counts for on its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Nothing,
    /// Held by the agent (dispatched, acknowledged or running).
    Held(TaskKind),
    /// Waiting for dispatch to the agent (scheduled or retry due).
    Queued(TaskKind),
    /// Waiting for its retry, due then.
    Backoff(DateTime<Utc>),
}

impl Load {
    fn of(id: TaskId, task: &Task, kind: Option<TaskKind>) -> Result<Load, ApplyError> {
        if task.status.is_on_agent() {
            let kind = kind.ok_or_else(|| corrupt_task(id, "a held task has no kind"))?;
            return Ok(Load::Held(kind));
        }
        if matches!(task.status, TaskStatus::Scheduled | TaskStatus::RetryDue) {
            let kind = kind.ok_or_else(|| corrupt_task(id, "a queued task has no kind"))?;
            return Ok(Load::Queued(kind));
        }
        if task.status == TaskStatus::RetryScheduled {
            let due = task.retry_due_at;
            return due
                .map(Load::Backoff)
                .ok_or_else(|| corrupt_task(id, "a retry without a due time"));
        }
        Ok(Load::Nothing)
    }
}

/// The stored view of `agent`, refusing an event of another tenant.
fn load_agent(
    by_id: &dyn ModelTree,
    agent: AgentId,
    tenant: &TenantId,
) -> Result<Option<AgentView>, ApplyError> {
    let Some(bytes) = by_id.get(&agent_key(agent))? else {
        return Ok(None);
    };
    let view = AgentView::decode(&bytes).map_err(|e| corrupt_agent(agent, e))?;
    if view.tenant != *tenant {
        return Err(ApplyError::rejected(
            "tenant_mismatch",
            format!("agent {agent} belongs to tenant {}", view.tenant),
        ));
    }
    Ok(Some(view))
}

fn store_agent(by_id: &dyn ModelTree, view: &AgentView) -> Result<(), ApplyError> {
    let bytes = view.encode().map_err(|e| corrupt_agent(view.agent, e))?;
    by_id.insert(&agent_key(view.agent), &bytes)?;
    Ok(())
}

fn corrupt_agent(agent: AgentId, reason: impl std::fmt::Display) -> ApplyError {
    ApplyError::corrupt(BY_ID, format!("agent {agent}: {reason}"))
}

fn corrupt_task(task: TaskId, reason: impl std::fmt::Display) -> ApplyError {
    ApplyError::corrupt(TASKS, format!("task {task}: {reason}"))
}

impl Checkpointed<Agents> {
    /// The agent `id`, if the model has seen it (registered or as a placeholder).
    pub fn agent(&self, id: AgentId) -> Result<Option<AgentView>, ProjectionError> {
        let Some(bytes) = self.trees()[0].get(agent_key(id))? else {
            return Ok(None);
        };
        AgentView::decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(BY_ID, format!("agent {id}: {e}")))
    }

    /// Every agent of `tenant`, placeholders included, by name then id.
    pub fn list(&self, tenant: &TenantId) -> Result<Vec<AgentView>, ProjectionError> {
        let mut out = self.all()?;
        out.retain(|view| view.tenant == *tenant);
        out.sort_by(|a, b| (&a.name, a.agent).cmp(&(&b.name, b.agent)));
        Ok(out)
    }

    /// Every agent of every tenant, placeholders included, by id.
    pub fn all(&self) -> Result<Vec<AgentView>, ProjectionError> {
        let mut out = Vec::new();
        for item in self.trees()[0].iter() {
            let (_, bytes) = item?;
            out.push(AgentView::decode(&bytes).map_err(|e| corrupt(BY_ID, e.to_string()))?);
        }
        Ok(out)
    }
}

fn corrupt(tree: &str, reason: impl Into<String>) -> ProjectionError {
    ProjectionError::Corrupt {
        projection: Agents::NAME,
        tree: tree.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
