//! The fleet gauges: only the live fleet, bounded labels, escaped values, valid text.

use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::KindCounts;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;

use super::*;

fn agent(name: &str, online: bool) -> AgentView {
    AgentView {
        tenant: samples::tenant(),
        agent: AgentId::generate(),
        registered: true,
        name: name.to_owned(),
        hostname: "host".into(),
        settings: AgentSettings::default(),
        registered_at: Some(samples::at(0)),
        decommissioned: false,
        online,
        last_seen: Some(samples::at(1)),
        agent_version: None,
        restic_version: None,
        running: KindCounts::default(),
        backoff: Vec::new(),
        queued: KindCounts::default(),
    }
}

fn policy(name: &str, agents: &[AgentId]) -> PolicyView {
    let mut spec = samples::policy_spec();
    spec.name = name.to_owned();
    PolicyView {
        tenant: samples::tenant(),
        id: PolicyId::generate(),
        spec,
        paused: false,
        deleted: false,
        agents: agents.to_vec(),
        created_at: samples::at(0),
        updated_at: samples::at(0),
        revision: 1,
        version: 1,
    }
}

fn success(
    policy: &PolicyView,
    agent: AgentId,
    kind: TaskKind,
    secs: i64,
) -> (TenantId, LastSuccess) {
    let success = LastSuccess {
        policy: policy.id,
        agent,
        kind,
        task: TaskId::generate(),
        attempt: 1,
        at: samples::at(secs),
        snapshot_id: None,
    };
    (policy.tenant.clone(), success)
}

fn lines(view: &FleetView) -> Vec<String> {
    render(&samples(view))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn agents_policies_and_repositories_of_the_live_fleet_only() {
    let online = agent("web-1", true);
    let offline = agent("db-1", false);
    let mut retired = agent("old", true);
    retired.decommissioned = true;
    let backup = policy("nightly", &[online.agent, offline.agent, retired.agent]);
    let tenant = samples::tenant();
    let view = FleetView {
        agents: vec![online.clone(), offline.clone(), retired.clone()],
        policies: vec![backup.clone()],
        last_successes: vec![
            success(&backup, online.agent, backup.spec.kind, 3600),
            // A restore of the policy is not its backup; a retired agent is gone.
            success(&backup, offline.agent, TaskKind::Restore, 7200),
            success(&backup, retired.agent, backup.spec.kind, 7200),
        ],
        backoff: vec![(tenant.clone(), backup.id), (tenant.clone(), backup.id)],
        repos: vec![RepoView {
            tenant: tenant.clone(),
            id: repo_of(&backup.spec),
            circuit: Circuit::Open {
                until: samples::at(100),
                failures: 5,
            },
            changed_at: samples::at(40),
        }],
        // Overdue on the offline agent; a retired agent's pair is gone with it.
        overdue: vec![
            (tenant.clone(), backup.id, offline.agent),
            (tenant.clone(), backup.id, retired.agent),
        ],
    };
    let t = tenant.as_str();
    let (on, off) = (online.agent, offline.agent);
    let at = samples::at(3600).timestamp();
    let repo = repo_of(&backup.spec);
    assert_eq!(
        lines(&view),
        [
            format!("fleet_agent_online{{tenant=\"{t}\",agent=\"{on}\"}} 1"),
            format!("fleet_agent_online{{tenant=\"{t}\",agent=\"{off}\"}} 0"),
            format!("fleet_agent_info{{tenant=\"{t}\",agent=\"{on}\",name=\"web-1\"}} 1"),
            format!("fleet_agent_info{{tenant=\"{t}\",agent=\"{off}\",name=\"db-1\"}} 1"),
            format!(
                "fleet_policy_last_success_timestamp_seconds{{tenant=\"{t}\",policy=\"nightly\",agent=\"{on}\"}} {at}"
            ),
            format!("fleet_policy_overdue{{tenant=\"{t}\",policy=\"nightly\",agent=\"{on}\"}} 0"),
            format!("fleet_policy_overdue{{tenant=\"{t}\",policy=\"nightly\",agent=\"{off}\"}} 1"),
            format!("fleet_policy_tasks_in_backoff{{tenant=\"{t}\",policy=\"nightly\"}} 2"),
            format!("fleet_repo_circuit_open{{tenant=\"{t}\",repo=\"{repo}\"}} 1"),
        ]
    );

    // Deleted from the fleet (the projector's view no longer lists them): gone.
    let empty = FleetView {
        agents: vec![retired],
        ..FleetView::default()
    };
    assert_eq!(render(&samples(&empty)), "");
}

#[test]
fn label_values_are_escaped_and_every_family_has_help_and_type() {
    let odd = agent("a \"quoted\" \\ name\nwith a line", true);
    let text = render(&samples(&FleetView {
        agents: vec![odd],
        ..FleetView::default()
    }));
    assert!(
        text.contains(r#"name="a \"quoted\" \\ name\nwith a line""#),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2 * 3, "{text}");
    for family in ["fleet_agent_online", "fleet_agent_info"] {
        assert!(text.contains(&format!("# HELP {family} ")), "{text}");
        assert!(text.contains(&format!("# TYPE {family} gauge\n")), "{text}");
    }
}
