//! v2 transaction APIs: add (single and bulk, sales and returns), update, reads, simulation and
//! the evaluation log, in the v2 wire shapes.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::{
    BillInput, LineInput, ReturnType, TransactionError, TransactionType, non_negative,
};
use super::service::{self, AddRequest, Evaluation, SideEffect};
use super::store::{self, LineRow, TransactionRow};
use super::{rejections, routes_rejections, time};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::routes_v2::{LookupQuery, country_code};
use crate::db::{Connection, now_millis};
use crate::error::{ApiError, Code};
use crate::http::envelope::{Enveloped, v2_list};
use crate::http::extract::{Json, Path, Query, from_value};
use crate::org::model::{OrgId, StoreId};
use crate::points::model::Fixed;

/// Items per bulk request.
pub const BULK_MAX: usize = 100;
/// Rows per page of transaction lists.
const PAGE_MAX: i64 = 1_000;

/// Query of the single add and update: who the bill is for and how to process it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct AddQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    #[serde(rename = "use_asynch", alias = "use_async")]
    use_asynch: Option<bool>,
    raw_side_effects: Option<bool>,
}

/// A v2 line item.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineBody {
    item_code: Option<String>,
    description: Option<String>,
    #[schema(value_type = Option<f64>)]
    qty: Option<Value>,
    #[schema(value_type = Option<f64>)]
    rate: Option<Value>,
    #[schema(value_type = Option<f64>)]
    value: Option<Value>,
    #[schema(value_type = Option<f64>)]
    discount: Option<Value>,
    #[schema(value_type = Option<f64>)]
    amount: Option<Value>,
    serial: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    extended_fields: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    custom_fields: Option<Map<String, Value>>,
}

/// The v2 bill body (single add; bulk items add the identifier fields).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    bill_number: Option<String>,
    billing_date: Option<String>,
    #[schema(value_type = Option<f64>)]
    bill_amount: Option<Value>,
    #[schema(value_type = Option<f64>)]
    gross_amount: Option<Value>,
    #[schema(value_type = Option<f64>)]
    discount: Option<Value>,
    note: Option<String>,
    delivery_status: Option<String>,
    outlier_status: Option<String>,
    not_interested_reason: Option<String>,
    return_type: Option<String>,
    parent_bill_number: Option<String>,
    /// The original sale's transaction id, for returns of numbers that repeat across stores.
    transaction_id: Option<i64>,
    purchase_time: Option<String>,
    add_with_local_currency: Option<bool>,
    currency_code: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    payment_modes: Option<Vec<Value>>,
    line_items_v2: Option<Vec<LineBody>>,
    #[schema(value_type = Option<Object>)]
    extended_fields: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    custom_fields: Option<Map<String, Value>>,
    // Bulk items carry their customer in the body.
    identifier_type: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
}

fn wire_line(index: usize, line: LineBody) -> Result<LineInput, TransactionError> {
    let field = |name: &str| format!("lineItemsV2[{index}].{name}");
    let qty = non_negative(&field("qty"), line.qty.as_ref(), Code::NegativeQty)?;
    let rate = non_negative(&field("rate"), line.rate.as_ref(), Code::NegativeLineRate)?;
    let discount =
        non_negative(&field("discount"), line.discount.as_ref(), Code::NegativeLineDiscount)?;
    let value = match line.value.as_ref().filter(|v| !v.is_null()) {
        Some(v) => non_negative(&field("value"), Some(v), Code::NegativeLineValue)?,
        None => rate
            .to_decimal()
            .checked_mul(qty.to_decimal())
            .and_then(Fixed::from_decimal)
            .unwrap_or_default(),
    };
    let amount = match line.amount.as_ref().filter(|v| !v.is_null()) {
        Some(v) => non_negative(&field("amount"), Some(v), Code::NegativeLineAmount)?,
        None => Fixed((value - discount).0.max(0)),
    };
    let is_return = match line.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
        None => false,
        Some(k) if k.eq_ignore_ascii_case("REGULAR") => false,
        Some(k) if k.eq_ignore_ascii_case("RETURN") => true,
        Some(k) => {
            return Err(TransactionError::coded(
                Code::InvalidInput,
                format!("{} '{k}' must be REGULAR or RETURN", field("type")),
            ));
        }
    };
    Ok(LineInput {
        serial: line.serial.unwrap_or(index as i64 + 1),
        is_return,
        item_code: line.item_code.unwrap_or_default().trim().to_string(),
        description: line.description.unwrap_or_default(),
        qty,
        rate,
        value,
        discount,
        amount,
        attributes: Value::Array(Vec::new()),
        extended_fields: line.extended_fields.unwrap_or_default(),
        custom_fields: line.custom_fields.unwrap_or_default(),
    })
}

impl BillBody {
    /// Parses the body into a bill; amounts and dates are checked here.
    pub(crate) fn into_input(
        self,
        tz: Tz,
        wall_clock: bool,
        now: i64,
    ) -> Result<BillInput, TransactionError> {
        let kind_text = self.kind.as_deref().unwrap_or_default();
        let kind = TransactionType::parse(kind_text).ok_or_else(|| {
            TransactionError::coded(Code::InvalidInput, format!("type '{kind_text}' must be REGULAR, RETURN, NOT_INTERESTED, NOT_INTERESTED_RETURN or MIXED"))
        })?;
        let bill_number = self.bill_number.unwrap_or_default().trim().to_string();
        let billing =
            time::parse_v2("billingDate", self.billing_date.as_deref(), tz, wall_clock, now)?;
        let amount_given = self.bill_amount.as_ref().is_some_and(|v| !v.is_null());
        let amount =
            non_negative("billAmount", self.bill_amount.as_ref(), Code::InvalidBillAmount)?;
        if !amount_given && !kind.is_return() {
            return Err(TransactionError::coded(Code::InvalidBillAmount, "billAmount is required"));
        }
        let return_type = match self.return_type.as_deref().map(str::trim).filter(|r| !r.is_empty())
        {
            Some(r) => Some(ReturnType::parse(r).ok_or_else(|| {
                TransactionError::coded(
                    Code::InvalidReturnType,
                    format!("returnType '{r}' must be FULL, LINE_ITEM or AMOUNT"),
                )
            })?),
            None if kind.is_return() => Some(ReturnType::Full),
            None => None,
        };
        if self.line_items_v2.as_ref().is_some_and(|l| l.len() > super::model::LINE_ITEMS_MAX) {
            return Err(TransactionError::coded(
                Code::InvalidInput,
                format!("lineItemsV2 holds at most {}", super::model::LINE_ITEMS_MAX),
            ));
        }
        let line_items = self
            .line_items_v2
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, l)| wire_line(i, l))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BillInput {
            kind,
            bill_number,
            billing_at: billing.millis,
            billing_offset: billing.offset,
            amount,
            gross_amount: non_negative(
                "grossAmount",
                self.gross_amount.as_ref(),
                Code::NegativeGrossAmount,
            )?,
            discount: non_negative("discount", self.discount.as_ref(), Code::NegativeDiscount)?,
            note: self.note.unwrap_or_default(),
            delivery_status: self.delivery_status.unwrap_or_default(),
            outlier_status: self.outlier_status.unwrap_or_else(|| "NORMAL".into()),
            not_interested_reason: self.not_interested_reason.unwrap_or_default(),
            return_type,
            parent_id: self.transaction_id,
            purchase_at: match self.purchase_time.as_deref() {
                Some(t) => {
                    Some(time::parse_v2("purchaseTime", Some(t), tz, wall_clock, now)?.millis)
                }
                None => None,
            },
            parent_bill_number: self.parent_bill_number,
            payment_modes: Value::Array(self.payment_modes.unwrap_or_default()),
            extended_fields: self.extended_fields.unwrap_or_default(),
            custom_fields: self.custom_fields.unwrap_or_default(),
            line_items,
            currency_code: self
                .currency_code
                .filter(|_| self.add_with_local_currency.unwrap_or(false)),
            local_amount: None,
        })
    }
}

/// `SKIP-DOWNSTREAM: true` turns the engine off for the request (import mode).
fn skip_downstream(headers: &HeaderMap) -> bool {
    headers
        .get("SKIP-DOWNSTREAM")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Everything needed to add one v2 bill, however it arrived.
struct V2Add {
    body: BillBody,
    lookup: LookupQuery,
    source: Option<String>,
    account_id: Option<String>,
    evaluation: Evaluation,
}

/// Resolves the customer and validates the bill and its fields: the request for `service::add`.
async fn prepare(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    add: V2Add,
    now: i64,
) -> Result<AddRequest, ApiError> {
    let org = principal.org;
    let store = principal.store.ok_or_else(|| ApiError::new(Code::InvalidStoreOrTill))?;
    let mut conn = state.db.read().await?;
    let (tz, _) = service::store_locale(&mut conn, org, store).await?;
    let wall_clock = store::configs(&mut conn, org, &["CONF_ORG_DISABLE_MACHINE_TIME_CONV"])
        .await?
        .first()
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true") || v == "1");
    let mut input = add.body.into_input(tz, wall_clock, now)?;
    validate_bill_fields(&mut conn, org, &mut input).await?;
    if let Some(code) = input.currency_code.clone() {
        convert_currency(&mut conn, org, &mut input, &code).await?;
    }
    let customer = if input.kind.needs_customer() {
        let (customer, _) =
            add.lookup.resolve(&mut conn, org, country_code(headers).as_deref()).await?;
        Some(customer.0)
    } else {
        None
    };
    drop(conn);
    Ok(AddRequest {
        input,
        customer,
        source: add
            .source
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "INSTORE".into()),
        account_id: add.account_id.unwrap_or_default(),
        evaluation: add.evaluation,
        api_version: "v2",
    })
}

/// Prepares and adds one bill; with `intake`, the org's rejection checks run first and a
/// rejected bill is queued instead (simulation passes none).
async fn add_one(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    add: V2Add,
    intake: Option<rejections::Intake<'_>>,
) -> Result<service::AddOutcome, ApiError> {
    let now = now_millis();
    let request = prepare(state, principal, headers, add, now).await?;
    if let Some(intake) = intake {
        rejections::screen(&state.db, principal, &request, intake, now).await?;
    }
    Ok(service::add(&state.db, &state.programs, principal, request, now).await?)
}

/// Replays a bill the sanity queue kept from a v2 add (single or bulk) through the same
/// pipeline, rejection checks included.
pub(super) async fn replay(
    state: &AppState,
    principal: &Principal,
    stored: &Value,
) -> rejections::Replay {
    let parsed = from_value::<AddQuery>(&stored["query"])
        .and_then(|q| from_value::<BillBody>(&stored["body"]).map(|b| (q, b)));
    let (q, body) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            return rejections::Replay::Failed(format!("stored request unreadable: {}", e.message));
        }
    };
    let headers = routes_rejections::headers_of(stored);
    let evaluation = evaluation_of(&headers, q.use_asynch);
    let lookup = LookupQuery::new(
        q.source.clone(),
        q.account_id.clone(),
        q.identifier_name.clone(),
        q.identifier_value.clone(),
    );
    let add = V2Add { body, lookup, source: q.source, account_id: q.account_id, evaluation };
    let now = now_millis();
    let request = match prepare(state, principal, &headers, add, now).await {
        Ok(request) => request,
        Err(e) => return rejections::Replay::from_error(&e),
    };
    routes_rejections::add_checked(state, principal, request, now).await
}

/// Checks a bill's extended fields (bill and lines) against the org's enabled ones and its
/// custom fields against the `LOYALTY_TRANSACTION` scope, normalising their values.
pub(crate) async fn validate_bill_fields(
    conn: &mut impl Connection,
    org: OrgId,
    input: &mut BillInput,
) -> Result<(), TransactionError> {
    use crate::fields::service::{validate_custom_fields, validate_extended_fields};
    input.extended_fields =
        validate_extended_fields(conn, org, "TRANSACTION", &input.extended_fields).await?;
    input.custom_fields =
        validate_custom_fields(conn, org, "LOYALTY_TRANSACTION", &input.custom_fields).await?;
    for line in &mut input.line_items {
        line.extended_fields =
            validate_extended_fields(conn, org, "LINEITEM", &line.extended_fields).await?;
    }
    Ok(())
}

/// Converts a local-currency bill into the org's base currency with the org's ratio.
pub async fn convert_currency(
    c: &mut impl Connection,
    org: OrgId,
    input: &mut BillInput,
    code: &str,
) -> Result<(), TransactionError> {
    let code = code.trim().to_ascii_uppercase();
    let base = crate::org::store::get_org(c, org)
        .await?
        .map(|o| o.currency.to_ascii_uppercase())
        .unwrap_or_default();
    // Ratios are kept against the INR pivot (`ratioInr`: INR per unit of the currency).
    let local_ratio = inr_ratio(c, org, &code).await?;
    let base_ratio = inr_ratio(c, org, &base).await?;
    let ratio = local_ratio / base_ratio;
    let convert = |f: Fixed| {
        f.to_decimal().checked_mul(ratio).and_then(Fixed::from_decimal).unwrap_or_default()
    };
    input.local_amount = Some(input.amount);
    input.amount = convert(input.amount);
    input.gross_amount = convert(input.gross_amount);
    input.discount = convert(input.discount);
    for line in &mut input.line_items {
        line.rate = convert(line.rate);
        line.value = convert(line.value);
        line.discount = convert(line.discount);
        line.amount = convert(line.amount);
    }
    input.currency_code = Some(code);
    Ok(())
}

/// INR per unit of `currency` (1 for INR itself); an unknown currency is refused.
async fn inr_ratio(
    c: &mut impl Connection,
    org: OrgId,
    currency: &str,
) -> Result<rust_decimal::Decimal, TransactionError> {
    if currency == "INR" {
        return Ok(rust_decimal::Decimal::ONE);
    }
    store::currency_ratio(c, org, currency)
        .await?
        .and_then(|r| r.parse::<rust_decimal::Decimal>().ok())
        .filter(|r| r.is_sign_positive() && !r.is_zero())
        .ok_or_else(|| {
            TransactionError::coded(
                Code::InvalidInput,
                format!("no conversion ratio for currency {currency}"),
            )
        })
}

fn evaluation_of(headers: &HeaderMap, asynch: Option<bool>) -> Evaluation {
    if skip_downstream(headers) {
        Evaluation::Skip
    } else if asynch.unwrap_or(false) {
        Evaluation::Async
    } else {
        Evaluation::Inline
    }
}

fn side_effects_json(effects: &[SideEffect], raw: bool) -> Vec<Value> {
    effects.iter().map(|e| e.to_json(raw)).collect()
}

/// `POST /v2/transactions` — adds a sale, return, not-interested bill or exchange for a
/// registered customer and returns its side effects.
#[utoipa::path(post, path = "/v2/transactions", tag = "transactions", params(AddQuery), request_body = BillBody,
    responses((status = 200, description = "createdId, warnings, sideEffects"), (status = 400, description = "600-series codes"),
              (status = 404, description = "8015 customer not found")))]
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<AddQuery>,
    Json(raw): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    let body: BillBody = from_value(&raw)?;
    let evaluation = evaluation_of(&headers, q.use_asynch);
    let lookup = LookupQuery::new(
        q.source.clone(),
        q.account_id.clone(),
        q.identifier_name.clone(),
        q.identifier_value.clone(),
    );
    let query = json!({"identifierName": q.identifier_name, "identifierValue": q.identifier_value,
        "source": q.source, "accountId": q.account_id, "use_asynch": q.use_asynch});
    let intake = rejections::Intake {
        api: routes_rejections::API_V2,
        query,
        headers: routes_rejections::kept_headers(&headers),
        body: &raw,
        identifier_name: q.identifier_name.as_deref().unwrap_or_default(),
        identifier_value: q.identifier_value.as_deref().unwrap_or_default(),
    };
    let add = V2Add {
        body,
        lookup,
        source: q.source.clone(),
        account_id: q.account_id.clone(),
        evaluation,
    };
    let outcome = add_one(&state, &principal, &headers, add, Some(intake)).await?;
    let mut reply = json!({"createdId": outcome.transaction.id, "warnings": []});
    if evaluation == Evaluation::Inline {
        reply["sideEffects"] = Value::Array(side_effects_json(
            &outcome.side_effects,
            q.raw_side_effects.unwrap_or(false),
        ));
    }
    Ok(axum::Json(reply).into_response())
}

/// Query of the simulation.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct SimulationQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    #[serde(rename = "use_asynch", alias = "use_async")]
    use_asynch: Option<bool>,
    raw_side_effects: Option<bool>,
}

/// `POST /v2/simulation/transactions` — the side effects a bill would have; nothing is written.
#[utoipa::path(post, path = "/v2/simulation/transactions", tag = "transactions", params(SimulationQuery), request_body = BillBody,
    responses((status = 200, description = "sideEffects the bill would produce")))]
pub async fn simulate(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<SimulationQuery>,
    Json(mut body): Json<BillBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    if q.use_asynch.is_some() || q.raw_side_effects.is_some() {
        return Err(ApiError::invalid(
            "use_async and rawSideEffects are not allowed on simulation",
        ));
    }
    // Custom fields are ignored by simulation.
    body.custom_fields = None;
    let lookup = LookupQuery::new(
        q.source.clone(),
        q.account_id.clone(),
        q.identifier_name.clone(),
        q.identifier_value.clone(),
    );
    let add = V2Add {
        body,
        lookup,
        source: q.source,
        account_id: q.account_id,
        evaluation: Evaluation::Simulate,
    };
    let outcome = add_one(&state, &principal, &headers, add, None).await?;
    Ok(axum::Json(json!({
        "sideEffects": side_effects_json(&outcome.side_effects, true),
        "evaluationLog": outcome.evaluation_log,
        "simulation": true,
        "warnings": [],
    }))
    .into_response())
}

/// One result of a bulk request, and whether it succeeded.
fn bulk_reply(results: Vec<(bool, Value)>) -> Response {
    let ok = results.iter().filter(|(ok, _)| *ok).count();
    let status = if ok == results.len() {
        StatusCode::OK
    } else if ok == 0 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::CREATED
    };
    let body: Vec<Value> = results.into_iter().map(|(_, v)| v).collect();
    let mut response = (status, axum::Json(Value::Array(body))).into_response();
    response.extensions_mut().insert(Enveloped);
    response
}

fn error_json(e: &ApiError) -> Value {
    json!({"status": false, "code": e.code.info().code, "message": e.message})
}

/// Query of bulk adds.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct BulkQuery {
    #[serde(rename = "use_asynch", alias = "use_async")]
    use_asynch: Option<bool>,
    raw_side_effects: Option<bool>,
}

/// `POST /v2/transactions/bulk` — adds up to 100 bills, each with its own customer; one result
/// per input in order (HTTP 200 all ok, 201 some failed, 500 all failed).
#[utoipa::path(post, path = "/v2/transactions/bulk", tag = "transactions", params(BulkQuery), request_body = Vec<BillBody>,
    responses((status = 200, description = "Per-item results"), (status = 201, description = "Some items failed"), (status = 500, description = "All items failed")))]
pub async fn add_bulk(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<BulkQuery>,
    Json(raw): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    let items: Vec<BillBody> = from_value(&raw)?;
    let raw_items = raw.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.len() > BULK_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("at most {BULK_MAX} transactions per request"),
        ));
    }
    let evaluation = evaluation_of(&headers, q.use_asynch);
    let mut results = Vec::with_capacity(items.len());
    for (item, raw_item) in items.into_iter().zip(raw_items) {
        let lookup = LookupQuery::new(
            item.source.clone(),
            item.account_id.clone(),
            item.identifier_type.clone(),
            item.identifier_value.clone(),
        );
        let (source, account_id) = (item.source.clone(), item.account_id.clone());
        let (name, value) = (item.identifier_type.clone(), item.identifier_value.clone());
        // Kept in the single add's shape: the bulk item's customer becomes the query.
        let query = json!({"identifierName": name, "identifierValue": value, "source": source,
            "accountId": account_id, "use_asynch": q.use_asynch});
        let intake = rejections::Intake {
            api: routes_rejections::API_V2_BULK,
            query,
            headers: routes_rejections::kept_headers(&headers),
            body: raw_item,
            identifier_name: name.as_deref().unwrap_or_default(),
            identifier_value: value.as_deref().unwrap_or_default(),
        };
        let add = V2Add { body: item, lookup, source, account_id, evaluation };
        results.push(match add_one(&state, &principal, &headers, add, Some(intake)).await {
            Ok(outcome) => {
                let mut v =
                    json!({"createdId": outcome.transaction.id, "errors": [], "warnings": []});
                if evaluation == Evaluation::Inline {
                    v["sideEffects"] = Value::Array(side_effects_json(
                        &outcome.side_effects,
                        q.raw_side_effects.unwrap_or(false),
                    ));
                }
                (true, v)
            }
            Err(e) => (false, json!({"errors": [error_json(&e)], "warnings": []})),
        });
    }
    Ok(bulk_reply(results))
}

/// A v2 update body: which transaction and its new fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    id: Option<i64>,
    number: Option<String>,
    delivery_status: Option<String>,
    #[schema(value_type = Option<Object>)]
    extended_fields: Option<Map<String, Value>>,
    #[schema(value_type = Option<Object>)]
    custom_fields: Option<Map<String, Value>>,
    #[schema(value_type = Option<Vec<Object>>)]
    line_items: Option<Vec<Value>>,
    identifier_type: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
}

/// Query of the single update.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct UpdateQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
}

async fn update_one(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: UpdateBody,
    lookup: LookupQuery,
) -> Result<i64, ApiError> {
    let org = principal.org;
    let mut conn = state.db.read().await?;
    let (customer, _) = lookup.resolve(&mut conn, org, country_code(headers).as_deref()).await?;
    let txn = match (body.id, body.number.as_deref()) {
        (Some(id), _) => store::get(&mut conn, org, id).await?,
        (None, Some(number)) => store::by_number(&mut conn, org, number, &[], 50)
            .await?
            .into_iter()
            .find(|t| t.customer_id == Some(customer.0)),
        (None, None) => return Err(ApiError::new(Code::NoTransactionId)),
    };
    let txn = txn.filter(|t| t.customer_id == Some(customer.0)).ok_or_else(|| {
        ApiError::new(if body.id.is_some() {
            Code::TransactionIdNotFoundForCustomer
        } else {
            Code::TransactionNumberNotFoundForCustomer
        })
    })?;
    if txn.kind == "MIXED" {
        return Err(ApiError::invalid("MIXED transactions cannot be updated"));
    }
    let extended = match &body.extended_fields {
        Some(map) => Some(
            crate::fields::service::validate_extended_fields(&mut conn, org, "TRANSACTION", map)
                .await
                .map_err(TransactionError::from)?,
        ),
        None => None,
    };
    let custom = match &body.custom_fields {
        Some(map) => Some(
            crate::fields::service::validate_custom_fields(
                &mut conn,
                org,
                "LOYALTY_TRANSACTION",
                map,
            )
            .await
            .map_err(TransactionError::from)?,
        ),
        None => None,
    };
    let mut line_updates = Vec::new();
    let lines = store::lines(&mut conn, org, txn.id).await?;
    for (i, item) in
        body.line_items.unwrap_or_default().iter().enumerate().take(super::model::LINE_ITEMS_MAX)
    {
        let by_id = item.get("id").and_then(Value::as_i64);
        let code = item.get("itemCode").and_then(Value::as_str);
        let line = lines
            .iter()
            .find(|l| Some(l.id) == by_id || by_id.is_none() && code == Some(l.item_code.as_str()))
            .ok_or_else(|| {
                ApiError::with_message(
                    Code::InvalidReturnLineItem,
                    format!("lineItems[{i}] needs the itemCode or id of a line of the transaction"),
                )
            })?;
        let fields =
            item.get("extendedFields").and_then(Value::as_object).cloned().unwrap_or_default();
        let fields =
            crate::fields::service::validate_extended_fields(&mut conn, org, "LINEITEM", &fields)
                .await
                .map_err(TransactionError::from)?;
        line_updates.push((line.id, fields));
    }
    drop(conn);
    let update = service::FieldUpdate {
        delivery_status: body.delivery_status,
        extended_fields: extended,
        custom_fields: custom,
        lines: line_updates,
    };
    service::update_fields(
        &state.db,
        principal,
        &txn,
        update,
        !skip_downstream(headers),
        now_millis(),
    )
    .await?;
    Ok(txn.id)
}

/// `PUT /v2/transactions` — updates a transaction's extended and custom fields, delivery status
/// and line-item extended fields; everything else is immutable.
#[utoipa::path(put, path = "/v2/transactions", tag = "transactions", params(UpdateQuery), request_body = UpdateBody,
    responses((status = 200, description = "createdId, warnings")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<UpdateQuery>,
    Json(body): Json<UpdateBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    let lookup = LookupQuery::new(q.source, q.account_id, q.identifier_name, q.identifier_value);
    let id = update_one(&state, &principal, &headers, body, lookup).await?;
    Ok(axum::Json(json!({"createdId": id, "warnings": []})).into_response())
}

/// `PUT /v2/transactions/bulk` — the same update for up to 100 transactions, one result each.
#[utoipa::path(put, path = "/v2/transactions/bulk", tag = "transactions", request_body = Vec<UpdateBody>,
    responses((status = 200, description = "Per-item results")))]
pub async fn update_bulk(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(items): Json<Vec<UpdateBody>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    if items.len() > BULK_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("at most {BULK_MAX} transactions per request"),
        ));
    }
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let entity = json!({"id": item.id});
        if item.id.is_none() {
            let e = ApiError::new(Code::NoTransactionId);
            results.push((
                false,
                json!({"entityId": entity, "errors": [error_json(&e)], "warnings": []}),
            ));
            continue;
        }
        let lookup = LookupQuery::new(
            item.source.clone(),
            item.account_id.clone(),
            item.identifier_type.clone(),
            item.identifier_value.clone(),
        );
        results.push(match update_one(&state, &principal, &headers, item, lookup).await {
            Ok(id) => (
                true,
                json!({"entityId": {"id": id}, "createdId": id, "errors": [], "warnings": []}),
            ),
            Err(e) => {
                (false, json!({"entityId": entity, "errors": [error_json(&e)], "warnings": []}))
            }
        });
    }
    Ok(bulk_reply(results))
}

/// Options of the transaction reads (snake_case on the wire, as the spec spells them).
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct GetQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    tenders: Option<bool>,
    credit_notes: Option<bool>,
    mlp: Option<bool>,
    points_breakup: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn fixed(value: i64) -> Value {
    json!(Fixed(value).to_f64())
}

/// The v2 transaction object.
pub async fn transaction_json(
    c: &mut impl Connection,
    org: OrgId,
    txn: &TransactionRow,
    lines: &[LineRow],
    options: &GetQuery,
    with_points: bool,
) -> Result<Value, ApiError> {
    let (tz, store_code) = service::store_locale(c, org, StoreId(txn.store_id)).await?;
    let till = match txn.created_by_till_id {
        Some(id) => {
            let lookup = crate::org::store::TillLookup { id: Some(id), ..Default::default() };
            match crate::org::store::find_till(c, org, &lookup).await? {
                Some(t) => json!({"id": t.id, "code": t.code, "type": "TILL"}),
                None => json!({"id": id, "type": "TILL"}),
            }
        }
        None => json!({}),
    };
    let modified = if txn.modified_by_till_id == txn.created_by_till_id {
        till.clone()
    } else {
        json!({"id": txn.modified_by_till_id, "type": "TILL"})
    };
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|_| json!({}));
    let line_items: Vec<Value> = lines
        .iter()
        .map(|l| {
            json!({"id": l.id, "serial": l.serial, "type": l.kind, "itemCode": l.item_code, "description": l.description,
                "qty": fixed(l.qty), "rate": fixed(l.rate), "value": fixed(l.value), "discount": fixed(l.discount),
                "amount": fixed(l.amount), "returnedQty": fixed(l.returned_qty),
                "extendedFields": parse(&l.extended_fields), "customFields": parse(&l.custom_fields)})
        })
        .collect();
    let is_return = txn.kind.ends_with("RETURN");
    let return_details = if is_return {
        json!({"returnType": txn.return_type, "parentTransactionId": txn.parent_id})
    } else {
        json!({"canceled": txn.return_state.as_deref() == Some("FULL"), "returnedAmount": fixed(txn.returned_amount), "returnType": txn.return_state})
    };
    let (points_details, breakup) =
        if with_points { points_of(c, org, txn).await? } else { (Vec::new(), Vec::new()) };
    let mut body = json!({
        "id": txn.id,
        "type": txn.kind,
        "customerId": txn.customer_id,
        "source": txn.source.to_ascii_lowercase(),
        "useDefaultFleetGroup": false,
        "loyaltiesPointDetails": points_details,
        "billPointsBreakup": breakup,
        "attribution": {"createDate": time::iso_in(txn.created_at, tz), "createdBy": till, "modifiedBy": modified,
            "modifiedDate": time::iso_in(txn.updated_at, tz)},
        "billDetails": {
            "billNumber": txn.bill_number,
            "billingTime": time::iso_in(txn.billing_at, tz),
            "billingTimeInputOffset": txn.billing_offset,
            "amount": fixed(txn.amount),
            "grossAmount": fixed(txn.gross_amount),
            "discount": fixed(txn.discount),
            "note": txn.note,
            "deliveryStatus": txn.delivery_status,
            "outlierStatus": txn.outlier_status,
            "billingStore": {"id": txn.store_id, "code": store_code, "type": "STORE"},
            "returnDetails": if txn.kind == "RETURN" || txn.kind == "REGULAR" || txn.kind == "MIXED" { return_details.clone() } else { json!({}) },
            "niReturnDetails": if txn.kind.starts_with("NOT_INTERESTED") { return_details } else { json!({}) },
            "invalidBill": txn.outlier_status == "DELETED",
            "notInterestedReason": txn.not_interested_reason,
        },
        "lineItems": line_items,
        "customFields": parse(&txn.custom_fields),
        "extendedFields": parse(&txn.extended_fields),
        "paymentModes": if options.tenders.unwrap_or(false) { parse(&txn.payment_modes) } else { json!([]) },
        "addWithLocalCurrency": txn.currency_code.is_some(),
        "async": txn.loyalty_status == "PENDING",
        "simulation": false,
    });
    if let Some(code) = &txn.currency_code {
        body["currencyCode"] = json!(code);
        body["localAmount"] = txn.local_amount.map(fixed).unwrap_or(Value::Null);
    }
    if options.credit_notes.unwrap_or(false) {
        body["creditNotes"] = json!([]);
    }
    Ok(body)
}

/// The points a bill moved per program, and the per-rule breakup of its awards.
async fn points_of(
    c: &mut impl Connection,
    org: OrgId,
    txn: &TransactionRow,
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let lots = crate::points::store::lots_of_transaction(c, org, txn.id).await?;
    let mut breakup = Vec::new();
    for lot in &lots {
        breakup.push(json!({"programId": lot.program_id, "strategy": lot.rule, "pointsType": lot.source,
            "points": fixed(lot.awarded), "lineItemId": lot.line_item_id, "expiryDate": lot.expires_at.map(time::iso_utc),
            "promised": lot.kind == "PROMISED"}));
    }
    let details = match txn.program_id {
        Some(program) => vec![
            json!({"programId": program, "points": fixed(txn.points), "loyaltyStatus": txn.loyalty_status}),
        ],
        None => Vec::new(),
    };
    Ok((details, breakup))
}

pub(crate) fn type_filter(kind: Option<&str>) -> Result<Vec<&'static str>, ApiError> {
    Ok(match kind.map(|k| k.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("REGULAR") => vec!["REGULAR"],
        Some("RETURN") => vec!["RETURN"],
        Some("NOT_INTERESTED") => vec!["NOT_INTERESTED"],
        Some("NOT_INTERESTED_RETURN") => vec!["NOT_INTERESTED_RETURN"],
        Some("MIXED") => vec!["MIXED", "REGULAR", "RETURN"],
        Some("NI_MIXED") => vec!["NOT_INTERESTED", "NOT_INTERESTED_RETURN"],
        Some("ALL") => Vec::new(),
        Some(other) => {
            return Err(ApiError::invalid(format!("type '{other}' is not a transaction type")));
        }
    })
}

/// `GET /v2/transactions/{id}` — one transaction with its lines; points only with `mlp=true`
/// and `points_breakup=true`.
#[utoipa::path(get, path = "/v2/transactions/{id}", tag = "transactions", params(GetQuery, ("id" = i64, Path, description = "Transaction id")),
    responses((status = 200, description = "The transaction"), (status = 404, description = "620 not found")))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Read)?;
    let types = type_filter(q.kind.as_deref())?;
    let mut conn = state.db.read().await?;
    let txn = store::get(&mut conn, principal.org, id)
        .await?
        .filter(|t| types.is_empty() || types.contains(&t.kind.as_str()))
        .ok_or_else(|| ApiError::new(Code::TransactionNotFound))?;
    let lines = store::lines(&mut conn, principal.org, id).await?;
    let with_points = q.mlp.unwrap_or(false) && q.points_breakup.unwrap_or(false);
    let body = transaction_json(&mut conn, principal.org, &txn, &lines, &q, with_points).await?;
    Ok(axum::Json(body).into_response())
}

/// `GET /v2/transactions/getByBillNumber/{billNumber}` — every transaction with the number.
#[utoipa::path(get, path = "/v2/transactions/getByBillNumber/{billNumber}", tag = "transactions",
    params(GetQuery, ("billNumber" = String, Path, description = "Bill number")), responses((status = 200, description = "Paged list")))]
pub async fn get_by_number(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<String>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Read)?;
    let limit = q.limit.unwrap_or(100).clamp(1, PAGE_MAX);
    let offset = q.offset.unwrap_or(0).max(0);
    let mut conn = state.db.read().await?;
    let rows =
        store::by_number(&mut conn, principal.org, &number, &[], offset.saturating_add(limit))
            .await?;
    let total = rows.len() as i64;
    let mut data = Vec::new();
    for txn in rows.iter().skip(offset as usize) {
        let lines = store::lines(&mut conn, principal.org, txn.id).await?;
        data.push(transaction_json(&mut conn, principal.org, txn, &lines, &q, false).await?);
    }
    Ok(v2_list(data, limit, offset, total))
}

/// Query of a customer's transactions.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct CustomerTransactionsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /v2/customers/{id}/transactions` — the customer's bills, newest first, without lines.
#[utoipa::path(get, path = "/v2/customers/{id}/transactions", tag = "transactions",
    params(CustomerTransactionsQuery, ("id" = i64, Path, description = "Customer id")), responses((status = 200, description = "Paged list")))]
pub async fn of_customer(
    State(state): State<AppState>,
    principal: Principal,
    Path(customer): Path<i64>,
    Query(q): Query<CustomerTransactionsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Read)?;
    let limit = q.limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let offset = q.offset.unwrap_or(0).max(0);
    let types = match q.kind.as_deref() {
        None => Vec::new(),
        kind => type_filter(kind)?,
    };
    let mut conn = state.db.read().await?;
    if crate::customers::store::get_customer(
        &mut conn,
        principal.org,
        crate::customers::model::CustomerId(customer),
    )
    .await?
    .is_none()
    {
        return Err(ApiError::new(Code::CustomerNotFound));
    }
    let (rows, total) =
        store::of_customer(&mut conn, principal.org, customer, &types, offset, limit).await?;
    let mut data = Vec::with_capacity(rows.len());
    for txn in &rows {
        let (tz, _) =
            service::store_locale(&mut conn, principal.org, StoreId(txn.store_id)).await?;
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|_| json!({}));
        data.push(json!({
            "id": txn.id, "type": txn.kind, "billNumber": txn.bill_number,
            "billingTime": time::iso_in(txn.billing_at, tz), "amount": fixed(txn.amount),
            "grossAmount": fixed(txn.gross_amount), "discount": fixed(txn.discount),
            "storeId": txn.store_id,
            "customFields": parse(&txn.custom_fields), "extendedFields": parse(&txn.extended_fields),
            "billPoints": {"programId": txn.program_id, "points": fixed(txn.points), "loyaltyStatus": txn.loyalty_status},
        }));
    }
    Ok(v2_list(data, limit, offset, total))
}

/// Body of the evaluation-log request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationLogBody {
    event_name: Option<String>,
    event_log_id: Option<i64>,
    bill_number: Option<String>,
}

/// `POST /v2/events/evaluationLog` — the rule-by-rule trace of a bill's evaluation (admin
/// clients only).
#[utoipa::path(post, path = "/v2/events/evaluationLog", tag = "transactions", request_body = EvaluationLogBody,
    responses((status = 200, description = "The evaluation trace")))]
pub async fn evaluation_log(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<EvaluationLogBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Program, Level::Read)?;
    let mut conn = state.db.read().await?;
    let rows = match (body.event_log_id, body.bill_number.as_deref()) {
        (Some(id), _) => store::get(&mut conn, principal.org, id).await?.into_iter().collect(),
        (None, Some(number)) => store::by_number(&mut conn, principal.org, number, &[], 20).await?,
        (None, None) => return Err(ApiError::invalid("eventLogId or billNumber is required")),
    };
    if rows.is_empty() {
        return Err(ApiError::new(Code::TransactionNotFound));
    }
    let data: Vec<Value> = rows
        .iter()
        .map(|t| json!({
            "eventName": body.event_name.clone().unwrap_or_else(|| "TransactionAdd".into()),
            "eventLogId": t.id, "billNumber": t.bill_number, "customerId": t.customer_id, "programId": t.program_id,
            "loyaltyStatus": t.loyalty_status,
            "rules": serde_json::from_str::<Value>(&t.evaluation_log).unwrap_or_else(|_| json!([])),
            "sideEffects": serde_json::from_str::<Value>(&t.side_effects).unwrap_or_else(|_| json!([])),
        }))
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// Body of `POST /v2/currencyratio`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyRatioBody {
    currency_code: Option<String>,
    ratio_inr: Option<f64>,
}

/// `POST /v2/currencyratio` — sets the org's ratio of a currency against the INR pivot (INR per
/// unit), used by local-currency bills.
#[utoipa::path(post, path = "/v2/currencyratio", tag = "transactions", request_body = CurrencyRatioBody,
    responses((status = 200, description = "The stored ratio"), (status = 400, description = "Invalid currency or ratio")))]
pub async fn set_currency_ratio(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CurrencyRatioBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let code = body.currency_code.unwrap_or_default().trim().to_ascii_uppercase();
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(ApiError::invalid("currencyCode must be an ISO 4217 code such as SGD"));
    }
    let ratio = body
        .ratio_inr
        .filter(|r| r.is_finite() && *r > 0.0)
        .and_then(|r| rust_decimal::Decimal::try_from(r).ok())
        .ok_or_else(|| ApiError::invalid("ratioInr must be a number greater than 0"))?;
    let mut tx = state.db.begin_write().await?;
    store::set_currency_ratio(
        &mut tx,
        principal.org,
        &code,
        &ratio.normalize().to_string(),
        now_millis(),
    )
    .await?;
    crate::audit::record(
        &mut tx,
        principal.org,
        &crate::audit::AuditActor::from(&principal),
        crate::audit::Change {
            entity_type: "CURRENCY_RATIO",
            entity_id: 0,
            action: "UPSERT",
            before: None,
            after: Some(json!({"currencyCode": code, "ratioInr": ratio.to_string()})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(crate::http::envelope::v2_entity(json!({"ratioInr": body.ratio_inr, "currencyCode": code})))
}

/// `GET /v2/currencyratio` — every ratio of the org.
#[utoipa::path(get, path = "/v2/currencyratio", tag = "transactions", responses((status = 200, description = "The ratios")))]
pub async fn currency_ratios(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let mut conn = state.db.read().await?;
    let ratios = store::currency_ratios(&mut conn, principal.org).await?;
    let list: Vec<Value> = ratios
        .into_iter()
        .map(|(code, ratio)| json!({"currencyCode": code, "ratioInr": ratio.parse::<f64>().unwrap_or(0.0)}))
        .collect();
    Ok(crate::http::envelope::v2_entity(Value::Array(list)))
}
