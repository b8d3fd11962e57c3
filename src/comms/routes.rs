//! Communication handlers and wire shapes: v2 and v1.1 `sendMessage`, v2 `resend`, the message
//! read and the template admin API (`/x/perks/v1/…`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::{
    Channel, CommsError, MessageId, Recipient, SendRequest, Sent, TemplateId, TemplateRef,
};
use super::service::{self, NewTemplate};
use super::store::{MessageRow, TemplateRow};
use super::template::placeholders;
use crate::app::AppState;
use crate::audit::AuditActor;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::{CustomerId, normalise_mobile};
use crate::customers::routes_v1::{BATCH_MAX, batch_items, failed_item, one_or_many, text};
use crate::customers::routes_v2::country_code;
use crate::customers::subscriptions::Priority;
use crate::db::now_millis;
use crate::error::{ApiError, Code};
use crate::http::envelope::{V1Reply, item_status};
use crate::http::extract::{Json, Path, Query, V1Body};
use crate::transactions::time::{iso_utc, parse_v1, parse_v2};

/// Query of `sendMessage`: the channel, `sms` when absent.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ChannelQuery {
    /// `sms` (default), `email`, `whatsapp` or `zalo`, in any case.
    channel: Option<String>,
}

impl ChannelQuery {
    fn channel(&self) -> Result<Channel, CommsError> {
        Channel::parse(self.channel.as_deref().unwrap_or("sms"))
    }
}

/// Which API a message item came through (their schedule fields and time rules differ).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    V2,
    V1 { tz: Tz },
}

/// A list of addresses: an array, or one comma-separated string.
fn address_list(item: &Value, key: &str) -> Vec<String> {
    one_or_many(item.get(key))
        .iter()
        .flat_map(|v| match v {
            Value::String(s) => s.split(',').map(|a| a.trim().to_string()).collect::<Vec<_>>(),
            other => vec![other.to_string()],
        })
        .filter(|a| !a.is_empty())
        .collect()
}

/// Reads one message item of a `sendMessage` body into a [`SendRequest`].
fn parse_item(
    channel: Channel,
    item: &Value,
    api: Api,
    country: Option<&str>,
    actor: &AuditActor,
    now: i64,
) -> Result<SendRequest, CommsError> {
    let invalid = |reason: String| CommsError::InvalidMessage { channel, reason };
    if !item.is_object() {
        return Err(invalid("each message must be an object".into()));
    }
    let to = match (text(item, "to"), text(item, "userId")) {
        (Some(to), _) => {
            // A national mobile number takes the X-CAP-CLIENT-COUNTRYCODE header's code.
            let to = match channel {
                Channel::Email => to,
                _ => normalise_mobile(&to, country).unwrap_or(to),
            };
            Recipient::Address(to)
        }
        (None, Some(user)) => Recipient::Customer(CustomerId(
            user.parse()
                .map_err(|_| CommsError::Invalid(format!("userId '{user}' is not a number")))?,
        )),
        (None, None) => return Err(invalid("to is required".into())),
    };
    let template_id = text(item, "templateId");
    let template_name = text(item, "templateName");
    let body = item.get("body").and_then(Value::as_str).map(str::to_string);
    let template = match (template_id, template_name, body) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(invalid("give body or a template, not both".into()));
        }
        (Some(id), _, None) => TemplateRef::Id(TemplateId(
            id.parse().map_err(|_| CommsError::TemplateNotFound(id.clone()))?,
        )),
        (None, Some(name), None) => TemplateRef::Named(name),
        (None, None, Some(body)) => TemplateRef::Inline {
            subject: item.get("subject").and_then(Value::as_str).map(str::to_string),
            body,
        },
        (None, None, None) => return Err(invalid("body is required".into())),
    };
    let values = match item.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(_) => return Err(CommsError::Invalid("variables must be an object".into())),
    };
    let scheduled = match api {
        Api::V2 => text(item, "scheduledTime")
            .map(|t| parse_v2("scheduledTime", Some(&t), chrono_tz::UTC, false, now))
            .transpose(),
        Api::V1 { tz } => text(item, "scheduled_time")
            .or_else(|| text(item, "scheduledTime"))
            .map(|t| parse_v1("scheduled_time", Some(&t), tz, now))
            .transpose(),
    }
    .map_err(|e| CommsError::Invalid(e.to_string()))?;
    let attachments = item.get("attachments").map(|a| a.get("attachment").unwrap_or(a));
    if !one_or_many(attachments).is_empty() {
        return Err(invalid("attachments are not supported".into()));
    }
    let sender = match channel {
        Channel::Email => text(item, "from"),
        _ => text(item, "sender"),
    };
    let priority = match text(item, "priority") {
        Some(p) => Priority::parse(&p).map_err(|e| CommsError::Invalid(e.to_string()))?,
        None => Priority::Trans,
    };
    let mut request = SendRequest::new(channel, to, template, actor.clone());
    request.values = values;
    request.scheduled_at = scheduled.map(|t| t.millis);
    request.purpose = text(item, "purpose").unwrap_or_else(|| "API".into());
    request.priority = priority;
    request.sender = sender;
    request.cc = address_list(item, "cc");
    request.bcc = address_list(item, "bcc");
    Ok(request)
}

fn sent_json(sent: &Sent) -> Value {
    json!({"to": sent.recipient, "messageId": sent.id.0, "status": sent.status.as_str()})
}

/// `POST /v2/communications/sendMessage?channel=` — queues every message of the body's
/// `sms[]` (`email[]`, `whatsapp[]`, `zalo[]`) list, or none when one is refused.
#[utoipa::path(post, path = "/v2/communications/sendMessage", tag = "communications",
    params(ChannelQuery),
    request_body(content = Object, description = "sms[] {to, body | templateName | templateId, variables, scheduledTime, sender}; email[] {to, cc, bcc, from, subject, body, ...}; whatsapp[]/zalo[] like sms"),
    responses((status = 200, description = "messages[] {to, messageId, status}"),
        (status = 400, description = "4203 unknown channel, 4101/4201 refused message, 4208 bad e-mail, 1060 batch too large"),
        (status = 404, description = "4204 template not found, 8015 customer not found")))]
pub async fn v2_send(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<ChannelQuery>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Write)?;
    let channel = q.channel()?;
    let key = channel.key();
    let items = match body.get(key) {
        Some(Value::Array(items)) => items,
        _ => return Err(ApiError::invalid(format!("{key} must list the messages to send"))),
    };
    if items.is_empty() {
        return Err(ApiError::invalid(format!("{key} must list at least one message")));
    }
    if items.len() > BATCH_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("At most {BATCH_MAX} messages per request"),
        ));
    }
    let actor = AuditActor::from(&principal);
    let country = country_code(&headers);
    let now = now_millis();
    let at = |i: usize, e: CommsError| {
        let error = ApiError::from(e);
        ApiError::with_message(error.code, format!("{key}[{i}]: {}", error.message))
    };
    let requests = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_item(channel, item, Api::V2, country.as_deref(), &actor, now)
                .map_err(|e| at(i, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sent =
        service::send_all(&state.db, principal.org, requests).await.map_err(|(i, e)| at(i, e))?;
    let messages: Vec<Value> = sent.iter().map(sent_json).collect();
    Ok(axum::Json(json!({"messages": messages, "warnings": [], "errors": []})).into_response())
}

/// Query of the v1.1 `sendMessage`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct V1ChannelQuery {
    /// `sms` (default), `email`, `whatsapp` or `zalo`.
    channel: Option<String>,
    /// `json` (default) or `xml`; read by the envelope layer.
    #[allow(dead_code)]
    format: Option<String>,
}

/// `POST /v1.1/communications/sendMessage?channel=` — queues each message of `root.sms[]`
/// (`root.email[]`, …) on its own; each answer item carries its `item_status` (4100 queued,
/// 4200 e-mail queued, or the refusal's code).
#[utoipa::path(post, path = "/v1.1/communications/sendMessage", tag = "communications",
    params(V1ChannelQuery),
    request_body(content = Object, description = "root.sms[] / root.email[] / root.whatsapp[] / root.zalo[] items as in v2; schedule field scheduled_time"),
    responses((status = 200, description = "response.messages.message[] {to, message_id, status, item_status}"),
        (status = 201, description = "Some messages refused"), (status = 500, description = "All messages refused"),
        (status = 400, description = "4203 unknown channel")))]
pub async fn v1_send(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<V1ChannelQuery>,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Communication, Level::Write)?;
    let channel = ChannelQuery { channel: q.channel.clone() }.channel()?;
    let items = batch_items(&body, channel.key(), &["to", "body"])?;
    let tz: Tz = {
        let mut conn = state.db.read().await?;
        crate::org::store::get_org(&mut conn, principal.org)
            .await?
            .and_then(|o| o.timezone.parse().ok())
            .unwrap_or(chrono_tz::UTC)
    };
    let actor = AuditActor::from(&principal);
    let country = country_code(&headers);
    let now = now_millis();
    let (ok_code, ok_message) = match channel {
        Channel::Email => (4200, "Email queued"),
        _ => (4100, "Message queued"),
    };
    let mut answers = Vec::with_capacity(items.len());
    for item in &items {
        let echo = Map::from_iter([("to".to_string(), json!(text(item, "to")))]);
        let outcome = async {
            let request =
                parse_item(channel, item, Api::V1 { tz }, country.as_deref(), &actor, now)?;
            let mut tx = state.db.begin_write().await?;
            let sent = service::send(&mut tx, principal.org, request).await?;
            tx.commit().await?;
            Ok::<_, CommsError>(sent)
        }
        .await;
        answers.push(match outcome {
            Ok(sent) => json!({"to": sent.recipient, "message_id": sent.id.0,
                "status": sent.status.as_str(), "item_status": item_status(true, ok_code, ok_message)}),
            Err(e) => failed_item(echo, &ApiError::from(e)),
        });
    }
    Ok(V1Reply::batch("messages", "message", answers))
}

/// Body of `POST /v2/communications/resend`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResendBody {
    #[schema(value_type = i64)]
    message_id: Option<Value>,
}

/// `POST /v2/communications/resend` — queues a copy of a sent, failed or skipped message.
#[utoipa::path(post, path = "/v2/communications/resend", tag = "communications",
    request_body = ResendBody,
    responses((status = 200, description = "orgId, undeliveredMessageId, resentMessageId"),
        (status = 400, description = "Missing messageId, or the message is still queued"),
        (status = 404, description = "4223 message not found")))]
pub async fn v2_resend(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<ResendBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Write)?;
    let id = match &body.message_id {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::invalid("messageId must be an integer"))?;
    let actor = AuditActor::from(&principal);
    let mut tx = state.db.begin_write().await?;
    let sent = service::resend(&mut tx, principal.org, MessageId(id), &actor).await?;
    tx.commit().await?;
    Ok(axum::Json(json!({
        "orgId": principal.org.0,
        "undeliveredMessageId": id,
        "resentMessageId": sent.id.0,
        "warnings": [],
    }))
    .into_response())
}

fn list(stored: &str) -> Vec<&str> {
    stored.split(',').filter(|a| !a.is_empty()).collect()
}

/// A message of the log as the admin API shows it.
pub fn message_json(m: &MessageRow) -> Value {
    json!({
        "id": m.id,
        "customerId": m.customer_id,
        "channel": m.channel,
        "to": m.recipient,
        "sender": m.sender,
        "cc": list(&m.cc),
        "bcc": list(&m.bcc),
        "subject": m.subject,
        "body": m.body,
        "templateId": m.template_id,
        "purpose": m.purpose,
        "priority": m.priority,
        "status": m.status,
        "attempts": m.attempts,
        "provider": m.provider,
        "providerResponse": m.provider_response,
        "scheduledAt": m.scheduled_at.map(iso_utc),
        "nextAttemptAt": iso_utc(m.next_attempt_at),
        "sentAt": m.sent_at.map(iso_utc),
        "resentFrom": m.resent_from,
        "requestId": m.request_id,
        "createdAt": iso_utc(m.created_at),
    })
}

/// `GET /x/perks/v1/messages/{id}` — one message of the log, with its delivery status.
#[utoipa::path(get, path = "/x/perks/v1/messages/{id}", tag = "communications",
    params(("id" = i64, Path, description = "Message id")),
    responses((status = 200, description = "data: the message"), (status = 404, description = "4223 not found")))]
pub async fn get_message(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Read)?;
    let mut conn = state.db.read().await?;
    let message = service::message(&mut conn, principal.org, MessageId(id)).await?;
    Ok(axum::Json(json!({"data": message_json(&message), "warnings": [], "errors": []}))
        .into_response())
}

// ---------------------------------------------------------------- customer interactions

/// Default and largest page of `GET /v2/customers/{userId}/interactions`.
pub const INTERACTIONS_LIMIT_DEFAULT: i64 = 50;
pub const INTERACTIONS_LIMIT_MAX: i64 = 100;

/// Query of `GET /v2/customers/{userId}/interactions`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InteractionsQuery {
    /// `sms`, `email`, `emailbulk`, `whatsapp`, `zalo` (other v1.1 types list nothing).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// 1 to 100 (default 50).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The v1.1 interaction types (see `GET /v1.1/customer/interaction`).
const INTERACTION_TYPES: [&str; 14] = [
    "sms",
    "email",
    "emailbulk",
    "checkin",
    "like",
    "comment",
    "mention",
    "retweet",
    "tweet",
    "feedback",
    "whatsapp",
    "zalo",
    "line",
    "viber",
];

/// `GET /v2/customers/{userId}/interactions` — the customer's messages, newest first.
#[utoipa::path(get, path = "/v2/customers/{userId}/interactions", tag = "communications",
    params(("userId" = i64, Path, description = "Customer id"), InteractionsQuery),
    responses((status = 200, description = "pagination, data[] {id, type, network, to, sender, subject, message, status, priority, purpose, createdOn, scheduledOn, sentOn}"),
        (status = 400, description = "Bad type, limit or offset"), (status = 404, description = "8015 not found")))]
pub async fn customer_interactions(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Query(q): Query<InteractionsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let kind = q.kind.as_deref().map(|k| k.trim().to_ascii_lowercase());
    if let Some(kind) = kind.as_deref()
        && !INTERACTION_TYPES.contains(&kind)
    {
        return Err(ApiError::invalid(format!(
            "type must be one of {}",
            INTERACTION_TYPES.join(", ")
        )));
    }
    let limit = q.limit.unwrap_or(INTERACTIONS_LIMIT_DEFAULT);
    let offset = q.offset.unwrap_or(0);
    if !(1..=INTERACTIONS_LIMIT_MAX).contains(&limit) || offset < 0 {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {INTERACTIONS_LIMIT_MAX} and offset not negative"
        )));
    }
    let customer = CustomerId(user_id);
    let mut conn = state.db.read().await?;
    if crate::customers::store::get_customer(&mut conn, principal.org, customer).await?.is_none() {
        return Err(ApiError::from(CommsError::CustomerNotFound));
    }
    let (rows, total) = match service::interaction_filter(kind.as_deref()) {
        Some(filter) => {
            service::customer_messages(&mut conn, principal.org, customer, &filter, limit, offset)
                .await?
        }
        None => (Vec::new(), 0),
    };
    let data: Vec<Value> = rows
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "type": service::interaction_type(m),
                "network": "capillary",
                "to": m.recipient,
                "sender": m.sender,
                "subject": m.subject,
                "message": service::shown_body(m),
                "status": m.status,
                "priority": m.priority,
                "purpose": m.purpose,
                "createdOn": iso_utc(m.created_at),
                "scheduledOn": m.scheduled_at.map(iso_utc),
                "sentOn": m.sent_at.map(iso_utc),
            })
        })
        .collect();
    Ok(crate::http::envelope::v2_list(data, limit, offset, total))
}

// ---------------------------------------------------------------- templates

/// Body of the template create and replace calls.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TemplateBody {
    name: Option<String>,
    /// `SMS`, `EMAIL`, `WHATSAPP` or `ZALO`.
    channel: Option<String>,
    /// Required for e-mail; ignored otherwise.
    subject: Option<String>,
    /// Text with `{placeholder}`s.
    body: Option<String>,
}

impl TemplateBody {
    fn parse(&self) -> Result<NewTemplate, CommsError> {
        let name =
            self.name.as_deref().ok_or_else(|| CommsError::Invalid("name is required".into()))?;
        let channel = self
            .channel
            .as_deref()
            .ok_or_else(|| CommsError::Invalid("channel is required".into()))?;
        NewTemplate::parse(
            name,
            channel,
            self.subject.as_deref(),
            self.body.as_deref().unwrap_or_default(),
        )
    }
}

fn template_json(t: &TemplateRow) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "channel": t.channel,
        "subject": t.subject,
        "body": t.body,
        "placeholders": placeholders(&format!("{} {}", t.subject.as_deref().unwrap_or_default(), t.body)),
        "createdAt": iso_utc(t.created_at),
        "updatedAt": iso_utc(t.updated_at),
    })
}

fn template_reply(status: StatusCode, t: &TemplateRow) -> Response {
    (status, axum::Json(json!({"data": template_json(t), "warnings": [], "errors": []})))
        .into_response()
}

/// `GET /x/perks/v1/templates` — the org's message templates, by name.
#[utoipa::path(get, path = "/x/perks/v1/templates", tag = "communications",
    responses((status = 200, description = "data: templates")))]
pub async fn list_templates(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Read)?;
    let mut conn = state.db.read().await?;
    let rows = service::templates(&mut conn, principal.org).await?;
    let data: Vec<Value> = rows.iter().map(template_json).collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// `POST /x/perks/v1/templates` — adds a template; 201 with the template.
#[utoipa::path(post, path = "/x/perks/v1/templates", tag = "communications",
    request_body = TemplateBody,
    responses((status = 201, description = "data: the template"),
        (status = 400, description = "Bad template, 4203 bad channel, 4205 name taken")))]
pub async fn create_template(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<TemplateBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Write)?;
    let template = body.parse()?;
    let row = service::create_template(
        &state.db,
        principal.org,
        &AuditActor::from(&principal),
        &template,
    )
    .await?;
    Ok(template_reply(StatusCode::CREATED, &row))
}

/// `GET /x/perks/v1/templates/{id}` — one template.
#[utoipa::path(get, path = "/x/perks/v1/templates/{id}", tag = "communications",
    params(("id" = i64, Path, description = "Template id")),
    responses((status = 200, description = "data: the template"), (status = 404, description = "4204 not found")))]
pub async fn get_template(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Read)?;
    let mut conn = state.db.read().await?;
    let row = service::template(&mut conn, principal.org, TemplateId(id)).await?;
    Ok(template_reply(StatusCode::OK, &row))
}

/// `PUT /x/perks/v1/templates/{id}` — replaces a template.
#[utoipa::path(put, path = "/x/perks/v1/templates/{id}", tag = "communications",
    params(("id" = i64, Path, description = "Template id")), request_body = TemplateBody,
    responses((status = 200, description = "data: the template"),
        (status = 400, description = "Bad template, 4205 name taken"), (status = 404, description = "4204 not found")))]
pub async fn replace_template(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<TemplateBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Write)?;
    let template = body.parse()?;
    let actor = AuditActor::from(&principal);
    let row = service::update_template(&state.db, principal.org, &actor, TemplateId(id), &template)
        .await?;
    Ok(template_reply(StatusCode::OK, &row))
}

/// `DELETE /x/perks/v1/templates/{id}` — deletes a template (sent messages keep their text).
#[utoipa::path(delete, path = "/x/perks/v1/templates/{id}", tag = "communications",
    params(("id" = i64, Path, description = "Template id")),
    responses((status = 200, description = "Deleted"), (status = 404, description = "4204 not found")))]
pub async fn delete_template(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Communication, Level::Write)?;
    let actor = AuditActor::from(&principal);
    service::delete_template(&state.db, principal.org, &actor, TemplateId(id)).await?;
    Ok(axum::Json(json!({"data": {"id": id, "deleted": true}, "warnings": [], "errors": []}))
        .into_response())
}
