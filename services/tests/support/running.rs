//! Running the real system in a test: `fleet up` and agents as child processes stopped
//! when dropped, the API over raw HTTP/1.1, and polling until something shows.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process stopped when dropped: SIGTERM, then SIGKILL after `grace`.
pub struct Guard {
    pub child: Child,
    pub grace: Duration,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fleet up` on the harness's NATS server, its API on `api_port`.
pub fn fleet_up(nats_url: &str, data: &Path, api_port: u16) -> Guard {
    fleet_up_with(nats_url, data, api_port, &[])
}

/// [`fleet_up`] with more arguments.
pub fn fleet_up_with(nats_url: &str, data: &Path, api_port: u16, more: &[&str]) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["up", "--nats-url", nats_url, "--data-dir"])
        .arg(data)
        .arg("--api-addr")
        .arg(format!("127.0.0.1:{api_port}"))
        .args(more)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start fleet up");
    Guard {
        child,
        grace: Duration::from_secs(20),
    }
}

/// Writes `text` to a new file only its owner can read.
pub fn write_private(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all(text.as_bytes()).expect("write");
}

/// `text` as a single-quoted YAML string.
pub fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// The API over raw HTTP/1.1: one connection per GET, `Connection: close`.
pub struct Api {
    pub addr: String,
    pub token: String,
}

impl Api {
    /// GET `path`: the status and the body as JSON (a JSON string if it is not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    /// POST `body` as JSON to `path`: the status and the answer as JSON.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the API");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Accept: application/json\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("answer");
        let text = String::from_utf8(raw).expect("utf-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line of {head}"));
        let chunked = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// GET `path`, which must answer 200; its JSON.
    pub fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

/// The body of a chunked transfer encoding.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// Polls `probe` every `every` until it gives `Some`, for at most `within`. The probe may
/// leave a note of what it saw last, which a timeout shows.
pub fn eventually<T>(
    within: Duration,
    every: Duration,
    what: &str,
    mut probe: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    loop {
        if let Some(found) = probe(&mut last) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {within:?}; last seen: {last}"
        );
        std::thread::sleep(every);
    }
}

/// Waits until the API at `addr` answers `/readyz` with 200 (at most 60 s).
pub fn wait_ready(addr: &str) {
    eventually(
        Duration::from_secs(60),
        Duration::from_millis(200),
        "API answering /readyz",
        |_| {
            let mut stream = TcpStream::connect(addr).ok()?;
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).ok()?;
            answer.starts_with("HTTP/1.1 200").then_some(())
        },
    );
}
