//! The currency admin API (Perks extension, admin token only): list, create, read and change
//! the org's alternate currencies under `/x/perks/v1/currencies`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::model::{
    CurrencyBody, CurrencyError, CurrencyRow, CurrencyUpdate, check_expiry, name_key,
    parse_description,
};
use super::service;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::extract::{Json, Path};
use crate::programs::model::ExpiryDoc;

/// One currency as the admin API shows it.
pub fn currency_json(row: &CurrencyRow) -> Value {
    json!({
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "expiry": row.expiry.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()),
        "active": row.active,
        "version": row.version,
        "createdAt": crate::customers::routes_v2::iso(row.created_at),
        "updatedAt": crate::customers::routes_v2::iso(row.updated_at),
    })
}

fn one(row: &CurrencyRow) -> Value {
    json!({"data": currency_json(row), "warnings": [], "errors": []})
}

/// `GET /x/perks/v1/currencies` — the org's alternate currencies.
#[utoipa::path(get, path = "/x/perks/v1/currencies", tag = "admin",
    responses((status = 200, description = "The org's currencies"), (status = 403, description = "Not an admin token")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let rows = service::list(&state.db, principal.org).await?;
    let data: Vec<Value> = rows.iter().map(currency_json).collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// `POST /x/perks/v1/currencies` — defines a currency (`name`, `description`, `expiry` in the
/// program document's shape, `active`); 201 with the currency.
#[utoipa::path(post, path = "/x/perks/v1/currencies", tag = "admin", request_body = CurrencyBody,
    responses((status = 201, description = "Created"), (status = 400, description = "Invalid, or 1207 name taken"),
        (status = 403, description = "Not an admin token")))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CurrencyBody>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let new = body.parse()?;
    let row = service::create(&state.db, &principal, &new).await?;
    Ok((StatusCode::CREATED, axum::Json(one(&row))).into_response())
}

/// `GET /x/perks/v1/currencies/{id}` — one currency.
#[utoipa::path(get, path = "/x/perks/v1/currencies/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Currency id")),
    responses((status = 200, description = "The currency"), (status = 404, description = "Not found")))]
pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let row = service::get(&state.db, principal.org, id).await?;
    Ok(axum::Json(one(&row)).into_response())
}

/// Reads an update body: `description`, `expiry` (`null` clears it: awards then follow the
/// program's expiry), `active`; `name` may be sent but not changed.
fn parse_update(
    body: &Map<String, Value>,
    current: &CurrencyRow,
) -> Result<CurrencyUpdate, ApiError> {
    let mut update = CurrencyUpdate::default();
    for (key, value) in body {
        match key.as_str() {
            "name" => {
                let same = value.as_str().is_some_and(|n| name_key(n) == name_key(&current.name));
                if !same {
                    return Err(CurrencyError::Invalid(
                        "name cannot change: program documents refer to it".into(),
                    )
                    .into());
                }
            }
            "description" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| ApiError::invalid("description must be a string"))?;
                update.description = Some(parse_description(text)?);
            }
            "expiry" => {
                update.expiry = Some(match value {
                    Value::Null => None,
                    other => {
                        let rule: ExpiryDoc = serde_json::from_value(other.clone())
                            .map_err(|e| ApiError::invalid(format!("expiry: {e}")))?;
                        check_expiry(&rule)?;
                        Some(rule)
                    }
                });
            }
            "active" => {
                update.active = Some(
                    value.as_bool().ok_or_else(|| ApiError::invalid("active must be a boolean"))?,
                );
            }
            other => return Err(ApiError::invalid(format!("unknown field `{other}`"))),
        }
    }
    Ok(update)
}

/// `PUT /x/perks/v1/currencies/{id}` — changes a currency's description, expiry rule or active
/// flag. An inactive currency earns nothing more; its balances stay and can be redeemed.
#[utoipa::path(put, path = "/x/perks/v1/currencies/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Currency id")),
    request_body(content = Object, description = "description, expiry, active"),
    responses((status = 200, description = "The currency"), (status = 400, description = "Invalid"),
        (status = 404, description = "Not found")))]
pub async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let current = service::get(&state.db, principal.org, id).await?;
    let update = parse_update(&body, &current)?;
    let row = service::update(&state.db, &principal, id, &update).await?;
    Ok(axum::Json(one(&row)).into_response())
}
