//! Communication rules: sending (validate, render, check opt-outs, record), resending, the
//! org's templates, the customer's message log, and the delivery of due messages.

use serde_json::{Map, Value, json};

use super::model::{
    ATTEMPTS_MAX, COPIES_MAX, Channel, CommsError, MessageId, MessageStatus, Recipient,
    SCHEDULE_AHEAD_MAX_MILLIS, SUBJECT_MAX, SendRequest, Sent, TEMPLATES_MAX, TemplateId,
    TemplateRef, check_values, parse_purpose, parse_sender, parse_template_name, value_text,
};
use super::provider::{DeliveryError, Outgoing, Providers, keep};
use super::store::{
    self, MessageFilter, MessageRow, NewMessage, Outcome, TemplateFields, TemplateRow,
};
use super::template::render;
use crate::audit::{self, AuditActor, Change};
use crate::customers::model::{CustomerId, Identifier, IdentifierType};
use crate::customers::store as customer_store;
use crate::customers::subscriptions::{self, Priority};
use crate::db::{Connection, Db, DbError, now_millis};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

/// The audit and event entity of a message, and of a template.
pub const MESSAGE_ENTITY: &str = "MESSAGE";
pub const TEMPLATE_ENTITY: &str = "MESSAGE_TEMPLATE";

// ---------------------------------------------------------------- sending

/// Records one message for delivery, in the caller's transaction (so it is queued if and only
/// if the caller's own change commits). Nothing is written when it fails.
///
/// The message is checked (channel, address, template, placeholder values, sizes), rendered,
/// linked to the customer it goes to (a [`Recipient::Address`] that is a customer's identifier
/// counts), and stored as `SKIPPED_OPTED_OUT` when that customer opted out of the channel at
/// the request's priority, `SCHEDULED` when `scheduled_at` is in the future, else `QUEUED`. The
/// delivery worker (`jobs::comms`) sends it. An audit record (without the body) and a
/// `message.<status>` domain event are written with it.
#[tracing::instrument(skip_all, fields(org = org.0, channel = request.channel.as_str()))]
pub async fn send(
    c: &mut impl Connection,
    org: OrgId,
    request: SendRequest,
) -> Result<Sent, CommsError> {
    let now = now_millis();
    let channel = request.channel;
    check_values(&request.values)?;
    let purpose = parse_purpose(&request.purpose)?;
    let sender = request
        .sender
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_sender(channel, s))
        .transpose()?;
    let cc = copies(channel, "cc", &request.cc)?;
    let bcc = copies(channel, "bcc", &request.bcc)?;
    if let Some(at) = request.scheduled_at
        && at > now + SCHEDULE_AHEAD_MAX_MILLIS
    {
        return Err(CommsError::Invalid("scheduledTime must be within a year from now".into()));
    }
    let template = resolve_template(c, org, channel, &request.template).await?;
    let (customer, recipient) = match &request.to {
        Recipient::Customer(id) => (Some(*id), customer_address(c, org, *id, channel).await?),
        Recipient::Address(raw) => {
            let address = channel.normalise_address(raw)?;
            (owner_of(c, org, channel, &address).await?, address)
        }
    };
    let mut values = match customer {
        Some(id) => customer_values(c, org, id).await?,
        None => Map::new(),
    };
    values.extend(request.values.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (subject, body) = render_message(channel, &template, &values)?;
    let opted_out = match customer {
        Some(id) => {
            subscriptions::is_opted_out(c, org, id, channel.subscription(), request.priority)
                .await?
        }
        None => false,
    };
    let scheduled_at = request.scheduled_at.filter(|at| *at > now);
    let status = if opted_out {
        MessageStatus::SkippedOptedOut
    } else if scheduled_at.is_some() {
        MessageStatus::Scheduled
    } else {
        MessageStatus::Queued
    };
    let actor = &request.requested_by;
    let (cc, bcc) = (cc.join(","), bcc.join(","));
    let new = NewMessage {
        customer: customer.map(|c| c.0),
        channel: channel.as_str(),
        recipient: &recipient,
        sender: sender.as_deref(),
        cc: &cc,
        bcc: &bcc,
        subject: subject.as_deref(),
        body: &body,
        template: template.id.map(|t| t.0),
        purpose: &purpose,
        priority: request.priority.as_str(),
        status: status.as_str(),
        provider_response: opted_out.then_some(OPTED_OUT_RESPONSE),
        scheduled_at,
        next_attempt_at: scheduled_at.unwrap_or(now),
        resent_from: None,
        request_id: actor.request_id.as_deref(),
        requested_by: (actor.principal_type, actor.principal_id),
    };
    let id = store::insert_message(c, org, &new, now).await?;
    record_send(c, org, actor, "SEND", id, &new).await?;
    Ok(Sent { id, status, recipient, customer })
}

/// Sends several messages in one transaction: all are recorded, or (on the first refusal)
/// none; the error names the failing item's index.
pub async fn send_all(
    db: &Db,
    org: OrgId,
    requests: Vec<SendRequest>,
) -> Result<Vec<Sent>, (usize, CommsError)> {
    let mut tx = db.begin_write().await.map_err(|e| (0, e.into()))?;
    let mut sent = Vec::with_capacity(requests.len());
    for (index, request) in requests.into_iter().enumerate() {
        sent.push(send(&mut tx, org, request).await.map_err(|e| (index, e))?);
    }
    tx.commit().await.map_err(|e| (0, e.into()))?;
    Ok(sent)
}

/// Queues a copy of an earlier message (same recipient and rendered text) as a new message;
/// the opt-out is checked again. A message still waiting to be sent cannot be resent.
#[tracing::instrument(skip_all, fields(org = org.0, message = message.0))]
pub async fn resend(
    c: &mut impl Connection,
    org: OrgId,
    message: MessageId,
    requested_by: &AuditActor,
) -> Result<Sent, CommsError> {
    let now = now_millis();
    let row =
        store::message(c, org, message).await?.ok_or(CommsError::MessageNotFound(message.0))?;
    if MessageStatus::parse(&row.status).is_none_or(MessageStatus::is_pending) {
        return Err(CommsError::MessagePending(message.0));
    }
    let channel = Channel::parse(&row.channel)?;
    let priority = Priority::parse(&row.priority).unwrap_or(Priority::Trans);
    let customer = row.customer_id.map(CustomerId);
    let opted_out = match customer {
        Some(id) => {
            subscriptions::is_opted_out(c, org, id, channel.subscription(), priority).await?
        }
        None => false,
    };
    let status = if opted_out { MessageStatus::SkippedOptedOut } else { MessageStatus::Queued };
    let new = NewMessage {
        customer: row.customer_id,
        channel: &row.channel,
        recipient: &row.recipient,
        sender: row.sender.as_deref(),
        cc: &row.cc,
        bcc: &row.bcc,
        subject: row.subject.as_deref(),
        body: &row.body,
        template: row.template_id,
        purpose: &row.purpose,
        priority: &row.priority,
        status: status.as_str(),
        provider_response: opted_out.then_some(OPTED_OUT_RESPONSE),
        scheduled_at: None,
        next_attempt_at: now,
        resent_from: Some(row.id),
        request_id: requested_by.request_id.as_deref(),
        requested_by: (requested_by.principal_type, requested_by.principal_id),
    };
    let id = store::insert_message(c, org, &new, now).await?;
    record_send(c, org, requested_by, "RESEND", id, &new).await?;
    Ok(Sent { id, status, recipient: row.recipient, customer })
}

const OPTED_OUT_RESPONSE: &str = "not sent: the customer opted out of the channel";

async fn record_send(
    c: &mut impl Connection,
    org: OrgId,
    actor: &AuditActor,
    action: &str,
    id: MessageId,
    m: &NewMessage<'_>,
) -> Result<(), DbError> {
    // The body stays out of the audit log and the event: it may carry a one-time code.
    let after = json!({"channel": m.channel, "to": m.recipient, "customerId": m.customer,
        "status": m.status, "purpose": m.purpose, "priority": m.priority,
        "templateId": m.template, "scheduledAt": m.scheduled_at, "resentFrom": m.resent_from});
    let change = Change {
        entity_type: MESSAGE_ENTITY,
        entity_id: id.0,
        action,
        before: None,
        after: Some(after.clone()),
    };
    audit::record(c, org, actor, change).await?;
    let event_type = format!("message.{}", m.status.to_ascii_lowercase());
    let event = NewEvent {
        event_type: &event_type,
        entity_type: MESSAGE_ENTITY,
        entity_id: id.0,
        payload: json!({"messageId": id.0, "message": after}),
    };
    events::store::insert(c, org, &event, actor.request_id.as_deref()).await?;
    Ok(())
}

/// Checks e-mail copies (none for other channels): at most [`COPIES_MAX`], each an address.
fn copies(channel: Channel, field: &str, list: &[String]) -> Result<Vec<String>, CommsError> {
    let list: Vec<&str> = list.iter().map(|a| a.trim()).filter(|a| !a.is_empty()).collect();
    if list.is_empty() {
        return Ok(Vec::new());
    }
    if channel != Channel::Email {
        return Err(CommsError::InvalidMessage {
            channel,
            reason: format!("{field} is only for e-mail"),
        });
    }
    if list.len() > COPIES_MAX {
        return Err(CommsError::InvalidMessage {
            channel,
            reason: format!("{field} takes at most {COPIES_MAX} addresses"),
        });
    }
    list.into_iter().map(|a| channel.normalise_address(a)).collect()
}

/// A message's template text, wherever it came from.
struct TemplateText {
    id: Option<TemplateId>,
    subject: Option<String>,
    body: String,
}

async fn resolve_template(
    c: &mut impl Connection,
    org: OrgId,
    channel: Channel,
    template: &TemplateRef,
) -> Result<TemplateText, CommsError> {
    let row = match template {
        TemplateRef::Inline { subject, body } => {
            return Ok(TemplateText { id: None, subject: subject.clone(), body: body.clone() });
        }
        TemplateRef::Named(name) => store::template_by_name(c, org, name.trim())
            .await?
            .ok_or_else(|| CommsError::TemplateNotFound(name.clone()))?,
        TemplateRef::Id(id) => store::template_by_id(c, org, *id)
            .await?
            .ok_or_else(|| CommsError::TemplateNotFound(id.0.to_string()))?,
    };
    let template_channel = Channel::parse(&row.channel)?;
    if template_channel != channel {
        return Err(CommsError::TemplateChannel {
            name: row.name,
            template: template_channel,
            wanted: channel,
        });
    }
    Ok(TemplateText { id: Some(TemplateId(row.id)), subject: row.subject, body: row.body })
}

/// Renders subject (e-mail only) and body, and checks what came out.
fn render_message(
    channel: Channel,
    template: &TemplateText,
    values: &Map<String, Value>,
) -> Result<(Option<String>, String), CommsError> {
    let lookup = |name: &str| values.get(name).map(value_text);
    let body = render(&template.body, lookup).map_err(CommsError::MissingValues)?;
    let subject = match channel {
        Channel::Email => {
            let subject = template.subject.as_deref().unwrap_or_default();
            Some(render(subject, lookup).map_err(CommsError::MissingValues)?)
        }
        _ => None,
    };
    check_content(channel, subject.as_deref(), &body)?;
    Ok((subject, body))
}

/// A body is required, within the channel's size and free of control characters (but line
/// breaks and tabs); an e-mail subject is required, one line of at most [`SUBJECT_MAX`].
pub fn check_content(
    channel: Channel,
    subject: Option<&str>,
    body: &str,
) -> Result<(), CommsError> {
    let invalid = |reason: String| CommsError::InvalidMessage { channel, reason };
    if body.trim().is_empty() {
        return Err(invalid("body is required".into()));
    }
    let max = channel.body_max();
    if channel.body_size(body) > max {
        let unit = if channel == Channel::Email { "bytes" } else { "characters" };
        return Err(invalid(format!("body is longer than {max} {unit}")));
    }
    if body.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid("body must not contain control characters".into()));
    }
    if channel == Channel::Email {
        let subject = subject.map(str::trim).unwrap_or_default();
        if subject.is_empty() {
            return Err(invalid("subject is required".into()));
        }
        if subject.chars().count() > SUBJECT_MAX || subject.chars().any(char::is_control) {
            return Err(invalid(format!(
                "subject must be one line of at most {SUBJECT_MAX} characters"
            )));
        }
    }
    Ok(())
}

fn address_kind(channel: Channel) -> IdentifierType {
    match channel {
        Channel::Email => IdentifierType::Email,
        Channel::Sms | Channel::Whatsapp | Channel::Zalo => IdentifierType::Mobile,
    }
}

/// The customer's address for the channel: its oldest mobile number or e-mail identifier.
async fn customer_address(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    channel: Channel,
) -> Result<String, CommsError> {
    if customer_store::get_customer(c, org, customer).await?.is_none() {
        return Err(CommsError::CustomerNotFound);
    }
    let kind = address_kind(channel).as_str();
    customer_store::identifiers(c, org, customer)
        .await?
        .into_iter()
        .find(|i| i.kind == kind)
        .map(|i| i.value)
        .ok_or(CommsError::NoAddress(channel))
}

/// The customer an address belongs to, if any.
async fn owner_of(
    c: &mut impl Connection,
    org: OrgId,
    channel: Channel,
    address: &str,
) -> Result<Option<CustomerId>, DbError> {
    let identifier = Identifier { kind: address_kind(channel), value: address.to_string() };
    customer_store::find_owner(c, org, None, &identifier).await
}

/// The customer's own placeholder values: `name`, `first_name`, `last_name`, `customer_id`,
/// `mobile` and `email` (when it has them).
async fn customer_values(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Map<String, Value>, CommsError> {
    let row = customer_store::get_customer(c, org, customer)
        .await?
        .ok_or(CommsError::CustomerNotFound)?;
    let mut values = Map::new();
    let full = format!("{} {}", row.first_name.trim(), row.last_name.trim()).trim().to_string();
    values.insert("name".into(), Value::String(full));
    values.insert("first_name".into(), Value::String(row.first_name));
    values.insert("last_name".into(), Value::String(row.last_name));
    values.insert("customer_id".into(), json!(customer.0));
    for identifier in customer_store::identifiers(c, org, customer).await? {
        for kind in [IdentifierType::Mobile, IdentifierType::Email] {
            if identifier.kind == kind.as_str() && !values.contains_key(kind.as_str()) {
                values.insert(kind.as_str().into(), Value::String(identifier.value.clone()));
            }
        }
    }
    Ok(values)
}

// ---------------------------------------------------------------- templates

/// A validated template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTemplate {
    pub name: String,
    pub channel: Channel,
    pub subject: Option<String>,
    pub body: String,
}

impl NewTemplate {
    /// Checks name, channel, subject (required for e-mail, dropped for the others) and body.
    pub fn parse(
        name: &str,
        channel: &str,
        subject: Option<&str>,
        body: &str,
    ) -> Result<NewTemplate, CommsError> {
        let name = parse_template_name(name)?;
        let channel = Channel::parse(channel)?;
        let subject = match channel {
            Channel::Email => Some(subject.unwrap_or_default().trim().to_string()),
            _ => None,
        };
        check_content(channel, subject.as_deref(), body)?;
        Ok(NewTemplate { name, channel, subject, body: body.to_string() })
    }

    fn fields(&self) -> TemplateFields<'_> {
        TemplateFields {
            name: &self.name,
            channel: self.channel.as_str(),
            subject: self.subject.as_deref(),
            body: &self.body,
        }
    }
}

fn template_json(t: &TemplateRow) -> Value {
    json!({"name": t.name, "channel": t.channel, "subject": t.subject, "body": t.body})
}

/// Adds a template; a name the org already uses is refused.
pub async fn create_template(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    template: &NewTemplate,
) -> Result<TemplateRow, CommsError> {
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    if store::count_templates(&mut tx, org).await? >= TEMPLATES_MAX {
        return Err(CommsError::TooManyTemplates(TEMPLATES_MAX));
    }
    let id = store::insert_template(&mut tx, org, &template.fields(), now)
        .await?
        .ok_or_else(|| CommsError::TemplateNameTaken(template.name.clone()))?;
    let row = store::template_by_id(&mut tx, org, id)
        .await?
        .ok_or_else(|| CommsError::TemplateNotFound(id.0.to_string()))?;
    let change = Change {
        entity_type: TEMPLATE_ENTITY,
        entity_id: id.0,
        action: "CREATE",
        before: None,
        after: Some(template_json(&row)),
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(row)
}

/// Replaces a template (name included; the new name must be free).
pub async fn update_template(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    id: TemplateId,
    template: &NewTemplate,
) -> Result<TemplateRow, CommsError> {
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    let before = store::template_by_id(&mut tx, org, id)
        .await?
        .ok_or_else(|| CommsError::TemplateNotFound(id.0.to_string()))?;
    if let Some(other) = store::template_by_name(&mut tx, org, &template.name).await?
        && other.id != id.0
    {
        return Err(CommsError::TemplateNameTaken(template.name.clone()));
    }
    match store::update_template(&mut tx, org, id, &template.fields(), now).await {
        Ok(_) => {}
        Err(e) if e.is_unique_violation() => {
            return Err(CommsError::TemplateNameTaken(template.name.clone()));
        }
        Err(e) => return Err(e.into()),
    }
    let row = store::template_by_id(&mut tx, org, id)
        .await?
        .ok_or_else(|| CommsError::TemplateNotFound(id.0.to_string()))?;
    let change = Change {
        entity_type: TEMPLATE_ENTITY,
        entity_id: id.0,
        action: "UPDATE",
        before: Some(template_json(&before)),
        after: Some(template_json(&row)),
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(row)
}

/// Deletes a template; messages sent with it keep their text.
pub async fn delete_template(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    id: TemplateId,
) -> Result<(), CommsError> {
    let mut tx = db.begin_write().await?;
    let before = store::template_by_id(&mut tx, org, id)
        .await?
        .ok_or_else(|| CommsError::TemplateNotFound(id.0.to_string()))?;
    store::delete_template(&mut tx, org, id).await?;
    let change = Change {
        entity_type: TEMPLATE_ENTITY,
        entity_id: id.0,
        action: "DELETE",
        before: Some(template_json(&before)),
        after: None,
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn templates(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<TemplateRow>, CommsError> {
    Ok(store::templates(c, org, TEMPLATES_MAX).await?)
}

pub async fn template(
    c: &mut impl Connection,
    org: OrgId,
    id: TemplateId,
) -> Result<TemplateRow, CommsError> {
    store::template_by_id(c, org, id)
        .await?
        .ok_or_else(|| CommsError::TemplateNotFound(id.0.to_string()))
}

// ---------------------------------------------------------------- reading the log

/// Most messages one page of a customer's log returns.
pub const MESSAGES_PAGE_MAX: i64 = 100;

/// One page of a customer's messages, newest first, and the number matching.
pub async fn customer_messages(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    filter: &MessageFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<MessageRow>, i64), DbError> {
    store::customer_messages(
        c,
        org,
        customer.0,
        filter,
        limit.clamp(1, MESSAGES_PAGE_MAX),
        offset.max(0),
    )
    .await
}

/// The message filter of a customer-interaction `type` (`None`: a type no message has).
/// `sms`, `whatsapp`, `zalo` pick their channel; `email` is transactional e-mail and
/// `emailbulk` promotional e-mail; no type means every message.
pub fn interaction_filter(kind: Option<&str>) -> Option<MessageFilter<'static>> {
    let (channels, priority): (&'static [&'static str], Option<&'static str>) = match kind {
        None => (&[], None),
        Some("sms") => (&["SMS"], None),
        Some("email") => (&["EMAIL"], Some("TRANS")),
        Some("emailbulk") => (&["EMAIL"], Some("BULK")),
        Some("whatsapp") => (&["WHATSAPP"], None),
        Some("zalo") => (&["ZALO"], None),
        Some(_) => return None,
    };
    Some(MessageFilter { channels, priority })
}

/// A message's interaction type: its channel in lower case, `emailbulk` for promotional e-mail.
pub fn interaction_type(m: &MessageRow) -> String {
    match (m.channel.as_str(), m.priority.as_str()) {
        ("EMAIL", "BULK") => "emailbulk".to_string(),
        (channel, _) => channel.to_ascii_lowercase(),
    }
}

/// A message's body as customer reads show it: the digits of a one-time code (purpose `OTP`)
/// are masked.
pub fn shown_body(m: &MessageRow) -> String {
    if m.purpose == "OTP" {
        m.body.chars().map(|c| if c.is_ascii_digit() { '*' } else { c }).collect()
    } else {
        m.body.clone()
    }
}

/// One message of the org.
pub async fn message(
    c: &mut impl Connection,
    org: OrgId,
    id: MessageId,
) -> Result<MessageRow, CommsError> {
    store::message(c, org, id).await?.ok_or(CommsError::MessageNotFound(id.0))
}

// ---------------------------------------------------------------- delivery

/// How long one claim lasts: a worker that has not recorded a message's outcome by then loses it
/// to the next run. A claimed batch is delivered one message after another, so the lease covers
/// a whole batch of attempts that all run into [`DELIVERY_TIMEOUT`].
pub const CLAIM_LEASE_MILLIS: i64 = 10 * 60 * 1_000;
/// Longest one delivery attempt may take, whatever the provider's own timeout.
pub const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Most messages one claim takes (so that the batch ends well within its lease).
pub const CLAIM_LIMIT_MAX: i64 = 25;
const _: () =
    assert!(CLAIM_LIMIT_MAX * (DELIVERY_TIMEOUT.as_secs() as i64) * 1_000 < CLAIM_LEASE_MILLIS);

/// The wait before retry number `attempts` (after that many failed attempts): 1, 5, 30 min.
pub fn retry_delay_millis(attempts: i64) -> i64 {
    match attempts {
        ..=1 => 60_000,
        2 => 5 * 60_000,
        _ => 30 * 60_000,
    }
}

/// What one delivery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub claimed: usize,
    pub sent: usize,
    pub failed: usize,
    /// Failed for now; tried again after a delay.
    pub retried: usize,
    pub skipped: usize,
    /// Claims that ran out before the outcome was recorded (another worker took over).
    pub lost: usize,
}

impl DeliveryReport {
    fn add(&mut self, other: DeliveryReport) {
        self.claimed += other.claimed;
        self.sent += other.sent;
        self.failed += other.failed;
        self.retried += other.retried;
        self.skipped += other.skipped;
        self.lost += other.lost;
    }
}

/// Claims up to `limit` (at most [`CLAIM_LIMIT_MAX`]) due messages of every org and delivers
/// them one by one; returns what happened. Instances may run this at once: a message is claimed by one of them only.
pub async fn deliver_due(
    db: &Db,
    providers: &Providers,
    now: i64,
    limit: i64,
) -> Result<DeliveryReport, DbError> {
    // A cheap read first: most runs find nothing due and need no write transaction.
    if !store::any_due(&mut db.read().await?, now).await? {
        return Ok(DeliveryReport::default());
    }
    let token = uuid::Uuid::new_v4().to_string();
    let mut tx = db.begin_write().await?;
    let limit = limit.clamp(1, CLAIM_LIMIT_MAX);
    let claimed = store::claim_due(&mut tx, &token, now, now + CLAIM_LEASE_MILLIS, limit).await?;
    tx.commit().await?;
    let mut report = DeliveryReport { claimed: claimed.len(), ..DeliveryReport::default() };
    for row in claimed {
        report.add(deliver_claimed(db, providers, &token, row, now).await?);
    }
    Ok(report)
}

async fn deliver_claimed(
    db: &Db,
    providers: &Providers,
    token: &str,
    row: MessageRow,
    now: i64,
) -> Result<DeliveryReport, DbError> {
    let org = OrgId(row.org_id);
    let mut report = DeliveryReport::default();
    let channel = Channel::parse(&row.channel).ok();
    let priority = Priority::parse(&row.priority).unwrap_or(Priority::Trans);
    let opted_out = match (row.customer_id, channel) {
        (Some(customer), Some(channel)) => {
            let mut conn = db.read().await?;
            subscriptions::is_opted_out(
                &mut conn,
                org,
                CustomerId(customer),
                channel.subscription(),
                priority,
            )
            .await?
        }
        _ => false,
    };
    let (status, provider, response, sent_at, next_attempt_at) = match channel {
        None => {
            (MessageStatus::Failed, "none", format!("unknown channel {}", row.channel), None, now)
        }
        Some(_) if opted_out => {
            (MessageStatus::SkippedOptedOut, "none", OPTED_OUT_RESPONSE.to_string(), None, now)
        }
        Some(channel) => {
            let provider = providers.for_channel(channel);
            let outgoing = Outgoing {
                id: row.id,
                channel,
                to: row.recipient.clone(),
                sender: row.sender.clone(),
                cc: split_list(&row.cc),
                bcc: split_list(&row.bcc),
                subject: row.subject.clone(),
                body: row.body.clone(),
            };
            let result = tokio::time::timeout(DELIVERY_TIMEOUT, provider.deliver(&outgoing))
                .await
                .unwrap_or_else(|_| Err(DeliveryError::transient("delivery timed out")));
            match result {
                Ok(delivered) => {
                    (MessageStatus::Sent, provider.name(), delivered.response, Some(now), now)
                }
                Err(e) if e.permanent || row.attempts >= ATTEMPTS_MAX => {
                    (MessageStatus::Failed, provider.name(), keep(&e.message), None, now)
                }
                Err(e) => {
                    let retry_at = now + retry_delay_millis(row.attempts);
                    (MessageStatus::Queued, provider.name(), keep(&e.message), None, retry_at)
                }
            }
        }
    };
    match status {
        MessageStatus::Sent => report.sent += 1,
        MessageStatus::Failed => report.failed += 1,
        MessageStatus::SkippedOptedOut => report.skipped += 1,
        MessageStatus::Queued | MessageStatus::Scheduled => report.retried += 1,
    }
    let outcome = Outcome {
        status: status.as_str(),
        provider,
        provider_response: &response,
        sent_at,
        next_attempt_at,
    };
    let mut tx = db.begin_write().await?;
    if !store::finish(&mut tx, org, MessageId(row.id), token, &outcome, now).await? {
        tracing::warn!(message = row.id, "message claim lost before its outcome was recorded");
        return Ok(DeliveryReport { lost: 1, ..DeliveryReport::default() });
    }
    if status != MessageStatus::Queued {
        let event_type = format!("message.{}", status.as_str().to_ascii_lowercase());
        let event = NewEvent {
            event_type: &event_type,
            entity_type: MESSAGE_ENTITY,
            entity_id: row.id,
            payload: json!({"messageId": row.id, "channel": row.channel, "to": row.recipient,
                "customerId": row.customer_id, "status": status.as_str(),
                "attempts": row.attempts, "provider": provider, "response": response}),
        };
        events::store::insert(&mut tx, org, &event, row.request_id.as_deref()).await?;
    }
    tx.commit().await?;
    if status == MessageStatus::Failed {
        tracing::warn!(message = row.id, attempts = row.attempts, response = %response, "message failed");
    }
    Ok(report)
}

fn split_list(stored: &str) -> Vec<String> {
    stored.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off() {
        assert_eq!(retry_delay_millis(1), 60_000);
        assert_eq!(retry_delay_millis(2), 300_000);
        assert_eq!(retry_delay_millis(3), 1_800_000);
    }

    #[test]
    fn content_is_checked_per_channel() {
        assert!(check_content(Channel::Sms, None, "hi").is_ok());
        assert!(check_content(Channel::Sms, None, " ").is_err());
        assert!(check_content(Channel::Sms, None, &"x".repeat(1_601)).is_err());
        assert!(check_content(Channel::Whatsapp, None, &"x".repeat(1_601)).is_ok());
        assert!(check_content(Channel::Email, None, "hi").is_err());
        assert!(check_content(Channel::Email, Some("a\nb"), "hi").is_err());
        assert!(check_content(Channel::Email, Some("Hello"), "hi").is_ok());
        assert!(check_content(Channel::Sms, None, "a\u{0}b").is_err());
    }

    #[test]
    fn templates_are_validated() {
        assert!(NewTemplate::parse("welcome", "sms", None, "Hi {name}").is_ok());
        assert!(NewTemplate::parse("welcome", "email", None, "Hi").is_err());
        assert!(NewTemplate::parse("welcome", "fax", None, "Hi").is_err());
        let t = NewTemplate::parse("w", "whatsapp", Some("dropped"), "Hi").unwrap();
        assert_eq!(t.subject, None);
    }
}
