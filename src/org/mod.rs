//! The org hierarchy (org → concept/zone → store → till) and the org, store and till APIs.

pub mod model;
pub mod routes;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::{get, post, put};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.1/organization/get", get(routes::v1_org_get))
        .route("/v1.1/organization/entities", get(routes::v1_org_entities))
        .route("/v1.1/store/get", get(routes::v1_store_get))
        .route("/v1.1/store/login", get(routes::v1_store_login))
        .route("/v2/orgEntity/store", post(routes::v2_add_store))
        .route("/v2/orgEntity/store/bulk", post(routes::v2_add_stores_bulk))
        .route("/v2/orgEntity/till", post(routes::v2_add_till).get(routes::v2_list_tills))
        .route("/v2/orgEntity/till/{id}", put(routes::v2_update_till))
        .route("/v2/organization/till", get(routes::v2_till_lookup))
        .route("/v2/organization/till/{tillId}", get(routes::v2_till_by_id))
        .route("/v2/organization/tills", get(routes::v2_list_tills))
        .route("/v2/organization/hierarchy", get(routes::v2_hierarchy))
        .route("/v2/locations", get(routes::v2_locations))
        .route("/x/perks/v1/org", get(routes::admin_org))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::v1_org_get,
    routes::v1_org_entities,
    routes::v1_store_get,
    routes::v1_store_login,
    routes::v2_add_store,
    routes::v2_add_stores_bulk,
    routes::v2_add_till,
    routes::v2_update_till,
    routes::v2_till_by_id,
    routes::v2_till_lookup,
    routes::v2_list_tills,
    routes::v2_hierarchy,
    routes::v2_locations,
    routes::admin_org,
))]
pub struct ApiDoc;
