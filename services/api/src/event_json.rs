//! One stored event as the API shows it: `{seq, id, type, occurredAt, tenant, aggregate,
//! correlationId, causationId, summary, data}`, with a one-line summary for people and the
//! event's own fields as camelCase JSON (RFC 3339 times). A token's hash is never shown.

use chrono::{DateTime, Timelike, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{
    AgentEvent, ErrorClass, Event, ExhaustedReason, InterruptedAttempt, LostReason, PolicyEvent,
    RepoEvent, RetentionOutcome, Role, RunDetail, RunSummary, SkipReason, TaskError, TaskEvent,
    TaskRequest, TenantEvent, UnlockOutcome,
};
use fleet_events::ids::{CorrelationId, EventId, TaskId, TenantId};
use fleet_events::policy::PolicySpec;
use fleet_events::settings::{AgentSettings, IoClass};
use fleet_events::store::Stored;
use serde::Serialize;
use serde_json::{Value, json};

use fleet_api_model::event_shapes as dto;
use fleet_api_model::words::{self, bytes, duration};

mod hook;

/// One event of the log, as answered by `/v1/events` and `/v1/tasks/{id}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventJson {
    /// Its stream sequence: its position in the log.
    pub seq: u64,
    pub id: EventId,
    /// The dotted type, such as `task.failed`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub occurred_at: DateTime<Utc>,
    pub tenant: TenantId,
    pub aggregate: AggregateJson,
    pub correlation_id: CorrelationId,
    pub causation_id: Option<EventId>,
    /// One line for people.
    pub summary: String,
    /// The event's own fields.
    pub data: Value,
}

/// The aggregate an event belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct AggregateJson {
    /// `tenant`, `agent`, `policy`, `task` or `repo`.
    pub kind: &'static str,
    pub id: String,
}

impl From<&Stored> for EventJson {
    fn from(stored: &Stored) -> Self {
        let envelope = &stored.envelope;
        let aggregate = envelope.event.aggregate(&envelope.tenant);
        EventJson {
            seq: stored.seq,
            id: envelope.id,
            event_type: envelope.event.event_type().name(),
            occurred_at: envelope.at,
            tenant: envelope.tenant.clone(),
            aggregate: AggregateJson {
                kind: aggregate.kind().token(),
                id: aggregate.to_string(),
            },
            correlation_id: envelope.correlation,
            causation_id: envelope.causation,
            summary: summary(envelope),
            data: data(&envelope.event),
        }
    }
}

/// The event's own fields (not its aggregate's id, which `aggregate` names). A token's
/// SHA-256 is left out.
pub fn data(event: &Event) -> Value {
    if let Some(data) = super::notify_json::data(event) {
        return data;
    }
    match event {
        Event::Tenant(event) => match event {
            TenantEvent::Created { name } => json!({ "name": name }),
            TenantEvent::TokenIssued {
                token, role, label, ..
            } => json!({ "token": token, "role": role, "label": label }),
            TenantEvent::TokenRevoked { token } => json!({ "token": token }),
        },
        Event::Agent { event, .. } => match event {
            AgentEvent::Registered {
                name,
                hostname,
                settings,
            } => json!({ "name": name, "hostname": hostname, "settings": settings }),
            AgentEvent::SettingsChanged { settings } => json!({ "settings": settings }),
            AgentEvent::CameOnline {
                agent_version,
                restic_version,
            } => json!({ "agentVersion": agent_version, "resticVersion": restic_version }),
            AgentEvent::WentOffline { last_seen } => json!({ "lastSeen": last_seen }),
            AgentEvent::Decommissioned => json!({}),
            AgentEvent::KeyAuthorized { nkey } => json!({ "natsKey": nkey }),
        },
        Event::Policy { event, .. } => match event {
            PolicyEvent::Created { spec } | PolicyEvent::Updated { spec } => {
                json!({ "spec": spec })
            }
            PolicyEvent::Paused | PolicyEvent::Resumed | PolicyEvent::Deleted => json!({}),
            PolicyEvent::AssignedToAgent { agent } | PolicyEvent::UnassignedFromAgent { agent } => {
                json!({ "agent": agent })
            }
        },
        Event::Task { event, .. } => task_data(event),
        Event::Repo { event, .. } => match event {
            RepoEvent::CircuitOpened { until, failures } => {
                json!({ "until": until, "failures": failures })
            }
            RepoEvent::CircuitClosed => json!({}),
            RepoEvent::SnapshotsChanged {
                task,
                agent,
                listed_at,
                added,
                removed,
            } => json!({
                "task": task, "agent": agent, "listedAt": listed_at,
                "added": added.iter().map(dto::snapshot_json).collect::<Vec<_>>(),
                "removed": removed.iter().map(dto::snapshot_json).collect::<Vec<_>>(),
            }),
        },
        Event::Rule { .. } | Event::Notification { .. } | Event::Assignment { .. } => json!({}),
    }
}

fn task_data(event: &TaskEvent) -> Value {
    match event {
        TaskEvent::Scheduled {
            policy,
            agent,
            fire_at,
            run_at,
            spec,
        } => json!({
            "policy": policy, "agent": agent, "fireAt": fire_at, "runAt": run_at, "spec": spec,
        }),
        TaskEvent::Skipped {
            policy,
            agent,
            fire_at,
            reason,
        } => {
            let reason = match reason {
                SkipReason::Overlap { running } => json!({ "kind": "overlap", "running": running }),
                SkipReason::Missed => json!({ "kind": "missed" }),
            };
            json!({ "policy": policy, "agent": agent, "fireAt": fire_at, "reason": reason })
        }
        TaskEvent::Dispatched { agent, attempt } => json!({ "agent": agent, "attempt": attempt }),
        TaskEvent::Acknowledged { attempt } | TaskEvent::Started { attempt } => {
            json!({ "attempt": attempt })
        }
        TaskEvent::Succeeded { attempt, summary } => {
            json!({ "attempt": attempt, "summary": dto::run_summary(summary) })
        }
        TaskEvent::Failed { attempt, error } => json!({
            "attempt": attempt,
            "error": error_data(error),
        }),
        TaskEvent::RetryScheduled {
            attempt,
            due_at,
            delay_ms,
        } => json!({ "attempt": attempt, "dueAt": due_at, "delayMs": delay_ms }),
        TaskEvent::RetryDue => json!({}),
        TaskEvent::Exhausted { attempts, reason } => {
            let (reason, class) = match reason {
                ExhaustedReason::NotRetryable(class) => ("notRetryable", Some(class)),
                ExhaustedReason::BudgetSpent => ("budgetSpent", None),
            };
            json!({ "attempts": attempts, "reason": reason, "errorClass": class })
        }
        TaskEvent::Cancelled { reason } => json!({ "reason": reason }),
        TaskEvent::Lost { attempt, reason } => {
            let reason = match reason {
                LostReason::LeaseExpired => "leaseExpired",
                LostReason::AgentRestarted => "agentRestarted",
                LostReason::AgentDecommissioned => "agentDecommissioned",
            };
            json!({ "attempt": attempt, "reason": reason })
        }
        TaskEvent::UnlockRan {
            attempt,
            interrupted,
            outcome,
        } => {
            let interrupted: Vec<Value> = interrupted
                .iter()
                .map(|i| json!({ "task": i.task, "attempt": i.attempt }))
                .collect();
            let (outcome, error) = match outcome {
                UnlockOutcome::Unlocked => ("unlocked", Value::Null),
                UnlockOutcome::Failed(error) => ("failed", error_data(error)),
            };
            json!({
                "attempt": attempt, "interrupted": interrupted, "outcome": outcome, "error": error,
            })
        }
        TaskEvent::HookRan { attempt, hook } => hook::data(*attempt, hook),
        TaskEvent::RetentionApplied {
            attempt,
            kept,
            removed,
            removed_ids,
            outcome,
        } => {
            let (outcome, error) = match outcome {
                RetentionOutcome::Applied => ("applied", Value::Null),
                RetentionOutcome::Failed(error) => ("failed", error_data(error)),
            };
            json!({
                "attempt": attempt, "kept": kept, "removed": removed, "removedIds": removed_ids,
                "outcome": outcome, "error": error,
            })
        }
        TaskEvent::Requested {
            policy,
            agent,
            run_at,
            spec,
            request,
            by,
        } => json!({
            "policy": policy, "agent": agent, "runAt": run_at, "kind": spec.kind.as_str(),
            "repository": spec.repository.url, "request": dto::request_json(request), "by": by,
        }),
    }
}

fn error_data(error: &TaskError) -> Value {
    json!({ "class": error.class, "message": error.message, "exitCode": error.exit_code })
}

/// One short line saying what happened, for people. Times are UTC, with the date only when
/// it is not the event's own day.
pub fn summary(envelope: &Envelope) -> String {
    let at = |t: DateTime<Utc>| time(t, envelope.at);
    if let Some(line) = super::notify_json::summary(&envelope.event, &at) {
        return line;
    }
    match &envelope.event {
        Event::Tenant(event) => match event {
            TenantEvent::Created { name } => format!("tenant created: {name}"),
            TenantEvent::TokenIssued {
                token, role, label, ..
            } => format!("{} token {label:?} issued ({token})", role_name(*role)),
            TenantEvent::TokenRevoked { token } => format!("token {token} revoked"),
        },
        Event::Agent { event, .. } => match event {
            AgentEvent::Registered { name, hostname, .. } => {
                format!("registered as {name} ({hostname})")
            }
            AgentEvent::SettingsChanged { settings } => {
                format!("settings changed: {}", settings_line(settings))
            }
            AgentEvent::CameOnline {
                agent_version,
                restic_version,
            } => format!("came online (agent {agent_version}, restic {restic_version})"),
            AgentEvent::WentOffline { last_seen } => {
                format!("went offline, last seen {}", at(*last_seen))
            }
            AgentEvent::Decommissioned => "decommissioned".into(),
            AgentEvent::KeyAuthorized { nkey } => format!("NATS key {nkey} authorized"),
        },
        Event::Policy { event, .. } => match event {
            PolicyEvent::Created { spec } => format!("created {}", policy_line(spec)),
            PolicyEvent::Updated { spec } => format!("updated {}", policy_line(spec)),
            PolicyEvent::Paused => "paused".into(),
            PolicyEvent::Resumed => "resumed".into(),
            PolicyEvent::Deleted => "deleted".into(),
            PolicyEvent::AssignedToAgent { agent } => format!("assigned to agent {agent}"),
            PolicyEvent::UnassignedFromAgent { agent } => format!("unassigned from agent {agent}"),
        },
        Event::Task { task, event } => task_summary(*task, event, &at),
        Event::Repo { event, .. } => match event {
            RepoEvent::CircuitOpened { until, failures } => format!(
                "circuit opened after {failures} network failures in a row, until {}",
                at(*until)
            ),
            RepoEvent::CircuitClosed => "circuit closed".into(),
            RepoEvent::SnapshotsChanged { added, removed, .. } => {
                snapshots_line(added.len(), removed.len())
            }
        },
        Event::Rule { .. } | Event::Notification { .. } | Event::Assignment { .. } => {
            envelope.event.event_type().name().to_owned()
        }
    }
}

fn snapshots_line(added: usize, removed: usize) -> String {
    let mut parts = Vec::new();
    if added > 0 {
        parts.push(format!(
            "{added} {} added",
            plural(added as u64, "snapshot")
        ));
    }
    if removed > 0 {
        parts.push(format!(
            "{removed} {} removed",
            plural(removed as u64, "snapshot")
        ));
    }
    format!("inventory: {}", parts.join(", "))
}

fn task_summary(task: TaskId, event: &TaskEvent, at: &dyn Fn(DateTime<Utc>) -> String) -> String {
    match event {
        TaskEvent::Scheduled {
            agent,
            fire_at,
            run_at,
            spec,
            ..
        } => {
            let mut line = format!(
                "{} {:?} scheduled on agent {agent} for {}",
                spec.kind.as_str(),
                spec.name,
                at(*fire_at)
            );
            if run_at != fire_at {
                line.push_str(&format!(", not before {}", at(*run_at)));
            }
            line
        }
        TaskEvent::Skipped {
            fire_at, reason, ..
        } => match reason {
            SkipReason::Overlap { running } => {
                format!(
                    "run for {} skipped: task {running} still running",
                    at(*fire_at)
                )
            }
            SkipReason::Missed => format!("run for {} skipped: missed", at(*fire_at)),
        },
        TaskEvent::Dispatched { agent, attempt } => {
            format!("attempt {attempt} dispatched to agent {agent}")
        }
        TaskEvent::Acknowledged { attempt } => {
            format!("attempt {attempt} acknowledged by the agent")
        }
        TaskEvent::Started { attempt } => format!("attempt {attempt} started"),
        TaskEvent::Succeeded { attempt, summary } => format!(
            "attempt {attempt} succeeded in {}: {}",
            duration(summary.duration_ms),
            outcome_line(summary)
        ),
        TaskEvent::Failed { attempt, error } => failed_line(*attempt, error),
        TaskEvent::RetryScheduled {
            attempt,
            due_at,
            delay_ms,
        } => format!(
            "retry {attempt} due at {} in {}",
            at(*due_at),
            duration(*delay_ms)
        ),
        TaskEvent::RetryDue => "retry due: waiting for dispatch".into(),
        TaskEvent::Exhausted { attempts, reason } => {
            let why = match reason {
                ExhaustedReason::NotRetryable(class) => {
                    format!("{} errors are not retried", class_name(*class))
                }
                ExhaustedReason::BudgetSpent => "retry budget spent".into(),
            };
            format!(
                "gave up after {attempts} {}: {why}",
                plural(*attempts, "attempt")
            )
        }
        TaskEvent::Cancelled { reason } => format!("cancelled: {}", one_line(reason)),
        TaskEvent::Lost { attempt, reason } => {
            let why = match reason {
                LostReason::LeaseExpired => "the agent was silent past its lease",
                LostReason::AgentRestarted => "the agent restarted",
                LostReason::AgentDecommissioned => "the agent was decommissioned",
            };
            format!("attempt {attempt} lost: {why}")
        }
        TaskEvent::UnlockRan {
            attempt,
            interrupted,
            outcome,
        } => {
            let what = match outcome {
                UnlockOutcome::Unlocked => format!("stale locks removed before attempt {attempt}"),
                UnlockOutcome::Failed(error) => {
                    let class = class_name(error.class);
                    let why = match one_line(&error.message) {
                        message if message.is_empty() => class,
                        message => format!("{class}: {message}"),
                    };
                    format!("restic unlock failed before attempt {attempt} ({why})")
                }
            };
            match interrupted_line(task, interrupted) {
                Some(line) => format!("{what}; {line}"),
                None => what,
            }
        }
        TaskEvent::RetentionApplied {
            attempt,
            kept,
            removed,
            removed_ids,
            outcome,
        } => {
            let removed_line = removed_line(*removed, removed_ids);
            match outcome {
                RetentionOutcome::Applied => format!(
                    "retention applied after attempt {attempt}: {removed_line}, {kept} {} kept",
                    plural(*kept, "snapshot")
                ),
                RetentionOutcome::Failed(error) => {
                    let class = class_name(error.class);
                    let why = match one_line(&error.message) {
                        message if message.is_empty() => class,
                        message => format!("{class}: {message}"),
                    };
                    let line = format!(
                        "retention not applied after attempt {attempt}: restic forget failed ({why})"
                    );
                    match removed {
                        0 => line,
                        _ => format!("{line}; {removed_line} before"),
                    }
                }
            }
        }
        TaskEvent::HookRan { attempt, hook } => hook::summary(*attempt, hook),
        TaskEvent::Requested {
            agent,
            run_at,
            spec,
            request,
            by,
            ..
        } => {
            let what = match request {
                TaskRequest::Restore(r) => {
                    let paths = match r.include.len() {
                        0 => "everything".to_owned(),
                        1 => one_line(&r.include[0]),
                        n => format!("{n} paths"),
                    };
                    let dry = if r.dry_run { " (dry run)" } else { "" };
                    format!(
                        "restore{dry} of {paths} from snapshot {} into {} (overwrite {})",
                        r.snapshot.get(..8).unwrap_or(&r.snapshot),
                        one_line(&r.target),
                        r.overwrite.as_str()
                    )
                }
                TaskRequest::Refresh => {
                    format!("snapshot inventory refresh of {}", spec.repository.url)
                }
            };
            format!(
                "{what} requested by {} on agent {agent} for {}",
                one_line(by),
                at(*run_at)
            )
        }
    }
}

/// Most removed snapshots a summary names by id.
const MAX_IDS_NAMED: usize = 3;

/// `no snapshot removed`, `1 snapshot removed (481bd44e)`, or several:
/// `5 snapshots removed (a, b, c and 2 more)`; `removed` may count more than `ids` names.
fn removed_line(removed: u64, ids: &[String]) -> String {
    if removed == 0 {
        return "no snapshot removed".into();
    }
    let head = format!("{removed} {} removed", plural(removed, "snapshot"));
    let mut names: Vec<String> = ids
        .iter()
        .take(MAX_IDS_NAMED)
        .map(|id| one_line(id))
        .collect();
    let more = removed.saturating_sub(names.len() as u64);
    if more > 0 && !names.is_empty() {
        names.push(format!("{more} more"));
    }
    match names.as_slice() {
        [] => head,
        [one] => format!("{head} ({one})"),
        [first @ .., last] => format!("{head} ({} and {last})", first.join(", ")),
    }
}

/// Most interrupted attempts a summary names one by one.
const MAX_NAMED: usize = 2;

/// `attempt 1 was interrupted`, `task T attempt 3 was interrupted` (another task), or
/// several: `attempt 1 and task T attempt 3 were interrupted`, `…, and 2 more were …`.
fn interrupted_line(own: TaskId, interrupted: &[InterruptedAttempt]) -> Option<String> {
    let name = |i: &InterruptedAttempt| match i.task == own {
        true => format!("attempt {}", i.attempt),
        false => format!("task {} attempt {}", i.task, i.attempt),
    };
    let mut names: Vec<String> = interrupted.iter().take(MAX_NAMED).map(name).collect();
    let more = interrupted.len().saturating_sub(MAX_NAMED);
    if more > 0 {
        names.push(format!("{more} more"));
    }
    let list = match names.as_slice() {
        [] => return None,
        [one] => return Some(format!("{one} was interrupted")),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
    };
    Some(format!("{list} were interrupted"))
}

fn failed_line(attempt: u32, error: &TaskError) -> String {
    let class = class_name(error.class);
    match one_line(&error.message) {
        message if message.is_empty() => format!("attempt {attempt} failed ({class})"),
        message => format!("attempt {attempt} failed ({class}): {message}"),
    }
}

fn outcome_line(summary: &RunSummary) -> String {
    match &summary.detail {
        RunDetail::Backup(b) => {
            let mut line = match &b.snapshot_id {
                Some(id) => format!("snapshot {id}, "),
                None => String::new(),
            };
            line.push_str(&format!(
                "{} new, {} changed of {} {}, {} added",
                b.files_new,
                b.files_changed,
                b.total_files_processed,
                plural(b.total_files_processed, "file"),
                bytes(b.data_added_bytes)
            ));
            if b.unreadable_files > 0 {
                line.push_str(&format!(", {} unreadable (partial)", b.unreadable_files));
            }
            line
        }
        RunDetail::Check => "check found no errors".into(),
        RunDetail::Prune(p) => format!(
            "{} {} removed, {} kept",
            p.snapshots_removed,
            plural(p.snapshots_removed, "snapshot"),
            p.snapshots_kept
        ),
        RunDetail::Restore(r) => {
            let verb = if r.dry_run {
                "would restore"
            } else {
                "restored"
            };
            let mut line = format!(
                "{verb} {} {} ({}) from snapshot {}",
                r.files_restored,
                plural(r.files_restored, "file"),
                bytes(r.bytes_restored),
                r.snapshot.get(..8).unwrap_or(&r.snapshot)
            );
            if r.files_skipped > 0 {
                line.push_str(&format!(", {} existing left alone", r.files_skipped));
            }
            if r.errors > 0 {
                line.push_str(&format!(", {} {}", r.errors, plural(r.errors, "error")));
            }
            line
        }
        RunDetail::Refresh(r) => format!(
            "{} {} in the repository",
            r.snapshots,
            plural(r.snapshots, "snapshot")
        ),
    }
}

fn policy_line(spec: &PolicySpec) -> String {
    let schedule = words::schedule(&spec.schedule, false);
    format!(
        "{:?}: {} of {}, {schedule}",
        spec.name,
        spec.kind.as_str(),
        spec.repository.url
    )
}

fn settings_line(s: &AgentSettings) -> String {
    let mut parts = vec![format!("maxConcurrent {}", s.max_concurrent)];
    for (kind, limit) in [
        ("backup", s.per_kind.backup),
        ("check", s.per_kind.check),
        ("prune", s.per_kind.prune),
    ] {
        if let Some(limit) = limit {
            parts.push(format!("{kind} {limit}"));
        }
    }
    if let Some(quota) = s.cpu_quota_percent {
        parts.push(format!("cpuQuota {quota}%"));
    }
    if let Some(kib) = s.upload_kib_s {
        parts.push(format!("upload {kib} KiB/s"));
    }
    if let Some(kib) = s.download_kib_s {
        parts.push(format!("download {kib} KiB/s"));
    }
    parts.push(format!("nice {}", s.nice));
    parts.push(match s.io_class {
        IoClass::Idle => "io idle".into(),
        IoClass::BestEffort { level } => format!("io best-effort {level}"),
    });
    parts.join(", ")
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::ReadOnly => "read-only",
        Role::Enroll => "enrollment",
    }
}

fn class_name(class: ErrorClass) -> String {
    class.as_str().replace('_', " ")
}

fn plural(n: impl Into<u64>, word: &str) -> String {
    if n.into() == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// Longest free text (an error message, a reason) a summary quotes.
const MAX_TEXT: usize = 160;

/// The first non-blank line of `text`, cut to [`MAX_TEXT`] bytes with an ellipsis.
fn one_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.len() <= MAX_TEXT {
        return line.to_owned();
    }
    let mut end = MAX_TEXT;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// `12:03:04Z` (`12:00Z` on the minute), with the date in front when `t` is not on the
/// same UTC day as `reference`.
fn time(t: DateTime<Utc>, reference: DateTime<Utc>) -> String {
    let clock = if t.second() == 0 && t.nanosecond() == 0 {
        t.format("%H:%MZ")
    } else {
        t.format("%H:%M:%SZ")
    };
    if t.date_naive() == reference.date_naive() {
        clock.to_string()
    } else {
        format!("{} {clock}", t.format("%Y-%m-%d"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use fleet_events::event::{BackupSummary, EventType};
    use fleet_events::ids::{AgentId, TaskId};
    use fleet_events::samples;

    use super::*;

    fn stored(envelope: Envelope) -> Stored {
        Stored {
            seq: 7,
            subject: envelope.subject(),
            envelope,
        }
    }

    /// The JSON of the sample event named `name`.
    fn json(name: &str) -> Value {
        let (_, envelope) = samples::all()
            .into_iter()
            .find(|(n, _)| n == name)
            .expect("sample");
        serde_json::to_value(EventJson::from(&stored(envelope))).expect("json")
    }

    fn summary_of(event: TaskEvent) -> String {
        let mut envelope = samples::envelope(EventType::TaskStarted);
        envelope.event = Event::Task {
            task: samples::TASK,
            event,
        };
        summary(&envelope)
    }

    #[test]
    fn the_envelope_is_rendered_in_camel_case_with_rfc3339_times() {
        let json = serde_json::to_value(EventJson::from(&stored(samples::envelope(
            EventType::TaskFailed,
        ))))
        .expect("json");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["type"], "task.failed");
        assert_eq!(json["occurredAt"], "2026-11-22T02:13:21Z");
        assert_eq!(json["tenant"], "acme");
        assert_eq!(json["aggregate"]["kind"], "task");
        assert_eq!(json["aggregate"]["id"], samples::TASK.to_string());
        assert_eq!(
            json["correlationId"],
            "00000000-0000-0000-0000-00000000f001"
        );
        assert_eq!(json["causationId"], "00000000-0000-0000-0000-00000000e000");
        assert_eq!(
            json["summary"],
            "attempt 1 failed (lock): unable to create lock in backend: repository is already locked"
        );
        assert_eq!(json["data"]["attempt"], 1);
        assert_eq!(json["data"]["error"]["class"], "lock");
        assert_eq!(json["data"]["error"]["exitCode"], 1);
        let mut uncaused = samples::envelope(EventType::TaskRetryDue);
        uncaused.causation = None;
        let json = serde_json::to_value(EventJson::from(&stored(uncaused))).expect("json");
        assert_eq!(json["causationId"], Value::Null);
        assert_eq!(json["aggregate"]["kind"], "task");
    }

    #[test]
    fn every_event_renders_an_object_and_one_short_line() {
        for (name, envelope) in samples::all() {
            let json = EventJson::from(&stored(envelope.clone()));
            assert_eq!(
                json.event_type,
                envelope.event.event_type().name(),
                "{name}"
            );
            assert!(json.data.is_object(), "{name}: {}", json.data);
            assert!(!json.summary.is_empty(), "{name}");
            assert!(!json.summary.contains('\n'), "{name}: {}", json.summary);
            assert!(json.summary.len() <= 300, "{name}: {}", json.summary);
        }
    }

    #[test]
    fn a_token_hash_is_never_shown() {
        for (name, envelope) in samples::all() {
            let Event::Tenant(TenantEvent::TokenIssued { sha256, .. }) = &envelope.event else {
                continue;
            };
            let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
            let json = EventJson::from(&stored(envelope.clone()));
            let text = serde_json::to_string(&json).expect("json");
            assert!(!text.contains("sha256"), "{name}: {text}");
            assert!(!text.contains(&hex), "{name}: {text}");
            let keys: Vec<&String> = json.data.as_object().expect("object").keys().collect();
            assert_eq!(keys, ["label", "role", "token"], "{name}");
        }
    }

    #[test]
    fn times_in_data_are_rfc3339_strings() {
        let data = |t| EventJson::from(&stored(samples::envelope(t))).data;
        assert_eq!(
            data(EventType::TaskScheduled)["fireAt"],
            "2026-11-22T02:13:20Z"
        );
        assert_eq!(
            data(EventType::TaskScheduled)["runAt"],
            "2026-11-22T02:15:37Z"
        );
        assert_eq!(
            data(EventType::TaskRetryScheduled)["dueAt"],
            "2026-11-22T02:18:20Z"
        );
        assert_eq!(
            data(EventType::AgentWentOffline)["lastSeen"],
            "2026-11-22T02:11:50Z"
        );
        assert_eq!(
            data(EventType::RepoCircuitOpened)["until"],
            "2026-11-22T02:14:20Z"
        );
        let spec = &data(EventType::PolicyCreated)["spec"];
        assert_eq!(spec["name"], "nightly home");
        assert_eq!(spec["repository"]["secret"], "nas-main");
        let settings = &data(EventType::AgentSettingsChanged)["settings"];
        assert_eq!(settings["maxConcurrent"], 4);
    }

    #[test]
    fn run_summaries_are_camel_case_per_kind() {
        let data = EventJson::from(&stored(samples::envelope(EventType::TaskSucceeded))).data;
        let summary = &data["summary"];
        assert_eq!(summary["kind"], "backup");
        assert_eq!(summary["durationMs"], 61_250);
        assert_eq!(summary["backup"]["snapshotId"], "5e1c0a3f");
        assert_eq!(summary["backup"]["dataAddedBytes"], 1_048_576);
        let prune = samples::all()
            .into_iter()
            .find(|(name, _)| name == "task.succeeded+prune")
            .expect("sample")
            .1;
        let data = EventJson::from(&stored(prune)).data;
        assert_eq!(data["summary"]["prune"]["snapshotsRemoved"], 3);
        assert_eq!(data["summary"].get("backup"), None);
    }

    #[test]
    fn task_summaries_say_what_happened() {
        let agent = samples::AGENT;
        assert_eq!(
            summary(&samples::envelope(EventType::TaskScheduled)),
            format!(
                "backup \"nightly home\" scheduled on agent {agent} for 02:13:20Z, not before 02:15:37Z"
            )
        );
        let noon = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        assert_eq!(
            summary_of(TaskEvent::Scheduled {
                policy: samples::POLICY,
                agent,
                fire_at: noon,
                run_at: noon,
                spec: Box::new(samples::policy_spec()),
            }),
            format!("backup \"nightly home\" scheduled on agent {agent} for 12:00Z")
        );
        assert_eq!(
            summary_of(TaskEvent::Failed {
                attempt: 2,
                error: TaskError::new(
                    ErrorClass::Network,
                    "connection refused\nretrying later",
                    None
                ),
            }),
            "attempt 2 failed (network): connection refused"
        );
        assert_eq!(
            summary_of(TaskEvent::Failed {
                attempt: 1,
                error: TaskError::new(ErrorClass::MissingRepository, "  ", Some(10)),
            }),
            "attempt 1 failed (missing repository)"
        );
        assert_eq!(
            summary_of(TaskEvent::RetryScheduled {
                attempt: 3,
                due_at: Utc.with_ymd_and_hms(2026, 11, 22, 12, 3, 4).unwrap(),
                delay_ms: 30_000,
            }),
            "retry 3 due at 12:03:04Z in 30 s"
        );
        assert_eq!(
            summary(&samples::envelope(EventType::TaskSucceeded)),
            "attempt 1 succeeded in 1 min 1 s: snapshot 5e1c0a3f, 12 new, 3 changed of 4015 files, 1.0 MiB added"
        );
        let partial = BackupSummary {
            total_files_processed: 1,
            unreadable_files: 2,
            ..BackupSummary::default()
        };
        assert_eq!(
            summary_of(TaskEvent::Succeeded {
                attempt: 1,
                summary: RunSummary {
                    kind: fleet_events::policy::TaskKind::Backup,
                    duration_ms: 250,
                    detail: RunDetail::Backup(partial),
                },
            }),
            "attempt 1 succeeded in 250 ms: 0 new, 0 changed of 1 file, 0 B added, 2 unreadable (partial)"
        );
        assert_eq!(
            summary(&samples::envelope(EventType::TaskExhausted)),
            "gave up after 6 attempts: auth errors are not retried"
        );
        assert_eq!(
            summary(&samples::envelope(EventType::TaskLost)),
            "attempt 1 lost: the agent was silent past its lease"
        );
        let running = TaskId::from_uuid(uuid::Uuid::from_u128(0xc00));
        assert_eq!(
            summary(&samples::envelope(EventType::TaskSkipped)),
            format!("run for 02:13:20Z skipped: task {running} still running")
        );
        assert_eq!(
            summary(&samples::envelope(EventType::TaskDispatched)),
            format!("attempt 1 dispatched to agent {agent}")
        );
    }

    #[test]
    fn other_summaries_say_what_happened() {
        let line = |t| summary(&samples::envelope(t));
        assert_eq!(
            line(EventType::AgentSettingsChanged),
            "settings changed: maxConcurrent 4, backup 2, check 1, prune 1, cpuQuota 50%, \
             upload 10240 KiB/s, nice 10, io best-effort 7"
        );
        assert_eq!(
            line(EventType::TenantTokenIssued),
            "read-only token \"dashboard\" issued (00000000-0000-0000-0000-000000000d01)"
        );
        assert_eq!(
            line(EventType::PolicyCreated),
            "created \"nightly home\": backup of sftp:backup@nas:/srv/restic, cron 0 2 * * * (Europe/Berlin)"
        );
        assert_eq!(
            line(EventType::AgentWentOffline),
            "went offline, last seen 02:11:50Z"
        );
        assert_eq!(
            line(EventType::RepoCircuitOpened),
            "circuit opened after 5 network failures in a row, until 02:14:20Z"
        );
        assert_eq!(
            line(EventType::AgentCameOnline),
            "came online (agent 0.1.0, restic 0.14.0)"
        );
        let other = AgentId::generate();
        let mut assigned = samples::envelope(EventType::PolicyAssigned);
        assigned.event = Event::Policy {
            policy: samples::POLICY,
            event: PolicyEvent::AssignedToAgent { agent: other },
        };
        assert_eq!(summary(&assigned), format!("assigned to agent {other}"));
    }

    #[test]
    fn an_unlock_says_what_it_did_and_which_attempts_were_interrupted() {
        let other = TaskId::from_uuid(uuid::Uuid::from_u128(0xc02));
        assert_eq!(
            summary(&samples::envelope(EventType::TaskUnlockRan)),
            format!(
                "stale locks removed before attempt 2; attempt 1 and task {other} attempt 3 \
                 were interrupted"
            )
        );
        let unlock = |interrupted: Vec<InterruptedAttempt>, outcome| TaskEvent::UnlockRan {
            attempt: 2,
            interrupted,
            outcome,
        };
        let first = InterruptedAttempt {
            task: samples::TASK,
            attempt: 1,
        };
        assert_eq!(
            summary_of(unlock(vec![first], samples::unlock_failed())),
            "restic unlock failed before attempt 2 (auth: Fatal: wrong password or no key \
             found); attempt 1 was interrupted"
        );
        let silent = UnlockOutcome::Failed(TaskError::new(ErrorClass::Network, "\n", None));
        assert_eq!(
            summary_of(unlock(vec![], silent)),
            "restic unlock failed before attempt 2 (network)"
        );
        let many: Vec<InterruptedAttempt> = (1..=5)
            .map(|n| InterruptedAttempt {
                task: other,
                attempt: n,
            })
            .collect();
        assert_eq!(
            summary_of(unlock(many, UnlockOutcome::Unlocked)),
            format!(
                "stale locks removed before attempt 2; task {other} attempt 1, task {other} \
                 attempt 2 and 3 more were interrupted"
            )
        );

        let done = json("task.unlock_ran");
        assert_eq!(done["type"], "task.unlock_ran");
        assert_eq!(done["data"]["attempt"], 2);
        assert_eq!(done["data"]["outcome"], "unlocked");
        assert_eq!(done["data"]["error"], Value::Null);
        assert_eq!(
            done["data"]["interrupted"],
            json!([
                { "task": samples::TASK, "attempt": 1 },
                { "task": other, "attempt": 3 },
            ])
        );
        let failed = json("task.unlock_ran+failed");
        assert_eq!(failed["data"]["outcome"], "failed");
        assert_eq!(failed["data"]["error"]["class"], "auth");
        assert_eq!(failed["data"]["error"]["exitCode"], 1);
        assert_eq!(
            failed["data"]["error"]["message"],
            "Fatal: wrong password or no key found"
        );
    }

    #[test]
    fn a_retention_says_what_it_removed_or_why_it_failed() {
        assert_eq!(
            summary(&samples::envelope(EventType::TaskRetentionApplied)),
            "retention applied after attempt 2: 2 snapshots removed (481bd44e and bdda295f), \
             3 snapshots kept"
        );
        let retention = |kept, removed, ids: &[&str], outcome| TaskEvent::RetentionApplied {
            attempt: 4,
            kept,
            removed,
            removed_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            outcome,
        };
        assert_eq!(
            summary_of(retention(1, 0, &[], RetentionOutcome::Applied)),
            "retention applied after attempt 4: no snapshot removed, 1 snapshot kept"
        );
        assert_eq!(
            summary_of(retention(3, 1, &["481bd44e"], RetentionOutcome::Applied)),
            "retention applied after attempt 4: 1 snapshot removed (481bd44e), 3 snapshots kept"
        );
        // More than the report names (it names at most 100), and more than a line names.
        assert_eq!(
            summary_of(retention(
                10,
                250,
                &["a1", "b2", "c3", "d4"],
                RetentionOutcome::Applied
            )),
            "retention applied after attempt 4: 250 snapshots removed (a1, b2, c3 and 247 \
             more), 10 snapshots kept"
        );
        assert_eq!(
            summary_of(retention(0, 0, &[], samples::retention_failed())),
            "retention not applied after attempt 4: restic forget failed (lock: unable to \
             create lock in backend: repository is already locked by PID 21630 on vm by root \
             (UID 0, GID 0))"
        );
        let silent = RetentionOutcome::Failed(TaskError::new(ErrorClass::Timeout, "", None));
        assert_eq!(
            summary_of(retention(2, 1, &["481bd44e"], silent)),
            "retention not applied after attempt 4: restic forget failed (timeout); 1 snapshot \
             removed (481bd44e) before"
        );

        let applied = json("task.retention_applied");
        assert_eq!(applied["type"], "task.retention_applied");
        assert_eq!(
            applied["data"],
            json!({
                "attempt": 2, "kept": 3, "removed": 2, "removedIds": ["481bd44e", "bdda295f"],
                "outcome": "applied", "error": null,
            })
        );
        let failed = json("task.retention_applied+failed");
        assert_eq!(failed["data"]["outcome"], "failed");
        assert_eq!(failed["data"]["removed"], 0);
        assert_eq!(failed["data"]["removedIds"], json!([]));
        assert_eq!(failed["data"]["error"]["class"], "lock");
        assert_eq!(failed["data"]["error"]["exitCode"], 1);
    }

    #[test]
    fn times_show_the_date_only_on_another_day() {
        let reference = Utc.with_ymd_and_hms(2026, 11, 22, 23, 59, 0).unwrap();
        let same = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 5).unwrap();
        let next = Utc.with_ymd_and_hms(2026, 11, 23, 0, 30, 0).unwrap();
        assert_eq!(time(same, reference), "00:00:05Z");
        assert_eq!(time(next, reference), "2026-11-23 00:30Z");
    }

    #[test]
    fn free_text_reads_as_one_short_line() {
        // Durations and sizes are `fleet_api_model::words`', tested there.
        assert_eq!(one_line("\n  first  \nsecond"), "first");
        let long = "é".repeat(200);
        let cut = one_line(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= MAX_TEXT + '…'.len_utf8());
    }
}
