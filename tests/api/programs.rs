//! Loyalty programs: every org's default program, the admin API (list, create, read, replace),
//! document validation naming the field, admin-only access, org isolation, one default per org,
//! and resolving the compiled program of a store through the cache.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, request};
use perks::org::model::OrgId;
use perks::programs::model::ProgramId;
use perks::programs::service;

backend_tests!(
    a_new_org_has_the_default_program,
    the_issue_sample_document_is_accepted,
    get_list_and_put_bump_the_version,
    invalid_documents_name_the_field,
    the_default_program_stays_default_until_another_takes_over,
    only_admin_tokens_manage_programs,
    programs_are_isolated_between_orgs,
    exactly_one_program_is_default,
    stores_resolve_to_their_program,
);

const PROGRAMS: &str = "/x/perks/v1/programs";

fn sample() -> Value {
    json!({"name": "Default", "default": true, "stores": [],
     "tiers": [{"name": "Bronze"},
               {"name": "Silver", "upgrade": {"metric": "lifetimePurchases", "atLeast": 10000}},
               {"name": "Gold",   "upgrade": {"metric": "lifetimePurchases", "atLeast": 50000}}],
     "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 5000}, "downgrade": "oneDown"},
     "earn": [{"name": "base",  "on": "transaction", "when": "true", "points": "bill.amount * 0.1"},
              {"name": "gold",  "on": "transaction", "when": "customer.tier == 'Gold'", "points": "bill.amount * 0.05"},
              {"name": "shoes", "on": "lineItem", "when": "item.extendedFields.category == 'shoes'", "points": "item.amount * 0.1"},
              {"name": "signup", "on": "registration", "points": "100"}],
     "expiry": {"type": "rolling", "days": 365},
     "promised": {"delayDays": 0},
     "redemption": {"minPoints": 100, "multipleOf": 10, "maxPerBill": 5000, "pointValue": 0.25, "validationCode": "required"},
     "returns": {"reversePoints": true, "allowNegativeBalance": false},
     "rounding": {"pointsDecimals": 2, "mode": "floor"}})
}

/// A small valid program called `name`.
fn named(name: &str, default: bool) -> Value {
    json!({"name": name, "default": default, "tiers": [{"name": "Base"}],
        "earn": [{"name": "base", "on": "transaction", "points": "bill.amount * 0.2"}]})
}

async fn list(app: &TestApp, auth: &str) -> Vec<Value> {
    let response = app.get(PROGRAMS, auth).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["errors"], json!([]));
    body["data"].as_array().unwrap().clone()
}

/// Creates a program; its id.
async fn create(app: &TestApp, body: &Value) -> i64 {
    let response = app.post_json(PROGRAMS, &app.admin(), body).await;
    response.assert_status(201);
    assert_eq!(response.json()["data"]["version"], 1);
    response.json()["data"]["id"].as_i64().unwrap()
}

#[track_caller]
fn assert_invalid(response: &TestResponse, field: &str, reason: &str) {
    response.assert_status(400);
    let message = response.json()["errors"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(field), "message names {field}: {message}");
    assert!(message.contains(reason), "message says {reason}: {message}");
}

fn defaults(programs: &[Value]) -> Vec<String> {
    programs
        .iter()
        .filter(|p| p["default"] == true)
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

async fn count_events(app: &TestApp, event_type: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM domain_events WHERE org_id = $1 AND event_type = $2"
    )
    .bind(app.org.org_id)
    .bind(event_type)
    .fetch_one(e)
    .await)
    .unwrap()
}

async fn a_new_org_has_the_default_program(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let programs = list(&app, &app.admin()).await;
    assert_eq!(programs.len(), 1, "{programs:?}");
    let p = &programs[0];
    assert_eq!(p["name"], "Default");
    assert_eq!(p["default"], true);
    assert_eq!(p["version"], 1);
    assert_eq!(p["document"]["tiers"], json!([{"name": "Base"}]));
    assert_eq!(p["document"]["earn"][0]["points"], "bill.amount * 0.1");
    assert_eq!(p["document"]["expiry"], json!({"type": "rolling", "days": 365}));
    assert_eq!(p["document"]["default"], true);

    // The same program, compiled, for the org's store.
    let org = OrgId(app.org.org_id);
    let mut conn = app.state.db.read().await.unwrap();
    let compiled =
        service::program_for_store(&app.state.programs, &mut conn, org, app.org.store_id)
            .await
            .unwrap();
    assert_eq!(compiled.id.0, p["id"].as_i64().unwrap());
    assert_eq!(compiled.tier_count(), 1);
    assert!(compiled.doc.default);
    // Calling it lazily again finds the existing default and inserts nothing.
    let mut tx = app.state.db.begin_write().await.unwrap();
    let id = service::ensure_default_program(&mut tx, org).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(id, compiled.id);
    assert_eq!(list(&app, &app.admin()).await.len(), 1);
}

async fn the_issue_sample_document_is_accepted(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    // The starter is called "Default" too: rename the sample's copy.
    let mut doc = sample();
    doc["name"] = json!("Gold Club");
    let id = create(&app, &doc).await;
    let response = app.get(&format!("{PROGRAMS}/{id}"), &app.admin()).await;
    response.assert_status(200);
    let p = response.json()["data"].clone();
    assert_eq!(p["id"], id);
    assert_eq!(p["name"], "Gold Club");
    assert_eq!(p["version"], 1);
    assert_eq!(p["default"], true);
    assert!(p["createdAt"].as_str().unwrap().ends_with('Z'));
    let d = &p["document"];
    assert_eq!(d["tiers"][2]["upgrade"]["atLeast"].as_f64(), Some(50000.0));
    assert_eq!(d["earn"][2]["when"], "item.extendedFields.category == 'shoes'");
    assert_eq!(d["redemption"]["pointValue"].as_f64(), Some(0.25));
    assert_eq!(d["redemption"]["validationCode"], "required");
    assert_eq!(d["rounding"], json!({"pointsDecimals": 2, "mode": "floor"}));
    // The document read back is accepted again as it is.
    let again = app.put_json(&format!("{PROGRAMS}/{id}"), &app.admin(), d).await;
    again.assert_status(200);
    assert_eq!(again.json()["data"]["version"], 2);

    let audit = app.audit(app.org.org_id, "PROGRAM").await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["UPDATE", "CREATE"]);
    assert_eq!(audit[1].entity_id, id);
    assert_eq!(audit[1].principal_type, "ADMIN", "{:?}", audit[1]);
    assert!(audit[0].before_state.as_deref().unwrap_or_default().contains("\"version\":1"));
    assert_eq!(count_events(&app, "program.created").await, 1);
    assert_eq!(count_events(&app, "program.updated").await, 1);
}

async fn get_list_and_put_bump_the_version(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let id = create(&app, &named("Second", false)).await;
    let programs = list(&app, &app.admin()).await;
    assert_eq!(programs.len(), 2);
    assert_eq!(programs[1]["id"], id);
    assert_eq!(defaults(&programs), ["Default"]);

    let org = OrgId(app.org.org_id);
    let mut conn = app.state.db.read().await.unwrap();
    let v1 =
        service::program_by_id(&app.state.programs, &mut conn, org, ProgramId(id)).await.unwrap();
    assert_eq!(v1.version, 1);
    drop(conn);

    let mut doc = named("Second", false);
    doc["earn"][0]["points"] = json!("bill.amount * 0.3");
    for expected in [2, 3] {
        let response = app.put_json(&format!("{PROGRAMS}/{id}"), &app.admin(), &doc).await;
        response.assert_status(200);
        assert_eq!(response.json()["data"], json!({"id": id, "version": expected}));
    }
    let got = app.get(&format!("{PROGRAMS}/{id}"), &app.admin()).await.json()["data"].clone();
    assert_eq!(got["version"], 3);
    assert_eq!(got["document"]["earn"][0]["points"], "bill.amount * 0.3");

    // The cache notices the new version.
    let mut conn = app.state.db.read().await.unwrap();
    let v3 =
        service::program_by_id(&app.state.programs, &mut conn, org, ProgramId(id)).await.unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(v3.doc.earn[0].points, "bill.amount * 0.3");
    let all = service::programs_of_org(&app.state.programs, &mut conn, org).await.unwrap();
    assert_eq!(all.iter().map(|p| p.version).collect::<Vec<_>>(), [1, 3]);
    drop(conn);

    // Renaming onto another program's name is refused; unknown ids are 404.
    let clash =
        app.put_json(&format!("{PROGRAMS}/{id}"), &app.admin(), &named("Default", false)).await;
    clash.assert_status(400);
    assert_eq!(clash.v2_error_code(), 1207);
    let dup = app.post_json(PROGRAMS, &app.admin(), &named("Second", false)).await;
    assert_eq!(dup.v2_error_code(), 1207);
    app.get(&format!("{PROGRAMS}/999999"), &app.admin()).await.assert_status(404);
    app.put_json(&format!("{PROGRAMS}/999999"), &app.admin(), &doc).await.assert_status(404);
    app.get(&format!("{PROGRAMS}/abc"), &app.admin()).await.assert_status(400);
}

async fn invalid_documents_name_the_field(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let admin = app.admin();
    let mut cases: Vec<(Value, &str, &str)> = Vec::new();
    let mut add = |change: &dyn Fn(&mut Value), field: &'static str, reason: &'static str| {
        let mut doc = sample();
        doc["name"] = json!("Broken");
        change(&mut doc);
        cases.push((doc, field, reason));
    };
    add(
        &|d| d["earn"][2]["when"] = json!("item.amount >"),
        "earn[2].when",
        "syntax error at line 1, column 14",
    );
    add(
        &|d| d["earn"][0]["points"] = json!("bill.amout * 0.1"),
        "earn[0].points",
        "unknown attribute 'amout'",
    );
    add(&|d| d["earn"][1]["when"] = json!("customer.tier"), "earn[1].when", "must yield a bool");
    add(&|d| d["earn"][0]["points"] = json!("bill.amount * 10"), "earn[0].points", "type error");
    add(
        &|d| d["earn"][3]["points"] = json!("bill.amount"),
        "earn[3].points",
        "may not reference bill",
    );
    add(&|d| d["earn"][3]["name"] = json!("base"), "earn[3].name", "duplicate");
    add(&|d| d["tiers"][1] = json!({"name": "Silver"}), "tiers[1].upgrade", "required");
    add(
        &|d| d["tiers"][2]["upgrade"]["atLeast"] = json!(500),
        "tiers[2].upgrade.atLeast",
        "greater",
    );
    add(&|d| d["tiers"][1]["upgrade"]["atLeast"] = json!("lots"), "tiers[1].upgrade.atLeast", "");
    add(&|d| d["tiers"][0]["colour"] = json!("red"), "colour", "unknown field");
    add(&|d| d["tierValidity"]["months"] = json!(0), "tierValidity.months", "1 to 120");
    add(
        &|d| d["expiry"] = json!({"type": "fixedDate", "date": "2030-02-30"}),
        "expiry.date",
        "YYYY-MM-DD",
    );
    add(&|d| d["expiry"] = json!({"type": "rolling"}), "expiry", "exactly one of days or months");
    add(&|d| d["expiry"] = json!({"type": "never", "days": 3}), "expiry.days", "not allowed");
    add(&|d| d["rounding"]["pointsDecimals"] = json!(7), "rounding.pointsDecimals", "0 to 4");
    add(&|d| d["redemption"]["pointValue"] = json!(0), "redemption.pointValue", "greater than 0");
    add(&|d| d["redemption"]["multipleOf"] = json!(0), "redemption.multipleOf", "greater than 0");
    add(&|d| d["stores"] = json!(["no.such.store"]), "stores[0]", "no.such.store");
    add(&|d| d["earn"][0]["on"] = json!("checkout"), "earn[0].on", "unknown variant");
    for (doc, field, reason) in &cases {
        let response = app.post_json(PROGRAMS, &admin, doc).await;
        assert_invalid(&response, field, reason);
    }
    // The same checks on replace; nothing was written.
    let id = list(&app, &admin).await[0]["id"].as_i64().unwrap();
    let (doc, field, reason) = &cases[1];
    assert_invalid(&app.put_json(&format!("{PROGRAMS}/{id}"), &admin, doc).await, field, reason);
    let programs = list(&app, &admin).await;
    assert_eq!(programs.len(), 1);
    assert_eq!(programs[0]["version"], 1);
    assert!(app.audit(app.org.org_id, "PROGRAM").await.is_empty());
    // Not JSON at all.
    let response = app
        .send(
            request(axum::http::Method::POST, PROGRAMS)
                .header("authorization", &admin)
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"name\": "))
                .unwrap(),
        )
        .await;
    response.assert_status(400);
}

async fn the_default_program_stays_default_until_another_takes_over(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let id = list(&app, &app.admin()).await[0]["id"].as_i64().unwrap();
    let response =
        app.put_json(&format!("{PROGRAMS}/{id}"), &app.admin(), &named("Default", false)).await;
    assert_invalid(&response, "default", "make another program the default");
    // Leaving "default" out is the same as false.
    let mut doc = named("Default", true);
    doc.as_object_mut().unwrap().remove("default");
    assert_invalid(
        &app.put_json(&format!("{PROGRAMS}/{id}"), &app.admin(), &doc).await,
        "default",
        "",
    );
    app.put_json(&format!("{PROGRAMS}/{id}"), &app.admin(), &named("Default", true))
        .await
        .assert_status(200);
}

async fn only_admin_tokens_manage_programs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let id = list(&app, &app.admin()).await[0]["id"].as_i64().unwrap();
    let token = {
        let response = app
            .post_json(
                "/v3/oauth/token/generate",
                "",
                &json!({"key": app.org.oauth.client_key, "secret": app.org.oauth.client_secret}),
            )
            .await;
        response.assert_status(200);
        response.json()["data"]["accessToken"].as_str().unwrap().to_string()
    };
    let one = format!("{PROGRAMS}/{id}");
    for auth in [app.basic(), format!("Bearer {token}")] {
        app.get(PROGRAMS, &auth).await.assert_status(403);
        app.get(&one, &auth).await.assert_status(403);
        app.post_json(PROGRAMS, &auth, &named("Mine", false)).await.assert_status(403);
        let put = app.put_json(&one, &auth, &named("Default", true)).await;
        put.assert_status(403);
        assert_eq!(put.v2_error_code(), 403);
    }
    app.get(PROGRAMS, "Bearer perks_admin_forged").await.assert_status(401);
    app.get(PROGRAMS, "").await.assert_status(401);
    assert_eq!(list(&app, &app.admin()).await.len(), 1, "nothing was created");
}

async fn programs_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let mine = create(&app, &named("Mine", false)).await;
    let other = app.another_org("Other").await;
    let theirs = format!("Bearer {}", other.admin_token);
    let their_programs = list(&app, &theirs).await;
    assert_eq!(their_programs.len(), 1, "their own default only");
    assert_ne!(their_programs[0]["id"], mine);
    app.get(&format!("{PROGRAMS}/{mine}"), &theirs).await.assert_status(404);
    app.put_json(&format!("{PROGRAMS}/{mine}"), &theirs, &named("Mine", false))
        .await
        .assert_status(404);
    // Their program names do not clash with ours.
    app.post_json(PROGRAMS, &theirs, &named("Mine", false)).await.assert_status(201);
    let ours = app.get(&format!("{PROGRAMS}/{mine}"), &app.admin()).await.json()["data"].clone();
    assert_eq!(ours["version"], 1);
    // Resolution is per org too.
    let mut conn = app.state.db.read().await.unwrap();
    let result = service::program_by_id(
        &app.state.programs,
        &mut conn,
        OrgId(other.org_id),
        ProgramId(mine),
    )
    .await;
    assert!(matches!(result, Err(perks::programs::model::ProgramError::NotFound)));
    // Store codes resolve within the org: their main store is not ours.
    let mut doc = named("Stores", false);
    doc["stores"] = json!(["main.store"]);
    let created = app.post_json(PROGRAMS, &theirs, &doc).await;
    created.assert_status(201);
    let their_id = created.json()["data"]["id"].as_i64().unwrap();
    let compiled = service::program_by_id(
        &app.state.programs,
        &mut conn,
        OrgId(other.org_id),
        ProgramId(their_id),
    )
    .await
    .unwrap();
    assert_eq!(compiled.store_ids, [other.store_id]);
}

async fn exactly_one_program_is_default(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let a = create(&app, &named("A", true)).await;
    assert_eq!(defaults(&list(&app, &app.admin()).await), ["A"]);
    create(&app, &named("B", true)).await;
    create(&app, &named("C", false)).await;
    let programs = list(&app, &app.admin()).await;
    assert_eq!(defaults(&programs), ["B"]);
    // The document read back says so too.
    for p in &programs {
        assert_eq!(p["document"]["default"], p["default"], "{p}");
    }
    app.put_json(&format!("{PROGRAMS}/{a}"), &app.admin(), &named("A", true))
        .await
        .assert_status(200);
    assert_eq!(defaults(&list(&app, &app.admin()).await), ["A"]);

    // Racing creations that all ask to be default still leave exactly one.
    let admin = app.admin();
    let bodies: Vec<Value> = (1..=4).map(|i| named(&format!("R{i}"), true)).collect();
    let (r1, r2, r3, r4) = tokio::join!(
        app.post_json(PROGRAMS, &admin, &bodies[0]),
        app.post_json(PROGRAMS, &admin, &bodies[1]),
        app.post_json(PROGRAMS, &admin, &bodies[2]),
        app.post_json(PROGRAMS, &admin, &bodies[3]),
    );
    for r in [&r1, &r2, &r3, &r4] {
        r.assert_status(201);
    }
    let programs = list(&app, &app.admin()).await;
    assert_eq!(programs.len(), 8);
    assert_eq!(defaults(&programs).len(), 1, "{programs:?}");

    // The compiled default follows.
    let mut conn = app.state.db.read().await.unwrap();
    let compiled = service::program_for_store(
        &app.state.programs,
        &mut conn,
        OrgId(app.org.org_id),
        app.org.store_id,
    )
    .await
    .unwrap();
    assert_eq!(vec![compiled.doc.name.clone()], defaults(&programs));
}

async fn stores_resolve_to_their_program(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let org = OrgId(app.org.org_id);
    let mut doc = named("Main store club", false);
    doc["stores"] = json!(["main.store"]);
    let id = create(&app, &doc).await;
    // A store belongs to one program only.
    let mut clash = named("Clash", false);
    clash["stores"] = json!(["main.store"]);
    assert_invalid(
        &app.post_json(PROGRAMS, &app.admin(), &clash).await,
        "stores[0]",
        "already belongs",
    );

    let mut conn = app.state.db.read().await.unwrap();
    let at_main = service::program_for_store(&app.state.programs, &mut conn, org, app.org.store_id)
        .await
        .unwrap();
    assert_eq!(at_main.id.0, id);
    assert_eq!(at_main.store_ids, [app.org.store_id]);
    assert!(at_main.applies_to_store(app.org.store_id));
    let elsewhere =
        service::program_for_store(&app.state.programs, &mut conn, org, app.org.store_id + 1000)
            .await
            .unwrap();
    assert_eq!(elsewhere.doc.name, "Default");
    assert!(elsewhere.doc.default);

    // An org without any program at all (rows removed behind our back) says so.
    drop(conn);
    app.exec_sql(&format!("DELETE FROM programs WHERE org_id = {}", app.org.org_id)).await;
    let mut conn = app.state.db.read().await.unwrap();
    let none =
        service::program_for_store(&app.state.programs, &mut conn, org, app.org.store_id).await;
    assert!(matches!(none, Err(perks::programs::model::ProgramError::NoProgram)));
}
