//! HTTP plumbing shared by every domain: envelopes, extractors, the layer stack and its order.
//!
//! Layer order, outermost first: request id → trace span → envelope rendering → panic catcher →
//! body limit → (per route) metrics → authentication → rate limit → idempotency → envelope
//! rendering again (so that idempotency stores the final bytes) → handler.

pub mod envelope;
pub mod extract;
pub mod metrics;
pub mod principal;
pub mod ratelimit;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::{ApiError, Code};

/// The whole HTTP surface of Perks.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(crate::org::router())
        .merge(crate::customers::router())
        .merge(crate::fields::router())
        .merge(crate::labels::router())
        .merge(crate::transactions::router())
        .merge(crate::programs::router())
        .merge(crate::behavioral::router())
        .merge(crate::webhooks::router())
        .merge(crate::points::router())
        .merge(crate::loyalty::router())
        .merge(crate::currencies::router())
        .merge(crate::coupons::router())
        .merge(crate::comms::router())
        .merge(crate::audit::router())
        .merge(crate::staff::router())
        .merge(crate::tasks::router())
        .route_layer(from_fn(envelope::render_envelopes))
        .route_layer(from_fn_with_state(state.clone(), crate::idempotency::idempotent))
        .route_layer(from_fn_with_state(state.clone(), ratelimit::limit_rate))
        .route_layer(from_fn_with_state(state.clone(), principal::authenticate));
    let public = Router::new().merge(crate::auth::public_router()).merge(crate::ops::router());
    Router::new()
        .merge(protected)
        .merge(public)
        .route_layer(from_fn_with_state(state.clone(), metrics::record))
        .merge(crate::ops::docs_router())
        .fallback(unknown_path)
        .layer(DefaultBodyLimit::max(state.settings.body_limit_bytes))
        .layer(CatchPanicLayer::custom(|_panic| ApiError::new(Code::Internal).into_response()))
        .layer(from_fn(envelope::render_envelopes))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let request_id =
                request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(),
                request_id, org = tracing::field::Empty)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn unknown_path() -> Response {
    ApiError::with_message(Code::NotFound, "No such API path").into_response()
}
