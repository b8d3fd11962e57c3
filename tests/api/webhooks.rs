//! Webhooks: outbox events reach a local receiver as signed POSTs (within a second of the API
//! call), retries after errors and timeouts, DEAD after the limit, the circuit, replay, secret
//! rotation, rolled-back events, restarts, racing workers, the event notification logs, bad input,
//! Add Webhook, audit, and org isolation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use perks::app::AppState;
use perks::db::now_millis;
use perks::events::{self, NewEvent};
use perks::jobs::webhooks::{RunSummary, run_once};
use perks::org::model::OrgId;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, TestResponse, request};
use crate::transactions::add_customer;

backend_tests!(
    a_new_customer_produces_a_signed_call_within_a_second,
    failed_attempts_are_retried_after_500s_and_timeouts,
    a_delivery_gives_up_after_the_limit_and_is_dead,
    the_circuit_pauses_a_failing_webhook_then_recovers,
    replay_delivers_again,
    a_rotated_secret_signs_later_deliveries,
    a_rolled_back_event_is_never_delivered,
    an_event_committed_after_a_later_one_is_still_delivered,
    a_restart_resumes_a_pending_retry,
    two_workers_deliver_each_attempt_once,
    logs_show_deliveries_with_filters_sorting_and_paging,
    update_changes_url_events_and_active,
    bad_input_is_refused_and_writes_nothing,
    add_webhook_creates_an_inbound_integration,
    webhook_writes_are_audited_without_the_secret,
    webhooks_are_isolated_between_orgs,
    the_openapi_document_lists_the_webhook_routes,
    old_deliveries_and_deleted_webhooks_are_purged,
);

const WEBHOOKS: &str = "/x/perks/v1/webhooks";
const HOUR_MS: i64 = 3_600_000;

// ---------------------------------------------------------------- the test receiver

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn event_id(&self) -> i64 {
        self.header("x-perks-event-id").parse().unwrap()
    }

    /// True when `X-Perks-Signature` is the HMAC-SHA256 of `timestamp.body` under `secret`.
    fn signed_with(&self, secret: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(self.header("x-perks-timestamp").as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.header("x-perks-signature") == expected
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Answers to give, in order: (status, delay); then `default`.
    script: Mutex<VecDeque<(u16, u64)>>,
    default: Mutex<(u16, u64)>,
    arrived: Notify,
}

/// A local HTTP server on 127.0.0.1 that records every request and answers as scripted.
struct Receiver {
    port: u16,
    state: Arc<ReceiverState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let (status, delay) = {
        let scripted = state.script.lock().unwrap().pop_front();
        scripted.unwrap_or(*state.default.lock().unwrap())
    };
    state.received.lock().unwrap().push(Received { headers, body });
    state.arrived.notify_waiters();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState { default: Mutex::new((200, 0)), ..Default::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/hook", post(receive)).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { port, state, server }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn script(&self, answers: &[(u16, u64)]) {
        self.state.script.lock().unwrap().extend(answers.iter().copied());
    }

    fn answer(&self, status: u16) {
        *self.state.default.lock().unwrap() = (status, 0);
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// Waits (without polling) until `n` requests arrived or `within` passed; true if they did.
    async fn wait_for(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.state.arrived.notified();
            if self.count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.count() >= n;
            }
        }
    }
}

// ---------------------------------------------------------------- helpers

/// Creates a webhook; `(id, secret)`.
async fn create_webhook(app: &TestApp, url: &str, events: &[&str]) -> (i64, String) {
    let response =
        app.post_json(WEBHOOKS, &app.admin(), &json!({"url": url, "events": events})).await;
    response.assert_status(201);
    let data = response.json()["data"].clone();
    (data["id"].as_i64().unwrap(), data["secret"].as_str().unwrap().to_string())
}

async fn run(app: &TestApp, now: i64) -> RunSummary {
    run_once(&app.state, now).await
}

/// Runs the worker at `now` until it has nothing left to do now (bounded).
async fn drain(state: &AppState, now: i64) {
    for _ in 0..20 {
        let summary = run_once(state, now).await;
        if summary.attempted == 0 && summary.fanned_out == 0 {
            return;
        }
    }
    panic!("the worker did not settle");
}

async fn get_webhook(app: &TestApp, id: i64) -> Value {
    let response = app.get(&format!("{WEBHOOKS}/{id}"), &app.admin()).await;
    response.assert_status(200);
    response.json()["data"].clone()
}

/// The consumer-group log of webhook `id` (up to 100 entries, oldest event first).
async fn group_log(app: &TestApp, id: i64) -> Vec<Value> {
    let uri = format!("/v3/events/consumer-groups/{id}/logs?limit=100&sortBy=eventId:asc");
    let response = app.get(&uri, &app.basic()).await;
    response.assert_status(200);
    response.json()["data"].as_array().unwrap().clone()
}

/// How many deliveries `GET /v3/events/logs` reports for the org.
async fn log_total(app: &TestApp) -> i64 {
    app.get("/v3/events/logs", &app.basic()).await.json()["pagination"]["total"].as_i64().unwrap()
}

async fn event_log(app: &TestApp, event_id: i64) -> Vec<Value> {
    let response = app.get(&format!("/v3/events/logs/{event_id}"), &app.basic()).await;
    response.assert_status(200);
    response.json()["data"].as_array().unwrap().clone()
}

/// Raises a test event in its own transaction; committed or rolled back.
async fn raise(app: &TestApp, event_type: &str, commit: bool) {
    let mut tx = app.state.db.begin_write().await.unwrap();
    let event =
        NewEvent { event_type, entity_type: "TEST", entity_id: 7, payload: json!({"x": 1}) };
    events::raise(&mut tx, OrgId(app.org.org_id), None, event).await.unwrap();
    if commit {
        tx.commit().await.unwrap();
    }
}

#[track_caller]
fn assert_error(response: &TestResponse, status: u16, needle: &str) {
    response.assert_status(status);
    assert!(response.body.contains(needle), "expected {needle:?} in {}", response.body);
}

// ---------------------------------------------------------------- tests

async fn a_new_customer_produces_a_signed_call_within_a_second(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    let (_, secret) = create_webhook(&app, &receiver.url(), &["customer.*"]).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let jobs = perks::jobs::spawn(app.state.clone(), stopped);
    // Let the idle worker back off fully, as on a quiet server.
    tokio::time::sleep(Duration::from_millis(900)).await;

    let started = Instant::now();
    let customer = add_customer(&app, "919800000001").await;
    assert!(receiver.wait_for(1, Duration::from_secs(10)).await, "no webhook call arrived");
    let latency = started.elapsed();
    eprintln!("webhook latency from POST /v2/customers to the receiver: {latency:?}");
    stop.send(true).unwrap();
    jobs.await.unwrap();

    let call = &receiver.received()[0];
    assert!(call.signed_with(&secret), "signature does not verify");
    assert!(!call.signed_with("whsec_other"));
    let timestamp: i64 = call.header("x-perks-timestamp").parse().unwrap();
    assert!((timestamp - now_millis() / 1000).abs() < 60);
    assert_eq!(call.header("content-type"), "application/json");
    let body = call.json();
    assert_eq!(body["id"].as_i64().unwrap(), call.event_id());
    assert_eq!(body["type"], "customer.created");
    assert_eq!(body["orgId"], app.org.org_id);
    assert!(chrono::DateTime::parse_from_rfc3339(body["occurredAt"].as_str().unwrap()).is_ok());
    assert!(body["payload"].is_object(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 5, "{body}");
    let log = event_log(&app, call.event_id()).await;
    assert_eq!(log[0]["refId"], customer.to_string());
    assert_eq!(log[0]["deliveryStatus"], "SUCCESS");
    assert!(latency < Duration::from_secs(1), "delivery took {latency:?}");
}

async fn failed_attempts_are_retried_after_500s_and_timeouts(backend: Backend) {
    let Some(app) = TestApp::with_settings(backend, |s| s.webhooks.timeout_ms = 300).await else {
        return;
    };
    let receiver = Receiver::start().await;
    receiver.script(&[(500, 0), (200, 1_500)]);
    let (id, _) = create_webhook(&app, &receiver.url(), &["customer.created"]).await;
    add_customer(&app, "919800000002").await;
    let now = now_millis();

    let first = run(&app, now).await;
    assert_eq!((first.fanned_out > 0, first.attempted, first.delivered), (true, 1, 0));
    let log = group_log(&app, id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["deliveryStatus"], "RETRYING");
    assert_eq!(log[0]["httpStatus"], 500);
    assert_eq!(log[0]["attempts"], 1);
    let next = log[0]["nextAttemptAt"].as_i64().unwrap();
    assert!(next >= now + 5_000 && next <= now + 60_000, "first retry after 5-10 s: {next}");

    // Not due yet: nothing is sent.
    assert_eq!(run(&app, now + 1_000).await.attempted, 0);
    assert_eq!(receiver.count(), 1);
    // The second attempt times out (the receiver answers after 1.5 s, the timeout is 0.3 s).
    let second = run(&app, now + HOUR_MS).await;
    assert_eq!((second.attempted, second.delivered), (1, 0));
    let third = run(&app, now + 2 * HOUR_MS).await;
    assert_eq!((third.attempted, third.delivered), (1, 1));
    assert_eq!(receiver.count(), 3);
    let ids: Vec<i64> = receiver.received().iter().map(Received::event_id).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one event, three attempts: {ids:?}");

    let log = event_log(&app, ids[0]).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["deliveryStatus"], "SUCCESS");
    assert_eq!(log[0]["attempts"], 3);
    assert!(log[0]["nextAttemptAt"].is_null());
    let outcomes: Vec<&str> = log[0]["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["HTTP_ERROR", "TIMEOUT", "SUCCESS"]);
    let timeout = &log[0]["attemptLog"][1];
    assert!(timeout["httpStatus"].is_null() && timeout["error"].is_string(), "{timeout}");
    assert!(timeout["durationMs"].as_i64().unwrap() < 1_500, "{timeout}");
}

async fn a_delivery_gives_up_after_the_limit_and_is_dead(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    receiver.answer(500);
    let (id, _) = create_webhook(&app, &receiver.url(), &["customer.created"]).await;
    add_customer(&app, "919800000003").await;
    let now = now_millis();
    for i in 0..12 {
        run(&app, now + i * 2 * HOUR_MS).await;
    }
    assert_eq!(receiver.count(), 8, "eight attempts, then no more");
    let log = group_log(&app, id).await;
    assert_eq!(log[0]["deliveryStatus"], "FAILED");
    assert_eq!(log[0]["attempts"], 8);
    assert!(log[0]["nextAttemptAt"].is_null());
    let attempts = event_log(&app, log[0]["eventId"].as_i64().unwrap()).await[0]["attemptLog"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(attempts, 8, "every attempt is recorded");
    let dead = app
        .get(&format!("/v3/events/consumer-groups/{id}/logs?deliveryStatus=FAILED"), &app.basic())
        .await;
    assert_eq!(dead.json()["pagination"]["total"], 1);
}

async fn the_circuit_pauses_a_failing_webhook_then_recovers(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let (id, _) = create_webhook(&app, &receiver.url(), &["customer.created"]).await;
    for i in 0..6 {
        add_customer(&app, &format!("91980000010{i}")).await;
    }
    let now = now_millis();
    assert_eq!(run(&app, now).await.attempted, 6);
    let circuit = get_webhook(&app, id).await["circuit"].clone();
    assert_eq!(circuit["state"], "OPEN", "{circuit}");
    assert_eq!(circuit["consecutiveFailures"], 6);

    // Retries are due after ~10 s, but the circuit holds them for its cool-down: they wait, and
    // so do deliveries of events raised meanwhile.
    let paused_until =
        chrono::DateTime::parse_from_rfc3339(circuit["pausedUntil"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
    receiver.answer(200);
    add_customer(&app, "919800000199").await;
    assert_eq!(run(&app, now + 60_000).await.attempted, 0);
    assert_eq!(receiver.count(), 6);
    let waiting = group_log(&app, id).await;
    assert_eq!(waiting.len(), 7, "nothing is dropped");
    assert_eq!(waiting.iter().filter(|d| d["deliveryStatus"] == "RETRYING").count(), 6);
    assert_eq!(waiting[6]["deliveryStatus"], "PENDING");
    assert!(waiting.iter().all(|d| d["nextAttemptAt"].as_i64().unwrap() >= paused_until));

    // After the cool-down one probe goes through; its success closes the circuit.
    let probe = run(&app, now + 10 * 60_000).await;
    assert_eq!((probe.attempted, probe.delivered), (1, 1));
    assert_eq!(get_webhook(&app, id).await["circuit"]["state"], "CLOSED");
    let rest = run(&app, now + 10 * 60_000).await;
    assert_eq!((rest.attempted, rest.delivered), (6, 6));
    assert!(group_log(&app, id).await.iter().all(|d| d["deliveryStatus"] == "SUCCESS"));
    assert_eq!(receiver.count(), 13);
}

async fn replay_delivers_again(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    let (id, _) = create_webhook(&app, &receiver.url(), &["customer.created"]).await;
    add_customer(&app, "919800000201").await;
    add_customer(&app, "919800000202").await;
    drain(&app.state, now_millis()).await;
    assert_eq!(receiver.count(), 2);
    let first = receiver.received()[0].event_id();

    let replay = format!("{WEBHOOKS}/{id}/replay");
    let response = app.post_json(&replay, &app.admin(), &json!({"eventId": first})).await;
    response.assert_status(200);
    assert_eq!(response.json()["data"]["replayed"], 1);
    drain(&app.state, now_millis()).await;
    assert_eq!(receiver.count(), 3);
    assert_eq!(receiver.received()[2].event_id(), first);

    let from = chrono::Utc::now() - chrono::Duration::minutes(5);
    let to = chrono::Utc::now() + chrono::Duration::minutes(5);
    let body = json!({"from": from.to_rfc3339(), "to": to.to_rfc3339()});
    let response = app.post_json(&replay, &app.admin(), &body).await;
    response.assert_status(200);
    assert_eq!(response.json()["data"]["replayed"], 2, "only the webhook's event types");
    drain(&app.state, now_millis()).await;
    assert_eq!(receiver.count(), 5);
    let log = event_log(&app, first).await;
    assert_eq!(log[0]["attemptLog"].as_array().unwrap().len(), 3, "history is kept");

    // Bad replays.
    let unknown = receiver.received()[0].event_id() + 1_000_000;
    app.post_json(&replay, &app.admin(), &json!({"eventId": unknown})).await.assert_status(404);
    raise(&app, "test.unrelated", true).await;
    let unrelated = {
        let mut conn = app.state.db.read().await.unwrap();
        perks::events::store::for_entity(&mut conn, OrgId(app.org.org_id), "TEST", 7, 10)
            .await
            .unwrap()[0]
            .id
    };
    assert_error(
        &app.post_json(&replay, &app.admin(), &json!({"eventId": unrelated})).await,
        400,
        "eventId",
    );
    let backwards = json!({"from": to.to_rfc3339(), "to": from.to_rfc3339()});
    assert_error(
        &app.post_json(&replay, &app.admin(), &backwards).await,
        400,
        "to: must not be before from",
    );
    let both = json!({"eventId": first, "from": from.to_rfc3339(), "to": to.to_rfc3339()});
    assert_error(&app.post_json(&replay, &app.admin(), &both).await, 400, "eventId");
    assert_error(
        &app.post_json(&replay, &app.admin(), &json!({"from": "yesterday", "to": "today"})).await,
        400,
        "from",
    );
    app.post_json(&format!("{WEBHOOKS}/999999/replay"), &app.admin(), &json!({"eventId": first}))
        .await
        .assert_status(404);
}

async fn a_rotated_secret_signs_later_deliveries(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    let (id, old) = create_webhook(&app, &receiver.url(), &["customer.created"]).await;
    add_customer(&app, "919800000301").await;
    drain(&app.state, now_millis()).await;
    assert!(receiver.received()[0].signed_with(&old));

    let response =
        app.post_json(&format!("{WEBHOOKS}/{id}/rotateSecret"), &app.admin(), &json!({})).await;
    response.assert_status(200);
    let new = response.json()["data"]["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(new.starts_with("whsec_"));
    let shown = get_webhook(&app, id).await;
    assert!(shown.get("secret").is_none(), "the secret is shown only on create and rotate");
    let listed = app.get(WEBHOOKS, &app.admin()).await;
    assert!(!listed.body.contains(&new) && !listed.body.contains(&old));

    add_customer(&app, "919800000302").await;
    drain(&app.state, now_millis()).await;
    let second = &receiver.received()[1];
    assert!(second.signed_with(&new), "signed with the new secret");
    assert!(!second.signed_with(&old));
}

async fn a_rolled_back_event_is_never_delivered(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    create_webhook(&app, &receiver.url(), &["test.*"]).await;
    raise(&app, "test.rolled_back", false).await;
    raise(&app, "test.committed", true).await;
    // A simulated bill raises its events in a transaction that is rolled back too.
    let simulated = json!({"type": "REGULAR", "billNumber": "S1", "billAmount": 100});
    app.post_json("/v2/simulation/transactions", &app.basic(), &simulated).await;
    let now = now_millis();
    drain(&app.state, now).await;
    drain(&app.state, now + HOUR_MS).await;
    let types: Vec<Value> = receiver.received().iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(types, [json!("test.committed")]);
}

async fn an_event_committed_after_a_later_one_is_still_delivered(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    create_webhook(&app, &receiver.url(), &["test.*"]).await;
    let org = OrgId(app.org.org_id);
    let event =
        |t| NewEvent { event_type: t, entity_type: "TEST", entity_id: 1, payload: json!({}) };
    if backend == Backend::Postgres {
        // The slow transaction takes the lower id but commits after the fast one was delivered.
        let mut slow = app.state.db.begin_write().await.unwrap();
        let slow_id = events::raise(&mut slow, org, None, event("test.slow")).await.unwrap();
        let mut fast = app.state.db.begin_write().await.unwrap();
        let fast_id = events::raise(&mut fast, org, None, event("test.fast")).await.unwrap();
        assert!(slow_id < fast_id);
        fast.commit().await.unwrap();
        drain(&app.state, now_millis()).await;
        assert_eq!(receiver.count(), 1);
        slow.commit().await.unwrap();
    } else {
        // SQLite has one writer: commits happen in id order. Check the plain sequence.
        raise(&app, "test.fast", true).await;
        drain(&app.state, now_millis()).await;
        raise(&app, "test.slow", true).await;
    }
    drain(&app.state, now_millis()).await;
    let mut types: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["test.fast", "test.slow"]);
}

async fn a_restart_resumes_a_pending_retry(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    receiver.script(&[(500, 0)]);
    let (id, _) = create_webhook(&app, &receiver.url(), &["customer.created"]).await;
    add_customer(&app, "919800000401").await;
    let now = now_millis();
    run(&app, now).await;
    assert_eq!(group_log(&app, id).await[0]["deliveryStatus"], "RETRYING");

    // A new process on the same database: every state is in the database.
    let restarted = AppState::new((*app.state.settings).clone()).await.unwrap();
    let summary = run_once(&restarted, now + HOUR_MS).await;
    assert_eq!((summary.attempted, summary.delivered), (1, 1));
    restarted.db.close().await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].event_id(), received[1].event_id());
    assert_eq!(group_log(&app, id).await[0]["deliveryStatus"], "SUCCESS");
}

async fn two_workers_deliver_each_attempt_once(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let receiver = Receiver::start().await;
    *receiver.state.default.lock().unwrap() = (200, 20);
    create_webhook(&app, &receiver.url(), &["test.*"]).await;
    const EVENTS: usize = 60;
    {
        let mut tx = app.state.db.begin_write().await.unwrap();
        for i in 0..EVENTS {
            let event = NewEvent {
                event_type: "test.bulk",
                entity_type: "TEST",
                entity_id: i as i64,
                payload: json!({"i": i}),
            };
            events::raise(&mut tx, OrgId(app.org.org_id), None, event).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let other = AppState::new((*app.state.settings).clone()).await.unwrap();
    let now = now_millis();
    for _ in 0..20 {
        let (a, b) = tokio::join!(run_once(&app.state, now), run_once(&other, now));
        if receiver.count() >= EVENTS && a.attempted + b.attempted == 0 {
            break;
        }
    }
    other.db.close().await;
    let mut per_event: HashMap<i64, usize> = HashMap::new();
    for r in receiver.received() {
        *per_event.entry(r.event_id()).or_default() += 1;
    }
    assert_eq!(per_event.len(), EVENTS, "every event delivered");
    assert!(per_event.values().all(|n| *n == 1), "each once: {per_event:?}");
}

async fn logs_show_deliveries_with_filters_sorting_and_paging(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.answer(500);
    let (all, _) = create_webhook(&app, &good.url(), &["customer.*"]).await;
    let (created, _) = create_webhook(&app, &bad.url(), &["customer.created"]).await;
    let mut customers = Vec::new();
    for i in 1..=3 {
        let body = json!({"profiles": [{"firstName": "Ana",
            "identifiers": [{"type": "mobile", "value": format!("91980000050{i}")}]}]});
        let response = app
            .send(
                request(Method::POST, "/v2/customers")
                    .header("authorization", app.basic())
                    .header("content-type", "application/json")
                    .header("x-request-id", format!("req-{i}"))
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        response.assert_status(200);
        customers.push(response.json()["createdId"].as_i64().unwrap());
    }
    run(&app, now_millis()).await;

    // By request id: the request's event went to both webhooks.
    let response = app.get("/v3/events/logs?requestId=req-2", &app.basic()).await;
    response.assert_status(200);
    let body = response.json();
    let entries = body["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{body}");
    assert_eq!(body["pagination"]["total"], 2);
    for entry in entries {
        assert_eq!(entry["requestId"], "req-2");
        assert_eq!(entry["eventType"], "customer.created");
        assert_eq!(entry["refId"], customers[1].to_string());
        let (status, http) =
            if entry["webhookId"] == all { ("SUCCESS", 200) } else { ("RETRYING", 500) };
        assert_eq!(entry["deliveryStatus"], status, "{entry}");
        assert_eq!(entry["httpStatus"], http);
        assert_eq!(entry["attempts"], 1);
        assert!(entry["webhookDuration"].is_i64() && entry["createdAt"].is_i64(), "{entry}");
    }
    // By reference id, and by event id with the attempts.
    let by_ref = app.get(&format!("/v3/events/logs?refId={}", customers[0]), &app.basic()).await;
    assert_eq!(by_ref.json()["pagination"]["total"], 2);
    let event_id = by_ref.json()["data"][0]["eventId"].as_i64().unwrap();
    let log = event_log(&app, event_id).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|d| d["attemptLog"].as_array().unwrap().len() == 1));

    // Per consumer group: filters, sorting, paging.
    let group = |query: &str| format!("/v3/events/consumer-groups/{all}/logs{query}");
    let page = app.get(&group("?limit=2&sortBy=eventId:asc"), &app.basic()).await.json();
    assert_eq!(page["pagination"], json!({"limit": 2, "offset": 0, "total": 3}));
    let first_two: Vec<i64> =
        page["data"].as_array().unwrap().iter().map(|d| d["eventId"].as_i64().unwrap()).collect();
    assert!(first_two[0] < first_two[1]);
    let rest = app.get(&group("?limit=2&offset=2&sortBy=eventId:asc"), &app.basic()).await.json();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert!(rest["data"][0]["eventId"].as_i64().unwrap() > first_two[1]);
    let newest = app.get(&group("?sortBy=eventId:desc&limit=1"), &app.basic()).await.json();
    assert_eq!(newest["data"][0]["refId"], customers[2].to_string());
    let by_key = app.get(&group(&format!("?eventSearchKey={}", customers[2])), &app.basic()).await;
    assert_eq!(by_key.json()["pagination"]["total"], 1);
    let typed =
        app.get(&group("?eventType=customer.created&deliveryStatus=SUCCESS"), &app.basic()).await;
    assert_eq!(typed.json()["pagination"]["total"], 3);
    let none = app.get(&group("?deliveryStatus=RETRYING"), &app.basic()).await;
    assert_eq!(none.json()["pagination"]["total"], 0);
    let by_duration = app.get(&group("?sortBy=webhookDuration:desc"), &app.basic()).await;
    by_duration.assert_status(200);
    let failing = app
        .get(
            &format!("/v3/events/consumer-groups/{created}/logs?deliveryStatus=RETRYING"),
            &app.basic(),
        )
        .await;
    assert_eq!(failing.json()["pagination"]["total"], 3);
    let by_request = app.get(&group("?requestId=req-3"), &app.basic()).await;
    assert_eq!(by_request.json()["pagination"]["total"], 1);

    // Bad queries and unknown ids.
    for query in [
        "?sortBy=payload:asc",
        "?sortBy=eventId:up",
        "?limit=0",
        "?limit=101",
        "?offset=-1",
        "?deliveryStatus=LOST",
        "?limit=abc",
    ] {
        let response = app.get(&group(query), &app.basic()).await;
        response.assert_status(400);
        assert!(response.json()["data"].is_null(), "v3 error envelope: {}", response.body);
    }
    app.get("/v3/events/consumer-groups/999999/logs", &app.basic()).await.assert_status(404);
    app.get("/v3/events/logs/999999999", &app.basic()).await.assert_status(404);
    app.get("/v3/events/logs/abc", &app.basic()).await.assert_status(400);
    app.get("/v3/events/logs", "Basic bm9ib2R5Om5vcGU=").await.assert_status(401);
}

async fn update_changes_url_events_and_active(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let (id, _) = create_webhook(&app, &first.url(), &["customer.created"]).await;
    let uri = format!("{WEBHOOKS}/{id}");

    let response = app.json(Method::PATCH, &uri, &app.admin(), &json!({"active": false})).await;
    response.assert_status(200);
    assert_eq!(response.json()["data"]["active"], false);
    add_customer(&app, "919800000601").await;
    drain(&app.state, now_millis()).await;
    assert_eq!(first.count(), 0, "an inactive webhook receives nothing");

    let change = json!({"active": true, "url": second.url(), "events": ["customer.*", "test.ping"], "name": "CRM"});
    let response = app.put_json(&uri, &app.admin(), &change).await;
    response.assert_status(200);
    let data = response.json()["data"].clone();
    assert_eq!(data["url"], second.url());
    assert_eq!(data["events"], json!(["customer.*", "test.ping"]));
    assert_eq!(data["name"], "CRM");
    assert_eq!(data["active"], true);
    raise(&app, "test.ping", true).await;
    add_customer(&app, "919800000602").await;
    drain(&app.state, now_millis()).await;
    assert_eq!(first.count(), 0);
    let types: Vec<Value> = second.received().iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(types.len(), 2, "the event raised while inactive is not delivered: {types:?}");
    assert!(types.contains(&json!("test.ping")) && types.contains(&json!("customer.created")));

    let listed = app.get(WEBHOOKS, &app.admin()).await.json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let response = app
        .send(
            request(Method::DELETE, &uri)
                .header("authorization", app.admin())
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    response.assert_status(200);
    app.get(&uri, &app.admin()).await.assert_status(404);
    assert!(app.get(WEBHOOKS, &app.admin()).await.json()["data"].as_array().unwrap().is_empty());
    add_customer(&app, "919800000603").await;
    drain(&app.state, now_millis()).await;
    assert_eq!(second.count(), 2, "a deleted webhook receives nothing");
}

async fn bad_input_is_refused_and_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let admin = app.admin();
    let long = format!("https://example.com/{}", "a".repeat(2000));
    let cases = [
        (json!({"url": "ftp://example.com/hook", "events": ["*"]}), "url: must use http or https"),
        (json!({"url": "not a url", "events": ["*"]}), "url: is not a URL"),
        (json!({"url": long, "events": ["*"]}), "url: must be at most 2000 characters"),
        (
            json!({"url": "https://user:pw@example.com/", "events": ["*"]}),
            "url: must not carry credentials",
        ),
        (json!({"url": "", "events": ["*"]}), "url: is required"),
        (json!({"url": "https://example.com/", "events": []}), "events: must list at least one"),
        (json!({"url": "https://example.com/", "events": ["Customer.Created"]}), "events[0]"),
        (json!({"url": "https://example.com/", "events": ["*", "x..y"]}), "events[1]"),
        (
            json!({"url": "https://example.com/", "events": ["*"], "name": ""}),
            "name: must be 1 to 100",
        ),
        (json!({"events": ["*"]}), "missing field `url`"),
        (
            json!({"url": "https://example.com/", "events": ["*"], "secret": "mine"}),
            "unknown field `secret`",
        ),
        (json!({"url": "https://example.com/", "events": "*"}), "events"),
    ];
    for (body, needle) in cases {
        let response = app.post_json(WEBHOOKS, &admin, &body).await;
        assert_error(&response, 400, needle);
        assert_eq!(response.v2_error_code(), 400);
    }
    // Malformed JSON, wrong content type, oversize body.
    let malformed = app
        .send(
            request(Method::POST, WEBHOOKS)
                .header("authorization", &admin)
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"url\":"))
                .unwrap(),
        )
        .await;
    assert_error(&malformed, 400, "Malformed JSON");
    let text = app
        .send(
            request(Method::POST, WEBHOOKS)
                .header("authorization", &admin)
                .header("content-type", "text/plain")
                .body(axum::body::Body::from("hi"))
                .unwrap(),
        )
        .await;
    text.assert_status(415);
    let huge = json!({"url": "https://example.com/", "events": ["*"], "name": "x".repeat(2 * 1024 * 1024)});
    app.post_json(WEBHOOKS, &admin, &huge).await.assert_status(413);
    // Only admin tokens manage webhooks.
    app.post_json(WEBHOOKS, &app.basic(), &json!({"url": "https://example.com/", "events": ["*"]}))
        .await
        .assert_status(403);
    app.get(WEBHOOKS, &app.basic()).await.assert_status(403);
    // Nothing was written.
    assert!(app.get(WEBHOOKS, &admin).await.json()["data"].as_array().unwrap().is_empty());
    assert!(app.audit(app.org.org_id, "WEBHOOK").await.is_empty());

    // Unknown ids, and bad updates of a real one.
    let (id, _) = create_webhook(&app, "https://example.com/hook", &["*"]).await;
    for uri in [format!("{WEBHOOKS}/999999"), format!("{WEBHOOKS}/999999/rotateSecret")] {
        let response = if uri.ends_with("Secret") {
            app.post_json(&uri, &admin, &json!({})).await
        } else {
            app.get(&uri, &admin).await
        };
        assert_error(&response, 404, "Webhook not found");
    }
    app.put_json(&format!("{WEBHOOKS}/999999"), &admin, &json!({"active": false}))
        .await
        .assert_status(404);
    app.get(&format!("{WEBHOOKS}/abc"), &admin).await.assert_status(400);
    let uri = format!("{WEBHOOKS}/{id}");
    assert_error(&app.put_json(&uri, &admin, &json!({"url": "gopher://x"})).await, 400, "url:");
    assert_error(&app.put_json(&uri, &admin, &json!({"events": []})).await, 400, "events:");
    assert_error(&app.put_json(&uri, &admin, &json!({"active": "yes"})).await, 400, "active");
    let unchanged = get_webhook(&app, id).await;
    assert_eq!(unchanged["url"], "https://example.com/hook");
    assert_eq!(unchanged["events"], json!(["*"]));
    assert_eq!(app.audit(app.org.org_id, "WEBHOOK").await.len(), 1, "only the create");
}

async fn add_webhook_creates_an_inbound_integration(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let body = json!({"source": "CUSTOM", "tillCode": app.org.till.username});
    let response = app
        .send(
            request(Method::POST, "/v2/events/webhook")
                .header("authorization", app.basic())
                .header("content-type", "application/json")
                .header("host", "loyalty.example.com")
                .header("x-forwarded-proto", "https")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    response.assert_status(200);
    let answer = response.json();
    let key = answer["webhookId"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        answer["webhookUrl"],
        format!("https://loyalty.example.com/v2/events/webhook/{key}")
    );

    let listed = app.get(WEBHOOKS, &app.admin()).await.json();
    let integration = &listed["data"][0];
    assert_eq!(integration["kind"], "INBOUND");
    assert_eq!(integration["source"], "CUSTOM");
    assert_eq!(integration["tillCode"], app.org.till.username);
    assert_eq!(integration["webhookId"], key);
    let id = integration["id"].as_i64().unwrap();
    {
        let mut conn = app.state.db.read().await.unwrap();
        let found = perks::webhooks::store::find_inbound(&mut conn, &key).await.unwrap().unwrap();
        assert_eq!((found.id, found.org_id), (id, app.org.org_id));
    }
    // Its URL takes posted events (checked like Post Event: an undefined event is refused by the
    // behavioral checks, not by routing); an unknown integration is 404.
    let through = app
        .post_json(
            &format!("/v2/events/webhook/{key}"),
            &app.basic(),
            &json!({"eventName": "undefined_event"}),
        )
        .await;
    assert_eq!(through.status, 400, "{}", through.body);
    let nobody = app
        .post_json(
            "/v2/events/webhook/0123456789abcdef0123456789abcdef",
            &app.basic(),
            &json!({"eventName": "x"}),
        )
        .await;
    nobody.assert_status(404);
    // An integration receives no deliveries and has no secret to rotate.
    add_customer(&app, "919800000701").await;
    let summary = run(&app, now_millis()).await;
    assert_eq!(summary.attempted, 0);
    assert_error(
        &app.post_json(&format!("{WEBHOOKS}/{id}/rotateSecret"), &app.admin(), &json!({})).await,
        400,
        "inbound",
    );

    let bad_source = json!({"source": "TELEPATHY", "tillCode": app.org.till.username});
    assert_error(
        &app.post_json("/v2/events/webhook", &app.basic(), &bad_source).await,
        400,
        "source",
    );
    let unknown_till = json!({"source": "WEBENGAGE", "tillCode": "no.such.till"});
    let response = app.post_json("/v2/events/webhook", &app.basic(), &unknown_till).await;
    response.assert_status(400);
    assert_eq!(response.v2_error_code(), 671);
    assert_error(
        &app.post_json("/v2/events/webhook", &app.basic(), &json!({"source": "CUSTOM"})).await,
        400,
        "tillCode",
    );
    assert_eq!(app.get(WEBHOOKS, &app.admin()).await.json()["data"].as_array().unwrap().len(), 1);
}

async fn webhook_writes_are_audited_without_the_secret(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let (id, secret) = create_webhook(&app, "https://example.com/hook", &["customer.*"]).await;
    let uri = format!("{WEBHOOKS}/{id}");
    app.put_json(&uri, &app.admin(), &json!({"name": "Renamed"})).await.assert_status(200);
    let rotated = app.post_json(&format!("{uri}/rotateSecret"), &app.admin(), &json!({})).await;
    let new_secret = rotated.json()["data"]["secret"].as_str().unwrap().to_string();
    add_customer(&app, "919800000801").await;
    run(&app, now_millis()).await;
    let event_id = app
        .get(&format!("/v3/events/consumer-groups/{id}/logs"), &app.basic())
        .await
        .json()["data"][0]["eventId"]
        .as_i64()
        .unwrap();
    app.post_json(&format!("{uri}/replay"), &app.admin(), &json!({"eventId": event_id}))
        .await
        .assert_status(200);
    app.send(
        request(Method::DELETE, &uri)
            .header("authorization", app.admin())
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .assert_status(200);
    let records = app.audit(app.org.org_id, "WEBHOOK").await;
    let actions: Vec<&str> = records.iter().rev().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["CREATE", "UPDATE", "ROTATE_SECRET", "REPLAY", "DELETE"]);
    assert!(records.iter().all(|r| r.entity_id == id && r.principal_type == "ADMIN"));
    for record in &records {
        for state in [&record.before_state, &record.after_state].into_iter().flatten() {
            assert!(!state.contains(&secret) && !state.contains(&new_secret), "{state}");
        }
    }
    // After delete the id is gone everywhere.
    app.post_json(&format!("{uri}/replay"), &app.admin(), &json!({"eventId": event_id}))
        .await
        .assert_status(404);
    app.get(&format!("/v3/events/consumer-groups/{id}/logs"), &app.basic())
        .await
        .assert_status(404);
}

async fn webhooks_are_isolated_between_orgs(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let ours = Receiver::start().await;
    let theirs = Receiver::start().await;
    let (mine, _) = create_webhook(&app, &ours.url(), &["*"]).await;
    let other = app.another_org("Other").await;
    let their_admin = format!("Bearer {}", other.admin_token);
    let their_till = crate::helpers::basic_header(&other.till.username, &other.till.password);
    let response =
        app.post_json(WEBHOOKS, &their_admin, &json!({"url": theirs.url(), "events": ["*"]})).await;
    response.assert_status(201);
    let their_id = response.json()["data"]["id"].as_i64().unwrap();

    // Their admin sees only their webhook and cannot touch ours.
    let listed = app.get(WEBHOOKS, &their_admin).await.json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], their_id);
    let uri = format!("{WEBHOOKS}/{mine}");
    app.get(&uri, &their_admin).await.assert_status(404);
    app.put_json(&uri, &their_admin, &json!({"active": false})).await.assert_status(404);
    app.post_json(&format!("{uri}/rotateSecret"), &their_admin, &json!({}))
        .await
        .assert_status(404);
    app.send(
        request(Method::DELETE, &uri)
            .header("authorization", &their_admin)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .assert_status(404);
    assert_eq!(get_webhook(&app, mine).await["active"], true);

    // Our events go to our webhook only.
    add_customer(&app, "919800000901").await;
    drain(&app.state, now_millis()).await;
    assert!(ours.count() >= 1);
    assert_eq!(theirs.count(), 0);
    let event_id = ours.received()[0].event_id();
    app.post_json(
        &format!("{WEBHOOKS}/{their_id}/replay"),
        &their_admin,
        &json!({"eventId": event_id}),
    )
    .await
    .assert_status(404);
    // Our logs are not theirs.
    app.get(&format!("/v3/events/logs/{event_id}"), &their_till).await.assert_status(404);
    app.get(&format!("/v3/events/consumer-groups/{mine}/logs"), &their_till)
        .await
        .assert_status(404);
    let their_logs = app.get("/v3/events/logs", &their_till).await.json();
    assert_eq!(their_logs["pagination"]["total"], 0);
    assert!(
        app.get("/v3/events/logs", &app.basic()).await.json()["pagination"]["total"]
            .as_i64()
            .unwrap()
            >= 1
    );
}

async fn the_openapi_document_lists_the_webhook_routes(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let doc = app.get("/openapi.json", "").await;
    doc.assert_status(200);
    let paths = doc.json()["paths"].as_object().unwrap().clone();
    for path in [
        "/x/perks/v1/webhooks",
        "/x/perks/v1/webhooks/{id}",
        "/x/perks/v1/webhooks/{id}/rotateSecret",
        "/x/perks/v1/webhooks/{id}/replay",
        "/v2/events/webhook",
        "/v3/events/logs",
        "/v3/events/logs/{eventId}",
        "/v3/events/consumer-groups/{id}/logs",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }
    let one = &paths["/x/perks/v1/webhooks/{id}"];
    assert!(one.get("get").is_some() && one.get("put").is_some() && one.get("delete").is_some());
}

async fn old_deliveries_and_deleted_webhooks_are_purged(backend: Backend) {
    let Some(app) = TestApp::new(backend).await else { return };
    let up = Receiver::start().await;
    let down = Receiver::start().await;
    down.answer(500);
    let (kept, _) = create_webhook(&app, &up.url(), &["customer.created"]).await;
    let (deleted, _) = create_webhook(&app, &down.url(), &["customer.created"]).await;
    add_customer(&app, "919800001001").await;
    let now = now_millis();
    run(&app, now).await;
    let uri = format!("{WEBHOOKS}/{deleted}");
    app.send(
        request(Method::DELETE, &uri)
            .header("authorization", app.admin())
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .assert_status(200);
    assert_eq!(log_total(&app).await, 2);

    // The deleted webhook's waiting delivery goes at once; the finished one stays 30 days.
    perks::jobs::webhooks::purge(&app.state, now).await;
    assert_eq!(log_total(&app).await, 1);
    assert_eq!(group_log(&app, kept).await.len(), 1);
    perks::jobs::webhooks::purge(&app.state, now + 31 * 24 * HOUR_MS).await;
    assert_eq!(log_total(&app).await, 0);
    // Nothing is delivered afterwards, and the live webhook still works.
    assert_eq!(run(&app, now + 32 * 24 * HOUR_MS).await.attempted, 0);
    add_customer(&app, "919800001002").await;
    drain(&app.state, now_millis()).await;
    assert_eq!(up.count(), 2);
    assert_eq!(down.count(), 1);
}
