//! What every control-plane service runs on: the clock, following the log and appending
//! with retries, leases, agents' last heartbeats, shutdown, and the process's metrics text.
//!
//! - [`clock`]: the system clock, or a manual one for scenarios.
//! - [`follow`]: following the log (catch-up, then live) and appending with retries.
//! - [`heard`]: agents' last heartbeats, kept by `FLEET_HEARTBEATS` across restarts.
//! - [`lease`]: which instance of a leased service acts (compare-and-set, no expiry).
//! - [`snapshot`]: a service's folded state written to a file with the sequence it covers,
//!   read back at start (any doubt about it: a full replay).
//! - [`pace`]: at most once an interval (gauges that cost a pass over the state).
//! - [`shutdown`]: the root cancellation token, cancelled by SIGINT/SIGTERM.
//! - [`metrics_text`]: the Prometheus text of this process, for whichever server shows it.

pub mod clock;
pub mod follow;
pub mod heard;
pub mod lease;
pub mod metrics_text;
pub mod pace;
pub mod shutdown;
pub mod snapshot;
