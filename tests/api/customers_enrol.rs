//! Registration side effects: `loyaltyProgramEnrollments` (starting tier and opening points, on
//! add and on the update forms, never twice), `referralCode` (referrals recorded, unknown codes
//! warned), typed extended-field checks, and the coupons `GET /v1.1/customer/get` lists.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::coupons::{create_series, issue};
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};
use crate::transactions::{add_customer, set_program};

backend_tests!(
    enrolment_sets_the_tier_and_opening_points_once,
    update_forms_enrol_in_programs_not_yet_joined,
    bad_enrolments_get_their_codes_and_write_nothing,
    referral_codes_record_referrals,
    extended_fields_are_type_checked_on_add,
    customer_get_lists_active_coupons,
);

fn program() -> Value {
    json!({"name": "Default", "default": true,
        "tiers": [{"name": "Bronze"},
                  {"name": "Silver", "upgrade": {"metric": "lifetimePurchases", "atLeast": 1000}},
                  {"name": "Gold", "upgrade": {"metric": "lifetimePurchases", "atLeast": 5000}}],
        "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 500}, "downgrade": "oneDown"},
        "earn": [{"name": "base", "on": "transaction", "when": "true", "points": "bill.amount * 0.1"}],
        "expiry": {"type": "rolling", "days": 30},
        "redemption": {"pointValue": 1, "validationCode": "never"}})
}

async fn default_program_id(app: &TestApp) -> i64 {
    let list = app.get("/x/perks/v1/programs", &app.admin()).await.json();
    list["data"].as_array().unwrap().iter().find(|p| p["default"] == true).unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// A second program with two tiers; its id.
async fn second_program(app: &TestApp) -> i64 {
    let second = json!({"name": "Second", "tiers": [{"name": "Topaz"},
        {"name": "Coral", "upgrade": {"metric": "lifetimePoints", "atLeast": 100}}]});
    let created = app.post_json("/x/perks/v1/programs", &app.admin(), &second).await;
    created.assert_status(201);
    created.json()["data"]["id"].as_i64().unwrap()
}

fn registration(mobile: &str, enrolments: Value) -> Value {
    json!({"profiles": [{"firstName": "Ria", "identifiers": [{"type": "mobile", "value": mobile}]}],
        "loyaltyProgramEnrollments": enrolments})
}

async fn add(app: &TestApp, body: &Value) -> TestResponse {
    app.post_json("/v2/customers", &app.basic(), body).await
}

async fn get_ok(app: &TestApp, uri: &str) -> Value {
    let r = app.get(uri, &app.basic()).await;
    r.assert_status(200);
    r.json()
}

async fn ledger_is_consistent(app: &TestApp) {
    let mut conn = app.state.db.read().await.unwrap();
    let report = perks::points::ledger::verify_report(&mut conn, None, 10).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.mismatches);
}

/// True when a customer with this mobile exists (lookup answers 200).
async fn exists(app: &TestApp, mobile: &str) -> bool {
    let uri = format!(
        "/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue={mobile}"
    );
    app.get(&uri, &app.basic()).await.status.as_u16() == 200
}

async fn enrolment_sets_the_tier_and_opening_points_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let program_id = default_program_id(&app).await;
    let body = registration(
        "919811000001",
        json!([{"programId": program_id, "tierNumber": 2, "loyaltyPoints": 150,
            "tierExpiryDate": "2031-06-30T23:59:59+05:30", "pointsExpiryDate": "2032-01-01T00:00:00Z"}]),
    );
    let r = add(&app, &body).await;
    r.assert_status(200);
    let created = r.json();
    let id = created["createdId"].as_i64().unwrap();
    assert_eq!(created["warnings"], json!([]), "{created}");
    let effects = created["sideEffects"].as_array().unwrap();
    assert!(
        effects.iter().any(|e| e["type"] == "points" && e["awardedPoints"] == 150.0),
        "{created}"
    );
    assert!(effects.iter().any(|e| e["type"] == "tier" && e["newTier"] == "Silver"), "{created}");

    let customer = get_ok(&app, &format!("/v2/customers/{id}?source=INSTORE")).await;
    let info = &customer["loyaltyInfo"];
    assert_eq!(info["loyaltyPoints"], 150.0, "{customer}");
    assert_eq!(info["currentSlab"], "Silver");
    assert_eq!(info["tierNumber"], 2);
    assert_eq!(info["tierExpiryDate"], "2031-06-30T18:29:59Z");
    let schedule = get_ok(&app, &format!("/v2/customers/{id}/pointsExpirySchedule")).await;
    let lots = schedule["expirySchedules"].as_array().unwrap();
    assert_eq!(lots.len(), 1, "{schedule}");
    assert_eq!(lots[0]["points"], 150.0);
    assert_eq!(lots[0]["expiryDate"], "2032-01-01", "{schedule}");
    let events = get_ok(&app, &format!("/v2/customers/{id}/loyaltyEvents")).await;
    let award = events["data"].as_array().unwrap().iter().find(|e| e["eventName"] == "PointsAward");
    assert_eq!(award.unwrap_or_else(|| panic!("{events}"))["points"], 150.0, "{events}");

    // Registering again: the customer is updated, the enrolment is not applied twice.
    let again = add(&app, &body).await;
    again.assert_status(200);
    let again = again.json();
    assert_eq!(again["createdId"], id);
    let codes: Vec<i64> =
        again["warnings"].as_array().unwrap().iter().map(|w| w["code"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![1014, 1014], "{again}");
    assert_eq!(again["sideEffects"], json!([]));
    let customer = get_ok(&app, &format!("/v2/customers/{id}?source=INSTORE")).await;
    assert_eq!(customer["loyaltyInfo"]["loyaltyPoints"], 150.0);

    // Without dates the program's rules apply: tier validity 12 months, points 30 days.
    let r = add(
        &app,
        &registration(
            "919811000002",
            json!([{"programId": program_id, "tierNumber": 3, "loyaltyPoints": 40}]),
        ),
    )
    .await;
    r.assert_status(200);
    let other = r.json()["createdId"].as_i64().unwrap();
    let customer = get_ok(&app, &format!("/v2/customers/{other}?source=INSTORE")).await;
    assert_eq!(customer["loyaltyInfo"]["currentSlab"], "Gold");
    assert!(customer["loyaltyInfo"]["tierExpiryDate"].is_string(), "{customer}");
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert!(audit.iter().any(|a| a.entity_id == other && a.action == "ENROLL"), "{audit:?}");
    ledger_is_consistent(&app).await;
}

async fn update_forms_enrol_in_programs_not_yet_joined(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let default_id = default_program_id(&app).await;
    let second = second_program(&app).await;
    let id = add_customer(&app, "919811000011").await;
    let body = json!({"profiles": [{"firstName": "Ria"}],
        "loyaltyProgramEnrollments": [{"programId": second, "tierNumber": 2, "loyaltyPoints": 25}]});
    let r = app.put_json(&format!("/v2/customers/{id}?source=INSTORE"), &app.basic(), &body).await;
    r.assert_status(200);
    let r = r.json();
    assert_eq!(r["warnings"], json!([]), "{r}");
    assert_eq!(r["sideEffects"].as_array().unwrap().len(), 2, "{r}");
    let tiers = get_ok(&app, &format!("/v2/customers/{id}/tierDetails?programId={second}")).await;
    assert_eq!(tiers["programTiers"][0]["currentTierName"], "Coral", "{tiers}");

    // The lookup form: the second program is joined already, so nothing is awarded again.
    let uri =
        "/v2/customers/lookup?source=INSTORE&identifierName=mobile&identifierValue=919811000011";
    let body = json!({"loyaltyProgramEnrollments": [{"programId": second, "loyaltyPoints": 25}]});
    let r = app.put_json(uri, &app.basic(), &body).await;
    r.assert_status(200);
    let r = r.json();
    assert_eq!(r["warnings"][0]["code"], 1014, "{r}");
    assert_eq!(r["sideEffects"], json!([]));
    let balance =
        get_ok(&app, &format!("/v2/customers/{id}/loyaltyDetails?programId={second}")).await;
    assert_eq!(balance["data"][0]["programId"], second, "{balance}");
    assert_eq!(balance["data"][0]["loyaltyPoints"], 25.0, "{balance}");
    // The registering till's default program was joined at registration.
    let body =
        json!({"loyaltyProgramEnrollments": [{"programId": default_id, "loyaltyPoints": 5}]});
    let r = app.put_json(uri, &app.basic(), &body).await;
    r.assert_status(200);
    assert_eq!(r.json()["warnings"][0]["code"], 1014);

    // enrollInAllPrograms: the listed program with its points, every other one at its base tier.
    let body = registration("919811000012", json!([{"programId": second, "loyaltyPoints": 10}]));
    let r = app.post_json("/v2/customers?enrollInAllPrograms=true", &app.basic(), &body).await;
    r.assert_status(200);
    let all = r.json()["createdId"].as_i64().unwrap();
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    let enrolled = audit.iter().filter(|a| a.entity_id == all && a.action == "ENROLL").count();
    assert_eq!(enrolled, 2, "{audit:?}");
    let body = registration("919811000013", json!([]));
    let r = app.post_json("/v2/customers?enrollInAllPrograms=maybe", &app.basic(), &body).await;
    r.assert_status(400);
    ledger_is_consistent(&app).await;
}

async fn bad_enrolments_get_their_codes_and_write_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program()).await;
    let p = default_program_id(&app).await;
    let cases = [
        (json!([{"programId": 999_999}]), 1101),
        (json!([{"programId": p, "tierNumber": 4}]), 1102),
        (json!([{"programId": p, "tierNumber": 0}]), 1102),
        (json!([{"programId": p, "loyaltyPoints": -10}]), 400),
        (json!([{"programId": p, "loyaltyPoints": 10.5}]), 400),
        (json!([{"programId": p, "loyaltyPoints": "lots"}]), 400),
        (json!([{"programId": p, "tierNumber": 2, "tierExpiryDate": "next year"}]), 1104),
        (
            json!([{"programId": p, "tierNumber": 2, "tierExpiryDate": "2020-01-01T00:00:00Z"}]),
            1104,
        ),
        (json!([{"programId": p, "tierExpiryDate": "2031-01-01T00:00:00Z"}]), 1104),
        (json!([{"programId": p, "loyaltyPoints": 5, "pointsExpiryDate": "2031-13-01"}]), 400),
        (
            json!([{"programId": p, "loyaltyPoints": 5, "pointsExpiryDate": "2020-01-01T00:00:00Z"}]),
            400,
        ),
        (json!([{"programId": p}, {"programId": p}]), 400),
        (json!([{"tierNumber": 2}]), 400),
        (json!(["x"]), 400),
    ];
    for (enrolments, code) in cases {
        let r = add(&app, &registration("919811000021", enrolments.clone())).await;
        r.assert_status(400);
        assert_eq!(r.v2_error_code(), code, "{enrolments}: {}", r.body);
        assert!(!exists(&app, "919811000021").await, "{enrolments} wrote a customer");
    }
    // A non-loyalty registration cannot be enrolled.
    let mut body = registration("919811000021", json!([{"programId": p, "loyaltyPoints": 5}]));
    body["loyaltyInfo"] = json!({"loyaltyType": "non_loyalty"});
    let r = add(&app, &body).await;
    r.assert_status(400);
    assert!(!exists(&app, "919811000021").await);
    ledger_is_consistent(&app).await;
}

async fn referral_codes_record_referrals(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let referrer = add_customer(&app, "919811000031").await;
    let lookup = "/v2/customers/lookup/referrals?source=INSTORE&identifierName=mobile&identifierValue=919811000031";
    let before = get_ok(&app, lookup).await;
    let code = before["data"]["referralCode"].as_str().unwrap().to_string();
    assert!(code.starts_with('R'), "{before}");
    assert_eq!(before["data"]["customerId"], referrer);
    assert_eq!(before["data"]["referees"], json!([]));

    let body = json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "919811000032"}]}],
        "referralCode": code.to_lowercase()});
    let r = add(&app, &body).await;
    r.assert_status(200);
    let r = r.json();
    assert_eq!(r["warnings"], json!([]), "{r}");
    let referee = r["createdId"].as_i64().unwrap();
    let after = get_ok(&app, lookup).await;
    assert_eq!(after["data"]["referees"][0]["customerId"], referee, "{after}");
    assert!(after["data"]["referees"][0]["joinedOn"].is_string());
    let v1 = get_ok(&app, "/v1.1/customer/referrals?format=json&mobile=919811000031").await;
    let item = &v1["response"]["customer"];
    assert_eq!(item["referral_code"], code, "{v1}");
    assert_eq!(item["referees"]["referee"][0]["user_id"], referee, "{v1}");
    assert_eq!(item["item_status"]["code"], 1000);
    let audit = app.audit(app.org.org_id, "CUSTOMER_REFERRAL").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].entity_id, referee);

    // An unknown code registers the customer with a warning and records nothing.
    let body = json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "919811000033"}]}],
        "referralCode": "RZZZZZZ9"});
    let r = add(&app, &body).await;
    r.assert_status(200);
    assert_eq!(r.json()["warnings"][0]["code"], 1095, "{}", r.body);
    // Registering the referee again does not refer it twice.
    let body = json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "919811000032"}]}],
        "referralCode": code});
    let r = add(&app, &body).await;
    r.assert_status(200);
    let codes: Vec<i64> = r.json()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![1014, 1095], "{}", r.body);
    let after = get_ok(&app, lookup).await;
    assert_eq!(after["data"]["referees"].as_array().unwrap().len(), 1);

    // Another org's customer has no referrals here.
    let other = app.another_org("Elsewhere").await;
    let r = app.get(lookup, &basic_header(&other.till.username, &other.till.password)).await;
    assert_eq!(r.v2_error_code(), 8015, "{}", r.body);
}

async fn extended_fields_are_type_checked_on_add(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    app.enable_fields(&["gender", "dob", "city"], &[]).await;
    let body = |extended: Value| {
        json!({"profiles": [{"identifiers": [{"type": "mobile", "value": "919811000041"}]}],
            "extendedFields": extended})
    };
    for (extended, field) in [
        (json!({"dob": "yesterday-ish"}), "dob"),
        (json!({"shoe_size": 42}), "shoe_size"),
        (json!({"gender": "Robot"}), "gender"),
        (json!({"city": {"name": "Pune"}}), "city"),
    ] {
        let r = add(&app, &body(extended.clone())).await;
        r.assert_status(400);
        assert!(r.body.contains(field), "{extended}: {}", r.body);
        assert!(!exists(&app, "919811000041").await, "{extended} wrote a customer");
    }
    let r =
        add(&app, &body(json!({"gender": "female", "dob": "1990-02-03", "city": "Pune"}))).await;
    r.assert_status(200);
    let id = r.json()["createdId"].as_i64().unwrap();
    let customer = get_ok(&app, &format!("/v2/customers/{id}?source=INSTORE")).await;
    assert_eq!(customer["extendedFields"]["gender"], "Female", "{customer}");
    assert_eq!(customer["extendedFields"]["dob"], "1990-02-03");
}

async fn customer_get_lists_active_coupons(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_customer(&app, "919811000051").await;
    add_customer(&app, "919811000052").await;
    let series = create_series(&app, json!({})).await;
    let first = issue(&app, series, "919811000051").await;
    let other_series =
        create_series(&app, json!({"discountCode": "TWENTY", "seriesCode": "S2"})).await;
    let second = issue(&app, other_series, "919811000051").await;
    let got = get_ok(&app, "/v1.1/customer/get?format=json&mobile=919811000051,919811000052").await;
    let customers = &got["response"]["customers"]["customer"];
    let coupons = customers[0]["coupons"]["coupon"].as_array().unwrap();
    let codes: Vec<&str> = coupons.iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec![second.as_str(), first.as_str()], "{got}");
    assert_eq!(coupons[1]["series_id"], series);
    assert_eq!(customers[1]["coupons"]["coupon"], json!([]), "{got}");
}
