//! v1.1 transactions: batch adds (sales, not-interested bills, returns, exchanges) with their
//! item codes and side effects, v1.1 time-zone rules, XML, local currency, updates and retro
//! conversion, reads with their filters, permissions and org isolation.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header, request};
use crate::transactions::add_customer;

backend_tests!(
    a_bill_earns_ten_percent_and_reports_the_customer,
    batches_answer_200_201_and_500,
    not_interested_bills_need_no_customer,
    unknown_customers_fail_the_item_and_are_never_registered,
    negative_values_get_their_codes,
    billing_time_is_store_local_and_offsets_are_ignored,
    a_store_with_its_own_zone_and_currency,
    a_full_return_takes_back_what_was_earned,
    purchase_time_picks_among_sales_of_one_number,
    line_item_and_amount_returns_are_proportional_and_exclusive,
    returns_that_cannot_be_get_their_codes,
    an_exchange_returns_its_return_lines_and_earns_on_the_rest,
    xml_in_xml_out,
    line_item_fields_are_checked_and_kept,
    local_currency_bills_are_converted_by_the_org_ratio,
    currency_ratios_are_validated_and_listed,
    updates_change_delivery_status_and_fields,
    retro_converts_a_not_interested_bill,
    get_filters_by_type_store_date_and_shows_extras,
    a_till_without_transaction_write_is_refused,
    another_orgs_till_cannot_see_or_return_the_bill,
);

// ---------------------------------------------------------------- helpers

const ADD: &str = "/v1.1/transaction/add?format=json";
const UPDATE: &str = "/v1.1/transaction/update?format=json";

/// A regular bill of `amount` for the customer with this mobile, dated 2026-01-10 10:00 (IST).
fn sale(number: &str, amount: f64, mobile: &str) -> Value {
    json!({"type": "regular", "number": number, "amount": amount,
        "billing_time": "2026-01-10 10:00:00", "customer": {"mobile": mobile}})
}

/// A sale of two lines: two SHOEs at 500 and one BAG at 2000 (3000 in all).
fn two_line_sale(number: &str, mobile: &str) -> Value {
    let mut bill = sale(number, 3000.0, mobile);
    bill["line_items"] = json!({"line_item": [
        {"serial": 1, "item_code": "SHOE", "qty": 2, "rate": 500, "value": 1000, "amount": 1000},
        {"serial": 2, "item_code": "BAG", "qty": 1, "rate": 2000, "value": 2000, "amount": 2000}]});
    bill
}

/// A return of bill `number`, dated the day after the sale.
fn a_return(number: &str, return_type: &str, mobile: &str) -> Value {
    json!({"type": "return", "return_type": return_type, "number": number,
        "purchase_time": "2026-01-10 10:00:00", "billing_time": "2026-01-11 10:00:00",
        "customer": {"mobile": mobile}})
}

fn line_return(number: &str, mobile: &str, lines: Value) -> Value {
    let mut body = a_return(number, "LINE_ITEM", mobile);
    body["line_items"] = json!({ "line_item": lines });
    body
}

fn amount_return(number: &str, mobile: &str, amount: f64) -> Value {
    let mut body = a_return(number, "AMOUNT", mobile);
    body["amount"] = json!(amount);
    body
}

async fn post_batch(app: &TestApp, uri: &str, auth: &str, items: Value) -> TestResponse {
    app.post_json(uri, auth, &json!({"root": {"transaction": items}})).await
}

/// Adds bills through the default till.
async fn add(app: &TestApp, items: Value) -> TestResponse {
    post_batch(app, ADD, &app.basic(), items).await
}

/// Adds one bill, expecting code 600; its item.
async fn add_ok(app: &TestApp, bill: Value) -> Value {
    let response = add(app, json!([bill])).await;
    response.assert_status(200);
    let item = items(&response)[0].clone();
    assert_eq!(item["item_status"]["code"], 600, "{}", response.body);
    assert_eq!(item["item_status"]["success"], "true");
    item
}

/// Adds one bill, expecting its item to fail with `code` (request code 500).
async fn add_fails(app: &TestApp, bill: Value, code: i64) {
    let response = add(app, json!([bill])).await;
    response.assert_status(500);
    assert_eq!(response.v1_code(), 500);
    assert_eq!(item_codes(&items(&response)), [code], "{}", response.body);
}

/// The items of a v1.1 transaction answer.
#[track_caller]
fn items(response: &TestResponse) -> Vec<Value> {
    response.json()["response"]["transactions"]["transaction"]
        .as_array()
        .unwrap_or_else(|| panic!("no transactions.transaction list: {}", response.body))
        .clone()
}

#[track_caller]
fn item_codes(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|i| i["item_status"]["code"].as_i64().unwrap_or_else(|| panic!("no code: {i}")))
        .collect()
}

/// The sum of an item's `points` side effects.
#[track_caller]
fn awarded(item: &Value) -> f64 {
    item["side_effects"]["effect"]
        .as_array()
        .unwrap_or_else(|| panic!("no side_effects.effect: {item}"))
        .iter()
        .filter(|e| e["type"] == "points")
        .map(|e| e["awarded_points"].as_f64().unwrap())
        .sum()
}

/// The customer's current points, read through v2.
async fn points(app: &TestApp, customer: i64) -> f64 {
    let response = app.get(&format!("/v2/customers/{customer}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["loyaltyInfo"]["loyaltyPoints"].as_f64().unwrap()
}

async fn set_config(app: &TestApp, key: &str, value: &str) {
    let body = json!({"keyName": key, "value": value});
    app.post_json("/v2/organization/configs", &app.admin(), &body).await.assert_status(200);
}

/// `GET /v1.1/transaction/get?format=json&{query}`.
async fn get(app: &TestApp, query: &str) -> TestResponse {
    app.get(&format!("/v1.1/transaction/get?format=json&{query}"), &app.basic()).await
}

/// The one transaction a read answers.
async fn get_one(app: &TestApp, query: &str) -> Value {
    let response = get(app, query).await;
    response.assert_status(200);
    let list = items(&response);
    assert_eq!(list.len(), 1, "{}", response.body);
    list[0].clone()
}

/// A read that finds nothing: one failed item with 620.
async fn get_none(app: &TestApp, query: &str) {
    let response = get(app, query).await;
    response.assert_status(500);
    assert_eq!(item_codes(&items(&response)), [620], "{}", response.body);
}

/// Now minus `hours`, as the Asia/Kolkata wall clock (`YYYY-MM-DD HH:MM:SS`).
fn ist_hours_ago(hours: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::hours(hours))
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

// ---------------------------------------------------------------- add

async fn a_bill_earns_ten_percent_and_reports_the_customer(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100001").await;
    let item = add_ok(&app, sale("V1-1", 1234.5, "919845100001")).await;
    assert!(item["id"].as_i64().unwrap() > 0);
    assert_eq!(item["number"], "V1-1");
    assert_eq!(item["type"], "REGULAR");
    assert_eq!(item["outlier_status"], "NORMAL");
    let effect = &item["side_effects"]["effect"][0];
    assert_eq!(effect["type"], "points");
    assert_eq!(effect["awarded_points"], 123.45);
    let c = &item["customer"];
    assert_eq!(c["user_id"], customer);
    assert_eq!(c["mobile"], "919845100001");
    assert_eq!(c["firstname"], "Ana");
    assert_eq!(c["loyalty_points"], 123.45);
    assert_eq!(c["lifetime_points"], 123.45);
    assert_eq!(c["lifetime_purchases"], 1234.5);
    assert_eq!(c["current_slab"], "Base");
    // The second bill adds up.
    let second = add_ok(&app, sale("V1-2", 100.0, "919845100001")).await;
    assert_eq!(awarded(&second), 10.0);
    assert_eq!(second["customer"]["loyalty_points"], 133.45);
    assert_eq!(second["customer"]["lifetime_purchases"], 1334.5);
    assert_eq!(points(&app, customer).await, 133.45);
    // A customer named by id, and by user_id on the item itself (the flat form).
    let mut by_id = sale("V1-3", 10.0, "");
    by_id["customer"] = json!({"id": customer});
    assert_eq!(add_ok(&app, by_id).await["customer"]["user_id"], customer);
    let mut flat = sale("V1-4", 10.0, "");
    flat.as_object_mut().unwrap().remove("customer");
    flat["user_id"] = json!(customer);
    assert_eq!(add_ok(&app, flat).await["customer"]["user_id"], customer);
    assert_eq!(points(&app, customer).await, 135.45);
}

async fn batches_answer_200_201_and_500(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100002").await;
    let all_ok =
        add(&app, json!([sale("B-1", 100.0, "919845100002"), sale("B-2", 200.0, "919845100002")]))
            .await;
    all_ok.assert_status(200);
    assert_eq!(all_ok.v1_code(), 200);
    assert_eq!(all_ok.json()["response"]["status"]["success"], "true");
    assert_eq!(item_codes(&items(&all_ok)), [600, 600]);
    // A repeated number fails alone (604) and earns nothing.
    let partial =
        add(&app, json!([sale("B-3", 300.0, "919845100002"), sale("B-1", 100.0, "919845100002")]))
            .await;
    partial.assert_status(201);
    assert_eq!(partial.v1_code(), 201);
    let list = items(&partial);
    assert_eq!(item_codes(&list), [600, 604]);
    assert_eq!(list[1]["item_status"]["success"], "false");
    assert_eq!(list[1]["number"], "B-1");
    let none =
        add(&app, json!([sale("B-2", 100.0, "919845100002"), sale("B-4", 1.0, "919845199999")]))
            .await;
    none.assert_status(500);
    assert_eq!(none.v1_code(), 500);
    assert_eq!(item_codes(&items(&none)), [604, 1012]);
    assert_eq!(points(&app, customer).await, 60.0);
    // A window of 0 days lets the number through again.
    set_config(&app, "CONF_LOYALTY_BILL_NUMBER_UNIQUE_IN_DAYS", "0").await;
    add_ok(&app, sale("B-1", 100.0, "919845100002")).await;
    assert_eq!(points(&app, customer).await, 70.0);
    // Bad batches are refused whole.
    let empty = app.post_json(ADD, &app.basic(), &json!({"root": {"transaction": []}})).await;
    empty.assert_status(400);
    let many: Vec<Value> = (0..101).map(|i| sale(&format!("M-{i}"), 1.0, "919845100002")).collect();
    add(&app, Value::Array(many)).await.assert_status(400);
    // A bill without a number or amount, or of an unknown type, fails its item.
    let mut no_number = sale("X", 1.0, "919845100002");
    no_number.as_object_mut().unwrap().remove("number");
    add_fails(&app, no_number, 602).await;
    let mut no_amount = sale("B-5", 1.0, "919845100002");
    no_amount.as_object_mut().unwrap().remove("amount");
    add_fails(&app, no_amount, 601).await;
    let mut gift = sale("B-6", 1.0, "919845100002");
    gift["type"] = json!("gift");
    add_fails(&app, gift, 400).await;
    let mut bad_time = sale("B-7", 1.0, "919845100002");
    bad_time["billing_time"] = json!("10/01/2026");
    add_fails(&app, bad_time, 400).await;
    let mut future = sale("B-8", 1.0, "919845100002");
    future["billing_time"] = json!("2099-01-01 00:00:00");
    add_fails(&app, future, 643).await;
    let mut past = sale("B-9", 1.0, "919845100002");
    past["billing_time"] = json!("1990-01-01 00:00:00");
    add_fails(&app, past, 644).await;
    assert_eq!(points(&app, customer).await, 70.0);
}

async fn not_interested_bills_need_no_customer(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let bill = json!({"type": "not_interested", "number": "NI-1", "amount": 100,
        "billing_time": "2026-01-10 10:00:00", "not_interested_reason": "declined"});
    let item = add_ok(&app, bill).await;
    assert_eq!(item["type"], "NOT_INTERESTED");
    assert_eq!(awarded(&item), 0.0);
    let id = item["id"].as_i64().unwrap();
    // Reads default to REGULAR bills.
    get_none(&app, &format!("id={id}")).await;
    let read = get_one(&app, &format!("id={id}&type=NOT_INTERESTED")).await;
    assert_eq!(read["number"], "NI-1");
    assert_eq!(read["amount"], 100.0);
    let read = get_one(&app, &format!("id={id}&type=NI_MIXED&user_id=true")).await;
    assert_eq!(read["customer"]["user_id"], Value::Null);
    // And returned without a customer.
    let back = json!({"type": "not_interested_return", "return_type": "FULL", "number": "NI-1",
        "billing_time": "2026-01-11 10:00:00"});
    let returned = add_ok(&app, back).await;
    assert_eq!(returned["type"], "NOT_INTERESTED_RETURN");
    get_one(&app, "number=NI-1&type=NOT_INTERESTED_RETURN").await;
}

async fn unknown_customers_fail_the_item_and_are_never_registered(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_fails(&app, sale("U-1", 100.0, "919845199998"), 1012).await;
    let mut by_email = sale("U-2", 100.0, "");
    by_email["customer"] = json!({"email": "nobody@example.com"});
    add_fails(&app, by_email, 1012).await;
    let mut by_external = sale("U-3", 100.0, "");
    by_external["customer"] = json!({"external_id": "NOBODY"});
    add_fails(&app, by_external, 1012).await;
    let mut by_id = sale("U-4", 100.0, "");
    by_id["customer"] = json!({"id": 987654});
    add_fails(&app, by_id, 1011).await;
    let mut nobody = sale("U-5", 100.0, "");
    nobody.as_object_mut().unwrap().remove("customer");
    add_fails(&app, nobody, 1015).await;
    let lookup = app
        .get(
            "/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=919845199998",
            &app.basic(),
        )
        .await;
    lookup.assert_status(404);
    // Nothing was stored under those numbers.
    get_none(&app, "number=U-1&type=ALL").await;
}

async fn negative_values_get_their_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100003").await;
    let line = |patch: Value| {
        let mut l = json!({"serial": 1, "item_code": "A", "qty": 1, "rate": 10, "amount": 10});
        for (k, v) in patch.as_object().unwrap() {
            l[k] = v.clone();
        }
        json!({"line_items": {"line_item": [l]}})
    };
    let cases = [
        (json!({"amount": -5}), 601),
        (json!({"discount": -1}), 666),
        (json!({"gross_amount": -1}), 665),
        (line(json!({"amount": -1})), 661),
        (line(json!({"value": -1})), 662),
        (line(json!({"rate": -1})), 663),
        (line(json!({"discount": -1})), 664),
        (line(json!({"qty": -1})), 627),
    ];
    for (i, (patch, code)) in cases.into_iter().enumerate() {
        let mut body = sale(&format!("NEG-{i}"), 100.0, "919845100003");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        add_fails(&app, body, code).await;
    }
    assert_eq!(points(&app, customer).await, 0.0);
    get_none(&app, "number=NEG-0&type=ALL").await;
}

async fn billing_time_is_store_local_and_offsets_are_ignored(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845100004").await;
    let plain = add_ok(&app, sale("TZ-1", 10.0, "919845100004")).await;
    let id = plain["id"].as_i64().unwrap();
    let read = get_one(&app, &format!("id={id}")).await;
    assert_eq!(read["billing_time"], "2026-01-10 10:00:00");
    // Stored as 10:00 in the store's zone (Asia/Kolkata), as v2 shows.
    let v2 = app.get(&format!("/v2/transactions/{id}"), &app.basic()).await;
    assert_eq!(v2.json()["billDetails"]["billingTime"], "2026-01-10T10:00:00+05:30", "{}", v2.body);
    // An offset in the input is ignored: the clock time counts.
    for (number, time) in [("TZ-2", "2026-01-10T10:00:00+07:00"), ("TZ-3", "2026-01-10 10:00:00Z")]
    {
        let mut bill = sale(number, 10.0, "919845100004");
        bill["billing_time"] = json!(time);
        let id = add_ok(&app, bill).await["id"].as_i64().unwrap();
        let read = get_one(&app, &format!("id={id}")).await;
        assert_eq!(read["billing_time"], "2026-01-10 10:00:00", "{time}");
    }
    // Early morning in Kolkata is still the previous day in UTC: the date filter is local.
    let mut early = sale("TZ-4", 10.0, "919845100004");
    early["billing_time"] = json!("2026-01-10 02:00:00");
    let id = add_ok(&app, early).await["id"].as_i64().unwrap();
    assert_eq!(get_one(&app, &format!("id={id}&date=2026-01-10")).await["number"], "TZ-4");
    get_none(&app, &format!("id={id}&date=2026-01-09")).await;
    // Without a billing time the bill is dated now.
    let mut now = sale("TZ-5", 10.0, "919845100004");
    now.as_object_mut().unwrap().remove("billing_time");
    let id = add_ok(&app, now).await["id"].as_i64().unwrap();
    let today = ist_hours_ago(0)[..10].to_string();
    let read = get_one(&app, &format!("id={id}")).await;
    assert!(read["billing_time"].as_str().unwrap().starts_with(&today), "{read}");
}

async fn a_store_with_its_own_zone_and_currency(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845100020").await;
    let zones = app.get("/v1.1/organization/entities?type=ZONE", &app.basic()).await.json();
    let concepts = app.get("/v1.1/organization/entities?type=CONCEPT", &app.basic()).await.json();
    let entity = "/response/organization/entities/entity/0/id";
    let store = json!({"code": "sg.store", "name": "Singapore",
        "parentZoneId": zones.pointer(entity).unwrap(), "parentConceptId": concepts.pointer(entity).unwrap(),
        "timezone": "Asia/Singapore", "currency": "SGD"});
    let created = app.post_json("/v2/orgEntity/store", &app.basic(), &store).await;
    created.assert_status(200);
    let store_id = created.json()["id"].as_i64().unwrap();
    let till = json!({"name": "sg.till", "password": "pw-sg", "storeId": store_id});
    app.post_json("/v2/orgEntity/till", &app.basic(), &till).await.assert_status(200);
    let sg = basic_header("sg.till", "pw-sg");

    // The clock time is read in the store's zone (+08:00), not the org's.
    let response = post_batch(&app, ADD, &sg, json!([sale("SG-1", 100.0, "919845100020")])).await;
    let id = items(&response)[0]["id"].as_i64().unwrap_or_else(|| panic!("{}", response.body));
    let v2 = app.get(&format!("/v2/transactions/{id}"), &app.basic()).await;
    assert_eq!(v2.json()["billDetails"]["billingTime"], "2026-01-10T10:00:00+08:00", "{}", v2.body);
    let read = get_one(&app, &format!("id={id}&store_code=sg.store")).await;
    assert_eq!(read["billing_time"], "2026-01-10 10:00:00");
    assert_eq!(read["store"], "sg.store");
    get_none(&app, &format!("id={id}&store_code=main.store")).await;

    // Local-currency bills without currency_code are in the store's currency.
    set_config(&app, "CONF_CURRENCY_CONVERSION_ENABLE", "true").await;
    let ratio = json!({"currencyCode": "SGD", "ratioInr": 65});
    app.post_json("/v2/currencyratio", &app.admin(), &ratio).await.assert_status(200);
    let uri = "/v1.1/transaction/add_with_local_currency?format=json";
    let response = post_batch(&app, uri, &sg, json!([sale("SG-2", 10.0, "919845100020")])).await;
    let item = &items(&response)[0];
    assert_eq!(item["item_status"]["code"], 600, "{}", response.body);
    assert_eq!(item["currency_code"], "SGD");
    assert_eq!(item["amount"], 650.0);
    assert_eq!(awarded(item), 65.0);
}

// ---------------------------------------------------------------- returns

async fn a_full_return_takes_back_what_was_earned(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100005").await;
    add_ok(&app, sale("KEEP", 333.33, "919845100005")).await;
    let sold = add_ok(&app, sale("BACK", 777.77, "919845100005")).await;
    assert_eq!(points(&app, customer).await, 33.33 + 77.77);
    let returned = add_ok(&app, a_return("BACK", "FULL", "919845100005")).await;
    assert_eq!(returned["type"], "RETURN");
    assert_eq!(returned["number"], "BACK");
    assert_ne!(returned["id"], sold["id"]);
    assert_eq!(awarded(&returned), -77.77);
    assert_eq!(returned["customer"]["loyalty_points"], 33.33);
    assert_eq!(returned["customer"]["lifetime_purchases"], 333.33);
    assert_eq!(points(&app, customer).await, 33.33);
    // Never twice; nothing else moves.
    add_fails(&app, a_return("BACK", "FULL", "919845100005"), 633).await;
    assert_eq!(points(&app, customer).await, 33.33);
    // The return reads as a RETURN of the same number, with its points taken back.
    let read = get_one(&app, "number=BACK&type=RETURN").await;
    assert_eq!(read["return_type"], "FULL");
    assert_eq!(read["amount"], 777.77);
    assert_eq!(read["points"]["returned"], 77.77);
    let all = get(&app, "number=BACK&type=ALL").await;
    assert_eq!(items(&all).len(), 2, "{}", all.body);
    // No return_type means a full return.
    add_ok(&app, sale("BACK-2", 100.0, "919845100005")).await;
    let mut implicit = a_return("BACK-2", "FULL", "919845100005");
    implicit.as_object_mut().unwrap().remove("return_type");
    assert_eq!(awarded(&add_ok(&app, implicit).await), -10.0);
    // With CONF_POINTS_RETURN_ENABLED off a return keeps the points (manual deduction instead).
    add_ok(&app, sale("BACK-3", 100.0, "919845100005")).await;
    set_config(&app, "CONF_POINTS_RETURN_ENABLED", "false").await;
    let kept = add_ok(&app, a_return("BACK-3", "FULL", "919845100005")).await;
    assert_eq!(awarded(&kept), 0.0);
    assert_eq!(kept["customer"]["loyalty_points"], 43.33);
    assert_eq!(kept["customer"]["lifetime_purchases"], 333.33);
}

async fn purchase_time_picks_among_sales_of_one_number(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100018").await;
    set_config(&app, "CONF_LOYALTY_BILL_NUMBER_UNIQUE_IN_DAYS", "0").await;
    let old = add_ok(&app, sale("SAME", 100.0, "919845100018")).await;
    let mut newer = sale("SAME", 300.0, "919845100018");
    newer["billing_time"] = json!("2026-02-10 10:00:00");
    let newer = add_ok(&app, newer).await;
    assert_eq!(points(&app, customer).await, 40.0);
    // The sale nearest the purchase time comes back.
    let mut first = a_return("SAME", "FULL", "919845100018");
    first["billing_time"] = json!("2026-03-01 10:00:00");
    assert_eq!(awarded(&add_ok(&app, first).await), -10.0);
    assert_eq!(points(&app, customer).await, 30.0);
    // By id, the other one.
    let mut second = a_return("SAME", "FULL", "919845100018");
    second["billing_time"] = json!("2026-03-01 10:00:00");
    second["id"] = newer["id"].clone();
    assert_eq!(awarded(&add_ok(&app, second).await), -30.0);
    assert_ne!(old["id"], newer["id"]);
    assert_eq!(points(&app, customer).await, 0.0);
}

async fn line_item_and_amount_returns_are_proportional_and_exclusive(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100006").await;
    add_ok(&app, two_line_sale("L-1", "919845100006")).await;
    assert_eq!(points(&app, customer).await, 300.0);
    // One shoe of two is 500 of 3000: a sixth of the bill's points.
    let one_shoe = json!([{"serial": 1, "item_code": "SHOE", "qty": 1}]);
    let first = add_ok(&app, line_return("L-1", "919845100006", one_shoe.clone())).await;
    assert_eq!(awarded(&first), -50.0);
    add_ok(&app, line_return("L-1", "919845100006", one_shoe.clone())).await;
    assert_eq!(points(&app, customer).await, 200.0);
    add_fails(&app, line_return("L-1", "919845100006", one_shoe), 626).await;
    let hat = json!([{"item_code": "HAT", "qty": 1}]);
    add_fails(&app, line_return("L-1", "919845100006", hat), 660).await;
    add_fails(&app, line_return("L-1", "919845100006", json!([])), 660).await;
    // After a line return an amount return is refused.
    add_fails(&app, amount_return("L-1", "919845100006", 10.0), 632).await;
    add_fails(&app, a_return("L-1", "FULL", "919845100006"), 639).await;
    let bag = json!([{"item_code": "BAG", "qty": 1}]);
    add_ok(&app, line_return("L-1", "919845100006", bag)).await;
    assert_eq!(points(&app, customer).await, 0.0);
    add_fails(&app, a_return("L-1", "FULL", "919845100006"), 633).await;

    // Amount returns: proportional, bounded by the bill, exclusive with line returns.
    add_ok(&app, two_line_sale("A-1", "919845100006")).await;
    let first = add_ok(&app, amount_return("A-1", "919845100006", 1000.0)).await;
    assert_eq!(awarded(&first), -100.0);
    add_fails(&app, amount_return("A-1", "919845100006", 2500.0), 630).await;
    let line = json!([{"item_code": "BAG", "qty": 1}]);
    add_fails(&app, line_return("A-1", "919845100006", line), 638).await;
    add_fails(&app, a_return("A-1", "FULL", "919845100006"), 639).await;
    add_ok(&app, amount_return("A-1", "919845100006", 2000.0)).await;
    assert_eq!(points(&app, customer).await, 0.0);
    add_fails(&app, amount_return("A-1", "919845100006", 1.0), 633).await;
    let mut conn = app.state.db.read().await.unwrap();
    let mismatches = perks::points::ledger::verify(&mut conn, None, 10).await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

async fn returns_that_cannot_be_get_their_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845100007").await;
    add_customer(&app, "919845100008").await;
    let sold = add_ok(&app, sale("R-1", 100.0, "919845100007")).await;
    add_fails(&app, a_return("NOPE", "FULL", "919845100007"), 625).await;
    add_fails(&app, a_return("R-1", "FULL", "919845100008"), 668).await;
    let mut early = a_return("R-1", "FULL", "919845100007");
    early["billing_time"] = json!("2026-01-09 10:00:00");
    add_fails(&app, early, 624).await;
    add_fails(&app, a_return("R-1", "SOME", "919845100007"), 628).await;
    // By id: another sale's id is not this number's sale.
    let other = add_ok(&app, sale("R-2", 100.0, "919845100007")).await;
    let mut wrong_id = a_return("R-1", "FULL", "919845100007");
    wrong_id["id"] = other["id"].clone();
    add_fails(&app, wrong_id, 625).await;
    // The sale's id with the customer block works (the item's id is the sale, not the customer).
    let mut by_id = a_return("R-1", "FULL", "919845100007");
    by_id["id"] = sold["id"].clone();
    assert_eq!(awarded(&add_ok(&app, by_id).await), -10.0);
}

async fn an_exchange_returns_its_return_lines_and_earns_on_the_rest(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100009").await;
    add_ok(&app, two_line_sale("X-1", "919845100009")).await;
    assert_eq!(points(&app, customer).await, 300.0);
    let exchange = json!({"type": "mixed", "number": "X-2", "parent_bill_number": "X-1",
        "amount": 800, "billing_time": "2026-01-11 10:00:00", "customer": {"mobile": "919845100009"},
        "line_items": {"line_item": [
            {"type": "RETURN", "serial": 1, "item_code": "SHOE", "qty": 1, "rate": 500, "amount": 500},
            {"type": "REGULAR", "serial": 2, "item_code": "HAT", "qty": 1, "rate": 800, "amount": 800}]}});
    let exchange_body = exchange.clone();
    let item = add_ok(&app, exchange).await;
    assert_eq!(item["type"], "MIXED");
    let effects: Vec<f64> = item["side_effects"]["effect"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "points")
        .map(|e| e["awarded_points"].as_f64().unwrap())
        .collect();
    // 500 of 3000 comes back (-50); the hat earns 10% (80).
    assert_eq!(effects, [-50.0, 80.0], "{item}");
    assert_eq!(points(&app, customer).await, 330.0);
    // The exchange's own number is a bill number like any other: sent again, it is 604.
    add_fails(&app, exchange_body.clone(), 604).await;
    assert_eq!(points(&app, customer).await, 330.0);
    // The shoe is marked returned on the sale: one more shoe, then no more.
    let one_shoe = json!([{"item_code": "SHOE", "qty": 1}]);
    add_ok(&app, line_return("X-1", "919845100009", one_shoe.clone())).await;
    add_fails(&app, line_return("X-1", "919845100009", one_shoe), 626).await;
    // An exchange without its parent number is 631; with an unknown parent 625.
    let mut orphan = json!({"type": "mixed", "number": "X-3", "billing_time": "2026-01-11 10:00:00",
        "customer": {"mobile": "919845100009"},
        "line_items": {"line_item": [{"type": "RETURN", "item_code": "BAG", "qty": 1}]}});
    add_fails(&app, orphan.clone(), 631).await;
    orphan["parent_bill_number"] = json!("NOPE");
    add_fails(&app, orphan, 625).await;
}

// ---------------------------------------------------------------- XML

async fn post_xml(app: &TestApp, uri: &str, xml: &str) -> TestResponse {
    app.send(
        request(Method::POST, uri)
            .header("authorization", app.basic())
            .header("content-type", "application/xml")
            .body(Body::from(xml.to_string()))
            .unwrap(),
    )
    .await
}

async fn xml_in_xml_out(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100010").await;
    let xml = "<root><transaction><type>regular</type><number>XML-1</number><amount>250</amount>\
               <billing_time>2026-01-10 10:00:00</billing_time>\
               <customer><mobile>919845100010</mobile></customer>\
               <line_items><line_item><serial>1</serial><item_code>A</item_code><qty>1</qty>\
               <rate>250</rate><amount>250</amount></line_item></line_items>\
               </transaction></root>";
    let response = post_xml(&app, "/v1.1/transaction/add?format=xml", xml).await;
    response.assert_status(200);
    assert!(response.headers["content-type"].to_str().unwrap().contains("xml"));
    assert!(
        response.body.contains("<item_status><success>true</success><code>600</code>"),
        "{}",
        response.body
    );
    assert!(response.body.contains("<awarded_points>25"), "{}", response.body);
    assert!(response.body.contains("<number>XML-1</number>"), "{}", response.body);
    assert_eq!(points(&app, customer).await, 25.0);
    // A failing item in XML, and a read in XML.
    let again = post_xml(&app, "/v1.1/transaction/add?format=xml", xml).await;
    again.assert_status(500);
    assert!(again.body.contains("<code>604</code>"), "{}", again.body);
    let read = app.get("/v1.1/transaction/get?format=xml&number=XML-1", &app.basic()).await;
    read.assert_status(200);
    assert!(
        read.body.contains("<billing_time>2026-01-10 10:00:00</billing_time>"),
        "{}",
        read.body
    );
    assert!(read.body.contains("<item_code>A</item_code>"), "{}", read.body);
    let broken = post_xml(&app, "/v1.1/transaction/add?format=xml", "<root><transaction>").await;
    broken.assert_status(400);
}

async fn line_item_fields_are_checked_and_kept(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let field = json!({"name": "category", "entityType": "lineitem", "dataType": "String"});
    app.post_json("/v2/extendedFields", &app.admin(), &field).await.assert_status(200);
    add_customer(&app, "919845100019").await;
    let mut bill = sale("LF-1", 100.0, "919845100019");
    bill["line_items"] = json!({"line_item": [{"item_code": "RUN", "qty": 1, "rate": 100,
        "amount": 100, "description": "Runner",
        "extended_fields": {"field": [{"name": "category", "value": "shoes"}]}}]});
    let id = add_ok(&app, bill).await["id"].as_i64().unwrap();
    let line = &get_one(&app, &format!("id={id}")).await["line_items"]["line_item"][0];
    assert_eq!(line["description"], "Runner");
    assert_eq!(line["extended_fields"], json!({"field": [{"name": "category", "value": "shoes"}]}));
    // A line field the org has not enabled fails the item, as a bill field does.
    let mut unknown = sale("LF-2", 100.0, "919845100019");
    unknown["line_items"] = json!({"line_item": [{"item_code": "RUN", "qty": 1, "amount": 100,
        "extended_fields": {"field": [{"name": "mood", "value": "happy"}]}}]});
    add_fails(&app, unknown, 400).await;
    let mut bill_field = sale("LF-3", 100.0, "919845100019");
    bill_field["extended_fields"] = json!({"field": [{"name": "mood", "value": "happy"}]});
    add_fails(&app, bill_field, 400).await;
    get_none(&app, "number=LF-2&type=ALL").await;
}

// ---------------------------------------------------------------- local currency

async fn local_currency_bills_are_converted_by_the_org_ratio(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100011").await;
    let uri = "/v1.1/transaction/add_with_local_currency?format=json";
    let mut bill = sale("LC-1", 10.0, "919845100011");
    bill["currency_code"] = json!("SGD");
    bill["gross_amount"] = json!(12);
    bill["discount"] = json!(2);
    // Refused while the org has not enabled currency conversion.
    let refused = post_batch(&app, uri, &app.basic(), json!([bill.clone()])).await;
    refused.assert_status(500);
    assert_eq!(item_codes(&items(&refused)), [403], "{}", refused.body);
    set_config(&app, "CONF_CURRENCY_CONVERSION_ENABLE", "true").await;
    // No ratio for the currency yet.
    let no_ratio = post_batch(&app, uri, &app.basic(), json!([bill.clone()])).await;
    assert_eq!(item_codes(&items(&no_ratio)), [400], "{}", no_ratio.body);
    let ratio = json!({"currencyCode": "SGD", "ratioInr": 65});
    app.post_json("/v2/currencyratio", &app.admin(), &ratio).await.assert_status(200);
    let response = post_batch(&app, uri, &app.basic(), json!([bill])).await;
    response.assert_status(200);
    let item = &items(&response)[0];
    assert_eq!(item["item_status"]["code"], 600, "{}", response.body);
    assert_eq!(item["currency_code"], "SGD");
    assert_eq!(item["local_amount"], 10.0);
    assert_eq!(item["amount"], 650.0);
    assert_eq!(awarded(item), 65.0);
    assert_eq!(points(&app, customer).await, 65.0);
    // v2 reads the base amount; v1.1 shows bill amounts in the bill's currency.
    let id = item["id"].as_i64().unwrap();
    let v2 = app.get(&format!("/v2/transactions/{id}"), &app.basic()).await.json();
    assert_eq!(v2["billDetails"]["amount"], 650.0);
    let read = get_one(&app, &format!("id={id}")).await;
    assert_eq!(read["currency_code"], "SGD", "{read}");
    assert_eq!(read["amount"], 10.0);
    assert_eq!(read["gross_amount"], 12.0);
    assert_eq!(read["discount"], 2.0);
    assert_eq!(read["base_amount"], 650.0);
    assert_eq!(read["points"]["issued"], 65.0);
    // Without currency_code, the store's currency (INR here) is used as is.
    let local =
        post_batch(&app, uri, &app.basic(), json!([sale("LC-2", 100.0, "919845100011")])).await;
    let item = &items(&local)[0];
    assert_eq!(item["item_status"]["code"], 600, "{}", local.body);
    assert_eq!(item["amount"], 100.0);
    assert_eq!(awarded(item), 10.0);
    // The plain add ignores currency_code.
    let mut plain = sale("LC-3", 10.0, "919845100011");
    plain["currency_code"] = json!("SGD");
    assert_eq!(awarded(&add_ok(&app, plain).await), 1.0);
}

async fn currency_ratios_are_validated_and_listed(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let set = app
        .post_json(
            "/v2/currencyratio",
            &app.admin(),
            &json!({"currencyCode": "sgd", "ratioInr": 61.5}),
        )
        .await;
    set.assert_status(200);
    app.post_json(
        "/v2/currencyratio",
        &app.admin(),
        &json!({"currencyCode": "USD", "ratioInr": 83}),
    )
    .await
    .assert_status(200);
    // Setting it again replaces it.
    app.post_json(
        "/v2/currencyratio",
        &app.admin(),
        &json!({"currencyCode": "SGD", "ratioInr": 65}),
    )
    .await
    .assert_status(200);
    let list = app.get("/v2/currencyratio", &app.admin()).await;
    list.assert_status(200);
    let body = list.json();
    let text = body.to_string();
    assert!(text.contains(r#"{"currencyCode":"SGD","ratioInr":65.0}"#), "{text}");
    assert!(text.contains(r#"{"currencyCode":"USD","ratioInr":83.0}"#), "{text}");
    assert!(!text.contains("61.5"), "{text}");
    for bad in [
        json!({"currencyCode": "SG", "ratioInr": 65}),
        json!({"currencyCode": "S1D", "ratioInr": 65}),
        json!({"currencyCode": "SGD", "ratioInr": 0}),
        json!({"currencyCode": "SGD", "ratioInr": -1}),
        json!({"currencyCode": "SGD", "ratioInr": "abc"}),
        json!({"currencyCode": "SGD"}),
        json!({"ratioInr": 65}),
    ] {
        let response = app.post_json("/v2/currencyratio", &app.admin(), &bad).await;
        response.assert_status(400);
    }
    // Ratios are the org's own.
    let other = app.another_org("Other").await;
    let theirs = app.get("/v2/currencyratio", &format!("Bearer {}", other.admin_token)).await;
    assert!(!theirs.body.contains("SGD"), "{}", theirs.body);
}

// ---------------------------------------------------------------- update and retro

async fn updates_change_delivery_status_and_fields(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let field = json!({"name": "channel", "entityType": "transaction", "dataType": "String"});
    app.post_json("/v2/extendedFields", &app.admin(), &field).await.assert_status(200);
    let custom = json!({"scope": "LOYALTY_TRANSACTION", "customFields": [{"name": "gift_wrap", "dataType": "String"}]});
    app.post_json("/v2/customFields", &app.admin(), &custom).await.assert_status(200);
    let customer = add_customer(&app, "919845100012").await;
    add_customer(&app, "919845100013").await;
    let sold = add_ok(&app, sale("UP-1", 100.0, "919845100012")).await;
    let id = sold["id"].as_i64().unwrap();

    // By id alone.
    let body = json!([{"id": id, "delivery_status": "SHIPPED",
        "extended_fields": {"field": [{"name": "channel", "value": "web"}]},
        "custom_fields": {"field": [{"name": "gift_wrap", "value": "yes"}]}}]);
    let response = post_batch(&app, UPDATE, &app.basic(), body).await;
    response.assert_status(200);
    let item = &items(&response)[0];
    assert_eq!(item["item_status"]["code"], 600, "{}", response.body);
    assert_eq!(item["id"], id);
    assert_eq!(item["number"], "UP-1");
    assert_eq!(item["delivery_status"], "SHIPPED");
    assert_eq!(item["customer"]["user_id"], customer);
    assert_eq!(item["extended_fields"], json!({"field": [{"name": "channel", "value": "web"}]}));
    assert_eq!(item["custom_fields"], json!({"field": [{"name": "gift_wrap", "value": "yes"}]}));
    let read = get_one(&app, &format!("id={id}")).await;
    assert_eq!(read["delivery_status"], "SHIPPED");
    assert_eq!(read["extended_fields"], json!({"field": [{"name": "channel", "value": "web"}]}));
    assert_eq!(read["custom_fields"], json!({"field": [{"name": "gift_wrap", "value": "yes"}]}));
    assert_eq!(read["amount"], 100.0);

    // By number with the customer; fields merge over the stored ones.
    let body = json!([{"number": "UP-1", "customer": {"mobile": "919845100012"},
        "delivery_status": "DELIVERED"}]);
    let response = post_batch(&app, UPDATE, &app.basic(), body).await;
    assert_eq!(item_codes(&items(&response)), [600], "{}", response.body);
    let read = get_one(&app, &format!("id={id}")).await;
    assert_eq!(read["delivery_status"], "DELIVERED");
    assert_eq!(read["custom_fields"], json!({"field": [{"name": "gift_wrap", "value": "yes"}]}));
    assert_eq!(points(&app, customer).await, 10.0);
    // After a return of the bill, its number still names the sale.
    let back = json!({"type": "return", "return_type": "AMOUNT", "number": "UP-1", "amount": 10,
        "billing_time": "2026-01-11 10:00:00", "customer": {"mobile": "919845100012"}});
    add_ok(&app, back).await;
    let body = json!([{"number": "UP-1", "delivery_status": "RETURNED_IN_PART"}]);
    let response = post_batch(&app, UPDATE, &app.basic(), body).await;
    assert_eq!(items(&response)[0]["id"], id, "{}", response.body);
    assert_eq!(get_one(&app, &format!("id={id}")).await["delivery_status"], "RETURNED_IN_PART");

    // Failures, one per item: no id or number (607), unknown id (620), unknown number (620),
    // another customer's bill (667), an undefined custom field (669), an unknown extended field.
    let body = json!([
        {"delivery_status": "SHIPPED"},
        {"id": 987654, "delivery_status": "SHIPPED"},
        {"number": "NOPE", "delivery_status": "SHIPPED"},
        {"id": id, "customer": {"mobile": "919845100013"}, "delivery_status": "LOST"},
        {"id": id, "custom_fields": {"field": [{"name": "colour", "value": "red"}]}},
        {"id": id, "extended_fields": {"field": [{"name": "mood", "value": "happy"}]}},
        {"id": "abc", "delivery_status": "SHIPPED"},
    ]);
    let response = post_batch(&app, UPDATE, &app.basic(), body).await;
    response.assert_status(500);
    assert_eq!(item_codes(&items(&response)), [607, 620, 620, 667, 669, 400, 603]);
    assert_eq!(get_one(&app, &format!("id={id}")).await["delivery_status"], "RETURNED_IN_PART");
    // The update is audited.
    let audit = app.audit(app.org.org_id, "TRANSACTION").await;
    assert!(audit.iter().any(|a| a.action == "UPDATE"), "{audit:?}");
}

/// `POST /v1.1/transaction/update` with the retro header when `signature` is set.
async fn post_retro(app: &TestApp, signature: Option<&str>, items: Value) -> TestResponse {
    let mut builder = request(Method::POST, UPDATE)
        .header("authorization", app.basic())
        .header("content-type", "application/json");
    if let Some(s) = signature {
        builder = builder.header("X-CAP-CLIENT-SIGNATURE", s);
    }
    app.send(builder.body(Body::from(json!({"root": {"transaction": items}}).to_string())).unwrap())
        .await
}

async fn retro_converts_a_not_interested_bill(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ni = |number: &str, hours_ago: i64| {
        json!({"type": "not_interested", "number": number, "amount": 500,
            "billing_time": ist_hours_ago(hours_ago)})
    };
    let id = add_ok(&app, ni("RT-1", 1)).await["id"].as_i64().unwrap();
    let customer = add_customer(&app, "919845100014").await;
    let retro = |id: i64| {
        json!([{"id": id, "customer": {"mobile": "919845100014"},
            "old_type": "NOT_INTERESTED", "new_type": "REGULAR", "notes": "joined later"}])
    };
    // Off by default.
    let off = post_retro(&app, Some("pos-suite"), retro(id)).await;
    off.assert_status(500);
    assert_eq!(item_codes(&items(&off)), [403], "{}", off.body);
    set_config(&app, "CONF_RETRO_TRANSACTION_ENABLE", "true").await;
    // The header is mandatory.
    let unsigned = post_retro(&app, None, retro(id)).await;
    assert_eq!(item_codes(&items(&unsigned)), [1629], "{}", unsigned.body);
    assert_eq!(points(&app, customer).await, 0.0);
    let response = post_retro(&app, Some("pos-suite"), retro(id)).await;
    response.assert_status(200);
    let item = &items(&response)[0];
    assert_eq!(item["item_status"]["code"], 1630, "{}", response.body);
    assert_eq!(item["id"], id);
    assert_eq!(item["type"], "REGULAR");
    assert_eq!(awarded(item), 50.0);
    assert_eq!(item["customer"]["user_id"], customer);
    assert_eq!(item["customer"]["loyalty_points"], 50.0);
    assert_eq!(points(&app, customer).await, 50.0);
    // Now the customer's regular bill.
    let read = get_one(&app, &format!("id={id}&user_id=true")).await;
    assert_eq!(read["customer"]["user_id"], customer);
    assert_eq!(read["notes"], "joined later");
    // Never twice.
    let again = post_retro(&app, Some("pos-suite"), retro(id)).await;
    assert_eq!(item_codes(&items(&again)), [1627], "{}", again.body);
    assert_eq!(points(&app, customer).await, 50.0);
    // Too old (the default limit is 30 days), unknown, or not a not-interested bill.
    let old = add_ok(&app, ni("RT-2", 24 * 40)).await["id"].as_i64().unwrap();
    let too_old = post_retro(&app, Some("pos-suite"), retro(old)).await;
    assert_eq!(item_codes(&items(&too_old)), [644], "{}", too_old.body);
    let unknown = post_retro(&app, Some("pos-suite"), retro(987654)).await;
    assert_eq!(item_codes(&items(&unknown)), [620], "{}", unknown.body);
    let mut regular = sale("RT-3", 100.0, "919845100014");
    regular["billing_time"] = json!(ist_hours_ago(1));
    let regular = add_ok(&app, regular).await["id"].as_i64().unwrap();
    let converted = post_retro(&app, Some("pos-suite"), retro(regular)).await;
    assert_eq!(item_codes(&items(&converted)), [1627], "{}", converted.body);
    // The customer must exist; the conversion must be NOT_INTERESTED → REGULAR.
    let fresh = add_ok(&app, ni("RT-4", 1)).await["id"].as_i64().unwrap();
    let nobody = json!([{"id": fresh, "customer": {"mobile": "919845199997"},
        "old_type": "NOT_INTERESTED", "new_type": "REGULAR"}]);
    let nobody = post_retro(&app, Some("pos-suite"), nobody).await;
    assert_eq!(item_codes(&items(&nobody)), [1012], "{}", nobody.body);
    let sideways = json!([{"id": fresh, "customer": {"mobile": "919845100014"},
        "old_type": "NOT_INTERESTED", "new_type": "RETURN"}]);
    let sideways = post_retro(&app, Some("pos-suite"), sideways).await;
    assert_eq!(item_codes(&items(&sideways)), [400], "{}", sideways.body);
    // Customers registered more recently than the org's delay are refused.
    set_config(&app, "CONF_CLIENT_RETRO_DELAY_SINCE_REGISTRATION_HOURS", "24").await;
    let too_soon = post_retro(&app, Some("pos-suite"), retro(fresh)).await;
    assert_eq!(item_codes(&items(&too_soon)), [400], "{}", too_soon.body);
    set_config(&app, "CONF_CLIENT_RETRO_DELAY_SINCE_REGISTRATION_HOURS", "0").await;
    let flat = json!([{"id": fresh, "mobile": "919845100014",
        "old_type": "NOT_INTERESTED", "new_type": "REGULAR"}]);
    let flat = post_retro(&app, Some("pos-suite"), flat).await;
    assert_eq!(item_codes(&items(&flat)), [1630], "{}", flat.body);
    assert_eq!(points(&app, customer).await, 110.0);
}

// ---------------------------------------------------------------- get

async fn get_filters_by_type_store_date_and_shows_extras(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100015").await;
    let mut bill = two_line_sale("G-1", "919845100015");
    bill["gross_amount"] = json!(3300);
    bill["discount"] = json!(300);
    bill["notes"] = json!("hello");
    bill["payment_details"] = json!({"payment": [{"mode": "CARD", "value": 3000}]});
    let id = add_ok(&app, bill).await["id"].as_i64().unwrap();

    let read = get_one(&app, &format!("id={id}")).await;
    assert_eq!(read["item_status"]["code"], 600);
    assert_eq!(read["id"], id);
    assert_eq!(read["number"], "G-1");
    assert_eq!(read["type"], "REGULAR");
    assert_eq!(read["amount"], 3000.0);
    assert_eq!(read["gross_amount"], 3300.0);
    assert_eq!(read["discount"], 300.0);
    assert_eq!(read["notes"], "hello");
    assert_eq!(read["store"], "main.store");
    assert_eq!(read["points"]["issued"], 300.0);
    let lines = read["line_items"]["line_item"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["item_code"], "SHOE");
    assert_eq!(lines[0]["qty"], 2.0);
    assert_eq!(lines[1]["amount"], 2000.0);
    assert!(read.get("customer").is_none(), "{read}");
    assert!(read.get("tenders").is_none(), "{read}");
    let extras = get_one(&app, &format!("id={id}&user_id=true&tenders=true")).await;
    assert_eq!(extras["customer"]["user_id"], customer);
    assert_eq!(extras["tenders"]["tender"][0]["mode"], "CARD", "{extras}");

    // By number, with the type filter: REGULAR by default, ALL, RETURN.
    add_ok(&app, line_return("G-1", "919845100015", json!([{"item_code": "BAG", "qty": 1}]))).await;
    assert_eq!(get_one(&app, "number=G-1").await["id"], id);
    let all = get(&app, "number=G-1&type=ALL").await;
    let types: Vec<Value> = items(&all).iter().map(|t| t["type"].clone()).collect();
    assert_eq!(types, [json!("RETURN"), json!("REGULAR")], "{}", all.body);
    let back = get_one(&app, "number=G-1&type=return").await;
    assert_eq!(back["return_type"], "LINE_ITEM");
    assert_eq!(back["amount"], 2000.0);
    assert_eq!(back["points"]["returned"], 200.0);
    assert_eq!(
        get_one(&app, &format!("id={id}")).await["line_items"]["line_item"][1]["returned_qty"],
        1.0
    );
    get_none(&app, &format!("id={id}&type=NOT_INTERESTED")).await;

    // Store, date and amount filters.
    get_one(&app, &format!("id={id}&store_code=main.store")).await;
    get_none(&app, &format!("id={id}&store_code=elsewhere")).await;
    get_one(&app, "number=G-1&date=2026-01-10").await;
    get_none(&app, "number=G-1&date=2026-01-12").await;
    get_one(&app, "number=G-1&amount=3000").await;
    get_none(&app, "number=G-1&amount=2999").await;
    let till = app.org.till.username.clone();
    get_one(&app, &format!("number=G-1&till_code={till}")).await;
    get_none(&app, "number=G-1&till_code=no.such.till").await;

    // Not found, no key, a bad id, a bad type.
    get_none(&app, "id=987654").await;
    get_none(&app, "number=NOPE").await;
    let none = get(&app, "number=NOPE").await;
    assert_eq!(items(&none)[0]["number"], "NOPE");
    let no_key = get(&app, "type=ALL").await;
    no_key.assert_status(400);
    assert_eq!(no_key.v1_code(), 607, "{}", no_key.body);
    assert_eq!(get(&app, "id=abc").await.v1_code(), 603);
    get(&app, &format!("id={id}&type=GIFT")).await.assert_status(400);
}

// ---------------------------------------------------------------- permissions and isolation

async fn a_till_without_transaction_write_is_refused(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845100016").await;
    let id = add_ok(&app, sale("P-1", 100.0, "919845100016")).await["id"].as_i64().unwrap();
    // No API defines access groups yet: a read-only group is set up directly.
    app.exec_sql(&format!(
        "INSERT INTO access_groups (org_id, name, permissions, created_at) VALUES ({}, 'Readers', \
         '{{\"ORGANIZATION\":\"READ\",\"CUSTOMER\":\"READ\",\"TRANSACTION\":\"READ\"}}', 0)",
        app.org.org_id
    ))
    .await;
    let till = json!({"name": "till.reader", "password": "pw-1", "storeId": app.org.store_id,
        "accessGroup": "Readers"});
    app.post_json("/v2/orgEntity/till", &app.basic(), &till).await.assert_status(200);
    let reader = basic_header("till.reader", "pw-1");
    let refused = post_batch(&app, ADD, &reader, json!([sale("P-2", 1.0, "919845100016")])).await;
    refused.assert_status(403);
    assert_eq!(refused.v1_code(), 403, "{}", refused.body);
    let uri = "/v1.1/transaction/add_with_local_currency?format=json";
    post_batch(&app, uri, &reader, json!([sale("P-3", 1.0, "919845100016")]))
        .await
        .assert_status(403);
    let update = json!([{"id": id, "delivery_status": "SHIPPED"}]);
    post_batch(&app, UPDATE, &reader, update).await.assert_status(403);
    // Reading is allowed; nothing was written.
    let read = app.get(&format!("/v1.1/transaction/get?format=json&id={id}"), &reader).await;
    read.assert_status(200);
    assert_eq!(items(&read)[0]["delivery_status"], "");
    get_none(&app, "number=P-2&type=ALL").await;
    // No credentials at all.
    let anonymous = app
        .send(request(Method::GET, "/v1.1/transaction/get?id=1").body(Body::empty()).unwrap())
        .await;
    anonymous.assert_status(401);
}

async fn another_orgs_till_cannot_see_or_return_the_bill(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845100017").await;
    let id = add_ok(&app, sale("ISO-1", 100.0, "919845100017")).await["id"].as_i64().unwrap();
    let other = app.another_org("Other").await;
    let auth = basic_header(&other.till.username, &other.till.password);
    for query in [format!("id={id}"), "number=ISO-1&type=ALL".to_string()] {
        let response = app.get(&format!("/v1.1/transaction/get?format=json&{query}"), &auth).await;
        response.assert_status(500);
        assert_eq!(item_codes(&items(&response)), [620], "{}", response.body);
    }
    // Our customer is unknown there, and so is our bill.
    let bill = sale("ISO-2", 100.0, "919845100017");
    let response = post_batch(&app, ADD, &auth, json!([bill])).await;
    assert_eq!(item_codes(&items(&response)), [1012], "{}", response.body);
    let update = json!([{"id": id, "delivery_status": "STOLEN"}]);
    let response = post_batch(&app, UPDATE, &auth, update).await;
    assert_eq!(item_codes(&items(&response)), [620], "{}", response.body);
    // The same number is free in the other org, for its own customer.
    let body = json!({"profiles": [{"firstName": "Bo", "identifiers": [{"type": "mobile", "value": "919845100017"}]}]});
    app.post_json("/v2/customers", &auth, &body).await.assert_status(200);
    let response = post_batch(&app, ADD, &auth, json!([sale("ISO-1", 50.0, "919845100017")])).await;
    assert_eq!(item_codes(&items(&response)), [600], "{}", response.body);
    assert_eq!(get_one(&app, &format!("id={id}")).await["amount"], 100.0);
}
