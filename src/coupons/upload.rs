//! CSV uploads into a series: pre-made codes (untagged, into the series' pool, or tagged to
//! customers) and redemptions made elsewhere. An upload is a job: its file is stored row by row
//! as it streams in (never whole in memory), then `jobs::coupons` processes the rows in bounded
//! batches, each batch in one transaction that also records each row's outcome and the job's
//! progress, so a crash repeats at most one batch and a retried row can never act twice (codes
//! are unique per org, imported redemptions are unique per coupon and instant).

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::model::{CouponError, code_key};
use super::service::{
    self, CodeRef, CustomerRef, RedeemContext, Series, find_customer, load_series, org_zone,
};
use super::store::{self, NewCoupon};
use crate::audit::{self, AuditActor, Change};
use crate::customers::model::{Identifier, IdentifierType};
use crate::db::{Connection, Db, DbError, Exec, Tx};
use crate::dispatch;
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;

/// Rows stored per insert while a file streams in.
pub const STAGE_BATCH: usize = 1_000;
/// Longest line, most rows and most bytes of one uploaded file.
pub const LINE_LENGTH_MAX: usize = 4_096;
pub const ROWS_MAX: i64 = 2_000_000;
pub const FILE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Rows processed per transaction, and how long a claim on a job lasts.
pub const PROCESS_BATCH: i64 = 500;
const LEASE_MS: i64 = 60_000;
/// An upload whose stream stopped this long ago without finishing is marked failed.
const ABANDONED_AFTER_MS: i64 = 3_600_000;
/// Staged rows of a failed job deleted per statement.
const PURGE_RANGE: i64 = 10_000;

/// CODES or REDEMPTIONS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadKind {
    Codes,
    Redemptions,
}

impl UploadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::Codes => "CODES",
            UploadKind::Redemptions => "REDEMPTIONS",
        }
    }
}

/// How a codes file names customers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomerKind {
    Mobile,
    Email,
    ExternalId,
    UserId,
    NotTagged,
}

impl CustomerKind {
    pub fn parse(raw: &str, tagged_only: bool) -> Result<CustomerKind, CouponError> {
        let kind = match raw.trim().to_ascii_uppercase().as_str() {
            "MOBILE" => CustomerKind::Mobile,
            "EMAIL" => CustomerKind::Email,
            "EXTERNAL_ID" => CustomerKind::ExternalId,
            "USER_ID" => CustomerKind::UserId,
            "NOT_TAGGED" if !tagged_only => CustomerKind::NotTagged,
            _ => {
                return Err(CouponError::invalid(if tagged_only {
                    "customerIdentifier must be MOBILE, EMAIL, EXTERNAL_ID or USER_ID"
                } else {
                    "customerIdentifier must be MOBILE, EMAIL, EXTERNAL_ID, USER_ID or NOT_TAGGED"
                }));
            }
        };
        Ok(kind)
    }

    /// The `uploadHeaders` key of this identifier.
    fn header_key(self) -> &'static str {
        match self {
            CustomerKind::Mobile => "mobile",
            CustomerKind::Email => "email",
            CustomerKind::ExternalId => "externalId",
            CustomerKind::UserId | CustomerKind::NotTagged => "userId",
        }
    }

    fn reference(self, value: &str) -> Result<CustomerRef, CouponError> {
        let kind = match self {
            CustomerKind::UserId => {
                return value
                    .parse()
                    .map(CustomerRef::Id)
                    .map_err(|_| CouponError::CustomerNotFound);
            }
            CustomerKind::Mobile => IdentifierType::Mobile,
            CustomerKind::Email => IdentifierType::Email,
            CustomerKind::ExternalId => IdentifierType::ExternalId,
            CustomerKind::NotTagged => return Err(CouponError::CustomerNotFound),
        };
        Identifier::parse(kind, value, None)
            .map(CustomerRef::Identifier)
            .map_err(|_| CouponError::CustomerNotFound)
    }
}

/// How to read the rows of a job, stored with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSettings {
    pub customer_identifier: CustomerKind,
    /// Codes files: the code's column and the customer identifier's column.
    pub code_column: usize,
    pub customer_column: usize,
    /// Redemption files: `COUPON_ID` or `COUPON_CODE`, and each key's column.
    pub coupon_by_id: bool,
    pub columns: std::collections::BTreeMap<String, usize>,
    pub details: String,
}

impl UploadSettings {
    /// Settings of a codes upload from its form fields.
    pub fn codes(fields: &Map<String, Value>) -> Result<UploadSettings, CouponError> {
        let text = |k: &str| {
            fields.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty())
        };
        let kind = CustomerKind::parse(
            text("customerIdentifier")
                .ok_or_else(|| CouponError::invalid("customerIdentifier is required"))?,
            false,
        )?;
        let column = |k: &str, default: usize| -> Result<usize, CouponError> {
            match text(k) {
                None => Ok(default),
                Some(v) => v.parse::<usize>().ok().filter(|c| *c < 64).ok_or_else(|| {
                    CouponError::invalid(format!("{k} must be a column index 0 to 63"))
                }),
            }
        };
        let code_column = column("couponCodeColumn", 0)?;
        let customer_column =
            column("customerIdentifierColumn", if code_column == 0 { 1 } else { 0 })?;
        if kind != CustomerKind::NotTagged && code_column == customer_column {
            return Err(CouponError::invalid(
                "couponCodeColumn and customerIdentifierColumn must differ",
            ));
        }
        Ok(UploadSettings {
            customer_identifier: kind,
            code_column,
            customer_column,
            coupon_by_id: false,
            columns: Default::default(),
            details: text("details").unwrap_or_default().chars().take(500).collect(),
        })
    }

    /// Settings of a redemptions upload from its form fields (`uploadHeaders` is stringified
    /// JSON of 0-based column indexes).
    pub fn redemptions(fields: &Map<String, Value>) -> Result<UploadSettings, CouponError> {
        let text = |k: &str| {
            fields.get(k).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty())
        };
        let kind = CustomerKind::parse(
            text("customerIdentifier")
                .ok_or_else(|| CouponError::invalid("customerIdentifier is required"))?,
            true,
        )?;
        let coupon_by_id = match text("couponIdentifier").map(str::to_ascii_uppercase).as_deref() {
            Some("COUPON_ID") => true,
            Some("COUPON_CODE") => false,
            _ => {
                return Err(CouponError::invalid(
                    "couponIdentifier must be COUPON_ID or COUPON_CODE",
                ));
            }
        };
        let headers: Value = serde_json::from_str(
            text("uploadHeaders")
                .ok_or_else(|| CouponError::invalid("uploadHeaders is required"))?,
        )
        .map_err(|_| {
            CouponError::invalid("uploadHeaders must be stringified JSON of column indexes")
        })?;
        let headers = headers
            .as_object()
            .ok_or_else(|| CouponError::invalid("uploadHeaders must be a JSON object"))?;
        const KEYS: [&str; 11] = [
            "mobile",
            "externalId",
            "email",
            "userId",
            "couponId",
            "couponCode",
            "redeemedDateInMillis",
            "redeemedAt",
            "billId",
            "billNumber",
            "details",
        ];
        let mut columns = std::collections::BTreeMap::new();
        for (key, value) in headers {
            if !KEYS.contains(&key.as_str()) {
                return Err(CouponError::invalid(format!(
                    "uploadHeaders.{key} is not one of {}",
                    KEYS.join(", ")
                )));
            }
            let column = value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|c| *c < 64)
                .ok_or_else(|| {
                    CouponError::invalid(format!("uploadHeaders.{key} must be 0 to 63"))
                })?;
            columns.insert(key.clone(), column as usize);
        }
        let customer_key =
            if columns.contains_key("userId") { "userId" } else { kind.header_key() };
        let coupon_key = if coupon_by_id { "couponId" } else { "couponCode" };
        for required in [customer_key, coupon_key, "redeemedDateInMillis", "redeemedAt"] {
            if !columns.contains_key(required) {
                return Err(CouponError::invalid(format!("uploadHeaders.{required} is required")));
            }
        }
        Ok(UploadSettings {
            customer_identifier: kind,
            code_column: 0,
            customer_column: 0,
            coupon_by_id,
            columns,
            details: text("details").unwrap_or_default().chars().take(500).collect(),
        })
    }
}

/// Splits one CSV line into trimmed fields (`"…"` quotes, `""` inside them); quoted fields may
/// not span lines.
pub fn split_csv(line: &str) -> Result<Vec<String>, CouponError> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    current.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                current.push(c);
            }
        } else {
            match c {
                ',' => fields.push(std::mem::take(&mut current).trim().to_string()),
                '"' if current.trim().is_empty() => {
                    current.clear();
                    quoted = true;
                }
                _ => current.push(c),
            }
        }
    }
    if quoted {
        return Err(CouponError::invalid("unterminated quote in the row"));
    }
    fields.push(current.trim().to_string());
    Ok(fields)
}

/// A job row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub org_id: i64,
    pub series_id: i64,
    pub kind: String,
    pub status: String,
    pub file_name: String,
    pub file_sha256: String,
    pub settings: String,
    pub total_rows: i64,
    pub processed_rows: i64,
    pub success_count: i64,
    pub error_count: i64,
    pub failure_reason: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

const JOB_COLUMNS: &str = "id, org_id, series_id, kind, status, file_name, file_sha256, settings, \
    total_rows, processed_rows, success_count, error_count, failure_reason, created_at, updated_at, \
    finished_at";

/// Starts a job for a file about to stream in (status `UPLOADING`).
pub async fn begin(
    db: &Db,
    actor: &AuditActor,
    org: OrgId,
    series: i64,
    kind: UploadKind,
    now: i64,
) -> Result<i64, CouponError> {
    let mut tx = db.begin_write().await?;
    load_series(&mut tx, org, series).await?;
    let id: i64 = dispatch!(&mut tx, |e| sqlx::query_scalar(
        "INSERT INTO coupon_upload_jobs (org_id, series_id, kind, status, created_by_type, \
         created_by, created_at, updated_at) VALUES ($1, $2, $3, 'UPLOADING', $4, $5, $6, $6) \
         RETURNING id"
    )
    .bind(org.0)
    .bind(series)
    .bind(kind.as_str())
    .bind(actor.principal_type)
    .bind(actor.principal_id)
    .bind(now)
    .fetch_one(e)
    .await)
    .map_err(DbError::from)?;
    tx.commit().await?;
    Ok(id)
}

/// Stores a batch of lines (numbered from `first_row`) of an uploading job.
pub async fn stage(
    db: &Db,
    org: OrgId,
    job: i64,
    first_row: i64,
    lines: &[String],
    now: i64,
) -> Result<(), DbError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut sql =
        String::from("INSERT INTO coupon_upload_rows (org_id, job_id, row_number, line) VALUES ");
    for i in 0..lines.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("($1, $2, ${}, ${})", 3 + 2 * i, 4 + 2 * i));
    }
    let mut tx = db.begin_write().await?;
    dispatch!(&mut tx, |e| {
        let mut query = sqlx::query(&sql).bind(org.0).bind(job);
        for (i, line) in lines.iter().enumerate() {
            query = query.bind(first_row + i as i64).bind(line.as_str());
        }
        query.execute(e).await.map(|r| r.rows_affected())
    })?;
    dispatch!(&mut tx, |e| {
        sqlx::query(
        "UPDATE coupon_upload_jobs SET total_rows = $3, updated_at = $4 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(job)
    .bind(first_row + lines.len() as i64 - 1)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(())
}

/// Ends the upload of a job: `STARTED` (ready to process) with its settings, or `FAILED`.
#[allow(clippy::too_many_arguments)]
pub async fn finish_upload(
    db: &Db,
    actor: &AuditActor,
    org: OrgId,
    job: i64,
    outcome: Result<(&UploadSettings, i64), &str>,
    file_name: &str,
    sha256: &str,
    now: i64,
) -> Result<JobRow, DbError> {
    let mut tx = db.begin_write().await?;
    let (status, settings, total, reason) = match outcome {
        Ok((settings, total)) => (
            "STARTED",
            serde_json::to_string(settings).unwrap_or_else(|_| "{}".into()),
            total,
            String::new(),
        ),
        Err(reason) => ("FAILED", "{}".to_string(), 0, reason.chars().take(500).collect()),
    };
    dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupon_upload_jobs SET status = $3, settings = $4, total_rows = $5, \
         failure_reason = $6, file_name = $7, file_sha256 = $8, updated_at = $9, \
         finished_at = CASE WHEN $3 = 'FAILED' THEN $9 ELSE NULL END \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(job)
    .bind(status)
    .bind(&settings)
    .bind(total)
    .bind(&reason)
    .bind(file_name)
    .bind(sha256)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    audit::record(
        &mut tx,
        org,
        actor,
        Change {
            entity_type: "COUPON_UPLOAD",
            entity_id: job,
            action: "UPLOAD",
            before: None,
            after: Some(json!({"status": status, "rows": total, "fileName": file_name,
            "sha256": sha256, "reason": reason})),
        },
    )
    .await?;
    let row = get_job(&mut tx, org, job).await?.ok_or(DbError::Sqlx(sqlx::Error::RowNotFound))?;
    tx.commit().await?;
    Ok(row)
}

pub async fn get_job(
    c: &mut impl Connection,
    org: OrgId,
    job: i64,
) -> Result<Option<JobRow>, DbError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM coupon_upload_jobs WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, JobRow>(&sql)
        .bind(org.0)
        .bind(job)
        .fetch_optional(e)
        .await)?)
}

/// The newest jobs of a kind for a series (at most `limit`).
pub async fn jobs_of_series(
    c: &mut impl Connection,
    org: OrgId,
    series: i64,
    kind: UploadKind,
    limit: i64,
) -> Result<Vec<JobRow>, DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM coupon_upload_jobs WHERE org_id = $1 AND series_id = $2 \
         AND kind = $3 ORDER BY id DESC LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, JobRow>(&sql)
        .bind(org.0)
        .bind(series)
        .bind(kind.as_str())
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// One failed row of a job.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ErrorRow {
    pub row_number: i64,
    pub line: String,
    pub error_code: Option<i32>,
    pub error_message: Option<String>,
}

/// The job's failed rows after row `after` (at most `limit`).
pub async fn error_rows(
    c: &mut impl Connection,
    org: OrgId,
    job: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<ErrorRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ErrorRow>(
        "SELECT row_number, line, error_code, error_message FROM coupon_upload_rows \
         WHERE job_id = $2 AND org_id = $1 AND status = 'ERROR' AND row_number > $3 \
         ORDER BY row_number LIMIT $4"
    )
    .bind(org.0)
    .bind(job)
    .bind(after)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// What one processing call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub rows: i64,
    pub finished_jobs: i64,
}

/// Claims one due job (started, or processing with a lapsed lease) and processes up to
/// `batches` batches of its rows; also fails abandoned uploads and purges the rows of failed
/// jobs. Several instances may run it at once: a job is processed under one lease only.
pub async fn process_due(db: &Db, now: i64, batches: usize) -> Result<Progress, DbError> {
    housekeeping(db, now).await?;
    let token = hex::encode(rand::thread_rng().r#gen::<[u8; 16]>());
    let Some(job) = claim(db, &token, now).await? else { return Ok(Progress::default()) };
    let mut progress = Progress::default();
    for _ in 0..batches {
        match process_batch(db, &job, &token, crate::db::now_millis()).await? {
            BatchOutcome::Processed(rows) => progress.rows += rows,
            BatchOutcome::Finished => {
                progress.finished_jobs += 1;
                return Ok(progress);
            }
            BatchOutcome::LeaseLost => return Ok(progress),
        }
    }
    // This run's share is done: hand the job back so that the next run (here or elsewhere)
    // goes on at once instead of waiting for the lease to lapse.
    let mut tx = db.begin_write().await?;
    dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupon_upload_jobs SET lease_until = NULL, lease_token = NULL \
         WHERE id = $1 AND lease_token = $2"
    )
    .bind(job.id)
    .bind(&token)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(progress)
}

async fn housekeeping(db: &Db, now: i64) -> Result<(), DbError> {
    // Look first with a read, so that an idle server does not open write transactions.
    let due: i64 = {
        let mut conn = db.read().await?;
        dispatch!(&mut conn, |e| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM coupon_upload_jobs j WHERE (j.status = 'UPLOADING' AND j.updated_at < $1) \
             OR (j.status = 'FAILED' AND EXISTS (SELECT 1 FROM coupon_upload_rows x WHERE x.job_id = j.id))"
        )
        .bind(now - ABANDONED_AFTER_MS)
        .fetch_one(e)
        .await
        })?
    };
    if due == 0 {
        return Ok(());
    }
    let mut tx = db.begin_write().await?;
    dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupon_upload_jobs SET status = 'FAILED', failure_reason = 'upload interrupted', \
         finished_at = $1, updated_at = $1 WHERE status = 'UPLOADING' AND updated_at < $2"
    )
    .bind(now)
    .bind(now - ABANDONED_AFTER_MS)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    // The staged rows of one failed job, a range at a time.
    let failed: Option<(i64, i64)> = dispatch!(&mut tx, |e| {
        sqlx::query_as(
        "SELECT r.job_id, MIN(r.row_number) FROM coupon_upload_rows r \
         WHERE r.job_id = (SELECT j.id FROM coupon_upload_jobs j WHERE j.status = 'FAILED' \
           AND EXISTS (SELECT 1 FROM coupon_upload_rows x WHERE x.job_id = j.id) ORDER BY j.id LIMIT 1) \
         GROUP BY r.job_id"
    )
    .fetch_optional(e)
    .await
    })?;
    if let Some((job, first)) = failed {
        dispatch!(&mut tx, |e| sqlx::query(
            "DELETE FROM coupon_upload_rows WHERE job_id = $1 AND row_number < $2"
        )
        .bind(job)
        .bind(first + PURGE_RANGE)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    }
    tx.commit().await?;
    Ok(())
}

async fn claim(db: &Db, token: &str, now: i64) -> Result<Option<JobRow>, DbError> {
    let due: Option<i64> = {
        let mut conn = db.read().await?;
        dispatch!(&mut conn, |e| sqlx::query_scalar(
            "SELECT id FROM coupon_upload_jobs WHERE status IN ('STARTED', 'PROCESSING') \
             AND (lease_until IS NULL OR lease_until < $1) LIMIT 1"
        )
        .bind(now)
        .fetch_optional(e)
        .await)?
    };
    if due.is_none() {
        return Ok(None);
    }
    let mut tx = db.begin_write().await?;
    let skip = if matches!(tx.exec(), Exec::Postgres(_)) { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "SELECT id FROM coupon_upload_jobs WHERE status IN ('STARTED', 'PROCESSING') \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY id LIMIT 1{skip}"
    );
    let id: Option<i64> =
        dispatch!(&mut tx, |e| sqlx::query_scalar(&sql).bind(now).fetch_optional(e).await)?;
    let Some(id) = id else { return Ok(None) };
    dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupon_upload_jobs SET status = 'PROCESSING', lease_token = $2, lease_until = $3, \
         updated_at = $4 WHERE id = $1"
    )
    .bind(id)
    .bind(token)
    .bind(now + LEASE_MS)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    let sql = format!("SELECT {JOB_COLUMNS} FROM coupon_upload_jobs WHERE id = $1");
    let job =
        dispatch!(&mut tx, |e| sqlx::query_as::<_, JobRow>(&sql).bind(id).fetch_optional(e).await)?;
    tx.commit().await?;
    Ok(job)
}

enum BatchOutcome {
    Processed(i64),
    Finished,
    LeaseLost,
}

/// One batch of a claimed job in one transaction: the rows' outcomes, the coupons or
/// redemptions they made, and the job's progress commit together.
async fn process_batch(
    db: &Db,
    job: &JobRow,
    token: &str,
    now: i64,
) -> Result<BatchOutcome, DbError> {
    let org = OrgId(job.org_id);
    let mut tx = db.begin_write().await?;
    let current: Option<(i64, i64, i64)> = dispatch!(&mut tx, |e| sqlx::query_as(
        "SELECT processed_rows, success_count, error_count FROM coupon_upload_jobs \
         WHERE id = $1 AND lease_token = $2 AND status = 'PROCESSING'"
    )
    .bind(job.id)
    .bind(token)
    .fetch_optional(e)
    .await)?;
    let Some((processed, mut ok, mut errors)) = current else { return Ok(BatchOutcome::LeaseLost) };
    let rows: Vec<(i64, String)> = dispatch!(&mut tx, |e| sqlx::query_as(
        "SELECT row_number, line FROM coupon_upload_rows WHERE job_id = $1 AND row_number > $2 \
         ORDER BY row_number LIMIT $3"
    )
    .bind(job.id)
    .bind(processed)
    .bind(PROCESS_BATCH)
    .fetch_all(e)
    .await)?;
    if rows.is_empty() {
        dispatch!(&mut tx, |e| {
            sqlx::query(
            "UPDATE coupon_upload_jobs SET status = 'COMPLETED', finished_at = $2, updated_at = $2, \
             lease_token = NULL, lease_until = NULL WHERE id = $1"
        )
        .bind(job.id)
        .bind(now)
        .execute(e)
        .await
        .map(|r| r.rows_affected())
        })?;
        audit::record(
            &mut tx,
            org,
            &AuditActor::system(),
            Change {
                entity_type: "COUPON_UPLOAD",
                entity_id: job.id,
                action: "COMPLETE",
                before: None,
                after: Some(json!({"rows": processed, "ok": ok, "errors": errors})),
            },
        )
        .await?;
        tx.commit().await?;
        return Ok(BatchOutcome::Finished);
    }
    let settings: UploadSettings = match serde_json::from_str(&job.settings) {
        Ok(s) => s,
        Err(_) => {
            drop(tx);
            return fail_job(db, job.id, "unreadable upload settings", now).await;
        }
    };
    let series = match load_series(&mut tx, org, job.series_id).await {
        Ok(s) => s,
        Err(CouponError::Db(e)) => return Err(e),
        Err(_) => {
            drop(tx);
            return fail_job(db, job.id, "the series no longer exists", now).await;
        }
    };
    let tz = org_zone(&mut tx, org).await?;
    let redemptions = job.kind == UploadKind::Redemptions.as_str();
    if redemptions {
        lock_batch_coupons(&mut tx, org, &settings, &rows).await?;
    }
    let mut last = processed;
    let mut batch_ok = 0;
    for (number, line) in &rows {
        last = *number;
        let outcome =
            process_row(&mut tx, org, job, &settings, &series, *number, line, tz, now, batch_ok)
                .await?;
        let (status, code, message) = match outcome {
            RowOutcome::Ok => {
                ok += 1;
                batch_ok += 1;
                ("OK", None, None)
            }
            RowOutcome::Skipped => ("SKIPPED", None, None),
            RowOutcome::Failed(e) => {
                errors += 1;
                ("ERROR", Some(e.code().info().code as i32), Some(e.to_string()))
            }
        };
        dispatch!(&mut tx, |e| sqlx::query(
            "UPDATE coupon_upload_rows SET status = $3, error_code = $4, error_message = $5 \
             WHERE job_id = $1 AND row_number = $2"
        )
        .bind(job.id)
        .bind(*number)
        .bind(status)
        .bind(code)
        .bind(&message)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    }
    // The redemptions of the batch move the series counter once, last; when live redemptions
    // took the series past its limit meanwhile, the batch is rolled back and its rows run again
    // (they then meet the limit row by row).
    if redemptions
        && batch_ok > 0
        && !store::count_redeemed(&mut tx, org, series.id(), batch_ok, now).await?
    {
        drop(tx);
        return Ok(BatchOutcome::Processed(0));
    }
    dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupon_upload_jobs SET processed_rows = $2, success_count = $3, error_count = $4, \
         lease_until = $5, updated_at = $6 WHERE id = $1"
    )
    .bind(job.id)
    .bind(last)
    .bind(ok)
    .bind(errors)
    .bind(now + LEASE_MS)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    audit::record(
        &mut tx,
        org,
        &AuditActor::system(),
        Change {
            entity_type: "COUPON_UPLOAD",
            entity_id: job.id,
            action: "PROCESS_BATCH",
            before: Some(json!({"processedRows": processed})),
            after: Some(json!({"processedRows": last, "ok": batch_ok, "kind": job.kind})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(BatchOutcome::Processed(rows.len() as i64))
}

/// Locks (PostgreSQL) the coupons a batch of redemption rows names, in id order, before any
/// other lock of the batch: the order a live redemption takes them in (coupon, then the
/// customer's standing, then the series), so that the two can never wait on each other in a
/// cycle. Rows that name no coupon of the org are left to fail on their own.
async fn lock_batch_coupons(
    tx: &mut Tx,
    org: OrgId,
    settings: &UploadSettings,
    rows: &[(i64, String)],
) -> Result<(), DbError> {
    if !matches!(tx.exec(), Exec::Postgres(_)) {
        return Ok(());
    }
    let column =
        settings.columns.get(if settings.coupon_by_id { "couponId" } else { "couponCode" });
    let Some(column) = column.copied() else { return Ok(()) };
    let mut ids = Vec::with_capacity(rows.len());
    for (_, line) in rows {
        let Some(cell) = split_csv(line).ok().and_then(|f| f.get(column).cloned()) else {
            continue;
        };
        let found = if settings.coupon_by_id {
            match cell.parse::<i64>() {
                Ok(id) => store::coupon_by_id(tx, org, id, false).await?,
                Err(_) => None,
            }
        } else {
            match code_key(&cell) {
                Ok(key) => store::coupon_by_key(tx, org, &key, false).await?,
                Err(_) => None,
            }
        };
        if let Some(row) = found {
            ids.push(row.id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        store::coupon_by_id(tx, org, id, true).await?;
    }
    Ok(())
}

async fn fail_job(db: &Db, job: i64, reason: &str, now: i64) -> Result<BatchOutcome, DbError> {
    let mut tx = db.begin_write().await?;
    dispatch!(&mut tx, |e| sqlx::query(
        "UPDATE coupon_upload_jobs SET status = 'FAILED', failure_reason = $2, finished_at = $3, \
         updated_at = $3, lease_token = NULL, lease_until = NULL WHERE id = $1"
    )
    .bind(job)
    .bind(reason)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    tx.commit().await?;
    Ok(BatchOutcome::Finished)
}

enum RowOutcome {
    Ok,
    Skipped,
    Failed(CouponError),
}

/// One row in its own savepoint: a refused row leaves nothing behind.
#[allow(clippy::too_many_arguments)]
async fn process_row(
    tx: &mut Tx,
    org: OrgId,
    job: &JobRow,
    settings: &UploadSettings,
    series: &Series,
    number: i64,
    line: &str,
    tz: chrono_tz::Tz,
    now: i64,
    redeemed_in_batch: i64,
) -> Result<RowOutcome, DbError> {
    savepoint(tx, "SAVEPOINT coupon_upload_row").await?;
    let result = if job.kind == UploadKind::Codes.as_str() {
        code_row(tx, org, job, settings, series, number, line, tz, now).await
    } else {
        redemption_row(tx, org, job, settings, series, number, line, redeemed_in_batch).await
    };
    match result {
        Ok(outcome) => {
            savepoint(tx, "RELEASE SAVEPOINT coupon_upload_row").await?;
            Ok(outcome)
        }
        Err(CouponError::Db(e)) => Err(e),
        Err(e) => {
            savepoint(tx, "ROLLBACK TO SAVEPOINT coupon_upload_row").await?;
            savepoint(tx, "RELEASE SAVEPOINT coupon_upload_row").await?;
            Ok(RowOutcome::Failed(e))
        }
    }
}

async fn savepoint(tx: &mut Tx, statement: &'static str) -> Result<(), DbError> {
    dispatch!(tx, |e| sqlx::query(statement).execute(e).await.map(|r| r.rows_affected()))?;
    Ok(())
}

fn cell(fields: &[String], column: usize, name: &str) -> Result<String, CouponError> {
    fields.get(column).filter(|v| !v.is_empty()).cloned().ok_or_else(|| {
        CouponError::invalid(format!("column {column} ({name}) is empty or missing"))
    })
}

/// A codes row: `code[, customer identifier]`.
#[allow(clippy::too_many_arguments)]
async fn code_row(
    tx: &mut Tx,
    org: OrgId,
    job: &JobRow,
    settings: &UploadSettings,
    series: &Series,
    number: i64,
    line: &str,
    tz: chrono_tz::Tz,
    now: i64,
) -> Result<RowOutcome, CouponError> {
    let fields = split_csv(line)?;
    let raw = cell(&fields, settings.code_column, "code")?;
    let header = ["code", "coupon_code", "couponcode", "coupon code", "coupon"];
    if number == 1 && header.iter().any(|h| h.eq_ignore_ascii_case(&raw)) {
        return Ok(RowOutcome::Skipped);
    }
    let key = code_key(&raw)?;
    let tagged = settings.customer_identifier != CustomerKind::NotTagged;
    let customer = if tagged {
        let value = cell(&fields, settings.customer_column, "customer identifier")?;
        let customer =
            find_customer(tx, org, &settings.customer_identifier.reference(&value)?).await?;
        if series.row.valid_till_at <= now {
            return Err(CouponError::SeriesExpired(series.id()));
        }
        Some(customer)
    } else {
        None
    };
    let new = NewCoupon {
        series_id: series.id(),
        code: &raw,
        code_key: &key,
        customer_id: customer.as_ref().map(|c| c.id),
        issued_at: customer.as_ref().map(|_| now),
        expires_at: customer.as_ref().and_then(|_| series.config.coupon_expiry(now, tz)),
        issued_store_id: None,
        issued_till_id: None,
        source: "UPLOAD",
        transaction_id: None,
        upload_job_id: Some(job.id),
        metadata: "{}",
    };
    let id = store::insert_coupon(tx, org, &new, now)
        .await?
        .ok_or_else(|| CouponError::invalid(format!("code '{raw}' already exists in the org")))?;
    if let Some(customer) = &customer {
        if !store::count_issued(tx, org, series.id(), 1, now).await? {
            return Err(CouponError::IssueRefused(format!(
                "the series has issued its maximum of {} coupons",
                series.config.max_create
            )));
        }
        events::raise(
            tx,
            org,
            None,
            NewEvent {
                event_type: "coupon.issued",
                entity_type: "COUPON",
                entity_id: id,
                payload: json!({"couponId": id, "seriesId": series.id(), "customerId": customer.id,
                "source": "UPLOAD", "uploadJobId": job.id}),
            },
        )
        .await?;
    }
    Ok(RowOutcome::Ok)
}

/// A redemption row, by the columns of `uploadHeaders`.
#[allow(clippy::too_many_arguments)]
async fn redemption_row(
    tx: &mut Tx,
    org: OrgId,
    job: &JobRow,
    settings: &UploadSettings,
    series: &Series,
    number: i64,
    line: &str,
    redeemed_in_batch: i64,
) -> Result<RowOutcome, CouponError> {
    let fields = split_csv(line)?;
    let column = |key: &str| settings.columns.get(key).copied();
    let get = |key: &str| -> Result<String, CouponError> {
        let c = column(key)
            .ok_or_else(|| CouponError::invalid(format!("uploadHeaders.{key} is missing")))?;
        cell(&fields, c, key)
    };
    let optional = |key: &str| column(key).and_then(|c| fields.get(c).cloned()).unwrap_or_default();
    let date_raw = get("redeemedDateInMillis")?;
    let Ok(redeemed_at) = date_raw.parse::<i64>() else {
        if number == 1 {
            return Ok(RowOutcome::Skipped);
        }
        return Err(CouponError::invalid("redeemedDateInMillis must be epoch milliseconds"));
    };
    let customer_key = if column("userId").is_some() {
        "userId"
    } else {
        settings.customer_identifier.header_key()
    };
    let kind =
        if customer_key == "userId" { CustomerKind::UserId } else { settings.customer_identifier };
    let customer = find_customer(tx, org, &kind.reference(&get(customer_key)?)?).await?;
    let code = if column("couponId").is_some() {
        let raw = get("couponId")?;
        CodeRef::Id(raw.parse().map_err(|_| CouponError::CodeNotFound(raw.clone()))?)
    } else {
        CodeRef::Code(get("couponCode")?)
    };
    let till_raw = get("redeemedAt")?;
    let till = match till_raw.parse::<i64>() {
        Ok(id) => {
            crate::org::store::find_till(
                tx,
                org,
                &crate::org::store::TillLookup { id: Some(id), code: None, name: None },
            )
            .await?
        }
        Err(_) => None,
    }
    .ok_or_else(|| {
        CouponError::invalid(format!("redeemedAt '{till_raw}' is not a till of the org"))
    })?;
    let coupon = match &code {
        CodeRef::Code(raw) => store::coupon_by_key(tx, org, &code_key(raw)?, false).await?,
        CodeRef::Id(id) => store::coupon_by_id(tx, org, *id, false).await?,
    };
    if let Some(coupon) = &coupon
        && coupon.series_id != series.id()
    {
        return Err(CouponError::invalid(format!(
            "coupon '{}' is not of coupon series {}",
            coupon.code,
            series.id()
        )));
    }
    let details = [settings.details.as_str(), optional("details").as_str()]
        .iter()
        .filter(|d| !d.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" | ");
    let ctx = RedeemContext {
        at: redeemed_at,
        store_id: Some(till.store_id),
        till_id: Some(till.id),
        transaction_number: optional("billNumber"),
        bill_amount: None,
        bill_id: optional("billId"),
        custom_fields: Map::new(),
        details,
        source: "UPLOAD",
        upload_job_id: Some(job.id),
        check_bill_amount: true,
        bulk: true,
        deferred_series_count: Some(redeemed_in_batch),
        validation_code: None,
    };
    service::redeem_in(tx, org, None, std::slice::from_ref(&code), &customer, &ctx, true)
        .await
        .map_err(|(_, e)| e)?;
    Ok(RowOutcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_follow_quotes() {
        assert_eq!(split_csv("a, b ,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(split_csv("\"a,b\",\"say \"\"hi\"\"\",").unwrap(), ["a,b", "say \"hi\"", ""]);
        assert!(split_csv("\"open").is_err());
    }

    #[test]
    fn redemption_settings_need_their_columns() {
        let fields = |headers: &str| {
            Map::from_iter([
                ("customerIdentifier".to_string(), json!("MOBILE")),
                ("couponIdentifier".to_string(), json!("COUPON_CODE")),
                ("uploadHeaders".to_string(), json!(headers)),
            ])
        };
        let ok =
            fields(r#"{"mobile": 0, "couponCode": 1, "redeemedDateInMillis": 2, "redeemedAt": 3}"#);
        assert!(UploadSettings::redemptions(&ok).is_ok());
        let missing = fields(r#"{"mobile": 0, "couponCode": 1, "redeemedAt": 3}"#);
        assert!(UploadSettings::redemptions(&missing).is_err());
        let unknown = fields(
            r#"{"mobile": 0, "couponCode": 1, "redeemedDateInMillis": 2, "redeemedAt": 3, "x": 4}"#,
        );
        assert!(UploadSettings::redemptions(&unknown).is_err());
        assert!(UploadSettings::redemptions(&fields("not json")).is_err());
    }
}
