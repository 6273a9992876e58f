//! The scheduler's folded state as a snapshot writes it: policies with their latest spec
//! that compiled, (policy, agent) pairs with what the log says of them, unfinished tasks.
//! Sorted everywhere, so two instances that folded the same log write the same bytes.
//! Left out, being this instance's own: decided fires, the queue and its generations,
//! whether it started, the `now`s it was given.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::PolicySpec;
use fleet_events::task_state::Task;
use fleet_runtime::snapshot::{Snapshot, sorted};
use serde::{Deserialize, Serialize};

use super::Scheduler;
use super::queue::Queue;
use super::state::{PairState, PolicyState};

/// The scheduler's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    policies: Vec<(PolicyId, PolicyImage)>,
    pairs: Vec<((PolicyId, AgentId), PairImage)>,
    by_agent: Vec<(AgentId, Vec<PolicyId>)>,
    decommissioned: Vec<AgentId>,
    tasks: Vec<(TaskId, Task)>,
    last_event_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PolicyImage {
    tenant: TenantId,
    spec: Option<PolicySpec>,
    paused: bool,
    deleted: bool,
    agents: Vec<AgentId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PairImage {
    assigned: bool,
    floor: DateTime<Utc>,
    last_fire: Option<DateTime<Utc>>,
    unfinished: Vec<TaskId>,
}

fn sorted_set<T: Ord + Copy>(set: &HashSet<T>) -> Vec<T> {
    let mut items: Vec<T> = set.iter().copied().collect();
    items.sort();
    items
}

impl Snapshot for Scheduler {
    const SERVICE: &'static str = "scheduler";
    const FOLD_VERSION: u32 = 1;
    type Image = Image;

    fn image(&self) -> Image {
        Image {
            policies: sorted(&self.policies, |p| PolicyImage {
                tenant: p.tenant.clone(),
                spec: p.current.as_ref().map(|(spec, _)| spec.as_ref().clone()),
                paused: p.paused,
                deleted: p.deleted,
                agents: p.agents.iter().copied().collect(),
            }),
            pairs: self
                .pairs
                .iter()
                .map(|(key, pair)| {
                    let image = PairImage {
                        assigned: pair.assigned,
                        floor: pair.floor,
                        last_fire: pair.last_fire,
                        unfinished: pair.unfinished.iter().copied().collect(),
                    };
                    (*key, image)
                })
                .collect(),
            by_agent: sorted(&self.by_agent, sorted_set),
            decommissioned: sorted_set(&self.decommissioned),
            tasks: sorted(&self.tasks, Task::clone),
            last_event_at: self.last_event_at,
        }
    }

    fn restore(_empty: Self, image: Image) -> Result<Self, String> {
        let mut policies = HashMap::with_capacity(image.policies.len());
        for (id, p) in image.policies {
            let current = match p.spec {
                Some(spec) => {
                    let compiled = spec
                        .schedule
                        .compile()
                        .map_err(|e| format!("policy {id}: {e}"))?;
                    Some((Box::new(spec), compiled))
                }
                None => None,
            };
            let state = PolicyState {
                tenant: p.tenant,
                current,
                paused: p.paused,
                deleted: p.deleted,
                agents: p.agents.into_iter().collect::<BTreeSet<_>>(),
            };
            policies.insert(id, state);
        }
        let pairs: BTreeMap<(PolicyId, AgentId), PairState> = image
            .pairs
            .into_iter()
            .map(|(key, p)| {
                let mut pair = PairState::new(p.floor);
                pair.assigned = p.assigned;
                pair.last_fire = p.last_fire;
                pair.unfinished = p.unfinished.into_iter().collect();
                (key, pair)
            })
            .collect();
        Ok(Scheduler {
            policies,
            pairs,
            by_agent: image
                .by_agent
                .into_iter()
                .map(|(agent, policies)| (agent, policies.into_iter().collect()))
                .collect(),
            decommissioned: image.decommissioned.into_iter().collect(),
            tasks: image.tasks.into_iter().collect(),
            queue: Queue::default(),
            started: false,
            clock: image.last_event_at,
            last_event_at: image.last_event_at,
        })
    }
}
