//! SQL for the domain-event outbox.

use crate::db::{Connection, DbError, now_millis};
use crate::dispatch;
use crate::org::model::OrgId;

use super::NewEvent;

pub async fn insert(
    c: &mut impl Connection,
    org: OrgId,
    event: &NewEvent<'_>,
    request_id: Option<&str>,
) -> Result<i64, DbError> {
    let payload = event.payload.to_string();
    Ok(dispatch!(c, |e| {
        sqlx::query_scalar(
        "INSERT INTO domain_events (org_id, event_type, entity_type, entity_id, payload, request_id, \
         occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
    )
    .bind(org.0)
    .bind(event.event_type)
    .bind(event.entity_type)
    .bind(event.entity_id)
    .bind(&payload)
    .bind(request_id)
    .bind(now_millis())
    .fetch_one(e)
    .await
    })?)
}

/// An event as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub event_type: String,
    pub entity_type: String,
    pub entity_id: i64,
    pub payload: String,
    pub occurred_at: i64,
}

/// Events of one entity, oldest first, at most `limit`.
pub async fn for_entity(
    c: &mut impl Connection,
    org: OrgId,
    entity_type: &str,
    entity_id: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EventRow>(
        "SELECT id, event_type, entity_type, entity_id, payload, occurred_at FROM domain_events \
         WHERE org_id = $1 AND entity_type = $2 AND entity_id = $3 ORDER BY id LIMIT $4"
    )
    .bind(org.0)
    .bind(entity_type)
    .bind(entity_id)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}
