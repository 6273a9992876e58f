//! Enrollment: how an agent joins a tenant with a token. The agent sends a
//! [`RegisterRequest`] on [`REGISTER_SUBJECT`] (core NATS request/reply, which no stream
//! captures, because the request carries the token) and gets a [`RegisterReply`].
//!
//! Tokens are `rft1.<tenant>.<64 hex digits>`: 256 random bits, with the tenant in clear
//! so the control plane knows whose tokens to check. Only a token's SHA-256 is recorded.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::SCHEMA_VERSION;
use crate::ids::{AgentId, IdError, TenantId};
use crate::settings::AgentSettings;

/// The request subject the registrar serves.
pub const REGISTER_SUBJECT: &str = "fleet.ctl.register";
/// The queue group registrar instances share, so one answers each request.
pub const REGISTRAR_QUEUE: &str = "fleet-registrar";
/// The prefix naming the token format.
pub const TOKEN_PREFIX: &str = "rft1";
/// Random bytes in a token.
pub const TOKEN_SECRET_BYTES: usize = 32;
/// Longest machine id accepted.
pub const MAX_MACHINE_ID_LEN: usize = 128;

/// A tenant token as typed by a person: its tenant and its secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenText {
    tenant: TenantId,
    text: String,
}

/// Why a string is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a token looks like {TOKEN_PREFIX}.<tenant>.<64 hex digits>")]
    Shape,
    #[error("the token's tenant is not valid: {0}")]
    Tenant(IdError),
}

impl TokenText {
    /// Parses `text`; surrounding whitespace (a newline at the end of a file) is ignored.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let mut parts = text.split('.');
        let (Some(TOKEN_PREFIX), Some(tenant), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Shape);
        };
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if secret.len() != TOKEN_SECRET_BYTES * 2 || !secret.chars().all(hex) {
            return Err(TokenError::Shape);
        }
        let tenant = TenantId::new(tenant).map_err(TokenError::Tenant)?;
        Ok(Self {
            tenant,
            text: text.to_owned(),
        })
    }

    /// A token of `tenant` from random bytes.
    pub fn from_secret(tenant: &TenantId, secret: &[u8; TOKEN_SECRET_BYTES]) -> Self {
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            tenant: tenant.clone(),
            text: format!("{TOKEN_PREFIX}.{tenant}.{hex}"),
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The whole token: show it once, store it nowhere.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

/// Never prints the secret part.
impl fmt::Debug for TokenText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenText({TOKEN_PREFIX}.{}.<redacted>)", self.tenant)
    }
}

/// Checks a machine id: printable ASCII without spaces, 1 to [`MAX_MACHINE_ID_LEN`] bytes.
pub fn check_machine_id(machine: &str) -> Result<(), &'static str> {
    if machine.is_empty() {
        return Err("must not be empty");
    }
    if machine.len() > MAX_MACHINE_ID_LEN {
        return Err("is longer than 128 characters");
    }
    if !machine.chars().all(|c| c.is_ascii_graphic()) {
        return Err("may only hold printable ASCII without spaces");
    }
    Ok(())
}

/// Checks an agent's NATS key: a user public nkey (`U…`, 56 characters, valid checksum).
pub fn check_nats_key(key: &str) -> Result<(), &'static str> {
    match nkeys::KeyPair::from_public_key(key) {
        Ok(pair) if pair.key_pair_type() == nkeys::KeyPairType::User => Ok(()),
        Ok(_) => Err("must be a user key (starting with U)"),
        Err(_) => Err("is not a NATS public key (nkey)"),
    }
}

impl AgentId {
    /// The agent of machine `machine` in `tenant`: registering the same machine again
    /// names the same agent, so registration is idempotent.
    pub fn for_machine(tenant: &TenantId, machine: &str) -> Self {
        let name = format!("fleet-agent:{tenant}:{machine}");
        Self::from_uuid(uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            name.as_bytes(),
        ))
    }
}

/// Agent to registrar: "let me join the token's tenant".
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub schema: u16,
    /// The enrollment token, in full.
    pub token: String,
    /// A stable id of the machine (`/etc/machine-id` or configured).
    pub machine: String,
    /// A name for people; the hostname unless configured.
    pub name: String,
    pub hostname: String,
    /// The settings the agent starts with.
    pub settings: AgentSettings,
    pub agent_version: String,
    /// The agent's NATS public key (an nkey, `U…`) it will connect with once registered;
    /// empty from agents that predate per-agent credentials (they can only work with a
    /// server that has no authorization).
    pub nats_key: String,
}

/// The request as agents before per-agent credentials sent it (no `nats_key`): still
/// understood, so an older agent gets a clear answer.
#[derive(Deserialize)]
struct RegisterRequestV1 {
    schema: u16,
    token: String,
    machine: String,
    name: String,
    hostname: String,
    settings: AgentSettings,
    agent_version: String,
}

impl crate::codec::Wire for RegisterRequest {
    const WHAT: &'static str = "registration";
    fn from_wire(bytes: &[u8]) -> Result<Self, crate::codec::CodecError> {
        let current = crate::codec::decode_versioned::<RegisterRequest>(bytes);
        if current.is_ok() {
            return current;
        }
        match crate::codec::decode_versioned::<RegisterRequestV1>(bytes) {
            Ok(old) => Ok(RegisterRequest {
                schema: old.schema,
                token: old.token,
                machine: old.machine,
                name: old.name,
                hostname: old.hostname,
                settings: old.settings,
                agent_version: old.agent_version,
                nats_key: String::new(),
            }),
            Err(_) => current,
        }
    }
}

impl RegisterRequest {
    /// Encodes the request for the wire.
    pub fn to_wire(&self) -> Result<Vec<u8>, crate::codec::CodecError> {
        crate::codec::encode_versioned(self)
    }
}

/// Never prints the token.
impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("token", &"<redacted>")
            .field("machine", &self.machine)
            .field("name", &self.name)
            .field("hostname", &self.hostname)
            .field("settings", &self.settings)
            .field("agent_version", &self.agent_version)
            .field("nats_key", &self.nats_key)
            .finish()
    }
}

/// Registrar to agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    pub schema: u16,
    pub outcome: RegisterOutcome,
}

/// What came of a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOutcome {
    /// The agent is registered (`new`: by this request; otherwise it already was).
    Registered {
        tenant: TenantId,
        agent: AgentId,
        name: String,
        new: bool,
    },
    Rejected {
        reason: Rejection,
        message: String,
    },
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// Unknown, revoked or wrong-role token, or no such tenant (never told apart).
    TokenNotAccepted,
    /// The request could not be decoded or a field is not valid.
    Malformed,
    /// This machine's agent was decommissioned; it may not come back under the same id.
    Decommissioned,
    /// The control plane could not record the registration; try again.
    Unavailable,
    /// The machine's agent connects with another NATS key, and only an admin token may
    /// replace it (an enrollment token in the wrong hands must not take an agent over).
    KeyMismatch,
}

impl RegisterRequest {
    /// A request in the current schema.
    pub fn new(token: &TokenText, machine: String, name: String, hostname: String) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            token: token.expose().to_owned(),
            machine,
            name,
            hostname,
            settings: AgentSettings::default(),
            agent_version: String::new(),
            nats_key: String::new(),
        }
    }
}

impl RegisterReply {
    /// A reply in the current schema.
    pub fn new(outcome: RegisterOutcome) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            outcome,
        }
    }

    /// A refusal.
    pub fn rejected(reason: Rejection, message: impl Into<String>) -> Self {
        Self::new(RegisterOutcome::Rejected {
            reason,
            message: message.into(),
        })
    }
}

crate::codec::impl_wire!(RegisterReply => "registration reply");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Wire;
    use crate::samples;

    const SECRET: [u8; 32] = [0xab; 32];

    #[test]
    fn tokens_round_trip_and_hide_their_secret() {
        let token = TokenText::from_secret(&samples::tenant(), &SECRET);
        let parsed = TokenText::parse(&format!("{}\n", token.expose())).expect("parses");
        assert_eq!(parsed, token);
        assert_eq!(parsed.tenant(), &samples::tenant());
        assert!(!format!("{token:?}").contains("abab"));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = TokenText::from_secret(&samples::tenant(), &SECRET);
        let cases = [
            String::new(),
            "rft1".into(),
            good.expose().replace("rft1", "rft2"),
            good.expose().to_uppercase(),
            format!("{}.extra", good.expose()),
            good.expose()[..good.expose().len() - 1].to_owned(),
            format!("rft1.Bad Tenant.{}", "ab".repeat(32)),
        ];
        for case in cases {
            assert!(TokenText::parse(&case).is_err(), "{case:?}");
        }
    }

    #[test]
    fn the_same_machine_is_the_same_agent() {
        let tenant = samples::tenant();
        let other = TenantId::new("other").expect("slug");
        assert_eq!(
            AgentId::for_machine(&tenant, "m1"),
            AgentId::for_machine(&tenant, "m1")
        );
        assert_ne!(
            AgentId::for_machine(&tenant, "m1"),
            AgentId::for_machine(&tenant, "m2")
        );
        assert_ne!(
            AgentId::for_machine(&tenant, "m1"),
            AgentId::for_machine(&other, "m1")
        );
    }

    #[test]
    fn nats_keys_are_checked() {
        let user = nkeys::KeyPair::new_user();
        assert!(check_nats_key(&user.public_key()).is_ok());
        let account = nkeys::KeyPair::new_account();
        assert!(check_nats_key(&account.public_key()).is_err());
        assert!(check_nats_key("").is_err());
        assert!(check_nats_key("Unot-a-key").is_err());
        assert!(
            check_nats_key(&user.seed().expect("seed")).is_err(),
            "a seed is no key"
        );
    }

    #[test]
    fn machine_ids_are_checked() {
        assert!(check_machine_id("4c4c4544-0034").is_ok());
        assert!(check_machine_id("").is_err());
        assert!(check_machine_id("a b").is_err());
        assert!(check_machine_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn no_stream_stores_registration_requests() {
        assert!(
            crate::subject::matches("fleet.>", REGISTER_SUBJECT),
            "the matcher works"
        );
        assert!(crate::subject::matches("fleet.ctl.*", REGISTER_SUBJECT));
        for config in crate::streams::all(&Default::default()) {
            for filter in &config.subjects {
                assert!(
                    !crate::subject::matches(filter, REGISTER_SUBJECT),
                    "{} would store tokens ({filter})",
                    config.name
                );
            }
        }
    }

    #[test]
    fn requests_never_print_the_token() {
        let token = TokenText::from_secret(&samples::tenant(), &SECRET);
        let request = RegisterRequest::new(&token, "m".into(), "n".into(), "h".into());
        assert!(!format!("{request:?}").contains("abab"));
        let back = RegisterRequest::from_wire(&request.to_wire().expect("encodes"));
        assert_eq!(back.expect("decodes"), request);
    }
}
