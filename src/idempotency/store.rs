//! SQL for idempotency keys: claim, complete, release and purge.

use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

use super::ABANDONED_AFTER_MS;

/// Whose key it is: keys of different orgs and API keys never collide.
pub struct Scope {
    pub org: OrgId,
    pub api_key: String,
    pub key: String,
}

/// A response kept for replay.
#[derive(Debug, sqlx::FromRow)]
pub struct StoredResponse {
    pub status: i64,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What claiming a key found.
#[derive(Debug)]
pub enum Claim {
    /// The caller owns the key now and must run the request.
    New,
    /// The same request finished before; here is its response.
    Replay(StoredResponse),
    /// The same request is running right now.
    InProgress,
    /// The key was used with a different request.
    Mismatch,
}

#[derive(sqlx::FromRow)]
struct Row {
    request_hash: String,
    response_status: Option<i64>,
    content_type: Option<String>,
    response_body: Option<Vec<u8>>,
    created_at: i64,
    expires_at: i64,
}

pub async fn claim(
    c: &mut impl Connection,
    scope: &Scope,
    request_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<Claim, DbError> {
    let existing = dispatch!(c, |e| {
        sqlx::query_as::<_, Row>(
        "SELECT request_hash, response_status, content_type, response_body, created_at, expires_at \
         FROM idempotency_keys WHERE org_id = $1 AND api_key = $2 AND idempotency_key = $3"
    )
    .bind(scope.org.0)
    .bind(&scope.api_key)
    .bind(&scope.key)
    .fetch_optional(e)
    .await
    })?;
    if let Some(row) = existing {
        let abandoned = row.response_status.is_none() && now - row.created_at > ABANDONED_AFTER_MS;
        if row.expires_at > now && !abandoned {
            if row.request_hash != request_hash {
                return Ok(Claim::Mismatch);
            }
            return Ok(match (row.response_status, row.response_body) {
                (Some(status), Some(body)) => {
                    Claim::Replay(StoredResponse { status, content_type: row.content_type, body })
                }
                _ => Claim::InProgress,
            });
        }
        release(c, scope).await?;
    }
    // Two racing first requests: the primary key lets exactly one insert win.
    let inserted = dispatch!(c, |e| {
        sqlx::query(
        "INSERT INTO idempotency_keys (org_id, api_key, idempotency_key, request_hash, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
    )
    .bind(scope.org.0)
    .bind(&scope.api_key)
    .bind(&scope.key)
    .bind(request_hash)
    .bind(now)
    .bind(expires_at)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(if inserted == 1 { Claim::New } else { Claim::InProgress })
}

pub async fn complete(
    c: &mut impl Connection,
    scope: &Scope,
    response: &StoredResponse,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE idempotency_keys SET response_status = $4, content_type = $5, response_body = $6 \
         WHERE org_id = $1 AND api_key = $2 AND idempotency_key = $3"
    )
    .bind(scope.org.0)
    .bind(&scope.api_key)
    .bind(&scope.key)
    .bind(response.status)
    .bind(&response.content_type)
    .bind(&response.body)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn release(c: &mut impl Connection, scope: &Scope) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "DELETE FROM idempotency_keys WHERE org_id = $1 AND api_key = $2 AND idempotency_key = $3"
    )
    .bind(scope.org.0)
    .bind(&scope.api_key)
    .bind(&scope.key)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Deletes up to `batch` expired keys of every org (a maintenance job); returns how many went.
pub async fn purge_expired(c: &mut impl Connection, now: i64, batch: i64) -> Result<u64, DbError> {
    Ok(dispatch!(c, |e| {
        sqlx::query(
        "DELETE FROM idempotency_keys WHERE (org_id, api_key, idempotency_key) IN \
         (SELECT org_id, api_key, idempotency_key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)"
    )
    .bind(now)
    .bind(batch)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?)
}
