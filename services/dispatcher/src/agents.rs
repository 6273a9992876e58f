//! Folding agent events and heartbeats: registration, settings, online or offline,
//! decommissioning, and the agent's own queue.

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::AgentEvent;
use fleet_events::ids::AgentId;
use fleet_events::protocol::{Heartbeat, KindCounts};

use super::Fleet;

impl Fleet {
    /// Records an agent's heartbeat, heard at `heard_at` (when the server stored it, and
    /// not later than now): its own queue and when it was last seen. Heartbeats of
    /// unregistered agents, of another tenant, or older than the last one are ignored.
    pub fn observe_heartbeat(&mut self, beat: &Heartbeat, heard_at: DateTime<Utc>) {
        let Some(agent) = self.agents.get_mut(&beat.agent) else {
            return;
        };
        if agent.tenant.as_ref() != Some(&beat.tenant) || agent.last_seen > Some(heard_at) {
            return;
        }
        agent.last_seen = Some(heard_at);
        agent.heartbeat_every = beat.every_secs;
        if agent.online && agent.queued != beat.queued {
            agent.queued = beat.queued;
            self.dirty.insert(beat.agent);
        }
    }

    /// Folds one agent event; events of another tenant than the one it registered with are
    /// ignored. Decommissioning is for good.
    pub(super) fn apply_agent(&mut self, id: AgentId, env: &Envelope, event: &AgentEvent) {
        let agent = self.agents.entry(id).or_default();
        if agent.tenant.as_ref().is_some_and(|t| *t != env.tenant) {
            tracing::warn!(agent_id = %id, tenant = %env.tenant, "ignoring an agent event of another tenant");
            return;
        }
        match event {
            AgentEvent::Registered { settings, .. } => {
                agent.tenant = Some(env.tenant.clone());
                agent.registered = true;
                agent.settings = settings.clone();
                agent.online = true;
                agent.heard = false;
                agent.offline_since = None;
                agent.online_at = Some(env.at);
            }
            AgentEvent::SettingsChanged { settings } => agent.settings = settings.clone(),
            AgentEvent::CameOnline { .. } => {
                agent.online = true;
                agent.heard = true;
                agent.offline_since = None;
                agent.online_at = Some(env.at);
            }
            AgentEvent::WentOffline { last_seen } => {
                agent.online = false;
                agent.offline_since = Some(*last_seen);
                agent.queued = KindCounts::default();
            }
            AgentEvent::Decommissioned => {
                agent.decommissioned = true;
                agent.queued = KindCounts::default();
            }
            AgentEvent::KeyAuthorized { .. } => {}
        }
        self.dirty.insert(id);
    }
}
