//! `fleet snapshots`: the snapshot inventory over the HTTP API, newest first, every page
//! (or the first `--limit`), as a table or the API's JSON.

use serde_json::Value;

use crate::api_client::{ApiClient, ApiError};
use crate::args::{OutputArg, SnapshotsArgs};
use crate::lookup;
use crate::output::{print, print_json, text, time};
use crate::table::Table;
use fleet_api_model::words::bytes;
use fleet_events::ids::RepoId;

/// Snapshots asked for per request (the API's largest page).
const PAGE: usize = 500;

/// Runs `fleet snapshots`.
pub async fn run(args: SnapshotsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let mut query = Vec::new();
    let repo = args.repo.as_deref().map(repo_id);
    if let Some(repo) = &repo {
        query.push(("repo", repo.clone()));
    }
    if let Some(agent) = &args.agent {
        query.push(("agent", lookup::agent_id(&client, agent).await?));
    }
    if let Some(policy) = &args.policy {
        query.push(("policy", lookup::policy_id(&client, policy).await?));
    }
    let snapshots = fetch(&client, &query, args.limit).await?;
    if snapshots.is_empty()
        && let Some(repo) = &repo
    {
        // A repository the tenant does not know is 404 (exit 66), not an empty list.
        let path = ["v1", "repositories", repo.as_str(), "snapshots"];
        client.get(&path, &[("limit", "1".to_owned())]).await?;
    }
    if args.json || args.api.output == OutputArg::Json {
        return print_json(&Value::Array(snapshots));
    }
    print(&table(&snapshots))
}

/// Every snapshot that passes `query` (at most `limit`), following the pages' cursors.
async fn fetch(
    client: &ApiClient,
    query: &[(&'static str, String)],
    limit: Option<usize>,
) -> Result<Vec<Value>, ApiError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = limit.map_or(PAGE, |limit| limit.saturating_sub(all.len()).min(PAGE));
        if want == 0 {
            return Ok(all);
        }
        let mut page_query = query.to_vec();
        page_query.push(("limit", want.to_string()));
        if let Some(cursor) = cursor.take() {
            page_query.push(("cursor", cursor));
        }
        let page = client.get(&["v1", "snapshots"], &page_query).await?;
        all.extend(page["snapshots"].as_array().into_iter().flatten().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}

/// A repository's id: `text` if it is one, else the id of the URL `text`.
fn repo_id(text: &str) -> String {
    match uuid::Uuid::parse_str(text) {
        Ok(_) => text.to_owned(),
        Err(_) => RepoId::for_url(text).to_string(),
    }
}

/// The table for people: short id, time, host, paths, size, the policy's name (or
/// `external`), and the tags other than the fleet's own `policy:` and `task:`.
fn table(snapshots: &[Value]) -> String {
    let mut table = Table::new(&["ID", "TIME", "HOST", "PATHS", "SIZE", "POLICY", "TAGS"]).right(4);
    for s in snapshots {
        let mut paths: Vec<String> = strings(&s["paths"]);
        if let Some(more) = s["morePaths"].as_u64().filter(|n| *n > 0) {
            paths.push(format!("+{more}"));
        }
        let tags: Vec<String> = strings(&s["tags"])
            .into_iter()
            .filter(|t| !t.starts_with("policy:") && !t.starts_with("task:"))
            .collect();
        let policy = match s["external"].as_bool() {
            Some(true) => "external".to_owned(),
            _ => text(&s["policyName"]),
        };
        table.row(vec![
            text(&s["shortId"]),
            time(&s["time"]),
            text(&s["host"]),
            paths.join(","),
            s["sizeBytes"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), bytes),
            policy,
            if tags.is_empty() {
                "-".to_owned()
            } else {
                tags.join(",")
            },
        ]);
    }
    table.render()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_names_the_policy_or_external_and_leaves_the_fleets_tags_out() {
        let snapshots = [
            json!({
                "shortId": "5e1c0a3f", "time": "2026-11-02T03:04:05.678Z", "host": "db-1",
                "paths": ["/srv", "/etc"], "morePaths": 0,
                "tags": ["policy:0190", "task:0191", "nightly"],
                "sizeBytes": 1_572_864, "external": false, "policyName": "db nightly",
            }),
            json!({
                "shortId": "0badf00d", "time": "2026-11-01T00:00:00Z", "host": "laptop",
                "paths": ["/home"], "morePaths": 3, "tags": [],
                "sizeBytes": null, "external": true, "policyName": null,
            }),
        ];
        let out = table(&snapshots);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        fn cells(line: &str) -> Vec<&str> {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        }
        assert_eq!(
            cells(lines[0]),
            ["ID", "TIME", "HOST", "PATHS", "SIZE", "POLICY", "TAGS"]
        );
        assert_eq!(
            cells(lines[1]),
            [
                "5e1c0a3f",
                "2026-11-02T03:04:05Z",
                "db-1",
                "/srv,/etc",
                "1.5 MiB",
                "db nightly",
                "nightly"
            ]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "0badf00d",
                "2026-11-01T00:00:00Z",
                "laptop",
                "/home,+3",
                "-",
                "external",
                "-"
            ]
        );
    }

    #[test]
    fn a_repository_is_named_by_id_or_url() {
        let id = RepoId::for_url("/srv/restic");
        assert_eq!(repo_id(&id.to_string()), id.to_string());
        assert_eq!(repo_id("/srv/restic"), id.to_string());
    }
}
