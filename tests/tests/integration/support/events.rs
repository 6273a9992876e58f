//! The event log of a scenario: appending events as the control plane's clients would, and
//! reading it back.

use chrono::{DateTime, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event, TaskEvent};
use fleet_events::ids::{AgentId, PolicyId, TaskId};
use fleet_events::policy::PolicySpec;
use fleet_events::settings::AgentSettings;
use fleet_events::store::{Append, EventStore, Expect, Stored};
use fleet_events::subject;
use futures::TryStreamExt;

use super::tenant;

/// Appends `event` of the scenario's tenant, stamped `at`, with its envelope id as message id.
pub async fn append_at(store: &EventStore, event: Event, at: DateTime<Utc>) {
    let envelope = Envelope::new(tenant(), at, event);
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

/// Appends `event`, stamped now.
pub async fn append(store: &EventStore, event: Event) {
    append_at(store, event, Utc::now()).await;
}

/// Registers `agent` with `settings`.
pub async fn register(store: &EventStore, agent: AgentId, settings: AgentSettings) {
    let event = AgentEvent::Registered {
        name: "scripted".into(),
        hostname: "scripted".into(),
        settings,
    };
    append(store, Event::Agent { agent, event }).await;
}

/// Schedules a task of a new policy with `spec` for `agent`, due at `fire_at`.
pub async fn schedule(
    store: &EventStore,
    agent: AgentId,
    spec: PolicySpec,
    fire_at: DateTime<Utc>,
) -> TaskId {
    let policy = PolicyId::generate();
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

/// Every stored event on the subjects `filter` matches, in log order.
pub async fn log(store: &EventStore, filter: &str) -> Vec<Stored> {
    store
        .replay(filter, 1)
        .await
        .expect("replay")
        .try_collect()
        .await
        .expect("decodes")
}

/// Every task event, with its task, in log order.
pub async fn task_log(store: &EventStore) -> Vec<(TaskId, TaskEvent)> {
    let all = log(store, &subject::aggregate_events(subject::Aggregate::Task)).await;
    all.into_iter()
        .filter_map(|s| match s.envelope.event {
            Event::Task { task, event } => Some((task, event)),
            _ => None,
        })
        .collect()
}

/// The events of `task`, in log order.
pub async fn task_events(store: &EventStore, task: TaskId) -> Vec<TaskEvent> {
    let all = task_log(store).await;
    all.into_iter()
        .filter_map(|(t, event)| (t == task).then_some(event))
        .collect()
}

/// Deletes every consumer of the event stream behind its clients' backs, as a node that
/// dies with them would, and returns their names.
pub async fn delete_event_consumers(store: &EventStore) -> Vec<String> {
    let stream = store
        .jetstream()
        .get_stream(fleet_events::streams::EVENTS)
        .await
        .expect("stream");
    let names: Vec<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .expect("consumers");
    for name in &names {
        stream.delete_consumer(name).await.expect("deleted");
    }
    names
}
