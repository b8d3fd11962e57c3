//! Coupon upload APIs (`/coupon/api/v1/upload/…`): a CSV of pre-made codes or of redemptions
//! made elsewhere is streamed into a job's staged rows (bounded memory whatever its size), and the
//! job is processed in the background; status reads and a per-row error report follow it.

use axum::body::Body;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::model::CouponError;
use super::service;
use super::upload::{
    self, FILE_BYTES_MAX, JobRow, LINE_LENGTH_MAX, ROWS_MAX, STAGE_BATCH, UploadKind,
    UploadSettings,
};
use crate::app::AppState;
use crate::audit::AuditActor;
use crate::auth::{Level, Principal, Resource};
use crate::db::now_millis;
use crate::error::{ApiError, Code};
use crate::http::extract::{Path, Query};
use crate::org::model::OrgId;
use crate::transactions::time::iso_utc;

/// Largest form field other than the file, and most form fields.
const FIELD_BYTES_MAX: usize = 64 * 1024;
const FIELDS_MAX: usize = 20;
/// Multipart framing allowed on top of the file.
const MULTIPART_OVERHEAD_BYTES: usize = 1024 * 1024;
/// Jobs listed by a status read, and error rows per error report page.
const JOBS_LISTED_MAX: i64 = 100;
const ERROR_ROWS_PER_PAGE: i64 = 10_000;

fn multipart_error(e: MultipartError) -> ApiError {
    let code = Code::for_status(e.status());
    if code == Code::BodyTooLarge {
        return ApiError::with_message(
            code,
            format!("The upload is larger than {FILE_BYTES_MAX} bytes"),
        );
    }
    ApiError::with_message(code, format!("Invalid multipart body: {}", e.body_text()))
}

fn multipart_rejection(e: MultipartRejection) -> ApiError {
    ApiError::with_message(
        Code::for_status(e.status()),
        format!("Invalid multipart body: {}", e.body_text()),
    )
}

/// A job as the upload APIs show it; `status_key` is `uploadStatus` or
/// `uploadRedeemedCouponStatus`.
fn job_json(job: &JobRow, status_key: &str) -> Value {
    let processed_ok = job.success_count;
    json!({
        "orgId": job.org_id,
        "couponSeriesId": job.series_id,
        "jobId": job.id,
        status_key: job.status,
        "createdOn": iso_utc(job.created_at),
        "updatedOn": iso_utc(job.updated_at),
        "errorFileUrl": (job.error_count > 0).then(|| format!("/coupon/api/v1/upload/errorFile/{}", job.id)),
        "successFileUrl": null,
        "uploadedFileUrl": null,
        "totalUploadedCount": job.total_rows,
        "actualRowCount": job.processed_rows,
        "successCount": processed_ok,
        "errorCount": job.error_count,
        "failureReason": job.failure_reason,
        "uploadTableName": "coupon_upload_rows",
        "uploadedFileName": job.file_name,
        "fileName": job.file_name,
        "audienceGroupId": null,
        "audienceGroupVersionId": null,
    })
}

/// The file's rows as they stream in, staged a batch at a time.
struct Stager<'a> {
    state: &'a AppState,
    org: OrgId,
    job: i64,
    batch: Vec<String>,
    rows: i64,
    hasher: Sha256,
}

impl Stager<'_> {
    async fn line(&mut self, raw: &[u8]) -> Result<(), ApiError> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw =
            if self.rows == 0 { raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw) } else { raw };
        let line = std::str::from_utf8(raw).map_err(|_| {
            CouponError::invalid(format!("row {} is not UTF-8 text", self.rows + 1))
        })?;
        if line.trim().is_empty() {
            return Ok(());
        }
        if line.len() > LINE_LENGTH_MAX {
            return Err(CouponError::invalid(format!(
                "row {} is longer than {LINE_LENGTH_MAX} bytes",
                self.rows + 1
            ))
            .into());
        }
        if self.rows >= ROWS_MAX {
            return Err(
                CouponError::invalid(format!("a file may hold at most {ROWS_MAX} rows")).into()
            );
        }
        self.rows += 1;
        self.batch.push(line.to_string());
        if self.batch.len() >= STAGE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ApiError> {
        let first = self.rows - self.batch.len() as i64 + 1;
        upload::stage(&self.state.db, self.org, self.job, first, &self.batch, now_millis()).await?;
        self.batch.clear();
        Ok(())
    }
}

/// What the form carried besides the file's rows.
struct Received {
    fields: Map<String, Value>,
    file_name: String,
    sha256: String,
    rows: i64,
}

/// Reads the multipart body: form fields kept, the `file` part streamed into staged rows.
async fn receive(
    state: &AppState,
    org: OrgId,
    job: i64,
    request: Request,
) -> Result<Received, ApiError> {
    let (parts, body) = request.into_parts();
    let limited =
        Body::new(http_body_util::Limited::new(body, FILE_BYTES_MAX + MULTIPART_OVERHEAD_BYTES));
    let mut multipart = Multipart::from_request(Request::from_parts(parts, limited), &())
        .await
        .map_err(multipart_rejection)?;
    let mut fields = Map::new();
    let mut stager: Option<Stager<'_>> = None;
    let mut file_name = String::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if stager.is_some() {
                return Err(CouponError::invalid("send one part named file").into());
            }
            file_name = field
                .file_name()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(255)
                .collect();
            let mut s = Stager {
                state,
                org,
                job,
                batch: Vec::with_capacity(STAGE_BATCH),
                rows: 0,
                hasher: Sha256::new(),
            };
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                s.hasher.update(&chunk);
                pending.extend_from_slice(&chunk);
                let mut start = 0;
                while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                    s.line(&pending[start..start + end]).await?;
                    start += end + 1;
                }
                pending.drain(..start);
                if pending.len() > LINE_LENGTH_MAX {
                    return Err(CouponError::invalid(format!(
                        "row {} is longer than {LINE_LENGTH_MAX} bytes",
                        s.rows + 1
                    ))
                    .into());
                }
            }
            if !pending.is_empty() {
                s.line(&pending).await?;
            }
            s.flush().await?;
            stager = Some(s);
        } else {
            if fields.len() >= FIELDS_MAX {
                return Err(
                    CouponError::invalid(format!("at most {FIELDS_MAX} form fields")).into()
                );
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if bytes.len() + chunk.len() > FIELD_BYTES_MAX {
                    return Err(
                        CouponError::invalid(format!("form field {name} is too long")).into()
                    );
                }
                bytes.extend_from_slice(&chunk);
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                CouponError::invalid(format!("form field {name} is not UTF-8 text"))
            })?;
            fields.insert(name, Value::String(text));
        }
    }
    let stager =
        stager.ok_or_else(|| CouponError::invalid("a part named file (the CSV) is required"))?;
    if stager.rows == 0 {
        return Err(CouponError::invalid("the file has no rows").into());
    }
    Ok(Received {
        fields,
        file_name,
        sha256: hex::encode(stager.hasher.finalize()),
        rows: stager.rows,
    })
}

async fn upload(
    state: &AppState,
    principal: &Principal,
    series_id: i64,
    kind: UploadKind,
    request: Request,
) -> Result<JobRow, ApiError> {
    principal.require(Resource::Coupon, Level::Write)?;
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::with_message(
            Code::UnsupportedMediaType,
            "Unsupported media type: send multipart/form-data with a part named file",
        ));
    }
    let org = principal.org;
    let actor = AuditActor::from(principal);
    // Refuse an unknown series before reading the body.
    let job = upload::begin(&state.db, &actor, org, series_id, kind, now_millis()).await?;
    let received = receive(state, org, job, request).await;
    let (file_name, sha256) = match &received {
        Ok(r) => (r.file_name.clone(), r.sha256.clone()),
        Err(_) => (String::new(), String::new()),
    };
    let checked = received.and_then(|r| {
        let settings = match kind {
            UploadKind::Codes => UploadSettings::codes(&r.fields),
            UploadKind::Redemptions => UploadSettings::redemptions(&r.fields),
        };
        settings.map(|s| (r.rows, s)).map_err(ApiError::from)
    });
    let now = now_millis();
    match checked {
        Ok((rows, settings)) => Ok(upload::finish_upload(
            &state.db,
            &actor,
            org,
            job,
            Ok((&settings, rows)),
            &file_name,
            &sha256,
            now,
        )
        .await?),
        Err(e) => {
            upload::finish_upload(
                &state.db,
                &actor,
                org,
                job,
                Err(&e.message),
                &file_name,
                &sha256,
                now,
            )
            .await?;
            Err(e)
        }
    }
}

/// `POST /coupon/api/v1/upload/file/{couponSeriesId}` — uploads a CSV of codes (`file`), tagged
/// to customers by `customerIdentifier` (`MOBILE`, `EMAIL`, `EXTERNAL_ID`, `USER_ID`) in
/// `customerIdentifierColumn`, or `NOT_TAGGED` into the series' pool; processed in the background.
#[utoipa::path(post, path = "/coupon/api/v1/upload/file/{couponSeriesId}", tag = "coupons-upload",
    params(("couponSeriesId" = i64, Path)),
    request_body(content_type = "multipart/form-data", description = "file (CSV), customerIdentifier, customerIdentifierColumn, couponCodeColumn"),
    responses((status = 200, description = "The job, STARTED"), (status = 400, description = "629 invalid file or fields"), (status = 404, description = "707 unknown series")))]
pub async fn upload_codes(
    State(state): State<AppState>,
    principal: Principal,
    Path(series): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let job = upload(&state, &principal, series, UploadKind::Codes, request).await?;
    Ok(axum::Json(
        json!({"success": true, "status": 200, "result": job_json(&job, "uploadStatus")}),
    )
    .into_response())
}

/// `POST /coupon/api/v1/upload/redeemFile/{couponSeriesId}` — uploads a CSV of redemptions made
/// elsewhere (`customerIdentifier`, `couponIdentifier`, `uploadHeaders` column map, `details`);
/// processed in the background, each redemption imported once.
#[utoipa::path(post, path = "/coupon/api/v1/upload/redeemFile/{couponSeriesId}", tag = "coupons-upload",
    params(("couponSeriesId" = i64, Path)),
    request_body(content_type = "multipart/form-data", description = "file (CSV), customerIdentifier, couponIdentifier, uploadHeaders, details"),
    responses((status = 200, description = "The job, STARTED"), (status = 400, description = "629 invalid file or fields"), (status = 404, description = "707 unknown series")))]
pub async fn upload_redemptions(
    State(state): State<AppState>,
    principal: Principal,
    Path(series): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    let job = upload(&state, &principal, series, UploadKind::Redemptions, request).await?;
    Ok(axum::Json(job_json(&job, "uploadRedeemedCouponStatus")).into_response())
}

async fn statuses(
    state: &AppState,
    principal: &Principal,
    series: i64,
    kind: UploadKind,
) -> Result<Vec<JobRow>, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let mut conn = state.db.read().await?;
    service::load_series(&mut conn, principal.org, series).await?;
    Ok(upload::jobs_of_series(&mut conn, principal.org, series, kind, JOBS_LISTED_MAX).await?)
}

/// `GET /coupon/api/v1/upload/getUploadStatus/{couponSeriesId}` — the series' code upload jobs,
/// newest first.
#[utoipa::path(get, path = "/coupon/api/v1/upload/getUploadStatus/{couponSeriesId}", tag = "coupons-upload",
    params(("couponSeriesId" = i64, Path)),
    responses((status = 200, description = "{success, status, result{orgId, couponSeriesId, uploadJobStatuses[]}}"), (status = 404, description = "707")))]
pub async fn upload_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(series): Path<i64>,
) -> Result<Response, ApiError> {
    let jobs = statuses(&state, &principal, series, UploadKind::Codes).await?;
    let list: Vec<Value> = jobs.iter().map(|j| job_json(j, "uploadStatus")).collect();
    Ok(axum::Json(json!({"success": true, "status": 200, "result": {"orgId": principal.org.0,
        "couponSeriesId": series, "uploadJobStatuses": list}}))
    .into_response())
}

/// `GET /coupon/api/v1/upload/getRedeemUploadStatus/{couponSeriesId}` — the series' redemption
/// upload jobs, newest first (path inferred: the spec does not give it).
#[utoipa::path(get, path = "/coupon/api/v1/upload/getRedeemUploadStatus/{couponSeriesId}", tag = "coupons-upload",
    params(("couponSeriesId" = i64, Path)),
    responses((status = 200, description = "{success, status, result{orgId, couponSeriesId, uploadJobStatuses[]}}"), (status = 404, description = "707")))]
pub async fn redeem_upload_status(
    State(state): State<AppState>,
    principal: Principal,
    Path(series): Path<i64>,
) -> Result<Response, ApiError> {
    let jobs = statuses(&state, &principal, series, UploadKind::Redemptions).await?;
    let list: Vec<Value> = jobs.iter().map(|j| job_json(j, "uploadRedeemedCouponStatus")).collect();
    Ok(axum::Json(json!({"success": true, "status": 200, "result": {"orgId": principal.org.0,
        "couponSeriesId": series, "uploadJobStatuses": list}}))
    .into_response())
}

/// Query of the error report.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct ErrorFileQuery {
    /// Rows after this row number (the `X-Next-After` of the previous page).
    after: Option<i64>,
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// `GET /coupon/api/v1/upload/errorFile/{jobId}` — the job's failed rows as CSV (`row, errorCode,
/// errorMessage, line`), 10,000 a page; `X-Next-After` names the next page's `after`.
#[utoipa::path(get, path = "/coupon/api/v1/upload/errorFile/{jobId}", tag = "coupons-upload",
    params(("jobId" = i64, Path), ErrorFileQuery),
    responses((status = 200, description = "text/csv"), (status = 404, description = "Unknown job")))]
pub async fn error_file(
    State(state): State<AppState>,
    principal: Principal,
    Path(job): Path<i64>,
    Query(q): Query<ErrorFileQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Coupon, Level::Read)?;
    let mut conn = state.db.read().await?;
    upload::get_job(&mut conn, principal.org, job)
        .await?
        .ok_or_else(|| ApiError::not_found("No such upload job"))?;
    let rows = upload::error_rows(
        &mut conn,
        principal.org,
        job,
        q.after.unwrap_or(0),
        ERROR_ROWS_PER_PAGE,
    )
    .await?;
    let mut csv = String::from("row,errorCode,errorMessage,line\n");
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            r.row_number,
            r.error_code.unwrap_or_default(),
            csv_field(r.error_message.as_deref().unwrap_or_default()),
            csv_field(&r.line)
        ));
    }
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response();
    if rows.len() as i64 == ERROR_ROWS_PER_PAGE
        && let Some(last) = rows.last()
        && let Ok(value) = last.row_number.to_string().parse()
    {
        response.headers_mut().insert("x-next-after", value);
    }
    Ok(response)
}
