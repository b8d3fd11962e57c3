//! Coupons through the v1.1 API: series details, isredeemable, redeem (batch, partial success,
//! XML), coupon details, a customer's coupons with filters, and resend through comms.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::coupons::{create_series, issue, redeem};
use crate::helpers::{Backend, TestApp, TestResponse, request};
use crate::transactions::add_customer;

backend_tests!(
    series_details_and_unknown_ids,
    check_then_redeem_in_a_batch,
    coupon_details_and_customer_coupons,
    resend_queues_the_message_again,
    validation_code_is_checked_for_series_that_require_it,
);

#[track_caller]
fn item_code(r: &TestResponse, pointer: &str) -> i64 {
    r.json()
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{pointer}: {}", r.body))
}

async fn series_details_and_unknown_ids(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let series = create_series(&app, json!({"maxRedeem": 10})).await;
    let r = app.get(&format!("/v1.1/coupon/series?id={series}"), &app.basic()).await;
    r.assert_status(200);
    let item = &r.json()["response"]["coupon_series"]["series"];
    assert_eq!(item["id"], series, "{}", r.body);
    assert_eq!(item["discount_code"], "TEN");
    assert_eq!(item["max_redeem"], 10);
    assert_eq!(item["item_status"]["code"], 700);
    let r = app.get(&format!("/v1.1/coupon/series?id={series},424242"), &app.basic()).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    assert_eq!(r.v1_code(), 201);
    assert_eq!(item_code(&r, "/response/coupon_series/series/1/item_status/code"), 707);
    let r = app.get("/v1.1/coupon/series?id=abc", &app.basic()).await;
    assert_eq!(r.status.as_u16(), 500);
    assert_eq!(item_code(&r, "/response/coupon_series/series/item_status/code"), 707);
    let r = app.get("/v1.1/coupon/series", &app.basic()).await;
    assert_eq!(r.v1_code(), 629, "{}", r.body);
}

async fn check_then_redeem_in_a_batch(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919920000001").await;
    add_customer(&app, "919920000002").await;
    let series = create_series(&app, json!({})).await;
    let code = issue(&app, series, "919920000001").await;
    let other = issue(&app, series, "919920000002").await;

    let r = app
        .get(&format!("/v1.1/coupon/isredeemable?mobile=919920000001&code={code},{other},NOPE&details=true"), &app.basic())
        .await;
    assert_eq!(r.v1_code(), 201, "{}", r.body);
    let items = r.json()["response"]["coupons"]["redeemable"].clone();
    assert_eq!(items[0]["is_redeemable"], "true", "{}", r.body);
    assert_eq!(items[0]["item_status"]["code"], 700);
    assert_eq!(items[0]["redemptions_left"], 1);
    assert_eq!(items[0]["series_info"]["id"], series);
    assert_eq!(items[1]["item_status"]["code"], 710);
    assert_eq!(items[2]["item_status"]["code"], 719);
    let r = app
        .get(&format!("/v1.1/coupon/isredeemable?mobile=919920009999&code={code}"), &app.basic())
        .await;
    assert_eq!(item_code(&r, "/response/coupons/redeemable/item_status/code"), 701, "{}", r.body);

    // A batch: one succeeds, one is not this customer's; the request answers 201.
    let body = json!({"root": {"coupon": [
        {"code": code.to_lowercase(), "customer": {"mobile": "919920000001"},
         "transaction": [{"number": "T-9", "amount": 1200}],
         "custom_fields": {"field": [{"name": "channel", "value": "pos"}]}},
        {"code": other, "customer": {"mobile": "919920000001"}},
    ]}});
    let r = app.post_json("/v1.1/coupon/redeem", &app.basic(), &body).await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    let items = r.json()["response"]["coupons"]["coupon"].clone();
    assert_eq!(items[0]["item_status"]["code"], 700, "{}", r.body);
    assert_eq!(items[0]["item_status"]["success"], "true");
    assert_eq!(items[0]["code"], code);
    assert_eq!(items[0]["transaction"]["number"], "T-9");
    assert_eq!(items[0]["discount_type"], "ABS");
    assert!(items[0]["redemption_id"].as_i64().is_some());
    assert_eq!(items[1]["item_status"]["code"], 710);
    // A batch of several coupons is not the single-coupon (VoucherRedemption) notification.
    let bulk = "SELECT COUNT(*) FROM domain_events WHERE event_type = 'coupon.redeemed' \
                AND payload LIKE '%\"bulk\":true%'";
    assert_eq!(crate::coupons::count_where(&app, bulk).await, 1);
    // The redemption's custom field and bill were kept.
    let read = app.get(&format!("/v2/coupon?couponCodes={code}"), &app.basic()).await;
    assert_eq!(read.json()[0]["redemptions"][0]["customFields"]["channel"], "pos", "{}", read.body);
    assert_eq!(read.json()[0]["redemptions"][0]["billAmount"], 1200.0);

    // One item, in XML: the answer is XML with the refusal's code (already redeemed).
    let xml = format!(
        "<root><coupon><code>{code}</code><customer><mobile>919920000001</mobile></customer></coupon></root>"
    );
    let r = app
        .send(
            request(axum::http::Method::POST, "/v1.1/coupon/redeem?format=xml")
                .header("authorization", app.basic())
                .header("content-type", "application/xml")
                .body(axum::body::Body::from(xml))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status.as_u16(), 500, "{}", r.body);
    assert!(r.body.contains("<code>711</code>"), "{}", r.body);

    // An org that mandates transaction numbers refuses redemptions without one (718).
    let config = json!({"keyName": "CONF_COUPON_REDEEM_TXN_NUMBER_MANDATORY", "value": "true"});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
    let fresh = issue(&app, create_series(&app, json!({})).await, "919920000002").await;
    let body =
        json!({"root": {"coupon": [{"code": fresh, "customer": {"mobile": "919920000002"}}]}});
    let r = app.post_json("/v1.1/coupon/redeem", &app.basic(), &body).await;
    assert_eq!(item_code(&r, "/response/coupons/coupon/item_status/code"), 718, "{}", r.body);
    let body = json!({"root": {"coupon": [{"code": fresh, "customer": {"mobile": "919920000002"},
        "transaction": {"number": "T-10", "amount": 10}}]}});
    let r = app.post_json("/v1.1/coupon/redeem", &app.basic(), &body).await;
    assert_eq!(item_code(&r, "/response/coupons/coupon/item_status/code"), 700, "{}", r.body);
}

async fn coupon_details_and_customer_coupons(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919920000003").await;
    let series = create_series(&app, json!({"customPropertyMap": {"terms": "Once only"}})).await;
    let used = issue(&app, series, "919920000003").await;
    let other_series =
        create_series(&app, json!({"discountCode": "FIVE", "discountValue": 5})).await;
    let unused = issue(&app, other_series, "919920000003").await;
    redeem(&app, &used, "919920000003").await.assert_status(200);

    let r = app
        .get(&format!("/v1.1/coupon/get?code={},{}", used.to_lowercase(), "NOPE"), &app.basic())
        .await;
    assert_eq!(r.v1_code(), 201, "{}", r.body);
    let items = r.json()["response"]["coupons"]["coupon"].clone();
    let found =
        items.as_array().unwrap().iter().find(|i| i["code"] == used.as_str()).unwrap().clone();
    assert_eq!(found["item_status"]["code"], 700);
    assert_eq!(found["series_id"], series);
    assert_eq!(found["status"], "REDEEMED");
    assert_eq!(found["issued_to"]["id"], customer);
    assert_eq!(found["redemption"]["count"], 1);
    assert_eq!(found["custom_properties"]["property"][0]["name"], "terms");
    assert_eq!(found["valid_till"], "30-06-2035", "the series end, DD-MM-YYYY in UTC");
    assert!(items.as_array().unwrap().iter().any(|i| i["item_status"]["code"] == 719));
    let r = app
        .get(
            &format!("/v1.1/coupon/get?issuedToIds={customer}&coupon_code_case=lower"),
            &app.basic(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(
        r.json()["response"]["coupons"]["coupon"].as_array().unwrap().len(),
        2,
        "{}",
        r.body
    );

    let list = |query: &str| {
        let app = &app;
        let query = query.to_string();
        async move {
            let r = app
                .get(&format!("/v1.1/customer/coupons?mobile=919920000003{query}"), &app.basic())
                .await;
            r.assert_status(200);
            let customer = r.json()["response"]["customers"]["customer"][0].clone();
            assert_eq!(customer["item_status"]["code"], 700, "{}", r.body);
            let codes: Vec<String> = customer["coupons"]["coupon"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["code"].as_str().unwrap().to_string())
                .collect();
            codes
        }
    };
    assert_eq!(list("").await.len(), 2);
    assert_eq!(list("&status=redeemed").await, vec![used.clone()]);
    assert_eq!(list("&status=unredeemed").await, vec![unused.clone()]);
    assert_eq!(list("&status=expired").await, Vec::<String>::new());
    assert_eq!(list(&format!("&series_id={other_series}")).await, vec![unused.clone()]);
    assert_eq!(list("&limit=1&sort_order=asc").await, vec![used.clone()]);
    assert_eq!(list("&start_date=2001-01-01&end_date=2001-12-31").await, Vec::<String>::new());
    let r = app.get("/v1.1/customer/coupons?mobile=919920000003&status=lost", &app.basic()).await;
    assert_eq!(item_code(&r, "/response/customers/customer/0/item_status/code"), 629, "{}", r.body);
    let r = app.get("/v1.1/customer/coupons?mobile=919920008888", &app.basic()).await;
    assert_eq!(item_code(&r, "/response/customers/customer/0/item_status/code"), 701);

    // The v2 reads with status filters.
    let v2 = |status: &str| {
        let app = &app;
        let status = status.to_string();
        async move {
            let r = app
                .get(
                    &format!("/v2/customers/coupons?mobile=919920000003&status={status}"),
                    &app.basic(),
                )
                .await;
            r.assert_status(200);
            let body = r.json();
            (body["total"].as_i64().unwrap(), body["customers"][0]["coupons"].clone())
        }
    };
    assert_eq!(v2("ACTIVE_REDEEMED").await.0, 1);
    assert_eq!(v2("ACTIVE_UNREDEEMED").await.1[0]["code"], unused.as_str());
    assert_eq!(v2("REDEEMABLE").await.0, 1);
    assert_eq!(v2("EXPIRED_UNREDEEMED").await.0, 0);
    app.exec_sql(&format!("UPDATE coupons SET expires_at = 1000 WHERE code = '{unused}'")).await;
    assert_eq!(v2("EXPIRED_UNREDEEMED").await.0, 1);
    assert_eq!(v2("EXPIRED_REDEEMED").await.0, 0);
    assert_eq!(v2("REDEEMABLE").await.0, 0);
    let r = app.get("/v2/customers/coupons?mobile=919920000003&status=LOST", &app.basic()).await;
    assert_eq!(r.v2_error_code(), 629);
    let r =
        app.get("/v2/customers/coupons?mobile=919920000003&limit=1&offset=1", &app.basic()).await;
    assert_eq!(r.json()["customers"][0]["coupons"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["total"], 2);
    let r = app.get(&format!("/v2/customers/{customer}/coupons"), &app.basic()).await;
    r.assert_status(200);
    assert_eq!(r.json()["coupons"].as_array().unwrap().len(), 2);
    assert!(r.json()["coupons"][0]["series"]["id"].is_i64());
}

async fn resend_queues_the_message_again(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919920000004").await;
    add_customer(&app, "919920000005").await;
    let series = create_series(&app, json!({})).await;
    let code = issue(&app, series, "919920000004").await;
    let messages = || async {
        crate::coupons::count_where(
            &app,
            &format!("SELECT COUNT(*) FROM messages WHERE body LIKE '%{code}%'"),
        )
        .await
    };
    assert_eq!(messages().await, 1);
    let r = app
        .get(&format!("/v1.1/coupon/resend?mobile=919920000004&code={code}"), &app.basic())
        .await;
    r.assert_status(200);
    assert_eq!(item_code(&r, "/response/coupons/coupon/item_status/code"), 700, "{}", r.body);
    assert_eq!(messages().await, 2);
    let r = app
        .get(&format!("/v1.1/coupon/resend?mobile=919920000005&code={code}"), &app.basic())
        .await;
    assert_eq!(item_code(&r, "/response/coupons/coupon/item_status/code"), 703);
    let r = app.get("/v1.1/coupon/resend?mobile=919920000004&code=NOPE", &app.basic()).await;
    assert_eq!(item_code(&r, "/response/coupons/coupon/item_status/code"), 719);
    let r = app
        .get(&format!("/v1.1/coupon/resend?mobile=919920007777&code={code}"), &app.basic())
        .await;
    assert_eq!(item_code(&r, "/response/coupons/coupon/item_status/code"), 701);
    // A customer without a mobile cannot get an SMS (704).
    let r = app
        .post_json(
            "/v2/customers",
            &app.basic(),
            &json!({"profiles": [{"firstName": "Mail",
        "identifiers": [{"type": "email", "value": "mail.only@example.com"}]}]}),
        )
        .await;
    r.assert_status(200);
    let by_mail = app
        .post_json(
            "/v2/coupon/issue",
            &app.basic(),
            &json!({"seriesId": series, "customer": {"email": "mail.only@example.com"}}),
        )
        .await;
    by_mail.assert_status(200);
    assert_eq!(by_mail.json()["warnings"][0]["code"], 704, "{}", by_mail.body);
    let mail_code = by_mail.json()["code"].as_str().unwrap().to_string();
    let r = app
        .get(
            &format!("/v1.1/coupon/resend?email=mail.only@example.com&code={mail_code}"),
            &app.basic(),
        )
        .await;
    assert_eq!(item_code(&r, "/response/coupons/coupon/item_status/code"), 704, "{}", r.body);
    assert!(app.audit(app.org.org_id, "COUPON").await.iter().any(|a| a.action == "RESEND"));
}

async fn validation_code_is_checked_for_series_that_require_it(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let mobile = "919920000077";
    let customer = add_customer(&app, mobile).await;
    // Points to ask a code for (the starter program gives 10% of the bill).
    let bill = json!({"type": "REGULAR", "billNumber": "VC-1", "billAmount": 5000});
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    app.post_json(&uri, &app.basic(), &bill).await.assert_status(200);
    let series = create_series(&app, json!({"isValidationRequired": true})).await;
    let code = issue(&app, series, mobile).await;
    let redeem_with = |validation: Option<&str>| {
        let mut item = json!({"code": code, "customer": {"mobile": mobile}});
        if let Some(v) = validation {
            item["validation_code"] = json!(v);
        }
        json!({"root": {"coupon": [item]}})
    };
    let status = |r: &TestResponse| item_code(r, "/response/coupons/coupon/item_status/code");
    // Without a code, and with a wrong one: 705, nothing redeemed.
    let r = app.post_json("/v1.1/coupon/redeem", &app.basic(), &redeem_with(None)).await;
    assert_eq!(status(&r), 705, "{}", r.body);
    let r = app.post_json("/v1.1/coupon/redeem", &app.basic(), &redeem_with(Some("000000"))).await;
    assert_eq!(status(&r), 705, "{}", r.body);
    let redeemed = "SELECT COUNT(*) FROM coupon_redemptions";
    assert_eq!(crate::coupons::count_where(&app, redeemed).await, 0);
    // The customer's live validation code (sent by GET /v1.1/points/validationcode) redeems it.
    let r = app
        .get(&format!("/v1.1/points/validationcode?mobile={mobile}&points=100"), &app.basic())
        .await;
    r.assert_status(200);
    let hash = perks::points::redemption::hash_code("salt", "424242");
    app.exec_sql(&format!(
        "UPDATE points_validation_codes SET salt = 'salt', code_hash = '{hash}' WHERE customer_id = {customer}"
    ))
    .await;
    let r = app.post_json("/v1.1/coupon/redeem", &app.basic(), &redeem_with(Some("424242"))).await;
    assert_eq!(status(&r), 700, "{}", r.body);
    assert_eq!(crate::coupons::count_where(&app, redeemed).await, 1);
    // v2 redeems directly: the validation code is a v1.1 check only.
    let second = create_series(&app, json!({"isValidationRequired": true})).await;
    let other = issue(&app, second, mobile).await;
    let body = json!({"redemptionRequestList": [{"code": other}], "user": {"mobile": mobile}});
    app.post_json("/v2/coupon/redeem", &app.basic(), &body).await.assert_status(200);
}
