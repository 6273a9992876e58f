//! Notification rule commands: define (create, or replace the rule of that name), delete,
//! and ask for a test notification, decided from the rule's history.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use fleet_events::event::{Event, RuleEvent};
use fleet_events::ids::{RuleId, TenantId};
use fleet_events::notify::RuleSpec;
use fleet_events::store::{EventStore, Stored};
use fleet_events::subject::{AggregateId, EventSubject};

use super::{CommandError, Written, execute};

/// A rule as its history says: its spec while it is defined, none before its first
/// definition and after its deletion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleState {
    pub spec: Option<RuleSpec>,
}

impl RuleState {
    /// Folds the rule's events (those of other aggregates are ignored).
    pub fn fold(history: &[Stored]) -> RuleState {
        let mut state = RuleState::default();
        for stored in history {
            if let Event::Rule { event, .. } = &stored.envelope.event {
                state.apply(event);
            }
        }
        state
    }

    fn apply(&mut self, event: &RuleEvent) {
        match event {
            RuleEvent::Defined { spec } => self.spec = Some((**spec).clone()),
            RuleEvent::Deleted => self.spec = None,
            RuleEvent::TestRequested { .. } => {}
        }
    }
}

/// One rule command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleCommand {
    /// Create the rule, or replace the one of that name; the same spec changes nothing.
    Define(Box<RuleSpec>),
    Delete,
    /// Ask the notifier to send a test notification through the rule; `by` names who asked.
    Test {
        by: String,
    },
}

/// The events `command` needs on `rule` in `state` (none when it is already so).
pub fn decide(
    rule: RuleId,
    state: &RuleState,
    command: &RuleCommand,
) -> Result<Vec<RuleEvent>, CommandError> {
    let missing = || CommandError::NotFound(format!("no rule {rule}"));
    match command {
        RuleCommand::Define(spec) => {
            spec.validate().map_err(CommandError::Invalid)?;
            Ok(match &state.spec {
                Some(current) if *current == **spec => Vec::new(),
                _ => vec![RuleEvent::Defined { spec: spec.clone() }],
            })
        }
        RuleCommand::Delete => {
            state.spec.as_ref().ok_or_else(missing)?;
            Ok(vec![RuleEvent::Deleted])
        }
        RuleCommand::Test { by } => {
            state.spec.as_ref().ok_or_else(missing)?;
            Ok(vec![RuleEvent::TestRequested { by: by.clone() }])
        }
    }
}

/// The subject of `rule`'s events.
pub fn subject(tenant: &TenantId, rule: RuleId) -> EventSubject {
    EventSubject {
        tenant: tenant.clone(),
        aggregate: AggregateId::Rule(rule),
    }
}

/// What running a rule command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWritten {
    pub written: Written,
    /// The rule was not defined before the command (a definition created it).
    pub was_new: bool,
}

/// Runs `command` on `rule` of `tenant`, decided on its history and appended with that
/// history's last sequence.
pub async fn run(
    store: &EventStore,
    tenant: &TenantId,
    rule: RuleId,
    command: RuleCommand,
    now: DateTime<Utc>,
) -> Result<RuleWritten, CommandError> {
    let subject = subject(tenant, rule);
    // Set by each decision; the last one is the one written.
    let was_new = AtomicBool::new(false);
    let written = execute(store, &subject, None, now, |history| {
        let state = RuleState::fold(history);
        was_new.store(state.spec.is_none(), Ordering::Relaxed);
        let events = decide(rule, &state, &command)?;
        Ok(events
            .into_iter()
            .map(|event| Event::Rule { rule, event })
            .collect())
    })
    .await?;
    Ok(RuleWritten {
        written,
        was_new: was_new.into_inner(),
    })
}

#[cfg(test)]
mod tests;
