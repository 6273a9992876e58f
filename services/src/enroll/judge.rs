//! The registrar's decisions (pure): is a registration request acceptable, and given the
//! tenant's tokens and the agent's history, what to append and what to answer.

use fleet_events::enroll::{
    RegisterOutcome, RegisterRequest, Rejection, TokenText, check_machine_id,
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
    /// Append this registration for `agent`, then answer `Registered { new: true }`.
    Register { agent: AgentId, event: AgentEvent },
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
/// agent the machine maps to.
pub fn judge(checked: &Checked, book: &TokenBook, agent_history: &[Event]) -> Judgement {
    if !book.exists || book.check(&checked.token, &ENROLLING_ROLES).is_none() {
        return Judgement::Answer(RegisterOutcome::Rejected {
            reason: Rejection::TokenNotAccepted,
            message: NOT_ACCEPTED.into(),
        });
    }
    let tenant = checked.token.tenant().clone();
    let agent = AgentId::for_machine(&tenant, &checked.request.machine);
    let mut registered: Option<String> = None;
    for event in agent_history {
        match event {
            Event::Agent {
                event: AgentEvent::Registered { name, .. },
                ..
            } => registered = Some(name.clone()),
            Event::Agent {
                event: AgentEvent::Decommissioned,
                ..
            } => {
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
    match registered {
        Some(name) => Judgement::Answer(RegisterOutcome::Registered {
            tenant,
            agent,
            name,
            new: false,
        }),
        None => Judgement::Register {
            agent,
            event: AgentEvent::Registered {
                name: checked.request.name.clone(),
                hostname: checked.request.hostname.clone(),
                settings: checked.request.settings.clone(),
            },
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
        let Judgement::Register { agent, event } = judgement else {
            panic!("expected a registration, got {judgement:?}");
        };
        assert_eq!(agent, AgentId::for_machine(&tenant(), "machine-1"));
        assert!(matches!(event, AgentEvent::Registered { name, .. } if name == "db-1"));
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
