//! SQL for credentials: tills by login name, OAuth clients, admin tokens and installation secrets.
//!
//! Credential lookups by login name, client key or token hash are the only store functions not
//! scoped by an org: they are how the org of a request is found.

use crate::db::{Connection, DbError, now_millis};
use crate::dispatch;
use crate::org::model::OrgId;

/// What Basic auth needs of a till.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TillCredentials {
    pub till_id: i64,
    pub org_id: i64,
    pub store_id: i64,
    pub code: String,
    pub password_hash: String,
    pub credential_version: i64,
    pub is_active: bool,
    pub permissions: String,
}

pub async fn till_credentials(
    c: &mut impl Connection,
    code: &str,
) -> Result<Option<TillCredentials>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TillCredentials>(
        "SELECT t.id AS till_id, t.org_id, t.store_id, t.code, t.password_hash, \
         t.credential_version, t.is_active, g.permissions \
         FROM tills t JOIN access_groups g ON g.id = t.access_group_id WHERE t.code = $1"
    )
    .bind(code)
    .fetch_optional(e)
    .await)?)
}

/// What OAuth needs of a client.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OAuthClient {
    pub id: i64,
    pub org_id: i64,
    pub client_key: String,
    pub secret_hash: String,
    pub token_ttl_seconds: i64,
    pub is_active: bool,
    pub default_till_id: Option<i64>,
    pub default_store_id: Option<i64>,
    pub permissions: String,
}

const CLIENT_SELECT: &str = "SELECT c.id, c.org_id, c.client_key, c.secret_hash, \
    c.token_ttl_seconds, c.is_active, c.default_till_id, t.store_id AS default_store_id, \
    g.permissions FROM oauth_clients c JOIN access_groups g ON g.id = c.access_group_id \
    LEFT JOIN tills t ON t.id = c.default_till_id";

pub async fn oauth_client_by_key(
    c: &mut impl Connection,
    key: &str,
) -> Result<Option<OAuthClient>, DbError> {
    let sql = format!("{CLIENT_SELECT} WHERE c.client_key = $1");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OAuthClient>(&sql).bind(key).fetch_optional(e).await)?)
}

pub async fn oauth_client(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<OAuthClient>, DbError> {
    let sql = format!("{CLIENT_SELECT} WHERE c.org_id = $1 AND c.id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OAuthClient>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// A new OAuth client's row.
pub struct NewOAuthClient<'a> {
    pub name: &'a str,
    pub client_key: &'a str,
    pub secret_hash: &'a str,
    pub token_ttl_seconds: i64,
    pub access_group_id: i64,
    pub default_till_id: Option<i64>,
}

pub async fn insert_oauth_client(
    c: &mut impl Connection,
    org: OrgId,
    client: &NewOAuthClient<'_>,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO oauth_clients (org_id, access_group_id, default_till_id, name, client_key, \
         secret_hash, token_ttl_seconds, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING id"
    )
    .bind(org.0)
    .bind(client.access_group_id)
    .bind(client.default_till_id)
    .bind(client.name)
    .bind(client.client_key)
    .bind(client.secret_hash)
    .bind(client.token_ttl_seconds)
    .bind(now_millis())
    .fetch_one(e)
    .await)?)
}

/// An admin token's id and org, found by the SHA-256 of the token.
pub async fn admin_token(
    c: &mut impl Connection,
    token_hash: &str,
) -> Result<Option<(i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64)>(
        "SELECT id, org_id FROM admin_tokens WHERE token_hash = $1"
    )
    .bind(token_hash)
    .fetch_optional(e)
    .await)?)
}

pub async fn insert_admin_token(
    c: &mut impl Connection,
    org: OrgId,
    token_hash: &str,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO admin_tokens (org_id, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id"
    )
    .bind(org.0)
    .bind(token_hash)
    .bind(now_millis())
    .fetch_one(e)
    .await)?)
}

/// Returns the installation secret called `name`, storing `candidate` first if there is none.
/// Concurrent first starts agree: the first insert wins and everyone reads it back.
pub async fn installation_secret(
    c: &mut impl Connection,
    name: &str,
    candidate: &str,
) -> Result<String, DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO installation (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
    )
    .bind(name)
    .bind(candidate)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(dispatch!(c, |e| sqlx::query_scalar("SELECT value FROM installation WHERE name = $1")
        .bind(name)
        .fetch_one(e)
        .await)?)
}
