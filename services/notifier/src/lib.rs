//! The notifier: follows the log, tells operators what they must hear (rules per tenant,
//! delivered to webhooks, Slack, ntfy, Gotify, healthchecks), and records when a policy on
//! an agent is overdue or caught up.
//!
//! `core` decides (pure); `facts` and `overdue` hold what it folds and judges; `render`
//! words a message, `target` shapes its HTTP request; `secrets` reads target URLs and
//! keys; `service` does the IO.

mod core;
mod facts;
mod overdue;
mod render;
mod secrets;
mod service;
pub mod target;

pub use core::{Action, Job, Notifier, NotifierConfig, ToAppend, backoff};
pub use secrets::Secrets;
pub use service::{NotifierSettings, run};

#[cfg(test)]
mod tests;
