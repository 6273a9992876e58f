//! Which agents a name names, one rule for every place that takes a name for an id (the
//! API resolving a policy document's agents, the CLI's arguments): an agent's name or its
//! hostname equals the text; agents in service are told from decommissioned ones, and the
//! caller decides whether a decommissioned agent may be meant.

use serde_json::Value;

/// The agents of a `GET /v1/agents` answer (or the projector's list) that `name` names.
#[derive(Debug, Default, PartialEq)]
pub struct Named<'a> {
    /// In service.
    pub live: Vec<&'a Value>,
    /// Decommissioned.
    pub retired: Vec<&'a Value>,
}

/// The agents among `agents` whose name or hostname is `name`.
pub fn agents_named<'a>(agents: &'a [Value], name: &str) -> Named<'a> {
    let mut named = Named::default();
    for agent in agents
        .iter()
        .filter(|a| a["name"] == name || a["hostname"] == name)
    {
        match agent["decommissioned"] == Value::Bool(true) {
            true => named.retired.push(agent),
            false => named.live.push(agent),
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_name_or_a_hostname_names_an_agent_and_retired_ones_are_told_apart() {
        let agents = [
            json!({"id": "a", "name": "db-1", "hostname": "db1.example.net", "decommissioned": false}),
            json!({"id": "b", "name": "old", "hostname": "db-1", "decommissioned": true}),
            json!({"id": "c", "name": "web-1", "hostname": "web1.example.net"}),
        ];
        let named = agents_named(&agents, "db-1");
        assert_eq!(named.live, [&agents[0]]);
        assert_eq!(named.retired, [&agents[1]]);
        let by_host = agents_named(&agents, "web1.example.net");
        assert_eq!((by_host.live, by_host.retired.len()), (vec![&agents[2]], 0));
        assert_eq!(agents_named(&agents, "nobody"), Named::default());
    }
}
