//! `Idempotency-Key` on POST/PUT/PATCH: the same key and body replay the stored response, the same
//! key with another body is refused with 422, and stored responses are kept for the retention
//! period (at least 24 hours).
//!
//! The key is claimed in its own short transaction before the handler runs, and the response is
//! stored after. A crash between the handler's commit and the store leaves an in-progress claim
//! that is taken over after [`ABANDONED_AFTER_MS`]; see `docs/adr/0002-idempotency.md`.

pub mod store;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::auth::Principal;
use crate::db::now_millis;
use crate::error::{ApiError, Code};
use crate::http::envelope::Enveloped;
use store::Claim;

/// Longest accepted `Idempotency-Key` value.
pub const KEY_LENGTH_MAX: usize = 255;
/// An in-progress claim older than this is treated as abandoned by a crashed request.
pub const ABANDONED_AFTER_MS: i64 = 5 * 60 * 1000;

/// The layer; runs after authentication so keys are scoped to the caller's org and API key.
pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match run(state, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn run(state: AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    let applies = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH);
    let Some(key) = request.headers().get("idempotency-key").filter(|_| applies) else {
        return Ok(next.run(request).await);
    };
    let key = key
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= KEY_LENGTH_MAX)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Idempotency-Key must be 1 to {KEY_LENGTH_MAX} visible characters"
            ))
        })?
        .to_string();
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return Ok(next.run(request).await);
    };
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, state.settings.body_limit_bytes)
        .await
        .map_err(|_| ApiError::new(Code::BodyTooLarge))?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(parts.uri.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let request_hash = hex::encode(hasher.finalize());

    let scope = store::Scope { org: principal.org, api_key: principal.actor.api_key(), key };
    let now = now_millis();
    let expires_at = now + state.settings.idempotency.retention_hours.max(24) * 3_600_000;
    let mut tx = state.db.begin_write().await?;
    let claim = store::claim(&mut tx, &scope, &request_hash, now, expires_at).await?;
    tx.commit().await?;
    match claim {
        Claim::Mismatch => return Err(ApiError::new(Code::IdempotencyKeyReused)),
        Claim::InProgress => return Err(ApiError::new(Code::IdempotencyInProgress)),
        Claim::Replay(stored) => return Ok(replay(stored)),
        Claim::New => {}
    }

    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            release(&state, &scope).await;
            return Err(ApiError::internal(&e));
        }
    };
    if parts.status.is_server_error() {
        // A failure is not an answer worth keeping: the client may retry with the same key.
        release(&state, &scope).await;
    } else {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let stored = store::StoredResponse {
            status: i64::from(parts.status.as_u16()),
            content_type,
            body: body.to_vec(),
        };
        let mut tx = state.db.begin_write().await?;
        store::complete(&mut tx, &scope, &stored).await?;
        tx.commit().await?;
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

async fn release(state: &AppState, scope: &store::Scope) {
    let result = async {
        let mut tx = state.db.begin_write().await?;
        store::release(&mut tx, scope).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not release an idempotency key");
    }
}

fn replay(stored: store::StoredResponse) -> Response {
    let status = u16::try_from(stored.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, Body::from(stored.body)).into_response();
    if let Some(content_type) = stored.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response.extensions_mut().insert(Enveloped);
    response
}
