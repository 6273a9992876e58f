//! The enforcer's state, folded from the log: every unfinished task, the pending retries
//! in a min-heap by wake-up time, and one circuit breaker per repository.
//!
//! # How the IO loop drives it
//! 1. Catch up: [`Enforcer::apply`] every stored task and repository event, deciding
//!    nothing; then append what [`Enforcer::pending_decisions`] returns (failures whose
//!    decision never reached the log, e.g. because the process died in between).
//! 2. Live: [`Enforcer::on_event`] each new event and append the decisions it returns;
//!    on each timer tick append [`Enforcer::due`] and [`Enforcer::pending_decisions`],
//!    and sleep until [`Enforcer::next_wake`] or the next event.
//!
//! The enforcer never applies its own decisions: they count once the log brings them
//! back. Until then it does not issue the same decision again, except after
//! [`RESEND_AFTER`] (the append may have failed). Every [`ToAppend`] carries the subject
//! sequence it was made on and a deterministic msg id, so a second issue, or a second
//! enforcer instance deciding on the same state, is refused or deduplicated by the store
//! instead of being written twice. A refused append needs no handling: the log will
//! bring whatever won.
//!
//! Due times live in the log (`RetryScheduled::due_at`), so a fresh enforcer that replays
//! the log rebuilds every timer, and each due retry fires once, on time (or at once if
//! it fell due while no enforcer ran).

mod decide;
pub mod snapshot;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{RepoId, TaskId, TenantId};
use fleet_events::store::Stored;
use fleet_events::task_state::{Task, TaskStatus};

use super::circuit::{Breaker, CircuitConfig, Outcome};

/// The events this core decides, as every core returns them.
pub use fleet_events::store::ToAppend;

/// How long an issued decision is not issued again while the log has not brought it back.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);

/// A repository's breaker is per tenant, since its events are stored per tenant.
type RepoKey = (TenantId, RepoId);

/// An unfinished task.
#[derive(Debug)]
struct Tracked {
    task: Task,
    /// The stream sequence of the task subject's last event.
    seq: u64,
    /// The last event while the task waits for a decision (failed, lost) or its retry
    /// (retry scheduled): what the decision is caused by.
    cause: Option<Envelope>,
    /// When a decision on `seq` was last issued.
    issued: Option<DateTime<Utc>>,
}

/// A repository's breaker and what deciding for it needs.
#[derive(Debug)]
struct Repo {
    breaker: Breaker,
    /// The stream sequence of the repository subject's last event; 0 if it has none.
    seq: u64,
    /// The last task outcome recorded.
    cause: Option<Envelope>,
    issued: Option<DateTime<Utc>>,
}

/// When to look at a pending retry again: at its due time, then [`RESEND_AFTER`] after
/// each issue of its `RetryDue`. Ordered by `wake` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    wake: DateTime<Utc>,
    task: TaskId,
    /// The due time this entry is for: it is stale once the task's differs.
    due_at: DateTime<Utc>,
}

/// The retry-budget enforcer's pure core.
#[derive(Debug)]
pub struct Enforcer {
    circuit: CircuitConfig,
    tasks: HashMap<TaskId, Tracked>,
    /// Tasks failed or lost, waiting for a decision.
    undecided: BTreeSet<TaskId>,
    /// Wake-ups for tasks in retry-scheduled, earliest first; an entry is dropped when it
    /// no longer matches its task (lazy deletion).
    timers: BinaryHeap<Reverse<Timer>>,
    repos: HashMap<RepoKey, Repo>,
}

impl Enforcer {
    /// An enforcer that has seen nothing, with these circuit breaker settings.
    pub fn new(circuit: CircuitConfig) -> Self {
        Self {
            circuit,
            tasks: HashMap::new(),
            undecided: BTreeSet::new(),
            timers: BinaryHeap::new(),
            repos: HashMap::new(),
        }
    }

    /// Folds one stored event, deciding nothing. Events other than task and repository
    /// events are ignored; an illegal task event is logged and changes nothing but the
    /// subject's sequence.
    pub fn apply(&mut self, stored: &Stored) {
        self.fold(stored);
    }

    /// The task as the log describes it, while unfinished (finished tasks are forgotten).
    pub fn task(&self, task: TaskId) -> Option<&Task> {
        self.tasks.get(&task).map(|t| &t.task)
    }

    /// Every pending retry and when it is due, for read models and metrics.
    pub fn pending(&self) -> impl Iterator<Item = (TaskId, DateTime<Utc>)> + '_ {
        self.tasks.iter().filter_map(|(id, t)| {
            let due = t.task.retry_due_at?;
            (t.task.status == TaskStatus::RetryScheduled).then_some((*id, due))
        })
    }

    /// The breaker of `repo` in `tenant`, if any outcome or event was seen for it.
    pub fn breaker(&self, tenant: &TenantId, repo: RepoId) -> Option<&Breaker> {
        self.repos.get(&(tenant.clone(), repo)).map(|r| &r.breaker)
    }

    /// Every breaker, by tenant and repository.
    pub fn breakers(&self) -> impl Iterator<Item = (&TenantId, RepoId, &Breaker)> + '_ {
        self.repos
            .iter()
            .map(|((tenant, repo), r)| (tenant, *repo, &r.breaker))
    }

    /// When [`Enforcer::due`] may next have something to do (possibly earlier).
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.timers.peek().map(|Reverse(timer)| timer.wake)
    }

    /// Folds `stored`; returns the repository whose breaker it touched, if any.
    fn fold(&mut self, stored: &Stored) -> Option<RepoKey> {
        let env = &stored.envelope;
        match &env.event {
            Event::Task { task, event } => self.fold_task(stored, *task, event),
            Event::Repo { repo, event } => {
                let key = (env.tenant.clone(), *repo);
                let r = self.repo(&key);
                r.breaker.apply(event);
                r.seq = stored.seq;
                r.issued = None;
                Some(key)
            }
            _ => None,
        }
    }

    fn fold_task(&mut self, stored: &Stored, id: TaskId, event: &TaskEvent) -> Option<RepoKey> {
        let env = &stored.envelope;
        let late = matches!(
            event,
            TaskEvent::RetentionApplied { .. } | TaskEvent::HookRan { .. }
        );
        if late && self.task(id).is_none() {
            // Recorded after the attempt ended (its report was overtaken): the task ended
            // and was forgotten, and a retention or a hook's run decides nothing here.
            return None;
        }
        let next = match Task::fold(self.task(id), event) {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(task_id = %id, seq = stored.seq, %error, "ignoring an illegal task event");
                if let Some(t) = self.tasks.get_mut(&id) {
                    t.seq = stored.seq;
                    t.issued = None;
                }
                return None;
            }
        };
        let outcome = match event {
            TaskEvent::Succeeded { .. } => Some(Outcome::Success),
            TaskEvent::Failed { error, .. } => Some(Outcome::Failure(error.class)),
            _ => None,
        };
        let touched = match (outcome, next.repo()) {
            (Some(outcome), Some(repo)) => {
                let key = (env.tenant.clone(), repo);
                let r = self.repo(&key);
                r.breaker.record(outcome, env.at);
                r.cause = Some(env.clone());
                Some(key)
            }
            _ => None,
        };
        let status = next.status;
        if matches!(status, TaskStatus::Failed | TaskStatus::Lost) {
            self.undecided.insert(id);
        } else {
            self.undecided.remove(&id);
        }
        if status.is_terminal() {
            self.tasks.remove(&id);
            return touched;
        }
        if let (TaskStatus::RetryScheduled, Some(due)) = (status, next.retry_due_at) {
            self.timers.push(Reverse(Timer {
                wake: due,
                task: id,
                due_at: due,
            }));
        }
        let waits = matches!(
            status,
            TaskStatus::Failed | TaskStatus::Lost | TaskStatus::RetryScheduled
        );
        let tracked = Tracked {
            task: next,
            seq: stored.seq,
            cause: waits.then(|| env.clone()),
            issued: None,
        };
        self.tasks.insert(id, tracked);
        touched
    }

    fn repo(&mut self, key: &RepoKey) -> &mut Repo {
        let config = self.circuit;
        self.repos.entry(key.clone()).or_insert_with(|| Repo {
            breaker: Breaker::new(config),
            seq: 0,
            cause: None,
            issued: None,
        })
    }
}

#[cfg(test)]
mod tests;
