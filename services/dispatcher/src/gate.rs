//! The per-repository gate: whether a repository's circuit lets a task through now.
//!
//! The plan asks the gate once per task it is about to dispatch, in dispatch order, so a
//! half-open circuit's one probe goes to the most urgent task. [`Circuits`] answers from
//! the retry module's [`Breaker`]s folded from the log; tests and callers may plug in any
//! other [`RepoGate`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{ErrorClass, Event, TaskEvent};
use fleet_events::ids::{RepoId, TaskId, TenantId};

use fleet_retry::circuit::{Breaker, CircuitConfig};

/// Whether `task`, which uses `repo`, may be dispatched at `now`. Answering true may
/// commit the gate (a half-open breaker admits its one probe).
pub trait RepoGate {
    fn admits(&mut self, tenant: &TenantId, repo: RepoId, task: TaskId, now: DateTime<Utc>)
    -> bool;
}

/// A gate that admits everything: no circuit breakers.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl RepoGate for AdmitAll {
    fn admits(&mut self, _: &TenantId, _: RepoId, _: TaskId, _: DateTime<Utc>) -> bool {
        true
    }
}

/// Every repository's [`Breaker`], per tenant, folded from the log's repository events.
#[derive(Debug, Default)]
pub struct Circuits {
    pub(crate) breakers: HashMap<(TenantId, RepoId), Breaker>,
}

impl Circuits {
    /// No open circuits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event of the log: repository events open and close breakers; a task
    /// ending without a verdict on its repository (cancelled, exhausted, lost, failed other
    /// than by the network) frees the probe slot it may hold.
    pub fn apply(&mut self, env: &Envelope) {
        match &env.event {
            Event::Repo { repo, event } => self
                .breakers
                .entry((env.tenant.clone(), *repo))
                .or_insert_with(|| Breaker::new(CircuitConfig::default()))
                .apply(event),
            Event::Task { task, event } => {
                let no_verdict = match event {
                    TaskEvent::Failed { error, .. } => error.class != ErrorClass::Network,
                    TaskEvent::Cancelled { .. }
                    | TaskEvent::Exhausted { .. }
                    | TaskEvent::Lost { .. } => true,
                    _ => false,
                };
                if no_verdict {
                    for ((tenant, _), breaker) in &mut self.breakers {
                        if *tenant == env.tenant {
                            breaker.release(*task);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The breaker of `repo`, if the log has named it.
    pub fn breaker(&self, tenant: &TenantId, repo: RepoId) -> Option<&Breaker> {
        self.breakers.get(&(tenant.clone(), repo))
    }
}

impl RepoGate for Circuits {
    fn admits(
        &mut self,
        tenant: &TenantId,
        repo: RepoId,
        task: TaskId,
        now: DateTime<Utc>,
    ) -> bool {
        self.breakers
            .get_mut(&(tenant.clone(), repo))
            .is_none_or(|b| b.admits(task, now))
    }
}
