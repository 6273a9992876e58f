//! `fleet history`: what ended per UTC day, over the HTTP API, with agents and policies
//! shown by name.

use serde_json::Value;

use crate::api_client::ApiClient;
use crate::args::{HistoryArgs, OutputArg};
use crate::lookup::{self, Names};
use crate::output::{duration_ms, print, print_json, text};
use crate::table::Table;
use fleet_api_model::words;

/// Runs `fleet history`.
pub async fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let mut query = Vec::new();
    if let Some(policy) = &args.policy {
        query.push(("policy", lookup::policy_id(&client, policy).await?));
    }
    if let Some(agent) = &args.agent {
        query.push(("agent", lookup::agent_id(&client, agent).await?));
    }
    if let Some(since) = args.since {
        query.push(("since", since.format("%Y-%m-%d").to_string()));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let days = client.get(&["v1", "history"], &query).await?;
    if args.api.output == OutputArg::Json {
        return print_json(&days);
    }
    // A tenant's days name no agent or policy: no need to ask for every name.
    let names = match names_anyone(&days) {
        true => Names::fetch(&client).await?,
        false => Names::from_lists(&Value::Null, &Value::Null),
    };
    print(&days_table(&days, &names))
}

/// Whether any of the days is a policy's (and so names a policy and an agent).
fn names_anyone(days: &Value) -> bool {
    days.as_array()
        .is_some_and(|days| days.iter().any(|d| !d["policy"].is_null()))
}

/// The days as a table; the policy and agent columns only when the days are a
/// policy's or an agent's.
fn days_table(days: &Value, names: &Names) -> String {
    let whose = names_anyone(days);
    let days = days.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut header = vec!["DAY"];
    if whose {
        header.extend(["POLICY", "AGENT"]);
    }
    let numbers = [
        "RUNS",
        "SUCCEEDED",
        "FAILED",
        "LOST",
        "CANCELLED",
        "GIVEN UP",
        "SKIPPED",
        "RUN TIME",
        "ADDED",
    ];
    let first = header.len();
    header.extend(numbers);
    let mut table = (first..header.len()).fold(Table::new(&header), Table::right);
    for day in days {
        let mut row = vec![text(&day["day"])];
        if whose {
            row.push(names.policy(&day["policy"]));
            row.push(names.agent(&day["agent"]));
        }
        row.extend([
            text(&day["runs"]),
            text(&day["succeeded"]),
            text(&day["failed"]),
            text(&day["lost"]),
            text(&day["cancelled"]),
            text(&day["tasksExhausted"]),
            text(&day["tasksSkipped"]),
            duration_ms(&day["durationMs"]),
            day["dataAddedBytes"]
                .as_u64()
                .map_or_else(|| text(&day["dataAddedBytes"]), words::bytes),
        ]);
        table.row(row);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policys_days_name_their_agents_and_a_tenants_do_not() {
        let agent = "01900000-0000-7000-8000-00000000000a";
        let policy = "01900000-0000-7000-8000-00000000000b";
        let names = Names::from_lists(
            &json!([{"id": agent, "name": "web-1"}]),
            &json!([{"id": policy, "spec": {"name": "nightly"}}]),
        );
        let day = |policy: Value, agent: Value| {
            json!({
                "day": "2026-12-03", "policy": policy, "agent": agent, "runs": 3,
                "succeeded": 2, "failed": 1, "lost": 0, "cancelled": 0, "exhausted": 0,
                "durationMs": 5_400_000, "dataAddedBytes": 3_145_728, "tasksSkipped": 1,
                "tasksExhausted": 1, "tasksCancelled": 0,
            })
        };
        let policy_days = days_table(&json!([day(json!(policy), json!(agent))]), &names);
        let lines: Vec<&str> = policy_days.lines().collect();
        assert!(
            lines[0].starts_with("DAY         POLICY   AGENT"),
            "{policy_days}"
        );
        assert!(
            lines[1].starts_with("2026-12-03  nightly  web-1"),
            "{policy_days}"
        );
        assert!(lines[1].contains("1h30m"), "{policy_days}");
        assert!(lines[1].ends_with("3.0 MiB"), "{policy_days}");
        let tenant_days = days_table(&json!([day(Value::Null, Value::Null)]), &names);
        assert!(!tenant_days.contains("POLICY"), "{tenant_days}");
        assert!(
            tenant_days
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("2026-12-03")
        );
    }
}
