//! Sending one delivery: the JSON body, the signature headers, one HTTP POST with a timeout, and
//! what came of it. No database here; the worker (`jobs::webhooks`) records the outcome.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::model::signature;
use super::store::ClaimedDelivery;

/// Longest error text kept per attempt.
const ERROR_LENGTH_MAX: usize = 500;
/// How long connecting may take, within the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The outbound HTTP client: rustls, no redirects followed (a 3xx is a failed attempt), a
/// connect timeout; the request timeout is set per attempt.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(concat!("Perks-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The body of a delivery: `{"id", "type", "orgId", "occurredAt", "payload"}`.
pub fn body(delivery: &ClaimedDelivery) -> Vec<u8> {
    let payload = serde_json::from_str::<Value>(&delivery.payload).unwrap_or(Value::Null);
    let occurred_at = DateTime::<Utc>::from_timestamp_millis(delivery.occurred_at)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default();
    let body = json!({
        "id": delivery.event_id,
        "type": delivery.event_type,
        "orgId": delivery.org_id,
        "occurredAt": occurred_at,
        "payload": payload,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// SUCCESS | HTTP_ERROR | TIMEOUT | NETWORK_ERROR
    pub kind: &'static str,
    pub duration_ms: i64,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.kind == "SUCCESS"
    }
}

/// POSTs the delivery, signed at the current time; a 2xx answer is a success, anything else
/// (another status, a timeout, a network error) a failure.
pub async fn send(
    client: &reqwest::Client,
    delivery: &ClaimedDelivery,
    timeout: Duration,
) -> Outcome {
    let body = body(delivery);
    let timestamp = Utc::now().timestamp();
    let signature = signature(&delivery.secret, timestamp, &body);
    let started = Instant::now();
    let result = client
        .post(&delivery.url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Perks-Event-Id", delivery.event_id.to_string())
        .header("X-Perks-Timestamp", timestamp.to_string())
        .header("X-Perks-Signature", signature)
        .body(body)
        .send()
        .await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match result {
        Ok(response) if response.status().is_success() => Outcome {
            http_status: Some(response.status().as_u16()),
            error: None,
            kind: "SUCCESS",
            duration_ms,
        },
        Ok(response) => {
            let status = response.status();
            Outcome {
                http_status: Some(status.as_u16()),
                error: Some(format!("HTTP {status}")),
                kind: "HTTP_ERROR",
                duration_ms,
            }
        }
        Err(e) => {
            let kind = if e.is_timeout() { "TIMEOUT" } else { "NETWORK_ERROR" };
            let mut text = error_chain(&e);
            if text.len() > ERROR_LENGTH_MAX {
                let mut end = ERROR_LENGTH_MAX;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            Outcome { http_status: None, error: Some(text), kind, duration_ms }
        }
    }
}

/// The error and its causes, `: `-separated (reqwest's own text hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    let mut depth = 0;
    while let Some(cause) = source {
        if depth >= 5 {
            break;
        }
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
        depth += 1;
    }
    text
}
