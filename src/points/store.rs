//! SQL for loyalty accounts (the balance projection), point lots, ledger entries and the lot
//! movements of each entry; every function is org-first.

use super::model::{Balances, LotKind};
use crate::db::{Connection, DbError, Exec};
use crate::dispatch;
use crate::org::model::OrgId;

/// A customer's standing in one program.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountRow {
    pub customer_id: i64,
    pub program_id: i64,
    pub tier_number: i32,
    pub tier_since: i64,
    pub tier_expires_at: Option<i64>,
    pub current_points: i64,
    pub promised_points: i64,
    pub lifetime_points: i64,
    pub redeemed_points: i64,
    pub expired_points: i64,
    pub returned_points: i64,
    pub adjusted_points: i64,
    pub lifetime_purchases: i64,
    pub visits: i64,
}

impl AccountRow {
    /// The standing of a customer who has no account in the program yet.
    pub fn empty(customer_id: i64, program_id: i64, now: i64) -> AccountRow {
        AccountRow {
            customer_id,
            program_id,
            tier_number: 1,
            tier_since: now,
            tier_expires_at: None,
            current_points: 0,
            promised_points: 0,
            lifetime_points: 0,
            redeemed_points: 0,
            expired_points: 0,
            returned_points: 0,
            adjusted_points: 0,
            lifetime_purchases: 0,
            visits: 0,
        }
    }

    pub fn balances(&self) -> Balances {
        Balances {
            current: self.current_points,
            promised: self.promised_points,
            lifetime: self.lifetime_points,
            redeemed: self.redeemed_points,
            expired: self.expired_points,
            returned: self.returned_points,
            adjusted: self.adjusted_points,
        }
    }
}

const ACCOUNT_COLUMNS: &str = "customer_id, program_id, tier_number, tier_since, tier_expires_at, \
    current_points, promised_points, lifetime_points, redeemed_points, expired_points, \
    returned_points, adjusted_points, lifetime_purchases, visits";

/// A lot: one award with its expiry, and what is left of it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LotRow {
    pub id: i64,
    pub customer_id: i64,
    pub program_id: i64,
    pub kind: String,
    pub source: String,
    pub rule: String,
    pub transaction_id: Option<i64>,
    pub line_item_id: Option<i64>,
    pub awarded: i64,
    pub remaining: i64,
    pub reversed: i64,
    pub awarded_at: i64,
    pub unlock_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// 0: the program's points; else the org's alternate currency of that id. Reads that do
    /// not select the column get 0.
    #[sqlx(default)]
    pub currency_id: i64,
}

pub(crate) const LOT_COLUMNS: &str = "id, customer_id, program_id, kind, source, rule, transaction_id, \
    line_item_id, awarded, remaining, reversed, awarded_at, unlock_at, expires_at, currency_id";

/// A lot about to be created.
#[derive(Clone, Debug)]
pub struct NewLot<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub kind: LotKind,
    pub source: &'a str,
    pub rule: &'a str,
    pub transaction_id: Option<i64>,
    pub line_item_id: Option<i64>,
    pub awarded: i64,
    pub awarded_at: i64,
    pub unlock_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// A ledger entry about to be appended.
#[derive(Clone, Debug)]
pub struct NewEntry<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub kind: &'a str,
    pub current_delta: i64,
    pub promised_delta: i64,
    pub transaction_id: Option<i64>,
    pub reference: &'a str,
    pub rule: &'a str,
    pub note: &'a str,
    pub till_id: Option<i64>,
    pub created_at: i64,
    pub effective_at: i64,
}

/// A ledger entry as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EntryRow {
    pub id: i64,
    pub customer_id: i64,
    pub program_id: i64,
    pub kind: String,
    pub current_delta: i64,
    pub promised_delta: i64,
    pub transaction_id: Option<i64>,
    pub reference: String,
    pub rule: String,
    pub note: String,
    pub created_at: i64,
    pub effective_at: i64,
}

fn is_postgres(c: &mut impl Connection) -> bool {
    matches!(c.exec(), Exec::Postgres(_))
}

/// Creates the account row if the customer has none in the program yet.
pub async fn ensure_account(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| {
        sqlx::query(
        "INSERT INTO loyalty_accounts (org_id, customer_id, program_id, tier_since, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $4, $4) ON CONFLICT (customer_id, program_id) DO NOTHING"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// The account, locked for the rest of the transaction on PostgreSQL (SQLite has one writer).
pub async fn lock_account(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
) -> Result<Option<AccountRow>, DbError> {
    let lock = if is_postgres(c) { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM loyalty_accounts \
         WHERE org_id = $1 AND customer_id = $2 AND program_id = $3{lock}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, AccountRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(program)
        .fetch_optional(e)
        .await)?)
}

/// Every program account of a customer, by program id.
pub async fn accounts_of_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Vec<AccountRow>, DbError> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM loyalty_accounts WHERE org_id = $1 AND customer_id = $2 \
         ORDER BY program_id"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, AccountRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .fetch_all(e)
        .await)?)
}

/// Every account of the org (or of every org), for `perks verify`, in pages keyed by
/// (customer, program) after `after`.
pub async fn accounts_page(
    c: &mut impl Connection,
    org: Option<OrgId>,
    after: (i64, i64),
    limit: i64,
) -> Result<Vec<(i64, AccountRow)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        org_id: i64,
        #[sqlx(flatten)]
        account: AccountRow,
    }
    let sql = format!(
        "SELECT org_id, {ACCOUNT_COLUMNS} FROM loyalty_accounts \
         WHERE ($1 < 0 OR org_id = $1) AND (customer_id > $2 OR (customer_id = $2 AND program_id > $3)) \
         ORDER BY customer_id, program_id LIMIT $4"
    );
    let rows = dispatch!(c, |e| sqlx::query_as::<_, Row>(&sql)
        .bind(org.map(|o| o.0).unwrap_or(-1))
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(e)
        .await)?;
    Ok(rows.into_iter().map(|r| (r.org_id, r.account)).collect())
}

/// Moves the balance columns by `delta` (the effect of one entry).
pub async fn apply_balances(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    delta: &Balances,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE loyalty_accounts SET current_points = current_points + $4, \
         promised_points = promised_points + $5, lifetime_points = lifetime_points + $6, \
         redeemed_points = redeemed_points + $7, expired_points = expired_points + $8, \
         returned_points = returned_points + $9, adjusted_points = adjusted_points + $10, \
         updated_at = $11 WHERE org_id = $1 AND customer_id = $2 AND program_id = $3"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(delta.current)
    .bind(delta.promised)
    .bind(delta.lifetime)
    .bind(delta.redeemed)
    .bind(delta.expired)
    .bind(delta.returned)
    .bind(delta.adjusted)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Adds a bill's purchase amount and visit to the account (negative for returns).
pub async fn add_purchases(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    purchases: i64,
    visits: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE loyalty_accounts SET lifetime_purchases = lifetime_purchases + $4, \
         visits = visits + $5 WHERE org_id = $1 AND customer_id = $2 AND program_id = $3"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(purchases)
    .bind(visits)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Puts the customer in `tier` from `since` until `expires_at` (None: no expiry).
pub async fn set_tier(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    tier: i32,
    since: i64,
    expires_at: Option<i64>,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE loyalty_accounts SET tier_number = $4, tier_since = $5, tier_expires_at = $6 \
         WHERE org_id = $1 AND customer_id = $2 AND program_id = $3"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(tier)
    .bind(since)
    .bind(expires_at)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A tier move about to be recorded.
#[derive(Clone, Debug)]
pub struct NewTierChange<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub change_type: &'a str,
    pub from_tier: i32,
    pub to_tier: i32,
    pub transaction_id: Option<i64>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

pub async fn insert_tier_change(
    c: &mut impl Connection,
    org: OrgId,
    change: &NewTierChange<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO tier_changes (org_id, customer_id, program_id, change_type, from_tier, \
         to_tier, transaction_id, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
    )
    .bind(org.0)
    .bind(change.customer_id)
    .bind(change.program_id)
    .bind(change.change_type)
    .bind(change.from_tier)
    .bind(change.to_tier)
    .bind(change.transaction_id)
    .bind(change.expires_at)
    .bind(change.created_at)
    .fetch_one(e)
    .await)?)
}

/// Accounts whose tier validity ended before `now` (any org), oldest first.
pub async fn tiers_due(
    c: &mut impl Connection,
    now: i64,
    limit: i64,
) -> Result<Vec<(i64, AccountRow)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        org_id: i64,
        #[sqlx(flatten)]
        account: AccountRow,
    }
    let sql = format!(
        "SELECT org_id, {ACCOUNT_COLUMNS} FROM loyalty_accounts \
         WHERE tier_expires_at IS NOT NULL AND tier_expires_at <= $1 \
         ORDER BY tier_expires_at LIMIT $2"
    );
    let rows =
        dispatch!(c, |e| sqlx::query_as::<_, Row>(&sql).bind(now).bind(limit).fetch_all(e).await)?;
    Ok(rows.into_iter().map(|r| (r.org_id, r.account)).collect())
}

pub async fn insert_lot(
    c: &mut impl Connection,
    org: OrgId,
    lot: &NewLot<'_>,
) -> Result<i64, DbError> {
    insert_lot_in(c, org, 0, lot).await
}

/// [`insert_lot`] in a currency (0: the program's points).
pub async fn insert_lot_in(
    c: &mut impl Connection,
    org: OrgId,
    currency: i64,
    lot: &NewLot<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query_scalar(
            "INSERT INTO point_lots (org_id, customer_id, program_id, kind, source, rule, \
         transaction_id, line_item_id, awarded, remaining, awarded_at, unlock_at, expires_at, \
         created_at, currency_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(org.0)
        .bind(lot.customer_id)
        .bind(lot.program_id)
        .bind(lot.kind.as_str())
        .bind(lot.source)
        .bind(lot.rule)
        .bind(lot.transaction_id)
        .bind(lot.line_item_id)
        .bind(lot.awarded)
        .bind(lot.awarded_at)
        .bind(lot.unlock_at)
        .bind(lot.expires_at)
        .bind(lot.awarded_at)
        .bind(currency)
        .fetch_one(e)
        .await
    })?)
}

pub async fn insert_entry(
    c: &mut impl Connection,
    org: OrgId,
    entry: &NewEntry<'_>,
) -> Result<i64, DbError> {
    insert_entry_in(c, org, 0, entry).await
}

/// [`insert_entry`] in a currency (0: the program's points).
pub async fn insert_entry_in(
    c: &mut impl Connection,
    org: OrgId,
    currency: i64,
    entry: &NewEntry<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO ledger_entries (org_id, customer_id, program_id, kind, current_delta, \
         promised_delta, transaction_id, reference, rule, note, till_id, created_at, effective_at, \
         currency_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         RETURNING id"
    )
    .bind(org.0)
    .bind(entry.customer_id)
    .bind(entry.program_id)
    .bind(entry.kind)
    .bind(entry.current_delta)
    .bind(entry.promised_delta)
    .bind(entry.transaction_id)
    .bind(entry.reference)
    .bind(entry.rule)
    .bind(entry.note)
    .bind(entry.till_id)
    .bind(entry.created_at)
    .bind(entry.effective_at)
    .bind(currency)
    .fetch_one(e)
    .await)?)
}

/// Records that `entry` moved `delta` into (positive) or out of (negative) `lot`.
pub async fn move_lot(
    c: &mut impl Connection,
    org: OrgId,
    entry: i64,
    lot: i64,
    delta: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO ledger_lot_movements (org_id, entry_id, lot_id, delta) VALUES ($1, $2, $3, $4)"
    )
    .bind(org.0)
    .bind(entry)
    .bind(lot)
    .bind(delta)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    dispatch!(c, |e| sqlx::query(
        "UPDATE point_lots SET remaining = remaining + $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(lot)
    .bind(delta)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Unlocked lots with points left that have not expired by `now`, soonest-expiring first
/// (never-expiring last), then oldest award first.
pub async fn spendable_lots(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<LotRow>, DbError> {
    spendable_lots_in(c, org, customer, program, 0, now, limit).await
}

/// [`spendable_lots`] of one currency (0: the program's points).
pub async fn spendable_lots_in(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    currency: i64,
    now: i64,
    limit: i64,
) -> Result<Vec<LotRow>, DbError> {
    let sql = format!(
        "SELECT {LOT_COLUMNS} FROM point_lots WHERE org_id = $1 AND customer_id = $2 \
         AND program_id = $3 AND currency_id = $6 AND kind = 'REGULAR' AND remaining > 0 \
         AND (expires_at IS NULL OR expires_at > $4) \
         ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, awarded_at, id \
         LIMIT $5"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LotRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(program)
        .bind(now)
        .bind(limit)
        .bind(currency)
        .fetch_all(e)
        .await)?)
}

/// The lots a transaction's awards created.
pub async fn lots_of_transaction(
    c: &mut impl Connection,
    org: OrgId,
    transaction: i64,
) -> Result<Vec<LotRow>, DbError> {
    let sql = format!(
        "SELECT {LOT_COLUMNS} FROM point_lots WHERE org_id = $1 AND transaction_id = $2 ORDER BY id"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LotRow>(&sql)
        .bind(org.0)
        .bind(transaction)
        .fetch_all(e)
        .await)?)
}

/// Lots of one customer (or, with `customer` None, of anyone) that expired by `now` with points
/// left, or promised lots due to unlock; bounded by `limit`.
pub async fn lots_due(
    c: &mut impl Connection,
    org: Option<OrgId>,
    customer_program: Option<(i64, i64)>,
    now: i64,
    unlock: bool,
    limit: i64,
) -> Result<Vec<(i64, LotRow)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        org_id: i64,
        #[sqlx(flatten)]
        lot: LotRow,
    }
    let due = if unlock {
        "kind = 'PROMISED' AND unlock_at IS NOT NULL AND unlock_at <= $3"
    } else {
        "kind = 'REGULAR' AND remaining > 0 AND expires_at IS NOT NULL AND expires_at <= $3"
    };
    // Plain equalities when a customer is given: SQLite plans a statement once, so an
    // `($2 < 0 OR customer_id = $2)` form would scan every lot on every bill.
    let scope = match (org, customer_program) {
        (Some(_), Some(_)) => "org_id = $1 AND customer_id = $2 AND program_id = $5",
        (Some(_), None) => "org_id = $1 AND $2 < 0 AND $5 < 0",
        (None, _) => "$1 < 0 AND $2 < 0 AND $5 < 0",
    };
    let sql = format!(
        "SELECT org_id, {LOT_COLUMNS} FROM point_lots WHERE {scope} AND {due} ORDER BY id LIMIT $4"
    );
    let rows = dispatch!(c, |e| sqlx::query_as::<_, Row>(&sql)
        .bind(org.map(|o| o.0).unwrap_or(-1))
        .bind(customer_program.map(|(c, _)| c).unwrap_or(-1))
        .bind(now)
        .bind(limit)
        .bind(customer_program.map(|(_, p)| p).unwrap_or(-1))
        .fetch_all(e)
        .await)?;
    Ok(rows.into_iter().map(|r| (r.org_id, r.lot)).collect())
}

pub async fn set_lot_kind(
    c: &mut impl Connection,
    org: OrgId,
    lot: i64,
    kind: LotKind,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query("UPDATE point_lots SET kind = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(lot)
        .bind(kind.as_str())
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The sums of entry deltas per kind for one customer and program (for `perks verify`).
pub async fn entry_sums(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
) -> Result<Vec<(String, i64, i64)>, DbError> {
    entry_sums_in(c, org, customer, program, 0).await
}

/// [`entry_sums`] of one currency (0: the program's points).
pub async fn entry_sums_in(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    currency: i64,
) -> Result<Vec<(String, i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT kind, CAST(COALESCE(SUM(current_delta), 0) AS BIGINT), \
         CAST(COALESCE(SUM(promised_delta), 0) AS BIGINT) FROM ledger_entries \
         WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 AND currency_id = $4 \
         GROUP BY kind"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(currency)
    .fetch_all(e)
    .await)?)
}

/// Lots whose `remaining` differs from the sum of their movements, or is negative or above the
/// award: each is a lot consumed twice or lost (for `perks verify`).
pub async fn inconsistent_lots(
    c: &mut impl Connection,
    org: Option<OrgId>,
    limit: i64,
) -> Result<Vec<(i64, i64, i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64, i64, i64)>(
        "SELECT l.org_id, l.id, l.remaining, CAST(COALESCE(SUM(m.delta), 0) AS BIGINT) \
         FROM point_lots l LEFT JOIN ledger_lot_movements m ON m.lot_id = l.id \
         WHERE ($1 < 0 OR l.org_id = $1) GROUP BY l.org_id, l.id, l.remaining, l.awarded \
         HAVING l.remaining <> COALESCE(SUM(m.delta), 0) OR l.remaining < 0 \
         OR l.remaining > l.awarded LIMIT $2"
    )
    .bind(org.map(|o| o.0).unwrap_or(-1))
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// A customer's entries, newest first.
pub async fn entries_of_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    limit: i64,
) -> Result<Vec<EntryRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EntryRow>(
        "SELECT id, customer_id, program_id, kind, current_delta, promised_delta, transaction_id, \
         reference, rule, note, created_at, effective_at FROM ledger_entries \
         WHERE org_id = $1 AND customer_id = $2 ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(customer)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// Sum of points awarded (net of returns) to the customer in the program since `since`.
pub async fn points_since(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    since: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT CAST(COALESCE(SUM(current_delta + promised_delta), 0) AS BIGINT) \
         FROM ledger_entries WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 \
         AND currency_id = 0 AND kind IN ('AWARD', 'PROMISED_AWARD', 'RETURN') \
         AND effective_at >= $4"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(since)
    .fetch_one(e)
    .await)?)
}

pub async fn get_lot(
    c: &mut impl Connection,
    org: OrgId,
    lot: i64,
) -> Result<Option<LotRow>, DbError> {
    let sql = format!("SELECT {LOT_COLUMNS} FROM point_lots WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LotRow>(&sql)
        .bind(org.0)
        .bind(lot)
        .fetch_optional(e)
        .await)?)
}

/// Adds to what returns have taken back on a lot's account.
pub async fn add_reversed(
    c: &mut impl Connection,
    org: OrgId,
    lot: i64,
    delta: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE point_lots SET reversed = reversed + $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(lot)
    .bind(delta)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Lots a spend can touch at most ([`crate::points::ledger`] bounds a spend the same way).
const MOVEMENTS_MAX: i64 = 100_000;

/// The lots an entry moved and by how much.
pub async fn movements_of_entry(
    c: &mut impl Connection,
    org: OrgId,
    entry: i64,
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64)>(
        "SELECT lot_id, delta FROM ledger_lot_movements WHERE org_id = $1 AND entry_id = $2 \
         ORDER BY lot_id LIMIT $3"
    )
    .bind(org.0)
    .bind(entry)
    .bind(MOVEMENTS_MAX)
    .fetch_all(e)
    .await)?)
}

/// A stored validation code (its hash only).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ValidationCodeRow {
    pub id: i64,
    pub customer_id: i64,
    pub points: i64,
    pub salt: String,
    pub code_hash: String,
    pub attempts: i32,
    pub used_at: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

const CODE_COLUMNS: &str =
    "id, customer_id, points, salt, code_hash, attempts, used_at, created_at, expires_at";

/// The customer's newest unused validation code for `purpose` (`REDEEM`, `TRANSFER`), live or
/// not.
pub async fn latest_validation_code(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    purpose: &str,
) -> Result<Option<ValidationCodeRow>, DbError> {
    let sql = format!(
        "SELECT {CODE_COLUMNS} FROM points_validation_codes WHERE org_id = $1 \
         AND customer_id = $2 AND purpose = $3 AND used_at IS NULL ORDER BY id DESC LIMIT 1"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ValidationCodeRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(purpose)
        .fetch_optional(e)
        .await)?)
}

/// Stores a new code's hash; its id.
#[allow(clippy::too_many_arguments)]
pub async fn insert_validation_code(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    points: i64,
    salt: &str,
    code_hash: &str,
    created_at: i64,
    expires_at: i64,
    purpose: &str,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO points_validation_codes (org_id, customer_id, points, salt, code_hash, \
         created_at, expires_at, purpose) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"
    )
    .bind(org.0)
    .bind(customer)
    .bind(points)
    .bind(salt)
    .bind(code_hash)
    .bind(created_at)
    .bind(expires_at)
    .bind(purpose)
    .fetch_one(e)
    .await)?)
}

/// Counts one wrong try against a code.
pub async fn add_code_attempt(
    c: &mut impl Connection,
    org: OrgId,
    code: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE points_validation_codes SET attempts = attempts + 1 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(code)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Marks a code used; false when someone used it first.
pub async fn use_code(
    c: &mut impl Connection,
    org: OrgId,
    code: i64,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE points_validation_codes SET used_at = $3 \
         WHERE org_id = $1 AND id = $2 AND used_at IS NULL"
    )
    .bind(org.0)
    .bind(code)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Records that a code was handed to delivery.
pub async fn insert_code_send(
    c: &mut impl Connection,
    org: OrgId,
    code: i64,
    channel: &str,
    event_id: i64,
    message_id: Option<i64>,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO points_validation_code_sends (org_id, code_id, channel, event_id, \
         message_id, created_at) VALUES ($1, $2, $3, $4, $6, $5)"
    )
    .bind(org.0)
    .bind(code)
    .bind(channel)
    .bind(event_id)
    .bind(now)
    .bind(message_id)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A redemption as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RedemptionRow {
    pub id: i64,
    pub customer_id: i64,
    pub program_id: i64,
    pub points: i64,
    pub bill_number: String,
    pub external_reference: String,
    pub notes: String,
    pub till_id: Option<i64>,
    pub validation: String,
    pub entry_id: i64,
    pub reversed: bool,
    pub reversed_points: i64,
    pub reversed_at: Option<i64>,
    pub created_at: i64,
    /// Points of the redemption that reversals have taken care of (restored plus lapsed).
    pub reversal_claimed: i64,
    pub bill_id: Option<i64>,
    pub purpose: String,
    /// JSON object of custom field names and values.
    pub custom_fields: String,
    pub updated_at: Option<i64>,
}

/// A redemption about to be stored.
#[derive(Clone, Debug)]
pub struct NewRedemption<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub points: i64,
    pub bill_number: &'a str,
    pub external_reference: &'a str,
    pub notes: &'a str,
    pub till_id: Option<i64>,
    pub validation: &'a str,
    pub validation_code_id: Option<i64>,
    pub entry_id: i64,
    pub created_at: i64,
}

pub async fn insert_redemption(
    c: &mut impl Connection,
    org: OrgId,
    r: &NewRedemption<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO points_redemptions (org_id, customer_id, program_id, points, bill_number, \
         external_reference, notes, till_id, validation, validation_code_id, entry_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id"
    )
    .bind(org.0)
    .bind(r.customer_id)
    .bind(r.program_id)
    .bind(r.points)
    .bind(r.bill_number)
    .bind(r.external_reference)
    .bind(r.notes)
    .bind(r.till_id)
    .bind(r.validation)
    .bind(r.validation_code_id)
    .bind(r.entry_id)
    .bind(r.created_at)
    .fetch_one(e)
    .await)?)
}

pub async fn get_redemption(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<RedemptionRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, RedemptionRow>(
        "SELECT id, customer_id, program_id, points, bill_number, external_reference, notes, \
         till_id, validation, entry_id, reversed, reversed_points, reversed_at, created_at, \
         reversal_claimed, bill_id, purpose, custom_fields, updated_at \
         FROM points_redemptions WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .fetch_optional(e)
    .await)?)
}

/// Marks a redemption reversed; false when it already was (the caller then rolls back).
pub async fn mark_reversed(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    reversal_entry: Option<i64>,
    restored: i64,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE points_redemptions SET reversed = TRUE, reversal_entry_id = $3, \
         reversed_points = $4, reversed_at = $5 WHERE org_id = $1 AND id = $2 AND reversed = FALSE"
    )
    .bind(org.0)
    .bind(id)
    .bind(reversal_entry)
    .bind(restored)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Which entries a ledger read covers.
#[derive(Clone, Debug, Default)]
pub struct LedgerFilter {
    pub customer: i64,
    pub program: Option<i64>,
    pub till: Option<i64>,
    /// An entry kind (`REDEEM`, …).
    pub kind: Option<String>,
    /// Bounds on `effective_at`, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// The currencies read (0: the programs' points); None: the points only.
    pub currency_ids: Option<Vec<i64>>,
}

impl LedgerFilter {
    /// The currency set as bound: `,0,3,` (ids between commas).
    fn currency_set(&self) -> String {
        match &self.currency_ids {
            None => ",0,".into(),
            Some(ids) => {
                let list: Vec<String> = ids.iter().map(i64::to_string).collect();
                format!(",{},", list.join(","))
            }
        }
    }
}

/// `WHERE` of a ledger read: binds $1..$8 (org, customer, program, till, kind, from, to, and
/// the currency set).
const LEDGER_WHERE: &str = "e.org_id = $1 AND e.customer_id = $2 \
    AND ($3 = 0 OR e.program_id = $3) AND ($4 = 0 OR e.till_id = $4) \
    AND ($5 = '' OR e.kind = $5) AND e.effective_at >= $6 AND e.effective_at <= $7 \
    AND $8 LIKE '%,' || CAST(e.currency_id AS TEXT) || ',%'";

/// A ledger entry with the program's balance (current and promised) right after it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LedgerLine {
    pub id: i64,
    pub program_id: i64,
    pub kind: String,
    pub current_delta: i64,
    pub promised_delta: i64,
    pub transaction_id: Option<i64>,
    pub reference: String,
    pub till_id: Option<i64>,
    pub effective_at: i64,
    pub balance: i64,
    pub currency_id: i64,
}

macro_rules! bind_filter {
    ($q:expr, $org:expr, $f:expr) => {
        $q.bind($org.0)
            .bind($f.customer)
            .bind($f.program.unwrap_or(0))
            .bind($f.till.unwrap_or(0))
            .bind($f.kind.clone().unwrap_or_default())
            .bind($f.from.unwrap_or(i64::MIN))
            .bind($f.to.unwrap_or(i64::MAX))
            .bind($f.currency_set())
    };
}

pub async fn count_entries(
    c: &mut impl Connection,
    org: OrgId,
    f: &LedgerFilter,
) -> Result<i64, DbError> {
    let sql = format!("SELECT COUNT(*) FROM ledger_entries e WHERE {LEDGER_WHERE}");
    Ok(dispatch!(c, |e| bind_filter!(sqlx::query_scalar::<_, i64>(&sql), org, f)
        .fetch_one(e)
        .await)?)
}

/// One page of entries (`limit` rows from row `skip`), by id ascending or descending.
pub async fn ledger_page(
    c: &mut impl Connection,
    org: OrgId,
    f: &LedgerFilter,
    ascending: bool,
    limit: i64,
    skip: i64,
) -> Result<Vec<LedgerLine>, DbError> {
    let order = if ascending { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT e.id, e.program_id, e.kind, e.current_delta, e.promised_delta, e.transaction_id, \
         e.reference, e.till_id, e.effective_at, CAST((SELECT COALESCE(SUM(x.current_delta + \
         x.promised_delta), 0) FROM ledger_entries x WHERE x.org_id = e.org_id \
         AND x.customer_id = e.customer_id AND x.program_id = e.program_id \
         AND x.currency_id = e.currency_id AND x.id <= e.id) AS BIGINT) AS balance, \
         e.currency_id FROM ledger_entries e WHERE {LEDGER_WHERE} \
         ORDER BY e.id {order} LIMIT $9 OFFSET $10"
    );
    Ok(dispatch!(c, |e| bind_filter!(sqlx::query_as::<_, LedgerLine>(&sql), org, f)
        .bind(limit)
        .bind(skip)
        .fetch_all(e)
        .await)?)
}

/// Sums of current and promised deltas per entry kind (kinds in a fixed order).
pub async fn ledger_sums(
    c: &mut impl Connection,
    org: OrgId,
    f: &LedgerFilter,
) -> Result<Vec<(String, i64, i64)>, DbError> {
    let sql = format!(
        "SELECT e.kind, CAST(COALESCE(SUM(e.current_delta), 0) AS BIGINT), \
         CAST(COALESCE(SUM(e.promised_delta), 0) AS BIGINT) FROM ledger_entries e \
         WHERE {LEDGER_WHERE} GROUP BY e.kind ORDER BY MIN(e.id)"
    );
    Ok(dispatch!(c, |e| bind_filter!(sqlx::query_as::<_, (String, i64, i64)>(&sql), org, f)
        .fetch_all(e)
        .await)?)
}

/// Sums of current and promised deltas per currency and entry kind (by currency, kinds in the
/// order they first appear), for the ledger balance read over several currencies.
pub async fn ledger_sums_per_currency(
    c: &mut impl Connection,
    org: OrgId,
    f: &LedgerFilter,
) -> Result<Vec<(i64, String, i64, i64)>, DbError> {
    let sql = format!(
        "SELECT e.currency_id, e.kind, CAST(COALESCE(SUM(e.current_delta), 0) AS BIGINT), \
         CAST(COALESCE(SUM(e.promised_delta), 0) AS BIGINT) FROM ledger_entries e \
         WHERE {LEDGER_WHERE} GROUP BY e.currency_id, e.kind ORDER BY e.currency_id, MIN(e.id)"
    );
    Ok(dispatch!(c, |e| bind_filter!(sqlx::query_as::<_, (i64, String, i64, i64)>(&sql), org, f)
        .fetch_all(e)
        .await)?)
}

/// The message that last carried a validation code, if one was queued.
pub async fn last_code_message(
    c: &mut impl Connection,
    org: OrgId,
    code: i64,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT message_id FROM points_validation_code_sends WHERE org_id = $1 AND code_id = $2 \
         AND message_id IS NOT NULL ORDER BY id DESC LIMIT 1"
    )
    .bind(org.0)
    .bind(code)
    .fetch_optional(e)
    .await)?)
}
