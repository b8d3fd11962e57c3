//! Loyalty jobs: points expiry, promised-points unlock, tier renewal and downgrade, and the
//! evaluation of bills queued with `use_asynch`.
//!
//! Each run handles bounded batches and each item commits on its own, so a crash loses at most
//! the item in flight and the next run resumes; the rows themselves say what is still due, so
//! instances running the same job at once only repeat a check, never an effect (every step
//! re-reads its row under the account lock before acting).

use crate::app::AppState;
use crate::db::now_millis;
use crate::points::ledger;

/// Items per batch, and batches per run.
const BATCH: i64 = 200;
const BATCHES_MAX: usize = 50;

/// One pass over every loyalty job.
pub async fn run_once(state: &AppState) {
    let now = now_millis();
    for unlock in [true, false] {
        for _ in 0..BATCHES_MAX {
            match ledger::process_due_lots(&state.db, now, unlock, BATCH).await {
                Ok(n) if (n as i64) < BATCH => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, unlock, "points expiry/unlock run failed");
                    break;
                }
            }
        }
    }
    for _ in 0..BATCHES_MAX {
        match crate::transactions::service::renew_due_tiers(&state.db, &state.programs, now, BATCH)
            .await
        {
            Ok(n) if (n as i64) < BATCH => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "tier renewal run failed");
                break;
            }
        }
    }
    for _ in 0..BATCHES_MAX {
        match crate::transactions::service::process_pending(
            &state.db,
            &state.programs,
            BATCH,
            now_millis(),
        )
        .await
        {
            Ok(n) if (n as i64) < BATCH => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "queued transaction run failed");
                break;
            }
        }
    }
}
