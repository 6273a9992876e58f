//! The enforcer's folded state as a snapshot writes it: unfinished tasks with the subject
//! sequence and cause of their last event, the tasks waiting for a decision, and each
//! repository's breaker as the log made it. Sorted everywhere, so two instances that
//! folded the same log write the same bytes. Left out, being this instance's own: when it
//! last issued a decision, and the timers (one per retry-scheduled task is made again).

use fleet_events::envelope::Envelope;
use fleet_events::ids::TaskId;
use fleet_events::task_state::{Task, TaskStatus};
use fleet_runtime::snapshot::{Snapshot, sorted};
use serde::{Deserialize, Serialize};

use super::{Enforcer, Repo, RepoKey, Timer, Tracked};
use crate::circuit::{Breaker, BreakerImage};

/// The enforcer's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    tasks: Vec<(TaskId, TaskImage)>,
    undecided: Vec<TaskId>,
    repos: Vec<(RepoKey, RepoImage)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TaskImage {
    task: Task,
    seq: u64,
    cause: Option<Envelope>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RepoImage {
    breaker: BreakerImage,
    seq: u64,
    cause: Option<Envelope>,
}

impl Snapshot for Enforcer {
    const SERVICE: &'static str = "retry";
    const FOLD_VERSION: u32 = 1;
    type Image = Image;

    fn image(&self) -> Image {
        Image {
            tasks: sorted(&self.tasks, |t| TaskImage {
                task: t.task.clone(),
                seq: t.seq,
                cause: t.cause.clone(),
            }),
            undecided: self.undecided.iter().copied().collect(),
            repos: sorted(&self.repos, |r| RepoImage {
                breaker: r.breaker.image(),
                seq: r.seq,
                cause: r.cause.clone(),
            }),
        }
    }

    fn restore(empty: Self, image: Image) -> Result<Self, String> {
        let mut enforcer = Enforcer::new(empty.circuit);
        for (id, t) in image.tasks {
            if let (TaskStatus::RetryScheduled, Some(due)) = (t.task.status, t.task.retry_due_at) {
                enforcer.timers.push(std::cmp::Reverse(Timer {
                    wake: due,
                    task: id,
                    due_at: due,
                }));
            }
            let tracked = Tracked {
                task: t.task,
                seq: t.seq,
                cause: t.cause,
                issued: None,
            };
            enforcer.tasks.insert(id, tracked);
        }
        enforcer.undecided = image.undecided.into_iter().collect();
        for (key, r) in image.repos {
            let repo = Repo {
                breaker: Breaker::restored(empty.circuit, r.breaker),
                seq: r.seq,
                cause: r.cause,
                issued: None,
            };
            enforcer.repos.insert(key, repo);
        }
        Ok(enforcer)
    }
}
