//! Staff rules: accounts and their verification by one-time codes, access tokens and the
//! principal they stand for, password and identifier changes, transfers, removal, lists, and
//! the stores a caller may see (`StoreScope`, shared with the Task API).

use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::model::{
    IdentifierKind, NewStaff, OTP_ATTEMPTS_MAX, OTP_DIGITS, OTP_PURPOSE_CHANGE, OTP_PURPOSE_VERIFY,
    OTP_SENDS_PER_HOUR_MAX, OTP_VALIDITY_MILLIS, PlaceCode, Placement, STATUS_ACTIVE,
    STATUS_PENDING, STATUS_REMOVED, StaffChanges, StaffError, StaffId, TOKEN_TTL_SECONDS,
    TOKENS_PER_STAFF_MAX, check_password,
};
use super::store::{self, NewOtp, NewStaffRow, PlaceTable, StaffFilter, StaffRow};
use crate::audit::{self, AuditActor, Change};
use crate::auth::password::{hash_secret, random_token, verify_secret};
use crate::auth::{Actor, Level, Permissions, Principal, Resource};
use crate::comms::{self, Channel, Recipient, SendRequest, TemplateRef};
use crate::db::{Connection, Db, DbError, now_millis};
use crate::events::{self, NewEvent};
use crate::org::model::{OrgId, Store, StoreId};
use crate::org::store as org_store;

/// The audit and event entity of a staff account.
pub const STAFF_ENTITY: &str = "STAFF";
/// Prefix of staff access tokens (tells them apart in logs and support tickets).
pub const TOKEN_PREFIX: &str = "perks_staff_";

// ---------------------------------------------------------------- who may see which stores

/// The stores a caller works with: a till or store associate sees its store, a zone or concept
/// associate the stores of its zone or concept, an OAuth client or admin token the whole org.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreScope {
    Store(i64),
    Zone(i64),
    Concept(i64),
    Org,
}

impl StoreScope {
    /// True when the caller is bound to one store (a till, or an associate of one store).
    pub fn store(self) -> Option<i64> {
        match self {
            StoreScope::Store(id) => Some(id),
            _ => None,
        }
    }

    /// True when `store` is one of the scope's stores.
    pub fn covers(self, store: &Store) -> bool {
        match self {
            StoreScope::Store(id) => store.id == id,
            StoreScope::Zone(id) => store.zone_id == id,
            StoreScope::Concept(id) => store.concept_id == id,
            StoreScope::Org => true,
        }
    }

    /// The SQL condition limiting a store-id column to the scope, with the scope's id at
    /// placeholder `$n` (none for the whole org: the org id condition is enough).
    pub fn condition(self, column: &str, n: usize) -> Option<(String, i64)> {
        match self {
            StoreScope::Store(id) => Some((format!("{column} = ${n}"), id)),
            StoreScope::Zone(id) => {
                Some((format!("{column} IN (SELECT id FROM stores WHERE zone_id = ${n})"), id))
            }
            StoreScope::Concept(id) => {
                Some((format!("{column} IN (SELECT id FROM stores WHERE concept_id = ${n})"), id))
            }
            StoreScope::Org => None,
        }
    }
}

/// The scope of a principal (see [`StoreScope`]).
pub async fn scope_of(
    c: &mut impl Connection,
    principal: &Principal,
) -> Result<StoreScope, DbError> {
    Ok(match &principal.actor {
        Actor::Till { .. } => StoreScope::Store(principal.store.map_or(-1, |s| s.0)),
        Actor::Staff { id, .. } => match store::staff_by_id(c, principal.org, *id).await? {
            Some(row) => match (row.store_id, row.zone_id, row.concept_id) {
                (Some(store), _, _) => StoreScope::Store(store),
                (None, Some(zone), _) => StoreScope::Zone(zone),
                (None, None, Some(concept)) => StoreScope::Concept(concept),
                _ => StoreScope::Store(-1),
            },
            // An account removed while its token was in flight sees nothing.
            None => StoreScope::Store(-1),
        },
        Actor::OAuthClient { .. } | Actor::Admin { .. } => StoreScope::Org,
    })
}

// ---------------------------------------------------------------- authentication

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The principal of a staff access token: the associate, its store, the staff permissions.
/// `None` when the token is unknown, revoked, expired or its account is no longer active.
pub async fn authenticate_token(db: &Db, token: &str) -> Result<Option<Principal>, DbError> {
    let mut conn = db.read().await?;
    let Some(creds) = store::token_credentials(&mut conn, &sha256_hex(token), now_millis()).await?
    else {
        return Ok(None);
    };
    Ok(Some(Principal {
        org: OrgId(creds.org_id),
        actor: Actor::Staff {
            id: creds.staff_id,
            token_id: creds.token_id,
            username: creds.username,
        },
        store: creds.store_id.map(StoreId),
        till: None,
        permissions: Permissions::staff(),
        request_id: None,
    }))
}

/// Allows a staff caller to act on its own account only, and others with `level` on Staff.
pub fn require_self_or(
    principal: &Principal,
    staff: StaffId,
    level: Level,
) -> Result<(), StaffError> {
    match &principal.actor {
        Actor::Staff { id, .. } if *id == staff.0 => Ok(()),
        Actor::Staff { .. } => {
            Err(StaffError::Forbidden("A staff token may only change its own account".into()))
        }
        _ => principal
            .require(Resource::Staff, level)
            .map_err(|e| StaffError::Forbidden(e.message.into_owned())),
    }
}

/// Allows org-level callers with Staff write, never a staff token (creating, moving and
/// removing accounts is the org's business, not an associate's).
pub fn require_staff_admin(principal: &Principal) -> Result<(), StaffError> {
    if matches!(principal.actor, Actor::Staff { .. }) {
        return Err(StaffError::Forbidden(
            "A staff token cannot create, transfer or remove staff accounts".into(),
        ));
    }
    principal
        .require(Resource::Staff, Level::Write)
        .map_err(|e| StaffError::Forbidden(e.message.into_owned()))
}

async fn hash_password(password: &str) -> Result<String, StaffError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_secret(&password))
        .await
        .map_err(|e| StaffError::Invalid(format!("password hashing failed: {e}")))?
        .map_err(|e| StaffError::Invalid(format!("password hashing failed: {e}")))
}

async fn password_matches(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_string(), hash.to_string());
    tokio::task::spawn_blocking(move || verify_secret(&password, &hash)).await.unwrap_or(false)
}

// ---------------------------------------------------------------- records

/// The account as the audit log and events see it (never the password hash).
fn audit_state(row: &StaffRow) -> Value {
    json!({"username": row.username, "firstname": row.first_name, "lastname": row.last_name,
        "title": row.title, "type": row.staff_type, "mobile": row.mobile, "email": row.email,
        "mobileVerified": row.mobile_verified, "emailVerified": row.email_verified,
        "storeId": row.store_id, "zoneId": row.zone_id, "conceptId": row.concept_id,
        "status": row.status})
}

/// Writes the audit record and the `staff.<event>` event of a change, in the caller's
/// transaction.
async fn record(
    c: &mut impl Connection,
    principal: &Principal,
    id: i64,
    action: &str,
    event: Option<&str>,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), DbError> {
    let change =
        Change { entity_type: STAFF_ENTITY, entity_id: id, action, before, after: after.clone() };
    audit::record(c, principal.org, &AuditActor::from(principal), change).await?;
    if let Some(event) = event {
        let event_type = format!("staff.{event}");
        let new = NewEvent {
            event_type: &event_type,
            entity_type: STAFF_ENTITY,
            entity_id: id,
            payload: json!({"staffId": id, "staff": after}),
        };
        events::raise(c, principal.org, Some(principal), new).await?;
    }
    Ok(())
}

async fn load(c: &mut impl Connection, org: OrgId, id: StaffId) -> Result<StaffRow, StaffError> {
    store::staff_by_id(c, org, id.0).await?.ok_or(StaffError::NotFound)
}

/// An account named by id and username: both must designate it (when both are given).
async fn load_named(
    c: &mut impl Connection,
    org: OrgId,
    id: Option<StaffId>,
    username: Option<&str>,
) -> Result<StaffRow, StaffError> {
    let row = match (id, username) {
        (Some(id), _) => load(c, org, id).await?,
        (None, Some(name)) => store::staff_by_username(c, org, &name.trim().to_ascii_lowercase())
            .await?
            .ok_or(StaffError::NotFound)?,
        (None, None) => return Err(StaffError::Invalid("id or username is required".into())),
    };
    if let Some(name) = username
        && !name.trim().eq_ignore_ascii_case(&row.username)
    {
        return Err(StaffError::NotFound);
    }
    Ok(row)
}

// ---------------------------------------------------------------- accounts

async fn resolve_place(
    c: &mut impl Connection,
    org: OrgId,
    code: &PlaceCode,
) -> Result<Placement, StaffError> {
    Ok(match code {
        PlaceCode::Store(code) => Placement::Store(
            org_store::find_store_by_code(c, org, code)
                .await?
                .ok_or_else(|| StaffError::UnknownPlace(format!("Unknown storeCode '{code}'")))?
                .id,
        ),
        PlaceCode::Zone(code) => Placement::Zone(
            store::place_id_by_code(c, org, PlaceTable::Zones, code)
                .await?
                .ok_or_else(|| StaffError::UnknownPlace(format!("Unknown zoneCode '{code}'")))?,
        ),
        PlaceCode::Concept(code) => Placement::Concept(
            store::place_id_by_code(c, org, PlaceTable::Concepts, code)
                .await?
                .ok_or_else(|| StaffError::UnknownPlace(format!("Unknown ConceptCode '{code}'")))?,
        ),
    })
}

/// Creates an account. Given a mobile or e-mail it stays `PENDING` until each is verified by
/// OTP (Send/Validate OTP); without either it is `ACTIVE` at once.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn add(db: &Db, principal: &Principal, new: NewStaff) -> Result<StaffId, StaffError> {
    let org = principal.org;
    check_password("password", &new.password)?;
    let password_hash = hash_password(&new.password).await?;
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    let placement = resolve_place(&mut tx, org, &new.place_code).await?;
    if store::staff_by_username(&mut tx, org, &new.username).await?.is_some() {
        return Err(StaffError::UsernameTaken(new.username));
    }
    for (kind, value) in
        [(IdentifierKind::Mobile, &new.mobile), (IdentifierKind::Email, &new.email)]
    {
        if let Some(value) = value
            && store::staff_holding(&mut tx, org, kind, value).await?.is_some()
        {
            return Err(StaffError::IdentifierTaken(identifier_name(kind)));
        }
    }
    let status =
        if new.mobile.is_some() || new.email.is_some() { STATUS_PENDING } else { STATUS_ACTIVE };
    let row = NewStaffRow {
        username: &new.username,
        password_hash: &password_hash,
        first_name: &new.first_name,
        last_name: &new.last_name,
        title: &new.title,
        staff_type: new.staff_type.as_str(),
        mobile: new.mobile.as_deref(),
        email: new.email.as_deref(),
        placement,
        status,
    };
    let id = match store::insert_staff(&mut tx, org, &row, now).await {
        Ok(id) => id,
        // Two requests raced for one username or identifier; the other one won.
        Err(e) if e.is_unique_violation() => return Err(StaffError::UsernameTaken(new.username)),
        Err(e) => return Err(e.into()),
    };
    let created = load(&mut tx, org, StaffId(id)).await?;
    record(&mut tx, principal, id, "CREATE", Some("created"), None, Some(audit_state(&created)))
        .await?;
    tx.commit().await?;
    Ok(StaffId(id))
}

fn identifier_name(kind: IdentifierKind) -> &'static str {
    match kind {
        IdentifierKind::Mobile => "mobile number",
        IdentifierKind::Email => "e-mail address",
    }
}

/// Exchanges a username and password for an access token and its lifetime in seconds.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn issue_token(
    db: &Db,
    principal: &Principal,
    username: &str,
    password: &str,
) -> Result<(String, i64, StaffId), StaffError> {
    let org = principal.org;
    let row = {
        let mut conn = db.read().await?;
        store::staff_by_username(&mut conn, org, &username.trim().to_ascii_lowercase()).await?
    };
    let Some(row) = row else { return Err(StaffError::BadCredentials) };
    if !password_matches(password, &row.password_hash).await {
        return Err(StaffError::BadCredentials);
    }
    if row.status != STATUS_ACTIVE {
        return Err(StaffError::NotActive);
    }
    let token = format!("{TOKEN_PREFIX}{}", random_token(40));
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    store::insert_token(
        &mut tx,
        org,
        row.id,
        &sha256_hex(&token),
        row.credential_version,
        now + TOKEN_TTL_SECONDS * 1_000,
        now,
    )
    .await?;
    store::revoke_oldest_tokens(&mut tx, org, row.id, TOKENS_PER_STAFF_MAX, now).await?;
    record(&mut tx, principal, row.id, "LOGIN", None, None, None).await?;
    tx.commit().await?;
    Ok((token, TOKEN_TTL_SECONDS, StaffId(row.id)))
}

/// Revokes the access token the request came with.
pub async fn logout(db: &Db, principal: &Principal) -> Result<StaffId, StaffError> {
    let Actor::Staff { id, token_id, .. } = &principal.actor else {
        return Err(StaffError::Invalid(
            "Logout needs the staff access token in X-CAP-API-ACCESS-TOKEN".into(),
        ));
    };
    let mut tx = db.begin_write().await?;
    store::revoke_token(&mut tx, principal.org, *token_id, now_millis()).await?;
    record(&mut tx, principal, *id, "LOGOUT", None, None, None).await?;
    tx.commit().await?;
    Ok(StaffId(*id))
}

/// One account by id or username.
pub async fn get(
    db: &Db,
    org: OrgId,
    id: Option<StaffId>,
    username: Option<&str>,
) -> Result<StaffRow, StaffError> {
    let mut conn = db.read().await?;
    load_named(&mut conn, org, id, username).await
}

/// Changes names, title and type. Identifiers change only through Change Identifier (OTP);
/// sending the current value again is accepted.
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn edit(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    username: Option<&str>,
    changes: &StaffChanges,
    identifiers: &[(IdentifierKind, String)],
) -> Result<StaffRow, StaffError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let before = load_named(&mut tx, org, Some(id), username).await?;
    for (kind, value) in identifiers {
        let current = match kind {
            IdentifierKind::Mobile => &before.mobile,
            IdentifierKind::Email => &before.email,
        };
        if current.as_deref() != Some(value.as_str()) {
            return Err(StaffError::Invalid(format!(
                "The {} changes only through changeIdentifier (sendOtp, then validateOtp)",
                identifier_name(*kind)
            )));
        }
    }
    let mut after = before.clone();
    if let Some(v) = &changes.first_name {
        after.first_name = v.clone();
    }
    if let Some(v) = &changes.last_name {
        after.last_name = v.clone();
    }
    if let Some(v) = &changes.title {
        after.title = v.clone();
    }
    if let Some(v) = changes.staff_type {
        after.staff_type = v.as_str().to_string();
    }
    let now = now_millis();
    store::update_details(&mut tx, org, id.0, &after, now).await?;
    let after = load(&mut tx, org, id).await?;
    record(
        &mut tx,
        principal,
        id.0,
        "UPDATE",
        Some("updated"),
        Some(audit_state(&before)),
        Some(audit_state(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Sets a new password after checking the old one; every token issued before stops working.
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn change_password(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    username: Option<&str>,
    old_password: &str,
    new_password: &str,
) -> Result<(), StaffError> {
    let org = principal.org;
    check_password("newPassword", new_password)?;
    let row = {
        let mut conn = db.read().await?;
        load_named(&mut conn, org, Some(id), username).await?
    };
    if !password_matches(old_password, &row.password_hash).await {
        return Err(StaffError::BadCredentials);
    }
    let hash = hash_password(new_password).await?;
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    // The hash read before hashing must still be current: a concurrent change wins otherwise.
    let current = load(&mut tx, org, id).await?;
    if current.credential_version != row.credential_version {
        return Err(StaffError::BadCredentials);
    }
    store::set_password(&mut tx, org, id.0, &hash, now).await?;
    store::revoke_all_tokens(&mut tx, org, id.0, now).await?;
    record(&mut tx, principal, id.0, "CHANGE_PASSWORD", None, None, None).await?;
    tx.commit().await?;
    Ok(())
}

/// Moves a store associate from one store to another. Task entries stay with the associate.
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn transfer(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    from_code: &str,
    to_code: &str,
) -> Result<StaffRow, StaffError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let before = load(&mut tx, org, id).await?;
    if before.scope_type != "STORE" {
        return Err(StaffError::Invalid(
            "Only store staff can be transferred; this account belongs to a zone or concept".into(),
        ));
    }
    if !before.store_code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(from_code.trim())) {
        return Err(StaffError::Invalid(format!(
            "The account is not at store '{}' (fromStoreCode)",
            from_code.trim()
        )));
    }
    let to = org_store::find_store_by_code(&mut tx, org, to_code.trim())
        .await?
        .ok_or_else(|| StaffError::UnknownPlace(format!("Unknown toStoreCode '{to_code}'")))?;
    store::set_store(&mut tx, org, id.0, to.id, now_millis()).await?;
    let after = load(&mut tx, org, id).await?;
    record(
        &mut tx,
        principal,
        id.0,
        "TRANSFER",
        Some("transferred"),
        Some(audit_state(&before)),
        Some(audit_state(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Removes an account: it can no longer log in, its tokens end, its username and identifiers
/// become free. Its task entries are kept (reminders skip it).
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn remove(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    username: Option<&str>,
) -> Result<(), StaffError> {
    let org = principal.org;
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    let before = load_named(&mut tx, org, Some(id), username).await?;
    store::set_status(&mut tx, org, id.0, STATUS_REMOVED, now).await?;
    store::revoke_all_tokens(&mut tx, org, id.0, now).await?;
    let mut after = audit_state(&before);
    after["status"] = json!(STATUS_REMOVED);
    record(
        &mut tx,
        principal,
        id.0,
        "DELETE",
        Some("removed"),
        Some(audit_state(&before)),
        Some(after),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

impl ListPlace {
    pub fn store(store: &Store) -> ListPlace {
        ListPlace::Store { id: store.id, zone: store.zone_id, concept: store.concept_id }
    }
}

/// Where a staff list looks.
#[derive(Clone, Debug)]
pub enum ListPlace {
    /// Everyone who works in the store: its own staff and its zone's and concept's.
    Store {
        id: i64,
        zone: i64,
        concept: i64,
    },
    ZoneCode(String),
    ConceptCode(String),
}

/// A page of live accounts, with the total.
pub async fn list(
    db: &Db,
    org: OrgId,
    place: &ListPlace,
    staff_type: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<StaffRow>, i64), StaffError> {
    let mut conn = db.read().await?;
    let filter = match place {
        ListPlace::Store { id, zone, concept } => {
            StaffFilter::WorkingIn { store: *id, zone: *zone, concept: *concept }
        }
        ListPlace::ZoneCode(code) => StaffFilter::Zone(
            store::place_id_by_code(&mut conn, org, PlaceTable::Zones, code)
                .await?
                .ok_or_else(|| StaffError::UnknownPlace(format!("Unknown zoneCode '{code}'")))?,
        ),
        ListPlace::ConceptCode(code) => StaffFilter::Concept(
            store::place_id_by_code(&mut conn, org, PlaceTable::Concepts, code)
                .await?
                .ok_or_else(|| StaffError::UnknownPlace(format!("Unknown conceptCode '{code}'")))?,
        ),
    };
    Ok(store::list_staff(&mut conn, org, filter, staff_type, false, limit, offset).await?)
}

// ---------------------------------------------------------------- one-time codes

fn code_hash(salt: &str, code: &str) -> String {
    sha256_hex(&format!("{salt}:{code}"))
}

fn new_code() -> (String, String) {
    let mut rng = rand::thread_rng();
    let code =
        format!("{:0width$}", rng.gen_range(0..10u32.pow(OTP_DIGITS)), width = OTP_DIGITS as usize);
    let salt: [u8; 16] = rng.r#gen();
    (code, hex::encode(salt))
}

/// One code sent: to which kind of identifier, and the message that carries it.
#[derive(Clone, Debug)]
pub struct OtpSent {
    pub kind: IdentifierKind,
    pub message_id: i64,
}

/// Records a code for `value` and sends it there (SMS for a mobile, e-mail for an address),
/// in the caller's transaction.
async fn send_code(
    c: &mut impl Connection,
    principal: &Principal,
    staff: i64,
    purpose: &str,
    kind: IdentifierKind,
    value: &str,
    now: i64,
) -> Result<OtpSent, StaffError> {
    let (code, salt) = new_code();
    let otp = NewOtp {
        staff_id: staff,
        purpose,
        kind,
        value,
        salt: &salt,
        hash: &code_hash(&salt, &code),
        expires_at: now + OTP_VALIDITY_MILLIS,
    };
    store::insert_otp(c, principal.org, &otp, now).await?;
    let (channel, subject) = match kind {
        IdentifierKind::Mobile => (Channel::Sms, None),
        IdentifierKind::Email => (Channel::Email, Some("Your verification code".to_string())),
    };
    let body = format!(
        "Your verification code is {{code}}. It is valid for {} minutes.",
        OTP_VALIDITY_MILLIS / 60_000
    );
    let request = SendRequest::new(
        channel,
        Recipient::Address(value.to_string()),
        TemplateRef::Inline { subject, body },
        AuditActor::from(principal),
    )
    .value("code", code);
    let request = SendRequest { purpose: "OTP".into(), ..request };
    let sent = comms::send(c, principal.org, request).await?;
    Ok(OtpSent { kind, message_id: sent.id.0 })
}

async fn check_send_rate(
    c: &mut impl Connection,
    org: OrgId,
    staff: i64,
    count: usize,
    now: i64,
) -> Result<(), StaffError> {
    let recent = store::otps_sent_since(c, org, staff, now - 3_600_000).await?;
    if recent + count as i64 > OTP_SENDS_PER_HOUR_MAX {
        return Err(StaffError::TooManyOtps);
    }
    Ok(())
}

/// Sends a code to each identifier to verify: those the request names (which must be the
/// account's own), else every identifier of the account not verified yet.
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn send_otp(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    username: Option<&str>,
    requested: &[(IdentifierKind, String)],
) -> Result<Vec<OtpSent>, StaffError> {
    let org = principal.org;
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    let row = load_named(&mut tx, org, Some(id), username).await?;
    let own = [
        (IdentifierKind::Mobile, row.mobile.clone(), row.mobile_verified),
        (IdentifierKind::Email, row.email.clone(), row.email_verified),
    ];
    let mut targets: Vec<(IdentifierKind, String)> = Vec::new();
    if requested.is_empty() {
        for (kind, value, verified) in &own {
            if let Some(value) = value
                && !verified
            {
                targets.push((*kind, value.clone()));
            }
        }
    } else {
        for (kind, value) in requested {
            let stored = own.iter().find(|(k, _, _)| k == kind).and_then(|(_, v, _)| v.as_ref());
            if stored != Some(value) {
                return Err(StaffError::Invalid(format!(
                    "The {} is not the account's own; use changeIdentifier to change it",
                    identifier_name(*kind)
                )));
            }
            targets.push((*kind, value.clone()));
        }
    }
    if targets.is_empty() {
        return Err(StaffError::Invalid("The account has no identifier waiting for an OTP".into()));
    }
    check_send_rate(&mut tx, org, id.0, targets.len(), now).await?;
    let mut sent = Vec::with_capacity(targets.len());
    for (kind, value) in &targets {
        sent.push(
            send_code(&mut tx, principal, id.0, OTP_PURPOSE_VERIFY, *kind, value, now).await?,
        );
    }
    let after = json!({"sentTo": targets.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()});
    record(&mut tx, principal, id.0, "SEND_OTP", None, None, Some(after)).await?;
    tx.commit().await?;
    Ok(sent)
}

/// Which code a validation expects: the account, why it was sent, and where.
struct CodeFor<'a> {
    staff: i64,
    purpose: &'a str,
    kind: IdentifierKind,
    value: &'a str,
}

/// Checks `otp` against the latest code of `purpose` sent for `kind` (and `value`, when
/// given): a wrong code counts a try in a transaction of its own, so that the limit holds even
/// though the request fails.
async fn check_code(
    db: &Db,
    org: OrgId,
    expected: &CodeFor<'_>,
    otp: &str,
    now: i64,
) -> Result<i64, StaffError> {
    let latest = {
        let mut conn = db.read().await?;
        store::latest_otp(&mut conn, org, expected.staff, expected.purpose, expected.kind).await?
    };
    let Some(latest) = latest else { return Err(StaffError::BadOtp) };
    let usable = latest.used_at.is_none()
        && latest.expires_at > now
        && latest.attempts < OTP_ATTEMPTS_MAX
        && latest.identifier_value == expected.value;
    if !usable {
        return Err(StaffError::BadOtp);
    }
    if code_hash(&latest.code_salt, otp.trim()) != latest.code_hash {
        let mut tx = db.begin_write().await?;
        store::add_otp_attempt(&mut tx, org, latest.id).await?;
        tx.commit().await?;
        return Err(StaffError::BadOtp);
    }
    Ok(latest.id)
}

/// Verifies one identifier with the password and the code sent to it; the account becomes
/// `ACTIVE` once every identifier it has is verified.
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn validate_otp(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    username: Option<&str>,
    kind: IdentifierKind,
    password: &str,
    otp: &str,
) -> Result<StaffRow, StaffError> {
    let org = principal.org;
    let now = now_millis();
    let row = {
        let mut conn = db.read().await?;
        load_named(&mut conn, org, Some(id), username).await?
    };
    if !password_matches(password, &row.password_hash).await {
        return Err(StaffError::BadCredentials);
    }
    let value = match kind {
        IdentifierKind::Mobile => row.mobile.clone(),
        IdentifierKind::Email => row.email.clone(),
    }
    .ok_or_else(|| StaffError::Invalid(format!("The account has no {}", identifier_name(kind))))?;
    let expected = CodeFor { staff: id.0, purpose: OTP_PURPOSE_VERIFY, kind, value: &value };
    let otp_id = check_code(db, org, &expected, otp, now).await?;
    let mut tx = db.begin_write().await?;
    if !store::use_otp(&mut tx, org, otp_id, now).await? {
        return Err(StaffError::BadOtp);
    }
    let before = load(&mut tx, org, id).await?;
    store::set_identifier(&mut tx, org, id.0, kind, &value, true, now).await?;
    activate_if_verified(&mut tx, org, id, now).await?;
    let after = load(&mut tx, org, id).await?;
    record(
        &mut tx,
        principal,
        id.0,
        "VERIFY_IDENTIFIER",
        Some("updated"),
        Some(audit_state(&before)),
        Some(audit_state(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// A `PENDING` account whose every identifier is verified becomes `ACTIVE`.
async fn activate_if_verified(
    c: &mut impl Connection,
    org: OrgId,
    id: StaffId,
    now: i64,
) -> Result<(), StaffError> {
    let row = load(c, org, id).await?;
    let verified = (row.mobile.is_none() || row.mobile_verified)
        && (row.email.is_none() || row.email_verified);
    if row.status == STATUS_PENDING && verified {
        store::set_status(c, org, id.0, STATUS_ACTIVE, now).await?;
    }
    Ok(())
}

/// Sends a code to a new mobile or e-mail for the account.
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn change_identifier_send(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    kind: IdentifierKind,
    new_value: &str,
) -> Result<OtpSent, StaffError> {
    let org = principal.org;
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    let row = load(&mut tx, org, id).await?;
    if let Some(holder) = store::staff_holding(&mut tx, org, kind, new_value).await? {
        if holder == row.id {
            return Err(StaffError::Invalid(format!(
                "The {} is already the account's own",
                identifier_name(kind)
            )));
        }
        return Err(StaffError::IdentifierTaken(identifier_name(kind)));
    }
    check_send_rate(&mut tx, org, id.0, 1, now).await?;
    let sent =
        send_code(&mut tx, principal, id.0, OTP_PURPOSE_CHANGE, kind, new_value, now).await?;
    let after = json!({"identifierType": kind.as_str()});
    record(&mut tx, principal, id.0, "SEND_OTP", None, None, Some(after)).await?;
    tx.commit().await?;
    Ok(sent)
}

/// Replaces the account's mobile or e-mail with the new value the code was sent to; the new
/// value is verified by the code itself.
#[tracing::instrument(skip_all, fields(org = principal.org.0, staff = id.0))]
pub async fn change_identifier_validate(
    db: &Db,
    principal: &Principal,
    id: StaffId,
    kind: IdentifierKind,
    new_value: &str,
    otp: &str,
) -> Result<StaffRow, StaffError> {
    let org = principal.org;
    let now = now_millis();
    {
        let mut conn = db.read().await?;
        load(&mut conn, org, id).await?;
    }
    let expected = CodeFor { staff: id.0, purpose: OTP_PURPOSE_CHANGE, kind, value: new_value };
    let otp_id = check_code(db, org, &expected, otp, now).await?;
    let mut tx = db.begin_write().await?;
    if !store::use_otp(&mut tx, org, otp_id, now).await? {
        return Err(StaffError::BadOtp);
    }
    let before = load(&mut tx, org, id).await?;
    match store::set_identifier(&mut tx, org, id.0, kind, new_value, true, now).await {
        Ok(()) => {}
        // Another account took the value since the code was sent.
        Err(e) if e.is_unique_violation() => {
            return Err(StaffError::IdentifierTaken(identifier_name(kind)));
        }
        Err(e) => return Err(e.into()),
    }
    activate_if_verified(&mut tx, org, id, now).await?;
    let after = load(&mut tx, org, id).await?;
    record(
        &mut tx,
        principal,
        id.0,
        "CHANGE_IDENTIFIER",
        Some("updated"),
        Some(audit_state(&before)),
        Some(audit_state(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}
