//! Rule documents: a good one reads, a bad one lists every problem with its field, once.

use serde_json::json;

use super::*;

fn good() -> Value {
    json!({
        "name": "ops-webhook",
        "on": ["taskExhausted", "policyOverdue"],
        "policies": ["db nightly"],
        "agents": ["db-1"],
        "target": {"kind": "webhook", "urlSecret": "ops-hook", "hmacSecret": "ops-key"},
        "retry": {"maxAttempts": 5, "baseDelaySecs": 30, "maxDelaySecs": 600}
    })
}

fn fields(invalid: &Invalid) -> Vec<&str> {
    invalid.0.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn a_good_document_reads() {
    let spec = read(&good()).expect("valid");
    assert_eq!(spec.name, "ops-webhook");
    assert_eq!(spec.on, [Trigger::TaskExhausted, Trigger::PolicyOverdue]);
    assert_eq!((spec.policies.len(), spec.agents.len()), (1, 1));
    assert_eq!(spec.target.url_secret.as_deref(), Some("ops-hook"));
    assert_eq!(spec.retry.max_attempts, 5);
    let bare = json!({"name": "chat", "target": {"kind": "ntfy", "url": "https://ntfy.sh/fleet"}});
    let spec = read(&bare).expect("valid");
    assert_eq!(spec.retry, DeliveryRetry::default());
    assert_eq!(
        spec.triggers(),
        Trigger::DEFAULT,
        "no `on`: the default triggers"
    );
}

#[test]
fn every_problem_is_listed_with_its_field_once() {
    let bad = json!({
        "name": "Ops Hook!",
        "on": ["taskExhausted", "taskExploded", "taskExhausted"],
        "policies": [7],
        "colour": "red",
        "target": {"kind": "webhook", "url": "https://user:pw@hooks.example/x",
                   "hmacSecret": "a b", "header": "x"},
        "retry": {"maxAttempts": -1, "maxDelaySecs": 1, "every": 3}
    });
    let invalid = read(&bad).unwrap_err();
    let found = fields(&invalid);
    for field in [
        "name",
        "on[1]",
        "on[2]",
        "policies[0]",
        "colour",
        "target.url",
        "target.hmacSecret",
        "target.header",
        "retry.maxAttempts",
        "retry.maxDelaySecs",
        "retry.every",
    ] {
        let times = found.iter().filter(|f| **f == field).count();
        assert_eq!(times, 1, "{field} in {found:?}");
    }
    let url = invalid.0.iter().find(|p| p.field == "target.url").unwrap();
    assert!(url.message.contains("urlSecret"), "{url:?}");
    let trigger = invalid.0.iter().find(|p| p.field == "on[1]").unwrap();
    assert!(
        trigger.message.contains("taskFailed"),
        "names the triggers: {trigger:?}"
    );
}

#[test]
fn a_credential_url_of_a_secret_kind_names_url_secret() {
    for kind in ["slack", "gotify", "healthchecks"] {
        let doc = json!({"name": "x", "target": {"kind": kind, "url": "https://hooks.example/a"}});
        let invalid = read(&doc).unwrap_err();
        assert_eq!(fields(&invalid), ["target.url"], "{kind}");
        assert!(invalid.0[0].message.contains("urlSecret"), "{invalid}");
    }
    let query =
        json!({"name": "x", "target": {"kind": "ntfy", "url": "https://n.example/t?auth=x"}});
    let invalid = read(&query).unwrap_err();
    assert!(invalid.0[0].message.contains("urlSecret"), "{invalid}");
}

#[test]
fn missing_fields_and_wrong_shapes_are_named() {
    let invalid = read(&json!({"on": "taskFailed"})).unwrap_err();
    assert_eq!(fields(&invalid), ["name", "on", "target"], "{invalid}");
    let invalid = read(&json!({"name": "x", "target": {"url": "ftp://x"}})).unwrap_err();
    assert_eq!(fields(&invalid), ["target.kind", "target.url"], "{invalid}");
    let invalid =
        read(&json!({"name": "x", "target": {"kind": "pager", "url": "https://p"}})).unwrap_err();
    assert_eq!(fields(&invalid), ["target.kind"], "{invalid}");
    assert!(invalid.0[0].message.contains("webhook, slack"), "{invalid}");
    let invalid = read(&json!({"name": "x", "target": "https://x", "retry": 3})).unwrap_err();
    assert_eq!(fields(&invalid), ["target", "retry"], "{invalid}");
    assert!(read(&json!(["a", "list"])).is_err());
}
