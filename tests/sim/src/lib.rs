//! The fleet simulator: a real control plane (`fleet up`, with its own nats-server that
//! enforces per-agent credentials) and N simulated agents that speak the agent protocol
//! over their own connections, measured from outside.
//!
//! Each simulated agent registers with an enrollment token and its own nkey (as fleet-agent
//! does), waits until the rendered authorization admits its key, consumes its own durable
//! task consumer, acknowledges, starts and finishes each task after a set time (succeeding,
//! or failing its first attempt with a network error at a set rate), and heartbeats every
//! interval. Each agent is assigned its own hourly policies, all firing at the same minute
//! and spread by the policy's jitter: one top-of-hour burst.
//!
//! # Layout
//! - this file: [`SimConfig`] and [`run`], the phases in order.
//! - `control`: `fleet up` as a child process, the control plane's connection, the tenant,
//!   the token and the policies (through the write side's commands).
//! - `agent`: one simulated agent.
//! - `measure`: CPU and RSS of processes from `/proc`, the control plane's `/metrics`,
//!   percentiles.
//! - `report`: the figures and how they print.

pub mod agent;
pub mod control;
pub mod measure;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use fleet_events::ids::{AgentId, PolicyId};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use agent::{Behaviour, Tally};
use measure::Sampler;
use report::Report;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub agents: usize,
    pub policies_per_agent: usize,
    pub heartbeat_every: Duration,
    /// How long each simulated task "runs".
    pub run_for: Duration,
    /// Percentage of tasks whose first attempt fails (network error, retried).
    pub fail_percent: u32,
    /// The policies' jitter: each (policy, agent) pair fires up to this much after the hour.
    pub jitter_secs: u32,
    /// How long after the policies exist the burst fires, at least.
    pub lead: Duration,
    /// Registrations in flight at once.
    pub register_concurrency: usize,
    /// Policy commands in flight at once.
    pub command_concurrency: usize,
    /// The `fleet` binary.
    pub fleet_bin: PathBuf,
    /// The longest wait for the burst to drain before giving up.
    pub drain_timeout: Duration,
}

impl SimConfig {
    /// The configuration from `FLEET_SIM_*` variables (see README), defaulting to the
    /// issue's target: 10,000 agents, 3 hourly policies each, 30 s heartbeats.
    pub fn from_env(fleet_bin: PathBuf) -> Self {
        let num = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        Self {
            agents: num("FLEET_SIM_AGENTS", 10_000) as usize,
            policies_per_agent: num("FLEET_SIM_POLICIES_PER_AGENT", 3) as usize,
            heartbeat_every: Duration::from_secs(num("FLEET_SIM_HEARTBEAT_SECS", 30)),
            run_for: Duration::from_secs(num("FLEET_SIM_RUN_SECS", 60)),
            fail_percent: num("FLEET_SIM_FAIL_PERCENT", 5) as u32,
            jitter_secs: num("FLEET_SIM_JITTER_SECS", 600) as u32,
            lead: Duration::from_secs(num("FLEET_SIM_LEAD_SECS", 60)),
            register_concurrency: num("FLEET_SIM_REGISTER_CONCURRENCY", 1000) as usize,
            command_concurrency: num("FLEET_SIM_COMMAND_CONCURRENCY", 32) as usize,
            fleet_bin,
            drain_timeout: Duration::from_secs(num("FLEET_SIM_DRAIN_TIMEOUT_SECS", 3600)),
        }
    }
}

/// Runs the simulation and returns its figures. The control plane is stopped at the end.
pub async fn run(config: &SimConfig) -> anyhow::Result<Report> {
    measure::raise_open_files();
    let dir = tempfile::tempdir().context("a data directory")?;
    let mut control = control::ControlPlane::start(&config.fleet_bin, dir.path()).await?;
    let result = simulate(config, &control).await;
    control.stop().await;
    result
}

async fn simulate(config: &SimConfig, control: &control::ControlPlane) -> anyhow::Result<Report> {
    let sampler = Sampler::start(control.pid, control.nats_pid);
    let token = control.enrollment_token().await?;
    let stop = CancellationToken::new();
    let _stop_agents = stop.clone().drop_guard();
    let tally = Arc::new(Tally::default());
    let behaviour = Behaviour {
        run_for: config.run_for,
        fail_percent: config.fail_percent,
        heartbeat_every: config.heartbeat_every,
    };

    // Registration: every agent registered, admitted and consuming.
    let reloads_before = control
        .scrape()
        .await?
        .counter("fleet_access_reloads_total");
    let started = Instant::now();
    let registering_from = sampler.now();
    let agents: Vec<AgentId> = futures::stream::iter(0..config.agents)
        .map(|n| {
            let (url, token) = (control.url.clone(), token.clone());
            let (tally, stop) = (tally.clone(), stop.clone());
            async move { agent::start(n, &url, &token, behaviour, tally, stop).await }
        })
        .buffer_unordered(config.register_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let registration = started.elapsed();
    let registering = sampler.between(registering_from, sampler.now());
    let reloads = control
        .scrape()
        .await?
        .counter("fleet_access_reloads_total")
        - reloads_before;
    tracing::info!(
        agents = agents.len(),
        ?registration,
        reloads,
        "every agent registered and admitted"
    );
    if config.policies_per_agent == 0 {
        // A registration-only run (FLEET_SIM_POLICIES_PER_AGENT=0).
        let phases = report::Phases {
            registration,
            registering,
            reloads,
            policies: 0,
            policies_took: Duration::ZERO,
            idle: measure::Window::default(),
            burst: measure::Window::default(),
            peak: sampler.peak(),
            fire: Utc::now(),
        };
        let scrape = control.scrape().await?;
        return Ok(Report::new(config, &phases, &tally, &scrape));
    }

    // Policies: each agent its own, all firing at the same second of the hour.
    let created = Instant::now();
    // Commands run at a few thousand a second here; a slower control plane is told to
    // raise the lead (checked below).
    let estimate = Duration::from_millis((agents.len() * config.policies_per_agent) as u64);
    let fire = next_fire(Utc::now() + estimate + config.lead);
    let pairs = control
        .create_policies(&agents, config, fire)
        .await
        .context("creating the policies")?;
    let policies_took = created.elapsed();
    anyhow::ensure!(
        Utc::now() + TimeDelta::seconds(5) < fire,
        "the policies took {policies_took:?} to create, past their fire time {fire}: raise \
         FLEET_SIM_LEAD_SECS"
    );
    tally.expect(&pairs, fire, config.jitter_secs);
    tracing::info!(pairs = pairs.len(), %fire, ?policies_took, "policies created; waiting for the burst");

    // Steady state before the burst: heartbeats only.
    let idle_from = sampler.now();
    sleep_until(fire - TimeDelta::seconds(2)).await;
    let idle = sampler.between(idle_from, sampler.now());

    // The burst, until every task has succeeded.
    let burst_from = sampler.now();
    let deadline = Instant::now() + config.drain_timeout;
    while !tally.all_succeeded() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let burst = sampler.between(burst_from, sampler.now());
    let scrape = control.scrape().await?;
    stop.cancel();
    Ok(Report::new(
        config,
        &report::Phases {
            registration,
            registering,
            reloads,
            policies: pairs.len(),
            policies_took,
            idle,
            burst,
            peak: sampler.peak(),
            fire,
        },
        &tally,
        &scrape,
    ))
}

/// The first whole second at or after `at`: the second and minute the hourly policies fire.
fn next_fire(at: DateTime<Utc>) -> DateTime<Utc> {
    let second = at.with_nanosecond(0).unwrap_or(at);
    if second < at {
        second + TimeDelta::seconds(1)
    } else {
        second
    }
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// The hourly expression (the `cron` crate's six fields, seconds first) firing at `fire`'s
/// minute and second of every hour.
pub fn hourly_at(fire: DateTime<Utc>) -> String {
    format!("{} {} * * * *", fire.second(), fire.minute())
}

/// A (policy, agent) pair of the simulation.
pub type Pair = (PolicyId, AgentId);
