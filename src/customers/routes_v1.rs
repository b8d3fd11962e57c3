//! v1.1 customer handlers: add, update, get, search, update_identity, notes, preferences,
//! subscriptions and interactions, in JSON or XML.
//!
//! Batch bodies are read as JSON values rather than typed DTOs: the XML form turns every leaf
//! into a string and a single repeated element into an object, so each item is read with the
//! small helpers below ([`one_or_many`], [`text`], [`name_values`]) that accept both shapes.
//! Every item is parsed and written on its own (its own transaction), so good items are stored
//! and bad ones are not, and each answer item carries its `item_status`.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use chrono::NaiveDateTime;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::model::{
    CommChannel, CustomerError, CustomerId, CustomerInput, CustomerUpdate, Identifier,
    IdentifierType, LoyaltyType, PROFILE_ITEMS_MAX, ProfileInput, SourceAccount, parse_name,
};
use super::routes_v2::{country_code, search_targets};
use super::service::{self, CustomerView, OnExisting};
use super::store as customer_store;
use super::subscriptions::{
    self, Channel, NOTES_PER_ITEM_MAX, NoteInput, NoteRow, Priority, SubscriptionChange,
    SubscriptionType,
};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::db::Connection;
use crate::error::{ApiError, Code};
use crate::http::envelope::{V1Reply, item_status};
use crate::http::extract::{Query, V1Body};
use crate::org::model::{OrgId, StoreId};
use crate::org::store as org_store;

/// Most items of one v1.1 batch, and most values of one `customer/get` identifier list.
pub const BATCH_MAX: usize = 100;
/// Default and largest page of `customer/search`.
pub const SEARCH_LIMIT_DEFAULT: i64 = 10;
pub const SEARCH_LIMIT_MAX: i64 = 100;
/// Default and largest page of `customer/interaction`.
pub const INTERACTION_LIMIT_DEFAULT: i64 = 50;
pub const INTERACTION_LIMIT_MAX: i64 = 100;
/// v1.1 date-time format (server time zone, UTC).
const V1_TIME: &str = "%Y-%m-%d %H:%M:%S";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.1/customer/add", post(add))
        .route("/v1.1/customer/update", post(update).put(update))
        .route("/v1.1/customer/get", get(get_customers))
        .route("/v1.1/customer/search", get(search))
        .route("/v1.1/customer/update_identity", post(update_identity))
        .route("/v1.1/customer/notes", get(get_notes).post(save_notes))
        .route("/v1.1/customer/preferences", get(get_preferences).post(save_preferences))
        .route("/v1.1/customer/subscriptions", get(get_subscriptions).post(save_subscriptions))
        .route("/v1.1/customer/interaction", get(interaction))
        .route("/v1.1/customer/referrals", get(get_referrals))
}

#[derive(OpenApi)]
#[openapi(paths(
    add,
    update,
    get_customers,
    search,
    update_identity,
    save_notes,
    get_notes,
    save_preferences,
    get_preferences,
    save_subscriptions,
    get_subscriptions,
    interaction,
    get_referrals,
))]
pub struct ApiDoc;

// ---------------------------------------------------------------- reading v1.1 bodies

/// A v1.1 batch body, `{"root": {"<entity>": [ ... ]}}` (JSON, or the same shape in XML).
#[derive(Debug, Deserialize, ToSchema)]
pub struct V1BatchBody {
    #[schema(value_type = Object)]
    pub root: Value,
}

/// A list, a single element (XML with one repeated element), or nothing.
pub(crate) fn one_or_many(value: Option<&Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(other) => vec![other.clone()],
    }
}

/// A leaf as text (strings, numbers and booleans alike); empty means absent.
pub(crate) fn text(item: &Value, key: &str) -> Option<String> {
    match item.get(key)? {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A leaf read as a boolean (`true`, `"true"`, `1`).
pub(crate) fn flag(item: &Value, key: &str) -> bool {
    text(item, key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
}

/// The items of a batch: `root.<entity>` (one or many); without it, a flat item (`root` itself,
/// or the body itself) when it carries one of `flat_keys`.
pub(crate) fn batch_items(
    body: &Value,
    entity: &str,
    flat_keys: &[&str],
) -> Result<Vec<Value>, ApiError> {
    let root = body.get("root").unwrap_or(body);
    let mut items = one_or_many(root.get(entity));
    if items.is_empty() && flat_keys.iter().any(|k| root.get(k).is_some()) {
        items.push(root.clone());
    }
    if items.is_empty() {
        return Err(ApiError::invalid(format!("root.{entity} must list at least one item")));
    }
    if items.len() > BATCH_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("At most {BATCH_MAX} items per request"),
        ));
    }
    Ok(items)
}

/// `<key>.field[]{name, value}` as pairs (the v1.1 custom/extended field wrapper).
pub(crate) fn name_values(
    item: &Value,
    key: &str,
) -> Result<Option<Vec<(String, String)>>, ApiError> {
    let Some(wrapper) = item.get(key).filter(|v| !v.is_null()) else { return Ok(None) };
    let fields = one_or_many(wrapper.get("field"));
    if fields.len() > PROFILE_ITEMS_MAX * 2 {
        return Err(ApiError::invalid(format!("{key} lists too many fields")));
    }
    fields
        .iter()
        .map(|f| {
            let name = text(f, "name")
                .ok_or_else(|| ApiError::invalid(format!("{key}.field[].name is required")))?;
            Ok((name, text(f, "value").unwrap_or_default()))
        })
        .collect::<Result<Vec<_>, ApiError>>()
        .map(Some)
}

pub(crate) fn to_map(pairs: Vec<(String, String)>) -> Map<String, Value> {
    pairs.into_iter().map(|(n, v)| (n, Value::String(v))).collect()
}

pub(crate) fn field_list(map: &Map<String, Value>) -> Value {
    let fields: Vec<Value> = map
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            json!({"name": name, "value": value})
        })
        .collect();
    json!({ "field": fields })
}

/// `commChannels` as a list, a single object, or `{commChannel: one or many}` (XML).
fn comm_channels(item: &Value) -> Result<Option<Vec<CommChannel>>, ApiError> {
    let Some(raw) = item.get("commChannels").filter(|v| !v.is_null()) else { return Ok(None) };
    let list = match raw.get("commChannel") {
        Some(inner) => one_or_many(Some(inner)),
        None => one_or_many(Some(raw)),
    };
    if list.len() > PROFILE_ITEMS_MAX {
        return Err(ApiError::invalid(format!(
            "commChannels takes at most {PROFILE_ITEMS_MAX} entries"
        )));
    }
    let channels = list
        .iter()
        .map(|c| {
            Ok(CommChannel {
                channel_type: text(c, "type")
                    .ok_or_else(|| ApiError::invalid("commChannels[].type is required"))?,
                value: text(c, "value").unwrap_or_default(),
                primary: flag(c, "primary"),
                verified: flag(c, "verified"),
                meta: c.get("meta").filter(|m| m.is_object()).cloned(),
                attributes: None,
                last_viewed_date: None,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Some(channels))
}

/// `YYYY-MM-DD HH:MM:SS` (or a bare date), read in the server time zone (UTC).
fn parse_v1_time(field: &str, value: &str) -> Result<i64, ApiError> {
    NaiveDateTime::parse_from_str(value, V1_TIME)
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .map(|t| t.and_utc().timestamp_millis())
        .map_err(|_| ApiError::invalid(format!("{field} must be YYYY-MM-DD HH:MM:SS")))
}

pub(crate) fn v1_time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format(V1_TIME).to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------- finding customers

/// How a v1.1 request names a customer.
#[derive(Clone, Debug)]
pub(crate) enum CustomerKey {
    Id(i64),
    Identifier(Identifier),
}

/// v1.1 reads and writes look customers up in the INSTORE source account.
fn v1_account() -> SourceAccount {
    SourceAccount::instore()
}

/// The key of a query or an item: `id`/`user_id`, then mobile, email, external id, card number.
pub(crate) fn key_from(
    get: impl Fn(&str) -> Option<String>,
    country: Option<&str>,
) -> Result<CustomerKey, ApiError> {
    for name in ["id", "user_id"] {
        if let Some(v) = get(name) {
            let id = v.parse::<i64>().map_err(|_| {
                ApiError::with_message(
                    Code::CustomerNotFoundByIdentifier,
                    format!("Invalid id {v}"),
                )
            })?;
            return Ok(CustomerKey::Id(id));
        }
    }
    for kind in [
        IdentifierType::Mobile,
        IdentifierType::Email,
        IdentifierType::ExternalId,
        IdentifierType::CardNumber,
    ] {
        if let Some(v) = get(kind.v1_name()) {
            return Ok(CustomerKey::Identifier(Identifier::parse(kind, &v, country)?));
        }
    }
    Err(ApiError::new(Code::NoIdentifierGiven))
}

pub(crate) fn item_key(item: &Value, country: Option<&str>) -> Result<CustomerKey, ApiError> {
    key_from(|k| text(item, k), country)
}

/// The customer a key names in the caller's org: 1011 for ids and cards, 1012 for mobile,
/// email and external id. Another org's customer is not found, like an unknown one.
pub(crate) async fn find(
    conn: &mut impl Connection,
    org: OrgId,
    key: &CustomerKey,
) -> Result<CustomerView, ApiError> {
    let (found, not_found) = match key {
        CustomerKey::Id(id) => {
            (Some(CustomerId(*id)), ApiError::new(Code::CustomerNotFoundByIdentifier))
        }
        CustomerKey::Identifier(identifier) => {
            let code = if identifier.kind == IdentifierType::CardNumber {
                Code::CustomerNotFoundByIdentifier
            } else {
                Code::CustomerNotFoundByMobileEmailExternalId
            };
            match service::resolve(conn, org, &v1_account(), std::slice::from_ref(identifier)).await
            {
                Ok(id) => (Some(id), ApiError::new(code)),
                Err(CustomerError::NotFound) => (None, ApiError::new(code)),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let Some(id) = found else { return Err(not_found) };
    service::load(conn, org, id).await?.ok_or(not_found)
}

/// Turns a service's "not found" into the v1.1 code.
fn v1_error(e: CustomerError) -> ApiError {
    match e {
        CustomerError::NotFound => ApiError::new(Code::CustomerNotFoundByMobileEmailExternalId),
        other => other.into(),
    }
}

/// The source account v1.1 writes go to: INSTORE, or the customer's first profile without one.
fn write_account(view: &CustomerView) -> SourceAccount {
    let instore = v1_account();
    if view.profiles.iter().any(|p| p.source == instore.source.as_str()) {
        return instore;
    }
    view.profiles
        .first()
        .and_then(|p| SourceAccount::parse(Some(&p.source), Some(&p.account_id)).ok())
        .unwrap_or(instore)
}

/// An identifier value for v1.1: INSTORE first, else any source.
fn identifier_of(view: &CustomerView, kind: IdentifierType) -> Option<String> {
    view.identifier(&v1_account(), kind)
        .or_else(|| {
            view.identifiers.iter().find(|i| i.kind == kind.as_str()).map(|i| i.value.as_str())
        })
        .map(str::to_string)
}

/// `user_id`, `mobile`, `email`, `external_id` of a customer.
pub(crate) fn identity(view: &CustomerView) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("user_id".into(), json!(view.row.id));
    out.insert("mobile".into(), json!(identifier_of(view, IdentifierType::Mobile)));
    out.insert("email".into(), json!(identifier_of(view, IdentifierType::Email)));
    out.insert("external_id".into(), json!(identifier_of(view, IdentifierType::ExternalId)));
    out
}

/// The identifiers an item was sent with, echoed on failure.
pub(crate) fn echo(item: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["user_id", "id", "mobile", "email", "external_id"] {
        if let Some(v) = text(item, key) {
            out.insert(key.into(), Value::String(v));
        }
    }
    out
}

pub(crate) fn ok_item(mut fields: Map<String, Value>, code: u32, message: &str) -> Value {
    fields.insert("item_status".into(), item_status(true, code, message));
    Value::Object(fields)
}

pub(crate) fn failed_item(mut fields: Map<String, Value>, error: &ApiError) -> Value {
    fields.insert("item_status".into(), item_status(false, error.code.info().code, &error.message));
    Value::Object(fields)
}

/// Renders one item's outcome: its fields with a success status, or the echo with the error.
fn outcome(item: &Value, result: Result<Value, ApiError>) -> Value {
    result.unwrap_or_else(|e| failed_item(echo(item), &e))
}

// ---------------------------------------------------------------- add

fn parse_add(item: &Value, country: Option<&str>) -> Result<CustomerInput, ApiError> {
    let mut identifiers = Vec::new();
    for kind in [IdentifierType::Mobile, IdentifierType::Email, IdentifierType::ExternalId] {
        if let Some(v) = text(item, kind.v1_name()) {
            identifiers.push(Identifier::parse(kind, &v, country)?);
        }
    }
    if identifiers.is_empty() {
        return Err(CustomerError::NoPrimaryIdentifier.into());
    }
    let account = SourceAccount::parse(
        text(item, "source").as_deref(),
        text(item, "accountId").or_else(|| text(item, "account_id")).as_deref(),
    )?;
    let loyalty_type = text(item, "type").map(|t| LoyaltyType::parse(&t)).transpose()?;
    let registered_at =
        text(item, "registered_on").map(|t| parse_v1_time("registered_on", &t)).transpose()?;
    let fields = name_values(item, "custom_fields")?.map(to_map).unwrap_or_default();
    let extended = name_values(item, "extended_fields")?.map(to_map).unwrap_or_default();
    Ok(CustomerInput {
        profiles: vec![ProfileInput {
            account,
            first_name: parse_name("firstname", text(item, "firstname"))?,
            last_name: parse_name("lastname", text(item, "lastname"))?,
            identifiers,
            fields,
            comm_channels: comm_channels(item)?,
        }],
        loyalty_type,
        extended_fields: extended,
        registered_at,
        enrollments: Vec::new(),
        referral_code: None,
        enroll_in_all_programs: false,
    })
}

async fn add_one(
    state: &AppState,
    principal: &Principal,
    country: Option<&str>,
    item: &Value,
) -> Result<Value, ApiError> {
    let input = parse_add(item, country)?;
    let outcome =
        service::register(&state.db, &state.programs, principal, &input, OnExisting::Reject)
            .await?;
    let mut conn = state.db.read().await?;
    let view = service::load(&mut conn, principal.org, outcome.customer)
        .await?
        .ok_or_else(|| ApiError::new(Code::CustomerNotFoundByIdentifier))?;
    let mut fields = identity(&view);
    fields.insert("firstname".into(), json!(view.row.first_name));
    fields.insert("lastname".into(), json!(view.row.last_name));
    fields.insert("side_effects".into(), json!({"effect": []}));
    Ok(ok_item(fields, 1000, "Customer registered successfully"))
}

/// `POST /v1.1/customer/add` — registers up to 100 customers, each on its own. An identifier
/// already registered in the same source account fails the item (1014; 1016 for an email).
#[utoipa::path(post, path = "/v1.1/customer/add", tag = "customers-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All registered"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 1001/1002/1003 invalid, 1007 no identifier, 1014 registered, 1016 email taken"),
        (status = 400, description = "1060 more than 100 items")))]
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let country = country_code(&headers);
    let items = batch_items(&body, "customer", &["mobile", "email", "external_id"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(outcome(item, add_one(&state, &principal, country.as_deref(), item).await));
    }
    Ok(V1Reply::batch("customers", "customer", out))
}

// ---------------------------------------------------------------- update

async fn update_one(
    state: &AppState,
    principal: &Principal,
    country: Option<&str>,
    item: &Value,
) -> Result<Value, ApiError> {
    let key = item_key(item, country)?;
    let update = CustomerUpdate {
        first_name: parse_name("firstname", text(item, "firstname"))?,
        last_name: parse_name("lastname", text(item, "lastname"))?,
        loyalty_type: text(item, "type").map(|t| LoyaltyType::parse(&t)).transpose()?,
        fields: name_values(item, "custom_fields")?.map(to_map),
        extended_fields: name_values(item, "extended_fields")?.map(to_map),
        comm_channels: comm_channels(item)?,
        enrollments: Vec::new(),
    };
    let mut conn = state.db.read().await?;
    let view = find(&mut conn, principal.org, &key).await?;
    drop(conn);
    let account = write_account(&view);
    service::update_customer(
        &state.db,
        &state.programs,
        principal,
        CustomerId(view.row.id),
        &account,
        &update,
    )
    .await
    .map_err(v1_error)?;
    let mut conn = state.db.read().await?;
    let view = find(&mut conn, principal.org, &CustomerKey::Id(view.row.id)).await?;
    let mut fields = identity(&view);
    fields.insert("firstname".into(), json!(view.row.first_name));
    fields.insert("lastname".into(), json!(view.row.last_name));
    fields.insert("type".into(), json!(view.row.loyalty_type.to_ascii_uppercase()));
    Ok(ok_item(fields, 1000, "Customer updated successfully"))
}

/// `POST /v1.1/customer/update` (also `PUT`) — updates names, type (upgrade only) and fields of
/// customers found by `mobile`, `email`, `external_id` or `id`; identifiers never change here.
#[utoipa::path(post, path = "/v1.1/customer/update", tag = "customers-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All updated"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 1011/1012 not found, 1015 no identifier")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let country = country_code(&headers);
    let items = batch_items(&body, "customer", &["mobile", "email", "external_id", "id"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(outcome(item, update_one(&state, &principal, country.as_deref(), item).await));
    }
    Ok(V1Reply::batch("customers", "customer", out))
}

// ---------------------------------------------------------------- get

/// The identifier query of v1.1 reads: one of these names a customer.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct IdentifierQuery {
    id: Option<String>,
    user_id: Option<String>,
    mobile: Option<String>,
    email: Option<String>,
    external_id: Option<String>,
    card_number: Option<String>,
}

impl IdentifierQuery {
    fn value(&self, name: &str) -> Option<String> {
        let v = match name {
            "id" => &self.id,
            "user_id" => &self.user_id,
            "mobile" => &self.mobile,
            "email" => &self.email,
            "external_id" => &self.external_id,
            "card_number" => &self.card_number,
            _ => &None,
        };
        v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// The first identifier given, with its name.
    fn first(&self) -> Option<(&'static str, String)> {
        ["id", "user_id", "mobile", "email", "external_id", "card_number"]
            .into_iter()
            .find_map(|name| self.value(name).map(|v| (name, v)))
    }

    fn key(&self, country: Option<&str>) -> Result<CustomerKey, ApiError> {
        key_from(|k| self.value(k), country)
    }

    fn echo(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some((name, value)) = self.first() {
            out.insert(name.into(), Value::String(value));
        }
        out
    }
}

/// The customer's 10 most recent bills, as v1.1 `customer/get` lists them.
async fn recent_transactions(
    conn: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<Value, ApiError> {
    use crate::points::model::Fixed;
    let (rows, _) =
        crate::transactions::store::of_customer(conn, org, customer, &[], 0, 10).await?;
    let mut list = Vec::with_capacity(rows.len());
    for txn in rows {
        let (tz, store_code) =
            crate::transactions::service::store_locale(conn, org, StoreId(txn.store_id)).await?;
        list.push(json!({
            "id": txn.id,
            "number": txn.bill_number,
            "type": txn.kind,
            "amount": Fixed(txn.amount).to_f64(),
            "billing_time": crate::transactions::time::v1_time(txn.billing_at, tz),
            "store": store_code,
            "points": {"issued": Fixed(txn.points.max(0)).to_f64(), "redeemed": 0.0,
                "returned": Fixed((-txn.points).max(0)).to_f64()},
        }));
    }
    Ok(json!({"transaction": list}))
}

async fn customer_details(
    conn: &mut impl Connection,
    org: OrgId,
    view: &CustomerView,
) -> Result<Value, ApiError> {
    let mut fields = identity(view);
    fields.insert("firstname".into(), json!(view.row.first_name));
    fields.insert("lastname".into(), json!(view.row.last_name));
    fields.insert("type".into(), json!(view.row.loyalty_type.to_ascii_uppercase()));
    fields.insert("registered_on".into(), json!(v1_time(view.row.registered_at)));
    let store = match view.row.registered_store_id {
        Some(id) => org_store::get_store(conn, org, StoreId(id))
            .await?
            .map(|s| json!({"code": s.code, "name": s.name})),
        None => None,
    };
    fields.insert(
        "registered_store".into(),
        store.unwrap_or_else(|| json!({"code": "", "name": ""})),
    );
    let standings = crate::points::service::standings(conn, org, view.row.id).await?;
    let standing = standings.first();
    let points = |f: fn(&crate::points::service::Standing) -> crate::points::model::Fixed| {
        json!(standing.map(f).unwrap_or_default().to_f64())
    };
    fields.insert("loyalty_points".into(), points(|s| s.current));
    fields.insert("lifetime_points".into(), points(|s| s.lifetime_points));
    fields.insert("lifetime_purchases".into(), points(|s| s.lifetime_purchases));
    fields.insert(
        "current_slab".into(),
        json!(standing.map(|s| s.tier_name.clone()).unwrap_or_default()),
    );
    fields.insert(
        "tier_expiry_date".into(),
        json!(standing.and_then(|s| s.tier_expires_at).map(v1_time).unwrap_or_default()),
    );
    let account = write_account(view);
    let profile_fields: Map<String, Value> = view
        .profiles
        .iter()
        .find(|p| p.is_account(&account))
        .and_then(|p| serde_json::from_str(&p.fields).ok())
        .unwrap_or_default();
    let extended: Map<String, Value> =
        serde_json::from_str(&view.row.extended_fields).unwrap_or_default();
    fields.insert("custom_fields".into(), field_list(&profile_fields));
    fields.insert("extended_fields".into(), field_list(&extended));
    fields.insert("transactions".into(), recent_transactions(conn, org, view.row.id).await?);
    let coupons = crate::coupons::routes_v1::active_coupons_v1(conn, org, view.row.id).await?;
    fields.insert("coupons".into(), json!({"coupon": coupons}));
    Ok(ok_item(fields, 1000, "Customer successfully retrieved"))
}

/// `GET /v1.1/customer/get` — customers by `mobile`, `email`, `external_id`, `id` or
/// `card_number`, each a comma-separated list of up to 100 values; one item per value.
#[utoipa::path(get, path = "/v1.1/customer/get", tag = "customers-v1.1", params(IdentifierQuery),
    responses((status = 200, description = "All found"), (status = 201, description = "Some not found"),
        (status = 500, description = "None found: 1011/1012"), (status = 400, description = "1015 no identifier, 1060 more than 100 values")))]
pub async fn get_customers(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IdentifierQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let country = country_code(&headers);
    let Some((name, list)) = q.first() else {
        return Err(ApiError::new(Code::NoIdentifierGiven));
    };
    let values: Vec<&str> = list.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
    if values.len() > BATCH_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("At most {BATCH_MAX} values per request"),
        ));
    }
    let mut conn = state.db.read().await?;
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let mut echo = Map::new();
        echo.insert(name.into(), Value::String(value.to_string()));
        let result = async {
            let key = key_from(|k| (k == name).then(|| value.to_string()), country.as_deref())?;
            let view = find(&mut conn, principal.org, &key).await?;
            let mut item = customer_details(&mut conn, principal.org, &view).await?;
            item["points_summaries"] = crate::loyalty::embeds::v1_points_summaries(
                &mut conn,
                &state.programs,
                principal.org,
                view.row.id,
            )
            .await?;
            Ok::<Value, ApiError>(item)
        }
        .await;
        out.push(result.unwrap_or_else(|e| failed_item(echo, &e)));
    }
    Ok(V1Reply::batch("customers", "customer", out))
}

// ---------------------------------------------------------------- search

/// Query of `GET /v1.1/customer/search`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchQuery {
    q: Option<String>,
    start: Option<i64>,
    limit: Option<i64>,
}

/// `GET /v1.1/customer/search` — prefix search over name, mobile, email and external id.
#[utoipa::path(get, path = "/v1.1/customer/search", tag = "customers-v1.1", params(SearchQuery),
    responses((status = 200, description = "response.customer{count, results.item[]}"),
        (status = 400, description = "Bad q, start or limit")))]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<SearchQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Read)?;
    let text = q.q.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() || text.chars().count() > 100 {
        return Err(ApiError::invalid("q must be 1 to 100 characters"));
    }
    let limit = q.limit.unwrap_or(SEARCH_LIMIT_DEFAULT);
    let start = q.start.unwrap_or(0);
    if !(1..=SEARCH_LIMIT_MAX).contains(&limit) || start < 0 {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {SEARCH_LIMIT_MAX} and start not negative"
        )));
    }
    let mut conn = state.db.read().await?;
    let (ids, total) =
        customer_store::search(&mut conn, principal.org, &search_targets(text), limit, start)
            .await?;
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(view) = service::load(&mut conn, principal.org, id).await? {
            let mut fields = identity(&view);
            fields.insert("firstname".into(), json!(view.row.first_name));
            fields.insert("lastname".into(), json!(view.row.last_name));
            items.push(Value::Object(fields));
        }
    }
    V1Reply::ok(
        "customer",
        json!({"count": total, "start": start, "limit": limit, "results": {"item": items}}),
    )
}

// ---------------------------------------------------------------- update_identity

async fn update_identity_one(
    state: &AppState,
    principal: &Principal,
    country: Option<&str>,
    item: &Value,
) -> Result<Value, ApiError> {
    let name = text(item, "identifier").ok_or_else(|| ApiError::new(Code::NoIdentifierGiven))?;
    let kind = IdentifierType::parse(&name)
        .filter(|k| k.is_primary_kind())
        .ok_or_else(|| ApiError::invalid("identifier must be mobile, email or external_id"))?;
    let old_raw =
        text(item, "old_value").ok_or_else(|| ApiError::invalid("old_value is required"))?;
    let new_raw =
        text(item, "new_value").ok_or_else(|| ApiError::invalid("new_value is required"))?;
    let old = Identifier::parse(kind, &old_raw, country)
        .map_err(|_| ApiError::new(Code::OldValueInvalid))?;
    let new = Identifier::parse(kind, &new_raw, country)?;
    let taken = || {
        ApiError::new(match kind {
            IdentifierType::Email => Code::NewEmailExists,
            IdentifierType::ExternalId => Code::NewExternalIdExists,
            _ => Code::NewMobileExists,
        })
    };
    let account = v1_account();
    let mut conn = state.db.read().await?;
    let customer = customer_store::find_owner(&mut conn, principal.org, Some(&account), &old)
        .await?
        .ok_or_else(|| ApiError::new(Code::OldValueInvalid))?;
    if customer_store::find_owner(&mut conn, principal.org, Some(&account), &new).await?.is_some() {
        return Err(taken());
    }
    drop(conn);
    let result = service::change_identifiers(
        &state.db,
        principal,
        customer,
        &account,
        std::slice::from_ref(&new),
        std::slice::from_ref(&old),
    )
    .await;
    match result {
        Ok(_) => {}
        Err(CustomerError::EmailTaken | CustomerError::IdentifierTaken(_)) => return Err(taken()),
        Err(e) => return Err(v1_error(e)),
    }
    let mut fields = Map::new();
    fields.insert("identifier".into(), json!(kind.v1_name()));
    fields.insert("old_value".into(), json!(old.value));
    fields.insert("new_value".into(), json!(new.value));
    fields.insert("updated".into(), json!(true));
    Ok(ok_item(fields, 1040, "Identifier changed"))
}

/// `POST /v1.1/customer/update_identity` — changes a mobile, email or external id of an INSTORE
/// profile (applied at once: Perks has no approval workflow yet).
#[utoipa::path(post, path = "/v1.1/customer/update_identity", tag = "customers-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All changed (1040)"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 9002/9003/9005 new value exists, 9012 old value invalid")))]
pub async fn update_identity(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let country = country_code(&headers);
    let items = batch_items(&body, "customer", &["identifier"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let result = update_identity_one(&state, &principal, country.as_deref(), item).await;
        out.push(result.unwrap_or_else(|e| {
            let mut echo = Map::new();
            for key in ["identifier", "old_value", "new_value"] {
                echo.insert(key.into(), json!(text(item, key)));
            }
            echo.insert("updated".into(), json!(false));
            failed_item(echo, &e)
        }));
    }
    Ok(V1Reply::batch("customers", "customer", out))
}

// ---------------------------------------------------------------- notes

fn note_json(note: &NoteRow) -> Value {
    json!({"id": note.id, "date": v1_time(note.noted_at), "description": note.description})
}

fn parse_notes(item: &Value) -> Result<Vec<NoteInput>, ApiError> {
    let mut raw = one_or_many(item.get("notes").and_then(|n| n.get("note")));
    if raw.is_empty() && item.get("description").is_some() {
        raw.push(item.clone());
    }
    if raw.is_empty() || raw.len() > NOTES_PER_ITEM_MAX {
        return Err(ApiError::invalid(format!(
            "notes must list 1 to {NOTES_PER_ITEM_MAX} notes with a description"
        )));
    }
    raw.iter()
        .map(|n| {
            let id = text(n, "id")
                .map(|v| {
                    v.parse::<i64>().map_err(|_| ApiError::invalid("note id must be a number"))
                })
                .transpose()?;
            let date = text(n, "date").map(|d| parse_v1_time("date", &d)).transpose()?;
            Ok(NoteInput::parse(id, date, text(n, "description").as_deref())?)
        })
        .collect()
}

async fn notes_one(
    state: &AppState,
    principal: &Principal,
    country: Option<&str>,
    item: &Value,
) -> Result<Value, ApiError> {
    let key = item_key(item, country)?;
    let inputs = parse_notes(item)?;
    let mut conn = state.db.read().await?;
    let view = find(&mut conn, principal.org, &key).await?;
    drop(conn);
    let saved = subscriptions::save_notes(&state.db, principal, CustomerId(view.row.id), &inputs)
        .await
        .map_err(v1_error)?;
    let mut fields = identity(&view);
    let notes: Vec<Value> = saved.iter().map(note_json).collect();
    fields.insert("notes".into(), json!({ "note": notes }));
    Ok(ok_item(fields, 1000, "Notes added/updated successfully"))
}

/// `POST /v1.1/customer/notes` — adds notes (`description` ≤ 255, optional `date`) or updates
/// them (with `id`), per customer item.
#[utoipa::path(post, path = "/v1.1/customer/notes", tag = "customers-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All saved"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 400 bad note, 1011/1012 not found")))]
pub async fn save_notes(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let country = country_code(&headers);
    let items =
        batch_items(&body, "customer", &["mobile", "email", "external_id", "id", "user_id"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(outcome(item, notes_one(&state, &principal, country.as_deref(), item).await));
    }
    Ok(V1Reply::batch("customers", "customer", out))
}

/// Runs a single-customer read: the item, or the echo with its error.
async fn read_one<F>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    q: &IdentifierQuery,
    render: F,
) -> Result<V1Reply, ApiError>
where
    F: AsyncFnOnce(&mut crate::db::Conn, &CustomerView) -> Result<Value, ApiError>,
{
    principal.require(Resource::Customer, Level::Read)?;
    let country = country_code(headers);
    let key = q.key(country.as_deref());
    let mut conn = state.db.read().await?;
    let result = match key {
        Ok(key) => match find(&mut conn, principal.org, &key).await {
            Ok(view) => render(&mut conn, &view).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    Ok(V1Reply::single("customer", result.unwrap_or_else(|e| failed_item(q.echo(), &e))))
}

/// `GET /v1.1/customer/notes` — the customer's notes, newest first (at most 500).
#[utoipa::path(get, path = "/v1.1/customer/notes", tag = "customers-v1.1", params(IdentifierQuery),
    responses((status = 200, description = "response.customer.notes.note[]"),
        (status = 500, description = "1011/1012 not found, 1015 no identifier")))]
pub async fn get_notes(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IdentifierQuery>,
) -> Result<V1Reply, ApiError> {
    let org = principal.org;
    read_one(&state, &principal, &headers, &q, async |conn, view| {
        let notes =
            subscriptions::notes(conn, org, CustomerId(view.row.id), subscriptions::LIST_MAX)
                .await?;
        let mut fields = identity(view);
        let notes: Vec<Value> = notes.iter().map(note_json).collect();
        fields.insert("notes".into(), json!({ "note": notes }));
        Ok(ok_item(fields, 1000, "Notes retrieved successfully"))
    })
    .await
}

/// `GET /v1.1/customer/referrals` — the customer's referral code and the customers who
/// registered with it, newest first (at most 500); `campaign_token` is accepted and not read
/// (Perks has no referral campaigns: one code per customer).
#[utoipa::path(get, path = "/v1.1/customer/referrals", tag = "customers-v1.1", params(IdentifierQuery,
    ("campaign_token" = Option<String>, Query, description = "Accepted, not read")),
    responses((status = 200, description = "response.customer{referral_code, referees.referee[]}"),
        (status = 500, description = "1011/1012 not found, 1015 no identifier")))]
pub async fn get_referrals(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IdentifierQuery>,
) -> Result<V1Reply, ApiError> {
    let org = principal.org;
    read_one(&state, &principal, &headers, &q, async |conn, view| {
        let id = CustomerId(view.row.id);
        let referees = super::referrals::referees(conn, org, id).await?;
        let mut fields = identity(view);
        fields.insert("referral_code".into(), json!(super::referrals::referral_code(id)));
        let referees: Vec<Value> = referees
            .iter()
            .map(|r| json!({"user_id": r.referee_id, "joined_on": v1_time(r.created_at)}))
            .collect();
        fields.insert("invitees".into(), json!({"invitee": []}));
        fields.insert("referees".into(), json!({"referee": referees}));
        fields.insert("incentives".into(), json!({"incentive": []}));
        Ok(ok_item(fields, 1000, "Referral statistics retrieved successfully"))
    })
    .await
}

// ---------------------------------------------------------------- preferences

async fn preferences_one(
    state: &AppState,
    principal: &Principal,
    country: Option<&str>,
    item: &Value,
) -> Result<Value, ApiError> {
    let key = item_key(item, country)?;
    let values = name_values(item, "custom_fields")?
        .ok_or_else(|| ApiError::invalid("custom_fields.field[] is required"))?;
    let mut conn = state.db.read().await?;
    let view = find(&mut conn, principal.org, &key).await?;
    drop(conn);
    let merged =
        subscriptions::set_preferences(&state.db, principal, CustomerId(view.row.id), &values)
            .await
            .map_err(v1_error)?;
    let mut fields = identity(&view);
    fields.insert("custom_fields".into(), field_list(&merged));
    Ok(ok_item(fields, 1000, "Preferences updated successfully"))
}

/// `POST /v1.1/customer/preferences` — merges `custom_fields.field[]{name, value}` into each
/// customer's preferences.
#[utoipa::path(post, path = "/v1.1/customer/preferences", tag = "customers-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All saved"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 400 bad fields, 1011/1012 not found")))]
pub async fn save_preferences(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let country = country_code(&headers);
    let items =
        batch_items(&body, "customer", &["mobile", "email", "external_id", "id", "user_id"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(outcome(
            item,
            preferences_one(&state, &principal, country.as_deref(), item).await,
        ));
    }
    Ok(V1Reply::batch("customers", "customer", out))
}

/// `GET /v1.1/customer/preferences` — the customer's preferences as `custom_fields.field[]`.
#[utoipa::path(get, path = "/v1.1/customer/preferences", tag = "customers-v1.1", params(IdentifierQuery),
    responses((status = 200, description = "response.customer.custom_fields.field[]"),
        (status = 500, description = "1011/1012 not found, 1015 no identifier")))]
pub async fn get_preferences(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IdentifierQuery>,
) -> Result<V1Reply, ApiError> {
    read_one(&state, &principal, &headers, &q, async |_conn, view| {
        let mut fields = identity(view);
        let preferences = subscriptions::parse_preferences(&view.row.preferences);
        fields.insert("custom_fields".into(), field_list(&preferences));
        Ok(ok_item(fields, 1000, "Preferences retrieved successfully"))
    })
    .await
}

// ---------------------------------------------------------------- subscriptions

async fn subscription_one(
    state: &AppState,
    principal: &Principal,
    country: Option<&str>,
    item: &Value,
) -> Result<Value, ApiError> {
    let key = item_key(item, country)?;
    let required = |name: &str| {
        text(item, name).ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    };
    let channel = Channel::parse(&required("channel")?)?;
    let priority = Priority::parse(&required("priority")?)?;
    let kind = SubscriptionType::parse(&required("type")?)?;
    if let Some(scope) = text(item, "scope")
        && !scope.eq_ignore_ascii_case("all")
    {
        return Err(ApiError::invalid("scope must be all"));
    }
    let mut conn = state.db.read().await?;
    let view = find(&mut conn, principal.org, &key).await?;
    drop(conn);
    let change = SubscriptionChange { account: write_account(&view), channel, priority, kind };
    subscriptions::set_subscriptions(
        &state.db,
        principal,
        CustomerId(view.row.id),
        std::slice::from_ref(&change),
        text(item, "reason").as_deref().unwrap_or_default(),
    )
    .await
    .map_err(v1_error)?;
    let mut fields = identity(&view);
    fields.insert("channel".into(), json!(channel.v1_name()));
    fields.insert("priority".into(), json!(priority.as_str()));
    fields.insert("scope".into(), json!("all"));
    fields.insert("type".into(), json!(kind.as_str()));
    Ok(ok_item(fields, 1000, "Subscription updated successfully"))
}

/// `POST /v1.1/customer/subscriptions` — opts customers in or out per channel and priority.
#[utoipa::path(post, path = "/v1.1/customer/subscriptions", tag = "customers-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All updated"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 400 bad channel/priority/type, 1011/1012 not found")))]
pub async fn save_subscriptions(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Customer, Level::Write)?;
    let country = country_code(&headers);
    let items = batch_items(&body, "subscription", &["channel"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let result = subscription_one(&state, &principal, country.as_deref(), item).await;
        out.push(result.unwrap_or_else(|e| {
            let mut echo = echo(item);
            for key in ["channel", "priority", "scope", "type"] {
                if let Some(v) = text(item, key) {
                    echo.insert(key.into(), Value::String(v));
                }
            }
            failed_item(echo, &e)
        }));
    }
    Ok(V1Reply::batch("subscriptions", "subscription", out))
}

/// `GET /v1.1/customer/subscriptions` — status per channel × priority (`OPTIN` when never set).
#[utoipa::path(get, path = "/v1.1/customer/subscriptions", tag = "customers-v1.1", params(IdentifierQuery),
    responses((status = 200, description = "response.customer.subscriptions.subscription[]"),
        (status = 500, description = "1011/1012 not found, 1015 no identifier")))]
pub async fn get_subscriptions(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IdentifierQuery>,
) -> Result<V1Reply, ApiError> {
    let org = principal.org;
    read_one(&state, &principal, &headers, &q, async |conn, view| {
        let account = write_account(view);
        let statuses = subscriptions::subscription_statuses(
            conn,
            org,
            CustomerId(view.row.id),
            std::slice::from_ref(&account),
        )
        .await?;
        let list: Vec<Value> = statuses
            .iter()
            .map(|s| {
                json!({"channel": s.channel.v1_name(), "priority": s.priority.as_str(),
                    "scope": "all", "type": s.kind})
            })
            .collect();
        let mut fields = identity(view);
        fields.insert("subscriptions".into(), json!({ "subscription": list }));
        Ok(ok_item(fields, 1000, "Subscriptions retrieved successfully"))
    })
    .await
}

// ---------------------------------------------------------------- interactions

/// Interaction types of `GET /v1.1/customer/interaction`. `sms`, `email` (transactional),
/// `emailbulk`, `whatsapp` and `zalo` list the customer's messages; the social and survey types
/// have no records in Perks and list nothing.
const INTERACTION_TYPES: [&str; 14] = [
    "sms",
    "email",
    "emailbulk",
    "checkin",
    "like",
    "comment",
    "mention",
    "retweet",
    "tweet",
    "feedback",
    "whatsapp",
    "zalo",
    "line",
    "viber",
];

/// One message as an interaction (one-time codes masked).
fn interaction_json(m: &crate::comms::store::MessageRow) -> Value {
    let time =
        |t: i64| chrono::DateTime::from_timestamp_millis(t).map(|t| t.format(V1_TIME).to_string());
    json!({
        "id": m.id,
        "type": crate::comms::service::interaction_type(m),
        "network": "capillary",
        "to": m.recipient,
        "sender": m.sender,
        "subject": m.subject,
        "message": crate::comms::service::shown_body(m),
        "status": m.status,
        "priority": m.priority,
        "purpose": m.purpose,
        "created_time": time(m.created_at),
        "scheduled_time": m.scheduled_at.and_then(time),
        "sent_time": m.sent_at.and_then(time),
    })
}

/// Query of `GET /v1.1/customer/interaction`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InteractionQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    network: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /v1.1/customer/interaction` — the customer's interactions: the messages sent (or
/// queued) to it, newest first, filtered by `type`; `count` is the number matching.
#[utoipa::path(get, path = "/v1.1/customer/interaction", tag = "customers-v1.1",
    params(IdentifierQuery, InteractionQuery),
    responses((status = 200, description = "response.customer.interactions {count, limit, offset, interaction[]}"),
        (status = 400, description = "Bad type, network, limit or offset"),
        (status = 500, description = "1011/1012 not found")))]
pub async fn interaction(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Query(q): Query<IdentifierQuery>,
    Query(filter): Query<InteractionQuery>,
) -> Result<V1Reply, ApiError> {
    let kind = filter.kind.as_deref().map(|k| k.trim().to_ascii_lowercase());
    if let Some(kind) = kind.as_deref()
        && !INTERACTION_TYPES.contains(&kind)
    {
        return Err(ApiError::invalid(format!(
            "type must be one of {}",
            INTERACTION_TYPES.join(", ")
        )));
    }
    let network = filter.network.as_deref().map(|n| n.trim().to_ascii_lowercase());
    if let Some(network) = network.as_deref()
        && !matches!(network, "facebook" | "twitter" | "foursquare" | "capillary")
    {
        return Err(ApiError::invalid(
            "network must be facebook, twitter, foursquare or capillary",
        ));
    }
    let limit = filter.limit.unwrap_or(INTERACTION_LIMIT_DEFAULT);
    let offset = filter.offset.unwrap_or(0);
    if !(1..=INTERACTION_LIMIT_MAX).contains(&limit) || offset < 0 {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {INTERACTION_LIMIT_MAX} and offset not negative"
        )));
    }
    // Messages are Perks's (the `capillary` network's) interactions.
    let messages = crate::comms::service::interaction_filter(kind.as_deref())
        .filter(|_| network.as_deref().is_none_or(|n| n == "capillary"));
    let org = principal.org;
    read_one(&state, &principal, &headers, &q, async |conn, view| {
        let (rows, count) = match messages {
            Some(filter) => {
                crate::comms::service::customer_messages(
                    conn,
                    org,
                    CustomerId(view.row.id),
                    &filter,
                    limit,
                    offset,
                )
                .await?
            }
            None => (Vec::new(), 0),
        };
        let list: Vec<Value> = rows.iter().map(interaction_json).collect();
        let mut fields = identity(view);
        fields.insert(
            "interactions".into(),
            json!({"count": count, "limit": limit, "offset": offset, "interaction": list}),
        );
        Ok(ok_item(fields, 1000, "Interactions retrieved successfully"))
    })
    .await
}
