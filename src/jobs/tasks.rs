//! Task reminders: fires every reminder whose time has come (or cancels it when its task has
//! closed or expired), once per executor, across restarts and instances (see
//! `tasks::scheduler`).

use crate::app::AppState;
use crate::tasks::scheduler::{self, FireReport};

/// Reminders per batch, and batches per run: a run handles at most 1,000 reminders.
pub const BATCH: i64 = 50;
pub const BATCHES_MAX: usize = 20;

/// One pass at instant `now` (UTC millis): every reminder due by then is fired or cancelled
/// (up to the run's bound). Tests call it with a chosen `now`; the server with the clock.
pub async fn run_once(state: &AppState, now: i64) -> FireReport {
    let mut total = FireReport::default();
    for _ in 0..BATCHES_MAX {
        match scheduler::fire_due(&state.db, now, BATCH).await {
            Ok(report) => {
                total.due += report.due;
                total.sent += report.sent;
                total.late += report.late;
                total.cancelled += report.cancelled;
                total.messages += report.messages;
                total.skipped += report.skipped;
                // A short batch, or one where every reminder was another instance's (or
                // failed), means nothing more is ready now.
                if (report.due as i64) < BATCH || report.sent + report.cancelled == 0 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "task reminder run failed");
                break;
            }
        }
    }
    total
}
