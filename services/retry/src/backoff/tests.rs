//! The classification table, the budget, the capped delays and the deterministic jitter.

use fleet_events::samples::{self, AGENT, POLICY};

use super::*;

fn budget(max_retries: u32) -> RetryBudget {
    RetryBudget {
        max_retries,
        ..RetryBudget::default()
    }
}

fn retry_delay(decision: RetryDecision) -> Duration {
    match decision {
        RetryDecision::Retry { delay } => delay,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn the_classification_table_is_as_documented() {
    let retried: Vec<_> = ErrorClass::ALL
        .into_iter()
        .filter(|c| retryable(*c))
        .collect();
    assert_eq!(
        retried,
        [
            ErrorClass::Network,
            ErrorClass::Resource,
            ErrorClass::Lock,
            ErrorClass::Timeout,
            ErrorClass::Lost,
        ]
    );
}

#[test]
fn given_a_class_never_retried_when_the_first_attempt_fails_then_the_task_gives_up_at_once() {
    for class in [
        ErrorClass::Permanent,
        ErrorClass::Auth,
        ErrorClass::MissingRepository,
        ErrorClass::Hook,
    ] {
        assert_eq!(
            decide(class, 1, &RetryBudget::default(), false, 0.5),
            RetryDecision::GiveUp(ExhaustedReason::NotRetryable(class)),
        );
    }
}

#[test]
fn given_a_budget_of_two_then_attempts_one_and_two_retry_and_three_gives_up() {
    let budget = budget(2);
    assert!(matches!(
        decide(ErrorClass::Network, 1, &budget, false, 0.5),
        RetryDecision::Retry { .. }
    ));
    assert!(matches!(
        decide(ErrorClass::Lock, 2, &budget, false, 0.5),
        RetryDecision::Retry { .. }
    ));
    assert_eq!(
        decide(ErrorClass::Network, 3, &budget, false, 0.5),
        RetryDecision::GiveUp(ExhaustedReason::BudgetSpent)
    );
    assert_eq!(
        decide(ErrorClass::Lost, 1, &self::budget(0), false, 0.5),
        RetryDecision::GiveUp(ExhaustedReason::BudgetSpent)
    );
}

#[test]
fn given_base_30s_and_cap_1h_then_delays_grow_and_are_capped() {
    let budget = RetryBudget {
        max_retries: 100,
        base_delay_secs: 30,
        max_delay_secs: 3600,
    };
    let near = |attempt, bound: u64| {
        let d = retry_delay(decide(ErrorClass::Network, attempt, &budget, false, 0.999));
        assert!(d <= Duration::from_secs(bound), "attempt {attempt}: {d:?}");
        assert!(
            d >= Duration::from_secs(bound).mul_f64(0.99),
            "attempt {attempt}: {d:?}"
        );
    };
    near(1, 30);
    near(2, 60);
    near(3, 120);
    near(7, 1920);
    near(8, 3600);
    near(9, 3600);
    near(100, 3600);
    assert_eq!(ceiling(u32::MAX, &budget), Duration::from_secs(3600));
    assert_eq!(delay(1, &budget, 0.5), Duration::from_secs(15));
}

#[test]
fn delays_are_never_below_one_second_and_never_above_the_bound() {
    let budget = RetryBudget::default();
    for jitter in [0.0, 1e-9, f64::NAN, -3.0] {
        assert_eq!(delay(1, &budget, jitter), MIN_DELAY, "jitter {jitter}");
    }
    assert_eq!(delay(1, &budget, 7.0), Duration::from_secs(30));
    let huge = RetryBudget {
        max_retries: u32::MAX,
        base_delay_secs: u64::MAX,
        max_delay_secs: u64::MAX,
    };
    // No overflow panic: the delay is simply very long.
    let d = delay(u32::MAX, &huge, 0.999);
    assert!(d > Duration::from_secs(1000 * 365 * 86_400), "{d:?}");
}

#[test]
fn jitter_is_deterministic_in_range_and_differs_per_attempt() {
    let task = samples::TASK;
    let values: Vec<f64> = (1..=6).map(|a| jitter_for(task, a)).collect();
    for (i, v) in values.iter().enumerate() {
        assert!((0.0..1.0).contains(v), "{v}");
        assert_eq!(*v, jitter_for(task, i as u32 + 1));
        assert!(values[..i].iter().all(|w| w != v), "repeated: {values:?}");
    }
    let other = TaskId::for_fire(POLICY, AGENT, samples::at(60));
    assert_ne!(jitter_for(task, 1), jitter_for(other, 1));
}

#[test]
fn jitter_spreads_over_the_unit_interval() {
    let mut buckets = [0u32; 10];
    for secs in 0..2000 {
        let task = TaskId::for_fire(POLICY, AGENT, samples::at(secs * 60));
        buckets[(jitter_for(task, 1) * 10.0) as usize] += 1;
    }
    assert!(
        buckets.iter().all(|n| (120..=280).contains(n)),
        "{buckets:?}"
    );
}

#[test]
fn a_hook_failure_is_retried_only_when_the_policy_says_so() {
    let budget = budget(2);
    assert_eq!(
        decide(ErrorClass::Hook, 1, &budget, false, 0.5),
        RetryDecision::GiveUp(ExhaustedReason::NotRetryable(ErrorClass::Hook))
    );
    assert!(matches!(
        decide(ErrorClass::Hook, 1, &budget, true, 0.5),
        RetryDecision::Retry { .. }
    ));
    assert_eq!(
        decide(ErrorClass::Hook, 3, &budget, true, 0.5),
        RetryDecision::GiveUp(ExhaustedReason::BudgetSpent)
    );
    assert!(
        !retryable_under(ErrorClass::Auth, true),
        "retryOnFailure concerns hooks alone"
    );
}
