//! The program admin API (Perks extension, admin token only): list, create, read and replace
//! program documents under `/x/perks/v1/programs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::model::{ProgramDoc, ProgramId};
use super::service::{self, SaveTarget, SavedProgram};
use super::store::ProgramRow;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::extract::{Json, Path};

fn iso(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One program as the admin API shows it: bookkeeping plus the stored document, whose `default`
/// is always the org's current choice.
fn program_json(row: &ProgramRow) -> Value {
    let mut document = serde_json::from_str::<Value>(&row.document).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut document {
        map.insert("default".into(), json!(row.is_default));
    }
    json!({
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "default": row.is_default,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "document": document,
    })
}

fn saved_json(saved: &SavedProgram) -> Value {
    json!({"data": {"id": saved.id.0, "version": saved.version}, "warnings": [], "errors": []})
}

/// `GET /x/perks/v1/programs` — the org's programs with their documents.
#[utoipa::path(get, path = "/x/perks/v1/programs", tag = "admin",
    responses((status = 200, description = "The org's programs"),
        (status = 403, description = "Not an admin token")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let rows = service::list_programs(&state.db, principal.org).await?;
    let data: Vec<Value> = rows.iter().map(program_json).collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// `POST /x/perks/v1/programs` — create a program from its document; 201 with id and version.
#[utoipa::path(post, path = "/x/perks/v1/programs", tag = "admin",
    request_body(content = Object, description = "The program document", content_type = "application/json"),
    responses((status = 201, description = "Created: id and version"),
        (status = 400, description = "Invalid document: the message names the field and the reason"),
        (status = 403, description = "Not an admin token")))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(doc): Json<ProgramDoc>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let saved = service::save_program(
        &state.db,
        &state.programs,
        principal.org,
        Some(&principal),
        SaveTarget::New,
        doc,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(saved_json(&saved))).into_response())
}

/// `GET /x/perks/v1/programs/{id}` — one program with its document.
#[utoipa::path(get, path = "/x/perks/v1/programs/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Program id")),
    responses((status = 200, description = "The program"),
        (status = 403, description = "Not an admin token"),
        (status = 404, description = "No such program in the org")))]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let row = service::get_program(&state.db, principal.org, ProgramId(id)).await?;
    Ok(axum::Json(json!({"data": program_json(&row), "warnings": [], "errors": []}))
        .into_response())
}

/// `PUT /x/perks/v1/programs/{id}` — replace the program's document; its version goes up by one.
#[utoipa::path(put, path = "/x/perks/v1/programs/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Program id")),
    request_body(content = Object, description = "The program document", content_type = "application/json"),
    responses((status = 200, description = "Replaced: id and new version"),
        (status = 400, description = "Invalid document: the message names the field and the reason"),
        (status = 403, description = "Not an admin token"),
        (status = 404, description = "No such program in the org")))]
pub async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(doc): Json<ProgramDoc>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let saved = service::save_program(
        &state.db,
        &state.programs,
        principal.org,
        Some(&principal),
        SaveTarget::Replace(ProgramId(id)),
        doc,
    )
    .await?;
    Ok(axum::Json(saved_json(&saved)).into_response())
}
