//! The envelope every event travels in: who, when, why, and the event itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::ids::{CorrelationId, EventId, TenantId};

/// The schema version this build writes. Decoders refuse newer versions with a clear error
/// rather than misreading them.
pub const SCHEMA_VERSION: u16 = 1;

/// Header naming the event type (`task.scheduled`), so NATS tooling can filter the log
/// without decoding it.
pub const HEADER_EVENT_TYPE: &str = "Fleet-Event-Type";
/// Header carrying the schema version.
pub const HEADER_SCHEMA: &str = "Fleet-Schema";

/// One event with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Schema version the event was written with; always first on the wire.
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
            schema: SCHEMA_VERSION,
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
            schema: SCHEMA_VERSION,
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
}
