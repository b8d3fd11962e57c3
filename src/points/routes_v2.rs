//! v2 points APIs: redeem for a customer (or only validate), reverse a redemption, balances,
//! and the points ledger (balances by entry type, entries with running balance).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::Fixed;
use super::redemption::{self, PointsError, Redeem};
use super::{service, store};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::CustomerId;
use crate::customers::routes_v2::{LookupQuery, country_code};
use crate::db::{Connection, now_millis};
use crate::error::{ApiError, Code};
use crate::http::extract::{Json, Path, Query};
use crate::org::model::OrgId;

/// Entries per ledger page at most; balance pages hold at most ten rows (the spec's limit).
const LEDGER_PAGE_MAX: i64 = 100;
const BALANCE_PAGE_MAX: i64 = 10;

pub(crate) fn number(value: Option<&Value>) -> Option<Decimal> {
    match value? {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The customer `id` names in the caller's org (8015 otherwise).
pub(crate) async fn customer_by_id(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<i64, ApiError> {
    crate::customers::store::get_customer(c, org, CustomerId(id))
        .await?
        .map(|row| row.id)
        .ok_or_else(|| ApiError::new(Code::CustomerNotFound))
}

/// Body of `POST /v2/customers/{id}/redemptions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedemptionBody {
    /// `POINTS` (the only type so far).
    redemption_type: Option<String>,
    #[schema(value_type = Option<f64>)]
    points: Option<Value>,
    transaction_number: Option<String>,
    validation_code: Option<String>,
    skip_validation: Option<bool>,
    source: Option<String>,
    /// False: check only, write nothing (default true).
    commit: Option<bool>,
    external_reference_number: Option<String>,
    notes: Option<String>,
    program_id: Option<i64>,
    /// With `redemptionType` `ALTERNATE_CURRENCY`: the currency to redeem (840 when unknown).
    alternate_currency_name: Option<String>,
}

/// `POST /v2/customers/{id}/redemptions` — redeems points for the customer, or with
/// `commit=false` only checks that it would succeed.
#[utoipa::path(post, path = "/v2/customers/{id}/redemptions", tag = "points", request_body = RedemptionBody,
    responses((status = 200, description = "Redeemed (or would be)"), (status = 400, description = "Refused: 801-821"), (status = 404, description = "8015 customer not found")))]
pub async fn redeem(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<RedemptionBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let kind = body.redemption_type.as_deref().map(|t| t.trim().to_ascii_uppercase());
    match kind.as_deref() {
        None | Some("POINTS") => {}
        Some("ALTERNATE_CURRENCY") => {
            return redeem_currency(&state, &principal, id, body).await;
        }
        Some(_) => {
            return Err(ApiError::invalid("redemptionType must be POINTS or ALTERNATE_CURRENCY"));
        }
    }
    let customer = {
        let mut conn = state.db.read().await?;
        customer_by_id(&mut conn, principal.org, id).await?
    };
    let points =
        redemption::parse_points(number(body.points.as_ref()).ok_or(PointsError::InvalidPoints)?)?;
    let program_id = body.program_id.map(|p| p.to_string());
    let program = super::routes_v1::program_of(&state, &principal, program_id.as_deref()).await?;
    let commit = body.commit.unwrap_or(true);
    let bill = body.transaction_number.unwrap_or_default();
    let external = body.external_reference_number.unwrap_or_default();
    let notes = body.notes.unwrap_or_default();
    let _ = body.source;
    let request = Redeem {
        customer,
        program: &program,
        points,
        validation_code: body.validation_code.as_deref().map(str::trim).filter(|c| !c.is_empty()),
        skip_validation: body.skip_validation.unwrap_or(false),
        code_if_given: !commit,
        bill_number: &bill,
        external_reference: &external,
        notes: &notes,
        till: principal.till.map(|t| t.0),
        commit,
    };
    let done =
        redemption::redeem(&state.db, Some(&principal), principal.org, &request, now_millis())
            .await?;
    Ok(axum::Json(json!({
        "redemptionId": done.redemption_id,
        "committed": commit,
        "pointsRedeemed": if commit { points.to_f64() } else { 0.0 },
        "points": points.to_f64(),
        "redeemedValue": done.value.to_f64().unwrap_or(0.0),
        "balance": done.balance.to_f64(),
        "programId": program.id.0,
        "warnings": [],
    }))
    .into_response())
}

/// The `ALTERNATE_CURRENCY` form of `POST /v2/customers/{id}/redemptions`: spends a positive
/// whole amount of one alternate currency in the program (the points' redemption rules and
/// validation codes do not apply to currencies).
async fn redeem_currency(
    state: &AppState,
    principal: &Principal,
    id: i64,
    body: RedemptionBody,
) -> Result<Response, ApiError> {
    let name = body
        .alternate_currency_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("alternateCurrencyName is required"))?;
    let (customer, currency) = {
        let mut conn = state.db.read().await?;
        let customer = customer_by_id(&mut conn, principal.org, id).await?;
        (customer, crate::currencies::service::resolve(&mut conn, principal.org, name).await?)
    };
    let amount =
        redemption::parse_points(number(body.points.as_ref()).ok_or(PointsError::InvalidPoints)?)?;
    let program_id = body.program_id.map(|p| p.to_string());
    let program = super::routes_v1::program_of(state, principal, program_id.as_deref()).await?;
    let commit = body.commit.unwrap_or(true);
    let bill = body.transaction_number.unwrap_or_default();
    let external = body.external_reference_number.unwrap_or_default();
    let notes = body.notes.unwrap_or_default();
    let request = crate::currencies::service::CurrencyRedeem {
        customer,
        program: program.id.0,
        currency: &currency,
        amount,
        bill_number: &bill,
        external_reference: &external,
        notes: &notes,
        till: principal.till.map(|t| t.0),
        commit,
    };
    let done = crate::currencies::service::redeem(
        &state.db,
        Some(principal),
        principal.org,
        &request,
        now_millis(),
    )
    .await
    .map_err(|e| match e {
        crate::currencies::service::RedeemError::Db(db) => ApiError::from(db),
        crate::currencies::service::RedeemError::Fraud => ApiError::from(PointsError::Fraud),
        other => ApiError::with_message(Code::PointsMoreThanAvailable, other.to_string()),
    })?;
    Ok(axum::Json(json!({
        "redemptionId": done.redemption_id,
        "committed": commit,
        "alternateCurrencyName": currency.name,
        "valueRedeemed": if commit { amount.to_f64() } else { 0.0 },
        "value": amount.to_f64(),
        "balance": done.balance.to_f64(),
        "programId": program.id.0,
        "warnings": [],
    }))
    .into_response())
}

/// `identifier` of a reversal body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReverseIdentifier {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
}

/// Body of `POST /v2/points/reverse`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReverseBody {
    #[schema(value_type = Option<String>)]
    redemption_id: Option<Value>,
    #[schema(value_type = Option<f64>)]
    points_to_be_reversed: Option<Value>,
    identifier: Option<ReverseIdentifier>,
}

/// `POST /v2/points/reverse` — gives back `pointsToBeReversed` (default: all that is left) of
/// what a redemption took, to the lots it came from, the last-used first (the share of lots
/// expired since is reported, not restored); partial reversals add up to the redemption.
#[utoipa::path(post, path = "/v2/points/reverse", tag = "points", request_body = ReverseBody,
    responses((status = 200, description = "Reversed"), (status = 400, description = "801 bad points, 810 more than is left to reverse, 812 already reversed"), (status = 404, description = "814 not found")))]
pub async fn reverse(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<ReverseBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let id = number(body.redemption_id.as_ref())
        .and_then(|d| d.to_i64())
        .ok_or_else(|| ApiError::invalid("redemptionId is required"))?;
    let customer = match &body.identifier {
        Some(ReverseIdentifier { kind: Some(kind), value: Some(value) }) => {
            let mut conn = state.db.read().await?;
            let lookup = LookupQuery::new(
                Some("INSTORE".into()),
                None,
                Some(if kind.eq_ignore_ascii_case("ID") { "id".into() } else { kind.clone() }),
                Some(value.clone()),
            );
            let (customer, _) =
                lookup.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
            Some(customer.0)
        }
        _ => None,
    };
    let points = match body.points_to_be_reversed.as_ref().filter(|v| !v.is_null()) {
        Some(value) => {
            Some(redemption::parse_points(number(Some(value)).ok_or(PointsError::InvalidPoints)?)?)
        }
        None => None,
    };
    let reversal = redemption::reverse(
        &state.db,
        Some(&principal),
        principal.org,
        id,
        customer,
        points,
        now_millis(),
    )
    .await?;
    Ok(axum::Json(json!({
        "redemptionId": id,
        "reversalId": reversal.reversal_id,
        "customerId": reversal.redemption.customer_id,
        "programId": reversal.redemption.program_id,
        "pointsRedeemed": Fixed(reversal.redemption.points).to_f64(),
        "pointsToBeReversed": reversal.points.to_f64(),
        "pointsReversed": reversal.restored.to_f64(),
        "pointsExpired": reversal.lapsed.to_f64(),
        "pointsLeftToReverse": reversal.left.to_f64(),
        "balance": reversal.balance.to_f64(),
        "warnings": [],
    }))
    .into_response())
}

/// Query of the balance reads.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct BalanceQuery {
    program_id: Option<i64>,
    entity_type: Option<String>,
    fetch_data_for_all_programs: Option<bool>,
    source: Option<String>,
    account_id: Option<String>,
    identifier_name: Option<String>,
    identifier_value: Option<String>,
}

async fn balance_of(
    state: &AppState,
    principal: &Principal,
    customer: i64,
    q: &BalanceQuery,
) -> Result<Response, ApiError> {
    if q.entity_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("CUSTOMER")) {
        return Err(ApiError::invalid("entityType: only CUSTOMER is supported"));
    }
    let mut conn = state.db.read().await?;
    let standings = service::standings(&mut conn, principal.org, customer).await?;
    let chosen: Vec<&service::Standing> = if q.fetch_data_for_all_programs.unwrap_or(false) {
        standings.iter().collect()
    } else if let Some(program) = q.program_id {
        let found: Vec<_> = standings.iter().filter(|s| s.program_id == program).collect();
        if found.is_empty() {
            return Err(ApiError::new(Code::InvalidProgramId));
        }
        found
    } else {
        standings.iter().filter(|s| s.is_default).take(1).collect()
    };
    let main = chosen.iter().fold(Fixed::ZERO, |a, s| a + s.current);
    let promised = chosen.iter().fold(Fixed::ZERO, |a, s| a + s.promised);
    let alternate = alternate_balances(&mut conn, principal.org, customer, &chosen).await?;
    Ok(axum::Json(json!({
        "entityId": customer,
        "entityType": "CUSTOMER",
        "totalPoints": (main + promised).to_f64(),
        "mainPoints": main.to_f64(),
        "promisedPoints": promised.to_f64(),
        "promisedPointsBreakup": {"delayedAccrualPoints": promised.to_f64(), "externalTriggerBasedPoints": 0.0},
        "alternateCurrencies": alternate,
        "warnings": [],
    }))
    .into_response())
}

/// The customer's alternate-currency balances in the chosen programs, one entry per program and
/// currency held: `{programId, alternateCurrencyId, alternateCurrencyName, mainPoints,
/// promisedPoints, totalPoints}`.
pub async fn alternate_balances(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    programs: &[&service::Standing],
) -> Result<Vec<Value>, ApiError> {
    let balances = super::store_currency::currency_balances_of_customer(c, org, customer).await?;
    if balances.is_empty() {
        return Ok(Vec::new());
    }
    let currencies = crate::currencies::store::list_currencies(c, org).await?;
    Ok(balances
        .iter()
        .filter(|b| programs.iter().any(|p| p.program_id == b.program_id))
        .map(|b| {
            let name = currencies.iter().find(|r| r.id == b.currency_id).map(|r| r.name.clone());
            json!({"programId": b.program_id, "alternateCurrencyId": b.currency_id,
                "alternateCurrencyName": name, "mainPoints": Fixed(b.current_points).to_f64(),
                "promisedPoints": Fixed(b.promised_points).to_f64(),
                "totalPoints": Fixed(b.current_points + b.promised_points).to_f64()})
        })
        .collect())
}

/// `GET /v2/customers/{id}/points/balance` — main, promised and total points in the default
/// program, `programId`, or all programs (`fetchDataForAllPrograms=true`).
#[utoipa::path(get, path = "/v2/customers/{id}/points/balance", tag = "points", params(BalanceQuery),
    responses((status = 200, description = "The balance"), (status = 404, description = "8015 not found")))]
pub async fn balance(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<BalanceQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = {
        let mut conn = state.db.read().await?;
        customer_by_id(&mut conn, principal.org, id).await?
    };
    balance_of(&state, &principal, customer, &q).await
}

/// `GET /v2/customers/lookup/points/balance` — the balance of the customer an identifier names.
#[utoipa::path(get, path = "/v2/customers/lookup/points/balance", tag = "points", params(BalanceQuery),
    responses((status = 200, description = "The balance"), (status = 404, description = "8015 not found")))]
pub async fn lookup_balance(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<BalanceQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = resolve(&state, &principal, &headers, &q).await?;
    balance_of(&state, &principal, customer, &q).await
}

async fn resolve(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    q: &BalanceQuery,
) -> Result<i64, ApiError> {
    let lookup = LookupQuery::new(
        q.source.clone().or(Some("INSTORE".into())),
        q.account_id.clone(),
        q.identifier_name.clone(),
        q.identifier_value.clone(),
    );
    let mut conn = state.db.read().await?;
    let (customer, _) =
        lookup.resolve(&mut conn, principal.org, country_code(headers).as_deref()).await?;
    Ok(customer.0)
}

/// Query of the points ledger reads.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct LedgerQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    program_id: Option<i64>,
    till_id: Option<i64>,
    limit: Option<i64>,
    /// A page index (pages to skip), not a row offset.
    offset: Option<i64>,
    start_date: Option<String>,
    end_date: Option<String>,
    sort_order: Option<String>,
    ledger_entry_type: Option<String>,
    point_category_type: Option<String>,
    /// True: every alternate currency besides the points.
    include_alternate_currencies: Option<bool>,
    /// Comma-separated alternate currencies to read besides the points (840 for unknown ones).
    alternate_currency_names: Option<String>,
}

/// The currencies a ledger read covers (None: the points only) and the names of the org's
/// currencies by id.
async fn ledger_currencies(
    c: &mut impl Connection,
    org: OrgId,
    q: &LedgerQuery,
) -> Result<(Option<Vec<i64>>, Vec<(i64, String)>), ApiError> {
    let all = crate::currencies::store::list_currencies(c, org).await?;
    let names: Vec<(i64, String)> = all.iter().map(|r| (r.id, r.name.clone())).collect();
    let mut ids = vec![super::ledger::POINTS];
    if let Some(list) = q.alternate_currency_names.as_deref().filter(|l| !l.trim().is_empty()) {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let row = crate::currencies::service::resolve(c, org, name).await?;
            ids.push(row.id);
        }
    } else if q.include_alternate_currencies.unwrap_or(false) {
        ids.extend(all.iter().map(|r| r.id));
    } else {
        return Ok((None, names));
    }
    Ok((Some(ids), names))
}

fn currency_name(names: &[(i64, String)], id: i64) -> Value {
    names.iter().find(|(i, _)| *i == id).map(|(_, n)| json!(n)).unwrap_or(Value::Null)
}

fn ledger_lookup(q: &LedgerQuery) -> BalanceQuery {
    BalanceQuery {
        source: q.source.clone(),
        account_id: q.account_id.clone(),
        identifier_name: q.identifier_name.clone(),
        identifier_value: q.identifier_value.clone(),
        ..BalanceQuery::default()
    }
}

/// `YYYY-MM-DDThh:mm:ss` (UTC) or a date, as epoch millis.
fn date(field: &str, value: Option<&str>, end_of_day: bool) -> Result<Option<i64>, ApiError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S") {
        return Ok(Some(t.and_utc().timestamp_millis()));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let t = if end_of_day { d.and_hms_opt(23, 59, 59) } else { d.and_hms_opt(0, 0, 0) };
        return Ok(t.map(|t| t.and_utc().timestamp_millis()));
    }
    Err(ApiError::invalid(format!("{field} must be YYYY-MM-DDThh:mm:ss")))
}

fn category(current: i64, promised: i64) -> &'static str {
    if promised != 0 && current == 0 { "PROMISED" } else { "REGULAR" }
}

/// `GET /v2/pointsLedger/getCustomerLedgerInfo` — the customer's ledger entries, newest first
/// by default, each with the program's running balance; `offset` is a page index.
#[utoipa::path(get, path = "/v2/pointsLedger/getCustomerLedgerInfo", tag = "points-ledger", params(LedgerQuery),
    responses((status = 200, description = "A page of entries"), (status = 404, description = "8015 not found")))]
pub async fn ledger_info(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LedgerQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = resolve(&state, &principal, &headers, &ledger_lookup(&q)).await?;
    let limit = q.limit.unwrap_or(10).clamp(1, LEDGER_PAGE_MAX);
    let page = q.offset.unwrap_or(0).max(0);
    let ascending = q.sort_order.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("ASC"));
    let filter = store::LedgerFilter {
        customer,
        program: q.program_id,
        till: q.till_id,
        kind: q.ledger_entry_type.clone().map(|k| k.trim().to_ascii_uppercase()),
        from: date("startDate", q.start_date.as_deref(), false)?,
        to: date("endDate", q.end_date.as_deref(), true)?,
        currency_ids: None,
    };
    let mut conn = state.db.read().await?;
    let (currency_ids, names) = ledger_currencies(&mut conn, principal.org, &q).await?;
    let filter = store::LedgerFilter { currency_ids, ..filter };
    let total = store::count_entries(&mut conn, principal.org, &filter).await?;
    let rows = store::ledger_page(
        &mut conn,
        principal.org,
        &filter,
        ascending,
        limit,
        page.saturating_mul(limit),
    )
    .await?;
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"eventId": r.id, "eventName": r.kind, "ledgerEntryType": r.kind,
                "eventDate": crate::customers::routes_v2::iso(r.effective_at),
                "eventReferenceId": r.transaction_id.map(|t| t.to_string()).unwrap_or_else(|| r.reference.clone()),
                "pointCategoryType": category(r.current_delta, r.promised_delta),
                "programId": r.program_id, "tillId": r.till_id,
                "points": Fixed(r.current_delta + r.promised_delta).to_f64(),
                "balance": Fixed(r.balance).to_f64(),
                "alternateCurrencyName": currency_name(&names, r.currency_id)})
        })
        .collect();
    let pages = (total + limit - 1) / limit;
    Ok(axum::Json(json!({
        "customerDetails": {"userId": customer, "entityType": "CUSTOMER"},
        "ledgerDetails": {"pageNumber": page, "totalPages": pages, "totalEntries": total, "entries": entries},
        "warnings": [],
    }))
    .into_response())
}

/// `GET /v2/pointsLedger/getCustomerLedgerBalance` — per point category and ledger entry type,
/// the balance before and after that type's entries up to `endDate` (default now); at most ten
/// rows a page, `offset` a page index.
#[utoipa::path(get, path = "/v2/pointsLedger/getCustomerLedgerBalance", tag = "points-ledger", params(LedgerQuery),
    responses((status = 200, description = "A page of balances"), (status = 404, description = "8015 not found")))]
pub async fn ledger_balance(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LedgerQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let customer = resolve(&state, &principal, &headers, &ledger_lookup(&q)).await?;
    let limit = q.limit.unwrap_or(BALANCE_PAGE_MAX).clamp(1, BALANCE_PAGE_MAX);
    let page = q.offset.unwrap_or(0).max(0);
    let filter = store::LedgerFilter {
        customer,
        program: q.program_id,
        till: q.till_id,
        kind: None,
        from: None,
        to: date("endDate", q.end_date.as_deref(), true)?,
        currency_ids: None,
    };
    let mut conn = state.db.read().await?;
    let (currency_ids, names) = ledger_currencies(&mut conn, principal.org, &q).await?;
    let named = currency_ids.is_some();
    let filter = store::LedgerFilter { currency_ids, ..filter };
    let sums = store::ledger_sums_per_currency(&mut conn, principal.org, &filter).await?;
    let mut currencies: Vec<i64> = sums.iter().map(|s| s.0).collect();
    currencies.dedup();
    let mut rows = Vec::new();
    // Per currency (the points first), per point category, in the order the types first appear.
    for currency in currencies {
        for (name, pick) in [("REGULAR", 0usize), ("PROMISED", 1usize)] {
            let mut running = 0i64;
            for (_, kind, current, promised) in sums.iter().filter(|s| s.0 == currency) {
                let amount = if pick == 0 { *current } else { *promised };
                if amount == 0 {
                    continue;
                }
                let opening = running;
                running += amount;
                let mut row = json!({"pointCategoryType": name, "ledgerEntryType": kind,
                    "points": Fixed(amount).to_f64(),
                    "openingBalance": Fixed(opening).to_f64(), "closingBalance": Fixed(running).to_f64()});
                if named {
                    row["alternateCurrencyName"] = currency_name(&names, currency);
                }
                rows.push(row);
            }
        }
    }
    let wanted = |r: &Value| {
        q.ledger_entry_type
            .as_deref()
            .is_none_or(|k| r["ledgerEntryType"] == k.trim().to_ascii_uppercase())
            && q.point_category_type
                .as_deref()
                .is_none_or(|c| r["pointCategoryType"] == c.trim().to_ascii_uppercase())
    };
    let rows: Vec<Value> = rows.into_iter().filter(wanted).collect();
    let start = usize::try_from(page.saturating_mul(limit)).unwrap_or(usize::MAX);
    let balances: Vec<Value> =
        rows.into_iter().skip(start).take(usize::try_from(limit).unwrap_or(10)).collect();
    Ok(axum::Json(json!({
        "customerDetails": {"userId": customer, "entityType": "CUSTOMER"},
        "ledgerDetails": {"pageNumber": page, "balances": balances},
        "warnings": [],
    }))
    .into_response())
}
