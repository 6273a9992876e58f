//! Liveness, pure: agents silent past their lease go offline; once offline for a grace
//! period more, the attempts they hold are lost (and then retried by the enforcer). An
//! agent's lease is the configured one, or [`MISSED_BEATS`] of its own heartbeat interval
//! if that is longer: an agent that beats every 60 s is not silent after 30.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, LostReason, TaskEvent};
use fleet_events::ids::TaskId;
use fleet_events::store::Expect;

use super::Fleet;
use super::state::{Stage, Tracked};

/// The events this core decides, as every core returns them.
pub use fleet_events::store::ToAppend;

/// Heartbeats an agent may miss before its silence counts (with a lease shorter than that).
pub const MISSED_BEATS: u32 = 3;

/// The lease of an agent that beats every `every_secs` seconds (0: it does not say): the
/// configured `lease`, or [`MISSED_BEATS`] of its intervals if that is longer.
pub fn agent_lease(lease: Duration, every_secs: u16) -> Duration {
    lease.max(Duration::from_secs(u64::from(every_secs)) * MISSED_BEATS)
}

impl Fleet {
    /// What the lease says at `now`: an online agent not heard from for its lease (`lease`,
    /// or longer for an agent whose heartbeats are further apart, see [`agent_lease`]; since
    /// its last heartbeat, or since the log last said it is online, whichever is later) goes
    /// offline, with that time as its last seen; an agent offline for its lease plus `grace`
    /// since it was last seen loses the attempts it holds. Last heartbeats outlive
    /// restarts (see [`Fleet::observe_heartbeat`]), so a dispatcher that restarts or takes
    /// over judges silence from when the agent was last heard, not from its own start.
    pub fn liveness(&self, now: DateTime<Utc>, lease: Duration, grace: Duration) -> Vec<ToAppend> {
        let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
        let mut out = Vec::new();
        for (id, agent) in &self.agents {
            let lease = agent_lease(lease, agent.heartbeat_every);
            let lease = TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX);
            let Some(tenant) = agent.tenant.clone() else {
                continue;
            };
            if agent.decommissioned || !agent.registered {
                continue;
            }
            if agent.online {
                let Some(last) = agent.last_seen.max(agent.online_at) else {
                    continue;
                };
                if now - last > lease {
                    let event = Event::Agent {
                        agent: *id,
                        event: AgentEvent::WentOffline { last_seen: last },
                    };
                    out.push(ToAppend {
                        msg_id: format!("offline:{id}:{}", last.timestamp_micros()),
                        envelope: Envelope::new(tenant, now, event),
                        expect: Expect::Any,
                    });
                }
                continue;
            }
            let Some(offline_since) = agent.offline_since else {
                continue;
            };
            if now - offline_since <= lease + grace {
                continue;
            }
            for (task, (_, stage)) in &agent.holding {
                if *stage != Stage::InFlight {
                    out.extend(self.lost(*task, now));
                }
            }
        }
        out
    }

    fn lost(&self, task: TaskId, now: DateTime<Utc>) -> Option<ToAppend> {
        let tracked = self.tasks.get(&task)?;
        let attempt = tracked.task.attempt;
        let event = TaskEvent::Lost {
            attempt,
            reason: LostReason::LeaseExpired,
        };
        Some(follow_up(
            task,
            tracked,
            now,
            event,
            format!("lost:{task}:{attempt}"),
        ))
    }
}

/// `event` of `task` at `now`, in the task's correlation and caused by its last event,
/// expecting the task subject's last sequence (when known).
pub(super) fn follow_up(
    task: TaskId,
    tracked: &Tracked,
    now: DateTime<Utc>,
    event: TaskEvent,
    msg_id: String,
) -> ToAppend {
    let mut envelope = Envelope::new(tracked.tenant.clone(), now, Event::Task { task, event });
    envelope.correlation = tracked.correlation;
    envelope.causation = Some(tracked.last_event);
    ToAppend {
        envelope,
        msg_id,
        expect: tracked.seq.map_or(Expect::Any, Expect::LastSeq),
    }
}
