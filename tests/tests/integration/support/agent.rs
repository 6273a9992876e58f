//! The real agent runtime in the scenario's process, against a temporary repository.

use std::collections::HashMap;
use std::path::Path;
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
        status_dir: None,
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
