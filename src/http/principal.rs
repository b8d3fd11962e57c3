//! The authentication layer, and the `Principal` extractor handlers use to see who is calling.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, Code};

/// Authenticates every API request before routing reaches a handler; 401 in the envelope if not.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id =
        request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    match state.auth.authenticate(&state.db, request.headers(), request_id).await {
        Ok(principal) => {
            tracing::Span::current().record("org", principal.org.0);
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::new(Code::AuthenticationFailed))
    }
}
