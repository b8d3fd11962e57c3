//! Customer labels: the org's label catalogue, tagging customers with labels, and the label APIs.

pub mod model;
pub mod routes;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/organization/labels", post(routes::add_labels).get(routes::org_labels))
        .route("/v2/customers/labels/search", get(routes::search))
        .route("/v2/customers/{id}/changeLabels", post(routes::change_labels))
        .route("/v2/customers/{id}/labels", get(routes::customer_labels))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::add_labels,
    routes::org_labels,
    routes::change_labels,
    routes::customer_labels,
    routes::search,
))]
pub struct ApiDoc;
