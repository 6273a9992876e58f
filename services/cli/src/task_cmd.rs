//! `fleet task ls|show|cancel` and `fleet runs`: tasks, their histories and finished
//! attempts over the HTTP API, with agents and policies shown by name.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::api_client::{ApiClient, ApiError};
use crate::args::{OutputArg, RunsArgs, TaskArgs, TaskCommand};
use crate::events_cmd::history_line;
use crate::lookup::{self, Names};
use crate::output::{duration_ms, print, print_json, text, time, written};
use crate::table::{Table, fields};

/// Runs one `fleet task` command.
pub async fn run(args: TaskArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let json = args.api.output == OutputArg::Json;
    match args.command {
        TaskCommand::Ls(ls) => {
            let mut query = filters(&client, ls.agent, ls.policy, ls.since, ls.limit).await?;
            if let Some(state) = ls.state {
                query.push(("state", state));
            }
            let tasks = client.get(&["v1", "tasks"], &query).await?;
            if json {
                return print_json(&tasks);
            }
            let names = Names::fetch(&client).await?;
            print(&tasks_table(&tasks, &names))
        }
        TaskCommand::Show(target) => {
            let task = client.get(&["v1", "tasks", &target.task], &[]).await?;
            if json {
                return print_json(&task);
            }
            let names = Names::fetch(&client).await?;
            print(&task_details(&task, &names))
        }
        TaskCommand::Watch(target) => {
            crate::request_cmd::watch_task(&client, &target.task, json).await
        }
        TaskCommand::Cancel(cancel) => {
            let mut body = json!({});
            if let Some(reason) = &cancel.reason {
                body["reason"] = json!(reason);
            }
            let path = ["v1", "tasks", &cancel.task, "cancel"];
            let answer = client.post(&path, &body).await?;
            match json {
                true => print_json(&answer),
                false => print(&written(
                    &format!("task {}", cancel.task),
                    "cancelled",
                    &answer,
                )),
            }
        }
    }
}

/// Runs `fleet runs`.
pub async fn runs(args: RunsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let mut query = filters(&client, args.agent, args.policy, args.since, args.limit).await?;
    if let Some(outcome) = args.outcome {
        query.push(("outcome", outcome));
    }
    let runs = client.get(&["v1", "runs"], &query).await?;
    if args.api.output == OutputArg::Json {
        return print_json(&runs);
    }
    let names = Names::fetch(&client).await?;
    print(&runs_table(&runs, &names))
}

/// The filters tasks and runs share; agent and policy names become ids.
async fn filters(
    client: &ApiClient,
    agent: Option<String>,
    policy: Option<String>,
    since: Option<DateTime<Utc>>,
    limit: Option<u32>,
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut query = Vec::new();
    if let Some(agent) = agent {
        query.push(("agent", lookup::agent_id(client, &agent).await?));
    }
    if let Some(policy) = policy {
        query.push(("policy", lookup::policy_id(client, &policy).await?));
    }
    if let Some(since) = since {
        query.push(("since", since.to_rfc3339_opts(SecondsFormat::Secs, true)));
    }
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    Ok(query)
}

fn tasks_table(tasks: &Value, names: &Names) -> String {
    let mut table = Table::new(&[
        "ID",
        "STATUS",
        "POLICY",
        "AGENT",
        "KIND",
        "ATTEMPT",
        "FIRE AT",
        "LAST ERROR",
    ])
    .right(5);
    for task in tasks.as_array().into_iter().flatten() {
        table.row(vec![
            text(&task["id"]),
            text(&task["status"]),
            names.policy(&task["policy"]),
            names.agent(&task["agent"]),
            text(&task["kind"]),
            text(&task["attempt"]),
            time(&task["fireAt"]),
            text(&task["lastError"]),
        ]);
    }
    table.render()
}

/// A name with its id: `web-1 (0190…)`, or the id alone when there is no name.
fn named(name: String, id: &Value) -> String {
    match name == text(id) {
        true => name,
        false => format!("{name} ({})", text(id)),
    }
}

fn task_details(task: &Value, names: &Names) -> String {
    let mut out = fields(&[
        ("id", text(&task["id"])),
        ("status", text(&task["status"])),
        (
            "policy",
            named(names.policy(&task["policy"]), &task["policy"]),
        ),
        ("agent", named(names.agent(&task["agent"]), &task["agent"])),
        ("kind", text(&task["kind"])),
        ("attempt", text(&task["attempt"])),
        ("fire at", time(&task["fireAt"])),
        ("run at", time(&task["runAt"])),
        ("retry due at", time(&task["retryDueAt"])),
        ("last error", text(&task["lastError"])),
    ]);
    if let Some(events) = task["events"].as_array() {
        out.push_str("\nevents:\n");
        for event in events {
            out.push_str(&history_line(event));
            out.push('\n');
        }
    }
    out
}

/// What a run left: its snapshot (short id, as restic shows it), else its error.
fn result(run: &Value) -> String {
    if let Some(snapshot) = run["snapshotId"].as_str() {
        return format!("snapshot {}", snapshot.chars().take(8).collect::<String>());
    }
    match (&run["errorClass"], &run["error"]) {
        (Value::Null, Value::Null) => "-".to_owned(),
        (class, Value::Null) => text(class),
        (Value::Null, error) => text(error),
        (class, error) => format!("{}: {}", text(class), text(error)),
    }
}

fn runs_table(runs: &Value, names: &Names) -> String {
    let mut table = Table::new(&[
        "FINISHED", "POLICY", "AGENT", "KIND", "ATTEMPT", "OUTCOME", "DURATION", "TASK", "RESULT",
    ])
    .right(4)
    .right(6);
    for run in runs.as_array().into_iter().flatten() {
        table.row(vec![
            time(&run["finishedAt"]),
            names.policy(&run["policy"]),
            names.agent(&run["agent"]),
            text(&run["kind"]),
            text(&run["attempt"]),
            text(&run["outcome"]),
            duration_ms(&run["durationMs"]),
            text(&run["task"]),
            result(run),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "01900000-0000-7000-8000-00000000000a";
    const POLICY: &str = "01900000-0000-5000-8000-00000000000b";
    const TASK: &str = "01900000-0000-7000-8000-0000000000aa";

    fn names() -> Names {
        Names::from_lists(
            &json!([{"id": AGENT, "name": "web-1"}]),
            &json!([{"id": POLICY, "spec": {"name": "nightly"}}]),
        )
    }

    fn task() -> Value {
        json!({"id": TASK, "status": "retry_scheduled", "policy": POLICY, "agent": AGENT,
            "kind": "backup", "attempt": 2, "lastError": "network",
            "fireAt": "2025-01-02T02:00:00Z", "runAt": "2025-01-02T02:00:03Z",
            "retryDueAt": "2025-01-02T02:05:00Z"})
    }

    #[test]
    fn tasks_are_listed_with_names() {
        let text = tasks_table(&json!([task()]), &names());
        assert_eq!(
            text,
            format!(
                "ID                                    STATUS           POLICY   AGENT  KIND    \
                 ATTEMPT  FIRE AT               LAST ERROR\n\
                 {TASK}  retry_scheduled  nightly  web-1  backup        2  \
                 2025-01-02T02:00:00Z  network\n"
            )
        );
    }

    #[test]
    fn a_task_shows_its_fields_then_its_history() {
        let mut with_events = task();
        with_events["events"] = json!([
            {"seq": 10, "type": "task.scheduled", "occurredAt": "2025-01-02T02:00:00Z",
             "aggregate": {"kind": "task", "id": TASK}, "summary": "scheduled for web-1"},
            {"seq": 14, "type": "task.failed", "occurredAt": "2025-01-02T02:00:09Z",
             "aggregate": {"kind": "task", "id": TASK}, "summary": "attempt 1 failed"},
        ]);
        let text = task_details(&with_events, &names());
        assert!(
            text.contains(&format!("policy:       nightly ({POLICY})")),
            "{text}"
        );
        assert!(
            text.contains("retry due at: 2025-01-02T02:05:00Z"),
            "{text}"
        );
        let history: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "events:")
            .skip(1)
            .collect();
        assert_eq!(history.len(), 2, "{text}");
        assert!(history[0].starts_with("      10  2025-01-02T02:00:00Z  task.scheduled"));
        assert!(history[1].ends_with("attempt 1 failed"));
        assert!(!task_details(&task(), &names()).contains("events:"));
    }

    #[test]
    fn runs_show_outcome_duration_and_snapshot_or_error() {
        let ok = json!({"task": TASK, "attempt": 1, "policy": POLICY, "agent": AGENT,
            "kind": "backup", "outcome": "succeeded", "errorClass": null, "error": null,
            "snapshotId": "4f1c2a9be0d3", "finishedAt": "2025-01-02T02:01:00Z",
            "durationMs": 61_000});
        let failed = json!({"task": TASK, "attempt": 2, "policy": POLICY, "agent": AGENT,
            "kind": "backup", "outcome": "failed", "errorClass": "network",
            "error": "connection refused", "snapshotId": null,
            "finishedAt": "2025-01-02T02:00:09Z", "durationMs": 900});
        let text = runs_table(&json!([ok, failed]), &names());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("succeeded"), "{text}");
        assert!(lines[1].contains("1m01s"), "{text}");
        assert!(lines[1].ends_with("snapshot 4f1c2a9b"), "{text}");
        assert!(lines[2].contains("nightly  web-1"), "{text}");
        assert!(lines[2].ends_with("network: connection refused"), "{text}");
    }
}
