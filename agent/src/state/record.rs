//! The stored task record and its byte layout: key = task UUID bytes then attempt
//! big-endian; value = postcard of [`Header`], then the [`TaskOrder`], then (format 2) the
//! `Option<TaskRequest>` of a task an operator asked for, so scans that need only the
//! stage, kind and times decode the header alone. Records of format 1 (no request) are
//! still read, with no request; records of formats 1 and 2 hold the order's policy spec
//! in the layout of wire schema 1 (no hooks) and are read with no hooks.

use std::fmt;

use chrono::{DateTime, Utc};
use fleet_events::codec::with_layout;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::TaskRequest;
use fleet_events::ids::TaskId;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::TaskOrder;
use serde::{Deserialize, Serialize};

use super::error::StateError;

/// The tree of task records.
pub(crate) const TASKS: &str = "tasks";

/// Bytes in a UUID.
const UUID_LEN: usize = 16;

/// The layout version written first in every record; a build that changes the layout
/// reads older versions by this number. 1: header and order; 2: header, order, request;
/// 3: the order's spec has hooks.
const FORMAT: u16 = 3;
/// The first layout: a header and an order, no request.
const FORMAT_1: u16 = 1;
/// The last layout whose policy specs have no hooks (wire schema 1).
const FORMAT_2: u16 = 2;

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
    /// What an operator asked for (a restore, a refresh); `None` for scheduled tasks.
    pub request: Option<TaskRequest>,
}

/// A record of format 1.
#[derive(Deserialize)]
struct RecordV1 {
    header: Header,
    order: TaskOrder,
}

impl TaskRecord {
    /// A freshly accepted attempt.
    pub(crate) fn accepted(
        order: &TaskOrder,
        request: Option<&TaskRequest>,
        at: DateTime<Utc>,
    ) -> Self {
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
            request: request.cloned(),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, StateError> {
        postcard::to_stdvec(self).map_err(StateError::encode)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let corrupt = |e| StateError::corrupt(TASKS, e);
        let (record, rest) = match check_format(bytes)? {
            FORMAT_1 => {
                let (v1, rest) = with_layout(SCHEMA_VERSION, || {
                    postcard::take_from_bytes::<RecordV1>(bytes)
                })
                .map_err(corrupt)?;
                let record = Self {
                    header: v1.header,
                    order: v1.order,
                    request: None,
                };
                (record, rest)
            }
            FORMAT_2 => with_layout(SCHEMA_VERSION, || postcard::take_from_bytes::<Self>(bytes))
                .map_err(corrupt)?,
            _ => postcard::take_from_bytes::<Self>(bytes).map_err(corrupt)?,
        };
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
    /// The header of a stored record and the bytes after it (the order, and the request
    /// in format 2), without decoding them. A record moved to another stage keeps its
    /// format: its header is written again in front of the same bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, &[u8]), StateError> {
        check_format(bytes)?;
        postcard::take_from_bytes::<Self>(bytes).map_err(|e| StateError::corrupt(TASKS, e))
    }
}

/// The record's format, if this build reads it.
fn check_format(bytes: &[u8]) -> Result<u16, StateError> {
    let (format, _) =
        postcard::take_from_bytes::<u16>(bytes).map_err(|e| StateError::corrupt(TASKS, e))?;
    if !(FORMAT_1..=FORMAT).contains(&format) {
        return Err(StateError::corrupt(
            TASKS,
            format!("record format {format}, this build reads {FORMAT_1} to {FORMAT}"),
        ));
    }
    Ok(format)
}

/// The key of one attempt: the task's UUID bytes, then the attempt big-endian, so the
/// attempts of a task sit together in order.
pub(crate) fn task_key(task: TaskId, attempt: u32) -> [u8; UUID_LEN + 4] {
    let mut key = [0; UUID_LEN + 4];
    key[..UUID_LEN].copy_from_slice(task.uuid().as_bytes());
    key[UUID_LEN..].copy_from_slice(&attempt.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use fleet_events::samples;

    use super::*;

    fn order() -> TaskOrder {
        TaskOrder {
            tenant: samples::tenant(),
            task: samples::TASK,
            attempt: 2,
            policy: samples::POLICY,
            spec: Box::new(samples::policy_spec()),
            dispatched_at: samples::at(0),
        }
    }

    /// What a build of format 1 wrote: the header, then the order.
    #[derive(Serialize)]
    struct WrittenV1<'a> {
        header: &'a Header,
        order: &'a TaskOrder,
    }

    #[test]
    fn a_format_1_record_is_read_with_no_request() {
        let mut header = TaskRecord::accepted(&order(), None, samples::at(1)).header;
        header.format = FORMAT_1;
        header.stage = Stage::Running;
        let bytes = with_layout(SCHEMA_VERSION, || {
            postcard::to_stdvec(&WrittenV1 {
                header: &header,
                order: &order(),
            })
        })
        .expect("encodes");
        let record = TaskRecord::decode(&bytes).expect("format 1 is read");
        assert_eq!(
            (record.header.stage, &record.order, &record.request),
            (Stage::Running, &order(), &None)
        );
        let (read, rest) = Header::decode(&bytes).expect("its header");
        assert_eq!(read, header);
        assert_eq!(
            with_layout(SCHEMA_VERSION, || postcard::from_bytes::<TaskOrder>(rest)),
            Ok(order())
        );
    }

    /// What a build of format 2 wrote: header, order (its spec without hooks), request.
    #[derive(Serialize)]
    struct WrittenV2<'a> {
        header: &'a Header,
        order: &'a TaskOrder,
        request: Option<&'a TaskRequest>,
    }

    #[test]
    fn a_format_2_record_is_read_with_no_hooks_and_format_3_keeps_them() {
        let mut header = TaskRecord::accepted(&order(), None, samples::at(1)).header;
        header.format = FORMAT_2;
        let request = TaskRequest::Refresh;
        let bytes = with_layout(SCHEMA_VERSION, || {
            postcard::to_stdvec(&WrittenV2 {
                header: &header,
                order: &order(),
                request: Some(&request),
            })
        })
        .expect("encodes");
        let record = TaskRecord::decode(&bytes).expect("format 2 is read");
        assert_eq!(record.order, order());
        assert_eq!(record.request, Some(request));

        let hooked = TaskOrder {
            spec: Box::new(samples::hooked_spec()),
            ..order()
        };
        let record = TaskRecord::accepted(&hooked, None, samples::at(1));
        let read = TaskRecord::decode(&record.encode().expect("encodes")).expect("decodes");
        assert_eq!(read.order.spec.hooks, samples::hooked_spec().hooks);
    }

    #[test]
    fn a_request_is_kept_with_its_order() {
        let request = TaskRequest::Restore(samples::restore_request());
        let record = TaskRecord::accepted(&order(), Some(&request), samples::at(1));
        let bytes = record.encode().expect("encodes");
        assert_eq!(postcard::from_bytes::<u16>(&bytes), Ok(FORMAT));
        let read = TaskRecord::decode(&bytes).expect("decodes");
        assert_eq!(read.request, Some(request));
        assert_eq!(read, record);
    }

    #[test]
    fn unknown_formats_are_refused() {
        let mut record = TaskRecord::accepted(&order(), None, samples::at(1));
        record.header.format = FORMAT + 1;
        let bytes = record.encode().expect("encodes");
        let error = TaskRecord::decode(&bytes).expect_err("a newer format");
        assert!(error.to_string().contains("record format 4"), "{error}");
    }
}
