//! Audit log handlers: `GET /v2/auditLog/get` (an entity's changes, filtered, sorted, paged) and
//! `GET /v2/events/audit_logs` (a behavioral event definition's changes by event name).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::service::{
    self, EntityLogQuery, PAGE_DEFAULT, PAGE_MAX, changed_fields, parse_reference_type,
    reference_type, source_of, updated_type,
};
use super::store::AuditEntry;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::error::ApiError;
use crate::http::extract::Query;
use crate::transactions::time::{iso_in, local_to_millis};

/// Longest entity type, source and event name accepted.
const NAME_MAX: usize = 100;
/// Highest page number accepted (pages beyond hold nothing anyway).
const PAGE_NUMBER_MAX: i64 = 1_000_000;

/// Query of `GET /v2/auditLog/get`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct EntityLogParams {
    /// `CUSTOMER`, `CARD`, or any other audited entity type (`TRANSACTION`, `MESSAGE`, …).
    entity_type: Option<String>,
    entity_id: Option<String>,
    /// `INSTORE` (tills), `API` (OAuth clients), `ADMIN` or `SYSTEM`.
    source: Option<String>,
    /// Page size, 1 to 100 (default 10).
    limit: Option<i64>,
    /// Page number from 0.
    page_no: Option<i64>,
    /// `autoUpdateTime` (default) or `id`.
    sort_by: Option<String>,
    /// `ASC` or `DESC` (default).
    sort_order: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS` in the org's time zone, inclusive.
    start_date: Option<String>,
    end_date: Option<String>,
    /// `StandardField`, `Identifier`, `CustomerStatus`, `Subscription`, …
    reference_type: Option<String>,
}

async fn org_zone(state: &AppState, principal: &Principal) -> Result<Tz, ApiError> {
    let mut conn = state.db.read().await?;
    Ok(crate::org::store::get_org(&mut conn, principal.org)
        .await?
        .and_then(|o| o.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC))
}

fn parse_time(field: &str, value: Option<&str>, tz: Tz) -> Result<Option<i64>, ApiError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let local = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| ApiError::invalid(format!("{field} must be YYYY-MM-DD HH:MM:SS")))?;
    Ok(Some(local_to_millis(local, tz)))
}

fn parse_entity_query(p: &EntityLogParams, tz: Tz) -> Result<EntityLogQuery, ApiError> {
    let entity_type = p
        .entity_type
        .as_deref()
        .map(|t| t.trim().to_ascii_uppercase())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("entityType is required (CUSTOMER or CARD)"))?;
    let well_formed = entity_type.len() <= NAME_MAX
        && entity_type.starts_with(|c: char| c.is_ascii_alphabetic())
        && entity_type.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err(ApiError::invalid(format!("entityType '{entity_type}' is not an entity type")));
    }
    let entity_id = p
        .entity_id
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("entityId is required"))?
        .parse::<i64>()
        .map_err(|_| ApiError::invalid("entityId must be a number"))?;
    let source = match p.source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s)
            if s.len() > NAME_MAX || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            return Err(ApiError::invalid("source must be a source name such as INSTORE"));
        }
        other => other.map(str::to_string),
    };
    let reference = p
        .reference_type
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .map(parse_reference_type)
        .transpose()
        .map_err(ApiError::invalid)?;
    let limit = p.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {PAGE_MAX}")));
    }
    let page = p.page_no.unwrap_or(0);
    if !(0..=PAGE_NUMBER_MAX).contains(&page) {
        return Err(ApiError::invalid(format!("pageNo must be 0 to {PAGE_NUMBER_MAX}")));
    }
    let by_time = match p.sort_by.as_deref().map(str::trim) {
        None | Some("") => true,
        Some(s) if s.eq_ignore_ascii_case("autoUpdateTime") => true,
        Some(s) if s.eq_ignore_ascii_case("id") => false,
        Some(_) => return Err(ApiError::invalid("sortBy must be autoUpdateTime or id")),
    };
    let ascending = match p.sort_order.as_deref().map(|s| s.trim().to_ascii_uppercase()).as_deref()
    {
        None | Some("") | Some("DESC") => false,
        Some("ASC") => true,
        Some(_) => return Err(ApiError::invalid("sortOrder must be ASC or DESC")),
    };
    let from = parse_time("startDate", p.start_date.as_deref(), tz)?;
    let to = parse_time("endDate", p.end_date.as_deref(), tz)?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::invalid("startDate must not be after endDate"));
    }
    Ok(EntityLogQuery {
        entity_type,
        entity_id,
        source,
        reference,
        from,
        to,
        by_time,
        ascending,
        limit,
        page,
    })
}

fn state_json(stored: Option<&str>) -> Option<Value> {
    stored.map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())))
}

fn changed_by(r: &AuditEntry) -> String {
    match r.principal_id {
        Some(id) => format!("{}:{id}", r.principal_type),
        None => r.principal_type.clone(),
    }
}

fn entry_json(r: &AuditEntry, tz: Tz) -> Value {
    let old = state_json(r.before_state.as_deref());
    let new = state_json(r.after_state.as_deref());
    json!({
        "id": r.id,
        "entityType": r.entity_type,
        "entityId": r.entity_id,
        "referenceType": reference_type(&r.action),
        "action": r.action,
        "fieldName": changed_fields(old.as_ref(), new.as_ref()).join(","),
        "oldValue": old,
        "newValue": new,
        "changedBy": changed_by(r),
        "source": source_of(&r.principal_type),
        "requestId": r.request_id,
        "autoUpdateTime": iso_in(r.occurred_at, tz),
    })
}

/// `GET /v2/auditLog/get` — the changes made to one entity, newest first by default.
#[utoipa::path(get, path = "/v2/auditLog/get", tag = "audit", params(EntityLogParams),
    responses((status = 200, description = "data[] {entityType, entityId, referenceType, fieldName, oldValue, newValue, changedBy, source, autoUpdateTime}, pagination"),
        (status = 400, description = "Missing or bad entityType/entityId, bad filter, sort or page"),
        (status = 403, description = "No Audit read permission")))]
pub async fn entity_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<EntityLogParams>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Audit, Level::Read)?;
    let tz = org_zone(&state, &principal).await?;
    let query = parse_entity_query(&params, tz)?;
    let mut conn = state.db.read().await?;
    let (rows, total) = service::entity_log(&mut conn, principal.org, &query).await?;
    let data: Vec<Value> = rows.iter().map(|r| entry_json(r, tz)).collect();
    Ok(axum::Json(json!({
        "data": data,
        "pagination": {"limit": query.limit, "pageNo": query.page, "total": total},
        "warnings": [],
        "errors": [],
    }))
    .into_response())
}

/// Query of `GET /v2/events/audit_logs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct EventLogParams {
    /// The behavioral event's name.
    event_name: Option<String>,
    /// `json` (the only format).
    format: Option<String>,
}

/// `GET /v2/events/audit_logs?eventName=` — the changes made to a behavioral event definition,
/// newest first (not paginated; at most 1000).
#[utoipa::path(get, path = "/v2/events/audit_logs", tag = "audit", params(EventLogParams),
    responses((status = 200, description = "data[] {id, orgId, valueHistory[{value, changedOn}], updatedType, requestId, eventName}"),
        (status = 400, description = "Missing or bad eventName"),
        (status = 403, description = "No Audit read permission")))]
pub async fn event_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<EventLogParams>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Audit, Level::Read)?;
    if let Some(format) = params.format.as_deref()
        && !format.trim().eq_ignore_ascii_case("json")
    {
        return Err(ApiError::invalid("format must be json"));
    }
    let name = params
        .event_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("eventName is required"))?;
    if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!("eventName must be at most {NAME_MAX} characters")));
    }
    let tz = org_zone(&state, &principal).await?;
    let mut conn = state.db.read().await?;
    let rows = service::event_log(&mut conn, principal.org, name).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let value = state_json(r.after_state.as_deref().or(r.before_state.as_deref()));
            json!({
                "id": r.id,
                "orgId": principal.org.0,
                "valueHistory": [{"value": value, "changedOn": iso_in(r.occurred_at, tz)}],
                "updatedType": updated_type(&r.action),
                "requestId": r.request_id,
                "eventName": name,
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}
