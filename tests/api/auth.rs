//! Authentication and authorisation: Basic tills, OAuth tokens, admin tokens, permissions, attribution.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, basic_header, request};

backend_tests!(
    basic_auth_accepts_the_md5_scheme,
    basic_auth_failures_are_401_in_the_envelope,
    password_change_takes_effect_immediately,
    deactivated_till_is_refused,
    oauth_token_works_in_every_header,
    oauth_rejects_bad_client_credentials,
    expired_and_forged_tokens_are_refused,
    missing_permission_is_403,
    admin_token_authenticates,
    attribution_headers_choose_the_acting_till,
);

async fn token(app: &TestApp) -> String {
    let response = app
        .send(
            request(Method::POST, "/v3/oauth/token/generate")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"key": app.org.oauth.client_key, "secret": app.org.oauth.client_secret})
                        .to_string(),
                ))
                .unwrap(),
        )
        .await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["errors"], Value::Null);
    assert_eq!(body["data"]["ttlSeconds"], 3600);
    body["data"]["accessToken"].as_str().unwrap().to_string()
}

async fn basic_auth_accepts_the_md5_scheme(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let response = app.get("/v1.1/organization/get", &app.basic()).await;
    response.assert_status(200);
    assert_eq!(response.json()["response"]["organization"]["id"], app.org.org_id);
    // The cached verification answers the same on the second call.
    app.get("/v1.1/organization/get", &app.basic()).await.assert_status(200);
    // Upper-case hex of the MD5 is the same credential.
    let md5 = perks::auth::password::md5_hex(&app.org.till.password).to_uppercase();
    let upper = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{md5}", app.org.till.username)
        )
    );
    app.get("/v1.1/organization/get", &upper).await.assert_status(200);
}

async fn basic_auth_failures_are_401_in_the_envelope(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let wrong_password = basic_header(&app.org.till.username, "not-the-password");
    let unknown_till = basic_header("no.such.till", &app.org.till.password);
    for auth in [
        wrong_password.as_str(),
        unknown_till.as_str(),
        "Basic !!!notbase64",
        "Basic Zm9v",
        "Token abc",
    ] {
        let v1 = app.get("/v1.1/organization/get", auth).await;
        v1.assert_status(401);
        assert_eq!(v1.v1_code(), 401);
        assert_eq!(
            v1.json()["response"]["status"]["message"],
            "Authentication failed. Please check username and password."
        );
        let v2 = app.get("/v2/organization/hierarchy", auth).await;
        v2.assert_status(401);
        assert_eq!(v2.v2_error_code(), 401);
    }
    let none = app
        .send(request(Method::GET, "/v2/organization/hierarchy").body(Body::empty()).unwrap())
        .await;
    none.assert_status(401);
    assert_eq!(none.v2_error_code(), 401);
}

async fn password_change_takes_effect_immediately(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let old = app.basic();
    app.get("/v1.1/organization/get", &old).await.assert_status(200);
    let uri = format!("/v2/orgEntity/till/{}", app.org.till_id);
    app.put_json(&uri, &app.admin(), &json!({"password": "brand-new-pass"}))
        .await
        .assert_status(200);
    app.get("/v1.1/organization/get", &old).await.assert_status(401);
    let new = basic_header(&app.org.till.username, "brand-new-pass");
    app.get("/v1.1/organization/get", &new).await.assert_status(200);
    let audit = app.audit(app.org.org_id, "TILL").await;
    assert_eq!(audit[0].action, "UPDATE");
    assert_eq!(audit[0].principal_type, "ADMIN");
    let after = audit[0].after_state.as_deref().unwrap_or("");
    assert!(after.contains("passwordChanged") && !after.contains("brand-new-pass"), "{after}");
}

async fn deactivated_till_is_refused(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let created = app
        .post_json(
            "/v2/orgEntity/till",
            &app.basic(),
            &json!({"name": "till.pos", "password": "pw-12345", "storeId": app.org.store_id}),
        )
        .await;
    created.assert_status(200);
    let id = created.json()["createdId"].as_i64().unwrap();
    let pos = basic_header("till.pos", "pw-12345");
    app.get("/v1.1/organization/get", &pos).await.assert_status(200);
    app.put_json(&format!("/v2/orgEntity/till/{id}"), &app.basic(), &json!({"isActive": false}))
        .await
        .assert_status(200);
    app.get("/v1.1/organization/get", &pos).await.assert_status(401);
}

async fn oauth_token_works_in_every_header(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let token = token(&app).await;
    for (name, value) in [
        ("x-cap-api-oauth-token", token.clone()),
        ("cap-api-access-token", token.clone()),
        ("authorization", format!("Bearer {token}")),
    ] {
        let response = app
            .send(
                request(Method::GET, "/v2/organization/hierarchy")
                    .header(name, value)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        response.assert_status(200);
        assert_eq!(response.json()["id"], app.org.org_id, "via {name}");
    }
    // The client's default till is the acting till.
    let login = app
        .send(
            request(Method::GET, "/v1.1/store/login")
                .header("x-cap-api-oauth-token", &token)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    login.assert_status(200);
    assert_eq!(
        login.json()["response"]["store"]["user"]["username"],
        app.org.till.username.as_str()
    );
}

async fn oauth_rejects_bad_client_credentials(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    for body in [
        json!({"key": app.org.oauth.client_key, "secret": "wrong"}),
        json!({"key": "unknown", "secret": app.org.oauth.client_secret}),
    ] {
        let response = app
            .send(
                request(Method::POST, "/v3/oauth/token/generate")
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        response.assert_status(401);
        let json = response.json();
        assert_eq!(json["data"], Value::Null);
        assert_eq!(json["errors"][0]["code"], 401);
    }
    let missing = app
        .send(
            request(Method::POST, "/v3/oauth/token/generate")
                .header("content-type", "application/json")
                .body(Body::from(json!({"key": "k"}).to_string()))
                .unwrap(),
        )
        .await;
    missing.assert_status(400);
    assert!(missing.json()["errors"][0]["message"].as_str().unwrap().contains("secret"));
}

async fn expired_and_forged_tokens_are_refused(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let good = token(&app).await;
    let claims: Value = {
        let payload = good.split('.').nth(1).unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let client_id = claims["client_id"].as_i64().unwrap();
    let expired = app
        .state
        .auth
        .issue_token(app.org.org_id, client_id, &app.org.oauth.client_key, -10)
        .unwrap();
    // Same header and claims, but signed with another key.
    let forged = {
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        parts.join(".")
    };
    // A token naming another org is refused too: its client does not belong to that org.
    let other = app.another_org("Other").await;
    let wrong_org =
        app.state.auth.issue_token(other.org_id, client_id, &app.org.oauth.client_key, 60).unwrap();
    for token in [expired, forged, wrong_org, "not.a.jwt".to_string()] {
        let response = app
            .send(
                request(Method::GET, "/v2/organization/hierarchy")
                    .header("x-cap-api-oauth-token", token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        response.assert_status(401);
        assert_eq!(response.v2_error_code(), 401);
    }
}

async fn missing_permission_is_403(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    app.post_json(
        "/v2/orgEntity/till",
        &app.basic(),
        &json!({"name": "till.reader", "password": "pw-1", "storeId": app.org.store_id}),
    )
    .await
    .assert_status(200);
    let pos = basic_header("till.reader", "pw-1");
    app.get("/v2/organization/hierarchy", &pos).await.assert_status(200);
    let denied = app
        .post_json(
            "/v2/orgEntity/till",
            &pos,
            &json!({"name": "till.other", "password": "pw", "storeId": app.org.store_id}),
        )
        .await;
    denied.assert_status(403);
    assert_eq!(denied.v2_error_code(), 403);
    // Nothing was written.
    let lookup = app.get("/v2/organization/till?code=till.other", &app.basic()).await;
    lookup.assert_status(404);
}

async fn admin_token_authenticates(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let response = app.get("/v2/organization/hierarchy", &app.admin()).await;
    response.assert_status(200);
    assert_eq!(response.json()["id"], app.org.org_id);
    app.get("/v2/organization/hierarchy", "Bearer perks_admin_wrong").await.assert_status(401);
}

async fn attribution_headers_choose_the_acting_till(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    app.post_json(
        "/v2/orgEntity/till",
        &app.basic(),
        &json!({"name": "till.second", "password": "pw-2", "storeId": app.org.store_id}),
    )
    .await
    .assert_status(200);
    let as_second = app
        .send(
            request(Method::GET, "/v1.1/store/login")
                .header("authorization", app.basic())
                .header("x-cap-api-attribution-lookup-type", "TILL")
                .header("x-cap-api-attribution-lookup", "till.second")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    as_second.assert_status(200);
    assert_eq!(as_second.json()["response"]["store"]["user"]["username"], "till.second");

    let without_type = app
        .send(
            request(Method::GET, "/v1.1/store/login")
                .header("authorization", app.basic())
                .header("x-cap-api-attribution-lookup", "till.second")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    without_type.assert_status(400);
    assert_eq!(without_type.v1_code(), 1061);

    let bad_type = app
        .send(
            request(Method::GET, "/v2/organization/hierarchy")
                .header("authorization", app.basic())
                .header("x-cap-api-attribution-lookup-type", "PLANET")
                .header("x-cap-api-attribution-lookup", "x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    bad_type.assert_status(400);
    assert_eq!(bad_type.v2_error_code(), 400);

    let unknown_store = app
        .send(
            request(Method::GET, "/v2/organization/hierarchy")
                .header("authorization", app.basic())
                .header("x-cap-api-attribution-entity-type", "STORE_CODE")
                .header("x-cap-api-attribution-entity-code", "no.such.store")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    unknown_store.assert_status(400);

    let by_store = app
        .send(
            request(Method::GET, "/v1.1/store/get")
                .header("authorization", app.basic())
                .header("x-cap-api-attribution-entity-type", "STORE_CODE")
                .header("x-cap-api-attribution-entity-code", "main.store")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    by_store.assert_status(200);
    assert_eq!(by_store.json()["response"]["stores"]["store"][0]["code"], "main.store");
}

backend_tests!(admin_api_takes_only_admin_tokens);

async fn admin_api_takes_only_admin_tokens(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let admin = app.get("/x/perks/v1/org", &app.admin()).await;
    admin.assert_status(200);
    assert_eq!(admin.json()["data"]["id"], app.org.org_id);
    assert_eq!(admin.json()["data"]["timezone"], "Asia/Kolkata");
    let till = app.get("/x/perks/v1/org", &app.basic()).await;
    till.assert_status(403);
    assert_eq!(till.v2_error_code(), 403);
    let other = app.another_org("Other").await;
    let theirs = app.get("/x/perks/v1/org", &format!("Bearer {}", other.admin_token)).await;
    assert_eq!(theirs.json()["data"]["id"], other.org_id, "an admin token sees only its own org");
    app.get("/x/perks/v1/org", "Bearer perks_admin_forged").await.assert_status(401);
}

backend_tests!(till_custom_fields_need_an_admin_till_unless_the_org_allows_all);

async fn till_custom_fields_need_an_admin_till_unless_the_org_allows_all(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let created = app
        .post_json(
            "/v2/orgEntity/till",
            &app.basic(),
            &json!({"name": "till.general", "password": "pw-9", "storeId": app.org.store_id, "accessGroup": "Admin"}),
        )
        .await;
    let id = created.json()["createdId"].as_i64().unwrap();
    let general = basic_header("till.general", "pw-9");
    let uri = format!("/v2/orgEntity/till/{id}");
    let fields = json!({"customFields": [{"name": "lane", "value": "3"}]});
    let refused = app.put_json(&uri, &general, &fields).await;
    refused.assert_status(403);
    assert_eq!(refused.v2_error_code(), 1209);
    // Other changes stay open to it, and the ADMIN till may change custom fields.
    app.put_json(&uri, &general, &json!({"description": "lane till"})).await.assert_status(200);
    app.put_json(&uri, &app.basic(), &fields).await.assert_status(200);
    let allow = json!({"keyName": "CONF_ALLOW_TILL_AUTH_FOR_ORG_ENTITY_CREATION", "value": "true"});
    app.post_json("/v2/organization/configs", &app.admin(), &allow).await.assert_status(200);
    app.put_json(&uri, &general, &json!({"customFields": [{"name": "lane", "value": "4"}]}))
        .await
        .assert_status(200);
    let till =
        app.get(&uri.replace("orgEntity/till", "organization/till"), &app.basic()).await.json();
    assert_eq!(till["customField"], json!([{"name": "lane", "value": "4"}]));
}
