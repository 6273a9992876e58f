//! `fleet events replay|tail`: the tenant's event log over the HTTP API, one line per event
//! (sequence, time, type, aggregate, summary), or one JSON object per line when tailing
//! with `-o json`.

use std::time::Duration;

use chrono::SecondsFormat;
use serde_json::Value;

use crate::api_client::{ApiClient, ApiError, exit};
use crate::args::{EventsArgs, EventsCommand, OutputArg, ReplayArgs};
use crate::lookup;
use crate::output::{print, print_json, text, time};

/// Path of the live stream.
const STREAM: [&str; 3] = ["v1", "events", "stream"];
/// Wait between attempts to reconnect a stream that ended.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Width of the type column: the longer types push the rest of their line right.
const TYPE_WIDTH: usize = 24;

/// Runs one `fleet events` command.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let json = args.api.output == OutputArg::Json;
    match args.command {
        EventsCommand::Replay(replay) => {
            let query = replay_query(&client, replay).await?;
            let answer = client.get(&["v1", "events"], &query).await?;
            if json {
                return print_json(&answer);
            }
            let lines: String = answer["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|event| event_line(event) + "\n")
                .collect();
            match lines.is_empty() {
                true => Ok(()),
                false => print(&lines),
            }
        }
        EventsCommand::Tail => {
            tokio::select! {
                result = tail(&client, json) => result,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
    }
}

/// The `GET /v1/events` query: one aggregate (names resolved to ids) and the time range.
async fn replay_query(
    client: &ApiClient,
    replay: ReplayArgs,
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut query = Vec::new();
    if let Some(agent) = &replay.agent {
        query.push(("agent", lookup::agent_id(client, agent).await?));
    }
    if let Some(task) = replay.task {
        query.push(("task", task));
    }
    if let Some(policy) = &replay.policy {
        query.push(("policy", lookup::policy_id(client, policy).await?));
    }
    for (key, at) in [("since", replay.since), ("until", replay.until)] {
        if let Some(at) = at {
            query.push((key, at.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
    }
    Ok(query)
}

/// One event for people: `seq  time  type  kind/id  summary`.
pub fn event_line(event: &Value) -> String {
    let aggregate = format!(
        "{}/{}",
        text(&event["aggregate"]["kind"]),
        text(&event["aggregate"]["id"])
    );
    let line = format!(
        "{:>8}  {}  {:<TYPE_WIDTH$}  {aggregate}  {}",
        text(&event["seq"]),
        time(&event["occurredAt"]),
        text(&event["type"]),
        summary(event),
    );
    line.trim_end().to_owned()
}

/// One event of an object's own history (the aggregate goes without saying):
/// `seq  time  type  summary`.
pub fn history_line(event: &Value) -> String {
    let line = format!(
        "{:>8}  {}  {:<TYPE_WIDTH$}  {}",
        text(&event["seq"]),
        time(&event["occurredAt"]),
        text(&event["type"]),
        summary(event),
    );
    line.trim_end().to_owned()
}

fn summary(event: &Value) -> String {
    event["summary"].as_str().unwrap_or_default().to_owned()
}

/// Follows the live stream until it fails for good: when it ends (the API restarted, say),
/// reconnects after the last event seen, so no event is skipped or shown twice.
async fn tail(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let mut last_seq = None;
    let mut response = client.stream(&STREAM, None).await?;
    loop {
        let mut parser = SseParser::default();
        let ended = loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    for frame in parser.push(&bytes) {
                        if let Some(seq) = show(&frame, json)? {
                            last_seq = Some(seq);
                        }
                    }
                }
                Ok(None) => break "the API closed the event stream".to_owned(),
                Err(e) => break client.unreachable(&e).to_string(),
            }
        };
        eprintln!("fleet: {ended}; reconnecting");
        response = reconnect(client, last_seq).await?;
    }
}

/// Opens the stream again, waiting while the API is away; other refusals (the token was
/// revoked, say) end the tail.
async fn reconnect(
    client: &ApiClient,
    last_seq: Option<u64>,
) -> Result<reqwest::Response, ApiError> {
    loop {
        tokio::time::sleep(RECONNECT_DELAY).await;
        match client.stream(&STREAM, last_seq).await {
            Ok(response) => return Ok(response),
            // Unreachable, or 503: still away.
            Err(e) if e.exit_code() == exit::UNAVAILABLE => {}
            Err(e) => return Err(e),
        }
    }
}

/// Prints one frame's event; its sequence, to resume after. A frame whose data is not
/// JSON is reported on stderr and skipped.
fn show(frame: &Frame, json: bool) -> anyhow::Result<Option<u64>> {
    let event: Value = match serde_json::from_str(&frame.data) {
        Ok(event) => event,
        Err(e) => {
            eprintln!("fleet: skipping an event stream frame that is not JSON ({e})");
            return Ok(None);
        }
    };
    match json {
        true => print(&serde_json::to_string(&event)?)?,
        false => print(&event_line(&event))?,
    }
    let seq = frame.id.as_deref().and_then(|id| id.parse().ok());
    Ok(seq.or_else(|| event["seq"].as_u64()))
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Splits a `text/event-stream` body into frames as its bytes arrive: `field: value`
/// lines, a blank line ends a frame, `:` lines are comments (keepalives).
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    frame: Frame,
    has_data: bool,
}

impl SseParser {
    /// Takes the next bytes; returns the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        self.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw[..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                let frame = std::mem::take(&mut self.frame);
                if std::mem::take(&mut self.has_data) {
                    frames.push(frame);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.frame.data.push('\n');
                    }
                    self.frame.data.push_str(value);
                    self.has_data = true;
                }
                "event" => self.frame.event = Some(value.to_owned()),
                "id" => self.frame.id = Some(value.to_owned()),
                // `retry` and unknown fields.
                _ => {}
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "seq": 1042, "id": "0190e000-0000-7000-8000-000000000001", "type": "task.failed",
            "occurredAt": "2025-01-02T03:04:05.678Z", "tenant": "acme",
            "aggregate": {"kind": "task", "id": "0190e000-0000-7000-8000-0000000000aa"},
            "correlationId": null, "causationId": null,
            "summary": "attempt 2 failed: network (connection refused)",
            "data": {"attempt": 2}
        })
    }

    #[test]
    fn an_event_is_one_line_of_seq_time_type_aggregate_summary() {
        assert_eq!(
            event_line(&event()),
            "    1042  2025-01-02T03:04:05Z  task.failed               \
             task/0190e000-0000-7000-8000-0000000000aa  attempt 2 failed: network \
             (connection refused)"
        );
        assert_eq!(
            history_line(&event()),
            "    1042  2025-01-02T03:04:05Z  task.failed               attempt 2 failed: \
             network (connection refused)"
        );
        let mut quiet = event();
        quiet["summary"] = json!(null);
        assert!(
            event_line(&quiet).ends_with("0000000000aa"),
            "no trailing spaces"
        );
    }

    #[test]
    fn frames_are_cut_at_blank_lines_across_chunks() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .push(b": keepalive\n\nid: 7\nevent: task.fail")
                .is_empty()
        );
        let frames = parser.push(b"ed\ndata: {\"seq\": 7}\r\n\r\nid: 8\ndata:a\ndata: b\n\n");
        assert_eq!(
            frames,
            vec![
                Frame {
                    id: Some("7".into()),
                    event: Some("task.failed".into()),
                    data: "{\"seq\": 7}".into(),
                },
                Frame {
                    id: Some("8".into()),
                    event: None,
                    data: "a\nb".into(),
                },
            ]
        );
        // A frame without data is no event; a partial frame waits for its end.
        assert!(parser.push(b"id: 9\n\ndata: x").is_empty());
        assert_eq!(parser.push(b"\n\n")[0].data, "x");
    }

    #[test]
    fn multi_byte_characters_split_across_chunks_survive() {
        let mut parser = SseParser::default();
        let text = "data: grüße\n\n".as_bytes();
        let (a, b) = text.split_at(9);
        assert!(parser.push(a).is_empty());
        assert_eq!(parser.push(b)[0].data, "grüße");
    }
}
