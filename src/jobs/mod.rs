//! Background jobs of a running server: the purge of expired idempotency keys, the loyalty jobs
//! (expiry, unlock, tier renewal, queued bills), task reminders, the webhook worker and message
//! delivery (each in its own task, so that slow receivers never hold up the other jobs), and the
//! coupon jobs (expiry announcements, CSV uploads) in a task of their own too.
//!
//! Each job is idempotent and bounded per run, so several instances may run it at once safely.

pub mod comms;
pub mod coupons;
pub mod loyalty;
pub mod tasks;
pub mod webhooks;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::db::now_millis;
use crate::idempotency::store::purge_expired;

/// How often expired idempotency keys are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// How often the loyalty jobs run; queued bills wait at most about this long.
const LOYALTY_EVERY: Duration = Duration::from_secs(2);
/// How often due messages are delivered; a queued message waits at most about this long.
const COMMS_EVERY: Duration = Duration::from_secs(2);
/// How often due task reminders are fired; a reminder goes out at most about this late.
const REMINDERS_EVERY: Duration = Duration::from_secs(10);
/// How often the coupon jobs run (a lapsed coupon is announced at most about this late).
const COUPONS_EVERY: Duration = Duration::from_secs(2);
/// Rows deleted per statement, and statements per run: each run is bounded.
const PURGE_BATCH: i64 = 1_000;
const PURGE_BATCHES_MAX: usize = 100;

/// Starts the jobs; they stop when `shutdown` turns true (a run in progress finishes first).
/// Message delivery has a loop of its own, so that slow providers never hold up the others.
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let webhook_worker = tokio::spawn(webhooks::run(state.clone(), shutdown.clone()));
    let delivery = tokio::spawn(deliver_messages(state.clone(), shutdown.clone()));
    let coupon_jobs = tokio::spawn(run_coupon_jobs(state.clone(), shutdown.clone()));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PURGE_EVERY);
        let mut loyalty_ticker = tokio::time::interval(LOYALTY_EVERY);
        // The first tick is at once: reminders that fell due while the server was down go
        // out on start (marked late).
        let mut reminder_ticker = tokio::time::interval(REMINDERS_EVERY);
        loop {
            tokio::select! {
                _ = ticker.tick() => purge_idempotency_keys(&state).await,
                _ = loyalty_ticker.tick() => loyalty::run_once(&state).await,
                _ = reminder_ticker.tick() => {
                    tasks::run_once(&state, now_millis()).await;
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = webhook_worker.await;
        let _ = delivery.await;
        let _ = coupon_jobs.await;
    })
}

async fn deliver_messages(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(COMMS_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                comms::run_once(&state, now_millis()).await;
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn run_coupon_jobs(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(COUPONS_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => coupons::run_once(&state, now_millis()).await,
            _ = shutdown.changed() => break,
        }
    }
}

async fn purge_idempotency_keys(state: &AppState) {
    for _ in 0..PURGE_BATCHES_MAX {
        let result = async {
            let mut tx = state.db.begin_write().await?;
            let deleted = purge_expired(&mut tx, now_millis(), PURGE_BATCH).await?;
            tx.commit().await?;
            Ok::<_, crate::db::DbError>(deleted)
        }
        .await;
        match result {
            Ok(deleted) if deleted < PURGE_BATCH as u64 => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "idempotency key purge failed");
                return;
            }
        }
    }
}
