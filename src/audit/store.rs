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
