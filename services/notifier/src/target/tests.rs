//! Request shapes per target kind, and the HMAC signature a receiver checks.

use fleet_events::ids::TenantId;
use fleet_events::notify::{RuleSpec, TargetKind, Trigger};
use fleet_events::samples;
use ring::hmac;

use super::*;
use crate::Job;

fn job(kind: TargetKind, trigger: Option<Trigger>) -> Job {
    let mut spec: RuleSpec = samples::rule_spec();
    spec.target.kind = kind;
    let mut message = samples::message();
    message.trigger = trigger;
    Job {
        notification: samples::notification(),
        tenant: TenantId::new("acme").expect("slug"),
        rule: samples::rule(),
        spec,
        message,
        attempt: 2,
    }
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_webhook_is_json_with_its_id_and_a_verifiable_signature() {
    let j = job(TargetKind::Webhook, Some(Trigger::TaskExhausted));
    let r = request(&j, "http://r/hook", Some(b"k3y"));
    let doc: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(doc["id"], samples::notification().to_string());
    assert_eq!(doc["severity"], "problem");
    assert_eq!(doc["trigger"], "taskExhausted");
    assert_eq!(doc["policy"]["name"], "nightly home");
    assert_eq!(doc["attempt"], 2);
    assert_eq!(
        header(&r, HEADER_ID),
        Some(samples::notification().to_string().as_str())
    );
    let signature = header(&r, HEADER_SIGNATURE).expect("signed");
    let hex = signature.strip_prefix("sha256=").expect("prefix");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"k3y");
    assert!(hmac::verify(&key, &r.body, &bytes).is_ok());
    assert!(
        hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, b"other"),
            &r.body,
            &bytes
        )
        .is_err()
    );
}

#[test]
fn unsigned_webhooks_carry_no_signature() {
    let r = request(&job(TargetKind::Webhook, None), "http://r/hook", None);
    assert_eq!(header(&r, HEADER_SIGNATURE), None);
}

#[test]
fn slack_ntfy_and_gotify_get_their_shapes() {
    let slack = request(
        &job(TargetKind::Slack, Some(Trigger::TaskExhausted)),
        "https://s",
        None,
    );
    let doc: serde_json::Value = serde_json::from_slice(&slack.body).expect("json");
    let text = doc["text"].as_str().expect("text");
    assert!(
        text.contains("*backup of nightly home on db-1 failed for good*"),
        "{text}"
    );
    let ntfy = request(
        &job(TargetKind::Ntfy, Some(Trigger::AgentOnline)),
        "https://n/t",
        None,
    );
    assert_eq!(header(&ntfy, "Priority"), Some("3"));
    assert_eq!(
        header(&ntfy, "Title"),
        Some("backup of nightly home on db-1 failed for good")
    );
    let gotify = request(
        &job(TargetKind::Gotify, Some(Trigger::TaskFailed)),
        "https://g",
        None,
    );
    let doc: serde_json::Value = serde_json::from_slice(&gotify.body).expect("json");
    assert_eq!(doc["priority"], 8);
}

#[test]
fn healthchecks_pings_success_fail_or_log() {
    let url = "https://hc.example/ping/abc/";
    let ok = request(
        &job(TargetKind::Healthchecks, Some(Trigger::TaskSucceeded)),
        url,
        None,
    );
    assert_eq!(ok.url, "https://hc.example/ping/abc");
    let bad = request(
        &job(TargetKind::Healthchecks, Some(Trigger::TaskExhausted)),
        url,
        None,
    );
    assert_eq!(bad.url, "https://hc.example/ping/abc/fail");
    let test = request(&job(TargetKind::Healthchecks, None), url, None);
    assert_eq!(test.url, "https://hc.example/ping/abc/log");
}
