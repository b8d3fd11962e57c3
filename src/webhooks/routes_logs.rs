//! Event notification logs (ENS): the deliveries of events to webhooks ("consumer groups"), by
//! API request id, by reference id, by event id, and per webhook. Read on the Events resource.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{DeliveryStatus, SubscriptionId, WebhookError};
use super::service;
use super::store::{AttemptRow, DeliveryRow, LogFilter, LogSort};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::error::ApiError;
use crate::http::envelope::v2_list;
use crate::http::extract::{Path, Query};

/// Default and largest page size of the logs.
const LIMIT_DEFAULT: i64 = 10;
const LIMIT_MAX: i64 = 100;
/// Largest `offset`: deeper pages should narrow the filters (by date, type or request) instead.
const OFFSET_MAX: i64 = 100_000;
/// Longest text filter value.
const FILTER_LENGTH_MAX: usize = 255;

/// Query parameters shared by the log endpoints.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsQuery {
    pub request_id: Option<String>,
    pub ref_id: Option<String>,
    pub event_type: Option<String>,
    /// The consumer-group endpoint's name for the reference id (the event's primary identifier).
    pub event_search_key: Option<String>,
    /// SUCCESS, RETRYING, PENDING or FAILED.
    pub delivery_status: Option<String>,
    /// Created at or after / before, epoch milliseconds.
    pub start_date: Option<i64>,
    pub end_date: Option<i64>,
    /// `<field>:asc|desc`; fields `createdAt` (default, desc), `webhookDuration`, `eventType`,
    /// `attempts`, `eventId`.
    pub sort_by: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

struct Page {
    filter: LogFilter,
    sort: LogSort,
    descending: bool,
    limit: i64,
    offset: i64,
}

fn text(field: &str, value: &Option<String>) -> Result<Option<String>, WebhookError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.chars().count() > FILTER_LENGTH_MAX => Err(WebhookError::invalid(
            field,
            format!("must be at most {FILTER_LENGTH_MAX} characters"),
        )),
        Some(v) => Ok(Some(v.to_string())),
    }
}

fn parse_sort(sort_by: Option<&str>) -> Result<(LogSort, bool), WebhookError> {
    let Some(sort_by) = sort_by.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok((LogSort::CreatedAt, true));
    };
    let (field, direction) = sort_by.split_once(':').unwrap_or((sort_by, "asc"));
    let sort = match field {
        "createdAt" => LogSort::CreatedAt,
        "webhookDuration" => LogSort::WebhookDuration,
        "eventType" => LogSort::EventType,
        "attempts" => LogSort::Attempts,
        "eventId" => LogSort::EventId,
        _ => {
            return Err(WebhookError::invalid(
                "sortBy",
                "field must be createdAt, webhookDuration, eventType, attempts or eventId",
            ));
        }
    };
    let descending = match direction.to_ascii_lowercase().as_str() {
        "asc" => false,
        "desc" => true,
        _ => return Err(WebhookError::invalid("sortBy", "direction must be asc or desc")),
    };
    Ok((sort, descending))
}

impl LogsQuery {
    fn page(&self) -> Result<Page, WebhookError> {
        let limit = self.limit.unwrap_or(LIMIT_DEFAULT);
        if !(1..=LIMIT_MAX).contains(&limit) {
            return Err(WebhookError::invalid("limit", format!("must be 1 to {LIMIT_MAX}")));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=OFFSET_MAX).contains(&offset) {
            return Err(WebhookError::invalid("offset", format!("must be 0 to {OFFSET_MAX}")));
        }
        let status = match text("deliveryStatus", &self.delivery_status)? {
            None => None,
            Some(s) => Some(DeliveryStatus::from_log_status(&s).ok_or_else(|| {
                WebhookError::invalid(
                    "deliveryStatus",
                    "must be SUCCESS, RETRYING, PENDING or FAILED",
                )
            })?),
        };
        let ref_id =
            match (text("refId", &self.ref_id)?, text("eventSearchKey", &self.event_search_key)?) {
                (Some(a), Some(b)) if a != b => {
                    return Err(WebhookError::invalid(
                        "eventSearchKey",
                        "differs from refId: give one of them",
                    ));
                }
                (a, b) => a.or(b),
            };
        let (sort, descending) = parse_sort(self.sort_by.as_deref())?;
        let filter = LogFilter {
            request_id: text("requestId", &self.request_id)?,
            ref_id,
            event_type: text("eventType", &self.event_type)?,
            status,
            created_from: self.start_date,
            created_to: self.end_date,
            ..LogFilter::default()
        };
        Ok(Page { filter, sort, descending, limit, offset })
    }
}

/// One delivery in the logs' shape (instants in epoch milliseconds).
fn log_json(row: &DeliveryRow) -> Value {
    let status = DeliveryStatus::parse(&row.status).unwrap_or(DeliveryStatus::Pending);
    let waiting = matches!(status, DeliveryStatus::Pending | DeliveryStatus::Failed);
    json!({
        "eventId": row.event_id,
        "eventType": row.event_type,
        "requestId": row.request_id,
        "refId": row.ref_id,
        "webhookId": row.subscription_id,
        "consumerGroupId": row.subscription_id,
        "deliveryStatus": status.log_status(),
        "httpStatus": row.last_http_status,
        "attempts": row.attempts,
        "webhookDuration": row.last_duration_ms,
        "lastError": row.last_error,
        "nextAttemptAt": waiting.then_some(row.next_attempt_at),
        "deliveredAt": row.delivered_at,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    })
}

fn attempt_json(row: &AttemptRow) -> Value {
    json!({"attempt": row.attempt, "startedAt": row.started_at, "durationMs": row.duration_ms,
        "httpStatus": row.http_status, "error": row.error, "outcome": row.outcome})
}

async fn page_response(
    state: &AppState,
    principal: &Principal,
    page: Page,
) -> Result<Response, ApiError> {
    let (rows, total) = service::logs(
        &state.db,
        principal.org,
        &page.filter,
        page.sort,
        page.descending,
        page.limit,
        page.offset,
    )
    .await?;
    let data: Vec<Value> = rows.iter().map(log_json).collect();
    Ok(v2_list(data, page.limit, page.offset, total))
}

/// `GET /v3/events/logs` — deliveries by `requestId` (the API request that raised the events) or
/// `refId` (the id of the entity they are about), newest first, paginated.
#[utoipa::path(get, path = "/v3/events/logs", tag = "events",
    params(("requestId" = Option<String>, Query, description = "API request id (X-Request-Id of the request that raised the events)"),
        ("refId" = Option<String>, Query, description = "Id of the entity the events are about"),
        ("eventType" = Option<String>, Query, description = "Event type, e.g. customer.created"),
        ("deliveryStatus" = Option<String>, Query, description = "SUCCESS | RETRYING | PENDING | FAILED"),
        ("sortBy" = Option<String>, Query, description = "field:asc|desc"),
        ("limit" = Option<i64>, Query, description = "1-100, default 10"),
        ("offset" = Option<i64>, Query, description = "records to skip")),
    responses((status = 200, description = "pagination, data: [{eventId, eventType, requestId, refId, webhookId, deliveryStatus, httpStatus, attempts, webhookDuration, createdAt}]"),
        (status = 400, description = "Invalid filter, sort or page"),
        (status = 403, description = "Events read permission is required")))]
pub async fn logs(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let page = query.page()?;
    page_response(&state, &principal, page).await
}

/// `GET /v3/events/logs/{eventId}` — the deliveries of one event, one per webhook, each with its
/// attempts.
#[utoipa::path(get, path = "/v3/events/logs/{eventId}", tag = "events",
    params(("eventId" = i64, Path, description = "Event id (the X-Perks-Event-Id of deliveries)")),
    responses((status = 200, description = "data: deliveries with attemptLog"),
        (status = 403, description = "Events read permission is required"),
        (status = 404, description = "No such event in the org")))]
pub async fn event_log(
    State(state): State<AppState>,
    principal: Principal,
    Path(event_id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let rows = service::event_logs(&state.db, principal.org, event_id).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|(row, attempts)| {
            let mut value = log_json(row);
            value["attemptLog"] = attempts.iter().map(attempt_json).collect();
            value
        })
        .collect();
    let total = data.len() as i64;
    Ok(v2_list(data, total, 0, total))
}

/// `GET /v3/events/consumer-groups/{id}/logs` — one webhook's deliveries; filters `eventType`,
/// `eventSearchKey`, `requestId`, `deliveryStatus`, `startDate`/`endDate`; `sortBy`; paginated.
#[utoipa::path(get, path = "/v3/events/consumer-groups/{id}/logs", tag = "events",
    params(("id" = i64, Path, description = "Webhook (consumer group) id"),
        ("eventType" = Option<String>, Query, description = "Event type"),
        ("eventSearchKey" = Option<String>, Query, description = "Id of the entity the event is about"),
        ("requestId" = Option<String>, Query, description = "API request id"),
        ("deliveryStatus" = Option<String>, Query, description = "SUCCESS | RETRYING | PENDING | FAILED"),
        ("startDate" = Option<i64>, Query, description = "Created from, epoch ms"),
        ("endDate" = Option<i64>, Query, description = "Created until, epoch ms"),
        ("sortBy" = Option<String>, Query, description = "field:asc|desc, e.g. webhookDuration:desc"),
        ("limit" = Option<i64>, Query, description = "1-100, default 10"),
        ("offset" = Option<i64>, Query, description = "records to skip")),
    responses((status = 200, description = "pagination, data: the webhook's deliveries"),
        (status = 400, description = "Invalid filter, sort or page"),
        (status = 403, description = "Events read permission is required"),
        (status = 404, description = "No such webhook in the org")))]
pub async fn consumer_group_logs(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Events, Level::Read)?;
    let mut page = query.page()?;
    service::get(&state.db, principal.org, SubscriptionId(id)).await?;
    page.filter.subscription_id = Some(id);
    page_response(&state, &principal, page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_parses_field_and_direction() {
        assert_eq!(parse_sort(None).unwrap(), (LogSort::CreatedAt, true));
        assert_eq!(
            parse_sort(Some("webhookDuration:desc")).unwrap(),
            (LogSort::WebhookDuration, true)
        );
        assert_eq!(parse_sort(Some("eventType")).unwrap(), (LogSort::EventType, false));
        assert!(parse_sort(Some("payload:asc")).is_err());
        assert!(parse_sort(Some("eventId:sideways")).is_err());
    }
}
