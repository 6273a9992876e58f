//! Who may write a repository's inventory: the agent that ran an attempt on it, and no
//! one else.

use fleet_events::envelope::{Envelope, SCHEMA_VERSION};
use fleet_events::event::{
    Event, EventType, RunDetail, RunSummary, SnapshotListing, TaskEvent, repo_of,
};
use fleet_events::ids::{AgentId, RepoId, TaskId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{AgentReport, ReportStatus};
use fleet_events::samples;
use fleet_events::store::Stored;

use super::{MAX_CLOCK_AHEAD, judge_listing};

fn history(events: Vec<TaskEvent>) -> Vec<Stored> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let envelope = Envelope::new(
                samples::tenant(),
                samples::at(i as i64),
                Event::Task {
                    task: samples::TASK,
                    event,
                },
            );
            Stored {
                seq: i as u64 + 1,
                subject: envelope.subject(),
                envelope,
            }
        })
        .collect()
}

fn scheduled() -> TaskEvent {
    let Event::Task { event, .. } = samples::event(EventType::TaskScheduled) else {
        unreachable!("a task sample")
    };
    event
}

fn dispatched() -> Vec<TaskEvent> {
    vec![
        scheduled(),
        TaskEvent::Dispatched {
            agent: samples::AGENT,
            attempt: 1,
        },
    ]
}

fn repo() -> RepoId {
    repo_of(&samples::policy_spec())
}

fn listed(agent: AgentId, task: TaskId, repo: RepoId, listing: SnapshotListing) -> AgentReport {
    AgentReport {
        schema: SCHEMA_VERSION,
        agent,
        tenant: samples::tenant(),
        task,
        attempt: 1,
        at: samples::at(10),
        status: ReportStatus::SnapshotsListed { repo, listing },
    }
}

fn report() -> AgentReport {
    listed(samples::AGENT, samples::TASK, repo(), samples::listing())
}

fn now() -> chrono::DateTime<chrono::Utc> {
    samples::at(60)
}

#[test]
fn the_agent_that_ran_the_attempt_may_list_its_repository() {
    let log = history(dispatched());
    let report = report();
    let accepted = judge_listing(samples::AGENT, &report, &log, now()).expect("accepted");
    assert_eq!(accepted.repo, repo());
    assert_eq!(accepted.listing, &samples::listing());
    assert_eq!(
        accepted.cause, &log[1].envelope,
        "caused by the task's last event"
    );
}

#[test]
fn a_listing_is_still_taken_after_the_attempt_succeeded() {
    let mut events = dispatched();
    events.extend([
        TaskEvent::Started { attempt: 1 },
        TaskEvent::Succeeded {
            attempt: 1,
            summary: RunSummary {
                kind: TaskKind::Backup,
                duration_ms: 5,
                detail: RunDetail::Backup(Default::default()),
            },
        },
    ]);
    let log = history(events);
    assert!(judge_listing(samples::AGENT, &report(), &log, now()).is_ok());
}

#[test]
fn hostile_or_stray_listings_are_refused_with_reasons() {
    let other = AgentId::generate();
    let log = history(dispatched());
    let elsewhere = RepoId::for_url("/srv/someone-elses-repository");
    let cases: Vec<(AgentId, AgentReport, Vec<Stored>, &str)> = vec![
        (other, report(), log.clone(), "came from agent"),
        (
            other,
            listed(other, samples::TASK, repo(), samples::listing()),
            log.clone(),
            "belongs to agent",
        ),
        (
            samples::AGENT,
            listed(samples::AGENT, samples::TASK, elsewhere, samples::listing()),
            log.clone(),
            "uses repository",
        ),
        (samples::AGENT, report(), Vec::new(), "does not exist"),
        (
            samples::AGENT,
            report(),
            history(vec![scheduled()]),
            "never dispatched",
        ),
        (
            samples::AGENT,
            AgentReport {
                attempt: 2,
                ..report()
            },
            log.clone(),
            "never dispatched",
        ),
    ];
    for (sender, report, history, why) in cases {
        match judge_listing(sender, &report, &history, now()) {
            Err(reason) => assert!(reason.contains(why), "{reason} lacks {why}"),
            Ok(accepted) => panic!("{why}: accepted {accepted:?}"),
        }
    }
}

#[test]
fn malformed_listings_are_refused() {
    let log = history(dispatched());
    let good = samples::listing();
    let mut outside = good.clone();
    outside.through = Some(samples::snapshot(1).key());
    let mut twice = good.clone();
    twice.snapshots.push(samples::snapshot(1));
    twice.snapshots.sort_by_key(|s| s.key());
    let mut short_id = good.clone();
    short_id.snapshots[0].id = "5e1c0a3f".into();
    let cases = [
        (
            SnapshotListing {
                part: 1,
                ..good.clone()
            },
            "part 1 of a listing in 1 parts",
        ),
        (
            SnapshotListing {
                after: Some(samples::snapshot(3).key()),
                through: Some(samples::snapshot(1).key()),
                snapshots: vec![],
                ..good.clone()
            },
            "ends before it starts",
        ),
        (
            SnapshotListing {
                listed_at: now() + MAX_CLOCK_AHEAD + chrono::TimeDelta::seconds(1),
                ..good.clone()
            },
            "ahead of the control plane's clock",
        ),
        (outside, "outside the part's range"),
        (twice, "listed twice"),
        (short_id, "not a full restic snapshot id"),
    ];
    for (listing, why) in cases {
        let report = listed(samples::AGENT, samples::TASK, repo(), listing);
        match judge_listing(samples::AGENT, &report, &log, now()) {
            Err(reason) => assert!(reason.contains(why), "{reason} lacks {why}"),
            Ok(accepted) => panic!("{why}: accepted {accepted:?}"),
        }
    }
}
