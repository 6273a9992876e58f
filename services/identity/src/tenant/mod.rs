//! Tenants and their tokens: creating a tenant, issuing and revoking tokens, all as events
//! on the tenant's aggregate. A token's text is returned once and never stored; the log
//! holds its SHA-256.

mod book;

use chrono::{DateTime, Utc};
use fleet_events::enroll::{TOKEN_SECRET_BYTES, TokenText};
use fleet_events::envelope::Envelope;
use fleet_events::event::{Event, Role, TenantEvent};
use fleet_events::ids::{TenantId, TokenId};
use fleet_events::store::{Append, AppendError, EventStore, Expect, ReadError};
use fleet_events::subject::{AggregateId, EventSubject};
use ring::rand::SecureRandom;

pub use book::{Issued, TokenBook, hash};

/// Why a tenant operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} already exists")]
    Exists(TenantId),
    #[error("no tenant {0}")]
    Missing(TenantId),
    #[error("tenant {tenant} has no token {token}")]
    NoSuchToken { tenant: TenantId, token: TokenId },
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// A token just issued: its id, role and text (show it once).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: TokenId,
    pub role: Role,
    pub text: TokenText,
}

/// The subject of `tenant`'s own events.
pub fn subject(tenant: &TenantId) -> EventSubject {
    EventSubject {
        tenant: tenant.clone(),
        aggregate: AggregateId::Tenant(tenant.clone()),
    }
}

/// The tenant's tokens as its history says.
pub async fn book(store: &EventStore, tenant: &TenantId) -> Result<(TokenBook, u64), ReadError> {
    let history = store.history(&subject(tenant)).await?;
    let events = history.events.iter().map(|stored| &stored.envelope.event);
    Ok((TokenBook::fold(events), history.last_seq))
}

/// Creates `tenant`; an existing tenant is an error (the check is the event store's
/// expected sequence, so two concurrent creations cannot both succeed).
pub async fn create(
    store: &EventStore,
    tenant: &TenantId,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(), TenantError> {
    let event = TenantEvent::Created { name: name.into() };
    let msg_id = format!("tenant-created:{tenant}");
    match append(store, tenant, event, &msg_id, Expect::LastSeq(0), now).await {
        Ok(()) => Ok(()),
        Err(AppendError::Conflict { .. }) => Err(TenantError::Exists(tenant.clone())),
        Err(e) => Err(e.into()),
    }
}

/// How often a decision is taken again on a newer history after losing the race to
/// append (another token issued or revoked meanwhile) before giving up.
const DECIDE_ATTEMPTS: usize = 8;

/// Issues a token of `role` to an existing tenant.
pub async fn issue(
    store: &EventStore,
    tenant: &TenantId,
    role: Role,
    label: &str,
    now: DateTime<Utc>,
) -> Result<NewToken, TenantError> {
    let mut secret = [0u8; TOKEN_SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| TenantError::Random)?;
    let text = TokenText::from_secret(tenant, &secret);
    let id = TokenId::generate();
    let event = TenantEvent::TokenIssued {
        token: id,
        role,
        label: label.into(),
        sha256: hash(&text),
    };
    // The msg id makes a retry of the same append safe.
    let msg_id = format!("token-issued:{id}");
    decide_and_append(store, tenant, &msg_id, now, |book| {
        if !book.exists {
            return Err(TenantError::Missing(tenant.clone()));
        }
        Ok(Some(event.clone()))
    })
    .await?;
    Ok(NewToken { id, role, text })
}

/// Revokes token `id` of `tenant`; revoking a revoked token changes nothing.
pub async fn revoke(
    store: &EventStore,
    tenant: &TenantId,
    id: TokenId,
    now: DateTime<Utc>,
) -> Result<(), TenantError> {
    let msg_id = format!("token-revoked:{id}");
    decide_and_append(store, tenant, &msg_id, now, |book| {
        if !book.was_issued(id) {
            return Err(TenantError::NoSuchToken {
                tenant: tenant.clone(),
                token: id,
            });
        }
        Ok(book
            .is_live(id)
            .then_some(TenantEvent::TokenRevoked { token: id }))
    })
    .await
}

/// Folds the tenant's history, asks `decide` what to append (nothing, or one event), and
/// appends it expecting that history's last sequence; when another append came first,
/// decides again on the new history.
async fn decide_and_append(
    store: &EventStore,
    tenant: &TenantId,
    msg_id: &str,
    now: DateTime<Utc>,
    decide: impl Fn(&TokenBook) -> Result<Option<TenantEvent>, TenantError>,
) -> Result<(), TenantError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (book, last_seq) = book(store, tenant).await?;
        let Some(event) = decide(&book)? else {
            return Ok(());
        };
        match append(store, tenant, event, msg_id, Expect::LastSeq(last_seq), now).await {
            Err(AppendError::Conflict { .. }) if attempt < DECIDE_ATTEMPTS => continue,
            result => return result.map_err(TenantError::from),
        }
    }
}

/// Appends one event of `tenant`'s own aggregate.
async fn append(
    store: &EventStore,
    tenant: &TenantId,
    event: TenantEvent,
    msg_id: &str,
    expect: Expect,
    now: DateTime<Utc>,
) -> Result<(), AppendError> {
    let envelope = Envelope::new(tenant.clone(), now, Event::Tenant(event));
    store
        .append(Append {
            envelope: &envelope,
            msg_id,
            expect,
        })
        .await
        .map(|_| ())
}
