//! What an agent holds and what waits for a retry: counts over a task's attempts,
//! saturation and its reason, backoff, and redelivery.

use super::*;

#[test]
fn a_task_is_held_from_dispatch_until_its_attempt_ends() {
    let mut fleet = Fleet::new();
    let acme = tenant("acme");
    fleet.register(&acme, AGENT, "db-1", samples::agent_settings());
    let task = TaskId::generate();
    fleet.task(&acme, task, scheduled(AGENT, TaskKind::Backup));
    assert_eq!(fleet.view(AGENT).running, counts(0, 0, 0));
    assert_eq!(
        fleet.view(AGENT).queued,
        counts(1, 0, 0),
        "queued until dispatched"
    );
    let dispatched = TaskEvent::Dispatched {
        agent: AGENT,
        attempt: 1,
    };
    for event in [
        dispatched,
        TaskEvent::Acknowledged { attempt: 1 },
        TaskEvent::Started { attempt: 1 },
    ] {
        assert_eq!(fleet.task(&acme, task, event), Outcome::Applied);
        assert_eq!(fleet.view(AGENT).running, counts(1, 0, 0));
        assert_eq!(fleet.view(AGENT).queued, counts(0, 0, 0));
    }
    let Event::Task {
        event: succeeded, ..
    } = samples::event(EventType::TaskSucceeded)
    else {
        unreachable!()
    };
    assert_eq!(fleet.task(&acme, task, succeeded), Outcome::Applied);
    assert_eq!(fleet.view(AGENT).running, counts(0, 0, 0));

    let check = fleet.dispatch(&acme, AGENT, TaskKind::Check);
    let prune = fleet.dispatch(&acme, AGENT, TaskKind::Prune);
    assert_eq!(fleet.view(AGENT).running, counts(0, 1, 1));
    let lost = TaskEvent::Lost {
        attempt: 1,
        reason: LostReason::LeaseExpired,
    };
    fleet.task(&acme, check, lost);
    let cancelled = TaskEvent::Cancelled {
        reason: "operator".into(),
    };
    fleet.task(&acme, prune, cancelled);
    let view = fleet.view(AGENT);
    assert_eq!(view.running, counts(0, 0, 0));
    assert_eq!(view.pending_retries(), 0);
}

#[test]
fn saturation_names_the_limit_reached() {
    let mut fleet = Fleet::new();
    let acme = tenant("acme");
    let per_kind = KindLimits {
        backup: Some(2),
        check: None,
        prune: Some(1),
    };
    fleet.register(&acme, AGENT, "db-1", limits(4, per_kind));
    assert_eq!(fleet.view(AGENT).saturation(), None);

    let prune = fleet.dispatch(&acme, AGENT, TaskKind::Prune);
    let view = fleet.view(AGENT);
    let why = view.saturation().unwrap();
    assert_eq!(
        why,
        Saturation::KindLimit {
            kind: TaskKind::Prune,
            used: 1,
            limit: 1
        }
    );
    assert!(view.is_saturated());
    assert_eq!(
        (why.code(), why.to_string().as_str()),
        ("kind_limit", "1 of 1 prune slots in use")
    );

    fleet.task(&acme, prune, TaskEvent::Started { attempt: 1 });
    fleet.task(&acme, prune, TaskEvent::Cancelled { reason: "x".into() });
    fleet.dispatch(&acme, AGENT, TaskKind::Check);
    assert!(
        !fleet.view(AGENT).is_saturated(),
        "check has no limit of its own"
    );
    fleet.dispatch(&acme, AGENT, TaskKind::Backup);
    fleet.dispatch(&acme, AGENT, TaskKind::Backup);
    assert_eq!(
        fleet.view(AGENT).saturation(),
        Some(Saturation::KindLimit {
            kind: TaskKind::Backup,
            used: 2,
            limit: 2
        })
    );
    fleet.dispatch(&acme, AGENT, TaskKind::Check);
    let why = fleet.view(AGENT).saturation().unwrap();
    assert_eq!(why, Saturation::TotalLimit { used: 4, limit: 4 });
    assert_eq!(
        (why.code(), why.to_string().as_str()),
        ("total_limit", "4 of 4 task slots in use")
    );

    let smaller = AgentEvent::SettingsChanged {
        settings: limits(6, KindLimits::default()),
    };
    fleet.agent(&acme, AGENT, smaller);
    assert_eq!(
        fleet.view(AGENT).saturation(),
        None,
        "settings apply at once"
    );
}

#[test]
fn backoff_keeps_pending_retries_and_the_earliest_exact() {
    let mut fleet = Fleet::new();
    let acme = tenant("acme");
    fleet.register(&acme, AGENT, "db-1", limits(4, KindLimits::default()));
    let late = fleet.dispatch(&acme, AGENT, TaskKind::Backup);
    let early = fleet.dispatch(&acme, AGENT, TaskKind::Check);
    fleet.back_off(&acme, late, 1, 900);
    fleet.back_off(&acme, early, 1, 600);
    let view = fleet.view(AGENT);
    assert_eq!(view.running, counts(0, 0, 0));
    assert_eq!(view.pending_retries(), 2);
    assert_eq!(view.earliest_retry(), Some(samples::at(600)));
    let order: Vec<_> = view.backoff.iter().map(|b| b.task).collect();
    assert_eq!(order, [early, late]);

    fleet.task(&acme, early, TaskEvent::RetryDue);
    let view = fleet.view(AGENT);
    assert_eq!(view.pending_retries(), 1);
    assert_eq!(view.earliest_retry(), Some(samples::at(900)));
    assert_eq!(
        view.queued,
        counts(0, 1, 0),
        "a due retry waits for dispatch"
    );

    let again = TaskEvent::Dispatched {
        agent: AGENT,
        attempt: 2,
    };
    fleet.task(&acme, early, again);
    let view = fleet.view(AGENT);
    assert_eq!(view.running, counts(0, 1, 0));
    assert_eq!(view.queued, counts(0, 0, 0));
    assert_eq!(view.pending_retries(), 1);

    fleet.task(&acme, late, TaskEvent::Cancelled { reason: "x".into() });
    let view = fleet.view(AGENT);
    assert_eq!((view.pending_retries(), view.earliest_retry()), (0, None));
    assert!(view.backoff.is_empty());
}

#[test]
fn a_redelivered_event_is_counted_once() {
    let mut fleet = Fleet::new();
    let acme = tenant("acme");
    fleet.register(&acme, AGENT, "db-1", AgentSettings::default());
    fleet.dispatch(&acme, AGENT, TaskKind::Backup);
    let dispatched = fleet.log.last().unwrap().clone();
    assert_eq!(
        fleet.model.apply(Ok(dispatched.clone())).unwrap(),
        Outcome::Skipped
    );
    assert_eq!(fleet.model.apply(Ok(dispatched)).unwrap(), Outcome::Skipped);
    assert_eq!(fleet.view(AGENT).running, counts(1, 0, 0));
}
