//! Fields rules: org configs, custom field definitions and values, extended fields, and the
//! validation other domains call for the custom and extended fields of their entities.
//!
//! Writes run in one transaction each, with their audit records. The two `validate_*` functions
//! take any connection (a read connection or the caller's own write transaction) and never write.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};
use regex::Regex;
use serde_json::{Map, Number, Value, json};

use super::model::{
    CustomDataType, CustomField, CustomFieldScope, CustomFieldValue, EntityFieldValue,
    ExtendedDataType, ExtendedEntityType, ExtendedField, FIELD_VALUE_MAX, NewConfig,
    NewCustomField, NewExtendedField, OrgConfig, OrgEntityKind, same_text,
};
use super::store;
use crate::audit::{self, AuditActor, Change};
use crate::db::{Connection, Db, DbError};
use crate::error::{ApiError, Code};
use crate::org::model::{OrgId, StoreId, ZoneId};
use crate::org::store::{self as org_store, TillLookup};

/// Most configs in one `POST /v2/organization/configs`.
pub const CONFIG_BATCH_MAX: usize = 100;
/// Most config keys one org may hold.
pub const CONFIGS_PER_ORG_MAX: i64 = 1000;
/// Most key names in one `GET /v2/organization/configs`.
pub const CONFIG_KEYS_PER_QUERY_MAX: usize = 100;
/// Most custom fields in one `POST /v2/customFields`.
pub const CUSTOM_FIELD_BATCH_MAX: usize = 50;
/// Most custom field definitions one org may hold (across scopes); also bounds every list.
pub const CUSTOM_FIELDS_PER_ORG_MAX: i64 = 500;
/// Most extended fields one org may enable per entity type.
pub const EXTENDED_FIELDS_PER_TYPE_MAX: i64 = 200;
/// Most extended fields of one org, across entity types.
pub const EXTENDED_FIELDS_PER_ORG_MAX: i64 =
    EXTENDED_FIELDS_PER_TYPE_MAX * ExtendedEntityType::ALL.len() as i64;
/// Largest compiled custom field regex, in bytes.
const REGEX_SIZE_MAX: usize = 256 * 1024;

/// Why a custom or extended field value was refused.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("Unknown field '{name}': it is not defined for this org")]
    Unknown { name: String },
    #[error("Field '{name}' must be {expected}")]
    WrongType { name: String, expected: String },
    #[error("Value '{value}' is not allowed for field '{name}'")]
    NotAllowed { name: String, value: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        match e {
            FieldError::Db(db) => ApiError::from(db),
            other => ApiError::invalid(other.to_string()),
        }
    }
}

/// Why a configs or fields request was refused (a write, or a read of an entity that is not
/// the org's); [`FieldError`] is the refusal of one value.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NameTaken(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid(m) => ApiError::invalid(m),
            WriteError::NameTaken(m) => ApiError::with_message(Code::EntityNameExists, m),
            WriteError::NotFound(m) => ApiError::not_found(m),
            WriteError::Field(f) => ApiError::from(f),
            WriteError::Db(db) => ApiError::from(db),
        }
    }
}

// ---------------------------------------------------------------- org configs

fn config_state(config: &OrgConfig) -> Value {
    json!({"keyName": config.key_name, "value": config.value, "scope": config.scope})
}

/// Stores each config (a new key or a new value for a known key) in one transaction.
#[tracing::instrument(skip_all, fields(org = org.0, count = configs.len()))]
pub async fn set_configs(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    configs: &[NewConfig],
) -> Result<Vec<OrgConfig>, WriteError> {
    if configs.is_empty() || configs.len() > CONFIG_BATCH_MAX {
        return Err(WriteError::Invalid(format!("give 1 to {CONFIG_BATCH_MAX} configs")));
    }
    let mut tx = db.begin_write().await?;
    let count_before = store::count_configs(&mut tx, org).await?;
    let mut stored = Vec::with_capacity(configs.len());
    for config in configs {
        let before = store::get_config(&mut tx, org, &config.key).await?;
        let after = store::upsert_config(&mut tx, org, config).await?;
        let change = Change {
            entity_type: "ORG_CONFIG",
            entity_id: after.id,
            action: if before.is_some() { "UPDATE" } else { "CREATE" },
            before: before.as_ref().map(config_state),
            after: Some(config_state(&after)),
        };
        audit::record(&mut tx, org, actor, change).await?;
        stored.push(after);
    }
    let count_after = store::count_configs(&mut tx, org).await?;
    if count_after > CONFIGS_PER_ORG_MAX && count_after > count_before {
        return Err(WriteError::Invalid(format!(
            "An org holds at most {CONFIGS_PER_ORG_MAX} configs"
        )));
    }
    tx.commit().await?;
    Ok(stored)
}

/// The org's configs of the given keys, or all of them when `keys` is empty.
pub async fn configs(
    db: &Db,
    org: OrgId,
    keys: &[super::model::ConfigKey],
) -> Result<Vec<OrgConfig>, DbError> {
    let mut conn = db.read().await?;
    let limit = if keys.is_empty() { CONFIGS_PER_ORG_MAX } else { keys.len() as i64 };
    store::list_configs(&mut conn, org, keys, limit).await
}

// ---------------------------------------------------------------- custom fields

fn custom_field_state(field: &NewCustomField) -> Value {
    json!({"scope": field.scope.as_str(), "name": field.name, "label": field.label,
        "type": field.field_type.as_str(), "dataType": field.data_type.as_str(),
        "defaultValue": field.default_value, "regex": field.regex})
}

/// Creates custom field definitions in one transaction; answers their ids in request order.
/// Names are unique in the org across scopes: a taken name fails the whole request.
#[tracing::instrument(skip_all, fields(org = org.0, count = fields.len()))]
pub async fn create_custom_fields(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    fields: &[NewCustomField],
) -> Result<Vec<i64>, WriteError> {
    if fields.is_empty() || fields.len() > CUSTOM_FIELD_BATCH_MAX {
        return Err(WriteError::Invalid(format!(
            "customFields must list 1 to {CUSTOM_FIELD_BATCH_MAX} fields"
        )));
    }
    let mut seen = HashSet::new();
    for field in fields {
        if !seen.insert(field.name.as_str()) {
            return Err(WriteError::NameTaken(format!(
                "Custom field name '{}' is given twice",
                field.name
            )));
        }
    }
    let mut tx = db.begin_write().await?;
    let mut ids = Vec::with_capacity(fields.len());
    for field in fields {
        let id = store::insert_custom_field(&mut tx, org, field).await.map_err(|e| {
            if e.is_unique_violation() {
                WriteError::NameTaken(format!(
                    "Custom field name '{}' is already used in this org",
                    field.name
                ))
            } else {
                WriteError::Db(e)
            }
        })?;
        let change = Change {
            entity_type: "CUSTOM_FIELD",
            entity_id: id,
            action: "CREATE",
            before: None,
            after: Some(custom_field_state(field)),
        };
        audit::record(&mut tx, org, actor, change).await?;
        ids.push(id);
    }
    if store::count_custom_fields(&mut tx, org).await? > CUSTOM_FIELDS_PER_ORG_MAX {
        return Err(WriteError::Invalid(format!(
            "An org holds at most {CUSTOM_FIELDS_PER_ORG_MAX} custom fields"
        )));
    }
    tx.commit().await?;
    Ok(ids)
}

/// The org's custom field definitions of one scope, or of every scope.
pub async fn custom_fields(
    db: &Db,
    org: OrgId,
    scope: Option<CustomFieldScope>,
) -> Result<Vec<CustomField>, DbError> {
    let mut conn = db.read().await?;
    store::list_custom_fields(&mut conn, org, scope, CUSTOM_FIELDS_PER_ORG_MAX).await
}

/// Checks that `entity_id` names an entity of the org where Perks can tell: the org itself for
/// `ORG_CUSTOM_FIELD`, a till, store or zone of the org for their scopes; any positive id else.
async fn check_entity(
    c: &mut impl Connection,
    org: OrgId,
    scope: CustomFieldScope,
    entity_id: i64,
) -> Result<(), WriteError> {
    let found = match scope {
        CustomFieldScope::OrgCustomField => entity_id == org.0,
        CustomFieldScope::TillCustomFields => {
            let lookup = TillLookup { id: Some(entity_id), ..Default::default() };
            org_store::find_till(c, org, &lookup).await?.is_some()
        }
        CustomFieldScope::StoreCustomFields => {
            org_store::get_store(c, org, StoreId(entity_id)).await?.is_some()
        }
        CustomFieldScope::ZoneCustomFields => {
            org_store::zone_exists(c, org, ZoneId(entity_id)).await?
        }
        _ => entity_id > 0,
    };
    if found {
        Ok(())
    } else {
        Err(WriteError::Invalid(format!(
            "entityId {entity_id} is not an entity of this org for scope {}",
            scope.as_str()
        )))
    }
}

fn value_state(value: &CustomFieldValue) -> Value {
    json!({"scope": value.scope, "entityId": value.entity_id, "name": value.name,
        "value": value.value})
}

/// Sets the value of a custom field of `scope` for one entity, after checking that the field
/// exists in that scope and that the value fits its data type and regex. A field that is not
/// updatable keeps its first value.
#[tracing::instrument(skip_all, fields(org = org.0, scope = scope.as_str(), entity_id = entity_id))]
pub async fn tag_custom_field(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    scope: CustomFieldScope,
    entity_id: i64,
    name: &str,
    value: &Value,
) -> Result<CustomFieldValue, WriteError> {
    let mut tx = db.begin_write().await?;
    check_entity(&mut tx, org, scope, entity_id).await?;
    let field = store::find_custom_field(&mut tx, org, scope, name)
        .await?
        .ok_or_else(|| FieldError::Unknown { name: name.to_string() })?;
    let regex = field_regex(&field);
    let text = normalise_custom_value(&field.name, field.data_type(), regex.as_ref(), value)?;
    let before = store::get_custom_field_value(&mut tx, org, scope, entity_id, name).await?;
    if let Some(existing) = &before
        && !field.is_updatable
        && existing.value != text
    {
        return Err(WriteError::Invalid(format!(
            "Custom field '{name}' is not updatable: it keeps its value '{}'",
            existing.value
        )));
    }
    let after =
        store::upsert_custom_field_value(&mut tx, org, scope, entity_id, name, &text).await?;
    let change = Change {
        entity_type: "CUSTOM_FIELD_VALUE",
        entity_id: after.id,
        action: if before.is_some() { "UPDATE" } else { "CREATE" },
        before: before.as_ref().map(value_state),
        after: Some(value_state(&after)),
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Custom field values of a till, store or zone: the values tagged through
/// `POST /v2/customField/tag` and those set with the till or store itself (tagged values win).
pub async fn entity_custom_fields(
    db: &Db,
    org: OrgId,
    kind: OrgEntityKind,
    entity_id: i64,
) -> Result<Vec<EntityFieldValue>, WriteError> {
    let mut conn = db.read().await?;
    let not_found = || WriteError::NotFound(format!("{} {entity_id} not found", kind.as_str()));
    let own_json = match kind {
        OrgEntityKind::Till => {
            let lookup = TillLookup { id: Some(entity_id), ..Default::default() };
            org_store::find_till(&mut conn, org, &lookup)
                .await?
                .ok_or_else(not_found)?
                .custom_fields
        }
        OrgEntityKind::Store => {
            org_store::get_store(&mut conn, org, StoreId(entity_id))
                .await?
                .ok_or_else(not_found)?
                .custom_fields
        }
        OrgEntityKind::Zone => {
            if !org_store::zone_exists(&mut conn, org, ZoneId(entity_id)).await? {
                return Err(not_found());
            }
            String::from("{}")
        }
    };
    let scope = kind.scope();
    let definitions =
        store::list_custom_fields(&mut conn, org, Some(scope), CUSTOM_FIELDS_PER_ORG_MAX).await?;
    let data_type = |name: &str| {
        definitions
            .iter()
            .find(|d| d.name == name)
            .map(CustomField::data_type)
            .unwrap_or(CustomDataType::String)
    };
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let own: Map<String, Value> = serde_json::from_str(&own_json).unwrap_or_default();
    for (name, value) in own {
        values.insert(name, value_text(&value));
    }
    let tagged =
        store::custom_field_values(&mut conn, org, scope, entity_id, CUSTOM_FIELDS_PER_ORG_MAX)
            .await?;
    for value in tagged {
        values.insert(value.name, value.value);
    }
    Ok(values
        .into_iter()
        .map(|(name, value)| EntityFieldValue { data_type: data_type(&name), name, value, scope })
        .collect())
}

/// The org's own custom field values (scope `ORG_CUSTOM_FIELD`, entity id = org id), by name.
pub async fn org_custom_field_values(
    db: &Db,
    org: OrgId,
) -> Result<Vec<CustomFieldValue>, DbError> {
    let mut conn = db.read().await?;
    let scope = CustomFieldScope::OrgCustomField;
    store::custom_field_values(&mut conn, org, scope, org.0, CUSTOM_FIELDS_PER_ORG_MAX).await
}

/// A stored JSON value as the text custom fields carry (`null` is empty).
fn value_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- extended fields

fn extended_state(field: &ExtendedField) -> Value {
    json!({"entityType": field.entity_type, "name": field.name, "label": field.label,
        "dataType": field.data_type, "possibleValues": field.possible_values()})
}

/// Enables an extended field for the org, or changes the label and allowed values of one it
/// already has (the data type of an enabled field never changes).
#[tracing::instrument(skip_all, fields(org = org.0, name = %new.name))]
pub async fn configure_extended_field(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    new: &NewExtendedField,
) -> Result<ExtendedField, WriteError> {
    let actor_id = actor.principal_id.unwrap_or(-1);
    let mut tx = db.begin_write().await?;
    let existing = store::find_extended_field(&mut tx, org, new.entity_type, &new.name).await?;
    let (field, before) = match existing {
        Some(old) => {
            if old.data_type() != new.data_type {
                return Err(WriteError::Invalid(format!(
                    "Extended field '{}' of {} is enabled as {}; its data type cannot change to {}",
                    new.name,
                    new.entity_type.as_str(),
                    old.data_type,
                    new.data_type.as_str()
                )));
            }
            let updated = store::update_extended_field(
                &mut tx,
                org,
                old.id,
                &new.label,
                &new.possible_values,
                actor_id,
            )
            .await?
            .ok_or_else(|| WriteError::NotFound(format!("Extended field {} not found", old.id)))?;
            (updated, Some(old))
        }
        None => {
            let count = store::count_extended_fields(&mut tx, org, new.entity_type).await?;
            if count >= EXTENDED_FIELDS_PER_TYPE_MAX {
                return Err(WriteError::Invalid(format!(
                    "An org enables at most {EXTENDED_FIELDS_PER_TYPE_MAX} extended fields per entity type"
                )));
            }
            let created =
                store::insert_extended_field(&mut tx, org, new, actor_id).await.map_err(|e| {
                    if e.is_unique_violation() {
                        WriteError::NameTaken(format!(
                            "Extended field '{}' of {} is already enabled",
                            new.name,
                            new.entity_type.as_str()
                        ))
                    } else {
                        WriteError::Db(e)
                    }
                })?;
            (created, None)
        }
    };
    let change = Change {
        entity_type: "EXTENDED_FIELD",
        entity_id: field.id,
        action: if before.is_some() { "UPDATE" } else { "CREATE" },
        before: before.as_ref().map(extended_state),
        after: Some(extended_state(&field)),
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(field)
}

/// The org's extended fields of one entity type, or of every type.
pub async fn extended_fields(
    db: &Db,
    org: OrgId,
    entity_type: Option<ExtendedEntityType>,
) -> Result<Vec<ExtendedField>, DbError> {
    let mut conn = db.read().await?;
    let limit = if entity_type.is_some() {
        EXTENDED_FIELDS_PER_TYPE_MAX
    } else {
        EXTENDED_FIELDS_PER_ORG_MAX
    };
    store::list_extended_fields(&mut conn, org, entity_type, limit).await
}

// ---------------------------------------------------------------- validation for other domains

/// Checks the extended field values of one entity (`entity_type` such as `"customer"`, in any
/// case) against the fields the org has enabled, and answers them normalised per data type:
/// INTEGER → integer, DOUBLE → number, DATETIME → `YYYY-MM-DD` (date only),
/// `YYYY-MM-DD HH:MM:SS` (without offset) or RFC 3339, STANDARD_ENUM → the allowed value's own
/// spelling, BOOLEAN → `true`/`false`, STRING → text. `null` (and `""` for non-text types)
/// stays `null`: no value. An entity type Perks does not know has no fields enabled.
#[tracing::instrument(skip_all, fields(org = org.0, entity_type = %entity_type))]
pub async fn validate_extended_fields(
    c: &mut impl Connection,
    org: OrgId,
    entity_type: &str,
    values: &Map<String, Value>,
) -> Result<Map<String, Value>, FieldError> {
    let mut out = Map::new();
    if values.is_empty() {
        return Ok(out);
    }
    let enabled = match ExtendedEntityType::from_wire(entity_type) {
        Some(t) => {
            store::list_extended_fields(c, org, Some(t), EXTENDED_FIELDS_PER_TYPE_MAX).await?
        }
        None => Vec::new(),
    };
    for (name, value) in values {
        let field = enabled
            .iter()
            .find(|f| f.name == *name)
            .ok_or_else(|| FieldError::Unknown { name: name.clone() })?;
        let normalised = normalise_extended_value(
            &field.name,
            field.data_type(),
            &field.possible_values(),
            value,
        )?;
        out.insert(name.clone(), normalised);
    }
    Ok(out)
}

/// Checks custom field values of one entity against the org's fields of `scope` (such as
/// `"LOYALTY_REGISTRATION"`, in any case): each name must be a field of that scope and each value
/// must fit its data type and regex. Answers every value as text (Integer and Boolean in
/// canonical form; `null` and `""` are the empty text, which no regex is checked against). A scope
/// Perks does not know has no fields.
#[tracing::instrument(skip_all, fields(org = org.0, scope = %scope))]
pub async fn validate_custom_fields(
    c: &mut impl Connection,
    org: OrgId,
    scope: &str,
    values: &Map<String, Value>,
) -> Result<Map<String, Value>, FieldError> {
    let mut out = Map::new();
    if values.is_empty() {
        return Ok(out);
    }
    let fields = match CustomFieldScope::from_name(scope) {
        Some(s) => store::list_custom_fields(c, org, Some(s), CUSTOM_FIELDS_PER_ORG_MAX).await?,
        None => Vec::new(),
    };
    for (name, value) in values {
        let field = fields
            .iter()
            .find(|f| f.name == *name)
            .ok_or_else(|| FieldError::Unknown { name: name.clone() })?;
        let regex = field_regex(field);
        let text = normalise_custom_value(&field.name, field.data_type(), regex.as_ref(), value)?;
        out.insert(name.clone(), Value::String(text));
    }
    Ok(out)
}

/// Compiles a custom field regex for full-value matches (as Java's `String.matches` does).
pub fn compile_field_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$")).size_limit(REGEX_SIZE_MAX).build()
}

/// A stored field's regex; one that no longer compiles is logged and not enforced.
fn field_regex(field: &CustomField) -> Option<Regex> {
    let pattern = field.regex.as_deref().filter(|p| !p.is_empty())?;
    match compile_field_regex(pattern) {
        Ok(regex) => Some(regex),
        Err(e) => {
            tracing::warn!(field = %field.name, error = %e, "stored custom field regex does not compile");
            None
        }
    }
}

fn wrong_type(name: &str, expected: impl Into<String>) -> FieldError {
    FieldError::WrongType { name: name.to_string(), expected: expected.into() }
}

fn too_long(name: &str) -> FieldError {
    wrong_type(name, format!("text of at most {FIELD_VALUE_MAX} characters"))
}

/// Checks one custom field value against its data type and regex; answers it as text.
pub fn normalise_custom_value(
    name: &str,
    data_type: CustomDataType,
    regex: Option<&Regex>,
    value: &Value,
) -> Result<String, FieldError> {
    let text = match (data_type, value) {
        (_, Value::Null) => return Ok(String::new()),
        (_, Value::String(s)) if s.trim().is_empty() && data_type != CustomDataType::String => {
            return Ok(String::new());
        }
        (_, Value::Array(_) | Value::Object(_)) => {
            return Err(wrong_type(name, data_type.as_str()));
        }
        (CustomDataType::String, Value::String(s)) => s.clone(),
        (CustomDataType::String, other) => other.to_string(),
        (CustomDataType::Integer, Value::Number(n)) => {
            n.as_i64().ok_or_else(|| wrong_type(name, "Integer"))?.to_string()
        }
        (CustomDataType::Integer, Value::String(s)) => {
            s.trim().parse::<i64>().map_err(|_| wrong_type(name, "Integer"))?.to_string()
        }
        (CustomDataType::Double, Value::Number(n)) => n.to_string(),
        (CustomDataType::Double, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => s.trim().to_string(),
            _ => return Err(wrong_type(name, "Double")),
        },
        (CustomDataType::Boolean, Value::Bool(b)) => b.to_string(),
        (CustomDataType::Boolean, Value::String(s)) => {
            parse_boolean(s).ok_or_else(|| wrong_type(name, "Boolean (true or false)"))?.to_string()
        }
        (CustomDataType::Boolean, Value::Number(n)) => match n.as_i64() {
            Some(1) => "true".to_string(),
            Some(0) => "false".to_string(),
            _ => return Err(wrong_type(name, "Boolean (true or false)")),
        },
        (_, Value::Bool(_)) => return Err(wrong_type(name, data_type.as_str())),
    };
    if text.chars().count() > FIELD_VALUE_MAX {
        return Err(too_long(name));
    }
    if let Some(regex) = regex
        && !text.is_empty()
        && !regex.is_match(&text)
    {
        return Err(FieldError::NotAllowed { name: name.to_string(), value: text });
    }
    Ok(text)
}

/// `true`/`false` in any case, or `1`/`0`.
fn parse_boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

const DATETIME_EXPECTED: &str = "DATETIME (YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339)";

/// Checks one extended field value against its data type (and allowed values); answers it
/// normalised (see [`validate_extended_fields`]).
pub fn normalise_extended_value(
    name: &str,
    data_type: ExtendedDataType,
    possible_values: &[String],
    value: &Value,
) -> Result<Value, FieldError> {
    use ExtendedDataType as D;
    let text_type = matches!(data_type, D::String | D::StandardString);
    match value {
        Value::Null => return Ok(Value::Null),
        Value::String(s) if !text_type && s.trim().is_empty() => return Ok(Value::Null),
        _ => {}
    }
    match data_type {
        D::String | D::StandardString => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return Err(wrong_type(name, data_type.as_str())),
            };
            if text.chars().count() > FIELD_VALUE_MAX {
                return Err(too_long(name));
            }
            Ok(Value::String(text))
        }
        D::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                n.as_i64().map(Value::from).ok_or_else(|| wrong_type(name, "INTEGER"))
            }
            Value::String(s) => {
                s.trim().parse::<i64>().map(Value::from).map_err(|_| wrong_type(name, "INTEGER"))
            }
            _ => Err(wrong_type(name, "INTEGER")),
        },
        D::Double => match value {
            Value::Number(n) => Ok(Value::Number(n.clone())),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| wrong_type(name, "DOUBLE")),
            _ => Err(wrong_type(name, "DOUBLE")),
        },
        D::Datetime => match value {
            Value::String(s) => parse_datetime(s)
                .map(Value::String)
                .ok_or_else(|| wrong_type(name, DATETIME_EXPECTED)),
            _ => Err(wrong_type(name, DATETIME_EXPECTED)),
        },
        D::Boolean => match value {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(wrong_type(name, "BOOLEAN (true or false)")),
            },
            _ => Err(wrong_type(name, "BOOLEAN (true or false)")),
        },
        D::StandardEnum => {
            let text = match value {
                Value::String(s) => s.trim().to_string(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => {
                    return Err(wrong_type(name, format!("one of {}", possible_values.join(", "))));
                }
            };
            possible_values
                .iter()
                .find(|allowed| same_text(allowed, &text))
                .map(|allowed| Value::String(allowed.clone()))
                .ok_or_else(|| FieldError::NotAllowed { name: name.to_string(), value: text })
        }
    }
}

/// `YYYY-MM-DD` stays a date; `YYYY-MM-DD HH:MM:SS` (or with `T`) becomes
/// `YYYY-MM-DD HH:MM:SS`; RFC 3339 keeps its offset.
fn parse_datetime(text: &str) -> Option<String> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date.format("%Y-%m-%d").to_string());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Some(at.format("%Y-%m-%d %H:%M:%S").to_string());
        }
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn extended_values_are_normalised_per_type() {
        use ExtendedDataType as D;
        let n = |t, v: Value| normalise_extended_value("f", t, &[], &v);
        assert_eq!(n(D::Integer, json!("42")).unwrap(), json!(42));
        assert_eq!(n(D::Integer, json!(-7)).unwrap(), json!(-7));
        assert!(matches!(n(D::Integer, json!(4.5)), Err(FieldError::WrongType { .. })));
        assert!(matches!(n(D::Integer, json!("4x")), Err(FieldError::WrongType { .. })));
        assert_eq!(n(D::Double, json!("2.5")).unwrap(), json!(2.5));
        assert_eq!(n(D::Double, json!(3)).unwrap(), json!(3));
        assert!(n(D::Double, json!("NaN")).is_err());
        assert_eq!(n(D::Datetime, json!("1990-05-12")).unwrap(), json!("1990-05-12"));
        assert_eq!(
            n(D::Datetime, json!("1990-05-12 10:20:30")).unwrap(),
            json!("1990-05-12 10:20:30")
        );
        assert_eq!(
            n(D::Datetime, json!("1990-05-12T10:20:30")).unwrap(),
            json!("1990-05-12 10:20:30")
        );
        assert_eq!(
            n(D::Datetime, json!("1990-05-12T10:20:30+05:30")).unwrap(),
            json!("1990-05-12T10:20:30+05:30")
        );
        assert_eq!(
            n(D::Datetime, json!("1990-05-12T10:20:30z")).unwrap(),
            json!("1990-05-12T10:20:30Z")
        );
        assert!(n(D::Datetime, json!("1990-02-30")).is_err());
        assert!(n(D::Datetime, json!("12/05/1990")).is_err());
        assert!(n(D::Datetime, json!(19900512)).is_err());
        assert_eq!(n(D::Boolean, json!("TRUE")).unwrap(), json!(true));
        assert_eq!(n(D::Boolean, json!(false)).unwrap(), json!(false));
        assert!(n(D::Boolean, json!("yes")).is_err());
        assert_eq!(n(D::String, json!(560001)).unwrap(), json!("560001"));
        assert_eq!(n(D::String, json!("")).unwrap(), json!(""));
        assert!(n(D::String, json!(["a"])).is_err());
        assert!(n(D::String, json!("x".repeat(FIELD_VALUE_MAX + 1))).is_err());
        assert_eq!(n(D::Integer, json!(" ")).unwrap(), Value::Null);
        assert_eq!(n(D::Datetime, Value::Null).unwrap(), Value::Null);
    }

    #[test]
    fn enum_values_match_in_any_case_and_take_the_allowed_spelling() {
        let allowed = values(&["Male", "Female", "Other", "Célibataire"]);
        let n = |v: Value| {
            normalise_extended_value("gender", ExtendedDataType::StandardEnum, &allowed, &v)
        };
        assert_eq!(n(json!("male")).unwrap(), json!("Male"));
        assert_eq!(n(json!(" FEMALE ")).unwrap(), json!("Female"));
        assert_eq!(n(json!("CÉLIBATAIRE")).unwrap(), json!("Célibataire"));
        match n(json!("Robot")) {
            Err(FieldError::NotAllowed { name, value }) => {
                assert_eq!((name.as_str(), value.as_str()), ("gender", "Robot"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(n(json!({"a": 1})), Err(FieldError::WrongType { .. })));
    }

    #[test]
    fn custom_values_are_checked_and_rendered_as_text() {
        use CustomDataType as D;
        let n = |t, v: Value| normalise_custom_value("f", t, None, &v);
        assert_eq!(n(D::Integer, json!(12)).unwrap(), "12");
        assert_eq!(n(D::Integer, json!(" 012 ")).unwrap(), "12");
        assert!(n(D::Integer, json!("1.5")).is_err());
        assert_eq!(n(D::Double, json!("1.50")).unwrap(), "1.50");
        assert!(n(D::Double, json!("abc")).is_err());
        assert_eq!(n(D::Boolean, json!("1")).unwrap(), "true");
        assert_eq!(n(D::Boolean, json!(false)).unwrap(), "false");
        assert!(n(D::Boolean, json!("maybe")).is_err());
        assert_eq!(n(D::String, json!(5)).unwrap(), "5");
        assert_eq!(n(D::String, Value::Null).unwrap(), "");
        assert_eq!(n(D::Integer, json!("")).unwrap(), "");
        assert!(n(D::Integer, json!(true)).is_err());
        assert!(n(D::String, json!({"a": 1})).is_err());
    }

    #[test]
    fn custom_regexes_match_the_whole_value() {
        let regex = compile_field_regex("[0-9]{6}").unwrap();
        let n = |v: Value| normalise_custom_value("pin", CustomDataType::String, Some(&regex), &v);
        assert_eq!(n(json!("560001")).unwrap(), "560001");
        assert!(matches!(n(json!("5600012")), Err(FieldError::NotAllowed { .. })));
        assert!(matches!(n(json!("abc560001")), Err(FieldError::NotAllowed { .. })));
        assert_eq!(n(json!("")).unwrap(), "");
        assert!(compile_field_regex("([a-z]").is_err());
    }

    #[test]
    fn field_errors_are_bad_input() {
        let e: ApiError = FieldError::Unknown { name: "x".into() }.into();
        assert_eq!(e.code, Code::InvalidInput);
        assert!(e.message.contains("'x'"), "{}", e.message);
        let e: ApiError = WriteError::NameTaken("taken".into()).into();
        assert_eq!(e.code, Code::EntityNameExists);
    }
}
