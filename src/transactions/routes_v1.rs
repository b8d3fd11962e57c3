//! v1.1 transaction APIs: add (sales, returns, not-interested, exchanges; batch), add with local
//! currency, update (fields and retro conversion) and get, in v1.1 envelopes (JSON or XML).

use axum::extract::State;
use axum::http::HeaderMap;
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use super::model::{
    BillInput, LineInput, ReturnType, TransactionError, TransactionType, non_negative,
};
use super::rejections::{self, Intake, Replay};
use super::service::{self, AddRequest, Evaluation, SideEffect};
use super::store::{self, TransactionRow};
use super::time;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::routes_v1::{
    CustomerKey, batch_items, echo, failed_item, field_list, find, key_from, name_values,
    one_or_many, text, to_map,
};
use crate::customers::routes_v2::country_code;
use crate::db::{Connection, now_millis};
use crate::error::{ApiError, Code};
use crate::http::envelope::{V1Reply, item_status};
use crate::http::extract::{Query, V1Body};
use crate::org::model::{OrgId, StoreId};
use crate::points::model::Fixed;

fn fixed(value: i64) -> Value {
    json!(Fixed(value).to_f64())
}

/// The customer sub-object of an item (or the item itself, for flat bodies). The item's own `id`
/// is the transaction's (a return's sale, an update's bill), never the customer's.
fn customer_key(item: &Value, country: Option<&str>) -> Result<CustomerKey, ApiError> {
    let customer = item.get("customer").filter(|c| c.is_object());
    key_from(
        |k| customer.and_then(|c| text(c, k)).or_else(|| (k != "id").then(|| text(item, k))?),
        country,
    )
}

fn money(item: &Value, key: &str, code: Code) -> Result<Fixed, TransactionError> {
    non_negative(key, item.get(key), code)
}

/// `line_items.line_item[]` of a v1.1 bill.
fn v1_lines(item: &Value) -> Result<Vec<LineInput>, ApiError> {
    let wrapper = item.get("line_items").or_else(|| item.get("line_item").map(|_| item));
    let lines = wrapper.map(|w| one_or_many(w.get("line_item"))).unwrap_or_default();
    if lines.len() > super::model::LINE_ITEMS_MAX {
        return Err(ApiError::invalid(format!(
            "at most {} line items",
            super::model::LINE_ITEMS_MAX
        )));
    }
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let qty = money(line, "qty", Code::NegativeQty)?;
        let rate = money(line, "rate", Code::NegativeLineRate)?;
        let discount = money(line, "discount", Code::NegativeLineDiscount)?;
        let value = if line.get("value").is_some_and(|v| !v.is_null()) {
            money(line, "value", Code::NegativeLineValue)?
        } else {
            rate.to_decimal()
                .checked_mul(qty.to_decimal())
                .and_then(Fixed::from_decimal)
                .unwrap_or_default()
        };
        let amount = if line.get("amount").is_some_and(|v| !v.is_null()) {
            money(line, "amount", Code::NegativeLineAmount)?
        } else {
            Fixed((value - discount).0.max(0))
        };
        let attributes = line
            .get("attributes")
            .map(|a| Value::Array(one_or_many(a.get("attribute"))))
            .unwrap_or(json!([]));
        out.push(LineInput {
            serial: text(line, "serial").and_then(|s| s.parse().ok()).unwrap_or(i as i64 + 1),
            is_return: text(line, "type").is_some_and(|t| t.eq_ignore_ascii_case("RETURN")),
            item_code: text(line, "item_code").unwrap_or_default(),
            description: text(line, "description").unwrap_or_default(),
            qty,
            rate,
            value,
            discount,
            amount,
            attributes,
            extended_fields: name_values(line, "extended_fields")?.map(to_map).unwrap_or_default(),
            custom_fields: name_values(line, "custom_fields")?.map(to_map).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Parses one v1.1 bill item.
fn v1_bill(item: &Value, tz: Tz, now: i64) -> Result<BillInput, ApiError> {
    let kind_text = text(item, "type").unwrap_or_default();
    let kind = TransactionType::parse(&kind_text).ok_or_else(|| {
        ApiError::invalid(format!("type '{kind_text}' must be regular, return, not_interested, not_interested_return or mixed"))
    })?;
    let billing = time::parse_v1("billing_time", text(item, "billing_time").as_deref(), tz, now)?;
    let amount_given = item.get("amount").is_some_and(|v| !v.is_null());
    if !amount_given && !kind.is_return() && kind != TransactionType::Mixed {
        return Err(ApiError::with_message(Code::InvalidBillAmount, "amount is required"));
    }
    let return_type = match text(item, "return_type") {
        Some(r) => Some(ReturnType::parse(&r).ok_or_else(|| {
            ApiError::with_message(
                Code::InvalidReturnType,
                format!("return_type '{r}' must be FULL, LINE_ITEM or AMOUNT"),
            )
        })?),
        None if kind.is_return() => Some(ReturnType::Full),
        None => None,
    };
    let payments = item
        .get("payment_details")
        .map(|p| one_or_many(p.get("payment")))
        .or_else(|| item.get("tenders").map(|t| one_or_many(t.get("tender"))))
        .unwrap_or_default();
    Ok(BillInput {
        kind,
        bill_number: text(item, "number").unwrap_or_default(),
        billing_at: billing.millis,
        billing_offset: billing.offset,
        amount: money(item, "amount", Code::InvalidBillAmount)?,
        gross_amount: money(item, "gross_amount", Code::NegativeGrossAmount)?,
        discount: money(item, "discount", Code::NegativeDiscount)?,
        note: text(item, "notes").unwrap_or_default(),
        delivery_status: text(item, "delivery_status").unwrap_or_default(),
        outlier_status: text(item, "outlier_status").unwrap_or_else(|| "NORMAL".into()),
        not_interested_reason: text(item, "not_interested_reason").unwrap_or_default(),
        return_type,
        parent_id: if kind.is_return() {
            text(item, "id").and_then(|v| v.parse().ok())
        } else {
            None
        },
        parent_bill_number: text(item, "parent_bill_number"),
        purchase_at: match text(item, "purchase_time") {
            Some(t) => Some(time::parse_v1("purchase_time", Some(&t), tz, now)?.millis),
            None => None,
        },
        payment_modes: Value::Array(payments),
        extended_fields: name_values(item, "extended_fields")?.map(to_map).unwrap_or_default(),
        custom_fields: name_values(item, "custom_fields")?.map(to_map).unwrap_or_default(),
        line_items: v1_lines(item)?,
        currency_code: text(item, "currency_code"),
        local_amount: None,
    })
}

fn effects_v1(effects: &[SideEffect]) -> Value {
    let list: Vec<Value> = effects
        .iter()
        .map(|e| match e {
            SideEffect::Points { points, expires_at, program_id, .. } => json!({"type": "points",
                "awarded_points": points.to_f64(), "program_id": program_id,
                "expiry_date": expires_at.map(time::iso_utc).unwrap_or_default()}),
            SideEffect::Tier { to, from, change_type, .. } => {
                json!({"type": "tier", "change_type": change_type,
                "previous_slab": from, "current_slab": to})
            }
            SideEffect::AlternateCurrency { currency, value, expires_at, program_id, .. } => {
                json!({"type": "alternate_currency", "alternate_currency_name": currency,
                "awarded_value": value.to_f64(), "program_id": program_id,
                "expiry_date": expires_at.map(time::iso_utc).unwrap_or_default()})
            }
            SideEffect::Coupon { code, series_id, coupon_id, discount_type, discount_value, valid_till, .. } => {
                json!({"type": "coupon", "coupon_code": code, "coupon_id": coupon_id,
                "series_id": series_id, "discount_type": discount_type,
                "discount_value": discount_value.to_f64(), "valid_till": time::iso_utc(*valid_till)})
            }
        })
        .collect();
    json!({"effect": list})
}

/// The v1.1 customer block of a transaction response, with loyalty fields.
async fn customer_block(
    c: &mut impl Connection,
    org: OrgId,
    customer: Option<i64>,
) -> Result<Value, ApiError> {
    let Some(id) = customer else { return Ok(json!({})) };
    let view = find(c, org, &CustomerKey::Id(id)).await?;
    let standings = crate::points::service::standings(c, org, id).await?;
    let s = standings.first();
    let mut out = crate::customers::routes_v1::identity(&view);
    out.insert("firstname".into(), json!(view.row.first_name));
    out.insert("lastname".into(), json!(view.row.last_name));
    out.insert("loyalty_points".into(), json!(s.map(|s| s.current.to_f64()).unwrap_or(0.0)));
    out.insert(
        "lifetime_points".into(),
        json!(s.map(|s| s.lifetime_points.to_f64()).unwrap_or(0.0)),
    );
    out.insert(
        "lifetime_purchases".into(),
        json!(s.map(|s| s.lifetime_purchases.to_f64()).unwrap_or(0.0)),
    );
    out.insert("current_slab".into(), json!(s.map(|s| s.tier_name.clone()).unwrap_or_default()));
    let tier_expiry = s
        .and_then(|s| s.tier_expires_at)
        .map(crate::customers::routes_v1::v1_time)
        .unwrap_or_default();
    out.insert("tier_expiry_date".into(), json!(tier_expiry));
    Ok(Value::Object(out))
}

/// Parses one item, resolves its customer and validates its fields: the request for
/// `service::add`.
async fn prepare(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    item: &Value,
    local_currency: bool,
    now: i64,
) -> Result<AddRequest, ApiError> {
    let org = principal.org;
    let store = principal.store.ok_or_else(|| ApiError::new(Code::InvalidStoreOrTill))?;
    let mut conn = state.db.read().await?;
    let (tz, _) = service::store_locale(&mut conn, org, store).await?;
    let mut input = v1_bill(item, tz, now)?;
    super::routes_v2::validate_bill_fields(&mut conn, org, &mut input).await?;
    if local_currency {
        let enabled = store::configs(&mut conn, org, &["CONF_CURRENCY_CONVERSION_ENABLE"])
            .await?
            .first()
            .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true") || v == "1");
        if !enabled {
            return Err(ApiError::with_message(
                Code::PermissionDenied,
                "currency conversion is not enabled for the org (CONF_CURRENCY_CONVERSION_ENABLE)",
            ));
        }
        let code = match input.currency_code.clone() {
            Some(code) => code,
            None => {
                let store_row = crate::org::store::get_store(&mut conn, org, store).await?;
                let org_row = crate::org::store::get_org(&mut conn, org).await?;
                store_row
                    .and_then(|s| s.currency)
                    .or(org_row.map(|o| o.currency))
                    .unwrap_or_default()
            }
        };
        super::routes_v2::convert_currency(&mut conn, org, &mut input, &code).await?;
    } else {
        input.currency_code = None;
    }
    let customer = if input.kind.needs_customer() {
        Some(
            find(&mut conn, org, &customer_key(item, country_code(headers).as_deref())?)
                .await?
                .row
                .id,
        )
    } else {
        None
    };
    drop(conn);
    Ok(AddRequest {
        input,
        customer,
        source: "INSTORE".into(),
        account_id: String::new(),
        evaluation: Evaluation::Inline,
        api_version: "v1.1",
    })
}

/// The identifier a v1.1 item names its customer by (v2 names), for the sanity queue.
fn identifier_of(item: &Value) -> (&'static str, String) {
    let customer = item.get("customer").filter(|c| c.is_object());
    [("mobile", "mobile"), ("email", "email"), ("external_id", "externalId"), ("id", "id")]
        .into_iter()
        .find_map(|(key, name)| {
            customer.and_then(|c| text(c, key)).or_else(|| text(item, key)).map(|v| (name, v))
        })
        .unwrap_or(("", String::new()))
}

fn api_of(local_currency: bool) -> &'static str {
    if local_currency {
        super::routes_rejections::API_V1_LOCAL_CURRENCY
    } else {
        super::routes_rejections::API_V1
    }
}

/// Replays a bill the sanity queue kept from a v1.1 add through the same pipeline, rejection
/// checks included.
pub(super) async fn replay(
    state: &AppState,
    principal: &Principal,
    stored: &Value,
    local_currency: bool,
) -> Replay {
    let headers = super::routes_rejections::headers_of(stored);
    let now = now_millis();
    match prepare(state, principal, &headers, &stored["body"], local_currency, now).await {
        Ok(request) => super::routes_rejections::add_checked(state, principal, request, now).await,
        Err(e) => Replay::from_error(&e),
    }
}

/// Adds one item (unless the org's rejection checks queue it); its response fields.
async fn add_one(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    item: &Value,
    local_currency: bool,
) -> Result<Value, ApiError> {
    let org = principal.org;
    let now = now_millis();
    let request = prepare(state, principal, headers, item, local_currency, now).await?;
    let (identifier_name, identifier_value) = identifier_of(item);
    let intake = Intake {
        api: api_of(local_currency),
        query: json!({}),
        headers: super::routes_rejections::kept_headers(headers),
        body: item,
        identifier_name,
        identifier_value: &identifier_value,
    };
    rejections::screen(&state.db, principal, &request, intake, now).await?;
    let outcome = service::add(&state.db, &state.programs, principal, request, now).await?;
    let txn = &outcome.transaction;
    let mut conn = state.db.read().await?;
    let mut fields = Map::new();
    fields.insert("id".into(), json!(txn.id));
    fields.insert("number".into(), json!(txn.bill_number));
    fields.insert("type".into(), json!(txn.kind));
    fields.insert("delivery_status".into(), json!(txn.delivery_status));
    fields.insert("outlier_status".into(), json!(txn.outlier_status));
    fields.insert("customer".into(), customer_block(&mut conn, org, txn.customer_id).await?);
    fields.insert("side_effects".into(), effects_v1(&outcome.side_effects));
    if let Some(code) = &txn.currency_code {
        fields.insert("currency_code".into(), json!(code));
        fields.insert("local_amount".into(), txn.local_amount.map(fixed).unwrap_or(Value::Null));
        fields.insert("amount".into(), fixed(txn.amount));
    }
    fields.insert("item_status".into(), item_status(true, 600, "Transaction added successfully"));
    Ok(Value::Object(fields))
}

fn transaction_echo(item: &Value) -> Map<String, Value> {
    let mut out = echo(item);
    for key in ["number", "type"] {
        if let Some(v) = text(item, key) {
            out.insert(key.into(), json!(v));
        }
    }
    out
}

async fn add_batch(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: &Value,
    local_currency: bool,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    let items = batch_items(body, "transaction", &["number", "type"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(
            add_one(state, principal, headers, item, local_currency)
                .await
                .unwrap_or_else(|e| failed_item(transaction_echo(item), &e)),
        );
    }
    Ok(V1Reply::batch("transactions", "transaction", out))
}

/// `POST /v1.1/transaction/add` — adds bills (regular, return, not-interested, exchange);
/// per-item code 600 on success.
#[utoipa::path(post, path = "/v1.1/transaction/add", tag = "transactions-v1.1",
    responses((status = 200, description = "All added"), (status = 201, description = "Some failed"), (status = 500, description = "All failed")))]
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    add_batch(&state, &principal, &headers, &body, false).await
}

/// `POST /v1.1/transaction/add_with_local_currency` — as add, with money in `currency_code`
/// converted to the org's base currency by the org's ratios.
#[utoipa::path(post, path = "/v1.1/transaction/add_with_local_currency", tag = "transactions-v1.1",
    responses((status = 200, description = "All added"), (status = 201, description = "Some failed"), (status = 500, description = "All failed")))]
pub async fn add_with_local_currency(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    add_batch(&state, &principal, &headers, &body, true).await
}

/// Finds the transaction an update item names (id, else number) for its customer.
async fn target(
    c: &mut impl Connection,
    org: OrgId,
    item: &Value,
    customer: Option<i64>,
) -> Result<TransactionRow, ApiError> {
    let id = text(item, "id")
        .map(|v| v.parse::<i64>().map_err(|_| ApiError::new(Code::InvalidTransactionId)))
        .transpose()?;
    let number = text(item, "number");
    let found = match (id, number) {
        (Some(id), _) => store::get(c, org, id).await?,
        (None, Some(number)) => {
            // A return carries its sale's number: the number names the sale (newest first),
            // and a return only when there is nothing else.
            let mut rows: Vec<TransactionRow> = store::by_number(c, org, &number, &[], 50)
                .await?
                .into_iter()
                .filter(|t| customer.is_none() || t.customer_id == customer)
                .collect();
            rows.sort_by_key(|t| t.kind.ends_with("RETURN"));
            rows.into_iter().next()
        }
        (None, None) => return Err(ApiError::new(Code::NoTransactionId)),
    };
    found.ok_or_else(|| ApiError::new(Code::TransactionNotFound))
}

async fn update_one(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    item: &Value,
) -> Result<Value, ApiError> {
    let org = principal.org;
    let mut conn = state.db.read().await?;
    let key = customer_key(item, country_code(headers).as_deref());
    let new_type = text(item, "new_type");
    if let Some(new_type) = new_type {
        // Retro: a not-interested bill becomes the (now registered) customer's regular bill.
        let signature = headers
            .get("X-CAP-CLIENT-SIGNATURE")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty());
        if signature.is_none() {
            return Err(ApiError::new(Code::ClientSignatureMissing));
        }
        let customer = find(&mut conn, org, &key?).await?;
        let txn = target(&mut conn, org, item, None).await?;
        let old_type = text(item, "old_type").unwrap_or_else(|| "NOT_INTERESTED".into());
        if !new_type.eq_ignore_ascii_case("REGULAR")
            || !old_type.eq_ignore_ascii_case("NOT_INTERESTED")
        {
            return Err(ApiError::invalid(
                "retro converts old_type NOT_INTERESTED to new_type REGULAR",
            ));
        }
        drop(conn);
        let note = text(item, "notes").unwrap_or_default();
        let outcome = service::retro(
            &state.db,
            &state.programs,
            principal,
            txn.id,
            customer.row.id,
            &note,
            now_millis(),
        )
        .await?;
        let mut conn = state.db.read().await?;
        let mut fields = Map::new();
        fields.insert("id".into(), json!(outcome.transaction.id));
        fields.insert("number".into(), json!(outcome.transaction.bill_number));
        fields.insert("type".into(), json!(outcome.transaction.kind));
        fields.insert(
            "customer".into(),
            customer_block(&mut conn, org, Some(customer.row.id)).await?,
        );
        fields.insert("side_effects".into(), effects_v1(&outcome.side_effects));
        fields.insert(
            "item_status".into(),
            item_status(true, 1630, "Transaction retro-marked REGULAR and added"),
        );
        return Ok(Value::Object(fields));
    }
    let customer = match key {
        Ok(key) => Some(find(&mut conn, org, &key).await?.row.id),
        Err(_) => None,
    };
    let txn = target(&mut conn, org, item, customer).await?;
    if customer.is_some_and(|c| txn.customer_id != Some(c)) {
        return Err(ApiError::new(Code::TransactionIdNotFoundForCustomer));
    }
    let extended = match name_values(item, "extended_fields")? {
        Some(pairs) => Some(
            crate::fields::service::validate_extended_fields(
                &mut conn,
                org,
                "TRANSACTION",
                &to_map(pairs),
            )
            .await
            .map_err(TransactionError::from)?,
        ),
        None => None,
    };
    let custom = match name_values(item, "custom_fields")? {
        Some(pairs) => Some(
            crate::fields::service::validate_custom_fields(
                &mut conn,
                org,
                "LOYALTY_TRANSACTION",
                &to_map(pairs),
            )
            .await
            .map_err(|_| ApiError::new(Code::CustomFieldUpdateFailed))?,
        ),
        None => None,
    };
    drop(conn);
    let update = service::FieldUpdate {
        delivery_status: text(item, "delivery_status"),
        extended_fields: extended,
        custom_fields: custom,
        lines: Vec::new(),
    };
    service::update_fields(&state.db, principal, &txn, update, true, now_millis()).await?;
    let mut conn = state.db.read().await?;
    let txn = store::get(&mut conn, org, txn.id)
        .await?
        .ok_or_else(|| ApiError::new(Code::TransactionNotFound))?;
    let mut fields = Map::new();
    fields.insert("id".into(), json!(txn.id));
    fields.insert("number".into(), json!(txn.bill_number));
    fields.insert("type".into(), json!(txn.kind));
    fields.insert("delivery_status".into(), json!(txn.delivery_status));
    fields.insert("customer".into(), customer_block(&mut conn, org, txn.customer_id).await?);
    fields.insert(
        "extended_fields".into(),
        field_list(&serde_json::from_str(&txn.extended_fields).unwrap_or_default()),
    );
    fields.insert(
        "custom_fields".into(),
        field_list(&serde_json::from_str(&txn.custom_fields).unwrap_or_default()),
    );
    fields.insert("item_status".into(), item_status(true, 600, "Transaction updated successfully"));
    Ok(Value::Object(fields))
}

/// `POST /v1.1/transaction/update` — updates delivery status and fields of bills, or converts
/// a not-interested bill to the customer's regular bill (retro, 1630) with
/// `X-CAP-CLIENT-SIGNATURE`.
#[utoipa::path(post, path = "/v1.1/transaction/update", tag = "transactions-v1.1",
    responses((status = 200, description = "All updated"), (status = 201, description = "Some failed"), (status = 500, description = "All failed")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    let items = batch_items(&body, "transaction", &["number", "id"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(
            update_one(&state, &principal, &headers, item)
                .await
                .unwrap_or_else(|e| failed_item(transaction_echo(item), &e)),
        );
    }
    Ok(V1Reply::batch("transactions", "transaction", out))
}

/// Query of `GET /v1.1/transaction/get`.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct GetQuery {
    id: Option<String>,
    number: Option<String>,
    store_code: Option<String>,
    till_code: Option<String>,
    amount: Option<f64>,
    date: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    tenders: Option<bool>,
    credit_notes: Option<bool>,
    user_id: Option<bool>,
}

async fn v1_transaction(
    c: &mut impl Connection,
    org: OrgId,
    txn: &TransactionRow,
    q: &GetQuery,
) -> Result<Value, ApiError> {
    let (tz, store_code) = service::store_locale(c, org, StoreId(txn.store_id)).await?;
    let lines = store::lines(c, org, txn.id).await?;
    let line_items: Vec<Value> = lines
        .iter()
        .map(|l| json!({"serial": l.serial, "type": l.kind, "item_code": l.item_code, "description": l.description,
            "qty": fixed(l.qty), "rate": fixed(l.rate), "value": fixed(l.value), "discount": fixed(l.discount),
            "amount": fixed(l.amount), "returned_qty": fixed(l.returned_qty),
            "extended_fields": field_list(&serde_json::from_str(&l.extended_fields).unwrap_or_default())}))
        .collect();
    let mut out = json!({
        "id": txn.id, "number": txn.bill_number, "type": txn.kind,
        "billing_time": time::v1_time(txn.billing_at, tz),
        "amount": fixed(txn.amount), "gross_amount": fixed(txn.gross_amount), "discount": fixed(txn.discount),
        "notes": txn.note, "delivery_status": txn.delivery_status, "outlier_status": txn.outlier_status,
        "store": store_code, "return_type": txn.return_type,
        "points": {"issued": fixed(txn.points.max(0)), "returned": fixed((-txn.points).max(0))},
        "line_items": {"line_item": line_items},
        "extended_fields": field_list(&serde_json::from_str(&txn.extended_fields).unwrap_or_default()),
        "custom_fields": field_list(&serde_json::from_str(&txn.custom_fields).unwrap_or_default()),
        "item_status": item_status(true, 600, "Transaction retrieved successfully"),
    });
    if let (Some(code), Some(local)) = (&txn.currency_code, txn.local_amount) {
        // Bill-level money reads in the bill's currency (the stored base values scaled by the
        // bill's own conversion); points and lines stay in the base currency.
        let to_local = |base: i64| {
            let scaled = Fixed(base)
                .to_decimal()
                .checked_mul(Fixed(local).to_decimal())
                .and_then(|v| v.checked_div(Fixed(txn.amount).to_decimal()))
                .and_then(Fixed::from_decimal);
            fixed(scaled.unwrap_or(Fixed(base)).0)
        };
        out["currency_code"] = json!(code);
        out["amount"] = fixed(local);
        out["gross_amount"] = to_local(txn.gross_amount);
        out["discount"] = to_local(txn.discount);
        out["base_amount"] = fixed(txn.amount);
    }
    if q.user_id.unwrap_or(false) {
        out["customer"] = json!({"user_id": txn.customer_id});
    }
    if q.tenders.unwrap_or(false) {
        out["tenders"] = json!({"tender": serde_json::from_str::<Value>(&txn.payment_modes).unwrap_or_else(|_| json!([]))});
    }
    if q.credit_notes.unwrap_or(false) {
        out["credit_notes"] = json!({"credit_note": []});
    }
    Ok(out)
}

/// `GET /v1.1/transaction/get` — transactions by `id` or `number`, filtered by store, till,
/// amount, date and type (default REGULAR).
#[utoipa::path(get, path = "/v1.1/transaction/get", tag = "transactions-v1.1", params(GetQuery),
    responses((status = 200, description = "The transactions"), (status = 500, description = "Not found")))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<GetQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Transaction, Level::Read)?;
    let org = principal.org;
    let types = super::routes_v2::type_filter(q.kind.as_deref())?;
    let mut conn = state.db.read().await?;
    let mut rows = match (q.id.as_deref(), q.number.as_deref()) {
        (Some(id), _) => {
            let id: i64 =
                id.trim().parse().map_err(|_| ApiError::new(Code::InvalidTransactionId))?;
            store::get(&mut conn, org, id).await?.into_iter().collect::<Vec<_>>()
        }
        (None, Some(number)) => store::by_number(&mut conn, org, number, &[], 100).await?,
        (None, None) => return Err(ApiError::new(Code::NoTransactionId)),
    };
    rows.retain(|t| types.is_empty() || types.contains(&t.kind.as_str()));
    if let Some(amount) = q.amount {
        let wanted = rust_decimal::Decimal::try_from(amount).ok().and_then(Fixed::from_decimal);
        rows.retain(|t| Some(Fixed(t.amount)) == wanted);
    }
    let mut out = Vec::new();
    for txn in &rows {
        let (tz, store_code) = service::store_locale(&mut conn, org, StoreId(txn.store_id)).await?;
        if q.store_code.as_deref().is_some_and(|c| c != store_code) {
            continue;
        }
        if let Some(till_code) = q.till_code.as_deref() {
            let lookup = crate::org::store::TillLookup {
                code: Some(till_code.to_string()),
                ..Default::default()
            };
            let till = crate::org::store::find_till(&mut conn, org, &lookup).await?;
            if till.map(|t| t.id) != txn.till_id {
                continue;
            }
        }
        if q.date
            .as_deref()
            .is_some_and(|d| !time::v1_time(txn.billing_at, tz).starts_with(d.trim()))
        {
            continue;
        }
        out.push(v1_transaction(&mut conn, org, txn, &q).await?);
    }
    if out.is_empty() {
        let error = ApiError::new(Code::TransactionNotFound);
        let mut echo = Map::new();
        if let Some(id) = &q.id {
            echo.insert("id".into(), json!(id));
        }
        if let Some(number) = &q.number {
            echo.insert("number".into(), json!(number));
        }
        return Ok(V1Reply::batch("transactions", "transaction", vec![failed_item(echo, &error)]));
    }
    Ok(V1Reply::batch("transactions", "transaction", out))
}
