//! The notification read endpoints: the live rules, one rule (by id or name), and the
//! notification log, each a projector query about the caller's tenant.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as Params, State};
use serde::Deserialize;
use serde_json::Value;

use super::Api;
use super::auth::Caller;
use super::error::ApiError;
use super::write_rule::rule_ref;
use fleet_api_model::query::{Query, ask};

type Answer = Result<Json<Value>, ApiError>;

async fn forward(api: &Api, caller: &Caller, query: Query) -> Answer {
    let client = api.store.jetstream().client();
    Ok(Json(ask(&client, &caller.tenant, &query).await?))
}

/// `GET /v1/rules`.
pub async fn rules(State(api): State<Api>, caller: Caller) -> Answer {
    forward(&api, &caller, Query::Rules).await
}

/// `GET /v1/rules/{id}`: by id, or by name.
pub async fn rule(State(api): State<Api>, caller: Caller, Path(rule): Path<String>) -> Answer {
    let id = rule_ref(&caller.tenant, &rule);
    forward(&api, &caller, Query::Rule { id }).await
}

/// `GET /v1/notifications` filters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationParams {
    /// A rule's id or name.
    rule: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/notifications`: newest first.
pub async fn notifications(
    State(api): State<Api>,
    caller: Caller,
    params: Result<Params<NotificationParams>, QueryRejection>,
) -> Answer {
    let Params(params) = params.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let query = Query::Notifications {
        rule: params.rule.map(|text| rule_ref(&caller.tenant, &text)),
        state: params.state,
        limit: params.limit,
    };
    forward(&api, &caller, query).await
}
