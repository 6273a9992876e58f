//! Requested tasks: an operator asks an agent to restore a snapshot or to refresh a
//! repository's snapshot inventory. The policy names the repository and its secret (the
//! agent holds the password under that name); the agent must be registered in the tenant
//! and not decommissioned, but need not be assigned to the policy (any agent holding the
//! secret may restore). The task is a new aggregate appended with expected sequence 0.

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, TaskEvent, TaskRequest};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::store::{Append, AppendError, EventStore, Expect};

use super::agent::{self, AgentState};
use super::policy::{self, PolicyState};
use super::{CommandError, append_failed};

/// What an operator asks for, and of whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub policy: PolicyId,
    pub agent: AgentId,
    pub request: TaskRequest,
    /// Who asked, for the task's history.
    pub by: String,
}

/// The kind of task `request` makes.
pub fn kind_of(request: &TaskRequest) -> TaskKind {
    match request {
        TaskRequest::Restore(_) => TaskKind::Restore,
        TaskRequest::Refresh => TaskKind::Refresh,
    }
}

/// The `task.requested` event for `ask`, or why it cannot be asked: the request is
/// invalid, the policy does not exist (or was deleted), the agent is unknown or
/// decommissioned.
pub fn decide(
    ask: &Ask,
    policy: &PolicyState,
    agent: &AgentState,
    now: DateTime<Utc>,
) -> Result<TaskEvent, CommandError> {
    if let TaskRequest::Restore(restore) = &ask.request {
        restore.validate().map_err(CommandError::Invalid)?;
    }
    let spec = match (&policy.spec, policy.live) {
        (Some(spec), true) => spec,
        _ => {
            return Err(CommandError::NotFound(format!(
                "no policy {}: a restore or refresh uses a live policy's repository and secret",
                ask.policy
            )));
        }
    };
    if let Some(refusal) = agent.unusable(ask.agent) {
        return Err(refusal);
    }
    // A policy's hooks go with its own scheduled kind: none runs around a restore or a
    // refresh (and without hooks, agents that read only schema 1 take the task).
    let spec = PolicySpec {
        kind: kind_of(&ask.request),
        hooks: Default::default(),
        ..spec.clone()
    };
    Ok(TaskEvent::Requested {
        policy: ask.policy,
        agent: ask.agent,
        run_at: now,
        spec: Box::new(spec),
        request: ask.request.clone(),
        by: ask.by.clone(),
    })
}

/// Appends the task asked for and returns its id and event. `agent` `None` means the
/// first agent the policy is assigned to. A fresh task id and expected sequence 0: the task
/// cannot exist twice.
pub async fn request(
    store: &EventStore,
    tenant: &TenantId,
    policy: PolicyId,
    agent: Option<AgentId>,
    request: TaskRequest,
    by: String,
    now: DateTime<Utc>,
) -> Result<(TaskId, TaskEvent), CommandError> {
    let policy_history = store.history(&policy::subject(tenant, policy)).await?;
    let policy_state = PolicyState::fold(&policy_history.events);
    let agent = match agent.or_else(|| policy_state.agents.first().copied()) {
        Some(agent) => agent,
        None if policy_state.live => {
            return Err(CommandError::Conflict(format!(
                "policy {policy} is assigned to no agent: name the agent to run on"
            )));
        }
        None => return Err(CommandError::NotFound(format!("no policy {policy}"))),
    };
    let agent_history = store.history(&agent::subject(tenant, agent)).await?;
    let ask = Ask {
        policy,
        agent,
        request,
        by,
    };
    let event = decide(
        &ask,
        &policy_state,
        &AgentState::fold(&agent_history.events),
        now,
    )?;
    let task = TaskId::generate();
    let envelope = Envelope::new(
        tenant.clone(),
        now,
        Event::Task {
            task,
            event: event.clone(),
        },
    );
    let msg_id = format!("requested:{task}");
    let append = Append {
        envelope: &envelope,
        msg_id: &msg_id,
        expect: Expect::LastSeq(0),
    };
    match store.append(append).await {
        Ok(_) => Ok((task, event)),
        Err(AppendError::Conflict { .. }) => Err(CommandError::Conflict(format!(
            "task {task} exists already"
        ))),
        Err(error) => Err(append_failed(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_events::event::{EventType, Overwrite, RestoreRequest};
    use fleet_events::policy::TaskKind;
    use fleet_events::samples;
    use fleet_events::store::Stored;

    fn stored(event: Event) -> Stored {
        let mut envelope = samples::envelope(EventType::TenantCreated);
        envelope.event = event;
        Stored {
            seq: 1,
            subject: envelope.subject(),
            envelope,
        }
    }

    fn live_policy() -> PolicyState {
        PolicyState::fold(&[stored(samples::event(EventType::PolicyCreated))])
    }

    fn registered_agent() -> AgentState {
        AgentState::fold(&[stored(samples::event(EventType::AgentRegistered))])
    }

    fn restore(target: &str) -> Ask {
        Ask {
            policy: samples::POLICY,
            agent: samples::AGENT,
            request: TaskRequest::Restore(RestoreRequest {
                snapshot: "ab".repeat(32),
                include: vec!["/srv/data/lost.txt".into()],
                target: target.into(),
                dry_run: false,
                overwrite: Overwrite::Never,
            }),
            by: "token ops".into(),
        }
    }

    #[test]
    fn a_restore_runs_with_the_policys_repository_as_a_restore() {
        // Given a live backup policy and a registered agent
        let (policy, agent) = (live_policy(), registered_agent());
        // When an operator asks for a restore
        let event = decide(&restore("/var/restore"), &policy, &agent, samples::at(9)).unwrap();
        // Then the task carries the policy's repository, as a restore, due now
        let TaskEvent::Requested {
            spec, run_at, by, ..
        } = &event
        else {
            panic!("requested: {event:?}");
        };
        assert_eq!(spec.kind, TaskKind::Restore);
        assert_eq!(spec.repository, samples::policy_spec().repository);
        assert_eq!((*run_at, by.as_str()), (samples::at(9), "token ops"));
    }

    #[test]
    fn a_restore_from_a_policy_with_hooks_runs_none_of_them() {
        let mut created = samples::event(EventType::PolicyCreated);
        if let Event::Policy {
            event: fleet_events::event::PolicyEvent::Created { spec },
            ..
        } = &mut created
        {
            **spec = samples::hooked_spec();
        }
        let policy = PolicyState::fold(&[stored(created)]);
        let event = decide(
            &restore("/var/restore"),
            &policy,
            &registered_agent(),
            samples::at(9),
        );
        let Ok(TaskEvent::Requested { spec, .. }) = event else {
            panic!("requested: {event:?}");
        };
        assert!(spec.hooks.is_empty(), "{:?}", spec.hooks);
        assert_eq!(spec.schema(), fleet_events::envelope::SCHEMA_VERSION);
    }

    #[test]
    fn bad_requests_unknown_policies_and_agents_are_refused() {
        let (policy, agent) = (live_policy(), registered_agent());
        let bad = decide(&restore("relative"), &policy, &agent, samples::at(9));
        assert!(matches!(bad, Err(CommandError::Invalid(i)) if i.mentions("target")));
        let deleted = PolicyState::default();
        let gone = decide(&restore("/r"), &deleted, &agent, samples::at(9));
        assert!(matches!(gone, Err(CommandError::NotFound(_))));
        let stranger = decide(
            &restore("/r"),
            &policy,
            &AgentState::default(),
            samples::at(9),
        );
        assert!(matches!(stranger, Err(CommandError::NotFound(_))));
        let retired = AgentState {
            decommissioned: true,
            ..registered_agent()
        };
        let retired = decide(&restore("/r"), &policy, &retired, samples::at(9));
        assert!(matches!(retired, Err(CommandError::Conflict(_))));
    }

    #[test]
    fn a_refresh_is_a_refresh_kind_task() {
        let ask = Ask {
            request: TaskRequest::Refresh,
            ..restore("/r")
        };
        let event = decide(&ask, &live_policy(), &registered_agent(), samples::at(1)).unwrap();
        assert!(matches!(
            event,
            TaskEvent::Requested { ref spec, .. } if spec.kind == TaskKind::Refresh
        ));
    }
}
