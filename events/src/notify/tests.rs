//! Rule validation: every problem at once, credentials kept out of the log.

use super::*;

fn rule(target: Target) -> RuleSpec {
    RuleSpec {
        name: "ops".into(),
        on: vec![],
        policies: vec![],
        agents: vec![],
        target,
        retry: DeliveryRetry::default(),
    }
}

fn webhook(url: &str) -> Target {
    Target {
        kind: TargetKind::Webhook,
        url: Some(url.into()),
        url_secret: None,
        hmac_secret: None,
    }
}

#[test]
fn a_plain_webhook_is_valid_and_reacts_to_the_default_triggers() {
    let spec = rule(webhook("https://hooks.example.com/fleet"));
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(spec.triggers(), &Trigger::DEFAULT);
}

#[test]
fn urls_with_credentials_are_refused_with_the_way_out() {
    for url in [
        "https://user:pw@hooks.example.com/x",
        "https://hooks.example.com/x?token=abc",
    ] {
        let err = rule(webhook(url)).validate().expect_err(url);
        assert!(err.mentions("target.url"), "{err}");
        assert!(err.to_string().contains("urlSecret"), "{err}");
    }
    let err = rule(webhook("ftp://x")).validate().expect_err("scheme");
    assert!(err.to_string().contains("http://"), "{err}");
}

#[test]
fn a_slack_url_must_be_a_secret() {
    let mut target = webhook("https://hooks.slack.com/services/T/B/X");
    target.kind = TargetKind::Slack;
    let err = rule(target.clone())
        .validate()
        .expect_err("plain slack url");
    assert!(err.mentions("target.url"), "{err}");
    target.url = None;
    target.url_secret = Some("slack-ops".into());
    assert_eq!(rule(target).validate(), Ok(()));
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = rule(Target {
        kind: TargetKind::Ntfy,
        url: Some("http://x/y".into()),
        url_secret: Some("also".into()),
        hmac_secret: Some("key".into()),
    });
    spec.name = "Bad Name".into();
    spec.on = vec![Trigger::TaskFailed, Trigger::TaskFailed];
    spec.policies = vec![String::new()];
    spec.retry = DeliveryRetry {
        max_attempts: 0,
        base_delay_secs: 0,
        max_delay_secs: 0,
    };
    let err = spec.validate().expect_err("many problems");
    for field in [
        "name",
        "on[1]",
        "policies[0]",
        "target",
        "target.hmacSecret",
        "retry.maxAttempts",
        "retry.baseDelaySecs",
    ] {
        assert!(err.mentions(field), "{field} missing from {err}");
    }
}

#[test]
fn triggers_round_trip_by_name() {
    for t in Trigger::ALL {
        assert_eq!(Trigger::from_name(t.as_str()), Some(t));
    }
    assert_eq!(Trigger::from_name("nope"), None);
}
