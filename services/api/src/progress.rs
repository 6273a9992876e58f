//! `GET /v1/tasks/{id}/progress`: a task's live progress as server-sent events. Progress
//! comes from the agent holding the task on `fleet.agent.<agent>.progress` (core NATS,
//! never stored): restic's status lines, about one a second. The task's own events come
//! from the log, so the stream also says when an attempt starts and ends, and closes once
//! the task has ended.
//!
//! Frames: `event: progress` (data: [`ProgressJson`]) and `event: status` (data: the task
//! event as in `/v1/events`, plus `status`). The task must be the caller's: another
//! tenant's task has no history here (404). Only progress naming this task, this tenant and
//! the subject's own agent is passed on (the server lets an agent publish only on its own
//! subject).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event as Frame, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use fleet_events::codec::Wire;
use fleet_events::event::Event;
use fleet_events::ids::{AgentId, TaskId, TenantId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::Progress;
use fleet_events::store::{ReadError, Stored};
use fleet_events::subject::{AgentSubject, AggregateId, Channel, EventSubject};
use fleet_events::task_state::{Task, TaskStatus};
use futures::{Stream, StreamExt};
use serde::Serialize;

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::event_json::EventJson;
use super::events;

/// How often an idle progress stream sends `: keepalive`.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One progress update as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressJson {
    pub task: TaskId,
    pub attempt: u32,
    pub agent: AgentId,
    pub kind: TaskKind,
    pub at: DateTime<Utc>,
    /// 0 to 100, two decimals.
    pub percent: f64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub seconds_elapsed: u64,
    pub seconds_remaining: Option<u64>,
    pub errors: u64,
}

impl From<&Progress> for ProgressJson {
    fn from(p: &Progress) -> Self {
        ProgressJson {
            task: p.task,
            attempt: p.attempt,
            agent: p.agent,
            kind: p.kind,
            at: p.at,
            percent: (p.fraction() * 10_000.0).round() / 100.0,
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            files_done: p.files_done,
            files_total: p.files_total,
            seconds_elapsed: p.seconds_elapsed,
            seconds_remaining: p.seconds_remaining,
            errors: p.errors,
        }
    }
}

/// Whether a progress message may be shown for `task` of `tenant` held by `agent`.
pub fn belongs(p: &Progress, task: TaskId, tenant: &TenantId, agent: AgentId) -> bool {
    p.task == task && &p.tenant == tenant && p.agent == agent
}

/// What the stream carries, in the order it happened.
enum Item {
    Progress(Progress),
    Stored(Result<Stored, ReadError>),
}

/// `GET /v1/tasks/{id}/progress`.
pub async fn stream(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Frame, axum::Error>>>, ApiError> {
    let task: TaskId = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a task id")))?;
    let history = events::history(&api.store, &caller.tenant, AggregateId::Task(task)).await?;
    let mut state: Option<Task> = None;
    for stored in &history {
        if let Event::Task { event, .. } = &stored.envelope.event
            && let Ok(next) = Task::fold(state.as_ref(), event)
        {
            state = Some(next);
        }
    }
    let Some(state) = state else {
        return Err(ApiError::not_found(format!("no task {task}")));
    };
    let agent = state.agent;
    let subject = AgentSubject {
        agent,
        channel: Channel::Progress,
    }
    .to_string();
    let client = api.store.jetstream().client();
    let progress = client
        .subscribe(subject)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot follow the agent's progress: {e}")))?;
    let filter = EventSubject {
        tenant: caller.tenant.clone(),
        aggregate: AggregateId::Task(task),
    }
    .to_string();
    let from = history.last().map_or(1, |s| s.seq + 1);
    let log = api
        .store
        .follow(&filter, from)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read the event log: {e}")))?;
    let tenant = caller.tenant.clone();
    let first = std::iter::once(status_frame(history.last(), state.status));
    let ended = state.status.is_terminal();
    let updates = futures::stream::select(
        progress.filter_map(move |message| {
            let tenant = tenant.clone();
            async move {
                let p = Progress::from_wire(&message.payload).ok()?;
                belongs(&p, task, &tenant, agent).then_some(Item::Progress(p))
            }
        }),
        log.map(Item::Stored),
    );
    let live = futures::stream::unfold(
        (updates.boxed(), Some(state), ended),
        move |(mut updates, mut state, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match updates.next().await? {
                    Item::Progress(p) => {
                        let frame = Frame::default()
                            .event("progress")
                            .json_data(ProgressJson::from(&p));
                        return Some((frame, (updates, state, false)));
                    }
                    Item::Stored(Ok(stored)) => {
                        let Event::Task { event, .. } = &stored.envelope.event else {
                            continue;
                        };
                        let Ok(next) = Task::fold(state.as_ref(), event) else {
                            continue;
                        };
                        let status = next.status;
                        state = Some(next);
                        let frame = status_frame(Some(&stored), status);
                        return Some((frame, (updates, state, status.is_terminal())));
                    }
                    Item::Stored(Err(error)) => {
                        tracing::warn!(%error, "a progress stream lost the log; it ends");
                        return None;
                    }
                }
            }
        },
    );
    let frames = futures::stream::iter(first)
        .chain(live)
        .take_until(api.shutdown.clone().cancelled_owned());
    Ok(Sse::new(frames).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keepalive")))
}

/// `event: status` with the task's status and the event that set it.
fn status_frame(stored: Option<&Stored>, status: TaskStatus) -> Result<Frame, axum::Error> {
    let mut data = match stored {
        Some(stored) => serde_json::to_value(EventJson::from(stored)).unwrap_or_default(),
        None => serde_json::json!({}),
    };
    data["status"] = serde_json::Value::from(status.as_str());
    Frame::default().event("status").json_data(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_events::samples;

    #[test]
    fn only_the_tasks_own_progress_is_shown_with_a_percentage() {
        let p = samples::progress();
        let (task, tenant, agent) = (p.task, p.tenant.clone(), p.agent);
        assert!(belongs(&p, task, &tenant, agent));
        assert!(!belongs(&p, TaskId::generate(), &tenant, agent));
        assert!(!belongs(&p, task, &TenantId::new("other").unwrap(), agent));
        assert!(!belongs(&p, task, &tenant, AgentId::generate()));
        let json = ProgressJson::from(&p);
        assert_eq!(json.percent, 42.5);
        let value = serde_json::to_value(&json).unwrap();
        assert_eq!(value["bytesTotal"], 1_000_000_000u64);
        assert_eq!(value["secondsRemaining"], 42);
    }
}
