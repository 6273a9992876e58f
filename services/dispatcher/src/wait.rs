//! Why a task waits: what operators see in the API next to a task that has not gone out.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use fleet_events::ids::TaskId;
use fleet_events::policy::TaskKind;

use super::saturation::{Why, slot};
use super::state::AgentState;
use super::{Fleet, Saturation};

/// Why a task waiting for dispatch has not gone to its agent. Plain data: every field is
/// an id, a kind, a count or a time, and [`WaitReason::code`] names the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// Its run time (fire time plus jitter, or the retry's due time) is still ahead.
    NotYetDue { run_at: DateTime<Utc> },
    /// The agent has never registered (in the task's tenant).
    AgentUnknown,
    /// The agent is retired.
    AgentDecommissioned,
    /// The agent is offline; `since` is its last heartbeat, if the log says.
    AgentOffline { since: Option<DateTime<Utc>> },
    /// Another of the agent's tasks waits for a retry until `until`.
    AgentInBackoff { until: DateTime<Utc> },
    /// The agent (or the task's kind on it) has no room.
    AgentSaturated(Why),
    /// The repository's circuit is open: its tasks are held until `until`.
    RepositoryCircuitOpen { until: DateTime<Utc> },
    /// The repository's circuit is half-open: one probe task is testing it.
    RepositoryProbing,
    /// The agent's free slots go to `ahead` tasks of higher priority or earlier time first.
    BehindHigherPriority { ahead: u16 },
    /// A dispatcher is handing it to the agent right now.
    Dispatching,
}

impl WaitReason {
    /// A stable snake_case name, for the API and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            WaitReason::NotYetDue { .. } => "not_yet_due",
            WaitReason::AgentUnknown => "agent_unknown",
            WaitReason::AgentDecommissioned => "agent_decommissioned",
            WaitReason::AgentOffline { .. } => "agent_offline",
            WaitReason::AgentInBackoff { .. } => "agent_in_backoff",
            WaitReason::AgentSaturated(_) => "agent_saturated",
            WaitReason::RepositoryCircuitOpen { .. } => "repository_circuit_open",
            WaitReason::RepositoryProbing => "repository_probing",
            WaitReason::BehindHigherPriority { .. } => "behind_higher_priority",
            WaitReason::Dispatching => "dispatching",
        }
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::NotYetDue { run_at } => write!(f, "not due before {}", time(run_at)),
            WaitReason::AgentUnknown => f.write_str("the agent is not registered"),
            WaitReason::AgentDecommissioned => f.write_str("the agent is decommissioned"),
            WaitReason::AgentOffline { since: Some(t) } => {
                write!(f, "the agent is offline since {}", time(t))
            }
            WaitReason::AgentOffline { since: None } => f.write_str("the agent is offline"),
            WaitReason::AgentInBackoff { until } => {
                write!(f, "the agent is in backoff until {}", time(until))
            }
            WaitReason::AgentSaturated(why) => write!(f, "the agent is saturated: {why}"),
            WaitReason::RepositoryCircuitOpen { until } => {
                write!(f, "the repository's circuit is open until {}", time(until))
            }
            WaitReason::RepositoryProbing => {
                f.write_str("the repository's circuit is half-open: a probe task is testing it")
            }
            WaitReason::BehindHigherPriority { ahead } => {
                write!(
                    f,
                    "{ahead} tasks of higher priority or earlier time go first"
                )
            }
            WaitReason::Dispatching => f.write_str("it is being dispatched"),
        }
    }
}

impl Fleet {
    /// Why `task` waits at `now`. `None` if it does not wait for dispatch (unknown, on an
    /// agent, in backoff, finished) or if nothing holds it: the next plan dispatches it.
    pub fn why_waiting(&self, task: TaskId, now: DateTime<Utc>) -> Option<WaitReason> {
        let t = self.tasks.get(&task)?;
        let key = t.key?;
        if t.dispatching {
            return Some(WaitReason::Dispatching);
        }
        if key.run_at > now {
            return Some(WaitReason::NotYetDue { run_at: key.run_at });
        }
        let Some(agent) = self.agents.get(&t.task.agent) else {
            return Some(WaitReason::AgentUnknown);
        };
        if let Some(hold) = agent.hold(&self.config, &t.tenant, now) {
            return Some(hold);
        }
        let kind = t.kind?;
        if let Saturation::Saturated(why) = agent.saturation_for(&self.config, kind) {
            return Some(WaitReason::AgentSaturated(why));
        }
        if let Some(repo) = t.repo {
            let open = self.circuits.get(&(t.tenant.clone(), repo));
            if let Some(until) = open.filter(|until| **until > now) {
                return Some(WaitReason::RepositoryCircuitOpen { until: *until });
            }
        }
        if t.gate_refused {
            return Some(WaitReason::RepositoryProbing);
        }
        self.behind(agent, task, now)
    }

    /// Plays the plan for `agent` up to `task` (ignoring the gate): if the tasks ahead of
    /// it take the room left, it waits behind them.
    fn behind(&self, agent: &AgentState, task: TaskId, now: DateTime<Utc>) -> Option<WaitReason> {
        let mut used = agent.used();
        let mut of_kind = TaskKind::ALL.map(|k| agent.used_of(k));
        let mut ahead = 0u16;
        for key in &agent.waiting {
            let Some(t) = self.tasks.get(&key.task) else {
                continue;
            };
            let Some(k) = t.kind else { continue };
            let free = used < agent.settings.max_concurrent
                && of_kind[slot(k)] < agent.settings.limit_for(k);
            if key.task == task {
                return (!free).then_some(WaitReason::BehindHigherPriority { ahead });
            }
            let eligible =
                key.run_at <= now && !t.gate_refused && agent.tenant.as_ref() == Some(&t.tenant);
            if eligible && free {
                used += 1;
                of_kind[slot(k)] += 1;
                ahead += 1;
            }
        }
        None
    }
}
