//! Customer images: upload (`setImage`, by id or by lookup), list, delete by upload index, and
//! the Perks extension that serves an image's bytes. Images live in `customer_images`.
//!
//! An upload is `multipart/form-data` with up to [`FILES_PER_REQUEST_MAX`] parts named `FILE`,
//! each between [`IMAGE_SIZE_MIN_BYTES`] and `Settings::customer_image_max_bytes`. The upload
//! routes switch off the global body limit and enforce their own, derived from that setting,
//! while the body is read.

use axum::Router;
use axum::body::Body;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi};

use super::model::{CustomerError, CustomerId};
use super::routes_v2::{LookupQuery, country_code};
use super::store as customer_store;
use crate::app::AppState;
use crate::audit::{self, AuditActor, Change};
use crate::auth::{Level, Principal, Resource};
use crate::db::{Connection, Db, DbError, now_millis};
use crate::dispatch;
use crate::error::{ApiError, Code};
use crate::events::{self, NewEvent};
use crate::http::extract::{Path, Query};
use crate::org::model::OrgId;

/// Most `FILE` parts in one upload.
pub const FILES_PER_REQUEST_MAX: usize = 5;
/// Smallest accepted image: 10 KB, read as 10 KiB.
pub const IMAGE_SIZE_MIN_BYTES: usize = 10 * 1024;
/// Most images one customer may hold.
pub const IMAGES_PER_CUSTOMER_MAX: i64 = 50;
/// Room for boundaries and part headers on top of the files themselves.
const MULTIPART_OVERHEAD_BYTES: usize = 64 * 1024;
/// Longest kept client file name and content type.
const FILE_NAME_LENGTH_MAX: usize = 255;
const CONTENT_TYPE_LENGTH_MAX: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/customers/{id}/setImage",
            post(set_image).get(get_images).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v2/customers/lookup/setImage",
            post(lookup_set_image).layer(DefaultBodyLimit::disable()),
        )
        .route("/v2/customers/{id}/deleteImage", delete(delete_images))
        .route("/v2/customers/{id}/images/{handle}", get(image_bytes))
}

#[derive(OpenApi)]
#[openapi(paths(set_image, lookup_set_image, get_images, delete_images, image_bytes))]
pub struct ApiDoc;

// ---------------------------------------------------------------- SQL

/// An image without its bytes.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ImageRow {
    pub id: i64,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_at: i64,
}

/// An image's bytes and their content type.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ImageData {
    pub content_type: String,
    pub data: Vec<u8>,
}

pub async fn insert_image(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    upload: &Upload,
    now: i64,
) -> Result<i64, DbError> {
    let size = i64::try_from(upload.data.len()).unwrap_or(i64::MAX);
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO customer_images (org_id, customer_id, file_name, content_type, size_bytes, \
         data, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(&upload.file_name)
    .bind(&upload.content_type)
    .bind(size)
    .bind(&upload.data)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// A customer's images in upload order (their 0-based index is their position here).
pub async fn images(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Vec<ImageRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ImageRow>(
        "SELECT id, file_name, content_type, size_bytes, created_at FROM customer_images \
         WHERE org_id = $1 AND customer_id = $2 ORDER BY id LIMIT $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(IMAGES_PER_CUSTOMER_MAX)
    .fetch_all(e)
    .await)?)
}

pub async fn image_data(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    image: i64,
) -> Result<Option<ImageData>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ImageData>(
        "SELECT content_type, data FROM customer_images \
         WHERE org_id = $1 AND customer_id = $2 AND id = $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(image)
    .fetch_optional(e)
    .await)?)
}

pub async fn delete_image(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    image: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "DELETE FROM customer_images WHERE org_id = $1 AND customer_id = $2 AND id = $3"
    )
    .bind(org.0)
    .bind(customer.0)
    .bind(image)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected > 0)
}

// ---------------------------------------------------------------- rules

/// One uploaded file, checked at the boundary.
#[derive(Clone, Debug)]
pub struct Upload {
    pub file_name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

async fn require_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<(), CustomerError> {
    match customer_store::get_customer(c, org, customer).await? {
        Some(_) => Ok(()),
        None => Err(CustomerError::NotFound),
    }
}

/// Stores uploads in one transaction; answers the customer's images from the first new one on,
/// each with its index.
#[tracing::instrument(skip_all, fields(org = principal.org.0, customer = customer.0))]
pub async fn add_images(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    uploads: &[Upload],
) -> Result<Vec<(usize, ImageRow)>, CustomerError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    require_customer(&mut tx, org, customer).await?;
    let before = images(&mut tx, org, customer).await?.len();
    let held = i64::try_from(before + uploads.len()).unwrap_or(i64::MAX);
    if held > IMAGES_PER_CUSTOMER_MAX {
        return Err(CustomerError::Invalid(format!(
            "A customer holds at most {IMAGES_PER_CUSTOMER_MAX} images; delete some first"
        )));
    }
    let now = now_millis();
    let mut handles = Vec::with_capacity(uploads.len());
    for upload in uploads {
        handles.push(insert_image(&mut tx, org, customer, upload, now).await?);
    }
    let sizes: Vec<usize> = uploads.iter().map(|u| u.data.len()).collect();
    let after = json!({"imagesAdded": handles, "sizes": sizes});
    let change = Change {
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        action: "ADD_IMAGE",
        before: None,
        after: Some(after.clone()),
    };
    audit::record(&mut tx, org, &AuditActor::from(principal), change).await?;
    let event = NewEvent {
        event_type: "customer.images_added",
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        payload: json!({"customerId": customer.0, "images": after}),
    };
    events::raise(&mut tx, org, Some(principal), event).await?;
    let all = images(&mut tx, org, customer).await?;
    tx.commit().await?;
    Ok(all.into_iter().enumerate().filter(|(_, row)| handles.contains(&row.id)).collect())
}

/// Deletes images by 0-based upload index, all or none; answers how many were deleted.
#[tracing::instrument(skip_all, fields(org = principal.org.0, customer = customer.0))]
pub async fn delete_images_at(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    indexes: &[usize],
) -> Result<usize, CustomerError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    require_customer(&mut tx, org, customer).await?;
    let held = images(&mut tx, org, customer).await?;
    let mut deleted = Vec::with_capacity(indexes.len());
    for index in indexes {
        let row = held.get(*index).ok_or_else(|| {
            CustomerError::Invalid(format!(
                "image_ids: no image at index {index} (the customer has {} images)",
                held.len()
            ))
        })?;
        delete_image(&mut tx, org, customer, row.id).await?;
        deleted.push(json!({"index": index, "fileHandle": row.id.to_string()}));
    }
    let before = json!({"images": held.iter().map(|r| r.id).collect::<Vec<_>>()});
    let after = json!({"deleted": deleted});
    let change = Change {
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        action: "DELETE_IMAGE",
        before: Some(before),
        after: Some(after.clone()),
    };
    audit::record(&mut tx, org, &AuditActor::from(principal), change).await?;
    let event = NewEvent {
        event_type: "customer.images_deleted",
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        payload: json!({"customerId": customer.0, "images": after}),
    };
    events::raise(&mut tx, org, Some(principal), event).await?;
    tx.commit().await?;
    Ok(deleted.len())
}

// ---------------------------------------------------------------- HTTP

/// `YYYY-MM-DD HH:mm:ss` in UTC, the file service's time format.
fn file_time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The customer's image entries (the `customerImage` embed of customer reads).
pub(crate) async fn image_entries(
    conn: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Vec<Value>, ApiError> {
    let rows = images(conn, org, customer).await?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(index, row)| entry(org, customer, index, row, "Success"))
        .collect())
}

/// One image entry of the upload and read answers.
fn entry(org: OrgId, customer: CustomerId, index: usize, row: &ImageRow, message: &str) -> Value {
    json!({
        "code": 200,
        "message": message,
        "status": "true",
        "file": {
            "acl": "PRIVATE",
            "fileSize": row.size_bytes.to_string(),
            "fileHandle": row.id.to_string(),
            "lastModified": file_time(row.created_at),
            "latestVersion": -1,
            "name": format!("{}/{}/{}", org.0, customer.0, index),
            "namespace": "customerImage",
            "s3Token": "",
            "version": -1,
        },
    })
}

fn multipart_error(e: MultipartError) -> ApiError {
    let code = Code::for_status(e.status());
    if code == Code::BodyTooLarge {
        return ApiError::with_message(
            code,
            format!("Request body is too large: at most {FILES_PER_REQUEST_MAX} images"),
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

/// A content type worth keeping (`type/subtype` with parameters), or `application/octet-stream`.
fn content_type(raw: Option<&str>) -> String {
    let Some(raw) = raw.map(str::trim) else { return "application/octet-stream".into() };
    let ok = !raw.is_empty()
        && raw.len() <= CONTENT_TYPE_LENGTH_MAX
        && raw.split(';').next().is_some_and(|m| m.trim().split('/').count() == 2)
        && HeaderValue::from_str(raw).is_ok();
    if ok { raw.to_ascii_lowercase() } else { "application/octet-stream".into() }
}

/// Reads the `FILE` parts of an upload, enforcing the part name, the file count and sizes, and
/// a body limit of five largest files plus overhead.
async fn read_uploads(state: &AppState, request: Request) -> Result<Vec<Upload>, ApiError> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::with_message(
            Code::UnsupportedMediaType,
            "Unsupported media type: send multipart/form-data with FILE parts",
        ));
    }
    let size_max = state.settings.customer_image_max_bytes;
    let body_max =
        size_max.saturating_mul(FILES_PER_REQUEST_MAX).saturating_add(MULTIPART_OVERHEAD_BYTES);
    let (parts, body) = request.into_parts();
    let limited = Body::new(http_body_util::Limited::new(body, body_max));
    let mut multipart = Multipart::from_request(Request::from_parts(parts, limited), &())
        .await
        .map_err(multipart_rejection)?;
    let mut uploads: Vec<Upload> = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        if name != "FILE" {
            return Err(ApiError::invalid(format!(
                "Unexpected multipart part '{name}': images are sent in parts named FILE"
            )));
        }
        if uploads.len() == FILES_PER_REQUEST_MAX {
            return Err(ApiError::invalid(format!(
                "At most {FILES_PER_REQUEST_MAX} FILE parts per request"
            )));
        }
        let index = uploads.len();
        let file_name: String = field
            .file_name()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(FILE_NAME_LENGTH_MAX)
            .collect();
        let content_type = content_type(field.content_type());
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if data.len() + chunk.len() > size_max {
                return Err(ApiError::with_message(
                    Code::ImageSizeOutOfBounds,
                    format!("FILE {index} is larger than {size_max} bytes"),
                ));
            }
            data.extend_from_slice(&chunk);
        }
        if data.len() < IMAGE_SIZE_MIN_BYTES {
            return Err(ApiError::with_message(
                Code::ImageSizeOutOfBounds,
                format!(
                    "FILE {index} has {} bytes: images must be {IMAGE_SIZE_MIN_BYTES} to {size_max} bytes",
                    data.len()
                ),
            ));
        }
        uploads.push(Upload { file_name, content_type, data });
    }
    if uploads.is_empty() {
        return Err(ApiError::invalid("At least one FILE part is required"));
    }
    Ok(uploads)
}

async fn upload_for(
    state: &AppState,
    principal: &Principal,
    customer: CustomerId,
    request: Request,
) -> Result<Response, ApiError> {
    // Refuse an unknown customer before reading megabytes of body.
    let mut conn = state.db.read().await?;
    require_customer(&mut conn, principal.org, customer).await?;
    drop(conn);
    let uploads = read_uploads(state, request).await?;
    let added = add_images(&state.db, principal, customer, &uploads).await?;
    let data: Vec<Value> = added
        .iter()
        .map(|(index, row)| {
            entry(principal.org, customer, *index, row, "Successfully uploaded file")
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// `POST /v2/customers/{userId}/setImage` — uploads up to five images (`multipart/form-data`,
/// parts named `FILE`).
#[utoipa::path(post, path = "/v2/customers/{userId}/setImage", tag = "customers",
    params(("userId" = i64, Path, description = "Customer id")),
    request_body(content_type = "multipart/form-data", description = "Up to 5 parts named FILE"),
    responses((status = 200, description = "data: one entry per uploaded file"),
        (status = 400, description = "8083 image size out of bounds, or a bad part"),
        (status = 404, description = "8015 not found"), (status = 413, description = "Body too large")))]
pub async fn set_image(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    request: Request,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    upload_for(&state, &principal, CustomerId(user_id), request).await
}

/// `POST /v2/customers/lookup/setImage` — as `setImage`, for the customer found by identifier.
#[utoipa::path(post, path = "/v2/customers/lookup/setImage", tag = "customers", params(LookupQuery),
    request_body(content_type = "multipart/form-data", description = "Up to 5 parts named FILE"),
    responses((status = 200, description = "data: one entry per uploaded file"),
        (status = 400, description = "8083 image size out of bounds, or a bad part"),
        (status = 404, description = "8015 not found")))]
pub async fn lookup_set_image(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let mut conn = state.db.read().await?;
    let (customer, _) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    drop(conn);
    upload_for(&state, &principal, customer, request).await
}

/// Query of `GET /v2/customers/{userId}/setImage`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ImagesQuery {
    source: Option<String>,
    account_id: Option<String>,
    /// `CUSTOMERIMAGE` (accepted and implied).
    #[allow(dead_code)]
    embed: Option<String>,
}

/// `GET /v2/customers/{userId}/setImage` — the customer's images in upload order; each
/// `fileHandle` serves the bytes at `GET /v2/customers/{userId}/images/{fileHandle}`.
#[utoipa::path(get, path = "/v2/customers/{userId}/setImage", tag = "customers",
    params(ImagesQuery, ("userId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "data: the image entries"), (status = 404, description = "8015 not found")))]
pub async fn get_images(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Query(q): Query<ImagesQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let filter =
        super::routes_v2::SourceFilter::parse(q.source.as_deref(), q.account_id.as_deref())?;
    let customer = CustomerId(user_id);
    let mut conn = state.db.read().await?;
    let view = super::service::load(&mut conn, principal.org, customer)
        .await?
        .ok_or(CustomerError::NotFound)?;
    let rows = images(&mut conn, principal.org, customer).await?;
    let data: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| entry(principal.org, customer, index, row, "Success"))
        .collect();
    // The shared customer object with the image entries (`customerImage`), and the entries
    // again as `data` for clients that read the upload answer's shape.
    let mut body =
        super::routes_v2::customer_json(&mut conn, principal.org, &view, &filter, None).await?;
    body["customerImage"] = Value::Array(data.clone());
    body["data"] = Value::Array(data);
    body["errors"] = json!([]);
    Ok(axum::Json(body).into_response())
}

/// Query of `DELETE /v2/customers/{userId}/deleteImage`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeleteQuery {
    /// Comma-separated 0-based indexes in upload order.
    image_ids: Option<String>,
}

/// Parses `image_ids`: none → 8078; each a non-negative integer; duplicates count once.
fn parse_indexes(raw: Option<&str>) -> Result<Vec<usize>, ApiError> {
    let raw = raw.map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::new(Code::NoImageGiven));
    }
    let mut indexes = Vec::new();
    for (n, item) in raw.split(',').enumerate() {
        if i64::try_from(n).unwrap_or(i64::MAX) >= IMAGES_PER_CUSTOMER_MAX {
            return Err(ApiError::invalid(format!(
                "image_ids takes at most {IMAGES_PER_CUSTOMER_MAX} indexes"
            )));
        }
        let index: usize = item.trim().parse().map_err(|_| {
            ApiError::invalid(format!(
                "image_ids: '{}' is not an image index (0, 1, 2, …)",
                item.trim()
            ))
        })?;
        if !indexes.contains(&index) {
            indexes.push(index);
        }
    }
    Ok(indexes)
}

/// `DELETE /v2/customers/{userId}/deleteImage?image_ids=0,2` — deletes images by their 0-based
/// index in upload order; all or none.
#[utoipa::path(delete, path = "/v2/customers/{userId}/deleteImage", tag = "customers",
    params(DeleteQuery, ("userId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "data: one entry per deleted image"),
        (status = 400, description = "8078 no image passed, or a bad index"), (status = 404, description = "8015 not found")))]
pub async fn delete_images(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let indexes = parse_indexes(q.image_ids.as_deref())?;
    let deleted = delete_images_at(&state.db, &principal, CustomerId(user_id), &indexes).await?;
    let data: Vec<Value> = (0..deleted)
        .map(|_| json!({"code": 200, "message": "Success", "status": "true"}))
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// `GET /v2/customers/{userId}/images/{fileHandle}` — Perks extension: the image's bytes with
/// their content type.
#[utoipa::path(get, path = "/v2/customers/{userId}/images/{fileHandle}", tag = "customers",
    params(("userId" = i64, Path, description = "Customer id"),
        ("fileHandle" = String, Path, description = "fileHandle of an image entry")),
    responses((status = 200, description = "The image bytes"),
        (status = 404, description = "8015 customer not found, 404 no such image")))]
pub async fn image_bytes(
    State(state): State<AppState>,
    principal: Principal,
    Path((user_id, handle)): Path<(i64, String)>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let customer = CustomerId(user_id);
    let mut conn = state.db.read().await?;
    require_customer(&mut conn, principal.org, customer).await?;
    let not_found = || ApiError::not_found(format!("No image with fileHandle '{handle}'"));
    let id: i64 = handle.parse().map_err(|_| not_found())?;
    let image = image_data(&mut conn, principal.org, customer, id).await?.ok_or_else(not_found)?;
    let content_type = HeaderValue::from_str(&image.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition =
        if image.content_type.starts_with("image/") { "inline" } else { "attachment" };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static(disposition)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=0")),
        ],
        Body::from(image.data),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_indexes_are_parsed_strictly() {
        assert_eq!(parse_indexes(Some("0, 2,2")).unwrap(), vec![0, 2]);
        assert_eq!(parse_indexes(None).unwrap_err().code, Code::NoImageGiven);
        assert_eq!(parse_indexes(Some(" ")).unwrap_err().code, Code::NoImageGiven);
        for bad in ["a", "-1", "1,,2", "1.5"] {
            assert_eq!(parse_indexes(Some(bad)).unwrap_err().code, Code::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn content_types_are_kept_only_when_sane() {
        assert_eq!(content_type(Some("image/PNG")), "image/png");
        assert_eq!(content_type(None), "application/octet-stream");
        assert_eq!(content_type(Some("nonsense")), "application/octet-stream");
    }
}
