//! SQL for coupon series, coupons, redemptions and upload jobs; every function takes the org first.
//!
//! Limits are kept by conditional UPDATEs of the series counters (`num_issued`, `num_redeemed`),
//! which never pass `max_create`/`max_redeem` whatever the concurrency. On PostgreSQL a coupon
//! about to be redeemed is locked (`FOR UPDATE`) and a customer's standing in a series is
//! serialised with a transaction-scoped advisory lock; SQLite has one writer.

use crate::db::{Connection, DbError, Exec};
use crate::dispatch;
use crate::org::model::OrgId;

fn is_postgres(c: &mut impl Connection) -> bool {
    matches!(c.exec(), Exec::Postgres(_))
}

const SERIES_COLUMNS: &str = "id, org_id, description, discount_code, series_code, any_user, \
    valid_till_at, max_create, max_redeem, num_issued, num_redeemed, config, created_by_type, \
    created_by, created_at, updated_at, last_used_at";

/// A coupon series row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SeriesRow {
    pub id: i64,
    pub org_id: i64,
    pub description: String,
    pub discount_code: String,
    pub series_code: String,
    pub any_user: bool,
    pub valid_till_at: i64,
    pub max_create: i64,
    pub max_redeem: i64,
    pub num_issued: i64,
    pub num_redeemed: i64,
    pub config: String,
    pub created_by_type: String,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
}

/// The columns of a new or changed series.
pub struct SeriesWrite<'a> {
    pub description: &'a str,
    pub discount_code: &'a str,
    pub series_code: &'a str,
    pub any_user: bool,
    pub valid_till_at: i64,
    pub max_create: i64,
    pub max_redeem: i64,
    pub config: &'a str,
}

pub async fn insert_series(
    c: &mut impl Connection,
    org: OrgId,
    s: &SeriesWrite<'_>,
    created_by: (&str, Option<i64>),
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO coupon_series (org_id, description, discount_code, series_code, any_user, \
         valid_till_at, max_create, max_redeem, config, created_by_type, created_by, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id"
    )
    .bind(org.0)
    .bind(s.description)
    .bind(s.discount_code)
    .bind(s.series_code)
    .bind(s.any_user)
    .bind(s.valid_till_at)
    .bind(s.max_create)
    .bind(s.max_redeem)
    .bind(s.config)
    .bind(created_by.0)
    .bind(created_by.1)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// Rewrites a series; the counters stay. A later end date lets the expiry job look again.
pub async fn update_series(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    s: &SeriesWrite<'_>,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE coupon_series SET description = $3, discount_code = $4, series_code = $5, \
         any_user = $6, valid_till_at = $7, max_create = $8, max_redeem = $9, config = $10, \
         expiry_swept = CASE WHEN valid_till_at <> $7 THEN FALSE ELSE expiry_swept END, \
         updated_at = $11 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(s.description)
    .bind(s.discount_code)
    .bind(s.series_code)
    .bind(s.any_user)
    .bind(s.valid_till_at)
    .bind(s.max_create)
    .bind(s.max_redeem)
    .bind(s.config)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn get_series(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<SeriesRow>, DbError> {
    let sql = format!("SELECT {SERIES_COLUMNS} FROM coupon_series WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, SeriesRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// Series created in the org since `since` (the daily cap).
pub async fn count_series_since(
    c: &mut impl Connection,
    org: OrgId,
    since: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM coupon_series WHERE org_id = $1 AND created_at >= $2"
    )
    .bind(org.0)
    .bind(since)
    .fetch_one(e)
    .await)?)
}

/// Counts `n` more issued coupons unless that passes `max_create`; false when it would.
pub async fn count_issued(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
    n: i64,
    now: i64,
) -> Result<bool, DbError> {
    let rows = dispatch!(c, |e| sqlx::query(
        "UPDATE coupon_series SET num_issued = num_issued + $3, last_used_at = $4 \
         WHERE org_id = $1 AND id = $2 AND (max_create < 0 OR num_issued + $3 <= max_create)"
    )
    .bind(org.0)
    .bind(series)
    .bind(n)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(rows == 1)
}

/// Counts `n` more redemptions unless that passes `max_redeem` (a negative `n` gives back
/// reversed ones); false when it would pass the limit.
pub async fn count_redeemed(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
    n: i64,
    now: i64,
) -> Result<bool, DbError> {
    let rows = dispatch!(c, |e| sqlx::query(
        "UPDATE coupon_series SET num_redeemed = num_redeemed + $3, last_used_at = $4 \
         WHERE org_id = $1 AND id = $2 \
         AND ($3 <= 0 OR max_redeem < 0 OR num_redeemed + $3 <= max_redeem)"
    )
    .bind(org.0)
    .bind(series)
    .bind(n)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(rows == 1)
}

const COUPON_COLUMNS: &str = "id, org_id, series_id, code, code_key, customer_id, status, \
    issued_at, expires_at, redemption_count, last_redeemed_at, issued_store_id, issued_till_id, \
    source, transaction_id, upload_job_id, metadata, revoked_at, created_at, updated_at";

/// A coupon row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CouponRow {
    pub id: i64,
    pub org_id: i64,
    pub series_id: i64,
    pub code: String,
    pub code_key: String,
    pub customer_id: Option<i64>,
    pub status: String,
    pub issued_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub redemption_count: i64,
    pub last_redeemed_at: Option<i64>,
    pub issued_store_id: Option<i64>,
    pub issued_till_id: Option<i64>,
    pub source: String,
    pub transaction_id: Option<i64>,
    pub upload_job_id: Option<i64>,
    pub metadata: String,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CouponRow {
    pub fn is_revoked(&self) -> bool {
        self.status == "REVOKED"
    }
}

/// The columns of a new coupon.
pub struct NewCoupon<'a> {
    pub series_id: i64,
    pub code: &'a str,
    pub code_key: &'a str,
    pub customer_id: Option<i64>,
    pub issued_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub issued_store_id: Option<i64>,
    pub issued_till_id: Option<i64>,
    pub source: &'a str,
    pub transaction_id: Option<i64>,
    pub upload_job_id: Option<i64>,
    pub metadata: &'a str,
}

/// Inserts a coupon; `None` when the org already has the code (any case).
pub async fn insert_coupon(
    c: &mut impl Connection,
    org: OrgId,
    n: &NewCoupon<'_>,
    now: i64,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO coupons (org_id, series_id, code, code_key, customer_id, issued_at, \
         expires_at, issued_store_id, issued_till_id, source, transaction_id, upload_job_id, \
         metadata, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) \
         ON CONFLICT (org_id, code_key) DO NOTHING RETURNING id"
    )
    .bind(org.0)
    .bind(n.series_id)
    .bind(n.code)
    .bind(n.code_key)
    .bind(n.customer_id)
    .bind(n.issued_at)
    .bind(n.expires_at)
    .bind(n.issued_store_id)
    .bind(n.issued_till_id)
    .bind(n.source)
    .bind(n.transaction_id)
    .bind(n.upload_job_id)
    .bind(n.metadata)
    .bind(now)
    .fetch_optional(e)
    .await)?)
}

/// The oldest code waiting in the series' pool (uploaded, not issued); on PostgreSQL it is
/// locked, skipping codes another transaction is handing out.
pub async fn pool_code(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
) -> Result<Option<i64>, DbError> {
    let lock = if is_postgres(c) { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "SELECT id FROM coupons WHERE series_id = $2 AND org_id = $1 AND issued_at IS NULL \
         AND status = 'ACTIVE' ORDER BY id LIMIT 1{lock}"
    );
    Ok(dispatch!(c, |e| sqlx::query_scalar(&sql).bind(org.0).bind(series).fetch_optional(e).await)?)
}

/// The issue of a pool code (or of a code uploaded for a customer) to a customer.
pub struct PoolIssue<'a> {
    pub customer_id: i64,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub store_id: Option<i64>,
    pub till_id: Option<i64>,
    pub source: &'a str,
    pub transaction_id: Option<i64>,
    pub metadata: &'a str,
}

/// Hands a pool code to a customer; false when it was issued meanwhile.
pub async fn issue_pool_code(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    p: &PoolIssue<'_>,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE coupons SET customer_id = $3, issued_at = $4, expires_at = $5, \
         issued_store_id = $6, issued_till_id = $7, source = $8, transaction_id = $9, \
         metadata = $10, updated_at = $4 WHERE org_id = $1 AND id = $2 AND issued_at IS NULL"
    )
    .bind(org.0)
    .bind(id)
    .bind(p.customer_id)
    .bind(p.issued_at)
    .bind(p.expires_at)
    .bind(p.store_id)
    .bind(p.till_id)
    .bind(p.source)
    .bind(p.transaction_id)
    .bind(p.metadata)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// The org's coupon with this code key; `lock` locks it on PostgreSQL until the transaction ends.
pub async fn coupon_by_key(
    c: &mut impl Connection,
    org: OrgId,
    key: &str,
    lock: bool,
) -> Result<Option<CouponRow>, DbError> {
    let lock = if lock && is_postgres(c) { " FOR UPDATE" } else { "" };
    let sql =
        format!("SELECT {COUPON_COLUMNS} FROM coupons WHERE org_id = $1 AND code_key = $2{lock}");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CouponRow>(&sql)
        .bind(org.0)
        .bind(key)
        .fetch_optional(e)
        .await)?)
}

/// The org's coupon with this id; `lock` as in [`coupon_by_key`].
pub async fn coupon_by_id(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    lock: bool,
) -> Result<Option<CouponRow>, DbError> {
    let lock = if lock && is_postgres(c) { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {COUPON_COLUMNS} FROM coupons WHERE org_id = $1 AND id = $2{lock}");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CouponRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// Whether another org holds this code (to answer 715 rather than "does not exist").
pub async fn code_in_other_org(
    c: &mut impl Connection,
    org: OrgId,
    key: &str,
) -> Result<bool, DbError> {
    let found: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "SELECT id FROM coupons WHERE code_key = $2 AND org_id <> $1 LIMIT 1"
    )
    .bind(org.0)
    .bind(key)
    .fetch_optional(e)
    .await)?;
    Ok(found.is_some())
}

/// Coupons of the org by ids or code keys (at most `limit`), by id.
pub async fn coupons_by(
    c: &mut impl Connection,
    org: OrgId,
    ids: &[i64],
    keys: &[String],
    limit: i64,
) -> Result<Vec<CouponRow>, DbError> {
    let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let keys = serde_json::to_string(keys).unwrap_or_else(|_| "[]".into());
    let sql = match c.exec() {
        Exec::Sqlite(_) => format!(
            "SELECT {COUPON_COLUMNS} FROM coupons WHERE org_id = $1 AND \
             (id IN (SELECT value FROM json_each($2)) OR code_key IN (SELECT value FROM json_each($3))) \
             ORDER BY id LIMIT $4"
        ),
        Exec::Postgres(_) => format!(
            "SELECT {COUPON_COLUMNS} FROM coupons WHERE org_id = $1 AND \
             (id IN (SELECT jsonb_array_elements_text($2::jsonb)::bigint) \
              OR code_key IN (SELECT jsonb_array_elements_text($3::jsonb))) ORDER BY id LIMIT $4"
        ),
    };
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CouponRow>(&sql)
        .bind(org.0)
        .bind(&ids)
        .bind(&keys)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// A customer's coupons, newest first (at most `limit`), optionally of one series.
pub async fn coupons_of_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    series: Option<i64>,
    limit: i64,
) -> Result<Vec<CouponRow>, DbError> {
    let sql = format!(
        "SELECT {COUPON_COLUMNS} FROM coupons WHERE org_id = $1 AND customer_id = $2 \
         AND ($3 < 0 OR series_id = $3) ORDER BY id DESC LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CouponRow>(&sql)
        .bind(org.0)
        .bind(customer)
        .bind(series.unwrap_or(-1))
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// Serialises everything that decides a customer's standing in a series (issue and redemption
/// limits) until the transaction ends: a PostgreSQL advisory lock; SQLite has one writer.
pub async fn lock_customer_series(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
    customer: i64,
) -> Result<(), DbError> {
    if let Exec::Postgres(e) = c.exec() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("perks-coupon:{}:{series}:{customer}", org.0))
            .execute(e)
            .await?;
    }
    Ok(())
}

/// A customer's coupons of a series that are not revoked: how many, and the latest issue.
pub async fn customer_holdings(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
    customer: i64,
) -> Result<(i64, Option<i64>), DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, Option<i64>)>(
        "SELECT COUNT(*), MAX(issued_at) FROM coupons WHERE org_id = $1 AND customer_id = $3 \
         AND series_id = $2 AND status = 'ACTIVE' AND issued_at IS NOT NULL"
    )
    .bind(org.0)
    .bind(series)
    .bind(customer)
    .fetch_one(e)
    .await)?)
}

/// A customer's live (not reversed) redemptions in a series: how many, and the latest.
pub async fn customer_redemptions(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
    customer: i64,
) -> Result<(i64, Option<i64>), DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, Option<i64>)>(
        "SELECT COUNT(*), MAX(redeemed_at) FROM coupon_redemptions WHERE org_id = $1 \
         AND customer_id = $3 AND series_id = $2 AND reversed = FALSE"
    )
    .bind(org.0)
    .bind(series)
    .bind(customer)
    .fetch_one(e)
    .await)?)
}

/// A customer's live redemptions of one coupon.
pub async fn customer_redemptions_of_coupon(
    c: &mut impl Connection,
    org: OrgId,
    coupon: i64,
    customer: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM coupon_redemptions WHERE org_id = $1 AND coupon_id = $2 \
         AND customer_id = $3 AND reversed = FALSE"
    )
    .bind(org.0)
    .bind(coupon)
    .bind(customer)
    .fetch_one(e)
    .await)?)
}

/// Moves a coupon's live redemption count by `delta`.
pub async fn count_coupon_redemption(
    c: &mut impl Connection,
    org: OrgId,
    coupon: i64,
    delta: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE coupons SET redemption_count = redemption_count + $3, \
         last_redeemed_at = CASE WHEN $3 > 0 THEN $4 ELSE last_redeemed_at END, updated_at = $4 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(coupon)
    .bind(delta)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Revokes an unredeemed, active coupon; false when it is not (any more).
pub async fn revoke_coupon(
    c: &mut impl Connection,
    org: OrgId,
    coupon: i64,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE coupons SET status = 'REVOKED', revoked_at = $3, updated_at = $3 \
         WHERE org_id = $1 AND id = $2 AND status = 'ACTIVE' AND redemption_count = 0"
    )
    .bind(org.0)
    .bind(coupon)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Sets a coupon's own expiry; a revived coupon may expire (and be announced) again.
pub async fn set_coupon_expiry(
    c: &mut impl Connection,
    org: OrgId,
    coupon: i64,
    expires_at: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE coupons SET expires_at = $3, expiry_raised = FALSE, updated_at = $4 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(coupon)
    .bind(expires_at)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

const REDEMPTION_COLUMNS: &str = "id, org_id, coupon_id, series_id, customer_id, redeemed_at, \
    store_id, till_id, transaction_number, bill_amount, bill_id, custom_fields, details, source, \
    upload_job_id, reversed, reversed_at, created_at, updated_at";

/// A redemption row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RedemptionRow {
    pub id: i64,
    pub org_id: i64,
    pub coupon_id: i64,
    pub series_id: i64,
    pub customer_id: i64,
    pub redeemed_at: i64,
    pub store_id: Option<i64>,
    pub till_id: Option<i64>,
    pub transaction_number: String,
    pub bill_amount: Option<i64>,
    pub bill_id: String,
    pub custom_fields: String,
    pub details: String,
    pub source: String,
    pub upload_job_id: Option<i64>,
    pub reversed: bool,
    pub reversed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of a new redemption.
pub struct NewRedemption<'a> {
    pub coupon_id: i64,
    pub series_id: i64,
    pub customer_id: i64,
    pub redeemed_at: i64,
    pub store_id: Option<i64>,
    pub till_id: Option<i64>,
    pub transaction_number: &'a str,
    pub bill_amount: Option<i64>,
    pub bill_id: &'a str,
    pub custom_fields: &'a str,
    pub details: &'a str,
    pub source: &'a str,
    pub upload_job_id: Option<i64>,
}

/// Inserts a redemption; `None` when an imported one (same coupon and instant) exists already.
pub async fn insert_redemption(
    c: &mut impl Connection,
    org: OrgId,
    r: &NewRedemption<'_>,
    now: i64,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO coupon_redemptions (org_id, coupon_id, series_id, customer_id, redeemed_at, \
         store_id, till_id, transaction_number, bill_amount, bill_id, custom_fields, details, \
         source, upload_job_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
         ON CONFLICT (coupon_id, redeemed_at) WHERE source = 'UPLOAD' DO NOTHING RETURNING id"
    )
    .bind(org.0)
    .bind(r.coupon_id)
    .bind(r.series_id)
    .bind(r.customer_id)
    .bind(r.redeemed_at)
    .bind(r.store_id)
    .bind(r.till_id)
    .bind(r.transaction_number)
    .bind(r.bill_amount)
    .bind(r.bill_id)
    .bind(r.custom_fields)
    .bind(r.details)
    .bind(r.source)
    .bind(r.upload_job_id)
    .bind(now)
    .fetch_optional(e)
    .await)?)
}

/// A redemption of the org; `lock` locks it on PostgreSQL.
pub async fn get_redemption(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    lock: bool,
) -> Result<Option<RedemptionRow>, DbError> {
    let lock = if lock && is_postgres(c) { " FOR UPDATE" } else { "" };
    let sql = format!(
        "SELECT {REDEMPTION_COLUMNS} FROM coupon_redemptions WHERE org_id = $1 AND id = $2{lock}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, RedemptionRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// The latest live redemption of a coupon (by a customer, when given).
pub async fn latest_redemption(
    c: &mut impl Connection,
    org: OrgId,
    coupon: i64,
    customer: Option<i64>,
) -> Result<Option<RedemptionRow>, DbError> {
    let sql = format!(
        "SELECT {REDEMPTION_COLUMNS} FROM coupon_redemptions WHERE org_id = $1 AND coupon_id = $2 \
         AND reversed = FALSE AND ($3 < 0 OR customer_id = $3) ORDER BY id DESC LIMIT 1"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, RedemptionRow>(&sql)
        .bind(org.0)
        .bind(coupon)
        .bind(customer.unwrap_or(-1))
        .fetch_optional(e)
        .await)?)
}

/// Marks a redemption reversed; false when it already was.
pub async fn reverse_redemption(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    now: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE coupon_redemptions SET reversed = TRUE, reversed_at = $3, updated_at = $3 \
         WHERE org_id = $1 AND id = $2 AND reversed = FALSE"
    )
    .bind(org.0)
    .bind(id)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Adds bill data to a redemption made before the bill existed.
#[allow(clippy::too_many_arguments)]
pub async fn update_redemption_bill(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    bill_amount: i64,
    transaction_number: Option<&str>,
    bill_id: Option<&str>,
    custom_fields: Option<&str>,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE coupon_redemptions SET bill_amount = $3, \
         transaction_number = COALESCE($4, transaction_number), bill_id = COALESCE($5, bill_id), \
         custom_fields = COALESCE($6, custom_fields), updated_at = $7 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(bill_amount)
    .bind(transaction_number)
    .bind(bill_id)
    .bind(custom_fields)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The redemptions of some coupons (live and reversed), by id (at most `limit`).
pub async fn redemptions_of(
    c: &mut impl Connection,
    org: OrgId,
    coupons: &[i64],
    limit: i64,
) -> Result<Vec<RedemptionRow>, DbError> {
    if coupons.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(coupons).unwrap_or_else(|_| "[]".into());
    let sql = match c.exec() {
        Exec::Sqlite(_) => format!(
            "SELECT {REDEMPTION_COLUMNS} FROM coupon_redemptions WHERE org_id = $1 \
             AND coupon_id IN (SELECT value FROM json_each($2)) ORDER BY id LIMIT $3"
        ),
        Exec::Postgres(_) => format!(
            "SELECT {REDEMPTION_COLUMNS} FROM coupon_redemptions WHERE org_id = $1 \
             AND coupon_id IN (SELECT jsonb_array_elements_text($2::jsonb)::bigint) \
             ORDER BY id LIMIT $3"
        ),
    };
    Ok(dispatch!(c, |e| sqlx::query_as::<_, RedemptionRow>(&sql)
        .bind(org.0)
        .bind(&ids)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// Coupons whose own expiry has passed and that were not marked as announced yet.
pub async fn lapsed_coupons(
    c: &mut impl Connection,
    now: i64,
    limit: i64,
) -> Result<Vec<CouponRow>, DbError> {
    let sql = format!(
        "SELECT {COUPON_COLUMNS} FROM coupons WHERE expiry_raised = FALSE AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CouponRow>(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// Series that have ended and whose coupons were not all announced as expired.
pub async fn ended_series(
    c: &mut impl Connection,
    now: i64,
    limit: i64,
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64)>(
        "SELECT org_id, id FROM coupon_series WHERE expiry_swept = FALSE AND valid_till_at <= $1 \
         ORDER BY valid_till_at LIMIT $2"
    )
    .bind(now)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// Coupons of an ended series not yet announced as expired.
pub async fn unannounced_of_series(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
    limit: i64,
) -> Result<Vec<CouponRow>, DbError> {
    let sql = format!(
        "SELECT {COUPON_COLUMNS} FROM coupons WHERE series_id = $2 AND org_id = $1 \
         AND expiry_raised = FALSE ORDER BY id LIMIT $3"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CouponRow>(&sql)
        .bind(org.0)
        .bind(series)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// Marks coupons as announced expired; only those still unannounced count.
pub async fn mark_expiry_raised(
    c: &mut impl Connection,
    org: OrgId,
    coupon: i64,
) -> Result<bool, DbError> {
    let n = dispatch!(c, |e| sqlx::query(
        "UPDATE coupons SET expiry_raised = TRUE WHERE org_id = $1 AND id = $2 \
         AND expiry_raised = FALSE"
    )
    .bind(org.0)
    .bind(coupon)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

pub async fn mark_series_swept(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE coupon_series SET expiry_swept = TRUE WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(series)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
