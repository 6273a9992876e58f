//! The `fleet` command: thin glue over `fleet-services`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fleet_events::store::EventStore;
use fleet_events::streams::StreamOptions;
use fleet_services::{shutdown, up};

/// restic-fleet: schedules and runs restic backups on a fleet of agents.
#[derive(Debug, Parser)]
#[command(name = "fleet", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run restic-fleet on this machine: a local nats-server (unless --nats-url is given)
    /// with the fleet's streams, until Ctrl-C.
    Up(UpArgs),
    /// Manage the JetStream streams on a NATS server.
    #[command(subcommand)]
    Streams(StreamsCommand),
}

#[derive(Debug, Subcommand)]
enum StreamsCommand {
    /// Create the streams that are missing; refuse ones that exist with another meaning.
    Ensure(EnsureArgs),
}

#[derive(Debug, Args)]
struct EnsureArgs {
    /// The NATS server.
    #[arg(long, env = "FLEET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[command(flatten)]
    streams: StreamArgs,
}

#[derive(Debug, Args)]
struct StreamArgs {
    /// Replicas per stream: 1 on one machine, 3 on a cluster.
    #[arg(long, env = "FLEET_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: u8,
    /// How long a message id is remembered for deduplication, in seconds.
    #[arg(long, env = "FLEET_DUPLICATE_WINDOW_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duplicate_window_secs: u64,
}

impl StreamArgs {
    fn options(&self) -> StreamOptions {
        StreamOptions {
            replicas: usize::from(self.replicas),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
        }
    }
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "FLEET_NATS_URL")]
    nats_url: Option<String>,
    /// Where the local nats-server keeps its store and log.
    #[arg(long, env = "FLEET_DATA_DIR", default_value = "fleet-data")]
    data_dir: PathBuf,
    /// Port of the local nats-server.
    #[arg(long, env = "FLEET_NATS_PORT", default_value_t = 4222)]
    nats_port: u16,
    #[command(flatten)]
    streams: StreamArgs,
}

/// `sysexits.h` EX_USAGE: the command line or configuration is wrong.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fleet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => {
            let config = up::UpConfig {
                nats_url: args.nats_url,
                data_dir: args.data_dir,
                nats_port: args.nats_port,
                streams: args.streams.options(),
            };
            up::run(config, shutdown::on_signals()).await
        }
        Command::Streams(StreamsCommand::Ensure(args)) => {
            let url = args.nats_url;
            let client = async_nats::connect(&url)
                .await
                .with_context(|| format!("connecting to NATS at {url}"))?;
            EventStore::new(client)
                .ensure_streams(&args.streams.options())
                .await
                .context("ensuring the streams")?;
            println!("streams ready on {url}");
            Ok(())
        }
    }
}
