//! v2 points operations: update a redemption, expiry and conversion schedules, convert promised
//! points, deduct points, change an award's expiry, issue points by hand, and goodwill requests.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::adjust::{self, Allocation, Conversion, Deduction, ExpiryChange, ExpiryReason};
use super::goodwill::{self, GoodwillRequest};
use super::model::Fixed;
use super::redemption::{self, PointsError, RedemptionUpdate};
use super::routes_v2::{customer_by_id, number};
use super::schedule::{self, HUNDRED_YEARS_MILLIS};
use super::store_ops::GoodwillFilter;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::{CustomerId, Identifier, IdentifierType};
use crate::customers::routes_v2::{LookupQuery, SourceFilter, country_code, customer_json};
use crate::db::{Connection, now_millis};
use crate::error::{ApiError, Code};
use crate::http::envelope::Enveloped;
use crate::http::extract::{Json, Path, Query};
use crate::org::model::OrgId;

/// Items of one `manualCurrencyAllocate` call at most (the spec's limit).
pub const ALLOCATIONS_MAX: usize = 10;
/// Items of one `updateExpiry` call at most.
pub const EXPIRY_UPDATES_MAX: usize = 100;
/// Goodwill requests per page at most.
const GOODWILL_PAGE_MAX: i64 = 100;
/// Longest free text kept (reasons, notes, purposes).
const TEXT_MAX: usize = 255;

// ------------------------------------------------------------------------------- helpers

/// The customer an identifier names in the caller's org (8015 otherwise). `source=ALL` looks in
/// every source account.
pub(crate) async fn resolve_customer(
    c: &mut impl Connection,
    org: OrgId,
    headers: &HeaderMap,
    source: Option<&str>,
    account: Option<&str>,
    name: Option<&str>,
    value: Option<&str>,
) -> Result<i64, ApiError> {
    let (Some(name), Some(value)) = (
        name.map(str::trim).filter(|n| !n.is_empty()),
        value.map(str::trim).filter(|v| !v.is_empty()),
    ) else {
        return Err(ApiError::with_message(
            Code::InvalidLookupIdentifier,
            "identifierName and identifierValue are required",
        ));
    };
    let name = match name.to_ascii_lowercase().as_str() {
        "customerid" | "primaryuserid" | "userid" | "user_id" => "id".to_string(),
        _ => name.to_string(),
    };
    let country = country_code(headers);
    if source.is_some_and(|s| s.trim().eq_ignore_ascii_case("ALL")) {
        if name.eq_ignore_ascii_case("id") {
            let id: i64 = value.parse().map_err(|_| ApiError::new(Code::CustomerNotFound))?;
            return customer_by_id(c, org, id).await;
        }
        let kind = IdentifierType::parse(&name)
            .ok_or_else(|| ApiError::with_message(Code::InvalidLookupIdentifier, name.clone()))?;
        let identifier = Identifier::parse(kind, value, country.as_deref())
            .map_err(|_| ApiError::new(Code::CustomerNotFound))?;
        let found = crate::customers::service::owners(c, org, None, &[identifier]).await?;
        return match found.as_slice() {
            [one] => Ok(one.0),
            _ => Err(ApiError::new(Code::CustomerNotFound)),
        };
    }
    let lookup = LookupQuery::new(
        source.map(str::to_string),
        account.map(str::to_string),
        Some(name),
        Some(value.to_string()),
    );
    let (customer, _) = lookup.resolve(c, org, country.as_deref()).await?;
    Ok(customer.0)
}

/// Text of a JSON value (strings as they are, numbers written out).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A positive whole number of points (801 otherwise).
fn whole_points(field: &Value) -> Result<Fixed, ApiError> {
    Ok(redemption::parse_points(number(Some(field)).ok_or(PointsError::InvalidPoints)?)?)
}

/// `YYYY-MM-DD`, or 400 naming the field.
fn day(field: &str, value: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(format!("{field} must be a date YYYY-MM-DD")))
}

fn bounded_text(field: &str, value: Option<&str>) -> Result<String, ApiError> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.chars().count() > TEXT_MAX {
        return Err(ApiError::invalid(format!("{field} must be at most {TEXT_MAX} characters")));
    }
    Ok(value.to_string())
}

fn warning(code: Code, message: impl Into<String>) -> Value {
    json!({"status": false, "code": code.info().code, "message": message.into()})
}

fn error_json(e: &ApiError) -> Value {
    json!({"status": false, "code": e.code.info().code, "message": e.message})
}

/// A bulk answer: HTTP 200 when every item succeeded, 201 when some failed, 400 when all
/// failed (the first failure also in `errors`); one result per item, in order.
fn bulk_reply(results: Vec<(bool, Value)>) -> Response {
    let ok = results.iter().filter(|(ok, _)| *ok).count();
    let first_error = results
        .iter()
        .find(|(ok, _)| !ok)
        .and_then(|(_, v)| v["errors"].get(0).cloned())
        .filter(|_| ok == 0);
    let status = if ok == results.len() {
        StatusCode::OK
    } else if ok == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::CREATED
    };
    let data: Vec<Value> = results.into_iter().map(|(_, v)| v).collect();
    let errors: Vec<Value> = first_error.into_iter().collect();
    let mut response =
        (status, axum::Json(json!({"data": data, "warnings": [], "errors": errors})))
            .into_response();
    response.extensions_mut().insert(Enveloped);
    response
}

/// An entity type other than `CUSTOMER`: groups answer 93026, fleets "not yet".
fn customer_entity(kind: Option<&str>) -> Result<(), ApiError> {
    match kind.map(|k| k.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("CUSTOMER") => Ok(()),
        Some("USERGROUP2") => Err(ApiError::with_message(
            Code::InvalidGroupDetails,
            "user groups are not supported yet: no group can be found",
        )),
        Some("FLEET") => Err(ApiError::with_message(
            Code::NotYetSupported,
            "fleet entities are not supported yet",
        )),
        Some(other) => Err(ApiError::invalid(format!("unknown entity type '{other}'"))),
    }
}

// ---------------------------------------------------------------------- update redemption

/// `entity` of an update-redemption body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedemptionEntity {
    #[serde(rename = "type")]
    kind: Option<String>,
    identifier_type: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
}

/// Body of `PUT /v2/points/updateRedemption`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRedemptionBody {
    #[schema(value_type = String)]
    redemption_id: Option<Value>,
    bill_number: Option<String>,
    #[schema(value_type = Option<i64>)]
    bill_id: Option<Value>,
    purpose: Option<String>,
    entity: Option<RedemptionEntity>,
    #[schema(value_type = Option<Object>)]
    custom_fields: Option<Map<String, Value>>,
}

/// `PUT /v2/points/updateRedemption` — changes a redemption's bill number, bill id, purpose and
/// custom fields (never its points).
#[utoipa::path(put, path = "/v2/points/updateRedemption", tag = "points", request_body = UpdateRedemptionBody,
    responses((status = 200, description = "Updated"), (status = 400, description = "Invalid field"), (status = 404, description = "814 redemption not found, 8015 customer not found")))]
pub async fn update_redemption(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<UpdateRedemptionBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let id = number(body.redemption_id.as_ref())
        .and_then(|d| d.to_i64())
        .ok_or_else(|| ApiError::invalid("redemptionId is required"))?;
    let bill_id = match body.bill_id.as_ref().filter(|v| !v.is_null()) {
        Some(v) => Some(
            number(Some(v))
                .filter(|d| d.fract().is_zero() && *d > Decimal::ZERO)
                .and_then(|d| d.to_i64())
                .ok_or_else(|| ApiError::invalid("billId must be a positive whole number"))?,
        ),
        None => None,
    };
    let purpose = match body.purpose.as_deref() {
        Some(p) => Some(bounded_text("purpose", Some(p))?),
        None => None,
    };
    let bill_number = match body.bill_number.as_deref() {
        Some(b) => Some(bounded_text("billNumber", Some(b))?),
        None => None,
    };
    if let Some(fields) = &body.custom_fields {
        if fields.len() > 50 {
            return Err(ApiError::invalid("customFields: at most 50 fields"));
        }
        if fields.values().any(|v| v.is_object() || v.is_array()) {
            return Err(ApiError::invalid("customFields values must be text, numbers or null"));
        }
    }
    let customer = {
        let mut conn = state.db.read().await?;
        let row = crate::points::store::get_redemption(&mut conn, principal.org, id)
            .await?
            .ok_or_else(|| ApiError::new(Code::RedemptionNotFound))?;
        match &body.entity {
            Some(entity) => {
                customer_entity(entity.kind.as_deref())?;
                resolve_customer(
                    &mut conn,
                    principal.org,
                    &headers,
                    entity.source.as_deref(),
                    entity.account_id.as_deref(),
                    entity.identifier_type.as_deref(),
                    entity.identifier_value.as_deref(),
                )
                .await?
            }
            None => row.customer_id,
        }
    };
    let update = RedemptionUpdate {
        bill_number,
        bill_id,
        purpose,
        custom_fields: body.custom_fields.clone(),
    };
    let row = redemption::update_redemption(
        &state.db,
        Some(&principal),
        principal.org,
        id,
        customer,
        &update,
        now_millis(),
    )
    .await?;
    let fields: Value = serde_json::from_str(&row.custom_fields).unwrap_or_else(|_| json!({}));
    Ok(axum::Json(json!({
        "createdId": row.id,
        "redemptionId": row.id,
        "customerId": row.customer_id,
        "points": Fixed(row.points).to_f64(),
        "billNumber": row.bill_number,
        "billId": row.bill_id,
        "purpose": row.purpose,
        "customFields": fields,
        "warnings": [],
    }))
    .into_response())
}

// ---------------------------------------------------------------------- expiry schedule

/// Query of the expiry schedule reads.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryScheduleQuery {
    source: Option<String>,
    account_id: Option<String>,
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    program_id: Option<i64>,
    fetch_data_for_all_programs: Option<bool>,
    fetch_earliest_expiry_only: Option<bool>,
    /// `YYYY-MM-DD` (org time zone).
    start_date: Option<String>,
    end_date: Option<String>,
}

/// The window of a schedule read: `[from, to]` in millis, from `YYYY-MM-DD` bounds (org time
/// zone); `from` defaults to now and `to` to a hundred years on.
async fn window(
    c: &mut impl Connection,
    org: OrgId,
    start: Option<&str>,
    end: Option<&str>,
    start_after_today: bool,
    now: i64,
) -> Result<(i64, i64, chrono_tz::Tz), ApiError> {
    let tz = adjust::org_zone(c, org).await?;
    let start = start.map(str::trim).filter(|s| !s.is_empty()).map(|s| day("startDate", s));
    let end = end.map(str::trim).filter(|s| !s.is_empty()).map(|s| day("endDate", s));
    let from = match start.transpose()? {
        Some(d) => {
            if start_after_today {
                let today = schedule::local_date(now, tz);
                if d.format("%Y-%m-%d").to_string() <= today {
                    return Err(ApiError::invalid("startDate must be tomorrow or later"));
                }
            }
            let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
            crate::transactions::time::local_to_millis(midnight, tz)
        }
        None => now,
    };
    let to = match end.transpose()? {
        Some(d) => adjust::end_of_local_day(d, tz)
            .ok_or_else(|| ApiError::invalid("endDate is out of range"))?,
        None => now.saturating_add(HUNDRED_YEARS_MILLIS),
    };
    if to < from {
        return Err(ApiError::invalid("endDate must not be before startDate"));
    }
    Ok((from, to, tz))
}

async fn expiry_schedule_of(
    state: &AppState,
    principal: &Principal,
    customer: i64,
    q: &ExpiryScheduleQuery,
    light: bool,
) -> Result<Response, ApiError> {
    let now = now_millis();
    let mut conn = state.db.read().await?;
    let (from, to, tz) = window(
        &mut conn,
        principal.org,
        q.start_date.as_deref(),
        q.end_date.as_deref(),
        light,
        now,
    )
    .await?;
    let programs = schedule::programs_for(
        &state.programs,
        &mut conn,
        principal.org,
        q.program_id,
        q.fetch_data_for_all_programs.unwrap_or(false),
    )
    .await?;
    // Lots expire after the instant `from`: a lot expiring exactly at it is already gone.
    let rows = schedule::expiry_schedule(
        &mut conn,
        principal.org,
        customer,
        &programs,
        from.max(now),
        to,
        q.fetch_earliest_expiry_only.unwrap_or(false),
        tz,
    )
    .await?;
    let view = crate::customers::service::load(&mut conn, principal.org, CustomerId(customer))
        .await?
        .ok_or_else(|| ApiError::new(Code::CustomerNotFound))?;
    let filter = if light {
        SourceFilter::parse(q.source.as_deref(), q.account_id.as_deref())?
    } else {
        SourceFilter::All
    };
    let mut body = customer_json(&mut conn, principal.org, &view, &filter, None).await?;
    body["expirySchedules"] = Value::Array(
        rows.iter()
            .map(|r| {
                json!({"points": r.points.to_f64(), "expiryDate": r.date,
                    "expiryDateISO": crate::transactions::time::iso_in(r.expires_at, tz),
                    "programId": r.program_id, "pointsType": r.points_type,
                    "expiryType": r.expiry_type})
            })
            .collect(),
    );
    Ok(axum::Json(body).into_response())
}

/// `GET /v2/customers/{id}/pointsExpirySchedule` — when the customer's points expire, per
/// program, points type, expiry type and day, soonest first, with the customer object.
#[utoipa::path(get, path = "/v2/customers/{id}/pointsExpirySchedule", tag = "points", params(ExpiryScheduleQuery),
    responses((status = 200, description = "The schedule"), (status = 400, description = "Bad dates; 1101 unknown program"), (status = 404, description = "8015 not found")))]
pub async fn expiry_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<ExpiryScheduleQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = {
        let mut conn = state.db.read().await?;
        customer_by_id(&mut conn, principal.org, id).await?
    };
    expiry_schedule_of(&state, &principal, customer, &q, false).await
}

/// `GET /v2/customers/lookup/pointsExpirySchedule` — the expiry schedule of the customer an
/// identifier names; `startDate` must be tomorrow or later.
#[utoipa::path(get, path = "/v2/customers/lookup/pointsExpirySchedule", tag = "points", params(ExpiryScheduleQuery),
    responses((status = 200, description = "The schedule"), (status = 400, description = "Bad dates; 1101 unknown program"), (status = 404, description = "8015 not found")))]
pub async fn lookup_expiry_schedule(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<ExpiryScheduleQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = {
        let mut conn = state.db.read().await?;
        resolve_customer(
            &mut conn,
            principal.org,
            &headers,
            q.source.as_deref(),
            q.account_id.as_deref(),
            q.identifier_name.as_deref(),
            q.identifier_value.as_deref(),
        )
        .await?
    };
    expiry_schedule_of(&state, &principal, customer, &q, true).await
}

// ------------------------------------------------------------------ conversion schedule

/// Query of the conversion schedule reads.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ConversionScheduleQuery {
    source: Option<String>,
    account_id: Option<String>,
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    program_id: Option<i64>,
    entity_type: Option<String>,
    fetch_data_for_all_programs: Option<bool>,
    start_date: Option<String>,
    end_date: Option<String>,
}

async fn conversion_schedule_of(
    state: &AppState,
    principal: &Principal,
    customer: i64,
    q: &ConversionScheduleQuery,
) -> Result<Response, ApiError> {
    customer_entity(q.entity_type.as_deref())?;
    let now = now_millis();
    let mut conn = state.db.read().await?;
    let (from, to, tz) = window(
        &mut conn,
        principal.org,
        q.start_date.as_deref(),
        q.end_date.as_deref(),
        false,
        now,
    )
    .await?;
    let programs = schedule::programs_for(
        &state.programs,
        &mut conn,
        principal.org,
        q.program_id,
        q.fetch_data_for_all_programs.unwrap_or(false),
    )
    .await?;
    let (dated, triggered) = schedule::conversion_schedule(
        &mut conn,
        principal.org,
        customer,
        &programs,
        from,
        to,
        now,
        tz,
    )
    .await?;
    let list: Vec<Value> = dated
        .iter()
        .map(|r| {
            json!({"points": r.points.to_f64(), "redeemableFrom": r.date,
                "redeemableFromISO": crate::transactions::time::iso_in(r.unlock_at, tz),
                "programId": r.program_id, "pointsType": r.points_type})
        })
        .collect();
    let triggers: Vec<Value> = triggered
        .iter()
        .map(|r| {
            json!({"points": r.points.to_f64(), "programId": r.program_id,
                "pointsType": r.points_type, "pointsAwardedId": r.lot_id,
                "eventName": if r.transaction_id.is_some() { "TransactionAdd" } else { "GenericEvent" },
                "eventReferenceId": r.transaction_id,
                "awardedOnISO": crate::transactions::time::iso_in(r.awarded_at, tz),
                "trigger": "EXTERNAL: converted by POST /v2/points/unlockPromisedPoints"})
        })
        .collect();
    Ok(axum::Json(json!({
        "entityId": customer,
        "entityType": "CUSTOMER",
        "promisedPointsScheduleList": list,
        "triggerBasedPointsList": triggers,
        "warnings": [],
    }))
    .into_response())
}

/// `GET /v2/customers/{id}/promisedPointsSchedule` — when the customer's promised points become
/// redeemable, per program, points type and day; points waiting for an external trigger apart.
#[utoipa::path(get, path = "/v2/customers/{id}/promisedPointsSchedule", tag = "points", params(ConversionScheduleQuery),
    responses((status = 200, description = "The schedule"), (status = 400, description = "Bad dates; 1101 unknown program"), (status = 404, description = "8015 not found")))]
pub async fn conversion_schedule(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<ConversionScheduleQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = {
        let mut conn = state.db.read().await?;
        customer_by_id(&mut conn, principal.org, id).await?
    };
    conversion_schedule_of(&state, &principal, customer, &q).await
}

/// `GET /v2/customers/lookup/promisedPointsSchedule` — the conversion schedule of the customer
/// an identifier names.
#[utoipa::path(get, path = "/v2/customers/lookup/promisedPointsSchedule", tag = "points", params(ConversionScheduleQuery),
    responses((status = 200, description = "The schedule"), (status = 404, description = "8015 not found")))]
pub async fn lookup_conversion_schedule(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<ConversionScheduleQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = {
        let mut conn = state.db.read().await?;
        resolve_customer(
            &mut conn,
            principal.org,
            &headers,
            q.source.as_deref(),
            q.account_id.as_deref(),
            q.identifier_name.as_deref(),
            q.identifier_value.as_deref(),
        )
        .await?
    };
    conversion_schedule_of(&state, &principal, customer, &q).await
}

// ------------------------------------------------------------- convert promised points

/// Query of `POST /v2/points/unlockPromisedPoints`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct UnlockQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Body of `POST /v2/points/unlockPromisedPoints`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnlockBody {
    event_name: Option<String>,
    bill_number: Option<String>,
    event_log_id: Option<i64>,
    line_item_ids: Option<Vec<i64>>,
    item_codes: Option<Vec<String>>,
    bill_date: Option<String>,
    source_store_id: Option<i64>,
    source_till_id: Option<i64>,
    source_program_id: Option<i64>,
}

/// `POST /v2/points/unlockPromisedPoints` — makes the promised points of an event (a bill, or
/// the reference of a promised manual allocation) redeemable now.
#[utoipa::path(post, path = "/v2/points/unlockPromisedPoints", tag = "points", params(UnlockQuery), request_body = UnlockBody,
    responses((status = 200, description = "Converted (a warning when nothing was promised)"), (status = 400, description = "Invalid input; 668 no such bill"), (status = 404, description = "8015 not found")))]
pub async fn unlock_promised(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<UnlockQuery>,
    Json(body): Json<UnlockBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    customer_entity(q.kind.as_deref())?;
    let event = body.event_name.as_deref().map(str::trim).unwrap_or_default();
    if !adjust::ALLOCATION_EVENTS.contains(&event) {
        return Err(ApiError::invalid(format!(
            "eventName must be one of {}",
            adjust::ALLOCATION_EVENTS.join(", ")
        )));
    }
    let bill_number = body
        .bill_number
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::invalid("billNumber is required"))?;
    if body.line_item_ids.as_ref().is_some_and(|l| l.len() > 1000)
        || body.item_codes.as_ref().is_some_and(|l| l.len() > 1000)
    {
        return Err(ApiError::invalid("at most 1000 lineItemIds and itemCodes"));
    }
    let _ = (&body.bill_date, body.source_store_id, body.source_till_id, body.source_program_id);
    let customer = {
        let mut conn = state.db.read().await?;
        resolve_customer(
            &mut conn,
            principal.org,
            &headers,
            q.source.as_deref(),
            q.account_id.as_deref(),
            q.identifier_name.as_deref(),
            q.identifier_value.as_deref(),
        )
        .await?
    };
    let line_items = body.line_item_ids.clone().unwrap_or_default();
    let item_codes = body.item_codes.clone().unwrap_or_default();
    let conversion = Conversion {
        customer,
        event_name: event,
        bill_number,
        transaction: body.event_log_id,
        line_items: &line_items,
        item_codes: &item_codes,
        till: principal.till.map(|t| t.0),
    };
    let done =
        adjust::convert(&state.db, Some(&principal), principal.org, &conversion, now_millis())
            .await?;
    let total = done.per_program.iter().fold(Fixed::ZERO, |a, (_, p)| a + *p);
    let warnings: Vec<Value> = if done.lots.is_empty() {
        vec![warning(Code::NotFound, "no promised points matched the event: nothing converted")]
    } else {
        Vec::new()
    };
    Ok(axum::Json(json!({
        "entityId": customer,
        "convertedPoints": total.to_f64(),
        "conversions": done.per_program.iter().map(|(p, pts)| json!({"programId": p, "points": pts.to_f64()})).collect::<Vec<_>>(),
        "pointsAwardedIds": done.lots,
        "warnings": warnings,
    }))
    .into_response())
}

// -------------------------------------------------------------------- negative adjustment

/// Query of the deduction endpoints.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct AdjustQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
}

/// Body of the deduction endpoints.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdjustBody {
    #[schema(value_type = f64)]
    points_to_be_adjusted: Option<Value>,
    reason_of_return: Option<String>,
    program_id: Option<i64>,
    points_category: Option<String>,
    points_awarded_id: Option<i64>,
    points_awarded_ref_type: Option<String>,
    promotion_id: Option<i64>,
    promotion_identifier: Option<String>,
    alternate_currency_name: Option<String>,
    #[schema(value_type = Option<f64>)]
    alternate_currency_to_be_adjusted: Option<Value>,
}

/// The org's active alternate currency called `name` (any case); 840 when it is unknown or
/// inactive (an inactive currency can be neither issued nor deducted by hand).
async fn active_currency(
    state: &AppState,
    org: OrgId,
    name: &str,
) -> Result<crate::currencies::model::CurrencyRow, ApiError> {
    let mut conn = state.db.read().await?;
    crate::currencies::service::for_award(&mut conn, org, name).await?.ok_or_else(|| {
        ApiError::with_message(
            Code::UnknownAlternateCurrency,
            format!("'{name}' is not an active alternate currency of the org"),
        )
    })
}

async fn deduct_for(
    state: &AppState,
    principal: &Principal,
    customer: i64,
    body: &AdjustBody,
) -> Result<Response, ApiError> {
    let currency_name =
        body.alternate_currency_name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let alternate_amount = body.alternate_currency_to_be_adjusted.as_ref().filter(|v| !v.is_null());
    if currency_name.is_none() && alternate_amount.is_some() {
        return Err(ApiError::invalid(
            "alternateCurrencyToBeAdjusted needs alternateCurrencyName (the currency to deduct)",
        ));
    }
    // With a currency named, its amount is alternateCurrencyToBeAdjusted (pointsToBeAdjusted
    // when that is absent) and no points are deducted.
    let amount = match currency_name {
        Some(_) => alternate_amount.or(body.points_to_be_adjusted.as_ref()).ok_or_else(|| {
            ApiError::invalid(
                "alternateCurrencyToBeAdjusted is required with alternateCurrencyName",
            )
        })?,
        None => body
            .points_to_be_adjusted
            .as_ref()
            .ok_or_else(|| ApiError::invalid("pointsToBeAdjusted is required"))?,
    };
    let points = whole_points(amount)?;
    let reason = bounded_text("reasonOfReturn", body.reason_of_return.as_deref())?;
    if reason.is_empty() {
        return Err(ApiError::invalid("reasonOfReturn is required"));
    }
    match body.points_category.as_deref().map(|c| c.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("REGULAR") => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "pointsCategory '{other}' is not supported: only REGULAR points can be deducted"
            )));
        }
    }
    if body
        .points_awarded_ref_type
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty() && !t.trim().eq_ignore_ascii_case("POINT_AWARDED"))
    {
        return Err(ApiError::invalid("pointsAwardedRefType must be POINT_AWARDED"));
    }
    let promotion_identifier =
        body.promotion_identifier.as_deref().map(str::trim).filter(|p| !p.is_empty());
    if body.promotion_id.is_some() && promotion_identifier.is_some() {
        return Err(ApiError::invalid("send promotionId or promotionIdentifier, not both"));
    }
    let currency = match currency_name {
        Some(name) => Some(active_currency(state, principal.org, name).await?),
        None => None,
    };
    let program_id = body.program_id.map(|p| p.to_string());
    let program = super::routes_v1::program_of(state, principal, program_id.as_deref()).await?;
    let deduction = Deduction {
        customer,
        program: &program,
        points,
        reason: &reason,
        target_lot: body.points_awarded_id,
        promotion_id: body.promotion_id,
        promotion_identifier,
        till: principal.till.map(|t| t.0),
        currency: currency.as_ref(),
    };
    let done =
        adjust::deduct(&state.db, Some(principal), principal.org, &deduction, now_millis()).await?;
    let mut reply = json!({
        "createdId": done.id,
        "entityId": customer,
        "programId": program.id.0,
        "pointsDeducted": if currency.is_some() { 0.0 } else { points.to_f64() },
        "negativeBalance": done.debt.to_f64(),
        "balance": done.balance.to_f64(),
        "warnings": [],
    });
    if let Some(c) = &currency {
        reply["alternateCurrencyName"] = json!(c.name);
        reply["alternateCurrencyDeducted"] = json!(points.to_f64());
    }
    Ok(axum::Json(reply).into_response())
}

/// `POST /v2/customers/lookup/negativePointsAdjustment` — deducts points, or an alternate
/// currency, from the customer an identifier names (below zero only when the org allows it).
#[utoipa::path(post, path = "/v2/customers/lookup/negativePointsAdjustment", tag = "points", params(AdjustQuery), request_body = AdjustBody,
    responses((status = 200, description = "Deducted"), (status = 400, description = "801 bad points or currency amount, 803 more than the balance, 840 unknown or inactive alternate currency, 1101 unknown program"), (status = 404, description = "8015 not found, 841 unknown award (or one of another currency)")))]
pub async fn lookup_deduct(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<AdjustQuery>,
    Json(body): Json<AdjustBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let customer = {
        let mut conn = state.db.read().await?;
        resolve_customer(
            &mut conn,
            principal.org,
            &headers,
            q.source.as_deref(),
            q.account_id.as_deref(),
            q.identifier_name.as_deref(),
            q.identifier_value.as_deref(),
        )
        .await?
    };
    deduct_for(&state, &principal, customer, &body).await
}

/// `POST /v2/customers/{id}/negativePointsAdjustment` — deducts points, or an alternate
/// currency, from the customer.
#[utoipa::path(post, path = "/v2/customers/{id}/negativePointsAdjustment", tag = "points", params(AdjustQuery), request_body = AdjustBody,
    responses((status = 200, description = "Deducted"), (status = 400, description = "801 bad points or currency amount, 803 more than the balance, 840 unknown or inactive alternate currency, 1101 unknown program"), (status = 404, description = "8015 not found, 841 unknown award (or one of another currency)")))]
pub async fn deduct(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(_q): Query<AdjustQuery>,
    Json(body): Json<AdjustBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let customer = {
        let mut conn = state.db.read().await?;
        customer_by_id(&mut conn, principal.org, id).await?
    };
    deduct_for(&state, &principal, customer, &body).await
}

// ------------------------------------------------------------------------- update expiry

/// `expiryDate` of an expiry update.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryDateBody {
    expiry_type: Option<String>,
    expiry_value: Option<String>,
}

/// One item of `POST /v2/points/updateExpiry`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryUpdateItem {
    identifier_name: Option<String>,
    #[schema(value_type = String)]
    identifier_value: Option<Value>,
    source: Option<String>,
    program_id: Option<i64>,
    points_awarded_ref_id: Option<i64>,
    points_awarded_ref_type: Option<String>,
    expiry_update_reason_type: Option<String>,
    expiry_update_reason_note: Option<String>,
    #[schema(value_type = Option<Object>)]
    standard_meta: Option<Value>,
    #[schema(value_type = Option<Object>)]
    custom_meta: Option<Value>,
    expiry_date: Option<ExpiryDateBody>,
}

/// Body of `POST /v2/points/updateExpiry`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryUpdateBody {
    expiry_date_update_request: Option<Vec<ExpiryUpdateItem>>,
}

async fn update_one_expiry(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    item: &ExpiryUpdateItem,
) -> Result<Value, ApiError> {
    let program = item.program_id.ok_or_else(|| ApiError::invalid("programId is required"))?;
    let lot = item
        .points_awarded_ref_id
        .ok_or_else(|| ApiError::invalid("pointsAwardedRefId is required"))?;
    if item
        .points_awarded_ref_type
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty() && !t.trim().eq_ignore_ascii_case("POINT_AWARDED"))
    {
        return Err(ApiError::invalid("pointsAwardedRefType must be POINT_AWARDED"));
    }
    let reason = match item
        .expiry_update_reason_type
        .as_deref()
        .map(|r| r.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("EARLY_EXPIRY") => ExpiryReason::Early,
        Some("EXTEND_EXPIRY") => ExpiryReason::Extend,
        _ => {
            return Err(ApiError::invalid(
                "expiryUpdateReasonType must be EARLY_EXPIRY or EXTEND_EXPIRY",
            ));
        }
    };
    let date =
        item.expiry_date.as_ref().ok_or_else(|| ApiError::invalid("expiryDate is required"))?;
    if date.expiry_type.as_deref().is_some_and(|t| !t.trim().eq_ignore_ascii_case("FIXED_DATE")) {
        return Err(ApiError::invalid("expiryDate.expiryType must be FIXED_DATE"));
    }
    let day = day(
        "expiryDate.expiryValue",
        date.expiry_value
            .as_deref()
            .ok_or_else(|| ApiError::invalid("expiryDate.expiryValue is required (YYYY-MM-DD)"))?,
    )?;
    let note = bounded_text("expiryUpdateReasonNote", item.expiry_update_reason_note.as_deref())?;
    let meta = json!({"standardMeta": item.standard_meta, "customMeta": item.custom_meta});
    if meta.to_string().len() > 4096 {
        return Err(ApiError::invalid("standardMeta and customMeta: at most 4 KiB together"));
    }
    let identifier_value = text(item.identifier_value.as_ref());
    let customer = {
        let mut conn = state.db.read().await?;
        let customer = resolve_customer(
            &mut conn,
            principal.org,
            headers,
            item.source.as_deref(),
            None,
            item.identifier_name.as_deref(),
            identifier_value.as_deref(),
        )
        .await?;
        schedule::programs_for(&state.programs, &mut conn, principal.org, Some(program), false)
            .await?;
        customer
    };
    let change = ExpiryChange { customer, program, lot, day, reason, note: &note, meta: &meta };
    let done =
        adjust::change_expiry(&state.db, Some(principal), principal.org, &change, now_millis())
            .await?;
    let tz = {
        let mut conn = state.db.read().await?;
        adjust::org_zone(&mut conn, principal.org).await?
    };
    Ok(json!({
        "entityId": customer,
        "programId": program,
        "pointsAwardedRefId": lot,
        "previousExpiryDate": done.previous.map(|p| schedule::local_date(p, tz)),
        "expiryDate": schedule::local_date(done.expires_at, tz),
        "expiryDateISO": crate::transactions::time::iso_in(done.expires_at, tz),
        "expiredPoints": done.expired.to_f64(),
        "errors": [],
        "warnings": [],
    }))
}

/// `POST /v2/points/updateExpiry` — changes the expiry of specific awards, each item on its own
/// (HTTP 200 all changed, 201 some failed, 400 none).
#[utoipa::path(post, path = "/v2/points/updateExpiry", tag = "points", request_body = ExpiryUpdateBody,
    responses((status = 200, description = "Per-item results"), (status = 201, description = "Some items failed"), (status = 400, description = "All items failed; 1060 more than 100 items")))]
pub async fn update_expiry(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<ExpiryUpdateBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let items = body.expiry_date_update_request.unwrap_or_default();
    if items.is_empty() {
        return Err(ApiError::invalid("expiryDateUpdateRequest must list at least one item"));
    }
    if items.len() > EXPIRY_UPDATES_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("at most {EXPIRY_UPDATES_MAX} items per request"),
        ));
    }
    let mut results = Vec::with_capacity(items.len());
    for item in &items {
        results.push(match update_one_expiry(&state, &principal, &headers, item).await {
            Ok(v) => (true, v),
            Err(e) => (
                false,
                json!({"pointsAwardedRefId": item.points_awarded_ref_id,
                    "programId": item.program_id, "errors": [error_json(&e)], "warnings": []}),
            ),
        });
    }
    Ok(bulk_reply(results))
}

// -------------------------------------------------------------------- manual allocation

/// `lookupParams` of an allocation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LookupParams {
    entity_type: Option<String>,
    identifier_type: Option<String>,
    #[schema(value_type = String)]
    identifier_value: Option<Value>,
    source: Option<String>,
    account_id: Option<String>,
}

/// One item of `POST /v2/customers/bulk/manualCurrencyAllocate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationItem {
    event_name: Option<String>,
    #[schema(value_type = String)]
    event_source_id: Option<Value>,
    org_id: Option<i64>,
    program_id: Option<i64>,
    currency_type: Option<String>,
    alternate_currency_identifier: Option<String>,
    alternate_currency_name: Option<String>,
    award_strategy_id: Option<i64>,
    expiry_strategy_id: Option<i64>,
    promotion_id: Option<i64>,
    #[schema(value_type = f64)]
    source_value: Option<Value>,
    source_value_rounding_strategy: Option<String>,
    points_rounding_strategy: Option<String>,
    line_item_id: Option<i64>,
    lookup_params: Option<LookupParams>,
    entity_type: Option<String>,
    identifier_type: Option<String>,
    #[schema(value_type = Option<String>)]
    identifier_value: Option<Value>,
    source: Option<String>,
    account_id: Option<String>,
}

/// An active alternate currency of the org by its id or its name; 840 otherwise.
async fn currency_by_reference(
    state: &AppState,
    org: OrgId,
    reference: &str,
) -> Result<crate::currencies::model::CurrencyRow, ApiError> {
    if let Ok(id) = reference.parse::<i64>() {
        let mut conn = state.db.read().await?;
        return crate::currencies::store::get_currency(&mut conn, org, id)
            .await?
            .filter(|c| c.active)
            .ok_or_else(|| {
                ApiError::with_message(
                    Code::UnknownAlternateCurrency,
                    format!("{id} is not an active alternate currency of the org"),
                )
            });
    }
    active_currency(state, org, reference).await
}

fn rounding(field: &str, value: Option<&str>) -> Result<RoundingStrategy, ApiError> {
    match value.map(|v| v.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("FLOOR") => Ok(RoundingStrategy::ToNegativeInfinity),
        Some("CEIL") | Some("CEILING") => Ok(RoundingStrategy::ToPositiveInfinity),
        Some("ROUND") | Some("ROUND_OFF") | Some("HALF_UP") => {
            Ok(RoundingStrategy::MidpointAwayFromZero)
        }
        Some(other) => {
            Err(ApiError::invalid(format!("{field} '{other}' must be FLOOR, CEIL or ROUND")))
        }
    }
}

async fn allocate_one(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    item: &AllocationItem,
) -> Result<Value, ApiError> {
    let currency = item.currency_type.as_deref().map(|c| c.trim().to_ascii_uppercase());
    let promised = match currency.as_deref() {
        None | Some("") | Some("REGULAR") | Some("POINTS") => false,
        // The currency itself is named by alternateCurrencyIdentifier (or -Name), below.
        Some("ALTERNATE_CURRENCY") | Some("ALTERNATE_CURRENCIES") => {
            if item
                .alternate_currency_identifier
                .as_deref()
                .or(item.alternate_currency_name.as_deref())
                .is_none_or(|n| n.trim().is_empty())
            {
                return Err(ApiError::invalid(
                    "currencyType ALTERNATE_CURRENCY needs alternateCurrencyIdentifier",
                ));
            }
            false
        }
        Some("PROMISED") => true,
        Some(other) => {
            return Err(ApiError::with_message(
                Code::UnknownAlternateCurrency,
                format!("currency '{other}' is not defined for the org"),
            ));
        }
    };
    // The currency by name (alternateCurrencyName) or by the identifier Capillary gives a
    // currency on creation (alternateCurrencyIdentifier: here its id, or its name).
    let currency_ref = item
        .alternate_currency_name
        .as_deref()
        .or(item.alternate_currency_identifier.as_deref())
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let currency = match currency_ref {
        Some(reference) => {
            if promised {
                return Err(ApiError::invalid(
                    "alternate currencies are issued as REGULAR only (currencyType PROMISED is \
                     for points)",
                ));
            }
            Some(currency_by_reference(state, principal.org, reference).await?)
        }
        None => None,
    };
    if item.org_id.is_some_and(|o| o != principal.org.0) {
        return Err(ApiError::invalid("orgId is not the caller's org"));
    }
    let event = item.event_name.as_deref().map(str::trim).unwrap_or_default();
    if !adjust::ALLOCATION_EVENTS.contains(&event) {
        return Err(ApiError::invalid(format!(
            "eventName must be one of {}",
            adjust::ALLOCATION_EVENTS.join(", ")
        )));
    }
    let source_id = text(item.event_source_id.as_ref())
        .ok_or_else(|| ApiError::invalid("eventSourceId is required"))?;
    if source_id.chars().count() > 100 {
        return Err(ApiError::invalid("eventSourceId must be at most 100 characters"));
    }
    let strategy = item
        .award_strategy_id
        .and_then(|s| usize::try_from(s).ok())
        .filter(|s| *s >= 1)
        .ok_or_else(|| {
            ApiError::invalid("awardStrategyId is required (a program earn rule number, from 1)")
        })?;
    let source_value = match number(item.source_value.as_ref()) {
        Some(v) if v == Decimal::NEGATIVE_ONE => None,
        Some(v) if v >= Decimal::ZERO && Fixed::from_decimal(v).is_some() => Some(v),
        Some(_) => return Err(ApiError::invalid("sourceValue must be 0 or more (or -1)")),
        None => return Err(ApiError::invalid("sourceValue is required")),
    };
    let source_rounding =
        rounding("sourceValueRoundingStrategy", item.source_value_rounding_strategy.as_deref())?;
    let points_rounding =
        rounding("pointsRoundingStrategy", item.points_rounding_strategy.as_deref())?;
    let lookup = item.lookup_params.as_ref();
    customer_entity(lookup.and_then(|l| l.entity_type.as_deref()).or(item.entity_type.as_deref()))?;
    let identifier_value =
        text(lookup.and_then(|l| l.identifier_value.as_ref()).or(item.identifier_value.as_ref()));
    let program_id = item.program_id.ok_or_else(|| ApiError::invalid("programId is required"))?;
    let (customer, program) = {
        let mut conn = state.db.read().await?;
        let customer = resolve_customer(
            &mut conn,
            principal.org,
            headers,
            lookup.and_then(|l| l.source.as_deref()).or(item.source.as_deref()),
            lookup.and_then(|l| l.account_id.as_deref()).or(item.account_id.as_deref()),
            lookup.and_then(|l| l.identifier_type.as_deref()).or(item.identifier_type.as_deref()),
            identifier_value.as_deref(),
        )
        .await?;
        let program = schedule::programs_for(
            &state.programs,
            &mut conn,
            principal.org,
            Some(program_id),
            false,
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(Code::InvalidProgramId))?;
        (customer, program)
    };
    let _ = (item.promotion_id, item.line_item_id);
    let allocation = Allocation {
        customer,
        program: &program,
        event_name: event,
        event_source_id: &source_id,
        promised,
        award_strategy: strategy,
        expiry_strategy: item.expiry_strategy_id,
        source_value,
        source_rounding,
        points_rounding,
        till: principal.till.map(|t| t.0),
        currency: currency.as_ref(),
    };
    let done =
        adjust::allocate(&state.db, Some(principal), principal.org, &allocation, now_millis())
            .await?;
    Ok(json!({
        "createdId": done.id,
        "awardId": done.lot,
        "entityId": customer,
        "programId": program.id.0,
        "currencyType": if promised { "PROMISED" } else { "REGULAR" },
        "alternateCurrencyName": currency.as_ref().map(|c| c.name.clone()),
        "awardedPoints": done.points.to_f64(),
        "expiryDate": done.expires_at.map(crate::transactions::time::iso_utc),
        "redeemableFrom": done.unlock_at.map(crate::transactions::time::iso_utc),
        "errors": [],
        "warnings": [],
    }))
}

/// `POST /v2/customers/bulk/manualCurrencyAllocate` — issues points or an alternate currency by
/// hand, up to 10 items, each on its own (HTTP 200 all issued, 201 some failed, 400 none); an
/// award linked to a bill is revoked when the bill is returned.
#[utoipa::path(post, path = "/v2/customers/bulk/manualCurrencyAllocate", tag = "points", request_body = Vec<AllocationItem>,
    responses((status = 200, description = "Per-item results"), (status = 201, description = "Some items failed"), (status = 400, description = "All items failed; 1060 more than 10 items")))]
pub async fn allocate(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(items): Json<Vec<AllocationItem>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    if items.is_empty() {
        return Err(ApiError::invalid("the body must list at least one allocation"));
    }
    if items.len() > ALLOCATIONS_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("at most {ALLOCATIONS_MAX} allocations per request"),
        ));
    }
    let mut results = Vec::with_capacity(items.len());
    for item in &items {
        results.push(match allocate_one(&state, &principal, &headers, item).await {
            Ok(v) => (true, v),
            Err(e) => (
                false,
                json!({"programId": item.program_id, "errors": [error_json(&e)], "warnings": []}),
            ),
        });
    }
    Ok(bulk_reply(results))
}

// ----------------------------------------------------------------------------- goodwill

/// `goodwillRequest` of a request body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoodwillBody {
    #[schema(value_type = f64)]
    points: Option<Value>,
    reason: Option<String>,
    comments: Option<String>,
}

/// Identification of the customer (or group) a request is for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentificationInfo {
    identifier_type: Option<String>,
    #[schema(value_type = String)]
    identifier_value: Option<Value>,
    source: Option<String>,
    account_id: Option<String>,
}

/// Body of `POST /v2/requests` (goodwill points).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    base_type: Option<String>,
    program_id: Option<i64>,
    comments: Option<String>,
    goodwill_request: Option<GoodwillBody>,
    earning_entity_type: Option<String>,
    customer_identification_info: Option<IdentificationInfo>,
    user_group2_identification_info: Option<IdentificationInfo>,
}

/// `POST /v2/requests` — a goodwill points request for a customer: stored `PENDING` (points are
/// credited only on approval, by the requests workflow).
#[utoipa::path(post, path = "/v2/requests", tag = "requests", request_body = RequestBody,
    responses((status = 200, description = "{createdId, warnings}"), (status = 400, description = "400 invalid input, 9006 request type, 9008 base type, 93026 group, 1101 program"), (status = 404, description = "8015 customer not found")))]
pub async fn add_request(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<RequestBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Requests, Level::Write)?;
    match body.kind.as_deref().map(|k| k.trim().to_ascii_uppercase()).as_deref() {
        Some("GOODWILL") => {}
        _ => {
            return Err(ApiError::with_message(
                Code::InvalidRequestType,
                "type must be GOODWILL (other request types are not supported yet)",
            ));
        }
    }
    match body.base_type.as_deref().map(|k| k.trim().to_ascii_uppercase()).as_deref() {
        Some("POINTS") => {}
        _ => {
            return Err(ApiError::with_message(
                Code::InvalidRequestBaseType,
                "baseType must be POINTS (goodwill coupons are not supported yet)",
            ));
        }
    }
    let info =
        match body.earning_entity_type.as_deref().map(|k| k.trim().to_ascii_uppercase()).as_deref()
        {
            None | Some("") | Some("CUSTOMER") => body
                .customer_identification_info
                .as_ref()
                .ok_or_else(|| ApiError::invalid("customerIdentificationInfo is required"))?,
            Some("USERGROUP2") => {
                return Err(ApiError::with_message(
                    Code::InvalidGroupDetails,
                    "user groups are not supported yet: no group can be found",
                ));
            }
            Some(other) => {
                return Err(ApiError::invalid(format!("unknown earningEntityType '{other}'")));
            }
        };
    let _ = &body.user_group2_identification_info;
    let goodwill = body
        .goodwill_request
        .as_ref()
        .ok_or_else(|| ApiError::invalid("goodwillRequest is required"))?;
    let points = number(goodwill.points.as_ref())
        .filter(|p| *p > Decimal::ZERO)
        .and_then(Fixed::from_decimal)
        .ok_or_else(|| ApiError::invalid("goodwillRequest.points must be a positive number"))?;
    let reason = bounded_text("goodwillRequest.reason", goodwill.reason.as_deref())?;
    let comments = bounded_text("goodwillRequest.comments", goodwill.comments.as_deref())?;
    let request_comments = bounded_text("comments", body.comments.as_deref())?;
    let identifier_value = text(info.identifier_value.as_ref());
    let (customer, program) = {
        let mut conn = state.db.read().await?;
        let customer = resolve_customer(
            &mut conn,
            principal.org,
            &headers,
            info.source.as_deref(),
            info.account_id.as_deref(),
            info.identifier_type.as_deref(),
            identifier_value.as_deref(),
        )
        .await?;
        let program = schedule::programs_for(
            &state.programs,
            &mut conn,
            principal.org,
            body.program_id,
            false,
        )
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(Code::InvalidProgramId))?;
        (customer, program)
    };
    let request = GoodwillRequest {
        customer,
        program: program.id.0,
        points,
        reason: &reason,
        comments: &comments,
        request_comments: &request_comments,
    };
    let id =
        goodwill::request(&state.db, &principal, principal.org, &request, now_millis()).await?;
    Ok(axum::Json(json!({"createdId": id, "warnings": []})).into_response())
}

/// Query of `GET /v2/customers/{id}/goodwillRequests`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct GoodwillQuery {
    request_id: Option<i64>,
    program_id: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn actor_json(kind: Option<&str>, id: Option<i64>) -> Value {
    match kind {
        Some(kind) => json!({"id": id, "type": kind}),
        None => json!({}),
    }
}

/// `GET /v2/customers/{id}/goodwillRequests` — the customer's goodwill requests, newest first.
#[utoipa::path(get, path = "/v2/customers/{id}/goodwillRequests", tag = "points", params(GoodwillQuery),
    responses((status = 200, description = "A page of requests"), (status = 404, description = "8015 not found")))]
pub async fn goodwill_requests(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<GoodwillQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Requests, Level::Read)?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=GOODWILL_PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {GOODWILL_PAGE_MAX}")));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    let mut conn = state.db.read().await?;
    let customer = customer_by_id(&mut conn, principal.org, id).await?;
    let tz = adjust::org_zone(&mut conn, principal.org).await?;
    let filter = GoodwillFilter { customer, request: q.request_id, program: q.program_id };
    let (rows, total) = goodwill::list(&mut conn, principal.org, filter, limit, offset).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"id": r.id, "requestId": r.id, "userId": r.customer_id, "programId": r.program_id,
                "type": "GOODWILL", "baseType": r.base_type, "goodwillType": r.base_type,
                "goodwillStatus": r.status, "status": r.status, "points": Fixed(r.points).to_f64(),
                "reason": r.reason, "comments": r.comments, "requestComments": r.request_comments,
                "approvedValue": r.approved_points.map(|p| Fixed(p).to_f64()),
                "updatedComments": r.updated_comments,
                "addedBy": actor_json(Some(&r.added_by_type), r.added_by_id),
                "updatedBy": actor_json(r.updated_by_type.as_deref(), r.updated_by_id),
                "addedOn": crate::transactions::time::iso_in(r.created_at, tz),
                "updatedOn": crate::transactions::time::iso_in(r.updated_at, tz),
                "oneStep": false, "warnings": []})
        })
        .collect();
    Ok(crate::http::envelope::v2_list(data, limit, offset, total))
}
