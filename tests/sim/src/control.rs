//! The control plane under test: `fleet up` as a child process (every service, and its own
//! nats-server rendering per-agent authorization), reached with its control key; the
//! tenant, the enrollment token and the policies, written through the write side.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use fleet_command::policy::{self, Declared, PolicyCommand};
use fleet_events::event::Role;
use fleet_events::ids::{AgentId, PolicyId, TenantId};
use fleet_events::policy::{MissedRun, PolicySpec, RepositoryRef, RetryBudget, TaskKind};
use fleet_events::schedule::Schedule;
use fleet_events::store::EventStore;
use fleet_events::store::connect::read_key;
use fleet_events::streams;
use futures::StreamExt;
use tokio::process::{Child, Command};

use crate::measure::Scrape;
use crate::{Pair, SimConfig};

/// The simulation's tenant.
pub fn tenant() -> TenantId {
    TenantId::new("sim").unwrap_or_else(|_| unreachable!("`sim` is a valid slug"))
}

/// A running `fleet up`.
pub struct ControlPlane {
    child: Child,
    /// The `fleet up` process (every service).
    pub pid: u32,
    /// Its nats-server.
    pub nats_pid: u32,
    pub url: String,
    metrics: SocketAddr,
    pub store: EventStore,
    http: reqwest::Client,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl ControlPlane {
    /// Starts `fleet up` in `dir` and waits until its streams exist.
    pub async fn start(fleet_bin: &Path, dir: &Path) -> anyhow::Result<Self> {
        let (nats_port, api_port, metrics_port) = (free_port()?, free_port()?, free_port()?);
        let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
        let log = std::fs::File::create(dir.join("fleet.log")).context("fleet.log")?;
        let child = Command::new(fleet_bin)
            .arg("up")
            .arg("--data-dir")
            .arg(dir)
            .args(["--nats-port", &nats_port.to_string()])
            .args(["--api-addr", &format!("127.0.0.1:{api_port}")])
            .args(["--metrics-addr", &metrics.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("FLEET_SIM_CONTROL_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", fleet_bin.display()))?;
        let pid = child.id().context("fleet up's pid")?;
        let url = format!("nats://127.0.0.1:{nats_port}");
        let store = connect(dir, &url).await?;
        let nats_pid = crate::measure::child_named(pid, "nats-server")
            .context("fleet up's nats-server is not its child")?;
        let http = fleet_https_client::http_client(None, Duration::from_secs(30))?;
        Ok(Self {
            child,
            pid,
            nats_pid,
            url,
            metrics,
            store,
            http,
        })
    }

    /// Creates the tenant and issues an enrollment token.
    pub async fn enrollment_token(&self) -> anyhow::Result<String> {
        let now = Utc::now();
        fleet_identity::tenant::create(&self.store, &tenant(), "Simulation", now).await?;
        let token =
            fleet_identity::tenant::issue(&self.store, &tenant(), Role::Enroll, "sim", now).await?;
        Ok(token.text.expose().to_owned())
    }

    /// Creates `config.policies_per_agent` hourly policies for each agent, firing at
    /// `fire`'s minute and second, each assigned to its agent.
    pub async fn create_policies(
        &self,
        agents: &[AgentId],
        config: &SimConfig,
        fire: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Pair>> {
        let expr = crate::hourly_at(fire);
        let wanted = agents
            .iter()
            .enumerate()
            .flat_map(|(n, agent)| (0..config.policies_per_agent).map(move |p| (n, p, *agent)));
        let created: Vec<anyhow::Result<Pair>> = futures::stream::iter(wanted)
            .map(|(n, p, agent)| {
                let spec = spec(n, p, &expr, config.jitter_secs);
                async move {
                    let id = PolicyId::for_name(&tenant(), &spec.name);
                    let declared = Declared {
                        spec,
                        agents: Some(vec![agent]),
                        paused: None,
                    };
                    policy::run(
                        &self.store,
                        &tenant(),
                        id,
                        PolicyCommand::Create(declared),
                        None,
                        Utc::now(),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("creating a policy: {e}"))?;
                    Ok((id, agent))
                }
            })
            .buffer_unordered(config.command_concurrency.max(1))
            .collect()
            .await;
        created.into_iter().collect()
    }

    /// The control plane's `/metrics`.
    pub async fn scrape(&self) -> anyhow::Result<Scrape> {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Scrape::new(text))
    }

    /// SIGTERM, then SIGKILL after 30 s.
    pub async fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Connects with the control key once `fleet up` wrote it and its streams exist.
async fn connect(dir: &Path, url: &str) -> anyhow::Result<EventStore> {
    let key_file: PathBuf = dir.join("control.nk");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            let key = read_key(&key_file)?;
            let client = async_nats::ConnectOptions::new()
                .nkey(key.seed()?)
                .connect(url)
                .await?;
            let store = EventStore::new(client);
            store.jetstream().get_stream(streams::EVENTS).await?;
            store.jetstream().get_stream(streams::DISPATCH).await?;
            anyhow::Ok(store)
        };
        match attempt.await {
            Ok(store) => return Ok(store),
            Err(error) if Instant::now() > deadline => {
                return Err(error.context(format!(
                    "fleet up did not come up in 60 s (see {})",
                    dir.join("fleet.log").display()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Policy `p` of agent `n`: a backup of its own repository, hourly, with the jitter.
fn spec(n: usize, p: usize, expr: &str, jitter_secs: u32) -> PolicySpec {
    PolicySpec {
        name: format!("sim-{n:06}-{p}"),
        schedule: Schedule::Cron {
            expr: expr.into(),
            timezone: "UTC".into(),
        },
        kind: TaskKind::Backup,
        repository: RepositoryRef {
            url: format!("/srv/restic/sim-{n:06}"),
            secret: "sim".into(),
        },
        include: vec![format!("/data/{p}")],
        exclude: Vec::new(),
        retention: Default::default(),
        execution: Default::default(),
        retry: RetryBudget::default(),
        overlap: Default::default(),
        missed: MissedRun::Skip,
        priority: 5,
        jitter_secs,
        hooks: Default::default(),
    }
}
