//! Behavioral event handlers and wire shapes: define, update, list, describe and disable events;
//! post an event; read events back by request id, by customer, as logs and through search; and
//! the running status.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use super::check::{canonical_number, parse_instant};
use super::model::{
    BehavioralError, CustomerKey, DefinitionBody, EVENT_NAME_KEY, EVENTS_PER_REQUEST_MAX,
    EventDefinition, NAME_LENGTH_MAX, PAYLOAD_BYTES_MAX, PAYLOAD_KEYS_MAX, Page,
    REQUEST_ID_LENGTH_MAX, SEARCH_ATTRIBUTE_FILTERS_MAX, TEXT_VALUE_LENGTH_MAX,
    WEBHOOK_ID_LENGTH_MAX, parse_event_name, parse_token,
};
use super::service::{self, PostInput};
use super::store::{EventFilter, EventRow, Order};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::{CustomerError, CustomerId, Identifier, SourceAccount};
use crate::customers::routes_v2::country_code;
use crate::customers::service::{Warning, resolve};
use crate::db::Connection;
use crate::error::ApiError;
use crate::http::envelope::v2_list;
use crate::http::extract::{Json, Path, Query};
use crate::org::model::OrgId;
use crate::transactions::time::iso_in;

/// Warning code of a disable that changed nothing (the event was already disabled).
pub const WARNING_ALREADY_DISABLED: u32 = 1812;

// ---------------------------------------------------------------- definitions

/// `POST /v2/events` — creates a custom event: `eventName`, `actions`, `description`, typed
/// `fields`. Answers `createdId` (the event id) and the event's `clickEventsMeta`.
#[utoipa::path(post, path = "/v2/events", tag = "behavioral events", request_body = DefinitionBody,
    responses((status = 200, description = "createdId, clickEventsMeta, warnings"),
        (status = 400, description = "1806 exists, 1810 actions, 1811 name, 1823 field type, \
            1802 isRequired, 400 other field rules")))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<DefinitionBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Write)?;
    let def = EventDefinition::parse(&body)?;
    let view = service::create_event(&state.db, &principal, &def).await?;
    Ok(axum::Json(json!({
        "createdId": view.row.event_id,
        "clickEventsMeta": view.meta(principal.org),
        "warnings": [],
    }))
    .into_response())
}

/// `PUT /v2/events` — replaces an event's description, actions and fields (the whole payload is
/// resent); the event is named by `eventName`.
#[utoipa::path(put, path = "/v2/events", tag = "behavioral events", request_body = DefinitionBody,
    responses((status = 200, description = "clickEventsMeta, warnings"),
        (status = 400, description = "Invalid definition"), (status = 404, description = "Unknown event")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<DefinitionBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Write)?;
    let def = EventDefinition::parse(&body)?;
    let view = service::update_event(&state.db, &principal, &def).await?;
    Ok(axum::Json(json!({"clickEventsMeta": view.meta(principal.org), "warnings": []}))
        .into_response())
}

/// `GET /v2/events` — every event the org defined (not paginated; at most 1000).
#[utoipa::path(get, path = "/v2/events", tag = "behavioral events",
    responses((status = 200, description = "data: [{clickEventsMeta}]")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let mut conn = state.db.read().await?;
    let views = service::org_events(&mut conn, principal.org).await?;
    let data: Vec<Value> =
        views.iter().map(|v| json!({"clickEventsMeta": v.meta(principal.org)})).collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// Query naming one event: `event_name` (also `eventName`).
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventNameQuery {
    /// Name of the event (required).
    event_name: Option<String>,
    #[serde(rename = "eventName")]
    #[param(rename = "eventName")]
    event_name_alias: Option<String>,
}

impl EventNameQuery {
    fn name(&self) -> Result<String, BehavioralError> {
        let raw = self.event_name.as_deref().or(self.event_name_alias.as_deref());
        if raw.is_none_or(|r| r.trim().is_empty()) {
            return Err(BehavioralError::Invalid("event_name is required".into()));
        }
        parse_event_name(raw)
            .map_err(|_| BehavioralError::UnknownEvent(raw.unwrap_or_default().trim().to_string()))
    }
}

/// `GET /v2/events/meta?event_name=` — one event's definition.
#[utoipa::path(get, path = "/v2/events/meta", tag = "behavioral events", params(EventNameQuery),
    responses((status = 200, description = "clickEventsMeta, transformerMappings, warnings"),
        (status = 404, description = "Unknown event")))]
pub async fn meta(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<EventNameQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let name = q.name()?;
    let mut conn = state.db.read().await?;
    let view = service::event_meta(&mut conn, principal.org, &name).await?;
    Ok(axum::Json(json!({
        "clickEventsMeta": view.meta(principal.org),
        "transformerMappings": {"defaultTransformerMapping": null, "webEngageTransformerMapping": null},
        "warnings": [],
    }))
    .into_response())
}

/// `PUT /v2/events/disable?event_name=` — the event stops accepting posts (1812).
#[utoipa::path(put, path = "/v2/events/disable", tag = "behavioral events", params(EventNameQuery),
    responses((status = 200, description = "clickEventsMeta (status DISABLED), warnings"),
        (status = 404, description = "Unknown event")))]
pub async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<EventNameQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Write)?;
    let name = q.name()?;
    let (view, changed) = service::disable_event(&state.db, &principal, &name).await?;
    let warnings = if changed {
        Vec::new()
    } else {
        vec![Warning::new(WARNING_ALREADY_DISABLED, format!("Event '{name}' is already disabled"))]
    };
    Ok(axum::Json(json!({"clickEventsMeta": view.meta(principal.org), "warnings": warnings}))
        .into_response())
}

/// Query of `GET /v2/events/running_status`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct RunningQuery {
    /// A posted event's `eventId`: answers its processing states. Without it, every event's
    /// status and latest post.
    event_id: Option<String>,
}

/// `GET /v2/events/running_status` — with `eventId`, the processing states of one posted event;
/// without, each event's status (RUNNING or STOPPED) and when it last received a post.
#[utoipa::path(get, path = "/v2/events/running_status", tag = "behavioral events", params(RunningQuery),
    responses((status = 200, description = "{id, orgId, stateList, eventName} or data: [{eventName, status, lastReceivedOn}]"),
        (status = 404, description = "Unknown eventId")))]
pub async fn running_status(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<RunningQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let org = principal.org;
    let mut conn = state.db.read().await?;
    let tz = service::org_zone(&mut conn, org).await?;
    if let Some(event_id) = q.event_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let row = service::event_by_id(&mut conn, org, event_id).await?;
        let states: Vec<Value> = serde_json::from_str::<Vec<Value>>(&row.states)
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                json!({
                    "message": s["message"],
                    "date": iso_in(s["date"].as_i64().unwrap_or(row.received_at), tz),
                    "status": s["status"],
                })
            })
            .collect();
        return Ok(axum::Json(json!({
            "id": row.event_id,
            "orgId": org.0,
            "stateList": states,
            "eventName": row.event_name,
            "warnings": [],
        }))
        .into_response());
    }
    let rows = service::running(&mut conn, org).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "eventName": r.name,
                "status": if r.is_active { "RUNNING" } else { "STOPPED" },
                "lastReceivedOn": r.last_received_at.map(|t| iso_in(t, tz)),
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

// ---------------------------------------------------------------- posting

/// Query of `POST /v2/events/event_data`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct PostQuery {
    /// The integration (webhook) the event came through, stored with it.
    webhook_id: Option<String>,
}

/// The request id of a post: `X-CAP-REQUEST-ID` (1–128 visible characters, else 400), else the
/// request's own id, else a new one.
fn post_request_id(headers: &HeaderMap, principal: &Principal) -> Result<String, BehavioralError> {
    if let Some(value) = headers.get("x-cap-request-id") {
        let text = value.to_str().unwrap_or_default();
        return parse_token("X-CAP-REQUEST-ID", text, REQUEST_ID_LENGTH_MAX);
    }
    let own = principal
        .request_id
        .as_deref()
        .and_then(|id| parse_token("x-request-id", id, REQUEST_ID_LENGTH_MAX).ok());
    Ok(own.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()))
}

/// `POST /v2/events/event_data` — posts an event: the flat JSON of its attributes with
/// `event_name`, optional `external_event_id` and `eventDateTime`. This is the URL an
/// integration's `webhookUrl` points at. Answers `{status{code, message}, requestId, eventId}`.
#[utoipa::path(post, path = "/v2/events/event_data", tag = "behavioral events", params(PostQuery),
    request_body(content = Object, description = "event_name, the event's fields, external_event_id, eventDateTime"),
    responses((status = 200, description = "status{code, message}, requestId, eventId, isDuplicate"),
        (status = 400, description = "1811 no event_name, 1812 disabled, 1802 mandatory field missing, \
            400 wrong type or unknown attribute, 671 unknown till code"),
        (status = 404, description = "Unknown event (404) or customer (8015)"),
        (status = 413, description = "Event larger than 64 KiB")))]
pub async fn post_event(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<PostQuery>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let started_at = std::time::Instant::now();
    principal.require(Resource::Events, Level::Write)?;
    let Value::Object(map) = body else {
        return Err(BehavioralError::Invalid("The event must be a JSON object".into()).into());
    };
    let size = serde_json::to_vec(&map).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > PAYLOAD_BYTES_MAX {
        return Err(BehavioralError::TooLarge(format!(
            "An event may be at most {PAYLOAD_BYTES_MAX} bytes"
        ))
        .into());
    }
    if map.len() > PAYLOAD_KEYS_MAX {
        return Err(BehavioralError::Invalid(format!(
            "An event carries at most {PAYLOAD_KEYS_MAX} attributes"
        ))
        .into());
    }
    let event_name = match map.get(EVENT_NAME_KEY) {
        Some(Value::String(name)) => parse_event_name(Some(name))?,
        _ => {
            return Err(BehavioralError::InvalidEventName(
                "event_name is required and must be text".into(),
            )
            .into());
        }
    };
    let webhook_id = q
        .webhook_id
        .as_deref()
        .map(|w| parse_token("webhookId", w, WEBHOOK_ID_LENGTH_MAX))
        .transpose()?;
    let input = PostInput {
        event_name,
        body: map,
        request_id: post_request_id(&headers, &principal)?,
        webhook_id,
        country_code: country_code(&headers),
        started_at,
    };
    let outcome = service::post_event(&state.db, &principal, &input).await?;
    Ok(axum::Json(json!({
        "status": {"code": 200, "message": outcome.message},
        "requestId": outcome.request_id,
        "eventId": outcome.event_id,
        "isDuplicate": outcome.is_duplicate,
        "warnings": [],
    }))
    .into_response())
}

// ---------------------------------------------------------------- reads

/// How a read shows `date`: ISO-8601 in the org's zone, or epoch milliseconds (search).
#[derive(Clone, Copy, PartialEq, Eq)]
enum DateStyle {
    Iso,
    Epoch,
}

fn event_json(row: &EventRow, org: OrgId, tz: Tz, style: DateStyle, side_effects: bool) -> Value {
    let mut attributes: Map<String, Value> =
        serde_json::from_str(&row.attributes).unwrap_or_default();
    if let Some(external) = &row.external_event_id {
        attributes.insert("external_event_id".into(), Value::String(external.clone()));
    }
    attributes.insert("accountId".into(), Value::String(row.account_id.clone()));
    attributes.insert("isDuplicate".into(), Value::Bool(row.is_duplicate));
    attributes.insert("eventDateTime".into(), Value::from(row.event_at));
    let psi: Map<String, Value> = serde_json::from_str(&row.psi_attributes).unwrap_or_default();
    let date = match style {
        DateStyle::Iso => Value::String(iso_in(row.received_at, tz)),
        DateStyle::Epoch => Value::from(row.received_at),
    };
    let mut item = json!({
        "orgId": org.0,
        "userId": row.customer_id,
        "date": date,
        "eventName": row.event_name,
        "eventId": row.event_id,
        "requestId": row.request_id,
        "source": row.source,
        "tillCode": row.till_code,
        "displayName": row.event_name,
        "additonalAttributes": attributes,
        "psiAttributes": psi,
    });
    if side_effects {
        item["clickEventSideEffects"] = json!({"requestId": row.request_id, "sideEffects": []});
    }
    item
}

/// Query of `GET /v2/events/event_data`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventDataQuery {
    /// The `requestId` a post answered (required).
    id: Option<String>,
}

/// `POST /v2/events/webhook/{webhookId}` — posts an event through the integration that
/// `POST /v2/events/webhook` registered (the `webhookUrl` it answered): the same checks and
/// answer as Post Event, with the integration's id stored on the event. An id of another org, or
/// of no integration, is 404.
#[utoipa::path(post, path = "/v2/events/webhook/{webhookId}", tag = "behavioral events",
    params(("webhookId" = String, Path, description = "The integration's webhook id")),
    responses((status = 200, description = "As Post Event"), (status = 404, description = "No such integration")))]
pub async fn post_through_webhook(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(key): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Write)?;
    let mut conn = state.db.read().await?;
    let integration = crate::webhooks::store::find_inbound(&mut conn, &key)
        .await?
        .filter(|s| s.org_id == principal.org.0);
    drop(conn);
    if integration.is_none() {
        return Err(ApiError::not_found("No such webhook"));
    }
    post_event(
        State(state),
        principal,
        headers,
        Query(PostQuery { webhook_id: Some(key) }),
        Json(body),
    )
    .await
}

/// `GET /v2/events/event_data?id={requestId}` — the events posted under one request id.
#[utoipa::path(get, path = "/v2/events/event_data", tag = "behavioral events", params(EventDataQuery),
    responses((status = 200, description = "data: the events (empty when none)"),
        (status = 400, description = "id missing")))]
pub async fn event_data(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<EventDataQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let id = parse_token("id", q.id.as_deref().unwrap_or_default(), REQUEST_ID_LENGTH_MAX)?;
    let mut conn = state.db.read().await?;
    let tz = service::org_zone(&mut conn, principal.org).await?;
    let rows =
        service::events_by_request(&mut conn, principal.org, &id, EVENTS_PER_REQUEST_MAX).await?;
    let data: Vec<Value> =
        rows.iter().map(|r| event_json(r, principal.org, tz, DateStyle::Iso, false)).collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

fn parse_order(raw: Option<&str>) -> Result<Order, BehavioralError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Order::EventTimeDesc),
        Some(s) if s.eq_ignore_ascii_case("desc") => Ok(Order::EventTimeDesc),
        Some(s) if s.eq_ignore_ascii_case("asc") => Ok(Order::EventTimeAsc),
        Some(_) => Err(BehavioralError::Invalid("sortOrder must be asc or desc".into())),
    }
}

fn parse_flag(name: &str, raw: Option<&str>) -> Result<Option<bool>, BehavioralError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(BehavioralError::Invalid(format!("{name} must be true or false"))),
    }
}

/// A date bound: epoch milliseconds, RFC 3339, or a date-time / date in the org's zone; a bare
/// date as an upper bound means the end of that day.
fn parse_bound(
    name: &str,
    raw: Option<&str>,
    tz: Tz,
    upper: bool,
) -> Result<Option<i64>, BehavioralError> {
    let Some(text) = raw.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(Some(millis));
    }
    let millis = parse_instant(&Value::String(text.to_string()), tz).ok_or_else(|| {
        BehavioralError::Invalid(format!(
            "{name} must be a date-time such as 2024-03-19T15:31:28 (org time zone), a date, \
             RFC 3339 or epoch milliseconds"
        ))
    })?;
    let bare_date = text.len() == 10;
    Ok(Some(if upper && bare_date { millis + 24 * 3600 * 1000 - 1 } else { millis }))
}

fn optional_event_name(raw: Option<&str>) -> Result<Option<String>, BehavioralError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(name) => parse_event_name(Some(name)).map(Some),
    }
}

/// Query of `GET /v2/events/event_data/{userId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct CustomerEventsQuery {
    /// Only events of this name.
    event_name: Option<String>,
    /// 1–100, default 10.
    limit: Option<String>,
    offset: Option<String>,
    /// `asc` or `desc` (default) by event time.
    sort_order: Option<String>,
}

/// `GET /v2/events/event_data/{userId}` — a customer's events, newest first, paged.
#[utoipa::path(get, path = "/v2/events/event_data/{userId}", tag = "behavioral events",
    params(("userId" = i64, Path, description = "Customer id"), CustomerEventsQuery),
    responses((status = 200, description = "pagination, data: the customer's events"),
        (status = 404, description = "8015 customer not found")))]
pub async fn customer_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Query(q): Query<CustomerEventsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let page = Page::parse(q.limit.as_deref(), q.offset.as_deref())?;
    let order = parse_order(q.sort_order.as_deref())?;
    let filter = EventFilter {
        event_name: optional_event_name(q.event_name.as_deref())?,
        customer: Some(CustomerId(user_id)),
        ..EventFilter::default()
    };
    let org = principal.org;
    let mut conn = state.db.read().await?;
    service::require_customer(&mut conn, org, CustomerId(user_id)).await?;
    let tz = service::org_zone(&mut conn, org).await?;
    let (rows, total) =
        service::list_events(&mut conn, org, &filter, order, page.limit, page.offset).await?;
    let data: Vec<Value> =
        rows.iter().map(|r| event_json(r, org, tz, DateStyle::Iso, false)).collect();
    Ok(v2_list(data, page.limit, page.offset, total))
}

/// Query of `GET /v2/events/logs`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogsQuery {
    /// Only events of this name.
    event_name: Option<String>,
    /// Receive-time bounds: date-time or date in the org's zone, RFC 3339 or epoch ms.
    from_date: Option<String>,
    to_date: Option<String>,
    /// 1–100, default 10.
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /v2/events/logs` — the log of accepted posts, newest first.
#[utoipa::path(get, path = "/v2/events/logs", tag = "behavioral events", params(LogsQuery),
    responses((status = 200, description = "data: [{startTime, responseTime, orgId, status, eventName, \
        inputRequest, id, requestId, webhookId, parentOrgId, message}]")))]
pub async fn logs(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let page = Page::parse(q.limit.as_deref(), q.offset.as_deref())?;
    let org = principal.org;
    let mut conn = state.db.read().await?;
    let tz = service::org_zone(&mut conn, org).await?;
    let filter = EventFilter {
        event_name: optional_event_name(q.event_name.as_deref())?,
        received_from: parse_bound("from_date", q.from_date.as_deref(), tz, false)?,
        received_till: parse_bound("to_date", q.to_date.as_deref(), tz, true)?,
        ..EventFilter::default()
    };
    let rows =
        service::page_events(&mut conn, org, &filter, Order::ReceivedDesc, page.limit, page.offset)
            .await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "startTime": r.received_at,
                "responseTime": r.response_ms,
                "orgId": org.0,
                "status": r.status,
                "eventName": r.event_name,
                "inputRequest": r.input_request,
                "id": r.event_id,
                "requestId": r.request_id,
                "webhookId": r.webhook_id,
                "parentOrgId": -1,
                "message": r.message,
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// Query of `GET /v2/events/search` (for the API document; any other parameter is an attribute
/// filter, e.g. `hotel_name=PalaceABC`). The handler reads the query as a map.
#[allow(dead_code)]
#[derive(Debug, IntoParams)]
#[into_params(rename_all = "camelCase")]
pub struct SearchParams {
    event_id: Option<String>,
    event_name: Option<String>,
    /// `userId`, `mobile`, `email`, `externalId` or another identifier type.
    user_identifier_type: Option<String>,
    user_identifier_value: Option<String>,
    /// Default INSTORE.
    user_identifier_source: Option<String>,
    user_identifier_account_id: Option<String>,
    /// Event-time bounds: ISO local date-time in the org's zone (e.g. 2024-03-19T15:31:28).
    from_date: Option<String>,
    till_date: Option<String>,
    /// 1–100, default 10.
    limit: Option<i64>,
    offset: Option<i64>,
    /// `asc` or `desc` (default) by event time.
    sort_order: Option<String>,
    include_side_effects: Option<bool>,
    /// true: duplicates only; false: originals only.
    is_duplicate: Option<bool>,
}

const SEARCH_KEYS: [&str; 15] = [
    "eventId",
    "eventName",
    "userIdentifierType",
    "userIdentifierValue",
    "userIdentifierSource",
    "userIdentifierAccountId",
    "userGroupIdentifierType",
    "userGroupIdentifierValue",
    "userGroupIdentifierSource",
    "userGroupIdentifierAccountId",
    "fromDate",
    "tillDate",
    "limit",
    "offset",
    "sortOrder",
];

/// The customer a search names by identifier; 8015 when there is none.
async fn search_customer(
    conn: &mut impl Connection,
    org: OrgId,
    q: &HashMap<String, String>,
    country: Option<&str>,
) -> Result<Option<CustomerId>, BehavioralError> {
    let get = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let (kind, value) = match (get("userIdentifierType"), get("userIdentifierValue")) {
        (None, None) => return Ok(None),
        (Some(kind), Some(value)) => (kind, value),
        _ => {
            return Err(BehavioralError::Invalid(
                "userIdentifierType and userIdentifierValue go together".into(),
            ));
        }
    };
    let key = CustomerKey::parse(kind).ok_or_else(|| {
        BehavioralError::Invalid(format!("userIdentifierType '{kind}' is not supported"))
    })?;
    match key {
        CustomerKey::UserId => {
            let id = value.parse::<i64>().map_err(|_| CustomerError::NotFound)?;
            service::require_customer(conn, org, CustomerId(id)).await?;
            Ok(Some(CustomerId(id)))
        }
        CustomerKey::Identifier(kind) => {
            let account =
                SourceAccount::parse(get("userIdentifierSource"), get("userIdentifierAccountId"))?;
            let identifier =
                Identifier::parse(kind, value, country).map_err(|_| CustomerError::NotFound)?;
            Ok(Some(resolve(conn, org, &account, &[identifier]).await?))
        }
    }
}

/// The attribute filters of a search: every parameter that is not a known one.
fn attribute_filters(
    q: &HashMap<String, String>,
) -> Result<Vec<(String, Vec<String>)>, BehavioralError> {
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    let mut names: Vec<&String> = q
        .keys()
        .filter(|k| {
            !SEARCH_KEYS.contains(&k.as_str())
                && k.as_str() != "includeSideEffects"
                && k.as_str() != "isDuplicate"
        })
        .collect();
    names.sort();
    if names.len() > SEARCH_ATTRIBUTE_FILTERS_MAX {
        return Err(BehavioralError::Invalid(format!(
            "A search takes at most {SEARCH_ATTRIBUTE_FILTERS_MAX} attribute filters"
        )));
    }
    for name in names {
        let value = q.get(name).map(String::as_str).unwrap_or_default();
        let name_ok = !name.is_empty()
            && name.chars().count() <= NAME_LENGTH_MAX
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok || value.chars().count() > TEXT_VALUE_LENGTH_MAX {
            return Err(BehavioralError::Invalid(format!(
                "'{name}' is not a search parameter or a valid attribute filter"
            )));
        }
        let mut values = vec![value.to_string()];
        let trimmed = value.trim();
        let mut alternative = |v: String| {
            if !values.contains(&v) {
                values.push(v);
            }
        };
        alternative(trimmed.to_string());
        if let Ok(number) = trimmed.parse::<f64>()
            && number.is_finite()
        {
            alternative(canonical_number(number));
        }
        if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
            alternative(trimmed.to_ascii_lowercase());
        }
        filters.push((name.clone(), values));
    }
    Ok(filters)
}

/// `GET /v2/events/search` — events by date range, name, customer, event id, attribute values
/// and duplicate flag; sorted by event time; paged.
#[utoipa::path(get, path = "/v2/events/search", tag = "behavioral events", params(SearchParams),
    responses((status = 200, description = "pagination, data: the matching events"),
        (status = 400, description = "Bad parameter"), (status = 404, description = "8015 customer not found")))]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let get = |k: &str| q.get(k).map(String::as_str);
    if ["userGroupIdentifierType", "userGroupIdentifierValue"]
        .iter()
        .any(|k| get(k).is_some_and(|v| !v.trim().is_empty()))
    {
        return Err(BehavioralError::Invalid(
            "Searching by user group is not supported: Perks has no user groups yet".into(),
        )
        .into());
    }
    let page = Page::parse(get("limit"), get("offset"))?;
    let order = parse_order(get("sortOrder"))?;
    let side_effects =
        parse_flag("includeSideEffects", get("includeSideEffects"))?.unwrap_or(false);
    let is_duplicate = parse_flag("isDuplicate", get("isDuplicate"))?;
    let event_id = match get("eventId").map(str::trim).filter(|s| !s.is_empty()) {
        Some(id) => Some(parse_token("eventId", id, REQUEST_ID_LENGTH_MAX)?),
        None => None,
    };
    let attributes = attribute_filters(&q)?;
    let org = principal.org;
    let mut conn = state.db.read().await?;
    let tz = service::org_zone(&mut conn, org).await?;
    let customer = search_customer(&mut conn, org, &q, country_code(&headers).as_deref()).await?;
    let filter = EventFilter {
        event_name: optional_event_name(get("eventName"))?,
        event_id,
        customer,
        is_duplicate,
        event_from: parse_bound("fromDate", get("fromDate"), tz, false)?,
        event_till: parse_bound("tillDate", get("tillDate"), tz, true)?,
        attributes,
        ..EventFilter::default()
    };
    let (rows, total) =
        service::list_events(&mut conn, org, &filter, order, page.limit, page.offset).await?;
    let data: Vec<Value> =
        rows.iter().map(|r| event_json(r, org, tz, DateStyle::Epoch, side_effects)).collect();
    Ok(v2_list(data, page.limit, page.offset, total))
}
