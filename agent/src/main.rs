//! `fleet-agent`: the restic-fleet agent's command line (for now: `fleet-agent probe`).

use std::ffi::OsString;
use std::process::ExitCode;

use fleet_agent::cli::{self, Command};
use fleet_agent::probe;

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Probe { restic }) => run_probe(restic),
        Err(error) => {
            eprint!("fleet-agent: {error}\n\n{}", cli::USAGE);
            ExitCode::from(cli::EX_USAGE)
        }
    }
}

fn run_probe(restic: Option<OsString>) -> ExitCode {
    let program = probe::restic_program(restic, std::env::var_os("RESTIC"));
    match probe::run(&program) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("fleet-agent: {error}");
            ExitCode::from(probe::EX_UNAVAILABLE)
        }
    }
}
