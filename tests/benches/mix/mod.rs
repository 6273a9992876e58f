//! A realistic event log for benchmarks: 10 tenants, 1,000 agents, 200 policies each
//! assigned to 10 agents, then hourly scheduler fires of every (policy, agent) pair whose
//! tasks run to success, are skipped, fail and are retried, are lost, or are exhausted,
//! with agents going offline and circuits opening in between. Shared by the `projections`
//! and `takeover` benchmarks.

use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{
    AgentEvent, BackupSummary, ErrorClass, Event, ExhaustedReason, LostReason, PolicyEvent,
    PruneSummary, RepoEvent, Role, RunDetail, RunSummary, SkipReason, TaskError, TaskEvent,
    TenantEvent,
};
use fleet_events::ids::{AgentId, PolicyId, RepoId, TaskId, TenantId, TokenId};
use fleet_events::policy::{PolicySpec, RepositoryRef, TaskKind};
use fleet_events::samples;
use fleet_events::store::{Append, EventStore, Expect};

pub const TENANTS: usize = 10;
pub const AGENTS_PER_TENANT: usize = 100;
pub const POLICIES_PER_TENANT: usize = 20;
/// Agents each policy is assigned to: every agent gets two policies.
const ASSIGNED: usize = 10;
const REPOS_PER_TENANT: usize = 3;

/// One assignment: the tasks of a scheduler fire are made of these.
struct Pair {
    tenant: usize,
    policy: PolicyId,
    agent: AgentId,
    spec: PolicySpec,
}

/// The log of a fleet, in append order, cut at `n` events.
pub struct Mix {
    pub tenants: Vec<TenantId>,
    pub agents: Vec<Vec<AgentId>>,
    pub events: Vec<Envelope>,
    pub n: usize,
}

impl Mix {
    fn push(&mut self, tenant: usize, at: DateTime<Utc>, event: Event) {
        if self.events.len() < self.n {
            let envelope = Envelope::new(self.tenants[tenant].clone(), at, event);
            self.events.push(envelope);
        }
    }

    fn full(&self) -> bool {
        self.events.len() >= self.n
    }
}

fn repo_url(tenant: usize, repo: usize) -> String {
    format!("sftp:backup@nas-{tenant}-{repo}:/srv/restic")
}

fn spec(tenant: usize, p: usize) -> PolicySpec {
    let base = match p % 4 {
        2 => samples::prune_spec(),
        3 => PolicySpec {
            kind: TaskKind::Check,
            include: vec![],
            ..samples::policy_spec()
        },
        _ => samples::policy_spec(),
    };
    PolicySpec {
        name: format!("policy-{p}"),
        repository: RepositoryRef {
            url: repo_url(tenant, p % REPOS_PER_TENANT),
            secret: format!("repo-{}", p % REPOS_PER_TENANT),
        },
        ..base
    }
}

/// Tenants with a token, agents registered and online, policies created and assigned.
fn setup(mix: &mut Mix) -> Vec<Pair> {
    let at = samples::at(0);
    let mut pairs = Vec::new();
    for t in 0..TENANTS {
        mix.push(
            t,
            at,
            Event::Tenant(TenantEvent::Created {
                name: format!("Tenant {t}"),
            }),
        );
        let token = TenantEvent::TokenIssued {
            token: TokenId::generate(),
            role: Role::Admin,
            label: "ops".into(),
            sha256: [t as u8; 32],
        };
        mix.push(t, at, Event::Tenant(token));
        for (a, agent) in mix.agents[t].clone().into_iter().enumerate() {
            let event = AgentEvent::Registered {
                name: format!("host-{t}-{a}"),
                hostname: format!("host-{t}-{a}.example.net"),
                settings: samples::agent_settings(),
            };
            mix.push(t, at, Event::Agent { agent, event });
            let event = AgentEvent::CameOnline {
                agent_version: "0.1.0".into(),
                restic_version: "0.14.0".into(),
            };
            mix.push(t, at, Event::Agent { agent, event });
        }
        for p in 0..POLICIES_PER_TENANT {
            let policy = PolicyId::generate();
            let spec = spec(t, p);
            let event = PolicyEvent::Created {
                spec: Box::new(spec.clone()),
            };
            mix.push(t, at, Event::Policy { policy, event });
            for k in 0..ASSIGNED {
                let agent = mix.agents[t][(p * ASSIGNED + k) % AGENTS_PER_TENANT];
                let event = PolicyEvent::AssignedToAgent { agent };
                mix.push(t, at, Event::Policy { policy, event });
                pairs.push(Pair {
                    tenant: t,
                    policy,
                    agent,
                    spec: spec.clone(),
                });
            }
        }
    }
    pairs
}

fn summary(kind: TaskKind, attempt: u32) -> TaskEvent {
    let detail = match kind {
        TaskKind::Backup => RunDetail::Backup(BackupSummary {
            snapshot_id: Some("5e1c0a3f".into()),
            files_new: 12,
            files_changed: 3,
            files_unmodified: 4000,
            total_files_processed: 4015,
            total_bytes_processed: 987_654_321,
            data_added_bytes: 1_048_576,
            ..BackupSummary::default()
        }),
        TaskKind::Check => RunDetail::Check,
        TaskKind::Prune => RunDetail::Prune(PruneSummary {
            snapshots_kept: 11,
            snapshots_removed: 1,
        }),
        // The mix schedules no operator requests; here for completeness.
        TaskKind::Restore => RunDetail::Restore(Default::default()),
        TaskKind::Refresh => RunDetail::Refresh(Default::default()),
    };
    TaskEvent::Succeeded {
        attempt,
        summary: RunSummary {
            kind,
            duration_ms: 61_250,
            detail,
        },
    }
}

/// The events of one task, by what happens to it (`j` picks that, about 82% succeed at
/// once, 8% after a network failure, 3% after being lost, 2% are exhausted, 5% skipped).
fn lifecycle(pair: &Pair, fire_at: DateTime<Utc>, j: usize) -> Vec<TaskEvent> {
    let (policy, agent, kind) = (pair.policy, pair.agent, pair.spec.kind);
    let scheduled = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at + TimeDelta::seconds((j % 600) as i64),
        spec: Box::new(pair.spec.clone()),
    };
    let run = |attempt| {
        [
            TaskEvent::Dispatched { agent, attempt },
            TaskEvent::Acknowledged { attempt },
            TaskEvent::Started { attempt },
        ]
    };
    let retry = |attempt| {
        [
            TaskEvent::RetryScheduled {
                attempt,
                due_at: fire_at + TimeDelta::seconds(60),
                delay_ms: 30_000,
            },
            TaskEvent::RetryDue,
        ]
    };
    let mut events = vec![scheduled];
    match j % 100 {
        0..=4 => {
            return vec![TaskEvent::Skipped {
                policy,
                agent,
                fire_at,
                reason: SkipReason::Missed,
            }];
        }
        5..=12 => {
            events.extend(run(1));
            let error = TaskError::new(ErrorClass::Network, "connection refused", Some(1));
            events.push(TaskEvent::Failed { attempt: 1, error });
            events.extend(retry(1));
            events.extend(run(2));
            events.push(summary(kind, 2));
        }
        13..=15 => {
            events.extend(run(1));
            events.push(TaskEvent::Lost {
                attempt: 1,
                reason: LostReason::LeaseExpired,
            });
            events.extend(retry(1));
            events.extend(run(2));
            events.push(summary(kind, 2));
        }
        16..=17 => {
            events.extend(run(1));
            let error = TaskError::new(ErrorClass::Auth, "wrong password", Some(1));
            events.push(TaskEvent::Failed { attempt: 1, error });
            events.push(TaskEvent::Exhausted {
                attempts: 1,
                reason: ExhaustedReason::NotRetryable(ErrorClass::Auth),
            });
        }
        _ => {
            events.extend(run(1));
            events.push(summary(kind, 1));
        }
    }
    events
}

/// Seconds between two fires of every pair: FLEET_BENCH_WAVE_SECS, default 3600 (hourly;
/// 86400 spreads the log over as many days as it has fires, for the read models'
/// retention).
fn wave_secs() -> i64 {
    std::env::var("FLEET_BENCH_WAVE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|secs| *secs > 0)
        .unwrap_or(3600)
}

/// Fires of every pair (hourly by default, see [`wave_secs`]) until the log holds `n`
/// events: each fire's tasks advance together, a step at a time, as a fleet's do; a few
/// agents drop out and come back, and one repository's circuit opens and closes.
pub fn mix(n: usize) -> Mix {
    let mut mix = Mix {
        tenants: (0..TENANTS)
            .map(|t| TenantId::new(format!("bench-{t}")).expect("slug"))
            .collect(),
        agents: (0..TENANTS)
            .map(|_| {
                (0..AGENTS_PER_TENANT)
                    .map(|_| AgentId::generate())
                    .collect()
            })
            .collect(),
        events: Vec::with_capacity(n),
        n,
    };
    let pairs = setup(&mut mix);
    let mut j = 0;
    let every = wave_secs();
    for wave in 1.. {
        if mix.full() {
            break;
        }
        let fire_at = samples::at(every * wave);
        let tasks: Vec<(usize, TaskId, Vec<TaskEvent>)> = pairs
            .iter()
            .map(|pair| {
                j += 1;
                let task = TaskId::for_fire(pair.policy, pair.agent, fire_at);
                (pair.tenant, task, lifecycle(pair, fire_at, j))
            })
            .collect();
        let (t, a) = (wave as usize % TENANTS, wave as usize % AGENTS_PER_TENANT);
        let dropped = mix.agents[t][a];
        let repo = RepoId::for_url(&repo_url(t, wave as usize % REPOS_PER_TENANT));
        let steps = tasks.iter().map(|(_, _, e)| e.len()).max().unwrap_or(0);
        for step in 0..steps {
            let at = fire_at + TimeDelta::seconds(30 * step as i64);
            if step == 1 {
                let event = AgentEvent::WentOffline { last_seen: at };
                mix.push(
                    t,
                    at,
                    Event::Agent {
                        agent: dropped,
                        event,
                    },
                );
                let event = RepoEvent::CircuitOpened {
                    until: at + TimeDelta::seconds(60),
                    failures: 5,
                };
                mix.push(t, at, Event::Repo { repo, event });
            }
            for (tenant, task, events) in &tasks {
                if let Some(event) = events.get(step) {
                    let event = Event::Task {
                        task: *task,
                        event: event.clone(),
                    };
                    mix.push(*tenant, at, event);
                }
            }
            if step == 4 {
                let event = AgentEvent::CameOnline {
                    agent_version: "0.1.0".into(),
                    restic_version: "0.14.0".into(),
                };
                mix.push(
                    t,
                    at,
                    Event::Agent {
                        agent: dropped,
                        event,
                    },
                );
                mix.push(
                    t,
                    at,
                    Event::Repo {
                        repo,
                        event: RepoEvent::CircuitClosed,
                    },
                );
            }
        }
    }
    mix
}

impl Mix {
    /// Appends every event, acks pipelined, each with its envelope id as msg id; how long
    /// that took. Panics if one is not stored.
    pub async fn append(&self, store: &EventStore) -> std::time::Duration {
        let ids: Vec<String> = self.events.iter().map(|e| e.id.to_string()).collect();
        let start = std::time::Instant::now();
        let results = store
            .append_many(
                self.events
                    .iter()
                    .zip(&ids)
                    .map(|(envelope, msg_id)| Append {
                        envelope,
                        msg_id,
                        expect: Expect::Any,
                    }),
            )
            .await;
        assert!(results.iter().all(Result::is_ok), "every append stored");
        start.elapsed()
    }
}
