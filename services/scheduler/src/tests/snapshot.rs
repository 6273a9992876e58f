//! Snapshots: the state read back from a snapshot of any prefix of a log, with the rest of
//! the log folded after it, is byte for byte the state of a full replay, and decides the
//! same fires from then on.

use fleet_events::policy::Overlap;
use fleet_runtime::snapshot::Snapshot;

use super::*;

fn restore(image: <Scheduler as Snapshot>::Image) -> Result<Scheduler, String> {
    Scheduler::restore(Scheduler::new(), image)
}

fn bytes(s: &Scheduler) -> Vec<u8> {
    postcard::to_allocvec(&s.image()).expect("encodes")
}

/// A log of eight hours written by a running scheduler: four policies on five agents,
/// tasks finishing or left running, a pause and resume, an update, an unassignment, a
/// decommissioned agent and a deleted policy.
fn eight_hours() -> Vec<Envelope> {
    let agents: Vec<AgentId> = (1..=5).map(agent).collect();
    let mut log = Vec::new();
    let specs = [
        hourly(),
        PolicySpec {
            overlap: Overlap::Forbid,
            ..hourly()
        },
        PolicySpec {
            overlap: Overlap::Replace,
            jitter_secs: 300,
            ..hourly()
        },
        PolicySpec {
            schedule: cron("30 */2 * * *"),
            missed: MissedRun::Skip,
            ..hourly()
        },
    ];
    for (n, spec) in specs.into_iter().enumerate() {
        log.push(created(policy(n as u128), spec, samples::at(0)));
        for a in &agents[n % 2..] {
            log.push(assigned(policy(n as u128), *a, samples::at(0)));
        }
    }
    let mut writer = given(&log);
    writer.start(samples::at(1));
    for h in 0..8 {
        let decisions = writer.due(hour(h) + mins(31));
        record(&mut writer, &mut log, &decisions);
        // Every other task ends; the rest stay unfinished.
        for d in decisions.iter().step_by(2) {
            let end = on_task(
                d.task,
                hour(h) + mins(40),
                TaskEvent::Cancelled {
                    reason: "ended".into(),
                },
            );
            writer.apply(&end);
            log.push(end);
        }
        let at = hour(h) + mins(45);
        let change = match h {
            1 => Some(on_policy(policy(1), at, PolicyEvent::Paused)),
            3 => Some(on_policy(policy(1), at, PolicyEvent::Resumed)),
            4 => Some(on_policy(
                policy(2),
                at,
                PolicyEvent::Updated {
                    spec: Box::new(PolicySpec {
                        schedule: cron("15 * * * *"),
                        ..hourly()
                    }),
                },
            )),
            5 => Some(on_policy(
                policy(0),
                at,
                PolicyEvent::UnassignedFromAgent { agent: agent(2) },
            )),
            6 => Some(Envelope::new(
                samples::tenant(),
                at,
                Event::Agent {
                    agent: agent(3),
                    event: AgentEvent::Decommissioned,
                },
            )),
            7 => Some(on_policy(policy(3), at, PolicyEvent::Deleted)),
            _ => None,
        };
        if let Some(change) = change {
            writer.apply(&change);
            log.push(change);
        }
    }
    log
}

#[test]
fn a_snapshot_of_any_prefix_plus_the_tail_equals_a_full_replay_byte_for_byte() {
    let log = eight_hours();
    assert!(log.len() > 100, "a log worth the name: {}", log.len());
    let full = given(&log);
    let expected = bytes(&full);
    for cut in 0..=log.len() {
        let prefix = given(&log[..cut]);
        let image = prefix.image();
        // Through the bytes a file would hold.
        let written = postcard::to_allocvec(&image).expect("encodes");
        let read = postcard::from_bytes(&written).expect("decodes");
        let mut resumed = restore(read).expect("usable");
        for env in &log[cut..] {
            resumed.apply(env);
        }
        assert!(
            bytes(&resumed) == expected,
            "cut at event {cut} of {}",
            log.len()
        );
    }
}

#[test]
fn a_scheduler_started_from_a_snapshot_decides_what_a_full_replay_decides() {
    let log = eight_hours();
    let cut = log.len() * 2 / 3;
    let mut full = given(&log);
    let mut resumed = restore(given(&log[..cut]).image()).expect("usable");
    for env in &log[cut..] {
        resumed.apply(env);
    }
    let now = hour(8) + mins(50);
    let (a, b) = (full.start(now), resumed.start(now));
    assert!(!a.is_empty(), "missed runs are made up after the log ends");
    assert_eq!(
        a.iter().map(key).collect::<Vec<_>>(),
        b.iter().map(key).collect::<Vec<_>>()
    );
    for h in 9..12 {
        let (a, b) = (
            full.due(hour(h) + mins(31)),
            resumed.due(hour(h) + mins(31)),
        );
        assert!(!a.is_empty());
        assert_eq!(
            a.iter().map(key).collect::<Vec<_>>(),
            b.iter().map(key).collect::<Vec<_>>(),
            "hour {h}"
        );
    }
}

#[test]
fn what_this_instance_decided_is_not_in_its_snapshot() {
    let log = policy_on(hourly(), &[agent(1)]);
    let mut running = given(&log);
    running.start(samples::at(1));
    let decided = running.due(hour(0));
    assert_eq!(decided.len(), 1);
    // The decision's append never made it: a replay owes the fire, and so does a snapshot.
    assert!(bytes(&running) == bytes(&given(&log)));
    let mut resumed = restore(running.image()).expect("usable");
    assert_eq!(resumed.start(hour(0) + mins(1)).len(), 1);
}
