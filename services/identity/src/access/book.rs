//! Who may connect to NATS as which agent, folded from the agents' events of every tenant
//! (pure): each agent's tenant, its current key, and whether it was decommissioned.

use std::collections::{BTreeMap, HashMap};

use fleet_events::enroll::check_nats_key;
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event};
use fleet_events::ids::{AgentId, TenantId};

/// One agent as access control sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAccess {
    pub tenant: TenantId,
    /// The key it connects with, if it registered one.
    pub key: Option<String>,
    pub registered: bool,
    pub decommissioned: bool,
}

/// Every agent's access, and which agent first claimed each key.
#[derive(Debug, Clone, Default)]
pub struct AccessBook {
    agents: BTreeMap<AgentId, AgentAccess>,
    /// Key → the agent that claimed it first: a key is one NATS user, so a later agent
    /// naming the same key (a copied state directory, or a key read from another
    /// tenant's history) gets no access with it.
    owners: HashMap<String, AgentId>,
}

/// An agent that may connect, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted<'a> {
    pub agent: AgentId,
    pub tenant: &'a TenantId,
    pub key: &'a str,
}

impl AccessBook {
    /// Applies one stored event; events other than agents' are ignored. Returns whether
    /// access changed.
    pub fn apply(&mut self, envelope: &Envelope) -> bool {
        let Event::Agent { agent, event } = &envelope.event else {
            return false;
        };
        let entry = self.agents.entry(*agent).or_insert_with(|| AgentAccess {
            tenant: envelope.tenant.clone(),
            key: None,
            registered: false,
            decommissioned: false,
        });
        if entry.tenant != envelope.tenant {
            tracing::warn!(agent_id = %agent, tenant = %envelope.tenant,
                "ignoring an agent event under another tenant");
            return false;
        }
        match event {
            AgentEvent::Registered { .. } => {
                let changed = !entry.registered;
                entry.registered = true;
                changed
            }
            AgentEvent::KeyAuthorized { nkey } => {
                if check_nats_key(nkey).is_err() {
                    tracing::warn!(agent_id = %agent, "ignoring a key that is not a NATS user key");
                    return false;
                }
                let owner = *self.owners.entry(nkey.clone()).or_insert(*agent);
                if owner != *agent {
                    tracing::warn!(agent_id = %agent, owner = %owner,
                        "ignoring a key another agent connects with already");
                    return false;
                }
                let changed = entry.key.as_deref() != Some(nkey.as_str());
                entry.key = Some(nkey.clone());
                changed
            }
            AgentEvent::Decommissioned => {
                let changed = !entry.decommissioned;
                entry.decommissioned = true;
                changed
            }
            AgentEvent::SettingsChanged { .. }
            | AgentEvent::CameOnline { .. }
            | AgentEvent::WentOffline { .. } => false,
        }
    }

    /// Agents that may connect: registered, not decommissioned, with a key; by id.
    pub fn admitted(&self) -> impl Iterator<Item = Admitted<'_>> {
        self.agents.iter().filter_map(|(agent, access)| {
            let key = access.key.as_deref()?;
            (access.registered && !access.decommissioned).then_some(Admitted {
                agent: *agent,
                tenant: &access.tenant,
                key,
            })
        })
    }

    /// Agents that work (registered, not decommissioned), with or without a key: each
    /// needs its task consumer.
    pub fn working(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.agents
            .iter()
            .filter(|(_, access)| access.registered && !access.decommissioned)
            .map(|(agent, _)| *agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use fleet_events::settings::AgentSettings;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("slug")
    }

    fn agent(n: u128) -> AgentId {
        AgentId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn event(tenant: &TenantId, agent: AgentId, event: AgentEvent) -> Envelope {
        Envelope::new(tenant.clone(), Utc::now(), Event::Agent { agent, event })
    }

    fn registered() -> AgentEvent {
        AgentEvent::Registered {
            name: "n".into(),
            hostname: "h".into(),
            settings: AgentSettings::default(),
        }
    }

    #[test]
    fn registered_agents_with_keys_are_admitted_until_decommissioned() {
        let acme = tenant("acme");
        let key = nkeys::KeyPair::new_user().public_key();
        let mut book = AccessBook::default();
        assert!(book.apply(&event(&acme, agent(1), registered())));
        assert_eq!(book.admitted().count(), 0, "no key yet");
        assert_eq!(book.working().collect::<Vec<_>>(), vec![agent(1)]);
        let keyed = AgentEvent::KeyAuthorized { nkey: key.clone() };
        assert!(book.apply(&event(&acme, agent(1), keyed.clone())));
        assert!(
            !book.apply(&event(&acme, agent(1), keyed)),
            "the same key again"
        );
        let admitted: Vec<_> = book.admitted().collect();
        assert_eq!(admitted.len(), 1);
        assert_eq!(admitted[0].key, key);
        assert!(book.apply(&event(&acme, agent(1), AgentEvent::Decommissioned)));
        assert_eq!(book.admitted().count(), 0);
        assert_eq!(book.working().count(), 0);
    }

    #[test]
    fn a_key_belongs_to_the_first_agent_that_named_it() {
        let (acme, other) = (tenant("acme"), tenant("other"));
        let key = nkeys::KeyPair::new_user().public_key();
        let mut book = AccessBook::default();
        for (tenant, id) in [(&acme, agent(1)), (&other, agent(2))] {
            book.apply(&event(tenant, id, registered()));
            book.apply(&event(
                tenant,
                id,
                AgentEvent::KeyAuthorized { nkey: key.clone() },
            ));
        }
        let admitted: Vec<_> = book.admitted().map(|a| a.agent).collect();
        assert_eq!(admitted, vec![agent(1)]);
    }

    #[test]
    fn malformed_keys_and_foreign_tenants_are_ignored() {
        let (acme, other) = (tenant("acme"), tenant("other"));
        let mut book = AccessBook::default();
        book.apply(&event(&acme, agent(1), registered()));
        let bad = AgentEvent::KeyAuthorized {
            nkey: "not-a-key".into(),
        };
        assert!(!book.apply(&event(&acme, agent(1), bad)));
        let key = nkeys::KeyPair::new_user().public_key();
        let foreign = AgentEvent::KeyAuthorized { nkey: key };
        assert!(!book.apply(&event(&other, agent(1), foreign)));
        assert_eq!(book.admitted().count(), 0);
    }
}
