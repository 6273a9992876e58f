//! Snapshots: the enforcer read back from a snapshot of any prefix of a log, with the rest
//! folded after it, is byte for byte the enforcer of a full replay, and decides the same.

use fleet_runtime::snapshot::Snapshot;

use super::*;

fn bytes(enforcer: &Enforcer) -> Vec<u8> {
    postcard::to_allocvec(&enforcer.image()).expect("encodes")
}

fn replay(log: &[Stored]) -> Enforcer {
    let mut fresh = Enforcer::new(CircuitConfig::default());
    for stored in log {
        fresh.apply(stored);
    }
    fresh
}

/// A log of retries: tasks failing with every kind of class, retries scheduled and come
/// due, budgets spent, five network failures opening the repository's circuit, successes,
/// and failures whose decision never reached the log.
fn retries() -> Vec<Stored> {
    let mut g = Given::new();
    let classes = [
        ErrorClass::Network,
        ErrorClass::Lock,
        ErrorClass::Network,
        ErrorClass::Auth,
        ErrorClass::Network,
        ErrorClass::Timeout,
        ErrorClass::Network,
        ErrorClass::Network,
    ];
    let mut tasks = Vec::new();
    for (n, class) in classes.iter().enumerate() {
        let secs = 10 * n as i64;
        let agent = AgentId::generate();
        let task = g.scheduled(agent, secs, with_budget(1 + (n % 3) as u32));
        g.running(task, agent, 1, at(secs + 1));
        let decided = g.event(task, failed(1, *class), at(secs + 2));
        if n != 7 {
            g.commit(&decided, at(secs + 2));
        }
        tasks.push((task, agent));
    }
    // Retries come due; some run again and fail or succeed.
    for step in 0..3 {
        let now = at(4000 + step * 4000);
        let due = g.enforcer.due(now);
        g.commit(&due, now);
        for (n, (task, agent)) in tasks.iter().enumerate() {
            let Some(t) = g.enforcer.task(*task) else {
                continue;
            };
            if t.status != TaskStatus::RetryDue {
                continue;
            }
            let attempt = t.attempt + 1;
            g.running(*task, *agent, attempt, now);
            let outcome = match (n + step as usize) % 2 {
                0 => TaskEvent::Succeeded {
                    attempt,
                    summary: fleet_events::event::RunSummary {
                        kind: fleet_events::policy::TaskKind::Backup,
                        duration_ms: 10,
                        detail: fleet_events::event::RunDetail::Check,
                    },
                },
                _ => failed(attempt, ErrorClass::Network),
            };
            let decided = g.event(*task, outcome, now);
            g.commit(&decided, now);
        }
    }
    // One more fails at the end: its retry is pending when the log ends.
    let agent = AgentId::generate();
    let task = g.scheduled(agent, 15_000, with_budget(5));
    g.running(task, agent, 1, at(15_001));
    let decided = g.event(task, failed(1, ErrorClass::Lock), at(15_002));
    g.commit(&decided, at(15_002));
    g.log.events
}

#[test]
fn a_snapshot_of_any_prefix_plus_the_tail_equals_a_full_replay_byte_for_byte() {
    let log = retries();
    assert!(log.len() > 40, "a log worth the name: {}", log.len());
    let expected = bytes(&replay(&log));
    for cut in 0..=log.len() {
        let written = postcard::to_allocvec(&replay(&log[..cut]).image()).expect("encodes");
        let read = postcard::from_bytes(&written).expect("decodes");
        let empty = Enforcer::new(CircuitConfig::default());
        let mut resumed = Enforcer::restore(empty, read).expect("usable");
        for stored in &log[cut..] {
            resumed.apply(stored);
        }
        assert!(
            bytes(&resumed) == expected,
            "cut at event {cut} of {}",
            log.len()
        );
    }
}

#[test]
fn an_enforcer_started_from_a_snapshot_decides_what_a_full_replay_decides() {
    let log = retries();
    for cut in [log.len() / 3, log.len() / 2, log.len()] {
        let mut full = replay(&log);
        let empty = Enforcer::new(CircuitConfig::default());
        let mut resumed = Enforcer::restore(empty, replay(&log[..cut]).image()).expect("usable");
        for stored in &log[cut..] {
            resumed.apply(stored);
        }
        let now = at(20_000);
        let (a, b) = (full.pending_decisions(now), resumed.pending_decisions(now));
        assert!(
            !a.is_empty(),
            "the failure whose decision was lost is owed one"
        );
        assert_eq!(
            a.iter().map(content).collect::<Vec<_>>(),
            b.iter().map(content).collect::<Vec<_>>()
        );
        assert!(!pending(&full).is_empty(), "a retry is pending");
        assert_eq!(pending(&full), pending(&resumed));
        // (`next_wake` may differ: a replay keeps stale timer entries, which wake for
        // nothing; what is decided when is the same.)
        let later = at(90_000);
        let (a, b) = (full.due(later), resumed.due(later));
        assert!(!a.is_empty(), "the pending retry comes due");
        assert_eq!(
            a.iter().map(content).collect::<Vec<_>>(),
            b.iter().map(content).collect::<Vec<_>>()
        );
    }
}
