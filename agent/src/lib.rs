//! The restic-fleet agent: what it knows about restic, and what it can check about its host.
//!
//! # Layout
//! - [`restic`]: restic knowledge, pure (no IO): [`restic::output`] parses restic's
//!   `--json` output and `restic version`; [`mod@restic::classify`] turns an exit code and
//!   stderr into an [`ErrorClass`](fleet_events::event::ErrorClass).
//! - [`probe`]: `fleet-agent probe`, what this host can do (restic version and its
//!   capabilities, CPU quotas by cgroup v2 or v1, `nice`/`ionice`); pure parts plus one IO
//!   entry point, [`probe::run`].
//! - [`executor`]: runs one task's restic (secrets, command line, priority, CPU quota,
//!   timeout, cancel; on Linux it dies with the agent), and after a successful backup the
//!   policy's retention on its own snapshots (`restic forget`, never `--prune`); restores
//!   (through a staging directory in the target, or dry) and snapshot listings (a refresh,
//!   and after every successful backup or prune) that operators' requests ask for; live
//!   progress from restic's status lines (a backup's, a restore's from restic 0.16), and
//!   one page of a snapshot's directory for a browse request (`restic ls`).
//! - [`runtime`]: the agent at work: its task subject, slots, outbox and heartbeats,
//!   `restic unlock` after a crash, live progress out on core NATS (dropped, never kept,
//!   when it cannot go now) and browse requests answered on their reply subject.
//! - [`state`]: local state in sled: accepted attempts and their stage, the report outbox,
//!   repositories to unlock.
//! - [`config`]: the agent's YAML configuration, in two phases: raw values with
//!   `FLEET_AGENT_*` overrides, then a validated config; every problem reported at once.
//! - [`enroll`]: the agent's identity: preassigned, stored, or registered now with a
//!   tenant enrollment token.
//! - [`install`]: `fleet-agent install`, the systemd unit (launchd plist on macOS) that
//!   runs the agent at boot; pure rendering plus [`install::write_unit`].
//! - [`status`]: `fleet-agent status`, the `status.json` the runtime writes into the
//!   state directory on every heartbeat (the running agent locks its sled state).
//! - [`cli`]: the command line of the `fleet-agent` binary (`main.rs`), parsed by hand.
//!
//! The restic tests run the real restic binary against temporary repositories; they skip
//! with a message when restic is not installed.

pub mod cli;
pub mod config;
pub mod enroll;
pub mod executor;
pub mod install;
pub mod metrics_catalog;
pub mod probe;
pub mod restic;
pub mod runtime;
pub mod state;
pub mod status;
