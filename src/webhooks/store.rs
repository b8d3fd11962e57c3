//! SQL for webhooks: subscriptions, the fan-out from the outbox, claiming due deliveries under a
//! lease, recording attempts, the event notification logs and the retention purge. Every function
//! that serves one org takes it first; the worker's functions span orgs by design.

use crate::db::{Connection, DbError, Exec};
use crate::dispatch;
use crate::org::model::OrgId;

use super::model::{CIRCUIT_COOL_DOWN_MS, CIRCUIT_FAILURES_MAX, DeliveryStatus, SubscriptionId};

fn is_postgres(c: &mut impl Connection) -> bool {
    matches!(c.exec(), Exec::Postgres(_))
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------- subscriptions

/// A subscription as stored (the secret included: callers decide what to show).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: i64,
    pub org_id: i64,
    pub kind: String,
    pub name: String,
    pub url: String,
    pub event_types: String,
    pub secret: String,
    pub source: Option<String>,
    pub till_code: Option<String>,
    pub webhook_key: Option<String>,
    pub is_active: bool,
    pub consecutive_failures: i64,
    pub paused_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SUBSCRIPTION_COLUMNS: &str = "id, org_id, kind, name, url, event_types, secret, source, \
     till_code, webhook_key, is_active, consecutive_failures, paused_until, created_at, updated_at";

/// The values of a new subscription row.
pub struct NewSubscriptionRow<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub url: &'a str,
    pub event_types: &'a str,
    pub secret: &'a str,
    pub source: Option<&'a str>,
    pub till_code: Option<&'a str>,
    pub webhook_key: Option<&'a str>,
}

/// Subscriptions of the org that are not deleted.
pub async fn count_subscriptions(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_subscriptions WHERE org_id = $1 AND deleted_at IS NULL"
    )
    .bind(org.0)
    .fetch_one(e)
    .await)?)
}

pub async fn insert_subscription(
    c: &mut impl Connection,
    org: OrgId,
    row: &NewSubscriptionRow<'_>,
    now: i64,
) -> Result<SubscriptionId, DbError> {
    let id: i64 = dispatch!(c, |e| {
        sqlx::query_scalar(
        "INSERT INTO webhook_subscriptions (org_id, kind, name, url, event_types, secret, source, \
         till_code, webhook_key, is_active, consecutive_failures, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, TRUE, 0, $10, $10) RETURNING id"
    )
    .bind(org.0)
    .bind(row.kind)
    .bind(row.name)
    .bind(row.url)
    .bind(row.event_types)
    .bind(row.secret)
    .bind(row.source)
    .bind(row.till_code)
    .bind(row.webhook_key)
    .bind(now)
    .fetch_one(e)
    .await
    })?;
    Ok(SubscriptionId(id))
}

/// The org's subscription `id`, unless deleted.
pub async fn get_subscription(
    c: &mut impl Connection,
    org: OrgId,
    id: SubscriptionId,
) -> Result<Option<SubscriptionRow>, DbError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
         WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, SubscriptionRow>(&sql)
        .bind(org.0)
        .bind(id.0)
        .fetch_optional(e)
        .await)?)
}

/// The org's subscriptions by id (at most [`super::model::SUBSCRIPTIONS_PER_ORG_MAX`] exist).
pub async fn list_subscriptions(
    c: &mut impl Connection,
    org: OrgId,
    limit: i64,
) -> Result<Vec<SubscriptionRow>, DbError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
         WHERE org_id = $1 AND deleted_at IS NULL ORDER BY id LIMIT $2"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, SubscriptionRow>(&sql)
        .bind(org.0)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// The inbound integration whose generated URL carries `webhook_key` (for Post Event).
pub async fn find_inbound(
    c: &mut impl Connection,
    webhook_key: &str,
) -> Result<Option<SubscriptionRow>, DbError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
         WHERE webhook_key = $1 AND kind = 'INBOUND' AND deleted_at IS NULL"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, SubscriptionRow>(&sql)
        .bind(webhook_key)
        .fetch_optional(e)
        .await)?)
}

/// Writes a subscription's editable fields; `reset_circuit` closes its circuit (a new URL).
#[allow(clippy::too_many_arguments)]
pub async fn update_subscription(
    c: &mut impl Connection,
    org: OrgId,
    id: SubscriptionId,
    name: &str,
    url: &str,
    event_types: &str,
    is_active: bool,
    reset_circuit: bool,
    now: i64,
) -> Result<u64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query(
        "UPDATE webhook_subscriptions SET name = $3, url = $4, event_types = $5, is_active = $6, \
         consecutive_failures = CASE WHEN $7 THEN 0 ELSE consecutive_failures END, \
         paused_until = CASE WHEN $7 THEN NULL ELSE paused_until END, updated_at = $8 \
         WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    )
    .bind(org.0)
    .bind(id.0)
    .bind(name)
    .bind(url)
    .bind(event_types)
    .bind(is_active)
    .bind(reset_circuit)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?)
}

pub async fn set_secret(
    c: &mut impl Connection,
    org: OrgId,
    id: SubscriptionId,
    secret: &str,
    now: i64,
) -> Result<u64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query(
        "UPDATE webhook_subscriptions SET secret = $3, updated_at = $4 \
         WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    )
    .bind(org.0)
    .bind(id.0)
    .bind(secret)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?)
}

/// Deletes a subscription softly: it stops receiving and its rows go with the retention purge.
pub async fn mark_deleted(
    c: &mut impl Connection,
    org: OrgId,
    id: SubscriptionId,
    now: i64,
) -> Result<u64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query(
        "UPDATE webhook_subscriptions SET deleted_at = $3, is_active = FALSE, webhook_key = NULL, \
         updated_at = $3 WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
    )
    .bind(org.0)
    .bind(id.0)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?)
}

// ---------------------------------------------------------------- the outbox and fan-out

/// An outbox event, as the fan-out, replay and delivery read it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxEvent {
    pub id: i64,
    pub org_id: i64,
    pub event_type: String,
    pub entity_type: String,
    pub entity_id: i64,
    pub request_id: Option<String>,
    pub occurred_at: i64,
}

const EVENT_COLUMNS: &str =
    "id, org_id, event_type, entity_type, entity_id, request_id, occurred_at";

/// True when some outbox event still waits for the fan-out (a cheap probe on the read pool).
pub async fn any_event_to_fan_out(c: &mut impl Connection) -> Result<bool, DbError> {
    let found: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "SELECT id FROM domain_events WHERE webhooks_fanned_out_at IS NULL LIMIT 1"
    )
    .fetch_optional(e)
    .await)?;
    Ok(found.is_some())
}

/// The oldest `limit` events not fanned out yet, locked for this transaction: on PostgreSQL
/// `FOR UPDATE SKIP LOCKED`, so instances fanning out at once take different events; SQLite's one
/// writer already excludes the others.
pub async fn lock_events_to_fan_out(
    c: &mut impl Connection,
    limit: i64,
) -> Result<Vec<OutboxEvent>, DbError> {
    let lock = if is_postgres(c) { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM domain_events WHERE webhooks_fanned_out_at IS NULL \
         ORDER BY id LIMIT $1{lock}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OutboxEvent>(&sql).bind(limit).fetch_all(e).await)?)
}

/// Marks events as fanned out.
pub async fn mark_fanned_out(
    c: &mut impl Connection,
    event_ids: &[i64],
    now: i64,
) -> Result<(), DbError> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE domain_events SET webhooks_fanned_out_at = $1 WHERE id IN ({})",
        placeholders(2, event_ids.len())
    );
    dispatch!(c, |e| {
        let mut query = sqlx::query(&sql).bind(now);
        for id in event_ids {
            query = query.bind(id);
        }
        query.execute(e).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// An active outbound subscription, as the fan-out matches events against it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FanOutTarget {
    pub id: i64,
    pub created_at: i64,
    pub event_types: String,
    pub paused_until: Option<i64>,
}

/// The org's active outbound subscriptions.
pub async fn active_outbound(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<FanOutTarget>, DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query_as::<_, FanOutTarget>(
        "SELECT id, created_at, event_types, paused_until FROM webhook_subscriptions WHERE org_id = $1 AND \
         kind = 'OUTBOUND' AND is_active AND deleted_at IS NULL ORDER BY id LIMIT $2"
    )
    .bind(org.0)
    .bind(super::model::SUBSCRIPTIONS_PER_ORG_MAX)
    .fetch_all(e)
    .await
    })?)
}

/// Creates the PENDING delivery of `event` to `subscription`, due at `due`; nothing if it exists.
pub async fn insert_delivery(
    c: &mut impl Connection,
    subscription: i64,
    event: &OutboxEvent,
    due: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO webhook_deliveries (org_id, subscription_id, event_id, event_type, \
         request_id, ref_id, status, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 0, $7, $8, $8) \
         ON CONFLICT (subscription_id, event_id) DO NOTHING"
    )
    .bind(event.org_id)
    .bind(subscription)
    .bind(event.id)
    .bind(&event.event_type)
    .bind(&event.request_id)
    .bind(event.entity_id.to_string())
    .bind(due)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Makes the delivery of `event` to `subscription` PENDING and due `now` with a fresh attempt
/// budget, creating it if needed (replay). Its earlier attempts stay in the log.
pub async fn reset_delivery(
    c: &mut impl Connection,
    subscription: i64,
    event: &OutboxEvent,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO webhook_deliveries (org_id, subscription_id, event_id, event_type, \
         request_id, ref_id, status, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 0, $7, $7, $7) \
         ON CONFLICT (subscription_id, event_id) DO UPDATE SET status = 'PENDING', attempts = 0, \
         next_attempt_at = $7, lease_owner = NULL, lease_until = NULL, updated_at = $7"
    )
    .bind(event.org_id)
    .bind(subscription)
    .bind(event.id)
    .bind(&event.event_type)
    .bind(&event.request_id)
    .bind(event.entity_id.to_string())
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The org's event `id`.
pub async fn get_event(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<OutboxEvent>, DbError> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM domain_events WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OutboxEvent>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// The org's events that occurred in `[from, to]`, oldest first, at most `limit`.
pub async fn events_between(
    c: &mut impl Connection,
    org: OrgId,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<OutboxEvent>, DbError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM domain_events \
         WHERE org_id = $1 AND occurred_at >= $2 AND occurred_at <= $3 ORDER BY id LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OutboxEvent>(&sql)
        .bind(org.0)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

// ---------------------------------------------------------------- claiming and attempts

/// True when some delivery may be due (a cheap probe on the read pool; the claim decides).
pub async fn any_delivery_due(c: &mut impl Connection, now: i64) -> Result<bool, DbError> {
    let found: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "SELECT d.id FROM webhook_deliveries d JOIN webhook_subscriptions s \
         ON s.id = d.subscription_id WHERE d.status IN ('PENDING', 'FAILED') \
         AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until < $1) \
         AND s.is_active AND s.deleted_at IS NULL \
         AND (s.paused_until IS NULL OR s.paused_until <= $1) LIMIT 1"
    )
    .bind(now)
    .fetch_optional(e)
    .await)?;
    Ok(found.is_some())
}

/// A delivery claimed for one attempt, with what sending it needs.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub org_id: i64,
    pub subscription_id: i64,
    pub event_id: i64,
    /// Attempts made before this one.
    pub attempts: i64,
    pub url: String,
    pub secret: String,
    pub consecutive_failures: i64,
    pub event_type: String,
    pub payload: String,
    pub occurred_at: i64,
}

/// Claims up to `limit` due deliveries for `owner` until `lease_until`.
///
/// Due: PENDING or FAILED, `next_attempt_at` passed, no live lease, and the subscription active,
/// not deleted, its circuit not paused. On PostgreSQL the candidates are locked with
/// `FOR UPDATE OF d SKIP LOCKED`, so concurrent claimers take different rows, and the lease makes
/// them not due for anyone else once this transaction commits; on SQLite the single writer does
/// the same. A subscription whose circuit has cooled down (still at the failure limit) gets one
/// probe: the claim that wins the conditional update of its `paused_until` takes one delivery.
pub async fn claim_due(
    c: &mut impl Connection,
    now: i64,
    lease_until: i64,
    owner: &str,
    limit: i64,
) -> Result<Vec<ClaimedDelivery>, DbError> {
    let lock = if is_postgres(c) { " FOR UPDATE OF d SKIP LOCKED" } else { "" };
    let sql = format!(
        "SELECT d.id, d.org_id, d.subscription_id, d.event_id, d.attempts, s.url, s.secret, \
         s.consecutive_failures, e.event_type, e.payload, e.occurred_at \
         FROM webhook_deliveries d \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         JOIN domain_events e ON e.id = d.event_id \
         WHERE d.status IN ('PENDING', 'FAILED') AND d.next_attempt_at <= $1 \
         AND (d.lease_until IS NULL OR d.lease_until < $1) \
         AND s.is_active AND s.deleted_at IS NULL AND s.kind = 'OUTBOUND' \
         AND (s.paused_until IS NULL OR s.paused_until <= $1) \
         ORDER BY d.next_attempt_at, d.id LIMIT $2{lock}"
    );
    let candidates: Vec<ClaimedDelivery> =
        dispatch!(c, |e| sqlx::query_as::<_, ClaimedDelivery>(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(e)
            .await)?;

    let mut claimed: Vec<ClaimedDelivery> = Vec::with_capacity(candidates.len());
    let mut probing: Vec<i64> = Vec::new();
    for candidate in candidates {
        if candidate.consecutive_failures >= CIRCUIT_FAILURES_MAX {
            if probing.contains(&candidate.subscription_id) {
                continue;
            }
            probing.push(candidate.subscription_id);
            if !take_probe(c, candidate.subscription_id, now, lease_until).await? {
                continue;
            }
        }
        claimed.push(candidate);
    }
    if claimed.is_empty() {
        return Ok(claimed);
    }
    let ids: Vec<i64> = claimed.iter().map(|d| d.id).collect();
    let sql = format!(
        "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN ({})",
        placeholders(3, ids.len())
    );
    dispatch!(c, |e| {
        let mut query = sqlx::query(&sql).bind(owner).bind(lease_until);
        for id in &ids {
            query = query.bind(id);
        }
        query.execute(e).await.map(|r| r.rows_affected())
    })?;
    Ok(claimed)
}

/// Lets one probe through a cooled-down circuit: pushes `paused_until` to the probe's lease so
/// that no other claim probes at the same time. False when another claim took the probe.
async fn take_probe(
    c: &mut impl Connection,
    subscription: i64,
    now: i64,
    lease_until: i64,
) -> Result<bool, DbError> {
    let updated = dispatch!(c, |e| sqlx::query(
        "UPDATE webhook_subscriptions SET paused_until = $2 WHERE id = $1 \
         AND consecutive_failures >= $4 AND (paused_until IS NULL OR paused_until <= $3)"
    )
    .bind(subscription)
    .bind(lease_until)
    .bind(now)
    .bind(CIRCUIT_FAILURES_MAX)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(updated == 1)
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub struct AttemptRecord<'a> {
    pub delivery_id: i64,
    pub org_id: i64,
    pub subscription_id: i64,
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    pub error: Option<&'a str>,
    /// SUCCESS | HTTP_ERROR | TIMEOUT | NETWORK_ERROR
    pub outcome: &'a str,
    /// The delivery's state after the attempt, and when to try again (FAILED).
    pub status: DeliveryStatus,
    pub next_attempt_at: i64,
}

/// Records an attempt, moves the delivery on (if `owner` still holds its lease: a replay or an
/// expired lease hands it to someone else), and updates the subscription's circuit: a success
/// closes it, a failure counts, and [`CIRCUIT_FAILURES_MAX`] failures in a row pause it for
/// [`CIRCUIT_COOL_DOWN_MS`]. Returns whether the delivery row was updated.
pub async fn record_attempt(
    c: &mut impl Connection,
    owner: &str,
    record: &AttemptRecord<'_>,
    now: i64,
) -> Result<bool, DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO webhook_attempts (org_id, delivery_id, attempt, started_at, duration_ms, \
         http_status, error, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(record.org_id)
    .bind(record.delivery_id)
    .bind(record.attempt)
    .bind(record.started_at)
    .bind(record.duration_ms)
    .bind(record.http_status)
    .bind(record.error)
    .bind(record.outcome)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    let delivered = record.status == DeliveryStatus::Delivered;
    let updated = dispatch!(c, |e| sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, \
         next_attempt_at = $4, lease_owner = NULL, lease_until = NULL, last_http_status = $5, \
         last_error = $6, last_duration_ms = $7, \
         delivered_at = CASE WHEN $8 THEN $9 ELSE delivered_at END, updated_at = $9 \
         WHERE id = $1 AND lease_owner = $2"
    )
    .bind(record.delivery_id)
    .bind(owner)
    .bind(record.status.as_str())
    .bind(record.next_attempt_at)
    .bind(record.http_status)
    .bind(record.error)
    .bind(record.duration_ms)
    .bind(delivered)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    if delivered {
        dispatch!(c, |e| sqlx::query(
            "UPDATE webhook_subscriptions SET consecutive_failures = 0, paused_until = NULL \
             WHERE id = $1"
        )
        .bind(record.subscription_id)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    } else {
        let paused_until: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1, \
             paused_until = CASE WHEN consecutive_failures + 1 >= $2 THEN $3 ELSE paused_until END \
             WHERE id = $1 RETURNING paused_until"
        )
        .bind(record.subscription_id)
        .bind(CIRCUIT_FAILURES_MAX)
        .bind(now + CIRCUIT_COOL_DOWN_MS)
        .fetch_optional(e)
        .await)?
        .flatten();
        if let Some(until) = paused_until.filter(|until| *until > now) {
            // The circuit is open: what waits becomes due when it ends, so that claims (which
            // scan due deliveries) never walk a paused webhook's backlog.
            dispatch!(c, |e| sqlx::query(
                "UPDATE webhook_deliveries SET next_attempt_at = $2 WHERE subscription_id = $1 \
                 AND status IN ('PENDING', 'FAILED') AND next_attempt_at < $2"
            )
            .bind(record.subscription_id)
            .bind(until)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
        }
    }
    Ok(updated == 1)
}

// ---------------------------------------------------------------- logs

/// A delivery as the event notification logs show it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub subscription_id: i64,
    pub event_id: i64,
    pub event_type: String,
    pub request_id: Option<String>,
    pub ref_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_http_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filters of a logs query; every one given must hold.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub request_id: Option<String>,
    pub ref_id: Option<String>,
    pub event_id: Option<i64>,
    pub subscription_id: Option<i64>,
    pub event_type: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
}

/// A sort column of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSort {
    CreatedAt,
    WebhookDuration,
    EventType,
    Attempts,
    EventId,
}

impl LogSort {
    fn column(self) -> &'static str {
        match self {
            LogSort::CreatedAt => "created_at",
            LogSort::WebhookDuration => "COALESCE(last_duration_ms, -1)",
            LogSort::EventType => "event_type",
            LogSort::Attempts => "attempts",
            LogSort::EventId => "event_id",
        }
    }
}

enum Bind {
    Int(i64),
    Text(String),
}

/// One page of the org's deliveries matching `filter`, and how many match in all.
pub async fn deliveries(
    c: &mut impl Connection,
    org: OrgId,
    filter: &LogFilter,
    sort: LogSort,
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DeliveryRow>, i64), DbError> {
    let mut binds = vec![Bind::Int(org.0)];
    let mut conditions = vec!["org_id = $1".to_string()];
    let mut add = |column: &str, op: &str, bind: Bind| {
        binds.push(bind);
        conditions.push(format!("{column} {op} ${}", binds.len()));
    };
    if let Some(v) = &filter.request_id {
        add("request_id", "=", Bind::Text(v.clone()));
    }
    if let Some(v) = &filter.ref_id {
        add("ref_id", "=", Bind::Text(v.clone()));
    }
    if let Some(v) = filter.event_id {
        add("event_id", "=", Bind::Int(v));
    }
    if let Some(v) = filter.subscription_id {
        add("subscription_id", "=", Bind::Int(v));
    }
    if let Some(v) = &filter.event_type {
        add("event_type", "=", Bind::Text(v.clone()));
    }
    if let Some(v) = filter.status {
        add("status", "=", Bind::Text(v.as_str().to_string()));
    }
    if let Some(v) = filter.created_from {
        add("created_at", ">=", Bind::Int(v));
    }
    if let Some(v) = filter.created_to {
        add("created_at", "<=", Bind::Int(v));
    }
    let predicate = conditions.join(" AND ");
    let direction = if descending { "DESC" } else { "ASC" };
    let count_sql = format!("SELECT COUNT(*) FROM webhook_deliveries WHERE {predicate}");
    let page_sql = format!(
        "SELECT id, subscription_id, event_id, event_type, request_id, ref_id, status, attempts, \
         next_attempt_at, last_http_status, last_error, last_duration_ms, delivered_at, \
         created_at, updated_at FROM webhook_deliveries WHERE {predicate} \
         ORDER BY {} {direction}, id {direction} LIMIT ${} OFFSET ${}",
        sort.column(),
        binds.len() + 1,
        binds.len() + 2
    );
    let total: i64 = dispatch!(c, |e| {
        let mut query = sqlx::query_scalar(&count_sql);
        for bind in &binds {
            query = match bind {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.as_str()),
            };
        }
        query.fetch_one(e).await
    })?;
    let rows: Vec<DeliveryRow> = dispatch!(c, |e| {
        let mut query = sqlx::query_as::<_, DeliveryRow>(&page_sql);
        for bind in &binds {
            query = match bind {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.as_str()),
            };
        }
        query.bind(limit).bind(offset).fetch_all(e).await
    })?;
    Ok((rows, total))
}

/// One attempt as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttemptRow {
    pub delivery_id: i64,
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub outcome: String,
}

/// The latest `limit` attempts of one of the org's deliveries, oldest first.
pub async fn attempts_of(
    c: &mut impl Connection,
    org: OrgId,
    delivery_id: i64,
    limit: i64,
) -> Result<Vec<AttemptRow>, DbError> {
    let mut rows: Vec<AttemptRow> = dispatch!(c, |e| sqlx::query_as::<_, AttemptRow>(
        "SELECT delivery_id, attempt, started_at, duration_ms, http_status, error, outcome \
         FROM webhook_attempts WHERE org_id = $1 AND delivery_id = $2 ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(delivery_id)
    .bind(limit)
    .fetch_all(e)
    .await)?;
    rows.reverse();
    Ok(rows)
}

// ---------------------------------------------------------------- retention

/// Deletes up to `limit` deliveries (with their attempts) that finished before `before`, or that
/// belong to a deleted subscription; then deleted subscriptions left with no delivery. Returns
/// how many deliveries went.
pub async fn purge(c: &mut impl Connection, before: i64, limit: i64) -> Result<u64, DbError> {
    let ids: Vec<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries WHERE status IN ('DELIVERED', 'DEAD') \
         AND updated_at < $1 ORDER BY updated_at LIMIT $2"
    )
    .bind(before)
    .bind(limit)
    .fetch_all(e)
    .await)?;
    let room = limit - ids.len() as i64;
    let mut ids = ids;
    if room > 0 {
        // Deliveries of deleted webhooks that are still waiting (finished ones were taken above).
        let orphaned: Vec<i64> = dispatch!(c, |e| sqlx::query_scalar(
            "SELECT d.id FROM webhook_deliveries d JOIN webhook_subscriptions s \
             ON s.id = d.subscription_id WHERE s.deleted_at IS NOT NULL \
             AND d.status IN ('PENDING', 'FAILED') ORDER BY d.id LIMIT $1"
        )
        .bind(room)
        .fetch_all(e)
        .await)?;
        ids.extend(orphaned);
    }
    if !ids.is_empty() {
        let list = placeholders(1, ids.len());
        for table_and_column in
            ["webhook_attempts WHERE delivery_id", "webhook_deliveries WHERE id"]
        {
            let sql = format!("DELETE FROM {table_and_column} IN ({list})");
            dispatch!(c, |e| {
                let mut query = sqlx::query(&sql);
                for id in &ids {
                    query = query.bind(id);
                }
                query.execute(e).await.map(|r| r.rows_affected())
            })?;
        }
    }
    dispatch!(c, |e| sqlx::query(
        "DELETE FROM webhook_subscriptions WHERE deleted_at IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM webhook_deliveries d WHERE d.subscription_id = webhook_subscriptions.id)"
    )
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(ids.len() as u64)
}
