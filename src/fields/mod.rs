//! Org configs (key/value settings), custom fields (org-defined, per scope) with their values, and
//! extended fields (platform-defined, enabled per org), plus the validation other domains call for
//! the custom and extended fields of their entities.
//!
//! For other domains: [`store::config_value`] reads one config;
//! [`service::validate_extended_fields`] and [`service::validate_custom_fields`] check and
//! normalise the field values of an entity, failing with a [`service::FieldError`].

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
        .route("/v1.1/organization/configs", get(routes::v1_get_configs))
        .route("/v1.1/organization/customfields", get(routes::v1_list_custom_fields))
        .route("/v2/organization/configs", get(routes::v2_get_configs).post(routes::v2_set_configs))
        .route("/v2/organization/sources", get(routes::v2_org_sources))
        .route(
            "/v2/customFields",
            get(routes::v2_list_custom_fields).post(routes::v2_create_custom_fields),
        )
        .route("/v2/customField/tag", post(routes::v2_tag_custom_field))
        .route("/v2/orgEntity/customFields", get(routes::v2_entity_custom_fields))
        .route(
            "/v2/extendedFields",
            get(routes::v2_list_extended_fields).post(routes::v2_configure_extended_field),
        )
        .route("/v2/extendedFields/config", get(routes::v2_extended_field_config))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::v1_get_configs,
    routes::v1_list_custom_fields,
    routes::v2_set_configs,
    routes::v2_get_configs,
    routes::v2_org_sources,
    routes::v2_create_custom_fields,
    routes::v2_list_custom_fields,
    routes::v2_tag_custom_field,
    routes::v2_entity_custom_fields,
    routes::v2_configure_extended_field,
    routes::v2_list_extended_fields,
    routes::v2_extended_field_config,
))]
pub struct ApiDoc;
