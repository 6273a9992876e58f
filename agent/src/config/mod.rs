//! The agent's configuration in two phases: [`RawConfig`] is the YAML file with its
//! environment overrides, as written; [`validate`] turns it into a [`ValidConfig`] or
//! reports every problem at once (`field: message`, exit 64 in the binary).
//!
//! Secret values never appear here: password files are referenced, not read, and error
//! messages name fields, never the values of secrets or URLs.

mod hooks;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_events::enroll::{TokenText, check_machine_id};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::settings::AgentSettings;
use fleet_events::store::NatsServers;
use fleet_events::validation::FieldError;

use crate::enroll::Identity;
use crate::executor::{HookBook, SecretSource};
use crate::restic::output::ResticVersion;
use crate::runtime::AgentConfig;

pub use hooks::parse_timeout;
pub use raw::{Env, OVERRIDES, RawConfig, RawHook, RawSecret, Source};

/// NATS server when none is configured.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// The agent's NATS key in its state directory, unless `natsKeyFile` says otherwise.
pub const NATS_KEY_FILE: &str = "nats.nk";
/// Local state directory when none is configured.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fleet-agent";
/// Seconds between heartbeats when none is configured.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 10;
/// Allowed seconds between heartbeats.
pub const HEARTBEAT_SECS: std::ops::RangeInclusive<u64> = 1..=300;
/// Seconds between SIGINT and SIGKILL for restic when none is configured.
pub const DEFAULT_STOP_GRACE_SECS: u64 = crate::executor::STOP_GRACE.as_secs();
/// Allowed seconds a task's restic waits for a held lock.
pub const LOCK_WAIT_SECS: std::ops::RangeInclusive<u64> = 0..=3600;
/// Allowed seconds restic may retry to reach a repository.
pub const UNREACHABLE_AFTER_SECS: std::ops::RangeInclusive<u64> = 1..=3600;

/// A checked configuration: everything the agent needs before it probes restic.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// Shown without credentials by `Debug`.
    pub nats: NatsServers,
    /// The CA that signed the server's certificate (TLS required), if configured.
    pub nats_ca_file: Option<PathBuf>,
    /// The agent's NATS key (nkey seed), created on first start.
    pub nats_key_file: PathBuf,
    pub state_dir: PathBuf,
    /// Who the agent is, or how it finds out.
    pub enrollment: Enrollment,
    /// This machine's id for registration, if configured (else `/etc/machine-id`).
    pub machine_id: Option<String>,
    /// A name for people; the hostname unless configured.
    pub name: String,
    pub hostname: String,
    pub heartbeat_every: Duration,
    pub stop_grace: Duration,
    /// How long restic may retry to reach a repository before the run fails.
    pub unreachable_after: Duration,
    /// How long a task's restic waits for a lock another restic holds.
    pub lock_wait: Duration,
    pub restic: PathBuf,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub settings: AgentSettings,
    /// Secret name → where its password is.
    pub secrets: HashMap<String, SecretSource>,
    /// The hooks policies may name; `config` is set by [`load`] to the file's path.
    pub hooks: HookBook,
}

impl ValidConfig {
    /// What the runtime runs with, once the agent's identity and restic's version are
    /// known.
    pub fn agent_config(&self, identity: &Identity, restic_version: ResticVersion) -> AgentConfig {
        AgentConfig {
            agent: identity.agent,
            tenant: identity.tenant.clone(),
            settings: self.settings.clone(),
            secrets: self.secrets.clone(),
            restic: self.restic.clone(),
            restic_version,
            hostname: self.hostname.clone(),
            heartbeat_every: self.heartbeat_every,
            stop_grace: self.stop_grace,
            unreachable_after: self.unreachable_after,
            lock_wait: self.lock_wait,
            status_dir: Some(self.state_dir.clone()),
            hooks: self.hooks.clone(),
        }
    }
}

/// Who the agent is, or how it finds out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// `agentId` and `tenant` are in the configuration.
    Preassigned(Identity),
    /// Register with this token, unless the state directory holds an identity already.
    Token(TokenSource),
    /// The state directory must hold the identity of an earlier registration.
    Stored,
}

/// Where the enrollment token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Inline(TokenText),
    /// Read when registering; the file is never copied anywhere.
    File(PathBuf),
}

/// Reads, overlays and validates the configuration file at `path`.
pub fn load(path: &Path, source: &dyn Source) -> Result<ValidConfig, Vec<FieldError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![FieldError {
            field: "config".into(),
            message: format!("cannot read {}: {e}", path.display()),
        }]
    })?;
    let raw = RawConfig::parse(&text).map_err(|e| vec![e])?;
    let mut config = validate(raw.overlay(source))?;
    config.hooks.config = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_owned()));
    Ok(config)
}

/// Checks every field of `raw`; returns every problem found.
pub fn validate(raw: RawConfig) -> Result<ValidConfig, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    };

    let nats_text = raw.nats_url.unwrap_or_else(|| DEFAULT_NATS_URL.into());
    // The URL may hold a password: name the field, never echo its value.
    let nats = nats_text
        .parse::<NatsServers>()
        .map_err(|error| fail("natsUrl", error.to_string()))
        .ok();

    if let Some(ca) = &raw.nats_ca_file
        && let Err(error) = std::fs::metadata(ca)
    {
        fail(
            "natsCaFile",
            format!("cannot read {}: {error}", ca.display()),
        );
    }

    let enrollment = enrollment(
        raw.agent_id.as_deref(),
        raw.tenant,
        raw.enrollment_token.as_deref(),
        raw.enrollment_token_file,
        &mut fail,
    );
    let machine_id = raw.machine_id.filter(|machine| {
        check_machine_id(machine)
            .map_err(|message| fail("machineId", message.into()))
            .is_ok()
    });

    let hostname = raw.hostname.unwrap_or_default();
    if hostname.trim().is_empty() {
        fail(
            "hostname",
            "cannot find this machine's hostname; set it".into(),
        );
    }

    let heartbeat = raw.heartbeat_secs.unwrap_or(DEFAULT_HEARTBEAT_SECS);
    if !HEARTBEAT_SECS.contains(&heartbeat) {
        let (low, high) = HEARTBEAT_SECS.into_inner();
        fail("heartbeatSecs", format!("must be between {low} and {high}"));
    }
    let stop_grace = raw.stop_grace_secs.unwrap_or(DEFAULT_STOP_GRACE_SECS);
    let unreachable_after = raw
        .unreachable_after_secs
        .unwrap_or(crate::executor::UNREACHABLE_AFTER.as_secs());
    if !UNREACHABLE_AFTER_SECS.contains(&unreachable_after) {
        let (low, high) = UNREACHABLE_AFTER_SECS.into_inner();
        fail(
            "unreachableAfterSecs",
            format!("must be between {low} and {high}"),
        );
    }
    let lock_wait = raw
        .lock_wait_secs
        .unwrap_or(crate::executor::LOCK_WAIT.as_secs());
    if !LOCK_WAIT_SECS.contains(&lock_wait) {
        let (low, high) = LOCK_WAIT_SECS.into_inner();
        fail("lockWaitSecs", format!("must be between {low} and {high}"));
    }

    let restic = raw.restic.unwrap_or_else(|| "restic".into());
    if restic.trim().is_empty() {
        fail("restic", "must name the restic program".into());
    }

    let metrics_addr = match raw
        .metrics_addr
        .as_deref()
        .map(str::parse::<std::net::SocketAddr>)
    {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(_)) => {
            fail(
                "metricsAddr",
                "must be an address and port such as 127.0.0.1:9465".into(),
            );
            None
        }
    };

    let settings = raw.settings.unwrap_or_default();
    if let Err(invalid) = settings.validate() {
        for e in invalid.0 {
            fail(&format!("settings.{}", e.field), e.message);
        }
    }

    let mut secrets = HashMap::new();
    for (name, secret) in raw.secrets {
        let field = format!("secrets.{name}");
        if name.trim().is_empty() {
            fail(&field, "a secret needs a name".into());
        }
        match secret_source(secret) {
            Ok(source) => {
                secrets.insert(name, source);
            }
            Err(message) => fail(&field, message.into()),
        }
    }

    let secret_vars: Vec<&str> = secrets
        .values()
        .filter_map(|source| match source {
            SecretSource::Env(var) => Some(var.as_str()),
            _ => None,
        })
        .collect();
    let hooks = hooks::validate(raw.hooks, &secret_vars, &mut fail);

    if let Some(name) = &raw.name
        && (name.trim().is_empty() || name.len() > 253)
    {
        fail("name", "must be 1 to 253 characters".into());
    }

    match (enrollment, nats) {
        (Some(enrollment), Some(nats)) if errors.is_empty() => {
            let state_dir = raw.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into());
            Ok(ValidConfig {
                nats,
                nats_ca_file: raw.nats_ca_file,
                nats_key_file: raw
                    .nats_key_file
                    .unwrap_or_else(|| state_dir.join(NATS_KEY_FILE)),
                state_dir,
                enrollment,
                machine_id,
                name: raw.name.unwrap_or_else(|| hostname.clone()),
                hostname,
                heartbeat_every: Duration::from_secs(heartbeat),
                stop_grace: Duration::from_secs(stop_grace),
                unreachable_after: Duration::from_secs(unreachable_after),
                lock_wait: Duration::from_secs(lock_wait),
                restic: restic.into(),
                metrics_addr,
                settings,
                secrets,
                hooks: HookBook {
                    hooks,
                    config: None,
                },
            })
        }
        _ => Err(errors),
    }
}

/// How the agent learns who it is: a preassigned id, an enrollment token, or the identity
/// stored by an earlier registration. `None` after reporting a problem through `fail`.
fn enrollment(
    agent_id: Option<&str>,
    tenant: Option<String>,
    token: Option<&str>,
    token_file: Option<PathBuf>,
    fail: &mut impl FnMut(&str, String),
) -> Option<Enrollment> {
    let token = match (token, token_file) {
        (Some(_), Some(_)) => {
            fail(
                "enrollmentToken",
                "give enrollmentToken or enrollmentTokenFile, not both".into(),
            );
            return None;
        }
        // The message names the expected shape, never the value.
        (Some(text), None) => match TokenText::parse(text) {
            Ok(token) => Some(TokenSource::Inline(token)),
            Err(e) => {
                fail("enrollmentToken", e.to_string());
                return None;
            }
        },
        (None, Some(path)) if path.as_os_str().is_empty() => {
            fail("enrollmentTokenFile", "must not be empty".into());
            return None;
        }
        (None, Some(path)) => Some(TokenSource::File(path)),
        (None, None) => None,
    };
    let agent = agent_id.and_then(|id| {
        id.parse::<AgentId>()
            .map_err(|e| fail("agentId", e.to_string()))
            .ok()
    });
    let tenant_given = tenant.is_some();
    let tenant = tenant.and_then(|tenant| {
        TenantId::new(tenant)
            .map_err(|e| fail("tenant", e.to_string()))
            .ok()
    });
    match (agent_id.is_some(), tenant_given, token) {
        (false, false, None) => Some(Enrollment::Stored),
        (false, false, Some(token)) => Some(Enrollment::Token(token)),
        (true, _, Some(_)) | (_, true, Some(_)) => {
            fail(
                "enrollmentToken",
                "a preassigned agentId/tenant and an enrollment token exclude each other".into(),
            );
            None
        }
        (true, true, None) => Some(Enrollment::Preassigned(Identity {
            tenant: tenant?,
            agent: agent?,
        })),
        (true, false, None) => {
            fail("tenant", "is required with a preassigned agentId".into());
            None
        }
        (false, true, None) => {
            fail("agentId", "is required with tenant".into());
            None
        }
    }
}

/// The one source of a secret entry; the message never contains its value.
fn secret_source(secret: RawSecret) -> Result<SecretSource, &'static str> {
    const EXACTLY_ONE: &str = "needs exactly one of passwordFile, passwordCommand, passwordEnv";
    match (
        secret.password_file,
        secret.password_command,
        secret.password_env,
    ) {
        (Some(path), None, None) if path.as_os_str().is_empty() => {
            Err("passwordFile must not be empty")
        }
        (Some(path), None, None) => Ok(SecretSource::File(path)),
        (None, Some(command), None) if command.trim().is_empty() => {
            Err("passwordCommand must not be empty")
        }
        (None, Some(command), None) => Ok(SecretSource::Command(command)),
        (None, None, Some(var)) if var.is_empty() || var.contains(['=', '\0']) => {
            Err("passwordEnv must be an environment variable name")
        }
        (None, None, Some(var)) => Ok(SecretSource::Env(var)),
        _ => Err(EXACTLY_ONE),
    }
}
