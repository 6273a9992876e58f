//! `fleet restore`, `fleet repo refresh` and `fleet task watch`: ask an agent for a restore
//! or an inventory refresh over the HTTP API, and follow a task's live progress until it
//! ends.

use serde_json::{Value, json};

use crate::api_client::{ApiClient, ApiError, exit};
use crate::args::{OutputArg, RefreshArgs, RestoreArgs, SnapshotLsArgs};
use crate::events_cmd::{Frame, SseParser};
use crate::lookup;
use crate::output::{print, print_json, text};
use crate::table::Table;
use fleet_api_model::words::bytes;

/// Wait before opening a progress stream again that closed while its task ran.
const RECONNECT_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `fleet restore`.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let (snapshot, policy, agent) =
        resolve(&client, &args.snapshot, args.policy.as_deref(), &args.agent).await?;
    let body = json!({
        "policy": policy,
        "agent": agent,
        "snapshot": snapshot["id"],
        "target": args.target,
        "include": args.include,
        "dryRun": args.dry_run,
        "overwrite": args.overwrite,
    });
    let answer = client.post(&["v1", "restores"], &body).await?;
    let task = text(&answer["task"]);
    if args.api.output == OutputArg::Json && !args.watch {
        return print_json(&answer);
    }
    let dry = if args.dry_run { " (dry run)" } else { "" };
    print(&format!(
        "restore{dry} of snapshot {} requested: task {task}\n",
        short(&snapshot["id"])
    ))?;
    match args.watch {
        true => watch_task(&client, &task, args.api.output == OutputArg::Json).await,
        false => Ok(()),
    }
}

/// Runs `fleet snapshot ls`: every page of the directory, one table.
pub async fn ls(args: SnapshotLsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let (snapshot, policy, agent) =
        resolve(&client, &args.snapshot, args.policy.as_deref(), &args.agent).await?;
    let id = text(&snapshot["id"]);
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![
            ("policy", policy.clone()),
            ("agent", agent.clone()),
            ("path", args.path.clone()),
            ("limit", "1000".to_owned()),
        ];
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let page = client.get(&["v1", "snapshots", &id, "ls"], &query).await?;
        entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    if args.api.output == OutputArg::Json {
        return print_json(&json!({ "snapshot": id, "path": args.path, "entries": entries }));
    }
    print(&entries_table(&entries))
}

/// A directory listing: TYPE, SIZE, MODIFIED, NAME (directories end with `/`).
pub fn entries_table(entries: &[Value]) -> String {
    let mut table = Table::new(&["TYPE", "SIZE", "MODIFIED", "NAME"]).right(1);
    for e in entries {
        let dir = e["kind"] == "dir";
        let size = match e["size"].as_u64() {
            Some(n) if !dir => bytes(n),
            _ => "-".to_owned(),
        };
        let mut name = text(&e["name"]);
        if dir {
            name.push('/');
        }
        table.row(vec![
            text(&e["kind"]),
            size,
            crate::output::time(&e["mtime"]),
            name,
        ]);
    }
    table.render()
}

/// Runs `fleet repo refresh`.
pub async fn refresh(args: RefreshArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let policy = lookup::policy_id(&client, &args.policy).await?;
    let mut body = json!({});
    if let Some(agent) = &args.agent {
        body["agent"] = json!(lookup::agent_id(&client, agent).await?);
    }
    let answer = client
        .post(&["v1", "policies", &policy, "refresh"], &body)
        .await?;
    if args.api.output == OutputArg::Json {
        return print_json(&answer);
    }
    print(&format!(
        "inventory refresh requested: task {} on agent {}\n",
        text(&answer["task"]),
        text(&answer["agent"])
    ))
}

/// Follows `task`'s progress stream, one line per frame, until the task ends; an error
/// when it did not succeed. A stream that closes before the task ended (the API restarted)
/// is opened again, as `fleet events tail` does: its first frame says the status anew.
pub async fn watch_task(client: &ApiClient, task: &str, json: bool) -> anyhow::Result<()> {
    let path = ["v1", "tasks", task, "progress"];
    let mut status = String::new();
    loop {
        let opened = match client.stream(&path, None).await {
            Ok(response) => Some(response),
            // Unreachable, or 503, after the first frame: the API is away for a while.
            Err(e) if e.exit_code() == exit::UNAVAILABLE && !status.is_empty() => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(mut response) = opened {
            let mut parser = SseParser::default();
            // A dropped connection ends this stream like a closed one.
            while let Ok(Some(bytes)) = response.chunk().await {
                for frame in parser.push(&bytes) {
                    let Ok(data) = serde_json::from_str::<Value>(&frame.data) else {
                        continue;
                    };
                    if frame.event.as_deref() == Some("status") {
                        status = text(&data["status"]);
                    }
                    match json {
                        true => print(&format!(
                            "{}\n",
                            json!({ "event": frame.event, "data": data })
                        ))?,
                        false => print(&(watch_line(&frame, &data) + "\n"))?,
                    }
                }
            }
        }
        match watch_end(&status) {
            Some(true) => return Ok(()),
            Some(false) => return Err(anyhow::anyhow!("task {task} ended {status}")),
            None if status.is_empty() => {
                return Err(ApiError::BadAnswer {
                    url: format!("/v1/tasks/{task}/progress"),
                    reason: "the stream ended without a status".into(),
                }
                .into());
            }
            None => {
                eprintln!(
                    "fleet: the progress stream closed while the task is {status}; reconnecting"
                );
                tokio::time::sleep(RECONNECT_DELAY).await;
            }
        }
    }
}

/// Whether a task in `status` has ended, and if so whether it succeeded; `None` while it
/// can still change (or no status was seen).
pub fn watch_end(status: &str) -> Option<bool> {
    use fleet_events::task_state::TaskStatus;
    let status = TaskStatus::ALL.into_iter().find(|s| s.as_str() == status)?;
    status
        .is_terminal()
        .then_some(status == TaskStatus::Succeeded)
}

/// One line for people: `running  42.5%  405.3 MiB of 953.7 MiB  1200/4015 files  ETA 42s`,
/// or the task event's summary for a status frame.
pub fn watch_line(frame: &Frame, data: &Value) -> String {
    match frame.event.as_deref() {
        Some("progress") => {
            let mut line = format!(
                "{:>6.1}%  {} of {}  {}/{} files  {}s elapsed",
                data["percent"].as_f64().unwrap_or_default(),
                bytes(data["bytesDone"].as_u64().unwrap_or_default()),
                bytes(data["bytesTotal"].as_u64().unwrap_or_default()),
                data["filesDone"].as_u64().unwrap_or_default(),
                data["filesTotal"].as_u64().unwrap_or_default(),
                data["secondsElapsed"].as_u64().unwrap_or_default(),
            );
            if let Some(eta) = data["secondsRemaining"].as_u64() {
                line.push_str(&format!(", about {eta}s left"));
            }
            if let Some(errors) = data["errors"].as_u64().filter(|e| *e > 0) {
                line.push_str(&format!(", {errors} errors"));
            }
            line
        }
        _ => {
            let status = text(&data["status"]);
            match data["summary"].as_str() {
                Some(summary) => format!("[{status}] {summary}"),
                None => format!("[{status}]"),
            }
        }
    }
}

/// The inventory's snapshot `prefix` names, the policy to open its repository with (named,
/// else [`policy_for`]) and the agent's id.
async fn resolve(
    client: &ApiClient,
    prefix: &str,
    policy: Option<&str>,
    agent: &str,
) -> Result<(Value, String, String), ApiError> {
    let snapshot = find_snapshot(&all_snapshots(client).await?, prefix)?;
    let policy = match policy {
        Some(policy) => lookup::policy_id(client, policy).await?,
        None => {
            let policies = lookup::all_policies(client, false).await?;
            policy_for(&snapshot, &policies)?
        }
    };
    let agent = lookup::agent_id(client, agent).await?;
    Ok((snapshot, policy, agent))
}

/// Every snapshot of the tenant's inventory, page by page.
async fn all_snapshots(client: &ApiClient) -> Result<Value, ApiError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "500".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = client.get(&["v1", "snapshots"], &query).await?;
        all.extend(page["snapshots"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(Value::Array(all)),
        }
    }
}

/// The inventory's snapshot whose id starts with `prefix` (restic's short id or the full
/// one): exactly one, or an error that says what to do.
pub fn find_snapshot(snapshots: &Value, prefix: &str) -> Result<Value, ApiError> {
    let items = snapshots
        .as_array()
        .or_else(|| snapshots["snapshots"].as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < 4 {
        return Err(ApiError::Invalid(
            "name a snapshot by at least 4 digits of its id".into(),
        ));
    }
    let found: Vec<&Value> = items
        .iter()
        .filter(|s| s["id"].as_str().is_some_and(|id| id.starts_with(&prefix)))
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ApiError::NotFound(format!(
            "no snapshot {prefix} in the inventory (fleet snapshots lists it; \
             fleet repo refresh POLICY lists a repository again)"
        ))),
        several => Err(ApiError::Invalid(format!(
            "{} snapshots start with {prefix}: give more digits",
            several.len()
        ))),
    }
}

/// The policy to restore `snapshot` with: its own (from its `policy:` tag) if that policy
/// is live, else the one live policy on the same repository.
pub fn policy_for(snapshot: &Value, policies: &Value) -> Result<String, ApiError> {
    let live: Vec<&Value> = policies
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|p| p["deleted"] != Value::Bool(true))
        .collect();
    if let Some(own) = snapshot["policy"].as_str()
        && live.iter().any(|p| p["id"] == own)
    {
        return Ok(own.to_owned());
    }
    let repo = snapshot["repo"].as_str().unwrap_or_default();
    let same_repo: Vec<&str> = live
        .iter()
        .filter(|p| {
            let url = p["spec"]["repository"]["url"].as_str().unwrap_or_default();
            fleet_events::ids::RepoId::for_url(url).to_string() == repo
        })
        .filter_map(|p| p["id"].as_str())
        .collect();
    match same_repo.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(ApiError::NotFound(format!(
            "no live policy uses the repository of snapshot {}: name one with --policy",
            short(&snapshot["id"])
        ))),
        several => Err(ApiError::Invalid(format!(
            "{} policies use the repository of snapshot {}: name one with --policy",
            several.len(),
            short(&snapshot["id"])
        ))),
    }
}

fn short(id: &Value) -> String {
    text(id).chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "01900000-0000-5000-8000-00000000000b";
    const OTHER: &str = "01900000-0000-5000-8000-00000000000c";

    fn snapshot(id: &str, policy: Option<&str>, repo: &str) -> Value {
        json!({"id": id, "policy": policy, "repo": repo})
    }

    #[test]
    fn a_snapshot_is_found_by_a_prefix_of_its_id() {
        let a = "1e39d575".repeat(8);
        let b = "1e39ffff".repeat(8);
        let list = json!([snapshot(&a, None, "r"), snapshot(&b, None, "r")]);
        assert_eq!(find_snapshot(&list, "1e39d5").unwrap()["id"], a);
        assert!(matches!(
            find_snapshot(&list, "1e39"),
            Err(ApiError::Invalid(m)) if m.contains("2 snapshots")
        ));
        assert!(matches!(
            find_snapshot(&list, "abcdef"),
            Err(ApiError::NotFound(m)) if m.contains("fleet repo refresh")
        ));
        assert!(find_snapshot(&list, "1e").is_err());
    }

    #[test]
    fn a_snapshot_restores_with_its_own_policy_else_the_one_on_its_repository() {
        let url = "/srv/restic";
        let repo = fleet_events::ids::RepoId::for_url(url).to_string();
        let policies = json!([
            {"id": POLICY, "spec": {"repository": {"url": url}}},
            {"id": OTHER, "deleted": true, "spec": {"repository": {"url": url}}},
        ]);
        let own = snapshot(&"a".repeat(64), Some(POLICY), &repo);
        assert_eq!(policy_for(&own, &policies).unwrap(), POLICY);
        let orphan = snapshot(&"a".repeat(64), Some(OTHER), &repo);
        assert_eq!(policy_for(&orphan, &policies).unwrap(), POLICY);
        let external = snapshot(&"a".repeat(64), None, "elsewhere");
        assert!(matches!(
            policy_for(&external, &policies),
            Err(ApiError::NotFound(m)) if m.contains("--policy")
        ));
    }

    #[test]
    fn a_directory_lists_kind_size_time_and_name() {
        let entries = [
            json!({"name": "etc", "kind": "dir", "size": null, "mtime": "2025-01-02T03:04:05Z"}),
            json!({"name": "a.txt", "kind": "file", "size": 1536, "mtime": "2025-01-02T03:04:05Z"}),
        ];
        let text = entries_table(&entries);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["TYPE", "SIZE", "MODIFIED", "NAME"]
        );
        assert!(
            lines[1].starts_with("dir ") && lines[1].ends_with("etc/"),
            "{text}"
        );
        assert!(
            lines[2].contains("1.5 KiB") && lines[2].ends_with("a.txt"),
            "{text}"
        );
    }

    #[test]
    fn only_an_ended_task_ends_the_watch() {
        assert_eq!(watch_end("succeeded"), Some(true));
        for failed in ["exhausted", "cancelled", "skipped"] {
            assert_eq!(watch_end(failed), Some(false), "{failed}");
        }
        // Failed, lost and retrying tasks go on: the stream was closed under them.
        for going_on in [
            "running",
            "failed",
            "lost",
            "retry_scheduled",
            "scheduled",
            "",
        ] {
            assert_eq!(watch_end(going_on), None, "{going_on}");
        }
    }

    #[test]
    fn progress_reads_as_a_line() {
        let frame = Frame {
            event: Some("progress".into()),
            ..Frame::default()
        };
        let data = json!({"percent": 42.5, "bytesDone": 1_048_576, "bytesTotal": 2_097_152,
            "filesDone": 3, "filesTotal": 9, "secondsElapsed": 31, "secondsRemaining": 42,
            "errors": 0});
        assert_eq!(
            watch_line(&frame, &data),
            "  42.5%  1.0 MiB of 2.0 MiB  3/9 files  31s elapsed, about 42s left"
        );
        let status = Frame {
            event: Some("status".into()),
            ..Frame::default()
        };
        let data = json!({"status": "succeeded", "summary": "attempt 1 succeeded in 2 s"});
        assert_eq!(
            watch_line(&status, &data),
            "[succeeded] attempt 1 succeeded in 2 s"
        );
    }
}
