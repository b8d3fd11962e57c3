//! SQL for the audit log.

use crate::db::{Connection, DbError, now_millis};
use crate::dispatch;
use crate::org::model::OrgId;

use super::{AuditActor, Change};

pub async fn insert(
    c: &mut impl Connection,
    org: OrgId,
    actor: &AuditActor,
    change: &Change<'_>,
) -> Result<(), DbError> {
    let before = change.before.as_ref().map(|v| v.to_string());
    let after = change.after.as_ref().map(|v| v.to_string());
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO audit_log (org_id, occurred_at, request_id, principal_type, principal_id, \
         entity_type, entity_id, action, before_state, after_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    )
    .bind(org.0)
    .bind(now_millis())
    .bind(&actor.request_id)
    .bind(actor.principal_type)
    .bind(actor.principal_id)
    .bind(change.entity_type)
    .bind(change.entity_id)
    .bind(change.action)
    .bind(&before)
    .bind(&after)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// An audit record as stored, for reads and tests.
#[derive(Debug, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub principal_type: String,
    pub principal_id: Option<i64>,
    pub entity_type: String,
    pub entity_id: i64,
    pub action: String,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
}

/// The newest `limit` records of an entity type in the org, newest first.
pub async fn recent(
    c: &mut impl Connection,
    org: OrgId,
    entity_type: &str,
    limit: i64,
) -> Result<Vec<AuditRow>, DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query_as::<_, AuditRow>(
        "SELECT id, principal_type, principal_id, entity_type, entity_id, action, before_state, \
         after_state FROM audit_log WHERE org_id = $1 AND entity_type = $2 ORDER BY id DESC LIMIT $3"
    )
    .bind(org.0)
    .bind(entity_type)
    .bind(limit)
    .fetch_all(e)
    .await
    })?)
}

/// An audit record with every column, for the audit log API.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub occurred_at: i64,
    pub request_id: Option<String>,
    pub principal_type: String,
    pub principal_id: Option<i64>,
    pub entity_type: String,
    pub entity_id: i64,
    pub action: String,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
}

const ENTRY_COLUMNS: &str = "id, occurred_at, request_id, principal_type, principal_id, \
    entity_type, entity_id, action, before_state, after_state";

/// Which records of one entity to read.
#[derive(Clone, Debug)]
pub struct EntityQuery<'a> {
    pub entity_type: &'a str,
    pub entity_id: i64,
    /// Only records left by these principal types (all when `None`; none when empty).
    pub principal_types: Option<&'a [&'a str]>,
    /// Only these actions (`include`), or all but these (`exclude`).
    pub actions: Option<(bool, &'a [&'a str])>,
    /// `occurred_at` window, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Sort by `occurred_at` (else by id), ascending or not; ties by id.
    pub by_time: bool,
    pub ascending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// The first placeholder number after the fixed ones of [`entity_records`].
const FIRST_LIST_PLACEHOLDER: usize = 6;

/// Appends `values` to the bound values; their placeholders (`$6, $7`, …), comma-separated.
fn push_list<'v>(binds: &mut Vec<&'v str>, values: &[&'v str]) -> String {
    let first = FIRST_LIST_PLACEHOLDER + binds.len();
    binds.extend_from_slice(values);
    (0..values.len()).map(|i| format!("${}", first + i)).collect::<Vec<_>>().join(", ")
}

/// One page of an entity's records and the number matching.
pub async fn entity_records(
    c: &mut impl Connection,
    org: OrgId,
    q: &EntityQuery<'_>,
) -> Result<(Vec<AuditEntry>, i64), DbError> {
    // $1 org, $2 entity type, $3 entity id, $4/$5 the window (NULL = open), then the lists.
    let mut sql = String::from(
        "FROM audit_log WHERE org_id = $1 AND entity_type = $2 AND entity_id = $3 \
         AND occurred_at >= COALESCE($4, occurred_at) AND occurred_at <= COALESCE($5, occurred_at)",
    );
    let mut binds: Vec<&str> = Vec::new();
    if let Some(types) = q.principal_types {
        if types.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            let names = push_list(&mut binds, types);
            sql.push_str(&format!(" AND principal_type IN ({names})"));
        }
    }
    if let Some((include, actions)) = q.actions
        && !actions.is_empty()
    {
        let not = if include { "" } else { "NOT " };
        let names = push_list(&mut binds, actions);
        sql.push_str(&format!(" AND action {not}IN ({names})"));
    }
    let next = FIRST_LIST_PLACEHOLDER + binds.len();
    let count_sql = format!("SELECT COUNT(*) {sql}");
    let total: i64 = dispatch!(c, |e| {
        let mut query = sqlx::query_scalar(&count_sql)
            .bind(org.0)
            .bind(q.entity_type)
            .bind(q.entity_id)
            .bind(q.from)
            .bind(q.to);
        for value in &binds {
            query = query.bind(*value);
        }
        query.fetch_one(e).await
    })?;
    let order = if q.ascending { "ASC" } else { "DESC" };
    let column = if q.by_time { "occurred_at" } else { "id" };
    let page_sql = format!(
        "SELECT {ENTRY_COLUMNS} {sql} ORDER BY {column} {order}, id {order} LIMIT ${} OFFSET ${}",
        next,
        next + 1
    );
    let rows = dispatch!(c, |e| {
        let mut query = sqlx::query_as::<_, AuditEntry>(&page_sql)
            .bind(org.0)
            .bind(q.entity_type)
            .bind(q.entity_id)
            .bind(q.from)
            .bind(q.to);
        for value in &binds {
            query = query.bind(*value);
        }
        query.bind(q.limit).bind(q.offset).fetch_all(e).await
    })?;
    Ok((rows, total))
}

/// The newest records (at most `limit`) of an entity type whose before or after state contains
/// `fragment` (a pre-filter: callers check the match themselves), newest first.
pub async fn records_containing(
    c: &mut impl Connection,
    org: OrgId,
    entity_type: &str,
    fragment: &str,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    let escaped: String = fragment
        .chars()
        .flat_map(|ch| match ch {
            '\\' | '%' | '_' => vec!['\\', ch],
            other => vec![other],
        })
        .collect();
    let pattern = format!("%{escaped}%");
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_log WHERE org_id = $1 AND entity_type = $2 \
         AND (after_state LIKE $3 ESCAPE '\\' OR before_state LIKE $3 ESCAPE '\\') \
         ORDER BY id DESC LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, AuditEntry>(&sql)
        .bind(org.0)
        .bind(entity_type)
        .bind(&pattern)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}
