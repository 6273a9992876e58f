//! Intake: agents' reports become canonical task events, after checking that the task
//! belongs to the sending agent and that the transition is legal. What fails the checks
//! is parked with its reason and counted; it is never applied.
//!
//! # Layout
//! - `decide`: [`judge`], the pure verdict on one report.
//! - `cache`: task histories kept between reports (speed only, never a verdict).
//! - `service`: [`run`], the durable consumer of `fleet.agent.*.reports`.

mod cache;
mod decide;
mod service;

pub use decide::{Verdict, event_of, judge};
pub use service::{REPORTS_CONSUMER, run};
