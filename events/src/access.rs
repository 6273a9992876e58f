//! What each NATS user may do: the subjects an agent, an enrolling machine and the
//! control plane may publish and subscribe to, for the server's authorization config.
//!
//! An agent may publish only its own reports, heartbeats and progress (and answer the
//! browse requests it receives, once each: `allow_responses`), pull and ack from its own
//! task consumer (which the control plane creates: an agent that could create consumers
//! could create one on another agent's tasks), and read replies on its own inbox prefix.
//! Everything else is denied by leaving it out. Inbox prefixes are per agent, because a
//! pulled task is delivered to the puller's inbox: an agent that could subscribe to
//! another's inbox would read its tasks.

use async_nats::jetstream::consumer::{AckPolicy, pull};
use std::time::Duration;

use crate::enroll::REGISTER_SUBJECT;
use crate::ids::AgentId;
use crate::streams::DISPATCH;
use crate::subject::{AgentSubject, Channel};

/// The inbox prefix of machines that are registering (the server's anonymous user):
/// registration replies are sent only below it. It is not `_INBOX`, which the control
/// plane's own replies use.
pub const ENROLL_INBOX_PREFIX: &str = "_INBOX_ENROLL";
/// Agents' inboxes are `_INBOX_AGENT.<agent>.…`.
pub const AGENT_INBOX_ROOT: &str = "_INBOX_AGENT";
/// How long the agent's task consumer waits for an ack before redelivering.
pub const TASK_ACK_WAIT: Duration = Duration::from_secs(60);

/// The inbox prefix of one agent (async-nats `custom_inbox_prefix`).
pub fn agent_inbox_prefix(agent: AgentId) -> String {
    format!("{AGENT_INBOX_ROOT}.{agent}")
}

/// The durable consumer through which an agent pulls its tasks.
pub fn agent_consumer(agent: AgentId) -> String {
    format!("agent-{agent}")
}

/// The configuration of an agent's task consumer, the same wherever it is created.
pub fn agent_consumer_config(agent: AgentId) -> pull::Config {
    let name = agent_consumer(agent);
    pull::Config {
        durable_name: Some(name),
        filter_subject: AgentSubject {
            agent,
            channel: Channel::Tasks,
        }
        .to_string(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: TASK_ACK_WAIT,
        ..Default::default()
    }
}

/// Subjects a user may publish to and subscribe to (everything else is denied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// May answer each request it received, once, on its reply subject (the server's
    /// `allow_responses`), whatever that subject is.
    pub allow_responses: bool,
}

/// What agent `agent` may do.
pub fn agent_permissions(agent: AgentId) -> Permissions {
    let consumer = agent_consumer(agent);
    let own = |channel| AgentSubject { agent, channel }.to_string();
    Permissions {
        publish: vec![
            own(Channel::Reports),
            own(Channel::Heartbeat),
            own(Channel::Progress),
            format!("$JS.API.CONSUMER.MSG.NEXT.{DISPATCH}.{consumer}"),
            format!("$JS.API.CONSUMER.INFO.{DISPATCH}.{consumer}"),
            format!("$JS.ACK.{DISPATCH}.{consumer}.>"),
        ],
        subscribe: vec![
            format!("{}.>", agent_inbox_prefix(agent)),
            own(Channel::Browse),
        ],
        allow_responses: true,
    }
}

/// What a connection without credentials may do: ask to register, read the answer.
pub fn enroll_permissions() -> Permissions {
    Permissions {
        publish: vec![REGISTER_SUBJECT.to_owned()],
        subscribe: vec![format!("{ENROLL_INBOX_PREFIX}.>")],
        allow_responses: false,
    }
}

/// Whether `reply` is a subject the registrar may answer on: an enrolling machine's
/// inbox. Anything else would let an anonymous caller make the registrar publish where
/// it chooses (into a stream, on an agent's subject).
pub fn is_enroll_inbox(reply: &str) -> bool {
    reply
        .strip_prefix(ENROLL_INBOX_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('.')
                    .all(|token| !token.is_empty() && !token.contains(['*', '>', ' ']))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::matches;

    fn agent(n: u128) -> AgentId {
        AgentId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn may_publish(permissions: &Permissions, subject: &str) -> bool {
        permissions.publish.iter().any(|p| matches(p, subject))
    }

    #[test]
    fn an_agent_may_touch_only_its_own_subjects() {
        let (a, b) = (agent(1), agent(2));
        let mine = agent_permissions(a);
        let report = |x| {
            AgentSubject {
                agent: x,
                channel: Channel::Reports,
            }
            .to_string()
        };
        assert!(may_publish(&mine, &report(a)));
        assert!(!may_publish(&mine, &report(b)));
        let progress = |x| {
            AgentSubject {
                agent: x,
                channel: Channel::Progress,
            }
            .to_string()
        };
        assert!(may_publish(&mine, &progress(a)));
        assert!(!may_publish(&mine, &progress(b)));
        assert!(!may_publish(
            &mine,
            &AgentSubject {
                agent: a,
                channel: Channel::Tasks
            }
            .to_string()
        ));
        let next = |x| format!("$JS.API.CONSUMER.MSG.NEXT.{DISPATCH}.{}", agent_consumer(x));
        assert!(may_publish(&mine, &next(a)));
        assert!(!may_publish(&mine, &next(b)));
        for forbidden in [
            "fleet.evt.acme.task.x",
            "$JS.API.STREAM.DELETE.FLEET_EVENTS",
            "$JS.API.STREAM.PURGE.FLEET_DISPATCH",
            "$JS.API.CONSUMER.DURABLE.CREATE.FLEET_DISPATCH.x",
            "$JS.API.DIRECT.GET.FLEET_EVENTS",
            REGISTER_SUBJECT,
        ] {
            assert!(!may_publish(&mine, forbidden), "{forbidden}");
        }
        let inbox = format!("{}.x", agent_inbox_prefix(a));
        assert!(mine.subscribe.iter().any(|p| matches(p, &inbox)));
        let other = format!("{}.x", agent_inbox_prefix(b));
        assert!(!mine.subscribe.iter().any(|p| matches(p, &other)));
        assert!(!mine.subscribe.iter().any(|p| matches(p, "_INBOX.x")));
        let browse = |x| {
            AgentSubject {
                agent: x,
                channel: Channel::Browse,
            }
            .to_string()
        };
        assert!(mine.subscribe.iter().any(|p| matches(p, &browse(a))));
        assert!(!mine.subscribe.iter().any(|p| matches(p, &browse(b))));
        assert!(
            !may_publish(&mine, &browse(b)),
            "no requests to other agents"
        );
    }

    #[test]
    fn the_registrar_answers_only_enrolling_inboxes() {
        assert!(is_enroll_inbox("_INBOX_ENROLL.abc"));
        assert!(is_enroll_inbox("_INBOX_ENROLL.abc.1"));
        for bad in [
            "_INBOX.abc",
            "_INBOX_ENROLL",
            "_INBOX_ENROLL.",
            "_INBOX_ENROLLX.abc",
            "_INBOX_ENROLL.>",
            "_INBOX_ENROLL.a..b",
            "fleet.agent.x.reports",
        ] {
            assert!(!is_enroll_inbox(bad), "{bad}");
        }
    }
}
