//! Audit log API: an entity's changes (`GET /v2/auditLog/get`) with filters, sorting and
//! paging, a behavioral event's changes by name (`GET /v2/events/audit_logs`), bad queries,
//! permissions and org isolation.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};

backend_tests!(
    an_entitys_changes_are_listed_newest_first,
    entity_logs_filter_sort_and_page,
    bad_audit_queries_are_refused,
    event_audit_logs_by_event_name,
    audit_logs_need_audit_read,
    audit_logs_are_isolated_between_orgs,
);

const PASSWORD: &str = "till-pass-1";

#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
}

/// A customer with four audited changes: CREATE, UPDATE, SUBSCRIPTION_CHANGE, STATUS_CHANGE.
async fn changed_customer(app: &TestApp) -> i64 {
    let auth = app.basic();
    let body = json!({"profiles": [{"firstName": "Ana",
        "identifiers": [{"type": "mobile", "value": "919800000001"}]}]});
    let response = app.post_json("/v2/customers", &auth, &body).await;
    response.assert_status(200);
    let id = response.json()["createdId"].as_i64().unwrap();
    let update = json!({"profiles": [{"firstName": "Anna",
        "identifiers": [{"type": "mobile", "value": "919800000001"}]}]});
    app.put_json(&format!("/v2/customers/{id}?source=INSTORE"), &auth, &update)
        .await
        .assert_status(200);
    let optout = json!({"reason": "asked", "subscriptions": [
        {"channel": "MOBILE", "priority": "BULK", "type": "OPTOUT"}]});
    app.post_json(&format!("/v2/customers/{id}/subscriptions"), &auth, &optout)
        .await
        .assert_status(200);
    let status = "/v2/customers/lookup/status?source=INSTORE&identifierName=mobile&identifierValue=919800000001";
    app.put_json(status, &auth, &json!({"reason": "Odd activity", "label": "Suspicious"}))
        .await
        .assert_status(200);
    id
}

async fn entity_log(app: &TestApp, auth: &str, query: &str) -> Value {
    let response = app.get(&format!("/v2/auditLog/get?{query}"), auth).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["errors"], json!([]));
    body
}

fn actions(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn an_entitys_changes_are_listed_newest_first(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let id = changed_customer(&app).await;
    let body = entity_log(&app, &app.basic(), &format!("entityType=CUSTOMER&entityId={id}")).await;
    assert_eq!(actions(&body), ["STATUS_CHANGE", "SUBSCRIPTION_CHANGE", "UPDATE", "CREATE"]);
    assert_eq!(body["pagination"], json!({"limit": 10, "pageNo": 0, "total": 4}));
    let entries = body["data"].as_array().unwrap();
    let references: Vec<&str> =
        entries.iter().map(|e| e["referenceType"].as_str().unwrap()).collect();
    assert_eq!(references, ["CustomerStatus", "Subscription", "StandardField", "StandardField"]);
    let update = &entries[2];
    assert_eq!(update["entityType"], "CUSTOMER");
    assert_eq!(update["entityId"], id);
    assert_eq!(update["source"], "INSTORE");
    assert_eq!(update["changedBy"], format!("TILL:{}", app.org.till_id));
    assert!(update["fieldName"].as_str().unwrap().contains("firstName"), "{update}");
    assert!(update["oldValue"].to_string().contains("Ana"), "{update}");
    assert!(update["newValue"].to_string().contains("Anna"), "{update}");
    // Times are shown in the org's zone (Asia/Kolkata).
    assert!(update["autoUpdateTime"].as_str().unwrap().ends_with("+05:30"), "{update}");
    assert_eq!(entries[3]["oldValue"], Value::Null);
    // The entity type is read in any case; another entity's log is its own.
    let lower = entity_log(&app, &app.basic(), &format!("entityType=customer&entityId={id}")).await;
    assert_eq!(lower["pagination"]["total"], 4);
    let none = entity_log(&app, &app.basic(), &format!("entityType=CARD&entityId={id}")).await;
    assert_eq!(none["data"], json!([]));
    let none = entity_log(&app, &app.basic(), "entityType=CUSTOMER&entityId=424242").await;
    assert_eq!(none["pagination"]["total"], 0);
}

async fn entity_logs_filter_sort_and_page(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let id = changed_customer(&app).await;
    // A change made through an OAuth client, a day before the others.
    app.exec_sql(&format!(
        "INSERT INTO audit_log (org_id, occurred_at, request_id, principal_type, principal_id, \
         entity_type, entity_id, action, before_state, after_state) VALUES ({}, 1000000000000, \
         'req-api', 'OAUTH_CLIENT', 9, 'CUSTOMER', {id}, 'NOTES_CHANGE', NULL, '{{\"notes\": []}}')",
        app.org.org_id
    ))
    .await;
    let base = format!("entityType=CUSTOMER&entityId={id}");
    let query = |extra: &str| format!("{base}&{extra}");

    let subscription = entity_log(&app, &auth, &query("referenceType=Subscription")).await;
    assert_eq!(actions(&subscription), ["SUBSCRIPTION_CHANGE"]);
    assert_eq!(subscription["pagination"]["total"], 1);
    let standard = entity_log(&app, &auth, &query("referenceType=standardfield")).await;
    assert_eq!(actions(&standard), ["UPDATE", "CREATE"]);
    let custom = entity_log(&app, &auth, &query("referenceType=CustomField")).await;
    assert_eq!(custom["data"], json!([]));

    let instore = entity_log(&app, &auth, &query("source=INSTORE")).await;
    assert_eq!(instore["pagination"]["total"], 4);
    let api = entity_log(&app, &auth, &query("source=API")).await;
    assert_eq!(actions(&api), ["NOTES_CHANGE"]);
    assert_eq!(api["data"][0]["source"], "API");
    assert_eq!(api["data"][0]["requestId"], "req-api");
    assert_eq!(api["data"][0]["referenceType"], "Notes");
    let facebook = entity_log(&app, &auth, &query("source=FACEBOOK")).await;
    assert_eq!(facebook["pagination"]["total"], 0);

    // 1000000000000 ms is 2001-09-09 07:16:40 in Kolkata: windows in the org's zone.
    let old = entity_log(
        &app,
        &auth,
        &query("startDate=2001-09-09%2000:00:00&endDate=2001-09-09%2007:16:40"),
    )
    .await;
    assert_eq!(actions(&old), ["NOTES_CHANGE"]);
    let before = entity_log(&app, &auth, &query("endDate=2001-09-09%2007:16:39")).await;
    assert_eq!(before["pagination"]["total"], 0);
    let recent = entity_log(&app, &auth, &query("startDate=2020-01-01%2000:00:00")).await;
    assert_eq!(recent["pagination"]["total"], 4);

    let ascending = entity_log(&app, &auth, &query("sortOrder=ASC")).await;
    assert_eq!(
        actions(&ascending),
        ["NOTES_CHANGE", "CREATE", "UPDATE", "SUBSCRIPTION_CHANGE", "STATUS_CHANGE"]
    );
    let by_id = entity_log(&app, &auth, &query("sortBy=id&sortOrder=desc")).await;
    assert_eq!(actions(&by_id)[0], "NOTES_CHANGE", "inserted last");

    // Pages of two: 2 + 2 + 1, then nothing.
    let mut seen = Vec::new();
    for page in 0..4 {
        let body = entity_log(&app, &auth, &query(&format!("limit=2&pageNo={page}"))).await;
        assert_eq!(body["pagination"], json!({"limit": 2, "pageNo": page, "total": 5}));
        seen.extend(actions(&body));
    }
    assert_eq!(seen, ["STATUS_CHANGE", "SUBSCRIPTION_CHANGE", "UPDATE", "CREATE", "NOTES_CHANGE"]);
    let max = entity_log(&app, &auth, &query("limit=100")).await;
    assert_eq!(max["data"].as_array().unwrap().len(), 5);
}

async fn bad_audit_queries_are_refused(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    for query in [
        "entityId=1",
        "entityType=CUSTOMER",
        "entityType=CUSTOMER&entityId=abc",
        "entityType=NOT%20A%20TYPE&entityId=1",
        "entityType=CUSTOMER&entityId=1&limit=0",
        "entityType=CUSTOMER&entityId=1&limit=101",
        "entityType=CUSTOMER&entityId=1&pageNo=-1",
        "entityType=CUSTOMER&entityId=1&pageNo=x",
        "entityType=CUSTOMER&entityId=1&sortBy=colour",
        "entityType=CUSTOMER&entityId=1&sortOrder=sideways",
        "entityType=CUSTOMER&entityId=1&referenceType=Colour",
        "entityType=CUSTOMER&entityId=1&startDate=yesterday",
        "entityType=CUSTOMER&entityId=1&startDate=2024-02-01%2000:00:00&endDate=2024-01-01%2000:00:00",
        "entityType=CUSTOMER&entityId=1&source=IN%20STORE",
    ] {
        let response = app.get(&format!("/v2/auditLog/get?{query}"), &auth).await;
        assert_eq!(response.status.as_u16(), 400, "{query}: {}", response.body);
        assert_eq!(response.v2_error_code(), 400, "{query}");
    }
    for query in ["", "eventName=", "eventName=x&format=xml"] {
        let response = app.get(&format!("/v2/events/audit_logs?{query}"), &auth).await;
        assert_v2_error(&response, 400, 400);
    }
}

async fn event_audit_logs_by_event_name(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let other = app.another_org("Beta").await;
    let insert = |org: i64, at: i64, action: &str, before: &str, after: &str| {
        let (before, after) = (
            if before.is_empty() { "NULL".to_string() } else { format!("'{before}'") },
            if after.is_empty() { "NULL".to_string() } else { format!("'{after}'") },
        );
        format!(
            "INSERT INTO audit_log (org_id, occurred_at, request_id, principal_type, principal_id, \
             entity_type, entity_id, action, before_state, after_state) VALUES ({org}, {at}, \
             'req-{at}', 'TILL', 1, 'BEHAVIORAL_EVENT', 7, '{action}', {before}, {after})"
        )
    };
    let org = app.org.org_id;
    let v1 = r#"{"eventId":"e7","eventName":"cart_abandoned","active":true,"version":1}"#;
    let v2 = r#"{"eventId":"e7","eventName":"cart_abandoned","active":true,"version":2}"#;
    let off = r#"{"eventId":"e7","eventName":"cart_abandoned","active":false,"version":2}"#;
    let similar = r#"{"eventId":"e8","eventName":"cart_abandoned_v2","active":true}"#;
    for sql in [
        insert(org, 1_700_000_000_000, "CREATE", "", v1),
        insert(org, 1_700_000_100_000, "UPDATE", v1, v2),
        insert(org, 1_700_000_200_000, "DISABLE", v2, off),
        insert(org, 1_700_000_300_000, "CREATE", "", similar),
        insert(other.org_id, 1_700_000_400_000, "CREATE", "", v1),
    ] {
        app.exec_sql(&sql).await;
    }
    let response =
        app.get("/v2/events/audit_logs?eventName=cart_abandoned&format=json", &app.basic()).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    let data = body["data"].as_array().unwrap();
    let types: Vec<&str> = data.iter().map(|d| d["updatedType"].as_str().unwrap()).collect();
    assert_eq!(types, ["delete", "modify", "create"]);
    let first = &data[0];
    assert_eq!(first["orgId"], org);
    assert_eq!(first["eventName"], "cart_abandoned");
    assert_eq!(first["requestId"], "req-1700000200000");
    assert_eq!(first["valueHistory"][0]["value"]["active"], false);
    assert!(first["valueHistory"][0]["changedOn"].as_str().unwrap().starts_with("2023-11-15T03:"));
    assert_eq!(data[1]["valueHistory"][0]["value"]["version"], 2);

    let response = app.get("/v2/events/audit_logs?eventName=cart_abandoned_v2", &app.basic()).await;
    assert_eq!(response.json()["data"].as_array().unwrap().len(), 1);
    let response = app.get("/v2/events/audit_logs?eventName=CART_ABANDONED", &app.basic()).await;
    assert_eq!(response.json()["data"], json!([]), "names are exact");
    let response = app.get("/v2/events/audit_logs?eventName=cart%25", &app.basic()).await;
    assert_eq!(response.json()["data"], json!([]), "no wildcards");
}

async fn audit_logs_need_audit_read(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let id = changed_customer(&app).await;
    app.exec_sql(&format!(
        "INSERT INTO access_groups (org_id, name, permissions, created_at) VALUES ({}, 'NoAudit', \
         '{{\"CUSTOMER\":\"WRITE\",\"ORGANIZATION\":\"READ\"}}', 0)",
        app.org.org_id
    ))
    .await;
    let till = |name: &str, group: Option<&str>| {
        let mut body = json!({"name": name, "password": PASSWORD, "storeId": app.org.store_id});
        if let Some(group) = group {
            body["accessGroup"] = json!(group);
        }
        body
    };
    app.post_json("/v2/orgEntity/till", &app.basic(), &till("no.audit", Some("NoAudit")))
        .await
        .assert_status(200);
    app.post_json("/v2/orgEntity/till", &app.basic(), &till("pos.audit", None))
        .await
        .assert_status(200);
    let query = format!("/v2/auditLog/get?entityType=CUSTOMER&entityId={id}");
    let denied = basic_header("no.audit", PASSWORD);
    assert_v2_error(&app.get(&query, &denied).await, 403, 403);
    assert_v2_error(&app.get("/v2/events/audit_logs?eventName=x", &denied).await, 403, 403);
    // The POS group reads audit logs.
    let pos = basic_header("pos.audit", PASSWORD);
    assert_eq!(app.get(&query, &pos).await.json()["pagination"]["total"], 4);
    app.get("/v2/events/audit_logs?eventName=x", &pos).await.assert_status(200);
    assert_v2_error(&app.get(&query, "Basic bm86bm8=").await, 401, 401);
}

async fn audit_logs_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let id = changed_customer(&app).await;
    let beta = app.another_org("Beta").await;
    let b = basic_header(&beta.till.username, &beta.till.password);
    let body = entity_log(&app, &b, &format!("entityType=CUSTOMER&entityId={id}")).await;
    assert_eq!(body["pagination"]["total"], 0);
    assert_eq!(body["data"], json!([]));
    // Beta's own customer has its own log; Acme's is unchanged.
    let response = app
        .post_json(
            "/v2/customers",
            &b,
            &json!({"profiles": [{"firstName": "Bo",
            "identifiers": [{"type": "mobile", "value": "919800000001"}]}]}),
        )
        .await;
    let beta_customer = response.json()["createdId"].as_i64().unwrap();
    let body = entity_log(&app, &b, &format!("entityType=CUSTOMER&entityId={beta_customer}")).await;
    assert_eq!(actions(&body), ["CREATE"]);
    let body =
        entity_log(&app, &app.basic(), &format!("entityType=CUSTOMER&entityId={beta_customer}"))
            .await;
    assert_eq!(body["pagination"]["total"], 0);
    let body = entity_log(&app, &app.basic(), &format!("entityType=CUSTOMER&entityId={id}")).await;
    assert_eq!(body["pagination"]["total"], 4);
}
