//! Message delivery: sends due messages (queued, or scheduled and now due) through each
//! channel's provider, retrying transient failures with backoff.
//!
//! A run claims bounded batches; each message is claimed with a lease by one instance only
//! (`UPDATE … RETURNING`, `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several instances may run
//! the job at once. A claim whose instance crashed runs out and the message is tried again.

use crate::app::AppState;
use crate::comms::service::{self, DeliveryReport};

/// Messages per claim, and claims per run: a run handles at most 500 messages.
pub const BATCH: i64 = 20;
pub const BATCHES_MAX: usize = 25;

/// One delivery pass at instant `now` (UTC millis): every message due by then is attempted once
/// (up to the run's bound). Tests call it with a chosen `now`.
pub async fn run_once(state: &AppState, now: i64) -> DeliveryReport {
    let mut total = DeliveryReport::default();
    for _ in 0..BATCHES_MAX {
        match service::deliver_due(&state.db, &state.comms, now, BATCH).await {
            Ok(report) => {
                let claimed = report.claimed;
                total.claimed += report.claimed;
                total.sent += report.sent;
                total.failed += report.failed;
                total.retried += report.retried;
                total.skipped += report.skipped;
                total.lost += report.lost;
                if (claimed as i64) < BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "message delivery run failed");
                break;
            }
        }
    }
    total
}
