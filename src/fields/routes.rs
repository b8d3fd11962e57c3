//! Fields API handlers and their wire shapes: org configs (v1.1 and v2), custom fields and their
//! values, extended fields, and the org's sources.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, TimeZone};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::model::{
    CONFIG_VALUE_MAX, ConfigKey, CustomDataType, CustomField, CustomFieldScope, CustomFieldType,
    EntityFieldValue, ExtendedEntityType, ExtendedField, NewConfig, NewCustomField,
    NewExtendedField, OrgConfig, OrgEntityKind, REGEX_MAX, SOURCES, parse_config_scope,
    parse_custom_field_name, parse_label,
};
use super::service::{
    self, CONFIG_BATCH_MAX, CONFIG_KEYS_PER_QUERY_MAX, CUSTOM_FIELD_BATCH_MAX, compile_field_regex,
    normalise_custom_value,
};
use crate::app::AppState;
use crate::audit::AuditActor;
use crate::auth::{Level, Principal, Resource};
use crate::error::{ApiError, Code};
use crate::http::envelope::{V1Reply, v2_entity};
use crate::http::extract::{Json, Query};

/// Largest `options` or other-attributes JSON of one custom field, in bytes.
const ATTRIBUTES_JSON_MAX: usize = 10_000;

// ---------------------------------------------------------------- shared readers

/// Reads an id sent as a number or a numeric string.
fn required_id(field: &str, value: &Value) -> Result<i64, ApiError> {
    let id = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Null => return Err(ApiError::invalid(format!("{field} is required"))),
        _ => None,
    };
    id.ok_or_else(|| ApiError::invalid(format!("{field} must be an integer")))
}

/// Reads a 0/1 flag sent as `0`/`1`, a boolean, or those as text.
fn flag(field: &str, value: &Option<Value>) -> Result<Option<bool>, ApiError> {
    let bad = || ApiError::invalid(format!("{field} must be 0, 1, true or false"));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "0" | "false" => Ok(Some(false)),
            "1" | "true" => Ok(Some(true)),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// Reads an integer sent as a number or numeric text.
fn integer(field: &str, value: &Option<Value>) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{field} must be an integer"))),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("{field} must be an integer"))),
        Some(_) => Err(ApiError::invalid(format!("{field} must be an integer"))),
    }
}

fn zero_one(b: bool) -> i64 {
    i64::from(b)
}

fn true_false(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

// ---------------------------------------------------------------- org configs

/// One config of `POST /v2/organization/configs` (the body is one such object or a list).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigItem {
    /// `^[A-Z][A-Z0-9_]{1,99}$`, e.g. `CONF_MAX_CARDS_PER_ORG`.
    key_name: String,
    /// Text of up to 1000 characters (numbers and booleans are stored as text).
    #[schema(value_type = String)]
    value: Value,
    /// `ORG` by default.
    scope: Option<String>,
}

impl ConfigItem {
    fn parse(self) -> Result<NewConfig, ApiError> {
        let key = ConfigKey::parse("keyName", self.key_name.trim())?;
        let value = match self.value {
            Value::String(s) => s,
            Value::Number(_) | Value::Bool(_) => self.value.to_string(),
            Value::Null => return Err(ApiError::invalid("value is required")),
            _ => return Err(ApiError::invalid("value must be text, a number or a boolean")),
        };
        if value.chars().count() > CONFIG_VALUE_MAX {
            return Err(ApiError::invalid(format!(
                "value must be at most {CONFIG_VALUE_MAX} characters"
            )));
        }
        Ok(NewConfig { key, value, scope: parse_config_scope(self.scope.as_deref())? })
    }
}

fn config_json(config: &OrgConfig) -> Value {
    json!({"keyName": config.key_name, "value": config.value, "scope": config.scope})
}

/// `POST /v2/organization/configs` — sets one config (or a list of up to 100); answers the
/// stored config(s) as `entity`.
#[utoipa::path(post, path = "/v2/organization/configs", tag = "fields", request_body = ConfigItem,
    responses((status = 200, description = "The stored config, or list of configs, as entity"),
        (status = 400, description = "Invalid key name, value or scope; 1060 more than 100 configs")))]
pub async fn v2_set_configs(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let (single, items) = match body {
        Value::Object(_) => (true, vec![body]),
        Value::Array(items) => (false, items),
        _ => return Err(ApiError::invalid("the body must be a config object or a list of them")),
    };
    if items.is_empty() {
        return Err(ApiError::invalid("the body must list at least one config"));
    }
    if items.len() > CONFIG_BATCH_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("At most {CONFIG_BATCH_MAX} configs per request"),
        ));
    }
    let mut configs = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let where_ = if single { String::new() } else { format!("[{index}] ") };
        let parsed = serde_json::from_value::<ConfigItem>(item)
            .map_err(|e| ApiError::invalid(e.to_string()))
            .and_then(ConfigItem::parse)
            .map_err(|e| ApiError::invalid(format!("{where_}{}", e.message)))?;
        configs.push(parsed);
    }
    let stored =
        service::set_configs(&state.db, principal.org, &AuditActor::from(&principal), &configs)
            .await?;
    let entity = if single {
        stored.first().map(config_json).unwrap_or(Value::Null)
    } else {
        Value::Array(stored.iter().map(config_json).collect())
    };
    Ok(v2_entity(entity))
}

/// Query of `GET /v2/organization/configs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ConfigQuery {
    /// Comma-separated key names.
    key_names: Option<String>,
    /// One key name (or several, comma-separated).
    key_name: Option<String>,
}

/// `GET /v2/organization/configs` — the org's configs, those named by `keyNames`/`keyName` or
/// all of them.
#[utoipa::path(get, path = "/v2/organization/configs", tag = "fields", params(ConfigQuery),
    responses((status = 200, description = "{configs: [{keyName, value, scope}], warnings}"),
        (status = 400, description = "Invalid key name; 1060 more than 100 key names")))]
pub async fn v2_get_configs(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ConfigQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let mut keys = BTreeSet::new();
    for list in [q.key_names.as_deref(), q.key_name.as_deref()].into_iter().flatten() {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            keys.insert(ConfigKey::parse("keyNames", name)?);
            if keys.len() > CONFIG_KEYS_PER_QUERY_MAX {
                return Err(ApiError::with_message(
                    Code::BatchTooLarge,
                    format!("At most {CONFIG_KEYS_PER_QUERY_MAX} key names per request"),
                ));
            }
        }
    }
    let keys: Vec<ConfigKey> = keys.into_iter().collect();
    let configs = service::configs(&state.db, principal.org, &keys).await?;
    let list: Vec<Value> = configs.iter().map(config_json).collect();
    Ok(axum::Json(json!({"configs": list, "warnings": []})).into_response())
}

/// `GET /v1.1/organization/configs` — every config of the org in the v1.1 envelope.
#[utoipa::path(get, path = "/v1.1/organization/configs", tag = "fields",
    responses((status = 200, description = "response.organization.configs.config[] {key, value, scope}")))]
pub async fn v1_get_configs(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let configs = service::configs(&state.db, principal.org, &[]).await?;
    let list: Vec<Value> = configs
        .iter()
        .map(|c| json!({"key": c.key_name, "value": c.value, "scope": c.scope}))
        .collect();
    V1Reply::ok("organization", json!({"configs": {"config": list}}))
}

// ---------------------------------------------------------------- custom fields

/// Body of `POST /v2/customFields`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateCustomFieldsRequest {
    /// The custom field scope (`LOYALTY_REGISTRATION`, `TILL_CUSTOM_FIELDS`, …).
    scope: String,
    /// Up to 50 definitions.
    custom_fields: Vec<CustomFieldDefinition>,
}

/// One custom field definition (spec 85-org, "Create a Custom Field").
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomFieldDefinition {
    /// 1 to 20 characters: a letter, then letters, digits, `_` or `-`; unique in the org.
    name: String,
    /// `text` (default), `textarea`, `select`, `checkbox`, `radio`, `file`, `template_area`,
    /// `datepicker`, `separator`, `button`, `email_body`, `feedback`, `label`.
    #[serde(rename = "type")]
    field_type: Option<String>,
    /// `Boolean`, `Integer`, `Double` or `String` (default).
    data_type: Option<String>,
    label: Option<String>,
    /// Overrides the request's scope for this field.
    scope: Option<String>,
    #[schema(value_type = Option<String>)]
    default_value: Option<Value>,
    #[schema(value_type = Option<i64>)]
    position: Option<Value>,
    /// Checked against whole values when they are tagged.
    regex: Option<String>,
    #[schema(value_type = Option<Object>)]
    options: Option<Value>,
    #[schema(value_type = Option<i64>)]
    is_disabled: Option<Value>,
    #[schema(value_type = Option<i64>)]
    is_compulsory: Option<Value>,
    #[schema(value_type = Option<i64>)]
    is_updatable: Option<Value>,
    #[schema(value_type = Option<Object>)]
    phase: Option<Value>,
    #[schema(value_type = Option<Object>)]
    rule: Option<Value>,
    #[schema(value_type = Option<Object>)]
    server_rule: Option<Value>,
    #[schema(value_type = Option<Object>)]
    helptext: Option<Value>,
    #[schema(value_type = Option<Object>)]
    error: Option<Value>,
    #[schema(value_type = Option<Object>)]
    attrs: Option<Value>,
    #[schema(value_type = Option<Object>)]
    value: Option<Value>,
    #[schema(value_type = Option<i64>)]
    disable_at_server: Option<Value>,
    #[schema(value_type = Option<i64>)]
    enable_audit_trail: Option<Value>,
    #[schema(value_type = Option<i64>)]
    is_pii_data: Option<Value>,
    #[schema(value_type = Option<i64>)]
    is_psi_data: Option<Value>,
}

impl CustomFieldDefinition {
    fn parse(self, request_scope: CustomFieldScope) -> Result<NewCustomField, ApiError> {
        let scope = match self.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => CustomFieldScope::parse("scope", s)?,
            None => request_scope,
        };
        let name = parse_custom_field_name("name", self.name.trim())?;
        let field_type = match self.field_type.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => CustomFieldType::from_name(t).ok_or_else(|| {
                ApiError::invalid(format!(
                    "type '{t}' is invalid: use one of {}",
                    CustomFieldType::names()
                ))
            })?,
            None => CustomFieldType::Text,
        };
        let data_type = match self.data_type.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => CustomDataType::from_name(t).ok_or_else(|| {
                ApiError::invalid(format!(
                    "dataType '{t}' is invalid: use one of {}",
                    CustomDataType::names()
                ))
            })?,
            None => CustomDataType::String,
        };
        let label = parse_label("label", self.label.as_deref(), &name)?;
        let regex = self.regex.filter(|r| !r.is_empty());
        let compiled = match &regex {
            Some(pattern) if pattern.chars().count() > REGEX_MAX => {
                return Err(ApiError::invalid(format!(
                    "regex must be at most {REGEX_MAX} characters"
                )));
            }
            Some(pattern) => Some(compile_field_regex(pattern).map_err(|e| {
                ApiError::invalid(format!(
                    "regex of '{name}' is not a valid regular expression: {e}"
                ))
            })?),
            None => None,
        };
        let default_value = match self.default_value {
            None | Some(Value::Null) => None,
            Some(v) => {
                let text = normalise_custom_value(&name, data_type, compiled.as_ref(), &v)
                    .map_err(|e| ApiError::invalid(format!("defaultValue: {e}")))?;
                Some(text).filter(|t| !t.is_empty())
            }
        };
        let options = self.options.filter(|o| !o.is_null());
        if options.as_ref().is_some_and(|o| o.to_string().len() > ATTRIBUTES_JSON_MAX) {
            return Err(ApiError::invalid(format!(
                "options must be at most {ATTRIBUTES_JSON_MAX} bytes of JSON"
            )));
        }
        let mut attributes = Map::new();
        for (key, value) in [
            ("phase", self.phase),
            ("rule", self.rule),
            ("serverRule", self.server_rule),
            ("helptext", self.helptext),
            ("error", self.error),
            ("attrs", self.attrs),
            ("value", self.value),
        ] {
            if let Some(value) = value.filter(|v| !v.is_null()) {
                attributes.insert(key.to_string(), value);
            }
        }
        for (key, value) in [
            ("disableAtServer", &self.disable_at_server),
            ("enableAuditTrail", &self.enable_audit_trail),
            ("isPiiData", &self.is_pii_data),
            ("isPsiData", &self.is_psi_data),
        ] {
            if let Some(b) = flag(key, value)? {
                attributes.insert(key.to_string(), json!(zero_one(b)));
            }
        }
        if Value::Object(attributes.clone()).to_string().len() > ATTRIBUTES_JSON_MAX {
            return Err(ApiError::invalid(format!(
                "the other attributes of '{name}' must be at most {ATTRIBUTES_JSON_MAX} bytes of JSON"
            )));
        }
        Ok(NewCustomField {
            scope,
            label,
            field_type,
            data_type,
            default_value,
            regex,
            is_compulsory: flag("isCompulsory", &self.is_compulsory)?.unwrap_or(false),
            is_updatable: flag("isUpdatable", &self.is_updatable)?.unwrap_or(true),
            is_disabled: flag("isDisabled", &self.is_disabled)?.unwrap_or(false),
            options,
            position: integer("position", &self.position)?.unwrap_or(0),
            attributes,
            name,
        })
    }
}

/// A custom field definition in the v2 shape.
fn custom_field_json(field: &CustomField) -> Value {
    let mut out = Map::new();
    for (key, value) in [
        ("id", json!(field.id)),
        ("name", json!(field.name)),
        ("label", json!(field.label)),
        ("scope", json!(field.scope)),
        ("type", json!(field.field_type)),
        ("dataType", json!(field.data_type)),
        ("defaultValue", json!(field.default_value)),
        ("regex", json!(field.regex)),
        ("position", json!(field.position)),
        ("options", field.options_value()),
        ("isCompulsory", json!(zero_one(field.is_compulsory))),
        ("isUpdatable", json!(zero_one(field.is_updatable))),
        ("isDisabled", json!(zero_one(field.is_disabled))),
    ] {
        out.insert(key.to_string(), value);
    }
    for (key, value) in field.attributes_map() {
        out.entry(key).or_insert(value);
    }
    Value::Object(out)
}

/// A custom field definition in the v1.1 shape (also used by `organization/entities?scope=`).
pub fn v1_custom_field_json(field: &CustomField) -> Value {
    json!({
        "id": field.id,
        "name": field.name,
        "label": field.label,
        "scope": field.scope,
        "type": field.field_type,
        "data_type": field.data_type,
        "default_value": field.default_value.clone().unwrap_or_default(),
        "regex": field.regex.clone().unwrap_or_default(),
        "position": field.position,
        "options": field.options_value(),
        "is_compulsory": true_false(field.is_compulsory),
        "is_updatable": true_false(field.is_updatable),
        "is_disabled": true_false(field.is_disabled),
    })
}

/// `POST /v2/customFields` — defines up to 50 custom fields of a scope; answers their ids as
/// `entity`.
#[utoipa::path(post, path = "/v2/customFields", tag = "fields", request_body = CreateCustomFieldsRequest,
    responses((status = 200, description = "entity: the new field ids, in request order"),
        (status = 400, description = "Invalid scope, name, type, dataType, regex or default; 1207 name already used; 1060 more than 50 fields")))]
pub async fn v2_create_custom_fields(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateCustomFieldsRequest>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let scope = CustomFieldScope::parse("scope", &body.scope)?;
    if body.custom_fields.is_empty() {
        return Err(ApiError::invalid("customFields must list at least one field"));
    }
    if body.custom_fields.len() > CUSTOM_FIELD_BATCH_MAX {
        return Err(ApiError::with_message(
            Code::BatchTooLarge,
            format!("At most {CUSTOM_FIELD_BATCH_MAX} custom fields per request"),
        ));
    }
    let fields =
        body.custom_fields.into_iter().map(|f| f.parse(scope)).collect::<Result<Vec<_>, _>>()?;
    let ids = service::create_custom_fields(
        &state.db,
        principal.org,
        &AuditActor::from(&principal),
        &fields,
    )
    .await?;
    Ok(v2_entity(json!(ids)))
}

/// Query of the custom field lists.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ScopeQuery {
    /// One scope; every scope when absent.
    scope: Option<String>,
}

fn optional_scope(scope: Option<&str>) -> Result<Option<CustomFieldScope>, ApiError> {
    scope
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| CustomFieldScope::parse("scope", s))
        .transpose()
}

/// `GET /v2/customFields` — the org's custom field definitions, of one `scope` or all.
#[utoipa::path(get, path = "/v2/customFields", tag = "fields", params(ScopeQuery),
    responses((status = 200, description = "entity: the definitions"), (status = 400, description = "Invalid scope")))]
pub async fn v2_list_custom_fields(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ScopeQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let scope = optional_scope(q.scope.as_deref())?;
    let fields = service::custom_fields(&state.db, principal.org, scope).await?;
    Ok(v2_entity(Value::Array(fields.iter().map(custom_field_json).collect())))
}

/// `GET /v1.1/organization/customfields` — the org's custom field definitions in the v1.1
/// envelope, of one `scope` or all.
#[utoipa::path(get, path = "/v1.1/organization/customfields", tag = "fields", params(ScopeQuery),
    responses((status = 200, description = "response.organization.custom_fields.field[]"), (status = 400, description = "Invalid scope")))]
pub async fn v1_list_custom_fields(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ScopeQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let scope = optional_scope(q.scope.as_deref())?;
    let fields = service::custom_fields(&state.db, principal.org, scope).await?;
    let list: Vec<Value> = fields.iter().map(v1_custom_field_json).collect();
    V1Reply::ok("organization", json!({"custom_fields": {"field": list}}))
}

/// Body of `POST /v2/customField/tag`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagRequest {
    scope: String,
    /// The entity (the org id for `ORG_CUSTOM_FIELD`).
    #[schema(value_type = i64)]
    entity_id: Value,
    custom_field: TagField,
}

/// The field and value of a tag request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TagField {
    name: String,
    #[schema(value_type = Option<String>)]
    value: Option<Value>,
}

/// `POST /v2/customField/tag` — sets the value of an existing custom field for one entity.
#[utoipa::path(post, path = "/v2/customField/tag", tag = "fields", request_body = TagRequest,
    responses((status = 200, description = "entity: {scope, entityId, name, value}"),
        (status = 400, description = "Invalid scope or entity, unknown field, value of the wrong type or not matching the regex")))]
pub async fn v2_tag_custom_field(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<TagRequest>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let scope = CustomFieldScope::parse("scope", &body.scope)?;
    let entity_id = required_id("entityId", &body.entity_id)?;
    let name = body.custom_field.name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid("customField.name is required"));
    }
    let value = body.custom_field.value.unwrap_or(Value::Null);
    let stored = service::tag_custom_field(
        &state.db,
        principal.org,
        &AuditActor::from(&principal),
        scope,
        entity_id,
        name,
        &value,
    )
    .await?;
    Ok(v2_entity(json!({
        "scope": stored.scope,
        "entityId": stored.entity_id,
        "name": stored.name,
        "value": stored.value,
    })))
}

/// Query of `GET /v2/orgEntity/customFields`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct EntityFieldsQuery {
    /// `TILL`, `STORE` or `ZONE`.
    entity_type: Option<String>,
    entity_id: Option<String>,
}

fn entity_field_json(value: &EntityFieldValue) -> Value {
    json!({"name": value.name, "value": value.value, "dataType": value.data_type.as_str(),
        "scope": value.scope.as_str()})
}

/// `GET /v2/orgEntity/customFields` — the custom field values of one till, store or zone.
#[utoipa::path(get, path = "/v2/orgEntity/customFields", tag = "fields", params(EntityFieldsQuery),
    responses((status = 200, description = "[{name, value, dataType, scope}]"),
        (status = 400, description = "Invalid entityType or entityId"), (status = 404, description = "No such entity")))]
pub async fn v2_entity_custom_fields(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<EntityFieldsQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let kind = OrgEntityKind::parse(
        "entityType",
        q.entity_type.as_deref().ok_or_else(|| ApiError::invalid("entityType is required"))?,
    )?;
    let entity_id =
        required_id("entityId", &q.entity_id.map(Value::String).unwrap_or(Value::Null))?;
    let values = service::entity_custom_fields(&state.db, principal.org, kind, entity_id).await?;
    Ok(axum::Json(Value::Array(values.iter().map(entity_field_json).collect())).into_response())
}

// ---------------------------------------------------------------- extended fields

/// Body of `POST /v2/extendedFields`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtendedFieldRequest {
    /// A standard field (`gender`, `dob`, `MetalRate`, …) or a new name.
    name: String,
    label: Option<String>,
    /// `customer`, `transaction`, `lineitem`, `profile`, `lead`, `company`, `card`, `usergroup2`.
    entity_type: String,
    /// `INTEGER`, `STRING`, `DOUBLE`, `DATETIME`, `STANDARD_STRING`, `STANDARD_ENUM`, `BOOLEAN`;
    /// optional for standard fields.
    data_type: Option<String>,
    /// The allowed values of a `STANDARD_ENUM`.
    possible_values: Option<Vec<String>>,
}

/// An instant in the org's time zone.
fn local_time(tz: chrono_tz::Tz, millis: i64) -> chrono::DateTime<chrono_tz::Tz> {
    tz.timestamp_millis_opt(millis)
        .single()
        .unwrap_or_else(|| chrono::DateTime::<chrono::Utc>::UNIX_EPOCH.with_timezone(&tz))
}

/// An enabled extended field in the shape of `GET /v2/extendedFields`.
fn extended_field_json(field: &ExtendedField, tz: chrono_tz::Tz, with_values: bool) -> Value {
    let created = local_time(tz, field.created_at);
    let modified = local_time(tz, field.updated_at);
    let mut out = json!({
        "id": field.id,
        "name": field.name,
        "label": field.label,
        "entityType": field.entity_type().map(ExtendedEntityType::group_key).unwrap_or_default(),
        "baseEntityType": field.entity_type,
        "dataType": field.data_type,
        "createdBy": field.created_by,
        "createdOn": created.format("%Y-%m-%d").to_string(),
        "createdOnISO": created.to_rfc3339_opts(SecondsFormat::Secs, true),
        "modifiedBy": field.modified_by,
        "modifiedOn": modified.format("%Y-%m-%d").to_string(),
        "modifiedOnISO": modified.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    if with_values {
        out["possibleValues"] = json!(field.possible_values());
    }
    out
}

async fn org_timezone(state: &AppState, principal: &Principal) -> Result<chrono_tz::Tz, ApiError> {
    let org = crate::org::service::get_org(&state.db, principal.org).await?;
    Ok(org.timezone.parse().unwrap_or(chrono_tz::UTC))
}

/// `POST /v2/extendedFields` — enables a standard extended field for the org, or creates one of
/// its own; answers the field as `entity`.
#[utoipa::path(post, path = "/v2/extendedFields", tag = "fields", request_body = ExtendedFieldRequest,
    responses((status = 200, description = "entity: the enabled field"),
        (status = 400, description = "Invalid name, entityType, dataType or possibleValues")))]
pub async fn v2_configure_extended_field(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<ExtendedFieldRequest>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Write)?;
    let entity_type = ExtendedEntityType::parse("entityType", &body.entity_type)?;
    let new = NewExtendedField::parse(
        entity_type,
        &body.name,
        body.label.as_deref(),
        body.data_type.as_deref(),
        body.possible_values,
    )?;
    let field = service::configure_extended_field(
        &state.db,
        principal.org,
        &AuditActor::from(&principal),
        &new,
    )
    .await?;
    let tz = org_timezone(&state, &principal).await?;
    Ok(v2_entity(extended_field_json(&field, tz, true)))
}

/// `GET /v2/extendedFields` — the org's extended fields, grouped by entity type.
#[utoipa::path(get, path = "/v2/extendedFields", tag = "fields",
    responses((status = 200, description = "entity: {CUSTOMER: [...], REGULAR_TRANSACTION: [...], ...}")))]
pub async fn v2_list_extended_fields(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let fields = service::extended_fields(&state.db, principal.org, None).await?;
    let tz = org_timezone(&state, &principal).await?;
    let mut groups = Map::new();
    for entity_type in ExtendedEntityType::ALL {
        groups.insert(entity_type.group_key().to_string(), json!([]));
    }
    for field in &fields {
        let key = field.entity_type().map(ExtendedEntityType::group_key).unwrap_or("OTHER");
        if let Some(Value::Array(list)) = groups.get_mut(key) {
            list.push(extended_field_json(field, tz, false));
        }
    }
    Ok(v2_entity(Value::Object(groups)))
}

/// Query of `GET /v2/extendedFields/config`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct ExtendedConfigQuery {
    /// One entity type (`customer`, …); every type when absent.
    entity_type: Option<String>,
}

/// `GET /v2/extendedFields/config` — the extended fields the org has enabled for an entity type,
/// with their allowed values.
#[utoipa::path(get, path = "/v2/extendedFields/config", tag = "fields", params(ExtendedConfigQuery),
    responses((status = 200, description = "entity: [{name, label, entityType, dataType, possibleValues}]"),
        (status = 400, description = "Invalid entityType")))]
pub async fn v2_extended_field_config(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ExtendedConfigQuery>,
) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let entity_type = q
        .entity_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| ExtendedEntityType::parse("entityType", t))
        .transpose()?;
    let fields = service::extended_fields(&state.db, principal.org, entity_type).await?;
    let list: Vec<Value> = fields
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "name": f.name,
                "label": f.label,
                "entityType": f.entity_type().map(ExtendedEntityType::group_key).unwrap_or_default(),
                "baseEntityType": f.entity_type,
                "dataType": f.data_type,
                "possibleValues": f.possible_values(),
            })
        })
        .collect();
    Ok(v2_entity(Value::Array(list)))
}

// ---------------------------------------------------------------- sources

/// `GET /v2/organization/sources` — the customer sources of the v2 API and their account ids.
#[utoipa::path(get, path = "/v2/organization/sources", tag = "fields",
    responses((status = 200, description = "[{source, accountIds}]")))]
pub async fn v2_org_sources(principal: Principal) -> Result<Response, ApiError> {
    principal.require(Resource::Organization, Level::Read)?;
    let list: Vec<Value> = SOURCES.iter().map(|s| json!({"source": s, "accountIds": []})).collect();
    Ok(axum::Json(Value::Array(list)).into_response())
}
