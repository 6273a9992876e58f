//! What the `fleet-agent` commands do: `run`, `register`, `check-config`, `install` and
//! `status` (the binary's glue over the library; `probe` lives in [`fleet_agent::probe`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use fleet_agent::cli::Output;
use fleet_agent::config::{self, ValidConfig};
use fleet_agent::enroll;
use fleet_agent::install::{self, Manager, Written};
use fleet_agent::probe;
use fleet_agent::state::AgentState;
use fleet_agent::status::{self, Status};
use fleet_events::store::connect::{NatsAccess, load_or_create_key};
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
        Ok(config) => {
            println!("configuration is valid");
            print!("{}", config.hooks.listing());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The absolute paths a service definition names: `binary` (default: this program) and
/// `config`.
fn service_paths(binary: Option<&Path>, config: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let binary = match binary {
        Some(path) => std::path::absolute(path)?,
        None => std::env::current_exe()?,
    };
    Ok((binary, std::path::absolute(config)?))
}

/// `fleet-agent install --print`: the service definition running `binary` (default: this
/// program) with `config`, on stdout; the configuration is not read (a package builds its
/// unit this way, before any configuration exists).
pub fn print_unit(config: &Path, binary: Option<&Path>) -> ExitCode {
    match service_paths(binary, config) {
        Ok((binary, config)) => {
            print!("{}", Manager::native().render(&binary, &config));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("fleet-agent: cannot make the paths absolute: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `fleet-agent install --config FILE [--unit-dir DIR] [--binary PATH] [--force]`.
pub fn install(
    config_path: &Path,
    unit_dir: Option<&Path>,
    binary: Option<&Path>,
    force: bool,
) -> ExitCode {
    let config = match load(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let (binary, config_path) = match service_paths(binary, config_path) {
        Ok(paths) => paths,
        Err(error) => {
            eprintln!("fleet-agent: cannot make the paths absolute: {error}");
            return ExitCode::FAILURE;
        }
    };
    if !binary.is_file() {
        eprintln!("fleet-agent: --binary {}: no such file", binary.display());
        return ExitCode::from(EX_CONFIG);
    }
    let manager = Manager::native();
    let dir = unit_dir.unwrap_or(manager.default_dir());
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let contents = manager.render(&binary, &config_path);
    let (path, written) = match install::write_unit(&dir, &manager.file_name(), &contents, force) {
        Ok(done) => done,
        Err(error) => {
            eprintln!("fleet-agent: {error}");
            return ExitCode::FAILURE;
        }
    };
    let what = match written {
        Written::Created => "wrote",
        Written::Replaced => "replaced",
        Written::Unchanged => "unchanged (already installed)",
    };
    println!("{what}: {}\n", path.display());
    print!("{contents}");
    if manager == Manager::Systemd && config.state_dir != Path::new(install::SYSTEMD_STATE_DIR) {
        println!(
            "\nnote: the configuration's stateDir is {}; the unit's StateDirectory= creates \
             only {}",
            config.state_dir.display(),
            install::SYSTEMD_STATE_DIR
        );
    }
    println!(
        "\nto enable and start it:\n  {}",
        manager.enable_commands(&path)
    );
    ExitCode::SUCCESS
}

/// `fleet-agent status --config FILE [-o json]`: reads the status file the running agent
/// writes into its state directory; exit 3 if it is missing or stale.
pub fn status(config_path: &Path, output: Output) -> ExitCode {
    let config = match load(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let path = status::path(&config.state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "no status yet: is the agent running? ({} is missing)",
                path.display()
            );
            return ExitCode::from(status::EX_NOT_RUNNING);
        }
        Err(error) => {
            eprintln!("fleet-agent: cannot read {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let current: Status = match serde_json::from_str(&text) {
        Ok(current) => current,
        Err(error) => {
            eprintln!(
                "fleet-agent: {} is not a status file: {error}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let now = Utc::now();
    let stale = status::is_stale(current.at, now, config.heartbeat_every);
    match output {
        // The file as is, even when stale: the exit code tells.
        Output::Json => print!("{text}"),
        Output::Table if !stale => print!("{}", status::render(&current, now)),
        Output::Table => {}
    }
    if stale {
        let message = format!(
            "agent not running (last status at {})",
            status::time(current.at)
        );
        match output {
            Output::Json => eprintln!("{message}"),
            Output::Table => println!("{message}"),
        }
        return ExitCode::from(status::EX_NOT_RUNNING);
    }
    ExitCode::SUCCESS
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
    exit(result)
}

/// The exit code of a command's result: an enrollment error keeps its own code.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fleet-agent: {error:#}");
            match error.downcast_ref::<enroll::EnrollError>() {
                Some(enroll_error) => ExitCode::from(enroll_error.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// `fleet-agent register --config FILE`: registers with the configured enrollment token
/// (unless already registered) and prints the identity.
pub fn register(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(register_now(config)));
    exit(result)
}

async fn register_now(config: ValidConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let (_, _, identity, source) = connect_enrolled(&config, false, false).await?;
    let how = match source {
        enroll::Source::Preassigned => "preassigned in the configuration",
        enroll::Source::Stored => "already registered (identity in the state directory)",
        enroll::Source::Registered { new: true } => "registered",
        enroll::Source::Registered { new: false } => {
            "registered (the control plane knew this machine)"
        }
    };
    println!(
        "agent {} of tenant {}: {how}",
        identity.agent, identity.tenant
    );
    Ok(())
}

async fn serve(
    config: ValidConfig,
    version: fleet_agent::restic::output::ResticVersion,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
    let state = AgentState::open(&config.state_dir)
        .with_context(|| format!("cannot open the state in {}", config.state_dir.display()))?;
    if let Some(addr) = config.metrics_addr {
        fleet_agent::metrics_catalog::prometheus(addr)
            .and_then(|builder| builder.install())
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        fleet_agent::metrics_catalog::register();
    }
    let (client, shutdown, identity, source) = connect_enrolled(&config, true, true).await?;
    let client = client.context("no NATS connection")?;
    let agent = config.agent_config(&identity, version);
    tracing::info!(agent_id = %agent.agent, tenant = %agent.tenant, hostname = %agent.hostname,
        identity = ?source, restic = ?agent.restic_version, "agent starting");
    fleet_agent::runtime::run(client, agent, state, shutdown)
        .await
        .context("agent stopped")?;
    tracing::info!("agent stopped");
    Ok(())
}

/// Arms SIGINT/SIGTERM, finds the agent's identity (registering it with its NATS key if
/// it has none yet), then, when `connect`, connects to NATS as the agent (waiting for
/// the server if `wait_for_server`).
async fn connect_enrolled(
    config: &ValidConfig,
    wait_for_server: bool,
    connect: bool,
) -> anyhow::Result<(
    Option<async_nats::Client>,
    CancellationToken,
    enroll::Identity,
    enroll::Source,
)> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let key = load_or_create_key(&config.nats_key_file)
        .context("cannot read or create the agent's NATS key")?;
    let connection = enroll::Connection {
        config,
        access: NatsAccess::tls(config.nats_ca_file.clone()),
        key: &key,
        wait_for_server,
    };
    let (identity, source) = enroll::resolve(&connection, &shutdown).await?;
    let client = match connect {
        true => Some(enroll::connect_as(&connection, &identity, &shutdown).await?),
        false => None,
    };
    Ok((client, shutdown, identity, source))
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
