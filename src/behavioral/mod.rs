//! Behavioral events: the org's custom event definitions (typed fields, actions), events posted
//! against them (validated, stored, de-duplicated, raised as `behavioral.event` in the outbox),
//! and their reads: by request id, by customer, logs, search and running status.

pub mod check;
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
        .route("/v2/events", post(routes::create).put(routes::update).get(routes::list))
        .route("/v2/events/meta", get(routes::meta))
        .route("/v2/events/disable", put(routes::disable))
        .route("/v2/events/running_status", get(routes::running_status))
        .route("/v2/events/event_data", get(routes::event_data).post(routes::post_event))
        .route("/v2/events/event_data/{userId}", get(routes::customer_events))
        .route("/v2/events/webhook/{webhookId}", post(routes::post_through_webhook))
        .route("/v2/events/logs", get(routes::logs))
        .route("/v2/events/search", get(routes::search))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::create,
    routes::update,
    routes::list,
    routes::meta,
    routes::disable,
    routes::running_status,
    routes::post_event,
    routes::post_through_webhook,
    routes::event_data,
    routes::customer_events,
    routes::logs,
    routes::search,
))]
pub struct ApiDoc;
