//! Subject names: builders and strict parsers. Only this module spells a subject.
//!
//! - `fleet.evt.<tenant>.<aggregate>.<id>`: the event log (stream `FLEET_EVENTS`)
//! - `fleet.agent.<agent>.tasks`: work for one agent (stream `FLEET_DISPATCH`)
//! - `fleet.agent.<agent>.reports` / `.heartbeat`: what an agent says (streams `FLEET_INTAKE`
//!   and `FLEET_HEARTBEATS`)
//! - `fleet.parked.<consumer>`: messages a consumer could not handle (stream `FLEET_PARKED`)

use std::fmt;

use crate::ids::{AgentId, IdError, TenantId, check_slug};

/// Prefix of every event subject.
pub const EVENTS_PREFIX: &str = "fleet.evt";
/// Prefix of every per-agent subject.
pub const AGENT_PREFIX: &str = "fleet.agent";
/// Prefix of every parked-message subject.
pub const PARKED_PREFIX: &str = "fleet.parked";

/// Why a string is not a subject of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("{subject:?} is not a {expected} subject")]
    Shape {
        subject: String,
        expected: &'static str,
    },
    #[error("{subject:?}: unknown aggregate {found:?}")]
    UnknownAggregate { subject: String, found: String },
    #[error("{subject:?}: unknown agent channel {found:?}")]
    UnknownChannel { subject: String, found: String },
    #[error("{subject:?}: {source}")]
    BadId {
        subject: String,
        #[source]
        source: IdError,
    },
}

/// The kinds of aggregate in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Tenant,
    Agent,
    Policy,
    Task,
    Repo,
    Rule,
    Notification,
    Assignment,
}

impl Aggregate {
    /// The subject token.
    pub fn token(self) -> &'static str {
        match self {
            Aggregate::Tenant => "tenant",
            Aggregate::Agent => "agent",
            Aggregate::Policy => "policy",
            Aggregate::Task => "task",
            Aggregate::Repo => "repo",
            Aggregate::Rule => "rule",
            Aggregate::Notification => "notification",
            Aggregate::Assignment => "assignment",
        }
    }

    fn from_token(token: &str) -> Option<Self> {
        Some(match token {
            "tenant" => Aggregate::Tenant,
            "agent" => Aggregate::Agent,
            "policy" => Aggregate::Policy,
            "task" => Aggregate::Task,
            "repo" => Aggregate::Repo,
            "rule" => Aggregate::Rule,
            "notification" => Aggregate::Notification,
            "assignment" => Aggregate::Assignment,
            _ => return None,
        })
    }
}

/// One aggregate instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AggregateId {
    Tenant(TenantId),
    Agent(AgentId),
    Policy(crate::ids::PolicyId),
    Task(crate::ids::TaskId),
    Repo(crate::ids::RepoId),
    Rule(crate::ids::RuleId),
    Notification(crate::ids::NotificationId),
    Assignment(crate::ids::AssignmentId),
}

impl AggregateId {
    /// Its kind.
    pub fn kind(&self) -> Aggregate {
        match self {
            AggregateId::Tenant(_) => Aggregate::Tenant,
            AggregateId::Agent(_) => Aggregate::Agent,
            AggregateId::Policy(_) => Aggregate::Policy,
            AggregateId::Task(_) => Aggregate::Task,
            AggregateId::Repo(_) => Aggregate::Repo,
            AggregateId::Rule(_) => Aggregate::Rule,
            AggregateId::Notification(_) => Aggregate::Notification,
            AggregateId::Assignment(_) => Aggregate::Assignment,
        }
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateId::Tenant(id) => id.fmt(f),
            AggregateId::Agent(id) => id.fmt(f),
            AggregateId::Policy(id) => id.fmt(f),
            AggregateId::Task(id) => id.fmt(f),
            AggregateId::Repo(id) => id.fmt(f),
            AggregateId::Rule(id) => id.fmt(f),
            AggregateId::Notification(id) => id.fmt(f),
            AggregateId::Assignment(id) => id.fmt(f),
        }
    }
}

/// `fleet.evt.<tenant>.<aggregate>.<id>`: where one aggregate's events are stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventSubject {
    pub tenant: TenantId,
    pub aggregate: AggregateId,
}

impl fmt::Display for EventSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{EVENTS_PREFIX}.{}.{}.{}",
            self.tenant,
            self.aggregate.kind().token(),
            self.aggregate
        )
    }
}

impl EventSubject {
    /// Parses an event subject, accepting only canonical ids.
    pub fn parse(subject: &str) -> Result<Self, SubjectError> {
        let shape = || SubjectError::Shape {
            subject: subject.to_owned(),
            expected: "fleet.evt.<tenant>.<aggregate>.<id>",
        };
        let bad_id = |source| SubjectError::BadId {
            subject: subject.to_owned(),
            source,
        };
        let rest = subject
            .strip_prefix(EVENTS_PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(shape)?;
        let tokens: Vec<&str> = rest.split('.').collect();
        let [tenant, kind, id] = tokens.as_slice() else {
            return Err(shape());
        };
        let tenant = TenantId::new(*tenant).map_err(bad_id)?;
        let kind = Aggregate::from_token(kind).ok_or_else(|| SubjectError::UnknownAggregate {
            subject: subject.to_owned(),
            found: (*kind).to_owned(),
        })?;
        let aggregate = match kind {
            Aggregate::Tenant if *id == tenant.as_str() => AggregateId::Tenant(tenant.clone()),
            Aggregate::Tenant => return Err(shape()),
            Aggregate::Agent => AggregateId::Agent(id.parse().map_err(bad_id)?),
            Aggregate::Policy => AggregateId::Policy(id.parse().map_err(bad_id)?),
            Aggregate::Task => AggregateId::Task(id.parse().map_err(bad_id)?),
            Aggregate::Repo => AggregateId::Repo(id.parse().map_err(bad_id)?),
            Aggregate::Rule => AggregateId::Rule(id.parse().map_err(bad_id)?),
            Aggregate::Notification => AggregateId::Notification(id.parse().map_err(bad_id)?),
            Aggregate::Assignment => AggregateId::Assignment(id.parse().map_err(bad_id)?),
        };
        Ok(Self { tenant, aggregate })
    }
}

/// Every event of every tenant.
pub fn all_events() -> String {
    format!("{EVENTS_PREFIX}.>")
}

/// Every event of one tenant.
pub fn tenant_events(tenant: &TenantId) -> String {
    format!("{EVENTS_PREFIX}.{tenant}.>")
}

/// Every event of one kind of aggregate, all tenants.
pub fn aggregate_events(kind: Aggregate) -> String {
    format!("{EVENTS_PREFIX}.*.{}.*", kind.token())
}

/// Whether `subject` (literal tokens) matches `filter` by NATS rules: `*` matches one
/// token, a final `>` one or more.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in filter.split('.') {
        match (wanted, tokens.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (wanted, Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// What flows on an agent's own subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Control plane to agent: tasks to run.
    Tasks,
    /// Agent to control plane: what happened to its tasks.
    Reports,
    /// Agent to control plane: alive, and how loaded.
    Heartbeat,
    /// Agent to operators, core NATS only (no stream stores it): how far a running attempt
    /// is, about once a second.
    Progress,
    /// Operators to agent, request/reply on core NATS (never stored): list a directory of
    /// a snapshot (`restic ls`); the agent answers on the request's reply subject.
    Browse,
}

impl Channel {
    fn token(self) -> &'static str {
        match self {
            Channel::Tasks => "tasks",
            Channel::Reports => "reports",
            Channel::Heartbeat => "heartbeat",
            Channel::Progress => "progress",
            Channel::Browse => "browse",
        }
    }
}

/// `fleet.agent.<agent>.<channel>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgentSubject {
    pub agent: AgentId,
    pub channel: Channel,
}

impl fmt::Display for AgentSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{AGENT_PREFIX}.{}.{}", self.agent, self.channel.token())
    }
}

impl AgentSubject {
    /// Parses an agent subject, accepting only a canonical agent id.
    pub fn parse(subject: &str) -> Result<Self, SubjectError> {
        let shape = || SubjectError::Shape {
            subject: subject.to_owned(),
            expected: "fleet.agent.<agent>.<tasks|reports|heartbeat|progress|browse>",
        };
        let rest = subject
            .strip_prefix(AGENT_PREFIX)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(shape)?;
        let tokens: Vec<&str> = rest.split('.').collect();
        let [agent, channel] = tokens.as_slice() else {
            return Err(shape());
        };
        let agent = agent.parse().map_err(|source| SubjectError::BadId {
            subject: subject.to_owned(),
            source,
        })?;
        let channel = match *channel {
            "tasks" => Channel::Tasks,
            "reports" => Channel::Reports,
            "heartbeat" => Channel::Heartbeat,
            "progress" => Channel::Progress,
            "browse" => Channel::Browse,
            other => {
                return Err(SubjectError::UnknownChannel {
                    subject: subject.to_owned(),
                    found: other.to_owned(),
                });
            }
        };
        Ok(Self { agent, channel })
    }
}

/// Every agent's subjects of one channel (`fleet.agent.*.<channel>`).
pub fn all_agents(channel: Channel) -> String {
    format!("{AGENT_PREFIX}.*.{}", channel.token())
}

/// Where `consumer` parks what it cannot handle. The consumer name must be a slug.
pub fn parked(consumer: &str) -> Result<String, IdError> {
    check_slug("consumer", consumer)?;
    Ok(format!("{PARKED_PREFIX}.{consumer}"))
}

/// Prefix of the control subjects: core NATS request/reply, outside every stream.
pub const CONTROL_PREFIX: &str = "fleet.ctl";
/// The queue group of projector instances answering queries.
pub const PROJECTOR_QUEUE: &str = "fleet-projector";

/// Read-model queries about one tenant (`fleet.ctl.query.<tenant>`), answered by the
/// projector. The tenant is in the subject, so the server can scope who may ask.
pub fn query(tenant: &TenantId) -> String {
    format!("{CONTROL_PREFIX}.query.{tenant}")
}

/// Every tenant's query subject, for the projector to serve.
pub fn all_queries() -> String {
    format!("{CONTROL_PREFIX}.query.*")
}

/// The projections' own status (checkpoints, lag), for operators.
pub fn projections_status() -> String {
    format!("{CONTROL_PREFIX}.projections.status")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{PolicyId, RepoId, TaskId};

    #[test]
    fn filters_match_by_nats_rules() {
        let task = "fleet.evt.acme.task.0192";
        assert!(matches(&all_events(), task));
        assert!(matches(&aggregate_events(Aggregate::Task), task));
        assert!(!matches(&aggregate_events(Aggregate::Agent), task));
        assert!(matches("fleet.evt.acme.>", task));
        assert!(!matches("fleet.evt.other.>", task));
        assert!(matches(task, task));
        assert!(!matches("fleet.evt.acme.task", task), "too short");
        assert!(!matches("fleet.evt.acme.task.0192.x", task), "too long");
        assert!(
            !matches("fleet.evt.acme.task.0192.>", task),
            "> needs a token"
        );
        assert!(!matches("fleet.evt.*.task.*", "fleet.evt.acme.task.0192.x"));
    }

    #[test]
    fn event_subjects_round_trip() {
        let tenant = TenantId::new("acme").unwrap();
        for aggregate in [
            AggregateId::Tenant(tenant.clone()),
            AggregateId::Agent(AgentId::generate()),
            AggregateId::Policy(PolicyId::generate()),
            AggregateId::Task(TaskId::generate()),
            AggregateId::Repo(RepoId::for_url("/srv/r")),
        ] {
            let s = EventSubject {
                tenant: tenant.clone(),
                aggregate,
            };
            assert_eq!(EventSubject::parse(&s.to_string()), Ok(s));
        }
    }

    #[test]
    fn hostile_event_subjects_are_rejected() {
        let agent = AgentId::generate();
        for bad in [
            String::new(),
            "fleet.evt".into(),
            "fleet.evt.acme".into(),
            format!("fleet.evt.acme.agent.{agent}.x"),
            format!("fleet.evt.ACME.agent.{agent}"),
            format!("fleet.evt.*.agent.{agent}"),
            "fleet.evt.acme.agent.>".into(),
            "fleet.evt.acme.agent.not-a-uuid".into(),
            format!("fleet.evt.acme.widget.{agent}"),
            "fleet.evt.acme.tenant.other".into(),
            format!("other.evt.acme.agent.{agent}"),
            format!("fleet.evtx.acme.agent.{agent}"),
        ] {
            assert!(EventSubject::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn agent_subjects_round_trip_and_reject_garbage() {
        let agent = AgentId::generate();
        for channel in [
            Channel::Tasks,
            Channel::Reports,
            Channel::Heartbeat,
            Channel::Progress,
            Channel::Browse,
        ] {
            let s = AgentSubject { agent, channel };
            assert_eq!(AgentSubject::parse(&s.to_string()), Ok(s));
        }
        for bad in [
            format!("fleet.agent.{agent}"),
            format!("fleet.agent.{agent}.tasks.x"),
            format!("fleet.agent.{agent}.gossip"),
            "fleet.agent.*.tasks".into(),
            "fleet.agent.a b.tasks".into(),
        ] {
            assert!(AgentSubject::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn filters_and_parked_subjects() {
        let tenant = TenantId::new("acme").unwrap();
        assert_eq!(all_events(), "fleet.evt.>");
        assert_eq!(tenant_events(&tenant), "fleet.evt.acme.>");
        assert_eq!(aggregate_events(Aggregate::Task), "fleet.evt.*.task.*");
        assert_eq!(all_agents(Channel::Reports), "fleet.agent.*.reports");
        assert_eq!(parked("intake").unwrap(), "fleet.parked.intake");
        assert!(parked("a.b").is_err());
    }
}
