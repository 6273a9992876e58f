//! Who the agent is: preassigned in the configuration, stored in the state directory by an
//! earlier registration, or obtained now by registering with a tenant enrollment token
//! (request/reply on [`REGISTER_SUBJECT`], answered by the control plane's registrar).
//!
//! The identity is written to `identity.json` in the state directory (atomically) before
//! the agent starts work, so a restart never registers again; registering the same
//! machine again is idempotent anyway (the agent id derives from tenant and machine id).
//!
//! The agent's NATS key (an nkey whose seed stays in `nats.nk`) is sent with the
//! registration; the control plane then admits that key, limited to the agent's own
//! subjects. The agent registers over a connection without credentials (replies on the
//! enrolling inbox prefix), then connects with its key ([`connect_as`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::ConnectErrorKind;
use chrono::{DateTime, Utc};
use fleet_events::access::{ENROLL_INBOX_PREFIX, agent_inbox_prefix};
use fleet_events::codec::Wire;
use fleet_events::enroll::{
    REGISTER_SUBJECT, RegisterOutcome, RegisterReply, RegisterRequest, Rejection, TokenError,
    TokenText, check_machine_id,
};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::store::Backoff;
use fleet_events::store::connect::NatsAccess;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{Enrollment, TokenSource, ValidConfig};

/// The identity file in the state directory.
pub const IDENTITY_FILE: &str = "identity.json";
/// Where the machine id is looked for when none is configured.
pub const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];
/// How long one registration request waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between registration attempts while the control plane does not answer.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// The tenant and id the agent works as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub tenant: TenantId,
    pub agent: AgentId,
}

/// `identity.json`: the identity and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredIdentity {
    #[serde(flatten)]
    pub identity: Identity,
    pub name: String,
    pub machine_id: String,
    pub registered_at: DateTime<Utc>,
}

/// How the identity was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Preassigned,
    /// Read from `identity.json`.
    Stored,
    /// Registered now; `new` unless the control plane knew the machine already.
    Registered {
        new: bool,
    },
}

/// Why the agent has no identity.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "this agent is not enrolled: {} does not exist; configure enrollmentToken or \
         enrollmentTokenFile (or FLEET_AGENT_ENROLLMENT_TOKEN)",
        .0.display()
    )]
    NotEnrolled(PathBuf),
    #[error("registration refused: {message}")]
    Refused { reason: Rejection, message: String },
    #[error("cannot read the enrollment token file {}: {source}", .path.display())]
    TokenFile { path: PathBuf, source: io::Error },
    #[error("the enrollment token file {} does not hold a token: {source}", .path.display())]
    TokenFileInvalid { path: PathBuf, source: TokenError },
    #[error("cannot find this machine's id in /etc/machine-id; set machineId")]
    NoMachineId,
    #[error("cannot {what} {}: {source}", .path.display())]
    State {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} is not an identity file: {source}", .path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("stopped before the registration was answered")]
    Cancelled,
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
}

impl EnrollError {
    /// The process exit code: 64 for configuration problems, 77 when refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            EnrollError::NotEnrolled(_)
            | EnrollError::TokenFile { .. }
            | EnrollError::TokenFileInvalid { .. }
            | EnrollError::NoMachineId => 64,
            EnrollError::Refused { .. } => 77,
            _ => 1,
        }
    }
}

/// The identity file of `state_dir`, if there is one.
pub fn load(state_dir: &Path) -> Result<Option<StoredIdentity>, EnrollError> {
    let path = state_dir.join(IDENTITY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(EnrollError::State {
                what: "read",
                path,
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| EnrollError::Corrupt { path, source })
}

/// Writes the identity file of `state_dir`: a temporary file, synced, renamed into place.
pub fn save(state_dir: &Path, stored: &StoredIdentity) -> Result<(), EnrollError> {
    use std::io::Write;
    let path = state_dir.join(IDENTITY_FILE);
    let temp = state_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let state = |source| EnrollError::State {
        what: "write",
        path: path.clone(),
        source,
    };
    let text = serde_json::to_string_pretty(stored).map_err(io::Error::other);
    let text = text.map_err(state)?;
    let mut file = std::fs::File::create(&temp).map_err(state)?;
    file.write_all(text.as_bytes()).map_err(state)?;
    file.sync_all().map_err(state)?;
    std::fs::rename(&temp, &path).map_err(state)?;
    if let Ok(dir) = std::fs::File::open(state_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// This machine's id: the configured one, else the first machine-id file found.
pub fn machine_id(configured: Option<&str>) -> Result<String, EnrollError> {
    if let Some(machine) = configured {
        return Ok(machine.to_owned());
    }
    MACHINE_ID_FILES
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .map(|text| text.trim().to_owned())
        .find(|machine| check_machine_id(machine).is_ok())
        .ok_or(EnrollError::NoMachineId)
}

/// The enrollment token, read from its file if it is in one.
fn token(source: &TokenSource) -> Result<TokenText, EnrollError> {
    match source {
        TokenSource::Inline(token) => Ok(token.clone()),
        TokenSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| EnrollError::TokenFile {
                path: path.clone(),
                source,
            })?;
            TokenText::parse(&text).map_err(|source| EnrollError::TokenFileInvalid {
                path: path.clone(),
                source,
            })
        }
    }
}

/// How the agent reaches NATS: the server list, the TLS CA, its key.
pub struct Connection<'a> {
    pub config: &'a ValidConfig,
    /// TLS CA (and no key, no inbox prefix yet).
    pub access: NatsAccess,
    pub key: &'a nkeys::KeyPair,
    /// Wait for the server rather than fail when it cannot be reached.
    pub wait_for_server: bool,
}

/// Finds the agent's identity, registering with the control plane when the configuration
/// has a token and the state directory no identity. Retries while the control plane does
/// not answer, until `shutdown`.
pub async fn resolve(
    connection: &Connection<'_>,
    shutdown: &CancellationToken,
) -> Result<(Identity, Source), EnrollError> {
    let config = connection.config;
    let token_source = match &config.enrollment {
        Enrollment::Preassigned(identity) => return Ok((identity.clone(), Source::Preassigned)),
        Enrollment::Token(source) => Some(source),
        Enrollment::Stored => None,
    };
    if let Some(stored) = load(&config.state_dir)? {
        return Ok((stored.identity, Source::Stored));
    }
    let Some(token_source) = token_source else {
        return Err(EnrollError::NotEnrolled(
            config.state_dir.join(IDENTITY_FILE),
        ));
    };
    let token = token(token_source)?;
    let machine = machine_id(config.machine_id.as_deref())?;
    let (identity, name, new) = register(connection, &token, &machine, shutdown).await?;
    let stored = StoredIdentity {
        identity: identity.clone(),
        name,
        machine_id: machine,
        registered_at: Utc::now(),
    };
    save(&config.state_dir, &stored)?;
    Ok((identity, Source::Registered { new }))
}

/// Set while [`connect_as`] waits for the server to admit the agent's key.
static AWAITING_ADMISSION: AtomicBool = AtomicBool::new(false);

/// Whether the log line of `metadata` is shown. async-nats logs each refused connection at
/// ERROR (`authorization violation`); while the agent waits for its new key to be admitted
/// that refusal is a normal step of enrolling, which the agent's own WARN line explains,
/// so async-nats's ERROR lines are left out then (the agent logs every failure of those
/// attempts itself). Once connected, they show.
pub fn log_filter(metadata: &tracing::Metadata<'_>) -> bool {
    !(*metadata.level() == tracing::Level::ERROR
        && metadata.target().starts_with("async_nats")
        && AWAITING_ADMISSION.load(Ordering::Relaxed))
}

/// Clears [`AWAITING_ADMISSION`] when [`connect_as`] returns, however it returns.
struct Awaiting;

impl Awaiting {
    fn start() -> Self {
        AWAITING_ADMISSION.store(true, Ordering::Relaxed);
        Self
    }
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        AWAITING_ADMISSION.store(false, Ordering::Relaxed);
    }
}

/// Connects as agent `identity` with its key and its own inbox prefix. A server that does
/// not admit the key yet (the control plane renders and reloads its authorization a
/// moment after a registration; an external server waits for its operator) is asked
/// again with backoff; meanwhile, with an enrollment token configured, the key is
/// registered again (idempotent), in case the control plane never recorded it.
pub async fn connect_as(
    connection: &Connection<'_>,
    identity: &Identity,
    shutdown: &CancellationToken,
) -> Result<async_nats::Client, EnrollError> {
    let mut access = connection.access.clone().with_key(connection.key);
    access.inbox_prefix = Some(agent_inbox_prefix(identity.agent));
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_RETRY_WAIT);
    // The first connection after a registration is usually refused: quiet from the start.
    let _awaiting = Awaiting::start();
    loop {
        let attempt = access.connect(&connection.config.nats);
        let error = tokio::select! {
            _ = shutdown.cancelled() => return Err(EnrollError::Cancelled),
            result = attempt => match result {
                Ok(client) => return Ok(client),
                Err(error) => error,
            },
        };
        let refused = matches!(
            error.kind(),
            ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
        );
        if refused {
            tracing::warn!(
                agent_id = %identity.agent,
                key = %connection.key.public_key(),
                retry_in = ?backoff.next_wait(),
                "NATS does not admit this agent's key yet; waiting for the control plane \
                 to authorize it (an external server needs `fleet nats-config` and a reload)"
            );
            reregister(connection, shutdown).await;
        } else if connection.wait_for_server {
            tracing::warn!(%error, retry_in = ?backoff.next_wait(), "cannot connect to NATS; retrying");
        } else {
            return Err(EnrollError::Connect(error.to_string()));
        }
        if !backoff.pause(shutdown).await {
            return Err(EnrollError::Cancelled);
        }
    }
}

/// Registers the key again when an enrollment token is configured; a refusal is logged.
async fn reregister(connection: &Connection<'_>, shutdown: &CancellationToken) {
    let config = connection.config;
    let Enrollment::Token(source) = &config.enrollment else {
        return;
    };
    let again = async {
        let token = token(source)?;
        let machine = match load(&config.state_dir)? {
            Some(stored) => stored.machine_id,
            None => machine_id(config.machine_id.as_deref())?,
        };
        let once = Connection {
            config,
            access: connection.access.clone(),
            key: connection.key,
            wait_for_server: false,
        };
        let attempt = register(&once, &token, &machine, shutdown);
        match tokio::time::timeout(REQUEST_TIMEOUT * 2, attempt).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Ok(()),
        }
    };
    if let Err(error) = again.await {
        tracing::warn!(%error, "registering this agent's key again failed");
    }
}

/// Registers this machine with its key through an enrolling connection (no credentials,
/// replies on the enrolling inbox prefix), until the registrar answers.
async fn register(
    connection: &Connection<'_>,
    token: &TokenText,
    machine: &str,
    shutdown: &CancellationToken,
) -> Result<(Identity, String, bool), EnrollError> {
    let config = connection.config;
    let mut request = RegisterRequest::new(
        token,
        machine.to_owned(),
        config.name.clone(),
        config.hostname.clone(),
    );
    request.settings = config.settings.clone();
    request.agent_version = env!("CARGO_PKG_VERSION").into();
    request.nats_key = connection.key.public_key();
    let mut access = connection.access.clone();
    access.inbox_prefix = Some(ENROLL_INBOX_PREFIX.to_owned());
    let mut options = access.options();
    if connection.wait_for_server {
        options = options.retry_on_initial_connect();
    }
    let client = options
        .connect(config.nats.addrs().to_vec())
        .await
        .map_err(|e| EnrollError::Connect(e.to_string()))?;
    let answer = send(&client, &request, shutdown).await;
    client.drain().await.ok();
    answer
}

/// Sends `request` until the registrar answers it.
async fn send(
    client: &async_nats::Client,
    request: &RegisterRequest,
    shutdown: &CancellationToken,
) -> Result<(Identity, String, bool), EnrollError> {
    let payload = request.to_wire().map_err(|e| EnrollError::Refused {
        reason: Rejection::Malformed,
        message: format!("the request cannot be encoded: {e}"),
    })?;
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_RETRY_WAIT);
    loop {
        let attempt = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.request(REGISTER_SUBJECT, payload.clone().into()),
        );
        let problem = tokio::select! {
            _ = shutdown.cancelled() => return Err(EnrollError::Cancelled),
            answer = attempt => match answer {
                Err(_) => "no answer in time".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(message)) => match RegisterReply::from_wire(&message.payload) {
                    Err(e) => format!("undecodable answer: {e}"),
                    Ok(reply) => match reply.outcome {
                        RegisterOutcome::Registered { tenant, agent, name, new } => {
                            return Ok((Identity { tenant, agent }, name, new));
                        }
                        RegisterOutcome::Rejected { reason: Rejection::Unavailable, message } => {
                            message
                        }
                        RegisterOutcome::Rejected { reason, message } => {
                            return Err(EnrollError::Refused { reason, message });
                        }
                    },
                },
            },
        };
        tracing::warn!(%problem, retry_in = ?backoff.next_wait(), "registration not answered; retrying");
        if !backoff.pause(shutdown).await {
            return Err(EnrollError::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredIdentity {
        StoredIdentity {
            identity: Identity {
                tenant: TenantId::new("acme").expect("slug"),
                agent: AgentId::for_machine(&TenantId::new("acme").expect("slug"), "m"),
            },
            name: "db-1".into(),
            machine_id: "m".into(),
            registered_at: Utc::now(),
        }
    }

    #[test]
    fn identity_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("no file is fine"), None);
        let identity = stored();
        save(dir.path(), &identity).expect("saved");
        assert_eq!(load(dir.path()).expect("read"), Some(identity));
        assert!(!dir.path().join("identity.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_identity_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(IDENTITY_FILE), "{not json").expect("write");
        let error = load(dir.path()).expect_err("corrupt");
        assert!(error.to_string().contains(IDENTITY_FILE), "{error}");
    }

    #[test]
    fn a_configured_machine_id_wins() {
        assert_eq!(machine_id(Some("box-7")).expect("configured"), "box-7");
    }

    #[test]
    fn token_files_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let token = TokenText::from_secret(&TenantId::new("acme").expect("slug"), &[7; 32]);
        std::fs::write(&path, format!("{}\n", token.expose())).expect("write");
        assert_eq!(token_of(&path).expect("read"), token);
        std::fs::write(&path, "garbage").expect("write");
        let error = token_of(&path).expect_err("garbage");
        assert!(!error.to_string().contains("garbage"), "{error}");
        assert_eq!(error.exit_code(), 64);
    }

    fn token_of(path: &Path) -> Result<TokenText, EnrollError> {
        token(&TokenSource::File(path.to_owned()))
    }
}
