//! Phase one of the agent's configuration: the YAML file as written, plus environment
//! overrides, before anything is checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fleet_events::settings::AgentSettings;
use fleet_events::validation::FieldError;
use serde::Deserialize;

/// The configuration file as written; every field is optional here, [`super::validate`]
/// says what is missing. Field names are camelCase; unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    /// NATS server URL(s), comma-separated (default `nats://127.0.0.1:4222`).
    pub nats_url: Option<String>,
    /// The CA certificate (PEM) that signed the NATS server's certificate: connect with
    /// TLS and trust only it (default: plain connection unless the URL is `tls://`).
    pub nats_ca_file: Option<PathBuf>,
    /// The agent's NATS key (nkey seed, 0600), created on first start (default
    /// `<stateDir>/nats.nk`); its public half is sent when registering.
    pub nats_key_file: Option<PathBuf>,
    /// Directory of the local state (default `/var/lib/fleet-agent`).
    pub state_dir: Option<PathBuf>,
    /// A tenant enrollment token (`rft1.<tenant>.<hex>`): on first start the agent
    /// registers with it and keeps the identity it gets in its state directory.
    pub enrollment_token: Option<String>,
    /// A file holding the enrollment token (instead of `enrollmentToken`).
    pub enrollment_token_file: Option<PathBuf>,
    /// A stable id of this machine (default: `/etc/machine-id`). Registering the same
    /// machine again gives the same agent.
    pub machine_id: Option<String>,
    /// A name for people (default: the hostname).
    pub name: Option<String>,
    /// A preassigned agent id (a UUID), instead of enrolling; needs `tenant`.
    pub agent_id: Option<String>,
    /// The tenant of a preassigned `agentId`.
    pub tenant: Option<String>,
    /// `--host` of backups whose policy names none (default: the machine's hostname).
    pub hostname: Option<String>,
    /// Seconds between heartbeats, 1 to 300 (default 10).
    pub heartbeat_secs: Option<u64>,
    /// Seconds between SIGINT and SIGKILL when restic is stopped (default 10).
    pub stop_grace_secs: Option<u64>,
    /// Seconds restic may keep retrying to reach a repository while opening it before the
    /// run is stopped and fails as `network`, 1 to 3600 (default 120; restic 0.17 and
    /// later retry for 15 minutes by themselves).
    pub unreachable_after_secs: Option<u64>,
    /// Seconds a task's restic waits for a lock another restic holds before it fails as
    /// `lock` and is retried by its policy (restic 0.16+, `--retry-lock`), 0 to 3600; 0 does
    /// not wait (default 120).
    pub lock_wait_secs: Option<u64>,
    /// The restic program (default `restic` on PATH).
    pub restic: Option<String>,
    /// Serve Prometheus metrics on `http://<metricsAddr>/metrics` (default: off).
    pub metrics_addr: Option<String>,
    /// Concurrency and resource limits (default: `AgentSettings::default()`).
    pub settings: Option<AgentSettings>,
    /// Secret name → where its repository password is.
    #[serde(default)]
    pub secrets: BTreeMap<String, RawSecret>,
    /// Hook name → the command policies run by that name.
    #[serde(default)]
    pub hooks: BTreeMap<String, RawHook>,
}

/// One hook as written: `command` is required, the rest optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHook {
    /// The program and its arguments, run without a shell.
    pub command: Option<Vec<String>>,
    /// `30s`, `10m`, `1h` (default 5 minutes, at most 24 hours).
    pub timeout: Option<String>,
    /// An absolute working directory.
    pub cwd: Option<PathBuf>,
    /// Fixed variables of its environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Where one secret's password is; exactly one of the three must be set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSecret {
    /// A file holding the password (referenced, not read, by the configuration).
    pub password_file: Option<PathBuf>,
    /// A command printing the password.
    pub password_command: Option<String>,
    /// An environment variable of the agent holding the password.
    pub password_env: Option<String>,
}

/// Where environment overrides come from: the process environment in production
/// ([`Env`]), a map in tests.
pub trait Source {
    /// The value of variable `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
    /// This machine's hostname, if it can be found.
    fn machine_hostname(&self) -> Option<String>;
}

/// The process environment, and `/proc/sys/kernel/hostname`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Env;

impl Source for Env {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn machine_hostname(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .or_else(|| self.var("HOSTNAME"))
    }
}

/// A map of variables; `HOSTNAME` stands for the machine's hostname.
impl Source for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }

    fn machine_hostname(&self) -> Option<String> {
        self.var("HOSTNAME")
    }
}

/// Environment variables that override the file, and the field each replaces.
pub const OVERRIDES: [(&str, &str); 8] = [
    ("FLEET_AGENT_NATS_URL", "natsUrl"),
    ("FLEET_AGENT_NATS_CA_FILE", "natsCaFile"),
    ("FLEET_AGENT_STATE_DIR", "stateDir"),
    ("FLEET_AGENT_ENROLLMENT_TOKEN", "enrollmentToken"),
    ("FLEET_AGENT_MACHINE_ID", "machineId"),
    ("FLEET_AGENT_ID", "agentId"),
    ("FLEET_AGENT_TENANT", "tenant"),
    ("FLEET_AGENT_HOSTNAME", "hostname"),
];

impl RawConfig {
    /// Parses the YAML text of a configuration file. A syntax error, a wrong type or an
    /// unknown field is one error naming its line and column.
    pub fn parse(yaml: &str) -> Result<Self, FieldError> {
        let config_error = |message: String| FieldError {
            field: "config".into(),
            message,
        };
        if yaml.trim().is_empty() {
            return Ok(Self::default());
        }
        let raw: Self = serde_norway::from_str(yaml).map_err(|e| config_error(yaml_message(&e)))?;
        // `AgentSettings` accepts unknown fields; a misspelt limit must not be ignored.
        let doc: serde_norway::Value =
            serde_norway::from_str(yaml).map_err(|e| config_error(yaml_message(&e)))?;
        if let Some(settings) = doc.get("settings") {
            unknown_settings_fields(settings).map_err(|field| FieldError {
                field: format!("settings.{field}"),
                message: "unknown field".into(),
            })?;
        }
        Ok(raw)
    }

    /// Applies the `FLEET_AGENT_*` overrides of `source` (they win over the file), and
    /// fills in the machine's hostname if none is configured.
    pub fn overlay(mut self, source: &dyn Source) -> Self {
        let get = |name: &str| source.var(name).filter(|value| !value.is_empty());
        if let Some(url) = get("FLEET_AGENT_NATS_URL") {
            self.nats_url = Some(url);
        }
        if let Some(ca) = get("FLEET_AGENT_NATS_CA_FILE") {
            self.nats_ca_file = Some(ca.into());
        }
        if let Some(dir) = get("FLEET_AGENT_STATE_DIR") {
            self.state_dir = Some(dir.into());
        }
        if let Some(token) = get("FLEET_AGENT_ENROLLMENT_TOKEN") {
            self.enrollment_token = Some(token);
        }
        if let Some(machine) = get("FLEET_AGENT_MACHINE_ID") {
            self.machine_id = Some(machine);
        }
        if let Some(id) = get("FLEET_AGENT_ID") {
            self.agent_id = Some(id);
        }
        if let Some(tenant) = get("FLEET_AGENT_TENANT") {
            self.tenant = Some(tenant);
        }
        if let Some(hostname) = get("FLEET_AGENT_HOSTNAME") {
            self.hostname = Some(hostname);
        }
        if self.hostname.is_none() {
            self.hostname = source.machine_hostname();
        }
        self
    }
}

/// serde_norway's message, which names the line and column when it knows them.
fn yaml_message(error: &serde_norway::Error) -> String {
    let message = error.to_string();
    match error.location() {
        Some(at) if !message.contains("line") => {
            format!("{message} (line {}, column {})", at.line(), at.column())
        }
        _ => message,
    }
}

/// The first field of `settings` (dotted) that `AgentSettings` does not have, judged by
/// the fields the default settings serialize.
fn unknown_settings_fields(settings: &serde_norway::Value) -> Result<(), String> {
    let Ok(known) = serde_norway::to_value(AgentSettings::default()) else {
        return Ok(());
    };
    let Some(given) = settings.as_mapping() else {
        return Ok(());
    };
    for (key, value) in given {
        let name = key.as_str().unwrap_or_default();
        match known.get(name) {
            None => return Err(name.to_owned()),
            Some(known_value @ serde_norway::Value::Mapping(_)) if name == "perKind" => {
                for inner in value.as_mapping().into_iter().flat_map(|m| m.keys()) {
                    let inner = inner.as_str().unwrap_or_default();
                    if known_value.get(inner).is_none() {
                        return Err(format!("{name}.{inner}"));
                    }
                }
            }
            Some(_) => {}
        }
    }
    Ok(())
}
