//! SQL for templates and the message log. Org-first, except the delivery worker's claim, which
//! spans every org by design (the rows it returns carry their org).

use super::model::{MessageId, TemplateId};
use crate::db::{Connection, DbError, Exec};
use crate::dispatch;
use crate::org::model::OrgId;

// ---------------------------------------------------------------- templates

/// A template row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TemplateRow {
    pub id: i64,
    pub name: String,
    pub channel: String,
    pub subject: Option<String>,
    pub body: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const TEMPLATE_COLUMNS: &str = "id, name, channel, subject, body, created_at, updated_at";

/// A template's columns.
pub struct TemplateFields<'a> {
    pub name: &'a str,
    pub channel: &'a str,
    pub subject: Option<&'a str>,
    pub body: &'a str,
}

/// Inserts a template unless the org has one of that name (then `None`).
pub async fn insert_template(
    c: &mut impl Connection,
    org: OrgId,
    t: &TemplateFields<'_>,
    now: i64,
) -> Result<Option<TemplateId>, DbError> {
    let id: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO message_templates (org_id, name, channel, subject, body, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (org_id, name) DO NOTHING \
         RETURNING id"
    )
    .bind(org.0)
    .bind(t.name)
    .bind(t.channel)
    .bind(t.subject)
    .bind(t.body)
    .bind(now)
    .fetch_optional(e)
    .await)?;
    Ok(id.map(TemplateId))
}

/// Replaces a template's fields; false when the org has no such template.
pub async fn update_template(
    c: &mut impl Connection,
    org: OrgId,
    id: TemplateId,
    t: &TemplateFields<'_>,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "UPDATE message_templates SET name = $3, channel = $4, subject = $5, body = $6, \
         updated_at = $7 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id.0)
    .bind(t.name)
    .bind(t.channel)
    .bind(t.subject)
    .bind(t.body)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected > 0)
}

/// Deletes a template; false when the org has no such template. Messages keep their text.
pub async fn delete_template(
    c: &mut impl Connection,
    org: OrgId,
    id: TemplateId,
) -> Result<bool, DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE messages SET template_id = NULL WHERE org_id = $1 AND template_id = $2"
    )
    .bind(org.0)
    .bind(id.0)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    let affected = dispatch!(c, |e| sqlx::query(
        "DELETE FROM message_templates WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id.0)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected > 0)
}

pub async fn template_by_id(
    c: &mut impl Connection,
    org: OrgId,
    id: TemplateId,
) -> Result<Option<TemplateRow>, DbError> {
    let sql =
        format!("SELECT {TEMPLATE_COLUMNS} FROM message_templates WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TemplateRow>(&sql)
        .bind(org.0)
        .bind(id.0)
        .fetch_optional(e)
        .await)?)
}

pub async fn template_by_name(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<Option<TemplateRow>, DbError> {
    let sql =
        format!("SELECT {TEMPLATE_COLUMNS} FROM message_templates WHERE org_id = $1 AND name = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TemplateRow>(&sql)
        .bind(org.0)
        .bind(name)
        .fetch_optional(e)
        .await)?)
}

/// The org's templates by name, at most `limit`.
pub async fn templates(
    c: &mut impl Connection,
    org: OrgId,
    limit: i64,
) -> Result<Vec<TemplateRow>, DbError> {
    let sql = format!(
        "SELECT {TEMPLATE_COLUMNS} FROM message_templates WHERE org_id = $1 ORDER BY name LIMIT $2"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TemplateRow>(&sql)
        .bind(org.0)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

pub async fn count_templates(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM message_templates WHERE org_id = $1"
    )
    .bind(org.0)
    .fetch_one(e)
    .await)?)
}

// ---------------------------------------------------------------- messages

/// A message as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub org_id: i64,
    pub customer_id: Option<i64>,
    pub channel: String,
    pub recipient: String,
    pub sender: Option<String>,
    pub cc: String,
    pub bcc: String,
    pub subject: Option<String>,
    pub body: String,
    pub template_id: Option<i64>,
    pub purpose: String,
    pub priority: String,
    pub status: String,
    pub attempts: i64,
    pub provider: Option<String>,
    pub provider_response: Option<String>,
    pub scheduled_at: Option<i64>,
    pub next_attempt_at: i64,
    pub sent_at: Option<i64>,
    pub resent_from: Option<i64>,
    pub request_id: Option<String>,
    pub created_at: i64,
}

const MESSAGE_COLUMNS: &str = "id, org_id, customer_id, channel, recipient, sender, cc, bcc, \
    subject, body, template_id, purpose, priority, status, attempts, provider, provider_response, \
    scheduled_at, next_attempt_at, sent_at, resent_from, request_id, created_at";

/// A message to insert.
pub struct NewMessage<'a> {
    pub customer: Option<i64>,
    pub channel: &'a str,
    pub recipient: &'a str,
    pub sender: Option<&'a str>,
    pub cc: &'a str,
    pub bcc: &'a str,
    pub subject: Option<&'a str>,
    pub body: &'a str,
    pub template: Option<i64>,
    pub purpose: &'a str,
    pub priority: &'a str,
    pub status: &'a str,
    pub provider_response: Option<&'a str>,
    pub scheduled_at: Option<i64>,
    pub next_attempt_at: i64,
    pub resent_from: Option<i64>,
    pub request_id: Option<&'a str>,
    pub requested_by: (&'a str, Option<i64>),
}

pub async fn insert_message(
    c: &mut impl Connection,
    org: OrgId,
    m: &NewMessage<'_>,
    now: i64,
) -> Result<MessageId, DbError> {
    let id: i64 = dispatch!(c, |e| {
        sqlx::query_scalar(
        "INSERT INTO messages (org_id, customer_id, channel, recipient, sender, cc, bcc, subject, \
         body, template_id, purpose, priority, status, provider_response, scheduled_at, \
         next_attempt_at, resent_from, request_id, requested_by_type, requested_by_id, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18, $19, $20, $21, $21) RETURNING id"
    )
    .bind(org.0)
    .bind(m.customer)
    .bind(m.channel)
    .bind(m.recipient)
    .bind(m.sender)
    .bind(m.cc)
    .bind(m.bcc)
    .bind(m.subject)
    .bind(m.body)
    .bind(m.template)
    .bind(m.purpose)
    .bind(m.priority)
    .bind(m.status)
    .bind(m.provider_response)
    .bind(m.scheduled_at)
    .bind(m.next_attempt_at)
    .bind(m.resent_from)
    .bind(m.request_id)
    .bind(m.requested_by.0)
    .bind(m.requested_by.1)
    .bind(now)
    .fetch_one(e)
    .await
    })?;
    Ok(MessageId(id))
}

pub async fn message(
    c: &mut impl Connection,
    org: OrgId,
    id: MessageId,
) -> Result<Option<MessageRow>, DbError> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, MessageRow>(&sql)
        .bind(org.0)
        .bind(id.0)
        .fetch_optional(e)
        .await)?)
}

/// Which of a customer's messages to list.
#[derive(Clone, Debug, Default)]
pub struct MessageFilter<'a> {
    /// Only these channels (stored names); all when empty.
    pub channels: &'a [&'a str],
    /// Only this priority (`TRANS`/`BULK`).
    pub priority: Option<&'a str>,
}

/// One page of a customer's messages, newest first, and the number matching.
pub async fn customer_messages(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    filter: &MessageFilter<'_>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<MessageRow>, i64), DbError> {
    // $1 org, $2 customer, $3 priority (or NULL), then the channels.
    let channels: Vec<String> = (0..filter.channels.len()).map(|i| format!("${}", i + 4)).collect();
    let mut filter_sql =
        String::from("org_id = $1 AND customer_id = $2 AND ($3 = '' OR priority = $3)");
    if !channels.is_empty() {
        filter_sql.push_str(&format!(" AND channel IN ({})", channels.join(", ")));
    }
    let priority = filter.priority.unwrap_or_default();
    let count_sql = format!("SELECT COUNT(*) FROM messages WHERE {filter_sql}");
    let total: i64 = dispatch!(c, |e| {
        let mut q = sqlx::query_scalar(&count_sql).bind(org.0).bind(customer).bind(priority);
        for channel in filter.channels {
            q = q.bind(*channel);
        }
        q.fetch_one(e).await
    })?;
    let next = filter.channels.len() + 4;
    let page_sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {filter_sql} ORDER BY id DESC \
         LIMIT ${next} OFFSET ${}",
        next + 1
    );
    let rows = dispatch!(c, |e| {
        let mut q =
            sqlx::query_as::<_, MessageRow>(&page_sql).bind(org.0).bind(customer).bind(priority);
        for channel in filter.channels {
            q = q.bind(*channel);
        }
        q.bind(limit).bind(offset).fetch_all(e).await
    })?;
    Ok((rows, total))
}

// ---------------------------------------------------------------- delivery

/// True when some message of any org is due at `now` (and not claimed).
pub async fn any_due(c: &mut impl Connection, now: i64) -> Result<bool, DbError> {
    let found: Option<i64> = dispatch!(c, |e| {
        sqlx::query_scalar(
        "SELECT id FROM messages WHERE status IN ('QUEUED', 'SCHEDULED') AND next_attempt_at <= $1 \
         AND (claimed_until IS NULL OR claimed_until <= $1) LIMIT 1"
    )
    .bind(now)
    .fetch_optional(e)
    .await
    })?;
    Ok(found.is_some())
}

/// Claims up to `limit` due messages of any org for `lease_until`: sets the claim token and
/// counts the attempt. Rows claimed by another worker whose lease has not run out are skipped
/// (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer).
pub async fn claim_due(
    c: &mut impl Connection,
    token: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<MessageRow>, DbError> {
    const DUE: &str = "status IN ('QUEUED', 'SCHEDULED') AND next_attempt_at <= $2 \
                       AND (claimed_until IS NULL OR claimed_until <= $2)";
    let lock = match c.exec() {
        Exec::Sqlite(_) => "",
        Exec::Postgres(_) => " FOR UPDATE SKIP LOCKED",
    };
    let sql = format!(
        "UPDATE messages SET claim_token = $1, claimed_until = $3, attempts = attempts + 1, \
         updated_at = $2 WHERE id IN (SELECT id FROM messages WHERE {DUE} \
         ORDER BY next_attempt_at, id LIMIT $4{lock}) AND {DUE} RETURNING {MESSAGE_COLUMNS}"
    );
    let mut rows = dispatch!(c, |e| sqlx::query_as::<_, MessageRow>(&sql)
        .bind(token)
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(e)
        .await)?;
    rows.sort_by_key(|r| (r.next_attempt_at, r.id));
    Ok(rows)
}

/// The outcome of one delivery attempt.
pub struct Outcome<'a> {
    pub status: &'a str,
    pub provider: &'a str,
    pub provider_response: &'a str,
    pub sent_at: Option<i64>,
    pub next_attempt_at: i64,
}

/// Records an attempt's outcome and releases the claim; false when the claim was lost (the
/// lease ran out and another worker took the message).
pub async fn finish(
    c: &mut impl Connection,
    org: OrgId,
    id: MessageId,
    token: &str,
    outcome: &Outcome<'_>,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "UPDATE messages SET status = $4, provider = $5, provider_response = $6, sent_at = $7, \
         next_attempt_at = $8, claim_token = NULL, claimed_until = NULL, updated_at = $9 \
         WHERE org_id = $1 AND id = $2 AND claim_token = $3"
    )
    .bind(org.0)
    .bind(id.0)
    .bind(token)
    .bind(outcome.status)
    .bind(outcome.provider)
    .bind(outcome.provider_response)
    .bind(outcome.sent_at)
    .bind(outcome.next_attempt_at)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected > 0)
}
