//! Transaction rejection (the sanity queue): with the org config on, bills with unregistered
//! payment modes wait as PENDING and bills missing a required field fail for good; the queue is
//! listed, re-triggered after the org fixes its data, marked failed, and isolated between orgs.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse};
use crate::transactions::add_customer;

backend_tests!(
    without_the_config_bills_are_processed_as_before,
    a_disallowed_payment_mode_is_queued_as_pending_and_listed,
    a_retrigger_after_the_org_allows_the_mode_adds_the_bill,
    a_missing_required_field_fails_for_good_unless_it_is_an_enum,
    mark_failed_ends_the_retries,
    bulk_and_v1_bills_are_screened_and_replayed,
    bad_input_gets_v2_errors,
    rejections_are_isolated_between_orgs,
);

// ---------------------------------------------------------------- helpers

#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
}

async fn set_config(app: &TestApp, key: &str, value: &str) {
    let body = json!({"keyName": key, "value": value});
    app.post_json("/v2/organization/configs", &app.admin(), &body).await.assert_status(200);
}

/// Turns rejection on with Cash and CardPayment as the only registered payment modes.
async fn enable_rejection(app: &TestApp) {
    set_config(app, "CONF_TRANSACTION_REJECTION_ENABLED", "true").await;
    set_config(app, "CONF_TRANSACTION_ALLOWED_PAYMENT_MODES", "Cash, CardPayment").await;
}

fn bill(number: &str, amount: f64, mode: &str) -> Value {
    json!({"type": "REGULAR", "billNumber": number, "billAmount": amount,
        "billingDate": "2026-01-10T10:00:00+05:30",
        "paymentModes": [{"mode": mode, "value": amount}]})
}

async fn post_bill(app: &TestApp, auth: &str, mobile: &str, body: &Value) -> TestResponse {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    app.post_json(&uri, auth, body).await
}

/// Posts a bill that must be rejected with `code`; the rejected transaction's id.
#[track_caller]
fn rejected_id(response: &TestResponse, code: i64) -> i64 {
    assert_v2_error(response, 400, code);
    let message = response.json()["errors"][0]["message"].as_str().unwrap().to_string();
    let id = message.rsplit("rejected transaction id ").next().unwrap();
    id.parse().unwrap_or_else(|_| panic!("no id in {message}"))
}

async fn list(app: &TestApp, auth: &str, query: &str) -> Value {
    let response = app.get(&format!("/v2/transactions/rejected{query}"), auth).await;
    response.assert_status(200);
    response.json()
}

async fn retrigger(app: &TestApp, auth: &str, ids: &[i64]) -> TestResponse {
    app.post_json("/v2/transactions/rejected/retrigger", auth, &json!({"ids": ids})).await
}

async fn status(app: &TestApp, auth: &str, request_id: &str) -> TestResponse {
    app.get(&format!("/v2/transactions/rejected/retrigger/status?requestId={request_id}"), auth)
        .await
}

async fn points(app: &TestApp, customer: i64) -> f64 {
    let response = app.get(&format!("/v2/customers/{customer}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["loyaltyInfo"]["loyaltyPoints"].as_f64().unwrap()
}

async fn events_of(app: &TestApp, id: i64) -> Vec<perks::events::store::EventRow> {
    let mut conn = app.state.db.read().await.unwrap();
    perks::events::store::for_entity(
        &mut conn,
        perks::org::model::OrgId(app.org.org_id),
        "REJECTED_TRANSACTION",
        id,
        10,
    )
    .await
    .unwrap()
}

// ---------------------------------------------------------------- tests

async fn without_the_config_bills_are_processed_as_before(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100001").await;
    // Registered modes alone change nothing while rejection is off.
    set_config(&app, "CONF_TRANSACTION_ALLOWED_PAYMENT_MODES", "Cash").await;
    set_config(&app, "CONF_TRANSACTION_REQUIRED_EXTENDED_FIELDS", "ship_city").await;
    post_bill(&app, &app.basic(), "919845100001", &bill("OFF-1", 100.0, "Bitcoin"))
        .await
        .assert_status(200);
    set_config(&app, "CONF_TRANSACTION_REJECTION_ENABLED", "false").await;
    post_bill(&app, &app.basic(), "919845100001", &bill("OFF-2", 100.0, "Bitcoin"))
        .await
        .assert_status(200);
    assert_eq!(points(&app, customer).await, 20.0);
    let listed = list(&app, &app.basic(), "").await;
    assert_eq!(listed["pagination"]["total"], 0);
    assert_eq!(listed["data"], json!([]));
    // Legacy errors stay immediate errors.
    let unknown = post_bill(&app, &app.basic(), "919845100099", &bill("OFF-3", 1.0, "Cash")).await;
    assert_v2_error(&unknown, 404, 8015);
}

async fn a_disallowed_payment_mode_is_queued_as_pending_and_listed(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100002").await;
    add_customer(&app, "919845100003").await;
    enable_rejection(&app).await;
    let auth = app.basic();
    // Registered modes are matched in any case.
    post_bill(&app, &auth, "919845100002", &bill("OK-1", 100.0, "cash")).await.assert_status(200);

    let first = post_bill(&app, &auth, "919845100002", &bill("REJ-1", 500.0, "Bitcoin")).await;
    let first = rejected_id(&first, 690);
    assert!(first > 0);
    let second = rejected_id(
        &post_bill(&app, &auth, "919845100002", &bill("REJ-2", 300.0, "Voucher")).await,
        690,
    );
    let third = rejected_id(
        &post_bill(&app, &auth, "919845100003", &bill("REJ-3", 200.0, "Bitcoin")).await,
        690,
    );
    // Nothing was processed: no transaction, no points.
    assert_eq!(points(&app, customer).await, 10.0);
    let by_number = app.get("/v2/transactions/getByBillNumber/REJ-1", &auth).await;
    assert_eq!(by_number.json()["pagination"]["total"], 0);

    let all = list(&app, &auth, "").await;
    assert_eq!(all["pagination"], json!({"limit": 20, "offset": 0, "total": 3}));
    assert_eq!(all["warnings"], json!([]));
    assert_eq!(all["errors"], json!([]));
    let ids: Vec<i64> =
        all["data"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![third, second, first], "newest first");
    let row = &all["data"][2];
    assert_eq!(row["billNumber"], "REJ-1");
    assert_eq!(
        row["customer"],
        json!({"identifierName": "mobile", "identifierValue": "919845100002", "source": "INSTORE"})
    );
    assert_eq!(row["rejectionType"], "PAYMENT_MODE_NOT_FOUND");
    assert_eq!(row["reprocessable"], true);
    assert_eq!(row["status"], "PENDING");
    assert!(row["reason"].as_str().unwrap().contains("'Bitcoin'"), "{row}");
    assert_eq!(row["source"]["api"], "POST /v2/transactions");
    assert_eq!(row["source"]["storeId"], app.org.store_id);
    assert_eq!(row["source"]["tillId"], app.org.till_id);
    assert!(row["source"]["tillCode"].is_string(), "{row}");
    assert!(row["createdOn"].as_str().unwrap().ends_with('Z'));

    // Filters and paging.
    let pending = list(&app, &auth, "?status=pending&rejectionType=PAYMENT_MODE_NOT_FOUND").await;
    assert_eq!(pending["pagination"]["total"], 3);
    assert_eq!(list(&app, &auth, "?status=FAILED").await["pagination"]["total"], 0);
    let of_customer =
        list(&app, &auth, "?identifierName=MOBILE&identifierValue=919845100003&source=instore")
            .await;
    assert_eq!(of_customer["pagination"]["total"], 1);
    assert_eq!(of_customer["data"][0]["id"], third);
    assert_eq!(list(&app, &auth, "?source=ECOMMERCE").await["pagination"]["total"], 0);
    let page = list(&app, &auth, "?limit=1&offset=1").await;
    assert_eq!(page["pagination"], json!({"limit": 1, "offset": 1, "total": 3}));
    assert_eq!(page["data"][0]["id"], second);
    let bad = app.get("/v2/transactions/rejected?status=DONE", &auth).await;
    assert_v2_error(&bad, 400, 400);
    let bad = app.get("/v2/transactions/rejected?rejectionType=NOPE", &auth).await;
    assert_v2_error(&bad, 400, 400);

    // The rejection raised its event and was audited.
    let events = events_of(&app, first).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "transaction.rejected");
    let payload: Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(payload["eventName"], "transaction.rejected");
    assert_eq!(payload["billNumber"], "REJ-1");
    assert_eq!(payload["customer"]["identifierValue"], "919845100002");
    assert_eq!(payload["rejectionType"], "PAYMENT_MODE_NOT_FOUND");
    assert_eq!(payload["reprocessable"], true);
    assert_eq!(payload["source"], "INSTORE");
    assert!(payload["reason"].as_str().unwrap().contains("Bitcoin"));
    assert!(payload["time"].is_string());
    let audit = app.audit(app.org.org_id, "REJECTED_TRANSACTION").await;
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|a| a.action == "REJECT"));
}

async fn a_retrigger_after_the_org_allows_the_mode_adds_the_bill(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100004").await;
    enable_rejection(&app).await;
    let auth = app.basic();
    let id = rejected_id(
        &post_bill(&app, &auth, "919845100004", &bill("RT-1", 1000.0, "Bitcoin")).await,
        690,
    );

    // Still not registered: the bill stays pending, with the reason of this attempt.
    let early = retrigger(&app, &auth, &[id]).await;
    early.assert_status(200);
    let early_id = early.json()["requestId"].as_str().unwrap().to_string();
    assert_eq!(early.json()["warnings"], json!([]));
    let early_status = status(&app, &auth, &early_id).await;
    early_status.assert_status(200);
    let item = &early_status.json()["data"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["billNumber"], "RT-1");
    assert_eq!(item["status"], "PENDING");
    assert!(item["reason"].as_str().unwrap().contains("Bitcoin"), "{item}");
    assert_eq!(points(&app, customer).await, 0.0);

    // The org registers the mode; the re-trigger now adds the bill and the customer earns.
    set_config(&app, "CONF_TRANSACTION_ALLOWED_PAYMENT_MODES", "Cash,CardPayment,Bitcoin").await;
    let response = retrigger(&app, &auth, &[id]).await;
    response.assert_status(200);
    let request_id = response.json()["requestId"].as_str().unwrap().to_string();
    assert_ne!(request_id, early_id);
    let done = status(&app, &auth, &request_id).await;
    done.assert_status(200);
    let item = &done.json()["data"][0];
    assert_eq!(item["status"], "SUCCESS", "{}", done.body);
    let transaction = item["transactionId"].as_i64().unwrap();
    assert_eq!(points(&app, customer).await, 100.0);
    let read = app.get(&format!("/v2/transactions/{transaction}?tenders=true"), &auth).await;
    read.assert_status(200);
    assert_eq!(read.json()["billDetails"]["billNumber"], "RT-1");
    assert_eq!(read.json()["paymentModes"][0]["mode"], "Bitcoin");
    assert_eq!(read.json()["customerId"], customer);

    let row = &list(&app, &auth, "").await["data"][0];
    assert_eq!(row["status"], "PROCESSED");
    assert_eq!(row["transactionId"], transaction);
    assert_eq!(row["retriggerRequestId"], request_id.as_str());
    // A processed bill cannot be replayed again (nothing to re-trigger: 400).
    assert_v2_error(&retrigger(&app, &auth, &[id]).await, 400, 400);
    assert_eq!(points(&app, customer).await, 100.0);
    let audit = app.audit(app.org.org_id, "REJECTED_TRANSACTION").await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, vec!["RETRIGGER", "RETRIGGER", "REJECT"]);
    // The bill number is now taken by the added bill.
    let again = post_bill(&app, &auth, "919845100004", &bill("RT-1", 1000.0, "Cash")).await;
    assert_v2_error(&again, 400, 604);
}

async fn a_missing_required_field_fails_for_good_unless_it_is_an_enum(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100005").await;
    let auth = app.basic();
    let admin = app.admin();
    app.post_json(
        "/v2/extendedFields",
        &admin,
        &json!({"name": "ship_city", "entityType": "transaction"}),
    )
    .await
    .assert_status(200);
    let channel = json!({"name": "channel", "entityType": "transaction", "dataType": "STANDARD_ENUM",
        "possibleValues": ["web", "store"]});
    app.post_json("/v2/extendedFields", &admin, &channel).await.assert_status(200);
    set_config(&app, "CONF_TRANSACTION_REJECTION_ENABLED", "1").await;
    set_config(&app, "CONF_TRANSACTION_REQUIRED_EXTENDED_FIELDS", "ship_city").await;

    let failed = rejected_id(
        &post_bill(&app, &auth, "919845100005", &bill("EF-1", 100.0, "Cash")).await,
        691,
    );
    let listed = list(&app, &auth, "?status=FAILED").await;
    assert_eq!(listed["pagination"]["total"], 1);
    let row = &listed["data"][0];
    assert_eq!(row["id"], failed);
    assert_eq!(row["rejectionType"], "TRANSACTION_EXTENDED_FIELD_MISSING");
    assert_eq!(row["reprocessable"], false);
    assert!(row["reason"].as_str().unwrap().contains("'ship_city'"), "{row}");
    // A failed bill is never re-triggered.
    assert_v2_error(&retrigger(&app, &auth, &[failed]).await, 400, 400);

    // With the field present the bill goes through.
    let mut with_field = bill("EF-2", 100.0, "Cash");
    with_field["extendedFields"] = json!({"ship_city": "Pune"});
    post_bill(&app, &auth, "919845100005", &with_field).await.assert_status(200);
    assert_eq!(points(&app, customer).await, 10.0);

    // A missing enum field can be fixed in master data: pending.
    set_config(&app, "CONF_TRANSACTION_REQUIRED_EXTENDED_FIELDS", "channel").await;
    let pending = rejected_id(
        &post_bill(&app, &auth, "919845100005", &bill("EF-3", 100.0, "Cash")).await,
        690,
    );
    let row = &list(&app, &auth, "?status=PENDING").await["data"][0];
    assert_eq!(row["id"], pending);
    assert_eq!(row["reprocessable"], true);
    // Once the org stops requiring the field, the re-trigger adds the bill.
    set_config(&app, "CONF_TRANSACTION_REQUIRED_EXTENDED_FIELDS", "").await;
    let response = retrigger(&app, &auth, &[pending]).await;
    response.assert_status(200);
    let request_id = response.json()["requestId"].as_str().unwrap().to_string();
    assert_eq!(status(&app, &auth, &request_id).await.json()["data"][0]["status"], "SUCCESS");
    assert_eq!(points(&app, customer).await, 20.0);
}

async fn mark_failed_ends_the_retries(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845100006").await;
    enable_rejection(&app).await;
    let auth = app.basic();
    let first = rejected_id(
        &post_bill(&app, &auth, "919845100006", &bill("MF-1", 100.0, "Bitcoin")).await,
        690,
    );
    let second = rejected_id(
        &post_bill(&app, &auth, "919845100006", &bill("MF-2", 100.0, "Bitcoin")).await,
        690,
    );
    let body = json!({"ids": [first, 999_999, first]});
    let response = app.put_json("/v2/transactions/rejected/markFailed", &auth, &body).await;
    response.assert_status(200);
    let data = response.json()["data"].clone();
    assert_eq!(data.as_array().unwrap().len(), 2, "repeated ids count once: {data}");
    assert_eq!(data[0], json!({"id": first, "status": "FAILED", "success": true, "errors": []}));
    assert_eq!(data[1]["id"], 999_999);
    assert_eq!(data[1]["success"], false);
    assert_eq!(data[1]["errors"][0]["code"], 404);

    let failed = list(&app, &auth, "?status=FAILED").await;
    assert_eq!(failed["pagination"]["total"], 1);
    assert_eq!(failed["data"][0]["id"], first);
    // No further retries, and marking again is refused.
    set_config(&app, "CONF_TRANSACTION_ALLOWED_PAYMENT_MODES", "Bitcoin").await;
    assert_v2_error(&retrigger(&app, &auth, &[first]).await, 400, 400);
    let again =
        app.put_json("/v2/transactions/rejected/markFailed", &auth, &json!({"ids": [first]})).await;
    assert_v2_error(&again, 400, 400);
    // A mixed re-trigger replays what it can and warns about the rest.
    let mixed = retrigger(&app, &auth, &[first, second]).await;
    mixed.assert_status(200);
    let warnings = mixed.json()["warnings"].clone();
    assert_eq!(warnings.as_array().unwrap().len(), 1, "{warnings}");
    assert_eq!(warnings[0]["id"], first);
    let request_id = mixed.json()["requestId"].as_str().unwrap().to_string();
    let done = status(&app, &auth, &request_id).await.json();
    assert_eq!(done["data"].as_array().unwrap().len(), 1);
    assert_eq!(done["data"][0]["id"], second);
    assert_eq!(done["data"][0]["status"], "SUCCESS");
    let audit = app.audit(app.org.org_id, "REJECTED_TRANSACTION").await;
    assert_eq!(audit.iter().filter(|a| a.action == "MARK_FAILED").count(), 1);
}

async fn bulk_and_v1_bills_are_screened_and_replayed(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100007").await;
    enable_rejection(&app).await;
    let auth = app.basic();
    let with_customer = |mut b: Value| {
        b["identifierType"] = json!("mobile");
        b["identifierValue"] = json!("919845100007");
        b["source"] = json!("INSTORE");
        b
    };
    let items = json!([
        with_customer(bill("BK-1", 100.0, "Cash")),
        with_customer(bill("BK-2", 200.0, "Bitcoin"))
    ]);
    let bulk = app.post_json("/v2/transactions/bulk", &auth, &items).await;
    bulk.assert_status(201);
    let results = bulk.json();
    assert!(results[0]["createdId"].as_i64().is_some(), "{results}");
    assert_eq!(results[1]["errors"][0]["code"], 690, "{results}");

    let v1 = json!({"root": {"transaction": [{"type": "regular", "number": "V1-1", "amount": 300,
        "billing_time": "2026-01-10 10:00:00", "customer": {"mobile": "919845100007"},
        "payment_details": {"payment": [{"mode": "Bitcoin", "value": 300}]}}]}});
    let response = app.post_json("/v1.1/transaction/add?format=json", &auth, &v1).await;
    let item = &response.json()["response"]["transactions"]["transaction"][0];
    assert_eq!(item["item_status"]["code"], 690, "{}", response.body);
    assert_eq!(points(&app, customer).await, 10.0);

    let listed = list(&app, &auth, "").await;
    assert_eq!(listed["pagination"]["total"], 2);
    let rows = listed["data"].as_array().unwrap();
    assert_eq!(rows[0]["billNumber"], "V1-1");
    assert_eq!(rows[0]["source"]["api"], "POST /v1.1/transaction/add");
    assert_eq!(rows[0]["customer"]["identifierName"], "mobile");
    assert_eq!(rows[1]["billNumber"], "BK-2");
    assert_eq!(rows[1]["source"]["api"], "POST /v2/transactions/bulk");
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();

    set_config(&app, "CONF_TRANSACTION_ALLOWED_PAYMENT_MODES", "Cash,Bitcoin").await;
    let response = retrigger(&app, &auth, &ids).await;
    response.assert_status(200);
    let request_id = response.json()["requestId"].as_str().unwrap().to_string();
    let done = status(&app, &auth, &request_id).await.json();
    let statuses: Vec<&str> =
        done["data"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["SUCCESS", "SUCCESS"], "{done}");
    assert_eq!(points(&app, customer).await, 60.0);
}

async fn bad_input_gets_v2_errors(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    for retrigger_it in [true, false] {
        let send = async |body: Value| {
            if retrigger_it {
                app.post_json("/v2/transactions/rejected/retrigger", &auth, &body).await
            } else {
                app.put_json("/v2/transactions/rejected/markFailed", &auth, &body).await
            }
        };
        assert_v2_error(&send(json!({"ids": []})).await, 400, 400);
        assert_v2_error(&send(json!({})).await, 400, 400);
        assert_v2_error(&send(json!({"ids": ["a"]})).await, 400, 400);
        let many: Vec<i64> = (1..=101).collect();
        assert_v2_error(&send(json!({"ids": many})).await, 400, 1060);
        assert_v2_error(&send(json!({"ids": [123_456]})).await, 404, 404);
    }
    assert_v2_error(&app.get("/v2/transactions/rejected/retrigger/status", &auth).await, 400, 400);
    let unknown = status(&app, &auth, "6f1c2d3e-0000-4000-8000-000000000000").await;
    assert_v2_error(&unknown, 404, 404);
    let long = status(&app, &auth, &"x".repeat(101)).await;
    assert_v2_error(&long, 400, 400);
    let response = app.get("/v2/transactions/rejected?limit=abc", &auth).await;
    assert_v2_error(&response, 400, 400);
}

async fn rejections_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919845100008").await;
    enable_rejection(&app).await;
    let auth = app.basic();
    let id = rejected_id(
        &post_bill(&app, &auth, "919845100008", &bill("ISO-1", 100.0, "Bitcoin")).await,
        690,
    );
    let response = retrigger(&app, &auth, &[id]).await;
    let request_id = response.json()["requestId"].as_str().unwrap().to_string();

    let other = app.another_org("Other").await;
    let other_auth = crate::helpers::basic_header(&other.till.username, &other.till.password);
    assert_eq!(list(&app, &other_auth, "").await["pagination"]["total"], 0);
    assert_v2_error(&retrigger(&app, &other_auth, &[id]).await, 404, 404);
    let mark = app
        .put_json("/v2/transactions/rejected/markFailed", &other_auth, &json!({"ids": [id]}))
        .await;
    assert_v2_error(&mark, 404, 404);
    assert_v2_error(&status(&app, &other_auth, &request_id).await, 404, 404);
    // The other org's own config does not reach this org's queue either.
    let row = &list(&app, &auth, "").await["data"][0];
    assert_eq!(row["id"], id);
    assert_eq!(row["status"], "PENDING");
}
