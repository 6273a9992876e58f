//! `fleet policy apply|create|ls|show|pause|resume|assign|unassign|run|delete`: policies
//! over the HTTP API. Policies are written in YAML, one document per policy, and sent as
//! JSON.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use fleet_api_model::words::{self, span_compact};
use fleet_events::schedule::Schedule;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_client::{ApiClient, ApiError};
use crate::args::{OutputArg, PolicyArgs, PolicyCommand};
use crate::lookup::{self, Names};
use crate::output::{print, print_json, text, time, written};
use crate::table::{Table, fields};

/// Runs one `fleet policy` command.
pub async fn run(args: PolicyArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let json = args.api.output == OutputArg::Json;
    match args.command {
        PolicyCommand::Apply(file) => send_documents(&client, &file.file, Send::Apply, json).await,
        PolicyCommand::Create(file) => {
            send_documents(&client, &file.file, Send::Create, json).await
        }
        PolicyCommand::Ls => {
            let policies = crate::lookup::all_policies(&client, false).await?;
            match json {
                true => print_json(&policies),
                false => print(&policies_table(&policies)),
            }
        }
        PolicyCommand::Show(target) => {
            let id = lookup::policy_id(&client, &target.policy).await?;
            let policy = client.get(&["v1", "policies", &id], &[]).await?;
            if json {
                return print_json(&policy);
            }
            let names = Names::fetch_agents(&client).await?;
            print(&policy_details(&policy, &names))
        }
        PolicyCommand::Pause(target) => {
            let path = ["v1", "policies", &target.policy, "pause"];
            let answer = client.post(&path, &json!({})).await?;
            report(json, &target.policy, "paused", &answer)
        }
        PolicyCommand::Resume(target) => {
            let path = ["v1", "policies", &target.policy, "resume"];
            let answer = client.post(&path, &json!({})).await?;
            report(json, &target.policy, "resumed", &answer)
        }
        PolicyCommand::Delete(target) => {
            let path = ["v1", "policies", &target.policy];
            let answer = client.call(Method::DELETE, &path, &[], None).await?;
            report(json, &target.policy, "deleted", &answer)
        }
        PolicyCommand::Assign(pair) => {
            let agent = lookup::agent_id(&client, &pair.agent).await?;
            let path = ["v1", "policies", &pair.policy, "agents", &agent];
            let answer = client.post(&path, &json!({})).await?;
            let verb = format!("assigned to agent {}", pair.agent);
            report(json, &pair.policy, &verb, &answer)
        }
        PolicyCommand::Unassign(pair) => {
            let agent = lookup::agent_id(&client, &pair.agent).await?;
            let path = ["v1", "policies", &pair.policy, "agents", &agent];
            let answer = client.call(Method::DELETE, &path, &[], None).await?;
            let verb = format!("unassigned from agent {}", pair.agent);
            report(json, &pair.policy, &verb, &answer)
        }
        PolicyCommand::Run(run) => {
            let mut body = json!({});
            if let Some(agent) = &run.agent {
                body["agent"] = json!(lookup::agent_id(&client, agent).await?);
            }
            let path = ["v1", "policies", &run.policy, "run"];
            let answer = client.post(&path, &body).await?;
            match json {
                true => print_json(&answer),
                false => print(&ran(&run.policy, &answer)),
            }
        }
    }
}

fn report(json: bool, policy: &str, verb: &str, answer: &Value) -> anyhow::Result<()> {
    match json {
        true => print_json(answer),
        false => print(&written(&format!("policy {policy}"), verb, answer)),
    }
}

/// Which endpoint the documents go to.
#[derive(Debug, Clone, Copy)]
enum Send {
    /// `POST /v1/policies/apply`: create or update.
    Apply,
    /// `POST /v1/policies`: create only.
    Create,
}

/// Sends each document of `file` in turn and says what each did; stops at the first that
/// fails (the documents before it stay applied). `-o json` prints the answers as one array.
async fn send_documents(
    client: &ApiClient,
    file: &Path,
    send: Send,
    json: bool,
) -> anyhow::Result<()> {
    let shown = match file == Path::new("-") {
        true => "stdin".to_owned(),
        false => file.display().to_string(),
    };
    let docs = documents(&read_input(file)?).with_context(|| format!("reading {shown}"))?;
    let mut answers = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let name = match doc["name"].as_str() {
            Some(name) => format!("policy {name}"),
            None => "a policy without a name".to_owned(),
        };
        let path: &[&str] = match send {
            Send::Apply => &["v1", "policies", "apply"],
            Send::Create => &["v1", "policies"],
        };
        let answer = client
            .post(path, doc)
            .await
            .with_context(|| format!("{name} (document {} of {shown})", i + 1))?;
        if !json {
            let verb = match (send, answer["created"].as_bool()) {
                (Send::Create, _) | (Send::Apply, Some(true)) => "created",
                (Send::Apply, _) => "updated",
            };
            print(&written(&name, verb, &answer))?;
        }
        answers.push(answer);
    }
    match json {
        true => print_json(&Value::Array(answers)),
        false => Ok(()),
    }
}

/// The text of `path`, or of stdin for `-`.
pub(crate) fn read_input(path: &Path) -> Result<String, ApiError> {
    let mut text = String::new();
    let read = match path == Path::new("-") {
        true => std::io::stdin().read_to_string(&mut text).map(|_| ()),
        false => std::fs::read_to_string(path).map(|t| text = t),
    };
    read.map_err(|e| ApiError::NotFound(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

/// The YAML documents of `text` (separated by `---`) as JSON objects; empty documents are
/// skipped, anything but a mapping is refused.
fn documents(text: &str) -> Result<Vec<Value>, ApiError> {
    yaml_documents(text, "policy", "name, schedule, kind, repository")
}

/// The YAML documents of `text` as JSON objects, each a `what` (a mapping of fields such
/// as `fields`); empty documents are skipped, anything but a mapping is refused.
pub(crate) fn yaml_documents(text: &str, what: &str, fields: &str) -> Result<Vec<Value>, ApiError> {
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = Value::deserialize(doc)
            .map_err(|e| ApiError::Invalid(format!("YAML document {n}: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(_) => docs.push(value),
            _ => {
                return Err(ApiError::Invalid(format!(
                    "YAML document {n} is not a {what} (a mapping of fields such as {fields})"
                )));
            }
        }
    }
    if docs.is_empty() {
        return Err(ApiError::Invalid(format!("no {what} in it")));
    }
    Ok(docs)
}

/// `cron 0 2 * * * (Europe/Berlin)` or `every 6h`.
fn schedule(schedule: &Value) -> String {
    match Schedule::deserialize(schedule) {
        Ok(schedule) => words::schedule(&schedule, true),
        Err(_) => text(schedule),
    }
}

/// `keep last 7, daily 14, within 30d, tags a b` or `none`.
fn retention(retention: &Value) -> String {
    let mut parts = Vec::new();
    for (field, label) in [
        ("keepLast", "last"),
        ("keepHourly", "hourly"),
        ("keepDaily", "daily"),
        ("keepWeekly", "weekly"),
        ("keepMonthly", "monthly"),
        ("keepYearly", "yearly"),
        ("keepWithin", "within"),
    ] {
        if !retention[field].is_null() {
            parts.push(format!("{label} {}", text(&retention[field])));
        }
    }
    if retention["keepTags"]
        .as_array()
        .is_some_and(|t| !t.is_empty())
    {
        parts.push(format!("tags {}", list(&retention["keepTags"])));
    }
    match parts.is_empty() {
        true => "none".to_owned(),
        false => format!("keep {}", parts.join(", ")),
    }
}

/// `skip`, or `run once within 1h`.
fn missed(missed: &Value) -> String {
    match missed["runOnce"]["startingDeadlineSecs"].as_u64() {
        Some(secs) => format!("run once within {}", span_compact(secs)),
        None => text(missed),
    }
}

/// A JSON array of strings as `a, b`, `-` if empty.
fn list(value: &Value) -> String {
    let items: Vec<String> = value.as_array().into_iter().flatten().map(text).collect();
    match items.is_empty() {
        true => "-".to_owned(),
        false => items.join(", "),
    }
}

fn state(policy: &Value) -> &'static str {
    if policy["deleted"] == true {
        "deleted"
    } else if policy["paused"] == true {
        "paused"
    } else {
        "active"
    }
}

fn policies_table(policies: &Value) -> String {
    let mut table = Table::new(&[
        "NAME",
        "KIND",
        "SCHEDULE",
        "AGENTS",
        "STATE",
        "NEXT FIRE",
        "OVERDUE",
        "ID",
    ])
    .right(3);
    for policy in policies.as_array().into_iter().flatten() {
        let spec = &policy["spec"];
        table.row(vec![
            text(&spec["name"]),
            text(&spec["kind"]),
            schedule(&spec["schedule"]),
            policy["agents"].as_array().map_or(0, Vec::len).to_string(),
            state(policy).to_owned(),
            time(&policy["nextFires"][0]),
            overdue_count(policy),
            text(&policy["id"]),
        ]);
    }
    table.render()
}

/// `-`, or on how many of its agents the policy is overdue: `1 of 3 agents`.
fn overdue_count(policy: &Value) -> String {
    let overdue = policy["overdue"].as_array().map_or(0, Vec::len);
    let agents = policy["agents"].as_array().map_or(0, Vec::len);
    match overdue {
        0 => "-".to_owned(),
        n => format!("{n} of {agents} agents"),
    }
}

/// `since T, last success T` (or `never succeeded`), of one overdue entry.
pub(crate) fn overdue_since(entry: &Value) -> String {
    let last = match &entry["lastSuccess"] {
        Value::Null => "never succeeded".to_owned(),
        at => format!("last success {}", time(at)),
    };
    format!("since {}, {last}", time(&entry["since"]))
}

fn policy_details(policy: &Value, names: &Names) -> String {
    let spec = &policy["spec"];
    let execution = &spec["execution"];
    let retry = &spec["retry"];
    let secs = |value: &Value| value.as_u64().map_or_else(|| text(value), span_compact);
    let mut rows = vec![
        ("name", text(&spec["name"])),
        ("id", text(&policy["id"])),
        ("state", state(policy).to_owned()),
        ("kind", text(&spec["kind"])),
        ("schedule", schedule(&spec["schedule"])),
        (
            "repository",
            format!(
                "{} (secret {})",
                text(&spec["repository"]["url"]),
                text(&spec["repository"]["secret"])
            ),
        ),
        ("include", list(&spec["include"])),
        ("exclude", list(&spec["exclude"])),
        ("retention", retention(&spec["retention"])),
        ("run timeout", secs(&execution["runTimeoutSecs"])),
        ("tags", list(&execution["tags"])),
        (
            "retries",
            format!(
                "{}, backoff {} to {}",
                text(&retry["maxRetries"]),
                secs(&retry["baseDelaySecs"]),
                secs(&retry["maxDelaySecs"])
            ),
        ),
        ("overlap", text(&spec["overlap"])),
        ("missed runs", missed(&spec["missed"])),
        ("priority", text(&spec["priority"])),
        ("jitter", secs(&spec["jitterSecs"])),
        ("created", time(&policy["createdAt"])),
        ("updated", time(&policy["updatedAt"])),
        ("revision", text(&policy["revision"])),
    ];
    if !policy["version"].is_null() {
        rows.push(("version", text(&policy["version"])));
    }
    let agents: Vec<String> = policy["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|id| match names.agent(id) {
            name if name == text(id) => name,
            name => format!("{name} ({})", text(id)),
        })
        .collect();
    push_list(&mut rows, "agents", agents);
    let overdue: Vec<String> = policy["overdue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| format!("{} {}", names.agent(&entry["agent"]), overdue_since(entry)))
        .collect();
    push_list(&mut rows, "overdue", overdue);
    let fires: Vec<String> = policy["nextFires"]
        .as_array()
        .into_iter()
        .flatten()
        .map(time)
        .collect();
    push_list(&mut rows, "next fires", fires);
    fields(&rows)
}

/// `label: first`, then one continuation line per further item; `-` when there is none.
pub(crate) fn push_list(rows: &mut Vec<(&str, String)>, label: &'static str, items: Vec<String>) {
    if items.is_empty() {
        rows.push((label, "-".to_owned()));
    }
    for (i, item) in items.into_iter().enumerate() {
        rows.push((if i == 0 { label } else { "" }, item));
    }
}

/// What `policy run` scheduled.
fn ran(policy: &str, answer: &Value) -> String {
    let tasks: Vec<String> = answer["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut out = match tasks.len() {
        0 => format!("policy {policy}: no task scheduled\n"),
        1 => format!("policy {policy}: 1 task scheduled\n"),
        n => format!("policy {policy}: {n} tasks scheduled\n"),
    };
    for task in tasks {
        out.push_str(&format!("  task {task}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
---
name: nightly
kind: backup
schedule:
  cron: {expr: '0 2 * * *', timezone: Europe/Berlin}
repository: {url: 'sftp:backup@nas:/srv/restic', secret: nas}
include: [/etc, /home]
retention: {keepDaily: 14, keepLast: 3}
agents: [web-1]
paused: false
---
# the weekly check
name: weekly-check
kind: check
schedule: {interval: {everySecs: 604800}}
repository: {url: /srv/repo, secret: local}
jitterSecs: 300
---
";

    #[test]
    fn each_yaml_document_becomes_one_json_document() {
        let docs = documents(YAML).expect("two documents");
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(
            docs[0],
            json!({
                "name": "nightly", "kind": "backup",
                "schedule": {"cron": {"expr": "0 2 * * *", "timezone": "Europe/Berlin"}},
                "repository": {"url": "sftp:backup@nas:/srv/restic", "secret": "nas"},
                "include": ["/etc", "/home"],
                "retention": {"keepDaily": 14, "keepLast": 3},
                "agents": ["web-1"], "paused": false
            })
        );
        assert_eq!(docs[1]["schedule"]["interval"]["everySecs"], 604_800);
        assert_eq!(docs[1]["jitterSecs"], 300);
        assert_eq!(documents("name: one\n").expect("one").len(), 1);
    }

    #[test]
    fn bad_yaml_is_invalid_input_naming_the_document() {
        let error = documents("name: a\n---\nname: [b\n").expect_err("bad");
        assert_eq!(error.exit_code(), 65);
        assert!(error.to_string().starts_with("YAML document 2:"), "{error}");
        let error = documents("- a\n- b\n").expect_err("a list");
        assert!(error.to_string().contains("not a policy"), "{error}");
        assert_eq!(error.exit_code(), 65);
        let error = documents("---\n# nothing\n").expect_err("empty");
        assert_eq!(error.to_string(), "no policy in it");
    }

    fn policy() -> Value {
        json!({
            "id": "01900000-0000-5000-8000-00000000000b",
            "spec": {
                "name": "nightly", "kind": "backup",
                "schedule": {"cron": {"expr": "0 2 * * *", "timezone": "Europe/Berlin"}},
                "repository": {"url": "/srv/repo", "secret": "local"},
                "include": ["/etc", "/home"], "exclude": [],
                "retention": {"keepLast": 3, "keepHourly": null, "keepDaily": 14,
                    "keepWeekly": null, "keepMonthly": null, "keepYearly": null,
                    "keepWithin": null, "keepTags": []},
                "execution": {"runTimeoutSecs": 21600, "tags": ["fleet"], "host": null,
                    "initIfMissing": false},
                "retry": {"maxRetries": 5, "baseDelaySecs": 30, "maxDelaySecs": 3600},
                "overlap": "forbid", "missed": {"runOnce": {"startingDeadlineSecs": 3600}},
                "priority": 100, "jitterSecs": 0
            },
            "paused": false, "deleted": false,
            "agents": ["01900000-0000-7000-8000-00000000000a",
                       "01900000-0000-7000-8000-00000000000c"],
            "createdAt": "2025-01-02T03:04:05Z", "updatedAt": "2025-01-02T03:04:05Z",
            "revision": 1, "version": 4,
            "nextFires": ["2025-01-03T01:00:00Z", "2025-01-04T01:00:00Z"],
            "overdue": [{"agent": "01900000-0000-7000-8000-00000000000a",
                         "since": "2025-01-02T02:00:00Z", "lastSuccess": null}]
        })
    }

    #[test]
    fn the_policy_list_summarises_each_policy() {
        let mut paused = policy();
        paused["paused"] = json!(true);
        paused["nextFires"] = json!([]);
        paused["spec"]["name"] = json!("hourly");
        paused["spec"]["schedule"] = json!({"interval": {"everySecs": 3600}});
        let text = policies_table(&json!([policy(), paused]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with(
                "nightly  backup  cron 0 2 * * * (Europe/Berlin)       2  active  \
                 2025-01-03T01:00:00Z"
            ),
            "{text}"
        );
        assert!(lines[2].contains("every 1h"), "{text}");
        assert!(lines[2].contains("paused  -"), "{text}");
        assert!(lines[1].contains("Z  1 of 2 agents  0190"), "{text}");
        paused["overdue"] = json!([]);
        let text = policies_table(&json!([paused]));
        assert!(text.contains("paused  -          -        0190"), "{text}");
    }

    #[test]
    fn a_policys_details_show_spec_state_agents_and_next_fires() {
        let names = Names::from_lists(
            &json!([{"id": "01900000-0000-7000-8000-00000000000a", "name": "web-1"}]),
            &json!([]),
        );
        let text = policy_details(&policy(), &names);
        for line in [
            "state:       active",
            "schedule:    cron 0 2 * * * (Europe/Berlin)",
            "repository:  /srv/repo (secret local)",
            "include:     /etc, /home",
            "exclude:     -",
            "retention:   keep last 3, daily 14",
            "run timeout: 6h",
            "retries:     5, backoff 30s to 1h",
            "missed runs: run once within 1h",
            "version:     4",
            "agents:      web-1 (01900000-0000-7000-8000-00000000000a)",
            "             01900000-0000-7000-8000-00000000000c",
            "next fires:  2025-01-03T01:00:00Z",
            "             2025-01-04T01:00:00Z",
            "overdue:     web-1 since 2025-01-02T02:00:00Z, never succeeded",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn missed_runs_read_in_words() {
        assert_eq!(missed(&json!("skip")), "skip");
        assert_eq!(
            missed(&json!({"runOnce": {"startingDeadlineSecs": 7200}})),
            "run once within 2h"
        );
    }

    #[test]
    fn a_run_lists_the_tasks_it_scheduled() {
        let answer = json!({"id": "p", "version": 9, "events": ["task.scheduled"],
            "tasks": ["t1", "t2"]});
        assert_eq!(
            ran("nightly", &answer),
            "policy nightly: 2 tasks scheduled\n  task t1\n  task t2\n"
        );
        assert_eq!(
            ran("nightly", &json!({"events": [], "tasks": []})),
            "policy nightly: no task scheduled\n"
        );
    }
}
