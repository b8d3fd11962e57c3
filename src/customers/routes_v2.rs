//! v2 customer handlers and wire shapes: add, update, get, lookup family, search, status,
//! status log and identifier changes.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::enrolment::parse_enrollments;
use super::model::{
    CommChannel, CustomerError, CustomerId, CustomerInput, CustomerUpdate, Identifier,
    IdentifierType, LoyaltyType, PROFILE_ITEMS_MAX, ProfileInput, SourceAccount, parse_name,
};
use super::referrals::REFERRAL_CODE_MAX_CHARS;
use super::service::{self, CustomerView};
use super::store::{self as customer_store, SearchTarget};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::db::Connection;
use crate::error::ApiError;
use crate::http::envelope::v2_list;
use crate::http::extract::{Json, Path, Query};
use crate::org::model::OrgId;
use crate::org::store::{self as org_store, TillLookup};
use crate::points::service::Standing;

/// Most profiles one request may carry.
pub const PROFILES_MAX: usize = 12;
/// Default and largest page of customer lists.
pub const LIMIT_DEFAULT: i64 = 10;
pub const LIMIT_MAX: i64 = 100;
/// Most status-log entries returned.
pub const STATUS_LOG_MAX: i64 = 500;

/// The `X-CAP-CLIENT-COUNTRYCODE` header: the dialling code that completes national mobiles.
pub fn country_code(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-cap-client-countrycode")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An instant as ISO-8601 in UTC (the server's time zone).
pub fn iso(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// One identifier as the wire carries it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IdentifierBody {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

fn parse_identifiers(
    list: &[IdentifierBody],
    country: Option<&str>,
) -> Result<Vec<Identifier>, CustomerError> {
    if list.len() > PROFILE_ITEMS_MAX {
        return Err(CustomerError::Invalid(format!(
            "identifiers takes at most {PROFILE_ITEMS_MAX} entries"
        )));
    }
    list.iter()
        .map(|i| {
            let kind = IdentifierType::parse(&i.kind).ok_or_else(|| {
                CustomerError::Invalid(format!("identifier type '{}' is not supported", i.kind))
            })?;
            Identifier::parse(kind, &i.value, country)
        })
        .collect()
}

/// One profile of an add or update body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileBody {
    first_name: Option<String>,
    last_name: Option<String>,
    #[serde(default)]
    identifiers: Vec<IdentifierBody>,
    #[schema(value_type = Option<Object>)]
    fields: Option<Map<String, Value>>,
    source: Option<String>,
    account_id: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    comm_channels: Option<Vec<CommChannel>>,
}

/// `loyaltyInfo` of an add or update body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoyaltyInfoBody {
    loyalty_type: Option<String>,
}

/// Body of `POST /v2/customers` (and of the updates, which ignore identifiers).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerBody {
    #[serde(default)]
    profiles: Vec<ProfileBody>,
    loyalty_info: Option<LoyaltyInfoBody>,
    /// Lookup-update form: the loyalty type at the top level.
    loyalty_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    extended_fields: Option<Map<String, Value>>,
    /// Lookup-update form: channels at the top level.
    #[schema(value_type = Option<Vec<Object>>)]
    comm_channels: Option<Vec<CommChannel>>,
    #[allow(dead_code)]
    associated_with: Option<String>,
    /// The referrer's referral code (add only).
    referral_code: Option<String>,
    /// `[{programId, tierNumber, loyaltyPoints, tierExpiryDate, pointsExpiryDate}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    loyalty_program_enrollments: Option<Vec<Value>>,
}

impl CustomerBody {
    fn loyalty_type(&self) -> Result<Option<LoyaltyType>, CustomerError> {
        self.loyalty_info
            .as_ref()
            .and_then(|l| l.loyalty_type.as_deref())
            .or(self.loyalty_type.as_deref())
            .map(LoyaltyType::parse)
            .transpose()
    }

    fn into_input(
        self,
        default_account: &SourceAccount,
        country: Option<&str>,
    ) -> Result<CustomerInput, CustomerError> {
        if self.profiles.is_empty() {
            return Err(CustomerError::Invalid(
                "profiles must contain at least one profile".into(),
            ));
        }
        if self.profiles.len() > PROFILES_MAX {
            return Err(CustomerError::Invalid(format!(
                "profiles takes at most {PROFILES_MAX} entries"
            )));
        }
        let loyalty_type = self.loyalty_type()?;
        let mut profiles = Vec::with_capacity(self.profiles.len());
        for profile in self.profiles {
            let account = if profile.source.is_some() || profile.account_id.is_some() {
                SourceAccount::parse(profile.source.as_deref(), profile.account_id.as_deref())?
            } else {
                default_account.clone()
            };
            if profiles.iter().any(|p: &ProfileInput| p.account == account) {
                return Err(CustomerError::Invalid(format!(
                    "two profiles name the same source account {}",
                    account.source.as_str()
                )));
            }
            profiles.push(ProfileInput {
                identifiers: parse_identifiers(&profile.identifiers, country)?,
                account,
                first_name: parse_name("firstName", profile.first_name)?,
                last_name: parse_name("lastName", profile.last_name)?,
                fields: profile.fields.unwrap_or_default(),
                comm_channels: profile.comm_channels,
            });
        }
        let enrollments =
            parse_enrollments(self.loyalty_program_enrollments.as_deref().unwrap_or_default())?;
        let referral_code = match self.referral_code.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(code) if code.chars().count() > REFERRAL_CODE_MAX_CHARS => {
                return Err(CustomerError::Invalid(format!(
                    "referralCode must be at most {REFERRAL_CODE_MAX_CHARS} characters"
                )));
            }
            Some(code) => Some(code.to_string()),
        };
        Ok(CustomerInput {
            profiles,
            loyalty_type,
            extended_fields: self.extended_fields.unwrap_or_default(),
            registered_at: None,
            enrollments,
            referral_code,
            enroll_in_all_programs: false,
        })
    }

    fn into_update(self) -> Result<CustomerUpdate, CustomerError> {
        let loyalty_type = self.loyalty_type()?;
        let enrollments =
            parse_enrollments(self.loyalty_program_enrollments.as_deref().unwrap_or_default())?;
        let profile = self.profiles.into_iter().next();
        let (first_name, last_name, fields, profile_channels) = match profile {
            Some(p) => (
                parse_name("firstName", p.first_name)?,
                parse_name("lastName", p.last_name)?,
                p.fields,
                p.comm_channels,
            ),
            None => (None, None, None, None),
        };
        Ok(CustomerUpdate {
            first_name,
            last_name,
            loyalty_type,
            fields,
            extended_fields: self.extended_fields,
            comm_channels: profile_channels.or(self.comm_channels),
            enrollments,
        })
    }
}

/// Query of the add and update endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct SourceQuery {
    source: Option<String>,
    account_id: Option<String>,
    #[allow(dead_code)]
    raw_side_effects: Option<String>,
    /// Add only: `true` enrols a new loyalty customer in every program of the org.
    enroll_in_all_programs: Option<String>,
    #[serde(rename = "use_async")]
    #[allow(dead_code)]
    use_async: Option<String>,
}

/// `POST /v2/customers` — registers a customer, or updates the one its identifiers already name.
#[utoipa::path(post, path = "/v2/customers", tag = "customers", params(SourceQuery),
    request_body = CustomerBody,
    responses((status = 200, description = "createdId, warnings, sideEffects"),
        (status = 400, description = "1001/1002/1003 invalid identifier, 1007 none, 1016 email taken, 8003 bad source")))]
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<SourceQuery>,
    Json(body): Json<CustomerBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let account = SourceAccount::parse(q.source.as_deref(), q.account_id.as_deref())?;
    let mut input = body.into_input(&account, country_code(&headers).as_deref())?;
    input.enroll_in_all_programs = match q.enroll_in_all_programs.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(
                CustomerError::Invalid("enrollInAllPrograms must be true or false".into()).into()
            );
        }
    };
    let outcome = service::add_customer(&state.db, &state.programs, &principal, &input).await?;
    Ok(axum::Json(json!({
        "createdId": outcome.customer.0,
        "warnings": outcome.warnings,
        "sideEffects": outcome.side_effects,
    }))
    .into_response())
}

/// `PUT /v2/customers/{userId}` — updates names, fields, channels and loyalty type of one source
/// account; identifiers are never changed here.
#[utoipa::path(put, path = "/v2/customers/{userId}", tag = "customers", params(SourceQuery,
    ("userId" = i64, Path, description = "Customer id")), request_body = CustomerBody,
    responses((status = 200, description = "createdId, warnings"), (status = 404, description = "8015 not found")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Query(q): Query<SourceQuery>,
    Json(body): Json<CustomerBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let account = SourceAccount::parse(q.source.as_deref(), q.account_id.as_deref())?;
    let update = body.into_update()?;
    let enrolled = service::update_customer(
        &state.db,
        &state.programs,
        &principal,
        CustomerId(user_id),
        &account,
        &update,
    )
    .await?;
    Ok(axum::Json(json!({"createdId": user_id, "warnings": enrolled.warnings,
        "sideEffects": enrolled.side_effects}))
    .into_response())
}

/// Query of `GET /v2/customers/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct GetQuery {
    source: Option<String>,
    account_id: Option<String>,
    embed: Option<String>,
}

/// Which profiles a read shows: all, or one source account.
pub(crate) enum SourceFilter {
    All,
    Only(SourceAccount),
}

impl SourceFilter {
    pub(crate) fn parse(
        source: Option<&str>,
        account: Option<&str>,
    ) -> Result<SourceFilter, CustomerError> {
        match source.map(str::trim) {
            None | Some("") => Ok(SourceFilter::All),
            Some(s) if s.eq_ignore_ascii_case("ALL") => Ok(SourceFilter::All),
            Some(s) => Ok(SourceFilter::Only(SourceAccount::parse(Some(s), account)?)),
        }
    }

    fn shows(&self, source: &str, account: &str) -> bool {
        match self {
            SourceFilter::All => true,
            SourceFilter::Only(a) => a.source.as_str() == source && a.account_id == account,
        }
    }
}

/// `GET /v2/customers/{id}` — the customer object (profiles of `source`, or all with `ALL`).
#[utoipa::path(get, path = "/v2/customers/{id}", tag = "customers", params(GetQuery,
    ("id" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "The customer"), (status = 404, description = "8015 not found")))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<GetQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let filter = SourceFilter::parse(q.source.as_deref(), q.account_id.as_deref())?;
    let mut conn = state.db.read().await?;
    let view = service::load(&mut conn, principal.org, CustomerId(id))
        .await?
        .ok_or(CustomerError::NotFound)?;
    let mut body =
        customer_json(&mut conn, principal.org, &view, &filter, q.embed.as_deref()).await?;
    let embed = q.embed.as_deref();
    crate::loyalty::embeds::extend_customer(
        &mut conn,
        &state.programs,
        principal.org,
        id,
        embed,
        &mut body,
    )
    .await?;
    Ok(axum::Json(body).into_response())
}

/// `loyaltyInfo` of the v2 customer object: the loyalty type and the default program's standing.
fn loyalty_info(loyalty_type: &str, standing: Option<&Standing>) -> Value {
    let mut info = json!({"loyaltyType": loyalty_type, "lifetimePurchases": 0.0, "loyaltyPoints": 0.0,
        "lifetimePoints": 0.0, "promisedPoints": 0.0, "currentSlab": "", "tierNumber": 1, "tierExpiryDate": null});
    if let Some(s) = standing {
        info["lifetimePurchases"] = json!(s.lifetime_purchases.to_f64());
        info["loyaltyPoints"] = json!(s.current.to_f64());
        info["lifetimePoints"] = json!(s.lifetime_points.to_f64());
        info["promisedPoints"] = json!(s.promised.to_f64());
        info["currentSlab"] = json!(s.tier_name);
        info["tierNumber"] = json!(s.tier_number);
        info["tierExpiryDate"] = json!(s.tier_expires_at.map(iso));
    }
    info
}

/// One program's standing (the `mlp` and `points` embeds).
pub(crate) fn standing_json(s: &Standing) -> Value {
    json!({"programId": s.program_id, "programName": s.program_name, "default": s.is_default,
        "tierNumber": s.tier_number, "currentSlab": s.tier_name, "tierExpiryDate": s.tier_expires_at.map(iso),
        "loyaltyPoints": s.current.to_f64(), "promisedPoints": s.promised.to_f64(),
        "totalPoints": (s.current + s.promised).to_f64(), "lifetimePoints": s.lifetime_points.to_f64(),
        "redeemedPoints": s.redeemed.to_f64(), "expiredPoints": s.expired.to_f64(),
        "returnedPoints": s.returned.to_f64(), "adjustedPoints": s.adjusted.to_f64(),
        "lifetimePurchases": s.lifetime_purchases.to_f64(), "visits": s.visits})
}

/// The shared v2 customer object.
pub(crate) async fn customer_json(
    conn: &mut impl Connection,
    org: OrgId,
    view: &CustomerView,
    filter: &SourceFilter,
    embed: Option<&str>,
) -> Result<Value, ApiError> {
    let mut tills: HashMap<i64, Value> = HashMap::new();
    let mut profiles = Vec::new();
    for profile in view.profiles.iter().filter(|p| filter.shows(&p.source, &p.account_id)) {
        let identifiers: Vec<Value> = view
            .identifiers
            .iter()
            .filter(|i| i.source == profile.source && i.account_id == profile.account_id)
            .map(|i| json!({"type": i.kind, "value": i.value}))
            .collect();
        let fields: Value = serde_json::from_str(&profile.fields).unwrap_or_else(|_| json!({}));
        let channels: Value =
            serde_json::from_str(&profile.comm_channels).unwrap_or_else(|_| json!([]));
        let created_by = till_ref(conn, org, &mut tills, profile.created_by_till_id).await?;
        let modified_by = till_ref(conn, org, &mut tills, profile.modified_by_till_id).await?;
        profiles.push(json!({
            "firstName": profile.first_name,
            "lastName": profile.last_name,
            "identifiers": identifiers,
            "commChannels": channels,
            "fields": fields.clone(),
            "allFields": fields,
            "source": profile.source,
            "accountId": profile.account_id,
            "userId": view.row.id,
            "attribution": {
                "createDate": iso(profile.created_at),
                "createdBy": created_by,
                "modifiedBy": modified_by,
                "modifiedDate": iso(profile.updated_at),
            },
        }));
    }
    if profiles.is_empty() && matches!(filter, SourceFilter::Only(_)) {
        return Err(CustomerError::NotFound.into());
    }
    let extended: Value =
        serde_json::from_str(&view.row.extended_fields).unwrap_or_else(|_| json!({}));
    let standings = crate::points::service::standings(conn, org, view.row.id).await?;
    let mut body = json!({
        "id": view.row.id,
        "profiles": profiles,
        "loyaltyInfo": loyalty_info(&view.row.loyalty_type, standings.first()),
        "extendedFields": extended,
        "segments": {},
        "registeredOn": iso(view.row.registered_at),
        "warnings": [],
    });
    let embeds: Vec<String> =
        embed.unwrap_or_default().split(',').map(|e| e.trim().to_ascii_lowercase()).collect();
    if embeds.iter().any(|e| e == "customerimage") {
        body["customerImage"] =
            Value::Array(super::images::image_entries(conn, org, CustomerId(view.row.id)).await?);
    }
    if embeds.iter().any(|e| e == "mlp") {
        body["mlp"] = Value::Array(standings.iter().map(standing_json).collect());
    }
    if embeds.iter().any(|e| e == "points") {
        body["points"] = standings.first().map(standing_json).unwrap_or_else(|| json!({}));
    }
    if embeds.iter().any(|e| e == "customerstatus") {
        body["customerStatus"] = json!({"status": view.row.status, "label": view.row.status_label});
    }
    if embeds.iter().any(|e| e == "subscriptions") {
        let accounts: Vec<SourceAccount> = view
            .profiles
            .iter()
            .filter(|p| filter.shows(&p.source, &p.account_id))
            .filter_map(|p| SourceAccount::parse(Some(&p.source), Some(&p.account_id)).ok())
            .collect();
        let customer = CustomerId(view.row.id);
        let statuses =
            super::subscriptions::subscription_statuses(conn, org, customer, &accounts).await?;
        body["subscriptions"] =
            Value::Array(statuses.iter().map(super::routes_subscriptions::status_json).collect());
    }
    Ok(body)
}

async fn till_ref(
    conn: &mut impl Connection,
    org: OrgId,
    cache: &mut HashMap<i64, Value>,
    till_id: Option<i64>,
) -> Result<Value, ApiError> {
    let Some(id) = till_id else { return Ok(json!({})) };
    if let Some(found) = cache.get(&id) {
        return Ok(found.clone());
    }
    let lookup = TillLookup { id: Some(id), ..TillLookup::default() };
    let value = match org_store::find_till(conn, org, &lookup).await? {
        Some(till) => json!({"id": till.id, "code": till.code, "name": till.name, "type": "TILL"}),
        None => json!({"id": id, "type": "TILL"}),
    };
    cache.insert(id, value.clone());
    Ok(value)
}

/// Query of the lookup family: source account plus identifier name(s) and value(s).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct LookupQuery {
    source: Option<String>,
    account_id: Option<String>,
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    embed: Option<String>,
}

impl LookupQuery {
    /// A lookup built from other parameter names (transactions use `identifierName` too, bulk
    /// bodies `identifierType`).
    pub(crate) fn new(
        source: Option<String>,
        account_id: Option<String>,
        identifier_name: Option<String>,
        identifier_value: Option<String>,
    ) -> LookupQuery {
        LookupQuery { source, account_id, identifier_name, identifier_value, embed: None }
    }

    /// Resolves the customer; several comma-separated identifiers must name the same one.
    pub(crate) async fn resolve(
        &self,
        conn: &mut impl Connection,
        org: OrgId,
        country: Option<&str>,
    ) -> Result<(CustomerId, SourceAccount), CustomerError> {
        let account = SourceAccount::parse(self.source.as_deref(), self.account_id.as_deref())?;
        let (Some(names), Some(values)) = (&self.identifier_name, &self.identifier_value) else {
            return Err(CustomerError::InvalidLookupIdentifier(
                "identifierName and identifierValue are required".into(),
            ));
        };
        let names: Vec<&str> = names.split(',').map(str::trim).collect();
        let values: Vec<&str> = values.split(',').map(str::trim).collect();
        if names.len() != values.len() || names.len() > PROFILE_ITEMS_MAX {
            return Err(CustomerError::InvalidLookupIdentifier(
                "identifierName and identifierValue must list the same number of entries".into(),
            ));
        }
        let mut identifiers = Vec::with_capacity(names.len());
        for (name, value) in names.iter().zip(&values) {
            if name.eq_ignore_ascii_case("id") {
                let id: i64 = value.parse().map_err(|_| CustomerError::NotFound)?;
                let exists =
                    customer_store::get_customer(conn, org, CustomerId(id)).await?.is_some();
                return if exists {
                    Ok((CustomerId(id), account))
                } else {
                    Err(CustomerError::NotFound)
                };
            }
            let kind = IdentifierType::parse(name)
                .ok_or_else(|| CustomerError::InvalidLookupIdentifier((*name).to_string()))?;
            // A malformed value cannot name anyone: not found, like any unknown value.
            let identifier =
                Identifier::parse(kind, value, country).map_err(|_| CustomerError::NotFound)?;
            identifiers.push(identifier);
        }
        let customer = service::resolve(conn, org, &account, &identifiers).await?;
        Ok((customer, account))
    }
}

/// `GET /v2/customers/lookup` — the customer id of an identifier: `{"id", "warnings"}`.
#[utoipa::path(get, path = "/v2/customers/lookup", tag = "customers", params(LookupQuery),
    responses((status = 200, description = "The customer id"), (status = 404, description = "8015 not found")))]
pub async fn lookup_id(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let mut conn = state.db.read().await?;
    let (customer, _) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    Ok(axum::Json(json!({"id": customer.0, "warnings": []})).into_response())
}

/// `GET /v2/customers/lookup/customerDetails` — the customer object found by identifier.
#[utoipa::path(get, path = "/v2/customers/lookup/customerDetails", tag = "customers", params(LookupQuery),
    responses((status = 200, description = "The customer"), (status = 404, description = "8015 not found")))]
pub async fn lookup_details(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let mut conn = state.db.read().await?;
    let (customer, account) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    let view =
        service::load(&mut conn, principal.org, customer).await?.ok_or(CustomerError::NotFound)?;
    let mut body = customer_json(
        &mut conn,
        principal.org,
        &view,
        &SourceFilter::Only(account),
        q.embed.as_deref(),
    )
    .await?;
    let embed = q.embed.as_deref();
    crate::loyalty::embeds::extend_customer(
        &mut conn,
        &state.programs,
        principal.org,
        customer.0,
        embed,
        &mut body,
    )
    .await?;
    Ok(axum::Json(body).into_response())
}

/// `PUT /v2/customers/lookup` — updates the customer found by identifier.
#[utoipa::path(put, path = "/v2/customers/lookup", tag = "customers", params(LookupQuery),
    request_body = CustomerBody,
    responses((status = 200, description = "createdId, warnings"), (status = 404, description = "8015 not found")))]
pub async fn lookup_update(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
    Json(body): Json<CustomerBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let mut conn = state.db.read().await?;
    let (customer, account) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    drop(conn);
    let update = body.into_update()?;
    let enrolled = service::update_customer(
        &state.db,
        &state.programs,
        &principal,
        customer,
        &account,
        &update,
    )
    .await?;
    Ok(axum::Json(json!({"createdId": customer.0, "warnings": enrolled.warnings,
        "sideEffects": enrolled.side_effects}))
    .into_response())
}

/// `GET /v2/customers/lookup/referrals` — the customer's referral code and the customers who
/// registered with it (newest first, at most 500): `{"data": {customerId, referralCode,
/// referees[{customerId, joinedOn}], invitees, incentives}, "warnings", "errors"}`.
/// `campaignToken` is accepted and not read (one code per customer, no referral campaigns).
#[utoipa::path(get, path = "/v2/customers/lookup/referrals", tag = "customers",
    params(LookupQuery, ("campaignToken" = Option<String>, Query, description = "Accepted, not read")),
    responses((status = 200, description = "Referral code and referees"), (status = 404, description = "8015 not found")))]
pub async fn lookup_referrals(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let mut conn = state.db.read().await?;
    let (customer, _) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    let referees = super::referrals::referees(&mut conn, principal.org, customer).await?;
    let referees: Vec<Value> = referees
        .iter()
        .map(|r| json!({"customerId": r.referee_id, "joinedOn": iso(r.created_at)}))
        .collect();
    Ok(axum::Json(json!({"data": {"customerId": customer.0,
        "referralCode": super::referrals::referral_code(customer),
        "referees": referees, "invitees": [], "incentives": []},
        "warnings": [], "errors": []}))
    .into_response())
}

/// Body of `PUT /v2/customers/lookup/status`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusBody {
    reason: Option<String>,
    label: Option<String>,
}

/// `PUT /v2/customers/lookup/status` — moves the customer to the status of a label.
#[utoipa::path(put, path = "/v2/customers/lookup/status", tag = "customers", params(LookupQuery),
    request_body = StatusBody,
    responses((status = 200, description = "createdId, warnings"), (status = 404, description = "8015 not found")))]
pub async fn lookup_status(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
    Json(body): Json<StatusBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let label = body
        .label
        .filter(|l| !l.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("label is required"))?;
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("reason is required"))?;
    if reason.chars().count() > 255 {
        return Err(ApiError::invalid("reason must be at most 255 characters"));
    }
    let mut conn = state.db.read().await?;
    let (customer, _) =
        q.resolve(&mut conn, principal.org, country_code(&headers).as_deref()).await?;
    drop(conn);
    service::set_status(&state.db, &principal, customer, &label, &reason).await?;
    Ok(axum::Json(json!({"createdId": customer.0, "warnings": []})).into_response())
}

/// `GET /v2/customers/{userId}/statusLog` — status changes, newest first.
#[utoipa::path(get, path = "/v2/customers/{userId}/statusLog", tag = "customers",
    params(("userId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "Status log"), (status = 404, description = "8015 not found")))]
pub async fn status_log(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let mut conn = state.db.read().await?;
    let customer = CustomerId(user_id);
    let row = customer_store::get_customer(&mut conn, principal.org, customer)
        .await?
        .ok_or(CustomerError::NotFound)?;
    let entries =
        customer_store::status_log(&mut conn, principal.org, customer, STATUS_LOG_MAX).await?;
    let data: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "createdByUser": e.created_by_type,
                "reason": e.reason,
                "createdBy": e.created_by_id,
                "actions": [],
                "autoUpdateTime": null,
                "createdOn": iso(e.created_at),
                "entityId": row.id,
                "isActive": i == 0,
                "label": e.label,
                "status": e.status,
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// Body of `POST /v2/customers/{userId}/changeIdentifier`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeIdentifierBody {
    #[serde(default)]
    add: Vec<IdentifierBody>,
    #[serde(default)]
    remove: Vec<IdentifierBody>,
}

/// `POST /v2/customers/{userId}/changeIdentifier` — adds and removes identifiers (Link/Delink).
#[utoipa::path(post, path = "/v2/customers/{userId}/changeIdentifier", tag = "customers",
    params(SourceQuery, ("userId" = i64, Path, description = "Customer id")), request_body = ChangeIdentifierBody,
    responses((status = 200, description = "createdId, warnings"), (status = 400, description = "Invalid or taken identifier")))]
pub async fn change_identifier(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(user_id): Path<i64>,
    Query(q): Query<SourceQuery>,
    Json(body): Json<ChangeIdentifierBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let account = SourceAccount::parse(q.source.as_deref(), q.account_id.as_deref())?;
    if body.add.is_empty() && body.remove.is_empty() {
        return Err(ApiError::invalid("add or remove must list at least one identifier"));
    }
    let country = country_code(&headers);
    let add = parse_identifiers(&body.add, country.as_deref())?;
    let remove = parse_identifiers(&body.remove, country.as_deref())?;
    let warnings = service::change_identifiers(
        &state.db,
        &principal,
        CustomerId(user_id),
        &account,
        &add,
        &remove,
    )
    .await?;
    Ok(axum::Json(json!({"createdId": user_id, "warnings": warnings})).into_response())
}

/// Query of `GET /v2/customers/search`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Turns free text into prefix targets: digits search mobiles, `@` searches emails, other text
/// searches names; external ids are searched as typed in every case.
pub fn search_targets(text: &str) -> Vec<SearchTarget> {
    let text = text.trim();
    let mut targets = vec![SearchTarget::Identifier("externalId", text.to_string())];
    let phone_like = text.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-'));
    if phone_like {
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            targets.push(SearchTarget::Identifier("mobile", digits));
        }
    } else if text.contains('@') {
        targets.push(SearchTarget::Identifier("email", text.to_lowercase()));
    } else {
        targets.push(SearchTarget::Name(text.to_lowercase()));
        targets.push(SearchTarget::Identifier("email", text.to_lowercase()));
    }
    targets
}

/// `GET /v2/customers/search` — prefix search over name, mobile, email and external id.
#[utoipa::path(get, path = "/v2/customers/search", tag = "customers", params(SearchQuery),
    responses((status = 200, description = "Matching customers, newest first")))]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let text = q.q.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() || text.chars().count() > 100 {
        return Err(ApiError::invalid("q must be 1 to 100 characters"));
    }
    let limit = q.limit.unwrap_or(LIMIT_DEFAULT);
    let offset = q.offset.unwrap_or(0);
    if !(1..=LIMIT_MAX).contains(&limit) || offset < 0 {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {LIMIT_MAX} and offset not negative"
        )));
    }
    let mut conn = state.db.read().await?;
    let (ids, total) =
        customer_store::search(&mut conn, principal.org, &search_targets(text), limit, offset)
            .await?;
    let mut data = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(view) = service::load(&mut conn, principal.org, id).await? {
            let identifiers: Vec<Value> = view
                .identifiers
                .iter()
                .map(|i| json!({"type": i.kind, "value": i.value, "source": i.source}))
                .collect();
            data.push(json!({
                "id": view.row.id,
                "firstName": view.row.first_name,
                "lastName": view.row.last_name,
                "identifiers": identifiers,
            }));
        }
    }
    Ok(v2_list(data, limit, offset, total))
}
