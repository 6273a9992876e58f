//! restic-fleet's control plane as one process: running one service or all of them, `fleet
//! up`, and the crates the services live in, under the names the `fleet` binary (the
//! `fleet` package beside it) and the tests use.
//!
//! # Layout
//! - [`serve`]: running one service or all of them; [`up`]: `fleet up`, everything on one
//!   machine; [`demo`]: its `--demo` agent and policy; [`local_nats`]: the nats-server
//!   child process `fleet up` starts.
//! - [`telemetry`]: the metric catalogue of every service, the Prometheus recorder and the
//!   `/metrics` listener.
//! - Re-exported crates (each service is its own crate under `services/`): [`clock`],
//!   [`follow`], [`heard`], [`lease`], [`shutdown`] (`fleet-runtime`); [`scheduler`],
//!   [`dispatcher`], [`intake`], [`retry`], [`notifier`], [`projector`], [`command`],
//!   [`api`]; [`tenant`], [`enroll`], [`access`] (`fleet-identity`); [`words`]
//!   (`fleet-api-model`); [`tls`] (`fleet-https-client`).
//!
//! Services talk to each other only through NATS subjects named by `fleet-events`; a
//! service's crate uses another's only for a pure core it shares (the dispatcher gates
//! dispatches with the retry enforcer's circuit fold; the API runs `fleet-command`'s
//! decisions).

pub mod demo;
pub mod local_nats;
pub mod serve;
pub mod telemetry;
pub mod up;

pub use fleet_api as api;
pub use fleet_api_model::words;
pub use fleet_command as command;
pub use fleet_dispatcher as dispatcher;
pub use fleet_https_client as tls;
pub use fleet_identity::{access, enroll, tenant};
pub use fleet_intake as intake;
pub use fleet_notifier as notifier;
pub use fleet_projector as projector;
pub use fleet_retry as retry;
pub use fleet_runtime::{clock, follow, heard, lease, shutdown, snapshot};
pub use fleet_scheduler as scheduler;
