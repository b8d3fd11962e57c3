//! v2 subscription handlers: update and read opt-in/opt-out status (by id and by lookup) and the
//! subscription log.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::model::{CustomerError, CustomerId, SourceAccount};
use super::routes_v2::{LookupQuery, country_code, iso};
use super::service;
use super::store as customer_store;
use super::subscriptions::{
    self, CHANGES_MAX, Channel, LIST_MAX, Priority, SubscriptionChange, SubscriptionStatus,
    SubscriptionType,
};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::db::Connection;
use crate::error::ApiError;
use crate::http::extract::{Json, Path, Query};
use crate::org::model::OrgId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/customers/lookup/subscriptions", get(lookup_get).post(lookup_update))
        .route("/v2/customers/{id}/subscriptions", get(get_by_id).post(update_by_id))
        .route("/v2/customers/{id}/subscriptionLog", get(log))
}

#[derive(OpenApi)]
#[openapi(paths(update_by_id, lookup_update, get_by_id, lookup_get, log))]
pub struct ApiDoc;

/// One entry of `subscriptions[]`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBody {
    channel: Option<String>,
    priority: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    source_name: Option<String>,
    account_id: Option<String>,
    #[allow(dead_code)]
    #[schema(value_type = Option<i64>)]
    org_unit_id: Option<Value>,
}

/// Body of `POST /v2/customers/{userId}/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionsBody {
    #[serde(default)]
    subscriptions: Vec<SubscriptionBody>,
    reason: Option<String>,
    #[allow(dead_code)]
    #[schema(value_type = Option<i64>)]
    communication_id: Option<Value>,
    #[allow(dead_code)]
    #[schema(value_type = Option<i64>)]
    campaign_id: Option<Value>,
    #[allow(dead_code)]
    #[schema(value_type = Option<Object>)]
    scope: Option<Value>,
}

impl SubscriptionsBody {
    /// Validates every entry; `default_account` applies where `sourceName` is absent.
    fn changes(
        &self,
        default_account: &SourceAccount,
    ) -> Result<Vec<SubscriptionChange>, CustomerError> {
        if self.subscriptions.is_empty() || self.subscriptions.len() > CHANGES_MAX {
            return Err(CustomerError::Invalid(format!(
                "subscriptions must list 1 to {CHANGES_MAX} entries"
            )));
        }
        self.subscriptions
            .iter()
            .map(|s| {
                let required = |v: &Option<String>, name: &str| {
                    v.clone().ok_or_else(|| CustomerError::Invalid(format!("{name} is required")))
                };
                let account = if s.source_name.is_some() || s.account_id.is_some() {
                    SourceAccount::parse(s.source_name.as_deref(), s.account_id.as_deref())?
                } else {
                    default_account.clone()
                };
                Ok(SubscriptionChange {
                    account,
                    channel: Channel::parse(&required(&s.channel, "channel")?)?,
                    priority: Priority::parse(&required(&s.priority, "priority")?)?,
                    kind: SubscriptionType::parse(&required(&s.kind, "type")?)?,
                })
            })
            .collect()
    }
}

/// Query of the by-id forms: the source account (default: every profile of the customer).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct SourceQuery {
    source: Option<String>,
    account_id: Option<String>,
}

/// `POST /v2/customers/{userId}/subscriptions` — opts the customer in or out per channel and priority.
#[utoipa::path(post, path = "/v2/customers/{userId}/subscriptions", tag = "customers",
    params(("userId" = i64, Path, description = "Customer id")), request_body = SubscriptionsBody,
    responses((status = 200, description = "createdId, warnings"),
        (status = 400, description = "Unknown channel, priority or type; 8003 no such profile"),
        (status = 404, description = "8015 not found")))]
pub async fn update_by_id(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Json(body): Json<SubscriptionsBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let changes = body.changes(&SourceAccount::instore())?;
    let reason = body.reason.as_deref().unwrap_or_default();
    subscriptions::set_subscriptions(&state.db, &principal, CustomerId(user_id), &changes, reason)
        .await?;
    Ok(axum::Json(json!({"createdId": user_id, "warnings": []})).into_response())
}

/// `POST /v2/customers/lookup/subscriptions` — the same, for the customer found by identifier.
#[utoipa::path(post, path = "/v2/customers/lookup/subscriptions", tag = "customers",
    params(LookupQuery), request_body = SubscriptionsBody,
    responses((status = 200, description = "createdId, warnings"),
        (status = 400, description = "Unknown channel, priority or type"),
        (status = 404, description = "8015 not found")))]
pub async fn lookup_update(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
    Json(body): Json<SubscriptionsBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let mut conn = state.db.read().await?;
    let (customer, account) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    drop(conn);
    let changes = body.changes(&account)?;
    let reason = body.reason.as_deref().unwrap_or_default();
    subscriptions::set_subscriptions(&state.db, &principal, customer, &changes, reason).await?;
    Ok(axum::Json(json!({"createdId": customer.0, "warnings": []})).into_response())
}

pub(crate) fn status_json(s: &SubscriptionStatus) -> Value {
    json!({
        "channel": s.channel.as_str(),
        "priority": s.priority.as_str(),
        "type": s.kind,
        "sourceName": s.source,
        "accountId": s.account_id,
        "updatedOn": s.updated_at.map(iso),
    })
}

async fn statuses_body(
    conn: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    only: Option<SourceAccount>,
) -> Result<Value, ApiError> {
    let profiles = customer_store::profiles(conn, org, customer).await?;
    if profiles.is_empty() {
        return Err(CustomerError::NotFound.into());
    }
    let accounts: Vec<SourceAccount> = match only {
        Some(account) => {
            if !profiles.iter().any(|p| p.is_account(&account)) {
                return Err(CustomerError::NotFound.into());
            }
            vec![account]
        }
        None => profiles
            .iter()
            .filter_map(|p| SourceAccount::parse(Some(&p.source), Some(&p.account_id)).ok())
            .collect(),
    };
    let statuses = subscriptions::subscription_statuses(conn, org, customer, &accounts).await?;
    let data: Vec<Value> = statuses.iter().map(status_json).collect();
    Ok(json!({"entityId": customer.0, "data": data, "warnings": [], "errors": []}))
}

/// `GET /v2/customers/{customerId}/subscriptions` — status per channel and priority (`OPTIN` when never set).
#[utoipa::path(get, path = "/v2/customers/{customerId}/subscriptions", tag = "customers",
    params(SourceQuery, ("customerId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "Status per source account, channel and priority"),
        (status = 404, description = "8015 not found")))]
pub async fn get_by_id(
    State(state): State<AppState>,
    principal: Principal,
    Path(customer_id): Path<i64>,
    Query(q): Query<SourceQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let only = match q.source.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) if s.eq_ignore_ascii_case("ALL") => None,
        Some(s) => Some(SourceAccount::parse(Some(s), q.account_id.as_deref())?),
    };
    let mut conn = state.db.read().await?;
    let body = statuses_body(&mut conn, principal.org, CustomerId(customer_id), only).await?;
    Ok(axum::Json(body).into_response())
}

/// `GET /v2/customers/lookup/subscriptions` — the same, for the customer found by identifier.
#[utoipa::path(get, path = "/v2/customers/lookup/subscriptions", tag = "customers",
    params(LookupQuery),
    responses((status = 200, description = "Status per channel and priority"),
        (status = 404, description = "8015 not found")))]
pub async fn lookup_get(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let mut conn = state.db.read().await?;
    let (customer, account) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    let body = statuses_body(&mut conn, principal.org, customer, Some(account)).await?;
    Ok(axum::Json(body).into_response())
}

/// `GET /v2/customers/{userId}/subscriptionLog` — subscription changes, newest first (at most 500).
#[utoipa::path(get, path = "/v2/customers/{userId}/subscriptionLog", tag = "customers",
    params(("userId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "Subscription log"), (status = 404, description = "8015 not found")))]
pub async fn log(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let mut conn = state.db.read().await?;
    let customer = CustomerId(user_id);
    if service::load(&mut conn, principal.org, customer).await?.is_none() {
        return Err(CustomerError::NotFound.into());
    }
    let rows =
        subscriptions::subscription_log(&mut conn, principal.org, customer, LIST_MAX).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "channel": r.channel,
                "priority": r.priority,
                "type": r.kind,
                "reason": r.reason,
                "createdOn": iso(r.created_at),
                "createdBy": {"id": r.created_by_id, "type": r.created_by_type},
                "source": r.source,
                "accountId": r.account_id,
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}
