//! Channel providers behind one small trait: `log` (the default for every channel: records the
//! message as sent, delivers nothing), SMTP e-mail (`lettre`), and a generic HTTP API for SMS,
//! WhatsApp and Zalo (`reqwest`), all chosen by `[comms]` settings.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::model::Channel;
use super::template;
use crate::config::{CommsSettings, EmailSettings, HttpChannelSettings, ProviderKind};

/// A boxed future, so that [`Provider`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Longest provider answer kept in the message log, in characters.
pub const RESPONSE_KEPT_MAX: usize = 1_000;
/// Most bytes of an HTTP provider's answer read.
const RESPONSE_READ_MAX: usize = 8 * 1024;

/// A message on its way out, as rendered and stored.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub id: i64,
    pub channel: Channel,
    pub to: String,
    pub sender: Option<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: Option<String>,
    pub body: String,
}

/// A provider's acknowledgement (kept in the message log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub response: String,
}

/// Why a delivery failed; `permanent` failures are not retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub permanent: bool,
    pub message: String,
}

impl DeliveryError {
    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError { permanent: true, message: message.into() }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError { permanent: false, message: message.into() }
    }
}

/// One way of delivering messages of a channel.
pub trait Provider: Send + Sync {
    /// The name recorded on each message it handles (`log`, `smtp`, `http`).
    fn name(&self) -> &'static str;

    fn deliver<'a>(
        &'a self,
        message: &'a Outgoing,
    ) -> BoxFuture<'a, Result<Delivered, DeliveryError>>;
}

/// A settings value the providers cannot work with.
#[derive(Debug, thiserror::Error)]
#[error("comms.{channel}: {reason}")]
pub struct ProviderConfigError {
    pub channel: &'static str,
    pub reason: String,
}

/// The provider of each channel, built once from the settings.
#[derive(Clone)]
pub struct Providers {
    email: Arc<dyn Provider>,
    sms: Arc<dyn Provider>,
    whatsapp: Arc<dyn Provider>,
    zalo: Arc<dyn Provider>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("email", &self.email.name())
            .field("sms", &self.sms.name())
            .field("whatsapp", &self.whatsapp.name())
            .field("zalo", &self.zalo.name())
            .finish()
    }
}

impl Providers {
    /// Builds each channel's provider; a channel configured with a provider it cannot use
    /// (SMTP for SMS, HTTP for e-mail) or with unusable settings is refused.
    pub fn from_settings(settings: &CommsSettings) -> Result<Providers, ProviderConfigError> {
        let email: Arc<dyn Provider> = match settings.email.provider {
            ProviderKind::Log => Arc::new(LogProvider),
            ProviderKind::Smtp => Arc::new(SmtpProvider::new(&settings.email)?),
            ProviderKind::Http => {
                return Err(ProviderConfigError {
                    channel: "email",
                    reason: "provider must be \"log\" or \"smtp\"".into(),
                });
            }
        };
        let http =
            |channel: &'static str, s: &HttpChannelSettings| -> Result<Arc<dyn Provider>, _> {
                match s.provider {
                    ProviderKind::Log => Ok(Arc::new(LogProvider) as Arc<dyn Provider>),
                    ProviderKind::Http => Ok(Arc::new(HttpProvider::new(channel, s)?)),
                    ProviderKind::Smtp => Err(ProviderConfigError {
                        channel,
                        reason: "provider must be \"log\" or \"http\"".into(),
                    }),
                }
            };
        Ok(Providers {
            email,
            sms: http("sms", &settings.sms)?,
            whatsapp: http("whatsapp", &settings.whatsapp)?,
            zalo: http("zalo", &settings.zalo)?,
        })
    }

    /// Record-only providers on every channel.
    pub fn log_only() -> Providers {
        Providers {
            email: Arc::new(LogProvider),
            sms: Arc::new(LogProvider),
            whatsapp: Arc::new(LogProvider),
            zalo: Arc::new(LogProvider),
        }
    }

    pub fn for_channel(&self, channel: Channel) -> &dyn Provider {
        match channel {
            Channel::Email => self.email.as_ref(),
            Channel::Sms => self.sms.as_ref(),
            Channel::Whatsapp => self.whatsapp.as_ref(),
            Channel::Zalo => self.zalo.as_ref(),
        }
    }
}

/// The text kept of a provider answer: trimmed and cut to [`RESPONSE_KEPT_MAX`] characters.
pub fn keep(text: &str) -> String {
    text.trim().chars().take(RESPONSE_KEPT_MAX).collect()
}

// ---------------------------------------------------------------- log

/// Records only: every message is "sent" to the log (and the tracing output, without its body).
pub struct LogProvider;

impl Provider for LogProvider {
    fn name(&self) -> &'static str {
        "log"
    }

    fn deliver<'a>(
        &'a self,
        message: &'a Outgoing,
    ) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            tracing::info!(
                message_id = message.id,
                channel = message.channel.as_str(),
                "message recorded by the log provider (not delivered)"
            );
            Ok(Delivered { response: "recorded by the log provider; not delivered".into() })
        })
    }
}

// ---------------------------------------------------------------- SMTP

/// E-mail through an SMTP relay.
pub struct SmtpProvider {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpProvider {
    pub fn new(s: &EmailSettings) -> Result<SmtpProvider, ProviderConfigError> {
        let invalid = |reason: String| ProviderConfigError { channel: "email", reason };
        let host = s.smtp_host.trim();
        if host.is_empty() {
            return Err(invalid("smtp_host is required".into()));
        }
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| invalid(format!("from '{}' is not an address: {e}", s.from)))?;
        let builder = if s.implicit_tls {
            AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| invalid(format!("TLS set-up failed: {e}")))?
        } else if s.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| invalid(format!("TLS set-up failed: {e}")))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        };
        let mut builder = builder
            .port(s.smtp_port)
            .timeout(Some(Duration::from_millis(s.timeout_ms.max(1))))
            .hello_name(ClientId::Domain(from.email.domain().to_string()));
        if let Some(user) = s.username.as_deref().filter(|u| !u.is_empty()) {
            let password = s.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.to_string(), password));
        }
        Ok(SmtpProvider { transport: builder.build(), from })
    }

    fn message(&self, m: &Outgoing) -> Result<Message, DeliveryError> {
        let address = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| DeliveryError::permanent(format!("bad address '{a}': {e}")))
        };
        let from = match m.sender.as_deref() {
            Some(sender) => address(sender)?,
            None => self.from.clone(),
        };
        let mut builder = Message::builder()
            .from(from.clone())
            .to(address(&m.to)?)
            .subject(m.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<perks-{}@{}>", m.id, self.from.email.domain())));
        if from != self.from {
            builder = builder.sender(self.from.clone());
        }
        for cc in &m.cc {
            builder = builder.cc(address(cc)?);
        }
        for bcc in &m.bcc {
            builder = builder.bcc(address(bcc)?);
        }
        let content_type =
            if looks_like_html(&m.body) { ContentType::TEXT_HTML } else { ContentType::TEXT_PLAIN };
        builder
            .header(content_type)
            .body(m.body.clone())
            .map_err(|e| DeliveryError::permanent(format!("cannot build the e-mail: {e}")))
    }
}

/// True when the body contains an HTML tag: it is then sent as `text/html`.
pub fn looks_like_html(body: &str) -> bool {
    let bytes = body.as_bytes();
    bytes
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/' || w[1] == b'!'))
        && body.contains('>')
}

impl Provider for SmtpProvider {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn deliver<'a>(
        &'a self,
        message: &'a Outgoing,
    ) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let email = self.message(message)?;
            match self.transport.send(email).await {
                Ok(response) => {
                    let text = response.message().collect::<Vec<_>>().join(" ");
                    Ok(Delivered { response: keep(&format!("{} {text}", response.code())) })
                }
                Err(e) if e.is_permanent() => Err(DeliveryError::permanent(keep(&e.to_string()))),
                Err(e) => Err(DeliveryError::transient(keep(&e.to_string()))),
            }
        })
    }
}

// ---------------------------------------------------------------- HTTP

/// The placeholders an HTTP provider's `url` and `body` may use.
pub const HTTP_PLACEHOLDERS: [&str; 5] = ["to", "body", "subject", "sender", "message_id"];

/// SMS, WhatsApp or Zalo through a provider's HTTP API: one request per message.
pub struct HttpProvider {
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
    auth: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    content_type: String,
    body: String,
    sender: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Raw,
}

impl HttpProvider {
    pub fn new(
        channel: &'static str,
        s: &HttpChannelSettings,
    ) -> Result<HttpProvider, ProviderConfigError> {
        let invalid = |reason: String| ProviderConfigError { channel, reason };
        let url = s.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("url must start with http:// or https://".into()));
        }
        let method = match s.method.trim().to_ascii_uppercase().as_str() {
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "GET" => reqwest::Method::GET,
            other => {
                return Err(invalid(format!("method '{other}' must be POST, PUT, PATCH or GET")));
            }
        };
        for (field, text) in [("url", url), ("body", s.body.as_str())] {
            if let Some(unknown) = template::placeholders(text)
                .into_iter()
                .find(|p| !HTTP_PLACEHOLDERS.contains(&p.as_str()))
            {
                return Err(invalid(format!(
                    "{field} uses {{{unknown}}}; known placeholders are {}",
                    HTTP_PLACEHOLDERS.join(", ")
                )));
            }
        }
        let auth = match (s.auth_header.trim(), s.auth_value.as_ref()) {
            ("", _) => None,
            (name, value) => {
                let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid(format!("auth_header '{name}' is not a header name")))?;
                let mut value = reqwest::header::HeaderValue::from_str(
                    value.map(|v| v.expose()).unwrap_or_default(),
                )
                .map_err(|_| invalid("auth_value is not a valid header value".into()))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(s.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("HTTP client set-up failed: {e}")))?;
        Ok(HttpProvider {
            client,
            method,
            url: url.to_string(),
            auth,
            content_type: s.content_type.trim().to_string(),
            body: s.body.clone(),
            sender: s.sender.clone(),
        })
    }

    fn body_kind(&self) -> BodyKind {
        let mime =
            self.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if mime == "application/json" || mime.ends_with("+json") {
            BodyKind::Json
        } else if mime == "application/x-www-form-urlencoded" {
            BodyKind::Form
        } else {
            BodyKind::Raw
        }
    }

    fn value(&self, m: &Outgoing, name: &str) -> Option<String> {
        Some(match name {
            "to" => m.to.clone(),
            "body" => m.body.clone(),
            "subject" => m.subject.clone().unwrap_or_default(),
            "sender" => m.sender.clone().unwrap_or_else(|| self.sender.clone()),
            "message_id" => m.id.to_string(),
            _ => return None,
        })
    }

    fn request(&self, m: &Outgoing) -> Result<reqwest::RequestBuilder, DeliveryError> {
        let missing = |names: Vec<String>| {
            DeliveryError::permanent(format!("unknown placeholder(s) {}", names.join(", ")))
        };
        let url = template::render_escaped(&self.url, |n| self.value(m, n), percent_encode)
            .map_err(missing)?;
        let mut request = self.client.request(self.method.clone(), &url);
        if let Some((name, value)) = &self.auth {
            request = request.header(name.clone(), value.clone());
        }
        if self.method != reqwest::Method::GET {
            let body = match self.body_kind() {
                BodyKind::Json => {
                    template::render_escaped(&self.body, |n| self.value(m, n), json_escape)
                }
                BodyKind::Form => {
                    template::render_escaped(&self.body, |n| self.value(m, n), percent_encode)
                }
                BodyKind::Raw => template::render(&self.body, |n| self.value(m, n)),
            }
            .map_err(missing)?;
            request =
                request.header(reqwest::header::CONTENT_TYPE, self.content_type.clone()).body(body);
        }
        Ok(request)
    }
}

/// A value inside a JSON string: escaped as JSON, without the quotes.
pub fn json_escape(value: &str) -> String {
    let quoted = serde_json::Value::String(value.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// A value inside a URL or a form body: every byte but the unreserved ones percent-encoded.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads at most [`RESPONSE_READ_MAX`] bytes of an answer.
async fn read_some(mut response: reqwest::Response) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < RESPONSE_READ_MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(RESPONSE_READ_MAX);
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Provider for HttpProvider {
    fn name(&self) -> &'static str {
        "http"
    }

    fn deliver<'a>(
        &'a self,
        message: &'a Outgoing,
    ) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let request = self.request(message)?;
            let response = request
                .send()
                .await
                .map_err(|e| DeliveryError::transient(keep(&format!("request failed: {e}"))))?;
            let status = response.status();
            let text = read_some(response).await;
            let summary = keep(&format!("HTTP {} {}", status.as_u16(), text.trim()));
            if status.is_success() {
                Ok(Delivered { response: summary })
            } else if status.is_client_error()
                && status != reqwest::StatusCode::REQUEST_TIMEOUT
                && status != reqwest::StatusCode::TOO_MANY_REQUESTS
            {
                Err(DeliveryError::permanent(summary))
            } else {
                Err(DeliveryError::transient(summary))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_per_context() {
        assert_eq!(json_escape("a\"b\n"), "a\\\"b\\n");
        assert_eq!(percent_encode("a b&c=é"), "a%20b%26c%3D%C3%A9");
    }

    #[test]
    fn html_is_recognised() {
        assert!(looks_like_html("<p>Hi</p>"));
        assert!(!looks_like_html("1 < 2 and 3 > 2"));
        assert!(!looks_like_html("plain"));
    }

    #[test]
    fn channels_refuse_providers_they_cannot_use() {
        let mut settings = CommsSettings::default();
        assert!(Providers::from_settings(&settings).is_ok());
        settings.sms.provider = ProviderKind::Smtp;
        assert!(Providers::from_settings(&settings).is_err());
        settings.sms.provider = ProviderKind::Http;
        settings.sms.url = "ftp://x".into();
        assert!(Providers::from_settings(&settings).is_err());
        settings.sms.url = "http://127.0.0.1:1/send?to={to}".into();
        assert!(Providers::from_settings(&settings).is_ok());
        settings.sms.body = "{\"t\": \"{secret}\"}".into();
        let e = Providers::from_settings(&settings).unwrap_err();
        assert!(e.to_string().contains("secret"), "{e}");
        settings.sms.body = String::new();
        settings.email.provider = ProviderKind::Http;
        assert!(Providers::from_settings(&settings).is_err());
    }
}
