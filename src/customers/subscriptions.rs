//! Subscriptions (opt-in/opt-out per channel and priority), customer notes and preferences:
//! their types, rules and SQL. Every write runs in one transaction with its audit record and
//! domain event.

use serde_json::{Map, Value, json};

use super::model::{CustomerError, CustomerId, SourceAccount};
use super::store::{self as customer_store, CustomerRowUpdate};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db, DbError, Tx, now_millis};
use crate::dispatch;
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

// ---------------------------------------------------------------- types

/// A communication channel one can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Sms,
    Email,
    Wechat,
    Line,
    MobilePush,
}

impl Channel {
    pub const ALL: [Channel; 5] =
        [Channel::Sms, Channel::Email, Channel::Wechat, Channel::Line, Channel::MobilePush];

    /// The v2 name (also the stored name): `MOBILE` is SMS.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "MOBILE",
            Channel::Email => "EMAIL",
            Channel::Wechat => "WECHAT",
            Channel::Line => "LINE",
            Channel::MobilePush => "MOBILE_PUSH",
        }
    }

    /// The v1.1 name: `SMS` for the mobile channel, the v2 name otherwise.
    pub fn v1_name(self) -> &'static str {
        match self {
            Channel::Sms => "SMS",
            other => other.as_str(),
        }
    }

    /// Accepts the v1.1 and v2 names, in any case (`SMS` and `MOBILE` are the same channel).
    pub fn parse(value: &str) -> Result<Channel, CustomerError> {
        let upper = value.trim().to_ascii_uppercase();
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == upper || c.v1_name() == upper || c.as_str().replace('_', "") == upper)
            .ok_or_else(|| {
                CustomerError::Invalid(format!(
                    "channel '{value}' must be one of SMS (MOBILE), EMAIL, WECHAT, LINE, MOBILE_PUSH"
                ))
            })
    }
}

/// `TRANS` (transactional, personal) or `BULK` (promotional).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Priority {
    Trans,
    Bulk,
}

impl Priority {
    pub const ALL: [Priority; 2] = [Priority::Trans, Priority::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Trans => "TRANS",
            Priority::Bulk => "BULK",
        }
    }

    pub fn parse(value: &str) -> Result<Priority, CustomerError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "TRANS" => Ok(Priority::Trans),
            "BULK" => Ok(Priority::Bulk),
            _ => Err(CustomerError::Invalid(format!("priority '{value}' must be TRANS or BULK"))),
        }
    }
}

/// Subscribed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionType {
    OptIn,
    OptOut,
}

impl SubscriptionType {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::OptIn => "OPTIN",
            SubscriptionType::OptOut => "OPTOUT",
        }
    }

    pub fn parse(value: &str) -> Result<SubscriptionType, CustomerError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "OPTIN" => Ok(SubscriptionType::OptIn),
            "OPTOUT" => Ok(SubscriptionType::OptOut),
            _ => Err(CustomerError::Invalid(format!("type '{value}' must be OPTIN or OPTOUT"))),
        }
    }
}

/// One validated subscription change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub account: SourceAccount,
    pub channel: Channel,
    pub priority: Priority,
    pub kind: SubscriptionType,
}

/// Most subscription changes one request may carry.
pub const CHANGES_MAX: usize = 50;
/// Longest reason accepted.
pub const REASON_LENGTH_MAX: usize = 255;
/// Most log rows or notes returned.
pub const LIST_MAX: i64 = 500;

/// The status of one channel × priority in one source account (`OPTIN` when never set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionStatus {
    pub source: String,
    pub account_id: String,
    pub channel: Channel,
    pub priority: Priority,
    pub kind: String,
    pub updated_at: Option<i64>,
}

// ---------------------------------------------------------------- SQL

#[derive(Clone, Debug, sqlx::FromRow)]
struct SubscriptionRow {
    source: String,
    account_id: String,
    channel: String,
    priority: String,
    #[sqlx(rename = "type")]
    kind: String,
    updated_at: i64,
}

async fn upsert_subscription(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    change: &SubscriptionChange,
    at: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO customer_subscriptions (org_id, customer_id, source, account_id, channel, \
         priority, type, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (org_id, customer_id, source, account_id, channel, priority) \
         DO UPDATE SET type = EXCLUDED.type, updated_at = EXCLUDED.updated_at"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(change.account.source.as_str())
    .bind(&change.account.account_id)
    .bind(change.channel.as_str())
    .bind(change.priority.as_str())
    .bind(change.kind.as_str())
    .bind(at)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn append_subscription_log(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    change: &SubscriptionChange,
    reason: &str,
    by: (&str, i64),
    at: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO customer_subscription_log (org_id, customer_id, source, account_id, channel, \
         priority, type, reason, created_by_type, created_by_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(change.account.source.as_str())
    .bind(&change.account.account_id)
    .bind(change.channel.as_str())
    .bind(change.priority.as_str())
    .bind(change.kind.as_str())
    .bind(reason)
    .bind(by.0)
    .bind(by.1)
    .bind(at)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

async fn subscription_rows(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Vec<SubscriptionRow>, DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query_as::<_, SubscriptionRow>(
        "SELECT source, account_id, channel, priority, type, updated_at FROM customer_subscriptions \
         WHERE org_id = $1 AND customer_id = $2"
    )
    .bind(org.0)
    .bind(customer.0)
    .fetch_all(e)
    .await
    })?)
}

/// One entry of the subscription log.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SubscriptionLogRow {
    pub id: i64,
    pub source: String,
    pub account_id: String,
    pub channel: String,
    pub priority: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub reason: String,
    pub created_by_type: String,
    pub created_by_id: Option<i64>,
    pub created_at: i64,
}

/// The newest `limit` subscription changes of a customer, newest first.
pub async fn subscription_log(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    limit: i64,
) -> Result<Vec<SubscriptionLogRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, SubscriptionLogRow>(
        "SELECT id, source, account_id, channel, priority, type, reason, created_by_type, \
         created_by_id, created_at FROM customer_subscription_log \
         WHERE org_id = $1 AND customer_id = $2 ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(limit.clamp(1, LIST_MAX))
    .fetch_all(e)
    .await)?)
}

/// A note row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct NoteRow {
    pub id: i64,
    pub noted_at: i64,
    pub description: String,
    pub created_by_type: String,
    pub created_by_id: Option<i64>,
}

/// The newest `limit` notes of a customer, newest first.
pub async fn notes(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    limit: i64,
) -> Result<Vec<NoteRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, NoteRow>(
        "SELECT id, noted_at, description, created_by_type, created_by_id FROM customer_notes \
         WHERE org_id = $1 AND customer_id = $2 ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(limit.clamp(1, LIST_MAX))
    .fetch_all(e)
    .await)?)
}

// ---------------------------------------------------------------- rules

async fn record(
    tx: &mut Tx,
    principal: &Principal,
    customer: CustomerId,
    action: &str,
    event_type: &str,
    before: Option<Value>,
    after: Value,
) -> Result<(), CustomerError> {
    let change = Change {
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        action,
        before,
        after: Some(after.clone()),
    };
    audit::record(tx, principal.org, &AuditActor::from(principal), change).await?;
    let event = NewEvent {
        event_type,
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        payload: json!({"customerId": customer.0, "change": after}),
    };
    events::raise(tx, principal.org, Some(principal), event).await?;
    Ok(())
}

/// Checks a reason: at most 255 characters, no control characters.
pub fn check_reason(reason: &str) -> Result<(), CustomerError> {
    if reason.chars().count() > REASON_LENGTH_MAX || reason.chars().any(char::is_control) {
        return Err(CustomerError::Invalid(format!(
            "reason must be at most {REASON_LENGTH_MAX} characters"
        )));
    }
    Ok(())
}

/// Applies subscription changes to a customer: each updates the current status and appends to
/// the log; one audit record and one `customer.subscription_changed` event cover the request.
/// Every change's source account must be one of the customer's profiles.
pub async fn set_subscriptions(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    changes: &[SubscriptionChange],
    reason: &str,
) -> Result<(), CustomerError> {
    if changes.is_empty() || changes.len() > CHANGES_MAX {
        return Err(CustomerError::Invalid(format!(
            "subscriptions must list 1 to {CHANGES_MAX} entries"
        )));
    }
    check_reason(reason)?;
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let profiles = customer_store::profiles(&mut tx, org, customer).await?;
    if profiles.is_empty() {
        return Err(CustomerError::NotFound);
    }
    for change in changes {
        let known = profiles.iter().any(|p| p.is_account(&change.account));
        if !known {
            return Err(CustomerError::InvalidSource(format!(
                "the customer has no {} profile",
                change.account.source.as_str()
            )));
        }
    }
    let at = now_millis();
    let by = principal.actor.audit_identity();
    for change in changes {
        upsert_subscription(&mut tx, org, customer, change, at).await?;
        append_subscription_log(&mut tx, org, customer, change, reason, by, at).await?;
    }
    let after: Vec<Value> = changes
        .iter()
        .map(|c| {
            json!({"channel": c.channel.as_str(), "priority": c.priority.as_str(),
                "type": c.kind.as_str(), "source": c.account.source.as_str(),
                "accountId": c.account.account_id})
        })
        .collect();
    let after = json!({"subscriptions": after, "reason": reason});
    record(
        &mut tx,
        principal,
        customer,
        "SUBSCRIPTION_CHANGE",
        "customer.subscription_changed",
        None,
        after,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// True when any of the customer's source accounts has opted out of `channel` at `priority`:
/// such a customer must not be messaged there (`comms` checks it when a message is queued and
/// again when it is delivered).
pub async fn is_opted_out(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    channel: Channel,
    priority: Priority,
) -> Result<bool, DbError> {
    let count: i64 = dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM customer_subscriptions WHERE org_id = $1 AND customer_id = $2 \
         AND channel = $3 AND priority = $4 AND type = $5"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(channel.as_str())
    .bind(priority.as_str())
    .bind(SubscriptionType::OptOut.as_str())
    .fetch_one(e)
    .await)?;
    Ok(count > 0)
}

/// The status of every channel × priority in each given source account (`OPTIN` when never set).
pub async fn subscription_statuses(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    accounts: &[SourceAccount],
) -> Result<Vec<SubscriptionStatus>, CustomerError> {
    let rows = subscription_rows(c, org, customer).await?;
    let mut out = Vec::new();
    for account in accounts {
        for channel in Channel::ALL {
            for priority in Priority::ALL {
                let row = rows.iter().find(|r| {
                    r.source == account.source.as_str()
                        && r.account_id == account.account_id
                        && r.channel == channel.as_str()
                        && r.priority == priority.as_str()
                });
                out.push(SubscriptionStatus {
                    source: account.source.as_str().to_string(),
                    account_id: account.account_id.clone(),
                    channel,
                    priority,
                    kind: row.map_or_else(
                        || SubscriptionType::OptIn.as_str().to_string(),
                        |r| r.kind.clone(),
                    ),
                    updated_at: row.map(|r| r.updated_at),
                });
            }
        }
    }
    Ok(out)
}

/// Longest note accepted.
pub const NOTE_LENGTH_MAX: usize = 255;
/// Most notes one v1.1 item may add or update.
pub const NOTES_PER_ITEM_MAX: usize = 50;

/// A validated note to add (no id) or update (with id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteInput {
    pub id: Option<i64>,
    pub noted_at: Option<i64>,
    pub description: String,
}

impl NoteInput {
    pub fn parse(
        id: Option<i64>,
        noted_at: Option<i64>,
        description: Option<&str>,
    ) -> Result<NoteInput, CustomerError> {
        let description = description.map(str::trim).unwrap_or_default();
        if description.is_empty() || description.chars().count() > NOTE_LENGTH_MAX {
            return Err(CustomerError::Invalid(format!(
                "description is required and takes at most {NOTE_LENGTH_MAX} characters"
            )));
        }
        Ok(NoteInput { id, noted_at, description: description.to_string() })
    }
}

/// Adds or updates notes of a customer in one transaction; answers the notes as stored.
/// Updating a note the customer does not have fails the whole set.
pub async fn save_notes(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    inputs: &[NoteInput],
) -> Result<Vec<NoteRow>, CustomerError> {
    if inputs.is_empty() || inputs.len() > NOTES_PER_ITEM_MAX {
        return Err(CustomerError::Invalid(format!(
            "notes must list 1 to {NOTES_PER_ITEM_MAX} entries"
        )));
    }
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    if customer_store::get_customer(&mut tx, org, customer).await?.is_none() {
        return Err(CustomerError::NotFound);
    }
    let now = now_millis();
    let by = principal.actor.audit_identity();
    let mut saved = Vec::with_capacity(inputs.len());
    for input in inputs {
        let noted_at = input.noted_at.unwrap_or(now);
        let row: Option<NoteRow> = match input.id {
            None => dispatch!(&mut tx, |e| sqlx::query_as::<_, NoteRow>(
                "INSERT INTO customer_notes (org_id, customer_id, noted_at, description, \
                 created_by_type, created_by_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 RETURNING id, noted_at, description, created_by_type, created_by_id"
            )
            .bind(org.0)
            .bind(customer.0)
            .bind(noted_at)
            .bind(&input.description)
            .bind(by.0)
            .bind(by.1)
            .bind(now)
            .fetch_optional(e)
            .await)
            .map_err(DbError::from)?,
            Some(id) => dispatch!(&mut tx, |e| {
                sqlx::query_as::<_, NoteRow>(
                "UPDATE customer_notes SET description = $4, noted_at = COALESCE($5, noted_at), \
                 updated_at = $6 WHERE org_id = $1 AND customer_id = $2 AND id = $3 \
                 RETURNING id, noted_at, description, created_by_type, created_by_id"
            )
            .bind(org.0)
            .bind(customer.0)
            .bind(id)
            .bind(&input.description)
            .bind(input.noted_at)
            .bind(now)
            .fetch_optional(e)
            .await
            })
            .map_err(DbError::from)?,
        };
        let row = row.ok_or_else(|| {
            CustomerError::Invalid(format!(
                "note {} is not a note of the customer",
                input.id.unwrap_or_default()
            ))
        })?;
        saved.push(row);
    }
    let after: Vec<Value> = saved
        .iter()
        .zip(inputs)
        .map(|(n, i)| {
            json!({"id": n.id, "description": n.description,
                "action": if i.id.is_some() { "UPDATE" } else { "ADD" }})
        })
        .collect();
    record(
        &mut tx,
        principal,
        customer,
        "NOTES_CHANGE",
        "customer.notes_changed",
        None,
        json!({"notes": after}),
    )
    .await?;
    tx.commit().await?;
    Ok(saved)
}

/// Most preferences a customer may hold, and the longest name and value.
pub const PREFERENCES_MAX: usize = 100;
pub const PREFERENCE_NAME_MAX: usize = 100;
pub const PREFERENCE_VALUE_MAX: usize = 500;

/// Checks preferences: names of 1–100 characters, string values of at most 500.
pub fn check_preferences(values: &[(String, String)]) -> Result<(), CustomerError> {
    if values.is_empty() || values.len() > PREFERENCES_MAX {
        return Err(CustomerError::Invalid(format!(
            "custom_fields must list 1 to {PREFERENCES_MAX} fields"
        )));
    }
    for (name, value) in values {
        let name_len = name.trim().chars().count();
        if name_len == 0 || name_len > PREFERENCE_NAME_MAX {
            return Err(CustomerError::Invalid(format!(
                "custom field names take 1 to {PREFERENCE_NAME_MAX} characters"
            )));
        }
        if value.chars().count() > PREFERENCE_VALUE_MAX {
            return Err(CustomerError::Invalid(format!(
                "custom field {name} takes at most {PREFERENCE_VALUE_MAX} characters"
            )));
        }
    }
    Ok(())
}

/// The customer's preferences (name → value).
pub fn parse_preferences(stored: &str) -> Map<String, Value> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// Merges preferences into the customer's (a given name replaces its value); answers the result.
pub async fn set_preferences(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    values: &[(String, String)],
) -> Result<Map<String, Value>, CustomerError> {
    check_preferences(values)?;
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let current = customer_store::get_customer(&mut tx, org, customer)
        .await?
        .ok_or(CustomerError::NotFound)?;
    let before = parse_preferences(&current.preferences);
    let mut merged = before.clone();
    for (name, value) in values {
        merged.insert(name.trim().to_string(), Value::String(value.clone()));
    }
    if merged.len() > PREFERENCES_MAX {
        return Err(CustomerError::Invalid(format!(
            "a customer holds at most {PREFERENCES_MAX} preferences"
        )));
    }
    let update = CustomerRowUpdate { preferences: Some(merged.clone()), ..Default::default() };
    customer_store::update_customer(&mut tx, org, customer, &update).await?;
    record(
        &mut tx,
        principal,
        customer,
        "PREFERENCES_CHANGE",
        "customer.preferences_changed",
        Some(Value::Object(before)),
        Value::Object(merged.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_accept_v1_and_v2_spellings() {
        assert_eq!(Channel::parse("sms").unwrap(), Channel::Sms);
        assert_eq!(Channel::parse("MOBILE").unwrap(), Channel::Sms);
        assert_eq!(Channel::parse("mobilepush").unwrap(), Channel::MobilePush);
        assert_eq!(Channel::Sms.v1_name(), "SMS");
        assert!(Channel::parse("PIGEON").is_err());
        assert!(Priority::parse("urgent").is_err());
        assert!(SubscriptionType::parse("maybe").is_err());
    }

    #[test]
    fn notes_and_preferences_are_bounded() {
        assert!(NoteInput::parse(None, None, Some("  ")).is_err());
        assert!(NoteInput::parse(None, None, Some(&"x".repeat(256))).is_err());
        assert!(NoteInput::parse(None, None, Some(&"x".repeat(255))).is_ok());
        assert!(check_preferences(&[]).is_err());
        assert!(check_preferences(&[(String::new(), "v".into())]).is_err());
        assert!(check_preferences(&[("colour".into(), "blue".into())]).is_ok());
    }
}
