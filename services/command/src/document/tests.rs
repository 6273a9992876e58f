//! Policy documents: a good one reads, a bad one lists every problem with its field.

use fleet_events::policy::TaskKind;
use serde_json::json;

use super::*;

fn good() -> Value {
    json!({
        "name": "db-nightly",
        "schedule": {"cron": {"expr": "0 2 * * *", "timezone": "Europe/Berlin"}},
        "kind": "backup",
        "repository": {"url": "/srv/restic/db", "secret": "db-repo"},
        "include": ["/var/lib/postgresql"],
        "retention": {"keepDaily": 7, "keepWeekly": 4},
        "agents": ["db-1", "0192c0de-0000-7000-8000-000000000001"],
        "paused": false
    })
}

fn fields(invalid: &Invalid) -> Vec<&str> {
    invalid.0.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn a_good_document_reads_with_its_agents_and_pause() {
    let document = read(&good()).expect("valid");
    assert_eq!(document.spec.name, "db-nightly");
    assert_eq!(document.spec.kind, TaskKind::Backup);
    assert_eq!(document.spec.retention.keep_daily, Some(7));
    assert_eq!(
        document.agents.as_deref(),
        Some(
            &[
                "db-1".to_owned(),
                "0192c0de-0000-7000-8000-000000000001".to_owned()
            ][..]
        )
    );
    assert_eq!(document.paused, Some(false));
    let mut bare = good();
    bare.as_object_mut().unwrap().remove("agents");
    bare.as_object_mut().unwrap().remove("paused");
    let document = read(&bare).expect("valid");
    assert_eq!((document.agents, document.paused), (None, None));
}

#[test]
fn every_problem_is_listed_with_its_field() {
    let bad = json!({
        "name": "db-nightly",
        "schedule": {"cron": {"expr": "every night", "timezone": "Mars/Olympus"}},
        "kind": "backup",
        "repository": {"url": "/srv/restic/db", "secret": "db-repo"},
        "include": [],
        "retention": {"keepDaily": -1, "keepDayly": 3},
        "priority": 300,
        "colour": "blue",
        "agents": [""],
        "paused": "no"
    });
    let invalid = read(&bad).unwrap_err();
    let found = fields(&invalid);
    for field in [
        "schedule.cron.expr",
        "schedule.cron.timezone",
        "include",
        "retention.keepDaily",
        "retention.keepDayly",
        "priority",
        "colour",
        "agents[0]",
        "paused",
    ] {
        assert!(found.contains(&field), "{field} missing from {found:?}");
    }
    assert_eq!(
        found
            .iter()
            .filter(|f| **f == "retention.keepDaily")
            .count(),
        1,
        "a field is reported once: {found:?}"
    );
}

#[test]
fn missing_required_fields_and_wrong_types_are_named() {
    let invalid = read(&json!({"include": ["/home"]})).unwrap_err();
    let found = fields(&invalid);
    for field in ["name", "schedule", "kind", "repository"] {
        assert!(found.contains(&field), "{field} missing from {found:?}");
    }
    let mut wrong = good();
    wrong["kind"] = json!("bakup");
    let invalid = read(&wrong).unwrap_err();
    assert_eq!(fields(&invalid), ["kind"], "{invalid}");
    assert!(invalid.0[0].message.contains("backup"), "{invalid}");
    assert!(read(&json!(["not", "an", "object"])).is_err());
}

#[test]
fn hooks_are_read_and_their_problems_reported_with_the_others() {
    let mut hooked = good();
    hooked["hooks"] = json!({"before": ["dump-db"], "onFailure": ["page"], "retryOnFailure": true});
    let document = read(&hooked).expect("valid");
    assert_eq!(document.spec.hooks.before, ["dump-db"]);
    assert_eq!(document.spec.hooks.on_failure, ["page"]);
    assert!(document.spec.hooks.retry_on_failure);

    let mut bad = good();
    bad["priority"] = json!(300);
    bad["hooks"] = json!({
        "before": ["Dump DB", "x", "x"],
        "after": ["/usr/bin/curl https://example"],
        "command": ["rm", "-rf", "/"],
    });
    let invalid = read(&bad).unwrap_err();
    let found = fields(&invalid);
    for field in ["priority", "hooks.command"] {
        assert!(found.contains(&field), "{field} missing from {found:?}");
    }
    bad["priority"] = json!(3);
    bad["hooks"].as_object_mut().unwrap().remove("command");
    let invalid = read(&bad).unwrap_err();
    assert_eq!(
        fields(&invalid),
        ["hooks.before[0]", "hooks.before[2]", "hooks.after[0]"],
        "{invalid}"
    );
}

/// The whole document's problems at once: structural ones (an unknown kind, a wrong type,
/// a missing field, an unknown field) no longer hide the semantic ones (a bad cron, a bad
/// name, a number out of range), and nothing is said about the values stood in for the
/// fields that could not be decoded.
#[test]
fn structural_problems_do_not_hide_the_others() {
    let mut bad = good();
    bad["kind"] = json!("bakup");
    bad["schedule"] = json!({"cron": {"expr": "61 * * * *", "timezone": "UTC"}});
    bad["include"] = json!("/var/lib/postgresql");
    bad["name"] = json!("evil.>");
    bad["retry"] = json!({"maxRetries": 500});
    bad["execution"] = json!({"tags": "nightly"});
    bad["colour"] = json!("blue");
    bad.as_object_mut().unwrap().remove("repository");
    let invalid = read(&bad).unwrap_err();
    let mut found = fields(&invalid);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "colour",
            "execution.tags",
            "include",
            "kind",
            "name",
            "repository",
            "retry.maxRetries",
            "schedule.cron.expr",
        ],
        "{invalid}"
    );
    let message = |field: &str| {
        let e = invalid.0.iter().find(|e| e.field == field).unwrap();
        e.message.clone()
    };
    assert!(message("kind").contains("bakup"), "{invalid}");
    assert!(message("include").contains("a sequence"), "{invalid}");
    assert!(
        message("schedule.cron.expr").contains("minute: 61 is out of range 0-59"),
        "{invalid}"
    );
    assert!(message("repository").contains("required"), "{invalid}");

    // A wrong type inside a list is named by its place, and the rest still checked.
    let mut bad = good();
    bad["include"] = json!(["/srv", 7, "relative"]);
    bad["schedule"] = json!({"interval": {"everySecs": 5}});
    let invalid = read(&bad).unwrap_err();
    let mut found = fields(&invalid);
    found.sort_unstable();
    assert_eq!(
        found,
        ["include[1]", "include[2]", "schedule.interval.everySecs"],
        "{invalid}"
    );
}
