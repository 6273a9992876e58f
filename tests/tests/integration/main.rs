//! End-to-end scenarios against a real nats-server (and, where a scenario needs it, real
//! restic). One test binary; each scenario module starts its own server.

mod agent;
mod agent_crash;
mod agent_limits;
mod api;
mod api_writes;
mod circuit;
mod cluster;
mod compose;
mod compose_nats;
mod dashboard;
mod dashboard_live;
mod dispatcher;
mod enroll;
mod events_api;
mod follow;
mod intake;
mod inventory;
mod isolation;
mod lease;
mod limits;
mod liveness;
mod notifier;
mod notify_api;
mod outage;
mod packages;
mod projector;
mod replicated;
mod retention;
mod retry;
mod scheduler;
mod scripted_agent;
mod snapshots_api;
mod store;
mod support;
mod tls;
