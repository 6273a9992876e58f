//! A minimal HTTP/1.1 client over a plain TCP stream, enough to exercise the API for real
//! (one request per connection, `Connection: close`).

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: status code, JSON body (`Value::Null` if the body is not JSON) and the body
/// as sent.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

/// Sends `method path` to `addr` with an optional bearer token and JSON body.
pub async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    call_with(addr, method, path, token, &[], body).await
}

/// [`call`] with extra request headers.
pub async fn call_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Response {
    let payload = body.map(|b| (b.to_string(), "application/json"));
    let payload = payload.as_ref().map(|(text, kind)| (text.as_str(), *kind));
    send(addr, method, path, token, headers, payload).await
}

/// Sends `method path` with a body of `content_type` as it is (YAML, say).
pub async fn call_text(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> Response {
    send(addr, method, path, token, &[], Some((body, content_type))).await
}

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the API");
    let payload = body.map(|(text, _)| text).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some((_, content_type)) = body {
        request.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    Response {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        text: body.to_owned(),
    }
}

/// `GET path` with `token`.
pub async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> Response {
    call(addr, "GET", path, token, None).await
}
