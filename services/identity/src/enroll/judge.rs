//! The registrar's decisions (pure): is a registration request acceptable, and given the
//! tenant's tokens and the agent's history, what to append and what to answer.

use fleet_events::enroll::{
    RegisterOutcome, RegisterRequest, Rejection, TokenText, check_machine_id, check_nats_key,
};
use fleet_events::event::{AgentEvent, Event, Role};
use fleet_events::ids::AgentId;

use crate::tenant::TokenBook;

/// Longest name or hostname accepted (a DNS name's limit).
pub const MAX_NAME_LEN: usize = 253;
/// Roles whose tokens may register agents.
pub const ENROLLING_ROLES: [Role; 2] = [Role::Enroll, Role::Admin];
/// What a caller with a bad token is told: never which part was wrong.
pub const NOT_ACCEPTED: &str = "enrollment token not accepted";

/// A request whose fields are well formed.
#[derive(Debug, Clone)]
pub struct Checked {
    pub token: TokenText,
    pub request: RegisterRequest,
}

/// What to do about a request, given the tenant and agent as the log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Append `events` (in order) for `agent`, then answer `Registered { new }`: a new
    /// agent's registration and key, or a known agent's new key.
    Record {
        agent: AgentId,
        name: String,
        new: bool,
        events: Vec<AgentEvent>,
    },
    /// Answer now.
    Answer(RegisterOutcome),
}

/// Checks the request's fields; the error is the answer to send.
pub fn check(request: RegisterRequest) -> Result<Checked, RegisterOutcome> {
    let token = TokenText::parse(&request.token).map_err(|_| RegisterOutcome::Rejected {
        reason: Rejection::TokenNotAccepted,
        message: NOT_ACCEPTED.into(),
    })?;
    let mut problems = Vec::new();
    if let Err(message) = check_machine_id(&request.machine) {
        problems.push(format!("machine: {message}"));
    }
    for (field, value) in [("name", &request.name), ("hostname", &request.hostname)] {
        if value.trim().is_empty() || value.len() > MAX_NAME_LEN {
            problems.push(format!("{field}: must be 1 to {MAX_NAME_LEN} characters"));
        }
    }
    if !request.nats_key.is_empty()
        && let Err(message) = check_nats_key(&request.nats_key)
    {
        problems.push(format!("natsKey: {message}"));
    }
    if let Err(invalid) = request.settings.validate() {
        problems.extend(
            invalid
                .0
                .iter()
                .map(|e| format!("settings.{}: {}", e.field, e.message)),
        );
    }
    if problems.is_empty() {
        Ok(Checked { token, request })
    } else {
        Err(RegisterOutcome::Rejected {
            reason: Rejection::Malformed,
            message: problems.join("; "),
        })
    }
}

/// Decides on a checked request from the tenant's token book and the history of the
/// agent the machine maps to. A known machine keeps its agent; a new NATS key for it is
/// recorded when it has none yet, or when an admin token asks (an enrollment token must
/// not be enough to take a working agent's identity over).
pub fn judge(checked: &Checked, book: &TokenBook, agent_history: &[Event]) -> Judgement {
    let Some(issued) = book
        .check(&checked.token, &ENROLLING_ROLES)
        .filter(|_| book.exists)
    else {
        return Judgement::Answer(RegisterOutcome::Rejected {
            reason: Rejection::TokenNotAccepted,
            message: NOT_ACCEPTED.into(),
        });
    };
    let tenant = checked.token.tenant().clone();
    let agent = AgentId::for_machine(&tenant, &checked.request.machine);
    let mut registered: Option<String> = None;
    let mut key: Option<&str> = None;
    for event in agent_history {
        let Event::Agent { event, .. } = event else {
            continue;
        };
        match event {
            AgentEvent::Registered { name, .. } => registered = Some(name.clone()),
            AgentEvent::KeyAuthorized { nkey } => key = Some(nkey),
            AgentEvent::Decommissioned => {
                return Judgement::Answer(RegisterOutcome::Rejected {
                    reason: Rejection::Decommissioned,
                    message: format!(
                        "agent {agent} of this machine was decommissioned; configure another \
                         machineId to enroll the machine again"
                    ),
                });
            }
            _ => {}
        }
    }
    let wanted = &checked.request.nats_key;
    let key_event = || AgentEvent::KeyAuthorized {
        nkey: wanted.clone(),
    };
    let Some(name) = registered else {
        let mut events = vec![AgentEvent::Registered {
            name: checked.request.name.clone(),
            hostname: checked.request.hostname.clone(),
            settings: checked.request.settings.clone(),
        }];
        if !wanted.is_empty() {
            events.push(key_event());
        }
        return Judgement::Record {
            agent,
            name: checked.request.name.clone(),
            new: true,
            events,
        };
    };
    let known = RegisterOutcome::Registered {
        tenant,
        agent,
        name: name.clone(),
        new: false,
    };
    match key {
        _ if wanted.is_empty() => Judgement::Answer(known),
        Some(key) if key == wanted => Judgement::Answer(known),
        Some(_) if issued.role != Role::Admin => Judgement::Answer(RegisterOutcome::Rejected {
            reason: Rejection::KeyMismatch,
            message: format!(
                "agent {agent} of this machine connects with another NATS key; restore the \
                 agent's state directory (its nats.nk), or register it again with an admin \
                 token to replace the key"
            ),
        }),
        _ => Judgement::Record {
            agent,
            name,
            new: false,
            events: vec![key_event()],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::hash;
    use fleet_events::event::TenantEvent;
    use fleet_events::ids::{TenantId, TokenId};
    use fleet_events::settings::AgentSettings;

    fn tenant() -> TenantId {
        TenantId::new("acme").expect("slug")
    }

    fn token(byte: u8) -> TokenText {
        TokenText::from_secret(&tenant(), &[byte; 32])
    }

    fn book_with(role: Role) -> TokenBook {
        let mut book = TokenBook::default();
        book.apply(&TenantEvent::Created {
            name: "Acme".into(),
        });
        book.apply(&TenantEvent::TokenIssued {
            token: TokenId::generate(),
            role,
            label: "enroll".into(),
            sha256: hash(&token(1)),
        });
        book
    }

    fn request(token: &TokenText) -> RegisterRequest {
        RegisterRequest::new(token, "machine-1".into(), "db-1".into(), "db-1".into())
    }

    fn checked(token: &TokenText) -> Checked {
        check(request(token)).expect("well formed")
    }

    #[test]
    fn a_new_machine_is_registered_under_its_machine_id() {
        let judgement = judge(&checked(&token(1)), &book_with(Role::Enroll), &[]);
        let Judgement::Record {
            agent, new, events, ..
        } = judgement
        else {
            panic!("expected a registration, got {judgement:?}");
        };
        assert_eq!(agent, AgentId::for_machine(&tenant(), "machine-1"));
        assert!(new);
        assert!(matches!(&events[..], [AgentEvent::Registered { name, .. }] if name == "db-1"));
    }

    fn registered_with(key: Option<&str>) -> Vec<Event> {
        let agent = AgentId::for_machine(&tenant(), "machine-1");
        let mut history = vec![Event::Agent {
            agent,
            event: AgentEvent::Registered {
                name: "db-1".into(),
                hostname: "db-1".into(),
                settings: AgentSettings::default(),
            },
        }];
        if let Some(key) = key {
            history.push(Event::Agent {
                agent,
                event: AgentEvent::KeyAuthorized { nkey: key.into() },
            });
        }
        history
    }

    fn keyed(token: &TokenText, key: &str) -> Checked {
        let mut request = request(token);
        request.nats_key = key.into();
        check(request).expect("well formed")
    }

    #[test]
    fn a_new_machine_s_key_is_recorded_with_it() {
        let key = nkeys::KeyPair::new_user().public_key();
        let judgement = judge(&keyed(&token(1), &key), &book_with(Role::Enroll), &[]);
        let Judgement::Record { events, .. } = judgement else {
            panic!("expected a registration, got {judgement:?}");
        };
        assert!(matches!(
            &events[..],
            [AgentEvent::Registered { .. }, AgentEvent::KeyAuthorized { nkey }] if *nkey == key
        ));
    }

    #[test]
    fn a_known_machine_s_key_is_kept_unless_an_admin_replaces_it() {
        let old = nkeys::KeyPair::new_user().public_key();
        let new = nkeys::KeyPair::new_user().public_key();
        let history = registered_with(Some(&old));
        let same = judge(&keyed(&token(1), &old), &book_with(Role::Enroll), &history);
        assert!(matches!(
            same,
            Judgement::Answer(RegisterOutcome::Registered { new: false, .. })
        ));
        let takeover = judge(&keyed(&token(1), &new), &book_with(Role::Enroll), &history);
        assert!(matches!(
            takeover,
            Judgement::Answer(RegisterOutcome::Rejected {
                reason: Rejection::KeyMismatch,
                ..
            })
        ));
        let by_admin = judge(&keyed(&token(1), &new), &book_with(Role::Admin), &history);
        assert!(matches!(
            by_admin,
            Judgement::Record { new: false, ref events, .. }
                if events == &[AgentEvent::KeyAuthorized { nkey: new.clone() }]
        ));
        let first_key = judge(
            &keyed(&token(1), &new),
            &book_with(Role::Enroll),
            &registered_with(None),
        );
        assert!(
            matches!(first_key, Judgement::Record { .. }),
            "a pre-registered agent gets its first key with an enrollment token"
        );
    }

    #[test]
    fn a_malformed_key_is_named() {
        let mut bad = request(&token(1));
        bad.nats_key = "not-a-key".into();
        let Err(RegisterOutcome::Rejected { reason, message }) = check(bad) else {
            panic!("expected a rejection");
        };
        assert_eq!(reason, Rejection::Malformed);
        assert!(message.contains("natsKey"), "{message}");
    }

    #[test]
    fn registering_again_answers_the_same_agent() {
        let agent = AgentId::for_machine(&tenant(), "machine-1");
        let history = [Event::Agent {
            agent,
            event: AgentEvent::Registered {
                name: "first-name".into(),
                hostname: "db-1".into(),
                settings: AgentSettings::default(),
            },
        }];
        let judgement = judge(&checked(&token(1)), &book_with(Role::Enroll), &history);
        assert_eq!(
            judgement,
            Judgement::Answer(RegisterOutcome::Registered {
                tenant: tenant(),
                agent,
                name: "first-name".into(),
                new: false,
            })
        );
    }

    #[test]
    fn bad_tokens_are_not_told_apart() {
        let unknown = judge(&checked(&token(2)), &book_with(Role::Enroll), &[]);
        let read_only = judge(&checked(&token(1)), &book_with(Role::ReadOnly), &[]);
        let no_tenant = judge(&checked(&token(1)), &TokenBook::default(), &[]);
        for judgement in [unknown, read_only, no_tenant] {
            assert_eq!(
                judgement,
                Judgement::Answer(RegisterOutcome::Rejected {
                    reason: Rejection::TokenNotAccepted,
                    message: NOT_ACCEPTED.into(),
                })
            );
        }
        let mut garbled = request(&token(1));
        garbled.token = "rft1.acme.xyz".into();
        assert!(matches!(
            check(garbled),
            Err(RegisterOutcome::Rejected {
                reason: Rejection::TokenNotAccepted,
                ..
            })
        ));
    }

    #[test]
    fn a_decommissioned_machine_is_refused() {
        let agent = AgentId::for_machine(&tenant(), "machine-1");
        let history = [Event::Agent {
            agent,
            event: AgentEvent::Decommissioned,
        }];
        let judgement = judge(&checked(&token(1)), &book_with(Role::Admin), &history);
        assert!(matches!(
            judgement,
            Judgement::Answer(RegisterOutcome::Rejected {
                reason: Rejection::Decommissioned,
                ..
            })
        ));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = request(&token(1));
        bad.machine = "has space".into();
        bad.name = String::new();
        bad.settings = AgentSettings {
            max_concurrent: 0,
            ..AgentSettings::default()
        };
        let Err(RegisterOutcome::Rejected { reason, message }) = check(bad) else {
            panic!("expected a rejection");
        };
        assert_eq!(reason, Rejection::Malformed);
        for field in ["machine", "name", "settings.maxConcurrent"] {
            assert!(message.contains(field), "{message}");
        }
    }
}
