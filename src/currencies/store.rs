//! SQL of the currency catalogue and of currency balances; every function is org-first.

use super::model::{CURRENCIES_PER_ORG_MAX, CurrencyRow};
use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

const COLUMNS: &str = "id, name, description, expiry, active, version, created_at, updated_at";

/// Creates a currency; a taken name breaks the unique index (the caller maps it).
#[allow(clippy::too_many_arguments)]
pub async fn insert_currency(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
    description: &str,
    expiry: Option<&str>,
    active: bool,
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO currencies (org_id, name, name_key, description, expiry, active, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id"
    )
    .bind(org.0)
    .bind(name)
    .bind(super::model::name_key(name))
    .bind(description)
    .bind(expiry)
    .bind(active)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// The org's currencies by id (at most [`CURRENCIES_PER_ORG_MAX`]).
pub async fn list_currencies(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<CurrencyRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM currencies WHERE org_id = $1 ORDER BY id LIMIT $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CurrencyRow>(&sql)
        .bind(org.0)
        .bind(CURRENCIES_PER_ORG_MAX)
        .fetch_all(e)
        .await)?)
}

pub async fn count_currencies(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM currencies WHERE org_id = $1"
    )
    .bind(org.0)
    .fetch_one(e)
    .await)?)
}

pub async fn get_currency(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<CurrencyRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM currencies WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CurrencyRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// The org's currency called `name` (case-insensitively).
pub async fn find_currency(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<Option<CurrencyRow>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM currencies WHERE org_id = $1 AND name_key = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CurrencyRow>(&sql)
        .bind(org.0)
        .bind(super::model::name_key(name))
        .fetch_optional(e)
        .await)?)
}

/// Writes a currency's changeable fields and bumps its version; false when it does not exist.
pub async fn update_currency(
    c: &mut impl Connection,
    org: OrgId,
    row: &CurrencyRow,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| {
        sqlx::query(
        "UPDATE currencies SET description = $3, expiry = $4, active = $5, version = version + 1, \
         updated_at = $6 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(row.id)
    .bind(&row.description)
    .bind(&row.expiry)
    .bind(row.active)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// A currency redemption about to be stored (a `points_redemptions` row with its currency).
#[derive(Clone, Debug)]
pub struct NewCurrencyRedemption<'a> {
    pub customer_id: i64,
    pub program_id: i64,
    pub currency_id: i64,
    pub amount: i64,
    pub bill_number: &'a str,
    pub external_reference: &'a str,
    pub notes: &'a str,
    pub till_id: Option<i64>,
    pub entry_id: i64,
    pub created_at: i64,
}

pub async fn insert_currency_redemption(
    c: &mut impl Connection,
    org: OrgId,
    r: &NewCurrencyRedemption<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO points_redemptions (org_id, customer_id, program_id, points, bill_number, \
         external_reference, notes, till_id, validation, entry_id, created_at, currency_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'NOT_REQUIRED', $9, $10, $11) RETURNING id"
    )
    .bind(org.0)
    .bind(r.customer_id)
    .bind(r.program_id)
    .bind(r.amount)
    .bind(r.bill_number)
    .bind(r.external_reference)
    .bind(r.notes)
    .bind(r.till_id)
    .bind(r.entry_id)
    .bind(r.created_at)
    .bind(r.currency_id)
    .fetch_one(e)
    .await)?)
}
