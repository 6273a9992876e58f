//! A real `nats-server` process with JetStream for tests, on a free port of 127.0.0.1.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a start or restart may take before [`HarnessError::NotReady`].
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`NatsServer::stop`] waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// Logged once the listeners are up and JetStream has recovered its store.
const READY_LINE: &str = "Server is ready";
/// Environment variable overriding the `nats-server` binary.
pub const BIN_ENV: &str = "NATS_SERVER_BIN";

/// Why the harness could not start, stop or restart `nats-server`.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "nats-server is not installed: install it with `apt-get install -y nats-server` (Debian/Ubuntu), then run the tests again"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("nats-server was not ready after {waited:?}; end of its log:\n{log_tail}")]
    NotReady { waited: Duration, log_tail: String },
    #[error("nats-server exited ({status}); end of its log:\n{log_tail}")]
    Exited { status: String, log_tail: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A running (or stopped) `nats-server -js`; killed with SIGKILL on drop, and its
/// temporary directory (store, logs, ports files) removed.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    dir: TempDir,
    store: PathBuf,
    port: u16,
    bin: OsString,
    /// Number of launches; each one logs to its own file.
    runs: u32,
    /// A configuration file given with `-c` (cluster nodes); flags still set the address,
    /// port, store and log.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts `nats-server` (or `$NATS_SERVER_BIN`) with JetStream on a port it picks, and
    /// returns once it accepts TCP connections and has logged "Server is ready".
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with(&binary())
    }

    /// Starts `nats-server` as [`NatsServer::start`] does, with a configuration file holding
    /// `config` (for example a `server_name` and a `cluster` block) in its directory.
    pub fn start_configured(config: &str) -> Result<Self, HarnessError> {
        Self::start_with_config(&binary(), Some(config), &[])
    }

    /// Starts `nats-server` with a configuration file holding `config`, and `files` (name,
    /// text) beside it, which the configuration may `include` (nats-server resolves
    /// includes relative to the configuration's directory, [`NatsServer::config_dir`]).
    pub fn start_configured_with(
        config: &str,
        files: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        Self::start_with_config(&binary(), Some(config), files)
    }

    fn start_with(bin: &OsStr) -> Result<Self, HarnessError> {
        Self::start_with_config(bin, None, &[])
    }

    fn start_with_config(
        bin: &OsStr,
        config: Option<&str>,
        files: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("fleet-nats-")
            .tempdir()
            .map_err(io_err("create the temporary directory"))?;
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::write(&path, text).map_err(io_err(format!("write {}", path.display())))?;
        }
        let store = dir.path().join("store");
        fs::create_dir(&store).map_err(io_err(format!("create {}", store.display())))?;
        let config = match config {
            Some(text) => {
                // JetStream is also enabled in the file, with the store `-sd` names: a
                // reload (SIGHUP) applies the file, and nats-server 2.9 shuts JetStream
                // down when the file does not enable it, or refuses a reload whose store
                // directory differs.
                let text = format!(
                    "jetstream {{ store_dir: {:?} }}\n{text}",
                    store.display().to_string()
                );
                let path = dir.path().join("nats-server.conf");
                fs::write(&path, text).map_err(io_err(format!("write {}", path.display())))?;
                Some(path)
            }
            None => None,
        };
        let mut server = NatsServer {
            child: None,
            dir,
            store,
            port: 0,
            bin: bin.to_owned(),
            runs: 0,
            config,
        };
        server.launch(None)?;
        Ok(server)
    }

    /// The directory given to `-sd`; JetStream keeps its data under `jetstream/` in it.
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// The log file of the current (or latest) run.
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("nats-server-{}.log", self.runs))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The directory of the configuration file and of the files started beside it.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is alive (false after it exited, was stopped or killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Graceful stop: SIGTERM (nats-server flushes its store), SIGKILL after 10 s.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if exit_status(child)?.is_none() {
            // SAFETY: kill(2) only takes integers; the pid is our child, not yet reaped,
            // so it cannot belong to another process.
            if unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) } != 0 {
                let err = io::Error::last_os_error();
                return Err(io_err("send SIGTERM to nats-server")(err));
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            while exit_status(child)?.is_none() {
                if Instant::now() >= deadline {
                    return self.kill();
                }
                sleep(POLL);
            }
        }
        self.reap()
    }

    /// Crash: SIGKILL (kill -9), then reap the process.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        if let Some(child) = self.child.as_mut() {
            child
                .kill()
                .map_err(io_err("send SIGKILL to nats-server"))?;
        }
        self.reap()
    }

    fn reap(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            child.wait().map_err(io_err("wait for nats-server"))?;
        }
        Ok(())
    }

    /// Starts again on the same port and store, after [`stop`](Self::stop) or
    /// [`kill`](Self::kill) (stops it first if it is still running).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        self.launch(Some(self.port))
    }

    /// Spawns a run with a fresh log file and waits until it is ready; on failure the
    /// process is killed.
    fn launch(&mut self, port: Option<u16>) -> Result<(), HarnessError> {
        self.runs += 1;
        let log = self.log_path();
        remove_ports_files(self.dir.path())?;
        let out = OpenOptions::new().create(true).append(true).open(&log);
        let out = out.map_err(io_err(format!("open {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io_err("duplicate the log file handle"))?;
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(&self.bin);
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        if self.config.is_none() {
            // With a configuration file, the file names the store (see above).
            command.arg("-sd").arg(&self.store);
        }
        let spawned = command
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg])
            .arg("--ports_file_dir")
            .arg(self.dir.path())
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(HarnessError::NotInstalled);
            }
            Err(e) => return Err(io_err(format!("spawn {}", self.bin.to_string_lossy()))(e)),
        };
        let ports_file = self
            .dir
            .path()
            .join(format!("nats-server_{}.ports", child.id()));
        match wait_ready(&mut child, &ports_file, &log) {
            Ok(port) => {
                self.port = port;
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }
}

/// `$NATS_SERVER_BIN`, or `nats-server` from the PATH.
fn binary() -> OsString {
    std::env::var_os(BIN_ENV)
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| OsString::from("nats-server"))
}

/// Waits for the ports file, then for a TCP connect and "Server is ready" in `log`.
fn wait_ready(child: &mut Child, ports_file: &Path, log: &Path) -> Result<u16, HarnessError> {
    let started = Instant::now();
    let mut port = None;
    loop {
        if let Some(status) = exit_status(child)? {
            return Err(HarnessError::Exited {
                status: status.to_string(),
                log_tail: log_tail(log),
            });
        }
        if port.is_none() {
            port = fs::read(ports_file).ok().and_then(|b| parse_ports_file(&b));
        }
        if let Some(p) = port {
            let addr = SocketAddr::from(([127, 0, 0, 1], p));
            let ready =
                fs::read(log).is_ok_and(|b| String::from_utf8_lossy(&b).contains(READY_LINE));
            if ready && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(p);
            }
        }
        if started.elapsed() >= READY_TIMEOUT {
            return Err(HarnessError::NotReady {
                waited: started.elapsed(),
                log_tail: log_tail(log),
            });
        }
        sleep(POLL);
    }
}

fn exit_status(child: &mut Child) -> Result<Option<ExitStatus>, HarnessError> {
    child.try_wait().map_err(io_err("poll nats-server"))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The port of `{"nats":["nats://127.0.0.1:PORT"]}`; None while the file is incomplete.
fn parse_ports_file(bytes: &[u8]) -> Option<u16> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let url = value.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// Removes the ports files of earlier runs (a killed server leaves its own behind).
fn remove_ports_files(dir: &Path) -> Result<(), HarnessError> {
    let list_err = || io_err(format!("list {}", dir.display()));
    for entry in fs::read_dir(dir).map_err(list_err())? {
        let path = entry.map_err(list_err())?.path();
        if path.extension() == Some(OsStr::new("ports")) {
            fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
        }
    }
    Ok(())
}

/// The last lines of a log file, for error messages.
fn log_tail(log: &Path) -> String {
    match fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connects(port: u16) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }

    #[test]
    fn start_accepts_tcp_on_its_port() {
        let mut server = NatsServer::start().unwrap();
        assert!(server.is_running());
        assert_ne!(server.port(), 0);
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        assert!(connects(server.port()));
        assert!(server.store_dir().join("jetstream").is_dir());
        let log = fs::read_to_string(server.log_path()).unwrap();
        assert!(log.contains(READY_LINE), "{log}");
    }

    #[test]
    fn kill_then_restart_keeps_port_and_store() {
        let mut server = NatsServer::start().unwrap();
        let (port, store) = (server.port(), server.store_dir().to_owned());
        server.kill().unwrap();
        assert!(!server.is_running());
        assert!(!connects(port));
        server.restart().unwrap();
        assert!(server.is_running());
        assert_eq!(server.port(), port);
        assert!(connects(port));
        assert_eq!(server.store_dir(), store);
        assert!(store.join("jetstream").is_dir());
    }

    #[test]
    fn stop_is_graceful_and_restart_works_while_running() {
        let mut server = NatsServer::start().unwrap();
        let port = server.port();
        server.stop().unwrap();
        assert!(!server.is_running());
        let log = fs::read_to_string(server.log_path()).unwrap();
        assert!(log.contains("Server Exiting"), "{log}");
        server.restart().unwrap();
        server.restart().unwrap(); // stops the running server first
        assert_eq!(server.port(), port);
        assert!(connects(port));
        server.stop().unwrap();
        server.stop().unwrap(); // idempotent
        server.kill().unwrap();
    }

    #[test]
    fn drop_kills_the_server_and_removes_the_temp_dir() {
        let server = NatsServer::start().unwrap();
        let (port, dir) = (server.port(), server.dir.path().to_owned());
        assert!(dir.is_dir());
        drop(server);
        assert!(!dir.exists());
        assert!(!connects(port));
    }

    #[test]
    fn missing_binary_is_not_installed() {
        let err = NatsServer::start_with(OsStr::new("/nonexistent/nats-server-bogus")).unwrap_err();
        assert!(matches!(err, HarnessError::NotInstalled), "{err:?}");
        assert!(err.to_string().contains("apt-get install -y nats-server"));
    }

    #[test]
    fn early_exit_reports_the_log() {
        // `false` exits at once with status 1, whatever the arguments.
        let err = NatsServer::start_with(OsStr::new("false")).unwrap_err();
        assert!(matches!(err, HarnessError::Exited { .. }), "{err:?}");
    }

    #[test]
    fn parses_the_ports_file() {
        assert_eq!(
            parse_ports_file(br#"{"nats":["nats://127.0.0.1:4222"]}"#),
            Some(4222)
        );
        assert_eq!(parse_ports_file(br#"{"nats":["nats://127.0.0.1:42"#), None);
        assert_eq!(parse_ports_file(b""), None);
    }
}
