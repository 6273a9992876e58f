//! The snapshot queries answered from read models on a temporary database: pages with
//! their repository, policies named or external, the agent filter through its hostname,
//! pages cut below the message size, and another tenant's repository unknown.

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, PolicyEvent, RepoEvent, SnapshotInfo};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TenantId};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::Stored;
use serde_json::Value;

use super::super::answer;
use crate::models::ReadModels;
use fleet_api_model::query::{Answer, ErrorCode, Query};

struct Fixture {
    _dir: tempfile::TempDir,
    models: ReadModels,
    seq: u64,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let models = ReadModels::open(dir.path(), crate::DEFAULT_HISTORY_DAYS).unwrap();
        Fixture {
            _dir: dir,
            models,
            seq: 0,
        }
    }

    fn push(&mut self, tenant: &TenantId, event: Event) {
        self.seq += 1;
        let envelope = Envelope::new(tenant.clone(), samples::at(self.seq as i64), event);
        let stored = Stored {
            seq: self.seq,
            subject: envelope.subject(),
            envelope,
        };
        self.models.agents.apply(Ok(stored.clone())).unwrap();
        self.models.snapshots.apply(Ok(stored)).unwrap();
    }

    fn ask(&self, tenant: &TenantId, query: Query) -> Result<Value, (ErrorCode, String)> {
        match answer(&self.models, tenant, query, now()) {
            Answer::Ok(value) => Ok(value),
            Answer::Error { code, message } => Err((code, message)),
        }
    }
}

fn now() -> DateTime<Utc> {
    samples::at(1000)
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn snapshot(n: u32, host: &str, policy: Option<PolicyId>, paths: usize) -> SnapshotInfo {
    let mut tags = Vec::new();
    if let Some(policy) = policy {
        tags.push(format!("policy:{policy}"));
    }
    SnapshotInfo {
        id: format!("{n:064x}"),
        time: samples::at(i64::from(n)),
        host: host.into(),
        paths: (0..paths)
            .map(|i| format!("/srv/{i}/{}", "p".repeat(200)))
            .collect(),
        more_paths: 0,
        tags,
        size_bytes: Some(42),
        files: None,
    }
}

fn added(repo: RepoId, agent: AgentId, snapshots: Vec<SnapshotInfo>) -> Event {
    Event::Repo {
        repo,
        event: RepoEvent::SnapshotsChanged {
            task: samples::TASK,
            agent,
            listed_at: samples::at(500),
            added: snapshots,
            removed: vec![],
        },
    }
}

fn repo_snapshots(id: RepoId) -> Query {
    Query::RepoSnapshots {
        id,
        limit: None,
        cursor: None,
    }
}

fn snapshots(agent: Option<AgentId>) -> Query {
    Query::Snapshots {
        repo: None,
        agent,
        host: None,
        policy: None,
        limit: None,
        cursor: None,
    }
}

#[test]
fn a_repositorys_page_names_its_url_policies_and_external_snapshots() {
    let mut f = Fixture::new();
    let acme = tenant("acme");
    let spec = samples::policy_spec();
    let repo = RepoId::for_url(&spec.repository.url);
    let policy = PolicyId::for_name(&acme, &spec.name);
    f.push(
        &acme,
        Event::Policy {
            policy,
            event: PolicyEvent::Created {
                spec: Box::new(spec.clone()),
            },
        },
    );
    let agent = samples::AGENT;
    f.push(
        &acme,
        added(
            repo,
            agent,
            vec![
                snapshot(1, "db-1", Some(policy), 1),
                snapshot(2, "db-1", None, 1),
            ],
        ),
    );
    let page = f.ask(&acme, repo_snapshots(repo)).unwrap();
    assert_eq!(page["repository"]["id"], repo.to_string());
    assert_eq!(page["repository"]["url"], spec.repository.url);
    assert_eq!(page["repository"]["policies"][0]["name"], spec.name);
    assert_eq!(page["repository"]["snapshotCount"], 2);
    assert_eq!(
        page["repository"]["lastListedBy"]["agent"],
        agent.to_string()
    );
    assert_eq!(page["nextCursor"], Value::Null);
    let items = page["snapshots"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["shortId"], "00000000");
    assert_eq!(items[0]["external"], true);
    assert_eq!(items[0]["repo"], repo.to_string());
    assert_eq!(items[1]["external"], false);
    assert_eq!(items[1]["policyName"], spec.name);
    assert_eq!(items[1]["repoUrl"], spec.repository.url);
    assert_eq!(
        items[1]["addedBy"]["listedAt"],
        serde_json::to_value(samples::at(500)).unwrap()
    );

    // Another tenant's repository of the same URL is unknown to it.
    let globex = tenant("globex");
    assert_eq!(
        f.ask(&globex, repo_snapshots(repo)).unwrap_err().0,
        ErrorCode::NotFound
    );
    let theirs = f.ask(&globex, snapshots(None)).unwrap();
    assert_eq!(theirs["snapshots"], Value::Array(vec![]));
    assert!(theirs.get("repository").is_none());
}

#[test]
fn the_agent_filter_keeps_its_hosts_snapshots() {
    let mut f = Fixture::new();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (db, web, foreign) = (
        AgentId::generate(),
        AgentId::generate(),
        AgentId::generate(),
    );
    for (tenant, agent, host) in [
        (&acme, db, "db-1"),
        (&acme, web, "web-1"),
        (&globex, foreign, "db-1"),
    ] {
        f.push(
            tenant,
            Event::Agent {
                agent,
                event: AgentEvent::Registered {
                    name: host.into(),
                    hostname: host.into(),
                    settings: AgentSettings::default(),
                },
            },
        );
    }
    let repo = RepoId::for_url("/srv/restic");
    // Listed by web-1's agent; one of them was made on db-1.
    f.push(
        &acme,
        added(
            repo,
            web,
            vec![snapshot(1, "db-1", None, 1), snapshot(2, "web-1", None, 1)],
        ),
    );
    let page = f.ask(&acme, snapshots(Some(db))).unwrap();
    let hosts: Vec<&Value> = page["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["host"])
        .collect();
    assert_eq!(hosts, ["db-1"]);
    let foreign_page = f.ask(&acme, snapshots(Some(foreign))).unwrap();
    assert_eq!(
        foreign_page["snapshots"],
        Value::Array(vec![]),
        "another tenant's agent of the same hostname has none here"
    );
    let both = Query::Snapshots {
        repo: None,
        agent: Some(db),
        host: Some("db-1".into()),
        policy: None,
        limit: None,
        cursor: None,
    };
    assert_eq!(f.ask(&acme, both).unwrap_err().0, ErrorCode::BadRequest);
    let bad_cursor = Query::Snapshots {
        repo: None,
        agent: None,
        host: None,
        policy: None,
        limit: None,
        cursor: Some("nope".into()),
    };
    assert_eq!(
        f.ask(&acme, bad_cursor).unwrap_err().0,
        ErrorCode::BadRequest
    );
}

#[test]
fn a_page_of_large_snapshots_ends_early_and_its_cursor_goes_on() {
    let mut f = Fixture::new();
    let acme = tenant("acme");
    let repo = RepoId::for_url("/srv/restic");
    // About 13 KiB each as JSON: 100 of them would pass the page's byte budget.
    let big: Vec<SnapshotInfo> = (0..100).map(|n| snapshot(n, "db-1", None, 64)).collect();
    f.push(&acme, added(repo, samples::AGENT, big));
    let mut seen = 0;
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let query = Query::Snapshots {
            repo: Some(repo),
            agent: None,
            host: None,
            policy: None,
            limit: Some(100),
            cursor: cursor.take(),
        };
        let page = f.ask(&acme, query).unwrap();
        let bytes = serde_json::to_vec(&page).unwrap().len();
        assert!(bytes < 768 * 1024, "{bytes} bytes");
        seen += page["snapshots"].as_array().unwrap().len();
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 100);
    assert!(pages > 1, "{pages} pages");
}
