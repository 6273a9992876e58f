//! The HTTP request that delivers a notification to each kind of target. Pure: the URL and
//! the signing key are passed in (they come from the notifier's secrets).

use fleet_events::notify::{TargetKind, Trigger};
use ring::hmac;
use serde_json::json;

use super::core::Job;
use fleet_api_model::notify_json::message_json;

/// Header naming the notification: the same on every attempt, so a receiver can drop a
/// duplicate.
pub const HEADER_ID: &str = "Fleet-Notification-Id";
/// Header carrying the attempt number.
pub const HEADER_ATTEMPT: &str = "Fleet-Attempt";
/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` when the rule signs.
pub const HEADER_SIGNATURE: &str = "X-Fleet-Signature";

/// A POST to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// How serious a notification is.
fn severity(trigger: Option<Trigger>) -> &'static str {
    match trigger {
        None => "test",
        Some(t) if t.is_recovery() => "recovery",
        Some(_) => "problem",
    }
}

/// The request delivering `job` to `url`, signed with `hmac_key` when given.
pub fn request(job: &Job, url: &str, hmac_key: Option<&[u8]>) -> Request {
    let m = &job.message;
    let trigger = m.trigger;
    let mut headers = vec![
        (HEADER_ID, job.notification.to_string()),
        (HEADER_ATTEMPT, job.attempt.to_string()),
    ];
    let text_line = format!("{}\n{}", m.title, m.text);
    let (url, body) = match job.spec.target.kind {
        TargetKind::Webhook => {
            let mut doc = message_json(m);
            if let Some(obj) = doc.as_object_mut() {
                obj.insert("id".into(), json!(job.notification));
                obj.insert("rule".into(), json!(job.spec.name));
                obj.insert("tenant".into(), json!(job.tenant));
                obj.insert("attempt".into(), json!(job.attempt));
                obj.insert("severity".into(), json!(severity(trigger)));
            }
            headers.push(("Content-Type", "application/json".into()));
            (url.to_owned(), doc.to_string().into_bytes())
        }
        TargetKind::Slack => {
            let icon = match severity(trigger) {
                "problem" => ":rotating_light:",
                "recovery" => ":white_check_mark:",
                _ => ":information_source:",
            };
            let text = format!("{icon} *{}*\n{}", m.title, m.text);
            headers.push(("Content-Type", "application/json".into()));
            (
                url.to_owned(),
                json!({ "text": text }).to_string().into_bytes(),
            )
        }
        TargetKind::Ntfy => {
            let (priority, tags) = match severity(trigger) {
                "problem" => ("4", "warning"),
                "recovery" => ("3", "white_check_mark"),
                _ => ("2", "information_source"),
            };
            headers.push(("Title", header_safe(&m.title)));
            headers.push(("Priority", priority.into()));
            headers.push(("Tags", tags.into()));
            headers.push(("Content-Type", "text/plain; charset=utf-8".into()));
            (url.to_owned(), m.text.clone().into_bytes())
        }
        TargetKind::Gotify => {
            let priority = match severity(trigger) {
                "problem" => 8,
                "recovery" => 4,
                _ => 2,
            };
            headers.push(("Content-Type", "application/json".into()));
            let body = json!({ "title": m.title, "message": m.text, "priority": priority });
            (url.to_owned(), body.to_string().into_bytes())
        }
        TargetKind::Healthchecks => {
            let base = url.trim_end_matches('/');
            let url = match severity(trigger) {
                "problem" => format!("{base}/fail"),
                "recovery" => base.to_owned(),
                _ => format!("{base}/log"),
            };
            headers.push(("Content-Type", "text/plain; charset=utf-8".into()));
            (url, text_line.into_bytes())
        }
    };
    if let Some(key) = hmac_key {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let tag = hmac::sign(&key, &body);
        headers.push((HEADER_SIGNATURE, format!("sha256={}", hex(tag.as_ref()))));
    }
    Request { url, headers, body }
}

/// Header values are one line of visible ASCII: anything else becomes `?`.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
