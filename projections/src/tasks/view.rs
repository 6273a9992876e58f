//! [`TaskView`]: the compact, stored form of one task, and the keys of the task trees.

use chrono::serde::{ts_microseconds, ts_microseconds_option};
use chrono::{DateTime, Utc};
use fleet_events::event::ErrorClass;
use fleet_events::ids::{AgentId, PolicyId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::task_state::{Task, TaskStatus};
use serde::{Deserialize, Serialize};

/// One task as the read model stores it (postcard): its [`Task`] state without the
/// policy spec, plus its tenant and kind.
/// Field names are camelCase in JSON; postcard does not store names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// The tenant whose subject the task's events are stored under.
    pub tenant: TenantId,
    /// [`TaskStatus::as_str`]: stored as text so that the view does not depend on the
    /// order of the status enum.
    pub status: String,
    /// The policy it runs.
    pub policy: PolicyId,
    /// The agent it runs on.
    pub agent: AgentId,
    /// The policy's kind; `None` for a skipped task.
    pub kind: Option<TaskKind>,
    /// The current attempt: 0 before the first dispatch.
    pub attempt: u32,
    /// The class of the last failure.
    pub last_error: Option<ErrorClass>,
    /// The schedule's fire time.
    #[serde(with = "ts_microseconds")]
    pub fire_at: DateTime<Utc>,
    /// Not dispatched before this; `None` for a skipped task.
    #[serde(with = "ts_microseconds_option")]
    pub run_at: Option<DateTime<Utc>>,
    /// When the pending retry is due.
    #[serde(with = "ts_microseconds_option")]
    pub retry_due_at: Option<DateTime<Utc>>,
}

impl TaskView {
    /// The view of `task` of `tenant`; `kind` is kept from the scheduling event, since
    /// the view does not keep the spec it comes from.
    pub fn new(task: &Task, tenant: TenantId, kind: Option<TaskKind>) -> Self {
        Self {
            tenant,
            status: task.status.as_str().to_owned(),
            policy: task.policy,
            agent: task.agent,
            kind,
            attempt: task.attempt,
            last_error: task.last_error,
            fire_at: task.fire_at,
            run_at: task.run_at,
            retry_due_at: task.retry_due_at,
        }
    }

    /// The status, `None` if the stored text is not one.
    pub fn status(&self) -> Option<TaskStatus> {
        TaskStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == self.status)
    }

    /// The task state to fold the next event onto (without its spec, which
    /// [`Task::apply`] does not read).
    pub fn to_task(&self) -> Option<Task> {
        Some(Task {
            status: self.status()?,
            policy: self.policy,
            agent: self.agent,
            fire_at: self.fire_at,
            run_at: self.run_at,
            spec: None,
            attempt: self.attempt,
            last_error: self.last_error,
            retry_due_at: self.retry_due_at,
            request: None,
        })
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The `tasks.by_id` key: the task's UUID bytes.
pub(crate) fn task_key(task: TaskId) -> [u8; 16] {
    *task.uuid().as_bytes()
}

/// The prefix of a tenant's `tasks.counts` keys: the tenant, a zero byte.
pub(crate) fn counts_prefix(tenant: &TenantId) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key
}

/// The `tasks.counts` key of one tenant and status: the tenant, a zero byte, the status.
pub(crate) fn counts_key(tenant: &TenantId, status: TaskStatus) -> Vec<u8> {
    let mut key = counts_prefix(tenant);
    key.extend_from_slice(status.as_str().as_bytes());
    key
}

/// A stored count: a big-endian u64.
pub(crate) fn decode_count(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}
