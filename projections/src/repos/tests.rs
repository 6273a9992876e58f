//! The repository read model without a server: opening and closing circuits, tenants
//! kept apart, and what it rejects.

use fleet_events::event::{Event, EventType, RepoEvent};
use fleet_events::ids::RepoId;
use fleet_events::samples;

use super::*;
use crate::runtime::Outcome;
use crate::testing::{Log, assert_rebuild_equals_incremental, open, tenant};

fn on(repo: RepoId, event: RepoEvent) -> Event {
    Event::Repo { repo, event }
}

fn opened(until: i64, failures: u32) -> RepoEvent {
    RepoEvent::CircuitOpened {
        until: samples::at(until),
        failures,
    }
}

#[test]
fn circuits_open_reopen_and_close() {
    let (_dir, model) = open(Repos);
    let acme = tenant("acme");
    let repo = RepoId::for_url("/srv/restic");
    let mut log = Log::default();
    log.push(&acme, 0, on(repo, opened(60, 5)));
    log.apply_to(&model);
    let view = model.repo(&acme, repo).unwrap().unwrap();
    assert_eq!((view.tenant.clone(), view.id), (acme.clone(), repo));
    assert_eq!(
        view.circuit,
        Circuit::Open {
            until: samples::at(60),
            failures: 5
        }
    );
    assert_eq!(view.changed_at, samples::at(0));
    assert!(view.holds_tasks_at(samples::at(59)));
    assert!(!view.holds_tasks_at(samples::at(60)), "a probe may run");

    log.push(&acme, 70, on(repo, opened(130, 6)));
    log.apply_to(&model);
    let view = model.repo(&acme, repo).unwrap().unwrap();
    assert_eq!(
        view.circuit,
        Circuit::Open {
            until: samples::at(130),
            failures: 6
        }
    );

    log.push(&acme, 140, on(repo, RepoEvent::CircuitClosed));
    log.apply_to(&model);
    let view = model.repo(&acme, repo).unwrap().unwrap();
    assert_eq!(view.circuit, Circuit::Closed);
    assert_eq!(view.changed_at, samples::at(140));
    assert!(!view.holds_tasks_at(samples::at(0)));
    assert_eq!(model.repo(&acme, RepoId::for_url("/other")).unwrap(), None);
}

#[test]
fn tenants_naming_the_same_repository_have_their_own_circuits() {
    let (_dir, model) = open(Repos);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (shared, own) = (RepoId::for_url("/srv/restic"), RepoId::for_url("/srv/b"));
    let mut log = Log::default();
    log.push(&acme, 0, on(shared, opened(60, 5)));
    log.push(&globex, 1, on(shared, RepoEvent::CircuitClosed));
    log.push(&acme, 2, on(own, RepoEvent::CircuitClosed));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));
    let acme_circuit = model.repo(&acme, shared).unwrap().unwrap().circuit;
    assert!(matches!(acme_circuit, Circuit::Open { failures: 5, .. }));
    let globex_repos = model.list(&globex).unwrap();
    assert_eq!(globex_repos.len(), 1);
    assert_eq!(globex_repos[0].circuit, Circuit::Closed);
    assert_eq!(globex_repos[0].tenant, globex);
    let mut acme_ids: Vec<RepoId> = model.list(&acme).unwrap().iter().map(|r| r.id).collect();
    acme_ids.sort();
    let mut expected = vec![shared, own];
    expected.sort();
    assert_eq!(acme_ids, expected);
    assert!(model.list(&tenant("acm")).unwrap().is_empty());
}

#[test]
fn events_on_the_wrong_subject_are_rejected_other_aggregates_ignored() {
    let (_dir, model) = open(Repos);
    let acme = tenant("acme");
    let repo = RepoId::for_url("/srv/restic");
    let mut log = Log::default();
    let mut elsewhere = log.push(&acme, 0, on(repo, opened(60, 5)));
    elsewhere.subject = format!("fleet.evt.acme.repo.{}", RepoId::for_url("/other"));
    log.events[0] = elsewhere;
    let mut other_tenant = log.push(&acme, 1, on(repo, opened(60, 5)));
    other_tenant.subject = format!("fleet.evt.globex.repo.{repo}");
    log.events[1] = other_tenant;
    log.push(&acme, 2, samples::event(EventType::AgentCameOnline));
    assert_eq!(
        log.apply_to(&model),
        [
            Outcome::Rejected("subject_mismatch"),
            Outcome::Rejected("subject_mismatch"),
            Outcome::Applied,
        ]
    );
    assert!(model.list(&acme).unwrap().is_empty());
    assert!(model.list(&tenant("globex")).unwrap().is_empty());
}

#[test]
fn a_rebuild_stores_what_the_incremental_run_stored() {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (a, b) = (RepoId::for_url("/a"), RepoId::for_url("/b"));
    let mut log = Log::default();
    log.push(&acme, 0, on(a, opened(60, 5)));
    log.push(&globex, 1, on(a, opened(61, 5)));
    log.push(&acme, 2, on(b, opened(62, 7)));
    log.push(&acme, 70, on(a, RepoEvent::CircuitClosed));
    let mut wrong = log.push(&acme, 71, on(b, RepoEvent::CircuitClosed));
    wrong.subject = format!("fleet.evt.acme.repo.{a}");
    log.events[4] = wrong;
    log.push(&globex, 80, on(a, opened(140, 6)));
    let (_dir, model) = assert_rebuild_equals_incremental(|| Repos, &log.events);
    assert_eq!(model.status().unwrap().rejected, 1);
    assert_eq!(model.list(&acme).unwrap().len(), 2);
}
