//! Currency rules: creating and changing the org's alternate currencies (audited, with an
//! event), resolving names, awarding a currency from an earn rule, and redeeming a currency
//! through the ledger.

use chrono_tz::Tz;
use serde_json::{Value, json};

use super::model::{
    CURRENCIES_PER_ORG_MAX, CurrencyError, CurrencyRow, CurrencyUpdate, NewCurrency,
};
use super::store;
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db, now_millis};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;
use crate::points::ledger::{self, EntryMeta, LedgerError, Scope};
use crate::points::model::{EntryKind, Fixed};
use crate::programs::engine::CompiledProgram;

fn row_json(row: &CurrencyRow) -> Value {
    json!({"id": row.id, "name": row.name, "description": row.description,
        "expiry": row.expiry.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()),
        "active": row.active, "version": row.version})
}

/// The org's currencies.
pub async fn list(db: &Db, org: OrgId) -> Result<Vec<CurrencyRow>, CurrencyError> {
    let mut conn = db.read().await?;
    Ok(store::list_currencies(&mut conn, org).await?)
}

/// The org's currency `id`.
pub async fn get(db: &Db, org: OrgId, id: i64) -> Result<CurrencyRow, CurrencyError> {
    let mut conn = db.read().await?;
    store::get_currency(&mut conn, org, id).await?.ok_or(CurrencyError::NotFound)
}

/// The org's currency called `name` (any case), active or not; 840 otherwise.
pub async fn resolve(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<CurrencyRow, CurrencyError> {
    store::find_currency(c, org, name)
        .await?
        .ok_or_else(|| CurrencyError::Unknown(name.trim().into()))
}

/// Creates a currency with its audit record and `currency.created` event, in one transaction.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn create(
    db: &Db,
    principal: &Principal,
    new: &NewCurrency,
) -> Result<CurrencyRow, CurrencyError> {
    let org = principal.org;
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    if store::count_currencies(&mut tx, org).await? >= CURRENCIES_PER_ORG_MAX {
        return Err(CurrencyError::Invalid(format!(
            "an org may define at most {CURRENCIES_PER_ORG_MAX} currencies"
        )));
    }
    if store::find_currency(&mut tx, org, &new.name).await?.is_some() {
        return Err(CurrencyError::NameTaken(new.name.clone()));
    }
    let expiry = new.expiry.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default());
    let id = store::insert_currency(
        &mut tx,
        org,
        &new.name,
        &new.description,
        expiry.as_deref(),
        new.active,
        now,
    )
    .await
    .map_err(|e| {
        // Two creations of one name can race on PostgreSQL: the loser breaks the unique index.
        if e.is_unique_violation() {
            CurrencyError::NameTaken(new.name.clone())
        } else {
            CurrencyError::Db(e)
        }
    })?;
    let row = store::get_currency(&mut tx, org, id).await?.ok_or(CurrencyError::NotFound)?;
    let after = row_json(&row);
    let change = Change {
        entity_type: "CURRENCY",
        entity_id: id,
        action: "CREATE",
        before: None,
        after: Some(after.clone()),
    };
    audit::record(&mut tx, org, &AuditActor::from(principal), change).await?;
    let event = NewEvent {
        event_type: "currency.created",
        entity_type: "CURRENCY",
        entity_id: id,
        payload: after,
    };
    events::raise(&mut tx, org, Some(principal), event).await?;
    tx.commit().await?;
    Ok(row)
}

/// Changes a currency's description, expiry rule or active flag (its name never changes:
/// program documents refer to it), with its audit record and `currency.updated` event. The
/// expiry rule applies to awards made from then on; lots keep the expiry they were given.
#[tracing::instrument(skip_all, fields(org = principal.org.0, currency = id))]
pub async fn update(
    db: &Db,
    principal: &Principal,
    id: i64,
    update: &CurrencyUpdate,
) -> Result<CurrencyRow, CurrencyError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let before = store::get_currency(&mut tx, org, id).await?.ok_or(CurrencyError::NotFound)?;
    let mut row = before.clone();
    if let Some(description) = &update.description {
        row.description = description.clone();
    }
    if let Some(expiry) = &update.expiry {
        row.expiry = expiry.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default());
    }
    if let Some(active) = update.active {
        row.active = active;
    }
    if !store::update_currency(&mut tx, org, &row, now_millis()).await? {
        return Err(CurrencyError::NotFound);
    }
    let after = store::get_currency(&mut tx, org, id).await?.ok_or(CurrencyError::NotFound)?;
    let change = Change {
        entity_type: "CURRENCY",
        entity_id: id,
        action: "UPDATE",
        before: Some(row_json(&before)),
        after: Some(row_json(&after)),
    };
    audit::record(&mut tx, org, &AuditActor::from(principal), change).await?;
    let event = NewEvent {
        event_type: "currency.updated",
        entity_type: "CURRENCY",
        entity_id: id,
        payload: row_json(&after),
    };
    events::raise(&mut tx, org, Some(principal), event).await?;
    tx.commit().await?;
    Ok(after)
}

/// When an award of `currency` made now under `program` expires: the currency's own rule, else
/// the program's.
pub fn award_expiry(
    currency: &CurrencyRow,
    program: &CompiledProgram,
    now: i64,
    tz: Tz,
) -> Option<i64> {
    match currency.expiry_doc() {
        Some(rule) => {
            let fixed =
                crate::programs::engine::validate_expiry_doc("expiry", &rule).ok().flatten();
            crate::programs::engine::expiry_instant(&rule, fixed, now, tz)
        }
        None => program.points_expiry(now, tz),
    }
}

/// The org's active currency an earn rule names, for an award (None when it no longer exists
/// or was deactivated: the rule then awards nothing).
pub async fn for_award(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<Option<CurrencyRow>, crate::db::DbError> {
    Ok(store::find_currency(c, org, name).await?.filter(|row| row.active))
}

/// A currency redemption to make.
#[derive(Clone, Copy, Debug)]
pub struct CurrencyRedeem<'a> {
    pub customer: i64,
    pub program: i64,
    pub currency: &'a CurrencyRow,
    pub amount: Fixed,
    pub bill_number: &'a str,
    pub external_reference: &'a str,
    pub notes: &'a str,
    pub till: Option<i64>,
    /// False: check only, write nothing.
    pub commit: bool,
}

/// What a currency redemption came to.
#[derive(Clone, Copy, Debug)]
pub struct CurrencyRedeemed {
    pub redemption_id: Option<i64>,
    /// The currency balance after (before, when only checked).
    pub balance: Fixed,
}

/// Why a currency redemption was refused.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("{requested} {currency} asked, {available} available")]
    MoreThanAvailable { currency: String, requested: Fixed, available: Fixed },
    #[error("customer is marked as fraud")]
    Fraud,
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Spends `amount` of the currency from the customer's lots of it, soonest-expiring first, as
/// a `REDEEM` entry and a redemption row carrying the currency (so that `POST
/// /v2/points/reverse` gives it back exactly once) — in one transaction with the customer's
/// program account locked, so that concurrent redemptions never take more than the balance.
#[tracing::instrument(skip_all, fields(org = org.0, customer = r.customer))]
pub async fn redeem(
    db: &Db,
    principal: Option<&Principal>,
    org: OrgId,
    r: &CurrencyRedeem<'_>,
    now: i64,
) -> Result<CurrencyRedeemed, RedeemError> {
    let mut tx = db.begin_write().await?;
    let customer = crate::customers::store::get_customer(
        &mut tx,
        org,
        crate::customers::model::CustomerId(r.customer),
    )
    .await?;
    let fraud = customer.and_then(|c| c.fraud_status).is_some_and(|s| {
        matches!(s.trim().to_ascii_uppercase().as_str(), "MARKED" | "CONFIRMED" | "RECONFIRMED")
    });
    if fraud {
        return Err(RedeemError::Fraud);
    }
    let scope = Scope { org, customer: r.customer, program: r.program, till: r.till, now };
    let balance = ledger::open_currency_account(&mut tx, scope, r.currency.id).await?;
    ledger::expire_customer(&mut tx, scope).await?;
    let current = crate::points::store_currency::currency_balance(
        &mut tx,
        org,
        r.customer,
        r.program,
        r.currency.id,
    )
    .await?
    .map(|b| b.current_points)
    .unwrap_or(balance.current_points);
    let refuse = |available: i64| RedeemError::MoreThanAvailable {
        currency: r.currency.name.clone(),
        requested: r.amount,
        available: Fixed(available.max(0)),
    };
    if current < r.amount.0 {
        return Err(refuse(current));
    }
    if !r.commit {
        return Ok(CurrencyRedeemed { redemption_id: None, balance: Fixed(current) });
    }
    let meta = EntryMeta { reference: r.bill_number, note: r.notes, ..EntryMeta::default() };
    let entry = ledger::spend_in(&mut tx, scope, r.currency.id, EntryKind::Redeem, r.amount, meta)
        .await
        .map_err(|e| match e {
            LedgerError::Insufficient { available } => refuse(available.0),
            LedgerError::NotPositive => refuse(current),
            LedgerError::Db(db) => RedeemError::Db(db),
        })?;
    let id = super::store::insert_currency_redemption(
        &mut tx,
        org,
        &super::store::NewCurrencyRedemption {
            customer_id: r.customer,
            program_id: r.program,
            currency_id: r.currency.id,
            amount: r.amount.0,
            bill_number: r.bill_number,
            external_reference: r.external_reference,
            notes: r.notes,
            till_id: r.till,
            entry_id: entry,
            created_at: now,
        },
    )
    .await?;
    let actor = principal.map(AuditActor::from).unwrap_or_else(AuditActor::system);
    let after = json!({"customerId": r.customer, "programId": r.program,
        "alternateCurrencyId": r.currency.id, "amount": r.amount.to_f64(),
        "billNumber": r.bill_number, "entryId": entry});
    let change = Change {
        entity_type: "CURRENCY_REDEMPTION",
        entity_id: id,
        action: "REDEEM",
        before: None,
        after: Some(after),
    };
    audit::record(&mut tx, org, &actor, change).await?;
    events::raise(
        &mut tx,
        org,
        principal,
        NewEvent {
            event_type: "currency.redeemed",
            entity_type: "CUSTOMER",
            entity_id: r.customer,
            payload: json!({"redemptionId": id, "programId": r.program,
                "alternateCurrencyName": r.currency.name, "amount": r.amount.to_f64(),
                "billNumber": r.bill_number}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(CurrencyRedeemed { redemption_id: Some(id), balance: Fixed(current - r.amount.0) })
}
