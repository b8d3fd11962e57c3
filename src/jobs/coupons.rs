//! Coupon jobs: announcing coupons that lapsed (`coupon.expired`, once each) and processing
//! uploaded CSV files in bounded batches under a lease, so several instances may run them.

use crate::app::AppState;
use crate::coupons::{service, upload};

/// Coupons announced per batch, and batches per run.
const EXPIRY_BATCH: i64 = 500;
const EXPIRY_BATCHES_MAX: usize = 20;
/// Upload batches (of `upload::PROCESS_BATCH` rows) per run.
pub const UPLOAD_BATCHES_PER_RUN: usize = 20;

/// One pass at instant `now` (UTC millis); tests call it directly.
pub async fn run_once(state: &AppState, now: i64) {
    for _ in 0..EXPIRY_BATCHES_MAX {
        match service::announce_expired(&state.db, now, EXPIRY_BATCH).await {
            Ok(n) if (n as i64) < EXPIRY_BATCH => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "coupon expiry announcement failed");
                break;
            }
        }
    }
    if let Err(e) = upload::process_due(&state.db, now, UPLOAD_BATCHES_PER_RUN).await {
        tracing::warn!(error = %e, "coupon upload processing failed");
    }
}
