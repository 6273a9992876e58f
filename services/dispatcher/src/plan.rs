//! Planning: which waiting tasks go to which agents now, the [`Dispatch`]es that send them,
//! and the timers that say when time alone changes an agent's situation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use fleet_events::envelope::{Envelope, SCHEMA_VERSION};
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{AgentId, EventId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{AgentCommand, Command, TaskOrder};
use fleet_events::store::Expect;
use fleet_events::subject::{AgentSubject, Channel};

use super::saturation::{KINDS, slot};
use super::state::{AgentState, Stage, WaitKey};
use super::{Fleet, RepoGate};

/// One task to hand to its agent: append [`Dispatch::envelope`], then publish
/// [`Dispatch::command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub tenant: TenantId,
    pub task: TaskId,
    pub agent: AgentId,
    /// The attempt handed out: the task's current attempt plus one.
    pub attempt: u32,
    /// `TaskDispatched`, caused by the task's last event.
    pub envelope: Envelope,
    /// The task subject's last sequence the plan saw (`Any` if the log was applied without
    /// sequences). A refused append means the task moved on (another dispatcher, a cancel):
    /// call [`Fleet::abandon`] and keep applying the log.
    pub expect: Expect,
    /// The order for the agent, published once the event is stored.
    pub command: AgentCommand,
}

impl Dispatch {
    /// `Nats-Msg-Id` of the event: `dispatch:<task>:<attempt>`, the same on every instance.
    pub fn event_msg_id(&self) -> String {
        format!("dispatch:{}:{}", self.task, self.attempt)
    }

    /// `Nats-Msg-Id` of the command, as the protocol defines it (`run:<task>:<attempt>`).
    pub fn command_msg_id(&self) -> String {
        self.command.msg_id()
    }

    /// The agent's task subject, `fleet.agent.<agent>.tasks`.
    pub fn subject(&self) -> String {
        AgentSubject {
            agent: self.agent,
            channel: Channel::Tasks,
        }
        .to_string()
    }
}

/// The room an agent has left during one plan.
struct Room {
    used: u16,
    limit: u16,
    of_kind: [u16; KINDS],
    kind_limit: [u16; KINDS],
}

impl Room {
    fn of(agent: &AgentState) -> Self {
        Self {
            used: agent.used(),
            limit: agent.settings.max_concurrent,
            of_kind: TaskKind::ALL.map(|k| agent.used_of(k)),
            kind_limit: TaskKind::ALL.map(|k| agent.settings.limit_for(k)),
        }
    }

    fn full(&self) -> bool {
        self.used >= self.limit
    }

    fn fits(&self, kind: TaskKind) -> bool {
        !self.full() && self.of_kind[slot(kind)] < self.kind_limit[slot(kind)]
    }
}

impl Fleet {
    /// Every waiting task that may go at `now`, in dispatch order (priority, then run
    /// time, then id), within each agent's limits, asking `gate` about each repository.
    /// Looks only at agents whose situation changed since the last plan. Each task returned
    /// counts against its agent until its `TaskDispatched` comes back through
    /// [`Fleet::apply`] or it is handed back with [`Fleet::abandon`].
    pub fn plan(&mut self, now: DateTime<Utc>, gate: &mut impl RepoGate) -> Vec<Dispatch> {
        while let Some(&(at, agent)) = self.timers.first().filter(|(at, _)| *at <= now) {
            self.timers.remove(&(at, agent));
            self.dirty.insert(agent);
        }
        let mut rooms = BTreeMap::new();
        let mut candidates: Vec<(WaitKey, AgentId)> = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            let Some(agent) = self.agents.get(&id) else {
                continue;
            };
            let wake = match agent.tenant.as_ref() {
                Some(tenant) => match agent.hold(&self.config, tenant, now) {
                    Some(super::WaitReason::AgentInBackoff { until }) => Some(until),
                    Some(_) => None,
                    None => {
                        rooms.insert(id, Room::of(agent));
                        let due = agent.by_time.iter().take_while(|(at, _)| *at <= now);
                        candidates.extend(due.filter_map(|(_, task)| {
                            let t = self.tasks.get(task)?;
                            (t.tenant == *tenant).then_some((t.key?, id))
                        }));
                        None
                    }
                },
                None => None,
            };
            self.set_timer(id, wake);
        }
        candidates.sort();
        let mut out = Vec::new();
        let mut wakes: BTreeMap<AgentId, DateTime<Utc>> = BTreeMap::new();
        for (key, agent) in candidates {
            let (Some(room), Some(t)) = (rooms.get_mut(&agent), self.tasks.get_mut(&key.task))
            else {
                continue;
            };
            let (Some(kind), Some(repo)) = (t.kind, t.repo) else {
                continue;
            };
            if !room.fits(kind) {
                continue;
            }
            t.gate_refused = !gate.admits(&t.tenant, repo, key.task, now);
            if t.gate_refused {
                let circuit = (t.tenant.clone(), repo);
                if let Some(until) = self.circuits.get(&circuit).filter(|u| **u > now) {
                    let wake = wakes.entry(agent).or_insert(*until);
                    *wake = (*wake).min(*until);
                }
                self.gated.entry(circuit).or_default().insert(agent);
                continue;
            }
            room.used += 1;
            room.of_kind[slot(kind)] += 1;
            out.extend(self.dispatch(key, agent, now));
        }
        for (id, room) in rooms {
            let Some(agent) = self.agents.get(&id) else {
                continue;
            };
            let next_due = agent.by_time.iter().map(|(at, _)| *at).find(|at| *at > now);
            let gated = wakes.get(&id).copied();
            let wake = match (next_due, gated) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.set_timer(id, wake.filter(|_| !room.full()));
        }
        out
    }

    /// Hands back a task a plan returned whose append failed or lost its race: it waits
    /// again, and the next plan considers it (after the log has been re-read, so a task
    /// that moved on is not planned again). False if the task was not being dispatched.
    pub fn abandon(&mut self, task: TaskId) -> bool {
        let Some(t) = self.tasks.get_mut(&task).filter(|t| t.dispatching) else {
            return false;
        };
        t.dispatching = false;
        let (agent, key) = (t.task.agent, t.key);
        if let (Some(state), Some(key)) = (self.agents.get_mut(&agent), key) {
            state.holding.remove(&task);
            state.waiting.insert(key);
            state.by_time.insert((key.run_at, task));
        }
        self.dirty.insert(agent);
        true
    }

    /// Whether `task` was returned by a plan and its `TaskDispatched` is not back yet.
    pub fn is_dispatching(&self, task: TaskId) -> bool {
        self.tasks.get(&task).is_some_and(|t| t.dispatching)
    }

    /// When time alone next changes what a plan would do (a task falls due, a backoff or a
    /// circuit's cool-down ends): sleep until then, or until the next event.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Whether a plan at `now` has anything to look at: an agent changed, or a timer passed.
    pub fn needs_plan(&self, now: DateTime<Utc>) -> bool {
        !self.dirty.is_empty() || self.next_wakeup().is_some_and(|at| at <= now)
    }

    /// Marks `key` as being dispatched to `agent` and builds its [`Dispatch`].
    fn dispatch(&mut self, key: WaitKey, agent: AgentId, now: DateTime<Utc>) -> Option<Dispatch> {
        let t = self.tasks.get_mut(&key.task)?;
        let (kind, spec) = (t.kind?, t.task.spec.clone()?);
        let state = self.agents.get_mut(&agent)?;
        state.waiting.remove(&key);
        state.by_time.remove(&(key.run_at, key.task));
        state.holding.insert(key.task, (kind, Stage::InFlight));
        t.dispatching = true;
        let attempt = t.task.attempt + 1;
        let event = Event::Task {
            task: key.task,
            event: TaskEvent::Dispatched { agent, attempt },
        };
        let order = TaskOrder {
            tenant: t.tenant.clone(),
            task: key.task,
            attempt,
            policy: t.task.policy,
            spec,
            dispatched_at: now,
        };
        Some(Dispatch {
            tenant: t.tenant.clone(),
            task: key.task,
            agent,
            attempt,
            envelope: Envelope {
                schema: SCHEMA_VERSION,
                id: EventId::generate(),
                at: now,
                tenant: t.tenant.clone(),
                correlation: t.correlation,
                causation: Some(t.last_event),
                event,
            },
            expect: t.seq.map_or(Expect::Any, Expect::LastSeq),
            command: AgentCommand::new(Command::run(order, t.task.request.clone())),
        })
    }

    /// Replaces `agent`'s timer with `at`.
    fn set_timer(&mut self, agent: AgentId, at: Option<DateTime<Utc>>) {
        let Some(state) = self.agents.get_mut(&agent) else {
            return;
        };
        if let Some(old) = std::mem::replace(&mut state.timer, at) {
            self.timers.remove(&(old, agent));
        }
        if let Some(at) = at {
            self.timers.insert((at, agent));
        }
    }
}
