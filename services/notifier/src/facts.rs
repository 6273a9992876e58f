//! What the notifier knows of the fleet to word a message and judge overdue: agents' and
//! policies' names, policies' schedules and assignments, and live tasks.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use fleet_events::event::{AgentEvent, PolicyEvent, TaskError, TaskEvent, repo_of};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::schedule::Compiled;

/// An agent as far as notifications care.
#[derive(Debug)]
pub struct AgentFacts {
    pub tenant: TenantId,
    pub name: String,
    pub decommissioned: bool,
}

/// A policy as far as notifications care.
pub struct PolicyFacts {
    pub tenant: TenantId,
    pub name: String,
    pub kind: TaskKind,
    pub schedule: Option<Compiled>,
    pub jitter_secs: u32,
    pub paused: bool,
    pub deleted: bool,
    /// When the spec last changed, it was resumed, or it was created.
    pub changed_at: DateTime<Utc>,
    /// Assigned agents and when.
    pub agents: BTreeMap<AgentId, DateTime<Utc>>,
}

/// A task not yet finished: whose it is and how its last attempt failed.
#[derive(Debug, Clone)]
pub struct TaskFacts {
    pub tenant: TenantId,
    pub policy: PolicyId,
    pub agent: AgentId,
    pub kind: TaskKind,
    pub repo: RepoId,
    pub last_error: Option<TaskError>,
    pub attempts: u32,
}

/// Names, schedules and live tasks, folded from the log.
#[derive(Default)]
pub struct Facts {
    pub agents: HashMap<AgentId, AgentFacts>,
    pub policies: HashMap<PolicyId, PolicyFacts>,
    pub tasks: HashMap<TaskId, TaskFacts>,
}

impl Facts {
    /// Folds an agent event.
    pub fn agent(&mut self, tenant: &TenantId, agent: AgentId, event: &AgentEvent) {
        match event {
            AgentEvent::Registered { name, .. } => {
                self.agents.insert(
                    agent,
                    AgentFacts {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        decommissioned: false,
                    },
                );
            }
            AgentEvent::Decommissioned => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.decommissioned = true;
                }
            }
            _ => {}
        }
    }

    /// Folds a policy event at `at`.
    pub fn policy(
        &mut self,
        tenant: &TenantId,
        policy: PolicyId,
        event: &PolicyEvent,
        at: DateTime<Utc>,
    ) {
        match event {
            PolicyEvent::Created { spec } | PolicyEvent::Updated { spec } => {
                let entry = self.policies.entry(policy).or_insert_with(|| PolicyFacts {
                    tenant: tenant.clone(),
                    name: String::new(),
                    kind: spec.kind,
                    schedule: None,
                    jitter_secs: 0,
                    paused: false,
                    deleted: false,
                    changed_at: at,
                    agents: BTreeMap::new(),
                });
                entry.name = spec.name.clone();
                entry.kind = spec.kind;
                entry.schedule = spec.schedule.compile().ok();
                entry.jitter_secs = spec.jitter_secs;
                entry.changed_at = at;
                if matches!(event, PolicyEvent::Created { .. }) {
                    entry.deleted = false;
                    entry.paused = false;
                    entry.agents.clear();
                }
            }
            PolicyEvent::Paused => self.with_policy(policy, |p| p.paused = true),
            PolicyEvent::Resumed => self.with_policy(policy, |p| {
                p.paused = false;
                p.changed_at = at;
            }),
            PolicyEvent::Deleted => self.with_policy(policy, |p| {
                p.deleted = true;
                p.agents.clear();
            }),
            PolicyEvent::AssignedToAgent { agent } => self.with_policy(policy, |p| {
                p.agents.entry(*agent).or_insert(at);
            }),
            PolicyEvent::UnassignedFromAgent { agent } => self.with_policy(policy, |p| {
                p.agents.remove(agent);
            }),
        }
    }

    fn with_policy(&mut self, policy: PolicyId, f: impl FnOnce(&mut PolicyFacts)) {
        if let Some(p) = self.policies.get_mut(&policy) {
            f(p);
        }
    }

    /// Folds a task event; returns the task's facts as they were before a terminal event
    /// removed them (what a message about that event needs).
    pub fn task(
        &mut self,
        tenant: &TenantId,
        task: TaskId,
        event: &TaskEvent,
    ) -> Option<TaskFacts> {
        match event {
            TaskEvent::Scheduled {
                policy,
                agent,
                spec,
                ..
            }
            | TaskEvent::Requested {
                policy,
                agent,
                spec,
                ..
            } => {
                self.tasks.insert(
                    task,
                    TaskFacts {
                        tenant: tenant.clone(),
                        policy: *policy,
                        agent: *agent,
                        kind: spec.kind,
                        repo: repo_of(spec),
                        last_error: None,
                        attempts: 0,
                    },
                );
                None
            }
            TaskEvent::Dispatched { agent, attempt } => {
                let t = self.tasks.get_mut(&task)?;
                t.agent = *agent;
                t.attempts = *attempt;
                Some(t.clone())
            }
            TaskEvent::Failed { error, .. } => {
                let t = self.tasks.get_mut(&task)?;
                t.last_error = Some(error.clone());
                Some(t.clone())
            }
            TaskEvent::Succeeded { .. }
            | TaskEvent::Exhausted { .. }
            | TaskEvent::Cancelled { .. }
            | TaskEvent::Skipped { .. } => self.tasks.remove(&task),
            _ => self.tasks.get(&task).cloned(),
        }
    }

    /// The agent's name, or its id when it is unknown.
    pub fn agent_name(&self, agent: AgentId) -> String {
        self.agents
            .get(&agent)
            .map_or_else(|| agent.to_string(), |a| a.name.clone())
    }

    /// The policy's name, or its id when it is unknown.
    pub fn policy_name(&self, policy: PolicyId) -> String {
        self.policies
            .get(&policy)
            .map_or_else(|| policy.to_string(), |p| p.name.clone())
    }
}
