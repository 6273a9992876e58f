//! Whether and when a failed attempt is retried: the classification table, the budget and
//! capped exponential backoff with full jitter.
//!
//! # Classification
//!
//! | class                | retried | why |
//! |----------------------|---------|-----|
//! | `Network`            | yes     | the repository or NATS was unreachable; links come back (also counts toward the repository's circuit breaker) |
//! | `Resource`           | yes     | disk, memory or file handles ran out on the agent; they are often freed |
//! | `Lock`               | yes     | another restic holds the repository lock; it ends |
//! | `Timeout`            | yes     | the run passed its timeout; the next may be faster (less new data, a quieter link) |
//! | `Lost`               | yes     | the agent holding the attempt went away; the run itself may be fine |
//! | `Auth`               | no      | wrong credentials fail the same way until an operator fixes them |
//! | `Permanent`          | no      | bad configuration or unreadable paths fail the same way again |
//! | `MissingRepository`  | no      | nothing to back up into until someone creates it |
//! | `Hook`               | no, unless the policy's `hooks.retryOnFailure` | a before-hook failed, timed out or is not defined on the agent; only its policy knows whether trying again helps |
//!
//! A class that is not retried ends the task at once as
//! [`ExhaustedReason::NotRetryable`]. A retryable one is retried while the budget lasts:
//! [`RetryBudget::max_retries`] retries after the first attempt, so attempt `n` (1-based)
//! may be followed by a retry iff `n <= max_retries`; after that the task ends as
//! [`ExhaustedReason::BudgetSpent`].
//!
//! The delay after attempt `n` is *full jitter*: `jitter × min(cap, base · 2^(n−1))`, with
//! `jitter` in `[0, 1)`, never below one second. The jitter is derived from the task id and
//! the attempt ([`jitter_for`]), so every enforcer instance deciding on the same failure
//! decides the same delay.

use std::time::Duration;

use fleet_events::event::{ErrorClass, ExhaustedReason};
use fleet_events::ids::TaskId;
use fleet_events::policy::RetryBudget;

/// The shortest delay before a retry.
pub const MIN_DELAY: Duration = Duration::from_secs(1);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again once `delay` has passed.
    Retry { delay: Duration },
    /// End the task as failed permanently.
    GiveUp(ExhaustedReason),
}

/// True if a failure of this class is worth retrying by default (see the table in the
/// module docs): never a hook's.
pub fn retryable(class: ErrorClass) -> bool {
    match class {
        ErrorClass::Network
        | ErrorClass::Resource
        | ErrorClass::Lock
        | ErrorClass::Timeout
        | ErrorClass::Lost => true,
        ErrorClass::Auth
        | ErrorClass::Permanent
        | ErrorClass::MissingRepository
        | ErrorClass::Hook => false,
    }
}

/// True if a failure of this class is retried under a policy whose hooks set
/// `retryOnFailure` to `retry_hooks`.
pub fn retryable_under(class: ErrorClass, retry_hooks: bool) -> bool {
    retryable(class) || (class == ErrorClass::Hook && retry_hooks)
}

/// The decision after attempt `failed_attempt` (1 for the first) failed with `class`, given
/// the policy's `budget`, its `hooks.retryOnFailure` (`retry_hooks`) and a `jitter` in
/// `[0, 1)` (see [`jitter_for`]).
pub fn decide(
    class: ErrorClass,
    failed_attempt: u32,
    budget: &RetryBudget,
    retry_hooks: bool,
    jitter: f64,
) -> RetryDecision {
    if !retryable_under(class, retry_hooks) {
        return RetryDecision::GiveUp(ExhaustedReason::NotRetryable(class));
    }
    if failed_attempt > budget.max_retries {
        return RetryDecision::GiveUp(ExhaustedReason::BudgetSpent);
    }
    RetryDecision::Retry {
        delay: delay(failed_attempt, budget, jitter),
    }
}

/// The upper bound of the delay after attempt `attempt`: `min(cap, base · 2^(attempt−1))`,
/// without overflow for any attempt.
pub fn ceiling(attempt: u32, budget: &RetryBudget) -> Duration {
    let doublings = attempt.saturating_sub(1);
    let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
    let secs = budget
        .base_delay_secs
        .saturating_mul(factor)
        .min(budget.max_delay_secs);
    Duration::from_secs(secs)
}

/// The delay after attempt `attempt`: `jitter × ceiling`, in whole milliseconds, at least
/// [`MIN_DELAY`]. A jitter outside `[0, 1]` is clamped; a NaN counts as 0.
pub fn delay(attempt: u32, budget: &RetryBudget, jitter: f64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let ceiling = ceiling(attempt, budget);
    let millis = ceiling.as_millis() as f64 * jitter;
    // `as` saturates at u64::MAX; the ceiling bounds it anyway.
    let jittered = Duration::from_millis(millis as u64).min(ceiling);
    jittered.max(MIN_DELAY)
}

/// A number in `[0, 1)` that depends only on `task` and `attempt`: FNV-1a over the task's
/// UUID bytes and the attempt, finished with a 64-bit mixer. Stable across processes,
/// builds and platforms (unlike std's `RandomState`).
pub fn jitter_for(task: TaskId, attempt: u32) -> f64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let uuid = task.uuid();
    for byte in uuid.as_bytes().iter().chain(&attempt.to_le_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // MurmurHash3's finaliser: every input bit affects the top bits used below.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    // The top 53 bits fill an f64 mantissa exactly: the result is below 1.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
