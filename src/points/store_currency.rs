//! SQL of the alternate-currency dimension of the ledger: the balance projection of each
//! (customer, program, currency) and the sums `perks verify` and the ledger reads compare it
//! with; every function is org-first. Lots and entries of a currency live in the points tables
//! with their `currency_id`.

use super::model::Balances;
use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

/// A customer's balance of one alternate currency in one program.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CurrencyBalanceRow {
    pub customer_id: i64,
    pub program_id: i64,
    pub currency_id: i64,
    pub current_points: i64,
    pub promised_points: i64,
    pub lifetime_points: i64,
    pub redeemed_points: i64,
    pub expired_points: i64,
    pub returned_points: i64,
    pub adjusted_points: i64,
}

impl CurrencyBalanceRow {
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

const COLUMNS: &str = "customer_id, program_id, currency_id, current_points, promised_points, \
    lifetime_points, redeemed_points, expired_points, returned_points, adjusted_points";

/// Creates the balance row if the customer has none in the program and currency yet.
pub async fn ensure_currency_balance(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    currency: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO currency_balances (org_id, customer_id, program_id, currency_id, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (customer_id, program_id, currency_id) DO NOTHING"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(currency)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The balance of one currency (callers hold the program account's lock when they act on it).
pub async fn currency_balance(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
    currency: i64,
) -> Result<Option<CurrencyBalanceRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM currency_balances WHERE org_id = $1 AND customer_id = $2 \
         AND program_id = $3 AND currency_id = $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CurrencyBalanceRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(program)
        .bind(currency)
        .fetch_optional(e)
        .await)?)
}

/// Every currency balance of a customer, by program and currency.
pub async fn currency_balances_of_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Vec<CurrencyBalanceRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM currency_balances WHERE org_id = $1 AND customer_id = $2 \
         ORDER BY program_id, currency_id"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CurrencyBalanceRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .fetch_all(e)
        .await)?)
}

/// Moves a currency balance by `delta` (the effect of one entry).
pub async fn apply_currency_balances(
    c: &mut impl Connection,
    org: OrgId,
    key: (i64, i64, i64),
    delta: &Balances,
    now: i64,
) -> Result<(), DbError> {
    let (customer, program, currency) = key;
    dispatch!(c, |e| sqlx::query(
        "UPDATE currency_balances SET current_points = current_points + $5, \
         promised_points = promised_points + $6, lifetime_points = lifetime_points + $7, \
         redeemed_points = redeemed_points + $8, expired_points = expired_points + $9, \
         returned_points = returned_points + $10, adjusted_points = adjusted_points + $11, \
         updated_at = $12 WHERE org_id = $1 AND customer_id = $2 AND program_id = $3 \
         AND currency_id = $4"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .bind(currency)
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

/// Currency balances of the org (or of every org), for `perks verify`, in pages keyed by
/// (customer, program, currency) after `after`.
pub async fn currency_balances_page(
    c: &mut impl Connection,
    org: Option<OrgId>,
    after: (i64, i64, i64),
    limit: i64,
) -> Result<Vec<(i64, CurrencyBalanceRow)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        org_id: i64,
        #[sqlx(flatten)]
        balance: CurrencyBalanceRow,
    }
    let sql = format!(
        "SELECT org_id, {COLUMNS} FROM currency_balances WHERE ($1 < 0 OR org_id = $1) \
         AND (customer_id > $2 OR (customer_id = $2 AND (program_id > $3 \
         OR (program_id = $3 AND currency_id > $4)))) \
         ORDER BY customer_id, program_id, currency_id LIMIT $5"
    );
    let rows = dispatch!(c, |e| sqlx::query_as::<_, Row>(&sql)
        .bind(org.map(|o| o.0).unwrap_or(-1))
        .bind(after.0)
        .bind(after.1)
        .bind(after.2)
        .bind(limit)
        .fetch_all(e)
        .await)?;
    Ok(rows.into_iter().map(|r| (r.org_id, r.balance)).collect())
}
