//! The nats-server authorization config, rendered from the access book (pure): the
//! control plane's users, the enrolling user anonymous connections get, and one user per
//! admitted agent limited to its own subjects ([`fleet_events::access`]).

use std::fmt::Write;

use fleet_events::access::{Permissions, agent_permissions, enroll_permissions};

use super::book::AccessBook;

/// The user connections without credentials are: it may only ask to register.
pub const ENROLL_USER: &str = "fleet-enroll";

/// What is rendered besides the agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// Public keys (`U…`) of the control plane's users: every service, the API, the CLI's
    /// tenant and projection commands. They may do everything.
    pub control_keys: Vec<String>,
    /// Let connections without credentials register (the enrolling user); without it,
    /// an agent must be given a key that is authorized already.
    pub anonymous_enroll: bool,
}

/// The config text, to be included in (or be) the server's configuration file.
pub fn render(book: &AccessBook, config: &RenderConfig) -> String {
    let mut out = String::new();
    out.push_str(
        "# Rendered by restic-fleet from its event log (the access service, or `fleet \
         nats-config`).\n# Do not edit: it is written again whenever an agent registers a \
         key or is decommissioned.\n",
    );
    out.push_str("authorization {\n  users = [\n");
    for key in &config.control_keys {
        out.push_str("    # the control plane: every permission\n");
        let _ = writeln!(out, "    {{nkey: {}}}", quoted(key));
    }
    if config.anonymous_enroll {
        out.push_str("    # connections without credentials: registering only\n");
        let _ = writeln!(
            out,
            "    {{user: {}, permissions: {}}}",
            quoted(ENROLL_USER),
            permissions(&enroll_permissions())
        );
    }
    for admitted in book.admitted() {
        let _ = writeln!(
            out,
            "    # agent {} of tenant {}\n    {{nkey: {}, permissions: {}}}",
            admitted.agent,
            admitted.tenant,
            quoted(admitted.key),
            permissions(&agent_permissions(admitted.agent))
        );
    }
    out.push_str("  ]\n}\n");
    if config.anonymous_enroll {
        let _ = writeln!(out, "no_auth_user: {}", quoted(ENROLL_USER));
    }
    out
}

fn permissions(permissions: &Permissions) -> String {
    let responses = match permissions.allow_responses {
        true => ", allow_responses: true",
        false => "",
    };
    format!(
        "{{publish: {{allow: {}}}, subscribe: {{allow: {}}}{responses}}}",
        list(&permissions.publish),
        list(&permissions.subscribe)
    )
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A double-quoted string: every value rendered is a key, a subject or a fixed name
/// (checked before), so quotes and backslashes cannot occur; they are refused anyway.
fn quoted(text: &str) -> String {
    let safe: String = text
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '\n' | '\r'))
        .collect();
    format!("\"{safe}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use fleet_events::envelope::Envelope;
    use fleet_events::event::{AgentEvent, Event};
    use fleet_events::ids::{AgentId, TenantId};
    use fleet_events::settings::AgentSettings;

    fn book(agents: &[(AgentId, &str, bool)]) -> AccessBook {
        let tenant = TenantId::new("acme").expect("slug");
        let mut book = AccessBook::default();
        for (agent, key, decommissioned) in agents {
            let mut events = vec![
                AgentEvent::Registered {
                    name: "n".into(),
                    hostname: "h".into(),
                    settings: AgentSettings::default(),
                },
                AgentEvent::KeyAuthorized {
                    nkey: (*key).to_owned(),
                },
            ];
            if *decommissioned {
                events.push(AgentEvent::Decommissioned);
            }
            for event in events {
                let event = Event::Agent {
                    agent: *agent,
                    event,
                };
                book.apply(&Envelope::new(tenant.clone(), Utc::now(), event));
            }
        }
        book
    }

    #[test]
    fn each_admitted_agent_gets_its_own_block_and_nothing_else() {
        let (a, b) = (
            AgentId::from_uuid(uuid::Uuid::from_u128(1)),
            AgentId::from_uuid(uuid::Uuid::from_u128(2)),
        );
        let (key_a, key_b) = (
            nkeys::KeyPair::new_user().public_key(),
            nkeys::KeyPair::new_user().public_key(),
        );
        let control = nkeys::KeyPair::new_user().public_key();
        let config = RenderConfig {
            control_keys: vec![control.clone()],
            anonymous_enroll: true,
        };
        let text = render(&book(&[(a, &key_a, false), (b, &key_b, true)]), &config);
        assert!(text.contains(&format!("{{nkey: \"{control}\"}}")));
        assert!(text.contains(&key_a));
        assert!(
            !text.contains(&key_b),
            "a decommissioned agent has no block"
        );
        assert!(text.contains(&format!("\"fleet.agent.{a}.reports\"")));
        assert!(!text.contains(&format!("fleet.agent.{b}.")));
        assert!(text.contains("no_auth_user: \"fleet-enroll\""));
        let closed = render(
            &AccessBook::default(),
            &RenderConfig {
                anonymous_enroll: false,
                ..config
            },
        );
        assert!(!closed.contains("no_auth_user"));
        assert!(!closed.contains(ENROLL_USER));
    }

    #[test]
    fn rendering_is_deterministic() {
        let a = AgentId::from_uuid(uuid::Uuid::from_u128(1));
        let key = nkeys::KeyPair::new_user().public_key();
        let config = RenderConfig {
            control_keys: vec![],
            anonymous_enroll: true,
        };
        let one = render(&book(&[(a, &key, false)]), &config);
        assert_eq!(one, render(&book(&[(a, &key, false)]), &config));
    }
}
