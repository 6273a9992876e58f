//! The scheduler core's tick cost with 100,000 (policy, agent) pairs.
//!
//! `cargo bench -p fleet-control --bench scheduler`. Prints the time of an idle tick (no
//! fire due: the common case, once per wake-up) and of a tick that decides 1,000 fires,
//! each the median of many, and the cost of folding the log that sets the pairs up.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use fleet_control::scheduler::Scheduler;
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, PolicyEvent};
use fleet_events::ids::{AgentId, PolicyId};
use fleet_events::policy::PolicySpec;
use fleet_events::samples;
use fleet_events::schedule::Schedule;
use uuid::Uuid;

const POLICIES: u128 = 100;
const AGENTS: u128 = 1000;

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

fn event(policy: PolicyId, event: PolicyEvent) -> Envelope {
    Envelope::new(samples::tenant(), base(), Event::Policy { policy, event })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut scheduler = Scheduler::new();
    let started = Instant::now();
    for p in 0..POLICIES {
        let policy = PolicyId::from_uuid(Uuid::from_u128(0x7000 + p));
        // Policy p fires daily at 03:00 + p minutes.
        let spec = PolicySpec {
            schedule: Schedule::Cron {
                expr: format!("{} {} * * *", p % 60, 3 + p / 60),
                timezone: "UTC".into(),
            },
            jitter_secs: 0,
            ..samples::policy_spec()
        };
        scheduler.apply(&event(
            policy,
            PolicyEvent::Created {
                spec: Box::new(spec),
            },
        ));
        for a in 0..AGENTS {
            let agent = AgentId::from_uuid(Uuid::from_u128(0x9000_0000 + a));
            scheduler.apply(&event(policy, PolicyEvent::AssignedToAgent { agent }));
        }
    }
    scheduler.start(base() + TimeDelta::seconds(1));
    let setup = started.elapsed();

    let idle_at = base() + TimeDelta::hours(2);
    let idle: Vec<Duration> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            black_box(scheduler.due(black_box(idle_at)));
            t.elapsed()
        })
        .collect();
    let busy: Vec<Duration> = (0..POLICIES as i64)
        .map(|minute| {
            let at = base() + TimeDelta::hours(3) + TimeDelta::minutes(minute);
            let t = Instant::now();
            let decisions = scheduler.due(at);
            let took = t.elapsed();
            assert_eq!(decisions.len(), AGENTS as usize);
            took
        })
        .collect();
    println!(
        "scheduler core, {} (policy, agent) pairs",
        POLICIES * AGENTS
    );
    println!("  fold the log and start:            {setup:>10.2?}");
    println!(
        "  idle tick (nothing due), median:   {:>10.2?}",
        median(idle)
    );
    println!(
        "  tick deciding 1,000 fires, median: {:>10.2?}",
        median(busy)
    );
}
