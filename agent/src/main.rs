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
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Probe { restic }) => commands::probe(restic),
        Ok(Command::Run { config }) => commands::run(&config),
        Ok(Command::Register { config }) => commands::register(&config),
        Ok(Command::CheckConfig { config }) => commands::check_config(&config),
        Ok(Command::Install {
            config,
            unit_dir,
            binary,
            force,
        }) => commands::install(&config, unit_dir.as_deref(), binary.as_deref(), force),
        Ok(Command::Status { config, output }) => commands::status(&config, output),
        Err(error) => {
            eprint!("fleet-agent: {error}\n\n{}", cli::USAGE);
            ExitCode::from(cli::EX_USAGE)
        }
    }
}
