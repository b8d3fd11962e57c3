//! SQL for programs; every function is org-first.

use crate::db::{Connection, DbError, Exec, now_millis};
use crate::dispatch;
use crate::org::model::OrgId;

use super::model::ProgramId;

/// Most programs one org may hold (and so the bound of every list of them).
pub const PROGRAMS_PER_ORG_MAX: i64 = 100;

/// A stored program: the document as saved (JSON text) and its bookkeeping.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProgramRow {
    pub id: i64,
    pub name: String,
    pub is_default: bool,
    pub version: i64,
    pub document: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the cache compares to decide whether its compiled copy is current.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ProgramHead {
    pub id: i64,
    pub version: i64,
    pub is_default: bool,
    pub name: String,
}

const ROW_COLUMNS: &str = "id, name, is_default, version, document, created_at, updated_at";

/// Serialises program writes of one org until the transaction ends, so that "the first program is
/// the default" and "exactly one default" hold under concurrent writers. PostgreSQL locks the org
/// row (`FOR NO KEY UPDATE`: inserts that reference the org are not blocked); SQLite needs
/// nothing, its writes are already one at a time.
pub async fn lock_org_programs(c: &mut impl Connection, org: OrgId) -> Result<(), DbError> {
    match c.exec() {
        Exec::Sqlite(_) => {}
        Exec::Postgres(e) => {
            sqlx::query("SELECT id FROM orgs WHERE id = $1 FOR NO KEY UPDATE")
                .bind(org.0)
                .fetch_optional(e)
                .await?;
        }
    }
    Ok(())
}

/// Inserts a program at version 1 (not default: see [`set_default_program`]).
pub async fn insert_program(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
    document: &str,
) -> Result<ProgramId, DbError> {
    let now = now_millis();
    let id: i64 = dispatch!(c, |e| {
        sqlx::query_scalar(
        "INSERT INTO programs (org_id, name, is_default, version, document, created_at, updated_at) \
         VALUES ($1, $2, FALSE, 1, $3, $4, $4) RETURNING id"
    )
    .bind(org.0)
    .bind(name)
    .bind(document)
    .bind(now)
    .fetch_one(e)
    .await
    })?;
    Ok(ProgramId(id))
}

/// Inserts the org's program called `name` unless one by that name exists; returns the new id,
/// or None when it existed (a concurrent writer won).
pub async fn insert_program_if_absent(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
    document: &str,
) -> Result<Option<ProgramId>, DbError> {
    let now = now_millis();
    let id: Option<i64> = dispatch!(c, |e| {
        sqlx::query_scalar(
        "INSERT INTO programs (org_id, name, is_default, version, document, created_at, updated_at) \
         VALUES ($1, $2, FALSE, 1, $3, $4, $4) ON CONFLICT (org_id, name) DO NOTHING RETURNING id"
    )
    .bind(org.0)
    .bind(name)
    .bind(document)
    .bind(now)
    .fetch_optional(e)
    .await
    })?;
    Ok(id.map(ProgramId))
}

/// Replaces the program's name and document and bumps its version; returns the new version, or
/// None when the org has no such program.
pub async fn update_program(
    c: &mut impl Connection,
    org: OrgId,
    id: ProgramId,
    name: &str,
    document: &str,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "UPDATE programs SET name = $3, document = $4, version = version + 1, updated_at = $5 \
         WHERE org_id = $1 AND id = $2 RETURNING version"
    )
    .bind(org.0)
    .bind(id.0)
    .bind(name)
    .bind(document)
    .bind(now_millis())
    .fetch_optional(e)
    .await)?)
}

/// Makes `id` the org's one default program and every other program of the org not default, in
/// one statement (so two defaults can never be committed, whatever the interleaving).
pub async fn set_default_program(
    c: &mut impl Connection,
    org: OrgId,
    id: ProgramId,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE programs SET is_default = (id = $2) \
         WHERE org_id = $1 AND (is_default OR id = $2)"
    )
    .bind(org.0)
    .bind(id.0)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn get_program(
    c: &mut impl Connection,
    org: OrgId,
    id: ProgramId,
) -> Result<Option<ProgramRow>, DbError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM programs WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ProgramRow>(&sql)
        .bind(org.0)
        .bind(id.0)
        .fetch_optional(e)
        .await)?)
}

/// The org's program called `name`.
pub async fn find_program_by_name(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<Option<ProgramRow>, DbError> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM programs WHERE org_id = $1 AND name = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ProgramRow>(&sql)
        .bind(org.0)
        .bind(name)
        .fetch_optional(e)
        .await)?)
}

/// The org's programs by id (at most [`PROGRAMS_PER_ORG_MAX`]).
pub async fn list_programs(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<ProgramRow>, DbError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM programs WHERE org_id = $1 ORDER BY id LIMIT {PROGRAMS_PER_ORG_MAX}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ProgramRow>(&sql).bind(org.0).fetch_all(e).await)?)
}

/// Id, version, default flag and name of each of the org's programs, by id: the small read every
/// program resolution starts with.
pub async fn program_heads(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<ProgramHead>, DbError> {
    let sql = format!(
        "SELECT id, version, is_default, name FROM programs WHERE org_id = $1 \
         ORDER BY id LIMIT {PROGRAMS_PER_ORG_MAX}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ProgramHead>(&sql).bind(org.0).fetch_all(e).await)?)
}

pub async fn count_programs(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar("SELECT COUNT(*) FROM programs WHERE org_id = $1")
        .bind(org.0)
        .fetch_one(e)
        .await)?)
}

/// Id and code of the org's stores whose codes are in `codes` (at most as many rows as codes).
pub async fn store_ids_by_code(
    c: &mut impl Connection,
    org: OrgId,
    codes: &[String],
) -> Result<Vec<(i64, String)>, DbError> {
    let mut found = Vec::with_capacity(codes.len());
    // One bounded chunk at a time: both backends accept 500 parameters in one statement.
    for chunk in codes.chunks(500) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT id, code FROM stores WHERE org_id = $1 AND code IN ({})",
            placeholders.join(", ")
        );
        let rows: Vec<(i64, String)> = dispatch!(c, |e| {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for code in chunk {
                q = q.bind(code);
            }
            q.fetch_all(e).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}
