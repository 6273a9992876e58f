//! Deciding fire times: what to append for each due (policy, agent) pair.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, SkipReason, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::{MissedRun, Overlap, PolicySpec};

use super::fires::Fires;
use super::queue::Entry;
use super::{Scheduler, jitter_for, msg_id};

/// What one fire time of one pair became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A task was scheduled.
    Scheduled,
    /// Unfinished tasks are cancelled and a task is scheduled (overlap `Replace`).
    Replaced,
    /// Skipped: an unfinished task of the pair (overlap `Forbid`).
    SkippedOverlap,
    /// Skipped: the fire time was missed (policy `Skip`, or its starting deadline passed).
    SkippedMissed,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Outcome::Scheduled,
        Outcome::Replaced,
        Outcome::SkippedOverlap,
        Outcome::SkippedMissed,
    ];

    /// The snake_case name, the value of `fleet_scheduler_decisions_total{outcome}`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Scheduled => "scheduled",
            Outcome::Replaced => "replaced",
            Outcome::SkippedOverlap => "skipped_overlap",
            Outcome::SkippedMissed => "skipped_missed",
        }
    }
}

/// The decision for one fire time of one (policy, agent) pair: events to append.
///
/// Append every [`Cancel`] first, then `envelope` with msg id `msg_id`, expecting the
/// task's subject to be empty (`Expect::LastSeq(0)`). A conflict or a duplicate there means
/// another scheduler instance appended this task: nothing is lost. Until then, retry: the
/// core has moved on and will not decide this fire again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub tenant: TenantId,
    pub policy: PolicyId,
    pub agent: AgentId,
    pub fire_at: DateTime<Utc>,
    pub outcome: Outcome,
    /// The task this fire time names ([`TaskId::for_fire`]).
    pub task: TaskId,
    /// `sched:<policy>:<agent>:<fire_at micros>`, see [`msg_id`].
    pub msg_id: String,
    /// The task's first event: `Scheduled` or `Skipped`, on the task's own subject.
    pub envelope: Envelope,
    /// With overlap `Replace`, one per unfinished task of the pair.
    pub cancels: Vec<Cancel>,
}

impl Decision {
    /// When the task may run: its scheduled run time (fire time plus the pair's jitter),
    /// or the fire time for a skip.
    pub fn run_at(&self) -> DateTime<Utc> {
        match &self.envelope.event {
            Event::Task {
                event: TaskEvent::Scheduled { run_at, .. },
                ..
            } => *run_at,
            _ => self.fire_at,
        }
    }
}

/// A `Cancelled` event for an unfinished task, appended on that task's subject. Expect the
/// sequence loaded for `task`; on a conflict, re-read it: if it has finished meanwhile there
/// is nothing left to cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// The task being cancelled.
    pub task: TaskId,
    /// `<decision msg id>:cancel:<task>`.
    pub msg_id: String,
    pub envelope: Envelope,
}

/// One fire to decide, with everything the decision depends on.
struct Fire<'a> {
    tenant: &'a TenantId,
    spec: &'a PolicySpec,
    policy: PolicyId,
    agent: AgentId,
    fire_at: DateTime<Utc>,
    /// True if the fire was missed (downtime or a stalled caller): the missed-run policy
    /// decides whether it still runs.
    missed: bool,
    unfinished: &'a BTreeSet<TaskId>,
}

impl Scheduler {
    /// Starts scheduling once the log has been replayed: queues every live pair's next fire
    /// after `now`, and returns at most one decision per pair for fires missed while no
    /// scheduler ran (the latest one; see [`MissedRun`]). With `Skip`, or past the starting
    /// deadline, that decision is a `Skipped(Missed)` record, so operators see the gap.
    /// A pair's fires before its assignment, the policy's last update or resume are not
    /// owed. Calling it again is the same as calling [`Scheduler::due`].
    pub fn start(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        if self.started {
            return self.due(now);
        }
        self.started = true;
        self.clock = self.clock.max(now);
        let mut fires = Fires::default();
        let mut decisions = Vec::new();
        let keys: Vec<(PolicyId, AgentId)> = self.pairs.keys().copied().collect();
        for (policy, agent) in keys {
            let state = self.policies.get(&policy);
            let active = state.and_then(|s| s.active().map(|a| (&s.tenant, a)));
            if let (Some((tenant, (spec, compiled))), Some(pair)) =
                (active, self.pairs.get_mut(&(policy, agent)))
                && pair.assigned
                && let Some(fire_at) = fires.latest(policy, compiled, pair.owed_after(), now)
            {
                decisions.push(decide(
                    &Fire {
                        tenant,
                        spec,
                        policy,
                        agent,
                        fire_at,
                        missed: true,
                        unfinished: &pair.unfinished,
                    },
                    now,
                ));
                pair.decided = fire_at;
            }
            self.requeue(policy, agent, &mut fires);
        }
        decisions
    }

    /// Decides every fire at or before `now`, in (fire time, policy, agent) order, and
    /// queues each pair's next fire. Costs O(due · log n): only due queue entries are
    /// touched. A pair whose queued fire was followed by more fires before `now` (the caller
    /// stalled) gets one decision for the latest, under its missed-run policy.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        if !self.started {
            return self.start(now);
        }
        self.clock = self.clock.max(now);
        let mut fires = Fires::default();
        let mut decisions = Vec::new();
        while let Some(entry) = self.queue.pop_due(now) {
            let (policy, agent) = (entry.policy, entry.agent);
            let Some(state) = self.policies.get(&policy) else {
                continue;
            };
            let Some((spec, compiled)) = state.active() else {
                continue;
            };
            let Some(pair) = self.pairs.get_mut(&(policy, agent)) else {
                continue;
            };
            if pair.generation != entry.generation || !pair.assigned {
                continue;
            }
            let mut fire_at = entry.at;
            let mut missed = false;
            if fire_at > pair.owed_after() {
                let following = fires.next_after(policy, compiled, fire_at);
                if following.is_some_and(|t| t <= now) {
                    missed = true;
                    fire_at = fires
                        .latest(policy, compiled, fire_at, now)
                        .unwrap_or(fire_at);
                }
                decisions.push(decide(
                    &Fire {
                        tenant: &state.tenant,
                        spec,
                        policy,
                        agent,
                        fire_at,
                        missed,
                        unfinished: &pair.unfinished,
                    },
                    now,
                ));
                pair.decided = fire_at;
            }
            // Else the log already holds this fire (another instance was faster).
            pair.next = fires.next_after(policy, compiled, pair.owed_after());
            if let Some(at) = pair.next {
                self.queue.push(Entry { at, ..entry });
            }
        }
        self.compact();
        decisions
    }
}

/// The decision for one fire: the missed-run policy first, then the overlap policy.
fn decide(fire: &Fire<'_>, now: DateTime<Utc>) -> Decision {
    let (policy, agent, fire_at) = (fire.policy, fire.agent, fire.fire_at);
    let task = TaskId::for_fire(policy, agent, fire_at);
    let msg_id = msg_id(policy, agent, fire_at);
    let skipped = |reason| TaskEvent::Skipped {
        policy,
        agent,
        fire_at,
        reason,
    };
    let in_time = match fire.spec.missed {
        _ if !fire.missed => true,
        MissedRun::Skip => false,
        MissedRun::RunOnce {
            starting_deadline_secs,
        } => (now - fire_at).num_seconds() <= i64::try_from(starting_deadline_secs).unwrap_or(0),
    };
    let running = fire.unfinished.last().copied();
    let (outcome, event, cancelled) = match (fire.spec.overlap, running) {
        _ if !in_time => (Outcome::SkippedMissed, skipped(SkipReason::Missed), vec![]),
        (Overlap::Forbid, Some(running)) => (
            Outcome::SkippedOverlap,
            skipped(SkipReason::Overlap { running }),
            vec![],
        ),
        (Overlap::Replace, Some(_)) => {
            let cancelled = fire.unfinished.iter().copied().collect();
            (Outcome::Replaced, scheduled(fire), cancelled)
        }
        _ => (Outcome::Scheduled, scheduled(fire), vec![]),
    };
    let envelope = Envelope::new(fire.tenant.clone(), now, Event::Task { task, event });
    let reason = format!(
        "replaced by the run of {}",
        fire_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    let cancels = cancelled
        .into_iter()
        .map(|old: TaskId| {
            let event = TaskEvent::Cancelled {
                reason: reason.clone(),
            };
            let mut cancel =
                Envelope::new(fire.tenant.clone(), now, Event::Task { task: old, event });
            cancel.correlation = envelope.correlation;
            Cancel {
                task: old,
                msg_id: format!("{msg_id}:cancel:{old}"),
                envelope: cancel,
            }
        })
        .collect();
    Decision {
        tenant: fire.tenant.clone(),
        policy,
        agent,
        fire_at,
        outcome,
        task,
        msg_id,
        envelope,
        cancels,
    }
}

fn scheduled(fire: &Fire<'_>) -> TaskEvent {
    TaskEvent::Scheduled {
        policy: fire.policy,
        agent: fire.agent,
        fire_at: fire.fire_at,
        run_at: fire.fire_at + jitter_for(fire.policy, fire.agent, fire.spec.jitter_secs),
        spec: Box::new(fire.spec.clone()),
    }
}
