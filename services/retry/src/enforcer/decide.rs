//! The enforcer's decisions: retry or give up after a failure, retries falling due, and
//! circuit breakers opening and closing.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{ErrorClass, Event, TaskEvent};
use fleet_events::ids::TaskId;
use fleet_events::store::{Expect, Stored};
use fleet_events::task_state::TaskStatus;

use super::{Enforcer, RESEND_AFTER, RepoKey, Timer, ToAppend};
use crate::backoff::{self, RetryDecision};
use crate::circuit::later;

impl Enforcer {
    /// Folds a live event and returns what follows from it at `now`: after a failure or a
    /// loss, `RetryScheduled` (due at `now` plus the backoff) or `Exhausted`; after a
    /// success or failure, the repository's `CircuitOpened`/`CircuitClosed` if owed.
    ///
    /// For live events only: while catching up, use [`Enforcer::apply`] and then
    /// [`Enforcer::pending_decisions`], or failures decided long ago are decided again
    /// (the store would refuse those appends, but they are wasted work).
    pub fn on_event(&mut self, stored: &Stored, now: DateTime<Utc>) -> Vec<ToAppend> {
        let touched = self.fold(stored);
        let mut out = Vec::new();
        if let Event::Task { task, .. } = &stored.envelope.event {
            out.extend(self.decide_task(*task, now));
        }
        if let Some(key) = touched {
            out.extend(self.decide_repo(&key, now));
        }
        out
    }

    /// Every decision the log is owed at `now`: tasks still failed or lost, and breakers
    /// whose state the outcomes contradict. Empty once every failure has its decision in
    /// the log. Decisions issued less than [`RESEND_AFTER`] ago are not issued again, so
    /// this is also safe to call on every timer tick.
    pub fn pending_decisions(&mut self, now: DateTime<Utc>) -> Vec<ToAppend> {
        let tasks: Vec<TaskId> = self.undecided.iter().copied().collect();
        let mut out: Vec<ToAppend> = tasks
            .into_iter()
            .filter_map(|task| self.decide_task(task, now))
            .collect();
        let mut repos: Vec<RepoKey> = self.repos.keys().cloned().collect();
        repos.sort();
        out.extend(repos.iter().filter_map(|key| self.decide_repo(key, now)));
        out
    }

    /// `RetryDue` for every retry due at `now`, each at most once per call. A task stays
    /// pending until the log brings its `RetryDue` (or a cancel); if that has not happened
    /// [`RESEND_AFTER`] after issuing, it is issued again.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<ToAppend> {
        let mut out = Vec::new();
        while let Some(&Reverse(timer)) = self.timers.peek() {
            let Timer { wake, task, due_at } = timer;
            if wake > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.tasks.get_mut(&task) else {
                continue;
            };
            let current =
                t.task.status == TaskStatus::RetryScheduled && t.task.retry_due_at == Some(due_at);
            if !current || recently(t.issued, now) {
                // Stale, or a duplicate entry whose twin issued it in this call.
                continue;
            }
            let Some(cause) = &t.cause else {
                continue;
            };
            out.push(ToAppend {
                envelope: Envelope::caused_by(
                    cause,
                    now,
                    Event::Task {
                        task,
                        event: TaskEvent::RetryDue,
                    },
                ),
                msg_id: format!("retry-due:{task}:{}", t.task.attempt),
                expect: Expect::LastSeq(t.seq),
            });
            t.issued = Some(now);
            self.timers.push(Reverse(Timer {
                wake: later(now, RESEND_AFTER),
                ..timer
            }));
        }
        out
    }

    /// Retry or give up for a task that is failed or lost, unless just issued.
    fn decide_task(&mut self, task: TaskId, now: DateTime<Utc>) -> Option<ToAppend> {
        let t = self.tasks.get_mut(&task)?;
        let class = match t.task.status {
            // A failed task always has its failure's class; the fallback never retries.
            TaskStatus::Failed => t.task.last_error.unwrap_or(ErrorClass::Permanent),
            TaskStatus::Lost => ErrorClass::Lost,
            _ => return None,
        };
        if recently(t.issued, now) {
            return None;
        }
        let cause = t.cause.as_ref()?;
        let attempt = t.task.attempt;
        let (budget, retry_hooks) = t
            .task
            .spec
            .as_ref()
            .map(|spec| (spec.retry.clone(), spec.hooks.retry_on_failure))
            .unwrap_or_default();
        let jitter = backoff::jitter_for(task, attempt);
        let event = match backoff::decide(class, attempt, &budget, retry_hooks, jitter) {
            RetryDecision::Retry { delay } => TaskEvent::RetryScheduled {
                attempt,
                due_at: later(now, delay),
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
            RetryDecision::GiveUp(reason) => TaskEvent::Exhausted {
                attempts: attempt,
                reason,
            },
        };
        let decision = ToAppend {
            envelope: Envelope::caused_by(cause, now, Event::Task { task, event }),
            msg_id: format!("retry:{task}:{attempt}"),
            expect: Expect::LastSeq(t.seq),
        };
        t.issued = Some(now);
        Some(decision)
    }

    /// The repository event its breaker is owed, unless just issued.
    fn decide_repo(&mut self, key: &RepoKey, now: DateTime<Utc>) -> Option<ToAppend> {
        let r = self.repos.get_mut(key)?;
        if recently(r.issued, now) {
            return None;
        }
        let event = r.breaker.decide(now)?;
        let cause = r.cause.as_ref()?;
        let (tenant, repo) = key;
        let decision = ToAppend {
            envelope: Envelope::caused_by(cause, now, Event::Repo { repo: *repo, event }),
            msg_id: format!("circuit:{tenant}:{repo}:{}", r.seq),
            expect: Expect::LastSeq(r.seq),
        };
        r.issued = Some(now);
        Some(decision)
    }
}

/// True if a decision issued at `issued` is younger than [`RESEND_AFTER`] at `now`.
fn recently(issued: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    issued.is_some_and(|at| now < later(at, RESEND_AFTER))
}
