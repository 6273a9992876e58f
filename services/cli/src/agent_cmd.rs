//! `fleet agent ls|show|settings|decommission|register`: agents over the HTTP API.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::api_client::ApiClient;
use crate::args::{AgentArgs, AgentCommand, AgentSettingsArgs, OutputArg};
use crate::lookup;
use crate::output::{ago, print, print_json, text, time, written, yes_no};
use crate::table::{Table, fields};

/// Runs one `fleet agent` command.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let json = args.api.output == OutputArg::Json;
    match args.command {
        AgentCommand::Ls => {
            let agents = lookup::all_agents(&client).await?;
            match json {
                true => print_json(&agents),
                false => print(&agents_table(&agents, Utc::now())),
            }
        }
        AgentCommand::Show(target) => {
            let id = lookup::agent_id(&client, &target.agent).await?;
            let agent = client.get(&["v1", "agents", &id], &[]).await?;
            if json {
                return print_json(&agent);
            }
            // Policy names only when there is an overdue one to name.
            let names = match agent["overdue"].as_array().is_some_and(|o| !o.is_empty()) {
                true => lookup::Names::fetch(&client).await?,
                false => lookup::Names::default(),
            };
            print(&agent_details(&agent, &names, Utc::now()))
        }
        AgentCommand::Settings(change) => {
            let id = lookup::agent_id(&client, &change.agent).await?;
            let body = settings_patch(&change);
            let path = ["v1", "agents", &id, "settings"];
            let answer = client.call(Method::PATCH, &path, &[], Some(&body)).await?;
            match json {
                true => print_json(&answer),
                false => print(&written(
                    &format!("agent {}", change.agent),
                    "settings changed",
                    &answer,
                )),
            }
        }
        AgentCommand::Decommission(target) => {
            let id = lookup::agent_id(&client, &target.agent).await?;
            let path = ["v1", "agents", &id, "decommission"];
            let answer = client.post(&path, &json!({})).await?;
            match json {
                true => print_json(&answer),
                false => print(&written(
                    &format!("agent {}", target.agent),
                    "decommissioned",
                    &answer,
                )),
            }
        }
        AgentCommand::Register(register) => {
            let mut body = json!({"machineId": register.machine});
            if let Some(name) = &register.name {
                body["name"] = json!(name);
            }
            let answer = client.post(&["v1", "agents"], &body).await?;
            if json {
                return print_json(&answer);
            }
            let id = text(&answer["id"]);
            let fresh = answer["events"].as_array().is_some_and(|e| !e.is_empty());
            print(&match fresh {
                true => format!("agent {id} registered for machine {}", register.machine),
                false => format!(
                    "machine {} is registered already, as agent {id}",
                    register.machine
                ),
            })
        }
    }
}

/// The `PATCH /v1/agents/{id}/settings` body: only the settings given.
fn settings_patch(change: &AgentSettingsArgs) -> Value {
    let mut body = Map::new();
    let set = |map: &mut Map<String, Value>, key: &str, value: Option<Value>| {
        if let Some(value) = value {
            map.insert(key.to_owned(), value);
        }
    };
    set(
        &mut body,
        "maxConcurrent",
        change.max_concurrent.map(Value::from),
    );
    set(
        &mut body,
        "cpuQuotaPercent",
        change.cpu_quota.map(Value::from),
    );
    set(&mut body, "uploadKibS", change.upload_kib.map(Value::from));
    set(
        &mut body,
        "downloadKibS",
        change.download_kib.map(Value::from),
    );
    set(&mut body, "nice", change.nice.map(Value::from));
    let mut per_kind = Map::new();
    set(&mut per_kind, "backup", change.backup.map(Value::from));
    set(&mut per_kind, "check", change.check.map(Value::from));
    set(&mut per_kind, "prune", change.prune.map(Value::from));
    if !per_kind.is_empty() {
        body.insert("perKind".to_owned(), Value::Object(per_kind));
    }
    Value::Object(body)
}

/// decommissioned, unregistered (known only from tasks), online or offline.
fn state(agent: &Value) -> &'static str {
    if agent["decommissioned"] == true {
        "decommissioned"
    } else if agent["registered"] == false {
        "unregistered"
    } else if agent["online"] == true {
        "online"
    } else {
        "offline"
    }
}

/// Why it is saturated, or `-`.
fn saturation(agent: &Value) -> String {
    match (&agent["saturation"], agent["saturated"] == true) {
        (Value::String(why), _) => why.clone(),
        (_, true) => "yes".to_owned(),
        (_, false) => "-".to_owned(),
    }
}

/// The agents at `now`: LAST SEEN is how long ago each was last heard.
fn agents_table(agents: &Value, now: DateTime<Utc>) -> String {
    let mut table = Table::new(&[
        "NAME",
        "ID",
        "HOST",
        "STATE",
        "RUNNING",
        "SATURATED",
        "BACKOFF UNTIL",
        "LAST SEEN",
    ])
    .right(4);
    for agent in agents.as_array().into_iter().flatten() {
        table.row(vec![
            text(&agent["name"]),
            text(&agent["id"]),
            text(&agent["hostname"]),
            state(agent).to_owned(),
            format!(
                "{}/{}",
                text(&agent["runningTasks"]),
                text(&agent["settings"]["maxConcurrent"])
            ),
            saturation(agent),
            time(&agent["backoffUntil"]),
            ago(&agent["lastSeen"], now),
        ]);
    }
    table.render()
}

/// A limit that may be unset: `none` then.
fn limit(value: &Value, unit: &str) -> String {
    match value {
        Value::Null => "none".to_owned(),
        other => format!("{}{unit}", text(other)),
    }
}

fn io_class(value: &Value) -> String {
    match value {
        Value::String(class) => class.clone(),
        Value::Object(_) if value["bestEffort"].is_object() => {
            format!("best-effort {}", text(&value["bestEffort"]["level"]))
        }
        other => text(other),
    }
}

fn agent_details(agent: &Value, names: &lookup::Names, now: DateTime<Utc>) -> String {
    let settings = &agent["settings"];
    let kinds = |counts: &Value, missing: &str| {
        ["backup", "check", "prune"]
            .map(|kind| match &counts[kind] {
                Value::Null => format!("{kind} {missing}"),
                n => format!("{kind} {}", text(n)),
            })
            .join(", ")
    };
    let mut rows = vec![
        ("id", text(&agent["id"])),
        ("name", text(&agent["name"])),
        ("hostname", text(&agent["hostname"])),
        (
            "state",
            match &agent["offlineSince"] {
                Value::Null => state(agent).to_owned(),
                since => format!("offline since {} ({})", time(since), ago(since, now)),
            },
        ),
        ("registered at", time(&agent["registeredAt"])),
        (
            "last seen",
            match &agent["lastSeen"] {
                Value::Null => "never".to_owned(),
                seen => format!("{} ({})", time(seen), ago(seen, now)),
            },
        ),
        (
            "versions",
            format!(
                "agent {}, restic {}",
                text(&agent["agentVersion"]),
                text(&agent["resticVersion"])
            ),
        ),
        (
            "running",
            format!(
                "{} of {} ({})",
                text(&agent["runningTasks"]),
                text(&settings["maxConcurrent"]),
                kinds(&agent["runningByKind"], "0")
            ),
        ),
    ];
    // Known only where the agent's heartbeats are (the dispatcher); shown when answered.
    if !agent["queueDepth"].is_null() {
        rows.push(("queue depth", text(&agent["queueDepth"])));
    }
    rows.extend([
        (
            "saturated",
            match saturation(agent).as_str() {
                "-" => yes_no(false),
                why => format!("yes: {why}"),
            },
        ),
        ("backoff until", time(&agent["backoffUntil"])),
        ("pending retries", text(&agent["pendingRetries"])),
        ("max concurrent", text(&settings["maxConcurrent"])),
        ("per-kind limits", kinds(&settings["perKind"], "-")),
        ("cpu quota", limit(&settings["cpuQuotaPercent"], "%")),
        ("upload limit", limit(&settings["uploadKibS"], " KiB/s")),
        ("download limit", limit(&settings["downloadKibS"], " KiB/s")),
        ("nice", text(&settings["nice"])),
        ("io class", io_class(&settings["ioClass"])),
    ]);
    let overdue: Vec<String> = agent["overdue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let policy = names.policy(&entry["policy"]);
            format!("{policy} {}", crate::policy_cmd::overdue_since(entry))
        })
        .collect();
    crate::policy_cmd::push_list(&mut rows, "overdue", overdue);
    fields(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings_args(args: &[&str]) -> AgentSettingsArgs {
        let cli = crate::testing::Cli::try_parse_from(
            ["fleet", "agent", "settings", "web-1"]
                .iter()
                .chain(args.iter()),
        )
        .expect("parses");
        match cli.command {
            crate::args::Command::Agent(AgentArgs {
                command: AgentCommand::Settings(settings),
                ..
            }) => settings,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settings_flags_become_a_patch_of_only_those_fields() {
        assert_eq!(
            settings_patch(&settings_args(&["--max-concurrent", "4", "--backup", "2"])),
            json!({"maxConcurrent": 4, "perKind": {"backup": 2}})
        );
        assert_eq!(
            settings_patch(&settings_args(&[
                "--cpu-quota",
                "50",
                "--upload-kib",
                "1024",
                "--download-kib",
                "2048",
                "--nice",
                "-5",
                "--check",
                "1",
                "--prune",
                "1",
            ])),
            json!({"cpuQuotaPercent": 50, "uploadKibS": 1024, "downloadKibS": 2048,
                   "nice": -5, "perKind": {"check": 1, "prune": 1}})
        );
    }

    fn now() -> DateTime<Utc> {
        "2025-01-02T04:00:30Z".parse().unwrap()
    }

    fn agent() -> Value {
        json!({
            "id": "01900000-0000-7000-8000-00000000000a", "name": "web-1",
            "hostname": "web-1.example", "registered": true,
            "registeredAt": "2025-01-02T03:04:05.5Z", "decommissioned": false,
            "online": true, "lastSeen": "2025-01-02T04:00:00Z", "agentVersion": "0.1.0",
            "resticVersion": null,
            "settings": {"maxConcurrent": 2, "perKind": {"backup": 1, "check": null,
                "prune": null}, "cpuQuotaPercent": 50, "uploadKibS": null,
                "downloadKibS": 2048, "nice": 10, "ioClass": {"bestEffort": {"level": 7}}},
            "runningTasks": 1, "runningByKind": {"backup": 1, "check": 0, "prune": 0},
            "saturated": true, "saturation": "backup limit 1 reached",
            "backoffUntil": "2025-01-02T05:00:00Z", "pendingRetries": 2
        })
    }

    #[test]
    fn the_agent_list_shows_state_load_saturation_and_backoff() {
        let mut offline = agent();
        offline["online"] = json!(false);
        offline["saturated"] = json!(false);
        offline["saturation"] = json!(null);
        offline["backoffUntil"] = json!(null);
        offline["name"] = json!("db");
        offline["lastSeen"] = json!("2025-01-02T03:48:00Z");
        let text = agents_table(&json!([agent(), offline]), now());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAME   ID"), "{text}");
        assert!(lines[1].contains("online"), "{text}");
        assert!(lines[1].contains("1/2"), "{text}");
        assert!(lines[1].contains("backup limit 1 reached"), "{text}");
        assert!(lines[1].contains("2025-01-02T05:00:00Z"), "{text}");
        assert!(lines[2].starts_with("db "), "{text}");
        assert!(lines[2].contains("offline"), "{text}");
        assert!(lines[1].ends_with("30s ago"), "{text}");
        assert!(lines[2].ends_with("12m ago"), "{text}");
    }

    #[test]
    fn an_agents_details_include_load_saturation_backoff_and_settings() {
        let text = agent_details(&agent(), &lookup::Names::default(), now());
        for line in [
            "state:           online",
            "registered at:   2025-01-02T03:04:05Z",
            "last seen:       2025-01-02T04:00:00Z (30s ago)",
            "versions:        agent 0.1.0, restic -",
            "running:         1 of 2 (backup 1, check 0, prune 0)",
            "saturated:       yes: backup limit 1 reached",
            "backoff until:   2025-01-02T05:00:00Z",
            "pending retries: 2",
            "per-kind limits: backup 1, check -, prune -",
            "cpu quota:       50%",
            "upload limit:    none",
            "download limit:  2048 KiB/s",
            "io class:        best-effort 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        assert!(!text.contains("queue depth"), "not answered, not shown");
        assert!(text.lines().any(|l| l == "overdue:         -"), "{text}");
        let mut late = agent();
        late["overdue"] = json!([{"policy": "01900000-0000-5000-8000-00000000000b",
            "since": "2025-01-02T01:00:00Z", "lastSuccess": "2025-01-01T01:00:00Z"}]);
        let names = lookup::Names::from_lists(
            &json!([]),
            &json!([{"id": "01900000-0000-5000-8000-00000000000b", "spec": {"name": "nightly"}}]),
        );
        let text = agent_details(&late, &names, now());
        let line = "overdue:         nightly since 2025-01-02T01:00:00Z, last success \
                    2025-01-01T01:00:00Z";
        assert!(text.lines().any(|l| l == line), "{text}");
        let mut queued = agent();
        queued["queueDepth"] = json!(3);
        assert!(
            agent_details(&queued, &lookup::Names::default(), now()).contains("queue depth:     3")
        );
        let mut offline = agent();
        offline["online"] = json!(false);
        offline["offlineSince"] = json!("2025-01-02T04:00:00Z");
        let text = agent_details(&offline, &lookup::Names::default(), now());
        assert!(
            text.lines()
                .any(|l| l == "state:           offline since 2025-01-02T04:00:00Z (30s ago)"),
            "{text}"
        );
    }
}
