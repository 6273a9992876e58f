//! The JSON shapes of query answers (camelCase, RFC 3339 times): built from the read
//! models' stored views, which keep compact forms of their own.

use chrono::{DateTime, Utc};
use fleet_events::event::{RunDetail, RunSummary};
use fleet_events::ids::TaskId;
use fleet_projections::runs::Day;
use fleet_projections::{
    AgentView, Circuit, LastSuccess, Overdue, PolicyView, RepoView, RunView, TaskView,
};

mod notify;
mod snapshots;
pub use fleet_api_model::dto::*;
pub use notify::{notification, overdue_agents, rule};
pub use snapshots::{snapshot, snapshot_repository};
// One shape for what events carry, wherever shown.
pub use fleet_api_model::event_shapes::{request_json, run_summary, snapshot_json};

pub fn task(id: TaskId, view: &TaskView) -> Task {
    Task {
        id,
        status: view.status.clone(),
        policy: view.policy,
        agent: view.agent,
        kind: view.kind,
        attempt: view.attempt,
        last_error: view.last_error,
        fire_at: view.fire_at,
        run_at: view.run_at,
        retry_due_at: view.retry_due_at,
    }
}

/// The agent `view` shows, last heard at `heard` (from its heartbeats, if known).
pub fn agent(view: &AgentView, heard: Option<DateTime<Utc>>) -> Agent {
    let mut agent = agent_view(view);
    agent.last_seen = agent.last_seen.max(heard);
    agent
}

/// The agent `view` shows, without the heartbeats' "last seen".
pub fn agent_view(view: &AgentView) -> Agent {
    let saturation = view.saturation();
    let offline = view.registered && !view.online && !view.decommissioned;
    Agent {
        id: view.agent,
        name: view.name.clone(),
        hostname: view.hostname.clone(),
        registered: view.registered,
        registered_at: view.registered_at,
        decommissioned: view.decommissioned,
        online: view.online,
        last_seen: view.last_seen,
        offline_since: if offline { view.last_seen } else { None },
        agent_version: view.agent_version.clone(),
        restic_version: view.restic_version.clone(),
        settings: view.settings.clone(),
        running_tasks: view.running.total(),
        running_by_kind: view.running,
        queue_depth: view.queued.total(),
        queued_by_kind: view.queued,
        saturated: saturation.is_some(),
        saturation: saturation.map(|s| s.to_string()),
        backoff_until: view.earliest_retry(),
        pending_retries: view.pending_retries(),
        overdue: Vec::new(),
    }
}

/// The backoff status of the agent `view` shows.
pub fn backoff_status(view: &AgentView) -> BackoffStatus {
    BackoffStatus {
        agent: view.agent,
        in_backoff: !view.backoff.is_empty(),
        backoff_until: view.earliest_retry(),
        pending_retries: view.pending_retries(),
        retries: view
            .backoff
            .iter()
            .map(|b| Retry {
                task: b.task,
                due_at: b.due_at,
            })
            .collect(),
    }
}

/// One stored day of totals.
pub fn history_day(day: &Day) -> HistoryDay {
    let t = &day.totals;
    HistoryDay {
        day: day.day,
        policy: day.policy,
        agent: day.agent,
        runs: t.runs(),
        succeeded: t.succeeded,
        failed: t.failed,
        lost: t.lost,
        cancelled: t.cancelled,
        exhausted: t.exhausted,
        duration_ms: t.duration_ms,
        data_added_bytes: t.data_added_bytes,
        tasks_skipped: t.tasks_skipped,
        tasks_exhausted: t.tasks_exhausted,
        tasks_cancelled: t.tasks_cancelled,
    }
}

/// The attempt `view` shows.
pub fn run(view: &RunView) -> Run {
    Run {
        task: view.task,
        attempt: view.attempt,
        policy: view.policy,
        agent: view.agent,
        kind: view.kind,
        outcome: view.outcome.kind().as_str().to_owned(),
        error_class: view.error.as_ref().map(|e| e.class),
        error: view.error.as_ref().map(|e| e.message.clone()),
        snapshot_id: view.summary.as_ref().and_then(snapshot_of),
        summary: view.summary.as_ref().map(run_summary),
        started: view.started,
        started_at: view.started_at,
        finished_at: view.finished_at,
        duration_ms: view.duration_ms,
    }
}

/// The snapshot a backup made, if the summary is a backup's.
fn snapshot_of(summary: &RunSummary) -> Option<String> {
    match &summary.detail {
        RunDetail::Backup(backup) => backup.snapshot_id.clone(),
        _ => None,
    }
}

/// How many next fire times a policy shows.
pub const NEXT_FIRES: usize = 5;

/// The policy `view` shows at `now`; `overdue` holds its overdue assignments (those
/// of agents it is no longer assigned to are left out).
pub fn policy(view: &PolicyView, now: DateTime<Utc>, overdue: &[Overdue]) -> Policy {
    Policy {
        id: view.id,
        spec: view.spec.clone(),
        paused: view.paused,
        deleted: view.deleted,
        agents: view.agents.clone(),
        created_at: view.created_at,
        updated_at: view.updated_at,
        revision: view.revision,
        version: view.version,
        next_fires: view.next_fires(now, NEXT_FIRES),
        overdue: overdue_agents(overdue, &view.agents),
    }
}

/// The repository circuit `view` shows.
pub fn repo(view: &RepoView) -> Repo {
    let (circuit, open_until, failures) = match view.circuit {
        Circuit::Closed => ("closed", None, 0),
        Circuit::Open { until, failures } => ("open", Some(until), failures),
    };
    Repo {
        id: view.id,
        circuit: circuit.to_owned(),
        open_until,
        failures,
        changed_at: view.changed_at,
    }
}

/// The freshness of every assigned (policy, agent) pair of active policies at `now`, with
/// the pairs `overdue` holds marked.
pub fn freshness(
    policies: &[PolicyView],
    successes: &[LastSuccess],
    overdue: &[Overdue],
    now: DateTime<Utc>,
) -> Vec<Freshness> {
    let mut out = Vec::new();
    for policy in policies.iter().filter(|p| !p.deleted && !p.paused) {
        let fires = policy.next_fires(now, 2);
        let period = match fires.as_slice() {
            [a, b] => Some(*b - *a),
            _ => None,
        };
        for agent in &policy.agents {
            let last = successes
                .iter()
                .find(|s| s.policy == policy.id && s.agent == *agent);
            let since = last.map_or(policy.created_at, |s| s.at);
            let stale = period.is_some_and(|period| now - since > period * 2);
            out.push(Freshness {
                policy: policy.id,
                policy_name: policy.spec.name.clone(),
                agent: *agent,
                last_success_at: last.map(|s| s.at),
                snapshot_id: last.and_then(|s| s.snapshot_id.clone()),
                stale,
                overdue_since: overdue
                    .iter()
                    .find(|o| o.policy == policy.id && o.agent == *agent)
                    .map(|o| o.since),
            });
        }
    }
    out
}
