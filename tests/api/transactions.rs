//! v2 transactions: bills earn what the program says, returns take back exactly what the
//! returned part earned, duplicates and bad input get their codes, reads, updates, bulk,
//! simulation, async and import modes, concurrency, and org isolation.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse};

backend_tests!(
    a_bill_earns_the_default_ten_percent,
    the_customer_read_shows_loyalty_fields,
    a_repeated_bill_number_is_604_and_never_awards_twice,
    transactions_never_create_customers,
    negative_amounts_get_their_codes,
    bad_bodies_get_clear_errors,
    a_full_return_takes_back_exactly_what_was_earned,
    line_item_returns_are_proportional_and_never_twice,
    amount_returns_are_proportional_and_exclusive_with_line_returns,
    returns_that_cannot_be_get_their_codes,
    the_tier_moves_with_the_bill_that_crosses_the_threshold,
    line_item_rules_earn_per_line,
    not_interested_bills_need_no_customer,
    async_bills_are_evaluated_by_the_worker,
    skip_downstream_stores_without_loyalty,
    simulation_writes_nothing,
    reads_by_id_number_and_customer,
    updates_change_only_fields,
    bulk_adds_answer_per_item,
    concurrent_bills_for_one_customer_stay_consistent,
    transactions_are_isolated_between_orgs,
    the_ledger_verifies_after_a_busy_day,
);

// ---------------------------------------------------------------- helpers

#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
}

/// Registers a customer with a mobile number; its id.
pub async fn add_customer(app: &TestApp, mobile: &str) -> i64 {
    let body = json!({"profiles": [{"firstName": "Ana", "identifiers": [{"type": "mobile", "value": mobile}]}]});
    let response = app.post_json("/v2/customers", &app.basic(), &body).await;
    response.assert_status(200);
    response.json()["createdId"].as_i64().unwrap_or_else(|| panic!("{}", response.body))
}

/// Replaces the org's default program document.
pub async fn set_program(app: &TestApp, doc: &Value) {
    let list = app.get("/x/perks/v1/programs", &app.admin()).await;
    list.assert_status(200);
    let body = list.json();
    let programs = body["data"].as_array().unwrap_or_else(|| panic!("{}", list.body));
    let default =
        programs.iter().find(|p| p["default"] == true).unwrap_or_else(|| panic!("{}", list.body));
    let id = default["id"].as_i64().unwrap();
    app.put_json(&format!("/x/perks/v1/programs/{id}"), &app.admin(), doc).await.assert_status(200);
}

/// Enables a String extended field on line items.
async fn enable_line_field(app: &TestApp, name: &str) {
    let body = json!({"name": name, "entityType": "lineitem", "dataType": "String"});
    let response = app.post_json("/v2/extendedFields", &app.admin(), &body).await;
    response.assert_status(200);
}

fn bill(number: &str, amount: f64) -> Value {
    json!({"type": "REGULAR", "billNumber": number, "billAmount": amount, "billingDate": "2026-01-10T10:00:00+05:30"})
}

async fn post_bill(app: &TestApp, mobile: &str, body: &Value) -> TestResponse {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    app.post_json(&uri, &app.basic(), body).await
}

fn awarded(response: &TestResponse) -> f64 {
    let body = response.json();
    body["sideEffects"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", response.body))
        .iter()
        .filter(|e| e["type"] == "points")
        .map(|e| e["awardedPoints"].as_f64().unwrap())
        .sum()
}

async fn loyalty(app: &TestApp, customer: i64) -> Value {
    let response = app.get(&format!("/v2/customers/{customer}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["loyaltyInfo"].clone()
}

async fn points(app: &TestApp, customer: i64) -> f64 {
    loyalty(app, customer).await["loyaltyPoints"].as_f64().unwrap()
}

fn sample_program() -> Value {
    json!({"name": "Default", "default": true, "stores": [],
     "tiers": [{"name": "Bronze"},
               {"name": "Silver", "upgrade": {"metric": "lifetimePurchases", "atLeast": 10000}},
               {"name": "Gold",   "upgrade": {"metric": "lifetimePurchases", "atLeast": 50000}}],
     "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 5000}, "downgrade": "oneDown"},
     "earn": [{"name": "base",  "on": "transaction", "when": "true", "points": "bill.amount * 0.1"},
              {"name": "gold",  "on": "transaction", "when": "customer.tier == 'Gold'", "points": "bill.amount * 0.05"},
              {"name": "shoes", "on": "lineItem", "when": "item.extendedFields.category == 'shoes'", "points": "item.amount * 0.1"},
              {"name": "signup", "on": "registration", "points": "100"}],
     "expiry": {"type": "rolling", "days": 365},
     "promised": {"delayDays": 0},
     "redemption": {"minPoints": 100, "multipleOf": 10, "maxPerBill": 5000, "pointValue": 0.25, "validationCode": "required"},
     "returns": {"reversePoints": true, "allowNegativeBalance": false},
     "rounding": {"pointsDecimals": 2, "mode": "floor"}})
}

/// A program with one line-item rule: 10% of each line's amount.
fn per_line_program() -> Value {
    json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
        "earn": [{"name": "lines", "on": "lineItem", "points": "item.amount * 0.1"},
                 {"name": "bonus", "on": "transaction", "points": "bill.amount * 0.01"}]})
}

fn two_line_bill(number: &str) -> Value {
    json!({"type": "REGULAR", "billNumber": number, "billAmount": 3000, "billingDate": "2026-01-10T10:00:00Z",
        "lineItemsV2": [
            {"itemCode": "SHOE", "qty": 2, "rate": 500, "amount": 1000},
            {"itemCode": "BAG", "qty": 1, "rate": 2000, "amount": 2000}]})
}

// ---------------------------------------------------------------- earning

async fn a_bill_earns_the_default_ten_percent(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000001").await;
    let response = post_bill(&app, "919845000001", &bill("B-1", 1234.5)).await;
    response.assert_status(200);
    let body = response.json();
    assert!(body["createdId"].as_i64().unwrap() > 0);
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(awarded(&response), 123.45);
    assert_eq!(points(&app, customer).await, 123.45);
}

async fn the_customer_read_shows_loyalty_fields(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000002").await;
    post_bill(&app, "919845000002", &bill("B-1", 1000.0)).await.assert_status(200);
    post_bill(&app, "919845000002", &bill("B-2", 500.0)).await.assert_status(200);
    let info = loyalty(&app, customer).await;
    assert_eq!(info["loyaltyType"], "loyalty");
    assert_eq!(info["loyaltyPoints"], 150.0);
    assert_eq!(info["lifetimePoints"], 150.0);
    assert_eq!(info["lifetimePurchases"], 1500.0);
    assert_eq!(info["currentSlab"], "Base");
    let v1 = app.get("/v1.1/customer/get?format=json&mobile=919845000002", &app.basic()).await;
    v1.assert_status(200);
    let item = &v1.json()["response"]["customers"]["customer"][0];
    assert_eq!(item["loyalty_points"], 150.0, "{}", v1.body);
    assert_eq!(item["lifetime_purchases"], 1500.0);
    assert_eq!(item["current_slab"], "Base");
    let recent = item["transactions"]["transaction"].as_array().unwrap();
    assert_eq!(recent.len(), 2, "{}", v1.body);
    assert_eq!(recent[0]["number"], "B-2", "newest first");
    assert_eq!(recent[0]["points"]["issued"], 50.0);
}

async fn a_repeated_bill_number_is_604_and_never_awards_twice(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000003").await;
    post_bill(&app, "919845000003", &bill("DUP-1", 100.0)).await.assert_status(200);
    for _ in 0..3 {
        assert_v2_error(&post_bill(&app, "919845000003", &bill("DUP-1", 100.0)).await, 400, 604);
    }
    assert_eq!(points(&app, customer).await, 10.0);
    // A window of 0 days turns the check off.
    let config = json!({"keyName": "CONF_LOYALTY_BILL_NUMBER_UNIQUE_IN_DAYS", "value": "0"});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
    post_bill(&app, "919845000003", &bill("DUP-1", 100.0)).await.assert_status(200);
    assert_eq!(points(&app, customer).await, 20.0);
}

async fn transactions_never_create_customers(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    assert_v2_error(&post_bill(&app, "919845000004", &bill("B-1", 100.0)).await, 404, 8015);
    let search = app.get("/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=919845000004", &app.basic()).await;
    search.assert_status(404);
}

async fn negative_amounts_get_their_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000005").await;
    let cases = [
        (json!({"billAmount": -5}), 601),
        (json!({"discount": -1}), 666),
        (json!({"grossAmount": -1}), 665),
        (json!({"lineItemsV2": [{"itemCode": "A", "qty": 1, "amount": -1}]}), 661),
        (json!({"lineItemsV2": [{"itemCode": "A", "qty": 1, "value": -1}]}), 662),
        (json!({"lineItemsV2": [{"itemCode": "A", "qty": 1, "rate": -1}]}), 663),
        (json!({"lineItemsV2": [{"itemCode": "A", "qty": 1, "discount": -1}]}), 664),
        (json!({"lineItemsV2": [{"itemCode": "A", "qty": -1}]}), 627),
    ];
    for (i, (patch, code)) in cases.into_iter().enumerate() {
        let mut body = bill(&format!("NEG-{i}"), 100.0);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        assert_v2_error(&post_bill(&app, "919845000005", &body).await, 400, code);
    }
    assert_eq!(points(&app, customer).await, 0.0);
}

async fn bad_bodies_get_clear_errors(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845000006").await;
    let no_number = json!({"type": "REGULAR", "billAmount": 10});
    assert_v2_error(&post_bill(&app, "919845000006", &no_number).await, 400, 602);
    let bad_type = json!({"type": "GIFT", "billNumber": "X", "billAmount": 10});
    assert_v2_error(&post_bill(&app, "919845000006", &bad_type).await, 400, 400);
    let no_amount = json!({"type": "REGULAR", "billNumber": "X"});
    assert_v2_error(&post_bill(&app, "919845000006", &no_amount).await, 400, 601);
    // A line's rate × qty beyond a decimal's range (no `value` given) is no server failure.
    let huge = json!({"type": "REGULAR", "billNumber": "HUGE", "billAmount": 10,
        "lineItemsV2": [{"itemCode": "A", "qty": 900_000_000_000_000u64, "rate": 900_000_000_000_000u64}]});
    let r = post_bill(&app, "919845000006", &huge).await;
    assert!(r.status.is_success() || r.status.is_client_error(), "{}: {}", r.status, r.body);
    let bad_date =
        json!({"type": "REGULAR", "billNumber": "X", "billAmount": 10, "billingDate": "yesterday"});
    assert_v2_error(&post_bill(&app, "919845000006", &bad_date).await, 400, 400);
    let future = json!({"type": "REGULAR", "billNumber": "X", "billAmount": 10, "billingDate": "2099-01-01T00:00:00Z"});
    assert_v2_error(&post_bill(&app, "919845000006", &future).await, 400, 643);
    let past = json!({"type": "REGULAR", "billNumber": "X", "billAmount": 10, "billingDate": "1990-01-01T00:00:00Z"});
    assert_v2_error(&post_bill(&app, "919845000006", &past).await, 400, 644);
    let not_json = app
        .send(
            crate::helpers::request(
                axum::http::Method::POST,
                "/v2/transactions?identifierName=mobile&identifierValue=919845000006",
            )
            .header("authorization", app.basic())
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{nope"))
            .unwrap(),
        )
        .await;
    assert_v2_error(&not_json, 400, 400);
    let no_identifier = app.post_json("/v2/transactions", &app.basic(), &bill("X", 10.0)).await;
    assert_eq!(no_identifier.json()["errors"][0]["code"], 8013, "{}", no_identifier.body);
}

// ---------------------------------------------------------------- returns

fn full_return(number: &str) -> Value {
    json!({"type": "RETURN", "returnType": "FULL", "billNumber": number, "billingDate": "2026-01-11T10:00:00Z"})
}

async fn a_full_return_takes_back_exactly_what_was_earned(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000007").await;
    post_bill(&app, "919845000007", &bill("KEEP", 333.33)).await.assert_status(200);
    post_bill(&app, "919845000007", &bill("BACK", 777.77)).await.assert_status(200);
    assert_eq!(points(&app, customer).await, 33.33 + 77.77);
    let response = post_bill(&app, "919845000007", &full_return("BACK")).await;
    response.assert_status(200);
    assert_eq!(awarded(&response), -77.77);
    assert_eq!(points(&app, customer).await, 33.33);
    assert_eq!(loyalty(&app, customer).await["lifetimePurchases"], 333.33);
    // Never twice.
    assert_v2_error(&post_bill(&app, "919845000007", &full_return("BACK")).await, 400, 633);
    assert_eq!(points(&app, customer).await, 33.33);
}

async fn line_item_returns_are_proportional_and_never_twice(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &per_line_program()).await;
    let customer = add_customer(&app, "919845000008").await;
    let sale = post_bill(&app, "919845000008", &two_line_bill("L-1")).await;
    sale.assert_status(200);
    // 100 + 200 per line, 30 on the bill.
    assert_eq!(awarded(&sale), 330.0);
    let one_shoe = json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "L-1", "billingDate": "2026-01-11T10:00:00Z",
        "lineItemsV2": [{"itemCode": "SHOE", "qty": 1}]});
    let first = post_bill(&app, "919845000008", &one_shoe).await;
    first.assert_status(200);
    // Half the shoe line (50) and a sixth of the bill points (500 of 3000 returned: 5).
    assert_eq!(awarded(&first), -55.0);
    post_bill(&app, "919845000008", &one_shoe).await.assert_status(200);
    assert_eq!(points(&app, customer).await, 330.0 - 110.0);
    assert_v2_error(&post_bill(&app, "919845000008", &one_shoe).await, 400, 626);
    let unknown = json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "L-1", "billingDate": "2026-01-11T10:00:00Z",
        "lineItemsV2": [{"itemCode": "HAT", "qty": 1}]});
    assert_v2_error(&post_bill(&app, "919845000008", &unknown).await, 400, 660);
    let bag = json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "L-1", "billingDate": "2026-01-11T10:00:00Z",
        "lineItemsV2": [{"itemCode": "BAG", "qty": 1}]});
    post_bill(&app, "919845000008", &bag).await.assert_status(200);
    // Everything came back: nothing is left, to the hundredth.
    assert_eq!(points(&app, customer).await, 0.0);
    assert_v2_error(&post_bill(&app, "919845000008", &full_return("L-1")).await, 400, 633);
}

async fn amount_returns_are_proportional_and_exclusive_with_line_returns(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &per_line_program()).await;
    let customer = add_customer(&app, "919845000009").await;
    post_bill(&app, "919845000009", &two_line_bill("A-1")).await.assert_status(200);
    let amount = |value: f64| json!({"type": "RETURN", "returnType": "AMOUNT", "billNumber": "A-1", "billAmount": value, "billingDate": "2026-01-11T10:00:00Z"});
    let first = post_bill(&app, "919845000009", &amount(1000.0)).await;
    first.assert_status(200);
    assert_eq!(awarded(&first), -110.0);
    assert_v2_error(&post_bill(&app, "919845000009", &amount(2500.0)).await, 400, 630);
    let line = json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "A-1", "billingDate": "2026-01-11T10:00:00Z",
        "lineItemsV2": [{"itemCode": "BAG", "qty": 1}]});
    assert_v2_error(&post_bill(&app, "919845000009", &line).await, 400, 638);
    assert_v2_error(&post_bill(&app, "919845000009", &full_return("A-1")).await, 400, 639);
    post_bill(&app, "919845000009", &amount(2000.0)).await.assert_status(200);
    assert_eq!(points(&app, customer).await, 0.0);
    // And the other way round: after a line return, an amount return is 632.
    post_bill(&app, "919845000009", &two_line_bill("A-2")).await.assert_status(200);
    post_bill(&app, "919845000009", &json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "A-2", "billingDate": "2026-01-11T10:00:00Z",
        "lineItemsV2": [{"itemCode": "BAG", "qty": 1}]})).await.assert_status(200);
    let over = json!({"type": "RETURN", "returnType": "AMOUNT", "billNumber": "A-2", "billAmount": 10, "billingDate": "2026-01-11T10:00:00Z"});
    assert_v2_error(&post_bill(&app, "919845000009", &over).await, 400, 632);
}

async fn returns_that_cannot_be_get_their_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845000010").await;
    add_customer(&app, "919845000011").await;
    post_bill(&app, "919845000010", &bill("R-1", 100.0)).await.assert_status(200);
    assert_v2_error(&post_bill(&app, "919845000010", &full_return("NOPE")).await, 404, 625);
    assert_v2_error(&post_bill(&app, "919845000011", &full_return("R-1")).await, 404, 668);
    let early = json!({"type": "RETURN", "returnType": "FULL", "billNumber": "R-1", "billingDate": "2026-01-09T10:00:00Z"});
    assert_v2_error(&post_bill(&app, "919845000010", &early).await, 400, 624);
    let bad_type = json!({"type": "RETURN", "returnType": "SOME", "billNumber": "R-1"});
    assert_v2_error(&post_bill(&app, "919845000010", &bad_type).await, 400, 628);
}

// ---------------------------------------------------------------- tiers and rules

async fn the_tier_moves_with_the_bill_that_crosses_the_threshold(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &sample_program()).await;
    let customer = add_customer(&app, "919845000012").await;
    let first = post_bill(&app, "919845000012", &bill("T-1", 9000.0)).await;
    assert!(!first.json()["sideEffects"].as_array().unwrap().iter().any(|e| e["type"] == "tier"));
    assert_eq!(loyalty(&app, customer).await["currentSlab"], "Bronze");
    let second = post_bill(&app, "919845000012", &bill("T-2", 1000.0)).await;
    let effects = second.json()["sideEffects"].clone();
    let tier = effects
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "tier")
        .unwrap_or_else(|| panic!("{effects}"));
    assert_eq!(tier["changeType"], "UPGRADE");
    assert_eq!(tier["previousTier"], "Bronze");
    assert_eq!(tier["newTier"], "Silver");
    assert_eq!(loyalty(&app, customer).await["currentSlab"], "Silver");
    // Straight past Silver to Gold; Gold earns its bonus from the next bill on.
    post_bill(&app, "919845000012", &bill("T-3", 40000.0)).await.assert_status(200);
    assert_eq!(loyalty(&app, customer).await["currentSlab"], "Gold");
    let gold = post_bill(&app, "919845000012", &bill("T-4", 100.0)).await;
    assert_eq!(awarded(&gold), 15.0);
}

async fn line_item_rules_earn_per_line(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &sample_program()).await;
    enable_line_field(&app, "category").await;
    add_customer(&app, "919845000013").await;
    let body = json!({"type": "REGULAR", "billNumber": "S-1", "billAmount": 300, "billingDate": "2026-01-10T10:00:00Z",
        "lineItemsV2": [
            {"itemCode": "RUN", "qty": 1, "rate": 200, "amount": 200, "extendedFields": {"category": "shoes"}},
            {"itemCode": "CAP", "qty": 1, "rate": 100, "amount": 100, "extendedFields": {"category": "hats"}}]});
    let response = post_bill(&app, "919845000013", &body).await;
    response.assert_status(200);
    assert_eq!(awarded(&response), 30.0 + 20.0);
    let raw = post_bill(&app, "919845000013", &json!({"type": "REGULAR", "billNumber": "S-2", "billAmount": 10, "billingDate": "2026-01-10T10:00:00Z"})).await;
    raw.assert_status(200);
    let uri =
        "/v2/transactions?identifierName=mobile&identifierValue=919845000013&rawSideEffects=true";
    let raw = app.post_json(uri, &app.basic(), &bill("S-3", 100.0)).await;
    let effect = &raw.json()["sideEffects"][0];
    assert_eq!(effect["strategyIds"], json!(["base"]), "{}", raw.body);
    assert!(effect["expiryDate"].as_str().is_some());
}

// ---------------------------------------------------------------- modes

async fn not_interested_bills_need_no_customer(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let body = json!({"type": "NOT_INTERESTED", "billNumber": "NI-1", "billAmount": 100, "notInterestedReason": "declined"});
    let response = app.post_json("/v2/transactions", &app.basic(), &body).await;
    response.assert_status(200);
    let id = response.json()["createdId"].as_i64().unwrap();
    assert_eq!(awarded(&response), 0.0);
    let read = app.get(&format!("/v2/transactions/{id}?type=NOT_INTERESTED"), &app.basic()).await;
    read.assert_status(200);
    assert_eq!(read.json()["customerId"], Value::Null);
    let ni_return =
        json!({"type": "NOT_INTERESTED_RETURN", "returnType": "FULL", "billNumber": "NI-1"});
    app.post_json("/v2/transactions", &app.basic(), &ni_return).await.assert_status(200);
}

async fn async_bills_are_evaluated_by_the_worker(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000014").await;
    let uri = "/v2/transactions?identifierName=mobile&identifierValue=919845000014&use_asynch=true";
    let response = app.post_json(uri, &app.basic(), &bill("AS-1", 100.0)).await;
    response.assert_status(200);
    assert!(response.json().get("sideEffects").is_none(), "{}", response.body);
    let id = response.json()["createdId"].as_i64().unwrap();
    assert_eq!(points(&app, customer).await, 0.0);
    let handled = perks::transactions::service::process_pending(
        &app.state.db,
        &app.state.programs,
        100,
        perks::db::now_millis(),
    )
    .await
    .unwrap();
    assert_eq!(handled, 1);
    assert_eq!(points(&app, customer).await, 10.0);
    let read =
        app.get(&format!("/v2/transactions/{id}?mlp=true&points_breakup=true"), &app.basic()).await;
    assert_eq!(read.json()["async"], false);
    assert_eq!(read.json()["billPointsBreakup"][0]["points"], 10.0, "{}", read.body);
}

async fn skip_downstream_stores_without_loyalty(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000015").await;
    let request = crate::helpers::request(
        axum::http::Method::POST,
        "/v2/transactions?identifierName=mobile&identifierValue=919845000015",
    )
    .header("authorization", app.basic())
    .header("content-type", "application/json")
    .header("SKIP-DOWNSTREAM", "true")
    .body(axum::body::Body::from(bill("IMP-1", 100.0).to_string()))
    .unwrap();
    let response = app.send(request).await;
    response.assert_status(200);
    assert_eq!(points(&app, customer).await, 0.0);
    let list = app.get(&format!("/v2/customers/{customer}/transactions"), &app.basic()).await;
    assert_eq!(list.json()["pagination"]["total"], 1);
}

async fn simulation_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000016").await;
    let uri = "/v2/simulation/transactions?identifierName=mobile&identifierValue=919845000016";
    let response = app.post_json(uri, &app.basic(), &bill("SIM-1", 500.0)).await;
    response.assert_status(200);
    assert_eq!(awarded(&response), 50.0);
    assert_eq!(points(&app, customer).await, 0.0);
    // The number is still free.
    post_bill(&app, "919845000016", &bill("SIM-1", 500.0)).await.assert_status(200);
    let config = json!({"keyName": "CONF_ENABLE_SIMULATION_API_MODE", "value": "false"});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
    app.post_json(uri, &app.basic(), &bill("SIM-2", 500.0)).await.assert_status(403);
}

// ---------------------------------------------------------------- reads and updates

async fn reads_by_id_number_and_customer(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000017").await;
    let body = json!({"type": "REGULAR", "billNumber": "RD-1", "billAmount": 200, "grossAmount": 220, "discount": 20,
        "billingDate": "2026-01-10T10:00:00+07:00", "note": "hello",
        "paymentModes": [{"mode": "CardPayment", "value": 200}],
        "lineItemsV2": [{"itemCode": "A", "qty": 2, "rate": 110, "discount": 20, "amount": 200}]});
    let id = post_bill(&app, "919845000017", &body).await.json()["createdId"].as_i64().unwrap();
    let read = app.get(&format!("/v2/transactions/{id}?tenders=true"), &app.basic()).await;
    read.assert_status(200);
    let txn = read.json();
    assert_eq!(txn["customerId"], customer);
    assert_eq!(txn["type"], "REGULAR");
    assert_eq!(txn["billDetails"]["billNumber"], "RD-1");
    assert_eq!(txn["billDetails"]["amount"], 200.0);
    assert_eq!(txn["billDetails"]["billingTimeInputOffset"], "+07:00");
    assert_eq!(txn["billDetails"]["billingTime"], "2026-01-10T08:30:00+05:30");
    assert_eq!(txn["billDetails"]["billingStore"]["code"], "main.store");
    assert_eq!(txn["lineItems"][0]["qty"], 2.0);
    assert_eq!(txn["paymentModes"][0]["mode"], "CardPayment");
    assert_eq!(txn["loyaltiesPointDetails"], json!([]));
    assert_eq!(txn["attribution"]["createdBy"]["type"], "TILL");
    app.get("/v2/transactions/999999", &app.basic()).await.assert_status(404);
    app.get(&format!("/v2/transactions/{id}?type=RETURN"), &app.basic()).await.assert_status(404);
    let by_number = app.get("/v2/transactions/getByBillNumber/RD-1", &app.basic()).await;
    by_number.assert_status(200);
    assert_eq!(by_number.json()["pagination"]["total"], 1);
    assert_eq!(by_number.json()["data"][0]["id"], id);
    let list =
        app.get(&format!("/v2/customers/{customer}/transactions?limit=5"), &app.basic()).await;
    list.assert_status(200);
    assert_eq!(list.json()["data"][0]["billPoints"]["points"], 20.0);
    app.get("/v2/customers/999999/transactions", &app.basic()).await.assert_status(404);
}

async fn updates_change_only_fields(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    enable_line_field(&app, "category").await;
    add_customer(&app, "919845000018").await;
    let id = post_bill(&app, "919845000018", &two_line_bill("U-1")).await.json()["createdId"]
        .as_i64()
        .unwrap();
    let uri = "/v2/transactions?identifierName=mobile&identifierValue=919845000018&source=INSTORE";
    let body = json!({"id": id, "deliveryStatus": "SHIPPED", "lineItems": [{"itemCode": "BAG", "extendedFields": {"category": "bags"}}]});
    let response = app.put_json(uri, &app.basic(), &body).await;
    response.assert_status(200);
    assert_eq!(response.json()["createdId"], id);
    let read = app.get(&format!("/v2/transactions/{id}"), &app.basic()).await.json();
    assert_eq!(read["billDetails"]["deliveryStatus"], "SHIPPED");
    assert_eq!(read["lineItems"][1]["extendedFields"]["category"], "bags");
    assert_eq!(read["billDetails"]["amount"], 3000.0);
    let unknown = json!({"id": 987654, "deliveryStatus": "SHIPPED"});
    assert_v2_error(&app.put_json(uri, &app.basic(), &unknown).await, 404, 667);
    let neither = json!({"deliveryStatus": "SHIPPED"});
    assert_v2_error(&app.put_json(uri, &app.basic(), &neither).await, 400, 607);
    assert!(!app.audit(app.org.org_id, "TRANSACTION").await.is_empty());
}

async fn bulk_adds_answer_per_item(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000019").await;
    let item = |number: &str, mobile: &str| {
        let mut b = bill(number, 100.0);
        b["identifierType"] = json!("mobile");
        b["identifierValue"] = json!(mobile);
        b["source"] = json!("INSTORE");
        b
    };
    let all_ok = app
        .post_json(
            "/v2/transactions/bulk",
            &app.basic(),
            &json!([item("BK-1", "919845000019"), item("BK-2", "919845000019")]),
        )
        .await;
    all_ok.assert_status(200);
    assert_eq!(all_ok.json()[1]["sideEffects"][0]["awardedPoints"], 10.0);
    let partial = app
        .post_json(
            "/v2/transactions/bulk",
            &app.basic(),
            &json!([item("BK-3", "919845000019"), item("BK-1", "919845000019")]),
        )
        .await;
    partial.assert_status(201);
    assert_eq!(partial.json()[1]["errors"][0]["code"], 604);
    let none = app
        .post_json("/v2/transactions/bulk", &app.basic(), &json!([item("BK-4", "919845009999")]))
        .await;
    none.assert_status(500);
    assert_eq!(none.json()[0]["errors"][0]["code"], 8015);
    let too_many: Vec<Value> = (0..101).map(|i| item(&format!("M-{i}"), "919845000019")).collect();
    assert_v2_error(
        &app.post_json("/v2/transactions/bulk", &app.basic(), &Value::Array(too_many)).await,
        400,
        1060,
    );
    assert_eq!(points(&app, customer).await, 30.0);
}

async fn concurrent_bills_for_one_customer_stay_consistent(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845000020").await;
    let mut handles = Vec::new();
    for i in 0..16 {
        let router = app.router.clone();
        let auth = app.basic();
        // Half the requests repeat a number: exactly one of each pair may earn.
        let number = format!("C-{}", i / 2);
        handles.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let request = crate::helpers::request(
                axum::http::Method::POST,
                "/v2/transactions?identifierName=mobile&identifierValue=919845000020",
            )
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(bill(&number, 100.0).to_string()))
            .unwrap();
            router.oneshot(request).await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 8, "{statuses:?}");
    assert_eq!(points(&app, customer).await, 80.0);
    let mut conn = app.state.db.read().await.unwrap();
    let mismatches = perks::points::ledger::verify(&mut conn, None, 10).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

async fn transactions_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845000021").await;
    let id = post_bill(&app, "919845000021", &bill("ISO-1", 100.0)).await.json()["createdId"]
        .as_i64()
        .unwrap();
    let other = app.another_org("Other").await;
    let auth = crate::helpers::basic_header(&other.till.username, &other.till.password);
    app.get(&format!("/v2/transactions/{id}"), &auth).await.assert_status(404);
    let list = app.get("/v2/transactions/getByBillNumber/ISO-1", &auth).await;
    assert_eq!(list.json()["pagination"]["total"], 0);
    let uri = "/v2/transactions?identifierName=mobile&identifierValue=919845000021";
    assert_v2_error(&app.post_json(uri, &auth, &bill("ISO-2", 100.0)).await, 404, 8015);
}

async fn the_ledger_verifies_after_a_busy_day(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &per_line_program()).await;
    add_customer(&app, "919845000022").await;
    for i in 0..5 {
        post_bill(&app, "919845000022", &two_line_bill(&format!("V-{i}"))).await.assert_status(200);
    }
    post_bill(&app, "919845000022", &full_return("V-0")).await.assert_status(200);
    post_bill(&app, "919845000022", &json!({"type": "RETURN", "returnType": "AMOUNT", "billNumber": "V-1", "billAmount": 1234.56, "billingDate": "2026-01-11T10:00:00Z"})).await.assert_status(200);
    post_bill(&app, "919845000022", &json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "V-2", "billingDate": "2026-01-11T10:00:00Z",
        "lineItemsV2": [{"itemCode": "SHOE", "qty": 1}]})).await.assert_status(200);
    // A year later everything has expired.
    let later = perks::db::now_millis() + 400 * 86_400_000;
    while perks::points::ledger::process_due_lots(&app.state.db, later, false, 100).await.unwrap()
        == 100
    {}
    let mut conn = app.state.db.read().await.unwrap();
    let mismatches = perks::points::ledger::verify(
        &mut conn,
        Some(perks::org::model::OrgId(app.org.org_id)),
        10,
    )
    .await
    .unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}
