//! `Idempotency-Key`: replay, mismatch, scoping and validation.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, request};

backend_tests!(
    same_key_and_body_replays_without_acting_twice,
    same_key_with_another_body_is_422,
    keys_are_scoped_per_api_key,
    client_errors_are_replayed_too,
    invalid_keys_are_400,
);

async fn post_keyed(app: &TestApp, auth: &str, key: &str, body: &Value) -> TestResponse {
    app.send(
        request(Method::POST, "/v2/orgEntity/till")
            .header("authorization", auth)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

async fn till_count(app: &TestApp) -> i64 {
    app.get("/v2/organization/tills?limit=100", &app.basic()).await.json()["pagination"]["total"]
        .as_i64()
        .unwrap()
}

async fn same_key_and_body_replays_without_acting_twice(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let body = json!({"name": "till.once", "password": "pw-1", "storeId": app.org.store_id});
    let first = post_keyed(&app, &app.basic(), "key-1", &body).await;
    first.assert_status(200);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let second = post_keyed(&app, &app.basic(), "key-1", &body).await;
    second.assert_status(200);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(second.json(), first.json());
    assert_eq!(till_count(&app).await, 2, "the default till and exactly one new till");
    assert_eq!(app.audit(app.org.org_id, "TILL").await.len(), 1, "one write, one audit record");
}

async fn same_key_with_another_body_is_422(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let body = json!({"name": "till.first", "password": "pw-1", "storeId": app.org.store_id});
    post_keyed(&app, &app.basic(), "key-2", &body).await.assert_status(200);
    let other = json!({"name": "till.other", "password": "pw-1", "storeId": app.org.store_id});
    let response = post_keyed(&app, &app.basic(), "key-2", &other).await;
    response.assert_status(422);
    assert_eq!(response.v2_error_code(), 422);
    assert_eq!(till_count(&app).await, 2);
}

async fn keys_are_scoped_per_api_key(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let a = json!({"name": "till.a", "password": "pw", "storeId": app.org.store_id});
    let b = json!({"name": "till.b", "password": "pw", "storeId": app.org.store_id});
    post_keyed(&app, &app.basic(), "shared", &a).await.assert_status(200);
    // The admin token is another API key: the same key value is a different request.
    post_keyed(&app, &app.admin(), "shared", &b).await.assert_status(200);
    assert_eq!(till_count(&app).await, 3);
}

async fn client_errors_are_replayed_too(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    // A 4xx answer is stored and replayed like any other; only 5xx answers release the key.
    let bad = json!({"name": "till.bad", "password": "pw", "storeId": 999_999});
    let first = post_keyed(&app, &app.basic(), "key-4", &bad).await;
    first.assert_status(400);
    assert_eq!(first.v2_error_code(), 1214);
    let again = post_keyed(&app, &app.basic(), "key-4", &bad).await;
    again.assert_status(400);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json(), first.json());
}

async fn invalid_keys_are_400(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let body = json!({"name": "till.k", "password": "pw", "storeId": app.org.store_id});
    let long = "k".repeat(256);
    let response = post_keyed(&app, &app.basic(), &long, &body).await;
    response.assert_status(400);
    assert_eq!(response.v2_error_code(), 400);
    assert_eq!(till_count(&app).await, 1);
}
