//! What read models, the API and metrics show of the dispatcher's state.

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::policy::TaskKind;

use super::saturation::count;
use super::state::{AgentState, Stage};
use super::{Fleet, Saturation};

/// One kind's use on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindView {
    pub kind: TaskKind,
    /// Running, dispatched and being dispatched.
    pub used: u16,
    pub limit: u16,
    /// From the agent's last heartbeat.
    pub queued: u16,
}

/// One agent's load and holds at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub agent: AgentId,
    pub tenant: Option<TenantId>,
    pub registered: bool,
    pub online: bool,
    pub decommissioned: bool,
    /// Tasks running, as the log says.
    pub running: u16,
    /// Tasks dispatched or acknowledged, not yet running, as the log says.
    pub dispatched: u16,
    /// Tasks returned by a plan whose `TaskDispatched` is not back yet.
    pub dispatching: u16,
    /// Tasks in the agent's own queue, from its last heartbeat.
    pub queued: u32,
    /// The total limit.
    pub limit: u16,
    pub kinds: [KindView; TaskKind::ALL.len()],
    /// As a whole (total limit, own queue).
    pub saturation: Saturation,
    /// The end of its backoff, if it is in one.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Its tasks in `RetryScheduled`.
    pub pending_retries: u16,
    /// The earliest due time among them.
    pub earliest_retry: Option<DateTime<Utc>>,
    /// Its tasks waiting for dispatch.
    pub waiting: u16,
    pub last_seen: Option<DateTime<Utc>>,
}

/// Fleet-wide counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Registered agents that are not decommissioned.
    pub agents: usize,
    pub online: usize,
    /// Registered, not decommissioned, and saturated as a whole.
    pub saturated: usize,
    /// Registered, not decommissioned, and in backoff.
    pub in_backoff: usize,
    /// Tasks waiting for dispatch (not counting those being dispatched).
    pub waiting: usize,
    /// Tasks returned by a plan whose `TaskDispatched` is not back yet.
    pub dispatching: usize,
    /// Tasks dispatched, acknowledged or running.
    pub on_agents: usize,
}

fn view(id: AgentId, a: &AgentState, fleet: &Fleet, now: DateTime<Utc>) -> AgentView {
    AgentView {
        agent: id,
        tenant: a.tenant.clone(),
        registered: a.registered,
        online: a.online,
        decommissioned: a.decommissioned,
        running: a.at_stage(Stage::Running),
        dispatched: a.at_stage(Stage::Dispatched),
        dispatching: a.at_stage(Stage::InFlight),
        queued: a.queued.total(),
        limit: a.settings.max_concurrent,
        kinds: TaskKind::ALL.map(|kind| KindView {
            kind,
            used: a.used_of(kind),
            limit: a.settings.limit_for(kind),
            queued: a.queued.get(kind),
        }),
        saturation: a.saturation(&fleet.config),
        backoff_until: a.backoff_until(now),
        pending_retries: count(a.backoff.len()),
        earliest_retry: a.backoff.values().min().copied(),
        waiting: count(a.waiting.len()),
        last_seen: a.last_seen,
    }
}

impl Fleet {
    /// One agent's view at `now`; `None` if the log has never named it.
    pub fn agent(&self, agent: AgentId, now: DateTime<Utc>) -> Option<AgentView> {
        self.agents.get(&agent).map(|a| view(agent, a, self, now))
    }

    /// The msg id of the `agent.came_online` a heartbeat of `agent` heard at `heard_at`
    /// calls for at `now`, if it calls for one: the first since its registration, or the
    /// first since it went offline, and only if it is fresh (heard within `lease` of now;
    /// callers pass the agent's own, see [`crate::agent_lease`]).
    /// A new instance reads every agent's last heartbeat, however old: an agent that went
    /// offline after it is not back. Heartbeats that arrive before that event is back
    /// from the log name the same id, so the store keeps it once.
    pub fn came_online_key(
        &self,
        agent: AgentId,
        heard_at: DateTime<Utc>,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Option<String> {
        let a = self.agents.get(&agent)?;
        if !a.registered || a.decommissioned {
            return None;
        }
        let lease = chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
        if now - heard_at > lease {
            return None;
        }
        if !a.online {
            if a.offline_since.is_some_and(|since| heard_at <= since) {
                return None;
            }
            let since = a.offline_since.map_or(0, |t| t.timestamp_micros());
            return Some(format!("online:{agent}:{since}"));
        }
        (!a.heard).then(|| format!("heard:{agent}"))
    }

    /// Every agent the log has named, by id.
    pub fn agents(&self, now: DateTime<Utc>) -> Vec<AgentView> {
        let mut out: Vec<AgentView> = self
            .agents
            .iter()
            .map(|(id, a)| view(*id, a, self, now))
            .collect();
        out.sort_by_key(|v| v.agent);
        out
    }

    /// Fleet-wide counts at `now`.
    pub fn stats(&self, now: DateTime<Utc>) -> Stats {
        let mut s = Stats::default();
        for a in self.agents.values() {
            s.waiting += a.waiting.len();
            for (_, stage) in a.holding.values() {
                match stage {
                    Stage::InFlight => s.dispatching += 1,
                    Stage::Dispatched | Stage::Running => s.on_agents += 1,
                }
            }
            if !a.registered || a.decommissioned {
                continue;
            }
            s.agents += 1;
            s.online += usize::from(a.online);
            s.saturated += usize::from(a.saturation(&self.config).is_saturated());
            s.in_backoff += usize::from(a.backoff_until(now).is_some());
        }
        s
    }

    /// Registered, not decommissioned agents saturated as a whole.
    pub fn saturated_agents(&self) -> usize {
        self.agents
            .values()
            .filter(|a| a.registered && !a.decommissioned)
            .filter(|a| a.saturation(&self.config).is_saturated())
            .count()
    }

    /// Tasks waiting for dispatch, fleet-wide.
    pub fn waiting_tasks(&self) -> usize {
        self.agents.values().map(|a| a.waiting.len()).sum()
    }
}
