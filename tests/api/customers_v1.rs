//! v1.1 customer APIs (add, update, get, search, update_identity, notes, preferences,
//! subscriptions, interaction) in JSON and XML, and the v2 subscription APIs.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header, request};

backend_tests!(
    add_registers_customers_in_json_and_xml,
    add_partial_batch_writes_only_good_items,
    add_rejects_empty_and_oversized_batches,
    update_changes_names_type_and_fields,
    get_answers_one_item_per_value,
    search_finds_customers_by_prefix,
    update_identity_changes_an_identifier,
    notes_are_added_updated_and_listed,
    preferences_are_merged_and_read,
    v1_subscriptions_are_set_and_read,
    interaction_lists_nothing_yet,
    v2_subscriptions_by_id_and_lookup,
    another_orgs_customer_is_not_found,
);

/// An app whose org uses the extended field `gender` and the custom fields `colour` and `size`.
async fn setup(backend: Backend) -> Option<TestApp> {
    let app = TestApp::new(backend).await?;
    app.enable_fields(&["gender"], &["colour", "size"]).await;
    Some(app)
}

// ---------------------------------------------------------------- helpers

async fn post_xml(app: &TestApp, uri: &str, auth: &str, xml: &str) -> TestResponse {
    app.send(
        request(Method::POST, uri)
            .header("authorization", auth)
            .header("content-type", "application/xml")
            .body(Body::from(xml.to_string()))
            .unwrap(),
    )
    .await
}

/// The items of a v1.1 batch answer at `response.<entities>.<entity>`.
#[track_caller]
fn items(response: &TestResponse, entities: &str, entity: &str) -> Vec<Value> {
    response.json()["response"][entities][entity]
        .as_array()
        .unwrap_or_else(|| panic!("no {entities}.{entity} list: {}", response.body))
        .clone()
}

/// The `item_status.code` of each item.
#[track_caller]
fn item_codes(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|i| i["item_status"]["code"].as_i64().unwrap_or_else(|| panic!("no code: {i}")))
        .collect()
}

/// Registers customers through `POST /v1.1/customer/add`, expecting every item to succeed.
async fn add(app: &TestApp, customers: Value) -> Vec<Value> {
    let response = app
        .post_json(
            "/v1.1/customer/add?format=json",
            &app.basic(),
            &json!({"root": {"customer": customers}}),
        )
        .await;
    response.assert_status(200);
    items(&response, "customers", "customer")
}

async fn add_one(app: &TestApp, customer: Value) -> i64 {
    add(app, json!([customer])).await[0]["user_id"].as_i64().unwrap()
}

/// `GET /v1.1/customer/get?{query}` → the customer items.
async fn get(app: &TestApp, query: &str) -> (TestResponse, Vec<Value>) {
    let response = app.get(&format!("/v1.1/customer/get?{query}"), &app.basic()).await;
    let list = if response.status.as_u16() == 400 {
        Vec::new()
    } else {
        items(&response, "customers", "customer")
    };
    (response, list)
}

// ---------------------------------------------------------------- add

async fn add_registers_customers_in_json_and_xml(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let added = add(
        &app,
        json!([
            {"mobile": "919845012345", "email": "Ana@Example.com", "firstname": "Ana",
             "lastname": "Silva", "registered_on": "2024-01-02 10:11:12", "type": "LOYALTY",
             "custom_fields": {"field": [{"name": "colour", "value": "blue"}]},
             "extended_fields": {"field": [{"name": "gender", "value": "Female"}]},
             "commChannels": [{"type": "mobile", "value": "919845012345", "primary": "true"}]},
            {"external_id": "EXT-1", "firstname": "Bo"}
        ]),
    )
    .await;
    assert_eq!(item_codes(&added), [1000, 1000]);
    assert_eq!(added[0]["email"], "ana@example.com");
    assert_eq!(added[0]["mobile"], "919845012345");
    assert_eq!(added[0]["firstname"], "Ana");
    assert_eq!(added[0]["side_effects"], json!({"effect": []}));
    assert_eq!(added[1]["external_id"], "EXT-1");
    assert_eq!(added[0]["item_status"]["success"], "true");

    let (response, got) = get(&app, "mobile=919845012345").await;
    response.assert_status(200);
    let c = &got[0];
    assert_eq!(c["user_id"], added[0]["user_id"]);
    assert_eq!(c["type"], "LOYALTY");
    assert_eq!(c["registered_on"], "2024-01-02 10:11:12");
    assert_eq!(c["custom_fields"], json!({"field": [{"name": "colour", "value": "blue"}]}));
    assert_eq!(c["extended_fields"], json!({"field": [{"name": "gender", "value": "Female"}]}));
    assert_eq!(c["loyalty_points"], 0.0);
    assert_eq!(c["transactions"], json!({"transaction": []}));
    assert_eq!(c["coupons"], json!({"coupon": []}));
    assert!(c["registered_store"]["code"].is_string());

    // XML in, XML out; one repeated element is read as a one-item list.
    let xml = "<root><customer><mobile>919800000001</mobile><firstname>Xi</firstname>\
               <type>NON_LOYALTY</type><custom_fields><field><name>size</name><value>M</value>\
               </field></custom_fields></customer></root>";
    let response = post_xml(&app, "/v1.1/customer/add?format=xml", &app.basic(), xml).await;
    response.assert_status(200);
    assert!(response.headers["content-type"].to_str().unwrap().contains("xml"));
    assert!(
        response.body.contains("<item_status><success>true</success><code>1000</code>"),
        "{}",
        response.body
    );
    assert!(response.body.contains("<mobile>919800000001</mobile>"), "{}", response.body);
    let xml_get = app.get("/v1.1/customer/get?format=xml&mobile=919800000001", &app.basic()).await;
    xml_get.assert_status(200);
    assert!(xml_get.body.contains("<type>NON_LOYALTY</type>"), "{}", xml_get.body);
    assert!(
        xml_get.body.contains("<field><name>size</name><value>M</value></field>"),
        "{}",
        xml_get.body
    );

    // Audit and event rows of the registration.
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert_eq!(audit.iter().filter(|a| a.action == "CREATE").count(), 3);
    let mut conn = app.state.db.read().await.unwrap();
    let events = perks::events::store::for_entity(
        &mut conn,
        perks::org::model::OrgId(app.org.org_id),
        "CUSTOMER",
        added[0]["user_id"].as_i64().unwrap(),
        10,
    )
    .await
    .unwrap();
    assert_eq!(events[0].event_type, "customer.created");
}

async fn add_partial_batch_writes_only_good_items(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    add_one(&app, json!({"mobile": "919811111111", "email": "taken@example.com"})).await;
    let body = json!({"root": {"customer": [
        {"mobile": "919822222222", "firstname": "Good"},
        {"mobile": "12ab", "firstname": "BadMobile"},
        {"email": "not-an-email", "firstname": "BadEmail"},
        {"external_id": "bad\u{0007}id"},
        {"firstname": "NoIdentifier"},
        {"mobile": "919811111111", "firstname": "Again"},
        {"mobile": "919833333333", "email": "taken@example.com"},
        {"mobile": "919844444444", "type": "GOLD"},
        {"mobile": "919855555555", "registered_on": "yesterday"},
    ]}});
    let response = app.post_json("/v1.1/customer/add", &app.basic(), &body).await;
    response.assert_status(201);
    assert_eq!(response.v1_code(), 201);
    let list = items(&response, "customers", "customer");
    assert_eq!(item_codes(&list), [1000, 1001, 1002, 1003, 1007, 1014, 1016, 400, 400]);
    assert_eq!(list[1]["item_status"]["success"], "false");
    assert_eq!(list[1]["mobile"], "12ab");

    // Only the good item was written.
    let (_, got) = get(&app, "mobile=919822222222,919833333333,919844444444,919855555555").await;
    assert_eq!(item_codes(&got), [1000, 1012, 1012, 1012]);
    let (_, got) = get(&app, "mobile=919811111111").await;
    assert_eq!(got[0]["firstname"], "", "the rejected duplicate did not update the customer");

    // Every item failing: 500.
    let response = app
        .post_json(
            "/v1.1/customer/add",
            &app.basic(),
            &json!({"root": {"customer": [{"mobile": "x"}]}}),
        )
        .await;
    response.assert_status(500);
    assert_eq!(response.v1_code(), 500);
}

async fn add_rejects_empty_and_oversized_batches(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let many: Vec<Value> = (0..101).map(|i| json!({"mobile": format!("9198000{i:05}")})).collect();
    let response = app
        .post_json("/v1.1/customer/add", &app.basic(), &json!({"root": {"customer": many}}))
        .await;
    response.assert_status(400);
    assert_eq!(response.v1_code(), 1060);
    let (_, got) = get(&app, "mobile=919800000000").await;
    assert_eq!(item_codes(&got), [1012]);
    let response = app.post_json("/v1.1/customer/add", &app.basic(), &json!({"root": {}})).await;
    response.assert_status(400);
    assert_eq!(response.v1_code(), 400);
    let response =
        post_xml(&app, "/v1.1/customer/add?format=xml", &app.basic(), "<root><customer>").await;
    response.assert_status(400);
    assert!(response.body.contains("<code>400</code>"), "{}", response.body);
}

// ---------------------------------------------------------------- update

async fn update_changes_names_type_and_fields(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = add_one(&app, json!({"mobile": "919812345678", "type": "NON_LOYALTY"})).await;
    let body = json!({"root": {"customer": [
        {"mobile": "919812345678", "firstname": "Rui", "lastname": "Costa", "type": "LOYALTY",
         "custom_fields": {"field": {"name": "colour", "value": "red"}}},
        {"mobile": "919899999999", "firstname": "Nobody"},
        {"id": "999999", "firstname": "Nobody"},
        {"firstname": "NoKey"},
    ]}});
    let response = app.post_json("/v1.1/customer/update", &app.basic(), &body).await;
    response.assert_status(201);
    let list = items(&response, "customers", "customer");
    assert_eq!(item_codes(&list), [1000, 1012, 1011, 1015]);
    assert_eq!(list[0]["item_status"]["message"], "Customer updated successfully");
    assert_eq!(list[0]["type"], "LOYALTY");
    let (_, got) = get(&app, &format!("id={id}")).await;
    assert_eq!(got[0]["firstname"], "Rui");
    assert_eq!(got[0]["lastname"], "Costa");
    assert_eq!(got[0]["custom_fields"], json!({"field": [{"name": "colour", "value": "red"}]}));

    // PUT works too; a downgrade is refused and changes nothing.
    let body =
        json!({"root": {"customer": {"user_id": id, "type": "NON_LOYALTY", "firstname": "X"}}});
    let response = app.put_json("/v1.1/customer/update", &app.basic(), &body).await;
    response.assert_status(500);
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [400]);
    let (_, got) = get(&app, &format!("id={id}")).await;
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["firstname"].as_str()),
        (Some("LOYALTY"), Some("Rui"))
    );
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert_eq!(audit.iter().filter(|a| a.action == "UPDATE").count(), 1);
}

// ---------------------------------------------------------------- get and search

async fn get_answers_one_item_per_value(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    add(
        &app,
        json!([{"mobile": "919810000001", "email": "a@example.com", "external_id": "E1"},
        {"mobile": "919810000002"}]),
    )
    .await;
    let (response, got) = get(&app, "mobile=919810000001,919810000002").await;
    response.assert_status(200);
    assert_eq!(item_codes(&got), [1000, 1000]);
    let (response, got) = get(&app, "mobile=919810000001,919810009999").await;
    response.assert_status(201);
    assert_eq!(item_codes(&got), [1000, 1012]);
    assert_eq!(got[1]["mobile"], "919810009999");
    let (_, got) = get(&app, "email=A@Example.com").await;
    assert_eq!(got[0]["external_id"], "E1");
    let (_, got) = get(&app, "external_id=E1").await;
    assert_eq!(got[0]["email"], "a@example.com");
    let (response, got) = get(&app, "id=123456789").await;
    response.assert_status(500);
    assert_eq!(item_codes(&got), [1011]);
    let (_, got) = get(&app, "card_number=4000123").await;
    assert_eq!(item_codes(&got), [1011]);

    // The country code header completes national numbers.
    let response = app
        .send(
            request(Method::GET, "/v1.1/customer/get?mobile=9810000002")
                .header("authorization", app.basic())
                .header("X-CAP-CLIENT-COUNTRYCODE", "91")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    response.assert_status(200);
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [1000]);

    let (response, _) = get(&app, "format=json").await;
    response.assert_status(400);
    assert_eq!(response.v1_code(), 1015);
    let many: Vec<String> = (0..101).map(|i| format!("9198100{i:05}")).collect();
    let (response, _) = get(&app, &format!("mobile={}", many.join(","))).await;
    response.assert_status(400);
    assert_eq!(response.v1_code(), 1060);
}

async fn search_finds_customers_by_prefix(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    add(
        &app,
        json!([{"mobile": "919820000001", "firstname": "Maria", "lastname": "Lopes"},
        {"mobile": "919820000002", "firstname": "Mario"}, {"email": "zed@example.com"}]),
    )
    .await;
    let response = app.get("/v1.1/customer/search?q=mari&limit=1", &app.basic()).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["response"]["customer"]["count"], 2);
    let found = body["response"]["customer"]["results"]["item"].as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["firstname"], "Mario");
    let response = app.get("/v1.1/customer/search?q=zed@", &app.basic()).await;
    assert_eq!(
        response.json()["response"]["customer"]["results"]["item"][0]["email"],
        "zed@example.com"
    );
    for bad in ["q=", "q=a&limit=0", "q=a&limit=101", "q=a&start=-1"] {
        let response = app.get(&format!("/v1.1/customer/search?{bad}"), &app.basic()).await;
        response.assert_status(400);
    }
}

// ---------------------------------------------------------------- update_identity

async fn update_identity_changes_an_identifier(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = add_one(&app, json!({"mobile": "919830000001", "email": "one@example.com"})).await;
    add_one(
        &app,
        json!({"mobile": "919830000002", "email": "two@example.com", "external_id": "X2"}),
    )
    .await;
    let body = json!({"root": {"customer": [
        {"identifier": "mobile", "old_value": "919830000001", "new_value": "919830000009"},
        {"identifier": "mobile", "old_value": "919830000009", "new_value": "919830000002"},
        {"identifier": "email", "old_value": "one@example.com", "new_value": "two@example.com"},
        {"identifier": "external_id", "old_value": "X2", "new_value": "X2"},
        {"identifier": "email", "old_value": "nobody@example.com", "new_value": "n@example.com"},
        {"identifier": "shoe", "old_value": "1", "new_value": "2"},
    ]}});
    let response = app.post_json("/v1.1/customer/update_identity", &app.basic(), &body).await;
    response.assert_status(201);
    let list = items(&response, "customers", "customer");
    assert_eq!(item_codes(&list), [1040, 9005, 9002, 9003, 9012, 400]);
    assert_eq!(list[0]["updated"], true);
    assert_eq!(list[0]["new_value"], "919830000009");
    assert_eq!(list[1]["updated"], false);
    let (_, got) = get(&app, "mobile=919830000001,919830000009").await;
    assert_eq!(item_codes(&got), [1012, 1000]);
    assert_eq!(got[1]["user_id"], id);

    // The flat form, in XML.
    let xml = "<root><identifier>email</identifier><old_value>one@example.com</old_value>\
               <new_value>uno@example.com</new_value></root>";
    let response =
        post_xml(&app, "/v1.1/customer/update_identity?format=xml", &app.basic(), xml).await;
    response.assert_status(200);
    assert!(response.body.contains("<code>1040</code>"), "{}", response.body);
    let (_, got) = get(&app, "email=uno@example.com").await;
    assert_eq!(got[0]["user_id"], id);
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert_eq!(audit.iter().filter(|a| a.action == "CHANGE_IDENTIFIER").count(), 2);
}

// ---------------------------------------------------------------- notes and preferences

async fn notes_are_added_updated_and_listed(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = add_one(&app, json!({"mobile": "919840000001"})).await;
    let body = json!({"root": {"customer": [
        {"mobile": "919840000001", "notes": {"note": [
            {"description": "Prefers email", "date": "2024-03-04 05:06:07"},
            {"description": "VIP"}]}},
        {"mobile": "919840000001", "notes": {"note": {"description": "x".repeat(256)}}},
        {"mobile": "919849999999", "notes": {"note": {"description": "lost"}}},
    ]}});
    let response = app.post_json("/v1.1/customer/notes", &app.basic(), &body).await;
    response.assert_status(201);
    let list = items(&response, "customers", "customer");
    assert_eq!(item_codes(&list), [1000, 400, 1012]);
    let saved = list[0]["notes"]["note"].as_array().unwrap();
    assert_eq!(saved[0]["date"], "2024-03-04 05:06:07");
    let note_id = saved[0]["id"].as_i64().unwrap();

    // Update in the flat form, by user id.
    let body =
        json!({"root": {"customer": {"user_id": id, "id": note_id, "description": "Prefers SMS"}}});
    let response = app.post_json("/v1.1/customer/notes", &app.basic(), &body).await;
    response.assert_status(200);
    let body = json!({"root": {"customer": {"user_id": id, "id": 99999, "description": "nope"}}});
    let response = app.post_json("/v1.1/customer/notes", &app.basic(), &body).await;
    response.assert_status(500);

    let response = app.get("/v1.1/customer/notes?mobile=919840000001", &app.basic()).await;
    response.assert_status(200);
    let customer = &response.json()["response"]["customer"];
    assert_eq!(customer["item_status"]["code"], 1000);
    let notes = customer["notes"]["note"].as_array().unwrap();
    let texts: Vec<&str> = notes.iter().map(|n| n["description"].as_str().unwrap()).collect();
    assert_eq!(texts, ["VIP", "Prefers SMS"]);

    let response = app.get("/v1.1/customer/notes?mobile=919849999999", &app.basic()).await;
    response.assert_status(500);
    assert_eq!(response.json()["response"]["customer"]["item_status"]["code"], 1012);
    let response = app.get("/v1.1/customer/notes", &app.basic()).await;
    assert_eq!(response.json()["response"]["customer"]["item_status"]["code"], 1015);
    assert!(app.audit(app.org.org_id, "CUSTOMER").await.iter().any(|a| a.action == "NOTES_CHANGE"));
}

async fn preferences_are_merged_and_read(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    add_one(&app, json!({"mobile": "919850000001"})).await;
    let body = json!({"root": {"customer": [
        {"mobile": "919850000001", "custom_fields": {"field": [
            {"name": "colour", "value": "blue"}, {"name": "brand", "value": "Acme"}]}},
        {"mobile": "919850000001"},
    ]}});
    let response = app.post_json("/v1.1/customer/preferences", &app.basic(), &body).await;
    response.assert_status(201);
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [1000, 400]);
    let xml = "<root><customer><mobile>919850000001</mobile><custom_fields><field>\
               <name>colour</name><value>green</value></field></custom_fields></customer></root>";
    let response = post_xml(&app, "/v1.1/customer/preferences?format=xml", &app.basic(), xml).await;
    response.assert_status(200);
    let response = app.get("/v1.1/customer/preferences?mobile=919850000001", &app.basic()).await;
    response.assert_status(200);
    let fields = &response.json()["response"]["customer"]["custom_fields"]["field"];
    assert_eq!(
        fields,
        &json!([{"name": "colour", "value": "green"}, {"name": "brand", "value": "Acme"}])
    );
}

// ---------------------------------------------------------------- subscriptions

async fn v1_subscriptions_are_set_and_read(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = add_one(&app, json!({"mobile": "919860000001", "email": "s@example.com"})).await;
    let body = json!({"root": {"subscription": [
        {"mobile": "919860000001", "priority": "BULK", "scope": "all", "channel": "SMS", "type": "OPTOUT"},
        {"mobile": "919860000001", "priority": "BULK", "channel": "PIGEON", "type": "OPTOUT"},
        {"mobile": "919860000001", "priority": "SOON", "channel": "SMS", "type": "OPTOUT"},
        {"mobile": "919860000001", "priority": "BULK", "channel": "SMS", "type": "MAYBE"},
        {"mobile": "919869999999", "priority": "BULK", "channel": "SMS", "type": "OPTOUT"},
    ]}});
    let response = app.post_json("/v1.1/customer/subscriptions", &app.basic(), &body).await;
    response.assert_status(201);
    let list = items(&response, "subscriptions", "subscription");
    assert_eq!(item_codes(&list), [1000, 400, 400, 400, 1012]);
    let xml = "<root><subscription><email>s@example.com</email><priority>TRANS</priority>\
               <channel>EMAIL</channel><type>OPTOUT</type></subscription></root>";
    let response =
        post_xml(&app, "/v1.1/customer/subscriptions?format=xml", &app.basic(), xml).await;
    response.assert_status(200);

    let response = app.get("/v1.1/customer/subscriptions?mobile=919860000001", &app.basic()).await;
    response.assert_status(200);
    let subs = response.json()["response"]["customer"]["subscriptions"]["subscription"].clone();
    let status = |channel: &str, priority: &str| {
        subs.as_array()
            .unwrap()
            .iter()
            .find(|s| s["channel"] == channel && s["priority"] == priority)
            .map(|s| s["type"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status("SMS", "BULK"), "OPTOUT");
    assert_eq!(status("SMS", "TRANS"), "OPTIN");
    assert_eq!(status("EMAIL", "TRANS"), "OPTOUT");
    assert_eq!(status("EMAIL", "BULK"), "OPTIN");

    // The v2 log shows both changes.
    let response = app.get(&format!("/v2/customers/{id}/subscriptionLog"), &app.basic()).await;
    response.assert_status(200);
    assert_eq!(response.json()["data"].as_array().unwrap().len(), 2);
}

async fn interaction_lists_nothing_yet(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    add_one(&app, json!({"mobile": "919870000001"})).await;
    let response = app
        .get("/v1.1/customer/interaction?mobile=919870000001&type=email&limit=5", &app.basic())
        .await;
    response.assert_status(200);
    let customer = &response.json()["response"]["customer"];
    assert_eq!(customer["interactions"]["interaction"], json!([]));
    assert_eq!(customer["item_status"]["code"], 1000);
    let response =
        app.get("/v1.1/customer/interaction?mobile=919870000001&type=fax", &app.basic()).await;
    response.assert_status(400);
    let response =
        app.get("/v1.1/customer/interaction?mobile=919870000001&limit=0", &app.basic()).await;
    response.assert_status(400);
    let response = app.get("/v1.1/customer/interaction?mobile=919879999999", &app.basic()).await;
    response.assert_status(500);
}

async fn v2_subscriptions_by_id_and_lookup(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let auth = app.basic();
    let id = add_one(&app, json!({"mobile": "919880000001"})).await;
    let body = json!({"reason": "asked at till", "subscriptions": [
        {"channel": "MOBILE", "priority": "BULK", "type": "OPTOUT", "sourceName": "INSTORE"},
        {"channel": "EMAIL", "priority": "TRANS", "type": "OPTOUT"}]});
    let response = app.post_json(&format!("/v2/customers/{id}/subscriptions"), &auth, &body).await;
    response.assert_status(200);
    assert_eq!(response.json(), json!({"createdId": id, "warnings": []}));

    let lookup = "source=INSTORE&identifierName=mobile&identifierValue=919880000001";
    let body =
        json!({"subscriptions": [{"channel": "EMAIL", "priority": "TRANS", "type": "OPTIN"}]});
    let response =
        app.post_json(&format!("/v2/customers/lookup/subscriptions?{lookup}"), &auth, &body).await;
    response.assert_status(200);
    assert_eq!(response.json()["createdId"], id);

    for response in [
        app.get(&format!("/v2/customers/{id}/subscriptions"), &auth).await,
        app.get(&format!("/v2/customers/lookup/subscriptions?{lookup}"), &auth).await,
    ] {
        response.assert_status(200);
        let data = response.json()["data"].as_array().unwrap().clone();
        assert_eq!(data.len(), 10, "5 channels x 2 priorities");
        let kind = |c: &str, p: &str| {
            data.iter().find(|s| s["channel"] == c && s["priority"] == p).unwrap()["type"].clone()
        };
        assert_eq!(kind("MOBILE", "BULK"), "OPTOUT");
        assert_eq!(kind("MOBILE", "TRANS"), "OPTIN");
        assert_eq!(kind("EMAIL", "TRANS"), "OPTIN");
    }

    let response = app.get(&format!("/v2/customers/{id}/subscriptionLog"), &auth).await;
    response.assert_status(200);
    let log = response.json()["data"].as_array().unwrap().clone();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["channel"], "EMAIL");
    assert_eq!(log[0]["type"], "OPTIN");
    assert_eq!(log[2]["reason"], "asked at till");
    assert_eq!(log[2]["source"], "INSTORE");
    assert_eq!(log[2]["createdBy"]["type"], "TILL");

    // Bad input: 400, nothing written.
    for bad in [
        json!({"subscriptions": [{"channel": "PIGEON", "priority": "BULK", "type": "OPTIN"}]}),
        json!({"subscriptions": [{"channel": "EMAIL", "priority": "NOW", "type": "OPTIN"}]}),
        json!({"subscriptions": [{"channel": "EMAIL", "priority": "BULK", "type": "YES"}]}),
        json!({"subscriptions": [{"channel": "EMAIL", "priority": "BULK"}]}),
        json!({"subscriptions": []}),
        json!({"reason": "r".repeat(256), "subscriptions": [{"channel": "EMAIL", "priority": "BULK", "type": "OPTIN"}]}),
    ] {
        let response =
            app.post_json(&format!("/v2/customers/{id}/subscriptions"), &auth, &bad).await;
        response.assert_status(400);
        assert_eq!(response.v2_error_code(), 400, "{bad}");
    }
    let response = app
        .post_json(&format!("/v2/customers/{id}/subscriptions"), &auth,
            &json!({"subscriptions": [{"channel": "EMAIL", "priority": "BULK", "type": "OPTIN", "sourceName": "WECHAT", "accountId": "wx"}]}))
        .await;
    response.assert_status(400);
    assert_eq!(response.v2_error_code(), 8003);
    let response = app.get(&format!("/v2/customers/{id}/subscriptionLog"), &auth).await;
    assert_eq!(response.json()["data"].as_array().unwrap().len(), 3);

    // Unknown customers: 8015.
    let response = app.post_json("/v2/customers/99999/subscriptions", &auth, &body).await;
    response.assert_status(404);
    assert_eq!(response.v2_error_code(), 8015);
    let response = app.get("/v2/customers/99999/subscriptions", &auth).await;
    assert_eq!(response.v2_error_code(), 8015);
    let response = app.get("/v2/customers/99999/subscriptionLog", &auth).await;
    assert_eq!(response.v2_error_code(), 8015);
    let response = app
        .get("/v2/customers/lookup/subscriptions?source=INSTORE&identifierName=mobile&identifierValue=919889999999", &auth)
        .await;
    assert_eq!(response.v2_error_code(), 8015);

    // Audit and events in the same transactions.
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert_eq!(audit.iter().filter(|a| a.action == "SUBSCRIPTION_CHANGE").count(), 2);
    let mut conn = app.state.db.read().await.unwrap();
    let events = perks::events::store::for_entity(
        &mut conn,
        perks::org::model::OrgId(app.org.org_id),
        "CUSTOMER",
        id,
        50,
    )
    .await
    .unwrap();
    assert_eq!(
        events.iter().filter(|e| e.event_type == "customer.subscription_changed").count(),
        2
    );
}

// ---------------------------------------------------------------- isolation

async fn another_orgs_customer_is_not_found(backend: Backend) {
    let Some(app) = setup(backend).await else { return };
    let id = add_one(&app, json!({"mobile": "919890000001", "email": "mine@example.com"})).await;
    let other = app.another_org("Other").await;
    let auth = basic_header(&other.till.username, &other.till.password);

    let response = app.get("/v1.1/customer/get?mobile=919890000001", &auth).await;
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [1012]);
    let response = app.get(&format!("/v1.1/customer/get?id={id}"), &auth).await;
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [1011]);
    let response = app.get("/v1.1/customer/search?q=91989", &auth).await;
    assert_eq!(response.json()["response"]["customer"]["count"], 0);
    let body = json!({"root": {"customer": {"mobile": "919890000001", "firstname": "Thief"}}});
    let response = app.post_json("/v1.1/customer/update", &auth, &body).await;
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [1012]);
    let body = json!({"root": {"customer": {"identifier": "mobile", "old_value": "919890000001", "new_value": "919890000002"}}});
    let response = app.post_json("/v1.1/customer/update_identity", &auth, &body).await;
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [9012]);
    let body = json!({"root": {"customer": {"user_id": id, "description": "hi"}}});
    let response = app.post_json("/v1.1/customer/notes", &auth, &body).await;
    assert_eq!(item_codes(&items(&response, "customers", "customer")), [1011]);
    for path in ["notes", "preferences", "subscriptions", "interaction"] {
        let response = app.get(&format!("/v1.1/customer/{path}?mobile=919890000001"), &auth).await;
        assert_eq!(response.json()["response"]["customer"]["item_status"]["code"], 1012, "{path}");
    }
    let body =
        json!({"subscriptions": [{"channel": "EMAIL", "priority": "BULK", "type": "OPTOUT"}]});
    let response = app.post_json(&format!("/v2/customers/{id}/subscriptions"), &auth, &body).await;
    assert_eq!(response.v2_error_code(), 8015);
    let response = app.get(&format!("/v2/customers/{id}/subscriptions"), &auth).await;
    assert_eq!(response.v2_error_code(), 8015);
    let response = app.get(&format!("/v2/customers/{id}/subscriptionLog"), &auth).await;
    assert_eq!(response.v2_error_code(), 8015);

    // The same org registering the same mobile is a new customer of its own.
    let response = app
        .post_json(
            "/v1.1/customer/add",
            &auth,
            &json!({"root": {"customer": {"mobile": "919890000001"}}}),
        )
        .await;
    response.assert_status(200);
    // And the first org's customer is untouched.
    let (_, got) = get(&app, "mobile=919890000001").await;
    assert_eq!(got[0]["user_id"], id);
    assert_eq!(got[0]["firstname"], "");
    assert_eq!(got[0]["email"], "mine@example.com");
}
