//! Org API handlers and their wire shapes: v1.1 org/entities/store, v2 orgEntity and organization.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, TimeZone};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::{
    AdminType, ConceptId, CurrencyCode, EntityRow, EntityType, LanguageTag, NewStore, Org, OrgId,
    Store, StoreId, Till, TillId, TimeZoneName, ZoneId, limit_length, parse_code, parse_store_name,
};
use super::service::{self, POS_GROUP, TillChanges, TillInput};
use super::store::{self as org_store, EntityQuery, StoreFilter, TillLookup};
use crate::app::AppState;
use crate::audit::AuditActor;
use crate::auth::{Level, Principal, Resource};
use crate::db::Connection;
use crate::error::{ApiError, Code};
use crate::http::envelope::{V1Reply, v1_status, v2_created, v2_list};
use crate::http::extract::{Json, Path, Query};

/// Most stores in one bulk request (Location APIs v2 limit).
pub const STORE_BULK_MAX: usize = 100;
/// Default and largest page of the v1.1 entities API.
pub const ENTITIES_LIMIT_DEFAULT: i64 = 200;
pub const ENTITIES_LIMIT_MAX: i64 = 500;
/// Default and largest page of v2 lists.
pub const V2_LIMIT_DEFAULT: i64 = 10;
pub const V2_LIMIT_MAX: i64 = 100;

// ---------------------------------------------------------------- shared renderers

fn yes_no(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn custom_field_list(json_text: &str) -> Vec<Value> {
    let map: Map<String, Value> = serde_json::from_str(json_text).unwrap_or_default();
    map.into_iter().map(|(name, value)| json!({"name": name, "value": value})).collect()
}

/// The locale a store uses: its own where set, else the org's.
fn store_locale(store: &Store, org: &Org) -> (String, String, String) {
    (
        store.timezone.clone().unwrap_or_else(|| org.timezone.clone()),
        store.currency.clone().unwrap_or_else(|| org.currency.clone()),
        store.language.clone().unwrap_or_else(|| org.language.clone()),
    )
}

/// The v2 store shape (request fields echoed back, plus `id` and the resolved locale).
fn store_json(store: &Store, org: &Org) -> Value {
    let (timezone, currency, language) = store_locale(store, org);
    json!({
        "id": store.id,
        "code": store.code,
        "name": store.name,
        "description": store.description,
        "type": "STORE",
        "adminType": store.admin_type,
        "isActive": store.is_active,
        "timeZoneId": store.time_zone_id,
        "currencyId": store.currency_id,
        "languageId": store.language_id,
        "timezone": timezone,
        "currency": currency,
        "language": language,
        "parentZoneId": store.zone_id,
        "parentConceptId": store.concept_id,
        "externalIds": serde_json::from_str::<Value>(&store.external_ids).unwrap_or(json!([])),
        "email": store.email,
        "mobile": store.mobile,
        "landline": store.landline,
        "latitude": store.latitude,
        "longitude": store.longitude,
        "address": store.address,
        "cityId": store.city_id,
        "areaId": store.area_id,
        "customFields": serde_json::from_str::<Value>(&store.custom_fields).unwrap_or(json!({})),
    })
}

/// The v2 till shape of "Get org till details" / "Get Till ID Details".
fn till_json(till: &Till, store: Option<&Store>, org: &Org) -> Value {
    let (timezone, currency, language) = match store {
        Some(s) => store_locale(s, org),
        None => (org.timezone.clone(), org.currency.clone(), org.language.clone()),
    };
    json!({
        "id": till.id,
        "code": till.code,
        "name": till.name,
        "description": till.description,
        "type": "TILL",
        "adminType": till.admin_type,
        "isActive": till.is_active,
        "isOuEnabled": false,
        "billable": till.billable,
        "storeId": till.store_id,
        "timeZoneId": store.and_then(|s| s.time_zone_id),
        "currencyId": store.and_then(|s| s.currency_id),
        "languageId": store.and_then(|s| s.language_id),
        "timezone": timezone,
        "currency": currency,
        "language": language,
        "customField": custom_field_list(&till.custom_fields),
        "referenceId": -1,
        "default": till.is_default,
    })
}

fn org_json(org: &Org) -> Value {
    let language_code = org.language.split('-').next().unwrap_or(&org.language).to_string();
    json!({
        "id": org.id,
        "name": org.name,
        "phone": org.phone,
        "address": org.address,
        "language": org.language,
        "languageCode": language_code,
        "languageLocale": org.language,
        "timezone": org.timezone,
        "currency": org.currency,
        "parentId": org.parent_id.unwrap_or(-1),
    })
}

/// Reads an optional id that clients send as a number, a numeric string or `""`.
fn lenient_id(field: &str, value: &Option<Value>) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("{field} must be a number"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{field} must be an integer"))),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a number"))),
    }
}

fn required_id(field: &str, value: &Option<Value>) -> Result<i64, ApiError> {
    lenient_id(field, value)?.ok_or_else(|| ApiError::invalid(format!("{field} is required")))
}

fn parse_bool(field: &str, value: Option<&str>) -> Result<Option<bool>, ApiError> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v == "true" || v == "1" => Ok(Some(true)),
        Some(v) if v == "false" || v == "0" => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid(format!("{field} must be true or false"))),
    }
}

fn page(
    limit: Option<i64>,
    offset: Option<i64>,
    default: i64,
    max: i64,
) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(default);
    let offset = offset.unwrap_or(0);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be between 1 and {max}")));
    }
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    Ok((limit, offset))
}

/// A store by id, fetched once per request however many rows refer to it.
async fn cached_store(
    conn: &mut impl Connection,
    org: OrgId,
    cache: &mut HashMap<i64, Option<Store>>,
    store_id: i64,
) -> Result<Option<Store>, ApiError> {
    if let Some(found) = cache.get(&store_id) {
        return Ok(found.clone());
    }
    let found = org_store::get_store(conn, org, StoreId(store_id)).await?;
    cache.insert(store_id, found.clone());
    Ok(found)
}

async fn load_org(conn: &mut impl Connection, org: OrgId) -> Result<Org, ApiError> {
    org_store::get_org(conn, org).await?.ok_or_else(|| ApiError::not_found("Org not found"))
}

// ---------------------------------------------------------------- v1.1

/// `GET /v1.1/organization/get` — the caller's org.
#[utoipa::path(get, path = "/v1.1/organization/get", tag = "org",
    responses((status = 200, description = "The org in the v1.1 envelope")))]
pub async fn v1_org_get(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let org = service::get_org(&state.db, principal.org).await?;
    V1Reply::ok(
        "organization",
        json!({
            "id": org.id,
            "name": org.name,
            "base_currency": org.currency,
            "timezone": org.timezone,
            "language": org.language,
            "fiscal_year_start": org.fiscal_year_start,
            "address": org.address,
            "phone": org.phone,
        }),
    )
}

/// Query of `GET /v1.1/organization/entities`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EntitiesQuery {
    #[serde(rename = "type")]
    entity_type: Option<String>,
    id: Option<String>,
    scope: Option<String>,
    parent_identifier_type: Option<String>,
    parent_identifier_value: Option<String>,
    include_parent: Option<String>,
    sub_entities_count: Option<i64>,
    details: Option<String>,
    exclude_locale: Option<String>,
    start_id: Option<i64>,
    limit: Option<i64>,
    modified_since: Option<String>,
    active_only: Option<String>,
    #[allow(dead_code)]
    format: Option<String>,
}

/// `GET /v1.1/organization/entities` — zones, concepts, stores or tills of the org.
#[utoipa::path(get, path = "/v1.1/organization/entities", tag = "org", params(EntitiesQuery),
    responses((status = 200, description = "Entities in the v1.1 envelope")))]
pub async fn v1_org_entities(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<EntitiesQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let entity_type = match q.entity_type.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("STORE") => EntityType::Store,
        Some("STR_SERVER") => EntityType::StrServer,
        Some("TILL") => EntityType::Till,
        Some("ZONE") => EntityType::Zone,
        Some("CONCEPT") => EntityType::Concept,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "type '{other}' is invalid: use STORE, STR_SERVER, TILL, ZONE or CONCEPT"
            )));
        }
        None => return Err(ApiError::invalid("type is required")),
    };
    let mut conn = state.db.read().await?;
    let org = load_org(&mut conn, principal.org).await?;
    if let Some(scope) = q.scope.as_deref() {
        if !matches!(scope, "STORE_CUSTOM_FIELDS" | "ZONE_CUSTOM_FIELDS" | "TILL_CUSTOM_FIELDS") {
            return Err(ApiError::invalid(
                "scope must be STORE_CUSTOM_FIELDS, ZONE_CUSTOM_FIELDS or TILL_CUSTOM_FIELDS",
            ));
        }
        let scope = crate::fields::model::CustomFieldScope::parse("scope", scope)?;
        let fields =
            crate::fields::service::custom_fields(&state.db, principal.org, Some(scope)).await?;
        let list: Vec<Value> =
            fields.iter().map(crate::fields::routes::v1_custom_field_json).collect();
        return V1Reply::ok("organization", json!({"custom_fields": {"field": list}}));
    }
    let ids = match q.id.as_deref() {
        Some(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::invalid("id must be a comma-separated list of numbers"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    if ids.len() > ENTITIES_LIMIT_MAX as usize {
        return Err(ApiError::new(Code::BatchTooLarge));
    }
    let parent_id =
        match (q.parent_identifier_type.as_deref(), q.parent_identifier_value.as_deref()) {
            (None, None) => None,
            (Some(kind), Some(value)) => {
                Some(resolve_parent(&mut conn, principal.org, entity_type, kind, value).await?)
            }
            _ => {
                return Err(ApiError::invalid(
                    "parent_identifier_type and parent_identifier_value must be given together",
                ));
            }
        };
    let limit = q.limit.unwrap_or(ENTITIES_LIMIT_DEFAULT);
    if !(1..=ENTITIES_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be between 1 and {ENTITIES_LIMIT_MAX}")));
    }
    let modified_since = match q.modified_since.as_deref() {
        Some(date) => {
            let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| ApiError::invalid("modified_since must be a date YYYY-MM-DD"))?;
            let tz: chrono_tz::Tz = org.timezone.parse().unwrap_or(chrono_tz::UTC);
            let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
            Some(
                tz.from_local_datetime(&midnight)
                    .earliest()
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(0),
            )
        }
        None => None,
    };
    let query = EntityQuery {
        entity_type,
        ids,
        parent: parent_id,
        start_id: q.start_id.unwrap_or(0),
        limit,
        modified_since,
        active_only: parse_bool("active_only", q.active_only.as_deref())?.unwrap_or(false),
    };
    let rows = org_store::list_entities(&mut conn, principal.org, &query).await?;
    let include_parent = parse_bool("include_parent", q.include_parent.as_deref())?
        .unwrap_or(false)
        && matches!(entity_type, EntityType::Zone | EntityType::Concept);
    let basic = q.details.as_deref().is_some_and(|d| d.eq_ignore_ascii_case("basic"));
    let exclude_locale =
        parse_bool("exclude_locale", q.exclude_locale.as_deref())?.unwrap_or(false);
    let sub_count = q.sub_entities_count.unwrap_or(0).clamp(0, ENTITIES_LIMIT_MAX);
    let mut stores: HashMap<i64, Option<Store>> = HashMap::new();
    let mut entities = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut entity = entity_json(row, entity_type);
        if include_parent && let Some(parent) = row.parent_id {
            // The parent is shown whatever page, date or activity filter selected the child.
            let parent_query = EntityQuery {
                ids: vec![parent],
                parent: None,
                start_id: 0,
                limit: 1,
                modified_since: None,
                active_only: false,
                ..query.clone()
            };
            let parent_row =
                org_store::list_entities(&mut conn, principal.org, &parent_query).await?;
            entity["parent"] =
                parent_row.first().map(|p| entity_json(p, entity_type)).unwrap_or(Value::Null);
        }
        if sub_count > 0 {
            let child_type = match entity_type {
                EntityType::Store => Some((EntityType::Till, "store_id")),
                EntityType::Zone => Some((EntityType::Store, "zone_id")),
                EntityType::Concept => Some((EntityType::Store, "concept_id")),
                _ => None,
            };
            if let Some((child_type, column)) = child_type {
                let child_query = EntityQuery {
                    entity_type: child_type,
                    ids: Vec::new(),
                    parent: Some((column, row.id)),
                    start_id: 0,
                    limit: sub_count,
                    modified_since: None,
                    active_only: query.active_only,
                };
                let children =
                    org_store::list_entities(&mut conn, principal.org, &child_query).await?;
                let list: Vec<Value> =
                    children.iter().map(|c| entity_json(c, child_type)).collect();
                entity["sub_entities"] = json!({"entity": list});
            }
        }
        if !basic {
            let store = match entity_type {
                EntityType::Store => Some(row.id),
                EntityType::Till => row.parent_id,
                _ => None,
            };
            let (timezone, currency, language) = match store {
                Some(store_id) => {
                    match cached_store(&mut conn, principal.org, &mut stores, store_id).await? {
                        Some(s) => store_locale(&s, &org),
                        None => (org.timezone.clone(), org.currency.clone(), org.language.clone()),
                    }
                }
                None => (org.timezone.clone(), org.currency.clone(), org.language.clone()),
            };
            if !exclude_locale {
                entity["timezones"] = json!({"base_timezone": timezone});
            }
            entity["currencies"] = json!({"base_currency": currency});
            entity["languages"] = json!({"base_language": language});
        }
        entities.push(entity);
    }
    V1Reply::ok("organization", json!({"entities": {"entity": entities}}))
}

fn entity_json(row: &EntityRow, entity_type: EntityType) -> Value {
    let type_name = match entity_type {
        EntityType::Store => "STORE",
        EntityType::StrServer => "STR_SERVER",
        EntityType::Till => "TILL",
        EntityType::Zone => "ZONE",
        EntityType::Concept => "CONCEPT",
    };
    json!({
        "id": row.id,
        "code": row.code,
        "name": row.name,
        "type": type_name,
        "description": row.description,
        "is_active": yes_no(row.is_active),
        "parent_id": row.parent_id.unwrap_or(-1),
        "custom_fields": {"field": []},
    })
}

/// Resolves `parent_identifier_type`/`value` to the parent column and id to filter children by.
async fn resolve_parent(
    conn: &mut impl Connection,
    org: OrgId,
    entity_type: EntityType,
    kind: &str,
    value: &str,
) -> Result<(&'static str, i64), ApiError> {
    let kind = kind.to_ascii_uppercase();
    let unknown = || ApiError::invalid(format!("No parent with {kind} '{value}' in this org"));
    match (entity_type, kind.as_str()) {
        (EntityType::Till, "STORE_ID") => {
            let id: i64 =
                value.parse().map_err(|_| ApiError::invalid("STORE_ID must be a number"))?;
            org_store::get_store(conn, org, StoreId(id)).await?.ok_or_else(unknown)?;
            Ok(("store_id", id))
        }
        (EntityType::Till, "STORE_CODE") => {
            let store =
                org_store::find_store_by_code(conn, org, value).await?.ok_or_else(unknown)?;
            Ok(("store_id", store.id))
        }
        (EntityType::Till, "STORE_EXTERNAL_ID") => {
            let filter =
                StoreFilter { external_id_prefix: Some(value.to_string()), ..Default::default() };
            let (stores, _) =
                org_store::list_stores(conn, org, &filter, ENTITIES_LIMIT_MAX, 0).await?;
            let store = stores
                .into_iter()
                .find(|s| {
                    serde_json::from_str::<Vec<String>>(&s.external_ids)
                        .is_ok_and(|ids| ids.iter().any(|i| i == value))
                })
                .ok_or_else(unknown)?;
            Ok(("store_id", store.id))
        }
        (EntityType::Store, "CONCEPT_ID") => {
            let id: i64 =
                value.parse().map_err(|_| ApiError::invalid("CONCEPT_ID must be a number"))?;
            if !org_store::concept_exists(conn, org, ConceptId(id)).await? {
                return Err(unknown());
            }
            Ok(("concept_id", id))
        }
        (EntityType::Store, "CONCEPT_CODE") => {
            let query = EntityQuery {
                entity_type: EntityType::Concept,
                ids: Vec::new(),
                parent: None,
                start_id: 0,
                limit: ENTITIES_LIMIT_MAX,
                modified_since: None,
                active_only: false,
            };
            let concepts = org_store::list_entities(conn, org, &query).await?;
            let concept = concepts.into_iter().find(|c| c.code == value).ok_or_else(unknown)?;
            Ok(("concept_id", concept.id))
        }
        _ => Err(ApiError::invalid(format!(
            "parent_identifier_type {kind} does not apply to this type: STORE_ID, STORE_CODE and \
             STORE_EXTERNAL_ID select tills, CONCEPT_ID and CONCEPT_CODE select stores"
        ))),
    }
}

/// Query of `GET /v1.1/store/get`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StoreGetQuery {
    id: Option<String>,
    code: Option<String>,
    #[allow(dead_code)]
    format: Option<String>,
}

/// `GET /v1.1/store/get` — stores by `id` or `code` (comma-separated), else the caller's store.
#[utoipa::path(get, path = "/v1.1/store/get", tag = "org", params(StoreGetQuery),
    responses((status = 200, description = "Stores in the v1.1 envelope"), (status = 404, description = "No such store")))]
pub async fn v1_store_get(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<StoreGetQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let mut conn = state.db.read().await?;
    let org = load_org(&mut conn, principal.org).await?;
    let mut found = Vec::new();
    if let Some(ids) = q.id.as_deref().filter(|s| !s.trim().is_empty()) {
        for id in ids.split(',').take(ENTITIES_LIMIT_MAX as usize) {
            let id: i64 = id
                .trim()
                .parse()
                .map_err(|_| ApiError::invalid("id must be a comma-separated list of numbers"))?;
            found.extend(org_store::get_store(&mut conn, principal.org, StoreId(id)).await?);
        }
    } else if let Some(codes) = q.code.as_deref().filter(|s| !s.trim().is_empty()) {
        for code in codes.split(',').take(ENTITIES_LIMIT_MAX as usize) {
            found.extend(
                org_store::find_store_by_code(&mut conn, principal.org, code.trim()).await?,
            );
        }
    } else if let Some(store) = principal.store {
        found.extend(org_store::get_store(&mut conn, principal.org, store).await?);
    }
    if found.is_empty() {
        return Err(ApiError::not_found("Store not found"));
    }
    let mut list = Vec::with_capacity(found.len());
    for store in &found {
        let zone = entity_by_id(&mut conn, principal.org, EntityType::Zone, store.zone_id).await?;
        let concept =
            entity_by_id(&mut conn, principal.org, EntityType::Concept, store.concept_id).await?;
        let (timezone, currency, language) = store_locale(store, &org);
        let custom: Vec<Value> = custom_field_list(&store.custom_fields);
        list.push(json!({
            "id": store.id,
            "code": store.code,
            "name": store.name,
            "description": store.description,
            "is_active": yes_no(store.is_active),
            "zone": zone,
            "concept": concept,
            "address": store.address,
            "city": store.city_id,
            "email": store.email,
            "mobile": store.mobile,
            "landline": store.landline,
            "latitude": store.latitude,
            "longitude": store.longitude,
            "external_ids": serde_json::from_str::<Value>(&store.external_ids).unwrap_or(json!([])),
            "timezone": timezone,
            "currency": currency,
            "language": language,
            "custom_fields": {"field": custom},
        }));
    }
    V1Reply::ok("stores", json!({"store": list}))
}

async fn entity_by_id(
    conn: &mut impl Connection,
    org: OrgId,
    entity_type: EntityType,
    id: i64,
) -> Result<Value, ApiError> {
    let query = EntityQuery {
        entity_type,
        ids: vec![id],
        parent: None,
        start_id: 0,
        limit: 1,
        modified_since: None,
        active_only: false,
    };
    let rows = org_store::list_entities(conn, org, &query).await?;
    Ok(rows
        .first()
        .map(|r| json!({"id": r.id, "code": r.code, "name": r.name}))
        .unwrap_or(Value::Null))
}

/// `GET /v1.1/store/login` — checks the till credentials and describes the logged-in till.
#[utoipa::path(get, path = "/v1.1/store/login", tag = "org",
    responses((status = 200, description = "Credentials are valid"), (status = 401, description = "Authentication failed")))]
pub async fn v1_store_login(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<V1Reply, ApiError> {
    let Some(till_id) = principal.till else {
        return Err(ApiError::invalid("store/login needs till credentials or a till attribution"));
    };
    let mut conn = state.db.read().await?;
    let org = load_org(&mut conn, principal.org).await?;
    let lookup = TillLookup { id: Some(till_id.0), ..Default::default() };
    let till = org_store::find_till(&mut conn, principal.org, &lookup)
        .await?
        .ok_or_else(|| ApiError::not_found("Till not found"))?;
    let mut status = v1_status(200, "Login successful");
    status["code"] = json!("200");
    let server_time = chrono::Utc::now()
        .with_timezone(&org.timezone.parse::<chrono_tz::Tz>().unwrap_or(chrono_tz::UTC));
    let body = json!({"response": {
        "status": status,
        "store": {"user": {
            "username": till.code,
            "first_name": till.name,
            "last_name": "",
            "org_name": org.name,
            "user_id": till.id.to_string(),
            "type": "TILL",
            "org_id": org.id.to_string(),
            "server_time": server_time.format("%Y-%m-%d %H:%M:%S").to_string(),
            "associate_login_enabled": "false",
        }},
    }});
    Ok(V1Reply { status: axum::http::StatusCode::OK, body })
}

// ---------------------------------------------------------------- v2 stores

/// Body of `POST /v2/orgEntity/store` (ids may arrive as numbers, numeric strings or `""`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddStoreRequest {
    code: String,
    name: String,
    description: Option<String>,
    #[serde(rename = "type")]
    entity_type: Option<String>,
    admin_type: Option<String>,
    is_active: Option<bool>,
    #[schema(value_type = Option<i64>)]
    time_zone_id: Option<Value>,
    #[schema(value_type = Option<i64>)]
    currency_id: Option<Value>,
    #[schema(value_type = Option<i64>)]
    language_id: Option<Value>,
    /// Perks extension: IANA time zone of the store (overrides the org's).
    timezone: Option<String>,
    /// Perks extension: ISO-4217 currency of the store.
    currency: Option<String>,
    /// Perks extension: BCP-47 language of the store.
    language: Option<String>,
    #[schema(value_type = i64)]
    parent_zone_id: Option<Value>,
    #[schema(value_type = i64)]
    parent_concept_id: Option<Value>,
    external_ids: Option<Vec<String>>,
    email: Option<String>,
    mobile: Option<String>,
    landline: Option<String>,
    latitude: Option<String>,
    longitude: Option<String>,
    address: Option<String>,
    #[schema(value_type = Option<i64>)]
    city_id: Option<Value>,
    #[schema(value_type = Option<i64>)]
    area_id: Option<Value>,
    #[schema(value_type = Option<Object>)]
    custom_fields: Option<Map<String, Value>>,
}

fn empty_to_none(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.trim().is_empty())
}

impl AddStoreRequest {
    fn parse(self) -> Result<NewStore, ApiError> {
        if let Some(kind) = &self.entity_type
            && !kind.eq_ignore_ascii_case("STORE")
        {
            return Err(ApiError::invalid("type must be STORE"));
        }
        let external_ids = self.external_ids.unwrap_or_default();
        if external_ids.len() > 10 || external_ids.iter().any(|e| e.is_empty() || e.len() > 100) {
            return Err(ApiError::invalid(
                "externalIds takes at most 10 non-empty ids of up to 100 characters",
            ));
        }
        let custom_fields = self.custom_fields.unwrap_or_default();
        if custom_fields.len() > 50 {
            return Err(ApiError::invalid("customFields takes at most 50 fields"));
        }
        Ok(NewStore {
            code: parse_code("code", &self.code, 1, 50)?,
            name: parse_store_name(&self.name)?,
            description: limit_length("description", self.description, 250)?,
            admin_type: match self.admin_type.as_deref() {
                Some(a) if !a.is_empty() => AdminType::parse("adminType", a)?,
                _ => AdminType::General,
            },
            is_active: self.is_active.unwrap_or(true),
            zone_id: ZoneId(required_id("parentZoneId", &self.parent_zone_id)?),
            concept_id: ConceptId(required_id("parentConceptId", &self.parent_concept_id)?),
            timezone: empty_to_none(self.timezone)
                .map(|t| TimeZoneName::parse("timezone", &t))
                .transpose()?,
            currency: empty_to_none(self.currency)
                .map(|c| CurrencyCode::parse("currency", &c))
                .transpose()?,
            language: empty_to_none(self.language)
                .map(|l| LanguageTag::parse("language", &l))
                .transpose()?,
            time_zone_id: lenient_id("timeZoneId", &self.time_zone_id)?,
            currency_id: lenient_id("currencyId", &self.currency_id)?,
            language_id: lenient_id("languageId", &self.language_id)?,
            email: empty_to_none(self.email),
            mobile: empty_to_none(self.mobile),
            landline: empty_to_none(self.landline),
            latitude: empty_to_none(self.latitude),
            longitude: empty_to_none(self.longitude),
            address: empty_to_none(self.address),
            city_id: lenient_id("cityId", &self.city_id)?,
            area_id: lenient_id("areaId", &self.area_id)?,
            external_ids,
            custom_fields,
        })
    }
}

/// `POST /v2/orgEntity/store` — adds a store; answers the stored store.
#[utoipa::path(post, path = "/v2/orgEntity/store", tag = "org", request_body = AddStoreRequest,
    responses((status = 200, description = "The stored store"), (status = 400, description = "Invalid input, 1207 code taken, 1214 bad parent")))]
pub async fn v2_add_store(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<AddStoreRequest>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let new = body.parse()?;
    let store =
        service::add_store(&state.db, principal.org, &AuditActor::from(&principal), &new).await?;
    let org = service::get_org(&state.db, principal.org).await?;
    let mut out = store_json(&store, &org);
    out["warnings"] = json!([]);
    Ok(axum::Json(out).into_response())
}

/// `POST /v2/orgEntity/store/bulk` — up to 100 stores; each succeeds or fails on its own.
#[utoipa::path(post, path = "/v2/orgEntity/store/bulk", tag = "org", request_body = Vec<AddStoreRequest>,
    responses((status = 200, description = "One result per store"), (status = 400, description = "Every store failed, or more than 100")))]
pub async fn v2_add_stores_bulk(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Vec<Value>>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    if body.is_empty() {
        return Err(ApiError::invalid("the body must list at least one store"));
    }
    if body.len() > STORE_BULK_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("At most {STORE_BULK_MAX} stores per request"),
        ));
    }
    let actor = AuditActor::from(&principal);
    let mut results = Vec::with_capacity(body.len());
    let mut succeeded = 0;
    for item in body {
        let code = item.get("code").cloned().unwrap_or(Value::Null);
        let outcome = async {
            let request: AddStoreRequest =
                serde_json::from_value(item).map_err(|e| ApiError::invalid(e.to_string()))?;
            let new = request.parse()?;
            Ok::<_, ApiError>(service::add_store(&state.db, principal.org, &actor, &new).await?)
        }
        .await;
        match outcome {
            Ok(store) => {
                succeeded += 1;
                results.push(
                    json!({"code": store.code, "id": store.id, "errors": [], "warnings": []}),
                );
            }
            Err(e) => results.push(json!({"code": code, "id": null, "warnings": [],
                "errors": [{"status": false, "code": e.code.info().code, "message": e.message}]})),
        }
    }
    let status = if succeeded == 0 {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    let mut response =
        (status, axum::Json(json!({"response": results, "warnings": [], "errors": []})))
            .into_response();
    response.extensions_mut().insert(crate::http::envelope::Enveloped);
    Ok(response)
}

// ---------------------------------------------------------------- v2 tills

/// One custom field as the till APIs send it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CustomFieldValue {
    name: String,
    #[schema(value_type = Option<Object>)]
    value: Option<Value>,
}

fn custom_field_map(fields: Vec<CustomFieldValue>) -> Result<Map<String, Value>, ApiError> {
    if fields.len() > 50 {
        return Err(ApiError::invalid("customFields takes at most 50 fields"));
    }
    let mut map = Map::new();
    for field in fields {
        let name = field.name.trim();
        if name.is_empty() || name.chars().count() > 20 {
            return Err(ApiError::invalid("customFields[].name must be 1 to 20 characters"));
        }
        map.insert(name.to_string(), field.value.unwrap_or(Value::Null));
    }
    Ok(map)
}

/// Body of `POST /v2/orgEntity/till`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddTillRequest {
    name: String,
    password: String,
    #[schema(value_type = i64)]
    store_id: Option<Value>,
    description: Option<String>,
    billable: Option<bool>,
    #[schema(value_type = Option<i64>)]
    #[allow(dead_code)]
    store_server_id: Option<Value>,
    custom_fields: Option<Vec<CustomFieldValue>>,
    /// Perks extension: `GENERAL` (default) or `ADMIN`.
    admin_type: Option<String>,
    /// Perks extension: the access group (`POS` by default, or `Admin`).
    access_group: Option<String>,
}

/// `POST /v2/orgEntity/till` — adds a till (a Basic-auth login); answers `{"createdId", "warnings"}`.
#[utoipa::path(post, path = "/v2/orgEntity/till", tag = "org", request_body = AddTillRequest,
    responses((status = 200, description = "createdId is the till id"), (status = 400, description = "Invalid input, 1207 name taken, 1214 bad store")))]
pub async fn v2_add_till(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<AddTillRequest>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let code = parse_code("name", &body.name, 3, 50)?;
    if body.password.is_empty() || body.password.len() > 128 {
        return Err(ApiError::invalid("password must be 1 to 128 characters"));
    }
    let input = TillInput {
        store_id: StoreId(required_id("storeId", &body.store_id)?),
        code,
        password: body.password,
        description: limit_length("description", body.description, 250)?,
        admin_type: match body.admin_type.as_deref() {
            Some(a) => AdminType::parse("adminType", a)?,
            None => AdminType::General,
        },
        billable: body.billable.unwrap_or(true),
        access_group: body.access_group.unwrap_or_else(|| POS_GROUP.to_string()),
        custom_fields: custom_field_map(body.custom_fields.unwrap_or_default())?,
    };
    let id =
        service::add_till(&state.db, principal.org, &AuditActor::from(&principal), input).await?;
    Ok(v2_created(id.0))
}

/// Body of `PUT /v2/orgEntity/till/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTillRequest {
    custom_fields: Option<Vec<CustomFieldValue>>,
    description: Option<String>,
    billable: Option<bool>,
    is_active: Option<bool>,
    /// Perks extension: a new password; it takes effect on the next request.
    password: Option<String>,
}

/// `PUT /v2/orgEntity/till/{id}` — changes custom field values (and, as extensions, description,
/// billable, active state and password) of a till.
#[utoipa::path(put, path = "/v2/orgEntity/till/{id}", tag = "org", request_body = UpdateTillRequest,
    params(("id" = i64, Path, description = "Till id")),
    responses((status = 200, description = "The updated till"), (status = 404, description = "No such till")))]
pub async fn v2_update_till(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Json(body): Json<UpdateTillRequest>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    if let Some(password) = &body.password
        && (password.is_empty() || password.len() > 128)
    {
        return Err(ApiError::invalid("password must be 1 to 128 characters"));
    }
    let changes = TillChanges {
        description: body
            .description
            .map(|d| limit_length("description", Some(d), 250))
            .transpose()?,
        billable: body.billable,
        is_active: body.is_active,
        password: body.password,
        custom_fields: body.custom_fields.map(custom_field_map).transpose()?,
    };
    if changes.description.is_none()
        && changes.billable.is_none()
        && changes.is_active.is_none()
        && changes.password.is_none()
        && changes.custom_fields.is_none()
    {
        return Err(ApiError::invalid("customFields is required"));
    }
    if changes.custom_fields.is_some() {
        require_admin_till_for_custom_fields(&state, &principal).await?;
    }
    let till = service::update_till(
        &state.db,
        principal.org,
        &AuditActor::from(&principal),
        TillId(id),
        changes,
    )
    .await?;
    let mut conn = state.db.read().await?;
    let org = load_org(&mut conn, principal.org).await?;
    let store = org_store::get_store(&mut conn, principal.org, StoreId(till.store_id)).await?;
    let mut out = till_json(&till, store.as_ref(), &org);
    out["warnings"] = json!([]);
    Ok(axum::Json(out).into_response())
}

/// The org config that lets non-admin tills change till custom fields.
pub const ALLOW_TILL_AUTH_CONFIG: &str = "CONF_ALLOW_TILL_AUTH_FOR_ORG_ENTITY_CREATION";

/// Till custom fields may be changed by admin tills only, unless the org allows every till
/// (spec: 1209 "Not an admin user"). OAuth clients and admin tokens are not tills.
async fn require_admin_till_for_custom_fields(
    state: &AppState,
    principal: &Principal,
) -> Result<(), ApiError> {
    let crate::auth::Actor::Till { id, .. } = &principal.actor else { return Ok(()) };
    let mut conn = state.db.read().await?;
    let allowed =
        crate::fields::store::config_value(&mut conn, principal.org, ALLOW_TILL_AUTH_CONFIG)
            .await?
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"));
    if allowed {
        return Ok(());
    }
    let lookup = TillLookup { id: Some(id.0), ..TillLookup::default() };
    match org_store::find_till(&mut conn, principal.org, &lookup).await? {
        Some(till) if till.admin_type == AdminType::Admin.as_str() => Ok(()),
        _ => Err(ApiError::new(Code::NotAdminUser)),
    }
}

async fn render_till(
    conn: &mut impl Connection,
    principal: &Principal,
    till: &Till,
) -> Result<Value, ApiError> {
    let org = load_org(conn, principal.org).await?;
    let store = org_store::get_store(conn, principal.org, StoreId(till.store_id)).await?;
    let mut out = till_json(till, store.as_ref(), &org);
    out["warnings"] = json!([]);
    Ok(out)
}

/// `GET /v2/organization/till/{tillId}` — one till by id.
#[utoipa::path(get, path = "/v2/organization/till/{tillId}", tag = "org",
    params(("tillId" = i64, Path, description = "Till id")),
    responses((status = 200, description = "The till"), (status = 404, description = "No such till")))]
pub async fn v2_till_by_id(
    State(state): State<AppState>,
    principal: Principal,
    Path(till_id): Path<i64>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let mut conn = state.db.read().await?;
    let lookup = TillLookup { id: Some(till_id), ..Default::default() };
    let till = org_store::find_till(&mut conn, principal.org, &lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Till {till_id} not found")))?;
    Ok(axum::Json(render_till(&mut conn, &principal, &till).await?).into_response())
}

/// Query of `GET /v2/organization/till`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct TillQuery {
    code: Option<String>,
    till_id: Option<i64>,
    name: Option<String>,
}

/// `GET /v2/organization/till` — one till by `code`, `tillId` or `name` (one is required).
#[utoipa::path(get, path = "/v2/organization/till", tag = "org", params(TillQuery),
    responses((status = 200, description = "The till"), (status = 404, description = "No such till")))]
pub async fn v2_till_lookup(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<TillQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    if q.code.is_none() && q.till_id.is_none() && q.name.is_none() {
        return Err(ApiError::invalid("one of code, tillId or name is required"));
    }
    let mut conn = state.db.read().await?;
    let lookup = TillLookup { id: q.till_id, code: q.code, name: q.name };
    let till = org_store::find_till(&mut conn, principal.org, &lookup)
        .await?
        .ok_or_else(|| ApiError::not_found("Till not found"))?;
    Ok(axum::Json(render_till(&mut conn, &principal, &till).await?).into_response())
}

/// Query of the active-tills list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct TillListQuery {
    store_id: Option<i64>,
    is_active: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /v2/organization/tills` (also `GET /v2/orgEntity/till`) — tills, active ones by default.
#[utoipa::path(get, path = "/v2/organization/tills", tag = "org", params(TillListQuery),
    responses((status = 200, description = "Paged tills")))]
pub async fn v2_list_tills(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<TillListQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let (limit, offset) = page(q.limit, q.offset, V2_LIMIT_DEFAULT, V2_LIMIT_MAX)?;
    let active = parse_bool("isActive", q.is_active.as_deref())?.unwrap_or(true);
    let mut conn = state.db.read().await?;
    let org = load_org(&mut conn, principal.org).await?;
    let (tills, total) = org_store::list_tills(
        &mut conn,
        principal.org,
        q.store_id.map(StoreId),
        Some(active),
        limit,
        offset,
    )
    .await?;
    let mut stores: HashMap<i64, Option<Store>> = HashMap::new();
    let mut data = Vec::with_capacity(tills.len());
    for till in &tills {
        let store = cached_store(&mut conn, principal.org, &mut stores, till.store_id).await?;
        data.push(till_json(till, store.as_ref(), &org));
    }
    Ok(v2_list(data, limit, offset, total))
}

// ---------------------------------------------------------------- Perks admin API

/// `GET /x/perks/v1/org` — the admin token's org with its settings (Perks extension; admin token only).
#[utoipa::path(get, path = "/x/perks/v1/org", tag = "admin",
    responses((status = 200, description = "The org"), (status = 403, description = "Not an admin token")))]
pub async fn admin_org(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require_admin()?;
    let org = service::get_org(&state.db, principal.org).await?;
    let mut out = org_json(&org);
    out["fiscalYearStart"] = json!(org.fiscal_year_start);
    Ok(axum::Json(json!({"data": out, "warnings": [], "errors": []})).into_response())
}

// ---------------------------------------------------------------- v2 organization

/// Query of `GET /v2/organization/hierarchy`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct HierarchyQuery {
    fetch_siblings: Option<String>,
    fetch_custom_fields: Option<String>,
}

/// `GET /v2/organization/hierarchy` — the org, its parent, children and (optionally) siblings.
#[utoipa::path(get, path = "/v2/organization/hierarchy", tag = "org", params(HierarchyQuery),
    responses((status = 200, description = "The org hierarchy")))]
pub async fn v2_hierarchy(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<HierarchyQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let fetch_siblings = parse_bool("fetchSiblings", q.fetch_siblings.as_deref())?.unwrap_or(false);
    let fetch_custom_fields =
        parse_bool("fetchCustomFields", q.fetch_custom_fields.as_deref())?.unwrap_or(false);
    let view = service::hierarchy(&state.db, principal.org, fetch_siblings).await?;
    let mut out = org_json(&view.org);
    out["parentOrganization"] = view.parent.as_ref().map(org_json).unwrap_or(Value::Null);
    out["childOrganizations"] = Value::Array(view.children.iter().map(org_json).collect());
    out["siblingOrganizations"] = Value::Array(view.siblings.iter().map(org_json).collect());
    if fetch_custom_fields {
        let values =
            crate::fields::service::org_custom_field_values(&state.db, principal.org).await?;
        out["customFields"] = Value::Array(
            values.iter().map(|v| json!({"name": v.name, "value": v.value})).collect(),
        );
    }
    out["warnings"] = json!([]);
    Ok(axum::Json(out).into_response())
}

/// Query of `GET /v2/locations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct LocationsQuery {
    #[serde(rename = "type")]
    location_type: Option<String>,
    entity_codes: Option<String>,
    q: Option<String>,
    include_children: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /v2/locations` — stores by codes or by prefix search on name, code or external id.
#[utoipa::path(get, path = "/v2/locations", tag = "org", params(LocationsQuery),
    responses((status = 200, description = "Paged stores")))]
pub async fn v2_locations(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<LocationsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    if let Some(kind) = q.location_type.as_deref()
        && !kind.eq_ignore_ascii_case("STORE")
    {
        return Err(ApiError::invalid("type must be STORE"));
    }
    let (limit, offset) = page(q.limit, q.offset, V2_LIMIT_DEFAULT, V2_LIMIT_MAX)?;
    let mut filter = StoreFilter::default();
    if let Some(codes) = q.entity_codes.as_deref().filter(|c| !c.trim().is_empty()) {
        filter.codes = codes
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .take(V2_LIMIT_MAX as usize)
            .collect();
    } else if let Some(search) = q.q.as_deref().filter(|s| !s.trim().is_empty()) {
        for term in search.split(',') {
            let (field, value) = term.split_once(':').ok_or_else(|| {
                ApiError::invalid("q must look like name:MUM,code:STR,external_id:X")
            })?;
            let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            match field.trim() {
                "name" => filter.name_prefix = value,
                "code" => filter.code_prefix = value,
                "external_id" => filter.external_id_prefix = value,
                other => {
                    return Err(ApiError::invalid(format!(
                        "q field '{other}' is not name, code or external_id"
                    )));
                }
            }
        }
    }
    let include_children =
        parse_bool("includeChildren", q.include_children.as_deref())?.unwrap_or(false);
    let mut conn = state.db.read().await?;
    let org = load_org(&mut conn, principal.org).await?;
    let (stores, total) =
        org_store::list_stores(&mut conn, principal.org, &filter, limit, offset).await?;
    let mut data = Vec::with_capacity(stores.len());
    for store in &stores {
        let mut item = store_json(store, &org);
        if include_children {
            let (tills, _) = org_store::list_tills(
                &mut conn,
                principal.org,
                Some(StoreId(store.id)),
                None,
                V2_LIMIT_MAX,
                0,
            )
            .await?;
            item["children"] =
                Value::Array(tills.iter().map(|t| till_json(t, Some(store), &org)).collect());
        }
        data.push(item);
    }
    Ok(v2_list(data, limit, offset, total))
}
