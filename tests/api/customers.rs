//! v2 customers: registration as upsert across sources, updates, lookups, status, search,
//! identifier changes and org isolation.

use axum::body::Body;
use axum::http::Method;
use perks::org::model::OrgId;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header, request};

backend_tests!(
    add_then_get_shows_the_normalised_customer,
    adding_a_known_customer_updates_it_with_a_warning,
    another_source_joins_the_same_customer,
    bad_registrations_get_their_codes_and_write_nothing,
    update_changes_attributes_but_never_downgrades,
    lookups_resolve_identifiers,
    status_changes_are_logged,
    search_finds_prefixes_of_names_mobiles_emails_and_external_ids,
    change_identifier_adds_and_removes,
    customers_are_isolated_between_orgs,
);

/// An app whose org uses the extended fields `city` and `gender` and the custom fields
/// `favourite` and `size`, as the bodies below do.
async fn setup(backend: Backend) -> Option<TestApp> {
    let app = TestApp::new(backend).await?;
    app.enable_fields(&["city", "gender"], &["favourite", "size"]).await;
    Some(app)
}

fn ana() -> Value {
    json!({"profiles": [{"firstName": "Ana", "lastName": "Silva", "identifiers": [
        {"type": "mobile", "value": "+91 98450 00001"},
        {"type": "email", "value": "Ana@Example.com"},
        {"type": "externalId", "value": "EXT-1"}
    ], "fields": {"favourite": "tea"}}], "loyaltyInfo": {"loyaltyType": "loyalty"},
    "extendedFields": {"city": "Pune"}})
}

async fn add(app: &TestApp, body: &Value) -> TestResponse {
    app.post_json("/v2/customers", &app.basic(), body).await
}

#[track_caller]
fn created_id(response: &TestResponse) -> i64 {
    response.assert_status(200);
    response.json()["createdId"].as_i64().unwrap()
}

async fn customer_count(app: &TestApp, org: i64) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    let (_, total) = perks::customers::store::search(
        &mut conn,
        OrgId(org),
        &[perks::customers::store::SearchTarget::Name(String::new())],
        1,
        0,
    )
    .await
    .unwrap();
    total
}

async fn add_then_get_shows_the_normalised_customer(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let response = add(&app, &ana()).await;
    let id = created_id(&response);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["sideEffects"], json!([]));

    let got = app.get(&format!("/v2/customers/{id}?source=INSTORE"), &app.basic()).await;
    got.assert_status(200);
    let customer = got.json();
    assert_eq!(customer["id"], id);
    let profile = &customer["profiles"][0];
    assert_eq!(profile["firstName"], "Ana");
    assert_eq!(profile["source"], "INSTORE");
    assert_eq!(profile["userId"], id);
    assert_eq!(profile["fields"]["favourite"], "tea");
    assert_eq!(profile["attribution"]["createdBy"]["code"], app.org.till.username.as_str());
    let identifiers = profile["identifiers"].as_array().unwrap();
    assert!(identifiers.contains(&json!({"type": "mobile", "value": "919845000001"})));
    assert!(identifiers.contains(&json!({"type": "email", "value": "ana@example.com"})));
    assert!(identifiers.contains(&json!({"type": "externalId", "value": "EXT-1"})));
    assert_eq!(customer["loyaltyInfo"]["loyaltyType"], "loyalty");
    assert_eq!(customer["extendedFields"]["city"], "Pune");

    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "CREATE");
    let mut conn = app.state.db.read().await.unwrap();
    let events =
        perks::events::store::for_entity(&mut conn, OrgId(app.org.org_id), "CUSTOMER", id, 10)
            .await
            .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "customer.created");
    let log = app.get(&format!("/v2/customers/{id}/statusLog"), &app.basic()).await;
    log.assert_status(200);
    assert_eq!(log.json()["data"][0]["status"], "ACTIVE");
}

async fn adding_a_known_customer_updates_it_with_a_warning(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = created_id(&add(&app, &ana()).await);
    let again = json!({"profiles": [{"firstName": "Anabel", "identifiers": [
        {"type": "mobile", "value": "919845000001"},
        {"type": "email", "value": "new@example.com"}
    ]}]});
    let response = add(&app, &again).await;
    assert_eq!(created_id(&response), id);
    assert_eq!(response.json()["warnings"][0]["code"], 1014);
    let customer = app.get(&format!("/v2/customers/{id}"), &app.basic()).await.json();
    assert_eq!(customer["profiles"][0]["firstName"], "Anabel");
    let identifiers = customer["profiles"][0]["identifiers"].as_array().unwrap().clone();
    assert!(!identifiers.contains(&json!({"type": "email", "value": "new@example.com"})));
    assert!(identifiers.contains(&json!({"type": "email", "value": "ana@example.com"})));
    assert_eq!(customer_count(&app, app.org.org_id).await, 1);
}

async fn another_source_joins_the_same_customer(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = created_id(&add(&app, &ana()).await);
    let online = json!({"profiles": [{"firstName": "Ana", "source": "ECOMMERCE",
        "identifiers": [{"type": "email", "value": "ana@example.com"}]}]});
    assert_eq!(created_id(&add(&app, &online).await), id);
    let wechat = json!({"profiles": [{"firstName": "Ana", "source": "WECHAT", "accountId": "wx-1",
        "identifiers": [{"type": "mobile", "value": "919845000001"}, {"type": "wechat", "value": "oAna"}]}]});
    assert_eq!(created_id(&add(&app, &wechat).await), id);
    let all = app.get(&format!("/v2/customers/{id}?source=ALL"), &app.basic()).await.json();
    let sources: Vec<&str> =
        all["profiles"].as_array().unwrap().iter().map(|p| p["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["INSTORE", "ECOMMERCE", "WECHAT"]);
    let only = app
        .get(&format!("/v2/customers/{id}?source=WECHAT&accountId=wx-1"), &app.basic())
        .await
        .json();
    assert_eq!(only["profiles"].as_array().unwrap().len(), 1);
    assert_eq!(only["profiles"][0]["accountId"], "wx-1");
    // A source the customer has no profile in is "not found" for that source.
    let missing = app.get(&format!("/v2/customers/{id}?source=LINE"), &app.basic()).await;
    missing.assert_status(404);
    assert_eq!(missing.v2_error_code(), 8015);
    assert_eq!(customer_count(&app, app.org.org_id).await, 1);
}

async fn bad_registrations_get_their_codes_and_write_nothing(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    created_id(
        &add(
            &app,
            &json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "919800000001"}]}]}),
        )
        .await,
    );
    created_id(
        &add(
            &app,
            &json!({"profiles": [{"identifiers": [{"type": "email", "value": "b@x.com"}]}]}),
        )
        .await,
    );
    let cases: Vec<(Value, i64)> = vec![
        (json!({"profiles": []}), 400),
        (json!({}), 400),
        (json!({"profiles": [{"identifiers": [{"type": "wechat", "value": "w1"}]}]}), 1007),
        (json!({"profiles": [{"identifiers": []}]}), 1007),
        (json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "12ab"}]}]}), 1001),
        (
            json!({"profiles": [{"identifiers": [{"type": "email", "value": "not-an-email"}]}]}),
            1002,
        ),
        (json!({"profiles": [{"identifiers": [{"type": "externalId", "value": " "}]}]}), 1003),
        (json!({"profiles": [{"identifiers": [{"type": "shoeSize", "value": "9"}]}]}), 400),
        (
            json!({"profiles": [{"source": "MOON", "identifiers": [{"type": "email", "value": "c@x.com"}]}]}),
            8003,
        ),
        (
            json!({"profiles": [{"source": "WECHAT", "identifiers": [{"type": "email", "value": "c@x.com"}]}]}),
            8003,
        ),
        (
            json!({"profiles": [{"source": "INSTORE", "accountId": "a1", "identifiers": [{"type": "email", "value": "c@x.com"}]}]}),
            8003,
        ),
        (
            json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "919800000001"}, {"type": "email", "value": "b@x.com"}]}]}),
            1016,
        ),
        (
            json!({"profiles": [{"identifiers": [{"type": "email", "value": "c@x.com"}]}], "loyaltyInfo": {"loyaltyType": "gold"}}),
            400,
        ),
        (
            json!({"profiles": [{"identifiers": [{"type": "email", "value": "c@x.com"}], "fields": {"a": [1, 2]}}]}),
            400,
        ),
        (
            json!({"profiles": [{"identifiers": [{"type": "email", "value": "c@x.com"}], "commChannels": [{"type": "pigeon", "value": "x"}]}]}),
            400,
        ),
        (
            json!({"profiles": [{"firstName": "x".repeat(101), "identifiers": [{"type": "email", "value": "c@x.com"}]}]}),
            400,
        ),
    ];
    for (body, code) in cases {
        let response = add(&app, &body).await;
        assert!(response.status.is_client_error(), "{body}: {}", response.body);
        assert_eq!(response.v2_error_code(), code, "{body}");
    }
    let bad_query = app.post_json("/v2/customers?source=NOPE", &app.basic(), &ana()).await;
    assert_eq!(bad_query.v2_error_code(), 8003);
    assert_eq!(customer_count(&app, app.org.org_id).await, 2, "nothing else was written");
    assert_eq!(app.audit(app.org.org_id, "CUSTOMER").await.len(), 2);
}

async fn update_changes_attributes_but_never_downgrades(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let body = json!({"profiles": [{"firstName": "Bo", "identifiers": [{"type": "mobile", "value": "919800000002"}]}],
        "loyaltyInfo": {"loyaltyType": "non_loyalty"}});
    let id = created_id(&add(&app, &body).await);
    let uri = format!("/v2/customers/{id}?source=INSTORE");
    let update = json!({"profiles": [{"firstName": "Bob", "lastName": "Stone", "fields": {"size": "M"},
        "identifiers": [{"type": "mobile", "value": "919899999999"}]}],
        "extendedFields": {"gender": "male"}, "loyaltyInfo": {"loyaltyType": "loyalty"}});
    let response = app.put_json(&uri, &app.basic(), &update).await;
    response.assert_status(200);
    assert_eq!(response.json()["createdId"], id);
    let customer = app.get(&format!("/v2/customers/{id}"), &app.basic()).await.json();
    assert_eq!(customer["profiles"][0]["firstName"], "Bob");
    assert_eq!(customer["profiles"][0]["lastName"], "Stone");
    assert_eq!(customer["profiles"][0]["fields"]["size"], "M");
    assert_eq!(
        customer["extendedFields"]["gender"], "Male",
        "enum values take the catalogue spelling"
    );
    let unknown_field =
        app.put_json(&uri, &app.basic(), &json!({"extendedFields": {"zip": "1"}})).await;
    unknown_field.assert_status(400);
    assert_eq!(customer["loyaltyInfo"]["loyaltyType"], "loyalty");
    assert_eq!(
        customer["profiles"][0]["identifiers"],
        json!([{"type": "mobile", "value": "919800000002"}]),
        "identifiers unchanged"
    );

    let downgrade = app
        .put_json(&uri, &app.basic(), &json!({"loyaltyInfo": {"loyaltyType": "non_loyalty"}}))
        .await;
    downgrade.assert_status(400);
    assert_eq!(downgrade.v2_error_code(), 400);
    let unknown = app.put_json("/v2/customers/999999?source=INSTORE", &app.basic(), &update).await;
    unknown.assert_status(404);
    assert_eq!(unknown.v2_error_code(), 8015);
    let wrong_source =
        app.put_json(&format!("/v2/customers/{id}?source=ECOMMERCE"), &app.basic(), &update).await;
    assert_eq!(wrong_source.v2_error_code(), 8003);
    let bad_id = app.put_json("/v2/customers/abc", &app.basic(), &update).await;
    bad_id.assert_status(400);
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert_eq!(
        audit.iter().filter(|a| a.action == "UPDATE").count(),
        1,
        "failed updates leave no audit"
    );
}

async fn lookups_resolve_identifiers(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = created_id(&add(&app, &ana()).await);
    let found = app.get("/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=919845000001", &app.basic()).await;
    found.assert_status(200);
    assert_eq!(found.json(), json!({"id": id, "warnings": []}));
    // A national number completed by the country-code header.
    let national = app
        .send(
            request(Method::GET, "/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=9845000001")
                .header("authorization", app.basic())
                .header("x-cap-client-countrycode", "91")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(national.json()["id"], id);
    let both = app.get("/v2/customers/lookup?source=INSTORE&identifierName=email,externalId&identifierValue=ANA@example.com,EXT-1", &app.basic()).await;
    assert_eq!(both.json()["id"], id);
    let details = app.get("/v2/customers/lookup/customerDetails?source=INSTORE&identifierName=externalId&identifierValue=EXT-1&embed=customerStatus", &app.basic()).await;
    details.assert_status(200);
    assert_eq!(details.json()["id"], id);
    assert_eq!(details.json()["customerStatus"]["status"], "ACTIVE");

    let update = app
        .put_json("/v2/customers/lookup?source=INSTORE&identifierName=email&identifierValue=ana@example.com", &app.basic(),
            &json!({"profiles": [{"lastName": "Costa"}]}))
        .await;
    update.assert_status(200);
    assert_eq!(
        app.get(&format!("/v2/customers/{id}"), &app.basic()).await.json()["profiles"][0]["lastName"],
        "Costa"
    );

    for (uri, code) in [
        (
            "/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=919800009999",
            8015,
        ),
        ("/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=abc", 8015),
        (
            "/v2/customers/lookup?source=ECOMMERCE&identifierName=mobile&identifierValue=919845000001",
            8015,
        ),
        ("/v2/customers/lookup?source=INSTORE&identifierName=shoe&identifierValue=1", 8013),
        (
            "/v2/customers/lookup?source=INSTORE&identifierName=mobile,email&identifierValue=919845000001",
            8013,
        ),
        ("/v2/customers/lookup?source=INSTORE", 8013),
        (
            "/v2/customers/lookup?source=MARS&identifierName=mobile&identifierValue=919845000001",
            8003,
        ),
    ] {
        let response = app.get(uri, &app.basic()).await;
        assert_eq!(response.v2_error_code(), code, "{uri}: {}", response.body);
    }
}

async fn status_changes_are_logged(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = created_id(&add(&app, &ana()).await);
    let uri = "/v2/customers/lookup/status?source=INSTORE&identifierName=mobile&identifierValue=919845000001";
    let response = app
        .put_json(uri, &app.basic(), &json!({"reason": "Odd activity", "label": "Suspicious"}))
        .await;
    response.assert_status(200);
    assert_eq!(response.json()["createdId"], id);
    let log = app.get(&format!("/v2/customers/{id}/statusLog"), &app.basic()).await.json();
    assert_eq!(log["data"][0]["status"], "SUSPENDED");
    assert_eq!(log["data"][0]["label"], "Suspicious");
    assert_eq!(log["data"][0]["reason"], "Odd activity");
    assert_eq!(log["data"][0]["isActive"], true);
    assert_eq!(log["data"][1]["status"], "ACTIVE");
    assert_eq!(log["data"][1]["isActive"], false);
    for body in [
        json!({"reason": "x"}),
        json!({"label": "Suspicious"}),
        json!({"reason": "x", "label": "Sleepy"}),
    ] {
        app.put_json(uri, &app.basic(), &body).await.assert_status(400);
    }
    let missing = app.get("/v2/customers/424242/statusLog", &app.basic()).await;
    assert_eq!(missing.v2_error_code(), 8015);
    assert_eq!(
        app.get(&format!("/v2/customers/{id}/statusLog"), &app.basic()).await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn search_finds_prefixes_of_names_mobiles_emails_and_external_ids(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let people = [
        ("Maria", "Lopez", "919811100001", "maria@shop.com", "M-100"),
        ("Mario", "Rossi", "919811100002", "mario@shop.com", "M-200"),
        ("Marta", "Diaz", "919822200003", "marta@other.org", "X-300"),
        ("Zoe", "Ma", "447700900004", "zoe@shop.com", "Z-400"),
    ];
    let mut ids = Vec::new();
    for (first, last, mobile, email, ext) in people {
        let body = json!({"profiles": [{"firstName": first, "lastName": last, "identifiers": [
            {"type": "mobile", "value": mobile}, {"type": "email", "value": email}, {"type": "externalId", "value": ext}]}]});
        ids.push(created_id(&add(&app, &body).await));
    }
    let search = |q: &str| format!("/v2/customers/search?q={q}");
    let names = app.get(&search("mar"), &app.basic()).await;
    names.assert_status(200);
    let body = names.json();
    assert_eq!(body["pagination"]["total"], 3);
    assert_eq!(body["data"][0]["id"], ids[2], "newest first");
    assert_eq!(app.get(&search("mario%20r"), &app.basic()).await.json()["pagination"]["total"], 1);
    assert_eq!(app.get(&search("9198111"), &app.basic()).await.json()["pagination"]["total"], 2);
    assert_eq!(app.get(&search("zoe@"), &app.basic()).await.json()["data"][0]["id"], ids[3]);
    assert_eq!(app.get(&search("M-"), &app.basic()).await.json()["pagination"]["total"], 2);
    assert_eq!(app.get(&search("nobody"), &app.basic()).await.json()["pagination"]["total"], 0);
    let page = app.get("/v2/customers/search?q=mar&limit=2&offset=2", &app.basic()).await.json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["pagination"], json!({"limit": 2, "offset": 2, "total": 3}));
    for bad in [
        "/v2/customers/search",
        "/v2/customers/search?q=",
        "/v2/customers/search?q=a&limit=0",
        "/v2/customers/search?q=a&limit=101",
        "/v2/customers/search?q=a&offset=-1",
        "/v2/customers/search?q=a&limit=x",
    ] {
        app.get(bad, &app.basic()).await.assert_status(400);
    }
    let other = app.another_org("Other").await;
    let other_auth = basic_header(&other.till.username, &other.till.password);
    assert_eq!(app.get(&search("mar"), &other_auth).await.json()["pagination"]["total"], 0);
}

async fn change_identifier_adds_and_removes(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = created_id(&add(&app, &ana()).await);
    let other = created_id(
        &add(
            &app,
            &json!({"profiles": [{"identifiers": [{"type": "email", "value": "taken@x.com"}]}]}),
        )
        .await,
    );
    let uri = format!("/v2/customers/{id}/changeIdentifier?source=INSTORE");
    let response = app
        .post_json(&uri, &app.basic(), &json!({"add": [{"type": "cardnumber", "value": "CARD-1"}],
            "remove": [{"type": "externalId", "value": "EXT-1"}, {"type": "externalId", "value": "NOPE"}]}))
        .await;
    response.assert_status(200);
    assert_eq!(response.json()["createdId"], id);
    assert_eq!(response.json()["warnings"][0]["code"], 8013);
    let customer = app.get(&format!("/v2/customers/{id}"), &app.basic()).await.json();
    let identifiers = customer["profiles"][0]["identifiers"].as_array().unwrap().clone();
    assert!(identifiers.contains(&json!({"type": "cardnumber", "value": "CARD-1"})));
    assert!(!identifiers.iter().any(|i| i["type"] == "externalId"));
    let found = app
        .get(
            "/v2/customers/lookup?source=INSTORE&identifierName=cardnumber&identifierValue=CARD-1",
            &app.basic(),
        )
        .await;
    assert_eq!(found.json()["id"], id);

    let taken = app
        .post_json(&uri, &app.basic(), &json!({"add": [{"type": "email", "value": "taken@x.com"}]}))
        .await;
    assert_eq!(taken.v2_error_code(), 1016);
    let strip = app
        .post_json(&uri, &app.basic(), &json!({"remove": [{"type": "mobile", "value": "919845000001"}, {"type": "email", "value": "ana@example.com"}]}))
        .await;
    assert_eq!(strip.v2_error_code(), 1007, "a customer keeps a primary identifier");
    app.post_json(&uri, &app.basic(), &json!({})).await.assert_status(400);
    let bad = app
        .post_json(&uri, &app.basic(), &json!({"add": [{"type": "mobile", "value": "x"}]}))
        .await;
    assert_eq!(bad.v2_error_code(), 1001);
    let unknown = app
        .post_json(
            "/v2/customers/999999/changeIdentifier?source=INSTORE",
            &app.basic(),
            &json!({"add": [{"type": "email", "value": "q@x.com"}]}),
        )
        .await;
    assert_eq!(unknown.v2_error_code(), 8015);
    let after = app.get(&format!("/v2/customers/{id}"), &app.basic()).await.json();
    assert_eq!(
        after["profiles"][0]["identifiers"].as_array().unwrap().len(),
        3,
        "failed changes wrote nothing"
    );
    assert!(other > id);
}

async fn customers_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = created_id(&add(&app, &ana()).await);
    let other = app.another_org("Beta").await;
    let beta = basic_header(&other.till.username, &other.till.password);
    let get = app.get(&format!("/v2/customers/{id}"), &beta).await;
    get.assert_status(404);
    assert_eq!(get.v2_error_code(), 8015);
    let missing = app.get("/v2/customers/987654", &app.basic()).await;
    assert_eq!(
        get.json(),
        missing.json(),
        "another org's customer looks exactly like a missing one"
    );
    let lookup = app.get("/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=919845000001", &beta).await;
    assert_eq!(lookup.v2_error_code(), 8015);
    let update = app
        .put_json(
            &format!("/v2/customers/{id}?source=INSTORE"),
            &beta,
            &json!({"profiles": [{"firstName": "X"}]}),
        )
        .await;
    assert_eq!(update.v2_error_code(), 8015);
    let change = app
        .post_json(
            &format!("/v2/customers/{id}/changeIdentifier"),
            &beta,
            &json!({"add": [{"type": "email", "value": "z@x.com"}]}),
        )
        .await;
    assert_eq!(change.v2_error_code(), 8015);
    // The same identifiers register a separate customer in the other org.
    let plain = json!({"profiles": [{"firstName": "Ana", "identifiers": [{"type": "mobile", "value": "919845000001"}]}]});
    let own = app.post_json("/v2/customers", &beta, &plain).await;
    assert_ne!(created_id(&own), id);
    assert_eq!(
        app.get(&format!("/v2/customers/{id}"), &app.basic()).await.json()["profiles"][0]["firstName"],
        "Ana"
    );
}

backend_tests!(concurrent_registrations_of_one_mobile_make_one_customer);

async fn concurrent_registrations_of_one_mobile_make_one_customer(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let body = |name: &str| json!({"profiles": [{"firstName": name, "identifiers": [{"type": "mobile", "value": "919877700000"}]}]});
    let bodies: Vec<Value> = (0..8).map(|i| body(&format!("Racer{i}"))).collect();
    let responses = futures_join_all(&app, &bodies).await;
    let mut ids: Vec<i64> = responses.iter().map(created_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "every registration names the same customer: {ids:?}");
    let created =
        responses.iter().filter(|r| r.json()["warnings"].as_array().unwrap().is_empty()).count();
    assert_eq!(created, 1, "exactly one registration created the customer");
    assert_eq!(customer_count(&app, app.org.org_id).await, 1);
}

async fn futures_join_all(app: &TestApp, bodies: &[Value]) -> Vec<TestResponse> {
    let mut handles = Vec::new();
    for body in bodies {
        let router = app.router.clone();
        let auth = app.basic();
        let body = body.to_string();
        handles.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let response = router
                .oneshot(
                    request(Method::POST, "/v2/customers")
                        .header("authorization", auth)
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let bytes =
                http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
            TestResponse { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
        }));
    }
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

backend_tests!(org_config_can_make_mobile_mandatory, subscriptions_embed_shows_channel_status);

async fn org_config_can_make_mobile_mandatory(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let email_only =
        json!({"profiles": [{"identifiers": [{"type": "email", "value": "e@x.com"}]}]});
    created_id(&add(&app, &email_only).await);
    let config = json!({"keyName": "CONF_REGISTRATION_MOBILE_MANDATORY", "value": "true"});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
    let refused =
        add(&app, &json!({"profiles": [{"identifiers": [{"type": "email", "value": "f@x.com"}]}]}))
            .await;
    refused.assert_status(400);
    assert_eq!(refused.v2_error_code(), 1006);
    created_id(
        &add(
            &app,
            &json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "919800000777"}]}]}),
        )
        .await,
    );
    assert_eq!(customer_count(&app, app.org.org_id).await, 2);
}

async fn subscriptions_embed_shows_channel_status(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = created_id(&add(&app, &ana()).await);
    let change = json!({"subscriptions": [{"channel": "EMAIL", "priority": "BULK", "type": "OPTOUT"}], "reason": "asked"});
    app.post_json(&format!("/v2/customers/{id}/subscriptions"), &app.basic(), &change)
        .await
        .assert_status(200);
    let customer = app
        .get(&format!("/v2/customers/{id}?source=INSTORE&embed=subscriptions"), &app.basic())
        .await
        .json();
    let subscriptions = customer["subscriptions"].as_array().unwrap();
    let email_bulk =
        subscriptions.iter().find(|s| s["channel"] == "EMAIL" && s["priority"] == "BULK").unwrap();
    assert_eq!(email_bulk["type"], "OPTOUT");
    let email_trans =
        subscriptions.iter().find(|s| s["channel"] == "EMAIL" && s["priority"] == "TRANS").unwrap();
    assert_eq!(email_trans["type"], "OPTIN");
    let plain = app.get(&format!("/v2/customers/{id}"), &app.basic()).await.json();
    assert!(plain.get("subscriptions").is_none(), "embeds appear only when asked");
}
