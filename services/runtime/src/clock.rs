//! Time for services: the system clock in production, a manually advanced clock in tests
//! (the one thing scenarios fake, because cron fires minutes apart).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Longest single sleep on the system clock, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Where a service reads the time.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    Manual(ManualClock),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(manual) => *manual.now.borrow(),
        }
    }

    /// Returns once the clock reads `at` or later (at once if it already does).
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        match self {
            Clock::System => loop {
                let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(MAX_SLEEP)).await;
            },
            Clock::Manual(manual) => {
                let mut rx = manual.now.subscribe();
                while *rx.borrow_and_update() < at {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// Sleeps until `wake`, or for ever when there is nothing to wake for.
    pub async fn sleep_until_some(&self, wake: Option<DateTime<Utc>>) {
        match wake {
            Some(at) => self.sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// A clock that moves only when told; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock forward by `by`, waking every sleeper whose time has come.
    pub fn advance(&self, by: chrono::TimeDelta) {
        self.now.send_modify(|now| *now += by);
    }

    /// The time it reads.
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_passes_their_time() {
        let manual = ManualClock::new(DateTime::UNIX_EPOCH);
        let clock = Clock::Manual(manual.clone());
        let at = DateTime::UNIX_EPOCH + TimeDelta::seconds(60);
        let sleeper = tokio::spawn(async move { clock.sleep_until(at).await });
        manual.advance(TimeDelta::seconds(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        manual.advance(TimeDelta::seconds(30));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke")
            .expect("joined");
    }

    #[tokio::test]
    async fn system_sleep_into_the_past_returns_at_once() {
        Clock::System.sleep_until(DateTime::UNIX_EPOCH).await;
    }
}
