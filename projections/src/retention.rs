//! Read-model retention, pure: how long a model keeps finished work in its per-task
//! trees, the day before which it has been retired, and the keys of the retirement queue.
//!
//! The clock is the log's own: an event recorded at `at` moves the horizon to the start
//! of its UTC day minus [`Retention::days`], and everything a model queued as finished
//! before the horizon is retired before that event is applied. The horizon is therefore a
//! function of the log prefix alone, and a rebuild retires at the same events as the
//! incremental run did (see `runtime/retire.rs`).

use chrono::{DateTime, Days, NaiveTime, Utc};

/// Days of finished work a model keeps by default.
pub const DEFAULT_DAYS: u32 = 90;

/// The most days a retention may keep (about 100 years): beyond, dates overflow.
pub const MAX_DAYS: u32 = 36_500;

/// How long a model keeps finished work, and which of its trees lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days of finished work kept (at least 1).
    pub days: u32,
    /// The index, in [`crate::Projection::TREES`], of the model's retirement queue: keys
    /// that start with [`time_bytes`] of when the work finished.
    pub queue: usize,
}

impl Retention {
    /// The horizon an event recorded at `at` moves the model to: everything finished
    /// before it is retired. The start of `at`'s UTC day, `days` days back, in
    /// microseconds since the epoch.
    pub fn horizon(&self, at: DateTime<Utc>) -> i64 {
        let day = at.date_naive();
        let start = day
            .checked_sub_days(Days::new(u64::from(self.days.max(1))))
            .unwrap_or(chrono::NaiveDate::MIN);
        start.and_time(NaiveTime::MIN).and_utc().timestamp_micros()
    }
}

/// Microseconds since the epoch, big-endian, offset by 2^63 so that keys sort by time
/// before 1970 too: how every retirement queue key starts.
pub fn time_bytes(at: DateTime<Utc>) -> [u8; 8] {
    micros_bytes(at.timestamp_micros())
}

/// [`time_bytes`] of a time in microseconds.
pub fn micros_bytes(micros: i64) -> [u8; 8] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

/// What the runtime stores (in `meta`, key `<name>\0retired`) of a model's retention:
/// the horizon it has retired up to, and the days it was kept with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retired {
    /// Everything queued as finished before this (microseconds) is retired.
    pub before: i64,
    /// [`Retention::days`] when it was.
    pub days: u32,
}

impl Retired {
    const LEN: usize = 12;

    /// Horizon then days, both big-endian.
    pub fn encode(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.before.to_be_bytes());
        out[8..].copy_from_slice(&self.days.to_be_bytes());
        out
    }

    /// `None` if `bytes` is not a stored retention.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::LEN] = bytes.try_into().ok()?;
        let (before, days) = bytes.split_at(8);
        Some(Self {
            before: i64::from_be_bytes(before.try_into().ok()?),
            days: u32::from_be_bytes(days.try_into().ok()?),
        })
    }
}

/// The `meta` key of a model's [`Retired`].
pub(crate) fn retired_key(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.extend_from_slice(b"\0retired");
    key
}

/// The UTC day of `at` as days since 1970-01-01 (negative before), big-endian offset by
/// 2^31 so that keys sort by day: how the per-day aggregates' keys end.
pub fn day_bytes(at: DateTime<Utc>) -> [u8; 4] {
    let days = at.timestamp().div_euclid(86_400) as i32;
    ((days as u32) ^ (1 << 31)).to_be_bytes()
}

/// The UTC day of [`day_bytes`], if it is one.
pub fn day_from_bytes(bytes: &[u8]) -> Option<chrono::NaiveDate> {
    let raw = u32::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 31);
    let days = i64::from(raw as i32);
    DateTime::from_timestamp(days.checked_mul(86_400)?, 0).map(|t| t.date_naive())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_horizon_is_the_start_of_the_events_day_minus_the_days_kept() {
        let retention = Retention { days: 90, queue: 0 };
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 23, 59, 59).unwrap();
        let expected = Utc.with_ymd_and_hms(2026, 9, 5, 0, 0, 0).unwrap();
        assert_eq!(retention.horizon(at), expected.timestamp_micros());
        let next_day = Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap();
        assert_eq!(
            retention.horizon(next_day) - retention.horizon(at),
            86_400_000_000
        );
    }

    #[test]
    fn keys_sort_by_time_and_day_before_1970_too() {
        let before = Utc.with_ymd_and_hms(1969, 12, 31, 12, 0, 0).unwrap();
        let after = Utc.with_ymd_and_hms(1970, 1, 1, 12, 0, 0).unwrap();
        assert!(time_bytes(before) < time_bytes(after));
        assert!(day_bytes(before) < day_bytes(after));
        assert_eq!(
            day_from_bytes(&day_bytes(before)),
            Some(before.date_naive())
        );
        assert_eq!(day_from_bytes(&day_bytes(after)), Some(after.date_naive()));
        assert_eq!(day_from_bytes(&[1, 2]), None);
    }

    #[test]
    fn the_stored_retention_round_trips_and_refuses_garbage() {
        let retired = Retired {
            before: -5,
            days: 90,
        };
        assert_eq!(Retired::decode(&retired.encode()), Some(retired));
        assert_eq!(Retired::decode(&[0; 11]), None);
    }
}
