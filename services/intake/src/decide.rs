//! Intake's judgement of one agent report, pure: which canonical event it becomes, or why
//! it is parked.

use fleet_events::event::{LostReason, TaskEvent};
use fleet_events::ids::AgentId;
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::store::Stored;
use fleet_events::task_state::{Task, TaskStatus};

/// What to do with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Append this event to the task, expecting the task's last sequence.
    Append(TaskEvent),
    /// The event is in the log already (the agent resent its report): nothing to do.
    AlreadyRecorded,
    /// The control plane settled this attempt before the agent's word arrived (it
    /// cancelled the task, timed the attempt out, or gave it up as lost): the report is
    /// history, not news, and is acknowledged without an event.
    Superseded,
    /// An earlier step of the attempt than the log already shows (reports overtook each
    /// other: a resent acknowledgement after the start): nothing to record.
    Late,
    /// A later step than the log shows yet (the success of an attempt whose start is still
    /// on its way, or being retried): judge it again shortly.
    Early,
    /// Never apply it: park it with this reason.
    Reject(String),
}

/// The task event a report stands for; `None` for a snapshot listing, which is judged
/// against the repository's inventory, not the task.
pub fn event_of(report: &AgentReport) -> Option<TaskEvent> {
    let attempt = report.attempt;
    Some(match &report.status {
        ReportStatus::Acknowledged => TaskEvent::Acknowledged { attempt },
        ReportStatus::Started => TaskEvent::Started { attempt },
        ReportStatus::Succeeded(summary) => TaskEvent::Succeeded {
            attempt,
            summary: summary.clone(),
        },
        ReportStatus::Failed(error) => TaskEvent::Failed {
            attempt,
            error: error.clone(),
        },
        ReportStatus::Interrupted => TaskEvent::Lost {
            attempt,
            reason: LostReason::AgentRestarted,
        },
        ReportStatus::UnlockRan {
            interrupted,
            outcome,
        } => TaskEvent::UnlockRan {
            attempt,
            interrupted: interrupted.clone(),
            outcome: outcome.clone(),
        },
        ReportStatus::RetentionApplied {
            kept,
            removed,
            removed_ids,
            outcome,
        } => TaskEvent::RetentionApplied {
            attempt,
            kept: *kept,
            removed: *removed,
            removed_ids: removed_ids.clone(),
            outcome: outcome.clone(),
        },
        ReportStatus::HookRan(hook) => TaskEvent::HookRan {
            attempt,
            hook: hook.clone(),
        },
        ReportStatus::SnapshotsListed { .. } => return None,
    })
}

/// Judges `report`, which arrived on the subject of `sender`, against the task's history.
pub fn judge(sender: AgentId, report: &AgentReport, history: &[Stored]) -> Verdict {
    if report.agent != sender {
        return Verdict::Reject(format!(
            "report names agent {} but came from agent {sender}",
            report.agent
        ));
    }
    let mut task: Option<Task> = None;
    let mut events = Vec::with_capacity(history.len());
    for stored in history {
        let fleet_events::event::Event::Task { event, .. } = &stored.envelope.event else {
            continue;
        };
        match Task::fold(task.as_ref(), event) {
            Ok(next) => task = Some(next),
            Err(e) => {
                tracing::warn!(seq = stored.seq, error = %e, "illegal event in a task's history")
            }
        }
        events.push(event);
    }
    let Some(task) = task else {
        return Verdict::Reject(format!("task {} does not exist", report.task));
    };
    if task.agent != sender {
        return Verdict::Reject(format!(
            "task {} belongs to agent {}, not {sender}",
            report.task, task.agent
        ));
    }
    let Some(event) = event_of(report) else {
        return Verdict::Reject("a snapshot listing is not a task event".into());
    };
    if events.iter().any(|e| same_transition(e, &event)) {
        return Verdict::AlreadyRecorded;
    }
    // Legal first: a retention after the attempt's success is still news.
    let applied = task.apply(&event);
    if applied.is_err() && superseded(&task, &events, report) {
        return Verdict::Superseded;
    }
    match applied {
        Ok(_) => Verdict::Append(event),
        Err(_) if on_agent(&task, report) && step_of(report) > status_step(task.status) => {
            Verdict::Early
        }
        Err(_) if on_agent(&task, report) => Verdict::Late,
        Err(e) => Verdict::Reject(e.to_string()),
    }
}

/// True if the log shows `report`'s attempt was handed to this agent and has ended
/// without it (or the task has moved on to another attempt).
fn superseded(task: &Task, events: &[&TaskEvent], report: &AgentReport) -> bool {
    let was_dispatched = events
        .iter()
        .any(|e| matches!(e, TaskEvent::Dispatched { attempt, .. } if *attempt == report.attempt));
    was_dispatched && !on_agent(task, report)
}

/// True if the task is on its agent for `report`'s attempt.
fn on_agent(task: &Task, report: &AgentReport) -> bool {
    task.attempt == report.attempt && task.status.is_on_agent()
}

/// How far into an attempt a report goes: acknowledged 1, started 2, ended 3. An unlock
/// comes after the acknowledgement, before or after the start: 2, so that one arriving
/// while the log shows the attempt only dispatched is early. A retention comes after the
/// start: 3, so that one arriving before the start is in the log is early; so does a
/// hook's run (before-hooks run once the attempt has started).
fn step_of(report: &AgentReport) -> u8 {
    match report.status {
        ReportStatus::Acknowledged => 1,
        ReportStatus::Started | ReportStatus::UnlockRan { .. } => 2,
        ReportStatus::Succeeded(_)
        | ReportStatus::Failed(_)
        | ReportStatus::Interrupted
        | ReportStatus::RetentionApplied { .. }
        | ReportStatus::HookRan(_)
        | ReportStatus::SnapshotsListed { .. } => 3,
    }
}

/// How far into its attempt a task on its agent is: dispatched 0, acknowledged 1,
/// running 2.
fn status_step(status: TaskStatus) -> u8 {
    match status {
        TaskStatus::Acknowledged => 1,
        TaskStatus::Running => 2,
        _ => 0,
    }
}

/// True if `a` records the same step of the same attempt as `b` (a resent report).
fn same_transition(a: &TaskEvent, b: &TaskEvent) -> bool {
    use TaskEvent as E;
    match (a, b) {
        (E::Acknowledged { attempt: x }, E::Acknowledged { attempt: y })
        | (E::Started { attempt: x }, E::Started { attempt: y })
        | (E::Succeeded { attempt: x, .. }, E::Succeeded { attempt: y, .. })
        | (E::Failed { attempt: x, .. }, E::Failed { attempt: y, .. })
        | (E::Lost { attempt: x, .. }, E::Lost { attempt: y, .. })
        | (E::UnlockRan { attempt: x, .. }, E::UnlockRan { attempt: y, .. })
        | (E::RetentionApplied { attempt: x, .. }, E::RetentionApplied { attempt: y, .. }) => {
            x == y
        }
        (
            E::HookRan {
                attempt: x,
                hook: h,
            },
            E::HookRan {
                attempt: y,
                hook: k,
            },
        ) => x == y && h.stage == k.stage && h.name == k.name,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
