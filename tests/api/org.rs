//! Org, store and till APIs: v1.1 organization/entities/store, v2 orgEntity and organization,
//! the org hierarchy, locations, and the isolation of one org from another.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};

backend_tests!(
    org_get_describes_the_callers_org,
    entities_list_every_type,
    entities_reject_bad_queries,
    entities_filter_by_id_and_page_by_start_id,
    entities_active_only_hides_inactive_entities,
    entities_filter_by_parent,
    entities_details_locale_and_sub_entities,
    entities_include_parent_ignores_paging_and_modified_since,
    store_get_finds_stores_by_caller_code_and_id,
    store_login_checks_the_credentials,
    add_store_echoes_the_stored_store,
    add_store_rejects_bad_input,
    add_store_and_till_need_write_permission,
    bulk_add_stores_reports_each_item,
    bulk_add_stores_rejects_empty_invalid_and_oversized_batches,
    add_till_creates_a_working_login,
    add_till_rejects_bad_input,
    update_till_merges_custom_fields,
    update_till_rejects_bad_requests,
    till_lookup_by_id_code_and_name,
    till_lists_page_filter_and_hide_inactive_tills,
    hierarchy_of_a_standard_org,
    hierarchy_of_connected_orgs,
    locations_search_and_page_stores,
    locations_reject_bad_queries,
    orgs_are_isolated_from_each_other,
);

const PASSWORD: &str = "till-pass-1";

// ---------------------------------------------------------------- helpers

/// Asserts a v1.1 error: HTTP status, `status.code` and `success: "false"`, and no payload.
#[track_caller]
fn assert_v1_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v1_code(), code, "{}", response.body);
    let body = response.json();
    assert_eq!(body["response"]["status"]["success"], "false", "{}", response.body);
    let keys: Vec<&String> = body["response"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["status"], "an error carries only its status: {}", response.body);
}

/// Asserts a v2 error: HTTP status and the first `errors[].code`.
#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
    assert_eq!(response.json()["errors"][0]["status"], false);
}

/// The `code` of each item.
#[track_caller]
fn codes(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_else(|| panic!("no code in {e}")).to_string())
        .collect()
}

/// The `id` of each item.
#[track_caller]
fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|e| e["id"].as_i64().unwrap_or_else(|| panic!("no id in {e}"))).collect()
}

/// The `name → value` pairs of a v2 till's `customField` list.
#[track_caller]
fn custom_fields(till: &Value) -> Vec<(String, Value)> {
    till["customField"]
        .as_array()
        .unwrap_or_else(|| panic!("no customField list: {till}"))
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["value"].clone()))
        .collect()
}

/// The `data` list of a v2 paged answer.
#[track_caller]
fn data(response: &TestResponse) -> Vec<Value> {
    response.assert_status(200);
    response.json()["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {}", response.body))
        .clone()
}

/// `GET /v1.1/organization/entities?{query}`, checked for success; the entity list.
async fn entities(app: &TestApp, auth: &str, query: &str) -> Vec<Value> {
    let response = app.get(&format!("/v1.1/organization/entities?{query}"), auth).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["response"]["status"]["code"], 200, "{query}: {}", response.body);
    assert_eq!(body["response"]["status"]["success"], "true");
    body["response"]["organization"]["entities"]["entity"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: no entity list: {}", response.body))
        .clone()
}

/// The id of the org's only zone and only concept, read through the entities API.
async fn zone_and_concept(app: &TestApp, auth: &str) -> (i64, i64) {
    let zones = entities(app, auth, "type=ZONE").await;
    let concepts = entities(app, auth, "type=CONCEPT").await;
    assert_eq!(zones.len(), 1, "{zones:?}");
    assert_eq!(concepts.len(), 1, "{concepts:?}");
    (zones[0]["id"].as_i64().unwrap(), concepts[0]["id"].as_i64().unwrap())
}

fn store_body(code: &str, name: &str, zone: i64, concept: i64) -> Value {
    json!({"code": code, "name": name, "parentZoneId": zone, "parentConceptId": concept})
}

/// Adds a store (in the default zone and concept unless `body` says otherwise); its id.
async fn add_store_with(app: &TestApp, auth: &str, body: Value) -> i64 {
    let response = app.post_json("/v2/orgEntity/store", auth, &body).await;
    response.assert_status(200);
    response.json()["id"].as_i64().unwrap_or_else(|| panic!("no id: {}", response.body))
}

async fn add_store(app: &TestApp, code: &str, name: &str) -> i64 {
    let (zone, concept) = zone_and_concept(app, &app.basic()).await;
    add_store_with(app, &app.basic(), store_body(code, name, zone, concept)).await
}

/// Adds a till with `extra` fields merged into the minimal body; its id.
async fn add_till_with(app: &TestApp, auth: &str, name: &str, store_id: i64, extra: Value) -> i64 {
    let mut body = json!({"name": name, "password": PASSWORD, "storeId": store_id});
    if let (Some(map), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    let response = app.post_json("/v2/orgEntity/till", auth, &body).await;
    response.assert_status(200);
    let json = response.json();
    assert_eq!(json["warnings"], json!([]));
    json["createdId"].as_i64().unwrap_or_else(|| panic!("no createdId: {}", response.body))
}

async fn add_till(app: &TestApp, name: &str, store_id: i64) -> i64 {
    add_till_with(app, &app.basic(), name, store_id, json!({})).await
}

async fn store_count(app: &TestApp, auth: &str) -> usize {
    entities(app, auth, "type=STORE").await.len()
}

// ---------------------------------------------------------------- v1.1 organization

async fn org_get_describes_the_callers_org(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let response = app.get("/v1.1/organization/get", &app.basic()).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["response"]["status"]["code"], 200);
    assert_eq!(body["response"]["status"]["success"], "true");
    let org = &body["response"]["organization"];
    assert_eq!(org["id"], app.org.org_id);
    assert_eq!(org["name"], "Acme");
    assert_eq!(org["base_currency"], "INR");
    assert_eq!(org["timezone"], "Asia/Kolkata");
    assert_eq!(org["language"], "en");

    let format_json = app.get("/v1.1/organization/get?format=json", &app.basic()).await;
    format_json.assert_status(200);
    assert_eq!(format_json.json()["response"]["organization"], *org);

    let xml = app.get("/v1.1/organization/get?format=xml", &app.basic()).await;
    xml.assert_status(200);
    let content_type = xml.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("application/xml"), "{content_type}");
    assert!(xml.body.starts_with("<?xml"), "{}", xml.body);
    for fragment in [
        "<organization>",
        "<name>Acme</name>",
        "<base_currency>INR</base_currency>",
        "<timezone>Asia/Kolkata</timezone>",
        &format!("<id>{}</id>", app.org.org_id),
    ] {
        assert!(xml.body.contains(fragment), "XML lacks {fragment}: {}", xml.body);
    }

    // Another org's till sees that org, not Acme.
    let beta = app.another_org("Beta").await;
    let other = app
        .get("/v1.1/organization/get", &basic_header(&beta.till.username, &beta.till.password))
        .await;
    other.assert_status(200);
    let other = other.json();
    assert_eq!(other["response"]["organization"]["id"], beta.org_id);
    assert_eq!(other["response"]["organization"]["name"], "Beta");
    assert_eq!(other["response"]["organization"]["base_currency"], "USD");
    assert_eq!(other["response"]["organization"]["timezone"], "UTC");

    let wrong =
        app.get("/v1.1/organization/get", &basic_header(&app.org.till.username, "wrong")).await;
    assert_v1_error(&wrong, 401, 401);
}

async fn entities_list_every_type(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let zones = entities(&app, &auth, "type=ZONE").await;
    assert_eq!(codes(&zones), ["default.zone"]);
    assert_eq!(zones[0]["type"], "ZONE");
    assert_eq!(zones[0]["parent_id"], -1);
    assert_eq!(zones[0]["is_active"], "true");
    let concepts = entities(&app, &auth, "type=CONCEPT").await;
    assert_eq!(codes(&concepts), ["default.concept"]);
    assert_eq!(concepts[0]["type"], "CONCEPT");

    let stores = entities(&app, &auth, "type=STORE").await;
    assert_eq!(ids(&stores), [app.org.store_id]);
    let store = &stores[0];
    assert_eq!(store["code"], "main.store");
    assert_eq!(store["name"], "Main store");
    assert_eq!(store["type"], "STORE");
    assert_eq!(store["is_active"], "true");
    assert_eq!(store["parent_id"], zones[0]["id"], "a store's parent is its zone");
    assert_eq!(store["timezones"]["base_timezone"], "Asia/Kolkata");
    assert_eq!(store["currencies"]["base_currency"], "INR");
    assert_eq!(store["languages"]["base_language"], "en");

    let tills = entities(&app, &auth, "type=TILL").await;
    assert_eq!(ids(&tills), [app.org.till_id]);
    assert_eq!(tills[0]["code"], app.org.till.username.as_str());
    assert_eq!(tills[0]["type"], "TILL");
    assert_eq!(tills[0]["parent_id"], app.org.store_id);
    assert_eq!(tills[0]["timezones"]["base_timezone"], "Asia/Kolkata");

    // The type is case-insensitive; store servers do not exist in Perks.
    assert_eq!(ids(&entities(&app, &auth, "type=store").await), [app.org.store_id]);
    assert!(entities(&app, &auth, "type=STR_SERVER").await.is_empty());
    // The admin token reads the same org.
    assert_eq!(ids(&entities(&app, &app.admin(), "type=STORE").await), [app.org.store_id]);
}

async fn entities_reject_bad_queries(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    for query in [
        "",
        "format=json",
        "type=",
        "type=SHOP",
        "type=STORE&limit=0",
        "type=STORE&limit=501",
        "type=STORE&limit=-5",
        "type=STORE&limit=abc",
        "type=STORE&start_id=abc",
        "type=STORE&id=1,x",
        "type=STORE&modified_since=2024-13-01",
        "type=STORE&modified_since=yesterday",
        "type=STORE&active_only=maybe",
        "type=STORE&exclude_locale=2",
        "type=STORE&scope=LOYALTY_REGISTRATION",
        // Parent filters that do not fit the type, are half given or name no parent.
        "type=ZONE&parent_identifier_type=STORE_CODE&parent_identifier_value=main.store",
        "type=TILL&parent_identifier_type=CONCEPT_CODE&parent_identifier_value=default.concept",
        "type=STORE&parent_identifier_type=STORE_CODE&parent_identifier_value=main.store",
        "type=TILL&parent_identifier_type=STORE_NAME&parent_identifier_value=main.store",
        "type=TILL&parent_identifier_type=STORE_CODE",
        "type=TILL&parent_identifier_value=main.store",
        "type=TILL&parent_identifier_type=STORE_CODE&parent_identifier_value=no.such.store",
        "type=TILL&parent_identifier_type=STORE_ID&parent_identifier_value=abc",
        "type=TILL&parent_identifier_type=STORE_ID&parent_identifier_value=999999",
        "type=STORE&parent_identifier_type=CONCEPT_ID&parent_identifier_value=abc",
        "type=STORE&parent_identifier_type=CONCEPT_CODE&parent_identifier_value=no.such.concept",
    ] {
        let response = app.get(&format!("/v1.1/organization/entities?{query}"), &app.basic()).await;
        response.assert_status(400);
        assert_eq!(response.v1_code(), 400, "{query}: {}", response.body);
        assert_eq!(response.json()["response"]["status"]["success"], "false", "{query}");
        assert!(response.json()["response"]["organization"].is_null(), "{query}");
    }
    // The error also comes in XML when asked.
    let xml = app.get("/v1.1/organization/entities?format=xml", &app.basic()).await;
    xml.assert_status(400);
    assert!(xml.body.contains("<code>400</code>"), "{}", xml.body);
    assert!(xml.body.contains("<success>false</success>"), "{}", xml.body);
    // The bounds themselves are fine.
    assert_eq!(entities(&app, &app.basic(), "type=STORE&limit=500").await.len(), 1);
    assert_eq!(entities(&app, &app.basic(), "type=STORE&limit=1").await.len(), 1);
    // No credentials: 401 before anything else.
    assert_v1_error(&app.get("/v1.1/organization/entities?type=STORE", "").await, 401, 401);
}

async fn entities_filter_by_id_and_page_by_start_id(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    for (code, name) in
        [("store.one", "Store One"), ("store.two", "Store Two"), ("store.three", "Store Three")]
    {
        add_store(&app, code, name).await;
    }
    let all = entities(&app, &auth, "type=STORE").await;
    assert_eq!(codes(&all), ["main.store", "store.one", "store.two", "store.three"]);
    let all_ids = ids(&all);
    assert!(all_ids.windows(2).all(|w| w[0] < w[1]), "ordered by id: {all_ids:?}");

    // Keyset paging: each page starts after the last id of the previous one.
    let first = entities(&app, &auth, "type=STORE&limit=2").await;
    assert_eq!(ids(&first), &all_ids[..2]);
    let second =
        entities(&app, &auth, &format!("type=STORE&limit=2&start_id={}", all_ids[1])).await;
    assert_eq!(ids(&second), &all_ids[2..]);
    let past_end =
        entities(&app, &auth, &format!("type=STORE&limit=2&start_id={}", all_ids[3])).await;
    assert!(past_end.is_empty(), "{past_end:?}");
    let from_first = entities(&app, &auth, &format!("type=STORE&start_id={}", all_ids[0])).await;
    assert_eq!(ids(&from_first), &all_ids[1..]);

    // `id` takes one id or a comma-separated list (spaces allowed); unknown ids are no match.
    let one = entities(&app, &auth, &format!("type=STORE&id={}", all_ids[2])).await;
    assert_eq!(codes(&one), ["store.two"]);
    let two =
        entities(&app, &auth, &format!("type=STORE&id={},%20{}", all_ids[3], all_ids[1])).await;
    assert_eq!(codes(&two), ["store.one", "store.three"]);
    let id_and_page =
        entities(&app, &auth, &format!("type=STORE&id={},{}&limit=1", all_ids[1], all_ids[3]))
            .await;
    assert_eq!(codes(&id_and_page), ["store.one"]);
    assert!(entities(&app, &auth, "type=STORE&id=999999").await.is_empty());
    // A store id is not a till id.
    assert!(entities(&app, &auth, &format!("type=TILL&id={}", all_ids[1])).await.is_empty());
}

async fn entities_active_only_hides_inactive_entities(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    let mut closed = store_body("closed.store", "Closed", zone, concept);
    closed["isActive"] = json!(false);
    add_store_with(&app, &auth, closed).await;

    let all = entities(&app, &auth, "type=STORE").await;
    assert_eq!(codes(&all), ["main.store", "closed.store"]);
    assert_eq!(all[1]["is_active"], "false");
    for flag in ["true", "1", "TRUE"] {
        let active = entities(&app, &auth, &format!("type=STORE&active_only={flag}")).await;
        assert_eq!(codes(&active), ["main.store"], "active_only={flag}");
    }
    assert_eq!(entities(&app, &auth, "type=STORE&active_only=false").await.len(), 2);

    let till = add_till(&app, "spare.till", app.org.store_id).await;
    app.put_json(&format!("/v2/orgEntity/till/{till}"), &auth, &json!({"isActive": false}))
        .await
        .assert_status(200);
    let tills = entities(&app, &auth, "type=TILL").await;
    assert_eq!(ids(&tills), [app.org.till_id, till]);
    assert_eq!(tills[1]["is_active"], "false");
    assert_eq!(ids(&entities(&app, &auth, "type=TILL&active_only=true").await), [app.org.till_id]);
}

async fn entities_filter_by_parent(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    app.exec_sql(&format!(
        "INSERT INTO concepts (org_id, code, name, created_at, updated_at) \
         VALUES ({}, 'outlet.concept', 'Outlets', 0, 0)",
        app.org.org_id
    ))
    .await;
    let concepts = entities(&app, &auth, "type=CONCEPT").await;
    assert_eq!(codes(&concepts), ["default.concept", "outlet.concept"]);
    let outlet_concept = concepts[1]["id"].as_i64().unwrap();

    let mut north = store_body("north.store", "North", zone, concept);
    north["externalIds"] = json!(["north-ext-1"]);
    let north = add_store_with(&app, &auth, north).await;
    let outlet =
        add_store_with(&app, &auth, store_body("outlet.store", "Outlet", zone, outlet_concept))
            .await;
    let north_till = add_till(&app, "north.till", north).await;

    let tills_of = |kind: &str, value: String| {
        format!("type=TILL&parent_identifier_type={kind}&parent_identifier_value={value}")
    };
    let main_tills = entities(&app, &auth, &tills_of("STORE_CODE", "main.store".into())).await;
    assert_eq!(ids(&main_tills), [app.org.till_id]);
    assert_eq!(
        ids(&entities(&app, &auth, &tills_of("STORE_CODE", "north.store".into())).await),
        [north_till]
    );
    assert_eq!(
        ids(&entities(&app, &auth, &tills_of("STORE_ID", north.to_string())).await),
        [north_till]
    );
    assert_eq!(
        ids(&entities(&app, &auth, &tills_of("store_id", north.to_string())).await),
        [north_till]
    );
    assert_eq!(
        ids(&entities(&app, &auth, &tills_of("STORE_EXTERNAL_ID", "north-ext-1".into())).await),
        [north_till]
    );
    assert!(
        entities(&app, &auth, &tills_of("STORE_ID", outlet.to_string())).await.is_empty(),
        "outlet has no till"
    );
    // The external id must match whole, not by prefix.
    let prefix = app
        .get(
            &format!(
                "/v1.1/organization/entities?{}",
                tills_of("STORE_EXTERNAL_ID", "north-ext".into())
            ),
            &auth,
        )
        .await;
    assert_v1_error(&prefix, 400, 400);

    let stores_of = |kind: &str, value: String| {
        format!("type=STORE&parent_identifier_type={kind}&parent_identifier_value={value}")
    };
    let default_stores =
        entities(&app, &auth, &stores_of("CONCEPT_CODE", "default.concept".into())).await;
    assert_eq!(codes(&default_stores), ["main.store", "north.store"]);
    let outlet_stores =
        entities(&app, &auth, &stores_of("CONCEPT_CODE", "outlet.concept".into())).await;
    assert_eq!(codes(&outlet_stores), ["outlet.store"]);
    let by_concept_id =
        entities(&app, &auth, &stores_of("CONCEPT_ID", outlet_concept.to_string())).await;
    assert_eq!(ids(&by_concept_id), [outlet]);
    // The parent filter combines with paging.
    let paged = entities(
        &app,
        &auth,
        &format!("{}&limit=1", stores_of("CONCEPT_CODE", "default.concept".into())),
    )
    .await;
    assert_eq!(codes(&paged), ["main.store"]);
}

async fn entities_details_locale_and_sub_entities(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let second = add_store(&app, "second.store", "Second").await;
    add_till(&app, "main.till.two", app.org.store_id).await;

    let full = entities(&app, &auth, "type=STORE").await;
    for store in &full {
        assert_eq!(store["currencies"]["base_currency"], "INR", "{store}");
        assert_eq!(store["timezones"]["base_timezone"], "Asia/Kolkata", "{store}");
        assert!(store.get("sub_entities").is_none(), "no sub_entities unless asked: {store}");
    }

    let basic = entities(&app, &auth, "type=STORE&details=basic").await;
    assert_eq!(ids(&basic), ids(&full));
    for store in &basic {
        for key in ["currencies", "timezones", "languages"] {
            assert!(store.get(key).is_none(), "details=basic keeps {key}: {store}");
        }
        assert!(store["code"].is_string() && store["name"].is_string());
    }

    let no_locale = entities(&app, &auth, "type=TILL&exclude_locale=1").await;
    assert_eq!(no_locale.len(), 2);
    for till in &no_locale {
        assert!(till.get("timezones").is_none(), "exclude_locale=1 keeps timezones: {till}");
        assert_eq!(till["currencies"]["base_currency"], "INR");
    }
    let with_locale = entities(&app, &auth, "type=TILL&exclude_locale=0").await;
    assert!(with_locale.iter().all(|t| t["timezones"]["base_timezone"] == "Asia/Kolkata"));

    // sub_entities_count caps the children listed per entity.
    let zones = entities(&app, &auth, "type=ZONE&sub_entities_count=1").await;
    assert_eq!(zones.len(), 1);
    let children = zones[0]["sub_entities"]["entity"].as_array().unwrap();
    assert_eq!(ids(children), [app.org.store_id]);
    assert_eq!(children[0]["type"], "STORE");
    let zones = entities(&app, &auth, "type=ZONE&sub_entities_count=5").await;
    assert_eq!(
        ids(zones[0]["sub_entities"]["entity"].as_array().unwrap()),
        [app.org.store_id, second]
    );
    let concepts = entities(&app, &auth, "type=CONCEPT&sub_entities_count=5").await;
    assert_eq!(concepts[0]["sub_entities"]["entity"].as_array().unwrap().len(), 2);
    let stores = entities(&app, &auth, "type=STORE&sub_entities_count=5").await;
    let main_tills = stores[0]["sub_entities"]["entity"].as_array().unwrap();
    assert_eq!(codes(main_tills)[1], "main.till.two");
    assert!(main_tills.iter().all(|t| t["type"] == "TILL"));
    assert_eq!(stores[1]["sub_entities"]["entity"], json!([]), "the second store has no till");
}

async fn entities_include_parent_ignores_paging_and_modified_since(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, _) = zone_and_concept(&app, &auth).await;
    // A child zone, last modified far in the future so that modified_since selects it alone.
    app.exec_sql(&format!(
        "INSERT INTO zones (org_id, parent_id, code, name, created_at, updated_at) \
         VALUES ({}, {zone}, 'north.zone', 'North', 0, 4102444800000)",
        app.org.org_id
    ))
    .await;
    let zones = entities(&app, &auth, "type=ZONE&include_parent=true").await;
    assert_eq!(codes(&zones), ["default.zone", "north.zone"]);
    assert!(zones[0]["parent"].is_null(), "a root zone has no parent: {}", zones[0]);
    assert_eq!(zones[1]["parent_id"], zone);
    assert_eq!(zones[1]["parent"]["code"], "default.zone");
    assert!(
        entities(&app, &auth, "type=ZONE").await[1].get("parent").is_none(),
        "parent only when asked"
    );

    // The parent is shown even when the page or the date filter leaves it out of the list.
    let paged =
        entities(&app, &auth, &format!("type=ZONE&include_parent=true&start_id={zone}")).await;
    assert_eq!(codes(&paged), ["north.zone"]);
    assert_eq!(paged[0]["parent"]["code"], "default.zone", "{}", paged[0]);
    let recent =
        entities(&app, &auth, "type=ZONE&include_parent=true&modified_since=2099-01-01").await;
    assert_eq!(codes(&recent), ["north.zone"]);
    assert_eq!(recent[0]["parent"]["id"], zone, "{}", recent[0]);
}

// ---------------------------------------------------------------- v1.1 store

async fn store_get_finds_stores_by_caller_code_and_id(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    let mut london = store_body("london.store", "London", zone, concept);
    london["timezone"] = json!("Europe/London");
    london["currency"] = json!("GBP");
    london["email"] = json!("london@example.com");
    let london = add_store_with(&app, &auth, london).await;

    let stores_of = |response: &TestResponse| -> Vec<Value> {
        response.assert_status(200);
        let body = response.json();
        assert_eq!(body["response"]["status"]["code"], 200);
        body["response"]["stores"]["store"].as_array().unwrap().clone()
    };
    // No parameter: the caller's own store.
    let own = stores_of(&app.get("/v1.1/store/get", &auth).await);
    assert_eq!(ids(&own), [app.org.store_id]);
    let main = &own[0];
    assert_eq!(main["code"], "main.store");
    assert_eq!(main["name"], "Main store");
    assert_eq!(main["is_active"], "true");
    assert_eq!(main["zone"]["id"], zone);
    assert_eq!(main["zone"]["code"], "default.zone");
    assert_eq!(main["concept"]["id"], concept);
    assert_eq!(main["concept"]["code"], "default.concept");
    assert_eq!(main["timezone"], "Asia/Kolkata");
    assert_eq!(main["currency"], "INR");

    let by_code = stores_of(&app.get("/v1.1/store/get?code=london.store", &auth).await);
    assert_eq!(ids(&by_code), [london]);
    assert_eq!(by_code[0]["timezone"], "Europe/London", "a store's own locale wins");
    assert_eq!(by_code[0]["currency"], "GBP");
    assert_eq!(by_code[0]["email"], "london@example.com");
    let by_id = stores_of(&app.get(&format!("/v1.1/store/get?id={london}"), &auth).await);
    assert_eq!(codes(&by_id), ["london.store"]);
    let several = stores_of(
        &app.get(&format!("/v1.1/store/get?id={london},{}", app.org.store_id), &auth).await,
    );
    assert_eq!(ids(&several), [london, app.org.store_id]);
    let codes_list = stores_of(
        &app.get("/v1.1/store/get?code=main.store,london.store&format=json", &auth).await,
    );
    assert_eq!(ids(&codes_list), [app.org.store_id, london]);

    for uri in ["/v1.1/store/get?code=no.such.store", "/v1.1/store/get?id=999999"] {
        assert_v1_error(&app.get(uri, &auth).await, 404, 404);
    }
    let xml = app.get("/v1.1/store/get?id=999999&format=xml", &auth).await;
    xml.assert_status(404);
    assert!(xml.body.contains("<code>404</code>"), "{}", xml.body);
    assert_v1_error(&app.get("/v1.1/store/get?id=abc", &auth).await, 400, 400);
}

async fn store_login_checks_the_credentials(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let response = app.get("/v1.1/store/login", &app.basic()).await;
    response.assert_status(200);
    let body = response.json();
    let status = &body["response"]["status"];
    assert_eq!(status["code"], "200", "the login status code is a string");
    assert_eq!(status["success"], "true");
    let user = &body["response"]["store"]["user"];
    assert_eq!(user["username"], app.org.till.username.as_str());
    assert_eq!(user["org_id"], app.org.org_id.to_string());
    assert_eq!(user["user_id"], app.org.till_id.to_string());
    assert_eq!(user["org_name"], "Acme");
    assert_eq!(user["associate_login_enabled"], "false");
    let server_time = user["server_time"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(server_time, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{server_time}"
    );

    // Any till may check its own login, whatever its access group.
    add_till(&app, "pos.login", app.org.store_id).await;
    let pos = app.get("/v1.1/store/login", &basic_header("pos.login", PASSWORD)).await;
    pos.assert_status(200);
    assert_eq!(pos.json()["response"]["store"]["user"]["username"], "pos.login");

    for bad in [
        basic_header(&app.org.till.username, "not-the-password"),
        basic_header("no.such.till", &app.org.till.password),
        basic_header("pos.login", &app.org.till.password),
        "Basic !!!".to_string(),
        String::new(),
    ] {
        assert_v1_error(&app.get("/v1.1/store/login", &bad).await, 401, 401);
    }
}

// ---------------------------------------------------------------- v2 stores

async fn add_store_echoes_the_stored_store(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    let body = json!({
        "code": "city.centre",
        "name": "City Centre 1",
        "description": "Downtown",
        "type": "STORE",
        "adminType": "ADMIN",
        "isActive": true,
        "parentZoneId": zone.to_string(),
        "parentConceptId": concept.to_string(),
        "timeZoneId": "",
        "currencyId": "7",
        "languageId": null,
        "externalIds": ["cc-1", "cc-2"],
        "email": "cc@example.com",
        "mobile": "",
        "latitude": "12.97",
        "longitude": "77.59",
        "address": "1 MG Road",
        "cityId": 12,
        "customFields": {"floor": "2"},
    });
    let response = app.post_json("/v2/orgEntity/store", &auth, &body).await;
    response.assert_status(200);
    let store = response.json();
    let id = store["id"].as_i64().unwrap();
    assert!(id > 0 && id != app.org.store_id);
    assert_eq!(store["code"], "city.centre");
    assert_eq!(store["name"], "City Centre 1");
    assert_eq!(store["description"], "Downtown");
    assert_eq!(store["type"], "STORE");
    assert_eq!(store["adminType"], "ADMIN");
    assert_eq!(store["isActive"], true);
    assert_eq!(store["parentZoneId"], zone, "ids sent as strings come back as numbers");
    assert_eq!(store["parentConceptId"], concept);
    assert_eq!(store["timeZoneId"], Value::Null, "an empty timeZoneId is no time zone");
    assert_eq!(store["currencyId"], 7);
    assert_eq!(store["languageId"], Value::Null);
    assert_eq!(store["externalIds"], json!(["cc-1", "cc-2"]));
    assert_eq!(store["email"], "cc@example.com");
    assert_eq!(store["mobile"], Value::Null, "an empty string is not stored");
    assert_eq!(store["latitude"], "12.97");
    assert_eq!(store["cityId"], 12);
    assert_eq!(store["customFields"], json!({"floor": "2"}));
    assert_eq!(store["timezone"], "Asia/Kolkata", "the org's locale is inherited");
    assert_eq!(store["currency"], "INR");
    assert_eq!(store["warnings"], json!([]));

    // It is stored: the read APIs find it.
    let got = app.get("/v1.1/store/get?code=city.centre", &auth).await;
    got.assert_status(200);
    assert_eq!(got.json()["response"]["stores"]["store"][0]["id"], id);
    assert_eq!(codes(&entities(&app, &auth, "type=STORE").await), ["main.store", "city.centre"]);

    let audit = app.audit(app.org.org_id, "STORE").await;
    let record =
        audit.iter().find(|r| r.entity_id == id).expect("an audit record of the new store");
    assert_eq!(record.action, "CREATE");
    assert_eq!(record.principal_type, "TILL");
    assert_eq!(record.principal_id, Some(app.org.till_id));
    assert!(record.after_state.as_deref().unwrap_or_default().contains("city.centre"));

    // Minimal body with the admin token; defaults fill the rest.
    let minimal = app
        .post_json(
            "/v2/orgEntity/store",
            &app.admin(),
            &store_body("kiosk", "Kiosk", zone, concept),
        )
        .await;
    minimal.assert_status(200);
    let kiosk = minimal.json();
    assert_eq!(kiosk["adminType"], "GENERAL");
    assert_eq!(kiosk["isActive"], true);
    assert_eq!(kiosk["externalIds"], json!([]));
    assert_eq!(kiosk["customFields"], json!({}));
    let audit = app.audit(app.org.org_id, "STORE").await;
    let record =
        audit.iter().find(|r| r.entity_id == kiosk["id"]).expect("an audit record of the kiosk");
    assert_eq!(record.principal_type, "ADMIN");
    assert_eq!(store_count(&app, &auth).await, 3);
}

async fn add_store_rejects_bad_input(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    let other = app.another_org("Other").await;
    let other_auth = basic_header(&other.till.username, &other.till.password);
    let (other_zone, other_concept) = zone_and_concept(&app, &other_auth).await;
    assert_ne!(other_zone, zone);

    let cases: Vec<(&str, Value, i64)> = vec![
        ("duplicate code", store_body("main.store", "Copy", zone, concept), 1207),
        ("zone of another org", store_body("s.a", "A", other_zone, concept), 1214),
        ("concept of another org", store_body("s.b", "B", zone, other_concept), 1214),
        ("unknown zone", store_body("s.c", "C", 999_999, concept), 1214),
        ("unknown concept", store_body("s.d", "D", zone, 999_999), 1214),
        ("code with a space", store_body("Bad Code", "E", zone, concept), 400),
        ("upper-case code", store_body("Store.f", "F", zone, concept), 400),
        ("code starting with a digit", store_body("1store", "G", zone, concept), 400),
        ("empty code", store_body("", "H", zone, concept), 400),
        ("code of 51 characters", store_body(&"c".repeat(51), "I", zone, concept), 400),
        ("name with a dash", store_body("s.j", "a-b", zone, concept), 400),
        ("blank name", store_body("s.k", "   ", zone, concept), 400),
        ("name of 101 characters", store_body("s.l", &"n".repeat(101), zone, concept), 400),
        (
            "missing code",
            json!({"name": "M", "parentZoneId": zone, "parentConceptId": concept}),
            400,
        ),
        (
            "missing name",
            json!({"code": "s.n", "parentZoneId": zone, "parentConceptId": concept}),
            400,
        ),
        (
            "code as a number",
            json!({"code": 5, "name": "O", "parentZoneId": zone, "parentConceptId": concept}),
            400,
        ),
        ("missing zone", json!({"code": "s.p", "name": "P", "parentConceptId": concept}), 400),
        ("missing concept", json!({"code": "s.q", "name": "Q", "parentZoneId": zone}), 400),
        (
            "empty zone",
            json!({"code": "s.r", "name": "R", "parentZoneId": "", "parentConceptId": concept}),
            400,
        ),
        (
            "non-numeric zone",
            json!({"code": "s.s", "name": "S", "parentZoneId": "abc", "parentConceptId": concept}),
            400,
        ),
        (
            "fractional zone",
            json!({"code": "s.t", "name": "T", "parentZoneId": 1.5, "parentConceptId": concept}),
            400,
        ),
        (
            "boolean concept",
            json!({"code": "s.u", "name": "U", "parentZoneId": zone, "parentConceptId": true}),
            400,
        ),
    ];
    for (what, body, code) in cases {
        let response = app.post_json("/v2/orgEntity/store", &auth, &body).await;
        assert_eq!(response.status.as_u16(), 400, "{what}: {}", response.body);
        assert_eq!(response.v2_error_code(), code, "{what}: {}", response.body);
        assert!(!response.json()["errors"][0]["message"].as_str().unwrap().is_empty(), "{what}");
    }
    for (field, value) in [
        ("type", json!("TILL")),
        ("adminType", json!("BOSS")),
        ("timezone", json!("Mars/Olympus")),
        ("currency", json!("RUPEE")),
        ("language", json!("english!")),
        ("description", json!("d".repeat(251))),
        ("externalIds", json!([""])),
        ("timeZoneId", json!("abc")),
        ("isActive", json!("yes")),
    ] {
        let mut body = store_body("s.v", "V", zone, concept);
        body[field] = value;
        let response = app.post_json("/v2/orgEntity/store", &auth, &body).await;
        assert_eq!(response.status.as_u16(), 400, "{field}: {}", response.body);
        assert_v2_error(&response, 400, 400);
    }
    // Nothing was written, and no audit record claims otherwise.
    assert_eq!(codes(&entities(&app, &auth, "type=STORE").await), ["main.store"]);
    assert!(app.audit(app.org.org_id, "STORE").await.is_empty());
    // Store codes are unique per org: the other org may use a code Acme uses.
    add_store_with(&app, &auth, store_body("shared.code", "Shared", zone, concept)).await;
    add_store_with(
        &app,
        &other_auth,
        store_body("shared.code", "Shared", other_zone, other_concept),
    )
    .await;
    let again = app
        .post_json("/v2/orgEntity/store", &auth, &store_body("shared.code", "Again", zone, concept))
        .await;
    assert_v2_error(&again, 400, 1207);
}

async fn add_store_and_till_need_write_permission(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    let pos_till = add_till(&app, "pos.one", app.org.store_id).await;
    let pos = basic_header("pos.one", PASSWORD);

    // A POS till reads the org …
    assert_eq!(entities(&app, &pos, "type=STORE").await.len(), 1);
    app.get(&format!("/v2/organization/till/{pos_till}"), &pos).await.assert_status(200);
    // … but writes nothing.
    let store = app
        .post_json("/v2/orgEntity/store", &pos, &store_body("pos.store", "Pos", zone, concept))
        .await;
    assert_v2_error(&store, 403, 403);
    let bulk = app
        .post_json(
            "/v2/orgEntity/store/bulk",
            &pos,
            &json!([store_body("pos.bulk", "Pos", zone, concept)]),
        )
        .await;
    assert_v2_error(&bulk, 403, 403);
    let till = app
        .post_json(
            "/v2/orgEntity/till",
            &pos,
            &json!({"name": "pos.two", "password": PASSWORD, "storeId": app.org.store_id}),
        )
        .await;
    assert_v2_error(&till, 403, 403);
    let update = app
        .put_json(&format!("/v2/orgEntity/till/{pos_till}"), &pos, &json!({"description": "mine"}))
        .await;
    assert_v2_error(&update, 403, 403);
    assert_eq!(store_count(&app, &auth).await, 1);
    assert_eq!(entities(&app, &auth, "type=TILL").await.len(), 2);

    // A till in the Admin group may write; an unknown group is refused.
    add_till_with(&app, &auth, "admin.two", app.org.store_id, json!({"accessGroup": "Admin"}))
        .await;
    let admin = basic_header("admin.two", PASSWORD);
    add_store_with(&app, &admin, store_body("admin.store", "Admin Store", zone, concept)).await;
    let ghost = json!({
        "name": "ghost.till",
        "password": PASSWORD,
        "storeId": app.org.store_id,
        "accessGroup": "Gods",
    });
    let unknown_group = app.post_json("/v2/orgEntity/till", &auth, &ghost).await;
    assert_v2_error(&unknown_group, 400, 400);
    assert_eq!(store_count(&app, &auth).await, 2);
}

async fn bulk_add_stores_reports_each_item(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    let items = json!([
        store_body("bulk.one", "Bulk One", zone, concept),
        store_body("Bad Code", "Bad", zone, concept),
        store_body("main.store", "Duplicate", zone, concept),
        {
            "code": "bulk.two",
            "name": "Bulk Two",
            "parentZoneId": zone.to_string(),
            "parentConceptId": concept.to_string(),
            "timeZoneId": "",
        },
        store_body("bulk.three", "Bulk Three", 999_999, concept),
        {"name": "No code", "parentZoneId": zone, "parentConceptId": concept},
        store_body("bulk.one", "Same code twice", zone, concept),
        "not an object",
    ]);
    let response = app.post_json("/v2/orgEntity/store/bulk", &auth, &items).await;
    response.assert_status(200);
    let body = response.json();
    let results = body["response"].as_array().unwrap();
    assert_eq!(results.len(), 8, "one result per item, in order");
    for (i, code) in [(0, "bulk.one"), (3, "bulk.two")] {
        assert_eq!(results[i]["code"], code);
        assert!(results[i]["id"].as_i64().is_some_and(|id| id > 0), "{}", results[i]);
        assert_eq!(results[i]["errors"], json!([]), "{}", results[i]);
    }
    let expected_errors = [(1, 400), (2, 1207), (4, 1214), (5, 400), (6, 1207), (7, 400)];
    for (i, code) in expected_errors {
        assert!(results[i]["id"].is_null(), "failed item {i} has no id: {}", results[i]);
        assert_eq!(results[i]["errors"][0]["code"], code, "item {i}: {}", results[i]);
        assert!(!results[i]["errors"][0]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(results[1]["code"], "Bad Code", "a failed item echoes its code");
    assert!(results[5]["code"].is_null());

    let stores = entities(&app, &auth, "type=STORE").await;
    assert_eq!(codes(&stores), ["main.store", "bulk.one", "bulk.two"]);
    assert_eq!(stores[1]["id"], results[0]["id"]);
    assert_eq!(stores[2]["id"], results[3]["id"]);
    let audit = app.audit(app.org.org_id, "STORE").await;
    assert_eq!(audit.len(), 2, "one audit record per created store");
    assert!(audit.iter().all(|r| r.action == "CREATE"));
}

async fn bulk_add_stores_rejects_empty_invalid_and_oversized_batches(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;

    let all_bad = json!([
        store_body("Bad Code", "One", zone, concept),
        store_body("fine.code", "a-b", zone, concept),
        store_body("main.store", "Dup", zone, concept),
    ]);
    let response = app.post_json("/v2/orgEntity/store/bulk", &auth, &all_bad).await;
    response.assert_status(400);
    let results = response.json()["response"].as_array().unwrap().clone();
    let codes_seen: Vec<Value> = results.iter().map(|r| r["errors"][0]["code"].clone()).collect();
    assert_eq!(codes_seen, [json!(400), json!(400), json!(1207)]);

    let too_many: Vec<Value> = (0..101)
        .map(|i| store_body(&format!("many.{i}"), &format!("Many {i}"), zone, concept))
        .collect();
    let response =
        app.post_json("/v2/orgEntity/store/bulk", &auth, &Value::Array(too_many.clone())).await;
    assert_v2_error(&response, 400, 1060);
    assert!(response.json().get("response").is_none(), "an oversized batch is refused whole");

    assert_v2_error(&app.post_json("/v2/orgEntity/store/bulk", &auth, &json!([])).await, 400, 400);
    let not_a_list = app
        .post_json(
            "/v2/orgEntity/store/bulk",
            &auth,
            &store_body("one.store", "One", zone, concept),
        )
        .await;
    assert_v2_error(&not_a_list, 400, 400);
    assert_eq!(store_count(&app, &auth).await, 1, "no store was written");

    // Exactly 100 is allowed.
    let response = app
        .post_json("/v2/orgEntity/store/bulk", &auth, &Value::Array(too_many[..100].to_vec()))
        .await;
    response.assert_status(200);
    let results = response.json()["response"].as_array().unwrap().clone();
    assert_eq!(results.len(), 100);
    assert!(results.iter().all(|r| r["errors"] == json!([])));
    assert_eq!(entities(&app, &auth, "type=STORE&limit=500").await.len(), 101);
}

// ---------------------------------------------------------------- v2 tills

async fn add_till_creates_a_working_login(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let body = json!({
        "name": "front.desk_1",
        "password": "s3cret-pw",
        "storeId": app.org.store_id.to_string(),
        "description": "Front desk",
        "billable": false,
        "customFields": [{"name": "lane", "value": "3"}],
    });
    let response = app.post_json("/v2/orgEntity/till", &auth, &body).await;
    response.assert_status(200);
    let created = response.json();
    let id = created["createdId"].as_i64().unwrap();
    assert!(id > app.org.till_id);
    assert_eq!(created["warnings"], json!([]));

    // The till is a login at once.
    let till_auth = basic_header("front.desk_1", "s3cret-pw");
    let org = app.get("/v1.1/organization/get", &till_auth).await;
    org.assert_status(200);
    assert_eq!(org.json()["response"]["organization"]["id"], app.org.org_id);
    let login = app.get("/v1.1/store/login", &till_auth).await;
    assert_eq!(login.json()["response"]["store"]["user"]["user_id"], id.to_string());
    assert_v1_error(
        &app.get("/v1.1/organization/get", &basic_header("front.desk_1", "other")).await,
        401,
        401,
    );

    let till = app.get(&format!("/v2/organization/till/{id}"), &auth).await;
    till.assert_status(200);
    let till = till.json();
    assert_eq!(till["name"], "front.desk_1");
    assert_eq!(till["code"], "front.desk_1", "the name is also the code");
    assert_eq!(till["description"], "Front desk");
    assert_eq!(till["billable"], false);
    assert_eq!(till["storeId"], app.org.store_id);
    assert_eq!(till["adminType"], "GENERAL");
    assert_eq!(custom_fields(&till), [("lane".to_string(), json!("3"))]);

    let audit = app.audit(app.org.org_id, "TILL").await;
    let record = audit.iter().find(|r| r.entity_id == id).expect("an audit record of the new till");
    assert_eq!(record.action, "CREATE");
    assert_eq!(record.principal_id, Some(app.org.till_id));
    assert!(
        !record.after_state.as_deref().unwrap_or_default().contains("s3cret"),
        "no password in the audit"
    );

    // Defaults: billable, GENERAL; a till may live in a new store.
    let store = add_store(&app, "second.store", "Second").await;
    let second = add_till(&app, "second.till", store).await;
    let second = app.get(&format!("/v2/organization/till/{second}"), &auth).await.json();
    assert_eq!(second["billable"], true);
    assert_eq!(second["storeId"], store);
    let admin =
        add_till_with(&app, &app.admin(), "boss.till", store, json!({"adminType": "admin"})).await;
    assert_eq!(
        app.get(&format!("/v2/organization/till/{admin}"), &auth).await.json()["adminType"],
        "ADMIN"
    );
}

async fn add_till_rejects_bad_input(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_till(&app, "front.desk", app.org.store_id).await;
    let other = app.another_org("Other").await;
    let other_auth = basic_header(&other.till.username, &other.till.password);
    let store = app.org.store_id;

    let base = |name: &str| json!({"name": name, "password": PASSWORD, "storeId": store});
    let with = |name: &str, field: &str, value: Value| {
        let mut body = base(name);
        body[field] = value;
        body
    };
    let without = |name: &str, field: &str| {
        let mut body = base(name);
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases: Vec<(&str, Value, i64)> = vec![
        ("duplicate name", base("front.desk"), 1207),
        ("name of the org's default till", base(&app.org.till.username), 1207),
        ("unknown store", with("t.one", "storeId", json!(999_999)), 1214),
        ("store of another org", with("t.two", "storeId", json!(other.store_id)), 1214),
        ("upper-case name", base("Front.Desk"), 400),
        ("two characters", base("ab"), 400),
        ("digit first", base("9lives"), 400),
        ("space", base("front desk"), 400),
        ("51 characters", base(&"t".repeat(51)), 400),
        ("missing name", without("", "name"), 400),
        ("missing password", without("t.three", "password"), 400),
        ("empty password", with("t.four", "password", json!("")), 400),
        ("password of 129 characters", with("t.five", "password", json!("p".repeat(129))), 400),
        ("missing store", without("t.six", "storeId"), 400),
        ("non-numeric store", with("t.seven", "storeId", json!("abc")), 400),
        ("bad admin type", with("t.eight", "adminType", json!("ROOT")), 400),
        ("billable as text", with("t.nine", "billable", json!("yes")), 400),
        ("description of 251", with("t.ten", "description", json!("d".repeat(251))), 400),
        (
            "unnamed custom field",
            with("t.eleven", "customFields", json!([{"name": "", "value": 1}])),
            400,
        ),
        (
            "custom field name of 21",
            with("t.twelve", "customFields", json!([{"name": "f".repeat(21)}])),
            400,
        ),
    ];
    for (what, body, code) in cases {
        let response = app.post_json("/v2/orgEntity/till", &auth, &body).await;
        response.assert_status(400);
        assert_eq!(response.v2_error_code(), code, "{what}: {}", response.body);
    }
    // Till names are logins, unique across every org.
    let across = app
        .post_json(
            "/v2/orgEntity/till",
            &other_auth,
            &json!({"name": "front.desk", "password": PASSWORD, "storeId": other.store_id}),
        )
        .await;
    assert_v2_error(&across, 400, 1207);
    let acme_default =
        json!({"name": app.org.till.username, "password": PASSWORD, "storeId": other.store_id});
    assert_v2_error(
        &app.post_json("/v2/orgEntity/till", &other_auth, &acme_default).await,
        400,
        1207,
    );

    // Only the one good till exists, and the taken name still logs in with its own password.
    let tills = entities(&app, &auth, "type=TILL").await;
    assert_eq!(codes(&tills), [app.org.till.username.as_str(), "front.desk"]);
    app.get("/v1.1/store/login", &basic_header("front.desk", PASSWORD)).await.assert_status(200);
    assert_eq!(entities(&app, &other_auth, "type=TILL").await.len(), 1);
}

async fn update_till_merges_custom_fields(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let id = add_till_with(
        &app,
        &auth,
        "lane.till",
        app.org.store_id,
        json!({"customFields": [{"name": "lane", "value": "1"}]}),
    )
    .await;
    let uri = format!("/v2/orgEntity/till/{id}");

    let response =
        app.put_json(&uri, &auth, &json!({"customFields": [{"name": "floor", "value": 2}]})).await;
    response.assert_status(200);
    let till = response.json();
    assert_eq!(till["id"], id);
    assert_eq!(till["type"], "TILL");
    assert_eq!(till["warnings"], json!([]));
    assert_eq!(
        custom_fields(&till),
        [("lane".to_string(), json!("1")), ("floor".to_string(), json!(2))]
    );

    // A known field changes its value; the others stay.
    let response =
        app.put_json(&uri, &auth, &json!({"customFields": [{"name": "lane", "value": "5"}]})).await;
    response.assert_status(200);
    assert_eq!(
        custom_fields(&response.json()),
        [("lane".to_string(), json!("5")), ("floor".to_string(), json!(2))]
    );
    let read = app.get(&format!("/v2/organization/till/{id}"), &auth).await.json();
    assert_eq!(
        custom_fields(&read),
        [("lane".to_string(), json!("5")), ("floor".to_string(), json!(2))]
    );

    // Other fields (Perks extensions) leave the custom fields alone.
    let response =
        app.put_json(&uri, &auth, &json!({"description": "Back office", "billable": false})).await;
    response.assert_status(200);
    let till = response.json();
    assert_eq!(till["description"], "Back office");
    assert_eq!(till["billable"], false);
    assert_eq!(custom_fields(&till).len(), 2);

    // A new password takes effect at once.
    app.put_json(&uri, &auth, &json!({"password": "new-pass-2"})).await.assert_status(200);
    assert_v1_error(
        &app.get("/v1.1/store/login", &basic_header("lane.till", PASSWORD)).await,
        401,
        401,
    );
    app.get("/v1.1/store/login", &basic_header("lane.till", "new-pass-2")).await.assert_status(200);

    let updates: Vec<_> = app
        .audit(app.org.org_id, "TILL")
        .await
        .into_iter()
        .filter(|r| r.action == "UPDATE")
        .collect();
    assert_eq!(updates.len(), 4, "one audit record per update");
    assert!(updates.iter().all(|r| r.entity_id == id && r.principal_id == Some(app.org.till_id)));
    let newest = &updates[0];
    assert!(newest.after_state.as_deref().unwrap().contains("passwordChanged"));
    assert!(
        !newest.after_state.as_deref().unwrap().contains("new-pass-2"),
        "no password in the audit"
    );
    assert!(
        updates[3].before_state.as_deref().unwrap().contains("lane"),
        "{:?}",
        updates[3].before_state
    );
}

async fn update_till_rejects_bad_requests(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let id = add_till(&app, "steady.till", app.org.store_id).await;
    let uri = format!("/v2/orgEntity/till/{id}");
    for body in [
        json!({}),
        json!({"unknownField": 1}),
        json!({"customFields": "lane=1"}),
        json!({"customFields": [{"value": 1}]}),
        json!({"customFields": [{"name": "f".repeat(21), "value": 1}]}),
        json!({"password": ""}),
        json!({"isActive": "no"}),
        json!({"description": "d".repeat(251)}),
        json!([{"name": "lane"}]),
    ] {
        let response = app.put_json(&uri, &auth, &body).await;
        assert_v2_error(&response, 400, 400);
    }
    let fields: Vec<Value> =
        (0..51).map(|i| json!({"name": format!("f{i}"), "value": i})).collect();
    assert_v2_error(&app.put_json(&uri, &auth, &json!({"customFields": fields})).await, 400, 400);

    let body = json!({"customFields": [{"name": "lane", "value": "1"}]});
    assert_v2_error(&app.put_json("/v2/orgEntity/till/999999", &auth, &body).await, 404, 404);
    assert_v2_error(&app.put_json("/v2/orgEntity/till/abc", &auth, &body).await, 400, 400);
    assert_v2_error(&app.put_json("/v2/orgEntity/till/1.5", &auth, &body).await, 400, 400);

    // The till is as it was, and no update was audited.
    let till = app.get(&format!("/v2/organization/till/{id}"), &auth).await.json();
    assert_eq!(till["customField"], json!([]));
    assert_eq!(till["description"], "");
    assert_eq!(till["isActive"], true);
    app.get("/v1.1/store/login", &basic_header("steady.till", PASSWORD)).await.assert_status(200);
    assert!(app.audit(app.org.org_id, "TILL").await.iter().all(|r| r.action != "UPDATE"));
}

async fn till_lookup_by_id_code_and_name(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let id = add_till_with(
        &app,
        &auth,
        "lookup.till",
        app.org.store_id,
        json!({"description": "For lookups"}),
    )
    .await;

    let response = app.get(&format!("/v2/organization/till/{id}"), &auth).await;
    response.assert_status(200);
    let till = response.json();
    assert_eq!(till["id"], id);
    assert_eq!(till["code"], "lookup.till");
    assert_eq!(till["name"], "lookup.till");
    assert_eq!(till["description"], "For lookups");
    assert_eq!(till["type"], "TILL");
    assert_eq!(till["adminType"], "GENERAL");
    assert_eq!(till["isActive"], true);
    assert_eq!(till["isOuEnabled"], false);
    assert_eq!(till["default"], false);
    assert_eq!(till["referenceId"], -1);
    assert_eq!(till["customField"], json!([]));
    assert_eq!(till["timezone"], "Asia/Kolkata");
    assert_eq!(till["currency"], "INR");
    assert_eq!(till["warnings"], json!([]));

    let default =
        app.get(&format!("/v2/organization/till/{}", app.org.till_id), &auth).await.json();
    assert_eq!(default["adminType"], "ADMIN");
    assert_eq!(default["default"], true);
    assert_eq!(default["code"], app.org.till.username.as_str());

    for query in
        ["code=lookup.till".to_string(), format!("tillId={id}"), "name=lookup.till".to_string()]
    {
        let response = app.get(&format!("/v2/organization/till?{query}"), &auth).await;
        response.assert_status(200);
        assert_eq!(response.json(), till, "{query}");
    }
    // The admin token reads tills too.
    let admin = app.get(&format!("/v2/organization/till?tillId={id}"), &app.admin()).await;
    assert_eq!(admin.json()["id"], id);

    for (uri, status) in [
        ("/v2/organization/till".to_string(), 400),
        ("/v2/organization/till?other=1".to_string(), 400),
        ("/v2/organization/till?tillId=abc".to_string(), 400),
        ("/v2/organization/till?code=no.such.till".to_string(), 404),
        ("/v2/organization/till?name=no.such.till".to_string(), 404),
        ("/v2/organization/till?tillId=999999".to_string(), 404),
        ("/v2/organization/till/999999".to_string(), 404),
        ("/v2/organization/till/abc".to_string(), 400),
        (format!("/v2/organization/till/{}", app.org.store_id + 1000), 404),
    ] {
        let response = app.get(&uri, &auth).await;
        assert_v2_error(&response, status, i64::from(status));
    }
}

async fn till_lists_page_filter_and_hide_inactive_tills(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let north = add_store(&app, "north.store", "North").await;
    let t1 = add_till(&app, "main.one", app.org.store_id).await;
    let t2 = add_till(&app, "main.two", app.org.store_id).await;
    let t3 = add_till(&app, "north.one", north).await;

    for path in ["/v2/organization/tills", "/v2/orgEntity/till"] {
        let response = app.get(path, &auth).await;
        let list = data(&response);
        assert_eq!(ids(&list), [app.org.till_id, t1, t2, t3], "{path}");
        assert_eq!(
            response.json()["pagination"],
            json!({"limit": 10, "offset": 0, "total": 4}),
            "{path}"
        );
        assert!(list.iter().all(|t| t["type"] == "TILL" && t["isActive"] == true));
        assert_eq!(list[3]["storeId"], north);

        let page = app.get(&format!("{path}?limit=2&offset=1"), &auth).await;
        assert_eq!(ids(&data(&page)), [t1, t2]);
        assert_eq!(page.json()["pagination"], json!({"limit": 2, "offset": 1, "total": 4}));
        let beyond = app.get(&format!("{path}?offset=10"), &auth).await;
        assert!(data(&beyond).is_empty());
        assert_eq!(beyond.json()["pagination"]["total"], 4);

        let of_north = app.get(&format!("{path}?storeId={north}"), &auth).await;
        assert_eq!(ids(&data(&of_north)), [t3]);
        assert_eq!(of_north.json()["pagination"]["total"], 1);
        let of_main = app.get(&format!("{path}?storeId={}", app.org.store_id), &auth).await;
        assert_eq!(ids(&data(&of_main)), [app.org.till_id, t1, t2]);
        assert!(data(&app.get(&format!("{path}?storeId=999999"), &auth).await).is_empty());
        app.get(&format!("{path}?limit=100"), &auth).await.assert_status(200);
    }

    // Deactivating a till moves it from the active list to the inactive one.
    let response =
        app.put_json(&format!("/v2/orgEntity/till/{t2}"), &auth, &json!({"isActive": false})).await;
    response.assert_status(200);
    assert_eq!(response.json()["isActive"], false);
    let active = app.get("/v2/organization/tills", &auth).await;
    assert_eq!(ids(&data(&active)), [app.org.till_id, t1, t3]);
    assert_eq!(active.json()["pagination"]["total"], 3);
    let inactive = app.get("/v2/organization/tills?isActive=false", &auth).await;
    assert_eq!(ids(&data(&inactive)), [t2]);
    assert_eq!(data(&inactive)[0]["isActive"], false);
    assert_eq!(inactive.json()["pagination"]["total"], 1);
    let main_inactive = app
        .get(&format!("/v2/orgEntity/till?isActive=false&storeId={}", app.org.store_id), &auth)
        .await;
    assert_eq!(ids(&data(&main_inactive)), [t2]);
    assert!(
        data(&app.get(&format!("/v2/orgEntity/till?isActive=false&storeId={north}"), &auth).await)
            .is_empty()
    );
    // A deactivated till no longer logs in; reactivating it restores the login.
    assert_v1_error(
        &app.get("/v1.1/store/login", &basic_header("main.two", PASSWORD)).await,
        401,
        401,
    );
    app.put_json(&format!("/v2/orgEntity/till/{t2}"), &auth, &json!({"isActive": true}))
        .await
        .assert_status(200);
    app.get("/v1.1/store/login", &basic_header("main.two", PASSWORD)).await.assert_status(200);

    for query in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "offset=-1",
        "limit=abc",
        "isActive=maybe",
        "storeId=abc",
    ] {
        for path in ["/v2/organization/tills", "/v2/orgEntity/till"] {
            let response = app.get(&format!("{path}?{query}"), &auth).await;
            assert_v2_error(&response, 400, 400);
        }
    }
}

// ---------------------------------------------------------------- v2 organization

async fn hierarchy_of_a_standard_org(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let response = app.get("/v2/organization/hierarchy", &app.basic()).await;
    response.assert_status(200);
    let org = response.json();
    assert_eq!(org["id"], app.org.org_id);
    assert_eq!(org["name"], "Acme");
    assert_eq!(org["parentId"], -1);
    assert_eq!(org["language"], "en");
    assert_eq!(org["languageCode"], "en");
    assert!(org["parentOrganization"].is_null());
    assert_eq!(org["childOrganizations"], json!([]));
    assert_eq!(org["siblingOrganizations"], json!([]));
    assert!(org.get("customFields").is_none(), "custom fields only when asked");
    assert_eq!(org["warnings"], json!([]));

    let with_fields = app
        .get("/v2/organization/hierarchy?fetchCustomFields=true&fetchSiblings=true", &app.basic())
        .await;
    with_fields.assert_status(200);
    let with_fields = with_fields.json();
    assert_eq!(with_fields["customFields"], json!([]));
    assert_eq!(with_fields["siblingOrganizations"], json!([]));
    // An unrelated org neither appears nor changes anything.
    app.another_org("Stranger").await;
    let again = app.get("/v2/organization/hierarchy?fetchSiblings=true", &app.admin()).await.json();
    assert_eq!(again["childOrganizations"], json!([]));
    assert_eq!(again["parentId"], -1);

    for query in ["fetchSiblings=maybe", "fetchCustomFields=2"] {
        let response = app.get(&format!("/v2/organization/hierarchy?{query}"), &app.basic()).await;
        assert_v2_error(&response, 400, 400);
    }
}

async fn hierarchy_of_connected_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let parent = app.org.org_id;
    let first = app.another_org("Child One").await;
    let second = app.another_org("Child Two").await;
    let loner = app.another_org("Loner").await;
    for child in [first.org_id, second.org_id] {
        app.exec_sql(&format!("UPDATE orgs SET parent_id = {parent} WHERE id = {child}")).await;
    }
    let first_auth = basic_header(&first.till.username, &first.till.password);

    // The parent sees both children and has no parent of its own.
    let view = app.get("/v2/organization/hierarchy", &app.basic()).await;
    view.assert_status(200);
    let view = view.json();
    assert_eq!(view["parentId"], -1);
    let children = view["childOrganizations"].as_array().unwrap();
    assert_eq!(ids(children), [first.org_id, second.org_id]);
    assert_eq!(children[0]["name"], "Child One");
    assert_eq!(children[1]["parentId"], parent);
    assert_eq!(view["siblingOrganizations"], json!([]));

    // A child sees its parent, and its siblings only when asked.
    let view = app.get("/v2/organization/hierarchy", &first_auth).await;
    view.assert_status(200);
    let view = view.json();
    assert_eq!(view["id"], first.org_id);
    assert_eq!(view["name"], "Child One");
    assert_eq!(view["parentId"], parent);
    assert_eq!(view["parentOrganization"]["id"], parent);
    assert_eq!(view["parentOrganization"]["name"], "Acme");
    assert_eq!(view["childOrganizations"], json!([]));
    assert_eq!(view["siblingOrganizations"], json!([]));
    let view = app.get("/v2/organization/hierarchy?fetchSiblings=true", &first_auth).await.json();
    let siblings = view["siblingOrganizations"].as_array().unwrap();
    assert_eq!(ids(siblings), [second.org_id], "the sibling, not the caller itself");
    assert_eq!(siblings[0]["name"], "Child Two");
    assert_eq!(view["parentOrganization"]["id"], parent);
    let second_view = app
        .get(
            "/v2/organization/hierarchy?fetchSiblings=true",
            &basic_header(&second.till.username, &second.till.password),
        )
        .await
        .json();
    assert_eq!(ids(second_view["siblingOrganizations"].as_array().unwrap()), [first.org_id]);

    // An unconnected org is a standard org still.
    let loner_view = app
        .get(
            "/v2/organization/hierarchy?fetchSiblings=true",
            &basic_header(&loner.till.username, &loner.till.password),
        )
        .await
        .json();
    assert_eq!(loner_view["parentId"], -1);
    assert_eq!(loner_view["childOrganizations"], json!([]));
    assert_eq!(loner_view["siblingOrganizations"], json!([]));
}

async fn locations_search_and_page_stores(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let (zone, concept) = zone_and_concept(&app, &auth).await;
    let mut mall = store_body("mall.road", "Mall Road", zone, concept);
    mall["externalIds"] = json!(["MR-01"]);
    let mall = add_store_with(&app, &auth, mall).await;
    let annex = add_store(&app, "main_annex", "Annex").await;
    let mall_till = add_till(&app, "mall.till", mall).await;
    let main = app.org.store_id;

    let search = |query: &str| format!("/v2/locations?{query}");
    let all = app.get("/v2/locations", &auth).await;
    assert_eq!(ids(&data(&all)), [main, mall, annex]);
    assert_eq!(all.json()["pagination"], json!({"limit": 10, "offset": 0, "total": 3}));
    let first = &data(&all)[0];
    assert_eq!(first["code"], "main.store");
    assert_eq!(first["type"], "STORE");
    assert_eq!(first["parentZoneId"], zone);
    assert!(first.get("children").is_none(), "children only when asked");

    let cases: Vec<(&str, Vec<i64>)> = vec![
        ("entityCodes=mall.road", vec![mall]),
        ("entityCodes=main_annex,main.store", vec![main, annex]),
        ("entityCodes=%20mall.road%20,", vec![mall]),
        ("entityCodes=no.such.store", vec![]),
        ("entityCodes=mall.road&q=name:Main", vec![mall]),
        ("q=name:Main", vec![main]),
        ("q=name:Mall%20R", vec![mall]),
        ("q=code:main", vec![main, annex]),
        ("q=code:main_", vec![annex]),
        ("q=code:main.", vec![main]),
        ("q=code:ain", vec![]),
        ("q=external_id:MR", vec![mall]),
        ("q=external_id:MR-01", vec![mall]),
        ("q=external_id:01", vec![]),
        ("q=name:Annex,code:mall", vec![mall, annex]),
        ("q=name:Nothing", vec![]),
        // Prefixes match whatever the case (the spec's example searches `code:STR`).
        ("q=name:main", vec![main]),
        ("q=code:MALL", vec![mall]),
        ("q=external_id:mr-0", vec![mall]),
        ("type=STORE&q=code:mall", vec![mall]),
        ("type=store", vec![main, mall, annex]),
    ];
    for (query, expected) in cases {
        let response = app.get(&search(query), &auth).await;
        assert_eq!(ids(&data(&response)), expected, "{query}");
        assert_eq!(response.json()["pagination"]["total"], expected.len(), "{query}");
    }

    let with_children = data(&app.get(&search("includeChildren=true"), &auth).await);
    assert_eq!(ids(with_children[0]["children"].as_array().unwrap()), [app.org.till_id]);
    assert_eq!(ids(with_children[1]["children"].as_array().unwrap()), [mall_till]);
    assert_eq!(with_children[1]["children"][0]["type"], "TILL");
    assert_eq!(with_children[1]["children"][0]["code"], "mall.till");
    assert_eq!(with_children[2]["children"], json!([]));

    let page = app.get(&search("limit=2"), &auth).await;
    assert_eq!(ids(&data(&page)), [main, mall]);
    assert_eq!(page.json()["pagination"], json!({"limit": 2, "offset": 0, "total": 3}));
    let page = app.get(&search("limit=2&offset=2"), &auth).await;
    assert_eq!(ids(&data(&page)), [annex]);
    assert_eq!(page.json()["pagination"], json!({"limit": 2, "offset": 2, "total": 3}));
    let page = app.get(&search("q=code:main&limit=1&offset=1"), &auth).await;
    assert_eq!(ids(&data(&page)), [annex]);
    assert_eq!(page.json()["pagination"]["total"], 2);
}

async fn locations_reject_bad_queries(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    for query in [
        "q=name",
        "q=city:Mumbai",
        "q=name:Main,zone",
        "type=ZONE",
        "type=TILL",
        "limit=0",
        "limit=101",
        "offset=-1",
        "limit=ten",
        "includeChildren=maybe",
    ] {
        let response = app.get(&format!("/v2/locations?{query}"), &app.basic()).await;
        assert_v2_error(&response, 400, 400);
        assert!(response.json().get("data").is_none(), "{query}");
    }
    assert_v2_error(&app.get("/v2/locations", "Basic bm9wZTpub3Bl").await, 401, 401);
}

// ---------------------------------------------------------------- isolation

async fn orgs_are_isolated_from_each_other(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let acme_till = add_till_with(
        &app,
        &auth,
        "acme.counter",
        app.org.store_id,
        json!({"customFields": [{"name": "lane", "value": "1"}]}),
    )
    .await;
    let acme_store = add_store(&app, "acme.only", "Acme Only").await;
    let acme_till_before =
        app.get(&format!("/v2/organization/till/{acme_till}"), &auth).await.json();
    let acme_stores_before = entities(&app, &auth, "type=STORE").await;

    let beta = app.another_org("Beta").await;
    let b = basic_header(&beta.till.username, &beta.till.password);
    let (beta_zone, beta_concept) = zone_and_concept(&app, &b).await;

    // Reads by id, code or name find nothing of Acme's.
    for uri in [
        format!("/v2/organization/till/{acme_till}"),
        format!("/v2/organization/till/{}", app.org.till_id),
        format!("/v2/organization/till?tillId={acme_till}"),
        "/v2/organization/till?code=acme.counter".to_string(),
        format!("/v2/organization/till?name={}", app.org.till.username),
    ] {
        assert_v2_error(&app.get(&uri, &b).await, 404, 404);
    }
    for uri in [
        format!("/v1.1/store/get?id={}", app.org.store_id),
        "/v1.1/store/get?code=acme.only".to_string(),
    ] {
        assert_v1_error(&app.get(&uri, &b).await, 404, 404);
    }
    // The same code names Beta's own store.
    let own = app.get("/v1.1/store/get?code=main.store", &b).await;
    own.assert_status(200);
    assert_eq!(own.json()["response"]["stores"]["store"][0]["id"], beta.store_id);

    let beta_stores = entities(&app, &b, "type=STORE").await;
    assert_eq!(ids(&beta_stores), [beta.store_id]);
    assert!(!codes(&beta_stores).contains(&"acme.only".to_string()));
    assert_eq!(ids(&entities(&app, &b, "type=TILL").await), [beta.till_id]);
    assert!(
        entities(&app, &b, &format!("type=STORE&id={},{acme_store}", app.org.store_id))
            .await
            .is_empty()
    );
    let acme_parent = format!(
        "type=TILL&parent_identifier_type=STORE_ID&parent_identifier_value={}",
        app.org.store_id
    );
    assert_v1_error(
        &app.get(&format!("/v1.1/organization/entities?{acme_parent}"), &b).await,
        400,
        400,
    );
    let tills = app.get("/v2/organization/tills", &b).await;
    assert_eq!(ids(&data(&tills)), [beta.till_id]);
    assert_eq!(
        ids(&data(
            &app.get(&format!("/v2/organization/tills?storeId={}", app.org.store_id), &b).await
        )),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(&data(&app.get("/v2/locations?includeChildren=true", &b).await)),
        [beta.store_id]
    );
    assert!(data(&app.get("/v2/locations?entityCodes=acme.only", &b).await).is_empty());

    // Writes aimed at Acme's entities are refused.
    let hijack = json!({
        "description": "hijacked",
        "isActive": false,
        "password": "stolen-1",
        "customFields": [{"name": "lane", "value": "9"}],
    });
    assert_v2_error(
        &app.put_json(&format!("/v2/orgEntity/till/{acme_till}"), &b, &hijack).await,
        404,
        404,
    );
    assert_v2_error(
        &app.put_json(&format!("/v2/orgEntity/till/{}", app.org.till_id), &b, &hijack).await,
        404,
        404,
    );
    let sneaky = json!({"name": "beta.sneaky", "password": PASSWORD, "storeId": app.org.store_id});
    assert_v2_error(&app.post_json("/v2/orgEntity/till", &b, &sneaky).await, 400, 1214);
    let (acme_zone, acme_concept) = zone_and_concept(&app, &auth).await;
    let mixed = store_body("beta.mixed", "Mixed", acme_zone, beta_concept);
    assert_v2_error(&app.post_json("/v2/orgEntity/store", &b, &mixed).await, 400, 1214);
    let mixed = store_body("beta.mixed", "Mixed", beta_zone, acme_concept);
    assert_v2_error(&app.post_json("/v2/orgEntity/store", &b, &mixed).await, 400, 1214);

    // Acme is unchanged.
    let acme_till_after =
        app.get(&format!("/v2/organization/till/{acme_till}"), &auth).await.json();
    assert_eq!(acme_till_after, acme_till_before);
    assert_eq!(acme_till_after["isActive"], true);
    assert_eq!(custom_fields(&acme_till_after), [("lane".to_string(), json!("1"))]);
    app.get("/v1.1/store/login", &basic_header("acme.counter", PASSWORD)).await.assert_status(200);
    app.get("/v1.1/store/login", &auth).await.assert_status(200);
    assert_eq!(entities(&app, &auth, "type=STORE").await, acme_stores_before);
    assert_eq!(ids(&entities(&app, &auth, "type=TILL").await), [app.org.till_id, acme_till]);
    assert!(app.audit(app.org.org_id, "TILL").await.iter().all(|r| r.action == "CREATE"));
    assert!(app.audit(beta.org_id, "TILL").await.is_empty(), "Beta created no till");
    assert!(app.audit(beta.org_id, "STORE").await.is_empty(), "Beta created no store");
    // And Beta's view of itself is whole.
    assert_eq!(ids(&entities(&app, &b, "type=TILL").await), [beta.till_id]);
    assert_eq!(store_count(&app, &b).await, 1);
}
