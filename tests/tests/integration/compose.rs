//! The docker-compose deployment (`docker-compose.yml`, `deploy/`), checked without Docker:
//! the compose file follows the Compose Specification (the JSON schema copied to
//! `tests/schemas/compose-spec.json` from the compose-spec repository, see the README
//! there), our images are built by a stage of a Dockerfile in the repository, every file a
//! service mounts exists, the NATS nodes route to each other, every client is given every
//! node, Prometheus scrapes every fleet
//! service, and the Grafana dashboard queries only metrics the code emits. Each check lists
//! every problem it finds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Images named like this are ours: built from a Dockerfile of this repository.
const OUR_IMAGES: &str = "restic-fleet/";

/// The workspace root (the parent of this crate).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A YAML document as JSON, with YAML merge keys (`<<: *anchor`, nested too) applied as
/// Compose applies them.
fn yaml(path: &Path) -> Value {
    let mut value: serde_norway::Value = serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    // A merged mapping may bring its own `<<`; each pass resolves one level.
    for _ in 0..8 {
        value.apply_merge().expect("merge keys");
    }
    let value = serde_json::to_value(value).expect("YAML as JSON");
    assert!(
        !serde_json::to_string(&value)
            .expect("json")
            .contains("\"<<\""),
        "{}: merge keys nested more than 8 deep",
        path.display()
    );
    value
}

fn compose() -> Value {
    yaml(&root().join("docker-compose.yml"))
}

fn services(compose: &Value) -> &Map<String, Value> {
    compose["services"]
        .as_object()
        .expect("docker-compose.yml has services")
}

fn is_ours(service: &Value) -> bool {
    service["image"]
        .as_str()
        .is_some_and(|image| image.starts_with(OUR_IMAGES))
}

/// Fails listing every problem, one a line.
fn assert_none(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn compose_file_follows_the_compose_specification() {
    let schema: Value =
        serde_json::from_str(&read(&root().join("tests/schemas/compose-spec.json")))
            .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let compose = compose();
    let problems: Vec<String> = validator
        .iter_errors(&compose)
        .map(|error| {
            let path = error.instance_path().to_string();
            let path = if path.is_empty() { "/".into() } else { path };
            format!("{path}: {error}")
        })
        .collect();
    assert_none(
        "docker-compose.yml against the Compose Specification",
        &problems,
    );
}

/// The stage names (`FROM image AS name`) of a Dockerfile, lowercase.
fn stages(dockerfile: &str) -> BTreeSet<String> {
    dockerfile
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [from, .., as_, name]
                    if from.eq_ignore_ascii_case("FROM") && as_.eq_ignore_ascii_case("AS") =>
                {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn our_images_are_built_from_a_dockerfile_stage_in_the_repository() {
    let compose = compose();
    let mut problems = Vec::new();
    let ours: Vec<_> = services(&compose)
        .iter()
        .filter(|(_, service)| is_ours(service))
        .collect();
    assert!(!ours.is_empty(), "no service runs an image of ours");
    for (name, service) in ours {
        let build = &service["build"];
        let Some(context) = build["context"].as_str() else {
            problems.push(format!("{name}: our image without build.context"));
            continue;
        };
        let dockerfile = root()
            .join(context)
            .join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
        let Ok(text) = std::fs::read_to_string(&dockerfile) else {
            problems.push(format!("{name}: no Dockerfile {}", dockerfile.display()));
            continue;
        };
        match build["target"].as_str() {
            None => problems.push(format!("{name}: build names no target stage")),
            Some(target) if !stages(&text).contains(&target.to_ascii_lowercase()) => problems
                .push(format!(
                    "{name}: target {target} is no `FROM ... AS {target}` stage of {} (stages: {:?})",
                    dockerfile.display(),
                    stages(&text)
                )),
            Some(_) => {}
        }
    }
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap_or_default();
    if !ignore
        .lines()
        .any(|line| line.trim().trim_matches('/') == "target")
    {
        problems.push(".dockerignore does not exclude target/".into());
    }
    assert_none("images of ours", &problems);
}

/// The repository files a service mounts: bind mounts given as paths (`./x:/y`, long
/// syntax `type: bind`), with the container path.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    let mut mounts = Vec::new();
    for volume in service["volumes"].as_array().into_iter().flatten() {
        match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if source.starts_with('.') || source.starts_with('/') {
                    mounts.push((source.to_owned(), target.to_owned()));
                }
            }
            long if long["type"] == "bind" => mounts.push((
                long["source"].as_str().unwrap_or("").to_owned(),
                long["target"].as_str().unwrap_or("").to_owned(),
            )),
            _ => {}
        }
    }
    mounts
}

/// The named volumes a service mounts: (volume, container path).
fn named_volumes(service: &Value) -> Vec<(String, String)> {
    let mut mounts = Vec::new();
    for volume in service["volumes"].as_array().into_iter().flatten() {
        match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if !source.is_empty() && !source.starts_with('.') && !source.starts_with('/') {
                    mounts.push((source.to_owned(), target.to_owned()));
                }
            }
            long if long["type"] == "volume" => mounts.push((
                long["source"].as_str().unwrap_or("").to_owned(),
                long["target"].as_str().unwrap_or("").to_owned(),
            )),
            _ => {}
        }
    }
    mounts
}

/// Where a service finds the repository file it mounts at `target` (bind mount or config).
fn mounted_file(compose: &Value, service: &Value, target: &str) -> Option<PathBuf> {
    let bound = bind_mounts(service)
        .into_iter()
        .find(|(_, at)| at == target)
        .map(|(source, _)| source);
    let configured = service["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|config| config["target"] == target)
        .and_then(|config| config["source"].as_str())
        .and_then(|source| compose["configs"][source]["file"].as_str())
        .map(str::to_owned);
    bound.or(configured).map(|path| root().join(path))
}

#[test]
fn every_file_the_deployment_mounts_exists() {
    let compose = compose();
    let mut problems = Vec::new();
    for (name, service) in services(&compose) {
        for (source, _) in bind_mounts(service) {
            if !root().join(&source).exists() {
                problems.push(format!("{name}: bind mount of missing {source}"));
            }
        }
        for volume in named_volumes(service).into_iter().map(|(volume, _)| volume) {
            if compose["volumes"].get(&volume).is_none() {
                problems.push(format!("{name}: volume {volume} is not declared"));
            }
        }
        for kind in ["configs", "secrets"] {
            for item in service[kind].as_array().into_iter().flatten() {
                let source = item
                    .as_str()
                    .or_else(|| item["source"].as_str())
                    .unwrap_or("");
                if compose[kind].get(source).is_none() {
                    problems.push(format!("{name}: {kind} {source} is not declared"));
                }
            }
        }
    }
    for kind in ["configs", "secrets"] {
        for (name, item) in compose[kind].as_object().into_iter().flatten() {
            if let Some(file) = item["file"].as_str()
                && !root().join(file).is_file()
            {
                problems.push(format!("{kind} {name}: missing file {file}"));
            }
            if item.get("environment").is_some() && kind == "secrets" {
                problems.push(format!("secret {name} comes from an environment variable"));
            }
        }
    }
    assert_none("files mounted from the repository", &problems);
}

#[test]
fn each_nats_node_routes_to_the_other_two_and_keeps_jetstream_on_a_volume() {
    let compose = compose();
    let node_names = nats_nodes(&compose);
    let nodes: Vec<_> = services(&compose)
        .iter()
        .filter(|(name, _)| node_names.contains(*name))
        .collect();
    assert_eq!(nodes.len(), 3, "a cluster of three NATS nodes");
    let names: BTreeSet<&str> = nodes.iter().map(|(name, _)| name.as_str()).collect();
    let mut problems = Vec::new();
    for (name, service) in &nodes {
        let Some(path) = mounted_file(&compose, service, "/etc/nats/nats.conf") else {
            problems.push(format!("{name}: no config mounted at /etc/nats/nats.conf"));
            continue;
        };
        let conf = read(&path);
        let routes: BTreeSet<&str> = conf
            .split("nats-route://")
            .skip(1)
            .filter_map(|rest| rest.split(':').next())
            .collect();
        let others: BTreeSet<&str> = names.iter().copied().filter(|n| n != name).collect();
        if routes != others {
            problems.push(format!("{name}: routes to {routes:?}, expected {others:?}"));
        }
        if !conf.contains(&format!("server_name: {name}")) {
            problems.push(format!("{name}: {} names another server", path.display()));
        }
        if !conf.contains("http: 0.0.0.0:8222") {
            problems.push(format!("{name}: no monitoring on port 8222"));
        }
        let store = conf
            .lines()
            .find_map(|line| line.trim().strip_prefix("store_dir:"))
            .map(|dir| dir.trim().trim_matches('"').to_owned());
        match store {
            None => problems.push(format!("{name}: no JetStream store_dir")),
            Some(dir) => {
                if !named_volumes(service)
                    .iter()
                    .any(|(_, target)| dir.starts_with(target.as_str()))
                {
                    problems.push(format!(
                        "{name}: JetStream store {dir} is on no named volume"
                    ));
                }
            }
        }
    }
    assert_none("the NATS cluster", &problems);
}

/// The NATS nodes of the compose file (the services given a nats-server configuration),
/// by service name.
fn nats_nodes(compose: &Value) -> BTreeSet<String> {
    services(compose)
        .iter()
        .filter(|(_, service)| mounted_file(compose, service, NATS_CONF).is_some())
        .map(|(name, _)| name.clone())
        .collect()
}

/// Where a node's nats-server configuration is mounted.
const NATS_CONF: &str = "/etc/nats/nats.conf";

/// The value of `key` in a nats-server configuration's `block` (`tls`, `cluster.tls`), or
/// at the top level with `block` empty; quotes removed.
fn nats_value(conf: &str, block: &[&str], key: &str) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(name) = line.strip_suffix('{') {
            path.push(name.trim().to_owned());
            continue;
        }
        if line == "}" {
            path.pop();
            continue;
        }
        if path.iter().map(String::as_str).eq(block.iter().copied())
            && let Some((k, v)) = line.split_once(':')
            && k.trim() == key
        {
            return Some(v.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// The named volume mounted at the directory holding `file` in `service`, if any, and
/// whether it is read-only.
fn volume_of(service: &Value, file: &str) -> Option<(String, bool)> {
    let dir = Path::new(file).parent()?.to_str()?.to_owned();
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|short| {
            let parts: Vec<&str> = short.split(':').collect();
            (parts.len() >= 2 && parts[1] == dir && !parts[0].starts_with('.'))
                .then(|| (parts[0].to_owned(), parts.get(2) == Some(&"ro")))
        })
}

/// The compose deployment is secured as a production one: every NATS node requires TLS of
/// clients (certificate and key on the volume nats-bootstrap writes, read-only), routes
/// over TLS verified both ways, includes the rendered authorization from its own volume
/// (first written by nats-bootstrap, then by the access service beside it, which reloads
/// the node through the pid file it names); every client trusts the CA and only the
/// control plane holds its key; the node's key is on no client.
#[test]
fn nats_runs_tls_and_the_rendered_authorization_kept_by_the_access_service() {
    let compose = compose();
    let all = services(&compose);
    let nodes = nats_nodes(&compose);
    let mut problems = Vec::new();
    let bootstrap = &all["nats-bootstrap"];
    let script = read(
        &mounted_file(&compose, bootstrap, "/etc/fleet/nats-bootstrap.sh")
            .expect("the bootstrap script"),
    );
    let node_sh = read(&root().join("deploy/nats/node.sh"));
    let written_by_bootstrap = |volume: &str| {
        named_volumes(bootstrap)
            .into_iter()
            .find(|(v, _)| v == volume)
            .map(|(_, at)| at)
    };
    for name in &nodes {
        let service = &all[name];
        let conf = read(&mounted_file(&compose, service, NATS_CONF).expect("its config"));
        for block in [&["tls"][..], &["cluster", "tls"]] {
            for key in ["cert_file", "key_file", "ca_file"] {
                let Some(file) = nats_value(&conf, block, key) else {
                    problems.push(format!("{name}: no {key} in {}", block.join(".")));
                    continue;
                };
                match volume_of(service, &file) {
                    Some((volume, true)) => match written_by_bootstrap(&volume) {
                        Some(at) if script.contains(&at) => {}
                        _ => problems.push(format!(
                            "{name}: {file} is on {volume}, which nats-bootstrap does not write"
                        )),
                    },
                    Some((volume, false)) => {
                        problems.push(format!("{name}: {volume} (TLS files) is writable"))
                    }
                    None => problems.push(format!("{name}: {file} is on no named volume")),
                }
            }
        }
        if nats_value(&conf, &["cluster", "tls"], "verify").as_deref() != Some("true") {
            problems.push(format!(
                "{name}: routes do not verify their peers (cluster.tls.verify)"
            ));
        }
        // The authorization: included from the node's own volume, which nats-bootstrap
        // writes first, and the access service's files match the node's.
        if !conf.contains("include \"auth/auth.conf\"") {
            problems.push(format!("{name}: does not include auth/auth.conf"));
        }
        let auth_volume = volume_of(service, "/etc/nats/auth/auth.conf");
        match &auth_volume {
            Some((volume, false)) if volume == &format!("{name}-auth") => {
                let at = written_by_bootstrap(volume);
                if !at
                    .is_some_and(|at| script.contains(&at.replace(&name["nats-".len()..], "$node")))
                {
                    problems.push(format!(
                        "{name}: nats-bootstrap writes no first config on {volume}"
                    ));
                }
            }
            other => problems.push(format!(
                "{name}: /etc/nats/auth is {other:?}, not its own writable volume"
            )),
        }
        let pid_file = nats_value(&conf, &[], "pid_file");
        if !pid_file
            .as_deref()
            .is_some_and(|f| node_sh.contains(&format!("--nats-pid-file {f}")))
        {
            problems.push(format!(
                "{name}: pid_file {pid_file:?} is not the one the access service signals"
            ));
        }
        if !node_sh.contains("--nats-auth-file /etc/nats/auth/auth.conf") {
            problems.push(format!("{name}: the access service writes elsewhere"));
        }
    }
    // Clients: the CA for everyone, the control key for the control plane only.
    for (name, service) in all {
        let env = &service["environment"];
        if env["FLEET_NATS_URL"].is_null() {
            continue;
        }
        for (var, volume, ro) in [
            ("FLEET_NATS_CA_FILE", "fleet-ca", true),
            ("FLEET_NATS_KEY_FILE", "control", true),
        ] {
            match env[var].as_str().map(|f| volume_of(service, f)) {
                Some(Some((v, r))) if v == volume && r == ro => {}
                other => problems.push(format!(
                    "{name}: {var} is {other:?}, not on {volume} (read-only)"
                )),
            }
        }
    }
    let agent = &all["agent"];
    let agent_config = yaml(&root().join("deploy/agent/fleet-agent.yaml"));
    match agent_config["natsCaFile"]
        .as_str()
        .map(|f| volume_of(agent, f))
    {
        Some(Some((v, true))) if v == "fleet-ca" => {}
        other => problems.push(format!(
            "the agent's natsCaFile is {other:?}, not on fleet-ca"
        )),
    }
    for (name, service) in all {
        let volumes: Vec<String> = named_volumes(service).into_iter().map(|(v, _)| v).collect();
        if volumes.iter().any(|v| v == "nats-tls")
            && !nodes.contains(name)
            && name != "nats-bootstrap"
        {
            problems.push(format!("{name}: mounts the nodes' key (nats-tls)"));
        }
        if volumes.iter().any(|v| v == "control") && (name == "agent" || name == "policy") {
            problems.push(format!("{name}: mounts the control plane's key"));
        }
    }
    assert_none("the secured NATS", &problems);
}

/// The hosts of a server list, or why it is not one.
fn server_hosts(urls: &str) -> Result<BTreeSet<String>, String> {
    let servers: fleet_events::store::NatsServers =
        urls.parse().map_err(|e| format!("{urls:?} {e}"))?;
    Ok(servers
        .addrs()
        .iter()
        .map(|addr| addr.host().to_owned())
        .collect())
}

#[test]
fn every_client_is_given_every_nats_node() {
    let compose = compose();
    let nodes = nats_nodes(&compose);
    let mut problems = Vec::new();
    let mut clients = 0;
    for (name, service) in services(&compose) {
        let Some(urls) = service["environment"]["FLEET_NATS_URL"].as_str() else {
            continue;
        };
        clients += 1;
        match server_hosts(urls) {
            Ok(hosts) if hosts == nodes => {}
            Ok(hosts) => problems.push(format!("{name}: NATS {hosts:?}, not {nodes:?}")),
            Err(e) => problems.push(format!("{name}: FLEET_NATS_URL {e}")),
        }
    }
    assert!(clients >= 3, "the services name their NATS servers");
    let agent = yaml(&root().join("deploy/agent/fleet-agent.yaml"));
    match agent["natsUrl"].as_str().map(server_hosts) {
        Some(Ok(hosts)) if hosts == nodes => {}
        other => problems.push(format!("the agent's natsUrl: {other:?}, not {nodes:?}")),
    }
    assert_none("the NATS clients", &problems);
}

/// The port in `host:port`.
fn port(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Where a long-running service of ours serves Prometheus metrics: the port of
/// FLEET_METRICS_ADDR, else the API's own port; for the agent, its config's metricsAddr.
/// `None` for one-shot jobs (which run no `serve` or agent `run`).
fn metrics_port(compose: &Value, service: &Value) -> Option<Result<u16, String>> {
    let command: Vec<&str> = service["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let env = &service["environment"];
    match command.as_slice() {
        ["serve", which, ..] => Some(
            env["FLEET_METRICS_ADDR"]
                .as_str()
                .or_else(|| {
                    (*which == "api")
                        .then(|| env["FLEET_API_ADDR"].as_str())
                        .flatten()
                })
                .and_then(port)
                .ok_or_else(|| "serves no metrics (FLEET_METRICS_ADDR)".to_owned()),
        ),
        ["run", "--config", config, ..] => Some(
            mounted_file(compose, service, config)
                .map(|path| yaml(&path))
                .and_then(|config| config["metricsAddr"].as_str().and_then(port))
                .ok_or_else(|| format!("its config {config} sets no metricsAddr")),
        ),
        _ => None,
    }
}

#[test]
fn prometheus_scrapes_every_fleet_service() {
    let compose = compose();
    let prometheus = yaml(&root().join("deploy/prometheus/prometheus.yml"));
    // (host, port) of every target, DNS names included.
    let mut targets = BTreeSet::new();
    for job in prometheus["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for sd in job["dns_sd_configs"].as_array().into_iter().flatten() {
            for name in sd["names"].as_array().into_iter().flatten() {
                let port = sd["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                targets.insert((name.as_str().unwrap_or("").to_owned(), port));
            }
        }
        for static_config in job["static_configs"].as_array().into_iter().flatten() {
            for target in static_config["targets"].as_array().into_iter().flatten() {
                let target = target.as_str().unwrap_or("");
                let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
                targets.insert((host.to_owned(), port(target)));
            }
        }
    }
    let mut problems = Vec::new();
    let mut scraped = 0;
    for (name, service) in services(&compose).iter().filter(|(_, s)| is_ours(s)) {
        match metrics_port(&compose, service) {
            None => {}
            Some(Err(why)) => problems.push(format!("{name}: {why}")),
            Some(Ok(port)) if targets.contains(&(name.clone(), Some(port))) => scraped += 1,
            Some(Ok(port)) => problems.push(format!(
                "{name}: Prometheus scrapes no {name}:{port} (targets: {targets:?})"
            )),
        }
    }
    if !services(&compose).contains_key("prometheus") {
        problems.push("no prometheus service".into());
    }
    assert_none("Prometheus scrape targets", &problems);
    assert!(scraped >= 8, "only {scraped} fleet services are scraped");
}

/// Every `expr` in a Grafana dashboard, rows' nested panels included.
fn expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => expressions(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| expressions(item, out)),
        _ => {}
    }
}

/// The `fleet_` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("fleet_") {
        let boundary = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The text of every Rust source file under `dir`.
fn rust_sources(dir: &Path, out: &mut String) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push_str(&read(&path));
        }
    }
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_code_emits() {
    let compose = compose();
    let grafana = &services(&compose)["grafana"];
    let mut problems = Vec::new();
    for target in ["/etc/grafana/provisioning", "/etc/grafana/dashboards"] {
        if mounted_file(&compose, grafana, target).is_none() {
            problems.push(format!("grafana: nothing from the repository at {target}"));
        }
    }
    let datasources = yaml(&root().join("deploy/grafana/provisioning/datasources/prometheus.yml"));
    let uids: BTreeSet<&str> = datasources["datasources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|source| source["uid"].as_str())
        .collect();
    // The metric names as the code spells them (every services crate, read models, agent, and the
    // consumer runtime of fleet-events, which counts parked messages).
    let mut source = String::new();
    for dir in ["services", "projections/src", "agent/src", "events/src"] {
        rust_sources(&root().join(dir), &mut source);
    }
    let dashboards = root().join("deploy/grafana/dashboards");
    let mut count = 0;
    for entry in std::fs::read_dir(&dashboards).expect("deploy/grafana/dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let dashboard: Value = match serde_json::from_str(&read(&path)) {
            Ok(dashboard) => dashboard,
            Err(e) => {
                problems.push(format!("{file}: not JSON: {e}"));
                continue;
            }
        };
        let mut exprs = Vec::new();
        expressions(&dashboard, &mut exprs);
        if exprs.is_empty() {
            problems.push(format!("{file}: no panel queries anything"));
        }
        for expr in &exprs {
            count += 1;
            let names = metric_names(expr);
            if names.is_empty() {
                problems.push(format!("{file}: `{expr}` queries no fleet_ metric"));
            }
            let known = |name: &str| source.contains(&format!("\"{name}\""));
            for name in names {
                // Histograms are exported as summaries: `_sum` and `_count` series too.
                let base = ["_sum", "_count", "_bucket"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix));
                if !known(&name) && !base.is_some_and(known) {
                    problems.push(format!("{file}: `{expr}`: no metric {name} in the code"));
                }
            }
        }
        let mut sources = Vec::new();
        collect_datasource_uids(&dashboard, &mut sources);
        for uid in sources {
            if !uids.contains(uid.as_str()) {
                problems.push(format!("{file}: data source {uid} is not provisioned"));
            }
        }
    }
    assert_none("the Grafana dashboards", &problems);
    assert!(count >= 10, "only {count} queries on the dashboards");
}

/// The `uid` of every `datasource` object in a dashboard.
fn collect_datasource_uids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(uid) = map
                .get("datasource")
                .and_then(|source| source["uid"].as_str())
            {
                out.push(uid.to_owned());
            }
            map.values()
                .for_each(|value| collect_datasource_uids(value, out));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_datasource_uids(item, out)),
        _ => {}
    }
}

#[test]
fn prometheus_loads_the_alert_rules_mounted_next_to_its_config() {
    let compose = compose();
    let service = &services(&compose)["prometheus"];
    let config = mounted_file(&compose, service, "/etc/prometheus/prometheus.yml")
        .expect("prometheus.yml is mounted");
    let rule_files: Vec<String> = yaml(&config)["rule_files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    assert!(
        rule_files.iter().any(|f| f == "alerts.yml"),
        "{rule_files:?}"
    );
    for file in rule_files {
        // Relative rule files are read next to the configuration.
        let inside = format!("/etc/prometheus/{file}");
        let source = mounted_file(&compose, service, &inside)
            .unwrap_or_else(|| panic!("{inside} is not mounted into prometheus"));
        assert_eq!(source, root().join("deploy/prometheus").join(&file));
    }
}
