//! The `fleet` command line: commands, arguments and their environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fleet_events::streams::StreamOptions;
use fleet_services::clock::Clock;
use fleet_services::dispatcher::{DispatchConfig, DispatcherConfig};
use fleet_services::retry::CircuitConfig;
use fleet_services::serve::{self, Service, ServiceConfig};

/// restic-fleet: schedules and runs restic backups on a fleet of agents.
#[derive(Debug, Parser)]
#[command(name = "fleet", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run restic-fleet on this machine: a local nats-server (unless --nats-url is given)
    /// with the fleet's streams, until Ctrl-C.
    Up(UpArgs),
    /// Run one service against a NATS server; run several instances to scale out.
    Serve(ServeArgs),
    /// Manage the JetStream streams on a NATS server.
    #[command(subcommand)]
    Streams(StreamsCommand),
    /// Manage tenants and their tokens.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// The read models: their progress, and rebuilding them from the log.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each read model's checkpoint, lag behind the log and rejected events (asks the
    /// running projector).
    Status(StatusArgs),
    /// Drop the read models and replay the log from sequence 1 into them. Run it with the
    /// projector stopped (its database is locked while it runs).
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Output: a table for people, or json.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The projector's directory (`fleet up`: DATA_DIR/projections).
    #[arg(
        long,
        env = "FLEET_PROJECTIONS_DIR",
        default_value = "fleet-data/projections"
    )]
    pub projections_dir: PathBuf,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print an admin token and an enrollment token (shown once).
    Create(TenantCreateArgs),
    /// Issue another token to a tenant (shown once).
    Token(TokenIssueArgs),
    /// Revoke a token: it stops working at once.
    Revoke(TokenRevokeArgs),
    /// List a tenant's tokens (ids, roles, labels; never the tokens).
    Tokens(TenantArgs),
}

#[derive(Debug, Args)]
pub struct NatsArgs {
    /// The NATS server.
    #[arg(long, env = "FLEET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

#[derive(Debug, Args)]
pub struct TenantArgs {
    /// The tenant's id: lowercase letters, digits, `-` and `_`.
    pub tenant: String,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    /// The tenant's id: lowercase letters, digits, `-` and `_`.
    pub tenant: String,
    /// A name for people (default: the id).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Read and change everything of the tenant.
    Admin,
    /// Read everything, change nothing.
    ReadOnly,
    /// Register agents, nothing else.
    Enroll,
}

#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// The tenant's id.
    pub tenant: String,
    /// What the token may do.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// What the token is for, to recognise it when revoking.
    #[arg(long, default_value = "")]
    pub label: String,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The tenant's id.
    pub tenant: String,
    /// The token's id, as `fleet tenant tokens` lists it.
    pub token_id: String,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ServiceArg {
    Scheduler,
    Dispatcher,
    Intake,
    Retry,
    Registrar,
    Projector,
    Api,
}

impl From<ServiceArg> for Service {
    fn from(s: ServiceArg) -> Service {
        match s {
            ServiceArg::Scheduler => Service::Scheduler,
            ServiceArg::Retry => Service::Retry,
            ServiceArg::Intake => Service::Intake,
            ServiceArg::Dispatcher => Service::Dispatcher,
            ServiceArg::Registrar => Service::Registrar,
            ServiceArg::Projector => Service::Projector,
            ServiceArg::Api => Service::Api,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    pub service: ServiceArg,
    /// The NATS server.
    #[arg(long, env = "FLEET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    #[command(flatten)]
    pub services: ServiceArgs,
}

/// Settings of the services.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, env = "FLEET_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Consecutive network failures on one repository that open its circuit.
    #[arg(long, env = "FLEET_CIRCUIT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub circuit_threshold: u32,
    /// How long an open circuit holds a repository's tasks, in seconds.
    #[arg(long, env = "FLEET_CIRCUIT_COOL_DOWN_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub circuit_cool_down_secs: u64,
    /// Seconds without a heartbeat after which an agent goes offline.
    #[arg(long, env = "FLEET_AGENT_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub agent_lease_secs: u64,
    /// Seconds offline after the lease before an agent's running tasks are lost.
    #[arg(long, env = "FLEET_LOST_GRACE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub lost_grace_secs: u64,
    /// Heartbeat-reported queue length above which an agent counts as saturated.
    #[arg(long, env = "FLEET_QUEUE_THRESHOLD", default_value_t = 2)]
    pub queue_threshold: u16,
    /// Dispatch to agents with tasks in backoff (by default they get nothing until it ends).
    #[arg(long, env = "FLEET_IGNORE_AGENT_BACKOFF")]
    pub ignore_agent_backoff: bool,
    /// Where the projector keeps its read models (`fleet up`: DATA_DIR/projections).
    #[arg(long, env = "FLEET_PROJECTIONS_DIR")]
    pub projections_dir: Option<PathBuf>,
    /// Where the HTTP API listens (`fleet up`: 127.0.0.1:8080).
    #[arg(long, env = "FLEET_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
}

impl ServiceArgs {
    pub fn config(&self) -> anyhow::Result<ServiceConfig> {
        serve::install_metrics(self.metrics_addr)?;
        Ok(ServiceConfig {
            clock: Clock::System,
            circuit: CircuitConfig {
                threshold: self.circuit_threshold,
                cool_down: Duration::from_secs(self.circuit_cool_down_secs),
            },
            dispatcher: DispatcherConfig {
                dispatch: DispatchConfig {
                    queue_threshold: self.queue_threshold,
                    respect_agent_backoff: !self.ignore_agent_backoff,
                    dispatch_to_offline: false,
                },
                lease: Duration::from_secs(self.agent_lease_secs),
                grace: Duration::from_secs(self.lost_grace_secs),
                // The agent enforces the run timeout itself; the control plane steps in
                // one lease later.
                timeout_margin: Duration::from_secs(self.agent_lease_secs),
            },
            projections_dir: self.projections_dir.clone(),
            api_addr: self.api_addr,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// Create the streams that are missing; refuse ones that exist with another meaning.
    Ensure(EnsureArgs),
}

#[derive(Debug, Args)]
pub struct EnsureArgs {
    /// The NATS server.
    #[arg(long, env = "FLEET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    #[command(flatten)]
    pub streams: StreamArgs,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Replicas per stream: 1 on one machine, 3 on a cluster.
    #[arg(long, env = "FLEET_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// How long a message id is remembered for deduplication, in seconds.
    #[arg(long, env = "FLEET_DUPLICATE_WINDOW_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duplicate_window_secs: u64,
}

impl StreamArgs {
    pub fn options(&self) -> StreamOptions {
        StreamOptions {
            replicas: usize::from(self.replicas),
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
        }
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Use this NATS server instead of starting one.
    #[arg(long, env = "FLEET_NATS_URL")]
    pub nats_url: Option<String>,
    /// Where the local nats-server keeps its store and log.
    #[arg(long, env = "FLEET_DATA_DIR", default_value = "fleet-data")]
    pub data_dir: PathBuf,
    /// Port of the local nats-server.
    #[arg(long, env = "FLEET_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// Also start a local agent (fleet-agent, a child process) enrolled in the tenant
    /// `demo`, with a policy backing a sample directory up into a local repository, all
    /// under DATA_DIR/demo.
    #[arg(long)]
    pub demo: bool,
    /// Seconds between the demo's backups.
    #[arg(long, default_value_t = fleet_services::demo::DEFAULT_EVERY_SECS, value_parser = clap::value_parser!(u64).range(60..=86_400), requires = "demo")]
    pub demo_every_secs: u64,
    /// The fleet-agent program the demo starts (default: next to `fleet`, else on PATH).
    #[arg(long, env = "FLEET_AGENT_BINARY", requires = "demo")]
    pub agent_binary: Option<PathBuf>,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub services: ServiceArgs,
}
