//! Folding the log into the scheduler's state: policies, (policy, agent) pairs, unfinished
//! tasks. Each change requeues the pairs it touches (see `queue`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, PolicyEvent, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::PolicySpec;
use fleet_events::schedule::Compiled;
use fleet_events::task_state::Task;

use super::Scheduler;
use super::fires::Fires;

/// One policy as the log describes it.
#[derive(Debug)]
pub(super) struct PolicyState {
    pub tenant: TenantId,
    /// The latest spec whose schedule compiled, with its compiled schedule; `None` while the
    /// policy has never had one (it then never fires).
    pub current: Option<(Box<PolicySpec>, Compiled)>,
    pub paused: bool,
    pub deleted: bool,
    pub agents: BTreeSet<AgentId>,
}

impl PolicyState {
    /// The spec and schedule, if the policy fires at all (valid, not paused, not deleted).
    pub fn active(&self) -> Option<(&PolicySpec, &Compiled)> {
        match &self.current {
            Some((spec, compiled)) if !self.paused && !self.deleted => Some((spec, compiled)),
            _ => None,
        }
    }

    /// Takes `spec` if its schedule compiles; otherwise logs why and keeps the old one.
    fn set_spec(&mut self, policy: PolicyId, spec: &PolicySpec) -> bool {
        match spec.schedule.compile() {
            Ok(compiled) => {
                self.current = Some((Box::new(spec.clone()), compiled));
                true
            }
            Err(error) => {
                tracing::warn!(policy_id = %policy, %error, "ignoring a policy spec whose schedule does not compile");
                false
            }
        }
    }
}

/// One (policy, agent) pair.
#[derive(Debug)]
pub(super) struct PairState {
    pub assigned: bool,
    /// Fires at or before this are recorded in the log or not owed (before the
    /// assignment, the last resume or the last update). Only moves forward; folded from
    /// the log alone (a snapshot holds it).
    pub floor: DateTime<Utc>,
    /// The latest fire this instance decided: the log may not hold it yet (or ever, if
    /// another instance's won). Never in a snapshot: a fresh instance owes what the log
    /// does not hold.
    pub decided: DateTime<Utc>,
    /// The latest fire time recorded in the log for the pair (scheduled or skipped).
    pub last_fire: Option<DateTime<Utc>>,
    /// Tasks of the pair that are not terminal; ordered by id, hence by fire time.
    pub unfinished: BTreeSet<TaskId>,
    /// Bumped on every change: queue entries of older generations are stale.
    pub generation: u64,
    /// The fire time queued for the pair, if it is live.
    pub next: Option<DateTime<Utc>>,
}

impl PairState {
    /// Fires at or before this are not owed: recorded, decided or before the assignment.
    pub fn owed_after(&self) -> DateTime<Utc> {
        self.floor.max(self.decided)
    }

    pub(super) fn new(floor: DateTime<Utc>) -> Self {
        Self {
            assigned: false,
            floor,
            decided: DateTime::<Utc>::MIN_UTC,
            last_fire: None,
            unfinished: BTreeSet::new(),
            generation: 0,
            next: None,
        }
    }
}

impl Scheduler {
    /// Folds one event of the log, in log order. Events the scheduler does not use, and
    /// events it cannot use (an invalid schedule, an illegal task transition, a policy of
    /// another tenant), are ignored with a log line; this never fails.
    pub fn apply(&mut self, env: &Envelope) {
        self.clock = self.clock.max(env.at);
        self.last_event_at = self.last_event_at.max(env.at);
        match &env.event {
            Event::Policy { policy, event } => self.apply_policy(*policy, env, event),
            Event::Agent {
                agent,
                event: AgentEvent::Decommissioned,
            } => {
                self.decommissioned.insert(*agent);
                let policies = self.by_agent.remove(agent).unwrap_or_default();
                for policy in policies {
                    self.unassign(policy, *agent);
                }
            }
            Event::Task { task, event } => self.apply_task(*task, event),
            _ => {}
        }
    }

    fn apply_policy(&mut self, policy: PolicyId, env: &Envelope, event: &PolicyEvent) {
        if let PolicyEvent::Created { spec } = event {
            // A deleted policy's name may be created again (its id is the name's).
            match self.policies.get(&policy) {
                Some(old) if !old.deleted || old.tenant != env.tenant => {
                    tracing::warn!(policy_id = %policy, "ignoring a second creation of a policy");
                    return;
                }
                _ => {}
            }
            let mut state = PolicyState {
                tenant: env.tenant.clone(),
                current: None,
                paused: false,
                deleted: false,
                agents: BTreeSet::new(),
            };
            state.set_spec(policy, spec);
            self.policies.insert(policy, state);
            return;
        }
        let Some(state) = self.policies.get_mut(&policy) else {
            tracing::debug!(policy_id = %policy, "ignoring an event of an unknown policy");
            return;
        };
        if state.tenant != env.tenant || state.deleted {
            tracing::warn!(policy_id = %policy, tenant = %env.tenant, "ignoring an event of a deleted policy or of another tenant");
            return;
        }
        let changed = match event {
            PolicyEvent::Created { .. } => false,
            PolicyEvent::Updated { spec } => state.set_spec(policy, spec),
            PolicyEvent::Paused => !std::mem::replace(&mut state.paused, true),
            PolicyEvent::Resumed => std::mem::replace(&mut state.paused, false),
            PolicyEvent::Deleted => {
                state.deleted = true;
                for agent in std::mem::take(&mut state.agents) {
                    self.assign(policy, agent, false, env.at);
                }
                return;
            }
            PolicyEvent::AssignedToAgent { agent } => {
                if self.decommissioned.contains(agent) {
                    tracing::warn!(policy_id = %policy, agent_id = %agent, "ignoring an assignment to a decommissioned agent");
                } else if state.agents.insert(*agent) {
                    self.assign(policy, *agent, true, env.at);
                }
                return;
            }
            PolicyEvent::UnassignedFromAgent { agent } => {
                self.unassign(policy, *agent);
                return;
            }
        };
        // An update or a resume owes no fire before it (no catch-up burst after a pause);
        // a pause owes none at all. Requeueing bumps generations, so queued fires die.
        if changed {
            let agents: Vec<AgentId> = state.agents.iter().copied().collect();
            let mut fires = Fires::default();
            for agent in agents {
                if let Some(pair) = self.pairs.get_mut(&(policy, agent)) {
                    pair.floor = pair.floor.max(env.at);
                }
                self.requeue(policy, agent, &mut fires);
            }
        }
    }

    fn unassign(&mut self, policy: PolicyId, agent: AgentId) {
        let removed = self
            .policies
            .get_mut(&policy)
            .is_some_and(|state| state.agents.remove(&agent));
        if removed {
            self.assign(policy, agent, false, self.clock);
        }
    }

    /// Marks the pair assigned (its first fire is the next one after `at`) or not, keeps the
    /// agent index in step, and requeues the pair.
    fn assign(&mut self, policy: PolicyId, agent: AgentId, assigned: bool, at: DateTime<Utc>) {
        let by_agent = self.by_agent.entry(agent).or_default();
        if assigned {
            by_agent.insert(policy);
        } else {
            by_agent.remove(&policy);
        }
        let pair = self
            .pairs
            .entry((policy, agent))
            .or_insert_with(|| PairState::new(at));
        pair.assigned = assigned;
        if assigned {
            pair.floor = pair.floor.max(at);
        }
        self.requeue(policy, agent, &mut Fires::default());
    }

    fn apply_task(&mut self, task: TaskId, event: &TaskEvent) {
        let current = self.tasks.get(&task);
        if current.is_none() && matches!(event, TaskEvent::Requested { .. }) {
            // An operator's restore or refresh: no schedule's business (its later events
            // find no task here and are ignored).
            return;
        }
        let mut next = match Task::fold(current, event) {
            Ok(next) => next,
            // Events of tasks already finished (and forgotten) land here too.
            Err(error) => {
                if current.is_some() {
                    tracing::debug!(task_id = %task, %error, "ignoring an illegal task event");
                }
                return;
            }
        };
        let pair = self
            .pairs
            .entry((next.policy, next.agent))
            .or_insert_with(|| PairState::new(next.fire_at));
        if current.is_none() {
            pair.floor = pair.floor.max(next.fire_at);
            pair.last_fire = pair.last_fire.max(Some(next.fire_at));
        }
        if next.status.is_terminal() {
            pair.unfinished.remove(&task);
            self.tasks.remove(&task);
        } else {
            pair.unfinished.insert(task);
            next.spec = None;
            self.tasks.insert(task, next);
        }
    }
}
