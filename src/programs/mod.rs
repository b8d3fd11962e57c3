//! Loyalty programs: the program document, its validation and compiled form (earn rules as CEL
//! expressions, tiers, expiry and promise dates), storage, the cache of compiled programs, and
//! the admin API.

pub mod cache;
pub mod engine;
pub mod expr;
pub mod model;
pub mod routes;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/x/perks/v1/programs", get(routes::list).post(routes::create))
        .route("/x/perks/v1/programs/{id}", get(routes::get_one).put(routes::replace))
}

#[derive(OpenApi)]
#[openapi(paths(routes::list, routes::create, routes::get_one, routes::replace))]
pub struct ApiDoc;
