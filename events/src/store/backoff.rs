//! Waiting between two tries of something NATS refused or did not answer: each wait twice
//! the last, up to a ceiling, and a shutdown ends a wait at once. The services' appends and
//! publishes and the agent's connection and registration all wait this way.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Doubling waits from `first` up to `max`, cut short by a shutdown.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits of `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first.min(max),
            max,
        }
    }

    /// The services' retries against NATS: 200 ms, doubling up to 5 s.
    pub fn nats() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// How long the next [`Backoff::pause`] waits (for a log line before it).
    pub fn next_wait(&self) -> Duration {
        self.next
    }

    /// Waits the next wait, unless `shutdown` ends it first: false then.
    pub async fn pause(&mut self, shutdown: &CancellationToken) -> bool {
        let waited = tokio::select! {
            () = tokio::time::sleep(self.next) => true,
            () = shutdown.cancelled() => false,
        };
        self.next = (self.next * 2).min(self.max);
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shutdown ends the wait at once (the wait here is a minute; the test allows ten
    /// seconds), and each wait doubles the next, up to the ceiling.
    #[tokio::test]
    async fn a_shutdown_ends_the_wait_and_waits_double_up_to_the_ceiling() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut long = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let waited = tokio::time::timeout(Duration::from_secs(10), long.pause(&shutdown))
            .await
            .expect("the shutdown ended the wait");
        assert!(!waited, "a wait a shutdown ended says so");
        let mut backoff = Backoff::nats();
        let mut delays = Vec::new();
        for _ in 0..7 {
            delays.push(backoff.next_wait().as_millis());
            backoff.pause(&shutdown).await;
        }
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
        let agent = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(agent.next_wait(), Duration::from_secs(1));
    }
}
