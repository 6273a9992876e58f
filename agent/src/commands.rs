//! What the `fleet-agent` commands do: `run` and `check-config` (the binary's glue over
//! the library; `probe` lives in [`fleet_agent::probe`]).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use fleet_agent::config::{self, ValidConfig};
use fleet_agent::probe;
use fleet_agent::state::AgentState;
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration that is not valid (`EX_USAGE`, sysexits.h).
pub const EX_CONFIG: u8 = 64;

/// Loads and validates the configuration, printing every problem on stderr.
fn load(path: &Path) -> Result<ValidConfig, ExitCode> {
    config::load(path, &config::Env).map_err(|errors| {
        eprintln!("fleet-agent: {} is not valid:", path.display());
        for error in errors {
            eprintln!("  {error}");
        }
        ExitCode::from(EX_CONFIG)
    })
}

/// `fleet-agent check-config --config FILE`.
pub fn check_config(path: &Path) -> ExitCode {
    match load(path) {
        Ok(_) => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `fleet-agent probe [--restic PATH]`.
pub fn probe(restic: Option<OsString>) -> ExitCode {
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

/// `fleet-agent run --config FILE`: runs the agent until SIGINT or SIGTERM.
pub fn run(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let version = match probe::restic_version(config.restic.as_os_str()) {
        Ok(version) => version,
        Err(error) => {
            eprintln!("fleet-agent: {error} (for `run`: the `restic` field of the config)");
            return ExitCode::from(probe::EX_UNAVAILABLE);
        }
    };
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(serve(config, version)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fleet-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: ValidConfig,
    version: fleet_agent::restic::output::ResticVersion,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let state = AgentState::open(&config.state_dir)
        .with_context(|| format!("cannot open the state in {}", config.state_dir.display()))?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(config.nats.clone())
        .await
        .context("cannot connect to NATS")?;
    let agent = config.agent_config(version);
    tracing::info!(agent_id = %agent.agent, tenant = %agent.tenant, hostname = %agent.hostname,
        restic = ?agent.restic_version, "agent starting");
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    fleet_agent::runtime::run(client, agent, state, shutdown)
        .await
        .context("agent stopped")?;
    tracing::info!("agent stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("signal received; stopping");
    shutdown.cancel();
}
