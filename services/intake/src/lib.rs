//! Intake: agents' reports become canonical task events, after checking that the task
//! belongs to the sending agent and that the transition is legal; snapshot listings
//! become changes of the repository's inventory (`repo.snapshots_changed`), after checking
//! that the sending agent ran an attempt on that repository. What fails the checks is
//! parked with its reason and counted; it is never applied.
//!
//! # Layout
//! - `decide`: [`judge`], the pure verdict on one report.
//! - `listing`: [`judge_listing`], the pure verdict on a snapshot listing (who may write
//!   a repository's inventory).
//! - `inventory`: the repository's inventory folded from `repo.snapshots_changed`, and
//!   [`inventory::decide`], the pure decision that turns a listing part into those events.
//! - `cache`: task histories kept between reports (speed only, never a verdict).
//! - `snapshots`: recording an accepted listing (inventories kept between reports).
//! - `service`: [`run`], the durable consumer of `fleet.agent.*.reports`.

mod cache;
mod decide;
pub mod inventory;
mod listing;
mod service;
mod snapshots;

pub use decide::{Verdict, event_of, judge};
pub use listing::{Accepted, MAX_CLOCK_AHEAD, judge_listing};
pub use service::{REPORTS_CONSUMER, run};
