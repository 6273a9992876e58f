//! A minimal server-sent-events client over a plain TCP stream: one `GET`, the response
//! head, chunked transfer decoding, then frames (`id`, `event`, `data`, comments) one at a
//! time with a deadline. Dropping it closes the connection: the client goes away.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One frame of the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    /// The `data` lines, joined with newlines.
    pub data: String,
    /// Comment lines (`: text`), without the colon and the space.
    pub comments: Vec<String>,
}

impl Frame {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{:?}: {e}", self.data))
    }
}

/// What waiting for the next frame gave.
#[derive(Debug)]
pub enum Read {
    Frame(Frame),
    /// Nothing complete arrived in time.
    TimedOut,
    /// The server ended the stream or closed the connection.
    Ended,
}

/// An open event stream (or the refusal, when `status` is not 200).
pub struct EventStream {
    pub status: u16,
    /// Response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body of a refusal (`Value::Null` for a stream).
    pub body: Value,
    socket: TcpStream,
    /// Received, not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked, not yet parsed into frames.
    text: Vec<u8>,
    ended: bool,
}

/// `GET path` on `addr` asking for an event stream, with an optional bearer token and
/// `Last-Event-ID`.
pub async fn open(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    last_event_id: Option<u64>,
) -> EventStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect to the API");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(seq) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {seq}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut stream = EventStream {
        status: 0,
        headers: Vec::new(),
        body: Value::Null,
        socket,
        raw: Vec::new(),
        text: Vec::new(),
        ended: false,
    };
    stream.read_head().await;
    stream
}

impl EventStream {
    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next frame, keep-alive comments included, if one completes within `within`.
    pub async fn next(&mut self, within: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(frame) = self.take_frame() {
                return Read::Frame(frame);
            }
            if self.ended {
                return Read::Ended;
            }
            // `read` is cancel-safe: a deadline never loses received bytes.
            match tokio::time::timeout_at(deadline, self.receive()).await {
                Err(_) => return Read::TimedOut,
                Ok(false) => self.ended = true,
                Ok(true) => self.dechunk(),
            }
        }
    }

    /// The next `n` frames that carry an id (events, not keep-alives), or fewer if `within`
    /// passes or the stream ends first.
    pub async fn events(&mut self, n: usize, within: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        let mut frames = Vec::new();
        while frames.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Read::Frame(frame) if frame.id.is_some() => frames.push(frame),
                Read::Frame(_) => {}
                Read::TimedOut | Read::Ended => break,
            }
        }
        frames
    }

    /// Reads more bytes; false at the end of the connection.
    async fn receive(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        match self.socket.read(&mut buf).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    async fn read_head(&mut self) {
        let end = loop {
            if let Some(at) = find(&self.raw, b"\r\n\r\n") {
                break at;
            }
            assert!(
                self.receive().await,
                "the connection closed before a response"
            );
        };
        let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
        self.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        self.status = lines
            .next()
            .and_then(|status| status.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        self.headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        if self.status != 200 {
            let length: usize = self
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            while self.raw.len() < length && self.receive().await {}
            self.body = serde_json::from_slice(&self.raw).unwrap_or(Value::Null);
            self.ended = true;
        } else {
            assert_eq!(self.header("transfer-encoding"), Some("chunked"), "{head}");
            self.dechunk();
        }
    }

    /// Moves every complete chunk from `raw` to `text`; the last (empty) chunk ends the
    /// stream.
    fn dechunk(&mut self) {
        while let Some(line_end) = find(&self.raw, b"\r\n") {
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.text.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// The first complete frame in `text`, if any.
    fn take_frame(&mut self) -> Option<Frame> {
        let end = find(&self.text, b"\n\n")?;
        let block = String::from_utf8_lossy(&self.text[..end]).into_owned();
        self.text.drain(..end + 2);
        let mut frame = Frame::default();
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(comment) = line.strip_prefix(':') {
                frame.comments.push(comment.trim_start().to_owned());
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match name {
                "id" => frame.id = Some(value),
                "event" => frame.event = Some(value),
                "data" => data.push(value),
                _ => {}
            }
        }
        frame.data = data.join("\n");
        Some(frame)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
