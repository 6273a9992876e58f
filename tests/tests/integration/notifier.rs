//! The notifier end to end, against a real webhook receiver on loopback: one webhook per
//! exhausted task and one per overdue policy, with two notifier instances and across
//! restarts; a receiver that fails three times gets it once; the HMAC signature verifies.
//! The clock is faked (a manual clock, so retries and "overdue" need no waiting); NATS,
//! HTTP and the log are real.

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use fleet_control::clock::ManualClock;
use fleet_control::notifier::{NotifierSettings, Secrets, target};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::event::{
    AgentEvent, ErrorClass, Event, ExhaustedReason, PolicyEvent, RuleEvent, TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, PolicyId, RuleId, TaskId};
use fleet_events::notify::{DeliveryRetry, RuleSpec, Target, TargetKind, Trigger};
use fleet_events::policy::PolicySpec;
use fleet_events::samples;
use fleet_events::schedule::Schedule;
use ring::hmac;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::receiver::{Received, Receiver};
use crate::support::{append_at, eventually, fleet, log, manual, spawn_service, tenant};

const KEY: &str = "hmac-key-of-the-test";

fn webhook(name: &str, url: String, on: Vec<Trigger>, retry: DeliveryRetry) -> Event {
    let spec = RuleSpec {
        name: name.into(),
        on,
        policies: vec![],
        agents: vec![],
        target: Target {
            kind: TargetKind::Webhook,
            url: Some(url),
            url_secret: None,
            hmac_secret: Some("hook-key".into()),
        },
        retry,
    };
    Event::Rule {
        rule: RuleId::for_name(&tenant(), name),
        event: RuleEvent::Defined {
            spec: Box::new(spec),
        },
    }
}

/// Notifications of `trigger` the receiver answered with success at `path`.
fn delivered(receiver: &Receiver, path: &str, trigger: &str) -> Vec<Received> {
    receiver
        .received(path)
        .into_iter()
        .filter(|r| r.status < 300 && r.json()["trigger"] == trigger)
        .collect()
}

/// A notifier instance, stopped by its own token.
struct Instance {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Instance {
    fn start(store: &fleet_events::store::EventStore, config: &ServiceConfig) -> Self {
        let stop = CancellationToken::new();
        let task = spawn_service(store, Service::Notifier, config.clone(), &stop);
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the notifier stopped cleanly");
    }
}

/// Moves the clock a second at a time until `done`.
async fn advance_until<T>(
    clock: &ManualClock,
    what: &str,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    eventually(what, Duration::from_secs(60), || {
        let value = done();
        if value.is_none() {
            clock.advance(TimeDelta::seconds(1));
        }
        async move {
            match value {
                Some(v) => ControlFlow::Break(v),
                None => ControlFlow::Continue("not yet"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_arrive_once_per_event_across_instances_restarts_and_failures() {
    let f = fleet().await;
    let receiver = Receiver::start().await;
    receiver.fail_first("/flaky", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("notifier-secrets.yaml");
    std::fs::write(&secrets, format!("acme:\n  hook-key: {KEY}\n")).expect("secrets");
    let start: DateTime<Utc> = Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .expect("whole seconds");
    let clock = ManualClock::new(start);
    let config = ServiceConfig {
        notifier: NotifierSettings {
            secrets: Secrets::load(&secrets).expect("secrets load"),
            ..NotifierSettings::default()
        },
        ..manual(&clock)
    };

    // Given an agent with an hourly policy, a signed webhook on exhausted tasks and overdue
    // policies, and one on exhausted tasks whose receiver fails its first three requests
    let (agent, policy) = (AgentId::generate(), PolicyId::generate());
    let registered = AgentEvent::Registered {
        name: "db-1".into(),
        hostname: "db-1".into(),
        settings: samples::agent_settings(),
    };
    append_at(
        &f.store,
        Event::Agent {
            agent,
            event: registered,
        },
        start,
    )
    .await;
    let spec = PolicySpec {
        name: "hourly".into(),
        schedule: Schedule::Interval { every_secs: 3600 },
        jitter_secs: 0,
        ..samples::policy_spec()
    };
    let created = PolicyEvent::Created {
        spec: Box::new(spec.clone()),
    };
    append_at(
        &f.store,
        Event::Policy {
            policy,
            event: created,
        },
        start,
    )
    .await;
    let assigned = PolicyEvent::AssignedToAgent { agent };
    append_at(
        &f.store,
        Event::Policy {
            policy,
            event: assigned,
        },
        start,
    )
    .await;
    let ops = webhook(
        "ops",
        receiver.url("/hook"),
        vec![Trigger::TaskExhausted, Trigger::PolicyOverdue],
        DeliveryRetry::default(),
    );
    append_at(&f.store, ops, start).await;
    let quick = DeliveryRetry {
        max_attempts: 5,
        base_delay_secs: 1,
        max_delay_secs: 2,
    };
    let flaky = webhook(
        "flaky",
        receiver.url("/flaky"),
        vec![Trigger::TaskExhausted],
        quick,
    );
    append_at(&f.store, flaky, start).await;

    // And two notifier instances
    let a = Instance::start(&f.store, &config);
    let b = Instance::start(&f.store, &config);

    // When a task fails for good
    let task = TaskId::for_fire(policy, agent, start);
    for event in [
        TaskEvent::Scheduled {
            policy,
            agent,
            fire_at: start,
            run_at: start,
            spec: Box::new(spec),
        },
        TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Auth, "wrong password", Some(12)),
        },
        TaskEvent::Exhausted {
            attempts: 1,
            reason: ExhaustedReason::NotRetryable(ErrorClass::Auth),
        },
    ] {
        append_at(&f.store, Event::Task { task, event }, start).await;
    }

    // Then the signed webhook gets it once, saying what happened
    let got = advance_until(&clock, "the exhausted task's webhook", || {
        let got = delivered(&receiver, "/hook", "taskExhausted");
        (!got.is_empty()).then_some(got)
    })
    .await;
    let hook = &got[0];
    let doc = hook.json();
    assert_eq!(
        doc["title"], "backup of hourly on db-1 failed for good",
        "{doc}"
    );
    assert!(
        doc["text"]
            .as_str()
            .is_some_and(|t| t.contains("auth: wrong password")),
        "{doc}"
    );
    assert_eq!(doc["task"], task.to_string());
    let signature = hook.header(target::HEADER_SIGNATURE).expect("signed");
    let hex = signature.strip_prefix("sha256=").expect("sha256=");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let key = hmac::Key::new(hmac::HMAC_SHA256, KEY.as_bytes());
    assert!(
        hmac::verify(&key, &hook.body, &tag).is_ok(),
        "the HMAC verifies"
    );

    // And the failing receiver gets it on its fourth request, once, under one id
    let flaky = advance_until(&clock, "the flaky receiver's success", || {
        let got = delivered(&receiver, "/flaky", "taskExhausted");
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(flaky.len(), 1);
    let all = receiver.received("/flaky");
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 503, 204]
    );
    let ids: std::collections::BTreeSet<_> = all
        .iter()
        .map(|r| r.header(target::HEADER_ID).map(str::to_owned))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every attempt carries the same notification id"
    );

    // When one instance is restarted and the other keeps running
    a.stop().await;
    let c = Instance::start(&f.store, &config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Then nothing is sent again
    assert_eq!(delivered(&receiver, "/hook", "taskExhausted").len(), 1);
    assert_eq!(receiver.received("/flaky").len(), 4);

    // When two hours pass without a success
    clock.advance(TimeDelta::hours(2));
    let overdue = advance_until(&clock, "the overdue policy's webhook", || {
        let got = delivered(&receiver, "/hook", "policyOverdue");
        (!got.is_empty()).then_some(got)
    })
    .await;
    // Then the overdue webhook names the policy and agent, once, also after restarts
    assert_eq!(overdue[0].json()["title"], "hourly on db-1 is overdue");
    b.stop().await;
    let d = Instance::start(&f.store, &config);
    clock.advance(TimeDelta::minutes(30));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(delivered(&receiver, "/hook", "policyOverdue").len(), 1);
    assert_eq!(delivered(&receiver, "/hook", "taskExhausted").len(), 1);
    assert_eq!(
        receiver.received("/hook").len(),
        2,
        "no request was repeated"
    );
    c.stop().await;
    d.stop().await;

    // The signing key never entered the log, whatever the notifier recorded.
    let events = log(&f.store, &fleet_events::subject::all_events()).await;
    assert!(
        events
            .iter()
            .any(|s| matches!(s.envelope.event, Event::Notification { .. }))
    );
    for stored in &events {
        let text = format!("{:?}", stored.envelope);
        assert!(!text.contains(KEY), "the HMAC key is in {text}");
    }
}
