//! `fleet agent ls|show|settings|decommission|register`: agents over the HTTP API.

use chrono::{DateTime, Utc};
use fleet_api_model::dto::Agent;
use fleet_events::settings::IoClass;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::api_client::ApiClient;
use crate::args::{AgentArgs, AgentCommand, AgentSettingsArgs, OutputArg};
use crate::lookup;
use crate::output::{ago_of, print, print_json, text, time_of, written, yes_no};
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
                false => print(&agents_table(&typed::<Vec<Agent>>(&agents)?, Utc::now())),
            }
        }
        AgentCommand::Show(target) => {
            let id = lookup::agent_id(&client, &target.agent).await?;
            let agent = client.get(&["v1", "agents", &id], &[]).await?;
            if json {
                return print_json(&agent);
            }
            let agent: Agent = typed(&agent)?;
            // Policy names only when there is an overdue one to name.
            let names = match agent.overdue.is_empty() {
                false => lookup::Names::fetch(&client).await?,
                true => lookup::Names::default(),
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

/// The API's answer read as the shape it promises (`fleet_api_model::dto`).
fn typed<T: serde::de::DeserializeOwned>(answer: &Value) -> anyhow::Result<T> {
    serde_json::from_value(answer.clone()).map_err(|e| {
        anyhow::anyhow!(
            "the API's answer is not the {} this fleet expects ({e}); is the API a \
             different version?",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("shape")
        )
    })
}

/// decommissioned, unregistered (known only from tasks), online or offline.
fn state(agent: &Agent) -> &'static str {
    if agent.decommissioned {
        "decommissioned"
    } else if !agent.registered {
        "unregistered"
    } else if agent.online {
        "online"
    } else {
        "offline"
    }
}

/// Why it is saturated, or `-`.
fn saturation(agent: &Agent) -> String {
    match (&agent.saturation, agent.saturated) {
        (Some(why), _) => why.clone(),
        (None, true) => "yes".to_owned(),
        (None, false) => "-".to_owned(),
    }
}

/// The agents at `now`: LAST SEEN is how long ago each was last heard.
fn agents_table(agents: &[Agent], now: DateTime<Utc>) -> String {
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
    for agent in agents {
        table.row(vec![
            agent.name.clone(),
            agent.id.to_string(),
            agent.hostname.clone(),
            state(agent).to_owned(),
            format!("{}/{}", agent.running_tasks, agent.settings.max_concurrent),
            saturation(agent),
            time_of(agent.backoff_until),
            agent
                .last_seen
                .map_or_else(|| "-".to_owned(), |seen| ago_of(seen, now)),
        ]);
    }
    table.render()
}

/// A limit that may be unset: `none` then.
fn limit(value: Option<impl std::fmt::Display>, unit: &str) -> String {
    value.map_or_else(|| "none".to_owned(), |v| format!("{v}{unit}"))
}

fn io_class(class: IoClass) -> String {
    match class {
        IoClass::Idle => "idle".to_owned(),
        IoClass::BestEffort { level } => format!("best-effort {level}"),
    }
}

/// `when (how long ago)`, or `none` for no time.
fn when(at: Option<DateTime<Utc>>, none: &str, now: DateTime<Utc>) -> String {
    at.map_or_else(
        || none.to_owned(),
        |t| format!("{} ({})", time_of(Some(t)), ago_of(t, now)),
    )
}

fn agent_details(agent: &Agent, names: &lookup::Names, now: DateTime<Utc>) -> String {
    let settings = &agent.settings;
    let running = &agent.running_by_kind;
    let limits = &settings.per_kind;
    let or_dash = |v: Option<u16>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let state = match agent.offline_since {
        None => state(agent).to_owned(),
        Some(since) => format!("offline since {}", when(Some(since), "", now)),
    };
    let mut rows = vec![
        ("id", agent.id.to_string()),
        ("name", agent.name.clone()),
        ("hostname", agent.hostname.clone()),
        ("state", state),
        ("registered at", time_of(agent.registered_at)),
        ("last seen", when(agent.last_seen, "never", now)),
        (
            "versions",
            format!(
                "agent {}, restic {}",
                agent.agent_version.as_deref().unwrap_or("-"),
                agent.restic_version.as_deref().unwrap_or("-")
            ),
        ),
        (
            "running",
            format!(
                "{} of {} (backup {}, check {}, prune {})",
                agent.running_tasks,
                settings.max_concurrent,
                running.backup,
                running.check,
                running.prune
            ),
        ),
        ("queue depth", agent.queue_depth.to_string()),
        (
            "saturated",
            match saturation(agent).as_str() {
                "-" => yes_no(false),
                why => format!("yes: {why}"),
            },
        ),
        ("backoff until", time_of(agent.backoff_until)),
        ("pending retries", agent.pending_retries.to_string()),
        ("max concurrent", settings.max_concurrent.to_string()),
        (
            "per-kind limits",
            format!(
                "backup {}, check {}, prune {}",
                or_dash(limits.backup),
                or_dash(limits.check),
                or_dash(limits.prune)
            ),
        ),
        ("cpu quota", limit(settings.cpu_quota_percent, "%")),
        ("upload limit", limit(settings.upload_kib_s, " KiB/s")),
        ("download limit", limit(settings.download_kib_s, " KiB/s")),
        ("nice", settings.nice.to_string()),
        ("io class", io_class(settings.io_class)),
    ];
    let overdue: Vec<String> = agent
        .overdue
        .iter()
        .map(|entry| {
            let entry = json!(entry);
            let policy = names.policy(&entry["policy"]);
            format!("{policy} {}", crate::policy_cmd::overdue_since(&entry))
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
            "runningTasks": 1,
            "runningByKind": {"backup": 1, "check": 0, "prune": 0, "restore": 0, "refresh": 0},
            "queueDepth": 0,
            "queuedByKind": {"backup": 0, "check": 0, "prune": 0, "restore": 0, "refresh": 0},
            "offlineSince": null, "overdue": [],
            "saturated": true, "saturation": "backup limit 1 reached",
            "backoffUntil": "2025-01-02T05:00:00Z", "pendingRetries": 2
        })
    }

    #[test]
    fn an_answer_of_another_shape_is_refused_saying_what_was_expected() {
        let mut old = agent();
        old["runningTasks"] = json!("many");
        let error = typed::<Agent>(&old).expect_err("not an agent").to_string();
        assert!(
            error.contains("not the Agent this fleet expects"),
            "{error}"
        );
        assert!(
            error.contains("runningTasks") || error.contains("invalid type"),
            "{error}"
        );
    }

    /// An answer as the CLI reads it.
    fn read(answer: &Value) -> Agent {
        typed(answer).expect("an agent as the API answers it")
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
        let text = agents_table(&[read(&agent()), read(&offline)], now());
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
        let text = agent_details(&read(&agent()), &lookup::Names::default(), now());
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
        assert!(text.lines().any(|l| l == "queue depth:     0"), "{text}");
        assert!(text.lines().any(|l| l == "overdue:         -"), "{text}");
        let mut late = agent();
        late["overdue"] = json!([{"policy": "01900000-0000-5000-8000-00000000000b",
            "since": "2025-01-02T01:00:00Z", "lastSuccess": "2025-01-01T01:00:00Z"}]);
        let names = lookup::Names::from_lists(
            &json!([]),
            &json!([{"id": "01900000-0000-5000-8000-00000000000b", "spec": {"name": "nightly"}}]),
        );
        let text = agent_details(&read(&late), &names, now());
        let line = "overdue:         nightly since 2025-01-02T01:00:00Z, last success \
                    2025-01-01T01:00:00Z";
        assert!(text.lines().any(|l| l == line), "{text}");
        let mut queued = agent();
        queued["queueDepth"] = json!(3);
        assert!(
            agent_details(&read(&queued), &lookup::Names::default(), now())
                .contains("queue depth:     3")
        );
        let mut offline = agent();
        offline["online"] = json!(false);
        offline["offlineSince"] = json!("2025-01-02T04:00:00Z");
        let text = agent_details(&read(&offline), &lookup::Names::default(), now());
        assert!(
            text.lines()
                .any(|l| l == "state:           offline since 2025-01-02T04:00:00Z (30s ago)"),
            "{text}"
        );
    }
}
