//! The restic-fleet vocabulary: what can happen, how it is written down, and where.
//!
//! # Layout
//! Pure modules (no IO): [`ids`], [`subject`], [`policy`], [`schedule`], [`settings`],
//! [`validation`], [`event`], [`envelope`], [`codec`], [`protocol`], [`enroll`], [`task_state`], [`streams`],
//! [`samples`]. One module does IO: [`store`], the event-store client over JetStream.
//!
//! Only this crate knows subject names and the wire format.

pub mod access;
pub mod browse;
pub mod codec;
pub mod enroll;
pub mod envelope;
pub mod event;
pub mod ids;
#[cfg(feature = "sled")]
pub mod local_db;
pub mod metrics_catalog;
pub mod notify;
pub mod policy;
pub mod protocol;
pub mod repeat;
pub mod samples;
pub mod schedule;
pub mod settings;
pub mod store;
pub mod streams;
pub mod subject;
pub mod task_state;
pub mod validation;
