//! Alternate currencies through the API: the admin catalogue (audited), earn rules that award a
//! currency, balances, embeds and ledger reads per currency, expiry, redemption (also
//! concurrent) and its reversal, returns — with `perks verify` clean after each — and unknown
//! currencies refused with 840 and nothing written; deductions and manual allocations of a
//! currency (revoked by a return of their bill).

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};
use crate::transactions::{add_customer, set_program};

backend_tests!(
    the_admin_api_defines_currencies,
    earn_rules_award_currencies_beside_points,
    ledger_reads_cover_currencies_on_request,
    currency_redemption_reversal_return_and_expiry_keep_the_ledger_verified,
    concurrent_currency_redemptions_never_overspend,
    unknown_or_inactive_currencies_are_refused,
    currencies_are_deducted_by_hand_within_the_balance,
    currencies_allocated_by_hand_are_revoked_by_a_return,
);

const DAY: i64 = 86_400_000;

async fn create_currency(app: &TestApp, body: Value) -> TestResponse {
    app.post_json("/x/perks/v1/currencies", &app.admin(), &body).await
}

async fn stars_and_miles(app: &TestApp) {
    let stars = json!({"name": "stars", "description": "Stars for reviews",
        "expiry": {"type": "rolling", "days": 10}});
    create_currency(app, stars).await.assert_status(201);
    create_currency(app, json!({"name": "Miles"})).await.assert_status(201);
}

fn program() -> Value {
    json!({"name": "Default", "default": true,
        "tiers": [{"name": "Bronze"},
                  {"name": "Silver", "upgrade": {"metric": "lifetimePoints", "atLeast": 110}}],
        "earn": [{"name": "base", "on": "transaction", "points": "bill.amount * 0.1"},
                 {"name": "star-bill", "on": "transaction", "points": "bill.amount * 0.01", "currency": "stars"},
                 {"name": "mile-bill", "on": "transaction", "points": "1", "currency": "MILES"},
                 {"name": "star-signup", "on": "registration", "points": "5", "currency": "stars"}],
        "expiry": {"type": "rolling", "days": 30},
        "redemption": {"pointValue": 1, "validationCode": "never"}})
}

async fn sale(app: &TestApp, mobile: &str, number: &str, amount: f64) -> Value {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    let body = json!({"type": "REGULAR", "billNumber": number, "billAmount": amount});
    let r = app.post_json(&uri, &app.basic(), &body).await;
    r.assert_status(200);
    r.json()
}

async fn get_ok(app: &TestApp, uri: &str) -> Value {
    let r = app.get(uri, &app.basic()).await;
    r.assert_status(200);
    r.json()
}

async fn balance(app: &TestApp, customer: i64) -> Value {
    get_ok(app, &format!("/v2/customers/{customer}/points/balance")).await
}

/// The main balance of one currency in the default program (0 when not held).
async fn held(app: &TestApp, customer: i64, name: &str) -> f64 {
    let b = balance(app, customer).await;
    b["alternateCurrencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["alternateCurrencyName"] == name)
        .map(|c| c["mainPoints"].as_f64().unwrap())
        .unwrap_or(0.0)
}

async fn verify_clean(app: &TestApp) {
    let mut conn = app.state.db.read().await.unwrap();
    let report = perks::points::ledger::verify_report(&mut conn, None, 10).await.unwrap();
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM {table}");
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(&sql).fetch_one(e).await).unwrap()
}

async fn redeem_stars(app: &TestApp, customer: i64, amount: f64, extra: Value) -> TestResponse {
    let mut body = json!({"redemptionType": "ALTERNATE_CURRENCY", "alternateCurrencyName": "stars",
        "points": amount, "transactionNumber": "S-1"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.post_json(&format!("/v2/customers/{customer}/redemptions"), &app.basic(), &body).await
}

async fn run_jobs(app: &TestApp, now: i64) {
    for unlock in [true, false] {
        while perks::points::ledger::process_due_lots(&app.state.db, now, unlock, 100)
            .await
            .unwrap()
            == 100
        {}
    }
}

async fn the_admin_api_defines_currencies(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let r = create_currency(
        &app,
        json!({"name": "Stars", "description": "For reviews",
        "expiry": {"type": "rolling", "days": 10}}),
    )
    .await;
    r.assert_status(201);
    let created = r.json()["data"].clone();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "Stars");
    assert_eq!(created["expiry"], json!({"type": "rolling", "days": 10}));
    assert_eq!(created["active"], true);
    let list = app.get("/x/perks/v1/currencies", &app.admin()).await;
    list.assert_status(200);
    assert_eq!(list.json()["data"].as_array().unwrap().len(), 1);
    let uri = format!("/x/perks/v1/currencies/{id}");
    let r = app
        .put_json(&uri, &app.admin(), &json!({"name": "stars", "description": "Earned by reviewing", "expiry": null, "active": false}))
        .await;
    r.assert_status(200);
    let updated = r.json()["data"].clone();
    assert_eq!(updated["description"], "Earned by reviewing");
    assert_eq!(updated["expiry"], Value::Null);
    assert_eq!(updated["active"], false);
    assert_eq!(updated["version"], 2);
    assert_eq!(app.get(&uri, &app.admin()).await.json()["data"], updated);
    // Audited, with events.
    let audit = app.audit(app.org.org_id, "CURRENCY").await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["UPDATE", "CREATE"]);
    assert_eq!(count(&app, "domain_events WHERE event_type LIKE 'currency.%'").await, 2);

    // Bad input writes nothing.
    let before = (count(&app, "currencies").await, count(&app, "audit_log").await);
    let cases: Vec<(Value, i64)> = vec![
        (json!({"name": "STARS"}), 1207),
        (json!({"name": "points"}), 400),
        (json!({"name": "9lives"}), 400),
        (json!({"name": "a".repeat(51)}), 400),
        (json!({"name": "gems", "expiry": {"type": "rolling", "days": 10, "months": 2}}), 400),
        (json!({"name": "gems", "expiry": {"type": "sometimes"}}), 400),
        (json!({"name": "gems", "colour": "red"}), 400),
        (json!({"description": "no name"}), 400),
    ];
    for (body, code) in cases {
        let r = create_currency(&app, body.clone()).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    for (body, code) in [
        (json!({"name": "Moons"}), 400),
        (json!({"expiry": {"type": "fixedDate"}}), 400),
        (json!({"active": "yes"}), 400),
        (json!({"colour": "red"}), 400),
    ] {
        let r = app.put_json(&uri, &app.admin(), &body).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    app.put_json("/x/perks/v1/currencies/999999", &app.admin(), &json!({"active": true}))
        .await
        .assert_status(404);
    app.get("/x/perks/v1/currencies/999999", &app.admin()).await.assert_status(404);
    assert_eq!(before, (count(&app, "currencies").await, count(&app, "audit_log").await));
    assert_eq!(app.get(&uri, &app.admin()).await.json()["data"], updated);
    // Admin token only; another org does not see it.
    app.get("/x/perks/v1/currencies", &app.basic()).await.assert_status(403);
    let other = app.another_org("Other").await;
    let other_admin = format!("Bearer {}", other.admin_token);
    app.get(&uri, &other_admin).await.assert_status(404);
    let other_list = app.get("/x/perks/v1/currencies", &other_admin).await;
    assert_eq!(other_list.json()["data"], json!([]));
    // The name is free in another org.
    let r = app.post_json("/x/perks/v1/currencies", &other_admin, &json!({"name": "Stars"})).await;
    r.assert_status(201);
}

async fn earn_rules_award_currencies_beside_points(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    stars_and_miles(&app).await;
    set_program(&app, &program()).await;
    let m = "919845400001";
    let body = json!({"profiles": [{"firstName": "Ana", "identifiers": [{"type": "mobile", "value": m}]}]});
    let r = app.post_json("/v2/customers", &app.basic(), &body).await;
    r.assert_status(200);
    assert_eq!(
        r.json()["sideEffects"],
        json!([{"type": "alternateCurrency", "alternateCurrencyName": "stars", "awardedValue": 5.0}])
    );
    let customer = r.json()["createdId"].as_i64().unwrap();
    let bill = sale(&app, m, "C-1", 1000.0).await;
    let effects = bill["sideEffects"].as_array().unwrap().clone();
    assert!(effects.contains(&json!({"type": "points", "awardedPoints": 100.0})), "{effects:?}");
    assert!(effects.contains(&json!({"type": "alternateCurrency", "alternateCurrencyName": "stars", "awardedValue": 10.0})));
    assert!(effects.contains(
        &json!({"type": "alternateCurrency", "alternateCurrencyName": "Miles", "awardedValue": 1.0})
    ));

    // Points are points only: balance, lifetime and tier metrics ignore the currencies.
    let b = balance(&app, customer).await;
    assert_eq!(b["mainPoints"], 100.0, "{b}");
    assert_eq!(held(&app, customer, "stars").await, 15.0);
    assert_eq!(held(&app, customer, "Miles").await, 1.0);
    let details =
        get_ok(&app, &format!("/v2/customers/{customer}/loyaltyDetails")).await["data"][0].clone();
    assert_eq!(details["lifetimePoints"], 100.0);
    assert_eq!(details["currentSlab"], "Bronze", "110 lifetime points needed: {details}");
    let alternate = details["alternateCurrencies"].as_array().unwrap();
    assert_eq!(alternate.len(), 2, "{details}");
    // The customer embed: balances with their own expiry schedules (stars expire in 10 days,
    // miles follow the program's 30).
    let body = get_ok(
        &app,
        &format!("/v2/customers/{customer}?embed=alternateCurrencies,expirySchedules"),
    )
    .await;
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata).date_naive();
    let stars = body["alternateCurrencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["alternateCurrencyName"] == "stars")
        .unwrap()
        .clone();
    assert_eq!(stars["mainPoints"], 15.0);
    assert_eq!(stars["lifetimePoints"], 15.0);
    let star_rows = stars["expirySchedules"].as_array().unwrap();
    assert_eq!(star_rows.len(), 2, "signup and bill awards are two points types: {stars}");
    assert_eq!(star_rows.iter().map(|r| r["points"].as_f64().unwrap()).sum::<f64>(), 15.0);
    assert_eq!(
        stars["expirySchedules"][0]["expiryDate"],
        json!((today + chrono::Days::new(10)).to_string())
    );
    assert_eq!(stars["expirySchedules"][0]["expiryType"], "rolling");
    let miles = body["alternateCurrencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["alternateCurrencyName"] == "Miles")
        .unwrap()
        .clone();
    assert_eq!(
        miles["expirySchedules"][0]["expiryDate"],
        json!((today + chrono::Days::new(30)).to_string())
    );
    let points_total: f64 = body["expirySchedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["points"].as_f64().unwrap())
        .sum();
    assert_eq!(points_total, 100.0, "points schedules hold points only: {body}");
    // Trackers count what each currency earned.
    let trackers = get_ok(&app, &format!("/v2/customers/{customer}/trackers")).await;
    let star_tracker = trackers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "ALTERNATE_CURRENCIES" && t["name"] == "stars")
        .cloned()
        .unwrap();
    assert_eq!(star_tracker["value"], 15.0);
    // Dry runs show the currencies apart from the points.
    let programs = app.get("/x/perks/v1/programs", &app.admin()).await.json();
    let program_id = programs["data"][0]["id"].as_i64().unwrap();
    let dry = app
        .post_json(
            &format!("/x/perks/v1/programs/{program_id}/dryRun"),
            &app.admin(),
            &json!({"customerId": customer, "bill": {"type": "REGULAR", "billNumber": "DRY", "billAmount": 200}}),
        )
        .await;
    dry.assert_status(200);
    assert_eq!(dry.json()["data"]["totalPoints"], 20.0, "{}", dry.body);
    assert_eq!(
        dry.json()["data"]["alternateCurrencies"][0],
        json!({"alternateCurrencyName": "stars", "value": 2.0})
    );
    verify_clean(&app).await;
}

async fn ledger_reads_cover_currencies_on_request(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    stars_and_miles(&app).await;
    set_program(&app, &program()).await;
    let m = "919845400002";
    add_customer(&app, m).await;
    sale(&app, m, "L-1", 1000.0).await;
    let lookup = format!("identifierName=mobile&identifierValue={m}&source=INSTORE");
    let names = |body: &Value| -> Vec<Value> {
        body["ledgerDetails"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["alternateCurrencyName"].clone())
            .collect()
    };
    let plain = get_ok(&app, &format!("/v2/pointsLedger/getCustomerLedgerInfo?{lookup}")).await;
    assert_eq!(names(&plain), vec![Value::Null], "points only by default: {plain}");
    assert_eq!(plain["ledgerDetails"]["entries"][0]["points"], 100.0);
    let all = get_ok(&app, &format!("/v2/pointsLedger/getCustomerLedgerInfo?{lookup}&includeAlternateCurrencies=true&limit=100")).await;
    let mut got: Vec<String> =
        names(&all).iter().map(|n| n.as_str().unwrap_or("points").to_string()).collect();
    got.sort();
    assert_eq!(got, ["Miles", "points", "stars", "stars"], "{all}");
    let stars_entry = all["ledgerDetails"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["alternateCurrencyName"] == "stars" && e["points"] == 10.0)
        .cloned()
        .unwrap();
    assert_eq!(stars_entry["balance"], 15.0, "running balance per currency: {all}");
    let some = get_ok(
        &app,
        &format!("/v2/pointsLedger/getCustomerLedgerInfo?{lookup}&alternateCurrencyNames=miles"),
    )
    .await;
    let mut got: Vec<Value> = names(&some);
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json!("Miles"), Value::Null]);
    let r = app
        .get(
            &format!("/v2/pointsLedger/getCustomerLedgerInfo?{lookup}&alternateCurrencyNames=gems"),
            &app.basic(),
        )
        .await;
    assert_eq!(r.v2_error_code(), 840, "{}", r.body);
    let balances = get_ok(
        &app,
        &format!(
            "/v2/pointsLedger/getCustomerLedgerBalance?{lookup}&includeAlternateCurrencies=true"
        ),
    )
    .await;
    let rows = balances["ledgerDetails"]["balances"].as_array().unwrap();
    let stars_row = rows.iter().find(|r| r["alternateCurrencyName"] == "stars").unwrap();
    assert_eq!(stars_row["closingBalance"], 15.0, "{balances}");
    let plain_balances =
        get_ok(&app, &format!("/v2/pointsLedger/getCustomerLedgerBalance?{lookup}")).await;
    assert_eq!(plain_balances["ledgerDetails"]["balances"].as_array().unwrap().len(), 1);
    let r = app
        .get(
            &format!(
                "/v2/pointsLedger/getCustomerLedgerBalance?{lookup}&alternateCurrencyNames=gems"
            ),
            &app.basic(),
        )
        .await;
    assert_eq!(r.v2_error_code(), 840);
}

async fn currency_redemption_reversal_return_and_expiry_keep_the_ledger_verified(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    stars_and_miles(&app).await;
    set_program(&app, &program()).await;
    let m = "919845400003";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "R-1", 1000.0).await;
    assert_eq!(held(&app, customer, "stars").await, 15.0);

    // A check writes nothing; a redemption spends stars only.
    let r = redeem_stars(&app, customer, 5.0, json!({"commit": false})).await;
    r.assert_status(200);
    assert_eq!(r.json()["balance"], 15.0);
    assert_eq!(r.json()["redemptionId"], Value::Null);
    let r = redeem_stars(&app, customer, 5.0, json!({})).await;
    r.assert_status(200);
    assert_eq!(r.json()["balance"], 10.0, "{}", r.body);
    let redemption = r.json()["redemptionId"].as_i64().unwrap();
    assert_eq!(held(&app, customer, "stars").await, 10.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 100.0);
    assert_eq!(app.audit(app.org.org_id, "CURRENCY_REDEMPTION").await.len(), 1);
    verify_clean(&app).await;

    // Refusals write nothing.
    let before = (count(&app, "ledger_entries").await, count(&app, "points_redemptions").await);
    let r = redeem_stars(&app, customer, 11.0, json!({})).await;
    assert_eq!(r.v2_error_code(), 803, "{}", r.body);
    let r = redeem_stars(&app, customer, 1.5, json!({})).await;
    assert_eq!(r.v2_error_code(), 801);
    let r = redeem_stars(&app, customer, 1.0, json!({"alternateCurrencyName": "gems"})).await;
    assert_eq!(r.v2_error_code(), 840);
    let r = redeem_stars(&app, customer, 1.0, json!({"alternateCurrencyName": null})).await;
    assert_eq!(r.v2_error_code(), 400);
    let r = redeem_stars(&app, customer, 1.0, json!({"programId": 999999})).await;
    assert_eq!(r.v2_error_code(), 1101);
    let r = redeem_stars(&app, 999999, 1.0, json!({})).await;
    assert_eq!(r.v2_error_code(), 8015);
    let other = app.another_org("Other").await;
    let other_auth = basic_header(&other.till.username, &other.till.password);
    let body = json!({"redemptionType": "ALTERNATE_CURRENCY", "alternateCurrencyName": "stars", "points": 1});
    let r =
        app.post_json(&format!("/v2/customers/{customer}/redemptions"), &other_auth, &body).await;
    assert_eq!(r.v2_error_code(), 8015, "{}", r.body);
    assert_eq!(
        before,
        (count(&app, "ledger_entries").await, count(&app, "points_redemptions").await)
    );

    // The events still add up to the points balance, with the currency redemption listed.
    let events = get_ok(&app, &format!("/v2/customers/{customer}/loyaltyEvents?limit=100")).await;
    let list = events["data"].as_array().unwrap();
    assert!(list.iter().any(|e| e["eventName"] == "AlternateCurrencyRedemption"), "{events}");
    let sum: f64 = list.iter().map(|e| e["points"].as_f64().unwrap()).sum();
    assert_eq!(sum, 100.0);

    // Reversal gives the stars back, once.
    let r = app
        .post_json("/v2/points/reverse", &app.basic(), &json!({"redemptionId": redemption}))
        .await;
    r.assert_status(200);
    assert_eq!(held(&app, customer, "stars").await, 15.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 100.0);
    let again = app
        .post_json("/v2/points/reverse", &app.basic(), &json!({"redemptionId": redemption}))
        .await;
    assert_eq!(again.v2_error_code(), 812);
    verify_clean(&app).await;

    // A full return takes back the bill's stars and miles with its points; the signup stars stay.
    let uri = format!("/v2/transactions?identifierName=mobile&identifierValue={m}&source=INSTORE");
    let back = json!({"type": "RETURN", "returnType": "FULL", "billNumber": "R-1"});
    app.post_json(&uri, &app.basic(), &back).await.assert_status(200);
    assert_eq!(held(&app, customer, "stars").await, 5.0);
    assert_eq!(held(&app, customer, "Miles").await, 0.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 0.0);
    verify_clean(&app).await;

    // Stars expire after their own 10 days; the new bill's points (30 days) stay.
    sale(&app, m, "R-2", 500.0).await;
    run_jobs(&app, perks::db::now_millis() + 11 * DAY).await;
    assert_eq!(held(&app, customer, "stars").await, 0.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 50.0);
    let body = get_ok(&app, &format!("/v2/customers/{customer}?embed=alternateCurrencies")).await;
    let stars = body["alternateCurrencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["alternateCurrencyName"] == "stars")
        .unwrap()
        .clone();
    assert_eq!(stars["expired"], 10.0, "{body}");
    assert_eq!(stars["returned"], 10.0);
    assert_eq!(stars["lifetimePoints"], 10.0, "awarded 5 + 10 + 5, 10 returned: {body}");
    verify_clean(&app).await;
    let mut conn = app.state.db.read().await.unwrap();
    let report = perks::points::ledger::verify_report(&mut conn, None, 10).await.unwrap();
    assert!(report.checked >= 3, "points and both currencies are checked: {report:?}");
}

async fn concurrent_currency_redemptions_never_overspend(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    stars_and_miles(&app).await;
    set_program(&app, &program()).await;
    let m = "919845400004";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "X-1", 10000.0).await; // 100 stars + 5 at signup
    let mut handles = Vec::new();
    for _ in 0..60 {
        let router = app.router.clone();
        let auth = app.basic();
        handles.push(tokio::spawn(async move {
            use tower::ServiceExt;
            let body = json!({"redemptionType": "ALTERNATE_CURRENCY", "alternateCurrencyName": "stars", "points": 5});
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
    assert_eq!(ok, 21);
    assert_eq!(held(&app, customer, "stars").await, 0.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 1000.0);
    verify_clean(&app).await;
}

async fn unknown_or_inactive_currencies_are_refused(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    stars_and_miles(&app).await;
    let mut doc = program();
    doc["earn"][1]["currency"] = json!("gems");
    let list = app.get("/x/perks/v1/programs", &app.admin()).await.json();
    let id = list["data"][0]["id"].as_i64().unwrap();
    let version = list["data"][0]["version"].clone();
    let r = app.put_json(&format!("/x/perks/v1/programs/{id}"), &app.admin(), &doc).await;
    assert_eq!(r.v2_error_code(), 840, "{}", r.body);
    assert!(r.body.contains("earn[1].currency"), "{}", r.body);
    let after = app.get("/x/perks/v1/programs", &app.admin()).await.json();
    assert_eq!(after["data"][0]["version"], version, "nothing written");

    // A currency deactivated later earns nothing more (the points still do), and a program
    // naming it can no longer be saved.
    set_program(&app, &program()).await;
    let stars_id = app.get("/x/perks/v1/currencies", &app.admin()).await.json()["data"][0]["id"]
        .as_i64()
        .unwrap();
    app.put_json(
        &format!("/x/perks/v1/currencies/{stars_id}"),
        &app.admin(),
        &json!({"active": false}),
    )
    .await
    .assert_status(200);
    let m = "919845400005";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "I-1", 1000.0).await;
    assert_eq!(held(&app, customer, "stars").await, 0.0);
    assert_eq!(held(&app, customer, "Miles").await, 1.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 100.0);
    let r = app.put_json(&format!("/x/perks/v1/programs/{id}"), &app.admin(), &program()).await;
    assert_eq!(r.v2_error_code(), 840, "{}", r.body);
    verify_clean(&app).await;
}

/// Row counts of the tables a deduction or an allocation writes.
async fn writes(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "ledger_entries",
        "ledger_lot_movements",
        "point_lots",
        "points_adjustments",
        "points_manual_allocations",
        "domain_events",
        "audit_log",
    ] {
        counts.push(count(app, table).await);
    }
    counts
}

async fn currencies_are_deducted_by_hand_within_the_balance(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    stars_and_miles(&app).await;
    set_program(&app, &program()).await;
    let m = "919845400006";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "D-1", 1000.0).await;
    assert_eq!(held(&app, customer, "stars").await, 15.0);
    let by_id = format!("/v2/customers/{customer}/negativePointsAdjustment?source=INSTORE");
    let r = app
        .post_json(
            &by_id,
            &app.basic(),
            &json!({"reasonOfReturn": "review removed", "alternateCurrencyName": "stars",
                "alternateCurrencyToBeAdjusted": 4}),
        )
        .await;
    r.assert_status(200);
    let got = r.json();
    assert_eq!(got["alternateCurrencyName"], "stars", "{}", r.body);
    assert_eq!(got["alternateCurrencyDeducted"], 4.0);
    assert_eq!(got["pointsDeducted"], 0.0);
    assert_eq!(got["balance"], 11.0);
    assert_eq!(held(&app, customer, "stars").await, 11.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 100.0, "points untouched");
    // The lookup form; the name in any case; pointsToBeAdjusted stands in for the amount.
    let lookup = format!(
        "/v2/customers/lookup/negativePointsAdjustment?identifierName=mobile&identifierValue={m}&source=INSTORE"
    );
    let r = app
        .post_json(
            &lookup,
            &app.basic(),
            &json!({"reasonOfReturn": "x", "alternateCurrencyName": "STARS", "pointsToBeAdjusted": 1}),
        )
        .await;
    r.assert_status(200);
    assert_eq!(held(&app, customer, "stars").await, 10.0);
    verify_clean(&app).await;

    // Refusals write nothing: unknown or inactive currency, bad amounts, more than the balance,
    // an amount without a currency, another currency's award.
    let miles = app.get("/x/perks/v1/currencies", &app.admin()).await.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Miles")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    app.put_json(
        &format!("/x/perks/v1/currencies/{miles}"),
        &app.admin(),
        &json!({"active": false}),
    )
    .await
    .assert_status(200);
    let points_lot = {
        let mut conn = app.state.db.read().await.unwrap();
        perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(
            "SELECT id FROM point_lots WHERE customer_id = $1 AND currency_id = 0 LIMIT 1"
        )
        .bind(customer)
        .fetch_one(e)
        .await)
        .unwrap()
    };
    let untouched = writes(&app).await;
    let stars = |amount: Value| json!({"reasonOfReturn": "x", "alternateCurrencyName": "stars", "alternateCurrencyToBeAdjusted": amount});
    let mut pointed = stars(json!(1));
    pointed["pointsAwardedId"] = json!(points_lot);
    let bad = [
        (
            json!({"reasonOfReturn": "x", "alternateCurrencyName": "gems", "alternateCurrencyToBeAdjusted": 1}),
            840,
        ),
        (
            json!({"reasonOfReturn": "x", "alternateCurrencyName": "Miles", "alternateCurrencyToBeAdjusted": 1}),
            840,
        ),
        (stars(json!(0)), 801),
        (stars(json!(-2)), 801),
        (stars(json!(1.5)), 801),
        (stars(json!("x")), 801),
        (stars(json!(11)), 803),
        (json!({"reasonOfReturn": "x", "alternateCurrencyToBeAdjusted": 1}), 400),
        (json!({"reasonOfReturn": "x", "alternateCurrencyName": "stars"}), 400),
        (json!({"alternateCurrencyName": "stars", "alternateCurrencyToBeAdjusted": 1}), 400),
        (pointed, 841),
    ];
    for (body, code) in bad {
        let r = app.post_json(&lookup, &app.basic(), &body).await;
        assert_eq!(r.v2_error_code(), code, "{body}: {}", r.body);
    }
    assert_eq!(writes(&app).await, untouched);
    assert_eq!(held(&app, customer, "stars").await, 10.0);

    // The ledger read shows the deductions as ADJUST entries of the currency.
    let lookup_q = format!("identifierName=mobile&identifierValue={m}&source=INSTORE");
    let entries = get_ok(
        &app,
        &format!("/v2/pointsLedger/getCustomerLedgerInfo?{lookup_q}&alternateCurrencyNames=stars"),
    )
    .await;
    let adjusts: Vec<f64> = entries["ledgerDetails"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ledgerEntryType"] == "ADJUST" && e["alternateCurrencyName"] == "stars")
        .map(|e| e["points"].as_f64().unwrap())
        .collect();
    assert_eq!(adjusts, vec![-1.0, -4.0], "{entries}");

    // With the org's consent a deduction may take the currency below zero.
    let config = json!({"keyName": "ALLOW_NEGATIVE_BALANCE_ON_RETURN", "value": "true"});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
    let r = app.post_json(&lookup, &app.basic(), &stars(json!(12))).await;
    r.assert_status(200);
    assert_eq!(r.json()["negativeBalance"], 2.0, "{}", r.body);
    assert_eq!(r.json()["balance"], -2.0);
    assert_eq!(held(&app, customer, "stars").await, -2.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 100.0);
    assert_eq!(app.audit(app.org.org_id, "POINTS_ADJUSTMENT").await.len(), 3);
    assert_eq!(count(&app, "domain_events WHERE event_type = 'currency.deducted'").await, 3);
    assert_eq!(count(&app, "points_adjustments WHERE currency_id > 0").await, 3);
    verify_clean(&app).await;
}

async fn currencies_allocated_by_hand_are_revoked_by_a_return(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    stars_and_miles(&app).await;
    set_program(&app, &program()).await;
    let m = "919845400007";
    let customer = add_customer(&app, m).await; // 5 signup stars
    let bill = sale(&app, m, "A-1", 1000.0).await["createdId"].as_i64().unwrap();
    assert_eq!(held(&app, customer, "stars").await, 15.0);
    let currencies = app.get("/x/perks/v1/currencies", &app.admin()).await.json();
    let id_of = |name: &str| {
        currencies["data"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let program_id = app.get("/x/perks/v1/programs", &app.admin()).await.json()["data"][0]["id"]
        .as_i64()
        .unwrap();
    let item = |extra: Value| {
        let mut v = json!({"eventName": "TransactionAdd", "eventSourceId": bill.to_string(),
            "programId": program_id, "currencyType": "ALTERNATE_CURRENCY",
            "awardStrategyId": 1, "expiryStrategyId": 1, "sourceValue": 200,
            "lookupParams": {"entityType": "CUSTOMER", "identifierType": "mobile", "identifierValue": m, "source": "INSTORE"}});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    // Earn rule 1 (10% of the amount) over 200: 20 stars, by name, by id, and by name again.
    let awarded = "domain_events WHERE event_type = 'currency.awarded'";
    let awarded_before = count(&app, awarded).await;
    let r = app
        .post_json(
            "/v2/customers/bulk/manualCurrencyAllocate",
            &app.basic(),
            &json!([
                item(json!({"alternateCurrencyIdentifier": "stars"})),
                item(json!({"alternateCurrencyIdentifier": id_of("stars").to_string()})),
                item(json!({"alternateCurrencyName": "Stars", "currencyType": "REGULAR"}))
            ]),
        )
        .await;
    r.assert_status(200);
    let data = r.json()["data"].as_array().unwrap().clone();
    for d in &data {
        assert_eq!(d["awardedPoints"], 20.0, "{}", r.body);
        assert_eq!(d["alternateCurrencyName"], "stars");
        assert!(d["expiryDate"].is_string(), "the currency's own expiry: {d}");
    }
    assert_eq!(held(&app, customer, "stars").await, 75.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 100.0, "points untouched");
    assert_eq!(count(&app, awarded).await, awarded_before + 3);
    assert_eq!(app.audit(app.org.org_id, "POINTS_ALLOCATION").await.len(), 3);
    verify_clean(&app).await;

    // Refusals: unknown or inactive currency (by name or id), promised currency, a currency
    // type without a currency; nothing written.
    app.put_json(
        &format!("/x/perks/v1/currencies/{}", id_of("Miles")),
        &app.admin(),
        &json!({"active": false}),
    )
    .await
    .assert_status(200);
    let untouched = writes(&app).await;
    let bad = [
        (item(json!({"alternateCurrencyIdentifier": "gems"})), 840),
        (item(json!({"alternateCurrencyIdentifier": "999999"})), 840),
        (item(json!({"alternateCurrencyIdentifier": "Miles"})), 840),
        (item(json!({"alternateCurrencyIdentifier": id_of("Miles").to_string()})), 840),
        (item(json!({"alternateCurrencyIdentifier": "stars", "currencyType": "PROMISED"})), 400),
        (item(json!({})), 400),
        (item(json!({"alternateCurrencyIdentifier": "stars", "sourceValue": -3})), 400),
    ];
    let items: Vec<Value> = bad.iter().map(|(v, _)| v.clone()).collect();
    let r = app
        .post_json("/v2/customers/bulk/manualCurrencyAllocate", &app.basic(), &json!(items))
        .await;
    r.assert_status(400);
    for (i, (_, code)) in bad.iter().enumerate() {
        assert_eq!(r.json()["data"][i]["errors"][0]["code"], *code, "item {i}: {}", r.body);
    }
    assert_eq!(writes(&app).await, untouched);

    // A partial return of the bill revokes the three allocations whole (60 stars), beside the
    // return's own share of what the bill earned (40% of the 10 stars and of the 100 points).
    let uri = format!("/v2/transactions?identifierName=mobile&identifierValue={m}&source=INSTORE");
    let ret =
        json!({"type": "RETURN", "returnType": "AMOUNT", "billNumber": "A-1", "billAmount": 400.0});
    app.post_json(&uri, &app.basic(), &ret).await.assert_status(200);
    assert_eq!(held(&app, customer, "stars").await, 11.0);
    assert_eq!(balance(&app, customer).await["mainPoints"], 60.0);
    assert_eq!(count(&app, "points_manual_allocations WHERE revoked_at IS NOT NULL").await, 3);
    assert_eq!(
        count(&app, "domain_events WHERE event_type = 'currency.allocation_revoked'").await,
        3
    );
    // A second return revokes nothing more by hand.
    app.post_json(&uri, &app.basic(), &ret).await.assert_status(200);
    assert_eq!(held(&app, customer, "stars").await, 7.0);
    verify_clean(&app).await;
}
