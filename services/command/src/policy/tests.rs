//! Policy command decisions without a server: creation conflicts, declarative apply,
//! idempotent pause/assign, the immutable name, run-now targets.

use fleet_events::samples;

use super::*;

fn spec(name: &str) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        ..samples::policy_spec()
    }
}

fn declared(name: &str, agents: Option<Vec<AgentId>>, paused: Option<bool>) -> Declared {
    Declared {
        spec: spec(name),
        agents,
        paused,
    }
}

fn state_after(events: &[PolicyEvent]) -> PolicyState {
    let mut state = PolicyState::default();
    for event in events {
        state.apply(event);
    }
    state
}

fn created(name: &str) -> PolicyEvent {
    PolicyEvent::Created {
        spec: Box::new(spec(name)),
    }
}

#[test]
fn create_makes_a_policy_with_its_agents_and_pause_and_refuses_a_live_name() {
    let policy = PolicyId::generate();
    let agent = AgentId::generate();
    let command = PolicyCommand::Create(declared("home", Some(vec![agent]), Some(true)));
    let events = decide(policy, &PolicyState::default(), &command).unwrap();
    assert_eq!(
        events,
        [
            created("home"),
            PolicyEvent::AssignedToAgent { agent },
            PolicyEvent::Paused
        ]
    );
    let live = state_after(&events);
    assert!(matches!(
        decide(policy, &live, &command),
        Err(CommandError::Conflict(_))
    ));
    let deleted = state_after(&[created("home"), PolicyEvent::Deleted]);
    assert_eq!(decide(policy, &deleted, &command).unwrap().len(), 3);
}

#[test]
fn apply_converges_and_is_idempotent() {
    let policy = PolicyId::generate();
    let (a, b) = (AgentId::generate(), AgentId::generate());
    let state = state_after(&[created("home"), PolicyEvent::AssignedToAgent { agent: a }]);
    let mut changed = spec("home");
    changed.priority = 9;
    let command = PolicyCommand::Apply(Declared {
        spec: changed.clone(),
        agents: Some(vec![b]),
        paused: Some(true),
    });
    let events = decide(policy, &state, &command).unwrap();
    assert_eq!(
        events,
        [
            PolicyEvent::Updated {
                spec: Box::new(changed)
            },
            PolicyEvent::AssignedToAgent { agent: b },
            PolicyEvent::UnassignedFromAgent { agent: a },
            PolicyEvent::Paused,
        ]
    );
    let mut after = state.clone();
    for event in &events {
        after.apply(event);
    }
    assert!(decide(policy, &after, &command).unwrap().is_empty());
    // Leaving agents and pause out leaves them alone.
    let spec_only = PolicyCommand::Apply(declared("home", None, None));
    assert_eq!(decide(policy, &state, &spec_only).unwrap(), []);
    // Apply creates what does not exist.
    let fresh = decide(policy, &PolicyState::default(), &spec_only).unwrap();
    assert_eq!(fresh, [created("home")]);
}

#[test]
fn changes_to_a_missing_or_deleted_policy_are_not_found() {
    let policy = PolicyId::generate();
    let deleted = state_after(&[created("home"), PolicyEvent::Deleted]);
    for state in [PolicyState::default(), deleted] {
        for command in [
            PolicyCommand::Pause,
            PolicyCommand::Resume,
            PolicyCommand::Delete,
            PolicyCommand::Assign(AgentId::generate()),
            PolicyCommand::Update(Box::new(spec("home"))),
        ] {
            assert!(
                matches!(
                    decide(policy, &state, &command),
                    Err(CommandError::NotFound(_))
                ),
                "{command:?}"
            );
        }
    }
}

#[test]
fn pause_resume_assign_unassign_change_only_what_differs() {
    let policy = PolicyId::generate();
    let agent = AgentId::generate();
    let state = state_after(&[created("home")]);
    assert_eq!(
        decide(policy, &state, &PolicyCommand::Pause).unwrap(),
        [PolicyEvent::Paused]
    );
    assert_eq!(decide(policy, &state, &PolicyCommand::Resume).unwrap(), []);
    let paused = state_after(&[created("home"), PolicyEvent::Paused]);
    assert_eq!(decide(policy, &paused, &PolicyCommand::Pause).unwrap(), []);
    assert_eq!(
        decide(policy, &state, &PolicyCommand::Unassign(agent)).unwrap(),
        []
    );
    let assigned = state_after(&[created("home"), PolicyEvent::AssignedToAgent { agent }]);
    assert_eq!(
        decide(policy, &assigned, &PolicyCommand::Assign(agent)).unwrap(),
        []
    );
    assert_eq!(
        decide(policy, &assigned, &PolicyCommand::Unassign(agent)).unwrap(),
        [PolicyEvent::UnassignedFromAgent { agent }]
    );
}

#[test]
fn an_update_keeps_the_name() {
    let policy = PolicyId::generate();
    let state = state_after(&[created("home")]);
    let renamed = PolicyCommand::Update(Box::new(spec("office")));
    let Err(CommandError::Invalid(invalid)) = decide(policy, &state, &renamed) else {
        panic!("a rename must be refused");
    };
    assert!(invalid.mentions("name"));
    let same = PolicyCommand::Update(Box::new(spec("home")));
    assert_eq!(decide(policy, &state, &same).unwrap(), []);
}

#[test]
fn run_now_schedules_one_task_per_assigned_agent_or_the_one_named() {
    let policy = PolicyId::generate();
    let (a, b) = (AgentId::generate(), AgentId::generate());
    let now = samples::at(100);
    let unassigned = state_after(&[created("home")]);
    assert!(matches!(
        run_now_tasks(policy, &unassigned, None, now),
        Err(CommandError::Conflict(_))
    ));
    let state = state_after(&[
        created("home"),
        PolicyEvent::AssignedToAgent { agent: a },
        PolicyEvent::AssignedToAgent { agent: b },
        PolicyEvent::Paused,
    ]);
    let all = run_now_tasks(policy, &state, None, now).unwrap();
    assert_eq!(all.len(), 2, "paused or not, an operator asked");
    for (task, event) in &all {
        let TaskEvent::Scheduled {
            agent,
            fire_at,
            run_at,
            ..
        } = event
        else {
            panic!("a scheduled task");
        };
        assert_eq!((*fire_at, *run_at), (now, now));
        assert_eq!(*task, TaskId::for_fire(policy, *agent, now));
    }
    assert_eq!(
        run_now_tasks(policy, &state, Some(b), now).unwrap().len(),
        1
    );
    assert!(matches!(
        run_now_tasks(policy, &state, Some(AgentId::generate()), now),
        Err(CommandError::Conflict(_))
    ));
    assert!(matches!(
        run_now_tasks(policy, &PolicyState::default(), None, now),
        Err(CommandError::NotFound(_))
    ));
}
