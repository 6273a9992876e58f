//! `fleet-sim`: runs the fleet simulator with the `FLEET_SIM_*` settings (README) and
//! prints its figures. The `fleet` binary is looked for next to this one, or named by
//! `FLEET_BIN`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

fn fleet_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FLEET_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("this program's path")?;
    let path = exe.with_file_name("fleet");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build it (cargo build --release -p fleet -p fleet-sim) or name it with FLEET_BIN",
        path.display()
    );
    Ok(path)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,async_nats=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let run = async {
        let config = fleet_sim::SimConfig::from_env(fleet_bin()?);
        fleet_sim::run(&config).await
    };
    match run.await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("fleet-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
