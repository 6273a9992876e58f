//! Opening at the threshold, holding, one probe, closing and re-opening, and rebuilding
//! from the log.

use fleet_events::samples::{self, AGENT, POLICY, at};

use super::*;

const NETWORK: Outcome = Outcome::Failure(ErrorClass::Network);

fn task(n: i64) -> TaskId {
    TaskId::for_fire(POLICY, AGENT, samples::at(n * 60))
}

fn breaker() -> Breaker {
    Breaker::new(CircuitConfig::default())
}

/// A breaker opened at `at(10)` by five network failures: open until `at(70)`.
fn opened() -> Breaker {
    let mut b = breaker();
    for s in 6..10 {
        assert_eq!(b.on_outcome(NETWORK, at(s)), None);
    }
    assert!(b.on_outcome(NETWORK, at(10)).is_some());
    b
}

#[test]
fn given_four_network_failures_when_the_fifth_arrives_then_the_circuit_opens_for_the_cool_down() {
    // given: failures reported by different agents' tasks: the breaker does not care which
    let mut b = breaker();
    for s in 1..=4 {
        assert_eq!(b.on_outcome(NETWORK, at(s)), None, "failure {s}");
    }
    assert_eq!(b.state(at(4)), CircuitState::Closed);
    // when
    let event = b.on_outcome(NETWORK, at(5));
    // then
    assert_eq!(
        event,
        Some(RepoEvent::CircuitOpened {
            until: at(65),
            failures: 5
        })
    );
    assert_eq!(b.state(at(5)), CircuitState::Open { until: at(65) });
}

#[test]
fn a_success_resets_the_count_and_other_failures_neither_count_nor_reset() {
    let mut b = breaker();
    for s in 1..=4 {
        b.on_outcome(NETWORK, at(s));
    }
    for class in ErrorClass::ALL {
        if class != ErrorClass::Network {
            assert_eq!(b.on_outcome(Outcome::Failure(class), at(5)), None);
        }
    }
    assert_eq!(b.failures(), 4);
    assert_eq!(b.on_outcome(Outcome::Success, at(6)), None);
    assert_eq!(b.failures(), 0);
    for s in 7..=10 {
        assert_eq!(b.on_outcome(NETWORK, at(s)), None);
    }
    assert_eq!(b.state(at(10)), CircuitState::Closed);
}

#[test]
fn given_an_open_circuit_then_it_holds_every_task_until_the_cool_down_has_passed() {
    let mut b = opened();
    assert!(!b.admits(task(1), at(11)));
    assert!(!b.admits(task(2), at(69)));
    // A late network failure from a task dispatched before the circuit opened changes
    // nothing while the cool-down runs.
    assert_eq!(b.on_outcome(NETWORK, at(30)), None);
    assert_eq!(b.state(at(30)), CircuitState::Open { until: at(70) });
}

#[test]
fn after_the_cool_down_exactly_one_probe_is_admitted() {
    let mut b = opened();
    assert_eq!(b.state(at(70)), CircuitState::HalfOpen { probe: None });
    assert!(b.admits(task(1), at(70)));
    assert!(!b.admits(task(2), at(71)));
    assert!(b.admits(task(1), at(72)), "the probe asking again");
    assert!(!b.admits(task(3), at(500)));
    assert_eq!(
        b.state(at(72)),
        CircuitState::HalfOpen {
            probe: Some(task(1))
        }
    );
}

#[test]
fn given_a_probe_when_it_succeeds_then_the_circuit_closes() {
    let mut b = opened();
    assert!(b.admits(task(1), at(80)));
    assert_eq!(
        b.on_outcome(Outcome::Success, at(90)),
        Some(RepoEvent::CircuitClosed)
    );
    assert_eq!(b.state(at(90)), CircuitState::Closed);
    assert!(b.admits(task(2), at(91)));
    assert!(b.admits(task(3), at(91)));
}

#[test]
fn given_a_probe_when_it_fails_on_the_network_then_the_circuit_opens_again() {
    let mut b = opened();
    assert!(b.admits(task(1), at(80)));
    assert_eq!(
        b.on_outcome(NETWORK, at(90)),
        Some(RepoEvent::CircuitOpened {
            until: at(150),
            failures: 6
        })
    );
    assert!(!b.admits(task(1), at(100)));
    assert!(
        b.admits(task(2), at(150)),
        "a new probe after the new cool-down"
    );
}

#[test]
fn a_released_probe_lets_another_task_probe() {
    let mut b = opened();
    assert!(b.admits(task(1), at(80)));
    b.release(task(2));
    assert!(!b.admits(task(2), at(81)));
    b.release(task(1));
    assert!(b.admits(task(2), at(82)));
}

#[test]
fn rebuilt_from_the_log_the_breaker_equals_the_live_one() {
    // given: a live breaker and the log it wrote (outcomes, then its own events)
    let config = CircuitConfig {
        threshold: 3,
        cool_down: Duration::from_secs(10),
    };
    let outcomes = [
        (NETWORK, 1),
        (Outcome::Failure(ErrorClass::Lock), 2),
        (NETWORK, 3),
        (NETWORK, 4),
        (NETWORK, 8),
        (NETWORK, 20),
        (Outcome::Success, 40),
        (NETWORK, 41),
    ];
    let mut live = Breaker::new(config);
    let mut log = Vec::new();
    for (outcome, s) in outcomes {
        log.push((Some(outcome), at(s), None));
        if let Some(event) = live.on_outcome(outcome, at(s)) {
            log.push((None, at(s), Some(event)));
        }
    }
    // when: a fresh breaker folds the log
    let mut rebuilt = Breaker::new(config);
    for (outcome, when, event) in &log {
        if let Some(outcome) = outcome {
            rebuilt.record(*outcome, *when);
        }
        if let Some(event) = event {
            assert_eq!(
                rebuilt.decide(*when).as_ref(),
                Some(event),
                "owed at {when}"
            );
            rebuilt.apply(event);
        }
    }
    // then
    assert_eq!(rebuilt, live);
    assert_eq!(log.iter().filter(|e| e.2.is_some()).count(), 3);
    assert_eq!(live.state(at(41)), CircuitState::Closed);
    assert_eq!(live.failures(), 1);
}

#[test]
fn an_unlogged_decision_is_still_owed_after_a_rebuild() {
    let mut b = breaker();
    for s in 1..=5 {
        b.record(NETWORK, at(s));
    }
    assert!(matches!(
        b.decide(at(100)),
        Some(RepoEvent::CircuitOpened { failures: 5, .. })
    ));
    assert_eq!(b.state(at(100)), CircuitState::Closed);
}
