//! Program-driven loyalty through the API: registration points, dry runs, promised points that
//! unlock, expiry runs, and tier renewal and downgrade at the end of the validity period.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse};
use crate::transactions::{add_customer, set_program};

backend_tests!(
    registration_rules_award_on_enrolment,
    non_loyalty_customers_earn_nothing_on_enrolment,
    dry_run_explains_each_rule_and_writes_nothing,
    dry_run_refuses_bad_requests,
    promised_points_unlock_on_their_date,
    points_expire_when_their_date_passes,
    tiers_renew_or_fall_at_the_end_of_their_period,
    downgrade_to_qualifying_picks_the_tier_earned,
);

const DAY: i64 = 86_400_000;

fn program(extra: Value) -> Value {
    let mut doc = json!({"name": "Default", "default": true,
        "tiers": [{"name": "Bronze"},
                  {"name": "Silver", "upgrade": {"metric": "lifetimePurchases", "atLeast": 1000}},
                  {"name": "Gold", "upgrade": {"metric": "lifetimePurchases", "atLeast": 5000}}],
        "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 500}, "downgrade": "oneDown"},
        "earn": [{"name": "base", "on": "transaction", "when": "true", "points": "bill.amount * 0.1"},
                 {"name": "signup", "on": "registration", "points": "100"}]});
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

async fn post_bill(app: &TestApp, mobile: &str, number: &str, amount: f64) -> TestResponse {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    let body = json!({"type": "REGULAR", "billNumber": number, "billAmount": amount});
    let response = app.post_json(&uri, &app.basic(), &body).await;
    response.assert_status(200);
    response
}

async fn mlp(app: &TestApp, customer: i64) -> Value {
    let response = app.get(&format!("/v2/customers/{customer}?embed=mlp"), &app.basic()).await;
    response.assert_status(200);
    response.json()["mlp"][0].clone()
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

async fn registration_rules_award_on_enrolment(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let body = json!({"profiles": [{"firstName": "Ana", "identifiers": [{"type": "mobile", "value": "919845100001"}]}]});
    let response = app.post_json("/v2/customers", &app.basic(), &body).await;
    response.assert_status(200);
    assert_eq!(
        response.json()["sideEffects"],
        json!([{"type": "points", "awardedPoints": 100.0}]),
        "{}",
        response.body
    );
    let customer = response.json()["createdId"].as_i64().unwrap();
    assert_eq!(mlp(&app, customer).await["loyaltyPoints"], 100.0);
    // Adding the same customer again updates it and awards nothing more.
    let again = app.post_json("/v2/customers", &app.basic(), &body).await;
    assert_eq!(again.json()["sideEffects"], json!([]));
    assert_eq!(mlp(&app, customer).await["loyaltyPoints"], 100.0);
    // v1.1 registration earns the same.
    let v1 = json!({"root": {"customer": [{"mobile": "919845100002", "firstname": "Bo"}]}});
    let response = app.post_json("/v1.1/customer/add?format=json", &app.basic(), &v1).await;
    response.assert_status(200);
    let id = response.json()["response"]["customers"]["customer"][0]["user_id"].as_i64().unwrap();
    assert_eq!(mlp(&app, id).await["loyaltyPoints"], 100.0);
}

async fn non_loyalty_customers_earn_nothing_on_enrolment(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let body = json!({"loyaltyInfo": {"loyaltyType": "non_loyalty"},
        "profiles": [{"firstName": "Ana", "identifiers": [{"type": "mobile", "value": "919845100003"}]}]});
    let response = app.post_json("/v2/customers", &app.basic(), &body).await;
    response.assert_status(200);
    assert_eq!(response.json()["sideEffects"], json!([]));
}

async fn dry_run_explains_each_rule_and_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let customer = add_customer(&app, "919845100004").await;
    let list = app.get("/x/perks/v1/programs", &app.admin()).await.json();
    let id = list["data"][0]["id"].as_i64().unwrap();
    let body = json!({"customerId": customer, "bill": {"type": "REGULAR", "billNumber": "DRY-1", "billAmount": 1200}});
    let response =
        app.post_json(&format!("/x/perks/v1/programs/{id}/dryRun"), &app.admin(), &body).await;
    response.assert_status(200);
    let data = response.json()["data"].clone();
    assert_eq!(data["totalPoints"], 120.0);
    assert_eq!(data["rules"][0]["rule"], "base");
    assert_eq!(data["rules"][0]["matched"], true);
    assert_eq!(data["rules"][0]["points"], 120.0);
    assert_eq!(data["rules"].as_array().unwrap().len(), 1, "registration rules are not bill rules");
    assert_eq!(data["tier"]["current"], "Bronze");
    assert_eq!(data["tier"]["after"], "Silver");
    assert!(data["pointsExpiryDate"].is_string());
    // Nothing was written: the balance is the signup bonus only and the number is still free.
    assert_eq!(mlp(&app, customer).await["loyaltyPoints"], 100.0);
    post_bill(&app, "919845100004", "DRY-1", 10.0).await;
    // By identifier, too.
    let by_mobile = json!({"identifierName": "mobile", "identifierValue": "919845100004", "source": "INSTORE",
        "bill": {"type": "REGULAR", "billNumber": "DRY-2", "billAmount": 10}});
    let response =
        app.post_json(&format!("/x/perks/v1/programs/{id}/dryRun"), &app.admin(), &by_mobile).await;
    assert_eq!(response.json()["data"]["totalPoints"], 1.0, "{}", response.body);
}

async fn dry_run_refuses_bad_requests(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let customer = add_customer(&app, "919845100005").await;
    let id = app.get("/x/perks/v1/programs", &app.admin()).await.json()["data"][0]["id"]
        .as_i64()
        .unwrap();
    let uri = format!("/x/perks/v1/programs/{id}/dryRun");
    let bill = json!({"type": "REGULAR", "billNumber": "X", "billAmount": 10});
    // Admin token only.
    app.post_json(&uri, &app.basic(), &json!({"customerId": customer, "bill": bill}))
        .await
        .assert_status(403);
    app.post_json(
        "/x/perks/v1/programs/999999/dryRun",
        &app.admin(),
        &json!({"customerId": customer, "bill": bill}),
    )
    .await
    .assert_status(404);
    app.post_json(&uri, &app.admin(), &json!({"customerId": 999999, "bill": bill}))
        .await
        .assert_status(404);
    let negative = json!({"customerId": customer, "bill": {"type": "REGULAR", "billNumber": "X", "billAmount": -1}});
    assert_eq!(app.post_json(&uri, &app.admin(), &negative).await.v2_error_code(), 601);
}

async fn promised_points_unlock_on_their_date(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({"promised": {"delayDays": 14}}))).await;
    let customer = add_customer(&app, "919845100006").await;
    post_bill(&app, "919845100006", "P-1", 500.0).await;
    let before = mlp(&app, customer).await;
    assert_eq!(before["loyaltyPoints"], 0.0, "{before}");
    assert_eq!(before["promisedPoints"], 150.0);
    assert_eq!(before["totalPoints"], 150.0);
    run_jobs(&app, perks::db::now_millis() + 13 * DAY).await;
    assert_eq!(mlp(&app, customer).await["promisedPoints"], 150.0);
    run_jobs(&app, perks::db::now_millis() + 15 * DAY).await;
    let after = mlp(&app, customer).await;
    assert_eq!(after["loyaltyPoints"], 150.0, "{after}");
    assert_eq!(after["promisedPoints"], 0.0);
    assert_eq!(after["lifetimePoints"], 150.0);
}

async fn points_expire_when_their_date_passes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({"expiry": {"type": "rolling", "days": 30}}))).await;
    let customer = add_customer(&app, "919845100007").await;
    post_bill(&app, "919845100007", "E-1", 500.0).await;
    run_jobs(&app, perks::db::now_millis() + 29 * DAY).await;
    assert_eq!(mlp(&app, customer).await["loyaltyPoints"], 150.0);
    run_jobs(&app, perks::db::now_millis() + 32 * DAY).await;
    let after = mlp(&app, customer).await;
    assert_eq!(after["loyaltyPoints"], 0.0, "{after}");
    assert_eq!(after["expiredPoints"], 150.0);
    assert_eq!(after["lifetimePoints"], 150.0);
    let mut conn = app.state.db.read().await.unwrap();
    assert!(perks::points::ledger::verify(&mut conn, None, 10).await.unwrap().is_empty());
}

async fn tiers_renew_or_fall_at_the_end_of_their_period(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let keeper = add_customer(&app, "919845100008").await;
    let faller = add_customer(&app, "919845100009").await;
    post_bill(&app, "919845100008", "K-1", 6000.0).await;
    post_bill(&app, "919845100009", "F-1", 6000.0).await;
    assert_eq!(mlp(&app, keeper).await["currentSlab"], "Gold");
    assert!(mlp(&app, keeper).await["tierExpiryDate"].is_string());
    // Both are Gold for 12 months; the period's purchases (6000) meet the renewal bar (500), so
    // at the end both renew...
    let year = 366 * DAY;
    run_jobs(&app, perks::db::now_millis() + year).await;
    assert_eq!(mlp(&app, keeper).await["currentSlab"], "Gold");
    assert_eq!(mlp(&app, faller).await["currentSlab"], "Gold");
    // ...and a year without purchases later, both fall one tier.
    run_jobs(&app, perks::db::now_millis() + 2 * year).await;
    assert_eq!(mlp(&app, faller).await["currentSlab"], "Silver");
    run_jobs(&app, perks::db::now_millis() + 3 * year).await;
    assert_eq!(mlp(&app, faller).await["currentSlab"], "Bronze");
    assert_eq!(mlp(&app, faller).await["tierExpiryDate"], Value::Null);
    // Nothing further happens to the base tier.
    run_jobs(&app, perks::db::now_millis() + 4 * year).await;
    assert_eq!(mlp(&app, faller).await["currentSlab"], "Bronze");
}

async fn downgrade_to_qualifying_picks_the_tier_earned(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let tiers = json!({"tiers": [{"name": "Bronze"},
        {"name": "Silver", "upgrade": {"metric": "purchasesInPeriod", "atLeast": 1000}},
        {"name": "Gold", "upgrade": {"metric": "purchasesInPeriod", "atLeast": 5000}}],
        "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 5000}, "downgrade": "toQualifying"}});
    set_program(&app, &program(tiers)).await;
    let customer = add_customer(&app, "919845100010").await;
    post_bill(&app, "919845100010", "Q-1", 6000.0).await;
    assert_eq!(mlp(&app, customer).await["currentSlab"], "Gold");
    // A year without purchases: nothing qualifies, straight to Bronze.
    run_jobs(&app, perks::db::now_millis() + 2 * 366 * DAY).await;
    assert_eq!(mlp(&app, customer).await["currentSlab"], "Bronze");
}
