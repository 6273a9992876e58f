//! Who is calling: a tenant bearer token (`Authorization: Bearer rft1.<tenant>.<hex>`)
//! checked against the tenant's token events on every request, so a revoked token stops
//! working at once. The tenant comes from the token alone, never from a header.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use fleet_events::enroll::TokenText;
use fleet_events::event::Role;
use fleet_events::ids::TenantId;

use super::Api;
use super::error::ApiError;
use crate::tenant;

/// Roles whose tokens may read through the API.
const READERS: [Role; 2] = [Role::Admin, Role::ReadOnly];

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub role: Role,
}

impl Caller {
    /// Refuses a read-only caller a change.
    pub fn may_change(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::forbidden("this token may only read")),
        }
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        let text = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        let token =
            TokenText::parse(text).map_err(|_| ApiError::unauthorized("token not accepted"))?;
        let (book, _) = tenant::book(&api.store, token.tenant())
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot read the tenant's tokens: {e}")))?;
        let issued = book
            .check(&token, &READERS)
            .filter(|_| book.exists)
            .ok_or_else(|| ApiError::unauthorized("token not accepted"))?;
        Ok(Caller {
            tenant: token.tenant().clone(),
            role: issued.role,
        })
    }
}
