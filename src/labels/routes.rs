//! Label handlers and wire shapes: add and list the org's labels, tag customers, list a
//! customer's labels, search customers by label.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::{
    CHANGE_ENTRIES_MAX, LABELS_PER_REQUEST_MAX, LabelError, LabelName, NAME_LENGTH_MAX, NewLabel,
    SearchPage,
};
use super::service;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::CustomerId;
use crate::customers::routes_v2::iso;
use crate::error::ApiError;
use crate::http::extract::{Json, Path, Query};

/// One label of `orgLabels`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LabelBody {
    name: Option<String>,
    description: Option<String>,
}

/// Body of `POST /v2/organization/labels`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddLabelsBody {
    org_labels: Option<Vec<LabelBody>>,
}

/// `POST /v2/organization/labels` — creates labels; names the org already has are skipped with
/// a warning. `entity` is the number of labels created.
#[utoipa::path(post, path = "/v2/organization/labels", tag = "labels", request_body = AddLabelsBody,
    responses((status = 200, description = "entity (labels created), warnings"),
        (status = 400, description = "Bad name or description, or the org's label cap exceeded")))]
pub async fn add_labels(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<AddLabelsBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let list = body.org_labels.unwrap_or_default();
    if list.is_empty() || list.len() > LABELS_PER_REQUEST_MAX {
        return Err(ApiError::invalid(format!(
            "orgLabels must list 1 to {LABELS_PER_REQUEST_MAX} labels"
        )));
    }
    let labels =
        list.iter()
            .enumerate()
            .map(|(i, l)| {
                let name = l.name.as_deref().ok_or_else(|| {
                    LabelError::Invalid(format!("orgLabels[{i}].name is required"))
                })?;
                NewLabel::parse(i, name, l.description.as_deref())
            })
            .collect::<Result<Vec<_>, _>>()?;
    let outcome = service::add_labels(&state.db, &principal, &labels).await?;
    Ok(axum::Json(json!({"entity": outcome.created.len(), "warnings": outcome.warnings}))
        .into_response())
}

/// `GET /v2/organization/labels` — every label of the caller's org.
#[utoipa::path(get, path = "/v2/organization/labels", tag = "labels",
    responses((status = 200, description = "data: the org's labels")))]
pub async fn org_labels(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let mut conn = state.db.read().await?;
    let labels = service::org_labels(&mut conn, principal.org).await?;
    let data: Vec<Value> = labels
        .into_iter()
        .map(|l| {
            json!({
                "id": l.id,
                "orgId": principal.org.0,
                "description": l.description,
                "lastUpdatedBy": l.last_updated_by,
                "name": l.name,
                "active": l.is_active,
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// One entry of `add` or `remove`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelRef {
    label_name: Option<String>,
}

/// Body of `POST /v2/customers/{userId}/changeLabels`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeLabelsBody {
    #[serde(default)]
    add: Vec<LabelRef>,
    #[serde(default)]
    remove: Vec<LabelRef>,
}

fn label_names(field: &str, list: &[LabelRef]) -> Result<Vec<LabelName>, LabelError> {
    if list.len() > CHANGE_ENTRIES_MAX {
        return Err(LabelError::Invalid(format!(
            "{field} takes at most {CHANGE_ENTRIES_MAX} labels"
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let field = format!("{field}[{i}].labelName");
            let name = entry
                .label_name
                .as_deref()
                .ok_or_else(|| LabelError::Invalid(format!("{field} is required")))?;
            LabelName::parse(&field, name)
        })
        .collect()
}

/// `POST /v2/customers/{userId}/changeLabels` — tags the customer with labels and removes
/// labels from it; every label must exist in the org.
#[utoipa::path(post, path = "/v2/customers/{userId}/changeLabels", tag = "labels",
    params(("userId" = i64, Path, description = "Customer id")), request_body = ChangeLabelsBody,
    responses((status = 200, description = "entity (the customer id), warnings"),
        (status = 400, description = "Unknown label or bad body"), (status = 404, description = "8015 not found")))]
pub async fn change_labels(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Json(body): Json<ChangeLabelsBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    if body.add.is_empty() && body.remove.is_empty() {
        return Err(ApiError::invalid("add or remove must list at least one label"));
    }
    let add = label_names("add", &body.add)?;
    let remove = label_names("remove", &body.remove)?;
    let warnings =
        service::change_labels(&state.db, &principal, CustomerId(user_id), &add, &remove).await?;
    Ok(axum::Json(json!({"entity": user_id, "warnings": warnings})).into_response())
}

/// `GET /v2/customers/{userId}/labels` — the customer's labels, in tagging order.
#[utoipa::path(get, path = "/v2/customers/{userId}/labels", tag = "labels",
    params(("userId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "data: the customer's labels"), (status = 404, description = "8015 not found")))]
pub async fn customer_labels(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let mut conn = state.db.read().await?;
    let tags = service::customer_labels(&mut conn, principal.org, CustomerId(user_id)).await?;
    let data: Vec<Value> = tags
        .into_iter()
        .map(|t| {
            json!({
                "orgId": principal.org.0,
                "labelId": t.label_id,
                "labelName": t.name,
                "taggedOn": iso(t.tagged_at),
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": []})).into_response())
}

/// Query of `GET /v2/customers/labels/search`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    /// Label name prefix (case-sensitive), required.
    q: Option<String>,
    offset: Option<i64>,
    /// Page size, 1–1000 (default 10); -1 means all, still at most 1000.
    limit: Option<i64>,
}

/// `GET /v2/customers/labels/search` — customers holding a label whose name starts with `q`.
#[utoipa::path(get, path = "/v2/customers/labels/search", tag = "labels", params(SearchQuery),
    responses((status = 200, description = "pagination, data: customers with their matching labels"),
        (status = 400, description = "Missing q or bad paging")))]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let prefix = q.q.unwrap_or_default();
    if prefix.is_empty() || prefix.chars().count() > NAME_LENGTH_MAX {
        return Err(ApiError::invalid(format!("q must be 1 to {NAME_LENGTH_MAX} characters")));
    }
    let page = SearchPage::parse(q.limit, q.offset)?;
    let mut conn = state.db.read().await?;
    let (hits, total) = service::search(&mut conn, principal.org, &prefix, page).await?;
    let org = principal.org.0;
    let data: Vec<Value> = hits
        .into_iter()
        .map(|h| {
            let labels: Vec<Value> =
                h.labels.into_iter().map(|n| json!({"orgId": org, "labelName": n})).collect();
            json!({"userId": h.customer.0, "customerLabels": labels})
        })
        .collect();
    Ok(axum::Json(json!({
        "pagination": {"limit": page.limit, "offset": page.offset, "total": total},
        "data": data,
        "warnings": [],
        "errors": [],
    }))
    .into_response())
}
