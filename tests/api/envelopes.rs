//! Envelopes for every kind of bad input, XML output, unknown paths, wrong methods and rate limits.

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::from_fn;
use axum::routing::post;
use perks::error::ApiError;
use perks::http::envelope::{V1Reply, render_envelopes};
use perks::http::extract::V1Body;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, request};

backend_tests!(
    malformed_json_is_400_in_the_v2_envelope,
    wrong_content_type_is_415,
    unknown_paths_and_wrong_methods_get_envelopes,
    oversized_bodies_are_413,
    bad_query_and_path_values_are_400,
    v1_answers_in_xml_when_asked,
    rate_limit_answers_429_with_retry_after,
);

async fn malformed_json_is_400_in_the_v2_envelope(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    for body in ["{not json", "", "[1, 2", "{\"code\": 5}"] {
        let response = app
            .send(
                request(Method::POST, "/v2/orgEntity/store")
                    .header("authorization", app.basic())
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        response.assert_status(400);
        let json = response.json();
        assert_eq!(json["errors"][0]["code"], 400, "{body}");
        assert_eq!(json["errors"][0]["status"], false);
        assert!(!json["errors"][0]["message"].as_str().unwrap().is_empty());
    }
    let stores = app.get("/v2/locations", &app.basic()).await;
    assert_eq!(stores.json()["pagination"]["total"], 1, "no store was written");
}

async fn wrong_content_type_is_415(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut builder =
            request(Method::POST, "/v2/orgEntity/till").header("authorization", app.basic());
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let response = app.send(builder.body(Body::from("name=x")).unwrap()).await;
        response.assert_status(415);
        assert_eq!(response.v2_error_code(), 415);
    }
}

async fn unknown_paths_and_wrong_methods_get_envelopes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let v2 = app.get("/v2/no/such/thing", &app.basic()).await;
    v2.assert_status(404);
    assert_eq!(v2.v2_error_code(), 404);
    let v1 = app.get("/v1.1/no/such/thing", &app.basic()).await;
    v1.assert_status(404);
    assert_eq!(v1.v1_code(), 404);
    assert_eq!(v1.json()["response"]["status"]["success"], "false");
    let v1_xml = app.get("/v1.1/no/such/thing?format=xml", &app.basic()).await;
    v1_xml.assert_status(404);
    assert!(v1_xml.body.contains("<code>404</code>"), "{}", v1_xml.body);
    let wrong_method = app
        .send(
            request(Method::DELETE, "/v2/organization/hierarchy")
                .header("authorization", app.basic())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    wrong_method.assert_status(405);
    assert_eq!(wrong_method.v2_error_code(), 405);
}

async fn oversized_bodies_are_413(backend: Backend) {
    let Some(app) = TestApp::with_settings(backend, |s| s.body_limit_bytes = 512).await else {
        return;
    };
    let big = json!({"code": "big", "name": "Big", "parentZoneId": 1, "parentConceptId": 1, "description": "x".repeat(2048)});
    let response = app.post_json("/v2/orgEntity/store", &app.basic(), &big).await;
    response.assert_status(413);
    assert_eq!(response.v2_error_code(), 413);
    // Also when the idempotency layer reads the body first.
    let keyed = app
        .send(
            request(Method::POST, "/v2/orgEntity/store")
                .header("authorization", app.basic())
                .header("content-type", "application/json")
                .header("idempotency-key", "big-1")
                .body(Body::from(big.to_string()))
                .unwrap(),
        )
        .await;
    keyed.assert_status(413);
    assert_eq!(keyed.v2_error_code(), 413);
}

async fn bad_query_and_path_values_are_400(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let query = app.get("/v2/organization/tills?limit=lots", &app.basic()).await;
    query.assert_status(400);
    assert_eq!(query.v2_error_code(), 400);
    let v1_query =
        app.get("/v1.1/organization/entities?type=STORE&start_id=abc", &app.basic()).await;
    v1_query.assert_status(400);
    assert_eq!(v1_query.v1_code(), 400);
    let path = app.get("/v2/organization/till/not-a-number", &app.basic()).await;
    path.assert_status(400);
    assert_eq!(path.v2_error_code(), 400);
}

async fn v1_answers_in_xml_when_asked(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let by_format = app.get("/v1.1/organization/get?format=xml", &app.basic()).await;
    by_format.assert_status(200);
    assert_eq!(by_format.headers["content-type"], "application/xml");
    assert!(by_format.body.starts_with("<?xml"));
    assert!(by_format.body.contains("<name>Acme</name>"), "{}", by_format.body);
    assert!(by_format.body.contains("<status><success>true</success><code>200</code>"));
    let by_accept = app
        .send(
            request(Method::GET, "/v1.1/organization/get")
                .header("authorization", app.basic())
                .header("accept", "application/xml")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(by_accept.body.contains("<base_currency>INR</base_currency>"));
    let json = app.get("/v1.1/organization/get?format=json", &app.basic()).await;
    assert_eq!(json.json()["response"]["organization"]["name"], "Acme");
    let failed = app.get("/v1.1/organization/get?format=xml", "Basic Zm9vOmJhcg==").await;
    failed.assert_status(401);
    assert!(failed.body.contains("<success>false</success>"));
}

async fn rate_limit_answers_429_with_retry_after(backend: Backend) {
    let Some(app) = TestApp::with_settings(backend, |s| s.rate_limit.default_rpm = 3).await else {
        return;
    };
    for _ in 0..3 {
        app.get("/v2/organization/hierarchy", &app.basic()).await.assert_status(200);
    }
    let limited = app.get("/v2/organization/hierarchy", &app.basic()).await;
    limited.assert_status(429);
    assert_eq!(limited.v2_error_code(), 429);
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let v1 = {
        for _ in 0..3 {
            app.get("/v1.1/organization/get", &app.basic()).await.assert_status(200);
        }
        app.get("/v1.1/organization/get", &app.basic()).await
    };
    v1.assert_status(429);
    assert_eq!(v1.v1_code(), 429);
    // Another API key has its own budget.
    app.get("/v2/organization/hierarchy", &app.admin()).await.assert_status(200);
}

fn echo_router() -> Router {
    async fn echo(V1Body(body): V1Body<Value>) -> Result<V1Reply, ApiError> {
        V1Reply::ok("echo", body)
    }
    Router::new()
        .route("/v1.1/echo", post(echo))
        .layer(DefaultBodyLimit::max(256))
        .layer(from_fn(render_envelopes))
}

async fn call_echo(content_type: &str, body: &str) -> (u16, String) {
    let response = echo_router()
        .oneshot(
            request(Method::POST, "/v1.1/echo")
                .header("content-type", content_type)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn v1_bodies_accept_json_and_xml_and_refuse_malformed_ones() {
    let (status, body) =
        call_echo("application/xml", "<root><customer><mobile>91</mobile></customer></root>").await;
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["response"]["echo"]["root"]["customer"]["mobile"], "91");

    let (status, body) = call_echo("application/xml", "<root><customer></root>").await;
    assert_eq!(status, 400, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["response"]["status"]["code"], 400);
    assert!(json["response"]["status"]["message"].as_str().unwrap().contains("XML"));

    let (status, _) = call_echo("application/json", "{\"root\": ").await;
    assert_eq!(status, 400);
    let (status, _) = call_echo("text/csv", "a,b").await;
    assert_eq!(status, 415);
    let (status, body) =
        call_echo("application/json", &format!("{{\"a\": \"{}\"}}", "x".repeat(400))).await;
    assert_eq!(status, 413, "{body}");
}
