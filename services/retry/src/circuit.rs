//! The per-repository circuit breaker: repeated network failures against one repository,
//! from any agent, hold its tasks for a cool-down; then one probe task decides.
//!
//! The breaker is pure state folded from the log:
//! - task outcomes go in through [`Breaker::record`] (only successes and network failures
//!   matter),
//! - the log's [`RepoEvent`]s through [`Breaker::apply`]: only they open and close it.
//!
//! [`Breaker::decide`] says which `RepoEvent` the log is owed, if any;
//! [`Breaker::on_outcome`] records, decides and applies its own decision at once, for a
//! writer that does not wait for its event to come back from the log. [`Breaker::admits`]
//! is the dispatcher's question.
//!
//! Only network failures count: a lock, auth, missing-repository, resource, timeout or
//! lost failure says nothing certain about whether the repository can be reached, so it
//! neither counts toward opening nor resets the count. Only a success resets it.
//!
//! The probe is local to the process that asks [`Breaker::admits`] (the log does not
//! record it): after a restart, or in a second dispatcher, another probe may be admitted.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::event::{ErrorClass, RepoEvent};
use fleet_events::ids::TaskId;

/// When a breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive network failures that open the circuit (0 counts as 1).
    pub threshold: u32,
    /// How long an open circuit holds tasks before admitting a probe.
    pub cool_down: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            cool_down: Duration::from_secs(60),
        }
    }
}

/// How a task's attempt against the repository ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(ErrorClass),
}

/// The breaker as read models and the dispatcher see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Tasks flow.
    Closed,
    /// Tasks are held until `until`.
    Open { until: DateTime<Utc> },
    /// The cool-down has passed: one probe task may run (`None`: none admitted yet).
    HalfOpen { probe: Option<TaskId> },
}

/// What the outcomes seen since the circuit last opened ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Verdict {
    /// A task succeeded: close.
    Recovered,
    /// A network failure after the cool-down: open again.
    StillFailing,
}

/// One repository's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    config: CircuitConfig,
    /// Consecutive network failures, across agents.
    failures: u32,
    /// `Some` while the log says the circuit is open.
    open_until: Option<DateTime<Utc>>,
    verdict: Option<Verdict>,
    /// The task admitted as the probe, if any.
    probe: Option<TaskId>,
}

/// What a snapshot keeps of a breaker: what the log made of it (the probe a dispatcher
/// admitted is that dispatcher's own, and the settings are the process's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BreakerImage {
    failures: u32,
    open_until: Option<DateTime<Utc>>,
    verdict: Option<Verdict>,
}

impl Breaker {
    /// The breaker as a snapshot keeps it.
    pub fn image(&self) -> BreakerImage {
        BreakerImage {
            failures: self.failures,
            open_until: self.open_until,
            verdict: self.verdict,
        }
    }

    /// A breaker with `config` as `image` describes it.
    pub fn restored(config: CircuitConfig, image: BreakerImage) -> Self {
        Self {
            config,
            failures: image.failures,
            open_until: image.open_until,
            verdict: image.verdict,
            probe: None,
        }
    }

    /// A closed breaker.
    pub fn new(config: CircuitConfig) -> Self {
        Self {
            config,
            failures: 0,
            open_until: None,
            verdict: None,
            probe: None,
        }
    }

    /// Until when the log says the circuit is open; `None` while it is closed.
    pub fn open_until(&self) -> Option<DateTime<Utc>> {
        self.open_until
    }

    /// Consecutive network failures seen (not reset by opening or closing).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The state at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> CircuitState {
        match self.open_until {
            None => CircuitState::Closed,
            Some(until) if now < until => CircuitState::Open { until },
            Some(_) => CircuitState::HalfOpen { probe: self.probe },
        }
    }

    /// Folds a task outcome that happened at `at` (the event's time).
    pub fn record(&mut self, outcome: Outcome, at: DateTime<Utc>) {
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                if self.open_until.is_some() {
                    self.verdict = Some(Verdict::Recovered);
                }
            }
            Outcome::Failure(ErrorClass::Network) => {
                self.failures = self.failures.saturating_add(1);
                if self.open_until.is_some_and(|until| at >= until) {
                    self.verdict = Some(Verdict::StillFailing);
                }
            }
            Outcome::Failure(_) => {}
        }
    }

    /// The event the log is owed at `now`, if any: closed with the threshold reached, or
    /// open and a success (close) or a network failure after the cool-down (open again).
    pub fn decide(&self, now: DateTime<Utc>) -> Option<RepoEvent> {
        let opened = || RepoEvent::CircuitOpened {
            until: later(now, self.config.cool_down),
            failures: self.failures,
        };
        match (self.open_until, self.verdict) {
            (None, _) if self.failures >= self.config.threshold.max(1) => Some(opened()),
            (None, _) => None,
            (Some(_), Some(Verdict::Recovered)) => Some(RepoEvent::CircuitClosed),
            (Some(_), Some(Verdict::StillFailing)) => Some(opened()),
            (Some(_), None) => None,
        }
    }

    /// Folds a repository event from the log.
    pub fn apply(&mut self, event: &RepoEvent) {
        if matches!(event, RepoEvent::SnapshotsChanged { .. }) {
            return;
        }
        self.verdict = None;
        self.probe = None;
        self.open_until = match event {
            RepoEvent::CircuitOpened { until, .. } => Some(*until),
            RepoEvent::CircuitClosed | RepoEvent::SnapshotsChanged { .. } => None,
        };
    }

    /// Records `outcome` at `now`, decides, and applies the decision before returning it.
    pub fn on_outcome(&mut self, outcome: Outcome, now: DateTime<Utc>) -> Option<RepoEvent> {
        self.record(outcome, now);
        let event = self.decide(now)?;
        self.apply(&event);
        Some(event)
    }

    /// Whether the dispatcher may hand `task` to an agent at `now`: always while closed,
    /// never while open, and after the cool-down only to the probe (the first task that
    /// asks; the same task asking again is admitted again) until the log closes or
    /// re-opens the circuit.
    pub fn admits(&mut self, task: TaskId, now: DateTime<Utc>) -> bool {
        match self.state(now) {
            CircuitState::Closed => true,
            CircuitState::Open { .. } => false,
            CircuitState::HalfOpen { probe: None } => {
                self.probe = Some(task);
                true
            }
            CircuitState::HalfOpen { probe: Some(p) } => p == task,
        }
    }

    /// Frees the probe slot if `task` holds it: for a probe that ended without a verdict
    /// (cancelled, exhausted, or failed other than by the network), so that another task
    /// may probe instead of the circuit staying half-open for ever.
    pub fn release(&mut self, task: TaskId) {
        if self.probe == Some(task) {
            self.probe = None;
        }
    }
}

/// `now + d`, saturating at the latest representable time.
pub(crate) fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests;
