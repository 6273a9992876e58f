//! Names and ids: the CLI takes an agent's or a policy's name where an id is asked for,
//! and shows names next to the ids the API answers with.

use std::collections::HashMap;

use fleet_api_model::names::agents_named;
use serde_json::Value;

use crate::api_client::{ApiClient, ApiError};

/// Whether `text` is an id (a UUID) rather than a name.
fn is_id(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok()
}

/// The id of the agent `text` names: an id as it is, else the one agent with that name or
/// hostname, as the API resolves names (a live one is preferred over decommissioned ones).
pub async fn agent_id(client: &ApiClient, text: &str) -> Result<String, ApiError> {
    if is_id(text) {
        return Ok(text.to_owned());
    }
    let agents = client
        .get(&["v1", "agents"], &[("name", text.to_owned())])
        .await?;
    find_agent(&agents, text)
}

/// Every agent, fetched a page at a time (the API answers at most 1000 per request).
pub async fn all_agents(client: &ApiClient) -> Result<Value, ApiError> {
    all_pages(client, "agents", 1000, &[]).await
}

/// Every policy (deleted ones too with `include_deleted`), a page at a time: 500 per
/// request, as a page of policies is larger than one of agents.
pub async fn all_policies(client: &ApiClient, include_deleted: bool) -> Result<Value, ApiError> {
    let query = [("includeDeleted", include_deleted.to_string())];
    all_pages(client, "policies", 500, &query).await
}

/// Every item of `GET /v1/<list>`, fetched `page` at a time until a page comes back short.
async fn all_pages(
    client: &ApiClient,
    list_name: &str,
    page: usize,
    query: &[(&str, String)],
) -> Result<Value, ApiError> {
    let mut all = Vec::new();
    loop {
        let mut asked = query.to_vec();
        asked.push(("limit", page.to_string()));
        asked.push(("offset", all.len().to_string()));
        let answer = client.get(&["v1", list_name], &asked).await?;
        let items = list(&answer).to_vec();
        let done = items.len() < page;
        all.extend(items);
        if done {
            return Ok(Value::Array(all));
        }
    }
}

/// The id of the policy `text` names: an id as it is, else the policy with that name.
pub async fn policy_id(client: &ApiClient, text: &str) -> Result<String, ApiError> {
    if is_id(text) {
        return Ok(text.to_owned());
    }
    find_policy(&all_policies(client, true).await?, text)
}

/// A live agent of that name is meant over decommissioned ones; with none live, a
/// decommissioned one may be (to show it).
fn find_agent(agents: &Value, name: &str) -> Result<String, ApiError> {
    let named = agents_named(list(agents), name);
    let pick = if named.live.is_empty() {
        &named.retired
    } else {
        &named.live
    };
    one(pick, "agent", name)
}

fn find_policy(policies: &Value, name: &str) -> Result<String, ApiError> {
    let named: Vec<&Value> = list(policies)
        .iter()
        .filter(|p| p["spec"]["name"].as_str() == Some(name))
        .collect();
    let live: Vec<&Value> = named
        .iter()
        .copied()
        .filter(|p| p["deleted"] != Value::Bool(true))
        .collect();
    let pick = if live.is_empty() { &named } else { &live };
    one(pick, "policy", name)
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn one(items: &[&Value], what: &str, name: &str) -> Result<String, ApiError> {
    let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    match ids.as_slice() {
        [id] => Ok((*id).to_owned()),
        [] => Err(ApiError::NotFound(format!(
            "no {what} with the id or name {name:?}"
        ))),
        several => Err(ApiError::Invalid(format!(
            "{} {what}s are named {name:?} ({}): give an id",
            several.len(),
            several.join(", ")
        ))),
    }
}

/// The names of a tenant's agents and policies, by id.
#[derive(Debug, Default)]
pub struct Names {
    agents: HashMap<String, String>,
    policies: HashMap<String, String>,
}

impl Names {
    /// Asks the API for every agent and policy (deleted ones too).
    pub async fn fetch(client: &ApiClient) -> Result<Self, ApiError> {
        let agents = all_agents(client).await?;
        let policies = all_policies(client, true).await?;
        Ok(Self::from_lists(&agents, &policies))
    }

    /// Asks the API for every agent (policies then show as their ids).
    pub async fn fetch_agents(client: &ApiClient) -> Result<Self, ApiError> {
        let agents = all_agents(client).await?;
        Ok(Self::from_lists(&agents, &Value::Null))
    }

    /// The names in the answers of `GET /v1/agents` and `GET /v1/policies`.
    pub fn from_lists(agents: &Value, policies: &Value) -> Self {
        let pairs = |items: &Value, name: &dyn Fn(&Value) -> Option<String>| {
            list(items)
                .iter()
                .filter_map(|item| Some((item["id"].as_str()?.to_owned(), name(item)?)))
                .filter(|(_, name)| !name.is_empty())
                .collect::<HashMap<_, _>>()
        };
        Self {
            agents: pairs(agents, &|a| a["name"].as_str().map(str::to_owned)),
            policies: pairs(policies, &|p| p["spec"]["name"].as_str().map(str::to_owned)),
        }
    }

    /// The agent's name, else its id.
    pub fn agent(&self, id: &Value) -> String {
        name_or_id(&self.agents, id)
    }

    /// The policy's name, else its id.
    pub fn policy(&self, id: &Value) -> String {
        name_or_id(&self.policies, id)
    }
}

fn name_or_id(names: &HashMap<String, String>, id: &Value) -> String {
    match id.as_str() {
        Some(id) => names.get(id).cloned().unwrap_or_else(|| id.to_owned()),
        None => crate::output::text(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "01900000-0000-7000-8000-00000000000a";
    const B: &str = "01900000-0000-7000-8000-00000000000b";
    const C: &str = "01900000-0000-7000-8000-00000000000c";

    #[test]
    fn a_name_finds_its_one_agent_preferring_live_ones() {
        let agents = json!([
            {"id": A, "name": "web-1", "decommissioned": true},
            {"id": B, "name": "web-1", "decommissioned": false},
            {"id": C, "name": "db", "hostname": "db.example", "decommissioned": false},
        ]);
        assert_eq!(find_agent(&agents, "web-1").expect("found"), B);
        assert_eq!(find_agent(&agents, "db").expect("found"), C);
        assert_eq!(find_agent(&agents, "db.example").expect("by hostname"), C);
        let missing = find_agent(&agents, "web-2").expect_err("missing");
        assert_eq!(missing.exit_code(), 66);
        assert!(missing.to_string().contains("\"web-2\""), "{missing}");

        let twins = json!([{"id": A, "name": "x"}, {"id": B, "name": "x"}]);
        let ambiguous = find_agent(&twins, "x").expect_err("two");
        assert_eq!(ambiguous.exit_code(), 65);
        assert!(ambiguous.to_string().contains(A), "{ambiguous}");
    }

    #[test]
    fn a_name_finds_its_policy() {
        let policies = json!([
            {"id": A, "spec": {"name": "nightly"}, "deleted": true},
            {"id": B, "spec": {"name": "hourly"}, "deleted": false},
        ]);
        assert_eq!(find_policy(&policies, "hourly").expect("found"), B);
        assert_eq!(
            find_policy(&policies, "nightly").expect("deleted, still named"),
            A
        );
        assert!(is_id(A) && !is_id("nightly"));
    }

    #[test]
    fn names_stand_in_for_ids() {
        let names = Names::from_lists(
            &json!([{"id": A, "name": "web-1"}, {"id": C, "name": ""}]),
            &json!([{"id": B, "spec": {"name": "nightly"}}]),
        );
        assert_eq!(names.agent(&json!(A)), "web-1");
        assert_eq!(names.agent(&json!(C)), C, "an empty name shows the id");
        assert_eq!(names.policy(&json!(B)), "nightly");
        assert_eq!(names.policy(&json!(null)), "-");
    }
}
