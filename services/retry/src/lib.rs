//! The retry-budget enforcer: classified failures become retries with backoff, or end the task; per-repository circuit breakers.
//!
//! # Layout
//! - [`backoff`]: the classification table, the budget, capped exponential backoff with
//!   full, deterministic jitter.
//! - [`circuit`]: one repository's circuit breaker, also used by the dispatcher to hold
//!   tasks.
//! - [`enforcer`]: the state folded from the log and the decisions (events to append)
//!   that follow from it.
//!
//! - `service`: [`run`], the loop that follows the log and appends the decisions.
//!
//! Everything but `service` is pure: time comes in as an argument, randomness is derived
//! from ids, and decisions are returned, never written.

pub mod backoff;
pub mod circuit;
pub mod enforcer;
mod service;

pub use backoff::{RetryDecision, decide, jitter_for, retryable, retryable_under};
pub use circuit::{Breaker, BreakerImage, CircuitConfig, CircuitState, Outcome};
pub use enforcer::{Enforcer, RESEND_AFTER, ToAppend};
pub use service::run;
