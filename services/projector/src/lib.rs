//! The projector: keeps the read models current from the log (one sled database, each
//! model checkpointed by stream sequence) and answers queries about them over NATS
//! request/reply, so the API and the CLI never open sled.
//!
//! - `fleet.ctl.query.<tenant>`: a JSON [`query::Query`] about that tenant only.
//! - `fleet.ctl.projections.status`: every model's checkpoint, lag and rejections.
//!
//! Instances share the subjects in the queue group `fleet-projector`; each keeps its own
//! database. A request that cannot be answered gets an error answer and is counted in
//! `fleet_queries_total{query,outcome}`.

pub mod answer;
pub mod dto;
pub mod fleet_state;
pub mod gauges;
pub mod models;
pub use fleet_api_model::query;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use async_nats::Message;
use fleet_events::ids::TenantId;
use fleet_events::store::EventStore;
use fleet_events::subject;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use fleet_runtime::clock::Clock;
pub use models::{ProjectionStatus, ReadModels};
use query::{Answer, ErrorCode, Query};

/// Days of ended tasks and runs the read models keep by default (`--history-days`).
pub const DEFAULT_HISTORY_DAYS: u32 = fleet_projections::retention::DEFAULT_DAYS;

/// Largest query accepted.
const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Runs the read models in `dir`, keeping ended tasks and runs for `history_days` days,
/// and answers queries until `shutdown`.
pub async fn run(
    store: EventStore,
    clock: Clock,
    dir: &Path,
    history_days: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let models = Arc::new(
        ReadModels::open(dir, history_days)
            .with_context(|| format!("opening the read models in {}", dir.display()))?,
    );
    let tracker = TaskTracker::new();
    models.spawn(&tracker, &store, &shutdown);
    tracker.spawn(gauges::run(models.clone(), shutdown.clone()));
    let served = serve(&store, &models, &clock, &shutdown).await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    served
}

async fn serve(
    store: &EventStore,
    models: &Arc<ReadModels>,
    clock: &Clock,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let client = store.jetstream().client();
    let queue = subject::PROJECTOR_QUEUE.to_owned();
    let mut queries = client
        .queue_subscribe(subject::all_queries(), queue.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to queries: {e}"))?;
    let mut status = client
        .queue_subscribe(subject::projections_status(), queue)
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to status requests: {e}"))?;
    client.flush().await.ok();
    tracing::info!("projector answering queries");
    loop {
        let (message, answer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(message) = queries.next() => {
                let answer = answer_query(models, clock, &message);
                (message, answer)
            }
            Some(message) = status.next() => {
                let answer = answer_status(store, models).await;
                (message, answer)
            }
            else => anyhow::bail!("the query subscriptions ended"),
        };
        let Some(inbox) = message.reply else {
            metrics::counter!("fleet_queries_total", "query" => "none", "outcome" => "no_reply_subject").increment(1);
            continue;
        };
        let body = serde_json::to_vec(&answer).unwrap_or_else(|e| {
            let answer =
                serde_json::json!({"error": {"code": "unavailable", "message": e.to_string()}});
            answer.to_string().into_bytes()
        });
        let body = fitting(body, client.server_info().max_payload);
        if let Err(error) = client.publish(inbox, body.into()).await {
            tracing::warn!(%error, "cannot send a query answer");
        }
    }
    Ok(())
}

fn answer_query(models: &ReadModels, clock: &Clock, message: &Message) -> Answer {
    let tenant = message
        .subject
        .rsplit('.')
        .next()
        .and_then(|token| TenantId::new(token).ok());
    let (name, answer) = match tenant {
        None => (
            "none",
            Answer::error(ErrorCode::BadRequest, "the subject names no tenant"),
        ),
        Some(_) if message.payload.len() > MAX_QUERY_BYTES => (
            "none",
            Answer::error(
                ErrorCode::BadRequest,
                format!("a query is at most {MAX_QUERY_BYTES} bytes"),
            ),
        ),
        Some(tenant) => match serde_json::from_slice::<Query>(&message.payload) {
            Err(e) => (
                "none",
                Answer::error(ErrorCode::BadRequest, format!("not a query: {e}")),
            ),
            Ok(query) => {
                let name = query.name();
                (name, answer::answer(models, &tenant, query, clock.now()))
            }
        },
    };
    let outcome = match &answer {
        Answer::Ok(_) => "ok",
        Answer::Error {
            code: ErrorCode::BadRequest,
            ..
        } => "bad_request",
        Answer::Error {
            code: ErrorCode::NotFound,
            ..
        } => "not_found",
        Answer::Error {
            code: ErrorCode::Unavailable,
            ..
        } => "unavailable",
    };
    metrics::counter!("fleet_queries_total", "query" => name, "outcome" => outcome).increment(1);
    answer
}

async fn answer_status(store: &EventStore, models: &ReadModels) -> Answer {
    match models.status(store).await {
        Ok(status) => match serde_json::to_value(status) {
            Ok(value) => Answer::Ok(value),
            Err(e) => Answer::error(ErrorCode::Unavailable, e.to_string()),
        },
        Err(e) => Answer::error(ErrorCode::Unavailable, e.to_string()),
    }
}

/// `body`, or when it is larger than NATS carries in one message, an answer saying so (the
/// asker is told what to do instead of waiting for an answer that cannot come).
fn fitting(body: Vec<u8>, max_payload: usize) -> Vec<u8> {
    if body.len() <= max_payload {
        return body;
    }
    // Counted apart from the query's own outcome (already counted as answered).
    metrics::counter!("fleet_queries_total", "query" => "any", "outcome" => "too_large")
        .increment(1);
    let message = format!(
        "the answer is {} bytes, more than NATS carries in one message ({max_payload}): ask \
         for fewer (limit and offset)",
        body.len()
    );
    tracing::warn!(%message, "a query's answer does not fit");
    let answer = Answer::error(ErrorCode::Unavailable, message);
    serde_json::to_vec(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_too_large_for_nats_becomes_an_error_saying_so() {
        let small = br#"{"ok":[]}"#.to_vec();
        assert_eq!(fitting(small.clone(), 1024), small);
        let large = vec![b' '; 2048];
        let told: Answer = serde_json::from_slice(&fitting(large, 1024)).expect("an answer");
        match told {
            Answer::Error {
                code: ErrorCode::Unavailable,
                message,
            } => assert!(message.contains("2048 bytes") && message.contains("limit and offset")),
            other => panic!("{other:?}"),
        }
    }
}
