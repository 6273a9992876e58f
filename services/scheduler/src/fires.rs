//! Fire-time arithmetic: the latest fire in a window, and next fires memoized per call.
//!
//! Many pairs of one policy share their floor (assigned together, fired together), so one
//! `start` or `due` call computes each (policy, instant) question once.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::ids::PolicyId;
use fleet_events::schedule::Compiled;

type Instant = DateTime<Utc>;

/// Answers about fire times, memoized for the duration of one call (the policies' schedules
/// do not change meanwhile).
#[derive(Debug, Default)]
pub(super) struct Fires {
    next: HashMap<(PolicyId, Instant), Option<Instant>>,
    latest: HashMap<(PolicyId, Instant, Instant), Option<Instant>>,
}

impl Fires {
    /// The first fire of `policy` strictly after `after`.
    pub fn next_after(
        &mut self,
        policy: PolicyId,
        compiled: &Compiled,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        *self
            .next
            .entry((policy, after))
            .or_insert_with(|| compiled.next_after(after))
    }

    /// The latest fire of `policy` in `(after, until]`.
    pub fn latest(
        &mut self,
        policy: PolicyId,
        compiled: &Compiled,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        *self
            .latest
            .entry((policy, after, until))
            .or_insert_with(|| latest_in(compiled, after, until))
    }
}

/// The latest fire in `(after, until]`, without walking every fire since `after` (a
/// per-minute schedule after a week of downtime would be ten thousand steps).
pub(super) fn latest_in(
    compiled: &Compiled,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if until <= after {
        return None;
    }
    if let Compiled::Interval(every) = compiled {
        let every = i64::try_from((*every).max(1)).unwrap_or(i64::MAX);
        let last = until.timestamp().div_euclid(every) * every;
        return DateTime::from_timestamp(last, 0).filter(|t| *t > after);
    }
    // Look back over windows doubling in length until one holds a fire; the fires in the
    // window then all lie in its older half, so the walk forward is short.
    let mut window = TimeDelta::minutes(1);
    loop {
        let from = until
            .checked_sub_signed(window)
            .map_or(after, |t| t.max(after));
        if let Some(first) = compiled.next_after(from).filter(|t| *t <= until) {
            let last = compiled
                .fires_after(first)
                .take_while(|t| *t <= until)
                .last();
            return Some(last.unwrap_or(first));
        }
        if from <= after {
            return None;
        }
        window = window.checked_mul(2).unwrap_or(TimeDelta::MAX);
    }
}
