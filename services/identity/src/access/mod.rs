//! Access control enforced by the NATS server: the access service follows the agents'
//! events of every tenant, renders the server's authorization config (one user per agent
//! key, limited to the agent's own subjects; the control plane's users; the enrolling
//! user), writes it when it changes and tells the server to reload it (SIGHUP); and it
//! creates each working agent's task consumer, which agents may not create themselves.
//!
//! - `book`: who may connect as which agent (pure).
//! - `render`: the config text (pure).
//! - `service`: the loop, and `fleet nats-config`'s one-shot rendering.

pub mod book;
pub mod render;
mod service;

pub(crate) use service::ensure_consumer;
pub use service::{AccessConfig, Reload, render_bootstrap, render_once, run};
