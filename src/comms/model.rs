//! Communication types: channels, ids, statuses, the [`SendRequest`] every caller fills in,
//! the limits, address checks, and [`CommsError`].

use serde_json::{Map, Value};

use crate::audit::AuditActor;
use crate::customers::model::{CustomerId, normalise_email, normalise_mobile};
use crate::customers::subscriptions::{Channel as SubscriptionChannel, Priority};
use crate::error::{ApiError, Code};

/// A message id (the `messageId` of the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub i64);

/// A template id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemplateId(pub i64);

/// Longest SMS body once rendered (ten concatenated 160-character segments).
pub const SMS_BODY_MAX: usize = 1_600;
/// Longest WhatsApp body once rendered (the WhatsApp text limit).
pub const WHATSAPP_BODY_MAX: usize = 4_096;
/// Longest Zalo body once rendered.
pub const ZALO_BODY_MAX: usize = 2_000;
/// Longest e-mail body once rendered, in bytes.
pub const EMAIL_BODY_MAX_BYTES: usize = 256 * 1024;
/// Longest e-mail subject, in characters.
pub const SUBJECT_MAX: usize = 255;
/// Most `cc` and most `bcc` addresses of one e-mail.
pub const COPIES_MAX: usize = 20;
/// Longest sender (SMS sender id or `from` address), in characters.
pub const SENDER_MAX: usize = 100;
/// Most placeholder values of one send, and the longest value, in characters.
pub const VALUES_MAX: usize = 100;
pub const VALUE_LENGTH_MAX: usize = 2_000;
/// Longest template name and purpose tag.
pub const TEMPLATE_NAME_MAX: usize = 100;
pub const PURPOSE_MAX: usize = 40;
/// Most templates one org may hold (and one list returns).
pub const TEMPLATES_MAX: i64 = 1_000;
/// How far ahead a send may be scheduled.
pub const SCHEDULE_AHEAD_MAX_MILLIS: i64 = 366 * 24 * 3_600 * 1_000;
/// Tries per message: the first attempt plus at most three retries.
pub const ATTEMPTS_MAX: i64 = 4;

/// A channel messages go out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Email,
    Whatsapp,
    Zalo,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Whatsapp, Channel::Zalo];

    /// The stored and wire name: `SMS`, `EMAIL`, `WHATSAPP`, `ZALO`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "SMS",
            Channel::Email => "EMAIL",
            Channel::Whatsapp => "WHATSAPP",
            Channel::Zalo => "ZALO",
        }
    }

    /// The lower-case name used in query strings and v2 body keys (`sms`, `email`, …).
    pub fn key(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Whatsapp => "whatsapp",
            Channel::Zalo => "zalo",
        }
    }

    /// Accepts the names in any case; anything else is [`CommsError::UnknownChannel`].
    pub fn parse(value: &str) -> Result<Channel, CommsError> {
        let trimmed = value.trim();
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(trimmed))
            .ok_or_else(|| CommsError::UnknownChannel(value.to_string()))
    }

    /// The subscription channel whose opt-out stops this channel: e-mail follows `EMAIL`; SMS,
    /// WhatsApp and Zalo, which all address the mobile number, follow `MOBILE` (SMS).
    pub fn subscription(self) -> SubscriptionChannel {
        match self {
            Channel::Email => SubscriptionChannel::Email,
            Channel::Sms | Channel::Whatsapp | Channel::Zalo => SubscriptionChannel::Sms,
        }
    }

    /// Longest rendered body, in characters (bytes for e-mail).
    pub fn body_max(self) -> usize {
        match self {
            Channel::Sms => SMS_BODY_MAX,
            Channel::Email => EMAIL_BODY_MAX_BYTES,
            Channel::Whatsapp => WHATSAPP_BODY_MAX,
            Channel::Zalo => ZALO_BODY_MAX,
        }
    }

    /// The rendered body's size as the limit counts it.
    pub fn body_size(self, body: &str) -> usize {
        match self {
            Channel::Email => body.len(),
            _ => body.chars().count(),
        }
    }

    /// Checks and normalises an address of this channel: an e-mail address for e-mail, a
    /// mobile number (digits with country code) for the others.
    pub fn normalise_address(self, raw: &str) -> Result<String, CommsError> {
        let invalid = || CommsError::InvalidAddress { channel: self, address: raw.to_string() };
        match self {
            Channel::Email => normalise_email(raw).map_err(|_| invalid()),
            _ => normalise_mobile(raw, None).map_err(|_| invalid()),
        }
    }
}

/// Where a message's life stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Waiting for the delivery worker.
    Queued,
    /// Waiting for its `scheduled_at`.
    Scheduled,
    /// Handed to the channel's provider (for `log`, recorded only).
    Sent,
    /// Refused by the provider, or still failing after its last attempt.
    Failed,
    /// Not sent: the customer opted out of the channel.
    SkippedOptedOut,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "QUEUED",
            MessageStatus::Scheduled => "SCHEDULED",
            MessageStatus::Sent => "SENT",
            MessageStatus::Failed => "FAILED",
            MessageStatus::SkippedOptedOut => "SKIPPED_OPTED_OUT",
        }
    }

    pub fn parse(value: &str) -> Option<MessageStatus> {
        [
            MessageStatus::Queued,
            MessageStatus::Scheduled,
            MessageStatus::Sent,
            MessageStatus::Failed,
            MessageStatus::SkippedOptedOut,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    /// Still waiting to be sent.
    pub fn is_pending(self) -> bool {
        matches!(self, MessageStatus::Queued | MessageStatus::Scheduled)
    }
}

/// Who a message goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A customer of the org: the message goes to its mobile number (SMS, WhatsApp, Zalo) or
    /// e-mail address, and its name fills `{name}`, `{first_name}`, `{last_name}`.
    Customer(CustomerId),
    /// An address: a mobile number or an e-mail address. When it is a customer's identifier,
    /// the message is linked to that customer (its interactions and opt-outs apply).
    Address(String),
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateRef {
    /// The text itself, with `{placeholder}`s. `subject` is for e-mail (required there).
    Inline { subject: Option<String>, body: String },
    /// One of the org's templates, by name.
    Named(String),
    /// One of the org's templates, by id.
    Id(TemplateId),
}

/// One message to send: fill it with [`SendRequest::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct SendRequest {
    pub channel: Channel,
    pub to: Recipient,
    pub template: TemplateRef,
    /// Placeholder values (`{"points": 120}` fills `{points}`). Values given here win over
    /// the customer's own (`name`, `first_name`, `last_name`, `mobile`, `email`).
    pub values: Map<String, Value>,
    /// Send at this instant (UTC millis) rather than now; past instants mean now.
    pub scheduled_at: Option<i64>,
    /// What the message is for, e.g. `OTP`, `POINTS_VALIDATION`, `TASK_REMINDER` (upper-case
    /// letters, digits and `_`). `OTP` bodies are masked when interactions are read.
    pub purpose: String,
    /// `TRANS` (transactional, the default) or `BULK` (promotional): opt-outs are per priority.
    pub priority: Priority,
    /// SMS sender id or e-mail `From` address; the channel's configured one when `None`.
    pub sender: Option<String>,
    /// E-mail copies.
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// Who asked: recorded on the message and in its audit record.
    pub requested_by: AuditActor,
}

impl SendRequest {
    /// A transactional message sent now, with no values, for purpose `GENERAL`.
    pub fn new(
        channel: Channel,
        to: Recipient,
        template: TemplateRef,
        requested_by: AuditActor,
    ) -> SendRequest {
        SendRequest {
            channel,
            to,
            template,
            values: Map::new(),
            scheduled_at: None,
            purpose: "GENERAL".into(),
            priority: Priority::Trans,
            sender: None,
            cc: Vec::new(),
            bcc: Vec::new(),
            requested_by,
        }
    }

    /// The same request with one more placeholder value.
    pub fn value(mut self, name: &str, value: impl Into<Value>) -> SendRequest {
        self.values.insert(name.to_string(), value.into());
        self
    }
}

/// What [`crate::comms::service::send`] recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub id: MessageId,
    pub status: MessageStatus,
    /// The normalised address the message goes to.
    pub recipient: String,
    pub customer: Option<CustomerId>,
}

/// Why a send, resend or template change was refused; each maps to a documented code.
#[derive(Debug, thiserror::Error)]
pub enum CommsError {
    #[error("Unknown channel '{0}': use sms, email, whatsapp or zalo")]
    UnknownChannel(String),
    #[error("Invalid {} address '{address}'", channel.key())]
    InvalidAddress { channel: Channel, address: String },
    #[error("{reason}")]
    InvalidMessage { channel: Channel, reason: String },
    #[error("The customer has no {} address", if *.0 == Channel::Email { "e-mail" } else { "mobile" })]
    NoAddress(Channel),
    #[error("Template '{0}' not found")]
    TemplateNotFound(String),
    #[error("Template '{name}' is a {} template, not {}", template.key(), wanted.key())]
    TemplateChannel { name: String, template: Channel, wanted: Channel },
    #[error("No value for placeholder(s): {}", .0.join(", "))]
    MissingValues(Vec<String>),
    #[error("A template named '{0}' already exists")]
    TemplateNameTaken(String),
    #[error("The org already holds {0} templates")]
    TooManyTemplates(i64),
    #[error("Message {0} not found")]
    MessageNotFound(i64),
    #[error("Message {0} is still waiting to be sent")]
    MessagePending(i64),
    #[error("Customer not found")]
    CustomerNotFound,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl CommsError {
    /// The documented code of this refusal.
    pub fn code(&self) -> Code {
        let for_channel = |c: &Channel| {
            if *c == Channel::Email { Code::EmailNotSent } else { Code::MessageNotSent }
        };
        match self {
            CommsError::UnknownChannel(_) | CommsError::TemplateChannel { .. } => {
                Code::InvalidTemplateType
            }
            CommsError::InvalidAddress { channel: Channel::Email, .. } => Code::InvalidEmailId,
            CommsError::InvalidAddress { .. } => Code::MessageNotSent,
            CommsError::InvalidMessage { channel, .. } | CommsError::NoAddress(channel) => {
                for_channel(channel)
            }
            CommsError::TemplateNotFound(_) => Code::TemplateNotFound,
            CommsError::TemplateNameTaken(_) | CommsError::TooManyTemplates(_) => {
                Code::TemplateUpdateFailed
            }
            CommsError::MessageNotFound(_) => Code::MessageNotFound,
            CommsError::CustomerNotFound => Code::CustomerNotFound,
            CommsError::MissingValues(_)
            | CommsError::MessagePending(_)
            | CommsError::Invalid(_) => Code::InvalidInput,
            CommsError::Db(_) => Code::Internal,
        }
    }
}

impl From<CommsError> for ApiError {
    fn from(e: CommsError) -> Self {
        match e {
            CommsError::Db(db) => ApiError::from(db),
            other => ApiError::with_message(other.code(), other.to_string()),
        }
    }
}

/// Checks a purpose tag: 1 to 40 of `A-Z`, `0-9`, `_` (lower case is raised).
pub fn parse_purpose(raw: &str) -> Result<String, CommsError> {
    let purpose = raw.trim().to_ascii_uppercase();
    let ok = !purpose.is_empty()
        && purpose.len() <= PURPOSE_MAX
        && purpose.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(purpose)
    } else {
        Err(CommsError::Invalid(format!("purpose must be 1 to {PURPOSE_MAX} letters, digits or _")))
    }
}

/// Checks a template name: 1 to 100 of letters, digits, `_`, `-`, `.`.
pub fn parse_template_name(raw: &str) -> Result<String, CommsError> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= TEMPLATE_NAME_MAX
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(CommsError::Invalid(format!(
            "name must be 1 to {TEMPLATE_NAME_MAX} letters, digits, '_', '-' or '.'"
        )))
    }
}

/// Checks a sender: at most 100 characters without control characters; an e-mail `From` must
/// be an e-mail address.
pub fn parse_sender(channel: Channel, raw: &str) -> Result<String, CommsError> {
    let sender = raw.trim();
    if channel == Channel::Email {
        return normalise_email(sender)
            .map_err(|_| CommsError::InvalidAddress { channel, address: raw.to_string() });
    }
    if sender.chars().count() > SENDER_MAX || sender.chars().any(char::is_control) {
        return Err(CommsError::InvalidMessage {
            channel,
            reason: format!("sender must be at most {SENDER_MAX} characters"),
        });
    }
    Ok(sender.to_string())
}

/// The text of a placeholder value (strings as they are, `null` empty, others as JSON).
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Checks placeholder values: at most 100, names like placeholders, texts of at most 2000.
pub fn check_values(values: &Map<String, Value>) -> Result<(), CommsError> {
    if values.len() > VALUES_MAX {
        return Err(CommsError::Invalid(format!("at most {VALUES_MAX} placeholder values")));
    }
    for (name, value) in values {
        if !super::template::is_placeholder_name(name) {
            return Err(CommsError::Invalid(format!("'{name}' is not a placeholder name")));
        }
        if value_text(value).chars().count() > VALUE_LENGTH_MAX {
            return Err(CommsError::Invalid(format!(
                "value of '{name}' is longer than {VALUE_LENGTH_MAX} characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_parse_in_any_case_and_nothing_else() {
        assert_eq!(Channel::parse("sms").unwrap(), Channel::Sms);
        assert_eq!(Channel::parse(" WhatsApp ").unwrap(), Channel::Whatsapp);
        assert_eq!(Channel::parse("ZALO").unwrap(), Channel::Zalo);
        assert!(matches!(Channel::parse("fax"), Err(CommsError::UnknownChannel(_))));
        assert_eq!(Channel::parse("fax").unwrap_err().code(), Code::InvalidTemplateType);
    }

    #[test]
    fn addresses_are_normalised_per_channel() {
        assert_eq!(Channel::Email.normalise_address(" A@B.com ").unwrap(), "a@b.com");
        assert_eq!(Channel::Sms.normalise_address("+91 98450-12345").unwrap(), "919845012345");
        assert_eq!(
            Channel::Email.normalise_address("nope").unwrap_err().code(),
            Code::InvalidEmailId
        );
        assert_eq!(Channel::Zalo.normalise_address("x").unwrap_err().code(), Code::MessageNotSent);
    }

    #[test]
    fn names_and_purposes_are_checked() {
        assert_eq!(parse_purpose("otp").unwrap(), "OTP");
        assert!(parse_purpose("a b").is_err());
        assert!(parse_template_name("points.earned-v2").is_ok());
        assert!(parse_template_name("has space").is_err());
        assert!(parse_template_name(&"x".repeat(101)).is_err());
    }
}
