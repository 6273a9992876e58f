//! Folding the log (and heartbeats) into per-agent and per-task state. Every change marks
//! the agents it touches dirty, so the next plan looks at them and only at them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, RepoEvent, TaskEvent};
use fleet_events::ids::{CorrelationId, EventId, RepoId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::KindCounts;
use fleet_events::settings::AgentSettings;
use fleet_events::store::Stored;
use fleet_events::task_state::{Task, TaskStatus};

use super::Fleet;

/// Where a waiting task stands in its agent's line: higher priority, then earlier, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct WaitKey {
    pub priority: Reverse<u8>,
    pub run_at: DateTime<Utc>,
    pub task: TaskId,
}

/// How far a task held by an agent has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Returned by a plan; its `TaskDispatched` is not back from the log yet.
    InFlight,
    /// Dispatched or acknowledged.
    Dispatched,
    Running,
}

/// One agent as the dispatcher sees it.
#[derive(Debug, Default)]
pub(super) struct AgentState {
    /// The tenant it registered with.
    pub tenant: Option<TenantId>,
    pub registered: bool,
    pub settings: AgentSettings,
    pub online: bool,
    /// An `agent.came_online` was recorded since its registration: its heartbeats are
    /// known to the log (a registration alone counts as online for dispatch, but the read
    /// models learn of it, and of its versions, from the first heartbeat).
    pub heard: bool,
    /// The last heartbeat before it went offline, as the log says.
    pub offline_since: Option<DateTime<Utc>>,
    pub decommissioned: bool,
    /// Tasks the agent holds (or is being handed), with their kind.
    pub holding: BTreeMap<TaskId, (TaskKind, Stage)>,
    /// Tasks in `RetryScheduled`, with their due time.
    pub backoff: BTreeMap<TaskId, DateTime<Utc>>,
    /// Tasks waiting for dispatch, in dispatch order.
    pub waiting: BTreeSet<WaitKey>,
    /// The same tasks by time, to find the due ones and the next to fall due.
    pub by_time: BTreeSet<(DateTime<Utc>, TaskId)>,
    /// The agent's own queue, from its last heartbeat (cleared when it goes offline).
    pub queued: KindCounts,
    /// When it was last heard: its last heartbeat as the server stored it (never later
    /// than the dispatcher's clock). Outlives restarts: read back from `FLEET_HEARTBEATS`.
    pub last_seen: Option<DateTime<Utc>>,
    /// Seconds between its heartbeats, as its last heartbeat says (0: it does not say).
    /// Like `last_seen`, read back from `FLEET_HEARTBEATS` at every start.
    pub heartbeat_every: u16,
    /// When the log last said it is online (registration, or back online): an agent never
    /// heard since counts from there.
    pub online_at: Option<DateTime<Utc>>,
    /// This agent's entry in `Fleet::timers`.
    pub timer: Option<DateTime<Utc>>,
}

/// A task that is not terminal.
#[derive(Debug)]
pub(super) struct Tracked {
    pub tenant: TenantId,
    pub task: Task,
    pub kind: Option<TaskKind>,
    pub repo: Option<RepoId>,
    /// The task subject's last stream sequence, when the log was applied with sequences.
    pub seq: Option<u64>,
    /// The task's last event: what a dispatch is caused by.
    pub last_event: EventId,
    pub correlation: CorrelationId,
    /// `Some` while waiting for dispatch or being dispatched.
    pub key: Option<WaitKey>,
    /// Returned by a plan, not yet back from the log.
    pub dispatching: bool,
    /// The gate refused it in the last plan that asked.
    pub gate_refused: bool,
    /// While on an agent: when the attempt was dispatched, as its `TaskDispatched` says.
    pub dispatched_at: Option<DateTime<Utc>>,
    /// While on an agent: when the attempt started, as its `TaskStarted` says.
    pub started_at: Option<DateTime<Utc>>,
    /// While on an agent: its entry in `Fleet::deadlines`, when the run timeout ends.
    pub deadline: Option<DateTime<Utc>>,
    /// The time of its last event, at which it was placed (a snapshot places it again).
    pub last_at: DateTime<Utc>,
}

impl Fleet {
    /// Folds one event of the log, in log order. Events the dispatcher cannot use (an
    /// illegal task transition, another tenant's agent) are ignored with a log line.
    /// Without stream sequences, [`super::Dispatch::expect`] cannot guard the append: the
    /// service uses [`Fleet::apply_stored`].
    pub fn apply(&mut self, env: &Envelope) {
        self.fold(env, None);
    }

    /// Folds one stored event, keeping its stream sequence for the expected-sequence check.
    pub fn apply_stored(&mut self, stored: &Stored) {
        self.fold(&stored.envelope, Some(stored.seq));
    }

    fn fold(&mut self, env: &Envelope, seq: Option<u64>) {
        match &env.event {
            Event::Agent { agent, event } => self.apply_agent(*agent, env, event),
            Event::Task { task, event } => self.apply_task(*task, env, event, seq),
            Event::Repo { repo, event } => {
                let key = (env.tenant.clone(), *repo);
                match event {
                    RepoEvent::CircuitOpened { until, .. } => {
                        self.circuits.insert(key.clone(), *until);
                    }
                    RepoEvent::CircuitClosed => {
                        self.circuits.remove(&key);
                    }
                    RepoEvent::SnapshotsChanged { .. } => return,
                }
                self.wake_gated(&key);
            }
            Event::Tenant(_)
            | Event::Policy { .. }
            | Event::Rule { .. }
            | Event::Notification { .. }
            | Event::Assignment { .. } => {}
        }
    }

    fn apply_task(&mut self, id: TaskId, env: &Envelope, event: &TaskEvent, seq: Option<u64>) {
        let before = self.tasks.get(&id);
        if before.is_some_and(|t| t.tenant != env.tenant) {
            tracing::warn!(task_id = %id, tenant = %env.tenant, "ignoring a task event of another tenant");
            return;
        }
        if before.is_none()
            && !matches!(
                event,
                TaskEvent::Scheduled { .. } | TaskEvent::Requested { .. }
            )
        {
            // A skipped task, or one that ended before it was seen: nothing to dispatch.
            return;
        }
        let task = match Task::fold(before.map(|t| &t.task), event) {
            Ok(task) => task,
            Err(error) => {
                tracing::warn!(task_id = %id, %error, "ignoring an illegal task event");
                return;
            }
        };
        let old = self.tasks.remove(&id);
        if let Some(old) = &old {
            self.unplace(id, old);
        }
        let agent = task.agent;
        self.dirty.insert(agent);
        let (kind, repo) = match &old {
            Some(old) => (old.kind, old.repo),
            None => (task.kind(), task.repo()),
        };
        let ends_attempt = matches!(
            event,
            TaskEvent::Succeeded { .. }
                | TaskEvent::Failed { .. }
                | TaskEvent::Lost { .. }
                | TaskEvent::Cancelled { .. }
                | TaskEvent::Exhausted { .. }
        );
        if let (true, Some(repo)) = (ends_attempt, repo) {
            // It may have been the repository's probe: others may go now.
            self.wake_gated(&(env.tenant.clone(), repo));
        }
        if task.status.is_terminal() {
            return;
        }
        let (dispatched_at, started_at) = match event {
            _ if !task.status.is_on_agent() => (None, None),
            TaskEvent::Dispatched { .. } => (Some(env.at), None),
            TaskEvent::Started { .. } => (old.as_ref().and_then(|o| o.dispatched_at), Some(env.at)),
            _ => old
                .as_ref()
                .map_or((None, None), |o| (o.dispatched_at, o.started_at)),
        };
        let mut tracked = Tracked {
            tenant: env.tenant.clone(),
            task,
            kind,
            repo,
            seq,
            last_event: env.id,
            correlation: env.correlation,
            key: None,
            dispatching: false,
            gate_refused: false,
            dispatched_at,
            started_at,
            deadline: None,
            last_at: env.at,
        };
        self.place(id, &mut tracked, env.at);
        self.tasks.insert(id, tracked);
    }

    /// Takes a task out of its agent's sets.
    fn unplace(&mut self, id: TaskId, t: &Tracked) {
        if let Some(deadline) = t.deadline {
            self.deadlines.remove(&(deadline, id));
        }
        let Some(agent) = self.agents.get_mut(&t.task.agent) else {
            return;
        };
        if let Some(key) = &t.key {
            agent.waiting.remove(key);
            agent.by_time.remove(&(key.run_at, id));
        }
        agent.holding.remove(&id);
        agent.backoff.remove(&id);
    }

    /// Puts a task into its agent's sets as its status says; `at` is the event's time.
    pub(super) fn place(&mut self, id: TaskId, t: &mut Tracked, at: DateTime<Utc>) {
        let (Some(kind), Some(spec)) = (t.kind, t.task.spec.as_deref()) else {
            tracing::warn!(task_id = %id, "ignoring a task without a policy spec");
            return;
        };
        let agent = self.agents.entry(t.task.agent).or_default();
        match t.task.status {
            TaskStatus::Scheduled | TaskStatus::RetryDue => {
                let run_at = match t.task.status {
                    TaskStatus::Scheduled => t.task.run_at,
                    _ => t.task.retry_due_at,
                };
                let key = WaitKey {
                    priority: Reverse(spec.priority),
                    run_at: run_at.unwrap_or(at),
                    task: id,
                };
                agent.waiting.insert(key);
                agent.by_time.insert((key.run_at, id));
                t.key = Some(key);
            }
            TaskStatus::Dispatched | TaskStatus::Acknowledged => {
                agent.holding.insert(id, (kind, Stage::Dispatched));
                self.arm_timeout(id, t, at);
            }
            TaskStatus::Running => {
                agent.holding.insert(id, (kind, Stage::Running));
                self.arm_timeout(id, t, at);
            }
            TaskStatus::RetryScheduled => {
                agent.backoff.insert(id, t.task.retry_due_at.unwrap_or(at));
            }
            // Failed and lost tasks await the retry enforcer; terminal ones are gone.
            _ => {}
        }
    }

    /// Marks the agents whose tasks the gate refused for `repo` dirty.
    fn wake_gated(&mut self, repo: &(TenantId, RepoId)) {
        if let Some(agents) = self.gated.remove(repo) {
            self.dirty.extend(agents);
        }
    }
}
