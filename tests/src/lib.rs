//! Test harness of restic-fleet: starts the real external processes the end-to-end tests
//! run against.
//!
//! # Layout
//!
//! - [`nats`]: [`NatsServer`], a real `nats-server` with JetStream on a free port of
//!   127.0.0.1, its store and log in a temporary directory; it can be stopped (SIGTERM),
//!   killed (SIGKILL) and restarted on the same port and store. [`HarnessError`] says why
//!   it could not start, including how to install `nats-server` when it is missing.
//! - [`cluster`]: [`NatsCluster`], several such servers joined by routes into one
//!   JetStream cluster, each node with its own store; nodes can be killed and restarted.
//! - [`pki`]: a CA and a `localhost` certificate it signed, as PEM files, for TLS tests.
//! - [`restic`]: a temporary restic repository ([`restic::Repo`]), restic run against
//!   it, and incompressible data to back up.
//! - `tests/integration/`: the end-to-end tests, which use this library.
//! - `benches/`: benchmarks of the JetStream event store.
//!
//! The library depends on no fleet crate, so any crate's tests can use it.

pub mod cluster;
pub mod nats;
pub mod pki;
pub mod restic;

pub use cluster::NatsCluster;
pub use nats::{HarnessError, NatsServer};
