//! The compose deployment's secured NATS, run for real without Docker: the one-shot
//! `deploy/fleet/nats-bootstrap.sh` and the three nodes' `deploy/nats/nats-N.conf`, as
//! written, with only their container paths, host names and ports mapped onto this
//! machine; each node's access service started with the command line of
//! `deploy/nats/node.sh`; then the real `fleet-agent`, configured like
//! `deploy/agent/fleet-agent.yaml` (TLS, the CA), enrolls and is admitted by the access
//! services' reloads. A client without the CA, or without a key, gets nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleet_events::store::EventStore;
use fleet_events::store::connect::{NatsAccess, read_key};

use crate::compose::{read, root as repo};
use crate::support::agent::{AgentProcess, agent_binary};
use crate::support::eventually;

/// Processes stopped (SIGKILL) when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Free ports on 127.0.0.1, bound together then released.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("its address").port())
        .collect()
}

/// The container paths of the deployment, and where they are here.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn path(&self, rest: &str) -> String {
        self.dir.path().join(rest).display().to_string()
    }

    /// The bootstrap script's container paths mapped here.
    fn bootstrap(&self, script: &str) -> String {
        script
            .replace("/etc/nats/tls", &self.path("tls"))
            .replace("/etc/fleet/ca", &self.path("ca"))
            .replace("/var/lib/fleet/control", &self.path("control"))
            .replace("/etc/nats/auth-$node", &self.path("node-$node/auth"))
    }

    /// Node `n`'s configuration with its paths, ports and peers mapped here.
    fn node(&self, n: usize, conf: &str, ports: &[(u16, u16, u16)]) -> String {
        let (client, route, http) = ports[n - 1];
        let mut conf = conf
            .replace("/etc/nats/tls", &self.path("tls"))
            .replace("/etc/nats/auth/", &self.path(&format!("node-{n}/auth/")))
            .replace("/data/", &self.path(&format!("node-{n}/data/")))
            .replace("0.0.0.0:4222", &format!("127.0.0.1:{client}"))
            .replace("0.0.0.0:6222", &format!("127.0.0.1:{route}"))
            .replace("0.0.0.0:8222", &format!("127.0.0.1:{http}"));
        for (m, (_, route, _)) in ports.iter().enumerate() {
            conf = conf.replace(
                &format!("nats-route://nats-{}:6222", m + 1),
                &format!("nats-route://127.0.0.1:{route}"),
            );
        }
        conf
    }
}

/// The arguments node.sh gives `fleet serve access`, in order.
fn access_args(node_sh: &str) -> Vec<String> {
    let start = node_sh
        .find("fleet serve access")
        .expect("node.sh runs the access service");
    let mut args = Vec::new();
    for line in node_sh[start..].lines() {
        let line = line.trim().trim_end_matches("|| true").trim();
        let more = line.ends_with('\\');
        args.extend(
            line.trim_end_matches('\\')
                .split_whitespace()
                .map(str::to_owned),
        );
        if !more {
            break;
        }
    }
    assert_eq!(&args[..3], ["fleet", "serve", "access"], "{args:?}");
    args.split_off(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_nats_admits_an_enrolled_agent_over_tls_and_nothing_else() {
    crate::support::log_from_env();
    let layout = Layout {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    for dir in [
        "tls",
        "ca",
        "control",
        "node-1/auth",
        "node-2/auth",
        "node-3/auth",
    ] {
        std::fs::create_dir_all(layout.dir.path().join(dir)).expect("a directory");
    }
    let fleet_dir = agent_binary().parent().expect("target dir").to_owned();
    let fleet = fleet_dir.join("fleet");
    let path = format!(
        "{}:{}",
        fleet_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // nats-bootstrap, as written.
    let script = layout.bootstrap(&read(&repo().join("deploy/fleet/nats-bootstrap.sh")));
    let ran = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", &path)
        .output()
        .expect("sh");
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    // The three nodes.
    let ports: Vec<(u16, u16, u16)> = free_ports(9)
        .chunks(3)
        .map(|p| (p[0], p[1], p[2]))
        .collect();
    let server = std::env::var_os(fleet_tests::nats::BIN_ENV)
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "nats-server".into());
    let mut procs = Procs(Vec::new());
    for n in 1..=3 {
        let conf = layout.node(
            n,
            &read(&repo().join(format!("deploy/nats/nats-{n}.conf"))),
            &ports,
        );
        let file = layout.dir.path().join(format!("node-{n}/nats.conf"));
        std::fs::write(&file, conf).expect("node config");
        let log =
            std::fs::File::create(layout.dir.path().join(format!("node-{n}/log"))).expect("log");
        procs.0.push(
            Command::new(&server)
                .arg("--config")
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nats-server starts"),
        );
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|(c, _, _)| format!("nats://127.0.0.1:{c}"))
        .collect();
    let urls = urls.join(",");
    let ca = layout.path("ca/ca.pem");
    let key = layout.path("control/control.nk");
    let env = [
        ("FLEET_NATS_URL", urls.as_str()),
        ("FLEET_NATS_CA_FILE", ca.as_str()),
        ("FLEET_NATS_KEY_FILE", key.as_str()),
        ("RUST_LOG", "info"),
        ("NO_COLOR", "1"),
    ];
    let fleet_cmd = |args: &[&str]| {
        let mut command = Command::new(&fleet);
        command.args(args).envs(env);
        command
    };

    // The control plane, by its key over TLS, makes the streams on the cluster of three.
    eventually(
        "the streams on three replicas",
        Duration::from_secs(60),
        || {
            let made = fleet_cmd(&["streams", "ensure", "--replicas", "3"]).output();
            async move {
                match made {
                    Ok(out) if out.status.success() => std::ops::ControlFlow::Break(()),
                    other => std::ops::ControlFlow::Continue(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    // Each node's access service, as node.sh runs it, with the node's files; a registrar.
    let node_sh = read(&repo().join("deploy/nats/node.sh"));
    for n in 1..=3 {
        let args: Vec<String> = access_args(&node_sh)
            .iter()
            .map(|a| a.replace("/etc/nats/auth/", &layout.path(&format!("node-{n}/auth/"))))
            .collect();
        let log =
            std::fs::File::create(layout.dir.path().join(format!("access-{n}.log"))).expect("log");
        procs.0.push(
            fleet_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
                .stderr(log)
                .stdout(Stdio::null())
                .spawn()
                .expect("access"),
        );
    }
    let log = std::fs::File::create(layout.dir.path().join("registrar.log")).expect("log");
    procs.0.push(
        fleet_cmd(&["serve", "registrar"])
            .stderr(log)
            .stdout(Stdio::null())
            .spawn()
            .expect("registrar"),
    );
    let created = fleet_cmd(&["tenant", "create", "compose"])
        .output()
        .expect("tenant create");
    let printed = String::from_utf8_lossy(&created.stdout).into_owned();
    assert!(
        created.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = printed
        .lines()
        .skip_while(|l| !l.starts_with("enroll"))
        .nth(1)
        .map(|l| l.trim().to_owned())
        .expect("an enrollment token");

    // The sample agent's configuration, with this machine's paths.
    let agent_yaml = read(&repo().join("deploy/agent/fleet-agent.yaml"))
        .replace(
            "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222",
            &urls,
        )
        .replace("/etc/fleet/ca/ca.pem", &ca)
        .replace("/var/lib/fleet-agent", &layout.path("agent-state"))
        .replace(
            "/var/lib/fleet/bootstrap/enrollment.token",
            &layout.path("enrollment.token"),
        )
        .replace("0.0.0.0:9465", "127.0.0.1:0");
    std::fs::write(layout.dir.path().join("enrollment.token"), &token).expect("token file");
    let config = layout.dir.path().join("agent.yaml");
    std::fs::write(&config, agent_yaml).expect("agent config");
    let agent = AgentProcess::start(&config, "agent");
    let log = eventually(
        "the agent admitted as itself",
        Duration::from_secs(90),
        || {
            let log = agent.log();
            async move {
                if log.contains("agent starting") {
                    std::ops::ControlFlow::Break(log)
                } else {
                    std::ops::ControlFlow::Continue(log)
                }
            }
        },
    )
    .await;
    assert!(log.contains("Registered { new: true }"), "{log}");
    // Every node's access service admits it, each in its own node's file.
    for n in 1..=3 {
        let file = layout.dir.path().join(format!("node-{n}/auth/auth.conf"));
        eventually(
            "each node admits the agent",
            Duration::from_secs(30),
            || {
                let auth = read(&file);
                async move {
                    if auth.contains("# agent ") {
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(auth)
                    }
                }
            },
        )
        .await;
    }

    // Without a key: registering only. Without the CA: no connection at all.
    let servers = urls.parse().expect("servers");
    let anonymous = NatsAccess::tls(Some(PathBuf::from(&ca)))
        .connect(&servers)
        .await
        .expect("anonymous over TLS connects (to register)");
    let store = EventStore::new(anonymous);
    let read_log = tokio::time::timeout(
        Duration::from_secs(5),
        store.replay(&fleet_events::subject::all_events(), 1),
    )
    .await;
    assert!(
        !matches!(read_log, Ok(Ok(_))),
        "an anonymous client opened the log"
    );
    let untrusted = NatsAccess::default()
        .with_key(&read_key(Path::new(&key)).expect("the control key"))
        .connect(&servers)
        .await;
    assert!(untrusted.is_err(), "a client without the CA connected");
}
