//! Alternate currencies: the org's named reward currencies ("stars", "miles") that programs
//! award with earn rules like points, each one more dimension of the points ledger; the
//! `/x/perks/v1/currencies` admin API and currency redemption.

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
        .route("/x/perks/v1/currencies", get(routes::list).post(routes::create))
        .route("/x/perks/v1/currencies/{id}", get(routes::get_one).put(routes::replace))
}

#[derive(OpenApi)]
#[openapi(paths(routes::list, routes::create, routes::get_one, routes::replace))]
pub struct ApiDoc;
