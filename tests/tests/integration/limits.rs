//! Per-kind limits end to end: an agent with room for three tasks but one backup at a time
//! runs a check beside a backup while the other backups wait, and never two backups.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fleet_control::serve::Service;
use fleet_events::event::TaskEvent;
use fleet_events::ids::AgentId;
use fleet_events::policy::{PolicySpec, TaskKind};
use fleet_events::samples;
use fleet_events::settings::{AgentSettings, KindLimits};
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour};
use crate::support::{fleet, register, schedule, services, stop, succeeded, system};

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
    register(&f.store, agent, settings).await;
    let due = || Utc::now() - TimeDelta::seconds(5);
    let mut kinds = HashMap::new();
    for _ in 0..3 {
        let task = schedule(&f.store, agent, samples::policy_spec(), due()).await;
        kinds.insert(task, TaskKind::Backup);
    }
    let check = PolicySpec {
        kind: TaskKind::Check,
        include: vec![],
        ..samples::policy_spec()
    };
    kinds.insert(
        schedule(&f.store, agent, check, due()).await,
        TaskKind::Check,
    );

    let shutdown = CancellationToken::new();
    let running = [Service::Dispatcher, Service::Intake];
    let services = services(&f.store, &running, &system(), &shutdown);
    let js = async_nats::jetstream::new(f.client.clone());
    let behaviour = Behaviour::succeeds_after(Duration::from_millis(300));
    let (_, agent_task) = scripted_agent::spawn(js, agent, behaviour, shutdown.clone());

    let log = succeeded(&f.store, kinds.len(), Duration::from_secs(30)).await;
    stop(&shutdown, services.into_iter().chain([agent_task])).await;

    let (mut backups, mut total, mut max_backups, mut max_total) = (0, 0, 0, 0);
    let mut check_ran_beside_a_backup = false;
    for (task, event) in &log {
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
