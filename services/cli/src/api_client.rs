//! The `fleet` CLI's client of the operator HTTP API: base URL, bearer token, JSON
//! requests, and the API's error answers as an [`ApiError`] that carries the exit code.
//!
//! `http://` or `https://`: rustls with the system's roots plus `--api-ca-file`; a
//! certificate the client does not trust is reported with the flag that fixes it.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::args::ApiArgs;

/// Exit codes (`sysexits.h`), as the API contract assigns them.
pub mod exit {
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong.
    pub const USAGE: u8 = 64;
    /// The input is invalid (400).
    pub const INVALID: u8 = 65;
    /// Not found (404), or an input file cannot be read.
    pub const NOT_FOUND: u8 = 66;
    /// The API is unavailable (503) or cannot be reached.
    pub const UNAVAILABLE: u8 = 69;
    /// A conflict (409): re-read and try again.
    pub const CONFLICT: u8 = 75;
    /// Not allowed (401, 403).
    pub const NOT_ALLOWED: u8 = 77;
}

/// How long to wait for a TCP connection to the API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request (not the event stream) may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One field's problem in a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// Why a call to the API did not give an answer; [`ApiError::exit_code`] is what `fleet`
/// exits with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The command line cannot be used as given (a bad URL, an empty token file): fix it.
    #[error("{0}")]
    Usage(String),
    /// No token was given: pass one.
    #[error(
        "no API token: pass --token or --token-file, or set FLEET_TOKEN or FLEET_TOKEN_FILE \
         (`fleet tenant create` prints an admin token)"
    )]
    NoToken,
    /// Input the command was given is invalid (a YAML file that does not parse, an
    /// ambiguous name): fix the input.
    #[error("{0}")]
    Invalid(String),
    /// Something named on the command line does not exist, or a file cannot be read.
    #[error("{0}")]
    NotFound(String),
    /// The API could not be reached (refused, timed out): start it, or check `--api`.
    #[error("cannot reach the API at {url}: {reason}; is it running? (start it with `fleet up`)")]
    Unreachable { url: String, reason: String },
    /// The API answered TLS with a certificate the CLI does not trust: give its CA.
    #[error(
        "the API at {url} presents a certificate this CLI does not trust ({reason}); give its CA \
         with --api-ca-file (or FLEET_API_CA_FILE)"
    )]
    Untrusted { url: String, reason: String },
    /// The API answered with an error status and says why.
    #[error("{message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        problems: Vec<Problem>,
    },
    /// The API answered something that is not what the contract says.
    #[error("the API at {url} answered {reason}")]
    BadAnswer { url: String, reason: String },
}

impl ApiError {
    /// The exit code `fleet` ends with.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApiError::Usage(_) => exit::USAGE,
            ApiError::NoToken => exit::NOT_ALLOWED,
            ApiError::Invalid(_) => exit::INVALID,
            ApiError::NotFound(_) => exit::NOT_FOUND,
            ApiError::Unreachable { .. } | ApiError::Untrusted { .. } => exit::UNAVAILABLE,
            ApiError::Refused { status, .. } => status_exit_code(*status),
            ApiError::BadAnswer { .. } => exit::FAILURE,
        }
    }

    /// The field problems of a 400 answer.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ApiError::Refused { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// The exit code for an HTTP error status.
pub fn status_exit_code(status: u16) -> u8 {
    match status {
        400 | 422 => exit::INVALID,
        401 | 403 => exit::NOT_ALLOWED,
        404 => exit::NOT_FOUND,
        409 | 412 => exit::CONFLICT,
        502..=504 => exit::UNAVAILABLE,
        _ => exit::FAILURE,
    }
}

/// What `fleet` prints on stderr for `error` (`None`: nothing, stdout was closed by its
/// reader) and the code it exits with.
pub fn report(error: &anyhow::Error) -> (u8, Option<String>) {
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return (0, None);
    }
    let mut text = format!("fleet: {error:#}");
    let Some(api) = error.downcast_ref::<ApiError>() else {
        return (exit::FAILURE, Some(text));
    };
    let headline = text.clone();
    for problem in api.problems() {
        let line = format!("{}: {}", problem.field, problem.message);
        // The API names a lone problem in its message already: once is enough.
        if !headline.ends_with(&line) {
            text.push_str(&format!("\n  {line}"));
        }
    }
    (api.exit_code(), Some(text))
}

/// A client of one API with one token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    /// The URL as given, for messages.
    shown: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for `args` (URL and token); nothing is sent yet.
    pub fn new(args: &ApiArgs) -> Result<Self, ApiError> {
        let base = base_url(&args.api)?;
        let token = token(args.token.as_deref(), args.token_file.as_deref())?;
        let tls = fleet_https_client::client_config(args.api_ca_file.as_deref())
            .map_err(|e| ApiError::Usage(format!("cannot set up TLS: {e:#}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ApiError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            base,
            shown: args.api.clone(),
            token,
            http,
        })
    }

    /// The URL of `path` (segments, each percent-encoded) with `query`.
    pub fn url(&self, path: &[&str], query: &[(&str, String)]) -> Url {
        endpoint(&self.base, path, query)
    }

    /// `GET path?query`.
    pub async fn get(&self, path: &[&str], query: &[(&str, String)]) -> Result<Value, ApiError> {
        self.call(Method::GET, path, query, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &[&str], body: &Value) -> Result<Value, ApiError> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    /// One request with an optional JSON body; the answer's JSON (`null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = self.url(path, query);
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        answer(status, &bytes, &url)
    }

    /// Opens the server-sent event stream at `path`, after `last_event_id` when given.
    pub async fn stream(
        &self,
        path: &[&str],
        last_event_id: Option<u64>,
    ) -> Result<reqwest::Response, ApiError> {
        let url = self.url(path, &[]);
        let mut request = self
            .http
            .get(url.clone())
            .bearer_auth(&self.token)
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(seq) = last_event_id {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
            return Err(refusal(status, &bytes));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !content_type.starts_with("text/event-stream") {
            return Err(ApiError::BadAnswer {
                url: url.to_string(),
                reason: format!("{content_type:?} instead of an event stream"),
            });
        }
        Ok(response)
    }

    /// The error for a request that got no answer.
    pub fn unreachable(&self, error: &reqwest::Error) -> ApiError {
        let url = self.shown.clone();
        if error.is_timeout() {
            let reason = "no answer in time".to_owned();
            return ApiError::Unreachable { url, reason };
        }
        let reason = innermost(error);
        if is_untrusted(&reason) {
            ApiError::Untrusted { url, reason }
        } else {
            ApiError::Unreachable { url, reason }
        }
    }
}

/// The deepest cause of `error`: for a refused connection, "Connection refused".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Whether `reason` (rustls's words) says the server's certificate is not trusted.
fn is_untrusted(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    lower.contains("invalid peer certificate") || lower.contains("unknownissuer")
}

/// Checks the `--api` URL: http or https, usable as a base.
fn base_url(text: &str) -> Result<Url, ApiError> {
    let url = Url::parse(text)
        .map_err(|e| ApiError::Usage(format!("--api {text:?} is not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" if !url.cannot_be_a_base() && url.host().is_some() => Ok(url),
        _ => Err(ApiError::Usage(format!(
            "--api {text:?} must be an http:// or https:// URL such as http://127.0.0.1:8080"
        ))),
    }
}

/// `base` with `path` appended (each segment percent-encoded) and `query`.
fn endpoint(base: &Url, path: &[&str], query: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    // A base checked by `base_url` always has path segments.
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(path);
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
    }
    url
}

/// The token: `--token` (or FLEET_TOKEN) if given and not empty, else the contents of the
/// token file without trailing whitespace.
fn token(token: Option<&str>, file: Option<&Path>) -> Result<String, ApiError> {
    if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    let Some(path) = file else {
        return Err(ApiError::NoToken);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ApiError::NotFound(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim_end();
    if token.is_empty() {
        return Err(ApiError::Usage(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// The API's answer: the JSON of a success (`null` when empty), else its error.
fn answer(status: StatusCode, body: &[u8], url: &Url) -> Result<Value, ApiError> {
    if !status.is_success() {
        return Err(refusal(status, body));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadAnswer {
        url: url.to_string(),
        reason: format!("{status} with a body that is not JSON ({e})"),
    })
}

/// The error of an error answer: the API's `{"error": {...}}`, or the status and the start
/// of the body when the body is not that (a proxy's page, say).
fn refusal(status: StatusCode, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        code: String,
        message: String,
        #[serde(default)]
        problems: Vec<Problem>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { error }) => ApiError::Refused {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            problems: error.problems,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            let message = match text.is_empty() {
                true => format!("HTTP {status}"),
                false => format!("HTTP {status}: {text}"),
            };
            ApiError::Refused {
                status: status.as_u16(),
                code: String::new(),
                message,
                problems: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use serde_json::json;

    /// A TLS listener (rustls with ring, as the API serves) and a certificate from a CA made
    /// here; the handshake is all it does.
    async fn tls_listener() -> (String, fleet_tests::pki::Pki) {
        let pki = fleet_tests::pki::Pki::generate();
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(&pki.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .expect("the certificate");
        let key = PrivateKeyDer::from_pem_file(&pki.key).expect("the key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let config = std::sync::Arc::new(config);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = acceptor.accept(stream).await;
            }
        });
        (format!("https://localhost:{port}"), pki)
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_refused_naming_the_flag_and_the_ca_file_trusts_it() {
        let (api, pki) = tls_listener().await;
        let args = ApiArgs {
            api,
            token: Some("t".to_owned()),
            token_file: None,
            api_ca_file: None,
            output: crate::args::OutputArg::Json,
        };
        let client = ApiClient::new(&args).expect("client");
        let error = client
            .get(&["v1", "agents"], &[])
            .await
            .expect_err("untrusted");
        assert_eq!(error.exit_code(), 69, "{error}");
        assert!(error.to_string().contains("--api-ca-file"), "{error}");
        // With the CA the handshake succeeds; this listener then closes without answering.
        let trusting = ApiArgs {
            api_ca_file: Some(pki.ca.clone()),
            ..args
        };
        let client = ApiClient::new(&trusting).expect("client");
        let error = client
            .get(&["v1", "agents"], &[])
            .await
            .expect_err("no answer");
        assert!(!error.to_string().contains("certificate"), "{error}");
    }

    fn url() -> Url {
        Url::parse("http://127.0.0.1:8080/v1/policies").expect("url")
    }

    #[test]
    fn statuses_map_to_the_contracts_exit_codes() {
        for (status, code) in [
            (400, 65),
            (401, 77),
            (403, 77),
            (404, 66),
            (409, 75),
            (503, 69),
            (500, 1),
            (418, 1),
        ] {
            assert_eq!(status_exit_code(status), code, "HTTP {status}");
        }
        let unreachable = ApiError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            reason: "Connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 69);
        assert_eq!(ApiError::NoToken.exit_code(), 77);
        assert_eq!(ApiError::Usage("x".into()).exit_code(), 64);
    }

    #[test]
    fn an_error_answer_carries_the_apis_message_and_problems() {
        let body = json!({"error": {"code": "invalid", "message": "the policy is invalid",
            "problems": [{"field": "schedule", "message": "fires too often"},
                         {"field": "name", "message": "must not be empty"}]}});
        let error =
            answer(StatusCode::BAD_REQUEST, body.to_string().as_bytes(), &url()).expect_err("400");
        assert_eq!(error.exit_code(), 65);
        assert_eq!(error.to_string(), "the policy is invalid");
        assert_eq!(error.problems().len(), 2);

        // Printed as main prints it: one line, then one per problem; context comes first.
        let error = anyhow::Error::from(error).context("policy nightly (document 1)");
        let (code, text) = report(&error);
        assert_eq!(code, 65);
        assert_eq!(
            text.as_deref(),
            Some(
                "fleet: policy nightly (document 1): the policy is invalid\n  schedule: fires \
                 too often\n  name: must not be empty"
            )
        );
    }

    #[test]
    fn a_lone_problem_already_in_the_message_is_not_repeated() {
        let body = json!({"error": {"code": "invalid",
            "message": "invalid input: perKind.backup: must be at least 1",
            "problems": [{"field": "perKind.backup", "message": "must be at least 1"}]}});
        let error =
            answer(StatusCode::BAD_REQUEST, body.to_string().as_bytes(), &url()).expect_err("400");
        let (code, text) = report(&anyhow::Error::from(error));
        assert_eq!(code, 65);
        assert_eq!(
            text.as_deref(),
            Some("fleet: invalid input: perKind.backup: must be at least 1")
        );
    }

    #[test]
    fn a_body_that_is_not_the_apis_error_still_gives_status_and_text() {
        let error =
            answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", &url()).expect_err("502");
        assert_eq!(error.exit_code(), 69);
        assert_eq!(
            error.to_string(),
            "HTTP 502 Bad Gateway: <html>bad gateway</html>"
        );
        let error = answer(StatusCode::NOT_FOUND, b"", &url()).expect_err("404");
        assert_eq!(error.to_string(), "HTTP 404 Not Found");
        assert_eq!(error.exit_code(), 66);
    }

    #[test]
    fn success_answers_are_json_or_nothing() {
        assert_eq!(
            answer(StatusCode::OK, br#"{"id": "x"}"#, &url()).expect("json"),
            json!({"id": "x"})
        );
        assert_eq!(
            answer(StatusCode::NO_CONTENT, b"", &url()).expect("empty"),
            Value::Null
        );
        let error = answer(StatusCode::OK, b"not json", &url()).expect_err("not json");
        assert_eq!(error.exit_code(), 1);
        assert!(error.to_string().contains("not JSON"), "{error}");
    }

    #[test]
    fn other_errors_exit_1_and_a_closed_stdout_quietly_0() {
        let error = anyhow::anyhow!("boom").context("doing a thing");
        assert_eq!(
            report(&error),
            (1, Some("fleet: doing a thing: boom".to_owned()))
        );
        let pipe: anyhow::Result<()> =
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing to stdout");
        assert_eq!(report(&pipe.expect_err("error")), (0, None));
    }

    #[test]
    fn the_base_url_is_http_or_https_and_an_untrusted_certificate_names_the_flag() {
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        assert!(base_url("http://fleet.example/prefix/").is_ok());
        base_url("https://fleet.example").expect("https");
        assert!(is_untrusted("invalid peer certificate: UnknownIssuer"));
        assert!(!is_untrusted("Connection refused"));
        let untrusted = ApiError::Untrusted {
            url: "https://fleet.example".into(),
            reason: "invalid peer certificate: UnknownIssuer".into(),
        };
        let said = untrusted.to_string();
        assert!(
            said.contains("--api-ca-file") && !said.contains("is it running"),
            "{said}"
        );
        assert_eq!(untrusted.exit_code(), 69);
        assert_eq!(
            base_url("127.0.0.1:8080")
                .expect_err("no scheme")
                .exit_code(),
            64
        );
        assert_eq!(base_url("mailto:x@y").expect_err("no base").exit_code(), 64);
    }

    #[test]
    fn paths_are_appended_and_encoded() {
        let base = base_url("http://127.0.0.1:8080").expect("url");
        let url = endpoint(&base, &["v1", "policies", "db nightly/2", "pause"], &[]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/v1/policies/db%20nightly%2F2/pause"
        );
        let prefixed = base_url("http://host/fleet/").expect("url");
        let url = endpoint(
            &prefixed,
            &["v1", "tasks"],
            &[
                ("state", "failed".into()),
                ("since", "2025-01-02T03:04:05+00:00".into()),
            ],
        );
        assert_eq!(
            url.as_str(),
            "http://host/fleet/v1/tasks?state=failed&since=2025-01-02T03%3A04%3A05%2B00%3A00"
        );
    }

    #[test]
    fn the_token_comes_from_the_flag_else_the_file_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "rft1.acme.abc \n\n").expect("write");
        assert_eq!(token(None, Some(&file)).expect("file"), "rft1.acme.abc");
        assert_eq!(
            token(Some("rft1.acme.flag"), Some(&file)).expect("flag"),
            "rft1.acme.flag"
        );
        assert_eq!(token(Some(""), Some(&file)).expect("file"), "rft1.acme.abc");
        assert!(matches!(token(None, None), Err(ApiError::NoToken)));
        let missing = token(None, Some(&dir.path().join("nope"))).expect_err("missing");
        assert_eq!(missing.exit_code(), 66);
        std::fs::write(&file, " \n").expect("write");
        assert_eq!(token(None, Some(&file)).expect_err("empty").exit_code(), 64);
    }
}
