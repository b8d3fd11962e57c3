//! Customer labels: add and list the org's labels, tag and untag customers, list a customer's
//! labels, search customers by label; bad input, permissions, audit and org isolation.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header};

backend_tests!(
    add_and_list_labels,
    duplicate_names_are_skipped_with_a_warning,
    add_labels_rejects_bad_input,
    the_org_label_cap_refuses_the_whole_request,
    the_label_cap_follows_the_org_config,
    change_labels_tags_and_untags,
    change_labels_rejects_bad_requests,
    search_finds_customers_by_label_prefix,
    search_rejects_bad_queries,
    labels_need_the_right_permissions,
    labels_are_isolated_between_orgs,
);

const PASSWORD: &str = "till-pass-1";

// ---------------------------------------------------------------- helpers

#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
    assert_eq!(response.json()["errors"][0]["status"], false);
}

/// Registers a customer with a mobile number; its id.
async fn add_customer(app: &TestApp, auth: &str, mobile: &str) -> i64 {
    let body = json!({"profiles": [{"firstName": "Ana",
        "identifiers": [{"type": "mobile", "value": mobile}]}]});
    let response = app.post_json("/v2/customers", auth, &body).await;
    response.assert_status(200);
    response.json()["createdId"].as_i64().unwrap_or_else(|| panic!("{}", response.body))
}

async fn add_labels(app: &TestApp, auth: &str, names: &[&str]) -> TestResponse {
    let labels: Vec<Value> =
        names.iter().map(|n| json!({"name": n, "description": format!("about {n}")})).collect();
    app.post_json("/v2/organization/labels", auth, &json!({"orgLabels": labels})).await
}

async fn org_labels(app: &TestApp, auth: &str) -> Vec<Value> {
    let response = app.get("/v2/organization/labels", auth).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(body["errors"], json!([]));
    body["data"].as_array().unwrap().clone()
}

async fn change(
    app: &TestApp,
    auth: &str,
    user: i64,
    add: &[&str],
    remove: &[&str],
) -> TestResponse {
    let entries =
        |names: &[&str]| names.iter().map(|n| json!({"labelName": n})).collect::<Vec<_>>();
    app.post_json(
        &format!("/v2/customers/{user}/changeLabels"),
        auth,
        &json!({"add": entries(add), "remove": entries(remove)}),
    )
    .await
}

/// The label names of a customer, in tagging order.
async fn customer_label_names(app: &TestApp, auth: &str, user: i64) -> Vec<String> {
    let response = app.get(&format!("/v2/customers/{user}/labels"), auth).await;
    response.assert_status(200);
    response.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["labelName"].as_str().unwrap().to_string())
        .collect()
}

/// `(userId, [labelName])` of each search hit, and the pagination block.
async fn search(app: &TestApp, auth: &str, query: &str) -> (Vec<(i64, Vec<String>)>, Value) {
    let response = app.get(&format!("/v2/customers/labels/search?{query}"), auth).await;
    response.assert_status(200);
    let body = response.json();
    let hits = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let labels = h["customerLabels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["labelName"].as_str().unwrap().to_string())
                .collect();
            (h["userId"].as_i64().unwrap(), labels)
        })
        .collect();
    (hits, body["pagination"].clone())
}

/// Adds a POS till (Customer write, Organization read) and returns its Basic header.
async fn pos_till(app: &TestApp, name: &str) -> String {
    let response = app
        .post_json(
            "/v2/orgEntity/till",
            &app.basic(),
            &json!({"name": name, "password": PASSWORD, "storeId": app.org.store_id}),
        )
        .await;
    response.assert_status(200);
    basic_header(name, PASSWORD)
}

// ---------------------------------------------------------------- tests

async fn add_and_list_labels(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    assert!(org_labels(&app, &auth).await.is_empty());

    let response = add_labels(&app, &auth, &["VIP", "Newsletter #1 (ünïcode)"]).await;
    response.assert_status(200);
    assert_eq!(response.json(), json!({"entity": 2, "warnings": []}));

    let labels = org_labels(&app, &auth).await;
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0]["name"], "VIP");
    assert_eq!(labels[0]["description"], "about VIP");
    assert_eq!(labels[0]["orgId"], app.org.org_id);
    assert_eq!(labels[0]["active"], true);
    assert_eq!(labels[0]["lastUpdatedBy"], app.org.till_id);
    assert!(labels[0]["id"].as_i64().unwrap() > 0);
    assert_eq!(labels[1]["name"], "Newsletter #1 (ünïcode)");

    // Names are trimmed; the description is optional; 100 characters is the longest name.
    let long = "L".repeat(100);
    let body = json!({"orgLabels": [{"name": "  Trimmed  "}, {"name": long}]});
    let response = app.post_json("/v2/organization/labels", &auth, &body).await;
    response.assert_status(200);
    assert_eq!(response.json()["entity"], 2);
    let names: Vec<Value> =
        org_labels(&app, &auth).await.iter().map(|l| l["name"].clone()).collect();
    assert_eq!(names[2], "Trimmed");
    assert_eq!(names[3], json!(long));

    // Each created label leaves an audit record.
    let audit = app.audit(app.org.org_id, "LABEL").await;
    assert_eq!(audit.len(), 4);
    assert!(audit.iter().all(|a| a.action == "CREATE" && a.principal_type == "TILL"));
}

async fn duplicate_names_are_skipped_with_a_warning(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_labels(&app, &auth, &["Gold"]).await.assert_status(200);

    let response = add_labels(&app, &auth, &["Gold", "Silver", "Silver", "gold"]).await;
    response.assert_status(200);
    let body = response.json();
    // "gold" differs from "Gold": names are case-sensitive.
    assert_eq!(body["entity"], 2, "{body}");
    let warnings = body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{body}");
    assert!(warnings.iter().all(|w| w["code"] == 1207));
    assert!(warnings[0]["message"].as_str().unwrap().contains("Gold"));
    assert!(warnings[1]["message"].as_str().unwrap().contains("Silver"));

    let names: Vec<Value> =
        org_labels(&app, &auth).await.iter().map(|l| l["name"].clone()).collect();
    assert_eq!(names, [json!("Gold"), json!("Silver"), json!("gold")]);

    // All duplicates: nothing created, still a success.
    let response = add_labels(&app, &auth, &["Gold"]).await;
    response.assert_status(200);
    assert_eq!(response.json()["entity"], 0);
    assert_eq!(app.audit(app.org.org_id, "LABEL").await.len(), 3);
}

async fn add_labels_rejects_bad_input(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let too_many: Vec<Value> = (0..101).map(|i| json!({"name": format!("L{i}")})).collect();
    for body in [
        json!({}),
        json!({"orgLabels": []}),
        json!({"orgLabels": [{"description": "no name"}]}),
        json!({"orgLabels": [{"name": ""}]}),
        json!({"orgLabels": [{"name": "   "}]}),
        json!({"orgLabels": [{"name": "x".repeat(101)}]}),
        json!({"orgLabels": [{"name": "ok"}, {"name": "a\u{1}b"}]}),
        json!({"orgLabels": [{"name": "ok", "description": "d".repeat(256)}]}),
        json!({"orgLabels": [{"name": 42}]}),
        json!({"orgLabels": {"name": "not a list"}}),
        json!({"orgLabels": too_many}),
    ] {
        let response = app.post_json("/v2/organization/labels", &auth, &body).await;
        assert_v2_error(&response, 400, 400);
    }
    // Malformed JSON and a wrong content type get the envelope too.
    let response = app
        .send(
            crate::helpers::request(axum::http::Method::POST, "/v2/organization/labels")
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"orgLabels\": ["))
                .unwrap(),
        )
        .await;
    assert_v2_error(&response, 400, 400);
    let response = app
        .send(
            crate::helpers::request(axum::http::Method::POST, "/v2/organization/labels")
                .header("authorization", &auth)
                .header("content-type", "text/plain")
                .body(axum::body::Body::from("VIP"))
                .unwrap(),
        )
        .await;
    assert_v2_error(&response, 415, 415);
    // Nothing was written by any refused request (one bad label refuses the whole batch).
    assert!(org_labels(&app, &auth).await.is_empty());
    assert!(app.audit(app.org.org_id, "LABEL").await.is_empty());
}

async fn the_org_label_cap_refuses_the_whole_request(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    for batch in 0..10 {
        let names: Vec<String> = (0..100).map(|i| format!("L{batch}-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        add_labels(&app, &auth, &names).await.assert_status(200);
    }
    assert_eq!(org_labels(&app, &auth).await.len(), 1000);
    // A duplicate still only warns at the cap…
    let response = add_labels(&app, &auth, &["L0-0"]).await;
    response.assert_status(200);
    assert_eq!(response.json()["entity"], 0);
    // …but a new label is refused, and so is the whole request.
    let response = add_labels(&app, &auth, &["L0-1", "One too many"]).await;
    assert_v2_error(&response, 400, 400);
    assert!(
        response.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Org max Label count exceed")
    );
    assert_eq!(org_labels(&app, &auth).await.len(), 1000);
}

async fn change_labels_tags_and_untags(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    add_labels(&app, &auth, &["VIP", "Gold", "Churn risk"]).await.assert_status(200);
    assert!(customer_label_names(&app, &auth, user).await.is_empty());

    let response = change(&app, &auth, user, &["VIP", "Gold"], &[]).await;
    response.assert_status(200);
    assert_eq!(response.json(), json!({"entity": user, "warnings": []}));

    let response = app.get(&format!("/v2/customers/{user}/labels"), &auth).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let labels = org_labels(&app, &auth).await;
    assert_eq!(data[0]["orgId"], app.org.org_id);
    assert_eq!(data[0]["labelName"], "VIP");
    assert_eq!(data[0]["labelId"], labels[0]["id"]);
    assert_eq!(data[1]["labelName"], "Gold");
    let tagged_on = data[0]["taggedOn"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(tagged_on).is_ok(), "{tagged_on}");

    // Removing a label the customer lacks, or adding one it has, warns; the rest applies.
    let response = change(&app, &auth, user, &["Gold"], &["VIP", "Churn risk"]).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["entity"], user);
    let warnings = body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{body}");
    assert!(warnings[0]["message"].as_str().unwrap().contains("Churn risk"));
    assert!(warnings[1]["message"].as_str().unwrap().contains("Gold"));
    assert_eq!(customer_label_names(&app, &auth, user).await, ["Gold"]);

    // Labels are trimmed like at creation; repeats count once.
    change(&app, &auth, user, &[" Churn risk ", "Churn risk"], &[]).await.assert_status(200);
    assert_eq!(customer_label_names(&app, &auth, user).await, ["Gold", "Churn risk"]);

    // Every change that changed something is audited, with what changed.
    let audit: Vec<_> = app
        .audit(app.org.org_id, "CUSTOMER")
        .await
        .into_iter()
        .filter(|a| a.action == "CHANGE_LABELS")
        .collect();
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|a| a.entity_id == user));
    let latest: Value = serde_json::from_str(audit[0].after_state.as_deref().unwrap()).unwrap();
    assert_eq!(latest, json!({"added": ["Churn risk"], "removed": []}));
    let middle: Value = serde_json::from_str(audit[1].after_state.as_deref().unwrap()).unwrap();
    assert_eq!(middle, json!({"added": [], "removed": ["VIP"]}));

    // A change that changes nothing writes nothing.
    change(&app, &auth, user, &["Gold"], &[]).await.assert_status(200);
    let count = app
        .audit(app.org.org_id, "CUSTOMER")
        .await
        .iter()
        .filter(|a| a.action == "CHANGE_LABELS")
        .count();
    assert_eq!(count, 3);
}

async fn change_labels_rejects_bad_requests(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let user = add_customer(&app, &auth, "919800000001").await;
    add_labels(&app, &auth, &["VIP"]).await.assert_status(200);
    let uri = format!("/v2/customers/{user}/changeLabels");

    // Unknown labels refuse the whole change.
    let response = change(&app, &auth, user, &["VIP", "Nope"], &[]).await;
    assert_v2_error(&response, 400, 400);
    assert!(response.json()["errors"][0]["message"].as_str().unwrap().contains("Nope"));
    assert_v2_error(&change(&app, &auth, user, &[], &["Nope"]).await, 400, 400);
    // Names are case-sensitive.
    assert_v2_error(&change(&app, &auth, user, &["vip"], &[]).await, 400, 400);
    assert!(customer_label_names(&app, &auth, user).await.is_empty());

    let many: Vec<Value> = (0..101).map(|_| json!({"labelName": "VIP"})).collect();
    for body in [
        json!({}),
        json!({"add": [], "remove": []}),
        json!({"add": [{}]}),
        json!({"add": [{"labelName": ""}]}),
        json!({"add": [{"labelName": "  "}]}),
        json!({"add": [{"labelName": "x".repeat(101)}]}),
        json!({"add": [{"labelName": 7}]}),
        json!({"add": "VIP"}),
        json!({"add": [{"labelName": "VIP"}], "remove": [{"labelName": "VIP"}]}),
        json!({"add": many}),
    ] {
        assert_v2_error(&app.post_json(&uri, &auth, &body).await, 400, 400);
    }
    assert!(customer_label_names(&app, &auth, user).await.is_empty());

    // Unknown and malformed customers.
    assert_v2_error(&change(&app, &auth, user + 1000, &["VIP"], &[]).await, 404, 8015);
    let body = json!({"add": [{"labelName": "VIP"}]});
    assert_v2_error(&app.post_json("/v2/customers/abc/changeLabels", &auth, &body).await, 400, 400);
    assert_v2_error(
        &app.get(&format!("/v2/customers/{}/labels", user + 1000), &auth).await,
        404,
        8015,
    );
    assert_v2_error(&app.get("/v2/customers/abc/labels", &auth).await, 400, 400);
    let audit = app.audit(app.org.org_id, "CUSTOMER").await;
    assert!(audit.iter().all(|a| a.action != "CHANGE_LABELS"));
}

async fn search_finds_customers_by_label_prefix(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_labels(&app, &auth, &["VIP-Gold", "VIP-Silver", "Other", "vip-lower", "V_%"])
        .await
        .assert_status(200);
    let c1 = add_customer(&app, &auth, "919800000001").await;
    let c2 = add_customer(&app, &auth, "919800000002").await;
    let c3 = add_customer(&app, &auth, "919800000003").await;
    let c4 = add_customer(&app, &auth, "919800000004").await;
    change(&app, &auth, c1, &["VIP-Gold"], &[]).await.assert_status(200);
    change(&app, &auth, c2, &["VIP-Silver", "Other", "VIP-Gold"], &[]).await.assert_status(200);
    change(&app, &auth, c3, &["vip-lower"], &[]).await.assert_status(200);
    change(&app, &auth, c4, &["V_%"], &[]).await.assert_status(200);

    let (hits, pagination) = search(&app, &auth, "q=VIP").await;
    assert_eq!(pagination, json!({"limit": 10, "offset": 0, "total": 2}));
    assert_eq!(
        hits,
        [
            (c1, vec!["VIP-Gold".to_string()]),
            (c2, vec!["VIP-Gold".to_string(), "VIP-Silver".to_string()]),
        ]
    );
    // The hit carries the org id of each label.
    let body = app.get("/v2/customers/labels/search?q=Other", &auth).await.json();
    assert_eq!(
        body["data"][0]["customerLabels"][0],
        json!({"orgId": app.org.org_id, "labelName": "Other"})
    );

    // Case-sensitive prefix; LIKE wildcards are plain characters.
    assert_eq!(search(&app, &auth, "q=vip").await.0, [(c3, vec!["vip-lower".to_string()])]);
    assert_eq!(search(&app, &auth, "q=V_").await.0, [(c4, vec!["V_%".to_string()])]);
    assert_eq!(search(&app, &auth, "q=VIP-S").await.0, [(c2, vec!["VIP-Silver".to_string()])]);
    let (hits, pagination) = search(&app, &auth, "q=Nothing").await;
    assert!(hits.is_empty());
    assert_eq!(pagination["total"], 0);

    // Paging, and -1 for all (reported as the hard maximum).
    let (hits, pagination) = search(&app, &auth, "q=V&limit=2&offset=1").await;
    assert_eq!(pagination, json!({"limit": 2, "offset": 1, "total": 3}));
    assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [c2, c4]);
    let (hits, pagination) = search(&app, &auth, "q=V&limit=-1").await;
    assert_eq!(pagination, json!({"limit": 1000, "offset": 0, "total": 3}));
    assert_eq!(hits.len(), 3);
    let (hits, _) = search(&app, &auth, "q=V&offset=5").await;
    assert!(hits.is_empty());
}

async fn search_rejects_bad_queries(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let long = "x".repeat(101);
    for query in [
        String::new(),
        "q=".to_string(),
        format!("q={long}"),
        "q=V&limit=0".into(),
        "q=V&limit=-2".into(),
        "q=V&limit=1001".into(),
        "q=V&limit=abc".into(),
        "q=V&offset=-1".into(),
        "q=V&offset=x".into(),
    ] {
        let response = app.get(&format!("/v2/customers/labels/search?{query}"), &auth).await;
        assert_v2_error(&response, 400, 400);
    }
}

async fn labels_need_the_right_permissions(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let pos = pos_till(&app, "pos.labels").await;
    let user = add_customer(&app, &auth, "919800000001").await;
    add_labels(&app, &auth, &["VIP"]).await.assert_status(200);

    // A POS till reads labels and tags customers…
    assert_eq!(org_labels(&app, &pos).await.len(), 1);
    change(&app, &pos, user, &["VIP"], &[]).await.assert_status(200);
    assert_eq!(customer_label_names(&app, &pos, user).await, ["VIP"]);
    assert_eq!(search(&app, &pos, "q=V").await.0.len(), 1);
    // …but does not create labels.
    assert_v2_error(&add_labels(&app, &pos, &["Mine"]).await, 403, 403);
    assert_eq!(org_labels(&app, &auth).await.len(), 1);
    // Without credentials nothing is answered.
    assert_v2_error(&app.get("/v2/organization/labels", "Basic bm86bm8=").await, 401, 401);
}

async fn labels_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_labels(&app, &auth, &["VIP"]).await.assert_status(200);
    let acme_user = add_customer(&app, &auth, "919800000001").await;
    change(&app, &auth, acme_user, &["VIP"], &[]).await.assert_status(200);

    let beta = app.another_org("Beta").await;
    let b = basic_header(&beta.till.username, &beta.till.password);
    // Beta sees none of Acme's labels, tags or customers.
    assert!(org_labels(&app, &b).await.is_empty());
    assert!(search(&app, &b, "q=VIP").await.0.is_empty());
    assert_v2_error(&app.get(&format!("/v2/customers/{acme_user}/labels"), &b).await, 404, 8015);
    assert_v2_error(&change(&app, &b, acme_user, &[], &["VIP"]).await, 404, 8015);

    // Beta may use the same name for its own label; Acme's is untouched.
    let response = add_labels(&app, &b, &["VIP"]).await;
    response.assert_status(200);
    assert_eq!(response.json(), json!({"entity": 1, "warnings": []}));
    let beta_user = add_customer(&app, &b, "919800000001").await;
    assert_ne!(beta_user, acme_user);
    change(&app, &b, beta_user, &["VIP"], &[]).await.assert_status(200);
    let (hits, _) = search(&app, &b, "q=VIP").await;
    assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [beta_user]);
    let (hits, _) = search(&app, &auth, "q=VIP").await;
    assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [acme_user]);
    assert_eq!(org_labels(&app, &auth).await.len(), 1);
    assert_eq!(customer_label_names(&app, &auth, acme_user).await, ["VIP"]);
    assert_eq!(app.audit(beta.org_id, "LABEL").await.len(), 1);
    assert_eq!(app.audit(app.org.org_id, "LABEL").await.len(), 1);
}

async fn the_label_cap_follows_the_org_config(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let set_cap =
        |value: &'static str| serde_json::json!({"keyName": "ORG_MAX_LABEL_COUNT", "value": value});
    app.post_json("/v2/organization/configs", &app.admin(), &set_cap("3")).await.assert_status(200);
    add_labels(&app, &auth, &["A", "B", "C"]).await.assert_status(200);
    let over = add_labels(&app, &auth, &["D"]).await;
    assert_v2_error(&over, 400, 400);
    assert_eq!(org_labels(&app, &auth).await.len(), 3);
    app.post_json("/v2/organization/configs", &app.admin(), &set_cap("4")).await.assert_status(200);
    add_labels(&app, &auth, &["D"]).await.assert_status(200);
    assert_eq!(org_labels(&app, &auth).await.len(), 4);
}
