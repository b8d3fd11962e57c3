//! SQL for event definitions, posted events, de-duplication keys and the attribute index; every
//! function is org-first.

use crate::customers::model::CustomerId;
use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

/// An event definition row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DefinitionRow {
    pub id: i64,
    pub event_id: String,
    pub name: String,
    pub description: String,
    pub actions: String,
    pub fields: String,
    pub is_active: bool,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const DEFINITION_COLUMNS: &str =
    "id, event_id, name, description, actions, fields, is_active, version, created_at, updated_at";

/// A definition to insert; `actions` and `fields` are JSON text.
pub struct NewDefinition<'a> {
    pub event_id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub actions: &'a str,
    pub fields: &'a str,
}

/// Inserts a definition unless the org already has an event of that name (then `None`).
pub async fn insert_definition(
    c: &mut impl Connection,
    org: OrgId,
    def: &NewDefinition<'_>,
    now: i64,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO behavioral_events (org_id, event_id, name, description, actions, fields, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (org_id, name) DO NOTHING RETURNING id"
    )
    .bind(org.0)
    .bind(def.event_id)
    .bind(def.name)
    .bind(def.description)
    .bind(def.actions)
    .bind(def.fields)
    .bind(now)
    .fetch_optional(e)
    .await)?)
}

pub async fn count_definitions(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM behavioral_events WHERE org_id = $1"
    )
    .bind(org.0)
    .fetch_one(e)
    .await)?)
}

/// The org's event of that exact name.
pub async fn definition_by_name(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<Option<DefinitionRow>, DbError> {
    let sql = format!(
        "SELECT {DEFINITION_COLUMNS} FROM behavioral_events WHERE org_id = $1 AND name = $2"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, DefinitionRow>(&sql)
        .bind(org.0)
        .bind(name)
        .fetch_optional(e)
        .await)?)
}

/// The org's event definitions by creation, at most `limit`.
pub async fn definitions(
    c: &mut impl Connection,
    org: OrgId,
    limit: i64,
) -> Result<Vec<DefinitionRow>, DbError> {
    let sql = format!(
        "SELECT {DEFINITION_COLUMNS} FROM behavioral_events WHERE org_id = $1 ORDER BY id LIMIT $2"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, DefinitionRow>(&sql)
        .bind(org.0)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// Replaces a definition's description, actions and fields; the version goes up by one.
pub async fn update_definition(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    description: &str,
    actions: &str,
    fields: &str,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE behavioral_events SET description = $3, actions = $4, fields = $5, \
         version = version + 1, updated_at = $6 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(description)
    .bind(actions)
    .bind(fields)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Turns a definition on or off.
pub async fn set_active(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    active: bool,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE behavioral_events SET is_active = $3, updated_at = $4 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(active)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A definition with the time its latest event was received.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RunningRow {
    pub name: String,
    pub is_active: bool,
    pub last_received_at: Option<i64>,
}

/// Every definition of the org (at most `limit`) with its latest event's receive time.
pub async fn running(
    c: &mut impl Connection,
    org: OrgId,
    limit: i64,
) -> Result<Vec<RunningRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, RunningRow>(
        "SELECT b.name, b.is_active, (SELECT MAX(d.received_at) FROM behavioral_event_data d \
         WHERE d.org_id = b.org_id AND d.definition_id = b.id) AS last_received_at \
         FROM behavioral_events b WHERE b.org_id = $1 ORDER BY b.id LIMIT $2"
    )
    .bind(org.0)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// Records the first event of a de-duplication key; false when the key was already taken.
pub async fn claim_key(
    c: &mut impl Connection,
    org: OrgId,
    key_hash: &str,
    event_id: &str,
    now: i64,
) -> Result<bool, DbError> {
    let id: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO behavioral_event_keys (org_id, key_hash, event_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, key_hash) DO NOTHING RETURNING id"
    )
    .bind(org.0)
    .bind(key_hash)
    .bind(event_id)
    .bind(now)
    .fetch_optional(e)
    .await)?;
    Ok(id.is_some())
}

/// A posted event to store; JSON columns are text.
pub struct NewEvent<'a> {
    pub definition_id: i64,
    pub event_name: &'a str,
    pub event_id: &'a str,
    pub request_id: &'a str,
    pub customer: Option<CustomerId>,
    pub source: &'a str,
    pub account_id: &'a str,
    pub till_code: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub external_event_id: Option<&'a str>,
    pub attributes: &'a str,
    pub psi_attributes: &'a str,
    pub input_request: &'a str,
    pub is_duplicate: bool,
    pub status: &'a str,
    pub message: &'a str,
    pub states: &'a str,
    pub event_at: i64,
    pub received_at: i64,
    pub response_ms: i64,
}

pub async fn insert_event(
    c: &mut impl Connection,
    org: OrgId,
    event: &NewEvent<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO behavioral_event_data (org_id, definition_id, event_name, event_id, \
         request_id, customer_id, source, account_id, till_code, webhook_id, external_event_id, \
         attributes, psi_attributes, input_request, is_duplicate, status, message, states, \
         event_at, received_at, response_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) RETURNING id"
    )
    .bind(org.0)
    .bind(event.definition_id)
    .bind(event.event_name)
    .bind(event.event_id)
    .bind(event.request_id)
    .bind(event.customer.map(|c| c.0))
    .bind(event.source)
    .bind(event.account_id)
    .bind(event.till_code)
    .bind(event.webhook_id)
    .bind(event.external_event_id)
    .bind(event.attributes)
    .bind(event.psi_attributes)
    .bind(event.input_request)
    .bind(event.is_duplicate)
    .bind(event.status)
    .bind(event.message)
    .bind(event.states)
    .bind(event.event_at)
    .bind(event.received_at)
    .bind(event.response_ms)
    .fetch_one(e)
    .await)?)
}

/// Indexes an event's attributes (name, value as text) for search; callers bound the list.
pub async fn insert_attributes(
    c: &mut impl Connection,
    org: OrgId,
    event_data_id: i64,
    attributes: &[(String, String)],
) -> Result<(), DbError> {
    if attributes.is_empty() {
        return Ok(());
    }
    // `$1` is the org and `$2` the event; each attribute adds its name and value.
    let rows: Vec<String> = (0..attributes.len())
        .map(|i| format!("($1, $2, ${}, ${})", 2 * i + 3, 2 * i + 4))
        .collect();
    let sql = format!(
        "INSERT INTO behavioral_event_attributes (org_id, event_data_id, name, value) VALUES {}",
        rows.join(", ")
    );
    dispatch!(c, |e| {
        let mut query = sqlx::query(&sql).bind(org.0).bind(event_data_id);
        for (name, value) in attributes {
            query = query.bind(name.as_str()).bind(value.as_str());
        }
        query.execute(e).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// A posted event as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub event_name: String,
    pub event_id: String,
    pub request_id: String,
    pub customer_id: Option<i64>,
    pub source: String,
    pub account_id: String,
    pub till_code: Option<String>,
    pub webhook_id: Option<String>,
    pub external_event_id: Option<String>,
    pub attributes: String,
    pub psi_attributes: String,
    pub input_request: String,
    pub is_duplicate: bool,
    pub status: String,
    pub message: String,
    pub states: String,
    pub event_at: i64,
    pub received_at: i64,
    pub response_ms: i64,
}

const EVENT_COLUMNS: &str = "d.id, d.event_name, d.event_id, d.request_id, d.customer_id, \
    d.source, d.account_id, d.till_code, d.webhook_id, d.external_event_id, d.attributes, \
    d.psi_attributes, d.input_request, d.is_duplicate, d.status, d.message, d.states, \
    d.event_at, d.received_at, d.response_ms";

/// Events posted under one request id, in posting order, at most `limit`.
pub async fn events_by_request(
    c: &mut impl Connection,
    org: OrgId,
    request_id: &str,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM behavioral_event_data d \
         WHERE d.org_id = $1 AND d.request_id = $2 ORDER BY d.id LIMIT $3"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EventRow>(&sql)
        .bind(org.0)
        .bind(request_id)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// One event by its generated event id.
pub async fn event_by_event_id(
    c: &mut impl Connection,
    org: OrgId,
    event_id: &str,
) -> Result<Option<EventRow>, DbError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM behavioral_event_data d \
         WHERE d.org_id = $1 AND d.event_id = $2"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EventRow>(&sql)
        .bind(org.0)
        .bind(event_id)
        .fetch_optional(e)
        .await)?)
}

/// A bound value of a dynamically built filter.
#[derive(Clone, Debug)]
pub enum Param {
    Int(i64),
    Text(String),
    Bool(bool),
}

/// The filters of event lists (customer events, logs, search); `None` means "any".
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub event_name: Option<String>,
    pub event_id: Option<String>,
    pub customer: Option<CustomerId>,
    pub is_duplicate: Option<bool>,
    /// Event time (`event_at`) bounds, inclusive.
    pub event_from: Option<i64>,
    pub event_till: Option<i64>,
    /// Receive time (`received_at`) bounds, inclusive.
    pub received_from: Option<i64>,
    pub received_till: Option<i64>,
    /// Attribute name and the text values that match it (the value as given and normalised).
    pub attributes: Vec<(String, Vec<String>)>,
}

impl EventFilter {
    /// The `WHERE` clause (after `d.org_id = $1`) and its parameters, numbered from `$2`.
    fn clause(&self) -> (String, Vec<Param>) {
        let mut sql = String::from("d.org_id = $1");
        let mut params: Vec<Param> = Vec::new();
        let mut push = |sql: &mut String, condition: &str, param: Param| {
            params.push(param);
            sql.push_str(&condition.replace("?", &format!("${}", params.len() + 1)));
        };
        if let Some(name) = &self.event_name {
            push(&mut sql, " AND d.event_name = ?", Param::Text(name.clone()));
        }
        if let Some(id) = &self.event_id {
            push(&mut sql, " AND d.event_id = ?", Param::Text(id.clone()));
        }
        if let Some(customer) = self.customer {
            push(&mut sql, " AND d.customer_id = ?", Param::Int(customer.0));
        }
        if let Some(duplicate) = self.is_duplicate {
            push(&mut sql, " AND d.is_duplicate = ?", Param::Bool(duplicate));
        }
        if let Some(from) = self.event_from {
            push(&mut sql, " AND d.event_at >= ?", Param::Int(from));
        }
        if let Some(till) = self.event_till {
            push(&mut sql, " AND d.event_at <= ?", Param::Int(till));
        }
        if let Some(from) = self.received_from {
            push(&mut sql, " AND d.received_at >= ?", Param::Int(from));
        }
        if let Some(till) = self.received_till {
            push(&mut sql, " AND d.received_at <= ?", Param::Int(till));
        }
        for (name, values) in &self.attributes {
            push(
                &mut sql,
                " AND EXISTS (SELECT 1 FROM behavioral_event_attributes a WHERE a.org_id = d.org_id \
                 AND a.event_data_id = d.id AND a.name = ?",
                Param::Text(name.clone()),
            );
            let mut first = true;
            for value in values {
                let condition = if first { " AND a.value IN (?" } else { ", ?" };
                first = false;
                push(&mut sql, condition, Param::Text(value.clone()));
            }
            sql.push_str(if first { ")" } else { "))" });
        }
        (sql, params)
    }
}

/// Which time orders a list, and which way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    EventTimeAsc,
    EventTimeDesc,
    ReceivedDesc,
}

impl Order {
    fn sql(self) -> &'static str {
        match self {
            Order::EventTimeAsc => "d.event_at ASC, d.id ASC",
            Order::EventTimeDesc => "d.event_at DESC, d.id DESC",
            Order::ReceivedDesc => "d.received_at DESC, d.id DESC",
        }
    }
}

macro_rules! bind_params {
    ($query:expr, $org:expr, $params:expr) => {{
        let mut query = $query.bind($org);
        for param in $params {
            query = match param {
                Param::Int(v) => query.bind(*v),
                Param::Text(v) => query.bind(v.as_str()),
                Param::Bool(v) => query.bind(*v),
            };
        }
        query
    }};
}

/// One page of the events matching `filter`, in `order`.
pub async fn events(
    c: &mut impl Connection,
    org: OrgId,
    filter: &EventFilter,
    order: Order,
    limit: i64,
    offset: i64,
) -> Result<Vec<EventRow>, DbError> {
    let (clause, params) = filter.clause();
    let n = params.len();
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM behavioral_event_data d WHERE {clause} ORDER BY {} \
         LIMIT ${} OFFSET ${}",
        order.sql(),
        n + 2,
        n + 3
    );
    Ok(dispatch!(c, |e| {
        let query = bind_params!(sqlx::query_as::<_, EventRow>(&sql), org.0, &params);
        query.bind(limit).bind(offset).fetch_all(e).await
    })?)
}

/// How many events match `filter`.
pub async fn count_events(
    c: &mut impl Connection,
    org: OrgId,
    filter: &EventFilter,
) -> Result<i64, DbError> {
    let (clause, params) = filter.clause();
    let sql = format!("SELECT COUNT(*) FROM behavioral_event_data d WHERE {clause}");
    Ok(dispatch!(c, |e| {
        let query = bind_params!(sqlx::query_scalar::<_, i64>(&sql), org.0, &params);
        query.fetch_one(e).await
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_number_their_parameters() {
        let filter = EventFilter {
            event_name: Some("scan".into()),
            customer: Some(CustomerId(7)),
            attributes: vec![("hotel".into(), vec!["A".into(), "B".into()])],
            ..EventFilter::default()
        };
        let (sql, params) = filter.clause();
        assert_eq!(params.len(), 5);
        assert!(sql.contains("d.event_name = $2"), "{sql}");
        assert!(sql.contains("d.customer_id = $3"), "{sql}");
        assert!(sql.contains("a.name = $4 AND a.value IN ($5, $6))"), "{sql}");
    }
}
