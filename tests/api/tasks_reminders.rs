//! Task reminders that fire: a task's life driven by the clock (`jobs::tasks::run_once` with
//! explicit instants), late firing after downtime, exactly once per executor with two instances
//! on one database, and the reminder APIs (create, move, cancel, list with filters).

use axum::http::Method;
use chrono::{NaiveDateTime, TimeZone};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};
use crate::staff::{add_staff, login, with_token};
use crate::tasks::{add_task, count, event_types, item_code, items, post_v1, task};

backend_tests!(
    a_task_life_driven_by_the_clock,
    a_reminder_due_during_downtime_fires_late,
    two_instances_send_each_reminder_once_per_executor,
    reminders_are_created_moved_cancelled_and_listed,
);

/// The instant of a wall-clock time in the test org's zone (Asia/Kolkata).
fn at(local: &str) -> i64 {
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").unwrap();
    chrono_tz::Asia::Kolkata.from_local_datetime(&naive).unwrap().timestamp_millis()
}

async fn fire(app: &TestApp, local: &str, plus_millis: i64) -> perks::tasks::scheduler::FireReport {
    perks::jobs::tasks::run_once(&app.state, at(local) + plus_millis).await
}

/// The reminders of a task, as `GET /v1.1/task/reminder?task_id=` lists them.
async fn reminders(app: &TestApp, task_id: i64) -> Vec<Value> {
    let response = app.get(&format!("/v1.1/task/reminder?task_id={task_id}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["response"]["reminders"]["reminder"].as_array().cloned().unwrap_or_default()
}

async fn message(app: &TestApp, id: &Value) -> Value {
    let response = app.get(&format!("/x/perks/v1/messages/{id}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["data"].clone()
}

async fn reminder_messages(app: &TestApp) -> i64 {
    count(app, "SELECT COUNT(*) FROM messages WHERE purpose = 'TASK_REMINDER'").await
}

async fn a_task_life_driven_by_the_clock(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(
        &app,
        "ana",
        json!({"mobile": "919845011111", "firstname": "Ana", "lastname": "Silva"}),
    )
    .await;
    let ben = add_staff(
        &app,
        "ben",
        json!({"email": "ben@example.com", "firstname": "Ben", "lastname": "Lee"}),
    )
    .await;
    // Identifiers make accounts pending; verify them the short way for this test.
    app.exec_sql(
        "UPDATE staff SET status = 'ACTIVE', mobile_verified = TRUE, email_verified = TRUE",
    )
    .await;
    let mut body = task("Birthday calls", "ana", &format!("{ana},{ben}"));
    body["reminder"] = json!([
        {"create": "true", "time": "2030-01-02 10:00:00", "template": "Hi {name}: {task_title} at {store_name}"},
        {"create": "true", "time": "2030-01-05 10:00:00", "template": "Still open, {first_name}: {task_title}"},
        {"create": "true", "time": "2030-01-20 18:00:00", "template": "Last call: {task_title}"},
    ]);
    let id = add_task(&app, &app.basic(), body).await["id"].as_i64().unwrap();

    // Before its time nothing fires.
    let report = fire(&app, "2030-01-02 10:00:00", -60_000).await;
    assert_eq!((report.sent, report.cancelled, report.messages), (0, 0, 0));

    // The first reminder reaches both executors: ana by SMS, ben (no mobile) by e-mail.
    let report = fire(&app, "2030-01-02 10:00:00", 5_000).await;
    assert_eq!((report.sent, report.messages, report.late), (1, 2, 0));
    let list = reminders(&app, id).await;
    assert_eq!(list[0]["status"], "SENT");
    assert_eq!(list[0]["late"], "false");
    assert_eq!(list[0]["fired_on"], "2030-01-02 10:00:05");
    let sends = list[0]["sends"]["send"].as_array().unwrap().clone();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0]["executor_id"], ana);
    assert_eq!(sends[0]["channel"], "sms");
    assert_eq!(sends[0]["status"], "SENT");
    assert_eq!(sends[1]["executor_id"], ben);
    assert_eq!(sends[1]["channel"], "email");
    let to_ana = message(&app, &sends[0]["message_id"]).await;
    assert_eq!(to_ana["to"], "919845011111");
    assert_eq!(to_ana["channel"], "SMS");
    assert_eq!(to_ana["purpose"], "TASK_REMINDER");
    assert_eq!(to_ana["body"], "Hi Ana Silva: Birthday calls at Main store");
    let to_ben = message(&app, &sends[1]["message_id"]).await;
    assert_eq!(to_ben["to"], "ben@example.com");
    assert_eq!(to_ben["subject"], "Task reminder: Birthday calls");
    assert_eq!(to_ben["body"], "Hi Ben Lee: Birthday calls at Main store");
    // Running again at the same time sends nothing more.
    let report = fire(&app, "2030-01-02 10:00:00", 10_000).await;
    assert_eq!(report.messages, 0);
    assert_eq!(reminder_messages(&app).await, 2);

    // ben closes his entry with his own token.
    let token = login(&app, "ben").await;
    let close = json!({"root": {"task": [{"id": id, "entries": {"entry": [{"executor_id": "ben", "status": "CLOSED", "remarks": "called all"}]}}]}});
    with_token(&app, Method::POST, "/v1.1/task/update", &token, Some(&close))
        .await
        .assert_status(200);

    // The second reminder reaches only ana.
    let report = fire(&app, "2030-01-05 10:00:00", 1_000).await;
    assert_eq!((report.sent, report.messages), (1, 1));
    let list = reminders(&app, id).await;
    let sends = list[1]["sends"]["send"].as_array().unwrap().clone();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0]["executor_id"], ana);
    assert_eq!(
        message(&app, &sends[0]["message_id"]).await["body"],
        "Still open, Ana: Birthday calls"
    );

    // The task expires: its remaining reminder is cancelled, never sent.
    let report = fire(&app, "2030-01-20 18:00:00", 1_000).await;
    assert_eq!((report.sent, report.cancelled, report.messages), (0, 1, 0));
    let list = reminders(&app, id).await;
    let states: Vec<(&str, &str)> = list
        .iter()
        .map(|r| (r["status"].as_str().unwrap(), r["cancel_reason"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("SENT", ""), ("SENT", ""), ("CANCELLED", "TASK_EXPIRED")]);
    assert!(list[2]["sends"]["send"].as_array().unwrap().is_empty());

    // The log and the message records agree with what happened.
    let logs = app.get(&format!("/v1.1/task/logs?id={id}"), &app.basic()).await;
    let logs = logs.json()["response"]["logs"]["log"].as_array().unwrap().clone();
    let changes: Vec<(Value, &str, &str, &str)> = logs
        .iter()
        .map(|l| {
            (
                l["executor_id"].clone(),
                l["old_status"].as_str().unwrap(),
                l["new_status"].as_str().unwrap(),
                l["updated_by"].as_str().unwrap(),
            )
        })
        .collect();
    let till = app.org.till.username.as_str();
    assert_eq!(
        changes,
        [
            (json!(ana), "", "OPEN", till),
            (json!(ben), "", "OPEN", till),
            (json!(ben), "OPEN", "CLOSED", "ben"),
        ]
    );
    assert_eq!(reminder_messages(&app).await, 3);
    let sends_recorded = count(&app, "SELECT COUNT(*) FROM task_reminder_sends").await;
    assert_eq!(sends_recorded, 3);
    assert_eq!(
        event_types(&app, "task.reminder").await,
        ["task.reminder_sent", "task.reminder_sent", "task.reminder_cancelled"]
    );
    let audit = app.audit(app.org.org_id, "TASK_REMINDER").await;
    assert_eq!(audit.iter().filter(|r| r.action == "FIRE").count(), 2);
}

async fn a_reminder_due_during_downtime_fires_late(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({"mobile": "919845011111"})).await;
    app.exec_sql("UPDATE staff SET status = 'ACTIVE', mobile_verified = TRUE").await;
    let mut body = task("Restock", "ana", &ana.to_string());
    body["reminder"] = json!([{"time": "2030-01-02 10:00:00"}]);
    let id = add_task(&app, &app.basic(), body).await["id"].as_i64().unwrap();
    // The server was down from before 10:00 until 12:00: on start the reminder goes out, late.
    let report = fire(&app, "2030-01-02 12:00:00", 0).await;
    assert_eq!((report.sent, report.late, report.messages), (1, 1, 1));
    let list = reminders(&app, id).await;
    assert_eq!(list[0]["late"], "true");
    assert_eq!(list[0]["sends"]["send"][0]["late"], "true");
    let body = message(&app, &list[0]["sends"]["send"][0]["message_id"]).await["body"].clone();
    assert_eq!(body, "Reminder: Birthday calls (Main store)".replace("Birthday calls", "Restock"));
    // A restart (another pass) sends nothing again.
    assert_eq!(fire(&app, "2030-01-02 12:00:00", 1_000).await.messages, 0);
    assert_eq!(reminder_messages(&app).await, 1);
}

async fn two_instances_send_each_reminder_once_per_executor(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({"mobile": "919845011111"})).await;
    let ben = add_staff(&app, "ben", json!({"mobile": "919845022222"})).await;
    app.exec_sql("UPDATE staff SET status = 'ACTIVE', mobile_verified = TRUE").await;
    const TASKS: usize = 12;
    let bodies: Vec<Value> = (0..TASKS)
        .map(|i| {
            let mut body = task(&format!("task {i}"), "ana", &format!("{ana},{ben}"));
            body["reminder"] = json!([
                {"time": "2030-01-02 10:00:00", "template": "A {task_title}"},
                {"time": "2030-01-02 10:00:30", "template": "B {task_title}"},
            ]);
            body
        })
        .collect();
    post_v1(&app, "/v1.1/task/add", &app.basic(), "task", json!(bodies)).await.assert_status(200);
    // A second instance: its own pools and state, the same database.
    let other = perks::app::AppState::new((*app.state.settings).clone()).await.unwrap();
    let now = at("2030-01-02 10:01:00");
    let (first, second) = tokio::join!(
        perks::jobs::tasks::run_once(&app.state, now),
        perks::jobs::tasks::run_once(&other, now),
    );
    assert_eq!(first.sent + second.sent, 2 * TASKS, "{first:?} {second:?}");
    assert_eq!(first.messages + second.messages, 4 * TASKS);
    // Each (reminder, executor) has exactly one send and one message.
    assert_eq!(reminder_messages(&app).await, (4 * TASKS) as i64);
    let duplicates = count(
        &app,
        "SELECT COUNT(*) FROM (SELECT recipient, body FROM messages WHERE purpose = 'TASK_REMINDER' \
         GROUP BY recipient, body HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(duplicates, 0);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM task_reminders WHERE status = 'SENT'").await,
        (2 * TASKS) as i64
    );
    // Both instances again, later: nothing is left to send.
    let (first, second) = tokio::join!(
        perks::jobs::tasks::run_once(&app.state, now + 60_000),
        perks::jobs::tasks::run_once(&other, now + 60_000),
    );
    assert_eq!(first.messages + second.messages, 0);
    other.db.close().await;
}

async fn reminders_are_created_moved_cancelled_and_listed(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ana = add_staff(&app, "ana", json!({"mobile": "919845011111"})).await;
    app.exec_sql("UPDATE staff SET status = 'ACTIVE', mobile_verified = TRUE").await;
    let first = add_task(&app, &app.basic(), task("first", "ana", &ana.to_string())).await["id"]
        .as_i64()
        .unwrap();
    let second = add_task(&app, &app.basic(), task("second", "ana", &ana.to_string())).await["id"]
        .as_i64()
        .unwrap();
    // A bare GET works before there is anything to list.
    let empty = app.get("/v1.1/task/reminder", &app.basic()).await;
    empty.assert_status(200);
    assert_eq!(empty.json()["response"]["reminders"]["item_status"]["code"], 5211);

    let items_in = json!([
        {"task_id": first, "time": "2030-01-03 10:00:00", "template": "Hello {name}"},
        {"task_id": second, "time": "2030-01-04 10:00:00"},
        {"task_id": first, "time": "2031-01-01 10:00:00"},
        {"task_id": first, "time": "2030-01-03 10:00:00", "template": "Hi {nickname}"},
        {"time": "2030-01-03 10:00:00"},
        {"task_id": 999_999, "time": "2030-01-03 10:00:00"},
        {"task_id": first},
        {"task_id": first, "create": "false"},
    ]);
    let response = post_v1(&app, "/v1.1/task/reminder", &app.basic(), "reminder", items_in).await;
    response.assert_status(201);
    let answers = items(&response, "reminders", "reminder");
    let codes: Vec<i64> = answers.iter().map(item_code).collect();
    assert_eq!(codes, [5200, 5200, 5206, 5206, 5204, 5204, 5206, 5205]);
    assert_eq!(answers[0]["item_status"]["message"], "Task reminder added successfully");
    assert_eq!(answers[0]["time"], "2030-01-03 10:00:00");
    assert_eq!(answers[1]["template"], "Reminder: {task_title} ({store_name})");
    let moved_id = answers[0]["id"].as_i64().unwrap();
    let cancelled_id = answers[1]["id"].as_i64().unwrap();

    // Upsert by id: move the first, cancel the second.
    let changes = json!([
        {"task_id": first, "id": moved_id, "time": "2030-01-06 08:30:00"},
        {"task_id": second, "id": cancelled_id, "create": "false"},
        {"task_id": second, "id": moved_id, "time": "2030-01-06 08:30:00"},
    ]);
    let response = post_v1(&app, "/v1.1/task/reminder", &app.basic(), "reminder", changes).await;
    let answers = items(&response, "reminders", "reminder");
    assert_eq!(answers.iter().map(item_code).collect::<Vec<_>>(), [5200, 5200, 5206]);
    assert_eq!(answers[0]["time"], "2030-01-06 08:30:00");
    assert_eq!(answers[1]["status"], "CANCELLED");
    assert_eq!(answers[1]["cancel_reason"], "CANCELLED_BY_REQUEST");

    // A sent reminder can no longer change.
    perks::jobs::tasks::run_once(&app.state, at("2030-01-06 08:31:00")).await;
    let late_move = json!([{"task_id": first, "id": moved_id, "time": "2030-01-07 08:30:00"}]);
    let response = post_v1(&app, "/v1.1/task/reminder", &app.basic(), "reminder", late_move).await;
    assert_eq!(item_code(&items(&response, "reminders", "reminder")[0]), 5206);

    // Listing: everything, then by task, status, window and page.
    let all = app.get("/v1.1/task/reminder", &app.basic()).await;
    let all = all.json()["response"]["reminders"].clone();
    assert_eq!(all["total"], 2);
    assert_eq!(all["item_status"]["code"], 5200);
    let by_task = app.get(&format!("/v1.1/task/reminder?task_id={second}"), &app.basic()).await;
    assert_eq!(by_task.json()["response"]["reminders"]["reminder"][0]["id"], cancelled_id);
    let sent = app.get("/v1.1/task/reminder?status=sent", &app.basic()).await;
    let sent = sent.json()["response"]["reminders"].clone();
    assert_eq!(sent["total"], 1);
    assert_eq!(sent["reminder"][0]["sends"]["send"][0]["executor_id"], ana);
    let window =
        "/v1.1/task/reminder?start_date=2030-01-04%2000:00:00&end_date=2030-01-05%2000:00:00";
    let window = app.get(window, &app.basic()).await;
    assert_eq!(window.json()["response"]["reminders"]["reminder"][0]["id"], cancelled_id);
    let page = app.get("/v1.1/task/reminder?limit=1&offset=1", &app.basic()).await;
    let page = page.json()["response"]["reminders"].clone();
    assert_eq!(
        (page["total"].clone(), page["reminder"][0]["id"].clone()),
        (json!(2), json!(moved_id))
    );
    let audit = app.audit(app.org.org_id, "TASK_REMINDER").await;
    let actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    for action in ["CREATE", "UPDATE", "CANCEL", "FIRE"] {
        assert!(actions.contains(&action), "{action} missing: {actions:?}");
    }
}
