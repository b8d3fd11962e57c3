//! The sanity queue's v2 API: list rejected bills, re-trigger them through the add pipeline,
//! read a re-trigger's outcome per bill, and give up on them (markFailed).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::rejections::{
    self, Claim, MarkFailed, RejectedFilter, RejectedRow, RejectionStatus, RejectionType, Replay,
};
use super::service::{self, AddRequest};
use super::{routes_v1, routes_v2, time};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::db::{Connection, now_millis};
use crate::error::{ApiError, Code};
use crate::http::envelope::v2_list;
use crate::http::extract::{Json, Query};
use crate::org::model::{OrgId, StoreId, TillId};

/// The APIs a queued bill can come from (the `api` column), replayed the same way.
pub const API_V2: &str = "POST /v2/transactions";
pub const API_V2_BULK: &str = "POST /v2/transactions/bulk";
pub const API_V1: &str = "POST /v1.1/transaction/add";
pub const API_V1_LOCAL_CURRENCY: &str = "POST /v1.1/transaction/add_with_local_currency";

/// The request headers that change how a bill is added, kept for its replay.
const KEPT_HEADERS: [&str; 2] = ["skip-downstream", "x-cap-client-countrycode"];
/// Rows per page of the list.
const PAGE_MAX: i64 = 1_000;
const PAGE_DEFAULT: i64 = 20;
/// Longest re-trigger request id accepted (ours are 36-character UUIDs).
const REQUEST_ID_MAX: usize = 100;

/// The headers of `KEPT_HEADERS` the request carried, as a JSON object.
pub(super) fn kept_headers(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in KEPT_HEADERS {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            out.insert(name.to_string(), json!(value));
        }
    }
    Value::Object(out)
}

/// The kept headers of a stored request, back as a header map.
pub(super) fn headers_of(stored: &Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let kept = stored.get("headers").and_then(Value::as_object);
    for (name, value) in kept.into_iter().flatten() {
        let Some(value) = value.as_str() else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            headers.insert(name, value);
        }
    }
    headers
}

/// The last steps of a replay: the rejection checks, then the add itself.
pub(super) async fn add_checked(
    state: &AppState,
    principal: &Principal,
    request: AddRequest,
    now: i64,
) -> Replay {
    let checked = match state.db.read().await {
        Ok(mut conn) => rejections::check(&mut conn, principal.org, &request.input).await,
        Err(e) => Err(e),
    };
    match checked {
        Err(e) => Replay::from_error(&ApiError::from(e)),
        Ok(Some(rejection)) => Replay::Rejected(rejection),
        Ok(None) => match service::add(&state.db, &state.programs, principal, request, now).await {
            Ok(outcome) => Replay::Added(outcome.transaction.id),
            Err(e) => Replay::from_error(&ApiError::from(e)),
        },
    }
}

/// Replays one claimed row as the store and till that sent the bill.
async fn replay(state: &AppState, principal: &Principal, row: &RejectedRow) -> Replay {
    let Some(store) = row.store_id else {
        return Replay::Failed("the store of the bill is not known".into());
    };
    let acting = Principal {
        store: Some(StoreId(store)),
        till: row.till_id.map(TillId),
        ..principal.clone()
    };
    let stored: Value = match serde_json::from_str(&row.request_body) {
        Ok(stored) => stored,
        Err(e) => return Replay::Failed(format!("stored request unreadable: {e}")),
    };
    match row.api.as_str() {
        API_V2 | API_V2_BULK => routes_v2::replay(state, &acting, &stored).await,
        API_V1 => routes_v1::replay(state, &acting, &stored, false).await,
        API_V1_LOCAL_CURRENCY => routes_v1::replay(state, &acting, &stored, true).await,
        other => Replay::Failed(format!("bills of {other} cannot be replayed")),
    }
}

/// Query of the rejected-bill list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct RejectedQuery {
    /// `PAYMENT_MODE_NOT_FOUND`, `TRANSACTION_EXTENDED_FIELD_MISSING`, `ITEM_NOT_FOUND`,
    /// `STORE_NOT_FOUND` or `CUSTOMER_EXTENDED_FIELD_MISSING`.
    rejection_type: Option<String>,
    /// `PENDING`, `FAILED`, `PROCESSED` or `RETRYING`.
    status: Option<String>,
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

impl RejectedQuery {
    fn filter(self) -> Result<RejectedFilter, ApiError> {
        let rejection_type = match given(self.rejection_type) {
            Some(t) => Some(RejectionType::parse(&t).ok_or_else(|| {
                let names: Vec<&str> = RejectionType::ALL.iter().map(|t| t.as_str()).collect();
                ApiError::invalid(format!(
                    "rejectionType '{t}' must be one of {}",
                    names.join(", ")
                ))
            })?),
            None => None,
        };
        let status = match given(self.status) {
            Some(s) => Some(RejectionStatus::parse(&s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "status '{s}' must be PENDING, FAILED, PROCESSED or RETRYING"
                ))
            })?),
            None => None,
        };
        Ok(RejectedFilter {
            rejection_type,
            status,
            identifier_name: given(self.identifier_name),
            identifier_value: given(self.identifier_value),
            source: given(self.source).map(|s| s.to_ascii_uppercase()),
        })
    }
}

/// Store and till codes, looked up once per request.
#[derive(Default)]
struct Codes {
    stores: HashMap<i64, Option<String>>,
    tills: HashMap<i64, Option<String>>,
}

impl Codes {
    async fn source(
        &mut self,
        c: &mut impl Connection,
        org: OrgId,
        row: &RejectedRow,
    ) -> Result<Value, ApiError> {
        let store_code = match row.store_id {
            Some(id) => match self.stores.get(&id) {
                Some(code) => code.clone(),
                None => {
                    let code =
                        crate::org::store::get_store(c, org, StoreId(id)).await?.map(|s| s.code);
                    self.stores.insert(id, code.clone());
                    code
                }
            },
            None => None,
        };
        let till_code = match row.till_id {
            Some(id) => match self.tills.get(&id) {
                Some(code) => code.clone(),
                None => {
                    let lookup =
                        crate::org::store::TillLookup { id: Some(id), ..Default::default() };
                    let code = crate::org::store::find_till(c, org, &lookup).await?.map(|t| t.code);
                    self.tills.insert(id, code.clone());
                    code
                }
            },
            None => None,
        };
        Ok(json!({"api": row.api, "storeId": row.store_id, "storeCode": store_code,
            "tillId": row.till_id, "tillCode": till_code}))
    }
}

/// The created transaction of a processed row.
fn transaction_id(row: &RejectedRow) -> Option<i64> {
    row.result.as_deref().and_then(|r| r.parse().ok())
}

/// `GET /v2/transactions/rejected` — the org's rejected bills, newest first, filtered by
/// rejection type, status, customer identifier and source.
#[utoipa::path(get, path = "/v2/transactions/rejected", tag = "transactions", params(RejectedQuery),
    responses((status = 200, description = "Paged list of rejected bills"), (status = 400, description = "Unknown rejectionType or status")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<RejectedQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Read)?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let offset = q.offset.unwrap_or(0).max(0);
    let filter = q.filter()?;
    let org = principal.org;
    let mut conn = state.db.read().await?;
    let (rows, total) = rejections::list_rejected(&mut conn, org, &filter, offset, limit).await?;
    let mut codes = Codes::default();
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        let source = codes.source(&mut conn, org, row).await?;
        data.push(json!({
            "id": row.id,
            "billNumber": row.bill_number,
            "customer": {"identifierName": row.identifier_name, "identifierValue": row.identifier_value,
                "source": row.source},
            "rejectionType": row.rejection_type,
            "reason": row.reason,
            "reprocessable": row.reprocessable,
            "status": row.status,
            "source": source,
            "createdOn": time::iso_utc(row.created_at),
            "updatedOn": time::iso_utc(row.updated_at),
            "retriggerRequestId": row.retrigger_request,
            "transactionId": transaction_id(row),
        }));
    }
    Ok(v2_list(data, limit, offset, total))
}

/// A list of rejected-bill ids (re-trigger and markFailed).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct IdsBody {
    ids: Option<Vec<i64>>,
}

impl IdsBody {
    /// 1 to `IDS_MAX` ids, each once, in request order.
    fn ids(self) -> Result<Vec<i64>, ApiError> {
        let ids = self.ids.unwrap_or_default();
        if ids.is_empty() {
            return Err(ApiError::invalid(format!(
                "ids must list 1 to {} rejected transaction ids",
                rejections::IDS_MAX
            )));
        }
        if ids.len() > rejections::IDS_MAX {
            return Err(ApiError::with_message(
                Code::BatchTooLarge,
                format!("at most {} ids per request", rejections::IDS_MAX),
            ));
        }
        let mut unique = Vec::with_capacity(ids.len());
        for id in ids {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        Ok(unique)
    }
}

/// A per-id problem, in the shape of v2 warnings.
fn problem(id: i64, code: u32, message: String) -> Value {
    json!({"id": id, "status": false, "code": code, "message": message})
}

/// The error when no id could be acted on: 404 when none exists in the org, else 400.
fn nothing_done(problems: &[Value], not_found: usize) -> ApiError {
    let message: Vec<&str> = problems.iter().filter_map(|p| p["message"].as_str()).collect();
    let message = message.join("; ");
    if not_found == problems.len() {
        ApiError::not_found(message)
    } else {
        ApiError::invalid(message)
    }
}

fn not_pending(id: i64, status: &str, action: &str) -> String {
    format!("rejected transaction {id} is {status}: only PENDING ones can be {action}")
}

/// `POST /v2/transactions/rejected/retrigger` — replays up to 100 `PENDING` rejected bills
/// through the add pipeline now; each ends processed (a transaction), still pending (with the
/// new reason) or failed. Answers the request id for the status endpoint.
#[utoipa::path(post, path = "/v2/transactions/rejected/retrigger", tag = "transactions", request_body = IdsBody,
    responses((status = 200, description = "{requestId, warnings}"), (status = 400, description = "No ids, more than 100 (1060), or none PENDING"),
              (status = 404, description = "None of the ids is a rejected bill of the org")))]
pub async fn retrigger(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<IdsBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    let ids = body.ids()?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut warnings = Vec::new();
    let (mut replayed, mut not_found) = (0, 0);
    for id in ids {
        match rejections::claim(&state.db, principal.org, id, &request_id, now_millis()).await? {
            Claim::Claimed(row) => {
                let outcome = replay(&state, &principal, &row).await;
                rejections::settle(&state.db, &principal, &row, outcome, now_millis()).await?;
                replayed += 1;
            }
            Claim::NotFound => {
                not_found += 1;
                warnings.push(problem(id, 404, format!("rejected transaction {id} not found")));
            }
            Claim::NotPending(status) => {
                warnings.push(problem(id, 400, not_pending(id, &status, "re-triggered")));
            }
        }
    }
    if replayed == 0 {
        return Err(nothing_done(&warnings, not_found));
    }
    Ok(axum::Json(json!({"requestId": request_id, "warnings": warnings})).into_response())
}

/// Query of the re-trigger status.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct RetriggerStatusQuery {
    request_id: Option<String>,
}

/// `GET /v2/transactions/rejected/retrigger/status` — per bill of a re-trigger: `SUCCESS` with
/// its transaction id, `PENDING` or `FAILED` with the reason.
#[utoipa::path(get, path = "/v2/transactions/rejected/retrigger/status", tag = "transactions", params(RetriggerStatusQuery),
    responses((status = 200, description = "{requestId, data: [{id, billNumber, status, transactionId?, reason?}]}"),
              (status = 400, description = "No requestId"), (status = 404, description = "Unknown requestId")))]
pub async fn retrigger_status(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<RetriggerStatusQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Read)?;
    let request_id =
        given(q.request_id).ok_or_else(|| ApiError::invalid("requestId is required"))?;
    if request_id.len() > REQUEST_ID_MAX {
        return Err(ApiError::invalid(format!("requestId is at most {REQUEST_ID_MAX} characters")));
    }
    let mut conn = state.db.read().await?;
    let rows = rejections::of_retrigger(&mut conn, principal.org, &request_id).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("no re-trigger request {request_id}")));
    }
    let data: Vec<Value> = rows
        .iter()
        .map(|row| {
            let status = match RejectionStatus::parse(&row.status) {
                Some(RejectionStatus::Processed) => "SUCCESS",
                Some(RejectionStatus::Failed) => "FAILED",
                _ => "PENDING",
            };
            let mut item = json!({"id": row.id, "billNumber": row.bill_number, "status": status});
            if status == "SUCCESS" {
                item["transactionId"] = json!(transaction_id(row));
            } else {
                item["reason"] = json!(row.reason);
            }
            item
        })
        .collect();
    Ok(axum::Json(json!({"requestId": request_id, "data": data, "warnings": [], "errors": []}))
        .into_response())
}

/// `PUT /v2/transactions/rejected/markFailed` — moves up to 100 `PENDING` rejected bills to
/// `FAILED` (never re-triggered); one result per id.
#[utoipa::path(put, path = "/v2/transactions/rejected/markFailed", tag = "transactions", request_body = IdsBody,
    responses((status = 200, description = "{data: [{id, status, success, errors?}]}"), (status = 400, description = "No ids, more than 100 (1060), or none PENDING"),
              (status = 404, description = "None of the ids is a rejected bill of the org")))]
pub async fn mark_failed(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<IdsBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Transaction, Level::Write)?;
    let ids = body.ids()?;
    let results = rejections::mark_failed(&state.db, &principal, &ids, now_millis()).await?;
    let mut data = Vec::with_capacity(results.len());
    let mut problems = Vec::new();
    let mut not_found = 0;
    for (id, result) in results {
        let problem = match result {
            MarkFailed::Done => {
                data.push(json!({"id": id, "status": "FAILED", "success": true, "errors": []}));
                continue;
            }
            MarkFailed::NotFound => {
                not_found += 1;
                problem(id, 404, format!("rejected transaction {id} not found"))
            }
            MarkFailed::NotPending(status) => {
                problem(id, 400, not_pending(id, &status, "marked failed"))
            }
        };
        data.push(json!({"id": id, "success": false, "errors": [problem.clone()]}));
        problems.push(problem);
    }
    if problems.len() == data.len() {
        return Err(nothing_done(&problems, not_found));
    }
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}
