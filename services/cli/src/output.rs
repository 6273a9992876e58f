//! What the API verbs print: JSON for scripts, and the cell formats of the text for people
//! (times, missing values, what a write did).

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use fleet_api_model::words;
use serde_json::Value;

/// Writes `text` to stdout, adding a final newline if it has none. A closed stdout (the
/// reader went away) comes back as an error that `main` treats as the end.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| match text.ends_with('\n') {
            true => Ok(()),
            false => out.write_all(b"\n"),
        })
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Prints `value` pretty-printed.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    print(&serde_json::to_string_pretty(value)?)
}

/// A JSON value as a cell: strings as they are, `null` as `-`, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 time as a cell, in UTC to the second (`2025-01-02T03:04:05Z`); `null` as
/// `-`; anything else as it is.
pub fn time(value: &Value) -> String {
    match value {
        Value::String(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t
                .with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            Err(_) => s.clone(),
        },
        other => text(other),
    }
}

/// Milliseconds as people read a duration in a table: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn duration_ms(value: &Value) -> String {
    match value.as_u64() {
        Some(ms) => words::duration_compact(ms),
        None => text(value),
    }
}

/// A time as a cell, in UTC to the second (`2025-01-02T03:04:05Z`); `-` for none.
pub fn time_of(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// How long before `now` `then` was, in words: `45s ago`, `12m ago`, `3h ago`, `2d ago`
/// (whole units, rounded down); `just now` for a time not before `now`.
pub fn ago_of(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    match secs {
        ..=0 => "just now".to_owned(),
        1..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// One line about a write's answer (`{"id", "version", "events"}`): `subject: verb
/// (event, event)`, or `subject: unchanged` when nothing needed to change.
pub fn written(subject: &str, verb: &str, answer: &Value) -> String {
    let events: Vec<&str> = answer["events"]
        .as_array()
        .map(|events| events.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match events.is_empty() {
        true => format!("{subject}: unchanged"),
        false => format!("{subject}: {verb} ({})", events.join(", ")),
    }
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> String {
    match value {
        true => "yes".to_owned(),
        false => "no".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_show_json_values_for_people() {
        assert_eq!(text(&json!(null)), "-");
        assert_eq!(text(&json!("web-1")), "web-1");
        assert_eq!(text(&json!(3)), "3");
        assert_eq!(
            time(&json!("2025-01-02T04:04:05.123456+01:00")),
            "2025-01-02T03:04:05Z"
        );
        assert_eq!(time(&json!(null)), "-");
        assert_eq!(time(&json!("yesterday")), "yesterday");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(duration_ms(&json!(850)), "850ms");
        assert_eq!(duration_ms(&json!(12_345)), "12.3s");
        assert_eq!(duration_ms(&json!(245_000)), "4m05s");
        assert_eq!(duration_ms(&json!(7_380_000)), "2h03m");
        assert_eq!(duration_ms(&json!(null)), "-");
    }

    #[test]
    fn a_write_says_what_it_appended() {
        let answer = json!({"id": "p", "version": 7, "events": ["policy.created", "policy.assigned_to_agent"]});
        assert_eq!(
            written("policy nightly", "created", &answer),
            "policy nightly: created (policy.created, policy.assigned_to_agent)"
        );
        let unchanged = json!({"id": "p", "version": 7, "events": []});
        assert_eq!(
            written("policy nightly", "updated", &unchanged),
            "policy nightly: unchanged"
        );
    }
}
