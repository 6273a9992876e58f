//! Rule command decisions without a server, as given (history) / when (command) / then
//! (events or error): define creates or replaces and repeats nothing, an invalid spec is
//! refused with every problem, delete and test need a live rule.

use fleet_events::notify::{DeliveryRetry, Target, TargetKind, Trigger};

use super::*;

fn spec(name: &str) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        on: vec![Trigger::TaskExhausted],
        policies: vec![],
        agents: vec![],
        target: Target {
            kind: TargetKind::Webhook,
            url: Some("https://hooks.example/fleet".into()),
            url_secret: None,
            hmac_secret: None,
        },
        retry: DeliveryRetry::default(),
    }
}

fn defined(spec: RuleSpec) -> RuleEvent {
    RuleEvent::Defined {
        spec: Box::new(spec),
    }
}

/// The rule's history, folded.
fn given(history: &[RuleEvent]) -> RuleState {
    let mut state = RuleState::default();
    for event in history {
        state.apply(event);
    }
    state
}

/// What `command` decides on `state`.
fn when(state: &RuleState, command: RuleCommand) -> Result<Vec<RuleEvent>, CommandError> {
    decide(RuleId::generate(), state, &command)
}

fn define(spec: RuleSpec) -> RuleCommand {
    RuleCommand::Define(Box::new(spec))
}

#[test]
fn define_creates_a_rule_and_the_same_spec_again_changes_nothing() {
    let then = when(&given(&[]), define(spec("ops"))).unwrap();
    assert_eq!(then, [defined(spec("ops"))]);
    let then = when(&given(&[defined(spec("ops"))]), define(spec("ops"))).unwrap();
    assert_eq!(then, [], "unchanged");
}

#[test]
fn define_replaces_a_changed_rule_and_recreates_a_deleted_one() {
    let mut changed = spec("ops");
    changed.on.push(Trigger::AgentOffline);
    let history = [defined(spec("ops"))];
    let then = when(&given(&history), define(changed.clone())).unwrap();
    assert_eq!(then, [defined(changed)]);
    let deleted = [defined(spec("ops")), RuleEvent::Deleted];
    let then = when(&given(&deleted), define(spec("ops"))).unwrap();
    assert_eq!(then, [defined(spec("ops"))]);
}

#[test]
fn an_invalid_spec_is_refused_with_every_problem() {
    let mut bad = spec("ops");
    bad.target.url = Some("https://user:secret@hooks.example/x".into());
    bad.retry.max_attempts = 0;
    bad.on = vec![Trigger::TaskFailed, Trigger::TaskFailed];
    let Err(CommandError::Invalid(invalid)) = when(&given(&[]), define(bad)) else {
        panic!("an invalid spec must be refused");
    };
    for field in ["target.url", "retry.maxAttempts", "on[1]"] {
        assert!(invalid.mentions(field), "{field}: {invalid}");
    }
    let url = invalid.0.iter().find(|p| p.field == "target.url").unwrap();
    assert!(url.message.contains("urlSecret"), "{url:?}");
}

#[test]
fn delete_and_test_need_a_live_rule() {
    let live = given(&[defined(spec("ops"))]);
    assert_eq!(
        when(&live, RuleCommand::Delete).unwrap(),
        [RuleEvent::Deleted]
    );
    let test = RuleCommand::Test {
        by: "ops (token x)".into(),
    };
    assert_eq!(
        when(&live, test.clone()).unwrap(),
        [RuleEvent::TestRequested {
            by: "ops (token x)".into()
        }]
    );
    let tested = given(&[
        defined(spec("ops")),
        RuleEvent::TestRequested { by: "a".into() },
    ]);
    assert_eq!(
        when(&tested, test.clone()).unwrap().len(),
        1,
        "each asks again"
    );
    let deleted = given(&[defined(spec("ops")), RuleEvent::Deleted]);
    for state in [RuleState::default(), deleted] {
        for command in [RuleCommand::Delete, test.clone()] {
            assert!(
                matches!(
                    when(&state, command.clone()),
                    Err(CommandError::NotFound(_))
                ),
                "{command:?} on {state:?}"
            );
        }
    }
}
