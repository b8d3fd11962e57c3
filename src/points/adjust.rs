//! Manual points operations: deductions (negative adjustments), the expiry of one award,
//! points issued by hand against an event (revoked when the bill they reward is returned), and
//! early conversion of promised points. Each write is one transaction through the ledger,
//! audited, with an outbox event.

use chrono::NaiveDate;
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::json;

use super::ledger::{self, Award, EntryMeta, LedgerError, Scope};
use super::model::{Fixed, LotKind};
use super::redemption::PointsError;
use super::store::{self, LotRow};
use super::store_ops::{self, NewAdjustment, NewAllocation};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::currencies::model::CurrencyRow;
use crate::customers::model::CustomerId;
use crate::db::{Connection, Db, DbError, Tx};
use crate::error::{ApiError, Code};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;
use crate::programs::cache::ProgramCache;
use crate::programs::engine::{BillFacts, CompiledProgram};
use crate::programs::model::{ProgramError, ProgramId};

/// Org config letting deductions (and returns) drive a balance below zero.
pub const NEGATIVE_BALANCE_CONFIG: &str = "ALLOW_NEGATIVE_BALANCE_ON_RETURN";
/// Lot source of points issued by hand.
pub const MANUAL_SOURCE: &str = "MANUAL";
/// Allocations of one bill revoked at most by one return (a bound on the hook's work).
const ALLOCATIONS_PER_BILL_MAX: i64 = 1000;

fn actor_of(principal: Option<&Principal>) -> AuditActor {
    principal.map(AuditActor::from).unwrap_or_else(AuditActor::system)
}

fn flag(values: &[(String, String)], key: &str) -> bool {
    values.iter().any(|(k, v)| {
        k == key && matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
    })
}

/// The org's time zone (UTC when unknown).
pub async fn org_zone(c: &mut impl Connection, org: OrgId) -> Result<Tz, DbError> {
    let zone = crate::org::store::get_org(c, org).await?.map(|o| o.timezone).unwrap_or_default();
    Ok(zone.parse().unwrap_or(chrono_tz::UTC))
}

/// The last millisecond of a local day (what lots expiring "on" that day expire at).
pub fn end_of_local_day(day: NaiveDate, tz: Tz) -> Option<i64> {
    let next = day.succ_opt()?.and_hms_opt(0, 0, 0)?;
    Some(crate::transactions::time::local_to_millis(next, tz) - 1)
}

/// A lot of the customer in the program, or 841.
async fn own_lot(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    lot: i64,
) -> Result<LotRow, ApiError> {
    store::get_lot(c, org, lot)
        .await?
        .filter(|l| l.customer_id == customer && l.program_id == program)
        .ok_or_else(|| {
            ApiError::with_message(
                Code::PointsAwardNotFound,
                format!("points award {lot} not found for the customer in the program"),
            )
        })
}

// ------------------------------------------------------------------------------ deductions

/// A deduction to make.
#[derive(Clone, Copy, Debug)]
pub struct Deduction<'a> {
    pub customer: i64,
    pub program: &'a CompiledProgram,
    pub points: Fixed,
    pub reason: &'a str,
    /// A specific award to deduct from first (`pointsAwardedId`).
    pub target_lot: Option<i64>,
    pub promotion_id: Option<i64>,
    pub promotion_identifier: Option<&'a str>,
    pub till: Option<i64>,
    /// The alternate currency to deduct instead of points (an active one of the org's).
    pub currency: Option<&'a CurrencyRow>,
}

/// What a deduction did.
#[derive(Clone, Copy, Debug)]
pub struct Deducted {
    pub id: i64,
    pub taken: Fixed,
    /// Points beyond the balance (only with `ALLOW_NEGATIVE_BALANCE_ON_RETURN`).
    pub debt: Fixed,
    pub balance: Fixed,
}

/// Deducts points, or an alternate currency (a negative `ADJUST` entry in that currency),
/// soonest-expiring lots first (the named award first, which must be of that currency); below
/// zero only when the org's `ALLOW_NEGATIVE_BALANCE_ON_RETURN` or the program's
/// `returns.allowNegativeBalance` allows it, else 803 and nothing written.
#[tracing::instrument(skip_all, fields(org = org.0, customer = d.customer))]
pub async fn deduct(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    d: &Deduction<'_>,
    now: i64,
) -> Result<Deducted, ApiError> {
    if !d.points.is_positive() {
        return Err(PointsError::InvalidPoints.into());
    }
    let mut tx = db.begin_write().await?;
    let configs =
        crate::transactions::store::configs(&mut tx, org, &[NEGATIVE_BALANCE_CONFIG]).await?;
    let allow_negative =
        flag(&configs, NEGATIVE_BALANCE_CONFIG) || d.program.doc.returns.allow_negative_balance;
    let program = d.program.id.0;
    let scope = Scope { org, customer: d.customer, program, till: d.till, now };
    let currency = d.currency.map(|c| c.id).unwrap_or(ledger::POINTS);
    if currency == ledger::POINTS {
        ledger::open_account(&mut tx, scope).await?;
    } else {
        ledger::open_currency_account(&mut tx, scope, currency).await?;
    }
    if let Some(lot) = d.target_lot {
        let lot = own_lot(&mut tx, org, d.customer, program, lot).await?;
        if lot.currency_id != currency {
            return Err(ApiError::with_message(
                Code::PointsAwardNotFound,
                format!("points award {} is not an award of the currency deducted", lot.id),
            ));
        }
    }
    let reference = d
        .promotion_id
        .map(|p| format!("promotion:{p}"))
        .or_else(|| d.promotion_identifier.map(|p| format!("promotion:{p}")))
        .unwrap_or_default();
    let meta = EntryMeta { reference: &reference, note: d.reason, ..EntryMeta::default() };
    let done =
        ledger::deduct_in(&mut tx, scope, currency, d.points, d.target_lot, allow_negative, meta)
            .await
            .map_err(|e| match e {
                LedgerError::Insufficient { available } => match d.currency {
                    None => ApiError::from(PointsError::MoreThanAvailable {
                        requested: d.points,
                        available,
                    }),
                    Some(c) => ApiError::with_message(
                        Code::PointsMoreThanAvailable,
                        format!("{} {} asked, {available} available", d.points, c.name),
                    ),
                },
                LedgerError::NotPositive => ApiError::from(PointsError::InvalidPoints),
                LedgerError::Db(db) => ApiError::from(db),
            })?;
    let id = store_ops::insert_adjustment(
        &mut tx,
        org,
        &NewAdjustment {
            customer_id: d.customer,
            program_id: program,
            points: d.points.0,
            taken: done.taken.0,
            reason: d.reason,
            category: LotKind::Regular.as_str(),
            currency_id: currency,
            target_lot_id: d.target_lot,
            promotion_id: d.promotion_id,
            promotion_identifier: d.promotion_identifier,
            entry_id: done.entry,
            till_id: d.till,
            created_at: now,
        },
    )
    .await?;
    let mut payload = json!({"adjustmentId": id, "customerId": d.customer, "programId": program,
        "points": -d.points.to_f64(), "reason": d.reason, "negativeBalance": done.debt.to_f64()});
    if let Some(c) = d.currency {
        payload["alternateCurrencyId"] = json!(c.id);
        payload["alternateCurrencyName"] = json!(c.name);
    }
    audit::record(
        &mut tx,
        org,
        &actor_of(principal),
        Change {
            entity_type: "POINTS_ADJUSTMENT",
            entity_id: id,
            action: "CREATE",
            before: None,
            after: Some(payload.clone()),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        principal,
        NewEvent {
            event_type: if d.currency.is_some() { "currency.deducted" } else { "points.deducted" },
            entity_type: "CUSTOMER",
            entity_id: d.customer,
            payload,
        },
    )
    .await?;
    let balance = ledger::current_balance_in(&mut tx, scope, currency).await?.unwrap_or(0);
    tx.commit().await?;
    Ok(Deducted { id, taken: done.taken, debt: done.debt, balance: Fixed(balance) })
}

// -------------------------------------------------------------------------- expiry changes

/// Which way an expiry change may move the date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    Early,
    Extend,
}

/// An expiry change of one award.
#[derive(Clone, Copy, Debug)]
pub struct ExpiryChange<'a> {
    pub customer: i64,
    pub program: i64,
    pub lot: i64,
    /// The new last day (org time zone): the award expires at its end.
    pub day: NaiveDate,
    pub reason: ExpiryReason,
    pub note: &'a str,
    /// `standardMeta` and `customMeta`, kept in the audit record.
    pub meta: &'a serde_json::Value,
}

/// What an expiry change did.
#[derive(Clone, Copy, Debug)]
pub struct ExpiryChanged {
    pub previous: Option<i64>,
    pub expires_at: i64,
    /// Points that expired at once because the new date has passed.
    pub expired: Fixed,
}

/// Moves one award's expiry: `EARLY_EXPIRY` only to an earlier date, `EXTEND_EXPIRY` only to a
/// later one; an award with nothing left or already expired cannot change. A new date already
/// past expires what the award holds at once (an `EXPIRE` entry).
#[tracing::instrument(skip_all, fields(org = org.0, customer = ch.customer, lot = ch.lot))]
pub async fn change_expiry(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    ch: &ExpiryChange<'_>,
    now: i64,
) -> Result<ExpiryChanged, ApiError> {
    let mut tx = db.begin_write().await?;
    let tz = org_zone(&mut tx, org).await?;
    let expires_at = end_of_local_day(ch.day, tz)
        .ok_or_else(|| ApiError::invalid("expiryDate.expiryValue is out of range"))?;
    let scope = Scope { org, customer: ch.customer, program: ch.program, till: None, now };
    ledger::open_account(&mut tx, scope).await?;
    let lot = own_lot(&mut tx, org, ch.customer, ch.program, ch.lot).await?;
    if lot.remaining <= 0 || lot.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::invalid(format!(
            "points award {} has no points left to expire or has expired already",
            lot.id
        )));
    }
    match (ch.reason, lot.expires_at) {
        (ExpiryReason::Extend, None) => {
            return Err(ApiError::invalid(
                "EXTEND_EXPIRY: the award never expires, there is nothing to extend",
            ));
        }
        (ExpiryReason::Extend, Some(current)) if expires_at <= current => {
            return Err(ApiError::invalid(
                "EXTEND_EXPIRY needs a date after the award's current expiry",
            ));
        }
        (ExpiryReason::Early, Some(current)) if expires_at >= current => {
            return Err(ApiError::invalid(
                "EARLY_EXPIRY needs a date before the award's current expiry",
            ));
        }
        _ => {}
    }
    let expired = ledger::change_expiry(&mut tx, scope, lot.id, Some(expires_at)).await?;
    let after = json!({"pointsAwardedRefId": lot.id, "expiresAt": expires_at,
        "reason": match ch.reason { ExpiryReason::Early => "EARLY_EXPIRY", ExpiryReason::Extend => "EXTEND_EXPIRY" },
        "note": ch.note, "meta": ch.meta, "expiredPoints": expired.to_f64()});
    audit::record(
        &mut tx,
        org,
        &actor_of(principal),
        Change {
            entity_type: "POINTS_AWARD",
            entity_id: lot.id,
            action: "UPDATE_EXPIRY",
            before: Some(json!({"pointsAwardedRefId": lot.id, "expiresAt": lot.expires_at})),
            after: Some(after.clone()),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        principal,
        NewEvent {
            event_type: "points.expiry_changed",
            entity_type: "CUSTOMER",
            entity_id: ch.customer,
            payload: after,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(ExpiryChanged { previous: lot.expires_at, expires_at, expired })
}

// ---------------------------------------------------------------------- manual allocation

/// Event names whose source id is a bill id (the allocation is revoked when it is returned).
pub fn is_bill_event(event_name: &str) -> bool {
    matches!(event_name, "TransactionAdd" | "GroupTransactionAdd")
}

/// Event names an allocation may reward.
pub const ALLOCATION_EVENTS: [&str; 7] = [
    "TransactionAdd",
    "GroupTransactionAdd",
    "TargetCompleted",
    "GenericEvent",
    "CustomerPromotionImport",
    "LineitemsPointsPromotionImport",
    "BillPointsPromotionImport",
];

/// One allocation to make.
#[derive(Clone, Copy, Debug)]
pub struct Allocation<'a> {
    pub customer: i64,
    pub program: &'a CompiledProgram,
    pub event_name: &'a str,
    pub event_source_id: &'a str,
    pub promised: bool,
    /// 1-based number of the program's earn rule applied as the award strategy.
    pub award_strategy: usize,
    pub expiry_strategy: Option<i64>,
    /// The amount points are computed on; None (`-1`) means the bill's own amount.
    pub source_value: Option<Decimal>,
    pub source_rounding: RoundingStrategy,
    pub points_rounding: RoundingStrategy,
    pub till: Option<i64>,
    /// The alternate currency to issue instead of points (an active one of the org's; never
    /// promised).
    pub currency: Option<&'a CurrencyRow>,
}

/// What an allocation did.
#[derive(Clone, Copy, Debug)]
pub struct Allocated {
    pub id: i64,
    pub lot: i64,
    pub points: Fixed,
    pub expires_at: Option<i64>,
    pub unlock_at: Option<i64>,
}

/// Issues points by hand: the program's earn rule number `awardStrategyId` is applied (its
/// condition skipped) to a bill whose amount is `sourceValue` (or the referenced bill's own
/// amount), rounded as asked; the lot expires by the program's expiry rule and, for a bill
/// event, is linked to the bill so that its return revokes it.
#[tracing::instrument(skip_all, fields(org = org.0, customer = a.customer))]
pub async fn allocate(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    a: &Allocation<'_>,
    now: i64,
) -> Result<Allocated, ApiError> {
    let mut tx = db.begin_write().await?;
    let program = a.program;
    let bill = if is_bill_event(a.event_name) {
        let id: i64 = a.event_source_id.trim().parse().map_err(|_| {
            ApiError::invalid("eventSourceId must be the bill id for a TransactionAdd event")
        })?;
        let bill = crate::transactions::store::get(&mut tx, org, id)
            .await?
            .filter(|t| t.customer_id == Some(a.customer) && !t.kind.contains("RETURN"))
            .ok_or_else(|| {
                ApiError::with_message(
                    Code::TransactionIdNotFoundForCustomer,
                    format!("bill {id} is not a sale of the customer"),
                )
            })?;
        Some(bill)
    } else {
        None
    };
    let amount = match (a.source_value, &bill) {
        (Some(value), _) => value.round_dp_with_strategy(0, a.source_rounding),
        (None, Some(bill)) => Fixed(bill.amount).to_decimal(),
        (None, None) => {
            return Err(ApiError::invalid(
                "sourceValue is required (-1 takes the bill's amount only for TransactionAdd)",
            ));
        }
    };
    let rule_name = program
        .doc
        .earn
        .get(a.award_strategy.wrapping_sub(1))
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let scope = Scope { org, customer: a.customer, program: program.id.0, till: a.till, now };
    let account = ledger::open_account(&mut tx, scope).await?;
    let currency = a.currency.map(|c| c.id).unwrap_or(ledger::POINTS);
    if let Some(c) = a.currency {
        ledger::open_currency_account(&mut tx, scope, c.id).await?;
    }
    let customer_facts =
        crate::transactions::service::customer_facts(&mut tx, org, a.customer, program, &account)
            .await
            .map_err(ApiError::from)?;
    let facts = BillFacts {
        amount: Fixed::from_decimal(amount).unwrap_or_default().to_f64(),
        bill_number: bill.as_ref().map(|b| b.bill_number.clone()).unwrap_or_default(),
        billing_date: bill
            .as_ref()
            .map(|b| crate::transactions::time::iso_utc(b.billing_at))
            .unwrap_or_default(),
        source: bill.as_ref().map(|b| b.source.clone()).unwrap_or_else(|| "INSTORE".into()),
        gross_amount: bill.as_ref().map(|b| Fixed(b.gross_amount).to_f64()).unwrap_or_default(),
        discount: bill.as_ref().map(|b| Fixed(b.discount).to_f64()).unwrap_or_default(),
        ..BillFacts::default()
    };
    let raw = match program.strategy_points(a.award_strategy, &facts, &customer_facts) {
        None => {
            return Err(ApiError::invalid(format!(
                "awardStrategyId {}: the program has no transaction earn rule with that number \
                 (earn rules are numbered from 1 in document order)",
                a.award_strategy
            )));
        }
        Some(Err(reason)) => {
            return Err(ApiError::invalid(format!(
                "awardStrategyId {}: the rule cannot be applied: {reason}",
                a.award_strategy
            )));
        }
        Some(Ok(raw)) => raw,
    };
    let decimals = program.doc.rounding.points_decimals.min(super::model::SCALE_DIGITS);
    let points = Fixed::from_decimal(raw.round_dp_with_strategy(decimals, a.points_rounding))
        .filter(|p| p.is_positive())
        .ok_or_else(|| ApiError::invalid("the award strategy gives no points for sourceValue"))?;
    let tz = org_zone(&mut tx, org).await?;
    // A currency's own expiry rule decides its lots' expiry, as for the currencies rules earn.
    let expires_at = match a.currency {
        Some(c) => crate::currencies::service::award_expiry(c, program, now, tz),
        None => program.points_expiry(now, tz),
    };
    let unlock_at = if a.promised { program.unlock_at(now) } else { None };
    let award = Award {
        points,
        source: MANUAL_SOURCE,
        rule: &rule_name,
        transaction_id: bill.as_ref().map(|b| b.id),
        line_item_id: None,
        awarded_at: now,
        unlock_at,
        expires_at,
    };
    let lot = if a.promised {
        ledger::award_promised(&mut tx, scope, &award).await?
    } else {
        ledger::award_in(&mut tx, scope, currency, &award).await?
    }
    .ok_or_else(|| ApiError::invalid("the award strategy gives no points for sourceValue"))?;
    let entry = store_ops::award_entry_of_lot(&mut tx, org, lot).await?;
    let id = store_ops::insert_allocation(
        &mut tx,
        org,
        &NewAllocation {
            customer_id: a.customer,
            program_id: program.id.0,
            event_name: a.event_name,
            event_source_id: a.event_source_id.trim(),
            transaction_id: bill.as_ref().map(|b| b.id),
            currency_type: if a.promised { "PROMISED" } else { "REGULAR" },
            currency_id: currency,
            award_strategy_id: i64::try_from(a.award_strategy).ok(),
            expiry_strategy_id: a.expiry_strategy,
            source_value: Fixed::from_decimal(amount).unwrap_or_default().0,
            points: points.0,
            lot_id: lot,
            entry_id: entry,
            created_at: now,
        },
    )
    .await?;
    let mut payload = json!({"allocationId": id, "customerId": a.customer,
        "programId": program.id.0, "points": points.to_f64(), "promised": a.promised,
        "eventName": a.event_name, "eventSourceId": a.event_source_id, "strategy": rule_name});
    if let Some(c) = a.currency {
        payload["alternateCurrencyId"] = json!(c.id);
        payload["alternateCurrencyName"] = json!(c.name);
    }
    audit::record(
        &mut tx,
        org,
        &actor_of(principal),
        Change {
            entity_type: "POINTS_ALLOCATION",
            entity_id: id,
            action: "CREATE",
            before: None,
            after: Some(payload.clone()),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        principal,
        NewEvent {
            event_type: if a.currency.is_some() { "currency.awarded" } else { "points.awarded" },
            entity_type: "CUSTOMER",
            entity_id: a.customer,
            payload,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Allocated { id, lot, points, expires_at, unlock_at })
}

/// Revokes, wholly, the manual allocations linked to `parent` (a sale being returned, fully or
/// in part), each from the lot it created — what that lot no longer holds comes from the
/// customer's other lots of the same currency, and beyond the balance only with the program's
/// `returns.allowNegativeBalance`. Runs inside the return's transaction; returns the points
/// taken back per program (alternate currencies are revoked the same way but not counted).
pub async fn revoke_for_return(
    tx: &mut Tx,
    programs: &ProgramCache,
    org: OrgId,
    parent: i64,
    return_txn: i64,
    till: Option<i64>,
    now: i64,
) -> Result<Vec<(i64, Fixed)>, ProgramError> {
    let allocations =
        store_ops::live_allocations_of_transaction(tx, org, parent, ALLOCATIONS_PER_BILL_MAX)
            .await?;
    let mut taken: Vec<(i64, Fixed)> = Vec::new();
    for allocation in allocations {
        let program = crate::programs::service::program_by_id(
            programs,
            tx,
            org,
            ProgramId(allocation.program_id),
        )
        .await?;
        if !program.doc.returns.reverse_points {
            continue;
        }
        let scope = Scope {
            org,
            customer: allocation.customer_id,
            program: allocation.program_id,
            till,
            now,
        };
        ledger::open_account(tx, scope).await?;
        let Some(lot) = store::get_lot(tx, org, allocation.lot_id).await? else { continue };
        let amount = (lot.awarded - lot.reversed).max(0);
        let mut result = ledger::TakeBack::default();
        if amount > 0 {
            store::add_reversed(tx, org, lot.id, amount).await?;
            let reference = format!("allocation:{}", allocation.id);
            let meta = EntryMeta {
                transaction_id: Some(return_txn),
                reference: &reference,
                note: "return revokes manual allocation",
                ..EntryMeta::default()
            };
            let currency = lot.currency_id;
            result = ledger::take_back_in(
                tx,
                scope,
                currency,
                &[(lot, Fixed(amount))],
                program.doc.returns.allow_negative_balance,
                meta,
            )
            .await?;
        }
        if !store_ops::mark_allocation_revoked(tx, org, allocation.id, result.taken.0, now).await? {
            continue;
        }
        let is_points = allocation.currency_id == ledger::POINTS;
        events::raise(
            tx,
            org,
            None,
            NewEvent {
                event_type: if is_points {
                    "points.allocation_revoked"
                } else {
                    "currency.allocation_revoked"
                },
                entity_type: "CUSTOMER",
                entity_id: allocation.customer_id,
                payload: json!({"allocationId": allocation.id, "programId": allocation.program_id,
                    "points": result.taken.to_f64(), "forgiven": result.forgiven.to_f64(),
                    "alternateCurrencyId": (!is_points).then_some(allocation.currency_id),
                    "transactionId": return_txn, "parentTransactionId": parent}),
            },
        )
        .await?;
        if !is_points {
            continue;
        }
        match taken.iter_mut().find(|(p, _)| *p == allocation.program_id) {
            Some((_, sum)) => *sum = *sum + result.taken,
            None => taken.push((allocation.program_id, result.taken)),
        }
    }
    Ok(taken)
}

// ---------------------------------------------------------------- promised points conversion

/// What to convert: the promised points of an event.
#[derive(Clone, Debug)]
pub struct Conversion<'a> {
    pub customer: i64,
    pub event_name: &'a str,
    /// The bill number (or, for other events, the reference an allocation was made against).
    pub bill_number: &'a str,
    /// The bill (`eventLogId`), to pick one of several bills with that number.
    pub transaction: Option<i64>,
    pub line_items: &'a [i64],
    pub item_codes: &'a [String],
    pub till: Option<i64>,
}

/// Points converted, per program.
#[derive(Clone, Debug, Default)]
pub struct Converted {
    pub per_program: Vec<(i64, Fixed)>,
    pub lots: Vec<i64>,
}

/// Bills of one number a conversion may look at.
const BILLS_PER_NUMBER_MAX: i64 = 100;

/// Makes the promised points of an event redeemable now: for a bill event, the promised lots of
/// the customer's bills with that number (narrowed to line items or item codes when given); for
/// other events, the promised allocations made against that reference. 668 when the customer
/// has no such bill.
#[tracing::instrument(skip_all, fields(org = org.0, customer = cv.customer))]
pub async fn convert(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    cv: &Conversion<'_>,
    now: i64,
) -> Result<Converted, ApiError> {
    let mut tx = db.begin_write().await?;
    let mut lots: Vec<LotRow> = Vec::new();
    if is_bill_event(cv.event_name) {
        let bills = crate::transactions::store::by_number(
            &mut tx,
            org,
            cv.bill_number,
            &[],
            BILLS_PER_NUMBER_MAX,
        )
        .await?;
        let bills: Vec<_> = bills
            .into_iter()
            .filter(|b| b.customer_id == Some(cv.customer))
            .filter(|b| cv.transaction.is_none_or(|t| t == b.id))
            .collect();
        if bills.is_empty() {
            return Err(ApiError::with_message(
                Code::TransactionNumberNotFoundForCustomer,
                format!("the customer has no bill {}", cv.bill_number),
            ));
        }
        for bill in &bills {
            let codes: Vec<(i64, String)> = if cv.item_codes.is_empty() {
                Vec::new()
            } else {
                crate::transactions::store::lines(&mut tx, org, bill.id)
                    .await?
                    .into_iter()
                    .map(|l| (l.id, l.item_code))
                    .collect()
            };
            for lot in store::lots_of_transaction(&mut tx, org, bill.id).await? {
                let line_ok = cv.line_items.is_empty()
                    || lot.line_item_id.is_some_and(|l| cv.line_items.contains(&l));
                let code_ok = cv.item_codes.is_empty()
                    || lot.line_item_id.is_some_and(|l| {
                        codes.iter().any(|(id, code)| *id == l && cv.item_codes.contains(code))
                    });
                if lot.customer_id == cv.customer && line_ok && code_ok {
                    lots.push(lot);
                }
            }
        }
    } else {
        for lot in store_ops::promised_allocation_lots(
            &mut tx,
            org,
            cv.customer,
            cv.event_name,
            cv.bill_number,
            BILLS_PER_NUMBER_MAX,
        )
        .await?
        {
            lots.push(lot);
        }
    }
    let mut converted = Converted::default();
    for lot in lots.into_iter().filter(|l| l.kind == LotKind::Promised.as_str()) {
        let scope =
            Scope { org, customer: cv.customer, program: lot.program_id, till: cv.till, now };
        ledger::open_account(&mut tx, scope).await?;
        // Read again under the lock: the unlock job may have converted it meanwhile.
        let Some(lot) = store::get_lot(&mut tx, org, lot.id).await? else { continue };
        if lot.kind != LotKind::Promised.as_str() {
            continue;
        }
        let reference = format!("{}:{}", cv.event_name, cv.bill_number);
        let meta = EntryMeta {
            transaction_id: lot.transaction_id,
            reference: &reference,
            rule: &lot.rule,
            note: "promised points converted",
            ..EntryMeta::default()
        };
        let points = ledger::convert_promised(&mut tx, scope, &lot, meta).await?;
        converted.lots.push(lot.id);
        match converted.per_program.iter_mut().find(|(p, _)| *p == lot.program_id) {
            Some((_, sum)) => *sum = *sum + points,
            None => converted.per_program.push((lot.program_id, points)),
        }
    }
    if !converted.lots.is_empty() {
        let total = converted.per_program.iter().fold(Fixed::ZERO, |a, (_, p)| a + *p);
        let payload = json!({"customerId": cv.customer, "eventName": cv.event_name,
            "billNumber": cv.bill_number, "points": total.to_f64(), "lots": converted.lots});
        audit::record(
            &mut tx,
            org,
            &actor_of(principal),
            Change {
                entity_type: "CUSTOMER",
                entity_id: cv.customer,
                action: "CONVERT_PROMISED_POINTS",
                before: None,
                after: Some(payload.clone()),
            },
        )
        .await?;
        events::raise(
            &mut tx,
            org,
            principal,
            NewEvent {
                event_type: "points.promised_converted",
                entity_type: "CUSTOMER",
                entity_id: cv.customer,
                payload,
            },
        )
        .await?;
        tx.commit().await?;
    }
    Ok(converted)
}

/// Whether `customer` is one of the org's customers.
pub async fn customer_exists(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<bool, DbError> {
    Ok(crate::customers::store::get_customer(c, org, CustomerId(customer)).await?.is_some())
}
