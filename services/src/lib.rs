//! restic-fleet's control-plane services and the `fleet` command's building blocks.
//!
//! # Layout
//! - [`up`]: `fleet up`, everything on one machine; [`demo`]: its `--demo` agent and policy.
//! - [`clock`]: the system clock, or a manual one for scenarios.
//! - [`follow`]: following the log (catch-up, then live) and appending with retries.
//! - [`heard`]: agents' last heartbeats, kept by `FLEET_HEARTBEATS` across restarts.
//! - [`lease`]: which instance of a leased service acts (compare-and-set, no expiry).
//! - [`local_nats`]: the nats-server child process `fleet up` starts.
//! - [`serve`]: running one service or all of them.
//! - [`telemetry`]: the metric catalogue, the fleet gauges, the `/metrics` listener.
//! - [`shutdown`]: the root cancellation token, cancelled by SIGINT/SIGTERM.
//! - [`scheduler`]: policies and assignments to tasks (pure core and service loop).
//! - [`intake`]: agents' reports to canonical task events (pure verdict and consumer).
//! - [`retry`]: backoff, retry budgets and circuit breakers (pure core).
//! - [`tenant`]: tenants and their tokens (created, issued, revoked: events).
//! - [`api`]: the operator HTTP API (axum): reads ask the projector, writes run commands.
//! - [`command`]: the write side: operator commands decided on an aggregate's history and
//!   appended with expected sequences.
//! - [`projector`]: the read models (sled, from the log) and the queries they answer.
//! - [`enroll`]: the registrar, which registers agents that present an enrollment token.
//!
//! Services talk to each other only through NATS subjects named by `fleet-events`.

pub mod access;
pub mod api;
pub mod clock;
pub mod command;
pub mod demo;
pub mod dispatcher;
pub mod enroll;
pub mod follow;
pub mod heard;
pub mod intake;
pub mod lease;
pub mod local_nats;
pub mod notifier;
pub mod projector;
pub mod retry;
pub mod scheduler;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tenant;
pub mod tls;
pub mod up;
pub mod words;
