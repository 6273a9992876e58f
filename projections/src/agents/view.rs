//! [`AgentView`]: the stored form of one agent (what it is, whether it is online, what it
//! holds, what waits in backoff), its [`Saturation`], and the keys of the agent trees.

use std::fmt;

use chrono::serde::{ts_microseconds, ts_microseconds_option};
use chrono::{DateTime, Utc};
use fleet_events::event::AgentEvent;
use fleet_events::ids::{AgentId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::KindCounts;
use fleet_events::settings::AgentSettings;
use serde::{Deserialize, Serialize};

/// One agent as the read model stores it (postcard, which is not self-describing: fields
/// are only ever appended, never reordered or removed; a change to the stored bytes bumps
/// [`crate::Agents`]'s format version). Serialized with camelCase names for JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// The tenant whose subjects the agent's events are stored under.
    pub tenant: TenantId,
    /// The agent's id.
    pub agent: AgentId,
    /// False for a placeholder: a task named the agent before any `agent.registered`
    /// (name and hostname are then empty and the settings the defaults).
    pub registered: bool,
    /// The name it registered with.
    pub name: String,
    /// The hostname it registered with.
    pub hostname: String,
    /// Its limits, from registration or the last settings change.
    pub settings: AgentSettings,
    /// When it registered; `None` for a placeholder.
    #[serde(with = "ts_microseconds_option")]
    pub registered_at: Option<DateTime<Utc>>,
    /// Retired: it gets no more work.
    pub decommissioned: bool,
    /// Online since its last `agent.came_online`, until an `agent.went_offline`.
    pub online: bool,
    /// When it came online, or when it was last heard of before going offline.
    #[serde(with = "ts_microseconds_option")]
    pub last_seen: Option<DateTime<Utc>>,
    /// The agent's version, from its last `agent.came_online`.
    pub agent_version: Option<String>,
    /// restic's version on the agent, from its last `agent.came_online`.
    pub restic_version: Option<String>,
    /// Tasks the agent holds (dispatched, acknowledged or running), per kind.
    pub running: KindCounts,
    /// The agent's tasks waiting to be retried, earliest due first (then by task id).
    pub backoff: Vec<Backoff>,
    /// Tasks waiting for dispatch to the agent (scheduled, or due for a retry), per kind.
    pub queued: KindCounts,
}

/// One task of an agent waiting for its retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub task: TaskId,
    /// When the retry is due.
    #[serde(with = "ts_microseconds")]
    pub due_at: DateTime<Utc>,
}

/// Why an agent takes no more work (of some kind), counting the tasks it holds. The
/// agent's own queue is not in the log, so it does not count here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Saturation {
    /// The tasks it holds reach its total limit (`settings.max_concurrent`).
    TotalLimit { used: u32, limit: u16 },
    /// The tasks of `kind` it holds reach the kind's limit; other kinds may still fit.
    KindLimit {
        kind: TaskKind,
        used: u16,
        limit: u16,
    },
}

impl Saturation {
    /// A stable snake_case name, for the API and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Saturation::TotalLimit { .. } => "total_limit",
            Saturation::KindLimit { .. } => "kind_limit",
        }
    }
}

impl fmt::Display for Saturation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Saturation::TotalLimit { used, limit } => {
                write!(f, "{used} of {limit} task slots in use")
            }
            Saturation::KindLimit { kind, used, limit } => {
                write!(f, "{used} of {limit} {} slots in use", kind.as_str())
            }
        }
    }
}

impl AgentView {
    /// An agent known only from a task naming it.
    pub(crate) fn placeholder(tenant: TenantId, agent: AgentId) -> Self {
        Self {
            tenant,
            agent,
            registered: false,
            name: String::new(),
            hostname: String::new(),
            settings: AgentSettings::default(),
            registered_at: None,
            decommissioned: false,
            online: false,
            last_seen: None,
            agent_version: None,
            restic_version: None,
            running: KindCounts::default(),
            backoff: Vec::new(),
            queued: KindCounts::default(),
        }
    }

    /// Applies one of the agent's own events, stored at `at`. A second registration
    /// updates name, hostname and settings and keeps the first registration time.
    pub(crate) fn apply(&mut self, at: DateTime<Utc>, event: &AgentEvent) {
        match event {
            AgentEvent::Registered {
                name,
                hostname,
                settings,
            } => {
                self.registered = true;
                self.name.clone_from(name);
                self.hostname.clone_from(hostname);
                self.settings = settings.clone();
                self.registered_at.get_or_insert(at);
            }
            AgentEvent::SettingsChanged { settings } => self.settings = settings.clone(),
            AgentEvent::CameOnline {
                agent_version,
                restic_version,
            } => {
                self.online = true;
                self.last_seen = Some(at);
                self.agent_version = Some(agent_version.clone());
                self.restic_version = Some(restic_version.clone());
            }
            AgentEvent::WentOffline { last_seen } => {
                self.online = false;
                self.last_seen = Some(*last_seen);
            }
            AgentEvent::Decommissioned => self.decommissioned = true,
            // Credentials are the access service's business; the key is in the history.
            AgentEvent::KeyAuthorized { .. } => {}
        }
    }

    /// Counts one more held task of `kind`; false if the count would overflow.
    pub(crate) fn hold(&mut self, kind: TaskKind) -> bool {
        let slot = count_of(&mut self.running, kind);
        slot.checked_add(1).map(|n| *slot = n).is_some()
    }

    /// Counts one held task of `kind` less; false if none was counted.
    pub(crate) fn release(&mut self, kind: TaskKind) -> bool {
        let slot = count_of(&mut self.running, kind);
        slot.checked_sub(1).map(|n| *slot = n).is_some()
    }

    /// Counts one more queued task of `kind`; false if the count would overflow.
    pub(crate) fn enqueue(&mut self, kind: TaskKind) -> bool {
        let slot = count_of(&mut self.queued, kind);
        slot.checked_add(1).map(|n| *slot = n).is_some()
    }

    /// Counts one queued task of `kind` less; false if none was counted.
    pub(crate) fn dequeue(&mut self, kind: TaskKind) -> bool {
        let slot = count_of(&mut self.queued, kind);
        slot.checked_sub(1).map(|n| *slot = n).is_some()
    }

    /// Records `task` as waiting for its retry due at `due_at`, in due-time order.
    pub(crate) fn add_backoff(&mut self, task: TaskId, due_at: DateTime<Utc>) {
        self.backoff.retain(|b| b.task != task);
        let entry = Backoff { task, due_at };
        let at = self
            .backoff
            .partition_point(|b| (b.due_at, b.task) < (due_at, task));
        self.backoff.insert(at, entry);
    }

    /// Removes `task` from the backoff list; false if it was not there.
    pub(crate) fn remove_backoff(&mut self, task: TaskId) -> bool {
        let before = self.backoff.len();
        self.backoff.retain(|b| b.task != task);
        self.backoff.len() < before
    }

    /// Whether the agent takes no more work, and why: the total limit first, then the
    /// first kind (in [`TaskKind::ALL`] order) at its own limit. `None` when every kind
    /// has room.
    pub fn saturation(&self) -> Option<Saturation> {
        let (used, limit) = (self.running.total(), self.settings.max_concurrent);
        if used >= u32::from(limit) {
            return Some(Saturation::TotalLimit { used, limit });
        }
        TaskKind::ALL.into_iter().find_map(|kind| {
            self.settings.per_kind.get(kind)?;
            let (used, limit) = (self.running.get(kind), self.settings.limit_for(kind));
            (used >= limit).then_some(Saturation::KindLimit { kind, used, limit })
        })
    }

    /// True if the total limit or some kind's limit is reached.
    pub fn is_saturated(&self) -> bool {
        self.saturation().is_some()
    }

    /// How many of the agent's tasks wait for a retry.
    pub fn pending_retries(&self) -> usize {
        self.backoff.len()
    }

    /// The earliest due time among the agent's tasks waiting for a retry.
    pub fn earliest_retry(&self) -> Option<DateTime<Utc>> {
        self.backoff.iter().map(|b| b.due_at).min()
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

fn count_of(counts: &mut KindCounts, kind: TaskKind) -> &mut u16 {
    counts.get_mut(kind)
}

/// The `agents.by_id` key: the agent's UUID bytes.
pub(crate) fn agent_key(agent: AgentId) -> [u8; 16] {
    *agent.uuid().as_bytes()
}

/// The `agents.tasks` key: the task's UUID bytes.
pub(crate) fn task_key(task: TaskId) -> [u8; 16] {
    *task.uuid().as_bytes()
}
