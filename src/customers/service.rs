//! Customer rules: registration as an upsert across sources, updates that never touch
//! identifiers, identifier changes, status changes, lookups and search.

use serde_json::{Value, json};

use super::enrolment::{self, Enrolled};
use super::model::{
    CustomerError, CustomerId, CustomerInput, CustomerUpdate, Identifier, IdentifierType,
    LoyaltyType, SourceAccount, check_comm_channels, check_field_values,
};
use super::referrals;
use super::store::{
    self, Attribution, CustomerRow, CustomerRowUpdate, IdentifierRow, NewCustomerRow,
    NewProfileRow, ProfileRow, ProfileRowUpdate,
};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db, Tx, now_millis};
use crate::events::{self, NewEvent};
use crate::fields;
use crate::org::model::OrgId;
use crate::programs::cache::ProgramCache;

/// A non-fatal note about a successful write (v2 `warnings[]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub status: bool,
    pub code: u32,
    pub message: String,
}

impl Warning {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Warning { status: false, code, message: message.into() }
    }
}

/// What a registration did.
#[derive(Debug)]
pub struct AddOutcome {
    pub customer: CustomerId,
    pub created: bool,
    pub warnings: Vec<Warning>,
    /// Loyalty outcomes of enrolment (registration points), in the v2 `sideEffects` shape.
    pub side_effects: Vec<Value>,
}

/// A customer with its profiles and identifiers, as reads show it.
#[derive(Clone, Debug)]
pub struct CustomerView {
    pub row: CustomerRow,
    pub profiles: Vec<ProfileRow>,
    pub identifiers: Vec<IdentifierRow>,
}

impl CustomerView {
    /// The first identifier value of a type in a source account (INSTORE for v1.1 reads).
    pub fn identifier(&self, account: &SourceAccount, kind: IdentifierType) -> Option<&str> {
        self.identifiers
            .iter()
            .find(|i| {
                i.source == account.source.as_str()
                    && i.account_id == account.account_id
                    && i.kind == kind.as_str()
            })
            .map(|i| i.value.as_str())
    }
}

fn attribution(principal: &Principal) -> Attribution {
    Attribution { till_id: principal.till.map(|t| t.0), store_id: principal.store.map(|s| s.0) }
}

/// Registers a customer, or updates the one its identifiers already name (v2 add semantics):
/// - identifiers held in the same source account: that customer's attributes are updated and a
///   warning says identifiers were left unchanged;
/// - identifiers held only in other sources: the new source account joins that customer;
/// - otherwise a new customer is created.
pub async fn add_customer(
    db: &Db,
    programs: &ProgramCache,
    principal: &Principal,
    input: &CustomerInput,
) -> Result<AddOutcome, CustomerError> {
    register(db, programs, principal, input, OnExisting::Update).await
}

/// What a registration does when its identifiers already name a customer in the same source
/// account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExisting {
    /// Update that customer's attributes and warn (v2 add).
    Update,
    /// Refuse: 1014 already registered, or 1016 when only the email is another's (v1.1 add).
    Reject,
}

/// How often a registration that lost a race on an identifier is run again.
const ADD_ATTEMPTS_MAX: u32 = 3;

/// Registers a customer; see [`add_customer`] and [`OnExisting`].
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn register(
    db: &Db,
    programs: &ProgramCache,
    principal: &Principal,
    input: &CustomerInput,
    on_existing: OnExisting,
) -> Result<AddOutcome, CustomerError> {
    // Two registrations of the same new identifier can race on PostgreSQL: the loser's insert
    // breaks the unique index. Running it again then finds the winner's customer.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_register(db, programs, principal, input, on_existing).await {
            Err(CustomerError::Db(e)) if e.is_unique_violation() && attempt < ADD_ATTEMPTS_MAX => {}
            // A racing registration can also commit between our lookups and our own profile
            // checks; a rerun sees it and takes the update path (or fails the same way again).
            Err(CustomerError::IdentifierTaken(_) | CustomerError::EmailTaken)
                if attempt < ADD_ATTEMPTS_MAX => {}
            other => return other,
        }
    }
}

async fn try_register(
    db: &Db,
    programs: &ProgramCache,
    principal: &Principal,
    input: &CustomerInput,
    on_existing: OnExisting,
) -> Result<AddOutcome, CustomerError> {
    if input.profiles.is_empty() {
        return Err(CustomerError::Invalid("profiles must contain at least one profile".into()));
    }
    if !input.profiles.iter().flat_map(|p| &p.identifiers).any(|i| i.kind.is_primary_kind()) {
        return Err(CustomerError::NoPrimaryIdentifier);
    }
    check_field_values("extendedFields", &input.extended_fields)?;
    for profile in &input.profiles {
        check_field_values("fields", &profile.fields)?;
        if let Some(channels) = &profile.comm_channels {
            check_comm_channels(channels)?;
        }
    }
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let validated = validate_fields(&mut tx, org, input).await?;
    let input = &validated;
    let main = &input.profiles[0];
    if mobile_required(&mut tx, org).await?
        && !main.identifiers.iter().any(|i| i.kind == IdentifierType::Mobile)
    {
        return Err(CustomerError::MobileRequired);
    }
    // Under dual eligibility only the org's primary identifier says who a customer is: the
    // others may be shared by several customers.
    let identity: Vec<Identifier> = match dual_eligibility(&mut tx, org).await? {
        Some(primary) => {
            let own: Vec<Identifier> =
                main.identifiers.iter().filter(|i| i.kind == primary).cloned().collect();
            if own.is_empty() {
                return Err(CustomerError::NoPrimaryIdentifier);
            }
            own
        }
        None => main.identifiers.clone(),
    };
    let same_source = owners(&mut tx, org, Some(&main.account), &identity).await?;
    if on_existing == OnExisting::Reject && !same_source.is_empty() {
        return Err(rejection(&mut tx, org, main).await?);
    }
    let outcome = match same_source.as_slice() {
        [] => {
            let elsewhere = owners(&mut tx, org, None, &identity).await?;
            match elsewhere.as_slice() {
                [] => create(&mut tx, principal, input).await?,
                // On PostgreSQL a concurrent registration may commit between the two lookups;
                // then the holder already has this source account and is simply updated.
                [owner] if has_account(&mut tx, org, *owner, &main.account).await? => {
                    if on_existing == OnExisting::Reject {
                        return Err(rejection(&mut tx, org, main).await?);
                    }
                    update_existing(&mut tx, principal, *owner, input).await?
                }
                [owner] => {
                    attach_profiles(&mut tx, principal, *owner, input, 0).await?;
                    AddOutcome {
                        customer: *owner,
                        created: false,
                        warnings: Vec::new(),
                        side_effects: Vec::new(),
                    }
                }
                _ => return Err(conflict(&main.identifiers)),
            }
        }
        [owner] => update_existing(&mut tx, principal, *owner, input).await?,
        _ => return Err(conflict(&main.identifiers)),
    };
    let mut outcome = outcome;
    // Enrolments come before the registration award, so that the program's registration rules
    // see the starting tier and a program already joined here is not joined again.
    let now = now_millis();
    let mut enrollments = input.enrollments.clone();
    let loyalty = input.loyalty_type.unwrap_or(LoyaltyType::Loyalty) == LoyaltyType::Loyalty;
    if input.enroll_in_all_programs && outcome.created && loyalty {
        enrollments.extend(
            enrolment::remaining_programs(&mut tx, programs, principal.org, &enrollments).await?,
        );
    }
    let enrolled =
        enrolment::enrol(&mut tx, programs, principal, outcome.customer, &enrollments, now).await?;
    outcome.side_effects.extend(enrolled.side_effects);
    outcome.warnings.extend(enrolled.warnings);
    if let Some(code) = input.referral_code.as_deref() {
        let warnings = referrals::record_referral(&mut tx, principal, &outcome, code, now).await?;
        outcome.warnings.extend(warnings);
    }
    if outcome.created && input.loyalty_type.unwrap_or(LoyaltyType::Loyalty) == LoyaltyType::Loyalty
    {
        let till = principal.till.map(|t| t.0);
        let awarded = crate::transactions::service::award_registration(
            &mut tx,
            programs,
            org,
            outcome.customer.0,
            principal.store,
            till,
            now,
        )
        .await
        .map_err(|e| match e {
            crate::transactions::model::TransactionError::Db(e) => CustomerError::Db(e),
            other => CustomerError::Invalid(other.to_string()),
        })?;
        match awarded {
            Ok(effects) => outcome.side_effects.extend(effects.iter().map(|e| e.to_json(false))),
            // Enrolment stands; the points that could not be awarded are a warning (00-platform §5.3).
            Err(reason) => outcome
                .warnings
                .push(Warning::new(1010, format!("Registration points not awarded: {reason}"))),
        }
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Org config: several customers may share secondary identifiers (`true` or `1`): dual
/// eligibility.
pub const DUAL_ELIGIBILITY_CONFIG: &str = "CONF_DUAL_ELIGIBILITY_ENABLED";
/// Org config: the identifier that names a customer under dual eligibility: `mobile` (the
/// default), `email` or `externalId`.
pub const PRIMARY_IDENTIFIER_CONFIG: &str = "CONF_PRIMARY_IDENTIFIER";

/// The org's primary identifier when dual eligibility is on; None when it is off.
pub async fn dual_eligibility(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Option<IdentifierType>, CustomerError> {
    let on = fields::store::config_value(c, org, DUAL_ELIGIBILITY_CONFIG)
        .await?
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1"));
    if !on {
        return Ok(None);
    }
    let primary = fields::store::config_value(c, org, PRIMARY_IDENTIFIER_CONFIG)
        .await?
        .and_then(|v| IdentifierType::parse(&v))
        .filter(|k| k.is_primary_kind())
        .unwrap_or(IdentifierType::Mobile);
    Ok(Some(primary))
}

/// The org config that makes a mobile number mandatory for registration (`true` or `1`).
pub const MOBILE_MANDATORY_CONFIG: &str = "CONF_REGISTRATION_MOBILE_MANDATORY";

async fn mobile_required(c: &mut impl Connection, org: OrgId) -> Result<bool, CustomerError> {
    let value = fields::store::config_value(c, org, MOBILE_MANDATORY_CONFIG).await?;
    Ok(value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1")))
}

/// Custom fields of registrations and profile updates belong to this scope.
pub const PROFILE_FIELD_SCOPE: &str = "LOYALTY_REGISTRATION";

/// Checks extended fields against the org's enabled customer fields and profile fields against
/// its registration custom fields, and returns the input with their values normalised.
async fn validate_fields(
    c: &mut impl Connection,
    org: OrgId,
    input: &CustomerInput,
) -> Result<CustomerInput, CustomerError> {
    let mut checked = input.clone();
    checked.extended_fields =
        fields::service::validate_extended_fields(c, org, "customer", &input.extended_fields)
            .await?;
    for profile in &mut checked.profiles {
        profile.fields =
            fields::service::validate_custom_fields(c, org, PROFILE_FIELD_SCOPE, &profile.fields)
                .await?;
    }
    Ok(checked)
}

/// Why a v1.1 registration of a known customer is refused: 1014 when a mobile or external id is
/// taken, 1016 when only the email is.
async fn rejection(
    tx: &mut Tx,
    org: OrgId,
    main: &super::model::ProfileInput,
) -> Result<CustomerError, CustomerError> {
    for identifier in main.identifiers.iter().filter(|i| i.kind != IdentifierType::Email) {
        if store::find_owner(tx, org, Some(&main.account), identifier).await?.is_some() {
            return Ok(CustomerError::AlreadyRegistered);
        }
    }
    Ok(CustomerError::EmailTaken)
}

/// Updates the customer that already holds the registration's main source account.
async fn update_existing(
    tx: &mut Tx,
    principal: &Principal,
    owner: CustomerId,
    input: &CustomerInput,
) -> Result<AddOutcome, CustomerError> {
    let main = &input.profiles[0];
    let update = CustomerUpdate {
        first_name: main.first_name.clone(),
        last_name: main.last_name.clone(),
        loyalty_type: input.loyalty_type,
        fields: Some(main.fields.clone()).filter(|f| !f.is_empty()),
        extended_fields: Some(input.extended_fields.clone()).filter(|f| !f.is_empty()),
        comm_channels: main.comm_channels.clone(),
        enrollments: Vec::new(),
    };
    apply_update(tx, principal, owner, &main.account, &update).await?;
    attach_profiles(tx, principal, owner, input, 1).await?;
    Ok(AddOutcome {
        customer: owner,
        created: false,
        warnings: vec![Warning::new(
            1014,
            "Customer already registered: details updated, identifiers unchanged",
        )],
        side_effects: Vec::new(),
    })
}

/// True when the customer has a profile in the source account.
async fn has_account(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
    account: &SourceAccount,
) -> Result<bool, CustomerError> {
    let profiles = store::profiles(c, org, customer).await?;
    Ok(profiles.iter().any(|p| p.is_account(account)))
}

fn conflict(identifiers: &[Identifier]) -> CustomerError {
    if identifiers.iter().any(|i| i.kind == IdentifierType::Email) {
        CustomerError::EmailTaken
    } else {
        CustomerError::IdentifierTaken("An identifier".into())
    }
}

/// Distinct customers holding any of `identifiers` (in one source account, or anywhere).
pub(crate) async fn owners(
    c: &mut impl Connection,
    org: OrgId,
    account: Option<&SourceAccount>,
    identifiers: &[Identifier],
) -> Result<Vec<CustomerId>, CustomerError> {
    let mut found = Vec::new();
    for identifier in identifiers {
        if let Some(owner) = store::find_owner(c, org, account, identifier).await?
            && !found.contains(&owner)
        {
            found.push(owner);
        }
    }
    Ok(found)
}

async fn create(
    tx: &mut Tx,
    principal: &Principal,
    input: &CustomerInput,
) -> Result<AddOutcome, CustomerError> {
    let org = principal.org;
    let main = &input.profiles[0];
    let first = main.first_name.clone().unwrap_or_default();
    let last = main.last_name.clone().unwrap_or_default();
    let loyalty_type = input.loyalty_type.unwrap_or(LoyaltyType::Loyalty);
    let customer = store::insert_customer(
        tx,
        org,
        &NewCustomerRow {
            first_name: &first,
            last_name: &last,
            loyalty_type: loyalty_type.as_str(),
            registered_at: input.registered_at.unwrap_or_else(now_millis),
            registered_store_id: principal.store.map(|s| s.0),
            registered_till_id: principal.till.map(|t| t.0),
            extended_fields: &input.extended_fields,
        },
    )
    .await?;
    attach_profiles(tx, principal, customer, input, 0).await?;
    let by = principal.actor.audit_identity();
    store::append_status_log(
        tx,
        org,
        customer,
        "ACTIVE",
        "Active",
        "Registered",
        (by.0, Some(by.1)),
    )
    .await?;
    let after = json!({"firstName": first, "lastName": last, "loyaltyType": loyalty_type.as_str(),
        "source": main.account.source.as_str()});
    record(tx, principal, customer, "CREATE", None, Some(after.clone())).await?;
    let event = NewEvent {
        event_type: "customer.created",
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        payload: json!({"customerId": customer.0, "customer": after}),
    };
    events::raise(tx, org, Some(principal), event).await?;
    Ok(AddOutcome { customer, created: true, warnings: Vec::new(), side_effects: Vec::new() })
}

/// Adds the profiles of `input` from index `from` on to `customer`, skipping source accounts it
/// already has, and their identifiers.
async fn attach_profiles(
    tx: &mut Tx,
    principal: &Principal,
    customer: CustomerId,
    input: &CustomerInput,
    from: usize,
) -> Result<(), CustomerError> {
    let org = principal.org;
    let existing = store::profiles(tx, org, customer).await?;
    let dual = dual_eligibility(tx, org).await?;
    let shared = |kind: IdentifierType| dual.is_some_and(|primary| kind != primary);
    for profile in input.profiles.iter().skip(from) {
        let has_account = existing.iter().any(|p| p.is_account(&profile.account));
        if has_account {
            continue;
        }
        for identifier in profile.identifiers.iter().filter(|i| !shared(i.kind)) {
            if let Some(owner) =
                store::find_owner(tx, org, Some(&profile.account), identifier).await?
                && owner != customer
            {
                return Err(match identifier.kind {
                    IdentifierType::Email => CustomerError::EmailTaken,
                    kind => CustomerError::IdentifierTaken(kind.as_str().to_string()),
                });
            }
        }
        let channels = profile.comm_channels.clone().unwrap_or_default();
        store::insert_profile(
            tx,
            org,
            customer,
            &NewProfileRow {
                account: &profile.account,
                first_name: profile.first_name.as_deref().unwrap_or_default(),
                last_name: profile.last_name.as_deref().unwrap_or_default(),
                fields: &profile.fields,
                comm_channels: &channels,
                attribution: attribution(principal),
            },
        )
        .await?;
        let mut seen = Vec::new();
        for identifier in &profile.identifiers {
            if seen.contains(&identifier) {
                continue;
            }
            seen.push(identifier);
            let is_shared = shared(identifier.kind);
            store::insert_identifier_as(tx, org, customer, &profile.account, identifier, is_shared)
                .await?;
        }
        if from > 0 || !existing.is_empty() {
            let event = NewEvent {
                event_type: "customer.profile_added",
                entity_type: "CUSTOMER",
                entity_id: customer.0,
                payload: json!({"customerId": customer.0, "source": profile.account.source.as_str(),
                    "accountId": profile.account.account_id}),
            };
            events::raise(tx, org, Some(principal), event).await?;
        }
    }
    Ok(())
}

async fn record(
    tx: &mut Tx,
    principal: &Principal,
    customer: CustomerId,
    action: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), CustomerError> {
    let change = Change { entity_type: "CUSTOMER", entity_id: customer.0, action, before, after };
    audit::record(tx, principal.org, &AuditActor::from(principal), change).await?;
    Ok(())
}

/// Updates a customer's attributes in one source account (never its identifiers).
#[tracing::instrument(skip_all, fields(org = principal.org.0, customer = customer.0))]
pub async fn update_customer(
    db: &Db,
    programs: &ProgramCache,
    principal: &Principal,
    customer: CustomerId,
    account: &SourceAccount,
    update: &CustomerUpdate,
) -> Result<Enrolled, CustomerError> {
    if let Some(fields) = &update.fields {
        check_field_values("fields", fields)?;
    }
    if let Some(fields) = &update.extended_fields {
        check_field_values("extendedFields", fields)?;
    }
    if let Some(channels) = &update.comm_channels {
        check_comm_channels(channels)?;
    }
    let mut tx = db.begin_write().await?;
    if store::get_customer(&mut tx, principal.org, customer).await?.is_none() {
        return Err(CustomerError::NotFound);
    }
    let mut update = update.clone();
    if let Some(values) = &update.extended_fields {
        update.extended_fields = Some(
            fields::service::validate_extended_fields(&mut tx, principal.org, "customer", values)
                .await?,
        );
    }
    if let Some(values) = &update.fields {
        update.fields = Some(
            fields::service::validate_custom_fields(
                &mut tx,
                principal.org,
                PROFILE_FIELD_SCOPE,
                values,
            )
            .await?,
        );
    }
    apply_update(&mut tx, principal, customer, account, &update).await?;
    let enrolled =
        enrolment::enrol(&mut tx, programs, principal, customer, &update.enrollments, now_millis())
            .await?;
    tx.commit().await?;
    Ok(enrolled)
}

async fn apply_update(
    tx: &mut Tx,
    principal: &Principal,
    customer: CustomerId,
    account: &SourceAccount,
    update: &CustomerUpdate,
) -> Result<(), CustomerError> {
    let org = principal.org;
    let current = store::get_customer(tx, org, customer).await?.ok_or(CustomerError::NotFound)?;
    let profiles = store::profiles(tx, org, customer).await?;
    let profile = profiles.iter().find(|p| p.is_account(account)).ok_or_else(|| {
        CustomerError::InvalidSource(format!(
            "the customer has no {} profile{}",
            account.source.as_str(),
            if account.account_id.is_empty() {
                String::new()
            } else {
                format!(" for account {}", account.account_id)
            }
        ))
    })?;
    let loyalty_type = match update.loyalty_type {
        Some(requested) => {
            let now = LoyaltyType::parse(&current.loyalty_type)?;
            Some(now.change_to(requested)?.as_str())
        }
        None => None,
    };
    let extended_fields = update.extended_fields.as_ref().map(|incoming| {
        let mut merged: serde_json::Map<String, Value> =
            serde_json::from_str(&current.extended_fields).unwrap_or_default();
        merged.extend(incoming.clone());
        merged
    });
    let fields = update.fields.as_ref().map(|incoming| {
        let mut merged: serde_json::Map<String, Value> =
            serde_json::from_str(&profile.fields).unwrap_or_default();
        merged.extend(incoming.clone());
        merged
    });
    // The customer's name follows its INSTORE profile (or its only profile).
    let names_follow = account.source.as_str() == "INSTORE" || profiles.len() == 1;
    let row_update = CustomerRowUpdate {
        first_name: update.first_name.clone().filter(|_| names_follow),
        last_name: update.last_name.clone().filter(|_| names_follow),
        loyalty_type,
        extended_fields,
        ..CustomerRowUpdate::default()
    };
    store::update_customer(tx, org, customer, &row_update).await?;
    let profile_update = ProfileRowUpdate {
        first_name: update.first_name.clone(),
        last_name: update.last_name.clone(),
        fields,
        comm_channels: update.comm_channels.clone(),
        modified_by_till_id: principal.till.map(|t| t.0),
    };
    store::update_profile(tx, org, profile.id, &profile_update).await?;
    let before = json!({"firstName": current.first_name, "lastName": current.last_name,
        "loyaltyType": current.loyalty_type});
    let after_row = store::get_customer(tx, org, customer).await?.ok_or(CustomerError::NotFound)?;
    let after = json!({"firstName": after_row.first_name, "lastName": after_row.last_name,
        "loyaltyType": after_row.loyalty_type, "source": account.source.as_str()});
    record(tx, principal, customer, "UPDATE", Some(before), Some(after.clone())).await?;
    let event = NewEvent {
        event_type: "customer.updated",
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        payload: json!({"customerId": customer.0, "customer": after}),
    };
    events::raise(tx, org, Some(principal), event).await?;
    Ok(())
}

/// Finds the customer named by identifiers in a source account. Several identifiers (dual
/// eligibility) must all name the same customer; a customer of another org is simply not found.
pub async fn resolve(
    c: &mut impl Connection,
    org: OrgId,
    account: &SourceAccount,
    identifiers: &[Identifier],
) -> Result<CustomerId, CustomerError> {
    // Under dual eligibility the primary identifier alone names the customer: the others are
    // ignored, and a lookup without it finds no one.
    let chosen: Vec<Identifier> = match dual_eligibility(c, org).await? {
        Some(primary) => identifiers.iter().filter(|i| i.kind == primary).cloned().collect(),
        None => identifiers.to_vec(),
    };
    if chosen.is_empty() {
        return Err(CustomerError::NotFound);
    }
    let found = owners(c, org, Some(account), &chosen).await?;
    match found.as_slice() {
        [one] => Ok(*one),
        _ => Err(CustomerError::NotFound),
    }
}

/// A customer with profiles and identifiers, or `None` when the org has no such customer.
pub async fn load(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<Option<CustomerView>, CustomerError> {
    let Some(row) = store::get_customer(c, org, customer).await? else { return Ok(None) };
    let profiles = store::profiles(c, org, customer).await?;
    let identifiers = store::identifiers(c, org, customer).await?;
    Ok(Some(CustomerView { row, profiles, identifiers }))
}

/// Adds and removes identifiers of one source account (Link/Delink, identity changes).
#[tracing::instrument(skip_all, fields(org = principal.org.0, customer = customer.0))]
pub async fn change_identifiers(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    account: &SourceAccount,
    add: &[Identifier],
    remove: &[Identifier],
) -> Result<Vec<Warning>, CustomerError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let profiles = store::profiles(&mut tx, org, customer).await?;
    if profiles.is_empty() {
        return Err(CustomerError::NotFound);
    }
    if !profiles.iter().any(|p| p.is_account(account)) {
        return Err(CustomerError::InvalidSource(format!(
            "the customer has no {} profile",
            account.source.as_str()
        )));
    }
    let mut warnings = Vec::new();
    for identifier in remove {
        if !store::delete_identifier(&mut tx, org, customer, account, identifier).await? {
            warnings.push(Warning::new(
                8013,
                format!(
                    "{} {} is not an identifier of the customer",
                    identifier.kind.as_str(),
                    identifier.value
                ),
            ));
        }
    }
    let dual = dual_eligibility(&mut tx, org).await?;
    for identifier in add {
        if store::holds_identifier(&mut tx, org, customer, account, identifier).await? {
            warnings.push(Warning::new(
                1014,
                format!(
                    "{} {} is already an identifier of the customer",
                    identifier.kind.as_str(),
                    identifier.value
                ),
            ));
            continue;
        }
        // Under dual eligibility a secondary identifier may be held by other customers too.
        let shared = dual.is_some_and(|primary| identifier.kind != primary);
        match store::find_owner(&mut tx, org, Some(account), identifier).await? {
            Some(_) if !shared => {
                return Err(match identifier.kind {
                    IdentifierType::Email => CustomerError::EmailTaken,
                    kind => CustomerError::IdentifierTaken(kind.as_str().to_string()),
                });
            }
            _ => store::insert_identifier_as(&mut tx, org, customer, account, identifier, shared)
                .await
                .map_err(|e| {
                    if e.is_unique_violation() {
                        CustomerError::IdentifierTaken(identifier.kind.as_str().to_string())
                    } else {
                        CustomerError::Db(e)
                    }
                })?,
        }
    }
    let remaining = store::identifiers(&mut tx, org, customer).await?;
    // Under dual eligibility the org's primary identifier must stay: it is how the customer is
    // found.
    let keeps_primary = |i: &store::IdentifierRow| {
        IdentifierType::parse(&i.kind).is_some_and(|k| match dual {
            Some(primary) => k == primary,
            None => k.is_primary_kind(),
        })
    };
    if !remaining.iter().any(keeps_primary) {
        return Err(CustomerError::NoPrimaryIdentifier);
    }
    let describe = |list: &[Identifier]| {
        list.iter().map(|i| json!({"type": i.kind.as_str(), "value": i.value})).collect::<Vec<_>>()
    };
    let change = json!({"source": account.source.as_str(), "added": describe(add), "removed": describe(remove)});
    record(&mut tx, principal, customer, "CHANGE_IDENTIFIER", None, Some(change.clone())).await?;
    let event = NewEvent {
        event_type: "customer.identifier_changed",
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        payload: json!({"customerId": customer.0, "change": change}),
    };
    events::raise(&mut tx, org, Some(principal), event).await?;
    tx.commit().await?;
    Ok(warnings)
}

/// Customer status labels and the status each one means.
pub const STATUS_LABELS: [(&str, &str); 7] = [
    ("Active", "ACTIVE"),
    ("Inactive", "INACTIVE"),
    ("Suspicious", "SUSPENDED"),
    ("Suspended", "SUSPENDED"),
    ("Fraud", "SUSPENDED"),
    ("Blocked", "BLOCKED"),
    ("Closed", "CLOSED"),
];

/// Moves a customer to the status of `label` and appends to the status log.
#[tracing::instrument(skip_all, fields(org = principal.org.0, customer = customer.0))]
pub async fn set_status(
    db: &Db,
    principal: &Principal,
    customer: CustomerId,
    label: &str,
    reason: &str,
) -> Result<(), CustomerError> {
    let (label, status) = STATUS_LABELS
        .iter()
        .find(|(l, _)| l.eq_ignore_ascii_case(label.trim()))
        .copied()
        .ok_or_else(|| {
            CustomerError::Invalid(format!(
                "label '{label}' is not a customer status label: use one of {}",
                STATUS_LABELS.iter().map(|(l, _)| *l).collect::<Vec<_>>().join(", ")
            ))
        })?;
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let current =
        store::get_customer(&mut tx, org, customer).await?.ok_or(CustomerError::NotFound)?;
    store::set_status(&mut tx, org, customer, status, label).await?;
    let by = principal.actor.audit_identity();
    store::append_status_log(&mut tx, org, customer, status, label, reason, (by.0, Some(by.1)))
        .await?;
    let before = json!({"status": current.status, "label": current.status_label});
    let after = json!({"status": status, "label": label, "reason": reason});
    record(&mut tx, principal, customer, "STATUS_CHANGE", Some(before), Some(after.clone()))
        .await?;
    let event = NewEvent {
        event_type: "customer.status_changed",
        entity_type: "CUSTOMER",
        entity_id: customer.0,
        payload: json!({"customerId": customer.0, "status": after}),
    };
    events::raise(&mut tx, org, Some(principal), event).await?;
    tx.commit().await?;
    Ok(())
}
