//! NATS server lists (`nats://a:4222,nats://b:4222`), shown without their credentials.

use std::fmt;
use std::str::FromStr;

use async_nats::ServerAddr;

/// The NATS servers a client connects to: one, or several nodes of a cluster (seeds: the
/// client tries them in turn and learns the rest of the cluster from the one it reaches).
/// Displayed as `scheme://host:port` each, so a password in a URL never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsServers(Vec<ServerAddr>);

/// Why a server list was refused. It does not repeat the text, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a list of NATS server URLs (nats://host:port, comma-separated)")]
pub struct BadNatsServers;

impl NatsServers {
    /// The addresses, credentials included, to connect with.
    pub fn addrs(&self) -> &[ServerAddr] {
        &self.0
    }

    /// The list as it parses again, credentials included: for a private configuration
    /// file, never for a log.
    pub fn urls(&self) -> String {
        let urls: Vec<&str> = self.0.iter().map(ServerAddr::as_url_str).collect();
        urls.join(",")
    }
}

impl FromStr for NatsServers {
    type Err = BadNatsServers;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(|url| match url.trim().parse::<ServerAddr>() {
                // An empty entry parses as `nats://:4222`.
                Ok(addr) if !addr.host().is_empty() => Ok(addr),
                _ => Err(BadNatsServers),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl fmt::Display for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}://{}:{}", addr.scheme(), addr.host(), addr.port())?;
        }
        Ok(())
    }
}

/// Like `Display`: no credentials.
impl fmt::Debug for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsServers({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_parsed_in_order_and_shown_without_credentials() {
        let servers: NatsServers = "nats://fleet:s3cret@a.example:4222, tls://b.example:4333"
            .parse()
            .unwrap();
        assert_eq!(servers.addrs().len(), 2);
        assert!(servers.addrs()[0].has_user_pass());
        assert_eq!(
            servers.to_string(),
            "nats://a.example:4222,tls://b.example:4333"
        );
        assert!(!format!("{servers:?}").contains("s3cret"));
        assert_eq!(servers.urls().parse::<NatsServers>(), Ok(servers));
    }

    #[test]
    fn a_bare_host_and_port_is_a_nats_url() {
        let servers: NatsServers = "127.0.0.1:4222".parse().unwrap();
        assert_eq!(servers.to_string(), "nats://127.0.0.1:4222");
    }

    #[test]
    fn bad_lists_are_refused_without_repeating_them() {
        for bad in [
            "",
            "nats://a:4222,",
            ",nats://a:4222",
            "http://a:80",
            "nats://u:s3cret@[bad",
        ] {
            let error = bad.parse::<NatsServers>().unwrap_err();
            assert!(!error.to_string().contains("s3cret"), "{bad}");
        }
    }
}
