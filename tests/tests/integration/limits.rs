//! Per-kind limits end to end: an agent with room for three tasks but one backup at a time
//! runs a check beside a backup while the other backups wait, and never two backups.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::samples;
use fleet_events::settings::{AgentSettings, KindLimits};
use fleet_events::store::{Append, EventStore, Expect, Stored};
use fleet_events::subject;
use fleet_services::clock::Clock;
use fleet_services::dispatcher::DispatcherConfig;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour};
use crate::support::{fleet, tenant};

async fn append(store: &EventStore, event: Event) {
    let envelope = Envelope::new(tenant(), Utc::now(), event);
    let msg_id = envelope.id.to_string();
    store
        .append(Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::Any,
        })
        .await
        .expect("stored");
}

async fn schedule(store: &EventStore, agent: AgentId, spec: PolicySpec) -> TaskId {
    let policy = PolicyId::generate();
    let fire_at = Utc::now() - TimeDelta::seconds(5);
    let task = TaskId::for_fire(policy, agent, fire_at);
    let event = TaskEvent::Scheduled {
        policy,
        agent,
        fire_at,
        run_at: fire_at,
        spec: Box::new(spec),
    };
    append(store, Event::Task { task, event }).await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_kind_limits_hold_beside_the_total() {
    let f = fleet().await;
    let agent = AgentId::generate();
    let settings = AgentSettings {
        max_concurrent: 3,
        per_kind: KindLimits {
            backup: Some(1),
            ..KindLimits::default()
        },
        ..AgentSettings::default()
    };
    let event = AgentEvent::Registered {
        name: "a".into(),
        hostname: "a".into(),
        settings,
    };
    append(&f.store, Event::Agent { agent, event }).await;
    let mut kinds = HashMap::new();
    for _ in 0..3 {
        kinds.insert(
            schedule(&f.store, agent, samples::policy_spec()).await,
            TaskKind::Backup,
        );
    }
    let check = PolicySpec {
        kind: TaskKind::Check,
        include: vec![],
        ..samples::policy_spec()
    };
    kinds.insert(schedule(&f.store, agent, check).await, TaskKind::Check);

    let shutdown = CancellationToken::new();
    let mut services = Vec::new();
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::dispatcher::run(store, Clock::System, DispatcherConfig::default(), token)
            .await
            .expect("dispatcher");
    }));
    let (store, token) = (f.store.clone(), shutdown.clone());
    services.push(tokio::spawn(async move {
        fleet_services::intake::run(store, Clock::System, token)
            .await
            .expect("intake");
    }));
    let js = async_nats::jetstream::new(f.client.clone());
    let behaviour = Behaviour {
        run_for: Duration::from_millis(300),
        fail: None,
    };
    let (_, agent_task) = scripted_agent::spawn(js, agent, behaviour, shutdown.clone());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log: Vec<Stored> = f
            .store
            .replay(&subject::aggregate_events(subject::Aggregate::Task), 1)
            .await
            .expect("replay")
            .try_collect()
            .await
            .expect("decodes");
        let done = log
            .iter()
            .filter(|s| {
                matches!(
                    s.envelope.event,
                    Event::Task {
                        event: TaskEvent::Succeeded { .. },
                        ..
                    }
                )
            })
            .count();
        if done == kinds.len() {
            break log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.cancel();
    for s in services {
        s.await.expect("joined");
    }
    agent_task.await.expect("joined");

    let (mut backups, mut total, mut max_backups, mut max_total) = (0, 0, 0, 0);
    let mut check_ran_beside_a_backup = false;
    for stored in &log {
        let Event::Task { task, event } = &stored.envelope.event else {
            continue;
        };
        let delta = match event {
            TaskEvent::Dispatched { .. } => 1,
            TaskEvent::Succeeded { .. } => -1,
            _ => continue,
        };
        total += delta;
        if kinds[task] == TaskKind::Backup {
            backups += delta;
        } else if delta == 1 && backups == 1 {
            check_ran_beside_a_backup = true;
        }
        max_backups = max_backups.max(backups);
        max_total = max_total.max(total);
    }
    assert_eq!(max_backups, 1, "one backup at a time");
    assert!(max_total <= 3);
    assert!(
        check_ran_beside_a_backup,
        "the check did not wait behind the backups"
    );
}
