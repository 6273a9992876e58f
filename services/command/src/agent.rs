//! Agent commands: registering a machine ahead of its agent, changing settings (a merge
//! patch over the current settings), decommissioning; and whether an agent may be given
//! work (registered, in service).

use chrono::{DateTime, Utc};
use fleet_events::enroll::check_machine_id;
use fleet_events::event::{AgentEvent, Event};
use fleet_events::ids::{AgentId, TenantId};
use fleet_events::settings::AgentSettings;
use fleet_events::store::{EventStore, Stored};
use fleet_events::subject::{AggregateId, EventSubject};
use fleet_events::validation::{FieldError, Invalid, Problems};
use serde_json::Value;

use super::{CommandError, Written, execute};
use fleet_identity::enroll::judge::MAX_NAME_LEN;

/// An agent as its history says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentState {
    pub registered: bool,
    pub decommissioned: bool,
    pub settings: AgentSettings,
}

impl AgentState {
    /// Folds the agent's events (those of other aggregates are ignored).
    pub fn fold(history: &[Stored]) -> AgentState {
        let mut state = AgentState::default();
        for stored in history {
            match &stored.envelope.event {
                Event::Agent {
                    event: AgentEvent::Registered { settings, .. },
                    ..
                } => {
                    state.registered = true;
                    state.settings = settings.clone();
                }
                Event::Agent {
                    event: AgentEvent::SettingsChanged { settings },
                    ..
                } => state.settings = settings.clone(),
                Event::Agent {
                    event: AgentEvent::Decommissioned,
                    ..
                } => state.decommissioned = true,
                _ => {}
            }
        }
        state
    }

    /// Why this agent cannot be given work, if it cannot.
    /// Why `agent` may not be given work, if it may not: not found (never registered in
    /// this tenant) or a conflict (decommissioned).
    pub fn unusable(&self, agent: AgentId) -> Option<CommandError> {
        if !self.registered {
            Some(CommandError::NotFound(format!(
                "no agent {agent} in this tenant"
            )))
        } else if self.decommissioned {
            Some(CommandError::Conflict(format!(
                "agent {agent} is decommissioned"
            )))
        } else {
            None
        }
    }
}

/// A machine an operator registers ahead of its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preregistration {
    pub machine: String,
    pub name: String,
    pub hostname: String,
    pub settings: AgentSettings,
}

impl Preregistration {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        if let Err(message) = check_machine_id(&self.machine) {
            p.add("machineId", message);
        }
        for (field, value) in [("name", &self.name), ("hostname", &self.hostname)] {
            p.check(
                !value.trim().is_empty() && value.len() <= MAX_NAME_LEN,
                field,
                || format!("must be 1 to {MAX_NAME_LEN} characters"),
            );
        }
        if let Err(invalid) = self.settings.validate() {
            for problem in invalid.0 {
                p.add(format!("settings.{}", problem.field), problem.message);
            }
        }
        p.finish()
    }
}

/// The subject of `agent`'s events.
pub fn subject(tenant: &TenantId, agent: AgentId) -> EventSubject {
    EventSubject {
        tenant: tenant.clone(),
        aggregate: AggregateId::Agent(agent),
    }
}

/// The settings after merging `patch` (a JSON object of camelCase settings fields; `null`
/// clears an optional one; `perKind` merges per kind, `ioClass` is replaced whole) into
/// `current`, checked. Every problem is reported.
pub fn patched(current: &AgentSettings, patch: &Value) -> Result<AgentSettings, Invalid> {
    let invalid = |field: &str, message: &str| {
        Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    };
    let Value::Object(fields) = patch else {
        return Err(invalid("", "send a JSON object of settings to change"));
    };
    let mut merged = serde_json::to_value(current)
        .map_err(|e| invalid("", &format!("cannot read the current settings: {e}")))?;
    let Value::Object(target) = &mut merged else {
        return Err(invalid("", "the current settings are not an object"));
    };
    let mut p = Problems::default();
    for (key, value) in fields {
        match (target.get_mut(key), value) {
            // Per-kind limits merge: `{"perKind": {"prune": 1}}` keeps the other kinds'.
            (Some(Value::Object(current)), Value::Object(changes)) if key == "perKind" => {
                for (kind, limit) in changes {
                    current.insert(kind.clone(), limit.clone());
                }
            }
            (Some(slot), _) => *slot = value.clone(),
            (None, _) => p.add(key.clone(), "not a setting of an agent"),
        }
    }
    p.finish()?;
    let settings: AgentSettings = serde_path_to_error::deserialize(merged).map_err(|e| {
        let field = e.path().to_string();
        invalid(&field, &e.into_inner().to_string())
    })?;
    settings.validate()?;
    Ok(settings)
}

/// Registers `machine` of `tenant` as an agent (id derived as the registrar does). A
/// machine already registered is left as it is.
pub async fn preregister(
    store: &EventStore,
    tenant: &TenantId,
    request: Preregistration,
    now: DateTime<Utc>,
) -> Result<(AgentId, Written), CommandError> {
    request.validate().map_err(CommandError::Invalid)?;
    let agent = AgentId::for_machine(tenant, &request.machine);
    let written = execute(store, &subject(tenant, agent), None, now, |history| {
        let state = AgentState::fold(history);
        if state.decommissioned {
            return Err(CommandError::Conflict(format!(
                "agent {agent} of machine {:?} is decommissioned",
                request.machine
            )));
        }
        if state.registered {
            return Ok(Vec::new());
        }
        let event = AgentEvent::Registered {
            name: request.name.clone(),
            hostname: request.hostname.clone(),
            settings: request.settings.clone(),
        };
        Ok(vec![Event::Agent { agent, event }])
    })
    .await?;
    Ok((agent, written))
}

/// Merges `patch` into `agent`'s settings.
pub async fn change_settings(
    store: &EventStore,
    tenant: &TenantId,
    agent: AgentId,
    patch: &Value,
    now: DateTime<Utc>,
) -> Result<Written, CommandError> {
    execute(store, &subject(tenant, agent), None, now, |history| {
        let state = AgentState::fold(history);
        if let Some(refusal) = state.unusable(agent) {
            return Err(refusal);
        }
        let settings = patched(&state.settings, patch).map_err(CommandError::Invalid)?;
        if settings == state.settings {
            return Ok(Vec::new());
        }
        let event = AgentEvent::SettingsChanged { settings };
        Ok(vec![Event::Agent { agent, event }])
    })
    .await
}

/// Retires `agent`: it gets no more work. Decommissioning twice changes nothing.
pub async fn decommission(
    store: &EventStore,
    tenant: &TenantId,
    agent: AgentId,
    now: DateTime<Utc>,
) -> Result<Written, CommandError> {
    execute(store, &subject(tenant, agent), None, now, |history| {
        let state = AgentState::fold(history);
        if !state.registered {
            return Err(CommandError::NotFound(format!("no agent {agent}")));
        }
        Ok(if state.decommissioned {
            Vec::new()
        } else {
            vec![Event::Agent {
                agent,
                event: AgentEvent::Decommissioned,
            }]
        })
    })
    .await
}

/// Whether `agent` of `tenant` may be given work: the inner `Err` is the refusal (not
/// found or conflict, see [`AgentState::unusable`]); the outer one a log that cannot be read.
pub async fn check_usable(
    store: &EventStore,
    tenant: &TenantId,
    agent: AgentId,
) -> Result<Result<(), CommandError>, CommandError> {
    let history = store.history(&subject(tenant, agent)).await?;
    Ok(match AgentState::fold(&history.events).unusable(agent) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_changes_only_the_fields_it_names() {
        let current = AgentSettings::default();
        let settings = patched(
            &current,
            &json!({"maxConcurrent": 4, "perKind": {"backup": 1}}),
        )
        .expect("valid");
        assert_eq!(settings.max_concurrent, 4);
        assert_eq!(
            settings
                .per_kind
                .get(fleet_events::policy::TaskKind::Backup),
            Some(1)
        );
        assert_eq!(settings.nice, current.nice);
        let merged = patched(&settings, &json!({"perKind": {"prune": 1}})).expect("valid");
        assert_eq!(
            merged.per_kind.get(fleet_events::policy::TaskKind::Backup),
            Some(1)
        );
        assert_eq!(
            merged.per_kind.get(fleet_events::policy::TaskKind::Prune),
            Some(1)
        );
        let cleared = patched(
            &AgentSettings {
                upload_kib_s: Some(100),
                ..AgentSettings::default()
            },
            &json!({"uploadKibS": null}),
        )
        .expect("valid");
        assert_eq!(cleared.upload_kib_s, None);
    }

    #[test]
    fn a_bad_patch_names_its_fields() {
        let current = AgentSettings::default();
        let unknown = patched(&current, &json!({"maxConcurent": 4, "speed": 1})).unwrap_err();
        assert!(unknown.mentions("maxConcurent") && unknown.mentions("speed"));
        let range = patched(&current, &json!({"maxConcurrent": 0})).unwrap_err();
        assert!(range.mentions("maxConcurrent"));
        let typed = patched(&current, &json!({"nice": "low"})).unwrap_err();
        assert!(typed.mentions("nice"), "{typed}");
        assert!(patched(&current, &json!([1])).is_err());
    }

    #[test]
    fn preregistration_checks_every_field() {
        let bad = Preregistration {
            machine: "a b".into(),
            name: String::new(),
            hostname: "db-1".into(),
            settings: AgentSettings {
                max_concurrent: 0,
                ..AgentSettings::default()
            },
        };
        let invalid = bad.validate().unwrap_err();
        for field in ["machineId", "name", "settings.maxConcurrent"] {
            assert!(invalid.mentions(field), "{field}: {invalid}");
        }
    }
}
