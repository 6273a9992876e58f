//! The `fleet` command line: the control host's commands (up, serve, streams, tenants,
//! projections, NATS and TLS files) with their arguments and environment variables, and
//! the operators' verbs of `fleet-cli` beside them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
pub use fleet_cli::OutputArg;
use fleet_control::access::render::RenderConfig;
use fleet_control::clock::Clock;
use fleet_control::dispatcher::{DispatchConfig, DispatcherConfig};
use fleet_control::notifier::{NotifierConfig, NotifierSettings, Secrets};
use fleet_control::retry::CircuitConfig;
use fleet_control::serve::{self, Service, ServiceConfig};
use fleet_control::snapshot::Snapshots;
use fleet_control::telemetry;
use fleet_events::enroll::check_nats_key;
use fleet_events::store::connect::{NatsAccess, read_key};
use fleet_events::store::{BadNatsServers, EventStore, NatsServers};
use fleet_events::streams::StreamOptions;

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
    /// Write the NATS server's authorization config (one user per agent key, limited to
    /// its own subjects) from the event log, for a server `fleet up` does not run.
    NatsConfig(NatsConfigArgs),
    /// Make a private CA and a certificate it signed (for nats-server or the API), kept in
    /// a directory and reused until the names change or 30 days are left.
    TlsCert(TlsCertArgs),
    /// Manage tenants and their tokens.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// The read models: their progress, and rebuilding them from the log.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    #[command(flatten)]
    Operator(fleet_cli::Command),
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
    /// Days the projector keeps ended tasks and runs: rebuild with the projector's own.
    #[arg(long, env = "FLEET_HISTORY_DAYS", default_value_t = fleet_control::projector::DEFAULT_HISTORY_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub history_days: u32,
    #[command(flatten)]
    pub nats: NatsArgs,
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

#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// The NATS server, or several nodes of a cluster, comma-separated (each is tried in
    /// turn; the rest of the cluster is learnt from the one reached).
    #[arg(long, env = "FLEET_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The control plane's NATS key: a file holding an nkey seed (`SU…`, as `fleet up`
    /// writes to DATA_DIR/control.nk). Needed when the server runs the rendered
    /// authorization config.
    #[arg(long, env = "FLEET_NATS_KEY_FILE")]
    pub nats_key_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the NATS server's certificate: connect with
    /// TLS and trust only it.
    #[arg(long, env = "FLEET_NATS_CA_FILE")]
    pub nats_ca_file: Option<PathBuf>,
}

impl NatsArgs {
    /// How to present ourselves to the server.
    pub fn access(&self) -> anyhow::Result<NatsAccess> {
        let access = NatsAccess::tls(self.nats_ca_file.clone());
        match &self.nats_key_file {
            Some(path) => Ok(access.with_seed_file(path)?),
            None => Ok(access),
        }
    }

    /// The servers `--nats-url` names.
    pub fn servers(&self) -> anyhow::Result<NatsServers> {
        nats_servers(&self.nats_url)
    }

    /// Connects to the server.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let servers = self.servers()?;
        self.access()?
            .connect(&servers)
            .await
            .with_context(|| format!("connecting to NATS at {servers}"))
    }

    /// Connects and opens the event store.
    pub async fn store(&self) -> anyhow::Result<EventStore> {
        Ok(EventStore::new(self.connect().await?))
    }
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

/// How the NATS authorization config is rendered and who is told.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Where the access service writes the NATS authorization config (nats-server's
    /// configuration includes it); without it the service only creates agents' consumers.
    #[arg(long, env = "FLEET_NATS_AUTH_FILE")]
    pub nats_auth_file: Option<PathBuf>,
    /// nats-server's pid file (its `pid_file` option): the access service sends it SIGHUP
    /// after each write.
    #[arg(long, env = "FLEET_NATS_PID_FILE")]
    pub nats_pid_file: Option<PathBuf>,
    /// A control-plane user: a public key (`U…`) or a file holding a seed; repeat it or
    /// separate with commas. The key of --nats-key-file is always one.
    #[arg(
        long = "control-key",
        env = "FLEET_CONTROL_KEYS",
        value_delimiter = ','
    )]
    pub control_keys: Vec<String>,
    /// Refuse connections without credentials: agents cannot register over NATS (their
    /// keys must then be authorized some other way).
    #[arg(long, env = "FLEET_NO_ANONYMOUS_ENROLL")]
    pub no_anonymous_enroll: bool,
}

impl AccessArgs {
    /// What to render: the control plane's public keys (at least one, or the control
    /// plane would lock itself out) and whether anonymous connections may enroll.
    pub fn render_config(&self, nats: &NatsArgs) -> anyhow::Result<RenderConfig> {
        let mut control_keys = Vec::new();
        if let Some(path) = &nats.nats_key_file {
            control_keys.push(read_key(path)?.public_key());
        }
        for key in &self.control_keys {
            let public = match check_nats_key(key) {
                Ok(()) => key.clone(),
                Err(_) => read_key(std::path::Path::new(key))
                    .with_context(|| {
                        format!("--control-key {key}: neither a public key nor a seed file")
                    })?
                    .public_key(),
            };
            if !control_keys.contains(&public) {
                control_keys.push(public);
            }
        }
        anyhow::ensure!(
            !control_keys.is_empty(),
            "no control-plane key: pass --nats-key-file or --control-key, or the control plane \
             would lock itself out of NATS"
        );
        Ok(RenderConfig {
            control_keys,
            anonymous_enroll: !self.no_anonymous_enroll,
        })
    }
}

#[derive(Debug, Args)]
pub struct NatsConfigArgs {
    /// The file to write (include it in each nats-server's configuration).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Write the first config, before any server runs: the control plane and anonymous
    /// enrollment only, without reading the log (the access service adds the agents once
    /// the servers run). An existing file is kept.
    #[arg(long)]
    pub bootstrap: bool,
    /// Create --nats-key-file (a new control-plane key, 0600) if it does not exist.
    #[arg(long, requires = "nats_key_file")]
    pub create_key: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Debug, Args)]
pub struct TlsCertArgs {
    /// Where the CA (ca.pem), the certificate with its chain (cert.pem) and its key
    /// (key.pem, 0600) are kept.
    #[arg(long)]
    pub dir: PathBuf,
    /// A DNS name or IP address the certificate is valid for (repeat it).
    #[arg(long = "name", value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ServiceArg {
    Access,
    Scheduler,
    Dispatcher,
    Intake,
    Retry,
    Registrar,
    Projector,
    Api,
    Notifier,
}

impl From<ServiceArg> for Service {
    fn from(s: ServiceArg) -> Service {
        match s {
            ServiceArg::Access => Service::Access,
            ServiceArg::Scheduler => Service::Scheduler,
            ServiceArg::Retry => Service::Retry,
            ServiceArg::Intake => Service::Intake,
            ServiceArg::Dispatcher => Service::Dispatcher,
            ServiceArg::Registrar => Service::Registrar,
            ServiceArg::Projector => Service::Projector,
            ServiceArg::Api => Service::Api,
            ServiceArg::Notifier => Service::Notifier,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service to run.
    #[arg(value_enum)]
    pub service: ServiceArg,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub services: ServiceArgs,
    #[command(flatten)]
    pub access: AccessArgs,
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
    /// Seconds without a heartbeat after which an agent goes offline (an agent whose
    /// heartbeats are further apart gets three of its own intervals).
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
    /// Days of the log's clock the read models keep ended tasks and runs; after that only
    /// their per-day totals (`fleet history`) remain there, and the log keeps everything.
    #[arg(long, env = "FLEET_HISTORY_DAYS", default_value_t = fleet_control::projector::DEFAULT_HISTORY_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub history_days: u32,
    /// Where services keep snapshots of their folded state, so that a start reads the log
    /// only from the snapshot on (`fleet up`: DATA_DIR/snapshots; unset for `fleet serve`:
    /// every start replays the whole log).
    #[arg(long, env = "FLEET_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Where the HTTP API listens (`fleet up`: 127.0.0.1:8080).
    #[arg(long, env = "FLEET_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// The API's certificate chain (PEM): the API serves HTTPS only (with --api-tls-key).
    #[arg(long, env = "FLEET_API_TLS_CERT", requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --api-tls-cert.
    #[arg(long, env = "FLEET_API_TLS_KEY", requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// The notifier's secrets: a YAML map of tenant → name → secret (target URLs that
    /// carry tokens, HMAC keys) that notification rules name with urlSecret/hmacSecret.
    #[arg(long, env = "FLEET_NOTIFY_SECRETS")]
    pub notify_secrets: Option<PathBuf>,
    /// A CA certificate (PEM) the notifier trusts besides the system's roots.
    #[arg(long, env = "FLEET_NOTIFY_CA_FILE")]
    pub notify_ca_file: Option<PathBuf>,
    /// Events older than this many seconds when the notifier first sees them are not
    /// notified (a notifier started after a long outage does not send old news).
    #[arg(long, env = "FLEET_NOTIFY_MAX_AGE_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=30 * 86_400))]
    pub notify_max_age_secs: u64,
}

impl ServiceArgs {
    pub fn config(&self) -> anyhow::Result<ServiceConfig> {
        let listener = self.metrics_addr.map(telemetry::bind).transpose()?;
        serve::install_metrics(listener)?;
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
            history_days: self.history_days,
            snapshots: match &self.snapshot_dir {
                Some(dir) => Snapshots::in_dir(dir),
                None => Snapshots::off(),
            },
            api_addr: self.api_addr,
            api_throttle: Default::default(),
            api_tls: self
                .api_tls_cert
                .clone()
                .zip(self.api_tls_key.clone())
                .map(|(cert, key)| fleet_control::api::https::TlsFiles { cert, key }),
            access: None,
            notifier: NotifierSettings {
                core: NotifierConfig {
                    max_age: chrono::TimeDelta::seconds(
                        i64::try_from(self.notify_max_age_secs).unwrap_or(i64::MAX),
                    ),
                    ..NotifierConfig::default()
                },
                secrets: match &self.notify_secrets {
                    Some(path) => Secrets::load(path)?,
                    None => Secrets::default(),
                },
                ca_file: self.notify_ca_file.clone(),
                ..NotifierSettings::default()
            },
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
    #[command(flatten)]
    pub nats: NatsArgs,
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

/// `--nats-url` as a server list; the error names the option, never its value (a URL may
/// hold a password).
pub fn nats_servers(text: &str) -> anyhow::Result<NatsServers> {
    text.parse()
        .map_err(|e: BadNatsServers| anyhow::anyhow!("--nats-url (FLEET_NATS_URL) {e}"))
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Use this NATS server (or cluster nodes, comma-separated) instead of starting one.
    #[arg(long, env = "FLEET_NATS_URL")]
    pub nats_url: Option<String>,
    /// Where the local nats-server keeps its store and log.
    #[arg(long, env = "FLEET_DATA_DIR", default_value = "fleet-data")]
    pub data_dir: PathBuf,
    /// Port of the local nats-server.
    #[arg(long, env = "FLEET_NATS_PORT", default_value_t = 4222)]
    pub nats_port: u16,
    /// The control plane's NATS key (seed file) for the server --nats-url names; the
    /// local server's is DATA_DIR/control.nk, created on first start.
    #[arg(long, env = "FLEET_NATS_KEY_FILE")]
    pub nats_key_file: Option<PathBuf>,
    /// The CA certificate (PEM) of the NATS server's TLS certificate; the services and
    /// the demo agent then connect with TLS.
    #[arg(long, env = "FLEET_NATS_CA_FILE")]
    pub nats_ca_file: Option<PathBuf>,
    /// The local nats-server's TLS certificate (PEM); clients then must use TLS.
    #[arg(long, env = "FLEET_NATS_TLS_CERT", requires_all = ["nats_tls_key", "nats_ca_file"])]
    pub nats_tls_cert: Option<PathBuf>,
    /// The local nats-server's TLS key (PEM).
    #[arg(long, env = "FLEET_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Serve the API over HTTPS with a certificate made for it: a private CA and a
    /// certificate it signed for localhost, 127.0.0.1, ::1, this machine's hostname, the
    /// --api-addr IP and every --api-tls-name, kept in DATA_DIR/api-tls/ and reused;
    /// clients trust DATA_DIR/api-tls/ca.pem (`fleet --api-ca-file`).
    #[arg(long, conflicts_with = "api_tls_cert")]
    pub api_tls_self_signed: bool,
    /// Another DNS name or IP address the made certificate is valid for (repeatable).
    #[arg(
        long = "api-tls-name",
        value_name = "NAME",
        requires = "api_tls_self_signed"
    )]
    pub api_tls_names: Vec<String>,
    /// Also start a local agent (fleet-agent, a child process) enrolled in the tenant
    /// `demo`, with a policy backing a sample directory up into a local repository, all
    /// under DATA_DIR/demo.
    #[arg(long)]
    pub demo: bool,
    /// Seconds between the demo's backups.
    #[arg(long, default_value_t = fleet_control::demo::DEFAULT_EVERY_SECS, value_parser = clap::value_parser!(u64).range(60..=86_400), requires = "demo")]
    pub demo_every_secs: u64,
    /// The fleet-agent program the demo starts (default: next to `fleet`, else on PATH).
    #[arg(long, env = "FLEET_AGENT_BINARY", requires = "demo")]
    pub agent_binary: Option<PathBuf>,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub services: ServiceArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["fleet", "agent", "ls", "-o", "json"]).expect("parses");
        assert!(
            matches!(cli.command, Command::Operator(fleet_cli::Command::Agent(_))),
            "{:?}",
            cli.command
        );
        let cli = Cli::try_parse_from(["fleet", "projections", "status"]).expect("parses");
        assert!(
            matches!(cli.command, Command::Projections(_)),
            "{:?}",
            cli.command
        );
    }
}
