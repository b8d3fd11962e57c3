//! Points operations: partial reversals, redemption updates, lifetime thresholds, expiry and
//! conversion schedules, converting promised points, deductions, expiry changes, manual
//! allocations (revoked by returns), goodwill requests, explode info, the v2.1 and /x/neo reads,
//! the user group stubs, and org isolation — bad input gets its code and writes nothing.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse};
use crate::transactions::{add_customer, set_program};

backend_tests!(
    partial_reversals_add_up_to_the_redemption_then_814,
    a_reversal_reports_the_share_of_expired_lots,
    update_redemption_changes_metadata_only,
    lifetime_thresholds_refuse_with_805_and_806,
    expiry_schedule_groups_points_by_day,
    conversion_schedule_and_converting_promised_points,
    deductions_take_soonest_expiring_points_and_never_overdraw,
    expiry_changes_move_one_award,
    manual_allocation_is_revoked_when_the_bill_is_returned,
    promised_manual_allocation_converts_on_its_event,
    goodwill_requests_are_pending_and_listed,
    explode_info_shows_the_lots_each_event_moved,
    explode_info_breaks_bills_and_returns_down_by_line_item,
    neo_allocation_reads,
    group_variants_answer_not_yet_supported,
    another_orgs_customer_is_not_found_by_any_operation,
);

pub fn program() -> Value {
    json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
        "earn": [{"name": "base", "on": "transaction", "when": "true", "points": "bill.amount * 0.1"}],
        "expiry": {"type": "rolling", "days": 365},
        "redemption": {"pointValue": 0.25, "validationCode": "never"}})
}

/// Posts a sale earning `amount / 10` points; its bill id.
pub async fn earn(app: &TestApp, mobile: &str, number: &str, amount: f64) -> i64 {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    let body = json!({"type": "REGULAR", "billNumber": number, "billAmount": amount,
        "billingDate": "2026-01-10T10:00:00+05:30"});
    let r = app.post_json(&uri, &app.basic(), &body).await;
    r.assert_status(200);
    r.json()["createdId"].as_i64().unwrap_or_else(|| panic!("{}", r.body))
}

pub async fn balance(app: &TestApp, customer: i64) -> f64 {
    let r = app.get(&format!("/v2/customers/{customer}/points/balance"), &app.basic()).await;
    r.assert_status(200);
    r.json()["mainPoints"].as_f64().unwrap()
}

async fn redeem(app: &TestApp, customer: i64, points: i64) -> i64 {
    let r = app
        .post_json(
            &format!("/v2/customers/{customer}/redemptions"),
            &app.basic(),
            &json!({"points": points}),
        )
        .await;
    r.assert_status(200);
    r.json()["redemptionId"].as_i64().unwrap_or_else(|| panic!("{}", r.body))
}

async fn reverse(app: &TestApp, id: i64, points: Option<Value>) -> TestResponse {
    let mut body = json!({"redemptionId": id.to_string()});
    if let Some(p) = points {
        body["pointsToBeReversed"] = p;
    }
    app.post_json("/v2/points/reverse", &app.basic(), &body).await
}

/// (lot id, remaining points, expires_at) of the customer's lots, by id.
async fn lots(app: &TestApp, customer: i64) -> Vec<(i64, i64, Option<i64>)> {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_as::<_, (i64, i64, Option<i64>)>(
        "SELECT id, remaining, expires_at FROM point_lots WHERE customer_id = $1 ORDER BY id"
    )
    .bind(customer)
    .fetch_all(e)
    .await)
    .unwrap()
}

pub async fn count(app: &TestApp, table: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM {table}");
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(&sql).fetch_one(e).await).unwrap()
}

/// Row counts of every table a points write touches.
pub async fn writes(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "ledger_entries",
        "ledger_lot_movements",
        "point_lots",
        "points_redemption_reversals",
        "points_transfers",
        "points_adjustments",
        "points_manual_allocations",
        "goodwill_requests",
        "domain_events",
        "audit_log",
    ] {
        counts.push(count(app, table).await);
    }
    counts
}

pub async fn verify_clean(app: &TestApp) {
    let mut conn = app.state.db.read().await.unwrap();
    let found = perks::points::ledger::verify(&mut conn, None, 10).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
}

fn points_of(value: i64) -> i64 {
    value * 10_000
}

async fn partial_reversals_add_up_to_the_redemption_then_814(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200001").await;
    let m = "919845200001";
    earn(&app, m, "A", 2000.0).await; // 200, made to expire sooner below
    earn(&app, m, "B", 3000.0).await; // 300
    app.exec_sql("UPDATE point_lots SET expires_at = expires_at - 2592000000 WHERE transaction_id IN (SELECT id FROM transactions WHERE bill_number = 'A')").await;
    let id = redeem(&app, customer, 300).await; // 200 from A, 100 from B
    let before = lots(&app, customer).await;
    assert_eq!(before.iter().map(|l| l.1).collect::<Vec<_>>(), vec![0, points_of(200)]);

    // The last lot drawn from (B, expiring latest) gets its points back first.
    let r = reverse(&app, id, Some(json!(100))).await;
    r.assert_status(200);
    let body = r.json();
    assert_eq!(body["pointsReversed"], 100.0, "{}", r.body);
    assert_eq!(body["pointsLeftToReverse"], 200.0);
    assert_eq!(
        lots(&app, customer).await.iter().map(|l| l.1).collect::<Vec<_>>(),
        vec![0, points_of(300)]
    );
    assert_eq!(balance(&app, customer).await, 300.0);

    // More than is left: 810 (Capillary's "mismatch in points for revert"); negative, zero or
    // fractional points: 801; nothing written either way.
    let untouched = writes(&app).await;
    let r = reverse(&app, id, Some(json!(250))).await;
    r.assert_status(400);
    assert_eq!(r.v2_error_code(), 810, "{}", r.body);
    for bad in [json!(-5), json!(10.5), json!(0), json!("x")] {
        let r = reverse(&app, id, Some(bad.clone())).await;
        assert_eq!(r.v2_error_code(), 801, "{bad}: {}", r.body);
    }
    assert_eq!(writes(&app).await, untouched);

    let r = reverse(&app, id, Some(json!("150"))).await;
    r.assert_status(200);
    assert_eq!(r.json()["pointsLeftToReverse"], 50.0);
    // Without pointsToBeReversed: all that is left.
    let r = reverse(&app, id, None).await;
    r.assert_status(200);
    assert_eq!(r.json()["pointsReversed"], 50.0, "{}", r.body);
    assert_eq!(r.json()["pointsLeftToReverse"], 0.0);
    assert_eq!(
        lots(&app, customer).await.iter().map(|l| l.1).collect::<Vec<_>>(),
        vec![points_of(200), points_of(300)]
    );
    assert_eq!(balance(&app, customer).await, 500.0);
    let again = reverse(&app, id, Some(json!(1))).await;
    again.assert_status(400);
    assert_eq!(again.v2_error_code(), 812);
    assert_eq!(count(&app, "points_redemption_reversals").await, 3);
    let audit = app.audit(app.org.org_id, "POINTS_REDEMPTION").await;
    assert_eq!(audit.iter().filter(|a| a.action == "REVERSE").count(), 3);
    verify_clean(&app).await;
}

async fn a_reversal_reports_the_share_of_expired_lots(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200002").await;
    let m = "919845200002";
    earn(&app, m, "A", 2000.0).await;
    earn(&app, m, "B", 3000.0).await;
    app.exec_sql("UPDATE point_lots SET expires_at = expires_at - 2592000000 WHERE transaction_id IN (SELECT id FROM transactions WHERE bill_number = 'A')").await;
    let id = redeem(&app, customer, 300).await;
    // Lot A (all of it redeemed) has expired since.
    app.exec_sql("UPDATE point_lots SET expires_at = 1000 WHERE transaction_id IN (SELECT id FROM transactions WHERE bill_number = 'A')").await;
    let r = reverse(&app, id, Some(json!(250))).await;
    r.assert_status(200);
    let body = r.json();
    assert_eq!(body["pointsReversed"], 100.0, "{}", r.body);
    assert_eq!(body["pointsExpired"], 150.0);
    assert_eq!(body["pointsLeftToReverse"], 50.0);
    let r = reverse(&app, id, None).await;
    r.assert_status(200);
    assert_eq!(r.json()["pointsReversed"], 0.0);
    assert_eq!(r.json()["pointsExpired"], 50.0);
    assert_eq!(reverse(&app, id, None).await.v2_error_code(), 812);
    assert_eq!(balance(&app, customer).await, 300.0);
    verify_clean(&app).await;
}

async fn update_redemption_changes_metadata_only(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200003").await;
    let other = add_customer(&app, "919845200004").await;
    earn(&app, "919845200003", "A", 2000.0).await;
    let id = redeem(&app, customer, 50).await;
    let body = json!({"redemptionId": id.to_string(), "billNumber": "POS-77", "billId": 12345,
        "purpose": "gift", "entity": {"type": "CUSTOMER", "identifierType": "mobile", "identifierValue": "919845200003"},
        "customFields": {"channel": "app", "counter": 3}});
    let r = app.put_json("/v2/points/updateRedemption", &app.basic(), &body).await;
    r.assert_status(200);
    let got = r.json();
    assert_eq!(got["billNumber"], "POS-77", "{}", r.body);
    assert_eq!(got["billId"], 12345);
    assert_eq!(got["purpose"], "gift");
    assert_eq!(got["customFields"]["counter"], 3);
    assert_eq!(got["points"], 50.0);
    // A null custom field removes it; the others stay.
    let r = app
        .put_json(
            "/v2/points/updateRedemption",
            &app.basic(),
            &json!({"redemptionId": id, "customFields": {"channel": null}}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["customFields"], json!({"counter": 3}));
    assert_eq!(r.json()["billNumber"], "POS-77");
    assert_eq!(balance(&app, customer).await, 150.0);
    let untouched = writes(&app).await;
    let bad = [
        (json!({"billNumber": "x"}), 400),
        (json!({"redemptionId": id, "billId": -4}), 400),
        (json!({"redemptionId": id, "billId": 1.5}), 400),
        (json!({"redemptionId": id, "purpose": "p".repeat(256)}), 400),
        (json!({"redemptionId": 999_999}), 814),
        (
            json!({"redemptionId": id, "entity": {"type": "CUSTOMER", "identifierType": "id", "identifierValue": other.to_string()}}),
            814,
        ),
        (
            json!({"redemptionId": id, "entity": {"type": "USERGROUP2", "identifierType": "id", "identifierValue": "1"}}),
            93026,
        ),
        (json!({"redemptionId": id, "customFields": {"nested": {"a": 1}}}), 400),
    ];
    for (body, code) in bad {
        let r = app.put_json("/v2/points/updateRedemption", &app.basic(), &body).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    assert_eq!(writes(&app).await, untouched);
    let audit = app.audit(app.org.org_id, "POINTS_REDEMPTION").await;
    assert_eq!(audit.iter().filter(|a| a.action == "UPDATE").count(), 2);
}

async fn lifetime_thresholds_refuse_with_805_and_806(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let mut doc = program();
    doc["redemption"]["minLifetimePoints"] = json!(1000);
    set_program(&app, &doc).await;
    let customer = add_customer(&app, "919845200005").await;
    earn(&app, "919845200005", "A", 5000.0).await; // 500 lifetime points
    let uri = format!("/v2/customers/{customer}/redemptions");
    let r = app.post_json(&uri, &app.basic(), &json!({"points": 100})).await;
    assert_eq!(r.v2_error_code(), 805, "{}", r.body);
    let r = app.get("/v1.1/points/isredeemable?mobile=919845200005&points=100", &app.basic()).await;
    assert_eq!(
        r.json()["response"]["points"]["redeemable"]["item_status"]["code"],
        805,
        "{}",
        r.body
    );
    earn(&app, "919845200005", "B", 6000.0).await; // 1100 lifetime points
    app.post_json(&uri, &app.basic(), &json!({"points": 100})).await.assert_status(200);

    let mut doc = program();
    doc["redemption"]["minLifetimePurchases"] = json!(20000);
    set_program(&app, &doc).await;
    let r = app.post_json(&uri, &app.basic(), &json!({"points": 100})).await;
    assert_eq!(r.v2_error_code(), 806, "{}", r.body);
    let mut doc = program();
    doc["redemption"]["minLifetimePurchases"] = json!(-1);
    let list = app.get("/x/perks/v1/programs", &app.admin()).await;
    let id = list.json()["data"][0]["id"].as_i64().unwrap();
    let r = app.put_json(&format!("/x/perks/v1/programs/{id}"), &app.admin(), &doc).await;
    r.assert_status(400);
    assert!(r.body.contains("minLifetimePurchases"), "{}", r.body);
}

fn local_day(days_from_today: i64) -> String {
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata).date_naive();
    (today + chrono::Days::new(days_from_today as u64)).format("%Y-%m-%d").to_string()
}

async fn expiry_schedule_groups_points_by_day(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200006").await;
    let m = "919845200006";
    earn(&app, m, "A", 2000.0).await;
    earn(&app, m, "B", 3000.0).await;
    earn(&app, m, "C", 1000.0).await;
    // Bill C's lot expires thirty days sooner.
    app.exec_sql("UPDATE point_lots SET expires_at = expires_at - 2592000000 WHERE transaction_id IN (SELECT id FROM transactions WHERE bill_number = 'C')").await;
    redeem(&app, customer, 50).await; // from C's lot, the soonest
    let r = app.get(&format!("/v2/customers/{customer}/pointsExpirySchedule"), &app.basic()).await;
    r.assert_status(200);
    let body = r.json();
    assert_eq!(body["id"], customer, "{}", r.body);
    assert!(body["profiles"].as_array().is_some_and(|p| !p.is_empty()));
    let schedules = body["expirySchedules"].as_array().unwrap().clone();
    assert_eq!(schedules.len(), 2, "{}", r.body);
    assert_eq!(schedules[0]["points"], 50.0);
    assert_eq!(schedules[0]["expiryDate"], local_day(335));
    assert_eq!(schedules[1]["points"], 500.0);
    assert_eq!(schedules[1]["expiryDate"], local_day(365));
    assert_eq!(schedules[1]["pointsType"], "bill_regular");
    assert_eq!(schedules[1]["expiryType"], "rolling");
    // The ISO instant is the last moment of that day in the org's zone (Asia/Kolkata).
    assert_eq!(schedules[1]["expiryDateISO"], format!("{}T23:59:59+05:30", local_day(365)));
    let light = |query: &str| {
        format!(
            "/v2/customers/lookup/pointsExpirySchedule?source=INSTORE&identifierName=mobile&identifierValue={m}{query}"
        )
    };
    let r = app.get(&light("&fetchEarliestExpiryOnly=true"), &app.basic()).await;
    r.assert_status(200);
    assert_eq!(r.json()["expirySchedules"].as_array().unwrap().len(), 1, "{}", r.body);
    let r = app.get(&light(&format!("&startDate={}", local_day(340))), &app.basic()).await;
    r.assert_status(200);
    assert_eq!(r.json()["expirySchedules"][0]["points"], 500.0, "{}", r.body);
    let r = app.get(&light(&format!("&endDate={}", local_day(340))), &app.basic()).await;
    assert_eq!(r.json()["expirySchedules"].as_array().unwrap().len(), 1, "{}", r.body);
    let r = app.get(&light("&fetchDataForAllPrograms=true"), &app.basic()).await;
    assert_eq!(r.json()["expirySchedules"].as_array().unwrap().len(), 2, "{}", r.body);
    for (query, code) in [
        (format!("&startDate={}", local_day(0)), 400),
        ("&startDate=2026-13-01".to_string(), 400),
        (format!("&startDate={}&endDate={}", local_day(10), local_day(5)), 400),
        ("&programId=999999".to_string(), 1101),
    ] {
        let r = app.get(&light(&query), &app.basic()).await;
        assert_eq!(r.v2_error_code(), code, "{query}: {}", r.body);
    }
    let r = app
        .get("/v2/customers/lookup/pointsExpirySchedule?source=INSTORE&identifierName=mobile&identifierValue=919800000000", &app.basic())
        .await;
    assert_eq!(r.v2_error_code(), 8015);
}

async fn conversion_schedule_and_converting_promised_points(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let mut doc = program();
    doc["promised"] = json!({"delayDays": 30});
    set_program(&app, &doc).await;
    let customer = add_customer(&app, "919845200007").await;
    let m = "919845200007";
    earn(&app, m, "P-1", 2000.0).await; // 200 promised
    earn(&app, m, "P-2", 1000.0).await; // 100 promised
    let r =
        app.get(&format!("/v2/customers/{customer}/promisedPointsSchedule"), &app.basic()).await;
    r.assert_status(200);
    let body = r.json();
    assert_eq!(body["entityId"], customer);
    let list = body["promisedPointsScheduleList"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{}", r.body);
    assert_eq!(list[0]["points"], 300.0);
    assert_eq!(list[0]["redeemableFrom"], local_day(30));
    assert_eq!(list[0]["pointsType"], "bill_regular");
    assert_eq!(body["triggerBasedPointsList"], json!([]));
    let lookup = app
        .get(&format!("/v2/customers/lookup/promisedPointsSchedule?source=INSTORE&identifierName=mobile&identifierValue={m}"), &app.basic())
        .await;
    assert_eq!(lookup.json()["promisedPointsScheduleList"], body["promisedPointsScheduleList"]);

    let uri = format!(
        "/v2/points/unlockPromisedPoints?identifierName=mobile&identifierValue={m}&source=INSTORE"
    );
    let untouched = writes(&app).await;
    for (body, code) in [
        (json!({"eventName": "Nope", "billNumber": "P-1"}), 400),
        (json!({"eventName": "TransactionAdd"}), 400),
        (json!({"eventName": "TransactionAdd", "billNumber": "NO-SUCH"}), 668),
    ] {
        let r = app.post_json(&uri, &app.basic(), &body).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    let r = app
        .post_json(
            &format!("{uri}&type=USERGROUP2"),
            &app.basic(),
            &json!({"eventName": "TransactionAdd", "billNumber": "P-1"}),
        )
        .await;
    assert_eq!(r.v2_error_code(), 93026);
    assert_eq!(writes(&app).await, untouched);

    let r = app
        .post_json(&uri, &app.basic(), &json!({"eventName": "TransactionAdd", "billNumber": "P-1"}))
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["convertedPoints"], 200.0, "{}", r.body);
    let b = app.get(&format!("/v2/customers/{customer}/points/balance"), &app.basic()).await;
    assert_eq!(b.json()["mainPoints"], 200.0);
    assert_eq!(b.json()["promisedPoints"], 100.0);
    // Converting again finds nothing: a warning, nothing written.
    let r = app
        .post_json(&uri, &app.basic(), &json!({"eventName": "TransactionAdd", "billNumber": "P-1"}))
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["convertedPoints"], 0.0);
    assert_eq!(r.json()["warnings"].as_array().unwrap().len(), 1);
    // The converted points are spendable at once.
    redeem(&app, customer, 150).await;
    let r =
        app.get(&format!("/v2/customers/{customer}/promisedPointsSchedule"), &app.basic()).await;
    assert_eq!(r.json()["promisedPointsScheduleList"][0]["points"], 100.0, "{}", r.body);
    verify_clean(&app).await;
}

async fn deductions_take_soonest_expiring_points_and_never_overdraw(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200008").await;
    let m = "919845200008";
    earn(&app, m, "A", 2000.0).await;
    earn(&app, m, "B", 3000.0).await;
    app.exec_sql("UPDATE point_lots SET expires_at = expires_at - 2592000000 WHERE transaction_id IN (SELECT id FROM transactions WHERE bill_number = 'B')").await;
    let by_id = format!("/v2/customers/{customer}/negativePointsAdjustment?source=INSTORE");
    let r = app
        .post_json(
            &by_id,
            &app.basic(),
            &json!({"pointsToBeAdjusted": 250, "reasonOfReturn": "damaged goods"}),
        )
        .await;
    r.assert_status(200);
    assert!(r.json()["createdId"].as_i64().is_some(), "{}", r.body);
    assert_eq!(r.json()["balance"], 250.0);
    // Bill B's lot expires sooner: it gave its 300 first? No: 250 of it.
    let l = lots(&app, customer).await;
    assert_eq!(l.iter().map(|x| x.1).collect::<Vec<_>>(), vec![points_of(200), points_of(50)]);

    let lookup = format!(
        "/v2/customers/lookup/negativePointsAdjustment?identifierName=mobile&identifierValue={m}&source=INSTORE"
    );
    let other_lot = {
        let other = add_customer(&app, "919845200009").await;
        earn(&app, "919845200009", "O", 1000.0).await;
        lots(&app, other).await[0].0
    };
    let untouched = writes(&app).await;
    let bad = [
        (json!({"pointsToBeAdjusted": 251, "reasonOfReturn": "x"}), 803),
        (json!({"pointsToBeAdjusted": 10.5, "reasonOfReturn": "x"}), 801),
        (json!({"pointsToBeAdjusted": -10, "reasonOfReturn": "x"}), 801),
        (json!({"pointsToBeAdjusted": 10}), 400),
        (json!({"reasonOfReturn": "x"}), 400),
        (json!({"pointsToBeAdjusted": 10, "reasonOfReturn": "x", "programId": 999999}), 1101),
        (
            json!({"pointsToBeAdjusted": 10, "reasonOfReturn": "x", "pointsAwardedId": other_lot}),
            841,
        ),
        (
            json!({"pointsToBeAdjusted": 10, "reasonOfReturn": "x", "promotionId": 1, "promotionIdentifier": "p"}),
            400,
        ),
        (
            json!({"pointsToBeAdjusted": 10, "reasonOfReturn": "x", "alternateCurrencyName": "stars"}),
            840,
        ),
        (
            json!({"pointsToBeAdjusted": 10, "reasonOfReturn": "x", "pointsCategory": "PROMISED"}),
            400,
        ),
    ];
    for (body, code) in bad {
        let r = app.post_json(&lookup, &app.basic(), &body).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    let r = app
        .post_json("/v2/customers/lookup/negativePointsAdjustment?identifierName=mobile&identifierValue=919800000001&source=INSTORE", &app.basic(), &json!({"pointsToBeAdjusted": 1, "reasonOfReturn": "x"}))
        .await;
    assert_eq!(r.v2_error_code(), 8015);
    assert_eq!(writes(&app).await, untouched);

    // A named award gives first, whatever its expiry.
    let a_lot = lots(&app, customer).await[0].0;
    let r = app
        .post_json(&lookup, &app.basic(), &json!({"pointsToBeAdjusted": 20, "reasonOfReturn": "fix", "pointsAwardedId": a_lot, "pointsAwardedRefType": "POINT_AWARDED"}))
        .await;
    r.assert_status(200);
    assert_eq!(lots(&app, customer).await[0].1, points_of(180));

    // With the org's consent a deduction may take the balance below zero.
    let config = json!({"keyName": "ALLOW_NEGATIVE_BALANCE_ON_RETURN", "value": "true"});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
    let r = app
        .post_json(
            &lookup,
            &app.basic(),
            &json!({"pointsToBeAdjusted": 300, "reasonOfReturn": "chargeback"}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["negativeBalance"], 70.0, "{}", r.body);
    assert_eq!(balance(&app, customer).await, -70.0);
    let audit = app.audit(app.org.org_id, "POINTS_ADJUSTMENT").await;
    assert_eq!(audit.len(), 3);
    verify_clean(&app).await;
}

async fn expiry_changes_move_one_award(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200010").await;
    let m = "919845200010";
    earn(&app, m, "A", 2000.0).await;
    earn(&app, m, "B", 3000.0).await;
    let l = lots(&app, customer).await;
    let program_id = {
        let list = app.get("/x/perks/v1/programs", &app.admin()).await;
        list.json()["data"][0]["id"].as_i64().unwrap()
    };
    let item = |lot: i64, reason: &str, date: &str| {
        json!({"identifierName": "mobile", "identifierValue": m, "programId": program_id,
            "pointsAwardedRefId": lot, "pointsAwardedRefType": "POINT_AWARDED",
            "expiryUpdateReasonType": reason, "expiryUpdateReasonNote": "support ticket 9",
            "standardMeta": {"who_raised": "ana"}, "customMeta": {"ticket": 9},
            "expiryDate": {"expiryType": "FIXED_DATE", "expiryValue": date}})
    };
    let r = app
        .post_json(
            "/v2/points/updateExpiry",
            &app.basic(),
            &json!({"expiryDateUpdateRequest": [item(l[0].0, "EXTEND_EXPIRY", &local_day(400))]}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["data"][0]["expiryDate"], local_day(400), "{}", r.body);
    assert_eq!(r.json()["data"][0]["previousExpiryDate"], local_day(365));
    // Mixed: one good, one in the wrong direction, one unknown award → 201 with per-item errors.
    let r = app
        .post_json(
            "/v2/points/updateExpiry",
            &app.basic(),
            &json!({"expiryDateUpdateRequest": [
                item(l[1].0, "EARLY_EXPIRY", &local_day(100)),
                item(l[0].0, "EARLY_EXPIRY", &local_day(500)),
                item(999_999, "EXTEND_EXPIRY", &local_day(500)),
            ]}),
        )
        .await;
    r.assert_status(201);
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data[0]["errors"], json!([]), "{}", r.body);
    assert_eq!(data[1]["errors"][0]["code"], 400);
    assert_eq!(data[2]["errors"][0]["code"], 841);
    // All bad: 400 with the first error.
    let untouched = writes(&app).await;
    let r = app
        .post_json(
            "/v2/points/updateExpiry",
            &app.basic(),
            &json!({"expiryDateUpdateRequest": [
                item(l[0].0, "SOMETIME", &local_day(500)),
                item(l[0].0, "EXTEND_EXPIRY", "2026-02-30"),
            ]}),
        )
        .await;
    r.assert_status(400);
    assert_eq!(r.v2_error_code(), 400);
    let many: Vec<Value> =
        (0..101).map(|_| item(l[0].0, "EXTEND_EXPIRY", &local_day(600))).collect();
    let r = app
        .post_json(
            "/v2/points/updateExpiry",
            &app.basic(),
            &json!({"expiryDateUpdateRequest": many}),
        )
        .await;
    assert_eq!(r.v2_error_code(), 1060);
    assert_eq!(writes(&app).await, untouched);
    // An early expiry to a day already past expires the award's points at once.
    let r = app
        .post_json(
            "/v2/points/updateExpiry",
            &app.basic(),
            &json!({"expiryDateUpdateRequest": [item(l[1].0, "EARLY_EXPIRY", "2026-01-01")]}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["data"][0]["expiredPoints"], 300.0, "{}", r.body);
    assert_eq!(balance(&app, customer).await, 200.0);
    assert_eq!(app.audit(app.org.org_id, "POINTS_AWARD").await.len(), 3);
    verify_clean(&app).await;
}

/// A program whose earn rule 1 gives 10% of the bill and rule 2 a flat 25 on any bill.
fn allocation_program() -> Value {
    let mut doc = program();
    doc["earn"] = json!([
        {"name": "base", "on": "transaction", "when": "bill.amount > 999999", "points": "bill.amount * 0.1"},
        {"name": "welcome", "on": "registration", "points": "5"},
        {"name": "flat", "on": "transaction", "points": "25"}
    ]);
    doc
}

async fn manual_allocation_is_revoked_when_the_bill_is_returned(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &allocation_program()).await;
    let customer = add_customer(&app, "919845200011").await; // 5 registration points
    let m = "919845200011";
    let bill = earn(&app, m, "S-1", 1000.0).await; // rule 1 does not match; rule 3 gives 25
    assert_eq!(balance(&app, customer).await, 30.0);
    let program_id = app.get("/x/perks/v1/programs", &app.admin()).await.json()["data"][0]["id"]
        .as_i64()
        .unwrap();
    let item = |extra: Value| {
        let mut v = json!({"eventName": "TransactionAdd", "eventSourceId": bill.to_string(),
            "orgId": app.org.org_id, "programId": program_id, "currencyType": "REGULAR",
            "awardStrategyId": 1, "expiryStrategyId": 7, "sourceValue": 455.6,
            "sourceValueRoundingStrategy": "FLOOR", "pointsRoundingStrategy": "FLOOR",
            "lookupParams": {"entityType": "CUSTOMER", "identifierType": "mobile", "identifierValue": m, "source": "INSTORE"}});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    // Rule 1 applied by hand (its condition skipped) to 455 (floored): 45.5 points, floored to
    // the program's 2 decimals; -1 takes the bill's own amount (1000 → 100).
    let r = app
        .post_json(
            "/v2/customers/bulk/manualCurrencyAllocate",
            &app.basic(),
            &json!([item(json!({})), item(json!({"sourceValue": -1}))]),
        )
        .await;
    r.assert_status(200);
    let data = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(data[0]["awardedPoints"], 45.5, "{}", r.body);
    assert_eq!(data[1]["awardedPoints"], 100.0);
    assert_eq!(balance(&app, customer).await, 175.5);
    // Bad items: each refused with its code, nothing written.
    let untouched = writes(&app).await;
    let other = add_customer(&app, "919845200012").await;
    let other_bill = earn(&app, "919845200012", "O-1", 100.0).await;
    let untouched_after_setup = writes(&app).await;
    assert_ne!(untouched, untouched_after_setup);
    let _ = other;
    let bad = [
        (
            item(
                json!({"currencyType": "ALTERNATE_CURRENCIES", "alternateCurrencyIdentifier": "stars"}),
            ),
            840,
        ),
        (item(json!({"awardStrategyId": 2})), 400),
        (item(json!({"awardStrategyId": 9})), 400),
        (item(json!({"eventSourceId": other_bill.to_string()})), 667),
        (item(json!({"programId": 999999})), 1101),
        (item(json!({"sourceValue": -3})), 400),
        (item(json!({"eventName": "Nope"})), 400),
        (item(json!({"orgId": 1_000_000})), 400),
        (
            item(
                json!({"lookupParams": {"entityType": "USERGROUP2", "identifierType": "id", "identifierValue": "1"}}),
            ),
            93026,
        ),
        (
            item(
                json!({"lookupParams": {"identifierType": "mobile", "identifierValue": "919800000002", "source": "INSTORE"}}),
            ),
            8015,
        ),
    ];
    let items: Vec<Value> = bad.iter().map(|(v, _)| v.clone()).collect();
    let r = app
        .post_json("/v2/customers/bulk/manualCurrencyAllocate", &app.basic(), &json!(items))
        .await;
    r.assert_status(400);
    for (i, (_, code)) in bad.iter().enumerate() {
        assert_eq!(r.json()["data"][i]["errors"][0]["code"], *code, "item {i}: {}", r.body);
    }
    assert_eq!(writes(&app).await, untouched_after_setup);
    let eleven: Vec<Value> = (0..11).map(|_| item(json!({}))).collect();
    let r = app
        .post_json("/v2/customers/bulk/manualCurrencyAllocate", &app.basic(), &json!(eleven))
        .await;
    assert_eq!(r.v2_error_code(), 1060);
    let r =
        app.post_json("/v2/customers/bulk/manualCurrencyAllocate", &app.basic(), &json!([])).await;
    assert_eq!(r.v2_error_code(), 400);

    // A partial return of the bill revokes the manual allocations whole (145.5) and, by the
    // program's rules, its share of what the bill earned (25 * 40% = 10).
    let uri = format!("/v2/transactions?identifierName=mobile&identifierValue={m}&source=INSTORE");
    let ret = json!({"type": "RETURN", "returnType": "AMOUNT", "billNumber": "S-1", "billAmount": 400.0,
        "billingDate": "2026-01-11T10:00:00+05:30"});
    let r = app.post_json(&uri, &app.basic(), &ret).await;
    r.assert_status(200);
    assert_eq!(balance(&app, customer).await, 20.0, "{}", r.body);
    // A second return revokes nothing more by hand.
    let r = app.post_json(&uri, &app.basic(), &ret).await;
    r.assert_status(200);
    assert_eq!(balance(&app, customer).await, 10.0);
    assert_eq!(count(&app, "points_manual_allocations WHERE revoked_at IS NOT NULL").await, 2);
    verify_clean(&app).await;
}

async fn promised_manual_allocation_converts_on_its_event(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &allocation_program()).await;
    let customer = add_customer(&app, "919845200013").await;
    let m = "919845200013";
    let program_id = app.get("/x/perks/v1/programs", &app.admin()).await.json()["data"][0]["id"]
        .as_i64()
        .unwrap();
    let item = json!({"eventName": "GenericEvent", "eventSourceId": "REF-9", "programId": program_id,
        "currencyType": "PROMISED", "awardStrategyId": 3, "sourceValue": 0,
        "identifierType": "mobile", "identifierValue": m, "source": "INSTORE", "entityType": "CUSTOMER"});
    let r = app
        .post_json("/v2/customers/bulk/manualCurrencyAllocate", &app.basic(), &json!([item]))
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["data"][0]["awardedPoints"], 25.0, "{}", r.body);
    let b = app.get(&format!("/v2/customers/{customer}/points/balance"), &app.basic()).await;
    assert_eq!(b.json()["promisedPoints"], 25.0);
    // Without a delay the promised points wait for their trigger.
    let s =
        app.get(&format!("/v2/customers/{customer}/promisedPointsSchedule"), &app.basic()).await;
    assert_eq!(s.json()["triggerBasedPointsList"][0]["points"], 25.0, "{}", s.body);
    let uri = format!(
        "/v2/points/unlockPromisedPoints?identifierName=mobile&identifierValue={m}&source=INSTORE"
    );
    let r = app
        .post_json(&uri, &app.basic(), &json!({"eventName": "GenericEvent", "billNumber": "REF-9"}))
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["convertedPoints"], 25.0, "{}", r.body);
    assert_eq!(balance(&app, customer).await, 30.0);
    verify_clean(&app).await;
}

async fn goodwill_requests_are_pending_and_listed(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200014").await;
    let body = json!({"type": "GOODWILL", "baseType": "POINTS", "comments": "store visit",
        "goodwillRequest": {"points": 100, "reason": "POINTS_ISSUE", "comments": "late delivery"},
        "earningEntityType": "CUSTOMER",
        "customerIdentificationInfo": {"identifierType": "mobile", "identifierValue": "919845200014", "source": "INSTORE"}});
    let r = app.post_json("/v2/requests", &app.basic(), &body).await;
    r.assert_status(200);
    let id = r.json()["createdId"].as_i64().unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(balance(&app, customer).await, 0.0);
    let list = app.get(&format!("/v2/customers/{customer}/goodwillRequests"), &app.basic()).await;
    list.assert_status(200);
    let got = list.json();
    assert_eq!(got["pagination"]["total"], 1);
    assert_eq!(got["data"][0]["id"], id);
    assert_eq!(got["data"][0]["goodwillStatus"], "PENDING");
    assert_eq!(got["data"][0]["points"], 100.0);
    assert_eq!(got["data"][0]["reason"], "POINTS_ISSUE");
    assert_eq!(got["data"][0]["addedBy"]["type"], "TILL");
    let untouched = writes(&app).await;
    let with = |k: &str, v: Value| {
        let mut b = body.clone();
        b[k] = v;
        b
    };
    let bad = [
        (with("type", json!("CHANGE_IDENTIFIER")), 9006),
        (with("baseType", json!("COUPON")), 9008),
        (with("earningEntityType", json!("USERGROUP2")), 93026),
        (with("programId", json!(999999)), 1101),
        (with("goodwillRequest", json!({"points": -1, "reason": "x"})), 400),
        (
            with(
                "customerIdentificationInfo",
                json!({"identifierType": "mobile", "identifierValue": "919800000003"}),
            ),
            8015,
        ),
    ];
    for (body, code) in bad {
        let r = app.post_json("/v2/requests", &app.basic(), &body).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    assert_eq!(writes(&app).await, untouched);
    let r =
        app.get(&format!("/v2/customers/{customer}/goodwillRequests?limit=0"), &app.basic()).await;
    assert_eq!(r.v2_error_code(), 400);
}

async fn explode_info_shows_the_lots_each_event_moved(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200015").await;
    let m = "919845200015";
    let a = earn(&app, m, "A", 2000.0).await;
    earn(&app, m, "B", 3000.0).await;
    app.exec_sql("UPDATE point_lots SET expires_at = expires_at - 2592000000 WHERE transaction_id IN (SELECT id FROM transactions WHERE bill_number = 'A')").await;
    let redemption = redeem(&app, customer, 250).await;
    let base = format!("identifierName=mobile&identifierValue={m}&source=INSTORE");
    let r = app
        .get(&format!("/v2/pointsLedger/getLedgerExplodeInfo?{base}&eventName=PointsRedemption&eventReferenceIds={redemption}"), &app.basic())
        .await;
    r.assert_status(200);
    let events = r.json()["ledgerExplodeDetails"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{}", r.body);
    assert_eq!(events[0]["eventName"], "PointsRedemption");
    assert_eq!(events[0]["points"], -250.0);
    let lots = events[0]["lots"].as_array().unwrap().clone();
    assert_eq!(lots.len(), 2);
    assert_eq!(lots[0]["points"], 200.0, "the soonest-expiring lot (bill A) gave all it had");
    assert_eq!(lots[0]["awardedOnBillId"], a);
    assert_eq!(lots[0]["direction"], "DEBIT");
    assert_eq!(lots[1]["points"], 50.0);
    let event_id = events[0]["eventId"].as_i64().unwrap();
    let by_id = app
        .get(
            &format!("/v2/pointsLedger/getLedgerExplodeInfo?{base}&eventIds={event_id}"),
            &app.basic(),
        )
        .await;
    assert_eq!(by_id.json()["ledgerExplodeDetails"], r.json()["ledgerExplodeDetails"]);
    let bill = app
        .get(&format!("/v2/pointsLedger/getLedgerExplodeInfo?{base}&eventName=TransactionAdd&eventReferenceIds={a}&getBillDetails=true"), &app.basic())
        .await;
    bill.assert_status(200);
    assert_eq!(
        bill.json()["ledgerExplodeDetails"][0]["eventName"],
        "TransactionAdd",
        "{}",
        bill.body
    );
    assert_eq!(bill.json()["ledgerExplodeDetails"][0]["billDetails"]["billNumber"], "A");
    assert_eq!(bill.json()["ledgerExplodeDetails"][0]["lots"][0]["direction"], "CREDIT");
    for (query, code) in [
        ("", 400),
        ("&eventIds=x", 400),
        ("&eventName=Nope&eventReferenceIds=1", 400),
        ("&eventIds=1&type=USERGROUP2", 93026),
        ("&eventIds=1&limit=0", 400),
    ] {
        let r = app
            .get(&format!("/v2/pointsLedger/getLedgerExplodeInfo?{base}{query}"), &app.basic())
            .await;
        assert_eq!(r.v2_error_code(), code, "{query}: {}", r.body);
    }
    // The v2.1 forms serve the caller's own org.
    let v21 = format!("/v2.1/pointsLedger/getLedgerExplodeInfo?{base}&eventIds={event_id}");
    let send = |scope: &str, orgs: &str| {
        let mut request = crate::helpers::request(axum::http::Method::GET, &v21)
            .header("authorization", app.basic());
        if !scope.is_empty() {
            request = request.header("DATA-SCOPE", scope);
        }
        if !orgs.is_empty() {
            request = request.header("DATA-SCOPE-ORG", orgs);
        }
        request.body(axum::body::Body::empty()).unwrap()
    };
    let r = app.send(send("SELF", &app.org.org_id.to_string())).await;
    r.assert_status(200);
    assert_eq!(r.json()["ledgerExplodeDetails"], by_id.json()["ledgerExplodeDetails"]);
    let r = app.send(send("OTHER", "")).await;
    r.assert_status(501);
    assert_eq!(r.v2_error_code(), 501);
    let r = app.send(send("", "424242")).await;
    assert_eq!(r.v2_error_code(), 501);
    let info = app
        .get(&format!("/v2.1/pointsLedger/getCustomerLedgerInfo?identifierName=MOBILE&identifierValue={m}&source=INSTORE"), &app.basic())
        .await;
    info.assert_status(200);
    assert_eq!(
        info.json()["ledgerDetails"]["entries"][0]["ledgerEntryType"],
        "REDEEM",
        "{}",
        info.body
    );
}

/// Per line, the points of every event of a bill in an explode answer: {itemCode: points}.
fn line_points(events: &[Value]) -> std::collections::BTreeMap<String, f64> {
    let mut sums = std::collections::BTreeMap::new();
    for event in events {
        for row in event["lineItemsBreakup"].as_array().into_iter().flatten() {
            let code = row["itemCode"].as_str().unwrap().to_string();
            *sums.entry(code).or_insert(0.0) += row["points"].as_f64().unwrap();
        }
    }
    sums
}

async fn explode_info_breaks_bills_and_returns_down_by_line_item(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    // 10% of each line, and 1% of the bill spread over the lines by amount.
    set_program(
        &app,
        &json!({"name": "Default", "default": true, "tiers": [{"name": "Base"}],
            "earn": [{"name": "lines", "on": "lineItem", "points": "item.amount * 0.1"},
                     {"name": "bonus", "on": "transaction", "points": "bill.amount * 0.01"}],
            "expiry": {"type": "rolling", "days": 365},
            "redemption": {"pointValue": 1, "validationCode": "never"}}),
    )
    .await;
    let customer = add_customer(&app, "919845200030").await;
    let m = "919845200030";
    let uri = format!("/v2/transactions?identifierName=mobile&identifierValue={m}&source=INSTORE");
    let sale = json!({"type": "REGULAR", "billNumber": "L-1", "billAmount": 1000.0,
        "billingDate": "2026-01-10T10:00:00+05:30",
        "lineItemsV2": [{"itemCode": "SHOE", "qty": 1.0, "rate": 600.0, "amount": 600.0},
                        {"itemCode": "SOCK", "qty": 2.0, "rate": 200.0, "amount": 400.0}]});
    let r = app.post_json(&uri, &app.basic(), &sale).await;
    r.assert_status(200);
    let bill = r.json()["createdId"].as_i64().unwrap();
    assert_eq!(balance(&app, customer).await, 110.0);
    let base = format!("identifierName=mobile&identifierValue={m}&source=INSTORE");
    let r = app
        .get(&format!("/v2/pointsLedger/getLedgerExplodeInfo?{base}&eventName=TransactionAdd&eventReferenceIds={bill}"), &app.basic())
        .await;
    r.assert_status(200);
    let events = r.json()["ledgerExplodeDetails"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3, "a lot per line and one for the bill: {}", r.body);
    // Each event's rows add up to its points; a line rule's event names only its line.
    for event in &events {
        let rows = event["lineItemsBreakup"].as_array().unwrap();
        let sum: f64 = rows.iter().map(|r| r["points"].as_f64().unwrap()).sum();
        assert_eq!(sum, event["points"].as_f64().unwrap(), "{event}");
        if rows.len() == 1 {
            assert_eq!(rows[0]["billPointsShare"], 0.0, "{event}");
        }
    }
    let bonus = events.iter().find(|e| e["lineItemsBreakup"].as_array().unwrap().len() == 2);
    let bonus = bonus.unwrap_or_else(|| panic!("{}", r.body));
    assert_eq!(bonus["points"], 10.0);
    assert_eq!(bonus["lineItemsBreakup"][0]["itemCode"], "SHOE");
    assert_eq!(bonus["lineItemsBreakup"][0]["billPointsShare"], 6.0);
    assert_eq!(bonus["lineItemsBreakup"][1]["billPointsShare"], 4.0);
    let shoe_line = bonus["lineItemsBreakup"][0]["lineItemId"].as_i64().unwrap();
    let earned = line_points(&events);
    assert_eq!(earned["SHOE"], 66.0, "{}", r.body);
    assert_eq!(earned["SOCK"], 44.0);

    // Returning one of the two socks gives back half the sock line (20) and its share of the
    // bill's bonus (1% of 200 = 2): all on the sock line.
    let ret = json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "L-1",
        "billingDate": "2026-01-11T10:00:00+05:30", "lineItemsV2": [{"itemCode": "SOCK", "qty": 1.0}]});
    let r = app.post_json(&uri, &app.basic(), &ret).await;
    r.assert_status(200);
    let return_bill = r.json()["createdId"].as_i64().unwrap();
    assert_eq!(balance(&app, customer).await, 88.0, "{}", r.body);
    let r = app
        .get(&format!("/v2/pointsLedger/getLedgerExplodeInfo?{base}&eventName=ReturnBill&eventReferenceIds={return_bill}"), &app.basic())
        .await;
    r.assert_status(200);
    let events = r.json()["ledgerExplodeDetails"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{}", r.body);
    assert_eq!(events[0]["eventName"], "ReturnBill");
    assert_eq!(events[0]["points"], -22.0);
    let rows = events[0]["lineItemsBreakup"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", r.body);
    assert_eq!(rows[0]["itemCode"], "SOCK");
    assert_eq!(rows[0]["points"], -22.0);
    assert_eq!(rows[0]["lineItemPoints"], -20.0);
    assert_eq!(rows[0]["billPointsShare"], -2.0);
    assert_ne!(rows[0]["lineItemId"], shoe_line);

    // Returning the rest gives back what each line lot holds (SHOE 60, SOCK 20) and the bonus
    // left (8), spread over the returned lines by amount (600 : 200, so 6 and 2).
    let full = json!({"type": "RETURN", "returnType": "LINE_ITEM", "billNumber": "L-1",
        "billingDate": "2026-01-12T10:00:00+05:30",
        "lineItemsV2": [{"itemCode": "SHOE", "qty": 1.0}, {"itemCode": "SOCK", "qty": 1.0}]});
    let r = app.post_json(&uri, &app.basic(), &full).await;
    r.assert_status(200);
    let full_bill = r.json()["createdId"].as_i64().unwrap();
    assert_eq!(balance(&app, customer).await, 0.0, "{}", r.body);
    let r = app
        .get(&format!("/v2/pointsLedger/getLedgerExplodeInfo?{base}&eventName=ReturnBill&eventReferenceIds={full_bill}"), &app.basic())
        .await;
    r.assert_status(200);
    let events = r.json()["ledgerExplodeDetails"].as_array().unwrap().clone();
    let given_back = line_points(&events);
    let cents = |v: f64| (v * 100.0).round() as i64;
    assert_eq!(cents(given_back.values().sum()), -8800, "{}", r.body);
    assert_eq!(cents(given_back["SHOE"]), -6600, "{}", r.body);
    assert_eq!(cents(given_back["SOCK"]), -2200, "{}", r.body);
    verify_clean(&app).await;
}

async fn neo_allocation_reads(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200016").await;
    let m = "919845200016";
    let a = earn(&app, m, "A", 2000.0).await;
    earn(&app, m, "B", 3000.0).await;
    let program_id = app.get("/x/perks/v1/programs", &app.admin()).await.json()["data"][0]["id"]
        .as_i64()
        .unwrap();
    let r = app
        .get(&format!("/x/neo/pointsAllocation/event?entity_id={a}&customer_id={customer}&event_type_id=15"), &app.basic())
        .await;
    r.assert_status(200);
    let body = r.json();
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{}", r.body);
    assert_eq!(body["data"][0]["points"], 200.0);
    assert_eq!(body["data"][0]["point_category_id"], 1);
    assert_eq!(body["data"][0]["program_id"], program_id);
    assert_eq!(body["data"][0]["till_id"], app.org.till_id);
    assert_eq!(body["page"], 1);
    let range = |start: &str, end: &str| {
        format!(
            "/x/neo/pointsAllocation/dateRange?program_id={program_id}&point_category_id=1&expiry_date_start={start}&expiry_date_end={end}&entity_id={customer}"
        )
    };
    let r = app.get(&range(&local_day(364), &local_day(366)), &app.basic()).await;
    r.assert_status(200);
    assert_eq!(r.json()["total"], 2, "{}", r.body);
    let r = app
        .get(&format!("{}&count=1&page=2", range(&local_day(364), &local_day(366))), &app.basic())
        .await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1);
    let r = app.get(&range(&local_day(1), &local_day(30)), &app.basic()).await;
    assert_eq!(r.json()["total"], 0);
    for uri in [
        format!("/x/neo/pointsAllocation/event?customer_id={customer}&event_type_id=15"),
        format!(
            "/x/neo/pointsAllocation/event?entity_id={a}&customer_id={customer}&event_type_id=99"
        ),
        format!(
            "/x/neo/pointsAllocation/event?entity_id={a}&customer_id={customer}&event_type_id=15&count=101"
        ),
        format!(
            "/x/neo/pointsAllocation/dateRange?program_id={program_id}&point_category_id=3&expiry_date_start=2026-01-01&expiry_date_end=2026-02-01&entity_id={customer}"
        ),
        format!(
            "/x/neo/pointsAllocation/dateRange?program_id={program_id}&point_category_id=1&expiry_date_start=2026-03-01&expiry_date_end=2026-02-01&entity_id={customer}"
        ),
    ] {
        let r = app.get(&uri, &app.basic()).await;
        assert_eq!(r.v2_error_code(), 400, "{uri}: {}", r.body);
    }
    let r = app
        .get(
            &format!(
                "/x/neo/pointsAllocation/event?entity_id={a}&customer_id=999999&event_type_id=15"
            ),
            &app.basic(),
        )
        .await;
    assert_eq!(r.v2_error_code(), 8015);
}

async fn group_variants_answer_not_yet_supported(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    for path in ["/v2/points/userGroup2/isTransferrable", "/v2/points/userGroup2/transfer"] {
        let r = app
            .post_json(path, &app.basic(), &json!({"pointsTobeTransferred": 10, "programId": 1}))
            .await;
        r.assert_status(501);
        assert_eq!(r.v2_error_code(), 501, "{}", r.body);
        assert!(r.json()["errors"][0]["message"].as_str().unwrap().contains("not supported yet"));
    }
}

async fn another_orgs_customer_is_not_found_by_any_operation(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let customer = add_customer(&app, "919845200017").await;
    let m = "919845200017";
    earn(&app, m, "A", 2000.0).await;
    let redemption = redeem(&app, customer, 50).await;
    let other = app.another_org("Other").await;
    let auth = crate::helpers::basic_header(&other.till.username, &other.till.password);
    let untouched = writes(&app).await;
    let lookup = format!("identifierName=mobile&identifierValue={m}&source=INSTORE");
    for uri in [
        format!("/v2/customers/{customer}/pointsExpirySchedule"),
        format!("/v2/customers/lookup/pointsExpirySchedule?{lookup}"),
        format!("/v2/customers/{customer}/promisedPointsSchedule"),
        format!("/v2/customers/{customer}/pointsTransfers"),
        format!("/v2/customers/{customer}/goodwillRequests"),
        format!("/v2/points/transfer?{lookup}"),
        format!("/v2/pointsLedger/getLedgerExplodeInfo?{lookup}&eventIds=1"),
    ] {
        let r = app.get(&uri, &auth).await;
        assert_eq!(r.v2_error_code(), 8015, "{uri}: {}", r.body);
    }
    let r = app
        .post_json(
            &format!("/v2/customers/{customer}/negativePointsAdjustment"),
            &auth,
            &json!({"pointsToBeAdjusted": 10, "reasonOfReturn": "x"}),
        )
        .await;
    assert_eq!(r.v2_error_code(), 8015);
    let r = app.post_json("/v2/points/reverse", &auth, &json!({"redemptionId": redemption})).await;
    assert_eq!(r.v2_error_code(), 814);
    let r = app
        .put_json(
            "/v2/points/updateRedemption",
            &auth,
            &json!({"redemptionId": redemption, "purpose": "x"}),
        )
        .await;
    assert_eq!(r.v2_error_code(), 814);
    assert_eq!(writes(&app).await, untouched);
    assert_eq!(balance(&app, customer).await, 150.0);
}
