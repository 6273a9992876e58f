//! Run timeouts, pure: an attempt on an agent with no result within its policy's run
//! timeout fails with class `Timeout`. A backstop for agents that hang while still
//! heartbeating: the agent enforces the timeout itself and normally reports it first, so
//! the control plane waits a margin more.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::event::{ErrorClass, TaskError, TaskEvent};
use fleet_events::ids::TaskId;

use super::Fleet;
use super::liveness::{ToAppend, follow_up};
use super::state::Tracked;

impl Fleet {
    /// The attempts on agents (dispatched, acknowledged or running; not those still being
    /// dispatched) whose run timeout plus `margin` has run out at `now`, counted from the
    /// `at` of their `TaskStarted`, or of their `TaskDispatched` if they never started.
    /// One `TaskFailed` each, class `Timeout`, caused by the task's last event, msg id
    /// `timeout:<task>:<attempt>`, expecting the task subject's last sequence. An attempt
    /// stays here until its end comes back from the log: the caller reports each once.
    pub fn timeouts(&self, now: DateTime<Utc>, margin: Duration) -> Vec<ToAppend> {
        let Some(cutoff) = now.checked_sub_signed(delta(margin)) else {
            return Vec::new();
        };
        self.deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= cutoff)
            .filter_map(|(_, task)| self.timed_out(*task, now))
            .collect()
    }

    /// When the next attempt runs out of time after `now` (with `margin`): sleep until then.
    /// Attempts already out of time at `now` are not waited for again: [`Fleet::timeouts`]
    /// at `now` returned them.
    pub fn next_timeout(&self, now: DateTime<Utc>, margin: Duration) -> Option<DateTime<Utc>> {
        let margin = delta(margin);
        self.deadlines
            .iter()
            .map_while(|(deadline, _)| deadline.checked_add_signed(margin))
            .find(|at| *at > now)
    }

    /// Enters an attempt an agent holds in the deadlines, from its start (or dispatch, or
    /// `at` if neither is known) plus its policy's run timeout.
    pub(super) fn arm_timeout(&mut self, id: TaskId, t: &mut Tracked, at: DateTime<Utc>) {
        let Some(spec) = t.task.spec.as_deref() else {
            return;
        };
        let secs = i64::try_from(spec.execution.run_timeout_secs).unwrap_or(i64::MAX);
        let run_timeout = TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX);
        let from = t.started_at.or(t.dispatched_at).unwrap_or(at);
        let deadline = from
            .checked_add_signed(run_timeout)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.deadlines.insert((deadline, id));
        t.deadline = Some(deadline);
    }

    fn timed_out(&self, task: TaskId, now: DateTime<Utc>) -> Option<ToAppend> {
        let t = self.tasks.get(&task)?;
        let secs = t.task.spec.as_ref()?.execution.run_timeout_secs;
        let attempt = t.task.attempt;
        let message = format!("no result within the run timeout of {secs} s (control plane)");
        let event = TaskEvent::Failed {
            attempt,
            error: TaskError::new(ErrorClass::Timeout, &message, None),
        };
        Some(follow_up(
            task,
            t,
            now,
            event,
            format!("timeout:{task}:{attempt}"),
        ))
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}
