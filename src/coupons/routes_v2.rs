//! v2 coupon APIs: series (create, update, read), issue (single, bulk, several to one customer),
//! redeem (single, bulk, check only), is_redeemable, reactivate, coupon and customer reads, bill
//! data on redemptions, expiry updates and revocation.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::model::{
    CodeCase, CouponError, METADATA_VALUE_LENGTH_MAX, StatusFilter, effective_expiry, parse_instant,
};
use super::service::{
    self, CodeRef, CouponDetails, CustomerRef, IssueContext, IssueOutcome, Quote, REDEEM_CODES_MAX,
    RedeemContext, RedemptionUpdate, Series,
};
use super::store;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::{Identifier, IdentifierType};
use crate::customers::routes_v2::country_code;
use crate::customers::store::CustomerRow;
use crate::db::now_millis;
use crate::error::ApiError;
use crate::http::envelope::v2_entity;
use crate::http::extract::{Json, Path, Query};
use crate::points::model::Fixed;
use crate::transactions::time::iso_utc;

/// Most series one bulk issue or one series read may name.
const SERIES_PER_REQUEST_MAX: usize = 100;
/// Most coupons one coupon read, expiry update and revocation may name.
const COUPONS_PER_READ_MAX: usize = 100;
const EXPIRY_CODES_MAX: usize = 100;
const REVOKE_CODES_MAX: usize = 50;
const REDEMPTION_UPDATES_MAX: usize = 100;
/// Default and largest page of the customer coupon list.
const PAGE_DEFAULT: i64 = 20;
const PAGE_MAX: i64 = 100;
/// Most customers `issuedToIds` may name.
const ISSUED_TO_MAX: usize = 10;

/// Query parameters in order, repeated ones included (`couponIds=1&couponIds=2`).
pub(crate) struct Params(pub Vec<(String, String)>);

impl Params {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    /// Every value of `name`, repeated or comma-separated.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// A text value of a JSON object (strings, numbers and booleans alike); empty means absent.
pub(crate) fn text(item: &Value, key: &str) -> Option<String> {
    match item.get(key)? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn integer(value: Option<&Value>, field: &str) -> Result<Option<i64>, CouponError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| CouponError::invalid(format!("{field} must be an id"))),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| CouponError::invalid(format!("{field} must be an id"))),
        Some(_) => Err(CouponError::invalid(format!("{field} must be an id"))),
    }
}

/// A money amount from the wire (number or numeric string), not negative.
pub(crate) fn money(value: Option<&Value>, field: &str) -> Result<Option<i64>, CouponError> {
    let bad = || CouponError::invalid(format!("{field} must be a number, not negative"));
    let decimal = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::Number(n)) => n.to_string().parse::<Decimal>().map_err(|_| bad())?,
        Some(Value::String(s)) => s.trim().parse::<Decimal>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if decimal < Decimal::ZERO {
        return Err(bad());
    }
    Fixed::from_decimal(decimal).map(|f| Some(f.0)).ok_or_else(bad)
}

/// The customer a `customer`/`user` object names: `id`, or one of `mobile`, `email`,
/// `externalId` (v1.1 spellings and card numbers too). A malformed value names no one (701).
pub(crate) fn customer_ref_of(
    get: impl Fn(&str) -> Option<String>,
    country: Option<&str>,
) -> Result<CustomerRef, CouponError> {
    for name in ["id", "userId", "user_id"] {
        if let Some(v) = get(name) {
            return v.parse().map(CustomerRef::Id).map_err(|_| CouponError::CustomerNotFound);
        }
    }
    for name in [
        "mobile",
        "email",
        "externalId",
        "external_id",
        "cardnumber",
        "card_number",
        "cardNumber",
        "cardExternalId",
        "card_external_id",
    ] {
        if let Some(v) = get(name) {
            let kind =
                IdentifierType::parse(if name == "cardNumber" { "cardnumber" } else { name })
                    .ok_or(CouponError::CustomerNotFound)?;
            return Identifier::parse(kind, &v, country)
                .map(CustomerRef::Identifier)
                .map_err(|_| CouponError::CustomerNotFound);
        }
    }
    Err(CouponError::invalid("A customer identifier (id, mobile, email or externalId) is required"))
}

fn customer_ref(value: Option<&Value>, country: Option<&str>) -> Result<CustomerRef, CouponError> {
    let value = value
        .filter(|v| v.is_object())
        .ok_or_else(|| CouponError::invalid("customer must be an object naming the customer"))?;
    customer_ref_of(|k| text(value, k), country)
}

/// `metadata` of an issue: `sourceType`, `sourceId`, `sourceActivity`, `notes`, `reason`, each at
/// most 50 characters.
fn metadata(value: Option<&Value>) -> Result<Map<String, Value>, CouponError> {
    const KEYS: [&str; 5] = ["sourceType", "sourceId", "sourceActivity", "notes", "reason"];
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Map::new()) };
    let map =
        value.as_object().ok_or_else(|| CouponError::invalid("metadata must be an object"))?;
    let mut out = Map::new();
    for (key, v) in map {
        if !KEYS.contains(&key.as_str()) {
            return Err(CouponError::invalid(format!(
                "metadata.{key} is not one of {}",
                KEYS.join(", ")
            )));
        }
        let text = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            _ => return Err(CouponError::invalid(format!("metadata.{key} must be a string"))),
        };
        if text.chars().count() > METADATA_VALUE_LENGTH_MAX {
            return Err(CouponError::invalid(format!(
                "metadata.{key} must be at most {METADATA_VALUE_LENGTH_MAX} characters"
            )));
        }
        out.insert(key.clone(), Value::String(text));
    }
    Ok(out)
}

/// The `CouponSeriesV2` object of a body (or the body itself).
fn series_body(body: &Value) -> Result<&Map<String, Value>, CouponError> {
    body.get("CouponSeriesV2")
        .unwrap_or(body)
        .as_object()
        .ok_or_else(|| CouponError::invalid("the body must be {\"CouponSeriesV2\": {...}}"))
}

/// `POST /v2/coupon/series` — creates a coupon series.
#[utoipa::path(post, path = "/v2/coupon/series", tag = "coupons",
    request_body(content = Object, description = "{\"CouponSeriesV2\": {...}}", content_type = "application/json"),
    responses((status = 200, description = "{entity, warnings}"), (status = 400, description = "629 invalid input")))]
pub async fn create_series(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let series =
        service::create_series(&state.db, &principal, series_body(&body)?, now_millis()).await?;
    Ok(v2_entity(series.render()))
}

/// `PUT /v2/coupon/series/{seriesId}` — updates a series (mandatory keys plus any to change).
#[utoipa::path(put, path = "/v2/coupon/series/{seriesId}", tag = "coupons",
    params(("seriesId" = i64, Path, description = "Series id")),
    request_body(content = Object, description = "{\"CouponSeriesV2\": {...}}", content_type = "application/json"),
    responses((status = 200, description = "{entity, warnings}"), (status = 404, description = "707 unknown series")))]
pub async fn update_series(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let series =
        service::update_series(&state.db, &principal, id, series_body(&body)?, now_millis())
            .await?;
    Ok(v2_entity(series.render()))
}

/// `GET /v2/coupon/series?ids=1,2` — series details; one id gives the entity, several a list
/// (unknown ids become 707 warnings).
#[utoipa::path(get, path = "/v2/coupon/series", tag = "coupons",
    params(("ids" = String, Query, description = "Series ids, comma separated")),
    responses((status = 200, description = "{entity}"), (status = 404, description = "707 unknown series")))]
pub async fn get_series(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let ids = params
        .all("ids")
        .iter()
        .map(|s| s.parse::<i64>().map_err(|_| CouponError::invalid("ids must be series ids")))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() || ids.len() > SERIES_PER_REQUEST_MAX {
        return Err(CouponError::invalid(format!(
            "ids must list 1 to {SERIES_PER_REQUEST_MAX} series ids"
        ))
        .into());
    }
    let mut conn = state.db.read().await?;
    if let [id] = ids.as_slice() {
        let series = service::load_series(&mut conn, principal.org, *id).await?;
        return Ok(v2_entity(series.render()));
    }
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    for id in ids {
        match service::load_series(&mut conn, principal.org, id).await {
            Ok(s) => found.push(s.render()),
            Err(CouponError::Db(e)) => return Err(e.into()),
            Err(e) => warnings.push(
                json!({"status": false, "code": e.code().info().code, "message": e.to_string()}),
            ),
        }
    }
    Ok(axum::Json(json!({"entity": found, "warnings": warnings, "errors": [], "success": true}))
        .into_response())
}

/// The issued coupon as the issue APIs show it.
fn issued_json(series: &Series, coupon: &store::CouponRow, case: CodeCase) -> Value {
    let c = &series.config;
    let valid_till = effective_expiry(coupon.expires_at, series.row.valid_till_at);
    json!({
        "code": case.show(&coupon.code),
        "couponId": coupon.id,
        "seriesId": series.id(),
        "description": c.description,
        "discountCode": c.discount_code,
        "validTill": iso_utc(valid_till),
        "validTillDateTime": iso_utc(valid_till),
        "discountType": c.discount_type.as_str(),
        "discountValue": Fixed(c.discount_value).to_f64(),
        "discountUpto": Fixed(c.discount_upto).to_f64(),
        "discountOn": c.discount_on,
        "detailedInfo": c.info,
        "redemptionCount": coupon.redemption_count,
    })
}

/// The customer block of issue answers.
async fn customer_json(
    state: &AppState,
    principal: &Principal,
    customer: &CustomerRow,
) -> Result<Value, ApiError> {
    let mut conn = state.db.read().await?;
    let identifiers = crate::customers::store::identifiers(
        &mut conn,
        principal.org,
        crate::customers::model::CustomerId(customer.id),
    )
    .await?;
    let ids: Vec<Value> =
        identifiers.iter().map(|i| json!({"type": i.kind, "value": i.value})).collect();
    Ok(json!({"id": customer.id, "profiles": [{"firstName": customer.first_name,
        "lastName": customer.last_name, "identifiers": ids}]}))
}

fn warnings_json(outcome: &IssueOutcome) -> Vec<Value> {
    outcome.warnings.iter().map(|w| w.to_json()).collect()
}

/// `POST /v2/coupon/issue` — issues one coupon of a series to a customer.
#[utoipa::path(post, path = "/v2/coupon/issue", tag = "coupons",
    request_body(content = Object, description = "{seriesId, customer{id|mobile|email|externalId}, metadata}", content_type = "application/json"),
    responses((status = 200, description = "The coupon"), (status = 400, description = "712, 721, 722, 629"), (status = 404, description = "701, 707")))]
pub async fn issue(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let series_id = integer(body.get("seriesId"), "seriesId")?
        .ok_or_else(|| CouponError::invalid("seriesId is required"))?;
    let customer = customer_ref(body.get("customer"), country_code(&headers).as_deref())?;
    let ctx = IssueContext::api(&principal, metadata(body.get("metadata"))?);
    let outcome =
        service::issue(&state.db, principal.org, series_id, &customer, 1, &ctx, now_millis())
            .await?;
    let coupon = outcome
        .coupons
        .first()
        .ok_or_else(|| ApiError::from(CouponError::IssueRefused("no coupon was issued".into())))?;
    let mut reply = issued_json(&outcome.series, &coupon.coupon, CodeCase::Upper);
    reply["customer"] = customer_json(&state, &principal, &outcome.customer).await?;
    reply["warnings"] = Value::Array(warnings_json(&outcome));
    Ok(axum::Json(reply).into_response())
}

/// `POST /v2/coupon/bulk/issue` — one coupon of each listed series to one customer; a series that
/// fails does not fail the others.
#[utoipa::path(post, path = "/v2/coupon/bulk/issue", tag = "coupons",
    request_body(content = Object, description = "{seriesIds[], customer, metadata}", content_type = "application/json"),
    responses((status = 200, description = "{response: [{entityId, result, errors, warnings}]}")))]
pub async fn bulk_issue(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let ids = body
        .get("seriesIds")
        .and_then(Value::as_array)
        .ok_or_else(|| CouponError::invalid("seriesIds must list series ids"))?;
    if ids.is_empty() || ids.len() > SERIES_PER_REQUEST_MAX {
        return Err(CouponError::invalid(format!(
            "seriesIds must list 1 to {SERIES_PER_REQUEST_MAX} series"
        ))
        .into());
    }
    let ids = ids
        .iter()
        .map(|v| {
            integer(Some(v), "seriesIds[]")
                .and_then(|id| id.ok_or_else(|| CouponError::invalid("seriesIds[] must be ids")))
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let customer = customer_ref(body.get("customer"), country_code(&headers).as_deref())?;
    {
        let mut conn = state.db.read().await?;
        service::find_customer(&mut conn, principal.org, &customer).await?;
    }
    let ctx = IssueContext::api(&principal, metadata(body.get("metadata"))?);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let result =
            service::issue(&state.db, principal.org, id, &customer, 1, &ctx, now_millis()).await;
        out.push(match result {
            Ok(outcome) => {
                let result = outcome
                    .coupons
                    .first()
                    .map(|c| issued_json(&outcome.series, &c.coupon, CodeCase::Upper))
                    .unwrap_or(Value::Null);
                json!({"entityId": id, "result": result, "errors": [], "warnings": warnings_json(&outcome)})
            }
            Err(CouponError::Db(e)) => return Err(e.into()),
            Err(e) => json!({"entityId": id, "result": null, "warnings": [],
                "errors": [{"status": false, "code": e.code().info().code, "message": e.to_string()}]}),
        });
    }
    Ok(axum::Json(json!({"response": out, "warnings": []})).into_response())
}

/// `POST /v2/coupon/issue/multiple` — `count` coupons (at most 500) of one series to a customer.
#[utoipa::path(post, path = "/v2/coupon/issue/multiple", tag = "coupons",
    request_body(content = Object, description = "{seriesId, count, customer, metadata}", content_type = "application/json"),
    responses((status = 200, description = "{coupons[{code, couponId}], couponConfig}"), (status = 400, description = "722, 629")))]
pub async fn issue_multiple(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let series_id = integer(body.get("seriesId"), "seriesId")?
        .ok_or_else(|| CouponError::invalid("seriesId is required"))?;
    let count = integer(body.get("count"), "count")?.unwrap_or(1);
    if !(1..=service::ISSUE_COUNT_MAX).contains(&count) {
        return Err(CouponError::invalid(format!(
            "count must be 1 to {}",
            service::ISSUE_COUNT_MAX
        ))
        .into());
    }
    let customer = customer_ref(body.get("customer"), country_code(&headers).as_deref())?;
    let ctx = IssueContext::api(&principal, metadata(body.get("metadata"))?);
    let outcome =
        service::issue(&state.db, principal.org, series_id, &customer, count, &ctx, now_millis())
            .await?;
    let coupons: Vec<Value> = outcome
        .coupons
        .iter()
        .map(|c| json!({"code": c.coupon.code.to_uppercase(), "couponId": c.coupon.id}))
        .collect();
    Ok(axum::Json(json!({"coupons": coupons, "couponConfig": outcome.series.render(),
        "warnings": warnings_json(&outcome)}))
    .into_response())
}

/// Reads the shared redemption fields of a v2 body.
fn redeem_context(principal: &Principal, body: &Value) -> Result<RedeemContext, CouponError> {
    if let Some(at) = body.get("redemptionTime").filter(|v| !v.is_null() && v.as_str() != Some(""))
    {
        // Read to refuse malformed values; the redemption happens now (as the spec says the
        // platform does).
        parse_instant("redemptionTime", at, chrono_tz::UTC)?;
    }
    let custom_fields = match body.get("customFields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|f| {
                Some((
                    text(f, "name").or_else(|| text(f, "key"))?,
                    json!(text(f, "value").unwrap_or_default()),
                ))
            })
            .collect(),
        Some(_) => {
            return Err(CouponError::invalid(
                "customFields must be an object or a list of {name, value}",
            ));
        }
    };
    if custom_fields.len() > 50 {
        return Err(CouponError::invalid("customFields takes at most 50 fields"));
    }
    let transaction_number = text(body, "transactionNumber").unwrap_or_default();
    if transaction_number.chars().count() > 100 {
        return Err(CouponError::invalid("transactionNumber must be at most 100 characters"));
    }
    Ok(RedeemContext {
        at: now_millis(),
        store_id: principal.store.map(|s| s.0),
        till_id: principal.till.map(|t| t.0),
        transaction_number,
        bill_amount: money(body.get("billAmount"), "billAmount")?,
        bill_id: text(body, "billId").unwrap_or_default(),
        custom_fields,
        details: String::new(),
        source: "API",
        upload_job_id: None,
        check_bill_amount: true,
        bulk: false,
        deferred_series_count: None,
        validation_code: None,
    })
}

/// The codes of `redemptionRequestList[]` (or a top-level `code`).
fn codes_of(body: &Value) -> Result<Vec<CodeRef>, CouponError> {
    let list = match body.get("redemptionRequestList") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => match text(body, "code") {
            Some(code) => vec![json!({"code": code})],
            None => Vec::new(),
        },
        Some(_) => {
            return Err(CouponError::invalid("redemptionRequestList must be a list of {code}"));
        }
    };
    if list.is_empty() {
        return Err(CouponError::invalid("redemptionRequestList must list at least one {code}"));
    }
    if list.len() > REDEEM_CODES_MAX {
        return Err(CouponError::invalid(format!(
            "At most {REDEEM_CODES_MAX} coupons can be redeemed in one request"
        )));
    }
    list.iter()
        .map(|item| match text(item, "code") {
            Some(code) => Ok(CodeRef::Code(code)),
            None => Err(CouponError::invalid("redemptionRequestList[].code is required")),
        })
        .collect()
}

fn refusal(codes: &[CodeRef], (index, e): (usize, CouponError)) -> ApiError {
    let e = match e {
        CouponError::Db(db) => return db.into(),
        e => e,
    };
    let code = codes.get(index).map(CodeRef::shown).unwrap_or_default();
    let mut error = ApiError::from(e);
    if !code.is_empty() && !error.message.contains(&code) {
        error.message = format!("{} (coupon {code})", error.message).into();
    }
    error
}

/// `POST /v2/coupon/redeem` — redeems a coupon (or the few listed) for a customer; raises the
/// redemption event per coupon.
#[utoipa::path(post, path = "/v2/coupon/redeem", tag = "coupons",
    request_body(content = Object, description = "{redemptionRequestList[{code}] | code, user, transactionNumber, billAmount, redemptionTime, customFields}", content_type = "application/json"),
    responses((status = 200, description = "{redemptionId, redemptionIds, code, status, redemption[]}"), (status = 400, description = "660, 702, 703, 706, 709-716, 718, 723, 725, 629")))]
pub async fn redeem(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let codes = codes_of(&body)?;
    let customer = customer_ref(
        body.get("user").or_else(|| body.get("customer")),
        country_code(&headers).as_deref(),
    )?;
    let ctx = redeem_context(&principal, &body)?;
    let (_, done) = service::redeem(&state.db, &principal, &codes, &customer, &ctx)
        .await
        .map_err(|e| refusal(&codes, e))?;
    let ids: Vec<i64> = done.iter().map(|d| d.redemption_id).collect();
    let redemption: Vec<Value> = done
        .iter()
        .map(|d| {
            let c = &d.quote.series.config;
            json!({"id": d.redemption_id, "code": d.quote.coupon.code.to_uppercase(),
                "couponId": d.quote.coupon.id, "seriesId": d.quote.coupon.series_id,
                "discountCode": c.discount_code, "seriesCode": c.series_code,
                "isAbsolute": c.discount_type == super::model::DiscountType::Abs,
                "couponValue": Fixed(c.discount_value).to_f64(),
                "discountType": c.discount_type.as_str(), "discountValue": Fixed(c.discount_value).to_f64(),
                "discountUpto": Fixed(c.discount_upto).to_f64(),
                "currencyInput": false, "localToBaseCurrencyExchangeRate": 1.0,
                "appendedErrorMessage": "", "warnings": [],
                "status": {"status": true, "code": 700, "message": "Coupon processed successfully"}})
        })
        .collect();
    Ok(axum::Json(json!({
        "redemptionId": ids.first(),
        "redemptionIds": ids,
        "code": done.iter().map(|d| d.quote.coupon.code.to_uppercase()).collect::<Vec<_>>(),
        "status": {"status": true, "code": 700, "message": "Coupon processed successfully"},
        "redemption": redemption,
        "warnings": [],
    }))
    .into_response())
}

/// `POST /v2/coupon/bulk/redeem` — redeems up to 50 codes for a customer, all or nothing; with
/// `is_redeemable=true` only checks them.
#[utoipa::path(post, path = "/v2/coupon/bulk/redeem", tag = "coupons",
    params(("is_redeemable" = Option<bool>, Query, description = "true: check only, redeem nothing")),
    request_body(content = Object, description = "{redemptionRequestList[{code}], user, transactionNumber, billAmount, redemptionTime}", content_type = "application/json"),
    responses((status = 200, description = "{redemptionIds, code, warnings}"), (status = 400, description = "629 above 50 codes; the first refusal otherwise")))]
pub async fn bulk_redeem(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let params = Params(params);
    let check_only = params.get("is_redeemable").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let codes = codes_of(&body)?;
    let customer = customer_ref(
        body.get("user").or_else(|| body.get("customer")),
        country_code(&headers).as_deref(),
    )?;
    let ctx = redeem_context(&principal, &body)?;
    let shown: Vec<String>;
    let ids: Vec<i64>;
    if check_only {
        let customer = {
            let mut conn = state.db.read().await?;
            service::find_customer(&mut conn, principal.org, &customer).await?
        };
        let quotes = service::check(&state.db, &principal, &codes, &customer, &ctx)
            .await
            .map_err(|e| refusal(&codes, e))?;
        shown = quotes.iter().map(|q| q.coupon.code.to_uppercase()).collect();
        ids = Vec::new();
    } else {
        let (_, done) = service::redeem(&state.db, &principal, &codes, &customer, &ctx)
            .await
            .map_err(|e| refusal(&codes, e))?;
        shown = done.iter().map(|d| d.quote.coupon.code.to_uppercase()).collect();
        ids = done.iter().map(|d| d.redemption_id).collect();
    }
    Ok(axum::Json(json!({"redemptionIds": ids, "code": shown, "isRedeemable": true,
        "redeemed": !check_only, "warnings": []}))
    .into_response())
}

/// The series block of is_redeemable answers (`details=true`: discount, expiry, limits;
/// `extended`: the whole series).
fn series_details(series: &Series, details: &str) -> Value {
    if details.eq_ignore_ascii_case("extended") {
        return series.render();
    }
    let c = &series.config;
    json!({"id": series.id(), "description": c.description, "discountCode": c.discount_code,
        "discountType": c.discount_type.as_str(), "discountValue": Fixed(c.discount_value).to_f64(),
        "discountUpto": Fixed(c.discount_upto).to_f64(), "discountOn": c.discount_on,
        "validTillDate": iso_utc(series.row.valid_till_at), "maxRedeem": c.max_redeem,
        "redemptionPerCouponMaxLimit": c.redemption_per_coupon_max_limit,
        "maxRedemptionsInSeriesPerUser": c.max_redemptions_in_series_per_user,
        "isMultipleUseAllowed": c.multiple_use_allowed, "anyUser": c.any_user})
}

/// Checks each code on its own for `customer`: a redeemable quote or the refusal.
pub(crate) async fn check_each(
    state: &AppState,
    principal: &Principal,
    customer: &CustomerRow,
    codes: &[String],
) -> Result<Vec<(String, Result<Quote, CouponError>)>, ApiError> {
    let ctx = RedeemContext {
        at: now_millis(),
        store_id: principal.store.map(|s| s.0),
        till_id: principal.till.map(|t| t.0),
        source: "API",
        check_bill_amount: false,
        ..RedeemContext::default()
    };
    let mut out = Vec::with_capacity(codes.len());
    for code in codes {
        let refs = [CodeRef::Code(code.clone())];
        match service::check(&state.db, principal, &refs, customer, &ctx).await {
            Ok(mut quotes) => match quotes.pop() {
                Some(q) => out.push((code.clone(), Ok(q))),
                None => out.push((code.clone(), Err(CouponError::CodeNotFound(code.clone())))),
            },
            Err((_, CouponError::Db(e))) => return Err(e.into()),
            // A bill amount is not part of a check: a series that needs one is still redeemable.
            Err((_, e)) => out.push((code.clone(), Err(e))),
        }
    }
    Ok(out)
}

/// `GET /v2/coupon/is_redeemable` — whether each code can be redeemed by the customer now
/// (reads only; never consumes a redemption).
#[utoipa::path(get, path = "/v2/coupon/is_redeemable", tag = "coupons",
    params(("code" = String, Query, description = "Codes, comma separated"), ("details" = Option<String>, Query, description = "true or extended"),
        ("mobile" = Option<String>, Query), ("email" = Option<String>, Query), ("externalId" = Option<String>, Query), ("id" = Option<i64>, Query)),
    responses((status = 200, description = "{redemption[], user, warnings}"), (status = 404, description = "701 customer not found")))]
pub async fn is_redeemable(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let codes = params.all("code");
    if codes.is_empty() || codes.len() > REDEEM_CODES_MAX {
        return Err(
            CouponError::invalid(format!("code must list 1 to {REDEEM_CODES_MAX} codes")).into()
        );
    }
    let case = CodeCase::parse(params.get("coupon_code_case"))?;
    let details = params.get("details").unwrap_or("").to_string();
    let reference =
        customer_ref_of(|k| params.get(k).map(str::to_string), country_code(&headers).as_deref())?;
    let customer = {
        let mut conn = state.db.read().await?;
        service::find_customer(&mut conn, principal.org, &reference).await?
    };
    let results = check_each(&state, &principal, &customer, &codes).await?;
    let items: Vec<Value> = results
        .iter()
        .map(|(code, result)| match result {
            Ok(q) => {
                let c = &q.series.config;
                let mut item = json!({"code": case.show(&q.coupon.code), "isRedeemable": true,
                    "isAbsolute": c.discount_type == super::model::DiscountType::Abs,
                    "redemptionsLeft": q.redemptions_left.unwrap_or(-1),
                    "numberOfRedemptionsByUser": q.redemptions_by_customer,
                    "discountType": c.discount_type.as_str(), "discountValue": Fixed(c.discount_value).to_f64(),
                    "currencyInput": false, "localToBaseCurrencyExchangeRate": 1.0,
                    "appendedErrorMessage": "", "warnings": [],
                    "status": {"status": true, "code": 700, "message": "Coupon is redeemable"}});
                if !details.is_empty() && details != "false" {
                    item["couponseries"] = series_details(&q.series, &details);
                }
                item
            }
            Err(e) => json!({"code": case.show(code), "isRedeemable": false, "redemptionsLeft": 0,
                "numberOfRedemptionsByUser": 0, "appendedErrorMessage": e.to_string(), "warnings": [],
                "status": {"status": false, "code": e.code().info().code, "message": e.to_string()}}),
        })
        .collect();
    let user = customer_json(&state, &principal, &customer).await?;
    let profile = &user["profiles"][0];
    Ok(axum::Json(json!({
        "redemption": items,
        "user": {"userId": customer.id, "firstName": customer.first_name, "lastName": customer.last_name,
            "accountId": "", "identifiers": profile["identifiers"].clone(), "commChannels": []},
        "warnings": [],
    }))
    .into_response())
}

/// `POST /v2/coupon/reactivate` — reverses a redemption (the one named, else the coupon's latest)
/// so that the coupon can be redeemed again.
#[utoipa::path(post, path = "/v2/coupon/reactivate", tag = "coupons",
    request_body(content = Object, description = "{code | couponId, customer, redemptionId}", content_type = "application/json"),
    responses((status = 200, description = "The coupon, redeemable again"), (status = 400, description = "661 no redemption"), (status = 404, description = "510 invalid redemption id, 719 unknown code")))]
pub async fn reactivate(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let code = match (text(&body, "code"), integer(body.get("couponId"), "couponId")?) {
        (_, Some(id)) => CodeRef::Id(id),
        (Some(code), None) => CodeRef::Code(code),
        (None, None) => return Err(CouponError::invalid("code or couponId is required").into()),
    };
    let customer = match body.get("customer").filter(|v| !v.is_null()) {
        Some(v) => Some(customer_ref(Some(v), country_code(&headers).as_deref())?),
        None => None,
    };
    let redemption = integer(body.get("redemptionId"), "redemptionId")?;
    let done = service::reactivate(
        &state.db,
        &principal,
        &code,
        customer.as_ref(),
        redemption,
        now_millis(),
    )
    .await?;
    let state_now = service::state_of(&done.coupon, &done.series, now_millis());
    let mut reply = issued_json(&done.series, &done.coupon, CodeCase::Upper);
    reply["reactivatedRedemptionId"] = json!(done.redemption.id);
    reply["isRedeemable"] = json!(state_now.redeemable);
    reply["status"] = json!({"status": true, "code": 700, "message": "Coupon reactivated"});
    reply["warnings"] = json!([]);
    Ok(axum::Json(reply).into_response())
}

/// A coupon as the v2 reads show it.
pub(crate) fn coupon_json(d: &CouponDetails, case: CodeCase, show_series: bool) -> Value {
    let mut v = issued_json(&d.series, &d.coupon, case);
    let status = if d.coupon.is_revoked() {
        "REVOKED"
    } else {
        match (d.state.expired, d.state.redeemed) {
            (false, false) => "ACTIVE_UNREDEEMED",
            (false, true) => "ACTIVE_REDEEMED",
            (true, false) => "EXPIRED_UNREDEEMED",
            (true, true) => "EXPIRED_REDEEMED",
        }
    };
    v["id"] = json!(d.coupon.id);
    v["issuedTo"] = json!(d.coupon.customer_id);
    v["issuedAt"] = json!(d.coupon.issued_at.map(iso_utc));
    v["issuedOn"] = json!(d.coupon.issued_at.map(iso_utc));
    v["status"] = json!(status);
    v["isRedeemable"] = json!(d.state.redeemable);
    v["redemptions"] = Value::Array(
        d.redemptions
            .iter()
            .map(|r| {
                json!({"id": r.id, "redemptionId": r.id, "customerId": r.customer_id,
                    "redemptionTime": iso_utc(r.redeemed_at), "transactionNumber": r.transaction_number,
                    "billAmount": r.bill_amount.map(|a| Fixed(a).to_f64()), "billId": r.bill_id,
                    "storeId": r.store_id, "tillId": r.till_id, "reversed": r.reversed,
                    "customFields": serde_json::from_str::<Value>(&r.custom_fields).unwrap_or(json!({}))})
            })
            .collect(),
    );
    if show_series {
        v["series"] = d.series.render();
    }
    v
}

/// `GET /v2/coupon` — coupons by `couponIds`, `couponCodes` (repeatable or comma separated) or
/// `issuedToIds`; a list.
#[utoipa::path(get, path = "/v2/coupon", tag = "coupons",
    params(("couponIds" = Option<String>, Query), ("couponCodes" = Option<String>, Query), ("issuedToIds" = Option<String>, Query),
        ("showCouponSeries" = Option<bool>, Query), ("coupon_code_case" = Option<String>, Query, description = "LOWER, UPPER (default) or AS_IT_IS")),
    responses((status = 200, description = "The coupons")))]
pub async fn get_coupons(
    State(state): State<AppState>,
    principal: Principal,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let case = CodeCase::parse(params.get("coupon_code_case"))?;
    let show_series =
        params.get("showCouponSeries").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let ids = params
        .all("couponIds")
        .iter()
        .map(|s| s.parse::<i64>().map_err(|_| CouponError::invalid("couponIds must be ids")))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = params
        .all("couponCodes")
        .iter()
        .map(|c| super::model::code_key(c))
        .collect::<Result<Vec<_>, _>>()?;
    let issued_to = params
        .all("issuedToIds")
        .iter()
        .map(|s| {
            s.parse::<i64>().map_err(|_| CouponError::invalid("issuedToIds must be customer ids"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() && keys.is_empty() && issued_to.is_empty() {
        return Err(
            CouponError::invalid("couponIds, couponCodes or issuedToIds is required").into()
        );
    }
    if ids.len() + keys.len() > COUPONS_PER_READ_MAX || issued_to.len() > ISSUED_TO_MAX {
        return Err(CouponError::invalid(format!(
            "At most {COUPONS_PER_READ_MAX} coupons and {ISSUED_TO_MAX} customers per request"
        ))
        .into());
    }
    let mut conn = state.db.read().await?;
    let org = principal.org;
    let mut rows = if ids.is_empty() && keys.is_empty() {
        let mut all = Vec::new();
        for customer in &issued_to {
            all.extend(
                store::coupons_of_customer(
                    &mut conn,
                    org,
                    *customer,
                    None,
                    service::CUSTOMER_COUPONS_MAX,
                )
                .await?,
            );
        }
        all
    } else {
        let found =
            store::coupons_by(&mut conn, org, &ids, &keys, COUPONS_PER_READ_MAX as i64).await?;
        found
            .into_iter()
            .filter(|c| {
                issued_to.is_empty() || c.customer_id.is_some_and(|id| issued_to.contains(&id))
            })
            .collect()
    };
    rows.sort_by_key(|c| c.id);
    let details = service::details(&mut conn, org, rows, now_millis()).await?;
    let list: Vec<Value> = details.iter().map(|d| coupon_json(d, case, show_series)).collect();
    Ok(axum::Json(Value::Array(list)).into_response())
}

/// A customer's coupons filtered by status (several filters: any of them).
pub(crate) async fn customer_coupons(
    state: &AppState,
    principal: &Principal,
    customer: i64,
    series: Option<i64>,
    filters: &[StatusFilter],
) -> Result<Vec<CouponDetails>, ApiError> {
    let mut conn = state.db.read().await?;
    let rows = store::coupons_of_customer(
        &mut conn,
        principal.org,
        customer,
        series,
        service::CUSTOMER_COUPONS_MAX,
    )
    .await?;
    let details = service::details(&mut conn, principal.org, rows, now_millis()).await?;
    Ok(details
        .into_iter()
        // A revoked coupon is listed only when no status filter is asked for.
        .filter(|d| {
            filters.is_empty()
                || (!d.coupon.is_revoked()
                    && filters
                        .iter()
                        .any(|f| f.admits(d.state.expired, d.state.redeemed, d.state.redeemable)))
        })
        .collect())
}

/// `GET /v2/customers/coupons` — a customer's coupons with status filters and paging.
#[utoipa::path(get, path = "/v2/customers/coupons", tag = "coupons",
    params(("mobile" = Option<String>, Query), ("email" = Option<String>, Query), ("externalId" = Option<String>, Query), ("id" = Option<i64>, Query),
        ("status" = Option<String>, Query, description = "REDEEMED, UNREDEEMED, ACTIVE, EXPIRED, ACTIVE_REDEEMED, ACTIVE_UNREDEEMED, EXPIRED_REDEEMED, EXPIRED_UNREDEEMED, REDEEMABLE (repeatable)"),
        ("coupon_code_case" = Option<String>, Query), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "{limit, offset, total, customers[{…, coupons[]}]}"), (status = 404, description = "701 customer not found")))]
pub async fn all_customer_coupons(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let case = CodeCase::parse(params.get("coupon_code_case"))?;
    let filters = params
        .all("status")
        .iter()
        .map(|s| StatusFilter::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let limit = match params.get("limit") {
        None => PAGE_DEFAULT,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=PAGE_MAX).contains(l))
            .ok_or_else(|| CouponError::invalid(format!("limit must be 1 to {PAGE_MAX}")))?,
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| CouponError::invalid("offset must be 0 or more"))?,
    };
    let reference =
        customer_ref_of(|k| params.get(k).map(str::to_string), country_code(&headers).as_deref())?;
    let customer = {
        let mut conn = state.db.read().await?;
        service::find_customer(&mut conn, principal.org, &reference).await?
    };
    let all = customer_coupons(&state, &principal, customer.id, None, &filters).await?;
    let total = all.len() as i64;
    let page: Vec<Value> = all
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|d| coupon_json(d, case, false))
        .collect();
    let user = customer_json(&state, &principal, &customer).await?;
    let identifier = |kind: &str| {
        user["profiles"][0]["identifiers"]
            .as_array()
            .and_then(|ids| ids.iter().find(|i| i["type"] == kind))
            .map(|i| i["value"].clone())
            .unwrap_or(Value::Null)
    };
    Ok(axum::Json(json!({
        "limit": limit, "offset": offset, "total": total,
        "customers": [{"id": customer.id, "firstname": customer.first_name, "lastname": customer.last_name,
            "mobile": identifier("mobile"), "email": identifier("email"), "externalId": identifier("externalId"),
            "coupons": page}],
        "warnings": [],
    }))
    .into_response())
}

/// `GET /v2/customers/{customerId}/coupons` — the detailed variant: every coupon of the customer
/// with its series.
#[utoipa::path(get, path = "/v2/customers/{customerId}/coupons", tag = "coupons",
    params(("customerId" = i64, Path), ("coupon_code_case" = Option<String>, Query)),
    responses((status = 200, description = "{customerId, coupons[]}"), (status = 404, description = "701 customer not found")))]
pub async fn detailed_customer_coupons(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let params = Params(params);
    let case = CodeCase::parse(params.get("coupon_code_case"))?;
    let customer = {
        let mut conn = state.db.read().await?;
        service::find_customer(&mut conn, principal.org, &CustomerRef::Id(id)).await?
    };
    let all = customer_coupons(&state, &principal, customer.id, None, &[]).await?;
    let list: Vec<Value> = all.iter().map(|d| coupon_json(d, case, true)).collect();
    Ok(axum::Json(json!({"customerId": customer.id, "coupons": list, "warnings": []}))
        .into_response())
}

/// `PUT /v2/coupon/redeem` — adds bill data to earlier redemptions.
#[utoipa::path(put, path = "/v2/coupon/redeem", tag = "coupons",
    request_body(content = Object, description = "{redemptions[{redemptionId, billAmount, transactionNumber, billId, customFields}], user}", content_type = "application/json"),
    responses((status = 200, description = "{redemptions[{redemptionId, status}]}")))]
pub async fn update_redeem(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let list = body
        .get("redemptions")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or(CouponError::NoRedemptionId)?;
    if list.len() > REDEMPTION_UPDATES_MAX {
        return Err(CouponError::invalid(format!(
            "At most {REDEMPTION_UPDATES_MAX} redemptions per request"
        ))
        .into());
    }
    let customer = match body.get("user").filter(|v| !v.is_null()) {
        Some(v) => Some(customer_ref(Some(v), country_code(&headers).as_deref())?),
        None => None,
    };
    let mut updates = Vec::with_capacity(list.len());
    let mut parse_errors: Vec<Option<CouponError>> = Vec::with_capacity(list.len());
    for item in list {
        let parsed: Result<RedemptionUpdate, CouponError> = (|| {
            let custom_fields = match item.get("customFields") {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => Some(m.clone()),
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .filter_map(|f| {
                            Some((
                                text(f, "name").or_else(|| text(f, "key"))?,
                                json!(text(f, "value").unwrap_or_default()),
                            ))
                        })
                        .collect(),
                ),
                Some(_) => {
                    return Err(CouponError::invalid("customFields must be an object or a list"));
                }
            };
            Ok(RedemptionUpdate {
                redemption_id: integer(item.get("redemptionId"), "redemptionId")?,
                bill_amount: money(item.get("billAmount"), "billAmount")?,
                transaction_number: text(item, "transactionNumber"),
                bill_id: text(item, "billId"),
                custom_fields,
            })
        })();
        match parsed {
            Ok(u) => {
                updates.push(u);
                parse_errors.push(None);
            }
            Err(e) => {
                updates.push(RedemptionUpdate {
                    redemption_id: None,
                    bill_amount: None,
                    transaction_number: None,
                    bill_id: None,
                    custom_fields: None,
                });
                parse_errors.push(Some(e));
            }
        }
    }
    let valid: Vec<RedemptionUpdate> = updates
        .iter()
        .zip(&parse_errors)
        .filter(|(_, e)| e.is_none())
        .map(|(u, _)| u.clone())
        .collect();
    let mut results =
        service::update_redemptions(&state.db, &principal, customer.as_ref(), &valid, now_millis())
            .await?
            .into_iter();
    let mut out = Vec::with_capacity(list.len());
    for (update, error) in updates.iter().zip(parse_errors) {
        let result = match error {
            Some(e) => Err(e),
            None => results.next().unwrap_or(Err(CouponError::NoRedemptionId)),
        };
        out.push(match result {
            Ok(id) => json!({"redemptionId": id, "status": {"success": true, "code": 700, "message": "Redemption updated"}}),
            Err(e) => json!({"redemptionId": update.redemption_id,
                "status": {"success": false, "code": e.code().info().code, "message": e.to_string()}}),
        });
    }
    Ok(axum::Json(json!({"redemptions": out, "warnings": []})).into_response())
}

/// `PUT /v2/coupon/bulk/expiry` — sets the expiry of up to 100 codes of a series.
#[utoipa::path(put, path = "/v2/coupon/bulk/expiry", tag = "coupons",
    request_body(content = Object, description = "{couponSeriesId, customer, couponCodes[{couponCode, expiryDate}]}", content_type = "application/json"),
    responses((status = 200, description = "{couponCodes[{couponCode, expiryDate, status}]}"), (status = 400, description = "629 above 100 codes")))]
pub async fn update_expiry(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let series_id = integer(body.get("couponSeriesId"), "couponSeriesId")?
        .ok_or_else(|| CouponError::invalid("couponSeriesId is required"))?;
    let list =
        body.get("couponCodes").and_then(Value::as_array).filter(|l| !l.is_empty()).ok_or_else(
            || CouponError::invalid("couponCodes must list {couponCode, expiryDate}"),
        )?;
    if list.len() > EXPIRY_CODES_MAX {
        return Err(
            CouponError::invalid(format!("At most {EXPIRY_CODES_MAX} codes per request")).into()
        );
    }
    let customer = match body.get("customer").filter(|v| !v.is_null()) {
        Some(v) => Some(customer_ref(Some(v), country_code(&headers).as_deref())?),
        None => None,
    };
    let items: Vec<(String, Result<i64, CouponError>)> = list
        .iter()
        .map(|item| {
            let code = text(item, "couponCode").unwrap_or_default();
            let expiry = match item.get("expiryDate").filter(|v| !v.is_null()) {
                Some(v) => parse_instant("expiryDate", v, chrono_tz::UTC).map(|(t, _)| t),
                None => Err(CouponError::invalid("expiryDate is required")),
            };
            (code, expiry)
        })
        .collect();
    let results = service::update_expiry(
        &state.db,
        &principal,
        series_id,
        customer.as_ref(),
        &items,
        now_millis(),
    )
    .await?;
    let out: Vec<Value> = items
        .iter()
        .zip(results)
        .map(|((code, _), result)| match result {
            Ok(t) => json!({"couponCode": code, "expiryDate": iso_utc(t),
                "status": {"success": true, "code": 700, "message": "Expiry date updated"}}),
            Err(e) => json!({"couponCode": code, "expiryDate": null,
                "status": {"success": false, "code": e.code().info().code, "message": e.to_string()}}),
        })
        .collect();
    Ok(axum::Json(json!({"couponCodes": out, "warnings": []})).into_response())
}

/// `POST /v2/coupon/revoke` — revokes unredeemed coupons (named codes, or a customer's coupons of
/// a series).
#[utoipa::path(post, path = "/v2/coupon/revoke", tag = "coupons",
    request_body(content = Object, description = "{couponSeriesId, customer, couponCodes[], couponCodeCase}", content_type = "application/json"),
    responses((status = 200, description = "{totalCount, failedCount, revokedCoupons[], failedCoupons[]}"), (status = 400, description = "629")))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let case = CodeCase::parse(text(&body, "couponCodeCase").as_deref())?;
    let series_id = integer(body.get("couponSeriesId"), "couponSeriesId")?;
    let codes: Vec<String> = match body.get("couponCodes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| CouponError::invalid("couponCodes must be a list of codes"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(CouponError::invalid("couponCodes must be a list of codes").into()),
    };
    if codes.len() > REVOKE_CODES_MAX {
        return Err(
            CouponError::invalid(format!("At most {REVOKE_CODES_MAX} codes per request")).into()
        );
    }
    if series_id.is_none() && codes.len() != 1 {
        return Err(CouponError::invalid(
            "couponSeriesId is required unless exactly one code is given",
        )
        .into());
    }
    let customer = match body.get("customer").filter(|v| !v.is_null()) {
        Some(v) => Some(customer_ref(Some(v), country_code(&headers).as_deref())?),
        None => None,
    };
    let outcome =
        service::revoke(&state.db, &principal, series_id, customer.as_ref(), &codes, now_millis())
            .await?;
    let revoked: Vec<Value> = outcome
        .revoked
        .iter()
        .map(|c| json!({"couponId": c.id, "couponCode": case.show(&c.code), "issuedTo": c.customer_id}))
        .collect();
    let failed: Vec<Value> = outcome
        .failed
        .iter()
        .map(|(code, e)| json!({"couponCode": case.show(code), "errorCode": e.code().info().code, "errorMessage": e.to_string()}))
        .collect();
    Ok(axum::Json(json!({"totalCount": revoked.len() + failed.len(), "failedCount": failed.len(),
        "revokedCoupons": revoked, "failedCoupons": failed, "warnings": []}))
    .into_response())
}

/// Query of `GET /x/neo/couponRedemption/customFields`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct RedemptionFieldsQuery {
    redemption_id: Option<i64>,
    customer_id: Option<i64>,
}

/// `GET /x/neo/couponRedemption/customFields` — the custom fields captured when a coupon was
/// redeemed (name/value pairs, in the order sent). A redemption of another customer, or none,
/// answers an empty list, as the other Neo reads do.
#[utoipa::path(get, path = "/x/neo/couponRedemption/customFields", tag = "coupons", params(RedemptionFieldsQuery),
    responses((status = 200, description = "The redemption's custom fields"), (status = 400, description = "Missing or bad parameter")))]
pub async fn redemption_custom_fields(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<RedemptionFieldsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let redemption = q
        .redemption_id
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid("redemption_id is required (a positive id)"))?;
    let customer = q
        .customer_id
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid("customer_id is required (a positive id)"))?;
    let mut conn = state.db.read().await?;
    let row = store::get_redemption(&mut conn, principal.org, redemption, false).await?;
    let data: Vec<Value> = row
        .filter(|r| r.customer_id == customer)
        .and_then(|r| serde_json::from_str::<Map<String, Value>>(&r.custom_fields).ok())
        .map(|fields| {
            fields
                .into_iter()
                .map(|(name, value)| {
                    json!({"redemption_id": redemption, "customer_id": customer,
                           "name": name, "value": value})
                })
                .collect()
        })
        .unwrap_or_default();
    let count = data.len();
    Ok(axum::Json(json!({"data": data, "page": 1, "count": count})).into_response())
}
