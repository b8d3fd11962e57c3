//! SQL of the points operations: lot reads for schedules and allocations, partial reversals,
//! transfers, deductions, manual allocations and goodwill requests; every function is org-first.

use super::store::{EntryRow, LOT_COLUMNS, LotRow};
use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

// ------------------------------------------------------------------------------------ lots

/// Points the customer's spendable lots hold in the program, leaving out lots of `source`
/// (registration awards are not transferable).
pub async fn spendable_sum_without(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    now: i64,
    source: &str,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM point_lots WHERE org_id = $1 \
         AND customer_id = $2 AND program_id = $3 AND currency_id = 0 AND kind = 'REGULAR' \
         AND remaining > 0 AND (expires_at IS NULL OR expires_at > $4) AND source <> $5"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(now)
    .bind(source)
    .fetch_one(e)
    .await)?)
}

/// Sets a lot's expiry instant (None: never expires).
pub async fn set_lot_expiry(
    c: &mut impl Connection,
    org: OrgId,
    lot: i64,
    expires_at: Option<i64>,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE point_lots SET expires_at = $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(lot)
    .bind(expires_at)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Which lots a schedule or allocation read covers.
#[derive(Clone, Debug, Default)]
pub struct LotFilter {
    pub customer: i64,
    /// None: every program.
    pub program: Option<i64>,
    /// `REGULAR` or `PROMISED`; None: both.
    pub kind: Option<&'static str>,
    /// Only lots with points left.
    pub with_points: bool,
    /// Bounds on `expires_at` (exclusive from, inclusive to); a bound excludes lots that never
    /// expire.
    pub expires_after: Option<i64>,
    pub expires_until: Option<i64>,
}

// Points lots only (currency 0): alternate currencies have their own reads.
/// Binds $1..$8 of [`LOT_FILTER_WHERE`].
const LOT_FILTER_WHERE: &str = "org_id = $1 AND customer_id = $2 AND currency_id = 0 \
    AND ($3 = 0 OR program_id = $3) \
    AND ($4 = '' OR kind = $4) AND ($5 = 0 OR remaining > 0) \
    AND ($6 = 0 OR (expires_at IS NOT NULL AND expires_at > $7 AND expires_at <= $8))";

macro_rules! bind_lots {
    ($q:expr, $org:expr, $f:expr) => {{
        let bounded = $f.expires_after.is_some() || $f.expires_until.is_some();
        $q.bind($org.0)
            .bind($f.customer)
            .bind($f.program.unwrap_or(0))
            .bind($f.kind.unwrap_or(""))
            .bind(i32::from($f.with_points))
            .bind(i32::from(bounded))
            .bind($f.expires_after.unwrap_or(i64::MIN))
            .bind($f.expires_until.unwrap_or(i64::MAX))
    }};
}

/// Lots matching `f`, soonest expiry first (never-expiring last), then oldest award; a page.
pub async fn lots_page(
    c: &mut impl Connection,
    org: OrgId,
    f: &LotFilter,
    limit: i64,
    skip: i64,
) -> Result<Vec<LotRow>, DbError> {
    let sql = format!(
        "SELECT {LOT_COLUMNS} FROM point_lots WHERE {LOT_FILTER_WHERE} \
         ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, awarded_at, id \
         LIMIT $9 OFFSET $10"
    );
    Ok(dispatch!(c, |e| bind_lots!(sqlx::query_as::<_, LotRow>(&sql), org, f)
        .bind(limit)
        .bind(skip)
        .fetch_all(e)
        .await)?)
}

pub async fn count_lots(
    c: &mut impl Connection,
    org: OrgId,
    f: &LotFilter,
) -> Result<i64, DbError> {
    let sql = format!("SELECT COUNT(*) FROM point_lots WHERE {LOT_FILTER_WHERE}");
    Ok(dispatch!(c, |e| bind_lots!(sqlx::query_scalar::<_, i64>(&sql), org, f).fetch_one(e).await)?)
}

/// The customer's lots awarded with `source` (e.g. `REGISTRATION`), oldest first.
pub async fn lots_of_source(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    source: &str,
    limit: i64,
) -> Result<Vec<LotRow>, DbError> {
    let sql = format!(
        "SELECT {LOT_COLUMNS} FROM point_lots WHERE org_id = $1 AND customer_id = $2 \
         AND currency_id = 0 AND source = $3 ORDER BY id LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LotRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(source)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// Each lot an entry moved, with the movement (negative = taken from the lot).
pub async fn lots_moved_by(
    c: &mut impl Connection,
    org: OrgId,
    entry: i64,
    limit: i64,
) -> Result<Vec<(LotRow, i64)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        lot: LotRow,
        delta: i64,
    }
    let columns: Vec<String> = LOT_COLUMNS.split(',').map(|c| format!("l.{}", c.trim())).collect();
    let sql = format!(
        "SELECT {}, m.delta FROM ledger_lot_movements m JOIN point_lots l ON l.id = m.lot_id \
         WHERE m.org_id = $1 AND m.entry_id = $2 ORDER BY l.id LIMIT $3",
        columns.join(", ")
    );
    let rows = dispatch!(c, |e| sqlx::query_as::<_, Row>(&sql)
        .bind(org.0)
        .bind(entry)
        .bind(limit)
        .fetch_all(e)
        .await)?;
    Ok(rows.into_iter().map(|r| (r.lot, r.delta)).collect())
}

const ENTRY_COLUMNS: &str = "id, customer_id, program_id, kind, current_delta, promised_delta, \
    transaction_id, reference, rule, note, created_at, effective_at";

/// The customer's entries among `ids`.
pub async fn entries_by_ids(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    ids: &[i64],
) -> Result<Vec<EntryRow>, DbError> {
    let mut found = Vec::with_capacity(ids.len());
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE org_id = $1 AND customer_id = $2 AND id = $3"
    );
    for id in ids {
        let row = dispatch!(c, |e| sqlx::query_as::<_, EntryRow>(&sql)
            .bind(org.0)
            .bind(customer)
            .bind(*id)
            .fetch_optional(e)
            .await)?;
        found.extend(row);
    }
    Ok(found)
}

/// The customer's entries about a transaction (awards, returns), oldest first.
pub async fn entries_of_transaction(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    transaction: i64,
    limit: i64,
) -> Result<Vec<EntryRow>, DbError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE org_id = $1 AND customer_id = $2 \
         AND transaction_id = $3 ORDER BY id LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EntryRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(transaction)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// The customer's entries with `reference` of the given kind (e.g. redemption reversals).
pub async fn entries_of_reference(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    reference: &str,
    limit: i64,
) -> Result<Vec<EntryRow>, DbError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE org_id = $1 AND customer_id = $2 \
         AND reference = $3 ORDER BY id LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EntryRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(reference)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

// ----------------------------------------------------------------------------- reversals

/// Per lot, what earlier reversals of a redemption took care of (restored plus lapsed).
pub async fn reversed_per_lot(
    c: &mut impl Connection,
    org: OrgId,
    redemption: i64,
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64)>(
        "SELECT rl.lot_id, CAST(SUM(rl.restored + rl.lapsed) AS BIGINT) \
         FROM points_redemption_reversal_lots rl JOIN points_redemption_reversals r \
         ON r.id = rl.reversal_id WHERE r.org_id = $1 AND r.redemption_id = $2 GROUP BY rl.lot_id"
    )
    .bind(org.0)
    .bind(redemption)
    .fetch_all(e)
    .await)?)
}

/// Counts `points` more of the redemption as reversed (and `restored` of them as given back);
/// false when that would exceed what it redeemed (the caller then refuses).
pub async fn claim_reversal(
    c: &mut impl Connection,
    org: OrgId,
    redemption: i64,
    points: i64,
    restored: i64,
    entry: Option<i64>,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE points_redemptions SET reversal_claimed = reversal_claimed + $3, \
         reversed_points = reversed_points + $4, \
         reversed = (reversal_claimed + $3 >= points), \
         reversal_entry_id = COALESCE($5, reversal_entry_id), reversed_at = $6 \
         WHERE org_id = $1 AND id = $2 AND reversal_claimed + $3 <= points"
    )
    .bind(org.0)
    .bind(redemption)
    .bind(points)
    .bind(restored)
    .bind(entry)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// One reversal of a redemption about to be stored.
#[derive(Clone, Debug)]
pub struct NewReversal {
    pub redemption_id: i64,
    pub customer_id: i64,
    pub points: i64,
    pub restored: i64,
    pub lapsed: i64,
    pub entry_id: Option<i64>,
    pub till_id: Option<i64>,
    pub created_at: i64,
}

pub async fn insert_reversal(
    c: &mut impl Connection,
    org: OrgId,
    r: &NewReversal,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO points_redemption_reversals (org_id, redemption_id, customer_id, points, \
         restored, lapsed, entry_id, till_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
    )
    .bind(org.0)
    .bind(r.redemption_id)
    .bind(r.customer_id)
    .bind(r.points)
    .bind(r.restored)
    .bind(r.lapsed)
    .bind(r.entry_id)
    .bind(r.till_id)
    .bind(r.created_at)
    .fetch_one(e)
    .await)?)
}

pub async fn insert_reversal_lot(
    c: &mut impl Connection,
    org: OrgId,
    reversal: i64,
    lot: i64,
    restored: i64,
    lapsed: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO points_redemption_reversal_lots (org_id, reversal_id, lot_id, restored, \
         lapsed) VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(org.0)
    .bind(reversal)
    .bind(lot)
    .bind(restored)
    .bind(lapsed)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The metadata of a redemption that may change after it was made.
#[derive(Clone, Debug)]
pub struct RedemptionMeta<'a> {
    pub bill_number: &'a str,
    pub bill_id: Option<i64>,
    pub purpose: &'a str,
    /// JSON object.
    pub custom_fields: &'a str,
}

pub async fn update_redemption_meta(
    c: &mut impl Connection,
    org: OrgId,
    redemption: i64,
    meta: &RedemptionMeta<'_>,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE points_redemptions SET bill_number = $3, bill_id = $4, purpose = $5, \
         custom_fields = $6, updated_at = $7 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(redemption)
    .bind(meta.bill_number)
    .bind(meta.bill_id)
    .bind(meta.purpose)
    .bind(meta.custom_fields)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

// ----------------------------------------------------------------------------- transfers

/// A transfer as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TransferRow {
    pub id: i64,
    pub program_id: i64,
    pub from_customer_id: i64,
    pub to_customer_id: i64,
    pub points: i64,
    pub out_entry_id: i64,
    pub in_entry_id: i64,
    pub notes: String,
    pub created_at: i64,
}

const TRANSFER_COLUMNS: &str = "id, program_id, from_customer_id, to_customer_id, points, \
    out_entry_id, in_entry_id, notes, created_at";

/// A transfer about to be stored.
#[derive(Clone, Debug)]
pub struct NewTransfer<'a> {
    pub program_id: i64,
    pub from_customer_id: i64,
    pub to_customer_id: i64,
    pub points: i64,
    pub out_entry_id: i64,
    pub in_entry_id: i64,
    pub notes: &'a str,
    pub till_id: Option<i64>,
    pub created_at: i64,
}

pub async fn insert_transfer(
    c: &mut impl Connection,
    org: OrgId,
    t: &NewTransfer<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO points_transfers (org_id, program_id, from_customer_id, to_customer_id, \
         points, out_entry_id, in_entry_id, notes, till_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id"
    )
    .bind(org.0)
    .bind(t.program_id)
    .bind(t.from_customer_id)
    .bind(t.to_customer_id)
    .bind(t.points)
    .bind(t.out_entry_id)
    .bind(t.in_entry_id)
    .bind(t.notes)
    .bind(t.till_id)
    .bind(t.created_at)
    .fetch_one(e)
    .await)?)
}

pub async fn get_transfer(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<TransferRow>, DbError> {
    let sql =
        format!("SELECT {TRANSFER_COLUMNS} FROM points_transfers WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TransferRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// How a customer's transfers are listed.
#[derive(Clone, Copy, Debug)]
pub struct TransferOrder {
    /// By points instead of by date.
    pub by_points: bool,
    pub ascending: bool,
}

/// Binds $1..$3: org, customer, program (0 = all).
const TRANSFER_WHERE: &str = "org_id = $1 AND (from_customer_id = $2 OR to_customer_id = $2) \
    AND ($3 = 0 OR program_id = $3)";

/// The customer's transfers, sent and received; a page.
pub async fn transfers_of_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: Option<i64>,
    order: TransferOrder,
    limit: i64,
    skip: i64,
) -> Result<Vec<TransferRow>, DbError> {
    let column = if order.by_points { "points" } else { "created_at" };
    let direction = if order.ascending { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {TRANSFER_COLUMNS} FROM points_transfers WHERE {TRANSFER_WHERE} \
         ORDER BY {column} {direction}, id {direction} LIMIT $4 OFFSET $5"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TransferRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(program.unwrap_or(0))
        .bind(limit)
        .bind(skip)
        .fetch_all(e)
        .await)?)
}

pub async fn count_transfers(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: Option<i64>,
) -> Result<i64, DbError> {
    let sql = format!("SELECT COUNT(*) FROM points_transfers WHERE {TRANSFER_WHERE}");
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(program.unwrap_or(0))
        .fetch_one(e)
        .await)?)
}

// --------------------------------------------------------------------------- deductions

/// A deduction about to be stored.
#[derive(Clone, Debug)]
pub struct NewAdjustment<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub points: i64,
    pub taken: i64,
    pub reason: &'a str,
    pub category: &'a str,
    /// 0 for points, else the alternate currency deducted.
    pub currency_id: i64,
    pub target_lot_id: Option<i64>,
    pub promotion_id: Option<i64>,
    pub promotion_identifier: Option<&'a str>,
    pub entry_id: i64,
    pub till_id: Option<i64>,
    pub created_at: i64,
}

pub async fn insert_adjustment(
    c: &mut impl Connection,
    org: OrgId,
    a: &NewAdjustment<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO points_adjustments (org_id, customer_id, program_id, points, taken, reason, \
         category, target_lot_id, promotion_id, promotion_identifier, entry_id, till_id, \
         created_at, currency_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id"
    )
    .bind(org.0)
    .bind(a.customer_id)
    .bind(a.program_id)
    .bind(a.points)
    .bind(a.taken)
    .bind(a.reason)
    .bind(a.category)
    .bind(a.target_lot_id)
    .bind(a.promotion_id)
    .bind(a.promotion_identifier)
    .bind(a.entry_id)
    .bind(a.till_id)
    .bind(a.created_at)
    .bind(a.currency_id)
    .fetch_one(e)
    .await)?)
}

// -------------------------------------------------------------------- manual allocations

/// A manual allocation as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AllocationRow {
    pub id: i64,
    pub customer_id: i64,
    pub program_id: i64,
    pub event_name: String,
    pub event_source_id: String,
    pub transaction_id: Option<i64>,
    pub points: i64,
    pub lot_id: i64,
    pub revoked_at: Option<i64>,
    pub currency_id: i64,
}

/// A manual allocation about to be stored.
#[derive(Clone, Debug)]
pub struct NewAllocation<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub event_name: &'a str,
    pub event_source_id: &'a str,
    pub transaction_id: Option<i64>,
    pub currency_type: &'a str,
    /// 0 for points, else the alternate currency issued.
    pub currency_id: i64,
    pub award_strategy_id: Option<i64>,
    pub expiry_strategy_id: Option<i64>,
    pub source_value: i64,
    pub points: i64,
    pub lot_id: i64,
    pub entry_id: i64,
    pub created_at: i64,
}

pub async fn insert_allocation(
    c: &mut impl Connection,
    org: OrgId,
    a: &NewAllocation<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO points_manual_allocations (org_id, customer_id, program_id, event_name, \
         event_source_id, transaction_id, currency_type, award_strategy_id, expiry_strategy_id, \
         source_value, points, lot_id, entry_id, created_at, currency_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id"
    )
    .bind(org.0)
    .bind(a.customer_id)
    .bind(a.program_id)
    .bind(a.event_name)
    .bind(a.event_source_id)
    .bind(a.transaction_id)
    .bind(a.currency_type)
    .bind(a.award_strategy_id)
    .bind(a.expiry_strategy_id)
    .bind(a.source_value)
    .bind(a.points)
    .bind(a.lot_id)
    .bind(a.entry_id)
    .bind(a.created_at)
    .bind(a.currency_id)
    .fetch_one(e)
    .await)?)
}

/// Allocations a bill earned by hand that no return has revoked yet.
pub async fn live_allocations_of_transaction(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
    limit: i64,
) -> Result<Vec<AllocationRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, AllocationRow>(
        "SELECT id, customer_id, program_id, event_name, event_source_id, transaction_id, points, \
         lot_id, revoked_at, currency_id FROM points_manual_allocations WHERE org_id = $1 \
         AND transaction_id = $2 AND revoked_at IS NULL ORDER BY id LIMIT $3"
    )
    .bind(org.0)
    .bind(transaction)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// Marks an allocation revoked; false when it already was.
pub async fn mark_allocation_revoked(
    c: &mut impl Connection,
    org: OrgId,
    allocation: i64,
    points: i64,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE points_manual_allocations SET revoked_at = $3, revoked_points = $4 \
         WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL"
    )
    .bind(org.0)
    .bind(allocation)
    .bind(now)
    .bind(points)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// The entry that created a lot (its first movement).
pub async fn award_entry_of_lot(
    c: &mut impl Connection,
    org: OrgId,
    lot: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT entry_id FROM ledger_lot_movements WHERE org_id = $1 AND lot_id = $2 \
         ORDER BY entry_id LIMIT 1"
    )
    .bind(org.0)
    .bind(lot)
    .fetch_one(e)
    .await)?)
}

/// The lots of the customer's live promised allocations made against an event reference.
pub async fn promised_allocation_lots(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    event_name: &str,
    event_source_id: &str,
    limit: i64,
) -> Result<Vec<LotRow>, DbError> {
    let columns: Vec<String> = LOT_COLUMNS.split(',').map(|c| format!("l.{}", c.trim())).collect();
    let sql = format!(
        "SELECT {} FROM points_manual_allocations a JOIN point_lots l ON l.id = a.lot_id \
         WHERE a.org_id = $1 AND a.customer_id = $2 AND a.event_name = $3 \
         AND a.event_source_id = $4 AND a.revoked_at IS NULL AND l.kind = 'PROMISED' \
         ORDER BY l.id LIMIT $5",
        columns.join(", ")
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LotRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(event_name)
        .bind(event_source_id)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// The till of the entry that created a lot, if any.
pub async fn award_till_of_lot(
    c: &mut impl Connection,
    org: OrgId,
    lot: i64,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, Option<i64>>(
        "SELECT e.till_id FROM ledger_lot_movements m JOIN ledger_entries e ON e.id = m.entry_id \
         WHERE m.org_id = $1 AND m.lot_id = $2 ORDER BY m.entry_id LIMIT 1"
    )
    .bind(org.0)
    .bind(lot)
    .fetch_optional(e)
    .await)?
    .flatten())
}

// ---------------------------------------------------------------------- goodwill requests

/// A goodwill request as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GoodwillRow {
    pub id: i64,
    pub customer_id: i64,
    pub program_id: i64,
    pub base_type: String,
    pub points: i64,
    pub reason: String,
    pub comments: String,
    pub request_comments: String,
    pub status: String,
    pub approved_points: Option<i64>,
    pub updated_comments: String,
    pub added_by_type: String,
    pub added_by_id: Option<i64>,
    pub updated_by_type: Option<String>,
    pub updated_by_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const GOODWILL_COLUMNS: &str = "id, customer_id, program_id, base_type, points, reason, comments, \
    request_comments, status, approved_points, updated_comments, added_by_type, added_by_id, \
    updated_by_type, updated_by_id, created_at, updated_at";

/// A goodwill request about to be stored.
#[derive(Clone, Debug)]
pub struct NewGoodwill<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub base_type: &'a str,
    pub points: i64,
    pub reason: &'a str,
    pub comments: &'a str,
    pub request_comments: &'a str,
    pub added_by_type: &'a str,
    pub added_by_id: Option<i64>,
    pub created_at: i64,
}

pub async fn insert_goodwill(
    c: &mut impl Connection,
    org: OrgId,
    g: &NewGoodwill<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO goodwill_requests (org_id, customer_id, program_id, base_type, points, \
         reason, comments, request_comments, status, added_by_type, added_by_id, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'PENDING', $9, $10, $11, $11) \
         RETURNING id"
    )
    .bind(org.0)
    .bind(g.customer_id)
    .bind(g.program_id)
    .bind(g.base_type)
    .bind(g.points)
    .bind(g.reason)
    .bind(g.comments)
    .bind(g.request_comments)
    .bind(g.added_by_type)
    .bind(g.added_by_id)
    .bind(g.created_at)
    .fetch_one(e)
    .await)?)
}

/// Which goodwill requests a listing covers.
#[derive(Clone, Copy, Debug, Default)]
pub struct GoodwillFilter {
    pub customer: i64,
    pub request: Option<i64>,
    pub program: Option<i64>,
}

/// Binds $1..$4: org, customer, request id (0 = all), program (0 = all).
const GOODWILL_WHERE: &str = "org_id = $1 AND customer_id = $2 AND ($3 = 0 OR id = $3) \
    AND ($4 = 0 OR program_id = $4)";

/// The customer's goodwill requests, newest first; a page.
pub async fn goodwill_page(
    c: &mut impl Connection,
    org: OrgId,
    f: GoodwillFilter,
    limit: i64,
    skip: i64,
) -> Result<Vec<GoodwillRow>, DbError> {
    let sql = format!(
        "SELECT {GOODWILL_COLUMNS} FROM goodwill_requests WHERE {GOODWILL_WHERE} \
         ORDER BY id DESC LIMIT $5 OFFSET $6"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, GoodwillRow>(&sql)
        .bind(org.0)
        .bind(f.customer)
        .bind(f.request.unwrap_or(0))
        .bind(f.program.unwrap_or(0))
        .bind(limit)
        .bind(skip)
        .fetch_all(e)
        .await)?)
}

pub async fn count_goodwill(
    c: &mut impl Connection,
    org: OrgId,
    f: GoodwillFilter,
) -> Result<i64, DbError> {
    let sql = format!("SELECT COUNT(*) FROM goodwill_requests WHERE {GOODWILL_WHERE}");
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&sql)
        .bind(org.0)
        .bind(f.customer)
        .bind(f.request.unwrap_or(0))
        .bind(f.program.unwrap_or(0))
        .fetch_one(e)
        .await)?)
}
