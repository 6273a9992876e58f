//! When a policy fires: a cron expression in an IANA time zone, or a fixed interval.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::validation::Problems;

mod classic;

/// A policy's schedule as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Schedule {
    /// A cron expression: five fields (minute hour day-of-month month day-of-week) read as
    /// crontab(5) reads them (0 or 7 = Sunday; when both day fields are restricted, either
    /// matching fires), or the `cron` crate's six or seven with seconds first and years last
    /// (there 1 = Sunday); evaluated in `timezone` (IANA name such as `Europe/Berlin`), so
    /// daylight-saving changes are followed.
    #[serde(rename_all = "camelCase")]
    Cron { expr: String, timezone: String },
    /// Every `every_secs` seconds, aligned to the Unix epoch (every 6 h fires at 00, 06,
    /// 12 and 18 UTC).
    #[serde(rename_all = "camelCase")]
    Interval { every_secs: u64 },
}

/// Shortest time between two fires.
pub const MIN_PERIOD_SECS: u64 = 60;
/// Longest interval.
pub const MAX_INTERVAL_SECS: u64 = 366 * 24 * 3600;

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{expr:?} is not a cron expression: {reason}")]
    BadCron { expr: String, reason: String },
    #[error("{0:?} is not an IANA time zone (such as UTC or Europe/Berlin)")]
    BadTimeZone(String),
}

/// A schedule ready to compute fire times.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// Fires when any of the schedules fires (two for a classic expression whose day of
    /// month and day of week are both restricted, else one).
    Cron(Vec<cron::Schedule>, Tz),
    Interval(u64),
}

impl Schedule {
    /// Parses the expression and time zone.
    pub fn compile(&self) -> Result<Compiled, ScheduleError> {
        match self {
            Schedule::Cron { expr, timezone } => {
                let tz = Tz::from_str(timezone)
                    .map_err(|_| ScheduleError::BadTimeZone(timezone.clone()))?;
                let bad = |reason: String| ScheduleError::BadCron {
                    expr: expr.clone(),
                    reason,
                };
                let crate_exprs = if expr.split_whitespace().count() == 5 {
                    classic::translate(expr).map_err(|problems| bad(problems.join("; ")))?
                } else {
                    vec![expr.clone()]
                };
                let parsed = crate_exprs
                    .iter()
                    .map(|e| cron::Schedule::from_str(e).map_err(|e| bad(e.to_string())))
                    .collect::<Result<_, _>>()?;
                Ok(Compiled::Cron(parsed, tz))
            }
            Schedule::Interval { every_secs } => Ok(Compiled::Interval(*every_secs)),
        }
    }

    /// Records every problem with this schedule (and the policy's jitter, which must be
    /// shorter than the schedule's period).
    pub(crate) fn check(&self, p: &mut Problems, jitter_secs: u32) {
        match self {
            Schedule::Interval { every_secs } => {
                p.check(
                    (MIN_PERIOD_SECS..=MAX_INTERVAL_SECS).contains(every_secs),
                    "schedule.interval.everySecs",
                    || "must be between 60 seconds and 366 days".into(),
                );
                p.check(u64::from(jitter_secs) < *every_secs, "jitterSecs", || {
                    "must be shorter than the interval".into()
                });
            }
            Schedule::Cron { expr, timezone } => {
                if Tz::from_str(timezone).is_err() {
                    p.add(
                        "schedule.cron.timezone",
                        ScheduleError::BadTimeZone(timezone.clone()).to_string(),
                    );
                }
                let probe = Schedule::Cron {
                    expr: expr.clone(),
                    timezone: "UTC".into(),
                };
                match probe.compile() {
                    Err(e) => p.add("schedule.cron.expr", e.to_string()),
                    Ok(c) => check_cron_period(p, &c, jitter_secs),
                }
            }
        }
    }
}

/// Fires at least once a minute apart, and the jitter shorter than the shortest gap
/// between two fires (looked at over the next 64 fires), so a delayed run never passes
/// the next fire time.
fn check_cron_period(p: &mut Problems, compiled: &Compiled, jitter_secs: u32) {
    let fires: Vec<_> = compiled.fires_after(Utc::now()).take(64).collect();
    let shortest = fires.windows(2).map(|w| (w[1] - w[0]).num_seconds()).min();
    match (fires.is_empty(), shortest) {
        (true, _) => p.add("schedule.cron.expr", "never fires again"),
        (false, Some(gap)) if gap < MIN_PERIOD_SECS as i64 => {
            p.add("schedule.cron.expr", "fires more often than once a minute")
        }
        (false, Some(gap)) if i64::from(jitter_secs) >= gap => p.add(
            "jitterSecs",
            format!("must be shorter than the time between two fires ({gap} s)"),
        ),
        _ => {}
    }
}

impl Compiled {
    /// The fire times strictly after `after`, in order.
    pub fn fires_after(
        &self,
        after: DateTime<Utc>,
    ) -> Box<dyn Iterator<Item = DateTime<Utc>> + '_> {
        match self {
            Compiled::Cron(schedules, tz) => {
                let mut each: Vec<_> = schedules
                    .iter()
                    .map(|s| s.after(&after.with_timezone(tz)).peekable())
                    .collect();
                // The earliest next fire of any schedule; those firing at the same instant
                // are advanced together, so each instant comes once.
                Box::new(std::iter::from_fn(move || {
                    let next = each.iter_mut().filter_map(|i| i.peek().copied()).min()?;
                    for i in &mut each {
                        i.next_if_eq(&next);
                    }
                    Some(next.with_timezone(&Utc))
                }))
            }
            Compiled::Interval(every) => {
                let every = (*every).max(1) as i64;
                let first = (after.timestamp().div_euclid(every) + 1) * every;
                Box::new(
                    (0..)
                        .map(move |k| first + k * every)
                        .map_while(|secs| DateTime::from_timestamp(secs, 0)),
                )
            }
        }
    }

    /// The first fire time strictly after `after`, if any.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fires_after(after).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cron(expr: &str, tz: &str) -> Schedule {
        Schedule::Cron {
            expr: expr.into(),
            timezone: tz.into(),
        }
    }

    #[test]
    fn five_field_cron_fires_in_its_time_zone() {
        let c = cron("30 2 * * *", "Europe/Berlin").compile().unwrap();
        let after = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        // 02:30 in Berlin in winter is 01:30 UTC.
        assert_eq!(
            c.next_after(after),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 1, 30, 0).unwrap())
        );
        let summer = Utc.with_ymd_and_hms(2026, 7, 10, 12, 0, 0).unwrap();
        assert_eq!(
            c.next_after(summer),
            Some(Utc.with_ymd_and_hms(2026, 7, 11, 0, 30, 0).unwrap())
        );
    }

    #[test]
    fn weekdays_are_numbered_as_in_crontab() {
        use chrono::{Datelike, Weekday};
        // Friday 4 December 2026, noon UTC.
        let friday = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        let c = cron("0 2 * * 1-5", "Europe/Berlin").compile().unwrap();
        let fires: Vec<_> = c.fires_after(friday).take(10).collect();
        assert_eq!(
            fires[0],
            Utc.with_ymd_and_hms(2026, 12, 7, 1, 0, 0).unwrap()
        );
        let days: Vec<_> = fires.iter().map(|t| t.weekday()).collect();
        use Weekday::*;
        assert_eq!(days, [Mon, Tue, Wed, Thu, Fri, Mon, Tue, Wed, Thu, Fri]);

        let sundays = cron("0 3 * * 0", "UTC").compile().unwrap();
        let sevens = cron("0 3 * * 7", "UTC").compile().unwrap();
        assert_eq!(sundays.next_after(friday), sevens.next_after(friday));
        assert_eq!(
            sundays.next_after(friday),
            Some(Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap())
        );
    }

    #[test]
    fn both_day_fields_restricted_fire_on_either() {
        let c = cron("0 0 1,15 * FRI", "UTC").compile().unwrap();
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let days: Vec<_> = c
            .fires_after(start)
            .take(7)
            .map(|t| t.format("%m-%d").to_string())
            .collect();
        // 1 January 2027 is a Friday and the 1st: it fires once.
        assert_eq!(
            days,
            [
                "12-04", "12-11", "12-15", "12-18", "12-25", "01-01", "01-08"
            ]
        );
    }

    #[test]
    fn cron_problems_are_told_in_the_expression_as_written() {
        let err = cron("61 * * * 8", "UTC").compile().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"61 * * * 8\" is not a cron expression: minute: 61 is out of range 0-59; \
             day of week: 8 is out of range 0-7 (0 and 7 are Sunday)"
        );
    }

    #[test]
    fn intervals_align_to_the_epoch_and_are_strictly_after() {
        let c = Schedule::Interval {
            every_secs: 6 * 3600,
        }
        .compile()
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 10, 6, 0, 0).unwrap();
        let fires: Vec<_> = c.fires_after(at).take(2).collect();
        assert_eq!(
            fires,
            vec![
                Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 1, 10, 18, 0, 0).unwrap()
            ]
        );
    }

    #[test]
    fn bad_schedules_name_their_fields() {
        let mut p = Problems::default();
        cron("61 * * * *", "Mars/Olympus").check(&mut p, 0);
        let err = p.finish().unwrap_err();
        assert!(err.mentions("schedule.cron.expr"), "{err}");
        assert!(err.mentions("schedule.cron.timezone"), "{err}");

        let mut p = Problems::default();
        cron("* * * * * *", "UTC").check(&mut p, 0);
        assert!(
            p.finish().unwrap_err().0[0]
                .message
                .contains("once a minute")
        );

        let mut p = Problems::default();
        cron("0 * * * *", "UTC").check(&mut p, 3600);
        assert!(p.finish().unwrap_err().mentions("jitterSecs"));

        let mut p = Problems::default();
        Schedule::Interval { every_secs: 30 }.check(&mut p, 60);
        let err = p.finish().unwrap_err();
        assert!(err.mentions("schedule.interval.everySecs") && err.mentions("jitterSecs"));
    }
}
