//! `fleet-agent`: the restic-fleet agent's command line (`run`, `register`,
//! `check-config`, `probe`, `install`, `status`).

mod commands;

use std::process::ExitCode;

use fleet_agent::cli::{self, Command};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .finish()
        .with(filter_fn(fleet_agent::enroll::log_filter))
        .init();
    let command = match cli::parse(std::env::args_os()) {
        Ok(command) => command,
        Err(error) => return ExitCode::from(cli::refused(&error)),
    };
    match command {
        Command::Probe { restic } => commands::probe(restic),
        Command::Run { config } => commands::run(&config),
        Command::Register { config } => commands::register(&config),
        Command::CheckConfig { config } => commands::check_config(&config),
        Command::Install {
            config,
            binary,
            print: true,
            ..
        } => commands::print_unit(&config, binary.as_deref()),
        Command::Install {
            config,
            unit_dir,
            binary,
            force,
            print: false,
        } => commands::install(&config, unit_dir.as_deref(), binary.as_deref(), force),
        Command::Status { config, output } => commands::status(&config, output),
    }
}
