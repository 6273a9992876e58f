//! Saturation: whether an agent has room, counted from what it holds and what it queues;
//! and what else holds an agent as a whole (unknown, decommissioned, offline, backoff).

use std::fmt;

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::policy::TaskKind;

use super::state::{AgentState, Stage};
use super::{DispatchConfig, Fleet, WaitReason};

/// Whether an agent (or one kind on it) has room for another task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Saturation {
    Free,
    Saturated(Why),
}

impl Saturation {
    /// True if nothing more goes to the agent (or kind).
    pub fn is_saturated(&self) -> bool {
        matches!(self, Saturation::Saturated(_))
    }
}

/// Why an agent (or one kind on it) is saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Running plus dispatched tasks reach the agent's total limit.
    TotalLimit { used: u16, limit: u16 },
    /// Running plus dispatched tasks of `kind` reach the agent's limit for the kind.
    KindLimit {
        kind: TaskKind,
        used: u16,
        limit: u16,
    },
    /// The agent's own queue holds more than the threshold.
    QueueThreshold { queued: u32, threshold: u16 },
}

impl Why {
    /// A stable snake_case name, for the API and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Why::TotalLimit { .. } => "total_limit",
            Why::KindLimit { .. } => "kind_limit",
            Why::QueueThreshold { .. } => "queue_threshold",
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::TotalLimit { used, limit } => write!(f, "{used} of {limit} task slots in use"),
            Why::KindLimit { kind, used, limit } => {
                write!(f, "{used} of {limit} {} slots in use", kind.as_str())
            }
            Why::QueueThreshold { queued, threshold } => write!(
                f,
                "{queued} tasks queued on the agent, more than the threshold of {threshold}"
            ),
        }
    }
}

impl fmt::Display for Saturation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Saturation::Free => f.write_str("free"),
            Saturation::Saturated(why) => write!(f, "saturated: {why}"),
        }
    }
}

/// A count as `u16`, saturating.
pub(super) fn count(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// The number of kinds: the length of per-kind arrays.
pub(super) const KINDS: usize = TaskKind::ALL.len();

/// The index of `kind` in [`TaskKind::ALL`], for per-kind arrays.
pub(super) fn slot(kind: TaskKind) -> usize {
    match kind {
        TaskKind::Backup => 0,
        TaskKind::Check => 1,
        TaskKind::Prune => 2,
        TaskKind::Restore => 3,
        TaskKind::Refresh => 4,
    }
}

impl AgentState {
    /// Tasks held: running, dispatched, acknowledged, being dispatched.
    pub fn used(&self) -> u16 {
        count(self.holding.len())
    }

    /// Tasks of `kind` held.
    pub fn used_of(&self, kind: TaskKind) -> u16 {
        count(self.holding.values().filter(|(k, _)| *k == kind).count())
    }

    /// Tasks held at `stage`.
    pub fn at_stage(&self, stage: Stage) -> u16 {
        count(self.holding.values().filter(|(_, s)| *s == stage).count())
    }

    /// The end of the agent's backoff at `now`: the latest due time still ahead among its
    /// tasks in `RetryScheduled`.
    pub fn backoff_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.backoff.values().copied().filter(|d| *d > now).max()
    }

    /// Saturation as a whole: by the total limit or the agent's own queue.
    pub fn saturation(&self, config: &DispatchConfig) -> Saturation {
        let (used, limit) = (self.used(), self.settings.max_concurrent);
        if used >= limit {
            return Saturation::Saturated(Why::TotalLimit { used, limit });
        }
        let queued = self.queued.total();
        if queued > u32::from(config.queue_threshold) {
            return Saturation::Saturated(Why::QueueThreshold {
                queued,
                threshold: config.queue_threshold,
            });
        }
        Saturation::Free
    }

    /// Saturation for a task of `kind`: as a whole, then by the kind's limit.
    pub fn saturation_for(&self, config: &DispatchConfig, kind: TaskKind) -> Saturation {
        let whole = self.saturation(config);
        if whole.is_saturated() {
            return whole;
        }
        let (used, limit) = (self.used_of(kind), self.settings.limit_for(kind));
        if used >= limit {
            return Saturation::Saturated(Why::KindLimit { kind, used, limit });
        }
        Saturation::Free
    }

    /// What holds the agent as a whole for a task of `tenant` at `now`, if anything:
    /// unknown, decommissioned, offline, in backoff, saturated (in that order).
    pub fn hold(
        &self,
        config: &DispatchConfig,
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Option<WaitReason> {
        if !self.registered || self.tenant.as_ref() != Some(tenant) {
            return Some(WaitReason::AgentUnknown);
        }
        if self.decommissioned {
            return Some(WaitReason::AgentDecommissioned);
        }
        if !self.online && !config.dispatch_to_offline {
            return Some(WaitReason::AgentOffline {
                since: self.offline_since,
            });
        }
        if config.respect_agent_backoff
            && let Some(until) = self.backoff_until(now)
        {
            return Some(WaitReason::AgentInBackoff { until });
        }
        match self.saturation(config) {
            Saturation::Saturated(why) => Some(WaitReason::AgentSaturated(why)),
            Saturation::Free => None,
        }
    }
}

impl Fleet {
    /// Whether `agent` has room as a whole (total limit, own queue); `None` for an agent
    /// the log has never named.
    pub fn saturation(&self, agent: AgentId) -> Option<Saturation> {
        self.agents.get(&agent).map(|a| a.saturation(&self.config))
    }

    /// Whether `agent` has room for a task of `kind`; `None` for an unknown agent.
    pub fn saturation_for(&self, agent: AgentId, kind: TaskKind) -> Option<Saturation> {
        self.agents
            .get(&agent)
            .map(|a| a.saturation_for(&self.config, kind))
    }
}
