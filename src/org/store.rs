//! SQL for orgs, access groups, concepts, zones, stores and tills; every function is org-first.

use crate::db::{Connection, DbError, now_millis};
use crate::dispatch;

use super::model::{
    ConceptId, EntityRow, EntityType, NewOrg, NewStore, NewTill, Org, OrgId, Store, StoreId, Till,
    TillId, TillUpdate, ZoneId,
};

const ORG_COLUMNS: &str =
    "id, parent_id, name, timezone, currency, language, fiscal_year_start, address, phone";
const STORE_COLUMNS: &str = "id, zone_id, concept_id, code, name, description, admin_type, \
    is_active, timezone, currency, language, time_zone_id, currency_id, language_id, email, \
    mobile, landline, latitude, longitude, address, city_id, area_id, external_ids, custom_fields";
const TILL_COLUMNS: &str = "id, store_id, code, name, description, admin_type, billable, \
    is_active, is_default, custom_fields";

/// Inserts an org and returns its id. (The one insert that has no org yet.)
pub async fn insert_org(c: &mut impl Connection, org: &NewOrg) -> Result<OrgId, DbError> {
    let now = now_millis();
    let id: i64 = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO orgs (name, timezone, currency, language, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id"
    )
    .bind(&org.name)
    .bind(&org.timezone.0)
    .bind(&org.currency.0)
    .bind(&org.language.0)
    .bind(now)
    .fetch_one(e)
    .await)?;
    Ok(OrgId(id))
}

pub async fn get_org(c: &mut impl Connection, org: OrgId) -> Result<Option<Org>, DbError> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = $1");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, Org>(&sql).bind(org.0).fetch_optional(e).await)?)
}

/// Orgs whose parent is `parent` (children of a parent org, or siblings via the shared parent).
pub async fn orgs_with_parent(c: &mut impl Connection, parent: OrgId) -> Result<Vec<Org>, DbError> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM orgs WHERE parent_id = $1 ORDER BY id");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, Org>(&sql).bind(parent.0).fetch_all(e).await)?)
}

/// True when no org exists yet: a brand-new database.
pub async fn no_orgs_exist(c: &mut impl Connection) -> Result<bool, DbError> {
    let count: i64 =
        dispatch!(c, |e| sqlx::query_scalar("SELECT COUNT(*) FROM orgs").fetch_one(e).await)?;
    Ok(count == 0)
}

pub async fn insert_access_group(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
    permissions_json: &str,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO access_groups (org_id, name, permissions, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id"
    )
    .bind(org.0)
    .bind(name)
    .bind(permissions_json)
    .bind(now_millis())
    .fetch_one(e)
    .await)?)
}

/// The id of the org's access group called `name`.
pub async fn access_group_id(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "SELECT id FROM access_groups WHERE org_id = $1 AND name = $2"
    )
    .bind(org.0)
    .bind(name)
    .fetch_optional(e)
    .await)?)
}

pub async fn insert_concept(
    c: &mut impl Connection,
    org: OrgId,
    code: &str,
    name: &str,
) -> Result<ConceptId, DbError> {
    let now = now_millis();
    let id: i64 = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO concepts (org_id, code, name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id"
    )
    .bind(org.0)
    .bind(code)
    .bind(name)
    .bind(now)
    .fetch_one(e)
    .await)?;
    Ok(ConceptId(id))
}

pub async fn insert_zone(
    c: &mut impl Connection,
    org: OrgId,
    code: &str,
    name: &str,
) -> Result<ZoneId, DbError> {
    let now = now_millis();
    let id: i64 = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO zones (org_id, code, name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id"
    )
    .bind(org.0)
    .bind(code)
    .bind(name)
    .bind(now)
    .fetch_one(e)
    .await)?;
    Ok(ZoneId(id))
}

/// True when `zone` is a zone of `org`.
pub async fn zone_exists(
    c: &mut impl Connection,
    org: OrgId,
    zone: ZoneId,
) -> Result<bool, DbError> {
    let found: Option<i64> =
        dispatch!(c, |e| sqlx::query_scalar("SELECT id FROM zones WHERE org_id = $1 AND id = $2")
            .bind(org.0)
            .bind(zone.0)
            .fetch_optional(e)
            .await)?;
    Ok(found.is_some())
}

/// True when `concept` is a concept of `org`.
pub async fn concept_exists(
    c: &mut impl Connection,
    org: OrgId,
    concept: ConceptId,
) -> Result<bool, DbError> {
    let found: Option<i64> = dispatch!(c, |e| sqlx::query_scalar(
        "SELECT id FROM concepts WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(concept.0)
    .fetch_optional(e)
    .await)?;
    Ok(found.is_some())
}

pub async fn insert_store(
    c: &mut impl Connection,
    org: OrgId,
    store: &NewStore,
) -> Result<StoreId, DbError> {
    let now = now_millis();
    let external_ids = serde_json::to_string(&store.external_ids).unwrap_or_else(|_| "[]".into());
    let custom_fields = serde_json::Value::Object(store.custom_fields.clone()).to_string();
    let id: i64 = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO stores (org_id, zone_id, concept_id, code, name, description, admin_type, \
         is_active, timezone, currency, language, time_zone_id, currency_id, language_id, email, \
         mobile, landline, latitude, longitude, address, city_id, area_id, external_ids, \
         custom_fields, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $25) \
         RETURNING id"
    )
    .bind(org.0)
    .bind(store.zone_id.0)
    .bind(store.concept_id.0)
    .bind(&store.code)
    .bind(&store.name)
    .bind(&store.description)
    .bind(store.admin_type.as_str())
    .bind(store.is_active)
    .bind(store.timezone.as_ref().map(|t| t.0.clone()))
    .bind(store.currency.as_ref().map(|t| t.0.clone()))
    .bind(store.language.as_ref().map(|t| t.0.clone()))
    .bind(store.time_zone_id)
    .bind(store.currency_id)
    .bind(store.language_id)
    .bind(&store.email)
    .bind(&store.mobile)
    .bind(&store.landline)
    .bind(&store.latitude)
    .bind(&store.longitude)
    .bind(&store.address)
    .bind(store.city_id)
    .bind(store.area_id)
    .bind(&external_ids)
    .bind(&custom_fields)
    .bind(now)
    .fetch_one(e)
    .await)?;
    Ok(StoreId(id))
}

pub async fn get_store(
    c: &mut impl Connection,
    org: OrgId,
    store: StoreId,
) -> Result<Option<Store>, DbError> {
    let sql = format!("SELECT {STORE_COLUMNS} FROM stores WHERE org_id = $1 AND id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, Store>(&sql)
        .bind(org.0)
        .bind(store.0)
        .fetch_optional(e)
        .await)?)
}

pub async fn find_store_by_code(
    c: &mut impl Connection,
    org: OrgId,
    code: &str,
) -> Result<Option<Store>, DbError> {
    let sql = format!("SELECT {STORE_COLUMNS} FROM stores WHERE org_id = $1 AND code = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, Store>(&sql)
        .bind(org.0)
        .bind(code)
        .fetch_optional(e)
        .await)?)
}

/// Filters for [`list_stores`]: code list, or case-insensitive prefix matches on name/code/external
/// id (OR-ed).
#[derive(Clone, Debug, Default)]
pub struct StoreFilter {
    pub codes: Vec<String>,
    pub name_prefix: Option<String>,
    pub code_prefix: Option<String>,
    pub external_id_prefix: Option<String>,
}

/// Stores of the org matching `filter`, by id, with the total before paging.
pub async fn list_stores(
    c: &mut impl Connection,
    org: OrgId,
    filter: &StoreFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Store>, i64), DbError> {
    // Filters are few and bounded, so they are applied in SQL with LIKE on escaped prefixes.
    let mut conditions = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if !filter.codes.is_empty() {
        let mut placeholders = Vec::new();
        for code in &filter.codes {
            binds.push(code.clone());
            placeholders.push(format!("${}", binds.len() + 1));
        }
        conditions.push(format!("code IN ({})", placeholders.join(", ")));
    } else {
        let mut any = Vec::new();
        for (column, prefix) in [
            ("name", &filter.name_prefix),
            ("code", &filter.code_prefix),
            ("external_ids", &filter.external_id_prefix),
        ] {
            if let Some(prefix) = prefix {
                // Case-insensitive on both backends (SQLite's LIKE is, PostgreSQL's is not).
                let escaped = prefix
                    .to_lowercase()
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                let pattern = if column == "external_ids" {
                    format!("%\"{escaped}%")
                } else {
                    format!("{escaped}%")
                };
                binds.push(pattern);
                any.push(format!("LOWER({column}) LIKE ${} ESCAPE '\\'", binds.len() + 1));
            }
        }
        if !any.is_empty() {
            conditions.push(format!("({})", any.join(" OR ")));
        }
    }
    let mut where_clause = String::from("org_id = $1");
    for condition in conditions {
        where_clause.push_str(" AND ");
        where_clause.push_str(&condition);
    }
    let count_sql = format!("SELECT COUNT(*) FROM stores WHERE {where_clause}");
    let page_sql = format!(
        "SELECT {STORE_COLUMNS} FROM stores WHERE {where_clause} ORDER BY id LIMIT {limit} OFFSET {offset}"
    );
    let total: i64 = dispatch!(c, |e| {
        let mut q = sqlx::query_scalar(&count_sql).bind(org.0);
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_one(e).await
    })?;
    let rows = dispatch!(c, |e| {
        let mut q = sqlx::query_as::<_, Store>(&page_sql).bind(org.0);
        for b in &binds {
            q = q.bind(b);
        }
        q.fetch_all(e).await
    })?;
    Ok((rows, total))
}

pub async fn insert_till(
    c: &mut impl Connection,
    org: OrgId,
    till: &NewTill,
) -> Result<TillId, DbError> {
    let now = now_millis();
    let custom_fields = serde_json::Value::Object(till.custom_fields.clone()).to_string();
    let id: i64 = dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO tills (org_id, store_id, access_group_id, code, name, description, \
         admin_type, billable, is_default, password_hash, custom_fields, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id"
    )
    .bind(org.0)
    .bind(till.store_id.0)
    .bind(till.access_group_id)
    .bind(&till.code)
    .bind(&till.name)
    .bind(&till.description)
    .bind(till.admin_type.as_str())
    .bind(till.billable)
    .bind(till.is_default)
    .bind(&till.password_hash)
    .bind(&custom_fields)
    .bind(now)
    .fetch_one(e)
    .await)?;
    Ok(TillId(id))
}

/// One till looked up by id, code or name (at least one given).
#[derive(Clone, Debug, Default)]
pub struct TillLookup {
    pub id: Option<i64>,
    pub code: Option<String>,
    pub name: Option<String>,
}

pub async fn find_till(
    c: &mut impl Connection,
    org: OrgId,
    lookup: &TillLookup,
) -> Result<Option<Till>, DbError> {
    if let Some(id) = lookup.id {
        let sql = format!("SELECT {TILL_COLUMNS} FROM tills WHERE org_id = $1 AND id = $2");
        return Ok(dispatch!(c, |e| sqlx::query_as::<_, Till>(&sql)
            .bind(org.0)
            .bind(id)
            .fetch_optional(e)
            .await)?);
    }
    let (column, value) = match (&lookup.code, &lookup.name) {
        (Some(code), _) => ("code", code),
        (None, Some(name)) => ("name", name),
        (None, None) => return Ok(None),
    };
    let sql = format!(
        "SELECT {TILL_COLUMNS} FROM tills WHERE org_id = $1 AND {column} = $2 ORDER BY id LIMIT 1"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, Till>(&sql)
        .bind(org.0)
        .bind(value)
        .fetch_optional(e)
        .await)?)
}

/// Tills of the org, optionally of one store and active state, by id, with the total.
pub async fn list_tills(
    c: &mut impl Connection,
    org: OrgId,
    store: Option<StoreId>,
    active: Option<bool>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Till>, i64), DbError> {
    let where_clause =
        "org_id = $1 AND ($2 IS NULL OR store_id = $2) AND ($3 IS NULL OR is_active = $3)";
    let count_sql = format!("SELECT COUNT(*) FROM tills WHERE {where_clause}");
    let page_sql = format!(
        "SELECT {TILL_COLUMNS} FROM tills WHERE {where_clause} ORDER BY id LIMIT $4 OFFSET $5"
    );
    let store_id = store.map(|s| s.0);
    let total: i64 = dispatch!(c, |e| sqlx::query_scalar(&count_sql)
        .bind(org.0)
        .bind(store_id)
        .bind(active)
        .fetch_one(e)
        .await)?;
    let rows = dispatch!(c, |e| sqlx::query_as::<_, Till>(&page_sql)
        .bind(org.0)
        .bind(store_id)
        .bind(active)
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?;
    Ok((rows, total))
}

/// Applies `update` to a till; a new password bumps the credential version, which drops every
/// cached verification of the old one at once.
pub async fn update_till(
    c: &mut impl Connection,
    org: OrgId,
    till: TillId,
    update: &TillUpdate,
) -> Result<bool, DbError> {
    let custom_fields =
        update.custom_fields.as_ref().map(|m| serde_json::Value::Object(m.clone()).to_string());
    let result = dispatch!(c, |e| sqlx::query(
        "UPDATE tills SET description = COALESCE($3, description), \
         billable = COALESCE($4, billable), is_active = COALESCE($5, is_active), \
         password_hash = COALESCE($6, password_hash), \
         credential_version = credential_version + (CASE WHEN $6 IS NULL THEN 0 ELSE 1 END), \
         custom_fields = COALESCE($7, custom_fields), updated_at = $8 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(till.0)
    .bind(&update.description)
    .bind(update.billable)
    .bind(update.is_active)
    .bind(&update.password_hash)
    .bind(&custom_fields)
    .bind(now_millis())
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(result > 0)
}

/// Query for [`list_entities`].
#[derive(Clone, Debug)]
pub struct EntityQuery {
    pub entity_type: EntityType,
    pub ids: Vec<i64>,
    /// Children of one parent: the parent column (`zone_id`, `concept_id`, `store_id`,
    /// `parent_id`) and the parent's id.
    pub parent: Option<(&'static str, i64)>,
    pub start_id: i64,
    pub limit: i64,
    pub modified_since: Option<i64>,
    pub active_only: bool,
}

/// Org entities of one type for the v1.1 entities API, keyset-paged by id.
pub async fn list_entities(
    c: &mut impl Connection,
    org: OrgId,
    query: &EntityQuery,
) -> Result<Vec<EntityRow>, DbError> {
    let (table, parent_column, filterable): (&str, &str, &[&str]) = match query.entity_type {
        EntityType::Store => ("stores", "zone_id", &["zone_id", "concept_id"]),
        EntityType::Till => ("tills", "store_id", &["store_id"]),
        EntityType::Zone => ("zones", "parent_id", &["parent_id"]),
        EntityType::Concept => ("concepts", "parent_id", &["parent_id"]),
        // Perks has no separate store servers: tills play that role.
        EntityType::StrServer => return Ok(Vec::new()),
    };
    let (filter_column, parent_id) = match query.parent {
        Some((column, id)) if filterable.contains(&column) => (column, Some(id)),
        Some(_) => return Ok(Vec::new()),
        None => (parent_column, None),
    };
    let mut sql = format!(
        "SELECT id, code, name, description, is_active, {parent_column} AS parent_id, updated_at \
         FROM {table} WHERE org_id = $1 AND id > $2 AND ($3 IS NULL OR {filter_column} = $3) \
         AND ($4 IS NULL OR updated_at >= $4) AND ($5 = FALSE OR is_active = TRUE)"
    );
    if !query.ids.is_empty() {
        let list: Vec<String> = query.ids.iter().map(i64::to_string).collect();
        sql.push_str(&format!(" AND id IN ({})", list.join(", ")));
    }
    sql.push_str(" ORDER BY id LIMIT $6");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EntityRow>(&sql)
        .bind(org.0)
        .bind(query.start_id)
        .bind(parent_id)
        .bind(query.modified_since)
        .bind(query.active_only)
        .bind(query.limit)
        .fetch_all(e)
        .await)?)
}
