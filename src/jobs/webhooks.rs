//! The webhook worker: fans new outbox events out into deliveries, claims due deliveries under a
//! lease, sends them concurrently and records every attempt; plus the retention purge of old
//! deliveries.
//!
//! All state is in the database, so a restart resumes where the last run stopped: a delivery
//! whose worker died mid-attempt is claimed again when its lease expires (at-least-once). Several
//! instances may run the worker at once: claims never overlap (see `webhooks::store::claim_due`).

use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::AppState;
use crate::db::{DbError, now_millis};
use crate::webhooks::deliver::{self, Outcome};
use crate::webhooks::model::{ATTEMPTS_MAX, DeliveryStatus, retry_delay_ms};
use crate::webhooks::service;
use crate::webhooks::store::{self, AttemptRecord, ClaimedDelivery};

/// Outbox events turned into deliveries per transaction, and transactions per run.
const FAN_OUT_BATCH: i64 = 500;
const FAN_OUT_BATCHES_MAX: usize = 20;
/// Deliveries claimed (and so sent at once) per run.
const DELIVERY_BATCH: i64 = 32;
/// The configured attempt timeout is kept within these bounds.
const TIMEOUT_MIN_MS: u64 = 100;
const TIMEOUT_MAX_MS: u64 = 60_000;
/// A claim's lease outlives the attempt's timeout by this much (recording the outcome included).
const LEASE_MARGIN_MS: i64 = 30_000;
/// Pause between runs after one that found work; after an idle run the pause doubles up to
/// `TICK_IDLE_MAX`, which bounds the delivery latency of an idle server.
const TICK_BUSY: Duration = Duration::from_millis(100);
const TICK_IDLE_MAX: Duration = Duration::from_millis(400);
/// How often finished deliveries older than `RETENTION_MS` are purged, and how many per run.
const PURGE_EVERY: Duration = Duration::from_secs(3_600);
const RETENTION_MS: i64 = 30 * 24 * 3_600 * 1_000;
const PURGE_BATCH: i64 = 1_000;
const PURGE_BATCHES_MAX: usize = 100;

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Outbox events fanned out.
    pub fanned_out: usize,
    /// Delivery attempts made.
    pub attempted: usize,
    /// Of which succeeded.
    pub delivered: usize,
}

/// One pass: fan out new events, then claim one batch of due deliveries and send them. `now` is
/// the clock for due times, backoff and leases (tests move it forward to make retries due).
pub async fn run_once(state: &AppState, now: i64) -> RunSummary {
    let mut summary = RunSummary::default();
    for _ in 0..FAN_OUT_BATCHES_MAX {
        match service::fan_out(&state.db, now, FAN_OUT_BATCH).await {
            Ok(n) => {
                summary.fanned_out += n;
                if (n as i64) < FAN_OUT_BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook fan-out failed");
                break;
            }
        }
    }
    let timeout = Duration::from_millis(
        state.settings.webhooks.timeout_ms.clamp(TIMEOUT_MIN_MS, TIMEOUT_MAX_MS),
    );
    let lease_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2) + LEASE_MARGIN_MS;
    let owner = uuid::Uuid::new_v4().to_string();
    let claimed = match claim(state, now, now + lease_ms, &owner).await {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "webhook claim failed");
            return summary;
        }
    };
    let started = Instant::now();
    let mut sends = JoinSet::new();
    for delivery in claimed {
        let client = state.webhook_client.clone();
        sends.spawn(async move {
            let outcome = deliver::send(&client, &delivery, timeout).await;
            (delivery, outcome)
        });
    }
    while let Some(joined) = sends.join_next().await {
        // A send that panicked keeps its lease until it expires; the delivery is then retried.
        let Ok((delivery, outcome)) = joined else { continue };
        summary.attempted += 1;
        summary.delivered += usize::from(outcome.succeeded());
        let elapsed = i64::try_from(started.elapsed().as_millis()).unwrap_or(0);
        if let Err(e) = record(state, &owner, &delivery, &outcome, now + elapsed).await {
            tracing::warn!(error = %e, delivery = delivery.id, "recording a webhook attempt failed");
        }
    }
    summary
}

async fn claim(
    state: &AppState,
    now: i64,
    lease_until: i64,
    owner: &str,
) -> Result<Vec<ClaimedDelivery>, DbError> {
    {
        let mut conn = state.db.read().await?;
        if !store::any_delivery_due(&mut conn, now).await? {
            return Ok(Vec::new());
        }
    }
    let mut tx = state.db.begin_write().await?;
    let claimed = store::claim_due(&mut tx, now, lease_until, owner, DELIVERY_BATCH).await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Records an attempt that ended at `at`: DELIVERED, FAILED with the next attempt backed off, or
/// DEAD after [`ATTEMPTS_MAX`] attempts.
async fn record(
    state: &AppState,
    owner: &str,
    delivery: &ClaimedDelivery,
    outcome: &Outcome,
    at: i64,
) -> Result<(), DbError> {
    let attempts_made = delivery.attempts + 1;
    let (status, next_attempt_at) = if outcome.succeeded() {
        (DeliveryStatus::Delivered, at)
    } else if attempts_made >= ATTEMPTS_MAX {
        (DeliveryStatus::Dead, at)
    } else {
        let jitter: f64 = rand::thread_rng().r#gen();
        (DeliveryStatus::Failed, at + retry_delay_ms(attempts_made, jitter))
    };
    let record = AttemptRecord {
        delivery_id: delivery.id,
        org_id: delivery.org_id,
        subscription_id: delivery.subscription_id,
        attempt: attempts_made,
        started_at: at - outcome.duration_ms,
        duration_ms: outcome.duration_ms,
        http_status: outcome.http_status.map(i64::from),
        error: outcome.error.as_deref(),
        outcome: outcome.kind,
        status,
        next_attempt_at,
    };
    let mut tx = state.db.begin_write().await?;
    let current = store::record_attempt(&mut tx, owner, &record, at).await?;
    tx.commit().await?;
    if !current {
        tracing::info!(delivery = delivery.id, "webhook delivery changed hands during its attempt");
    }
    Ok(())
}

/// Deletes finished deliveries older than the retention, and those of deleted webhooks, in
/// bounded batches.
pub async fn purge(state: &AppState, now: i64) {
    for _ in 0..PURGE_BATCHES_MAX {
        let result = async {
            let mut tx = state.db.begin_write().await?;
            let n = store::purge(&mut tx, now - RETENTION_MS, PURGE_BATCH).await?;
            tx.commit().await?;
            Ok::<_, DbError>(n)
        }
        .await;
        match result {
            Ok(n) if n < PURGE_BATCH as u64 => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "webhook delivery purge failed");
                return;
            }
        }
    }
}

/// Runs the worker until `shutdown` turns true: often while there is work, backing off to
/// [`TICK_IDLE_MAX`] when idle.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut pause = TICK_BUSY;
    let mut last_purge = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => break,
        }
        let summary = run_once(&state, now_millis()).await;
        pause = if summary.attempted as i64 >= DELIVERY_BATCH {
            Duration::ZERO
        } else if summary.attempted > 0 || summary.fanned_out > 0 {
            TICK_BUSY
        } else {
            (pause * 2).clamp(TICK_BUSY, TICK_IDLE_MAX)
        };
        if last_purge.elapsed() >= PURGE_EVERY {
            purge(&state, now_millis()).await;
            last_purge = Instant::now();
        }
    }
}
