//! The gauges an operator alerts on per agent, per policy and per repository, computed
//! from the read models (pure) and rendered in the Prometheus text format with HELP and
//! TYPE, label values escaped. They are rendered apart from the `metrics` recorder, which
//! cannot forget a series: each rendering holds only the live fleet (registered agents
//! not decommissioned, policies not deleted, the repositories they name), so a deleted
//! agent's or policy's series disappear with it. Labels are tenant slugs, policy names
//! (unique in a tenant), agent and repository ids: never task ids.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;

use fleet_events::event::repo_of;
use fleet_events::ids::{AgentId, PolicyId, RepoId, TenantId};
use fleet_events::metrics_catalog::{Kind, Metric};
use fleet_events::policy::TaskKind;
use fleet_projections::{AgentView, Circuit, LastSuccess, PolicyView, RepoView};

/// The gauges of this module.
pub const CATALOG: &[Metric] = &[
    Metric {
        name: "fleet_agent_online",
        kind: Kind::Gauge,
        labels: &["tenant", "agent"],
        help: "1 while an agent is online (heartbeating within its lease), 0 while offline; \
               registered agents not decommissioned",
    },
    Metric {
        name: "fleet_agent_info",
        kind: Kind::Gauge,
        labels: &["tenant", "agent", "name"],
        help: "Always 1: an agent's name, to join on its id",
    },
    Metric {
        name: "fleet_policy_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        labels: &["tenant", "policy", "agent"],
        help: "When a policy's task of its own kind last succeeded on an agent it is \
               assigned to (Unix time); absent until the first success",
    },
    Metric {
        name: "fleet_policy_overdue",
        kind: Kind::Gauge,
        labels: &["tenant", "policy", "agent"],
        help: "1 while a policy is overdue on an agent it is assigned to (no success by its \
               second scheduled fire after the last one, judged by the notifier), else 0",
    },
    Metric {
        name: "fleet_policy_tasks_in_backoff",
        kind: Kind::Gauge,
        labels: &["tenant", "policy"],
        help: "A policy's failed tasks waiting for their retry",
    },
    Metric {
        name: "fleet_repo_circuit_open",
        kind: Kind::Gauge,
        labels: &["tenant", "repo"],
        help: "1 while a repository's circuit breaker is open (its tasks held after \
               network failures), else 0; repositories named by a live policy",
    },
];

/// What the gauges are computed from: the read models' live fleet.
#[derive(Debug, Clone, Default)]
pub struct FleetView {
    pub agents: Vec<AgentView>,
    /// Policies not deleted.
    pub policies: Vec<PolicyView>,
    pub last_successes: Vec<(TenantId, LastSuccess)>,
    /// The policy of each task in backoff (one entry per task).
    pub backoff: Vec<(TenantId, PolicyId)>,
    /// The repositories whose circuit ever changed.
    pub repos: Vec<RepoView>,
    /// The (policy, agent) pairs the notifier found overdue and not yet caught up.
    pub overdue: Vec<(TenantId, PolicyId, AgentId)>,
}

/// One sample: a metric of [`CATALOG`], its labels in the catalogue's order, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: &'static str,
    pub labels: Vec<String>,
    pub value: f64,
}

/// Every gauge of the live fleet in `view`.
pub fn samples(view: &FleetView) -> Vec<Sample> {
    let mut out = Vec::new();
    let sample = |metric, labels: &[&str], value| Sample {
        metric,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        value,
    };
    let live: BTreeSet<AgentId> = view
        .agents
        .iter()
        .filter(|a| a.registered && !a.decommissioned)
        .map(|a| a.agent)
        .collect();
    for agent in view.agents.iter().filter(|a| live.contains(&a.agent)) {
        let (tenant, id) = (agent.tenant.as_str(), agent.agent.to_string());
        let online = if agent.online { 1.0 } else { 0.0 };
        out.push(sample("fleet_agent_online", &[tenant, &id], online));
        out.push(sample("fleet_agent_info", &[tenant, &id, &agent.name], 1.0));
    }
    let mut backoff: BTreeMap<(&TenantId, PolicyId), u32> = BTreeMap::new();
    for (tenant, policy) in &view.backoff {
        *backoff.entry((tenant, *policy)).or_default() += 1;
    }
    // A policy's last success of its own kind (a restore through it is not a backup).
    let kinds: HashMap<PolicyId, TaskKind> =
        view.policies.iter().map(|p| (p.id, p.spec.kind)).collect();
    let last_successes: HashMap<(&TenantId, PolicyId, AgentId), &LastSuccess> = view
        .last_successes
        .iter()
        .filter(|(_, s)| kinds.get(&s.policy) == Some(&s.kind))
        .map(|(t, s)| ((t, s.policy, s.agent), s))
        .collect();
    let overdue: HashSet<(&TenantId, PolicyId, AgentId)> =
        view.overdue.iter().map(|(t, p, a)| (t, *p, *a)).collect();
    let mut repos: BTreeSet<(&TenantId, RepoId)> = BTreeSet::new();
    for policy in &view.policies {
        let (tenant, name) = (policy.tenant.as_str(), policy.spec.name.as_str());
        let waiting = backoff
            .get(&(&policy.tenant, policy.id))
            .copied()
            .unwrap_or(0);
        out.push(sample(
            "fleet_policy_tasks_in_backoff",
            &[tenant, name],
            f64::from(waiting),
        ));
        repos.insert((&policy.tenant, repo_of(&policy.spec)));
        for agent in policy.agents.iter().filter(|a| live.contains(a)) {
            let id = agent.to_string();
            let key = (&policy.tenant, policy.id, *agent);
            if let Some(success) = last_successes.get(&key) {
                let at = success.at.timestamp_micros() as f64 / 1e6;
                out.push(sample(
                    "fleet_policy_last_success_timestamp_seconds",
                    &[tenant, name, &id],
                    at,
                ));
            }
            let late = if overdue.contains(&key) { 1.0 } else { 0.0 };
            out.push(sample("fleet_policy_overdue", &[tenant, name, &id], late));
        }
    }
    for (tenant, repo) in repos {
        let open = view
            .repos
            .iter()
            .find(|r| r.tenant == *tenant && r.id == repo)
            .is_some_and(|r| matches!(r.circuit, Circuit::Open { .. }));
        let value = if open { 1.0 } else { 0.0 };
        out.push(sample(
            "fleet_repo_circuit_open",
            &[tenant.as_str(), &repo.to_string()],
            value,
        ));
    }
    out
}

/// `samples` in the Prometheus text format: each metric's HELP and TYPE, then its samples
/// (metrics in catalogue order, samples in the order given).
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for metric in CATALOG {
        let mut mine = samples
            .iter()
            .filter(|s| s.metric == metric.name)
            .peekable();
        if mine.peek().is_none() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", metric.name, escape_help(metric.help));
        let _ = writeln!(out, "# TYPE {} gauge", metric.name);
        for sample in mine {
            out.push_str(metric.name);
            out.push('{');
            for (i, (name, value)) in metric.labels.iter().zip(&sample.labels).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{name}=\"{}\"", escape_label(value));
            }
            let _ = writeln!(out, "}} {}", sample.value);
        }
    }
    out
}

/// A label value as the text format wants it: backslash, double quote and line feed
/// escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

static CURRENT: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

/// Replaces what [`text`] returns (the projector, after each computation).
pub fn publish(rendered: String) {
    if let Ok(mut current) = CURRENT.write() {
        *current = rendered;
    }
}

/// The last published rendering: empty in a process without a projector.
pub fn text() -> String {
    CURRENT.read().map(|t| t.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
