//! Coupons through the v2 API: series create/update/read and their validation, issue → check →
//! redeem → read, every refusal with its code (unknown, other org, other customer, revoked,
//! expired, not yet valid, other till), org isolation, audit records and outbox events.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};
use crate::transactions::add_customer;

backend_tests!(
    create_issue_check_redeem_and_read,
    series_input_is_validated_and_updates_keep_counters,
    refusals_get_their_codes,
    another_org_sees_nothing,
    codes_match_ignoring_case_and_show_in_the_asked_case,
    issue_limits_and_the_existing_voucher,
    bills_issue_coupons_through_earn_rules,
    retries_with_an_idempotency_key_act_once,
    openapi_lists_the_coupon_apis,
);

pub const TILL_PASSWORD: &str = "till-pass-1";

/// A series body with `overrides` merged in.
pub fn series_body(overrides: Value) -> Value {
    let mut body = json!({
        "description": "Ten off", "discountCode": "TEN", "validTillDate": "2035-06-30T23:59:59+05:30",
        "discountType": "ABS", "discountValue": 10, "clientHandlingType": "DISC_CODE",
        "expiryStrategyType": "SERIES_EXPIRY", "anyUser": false,
        "smsTemplate": "Hi {{first_name}}, your voucher {{voucher}} is valid till {{valid_till}}",
        "seriesCode": "S1",
    });
    if let (Some(map), Some(extra)) = (body.as_object_mut(), overrides.as_object()) {
        map.extend(extra.clone());
    }
    json!({"CouponSeriesV2": body})
}

/// Creates a series; its id.
pub async fn create_series(app: &TestApp, overrides: Value) -> i64 {
    let r = app.post_json("/v2/coupon/series", &app.basic(), &series_body(overrides)).await;
    r.assert_status(200);
    r.json()["entity"]["id"].as_i64().unwrap_or_else(|| panic!("{}", r.body))
}

/// Issues a coupon of `series` to the customer with `mobile`; the response.
pub async fn issue_raw(app: &TestApp, auth: &str, series: i64, mobile: &str) -> TestResponse {
    let body = json!({"seriesId": series, "customer": {"mobile": mobile}});
    app.post_json("/v2/coupon/issue", auth, &body).await
}

/// Issues a coupon; its code.
pub async fn issue(app: &TestApp, series: i64, mobile: &str) -> String {
    let r = issue_raw(app, &app.basic(), series, mobile).await;
    r.assert_status(200);
    r.json()["code"].as_str().unwrap_or_else(|| panic!("{}", r.body)).to_string()
}

/// Redeems one code for the customer with `mobile` through `POST /v2/coupon/redeem`.
pub async fn redeem_as(app: &TestApp, auth: &str, code: &str, mobile: &str) -> TestResponse {
    let body = json!({"redemptionRequestList": [{"code": code}], "user": {"mobile": mobile},
        "transactionNumber": "BILL-1", "billAmount": 500});
    app.post_json("/v2/coupon/redeem", auth, &body).await
}

pub async fn redeem(app: &TestApp, code: &str, mobile: &str) -> TestResponse {
    redeem_as(app, &app.basic(), code, mobile).await
}

/// The v2 error code of a refused redemption.
#[track_caller]
pub fn refused(r: &TestResponse) -> i64 {
    assert!(r.status.is_client_error(), "expected a refusal: {} {}", r.status, r.body);
    r.v2_error_code()
}

pub async fn series_json(app: &TestApp, id: i64) -> Value {
    let r = app.get(&format!("/v2/coupon/series?ids={id}"), &app.basic()).await;
    r.assert_status(200);
    r.json()["entity"].clone()
}

pub async fn count_where(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(sql).fetch_one(e).await).unwrap()
}

async fn events_of(app: &TestApp, kind: &str) -> i64 {
    count_where(
        app,
        &format!(
            "SELECT COUNT(*) FROM domain_events WHERE org_id = {} AND event_type = '{kind}'",
            app.org.org_id
        ),
    )
    .await
}

/// Adds a till to the org's default store; its id and Basic header.
pub async fn add_till(app: &TestApp, name: &str) -> (i64, String) {
    let body = json!({"name": name, "password": TILL_PASSWORD, "storeId": app.org.store_id});
    let r = app.post_json("/v2/orgEntity/till", &app.basic(), &body).await;
    r.assert_status(200);
    (r.json()["createdId"].as_i64().unwrap(), basic_header(name, TILL_PASSWORD))
}

async fn create_issue_check_redeem_and_read(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919900000001").await;
    let r = app.post_json("/v2/coupon/series", &app.basic(), &series_body(json!({}))).await;
    r.assert_status(200);
    let entity = &r.json()["entity"];
    let series = entity["id"].as_i64().unwrap();
    assert_eq!(entity["orgId"], app.org.org_id);
    assert_eq!(entity["numIssued"], 0);
    assert_eq!(entity["maxCreate"], -1);
    assert_eq!(entity["validTillDate"], "2035-06-30T23:59:59+05:30");
    assert_eq!(entity["discountType"], "ABS");

    let r = issue_raw(&app, &app.basic(), series, "919900000001").await;
    r.assert_status(200);
    let issued = r.json();
    let code = issued["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 8, "{code}");
    assert_eq!(issued["seriesId"], series);
    assert_eq!(issued["discountValue"], 10.0);
    assert_eq!(issued["customer"]["id"], customer);
    assert_eq!(issued["customer"]["profiles"][0]["identifiers"][0]["value"], "919900000001");
    assert_eq!(issued["warnings"], json!([]), "{}", r.body);

    let check = app
        .get(
            &format!("/v2/coupon/is_redeemable?mobile=919900000001&code={code}&details=true"),
            &app.basic(),
        )
        .await;
    check.assert_status(200);
    let item = &check.json()["redemption"][0];
    assert_eq!(item["isRedeemable"], true, "{}", check.body);
    assert_eq!(item["status"]["code"], 700);
    assert_eq!(item["redemptionsLeft"], 1);
    assert_eq!(item["couponseries"]["id"], series);
    assert_eq!(check.json()["user"]["userId"], customer);

    let r = redeem(&app, &code, "919900000001").await;
    r.assert_status(200);
    let redemption_id = r.json()["redemptionId"].as_i64().unwrap();
    assert_eq!(r.json()["redemptionIds"], json!([redemption_id]));
    assert_eq!(r.json()["redemption"][0]["status"]["code"], 700);
    assert_eq!(refused(&redeem(&app, &code, "919900000001").await), 711);
    let check = app
        .get(&format!("/v2/coupon/is_redeemable?mobile=919900000001&code={code}"), &app.basic())
        .await;
    assert_eq!(check.json()["redemption"][0]["isRedeemable"], false);
    assert_eq!(check.json()["redemption"][0]["status"]["code"], 711);

    let r = app.get(&format!("/v2/coupon?couponCodes={}", code.to_lowercase()), &app.basic()).await;
    r.assert_status(200);
    let coupon = &r.json()[0];
    assert_eq!(coupon["code"], code);
    assert_eq!(coupon["status"], "ACTIVE_REDEEMED");
    assert_eq!(coupon["issuedTo"], customer);
    assert_eq!(coupon["redemptions"][0]["id"], redemption_id);
    assert_eq!(coupon["redemptions"][0]["transactionNumber"], "BILL-1");
    assert_eq!(coupon["redemptions"][0]["billAmount"], 500.0);
    let by_id = app
        .get(&format!("/v2/coupon?couponIds={}&showCouponSeries=true", coupon["id"]), &app.basic())
        .await;
    assert_eq!(by_id.json()[0]["series"]["id"], series, "{}", by_id.body);

    let s = series_json(&app, series).await;
    assert_eq!((s["numIssued"].as_i64(), s["numRedeemed"].as_i64()), (Some(1), Some(1)));

    // Every change left an audit record and an outbox event; the issue queued the series' SMS.
    let audit = app.audit(app.org.org_id, "COUPON").await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["REDEEM", "ISSUE"]);
    assert_eq!(app.audit(app.org.org_id, "COUPON_SERIES").await.len(), 1);
    assert_eq!(events_of(&app, "coupon.issued").await, 1);
    assert_eq!(events_of(&app, "coupon.redeemed").await, 1);
    assert_eq!(events_of(&app, "coupon_series.created").await, 1);
    let sms = count_where(
        &app,
        &format!(
            "SELECT COUNT(*) FROM messages WHERE org_id = {} AND body LIKE '%{code}%'",
            app.org.org_id
        ),
    )
    .await;
    assert_eq!(sms, 1);
}

async fn series_input_is_validated_and_updates_keep_counters(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let bad = [
        (json!({"discountType": "HALF"}), "discountType"),
        (json!({"discountValue": -1}), "discountValue"),
        (json!({"discountType": "PERC", "discountValue": 120}), "discountValue"),
        (json!({"validTillDate": "2001-01-01T00:00:00Z"}), "validTillDate"),
        (json!({"validTillDate": "next week"}), "validTillDate"),
        (json!({"maxCreate": -5}), "maxCreate"),
        (json!({"expiryStrategyType": "DAYS"}), "expiryStrategyValue"),
        (json!({"expiryStrategyType": "WEEKS"}), "expiryStrategyType"),
        (json!({"randomCodeLength": 2}), "randomCodeLength"),
        (json!({"couponPrefix": "has space"}), "couponPrefix"),
        (
            json!({"redemptionOrgEntityDetails": [{"redemptionOrgEntityType": "STORE", "orgEntityId": 999999}]}),
            "redemptionOrgEntityDetails",
        ),
        (json!({"mutualExclusiveSeriesIds": "[12345]"}), "mutualExclusiveSeriesIds"),
        (json!({"anyUser": "maybe"}), "anyUser"),
        (json!({"orgId": 999999}), "orgId"),
    ];
    for (overrides, field) in bad {
        let r =
            app.post_json("/v2/coupon/series", &app.basic(), &series_body(overrides.clone())).await;
        assert_eq!(r.status.as_u16(), 400, "{overrides}: {}", r.body);
        assert_eq!(r.v2_error_code(), 629, "{overrides}: {}", r.body);
        assert!(r.body.contains(field), "{field}: {}", r.body);
    }
    let mut missing = series_body(json!({}));
    missing["CouponSeriesV2"].as_object_mut().unwrap().remove("discountCode");
    let r = app.post_json("/v2/coupon/series", &app.basic(), &missing).await;
    assert_eq!(r.v2_error_code(), 629, "{}", r.body);
    let r = app.post_json("/v2/coupon/series", &app.basic(), &json!({"CouponSeriesV2": "x"})).await;
    assert_eq!(r.v2_error_code(), 629);
    let r = app.post_json("/v2/coupon/series", &app.basic(), &json!([1])).await;
    assert_eq!(r.v2_error_code(), 629);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_series").await, 0);

    let series = create_series(
        &app,
        json!({"maxCreate": 5, "customPropertyMap": {"standard_terms_and_conditions": "T&C"}}),
    )
    .await;
    add_customer(&app, "919900000002").await;
    issue(&app, series, "919900000002").await;
    // Update: the mandatory keys, plus what changes; counters and unsent keys stay.
    let mut update = series_body(json!({"description": "Twenty off", "discountValue": 20}));
    for key in ["validTillDate", "maxCreate", "customPropertyMap"] {
        update["CouponSeriesV2"].as_object_mut().unwrap().remove(key);
    }
    let r = app
        .put_json(&format!("/v2/coupon/series/{series}?format=json"), &app.basic(), &update)
        .await;
    r.assert_status(200);
    let entity = &r.json()["entity"];
    assert_eq!(entity["description"], "Twenty off");
    assert_eq!(entity["discountValue"], 20.0);
    assert_eq!(entity["maxCreate"], 5);
    assert_eq!(entity["numIssued"], 1);
    assert_eq!(entity["customPropertyMap"]["standard_terms_and_conditions"], "T&C");
    assert_eq!(entity["validTillDate"], "2035-06-30T23:59:59+05:30");
    let mut incomplete = update.clone();
    incomplete["CouponSeriesV2"].as_object_mut().unwrap().remove("seriesCode");
    let r = app.put_json(&format!("/v2/coupon/series/{series}"), &app.basic(), &incomplete).await;
    assert_eq!(r.v2_error_code(), 629, "{}", r.body);
    let r = app.put_json("/v2/coupon/series/999999", &app.basic(), &update).await;
    assert_eq!((r.status.as_u16(), r.v2_error_code()), (404, 707), "{}", r.body);
    let r = app.get("/v2/coupon/series?ids=999999", &app.basic()).await;
    assert_eq!(r.v2_error_code(), 707);
    let r = app.get(&format!("/v2/coupon/series?ids={series},999999"), &app.basic()).await;
    r.assert_status(200);
    assert_eq!(r.json()["entity"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["warnings"][0]["code"], 707);
    assert_eq!(app.audit(app.org.org_id, "COUPON_SERIES").await.len(), 2);
}

async fn refusals_get_their_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919900000003").await;
    add_customer(&app, "919900000004").await;
    let series = create_series(&app, json!({})).await;
    let code = issue(&app, series, "919900000003").await;

    // Unknown, malformed, other customer, unknown customer.
    assert_eq!(refused(&redeem(&app, "NOSUCHCODE", "919900000003").await), 719);
    assert_eq!(refused(&redeem(&app, "BAD CODE", "919900000003").await), 702);
    assert_eq!(refused(&redeem(&app, &code, "919900000004").await), 710);
    assert_eq!(refused(&redeem(&app, &code, "919900009999").await), 701);
    // Another org's code.
    let other = app.another_org("Other").await;
    let other_auth = basic_header(&other.till.username, &other.till.password);
    let r = app
        .post_json(
            "/v2/customers",
            &other_auth,
            &json!({"profiles": [{"firstName": "B",
        "identifiers": [{"type": "mobile", "value": "919900000005"}]}]}),
        )
        .await;
    r.assert_status(200);
    let other_series =
        app.post_json("/v2/coupon/series", &other_auth, &series_body(json!({}))).await;
    let other_series = other_series.json()["entity"]["id"].as_i64().unwrap();
    let other_code =
        issue_raw(&app, &other_auth, other_series, "919900000005").await.json()["code"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(refused(&redeem(&app, &other_code, "919900000003").await), 715);

    // Not yet valid.
    let later = create_series(&app, json!({"redemptionValidFrom": "2034-01-01T00:00:00Z"})).await;
    let later_code = issue(&app, later, "919900000003").await;
    assert_eq!(refused(&redeem(&app, &later_code, "919900000003").await), 706);

    // A coupon past its own expiry (713), a series past its end (712).
    let lapsing =
        create_series(&app, json!({"expiryStrategyType": "DAYS", "expiryStrategyValue": 3})).await;
    let lapsed = issue(&app, lapsing, "919900000003").await;
    app.exec_sql(&format!("UPDATE coupons SET expires_at = 1000 WHERE code = '{lapsed}'")).await;
    assert_eq!(refused(&redeem(&app, &lapsed, "919900000003").await), 713);
    let ending = create_series(&app, json!({})).await;
    let ended = issue(&app, ending, "919900000003").await;
    app.exec_sql(&format!("UPDATE coupon_series SET valid_till_at = 1000 WHERE id = {ending}"))
        .await;
    assert_eq!(refused(&redeem(&app, &ended, "919900000003").await), 712);
    let r = issue_raw(&app, &app.basic(), ending, "919900000003").await;
    assert_eq!(refused(&r), 712);

    // Revoked (660).
    let revoked = issue(&app, create_series(&app, json!({})).await, "919900000003").await;
    app.exec_sql(&format!("UPDATE coupons SET status = 'REVOKED' WHERE code = '{revoked}'")).await;
    assert_eq!(refused(&redeem(&app, &revoked, "919900000003").await), 660);

    // Redeemable at one till only (725 elsewhere).
    let (till, till_auth) = add_till(&app, "coupon.till").await;
    let at_till = create_series(
        &app,
        json!({"redemptionOrgEntityDetails":
        [{"redemptionOrgEntityType": "TILL", "orgEntityId": till}]}),
    )
    .await;
    let till_code = issue(&app, at_till, "919900000003").await;
    assert_eq!(refused(&redeem(&app, &till_code, "919900000003").await), 725);
    redeem_as(&app, &till_auth, &till_code, "919900000003").await.assert_status(200);

    // A bill amount window (709) and a missing customer identifier (629).
    let window = create_series(&app, json!({"minBillAmount": 1000})).await;
    let window_code = issue(&app, window, "919900000003").await;
    assert_eq!(refused(&redeem(&app, &window_code, "919900000003").await), 709);
    // A check without a bill leaves the bill amount window for the redemption.
    let check = app
        .get(
            &format!("/v2/coupon/is_redeemable?mobile=919900000003&code={window_code}"),
            &app.basic(),
        )
        .await;
    assert_eq!(check.json()["redemption"][0]["isRedeemable"], true, "{}", check.body);
    let body = json!({"redemptionRequestList": [{"code": window_code}], "user": {"mobile": "919900000003"},
        "billAmount": 1000});
    app.post_json("/v2/coupon/redeem", &app.basic(), &body).await.assert_status(200);
    let body = json!({"redemptionRequestList": [{"code": window_code}], "user": {}});
    assert_eq!(refused(&app.post_json("/v2/coupon/redeem", &app.basic(), &body).await), 629);

    // Issue refusals: unknown series (707), unknown customer (701).
    assert_eq!(refused(&issue_raw(&app, &app.basic(), 999999, "919900000003").await), 707);
    assert_eq!(refused(&issue_raw(&app, &app.basic(), series, "919900008888").await), 701);

    // Nothing but the two good redemptions was written.
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await, 2);
    assert_eq!(
        count_where(&app, "SELECT CAST(SUM(num_redeemed) AS BIGINT) FROM coupon_series").await,
        2
    );
}

async fn another_org_sees_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919900000006").await;
    let series = create_series(&app, json!({})).await;
    let code = issue(&app, series, "919900000006").await;
    let other = app.another_org("Other").await;
    let auth = basic_header(&other.till.username, &other.till.password);
    assert_eq!(
        app.get(&format!("/v2/coupon/series?ids={series}"), &auth).await.v2_error_code(),
        707
    );
    let r = app.get(&format!("/v2/coupon?couponCodes={code}"), &auth).await;
    r.assert_status(200);
    assert_eq!(r.json(), json!([]));
    let mut update = series_body(json!({}));
    update["CouponSeriesV2"]["description"] = json!("hijack");
    assert_eq!(
        app.put_json(&format!("/v2/coupon/series/{series}"), &auth, &update).await.v2_error_code(),
        707
    );
    // The other org's till cannot redeem it for our customer (not its customer: 701).
    assert_eq!(refused(&redeem_as(&app, &auth, &code, "919900000006").await), 701);
    assert_eq!(refused(&issue_raw(&app, &auth, series, "919900000006").await), 707);
    assert_eq!(series_json(&app, series).await["description"], "Ten off");
}

async fn codes_match_ignoring_case_and_show_in_the_asked_case(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919900000007").await;
    let series = create_series(&app, json!({"couponPrefix": "sum", "isPrefixEnabled": true,
        "couponSuffix": "X", "isSuffixEnabled": true, "randomCodeLength": 5, "codeAlphabet": "NUMERIC"})).await;
    let code = issue(&app, series, "919900000007").await;
    assert!(code.starts_with("SUM") && code.ends_with('X') && code.len() == 9, "{code}");
    assert!(code[3..8].chars().all(|c| c.is_ascii_digit()), "{code}");
    let stored: String = {
        let mut conn = app.state.db.read().await.unwrap();
        perks::dispatch!(&mut conn, |e| sqlx::query_scalar("SELECT code FROM coupons")
            .fetch_one(e)
            .await)
        .unwrap()
    };
    assert!(stored.starts_with("sum"), "kept as generated: {stored}");
    for (case, shown) in
        [("LOWER", code.to_lowercase()), ("UPPER", code.clone()), ("AS_IT_IS", stored.clone())]
    {
        let r = app
            .get(
                &format!("/v2/coupon?couponCodes={}&coupon_code_case={case}", code.to_lowercase()),
                &app.basic(),
            )
            .await;
        assert_eq!(r.json()[0]["code"], shown.as_str(), "{case}: {}", r.body);
    }
    let r = app
        .get(&format!("/v2/coupon?couponCodes={code}&coupon_code_case=TITLE"), &app.basic())
        .await;
    assert_eq!(r.v2_error_code(), 629);
    redeem(&app, &code.to_lowercase(), "919900000007").await.assert_status(200);
}

async fn issue_limits_and_the_existing_voucher(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919900000008").await;
    add_customer(&app, "919900000009").await;
    // One voucher per customer: a second issue returns the held code (with a warning).
    let single = create_series(&app, json!({})).await;
    let first = issue(&app, single, "919900000008").await;
    let r = issue_raw(&app, &app.basic(), single, "919900000008").await;
    r.assert_status(200);
    assert_eq!(r.json()["code"], first.as_str());
    assert_eq!(r.json()["warnings"][0]["code"], 722, "{}", r.body);
    // Once redeemed it cannot be handed back and no other is allowed.
    redeem(&app, &first, "919900000008").await.assert_status(200);
    assert_eq!(refused(&issue_raw(&app, &app.basic(), single, "919900000008").await), 722);

    // maxVouchersPerUser, maxCreate, minDaysBetweenVouchers.
    let capped = create_series(
        &app,
        json!({"isMultipleVouchersPerUserAllowed": true,
        "maxVouchersPerUser": 2, "maxCreate": 3}),
    )
    .await;
    issue(&app, capped, "919900000008").await;
    issue(&app, capped, "919900000008").await;
    assert_eq!(refused(&issue_raw(&app, &app.basic(), capped, "919900000008").await), 722);
    issue(&app, capped, "919900000009").await;
    let r = issue_raw(&app, &app.basic(), capped, "919900000009").await;
    assert_eq!(refused(&r), 722);
    assert!(r.body.contains("maximum"), "{}", r.body);
    assert_eq!(series_json(&app, capped).await["numIssued"], 3);
    let cooling = create_series(
        &app,
        json!({"isMultipleVouchersPerUserAllowed": true,
        "minDaysBetweenVouchers": 7}),
    )
    .await;
    issue(&app, cooling, "919900000009").await;
    assert_eq!(refused(&issue_raw(&app, &app.basic(), cooling, "919900000009").await), 722);

    // Multiple to one customer, and bulk across series with one failing.
    let many = create_series(&app, json!({"isMultipleVouchersPerUserAllowed": true})).await;
    let body = json!({"seriesId": many, "count": 3, "customer": {"mobile": "919900000009"}});
    let r = app.post_json("/v2/coupon/issue/multiple", &app.basic(), &body).await;
    r.assert_status(200);
    assert_eq!(r.json()["coupons"].as_array().unwrap().len(), 3);
    assert_eq!(r.json()["couponConfig"]["id"], many);
    let body = json!({"seriesId": many, "count": 501, "customer": {"mobile": "919900000009"}});
    assert_eq!(
        refused(&app.post_json("/v2/coupon/issue/multiple", &app.basic(), &body).await),
        629
    );
    let body = json!({"seriesIds": [many, capped, 999999], "customer": {"mobile": "919900000009"},
        "metadata": {"sourceType": "CAMPAIGN", "reason": "welcome"}});
    let r = app.post_json("/v2/coupon/bulk/issue", &app.basic(), &body).await;
    r.assert_status(200);
    let results = r.json()["response"].clone();
    assert_eq!(results[0]["entityId"], many);
    assert!(results[0]["result"]["code"].is_string(), "{}", r.body);
    assert_eq!(results[1]["errors"][0]["code"], 722);
    assert_eq!(results[2]["errors"][0]["code"], 707);
    let long = "x".repeat(51);
    let body = json!({"seriesIds": [many], "customer": {"mobile": "919900000009"}, "metadata": {"notes": long}});
    assert_eq!(refused(&app.post_json("/v2/coupon/bulk/issue", &app.basic(), &body).await), 629);
}

async fn bills_issue_coupons_through_earn_rules(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919900000010").await;
    let series = create_series(
        &app,
        json!({"maxCreate": 1, "isMultipleVouchersPerUserAllowed": true,
        "expiryStrategyType": "DAYS", "expiryStrategyValue": 30}),
    )
    .await;
    let program = json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
        "earn": [{"name": "base", "on": "transaction", "when": "true", "points": "bill.amount * 0.1"},
                 {"name": "big-bill", "on": "transaction", "when": "bill.amount >= 1000.0",
                  "coupon": {"seriesId": series}}]});
    crate::transactions::set_program(&app, &program).await;
    let bill = |number: &str, amount: f64| {
        json!({"type": "REGULAR", "billNumber": number, "billAmount": amount,
            "billingDate": "2026-01-10T10:00:00+05:30"})
    };
    let uri = "/v2/transactions?identifierName=mobile&identifierValue=919900000010&source=INSTORE&rawSideEffects=true";
    let r = app.post_json(uri, &app.basic(), &bill("SMALL-1", 100.0)).await;
    r.assert_status(200);
    assert!(!r.body.contains("\"coupon\""), "{}", r.body);
    let r = app.post_json(uri, &app.basic(), &bill("BIG-1", 1500.0)).await;
    r.assert_status(200);
    let effects = r.json()["sideEffects"].as_array().unwrap().clone();
    let coupon =
        effects.iter().find(|e| e["type"] == "coupon").unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(coupon["seriesId"], series);
    assert_eq!(coupon["discountType"], "ABS");
    assert_eq!(coupon["strategyIds"], json!(["big-bill"]));
    assert!(effects.iter().any(|e| e["type"] == "points"), "points still awarded: {}", r.body);
    let code = coupon["couponCode"].as_str().unwrap().to_string();
    let read = app.get(&format!("/v2/coupon?couponCodes={code}"), &app.basic()).await;
    assert_eq!(read.json()[0]["status"], "ACTIVE_UNREDEEMED", "{}", read.body);
    // maxCreate reached: the bill still goes through, without a coupon.
    let r = app.post_json(uri, &app.basic(), &bill("BIG-2", 2000.0)).await;
    r.assert_status(200);
    assert!(
        r.json()["sideEffects"].as_array().unwrap().iter().all(|e| e["type"] != "coupon"),
        "{}",
        r.body
    );
    assert_eq!(series_json(&app, series).await["numIssued"], 1);
    // The coupon is the customer's to redeem.
    redeem(&app, &code, "919900000010").await.assert_status(200);
    // A coupon on a line-item rule is refused when the program is saved.
    let bad = json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
        "earn": [{"name": "items", "on": "lineItem", "coupon": {"seriesId": series}}]});
    let list = app.get("/x/perks/v1/programs", &app.admin()).await.json();
    let id = list["data"][0]["id"].as_i64().unwrap();
    let r = app.put_json(&format!("/x/perks/v1/programs/{id}"), &app.admin(), &bad).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert!(r.body.contains("earn[0].coupon"), "{}", r.body);
}

async fn retries_with_an_idempotency_key_act_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919900000011").await;
    let series = create_series(&app, json!({"isMultipleVouchersPerUserAllowed": true})).await;
    let send = |uri: &'static str, key: &'static str, body: Value| {
        let app = &app;
        async move {
            app.send(
                crate::helpers::request(axum::http::Method::POST, uri)
                    .header("authorization", app.basic())
                    .header("content-type", "application/json")
                    .header("idempotency-key", key)
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
        }
    };
    let issue_body = json!({"seriesId": series, "customer": {"mobile": "919900000011"}});
    let first = send("/v2/coupon/issue", "issue-1", issue_body.clone()).await;
    let again = send("/v2/coupon/issue", "issue-1", issue_body).await;
    first.assert_status(200);
    assert_eq!(first.json()["code"], again.json()["code"]);
    assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(series_json(&app, series).await["numIssued"], 1);
    let code = first.json()["code"].as_str().unwrap().to_string();
    let body =
        json!({"redemptionRequestList": [{"code": code}], "user": {"mobile": "919900000011"}});
    let first = send("/v2/coupon/redeem", "redeem-1", body.clone()).await;
    let again = send("/v2/coupon/redeem", "redeem-1", body).await;
    first.assert_status(200);
    again.assert_status(200);
    assert_eq!(first.json()["redemptionId"], again.json()["redemptionId"]);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await, 1);
}

async fn openapi_lists_the_coupon_apis(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let r = app.get("/openapi.json", &app.basic()).await;
    r.assert_status(200);
    let paths = r.json()["paths"].as_object().unwrap().clone();
    for path in [
        "/v2/coupon/series",
        "/v2/coupon/series/{seriesId}",
        "/v2/coupon/issue",
        "/v2/coupon/bulk/issue",
        "/v2/coupon/issue/multiple",
        "/v2/coupon/redeem",
        "/v2/coupon/bulk/redeem",
        "/v2/coupon/is_redeemable",
        "/v2/coupon/reactivate",
        "/v2/coupon",
        "/v2/customers/coupons",
        "/v2/customers/{customerId}/coupons",
        "/v2/coupon/bulk/expiry",
        "/v2/coupon/revoke",
        "/v1.1/coupon/series",
        "/v1.1/coupon/get",
        "/v1.1/customer/coupons",
        "/v1.1/coupon/isredeemable",
        "/v1.1/coupon/redeem",
        "/v1.1/coupon/resend",
        "/coupon/api/v1/upload/file/{couponSeriesId}",
        "/coupon/api/v1/upload/redeemFile/{couponSeriesId}",
        "/coupon/api/v1/upload/getUploadStatus/{couponSeriesId}",
        "/coupon/api/v1/upload/getRedeemUploadStatus/{couponSeriesId}",
        "/coupon/api/v1/upload/errorFile/{jobId}",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }
    assert!(paths["/v2/coupon/redeem"].get("put").is_some(), "PUT /v2/coupon/redeem");
}
