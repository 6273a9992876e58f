//! restic-fleet on a real 3-node nats-server cluster (routes on loopback, a store per node,
//! streams replicated 3 times) with two instances of every control-plane service and four
//! scripted agents. A few hundred tasks are scheduled at once (appended as a scheduler
//! fire appends them); when a third of them have succeeded, one instance of each service
//! dies (its tasks are aborted, as a killed process would stop: no lease released, no
//! message acked; the lease holders are among them, since they started first) and one
//! NATS node is killed (SIGKILL).
//! Every task must end exactly once: none lost, none run twice.
//!
//! The agents are scripted (they speak the agent protocol, see `scripted_agent.rs`): this
//! is about the control plane surviving failures, and a few hundred real restic runs
//! would take minutes.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::Duration;

use chrono::Utc;
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{EventStore, Stored};
use fleet_events::streams::StreamOptions;
use fleet_events::subject::{self, Aggregate};
use fleet_services::serve::Service;
use fleet_tests::NatsCluster;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour};
use crate::support::{eventually, register, schedule, services, system};

const TASKS: usize = 300;
const AGENTS: usize = 4;
const SERVICES: [Service; 5] = [
    Service::Scheduler,
    Service::Dispatcher,
    Service::Intake,
    Service::Retry,
    Service::Registrar,
];

/// A client of the cluster that tries `first` before the other nodes.
async fn client(urls: &[String], first: usize) -> async_nats::Client {
    let mut order = urls.to_vec();
    order.rotate_left(first % urls.len());
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(order)
        .await
        .expect("connect to the cluster")
}

/// How each task ended so far: task -> its terminal (or failed) events. An error while a
/// node fails over is returned, to be tried again.
async fn endings(store: &EventStore) -> Result<HashMap<TaskId, Vec<TaskEvent>>, String> {
    let filter = subject::aggregate_events(Aggregate::Task);
    let log: Vec<Stored> = store
        .replay(&filter, 1)
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut out: HashMap<TaskId, Vec<TaskEvent>> = HashMap::new();
    for stored in log {
        let Event::Task { task, event } = stored.envelope.event else {
            continue;
        };
        let entry = out.entry(task).or_default();
        if matches!(
            event,
            TaskEvent::Succeeded { .. }
                | TaskEvent::Exhausted { .. }
                | TaskEvent::Cancelled { .. }
                | TaskEvent::Lost { .. }
                | TaskEvent::Failed { .. }
        ) {
            entry.push(event);
        }
    }
    Ok(out)
}

fn succeeded(endings: &HashMap<TaskId, Vec<TaskEvent>>) -> usize {
    endings
        .values()
        .filter(|e| e.iter().any(|e| matches!(e, TaskEvent::Succeeded { .. })))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_ends_once_through_a_node_and_instance_failure() {
    let mut cluster = NatsCluster::start(3).expect("a 3-node cluster");
    let urls = cluster.urls();
    // The test itself talks to nodes 2 and 3 first, so killing node 1 leaves it be.
    let store = EventStore::new(client(&urls, 1).await);
    let replicated = StreamOptions {
        replicas: 3,
        ..StreamOptions::default()
    };
    eventually(
        "the streams, replicated 3 times",
        Duration::from_secs(30),
        || async {
            match store.ensure_streams(&replicated).await {
                Ok(()) => ControlFlow::Break(()),
                // Until the JetStream meta leader is elected.
                Err(e) => ControlFlow::Continue(e.to_string()),
            }
        },
    )
    .await;

    // Two instances of every service; instance `i` of each prefers node `i`.
    let stop = CancellationToken::new();
    let mut instances = Vec::new();
    for i in 0..2 {
        let store = EventStore::new(client(&urls, i).await);
        instances.push(services(&store, &SERVICES, &system(), &stop));
    }

    let agents_stop = CancellationToken::new();
    let settings = AgentSettings {
        max_concurrent: 8,
        ..AgentSettings::default()
    };
    let mut agents = Vec::new();
    for a in 0..AGENTS {
        let agent = AgentId::generate();
        register(&store, agent, settings.clone()).await;
        let js = async_nats::jetstream::new(client(&urls, a + 1).await);
        let behaviour = Behaviour::succeeds_after(Duration::from_millis(250));
        agents.push((
            agent,
            scripted_agent::spawn(js, agent, behaviour, agents_stop.clone()),
        ));
    }

    let fire_at = Utc::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for t in 0..TASKS {
        let (agent, _) = &agents[t % AGENTS];
        tasks.push(schedule(&store, *agent, samples::policy_spec(), fire_at).await);
    }

    let at_failure = eventually(
        "a third of the tasks to succeed",
        Duration::from_secs(120),
        || async {
            match endings(&store).await.map(|e| succeeded(&e)) {
                Ok(done) if done >= TASKS / 3 => ControlFlow::Break(done),
                other => ControlFlow::Continue(other),
            }
        },
    )
    .await;
    for instance in instances.remove(0) {
        instance.abort();
    }
    cluster.nodes[0].kill().expect("kill node 1");

    let endings = eventually("every task to end", Duration::from_secs(180), || async {
        match endings(&store).await {
            Ok(endings) if succeeded(&endings) >= TASKS => ControlFlow::Break(endings),
            Ok(endings) => ControlFlow::Continue(Ok(succeeded(&endings))),
            Err(e) => ControlFlow::Continue(Err(e)),
        }
    })
    .await;

    let mut starts: HashMap<TaskId, usize> = HashMap::new();
    for (_, (observed, _)) in &agents {
        for (task, n) in observed.starts.lock().unwrap().iter() {
            *starts.entry(*task).or_default() += n;
        }
    }
    let ended_once = tasks
        .iter()
        .filter(|t| endings.get(t).is_some_and(|e| e.len() == 1))
        .count();
    let lost = tasks.iter().filter(|t| !endings.contains_key(t)).count();
    let run_twice = starts.values().filter(|n| **n > 1).count();
    println!(
        "cluster: {TASKS} tasks on {AGENTS} agents, 2 instances of {} services; node 1 and one instance of each killed at {at_failure} succeeded; {} succeeded, {ended_once} ended exactly once, {lost} lost, {run_twice} run twice, {} runs started",
        SERVICES.len(),
        succeeded(&endings),
        starts.values().sum::<usize>(),
    );
    assert_eq!(endings.len(), TASKS, "no unknown tasks");
    assert_eq!(ended_once, TASKS, "every task ended exactly once");
    assert_eq!(lost, 0);
    assert_eq!(run_twice, 0, "no task ran twice");
    assert_eq!(starts.len(), TASKS, "every task ran");

    agents_stop.cancel();
    stop.cancel();
    for instance in instances.remove(0) {
        instance.await.expect("the other instance ends cleanly");
    }
}
