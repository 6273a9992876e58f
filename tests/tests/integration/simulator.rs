//! The fleet simulator's small run: 20 simulated agents with their own keys against a real
//! `fleet up` (its nats-server, every service), two hourly policies each firing in one
//! burst, a fifth of first attempts failing. Asserts what must hold at any scale (every
//! agent admitted, every task run once and succeeded, failures retried, registrations
//! batched into few reloads, the dispatcher reading live heartbeats); prints the figures
//! (timings are reported, never asserted). The 10,000-agent run is `fleet-sim` (README).

use std::time::Duration;

use fleet_sim::SimConfig;

use crate::support::agent::agent_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simulated_agents_run_a_burst_through_the_real_control_plane() {
    let fleet_bin = agent_binary().with_file_name("fleet");
    assert!(
        fleet_bin.is_file(),
        "{} is missing: build it (cargo build -p fleet)",
        fleet_bin.display()
    );
    let config = SimConfig {
        agents: 20,
        policies_per_agent: 2,
        heartbeat_every: Duration::from_secs(5),
        run_for: Duration::from_secs(2),
        fail_percent: 20,
        jitter_secs: 10,
        lead: Duration::from_secs(10),
        register_concurrency: 20,
        command_concurrency: 8,
        fleet_bin,
        drain_timeout: Duration::from_secs(300),
    };
    let report = fleet_sim::run(&config).await.expect("the simulation runs");
    println!("{report}");
    let counts = &report.counts;
    assert_eq!(counts.expected, 40, "{report}");
    assert_eq!(counts.succeeded, 40, "every task succeeded:\n{report}");
    assert_eq!(
        counts.latencies.len() + counts.held.len(),
        40,
        "every task's first attempt reached its agent:\n{report}"
    );
    assert_eq!(
        counts.unexpected, 0,
        "no task of a pair that did not fire:\n{report}"
    );
    assert_eq!(report.duplicates, 0, "no attempt ordered twice:\n{report}");
    let failed_first = counts.failed;
    assert!(
        failed_first > 0,
        "the mix fails some first attempts:\n{report}"
    );
    assert_eq!(
        counts.attempts,
        40 + failed_first,
        "each failed attempt was retried once, nothing else ran twice:\n{report}"
    );
    assert!(
        report.phases.reloads < 20.0,
        "20 registrations were batched into fewer reloads:\n{report}"
    );
    assert_eq!(report.heartbeats_unstored, 0, "{report}");
    assert!(
        report.heartbeats_read > 0,
        "the dispatcher read live heartbeats:\n{report}"
    );
}
