//! Store tasks: add/get/update with one entry per executor and every status change logged;
//! the Task codes (5203-5214) item by item in mixed batches; status mappings and metadata;
//! associates calling the Task API with their token; XML; store isolation and org isolation.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header, request};
use crate::staff::{add_staff, login, with_token, zone_and_concept};
use crate::transactions::add_customer;

backend_tests!(
    add_get_update_log_the_whole_way,
    a_mixed_batch_writes_only_the_good_items,
    update_and_read_codes,
    status_mappings_and_metadata,
    associates_work_with_their_token,
    customers_can_be_executors,
    execute_by_all_reaches_every_active_account_of_the_type,
    a_retried_add_with_an_idempotency_key_adds_once,
    openapi_documents_the_staff_and_task_apis,
    xml_in_and_out,
    a_store_sees_only_its_own_tasks,
);

/// Posts a v1.1 batch `{"root": {<entity>: items}}` as JSON.
pub async fn post_v1(
    app: &TestApp,
    path: &str,
    auth: &str,
    entity: &str,
    items: Value,
) -> TestResponse {
    app.post_json(&format!("{path}?format=json"), auth, &json!({"root": {entity: items}})).await
}

/// The items of a v1.1 batch answer.
#[track_caller]
pub fn items(response: &TestResponse, outer: &str, inner: &str) -> Vec<Value> {
    response.json()["response"][outer][inner]
        .as_array()
        .unwrap_or_else(|| panic!("no {outer}.{inner}: {}", response.body))
        .clone()
}

#[track_caller]
pub fn item_code(item: &Value) -> i64 {
    item["item_status"]["code"].as_i64().unwrap_or_else(|| panic!("no item_status: {item}"))
}

/// A valid task for the main store executed by `ids` (associates), created by `creator`.
pub fn task(title: &str, creator: &str, ids: &str) -> Value {
    json!({
        "local_id": format!("L-{title}"),
        "title": title,
        "body": "Call every birthday customer",
        "start_date": "2030-01-01 09:00:00",
        "end_date": "2030-01-10 18:00:00",
        "expiry_date": "2030-01-20 18:00:00",
        "type": "MEMO",
        "action": {"type": "sms", "template": "Hi {name}, your points = {points}"},
        "creator": {"type": "associate", "id": creator},
        "execute_by_all": "false",
        "executable_by_type": "associate",
        "executable_by_ids": ids,
        "possible_statuses": "OPEN,IN_PROGRESS,CLOSED",
        "tags": "[\"label\": \"birthday task\", \"priority\": \"1\"]",
    })
}

/// Adds one task and returns it (asserting 5200).
pub async fn add_task(app: &TestApp, auth: &str, body: Value) -> Value {
    let response = post_v1(app, "/v1.1/task/add", auth, "task", json!([body])).await;
    response.assert_status(200);
    let item = items(&response, "tasks", "task").remove(0);
    assert_eq!(item_code(&item), 5200, "{item}");
    item
}

async fn get_task(app: &TestApp, auth: &str, id: i64) -> Value {
    let response = app.get(&format!("/v1.1/task/get?id={id}&format=json"), auth).await;
    response.assert_status(200);
    items(&response, "tasks", "task").remove(0)
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>(sql).fetch_one(e).await).unwrap()
}

/// The types of the org's outbox events, oldest first.
pub async fn event_types(app: &TestApp, prefix: &str) -> Vec<String> {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, String>(
        "SELECT event_type FROM domain_events WHERE org_id = $1 AND event_type LIKE $2 ORDER BY id"
    )
    .bind(app.org.org_id)
    .bind(format!("{prefix}%"))
    .fetch_all(e)
    .await)
    .unwrap()
}

async fn logs(app: &TestApp, auth: &str, id: i64) -> Vec<Value> {
    let response = app.get(&format!("/v1.1/task/logs?id={id}"), auth).await;
    response.assert_status(200);
    response.json()["response"]["logs"]["log"].as_array().cloned().unwrap_or_default()
}

async fn add_get_update_log_the_whole_way(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let ben = add_staff(&app, "ben", json!({})).await;
    let mut body = task("Birthday calls", "ana", &format!("{ana},{ben}"));
    body["entries"] = json!({"entry": [{"status": "IN_PROGRESS"}]});
    body["reminder"] = json!([{"create": "true", "time": "2030-01-02 10:00:00", "template": "{name}: {task_title}"}]);
    let added = add_task(&app, &app.basic(), body).await;
    let id = added["id"].as_i64().unwrap();
    assert_eq!(added["item_status"]["message"], "Task added successfully");
    assert_eq!(added["local_id"], "L-Birthday calls");
    assert_eq!(added["status"], "OPEN");
    assert_eq!(added["store_id"], app.org.store_id);
    assert_eq!(
        added["start_date"], "2030-01-01 09:00:00",
        "dates read and shown in the store's zone"
    );
    assert_eq!(added["expiry_date"], "2030-01-20 18:00:00");
    assert_eq!(added["creator"]["id"], "ana");
    assert_eq!(added["executable_by_ids"], format!("{ana},{ben}"));
    assert_eq!(added["execute_by_all"], "false");
    let entries = added["entries"]["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one entry per executor");
    assert_eq!(entries[0]["executor_id"], ana);
    assert_eq!(entries[0]["executor_name"], "ana");
    assert_eq!(entries[0]["status"], "IN_PROGRESS");
    assert_eq!(entries[1]["status"], "OPEN");
    let reminders = added["reminders"]["reminder"].as_array().unwrap();
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0]["time"], "2030-01-02 10:00:00");
    assert_eq!(reminders[0]["status"], "PENDING");

    let fetched = get_task(&app, &app.basic(), id).await;
    assert_eq!(fetched["item_status"]["message"], "Task fetched successfully");
    assert_eq!(fetched["entries"], added["entries"]);
    let without =
        app.get(&format!("/v1.1/task/get?id={id}&include_entries=false"), &app.basic()).await;
    assert!(items(&without, "tasks", "task")[0].get("entries").is_none());

    // ben closes his entry with a remark; the title changes too.
    let update = json!({"id": id, "title": "Birthday calls (week 1)",
        "entries": {"entry": [{"executor_id": ben, "status": "CLOSED", "remarks": "all called"}]}});
    let response = post_v1(&app, "/v1.1/task/update", &app.basic(), "task", json!([update])).await;
    response.assert_status(200);
    let updated = items(&response, "tasks", "task").remove(0);
    assert_eq!(item_code(&updated), 5200);
    assert_eq!(updated["item_status"]["message"], "Task updated successfully");
    assert_eq!(updated["title"], "Birthday calls (week 1)");
    assert_eq!(updated["entries"]["entry"][1]["status"], "CLOSED");
    assert_eq!(updated["entries"]["entry"][1]["internal_status"], "CLOSED");
    assert_eq!(updated["entries"]["entry"][1]["remarks"], "all called");
    assert_eq!(updated["status"], "OPEN", "ana's entry is still open");

    let log = logs(&app, &app.basic(), id).await;
    assert_eq!(log.len(), 3, "two entries created, one change: {log:?}");
    assert_eq!(log[0]["new_status"], "IN_PROGRESS");
    assert_eq!(log[0]["old_status"], "");
    assert_eq!(log[2]["executor_id"], ben);
    assert_eq!(log[2]["old_status"], "OPEN");
    assert_eq!(log[2]["new_status"], "CLOSED");
    assert_eq!(log[2]["remarks"], "all called");
    assert_eq!(log[2]["updated_by"], app.org.till.username);
    let filtered =
        app.get(&format!("/v1.1/task/logs?id={id}&executor_id={ana}"), &app.basic()).await;
    let logs_of_ana = filtered.json()["response"]["logs"].clone();
    assert_eq!(logs_of_ana["total"], 1);
    assert_eq!(logs_of_ana["item_status"]["message"], "Task update log file fetched successfully");

    // Closing ana's entry closes the task, which cancels its pending reminder at once.
    let close =
        json!({"id": id, "entries": {"entry": [{"executor_id": "ana", "status": "CLOSED"}]}});
    post_v1(&app, "/v1.1/task/update", &app.basic(), "task", json!([close]))
        .await
        .assert_status(200);
    let closed = get_task(&app, &app.basic(), id).await;
    assert_eq!(closed["status"], "CLOSED");
    assert_eq!(closed["reminders"]["reminder"][0]["status"], "CANCELLED");
    assert_eq!(closed["reminders"]["reminder"][0]["cancel_reason"], "TASK_CLOSED");

    assert_eq!(
        event_types(&app, "task.").await,
        [
            "task.created",
            "task.entry_status_changed",
            "task.updated",
            "task.entry_status_changed",
            "task.reminder_cancelled",
            "task.updated"
        ]
    );
    let audit = app.audit(app.org.org_id, "TASK").await;
    assert_eq!(audit.iter().filter(|r| r.action == "UPDATE").count(), 2);
    assert_eq!(audit.iter().filter(|r| r.action == "CREATE").count(), 1);
    let entry_audit = app.audit(app.org.org_id, "TASK_ENTRY").await;
    assert_eq!(entry_audit.len(), 2);
    assert!(entry_audit.iter().all(|r| r.action == "STATUS_CHANGE"));
}

async fn a_mixed_batch_writes_only_the_good_items(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let ids = ana.to_string();
    let with = |changes: Value| {
        let mut body = task("t", "ana", &ids);
        for (k, v) in changes.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(Value, i64)> = vec![
        (task("good", "ana", &ids), 5200),
        (with(json!({"end_date": "2029-12-31 09:00:00"})), 5208),
        (with(json!({"end_date": "2030-01-01 09:00:00"})), 5208),
        (with(json!({"expiry_date": "2030-01-05 09:00:00"})), 5209),
        (with(json!({"executable_by_ids": "999999"})), 5212),
        (with(json!({"executable_by_ids": ""})), 5212),
        (with(json!({"executable_by_type": "customer", "executable_by_ids": "999999"})), 5213),
        (with(json!({"creator": {"type": "associate", "id": "nobody"}})), 5213),
        (with(json!({"creator": {"type": "robot", "id": "ana"}})), 5213),
        (with(json!({"entries": {"entry": [{"status": "DONE"}]}})), 5207),
        (with(json!({"title": ""})), 5205),
        (with(json!({"type": "PARTY"})), 5205),
        (with(json!({"start_date": "tomorrow"})), 5205),
        (with(json!({"executable_by_type": "robot"})), 5205),
        (with(json!({"execute_by_all": "true", "executable_by_type": "customer"})), 5205),
        (with(json!({"action": {"type": "sms", "template": "x".repeat(1601)}})), 5205),
        (with(json!({"action": {"type": "fax"}})), 5205),
        (with(json!({"store_id": "999999"})), 5205),
        (with(json!({"reminder": [{"time": "2031-01-01 10:00:00"}]})), 5206),
        (with(json!({"reminder": [{"template": "no time"}]})), 5206),
        (task("also good", "ana", &ids), 5200),
    ];
    let bodies: Vec<Value> = cases.iter().map(|(b, _)| b.clone()).collect();
    let response = post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!(bodies)).await;
    response.assert_status(201);
    assert_eq!(response.v1_code(), 201);
    let answers = items(&response, "tasks", "task");
    assert_eq!(answers.len(), cases.len());
    for ((body, expected), answer) in cases.iter().zip(&answers) {
        assert_eq!(item_code(answer), *expected, "{body}\n→ {answer}");
        if *expected != 5200 {
            assert_eq!(answer["item_status"]["success"], "false");
            assert_eq!(answer["local_id"], body["local_id"], "a failed item echoes its local_id");
        }
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM store_tasks").await, 2, "only the good items");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM task_entries").await, 2);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM task_reminders").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM task_logs").await, 2);

    // All bad: 500, and still nothing written.
    let bad =
        post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!([with(json!({"title": ""}))]))
            .await;
    bad.assert_status(500);
    assert_eq!(bad.v1_code(), 500);
    // An admin token has no store: it must name one (5214).
    let response =
        post_v1(&app, "/v1.1/task/add", &app.admin(), "task", json!([task("x", "ana", &ids)]))
            .await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5214);
    let mut named = task("by admin", "ana", &ids);
    named["store_id"] = json!(app.org.store_id.to_string());
    add_task(&app, &app.admin(), named).await;
    // No items at all, or too many, is a bad request.
    let empty = post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!([])).await;
    empty.assert_status(400);
    let many: Vec<Value> = (0..101).map(|i| task(&format!("t{i}"), "ana", &ids)).collect();
    let too_many = post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!(many)).await;
    too_many.assert_status(400);
    assert_eq!(too_many.v1_code(), 1060);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM store_tasks").await, 3);
}

async fn update_and_read_codes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let id = add_task(&app, &app.basic(), task("t", "ana", &ana.to_string())).await["id"]
        .as_i64()
        .unwrap();
    let cases: Vec<(Value, i64)> = vec![
        (json!({"title": "no id"}), 5203),
        (json!({"id": "abc"}), 5204),
        (json!({"id": 999_999}), 5204),
        (json!({"id": id, "end_date": "2029-01-01 00:00:00"}), 5208),
        (json!({"id": id, "expiry_date": "2030-01-02 00:00:00"}), 5209),
        (json!({"id": id, "entries": {"entry": [{"executor_id": ana, "status": "NOPE"}]}}), 5207),
        (json!({"id": id, "executable_by_ids": "424242"}), 5212),
        (json!({"id": id, "entries": {"entry": [{"id": 424242, "status": "OPEN"}]}}), 5205),
        (json!({"id": id, "reminder": [{"id": 424242, "time": "2030-01-03 10:00:00"}]}), 5206),
        (json!({"id": id, "body": "fine"}), 5200),
    ];
    let bodies: Vec<Value> = cases.iter().map(|(b, _)| b.clone()).collect();
    let response = post_v1(&app, "/v1.1/task/update", &app.basic(), "task", json!(bodies)).await;
    response.assert_status(201);
    for ((body, expected), answer) in cases.iter().zip(items(&response, "tasks", "task")) {
        assert_eq!(item_code(&answer), *expected, "{body}\n→ {answer}");
    }
    assert_eq!(get_task(&app, &app.basic(), id).await["end_date"], "2030-01-10 18:00:00");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM task_logs").await,
        1,
        "no refused change was logged"
    );
    // An admin (not a till) must pass the store id to update (5214); with it, it may.
    let admin =
        post_v1(&app, "/v1.1/task/update", &app.admin(), "task", json!([{"id": id, "body": "x"}]))
            .await;
    assert_eq!(item_code(&items(&admin, "tasks", "task")[0]), 5214);
    let wrong_store = json!([{"id": id, "store_id": 999_999, "body": "x"}]);
    let admin = post_v1(&app, "/v1.1/task/update", &app.admin(), "task", wrong_store).await;
    assert_eq!(item_code(&items(&admin, "tasks", "task")[0]), 5204);
    let right_store = json!([{"id": id, "store_id": app.org.store_id, "body": "by admin"}]);
    let admin = post_v1(&app, "/v1.1/task/update", &app.admin(), "task", right_store).await;
    admin.assert_status(200);

    // Reads: 5203 without an id, 5204 for an unknown one.
    for (uri, code) in [
        ("/v1.1/task/get".to_string(), 5203),
        ("/v1.1/task/get?id=x".to_string(), 5204),
        ("/v1.1/task/get?id=999999".to_string(), 5204),
        ("/v1.1/task/logs".to_string(), 5203),
        ("/v1.1/task/logs?id=999999".to_string(), 5204),
        (format!("/v1.1/task/logs?id={id}&start_date=yesterday"), 5205),
        ("/v1.1/task/reminder?task_id=999999".to_string(), 5204),
        ("/v1.1/task/reminder?status=LOST".to_string(), 5205),
        ("/v1.1/store/tasks?limit=0".to_string(), 5205),
        ("/v1.1/store/tasks?status=DONE".to_string(), 5205),
    ] {
        let response = app.get(&uri, &app.basic()).await;
        response.assert_status(400);
        assert_eq!(response.v1_code(), code, "{uri}: {}", response.body);
        assert_eq!(response.json()["response"]["status"]["success"], "false");
    }
}

async fn status_mappings_and_metadata(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let ben = add_staff(&app, "ben", json!({})).await;
    let mappings = json!([
        {"status": "AC", "internal_status": "IN_PROGRESS", "description": "Accepted"},
        {"status": "done", "internal_status": "CLOSED"},
        {"status": "LOST", "internal_status": "GONE"},
        {"status": "OPEN", "internal_status": "CLOSED"},
        {"internal_status": "OPEN"},
    ]);
    let response =
        post_v1(&app, "/v1.1/task/statusmapping", &app.basic(), "status_mapping", mappings).await;
    response.assert_status(201);
    let answers = items(&response, "status_mappings", "status_mapping");
    let codes: Vec<i64> = answers.iter().map(item_code).collect();
    assert_eq!(codes, [5200, 5200, 5208, 5205, 5205]);
    assert_eq!(answers[0]["item_status"]["message"], "Status mapping added successfully");
    assert_eq!(answers[1]["status"], "DONE");

    // Upsert by status.
    let again = json!([{"status": "AC", "internal_status": "OPEN", "description": "Acknowledged"}]);
    post_v1(&app, "/v1.1/task/statusmapping", &app.basic(), "status_mapping", again)
        .await
        .assert_status(200);
    let again =
        json!([{"status": "AC", "internal_status": "IN_PROGRESS", "description": "Accepted"}]);
    post_v1(&app, "/v1.1/task/statusmapping", &app.basic(), "status_mapping", again)
        .await
        .assert_status(200);
    let list = app.get("/v1.1/task/statusmapping", &app.basic()).await;
    list.assert_status(200);
    let list = list.json()["response"]["status_mappings"]["status_mapping"].clone();
    let pairs: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["status"].as_str().unwrap().into(), m["internal_status"].as_str().unwrap().into())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("OPEN", "OPEN"),
        ("IN_PROGRESS", "IN_PROGRESS"),
        ("CLOSED", "CLOSED"),
        ("AC", "IN_PROGRESS"),
        ("DONE", "CLOSED"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs, expected);

    // The documented example: entries AC and OPEN for four executors (the rest start OPEN).
    let carl = add_staff(&app, "carl", json!({})).await;
    let dee = add_staff(&app, "dee", json!({})).await;
    let mut body = task("documented", "ana", &format!("{ana},{ben},{carl},{dee}"));
    body["entries"] = json!({"entry": [{"status": "AC"}, {"status": "OPEN"}]});
    let added = add_task(&app, &app.basic(), body).await;
    let entries = added["entries"]["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["AC", "OPEN", "OPEN", "OPEN"]);
    assert_eq!(entries[0]["internal_status"], "IN_PROGRESS");
    // A task's own custom statuses are allowed for it (open work unless mapped) …
    let mut custom = task("custom", "ana", &ana.to_string());
    custom["possible_statuses"] = json!("WAITING,DONE");
    let added = add_task(&app, &app.basic(), custom).await;
    assert_eq!(added["entries"]["entry"][0]["status"], "WAITING", "OPEN is not a possible status");
    assert_eq!(added["entries"]["entry"][0]["internal_status"], "OPEN");
    let id = added["id"].as_i64().unwrap();
    let done = json!([{"id": id, "entries": {"entry": [{"executor_id": ana, "status": "done"}]}}]);
    let response = post_v1(&app, "/v1.1/task/update", &app.basic(), "task", done).await;
    let entry = items(&response, "tasks", "task")[0]["entries"]["entry"][0].clone();
    assert_eq!(entry["status"], "DONE");
    assert_eq!(entry["internal_status"], "CLOSED", "DONE is mapped to CLOSED");
    // … and a status neither possible nor mapped is refused.
    let bad = json!([{"id": id, "entries": {"entry": [{"executor_id": ana, "status": "LATER"}]}}]);
    let response = post_v1(&app, "/v1.1/task/update", &app.basic(), "task", bad).await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5207);

    let meta = app.get("/v1.1/task/metadata?format=json", &app.basic()).await;
    meta.assert_status(200);
    let meta = meta.json()["response"]["metadata"].clone();
    assert_eq!(meta["item_status"]["code"], 5200);
    assert_eq!(meta["item_status"]["message"], "Tasks meta data retrieved successfully");
    assert_eq!(meta["types"], json!(["MEMO", "CUSTOMER_TASK", "STORE_TASK"]));
    assert_eq!(meta["executable_by_types"], json!(["cashier", "associate", "customer"]));
    assert_eq!(meta["statuses"], json!(["OPEN", "IN_PROGRESS", "CLOSED", "AC", "DONE"]));
    assert!(meta["action_types"].as_array().unwrap().contains(&json!("sms")));
    // An org's own task types replace the defaults.
    let config = json!({"keyName": "CONF_TASK_TYPES", "value": "MEMO,VISIT", "scope": "ORG"});
    app.post_json("/v2/organization/configs", &app.admin(), &config).await.assert_status(200);
    let meta = app.get("/v1.1/task/metadata", &app.basic()).await;
    assert_eq!(meta.json()["response"]["metadata"]["types"], json!(["MEMO", "VISIT"]));
    let mut visit = task("visit", "ana", &ana.to_string());
    visit["type"] = json!("visit");
    assert_eq!(add_task(&app, &app.basic(), visit).await["type"], "VISIT");
    let audit = app.audit(app.org.org_id, "TASK_STATUS_MAPPING").await;
    assert_eq!(audit.len(), 4);
}

async fn associates_work_with_their_token(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let ben = add_staff(&app, "ben", json!({})).await;
    let cara = add_staff(&app, "cara", json!({})).await;
    let ana_token = login(&app, "ana").await;
    let ben_token = login(&app, "ben").await;
    // ana creates a task without naming a creator or a store: she is both.
    let mut body = task("from ana", "ana", &format!("{ben},{cara}"));
    body.as_object_mut().unwrap().remove("creator");
    let response = with_token(
        &app,
        Method::POST,
        "/v1.1/task/add?format=json",
        &ana_token,
        Some(&json!({"root": {"task": [body.clone()]}})),
    )
    .await;
    response.assert_status(200);
    let added = items(&response, "tasks", "task").remove(0);
    assert_eq!(added["creator"]["id"], "ana");
    assert_eq!(added["created_by"], "ana");
    let id = added["id"].as_i64().unwrap();
    // … but not as someone else.
    body["creator"] = json!({"type": "associate", "id": "ben"});
    let response = with_token(
        &app,
        Method::POST,
        "/v1.1/task/add",
        &ana_token,
        Some(&json!({"root": {"task": [body]}})),
    )
    .await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5213);

    // ben moves his own entry; not cara's, and not the task itself.
    let own = json!({"root": {"task": [{"id": id, "entries": {"entry": [{"executor_id": "ben", "status": "IN_PROGRESS"}]}}]}});
    let response =
        with_token(&app, Method::POST, "/v1.1/task/update", &ben_token, Some(&own)).await;
    response.assert_status(200);
    let others = json!({"root": {"task": [{"id": id, "entries": {"entry": [{"executor_id": cara, "status": "CLOSED"}]}}]}});
    let response =
        with_token(&app, Method::POST, "/v1.1/task/update", &ben_token, Some(&others)).await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5021);
    let retitle = json!({"root": {"task": [{"id": id, "title": "mine now"}]}});
    let response =
        with_token(&app, Method::POST, "/v1.1/task/update", &ben_token, Some(&retitle)).await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5021);
    // The creator may change anything.
    let response =
        with_token(&app, Method::POST, "/v1.1/task/update", &ana_token, Some(&others)).await;
    response.assert_status(200);
    let log = logs(&app, &app.basic(), id).await;
    let by: Vec<&str> = log.iter().map(|l| l["updated_by"].as_str().unwrap()).collect();
    assert_eq!(by, ["ana", "ana", "ben", "ana"]);

    // The store's tasks, as the associate sees them, with filters.
    let mine = with_token(
        &app,
        Method::GET,
        &format!("/v1.1/store/tasks?executor_id={ben}"),
        &ben_token,
        None,
    )
    .await;
    mine.assert_status(200);
    let tasks = mine.json()["response"]["tasks"].clone();
    assert_eq!(tasks["total"], 1);
    assert_eq!(tasks["item_status"]["message"], "Tasks retrieved successfully");
    let none = with_token(
        &app,
        Method::GET,
        &format!("/v1.1/store/tasks?executor_id={ana}"),
        &ben_token,
        None,
    )
    .await;
    let tasks = none.json()["response"]["tasks"].clone();
    assert_eq!(tasks["total"], 0);
    assert_eq!(tasks["item_status"]["code"], 5211);
    let open = app.get("/v1.1/store/tasks?status=OPEN", &app.basic()).await;
    assert_eq!(open.json()["response"]["tasks"]["total"], 1);
    let closed = app.get("/v1.1/store/tasks?status=closed", &app.basic()).await;
    assert_eq!(closed.json()["response"]["tasks"]["total"], 0);
    let audit = app.audit(app.org.org_id, "TASK").await;
    assert!(audit.iter().any(|r| r.principal_type == "STAFF" && r.principal_id == Some(ana)));
}

async fn customers_can_be_executors(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_staff(&app, "ana", json!({})).await;
    let c1 = add_customer(&app, "919845077777").await;
    let c2 = add_customer(&app, "919845088888").await;
    let mut body = task("call customers", "ana", &format!("{c1},{c2},{c1}"));
    body["executable_by_type"] = json!("customer");
    body["type"] = json!("CUSTOMER_TASK");
    let added = add_task(&app, &app.basic(), body).await;
    let entries = added["entries"]["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "repeated ids make one entry");
    assert_eq!(entries[0]["executor_type"], "customer");
    assert_eq!(entries[0]["executor_name"], "Ana");
    // Another org's customer is not registered here.
    let other = app.another_org("Beta").await;
    let body = json!({"profiles": [{"firstName": "Zed", "identifiers": [{"type": "mobile", "value": "919845099999"}]}]});
    let response = app
        .post_json(
            "/v2/customers",
            &basic_header(&other.till.username, &other.till.password),
            &body,
        )
        .await;
    let foreign = response.json()["createdId"].as_i64().unwrap();
    let mut body = task("foreign", "ana", &foreign.to_string());
    body["executable_by_type"] = json!("customer");
    let response = post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!([body])).await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5213);
}

async fn xml_in_and_out(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let xml = format!(
        "<root><task><local_id>X-1</local_id><title>Shelf check</title><type>MEMO</type>\
         <start_date>2030-01-01 09:00:00</start_date><end_date>2030-01-02 09:00:00</end_date>\
         <creator><type>associate</type><id>ana</id></creator>\
         <executable_by_type>associate</executable_by_type><executable_by_ids>{ana}</executable_by_ids>\
         <reminder><time>2030-01-01 12:00:00</time><template>Check {{store_name}}</template></reminder>\
         <entries><entry><status>IN_PROGRESS</status></entry></entries></task></root>"
    );
    let response = app
        .send(
            request(Method::POST, "/v1.1/task/add?format=xml")
                .header("authorization", app.basic())
                .header("content-type", "application/xml")
                .body(Body::from(xml))
                .unwrap(),
        )
        .await;
    response.assert_status(200);
    assert!(response.headers["content-type"].to_str().unwrap().contains("xml"));
    assert!(
        response.body.contains("<item_status><success>true</success><code>5200</code>"),
        "{}",
        response.body
    );
    assert!(response.body.contains("<entries><entry>"), "{}", response.body);
    assert!(response.body.contains("<status>IN_PROGRESS</status>"));
    assert!(response.body.contains("<time>2030-01-01 12:00:00</time>"));
    let reminders = app.get("/v1.1/task/reminder?format=xml", &app.basic()).await;
    reminders.assert_status(200);
    assert!(reminders.body.contains("<reminders><reminder><id>"), "{}", reminders.body);
    let error = app.get("/v1.1/task/get?format=xml", &app.basic()).await;
    error.assert_status(400);
    assert!(error.body.contains("<code>5203</code>"), "{}", error.body);
}

async fn a_store_sees_only_its_own_tasks(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let mut body = task("main only", "ana", &ana.to_string());
    body["reminder"] = json!([{"time": "2030-01-02 10:00:00"}]);
    let id = add_task(&app, &app.basic(), body).await["id"].as_i64().unwrap();
    // A second store with its own till and associate.
    let (zone, concept) = zone_and_concept(&app).await;
    let store = json!({"code": "second.store", "name": "Second store", "parentZoneId": zone,
        "parentConceptId": concept});
    let second = app.post_json("/v2/orgEntity/store", &app.admin(), &store).await.json()["id"]
        .as_i64()
        .unwrap();
    let till = json!({"name": "second.till", "password": "till-pass-2", "storeId": second});
    app.post_json("/v2/orgEntity/till", &app.basic(), &till).await.assert_status(200);
    let second_till = basic_header("second.till", "till-pass-2");
    let body =
        json!({"username": "sam", "password": crate::staff::PASSWORD, "storeCode": "second.store"});
    app.post_json("/v2/staff", &app.admin(), &body).await.assert_status(200);
    let sam_token = login(&app, "sam").await;

    for auth in [&second_till] {
        let response = app.get(&format!("/v1.1/task/get?id={id}"), auth).await;
        assert_eq!(response.v1_code(), 5204);
        assert_eq!(app.get(&format!("/v1.1/task/logs?id={id}"), auth).await.v1_code(), 5204);
        let list = app.get("/v1.1/store/tasks", auth).await;
        assert_eq!(list.json()["response"]["tasks"]["total"], 0);
        let reminders = app.get("/v1.1/task/reminder", auth).await;
        reminders.assert_status(200);
        assert_eq!(reminders.json()["response"]["reminders"]["total"], 0);
        assert_eq!(reminders.json()["response"]["reminders"]["item_status"]["code"], 5211);
        let update =
            post_v1(&app, "/v1.1/task/update", auth, "task", json!([{"id": id, "title": "mine"}]))
                .await;
        assert_eq!(item_code(&items(&update, "tasks", "task")[0]), 5204);
        let reminder = json!([{"task_id": id, "time": "2030-01-03 10:00:00"}]);
        let response = post_v1(&app, "/v1.1/task/reminder", auth, "reminder", reminder).await;
        assert_eq!(item_code(&items(&response, "reminders", "reminder")[0]), 5204);
    }
    let response =
        with_token(&app, Method::GET, &format!("/v1.1/task/get?id={id}"), &sam_token, None).await;
    assert_eq!(response.v1_code(), 5204);
    // Executors must work in the task's store: ana does not work at the second store.
    let mut body = task("second", "ana", &ana.to_string());
    body.as_object_mut().unwrap().remove("creator");
    let response = with_token(
        &app,
        Method::POST,
        "/v1.1/task/add",
        &sam_token,
        Some(&json!({"root": {"task": [body]}})),
    )
    .await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5212);
    // The main store's till passes another store's id: refused.
    let mut body = task("elsewhere", "ana", &ana.to_string());
    body["store_id"] = json!(second);
    let response = post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!([body])).await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5205);
    // The org's admin sees every store's tasks.
    let all = app.get("/v1.1/store/tasks", &app.admin()).await;
    assert_eq!(all.json()["response"]["tasks"]["total"], 1);

    // Another org sees nothing at all.
    let other = app.another_org("Beta").await;
    let beta = basic_header(&other.till.username, &other.till.password);
    assert_eq!(app.get(&format!("/v1.1/task/get?id={id}"), &beta).await.v1_code(), 5204);
    let reminders = app.get("/v1.1/task/reminder", &beta).await;
    assert_eq!(reminders.json()["response"]["reminders"]["total"], 0);
    let beta_admin = format!("Bearer {}", other.admin_token);
    let all = app.get("/v1.1/store/tasks", &beta_admin).await;
    assert_eq!(all.json()["response"]["tasks"]["total"], 0);
    let mappings = app.get("/v1.1/task/statusmapping", &beta).await;
    assert_eq!(
        mappings.json()["response"]["status_mappings"]["status_mapping"].as_array().unwrap().len(),
        3
    );
}

async fn execute_by_all_reaches_every_active_account_of_the_type(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({"mobile": "919845011111"})).await;
    let carl = add_staff(&app, "carl", json!({"type": "cashier"})).await;
    let zed = add_staff(&app, "zed", json!({"zoneCode": "default.zone"})).await;
    app.exec_sql(
        "UPDATE staff SET status = 'ACTIVE', mobile_verified = TRUE WHERE username = 'ana'",
    )
    .await;
    add_staff(&app, "pat", json!({"mobile": "919845022222"})).await; // PENDING: not an executor
    let mut body = task("everyone", "ana", "");
    body["execute_by_all"] = json!("true");
    body["reminder"] = json!([{"time": "2030-01-02 10:00:00"}]);
    let everyone = add_task(&app, &app.basic(), body).await;
    assert_eq!(everyone["execute_by_all"], "true");
    assert_eq!(everyone["executable_by_ids"], format!("{ana},{carl},{zed}"));
    let mut body = task("cashiers", "ana", "");
    body["execute_by_all"] = json!("true");
    body["executable_by_type"] = json!("cashier");
    let cashiers = add_task(&app, &app.basic(), body).await;
    assert_eq!(cashiers["executable_by_ids"], carl.to_string());
    // A named associate who is pending, or a non-cashier for a cashier task, is not an executor.
    let mut body = task("x", "ana", &ana.to_string());
    body["executable_by_type"] = json!("cashier");
    let response = post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!([body])).await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5212);
    let response =
        post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!([task("y", "ana", "pat")]))
            .await;
    assert_eq!(item_code(&items(&response, "tasks", "task")[0]), 5212);

    // A reminder reaches whoever has an address; the others are recorded as skipped.
    app.post_json("/v2/staff/remove", &app.admin(), &json!({"id": zed})).await.assert_status(200);
    let now = chrono::DateTime::parse_from_rfc3339("2030-01-02T10:00:00+05:30").unwrap();
    let report = perks::jobs::tasks::run_once(&app.state, now.timestamp_millis() + 1_000).await;
    assert_eq!((report.sent, report.messages), (1, 1));
    let id = everyone["id"].as_i64().unwrap();
    let list = app.get(&format!("/v1.1/task/reminder?task_id={id}"), &app.basic()).await;
    let sends = list.json()["response"]["reminders"]["reminder"][0]["sends"]["send"].clone();
    let outcomes: Vec<(i64, String, String)> = sends
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["executor_id"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (ana, "SENT".to_string(), String::new()),
            (carl, "SKIPPED".to_string(), "the executor has no mobile or e-mail".to_string()),
            (zed, "SKIPPED".to_string(), "the staff account was removed".to_string()),
        ]
    );
}

async fn a_retried_add_with_an_idempotency_key_adds_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({})).await;
    let body = json!({"root": {"task": [task("once", "ana", &ana.to_string())]}});
    let send = || {
        app.send(
            request(Method::POST, "/v1.1/task/add?format=json")
                .header("authorization", app.basic())
                .header("content-type", "application/json")
                .header("idempotency-key", "task-once-1")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
    };
    let first = send().await;
    first.assert_status(200);
    let second = send().await;
    second.assert_status(200);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(first.body, second.body);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM store_tasks").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM task_entries").await, 1);
}

async fn openapi_documents_the_staff_and_task_apis(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let doc = app.send(request(Method::GET, "/openapi.json").body(Body::empty()).unwrap()).await;
    doc.assert_status(200);
    let paths = doc.json()["paths"].as_object().unwrap().clone();
    for (path, verbs) in [
        ("/v1.1/task/add", &["post"][..]),
        ("/v1.1/task/update", &["post"]),
        ("/v1.1/task/metadata", &["get"]),
        ("/v1.1/task/logs", &["get"]),
        ("/v1.1/task/statusmapping", &["get", "post"]),
        ("/v1.1/task/reminder", &["get", "post"]),
        ("/v1.1/task/get", &["get"]),
        ("/v1.1/store/tasks", &["get"]),
        ("/v1.1/store/staff", &["get"]),
        ("/v2/staff", &["get", "post"]),
        ("/v2/staff/accessToken", &["post"]),
        ("/v2/staff/update", &["post"]),
        ("/v2/staff/changePassword", &["post"]),
        ("/v2/staff/sendOtp", &["post"]),
        ("/v2/staff/validateOtp", &["post"]),
        ("/v2/staff/changeIdentifier/sendOtp", &["post"]),
        ("/v2/staff/changeIdentifier/validateOtp", &["post"]),
        ("/v2/staff/transfer", &["post"]),
        ("/v2/staff/list", &["get"]),
        ("/v2/staff/logout", &["get"]),
        ("/v2/staff/remove", &["post"]),
    ] {
        let item = paths.get(path).unwrap_or_else(|| panic!("OpenAPI lacks {path}"));
        for verb in verbs {
            assert!(item.get(*verb).is_some(), "OpenAPI lacks {verb} {path}");
        }
    }
}
