//! Typed identifiers: a tenant is an operator-chosen slug, everything else is a UUID.
//!
//! Every id renders to one canonical string that is safe as a NATS subject token (no dots,
//! wildcards or spaces); parsing accepts only that canonical form, so one id never has two
//! subjects.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("{kind} id is empty")]
    Empty { kind: &'static str },
    /// The string is longer than the id allows.
    #[error("{kind} id {value:?} is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        value: String,
        max: usize,
    },
    /// A character that is not allowed (subject separators, wildcards, whitespace, capitals).
    #[error(
        "{kind} id {value:?} contains {found:?}: only lowercase letters, digits, '-' and '_' are allowed, starting with a letter or digit"
    )]
    BadChar {
        kind: &'static str,
        value: String,
        found: char,
    },
    /// Not a UUID in canonical lowercase hyphenated form.
    #[error("{kind} id {value:?} is not a UUID in lowercase hyphenated form")]
    NotUuid { kind: &'static str, value: String },
}

/// Longest tenant slug.
pub const MAX_SLUG_LEN: usize = 64;

/// Checks an operator-chosen name used as a subject token: `[a-z0-9][a-z0-9_-]*`, at most
/// [`MAX_SLUG_LEN`] characters.
pub fn check_slug(kind: &'static str, value: &str) -> Result<(), IdError> {
    let Some(first) = value.chars().next() else {
        return Err(IdError::Empty { kind });
    };
    if value.len() > MAX_SLUG_LEN {
        return Err(IdError::TooLong {
            kind,
            value: value.to_owned(),
            max: MAX_SLUG_LEN,
        });
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let bad = if first == '-' || first == '_' {
        Some(first)
    } else {
        value.chars().find(|c| !allowed(*c))
    };
    match bad {
        Some(found) => Err(IdError::BadChar {
            kind,
            value: value.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

/// A tenant: an operator-chosen slug such as `acme` or `ops-eu`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates and wraps a slug.
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_slug("tenant", &value)?;
        Ok(Self(value))
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::new(value)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a UUID only in its canonical lowercase hyphenated form.
fn parse_canonical_uuid(kind: &'static str, s: &str) -> Result<Uuid, IdError> {
    match Uuid::try_parse(s) {
        Ok(uuid) if uuid.hyphenated().to_string() == s => Ok(uuid),
        _ if s.is_empty() => Err(IdError::Empty { kind }),
        _ => Err(IdError::NotUuid {
            kind,
            value: s.to_owned(),
        }),
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh time-ordered id (UUIDv7).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID.
            pub const fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_canonical_uuid($kind, s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// An agent: one machine that runs restic.
    AgentId,
    "agent"
);
uuid_id!(
    /// A policy: what to back up, where, when, and how long to keep it.
    PolicyId,
    "policy"
);
uuid_id!(
    /// One task: a run of a policy on one agent at one fire time, with its retries.
    TaskId,
    "task"
);
uuid_id!(
    /// A restic repository, derived from its URL so every policy naming it agrees.
    RepoId,
    "repository"
);
uuid_id!(
    /// One event in the log.
    EventId,
    "event"
);
uuid_id!(
    /// The operation a chain of events belongs to (a command, a schedule firing).
    CorrelationId,
    "correlation"
);
uuid_id!(
    /// One API token of a tenant (the token itself never leaves the process that made it).
    TokenId,
    "token"
);

uuid_id!(
    /// A notification rule of a tenant.
    RuleId,
    "rule"
);
uuid_id!(
    /// One notification: one rule telling about one event.
    NotificationId,
    "notification"
);
uuid_id!(
    /// One policy on one agent: where "overdue" is judged.
    AssignmentId,
    "assignment"
);

impl RuleId {
    /// The rule named `name` in `tenant` (like [`PolicyId::for_name`]).
    pub fn for_name(tenant: &TenantId, name: &str) -> Self {
        let key = format!("fleet-rule:{tenant}:{name}");
        Self(Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()))
    }
}

impl NotificationId {
    /// The notification of `rule` about the event `source`: one per rule and event, so
    /// every notifier instance, restarted or not, names the same one.
    pub fn for_event(rule: RuleId, source: EventId) -> Self {
        let mut name = Vec::with_capacity(32);
        name.extend_from_slice(rule.0.as_bytes());
        name.extend_from_slice(source.0.as_bytes());
        Self(Uuid::new_v5(&Uuid::NAMESPACE_OID, &name))
    }
}

impl AssignmentId {
    /// The assignment of `policy` to `agent`.
    pub fn for_pair(policy: PolicyId, agent: AgentId) -> Self {
        let mut name = Vec::with_capacity(32);
        name.extend_from_slice(policy.0.as_bytes());
        name.extend_from_slice(agent.0.as_bytes());
        Self(Uuid::new_v5(&Uuid::NAMESPACE_OID, &name))
    }
}

impl TaskId {
    /// The task of `policy` on `agent` for the fire time `fire_at`: the same inputs always
    /// give the same id, so two schedulers (or one restarted) name the same task and the
    /// event store's expected-sequence check refuses the second.
    ///
    /// It is a UUIDv7 whose time part is the fire time, so tasks sort by when they fire.
    pub fn for_fire(policy: PolicyId, agent: AgentId, fire_at: DateTime<Utc>) -> Self {
        let mut name = Vec::with_capacity(40);
        name.extend_from_slice(policy.0.as_bytes());
        name.extend_from_slice(agent.0.as_bytes());
        name.extend_from_slice(&fire_at.timestamp_micros().to_be_bytes());
        let digest = Uuid::new_v5(&Uuid::NAMESPACE_OID, &name);
        let mut tail = [0u8; 10];
        tail.copy_from_slice(&digest.as_bytes()[..10]);
        let millis = u64::try_from(fire_at.timestamp_millis()).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid())
    }
}

impl PolicyId {
    /// The policy named `name` in `tenant`: a name names one policy, so creating a name
    /// twice conflicts in the event store, and `fleet policy apply` finds its policy again
    /// without a lookup. A deleted policy's name may be created again (same id).
    pub fn for_name(tenant: &TenantId, name: &str) -> Self {
        // A tenant id has no `:`, so the key names one (tenant, name) pair.
        let key = format!("fleet-policy:{tenant}:{name}");
        Self(Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()))
    }
}

impl RepoId {
    /// The repository at `url`; surrounding whitespace and trailing slashes do not matter.
    pub fn for_url(url: &str) -> Self {
        let url = url.trim().trim_end_matches('/');
        Self(Uuid::new_v5(&Uuid::NAMESPACE_URL, url.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_policy_name_names_one_policy_per_tenant() {
        let acme = TenantId::new("acme").expect("slug");
        let other = TenantId::new("other").expect("slug");
        let id = PolicyId::for_name(&acme, "db nightly");
        assert_eq!(id, PolicyId::for_name(&acme, "db nightly"));
        assert_ne!(id, PolicyId::for_name(&acme, "db-nightly"));
        assert_ne!(id, PolicyId::for_name(&other, "db nightly"));
    }

    #[test]
    fn tenant_slugs_are_checked() {
        assert!(TenantId::new("acme").is_ok());
        assert!(TenantId::new("ops-eu_2").is_ok());
        for bad in ["", "Acme", "a.b", "a*", "a>", "a b", "-x", "_x", "é"] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TenantId::new("a".repeat(MAX_SLUG_LEN)).is_ok());
        assert!(matches!(
            TenantId::new("a".repeat(MAX_SLUG_LEN + 1)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn uuid_ids_parse_only_canonical_form() {
        let id = AgentId::generate();
        let text = id.to_string();
        assert_eq!(text.parse::<AgentId>(), Ok(id));
        assert!(text.to_uppercase().parse::<AgentId>().is_err());
        assert!(id.uuid().simple().to_string().parse::<AgentId>().is_err());
        assert!("not-a-uuid".parse::<AgentId>().is_err());
        assert_eq!("".parse::<AgentId>(), Err(IdError::Empty { kind: "agent" }));
    }

    #[test]
    fn task_ids_are_deterministic_per_fire() {
        let policy = PolicyId::generate();
        let agent = AgentId::generate();
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap();
        let later = Utc.with_ymd_and_hms(2026, 11, 22, 4, 0, 0).unwrap();
        assert_eq!(
            TaskId::for_fire(policy, agent, at),
            TaskId::for_fire(policy, agent, at)
        );
        assert_ne!(
            TaskId::for_fire(policy, agent, at),
            TaskId::for_fire(policy, agent, later)
        );
        assert_ne!(
            TaskId::for_fire(policy, agent, at),
            TaskId::for_fire(policy, AgentId::generate(), at)
        );
        assert!(TaskId::for_fire(policy, agent, at) < TaskId::for_fire(policy, agent, later));
        assert_eq!(
            TaskId::for_fire(policy, agent, at).uuid().get_version_num(),
            7
        );
    }

    #[test]
    fn repo_ids_follow_the_url() {
        assert_eq!(
            RepoId::for_url("/srv/restic/"),
            RepoId::for_url(" /srv/restic")
        );
        assert_ne!(RepoId::for_url("/srv/a"), RepoId::for_url("/srv/b"));
    }
}
