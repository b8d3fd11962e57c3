//! The webhook admin API (Perks extension, admin token only) under `/x/perks/v1/webhooks`, and the
//! compatible `POST /v2/events/webhook` (Behavioral Events — Add Webhook).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{
    CIRCUIT_FAILURES_MAX, EventFilter, SubscriptionId, SubscriptionKind, WebhookError, WebhookUrl,
};
use super::service::{self, NewSubscription, ReplayScope, SubscriptionUpdate};
use super::store::SubscriptionRow;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::db::now_millis;
use crate::error::ApiError;
use crate::http::extract::{Json, Path};

fn iso(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The circuit as the API shows it: CLOSED, OPEN (deliveries wait) or HALF_OPEN (cooled down,
/// the next delivery is a probe).
fn circuit_json(row: &SubscriptionRow, now: i64) -> Value {
    let state = match row.paused_until {
        Some(until) if until > now => "OPEN",
        _ if row.consecutive_failures >= CIRCUIT_FAILURES_MAX => "HALF_OPEN",
        _ => "CLOSED",
    };
    json!({"state": state, "consecutiveFailures": row.consecutive_failures,
        "pausedUntil": row.paused_until.map(iso)})
}

/// A subscription as the admin API shows it; the secret only when `with_secret`.
fn subscription_json(row: &SubscriptionRow, with_secret: bool) -> Value {
    let mut value = json!({
        "id": row.id,
        "kind": row.kind,
        "name": row.name,
        "url": row.url,
        "events": EventFilter::from_stored(&row.event_types).patterns(),
        "active": row.is_active,
        "circuit": circuit_json(row, now_millis()),
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    });
    if row.kind == SubscriptionKind::Inbound.as_str() {
        value["source"] = json!(row.source);
        value["tillCode"] = json!(row.till_code);
        value["webhookId"] = json!(row.webhook_key);
    }
    if with_secret {
        value["secret"] = json!(row.secret);
    }
    value
}

fn data(value: Value) -> Value {
    json!({"data": value, "warnings": [], "errors": []})
}

/// Body of `POST /x/perks/v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    pub url: String,
    pub events: Vec<String>,
    pub name: Option<String>,
}

/// Body of `PUT`/`PATCH /x/perks/v1/webhooks/{id}`: absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateBody {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub name: Option<String>,
    pub active: Option<bool>,
}

/// Body of `POST /x/perks/v1/webhooks/{id}/replay`: one event, or a time range.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayBody {
    pub event_id: Option<i64>,
    pub from: Option<String>,
    pub to: Option<String>,
}

fn parse_instant(field: &str, text: &str) -> Result<i64, WebhookError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| WebhookError::invalid(field, "must be an ISO-8601 date-time with an offset"))
}

impl ReplayBody {
    fn scope(&self) -> Result<ReplayScope, WebhookError> {
        match (self.event_id, &self.from, &self.to) {
            (Some(id), None, None) => Ok(ReplayScope::Event(id)),
            (None, Some(from), Some(to)) => {
                let (from, to) = (parse_instant("from", from)?, parse_instant("to", to)?);
                if from > to {
                    return Err(WebhookError::invalid("to", "must not be before from"));
                }
                Ok(ReplayScope::Between { from, to })
            }
            _ => Err(WebhookError::invalid("eventId", "give either eventId, or both from and to")),
        }
    }
}

/// `GET /x/perks/v1/webhooks` — the org's webhooks (secrets never shown).
#[utoipa::path(get, path = "/x/perks/v1/webhooks", tag = "admin",
    responses((status = 200, description = "The org's webhooks: id, kind, name, url, events, active, circuit"),
        (status = 403, description = "Not an admin token")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let rows = service::list(&state.db, principal.org).await?;
    let items: Vec<Value> = rows.iter().map(|r| subscription_json(r, false)).collect();
    Ok(axum::Json(data(Value::Array(items))).into_response())
}

/// `POST /x/perks/v1/webhooks` — subscribe a URL to event types; 201 with the id and the secret
/// (shown this once).
#[utoipa::path(post, path = "/x/perks/v1/webhooks", tag = "admin",
    request_body(content = Object, description = "{url, events: [\"customer.*\", \"transaction.added\"] or [\"*\"], name?}", content_type = "application/json"),
    responses((status = 201, description = "Created: the webhook with its secret"),
        (status = 400, description = "Invalid input: the message names the field and the reason"),
        (status = 403, description = "Not an admin token"),
        (status = 413, description = "Body too large")))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let input = NewSubscription {
        name: body.name,
        url: WebhookUrl::parse(&body.url)?,
        events: EventFilter::parse(&body.events)?,
    };
    let row = service::create(&state.db, principal.org, &principal, input, now_millis()).await?;
    Ok((StatusCode::CREATED, axum::Json(data(subscription_json(&row, true)))).into_response())
}

/// `GET /x/perks/v1/webhooks/{id}` — one webhook (without its secret).
#[utoipa::path(get, path = "/x/perks/v1/webhooks/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook"),
        (status = 403, description = "Not an admin token"),
        (status = 404, description = "No such webhook in the org")))]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let row = service::get(&state.db, principal.org, SubscriptionId(id)).await?;
    Ok(axum::Json(data(subscription_json(&row, false))).into_response())
}

/// `PUT /x/perks/v1/webhooks/{id}` (also `PATCH`) — change url, events, name or active; absent
/// fields stay. A new URL closes the circuit.
#[utoipa::path(put, path = "/x/perks/v1/webhooks/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Webhook id")),
    request_body(content = Object, description = "{url?, events?, name?, active?}", content_type = "application/json"),
    responses((status = 200, description = "The webhook as changed"),
        (status = 400, description = "Invalid input: the message names the field and the reason"),
        (status = 403, description = "Not an admin token"),
        (status = 404, description = "No such webhook in the org")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<UpdateBody>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let update = SubscriptionUpdate {
        name: body.name,
        url: body.url.as_deref().map(WebhookUrl::parse).transpose()?,
        events: body.events.as_deref().map(EventFilter::parse).transpose()?,
        active: body.active,
    };
    let row = service::update(
        &state.db,
        principal.org,
        &principal,
        SubscriptionId(id),
        update,
        now_millis(),
    )
    .await?;
    Ok(axum::Json(data(subscription_json(&row, false))).into_response())
}

/// `POST /x/perks/v1/webhooks/{id}/rotateSecret` — a new secret, returned this once; every later
/// attempt is signed with it.
#[utoipa::path(post, path = "/x/perks/v1/webhooks/{id}/rotateSecret", tag = "admin",
    params(("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook with its new secret"),
        (status = 403, description = "Not an admin token"),
        (status = 404, description = "No such webhook in the org")))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let row = service::rotate_secret(
        &state.db,
        principal.org,
        &principal,
        SubscriptionId(id),
        now_millis(),
    )
    .await?;
    Ok(axum::Json(data(subscription_json(&row, true))).into_response())
}

/// `DELETE /x/perks/v1/webhooks/{id}` — stop delivering to the webhook and forget it.
#[utoipa::path(delete, path = "/x/perks/v1/webhooks/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Webhook id")),
    responses((status = 200, description = "Deleted"),
        (status = 403, description = "Not an admin token"),
        (status = 404, description = "No such webhook in the org")))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    service::delete(&state.db, principal.org, &principal, SubscriptionId(id), now_millis()).await?;
    Ok(axum::Json(data(json!({"id": id, "deleted": true}))).into_response())
}

/// `POST /x/perks/v1/webhooks/{id}/replay` — deliver again `{"eventId": n}` or the events of
/// `{"from": iso, "to": iso}` (at most 1000); answers how many were queued.
#[utoipa::path(post, path = "/x/perks/v1/webhooks/{id}/replay", tag = "admin",
    params(("id" = i64, Path, description = "Webhook id")),
    request_body(content = Object, description = "{eventId} or {from, to}", content_type = "application/json"),
    responses((status = 200, description = "{data: {replayed: n}}"),
        (status = 400, description = "Invalid input, or a range with more than 1000 events"),
        (status = 403, description = "Not an admin token"),
        (status = 404, description = "No such webhook or event in the org")))]
pub async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<ReplayBody>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let scope = body.scope()?;
    let replayed = service::replay(
        &state.db,
        principal.org,
        &principal,
        SubscriptionId(id),
        scope,
        now_millis(),
    )
    .await?;
    Ok(axum::Json(data(json!({"replayed": replayed}))).into_response())
}

/// Body of `POST /v2/events/webhook`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddWebhookBody {
    pub source: String,
    pub till_code: String,
}

/// Sources an integration may name.
const INTEGRATION_SOURCES: [&str; 2] = ["WEBENGAGE", "CUSTOM"];

/// The scheme and host clients reach this server by: `webhooks.public_base_url` when set, else
/// the request's `X-Forwarded-Proto` (or http) and `Host`.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(base) = state.settings.webhooks.public_base_url.as_deref().filter(|b| !b.is_empty())
    {
        return base.trim_end_matches('/').to_string();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let host = header("host")
        .filter(|h| {
            !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = match header("x-forwarded-proto").and_then(|p| p.split(',').next()) {
        Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// `POST /v2/events/webhook` — creates an integration `{source: WEBENGAGE|CUSTOM, tillCode}` and
/// answers `{webhookId, webhookUrl}`: the URL third parties post behavioral events to.
#[utoipa::path(post, path = "/v2/events/webhook", tag = "events",
    request_body(content = Object, description = "{source: WEBENGAGE|CUSTOM, tillCode}", content_type = "application/json"),
    responses((status = 200, description = "{webhookId, webhookUrl, warnings, errors}"),
        (status = 400, description = "Unknown source, or no till with that code"),
        (status = 403, description = "Events write permission is required")))]
pub async fn add_webhook(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<AddWebhookBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Write)?;
    let source = body.source.trim().to_ascii_uppercase();
    if !INTEGRATION_SOURCES.contains(&source.as_str()) {
        return Err(WebhookError::invalid("source", "must be WEBENGAGE or CUSTOM").into());
    }
    let till_code = body.till_code.trim();
    if till_code.is_empty() {
        return Err(WebhookError::invalid("tillCode", "is required").into());
    }
    let row = service::add_integration(
        &state.db,
        principal.org,
        &principal,
        &source,
        till_code,
        &base_url(&state, &headers),
        now_millis(),
    )
    .await?;
    Ok(axum::Json(json!({"webhookId": row.webhook_key, "webhookUrl": row.url,
        "warnings": [], "errors": []}))
    .into_response())
}
