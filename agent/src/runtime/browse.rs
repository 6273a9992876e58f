//! Browse requests on the agent's own `fleet.agent.<id>.browse` (core NATS request/reply,
//! never stored): each is answered once, on its reply subject, with one page of a
//! snapshot's directory or why there is none ([`crate::executor::browse`] runs
//! `restic ls`). Garbage gets a permanent error, another tenant's request an `auth` one;
//! nothing panics and nothing is kept. At most [`MAX_RUNNING`] listings run at once, a
//! few more wait their turn, the rest are told the agent is busy. async-nats subscribes
//! again by itself after a reconnect; should the subscription end, it is made anew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_events::browse::{BrowsePage, BrowseReply, BrowseRequest};
use fleet_events::codec::Wire;
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::event::{ErrorClass, TaskError};
use fleet_events::ids::TenantId;
use fleet_events::subject::{AgentSubject, Channel};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::executor::Context;
use crate::executor::browse::{BROWSE_TIMEOUT, list};

/// Listings (restic processes) at once, at most; they take no task slot.
pub const MAX_RUNNING: usize = 2;
/// Requests waiting for a turn, at most; more are answered "busy" at once.
const MAX_WAITING: usize = 16;
/// How long a request waits for a turn: with [`BROWSE_TIMEOUT`], within the API's 120 s.
const WAIT_FOR_TURN: Duration = Duration::from_secs(15);
const REQUESTS_METRIC: &str = "fleet_agent_browse_requests_total";
const SECONDS_METRIC: &str = "fleet_agent_browse_seconds";

/// Answers browse requests until `shutdown`.
pub async fn serve(shared: Arc<Shared>, shutdown: CancellationToken) {
    let subject = AgentSubject {
        agent: shared.config.agent,
        channel: Channel::Browse,
    }
    .to_string();
    let turns = Arc::new(Semaphore::new(MAX_RUNNING));
    let places = Arc::new(Semaphore::new(MAX_RUNNING + MAX_WAITING));
    while !shutdown.is_cancelled() {
        match shared.client.subscribe(subject.clone()).await {
            Ok(mut requests) => loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = requests.next() => message,
                };
                let Some(message) = message else {
                    tracing::warn!(%subject, "browse subscription ended; subscribing again");
                    break;
                };
                let handler = Handler {
                    shared: shared.clone(),
                    turns: turns.clone(),
                    shutdown: shutdown.clone(),
                };
                match places.clone().try_acquire_owned() {
                    Ok(place) => {
                        tokio::spawn(handler.handle(message, place));
                    }
                    Err(_) => handler.busy(message).await,
                }
            },
            Err(error) => tracing::warn!(%error, %subject, "cannot subscribe to browse requests"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// A request the agent will list, or how it is answered instead (and its metric label).
pub fn admit(
    payload: &[u8],
    tenant: &TenantId,
) -> Result<BrowseRequest, (&'static str, TaskError)> {
    let request = BrowseRequest::from_wire(payload).map_err(|error| {
        let message = format!("not a browse request: {error}");
        (
            "malformed",
            TaskError::new(ErrorClass::Permanent, &message, None),
        )
    })?;
    if &request.tenant != tenant {
        let message = "this agent does not serve the request's tenant";
        return Err(("refused", TaskError::new(ErrorClass::Auth, message, None)));
    }
    request.validate().map_err(|problems| {
        let message = format!("the browse request is not valid: {problems}");
        (
            "invalid",
            TaskError::new(ErrorClass::Permanent, &message, None),
        )
    })?;
    Ok(request)
}

/// What each request's task needs.
struct Handler {
    shared: Arc<Shared>,
    turns: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl Handler {
    /// Answers one request (holding `_place` among those waiting or running).
    async fn handle(self, message: async_nats::Message, _place: OwnedSemaphorePermit) {
        let began = Instant::now();
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!("browse request without a reply subject; not answered");
            metrics::counter!(REQUESTS_METRIC, "outcome" => "unanswerable").increment(1);
            return;
        };
        let (outcome, result, request) = match admit(&message.payload, &self.shared.config.tenant) {
            Err((outcome, error)) => (outcome, Err(error), None),
            Ok(request) => {
                let (outcome, result) = self.list(&request).await;
                (outcome, result, Some(request))
            }
        };
        let elapsed_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        let entries = result.as_ref().map_or(0, |page| page.entries.len());
        let more = result.as_ref().is_ok_and(|page| page.next.is_some());
        let error = result
            .as_ref()
            .err()
            .map(|e| (e.class.as_str(), e.message.clone()));
        self.reply(reply_to, result).await;
        metrics::counter!(REQUESTS_METRIC, "outcome" => outcome).increment(1);
        metrics::histogram!(SECONDS_METRIC).record(began.elapsed().as_secs_f64());
        // One line per request: what was asked and how it ended, never the repository
        // URL (it may hold credentials) nor anything of the secret.
        match request {
            Some(r) => tracing::info!(tenant = %r.tenant, policy = %r.policy,
                snapshot = %r.snapshot.get(..8).unwrap_or(&r.snapshot), path = %r.path,
                after = ?r.after, limit = r.limit, outcome, entries, more, elapsed_ms,
                error = ?error, "browse request answered"),
            None => tracing::warn!(outcome, elapsed_ms, error = ?error,
                "browse request refused"),
        }
    }

    /// Lists `request` once a turn is free (or says the agent is busy), with the outcome's
    /// metric label.
    async fn list(&self, request: &BrowseRequest) -> (&'static str, Result<BrowsePage, TaskError>) {
        let turn = tokio::select! {
            () = self.shutdown.cancelled() => None,
            turn = tokio::time::timeout(WAIT_FOR_TURN, self.turns.clone().acquire_owned()) => {
                turn.ok().and_then(Result::ok)
            }
        };
        let Some(_turn) = turn else {
            return ("busy", Err(busy()));
        };
        let config = &self.shared.config;
        let ctx = Context {
            settings: &config.settings,
            secrets: &config.secrets,
            restic: &config.restic,
            hostname: &config.hostname,
            version: &config.restic_version,
            grace: config.stop_grace,
            unreachable_after: config.unreachable_after,
            lock_wait: config.lock_wait,
            cpu: None,
            progress: None,
            hooks: &config.hooks,
        };
        let result = list(request, &ctx, BROWSE_TIMEOUT, self.shutdown.child_token()).await;
        (if result.is_ok() { "ok" } else { "failed" }, result)
    }

    /// Answers at once that the agent is busy.
    async fn busy(self, message: async_nats::Message) {
        if let Some(reply_to) = message.reply {
            self.reply(reply_to, Err(busy())).await;
        }
        metrics::counter!(REQUESTS_METRIC, "outcome" => "busy").increment(1);
        tracing::warn!("browse request answered busy: too many are waiting");
    }

    async fn reply(&self, reply_to: async_nats::Subject, result: Result<BrowsePage, TaskError>) {
        let reply = BrowseReply {
            schema: SCHEMA_VERSION,
            result,
        };
        let payload = reply.to_wire().or_else(|error| {
            let message = format!("the listing cannot be encoded: {error}");
            BrowseReply {
                schema: SCHEMA_VERSION,
                result: Err(TaskError::new(ErrorClass::Permanent, &message, None)),
            }
            .to_wire()
        });
        match payload {
            Ok(payload) => {
                if let Err(error) = self.shared.client.publish(reply_to, payload.into()).await {
                    tracing::debug!(%error, "browse answer not sent");
                }
            }
            Err(error) => tracing::error!(%error, "browse answer cannot be encoded"),
        }
    }
}

fn busy() -> TaskError {
    TaskError::new(
        ErrorClass::Resource,
        "the agent is busy listing other snapshots; try again",
        None,
    )
}

#[cfg(test)]
mod tests {
    use fleet_events::browse::DEFAULT_PAGE;
    use fleet_events::samples;

    use super::*;

    fn request() -> BrowseRequest {
        BrowseRequest {
            schema: SCHEMA_VERSION,
            tenant: samples::tenant(),
            policy: samples::POLICY,
            repository: samples::policy_spec().repository,
            snapshot: "ab".repeat(32),
            path: "/srv".into(),
            after: None,
            limit: DEFAULT_PAGE,
        }
    }

    #[test]
    fn garbage_another_tenant_and_invalid_requests_are_answered_with_why() {
        let own = samples::tenant();
        let ok = request();
        assert_eq!(admit(&ok.to_wire().expect("encodes"), &own), Ok(ok.clone()));

        for garbage in [&b""[..], b"\x01", &[0xff; 100]] {
            let (outcome, error) = admit(garbage, &own).expect_err("garbage");
            assert_eq!((outcome, error.class), ("malformed", ErrorClass::Permanent));
            assert!(
                error.message.starts_with("not a browse request"),
                "{error:?}"
            );
        }

        let other = BrowseRequest {
            tenant: TenantId::new("globex").expect("tenant"),
            ..request()
        };
        let (outcome, error) =
            admit(&other.to_wire().expect("encodes"), &own).expect_err("refused");
        assert_eq!((outcome, error.class), ("refused", ErrorClass::Auth));
        assert!(
            !error.message.contains("acme"),
            "tells no tenant: {error:?}"
        );

        let invalid = BrowseRequest {
            path: "relative/../x".into(),
            limit: 0,
            ..request()
        };
        let (outcome, error) =
            admit(&invalid.to_wire().expect("encodes"), &own).expect_err("invalid");
        assert_eq!((outcome, error.class), ("invalid", ErrorClass::Permanent));
        assert!(
            error.message.contains("path") && error.message.contains("limit"),
            "{error:?}"
        );
    }
}
