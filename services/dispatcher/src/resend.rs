//! Orders owed to agents, pure: a dispatch is two writes (the event, then the command), so
//! an instance that dies between them leaves a task dispatched in the log whose order no
//! agent has. Whoever takes the dispatcher over sends the order of every attempt still
//! only dispatched (not acknowledged) again, with the same msg id: the dispatch stream
//! stores it once within its duplicate window, and an agent that has the attempt already
//! recognises it and only acks.

use fleet_events::protocol::{AgentCommand, Command, TaskOrder};
use fleet_events::subject::{AgentSubject, Channel};
use fleet_events::task_state::TaskStatus;

use super::Fleet;

/// One command owed to an agent (an order sent again, a cancel): its task subject and the
/// command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToAgent {
    pub subject: String,
    pub command: AgentCommand,
}

impl Fleet {
    /// The orders of attempts the log shows dispatched and not yet acknowledged, as they
    /// were first sent (same attempt, spec and dispatch time, hence the same msg id).
    pub fn unacknowledged_orders(&self) -> Vec<ToAgent> {
        let mut out: Vec<ToAgent> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.task.status == TaskStatus::Dispatched && !t.dispatching)
            .filter_map(|(id, t)| {
                let order = TaskOrder {
                    tenant: t.tenant.clone(),
                    task: *id,
                    attempt: t.task.attempt,
                    policy: t.task.policy,
                    spec: t.task.spec.clone()?,
                    dispatched_at: t.dispatched_at?,
                };
                let subject = AgentSubject {
                    agent: t.task.agent,
                    channel: Channel::Tasks,
                }
                .to_string();
                Some(ToAgent {
                    subject,
                    command: AgentCommand::new(Command::run(order, t.task.request.clone())),
                })
            })
            .collect();
        out.sort_by_key(|r| r.command.msg_id());
        out
    }
}
