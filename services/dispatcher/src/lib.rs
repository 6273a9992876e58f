//! The dispatcher's decision core: waiting tasks to agents, never past an agent's limits.
//!
//! This module is pure: no IO, no clock, no async. The service around it replays the log
//! into [`Fleet::apply_stored`] (or [`Fleet::apply`]), feeds heartbeats (each agent's last
//! one first, from `FLEET_HEARTBEATS`) to [`Fleet::observe_heartbeat`], and after every
//! batch calls [`Fleet::plan`]. For each
//! [`Dispatch`] it appends `TaskDispatched` (msg id [`Dispatch::event_msg_id`], expecting
//! [`Dispatch::expect`]) and then publishes [`Dispatch::command`] on [`Dispatch::subject`];
//! an append that fails or loses its race is handed back with [`Fleet::abandon`]. It appends
//! what [`Fleet::liveness`] and [`Fleet::timeouts`] return. Between events it sleeps until
//! [`Fleet::next_wakeup`] or [`Fleet::next_timeout`]: there is no polling loop.
//!
//! # Layout
//! - this file: [`DispatchConfig`] and the [`Fleet`] state.
//! - `state`: per-agent and per-task state; folding task and repository events.
//! - `agents`: folding agent events and heartbeats.
//! - `saturation`: [`Saturation`], [`Why`], and what holds an agent as a whole.
//! - `plan`: [`Fleet::plan`], [`Dispatch`], [`Fleet::abandon`], wake-up timers.
//! - `wait`: [`WaitReason`] and [`Fleet::why_waiting`], what operators see.
//! - `gate`: [`RepoGate`], the per-repository circuit question, and [`Circuits`].
//! - `view`: [`AgentView`] and [`Stats`] for read models and metrics.
//! - `liveness`: [`Fleet::liveness`], the lease: silent agents go offline, then lose work.
//! - `timeouts`: [`Fleet::timeouts`], attempts on agents past their policy's run timeout.
//! - `resend`: [`Fleet::unacknowledged_orders`], orders owed after a takeover.
//! - `snapshot`: the folded state as written down and read back at start (log-derived
//!   only; tasks placed again from their last event).
//!
//! # Decisions
//! - **Offline agents** get nothing new (unless [`DispatchConfig::dispatch_to_offline`]):
//!   their work waits centrally, where priorities still apply and an operator sees why,
//!   instead of piling up in the agent's work queue to be lost with the lease. What was
//!   already dispatched stays counted against the agent until the lease logic marks it lost.
//! - **Backoff**: an agent holding a task in `RetryScheduled` whose due time is still ahead
//!   is in backoff until the latest such due time; with
//!   [`DispatchConfig::respect_agent_backoff`] (the default) it gets nothing meanwhile.
//! - **Queue threshold**: the agent's own queue (from its last heartbeat) saturates it
//!   when it holds more than [`DispatchConfig::queue_threshold`] tasks (default 2).
//! - **Per-kind limits** hold only their kind: an agent whose backup slots are full still
//!   takes a check, so it is saturated as a whole only by its total limit or its queue.
//! - Unknown agents (never registered, or registered to another tenant) and decommissioned
//!   ones get nothing; their tasks wait with a reason until someone cancels them.
//! - **Run timeouts**: an attempt on an agent (dispatched, acknowledged or running) with no
//!   result once its policy's run timeout plus a margin has passed since it started (or was
//!   dispatched, if it never started), by the `at` of those events, fails with class
//!   `Timeout`. The agent enforces the timeout itself; this is the backstop for one that
//!   hangs while still heartbeating, and the margin lets the agent report first.
//!
//! # Invariants
//! - An agent holds at most its limits: tasks dispatched, acknowledged, running and being
//!   dispatched (returned by a plan, not yet back from the log) all count.
//! - A plan looks only at agents whose situation changed (an event, a heartbeat, a timer):
//!   its cost follows what changed, not the size of the fleet.
//! - Plans depend only on the log, heartbeats, the gate and `now`: two cores fed the same
//!   inputs plan the same tasks to the same agents in the same order.

mod agents;
mod gate;
mod liveness;
mod owed;
mod plan;
mod resend;
mod saturation;
mod service;
pub mod snapshot;
mod state;
mod timeouts;
mod view;
mod wait;

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, RepoId, TaskId, TenantId};
use fleet_events::protocol::Heartbeat;
use fleet_events::task_state::Task;

pub use gate::{AdmitAll, Circuits, RepoGate};
pub use liveness::{MISSED_BEATS, ToAppend, agent_lease};
pub use owed::TimedOut;
pub use plan::Dispatch;
pub use resend::ToAgent;
pub use saturation::{Saturation, Why};
pub use service::{DispatcherConfig, HEARTBEAT_READER, run};
pub use snapshot::Folded;
pub use view::{AgentView, KindView, Stats};
pub use wait::WaitReason;

use state::{AgentState, Tracked};

/// How the dispatcher treats agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchConfig {
    /// An agent whose own queue (tasks accepted, waiting for a slot on the agent, from its
    /// last heartbeat) holds more than this many tasks is saturated. Default 2: one or two
    /// tasks between acknowledgement and start are normal; more means the agent is behind.
    pub queue_threshold: u16,
    /// Agents with tasks in backoff get nothing until the backoff ends (`respectAgentBackoff`,
    /// default true).
    pub respect_agent_backoff: bool,
    /// Dispatch to offline agents too, to be picked up when they return (default false).
    pub dispatch_to_offline: bool,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            queue_threshold: 2,
            respect_agent_backoff: true,
            dispatch_to_offline: false,
        }
    }
}

/// The dispatcher's read models, folded from the log and heartbeats.
#[derive(Debug)]
pub struct Fleet {
    config: DispatchConfig,
    agents: HashMap<AgentId, AgentState>,
    /// Tasks that are not terminal.
    tasks: HashMap<TaskId, Tracked>,
    /// Open circuits from the log: held until this time, then half-open.
    circuits: HashMap<(TenantId, RepoId), DateTime<Utc>>,
    /// Agents with tasks the gate refused, by repository: re-planned when it changes.
    gated: HashMap<(TenantId, RepoId), BTreeSet<AgentId>>,
    /// Agents to look at in the next plan.
    dirty: BTreeSet<AgentId>,
    /// When an agent's situation changes with time alone (a task falls due, a backoff or
    /// a circuit's cool-down ends); at most one entry per agent, see `AgentState::timer`.
    timers: BTreeSet<(DateTime<Utc>, AgentId)>,
    /// Attempts on agents by when their run timeout ends (before any margin), see
    /// `Tracked::deadline`.
    deadlines: BTreeSet<(DateTime<Utc>, TaskId)>,
    /// Attempts this instance failed as timed out, until the log shows them ended.
    timed_out: HashSet<(TaskId, u32)>,
    /// While standing by: the last heartbeat of each agent owed a `came_online`.
    owed_online: HashMap<AgentId, (Heartbeat, DateTime<Utc>)>,
}

impl Fleet {
    /// An empty fleet, before any event.
    pub fn new(config: DispatchConfig) -> Self {
        Self {
            config,
            agents: HashMap::new(),
            tasks: HashMap::new(),
            circuits: HashMap::new(),
            gated: HashMap::new(),
            dirty: BTreeSet::new(),
            timers: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            timed_out: HashSet::new(),
            owed_online: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    /// A task that is not terminal, as the log describes it.
    pub fn task(&self, task: TaskId) -> Option<&Task> {
        self.tasks.get(&task).map(|t| &t.task)
    }

    /// The tasks waiting for `agent`, in dispatch order (priority, then time, then id).
    pub fn waiting_for(&self, agent: AgentId) -> Vec<TaskId> {
        self.agents
            .get(&agent)
            .map(|a| a.waiting.iter().map(|k| k.task).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
