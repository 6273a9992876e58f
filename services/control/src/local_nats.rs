//! A nats-server child process for `fleet up`: JetStream on, its store under the data
//! directory, stopped gracefully with the command.
//!
//! It runs from a configuration file written on each start (`DATA_DIR/nats-server.conf`)
//! that includes the authorization config the access service renders
//! (`DATA_DIR/nats-auth.conf`, reloaded with SIGHUP). The file, not flags, enables
//! JetStream: nats-server 2.9 applies the file on a reload and would shut JetStream down.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Logged by nats-server once it listens and JetStream has recovered its store.
const READY_LINE: &str = "Server is ready";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how to run the local server.
#[derive(Debug, Clone)]
pub struct LocalNatsConfig {
    /// The store goes to `<data_dir>/nats`, the log to `<data_dir>/nats-server.log`.
    pub data_dir: PathBuf,
    pub host: String,
    pub port: u16,
    /// The nats-server binary.
    pub binary: OsString,
    /// The server's TLS certificate and key (PEM): TLS is then required.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// The authorization config the server's configuration includes, in the data directory.
pub const AUTH_FILE: &str = "nats-auth.conf";
/// The server's configuration, in the data directory.
pub const CONFIG_FILE: &str = "nats-server.conf";

/// The configuration text: listen address, JetStream and its store, the included
/// authorization file, TLS.
pub fn config_text(config: &LocalNatsConfig, store: &Path) -> String {
    let quote = |path: &Path| format!("{:?}", path.display().to_string());
    let mut text = format!(
        "# Written by `fleet up` on each start.\nlisten: \"{}:{}\"\n\
         jetstream {{ store_dir: {} }}\ninclude \"{AUTH_FILE}\"\n",
        config.host,
        config.port,
        quote(store)
    );
    if let Some((cert, key)) = &config.tls {
        text.push_str(&format!(
            "tls {{ cert_file: {}, key_file: {} }}\n",
            quote(cert),
            quote(key)
        ));
    }
    text
}

/// Why the local server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalNatsError {
    #[error(
        "{binary:?} was not found: install nats-server (Debian/Ubuntu: `apt-get install -y nats-server`) or pass --nats-url to use a running server"
    )]
    NotInstalled { binary: OsString },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("nats-server exited ({status}); end of {log}:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("nats-server was not ready after {waited:?}; end of {log}:\n{tail}")]
    NotReady {
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
}

/// A running local nats-server.
#[derive(Debug)]
pub struct LocalNats {
    child: Child,
    url: String,
}

impl LocalNats {
    /// Starts the server and waits until it is ready.
    pub async fn start(config: &LocalNatsConfig) -> Result<Self, LocalNatsError> {
        let data_dir = std::path::absolute(&config.data_dir)
            .map_err(|source| io_error("resolve the data directory".into(), source))?;
        let store = data_dir.join("nats");
        let log = data_dir.join("nats-server.log");
        tokio::fs::create_dir_all(&store)
            .await
            .map_err(|source| io_error(format!("create {}", store.display()), source))?;
        let conf = data_dir.join(CONFIG_FILE);
        tokio::fs::write(&conf, config_text(config, &store))
            .await
            .map_err(|source| io_error(format!("write {}", conf.display()), source))?;
        let auth = data_dir.join(AUTH_FILE);
        if !auth.exists() {
            // No authorization yet (tests of this module): everyone may do everything.
            tokio::fs::write(&auth, "# no authorization\n")
                .await
                .map_err(|source| io_error(format!("write {}", auth.display()), source))?;
        }
        let offset = tokio::fs::metadata(&log)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let mut child = Command::new(&config.binary)
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => LocalNatsError::NotInstalled {
                    binary: config.binary.clone(),
                },
                _ => io_error("start nats-server".into(), source),
            })?;
        let started = Instant::now();
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|source| io_error("wait for nats-server".into(), source))?
            {
                return Err(LocalNatsError::Exited {
                    status: status.to_string(),
                    tail: tail(&log, offset).await,
                    log,
                });
            }
            if tail(&log, offset).await.contains(READY_LINE) {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(LocalNatsError::NotReady {
                    waited: START_TIMEOUT,
                    tail: tail(&log, offset).await,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child,
            url: format!("nats://{}:{}", config.host, config.port),
        })
    }

    /// The client URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's process id (for SIGHUP).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the server gracefully (SIGTERM, so it flushes its store), killing it if it
    /// has not exited within 15 s.
    pub async fn stop(mut self) -> Result<(), LocalNatsError> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(result) => result
                .map(|_| ())
                .map_err(|source| io_error("wait for nats-server to stop".into(), source)),
            Err(_) => self
                .child
                .kill()
                .await
                .map_err(|source| io_error("kill nats-server".into(), source)),
        }
    }
}

fn io_error(what: String, source: io::Error) -> LocalNatsError {
    LocalNatsError::Io { what, source }
}

/// The log written since `offset`, at most its last 20 lines.
async fn tail(log: &Path, offset: u64) -> String {
    let text = tokio::fs::read(log).await.unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(text.len());
    let text = String::from_utf8_lossy(&text[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, binary: &str, port: u16) -> LocalNatsConfig {
        LocalNatsConfig {
            data_dir: dir.to_path_buf(),
            host: "127.0.0.1".into(),
            port,
            binary: binary.into(),
            tls: None,
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    #[tokio::test]
    async fn starts_serves_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nats = LocalNats::start(&config(dir.path(), "nats-server", free_port()))
            .await
            .expect("nats-server starts (apt-get install -y nats-server)");
        let client = async_nats::connect(nats.url()).await.expect("connect");
        client.flush().await.expect("round trip");
        nats.stop().await.expect("stops");
        assert!(dir.path().join("nats/jetstream").is_dir());
    }

    #[tokio::test]
    async fn a_missing_binary_says_how_to_install() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = LocalNats::start(&config(dir.path(), "/nonexistent/nats-server", 1))
            .await
            .expect_err("no binary");
        assert!(
            err.to_string().contains("apt-get install -y nats-server"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_taken_port_shows_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = LocalNats::start(&config(dir.path(), "nats-server", port))
            .await
            .expect_err("port in use");
        assert!(matches!(err, LocalNatsError::Exited { .. }), "{err}");
    }
}
