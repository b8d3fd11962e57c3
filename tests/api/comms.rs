//! Communications: v2 and v1.1 sendMessage, resend, templates with placeholders, the delivery
//! worker over the log, SMTP (an in-process SMTP sink) and HTTP (a local axum receiver)
//! providers, scheduling, retries, opt-outs, the customer's interactions, bad input,
//! permissions and org isolation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use axum::http::Method;
use perks::audit::AuditActor;
use perks::comms::{Channel, CommsError, MessageStatus, Recipient, SendRequest, TemplateRef};
use perks::customers::model::CustomerId;
use perks::db::now_millis;
use perks::org::model::OrgId;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, basic_header, request};

backend_tests!(
    a_logged_message_shows_in_the_customers_interactions,
    smtp_delivers_the_rendered_mail,
    the_http_provider_posts_to_the_configured_api,
    transient_failures_are_retried_with_backoff_then_fail,
    a_scheduled_message_waits_for_its_time,
    opted_out_customers_are_skipped,
    resend_queues_a_copy,
    templates_fill_placeholders,
    bad_sends_are_refused_and_nothing_is_written,
    v1_send_answers_each_item,
    the_service_sends_in_the_callers_transaction,
    concurrent_workers_send_each_message_once,
    comms_need_the_right_permissions,
    comms_are_isolated_between_orgs,
);

const MOBILE: &str = "919800000001";
const EMAIL: &str = "ana@example.com";
const PASSWORD: &str = "till-pass-1";

// ---------------------------------------------------------------- helpers

#[track_caller]
fn assert_v2_error(response: &TestResponse, status: u16, code: i64) {
    response.assert_status(status);
    assert_eq!(response.v2_error_code(), code, "{}", response.body);
}

/// Registers Ana (mobile and e-mail); her id.
async fn add_ana(app: &TestApp, auth: &str) -> i64 {
    let body = json!({"profiles": [{"firstName": "Ana", "lastName": "Silva", "identifiers": [
        {"type": "mobile", "value": MOBILE}, {"type": "email", "value": EMAIL}]}]});
    let response = app.post_json("/v2/customers", auth, &body).await;
    response.assert_status(200);
    response.json()["createdId"].as_i64().unwrap()
}

async fn send(app: &TestApp, auth: &str, channel: &str, items: Value) -> TestResponse {
    let key = channel.to_ascii_lowercase();
    app.post_json(
        &format!("/v2/communications/sendMessage?channel={channel}"),
        auth,
        &json!({ key: items }),
    )
    .await
}

/// Sends one message and returns its id.
async fn send_one(app: &TestApp, channel: &str, item: Value) -> i64 {
    let response = send(app, &app.basic(), channel, json!([item])).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["warnings"], json!([]));
    body["messages"][0]["messageId"].as_i64().unwrap()
}

async fn message(app: &TestApp, id: i64) -> Value {
    let response = app.get(&format!("/x/perks/v1/messages/{id}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["data"].clone()
}

/// The customer's interactions (`query` adds filters).
async fn interactions(app: &TestApp, query: &str) -> Value {
    let response =
        app.get(&format!("/v1.1/customer/interaction?mobile={MOBILE}{query}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["response"]["customer"]["interactions"].clone()
}

/// Every message row in the database, of any org.
async fn message_count(app: &TestApp) -> i64 {
    let mut conn = app.state.db.read().await.unwrap();
    perks::dispatch!(&mut conn, |e| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM messages")
        .fetch_one(e)
        .await)
    .unwrap()
}

async fn stored_customer(app: &TestApp, message_id: i64) -> i64 {
    message(app, message_id).await["customerId"].as_i64().unwrap()
}

async fn deliver(app: &TestApp, now: i64) -> perks::comms::service::DeliveryReport {
    perks::jobs::comms::run_once(&app.state, now).await
}

/// Adds a POS till (Communication read only) and returns its Basic header.
async fn pos_till(app: &TestApp, name: &str) -> String {
    let body = json!({"name": name, "password": PASSWORD, "storeId": app.org.store_id});
    app.post_json("/v2/orgEntity/till", &app.basic(), &body).await.assert_status(200);
    basic_header(name, PASSWORD)
}

async fn add_template(app: &TestApp, body: Value) -> TestResponse {
    app.post_json("/x/perks/v1/templates", &app.basic(), &body).await
}

/// A mail received by the SMTP sink.
#[derive(Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A tiny SMTP server on 127.0.0.1: it speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP and QUIT,
/// and hands each received mail to the returned channel. It serves at most 20 connections.
async fn smtp_sink() -> (u16, mpsc::Receiver<Mail>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mails, received) = mpsc::channel(16);
    tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((stream, _)) = listener.accept().await else { return };
            let mails = mails.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP ready\r\n").await;
                let (mut from, mut to) = (String::new(), Vec::new());
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink greets you\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                        b"250 OK\r\n"
                    } else if upper.starts_with("RSET") {
                        (from, to) = (String::new(), Vec::new());
                        b"250 OK\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        from = angle_address(&line);
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to.push(angle_address(&line));
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                        let mut data = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            data.push('\n');
                        }
                        let mail = Mail { from: from.clone(), to: to.clone(), data };
                        let _ = mails.send(mail).await;
                        b"250 2.0.0 queued as 42\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"502 not implemented\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, received)
}

/// `<address>` of a MAIL or RCPT command, without its parameters.
fn angle_address(line: &str) -> String {
    match (line.find('<'), line.find('>')) {
        (Some(open), Some(close)) if open < close => line[open..=close].to_string(),
        _ => line.to_string(),
    }
}

/// What the HTTP receiver saw of one request.
#[derive(Clone, Debug)]
struct Received {
    uri: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A local SMS API: records each request and answers with the status in `status`.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

async fn http_receiver() -> Receiver {
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let status = Arc::new(AtomicU16::new(200));
    let (log, code) = (seen.clone(), status.clone());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (log, code) = (log.clone(), code.clone());
        async move {
            let (authorization, content_type) = {
                let header = |name: &str| {
                    request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
                };
                (header("authorization"), header("content-type"))
            };
            let uri = request.uri().to_string();
            let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap();
            log.lock().await.push(Received {
                uri,
                authorization,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let status = axum::http::StatusCode::from_u16(code.load(Ordering::SeqCst)).unwrap();
            (status, "{\"result\": \"accepted\"}")
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { port, seen, status }
}

async fn http_app(backend: Backend, port: u16) -> Option<TestApp> {
    TestApp::with_settings(backend, |s| {
        s.comms.sms.provider = perks::config::ProviderKind::Http;
        s.comms.sms.url = format!("http://127.0.0.1:{port}/sms/send?to={{to}}");
        s.comms.sms.auth_header = "Authorization".into();
        s.comms.sms.auth_value = Some(perks::config::Secret("Bearer k3y".into()));
        s.comms.sms.body =
            r#"{"to": "{to}", "from": "{sender}", "text": "{body}", "ref": "{message_id}"}"#.into();
        s.comms.sms.sender = "ACME".into();
    })
    .await
}

// ---------------------------------------------------------------- tests

async fn a_logged_message_shows_in_the_customers_interactions(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let user = add_ana(&app, &app.basic()).await;
    let response = send(
        &app,
        &app.basic(),
        "sms",
        json!([{"to": MOBILE, "body": "Hi {name}, you have {points} points",
            "variables": {"points": 120}}]),
    )
    .await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["messages"][0]["to"], MOBILE);
    assert_eq!(body["messages"][0]["status"], "QUEUED");
    assert_eq!(body["errors"], json!([]));
    let id = body["messages"][0]["messageId"].as_i64().unwrap();

    // Queued: the customer's interactions show it already.
    let list = interactions(&app, "").await;
    assert_eq!(list["count"], 1);
    let item = &list["interaction"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["type"], "sms");
    assert_eq!(item["status"], "QUEUED");
    assert_eq!(item["message"], "Hi Ana Silva, you have 120 points");
    assert_eq!(item["network"], "capillary");

    // The worker "sends" it through the log provider.
    let report = deliver(&app, now_millis()).await;
    assert_eq!((report.claimed, report.sent), (1, 1));
    assert_eq!(deliver(&app, now_millis()).await.claimed, 0, "sent once only");
    let list = interactions(&app, "&type=sms").await;
    assert_eq!(list["interaction"][0]["status"], "SENT");
    assert!(list["interaction"][0]["sent_time"].is_string());
    let stored = message(&app, id).await;
    assert_eq!(stored["customerId"], user);
    assert_eq!(stored["provider"], "log");
    assert_eq!(stored["attempts"], 1);
    assert_eq!(stored["purpose"], "API");

    // Type filters: e-mail interactions are none yet; an e-mail joins them.
    assert_eq!(interactions(&app, "&type=email").await["count"], 0);
    assert_eq!(interactions(&app, "&type=checkin").await["count"], 0);
    assert_eq!(interactions(&app, "&network=facebook").await["count"], 0);
    send_one(
        &app,
        "email",
        json!({"to": EMAIL, "from": "shop@acme.test", "subject": "Hello",
        "body": "Welcome {first_name}"}),
    )
    .await;
    let list = interactions(&app, "&type=email").await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["interaction"][0]["subject"], "Hello");
    assert_eq!(list["interaction"][0]["message"], "Welcome Ana");
    let list = interactions(&app, "&limit=1").await;
    assert_eq!(list["count"], 2);
    assert_eq!(list["interaction"].as_array().unwrap().len(), 1);
    assert_eq!(list["interaction"][0]["type"], "email", "newest first");
    let list = interactions(&app, "&limit=1&offset=1").await;
    assert_eq!(list["interaction"][0]["id"], id);

    // The v2 view of the same log.
    let response =
        app.get(&format!("/v2/customers/{user}/interactions?type=sms"), &app.basic()).await;
    response.assert_status(200);
    let v2 = response.json();
    assert_eq!(v2["pagination"], json!({"limit": 50, "offset": 0, "total": 1}));
    assert_eq!(v2["data"][0]["id"], id);
    assert_eq!(v2["data"][0]["status"], "SENT");
    assert!(v2["data"][0]["sentOn"].as_str().unwrap().ends_with('Z'));
    let response =
        app.get(&format!("/v2/customers/{user}/interactions?limit=1"), &app.basic()).await;
    assert_eq!(response.json()["pagination"]["total"], 2);
    assert_eq!(response.json()["data"][0]["type"], "email");
    let response =
        app.get(&format!("/v2/customers/{user}/interactions?type=fax"), &app.basic()).await;
    assert_v2_error(&response, 400, 400);
    let response =
        app.get(&format!("/v2/customers/{user}/interactions?limit=101"), &app.basic()).await;
    assert_v2_error(&response, 400, 400);
    let response = app.get("/v2/customers/424242/interactions", &app.basic()).await;
    assert_v2_error(&response, 404, 8015);

    // An address that is nobody's is sent but belongs to no customer.
    let other = send_one(&app, "sms", json!({"to": "919811111111", "body": "Hello"})).await;
    assert_eq!(message(&app, other).await["customerId"], Value::Null);
    assert_eq!(interactions(&app, "").await["count"], 2);

    // Every send left an audit record.
    let audit = app.audit(app.org.org_id, "MESSAGE").await;
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|a| a.action == "SEND" && a.principal_type == "TILL"));
    assert!(!audit[2].after_state.as_deref().unwrap().contains("120 points"), "no body in audit");
}

async fn smtp_delivers_the_rendered_mail(backend: Backend) {
    let (port, mut mails) = smtp_sink().await;
    let Some(app) = TestApp::with_settings(backend, |s| {
        s.comms.email.provider = perks::config::ProviderKind::Smtp;
        s.comms.email.smtp_host = "127.0.0.1".into();
        s.comms.email.smtp_port = port;
        s.comms.email.starttls = false;
        s.comms.email.from = "loyalty@acme.test".into();
    })
    .await
    else {
        return;
    };
    add_ana(&app, &app.basic()).await;
    add_template(
        &app,
        json!({"name": "points_mail", "channel": "EMAIL",
        "subject": "Hello {first_name}", "body": "<p>You have {points} points</p>"}),
    )
    .await
    .assert_status(201);
    let id = send_one(
        &app,
        "email",
        json!({"to": EMAIL, "templateName": "points_mail",
        "variables": {"points": 250}, "cc": "copy@acme.test"}),
    )
    .await;
    let report = deliver(&app, now_millis()).await;
    assert_eq!(report.sent, 1, "{report:?} {}", message(&app, id).await);
    let mail = tokio::time::timeout(std::time::Duration::from_secs(10), mails.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mail.from, "<loyalty@acme.test>");
    assert!(mail.to.contains(&format!("<{EMAIL}>")), "{:?}", mail.to);
    assert!(mail.to.contains(&"<copy@acme.test>".to_string()), "{:?}", mail.to);
    assert!(mail.data.contains("Subject: Hello Ana"), "{}", mail.data);
    assert!(mail.data.contains("<p>You have 250 points</p>"), "{}", mail.data);
    assert!(mail.data.to_ascii_lowercase().contains("content-type: text/html"), "{}", mail.data);
    let stored = message(&app, id).await;
    assert_eq!(stored["status"], "SENT");
    assert_eq!(stored["provider"], "smtp");
    assert!(stored["providerResponse"].as_str().unwrap().starts_with("250"), "{stored}");

    // The request's own From goes in the From header; the relay sender stays the envelope's.
    send_one(
        &app,
        "email",
        json!({"to": EMAIL, "from": "offers@acme.test", "subject": "Hi",
        "body": "Plain text"}),
    )
    .await;
    assert_eq!(deliver(&app, now_millis()).await.sent, 1);
    let mail = mails.recv().await.unwrap();
    assert_eq!(mail.from, "<loyalty@acme.test>");
    assert!(mail.data.contains("From: offers@acme.test"), "{}", mail.data);
    assert!(mail.data.to_ascii_lowercase().contains("content-type: text/plain"), "{}", mail.data);
}

async fn the_http_provider_posts_to_the_configured_api(backend: Backend) {
    let receiver = http_receiver().await;
    let Some(app) = http_app(backend, receiver.port).await else { return };
    add_ana(&app, &app.basic()).await;
    let id = send_one(&app, "sms", json!({"to": MOBILE, "body": "He said \"hi\"\nto {name} & co"}))
        .await;
    assert_eq!(deliver(&app, now_millis()).await.sent, 1);
    let seen = receiver.seen.lock().await.clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, format!("/sms/send?to={MOBILE}"));
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer k3y"));
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    let sent: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"to": MOBILE, "from": "ACME", "text": "He said \"hi\"\nto Ana Silva & co",
            "ref": id.to_string()})
    );
    let stored = message(&app, id).await;
    assert_eq!(stored["provider"], "http");
    assert_eq!(stored["providerResponse"], "HTTP 200 {\"result\": \"accepted\"}");

    // A sender id in the request wins; WhatsApp keeps the default log provider.
    send_one(&app, "sms", json!({"to": MOBILE, "body": "x", "sender": "PROMO"})).await;
    let wa = send_one(&app, "whatsapp", json!({"to": MOBILE, "body": "on whatsapp"})).await;
    assert_eq!(deliver(&app, now_millis()).await.sent, 2);
    let seen = receiver.seen.lock().await.clone();
    assert_eq!(seen.len(), 2, "WhatsApp did not go to the SMS API");
    assert!(seen[1].body.contains("\"from\": \"PROMO\""), "{}", seen[1].body);
    assert_eq!(message(&app, wa).await["provider"], "log");

    // A client error of the provider is final at once.
    receiver.status.store(400, Ordering::SeqCst);
    let refused = send_one(&app, "sms", json!({"to": MOBILE, "body": "refused"})).await;
    let report = deliver(&app, now_millis()).await;
    assert_eq!((report.failed, report.retried), (1, 0));
    let stored = message(&app, refused).await;
    assert_eq!(stored["status"], "FAILED");
    assert_eq!(stored["attempts"], 1);
    assert!(stored["providerResponse"].as_str().unwrap().starts_with("HTTP 400"));
    assert_eq!(interactions(&app, "&type=sms").await["interaction"][0]["status"], "FAILED");
}

async fn transient_failures_are_retried_with_backoff_then_fail(backend: Backend) {
    let receiver = http_receiver().await;
    let Some(app) = http_app(backend, receiver.port).await else { return };
    receiver.status.store(503, Ordering::SeqCst);
    let id = send_one(&app, "sms", json!({"to": MOBILE, "body": "retry me"})).await;
    let start = now_millis();
    let report = deliver(&app, start).await;
    assert_eq!((report.claimed, report.retried), (1, 1));
    let stored = message(&app, id).await;
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_i64()), (Some("QUEUED"), Some(1)));
    assert!(stored["providerResponse"].as_str().unwrap().starts_with("HTTP 503"));
    // Not due again before its backoff (1 minute) is over.
    assert_eq!(deliver(&app, start + 30_000).await.claimed, 0);
    // The provider recovers: the second attempt succeeds.
    receiver.status.store(200, Ordering::SeqCst);
    assert_eq!(deliver(&app, start + 61_000).await.sent, 1);
    assert_eq!(message(&app, id).await["attempts"], 2);

    // Always failing: four attempts (1 + 3 retries at 1, 5 and 30 minutes), then FAILED.
    receiver.status.store(500, Ordering::SeqCst);
    let id = send_one(&app, "sms", json!({"to": MOBILE, "body": "doomed"})).await;
    let mut at = now_millis();
    for (attempt, wait) in [(1, 60_000), (2, 300_000), (3, 1_800_000)] {
        let report = deliver(&app, at).await;
        assert_eq!(report.retried, 1, "attempt {attempt}");
        assert_eq!(deliver(&app, at + wait - 1_000).await.claimed, 0, "backoff {attempt}");
        at += wait;
    }
    let report = deliver(&app, at).await;
    assert_eq!((report.failed, report.retried), (1, 0));
    let stored = message(&app, id).await;
    assert_eq!((stored["status"].as_str(), stored["attempts"].as_i64()), (Some("FAILED"), Some(4)));
    assert_eq!(deliver(&app, at + 86_400_000).await.claimed, 0);
    assert_eq!(receiver.seen.lock().await.len(), 2 + 4);
}

async fn a_scheduled_message_waits_for_its_time(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_ana(&app, &app.basic()).await;
    let now = now_millis();
    let in_an_hour = chrono::DateTime::from_timestamp_millis(now + 3_600_000)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let response = send(
        &app,
        &app.basic(),
        "sms",
        json!([{"to": MOBILE, "body": "Later", "scheduledTime": in_an_hour}]),
    )
    .await;
    response.assert_status(200);
    assert_eq!(response.json()["messages"][0]["status"], "SCHEDULED");
    let id = response.json()["messages"][0]["messageId"].as_i64().unwrap();
    assert_eq!(deliver(&app, now_millis()).await.claimed, 0, "not before its time");
    assert_eq!(deliver(&app, now + 3_500_000).await.claimed, 0);
    let list = interactions(&app, "").await;
    assert_eq!(list["interaction"][0]["status"], "SCHEDULED");
    assert!(list["interaction"][0]["scheduled_time"].is_string());

    let report = deliver(&app, now + 3_601_000).await;
    assert_eq!((report.claimed, report.sent), (1, 1));
    let stored = message(&app, id).await;
    assert_eq!(stored["status"], "SENT");
    assert_eq!(stored["scheduledAt"], in_an_hour);

    // A time in the past means now; more than a year ahead is refused.
    let past = send_one(
        &app,
        "sms",
        json!({"to": MOBILE, "body": "x",
        "scheduledTime": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(message(&app, past).await["status"], "QUEUED");
    let far = send(
        &app,
        &app.basic(),
        "sms",
        json!([{"to": MOBILE, "body": "x", "scheduledTime": "2999-01-01T00:00:00Z"}]),
    )
    .await;
    assert_v2_error(&far, 400, 400);
    let bad = send(
        &app,
        &app.basic(),
        "sms",
        json!([{"to": MOBILE, "body": "x", "scheduledTime": "tomorrow"}]),
    )
    .await;
    assert_v2_error(&bad, 400, 400);
}

async fn opted_out_customers_are_skipped(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    let user = add_ana(&app, &auth).await;
    let optout = |channel: &str, priority: &str| {
        json!({"reason": "asked", "subscriptions": [
            {"channel": channel, "priority": priority, "type": "OPTOUT"}]})
    };
    let subscriptions = format!("/v2/customers/{user}/subscriptions");
    app.post_json(&subscriptions, &auth, &optout("MOBILE", "TRANS")).await.assert_status(200);

    // SMS and WhatsApp (both to the mobile number) are skipped at once; e-mail is not.
    let response = send(&app, &auth, "sms", json!([{"to": MOBILE, "body": "Hi"}])).await;
    response.assert_status(200);
    assert_eq!(response.json()["messages"][0]["status"], "SKIPPED_OPTED_OUT");
    let by_id = send(&app, &auth, "whatsapp", json!([{"userId": user, "body": "Hi"}])).await;
    assert_eq!(by_id.json()["messages"][0]["status"], "SKIPPED_OPTED_OUT");
    let mail = send_one(&app, "email", json!({"to": EMAIL, "subject": "S", "body": "B"})).await;
    // A BULK (promotional) SMS is governed by the BULK subscription, still open.
    let bulk =
        send_one(&app, "sms", json!({"to": MOBILE, "body": "Sale", "priority": "BULK"})).await;
    assert_eq!(message(&app, bulk).await["status"], "QUEUED");

    // Opting out after queueing still stops delivery.
    app.post_json(&subscriptions, &auth, &optout("EMAIL", "TRANS")).await.assert_status(200);
    let report = deliver(&app, now_millis()).await;
    assert_eq!((report.claimed, report.sent, report.skipped), (2, 1, 1));
    let stored = message(&app, mail).await;
    assert_eq!(stored["status"], "SKIPPED_OPTED_OUT");
    assert_eq!(stored["sentAt"], Value::Null);
    let list = interactions(&app, "").await;
    assert_eq!(list["count"], 4);
    let statuses: Vec<&str> = list["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["SENT", "SKIPPED_OPTED_OUT", "SKIPPED_OPTED_OUT", "SKIPPED_OPTED_OUT"]);
}

async fn resend_queues_a_copy(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_ana(&app, &auth).await;
    let id = send_one(
        &app,
        "sms",
        json!({"to": MOBILE, "body": "Code {code}",
        "variables": {"code": "1234"}}),
    )
    .await;
    // Still queued: nothing to resend yet.
    let pending =
        app.post_json("/v2/communications/resend", &auth, &json!({"messageId": id})).await;
    assert_v2_error(&pending, 400, 400);
    deliver(&app, now_millis()).await;

    let response =
        app.post_json("/v2/communications/resend", &auth, &json!({"messageId": id})).await;
    response.assert_status(200);
    let body = response.json();
    assert_eq!(body["orgId"], app.org.org_id);
    assert_eq!(body["undeliveredMessageId"], id);
    assert_eq!(body["warnings"], json!([]));
    let copy = body["resentMessageId"].as_i64().unwrap();
    assert_ne!(copy, id);
    let stored = message(&app, copy).await;
    assert_eq!(stored["status"], "QUEUED");
    assert_eq!(stored["resentFrom"], id);
    assert_eq!(stored["body"], "Code 1234");
    assert_eq!(stored["to"], MOBILE);
    assert_eq!(deliver(&app, now_millis()).await.sent, 1);
    assert_eq!(interactions(&app, "").await["count"], 2);
    let audit = app.audit(app.org.org_id, "MESSAGE").await;
    assert_eq!(audit[0].action, "RESEND");

    // Unknown, malformed or missing ids.
    let missing =
        app.post_json("/v2/communications/resend", &auth, &json!({"messageId": 99999})).await;
    assert_v2_error(&missing, 404, 4223);
    for bad in [json!({}), json!({"messageId": "abc"}), json!({"messageId": [1]})] {
        let response = app.post_json("/v2/communications/resend", &auth, &bad).await;
        assert_v2_error(&response, 400, 400);
    }
    assert_eq!(message_count(&app).await, 2);
}

async fn templates_fill_placeholders(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_ana(&app, &auth).await;
    let response = add_template(
        &app,
        json!({"name": "points_earned", "channel": "sms",
        "body": "Hi {{first_name}}, you earned {points} points ({{ points }})"}),
    )
    .await;
    response.assert_status(201);
    let template = response.json()["data"].clone();
    assert_eq!(template["channel"], "SMS");
    assert_eq!(template["placeholders"], json!(["first_name", "points"]));
    let template_id = template["id"].as_i64().unwrap();

    let id = send_one(
        &app,
        "sms",
        json!({"to": MOBILE, "templateName": "points_earned",
        "variables": {"points": 40}}),
    )
    .await;
    let stored = message(&app, id).await;
    assert_eq!(stored["body"], "Hi Ana, you earned 40 points (40)");
    assert_eq!(stored["templateId"], template_id);
    // By id too; request values win over the customer's own.
    let id = send_one(
        &app,
        "sms",
        json!({"to": MOBILE, "templateId": template_id,
        "variables": {"points": 5, "first_name": "Dear"}}),
    )
    .await;
    assert_eq!(message(&app, id).await["body"], "Hi Dear, you earned 5 points (5)");

    // A missing value refuses the send: no raw placeholder ever goes out.
    let before = message_count(&app).await;
    let response =
        send(&app, &auth, "sms", json!([{"to": MOBILE, "templateName": "points_earned"}])).await;
    assert_v2_error(&response, 400, 400);
    assert!(response.body.contains("points"), "{}", response.body);
    // Without a customer there is no first_name either.
    let response = send(&app, &auth, "sms",
        json!([{"to": "919811111111", "templateName": "points_earned", "variables": {"points": 1}}])).await;
    assert_v2_error(&response, 400, 400);
    assert!(response.body.contains("first_name"), "{}", response.body);
    assert_eq!(message_count(&app).await, before);

    // Template management: duplicates, bad channels, e-mail subjects, wrong-channel use.
    assert_v2_error(
        &add_template(&app, json!({"name": "points_earned", "channel": "sms", "body": "x"})).await,
        400,
        4205,
    );
    assert_v2_error(
        &add_template(&app, json!({"name": "t2", "channel": "fax", "body": "x"})).await,
        400,
        4203,
    );
    assert_v2_error(
        &add_template(&app, json!({"name": "t3", "channel": "email", "body": "x"})).await,
        400,
        4201,
    );
    assert_v2_error(
        &add_template(&app, json!({"name": "bad name", "channel": "sms", "body": "x"})).await,
        400,
        400,
    );
    assert_v2_error(
        &add_template(&app, json!({"name": "t4", "channel": "sms", "body": ""})).await,
        400,
        4101,
    );
    let response = send(
        &app,
        &auth,
        "email",
        json!([{"to": EMAIL, "templateName": "points_earned", "variables": {"points": 1}}]),
    )
    .await;
    assert_v2_error(&response, 400, 4203);
    let response = send(&app, &auth, "sms", json!([{"to": MOBILE, "templateName": "nope"}])).await;
    assert_v2_error(&response, 404, 4204);

    // Replace, read, list, delete.
    let uri = format!("/x/perks/v1/templates/{template_id}");
    let response = app
        .put_json(
            &uri,
            &auth,
            &json!({"name": "points_earned", "channel": "SMS",
        "body": "{name}: {points} pts"}),
        )
        .await;
    response.assert_status(200);
    let id = send_one(
        &app,
        "sms",
        json!({"to": MOBILE, "templateName": "points_earned",
        "variables": {"points": 7}}),
    )
    .await;
    assert_eq!(message(&app, id).await["body"], "Ana Silva: 7 pts");
    add_template(&app, json!({"name": "other", "channel": "sms", "body": "x"}))
        .await
        .assert_status(201);
    let rename =
        app.put_json(&uri, &auth, &json!({"name": "other", "channel": "sms", "body": "x"})).await;
    assert_v2_error(&rename, 400, 4205);
    let response = app.get("/x/perks/v1/templates", &auth).await;
    response.assert_status(200);
    let body = response.json();
    let names: Vec<&str> =
        body["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["other", "points_earned"]);
    app.get(&uri, &auth).await.assert_status(200);
    app.json(Method::DELETE, &uri, &auth, &json!({})).await.assert_status(200);
    assert_v2_error(&app.get(&uri, &auth).await, 404, 4204);
    assert_v2_error(&app.json(Method::DELETE, &uri, &auth, &json!({})).await, 404, 4204);
    // Messages sent with it keep their text.
    assert_eq!(message(&app, id).await["body"], "Ana Silva: 7 pts");
    let audit = app.audit(app.org.org_id, "MESSAGE_TEMPLATE").await;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["DELETE", "CREATE", "UPDATE", "CREATE"]);
}

async fn bad_sends_are_refused_and_nothing_is_written(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_ana(&app, &auth).await;
    let ok = json!({"to": MOBILE, "body": "fine"});
    let cases: Vec<(&str, Value, u16, i64)> = vec![
        ("fax", json!([ok]), 400, 4203),
        ("sms", json!([{"to": "12", "body": "x"}]), 400, 4101),
        ("sms", json!([{"to": "not-a-number", "body": "x"}]), 400, 4101),
        ("email", json!([{"to": "ana@", "subject": "s", "body": "x"}]), 400, 4208),
        ("email", json!([{"to": EMAIL, "subject": "s", "body": "x", "cc": ["bad"]}]), 400, 4208),
        ("email", json!([{"to": EMAIL, "from": "nobody", "subject": "s", "body": "x"}]), 400, 4208),
        ("sms", json!([{"to": MOBILE, "body": "x".repeat(1_601)}]), 400, 4101),
        ("zalo", json!([{"to": MOBILE, "body": "x".repeat(2_001)}]), 400, 4101),
        (
            "email",
            json!([{"to": EMAIL, "subject": "s", "body": "x".repeat(256 * 1024 + 1)}]),
            400,
            4201,
        ),
        ("email", json!([{"to": EMAIL, "body": "no subject"}]), 400, 4201),
        (
            "email",
            json!([{"to": EMAIL, "subject": "s", "body": "x",
            "attachments": {"attachment": [{"file_name": "a.txt"}]}}]),
            400,
            4201,
        ),
        ("sms", json!([{"to": MOBILE}]), 400, 4101),
        ("sms", json!([{"body": "nobody"}]), 400, 4101),
        ("sms", json!([{"to": MOBILE, "body": "x", "cc": "a@b.co"}]), 400, 4101),
        ("sms", json!([{"to": MOBILE, "body": "x", "templateName": "t"}]), 400, 4101),
        ("sms", json!([{"to": MOBILE, "templateName": "missing"}]), 404, 4204),
        ("sms", json!([{"userId": 999999, "body": "x"}]), 404, 8015),
        ("sms", json!([{"to": MOBILE, "body": "x", "variables": [1]}]), 400, 400),
        ("sms", json!([{"to": MOBILE, "body": "x", "purpose": "no spaces"}]), 400, 400),
        ("sms", json!([{"to": MOBILE, "body": "x", "priority": "urgent"}]), 400, 400),
        // One bad item refuses the whole v2 request: the good one is not written either.
        ("sms", json!([ok, {"to": MOBILE, "body": "{unknown}"}]), 400, 400),
        ("sms", json!([]), 400, 400),
        ("sms", json!({"to": MOBILE}), 400, 400),
    ];
    for (channel, items, status, code) in cases {
        let response = send(&app, &auth, channel, items.clone()).await;
        assert_eq!(response.status.as_u16(), status, "{channel} {items}: {}", response.body);
        assert_eq!(response.v2_error_code(), code, "{channel} {items}: {}", response.body);
    }
    let too_many: Vec<Value> = (0..101).map(|_| ok.clone()).collect();
    assert_v2_error(&send(&app, &auth, "sms", json!(too_many)).await, 400, 1060);
    // The failing item is named.
    let response = send(&app, &auth, "sms", json!([ok, {"to": "12", "body": "x"}])).await;
    assert!(response.json()["errors"][0]["message"].as_str().unwrap().starts_with("sms[1]"));
    // The key must match the channel.
    let response = app
        .post_json("/v2/communications/sendMessage?channel=email", &auth, &json!({"sms": [ok]}))
        .await;
    assert_v2_error(&response, 400, 400);
    assert_eq!(message_count(&app).await, 0);
    assert!(app.audit(app.org.org_id, "MESSAGE").await.is_empty());

    // The channel name is case-insensitive and defaults to sms.
    let response =
        app.post_json("/v2/communications/sendMessage", &auth, &json!({"sms": [ok]})).await;
    response.assert_status(200);
    let response = app
        .post_json("/v2/communications/sendMessage?channel=SMS", &auth, &json!({"sms": [ok]}))
        .await;
    response.assert_status(200);
    assert_eq!(message_count(&app).await, 2);
}

async fn v1_send_answers_each_item(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let auth = app.basic();
    add_ana(&app, &auth).await;
    // In two days at 10:00 in the org's zone (Asia/Kolkata, +05:30), i.e. 04:30 UTC.
    let day = (chrono::Utc::now() + chrono::Duration::days(2))
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d")
        .to_string();
    let body = json!({"root": {"sms": [
        {"to": MOBILE, "body": "Hi {first_name}", "scheduled_time": format!("{day} 10:00:00")},
        {"to": "12", "body": "bad"}]}});
    let response =
        app.post_json("/v1.1/communications/sendMessage?channel=sms", &auth, &body).await;
    response.assert_status(201);
    assert_eq!(response.v1_code(), 201);
    let items = response.json()["response"]["messages"]["message"].clone();
    assert_eq!(items[0]["item_status"]["code"], 4100);
    assert_eq!(items[0]["status"], "SCHEDULED");
    assert_eq!(items[1]["item_status"]["code"], 4101);
    assert_eq!(items[1]["item_status"]["success"], "false");
    let id = items[0]["message_id"].as_i64().unwrap();
    let stored = message(&app, id).await;
    assert_eq!(stored["body"], "Hi Ana");
    // v1.1 clock times are read in the org's zone.
    assert_eq!(stored["scheduledAt"], format!("{day}T04:30:00Z"));
    assert_eq!(message_count(&app).await, 1);

    // E-mail answers 4200; XML in, XML out.
    let xml = format!(
        "<root><email><to>{EMAIL}</to><subject>Hi</subject><body>Hello there</body></email></root>"
    );
    let response = app
        .send(
            request(Method::POST, "/v1.1/communications/sendMessage?channel=email&format=xml")
                .header("authorization", &auth)
                .header("content-type", "application/xml")
                .body(axum::body::Body::from(xml))
                .unwrap(),
        )
        .await;
    response.assert_status(200);
    assert!(response.body.contains("<code>4200</code>"), "{}", response.body);
    assert!(response.body.contains("<status>QUEUED</status>"), "{}", response.body);

    // Every item refused: 500; an unknown channel refuses the request.
    let body = json!({"root": {"sms": [{"to": "12", "body": "x"}]}});
    let response = app.post_json("/v1.1/communications/sendMessage", &auth, &body).await;
    response.assert_status(500);
    let response =
        app.post_json("/v1.1/communications/sendMessage?channel=pigeon", &auth, &body).await;
    response.assert_status(400);
    assert_eq!(response.v1_code(), 4203);
    assert_eq!(message_count(&app).await, 2);
}

async fn the_service_sends_in_the_callers_transaction(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let user = CustomerId(add_ana(&app, &app.basic()).await);
    let org = OrgId(app.org.org_id);
    let request = || {
        SendRequest::new(
            Channel::Sms,
            Recipient::Customer(user),
            TemplateRef::Inline { subject: None, body: "Your code is {code}".into() },
            AuditActor::system(),
        )
        .value("code", "482913")
    };
    // Rolled back with the caller's transaction: nothing stays.
    let mut tx = app.state.db.begin_write().await.unwrap();
    perks::comms::send(&mut tx, org, request()).await.unwrap();
    drop(tx);
    assert_eq!(message_count(&app).await, 0);

    let mut tx = app.state.db.begin_write().await.unwrap();
    let sent = perks::comms::send(&mut tx, org, SendRequest { purpose: "otp".into(), ..request() })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sent.status, MessageStatus::Queued);
    assert_eq!(sent.recipient, MOBILE);
    assert_eq!(sent.customer, Some(user));
    let stored = message(&app, sent.id.0).await;
    assert_eq!(
        (stored["purpose"].as_str(), stored["body"].as_str()),
        (Some("OTP"), Some("Your code is 482913"))
    );
    assert_eq!(app.audit(app.org.org_id, "MESSAGE").await[0].principal_type, "SYSTEM");
    // One-time codes are masked in the customer's interactions.
    assert_eq!(interactions(&app, "").await["interaction"][0]["message"], "Your code is ******");

    // Refusals name their cause.
    let mut tx = app.state.db.begin_write().await.unwrap();
    let unknown = SendRequest { to: Recipient::Customer(CustomerId(424242)), ..request() };
    assert!(matches!(
        perks::comms::send(&mut tx, org, unknown).await,
        Err(CommsError::CustomerNotFound)
    ));
    let no_code = SendRequest { values: Default::default(), ..request() };
    match perks::comms::send(&mut tx, org, no_code).await {
        Err(CommsError::MissingValues(names)) => assert_eq!(names, ["code"]),
        other => panic!("{other:?}"),
    }
    let named = SendRequest { template: TemplateRef::Named("absent".into()), ..request() };
    assert!(matches!(
        perks::comms::send(&mut tx, org, named).await,
        Err(CommsError::TemplateNotFound(_))
    ));
}

async fn comms_need_the_right_permissions(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_ana(&app, &app.basic()).await;
    let pos = pos_till(&app, "pos.comms").await;
    let id = send_one(&app, "sms", json!({"to": MOBILE, "body": "x"})).await;
    deliver(&app, now_millis()).await;
    // A POS till reads messages and templates but does not send, resend or edit templates.
    assert_v2_error(&send(&app, &pos, "sms", json!([{"to": MOBILE, "body": "x"}])).await, 403, 403);
    let v1 = app
        .post_json(
            "/v1.1/communications/sendMessage",
            &pos,
            &json!({"root": {"sms": [{"to": MOBILE, "body": "x"}]}}),
        )
        .await;
    v1.assert_status(403);
    assert_eq!(v1.v1_code(), 403);
    let resend = app.post_json("/v2/communications/resend", &pos, &json!({"messageId": id})).await;
    assert_v2_error(&resend, 403, 403);
    let create = app
        .post_json(
            "/x/perks/v1/templates",
            &pos,
            &json!({"name": "t", "channel": "sms", "body": "x"}),
        )
        .await;
    assert_v2_error(&create, 403, 403);
    app.get("/x/perks/v1/templates", &pos).await.assert_status(200);
    app.get(&format!("/x/perks/v1/messages/{id}"), &pos).await.assert_status(200);
    assert_eq!(message_count(&app).await, 1);
    assert_v2_error(
        &send(&app, "Basic bm86bm8=", "sms", json!([{"to": MOBILE, "body": "x"}])).await,
        401,
        401,
    );
}

async fn comms_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    add_ana(&app, &app.basic()).await;
    let template =
        add_template(&app, json!({"name": "hello", "channel": "sms", "body": "Hello {name}"}))
            .await
            .json()["data"]["id"]
            .as_i64()
            .unwrap();
    let id = send_one(&app, "sms", json!({"to": MOBILE, "templateName": "hello"})).await;
    deliver(&app, now_millis()).await;

    let beta = app.another_org("Beta").await;
    let b = basic_header(&beta.till.username, &beta.till.password);
    // Beta sees none of Acme's templates or messages.
    let response = app.get("/x/perks/v1/templates", &b).await;
    assert_eq!(response.json()["data"], json!([]));
    assert_v2_error(&app.get(&format!("/x/perks/v1/templates/{template}"), &b).await, 404, 4204);
    assert_v2_error(&app.get(&format!("/x/perks/v1/messages/{id}"), &b).await, 404, 4223);
    let resend = app.post_json("/v2/communications/resend", &b, &json!({"messageId": id})).await;
    assert_v2_error(&resend, 404, 4223);
    let response = send(&app, &b, "sms", json!([{"to": MOBILE, "templateId": template}])).await;
    assert_v2_error(&response, 404, 4204);
    let put = app
        .put_json(
            &format!("/x/perks/v1/templates/{template}"),
            &b,
            &json!({"name": "hello", "channel": "sms", "body": "hijacked"}),
        )
        .await;
    assert_v2_error(&put, 404, 4204);

    // Beta may use the same template name; its message to the same number is not Acme's
    // customer's (Beta has no such customer, so {name} has no value).
    let beta_template = app
        .post_json(
            "/x/perks/v1/templates",
            &b,
            &json!({"name": "hello", "channel": "sms", "body": "Hi from Beta"}),
        )
        .await;
    beta_template.assert_status(201);
    let response = send(&app, &b, "sms", json!([{"to": MOBILE, "templateName": "hello"}])).await;
    response.assert_status(200);
    let beta_message = response.json()["messages"][0]["messageId"].as_i64().unwrap();
    let stored =
        app.get(&format!("/x/perks/v1/messages/{beta_message}"), &b).await.json()["data"].clone();
    assert_eq!(stored["customerId"], Value::Null);
    assert_eq!(stored["body"], "Hi from Beta");
    let acme_customer = stored_customer(&app, id).await;
    let response = app.get(&format!("/v2/customers/{acme_customer}/interactions"), &b).await;
    assert_v2_error(&response, 404, 8015);
    // Acme's customer's interactions hold Acme's message only.
    let list = interactions(&app, "").await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["interaction"][0]["id"], id);
    assert_eq!(app.audit(beta.org_id, "MESSAGE").await.len(), 1);
}

async fn concurrent_workers_send_each_message_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let items: Vec<Value> =
        (0..60).map(|i| json!({"to": format!("9198000{i:05}"), "body": format!("n{i}")})).collect();
    send(&app, &app.basic(), "sms", json!(items)).await.assert_status(200);
    // Two workers (as two instances would) run at once over the same due messages.
    let now = now_millis();
    let (a, b) = tokio::join!(deliver(&app, now), deliver(&app, now));
    assert_eq!(a.claimed + b.claimed, 60, "{a:?} {b:?}");
    assert_eq!(a.sent + b.sent, 60);
    assert_eq!(a.lost + b.lost, 0);
    let mut conn = app.state.db.read().await.unwrap();
    let attempts: Vec<i64> = perks::dispatch!(&mut conn, |e| sqlx::query_scalar(
        "SELECT attempts FROM messages ORDER BY id"
    )
    .fetch_all(e)
    .await)
    .unwrap();
    assert_eq!(attempts, vec![1; 60], "each message was claimed once");
}
