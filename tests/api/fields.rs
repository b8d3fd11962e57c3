//! Fields APIs: org configs (v1.1 and v2), custom fields and their values, extended fields, org
//! sources, the validation API other domains call, permissions, and the isolation of orgs.

use perks::error::{ApiError, Code};
use perks::fields::service::{FieldError, validate_custom_fields, validate_extended_fields};
use perks::fields::store::config_value;
use perks::org::model::OrgId;
use serde_json::{Map, Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};

backend_tests!(
    configs_are_set_and_read_back,
    configs_reject_bad_input,
    custom_fields_are_created_and_listed,
    custom_fields_reject_bad_input,
    custom_field_values_are_tagged_and_read,
    tagging_rejects_bad_input,
    extended_fields_are_enabled_and_listed,
    extended_fields_reject_bad_input,
    org_sources_list_the_v2_sources,
    non_admin_tills_cannot_write,
    orgs_are_isolated_from_each_other,
    validate_extended_fields_normalises_and_rejects,
    validate_custom_fields_checks_type_and_regex,
);

// ---------------------------------------------------------------- helpers

/// Asserts a v2 error: HTTP status and the first `errors[].code`.
#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
    assert_eq!(response.json()["errors"][0]["status"], false);
}

/// Asserts a v1.1 error: HTTP status and `status.code`.
#[track_caller]
fn assert_v1_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v1_code(), code, "{}", response.body);
    assert_eq!(response.json()["response"]["status"]["success"], "false");
}

/// Asserts a v2 entity envelope and returns its `entity`.
#[track_caller]
fn entity(response: &TestResponse) -> Value {
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]), "{}", response.body);
    assert_eq!(body["errors"], json!([]), "{}", response.body);
    assert_eq!(body["success"], true, "{}", response.body);
    body["entity"].clone()
}

/// The `name` of each item.
#[track_caller]
fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {items}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_else(|| panic!("no name in {i}")).to_string())
        .collect()
}

/// A till of the built-in POS group (no write permission on the org); its Basic header.
async fn pos_till(app: &TestApp) -> String {
    let body = json!({"name": "till.pos", "password": "pw", "storeId": app.org.store_id});
    app.post_json("/v2/orgEntity/till", &app.basic(), &body).await.assert_status(200);
    basic_header("till.pos", "pw")
}

async fn define(app: &TestApp, scope: &str, fields: Value) -> Vec<i64> {
    let response = app
        .post_json(
            "/v2/customFields",
            &app.basic(),
            &json!({"scope": scope, "customFields": fields}),
        )
        .await;
    entity(&response)
        .as_array()
        .unwrap_or_else(|| panic!("no id list: {}", response.body))
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect()
}

async fn tag(
    app: &TestApp,
    scope: &str,
    entity_id: Value,
    name: &str,
    value: Value,
) -> TestResponse {
    let body = json!({"scope": scope, "entityId": entity_id, "customField": {"name": name, "value": value}});
    app.post_json("/v2/customField/tag", &app.basic(), &body).await
}

async fn enable(app: &TestApp, body: Value) -> Value {
    entity(&app.post_json("/v2/extendedFields", &app.basic(), &body).await)
}

fn map(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

// ---------------------------------------------------------------- org configs

async fn configs_are_set_and_read_back(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let one = app
        .post_json(
            "/v2/organization/configs",
            &auth,
            &json!({"keyName": "CONF_MAX_CARDS_PER_ORG", "value": "4", "scope": "ORG"}),
        )
        .await;
    one.assert_status(200);
    assert_eq!(
        one.json(),
        json!({"entity": {"keyName": "CONF_MAX_CARDS_PER_ORG", "value": "4", "scope": "ORG"},
            "warnings": [], "errors": [], "success": true})
    );

    // A list; numbers are stored as text, the scope defaults to ORG and is upper-cased.
    let many = app
        .post_json(
            "/v2/organization/configs",
            &auth,
            &json!([{"keyName": "CONF_B", "value": 10}, {"keyName": "CONF_C", "value": "x", "scope": "store"}]),
        )
        .await;
    assert_eq!(
        entity(&many),
        json!([{"keyName": "CONF_B", "value": "10", "scope": "ORG"},
            {"keyName": "CONF_C", "value": "x", "scope": "STORE"}])
    );
    // Setting a key again replaces its value.
    let again = app
        .post_json(
            "/v2/organization/configs",
            &auth,
            &json!({"keyName": "CONF_MAX_CARDS_PER_ORG", "value": "5"}),
        )
        .await;
    assert_eq!(entity(&again)["value"], "5");

    let all = app.get("/v2/organization/configs", &auth).await;
    all.assert_status(200);
    assert_eq!(
        all.json(),
        json!({"configs": [
            {"keyName": "CONF_B", "value": "10", "scope": "ORG"},
            {"keyName": "CONF_C", "value": "x", "scope": "STORE"},
            {"keyName": "CONF_MAX_CARDS_PER_ORG", "value": "5", "scope": "ORG"},
        ], "warnings": []})
    );
    let some =
        app.get("/v2/organization/configs?keyNames=CONF_MAX_CARDS_PER_ORG,CONF_B", &auth).await;
    let some = some.json();
    let keys: Vec<&str> = some["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["keyName"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["CONF_B", "CONF_MAX_CARDS_PER_ORG"]);
    // "Get Configured Card Limit per Customer".
    let limit = app.get("/v2/organization/configs?keyName=CONF_MAX_CARDS_PER_ORG", &auth).await;
    assert_eq!(
        limit.json()["configs"],
        json!([{"keyName": "CONF_MAX_CARDS_PER_ORG", "value": "5", "scope": "ORG"}])
    );
    let unset = app.get("/v2/organization/configs?keyName=CONF_NEVER_SET", &auth).await;
    assert_eq!(unset.json()["configs"], json!([]));

    let v1 = app.get("/v1.1/organization/configs?format=json", &auth).await;
    v1.assert_status(200);
    let v1 = v1.json();
    assert_eq!(v1["response"]["status"]["code"], 200);
    assert_eq!(
        v1["response"]["organization"]["configs"]["config"][0],
        json!({"key": "CONF_B", "value": "10", "scope": "ORG"})
    );
    assert_eq!(v1["response"]["organization"]["configs"]["config"].as_array().unwrap().len(), 3);
    let xml = app.get("/v1.1/organization/configs?format=xml", &auth).await;
    xml.assert_status(200);
    assert!(
        xml.body.contains("<config><key>CONF_B</key><value>10</value><scope>ORG</scope></config>"),
        "{}",
        xml.body
    );

    // Other domains read one value through the store.
    let mut conn = app.state.db.read().await.unwrap();
    let org = OrgId(app.org.org_id);
    assert_eq!(
        config_value(&mut conn, org, "CONF_MAX_CARDS_PER_ORG").await.unwrap().as_deref(),
        Some("5")
    );
    assert_eq!(config_value(&mut conn, org, "CONF_NEVER_SET").await.unwrap(), None);
    drop(conn);

    // Every write left an audit record with its principal.
    let audit = app.audit(app.org.org_id, "ORG_CONFIG").await;
    assert_eq!(audit.len(), 4);
    assert_eq!(audit[0].action, "UPDATE");
    assert_eq!(audit[0].principal_type, "TILL");
    assert!(audit[0].before_state.as_deref().unwrap().contains("\"4\""));
    assert!(audit[0].after_state.as_deref().unwrap().contains("\"5\""));
    assert_eq!(audit[3].action, "CREATE");
}

async fn configs_reject_bad_input(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let post = |body: Value| {
        let app = &app;
        let auth = auth.clone();
        async move { app.post_json("/v2/organization/configs", &auth, &body).await }
    };
    for body in [
        json!({"keyName": "conf_lower", "value": "1"}),
        json!({"keyName": "X", "value": "1"}),
        json!({"keyName": "CONF-DASH", "value": "1"}),
        json!({"keyName": format!("C{}", "X".repeat(100)), "value": "1"}),
        json!({"keyName": "CONF_A", "value": "v".repeat(1001)}),
        json!({"keyName": "CONF_A", "value": null}),
        json!({"keyName": "CONF_A", "value": {"nested": 1}}),
        json!({"keyName": "CONF_A"}),
        json!({"value": "1"}),
        json!({"keyName": "CONF_A", "value": "1", "scope": "two words"}),
        json!("CONF_A"),
        json!([]),
        json!([{"keyName": "CONF_A", "value": "1"}, {"keyName": "bad", "value": "2"}]),
    ] {
        let response = post(body.clone()).await;
        assert_v2_error(&response, 400, 400);
        assert!(!response.json()["errors"][0]["message"].as_str().unwrap().is_empty(), "{body}");
    }
    // A list names the refused item.
    let second = post(json!([{"keyName": "CONF_A", "value": "1"}, {"value": "2"}])).await;
    let message = second.json()["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("[1] ") && message.contains("keyName"), "{message}");
    let list: Vec<Value> =
        (0..101).map(|i| json!({"keyName": format!("CONF_{i}"), "value": "1"})).collect();
    assert_v2_error(&post(Value::Array(list)).await, 400, 1060);
    // Nothing of a refused list was stored.
    assert_eq!(app.get("/v2/organization/configs", &auth).await.json()["configs"], json!([]));

    assert_v2_error(&app.get("/v2/organization/configs?keyNames=bad-key", &auth).await, 400, 400);
    let many: Vec<String> = (0..101).map(|i| format!("CONF_{i}")).collect();
    let uri = format!("/v2/organization/configs?keyNames={}", many.join(","));
    assert_v2_error(&app.get(&uri, &auth).await, 400, 1060);

    let text = app
        .send(
            crate::helpers::request(axum::http::Method::POST, "/v2/organization/configs")
                .header("authorization", &auth)
                .header("content-type", "text/plain")
                .body(axum::body::Body::from("CONF_A=1"))
                .unwrap(),
        )
        .await;
    assert_v2_error(&text, 415, 415);
}

// ---------------------------------------------------------------- custom fields

async fn custom_fields_are_created_and_listed(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let ids = define(
        &app,
        "LOYALTY_REGISTRATION",
        json!([
            {"name": "favourite_colour", "type": "select", "dataType": "String",
             "label": "Favourite colour", "options": ["Red", "Blue"], "position": 2,
             "isCompulsory": 1, "helptext": "Pick one", "isPiiData": "0"},
            {"name": "kids", "dataType": "integer", "defaultValue": "0"},
            {"name": "pin_code", "regex": "[0-9]{6}", "isUpdatable": 0},
        ]),
    )
    .await;
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let till_ids =
        define(&app, "TILL_CUSTOM_FIELDS", json!([{"name": "lane", "dataType": "Integer"}])).await;

    let listed = entity(&app.get("/v2/customFields?scope=LOYALTY_REGISTRATION", &auth).await);
    // By position, then id.
    assert_eq!(names(&listed), ["kids", "pin_code", "favourite_colour"]);
    let colour = &listed[2];
    assert_eq!(colour["id"], ids[0]);
    assert_eq!(colour["label"], "Favourite colour");
    assert_eq!(colour["scope"], "LOYALTY_REGISTRATION");
    assert_eq!(colour["type"], "select");
    assert_eq!(colour["dataType"], "String");
    assert_eq!(colour["options"], json!(["Red", "Blue"]));
    assert_eq!(colour["position"], 2);
    assert_eq!(
        (
            colour["isCompulsory"].clone(),
            colour["isUpdatable"].clone(),
            colour["isDisabled"].clone()
        ),
        (json!(1), json!(1), json!(0))
    );
    assert_eq!(colour["helptext"], "Pick one");
    assert_eq!(colour["isPiiData"], 0);
    let kids = &listed[0];
    assert_eq!(
        (
            kids["label"].clone(),
            kids["dataType"].clone(),
            kids["defaultValue"].clone(),
            kids["type"].clone()
        ),
        (json!("kids"), json!("Integer"), json!("0"), json!("text"))
    );
    assert_eq!(listed[1]["regex"], "[0-9]{6}");
    assert_eq!(listed[1]["isUpdatable"], 0);

    let all = entity(&app.get("/v2/customFields", &auth).await);
    assert_eq!(all.as_array().unwrap().len(), 4);
    let lower = entity(&app.get("/v2/customFields?scope=loyalty_registration", &auth).await);
    assert_eq!(lower.as_array().unwrap().len(), 3);

    let v1 = app
        .get("/v1.1/organization/customfields?scope=TILL_CUSTOM_FIELDS&format=json", &auth)
        .await;
    v1.assert_status(200);
    let v1 = v1.json();
    assert_eq!(v1["response"]["status"]["code"], 200);
    let field = &v1["response"]["organization"]["custom_fields"]["field"];
    assert_eq!(field.as_array().unwrap().len(), 1);
    assert_eq!(field[0]["id"], till_ids[0]);
    assert_eq!(field[0]["name"], "lane");
    assert_eq!(field[0]["data_type"], "Integer");
    assert_eq!(field[0]["scope"], "TILL_CUSTOM_FIELDS");
    assert_eq!(field[0]["is_compulsory"], "false");
    assert_eq!(field[0]["is_updatable"], "true");
    let v1_all = app.get("/v1.1/organization/customfields", &auth).await.json();
    assert_eq!(
        v1_all["response"]["organization"]["custom_fields"]["field"].as_array().unwrap().len(),
        4
    );
    // The entities API lists the definitions of a level too.
    let entities = app
        .get("/v1.1/organization/entities?type=TILL&scope=TILL_CUSTOM_FIELDS", &auth)
        .await
        .json();
    assert_eq!(names(&entities["response"]["organization"]["custom_fields"]["field"]), ["lane"]);

    let audit = app.audit(app.org.org_id, "CUSTOM_FIELD").await;
    assert_eq!(audit.len(), 4);
    assert!(audit.iter().all(|a| a.action == "CREATE" && a.principal_type == "TILL"));
}

async fn custom_fields_reject_bad_input(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let post = |scope: &str, fields: Value| {
        let body = json!({"scope": scope, "customFields": fields});
        let app = &app;
        let auth = auth.clone();
        async move { app.post_json("/v2/customFields", &auth, &body).await }
    };
    for (scope, fields) in [
        ("NOPE", json!([{"name": "a"}])),
        ("", json!([{"name": "a"}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "a", "scope": "NOPE"}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "a_very_long_name_over"}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "two words"}])),
        ("LOYALTY_REGISTRATION", json!([{"name": ""}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "a", "dataType": "Date"}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "a", "type": "slider"}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "a", "regex": "([a-z]"}])),
        (
            "LOYALTY_REGISTRATION",
            json!([{"name": "a", "dataType": "Integer", "defaultValue": "abc"}]),
        ),
        ("LOYALTY_REGISTRATION", json!([{"name": "a", "regex": "[0-9]+", "defaultValue": "x1"}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "a", "isCompulsory": 2}])),
        ("LOYALTY_REGISTRATION", json!([{"name": "a", "position": "first"}])),
        ("LOYALTY_REGISTRATION", json!([{"label": "no name"}])),
        ("LOYALTY_REGISTRATION", json!([])),
    ] {
        let response = post(scope, fields.clone()).await;
        assert_v2_error(&response, 400, 400);
        assert!(!response.json()["errors"][0]["message"].as_str().unwrap().is_empty(), "{fields}");
    }
    let missing_scope =
        app.post_json("/v2/customFields", &auth, &json!({"customFields": [{"name": "a"}]})).await;
    assert_v2_error(&missing_scope, 400, 400);
    let too_many: Vec<Value> = (0..51).map(|i| json!({"name": format!("f{i}")})).collect();
    assert_v2_error(&post("LOYALTY_REGISTRATION", Value::Array(too_many)).await, 400, 1060);

    // Names are unique in the org, within a request and across scopes; a refused request stores
    // nothing.
    let twice = post("LOYALTY_REGISTRATION", json!([{"name": "kids"}, {"name": "kids"}])).await;
    assert_v2_error(&twice, 400, 1207);
    define(&app, "LOYALTY_REGISTRATION", json!([{"name": "kids"}])).await;
    let taken = post("TILL_CUSTOM_FIELDS", json!([{"name": "lane"}, {"name": "kids"}])).await;
    assert_v2_error(&taken, 400, 1207);
    assert!(taken.json()["errors"][0]["message"].as_str().unwrap().contains("kids"));
    assert_eq!(names(&entity(&app.get("/v2/customFields", &auth).await)), ["kids"]);

    assert_v2_error(&app.get("/v2/customFields?scope=NOPE", &auth).await, 400, 400);
    assert_v1_error(&app.get("/v1.1/organization/customfields?scope=NOPE", &auth).await, 400, 400);
    assert_v1_error(
        &app.get("/v1.1/organization/entities?type=TILL&scope=LOYALTY_REGISTRATION", &auth).await,
        400,
        400,
    );
}

async fn custom_field_values_are_tagged_and_read(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(
        &app,
        "TILL_CUSTOM_FIELDS",
        json!([{"name": "lane", "dataType": "Integer"}, {"name": "kiosk", "dataType": "Boolean"}]),
    )
    .await;
    define(&app, "STORE_CUSTOM_FIELDS", json!([{"name": "floor", "regex": "[0-9]{1,2}"}])).await;
    define(&app, "ORG_CUSTOM_FIELD", json!([{"name": "brand_colour"}])).await;
    define(
        &app,
        "LOYALTY_REGISTRATION",
        json!([{"name": "pin_code", "regex": "[0-9]{6}", "isUpdatable": 0}]),
    )
    .await;
    let till = app.org.till_id;

    let lane = tag(&app, "TILL_CUSTOM_FIELDS", json!(till), "lane", json!("3")).await;
    assert_eq!(
        entity(&lane),
        json!({"scope": "TILL_CUSTOM_FIELDS", "entityId": till, "name": "lane", "value": "3"})
    );
    assert_eq!(
        entity(
            &tag(&app, "TILL_CUSTOM_FIELDS", json!(till.to_string()), "kiosk", json!(true)).await
        )["value"],
        "true"
    );
    let uri = format!("/v2/orgEntity/customFields?entityType=TILL&entityId={till}");
    let values = app.get(&uri, &auth).await;
    values.assert_status(200);
    assert_eq!(
        values.json(),
        json!([
            {"name": "kiosk", "value": "true", "dataType": "Boolean", "scope": "TILL_CUSTOM_FIELDS"},
            {"name": "lane", "value": "3", "dataType": "Integer", "scope": "TILL_CUSTOM_FIELDS"},
        ])
    );
    // A new value replaces the old one; values set with the till itself are listed too.
    entity(&tag(&app, "TILL_CUSTOM_FIELDS", json!(till), "lane", json!(4)).await);
    app.put_json(
        &format!("/v2/orgEntity/till/{till}"),
        &auth,
        &json!({"customFields": [{"name": "counter", "value": "A"}]}),
    )
    .await
    .assert_status(200);
    assert_eq!(
        app.get(&uri, &auth).await.json(),
        json!([
            {"name": "counter", "value": "A", "dataType": "String", "scope": "TILL_CUSTOM_FIELDS"},
            {"name": "kiosk", "value": "true", "dataType": "Boolean", "scope": "TILL_CUSTOM_FIELDS"},
            {"name": "lane", "value": "4", "dataType": "Integer", "scope": "TILL_CUSTOM_FIELDS"},
        ])
    );

    entity(&tag(&app, "STORE_CUSTOM_FIELDS", json!(app.org.store_id), "floor", json!("2")).await);
    let store = app
        .get(
            &format!("/v2/orgEntity/customFields?entityType=store&entityId={}", app.org.store_id),
            &auth,
        )
        .await;
    assert_eq!(
        store.json(),
        json!([{"name": "floor", "value": "2", "dataType": "String", "scope": "STORE_CUSTOM_FIELDS"}])
    );
    let zones = app.get("/v1.1/organization/entities?type=ZONE", &auth).await.json();
    let zone = zones["response"]["organization"]["entities"]["entity"][0]["id"].as_i64().unwrap();
    let zone_values = app
        .get(&format!("/v2/orgEntity/customFields?entityType=ZONE&entityId={zone}"), &auth)
        .await;
    assert_eq!(zone_values.json(), json!([]));

    // Org-level values show in the hierarchy.
    entity(
        &tag(&app, "ORG_CUSTOM_FIELD", json!(app.org.org_id), "brand_colour", json!("teal")).await,
    );
    let hierarchy =
        app.get("/v2/organization/hierarchy?fetchCustomFields=true", &auth).await.json();
    assert_eq!(hierarchy["customFields"], json!([{"name": "brand_colour", "value": "teal"}]));

    // A field that is not updatable keeps its first value.
    entity(&tag(&app, "LOYALTY_REGISTRATION", json!(42), "pin_code", json!("560001")).await);
    entity(&tag(&app, "LOYALTY_REGISTRATION", json!(42), "pin_code", json!("560001")).await);
    assert_v2_error(
        &tag(&app, "LOYALTY_REGISTRATION", json!(42), "pin_code", json!("560002")).await,
        400,
        400,
    );
    entity(&tag(&app, "LOYALTY_REGISTRATION", json!(43), "pin_code", json!("560002")).await);

    let audit = app.audit(app.org.org_id, "CUSTOM_FIELD_VALUE").await;
    assert_eq!(audit.len(), 8);
    assert_eq!(audit.iter().filter(|a| a.action == "UPDATE").count(), 2);
}

async fn tagging_rejects_bad_input(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(
        &app,
        "TILL_CUSTOM_FIELDS",
        json!([{"name": "lane", "dataType": "Integer"}, {"name": "kiosk", "dataType": "Boolean"}]),
    )
    .await;
    define(&app, "STORE_CUSTOM_FIELDS", json!([{"name": "floor", "regex": "[0-9]{1,2}"}])).await;
    let till = json!(app.org.till_id);
    let store = json!(app.org.store_id);

    let unknown = tag(&app, "TILL_CUSTOM_FIELDS", till.clone(), "colour", json!("red")).await;
    assert_v2_error(&unknown, 400, 400);
    assert!(unknown.json()["errors"][0]["message"].as_str().unwrap().contains("colour"));
    for response in [
        // A field of another scope.
        tag(&app, "STORE_CUSTOM_FIELDS", store.clone(), "lane", json!("1")).await,
        tag(&app, "TILL_CUSTOM_FIELDS", till.clone(), "lane", json!("three")).await,
        tag(&app, "TILL_CUSTOM_FIELDS", till.clone(), "lane", json!(2.5)).await,
        tag(&app, "TILL_CUSTOM_FIELDS", till.clone(), "kiosk", json!("maybe")).await,
        tag(&app, "STORE_CUSTOM_FIELDS", store.clone(), "floor", json!("ground")).await,
        tag(&app, "NOPE", till.clone(), "lane", json!("1")).await,
        // Entities that are not the org's.
        tag(&app, "TILL_CUSTOM_FIELDS", json!(999_999), "lane", json!("1")).await,
        tag(&app, "STORE_CUSTOM_FIELDS", json!(999_999), "floor", json!("1")).await,
        tag(&app, "ORG_CUSTOM_FIELD", json!(app.org.org_id + 1), "lane", json!("1")).await,
        tag(&app, "TILL_CUSTOM_FIELDS", json!("x"), "lane", json!("1")).await,
        tag(&app, "TILL_CUSTOM_FIELDS", Value::Null, "lane", json!("1")).await,
        tag(&app, "TILL_CUSTOM_FIELDS", till.clone(), " ", json!("1")).await,
        app.post_json(
            "/v2/customField/tag",
            &auth,
            &json!({"scope": "TILL_CUSTOM_FIELDS", "entityId": 1}),
        )
        .await,
    ] {
        assert_v2_error(&response, 400, 400);
    }
    // Nothing was stored.
    let uri = format!("/v2/orgEntity/customFields?entityType=TILL&entityId={till}");
    assert_eq!(app.get(&uri, &auth).await.json(), json!([]));

    for uri in [
        format!("/v2/orgEntity/customFields?entityType=CUSTOMER&entityId={till}"),
        format!("/v2/orgEntity/customFields?entityId={till}"),
        "/v2/orgEntity/customFields?entityType=TILL".to_string(),
        "/v2/orgEntity/customFields?entityType=TILL&entityId=abc".to_string(),
    ] {
        assert_v2_error(&app.get(&uri, &auth).await, 400, 400);
    }
    for kind in ["TILL", "STORE", "ZONE"] {
        let uri = format!("/v2/orgEntity/customFields?entityType={kind}&entityId=999999");
        assert_v2_error(&app.get(&uri, &auth).await, 404, 404);
    }
}

// ---------------------------------------------------------------- extended fields

async fn extended_fields_are_enabled_and_listed(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let gender = enable(&app, json!({"name": "gender", "entityType": "customer"})).await;
    assert_eq!(gender["name"], "gender");
    assert_eq!(gender["label"], "Gender");
    assert_eq!(gender["entityType"], "CUSTOMER");
    assert_eq!(gender["baseEntityType"], "customer");
    assert_eq!(gender["dataType"], "STANDARD_ENUM");
    assert_eq!(gender["possibleValues"], json!(["Male", "Female", "Other"]));
    assert_eq!(gender["createdBy"], app.org.till_id);
    let created_on = gender["createdOn"].as_str().unwrap();
    assert_eq!(created_on.len(), 10, "{created_on}");
    let iso = gender["createdOnISO"].as_str().unwrap();
    assert!(iso.starts_with(created_on) && iso.ends_with("+05:30"), "{iso}");

    // The catalogue's spelling wins; labels may be the org's own.
    let dob = enable(&app, json!({"name": "DOB", "label": "Birthday", "entityType": "CUSTOMER", "dataType": "datetime"})).await;
    assert_eq!(
        (dob["name"].clone(), dob["label"].clone(), dob["dataType"].clone()),
        (json!("dob"), json!("Birthday"), json!("DATETIME"))
    );
    enable(&app, json!({"name": "tier_hint", "entityType": "customer", "dataType": "STRING"}))
        .await;
    let metal = enable(&app, json!({"name": "metalrate", "entityType": "lineitem"})).await;
    assert_eq!(
        (metal["name"].clone(), metal["dataType"].clone(), metal["entityType"].clone()),
        (json!("MetalRate"), json!("DOUBLE"), json!("REGULAR_LINEITEM"))
    );
    enable(&app, json!({"name": "size_band", "entityType": "Transaction", "dataType": "STANDARD_ENUM", "possibleValues": ["S", "M", "L"]})).await;
    // Enabling again changes the label and allowed values, not the id.
    let again = enable(
        &app,
        json!({"name": "gender", "label": "Sex", "entityType": "customer",
        "possibleValues": ["Male", "Female", "Other", "Prefer not to say"]}),
    )
    .await;
    assert_eq!(again["id"], gender["id"]);
    assert_eq!(again["label"], "Sex");
    assert_eq!(again["possibleValues"].as_array().unwrap().len(), 4);

    let listed = entity(&app.get("/v2/extendedFields", &auth).await);
    let groups: Vec<&String> = listed.as_object().unwrap().keys().collect();
    assert_eq!(
        groups,
        [
            "CUSTOMER",
            "REGULAR_TRANSACTION",
            "REGULAR_LINEITEM",
            "PROFILE",
            "LEAD",
            "COMPANY",
            "CARD",
            "USERGROUP2"
        ]
    );
    assert_eq!(names(&listed["CUSTOMER"]), ["gender", "dob", "tier_hint"]);
    assert_eq!(names(&listed["REGULAR_TRANSACTION"]), ["size_band"]);
    assert_eq!(names(&listed["REGULAR_LINEITEM"]), ["MetalRate"]);
    assert_eq!(listed["PROFILE"], json!([]));
    let item: Vec<&String> = listed["CUSTOMER"][0].as_object().unwrap().keys().collect();
    assert_eq!(
        item,
        [
            "id",
            "name",
            "label",
            "entityType",
            "baseEntityType",
            "dataType",
            "createdBy",
            "createdOn",
            "createdOnISO",
            "modifiedBy",
            "modifiedOn",
            "modifiedOnISO"
        ]
    );
    assert_eq!(listed["CUSTOMER"][0]["label"], "Sex");

    let config = entity(&app.get("/v2/extendedFields/config?entityType=customer", &auth).await);
    assert_eq!(names(&config), ["gender", "dob", "tier_hint"]);
    assert_eq!(
        config[0]["possibleValues"],
        json!(["Male", "Female", "Other", "Prefer not to say"])
    );
    assert_eq!(config[1]["possibleValues"], json!([]));
    assert_eq!(config[1]["dataType"], "DATETIME");
    let transaction =
        entity(&app.get("/v2/extendedFields/config?entityType=TRANSACTION", &auth).await);
    assert_eq!(transaction[0]["possibleValues"], json!(["S", "M", "L"]));
    let all = entity(&app.get("/v2/extendedFields/config", &auth).await);
    assert_eq!(all.as_array().unwrap().len(), 5);

    let audit = app.audit(app.org.org_id, "EXTENDED_FIELD").await;
    assert_eq!(audit.len(), 6);
    assert_eq!(audit[0].action, "UPDATE");
}

async fn extended_fields_reject_bad_input(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    enable(&app, json!({"name": "nickname", "entityType": "customer", "dataType": "STRING"})).await;
    for body in [
        json!({"name": "gender", "entityType": "order"}),
        json!({"name": "x", "entityType": "customer", "dataType": "DATE"}),
        json!({"name": "bad-name", "entityType": "customer", "dataType": "STRING"}),
        json!({"name": "", "entityType": "customer", "dataType": "STRING"}),
        json!({"name": "gender", "entityType": "customer", "dataType": "STRING"}),
        json!({"name": "hobby", "entityType": "customer"}),
        json!({"name": "band", "entityType": "customer", "dataType": "STANDARD_ENUM"}),
        json!({"name": "band", "entityType": "customer", "dataType": "STANDARD_ENUM", "possibleValues": []}),
        json!({"name": "band", "entityType": "customer", "dataType": "STANDARD_ENUM", "possibleValues": ["a", "A"]}),
        json!({"name": "band", "entityType": "customer", "dataType": "STRING", "possibleValues": ["a"]}),
        json!({"name": "nickname", "entityType": "customer", "dataType": "INTEGER"}),
        json!({"name": "nickname", "entityType": "customer", "label": "L".repeat(101), "dataType": "STRING"}),
        json!({"entityType": "customer", "dataType": "STRING"}),
    ] {
        let response = app.post_json("/v2/extendedFields", &auth, &body).await;
        assert_v2_error(&response, 400, 400);
    }
    assert_v2_error(&app.get("/v2/extendedFields/config?entityType=bogus", &auth).await, 400, 400);
    let config = entity(&app.get("/v2/extendedFields/config", &auth).await);
    assert_eq!(names(&config), ["nickname"]);
    assert_eq!(config[0]["dataType"], "STRING");
}

// ---------------------------------------------------------------- sources, permissions, isolation

async fn org_sources_list_the_v2_sources(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let response = app.get("/v2/organization/sources", &app.basic()).await;
    response.assert_status(200);
    let sources = response.json();
    let list: Vec<&str> =
        sources.as_array().unwrap().iter().map(|s| s["source"].as_str().unwrap()).collect();
    assert_eq!(
        list,
        [
            "INSTORE",
            "FACEBOOK",
            "WEB_ENGAGE",
            "WECHAT",
            "MARTJACK",
            "TMALL",
            "TAOBAO",
            "JD",
            "ECOMMERCE",
            "WEBSITE",
            "LINE",
            "MOBILE_APP"
        ]
    );
    assert_eq!(sources[0], json!({"source": "INSTORE", "accountIds": []}));

    // Every fields endpoint is in the OpenAPI document.
    let doc = app.get("/openapi.json", "").await.json();
    for path in [
        "/v1.1/organization/configs",
        "/v1.1/organization/customfields",
        "/v2/organization/configs",
        "/v2/organization/sources",
        "/v2/customFields",
        "/v2/customField/tag",
        "/v2/orgEntity/customFields",
        "/v2/extendedFields",
        "/v2/extendedFields/config",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
    assert!(doc["paths"]["/v2/organization/configs"].get("post").is_some());
}

async fn non_admin_tills_cannot_write(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    define(&app, "TILL_CUSTOM_FIELDS", json!([{"name": "lane"}])).await;
    let pos = pos_till(&app).await;
    for (uri, body) in [
        ("/v2/organization/configs", json!({"keyName": "CONF_A", "value": "1"})),
        (
            "/v2/customFields",
            json!({"scope": "TILL_CUSTOM_FIELDS", "customFields": [{"name": "x"}]}),
        ),
        (
            "/v2/customField/tag",
            json!({"scope": "TILL_CUSTOM_FIELDS", "entityId": app.org.till_id, "customField": {"name": "lane", "value": "1"}}),
        ),
        ("/v2/extendedFields", json!({"name": "gender", "entityType": "customer"})),
    ] {
        assert_v2_error(&app.post_json(uri, &pos, &body).await, 403, 403);
    }
    // Reads need only READ on the org.
    for uri in [
        "/v2/organization/configs".to_string(),
        "/v2/customFields".to_string(),
        format!("/v2/orgEntity/customFields?entityType=TILL&entityId={}", app.org.till_id),
        "/v2/extendedFields".to_string(),
        "/v2/extendedFields/config".to_string(),
        "/v2/organization/sources".to_string(),
        "/v1.1/organization/configs".to_string(),
        "/v1.1/organization/customfields".to_string(),
    ] {
        app.get(&uri, &pos).await.assert_status(200);
    }
    assert!(app.audit(app.org.org_id, "ORG_CONFIG").await.is_empty());
    assert!(app.audit(app.org.org_id, "EXTENDED_FIELD").await.is_empty());
}

async fn orgs_are_isolated_from_each_other(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let a = app.basic();
    app.post_json("/v2/organization/configs", &a, &json!({"keyName": "CONF_X", "value": "1"}))
        .await
        .assert_status(200);
    define(&app, "TILL_CUSTOM_FIELDS", json!([{"name": "lane"}])).await;
    entity(&tag(&app, "TILL_CUSTOM_FIELDS", json!(app.org.till_id), "lane", json!("7")).await);
    enable(&app, json!({"name": "gender", "entityType": "customer"})).await;

    let beta = app.another_org("Beta").await;
    let b = basic_header(&beta.till.username, &beta.till.password);
    assert_eq!(app.get("/v2/organization/configs", &b).await.json()["configs"], json!([]));
    assert_eq!(
        app.get("/v2/organization/configs?keyName=CONF_X", &b).await.json()["configs"],
        json!([])
    );
    let v1 = app.get("/v1.1/organization/configs", &b).await.json();
    assert_eq!(v1["response"]["organization"]["configs"]["config"], json!([]));
    assert_eq!(entity(&app.get("/v2/customFields", &b).await), json!([]));
    let v1 = app.get("/v1.1/organization/customfields", &b).await.json();
    assert_eq!(v1["response"]["organization"]["custom_fields"]["field"], json!([]));
    assert_eq!(entity(&app.get("/v2/extendedFields", &b).await)["CUSTOMER"], json!([]));
    assert_eq!(entity(&app.get("/v2/extendedFields/config", &b).await), json!([]));
    let uri = format!("/v2/orgEntity/customFields?entityType=TILL&entityId={}", app.org.till_id);
    assert_v2_error(&app.get(&uri, &b).await, 404, 404);
    // Beta cannot tag Acme's till, even with a field of its own of the same name.
    let body = json!({"scope": "TILL_CUSTOM_FIELDS", "entityId": app.org.till_id, "customField": {"name": "lane", "value": "8"}});
    assert_v2_error(&app.post_json("/v2/customField/tag", &b, &body).await, 400, 400);
    let own = app
        .post_json(
            "/v2/customFields",
            &b,
            &json!({"scope": "TILL_CUSTOM_FIELDS", "customFields": [{"name": "lane"}]}),
        )
        .await;
    entity(&own);
    assert_v2_error(&app.post_json("/v2/customField/tag", &b, &body).await, 400, 400);
    app.post_json("/v2/organization/configs", &b, &json!({"keyName": "CONF_X", "value": "2"}))
        .await
        .assert_status(200);

    // Acme's data is unchanged.
    let acme_values = app.get(&uri, &a).await.json();
    assert_eq!(
        acme_values,
        json!([{"name": "lane", "value": "7", "dataType": "String", "scope": "TILL_CUSTOM_FIELDS"}])
    );
    let mut conn = app.state.db.read().await.unwrap();
    assert_eq!(
        config_value(&mut conn, OrgId(app.org.org_id), "CONF_X").await.unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(
        config_value(&mut conn, OrgId(beta.org_id), "CONF_X").await.unwrap().as_deref(),
        Some("2")
    );
    let gender = map(json!({"gender": "male"}));
    assert!(
        validate_extended_fields(&mut conn, OrgId(app.org.org_id), "customer", &gender)
            .await
            .is_ok()
    );
    assert!(matches!(
        validate_extended_fields(&mut conn, OrgId(beta.org_id), "customer", &gender).await,
        Err(FieldError::Unknown { name }) if name == "gender"
    ));
    let lane = map(json!({"lane": "1"}));
    assert!(
        validate_custom_fields(&mut conn, OrgId(beta.org_id), "TILL_CUSTOM_FIELDS", &lane)
            .await
            .is_ok()
    );
    assert!(app.audit(beta.org_id, "EXTENDED_FIELD").await.is_empty());
}

// ---------------------------------------------------------------- validation API

async fn validate_extended_fields_normalises_and_rejects(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    enable(&app, json!({"name": "gender", "entityType": "customer"})).await;
    enable(&app, json!({"name": "dob", "entityType": "customer"})).await;
    let org = OrgId(app.org.org_id);
    let mut conn = app.state.db.read().await.unwrap();

    let ok = validate_extended_fields(
        &mut conn,
        org,
        "customer",
        &map(json!({"gender": "female", "dob": "1990-05-12"})),
    )
    .await
    .unwrap();
    assert_eq!(Value::Object(ok), json!({"gender": "Female", "dob": "1990-05-12"}));
    for (given, expected) in [
        ("1990-05-12 08:30:00", "1990-05-12 08:30:00"),
        ("1990-05-12T08:30:00", "1990-05-12 08:30:00"),
        ("1990-05-12T08:30:00+05:30", "1990-05-12T08:30:00+05:30"),
        (" 1990-5-2 ", "1990-05-02"),
    ] {
        let out = validate_extended_fields(&mut conn, org, "CUSTOMER", &map(json!({"dob": given})))
            .await
            .unwrap();
        assert_eq!(out["dob"], expected, "{given}");
    }
    let out = validate_extended_fields(
        &mut conn,
        org,
        "customer",
        &map(json!({"gender": "OTHER", "dob": null})),
    )
    .await
    .unwrap();
    assert_eq!(Value::Object(out), json!({"gender": "Other", "dob": null}));
    assert!(
        validate_extended_fields(&mut conn, org, "customer", &Map::new()).await.unwrap().is_empty()
    );

    match validate_extended_fields(&mut conn, org, "customer", &map(json!({"city": "Pune"}))).await
    {
        Err(FieldError::Unknown { name }) => assert_eq!(name, "city"),
        other => panic!("{other:?}"),
    }
    match validate_extended_fields(&mut conn, org, "customer", &map(json!({"gender": "robot"})))
        .await
    {
        Err(FieldError::NotAllowed { name, value }) => {
            assert_eq!((name.as_str(), value.as_str()), ("gender", "robot"))
        }
        other => panic!("{other:?}"),
    }
    match validate_extended_fields(&mut conn, org, "customer", &map(json!({"dob": "12/05/1990"})))
        .await
    {
        Err(e @ FieldError::WrongType { .. }) => {
            let FieldError::WrongType { name, expected } = &e else { unreachable!() };
            assert_eq!(name, "dob");
            assert!(expected.contains("DATETIME"), "{expected}");
            let api = ApiError::from(e);
            assert_eq!(api.code, Code::InvalidInput);
            assert!(api.message.contains("dob"), "{}", api.message);
        }
        other => panic!("{other:?}"),
    }
    // Fields are enabled per entity type; an unknown entity type has none.
    for entity_type in ["transaction", "order"] {
        assert!(matches!(
            validate_extended_fields(&mut conn, org, entity_type, &map(json!({"gender": "Male"})))
                .await,
            Err(FieldError::Unknown { .. })
        ));
    }
    drop(conn);

    // The caller's own write transaction works as the connection too.
    let mut tx = app.state.db.begin_write().await.unwrap();
    let out = validate_extended_fields(&mut tx, org, "customer", &map(json!({"gender": "male"})))
        .await
        .unwrap();
    assert_eq!(out["gender"], "Male");
    tx.commit().await.unwrap();
}

async fn validate_custom_fields_checks_type_and_regex(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    define(
        &app,
        "LOYALTY_REGISTRATION",
        json!([
            {"name": "kids", "dataType": "Integer"},
            {"name": "pin_code", "regex": "[0-9]{6}"},
            {"name": "newsletter", "dataType": "Boolean"},
            {"name": "height", "dataType": "Double"},
        ]),
    )
    .await;
    define(&app, "LOYALTY_TRANSACTION", json!([{"name": "gift_wrap", "dataType": "Boolean"}]))
        .await;
    let org = OrgId(app.org.org_id);
    let mut conn = app.state.db.read().await.unwrap();

    let values =
        map(json!({"kids": 2, "pin_code": "560001", "newsletter": true, "height": "1.75"}));
    let out =
        validate_custom_fields(&mut conn, org, "LOYALTY_REGISTRATION", &values).await.unwrap();
    assert_eq!(
        Value::Object(out),
        json!({"kids": "2", "pin_code": "560001", "newsletter": "true", "height": "1.75"})
    );
    let out = validate_custom_fields(
        &mut conn,
        org,
        "loyalty_registration",
        &map(json!({"kids": "03", "pin_code": ""})),
    )
    .await
    .unwrap();
    assert_eq!(Value::Object(out), json!({"kids": "3", "pin_code": ""}));

    match validate_custom_fields(
        &mut conn,
        org,
        "LOYALTY_REGISTRATION",
        &map(json!({"colour": "red"})),
    )
    .await
    {
        Err(FieldError::Unknown { name }) => assert_eq!(name, "colour"),
        other => panic!("{other:?}"),
    }
    match validate_custom_fields(
        &mut conn,
        org,
        "LOYALTY_REGISTRATION",
        &map(json!({"kids": "two"})),
    )
    .await
    {
        Err(FieldError::WrongType { name, expected }) => {
            assert_eq!((name.as_str(), expected.as_str()), ("kids", "Integer"))
        }
        other => panic!("{other:?}"),
    }
    match validate_custom_fields(
        &mut conn,
        org,
        "LOYALTY_REGISTRATION",
        &map(json!({"pin_code": "56"})),
    )
    .await
    {
        Err(FieldError::NotAllowed { name, value }) => {
            assert_eq!((name.as_str(), value.as_str()), ("pin_code", "56"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        validate_custom_fields(
            &mut conn,
            org,
            "LOYALTY_REGISTRATION",
            &map(json!({"newsletter": "maybe"}))
        )
        .await,
        Err(FieldError::WrongType { .. })
    ));
    // Fields belong to their scope; an unknown scope has none.
    for scope in ["LOYALTY_TRANSACTION", "NOPE"] {
        assert!(matches!(
            validate_custom_fields(&mut conn, org, scope, &map(json!({"kids": 2}))).await,
            Err(FieldError::Unknown { .. })
        ));
    }
    let gift = validate_custom_fields(
        &mut conn,
        org,
        "LOYALTY_TRANSACTION",
        &map(json!({"gift_wrap": "TRUE"})),
    )
    .await
    .unwrap();
    assert_eq!(gift["gift_wrap"], "true");
}
