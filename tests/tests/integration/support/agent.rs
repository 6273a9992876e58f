//! The real agent against a temporary repository: its runtime in the scenario's process
//! ([`spawn_agent`]), or the `fleet-agent` binary built beside the test binary
//! ([`AgentProcess`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleet_agent::executor::SecretSource;
use fleet_agent::restic::output::ResticVersion;
use fleet_agent::runtime::{AgentConfig, run};
use fleet_agent::state::AgentState;
use fleet_events::ids::AgentId;
use fleet_events::policy::{PolicySpec, RepositoryRef};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_tests::restic::Repo;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::tenant;

/// The secret name the scenarios' policies use for their repository.
pub const SECRET: &str = "repo";

/// A backup of `data` into `repo`, the rest from the sample policy.
pub fn backup_spec(repo: &Repo, data: &Path) -> PolicySpec {
    PolicySpec {
        repository: RepositoryRef {
            url: repo.path.display().to_string(),
            secret: SECRET.into(),
        },
        include: vec![data.display().to_string()],
        exclude: vec![],
        ..samples::policy_spec()
    }
}

/// An agent with `settings` that opens `repo` with its password file, runs the installed
/// restic, heartbeats twice a second and writes no status file.
pub fn agent_config(agent: AgentId, repo: &Repo, settings: AgentSettings) -> AgentConfig {
    let version =
        ResticVersion::parse(&fleet_tests::restic::version_output()).expect("a restic version");
    AgentConfig {
        agent,
        tenant: tenant(),
        settings,
        secrets: HashMap::from([(
            SECRET.to_owned(),
            SecretSource::File(repo.password_file.clone()),
        )]),
        restic: "restic".into(),
        restic_version: version,
        hostname: "scenario-host".into(),
        heartbeat_every: Duration::from_millis(500),
        stop_grace: Duration::from_secs(2),
        unreachable_after: fleet_agent::executor::UNREACHABLE_AFTER,
        lock_wait: fleet_agent::executor::LOCK_WAIT,
        status_dir: None,
        hooks: Default::default(),
    }
}

/// Runs the agent on `client` with `state` until `shutdown`; the task panics if it fails.
pub fn spawn_agent(
    client: &async_nats::Client,
    config: AgentConfig,
    state: &AgentState,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let (client, state, shutdown) = (client.clone(), state.clone(), shutdown.clone());
    tokio::spawn(async move {
        run(client, config, state, shutdown)
            .await
            .expect("agent ran")
    })
}

/// The `fleet-agent` binary running `run`, its log in the scenario's directory.
pub struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts the agent with `config`, logging into `<name>.log` beside it.
    pub fn start(config: &Path, name: &str) -> Self {
        Self::start_with(config, name, &[])
    }

    /// [`AgentProcess::start`] with more environment variables (restic inherits them).
    pub fn start_with(config: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let log = config.with_file_name(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("agent log");
        let child = Command::new(agent_binary())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("fleet-agent starts");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL to the agent alone, then reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM (the agent stops its restic and exits), then reaps it.
    pub fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the agent this scenario started and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        self.child.wait().expect("reaped");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The agent binary beside this test binary (`target/<profile>/fleet-agent`).
pub fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("fleet-agent");
    assert!(
        path.is_file(),
        "{} is missing: build it (cargo build -p fleet-agent), or run the workspace tests, \
         which build it",
        path.display()
    );
    path
}
