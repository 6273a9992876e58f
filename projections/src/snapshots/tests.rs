//! The snapshot read model without a server: the inventory each change leaves, pages
//! newest first with cursors, filters, the fleet's snapshots told from external ones,
//! repositories known from policies, tenants kept apart, and rebuild equals incremental.

use fleet_events::event::{Event, EventType, PolicyEvent, RepoEvent, SnapshotInfo, repo_of};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId};
use fleet_events::policy::PolicySpec;
use fleet_events::samples;

use super::*;
use crate::runtime::Outcome;
use crate::testing::{Log, assert_rebuild_equals_incremental, open, tenant};

/// Snapshot `n` of `host`, at minute `n`, tagged with `policy` if given.
fn snapshot(n: u32, host: &str, policy: Option<PolicyId>) -> SnapshotInfo {
    let mut tags = vec!["nightly".to_owned()];
    if let Some(policy) = policy {
        tags.push(format!("policy:{policy}"));
        tags.push(format!("task:{}", samples::TASK));
    }
    SnapshotInfo {
        id: format!("{n:064x}"),
        time: samples::at(i64::from(n) * 60),
        host: host.into(),
        paths: vec!["/srv/data".into()],
        more_paths: 0,
        tags,
        size_bytes: Some(1000 + u64::from(n)),
        files: Some(10),
    }
}

fn changed(
    repo: RepoId,
    task: TaskId,
    agent: AgentId,
    listed_at: i64,
    added: Vec<SnapshotInfo>,
    removed: Vec<SnapshotInfo>,
) -> Event {
    Event::Repo {
        repo,
        event: RepoEvent::SnapshotsChanged {
            task,
            agent,
            listed_at: samples::at(listed_at),
            added,
            removed,
        },
    }
}

fn spec(name: &str, url: &str) -> PolicySpec {
    let mut spec = samples::policy_spec();
    spec.name = name.into();
    spec.repository.url = url.into();
    spec
}

fn policy(tenant: &TenantId, name: &str) -> PolicyId {
    PolicyId::for_name(tenant, name)
}

fn created(tenant: &TenantId, name: &str, url: &str) -> Event {
    Event::Policy {
        policy: policy(tenant, name),
        event: PolicyEvent::Created {
            spec: Box::new(spec(name, url)),
        },
    }
}

fn ids(page: &Page) -> Vec<String> {
    page.items
        .iter()
        .map(|v| v.info.id[62..].to_owned())
        .collect()
}

fn hex(ns: &[u32]) -> Vec<String> {
    ns.iter().map(|n| format!("{n:02x}")).collect()
}

#[test]
fn changes_add_and_remove_snapshots_and_keep_who_added_them() {
    let (_dir, model) = open(Snapshots);
    let acme = tenant("acme");
    let repo = RepoId::for_url("/srv/restic");
    let (t1, t2) = (TaskId::generate(), TaskId::generate());
    let (a1, a2) = (AgentId::generate(), AgentId::generate());
    let mut log = Log::default();
    let s = |n| snapshot(n, "db-1", None);
    log.push(
        &acme,
        10,
        changed(repo, t1, a1, 9, vec![s(1), s(2), s(3)], vec![]),
    );
    log.push(
        &acme,
        20,
        changed(repo, t2, a2, 19, vec![s(4), s(2)], vec![s(1), s(7)]),
    );
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));
    let page = model
        .list(
            &acme,
            &SnapshotFilter {
                repo: Some(repo),
                ..Default::default()
            },
            10,
            None,
        )
        .unwrap();
    assert_eq!(ids(&page), hex(&[4, 3, 2]), "newest first");
    assert_eq!(page.next, None);
    let two = &page.items[2];
    assert_eq!(
        (two.added_by_task, two.added_by_agent, two.added_at),
        (t1, a1, samples::at(9)),
        "the listing that first added it"
    );
    assert_eq!(page.items[0].added_by_agent, a2);
    let inventory = model.repo(&acme, repo).unwrap().unwrap();
    assert_eq!(inventory.snapshots, 3);
    assert_eq!(
        inventory.last_listing,
        Some(Listing {
            listed_at: samples::at(19),
            task: t2,
            agent: a2
        })
    );
    assert_eq!(inventory.url, None, "no policy names it");
    assert_eq!(model.repo(&acme, RepoId::for_url("/other")).unwrap(), None);
}

#[test]
fn pages_follow_each_other_through_cursors_without_gaps_or_repeats() {
    let (_dir, model) = open(Snapshots);
    let acme = tenant("acme");
    let (a, b) = (RepoId::for_url("/a"), RepoId::for_url("/b"));
    let mut log = Log::default();
    let s = |n| snapshot(n, "db-1", None);
    log.push(
        &acme,
        1,
        changed(
            a,
            samples::TASK,
            samples::AGENT,
            1,
            (0..25).map(s).collect(),
            vec![],
        ),
    );
    // The same times in another repository: the tenant's list interleaves them.
    log.push(
        &acme,
        2,
        changed(
            b,
            samples::TASK,
            samples::AGENT,
            2,
            (10..20).map(s).collect(),
            vec![],
        ),
    );
    log.apply_to(&model);
    for (filter, expected) in [
        (
            SnapshotFilter {
                repo: Some(a),
                ..Default::default()
            },
            25,
        ),
        (SnapshotFilter::default(), 35),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = model.list(&acme, &filter, 4, cursor.as_ref()).unwrap();
            assert!(page.items.len() <= 4);
            seen.extend(
                page.items
                    .iter()
                    .map(|v| (v.info.time, v.repo, v.info.id.clone())),
            );
            match page.next {
                // Written out and read back, as the API does.
                Some(next) => cursor = Some(next.to_string().parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected, "{filter:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.reverse();
        sorted.dedup();
        assert_eq!(seen, sorted, "newest first, each once: {filter:?}");
    }
}

#[test]
fn a_tenants_snapshots_filter_by_repository_host_and_policy() {
    let (_dir, model) = open(Snapshots);
    let acme = tenant("acme");
    let (a, b) = (RepoId::for_url("/a"), RepoId::for_url("/b"));
    let nightly = policy(&acme, "nightly");
    let mut log = Log::default();
    log.push(&acme, 0, created(&acme, "nightly", "/a"));
    log.push(
        &acme,
        1,
        changed(
            a,
            samples::TASK,
            samples::AGENT,
            1,
            vec![
                snapshot(1, "db-1", Some(nightly)),
                snapshot(2, "web-1", None),
            ],
            vec![],
        ),
    );
    log.push(
        &acme,
        2,
        changed(
            b,
            samples::TASK,
            samples::AGENT,
            2,
            vec![snapshot(3, "db-1", None)],
            vec![],
        ),
    );
    log.apply_to(&model);
    let list = |filter: SnapshotFilter| ids(&model.list(&acme, &filter, 100, None).unwrap());
    assert_eq!(list(SnapshotFilter::default()), hex(&[3, 2, 1]));
    assert_eq!(
        list(SnapshotFilter {
            repo: Some(b),
            ..Default::default()
        }),
        hex(&[3])
    );
    let db = SnapshotFilter {
        host: Some("db-1".into()),
        ..Default::default()
    };
    assert_eq!(list(db.clone()), hex(&[3, 1]));
    assert_eq!(
        list(SnapshotFilter {
            repo: Some(a),
            ..db
        }),
        hex(&[1])
    );
    assert_eq!(
        list(SnapshotFilter {
            policy: Some(nightly),
            ..Default::default()
        }),
        hex(&[1])
    );
    // A filtered page that fills is continued after its last match.
    let first = model
        .list(
            &acme,
            &SnapshotFilter {
                host: Some("db-1".into()),
                ..Default::default()
            },
            1,
            None,
        )
        .unwrap();
    assert_eq!(ids(&first), hex(&[3]));
    let rest = model
        .list(
            &acme,
            &SnapshotFilter {
                host: Some("db-1".into()),
                ..Default::default()
            },
            1,
            first.next.as_ref(),
        )
        .unwrap();
    assert_eq!((ids(&rest), rest.next), (hex(&[1]), None));
}

#[test]
fn snapshots_of_the_tenants_policies_are_the_fleets_others_are_external() {
    let (_dir, model) = open(Snapshots);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let repo = RepoId::for_url("/shared");
    let (nightly, gone, theirs) = (
        policy(&acme, "nightly"),
        policy(&acme, "gone"),
        policy(&globex, "nightly"),
    );
    let mut log = Log::default();
    log.push(&acme, 0, created(&acme, "nightly", "/shared"));
    log.push(&acme, 1, created(&acme, "gone", "/shared"));
    log.push(&globex, 2, created(&globex, "nightly", "/shared"));
    log.push(
        &acme,
        3,
        Event::Policy {
            policy: gone,
            event: PolicyEvent::Deleted,
        },
    );
    let added = vec![
        snapshot(1, "db-1", Some(nightly)),
        snapshot(2, "db-1", Some(gone)),
        snapshot(3, "db-1", Some(theirs)),
        snapshot(4, "db-1", None),
        snapshot(5, "db-1", Some(PolicyId::generate())),
    ];
    log.push(
        &acme,
        4,
        changed(repo, samples::TASK, samples::AGENT, 4, added, vec![]),
    );
    log.apply_to(&model);
    let page = model
        .list(&acme, &SnapshotFilter::default(), 10, None)
        .unwrap();
    let origin: Vec<Option<String>> = page
        .items
        .iter()
        .map(|v| model.policy_of(v).unwrap().map(|p| p.name))
        .collect();
    assert_eq!(
        origin,
        [
            None,
            None,
            None,
            Some("gone".into()),
            Some("nightly".into())
        ],
        "5: unknown policy, 4: no tag, 3: another tenant's policy, 2: a deleted policy's"
    );
}

#[test]
fn repositories_are_known_from_the_policies_that_name_them() {
    let (_dir, model) = open(Snapshots);
    let acme = tenant("acme");
    let nightly = policy(&acme, "nightly");
    let (a, b) = (RepoId::for_url("/a"), RepoId::for_url("sftp:nas:/b"));
    let mut log = Log::default();
    log.push(&acme, 0, created(&acme, "nightly", "/a"));
    log.push(&acme, 1, created(&acme, "weekly", "/a"));
    log.apply_to(&model);
    let known = model.repo(&acme, a).unwrap().unwrap();
    assert_eq!(known.url.as_deref(), Some("/a"));
    assert_eq!(known.policies, vec![nightly, policy(&acme, "weekly")]);
    assert_eq!((known.snapshots, known.last_listing), (0, None));

    log.push(
        &acme,
        2,
        Event::Policy {
            policy: nightly,
            event: PolicyEvent::Updated {
                spec: Box::new(spec("nightly", "sftp:nas:/b")),
            },
        },
    );
    log.push(
        &acme,
        3,
        Event::Policy {
            policy: policy(&acme, "weekly"),
            event: PolicyEvent::Deleted,
        },
    );
    log.apply_to(&model);
    let a_now = model.repo(&acme, a).unwrap().unwrap();
    assert!(a_now.policies.is_empty(), "{a_now:?}");
    assert_eq!(a_now.url.as_deref(), Some("/a"), "still known");
    let b_now = model.repo(&acme, b).unwrap().unwrap();
    assert_eq!(
        (b_now.url.as_deref(), b_now.policies.clone()),
        (Some("sftp:nas:/b"), vec![nightly])
    );
    let policy_ref = model.policy(&acme, nightly).unwrap().unwrap();
    assert_eq!((policy_ref.repo, policy_ref.deleted), (b, false));
    assert_eq!(repo_of(&spec("x", "/a")), a);
    let mut repos: Vec<RepoId> = model.repos(&acme).unwrap().iter().map(|r| r.id).collect();
    repos.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(repos, expected);
}

#[test]
fn tenants_naming_the_same_repository_have_their_own_inventories() {
    let (_dir, model) = open(Snapshots);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let repo = RepoId::for_url("/shared");
    let mut log = Log::default();
    log.push(
        &acme,
        0,
        changed(
            repo,
            samples::TASK,
            samples::AGENT,
            0,
            vec![snapshot(1, "a", None)],
            vec![],
        ),
    );
    log.push(
        &globex,
        1,
        changed(
            repo,
            samples::TASK,
            samples::AGENT,
            1,
            vec![snapshot(2, "g", None)],
            vec![],
        ),
    );
    log.push(&globex, 2, created(&globex, "p", "/shared"));
    assert!(log.apply_to(&model).iter().all(|o| *o == Outcome::Applied));
    let all = SnapshotFilter::default();
    assert_eq!(ids(&model.list(&acme, &all, 10, None).unwrap()), hex(&[1]));
    assert_eq!(
        ids(&model.list(&globex, &all, 10, None).unwrap()),
        hex(&[2])
    );
    assert_eq!(model.repo(&acme, repo).unwrap().unwrap().url, None);
    assert!(
        model
            .list(&tenant("acm"), &all, 10, None)
            .unwrap()
            .items
            .is_empty()
    );
    assert!(model.repos(&tenant("acm")).unwrap().is_empty());
}

#[test]
fn events_on_the_wrong_subject_are_rejected_others_ignored() {
    let (_dir, model) = open(Snapshots);
    let acme = tenant("acme");
    let repo = RepoId::for_url("/srv/restic");
    let mut log = Log::default();
    let mut wrong = log.push(
        &acme,
        0,
        changed(
            repo,
            samples::TASK,
            samples::AGENT,
            0,
            vec![snapshot(1, "h", None)],
            vec![],
        ),
    );
    wrong.subject = format!("fleet.evt.globex.repo.{repo}");
    log.events[0] = wrong;
    log.push(&acme, 1, samples::event(EventType::AgentCameOnline));
    log.push(&acme, 2, samples::event(EventType::TaskScheduled));
    log.push(&acme, 3, samples::event(EventType::RepoCircuitOpened));
    assert_eq!(
        log.apply_to(&model),
        [
            Outcome::Rejected("subject_mismatch"),
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied,
        ]
    );
    assert!(
        model
            .list(&acme, &SnapshotFilter::default(), 10, None)
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        model
            .list(&tenant("globex"), &SnapshotFilter::default(), 10, None)
            .unwrap()
            .items
            .is_empty()
    );
}

#[test]
fn cursors_read_back_what_they_wrote_and_refuse_anything_else() {
    let cursor = Cursor {
        time: samples::at(90),
        repo: RepoId::for_url("/a"),
        id: "ab".repeat(32),
    };
    assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor.clone()));
    for bad in [
        "",
        "1.2",
        "x.y.z",
        "90000000.nope.abcd",
        &format!("1.{}.", cursor.repo.uuid().simple()),
        &format!("1.{}.zz", cursor.repo.uuid().simple()),
    ] {
        assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
    }
}

#[test]
fn a_rebuild_stores_what_the_incremental_run_stored() {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (a, b) = (RepoId::for_url("/a"), RepoId::for_url("/b"));
    let nightly = policy(&acme, "nightly");
    let s = |n| snapshot(n, "db-1", Some(nightly));
    let mut log = Log::default();
    log.push(&acme, 0, created(&acme, "nightly", "/a"));
    log.push(
        &acme,
        1,
        changed(
            a,
            samples::TASK,
            samples::AGENT,
            1,
            vec![s(1), s(2)],
            vec![],
        ),
    );
    log.push(
        &globex,
        2,
        changed(a, samples::TASK, samples::AGENT, 2, vec![s(1)], vec![]),
    );
    log.push(
        &acme,
        3,
        changed(a, samples::TASK, samples::AGENT, 3, vec![s(3)], vec![s(1)]),
    );
    log.push(
        &acme,
        4,
        Event::Policy {
            policy: nightly,
            event: PolicyEvent::Updated {
                spec: Box::new(spec("nightly", "/b")),
            },
        },
    );
    log.push(
        &acme,
        5,
        changed(b, samples::TASK, samples::AGENT, 5, vec![s(4)], vec![]),
    );
    let mut wrong = log.push(
        &acme,
        6,
        changed(b, samples::TASK, samples::AGENT, 6, vec![s(5)], vec![]),
    );
    wrong.subject = format!("fleet.evt.acme.repo.{a}");
    log.events[6] = wrong;
    log.push(
        &acme,
        7,
        Event::Policy {
            policy: nightly,
            event: PolicyEvent::Deleted,
        },
    );
    log.push(
        &acme,
        8,
        changed(
            a,
            samples::TASK,
            samples::AGENT,
            8,
            vec![],
            vec![s(2), s(3)],
        ),
    );
    let (_dir, model) = assert_rebuild_equals_incremental(|| Snapshots, &log.events);
    assert_eq!(model.status().unwrap().rejected, 1);
    let page = model
        .list(&acme, &SnapshotFilter::default(), 10, None)
        .unwrap();
    assert_eq!(ids(&page), hex(&[4]));
    assert_eq!(model.repo(&acme, a).unwrap().unwrap().snapshots, 0);
}
