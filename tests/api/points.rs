//! Points redemption: isredeemable → validation code → redeem → reverse, the program's rules,
//! validation codes (wrong, expired, used up), FEFO, reversal exactly once, concurrency, org
//! isolation, and nothing written on refusal; the balance and ledger reads.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse};
use crate::transactions::{add_customer, set_program};

backend_tests!(
    earn_check_code_redeem_reverse,
    rules_get_their_codes,
    validation_codes_wrong_expired_and_used_up,
    redemption_spends_the_soonest_expiring_lot_first,
    a_reversal_restores_exactly_once,
    concurrent_redemptions_never_overspend,
    another_orgs_customer_is_not_found,
    refused_requests_write_nothing,
    v2_redemption_validates_without_commit,
);

fn program(mode: &str) -> Value {
    json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
        "earn": [{"name": "base", "on": "transaction", "when": "true", "points": "bill.amount * 0.1"}],
        "expiry": {"type": "rolling", "days": 365},
        "redemption": {"minPoints": 100, "multipleOf": 10, "maxPerBill": 5000, "pointValue": 0.25,
                       "validationCode": mode}})
}

/// Earns `amount / 10` points for the customer with one bill.
async fn earn(app: &TestApp, mobile: &str, number: &str, amount: f64, date: &str) {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    let body =
        json!({"type": "REGULAR", "billNumber": number, "billAmount": amount, "billingDate": date});
    app.post_json(&uri, &app.basic(), &body).await.assert_status(200);
}

async fn balance(app: &TestApp, customer: i64) -> f64 {
    let r = app.get(&format!("/v2/customers/{customer}/points/balance"), &app.basic()).await;
    r.assert_status(200);
    r.json()["mainPoints"].as_f64().unwrap()
}

fn item_code(r: &TestResponse, pointer: &str) -> i64 {
    r.json().pointer(pointer).and_then(Value::as_i64).unwrap_or_else(|| panic!("{}", r.body))
}

async fn is_redeemable(app: &TestApp, mobile: &str, points: &str, extra: &str) -> TestResponse {
    app.get(
        &format!("/v1.1/points/isredeemable?mobile={mobile}&points={points}{extra}"),
        &app.basic(),
    )
    .await
}

async fn redeem(
    app: &TestApp,
    mobile: &str,
    points: f64,
    code: Option<&str>,
    query: &str,
) -> TestResponse {
    let mut item = json!({"points_redeemed": points, "customer": {"mobile": mobile},
        "transaction_number": "R-1", "notes": "test"});
    if let Some(code) = code {
        item["validation_code"] = json!(code);
    }
    app.post_json(
        &format!("/v1.1/points/redeem{query}"),
        &app.basic(),
        &json!({"root": {"redeem": [item]}}),
    )
    .await
}

fn redeem_code(r: &TestResponse) -> i64 {
    item_code(r, "/response/responses/points/0/item_status/code")
}

fn redeem_message(r: &TestResponse) -> String {
    r.json()
        .pointer("/response/responses/points/0/item_status/message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Issues a code and replaces its stored hash with that of `code` (codes are never shown).
async fn known_code(app: &TestApp, mobile: &str, customer: i64, points: u32, code: &str) {
    let r = app
        .get(&format!("/v1.1/points/validationcode?mobile={mobile}&points={points}"), &app.basic())
        .await;
    r.assert_status(200);
    let hash = perks::points::redemption::hash_code("salt", code);
    app.exec_sql(&format!(
        "UPDATE points_validation_codes SET salt = 'salt', code_hash = '{hash}' WHERE customer_id = {customer}"
    ))
    .await;
}

async fn verify_clean(app: &TestApp) {
    let mut conn = app.state.db.read().await.unwrap();
    let found = perks::points::ledger::verify(&mut conn, None, 10).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
}

async fn earn_check_code_redeem_reverse(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("required")).await;
    let customer = add_customer(&app, "919845100001").await;
    earn(&app, "919845100001", "B1", 5000.0, "2026-01-10T10:00:00+05:30").await;
    assert_eq!(balance(&app, customer).await, 500.0);

    let r = is_redeemable(&app, "919845100001", "200", "").await;
    r.assert_status(200);
    assert_eq!(item_code(&r, "/response/points/redeemable/item_status/code"), 800, "{}", r.body);
    assert_eq!(r.json()["response"]["points"]["redeemable"]["points_redeem_value"], 50.0);

    // Without a code the program refuses.
    assert_eq!(redeem_code(&redeem(&app, "919845100001", 200.0, None, "").await), 808);
    known_code(&app, "919845100001", customer, 200, "123456").await;
    let r = redeem(&app, "919845100001", 200.0, Some("123456"), "").await;
    r.assert_status(200);
    assert_eq!(redeem_code(&r), 800, "{}", r.body);
    let item = &r.json()["response"]["responses"]["points"][0];
    assert_eq!(item["balance"], 300.0);
    let id = item["redemption_id"].as_i64().unwrap();
    assert_eq!(balance(&app, customer).await, 300.0);
    // The code is used up.
    assert_eq!(redeem_code(&redeem(&app, "919845100001", 200.0, Some("123456"), "").await), 808);

    let body = json!({"redemptionId": id.to_string(), "identifier": {"type": "ID", "value": customer.to_string()}});
    let r = app.post_json("/v2/points/reverse", &app.basic(), &body).await;
    r.assert_status(200);
    assert_eq!(r.json()["pointsReversed"], 200.0, "{}", r.body);
    assert_eq!(balance(&app, customer).await, 500.0);
    verify_clean(&app).await;
}

async fn rules_get_their_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("optional")).await;
    add_customer(&app, "919845100002").await;
    earn(&app, "919845100002", "B1", 70000.0, "2026-01-10T10:00:00+05:30").await; // 7000 points
    let code = |r: TestResponse| item_code(&r, "/response/points/redeemable/item_status/code");
    let m = "919845100002";
    assert_eq!(code(is_redeemable(&app, m, "0", "").await), 801);
    assert_eq!(code(is_redeemable(&app, m, "-10", "").await), 801);
    assert_eq!(code(is_redeemable(&app, m, "150.5", "").await), 801);
    assert_eq!(code(is_redeemable(&app, m, "50", "").await), 821);
    assert_eq!(code(is_redeemable(&app, m, "155", "").await), 807);
    assert_eq!(code(is_redeemable(&app, m, "6000", "").await), 819);
    assert_eq!(code(is_redeemable(&app, m, "150", "&program_id=999999").await), 1101);
    // More than the balance: 803 (a fresh customer has nothing).
    add_customer(&app, "919845100003").await;
    assert_eq!(code(is_redeemable(&app, "919845100003", "150", "").await), 803);
    let r = redeem(&app, "919845100003", 150.0, None, "?skip_validation=true").await;
    assert_eq!(redeem_code(&r), 803);
    // A fraud customer cannot redeem.
    app.exec_sql("UPDATE customers SET fraud_status = 'CONFIRMED' WHERE id IN (SELECT customer_id FROM customer_identifiers WHERE value = '919845100002')").await;
    assert_eq!(code(is_redeemable(&app, m, "150", "").await), 809);
}

async fn validation_codes_wrong_expired_and_used_up(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("required")).await;
    let customer = add_customer(&app, "919845100004").await;
    let m = "919845100004";
    earn(&app, m, "B1", 5000.0, "2026-01-10T10:00:00+05:30").await;
    known_code(&app, m, customer, 100, "111111").await;
    // Asking again within the window keeps the same code.
    let r =
        app.get(&format!("/v1.1/points/validationcode?mobile={m}&points=100"), &app.basic()).await;
    assert_eq!(r.json()["response"]["validation_code"]["code"]["resent"], true, "{}", r.body);
    // The code went to the customer as an SMS through the communications module.
    let messages = app.get(&format!("/v2/customers/{customer}/interactions"), &app.basic()).await;
    messages.assert_status(200);
    assert!(messages.body.contains("validation code"), "{}", messages.body);
    // A wrong code is 808; five wrong tries kill the code (808 even with the right one).
    for _ in 0..5 {
        let r = redeem(&app, m, 100.0, Some("999999"), "").await;
        assert_eq!(redeem_code(&r), 808);
        assert!(redeem_message(&r).contains("wrong"), "{}", r.body);
    }
    let r = redeem(&app, m, 100.0, Some("111111"), "").await;
    assert_eq!(redeem_code(&r), 808);
    assert!(redeem_message(&r).contains("expired or is used up"), "{}", r.body);
    // Required mode ignores skip_validation.
    let r = redeem(&app, m, 100.0, None, "?skip_validation=true").await;
    assert_eq!(redeem_code(&r), 808);
    assert!(redeem_message(&r).contains("required"), "{}", r.body);

    // An expired code is 808.
    known_code(&app, m, customer, 100, "222222").await;
    app.exec_sql(&format!(
        "UPDATE points_validation_codes SET expires_at = 1 WHERE customer_id = {customer}"
    ))
    .await;
    assert_eq!(redeem_code(&redeem(&app, m, 100.0, Some("222222"), "").await), 808);
    assert_eq!(balance(&app, customer).await, 500.0);
}

async fn redemption_spends_the_soonest_expiring_lot_first(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("never")).await;
    let customer = add_customer(&app, "919845100005").await;
    let m = "919845100005";
    earn(&app, m, "LATE", 3000.0, "2026-03-10T10:00:00+05:30").await; // 300, expires later
    earn(&app, m, "SOON", 2000.0, "2026-01-10T10:00:00+05:30").await; // 200
    // Rolling expiry gives both lots one date: make the second bill's lot expire sooner.
    app.exec_sql("UPDATE point_lots SET expires_at = expires_at - 2592000000 WHERE transaction_id IN (SELECT id FROM transactions WHERE bill_number = 'SOON')").await;
    let r = redeem(&app, m, 250.0, None, "").await;
    assert_eq!(redeem_code(&r), 800, "{}", r.body);
    let mut conn = app.state.db.read().await.unwrap();
    let lots: Vec<(i64, Option<i64>)> = perks::dispatch!(&mut conn, |e| {
        sqlx::query_as(
        "SELECT remaining, expires_at FROM point_lots WHERE customer_id = $1 ORDER BY expires_at"
    )
    .bind(customer)
    .fetch_all(e)
    .await
    })
    .unwrap();
    assert_eq!(lots.iter().map(|l| l.0).collect::<Vec<_>>(), vec![0, 250_0000], "{lots:?}");
    drop(conn);
    let info = app
        .get(&format!("/v2/pointsLedger/getCustomerLedgerInfo?identifierName=mobile&identifierValue={m}&source=INSTORE"), &app.basic())
        .await;
    info.assert_status(200);
    let entries = info.json()["ledgerDetails"]["entries"].clone();
    assert_eq!(entries[0]["ledgerEntryType"], "REDEEM", "{}", info.body);
    assert_eq!(entries[0]["points"], -250.0);
    assert_eq!(entries[0]["balance"], 250.0);
    let bal = app
        .get(&format!("/v2/pointsLedger/getCustomerLedgerBalance?identifierName=mobile&identifierValue={m}&source=INSTORE"), &app.basic())
        .await;
    bal.assert_status(200);
    let rows = bal.json()["ledgerDetails"]["balances"].as_array().unwrap().clone();
    assert_eq!(rows.last().unwrap()["closingBalance"], 250.0, "{}", bal.body);
}

async fn a_reversal_restores_exactly_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("never")).await;
    let customer = add_customer(&app, "919845100006").await;
    let m = "919845100006";
    earn(&app, m, "A", 2000.0, "2026-01-10T10:00:00+05:30").await;
    earn(&app, m, "B", 3000.0, "2026-03-10T10:00:00+05:30").await;
    let r = redeem(&app, m, 300.0, None, "").await;
    let id = r.json()["response"]["responses"]["points"][0]["redemption_id"].as_i64().unwrap();
    assert_eq!(balance(&app, customer).await, 200.0);
    let body = json!({"redemptionId": id});
    let r = app.post_json("/v2/points/reverse", &app.basic(), &body).await;
    r.assert_status(200);
    assert_eq!(balance(&app, customer).await, 500.0);
    let again = app.post_json("/v2/points/reverse", &app.basic(), &body).await;
    again.assert_status(400);
    assert_eq!(again.v2_error_code(), 812);
    assert_eq!(balance(&app, customer).await, 500.0);
    let missing =
        app.post_json("/v2/points/reverse", &app.basic(), &json!({"redemptionId": 999999})).await;
    assert_eq!(missing.v2_error_code(), 814);
    verify_clean(&app).await;
}

async fn concurrent_redemptions_never_overspend(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("never")).await;
    let customer = add_customer(&app, "919845100007").await;
    earn(&app, "919845100007", "A", 20000.0, "2026-01-10T10:00:00+05:30").await; // 2000
    let mut handles = Vec::new();
    for _ in 0..200 {
        let router = app.router.clone();
        let auth = app.basic();
        handles.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let body = json!({"points": 100, "commit": true});
            let request = axum::http::Request::builder()
                .method("POST")
                .uri(format!("/v2/customers/{customer}/redemptions"))
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            router.oneshot(request).await.unwrap().status().as_u16()
        }));
    }
    let mut ok = 0;
    for h in handles {
        if h.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 20);
    assert_eq!(balance(&app, customer).await, 0.0);
    verify_clean(&app).await;
}

async fn another_orgs_customer_is_not_found(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("never")).await;
    let customer = add_customer(&app, "919845100008").await;
    earn(&app, "919845100008", "A", 5000.0, "2026-01-10T10:00:00+05:30").await;
    let other = app.another_org("Other").await;
    let auth = crate::helpers::basic_header(&other.till.username, &other.till.password);
    let r = app.get(&format!("/v2/customers/{customer}/points/balance"), &auth).await;
    assert_eq!(r.v2_error_code(), 8015, "{}", r.body);
    let r = app.get("/v1.1/points/isredeemable?mobile=919845100008&points=100", &auth).await;
    assert_eq!(item_code(&r, "/response/points/redeemable/item_status/code"), 1012, "{}", r.body);
    let body = json!({"points": 100});
    let r = app.post_json(&format!("/v2/customers/{customer}/redemptions"), &auth, &body).await;
    assert_eq!(r.v2_error_code(), 8015);
    assert_eq!(balance(&app, customer).await, 500.0);
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM {table}");
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(&sql).fetch_one(e).await).unwrap()
}

async fn refused_requests_write_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("optional")).await;
    add_customer(&app, "919845100009").await;
    let m = "919845100009";
    earn(&app, m, "A", 5000.0, "2026-01-10T10:00:00+05:30").await;
    let before = (
        count(&app, "ledger_entries").await,
        count(&app, "points_redemptions").await,
        count(&app, "domain_events").await,
    );
    for points in [50.0, 155.0, 6000.0, 600.0] {
        let r = redeem(&app, m, points, None, "?skip_validation=true").await;
        assert_ne!(redeem_code(&r), 800);
    }
    is_redeemable(&app, m, "200", "").await.assert_status(200);
    let after = (
        count(&app, "ledger_entries").await,
        count(&app, "points_redemptions").await,
        count(&app, "domain_events").await,
    );
    assert_eq!(before, after);
}

async fn v2_redemption_validates_without_commit(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program("never")).await;
    let customer = add_customer(&app, "919845100010").await;
    earn(&app, "919845100010", "A", 5000.0, "2026-01-10T10:00:00+05:30").await;
    let uri = format!("/v2/customers/{customer}/redemptions");
    let r = app
        .post_json(
            &uri,
            &app.basic(),
            &json!({"redemptionType": "POINTS", "points": 200, "commit": false}),
        )
        .await;
    r.assert_status(200);
    assert!(r.json()["redemptionId"].is_null(), "{}", r.body);
    assert_eq!(balance(&app, customer).await, 500.0);
    let r = app.post_json(&uri, &app.basic(), &json!({"points": 200})).await;
    r.assert_status(200);
    assert_eq!(r.json()["balance"], 300.0);
    let r = app.post_json(&uri, &app.basic(), &json!({"points": 155})).await;
    assert_eq!(r.v2_error_code(), 807);
    let lookup = app
        .get("/v2/customers/lookup/points/balance?identifierName=mobile&identifierValue=919845100010&source=INSTORE", &app.basic())
        .await;
    lookup.assert_status(200);
    assert_eq!(lookup.json()["totalPoints"], 300.0);
}
