//! Repeated warnings, rate-limited: the first of a key is logged in full, the next ones
//! of the interval are only counted by category, and one summary line per interval says
//! how many were suppressed. [`Repeats`] is the pure bookkeeping (the time is passed in);
//! [`warn_repeated`] logs through one process-wide instance.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long after a warning its repeats are only counted (one summary line per interval).
pub const INTERVAL: Duration = Duration::from_secs(60);

/// What to do with one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first of its key for a while: log it in full.
    First,
    /// Counted; a later [`Summary`] tells.
    Counted,
}

/// The occurrences of one key that were not logged during an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub key: String,
    pub total: u64,
    /// Per category, most frequent first (then by name).
    pub by_category: Vec<(String, u64)>,
    pub interval: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} more in the last {} s:",
            self.key,
            self.total,
            self.interval.as_secs()
        )?;
        for (i, (category, count)) in self.by_category.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep} {count} {category}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Window {
    ends: Instant,
    counts: BTreeMap<String, u64>,
}

/// Which keys were logged recently and what was suppressed since.
#[derive(Debug)]
pub struct Repeats {
    interval: Duration,
    windows: BTreeMap<String, Window>,
}

impl Repeats {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            windows: BTreeMap::new(),
        }
    }

    /// Notes one occurrence of `key` (what repeats, such as "parked on intake-reports")
    /// in `category` (such as "undecodable report") at `now`.
    pub fn seen(&mut self, now: Instant, key: &str, category: &str) -> Seen {
        match self.windows.get_mut(key) {
            // An ended window with nothing counted is as good as none; one with counts
            // stays open until its summary is taken.
            Some(window) if now < window.ends || !window.counts.is_empty() => {
                *window.counts.entry(category.to_owned()).or_default() += 1;
                Seen::Counted
            }
            _ => {
                let window = Window {
                    ends: now + self.interval,
                    counts: BTreeMap::new(),
                };
                self.windows.insert(key.to_owned(), window);
                Seen::First
            }
        }
    }

    /// The summaries of every interval ended by `now` with something suppressed; such a
    /// key stays quiet for one more interval (a burst that goes on gives one line per
    /// interval), a key with nothing suppressed is forgotten (its next occurrence is
    /// logged in full).
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let mut out = Vec::new();
        let interval = self.interval;
        self.windows.retain(|key, window| {
            if now < window.ends {
                return true;
            }
            if window.counts.is_empty() {
                return false;
            }
            let mut by_category: Vec<(String, u64)> =
                std::mem::take(&mut window.counts).into_iter().collect();
            by_category.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            out.push(Summary {
                key: key.clone(),
                total: by_category.iter().map(|(_, n)| n).sum(),
                by_category,
                interval,
            });
            window.ends = now + interval;
            true
        });
        out
    }
}

static PROCESS: OnceLock<Mutex<Repeats>> = OnceLock::new();

/// Logs `log` (a full warning) if it is the first occurrence of `key` in a while, else
/// counts it under `category`; a background thread logs each interval's summary at WARN.
pub fn warn_repeated(key: &str, category: &str, log: impl FnOnce()) {
    let repeats = PROCESS.get_or_init(|| {
        std::thread::Builder::new()
            .name("fleet-repeats".into())
            .spawn(summarize)
            .ok();
        Mutex::new(Repeats::new(INTERVAL))
    });
    let seen = match repeats.lock() {
        Ok(mut repeats) => repeats.seen(Instant::now(), key, category),
        Err(_) => Seen::First,
    };
    match seen {
        Seen::First => log(),
        Seen::Counted => tracing::debug!(key, category, "repeated warning counted"),
    }
}

/// Logs the process's due summaries, every second, for ever.
fn summarize() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let due = match PROCESS.get().map(Mutex::lock) {
            Some(Ok(mut repeats)) => repeats.due(Instant::now()),
            _ => Vec::new(),
        };
        for summary in due {
            tracing::warn!(key = %summary.key, suppressed = summary.total, "{summary}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "parked on intake-reports";

    #[test]
    fn the_first_is_logged_then_one_summary_per_interval_counts_the_rest() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut repeats = Repeats::new(Duration::from_secs(60));
        assert_eq!(repeats.seen(at(0), KEY, "undecodable report"), Seen::First);
        for i in 0..5120 {
            let seen = repeats.seen(at(i % 59), KEY, "undecodable report");
            assert_eq!(seen, Seen::Counted);
        }
        for _ in 0..3 {
            repeats.seen(at(30), KEY, "rejected report");
        }
        assert_eq!(repeats.due(at(59)), [], "nothing before the interval ends");
        let due = repeats.due(at(60));
        assert_eq!(
            due.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "parked on intake-reports: 5123 more in the last 60 s: 5120 undecodable report, 3 rejected report"
            ]
        );
        // The burst goes on: still counted, one summary an interval later.
        assert_eq!(repeats.seen(at(61), KEY, "rejected report"), Seen::Counted);
        assert_eq!(repeats.due(at(100)), []);
        assert_eq!(repeats.due(at(120))[0].total, 1);
        // Quiet for an interval: forgotten, the next one is logged in full again.
        assert_eq!(repeats.due(at(180)), []);
        assert_eq!(repeats.seen(at(181), KEY, "rejected report"), Seen::First);
    }

    #[test]
    fn keys_are_limited_apart() {
        let now = Instant::now();
        let mut repeats = Repeats::new(Duration::from_secs(60));
        assert_eq!(repeats.seen(now, "a", "x"), Seen::First);
        assert_eq!(repeats.seen(now, "b", "x"), Seen::First);
        assert_eq!(repeats.seen(now, "a", "x"), Seen::Counted);
        let due = repeats.due(now + Duration::from_secs(60));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, "a");
    }

    #[test]
    fn a_late_occurrence_after_a_window_with_counts_waits_for_its_summary() {
        let now = Instant::now();
        let mut repeats = Repeats::new(Duration::from_secs(60));
        repeats.seen(now, KEY, "x");
        repeats.seen(now, KEY, "x");
        // The interval ended but the summary was not taken yet: still counted.
        let late = now + Duration::from_secs(70);
        assert_eq!(repeats.seen(late, KEY, "y"), Seen::Counted);
        let due = repeats.due(late);
        assert_eq!(due[0].total, 2);
    }
}
