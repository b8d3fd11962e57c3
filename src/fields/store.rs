//! SQL for org configs, custom field definitions and values, and extended fields; every function
//! is org-first.

use crate::db::{Connection, DbError, now_millis};
use crate::dispatch;
use crate::org::model::OrgId;

use super::model::{
    ConfigKey, CustomField, CustomFieldScope, CustomFieldValue, ExtendedEntityType, ExtendedField,
    NewConfig, NewCustomField, NewExtendedField, OrgConfig,
};

const CONFIG_COLUMNS: &str = "id, key_name, value, scope, updated_at";
const CUSTOM_FIELD_COLUMNS: &str = "id, scope, name, label, field_type, data_type, default_value, \
    regex, is_compulsory, is_updatable, is_disabled, options, position, attributes, created_at, \
    updated_at";
const VALUE_COLUMNS: &str = "id, scope, entity_id, name, value, updated_at";
const EXTENDED_COLUMNS: &str = "id, entity_type, name, label, data_type, possible_values, \
    created_by, modified_by, created_at, updated_at";

// ---------------------------------------------------------------- org configs

/// The value of one org config, for other domains (`None` when the org never set it).
pub async fn config_value(
    c: &mut impl Connection,
    org: OrgId,
    key: &str,
) -> Result<Option<String>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT value FROM org_configs WHERE org_id = $1 AND key_name = $2"
    )
    .bind(org.0)
    .bind(key)
    .fetch_optional(e)
    .await)?)
}

pub async fn get_config(
    c: &mut impl Connection,
    org: OrgId,
    key: &ConfigKey,
) -> Result<Option<OrgConfig>, DbError> {
    let sql =
        format!("SELECT {CONFIG_COLUMNS} FROM org_configs WHERE org_id = $1 AND key_name = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OrgConfig>(&sql)
        .bind(org.0)
        .bind(key.as_str())
        .fetch_optional(e)
        .await)?)
}

/// Inserts a config, or replaces the value and scope of the org's config of the same key.
pub async fn upsert_config(
    c: &mut impl Connection,
    org: OrgId,
    config: &NewConfig,
) -> Result<OrgConfig, DbError> {
    let sql = format!(
        "INSERT INTO org_configs (org_id, key_name, value, scope, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (org_id, key_name) DO UPDATE SET \
         value = excluded.value, scope = excluded.scope, updated_at = excluded.updated_at \
         RETURNING {CONFIG_COLUMNS}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, OrgConfig>(&sql)
        .bind(org.0)
        .bind(config.key.as_str())
        .bind(&config.value)
        .bind(&config.scope)
        .bind(now_millis())
        .fetch_one(e)
        .await)?)
}

pub async fn count_configs(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar("SELECT COUNT(*) FROM org_configs WHERE org_id = $1")
        .bind(org.0)
        .fetch_one(e)
        .await)?)
}

/// The org's configs named in `keys` (every config when `keys` is empty), by key, at most `limit`.
pub async fn list_configs(
    c: &mut impl Connection,
    org: OrgId,
    keys: &[ConfigKey],
    limit: i64,
) -> Result<Vec<OrgConfig>, DbError> {
    let mut sql = format!("SELECT {CONFIG_COLUMNS} FROM org_configs WHERE org_id = $1");
    if !keys.is_empty() {
        let placeholders: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 3)).collect();
        sql.push_str(&format!(" AND key_name IN ({})", placeholders.join(", ")));
    }
    sql.push_str(" ORDER BY key_name LIMIT $2");
    Ok(dispatch!(c, |e| {
        let mut q = sqlx::query_as::<_, OrgConfig>(&sql).bind(org.0).bind(limit);
        for key in keys {
            q = q.bind(key.as_str());
        }
        q.fetch_all(e).await
    })?)
}

// ---------------------------------------------------------------- custom fields

/// Inserts a custom field definition; a name the org already uses breaks the unique constraint.
pub async fn insert_custom_field(
    c: &mut impl Connection,
    org: OrgId,
    field: &NewCustomField,
) -> Result<i64, DbError> {
    let options = field.options.as_ref().map(|o| o.to_string());
    let attributes = serde_json::Value::Object(field.attributes.clone()).to_string();
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO custom_fields (org_id, scope, name, label, field_type, data_type, \
         default_value, regex, is_compulsory, is_updatable, is_disabled, options, position, \
         attributes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $15) RETURNING id"
    )
    .bind(org.0)
    .bind(field.scope.as_str())
    .bind(&field.name)
    .bind(&field.label)
    .bind(field.field_type.as_str())
    .bind(field.data_type.as_str())
    .bind(&field.default_value)
    .bind(&field.regex)
    .bind(field.is_compulsory)
    .bind(field.is_updatable)
    .bind(field.is_disabled)
    .bind(&options)
    .bind(field.position)
    .bind(&attributes)
    .bind(now_millis())
    .fetch_one(e)
    .await)?)
}

pub async fn count_custom_fields(c: &mut impl Connection, org: OrgId) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM custom_fields WHERE org_id = $1"
    )
    .bind(org.0)
    .fetch_one(e)
    .await)?)
}

/// The org's custom field definitions, of one scope or all, by scope, position and id.
pub async fn list_custom_fields(
    c: &mut impl Connection,
    org: OrgId,
    scope: Option<CustomFieldScope>,
    limit: i64,
) -> Result<Vec<CustomField>, DbError> {
    let sql = format!(
        "SELECT {CUSTOM_FIELD_COLUMNS} FROM custom_fields WHERE org_id = $1 \
         AND ($2 IS NULL OR scope = $2) ORDER BY scope, position, id LIMIT $3"
    );
    let scope = scope.map(|s| s.as_str().to_string());
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CustomField>(&sql)
        .bind(org.0)
        .bind(&scope)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

/// One custom field definition by scope and name.
pub async fn find_custom_field(
    c: &mut impl Connection,
    org: OrgId,
    scope: CustomFieldScope,
    name: &str,
) -> Result<Option<CustomField>, DbError> {
    let sql = format!(
        "SELECT {CUSTOM_FIELD_COLUMNS} FROM custom_fields WHERE org_id = $1 AND scope = $2 \
         AND name = $3"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CustomField>(&sql)
        .bind(org.0)
        .bind(scope.as_str())
        .bind(name)
        .fetch_optional(e)
        .await)?)
}

pub async fn get_custom_field_value(
    c: &mut impl Connection,
    org: OrgId,
    scope: CustomFieldScope,
    entity_id: i64,
    name: &str,
) -> Result<Option<CustomFieldValue>, DbError> {
    let sql = format!(
        "SELECT {VALUE_COLUMNS} FROM custom_field_values WHERE org_id = $1 AND scope = $2 \
         AND entity_id = $3 AND name = $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CustomFieldValue>(&sql)
        .bind(org.0)
        .bind(scope.as_str())
        .bind(entity_id)
        .bind(name)
        .fetch_optional(e)
        .await)?)
}

/// Sets the value of a custom field for one entity, replacing any earlier value.
pub async fn upsert_custom_field_value(
    c: &mut impl Connection,
    org: OrgId,
    scope: CustomFieldScope,
    entity_id: i64,
    name: &str,
    value: &str,
) -> Result<CustomFieldValue, DbError> {
    let sql = format!(
        "INSERT INTO custom_field_values (org_id, scope, entity_id, name, value, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, scope, entity_id, name) DO UPDATE \
         SET value = excluded.value, updated_at = excluded.updated_at RETURNING {VALUE_COLUMNS}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CustomFieldValue>(&sql)
        .bind(org.0)
        .bind(scope.as_str())
        .bind(entity_id)
        .bind(name)
        .bind(value)
        .bind(now_millis())
        .fetch_one(e)
        .await)?)
}

/// The custom field values stored for one entity of a scope, by name, at most `limit`.
pub async fn custom_field_values(
    c: &mut impl Connection,
    org: OrgId,
    scope: CustomFieldScope,
    entity_id: i64,
    limit: i64,
) -> Result<Vec<CustomFieldValue>, DbError> {
    let sql = format!(
        "SELECT {VALUE_COLUMNS} FROM custom_field_values WHERE org_id = $1 AND scope = $2 \
         AND entity_id = $3 ORDER BY name LIMIT $4"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, CustomFieldValue>(&sql)
        .bind(org.0)
        .bind(scope.as_str())
        .bind(entity_id)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}

// ---------------------------------------------------------------- extended fields

pub async fn find_extended_field(
    c: &mut impl Connection,
    org: OrgId,
    entity_type: ExtendedEntityType,
    name: &str,
) -> Result<Option<ExtendedField>, DbError> {
    let sql = format!(
        "SELECT {EXTENDED_COLUMNS} FROM extended_fields WHERE org_id = $1 AND entity_type = $2 \
         AND name = $3"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ExtendedField>(&sql)
        .bind(org.0)
        .bind(entity_type.as_str())
        .bind(name)
        .fetch_optional(e)
        .await)?)
}

pub async fn count_extended_fields(
    c: &mut impl Connection,
    org: OrgId,
    entity_type: ExtendedEntityType,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT COUNT(*) FROM extended_fields WHERE org_id = $1 AND entity_type = $2"
    )
    .bind(org.0)
    .bind(entity_type.as_str())
    .fetch_one(e)
    .await)?)
}

/// Enables an extended field for the org; `actor_id` is recorded as creator (-1 = system).
pub async fn insert_extended_field(
    c: &mut impl Connection,
    org: OrgId,
    field: &NewExtendedField,
    actor_id: i64,
) -> Result<ExtendedField, DbError> {
    let values = serde_json::to_string(&field.possible_values).unwrap_or_else(|_| "[]".into());
    let sql = format!(
        "INSERT INTO extended_fields (org_id, entity_type, name, label, data_type, \
         possible_values, created_by, modified_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $8) RETURNING {EXTENDED_COLUMNS}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ExtendedField>(&sql)
        .bind(org.0)
        .bind(field.entity_type.as_str())
        .bind(&field.name)
        .bind(&field.label)
        .bind(field.data_type.as_str())
        .bind(&values)
        .bind(actor_id)
        .bind(now_millis())
        .fetch_one(e)
        .await)?)
}

/// Changes the label and allowed values of an enabled extended field.
pub async fn update_extended_field(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    label: &str,
    possible_values: &[String],
    actor_id: i64,
) -> Result<Option<ExtendedField>, DbError> {
    let values = serde_json::to_string(possible_values).unwrap_or_else(|_| "[]".into());
    let sql = format!(
        "UPDATE extended_fields SET label = $3, possible_values = $4, modified_by = $5, \
         updated_at = $6 WHERE org_id = $1 AND id = $2 RETURNING {EXTENDED_COLUMNS}"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ExtendedField>(&sql)
        .bind(org.0)
        .bind(id)
        .bind(label)
        .bind(&values)
        .bind(actor_id)
        .bind(now_millis())
        .fetch_optional(e)
        .await)?)
}

/// The org's extended fields, of one entity type or all, by entity type and id.
pub async fn list_extended_fields(
    c: &mut impl Connection,
    org: OrgId,
    entity_type: Option<ExtendedEntityType>,
    limit: i64,
) -> Result<Vec<ExtendedField>, DbError> {
    let sql = format!(
        "SELECT {EXTENDED_COLUMNS} FROM extended_fields WHERE org_id = $1 \
         AND ($2 IS NULL OR entity_type = $2) ORDER BY entity_type, id LIMIT $3"
    );
    let entity_type = entity_type.map(|t| t.as_str().to_string());
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ExtendedField>(&sql)
        .bind(org.0)
        .bind(&entity_type)
        .bind(limit)
        .fetch_all(e)
        .await)?)
}
