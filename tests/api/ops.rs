//! Health, readiness, metrics, the OpenAPI document and the docs UI.

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, request};
use axum::body::Body;
use axum::http::Method;

backend_tests!(
    health_and_readiness_answer,
    metrics_count_requests_by_route,
    openapi_lists_every_route
);

async fn health_and_readiness_answer(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let health = app.send(request(Method::GET, "/healthz").body(Body::empty()).unwrap()).await;
    health.assert_status(200);
    assert_eq!(health.json()["status"], "ok");
    let ready = app.send(request(Method::GET, "/readyz").body(Body::empty()).unwrap()).await;
    ready.assert_status(200);
    assert_eq!(ready.json()["status"], "ready");
    app.state.db.close().await;
    let closed = app.send(request(Method::GET, "/readyz").body(Body::empty()).unwrap()).await;
    closed.assert_status(503);
    assert_eq!(closed.v2_error_code(), 503);
}

async fn metrics_count_requests_by_route(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    app.get("/v1.1/organization/get", &app.basic()).await.assert_status(200);
    app.get("/v1.1/organization/get", "Basic bm9wZTpub3Bl").await.assert_status(401);
    let metrics = app.send(request(Method::GET, "/metrics").body(Body::empty()).unwrap()).await;
    metrics.assert_status(200);
    assert!(
        metrics.body.contains(
            "perks_http_requests_total{method=\"GET\",route=\"/v1.1/organization/get\",status=\"200\"} 1"
        ),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("route=\"/v1.1/organization/get\",status=\"401\"} 1"));
    assert!(metrics.body.contains("perks_http_request_duration_seconds_bucket"));
}

async fn openapi_lists_every_route(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let doc = app.send(request(Method::GET, "/openapi.json").body(Body::empty()).unwrap()).await;
    doc.assert_status(200);
    let paths = doc.json()["paths"].as_object().unwrap().clone();
    for path in [
        "/v3/oauth/token/generate",
        "/v1.1/organization/get",
        "/v1.1/organization/entities",
        "/v1.1/store/get",
        "/v1.1/store/login",
        "/v2/orgEntity/store",
        "/v2/orgEntity/store/bulk",
        "/v2/orgEntity/till",
        "/v2/orgEntity/till/{id}",
        "/v2/organization/till",
        "/v2/organization/till/{tillId}",
        "/v2/organization/tills",
        "/v2/organization/hierarchy",
        "/v2/locations",
        "/x/perks/v1/org",
        "/x/perks/v1/programs",
        "/x/perks/v1/programs/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }
    let docs = app.send(request(Method::GET, "/docs").body(Body::empty()).unwrap()).await;
    docs.assert_status(200);
    assert!(docs.body.contains("<html"), "docs UI is HTML");
}
