//! `fleet notify add|ls|rm|test|log`: notification rules and the notification log over
//! the HTTP API. Rules are written in YAML (one document per rule) or given by options,
//! and sent as JSON; the API checks them.

use std::path::Path;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::args::OutputArg;
use crate::notify_args::{NotifyAddArgs, NotifyArgs, NotifyCommand, NotifyLogArgs};
use crate::output::{print, print_json, text, time, written};
use crate::policy_cmd::{read_input, yaml_documents};
use crate::table::Table;

/// Runs one `fleet notify` command.
pub async fn run(args: NotifyArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let json = args.api.output == OutputArg::Json;
    match args.command {
        NotifyCommand::Add(add) => {
            let docs = match &add.file {
                Some(file) => file_documents(file)?,
                None => vec![short_document(&add)],
            };
            add_rules(&client, &docs, json).await
        }
        NotifyCommand::Ls => {
            let rules = client.get(&["v1", "rules"], &[]).await?;
            match json {
                true => print_json(&rules),
                false => print(&rules_table(&rules)),
            }
        }
        NotifyCommand::Rm(rule) => {
            let path = ["v1", "rules", &rule.rule];
            let answer = client.call(Method::DELETE, &path, &[], None).await?;
            match json {
                true => print_json(&answer),
                false => print(&written(&format!("rule {}", rule.rule), "deleted", &answer)),
            }
        }
        NotifyCommand::Test(rule) => {
            let path = ["v1", "rules", &rule.rule, "test"];
            let answer = client.post(&path, &json!({})).await?;
            match json {
                true => print_json(&answer),
                false => print(&format!(
                    "{}; `fleet notify log --rule {}` shows how it went",
                    written(
                        &format!("rule {}", rule.rule),
                        "test notification asked for",
                        &answer
                    ),
                    rule.rule
                )),
            }
        }
        NotifyCommand::Log(log) => {
            let list = client
                .get(&["v1", "notifications"], &log_query(&log))
                .await?;
            match json {
                true => print_json(&list),
                false => print(&log_table(&list)),
            }
        }
    }
}

fn file_documents(file: &Path) -> anyhow::Result<Vec<Value>> {
    let shown = match file == Path::new("-") {
        true => "stdin".to_owned(),
        false => file.display().to_string(),
    };
    let text = read_input(file)?;
    let docs = yaml_documents(&text, "rule", "name, on, target")
        .with_context(|| format!("reading {shown}"))?;
    Ok(docs)
}

/// Sends each rule in turn and says what each did; stops at the first that fails (the
/// rules before it stay defined). `-o json` prints the answers as one array.
async fn add_rules(client: &ApiClient, docs: &[Value], json: bool) -> anyhow::Result<()> {
    let mut answers = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let name = match doc["name"].as_str() {
            Some(name) => format!("rule {name}"),
            None => "a rule without a name".to_owned(),
        };
        let answer =
            client
                .post(&["v1", "rules"], doc)
                .await
                .with_context(|| match docs.len() {
                    1 => name.clone(),
                    n => format!("{name} (document {} of {n})", i + 1),
                })?;
        if !json {
            let verb = match answer["created"].as_bool() {
                Some(true) => "created",
                _ => "replaced",
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

/// The rule document the options of `fleet notify add NAME ...` describe.
fn short_document(args: &NotifyAddArgs) -> Value {
    let (kind, field, value) = [
        ("webhook", "url", &args.webhook),
        ("webhook", "urlSecret", &args.webhook_secret),
        ("slack", "urlSecret", &args.slack_secret),
        ("ntfy", "url", &args.ntfy),
        ("ntfy", "urlSecret", &args.ntfy_secret),
        ("gotify", "urlSecret", &args.gotify_secret),
        ("healthchecks", "urlSecret", &args.healthchecks_secret),
    ]
    .into_iter()
    .find_map(|(kind, field, value)| value.as_ref().map(|v| (kind, field, v.clone())))
    // Clap requires one target with a name; without, the API names the missing field.
    .unwrap_or(("webhook", "url", String::new()));
    let mut target = json!({ "kind": kind, field: value });
    if let Some(hmac) = &args.hmac_secret {
        target["hmacSecret"] = json!(hmac);
    }
    json!({
        "name": args.name,
        "on": args.on,
        "policies": args.policy,
        "agents": args.agent,
        "target": target,
    })
}

fn log_query(args: &NotifyLogArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(rule) = &args.rule {
        query.push(("rule", rule.clone()));
    }
    if let Some(state) = &args.state {
        query.push(("state", state.clone()));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    query
}

/// A JSON array of strings as `a, b`; `all` when empty.
fn names(value: &Value, empty: &str) -> String {
    let items: Vec<String> = value.as_array().into_iter().flatten().map(text).collect();
    match items.is_empty() {
        true => empty.to_owned(),
        false => items.join(", "),
    }
}

/// `webhook https://…`, `slack (secret team-hook)`, `webhook (secret h), signed (secret k)`.
fn target(target: &Value) -> String {
    let mut out = text(&target["kind"]);
    match (target["url"].as_str(), target["urlSecret"].as_str()) {
        (Some(url), _) => out.push_str(&format!(" {url}")),
        (None, Some(secret)) => out.push_str(&format!(" (secret {secret})")),
        (None, None) => {}
    }
    if let Some(hmac) = target["hmacSecret"].as_str() {
        out.push_str(&format!(", signed (secret {hmac})"));
    }
    out
}

fn rules_table(rules: &Value) -> String {
    let mut table = Table::new(&["NAME", "ON", "TARGET", "POLICIES", "AGENTS", "UPDATED"]);
    for rule in rules.as_array().into_iter().flatten() {
        let spec = &rule["spec"];
        table.row(vec![
            text(&spec["name"]),
            // Left out in the rule: the default triggers (README lists them).
            names(&spec["on"], "default"),
            target(&spec["target"]),
            names(&spec["policies"], "all"),
            names(&spec["agents"], "all"),
            time(&rule["updatedAt"]),
        ]);
    }
    table.render()
}

/// What became of a notification, in a few words.
fn outcome(notification: &Value) -> String {
    let error = text(&notification["lastError"]);
    match notification["state"].as_str() {
        Some("delivered") => format!("HTTP {}", text(&notification["lastStatus"])),
        Some("failed") => format!(
            "{error}; next attempt {}",
            time(&notification["nextAttemptAt"])
        ),
        Some("deadLettered") => error,
        _ => "-".to_owned(),
    }
}

fn log_table(list: &Value) -> String {
    let mut table = Table::new(&[
        "TIME", "RULE", "EVENT", "STATE", "ATTEMPTS", "TITLE", "OUTCOME",
    ])
    .right(4);
    for notification in list.as_array().into_iter().flatten() {
        let rule = match &notification["ruleName"] {
            Value::Null => text(&notification["rule"]),
            name => text(name),
        };
        let event = match &notification["trigger"] {
            Value::Null => "test".to_owned(),
            trigger => text(trigger),
        };
        table.row(vec![
            time(&notification["at"]),
            rule,
            event,
            text(&notification["state"]),
            text(&notification["attempts"]),
            text(&notification["title"]),
            outcome(notification),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::Command;
    use crate::testing::Cli;

    fn add(args: &[&str]) -> NotifyAddArgs {
        let all: Vec<&str> = ["fleet", "notify", "add"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        let cli = Cli::try_parse_from(all).expect("parses");
        match cli.command {
            Command::Notify(NotifyArgs {
                command: NotifyCommand::Add(add),
                ..
            }) => *add,
            other => panic!("notify add: {other:?}"),
        }
    }

    #[test]
    fn the_short_form_makes_a_rule_document() {
        let doc = short_document(&add(&[
            "ops",
            "--webhook-secret",
            "ops-hook",
            "--hmac-secret",
            "ops-key",
            "--on",
            "taskFailed",
            "--on",
            "agentOffline",
            "--policy",
            "db nightly",
            "--agent",
            "db-1",
        ]));
        assert_eq!(
            doc,
            json!({
                "name": "ops", "on": ["taskFailed", "agentOffline"],
                "policies": ["db nightly"], "agents": ["db-1"],
                "target": {"kind": "webhook", "urlSecret": "ops-hook", "hmacSecret": "ops-key"},
            })
        );
        let doc = short_document(&add(&["alerts", "--ntfy", "https://ntfy.sh/fleet"]));
        assert_eq!(
            doc["target"],
            json!({"kind": "ntfy", "url": "https://ntfy.sh/fleet"})
        );
        assert_eq!(doc["on"], json!([]), "the API's default triggers");
        let doc = short_document(&add(&["hc", "--healthchecks-secret", "hc-db"]));
        assert_eq!(doc["target"]["kind"], "healthchecks");
    }

    #[test]
    fn the_command_line_wants_one_target_or_a_file() {
        for args in [
            &["fleet", "notify", "add", "ops"][..],
            &["fleet", "notify", "add"],
            &[
                "fleet",
                "notify",
                "add",
                "ops",
                "--ntfy",
                "u",
                "--slack-secret",
                "s",
            ],
            &["fleet", "notify", "add", "ops", "-f", "r.yaml"],
            &[
                "fleet",
                "notify",
                "add",
                "-f",
                "r.yaml",
                "--on",
                "taskFailed",
            ],
            &[
                "fleet",
                "notify",
                "add",
                "o",
                "--ntfy",
                "u",
                "--on",
                "taskExploded",
            ],
            &["fleet", "notify", "log", "--state", "lost"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        assert!(add(&["-f", "rules.yaml"]).file.is_some());
    }

    #[test]
    fn rules_show_their_triggers_target_and_filters() {
        let rules = json!([{
            "id": "r", "version": 3, "updatedAt": "2025-01-02T03:04:05Z",
            "triggers": ["taskExhausted", "agentOffline"],
            "spec": {"name": "ops", "on": ["taskExhausted", "agentOffline"], "policies": [],
                "agents": ["db-1"],
                "target": {"kind": "webhook", "url": null, "urlSecret": "ops-hook",
                    "hmacSecret": "ops-key"}},
        }]);
        let table = rules_table(&rules);
        let line = table.lines().nth(1).expect("a row");
        assert_eq!(
            line,
            "ops   taskExhausted, agentOffline  webhook (secret ops-hook), signed (secret \
             ops-key)  all       db-1    2025-01-02T03:04:05Z"
        );
        let mut default = rules.clone();
        default[0]["spec"]["on"] = json!([]);
        let table = rules_table(&default);
        assert!(
            table
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("ops   default  webhook")
        );
    }

    #[test]
    fn the_log_says_how_each_delivery_went() {
        let list = json!([
            {"at": "2025-01-02T03:04:05Z", "rule": "r1", "ruleName": null, "trigger": null,
             "state": "pending", "attempts": 0, "title": "a test", "lastError": null,
             "lastStatus": null, "nextAttemptAt": null},
            {"at": "2025-01-02T03:00:00Z", "rule": "r2", "ruleName": "ops",
             "trigger": "taskExhausted", "state": "failed", "attempts": 2,
             "title": "backup failed", "lastError": "HTTP 503", "lastStatus": null,
             "nextAttemptAt": "2025-01-02T03:10:00Z"},
            {"at": "2025-01-02T02:00:00Z", "rule": "r2", "ruleName": "ops",
             "trigger": "agentOffline", "state": "delivered", "attempts": 1,
             "title": "db-1 offline", "lastError": null, "lastStatus": 204,
             "nextAttemptAt": null},
        ]);
        let table = log_table(&list);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[1].contains("r1    test"), "{table}");
        assert_eq!(
            lines[1],
            "2025-01-02T03:04:05Z  r1    test           pending           0  a test         -"
        );
        assert!(
            lines[2].ends_with("HTTP 503; next attempt 2025-01-02T03:10:00Z"),
            "{table}"
        );
        assert!(lines[3].ends_with("HTTP 204"), "{table}");
    }
}
