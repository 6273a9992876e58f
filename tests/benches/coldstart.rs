//! Cold start of the services that fold the whole log, on a long log, with and without
//! their snapshots; and the read models' rebuild of that log against raw ordered replay.
//!
//! `cargo bench -p fleet-tests --bench coldstart` (FLEET_BENCH_EVENTS, default 10,000,000:
//! the realistic mix of the `projections` bench; FLEET_BENCH_TAIL, default 100,000: events
//! appended after the snapshots were written, as a restart some minutes later finds them;
//! `NATS_SERVER_BIN` picks the server). Prints, for the scheduler, the dispatcher and the
//! retry enforcer, each run as `fleet serve` runs it in a child process of its own:
//! - the time from start to "caught up with the log" and the process's peak RSS, first
//!   without a snapshot (a full replay; the service writes its snapshot as it stops),
//!   then with it (the snapshot read, then only the tail);
//! - then the rebuild of every read model against raw ordered replay, as events/s.
//!
//! A standby's takeover replays nothing either way (it follows the log all along); its
//! time is the lease's (`takeover` bench).

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_control::clock::Clock;
use fleet_control::lease::{self, Lease};
use fleet_control::serve::{self, Service, ServiceConfig};
use fleet_control::snapshot::Snapshots;
use fleet_events::codec::encode;
use fleet_events::store::EventStore;
use fleet_events::streams::StreamOptions;
use fleet_events::subject;
use fleet_tests::NatsServer;
use tokio_util::sync::CancellationToken;

mod mix;
mod replay;
use mix::mix;
use replay::{raw_replay, rebuild};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SERVICES: [(Service, &str); 3] = [
    (Service::Scheduler, "scheduler"),
    (Service::Dispatcher, "dispatcher"),
    (Service::Retry, "retry"),
];

/// This process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// A log writer that notes when the service says it caught up with the log.
#[derive(Clone)]
struct CaughtUp(Arc<Mutex<Option<Instant>>>);

impl Write for CaughtUp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if String::from_utf8_lossy(buf).contains("caught up with the log") {
            self.0
                .lock()
                .expect("lock")
                .get_or_insert_with(Instant::now);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The child: runs `service` against `url` with snapshots in `dir` until it has caught
/// up, prints `seconds peak-MiB`, then stops it (which writes its snapshot).
fn child(service: &str, url: &str, dir: &str) -> ExitCode {
    let service = SERVICES
        .iter()
        .find(|(_, name)| *name == service)
        .expect("a service")
        .0;
    let caught = CaughtUp(Arc::default());
    let writer = caught.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let client = async_nats::connect(url).await.expect("connect");
        let store = EventStore::new(client);
        let config = ServiceConfig {
            clock: Clock::System,
            circuit: Default::default(),
            dispatcher: Default::default(),
            projections_dir: None,
            history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
            api_addr: None,
            api_throttle: Default::default(),
            api_tls: None,
            access: None,
            notifier: Default::default(),
            snapshots: Snapshots::in_dir(dir),
        };
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let running = tokio::spawn(serve::run(service, store, config, shutdown.clone()));
        let took = loop {
            if let Some(at) = *caught.0.lock().expect("lock") {
                break at - start;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!("{:.3} {:.0}", took.as_secs_f64(), peak_rss_mib());
        shutdown.cancel();
        running
            .await
            .expect("joined")
            .expect("the service stopped cleanly");
    });
    ExitCode::SUCCESS
}

/// Runs the child for `service`; its seconds to catch up and its peak RSS in MiB.
fn cold_start(service: &str, url: &str, dir: &std::path::Path) -> (f64, f64) {
    let exe = std::env::current_exe().expect("this bench");
    let out = Command::new(exe)
        .args(["--child", service, url])
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the child");
    assert!(out.status.success(), "the {service} child failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse::<f64>().expect("a number"));
    (parts.next().expect("seconds"), parts.next().expect("MiB"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        return child(&args[at + 1], &args[at + 2], &args[at + 3]);
    }
    let n = env_or("FLEET_BENCH_EVENTS", 10_000_000);
    let tail = env_or("FLEET_BENCH_TAIL", 100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let server = NatsServer::start().expect("nats-server");
        let url = server.url();
        let client = async_nats::connect(&url).await.expect("connect");
        let store = EventStore::new(client);
        store.ensure_streams(&StreamOptions::default()).await.expect("streams");
        let mut log = mix(n + tail);
        let later = log.events.split_off(n);
        let bytes: usize = (log.events.iter().take(100_000))
            .map(|e| encode(e).expect("encodes").len())
            .sum();
        let appended = log.append(&store).await;
        println!(
            "cold start: a log of {n} events (about {} bytes each), appended in {appended:.1?}; \
             {tail} more after the snapshots",
            bytes / n.clamp(1, 100_000)
        );
        // The rebuild first, on the log as the mix wrote it (the services below append
        // what they owe to a log whose clock has moved on).
        let last = store.last_sequence(&subject::all_events()).await.expect("end");
        let raw = raw_replay(store.jetstream(), last).await;
        let limit = Duration::from_secs(env_or("FLEET_BENCH_TIMEOUT_SECS", 3600) as u64);
        match rebuild(&store, last, limit).await {
            Some(rebuilt) => println!(
                "  read models rebuilt at {rebuilt:.0} events/s, raw ordered replay {raw:.0} \
                 events/s: ratio {:.2}",
                rebuilt / raw
            ),
            None => println!("  the rebuild did not finish within {limit:?}"),
        }
        // This process holds the leases: the scheduler and the dispatcher under test stay
        // standbys, folding the log as a cold start does, deciding nothing.
        let leases = [Lease::spawn(&store, "scheduler"), Lease::spawn(&store, "dispatcher")];
        for lease in &leases {
            let mut held = lease.held();
            while !*held.borrow_and_update() {
                lease::changed(&mut held).await;
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut without = Vec::new();
        for (_, name) in SERVICES {
            let (secs, mib) = cold_start(name, &url, dir.path());
            println!(
                "  {name:<10} without a snapshot: caught up in {secs:>7.2} s, peak RSS {mib:>5.0} MiB"
            );
            without.push(secs);
        }
        log.events = later;
        log.append(&store).await;
        for ((_, name), full) in SERVICES.iter().zip(&without) {
            let file = dir.path().join(format!("{name}.snapshot"));
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            let (secs, mib) = cold_start(name, &url, dir.path());
            println!(
                "  {name:<10} with its snapshot ({:.1} MiB) and a tail of {tail}: caught up in \
                 {secs:>7.2} s, peak RSS {mib:>5.0} MiB ({:.0}x faster)",
                size as f64 / (1024.0 * 1024.0),
                full / secs.max(1e-9)
            );
        }
        for lease in leases {
            lease.stop().await;
        }
    });
    ExitCode::SUCCESS
}
