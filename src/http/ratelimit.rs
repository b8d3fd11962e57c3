//! Per-key, per-endpoint request limits in fixed one-minute windows, answered with 429 + `Retry-After`.
//!
//! Counts live in this process: with several instances each enforces the limit on its own share
//! of the traffic (documented in `docs/compat.md`).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::Principal;
use crate::config::RateLimitSettings;
use crate::error::{ApiError, Code};

const WINDOW_SECONDS: u64 = 60;

/// Request counts per (API key, endpoint) in the current window.
pub struct RateLimiter {
    settings: RateLimitSettings,
    windows: Mutex<HashMap<(String, String), (u64, u32)>>,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        RateLimiter { settings, windows: Mutex::new(HashMap::new()) }
    }

    /// The limit for an endpoint named `"METHOD /route"`.
    pub fn limit_for(&self, endpoint: &str) -> u32 {
        self.settings.endpoints.get(endpoint).copied().unwrap_or(self.settings.default_rpm)
    }

    /// Counts one request; `Err(seconds)` says how long until the window resets when over limit.
    pub fn check(&self, api_key: &str, endpoint: &str, now_seconds: u64) -> Result<(), u64> {
        if !self.settings.enabled {
            return Ok(());
        }
        let limit = self.limit_for(endpoint);
        let window = now_seconds / WINDOW_SECONDS;
        let Ok(mut windows) = self.windows.lock() else { return Ok(()) };
        if windows.len() >= self.settings.tracked_windows_max {
            windows.retain(|_, (w, _)| *w == window);
            if windows.len() >= self.settings.tracked_windows_max {
                windows.clear();
            }
        }
        let entry =
            windows.entry((api_key.to_string(), endpoint.to_string())).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            return Err((window + 1) * WINDOW_SECONDS - now_seconds);
        }
        entry.1 += 1;
        Ok(())
    }
}

/// The layer: runs after authentication, so the principal's API key is known.
pub async fn limit_rate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let endpoint = format!("{} {}", request.method(), route);
    if let Some(principal) = request.extensions().get::<Principal>() {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        if let Err(retry_after) = state.limiter.check(&principal.actor.api_key(), &endpoint, now) {
            let mut error = ApiError::new(Code::RateLimited);
            error.retry_after_seconds = Some(retry_after.max(1));
            return error.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_reset_with_the_window() {
        let mut settings = RateLimitSettings { default_rpm: 2, ..RateLimitSettings::default() };
        settings.endpoints.insert("POST /x".into(), 1);
        let limiter = RateLimiter::new(settings);
        assert!(limiter.check("k", "GET /a", 120).is_ok());
        assert!(limiter.check("k", "GET /a", 121).is_ok());
        assert_eq!(limiter.check("k", "GET /a", 130), Err(50));
        assert!(limiter.check("other", "GET /a", 130).is_ok());
        assert!(limiter.check("k", "POST /x", 130).is_ok());
        assert!(limiter.check("k", "POST /x", 131).is_err());
        assert!(limiter.check("k", "GET /a", 180).is_ok());
    }
}
