//! A scripted agent that speaks the agent protocol: it pulls its own task subject, reports
//! acknowledged, started, then succeeded or failed after a chosen time, and heartbeats.
//! Like fleet-agent, it runs an attempt once however often its order comes. It stands in
//! for fleet-agent where a scenario is about the control plane.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::message::PublishMessage;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{ErrorClass, RunDetail, RunSummary, TaskError};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::{
    AgentCommand, AgentReport, Command, Heartbeat, KindCounts, ReportStatus, TaskOrder,
};
use fleet_events::store::consume::Wire;
use fleet_events::streams;
use fleet_events::subject::{AgentSubject, Channel};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::tenant;

/// What the agent does with a task.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub run_for: Duration,
    /// `None` succeeds; `Some(class)` fails with that class.
    pub fail: Option<ErrorClass>,
}

impl Behaviour {
    /// Runs each task for `run_for`, then succeeds.
    pub fn succeeds_after(run_for: Duration) -> Behaviour {
        Behaviour {
            run_for,
            fail: None,
        }
    }

    /// Runs each task for `run_for`, then fails with `class`.
    pub fn fails_after(run_for: Duration, class: ErrorClass) -> Behaviour {
        Behaviour {
            run_for,
            fail: Some(class),
        }
    }
}

/// Counters the scenario reads.
#[derive(Debug, Default)]
pub struct Observed {
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    pub started: AtomicUsize,
    /// Runs started per task (a task run twice shows 2).
    pub starts: Mutex<HashMap<TaskId, usize>>,
    /// Cancel commands received.
    pub cancels: AtomicUsize,
    /// Orders of an attempt received again (and only acked).
    pub duplicates: AtomicUsize,
}

/// Starts the agent; it stops when `shutdown` is cancelled.
pub fn spawn(
    js: async_nats::jetstream::Context,
    agent: AgentId,
    behaviour: Behaviour,
    shutdown: CancellationToken,
) -> (Arc<Observed>, JoinHandle<()>) {
    let observed = Arc::new(Observed::default());
    let seen = observed.clone();
    let handle = tokio::spawn(async move {
        let beats = tokio::spawn(heartbeats(
            js.clone(),
            agent,
            seen.clone(),
            shutdown.clone(),
        ));
        let stream = js
            .get_stream(streams::DISPATCH)
            .await
            .expect("dispatch stream");
        let name = format!("agent-{agent}");
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: AgentSubject {
                        agent,
                        channel: Channel::Tasks,
                    }
                    .to_string(),
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut accepted: HashSet<(TaskId, u32)> = HashSet::new();
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    _ => continue,
                },
            };
            let order = match AgentCommand::from_wire(&message.payload) {
                Ok(AgentCommand {
                    command: Command::Run(order) | Command::RunRequested { order, .. },
                    ..
                }) => order,
                Ok(AgentCommand {
                    command: Command::Cancel { .. },
                    ..
                }) => {
                    seen.cancels.fetch_add(1, Ordering::SeqCst);
                    message.ack().await.ok();
                    continue;
                }
                Err(_) => {
                    message.ack().await.ok();
                    continue;
                }
            };
            // As fleet-agent's state does: an attempt it has accepted once is only acked.
            if !accepted.insert((order.task, order.attempt)) {
                seen.duplicates.fetch_add(1, Ordering::SeqCst);
                message.double_ack().await.ok();
                continue;
            }
            report(&js, agent, &order, ReportStatus::Acknowledged).await;
            message.double_ack().await.ok();
            let (js, seen, stop) = (js.clone(), seen.clone(), shutdown.clone());
            tokio::spawn(async move {
                let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
                seen.max_running.fetch_max(now, Ordering::SeqCst);
                seen.started.fetch_add(1, Ordering::SeqCst);
                *seen.starts.lock().unwrap().entry(order.task).or_default() += 1;
                report(&js, agent, &order, ReportStatus::Started).await;
                let finished = tokio::select! {
                    () = tokio::time::sleep(behaviour.run_for) => true,
                    // The agent "dies": the run never reports.
                    () = stop.cancelled() => false,
                };
                seen.running.fetch_sub(1, Ordering::SeqCst);
                if !finished {
                    return;
                }
                let status = match behaviour.fail {
                    None => ReportStatus::Succeeded(RunSummary {
                        kind: order.spec.kind,
                        duration_ms: behaviour.run_for.as_millis() as u64,
                        detail: match order.spec.kind {
                            TaskKind::Check => RunDetail::Check,
                            _ => RunDetail::Backup(Default::default()),
                        },
                    }),
                    Some(class) => {
                        ReportStatus::Failed(TaskError::new(class, class.as_str(), Some(1)))
                    }
                };
                report(&js, agent, &order, status).await;
            });
        }
        beats.abort();
    });
    (observed, handle)
}

async fn report(
    js: &async_nats::jetstream::Context,
    agent: AgentId,
    order: &TaskOrder,
    status: ReportStatus,
) {
    let report = AgentReport {
        schema: SCHEMA_VERSION,
        agent,
        tenant: order.tenant.clone(),
        task: order.task,
        attempt: order.attempt,
        at: chrono::Utc::now(),
        status,
    };
    let subject = AgentSubject {
        agent,
        channel: Channel::Reports,
    }
    .to_string();
    // Sent until stored, as fleet-agent's outbox does: a NATS node may be failing over
    // (the msg id makes a resend harmless).
    for _ in 0..100 {
        let message = PublishMessage::build()
            .payload(report.to_wire().expect("encodes").into())
            .message_id(report.msg_id());
        if let Ok(ack) = js.send_publish(subject.clone(), message).await
            && ack.await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("report of {} not stored after 100 tries", order.task);
}

async fn heartbeats(
    js: async_nats::jetstream::Context,
    agent: AgentId,
    seen: Arc<Observed>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let running = seen.running.load(Ordering::SeqCst) as u16;
        let beat = Heartbeat {
            schema: SCHEMA_VERSION,
            agent,
            tenant: tenant(),
            at: chrono::Utc::now(),
            running: KindCounts {
                backup: running,
                ..KindCounts::default()
            },
            queued: KindCounts::default(),
            agent_version: "scripted".into(),
            restic_version: "none".into(),
            outbox_depth: 0,
            every_secs: 1,
        };
        let subject = AgentSubject {
            agent,
            channel: Channel::Heartbeat,
        }
        .to_string();
        if let Ok(ack) = js
            .publish(subject, beat.to_wire().expect("encodes").into())
            .await
        {
            ack.await.ok();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
