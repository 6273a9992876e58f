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

use tokio::time::Instant;

use chrono::Utc;
use fleet_control::serve::Service;
use fleet_events::event::{Event, TaskEvent};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::samples;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{EventStore, Stored};
use fleet_events::streams;
use fleet_events::subject::{self, Aggregate};
use fleet_tests::NatsCluster;
use futures::TryStreamExt;
use tokio_util::sync::CancellationToken;

use crate::scripted_agent::{self, Behaviour, Observed};
use crate::support::{
    ensure_replicated, eventually, park_reason, register, schedule, services, system,
};

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

/// Each task's events so far, in order. An error while a node fails over is returned, to
/// be tried again.
async fn task_events(store: &EventStore) -> Result<HashMap<TaskId, Vec<TaskEvent>>, String> {
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
        if let Event::Task { task, event } = stored.envelope.event {
            out.entry(task).or_default().push(event);
        }
    }
    Ok(out)
}

/// The events that end an attempt or the task.
fn is_ending(event: &TaskEvent) -> bool {
    matches!(
        event,
        TaskEvent::Succeeded { .. }
            | TaskEvent::Exhausted { .. }
            | TaskEvent::Cancelled { .. }
            | TaskEvent::Lost { .. }
            | TaskEvent::Failed { .. }
    )
}

fn succeeded(events: &[TaskEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, TaskEvent::Succeeded { .. }))
}

/// How many tasks succeeded, and the event types of a few that have not (to say where
/// they stand if they never do).
fn progress(log: &HashMap<TaskId, Vec<TaskEvent>>) -> (usize, Vec<String>) {
    let done = log.values().filter(|e| succeeded(e)).count();
    let waiting = log
        .iter()
        .filter(|(_, e)| !succeeded(e))
        .take(3)
        .map(|(task, events)| {
            let names: Vec<&str> = events.iter().map(|e| e.event_type().name()).collect();
            format!("{task}: {}", names.join(", "))
        })
        .collect();
    (done, waiting)
}

/// Why tasks have not succeeded: their events, whether an agent started them, and what
/// was parked.
async fn diagnose(
    store: &EventStore,
    log: &HashMap<TaskId, Vec<TaskEvent>>,
    agents: &[&Observed],
) -> String {
    let (done, _) = progress(log);
    let mut out = format!("after 180 s, {done} of {TASKS} tasks succeeded; the others:\n");
    for (task, events) in log.iter().filter(|(_, e)| !succeeded(e)).take(10) {
        let names: Vec<&str> = events.iter().map(|e| e.event_type().name()).collect();
        let starts: usize = agents
            .iter()
            .map(|o| o.starts.lock().unwrap().get(task).copied().unwrap_or(0))
            .sum();
        out += &format!("  {task}: {}; started {starts} times\n", names.join(", "));
    }
    match store.jetstream().get_stream(streams::PARKED).await {
        Ok(mut stream) => {
            let last = stream
                .info()
                .await
                .map(|i| i.state.last_sequence)
                .unwrap_or(0);
            out += &format!("{last} messages parked\n");
            for seq in 1..=last.min(10) {
                if let Ok(message) = stream.get_raw_message(seq).await {
                    out += &format!("  {}: {:?}\n", message.subject, park_reason(&message));
                }
            }
        }
        Err(e) => out += &format!("parked messages unknown: {e}\n"),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_ends_once_through_a_node_and_instance_failure() {
    crate::support::log_from_env();
    let mut cluster = NatsCluster::start(3).expect("a 3-node cluster");
    let urls = cluster.urls();
    // The test itself talks to nodes 2 and 3 first, so killing node 1 leaves it be.
    let store = EventStore::new(client(&urls, 1).await);
    ensure_replicated(&store).await;

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
            match task_events(&store).await.map(|log| progress(&log)) {
                Ok((done, _)) if done >= TASKS / 3 => ControlFlow::Break(done),
                other => ControlFlow::Continue(other),
            }
        },
    )
    .await;
    for instance in instances.remove(0) {
        instance.abort();
    }
    cluster.nodes[0].kill().expect("kill node 1");

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last_read = None;
    let log = loop {
        match task_events(&store).await {
            Ok(log) if progress(&log).0 >= TASKS => break log,
            Ok(log) => last_read = Some(log),
            Err(e) => eprintln!("reading the task log: {e}"),
        }
        if Instant::now() > deadline {
            let observed: Vec<&Observed> = agents.iter().map(|(_, (o, _))| &**o).collect();
            let log = last_read.unwrap_or_default();
            panic!("{}", diagnose(&store, &log, &observed).await);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let endings: HashMap<TaskId, Vec<&TaskEvent>> = log
        .iter()
        .map(|(task, events)| (*task, events.iter().filter(|e| is_ending(e)).collect()))
        .collect();

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
        progress(&log).0,
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
