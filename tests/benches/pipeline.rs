//! The control loop's speed against a real nats-server, with simulated agents.
//!
//! `cargo bench -p fleet-tests --bench pipeline` prints:
//! - dispatch latency, p50 and p99, from appending `task.scheduled` to the task's command
//!   arriving on the agent's subject, with tasks appended at 500 per second
//!   (FLEET_BENCH_RATE) for 10 seconds (FLEET_BENCH_SECS), agents never saturated;
//! - sustained tasks per second through scheduler, dispatcher, agents, intake and retry
//!   enforcer: one scheduler fire creates FLEET_BENCH_TASKS tasks (default 2,000) across
//!   100 agents, the simulated agents acknowledge, start and finish each at once (every
//!   tenth fails once with a network error and is retried), and the clock stops when the
//!   last task has succeeded.
//!
//! Agents are simulated by one process that listens on `fleet.agent.*.tasks` and answers
//! with reports and heartbeats, as fleet-agent does. The scheduler's clock is a manual one
//! (cron fires a minute apart); everything else runs on the system clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use chrono::{TimeDelta, Utc};
use fleet_control::clock::{Clock, ManualClock};
use fleet_control::serve::{Service, ServiceConfig};
use fleet_events::envelope::{Envelope, SCHEMA_VERSION};
use fleet_events::event::{
    AgentEvent, ErrorClass, Event, PolicyEvent, RunDetail, RunSummary, TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::{MissedRun, PolicySpec, RetryBudget};
use fleet_events::protocol::{
    AgentCommand, AgentReport, Command, Heartbeat, KindCounts, ReportStatus,
};
use fleet_events::samples;
use fleet_events::schedule::Schedule;
use fleet_events::settings::AgentSettings;
use fleet_events::store::consume::Wire;
use fleet_events::store::{Append, EventStore, Expect};
use fleet_events::streams::StreamOptions;
use fleet_events::subject::{self, AgentSubject, Channel};
use fleet_tests::NatsServer;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

const AGENTS: usize = 100;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn append(store: &EventStore, event: Event, at: chrono::DateTime<Utc>) {
    let envelope = Envelope::new(samples::tenant(), at, event);
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

async fn register_agents(store: &EventStore) -> Vec<AgentId> {
    let mut agents = Vec::new();
    for n in 0..AGENTS {
        let agent = AgentId::generate();
        let settings = AgentSettings {
            max_concurrent: 64,
            ..AgentSettings::default()
        };
        let event = AgentEvent::Registered {
            name: format!("bench-{n}"),
            hostname: format!("bench-{n}"),
            settings,
        };
        append(store, Event::Agent { agent, event }, Utc::now()).await;
        agents.push(agent);
    }
    agents
}

async fn heartbeat_all(
    js: async_nats::jetstream::Context,
    agents: Vec<AgentId>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        for agent in &agents {
            let beat = Heartbeat {
                schema: SCHEMA_VERSION,
                agent: *agent,
                tenant: samples::tenant(),
                at: Utc::now(),
                running: KindCounts::default(),
                queued: KindCounts::default(),
                agent_version: "bench".into(),
                restic_version: "none".into(),
                outbox_depth: 0,
                every_secs: 0,
            };
            let subject = AgentSubject {
                agent: *agent,
                channel: Channel::Heartbeat,
            }
            .to_string();
            let _ = js
                .publish(subject, beat.to_wire().expect("encodes").into())
                .await;
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn start_services(store: &EventStore, scheduler_clock: Clock, stop: &CancellationToken) {
    for service in [
        Service::Dispatcher,
        Service::Intake,
        Service::Retry,
        Service::Scheduler,
    ] {
        let clock = if service == Service::Scheduler {
            scheduler_clock.clone()
        } else {
            Clock::System
        };
        let config = ServiceConfig {
            clock,
            circuit: Default::default(),
            dispatcher: Default::default(),
            projections_dir: None,
            history_days: fleet_control::projector::DEFAULT_HISTORY_DAYS,
            api_addr: None,
            api_throttle: Default::default(),
            api_tls: None,
            access: None,
            notifier: Default::default(),
            snapshots: Default::default(),
        };
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move { fleet_control::serve::run(service, store, config, stop).await });
    }
}

async fn latency(url: &str) {
    let rate = env_or("FLEET_BENCH_RATE", 500);
    let secs = env_or("FLEET_BENCH_SECS", 10);
    let client = async_nats::connect(url).await.expect("connect");
    let store = EventStore::new(client.clone());
    let agents = register_agents(&store).await;
    let stop = CancellationToken::new();
    start_services(&store, Clock::System, &stop).await;
    tokio::spawn(heartbeat_all(
        store.jetstream().clone(),
        agents.clone(),
        stop.clone(),
    ));

    let sent: Arc<Mutex<HashMap<TaskId, Instant>>> = Arc::default();
    let mut commands = client
        .subscribe(subject::all_agents(Channel::Tasks))
        .await
        .expect("subscribe");
    let total = rate * secs;
    let receiver = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            while latencies.len() < total {
                let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_secs(30), commands.next()).await
                else {
                    break;
                };
                let received = Instant::now();
                if let Ok(AgentCommand {
                    command: Command::Run(order),
                    ..
                }) = AgentCommand::from_wire(&message.payload)
                    && let Some(at) = sent.lock().expect("lock").remove(&order.task)
                {
                    latencies.push(received - at);
                }
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spec = PolicySpec {
        ..samples::policy_spec()
    };
    let period = Duration::from_secs(1) / rate as u32;
    let started = Instant::now();
    for n in 0..total {
        let due = started + period * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let (policy, agent) = (PolicyId::generate(), agents[n % agents.len()]);
        let fire_at = Utc::now();
        let task = TaskId::for_fire(policy, agent, fire_at);
        let event = TaskEvent::Scheduled {
            policy,
            agent,
            fire_at,
            run_at: fire_at,
            spec: Box::new(spec.clone()),
        };
        sent.lock().expect("lock").insert(task, Instant::now());
        append(&store, Event::Task { task, event }, fire_at).await;
    }
    let mut latencies = receiver.await.expect("joined");
    stop.cancel();
    latencies.sort();
    println!(
        "dispatch latency, task.scheduled appended -> command on the agent's subject, {rate} tasks/s for {secs} s"
    );
    if latencies.is_empty() {
        println!("  no command arrived");
        return;
    }
    println!(
        "  {} of {total} dispatched   p50 {:?}   p99 {:?}   max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
}

/// Answers every command like an agent that runs each task at once; every tenth task fails
/// its first attempt with a network error.
async fn simulate_agents(
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    stop: CancellationToken,
) {
    let mut commands = client
        .subscribe(subject::all_agents(Channel::Tasks))
        .await
        .expect("subscribe");
    let mut n = 0u64;
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            m = commands.next() => match m { Some(m) => m, None => return },
        };
        let Ok(AgentCommand {
            command: Command::Run(order),
            ..
        }) = AgentCommand::from_wire(&message.payload)
        else {
            continue;
        };
        n += 1;
        let Ok(sender) = AgentSubject::parse(&message.subject) else {
            continue;
        };
        let fail = n.is_multiple_of(10) && order.attempt == 1;
        let finish = if fail {
            ReportStatus::Failed(TaskError::new(
                ErrorClass::Network,
                "connection refused",
                Some(1),
            ))
        } else {
            ReportStatus::Succeeded(RunSummary {
                kind: order.spec.kind,
                duration_ms: 1,
                detail: RunDetail::Backup(Default::default()),
            })
        };
        let js = js.clone();
        tokio::spawn(async move {
            for status in [ReportStatus::Acknowledged, ReportStatus::Started, finish] {
                let report = AgentReport {
                    schema: SCHEMA_VERSION,
                    agent: sender.agent,
                    tenant: order.tenant.clone(),
                    task: order.task,
                    attempt: order.attempt,
                    at: Utc::now(),
                    status,
                };
                let message = PublishMessage::build()
                    .payload(report.to_wire().expect("encodes").into())
                    .message_id(report.msg_id());
                let subject = AgentSubject {
                    agent: sender.agent,
                    channel: Channel::Reports,
                }
                .to_string();
                if let Ok(ack) = js.send_publish(subject, message).await {
                    let _ = ack.await;
                }
            }
        });
    }
}

async fn throughput(url: &str) {
    let tasks = env_or("FLEET_BENCH_TASKS", 2000);
    let client = async_nats::connect(url).await.expect("connect");
    let store = EventStore::new(client.clone());
    let agents = register_agents(&store).await;
    // The scheduler's clock lies in the past, so its fire times are due at once for the
    // dispatcher, which runs on the system clock.
    let start = Utc::now() - TimeDelta::minutes(10);
    let manual = ManualClock::new(start);
    let spec = PolicySpec {
        schedule: Schedule::Cron {
            expr: "* * * * *".into(),
            timezone: "UTC".into(),
        },
        missed: MissedRun::Skip,
        jitter_secs: 0,
        retry: RetryBudget {
            max_retries: 3,
            base_delay_secs: 1,
            max_delay_secs: 1,
        },
        ..samples::policy_spec()
    };
    let policies = tasks.div_ceil(AGENTS);
    for p in 0..policies {
        let policy = PolicyId::generate();
        append(
            &store,
            Event::Policy {
                policy,
                event: PolicyEvent::Created {
                    spec: Box::new(spec.clone()),
                },
            },
            start,
        )
        .await;
        for agent in agents.iter().take(tasks - p * AGENTS) {
            append(
                &store,
                Event::Policy {
                    policy,
                    event: PolicyEvent::AssignedToAgent { agent: *agent },
                },
                start,
            )
            .await;
        }
    }
    let stop = CancellationToken::new();
    start_services(&store, Clock::Manual(manual.clone()), &stop).await;
    tokio::spawn(heartbeat_all(
        store.jetstream().clone(),
        agents.clone(),
        stop.clone(),
    ));
    tokio::spawn(simulate_agents(
        client.clone(),
        store.jetstream().clone(),
        stop.clone(),
    ));
    let mut succeeded = client
        .subscribe(format!("{}.*.task.*", subject::EVENTS_PREFIX))
        .await
        .expect("subscribe");
    tokio::time::sleep(Duration::from_secs(1)).await;

    let began = Instant::now();
    manual.advance(TimeDelta::minutes(1));
    let (mut done, mut retried) = (0, 0);
    while done < tasks {
        let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(60), succeeded.next()).await
        else {
            break;
        };
        match fleet_events::codec::decode(&message.payload).map(|e| e.event) {
            Ok(Event::Task {
                event: TaskEvent::Succeeded { .. },
                ..
            }) => done += 1,
            Ok(Event::Task {
                event: TaskEvent::RetryScheduled { .. },
                ..
            }) => retried += 1,
            _ => {}
        }
    }
    let took = began.elapsed();
    stop.cancel();
    println!(
        "sustained: {tasks} tasks from one scheduler fire to succeeded ({retried} retried after a network failure), 100 simulated agents"
    );
    println!(
        "  {done} succeeded in {took:.2?}: {:.0} tasks/s",
        done as f64 / took.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for bench in ["latency", "throughput"] {
            let server = NatsServer::start().expect("nats-server");
            let client = async_nats::connect(server.url()).await.expect("connect");
            EventStore::new(client)
                .ensure_streams(&StreamOptions::default())
                .await
                .expect("streams");
            match bench {
                "latency" => latency(&server.url()).await,
                _ => throughput(&server.url()).await,
            }
        }
    });
}
