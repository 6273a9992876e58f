//! The write side: operator commands (from the API) decided by pure functions against the
//! aggregate's history, then appended with that history's last sequence as the expected
//! one. A concurrent change is either decided again on the new history or, when the
//! caller named the version it saw (`If-Match`), a conflict it is told about: never lost.

pub mod agent;
pub mod document;
pub mod policy;
pub mod request;
pub mod rule;
pub mod rule_document;
pub mod task;

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::Event;
use fleet_events::ids::{CorrelationId, TenantId};
use fleet_events::store::{Append, AppendError, EventStore, Expect, ReadError, Stored};
use fleet_events::subject::EventSubject;
use fleet_events::validation::Invalid;

/// How often a command is decided again after losing a race to another writer.
const MAX_DECISIONS: usize = 3;

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The input is wrong: every problem, each with its field.
    #[error("{0}")]
    Invalid(Invalid),
    #[error("{0}")]
    NotFound(String),
    /// The aggregate is not in a state that allows the command, or it changed since the
    /// version the caller named.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<ReadError> for CommandError {
    fn from(error: ReadError) -> Self {
        CommandError::Unavailable(format!("cannot read the event log: {error}"))
    }
}

/// What a command wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The aggregate's last stream sequence after the command.
    pub version: u64,
    /// The events appended, in order; empty when nothing needed to change.
    pub events: Vec<Event>,
}

impl Written {
    /// The appended events' dotted type names.
    pub fn types(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.event_type().name()).collect()
    }
}

/// Runs one command on the aggregate at `subject`: reads its history, lets `decide` say
/// which events to append (all belong to that aggregate), appends them in order with
/// expected sequences. Losing a race decides again on the new history, unless the
/// caller named the `version` it saw: then the command is refused as a conflict.
pub async fn execute<F>(
    store: &EventStore,
    subject: &EventSubject,
    version: Option<u64>,
    now: DateTime<Utc>,
    decide: F,
) -> Result<Written, CommandError>
where
    F: Fn(&[Stored]) -> Result<Vec<Event>, CommandError>,
{
    for _ in 0..MAX_DECISIONS {
        let history = store.history(subject).await?;
        let decided = decide(&history.events);
        if let Some(seen) = version
            && seen != history.last_seq
        {
            // A missing object is 404 whatever version the caller names.
            return Err(match decided {
                Err(CommandError::NotFound(message)) => CommandError::NotFound(message),
                _ => changed_since(subject, seen, history.last_seq),
            });
        }
        let events = decided?;
        if events.is_empty() {
            return Ok(Written {
                version: history.last_seq,
                events,
            });
        }
        match append_chain(store, &subject.tenant, &events, history.last_seq, now).await {
            Ok(last) => {
                return Ok(Written {
                    version: last,
                    events,
                });
            }
            Err(Chain::LostRace) if version.is_none() => continue,
            Err(Chain::LostRace) => {
                return Err(CommandError::Conflict(format!(
                    "{} changed while this change was written; read it again",
                    what(subject)
                )));
            }
            Err(Chain::Partial(done)) => {
                return Err(CommandError::Conflict(format!(
                    "{} changed after {done} of {} events were written; read it and send \
                     the change again",
                    what(subject),
                    events.len()
                )));
            }
            Err(Chain::Failed(error, 0)) => return Err(append_failed(error)),
            Err(Chain::Failed(error, done)) => {
                return Err(CommandError::Unavailable(format!(
                    "{done} of {} events were written, then: {error}; send the change again",
                    events.len()
                )));
            }
        }
    }
    Err(CommandError::Conflict(format!(
        "{} kept changing while this change was decided; try again",
        what(subject)
    )))
}

fn changed_since(subject: &EventSubject, seen: u64, now: u64) -> CommandError {
    CommandError::Conflict(format!(
        "{} changed since version {seen} (it is at version {now}); read it again",
        what(subject)
    ))
}

/// "policy 0192…" for messages.
fn what(subject: &EventSubject) -> String {
    format!("{} {}", subject.aggregate.kind().token(), subject.aggregate)
}

/// Maps a store failure other than a lost race.
pub(crate) fn append_failed(error: AppendError) -> CommandError {
    match error {
        AppendError::Conflict { .. } => {
            CommandError::Conflict("the record changed while it was written; try again".into())
        }
        other => CommandError::Unavailable(other.to_string()),
    }
}

enum Chain {
    /// The first event's expected sequence was stale: nothing was written.
    LostRace,
    /// This many events were written before another writer got in between.
    Partial(usize),
    /// The store failed after this many events were written.
    Failed(AppendError, usize),
}

/// Appends `events` in order, each expecting the previous one's sequence (the first
/// `last_seq`); all share one correlation id and each has its own msg id (its event id),
/// so a retried send is stored once.
async fn append_chain(
    store: &EventStore,
    tenant: &TenantId,
    events: &[Event],
    mut last_seq: u64,
    now: DateTime<Utc>,
) -> Result<u64, Chain> {
    let correlation = CorrelationId::generate();
    for (done, event) in events.iter().enumerate() {
        let mut envelope = Envelope::new(tenant.clone(), now, event.clone());
        envelope.correlation = correlation;
        let msg_id = envelope.id.to_string();
        let append = Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::LastSeq(last_seq),
        };
        match store.append(append).await {
            Ok(appended) => last_seq = appended.seq,
            Err(AppendError::Conflict { .. }) if done == 0 => return Err(Chain::LostRace),
            Err(AppendError::Conflict { .. }) => return Err(Chain::Partial(done)),
            Err(error) => return Err(Chain::Failed(error, done)),
        }
    }
    Ok(last_seq)
}
