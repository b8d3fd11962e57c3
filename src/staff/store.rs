//! SQL for staff accounts, their one-time codes and access tokens.
//!
//! Every function takes the org id first, except [`token_credentials`]: a token is how the org
//! of a staff request is found (like the till and OAuth lookups of `auth::store`).

use crate::db::{Connection, DbError};
use crate::dispatch;
use crate::org::model::OrgId;

use super::model::{IdentifierKind, Placement, STATUS_REMOVED};

/// A staff account as stored, with the codes of its store, zone or concept.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StaffRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub first_name: String,
    pub last_name: String,
    pub title: String,
    pub staff_type: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub mobile_verified: bool,
    pub email_verified: bool,
    pub scope_type: String,
    pub store_id: Option<i64>,
    pub zone_id: Option<i64>,
    pub concept_id: Option<i64>,
    pub store_code: Option<String>,
    pub zone_code: Option<String>,
    pub concept_code: Option<String>,
    pub status: String,
    pub credential_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl StaffRow {
    /// First and last name, or the username when both are empty.
    pub fn display_name(&self) -> String {
        let full = format!("{} {}", self.first_name.trim(), self.last_name.trim());
        let full = full.trim();
        if full.is_empty() { self.username.clone() } else { full.to_string() }
    }
}

const STAFF_SELECT: &str = "SELECT s.id, s.username, s.password_hash, s.first_name, s.last_name, \
    s.title, s.staff_type, s.mobile, s.email, s.mobile_verified, s.email_verified, s.scope_type, \
    s.store_id, s.zone_id, s.concept_id, st.code AS store_code, z.code AS zone_code, \
    c.code AS concept_code, s.status, s.credential_version, s.created_at, s.updated_at \
    FROM staff s LEFT JOIN stores st ON st.id = s.store_id LEFT JOIN zones z ON z.id = s.zone_id \
    LEFT JOIN concepts c ON c.id = s.concept_id";

/// A new account's row.
pub struct NewStaffRow<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub title: &'a str,
    pub staff_type: &'a str,
    pub mobile: Option<&'a str>,
    pub email: Option<&'a str>,
    pub placement: Placement,
    pub status: &'a str,
}

pub async fn insert_staff(
    c: &mut impl Connection,
    org: OrgId,
    row: &NewStaffRow<'_>,
    now: i64,
) -> Result<i64, DbError> {
    let (store, zone, concept) = row.placement.columns();
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO staff (org_id, username, password_hash, first_name, last_name, title, \
         staff_type, mobile, email, scope_type, store_id, zone_id, concept_id, status, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
         RETURNING id"
    )
    .bind(org.0)
    .bind(row.username)
    .bind(row.password_hash)
    .bind(row.first_name)
    .bind(row.last_name)
    .bind(row.title)
    .bind(row.staff_type)
    .bind(row.mobile)
    .bind(row.email)
    .bind(row.placement.kind())
    .bind(store)
    .bind(zone)
    .bind(concept)
    .bind(row.status)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// A live (not removed) account by id.
pub async fn staff_by_id(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<StaffRow>, DbError> {
    let sql = format!("{STAFF_SELECT} WHERE s.org_id = $1 AND s.id = $2 AND s.status <> $3");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, StaffRow>(&sql)
        .bind(org.0)
        .bind(id)
        .bind(STATUS_REMOVED)
        .fetch_optional(e)
        .await)?)
}

/// An account by id, removed ones included (tasks still name them).
pub async fn staff_any(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<StaffRow>, DbError> {
    let sql = format!("{STAFF_SELECT} WHERE s.org_id = $1 AND s.id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, StaffRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// A live account by (lower-case) username.
pub async fn staff_by_username(
    c: &mut impl Connection,
    org: OrgId,
    username: &str,
) -> Result<Option<StaffRow>, DbError> {
    let sql = format!("{STAFF_SELECT} WHERE s.org_id = $1 AND s.username = $2 AND s.status <> $3");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, StaffRow>(&sql)
        .bind(org.0)
        .bind(username)
        .bind(STATUS_REMOVED)
        .fetch_optional(e)
        .await)?)
}

/// The live account holding a mobile or e-mail, if any.
pub async fn staff_holding(
    c: &mut impl Connection,
    org: OrgId,
    kind: IdentifierKind,
    value: &str,
) -> Result<Option<i64>, DbError> {
    let column = match kind {
        IdentifierKind::Mobile => "mobile",
        IdentifierKind::Email => "email",
    };
    let sql = format!("SELECT id FROM staff WHERE org_id = $1 AND {column} = $2 AND status <> $3");
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&sql)
        .bind(org.0)
        .bind(value)
        .bind(STATUS_REMOVED)
        .fetch_optional(e)
        .await)?)
}

/// Writes names, title and type.
pub async fn update_details(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    row: &StaffRow,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE staff SET first_name = $3, last_name = $4, title = $5, staff_type = $6, \
         updated_at = $7 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(&row.first_name)
    .bind(&row.last_name)
    .bind(&row.title)
    .bind(&row.staff_type)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets a new password hash and bumps the credential version (older tokens stop working).
pub async fn set_password(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    password_hash: &str,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE staff SET password_hash = $3, credential_version = credential_version + 1, \
         updated_at = $4 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(password_hash)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets a mobile or e-mail (verified or not).
pub async fn set_identifier(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    kind: IdentifierKind,
    value: &str,
    verified: bool,
    now: i64,
) -> Result<(), DbError> {
    let sql = match kind {
        IdentifierKind::Mobile => {
            "UPDATE staff SET mobile = $3, mobile_verified = $4, updated_at = $5 \
             WHERE org_id = $1 AND id = $2"
        }
        IdentifierKind::Email => {
            "UPDATE staff SET email = $3, email_verified = $4, updated_at = $5 \
             WHERE org_id = $1 AND id = $2"
        }
    };
    dispatch!(c, |e| sqlx::query(sql)
        .bind(org.0)
        .bind(id)
        .bind(value)
        .bind(verified)
        .bind(now)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn set_status(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    status: &str,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE staff SET status = $3, updated_at = $4 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(status)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Moves a store account to another store.
pub async fn set_store(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    store: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE staff SET store_id = $3, updated_at = $4 WHERE org_id = $1 AND id = $2 \
         AND scope_type = 'STORE'"
    )
    .bind(org.0)
    .bind(id)
    .bind(store)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Which accounts a list shows.
#[derive(Clone, Copy, Debug)]
pub enum StaffFilter {
    /// The accounts that work in a store: its own, and those of its zone and of its concept.
    WorkingIn { store: i64, zone: i64, concept: i64 },
    /// The accounts placed in a zone (not those of its stores).
    Zone(i64),
    /// The accounts placed in a concept.
    Concept(i64),
}

impl StaffFilter {
    /// The condition on `s`, with placeholders from `$2`, and the values they take.
    fn condition(self) -> (&'static str, Vec<i64>) {
        match self {
            StaffFilter::WorkingIn { store, zone, concept } => (
                "((s.scope_type = 'STORE' AND s.store_id = $2) OR \
                  (s.scope_type = 'ZONE' AND s.zone_id = $3) OR \
                  (s.scope_type = 'CONCEPT' AND s.concept_id = $4))",
                vec![store, zone, concept],
            ),
            StaffFilter::Zone(zone) => ("(s.scope_type = 'ZONE' AND s.zone_id = $2)", vec![zone]),
            StaffFilter::Concept(concept) => {
                ("(s.scope_type = 'CONCEPT' AND s.concept_id = $2)", vec![concept])
            }
        }
    }
}

/// A page of live (or only active) accounts, of one type when given, by id, with the total.
pub async fn list_staff(
    c: &mut impl Connection,
    org: OrgId,
    filter: StaffFilter,
    staff_type: Option<&str>,
    active_only: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<StaffRow>, i64), DbError> {
    let (condition, values) = filter.condition();
    let next = values.len() + 2;
    let (status_at, type_at) = (next, next + 1);
    // Live accounts (not removed), or only the active ones.
    let (operator, status) = if active_only { ("=", "ACTIVE") } else { ("<>", STATUS_REMOVED) };
    let where_clause = format!(
        "s.org_id = $1 AND {condition} AND s.status {operator} ${status_at} \
         AND (${type_at} = '' OR s.staff_type = ${type_at})"
    );
    let sql = format!(
        "{STAFF_SELECT} WHERE {where_clause} ORDER BY s.id LIMIT ${} OFFSET ${}",
        next + 2,
        next + 3
    );
    let count_sql = format!("SELECT COUNT(*) FROM staff s WHERE {where_clause}");
    let kind = staff_type.unwrap_or("");
    let rows = dispatch!(c, |e| {
        let mut q = sqlx::query_as::<_, StaffRow>(&sql).bind(org.0);
        for v in &values {
            q = q.bind(*v);
        }
        q.bind(status).bind(kind).bind(limit).bind(offset).fetch_all(e).await
    })?;
    let total = dispatch!(c, |e| {
        let mut q = sqlx::query_scalar::<_, i64>(&count_sql).bind(org.0);
        for v in &values {
            q = q.bind(*v);
        }
        q.bind(status).bind(kind).fetch_one(e).await
    })?;
    Ok((rows, total))
}

// ---------------------------------------------------------------- one-time codes

/// A one-time code as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OtpRow {
    pub id: i64,
    pub identifier_value: String,
    pub code_salt: String,
    pub code_hash: String,
    pub attempts: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub struct NewOtp<'a> {
    pub staff_id: i64,
    pub purpose: &'a str,
    pub kind: IdentifierKind,
    pub value: &'a str,
    pub salt: &'a str,
    pub hash: &'a str,
    pub expires_at: i64,
}

pub async fn insert_otp(
    c: &mut impl Connection,
    org: OrgId,
    otp: &NewOtp<'_>,
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO staff_otps (org_id, staff_id, purpose, identifier_type, identifier_value, \
         code_salt, code_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
    )
    .bind(org.0)
    .bind(otp.staff_id)
    .bind(otp.purpose)
    .bind(otp.kind.as_str())
    .bind(otp.value)
    .bind(otp.salt)
    .bind(otp.hash)
    .bind(otp.expires_at)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// The latest code sent to an account for a purpose and identifier kind (each send supersedes
/// the ones before it).
pub async fn latest_otp(
    c: &mut impl Connection,
    org: OrgId,
    staff: i64,
    purpose: &str,
    kind: IdentifierKind,
) -> Result<Option<OtpRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OtpRow>(
        "SELECT id, identifier_value, code_salt, code_hash, attempts, expires_at, used_at \
         FROM staff_otps WHERE org_id = $1 AND staff_id = $2 AND purpose = $3 \
         AND identifier_type = $4 ORDER BY id DESC LIMIT 1"
    )
    .bind(org.0)
    .bind(staff)
    .bind(purpose)
    .bind(kind.as_str())
    .fetch_optional(e)
    .await)?)
}

/// Codes sent to an account since an instant (the send rate limit).
pub async fn otps_sent_since(
    c: &mut impl Connection,
    org: OrgId,
    staff: i64,
    since: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM staff_otps WHERE org_id = $1 AND staff_id = $2 AND created_at >= $3"
    )
    .bind(org.0)
    .bind(staff)
    .bind(since)
    .fetch_one(e)
    .await)?)
}

/// Counts a wrong try.
pub async fn add_otp_attempt(c: &mut impl Connection, org: OrgId, id: i64) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE staff_otps SET attempts = attempts + 1 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Marks a code used; false when it was already used (a concurrent validation won).
pub async fn use_otp(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "UPDATE staff_otps SET used_at = $3 WHERE org_id = $1 AND id = $2 AND used_at IS NULL"
    )
    .bind(org.0)
    .bind(id)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected == 1)
}

// ---------------------------------------------------------------- access tokens

pub async fn insert_token(
    c: &mut impl Connection,
    org: OrgId,
    staff: i64,
    token_hash: &str,
    credential_version: i64,
    expires_at: i64,
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO staff_tokens (org_id, staff_id, token_hash, credential_version, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
    )
    .bind(org.0)
    .bind(staff)
    .bind(token_hash)
    .bind(credential_version)
    .bind(expires_at)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// Revokes the account's live tokens beyond the newest `keep`.
pub async fn revoke_oldest_tokens(
    c: &mut impl Connection,
    org: OrgId,
    staff: i64,
    keep: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE staff_tokens SET revoked_at = $4 WHERE org_id = $1 AND staff_id = $2 \
         AND revoked_at IS NULL AND id NOT IN (SELECT id FROM staff_tokens WHERE org_id = $1 \
         AND staff_id = $2 AND revoked_at IS NULL ORDER BY id DESC LIMIT $3)"
    )
    .bind(org.0)
    .bind(staff)
    .bind(keep)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Revokes one token (logout); false when it was not live.
pub async fn revoke_token(
    c: &mut impl Connection,
    org: OrgId,
    token_id: i64,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "UPDATE staff_tokens SET revoked_at = $3 WHERE org_id = $1 AND id = $2 \
         AND revoked_at IS NULL"
    )
    .bind(org.0)
    .bind(token_id)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected == 1)
}

/// Revokes every token of an account (password change, removal).
pub async fn revoke_all_tokens(
    c: &mut impl Connection,
    org: OrgId,
    staff: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE staff_tokens SET revoked_at = $3 WHERE org_id = $1 AND staff_id = $2 \
         AND revoked_at IS NULL"
    )
    .bind(org.0)
    .bind(staff)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// What authenticating a staff token needs.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TokenCredentials {
    pub token_id: i64,
    pub org_id: i64,
    pub staff_id: i64,
    pub username: String,
    pub store_id: Option<i64>,
}

/// The live token with this hash: not revoked, not expired, of an active account whose
/// password has not changed since it was issued.
pub async fn token_credentials(
    c: &mut impl Connection,
    token_hash: &str,
    now: i64,
) -> Result<Option<TokenCredentials>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TokenCredentials>(
        "SELECT t.id AS token_id, t.org_id, s.id AS staff_id, s.username, s.store_id \
         FROM staff_tokens t JOIN staff s ON s.id = t.staff_id AND s.org_id = t.org_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 \
         AND s.status = 'ACTIVE' AND s.credential_version = t.credential_version"
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(e)
    .await)?)
}

// ---------------------------------------------------------------- places

/// The id of the org's zone (`ZONE`) or concept (`CONCEPT`) with a code.
pub async fn place_id_by_code(
    c: &mut impl Connection,
    org: OrgId,
    table: PlaceTable,
    code: &str,
) -> Result<Option<i64>, DbError> {
    let sql = match table {
        PlaceTable::Zones => "SELECT id FROM zones WHERE org_id = $1 AND code = $2",
        PlaceTable::Concepts => "SELECT id FROM concepts WHERE org_id = $1 AND code = $2",
    };
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(sql)
        .bind(org.0)
        .bind(code)
        .fetch_optional(e)
        .await)?)
}

/// The tables [`place_id_by_code`] reads.
#[derive(Clone, Copy, Debug)]
pub enum PlaceTable {
    Zones,
    Concepts,
}
