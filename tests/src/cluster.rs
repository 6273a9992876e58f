//! A real nats-server cluster on loopback: three (or more) [`NatsServer`] nodes with
//! JetStream, each with its own store, joined by routes. Nodes can be killed and
//! restarted one at a time.

use std::net::TcpListener;

use crate::nats::{HarnessError, NatsServer};

/// The cluster's name in every node's configuration.
pub const CLUSTER_NAME: &str = "fleet-test";

/// Running nodes of one cluster; all killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes named `n1`, `n2`, … each routing to all the others.
    pub fn start(size: usize) -> Result<Self, HarnessError> {
        let route_ports = free_ports(size)?;
        let mut nodes = Vec::with_capacity(size);
        for (i, port) in route_ports.iter().enumerate() {
            let routes: Vec<String> = route_ports
                .iter()
                .filter(|other| *other != port)
                .map(|other| format!("nats-route://127.0.0.1:{other}"))
                .collect();
            let config = format!(
                "server_name: n{}\ncluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{port}\n  routes: [{}]\n}}\n",
                i + 1,
                routes.join(", ")
            );
            nodes.push(NatsServer::start_configured(&config)?);
        }
        Ok(Self { nodes })
    }

    /// Every node's client URL: give them all to a client, which then moves to another
    /// node when its own goes away.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }
}

/// `n` ports free on 127.0.0.1 a moment ago (bound, then released together).
fn free_ports(n: usize) -> Result<Vec<u16>, HarnessError> {
    let io = |source| HarnessError::Io {
        what: "pick a free port".into(),
        source,
    };
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(io))
        .collect()
}
