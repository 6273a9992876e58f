//! Task commands: an operator cancels a task that has not ended. The dispatcher sends the
//! agent holding it a cancel command when it reads the cancellation.

use chrono::{DateTime, Utc};
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{TaskId, TenantId};
use fleet_events::store::{EventStore, Stored};
use fleet_events::subject::{AggregateId, EventSubject};
use fleet_events::task_state::Task;

use super::{CommandError, Written, execute};

/// The longest reason kept.
pub const MAX_REASON: usize = 500;

/// The task as its history says, `None` if it has no events.
pub fn fold(history: &[Stored]) -> Option<Task> {
    let mut task: Option<Task> = None;
    for stored in history {
        if let Event::Task { event, .. } = &stored.envelope.event
            && let Ok(next) = Task::fold(task.as_ref(), event)
        {
            task = Some(next);
        }
    }
    task
}

/// The cancellation of `task`, or why it cannot be cancelled.
pub fn decide_cancel(
    id: TaskId,
    task: Option<&Task>,
    reason: &str,
) -> Result<TaskEvent, CommandError> {
    let task = task.ok_or_else(|| CommandError::NotFound(format!("no task {id}")))?;
    if task.status.is_terminal() {
        return Err(CommandError::Conflict(format!(
            "task {id} has ended ({}); there is nothing to cancel",
            task.status.as_str()
        )));
    }
    let reason: String = reason.trim().chars().take(MAX_REASON).collect();
    let reason = if reason.is_empty() {
        "cancelled by an operator".to_owned()
    } else {
        format!("cancelled by an operator: {reason}")
    };
    Ok(TaskEvent::Cancelled { reason })
}

/// Cancels `task` of `tenant`; a task that moved on meanwhile is decided again.
pub async fn cancel(
    store: &EventStore,
    tenant: &TenantId,
    task: TaskId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Written, CommandError> {
    let subject = EventSubject {
        tenant: tenant.clone(),
        aggregate: AggregateId::Task(task),
    };
    execute(store, &subject, None, now, |history| {
        let event = decide_cancel(task, fold(history).as_ref(), reason)?;
        Ok(vec![Event::Task { task, event }])
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_events::samples;

    fn scheduled() -> Task {
        let event = samples::event(fleet_events::event::EventType::TaskScheduled);
        let Event::Task { event, .. } = event else {
            panic!("a task event");
        };
        Task::create(&event).expect("scheduled")
    }

    #[test]
    fn an_unfinished_task_is_cancelled_with_the_operators_reason() {
        let task = scheduled();
        let id = TaskId::generate();
        let event = decide_cancel(id, Some(&task), "  wrong paths ").unwrap();
        assert_eq!(
            event,
            TaskEvent::Cancelled {
                reason: "cancelled by an operator: wrong paths".into()
            }
        );
        let cancelled = task.apply(&event).unwrap();
        assert!(matches!(
            decide_cancel(id, Some(&cancelled), ""),
            Err(CommandError::Conflict(_))
        ));
        assert!(matches!(
            decide_cancel(id, None, ""),
            Err(CommandError::NotFound(_))
        ));
        let TaskEvent::Cancelled { reason } =
            decide_cancel(id, Some(&task), &"x".repeat(9999)).unwrap()
        else {
            panic!("cancelled");
        };
        assert!(reason.len() < MAX_REASON + 40, "the reason is bounded");
    }
}
