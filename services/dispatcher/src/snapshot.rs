//! The dispatcher's folded state as a snapshot writes it: agents and unfinished tasks as
//! the log describes them, and open circuits. Sorted everywhere, so two instances that
//! folded the same log write the same bytes. Left out, being this instance's own or the
//! heartbeats': plans in flight, timers, gated agents, attempts it timed out, agents'
//! queues and last heartbeats (read again from `FLEET_HEARTBEATS` at every start). A
//! restored state places every task again, as its last event placed it.

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, CorrelationId, EventId, RepoId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::settings::AgentSettings;
use fleet_events::task_state::Task;
use fleet_retry::{Breaker, CircuitConfig};
use fleet_runtime::snapshot::{Snapshot, sorted};
use serde::{Deserialize, Serialize};

use fleet_events::event::RepoEvent;

use super::state::{AgentState, Tracked};
use super::{Circuits, Fleet};

/// What the dispatcher folds: the fleet, and the repositories' breakers it gates on.
#[derive(Debug)]
pub struct Folded {
    pub fleet: Fleet,
    pub circuits: Circuits,
}

/// A repository, per tenant.
type RepoKey = (TenantId, RepoId);

/// The dispatcher's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    agents: Vec<(AgentId, AgentImage)>,
    tasks: Vec<(TaskId, TaskImage)>,
    circuits: Vec<(RepoKey, DateTime<Utc>)>,
    /// Each breaker the log named, and until when the log says it is open (the probe a
    /// plan admitted is this instance's own).
    breakers: Vec<(RepoKey, Option<DateTime<Utc>>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AgentImage {
    tenant: Option<TenantId>,
    registered: bool,
    settings: AgentSettings,
    online: bool,
    heard: bool,
    offline_since: Option<DateTime<Utc>>,
    decommissioned: bool,
    online_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TaskImage {
    tenant: TenantId,
    task: Task,
    kind: Option<TaskKind>,
    repo: Option<RepoId>,
    seq: Option<u64>,
    last_event: EventId,
    correlation: CorrelationId,
    dispatched_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    last_at: DateTime<Utc>,
}

impl Snapshot for Folded {
    const SERVICE: &'static str = "dispatcher";
    const FOLD_VERSION: u32 = 1;
    type Image = Image;

    fn image(&self) -> Image {
        image(&self.fleet, &self.circuits)
    }

    fn restore(empty: Self, image: Image) -> Result<Self, String> {
        let mut fleet = Fleet::new(empty.fleet.config);
        let mut circuits = Circuits::new();
        for ((tenant, repo), open_until) in image.breakers {
            let breaker = circuits
                .breakers
                .entry((tenant, repo))
                .or_insert_with(|| Breaker::new(CircuitConfig::default()));
            if let Some(until) = open_until {
                breaker.apply(&RepoEvent::CircuitOpened { until, failures: 0 });
            }
        }
        for (id, a) in image.agents {
            let agent = AgentState {
                tenant: a.tenant,
                registered: a.registered,
                settings: a.settings,
                online: a.online,
                heard: a.heard,
                offline_since: a.offline_since,
                decommissioned: a.decommissioned,
                online_at: a.online_at,
                ..AgentState::default()
            };
            fleet.agents.insert(id, agent);
            fleet.dirty.insert(id);
        }
        fleet.circuits = image.circuits.into_iter().collect();
        for (id, t) in image.tasks {
            let mut tracked = Tracked {
                tenant: t.tenant,
                task: t.task,
                kind: t.kind,
                repo: t.repo,
                seq: t.seq,
                last_event: t.last_event,
                correlation: t.correlation,
                key: None,
                dispatching: false,
                gate_refused: false,
                dispatched_at: t.dispatched_at,
                started_at: t.started_at,
                deadline: None,
                last_at: t.last_at,
            };
            fleet.dirty.insert(tracked.task.agent);
            fleet.place(id, &mut tracked, t.last_at);
            fleet.tasks.insert(id, tracked);
        }
        Ok(Folded { fleet, circuits })
    }
}

/// The image of the dispatcher's two folded states.
pub fn image(fleet: &Fleet, circuits: &Circuits) -> Image {
    Image {
        agents: sorted(&fleet.agents, |a| AgentImage {
            tenant: a.tenant.clone(),
            registered: a.registered,
            settings: a.settings.clone(),
            online: a.online,
            heard: a.heard,
            offline_since: a.offline_since,
            decommissioned: a.decommissioned,
            online_at: a.online_at,
        }),
        tasks: sorted(&fleet.tasks, |t| TaskImage {
            tenant: t.tenant.clone(),
            task: t.task.clone(),
            kind: t.kind,
            repo: t.repo,
            seq: t.seq,
            last_event: t.last_event,
            correlation: t.correlation,
            dispatched_at: t.dispatched_at,
            started_at: t.started_at,
            last_at: t.last_at,
        }),
        circuits: sorted(&fleet.circuits, |until| *until),
        breakers: sorted(&circuits.breakers, |b| b.open_until()),
    }
}
