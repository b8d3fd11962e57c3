//! Customers: profiles per source account, identifiers, loyalty type, status, and their v2 and
//! v1.1 APIs.

pub mod enrolment;
pub mod images;
pub mod model;
pub mod referrals;
pub mod routes_subscriptions;
pub mod routes_v1;
pub mod routes_v2;
pub mod service;
pub mod store;
pub mod subscriptions;

use axum::Router;
use axum::routing::{get, post, put};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/customers", post(routes_v2::add))
        .route("/v2/customers/search", get(routes_v2::search))
        .route("/v2/customers/lookup", get(routes_v2::lookup_id).put(routes_v2::lookup_update))
        .route("/v2/customers/lookup/customerDetails", get(routes_v2::lookup_details))
        .route("/v2/customers/lookup/status", put(routes_v2::lookup_status))
        .route("/v2/customers/lookup/referrals", get(routes_v2::lookup_referrals))
        .route("/v2/customers/{id}", get(routes_v2::get).put(routes_v2::update))
        .route("/v2/customers/{id}/statusLog", get(routes_v2::status_log))
        .route("/v2/customers/{id}/changeIdentifier", post(routes_v2::change_identifier))
        .merge(routes_v1::router())
        .merge(routes_subscriptions::router())
        .merge(images::router())
}

#[derive(OpenApi)]
#[openapi(paths(
    routes_v2::add,
    routes_v2::update,
    routes_v2::get,
    routes_v2::lookup_id,
    routes_v2::lookup_details,
    routes_v2::lookup_update,
    routes_v2::lookup_status,
    routes_v2::lookup_referrals,
    routes_v2::status_log,
    routes_v2::change_identifier,
    routes_v2::search,
))]
pub struct ApiDoc;
