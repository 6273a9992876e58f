//! Tests of the agent's local state against real sled databases in temporary directories.

mod moves;
mod recovery;
mod unlocks;

use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{ErrorClass, RunDetail, RunSummary, TaskError};
use fleet_events::ids::TaskId;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{AgentReport, ReportStatus, TaskOrder};
use fleet_events::samples;

use super::{AgentState, StateError};

/// Task number `n` (distinct ids that sort by `n`).
fn task(n: u32) -> TaskId {
    TaskId::for_fire(
        samples::POLICY,
        samples::AGENT,
        samples::at(i64::from(n) * 60),
    )
}

fn order(n: u32, attempt: u32, kind: TaskKind) -> TaskOrder {
    TaskOrder {
        tenant: samples::tenant(),
        task: task(n),
        attempt,
        policy: samples::POLICY,
        spec: Box::new(fleet_events::policy::PolicySpec {
            kind,
            ..samples::policy_spec()
        }),
        dispatched_at: samples::at(0),
    }
}

fn report(order: &TaskOrder, secs: i64, status: ReportStatus) -> AgentReport {
    AgentReport {
        schema: SCHEMA_VERSION,
        agent: samples::AGENT,
        tenant: order.tenant.clone(),
        task: order.task,
        attempt: order.attempt,
        at: samples::at(secs),
        status,
    }
}

fn succeeded() -> ReportStatus {
    ReportStatus::Succeeded(RunSummary {
        kind: TaskKind::Check,
        duration_ms: 10,
        detail: RunDetail::Check,
    })
}

fn failed() -> ReportStatus {
    ReportStatus::Failed(TaskError::new(ErrorClass::Auth, "wrong password", Some(1)))
}

/// The statuses in the outbox, oldest first.
fn outbox_statuses(state: &AgentState) -> Vec<(TaskId, &'static str)> {
    state
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(_, r)| {
            let r = r.unwrap();
            (r.task, r.status.name())
        })
        .collect()
}

/// Accepts and starts `order`.
async fn run(state: &AgentState, order: &TaskOrder) {
    let ack = report(order, 1, ReportStatus::Acknowledged);
    state.accept(order, None, ack).await.unwrap();
    let started = report(order, 2, ReportStatus::Started);
    state
        .start(order.task, order.attempt, started)
        .await
        .unwrap();
}

#[test]
fn futures_are_send_so_tasks_can_be_spawned() {
    fn send<T: Send>(_: T) {}
    let dir = tempfile::tempdir().unwrap();
    let state = AgentState::open(dir.path()).unwrap();
    let o = order(1, 1, TaskKind::Backup);
    send(state.accept(&o, None, report(&o, 1, ReportStatus::Acknowledged)));
    send(state.recover(|o| report(o, 9, ReportStatus::Interrupted)));
}

#[test]
fn errors_have_stable_kinds() {
    let e = StateError::UnknownTask {
        task: task(1),
        attempt: 1,
    };
    assert_eq!(e.kind(), "unknown_task");
    assert!(e.to_string().contains("never accepted"));
}
