//! A coupon's life after issue: bulk redemption (all or nothing, 629 above 50, check only),
//! reactivation (reverses one redemption, audited with it), revocation (unredeemed only, 660
//! after), expiry updates (never past the series end, reviving expired codes), bill data added to
//! redemptions, mutually exclusive series, and the expiry announcements.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::coupons::{count_where, create_series, issue, redeem, refused, series_json};
use crate::helpers::{Backend, TestApp};
use crate::transactions::add_customer;

backend_tests!(
    bulk_redemption_is_all_or_nothing,
    reactivation_reverses_one_redemption,
    revocation_takes_back_unredeemed_codes,
    expiry_updates_stay_within_the_series,
    bill_data_is_added_to_redemptions,
    lapsed_coupons_are_announced_once,
);

fn bulk(codes: &[String], mobile: &str) -> Value {
    let list: Vec<Value> = codes.iter().map(|c| json!({"code": c})).collect();
    json!({"redemptionRequestList": list, "user": {"mobile": mobile}, "transactionNumber": "B-1",
        "billAmount": "2000", "redemptionTime": "2026-05-12T19:18:30+05:30"})
}

async fn issue_many(app: &TestApp, series: i64, mobile: &str, count: i64) -> Vec<String> {
    let body = json!({"seriesId": series, "count": count, "customer": {"mobile": mobile}});
    let r = app.post_json("/v2/coupon/issue/multiple", &app.basic(), &body).await;
    r.assert_status(200);
    r.json()["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect()
}

async fn bulk_redemption_is_all_or_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919930000001").await;
    add_customer(&app, "919930000002").await;
    let series = create_series(
        &app,
        json!({"isMultipleVouchersPerUserAllowed": true, "isSMSDisabled": true}),
    )
    .await;
    let codes = issue_many(&app, series, "919930000001", 3).await;
    let not_theirs = issue(&app, series, "919930000002").await;

    // One code of another customer fails the whole request: nothing is redeemed.
    let mut mixed = codes.clone();
    mixed.push(not_theirs.clone());
    let r =
        app.post_json("/v2/coupon/bulk/redeem", &app.basic(), &bulk(&mixed, "919930000001")).await;
    assert_eq!(refused(&r), 710);
    assert!(r.body.contains(&not_theirs), "{}", r.body);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await, 0);
    // The same code twice is one redemption too many.
    let twice = vec![codes[0].clone(), codes[0].clone()];
    assert_eq!(
        refused(
            &app.post_json("/v2/coupon/bulk/redeem", &app.basic(), &bulk(&twice, "919930000001"))
                .await
        ),
        711
    );
    // Above 50 codes: 629.
    let many: Vec<String> = (0..51).map(|i| format!("CODE{i}")).collect();
    assert_eq!(
        refused(
            &app.post_json("/v2/coupon/bulk/redeem", &app.basic(), &bulk(&many, "919930000001"))
                .await
        ),
        629
    );
    // Check only.
    let r = app
        .post_json(
            "/v2/coupon/bulk/redeem?is_redeemable=true",
            &app.basic(),
            &bulk(&codes, "919930000001"),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["redemptionIds"], json!([]));
    assert_eq!(r.json()["code"].as_array().unwrap().len(), 3);
    assert_eq!(count_where(&app, "SELECT COUNT(*) FROM coupon_redemptions").await, 0);
    // All three at once.
    let r =
        app.post_json("/v2/coupon/bulk/redeem", &app.basic(), &bulk(&codes, "919930000001")).await;
    r.assert_status(200);
    assert_eq!(r.json()["redemptionIds"].as_array().unwrap().len(), 3, "{}", r.body);
    assert_eq!(series_json(&app, series).await["numRedeemed"], 3);
    let events = count_where(&app, "SELECT COUNT(*) FROM domain_events WHERE event_type = 'coupon.redeemed' AND payload LIKE '%\"bulk\":true%'").await;
    assert_eq!(events, 3);
    let bad_time = json!({"redemptionRequestList": [{"code": not_theirs}], "user": {"mobile": "919930000002"},
        "redemptionTime": "yesterday"});
    assert_eq!(
        refused(&app.post_json("/v2/coupon/bulk/redeem", &app.basic(), &bad_time).await),
        629
    );

    // Mutually exclusive series cannot be redeemed together.
    let a = create_series(&app, json!({"isSMSDisabled": true})).await;
    let b = create_series(
        &app,
        json!({"isSMSDisabled": true, "mutualExclusiveSeriesIds": format!("[{a}]")}),
    )
    .await;
    let pair = vec![issue(&app, a, "919930000002").await, issue(&app, b, "919930000002").await];
    let r =
        app.post_json("/v2/coupon/bulk/redeem", &app.basic(), &bulk(&pair, "919930000002")).await;
    assert_eq!(refused(&r), 709, "{}", r.body);
    app.post_json("/v2/coupon/bulk/redeem", &app.basic(), &bulk(&pair[..1], "919930000002"))
        .await
        .assert_status(200);
}

async fn reactivation_reverses_one_redemption(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919930000003").await;
    let series = create_series(&app, json!({"isSMSDisabled": true, "maxRedeem": 1})).await;
    let code = issue(&app, series, "919930000003").await;
    // Nothing to reverse yet.
    let body = json!({"code": code, "customer": {"mobile": "919930000003"}});
    assert_eq!(refused(&app.post_json("/v2/coupon/reactivate", &app.basic(), &body).await), 661);
    let first = redeem(&app, &code, "919930000003").await.json()["redemptionId"].as_i64().unwrap();
    assert_eq!(refused(&redeem(&app, &code, "919930000003").await), 711);
    // A redemption id that is not this coupon's: 510.
    let wrong = json!({"code": code, "redemptionId": first + 1000});
    assert_eq!(refused(&app.post_json("/v2/coupon/reactivate", &app.basic(), &wrong).await), 510);
    let r = app.post_json("/v2/coupon/reactivate", &app.basic(), &body).await;
    r.assert_status(200);
    assert_eq!(r.json()["reactivatedRedemptionId"], first);
    assert_eq!(r.json()["isRedeemable"], true, "{}", r.body);
    assert_eq!(series_json(&app, series).await["numRedeemed"], 0);
    // The same redemption cannot be reversed twice.
    let again = json!({"code": code, "redemptionId": first});
    assert_eq!(refused(&app.post_json("/v2/coupon/reactivate", &app.basic(), &again).await), 510);
    // Redeemable again (maxRedeem 1 counts live redemptions only).
    let second = redeem(&app, &code, "919930000003").await;
    second.assert_status(200);
    let read = app.get(&format!("/v2/coupon?couponCodes={code}"), &app.basic()).await;
    let redemptions = read.json()[0]["redemptions"].clone();
    assert_eq!(redemptions[0]["reversed"], true);
    assert_eq!(redemptions[1]["reversed"], false);
    // Both the redemption and its reversal are in the audit log, and in the outbox.
    let actions: Vec<String> =
        app.audit(app.org.org_id, "COUPON").await.iter().map(|a| a.action.clone()).collect();
    assert_eq!(actions, ["REDEEM", "REACTIVATE", "REDEEM", "ISSUE"]);
    let r = app
        .get(
            &format!("/v2/auditLog/get?entityType=COUPON&entityId={}", read.json()[0]["id"]),
            &app.basic(),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["pagination"]["total"], 4, "{}", r.body);
    assert_eq!(
        count_where(
            &app,
            "SELECT COUNT(*) FROM domain_events WHERE event_type = 'coupon.reactivated'"
        )
        .await,
        1
    );
    let _ = customer;
}

async fn revocation_takes_back_unredeemed_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919930000004").await;
    add_customer(&app, "919930000005").await;
    let series = create_series(
        &app,
        json!({"isMultipleVouchersPerUserAllowed": true, "isSMSDisabled": true}),
    )
    .await;
    let codes = issue_many(&app, series, "919930000004", 4).await;
    redeem(&app, &codes[0], "919930000004").await.assert_status(200);
    let body = json!({"couponSeriesId": series, "couponCodes": [codes[0], codes[1], "NOPE"], "couponCodeCase": "LOWER"});
    let r = app.post_json("/v2/coupon/revoke", &app.basic(), &body).await;
    r.assert_status(200);
    let out = r.json();
    assert_eq!(
        (out["totalCount"].as_i64(), out["failedCount"].as_i64()),
        (Some(3), Some(2)),
        "{}",
        r.body
    );
    assert_eq!(out["revokedCoupons"][0]["couponCode"], codes[1].to_lowercase());
    let failed: Vec<i64> = out["failedCoupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["errorCode"].as_i64().unwrap())
        .collect();
    assert!(failed.contains(&711) && failed.contains(&719), "{failed:?}");
    assert_eq!(refused(&redeem(&app, &codes[1], "919930000004").await), 660);
    // A revoked code stays revoked (660 again), and a customer may be issued another.
    let r =
        app.post_json("/v2/coupon/revoke", &app.basic(), &json!({"couponCodes": [codes[1]]})).await;
    assert_eq!(r.json()["failedCoupons"][0]["errorCode"], 660, "{}", r.body);
    // By customer: their unredeemed coupons of the series.
    let body = json!({"couponSeriesId": series, "customer": {"mobile": "919930000004"}});
    let r = app.post_json("/v2/coupon/revoke", &app.basic(), &body).await;
    r.assert_status(200);
    assert_eq!(r.json()["revokedCoupons"].as_array().unwrap().len(), 2, "{}", r.body);
    // Several codes need the series; more than 50 are refused.
    let body = json!({"couponCodes": [codes[2], codes[3]]});
    assert_eq!(refused(&app.post_json("/v2/coupon/revoke", &app.basic(), &body).await), 629);
    let many: Vec<String> = (0..51).map(|i| format!("C{i}")).collect();
    let body = json!({"couponSeriesId": series, "couponCodes": many});
    assert_eq!(refused(&app.post_json("/v2/coupon/revoke", &app.basic(), &body).await), 629);
    // Someone else's code named with a customer is not revoked.
    let other = issue(&app, series, "919930000005").await;
    let body = json!({"couponSeriesId": series, "customer": {"mobile": "919930000004"}, "couponCodes": [other]});
    let r = app.post_json("/v2/coupon/revoke", &app.basic(), &body).await;
    assert_eq!(r.json()["failedCoupons"][0]["errorCode"], 703, "{}", r.body);
    redeem(&app, &other, "919930000005").await.assert_status(200);
    assert_eq!(
        count_where(&app, "SELECT COUNT(*) FROM domain_events WHERE event_type = 'coupon.revoked'")
            .await,
        3
    );
    // The v2 reads show a revoked code only without a status filter.
    let r = app.get("/v2/customers/coupons?mobile=919930000004", &app.basic()).await;
    let statuses: Vec<Value> = r.json()["customers"][0]["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].clone())
        .collect();
    assert_eq!(statuses.iter().filter(|s| *s == "REVOKED").count(), 3, "{statuses:?}");
    let r =
        app.get("/v2/customers/coupons?mobile=919930000004&status=UNREDEEMED", &app.basic()).await;
    assert_eq!(r.json()["total"], 0);
}

async fn expiry_updates_stay_within_the_series(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919930000006").await;
    add_customer(&app, "919930000007").await;
    let series = create_series(
        &app,
        json!({"isMultipleVouchersPerUserAllowed": true,
        "expiryStrategyType": "DAYS", "expiryStrategyValue": 10, "isSMSDisabled": true}),
    )
    .await;
    let codes = issue_many(&app, series, "919930000006", 2).await;
    let other_series = create_series(&app, json!({"isSMSDisabled": true})).await;
    let elsewhere = issue(&app, other_series, "919930000006").await;
    // Expire one, then revive it with a later date; a date past the series end is refused.
    app.exec_sql(&format!("UPDATE coupons SET expires_at = 1000 WHERE code = '{}'", codes[0]))
        .await;
    assert_eq!(refused(&redeem(&app, &codes[0], "919930000006").await), 713);
    let body = json!({"couponSeriesId": series, "couponCodes": [
        {"couponCode": codes[0].to_lowercase(), "expiryDate": "2034-12-31T23:59:59Z"},
        {"couponCode": codes[1], "expiryDate": "2036-01-01T00:00:00Z"},
        {"couponCode": elsewhere, "expiryDate": "2034-01-01T00:00:00Z"},
        {"couponCode": "NOPE", "expiryDate": 2000000000000_i64},
        {"couponCode": codes[1], "expiryDate": "soon"},
    ]});
    let r = app.put_json("/v2/coupon/bulk/expiry", &app.basic(), &body).await;
    r.assert_status(200);
    let out = r.json()["couponCodes"].clone();
    assert_eq!(out[0]["status"]["code"], 700, "{}", r.body);
    assert_eq!(out[0]["expiryDate"], "2034-12-31T23:59:59Z");
    assert_eq!(out[1]["status"]["code"], 629, "past the series end");
    assert_eq!(out[2]["status"]["code"], 629, "another series");
    assert_eq!(out[3]["status"]["code"], 719);
    assert_eq!(out[4]["status"]["code"], 629);
    redeem(&app, &codes[0], "919930000006").await.assert_status(200);
    let read = app.get(&format!("/v2/coupon?couponCodes={}", codes[0]), &app.basic()).await;
    assert_eq!(read.json()[0]["validTill"], "2034-12-31T23:59:59Z");
    // Above 100 codes: 629; an unknown series: 707.
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"couponCode": format!("C{i}"), "expiryDate": "2030-01-01"}))
        .collect();
    let body = json!({"couponSeriesId": series, "couponCodes": many});
    assert_eq!(refused(&app.put_json("/v2/coupon/bulk/expiry", &app.basic(), &body).await), 629);
    let body = json!({"couponSeriesId": 999999, "couponCodes": [{"couponCode": codes[1], "expiryDate": "2030-01-01"}]});
    assert_eq!(refused(&app.put_json("/v2/coupon/bulk/expiry", &app.basic(), &body).await), 707);
    // A generic series needs the customer.
    let generic = create_series(&app, json!({"anyUser": true, "isSMSDisabled": true})).await;
    let generic_code = issue(&app, generic, "919930000007").await;
    let body = json!({"couponSeriesId": generic, "couponCodes": [{"couponCode": generic_code, "expiryDate": "2030-01-01"}]});
    assert_eq!(refused(&app.put_json("/v2/coupon/bulk/expiry", &app.basic(), &body).await), 629);
    let body = json!({"couponSeriesId": generic, "customer": {"mobile": "919930000007"},
        "couponCodes": [{"couponCode": generic_code, "expiryDate": "2030-01-01"}]});
    let r = app.put_json("/v2/coupon/bulk/expiry", &app.basic(), &body).await;
    assert_eq!(r.json()["couponCodes"][0]["status"]["code"], 700, "{}", r.body);
    // A generic code is redeemable by anyone.
    redeem(&app, &generic_code, "919930000006").await.assert_status(200);
}

async fn bill_data_is_added_to_redemptions(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919930000008").await;
    let other = add_customer(&app, "919930000009").await;
    let series = create_series(&app, json!({"isSMSDisabled": true})).await;
    let code = issue(&app, series, "919930000008").await;
    let body =
        json!({"redemptionRequestList": [{"code": code}], "user": {"mobile": "919930000008"}});
    let id = app.post_json("/v2/coupon/redeem", &app.basic(), &body).await.json()["redemptionId"]
        .as_i64()
        .unwrap();
    let body = json!({"user": {"mobile": "919930000008"}, "redemptions": [
        {"redemptionId": id, "billAmount": 750.5, "transactionNumber": "LATE-1", "billId": "B9",
         "customFields": [{"name": "source", "value": "catalog"}]},
        {"redemptionId": id + 999, "billAmount": 1},
        {"billAmount": 1},
        {"redemptionId": id, "billAmount": -4},
    ]});
    let r = app.put_json("/v2/coupon/redeem", &app.basic(), &body).await;
    r.assert_status(200);
    let out = r.json()["redemptions"].clone();
    assert_eq!(out[0]["status"]["code"], 700, "{}", r.body);
    assert_eq!(out[1]["status"]["code"], 510);
    assert_eq!(out[2]["status"]["code"], 661);
    assert_eq!(out[3]["status"]["code"], 629);
    let read = app.get(&format!("/v2/coupon?couponCodes={code}"), &app.basic()).await;
    let redemption = read.json()[0]["redemptions"][0].clone();
    assert_eq!(redemption["billAmount"], 750.5);
    assert_eq!(redemption["transactionNumber"], "LATE-1");
    assert_eq!(redemption["customFields"]["source"], "catalog");
    // The Neo read of the redemption's custom fields: only for its own customer.
    let neo = |r: i64, c: i64| {
        format!("/x/neo/couponRedemption/customFields?redemption_id={r}&customer_id={c}")
    };
    let fields = app.get(&neo(id, customer), &app.basic()).await;
    fields.assert_status(200);
    assert_eq!(fields.json()["data"][0]["name"], "source", "{}", fields.body);
    assert_eq!(fields.json()["data"][0]["value"], "catalog");
    assert_eq!(fields.json()["count"], 1);
    assert_eq!(app.get(&neo(id, other), &app.basic()).await.json()["data"], json!([]));
    assert_eq!(app.get(&neo(id + 999, customer), &app.basic()).await.json()["data"], json!([]));
    let missing =
        app.get("/x/neo/couponRedemption/customFields?redemption_id=1", &app.basic()).await;
    missing.assert_status(400);
    // Another customer's redemption is not theirs to change.
    let body = json!({"user": {"mobile": "919930000009"}, "redemptions": [{"redemptionId": id, "billAmount": 1}]});
    let r = app.put_json("/v2/coupon/redeem", &app.basic(), &body).await;
    assert_eq!(r.json()["redemptions"][0]["status"]["code"], 510);
    assert_eq!(
        refused(
            &app.put_json("/v2/coupon/redeem", &app.basic(), &json!({"redemptions": []})).await
        ),
        661
    );
    assert_eq!(app.audit(app.org.org_id, "COUPON_REDEMPTION").await.len(), 1);
}

async fn lapsed_coupons_are_announced_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919930000010").await;
    let series = create_series(
        &app,
        json!({"isMultipleVouchersPerUserAllowed": true,
        "expiryStrategyType": "DAYS", "expiryStrategyValue": 1, "isSMSDisabled": true}),
    )
    .await;
    let codes = issue_many(&app, series, "919930000010", 3).await;
    let ending = create_series(
        &app,
        json!({"isMultipleVouchersPerUserAllowed": true, "isSMSDisabled": true}),
    )
    .await;
    issue_many(&app, ending, "919930000010", 2).await;
    app.exec_sql(&format!("UPDATE coupons SET expires_at = 1000 WHERE code = '{}'", codes[0]))
        .await;
    app.exec_sql(&format!("UPDATE coupon_series SET valid_till_at = 2000 WHERE id = {ending}"))
        .await;
    let now = perks::db::now_millis();
    let announced =
        perks::coupons::service::announce_expired(&app.state.db, now, 100).await.unwrap();
    assert_eq!(announced, 3);
    assert_eq!(
        perks::coupons::service::announce_expired(&app.state.db, now, 100).await.unwrap(),
        0
    );
    assert_eq!(
        count_where(&app, "SELECT COUNT(*) FROM domain_events WHERE event_type = 'coupon.expired'")
            .await,
        3
    );
    // Reviving a coupon lets it lapse (and be announced) again.
    let body = json!({"couponSeriesId": series, "couponCodes": [{"couponCode": codes[0], "expiryDate": "2030-01-01"}]});
    app.put_json("/v2/coupon/bulk/expiry", &app.basic(), &body).await.assert_status(200);
    app.exec_sql(&format!("UPDATE coupons SET expires_at = 1000 WHERE code = '{}'", codes[0]))
        .await;
    assert_eq!(
        perks::coupons::service::announce_expired(&app.state.db, now, 100).await.unwrap(),
        1
    );
}
