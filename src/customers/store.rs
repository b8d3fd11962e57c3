//! SQL for customers, their profiles, identifiers and status log; every function is org-first.

use serde_json::{Map, Value};

use super::model::{CommChannel, CustomerId, Identifier, SourceAccount};
use crate::db::{Connection, DbError, now_millis};
use crate::dispatch;
use crate::org::model::OrgId;

const CUSTOMER_COLUMNS: &str = "id, first_name, last_name, loyalty_type, status, status_label, \
    fraud_status, registered_at, registered_store_id, registered_till_id, extended_fields, \
    custom_fields, preferences, created_at, updated_at";
const PROFILE_COLUMNS: &str = "id, customer_id, source, account_id, first_name, last_name, fields, \
    comm_channels, created_by_till_id, created_by_store_id, modified_by_till_id, created_at, updated_at";

/// A customer row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CustomerRow {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub loyalty_type: String,
    pub status: String,
    pub status_label: String,
    pub fraud_status: Option<String>,
    pub registered_at: i64,
    pub registered_store_id: Option<i64>,
    pub registered_till_id: Option<i64>,
    pub extended_fields: String,
    pub custom_fields: String,
    pub preferences: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A profile (source account) row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: i64,
    pub customer_id: i64,
    pub source: String,
    pub account_id: String,
    pub first_name: String,
    pub last_name: String,
    pub fields: String,
    pub comm_channels: String,
    pub created_by_till_id: Option<i64>,
    pub created_by_store_id: Option<i64>,
    pub modified_by_till_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ProfileRow {
    /// True when this profile is the one of `account` (same source and account id).
    pub fn is_account(&self, account: &SourceAccount) -> bool {
        self.source == account.source.as_str() && self.account_id == account.account_id
    }
}

/// An identifier row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct IdentifierRow {
    pub customer_id: i64,
    pub source: String,
    pub account_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The lower-case "first last" used for name prefix search.
pub fn search_name(first: &str, last: &str) -> String {
    format!("{} {}", first.trim(), last.trim()).trim().to_lowercase()
}

/// The columns of a new customer.
pub struct NewCustomerRow<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub loyalty_type: &'a str,
    pub registered_at: i64,
    pub registered_store_id: Option<i64>,
    pub registered_till_id: Option<i64>,
    pub extended_fields: &'a Map<String, Value>,
}

pub async fn insert_customer(
    c: &mut impl Connection,
    org: OrgId,
    row: &NewCustomerRow<'_>,
) -> Result<CustomerId, DbError> {
    let now = now_millis();
    let extended = Value::Object(row.extended_fields.clone()).to_string();
    let id: i64 = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO customers (org_id, first_name, last_name, search_name, loyalty_type, \
         registered_at, registered_store_id, registered_till_id, extended_fields, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id"
    )
    .bind(org.0)
    .bind(row.first_name)
    .bind(row.last_name)
    .bind(search_name(row.first_name, row.last_name))
    .bind(row.loyalty_type)
    .bind(row.registered_at)
    .bind(row.registered_store_id)
    .bind(row.registered_till_id)
    .bind(&extended)
    .bind(now)
    .fetch_one(e)
    .await)?;
    Ok(CustomerId(id))
}

pub async fn get_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Option<CustomerRow>, DbError> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CustomerRow>(&sql)
        .bind(org.0)
        .bind(customer.0)
        .fetch_optional(e)
        .await)?)
}

/// Changes to the customer row; `None` keeps a column.
#[derive(Default)]
pub struct CustomerRowUpdate {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub loyalty_type: Option<&'static str>,
    pub extended_fields: Option<Map<String, Value>>,
    pub custom_fields: Option<Map<String, Value>>,
    pub preferences: Option<Map<String, Value>>,
}

pub async fn update_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    update: &CustomerRowUpdate,
) -> Result<(), DbError> {
    let Some(current) = get_customer(c, org, customer).await? else { return Ok(()) };
    let first = update.first_name.clone().unwrap_or(current.first_name);
    let last = update.last_name.clone().unwrap_or(current.last_name);
    let json =
        |m: &Option<Map<String, Value>>| m.as_ref().map(|m| Value::Object(m.clone()).to_string());
    dispatch!(c, |e| {
        sqlx::query(
        "UPDATE customers SET first_name = $3, last_name = $4, search_name = $5, \
         loyalty_type = COALESCE($6, loyalty_type), extended_fields = COALESCE($7, extended_fields), \
         custom_fields = COALESCE($8, custom_fields), preferences = COALESCE($9, preferences), \
         updated_at = $10 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(&first)
    .bind(&last)
    .bind(search_name(&first, &last))
    .bind(update.loyalty_type)
    .bind(json(&update.extended_fields))
    .bind(json(&update.custom_fields))
    .bind(json(&update.preferences))
    .bind(now_millis())
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Sets the customer's status and label (the caller appends to the status log).
pub async fn set_status(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    status: &str,
    label: &str,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE customers SET status = $3, status_label = $4, updated_at = $5 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(status)
    .bind(label)
    .bind(now_millis())
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Who made a change, for profiles and logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attribution {
    pub till_id: Option<i64>,
    pub store_id: Option<i64>,
}

pub struct NewProfileRow<'a> {
    pub account: &'a SourceAccount,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub fields: &'a Map<String, Value>,
    pub comm_channels: &'a [CommChannel],
    pub attribution: Attribution,
}

pub async fn insert_profile(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    row: &NewProfileRow<'_>,
) -> Result<i64, DbError> {
    let now = now_millis();
    let fields = Value::Object(row.fields.clone()).to_string();
    let channels = serde_json::to_string(row.comm_channels).unwrap_or_else(|_| "[]".into());
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO customer_profiles (org_id, customer_id, source, account_id, first_name, \
         last_name, fields, comm_channels, created_by_till_id, created_by_store_id, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(row.account.source.as_str())
    .bind(&row.account.account_id)
    .bind(row.first_name)
    .bind(row.last_name)
    .bind(&fields)
    .bind(&channels)
    .bind(row.attribution.till_id)
    .bind(row.attribution.store_id)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

pub async fn profiles(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Vec<ProfileRow>, DbError> {
    let sql = format!(
        "SELECT {PROFILE_COLUMNS} FROM customer_profiles WHERE org_id = $1 AND customer_id = $2 ORDER BY id"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ProfileRow>(&sql)
        .bind(org.0)
        .bind(customer.0)
        .fetch_all(e)
        .await)?)
}

/// Changes to one profile; `None` keeps a column.
#[derive(Default)]
pub struct ProfileRowUpdate {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub fields: Option<Map<String, Value>>,
    pub comm_channels: Option<Vec<CommChannel>>,
    pub modified_by_till_id: Option<i64>,
}

pub async fn update_profile(
    c: &mut impl Connection,
    org: OrgId,
    profile_id: i64,
    update: &ProfileRowUpdate,
) -> Result<(), DbError> {
    let fields = update.fields.as_ref().map(|m| Value::Object(m.clone()).to_string());
    let channels = update
        .comm_channels
        .as_ref()
        .map(|c| serde_json::to_string(c).unwrap_or_else(|_| "[]".into()));
    dispatch!(c, |e| sqlx::query(
        "UPDATE customer_profiles SET first_name = COALESCE($3, first_name), \
         last_name = COALESCE($4, last_name), fields = COALESCE($5, fields), \
         comm_channels = COALESCE($6, comm_channels), \
         modified_by_till_id = COALESCE($7, modified_by_till_id), updated_at = $8 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(profile_id)
    .bind(&update.first_name)
    .bind(&update.last_name)
    .bind(&fields)
    .bind(&channels)
    .bind(update.modified_by_till_id)
    .bind(now_millis())
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Adds an identifier to a customer's source account. A duplicate within the source account
/// fails with a unique violation, which callers turn into "already used".
pub async fn insert_identifier(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    account: &SourceAccount,
    identifier: &Identifier,
) -> Result<(), DbError> {
    insert_identifier_as(c, org, customer, account, identifier, false).await
}

/// [`insert_identifier`], `shared` (dual eligibility: other customers may hold the same value)
/// or not.
pub async fn insert_identifier_as(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    account: &SourceAccount,
    identifier: &Identifier,
    shared: bool,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO customer_identifiers (org_id, customer_id, source, account_id, type, value, \
         created_at, shared) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(account.source.as_str())
    .bind(&account.account_id)
    .bind(identifier.kind.as_str())
    .bind(&identifier.value)
    .bind(now_millis())
    .bind(shared)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Removes an identifier from a customer's source account; false when it was not there.
pub async fn delete_identifier(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    account: &SourceAccount,
    identifier: &Identifier,
) -> Result<bool, DbError> {
    let removed = dispatch!(c, |e| {
        sqlx::query(
        "DELETE FROM customer_identifiers WHERE org_id = $1 AND customer_id = $2 AND source = $3 \
         AND account_id = $4 AND type = $5 AND value = $6"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(account.source.as_str())
    .bind(&account.account_id)
    .bind(identifier.kind.as_str())
    .bind(&identifier.value)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(removed > 0)
}

/// The customer holding `identifier`: within one source account, or (with `None`) in any source,
/// the oldest holder first. Values shared under dual eligibility name a customer only when one
/// customer alone holds them.
pub async fn find_owner(
    c: &mut impl Connection,
    org: OrgId,
    account: Option<&SourceAccount>,
    identifier: &Identifier,
) -> Result<Option<CustomerId>, DbError> {
    let id: Option<i64> = match account {
        Some(account) => dispatch!(c, |e| sqlx::query_scalar(
            "SELECT customer_id FROM customer_identifiers WHERE org_id = $1 AND source = $2 \
             AND account_id = $3 AND type = $4 AND value = $5 AND shared = FALSE"
        )
        .bind(org.0)
        .bind(account.source.as_str())
        .bind(&account.account_id)
        .bind(identifier.kind.as_str())
        .bind(&identifier.value)
        .fetch_optional(e)
        .await)?,
        None => dispatch!(c, |e| sqlx::query_scalar(
            "SELECT customer_id FROM customer_identifiers WHERE org_id = $1 AND type = $2 \
             AND value = $3 AND shared = FALSE ORDER BY id LIMIT 1"
        )
        .bind(org.0)
        .bind(identifier.kind.as_str())
        .bind(&identifier.value)
        .fetch_optional(e)
        .await)?,
    };
    if id.is_some() {
        return Ok(id.map(CustomerId));
    }
    let holders = shared_holders(c, org, account, identifier).await?;
    Ok(match holders.as_slice() {
        [one] => Some(CustomerId(*one)),
        _ => None,
    })
}

/// The customers holding a shared value (at most two: enough to tell one from several).
async fn shared_holders(
    c: &mut impl Connection,
    org: OrgId,
    account: Option<&SourceAccount>,
    identifier: &Identifier,
) -> Result<Vec<i64>, DbError> {
    let (source, account_id) = match account {
        Some(a) => (a.source.as_str(), a.account_id.as_str()),
        None => ("", ""),
    };
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT DISTINCT customer_id FROM customer_identifiers WHERE org_id = $1 AND type = $2 \
         AND value = $3 AND shared = TRUE AND ($4 = '' OR (source = $4 AND account_id = $5)) \
         LIMIT 2"
    )
    .bind(org.0)
    .bind(identifier.kind.as_str())
    .bind(&identifier.value)
    .bind(source)
    .bind(account_id)
    .fetch_all(e)
    .await)?)
}

/// True when the customer holds `identifier` in the source account.
pub async fn holds_identifier(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    account: &SourceAccount,
    identifier: &Identifier,
) -> Result<bool, DbError> {
    let found: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "SELECT id FROM customer_identifiers WHERE org_id = $1 AND customer_id = $2 \
         AND source = $3 AND account_id = $4 AND type = $5 AND value = $6"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(account.source.as_str())
    .bind(&account.account_id)
    .bind(identifier.kind.as_str())
    .bind(&identifier.value)
    .fetch_optional(e)
    .await)?;
    Ok(found.is_some())
}

pub async fn identifiers(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Vec<IdentifierRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, IdentifierRow>(
        "SELECT customer_id, source, account_id, type, value FROM customer_identifiers \
         WHERE org_id = $1 AND customer_id = $2 ORDER BY id"
    )
    .bind(org.0)
    .bind(customer.0)
    .fetch_all(e)
    .await)?)
}

/// One entry of the status log.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StatusLogRow {
    pub id: i64,
    pub status: String,
    pub label: String,
    pub reason: String,
    pub created_by_type: String,
    pub created_by_id: Option<i64>,
    pub created_at: i64,
}

pub async fn append_status_log(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    status: &str,
    label: &str,
    reason: &str,
    by: (&str, Option<i64>),
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO customer_status_log (org_id, customer_id, status, label, reason, \
         created_by_type, created_by_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(status)
    .bind(label)
    .bind(reason)
    .bind(by.0)
    .bind(by.1)
    .bind(now_millis())
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The newest `limit` status-log entries of a customer, newest first.
pub async fn status_log(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    limit: i64,
) -> Result<Vec<StatusLogRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, StatusLogRow>(
        "SELECT id, status, label, reason, created_by_type, created_by_id, created_at \
         FROM customer_status_log WHERE org_id = $1 AND customer_id = $2 ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// What a search looks at.
#[derive(Clone, Debug)]
pub enum SearchTarget {
    /// Prefix of an identifier value of one type.
    Identifier(&'static str, String),
    /// Prefix of the lower-case "first last" name.
    Name(String),
}

/// The exclusive upper bound of a prefix range: every string starting with `prefix` sorts below
/// it byte-wise, so `value >= prefix AND value < bound` is a prefix search that uses the index.
fn prefix_bound(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Customer ids matching any of `targets` (OR), newest first, with the total.
pub async fn search(
    c: &mut impl Connection,
    org: OrgId,
    targets: &[SearchTarget],
    limit: i64,
    offset: i64,
) -> Result<(Vec<CustomerId>, i64), DbError> {
    let mut parts = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    for target in targets {
        match target {
            SearchTarget::Identifier(kind, prefix) => {
                binds.push((*kind).to_string());
                binds.push(prefix.clone());
                binds.push(prefix_bound(prefix));
                let n = binds.len();
                parts.push(format!(
                    "SELECT customer_id AS id FROM customer_identifiers WHERE org_id = $1 \
                     AND type = ${} AND value >= ${} AND value < ${}",
                    n - 1,
                    n,
                    n + 1
                ));
            }
            SearchTarget::Name(prefix) => {
                binds.push(prefix.clone());
                binds.push(prefix_bound(prefix));
                let n = binds.len();
                parts.push(format!(
                    "SELECT id FROM customers WHERE org_id = $1 AND search_name >= ${} \
                     AND search_name < ${}",
                    n,
                    n + 1
                ));
            }
        }
    }
    if parts.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let union = parts.join(" UNION ");
    let count_sql = format!("SELECT COUNT(*) FROM ({union}) matches");
    let page_sql =
        format!("SELECT id FROM ({union}) matches ORDER BY id DESC LIMIT {limit} OFFSET {offset}");
    let total: i64 = dispatch!(c, |e| {
        let mut q = sqlx::query_scalar(&count_sql).bind(org.0);
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_one(e).await
    })?;
    let ids: Vec<i64> = dispatch!(c, |e| {
        let mut q = sqlx::query_scalar(&page_sql).bind(org.0);
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_all(e).await
    })?;
    Ok((ids.into_iter().map(CustomerId).collect(), total))
}
