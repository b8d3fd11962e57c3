//! Ledger reads beyond balances and entries: which lots each ledger event moved (explode info),
//! the v2.1 connected-org forms over the caller's own org, and the `/x/neo` allocation reads.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::adjust;
use super::model::{Fixed, LotKind};
use super::routes_ops::resolve_customer;
use super::routes_v2::{LedgerQuery, customer_by_id};
use super::schedule;
use super::store::{self, EntryRow, LotRow};
use super::store_ops::{self, LotFilter};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::db::Connection;
use crate::error::{ApiError, Code};
use crate::http::extract::Query;
use crate::org::model::OrgId;

/// Ledger events one explode read answers at most.
const EXPLODE_LIMIT_MAX: i64 = 50;
/// Ids one explode read may name.
const EXPLODE_IDS_MAX: usize = 100;
/// Lots listed per ledger event at most.
const LOTS_PER_EVENT_MAX: i64 = 1000;
/// Allocation rows per page at most (the spec's `count` limit).
const ALLOCATION_PAGE_MAX: i64 = 100;
/// Lots one allocation-by-event read looks at.
const ALLOCATION_LOTS_MAX: i64 = 10_000;

/// Capillary's event name of a ledger entry; awards are told apart by how their lot was made
/// (`source` of the lot the entry created).
pub fn event_name(entry: &EntryRow, lot_source: Option<&str>) -> &'static str {
    match entry.kind.as_str() {
        "AWARD" | "PROMISED_AWARD" => match lot_source {
            Some("REGISTRATION") => "CustomerRegistration",
            Some("MANUAL") => "ManualCurrencyAllocation",
            _ if entry.transaction_id.is_some() => "TransactionAdd",
            _ => "PointsAward",
        },
        "UNLOCK" => "PromisedPointsConversion",
        "REDEEM" => "PointsRedemption",
        "REDEEM_REVERSAL" => "PointsRedemptionReversal",
        "EXPIRE" => "PointsExpiry",
        "RETURN" => "ReturnBill",
        "ADJUST" => "ManualPointsAdjustment",
        "TRANSFER_OUT" | "TRANSFER_IN" => "PointsTransfer",
        _ => "Unknown",
    }
}

fn category(lot: &LotRow) -> &'static str {
    if lot.kind == LotKind::Promised.as_str() { "PROMISED" } else { "REGULAR" }
}

/// The category of lots Capillary calls `point_category_id`: 1 regular (main), 2 promised.
fn category_id(lot: &LotRow) -> i64 {
    if lot.kind == LotKind::Promised.as_str() { 2 } else { 1 }
}

/// Query of the explode reads.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ExplodeQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Comma-separated ledger event (entry) ids.
    event_ids: Option<String>,
    event_name: Option<String>,
    /// Comma-separated references: bill ids (TransactionAdd, ReturnBill), redemption ids
    /// (PointsRedemption), transfer ids (PointsTransfer).
    event_reference_ids: Option<String>,
    get_bill_details: Option<bool>,
    get_custom_fields: Option<bool>,
    get_extended_fields: Option<bool>,
    get_payment_modes: Option<bool>,
    get_max_conversion_details: Option<bool>,
    get_points_earned_breakup: Option<bool>,
    include_last_one_year_data: Option<bool>,
    offset: Option<i64>,
    limit: Option<i64>,
}

fn ids(field: &str, value: &str) -> Result<Vec<i64>, ApiError> {
    let list: Result<Vec<i64>, _> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<i64>())
        .collect();
    let list =
        list.map_err(|_| ApiError::invalid(format!("{field} must be comma-separated ids")))?;
    if list.len() > EXPLODE_IDS_MAX {
        return Err(ApiError::invalid(format!("{field}: at most {EXPLODE_IDS_MAX} ids")));
    }
    if list.is_empty() {
        return Err(ApiError::invalid(format!("{field} must name at least one id")));
    }
    Ok(list)
}

/// The customer's entries a query names.
async fn named_entries(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    q: &ExplodeQuery,
) -> Result<Vec<EntryRow>, ApiError> {
    if let Some(list) = q.event_ids.as_deref().filter(|v| !v.trim().is_empty()) {
        return Ok(store_ops::entries_by_ids(c, org, customer, &ids("eventIds", list)?).await?);
    }
    let (Some(name), Some(refs)) = (
        q.event_name.as_deref().map(str::trim).filter(|n| !n.is_empty()),
        q.event_reference_ids.as_deref().filter(|v| !v.trim().is_empty()),
    ) else {
        return Err(ApiError::invalid("give eventIds, or eventName with eventReferenceIds"));
    };
    let refs = ids("eventReferenceIds", refs)?;
    let mut entries = Vec::new();
    for id in refs {
        let found = match name {
            "TransactionAdd" | "ReturnBill" | "NewBill" => {
                store_ops::entries_of_transaction(c, org, customer, id, LOTS_PER_EVENT_MAX).await?
            }
            "PointsRedemption" => {
                let mut found = Vec::new();
                if let Some(r) = store::get_redemption(c, org, id).await?
                    && r.customer_id == customer
                {
                    found.extend(store_ops::entries_by_ids(c, org, customer, &[r.entry_id]).await?);
                    found.extend(
                        store_ops::entries_of_reference(
                            c,
                            org,
                            customer,
                            &format!("redemption:{id}"),
                            LOTS_PER_EVENT_MAX,
                        )
                        .await?,
                    );
                }
                found
            }
            "PointsTransfer" => match store_ops::get_transfer(c, org, id).await? {
                Some(t) => {
                    store_ops::entries_by_ids(c, org, customer, &[t.out_entry_id, t.in_entry_id])
                        .await?
                }
                None => Vec::new(),
            },
            other => {
                return Err(ApiError::invalid(format!(
                    "eventName '{other}' must be TransactionAdd, ReturnBill, PointsRedemption or \
                     PointsTransfer (or use eventIds)"
                )));
            }
        };
        entries.extend(found);
    }
    entries.sort_by_key(|e| e.id);
    entries.dedup_by_key(|e| e.id);
    Ok(entries)
}

async fn explode(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    q: &ExplodeQuery,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    match q.kind.as_deref().map(|k| k.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("CUSTOMER") => {}
        Some("USERGROUP2") => {
            return Err(ApiError::with_message(
                Code::InvalidGroupDetails,
                "user groups are not supported yet: no group can be found",
            ));
        }
        Some(other) => return Err(ApiError::invalid(format!("unknown type '{other}'"))),
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=EXPLODE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {EXPLODE_LIMIT_MAX}")));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    let _ = (
        q.get_custom_fields,
        q.get_extended_fields,
        q.get_payment_modes,
        q.get_max_conversion_details,
        q.get_points_earned_breakup,
        q.include_last_one_year_data,
    );
    let mut conn = state.db.read().await?;
    let customer = resolve_customer(
        &mut conn,
        principal.org,
        headers,
        q.source.as_deref(),
        q.account_id.as_deref(),
        q.identifier_name.as_deref(),
        q.identifier_value.as_deref(),
    )
    .await?;
    let tz = adjust::org_zone(&mut conn, principal.org).await?;
    let entries = named_entries(&mut conn, principal.org, customer, q).await?;
    let total = entries.len() as i64;
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(10);
    let mut details = Vec::new();
    for entry in entries.iter().skip(skip).take(take) {
        let moved =
            store_ops::lots_moved_by(&mut conn, principal.org, entry.id, LOTS_PER_EVENT_MAX)
                .await?;
        let lots: Vec<Value> = moved
            .iter()
            .map(|(lot, delta)| {
                json!({"pointsAwardedId": lot.id, "points": Fixed(delta.abs()).to_f64(),
                    "direction": if *delta < 0 { "DEBIT" } else { "CREDIT" },
                    "pointCategoryType": category(lot), "pointsType": schedule::points_type(&lot.source),
                    "awardedPoints": Fixed(lot.awarded).to_f64(), "remainingPoints": Fixed(lot.remaining).to_f64(),
                    "awardedDate": crate::transactions::time::iso_in(lot.awarded_at, tz),
                    "expiryDate": lot.expires_at.map(|e| crate::transactions::time::iso_in(e, tz)),
                    "strategy": lot.rule, "awardedOnBillId": lot.transaction_id,
                    "lineItemId": lot.line_item_id})
            })
            .collect();
        let name = event_name(entry, moved.first().map(|(l, _)| l.source.as_str()));
        let mut item = json!({
            "eventId": entry.id,
            "eventName": name,
            "ledgerEntryType": entry.kind,
            "eventDate": crate::transactions::time::iso_in(entry.effective_at, tz),
            "eventReferenceId": entry.transaction_id.map(|t| t.to_string()).unwrap_or_else(|| entry.reference.clone()),
            "programId": entry.program_id,
            "points": Fixed(entry.current_delta + entry.promised_delta).to_f64(),
            "pointCategoryType": if entry.promised_delta != 0 && entry.current_delta == 0 { "PROMISED" } else { "REGULAR" },
            "notes": entry.note,
            "lots": lots,
        });
        if matches!(name, "TransactionAdd" | "ReturnBill")
            && let Some(bill_id) = entry.transaction_id
        {
            item["lineItemsBreakup"] =
                Value::Array(line_breakup(&mut conn, principal.org, entry, &moved, bill_id).await?);
        }
        if q.get_bill_details.unwrap_or(false)
            && let Some(bill_id) = entry.transaction_id
            && let Some(bill) =
                crate::transactions::store::get(&mut conn, principal.org, bill_id).await?
        {
            item["billDetails"] = json!({"billId": bill.id, "billNumber": bill.bill_number,
                "type": bill.kind, "billAmount": Fixed(bill.amount).to_f64(),
                "billingDate": crate::transactions::time::iso_in(bill.billing_at, tz),
                "storeId": bill.store_id, "tillId": bill.till_id});
        }
        details.push(item);
    }
    Ok(axum::Json(json!({
        "customerDetails": {"userId": customer, "entityType": "CUSTOMER"},
        "ledgerExplodeDetails": details,
        "pagination": {"offset": offset, "limit": limit, "total": total},
        "warnings": [],
    }))
    .into_response())
}

/// Splits `total` (of either sign) over `weights` in proportion (equally when no weight is
/// positive): floor shares first, then the units the floors leave, one at a time, to the first
/// weights, so that the parts add up exactly.
fn split(total: i64, weights: &[i64]) -> Vec<i64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let weights: Vec<i64> = if weights.iter().any(|w| *w > 0) {
        weights.iter().map(|w| (*w).max(0)).collect()
    } else {
        vec![1; weights.len()]
    };
    let sum: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    let magnitude = i128::from(total).abs();
    let mut parts: Vec<i128> =
        weights.iter().map(|w| magnitude * i128::from((*w).max(0)) / sum).collect();
    let mut left = magnitude - parts.iter().sum::<i128>();
    for (part, weight) in parts.iter_mut().zip(&weights) {
        if left <= 0 {
            break;
        }
        if *weight > 0 {
            *part += 1;
            left -= 1;
        }
    }
    let sign: i128 = if total < 0 { -1 } else { 1 };
    parts.into_iter().map(|p| i64::try_from(sign * p).unwrap_or(0)).collect()
}

/// The line-item breakup of a bill's award (TransactionAdd) or of a return (ReturnBill): the
/// points each line of the sale earned, or gave back, in this entry. A line-item rule's lot
/// names its line, so what the entry moved on it is that line's; the rest of the entry (bill
/// rules, and for a return what other lots or a negative balance covered) is spread over the
/// lines by their amounts — the sale's lines for an award; for a return, the returned lines
/// (each shown as the sale line it returns), or the sale's lines when the return named none.
/// Lines are shown by the sale line's id, so both events of one line carry the same id.
async fn line_breakup(
    c: &mut impl Connection,
    org: OrgId,
    entry: &EntryRow,
    moved: &[(LotRow, i64)],
    bill_id: i64,
) -> Result<Vec<Value>, ApiError> {
    use crate::transactions::store as bills;
    let Some(bill) = bills::get(c, org, bill_id).await? else { return Ok(Vec::new()) };
    let own_lines = bills::lines(c, org, bill_id).await?;
    let is_return = entry.kind == "RETURN";
    // The sale whose lines earned: the bill itself, or the sale a return gives back to.
    let (sale_id, sale_lines) = match (is_return, bill.parent_id) {
        (true, Some(parent)) => (parent, bills::lines(c, org, parent).await?),
        (true, None) => return Ok(Vec::new()),
        (false, _) => (bill_id, own_lines.clone()),
    };
    let sale_lines: Vec<_> = sale_lines.into_iter().filter(|l| l.kind != "RETURN").collect();
    // (sale line id, amount the bill-level share is spread by). A returned line that names only
    // a quantity is worth its share of the sale line's amount.
    let returned_value = |l: &crate::transactions::store::LineRow| {
        let parent = l.parent_line_id.and_then(|p| sale_lines.iter().find(|s| s.id == p));
        match parent {
            Some(p) if l.amount <= 0 && p.qty > 0 => {
                i64::try_from(i128::from(p.amount) * i128::from(l.qty) / i128::from(p.qty))
                    .unwrap_or(0)
            }
            _ => l.amount,
        }
    };
    let mut spread: Vec<(i64, i64)> = if is_return {
        own_lines
            .iter()
            .filter(|l| l.kind == "RETURN" || l.parent_line_id.is_some())
            .map(|l| (l.parent_line_id.unwrap_or(l.id), returned_value(l)))
            .collect()
    } else {
        Vec::new()
    };
    if spread.is_empty() {
        spread = sale_lines.iter().map(|l| (l.id, l.amount)).collect();
    }
    let total = entry.current_delta + entry.promised_delta;
    let mut direct: Vec<(i64, i64)> = Vec::new();
    for (lot, delta) in moved {
        if let Some(line) = lot.line_item_id
            && lot.transaction_id == Some(sale_id)
        {
            match direct.iter_mut().find(|(l, _)| *l == line) {
                Some((_, sum)) => *sum += delta,
                None => direct.push((line, *delta)),
            }
        }
    }
    let rest = total - direct.iter().map(|(_, d)| d).sum::<i64>();
    let weights: Vec<i64> = spread.iter().map(|(_, a)| *a).collect();
    let shares = split(rest, &weights);
    let mut rows: Vec<Value> = Vec::new();
    for line in &sale_lines {
        let own = direct.iter().filter(|(l, _)| *l == line.id).map(|(_, d)| d).sum::<i64>();
        let share = spread
            .iter()
            .zip(&shares)
            .filter(|((l, _), _)| *l == line.id)
            .map(|(_, s)| s)
            .sum::<i64>();
        if own == 0 && share == 0 {
            continue;
        }
        rows.push(json!({"lineItemId": line.id, "serial": line.serial,
            "itemCode": line.item_code, "amount": Fixed(line.amount).to_f64(),
            "points": Fixed(own + share).to_f64(), "lineItemPoints": Fixed(own).to_f64(),
            "billPointsShare": Fixed(share).to_f64()}));
    }
    Ok(rows)
}

/// `GET /v2/pointsLedger/getLedgerExplodeInfo` — for each named ledger event (entry ids, or bill,
/// redemption or transfer ids), the lots it moved: which awards a debit consumed (soonest-
/// expiring first) and which a credit created or restored; bill events add what each line item
/// earned or gave back (`lineItemsBreakup`).
#[utoipa::path(get, path = "/v2/pointsLedger/getLedgerExplodeInfo", tag = "points-ledger", params(ExplodeQuery),
    responses((status = 200, description = "The events and their lots"), (status = 400, description = "Bad ids or event name"), (status = 404, description = "8015 not found")))]
pub async fn explode_info(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<ExplodeQuery>,
) -> Result<Response, ApiError> {
    explode(&state, &principal, &headers, &q).await
}

/// The v2.1 scope headers: only the caller's own org is served (connected orgs do not exist).
fn own_scope_only(principal: &Principal, headers: &HeaderMap) -> Result<(), ApiError> {
    let scope = headers.get("data-scope").and_then(|v| v.to_str().ok()).map(str::trim);
    if scope.is_some_and(|s| !s.is_empty() && !s.eq_ignore_ascii_case("SELF")) {
        return Err(ApiError::with_message(
            Code::NotYetSupported,
            "DATA-SCOPE OTHER is not supported: connected orgs do not exist yet, use SELF",
        ));
    }
    if let Some(orgs) = headers.get("data-scope-org").and_then(|v| v.to_str().ok()) {
        for org in orgs.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if org.parse::<i64>().ok() != Some(principal.org.0) {
                return Err(ApiError::with_message(
                    Code::NotYetSupported,
                    format!("DATA-SCOPE-ORG {org}: only the caller's own org can be read"),
                ));
            }
        }
    }
    Ok(())
}

/// `GET /v2.1/pointsLedger/getCustomerLedgerInfo` — the v2 ledger read for the caller's org
/// (`DATA-SCOPE: SELF`); other scopes answer 501.
#[utoipa::path(get, path = "/v2.1/pointsLedger/getCustomerLedgerInfo", tag = "points-ledger", params(LedgerQuery),
    responses((status = 200, description = "A page of entries"), (status = 404, description = "8015 not found"), (status = 501, description = "Connected orgs are not supported")))]
pub async fn connected_ledger_info(
    state: State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    q: Query<LedgerQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    own_scope_only(&principal, &headers)?;
    super::routes_v2::ledger_info(state, principal, headers, q).await
}

/// `GET /v2.1/pointsLedger/getLedgerExplodeInfo` — the v2 explode read for the caller's org.
#[utoipa::path(get, path = "/v2.1/pointsLedger/getLedgerExplodeInfo", tag = "points-ledger", params(ExplodeQuery),
    responses((status = 200, description = "The events and their lots"), (status = 404, description = "8015 not found"), (status = 501, description = "Connected orgs are not supported")))]
pub async fn connected_explode_info(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<ExplodeQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    own_scope_only(&principal, &headers)?;
    explode(&state, &principal, &headers, &q).await
}

// ------------------------------------------------------------------------ /x/neo reads

/// One lot as an allocation row (snake_case, as the Neo APIs answer).
async fn allocation_json(
    c: &mut impl Connection,
    org: OrgId,
    lot: &LotRow,
    tz: chrono_tz::Tz,
) -> Result<Value, ApiError> {
    let till = store_ops::award_till_of_lot(c, org, lot.id).await?;
    Ok(json!({
        "id": lot.id,
        "till_id": till,
        "point_category_id": category_id(lot),
        "point_category": category(lot),
        "program_id": lot.program_id,
        "customer_id": lot.customer_id,
        "points": Fixed(lot.awarded).to_f64(),
        "points_remaining": Fixed(lot.remaining).to_f64(),
        "awarded_date": crate::transactions::time::v1_time(lot.awarded_at, tz),
        "expiry_date": lot.expires_at.map(|e| crate::transactions::time::v1_time(e, tz)),
        "strategy_id": Value::Null,
        "strategy_name": lot.rule,
        "points_type": schedule::points_type(&lot.source),
        "bill_id": lot.transaction_id,
    }))
}

fn page_and_count(page: Option<i64>, count: Option<i64>) -> Result<(i64, i64), ApiError> {
    let page = page.unwrap_or(1);
    if page < 1 {
        return Err(ApiError::invalid("page starts at 1"));
    }
    let count = count.unwrap_or(10);
    if !(1..=ALLOCATION_PAGE_MAX).contains(&count) {
        return Err(ApiError::invalid(format!("count must be 1 to {ALLOCATION_PAGE_MAX}")));
    }
    Ok((page, count))
}

/// Query of `GET /x/neo/pointsAllocation/event`.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct AllocationEventQuery {
    entity_id: Option<String>,
    customer_id: Option<i64>,
    event_type_id: Option<i64>,
    page: Option<i64>,
    count: Option<i64>,
}

/// Event type ids with awards Perks can find: bills (1 NewBill, 8 NewBillDVS, 9
/// TransactionFinished, 11 TransactionUpdate, 15 TransactionAdd, 16 DelayedAccrual),
/// 2 CustomerRegistration, 24 PointsTransfer. The other known ids award nothing here.
const EVENT_TYPES_KNOWN_MAX: i64 = 25;

/// `GET /x/neo/pointsAllocation/event` — the awards (lots) an event made for a customer: a bill's,
/// the registration's, or a received transfer's.
#[utoipa::path(get, path = "/x/neo/pointsAllocation/event", tag = "points-ledger", params(AllocationEventQuery),
    responses((status = 200, description = "A page of allocations"), (status = 400, description = "Missing or bad parameter"), (status = 404, description = "8015 not found")))]
pub async fn allocations_by_event(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AllocationEventQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let entity = q
        .entity_id
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::invalid("entity_id is required"))?;
    let customer = q.customer_id.ok_or_else(|| ApiError::invalid("customer_id is required"))?;
    let event = q.event_type_id.ok_or_else(|| ApiError::invalid("event_type_id is required"))?;
    if !(1..=EVENT_TYPES_KNOWN_MAX).contains(&event) {
        return Err(ApiError::invalid(format!("event_type_id {event} is not a known event type")));
    }
    let (page, count) = page_and_count(q.page, q.count)?;
    let mut conn = state.db.read().await?;
    let customer = customer_by_id(&mut conn, principal.org, customer).await?;
    let tz = adjust::org_zone(&mut conn, principal.org).await?;
    let entity_id = || {
        entity
            .parse::<i64>()
            .map_err(|_| ApiError::invalid("entity_id must be an id for this event"))
    };
    let lots: Vec<LotRow> = match event {
        1 | 8 | 9 | 11 | 15 | 16 => {
            store::lots_of_transaction(&mut conn, principal.org, entity_id()?)
                .await?
                .into_iter()
                .filter(|l| l.customer_id == customer)
                .collect()
        }
        2 => {
            store_ops::lots_of_source(
                &mut conn,
                principal.org,
                customer,
                super::ledger::REGISTRATION_SOURCE,
                ALLOCATION_LOTS_MAX,
            )
            .await?
        }
        24 => match store_ops::get_transfer(&mut conn, principal.org, entity_id()?).await? {
            Some(t) if t.to_customer_id == customer => store_ops::lots_moved_by(
                &mut conn,
                principal.org,
                t.in_entry_id,
                ALLOCATION_LOTS_MAX,
            )
            .await?
            .into_iter()
            .map(|(lot, _)| lot)
            .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let skip = usize::try_from((page - 1).saturating_mul(count)).unwrap_or(usize::MAX);
    let mut data = Vec::new();
    for lot in lots.iter().skip(skip).take(usize::try_from(count).unwrap_or(10)) {
        data.push(allocation_json(&mut conn, principal.org, lot, tz).await?);
    }
    Ok(axum::Json(json!({"data": data, "page": page, "count": count, "total": lots.len()}))
        .into_response())
}

/// Query of `GET /x/neo/pointsAllocation/dateRange`.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct AllocationRangeQuery {
    program_id: Option<i64>,
    point_category_id: Option<i64>,
    /// `YYYY-MM-DD` (org time zone), inclusive.
    expiry_date_start: Option<String>,
    expiry_date_end: Option<String>,
    /// The customer id.
    entity_id: Option<i64>,
    page: Option<i64>,
    count: Option<i64>,
}

/// `GET /x/neo/pointsAllocation/dateRange` — the customer's awards in a program and category
/// (1 regular, 2 promised) whose expiry falls within the dates.
#[utoipa::path(get, path = "/x/neo/pointsAllocation/dateRange", tag = "points-ledger", params(AllocationRangeQuery),
    responses((status = 200, description = "A page of allocations"), (status = 400, description = "Missing or bad parameter; 1101 unknown program"), (status = 404, description = "8015 not found")))]
pub async fn allocations_by_expiry(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AllocationRangeQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let program = q.program_id.ok_or_else(|| ApiError::invalid("program_id is required"))?;
    let kind = match q.point_category_id {
        Some(1) => LotKind::Regular.as_str(),
        Some(2) => LotKind::Promised.as_str(),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "point_category_id {other} must be 1 (regular) or 2 (promised)"
            )));
        }
        None => return Err(ApiError::invalid("point_category_id is required")),
    };
    let parse_day = |field: &str, v: Option<&str>| {
        let v = v.map(str::trim).filter(|v| !v.is_empty());
        let v = v.ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(format!("{field} must be YYYY-MM-DD")))
    };
    let start = parse_day("expiry_date_start", q.expiry_date_start.as_deref())?;
    let end = parse_day("expiry_date_end", q.expiry_date_end.as_deref())?;
    if end < start {
        return Err(ApiError::invalid("expiry_date_end must not be before expiry_date_start"));
    }
    let customer = q.entity_id.ok_or_else(|| ApiError::invalid("entity_id is required"))?;
    let (page, count) = page_and_count(q.page, q.count)?;
    let mut conn = state.db.read().await?;
    let customer = customer_by_id(&mut conn, principal.org, customer).await?;
    schedule::programs_for(&state.programs, &mut conn, principal.org, Some(program), false).await?;
    let tz = adjust::org_zone(&mut conn, principal.org).await?;
    let from = start
        .and_hms_opt(0, 0, 0)
        .map(|m| crate::transactions::time::local_to_millis(m, tz) - 1)
        .unwrap_or(i64::MIN);
    let to = adjust::end_of_local_day(end, tz).unwrap_or(i64::MAX);
    let filter = LotFilter {
        customer,
        program: Some(program),
        kind: Some(kind),
        with_points: false,
        expires_after: Some(from),
        expires_until: Some(to),
    };
    let total = store_ops::count_lots(&mut conn, principal.org, &filter).await?;
    let lots = store_ops::lots_page(
        &mut conn,
        principal.org,
        &filter,
        count,
        (page - 1).saturating_mul(count),
    )
    .await?;
    let mut data = Vec::with_capacity(lots.len());
    for lot in &lots {
        data.push(allocation_json(&mut conn, principal.org, lot, tz).await?);
    }
    Ok(axum::Json(json!({"data": data, "page": page, "count": count, "total": total}))
        .into_response())
}
