//! restic-fleet's control-plane services and the `fleet` command's building blocks.
//!
//! # Layout
//! - [`up`]: `fleet up`, everything on one machine.
//! - [`local_nats`]: the nats-server child process `fleet up` starts.
//! - [`shutdown`]: the root cancellation token, cancelled by SIGINT/SIGTERM.
//!
//! Services talk to each other only through NATS subjects named by `fleet-events`.

pub mod local_nats;
pub mod shutdown;
pub mod up;
