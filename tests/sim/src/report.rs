//! The simulation's figures, and how they print: each against its target.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::SimConfig;
use crate::agent::{Counts, Tally};
use crate::measure::{Peak, Scrape, Window, percentile};

/// What the phases measured.
#[derive(Debug, Clone)]
pub struct Phases {
    pub registration: Duration,
    /// CPU while the agents registered.
    pub registering: Window,
    pub reloads: f64,
    pub policies: usize,
    pub policies_took: Duration,
    /// Heartbeats only, before the burst.
    pub idle: Window,
    /// From just before the fire to the last task's success.
    pub burst: Window,
    pub peak: Peak,
    pub fire: DateTime<Utc>,
}

/// Every figure of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub agents: usize,
    pub heartbeat_every: Duration,
    pub run_for: Duration,
    pub fail_percent: u32,
    pub jitter_secs: u32,
    pub phases: Phases,
    pub counts: Counts,
    pub heartbeats: u64,
    pub heartbeats_unstored: u64,
    pub reports: u64,
    pub report_retries: u64,
    pub duplicates: u64,
    pub refused: u64,
    /// The dispatcher's own view: heartbeat lag and dispatch delay (bucket bounds).
    pub heartbeat_lag_p50: Option<f64>,
    pub heartbeat_lag_p99: Option<f64>,
    pub heartbeats_read: u64,
    pub dispatch_delay_p99: Option<f64>,
}

impl Report {
    pub fn new(config: &SimConfig, phases: &Phases, tally: &Tally, scrape: &Scrape) -> Self {
        let lag = |q| scrape.quantile("fleet_heartbeat_lag_seconds", q);
        Self {
            agents: config.agents,
            heartbeat_every: config.heartbeat_every,
            run_for: config.run_for,
            fail_percent: config.fail_percent,
            jitter_secs: config.jitter_secs,
            phases: phases.clone(),
            counts: tally.counts(),
            heartbeats: tally.heartbeats.load(Ordering::Relaxed),
            heartbeats_unstored: tally.heartbeats_unstored.load(Ordering::Relaxed),
            reports: tally.reports.load(Ordering::Relaxed),
            report_retries: tally.report_retries.load(Ordering::Relaxed),
            duplicates: tally.duplicates.load(Ordering::Relaxed),
            refused: tally.refused.load(Ordering::Relaxed),
            heartbeat_lag_p50: lag(0.5).map(|(b, _)| b),
            heartbeat_lag_p99: lag(0.99).map(|(b, _)| b),
            heartbeats_read: lag(0.5).map_or(0, |(_, n)| n),
            dispatch_delay_p99: scrape
                .quantile("fleet_dispatch_delay_seconds", 0.99)
                .map(|(b, _)| b),
        }
    }

    /// Dispatch latency (due time to the first attempt's command) at `p`, seconds.
    pub fn dispatch(&self, p: f64) -> Option<f64> {
        percentile(&self.counts.latencies, p)
    }

    /// Average cores over an hour holding one burst: the burst's CPU plus the idle rate
    /// for the rest of the hour.
    pub fn hour_cores(&self, cpu: impl Fn(&Window) -> f64) -> f64 {
        let (idle, burst) = (&self.phases.idle, &self.phases.burst);
        let rest = (3600.0 - burst.secs).max(0.0);
        (cpu(burst) + cpu(idle) / idle.secs.max(1e-9) * rest) / 3600.0
    }

    /// Seconds from the fire to the last first dispatch, and to the last success.
    pub fn drain(&self) -> (Option<f64>, Option<f64>) {
        let since =
            |at: Option<DateTime<Utc>>| at.map(|at| (at - self.phases.fire).as_seconds_f64());
        (
            since(self.counts.last_first_dispatch),
            since(self.counts.last_success),
        )
    }

    /// True when every expected task was dispatched within its window and succeeded.
    pub fn complete(&self) -> bool {
        self.counts.expected > 0
            && self.counts.succeeded == self.counts.expected
            && self.counts.latencies.len() + self.counts.held.len() == self.counts.expected
            && self.counts.unexpected == 0
    }
}

fn secs(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.3} s"))
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.phases;
        let c = &self.counts;
        writeln!(
            f,
            "fleet-sim: {} agents, {} hourly policies (jitter {} s), heartbeats every {:?}, \
             tasks run {:?}, {}% of first attempts fail",
            self.agents,
            p.policies,
            self.jitter_secs,
            self.heartbeat_every,
            self.run_for,
            self.fail_percent
        )?;
        let reg = p.registration.as_secs_f64();
        writeln!(
            f,
            "registration: {} agents registered, admitted and consuming in {reg:.1} s \
             ({:.0}/s); authorization reloads {:.0}; connections refused while waiting {}; \
             control plane {:.3} cores, nats-server {:.3} cores meanwhile \
             [target < 300 s, reloads batched: {}]",
            self.agents,
            self.agents as f64 / reg.max(1e-9),
            p.reloads,
            self.refused,
            p.registering.control_cores(),
            p.registering.nats_cores(),
            verdict(reg < 300.0 && p.reloads < self.agents as f64 / 10.0 + 5.0),
        )?;
        if p.policies == 0 {
            return write!(
                f,
                "peak RSS: control plane {}, nats-server {}",
                mib(p.peak.control_rss),
                mib(p.peak.nats_rss)
            );
        }
        writeln!(
            f,
            "policies: {} created and assigned in {:.1} s",
            p.policies,
            p.policies_took.as_secs_f64()
        )?;
        writeln!(
            f,
            "idle (heartbeats only, {:.0} s): control plane {:.3} cores, nats-server {:.3} cores",
            p.idle.secs,
            p.idle.control_cores(),
            p.idle.nats_cores()
        )?;
        writeln!(
            f,
            "burst ({:.0} s from the fire to the last success): control plane {:.1} CPU-s \
             ({:.3} cores), nats-server {:.1} CPU-s ({:.3} cores)",
            p.burst.secs,
            p.burst.control_cpu_secs,
            p.burst.control_cores(),
            p.burst.nats_cpu_secs,
            p.burst.nats_cores()
        )?;
        let (control_hour, nats_hour) = (
            self.hour_cores(|w| w.control_cpu_secs),
            self.hour_cores(|w| w.nats_cpu_secs),
        );
        writeln!(
            f,
            "hour average (the burst plus the idle rate for the rest of the hour): control \
             plane {control_hour:.3} cores [target < 0.5: {}], nats-server {nats_hour:.3} \
             cores [target < 1: {}]",
            verdict(control_hour < 0.5),
            verdict(nats_hour < 1.0)
        )?;
        let p99 = self.dispatch(0.99);
        writeln!(
            f,
            "dispatch latency (due time to the command at the agent), {} first attempts: \
             p50 {}, p99 {}, max {} [target p99 < 1 s: {}]; outside the jitter window {} \
             [target 0: {}]; dispatcher's own p99 <= {}",
            c.latencies.len(),
            secs(self.dispatch(0.5)),
            secs(p99),
            secs(self.dispatch(1.0)),
            verdict(p99.is_some_and(|p| p < 1.0)),
            c.outside_window,
            verdict(c.outside_window == 0 && c.latencies.len() + c.held.len() == c.expected),
            secs(self.dispatch_delay_p99),
        )?;
        let mut slowest = c.parts.clone();
        slowest.sort_by(|a, b| b.latency.total_cmp(&a.latency));
        let control: Vec<f64> = c.parts.iter().map(|p| p.control).collect();
        let delivery: Vec<f64> = c.parts.iter().map(|p| p.delivery).collect();
        writeln!(
            f,
            "  where it went: due to the dispatcher's order p99 {}, max {}; the order to the \
             agent p99 {}, max {}; the slowest: {}",
            secs(percentile(&control, 0.99)),
            secs(percentile(&control, 1.0)),
            secs(percentile(&delivery, 0.99)),
            secs(percentile(&delivery, 1.0)),
            slowest
                .iter()
                .take(5)
                .map(|p| format!(
                    "{} = {} + {} (task {}, agent {})",
                    secs(Some(p.latency)),
                    secs(Some(p.control)),
                    secs(Some(p.delivery)),
                    p.task,
                    p.agent
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )?;
        writeln!(
            f,
            "held back while another task of their agent backed off (by design, not counted \
             above): {} first attempts, p50 {}, max {}, outside the jitter window {}",
            c.held.len(),
            secs(percentile(&c.held, 0.5)),
            secs(percentile(&c.held, 1.0)),
            c.held_outside_window,
        )?;
        let (dispatched, drained) = self.drain();
        writeln!(
            f,
            "drain: last first attempt dispatched {} after the fire, last success {} after \
             it; {}/{} tasks succeeded, {} attempts, {} failed (retried), {} unexpected",
            secs(dispatched),
            secs(drained),
            c.succeeded,
            c.expected,
            c.attempts,
            c.failed,
            c.unexpected
        )?;
        writeln!(
            f,
            "heartbeats: {} stored, {} not stored in time; the dispatcher's lag p50 <= {}, \
             p99 <= {} over {} live heartbeats",
            self.heartbeats,
            self.heartbeats_unstored,
            secs(self.heartbeat_lag_p50),
            secs(self.heartbeat_lag_p99),
            self.heartbeats_read
        )?;
        writeln!(
            f,
            "reports: {} sent, {} retried; orders received twice {}",
            self.reports, self.report_retries, self.duplicates
        )?;
        write!(
            f,
            "peak RSS: control plane {}, nats-server {}",
            mib(p.peak.control_rss),
            mib(p.peak.nats_rss)
        )
    }
}
