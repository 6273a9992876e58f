//! The `fleet` command line: commands, arguments and their environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use fleet_events::enroll::check_nats_key;
use fleet_events::store::connect::{NatsAccess, read_key};
use fleet_events::store::{BadNatsServers, EventStore, NatsServers};
use fleet_events::streams::StreamOptions;
use fleet_events::task_state::TaskStatus;
use fleet_projections::RunOutcomeKind;
use fleet_services::access::render::RenderConfig;
use fleet_services::clock::Clock;
use fleet_services::dispatcher::{DispatchConfig, DispatcherConfig};
use fleet_services::notifier::{NotifierConfig, NotifierSettings, Secrets};
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
    /// Agents (over the HTTP API): list, inspect, change limits, decommission, pre-register.
    Agent(AgentArgs),
    /// Policies (over the HTTP API): apply YAML, list, inspect, pause and resume, assign,
    /// run now, delete.
    Policy(PolicyArgs),
    /// Notification rules and the notification log (over the HTTP API): add from YAML or
    /// options, list, test, remove; what was sent and how its delivery went.
    Notify(crate::notify_args::NotifyArgs),
    /// Tasks (over the HTTP API): list, inspect with their event history, cancel.
    Task(TaskArgs),
    /// Restore a snapshot (or some of its paths) into a directory on an agent (over the
    /// HTTP API).
    Restore(RestoreArgs),
    /// Repositories (over the HTTP API): refresh a repository's snapshot inventory.
    Repo(RepoArgs),
    /// One snapshot (over the HTTP API): list a directory of it, listed by an agent.
    Snapshot(SnapshotArgs),
    /// The snapshot inventory (over the HTTP API): repositories' snapshots, newest first.
    Snapshots(SnapshotsArgs),
    /// Finished attempts (over the HTTP API): outcome, duration, snapshot or error.
    Runs(RunsArgs),
    /// The event log (over the HTTP API): one object's history, or follow it live.
    Events(EventsArgs),
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
            api_throttle: Default::default(),
            api_tls: self
                .api_tls_cert
                .clone()
                .zip(self.api_tls_key.clone())
                .map(|(cert, key)| fleet_services::api::https::TlsFiles { cert, key }),
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

/// How the API verbs reach the API, and what they print.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The fleet's HTTP API (http:// or https://).
    #[arg(
        long,
        env = "FLEET_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true,
        help_heading = "API"
    )]
    pub api: String,
    /// The tenant token to send (admin to change things, read-only to look).
    #[arg(
        long,
        env = "FLEET_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "API"
    )]
    pub token: Option<String>,
    /// Read the token from this file (used when no --token is given).
    #[arg(long, env = "FLEET_TOKEN_FILE", global = true, help_heading = "API")]
    pub token_file: Option<PathBuf>,
    /// Also trust this CA (PEM) for an https:// API, besides the system's roots.
    #[arg(long, env = "FLEET_API_CA_FILE", global = true, help_heading = "API")]
    pub api_ca_file: Option<PathBuf>,
    /// Output: tables for people, or the API's JSON for scripts.
    #[arg(
        short,
        long,
        value_enum,
        default_value = "table",
        global = true,
        help_heading = "API"
    )]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List the agents: state, load against limits, saturation, backoff.
    Ls,
    /// One agent in detail: load per kind, saturation, backoff and pending retries,
    /// settings.
    Show(AgentRef),
    /// Change an agent's limits; the settings not given keep their values.
    Settings(AgentSettingsArgs),
    /// Decommission an agent: it gets no more work and its machine cannot register again.
    Decommission(AgentRef),
    /// Pre-register the agent of a machine before it enrolls.
    Register(AgentRegisterArgs),
}

#[derive(Debug, Args)]
pub struct AgentRef {
    /// The agent's id, or its name.
    pub agent: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)))]
pub struct AgentSettingsArgs {
    /// The agent's id, or its name.
    pub agent: String,
    /// Tasks at once, all kinds together.
    #[arg(long, value_name = "N", group = "change")]
    pub max_concurrent: Option<u16>,
    /// Backups at once.
    #[arg(long, value_name = "N", group = "change")]
    pub backup: Option<u16>,
    /// Checks at once.
    #[arg(long, value_name = "N", group = "change")]
    pub check: Option<u16>,
    /// Prunes at once.
    #[arg(long, value_name = "N", group = "change")]
    pub prune: Option<u16>,
    /// CPU restic may use, in percent of one core.
    #[arg(long, value_name = "PERCENT", group = "change")]
    pub cpu_quota: Option<u16>,
    /// Upload limit in KiB/s (restic --limit-upload).
    #[arg(long, value_name = "N", group = "change")]
    pub upload_kib: Option<u32>,
    /// Download limit in KiB/s (restic --limit-download).
    #[arg(long, value_name = "N", group = "change")]
    pub download_kib: Option<u32>,
    /// CPU niceness of restic, -20 to 19.
    #[arg(
        long,
        value_name = "N",
        group = "change",
        allow_negative_numbers = true
    )]
    pub nice: Option<i8>,
}

#[derive(Debug, Args)]
pub struct AgentRegisterArgs {
    /// The machine's id (its /etc/machine-id, or the agent configuration's machineId).
    pub machine: String,
    /// A name for people (default: the one the agent gives when it enrolls).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or update policies to match YAML documents (separated by `---`): spec,
    /// `agents` (ids or names) and `paused`, when given.
    Apply(PolicyFileArgs),
    /// Create policies from YAML documents; a name that exists already is a conflict.
    Create(PolicyFileArgs),
    /// List the policies: kind, schedule, agents, paused, next fire.
    Ls,
    /// One policy: its spec, paused, agents and next fire times.
    Show(PolicyRef),
    /// Stop scheduling a policy's runs.
    Pause(PolicyRef),
    /// Schedule a paused policy's runs again.
    Resume(PolicyRef),
    /// Assign a policy to an agent.
    Assign(AssignArgs),
    /// Unassign a policy from an agent.
    Unassign(AssignArgs),
    /// Run a policy now, on each of its agents or on one.
    Run(PolicyRunArgs),
    /// Delete a policy: no more runs; its history stays.
    Delete(PolicyRef),
}

#[derive(Debug, Args)]
pub struct PolicyFileArgs {
    /// The YAML file, `-` for stdin.
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicyRef {
    /// The policy's id, or its name.
    pub policy: String,
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The policy's id, or its name.
    pub policy: String,
    /// The agent's id, or its name.
    pub agent: String,
}

#[derive(Debug, Args)]
pub struct PolicyRunArgs {
    /// The policy's id, or its name.
    pub policy: String,
    /// Only on this agent (id or name); by default on every assigned agent.
    #[arg(long)]
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub command: TaskCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List tasks, newest first.
    Ls(TaskLsArgs),
    /// One task and its events, in order.
    Show(TaskRef),
    /// Cancel a task (an agent running it is told to stop).
    Cancel(TaskCancelArgs),
    /// Follow a task live: its progress (restic's, about once a second) and its events,
    /// until it ends; exits 0 only if it succeeded.
    Watch(TaskRef),
}

#[derive(Debug, Args)]
pub struct TaskLsArgs {
    /// Only tasks in this state.
    #[arg(long, value_parser = task_states())]
    pub state: Option<String>,
    /// Only tasks of this agent (id or name).
    #[arg(long)]
    pub agent: Option<String>,
    /// Only tasks of this policy (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// Only tasks from this time on: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many (the API's default is 100, its maximum 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

fn task_states() -> PossibleValuesParser {
    PossibleValuesParser::new(TaskStatus::ALL.map(TaskStatus::as_str))
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot: its id or a prefix of it (restic's short id), as `fleet snapshots`
    /// lists it.
    pub snapshot: String,
    /// The agent that restores (id or name): the one that made the snapshot or any other
    /// holding the repository's secret.
    #[arg(long)]
    pub agent: String,
    /// The directory on the agent to restore into; files land under their snapshot paths.
    #[arg(long, value_name = "DIR")]
    pub target: String,
    /// Restore only this path of the snapshot (a file or a directory); repeat it.
    #[arg(long, value_name = "PATH")]
    pub include: Vec<String>,
    /// Count what would be restored and skipped; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A file that exists in the target: leave it (never), replace it when its size or
    /// modification time differs (if-changed), or always replace it.
    #[arg(long, value_parser = ["never", "if-changed", "always"], default_value = "never")]
    pub overwrite: String,
    /// The policy whose repository and secret to use (default: the snapshot's own, else
    /// the one live policy on its repository).
    #[arg(long)]
    pub policy: Option<String>,
    /// Follow the restore until it ends (as `fleet task watch`).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List a directory of a snapshot (restic ls on an agent holding the repository's
    /// secret), every page of it.
    Ls(SnapshotLsArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotLsArgs {
    /// The snapshot: its id or a prefix of it, as `fleet snapshots` lists it.
    pub snapshot: String,
    /// The directory in the snapshot.
    #[arg(default_value = "/")]
    pub path: String,
    /// The agent that lists it (id or name).
    #[arg(long)]
    pub agent: String,
    /// The policy whose repository and secret to use (default: the snapshot's own, else
    /// the one live policy on its repository).
    #[arg(long)]
    pub policy: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub command: RepoCommand,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// List the repository of a policy into the snapshot inventory (snapshots made outside
    /// the fleet included).
    Refresh(RefreshArgs),
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The policy (id or name) whose repository to list.
    pub policy: String,
    /// The agent that lists it (id or name; default: the policy's first agent).
    #[arg(long)]
    pub agent: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct TaskRef {
    /// The task's id.
    pub task: String,
}

#[derive(Debug, Args)]
pub struct TaskCancelArgs {
    /// The task's id.
    pub task: String,
    /// Why, for the log.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only this repository's: its id or its URL.
    #[arg(long)]
    pub repo: Option<String>,
    /// Only the snapshots of this agent's host (its id or name): the fleet's and those
    /// made there by hand.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this policy's (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// At most this many, newest first (default: every one).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print the API's JSON (an array of snapshots), as `-o json` does.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this agent (id or name).
    #[arg(long)]
    pub agent: Option<String>,
    /// Only runs of this policy (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// Only runs with this outcome.
    #[arg(long, value_parser = run_outcomes())]
    pub outcome: Option<String>,
    /// Only runs from this time on: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many (the API's default is 100, its maximum 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub api: ApiArgs,
}

fn run_outcomes() -> PossibleValuesParser {
    PossibleValuesParser::new(RunOutcomeKind::ALL.map(RunOutcomeKind::as_str))
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The events of one agent, task or policy, in order: one line each (sequence, time,
    /// type, aggregate, summary).
    Replay(ReplayArgs),
    /// Follow the tenant's events as they happen, until Ctrl-C (`-o json`: one JSON object
    /// per line).
    Tail,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("aggregate").required(true).args(["agent", "task", "policy"])))]
pub struct ReplayArgs {
    /// The events of this agent (id or name).
    #[arg(long)]
    pub agent: Option<String>,
    /// The events of this task.
    #[arg(long)]
    pub task: Option<String>,
    /// The events of this policy (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// Only events from this time on: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// Only events up to this time: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub until: Option<DateTime<Utc>>,
}

/// A time argument: RFC 3339, or an age before now (`90s`, `30m`, `2h`, `7d`).
fn time_arg(text: &str) -> Result<DateTime<Utc>, String> {
    time_at(text, Utc::now())
}

fn time_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let unit_at = text.char_indices().last().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(unit_at);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let age = number
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0 && seconds > 0)
        .and_then(|n| n.checked_mul(seconds))
        .and_then(chrono::TimeDelta::try_seconds);
    match age.and_then(|age| now.checked_sub_signed(age)) {
        Some(time) => Ok(time),
        None => Err(format!(
            "{text:?} is neither an RFC 3339 time (2025-01-02T03:04:05Z) nor an age such \
             as 30m, 2h or 7d"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_arguments_are_rfc3339_or_an_age() {
        let now = Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap();
        assert_eq!(
            time_at("2025-01-02T04:04:05+01:00", now),
            Ok(Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap())
        );
        assert_eq!(
            time_at("90s", now),
            Ok(Utc.with_ymd_and_hms(2025, 3, 10, 11, 58, 30).unwrap())
        );
        assert_eq!(
            time_at("2h", now),
            Ok(Utc.with_ymd_and_hms(2025, 3, 10, 10, 0, 0).unwrap())
        );
        assert_eq!(
            time_at("7d", now),
            Ok(Utc.with_ymd_and_hms(2025, 3, 3, 12, 0, 0).unwrap())
        );
        for bad in [
            "",
            "h",
            "2",
            "-1h",
            "2é",
            "2w",
            "yesterday",
            "99999999999999999d",
        ] {
            assert!(time_at(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "fleet", "agent", "settings", "web-1", "--nice", "-5", "--backup", "1", "-o", "json",
        ])
        .expect("parses");
        let Command::Agent(AgentArgs {
            command: AgentCommand::Settings(settings),
            api,
        }) = cli.command
        else {
            panic!("agent settings: {:?}", cli.command);
        };
        assert_eq!((settings.nice, settings.backup), (Some(-5), Some(1)));
        assert_eq!(api.output, OutputArg::Json);

        // A settings change needs at least one setting; a replay exactly one aggregate.
        for args in [
            &["fleet", "agent", "settings", "web-1"][..],
            &["fleet", "events", "replay"],
            &["fleet", "events", "replay", "--task", "t", "--agent", "a"],
            &["fleet", "task", "ls", "--state", "sleeping"],
            &["fleet", "runs", "--since", "soon"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
