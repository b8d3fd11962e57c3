//! Staff wire shapes and handlers: the v2 Staff APIs (`{"entity", "warnings", "errors",
//! "success"}`) and the v1.1 store read `GET /v1.1/store/staff`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::model::{
    IdentifierKind, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, NewStaff, PlaceCode, StaffChanges,
    StaffError, StaffId, StaffType, check_password, parse_name, parse_username,
};
use super::service::{self, ListPlace};
use super::store::StaffRow;
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::routes_v1::text;
use crate::error::ApiError;
use crate::http::envelope::{V1Reply, v2_entity};
use crate::http::extract::{Json, Query};
use crate::org::model::StoreId;
use crate::org::store as org_store;
use crate::transactions::time::iso_utc;

/// The v2 staff object.
pub fn staff_json(row: &StaffRow) -> Value {
    json!({
        "id": row.id,
        "username": row.username,
        "firstname": row.first_name,
        "lastname": row.last_name,
        "title": row.title,
        "type": row.staff_type.to_ascii_lowercase(),
        "mobile": row.mobile,
        "email": row.email,
        "mobileVerified": row.mobile_verified,
        "emailVerified": row.email_verified,
        "status": row.status,
        "storeCode": row.store_code,
        "zoneCode": row.zone_code,
        "conceptCode": row.concept_code,
        "createdOn": iso_utc(row.created_at),
        "updatedOn": iso_utc(row.updated_at),
    })
}

/// An `id` given as a number or a numeric string.
fn staff_id(body: &Value) -> Result<Option<StaffId>, StaffError> {
    match body.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(|id| Some(StaffId(id))).ok_or_else(bad_id),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            s.trim().parse().map(|id| Some(StaffId(id))).map_err(|_| bad_id())
        }
        Some(_) => Err(bad_id()),
    }
}

fn bad_id() -> StaffError {
    StaffError::Invalid("id must be a staff account id (a number)".into())
}

fn required_id(body: &Value) -> Result<StaffId, StaffError> {
    staff_id(body)?.ok_or_else(|| StaffError::Invalid("id is required".into()))
}

fn required_text(body: &Value, key: &str) -> Result<String, StaffError> {
    text(body, key).ok_or_else(|| StaffError::Invalid(format!("{key} is required")))
}

/// A password field as sent (not trimmed: spaces may be part of it).
fn password_field(body: &Value, key: &str) -> Result<String, StaffError> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(StaffError::Invalid(format!("{key} is required"))),
    }
}

/// The `mobile` and `email` of a body, normalised.
fn identifiers(body: &Value) -> Result<Vec<(IdentifierKind, String)>, StaffError> {
    let mut out = Vec::new();
    for (kind, key) in [(IdentifierKind::Mobile, "mobile"), (IdentifierKind::Email, "email")] {
        if let Some(raw) = text(body, key) {
            out.push((kind, kind.normalise(&raw)?));
        }
    }
    Ok(out)
}

fn parse_type(raw: &str) -> Result<StaffType, StaffError> {
    StaffType::parse(raw)
        .ok_or_else(|| StaffError::Invalid("type must be associate or cashier".into()))
}

fn entity(value: Value) -> Response {
    v2_entity(value)
}

// ---------------------------------------------------------------- add

fn parse_new(body: &Value) -> Result<NewStaff, StaffError> {
    let username = parse_username(&required_text(body, "username")?)?;
    let password = password_field(body, "password")?;
    check_password("password", &password)?;
    let codes: Vec<PlaceCode> = [
        text(body, "storeCode").map(PlaceCode::Store),
        text(body, "zoneCode").map(PlaceCode::Zone),
        text(body, "ConceptCode").or_else(|| text(body, "conceptCode")).map(PlaceCode::Concept),
    ]
    .into_iter()
    .flatten()
    .collect();
    let [place_code] = <[PlaceCode; 1]>::try_from(codes).map_err(|_| {
        StaffError::Invalid("exactly one of storeCode, zoneCode and ConceptCode is required".into())
    })?;
    let title = parse_name("title", &text(body, "title").unwrap_or_default())?;
    // Without an explicit type, a "cashier" title makes a cashier; everyone else is an associate.
    let staff_type = match text(body, "type") {
        Some(t) => parse_type(&t)?,
        None if title.eq_ignore_ascii_case("cashier") => StaffType::Cashier,
        None => StaffType::Associate,
    };
    let mut mobile = None;
    let mut email = None;
    for (kind, value) in identifiers(body)? {
        match kind {
            IdentifierKind::Mobile => mobile = Some(value),
            IdentifierKind::Email => email = Some(value),
        }
    }
    Ok(NewStaff {
        username,
        password,
        first_name: parse_name("firstname", &text(body, "firstname").unwrap_or_default())?,
        last_name: parse_name("lastname", &text(body, "lastname").unwrap_or_default())?,
        title,
        staff_type,
        mobile,
        email,
        place_code,
    })
}

/// `POST /v2/staff` — adds a staff account at a store, zone or concept. With a mobile or e-mail
/// the account stays `PENDING` until each is verified (Send OTP, then Validate OTP).
#[utoipa::path(post, path = "/v2/staff", tag = "staff",
    request_body(content = Object, description = "username, password, mobile, email, storeCode | zoneCode | ConceptCode, firstname, lastname, title, type (associate | cashier)"),
    responses((status = 200, description = "entity: the new account's id"),
        (status = 400, description = "Invalid input; 1001/1002 bad mobile/e-mail; 1207 username taken; 1214 unknown store, zone or concept"),
        (status = 403, description = "Needs Staff write; never a staff token")))]
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    service::require_staff_admin(&principal)?;
    let new = parse_new(&body)?;
    let id = service::add(&state.db, &principal, new).await?;
    Ok(entity(json!(id.0)))
}

// ---------------------------------------------------------------- access token, logout

/// `POST /v2/staff/accessToken` — exchanges `{username, password}` of an active account for an
/// access token, sent afterwards as `X-CAP-API-ACCESS-TOKEN`.
#[utoipa::path(post, path = "/v2/staff/accessToken", tag = "staff",
    request_body(content = Object, description = "username, password"),
    responses((status = 200, description = "accessToken, expiresIn (seconds), entity: the staff id"),
        (status = 401, description = "Wrong username or password, or the account is not verified yet")))]
pub async fn access_token(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Staff, Level::Read)?;
    let username = required_text(&body, "username")?;
    let password = password_field(&body, "password")?;
    let (token, expires_in, id) =
        service::issue_token(&state.db, &principal, &username, &password).await?;
    Ok(axum::Json(json!({
        "accessToken": token,
        "expiresIn": expires_in,
        "entity": id.0,
        "warnings": [],
        "errors": [],
        "success": true,
    }))
    .into_response())
}

/// `GET /v2/staff/logout` — revokes the access token the request carries.
#[utoipa::path(get, path = "/v2/staff/logout", tag = "staff",
    responses((status = 200, description = "entity: the staff id"),
        (status = 400, description = "The request carries no staff access token")))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let id = service::logout(&state.db, &principal).await?;
    Ok(entity(json!(id.0)))
}

// ---------------------------------------------------------------- reads

/// Query of `GET /v2/staff`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct GetQuery {
    id: Option<i64>,
    username: Option<String>,
}

/// `GET /v2/staff` — one account by `id` or `username`.
#[utoipa::path(get, path = "/v2/staff", tag = "staff", params(GetQuery),
    responses((status = 200, description = "entity: the staff object"),
        (status = 400, description = "Neither id nor username"), (status = 404, description = "No such account")))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Staff, Level::Read)?;
    let username = q.username.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let row = service::get(&state.db, principal.org, q.id.map(StaffId), username).await?;
    Ok(entity(staff_json(&row)))
}

/// Query of `GET /v2/staff/list`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Everyone who works in the store (its own staff, its zone's and its concept's).
    store_code: Option<String>,
    /// Staff placed at the zone.
    zone_code: Option<String>,
    /// Staff placed at the concept.
    concept_code: Option<String>,
    /// `associate` or `cashier`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// 1 to 500 (default 100).
    limit: Option<i64>,
    offset: Option<i64>,
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// `GET /v2/staff/list` — the accounts of a store (`storeCode`), zone (`zoneCode`) or concept
/// (`conceptCode`); without any, those of the caller's store.
#[utoipa::path(get, path = "/v2/staff/list", tag = "staff", params(ListQuery),
    responses((status = 200, description = "entity: staff objects; pagination {limit, offset, total}"),
        (status = 400, description = "Bad paging or type; 1214 unknown store, zone or concept")))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Staff, Level::Read)?;
    let limit = q.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    let offset = q.offset.unwrap_or(0);
    if !(1..=LIST_LIMIT_MAX).contains(&limit) || offset < 0 {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {LIST_LIMIT_MAX} and offset not negative"
        )));
    }
    let kind = q.kind.as_deref().map(parse_type).transpose()?.map(StaffType::as_str);
    let place = if let Some(code) = nonempty(&q.store_code) {
        let mut conn = state.db.read().await?;
        let store = org_store::find_store_by_code(&mut conn, principal.org, code)
            .await?
            .ok_or_else(|| StaffError::UnknownPlace(format!("Unknown storeCode '{code}'")))?;
        ListPlace::store(&store)
    } else if let Some(code) = nonempty(&q.zone_code) {
        ListPlace::ZoneCode(code.to_string())
    } else if let Some(code) = nonempty(&q.concept_code) {
        ListPlace::ConceptCode(code.to_string())
    } else {
        let store = match principal.store {
            Some(id) => {
                let mut conn = state.db.read().await?;
                org_store::get_store(&mut conn, principal.org, id).await?
            }
            None => None,
        }
        .ok_or_else(|| ApiError::invalid("storeCode, zoneCode or conceptCode is required"))?;
        ListPlace::store(&store)
    };
    let (rows, total) =
        service::list(&state.db, principal.org, &place, kind, limit, offset).await?;
    let list: Vec<Value> = rows.iter().map(staff_json).collect();
    Ok(axum::Json(json!({
        "entity": list,
        "pagination": {"limit": limit, "offset": offset, "total": total},
        "warnings": [],
        "errors": [],
        "success": true,
    }))
    .into_response())
}

// ---------------------------------------------------------------- changes

/// `POST /v2/staff/update` — changes first and last name, title and type; `mobile` and
/// `email` may only repeat the current values (they change through changeIdentifier).
#[utoipa::path(post, path = "/v2/staff/update", tag = "staff",
    request_body(content = Object, description = "id (required), username (must match), firstname, lastname, title, type, mobile, email"),
    responses((status = 200, description = "entity: the staff object"),
        (status = 400, description = "Invalid input"), (status = 403, description = "A staff token may only change its own account"),
        (status = 404, description = "No such account")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let id = required_id(&body)?;
    service::require_self_or(&principal, id, Level::Write)?;
    let changes = StaffChanges {
        first_name: text(&body, "firstname").map(|v| parse_name("firstname", &v)).transpose()?,
        last_name: text(&body, "lastname").map(|v| parse_name("lastname", &v)).transpose()?,
        title: text(&body, "title").map(|v| parse_name("title", &v)).transpose()?,
        staff_type: text(&body, "type").map(|v| parse_type(&v)).transpose()?,
    };
    let username = text(&body, "username");
    let row = service::edit(
        &state.db,
        &principal,
        id,
        username.as_deref(),
        &changes,
        &identifiers(&body)?,
    )
    .await?;
    Ok(entity(staff_json(&row)))
}

/// `POST /v2/staff/changePassword` — `{id, username, oldPassword, newPassword}`; every access
/// token issued before stops working.
#[utoipa::path(post, path = "/v2/staff/changePassword", tag = "staff",
    request_body(content = Object, description = "id, username, oldPassword, newPassword"),
    responses((status = 200, description = "entity: the staff id"),
        (status = 400, description = "Invalid input"), (status = 401, description = "oldPassword is wrong")))]
pub async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let id = required_id(&body)?;
    service::require_self_or(&principal, id, Level::Write)?;
    let old = password_field(&body, "oldPassword")?;
    let new = password_field(&body, "newPassword")?;
    let username = text(&body, "username");
    service::change_password(&state.db, &principal, id, username.as_deref(), &old, &new).await?;
    Ok(entity(json!(id.0)))
}

/// Query of `POST /v2/staff/sendOtp`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SendOtpQuery {
    /// Why the OTP is sent (required), e.g. `VERIFY`.
    otp: Option<String>,
}

/// `POST /v2/staff/sendOtp?otp={purpose}` — sends a code to each identifier to verify: the
/// `mobile`/`email` of the body (the account's own), else every unverified one.
#[utoipa::path(post, path = "/v2/staff/sendOtp", tag = "staff", params(SendOtpQuery),
    request_body(content = Object, description = "id (required), username (required), mobile, email"),
    responses((status = 200, description = "entity: the staff id; sentTo: identifier types"),
        (status = 400, description = "Invalid input, or nothing to verify"), (status = 404, description = "No such account"),
        (status = 429, description = "Too many OTPs in the last hour")))]
pub async fn send_otp(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<SendOtpQuery>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let id = required_id(&body)?;
    // Sending a code to the account's own identifiers needs only Staff read: the code proves
    // nothing without the password that Validate OTP asks for.
    service::require_self_or(&principal, id, Level::Read)?;
    let purpose = q.otp.as_deref().map(str::trim).filter(|p| !p.is_empty());
    if !purpose
        .is_some_and(|p| p.len() <= 40 && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(ApiError::invalid("otp (the purpose, letters, digits or _) is required"));
    }
    let username = required_text(&body, "username")?;
    let sent =
        service::send_otp(&state.db, &principal, id, Some(&username), &identifiers(&body)?).await?;
    let sent_to: Vec<&str> = sent.iter().map(|s| s.kind.as_str()).collect();
    Ok(axum::Json(json!({
        "entity": id.0, "sentTo": sent_to, "warnings": [], "errors": [], "success": true,
    }))
    .into_response())
}

/// `POST /v2/staff/validateOtp` — verifies the identifier of `identifierType` with the account's
/// password and the code; the account becomes `ACTIVE` once every identifier is verified.
#[utoipa::path(post, path = "/v2/staff/validateOtp", tag = "staff",
    request_body(content = Object, description = "id, username, identifierType (MOBILE | EMAIL), password, otp (all required); mobile, email"),
    responses((status = 200, description = "entity: the staff object"),
        (status = 400, description = "Invalid input, or a wrong, used or expired OTP"),
        (status = 401, description = "Wrong password"), (status = 404, description = "No such account")))]
pub async fn validate_otp(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let id = required_id(&body)?;
    service::require_self_or(&principal, id, Level::Read)?;
    let username = required_text(&body, "username")?;
    let kind = IdentifierKind::parse(&required_text(&body, "identifierType")?)?;
    let password = password_field(&body, "password")?;
    let otp = required_text(&body, "otp")?;
    let row =
        service::validate_otp(&state.db, &principal, id, Some(&username), kind, &password, &otp)
            .await?;
    Ok(entity(staff_json(&row)))
}

/// The `identifierType` and normalised `newValue` of a change-identifier body.
fn new_identifier(body: &Value) -> Result<(IdentifierKind, String), StaffError> {
    let kind = IdentifierKind::parse(&required_text(body, "identifierType")?)?;
    let value = kind.normalise(&required_text(body, "newValue")?)?;
    Ok((kind, value))
}

/// `POST /v2/staff/changeIdentifier/sendOtp` — sends a code to the new mobile or e-mail.
#[utoipa::path(post, path = "/v2/staff/changeIdentifier/sendOtp", tag = "staff",
    request_body(content = Object, description = "id, identifierType (MOBILE | EMAIL), newValue"),
    responses((status = 200, description = "entity: the staff id"),
        (status = 400, description = "Invalid input, or the value is another account's"),
        (status = 404, description = "No such account"), (status = 429, description = "Too many OTPs in the last hour")))]
pub async fn change_identifier_send(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let id = required_id(&body)?;
    service::require_self_or(&principal, id, Level::Write)?;
    let (kind, value) = new_identifier(&body)?;
    service::change_identifier_send(&state.db, &principal, id, kind, &value).await?;
    Ok(entity(json!(id.0)))
}

/// `POST /v2/staff/changeIdentifier/validateOtp` — replaces the identifier with `newValue`
/// once the code sent there is given back.
#[utoipa::path(post, path = "/v2/staff/changeIdentifier/validateOtp", tag = "staff",
    request_body(content = Object, description = "id, identifierType (MOBILE | EMAIL), newValue, otp"),
    responses((status = 200, description = "entity: the staff object"),
        (status = 400, description = "Invalid input, or a wrong, used or expired OTP"),
        (status = 404, description = "No such account")))]
pub async fn change_identifier_validate(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let id = required_id(&body)?;
    service::require_self_or(&principal, id, Level::Write)?;
    let (kind, value) = new_identifier(&body)?;
    let otp = required_text(&body, "otp")?;
    let row =
        service::change_identifier_validate(&state.db, &principal, id, kind, &value, &otp).await?;
    Ok(entity(staff_json(&row)))
}

/// `POST /v2/staff/transfer` — moves a store account from `fromStoreCode` to `toStoreCode`.
#[utoipa::path(post, path = "/v2/staff/transfer", tag = "staff",
    request_body(content = Object, description = "id, fromStoreCode, toStoreCode"),
    responses((status = 200, description = "entity: the staff object"),
        (status = 400, description = "Invalid input, not at fromStoreCode, or not a store account; 1214 unknown toStoreCode"),
        (status = 404, description = "No such account")))]
pub async fn transfer(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    service::require_staff_admin(&principal)?;
    let id = required_id(&body)?;
    let from = required_text(&body, "fromStoreCode")?;
    let to = required_text(&body, "toStoreCode")?;
    let row = service::transfer(&state.db, &principal, id, &from, &to).await?;
    Ok(entity(staff_json(&row)))
}

/// `POST /v2/staff/remove` — removes an account (`{id, username}`).
#[utoipa::path(post, path = "/v2/staff/remove", tag = "staff",
    request_body(content = Object, description = "id (required), username (must match)"),
    responses((status = 200, description = "entity: the staff id"), (status = 404, description = "No such account")))]
pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    service::require_staff_admin(&principal)?;
    let id = required_id(&body)?;
    let username = text(&body, "username");
    service::remove(&state.db, &principal, id, username.as_deref()).await?;
    Ok(entity(json!(id.0)))
}

// ---------------------------------------------------------------- v1.1 store staff

/// Query of `GET /v1.1/store/staff`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StoreStaffQuery {
    /// The store (default: the caller's); a till or store associate may name its own only.
    store_id: Option<String>,
    /// `associate` or `cashier`.
    #[serde(rename = "type")]
    kind: Option<String>,
    #[allow(dead_code)]
    format: Option<String>,
}

/// The v1.1 user object of a staff member.
fn v1_user(row: &StaffRow) -> Value {
    json!({
        "id": row.id,
        "username": row.username,
        "first_name": row.first_name,
        "last_name": row.last_name,
        "mobile": row.mobile.clone().unwrap_or_default(),
        "email": row.email.clone().unwrap_or_default(),
        "type": row.staff_type.to_ascii_lowercase(),
        "title": row.title,
        "status": row.status,
    })
}

/// `GET /v1.1/store/staff` — the associates and cashiers who work in the store: its own staff
/// and the staff of its zone and concept (at most 500).
#[utoipa::path(get, path = "/v1.1/store/staff", tag = "staff", params(StoreStaffQuery),
    responses((status = 200, description = "store {id, code, name, staff {user[]}} in the v1.1 envelope"),
        (status = 400, description = "Bad store_id or type, or no store to read")))]
pub async fn store_staff(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<StoreStaffQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Staff, Level::Read)?;
    let mut conn = state.db.read().await?;
    let scope = service::scope_of(&mut conn, &principal).await?;
    let requested = match q.store_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(raw) => {
            Some(raw.parse::<i64>().map_err(|_| ApiError::invalid("store_id must be a number"))?)
        }
        None => None,
    };
    let store_id = requested.or(scope.store()).or(principal.store.map(|s| s.0));
    let store = match store_id {
        Some(id) => org_store::get_store(&mut conn, principal.org, StoreId(id)).await?,
        None => None,
    }
    .filter(|s| scope.covers(s));
    let Some(store) = store else {
        return Err(ApiError::invalid("store_id must name a store the caller works with"));
    };
    drop(conn);
    let kind = q.kind.as_deref().map(parse_type).transpose()?.map(StaffType::as_str);
    let (rows, _) =
        service::list(&state.db, principal.org, &ListPlace::store(&store), kind, LIST_LIMIT_MAX, 0)
            .await?;
    let users: Vec<Value> = rows.iter().map(v1_user).collect();
    V1Reply::ok(
        "store",
        json!({
            "id": store.id,
            "code": store.code,
            "name": store.name,
            "staff": {"count": users.len(), "user": users},
        }),
    )
}
