//! Firing reminders: each due reminder goes, once, to every executor whose entry is not
//! closed, as a message recorded through `comms::send`; or it is cancelled when its task has
//! closed or expired first.
//!
//! # Exactly once
//! A reminder fires in one write transaction that (1) re-reads it as still `PENDING` (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so an instance already firing it makes the others
//! pass it by; SQLite has one writer), (2) writes one `task_reminder_sends` row per entry,
//! unique on (reminder, entry), with the message it records, and (3) marks it `SENT`. A crash
//! before the commit leaves nothing behind and the reminder still `PENDING`; a later run (on
//! any instance, after a restart) fires it then, marked `late` when that is more than a minute
//! after its time.

use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::model::{CANCELLED_TASK_CLOSED, CANCELLED_TASK_EXPIRED, LATE_AFTER_MILLIS};
use super::service::{REMINDER_ENTITY, local_time, record_reminder_cancelled, store_zone};
use super::store::{self, EntryRow, ReminderRow, SendOutcome, TaskRow};
use crate::audit::{self, AuditActor, Change};
use crate::comms::{self, Channel, CommsError, MessageStatus, Recipient, SendRequest, TemplateRef};
use crate::customers::model::{CustomerId, IdentifierType};
use crate::customers::store as customer_store;
use crate::db::{Connection, Db, DbError};
use crate::events::{self, NewEvent};
use crate::org::model::{OrgId, Store, StoreId};
use crate::org::store as org_store;
use crate::staff::model::STATUS_REMOVED;
use crate::staff::store as staff_store;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FireReport {
    /// Reminders looked at (due when the pass started).
    pub due: usize,
    /// Reminders sent, and how many of them late.
    pub sent: usize,
    pub late: usize,
    /// Reminders cancelled because their task had closed or expired.
    pub cancelled: usize,
    /// Messages recorded (one per executor reached).
    pub messages: usize,
    /// Reminders another instance was firing, or had fired, already.
    pub skipped: usize,
}

/// Fires (or cancels) up to `limit` due reminders as of `now`, each in its own transaction.
pub async fn fire_due(db: &Db, now: i64, limit: i64) -> Result<FireReport, DbError> {
    let due = {
        let mut conn = db.read().await?;
        store::due_reminders(&mut conn, now, limit).await?
    };
    let mut report = FireReport { due: due.len(), ..FireReport::default() };
    for (org, id) in due {
        match fire_one(db, OrgId(org), id, now).await {
            Ok(Fired::Sent { messages, late }) => {
                report.sent += 1;
                report.messages += messages;
                report.late += usize::from(late);
            }
            Ok(Fired::Cancelled) => report.cancelled += 1,
            Ok(Fired::Skipped) => report.skipped += 1,
            // One reminder failing (its transaction rolled back) never stops the others; it
            // stays pending and the next pass tries it again.
            Err(e) => tracing::warn!(error = %e, org, reminder = id, "task reminder failed"),
        }
    }
    Ok(report)
}

enum Fired {
    Sent { messages: usize, late: bool },
    Cancelled,
    Skipped,
}

async fn fire_one(db: &Db, org: OrgId, id: i64, now: i64) -> Result<Fired, DbError> {
    let mut tx = db.begin_write().await?;
    let Some(reminder) = store::claim_pending_reminder(&mut tx, org, id).await? else {
        return Ok(Fired::Skipped);
    };
    let Some(task) = store::task(&mut tx, org, reminder.task_id).await? else {
        return Ok(Fired::Skipped);
    };
    let reason = if task.expires_at <= now {
        Some(CANCELLED_TASK_EXPIRED)
    } else if task.open_entries == 0 {
        Some(CANCELLED_TASK_CLOSED)
    } else {
        None
    };
    if let Some(reason) = reason {
        if store::cancel_reminder(&mut tx, org, id, reason, now).await? {
            record_reminder_cancelled(&mut tx, org, None, id, task.id, reason).await?;
            tx.commit().await?;
            return Ok(Fired::Cancelled);
        }
        return Ok(Fired::Skipped);
    }
    if reminder.remind_at > now {
        // Only an expired task makes a reminder due early, and this one's task is not.
        return Ok(Fired::Skipped);
    }
    let Some(store_row) = org_store::get_store(&mut tx, org, StoreId(task.store_id)).await? else {
        return Ok(Fired::Skipped);
    };
    let tz = store_zone(&mut tx, org, &store_row).await?;
    let late = now - reminder.remind_at.max(reminder.created_at) > LATE_AFTER_MILLIS;
    let entries = store::entries(&mut tx, org, task.id).await?;
    let mut sends: Vec<Value> = Vec::new();
    for entry in entries.iter().filter(|e| e.internal_status != "CLOSED") {
        let Some(send_id) = store::insert_send(&mut tx, org, id, entry, late, now).await? else {
            continue;
        };
        let context = Context { task: &task, store: &store_row, tz, reminder: &reminder };
        let outcome = send_to(&mut tx, org, entry, &context).await?;
        let record = SendOutcome {
            channel: outcome.channel.map(Channel::as_str),
            message_id: outcome.message_id,
            status: outcome.status,
            detail: &outcome.detail,
        };
        store::finish_send(&mut tx, org, send_id, &record).await?;
        sends.push(json!({"executorType": entry.executor_type, "executorId": entry.executor_id,
            "messageId": outcome.message_id, "status": outcome.status}));
    }
    if !store::mark_sent(&mut tx, org, id, late, now).await? {
        return Ok(Fired::Skipped);
    }
    let messages = sends.iter().filter(|s| !s["messageId"].is_null()).count();
    let payload = json!({"reminderId": id, "taskId": task.id, "storeId": task.store_id,
        "remindAt": reminder.remind_at, "firedAt": now, "late": late, "sends": sends});
    let change = Change {
        entity_type: REMINDER_ENTITY,
        entity_id: id,
        action: "FIRE",
        before: None,
        after: Some(payload.clone()),
    };
    audit::record(&mut tx, org, &AuditActor::system(), change).await?;
    let event = NewEvent {
        event_type: "task.reminder_sent",
        entity_type: REMINDER_ENTITY,
        entity_id: id,
        payload,
    };
    events::raise(&mut tx, org, None, event).await?;
    tx.commit().await?;
    Ok(Fired::Sent { messages, late })
}

/// What a reminder's message is about.
struct Context<'a> {
    task: &'a TaskRow,
    store: &'a Store,
    tz: Tz,
    reminder: &'a ReminderRow,
}

/// What sending to one executor did.
struct SendResult {
    channel: Option<Channel>,
    message_id: Option<i64>,
    /// `SENT` (recorded for delivery), `SKIPPED` (no address, opted out, account removed) or
    /// `FAILED` (the message was refused, e.g. too long once rendered).
    status: &'static str,
    detail: String,
}

impl SendResult {
    fn skipped(detail: impl Into<String>) -> SendResult {
        SendResult { channel: None, message_id: None, status: "SKIPPED", detail: detail.into() }
    }
}

/// The values every reminder can use, whoever it goes to.
fn task_values(context: &Context<'_>) -> Map<String, Value> {
    let task = context.task;
    let mut values = Map::new();
    values.insert("title".into(), json!(task.title));
    values.insert("task_title".into(), json!(task.title));
    values.insert("task_body".into(), json!(task.body));
    values.insert("task_id".into(), json!(task.id));
    values.insert("store".into(), json!(context.store.name));
    values.insert("store_name".into(), json!(context.store.name));
    values.insert("store_code".into(), json!(context.store.code));
    values.insert("end_date".into(), json!(local_time(task.end_at, context.tz)));
    let expiry = task.expiry_at.map(|e| local_time(e, context.tz)).unwrap_or_default();
    values.insert("expiry_date".into(), json!(expiry));
    values
}

/// Records the reminder's message to one executor: SMS to a mobile number, else e-mail.
async fn send_to(
    c: &mut impl Connection,
    org: OrgId,
    entry: &EntryRow,
    context: &Context<'_>,
) -> Result<SendResult, DbError> {
    let mut values = task_values(context);
    values.insert("executor_id".into(), json!(entry.executor_id));
    let (recipient, mobile, email) = if entry.executor_type == "CUSTOMER" {
        let customer = CustomerId(entry.executor_id);
        if customer_store::get_customer(c, org, customer).await?.is_none() {
            return Ok(SendResult::skipped("the customer no longer exists"));
        }
        let mut mobile = None;
        let mut email = None;
        for identifier in customer_store::identifiers(c, org, customer).await? {
            if identifier.kind == IdentifierType::Mobile.as_str() && mobile.is_none() {
                mobile = Some(identifier.value);
            } else if identifier.kind == IdentifierType::Email.as_str() && email.is_none() {
                email = Some(identifier.value);
            }
        }
        values.insert("points".into(), json!(customer_points(c, org, entry.executor_id).await?));
        (Recipient::Customer(customer), mobile, email)
    } else {
        let Some(staff) = staff_store::staff_any(c, org, entry.executor_id).await? else {
            return Ok(SendResult::skipped("the staff account no longer exists"));
        };
        if staff.status == STATUS_REMOVED {
            return Ok(SendResult::skipped("the staff account was removed"));
        }
        values.insert("name".into(), json!(staff.display_name()));
        values.insert("first_name".into(), json!(staff.first_name));
        values.insert("last_name".into(), json!(staff.last_name));
        values.insert("mobile".into(), json!(staff.mobile.clone().unwrap_or_default()));
        values.insert("email".into(), json!(staff.email.clone().unwrap_or_default()));
        values.insert("points".into(), json!(""));
        let address = staff.mobile.clone().or_else(|| staff.email.clone()).unwrap_or_default();
        (Recipient::Address(address), staff.mobile, staff.email)
    };
    let channel = match (&mobile, &email) {
        (Some(_), _) => Channel::Sms,
        (None, Some(_)) => Channel::Email,
        (None, None) => return Ok(SendResult::skipped("the executor has no mobile or e-mail")),
    };
    let recipient = match recipient {
        Recipient::Address(_) => Recipient::Address(
            if channel == Channel::Sms { mobile } else { email }.unwrap_or_default(),
        ),
        customer => customer,
    };
    let subject = (channel == Channel::Email).then(|| "Task reminder: {task_title}".to_string());
    let mut request = SendRequest::new(
        channel,
        recipient,
        TemplateRef::Inline { subject, body: context.reminder.template.clone() },
        AuditActor::system(),
    );
    request.values = values;
    request.purpose = "TASK_REMINDER".into();
    match comms::send(c, org, request).await {
        Ok(sent) => {
            let (status, detail) = match sent.status {
                MessageStatus::SkippedOptedOut => {
                    ("SKIPPED", "the customer opted out of the channel")
                }
                _ => ("SENT", ""),
            };
            Ok(SendResult {
                channel: Some(channel),
                message_id: Some(sent.id.0),
                status,
                detail: detail.into(),
            })
        }
        Err(CommsError::Db(e)) => Err(e),
        Err(refused) => Ok(SendResult {
            channel: Some(channel),
            message_id: None,
            status: "FAILED",
            detail: refused.to_string(),
        }),
    }
}

/// The customer's current points across programs, as shown in messages.
async fn customer_points(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<String, DbError> {
    let accounts = crate::points::store::accounts_of_customer(c, org, customer).await?;
    let total = accounts.iter().fold(crate::points::model::Fixed::ZERO, |sum, a| {
        sum + crate::points::model::Fixed(a.current_points)
    });
    Ok(total.to_string())
}
