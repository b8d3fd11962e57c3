//! Operations endpoints: health, readiness, Prometheus metrics, the OpenAPI document and docs UI.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
}

/// The interactive API docs at `/docs` (stateless, so merged after the metrics layer).
pub fn docs_router() -> Router<AppState> {
    Router::new().merge(Scalar::with_url("/docs", openapi()))
}

/// `GET /healthz` — the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz` — the database answers; 503 when it does not.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "Ready"), (status = 503, description = "Database unavailable")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            crate::error::ApiError::with_message(
                crate::error::Code::Unavailable,
                "Database unavailable",
            )
            .into_response()
        }
    }
}

/// `GET /metrics` — Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Metrics")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /openapi.json` — the OpenAPI document generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi_json() -> Response {
    axum::Json(openapi()).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Perks", description = "Self-hostable loyalty engine with a Capillary-compatible API. \
        Tills use Basic auth (username:md5(password)); integrations use OAuth tokens \
        (X-CAP-API-OAUTH-TOKEN); the /x/perks admin API uses an admin token."),
    paths(healthz, readyz, metrics, openapi_json),
    modifiers(&SecuritySchemes),
    security(("basic" = []), ("oauth" = []), ("bearer" = []))
)]
struct BaseDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "oauth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-CAP-API-OAUTH-TOKEN"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The merged OpenAPI document of every domain.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = BaseDoc::openapi();
    doc.merge(crate::auth::ApiDoc::openapi());
    doc.merge(crate::org::ApiDoc::openapi());
    doc.merge(crate::customers::ApiDoc::openapi());
    doc.merge(crate::customers::routes_v1::ApiDoc::openapi());
    doc.merge(crate::customers::routes_subscriptions::ApiDoc::openapi());
    doc.merge(crate::fields::ApiDoc::openapi());
    doc.merge(crate::customers::images::ApiDoc::openapi());
    doc.merge(crate::labels::ApiDoc::openapi());
    doc.merge(crate::transactions::ApiDoc::openapi());
    doc.merge(crate::programs::ApiDoc::openapi());
    doc.merge(crate::behavioral::ApiDoc::openapi());
    doc.merge(crate::webhooks::ApiDoc::openapi());
    doc.merge(crate::points::ApiDoc::openapi());
    doc.merge(crate::loyalty::ApiDoc::openapi());
    doc.merge(crate::currencies::ApiDoc::openapi());
    doc.merge(crate::coupons::ApiDoc::openapi());
    doc.merge(crate::comms::ApiDoc::openapi());
    doc.merge(crate::audit::ApiDoc::openapi());
    doc.merge(crate::staff::ApiDoc::openapi());
    doc.merge(crate::tasks::ApiDoc::openapi());
    doc
}
