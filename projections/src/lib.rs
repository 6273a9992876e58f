//! restic-fleet read models: projections of the event log stored in sled, each event
//! applied exactly once, checkpointed by stream sequence, rebuildable from sequence 1.
//!
//! # Layout
//!
//! - [`projection`]: the [`Projection`] trait a read model implements: its name, its
//!   trees, its subject filter, and a pure `apply` of one event through a sled
//!   transaction.
//! - [`runtime`]: [`Checkpointed`], one projection over a sled database: applies an
//!   event, or a batch of events, and moves the checkpoint in the same transaction, skips
//!   what is at or below the checkpoint, records what is undecodable or rejected; reset,
//!   status, dump; a rebuild in memory ([`runtime::Rebuild`]), written out in bulk.
//! - [`drive`]: catch-up with a bounded replay, live following until a
//!   `CancellationToken` is cancelled, [`rebuild`] from sequence 1 (several models from
//!   one replay: [`drive::rebuild_together`]); the messages ready at once are applied as
//!   one batch.
//! - [`checkpoint`]: the `meta` and `rejected` trees the runtime keeps beside a model.
//! - [`retention`]: how long a model keeps finished work per task (the log's clock, a
//!   horizon per UTC day), pure; the runtime retires in `runtime/retire.rs`.
//! - [`error`]: [`ApplyError`] (from a model) and [`ProjectionError`] (from the runtime).
//! - [`tasks`]: the task read model: each task's state and per-tenant status counts.
//! - [`agents`]: the agent read model: registration, settings, liveness, held tasks per
//!   kind (saturation) and tasks in backoff.
//! - [`runs`]: the run read model: each finished attempt with its result, newest first
//!   per tenant, and the last success of each policy on each agent.
//! - [`policies`]: the policy read model: spec, pause, deletion, assigned agents,
//!   revision; listed per tenant by name; next fire times.
//! - [`repos`]: the repository read model: each repository's circuit breaker.
//! - [`notifications`]: the notification read model: live notification rules,
//!   notifications newest first with their delivery state, overdue policies per agent.
//! - [`snapshots`]: the snapshot read model: each repository's snapshots (the inventory
//!   agents' listings build), its URL and policies, the newest listing that changed it;
//!   pages newest first per repository or across a tenant's repositories.
//!
//! # Guarantees
//!
//! - A model's state change and its checkpoint are one sled transaction (one per batch
//!   of events): after a crash both are there or neither is. What was not yet flushed is
//!   lost with its checkpoint and applied again from the log, so every event takes effect
//!   exactly once.
//! - An undecodable message or an event the model rejects never stops a projection and
//!   is never dropped silently: it is recorded in `rejected` in the transaction that moves
//!   the checkpoint past it, counted in `fleet_projection_rejected_events_total` and
//!   logged.
//! - A rebuild stores the same bytes as the incremental run over the same log, and a
//!   batch the same bytes as its events applied one at a time.
//! - Projections never publish: they only read the log.

pub mod agents;
pub mod checkpoint;
pub mod drive;
pub mod error;
pub mod metrics_catalog;
pub mod notifications;
pub mod policies;
pub mod projection;
pub mod repos;
pub mod retention;
pub mod runs;
pub mod runtime;
pub mod snapshots;
mod stored;
pub mod tasks;
#[cfg(test)]
mod testing;

pub use agents::{AgentView, Agents};
pub use checkpoint::{RejectedEvent, Status};
pub use drive::{Progress, rebuild};
pub use error::{ApplyError, ProjectionError};
pub use notifications::{
    NotificationFilter, NotificationState, NotificationView, Notifications, Overdue, RuleView,
};
pub use policies::{Policies, PolicyView};
pub use projection::Projection;
pub use repos::{Circuit, RepoView, Repos};
pub use runs::{LastSuccess, RunFilter, RunOutcome, RunOutcomeKind, RunView, Runs};
pub use runtime::{Checkpointed, Entry, Outcome};
pub use snapshots::{
    Cursor as SnapshotCursor, Page as SnapshotPage, PolicyRef, RepoInventory, SnapshotFilter,
    SnapshotView, Snapshots,
};
pub use tasks::{TaskFilter, TaskView, Tasks};
