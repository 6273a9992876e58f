//! The policy read model without a server: creation to deletion, listing, next fire
//! times, and what it rejects.

use chrono::{TimeZone, Utc};
use fleet_events::event::{Event, EventType, PolicyEvent};
use fleet_events::ids::{AgentId, PolicyId};
use fleet_events::policy::PolicySpec;
use fleet_events::samples::{self, AGENT};
use fleet_events::schedule::Schedule;

use super::*;
use crate::runtime::Outcome;
use crate::testing::{Log, assert_rebuild_equals_incremental, open, tenant};

fn on(policy: PolicyId, event: PolicyEvent) -> Event {
    Event::Policy { policy, event }
}

fn spec(name: &str) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        ..samples::policy_spec()
    }
}

fn created(name: &str) -> PolicyEvent {
    PolicyEvent::Created {
        spec: Box::new(spec(name)),
    }
}

fn view_with(schedule: Schedule) -> PolicyView {
    let spec = PolicySpec {
        schedule,
        ..samples::policy_spec()
    };
    PolicyView::created(
        tenant("acme"),
        PolicyId::generate(),
        spec,
        samples::at(0),
        1,
    )
}

#[test]
fn a_policy_is_folded_from_its_events() {
    let (_dir, model) = open(Policies);
    let acme = tenant("acme");
    let (policy, other) = (PolicyId::generate(), AgentId::generate());
    let (low, high) = if AGENT < other {
        (AGENT, other)
    } else {
        (other, AGENT)
    };
    let mut log = Log::default();
    log.push(&acme, 0, on(policy, created("home")));
    log.push(
        &acme,
        1,
        on(policy, PolicyEvent::AssignedToAgent { agent: high }),
    );
    log.push(
        &acme,
        2,
        on(policy, PolicyEvent::AssignedToAgent { agent: low }),
    );
    log.push(
        &acme,
        3,
        on(policy, PolicyEvent::AssignedToAgent { agent: high }),
    );
    log.push(&acme, 4, on(policy, PolicyEvent::Paused));
    let updated = PolicyEvent::Updated {
        spec: Box::new(spec("home, renamed")),
    };
    log.push(&acme, 5, on(policy, updated));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));
    let view = model.policy(policy).unwrap().unwrap();
    assert_eq!((view.tenant.clone(), view.id), (acme.clone(), policy));
    assert_eq!(view.spec, spec("home, renamed"));
    assert!(view.paused && !view.deleted);
    assert_eq!(view.agents, [low, high], "sorted, once each");
    assert_eq!(view.created_at, samples::at(0));
    assert_eq!(view.updated_at, samples::at(5));
    assert_eq!(view.revision, 6);

    log.push(&acme, 6, on(policy, PolicyEvent::Resumed));
    log.push(
        &acme,
        7,
        on(policy, PolicyEvent::UnassignedFromAgent { agent: high }),
    );
    log.apply_to(&model);
    let view = model.policy(policy).unwrap().unwrap();
    assert!(!view.paused);
    assert_eq!(view.agents, [low]);

    log.push(&acme, 8, on(policy, PolicyEvent::Deleted));
    log.apply_to(&model);
    let view = model.policy(policy).unwrap().unwrap();
    assert!(view.deleted);
    assert!(view.agents.is_empty(), "a deleted policy runs nowhere");
    assert_eq!(view.revision, 9);
    assert_eq!(view.version, log.events[8].seq, "the last event's sequence");
    assert_eq!(model.policy(PolicyId::generate()).unwrap(), None);
}

#[test]
fn a_deleted_policys_name_can_be_created_again() {
    let (_dir, model) = open(Policies);
    let acme = tenant("acme");
    let policy = PolicyId::generate();
    let mut log = Log::default();
    log.push(&acme, 0, on(policy, created("home")));
    log.push(
        &acme,
        1,
        on(policy, PolicyEvent::AssignedToAgent { agent: AGENT }),
    );
    log.push(&acme, 2, on(policy, PolicyEvent::Paused));
    log.push(&acme, 3, on(policy, PolicyEvent::Deleted));
    log.push(&acme, 4, on(policy, created("home")));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));
    let view = model.policy(policy).unwrap().unwrap();
    assert!(!view.deleted && !view.paused, "a fresh policy");
    assert!(view.agents.is_empty(), "assignments died with the deletion");
    assert_eq!(view.created_at, samples::at(4));
    assert_eq!((view.revision, view.version), (5, log.events[4].seq));
    assert_eq!(model.list(&acme, false).unwrap().len(), 1, "listed once");
}

#[test]
fn lists_are_per_tenant_by_name_and_leave_deleted_policies_out_unless_asked() {
    let (_dir, model) = open(Policies);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let ids: Vec<PolicyId> = (0..4).map(|_| PolicyId::generate()).collect();
    let mut log = Log::default();
    log.push(&acme, 0, on(ids[0], created("zeta")));
    log.push(&acme, 1, on(ids[1], created("alpha")));
    log.push(&acme, 2, on(ids[2], created("mid")));
    log.push(&globex, 3, on(ids[3], created("beta")));
    log.push(&acme, 4, on(ids[2], PolicyEvent::Deleted));
    log.apply_to(&model);
    let names = |include_deleted| -> Vec<String> {
        let list = model.list(&acme, include_deleted).unwrap();
        list.into_iter().map(|v| v.spec.name).collect()
    };
    assert_eq!(names(false), ["alpha", "zeta"]);
    assert_eq!(names(true), ["alpha", "mid", "zeta"]);
    assert_eq!(model.list(&globex, false).unwrap()[0].id, ids[3]);
    assert!(model.list(&tenant("acm"), true).unwrap().is_empty());
}

#[test]
fn next_fires_follow_an_interval_aligned_to_the_epoch() {
    let view = view_with(Schedule::Interval { every_secs: 3600 });
    let after = Utc.with_ymd_and_hms(2026, 3, 1, 10, 30, 0).unwrap();
    let hour = |h| Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap();
    assert_eq!(view.next_fires(after, 3), [hour(11), hour(12), hour(13)]);
    assert_eq!(view.next_fires(hour(11), 1), [hour(12)], "strictly after");
    assert!(view.next_fires(after, 0).is_empty());
    assert_eq!(view.next_fires(after, usize::MAX).len(), MAX_NEXT_FIRES);
}

#[test]
fn next_fires_follow_a_cron_schedule_in_its_time_zone_across_dst() {
    let view = view_with(Schedule::Cron {
        expr: "30 2 * * *".into(),
        timezone: "America/New_York".into(),
    });
    // New York moves to daylight time on 2026-03-08: 02:30 does not exist that day.
    let after = Utc.with_ymd_and_hms(2026, 3, 6, 12, 0, 0).unwrap();
    let fires = view.next_fires(after, 3);
    assert_eq!(
        fires,
        [
            Utc.with_ymd_and_hms(2026, 3, 7, 7, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 9, 6, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 10, 6, 30, 0).unwrap(),
        ]
    );
}

#[test]
fn paused_deleted_or_unusable_policies_have_no_next_fires() {
    let after = samples::at(0);
    let mut view = view_with(Schedule::Interval { every_secs: 60 });
    assert_eq!(view.next_fires(after, 2).len(), 2);
    view.paused = true;
    assert!(view.next_fires(after, 2).is_empty());
    view.paused = false;
    view.deleted = true;
    assert!(view.next_fires(after, 2).is_empty());
    let bad = view_with(Schedule::Cron {
        expr: "0 2 * * *".into(),
        timezone: "Mars/Olympus".into(),
    });
    assert!(bad.next_fires(after, 2).is_empty());
}

#[test]
fn wrong_tenants_subjects_and_lifecycles_are_rejected_other_aggregates_ignored() {
    let (_dir, model) = open(Policies);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (policy, never) = (PolicyId::generate(), PolicyId::generate());
    let mut log = Log::default();
    log.push(&acme, 0, on(policy, created("home")));
    log.push(&globex, 1, on(policy, PolicyEvent::Paused));
    let mut elsewhere = log.push(&acme, 2, on(policy, PolicyEvent::Paused));
    elsewhere.subject = format!("fleet.evt.acme.policy.{never}");
    log.events[2] = elsewhere;
    log.push(&acme, 3, on(never, PolicyEvent::Paused));
    log.push(&acme, 4, on(policy, created("again")));
    log.push(&acme, 5, samples::event(EventType::TaskStarted));
    log.push(&acme, 6, on(policy, PolicyEvent::Deleted));
    log.push(&acme, 7, on(policy, PolicyEvent::Resumed));
    assert_eq!(
        log.apply_to(&model),
        [
            Outcome::Applied,
            Outcome::Rejected("tenant_mismatch"),
            Outcome::Rejected("subject_mismatch"),
            Outcome::Rejected("unknown_policy"),
            Outcome::Rejected("already_created"),
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Rejected("policy_deleted"),
        ]
    );
    let view = model.policy(policy).unwrap().unwrap();
    assert_eq!((view.spec.name.as_str(), view.paused), ("home", false));
    assert_eq!(view.revision, 2);
    assert_eq!(model.policy(never).unwrap(), None);
    assert!(model.list(&acme, true).unwrap().len() == 1);
}

#[test]
fn a_rebuild_stores_what_the_incremental_run_stored() {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (a, b) = (PolicyId::generate(), PolicyId::generate());
    let mut log = Log::default();
    log.push(&acme, 0, on(a, created("a")));
    log.push(&globex, 1, on(b, created("b")));
    log.push(
        &acme,
        2,
        on(a, PolicyEvent::AssignedToAgent { agent: AGENT }),
    );
    log.push(&globex, 3, on(a, PolicyEvent::Paused));
    log.push(&globex, 4, on(b, PolicyEvent::Paused));
    log.push(&acme, 5, on(a, PolicyEvent::Deleted));
    log.push(
        &globex,
        6,
        on(b, PolicyEvent::AssignedToAgent { agent: AGENT }),
    );
    let (_dir, model) = assert_rebuild_equals_incremental(|| Policies, &log.events);
    assert_eq!(model.status().unwrap().rejected, 1);
    assert_eq!(model.list(&globex, false).unwrap()[0].agents, [AGENT]);
}
