//! `POST /v3/oauth/token/generate`: client credentials for a signed access token.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::ApiError;
use crate::http::extract::Json;

/// Body of the token request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    key: String,
    secret: String,
}

/// `POST /v3/oauth/token/generate` — no auth header; answers `{"data": {"accessToken", "ttlSeconds"}, "errors": null}`.
#[utoipa::path(post, path = "/v3/oauth/token/generate", tag = "auth", request_body = TokenRequest,
    responses((status = 200, description = "Access token"), (status = 401, description = "Bad key or secret")))]
pub async fn generate_token(
    State(state): State<AppState>,
    Json(body): Json<TokenRequest>,
) -> Result<Response, ApiError> {
    let (token, ttl) = state.auth.generate_token(&state.db, &body.key, &body.secret).await?;
    Ok(axum::Json(json!({"data": {"accessToken": token, "ttlSeconds": ttl}, "errors": null}))
        .into_response())
}
