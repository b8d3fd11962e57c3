//! SQL of the loyalty views: manual tier holds, the customer's loyalty events (one list over
//! bills, registration, redemptions and ledger entries), lot schedules and account timestamps;
//! every function is org-first.

use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

/// A tier set by hand (`/v2/slab/manualSlabAdjustment`) that the engine respects.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TierHold {
    pub customer_id: i64,
    pub program_id: i64,
    /// True: the next activity re-evaluates the tier (and ends the hold).
    pub reassess: bool,
    /// Until when the tier is held (None: until the tier itself expires).
    pub held_until: Option<i64>,
    pub reason: String,
    pub tier_change_id: Option<i64>,
    pub created_at: i64,
}

/// The customer's manual tier hold in the program, if any.
pub async fn tier_hold(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
) -> Result<Option<TierHold>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TierHold>(
        "SELECT customer_id, program_id, reassess, held_until, reason, tier_change_id, created_at \
         FROM tier_manual_holds WHERE org_id = $1 AND customer_id = $2 AND program_id = $3"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .fetch_optional(e)
    .await)?)
}

/// Sets (or replaces) the customer's manual tier hold in the program.
pub async fn put_tier_hold(
    c: &mut impl Connection,
    org: OrgId,
    hold: &TierHold,
) -> Result<(), DbError> {
    dispatch!(c, |e| {
        sqlx::query(
        "INSERT INTO tier_manual_holds (org_id, customer_id, program_id, reassess, held_until, \
         reason, tier_change_id, created_at) VALUES ($1, $2, $3, $4, $8, $5, $6, $7) \
         ON CONFLICT (customer_id, program_id) DO UPDATE SET reassess = EXCLUDED.reassess, \
         held_until = EXCLUDED.held_until, reason = EXCLUDED.reason, tier_change_id = EXCLUDED.tier_change_id, \
         created_at = EXCLUDED.created_at"
    )
    .bind(org.0)
    .bind(hold.customer_id)
    .bind(hold.program_id)
    .bind(hold.reassess)
    .bind(&hold.reason)
    .bind(hold.tier_change_id)
    .bind(hold.created_at)
    .bind(hold.held_until)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Ends the customer's manual tier hold in the program (a no-op when there is none).
pub async fn delete_tier_hold(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "DELETE FROM tier_manual_holds WHERE org_id = $1 AND customer_id = $2 AND program_id = $3"
    )
    .bind(org.0)
    .bind(customer)
    .bind(program)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// One loyalty event: where it comes from (`REG` registration, `TXN` bill, `RED` redemption,
/// `REV` redemption reversal, `LED` other ledger entries), the id of its source row, its name,
/// category (`EARN`, `REDEEM`, `EXPIRE`, `TRANSFER`, `RETURN`, `OTHER`), time, status and the
/// net change of the customer's points.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LoyaltyEventRow {
    pub origin: String,
    pub ref_id: i64,
    pub event_name: String,
    pub category: String,
    pub occurred_at: i64,
    pub status: String,
    pub points: i64,
}

/// Which loyalty events a read covers.
#[derive(Clone, Debug, Default)]
pub struct LoyaltyEventFilter {
    pub customer: i64,
    /// A category (`EARN`, …); None: all.
    pub category: Option<String>,
    /// Bounds on the event time, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The union of every source of loyalty events; binds $1 (org) and $2 (customer). Opening
/// points of enrolments (`loyaltyProgramEnrollments`) are one `PointsAward` per instant. Ledger
/// entries that bills, registration, enrolments and redemptions already stand for are left out; the rest
/// (expiry, unlocks, adjustments and kinds added later) count one event per kind and instant,
/// so that the lots of one expiry run make one event.
const EVENTS_SQL: &str = "\
    SELECT 'REG' AS origin, c.id AS ref_id, 'CustomerRegistration' AS event_name, \
        'EARN' AS category, c.registered_at AS occurred_at, 'SUCCESS' AS status, \
        CAST(COALESCE((SELECT SUM(l.awarded) FROM point_lots l WHERE l.org_id = c.org_id \
            AND l.customer_id = c.id AND l.currency_id = 0 AND l.source = 'REGISTRATION'), 0) AS BIGINT) AS points \
        FROM customers c WHERE c.org_id = $1 AND c.id = $2 \
    UNION ALL \
    SELECT 'TXN', t.id, CASE WHEN t.type = 'RETURN' THEN 'ReturnBill' ELSE 'TransactionAdd' END, \
        CASE WHEN t.type = 'RETURN' THEN 'RETURN' ELSE 'EARN' END, t.created_at, \
        CASE WHEN t.loyalty_status = 'FAILED' THEN 'FAILED' ELSE 'SUCCESS' END, t.points \
        FROM transactions t WHERE t.org_id = $1 AND t.customer_id = $2 \
        AND t.type IN ('REGULAR', 'MIXED', 'RETURN') \
    UNION ALL \
    SELECT 'RED', r.id, CASE WHEN r.currency_id = 0 THEN 'PointsRedemption' \
            ELSE 'AlternateCurrencyRedemption' END, 'REDEEM', r.created_at, 'SUCCESS', \
        CASE WHEN r.currency_id = 0 THEN -r.points ELSE 0 END \
        FROM points_redemptions r WHERE r.org_id = $1 AND r.customer_id = $2 \
    UNION ALL \
    SELECT 'REV', r.id, CASE WHEN r.currency_id = 0 THEN 'PointsRedemptionReversal' \
            ELSE 'AlternateCurrencyRedemptionReversal' END, 'REDEEM', r.reversed_at, 'SUCCESS', \
        CASE WHEN r.currency_id = 0 THEN r.reversed_points ELSE 0 END \
        FROM points_redemptions r WHERE r.org_id = $1 AND r.customer_id = $2 \
        AND r.reversed_at IS NOT NULL \
    UNION ALL \
    SELECT 'ENR', MIN(l.id), 'PointsAward', 'EARN', l.awarded_at, 'SUCCESS', \
        CAST(SUM(l.awarded) AS BIGINT) \
        FROM point_lots l WHERE l.org_id = $1 AND l.customer_id = $2 AND l.currency_id = 0 \
        AND l.source = 'ENROLLMENT' GROUP BY l.awarded_at \
    UNION ALL \
    SELECT 'LED', MIN(e.id), CASE e.kind WHEN 'EXPIRE' THEN 'PointsExpiry' \
            WHEN 'UNLOCK' THEN 'DelayedAccrual' WHEN 'ADJUST' THEN 'PointsAdjustment' \
            ELSE e.kind END, \
        CASE WHEN e.kind = 'EXPIRE' THEN 'EXPIRE' WHEN e.kind = 'UNLOCK' THEN 'EARN' \
            WHEN e.kind LIKE '%TRANSFER%' THEN 'TRANSFER' ELSE 'OTHER' END, \
        e.effective_at, 'SUCCESS', \
        CAST(SUM(CASE WHEN e.currency_id = 0 THEN e.current_delta + e.promised_delta ELSE 0 END) \
            AS BIGINT) \
        FROM ledger_entries e WHERE e.org_id = $1 AND e.customer_id = $2 \
        AND e.kind NOT IN ('AWARD', 'PROMISED_AWARD', 'RETURN', 'REDEEM', 'REDEEM_REVERSAL') \
        GROUP BY e.kind, e.effective_at";

/// `WHERE` over the union; binds $3 (category or ''), $4 and $5 (time bounds).
const EVENTS_WHERE: &str =
    "($3 = '' OR u.category = $3) AND u.occurred_at >= $4 AND u.occurred_at <= $5";

/// How many events the filter covers.
pub async fn count_loyalty_events(
    c: &mut impl Connection,
    org: OrgId,
    f: &LoyaltyEventFilter,
) -> Result<i64, DbError> {
    let sql = format!("SELECT COUNT(*) FROM ({EVENTS_SQL}) u WHERE {EVENTS_WHERE}");
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&sql)
        .bind(org.0)
        .bind(f.customer)
        .bind(f.category.clone().unwrap_or_default())
        .bind(f.from.unwrap_or(i64::MIN))
        .bind(f.to.unwrap_or(i64::MAX))
        .fetch_one(e)
        .await)?)
}

/// One page of events, newest first.
pub async fn loyalty_events(
    c: &mut impl Connection,
    org: OrgId,
    f: &LoyaltyEventFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<LoyaltyEventRow>, DbError> {
    let sql = format!(
        "SELECT u.origin, u.ref_id, u.event_name, u.category, u.occurred_at, u.status, u.points \
         FROM ({EVENTS_SQL}) u WHERE {EVENTS_WHERE} \
         ORDER BY u.occurred_at DESC, u.origin, u.ref_id DESC LIMIT $6 OFFSET $7"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, LoyaltyEventRow>(&sql)
        .bind(org.0)
        .bind(f.customer)
        .bind(f.category.clone().unwrap_or_default())
        .bind(f.from.unwrap_or(i64::MIN))
        .bind(f.to.unwrap_or(i64::MAX))
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?)
}

/// Lot groups a schedule read returns at most (per customer): a bound on the work of one read.
pub const SCHEDULE_ROWS_MAX: i64 = 1_000;

/// Points still to expire, per program, currency, award source and expiry instant.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ExpiryGroup {
    pub program_id: i64,
    pub currency_id: i64,
    pub source: String,
    pub expires_at: i64,
    pub points: i64,
}

/// The customer's unexpired, unlocked lots with points left, summed per program, currency,
/// source and expiry instant, soonest first.
pub async fn expiry_groups(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    now: i64,
) -> Result<Vec<ExpiryGroup>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ExpiryGroup>(
        "SELECT program_id, currency_id, source, expires_at, \
         CAST(SUM(remaining) AS BIGINT) AS points FROM point_lots \
         WHERE org_id = $1 AND customer_id = $2 AND kind = 'REGULAR' AND remaining > 0 \
         AND expires_at IS NOT NULL AND expires_at > $3 \
         GROUP BY program_id, currency_id, source, expires_at \
         ORDER BY expires_at, program_id, currency_id, source LIMIT $4"
    )
    .bind(org.0)
    .bind(customer)
    .bind(now)
    .bind(SCHEDULE_ROWS_MAX)
    .fetch_all(e)
    .await)?)
}

/// One lot, as the promotional-points embed lists it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PromotionLot {
    pub id: i64,
    pub program_id: i64,
    pub rule: String,
    pub awarded: i64,
    pub remaining: i64,
    pub awarded_at: i64,
    pub expires_at: Option<i64>,
}

/// The customer's lots awarded by customer-level promotions (registration rules), newest first.
pub async fn promotion_lots(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Vec<PromotionLot>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, PromotionLot>(
        "SELECT id, program_id, rule, awarded, remaining, awarded_at, expires_at FROM point_lots \
         WHERE org_id = $1 AND customer_id = $2 AND currency_id = 0 AND source = 'REGISTRATION' \
         ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(customer)
    .bind(SCHEDULE_ROWS_MAX)
    .fetch_all(e)
    .await)?)
}

/// When each of the customer's program accounts last changed, by program id.
pub async fn accounts_updated_at(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64)>(
        "SELECT program_id, updated_at FROM loyalty_accounts WHERE org_id = $1 AND customer_id = $2"
    )
    .bind(org.0)
    .bind(customer)
    .fetch_all(e)
    .await)?)
}
