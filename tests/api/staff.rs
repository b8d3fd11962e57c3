//! Staff accounts: add → OTP verification → access token → the token as a principal; edits,
//! password and identifier changes, transfers, lists, logout and removal; bad input with its
//! code and nothing written; org isolation; and the v1.1 store staff read.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, request};

backend_tests!(
    an_account_is_verified_by_otp_then_logs_in,
    the_token_acts_as_the_associate_and_ends_on_logout_or_password_change,
    bad_input_gets_its_code_and_writes_nothing,
    identifiers_change_only_with_an_otp_sent_to_the_new_value,
    transfer_list_and_remove,
    store_staff_lists_who_works_in_the_store,
    another_org_sees_no_staff,
);

pub const PASSWORD: &str = "s3cret-pass";

/// Sends a JSON request carrying a staff access token (and no other credentials).
pub async fn with_token(
    app: &TestApp,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<&Value>,
) -> TestResponse {
    let builder = request(method, uri).header("x-cap-api-access-token", token);
    let request = match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    };
    app.send(request).await
}

/// Adds an account (without identifiers, so it is active at once); its id.
pub async fn add_staff(app: &TestApp, username: &str, extra: Value) -> i64 {
    let mut body = json!({"username": username, "password": PASSWORD, "storeCode": "main.store",
        "firstname": "Ana", "lastname": username});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    if body.get("zoneCode").is_some() || body.get("ConceptCode").is_some() {
        body.as_object_mut().unwrap().remove("storeCode");
    }
    let response = app.post_json("/v2/staff", &app.admin(), &body).await;
    response.assert_status(200);
    let answer = response.json();
    assert_eq!(answer["success"], true, "{}", response.body);
    answer["entity"].as_i64().unwrap_or_else(|| panic!("no id: {}", response.body))
}

/// Logs an active account in; its access token.
pub async fn login(app: &TestApp, username: &str) -> String {
    let body = json!({"username": username, "password": PASSWORD});
    let response = app.post_json("/v2/staff/accessToken", &app.basic(), &body).await;
    response.assert_status(200);
    response.json()["accessToken"].as_str().unwrap().to_string()
}

/// The code in the latest OTP message sent to `address` (read from the comms message log).
async fn latest_code(app: &TestApp, address: &str) -> String {
    let mut conn = app.state.db.read().await.unwrap();
    let body: String = perks::dispatch!(&mut conn, |e| sqlx::query_scalar(
        "SELECT body FROM messages WHERE recipient = $1 AND purpose = 'OTP' ORDER BY id DESC LIMIT 1"
    )
    .bind(address)
    .fetch_one(e)
    .await)
    .unwrap();
    body.split_whitespace()
        .find(|w| {
            w.trim_end_matches('.').len() == 6
                && w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit())
        })
        .map(|w| w.trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("no code in {body}"))
}

async fn staff_count(app: &TestApp) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM staff")
        .fetch_one(e)
        .await)
    .unwrap()
}

async fn get_staff(app: &TestApp, auth: &str, id: i64) -> TestResponse {
    app.get(&format!("/v2/staff?id={id}"), auth).await
}

async fn an_account_is_verified_by_otp_then_logs_in(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let body = json!({"username": "George.Johnson0808", "password": PASSWORD,
        "mobile": "+91 98450 11111", "email": "George@Example.com", "storeCode": "main.store",
        "firstname": "George", "lastname": "Johnson", "title": "Cashier"});
    let added = app.post_json("/v2/staff", &app.admin(), &body).await;
    added.assert_status(200);
    let added = added.json();
    assert_eq!(added["success"], true);
    assert_eq!(added["errors"], json!([]));
    let id = added["entity"].as_i64().unwrap();

    let staff = get_staff(&app, &app.basic(), id).await;
    staff.assert_status(200);
    let staff = staff.json()["entity"].clone();
    assert_eq!(staff["username"], "george.johnson0808");
    assert_eq!(staff["mobile"], "919845011111");
    assert_eq!(staff["email"], "george@example.com");
    assert_eq!(staff["type"], "cashier", "a Cashier title makes a cashier");
    assert_eq!(staff["status"], "PENDING");
    assert_eq!(staff["storeCode"], "main.store");
    assert!(staff.get("password").is_none() && !staff.to_string().contains("argon2"));

    // Not verified yet: no token.
    let creds = json!({"username": "george.johnson0808", "password": PASSWORD});
    let refused = app.post_json("/v2/staff/accessToken", &app.basic(), &creds).await;
    refused.assert_status(401);
    assert_eq!(refused.v2_error_code(), 401);

    // One code per unverified identifier, through the communications module.
    let sent = app
        .post_json(
            "/v2/staff/sendOtp?otp=VERIFY",
            &app.basic(),
            &json!({"id": id, "username": "george.johnson0808"}),
        )
        .await;
    sent.assert_status(200);
    assert_eq!(sent.json()["sentTo"], json!(["MOBILE", "EMAIL"]));
    let mobile_code = latest_code(&app, "919845011111").await;
    let email_code = latest_code(&app, "george@example.com").await;

    let validate = |kind: &str, otp: &str, password: &str| {
        json!({"id": id, "username": "george.johnson0808", "identifierType": kind,
            "password": password, "otp": otp})
    };
    // A wrong code, and the right code with a wrong password, are refused.
    let wrong = if mobile_code == "000000" { "111111" } else { "000000" };
    let bad = app
        .post_json("/v2/staff/validateOtp", &app.basic(), &validate("MOBILE", wrong, PASSWORD))
        .await;
    bad.assert_status(400);
    let bad = app
        .post_json(
            "/v2/staff/validateOtp",
            &app.basic(),
            &validate("MOBILE", &mobile_code, "wrong-pass"),
        )
        .await;
    bad.assert_status(401);
    let ok = app
        .post_json(
            "/v2/staff/validateOtp",
            &app.basic(),
            &validate("MOBILE", &mobile_code, PASSWORD),
        )
        .await;
    ok.assert_status(200);
    assert_eq!(ok.json()["entity"]["mobileVerified"], true);
    assert_eq!(ok.json()["entity"]["status"], "PENDING", "the e-mail is still unverified");
    // A code works once.
    let again = app
        .post_json(
            "/v2/staff/validateOtp",
            &app.basic(),
            &validate("MOBILE", &mobile_code, PASSWORD),
        )
        .await;
    again.assert_status(400);
    let ok = app
        .post_json("/v2/staff/validateOtp", &app.basic(), &validate("EMAIL", &email_code, PASSWORD))
        .await;
    ok.assert_status(200);
    assert_eq!(ok.json()["entity"]["status"], "ACTIVE");

    let token = app.post_json("/v2/staff/accessToken", &app.basic(), &creds).await;
    token.assert_status(200);
    let token = token.json();
    assert!(token["accessToken"].as_str().unwrap().starts_with("perks_staff_"));
    assert_eq!(token["expiresIn"], 12 * 3600);
    assert_eq!(token["entity"], id);
    let wrong = json!({"username": "george.johnson0808", "password": "not-the-password"});
    app.post_json("/v2/staff/accessToken", &app.basic(), &wrong).await.assert_status(401);

    // Every write left an audit record, and the account's events went to the outbox.
    let audit = app.audit(app.org.org_id, "STAFF").await;
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    for action in ["CREATE", "SEND_OTP", "VERIFY_IDENTIFIER", "LOGIN"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    assert!(audit.iter().all(|r| !r.after_state.clone().unwrap_or_default().contains("argon2")));
}

async fn the_token_acts_as_the_associate_and_ends_on_logout_or_password_change(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let bob = add_staff(&app, "bob", json!({})).await;
    let token = login(&app, "ana").await;

    // The token alone authenticates, as ana.
    let own = with_token(&app, Method::GET, &format!("/v2/staff?id={ana}"), &token, None).await;
    own.assert_status(200);
    assert_eq!(own.json()["entity"]["username"], "ana");
    let edit = json!({"id": ana, "firstname": "Anabel", "title": "Floor lead"});
    let edited = with_token(&app, Method::POST, "/v2/staff/update", &token, Some(&edit)).await;
    edited.assert_status(200);
    assert_eq!(edited.json()["entity"]["firstname"], "Anabel");
    // … but not as anyone else, and never as an org admin.
    let other = json!({"id": bob, "firstname": "Mallory"});
    let refused = with_token(&app, Method::POST, "/v2/staff/update", &token, Some(&other)).await;
    refused.assert_status(403);
    let new = json!({"username": "eve", "password": PASSWORD, "storeCode": "main.store"});
    with_token(&app, Method::POST, "/v2/staff", &token, Some(&new)).await.assert_status(403);
    let audit_log = "/v2/auditLog/get?entityType=CUSTOMER&entityId=1";
    with_token(&app, Method::GET, audit_log, &token, None).await.assert_status(403);
    // Identifiers change only through changeIdentifier.
    let sneaky = json!({"id": ana, "mobile": "919845099999"});
    with_token(&app, Method::POST, "/v2/staff/update", &token, Some(&sneaky))
        .await
        .assert_status(400);
    // Attribution headers cannot move a staff token to another store.
    let attributed = app
        .send(
            request(Method::GET, "/v1.1/store/tasks")
                .header("x-cap-api-access-token", &token)
                .header("x-cap-api-attribution-lookup-type", "STORE_CODE")
                .header("x-cap-api-attribution-lookup", "main.store")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    attributed.assert_status(400);

    // A password change needs the old password and ends every earlier token.
    let second = login(&app, "ana").await;
    let change = json!({"id": ana, "username": "ana", "oldPassword": "wrong-password", "newPassword": "n3w-password"});
    with_token(&app, Method::POST, "/v2/staff/changePassword", &token, Some(&change))
        .await
        .assert_status(401);
    let change = json!({"id": ana, "username": "ana", "oldPassword": PASSWORD, "newPassword": "n3w-password"});
    with_token(&app, Method::POST, "/v2/staff/changePassword", &token, Some(&change))
        .await
        .assert_status(200);
    for old in [&token, &second] {
        let response =
            with_token(&app, Method::GET, &format!("/v2/staff?id={ana}"), old, None).await;
        response.assert_status(401);
    }
    let creds = json!({"username": "ana", "password": "n3w-password"});
    let fresh = app.post_json("/v2/staff/accessToken", &app.basic(), &creds).await;
    fresh.assert_status(200);
    let fresh = fresh.json()["accessToken"].as_str().unwrap().to_string();

    // Logout ends this token only.
    let other_session = {
        let response = app.post_json("/v2/staff/accessToken", &app.basic(), &creds).await;
        response.json()["accessToken"].as_str().unwrap().to_string()
    };
    with_token(&app, Method::GET, "/v2/staff/logout", &fresh, None).await.assert_status(200);
    with_token(&app, Method::GET, &format!("/v2/staff?id={ana}"), &fresh, None)
        .await
        .assert_status(401);
    with_token(&app, Method::GET, &format!("/v2/staff?id={ana}"), &other_session, None)
        .await
        .assert_status(200);
    // Logout without a staff token is a bad request, and a made-up token fails.
    app.get("/v2/staff/logout", &app.basic()).await.assert_status(400);
    with_token(&app, Method::GET, "/v2/staff/logout", "perks_staff_made_up", None)
        .await
        .assert_status(401);
}

async fn bad_input_gets_its_code_and_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_staff(&app, "taken", json!({"mobile": "919845022222"})).await;
    let before = staff_count(&app).await;
    let base = json!({"username": "newbie", "password": PASSWORD, "storeCode": "main.store"});
    let with = |k: &str, v: Value| {
        let mut body = base.clone();
        body[k] = v;
        body
    };
    let cases: Vec<(Value, u16, i64)> = vec![
        (with("username", json!("bad name!")), 400, 400),
        (with("username", json!("Taken")), 400, 1207),
        (with("password", json!("short")), 400, 400),
        (with("mobile", json!("12ab")), 400, 1001),
        (with("email", json!("not-an-email")), 400, 1002),
        (with("mobile", json!("+91 98450 22222")), 400, 400),
        (with("storeCode", json!("no.such.store")), 400, 1214),
        (with("zoneCode", json!("default.zone")), 400, 400),
        (with("type", json!("manager")), 400, 400),
        (json!({"password": PASSWORD, "storeCode": "main.store"}), 400, 400),
        (json!({"username": "nostore", "password": PASSWORD}), 400, 400),
    ];
    for (body, status, code) in cases {
        let response = app.post_json("/v2/staff", &app.admin(), &body).await;
        response.assert_status(status);
        assert_eq!(response.v2_error_code(), code, "{body}: {}", response.body);
    }
    // A POS till reads staff but cannot create them.
    let till = json!({"name": "pos.till", "password": "till-pass-1", "storeId": app.org.store_id});
    app.post_json("/v2/orgEntity/till", &app.basic(), &till).await.assert_status(200);
    let pos = crate::helpers::basic_header("pos.till", "till-pass-1");
    app.post_json("/v2/staff", &pos, &base).await.assert_status(403);
    assert_eq!(staff_count(&app).await, before, "nothing was written");
    // Unknown accounts and bad ids.
    get_staff(&app, &app.basic(), 999_999).await.assert_status(404);
    app.get("/v2/staff", &app.basic()).await.assert_status(400);
    let response = app.post_json("/v2/staff/update", &app.admin(), &json!({"id": "x1"})).await;
    response.assert_status(400);
    let response = app
        .post_json("/v2/staff/sendOtp", &app.basic(), &json!({"id": 1, "username": "taken"}))
        .await;
    response.assert_status(400);
    assert!(response.body.contains("otp"), "{}", response.body);
}

async fn identifiers_change_only_with_an_otp_sent_to_the_new_value(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    add_staff(&app, "bob", json!({"mobile": "919845033333"})).await;
    let token = login(&app, "ana").await;
    // Someone else's number is refused before any code is sent.
    let taken = json!({"id": ana, "identifierType": "MOBILE", "newValue": "919845033333"});
    with_token(&app, Method::POST, "/v2/staff/changeIdentifier/sendOtp", &token, Some(&taken))
        .await
        .assert_status(400);
    let change = json!({"id": ana, "identifierType": "MOBILE", "newValue": "+91 98450 44444"});
    with_token(&app, Method::POST, "/v2/staff/changeIdentifier/sendOtp", &token, Some(&change))
        .await
        .assert_status(200);
    let code = latest_code(&app, "919845044444").await;
    let wrong = json!({"id": ana, "identifierType": "MOBILE", "newValue": "919845044444",
        "otp": if code == "000000" { "111111" } else { "000000" }});
    with_token(&app, Method::POST, "/v2/staff/changeIdentifier/validateOtp", &token, Some(&wrong))
        .await
        .assert_status(400);
    // The code is for that value only.
    let other =
        json!({"id": ana, "identifierType": "MOBILE", "newValue": "919845055555", "otp": code});
    with_token(&app, Method::POST, "/v2/staff/changeIdentifier/validateOtp", &token, Some(&other))
        .await
        .assert_status(400);
    let right =
        json!({"id": ana, "identifierType": "MOBILE", "newValue": "919845044444", "otp": code});
    let changed = with_token(
        &app,
        Method::POST,
        "/v2/staff/changeIdentifier/validateOtp",
        &token,
        Some(&right),
    )
    .await;
    changed.assert_status(200);
    assert_eq!(changed.json()["entity"]["mobile"], "919845044444");
    assert_eq!(changed.json()["entity"]["mobileVerified"], true);
    assert_eq!(changed.json()["entity"]["status"], "ACTIVE");
    let audit = app.audit(app.org.org_id, "STAFF").await;
    assert!(audit.iter().any(|r| r.action == "CHANGE_IDENTIFIER"));
}

async fn transfer_list_and_remove(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let (zone, concept) = zone_and_concept(&app).await;
    let body = json!({"code": "second.store", "name": "Second store", "parentZoneId": zone,
        "parentConceptId": concept});
    app.post_json("/v2/orgEntity/store", &app.admin(), &body).await.assert_status(200);
    let ana = add_staff(&app, "ana", json!({})).await;
    add_staff(&app, "carl", json!({"type": "cashier"})).await;
    add_staff(&app, "zed", json!({"zoneCode": "default.zone"})).await;

    let list = app.get("/v2/staff/list?storeCode=main.store", &app.basic()).await;
    list.assert_status(200);
    let names: Vec<String> = list.json()["entity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["username"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ana", "carl", "zed"], "zone staff work in every store of the zone");
    let cashiers = app.get("/v2/staff/list?storeCode=main.store&type=cashier", &app.basic()).await;
    assert_eq!(cashiers.json()["pagination"]["total"], 1);
    let zone_list = app.get("/v2/staff/list?zoneCode=default.zone", &app.basic()).await;
    assert_eq!(zone_list.json()["entity"][0]["username"], "zed");
    app.get("/v2/staff/list?storeCode=nowhere", &app.basic()).await.assert_status(400);
    app.get("/v2/staff/list?limit=0", &app.basic()).await.assert_status(400);

    // Transfer: the account must be at fromStoreCode; toStoreCode must exist.
    let wrong = json!({"id": ana, "fromStoreCode": "second.store", "toStoreCode": "main.store"});
    app.post_json("/v2/staff/transfer", &app.admin(), &wrong).await.assert_status(400);
    let unknown = json!({"id": ana, "fromStoreCode": "main.store", "toStoreCode": "nowhere"});
    let response = app.post_json("/v2/staff/transfer", &app.admin(), &unknown).await;
    assert_eq!(response.v2_error_code(), 1214);
    let move_ana = json!({"id": ana, "fromStoreCode": "main.store", "toStoreCode": "second.store"});
    let moved = app.post_json("/v2/staff/transfer", &app.admin(), &move_ana).await;
    moved.assert_status(200);
    assert_eq!(moved.json()["entity"]["storeCode"], "second.store");
    let main = app.get("/v2/staff/list?storeCode=main.store", &app.basic()).await;
    assert_eq!(main.json()["pagination"]["total"], 2);

    // Removal ends the account's tokens and frees its username.
    let token = login(&app, "carl").await;
    let carl = app.get("/v2/staff?username=carl", &app.basic()).await.json()["entity"]["id"]
        .as_i64()
        .unwrap();
    let mismatch = json!({"id": carl, "username": "ana"});
    app.post_json("/v2/staff/remove", &app.admin(), &mismatch).await.assert_status(404);
    let remove = json!({"id": carl, "username": "carl"});
    app.post_json("/v2/staff/remove", &app.admin(), &remove).await.assert_status(200);
    with_token(&app, Method::GET, "/v2/staff/list", &token, None).await.assert_status(401);
    get_staff(&app, &app.basic(), carl).await.assert_status(404);
    let again = add_staff(&app, "carl", json!({})).await;
    assert_ne!(again, carl);
    let audit = app.audit(app.org.org_id, "STAFF").await;
    assert!(audit.iter().any(|r| r.action == "TRANSFER" && r.entity_id == ana));
    assert!(audit.iter().any(|r| r.action == "DELETE" && r.entity_id == carl));
}

async fn store_staff_lists_who_works_in_the_store(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_staff(&app, "ana", json!({"mobile": "919845066666"})).await;
    add_staff(&app, "carl", json!({"type": "cashier"})).await;
    add_staff(&app, "cyd", json!({"ConceptCode": "default.concept"})).await;
    let response = app.get("/v1.1/store/staff?format=json", &app.basic()).await;
    response.assert_status(200);
    let store = response.json()["response"]["store"].clone();
    assert_eq!(store["code"], "main.store");
    assert_eq!(store["staff"]["count"], 3);
    let users = store["staff"]["user"].as_array().unwrap();
    assert_eq!(users[0]["username"], "ana");
    assert_eq!(users[0]["mobile"], "919845066666");
    assert_eq!(users[0]["type"], "associate");
    assert_eq!(users[1]["type"], "cashier");
    let cashiers = app.get("/v1.1/store/staff?type=cashier", &app.basic()).await;
    assert_eq!(cashiers.json()["response"]["store"]["staff"]["count"], 1);
    let xml = app.get("/v1.1/store/staff?format=xml", &app.basic()).await;
    xml.assert_status(200);
    assert!(xml.body.contains("<user><id>"), "{}", xml.body);
    // A till reads its own store only; an unknown store is refused.
    let response = app.get("/v1.1/store/staff?store_id=999999", &app.basic()).await;
    response.assert_status(400);
    assert_eq!(response.v1_code(), 400);
}

async fn another_org_sees_no_staff(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let other = app.another_org("Beta").await;
    let beta = format!("Bearer {}", other.admin_token);
    get_staff(&app, &beta, ana).await.assert_status(404);
    app.get("/v2/staff?username=ana", &beta).await.assert_status(404);
    let list = app.get("/v2/staff/list?storeCode=main.store", &beta).await;
    list.assert_status(200);
    assert_eq!(list.json()["pagination"]["total"], 0);
    // The same username in the other org is another account, with its own password.
    let body = json!({"username": "ana", "password": "beta-password", "storeCode": "main.store"});
    app.post_json("/v2/staff", &beta, &body).await.assert_status(200);
    let creds = json!({"username": "ana", "password": PASSWORD});
    app.post_json("/v2/staff/accessToken", &beta, &creds).await.assert_status(401);
    let remove = json!({"id": ana});
    app.post_json("/v2/staff/remove", &beta, &remove).await.assert_status(404);
    get_staff(&app, &app.basic(), ana).await.assert_status(200);
}

/// The id of the org's zone and concept, read through the entities API.
pub async fn zone_and_concept(app: &TestApp) -> (i64, i64) {
    let first = |query: &str| {
        let query = query.to_string();
        async move {
            let response = app
                .get(&format!("/v1.1/organization/entities?{query}&format=json"), &app.basic())
                .await;
            response.assert_status(200);
            response.json()["response"]["organization"]["entities"]["entity"][0]["id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{}", response.body))
        }
    };
    (first("type=ZONE").await, first("type=CONCEPT").await)
}
