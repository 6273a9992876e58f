//! The envelope every event travels in: who, when, why, and the event itself.

use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::ids::{CorrelationId, EventId, TenantId};

/// Schema 1, the first: what this build writes for every message that holds no policy
/// spec with hooks, so builds that read only schema 1 keep reading those.
pub const SCHEMA_VERSION: u16 = 1;
/// Schema 2: a policy spec ends with its `hooks`. Written only for messages holding a spec
/// with hooks (a policy event, a task's scheduled or requested event, a run command).
pub const SCHEMA_HOOKS: u16 = 2;
/// The newest schema this build reads. Decoders refuse newer versions with a clear error
/// rather than misreading them.
pub const NEWEST_SCHEMA: u16 = SCHEMA_HOOKS;

/// Header naming the event type (`task.scheduled`), so NATS tooling can filter the log
/// without decoding it.
pub const HEADER_EVENT_TYPE: &str = "Fleet-Event-Type";
/// Header carrying the schema version.
pub const HEADER_SCHEMA: &str = "Fleet-Schema";

/// One event with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema version the event was written with; always first on the wire. The
    /// constructors pick the oldest that holds the event ([`Event::schema`]).
    pub schema: u16,
    pub id: EventId,
    /// When it happened.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub tenant: TenantId,
    /// The operation this event is part of.
    pub correlation: CorrelationId,
    /// The event that led to this one, if any.
    pub causation: Option<EventId>,
    pub event: Event,
}

impl Envelope {
    /// A new event of `tenant` at `at`, starting its own correlation.
    pub fn new(tenant: TenantId, at: DateTime<Utc>, event: Event) -> Self {
        let id = EventId::generate();
        Self {
            schema: event.schema(),
            id,
            at,
            tenant,
            correlation: CorrelationId::from_uuid(id.uuid()),
            causation: None,
            event,
        }
    }

    /// A new event at `at` caused by `cause`: same tenant and correlation.
    pub fn caused_by(cause: &Envelope, at: DateTime<Utc>, event: Event) -> Self {
        Self {
            schema: event.schema(),
            id: EventId::generate(),
            at,
            tenant: cause.tenant.clone(),
            correlation: cause.correlation,
            causation: Some(cause.id),
            event,
        }
    }

    /// The subject the event is stored under.
    pub fn subject(&self) -> String {
        self.event.subject(&self.tenant).to_string()
    }

    /// Whether `subject` is [`Envelope::subject`], told without building it (projections
    /// ask this of every event they apply).
    pub fn belongs_on(&self, subject: &str) -> bool {
        let mut rest = subject;
        let same = write!(Prefix(&mut rest), "{}", self.event.subject(&self.tenant)).is_ok();
        same && rest.is_empty()
    }
}

/// A writer that consumes what is written from the front of a string, failing at the
/// first difference.
struct Prefix<'a, 'b>(&'a mut &'b str);

impl fmt::Write for Prefix<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        *self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::event::EventType;
    use crate::samples;

    #[test]
    fn belongs_on_is_subject_equality() {
        for kind in EventType::ALL {
            let envelope = samples::envelope(*kind);
            let subject = envelope.subject();
            assert!(envelope.belongs_on(&subject), "{subject}");
            assert!(
                !envelope.belongs_on(&subject[..subject.len() - 1]),
                "shorter"
            );
            assert!(!envelope.belongs_on(&format!("{subject}x")), "longer");
            assert!(!envelope.belongs_on(&subject.replacen("fleet", "fleat", 1)));
            assert!(!envelope.belongs_on(""));
        }
    }
}
