//! Webhooks: outbound subscriptions that receive the domain events of the outbox as signed HTTP
//! POSTs (fan-out, leased deliveries, bounded retries, a circuit per subscription), their admin
//! API, the inbound integrations of Add Webhook, and the event notification logs.
//!
//! The worker that delivers lives in `jobs::webhooks`; this module holds the rules (`service`),
//! the SQL (`store`), one HTTP attempt (`deliver`) and the wire shapes (`routes`, `routes_logs`).

pub mod deliver;
pub mod model;
pub mod routes;
pub mod routes_logs;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::app::AppState;

/// The path of an inbound integration's URL before its `webhookId`: third parties post
/// behavioral events to `{base}/v2/events/webhook/{webhookId}` (Post Event).
pub const INBOUND_PATH_PREFIX: &str = "/v2/events/webhook/";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/x/perks/v1/webhooks", get(routes::list).post(routes::create))
        .route(
            "/x/perks/v1/webhooks/{id}",
            get(routes::get_one).put(routes::update).patch(routes::update).delete(routes::delete),
        )
        .route("/x/perks/v1/webhooks/{id}/rotateSecret", post(routes::rotate_secret))
        .route("/x/perks/v1/webhooks/{id}/replay", post(routes::replay))
        .route("/v2/events/webhook", post(routes::add_webhook))
        .route("/v3/events/logs", get(routes_logs::logs))
        .route("/v3/events/logs/{eventId}", get(routes_logs::event_log))
        .route("/v3/events/consumer-groups/{id}/logs", get(routes_logs::consumer_group_logs))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::list,
    routes::create,
    routes::get_one,
    routes::update,
    routes::rotate_secret,
    routes::delete,
    routes::replay,
    routes::add_webhook,
    routes_logs::logs,
    routes_logs::event_log,
    routes_logs::consumer_group_logs,
))]
pub struct ApiDoc;
