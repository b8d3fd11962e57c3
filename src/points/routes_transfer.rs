//! v2 points transfer APIs: check, transfer, the transfer records of a customer, and the user
//! group variants (which answer "not yet supported" until user groups exist).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::adjust;
use super::model::Fixed;
use super::redemption::PointsError;
use super::routes_ops::resolve_customer;
use super::routes_v2::{customer_by_id, number};
use super::schedule;
use super::store_ops::{self, TransferOrder, TransferRow};
use super::transfer::{self, TransferRequest};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::model::CustomerId;
use crate::db::{Connection, now_millis};
use crate::error::{ApiError, Code};
use crate::http::extract::{Json, Path, Query};
use crate::org::model::OrgId;

/// Transfer records listed at most by one read without pagination.
const TRANSFERS_MAX: i64 = 1000;
/// Largest page of the transfer summary.
const SUMMARY_PAGE_MAX: i64 = 100;

/// A customer identifier of a transfer body: `type` `ID`, `MOBILE`, `EXTERNAL_ID` or `EMAIL`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TransferParty {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[schema(value_type = String)]
    value: Option<Value>,
}

/// Body of `POST /v2/points/isTransferable` and `POST /v2/points/transfer`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferBody {
    #[serde(alias = "pointsToBeTransferred")]
    #[schema(value_type = f64)]
    points_tobe_transferred: Option<Value>,
    program_id: Option<i64>,
    #[schema(value_type = Option<bool>)]
    group_program_transfer: Option<Value>,
    from_customer_identifier: Option<TransferParty>,
    to_customer_identifier: Option<TransferParty>,
    issue_otp: Option<bool>,
    /// The sender's validation code (only when one was issued).
    code: Option<String>,
    notes: Option<String>,
}

fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

async fn party(
    c: &mut impl Connection,
    org: OrgId,
    headers: &HeaderMap,
    field: &str,
    p: Option<&TransferParty>,
) -> Result<i64, ApiError> {
    let p = p.ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
    let value = match p.value.as_ref() {
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    resolve_customer(c, org, headers, Some("INSTORE"), None, p.kind.as_deref(), value.as_deref())
        .await
}

/// The parsed parts of a transfer body.
struct Parsed {
    from: i64,
    to: i64,
    program: crate::programs::engine::CompiledProgram,
    points: Fixed,
}

async fn parse(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: &TransferBody,
) -> Result<Parsed, ApiError> {
    if is_true(body.group_program_transfer.as_ref()) {
        return Err(ApiError::with_message(
            Code::NotYetSupported,
            "group program transfers are not supported yet (use /v2/points/userGroup2/transfer \
             once user groups exist)",
        ));
    }
    let points = redemption_points(body.points_tobe_transferred.as_ref())?;
    let mut conn = state.db.read().await?;
    let from = party(
        &mut conn,
        principal.org,
        headers,
        "fromCustomerIdentifier",
        body.from_customer_identifier.as_ref(),
    )
    .await?;
    let to = party(
        &mut conn,
        principal.org,
        headers,
        "toCustomerIdentifier",
        body.to_customer_identifier.as_ref(),
    )
    .await?;
    let program =
        schedule::programs_for(&state.programs, &mut conn, principal.org, body.program_id, false)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::new(Code::InvalidProgramId))?;
    Ok(Parsed { from, to, program, points })
}

fn redemption_points(value: Option<&Value>) -> Result<Fixed, ApiError> {
    let value = number(value).ok_or(PointsError::InvalidPoints)?;
    Ok(super::redemption::parse_points(value)?)
}

/// A customer as a transfer's `transferFrom`/`transferTo` (the shared customer object, trimmed).
async fn customer_brief(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Value, ApiError> {
    let view = crate::customers::service::load(c, org, CustomerId(customer))
        .await?
        .ok_or_else(|| ApiError::new(Code::CustomerNotFound))?;
    let filter = crate::customers::routes_v2::SourceFilter::All;
    let full = crate::customers::routes_v2::customer_json(c, org, &view, &filter, None).await?;
    Ok(json!({"id": customer, "profiles": full["profiles"], "loyaltyInfo": {
        "loyaltyType": full["loyaltyInfo"]["loyaltyType"],
        "lifetimePurchases": full["loyaltyInfo"]["lifetimePurchases"]}}))
}

/// `userId`, names and external id of a customer, as transfer records show them.
async fn party_names(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Value, ApiError> {
    let view = crate::customers::service::load(c, org, CustomerId(customer)).await?;
    let (first, last, external) = match &view {
        Some(v) => {
            let profile = v.profiles.first();
            let external = v
                .identifiers
                .iter()
                .find(|i| i.kind == "externalId")
                .map(|i| i.value.clone())
                .unwrap_or_default();
            (
                profile.map(|p| p.first_name.clone()).unwrap_or_default(),
                profile.map(|p| p.last_name.clone()).unwrap_or_default(),
                external,
            )
        }
        None => Default::default(),
    };
    Ok(json!({"userId": customer, "firstName": first, "lastName": last, "externalId": external}))
}

/// Names of the customers and programs transfer records mention, read once per request.
#[derive(Default)]
struct Names {
    customers: std::collections::HashMap<i64, Value>,
    programs: Option<Vec<(i64, String)>>,
}

impl Names {
    async fn customer(
        &mut self,
        c: &mut impl Connection,
        org: OrgId,
        id: i64,
    ) -> Result<Value, ApiError> {
        if let Some(found) = self.customers.get(&id) {
            return Ok(found.clone());
        }
        let value = party_names(c, org, id).await?;
        self.customers.insert(id, value.clone());
        Ok(value)
    }

    async fn program(
        &mut self,
        c: &mut impl Connection,
        org: OrgId,
        id: i64,
    ) -> Result<String, ApiError> {
        if self.programs.is_none() {
            let heads = crate::programs::store::program_heads(c, org).await?;
            self.programs = Some(heads.into_iter().map(|h| (h.id, h.name)).collect());
        }
        Ok(self
            .programs
            .iter()
            .flatten()
            .find(|(p, _)| *p == id)
            .map(|(_, name)| name.clone())
            .unwrap_or_default())
    }
}

/// A transfer record seen by `viewer`: `DEDUCTION` when it sent the points, `ADDITION` when it
/// received them.
async fn record_json(
    c: &mut impl Connection,
    org: OrgId,
    names: &mut Names,
    t: &TransferRow,
    viewer: i64,
    tz: chrono_tz::Tz,
) -> Result<Value, ApiError> {
    Ok(json!({
        "transferId": t.id,
        "transferType": if t.from_customer_id == viewer { "DEDUCTION" } else { "ADDITION" },
        "pointsTransferred": Fixed(t.points).to_f64(),
        "pointsTransferDate": crate::transactions::time::v1_time(t.created_at, tz),
        "pointsTransferDateISO": crate::transactions::time::iso_in(t.created_at, tz),
        "fromEntityId": t.from_customer_id,
        "fromEntityType": "CUSTOMER",
        "toEntityId": t.to_customer_id,
        "toEntityType": "CUSTOMER",
        "transferredFrom": names.customer(c, org, t.from_customer_id).await?,
        "transferredTo": names.customer(c, org, t.to_customer_id).await?,
        "notes": t.notes,
        "programId": t.program_id,
        "programName": names.program(c, org, t.program_id).await?,
    }))
}

/// `POST /v2/points/isTransferable` (also spelled `isTransferrable`) — whether the points can
/// go from one customer to another; with `issueOtp` a validation code goes to the sender.
#[utoipa::path(post, path = "/v2/points/isTransferable", tag = "points", request_body = TransferBody,
    responses((status = 200, description = "Transferable"), (status = 400, description = "801, 803, 809, 414, 418, 1101"), (status = 403, description = "830 transfers not enabled"), (status = 404, description = "8015 not found")))]
pub async fn is_transferable(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<TransferBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let p = parse(&state, &principal, &headers, &body).await?;
    let request = TransferRequest {
        from: p.from,
        to: p.to,
        program: &p.program,
        points: p.points,
        code: None,
        notes: "",
        till: principal.till.map(|t| t.0),
    };
    let now = now_millis();
    let available = transfer::check(&state.db, principal.org, &request, now).await?;
    let mut item = {
        let mut conn = state.db.read().await?;
        json!({
            "pointsTobeTransferred": p.points.to_f64(),
            "transferablePoints": available.to_f64(),
            "programId": p.program.id.0,
            "transferFrom": customer_brief(&mut conn, principal.org, p.from).await?,
            "transferTo": customer_brief(&mut conn, principal.org, p.to).await?,
        })
    };
    if body.issue_otp.unwrap_or(false) {
        principal.require(Resource::Points, Level::Write)?;
        let issued =
            transfer::issue_code(&state.db, Some(&principal), principal.org, &request, now).await?;
        item["otp"] = json!({"issued": true, "resent": issued.resent, "channel": issued.channel,
            "validTill": crate::customers::routes_v2::iso(issued.expires_at)});
    }
    Ok(axum::Json(json!({"data": [item], "warnings": []})).into_response())
}

/// `POST /v2/points/transfer` — moves the points from one customer to another (both sides in
/// one transaction); answers the sender's `DEDUCTION` record.
#[utoipa::path(post, path = "/v2/points/transfer", tag = "points", request_body = TransferBody,
    responses((status = 200, description = "Transferred"), (status = 400, description = "801, 803, 809, 808, 414, 418, 1101"), (status = 403, description = "830 transfers not enabled"), (status = 404, description = "8015 not found")))]
pub async fn transfer_points(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Json(body): Json<TransferBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    let p = parse(&state, &principal, &headers, &body).await?;
    let notes = body.notes.as_deref().map(str::trim).unwrap_or_default();
    if notes.chars().count() > 255 {
        return Err(ApiError::invalid("notes must be at most 255 characters"));
    }
    let code = body.code.as_deref().map(str::trim).filter(|c| !c.is_empty());
    let request = TransferRequest {
        from: p.from,
        to: p.to,
        program: &p.program,
        points: p.points,
        code,
        notes,
        till: principal.till.map(|t| t.0),
    };
    let made =
        transfer::transfer(&state.db, Some(&principal), principal.org, &request, now_millis())
            .await?;
    let mut conn = state.db.read().await?;
    let tz = adjust::org_zone(&mut conn, principal.org).await?;
    let mut names = Names::default();
    let mut record =
        record_json(&mut conn, principal.org, &mut names, &made.transfer, p.from, tz).await?;
    record["balance"] = json!(made.balance.to_f64());
    Ok(axum::Json(json!({"data": [record], "warnings": []})).into_response())
}

/// Query of `GET /v2/points/transfer`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct TransferDetailsQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
}

/// `GET /v2/points/transfer` — every transfer of the customer an identifier names (sent and
/// received), newest first.
#[utoipa::path(get, path = "/v2/points/transfer", tag = "points", params(TransferDetailsQuery),
    responses((status = 200, description = "The transfers"), (status = 404, description = "8015 not found")))]
pub async fn transfer_details(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<TransferDetailsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let mut conn = state.db.read().await?;
    let customer = resolve_customer(
        &mut conn,
        principal.org,
        &headers,
        q.source.as_deref(),
        q.account_id.as_deref(),
        q.identifier_name.as_deref(),
        q.identifier_value.as_deref(),
    )
    .await?;
    let tz = adjust::org_zone(&mut conn, principal.org).await?;
    let order = TransferOrder { by_points: false, ascending: false };
    let rows = store_ops::transfers_of_customer(
        &mut conn,
        principal.org,
        customer,
        None,
        order,
        TRANSFERS_MAX,
        0,
    )
    .await?;
    let mut data = Vec::with_capacity(rows.len());
    let mut names = Names::default();
    for row in &rows {
        data.push(record_json(&mut conn, principal.org, &mut names, row, customer, tz).await?);
    }
    Ok(axum::Json(json!({"data": data, "warnings": []})).into_response())
}

/// Query of `GET /v2/customers/{id}/pointsTransfers`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct TransferSummaryQuery {
    program_id: Option<i64>,
    entity_type: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    /// 1-based; wins over `offset`.
    page: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

/// `GET /v2/customers/{id}/pointsTransfers` — the customer's transfers, sent (`DEDUCTION`) and
/// received (`ADDITION`), paged and sorted by date or points.
#[utoipa::path(get, path = "/v2/customers/{id}/pointsTransfers", tag = "points", params(TransferSummaryQuery),
    responses((status = 200, description = "A page of transfers"), (status = 400, description = "Bad paging or sorting"), (status = 404, description = "8015 not found")))]
pub async fn transfer_summary(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<TransferSummaryQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    if q.entity_type.as_deref().is_some_and(|t| !t.trim().eq_ignore_ascii_case("CUSTOMER")) {
        return Err(ApiError::with_message(
            Code::NotYetSupported,
            "entityType: only CUSTOMER transfers exist",
        ));
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=SUMMARY_PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {SUMMARY_PAGE_MAX}")));
    }
    let offset = match q.page {
        Some(page) if page >= 1 => (page - 1).saturating_mul(limit),
        Some(_) => return Err(ApiError::invalid("page starts at 1")),
        None => q.offset.unwrap_or(0),
    };
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    let by_points = match q.sort_by.as_deref().map(str::trim) {
        None | Some("") | Some("pointsTransferDate") => false,
        Some("pointsTransferred") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "sortBy '{other}' must be pointsTransferDate or pointsTransferred"
            )));
        }
    };
    let ascending = match q.sort_order.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref()
    {
        None | Some("") | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!("sortOrder '{other}' must be asc or desc")));
        }
    };
    let mut conn = state.db.read().await?;
    let customer = customer_by_id(&mut conn, principal.org, id).await?;
    if let Some(program) = q.program_id {
        schedule::programs_for(&state.programs, &mut conn, principal.org, Some(program), false)
            .await?;
    }
    let tz = adjust::org_zone(&mut conn, principal.org).await?;
    let total =
        store_ops::count_transfers(&mut conn, principal.org, customer, q.program_id).await?;
    let rows = store_ops::transfers_of_customer(
        &mut conn,
        principal.org,
        customer,
        q.program_id,
        TransferOrder { by_points, ascending },
        limit,
        offset,
    )
    .await?;
    let mut data = Vec::with_capacity(rows.len());
    let mut names = Names::default();
    for row in &rows {
        data.push(record_json(&mut conn, principal.org, &mut names, row, customer, tz).await?);
    }
    Ok(crate::http::envelope::v2_list(data, limit, offset, total))
}

/// What the user group variants answer until user groups exist.
fn groups_not_supported() -> ApiError {
    ApiError::with_message(
        Code::NotYetSupported,
        "user group (userGroup2) points transfers are not supported yet: user groups do not exist",
    )
}

/// `POST /v2/points/userGroup2/isTransferrable` — user groups do not exist yet: 501 with code
/// 501 ("not supported yet") in the v2 envelope.
#[utoipa::path(post, path = "/v2/points/userGroup2/isTransferrable", tag = "points",
    responses((status = 501, description = "501 user group transfers are not supported yet")))]
pub async fn group_is_transferable(principal: Principal) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    Err(groups_not_supported())
}

/// `POST /v2/points/userGroup2/transfer` — user groups do not exist yet: 501 with code 501
/// ("not supported yet") in the v2 envelope.
#[utoipa::path(post, path = "/v2/points/userGroup2/transfer", tag = "points",
    responses((status = 501, description = "501 user group transfers are not supported yet")))]
pub async fn group_transfer(principal: Principal) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Write)?;
    Err(groups_not_supported())
}
