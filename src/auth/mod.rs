//! Authentication and authorisation: till Basic auth, OAuth tokens, admin tokens, access groups.

pub mod model;
pub mod password;
pub mod routes;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::post;
use utoipa::OpenApi;

use crate::app::AppState;

pub use model::{Actor, Level, Permissions, Principal, Resource};
pub use service::{AuthError, AuthService};

/// Routes that need no credentials: the OAuth token endpoint.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/v3/oauth/token/generate", post(routes::generate_token))
}

#[derive(OpenApi)]
#[openapi(paths(routes::generate_token))]
pub struct ApiDoc;
