//! Snapshots: the dispatcher read back from a snapshot of any prefix of a log, with the
//! rest folded after it, is byte for byte the dispatcher of a full replay, and plans the
//! same dispatches and gives the same reasons to wait.

use fleet_events::event::{ErrorClass, RepoEvent, TaskError};
use fleet_events::ids::RepoId;
use fleet_runtime::snapshot::Snapshot;

use super::*;
use crate::snapshot::{Folded, image};
use crate::{Circuits, WaitReason};

fn bytes(fleet: &Fleet, circuits: &Circuits) -> Vec<u8> {
    postcard::to_allocvec(&image(fleet, circuits)).expect("encodes")
}

fn replay(log: &[Stored]) -> Folded {
    let mut folded = empty();
    for stored in log {
        folded.fleet.apply_stored(stored);
        folded.circuits.apply(&stored.envelope);
    }
    folded
}

fn empty() -> Folded {
    Folded {
        fleet: Fleet::new(DispatchConfig::default()),
        circuits: Circuits::new(),
    }
}

/// A log of a busy hour: four agents with different limits, tasks dispatched, running,
/// finished, failed and backing off, one waiting for later, a circuit opened on one
/// repository, an agent gone offline and one decommissioned.
fn busy_hour() -> Vec<Stored> {
    let mut w = World::new();
    w.register(agent(1), limits(2, Some(1)))
        .register(agent(2), limits(4, None))
        .register(agent(3), limits(1, None))
        .register(agent(4), limits(3, None));
    let other_repo = spec(TaskKind::Check, 3, "/srv/restic/b");
    let mut tasks = Vec::new();
    for n in 0..24 {
        let on = agent(1 + n % 4);
        let spec = if n % 5 == 0 {
            other_repo.clone()
        } else {
            backup((n % 7) as u8)
        };
        tasks.push(w.schedule_at(on, 10 + n as i64, 10 + 2 * n as i64, spec));
    }
    let later = w.schedule_at(agent(2), 20, 3000, backup(9));
    tasks.push(later);
    for step in 0..6 {
        let now = 100 + step * 100;
        let plan = w.plan(now);
        w.confirm(&plan);
        for (i, d) in plan.iter().enumerate() {
            match i % 3 {
                0 => {
                    w.succeed(now + 5, d.task, 1);
                }
                1 => {
                    let error = TaskError::new(ErrorClass::Network, "reset", Some(1));
                    w.on_task(now + 6, d.task, TaskEvent::Started { attempt: 1 })
                        .on_task(now + 7, d.task, TaskEvent::Failed { attempt: 1, error });
                    let due_at = at(now + 400);
                    let backoff = TaskEvent::RetryScheduled {
                        attempt: 1,
                        due_at,
                        delay_ms: 393_000,
                    };
                    w.on_task(now + 8, d.task, backoff);
                }
                _ => {
                    w.on_task(now + 6, d.task, TaskEvent::Started { attempt: 1 });
                }
            }
        }
        if step == 2 {
            let repo = RepoId::for_url("/srv/restic/b");
            let opened = RepoEvent::CircuitOpened {
                until: at(now + 900),
                failures: 5,
            };
            w.event(
                now + 9,
                Event::Repo {
                    repo,
                    event: opened,
                },
            );
            w.on_agent(
                now + 10,
                agent(3),
                AgentEvent::WentOffline { last_seen: at(now) },
            );
        }
        if step == 4 {
            w.on_agent(now + 10, agent(4), AgentEvent::Decommissioned);
        }
    }
    w.log
}

#[test]
fn a_snapshot_of_any_prefix_plus_the_tail_equals_a_full_replay_byte_for_byte() {
    let log = busy_hour();
    assert!(log.len() > 60, "a log worth the name: {}", log.len());
    let full = replay(&log);
    let expected = bytes(&full.fleet, &full.circuits);
    for cut in 0..=log.len() {
        let prefix = replay(&log[..cut]);
        let written = postcard::to_allocvec(&prefix.image()).expect("encodes");
        let read = postcard::from_bytes(&written).expect("decodes");
        let mut resumed = Folded::restore(empty(), read).expect("usable");
        for stored in &log[cut..] {
            resumed.fleet.apply_stored(stored);
            resumed.circuits.apply(&stored.envelope);
        }
        let got = bytes(&resumed.fleet, &resumed.circuits);
        assert!(got == expected, "cut at event {cut} of {}", log.len());
    }
}

#[test]
fn a_dispatcher_started_from_a_snapshot_plans_what_a_full_replay_plans() {
    let log = busy_hour();
    let cut = log.len() / 2;
    let mut full = replay(&log);
    let mut resumed = Folded::restore(empty(), replay(&log[..cut]).image()).expect("usable");
    for stored in &log[cut..] {
        resumed.fleet.apply_stored(stored);
        resumed.circuits.apply(&stored.envelope);
    }
    let ids: Vec<TaskId> = log
        .iter()
        .filter_map(|s| match &s.envelope.event {
            Event::Task { task, .. } => Some(*task),
            _ => None,
        })
        .collect();
    for now in [700, 1000, 3100] {
        let reasons = |f: &Folded| -> Vec<Option<WaitReason>> {
            ids.iter()
                .map(|t| f.fleet.why_waiting(*t, at(now)))
                .collect()
        };
        assert_eq!(
            reasons(&full),
            reasons(&resumed),
            "reasons to wait at {now}"
        );
        let a = full.fleet.plan(at(now), &mut full.circuits);
        let b = resumed.fleet.plan(at(now), &mut resumed.circuits);
        let key = |p: &[Dispatch]| -> Vec<(TaskId, u32)> {
            p.iter().map(|d| (d.task, d.attempt)).collect()
        };
        assert_eq!(key(&a), key(&b), "plan at {now}");
        assert_eq!(full.fleet.stats(at(now)), resumed.fleet.stats(at(now)));
    }
}
