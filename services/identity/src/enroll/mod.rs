//! The registrar: answers agents' registration requests on
//! [`fleet_events::enroll::REGISTER_SUBJECT`] (core NATS request/reply in the queue group
//! [`fleet_events::enroll::REGISTRAR_QUEUE`], so instances share the work).
//!
//! A request carries an enrollment token, so it is never stored in a stream, parked or
//! logged: a request that cannot be handled gets a `Rejected` answer with the reason and
//! is counted in `fleet_registrations_total{outcome}`.
//!
//! Answers go only to enrolling inboxes ([`fleet_events::access::is_enroll_inbox`]):
//! anyone may ask, and must not be able to make the registrar publish elsewhere. A
//! refused token is answered after [`REFUSAL_DELAY`], so guessing is slow.

pub mod judge;

use async_nats::Message;
use fleet_events::access::{ENROLL_INBOX_PREFIX, is_enroll_inbox};
use fleet_events::codec::Wire;
use fleet_events::enroll::{
    REGISTER_SUBJECT, REGISTRAR_QUEUE, RegisterOutcome, RegisterReply, RegisterRequest, Rejection,
};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event};
use fleet_events::store::{Append, AppendError, EventStore, Expect};
use fleet_events::subject::{AggregateId, EventSubject};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::tenant;
use fleet_runtime::clock::Clock;
use judge::{Judgement, check, judge};

/// Conflicting appends (two instances registering one machine) retried before giving up.
const MAX_CONFLICTS: u32 = 3;
/// How long a refused token waits for its answer.
pub const REFUSAL_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// Refusals waiting for their answer at once; more make the registrar wait.
const MAX_DELAYED: usize = 256;
/// Requests answered at once (each reads two histories and appends): a fleet enrolling
/// together is not answered one round trip after another.
const MAX_CONCURRENT: usize = 32;

/// Serves registrations until `shutdown` is cancelled, up to [`MAX_CONCURRENT`] at once
/// (two requests for one machine are told apart by the expected sequence on its agent).
pub async fn run(
    store: EventStore,
    clock: Clock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = store.jetstream().client();
    let mut requests = client
        .queue_subscribe(REGISTER_SUBJECT, REGISTRAR_QUEUE.into())
        .await
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {REGISTER_SUBJECT}: {e}"))?;
    // The subscription is live once the server has it: registrations from now are answered.
    client.flush().await.ok();
    tracing::info!(subject = REGISTER_SUBJECT, "registrar ready");
    let delayed = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_DELAYED));
    let working = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = requests.next() => match message {
                Some(message) => message,
                None => anyhow::bail!("the registration subscription ended"),
            },
        };
        let Ok(permit) = working.clone().acquire_owned().await else {
            break;
        };
        let (store, clock, client) = (store.clone(), clock.clone(), client.clone());
        let delayed = delayed.clone();
        tokio::spawn(async move {
            handle(&store, &clock, &client, &delayed, message).await;
            drop(permit);
        });
    }
    requests.unsubscribe().await.ok();
    Ok(())
}

/// Answers one request (a refusal after [`REFUSAL_DELAY`]).
async fn handle(
    store: &EventStore,
    clock: &Clock,
    client: &async_nats::Client,
    delayed: &std::sync::Arc<tokio::sync::Semaphore>,
    message: Message,
) {
    let reply = answer(store, clock, &message).await;
    count(&reply.outcome);
    let Some(inbox) = message.reply.filter(|inbox| is_enroll_inbox(inbox)) else {
        tracing::warn!(
            "registration request without an enrolling reply subject ({ENROLL_INBOX_PREFIX}.…): not answered, counted"
        );
        metrics::counter!("fleet_registrations_total", "outcome" => "bad_reply_subject")
            .increment(1);
        return;
    };
    let bytes = match reply.to_wire() {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "cannot encode a registration reply");
            return;
        }
    };
    let refused = matches!(
        reply.outcome,
        RegisterOutcome::Rejected {
            reason: Rejection::TokenNotAccepted,
            ..
        }
    );
    if !refused {
        if let Err(error) = client.publish(inbox, bytes.into()).await {
            tracing::warn!(%error, "cannot send a registration reply");
        }
        return;
    }
    let Ok(permit) = delayed.clone().acquire_owned().await else {
        return;
    };
    let client = client.clone();
    tokio::spawn(async move {
        tokio::time::sleep(REFUSAL_DELAY).await;
        if let Err(error) = client.publish(inbox, bytes.into()).await {
            tracing::warn!(%error, "cannot send a registration reply");
        }
        drop(permit);
    });
}

/// The answer to one request.
async fn answer(store: &EventStore, clock: &Clock, message: &Message) -> RegisterReply {
    let request = match RegisterRequest::from_wire(&message.payload) {
        Ok(request) => request,
        Err(error) => {
            return RegisterReply::rejected(
                Rejection::Malformed,
                format!("cannot decode the registration request: {error}"),
            );
        }
    };
    let checked = match check(request) {
        Ok(checked) => checked,
        Err(outcome) => return RegisterReply::new(outcome),
    };
    let tenant = checked.token.tenant().clone();
    for _ in 0..MAX_CONFLICTS {
        let unavailable = |what: String| {
            tracing::warn!(%tenant, "registration failed: {what}");
            RegisterReply::rejected(
                Rejection::Unavailable,
                "the control plane cannot record registrations right now; retry",
            )
        };
        let book = match tenant::book(store, &tenant).await {
            Ok((book, _)) => book,
            Err(error) => return unavailable(error.to_string()),
        };
        let machine_agent =
            fleet_events::ids::AgentId::for_machine(&tenant, &checked.request.machine);
        let subject = EventSubject {
            tenant: tenant.clone(),
            aggregate: AggregateId::Agent(machine_agent),
        };
        let history = match store.history(&subject).await {
            Ok(history) => history,
            Err(error) => return unavailable(error.to_string()),
        };
        let events: Vec<Event> = history
            .events
            .into_iter()
            .map(|stored| stored.envelope.event)
            .collect();
        let (agent, name, new, events) = match judge(&checked, &book, &events) {
            Judgement::Answer(outcome) => return RegisterReply::new(outcome),
            Judgement::Record {
                agent,
                name,
                new,
                events,
            } => (agent, name, new, events),
        };
        match record(store, clock, &tenant, agent, events, history.last_seq).await {
            Ok(()) => {
                if new {
                    tracing::info!(%tenant, %agent, name = %name, "agent registered");
                } else {
                    tracing::info!(%tenant, %agent, name = %name, "agent's NATS key replaced");
                }
                // The agent may not create it (only the control plane may): made now, it
                // is there when the agent first looks, instead of the agent waiting for
                // the access service's next batch. That service still ensures it.
                if let Err(error) = crate::access::ensure_consumer(store, agent).await {
                    tracing::warn!(%agent, %error, "the agent's task consumer is left to the access service");
                }
                return RegisterReply::new(RegisterOutcome::Registered {
                    tenant: tenant.clone(),
                    agent,
                    name,
                    new,
                });
            }
            Err(AppendError::Conflict { .. }) => continue,
            Err(error) => return unavailable(error.to_string()),
        }
    }
    RegisterReply::rejected(
        Rejection::Unavailable,
        "the agent's record kept changing while registering; retry",
    )
}

/// Appends the registration's events in order, the first expecting `last_seq`. Msg ids
/// are derived from the agent (and key), so a retried registration is stored once; a
/// registration cut off between its events is completed by the agent's next attempt.
async fn record(
    store: &EventStore,
    clock: &Clock,
    tenant: &fleet_events::ids::TenantId,
    agent: fleet_events::ids::AgentId,
    events: Vec<AgentEvent>,
    mut last_seq: u64,
) -> Result<(), AppendError> {
    for event in events {
        let msg_id = match &event {
            AgentEvent::KeyAuthorized { nkey } => format!("key:{agent}:{nkey}"),
            _ => format!("register:{agent}"),
        };
        let envelope = Envelope::new(tenant.clone(), clock.now(), Event::Agent { agent, event });
        let append = Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::LastSeq(last_seq),
        };
        last_seq = store.append(append).await?.seq;
    }
    Ok(())
}

/// Every value of `fleet_registrations_total{outcome}`.
pub const OUTCOMES: [&str; 8] = [
    "registered",
    "already_registered",
    "token_not_accepted",
    "malformed",
    "decommissioned",
    "unavailable",
    "key_mismatch",
    "bad_reply_subject",
];

fn count(outcome: &RegisterOutcome) {
    let label = match outcome {
        RegisterOutcome::Registered { new: true, .. } => "registered",
        RegisterOutcome::Registered { new: false, .. } => "already_registered",
        RegisterOutcome::Rejected { reason, .. } => match reason {
            Rejection::TokenNotAccepted => "token_not_accepted",
            Rejection::Malformed => "malformed",
            Rejection::Decommissioned => "decommissioned",
            Rejection::Unavailable => "unavailable",
            Rejection::KeyMismatch => "key_mismatch",
        },
    };
    metrics::counter!("fleet_registrations_total", "outcome" => label).increment(1);
}
