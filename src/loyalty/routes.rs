//! v2 handlers of the customer loyalty views (loyalty details, tier details, loyalty events,
//! trackers; by id and by lookup) and of manual tier adjustment.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::{
    LoyaltyError, ProgramSelection, REASON_LENGTH_MAX, SlabAction, TierAdjustment, Validity,
};
use super::service::{self, iso};
use super::store::{self, LoyaltyEventFilter};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::routes_v2::{LookupQuery, country_code};
use crate::db::{Connection, now_millis};
use crate::error::ApiError;
use crate::http::envelope::v2_list;
use crate::http::extract::{Json, Path, Query};
use crate::org::model::OrgId;
use crate::points::model::Fixed;

/// Default and largest page of loyalty events.
pub const EVENTS_LIMIT_DEFAULT: i64 = 10;
pub const EVENTS_LIMIT_MAX: i64 = 100;

/// Query of the views: the program filter, plus the lookup parameters on the lookup forms.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ViewQuery {
    program_id: Option<i64>,
    fetch_data_for_all_programs: Option<bool>,
    entity_type: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    identifier_name: Option<String>,
    identifier_value: Option<String>,
}

impl ViewQuery {
    fn lookup(&self) -> LookupQuery {
        LookupQuery::new(
            self.source.clone(),
            self.account_id.clone(),
            self.identifier_name.clone(),
            self.identifier_value.clone(),
        )
    }

    fn check_entity(&self) -> Result<(), ApiError> {
        match self.entity_type.as_deref().map(str::trim) {
            None | Some("") => Ok(()),
            Some(t) if t.eq_ignore_ascii_case("CUSTOMER") => Ok(()),
            Some(t) => {
                Err(ApiError::invalid(format!("entityType {t}: only CUSTOMER is supported")))
            }
        }
    }
}

/// The customer `id` names in the caller's org (8015 otherwise).
async fn by_id(state: &AppState, org: OrgId, id: i64) -> Result<i64, ApiError> {
    let mut conn = state.db.read().await?;
    service::check_customer(&mut conn, org, id).await?;
    Ok(id)
}

/// The customer a lookup names (8015 / 8013 / 8003 as the lookup family answers).
async fn by_lookup(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    lookup: &LookupQuery,
) -> Result<i64, ApiError> {
    let mut conn = state.db.read().await?;
    let (customer, _) =
        lookup.resolve(&mut conn, principal.org, country_code(headers).as_deref()).await?;
    Ok(customer.0)
}

async fn loyalty_details_of(
    state: &AppState,
    org: OrgId,
    customer: i64,
    q: &ViewQuery,
) -> Result<Response, ApiError> {
    let now = now_millis();
    let mut conn = state.db.read().await?;
    let states = service::program_states(&mut conn, &state.programs, org, customer, now).await?;
    let selection = q.program_id.map(ProgramSelection::One).unwrap_or(ProgramSelection::All);
    let chosen = service::select(&states, selection, LoyaltyError::NotEnrolled)?;
    let tz = service::org_zone(&mut conn, org).await?;
    let currencies =
        super::embeds::alternate_currencies(&mut conn, org, customer, &states, tz, now).await?;
    let mut data = Vec::with_capacity(chosen.len());
    for s in chosen {
        let view = service::tier_view(&mut conn, org, s, tz, now).await?;
        let mut item = service::loyalty_details_json(s, &view);
        item["alternateCurrencies"] =
            Value::Array(currencies.iter().filter(|c| c["programId"] == s.id()).cloned().collect());
        data.push(item);
    }
    Ok(axum::Json(json!({"data": data, "warnings": [], "errors": []})).into_response())
}

/// `GET /v2/customers/{userId}/loyaltyDetails` — the customer's points, tier and purchases in
/// every program of the org, or in `programId` (8089 when the org has no such program).
#[utoipa::path(get, path = "/v2/customers/{userId}/loyaltyDetails", tag = "loyalty", params(ViewQuery,
    ("userId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "data[]: one entry per program"),
        (status = 400, description = "8089 unknown programId"), (status = 404, description = "8015 not found")))]
pub async fn loyalty_details(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<ViewQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let customer = by_id(&state, principal.org, id).await?;
    loyalty_details_of(&state, principal.org, customer, &q).await
}

/// `GET /v2/customers/lookup/loyaltyDetails` — as by id, for the customer an identifier names.
#[utoipa::path(get, path = "/v2/customers/lookup/loyaltyDetails", tag = "loyalty", params(ViewQuery),
    responses((status = 200, description = "data[]: one entry per program"),
        (status = 400, description = "8089 unknown programId"), (status = 404, description = "8015 not found")))]
pub async fn lookup_loyalty_details(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<ViewQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let customer = by_lookup(&state, &principal, &headers, &q.lookup()).await?;
    loyalty_details_of(&state, principal.org, customer, &q).await
}

async fn tier_details_of(
    state: &AppState,
    org: OrgId,
    customer: i64,
    q: &ViewQuery,
) -> Result<Response, ApiError> {
    q.check_entity()?;
    let now = now_millis();
    let mut conn = state.db.read().await?;
    let states = service::program_states(&mut conn, &state.programs, org, customer, now).await?;
    let selection = if q.fetch_data_for_all_programs.unwrap_or(false) {
        ProgramSelection::All
    } else {
        q.program_id.map(ProgramSelection::One).unwrap_or(ProgramSelection::Default)
    };
    let chosen = service::select(&states, selection, LoyaltyError::UnknownProgram)?;
    let tz = service::org_zone(&mut conn, org).await?;
    let mut tiers = Vec::with_capacity(chosen.len());
    for s in chosen {
        let view = service::tier_view(&mut conn, org, s, tz, now).await?;
        tiers.push(service::tier_json(&view, tz));
    }
    let mut body = json!({"entityId": customer, "entityType": "CUSTOMER"});
    // The light shape of the spec (one program's fields at the top level) and Capillary's
    // `programTiers[]` list, together.
    if let Some(first) = tiers.first() {
        for key in [
            "currentTierSerialNumber",
            "nextTierSerialNumber",
            "tierExpiryDate",
            "tierExpiryDateISO",
        ] {
            body[key] = first[key].clone();
        }
    }
    body["programTiers"] = Value::Array(tiers);
    body["warnings"] = json!([]);
    Ok(axum::Json(body).into_response())
}

/// `GET /v2/customers/{userId}/tierDetails` — the tier in the default program, `programId`, or
/// every program (`fetchDataForAllPrograms=true`), with the next tier (−1 at the top) and the
/// gaps to upgrade and to renew.
#[utoipa::path(get, path = "/v2/customers/{userId}/tierDetails", tag = "loyalty", params(ViewQuery,
    ("userId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "Tier per program"),
        (status = 400, description = "1101 unknown programId"), (status = 404, description = "8015 not found")))]
pub async fn tier_details(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<ViewQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let customer = by_id(&state, principal.org, id).await?;
    tier_details_of(&state, principal.org, customer, &q).await
}

/// `GET /v2/customers/lookup/tierDetails` — as by id, for the customer an identifier names.
#[utoipa::path(get, path = "/v2/customers/lookup/tierDetails", tag = "loyalty", params(ViewQuery),
    responses((status = 200, description = "Tier per program"),
        (status = 400, description = "1101 unknown programId"), (status = 404, description = "8015 not found")))]
pub async fn lookup_tier_details(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<ViewQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let customer = by_lookup(&state, &principal, &headers, &q.lookup()).await?;
    tier_details_of(&state, principal.org, customer, &q).await
}

/// Query of `GET /v2/customers/{customerId}/loyaltyEvents`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    /// 1-based; wins over `offset`.
    page: Option<i64>,
    /// `EARN`, `REDEEM`, `EXPIRE` or `TRANSFER`.
    event_type: Option<String>,
    /// `YYYY-MM-DD`, in the org's time zone.
    from_date: Option<String>,
    to_date: Option<String>,
}

async fn date_bound(
    c: &mut impl Connection,
    org: OrgId,
    field: &str,
    value: Option<&str>,
    end_of: bool,
) -> Result<Option<i64>, ApiError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    let tz = service::org_zone(c, org).await?;
    service::local_day_bound(value, tz, end_of)
        .map(Some)
        .ok_or_else(|| ApiError::invalid(format!("{field} must be a YYYY-MM-DD date")))
}

/// `GET /v2/customers/{customerId}/loyaltyEvents` — the loyalty events of the customer, newest
/// first: registration, bills and returns, redemptions and their reversals, expiries, unlocks
/// and adjustments, each with the net points it moved.
#[utoipa::path(get, path = "/v2/customers/{customerId}/loyaltyEvents", tag = "loyalty", params(EventsQuery,
    ("customerId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "A page of events"),
        (status = 400, description = "Bad paging, eventType or date"), (status = 404, description = "8015 not found")))]
pub async fn loyalty_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Points, Level::Read)?;
    let limit = q.limit.unwrap_or(EVENTS_LIMIT_DEFAULT);
    if !(1..=EVENTS_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {EVENTS_LIMIT_MAX}")));
    }
    let offset = match (q.page, q.offset) {
        (Some(page), _) if page >= 1 => (page - 1).saturating_mul(limit),
        (Some(_), _) => return Err(ApiError::invalid("page must be 1 or more")),
        (None, Some(offset)) if offset >= 0 => offset,
        (None, Some(_)) => return Err(ApiError::invalid("offset must not be negative")),
        (None, None) => 0,
    };
    let category = match q.event_type.as_deref().map(|t| t.trim().to_ascii_uppercase()) {
        None => None,
        Some(t) if t.is_empty() => None,
        Some(t) if matches!(t.as_str(), "EARN" | "REDEEM" | "EXPIRE" | "TRANSFER") => Some(t),
        Some(t) => {
            return Err(ApiError::invalid(format!(
                "eventType {t} is not EARN, REDEEM, EXPIRE or TRANSFER"
            )));
        }
    };
    let org = principal.org;
    let customer = by_id(&state, org, id).await?;
    let mut conn = state.db.read().await?;
    let filter = LoyaltyEventFilter {
        customer,
        category,
        from: date_bound(&mut conn, org, "fromDate", q.from_date.as_deref(), false).await?,
        to: date_bound(&mut conn, org, "toDate", q.to_date.as_deref(), true).await?,
    };
    let total = store::count_loyalty_events(&mut conn, org, &filter).await?;
    let rows = store::loyalty_events(&mut conn, org, &filter, limit, offset).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"id": r.ref_id, "customerId": customer, "date": iso(r.occurred_at),
                "eventName": r.event_name, "eventType": r.category, "orgId": org.0,
                "status": r.status, "uniqueId": format!("{}-{}", r.origin, r.ref_id),
                "points": Fixed(r.points).to_f64()})
        })
        .collect();
    Ok(v2_list(data, limit, offset, total))
}

/// `GET /v2/customers/{customerId}/trackers` — the running values the programs' tier criteria
/// are measured on (purchases, visits, points; over the current window when tiers expire).
#[utoipa::path(get, path = "/v2/customers/{customerId}/trackers", tag = "loyalty", params(
    ("customerId" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "Trackers"), (status = 404, description = "8015 not found")))]
pub async fn trackers(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let org = principal.org;
    let customer = by_id(&state, org, id).await?;
    let now = now_millis();
    let mut conn = state.db.read().await?;
    let states = service::program_states(&mut conn, &state.programs, org, customer, now).await?;
    let tz = service::org_zone(&mut conn, org).await?;
    let mut data = Vec::new();
    for s in &states {
        data.extend(service::trackers(&mut conn, org, s, tz, now).await?);
    }
    // Each alternate currency held is tracked by what it has earned in its program.
    let currencies =
        super::embeds::alternate_currencies(&mut conn, org, customer, &states, tz, now).await?;
    for c in currencies {
        let id = c["alternateCurrencyId"].as_i64().unwrap_or(0);
        data.push(json!({"id": id, "name": c["alternateCurrencyName"], "conditionId": id,
            "type": "ALTERNATE_CURRENCIES", "value": c["lifetimePoints"], "updatedOn": Value::Null,
            "conditionName": "", "periodStartDate": Value::Null, "periodEndDate": Value::Null,
            "programId": c["programId"]}));
    }
    Ok(axum::Json(json!({"pagination": {}, "data": data, "warnings": [], "errors": []}))
        .into_response())
}

/// Query of `POST /v2/slab/manualSlabAdjustment`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct SlabQuery {
    identifier_name: Option<String>,
    identifier_value: Option<String>,
    source: Option<String>,
    account_id: Option<String>,
    /// `CUSTOMER` (default); `USERGROUP2` is not supported yet.
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Body of `POST /v2/slab/manualSlabAdjustment`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlabBody {
    #[schema(value_type = Option<i64>)]
    program_id: Option<Value>,
    /// `UPGRADE`, `DOWNGRADE`, `RENEWAL` or `EXTEND_CURRENT_TIER_EXPIRY_DATE`.
    slab_action: Option<String>,
    to_slab_name: Option<String>,
    /// `FIXED_DURATION`, `SPECIFIC_DATE`, `CURRENT_TIER_EXPIRY_DATE` or `AS_PER_TIER_STRATEGY`.
    manual_slab_action_validity: Option<String>,
    /// Days (FIXED_DURATION) or `YYYY-MM-DD` (SPECIFIC_DATE).
    #[schema(value_type = Option<String>)]
    manual_slab_action_validity_upto: Option<Value>,
    reassess_tier_on_next_activity: Option<bool>,
    slab_change_reason: Option<String>,
}

impl SlabBody {
    fn parse(self) -> Result<TierAdjustment, ApiError> {
        let program_id = match &self.program_id {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| ApiError::invalid("programId is required (an integer)"))?;
        let action = self.slab_action.as_deref().and_then(SlabAction::parse).ok_or_else(|| {
            ApiError::invalid(
                "slabAction must be UPGRADE, DOWNGRADE, RENEWAL or \
                     EXTEND_CURRENT_TIER_EXPIRY_DATE",
            )
        })?;
        let upto = match &self.manual_slab_action_validity_upto {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let kind = self.manual_slab_action_validity.as_deref().ok_or_else(|| {
            ApiError::from(LoyaltyError::Validity("manualSlabActionValidity is required".into()))
        })?;
        let validity = Validity::parse(kind, upto.as_deref())?;
        let reason = self.slab_change_reason.unwrap_or_default().trim().to_string();
        if reason.chars().count() > REASON_LENGTH_MAX {
            return Err(ApiError::invalid(format!(
                "slabChangeReason must be at most {REASON_LENGTH_MAX} characters"
            )));
        }
        Ok(TierAdjustment {
            program_id,
            action,
            to_tier: self.to_slab_name,
            validity,
            reassess: self.reassess_tier_on_next_activity.unwrap_or(false),
            reason,
        })
    }
}

/// `POST /v2/slab/manualSlabAdjustment` — upgrades, downgrades, renews or extends a customer's
/// tier by hand; audited, with a `tier.changed` event; `createdId` is the tier change.
#[utoipa::path(post, path = "/v2/slab/manualSlabAdjustment", tag = "loyalty", params(SlabQuery),
    request_body = SlabBody,
    responses((status = 200, description = "createdId (the tier change), warnings"),
        (status = 400, description = "1101 unknown program, 1102 unknown tier, 1103 move not allowed, 1104 bad validity"),
        (status = 404, description = "8015 not found")))]
pub async fn manual_slab_adjustment(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<SlabQuery>,
    Json(body): Json<SlabBody>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    match q.kind.as_deref().map(str::trim) {
        None | Some("") => {}
        Some(t) if t.eq_ignore_ascii_case("CUSTOMER") => {}
        Some(t) if t.eq_ignore_ascii_case("USERGROUP2") => {
            return Err(ApiError::invalid("type USERGROUP2: user groups are not supported yet"));
        }
        Some(t) => return Err(ApiError::invalid(format!("type {t} is not CUSTOMER"))),
    }
    let adjustment = body.parse()?;
    let lookup = LookupQuery::new(
        q.source.clone(),
        q.account_id.clone(),
        q.identifier_name.clone(),
        q.identifier_value.clone(),
    );
    let customer = by_lookup(&state, &principal, &headers, &lookup).await?;
    let adjusted = service::adjust_tier(
        &state.db,
        &state.programs,
        &principal,
        customer,
        &adjustment,
        now_millis(),
    )
    .await?;
    Ok(axum::Json(json!({"createdId": adjusted.change_id, "warnings": []})).into_response())
}
