//! What the acting instance owes beyond what it appends, pure: the run timeouts it has
//! failed (each attempt once, until the log shows it ended), the cancel an agent is owed
//! when the log cancels a task it holds, and the agents heard while standing by whose
//! return the log does not know yet (recorded when the instance takes over, so an agent
//! that dies before its next heartbeat is still recorded as back).

use std::time::Duration;

use chrono::{DateTime, Utc};
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::protocol::{AgentCommand, Command, Heartbeat};
use fleet_events::store::Stored;
use fleet_events::subject::{AgentSubject, Channel};

use super::{Fleet, ToAgent, ToAppend};

/// One attempt to fail as timed out: the failure to append, and the cancel its agent is
/// owed.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedOut {
    pub task: TaskId,
    pub attempt: u32,
    pub agent: AgentId,
    pub failure: ToAppend,
    pub cancel: ToAgent,
}

impl Fleet {
    /// The attempts past their run timeout plus `margin` at `now` (see
    /// [`Fleet::timeouts`]) that this instance has not failed yet, each returned once;
    /// attempts the log has ended (or moved past) since are forgotten first.
    pub fn take_timeouts(&mut self, now: DateTime<Utc>, margin: Duration) -> Vec<TimedOut> {
        let tasks = &self.tasks;
        self.timed_out.retain(|(task, attempt)| {
            tasks
                .get(task)
                .is_some_and(|t| t.task.attempt == *attempt && t.task.status.is_on_agent())
        });
        let mut out = Vec::new();
        for failure in self.timeouts(now, margin) {
            let Event::Task {
                task,
                event: TaskEvent::Failed { attempt, .. },
            } = &failure.envelope.event
            else {
                continue;
            };
            let (task, attempt) = (*task, *attempt);
            let Some(agent) = self.tasks.get(&task).map(|t| t.task.agent) else {
                continue;
            };
            if !self.timed_out.insert((task, attempt)) {
                continue;
            }
            let cancel = cancel(agent, task, attempt, "run timeout".into());
            out.push(TimedOut {
                task,
                attempt,
                agent,
                failure,
                cancel,
            });
        }
        out
    }

    /// The cancel owed to an agent when `stored` cancels a task it holds (dispatched,
    /// acknowledged or running), read before `stored` is applied. Only live events should
    /// be asked about: a cancel read during catch-up was sent by the instance that saw it
    /// live (the command's msg id makes a second send harmless, but not a late one useful).
    pub fn cancel_owed(&self, stored: &Stored) -> Option<ToAgent> {
        let Event::Task {
            task,
            event: TaskEvent::Cancelled { reason },
        } = &stored.envelope.event
        else {
            return None;
        };
        let held = self
            .tasks
            .get(task)
            .map(|t| &t.task)
            .filter(|t| t.status.is_on_agent())?;
        Some(cancel(held.agent, *task, held.attempt, reason.clone()))
    }

    /// Notes a heartbeat heard at `heard_at` while standing by: owed a `came_online` at
    /// takeover if the log would need one now (see [`Fleet::came_online_key`]), else no
    /// longer owed.
    pub fn heard_standing_by(
        &mut self,
        beat: &Heartbeat,
        heard_at: DateTime<Utc>,
        now: DateTime<Utc>,
        lease: Duration,
    ) {
        if self
            .came_online_key(beat.agent, heard_at, now, lease)
            .is_some()
        {
            self.owed_online
                .insert(beat.agent, (beat.clone(), heard_at));
        } else {
            self.owed_online.remove(&beat.agent);
        }
    }

    /// The heartbeats owed a `came_online`, taken at takeover (each returned once).
    pub fn take_owed_online(&mut self) -> Vec<(Heartbeat, DateTime<Utc>)> {
        let mut owed: Vec<_> = std::mem::take(&mut self.owed_online)
            .into_values()
            .collect();
        owed.sort_by_key(|(beat, _)| beat.agent);
        owed
    }
}

/// A cancel command for `attempt` of `task` on `agent`'s task subject.
fn cancel(agent: AgentId, task: TaskId, attempt: u32, reason: String) -> ToAgent {
    let subject = AgentSubject {
        agent,
        channel: Channel::Tasks,
    }
    .to_string();
    let command = AgentCommand::new(Command::Cancel {
        task,
        attempt,
        reason,
    });
    ToAgent { subject, command }
}
