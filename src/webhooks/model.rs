//! Webhook types parsed at the boundary (URLs, event filters), the delivery states, the retry and
//! circuit policy, signing, and the domain error.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::{ApiError, Code};

/// Longest accepted webhook URL, in characters.
pub const URL_LENGTH_MAX: usize = 2000;
/// Longest subscription name.
pub const NAME_LENGTH_MAX: usize = 100;
/// Most event-type patterns one subscription may list.
pub const PATTERNS_MAX: usize = 50;
/// Longest event-type pattern.
pub const PATTERN_LENGTH_MAX: usize = 100;
/// Most subscriptions (outbound and inbound together, deleted ones excluded) one org may hold.
pub const SUBSCRIPTIONS_PER_ORG_MAX: i64 = 50;

/// Attempts per delivery before it is given up (DEAD).
pub const ATTEMPTS_MAX: i64 = 8;
/// Delay before the first retry; it doubles with every failed attempt...
pub const RETRY_BASE_MS: i64 = 10_000;
/// ...up to this cap.
pub const RETRY_CAP_MS: i64 = 3_600_000;
/// Failures in a row after which a subscription's circuit opens (its deliveries wait).
pub const CIRCUIT_FAILURES_MAX: i64 = 5;
/// How long an open circuit waits before one probe delivery is let through.
pub const CIRCUIT_COOL_DOWN_MS: i64 = 120_000;

/// A subscription's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionId(pub i64);

/// Outbound subscriptions receive events; inbound ones are the integrations of Add Webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionKind {
    Outbound,
    Inbound,
}

impl SubscriptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Outbound => "OUTBOUND",
            SubscriptionKind::Inbound => "INBOUND",
        }
    }
}

/// A delivery's state in storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not tried yet.
    Pending,
    /// Tried and failed; retried at `next_attempt_at`.
    Failed,
    Delivered,
    /// Given up after [`ATTEMPTS_MAX`] attempts.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Failed => "FAILED",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Dead => "DEAD",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "PENDING" => Some(DeliveryStatus::Pending),
            "FAILED" => Some(DeliveryStatus::Failed),
            "DELIVERED" => Some(DeliveryStatus::Delivered),
            "DEAD" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }

    /// The event notification logs' `deliveryStatus`.
    pub fn log_status(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Failed => "RETRYING",
            DeliveryStatus::Delivered => "SUCCESS",
            DeliveryStatus::Dead => "FAILED",
        }
    }

    /// The storage state for a logs' `deliveryStatus` filter value.
    pub fn from_log_status(s: &str) -> Option<DeliveryStatus> {
        match s.to_ascii_uppercase().as_str() {
            "PENDING" => Some(DeliveryStatus::Pending),
            "RETRYING" => Some(DeliveryStatus::Failed),
            "SUCCESS" => Some(DeliveryStatus::Delivered),
            "FAILED" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// A validated target URL: `http` or `https`, with a host, no credentials, at most
/// [`URL_LENGTH_MAX`] characters. Stored in its normalised form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<WebhookUrl, WebhookError> {
        let text = text.trim();
        let invalid = |reason: &str| WebhookError::invalid("url", reason);
        if text.is_empty() {
            return Err(invalid("is required"));
        }
        if text.chars().count() > URL_LENGTH_MAX {
            return Err(invalid(&format!("must be at most {URL_LENGTH_MAX} characters")));
        }
        let url = reqwest::Url::parse(text).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("must use http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials; verify the signature instead"));
        }
        let normalised = url.to_string();
        if normalised.chars().count() > URL_LENGTH_MAX {
            return Err(invalid(&format!("must be at most {URL_LENGTH_MAX} characters")));
        }
        Ok(WebhookUrl(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host, used as the default subscription name.
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// The event types a subscription receives: exact names (`transaction.added`), a prefix with a
/// wildcard (`customer.*`), or `*` for every event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    pub fn parse(patterns: &[String]) -> Result<EventFilter, WebhookError> {
        if patterns.is_empty() {
            return Err(WebhookError::invalid("events", "must list at least one event type"));
        }
        if patterns.len() > PATTERNS_MAX {
            return Err(WebhookError::invalid(
                "events",
                format!("must list at most {PATTERNS_MAX} event types"),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(patterns.len());
        for (i, pattern) in patterns.iter().enumerate() {
            let pattern = pattern.trim();
            if !valid_pattern(pattern) {
                return Err(WebhookError::invalid(
                    format!("events[{i}]"),
                    "must be an event type such as \"customer.created\", a prefix such as \
                     \"customer.*\", or \"*\"",
                ));
            }
            if !out.iter().any(|p| p == pattern) {
                out.push(pattern.to_string());
            }
        }
        Ok(EventFilter(out))
    }

    /// The stored form (a JSON list); a malformed one matches nothing.
    pub fn from_stored(json: &str) -> EventFilter {
        EventFilter(serde_json::from_str(json).unwrap_or_default())
    }

    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".into())
    }

    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => event_type.starts_with(prefix),
            None => p == event_type,
        })
    }
}

fn valid_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if pattern.is_empty() || pattern.len() > PATTERN_LENGTH_MAX {
        return false;
    }
    let body = pattern.strip_suffix(".*").unwrap_or(pattern);
    !body.is_empty()
        && body.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// A subscription name: trimmed, 1 to [`NAME_LENGTH_MAX`] characters, no control characters.
pub fn parse_name(name: &str) -> Result<String, WebhookError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_LENGTH_MAX {
        return Err(WebhookError::invalid(
            "name",
            format!("must be 1 to {NAME_LENGTH_MAX} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(WebhookError::invalid("name", "must not contain control characters"));
    }
    Ok(name.to_string())
}

/// A new signing secret: `whsec_` and 64 hex digits (256 random bits).
pub fn new_secret() -> String {
    format!("whsec_{}", random_hex::<32>())
}

/// A new inbound integration key (the `webhookId` of Add Webhook): 32 hex digits.
pub fn new_webhook_key() -> String {
    random_hex::<16>()
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// `X-Perks-Signature`: `sha256=` and the hex HMAC-SHA256, keyed by the secret (its full text),
/// of `"{timestamp}.{body}"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait before the next attempt after `attempts_made` failed ones: 10 s · 2^(n-1), capped at
/// one hour, of which a random half (`jitter` in 0..1) is kept: "equal jitter".
pub fn retry_delay_ms(attempts_made: i64, jitter: f64) -> i64 {
    let exponent = attempts_made.clamp(1, 20) - 1;
    let full = RETRY_BASE_MS.saturating_mul(1_i64 << exponent).min(RETRY_CAP_MS);
    let half = full / 2;
    half + (half as f64 * jitter.clamp(0.0, 1.0)) as i64
}

/// Errors of the webhooks domain.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Bad input: `field` names it, `reason` says why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("Webhook not found")]
    NotFound,
    #[error("Event not found")]
    EventNotFound,
    /// Add Webhook named a till code the org does not have.
    #[error("tillCode: no till with this code in the org")]
    UnknownTill,
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl WebhookError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> WebhookError {
        WebhookError::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Db(db) => ApiError::from(db),
            WebhookError::NotFound | WebhookError::EventNotFound => {
                ApiError::with_message(Code::NotFound, e.to_string())
            }
            WebhookError::Invalid { .. } => {
                ApiError::with_message(Code::InvalidInput, e.to_string())
            }
            WebhookError::UnknownTill => {
                ApiError::with_message(Code::InvalidStoreOrTill, e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host_and_bounded() {
        assert_eq!(
            WebhookUrl::parse(" https://Example.com/hook?x=1 ").unwrap().as_str(),
            "https://example.com/hook?x=1"
        );
        assert!(WebhookUrl::parse("http://127.0.0.1:9/").is_ok());
        for bad in ["", "ftp://example.com/", "example.com", "http://", "https://u:p@example.com/"]
        {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(URL_LENGTH_MAX));
        let e = WebhookUrl::parse(&long).unwrap_err().to_string();
        assert!(e.starts_with("url: must be at most 2000"), "{e}");
    }

    #[test]
    fn filters_match_exact_prefix_and_all() {
        let f = EventFilter::parse(&["customer.*".into(), "transaction.added".into()]).unwrap();
        assert!(f.matches("customer.created") && f.matches("customer.status_changed"));
        assert!(f.matches("transaction.added") && !f.matches("transaction.updated"));
        assert!(!f.matches("customers.x") && !f.matches("points.awarded"));
        assert!(EventFilter::parse(&["*".into()]).unwrap().matches("anything.at_all"));
        for bad in ["", "Customer.created", "customer.", ".x", "customer*", "a..b", "*.x"] {
            assert!(EventFilter::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(EventFilter::parse(&[]).is_err());
        let f = EventFilter::parse(&["a.b".into(), "a.b".into()]).unwrap();
        assert_eq!(f.patterns(), ["a.b"]);
        assert_eq!(EventFilter::from_stored(&f.to_stored()), f);
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_and_a_cap() {
        assert_eq!(retry_delay_ms(1, 0.0), 5_000);
        assert_eq!(retry_delay_ms(1, 1.0), 10_000);
        assert_eq!(retry_delay_ms(3, 1.0), 40_000);
        assert_eq!(retry_delay_ms(30, 1.0), RETRY_CAP_MS);
        assert!(retry_delay_ms(12, 0.5) <= RETRY_CAP_MS);
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Checked against an independent implementation (Python's hmac module).
        let sig = signature("key", 1, b"{}");
        assert_eq!(sig, "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224");
        assert_ne!(sig, signature("key2", 1, b"{}"));
        assert_ne!(sig, signature("key", 2, b"{}"));
        assert!(new_secret().starts_with("whsec_") && new_secret().len() == 70);
        assert_ne!(new_secret(), new_secret());
    }
}
