//! Notification rules and the notification log over the HTTP API, against a real
//! nats-server with the projector behind it: a rule defined from YAML (created, unchanged,
//! replaced), listed and read by name or id; a document with several problems gets all of
//! them; a URL with credentials is refused with the `urlSecret` hint; a read-only token
//! reads but cannot write; another tenant sees and touches nothing; a test appends
//! `rule.test_requested`; notifications appended as the notifier would are answered in
//! their states, newest first and filtered; overdue assignments show on the policy and the
//! agent until they catch up.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{
    AgentEvent, AssignmentEvent, Event, Message, NotificationEvent, PolicyEvent, RuleEvent,
};
use fleet_events::ids::{
    AgentId, AssignmentId, EventId, NotificationId, PolicyId, RuleId, TenantId,
};
use fleet_events::notify::Trigger;
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::subject::{self, AggregateId, EventSubject};
use serde_json::{Value, json};

use crate::support::http::{Response, call, call_text, get};
use crate::support::openapi::assert_documented;
use crate::support::{eventually, fleet, log, serve_api, stop, two_tenants};

const RULE_YAML: &str = "\
name: ops-pager
on: [taskExhausted, policyOverdue]
policies: [db nightly]
target:
  kind: webhook
  urlSecret: ops-hook
  hmacSecret: ops-hook-key
retry: {maxAttempts: 5}
";

/// Appends `event` of `tenant`, as the notifier (or another writer) would.
async fn append(store: &EventStore, tenant: &TenantId, event: Event) {
    let envelope = Envelope::new(tenant.clone(), Utc::now(), event);
    let msg_id = envelope.id.to_string();
    let append = Append {
        envelope: &envelope,
        msg_id: &msg_id,
        expect: Expect::Any,
    };
    store.append(append).await.expect("stored");
}

/// The notification of `rule` titled `title` (of a test when `trigger` is `None`).
fn triggered(rule: RuleId, title: &str, trigger: Option<Trigger>) -> (NotificationId, Event) {
    let source = EventId::generate();
    let id = NotificationId::for_event(rule, source);
    let message = Message {
        trigger,
        event_type: match trigger {
            Some(_) => "task.exhausted".into(),
            None => "rule.test_requested".into(),
        },
        at: Utc::now(),
        title: title.into(),
        text: "details".into(),
        policy: None,
        agent: None,
        task: None,
        repo: None,
    };
    let event = NotificationEvent::Triggered {
        rule,
        source,
        message: Box::new(message),
    };
    let event = Event::Notification {
        notification: id,
        event,
    };
    (id, event)
}

fn note(notification: NotificationId, event: NotificationEvent) -> Event {
    Event::Notification {
        notification,
        event,
    }
}

/// The problems' fields of a 400 answer.
fn problem_fields(answer: &Response) -> Vec<String> {
    let problems = answer.body["error"]["problems"].as_array();
    problems
        .into_iter()
        .flatten()
        .filter_map(|p| p["field"].as_str().map(str::to_owned))
        .collect()
}

/// The titles a notification list shows, in its order.
fn titles(list: &Value) -> Vec<String> {
    let items = list.as_array().into_iter().flatten();
    items
        .filter_map(|n| n["title"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_defined_tested_and_deleted_and_notifications_answered_in_their_states() {
    let fleet = fleet().await;
    let store = &fleet.store;
    let served = serve_api(store);
    let addr = served.addr;
    let tenants = two_tenants(store).await;
    let acme = tenants.acme.clone();
    let other = TenantId::new("other").expect("slug");
    let mine = Some(tenants.admin.text.expose());
    let reader = Some(tenants.reader.text.expose());
    let theirs = Some(tenants.stranger.text.expose());
    eventually(
        "the API and the projector",
        Duration::from_secs(20),
        || async {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return ControlFlow::Continue("not listening".to_owned());
            }
            let rules = get(addr, "/v1/rules", mine).await;
            match rules.status {
                200 => ControlFlow::Break(()),
                _ => ControlFlow::Continue(rules.text),
            }
        },
    )
    .await;
    let doc = get(addr, "/v1/openapi.json", None).await.body;
    let rule = RuleId::for_name(&acme, "ops-pager");
    let rule_subject = EventSubject {
        tenant: acme.clone(),
        aggregate: AggregateId::Rule(rule),
    };
    let yaml = "application/yaml";

    // Defined from YAML: created; the same again changes nothing; changed: replaced.
    let created = call_text(addr, "POST", "/v1/rules", mine, yaml, RULE_YAML).await;
    assert_documented(&doc, "/v1/rules", "post", &created, 201);
    assert_eq!(created.body["id"], rule.to_string());
    assert_eq!(created.body["events"], json!(["rule.defined"]));
    assert_eq!(created.body["created"], true);
    let again = call_text(addr, "POST", "/v1/rules", mine, yaml, RULE_YAML).await;
    assert_documented(&doc, "/v1/rules", "post", &again, 200);
    assert_eq!(again.body["events"], json!([]));
    assert_eq!(again.body["created"], false);
    let changed = RULE_YAML.replace("[taskExhausted, policyOverdue]", "[taskFailed]");
    let replaced = call_text(addr, "POST", "/v1/rules", mine, yaml, &changed).await;
    assert_documented(&doc, "/v1/rules", "post", &replaced, 200);
    assert_eq!(replaced.body["events"], json!(["rule.defined"]));
    assert_eq!(replaced.body["created"], false);
    let version = replaced.body["version"].clone();

    let listed = eventually("the rule replaced", Duration::from_secs(20), || async {
        let listed = get(addr, "/v1/rules", mine).await;
        match listed.body[0]["version"] == version {
            true => ControlFlow::Break(listed),
            false => ControlFlow::Continue(listed.text),
        }
    })
    .await;
    assert_documented(&doc, "/v1/rules", "get", &listed, 200);
    let one = &listed.body[0];
    assert_eq!(one["spec"]["name"], "ops-pager");
    assert_eq!(one["triggers"], json!(["taskFailed"]));
    assert_eq!(one["spec"]["target"]["urlSecret"], "ops-hook");
    assert_eq!(one["spec"]["retry"]["maxAttempts"], 5);
    for path in [
        "/v1/rules/ops-pager".to_owned(),
        format!("/v1/rules/{rule}"),
    ] {
        let read = get(addr, &path, reader).await;
        assert_documented(&doc, "/v1/rules/{id}", "get", &read, 200);
        assert_eq!(read.body, *one, "{path}");
    }

    // Every problem of a document at once, with its field; nothing written.
    let before = log(store, &subject::tenant_events(&acme)).await.len();
    let bad = json!({
        "name": "Bad Name",
        "on": ["taskExploded"],
        "colour": "red",
        "target": {"kind": "webhook", "url": "https://hooks.example/x?token=abc"},
        "retry": {"maxAttempts": 0},
    });
    let refused = call(addr, "POST", "/v1/rules", mine, Some(&bad)).await;
    assert_documented(&doc, "/v1/rules", "post", &refused, 400);
    assert_eq!(refused.body["error"]["code"], "invalid");
    let fields = problem_fields(&refused);
    for field in ["name", "on[0]", "colour", "target.url", "retry.maxAttempts"] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field}: {}",
            refused.text
        );
    }
    // A URL with credentials, and a Slack URL (a credential itself): urlSecret instead.
    for target in [
        json!({"kind": "webhook", "url": "https://user:pw@hooks.example/x"}),
        json!({"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/xyz"}),
    ] {
        let document = json!({"name": "chat", "target": target});
        let refused = call(addr, "POST", "/v1/rules", mine, Some(&document)).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert_eq!(problem_fields(&refused), ["target.url"], "{}", refused.text);
        let message = &refused.body["error"]["problems"][0]["message"];
        assert!(message.to_string().contains("urlSecret"), "{message}");
        assert!(!refused.text.contains("user:pw"), "{}", refused.text);
    }
    let garbled = call_text(addr, "POST", "/v1/rules", mine, yaml, "name: [x").await;
    assert_documented(&doc, "/v1/rules", "post", &garbled, 400);
    assert_eq!(
        log(store, &subject::tenant_events(&acme)).await.len(),
        before
    );

    // A read-only token reads, and may not write.
    for (method, path) in [
        ("POST", "/v1/rules"),
        ("DELETE", "/v1/rules/ops-pager"),
        ("POST", "/v1/rules/ops-pager/test"),
    ] {
        let document =
            json!({"name": "x", "target": {"kind": "ntfy", "url": "https://n.example/t"}});
        let body = (method == "POST" && path == "/v1/rules").then_some(&document);
        let forbidden = call(addr, method, path, reader, body).await;
        assert_eq!(forbidden.status, 403, "{method} {path}: {}", forbidden.text);
        assert_eq!(forbidden.body["error"]["code"], "forbidden");
    }

    // Another tenant sees none of it and cannot touch it, by name or by id.
    let their_rules = get(addr, "/v1/rules", theirs).await;
    assert_eq!(their_rules.body, json!([]));
    for path in [
        "/v1/rules/ops-pager".to_owned(),
        format!("/v1/rules/{rule}"),
    ] {
        let read = get(addr, &path, theirs).await;
        assert_documented(&doc, "/v1/rules/{id}", "get", &read, 404);
        let deleted = call(addr, "DELETE", &path, theirs, None).await;
        assert_documented(&doc, "/v1/rules/{id}", "delete", &deleted, 404);
        let tested = call(addr, "POST", &format!("{path}/test"), theirs, None).await;
        assert_documented(&doc, "/v1/rules/{id}/test", "post", &tested, 404);
    }
    assert_eq!(
        log(store, &subject::tenant_events(&acme)).await.len(),
        before
    );

    // A test: rule.test_requested, naming the token.
    let tested = call(addr, "POST", "/v1/rules/ops-pager/test", mine, None).await;
    assert_documented(&doc, "/v1/rules/{id}/test", "post", &tested, 202);
    assert_eq!(tested.body["events"], json!(["rule.test_requested"]));
    let history = store.history(&rule_subject).await.expect("history");
    let last = history
        .events
        .last()
        .expect("events")
        .envelope
        .event
        .clone();
    let Event::Rule {
        event: RuleEvent::TestRequested { by },
        ..
    } = last
    else {
        panic!("the last event of the rule: {last:?}");
    };
    assert!(by.starts_with("ops (token "), "{by}");
    eventually("the test on the rule", Duration::from_secs(20), || async {
        let read = get(addr, "/v1/rules/ops-pager", mine).await;
        match read.body["testedBy"].as_str() {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(read.text),
        }
    })
    .await;

    // Notifications, as the notifier writes them: one delivered on its second attempt,
    // one dead-lettered (of a rule never defined), one failing, one test still pending;
    // and one of the other tenant.
    let chat = RuleId::for_name(&acme, "chat");
    let (delivered, event) = triggered(rule, "delivered", Some(Trigger::TaskExhausted));
    append(store, &acme, event).await;
    let (dead, event) = triggered(chat, "dead", Some(Trigger::TaskExhausted));
    append(store, &acme, event).await;
    let (failing, event) = triggered(rule, "failing", Some(Trigger::TaskExhausted));
    append(store, &acme, event).await;
    let (_, event) = triggered(rule, "a test", None);
    append(store, &acme, event).await;
    let their_rule = RuleId::for_name(&other, "ops-pager");
    append(store, &other, triggered(their_rule, "theirs", None).1).await;
    let retry_at = Utc::now() + TimeDelta::minutes(5);
    for (id, event) in [
        (delivered, NotificationEvent::Sending { attempt: 1 }),
        (
            delivered,
            NotificationEvent::Failed {
                attempt: 1,
                error: "HTTP 502".into(),
                retry_at,
            },
        ),
        (delivered, NotificationEvent::Sending { attempt: 2 }),
        (
            delivered,
            NotificationEvent::Delivered {
                attempt: 2,
                status: 204,
            },
        ),
        (dead, NotificationEvent::Sending { attempt: 1 }),
        (
            dead,
            NotificationEvent::DeadLettered {
                attempts: 1,
                error: "HTTP 410 Gone".into(),
            },
        ),
        (failing, NotificationEvent::Sending { attempt: 1 }),
        (
            failing,
            NotificationEvent::Failed {
                attempt: 1,
                error: "connection refused".into(),
                retry_at,
            },
        ),
    ] {
        append(store, &acme, note(id, event)).await;
    }
    let all = eventually("the notifications", Duration::from_secs(20), || async {
        let all = get(addr, "/v1/notifications", mine).await;
        let items = all.body.as_array().cloned().unwrap_or_default();
        match items.iter().any(|n| n["state"] == "failed") {
            true => ControlFlow::Break(all),
            false => ControlFlow::Continue(all.text),
        }
    })
    .await;
    assert_documented(&doc, "/v1/notifications", "get", &all, 200);
    assert_eq!(
        titles(&all.body),
        ["a test", "failing", "dead", "delivered"]
    );
    let by_title = |title: &str| -> Value {
        let items = all.body.as_array().expect("a list");
        items
            .iter()
            .find(|n| n["title"] == title)
            .cloned()
            .expect("listed")
    };
    let test = by_title("a test");
    assert_eq!(
        (&test["state"], &test["trigger"]),
        (&json!("pending"), &Value::Null)
    );
    assert_eq!(test["ruleName"], "ops-pager");
    let ok = by_title("delivered");
    assert_eq!(ok["state"], "delivered");
    assert_eq!(
        (&ok["attempts"], &ok["lastStatus"]),
        (&json!(2), &json!(204))
    );
    assert!(ok["deliveredAt"].is_string(), "{ok}");
    assert_eq!(ok["nextAttemptAt"], Value::Null);
    assert_eq!(ok["trigger"], "taskExhausted");
    let gone = by_title("dead");
    assert_eq!(gone["state"], "deadLettered");
    assert_eq!(gone["lastError"], "HTTP 410 Gone");
    assert_eq!(gone["ruleName"], Value::Null, "a rule never defined");
    let failed = by_title("failing");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["lastError"], "connection refused");
    assert!(failed["nextAttemptAt"].is_string(), "{failed}");
    for (query, expected) in [
        ("?state=deadLettered", vec!["dead"]),
        ("?state=pending", vec!["a test"]),
        ("?rule=chat", vec!["dead"]),
        (&format!("?rule={rule}&state=failed"), vec!["failing"]),
        ("?rule=ops-pager&limit=2", vec!["a test", "failing"]),
    ] {
        let listed = get(addr, &format!("/v1/notifications{query}"), reader).await;
        assert_eq!(titles(&listed.body), expected, "{query}: {}", listed.text);
    }
    for query in ["?state=lost", "?limit=0", "?colour=red"] {
        let bad = get(addr, &format!("/v1/notifications{query}"), mine).await;
        assert_documented(&doc, "/v1/notifications", "get", &bad, 400);
    }
    let their_log = get(addr, "/v1/notifications", theirs).await;
    assert_eq!(titles(&their_log.body), ["theirs"]);

    // An overdue assignment shows on its policy and its agent until it catches up.
    let agent = AgentId::generate();
    let registered = AgentEvent::Registered {
        name: "db-1".into(),
        hostname: "db-1".into(),
        settings: AgentSettings::default(),
    };
    append(
        store,
        &acme,
        Event::Agent {
            agent,
            event: registered,
        },
    )
    .await;
    let spec = samples::policy_spec();
    let policy = PolicyId::for_name(&acme, &spec.name);
    let created = PolicyEvent::Created {
        spec: Box::new(spec),
    };
    append(
        store,
        &acme,
        Event::Policy {
            policy,
            event: created,
        },
    )
    .await;
    let assigned = PolicyEvent::AssignedToAgent { agent };
    append(
        store,
        &acme,
        Event::Policy {
            policy,
            event: assigned,
        },
    )
    .await;
    let due = Utc::now() - TimeDelta::hours(3);
    let assignment = AssignmentId::for_pair(policy, agent);
    let overdue = AssignmentEvent::Overdue {
        policy,
        agent,
        due,
        last_success: None,
    };
    append(
        store,
        &acme,
        Event::Assignment {
            assignment,
            event: overdue,
        },
    )
    .await;
    let shown = eventually("the overdue policy", Duration::from_secs(20), || async {
        let read = get(addr, &format!("/v1/policies/{policy}"), mine).await;
        match read.body["overdue"].as_array().map(Vec::len) {
            Some(1) => ControlFlow::Break(read),
            _ => ControlFlow::Continue(read.text),
        }
    })
    .await;
    assert_documented(&doc, "/v1/policies/{id}", "get", &shown, 200);
    assert_eq!(shown.body["overdue"][0]["agent"], agent.to_string());
    let of_agent = get(addr, &format!("/v1/agents/{agent}"), mine).await;
    assert_documented(&doc, "/v1/agents/{id}", "get", &of_agent, 200);
    assert_eq!(of_agent.body["overdue"][0]["policy"], policy.to_string());
    let summary = get(addr, "/v1/summary", mine).await;
    assert_documented(&doc, "/v1/summary", "get", &summary, 200);
    assert!(summary.body["freshness"][0]["overdueSince"].is_string());
    let listed = get(addr, "/v1/policies", theirs).await;
    assert_eq!(listed.body, json!([]));
    let caught_up = AssignmentEvent::CaughtUp {
        policy,
        agent,
        task: samples::TASK,
        succeeded_at: Utc::now(),
    };
    append(
        store,
        &acme,
        Event::Assignment {
            assignment,
            event: caught_up,
        },
    )
    .await;
    eventually("caught up", Duration::from_secs(20), || async {
        let read = get(addr, "/v1/policies", mine).await;
        match read.body[0]["overdue"] == json!([]) {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(read.text),
        }
    })
    .await;

    // Deleted: gone from the rules, its notifications stay; deleting it again is 404.
    let deleted = call(addr, "DELETE", "/v1/rules/ops-pager", mine, None).await;
    assert_documented(&doc, "/v1/rules/{id}", "delete", &deleted, 200);
    assert_eq!(deleted.body["events"], json!(["rule.deleted"]));
    eventually("the rule gone", Duration::from_secs(20), || async {
        let read = get(addr, "/v1/rules/ops-pager", mine).await;
        match read.status {
            404 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(read.text),
        }
    })
    .await;
    assert_eq!(get(addr, "/v1/rules", mine).await.body, json!([]));
    let again = call(addr, "DELETE", "/v1/rules/ops-pager", mine, None).await;
    assert_documented(&doc, "/v1/rules/{id}", "delete", &again, 404);
    let kept = get(addr, "/v1/notifications?rule=ops-pager", mine).await;
    assert_eq!(titles(&kept.body), ["a test", "failing", "delivered"]);
    stop(&served.shutdown, served.services).await;
}
