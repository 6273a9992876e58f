//! The agent's own task subject: orders (scheduled ones, and those an operator asked for
//! with their request) are recorded before they are acked, redeliveries are recognised,
//! cancels reach the running attempt.

use std::sync::Arc;
use std::time::Duration;

use fleet_events::access;
use fleet_events::codec::Wire;
use fleet_events::event::TaskRequest;
use fleet_events::protocol::{AgentCommand, Command, ReportStatus, TaskOrder};
use fleet_events::streams;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::slots::{Slots, spawn_task};
use super::{RuntimeError, Shared};
use crate::state::Accepted;

/// Consumes the agent's task subject until `shutdown` is cancelled.
pub async fn consume(
    shared: Arc<Shared>,
    slots: Slots,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let agent = shared.config.agent;
    let name = access::agent_consumer(agent);
    while !shutdown.is_cancelled() {
        let messages = async {
            let stream = shared
                .js
                .get_stream_no_info(streams::DISPATCH)
                .await
                .map_err(|e| e.to_string())?;
            let consumer = stream
                .get_or_create_consumer(&name, access::agent_consumer_config(agent))
                .await
                .map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        }
        .await;
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, "cannot consume the task subject; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "task subject error");
                        continue;
                    }
                    None => break,
                },
            };
            let acked = match AgentCommand::from_wire(&message.payload) {
                Ok(AgentCommand { command, .. }) => match command {
                    Command::Run(order) => {
                        match accept(&shared, &slots, order, None, &shutdown).await {
                            Ok(()) => message.double_ack().await,
                            // Not recorded: not acked, so it comes back.
                            Err(e) => {
                                tracing::error!(error = %e, "cannot record a task; it will be redelivered");
                                continue;
                            }
                        }
                    }
                    Command::RunRequested { order, request } => {
                        match accept(&shared, &slots, order, Some(request), &shutdown).await {
                            Ok(()) => message.double_ack().await,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot record a task; it will be redelivered");
                                continue;
                            }
                        }
                    }
                    Command::Cancel {
                        task,
                        attempt,
                        reason,
                    } => {
                        if let Some(token) = shared.running.lock().await.get(&(task, attempt)) {
                            tracing::info!(%task, attempt, %reason, "cancelling on the control plane's request");
                            token.cancel();
                        }
                        message.ack().await
                    }
                },
                Err(e) => {
                    metrics::counter!("fleet_agent_undecodable_commands_total").increment(1);
                    fleet_events::repeat::warn_repeated(
                        "undecodable commands on the task subject",
                        "undecodable command",
                        || {
                            tracing::error!(reason = %format!("undecodable command: {e}"), "a command on the task subject is not readable; dropped after logging");
                        },
                    );
                    message.ack().await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "ack failed; the message will be redelivered");
            }
        }
    }
    Ok(())
}

/// Records the order with the operator's request, if any (flushed), and queues it; a
/// redelivered attempt is only acked.
async fn accept(
    shared: &Arc<Shared>,
    slots: &Slots,
    order: TaskOrder,
    request: Option<TaskRequest>,
    shutdown: &CancellationToken,
) -> Result<(), RuntimeError> {
    if order.tenant != shared.config.tenant {
        tracing::error!(task = %order.task, tenant = %order.tenant, "an order of another tenant; ignored");
        return Ok(());
    }
    let report = shared.report(&order, ReportStatus::Acknowledged);
    match shared
        .state
        .accept(&order, request.as_ref(), report)
        .await?
    {
        Accepted::New => {
            shared.reports.notify_one();
            tracing::info!(task = %order.task, attempt = order.attempt, kind = order.spec.kind.as_str(), "task accepted");
            spawn_task(
                shared.clone(),
                slots.clone(),
                order,
                request,
                shutdown.clone(),
            )
            .await;
        }
        Accepted::Duplicate => {
            tracing::info!(task = %order.task, attempt = order.attempt, "redelivered task ignored");
        }
    }
    Ok(())
}
