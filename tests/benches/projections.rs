//! Projection rebuild speed against raw JetStream replay, in one run against one nats-server.
//!
//! `cargo bench -p fleet-tests --bench projections` (events: FLEET_BENCH_EVENTS, default
//! 100000; repeats: FLEET_BENCH_ROUNDS, default 3). Appends a realistic mix once: 10
//! tenants, 1,000 agents, 200 policies each assigned to 10 agents, then hourly scheduler
//! fires of every (policy, agent) pair whose tasks run to success, are skipped, fail and are
//! retried, are lost, or are exhausted, with agents going offline and circuits opening in
//! between. Then measures, each repeat printed and the median:
//! - raw replay: an ordered consumer over the whole of FLEET_EVENTS, no decode;
//! - rebuild: every read model the projector runs (`ReadModels`, as `fleet projections
//!   rebuild` does) from sequence 1 into a fresh sled directory, until each model's
//!   checkpoint is the last sequence it reads;
//!
//! and the ratio rebuild/raw (the target is >= 0.3x). FLEET_BENCH_WAVE_SECS=86400 makes
//! the fires daily and FLEET_BENCH_HISTORY_DAYS (default 90) sets the days the models keep
//! runs and ended tasks: together they measure a rebuild that retires as it goes. A last pass times each model alone,
//! beside a replay with decode of the same filter, to show where the rebuild's time goes.
//!
//! A rebuild that does not finish within FLEET_BENCH_TIMEOUT_SECS (default 120) is
//! reported as stalled and the benchmark exits with failure instead of hanging: sled
//! 0.34.7 can deadlock under this write load (a thread holding its segment accountant
//! waits for a file truncation queued on sled's own thread pool, whose threads all wait
//! for that accountant).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fleet_control::projector::ReadModels;
use fleet_events::codec::encode;
use fleet_events::store::EventStore;
use fleet_events::streams::StreamOptions;
use fleet_events::subject;
use fleet_projections::{Checkpointed, Projection};
use fleet_tests::NatsServer;
use futures::StreamExt;

mod mix;
mod replay;
use mix::{AGENTS_PER_TENANT, POLICIES_PER_TENANT, TENANTS, mix};
use replay::{rate, raw_replay, rebuild, within};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|r| format!("{r:.0}")).collect();
    parts.join(", ")
}

/// One model rebuilt alone, beside a replay with decode of the same events; returns the
/// rebuild's time.
async fn one<P: Projection>(model: &mut Checkpointed<P>, store: &EventStore) -> Duration {
    let filter = model.projection().filter();
    let start = Instant::now();
    let mut replay = store.replay(&filter, 1).await.expect("replay");
    let mut read = 0u64;
    while let Some(item) = replay.next().await {
        std::hint::black_box(item.expect("decodes").seq);
        read += 1;
    }
    let decoded = start.elapsed();
    let start = Instant::now();
    let progress = model.rebuild(store).await.expect("rebuilt");
    let took = start.elapsed();
    assert_eq!(progress.applied, read, "{} applied what it reads", P::NAME);
    println!(
        "  {:<9}{read:>8} events {:>9.2?} {:>8.0} ev/s   replay+decode alone {:>9.2?} ({:.0}% of it)",
        P::NAME,
        took,
        rate(read, took),
        decoded,
        100.0 * decoded.as_secs_f64() / took.as_secs_f64(),
    );
    took
}

/// Each model rebuilt alone, in [`ReadModels::rebuild`]'s order, into a fresh directory.
async fn breakdown(store: EventStore, last: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut models =
        ReadModels::open(dir.path(), replay::history_days()).expect("open the read models");
    let took = [
        one(&mut models.tasks, &store).await,
        one(&mut models.agents, &store).await,
        one(&mut models.runs, &store).await,
        one(&mut models.policies, &store).await,
        one(&mut models.repos, &store).await,
        one(&mut models.snapshots, &store).await,
    ];
    let total: Duration = took.iter().sum();
    println!(
        "  total    {:>15} {total:>9.2?} {:>8.0} ev/s of the log",
        "",
        rate(last, total)
    );
}

fn stalled(what: &str, limit: Duration) {
    println!(
        "  {what} did not finish within {limit:?} (FLEET_BENCH_TIMEOUT_SECS): stopped waiting"
    );
}

fn main() -> ExitCode {
    let n = env_or("FLEET_BENCH_EVENTS", 100_000);
    let rounds = env_or("FLEET_BENCH_ROUNDS", 3).max(1);
    let limit = Duration::from_secs(env_or("FLEET_BENCH_TIMEOUT_SECS", 120) as u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let code = runtime.block_on(async move {
        let server = NatsServer::start().expect("nats-server");
        let client = async_nats::connect(server.url()).await.expect("connect");
        let store = EventStore::new(client.clone());
        store.ensure_streams(&StreamOptions::default()).await.expect("streams");
        let js = store.jetstream().clone();

        let mix = mix(n);
        let bytes: usize = mix.events.iter().map(|e| encode(e).expect("encodes").len()).sum();
        let appended = mix.append(&store).await;
        let last = store.last_sequence(&subject::all_events()).await.expect("end");
        assert_eq!(last, n as u64, "the log holds the mix");
        let count = |aggregate| {
            let prefix = format!(".{aggregate}.");
            mix.events.iter().filter(|e| e.subject().contains(&prefix)).count()
        };
        println!(
            "projection rebuild vs raw replay: {n} events, {} bytes on average, appended in {appended:.2?}",
            bytes / n.max(1)
        );
        println!(
            "  {} task, {} agent, {} policy, {} tenant, {} repo events; {} tenants, {} agents, {} policies",
            count("task"),
            count("agent"),
            count("policy"),
            count("tenant"),
            count("repo"),
            TENANTS,
            TENANTS * AGENTS_PER_TENANT,
            TENANTS * POLICIES_PER_TENANT
        );

        let (mut raws, mut rebuilds) = (vec![], vec![]);
        for round in 1..=rounds {
            let raw = raw_replay(&js, last).await;
            raws.push(raw);
            let Some(rebuilt) = rebuild(&store, last, limit).await else {
                println!("  round {round}: raw ordered replay {raw:.0} ev/s");
                stalled(&format!("round {round}: the rebuild"), limit);
                return ExitCode::FAILURE;
            };
            rebuilds.push(rebuilt);
            println!("  round {round}: raw ordered replay {raw:>9.0} ev/s   rebuild {rebuilt:>9.0} ev/s");
        }
        let (r, b) = (median(raws.clone()), median(rebuilds.clone()));
        println!("  raw ordered replay, no decode {r:>9.0} ev/s   median of {rounds}: {}", list(&raws));
        println!(
            "  rebuild of every read model   {b:>9.0} ev/s   median of {rounds}: {}",
            list(&rebuilds)
        );
        println!("  ratio rebuild/raw {:.2} (target >= 0.30)", b / r);

        println!("where the rebuild's time goes, each model alone, in ReadModels::rebuild's order:");
        if within(limit, breakdown(store.clone(), last)).await.is_none() {
            stalled("the next model's rebuild", limit);
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    });
    // A worker stuck in sled would make an orderly shutdown wait for ever.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}
