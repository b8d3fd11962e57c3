//! The loyalty embeds of the customer reads (`gapDetails`, `expirySchedules`, `expiredPoints`,
//! `promotionalPoints`, `userGroup`, `alternateCurrencies`) on `GET /v2/customers/{id}` and the
//! lookup form, the org-local expiry day they show, and the v1.1 `customer/get` points
//! summaries; all agree with the balance endpoint. Dual eligibility: customers sharing
//! secondary identifiers, found by the primary one (also in multi-identifier lookups), and
//! registered concurrently.

use chrono::{Datelike, NaiveDate, TimeZone};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse};
use crate::transactions::{add_customer, set_program};

backend_tests!(
    loyalty_embeds_on_get_and_lookup,
    expiry_schedules_show_the_org_local_month_end,
    v1_customer_get_lists_points_summaries,
    dual_eligibility_shares_secondary_identifiers,
    dual_eligibility_follows_the_configured_primary_identifier,
    concurrent_registrations_under_dual_eligibility,
);

fn program(extra: Value) -> Value {
    let mut doc = json!({"name": "Default", "default": true,
        "tiers": [{"name": "Bronze"},
                  {"name": "Silver", "upgrade": {"metric": "lifetimePurchases", "atLeast": 1000}}],
        "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 500}},
        "earn": [{"name": "base", "on": "transaction", "when": "true", "points": "bill.amount * 0.1"},
                 {"name": "signup", "on": "registration", "points": "100"}],
        "expiry": {"type": "rolling", "days": 30}});
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    doc
}

async fn sale(app: &TestApp, mobile: &str, number: &str, amount: f64) {
    let uri =
        format!("/v2/transactions?identifierName=mobile&identifierValue={mobile}&source=INSTORE");
    let body = json!({"type": "REGULAR", "billNumber": number, "billAmount": amount});
    app.post_json(&uri, &app.basic(), &body).await.assert_status(200);
}

async fn get_ok(app: &TestApp, uri: &str) -> Value {
    let r = app.get(uri, &app.basic()).await;
    r.assert_status(200);
    r.json()
}

async fn main_points(app: &TestApp, customer: i64) -> f64 {
    get_ok(app, &format!("/v2/customers/{customer}/points/balance")).await["mainPoints"]
        .as_f64()
        .unwrap()
}

fn schedule_total(body: &Value) -> f64 {
    body["expirySchedules"].as_array().unwrap().iter().map(|r| r["points"].as_f64().unwrap()).sum()
}

async fn loyalty_embeds_on_get_and_lookup(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845300001";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "E-1", 400.0).await;

    // Without the embeds, none of their keys.
    let plain = get_ok(&app, &format!("/v2/customers/{customer}")).await;
    for key in ["gapDetails", "expirySchedules", "expiredPoints", "promotionalPoints", "userGroup"]
    {
        assert!(plain.get(key).is_none(), "{key} without embed: {plain}");
    }

    let embed = "gapDetails,EXPIRYSCHEDULES,expiredPoints,promotionalPoints,userGroup,points";
    let body = get_ok(&app, &format!("/v2/customers/{customer}?embed={embed}")).await;
    assert_eq!(body["id"], customer);
    assert!(body["points"].is_object(), "the customer module's embeds still answer: {body}");
    let tier = get_ok(&app, &format!("/v2/customers/{customer}/tierDetails")).await;
    assert_eq!(body["gapDetails"][0], tier["programTiers"][0], "{body}");
    assert_eq!(body["gapDetails"][0]["gapToUpgrade"]["gap"], 600.0);
    // The schedule adds up to the balance: the signup bonus and the bill's points.
    assert_eq!(schedule_total(&body), main_points(&app, customer).await);
    assert_eq!(schedule_total(&body), 140.0);
    let rows = body["expirySchedules"].as_array().unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r["pointsType"].as_str().unwrap()).collect();
    assert!(types.contains(&"bill_regular") && types.contains(&"customer_promotions"), "{body}");
    assert!(rows.iter().all(|r| r["expiryType"] == "rolling"));
    let expected_day = (chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata).date_naive()
        + chrono::Days::new(30))
    .to_string();
    assert!(rows.iter().all(|r| r["expiryDate"] == json!(expected_day)), "{body}");
    assert_eq!(body["expiredPoints"][0]["points"], 0.0);
    let promo = &body["promotionalPoints"];
    assert_eq!(promo.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(promo[0]["promotionName"], "signup");
    assert_eq!(promo[0]["points"], 100.0);
    assert_eq!(promo[0]["pointsType"], "customer_promotions");
    assert_eq!(body["userGroup"], json!([]));

    // The lookup form answers the same embeds.
    let lookup = get_ok(
        &app,
        &format!("/v2/customers/lookup/customerDetails?source=INSTORE&identifierName=mobile&identifierValue={m}&embed=gapDetails,expirySchedules"),
    )
    .await;
    assert_eq!(lookup["gapDetails"], body["gapDetails"]);
    assert_eq!(lookup["expirySchedules"], body["expirySchedules"]);

    // Spending takes from the schedule: soonest first, and it still adds up.
    let r = app
        .post_json(
            &format!("/v2/customers/{customer}/redemptions"),
            &app.basic(),
            &json!({"points": 40, "skipValidation": true}),
        )
        .await;
    r.assert_status(200);
    let after = get_ok(&app, &format!("/v2/customers/{customer}?embed=expirySchedules")).await;
    assert_eq!(schedule_total(&after), 100.0);
    assert_eq!(schedule_total(&after), main_points(&app, customer).await);
}

/// The last millisecond of the current month in Asia/Kolkata (the test org's zone).
fn local_month_end(now: i64) -> (i64, NaiveDate) {
    let tz = chrono_tz::Asia::Kolkata;
    let today = tz.timestamp_millis_opt(now).unwrap().date_naive();
    let first_next = if today.month() == 12 {
        NaiveDate::from_ymd_opt(today.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(today.year(), today.month() + 1, 1)
    }
    .unwrap();
    let end = tz
        .from_local_datetime(&first_next.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .timestamp_millis()
        - 1;
    (end, first_next.pred_opt().unwrap())
}

async fn expiry_schedules_show_the_org_local_month_end(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let doc = program(json!({"expiry": {"type": "endOfPeriod", "months": 0},
        "earn": [{"name": "base", "on": "transaction", "points": "bill.amount * 0.1"}]}));
    set_program(&app, &doc).await;
    let m = "919845300002";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "M-1", 500.0).await;
    let (end, last_day) = local_month_end(perks::db::now_millis());
    let body =
        get_ok(&app, &format!("/v2/customers/{customer}?embed=expirySchedules,expiredPoints"))
            .await;
    let row = &body["expirySchedules"][0];
    assert_eq!(row["expiryDate"], json!(last_day.to_string()), "{body}");
    assert_eq!(row["expiryType"], "fixed");
    // Local midnight in Kolkata is 18:30 UTC on the month's last day, not midnight UTC.
    assert_eq!(row["expiryDateISO"], json!(format!("{last_day}T18:29:59Z")));
    assert_eq!(row["points"], 50.0);

    perks::points::ledger::process_due_lots(&app.state.db, end + 1, false, 100).await.unwrap();
    let body =
        get_ok(&app, &format!("/v2/customers/{customer}?embed=expirySchedules,expiredPoints"))
            .await;
    assert_eq!(body["expirySchedules"], json!([]), "{body}");
    assert_eq!(body["expiredPoints"][0]["points"], 50.0);
    assert_eq!(main_points(&app, customer).await, 0.0);
}

async fn v1_customer_get_lists_points_summaries(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_program(&app, &program(json!({}))).await;
    let m = "919845300003";
    let customer = add_customer(&app, m).await;
    sale(&app, m, "V-1", 1500.0).await;
    let r = app.get(&format!("/v1.1/customer/get?format=json&mobile={m}"), &app.basic()).await;
    r.assert_status(200);
    let item = r.json()["response"]["customers"]["customer"][0].clone();
    assert_eq!(item["item_status"]["code"], 1000, "{item}");
    let summary = &item["points_summaries"]["points_summary"][0];
    assert_eq!(summary["loyaltyPoints"], main_points(&app, customer).await, "{item}");
    assert_eq!(summary["loyaltyPoints"], 250.0);
    assert_eq!(summary["currentSlab"], "Silver");
    assert_eq!(summary["nextSlabSerialNumber"], -1);
    assert_eq!(summary["cumulativePurchases"], 1500.0);
    assert_eq!(item["loyalty_points"], 250.0);
    // Unknown values still answer their item code, without a summary.
    let r = app
        .get(&format!("/v1.1/customer/get?format=json&mobile={m},919845399999"), &app.basic())
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    let items = r.json()["response"]["customers"]["customer"].clone();
    assert_eq!(items[1]["item_status"]["code"], 1012, "{items}");
    assert!(items[1].get("points_summaries").is_none());
}

async fn set_config(app: &TestApp, key: &str, value: &str) {
    let config = json!({"keyName": key, "value": value});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
}

async fn register(app: &TestApp, identifiers: Value) -> TestResponse {
    let body = json!({"profiles": [{"firstName": "Ana", "identifiers": identifiers}]});
    app.post_json("/v2/customers", &app.basic(), &body).await
}

async fn registered(app: &TestApp, identifiers: Value) -> i64 {
    let r = register(app, identifiers).await;
    r.assert_status(200);
    r.json()["createdId"].as_i64().unwrap_or_else(|| panic!("{}", r.body))
}

async fn lookup(app: &TestApp, names: &str, values: &str) -> TestResponse {
    app.get(
        &format!(
            "/v2/customers/lookup?source=INSTORE&identifierName={names}&identifierValue={values}"
        ),
        &app.basic(),
    )
    .await
}

async fn dual_eligibility_shares_secondary_identifiers(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let (m1, m2, email) = ("919845500001", "919845500002", "family@example.com");
    // Without dual eligibility, a second registration with the same email is the same customer.
    let a = registered(
        &app,
        json!([{"type": "mobile", "value": m1}, {"type": "email", "value": email}]),
    )
    .await;
    let r =
        register(&app, json!([{"type": "mobile", "value": m2}, {"type": "email", "value": email}]))
            .await;
    assert_eq!(r.json()["createdId"], a, "{}", r.body);

    set_config(&app, "CONF_DUAL_ELIGIBILITY_ENABLED", "true").await;
    let b = registered(
        &app,
        json!([{"type": "mobile", "value": m2}, {"type": "email", "value": email},
        {"type": "externalId", "value": "HOUSE-1"}]),
    )
    .await;
    assert_ne!(a, b, "a shared email no longer makes them one customer");
    let c = registered(&app, json!([{"type": "mobile", "value": "919845500003"}, {"type": "externalId", "value": "HOUSE-1"}])).await;
    assert_ne!(b, c);
    // The primary identifier (mobile) still names one customer: registering it again updates.
    let r = register(
        &app,
        json!([{"type": "mobile", "value": m1}, {"type": "email", "value": "new@example.com"}]),
    )
    .await;
    assert_eq!(r.json()["createdId"], a);
    assert_eq!(r.json()["warnings"][0]["code"], 1014);
    // A registration without the primary identifier is refused.
    let r = register(&app, json!([{"type": "email", "value": "alone@example.com"}])).await;
    assert_eq!(r.v2_error_code(), 1007, "{}", r.body);

    // Lookups: the primary identifier decides; a secondary one alone finds no one (8015).
    assert_eq!(lookup(&app, "mobile", m2).await.json()["id"], b);
    assert_eq!(lookup(&app, "email", email).await.v2_error_code(), 8015);
    assert_eq!(lookup(&app, "externalId", "HOUSE-1").await.v2_error_code(), 8015);
    assert_eq!(lookup(&app, "email,mobile", &format!("{email},{m2}")).await.json()["id"], b);
    assert_eq!(lookup(&app, "mobile,email", &format!("{m1},{email}")).await.json()["id"], a);
    assert_eq!(
        lookup(&app, "email,externalId", &format!("{email},HOUSE-1")).await.v2_error_code(),
        8015
    );
    assert_eq!(lookup(&app, "email,mobile", email).await.v2_error_code(), 8013);
    // The lookup family follows (tier details as in the docs' example, a bill by identifiers).
    let tier = app
        .get(
            &format!("/v2/customers/lookup/tierDetails?source=INSTORE&identifierName=email,mobile&identifierValue={email},{m2}"),
            &app.basic(),
        )
        .await;
    assert_eq!(tier.json()["entityId"], b, "{}", tier.body);
    let bill = json!({"type": "REGULAR", "billNumber": "D-1", "billAmount": 100});
    let r = app
        .post_json(
            &format!(
                "/v2/transactions?identifierName=email&identifierValue={email}&source=INSTORE"
            ),
            &app.basic(),
            &bill,
        )
        .await;
    assert_eq!(r.v2_error_code(), 8015, "{}", r.body);
    app.post_json(
        &format!("/v2/transactions?identifierName=email,mobile&identifierValue={email},{m2}&source=INSTORE"),
        &app.basic(),
        &bill,
    )
    .await
    .assert_status(200);
    assert_eq!(main_points(&app, b).await, 10.0);
    assert_eq!(main_points(&app, a).await, 0.0);

    // Identifier changes: a secondary value may be shared, the primary may not, and must stay.
    let change = |body: Value, id: i64| {
        let app = &app;
        async move {
            app.post_json(
                &format!("/v2/customers/{id}/changeIdentifier?source=INSTORE"),
                &app.basic(),
                &body,
            )
            .await
        }
    };
    change(json!({"add": [{"type": "email", "value": email}]}), c).await.assert_status(200);
    let r = change(json!({"add": [{"type": "mobile", "value": m1}]}), c).await;
    assert_eq!(r.v2_error_code(), 1014, "{}", r.body);
    let r = change(json!({"remove": [{"type": "mobile", "value": m2}]}), b).await;
    assert_eq!(r.v2_error_code(), 1007, "{}", r.body);
    let again = change(json!({"add": [{"type": "email", "value": email}]}), c).await;
    assert_eq!(again.json()["warnings"][0]["code"], 1014, "{}", again.body);

    // INSTORE comm channels stay editable.
    let update = json!({"profiles": [{"commChannels": [{"type": "email", "value": "b.only@example.com", "primary": true, "verified": true}]}]});
    app.put_json(&format!("/v2/customers/{b}?source=INSTORE"), &app.basic(), &update)
        .await
        .assert_status(200);
    let body = get_ok(&app, &format!("/v2/customers/{b}")).await;
    assert_eq!(body["profiles"][0]["commChannels"][0]["value"], "b.only@example.com", "{body}");
    // Both customers still show the shared email among their identifiers.
    for id in [a, b] {
        let body = get_ok(&app, &format!("/v2/customers/{id}")).await;
        let ids = body["profiles"][0]["identifiers"].as_array().unwrap().clone();
        assert!(ids.contains(&json!({"type": "email", "value": email})), "{id}: {body}");
    }
}

async fn dual_eligibility_follows_the_configured_primary_identifier(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_config(&app, "CONF_DUAL_ELIGIBILITY_ENABLED", "1").await;
    set_config(&app, "CONF_PRIMARY_IDENTIFIER", "externalId").await;
    let shared_mobile = "919845500010";
    let d = registered(
        &app,
        json!([{"type": "externalId", "value": "D-1"}, {"type": "mobile", "value": shared_mobile}]),
    )
    .await;
    let e = registered(
        &app,
        json!([{"type": "externalId", "value": "E-1"}, {"type": "mobile", "value": shared_mobile}]),
    )
    .await;
    assert_ne!(d, e);
    assert_eq!(lookup(&app, "externalId", "D-1").await.json()["id"], d);
    assert_eq!(lookup(&app, "mobile", shared_mobile).await.v2_error_code(), 8015);
    assert_eq!(
        lookup(&app, "mobile,externalId", &format!("{shared_mobile},E-1")).await.json()["id"],
        e
    );
    let r = register(&app, json!([{"type": "mobile", "value": "919845500011"}])).await;
    assert_eq!(r.v2_error_code(), 1007);
    // Switched off again, any identifier may name a customer, but a value several customers
    // share names no one by itself.
    set_config(&app, "CONF_DUAL_ELIGIBILITY_ENABLED", "false").await;
    assert_eq!(lookup(&app, "externalId", "E-1").await.json()["id"], e);
    assert_eq!(lookup(&app, "mobile", shared_mobile).await.v2_error_code(), 8015);
    assert_eq!(
        lookup(&app, "mobile,externalId", &format!("{shared_mobile},E-1")).await.json()["id"],
        e
    );
    assert_eq!(lookup(&app, "externalId,externalId", "D-1,E-1").await.v2_error_code(), 8015);
}

async fn concurrent_registrations_under_dual_eligibility(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    set_config(&app, "CONF_DUAL_ELIGIBILITY_ENABLED", "true").await;
    let send = |mobile: String| {
        let router = app.router.clone();
        let auth = app.basic();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let body = json!({"profiles": [{"identifiers": [{"type": "mobile", "value": mobile},
                {"type": "email", "value": "shared@example.com"}]}]});
            let request = axum::http::Request::builder()
                .method("POST")
                .uri("/v2/customers")
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes =
                http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            (status, body["createdId"].as_i64())
        })
    };
    // Ten customers sharing one email: ten customers.
    let handles: Vec<_> = (0..10).map(|i| send(format!("9198455001{i:02}"))).collect();
    let mut ids = Vec::new();
    for h in handles {
        let (status, id) = h.await.unwrap();
        assert_eq!(status, 200);
        ids.push(id.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    // Ten registrations of one primary identifier: one customer.
    let handles: Vec<_> = (0..10).map(|_| send("919845500200".to_string())).collect();
    let mut ids = Vec::new();
    for h in handles {
        let (status, id) = h.await.unwrap();
        assert_eq!(status, 200);
        ids.push(id.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}
