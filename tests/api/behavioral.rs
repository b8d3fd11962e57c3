//! Behavioral events: define, update, list, describe and disable events; post events and read
//! them back (by request id, by customer, logs, search, running status); the outbox entry; bad
//! input that writes nothing; duplicates; permissions; org isolation.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header, request};

backend_tests!(
    define_update_list_and_describe_events,
    definitions_reject_bad_input_and_write_nothing,
    post_an_event_and_read_it_back,
    bad_posts_get_documented_errors_and_write_nothing,
    duplicates_are_stored_but_not_raised,
    concurrent_duplicates_raise_one_event,
    disable_and_running_status,
    search_filters_sorts_and_pages,
    events_need_the_right_permissions,
    events_are_isolated_between_orgs,
);

const PASSWORD: &str = "till-pass-1";

// ---------------------------------------------------------------- helpers

#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
    assert_eq!(response.json()["errors"][0]["status"], false);
}

/// The `be_reserved` event of the spec's Post Event example, plus typed fields.
fn reservation() -> Value {
    json!({
        "eventName": "be_reserved",
        "description": "Room reservations",
        "actions": ["EMFConsumer", "EIConsumer"],
        "fields": [
            {"name": "customer_id", "type": "customer", "attributes": {
                "identifierType": {"value": "mobile", "valueType": "ENUM"},
                "isRequired": {"value": "true", "valueType": "Boolean"}}},
            {"name": "age", "type": "double",
             "attributes": {"isRequired": {"value": "true", "valueType": "Boolean"}}},
            {"name": "hotel_name", "type": "string",
             "attributes": {"isRequired": {"value": "true", "valueType": "Boolean"}}},
            {"name": "room_nights", "type": "enum", "attributes": {
                "possibleValues": {"valueType": "ENUM", "values": ["1", "2", "12"]}}},
            {"name": "guests", "type": "integer"},
            {"name": "smoking", "type": "boolean"},
            {"name": "check_in", "type": "datetime"},
            {"name": "passport", "type": "string", "attributes": {"isPsiData": true}},
            {"name": "till", "type": "tillCode"},
        ],
    })
}

async fn define(app: &TestApp, auth: &str, body: &Value) -> TestResponse {
    app.post_json("/v2/events", auth, body).await
}

/// Registers a customer with a mobile number; its id.
async fn add_customer(app: &TestApp, auth: &str, mobile: &str) -> i64 {
    let body = json!({"profiles": [{"firstName": "Ana",
        "identifiers": [{"type": "mobile", "value": mobile}]}]});
    let response = app.post_json("/v2/customers", auth, &body).await;
    response.assert_status(200);
    response.json()["createdId"].as_i64().unwrap_or_else(|| panic!("{}", response.body))
}

/// Posts an event, with an `X-CAP-REQUEST-ID` when given.
async fn post(app: &TestApp, auth: &str, request_id: Option<&str>, body: &Value) -> TestResponse {
    post_to(app, "/v2/events/event_data", auth, request_id, body).await
}

async fn post_to(
    app: &TestApp,
    uri: &str,
    auth: &str,
    request_id: Option<&str>,
    body: &Value,
) -> TestResponse {
    let mut builder = request(Method::POST, uri)
        .header("authorization", auth)
        .header("content-type", "application/json");
    if let Some(id) = request_id {
        builder = builder.header("x-cap-request-id", id);
    }
    app.send(builder.body(Body::from(body.to_string())).unwrap()).await
}

fn reservation_post(mobile: &str, hotel: &str) -> Value {
    json!({
        "event_name": "be_reserved",
        "customer_id": mobile,
        "age": 20,
        "hotel_name": hotel,
        "room_nights": "12",
    })
}

async fn get_ok(app: &TestApp, auth: &str, uri: &str) -> Value {
    let response = app.get(uri, auth).await;
    response.assert_status(200);
    response.json()
}

/// Payloads of the org's outbox entries of one type, oldest first.
async fn outbox(app: &TestApp, org: i64, event_type: &str) -> Vec<Value> {
    let mut conn = app.state.db.read().await.unwrap();
    let rows: Vec<String> = perks::dispatch!(&mut conn, |e| sqlx::query_scalar(
        "SELECT payload FROM domain_events WHERE org_id = $1 AND event_type = $2 ORDER BY id"
    )
    .bind(org)
    .bind(event_type)
    .fetch_all(e)
    .await)
    .unwrap();
    rows.iter().map(|p| serde_json::from_str(p).unwrap()).collect()
}

/// Rows of a table for the org.
async fn count(app: &TestApp, org: i64, table: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE org_id = $1");
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar(&sql).bind(org).fetch_one(e).await).unwrap()
}

/// Adds an access group with the given permissions JSON and a till in it; its Basic header.
async fn till_in_group(app: &TestApp, group: &str, permissions: &str, name: &str) -> String {
    app.exec_sql(&format!(
        "INSERT INTO access_groups (org_id, name, permissions, created_at) \
         VALUES ({}, '{group}', '{permissions}', 0)",
        app.org.org_id
    ))
    .await;
    let body = json!({"name": name, "password": PASSWORD, "storeId": app.org.store_id,
        "accessGroup": group});
    app.post_json("/v2/orgEntity/till", &app.basic(), &body).await.assert_status(200);
    basic_header(name, PASSWORD)
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|e| e["eventName"].as_str().unwrap().to_string()).collect()
}

/// `YYYY-MM-DD HH:MM:SS` in Asia/Kolkata (the test org's zone), `hours` from now.
fn local_time(hours: i64) -> (String, i64) {
    let now = chrono::Utc::now();
    let t = now + chrono::Duration::hours(hours);
    let local = t.with_timezone(&chrono_tz::Asia::Kolkata).format("%Y-%m-%d %H:%M:%S").to_string();
    let millis = t.timestamp() * 1000;
    (local, millis)
}

// ---------------------------------------------------------------- definitions

async fn define_update_list_and_describe_events(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let listed = get_ok(&app, &auth, "/v2/events").await;
    assert_eq!(listed, json!({"data": [], "warnings": [], "errors": []}));

    let created = define(&app, &auth, &reservation()).await;
    created.assert_status(200);
    let body = created.json();
    let event_id = body["createdId"].as_str().unwrap().to_string();
    assert_eq!(event_id.len(), 32, "{body}");
    let meta = &body["clickEventsMeta"];
    assert_eq!(meta["eventId"], json!(event_id));
    assert_eq!(meta["eventName"], "be_reserved");
    assert_eq!(meta["description"], "Room reservations");
    assert_eq!(meta["actions"], json!(["EMFConsumer", "EIConsumer"]));
    assert_eq!(meta["orgId"], app.org.org_id);
    assert_eq!(meta["status"], "PUBLISHED");
    assert_eq!(meta["standardEvent"], false);
    let fields = meta["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 9);
    assert_eq!(fields[0]["name"], "customer_id");
    assert_eq!(fields[0]["type"], "CUSTOMER");
    assert_eq!(fields[0]["attributes"]["identifierType"]["value"], "mobile");
    assert_eq!(fields[0]["attributes"]["isRequired"]["value"], "true");
    assert_eq!(fields[1]["type"], "DOUBLE");
    assert_eq!(fields[3]["type"], "ENUM");
    assert_eq!(fields[3]["attributes"]["possibleValues"]["values"], json!(["1", "2", "12"]));
    assert_eq!(fields[4]["type"], "INTEGER");
    assert_eq!(fields[4]["attributes"]["isRequired"]["value"], "false");
    assert_eq!(fields[7]["attributes"]["isPsiData"]["value"], "true");
    assert_eq!(fields[8]["type"], "TILLCODE");

    // Listed and described the same way.
    let listed = get_ok(&app, &auth, "/v2/events").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["clickEventsMeta"], *meta);
    let described = get_ok(&app, &auth, "/v2/events/meta?event_name=be_reserved").await;
    assert_eq!(described["clickEventsMeta"], *meta);
    assert_eq!(described["warnings"], json!([]));
    assert_v2_error(&app.get("/v2/events/meta?event_name=nope", &auth).await, 404, 404);
    assert_v2_error(&app.get("/v2/events/meta", &auth).await, 400, 400);

    // The same name again: 1806, nothing written.
    assert_v2_error(&define(&app, &auth, &reservation()).await, 400, 1806);
    assert_eq!(count(&app, app.org.org_id, "behavioral_events").await, 1);

    // A second event; names are case-sensitive.
    let other = json!({"eventName": "BE_RESERVED", "actions": ["EIConsumer"]});
    define(&app, &auth, &other).await.assert_status(200);
    let listed = get_ok(&app, &auth, "/v2/events").await;
    let metas: Value =
        listed["data"].as_array().unwrap().iter().map(|d| d["clickEventsMeta"].clone()).collect();
    assert_eq!(names(&metas), ["be_reserved", "BE_RESERVED"]);

    // Update: the whole payload again, with a field removed and one added.
    let mut update = reservation();
    update["description"] = json!("Reservations v2");
    update["actions"] = json!(["EIConsumer"]);
    let fields = update["fields"].as_array_mut().unwrap();
    fields.retain(|f| f["name"] != "guests");
    fields.push(json!({"name": "board", "type": "string"}));
    let updated = app.put_json("/v2/events", &auth, &update).await;
    updated.assert_status(200);
    let meta = updated.json()["clickEventsMeta"].clone();
    assert_eq!(meta["eventId"], json!(event_id));
    assert_eq!(meta["description"], "Reservations v2");
    assert_eq!(meta["actions"], json!(["EIConsumer"]));
    assert_eq!(meta["version"], 2);
    let field_names: Vec<&str> =
        meta["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(!field_names.contains(&"guests") && field_names.contains(&"board"));
    let unknown = json!({"eventName": "never_defined", "actions": ["EIConsumer"]});
    assert_v2_error(&app.put_json("/v2/events", &auth, &unknown).await, 404, 404);

    // Audit records and outbox entries of each change.
    let audit = app.audit(app.org.org_id, "BEHAVIORAL_EVENT").await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["UPDATE", "CREATE", "CREATE"]);
    assert_eq!(outbox(&app, app.org.org_id, "behavioral_definition.created").await.len(), 2);
    let updates = outbox(&app, app.org.org_id, "behavioral_definition.updated").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["eventId"], json!(event_id));
}

async fn definitions_reject_bad_input_and_write_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let with_fields =
        |fields: Value| json!({"eventName": "ev", "actions": ["EMFConsumer"], "fields": fields});
    let too_many: Vec<Value> =
        (0..101).map(|i| json!({"name": format!("f{i}"), "type": "string"})).collect();
    let cases = [
        (json!({"actions": ["EMFConsumer"]}), 1811),
        (json!({"eventName": "", "actions": ["EMFConsumer"]}), 1811),
        (json!({"eventName": "Promotion Viewed", "actions": ["EMFConsumer"]}), 1811),
        (json!({"eventName": "x".repeat(101), "actions": ["EMFConsumer"]}), 1811),
        (json!({"eventName": "ev"}), 1810),
        (json!({"eventName": "ev", "actions": []}), 1810),
        (json!({"eventName": "ev", "actions": ["Kafka"]}), 1810),
        (json!({"eventName": "ev", "actions": [42]}), 1810),
        (with_fields(json!([{"name": "a", "type": "blob"}])), 1823),
        (with_fields(json!([{"name": "a"}])), 1823),
        (
            with_fields(json!([{"name": "a", "type": "string",
            "attributes": {"isRequired": {"value": "sometimes"}}}])),
            1802,
        ),
        (
            with_fields(json!([{"name": "a", "type": "string",
            "attributes": {"isUniqueKeyField": true}}])),
            1802,
        ),
        (with_fields(json!([{"type": "string"}])), 400),
        (with_fields(json!([{"name": "1abc", "type": "string"}])), 400),
        (with_fields(json!([{"name": "n".repeat(101), "type": "string"}])), 400),
        (
            with_fields(json!([{"name": "a", "type": "string"}, {"name": "A", "type": "double"}])),
            400,
        ),
        (with_fields(json!([{"name": "event_name", "type": "string"}])), 400),
        (
            with_fields(
                json!([{"name": "c", "type": "customer"}, {"name": "d", "type": "customer"}]),
            ),
            400,
        ),
        (
            with_fields(json!([{"name": "c", "type": "customer",
            "attributes": {"identifierType": "fcmToken"}}])),
            400,
        ),
        (
            with_fields(json!([{"name": "c", "type": "customer",
            "attributes": {"isPsiData": true}}])),
            400,
        ),
        (
            with_fields(json!([{"name": "c", "type": "customer",
            "attributes": {"source": "MARS"}}])),
            400,
        ),
        (with_fields(json!([{"name": "e", "type": "enum"}])), 400),
        (
            with_fields(json!([{"name": "e", "type": "enum",
            "attributes": {"possibleValues": ["a", "a"]}}])),
            400,
        ),
        (
            with_fields(json!([{"name": "s", "type": "double",
            "attributes": {"possibleValues": ["a"]}}])),
            400,
        ),
        (with_fields(json!([{"name": "s", "type": "string", "attributes": {"regex": "(("}}])), 400),
        (
            with_fields(json!([{"name": "s", "type": "string", "attributes": {"colour": "red"}}])),
            400,
        ),
        (with_fields(json!(too_many)), 400),
        (
            json!({"eventName": "ev", "actions": ["EMFConsumer"], "description": "d".repeat(501)}),
            400,
        ),
        (json!({"eventName": "ev", "actions": ["EMFConsumer"], "fields": {"a": 1}}), 400),
        (json!([1, 2]), 400),
    ];
    for (body, code) in cases {
        let response = define(&app, &auth, &body).await;
        assert_v2_error(&response, 400, code);
    }
    // Malformed JSON and a wrong content type get the envelope too.
    let malformed = app
        .send(
            request(Method::POST, "/v2/events")
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(Body::from("{\"eventName\":"))
                .unwrap(),
        )
        .await;
    assert_v2_error(&malformed, 400, 400);
    assert_eq!(get_ok(&app, &auth, "/v2/events").await["data"], json!([]));
    assert_eq!(count(&app, app.org.org_id, "behavioral_events").await, 0);
    assert!(app.audit(app.org.org_id, "BEHAVIORAL_EVENT").await.is_empty());
}

// ---------------------------------------------------------------- posting

async fn post_an_event_and_read_it_back(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(&app, &auth, &reservation()).await.assert_status(200);
    let user = add_customer(&app, &auth, "919800000001").await;
    let (check_in, check_in_millis) = local_time(-2);
    let (event_time, event_millis) = local_time(-1);

    let mut body = reservation_post("9800000001", "Indiranagar");
    body["guests"] = json!("3");
    body["smoking"] = json!(false);
    body["check_in"] = json!(check_in);
    body["passport"] = json!("P123");
    body["external_event_id"] = json!("RAND121");
    body["eventDateTime"] = json!(event_time);
    let uri = "/v2/events/event_data?webhookId=wh-1";
    let mut builder = request(Method::POST, uri)
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .header("x-cap-request-id", "req-0001")
        .header("x-cap-client-countrycode", "91");
    builder = builder.header("x-request-id", "ours-1");
    let response = app.send(builder.body(Body::from(body.to_string())).unwrap()).await;
    response.assert_status(200);
    let answer = response.json();
    assert_eq!(answer["status"], json!({"code": 200, "message": "Event processed successfully"}));
    assert_eq!(answer["requestId"], "req-0001");
    assert_eq!(answer["isDuplicate"], false);
    let event_id = answer["eventId"].as_str().unwrap().to_string();

    // By request id.
    let data = get_ok(&app, &auth, "/v2/events/event_data?id=req-0001").await;
    assert_eq!(data["errors"], json!([]));
    let events = data["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{data}");
    let e = &events[0];
    assert_eq!(e["orgId"], app.org.org_id);
    assert_eq!(e["userId"], user);
    assert_eq!(e["eventName"], "be_reserved");
    assert_eq!(e["displayName"], "be_reserved");
    assert_eq!(e["eventId"], json!(event_id));
    assert_eq!(e["requestId"], "req-0001");
    assert_eq!(e["source"], "INSTORE");
    assert_eq!(e["tillCode"], json!(app.org.till.username));
    assert!(e["date"].as_str().unwrap().ends_with("+05:30"), "{e}");
    let attributes = &e["additonalAttributes"];
    assert_eq!(attributes["age"], json!(20.0));
    assert_eq!(attributes["hotel_name"], "Indiranagar");
    assert_eq!(attributes["room_nights"], "12");
    assert_eq!(attributes["guests"], 3);
    assert_eq!(attributes["smoking"], false);
    assert_eq!(attributes["check_in"], json!(check_in_millis));
    assert_eq!(attributes["customer_id"], "9800000001");
    assert_eq!(attributes["external_event_id"], "RAND121");
    assert_eq!(attributes["isDuplicate"], false);
    assert_eq!(attributes["eventDateTime"], json!(event_millis));
    assert!(attributes.get("passport").is_none(), "PSI stays out of the attributes");
    assert_eq!(e["psiAttributes"], json!({"passport": "P123"}));
    let none = get_ok(&app, &auth, "/v2/events/event_data?id=unknown").await;
    assert_eq!(none["data"], json!([]));
    assert_v2_error(&app.get("/v2/events/event_data", &auth).await, 400, 400);

    // The outbox entry, written with the event.
    let raised = outbox(&app, app.org.org_id, "behavioral.event").await;
    assert_eq!(raised.len(), 1);
    let payload = &raised[0];
    assert_eq!(payload["eventName"], "be_reserved");
    assert_eq!(payload["eventId"], json!(event_id));
    assert_eq!(payload["requestId"], "req-0001");
    assert_eq!(payload["customerId"], user);
    assert_eq!(payload["eventDateTime"], json!(event_millis));
    assert_eq!(payload["attributes"]["hotel_name"], "Indiranagar");
    assert_eq!(payload["actions"], json!(["EMFConsumer", "EIConsumer"]));
    let audit = app.audit(app.org.org_id, "BEHAVIORAL_EVENT_DATA").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "POST");

    // Without X-CAP-REQUEST-ID the request's own id is the request id; a TILLCODE attribute
    // names the till.
    let mut second = reservation_post("919800000001", "Whitefield");
    second["till"] = json!(app.org.till.username);
    let mut builder = request(Method::POST, "/v2/events/event_data")
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .header("x-request-id", "own-request-7");
    builder = builder.header("x-cap-client-countrycode", "91");
    let response = app.send(builder.body(Body::from(second.to_string())).unwrap()).await;
    response.assert_status(200);
    assert_eq!(response.json()["requestId"], "own-request-7");
    let second_id = response.json()["eventId"].as_str().unwrap().to_string();

    // The customer's events, newest first, paged.
    let mine = get_ok(&app, &auth, &format!("/v2/events/event_data/{user}")).await;
    assert_eq!(mine["pagination"], json!({"limit": 10, "offset": 0, "total": 2}));
    let ids: Vec<&str> =
        mine["data"].as_array().unwrap().iter().map(|e| e["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids, [second_id.as_str(), event_id.as_str()]);
    let page = get_ok(&app, &auth, &format!("/v2/events/event_data/{user}?limit=1&offset=1")).await;
    assert_eq!(page["data"][0]["eventId"], json!(event_id));
    let asc = get_ok(&app, &auth, &format!("/v2/events/event_data/{user}?sortOrder=asc")).await;
    assert_eq!(asc["data"][0]["eventId"], json!(event_id));
    assert_v2_error(&app.get("/v2/events/event_data/999999", &auth).await, 404, 8015);
    assert_v2_error(&app.get("/v2/events/event_data/abc", &auth).await, 400, 400);

    // The event log, newest first.
    let logs = get_ok(&app, &auth, "/v2/events/logs?event_name=be_reserved").await;
    let entries = logs["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["id"], json!(event_id));
    assert_eq!(entries[1]["status"], "EVENT_SUCCESS");
    assert_eq!(entries[1]["webhookId"], "wh-1");
    assert_eq!(entries[1]["orgId"], app.org.org_id);
    assert_eq!(entries[1]["parentOrgId"], -1);
    assert!(entries[1]["responseTime"].as_i64().unwrap() >= 0);
    let input: Value = serde_json::from_str(entries[1]["inputRequest"].as_str().unwrap()).unwrap();
    assert_eq!(input["hotel_name"], "Indiranagar");
    assert_eq!(input["passport"], "******", "PSI values are masked in the log");
    let limited = get_ok(&app, &auth, "/v2/events/logs?limit=1").await;
    assert_eq!(limited["data"].as_array().unwrap().len(), 1);
    let other = get_ok(&app, &auth, "/v2/events/logs?event_name=other").await;
    assert_eq!(other["data"], json!([]));

    // Search by customer identifier, and by attribute value (numbers compare as numbers).
    let found = get_ok(
        &app,
        &auth,
        "/v2/events/search?userIdentifierType=mobile&userIdentifierValue=919800000001\
         &hotel_name=Indiranagar&age=20&includeSideEffects=true",
    )
    .await;
    assert_eq!(found["pagination"]["total"], 1, "{found}");
    assert_eq!(found["data"][0]["eventId"], json!(event_id));
    assert!(found["data"][0]["date"].is_i64());
    assert_eq!(found["data"][0]["clickEventSideEffects"]["requestId"], "req-0001");
    let by_id = get_ok(&app, &auth, &format!("/v2/events/search?eventId={second_id}")).await;
    assert_eq!(by_id["data"][0]["additonalAttributes"]["hotel_name"], "Whitefield");

    // Running status of one posted event.
    let running =
        get_ok(&app, &auth, &format!("/v2/events/running_status?eventId={event_id}")).await;
    assert_eq!(running["id"], json!(event_id));
    assert_eq!(running["eventName"], "be_reserved");
    let states: Vec<&str> = running["stateList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"EVENT_PROCESSING_STARTED"));
    assert!(states.contains(&"EVENT_VALIDATION_FINISHED"));
    assert_eq!(states.iter().filter(|s| **s == "EVENT_CONSUMER_QUEUED").count(), 2);
}

async fn bad_posts_get_documented_errors_and_write_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(&app, &auth, &reservation()).await.assert_status(200);
    add_customer(&app, &auth, "919800000001").await;
    let good = reservation_post("919800000001", "Indiranagar");
    let with = |key: &str, value: Value| {
        let mut b = good.clone();
        b[key] = value;
        b
    };
    let without = |key: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(key);
        b
    };
    let big = "x".repeat(70 * 1024);
    let cases = [
        (with("event_name", json!("never_defined")), 404, 404),
        (with("event_name", json!("bad name")), 400, 1811),
        (without("event_name"), 400, 1811),
        (with("event_name", json!(7)), 400, 1811),
        (without("age"), 400, 1802),
        (without("hotel_name"), 400, 1802),
        (without("customer_id"), 400, 1802),
        (with("age", json!(null)), 400, 1802),
        (with("age", json!("twenty")), 400, 400),
        (with("age", json!([20])), 400, 400),
        (with("guests", json!(2.5)), 400, 400),
        (with("smoking", json!("sometimes")), 400, 400),
        (with("room_nights", json!("7")), 400, 400),
        (with("hotel_name", json!(12)), 400, 400),
        (with("check_in", json!("next tuesday")), 400, 400),
        (with("unknown_attribute", json!("x")), 400, 400),
        (with("eventDateTime", json!("2999-01-01 00:00:00")), 400, 400),
        (with("external_event_id", json!("has space")), 400, 400),
        (with("hotel_name", json!(big)), 413, 413),
        (with("customer_id", json!("919811111111")), 404, 8015),
        (with("customer_id", json!("not-a-mobile")), 404, 8015),
        (with("till", json!("no.such.till")), 400, 671),
        (json!(["be_reserved"]), 400, 400),
    ];
    for (body, status, code) in cases {
        let response = post(&app, &auth, None, &body).await;
        assert_v2_error(&response, status, code);
    }
    // A request id that is not a token, a webhook id too long.
    assert_v2_error(&post(&app, &auth, Some("has space"), &good).await, 400, 400);
    let long = format!("/v2/events/event_data?webhookId={}", "w".repeat(101));
    assert_v2_error(&post_to(&app, &long, &auth, None, &good).await, 400, 400);
    // A body beyond the server's limit.
    let huge = with("hotel_name", json!("y".repeat(2 * 1024 * 1024)));
    assert_v2_error(&post(&app, &auth, None, &huge).await, 413, 413);

    // Nothing was written by any of them.
    let org = app.org.org_id;
    assert_eq!(count(&app, org, "behavioral_event_data").await, 0);
    assert_eq!(count(&app, org, "behavioral_event_attributes").await, 0);
    assert_eq!(count(&app, org, "behavioral_event_keys").await, 0);
    assert!(outbox(&app, org, "behavioral.event").await.is_empty());
    assert!(app.audit(org, "BEHAVIORAL_EVENT_DATA").await.is_empty());
    assert_eq!(get_ok(&app, &auth, "/v2/events/logs").await["data"], json!([]));

    // The good one still goes through.
    post(&app, &auth, None, &good).await.assert_status(200);
    assert_eq!(count(&app, org, "behavioral_event_data").await, 1);
}

async fn duplicates_are_stored_but_not_raised(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    add_customer(&app, &auth, "919800000002").await;
    // A unique key field: (event, customer, coupon) must be unique.
    let scan = json!({"eventName": "offer_scan", "actions": ["EMFConsumer"], "fields": [
        {"name": "customer", "type": "customer"},
        {"name": "coupon", "type": "couponCode",
         "attributes": {"isRequired": true, "isUniqueKeyField": true}},
    ]});
    define(&app, &auth, &scan).await.assert_status(200);
    let body = |mobile: &str, coupon: &str| json!({"event_name": "offer_scan", "customer": mobile, "coupon": coupon});
    let first = post(&app, &auth, None, &body("919800000001", "C1")).await;
    first.assert_status(200);
    assert_eq!(first.json()["isDuplicate"], false);
    let again = post(&app, &auth, None, &body("919800000001", "C1")).await;
    again.assert_status(200);
    assert_eq!(again.json()["isDuplicate"], true);
    assert_eq!(again.json()["status"]["message"], "Duplicate event: recorded, not processed");
    // Another customer or another coupon is not a duplicate.
    for (mobile, coupon) in [("919800000002", "C1"), ("919800000001", "C2")] {
        let response = post(&app, &auth, None, &body(mobile, coupon)).await;
        assert_eq!(response.json()["isDuplicate"], false, "{}", response.body);
    }
    assert_eq!(outbox(&app, app.org.org_id, "behavioral.event").await.len(), 3);
    let duplicates = get_ok(
        &app,
        &auth,
        &format!("/v2/events/search?userIdentifierType=userId&userIdentifierValue={user}&isDuplicate=true"),
    )
    .await;
    assert_eq!(duplicates["pagination"]["total"], 1);
    assert_eq!(duplicates["data"][0]["additonalAttributes"]["isDuplicate"], true);
    let originals = get_ok(&app, &auth, "/v2/events/search?isDuplicate=false").await;
    assert_eq!(originals["pagination"]["total"], 3);
    let logs = get_ok(&app, &auth, "/v2/events/logs").await;
    let statuses: Vec<&str> =
        logs["data"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["EVENT_SUCCESS", "EVENT_SUCCESS", "EVENT_DUPLICATE", "EVENT_SUCCESS"]);

    // Without unique key fields, external_event_id de-duplicates.
    let view = json!({"eventName": "page_view", "actions": ["EIConsumer"], "fields": [
        {"name": "customer", "type": "customer"}, {"name": "page", "type": "string"}]});
    define(&app, &auth, &view).await.assert_status(200);
    let viewed = |external: Option<&str>| {
        let mut b = json!({"event_name": "page_view", "customer": "919800000001", "page": "/"});
        if let Some(x) = external {
            b["external_event_id"] = json!(x);
        }
        b
    };
    let flags: Vec<Value> = {
        let mut flags = Vec::new();
        for external in [Some("E-1"), Some("E-1"), Some("E-2"), None, None] {
            let response = post(&app, &auth, None, &viewed(external)).await;
            response.assert_status(200);
            flags.push(response.json()["isDuplicate"].clone());
        }
        flags
    };
    assert_eq!(flags, [json!(false), json!(true), json!(false), json!(false), json!(false)]);
    assert_eq!(outbox(&app, app.org.org_id, "behavioral.event").await.len(), 7);
}

async fn concurrent_duplicates_raise_one_event(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_customer(&app, &auth, "919800000001").await;
    let def = json!({"eventName": "checkin", "actions": ["EMFConsumer"], "fields": [
        {"name": "customer", "type": "customer"}]});
    define(&app, &auth, &def).await.assert_status(200);
    let body = json!({"event_name": "checkin", "customer": "919800000001",
        "external_event_id": "same-1"});
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, auth, body) = (app.clone(), auth.clone(), body.clone());
        tasks.push(tokio::spawn(async move { post(&app, &auth, None, &body).await }));
    }
    let mut originals = 0;
    for task in tasks {
        let response = task.await.unwrap();
        response.assert_status(200);
        if response.json()["isDuplicate"] == false {
            originals += 1;
        }
    }
    assert_eq!(originals, 1);
    assert_eq!(count(&app, app.org.org_id, "behavioral_event_data").await, 8);
    assert_eq!(outbox(&app, app.org.org_id, "behavioral.event").await.len(), 1);
}

async fn disable_and_running_status(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(&app, &auth, &reservation()).await.assert_status(200);
    define(&app, &auth, &json!({"eventName": "quiet", "actions": ["EIConsumer"]}))
        .await
        .assert_status(200);
    add_customer(&app, &auth, "919800000001").await;

    let running = get_ok(&app, &auth, "/v2/events/running_status").await;
    assert_eq!(
        running["data"],
        json!([
            {"eventName": "be_reserved", "status": "RUNNING", "lastReceivedOn": null},
            {"eventName": "quiet", "status": "RUNNING", "lastReceivedOn": null},
        ])
    );
    post(&app, &auth, None, &reservation_post("919800000001", "A")).await.assert_status(200);
    let running = get_ok(&app, &auth, "/v2/events/running_status").await;
    assert!(running["data"][0]["lastReceivedOn"].as_str().unwrap().ends_with("+05:30"));
    assert!(running["data"][1]["lastReceivedOn"].is_null());
    assert_v2_error(&app.get("/v2/events/running_status?eventId=nope", &auth).await, 404, 404);

    // Disable: the event stops accepting posts; reads still work.
    let disabled =
        app.put_json("/v2/events/disable?event_name=be_reserved", &auth, &json!({})).await;
    disabled.assert_status(200);
    assert_eq!(disabled.json()["clickEventsMeta"]["status"], "DISABLED");
    assert_eq!(disabled.json()["warnings"], json!([]));
    let refused = post(&app, &auth, None, &reservation_post("919800000001", "B")).await;
    assert_v2_error(&refused, 400, 1812);
    assert_eq!(count(&app, app.org.org_id, "behavioral_event_data").await, 1);
    let running = get_ok(&app, &auth, "/v2/events/running_status").await;
    assert_eq!(running["data"][0]["status"], "STOPPED");
    assert_eq!(running["data"][1]["status"], "RUNNING");
    let meta = get_ok(&app, &auth, "/v2/events/meta?event_name=be_reserved").await;
    assert_eq!(meta["clickEventsMeta"]["active"], false);

    // Again: a warning, no change, no second audit record.
    let again = app.put_json("/v2/events/disable?event_name=be_reserved", &auth, &json!({})).await;
    again.assert_status(200);
    assert_eq!(again.json()["warnings"][0]["code"], 1812);
    let audit = app.audit(app.org.org_id, "BEHAVIORAL_EVENT").await;
    assert_eq!(audit.iter().filter(|a| a.action == "DISABLE").count(), 1);
    assert_eq!(outbox(&app, app.org.org_id, "behavioral_definition.disabled").await.len(), 1);
    // An update keeps it disabled.
    app.put_json("/v2/events", &auth, &reservation()).await.assert_status(200);
    let refused = post(&app, &auth, None, &reservation_post("919800000001", "C")).await;
    assert_v2_error(&refused, 400, 1812);

    let empty = json!({});
    let unknown = app.put_json("/v2/events/disable?event_name=nope", &auth, &empty).await;
    assert_v2_error(&unknown, 404, 404);
    let unnamed = app.put_json("/v2/events/disable", &auth, &empty).await;
    assert_v2_error(&unnamed, 400, 400);
}

async fn search_filters_sorts_and_pages(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(&app, &auth, &reservation()).await.assert_status(200);
    let other = json!({"eventName": "page_view", "actions": ["EIConsumer"], "fields": [
        {"name": "customer", "type": "customer", "attributes": {"identifierType": "userId"}},
        {"name": "page", "type": "string"}]});
    define(&app, &auth, &other).await.assert_status(200);
    let ana = add_customer(&app, &auth, "919800000001").await;
    let ben = add_customer(&app, &auth, "919800000002").await;

    // Four reservations at known event times (hours ago), and one page view.
    let mut at = Vec::new();
    for (i, (mobile, hours)) in
        [("919800000001", -30), ("919800000002", -20), ("919800000001", -10), ("919800000001", -5)]
            .iter()
            .enumerate()
    {
        let (local, millis) = local_time(*hours);
        let mut body = reservation_post(mobile, if i % 2 == 0 { "Palace" } else { "Tower" });
        body["eventDateTime"] = json!(local);
        body["age"] = json!(20 + i);
        post(&app, &auth, None, &body).await.assert_status(200);
        at.push(millis);
    }
    let view = json!({"event_name": "page_view", "customer": ana.to_string(), "page": "/home"});
    post(&app, &auth, None, &view).await.assert_status(200);

    let search = |query: String| {
        let app = &app;
        let auth = &auth;
        async move {
            let response = app.get(&format!("/v2/events/search?{query}"), auth).await;
            response.assert_status(200);
            response.json()
        }
    };
    let event_times = |body: &Value| -> Vec<i64> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["additonalAttributes"]["eventDateTime"].as_i64().unwrap())
            .collect()
    };

    // Everything, newest event first; the page view was posted now.
    let all = search(String::new()).await;
    assert_eq!(all["pagination"], json!({"limit": 10, "offset": 0, "total": 5}));
    assert_eq!(all["data"][0]["eventName"], "page_view");
    let reservations = search("eventName=be_reserved".into()).await;
    assert_eq!(event_times(&reservations), [at[3], at[2], at[1], at[0]]);
    let ascending = search("eventName=be_reserved&sortOrder=asc&limit=2&offset=1".into()).await;
    assert_eq!(ascending["pagination"], json!({"limit": 2, "offset": 1, "total": 4}));
    assert_eq!(event_times(&ascending), [at[1], at[2]]);

    // Date range on event time (ISO local date-time in the org's zone).
    let (from, _) = local_time(-25);
    let (till, _) = local_time(-8);
    let range = search(format!(
        "eventName=be_reserved&fromDate={}&tillDate={}",
        from.replace(' ', "T"),
        till.replace(' ', "T")
    ))
    .await;
    assert_eq!(event_times(&range), [at[2], at[1]]);

    // By customer (mobile in INSTORE, or userId), with other filters.
    let anas = search("userIdentifierType=mobile&userIdentifierValue=919800000001".into()).await;
    assert_eq!(anas["pagination"]["total"], 4);
    let bens = search(format!("userIdentifierType=userId&userIdentifierValue={ben}")).await;
    assert_eq!(event_times(&bens), [at[1]]);
    let anas_palace = search(format!(
        "userIdentifierType=userId&userIdentifierValue={ana}&hotel_name=Palace&eventName=be_reserved"
    ))
    .await;
    assert_eq!(event_times(&anas_palace), [at[2], at[0]]);
    let by_age = search("age=21.0".into()).await;
    assert_eq!(event_times(&by_age), [at[1]]);
    let nothing = search("hotel_name=Nowhere".into()).await;
    assert_eq!(nothing["pagination"]["total"], 0);
    let home = search("page=/home".into()).await;
    assert_eq!(home["data"][0]["userId"], ana);

    // Bad parameters.
    for query in [
        "limit=0",
        "limit=101",
        "limit=x",
        "offset=-1",
        "sortOrder=sideways",
        "isDuplicate=maybe",
        "includeSideEffects=2",
        "fromDate=yesterday",
        "userIdentifierType=mobile",
        "userIdentifierType=shoeSize&userIdentifierValue=9",
        "userGroupIdentifierType=groupId&userGroupIdentifierValue=1",
        "a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11",
        "bad%20key=1",
    ] {
        let response = app.get(&format!("/v2/events/search?{query}"), &auth).await;
        assert_v2_error(&response, 400, 400);
    }
    let bad_name = app.get("/v2/events/search?eventName=bad%20name", &auth).await;
    assert_v2_error(&bad_name, 400, 1811);
    let unknown = app
        .get("/v2/events/search?userIdentifierType=mobile&userIdentifierValue=919811111111", &auth)
        .await;
    assert_v2_error(&unknown, 404, 8015);
}

// ---------------------------------------------------------------- permissions, isolation

async fn events_need_the_right_permissions(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(&app, &auth, &reservation()).await.assert_status(200);
    add_customer(&app, &auth, "919800000001").await;
    let good = reservation_post("919800000001", "A");
    post(&app, &auth, Some("req-1"), &good).await.assert_status(200);

    // A POS till (the default group of new tills) posts events and reads them.
    let pos_body = json!({"name": "pos.events", "password": PASSWORD, "storeId": app.org.store_id});
    app.post_json("/v2/orgEntity/till", &auth, &pos_body).await.assert_status(200);
    let pos = basic_header("pos.events", PASSWORD);
    post(&app, &pos, None, &good).await.assert_status(200);

    // Read-only on events: reads work, writes are 403 and change nothing.
    let reader = till_in_group(&app, "EventReaders", r#"{"EVENTS":"READ"}"#, "reader.events").await;
    for uri in [
        "/v2/events",
        "/v2/events/meta?event_name=be_reserved",
        "/v2/events/running_status",
        "/v2/events/event_data?id=req-1",
        "/v2/events/logs",
        "/v2/events/search",
    ] {
        app.get(uri, &reader).await.assert_status(200);
    }
    let other = json!({"eventName": "mine", "actions": ["EIConsumer"]});
    assert_v2_error(&define(&app, &reader, &other).await, 403, 403);
    assert_v2_error(&app.put_json("/v2/events", &reader, &reservation()).await, 403, 403);
    let disable = "/v2/events/disable?event_name=be_reserved";
    assert_v2_error(&app.put_json(disable, &reader, &json!({})).await, 403, 403);
    assert_v2_error(&post(&app, &reader, None, &good).await, 403, 403);

    // No permission on events: reads are 403 too.
    let none = till_in_group(&app, "NoEvents", r#"{"CUSTOMER":"READ"}"#, "none.events").await;
    assert_v2_error(&app.get("/v2/events", &none).await, 403, 403);
    assert_v2_error(&app.get("/v2/events/search", &none).await, 403, 403);
    assert_v2_error(&app.get("/v2/events/logs", &none).await, 403, 403);
    // Without credentials: 401.
    assert_v2_error(&app.get("/v2/events", "Basic bm86bm8=").await, 401, 401);
    assert_v2_error(&post(&app, "Basic bm86bm8=", None, &good).await, 401, 401);

    assert_eq!(count(&app, app.org.org_id, "behavioral_events").await, 1);
    assert_eq!(count(&app, app.org.org_id, "behavioral_event_data").await, 2);
    let meta = get_ok(&app, &auth, "/v2/events/meta?event_name=be_reserved").await;
    assert_eq!(meta["clickEventsMeta"]["status"], "PUBLISHED");

    // The endpoints are in the OpenAPI document.
    let doc = app.get("/openapi.json", "").await;
    doc.assert_status(200);
    let paths = doc.json()["paths"].clone();
    for path in [
        "/v2/events",
        "/v2/events/meta",
        "/v2/events/disable",
        "/v2/events/running_status",
        "/v2/events/event_data",
        "/v2/events/event_data/{userId}",
        "/v2/events/logs",
        "/v2/events/search",
    ] {
        assert!(paths.get(path).is_some(), "{path} missing from /openapi.json");
    }
}

async fn events_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    define(&app, &auth, &reservation()).await.assert_status(200);
    let acme_user = add_customer(&app, &auth, "919800000001").await;
    let posted = post(&app, &auth, Some("acme-req"), &reservation_post("919800000001", "A")).await;
    posted.assert_status(200);
    let acme_event = posted.json()["eventId"].as_str().unwrap().to_string();

    let beta = app.another_org("Beta").await;
    let b = basic_header(&beta.till.username, &beta.till.password);
    // Beta sees none of Acme's definitions or events.
    assert_eq!(get_ok(&app, &b, "/v2/events").await["data"], json!([]));
    assert_v2_error(&app.get("/v2/events/meta?event_name=be_reserved", &b).await, 404, 404);
    assert_eq!(get_ok(&app, &b, "/v2/events/event_data?id=acme-req").await["data"], json!([]));
    assert_eq!(get_ok(&app, &b, "/v2/events/logs").await["data"], json!([]));
    assert_eq!(get_ok(&app, &b, "/v2/events/search").await["pagination"]["total"], 0);
    assert_eq!(get_ok(&app, &b, "/v2/events/running_status").await["data"], json!([]));
    let running = app.get(&format!("/v2/events/running_status?eventId={acme_event}"), &b).await;
    assert_v2_error(&running, 404, 404);
    let theirs = app.get(&format!("/v2/events/event_data/{acme_user}"), &b).await;
    assert_v2_error(&theirs, 404, 8015);
    let by_user =
        format!("/v2/events/search?userIdentifierType=userId&userIdentifierValue={acme_user}");
    assert_v2_error(&app.get(&by_user, &b).await, 404, 8015);
    // Beta cannot post to, update or disable Acme's event.
    let acme_post = reservation_post("919800000001", "B");
    assert_v2_error(&post(&app, &b, None, &acme_post).await, 404, 404);
    assert_v2_error(&app.put_json("/v2/events", &b, &reservation()).await, 404, 404);
    let disable = "/v2/events/disable?event_name=be_reserved";
    assert_v2_error(&app.put_json(disable, &b, &json!({})).await, 404, 404);

    // Beta may define the same name; its posts resolve only its own customers.
    define(&app, &b, &reservation()).await.assert_status(200);
    assert_v2_error(&post(&app, &b, None, &acme_post).await, 404, 8015);
    let beta_user = add_customer(&app, &b, "919800000001").await;
    assert_ne!(beta_user, acme_user);
    post(&app, &b, Some("acme-req"), &acme_post).await.assert_status(200);
    let beta_events = get_ok(&app, &b, "/v2/events/event_data?id=acme-req").await;
    assert_eq!(beta_events["data"].as_array().unwrap().len(), 1);
    assert_eq!(beta_events["data"][0]["userId"], beta_user);
    assert_eq!(beta_events["data"][0]["orgId"], beta.org_id);
    let acme_events = get_ok(&app, &auth, "/v2/events/event_data?id=acme-req").await;
    assert_eq!(acme_events["data"].as_array().unwrap().len(), 1);
    assert_eq!(acme_events["data"][0]["userId"], acme_user);
    assert_eq!(outbox(&app, app.org.org_id, "behavioral.event").await.len(), 1);
    assert_eq!(outbox(&app, beta.org_id, "behavioral.event").await.len(), 1);
    let meta = get_ok(&app, &auth, "/v2/events/meta?event_name=be_reserved").await;
    assert_eq!(meta["clickEventsMeta"]["status"], "PUBLISHED");
}
