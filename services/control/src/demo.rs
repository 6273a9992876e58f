//! `fleet up --demo`: the whole loop on one machine. Creates the tenant `demo` and an
//! enrollment token, a sample directory, a repository password and an agent
//! configuration under `<data dir>/demo`; starts `fleet-agent` as a child process, which
//! enrolls with the token; then creates and assigns a policy that backs the sample
//! directory up into a local repository every few minutes.
//!
//! Every step is idempotent: a second `fleet up --demo` on the same data directory reuses
//! the tenant, the agent's identity and the policy.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use fleet_events::event::Role;
use fleet_events::ids::{AgentId, PolicyId, TenantId};
use fleet_events::policy::{Execution, PolicySpec, RepositoryRef, Retention, TaskKind};
use fleet_events::schedule::Schedule;
use fleet_events::store::EventStore;
use fleet_events::subject::{AggregateId, EventSubject};
use ring::rand::SecureRandom;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::command::CommandError;
use crate::command::policy::{self, Declared, PolicyCommand};
use crate::tenant;

/// The demo's tenant.
pub const TENANT: &str = "demo";
/// The demo agent's machine id (so its agent id is known before it registers).
pub const MACHINE: &str = "fleet-demo-agent";
/// Default seconds between the demo's backups.
pub const DEFAULT_EVERY_SECS: u64 = 120;
/// How long the agent gets to register.
const REGISTER_WITHIN: Duration = Duration::from_secs(60);
/// How long the agent gets to stop after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(20);

/// What the demo needs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Where the demo keeps its files (`<data dir>/demo`).
    pub dir: PathBuf,
    /// The `fleet-agent` program.
    pub agent_binary: PathBuf,
    /// Seconds between backups (60 or more).
    pub every_secs: u64,
    /// The CA the agent trusts for the NATS server's TLS certificate.
    pub nats_ca_file: Option<PathBuf>,
}

/// The `fleet-agent` next to this program, else on PATH.
pub fn find_agent_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("fleet-agent"))
        .filter(|path| path.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("fleet-agent"))
                .find(|candidate| candidate.is_file())
        })
    })
}

/// The demo tenant.
pub fn tenant() -> TenantId {
    TenantId::new(TENANT).unwrap_or_else(|_| unreachable!("`demo` is a valid slug"))
}

/// The demo agent's id.
pub fn agent() -> AgentId {
    AgentId::for_machine(&tenant(), MACHINE)
}

/// The demo policy's name.
pub const POLICY_NAME: &str = "demo-sample";

/// The demo policy's id: its name's, like every policy's, so a second start finds it and
/// `fleet policy show demo-sample` names it.
pub fn policy() -> PolicyId {
    PolicyId::for_name(&tenant(), POLICY_NAME)
}

/// The demo policy: back the sample directory up into the local repository.
pub fn spec(dir: &Path, every_secs: u64) -> PolicySpec {
    PolicySpec {
        name: POLICY_NAME.into(),
        schedule: Schedule::Interval { every_secs },
        kind: TaskKind::Backup,
        repository: RepositoryRef {
            url: dir.join("repo").display().to_string(),
            secret: "demo".into(),
        },
        include: vec![dir.join("sample").display().to_string()],
        exclude: Vec::new(),
        retention: Retention {
            keep_last: Some(10),
            ..Retention::default()
        },
        execution: Execution {
            run_timeout_secs: 600,
            tags: vec!["demo".into()],
            host: None,
            init_if_missing: true,
        },
        retry: Default::default(),
        overlap: Default::default(),
        missed: Default::default(),
        priority: 5,
        jitter_secs: 0,
        hooks: Default::default(),
    }
}

/// Runs the demo until `shutdown`: prepares it, starts the agent, assigns the policy; at
/// shutdown stops the agent (SIGTERM, then SIGKILL after 20 s).
pub async fn run(
    store: &EventStore,
    nats_url: &str,
    config: &DemoConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let agent_config = prepare(store, nats_url, config).await?;
    let mut child = Command::new(&config.agent_binary)
        .arg("run")
        .arg("--config")
        .arg(&agent_config)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", config.agent_binary.display()))?;
    tracing::info!(pid = child.id(), config = %agent_config.display(), "demo agent started");
    let assigned = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        result = assign(store, config) => result,
        status = child.wait() => Err(anyhow::anyhow!("the demo agent exited early: {status:?}")),
    };
    if assigned.is_ok() && !shutdown.is_cancelled() {
        tracing::info!(
            every_secs = config.every_secs,
            sample = %config.dir.join("sample").display(),
            repository = %config.dir.join("repo").display(),
            "demo running: the sample directory is backed up on schedule; \
             `restic snapshots -r <repository> --password-file <demo>/repo-password` lists them"
        );
        tokio::select! {
            _ = shutdown.cancelled() => {}
            status = child.wait() => tracing::error!(?status, "the demo agent exited"),
        }
    }
    stop(&mut child).await;
    assigned
}

/// Writes what the agent needs and makes sure the tenant exists; returns the path of the
/// agent's configuration.
async fn prepare(
    store: &EventStore,
    nats_url: &str,
    config: &DemoConfig,
) -> anyhow::Result<PathBuf> {
    let dir = &config.dir;
    std::fs::create_dir_all(dir.join("sample"))
        .with_context(|| format!("creating {}", dir.display()))?;
    write_sample(&dir.join("sample"))?;
    let password = dir.join("repo-password");
    if !password.exists() {
        write_private(&password, &random_hex()?)?;
    }
    let token_file = dir.join("enrollment.token");
    let tenant = tenant();
    let (book, _) = tenant::book(store, &tenant).await?;
    if !book.exists {
        tenant::create(store, &tenant, "Demo", Utc::now()).await?;
        tracing::info!(%tenant, "demo tenant created");
    }
    // An admin token for the operator's CLI and API (FLEET_TOKEN_FILE).
    let admin_file = dir.join("admin.token");
    if !admin_file.exists() {
        let token = tenant::issue(store, &tenant, Role::Admin, "demo operator", Utc::now()).await?;
        write_private(&admin_file, token.text.expose())?;
        tracing::info!(file = %admin_file.display(), "demo admin token written");
    }
    let state_dir = dir.join("agent-state");
    let enrolled = state_dir.join("identity.json").exists();
    if !enrolled && !token_file.exists() {
        let token = tenant::issue(store, &tenant, Role::Enroll, "demo agent", Utc::now()).await?;
        write_private(&token_file, token.text.expose())?;
    }
    let agent_config = dir.join("agent.yaml");
    let yaml = format!(
        "# Written by `fleet up --demo`.\nnatsUrl: {}\nstateDir: {}\n\
         enrollmentTokenFile: {}\nmachineId: {MACHINE}\nname: demo-agent\n\
         heartbeatSecs: 5\nstopGraceSecs: 5\nsecrets:\n  demo:\n    passwordFile: {}\n",
        quoted(nats_url),
        quoted(&state_dir.display().to_string()),
        quoted(&token_file.display().to_string()),
        quoted(&password.display().to_string()),
    );
    let yaml = match &config.nats_ca_file {
        Some(ca) => format!("{yaml}natsCaFile: {}\n", quoted(&ca.display().to_string())),
        None => yaml,
    };
    std::fs::write(&agent_config, yaml)
        .with_context(|| format!("writing {}", agent_config.display()))?;
    Ok(agent_config)
}

/// Waits for the agent's registration, then creates and assigns the demo policy unless
/// the log has them.
async fn assign(store: &EventStore, config: &DemoConfig) -> anyhow::Result<()> {
    let tenant = tenant();
    let agent_subject = EventSubject {
        tenant: tenant.clone(),
        aggregate: AggregateId::Agent(agent()),
    };
    let deadline = tokio::time::Instant::now() + REGISTER_WITHIN;
    while store.last_sequence(&agent_subject.to_string()).await? == 0 {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the demo agent did not register within 60 s (see its log above)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure_policy(store, config, Utc::now()).await
}

/// Creates the demo policy unless a live one exists (an operator's changes to it are
/// kept), and assigns it to the demo agent unless it is: through the write side's policy
/// commands, as the API runs them, so a deleted demo policy is created again.
pub async fn ensure_policy(
    store: &EventStore,
    config: &DemoConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let tenant = tenant();
    let declared = Declared {
        spec: spec(&config.dir, config.every_secs),
        agents: None,
        paused: None,
    };
    match policy::run(
        store,
        &tenant,
        policy(),
        PolicyCommand::Create(declared),
        None,
        now,
    )
    .await
    {
        Ok(_) | Err(CommandError::Conflict(_)) => {}
        Err(e) => return Err(anyhow::anyhow!("creating the demo policy: {e}")),
    }
    let assign = PolicyCommand::Assign(agent());
    policy::run(store, &tenant, policy(), assign, None, now)
        .await
        .map_err(|e| anyhow::anyhow!("assigning the demo policy: {e}"))?;
    Ok(())
}

/// SIGTERM, then SIGKILL if the agent has not stopped in time.
async fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(STOP_WITHIN, child.wait()).await {
        Ok(status) => tracing::info!(?status, "demo agent stopped"),
        Err(_) => {
            tracing::warn!("the demo agent did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

/// A few files to back up (written once; edit them to see changes in the next backup).
fn write_sample(dir: &Path) -> anyhow::Result<()> {
    let files = [
        (
            "README.txt",
            "Sample data of `fleet up --demo`: this directory is backed up on schedule.\n\
             Change or add files here and the next snapshot will show them.\n"
                .to_owned(),
        ),
        (
            "notes/monday.txt",
            "Backups are boring when they work.\n".repeat(200),
        ),
        (
            "notes/tuesday.txt",
            "Restores are the point of backups.\n".repeat(400),
        ),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `text` as a single-quoted YAML string.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Writes `text` and a newline to a file only its owner can read (atomically).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    Ok(fleet_events::store::connect::write_private(
        path,
        &format!("{text}\n"),
    )?)
}

/// 32 random bytes as hex: the demo repository's password.
fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_policy_is_valid() {
        let spec = spec(Path::new("/tmp/fleet-demo"), DEFAULT_EVERY_SECS);
        assert!(spec.validate().is_ok(), "{:?}", spec.validate());
        assert!(spec.execution.init_if_missing);
    }

    #[test]
    fn sample_and_private_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_sample(dir.path()).expect("sample");
        assert!(dir.path().join("notes/tuesday.txt").is_file());
        let secret = dir.path().join("secret");
        write_private(&secret, &random_hex().expect("random")).expect("written");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&secret).expect("read").trim().len(),
            64
        );
    }
}
