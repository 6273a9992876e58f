//! Doing something at most once an interval: gauges that cost a pass over the whole state
//! are set once a second, not after every event (at 10,000 agents, a pass after each of a
//! burst's events left the dispatcher minutes behind).

use std::time::{Duration, Instant};

/// True at most once per `every`.
#[derive(Debug, Clone)]
pub struct Pace {
    every: Duration,
    last: Option<Instant>,
}

impl Pace {
    /// Due at once, then once per `every`.
    pub fn new(every: Duration) -> Self {
        Self { every, last: None }
    }

    /// Once a second.
    pub fn second() -> Self {
        Self::new(Duration::from_secs(1))
    }

    /// True if `every` has passed since the last time this answered true (or never did).
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_once_then_not_until_the_interval_passed() {
        let mut pace = Pace::new(Duration::from_millis(50));
        assert!(pace.due());
        assert!(!pace.due());
        std::thread::sleep(Duration::from_millis(60));
        assert!(pace.due());
        assert!(!pace.due());
    }
}
