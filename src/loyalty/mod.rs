//! Customer loyalty views (loyalty details, tier details with the gaps to upgrade and renew,
//! loyalty events, trackers) read from the ledger's projection, and manual tier adjustment.

pub mod embeds;
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
        .route("/v2/customers/{id}/loyaltyDetails", get(routes::loyalty_details))
        .route("/v2/customers/lookup/loyaltyDetails", get(routes::lookup_loyalty_details))
        .route("/v2/customers/{id}/tierDetails", get(routes::tier_details))
        .route("/v2/customers/lookup/tierDetails", get(routes::lookup_tier_details))
        .route("/v2/customers/{id}/loyaltyEvents", get(routes::loyalty_events))
        .route("/v2/customers/{id}/trackers", get(routes::trackers))
        .route("/v2/slab/manualSlabAdjustment", post(routes::manual_slab_adjustment))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::loyalty_details,
    routes::lookup_loyalty_details,
    routes::tier_details,
    routes::lookup_tier_details,
    routes::loyalty_events,
    routes::trackers,
    routes::manual_slab_adjustment,
))]
pub struct ApiDoc;
