//! The stored task record and its byte layout: key = task UUID bytes then attempt
//! big-endian; value = postcard of [`Header`] then the [`TaskOrder`], so scans that need
//! only the stage, kind and times decode the header alone.

use std::fmt;

use chrono::{DateTime, Utc};
use fleet_events::ids::TaskId;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::TaskOrder;
use serde::{Deserialize, Serialize};

use super::error::StateError;

/// The tree of task records.
pub(crate) const TASKS: &str = "tasks";

/// Bytes in a UUID.
const UUID_LEN: usize = 16;

/// The layout version written first in every record; a future build that changes the
/// layout reads older versions by this number.
const FORMAT: u16 = 1;

/// Where one attempt stands on this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Recorded and acknowledged; restic has not started (waiting for a free slot).
    Accepted,
    /// restic was started.
    Running,
    /// The final report is in the outbox; the record stays for deduplication.
    Finished,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Accepted => "accepted",
            Stage::Running => "running",
            Stage::Finished => "finished",
        })
    }
}

/// The part of a record that scans read: stage, kind and when each stage was reached
/// (the `at` of the report that moved it there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    format: u16,
    pub stage: Stage,
    pub kind: TaskKind,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub accepted_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// One attempt as the agent stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub header: Header,
    pub order: TaskOrder,
}

impl TaskRecord {
    /// A freshly accepted attempt.
    pub(crate) fn accepted(order: &TaskOrder, at: DateTime<Utc>) -> Self {
        Self {
            header: Header {
                format: FORMAT,
                stage: Stage::Accepted,
                kind: order.spec.kind,
                accepted_at: at,
                started_at: None,
                finished_at: None,
            },
            order: order.clone(),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, StateError> {
        postcard::to_stdvec(self).map_err(StateError::encode)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        check_format(bytes)?;
        let (record, rest) =
            postcard::take_from_bytes::<Self>(bytes).map_err(|e| StateError::corrupt(TASKS, e))?;
        if !rest.is_empty() {
            return Err(StateError::corrupt(
                TASKS,
                format!("{} bytes after a record", rest.len()),
            ));
        }
        Ok(record)
    }
}

impl Header {
    /// The header of a stored record and the order's bytes after it, without decoding
    /// the order.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), StateError> {
        check_format(bytes)?;
        postcard::take_from_bytes::<Self>(bytes).map_err(|e| StateError::corrupt(TASKS, e))
    }
}

fn check_format(bytes: &[u8]) -> Result<(), StateError> {
    let (format, _) =
        postcard::take_from_bytes::<u16>(bytes).map_err(|e| StateError::corrupt(TASKS, e))?;
    if format != FORMAT {
        return Err(StateError::corrupt(
            TASKS,
            format!("record format {format}, this build reads {FORMAT}"),
        ));
    }
    Ok(())
}

/// The key of one attempt: the task's UUID bytes, then the attempt big-endian, so the
/// attempts of a task sit together in order.
pub(crate) fn task_key(task: TaskId, attempt: u32) -> [u8; UUID_LEN + 4] {
    let mut key = [0; UUID_LEN + 4];
    key[..UUID_LEN].copy_from_slice(task.uuid().as_bytes());
    key[UUID_LEN..].copy_from_slice(&attempt.to_be_bytes());
    key
}
