//! The `fleet` command: thin glue over `fleet-services`.

mod agent_cmd;
mod api_client;
mod cli;
mod events_cmd;
mod lookup;
mod output;
mod policy_cmd;
mod projections_cmd;
mod table;
mod task_cmd;
mod tenant_cmd;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fleet_events::store::EventStore;
use fleet_services::serve;
use fleet_services::{shutdown, up};

use crate::cli::{Cli, Command, StreamsCommand};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(api_client::exit::USAGE);
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
            // API errors carry their own exit code (and a 400's field problems).
            let (code, text) = api_client::report(&e);
            if let Some(text) = text {
                eprintln!("{text}");
            }
            ExitCode::from(code)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => {
            let demo = match args.demo {
                false => None,
                true => Some(fleet_services::demo::DemoConfig {
                    dir: std::path::absolute(args.data_dir.join("demo"))
                        .context("resolving the data directory")?,
                    agent_binary: args
                        .agent_binary
                        .clone()
                        .or_else(fleet_services::demo::find_agent_binary)
                        .context(
                            "--demo needs the fleet-agent program: build it (cargo build \
                             -p fleet-agent) or name it with --agent-binary",
                        )?,
                    every_secs: args.demo_every_secs,
                }),
            };
            let mut services = args.services.config()?;
            if services.projections_dir.is_none() {
                services.projections_dir = Some(args.data_dir.join("projections"));
            }
            if services.api_addr.is_none() {
                services.api_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8080)));
            }
            let config = up::UpConfig {
                demo,
                nats_url: args.nats_url,
                data_dir: args.data_dir,
                nats_port: args.nats_port,
                streams: args.streams.options(),
                services,
            };
            up::run(config, shutdown::on_signals()).await
        }
        Command::Serve(args) => {
            let config = args.services.config()?;
            let client = async_nats::connect(&args.nats_url)
                .await
                .with_context(|| format!("connecting to NATS at {}", args.nats_url))?;
            let store = EventStore::new(client);
            serve::run(args.service.into(), store, config, shutdown::on_signals()).await
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
        Command::Tenant(command) => tenant_cmd::run(command).await,
        Command::Projections(command) => projections_cmd::run(command).await,
        Command::Agent(args) => agent_cmd::run(args).await,
        Command::Policy(args) => policy_cmd::run(args).await,
        Command::Task(args) => task_cmd::run(args).await,
        Command::Runs(args) => task_cmd::runs(args).await,
        Command::Events(args) => events_cmd::run(args).await,
    }
}
