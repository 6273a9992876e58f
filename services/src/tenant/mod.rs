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

/// Issues a token of `role` to an existing tenant.
pub async fn issue(
    store: &EventStore,
    tenant: &TenantId,
    role: Role,
    label: &str,
    now: DateTime<Utc>,
) -> Result<NewToken, TenantError> {
    let (book, _) = book(store, tenant).await?;
    if !book.exists {
        return Err(TenantError::Missing(tenant.clone()));
    }
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
    // A new token conflicts with nothing; the msg id makes a retry safe.
    let msg_id = format!("token-issued:{id}");
    append(store, tenant, event, &msg_id, Expect::Any, now).await?;
    Ok(NewToken { id, role, text })
}

/// Revokes token `id` of `tenant`; revoking a revoked token changes nothing.
pub async fn revoke(
    store: &EventStore,
    tenant: &TenantId,
    id: TokenId,
    now: DateTime<Utc>,
) -> Result<(), TenantError> {
    let (book, _) = book(store, tenant).await?;
    if !book.was_issued(id) {
        return Err(TenantError::NoSuchToken {
            tenant: tenant.clone(),
            token: id,
        });
    }
    if !book.is_live(id) {
        return Ok(());
    }
    let event = TenantEvent::TokenRevoked { token: id };
    let msg_id = format!("token-revoked:{id}");
    append(store, tenant, event, &msg_id, Expect::Any, now).await?;
    Ok(())
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
