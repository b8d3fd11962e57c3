//! Customer loyalty views through the API: loyalty details, tier details with the gaps to
//! upgrade and renew, loyalty events and trackers agree with the ledger and the balance
//! endpoint after bills, returns, redemptions and expiry (also across the org's time zone), and
//! manual tier adjustment moves, holds and re-assesses tiers; bad input writes nothing.

use chrono::{Datelike, NaiveDate, TimeZone};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};
use crate::transactions::{add_customer, set_program};

backend_tests!(
    views_agree_with_the_ledger_after_bills_returns_redemptions_and_expiry,
    tier_details_follow_the_program_selection,
    end_of_month_expiry_falls_at_local_midnight,
    loyalty_events_page_and_filter,
    manual_tier_adjustment_moves_and_holds_the_tier,
    reassessment_moves_a_manual_tier_at_the_next_bill,
    a_manual_tier_ends_with_its_validity,
    bad_tier_adjustments_write_nothing,
    another_orgs_customer_is_not_found,
);

const DAY: i64 = 86_400_000;

fn program(extra: Value) -> Value {
    let mut doc = json!({"name": "Default", "default": true,
        "tiers": [{"name": "Bronze"},
                  {"name": "Silver", "upgrade": {"metric": "lifetimePurchases", "atLeast": 1000}},
                  {"name": "Gold", "upgrade": {"metric": "lifetimePurchases", "atLeast": 5000}}],
        "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 500}, "downgrade": "oneDown"},
        "earn": [{"name": "base", "on": "transaction", "when": "true", "points": "bill.amount * 0.1"}],
        "expiry": {"type": "rolling", "days": 30},
        "redemption": {"pointValue": 1, "validationCode": "never"}});
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

async fn bill(app: &TestApp, mobile: &str, body: Value) -> TestResponse {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    let response = app.post_json(&uri, &app.basic(), &body).await;
    response.assert_status(200);
    response
}

async fn sale(app: &TestApp, mobile: &str, number: &str, amount: f64) -> TestResponse {
    bill(app, mobile, json!({"type": "REGULAR", "billNumber": number, "billAmount": amount})).await
}

async fn get_ok(app: &TestApp, uri: &str) -> Value {
    let r = app.get(uri, &app.basic()).await;
    r.assert_status(200);
    r.json()
}

async fn details(app: &TestApp, customer: i64) -> Value {
    get_ok(app, &format!("/v2/customers/{customer}/loyaltyDetails")).await["data"][0].clone()
}

async fn tier(app: &TestApp, customer: i64) -> Value {
    get_ok(app, &format!("/v2/customers/{customer}/tierDetails")).await["programTiers"][0].clone()
}

async fn events(app: &TestApp, customer: i64, query: &str) -> Vec<Value> {
    let body =
        get_ok(app, &format!("/v2/customers/{customer}/loyaltyEvents?limit=100{query}")).await;
    body["data"].as_array().unwrap().clone()
}

async fn run_jobs(app: &TestApp, now: i64) {
    for unlock in [true, false] {
        while perks::points::ledger::process_due_lots(&app.state.db, now, unlock, 100)
            .await
            .unwrap()
            == 100
        {}
    }
    while perks::transactions::service::renew_due_tiers(
        &app.state.db,
        &app.state.programs,
        now,
        100,
    )
    .await
    .unwrap()
        == 100
    {}
}

async fn verify_clean(app: &TestApp) {
    let mut conn = app.state.db.read().await.unwrap();
    let found = perks::points::ledger::verify(&mut conn, None, 10).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM {table}");
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(&sql).fetch_one(e).await).unwrap()
}

/// The views and the balance endpoint tell the same story as the ledger: returns the points.
async fn assert_consistent(app: &TestApp, customer: i64) -> f64 {
    let balance = get_ok(app, &format!("/v2/customers/{customer}/points/balance")).await;
    let d = details(app, customer).await;
    assert_eq!(d["loyaltyPoints"], balance["mainPoints"], "{d} vs {balance}");
    assert_eq!(d["delayedPoints"], balance["promisedPoints"], "{d} vs {balance}");
    assert_eq!(d["totalAvailablePoints"], balance["totalPoints"], "{d} vs {balance}");
    // The events' net points add up to the balance.
    let sum: f64 =
        events(app, customer, "").await.iter().map(|e| e["points"].as_f64().unwrap()).sum();
    let total = balance["totalPoints"].as_f64().unwrap();
    assert!((sum - total).abs() < 1e-9, "events add to {sum}, balance {total}");
    // The trackers show the same running values.
    let trackers = get_ok(app, &format!("/v2/customers/{customer}/trackers")).await;
    let tracker = |name: &str| {
        trackers["data"].as_array().unwrap().iter().find(|t| t["name"] == name).cloned().unwrap()
    };
    assert_eq!(tracker("lifetimePurchases")["value"], d["cumulativePurchases"]);
    assert_eq!(tracker("lifetimePoints")["value"], d["lifetimePoints"]);
    verify_clean(app).await;
    total
}

async fn views_agree_with_the_ledger_after_bills_returns_redemptions_and_expiry(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845200001";
    let customer = add_customer(&app, m).await;
    assert_eq!(assert_consistent(&app, customer).await, 0.0);
    let fresh = details(&app, customer).await;
    assert_eq!(fresh["currentSlab"], "Bronze");
    assert_eq!(fresh["loyaltyId"], customer, "registration opens the account: {fresh}");

    sale(&app, m, "V-1", 1200.0).await;
    sale(&app, m, "V-2", 300.0).await;
    assert_eq!(assert_consistent(&app, customer).await, 150.0);
    bill(&app, m, json!({"type": "RETURN", "returnType": "FULL", "billNumber": "V-2"})).await;
    assert_eq!(assert_consistent(&app, customer).await, 120.0);
    let r = app
        .post_json(
            &format!("/v2/customers/{customer}/redemptions"),
            &app.basic(),
            &json!({"points": 50}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(assert_consistent(&app, customer).await, 70.0);

    let d = details(&app, customer).await;
    assert_eq!(d["lifetimePoints"], 120.0, "{d}");
    assert_eq!(d["redeemed"], 50.0);
    assert_eq!(d["returned"], 30.0);
    assert_eq!(d["expired"], 0.0);
    assert_eq!(d["cumulativePurchases"], 1200.0);
    assert_eq!(d["currentSlab"], "Silver");
    assert_eq!(d["slabSNo"], 2);
    assert_eq!(d["nextSlab"], "Gold");
    assert_eq!(d["nextSlabSerialNumber"], 3);
    assert!(d["slabExpiryDate"].is_string());

    let t = tier(&app, customer).await;
    assert_eq!(t["currentTierSerialNumber"], 2, "{t}");
    assert_eq!(t["nextTierSerialNumber"], 3);
    assert_eq!(t["gapToUpgrade"]["metric"], "lifetimePurchases");
    assert_eq!(t["gapToUpgrade"]["threshold"], 5000.0);
    assert_eq!(t["gapToUpgrade"]["current"], 1200.0);
    assert_eq!(t["gapToUpgrade"]["gap"], 3800.0);
    let renew = &t["gapToRenew"];
    assert_eq!(renew["metric"], "purchasesInPeriod", "{t}");
    assert_eq!(renew["threshold"], 500.0);
    let missing = 500.0 - renew["current"].as_f64().unwrap();
    assert_eq!(renew["gap"].as_f64().unwrap(), missing.max(0.0));
    assert_eq!(renew["periodEndDate"], t["tierExpiryDateISO"]);

    let names: Vec<String> = events(&app, customer, "")
        .await
        .iter()
        .map(|e| e["eventName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "PointsRedemption",
            "ReturnBill",
            "TransactionAdd",
            "TransactionAdd",
            "CustomerRegistration"
        ],
        "newest first"
    );
    let redeemed = events(&app, customer, "&eventType=REDEEM").await;
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0]["points"], -50.0);
    assert_eq!(redeemed[0]["status"], "SUCCESS");

    // Thirty days on the points expire: the views show it the moment the ledger does.
    run_jobs(&app, perks::db::now_millis() + 31 * DAY).await;
    assert_eq!(assert_consistent(&app, customer).await, 0.0);
    let d = details(&app, customer).await;
    assert_eq!(d["expired"], 70.0, "{d}");
    let expired = events(&app, customer, "&eventType=EXPIRE").await;
    assert_eq!(
        expired.len(),
        1,
        "two lots expiring at the same instant are one event: {expired:?}"
    );
    assert_eq!(expired[0]["eventName"], "PointsExpiry");
    assert_eq!(expired[0]["points"], -70.0);
}

async fn tier_details_follow_the_program_selection(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let second = json!({"name": "Second", "tiers": [{"name": "Topaz"},
        {"name": "Coral", "upgrade": {"metric": "lifetimePoints", "atLeast": 100}}]});
    let created = app.post_json("/x/perks/v1/programs", &app.admin(), &second).await;
    created.assert_status(201);
    let second_id = created.json()["data"]["id"].as_i64().unwrap();
    let m = "919845200002";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "T-1", 6000.0).await;

    // Default program only, by default; top tier: next is -1 and there is no gap to upgrade.
    let body = get_ok(&app, &format!("/v2/customers/{customer}/tierDetails")).await;
    assert_eq!(body["entityId"], customer);
    assert_eq!(body["programTiers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["currentTierSerialNumber"], 3);
    assert_eq!(body["nextTierSerialNumber"], -1);
    assert_eq!(body["programTiers"][0]["currentTierName"], "Gold");
    assert_eq!(body["programTiers"][0]["nextTierName"], "");
    assert_eq!(body["programTiers"][0]["gapToUpgrade"], Value::Null);
    assert!(body["tierExpiryDateISO"].is_string());
    // fetchDataForAllPrograms wins over programId.
    let all = get_ok(
        &app,
        &format!("/v2/customers/{customer}/tierDetails?fetchDataForAllPrograms=true&programId={second_id}"),
    )
    .await;
    assert_eq!(all["programTiers"].as_array().unwrap().len(), 2, "{all}");
    let one =
        get_ok(&app, &format!("/v2/customers/{customer}/tierDetails?programId={second_id}")).await;
    let t = &one["programTiers"][0];
    assert_eq!(t["programId"], second_id);
    assert_eq!(t["currentTierName"], "Topaz");
    assert_eq!(t["tierExpiryDate"], Value::Null, "the base tier has no expiry");
    assert_eq!(t["gapToUpgrade"]["metric"], "lifetimePoints");
    assert_eq!(t["gapToUpgrade"]["gap"], 100.0);
    assert_eq!(t["gapToRenew"], Value::Null);
    let r = app
        .get(&format!("/v2/customers/{customer}/tierDetails?programId=999999"), &app.basic())
        .await;
    assert_eq!(r.v2_error_code(), 1101, "{}", r.body);
    let r = app
        .get(&format!("/v2/customers/{customer}/tierDetails?entityType=FLEET"), &app.basic())
        .await;
    assert_eq!(r.v2_error_code(), 400);

    // Loyalty details list every program; the one never earned in is not enrolled.
    let all = get_ok(&app, &format!("/v2/customers/{customer}/loyaltyDetails")).await;
    let data = all["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{all}");
    assert_eq!(data[0]["loyaltyPoints"], 600.0);
    assert_eq!(data[1]["programId"], second_id);
    assert_eq!(data[1]["loyaltyId"], -1);
    assert_eq!(data[1]["nextSlab"], "Coral");
    let r = app
        .get(&format!("/v2/customers/{customer}/loyaltyDetails?programId=999999"), &app.basic())
        .await;
    assert_eq!(r.v2_error_code(), 8089, "{}", r.body);

    // The lookup forms name the customer by identifier.
    let lookup = "source=INSTORE&identifierName=mobile&identifierValue=919845200002";
    let by_lookup = get_ok(&app, &format!("/v2/customers/lookup/tierDetails?{lookup}")).await;
    assert_eq!(by_lookup["entityId"], customer);
    let by_lookup = get_ok(
        &app,
        &format!("/v2/customers/lookup/loyaltyDetails?{lookup}&programId={second_id}"),
    )
    .await;
    assert_eq!(by_lookup["data"].as_array().unwrap().len(), 1);
    let r = app
        .get(
            "/v2/customers/lookup/tierDetails?source=INSTORE&identifierName=mobile&identifierValue=919845299999",
            &app.basic(),
        )
        .await;
    assert_eq!(r.v2_error_code(), 8015);
}

/// The last millisecond of the current month in the org's zone (Asia/Kolkata in tests).
fn local_month_end(now: i64) -> i64 {
    let tz = chrono_tz::Asia::Kolkata;
    let today = tz.timestamp_millis_opt(now).unwrap().date_naive();
    let first_next = if today.month() == 12 {
        NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
    }
    .unwrap();
    tz.from_local_datetime(&first_next.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .timestamp_millis()
        - 1
}

async fn end_of_month_expiry_falls_at_local_midnight(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({"expiry": {"type": "endOfPeriod", "months": 0}}))).await;
    let m = "919845200003";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "Z-1", 500.0).await;
    let end = local_month_end(perks::db::now_millis());
    // Kolkata is 5h30 ahead of UTC: the local month ends at 18:29:59.999 UTC.
    let utc_end = chrono::DateTime::from_timestamp_millis(end).unwrap();
    assert_eq!(utc_end.format("%H:%M:%S").to_string(), "18:29:59");

    run_jobs(&app, end - 1).await;
    assert_eq!(details(&app, customer).await["loyaltyPoints"], 50.0);
    assert!(events(&app, customer, "&eventType=EXPIRE").await.is_empty());
    // One millisecond later it is midnight in Kolkata (still the last day in UTC): expired.
    run_jobs(&app, end + 1).await;
    let d = details(&app, customer).await;
    assert_eq!(d["loyaltyPoints"], 0.0, "{d}");
    assert_eq!(d["expired"], 50.0);
    let expired = events(&app, customer, "&eventType=EXPIRE").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["date"], json!(utc_end.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
    assert_consistent(&app, customer).await;
}

async fn loyalty_events_page_and_filter(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845200004";
    let customer = add_customer(&app, m).await;
    for i in 0..4 {
        sale(&app, m, &format!("P-{i}"), 100.0).await;
    }
    let uri = format!("/v2/customers/{customer}/loyaltyEvents");
    let first = get_ok(&app, &format!("{uri}?limit=2")).await;
    assert_eq!(first["pagination"]["total"], 5, "{first}");
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let e = &first["data"][0];
    assert_eq!(e["customerId"], customer);
    assert_eq!(e["eventName"], "TransactionAdd");
    assert_eq!(e["status"], "SUCCESS");
    assert!(e["uniqueId"].as_str().unwrap().starts_with("TXN-"));
    assert!(e["orgId"].is_i64());
    // `page` wins over `offset`.
    let third = get_ok(&app, &format!("{uri}?limit=2&page=3&offset=0")).await;
    assert_eq!(third["data"].as_array().unwrap().len(), 1);
    assert_eq!(third["data"][0]["eventName"], "CustomerRegistration");
    assert_eq!(third["pagination"]["offset"], 4);
    let earn = get_ok(&app, &format!("{uri}?eventType=EARN")).await;
    assert_eq!(earn["pagination"]["total"], 5);
    let transfer = get_ok(&app, &format!("{uri}?eventType=TRANSFER")).await;
    assert_eq!(transfer["pagination"]["total"], 0);
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata).date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let dated = get_ok(&app, &format!("{uri}?fromDate={today}&toDate={today}")).await;
    assert_eq!(dated["pagination"]["total"], 5, "{dated}");
    let later = get_ok(&app, &format!("{uri}?fromDate={tomorrow}")).await;
    assert_eq!(later["pagination"]["total"], 0);
    for bad in [
        "limit=0",
        "limit=101",
        "offset=-1",
        "page=0",
        "eventType=SPEND",
        "fromDate=26-11-2026",
        "limit=x",
    ] {
        let r = app.get(&format!("{uri}?{bad}"), &app.basic()).await;
        assert_eq!(r.status.as_u16(), 400, "{bad}: {}", r.body);
        assert!(r.json()["errors"][0]["code"].is_i64(), "{bad}: {}", r.body);
    }
    let r = app.get("/v2/customers/999999/loyaltyEvents", &app.basic()).await;
    assert_eq!(r.v2_error_code(), 8015);
}

fn adjustment(action: &str, to: Option<&str>, validity: &str, upto: Value) -> Value {
    let mut body = json!({"programId": 0, "slabAction": action, "manualSlabActionValidity": validity,
        "manualSlabActionValidityUpto": upto, "slabChangeReason": "Won the tier giveaway"});
    if let Some(to) = to {
        body["toSlabName"] = json!(to);
    }
    body
}

async fn default_program_id(app: &TestApp) -> i64 {
    let list = app.get("/x/perks/v1/programs", &app.admin()).await.json();
    list["data"].as_array().unwrap().iter().find(|p| p["default"] == true).unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn adjust(app: &TestApp, mobile: &str, mut body: Value) -> TestResponse {
    if body["programId"] == 0 {
        body["programId"] = json!(default_program_id(app).await);
    }
    let uri = format!(
        "/v2/slab/manualSlabAdjustment?identifierName=mobile&identifierValue={mobile}&source=INSTORE"
    );
    app.post_json(&uri, &app.basic(), &body).await
}

async fn manual_tier_adjustment_moves_and_holds_the_tier(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845200005";
    let customer = add_customer(&app, m).await;
    let r = adjust(&app, m, adjustment("UPGRADE", Some("Gold"), "FIXED_DURATION", json!(30))).await;
    r.assert_status(200);
    assert!(r.json()["createdId"].as_i64().unwrap() > 0, "{}", r.body);
    assert_eq!(r.json()["warnings"], json!([]));
    let t = tier(&app, customer).await;
    assert_eq!(t["currentTierName"], "Gold", "{t}");
    let expected = (chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata).date_naive()
        + chrono::Days::new(30))
    .to_string();
    assert_eq!(t["tierExpiryDate"], json!(expected), "the end of the 30th local day");
    // Audited, with an event.
    let audit = app.audit(app.org.org_id, "CUSTOMER_TIER").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "UPGRADE");
    let events = count(&app, "domain_events WHERE event_type = 'tier.changed'").await;
    assert_eq!(events, 1);
    // The hold keeps the tier: a small bill does not re-assess it.
    sale(&app, m, "H-1", 10.0).await;
    assert_eq!(tier(&app, customer).await["currentTierName"], "Gold");
    // Extending the expiry by 10 days moves it from the current expiry.
    let r = adjust(
        &app,
        m,
        adjustment("EXTEND_CURRENT_TIER_EXPIRY_DATE", None, "FIXED_DURATION", json!("10")),
    )
    .await;
    r.assert_status(200);
    let expected = (chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata).date_naive()
        + chrono::Days::new(40))
    .to_string();
    assert_eq!(tier(&app, customer).await["tierExpiryDate"], json!(expected));
    // Renewing starts a new period at the tier, until a given date.
    let r =
        adjust(&app, m, adjustment("RENEWAL", Some("Gold"), "SPECIFIC_DATE", json!("2099-04-20")))
            .await;
    r.assert_status(200);
    let t = tier(&app, customer).await;
    assert_eq!(t["tierExpiryDate"], "2099-04-20");
    assert_eq!(t["tierExpiryDateISO"], "2099-04-20T18:29:59Z");
    // A downgrade to Silver, kept for the program's tier validity.
    let r = adjust(
        &app,
        m,
        adjustment("DOWNGRADE", Some("silver"), "AS_PER_TIER_STRATEGY", Value::Null),
    )
    .await;
    r.assert_status(200);
    let d = details(&app, customer).await;
    assert_eq!(d["currentSlab"], "Silver");
    // Every move is a tier change of record, each audited.
    assert_eq!(count(&app, "tier_changes").await, 4);
    assert_eq!(app.audit(app.org.org_id, "CUSTOMER_TIER").await.len(), 4);
    assert_consistent(&app, customer).await;
    // By id, too.
    let body = json!({"programId": default_program_id(&app).await, "slabAction": "UPGRADE",
        "toSlabName": "Gold", "manualSlabActionValidity": "FIXED_DURATION", "manualSlabActionValidityUpto": 5});
    let r = app
        .post_json(
            &format!("/v2/slab/manualSlabAdjustment?identifierName=id&identifierValue={customer}&source=INSTORE&type=CUSTOMER"),
            &app.basic(),
            &body,
        )
        .await;
    r.assert_status(200);
    assert_eq!(tier(&app, customer).await["currentTierName"], "Gold");
}

async fn reassessment_moves_a_manual_tier_at_the_next_bill(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845200006";
    let customer = add_customer(&app, m).await;
    let mut body = adjustment("UPGRADE", Some("Gold"), "FIXED_DURATION", json!(30));
    body["reassessTierOnNextActivity"] = json!(true);
    adjust(&app, m, body).await.assert_status(200);
    assert_eq!(tier(&app, customer).await["currentTierName"], "Gold");
    // The next bill re-evaluates: 1200 of purchases qualify for Silver only.
    let r = sale(&app, m, "R-1", 1200.0).await;
    let effects = r.json()["sideEffects"].clone();
    assert!(
        effects
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "tier" && e["changeType"] == "DOWNGRADE"),
        "{effects}"
    );
    assert_eq!(tier(&app, customer).await["currentTierName"], "Silver");
    // The hold is over: the engine moves the tier as usual again.
    sale(&app, m, "R-2", 4000.0).await;
    assert_eq!(tier(&app, customer).await["currentTierName"], "Gold");
    assert_consistent(&app, customer).await;
}

async fn a_manual_tier_ends_with_its_validity(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845200007";
    let customer = add_customer(&app, m).await;
    adjust(&app, m, adjustment("UPGRADE", Some("Gold"), "FIXED_DURATION", json!(10)))
        .await
        .assert_status(200);
    // The period ends without the renewal purchases: the tier falls one step, as the program says.
    run_jobs(&app, perks::db::now_millis() + 11 * DAY).await;
    let t = tier(&app, customer).await;
    assert_eq!(t["currentTierName"], "Silver", "{t}");
    // The hold ended with the period: a bill that qualifies moves the tier up again.
    sale(&app, m, "E-1", 6000.0).await;
    assert_eq!(tier(&app, customer).await["currentTierName"], "Gold");
}

async fn bad_tier_adjustments_write_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845200008";
    add_customer(&app, m).await;
    let before = (
        count(&app, "tier_changes").await,
        count(&app, "tier_manual_holds").await,
        count(&app, "domain_events").await,
        count(&app, "audit_log").await,
    );
    let cases: Vec<(Value, i64)> = vec![
        (adjustment("UPGRADE", Some("Platinum"), "FIXED_DURATION", json!(10)), 1102),
        (adjustment("UPGRADE", None, "FIXED_DURATION", json!(10)), 1102),
        (adjustment("UPGRADE", Some("Bronze"), "FIXED_DURATION", json!(10)), 1103),
        (adjustment("DOWNGRADE", Some("Bronze"), "FIXED_DURATION", json!(10)), 1103),
        (adjustment("RENEWAL", None, "FIXED_DURATION", json!(10)), 1103),
        (adjustment("EXTEND_CURRENT_TIER_EXPIRY_DATE", None, "FIXED_DURATION", json!(10)), 1103),
        (adjustment("UPGRADE", Some("Gold"), "FIXED_DURATION", json!(0)), 1104),
        (adjustment("UPGRADE", Some("Gold"), "FIXED_DURATION", json!("ten")), 1104),
        (adjustment("UPGRADE", Some("Gold"), "SPECIFIC_DATE", json!("2001-01-01")), 1104),
        (adjustment("UPGRADE", Some("Gold"), "SPECIFIC_DATE", json!("01/01/2099")), 1104),
        (adjustment("UPGRADE", Some("Gold"), "FOREVER", json!(1)), 1104),
        (adjustment("SIDEGRADE", Some("Gold"), "FIXED_DURATION", json!(1)), 400),
        (
            json!({"slabAction": "UPGRADE", "toSlabName": "Gold", "manualSlabActionValidity": "FIXED_DURATION", "manualSlabActionValidityUpto": 1}),
            400,
        ),
        (
            json!({"programId": 999999, "slabAction": "UPGRADE", "toSlabName": "Gold", "manualSlabActionValidity": "FIXED_DURATION", "manualSlabActionValidityUpto": 1}),
            1101,
        ),
    ];
    for (body, code) in cases {
        let r = adjust(&app, m, body.clone()).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    let mut long = adjustment("UPGRADE", Some("Gold"), "FIXED_DURATION", json!(1));
    long["slabChangeReason"] = json!("x".repeat(256));
    assert_eq!(adjust(&app, m, long).await.v2_error_code(), 400);
    let body = adjustment("UPGRADE", Some("Gold"), "FIXED_DURATION", json!(1));
    let uri = |q: &str| format!("/v2/slab/manualSlabAdjustment?{q}");
    let r = app
        .post_json(
            &uri(&format!(
                "identifierName=mobile&identifierValue={m}&source=INSTORE&type=USERGROUP2"
            )),
            &app.basic(),
            &body,
        )
        .await;
    assert_eq!(r.v2_error_code(), 400, "{}", r.body);
    let r = app
        .post_json(
            &uri("identifierName=mobile&identifierValue=919845299999&source=INSTORE"),
            &app.basic(),
            &body,
        )
        .await;
    assert_eq!(r.v2_error_code(), 8015, "{}", r.body);
    let r = app
        .post_json(
            &uri(&format!("identifierName=mobile&identifierValue={m}&source=NOWHERE")),
            &app.basic(),
            &body,
        )
        .await;
    assert_eq!(r.v2_error_code(), 8003, "{}", r.body);
    // Extending to a date before the current expiry is refused once the customer has one.
    adjust(&app, m, adjustment("UPGRADE", Some("Gold"), "SPECIFIC_DATE", json!("2099-01-01")))
        .await
        .assert_status(200);
    let mid = (
        count(&app, "tier_changes").await,
        count(&app, "tier_manual_holds").await,
        count(&app, "domain_events").await,
        count(&app, "audit_log").await,
    );
    assert_eq!(mid.0, before.0 + 1);
    let r = adjust(
        &app,
        m,
        adjustment("EXTEND_CURRENT_TIER_EXPIRY_DATE", None, "SPECIFIC_DATE", json!("2098-01-01")),
    )
    .await;
    assert_eq!(r.v2_error_code(), 1104, "{}", r.body);
    let r =
        adjust(&app, m, adjustment("RENEWAL", Some("Silver"), "FIXED_DURATION", json!(5))).await;
    assert_eq!(r.v2_error_code(), 1103, "{}", r.body);
    let after = (
        count(&app, "tier_changes").await,
        count(&app, "tier_manual_holds").await,
        count(&app, "domain_events").await,
        count(&app, "audit_log").await,
    );
    assert_eq!(mid, after);
}

async fn another_orgs_customer_is_not_found(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845200009";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "O-1", 1200.0).await;
    let other = app.another_org("Other").await;
    let auth = basic_header(&other.till.username, &other.till.password);
    for path in ["loyaltyDetails", "tierDetails", "loyaltyEvents", "trackers"] {
        let r = app.get(&format!("/v2/customers/{customer}/{path}"), &auth).await;
        assert_eq!(r.v2_error_code(), 8015, "{path}: {}", r.body);
    }
    let r = app
        .get(&format!("/v2/customers/lookup/loyaltyDetails?source=INSTORE&identifierName=mobile&identifierValue={m}"), &auth)
        .await;
    assert_eq!(r.v2_error_code(), 8015);
    let changes = count(&app, "tier_changes").await;
    let body = json!({"programId": default_program_id(&app).await, "slabAction": "UPGRADE", "toSlabName": "Gold",
        "manualSlabActionValidity": "FIXED_DURATION", "manualSlabActionValidityUpto": 5});
    for q in [
        format!("identifierName=id&identifierValue={customer}"),
        format!("identifierName=mobile&identifierValue={m}"),
    ] {
        let r = app
            .post_json(&format!("/v2/slab/manualSlabAdjustment?{q}&source=INSTORE"), &auth, &body)
            .await;
        assert_eq!(r.v2_error_code(), 8015, "{}", r.body);
    }
    assert_eq!(count(&app, "tier_changes").await, changes);
    assert_eq!(tier(&app, customer).await["currentTierName"], "Silver");
}
