//! Policy commands: create, apply (declarative create-or-update), update, pause, resume,
//! delete, assign, unassign, decided from the policy's history; and "run now", which
//! schedules a task per assigned agent.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, PolicyEvent, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::PolicySpec;
use fleet_events::store::{Append, AppendError, EventStore, Expect, Stored};
use fleet_events::subject::{AggregateId, EventSubject};
use fleet_events::validation::{FieldError, Invalid};

use super::{CommandError, Written, append_failed, execute};

/// A policy as its history says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// Created and not deleted since.
    pub live: bool,
    pub paused: bool,
    pub spec: Option<PolicySpec>,
    pub agents: BTreeSet<AgentId>,
}

impl PolicyState {
    /// Folds the policy's events (those of other aggregates are ignored).
    pub fn fold(history: &[Stored]) -> PolicyState {
        let mut state = PolicyState::default();
        for stored in history {
            if let Event::Policy { event, .. } = &stored.envelope.event {
                state.apply(event);
            }
        }
        state
    }

    fn apply(&mut self, event: &PolicyEvent) {
        match event {
            PolicyEvent::Created { spec } => {
                *self = PolicyState {
                    live: true,
                    spec: Some((**spec).clone()),
                    ..PolicyState::default()
                };
            }
            PolicyEvent::Updated { spec } => self.spec = Some((**spec).clone()),
            PolicyEvent::Paused => self.paused = true,
            PolicyEvent::Resumed => self.paused = false,
            PolicyEvent::Deleted => *self = PolicyState::default(),
            PolicyEvent::AssignedToAgent { agent } => {
                self.agents.insert(*agent);
            }
            PolicyEvent::UnassignedFromAgent { agent } => {
                self.agents.remove(agent);
            }
        }
    }
}

/// A policy as an operator declares it: its spec, and optionally the agents it runs on and
/// whether it is paused (left out: not changed by `apply`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub spec: PolicySpec,
    pub agents: Option<Vec<AgentId>>,
    pub paused: Option<bool>,
}

/// One policy command; the agents named are known to be registered and in service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyCommand {
    /// Create; a live policy of that name is a conflict.
    Create(Declared),
    /// Create, or bring the existing policy to what is declared.
    Apply(Declared),
    /// Replace the spec; the name cannot change.
    Update(Box<PolicySpec>),
    Pause,
    Resume,
    Delete,
    Assign(AgentId),
    Unassign(AgentId),
}

/// The events `command` needs on a policy in `state` (none when it is already so).
pub fn decide(
    policy: PolicyId,
    state: &PolicyState,
    command: &PolicyCommand,
) -> Result<Vec<PolicyEvent>, CommandError> {
    let missing = || CommandError::NotFound(format!("no policy {policy}"));
    match command {
        PolicyCommand::Create(declared) if state.live => Err(CommandError::Conflict(format!(
            "a policy named {:?} exists already (id {policy}); update or apply it instead",
            declared.spec.name
        ))),
        // Not live: never created, or deleted (which folds back to the default state).
        PolicyCommand::Create(declared) | PolicyCommand::Apply(declared) => {
            Ok(converge(state, declared))
        }
        _ if !state.live => Err(missing()),
        PolicyCommand::Update(spec) => {
            let current = state.spec.as_ref().ok_or_else(missing)?;
            if spec.name != current.name {
                return Err(CommandError::Invalid(Invalid(vec![FieldError {
                    field: "name".into(),
                    message: format!(
                        "a policy's name cannot change (it is {:?}); create a new policy",
                        current.name
                    ),
                }])));
            }
            Ok(if **spec == *current {
                Vec::new()
            } else {
                vec![PolicyEvent::Updated { spec: spec.clone() }]
            })
        }
        PolicyCommand::Pause => Ok(when(!state.paused, PolicyEvent::Paused)),
        PolicyCommand::Resume => Ok(when(state.paused, PolicyEvent::Resumed)),
        PolicyCommand::Delete => Ok(vec![PolicyEvent::Deleted]),
        PolicyCommand::Assign(agent) => Ok(when(
            !state.agents.contains(agent),
            PolicyEvent::AssignedToAgent { agent: *agent },
        )),
        PolicyCommand::Unassign(agent) => Ok(when(
            state.agents.contains(agent),
            PolicyEvent::UnassignedFromAgent { agent: *agent },
        )),
    }
}

fn when(needed: bool, event: PolicyEvent) -> Vec<PolicyEvent> {
    if needed { vec![event] } else { Vec::new() }
}

/// The events that bring `state` (default: not created) to `declared`.
fn converge(state: &PolicyState, declared: &Declared) -> Vec<PolicyEvent> {
    let mut events = Vec::new();
    let spec = Box::new(declared.spec.clone());
    match &state.spec {
        None => events.push(PolicyEvent::Created { spec }),
        Some(current) if *current != declared.spec => events.push(PolicyEvent::Updated { spec }),
        Some(_) => {}
    }
    if let Some(agents) = &declared.agents {
        let wanted: BTreeSet<AgentId> = agents.iter().copied().collect();
        for agent in wanted.difference(&state.agents) {
            events.push(PolicyEvent::AssignedToAgent { agent: *agent });
        }
        for agent in state.agents.difference(&wanted) {
            events.push(PolicyEvent::UnassignedFromAgent { agent: *agent });
        }
    }
    match declared.paused {
        Some(true) if !state.paused => events.push(PolicyEvent::Paused),
        Some(false) if state.paused => events.push(PolicyEvent::Resumed),
        _ => {}
    }
    events
}

/// The subject of `policy`'s events.
pub fn subject(tenant: &TenantId, policy: PolicyId) -> EventSubject {
    EventSubject {
        tenant: tenant.clone(),
        aggregate: AggregateId::Policy(policy),
    }
}

/// Runs `command` on `policy` of `tenant`; `version` is the `If-Match` the caller sent.
pub async fn run(
    store: &EventStore,
    tenant: &TenantId,
    policy: PolicyId,
    command: PolicyCommand,
    version: Option<u64>,
    now: DateTime<Utc>,
) -> Result<Written, CommandError> {
    let subject = subject(tenant, policy);
    execute(store, &subject, version, now, |history| {
        let state = PolicyState::fold(history);
        let events = decide(policy, &state, &command)?;
        Ok(events
            .into_iter()
            .map(|event| Event::Policy { policy, event })
            .collect())
    })
    .await
}

/// The tasks "run now" would schedule: one per agent asked for (all assigned agents when
/// none is named), each due at once with the policy as it is now.
pub fn run_now_tasks(
    policy: PolicyId,
    state: &PolicyState,
    agent: Option<AgentId>,
    now: DateTime<Utc>,
) -> Result<Vec<(TaskId, TaskEvent)>, CommandError> {
    let spec = match (&state.spec, state.live) {
        (Some(spec), true) => spec,
        _ => return Err(CommandError::NotFound(format!("no policy {policy}"))),
    };
    let agents: Vec<AgentId> = match agent {
        Some(agent) if state.agents.contains(&agent) => vec![agent],
        Some(agent) => {
            return Err(CommandError::Conflict(format!(
                "policy {policy} is not assigned to agent {agent}; assign it first"
            )));
        }
        None => state.agents.iter().copied().collect(),
    };
    if agents.is_empty() {
        return Err(CommandError::Conflict(format!(
            "policy {policy} is assigned to no agent; assign it first"
        )));
    }
    Ok(agents
        .into_iter()
        .map(|agent| {
            let event = TaskEvent::Scheduled {
                policy,
                agent,
                fire_at: now,
                run_at: now,
                spec: Box::new(spec.clone()),
            };
            (TaskId::for_fire(policy, agent, now), event)
        })
        .collect())
}

/// Schedules `policy` at once (paused or not: an operator asked). Each task is a new
/// aggregate, appended with expected sequence 0, so a repeated request in the same
/// microsecond cannot make a second task.
pub async fn run_now(
    store: &EventStore,
    tenant: &TenantId,
    policy: PolicyId,
    agent: Option<AgentId>,
    now: DateTime<Utc>,
) -> Result<(u64, Vec<TaskId>), CommandError> {
    let history = store.history(&subject(tenant, policy)).await?;
    let state = PolicyState::fold(&history.events);
    let tasks = run_now_tasks(policy, &state, agent, now)?;
    let mut ids = Vec::with_capacity(tasks.len());
    for (task, event) in tasks {
        let envelope = Envelope::new(tenant.clone(), now, Event::Task { task, event });
        let msg_id = format!("scheduled:{task}");
        let append = Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::LastSeq(0),
        };
        match store.append(append).await {
            Ok(_) | Err(AppendError::Conflict { .. }) => ids.push(task),
            Err(error) => return Err(append_failed(error)),
        }
    }
    Ok((history.last_seq, ids))
}

#[cfg(test)]
mod tests;
