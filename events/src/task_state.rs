//! The task state machine: the one definition of which task events are legal when.
//!
//! Every service and projection folds task events through [`Task::apply`]; a writer checks
//! a new event with it before appending, and intake parks agent reports it rejects.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{ErrorClass, ExhaustedReason, TaskEvent, TaskRequest, repo_of};
use crate::ids::{AgentId, PolicyId, RepoId};
use crate::policy::{PolicySpec, TaskKind};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskStatus {
    Scheduled,
    Skipped,
    Dispatched,
    Acknowledged,
    Running,
    Succeeded,
    Failed,
    RetryScheduled,
    RetryDue,
    Exhausted,
    Cancelled,
    Lost,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 12] = [
        TaskStatus::Scheduled,
        TaskStatus::Skipped,
        TaskStatus::Dispatched,
        TaskStatus::Acknowledged,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::RetryScheduled,
        TaskStatus::RetryDue,
        TaskStatus::Exhausted,
        TaskStatus::Cancelled,
        TaskStatus::Lost,
    ];

    /// True once nothing more can happen to the task.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Skipped
                | TaskStatus::Succeeded
                | TaskStatus::Exhausted
                | TaskStatus::Cancelled
        )
    }

    /// True while an agent holds an attempt (dispatched, acknowledged or running).
    pub fn is_on_agent(self) -> bool {
        matches!(
            self,
            TaskStatus::Dispatched | TaskStatus::Acknowledged | TaskStatus::Running
        )
    }

    /// The snake_case name used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Dispatched => "dispatched",
            TaskStatus::Acknowledged => "acknowledged",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::RetryScheduled => "retry_scheduled",
            TaskStatus::RetryDue => "retry_due",
            TaskStatus::Exhausted => "exhausted",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Lost => "lost",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that is not legal for the task as it stands. Writers re-read and decide again;
/// intake parks the report that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not legal for a task {}: {reason}", from.map_or("that does not exist yet", TaskStatus::as_str))]
pub struct IllegalTransition {
    /// The status before, `None` for a task not yet created.
    pub from: Option<TaskStatus>,
    /// The event type's dotted name.
    pub event: &'static str,
    pub reason: String,
}

/// The next status after `event` in status `from` (`None`: no task yet), if legal. The
/// attempt and agent checks are in [`Task::apply`]; this is the status table alone.
pub fn next_status(from: Option<TaskStatus>, event: &TaskEvent) -> Option<TaskStatus> {
    use TaskEvent as E;
    use TaskStatus as S;
    let to = match (from, event) {
        (None, E::Scheduled { .. } | E::Requested { .. }) => S::Scheduled,
        (None, E::Skipped { .. }) => S::Skipped,
        (Some(S::Scheduled | S::RetryDue), E::Dispatched { .. }) => S::Dispatched,
        (Some(S::Dispatched), E::Acknowledged { .. }) => S::Acknowledged,
        (Some(S::Dispatched | S::Acknowledged), E::Started { .. }) => S::Running,
        (Some(S::Running), E::Succeeded { .. }) => S::Succeeded,
        (Some(S::Dispatched | S::Acknowledged | S::Running), E::Failed { .. }) => S::Failed,
        (Some(S::Dispatched | S::Acknowledged | S::Running), E::Lost { .. }) => S::Lost,
        (Some(S::Failed | S::Lost), E::RetryScheduled { .. }) => S::RetryScheduled,
        (Some(S::Failed | S::Lost), E::Exhausted { .. }) => S::Exhausted,
        (Some(S::RetryScheduled), E::RetryDue) => S::RetryDue,
        (Some(s), E::Cancelled { .. }) if !s.is_terminal() => S::Cancelled,
        (Some(s @ (S::Acknowledged | S::Running)), E::UnlockRan { .. }) => s,
        (Some(s @ (S::Running | S::Succeeded)), E::RetentionApplied { .. }) => s,
        (
            Some(
                s @ (S::Running
                | S::Succeeded
                | S::Failed
                | S::RetryScheduled
                | S::RetryDue
                | S::Exhausted),
            ),
            E::HookRan { .. },
        ) => s,
        _ => return None,
    };
    Some(to)
}

/// A task as its events describe it (services' snapshots keep it as it is folded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub status: TaskStatus,
    pub policy: PolicyId,
    pub agent: AgentId,
    pub fire_at: DateTime<Utc>,
    /// Not dispatched before this (fire time plus jitter); `None` for a skipped task.
    pub run_at: Option<DateTime<Utc>>,
    /// The policy as it was when the task was scheduled; `None` for a skipped task.
    pub spec: Option<Box<PolicySpec>>,
    /// The current attempt: 0 before the first dispatch.
    pub attempt: u32,
    /// The class of the last failure.
    pub last_error: Option<ErrorClass>,
    /// When the pending retry is due.
    pub retry_due_at: Option<DateTime<Utc>>,
    /// What an operator asked for, for a requested task (restore, refresh); `None` for a
    /// scheduled one.
    pub request: Option<TaskRequest>,
}

impl Task {
    /// The task created by its first event (scheduled or skipped).
    pub fn create(event: &TaskEvent) -> Result<Task, IllegalTransition> {
        let illegal = |reason: &str| IllegalTransition {
            from: None,
            event: event_name(event),
            reason: reason.to_owned(),
        };
        let status = next_status(None, event)
            .ok_or_else(|| illegal("a task starts scheduled, requested or skipped"))?;
        let mut request = None;
        let (policy, agent, fire_at, run_at, spec) = match event {
            TaskEvent::Scheduled {
                policy,
                agent,
                fire_at,
                run_at,
                spec,
            } => (*policy, *agent, *fire_at, Some(*run_at), Some(spec.clone())),
            TaskEvent::Skipped {
                policy,
                agent,
                fire_at,
                ..
            } => (*policy, *agent, *fire_at, None, None),
            TaskEvent::Requested {
                policy,
                agent,
                run_at,
                spec,
                request: asked,
                ..
            } => {
                request = Some(asked.clone());
                (*policy, *agent, *run_at, Some(*run_at), Some(spec.clone()))
            }
            _ => return Err(illegal("a task starts scheduled, requested or skipped")),
        };
        Ok(Task {
            status,
            policy,
            agent,
            fire_at,
            run_at,
            spec,
            attempt: 0,
            last_error: None,
            retry_due_at: None,
            request,
        })
    }

    /// Folds an optional current state and one event: `create` for `None`.
    pub fn fold(state: Option<&Task>, event: &TaskEvent) -> Result<Task, IllegalTransition> {
        match state {
            None => Task::create(event),
            Some(task) => task.apply(event),
        }
    }

    /// The task after `event`, or why `event` is not legal now.
    pub fn apply(&self, event: &TaskEvent) -> Result<Task, IllegalTransition> {
        let illegal = |reason: String| IllegalTransition {
            from: Some(self.status),
            event: event_name(event),
            reason,
        };
        let status = next_status(Some(self.status), event)
            .ok_or_else(|| illegal(format!("no transition from {}", self.status)))?;
        let same_attempt = |attempt: u32| {
            if attempt == self.attempt {
                Ok(())
            } else {
                Err(illegal(format!(
                    "it is for attempt {attempt}, the current attempt is {}",
                    self.attempt
                )))
            }
        };
        let mut next = self.clone();
        next.status = status;
        match event {
            TaskEvent::Dispatched { agent, attempt } => {
                if *agent != self.agent {
                    return Err(illegal(format!(
                        "the task belongs to agent {}, not {agent}",
                        self.agent
                    )));
                }
                if *attempt != self.attempt + 1 {
                    return Err(illegal(format!(
                        "the next attempt is {}, not {attempt}",
                        self.attempt + 1
                    )));
                }
                next.attempt = *attempt;
                next.retry_due_at = None;
            }
            TaskEvent::Acknowledged { attempt }
            | TaskEvent::Started { attempt }
            | TaskEvent::Succeeded { attempt, .. }
            | TaskEvent::Lost { attempt, .. }
            | TaskEvent::UnlockRan { attempt, .. }
            | TaskEvent::RetentionApplied { attempt, .. }
            | TaskEvent::HookRan { attempt, .. } => same_attempt(*attempt)?,
            TaskEvent::Failed { attempt, error } => {
                same_attempt(*attempt)?;
                next.last_error = Some(error.class);
            }
            TaskEvent::RetryScheduled {
                attempt, due_at, ..
            } => {
                same_attempt(*attempt)?;
                next.retry_due_at = Some(*due_at);
            }
            TaskEvent::Exhausted { attempts, reason } => {
                same_attempt(*attempts)?;
                if let ExhaustedReason::NotRetryable(class) = reason {
                    next.last_error = Some(*class);
                }
            }
            TaskEvent::RetryDue | TaskEvent::Cancelled { .. } => {}
            TaskEvent::Scheduled { .. }
            | TaskEvent::Skipped { .. }
            | TaskEvent::Requested { .. } => {
                return Err(illegal("the task exists already".into()));
            }
        }
        if self.status == TaskStatus::Lost && status != TaskStatus::Cancelled {
            next.last_error = Some(ErrorClass::Lost);
        }
        Ok(next)
    }

    /// The task's kind (backup for a skipped task, whose spec is not kept).
    pub fn kind(&self) -> Option<TaskKind> {
        self.spec.as_ref().map(|s| s.kind)
    }

    /// The repository the task uses, if it was scheduled.
    pub fn repo(&self) -> Option<RepoId> {
        self.spec.as_deref().map(repo_of)
    }
}

fn event_name(event: &TaskEvent) -> &'static str {
    event.event_type().name()
}

/// How a finished attempt ended, without its details (the runs read model keeps the
/// details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOutcomeKind {
    Succeeded,
    Failed,
    Lost,
    Cancelled,
    Exhausted,
}

impl RunOutcomeKind {
    /// Every kind.
    pub const ALL: [RunOutcomeKind; 5] = [
        RunOutcomeKind::Succeeded,
        RunOutcomeKind::Failed,
        RunOutcomeKind::Lost,
        RunOutcomeKind::Cancelled,
        RunOutcomeKind::Exhausted,
    ];

    /// The snake_case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcomeKind::Succeeded => "succeeded",
            RunOutcomeKind::Failed => "failed",
            RunOutcomeKind::Lost => "lost",
            RunOutcomeKind::Cancelled => "cancelled",
            RunOutcomeKind::Exhausted => "exhausted",
        }
    }
}

#[cfg(test)]
mod tests;
