//! Org rules: provisioning a ready-to-use org, adding stores and tills, and the reads behind the org APIs.

use serde_json::json;

use super::model::{
    AdminType, NewOrg, NewStore, NewTill, Org, OrgId, Store, StoreId, Till, TillId, TillUpdate,
};
use super::store;
use crate::audit::{self, AuditActor, Change};
use crate::auth::Permissions;
use crate::auth::password::{hash_secret, hash_till_password, random_token};
use crate::auth::service::ADMIN_TOKEN_PREFIX;
use crate::auth::store as auth_store;
use crate::db::{Db, DbError};
use crate::error::{ApiError, Code};

/// Why an org write was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("{0}")]
    NameTaken(String),
    #[error("{0}")]
    InvalidParent(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<OrgError> for ApiError {
    fn from(e: OrgError) -> Self {
        match e {
            OrgError::NameTaken(m) => ApiError::with_message(Code::EntityNameExists, m),
            OrgError::InvalidParent(m) => ApiError::with_message(Code::InvalidParentEntity, m),
            OrgError::NotFound(m) => ApiError::not_found(m),
            OrgError::Invalid(m) => ApiError::invalid(m),
            OrgError::Db(db) => ApiError::from(db),
        }
    }
}

/// Everything a newcomer needs to call the API for a freshly created org.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedOrg {
    pub org_id: i64,
    pub store_id: i64,
    pub till_id: i64,
    pub till: TillLogin,
    pub oauth: OAuthCredentials,
    pub admin_token: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TillLogin {
    pub username: String,
    pub password: String,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthCredentials {
    pub client_key: String,
    pub client_secret: String,
}

/// Names of the built-in access groups every org starts with.
pub const ADMIN_GROUP: &str = "Admin";
pub const POS_GROUP: &str = "POS";

/// Creates an org with its built-in access groups, one concept, zone, store and admin till, an
/// OAuth client and an admin token, all in one transaction.
#[tracing::instrument(skip_all, fields(name = %new_org.name))]
pub async fn provision_org(
    db: &Db,
    new_org: &NewOrg,
    token_ttl_seconds: i64,
) -> Result<ProvisionedOrg, OrgError> {
    let till_password = random_token(16);
    let client_secret = random_token(40);
    let admin_token = format!("{ADMIN_TOKEN_PREFIX}{}", random_token(40));
    // Hash before the transaction: Argon2 is slow and the SQLite writer is shared.
    let till_hash =
        hash_till_password(&till_password).map_err(|e| OrgError::Invalid(e.to_string()))?;
    let secret_hash = hash_secret(&client_secret).map_err(|e| OrgError::Invalid(e.to_string()))?;
    let admin_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(admin_token.as_bytes()));

    let mut tx = db.begin_write().await?;
    let org = store::insert_org(&mut tx, new_org).await?;
    let admin_json = serde_json::to_string(&Permissions::admin()).unwrap_or_default();
    let pos_json = serde_json::to_string(&Permissions::pos()).unwrap_or_default();
    let admin_group = store::insert_access_group(&mut tx, org, ADMIN_GROUP, &admin_json).await?;
    store::insert_access_group(&mut tx, org, POS_GROUP, &pos_json).await?;
    let concept = store::insert_concept(&mut tx, org, "default.concept", "Default concept").await?;
    let zone = store::insert_zone(&mut tx, org, "default.zone", "Default zone").await?;
    let main_store = NewStore {
        code: "main.store".into(),
        name: "Main store".into(),
        description: String::new(),
        admin_type: AdminType::General,
        is_active: true,
        zone_id: zone,
        concept_id: concept,
        timezone: None,
        currency: None,
        language: None,
        time_zone_id: None,
        currency_id: None,
        language_id: None,
        email: None,
        mobile: None,
        landline: None,
        latitude: None,
        longitude: None,
        address: None,
        city_id: None,
        area_id: None,
        external_ids: Vec::new(),
        custom_fields: serde_json::Map::new(),
    };
    let store_id = store::insert_store(&mut tx, org, &main_store).await?;
    let till_code = format!("{}.{}.till", slug(&new_org.name), org.0);
    let till = NewTill {
        store_id,
        code: till_code.clone(),
        name: till_code.clone(),
        description: "Created with the org".into(),
        admin_type: AdminType::Admin,
        billable: true,
        is_default: true,
        access_group_id: admin_group,
        password_hash: till_hash,
        custom_fields: serde_json::Map::new(),
    };
    let till_id = store::insert_till(&mut tx, org, &till).await?;
    let client_key = random_token(24);
    auth_store::insert_oauth_client(
        &mut tx,
        org,
        &auth_store::NewOAuthClient {
            name: "Default client",
            client_key: &client_key,
            secret_hash: &secret_hash,
            token_ttl_seconds,
            access_group_id: admin_group,
            default_till_id: Some(till_id.0),
        },
    )
    .await?;
    auth_store::insert_admin_token(&mut tx, org, &admin_hash).await?;
    let actor = AuditActor::system();
    let after = json!({"name": new_org.name, "timezone": new_org.timezone.0,
        "currency": new_org.currency.0, "language": new_org.language.0});
    let change = Change {
        entity_type: "ORG",
        entity_id: org.0,
        action: "CREATE",
        before: None,
        after: Some(after),
    };
    audit::record(&mut tx, org, &actor, change).await?;
    crate::programs::service::ensure_default_program(&mut tx, org).await?;
    tx.commit().await?;
    Ok(ProvisionedOrg {
        org_id: org.0,
        store_id: store_id.0,
        till_id: till_id.0,
        till: TillLogin { username: till_code, password: till_password },
        oauth: OAuthCredentials { client_key, client_secret },
        admin_token,
    })
}

/// A login-safe lower-case form of an org name: letters and digits, starting with a letter.
fn slug(name: &str) -> String {
    let mut out: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(20)
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert_str(0, "org");
    }
    out
}

pub async fn get_org(db: &Db, org: OrgId) -> Result<Org, OrgError> {
    let mut conn = db.read().await?;
    store::get_org(&mut conn, org).await?.ok_or_else(|| OrgError::NotFound("Org not found".into()))
}

/// The org's hierarchy view: its parent, its children, and (when asked) its siblings.
pub struct Hierarchy {
    pub org: Org,
    pub parent: Option<Org>,
    pub children: Vec<Org>,
    pub siblings: Vec<Org>,
}

pub async fn hierarchy(db: &Db, org: OrgId, fetch_siblings: bool) -> Result<Hierarchy, OrgError> {
    let mut conn = db.read().await?;
    let me = store::get_org(&mut conn, org)
        .await?
        .ok_or_else(|| OrgError::NotFound("Org not found".into()))?;
    let children = store::orgs_with_parent(&mut conn, org).await?;
    let (parent, siblings) = match me.parent_id {
        Some(parent_id) => {
            let parent = store::get_org(&mut conn, OrgId(parent_id)).await?;
            let siblings = if fetch_siblings {
                store::orgs_with_parent(&mut conn, OrgId(parent_id))
                    .await?
                    .into_iter()
                    .filter(|o| o.id != me.id)
                    .collect()
            } else {
                Vec::new()
            };
            (parent, siblings)
        }
        None => (None, Vec::new()),
    };
    Ok(Hierarchy { org: me, parent, children, siblings })
}

/// Adds a store after checking that its zone and concept belong to the org.
#[tracing::instrument(skip_all, fields(org = org.0))]
pub async fn add_store(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    new: &NewStore,
) -> Result<Store, OrgError> {
    let mut tx = db.begin_write().await?;
    if !store::zone_exists(&mut tx, org, new.zone_id).await? {
        return Err(OrgError::InvalidParent(format!(
            "parentZoneId {} is not a zone of this org",
            new.zone_id.0
        )));
    }
    if !store::concept_exists(&mut tx, org, new.concept_id).await? {
        return Err(OrgError::InvalidParent(format!(
            "parentConceptId {} is not a concept of this org",
            new.concept_id.0
        )));
    }
    let id = store::insert_store(&mut tx, org, new).await.map_err(|e| {
        if e.is_unique_violation() {
            OrgError::NameTaken(format!("Store code '{}' is already used", new.code))
        } else {
            OrgError::Db(e)
        }
    })?;
    let created = store::get_store(&mut tx, org, id)
        .await?
        .ok_or_else(|| OrgError::NotFound("Store not found".into()))?;
    let change = Change {
        entity_type: "STORE",
        entity_id: id.0,
        action: "CREATE",
        before: None,
        after: Some(
            json!({"code": created.code, "name": created.name, "zoneId": created.zone_id, "conceptId": created.concept_id}),
        ),
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(created)
}

/// A till to add, as the API gives it (password in plain text).
pub struct TillInput {
    pub store_id: StoreId,
    pub code: String,
    pub password: String,
    pub description: String,
    pub admin_type: AdminType,
    pub billable: bool,
    pub access_group: String,
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
}

#[tracing::instrument(skip_all, fields(org = org.0))]
pub async fn add_till(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    input: TillInput,
) -> Result<TillId, OrgError> {
    let password = input.password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hash_till_password(&password))
        .await
        .map_err(|e| OrgError::Invalid(e.to_string()))?
        .map_err(|e| OrgError::Invalid(e.to_string()))?;
    let mut tx = db.begin_write().await?;
    if store::get_store(&mut tx, org, input.store_id).await?.is_none() {
        return Err(OrgError::InvalidParent(format!(
            "storeId {} is not a store of this org",
            input.store_id.0
        )));
    }
    let access_group_id =
        store::access_group_id(&mut tx, org, &input.access_group).await?.ok_or_else(|| {
            OrgError::Invalid(format!("accessGroup '{}' does not exist", input.access_group))
        })?;
    let till = NewTill {
        store_id: input.store_id,
        code: input.code.clone(),
        name: input.code.clone(),
        description: input.description,
        admin_type: input.admin_type,
        billable: input.billable,
        is_default: false,
        access_group_id,
        password_hash,
        custom_fields: input.custom_fields,
    };
    let id = store::insert_till(&mut tx, org, &till).await.map_err(|e| {
        if e.is_unique_violation() {
            OrgError::NameTaken(format!("Till name '{}' is already used", input.code))
        } else {
            OrgError::Db(e)
        }
    })?;
    let change = Change {
        entity_type: "TILL",
        entity_id: id.0,
        action: "CREATE",
        before: None,
        after: Some(
            json!({"code": till.code, "storeId": till.store_id.0, "accessGroup": input.access_group}),
        ),
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(id)
}

/// Changes to a till as the API gives them (password in plain text).
#[derive(Default)]
pub struct TillChanges {
    pub description: Option<String>,
    pub billable: Option<bool>,
    pub is_active: Option<bool>,
    pub password: Option<String>,
    pub custom_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

#[tracing::instrument(skip_all, fields(org = org.0))]
pub async fn update_till(
    db: &Db,
    org: OrgId,
    actor: &AuditActor,
    till: TillId,
    changes: TillChanges,
) -> Result<Till, OrgError> {
    let password_hash = match changes.password {
        Some(password) => Some(
            tokio::task::spawn_blocking(move || hash_till_password(&password))
                .await
                .map_err(|e| OrgError::Invalid(e.to_string()))?
                .map_err(|e| OrgError::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let mut tx = db.begin_write().await?;
    let lookup = store::TillLookup { id: Some(till.0), ..Default::default() };
    let before = store::find_till(&mut tx, org, &lookup)
        .await?
        .ok_or_else(|| OrgError::NotFound(format!("Till {} not found", till.0)))?;
    let custom_fields = changes.custom_fields.map(|incoming| {
        let mut merged: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&before.custom_fields).unwrap_or_default();
        merged.extend(incoming);
        merged
    });
    let update = TillUpdate {
        description: changes.description,
        billable: changes.billable,
        is_active: changes.is_active,
        password_hash,
        custom_fields,
    };
    store::update_till(&mut tx, org, till, &update).await?;
    let after = store::find_till(&mut tx, org, &lookup)
        .await?
        .ok_or_else(|| OrgError::NotFound(format!("Till {} not found", till.0)))?;
    let snapshot = |t: &Till| {
        json!({"description": t.description, "billable": t.billable,
        "isActive": t.is_active, "customFields": t.custom_fields})
    };
    let mut after_state = snapshot(&after);
    if update.password_hash.is_some() {
        after_state["passwordChanged"] = json!(true);
    }
    let change = Change {
        entity_type: "TILL",
        entity_id: till.0,
        action: "UPDATE",
        before: Some(snapshot(&before)),
        after: Some(after_state),
    };
    audit::record(&mut tx, org, actor, change).await?;
    tx.commit().await?;
    Ok(after)
}
