//! The rules of a bill: validation, duplicate numbers, returns, and the loyalty evaluation that
//! turns a bill into points and tier moves through the program and the ledger.

use std::str::FromStr;

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::model::{BillInput, LineInput, ReturnType, TransactionError, TransactionType};
use super::store::{self, LineRow, NewLine, NewTransaction, TransactionRow};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db, Tx};
use crate::error::Code;
use crate::events::{self, NewEvent};
use crate::org::model::{OrgId, StoreId};
use crate::points::ledger::{self, Award, EntryMeta, Scope};
use crate::points::model::Fixed;
use crate::points::store as points_store;
use crate::programs::cache::ProgramCache;
use crate::programs::engine::{
    BillFacts, CompiledProgram, CustomerFacts, ItemFacts, RuleOutcome, TierMetrics,
};
use crate::programs::model::{EarnTrigger, TierMetric};

const DAY_MS: i64 = 86_400_000;

/// The org's transaction settings (org configs), with their defaults.
#[derive(Clone, Debug)]
pub struct TransactionSettings {
    /// Days during which a repeated bill number is refused (604); 0 turns the check off.
    pub unique_days: i64,
    /// Bill numbers unique per till instead of per store.
    pub unique_per_till: bool,
    pub points_return_enabled: bool,
    pub max_days_in_past: i64,
    pub max_minutes_in_future: i64,
    pub min_bill_amount: Option<Fixed>,
    pub max_bill_amount: Option<Fixed>,
    pub simulation_enabled: bool,
    pub retro_enabled: bool,
    pub retro_max_age_days: i64,
    pub retro_delay_hours: i64,
    pub disable_time_conversion: bool,
}

/// The org config keys read by [`TransactionSettings::load`].
pub const SETTING_KEYS: [&str; 12] = [
    "CONF_LOYALTY_BILL_NUMBER_UNIQUE_IN_DAYS",
    "CONF_LOYALTY_BILL_NUMBER_UNIQUE_ONLY_STORE",
    "CONF_POINTS_RETURN_ENABLED",
    "CONF_TRANSACTION_MAX_DAYS_IN_PAST",
    "CONF_TRANSACTION_MAX_MINUTES_IN_FUTURE",
    "CONF_MIN_BILL_AMOUNT",
    "CONF_MAX_BILL_AMOUNT",
    "CONF_ENABLE_SIMULATION_API_MODE",
    "CONF_RETRO_TRANSACTION_ENABLE",
    "CONF_CLIENT_RETRO_MAX_ALLOWED_AGE_DAYS",
    "CONF_CLIENT_RETRO_DELAY_SINCE_REGISTRATION_HOURS",
    "CONF_ORG_DISABLE_MACHINE_TIME_CONV",
];

impl TransactionSettings {
    pub async fn load(c: &mut impl Connection, org: OrgId) -> Result<Self, TransactionError> {
        let values = store::configs(c, org, &SETTING_KEYS).await?;
        let get =
            |key: &str| values.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_string());
        let flag = |key: &str, default: bool| {
            get(key)
                .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
                .unwrap_or(default)
        };
        let number =
            |key: &str, default: i64| get(key).and_then(|v| v.parse().ok()).unwrap_or(default);
        let money = |key: &str| {
            get(key).and_then(|v| Decimal::from_str(&v).ok()).and_then(Fixed::from_decimal)
        };
        Ok(TransactionSettings {
            unique_days: number("CONF_LOYALTY_BILL_NUMBER_UNIQUE_IN_DAYS", 30).clamp(0, 3650),
            unique_per_till: !flag("CONF_LOYALTY_BILL_NUMBER_UNIQUE_ONLY_STORE", true),
            points_return_enabled: flag("CONF_POINTS_RETURN_ENABLED", true),
            max_days_in_past: number("CONF_TRANSACTION_MAX_DAYS_IN_PAST", 3650).clamp(0, 36500),
            max_minutes_in_future: number("CONF_TRANSACTION_MAX_MINUTES_IN_FUTURE", 1440)
                .clamp(0, 525_600),
            min_bill_amount: money("CONF_MIN_BILL_AMOUNT"),
            max_bill_amount: money("CONF_MAX_BILL_AMOUNT"),
            simulation_enabled: flag("CONF_ENABLE_SIMULATION_API_MODE", true),
            retro_enabled: flag("CONF_RETRO_TRANSACTION_ENABLE", false),
            retro_max_age_days: number("CONF_CLIENT_RETRO_MAX_ALLOWED_AGE_DAYS", 30).max(0),
            retro_delay_hours: number("CONF_CLIENT_RETRO_DELAY_SINCE_REGISTRATION_HOURS", 0).max(0),
            disable_time_conversion: flag("CONF_ORG_DISABLE_MACHINE_TIME_CONV", false),
        })
    }
}

/// The time zone and code of a store (its own zone, else the org's).
pub async fn store_locale(
    c: &mut impl Connection,
    org: OrgId,
    store: StoreId,
) -> Result<(Tz, String), TransactionError> {
    let row = crate::org::store::get_store(c, org, store)
        .await?
        .ok_or_else(|| TransactionError::code(Code::InvalidStoreOrTill))?;
    let zone = match row.timezone.as_deref().filter(|z| !z.is_empty()) {
        Some(z) => z.to_string(),
        None => crate::org::store::get_org(c, org).await?.map(|o| o.timezone).unwrap_or_default(),
    };
    Ok((zone.parse().unwrap_or(chrono_tz::UTC), row.code))
}

/// How the loyalty engine runs for a bill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evaluation {
    /// Now, in the same transaction; side effects are returned.
    Inline,
    /// Later, by the worker (`use_asynch=true`); no side effects in the response.
    Async,
    /// Never (`SKIP-DOWNSTREAM: true`): the bill is stored like an import.
    Skip,
    /// Computed and returned, then everything is rolled back.
    Simulate,
}

/// A bill to add, with who it is for and how to evaluate it.
#[derive(Clone, Debug)]
pub struct AddRequest {
    pub input: BillInput,
    pub customer: Option<i64>,
    pub source: String,
    pub account_id: String,
    pub evaluation: Evaluation,
    pub api_version: &'static str,
}

/// One loyalty outcome of a bill.
#[derive(Clone, Debug, PartialEq)]
pub enum SideEffect {
    /// Points awarded (positive) or taken back by a return (negative) in a program.
    Points {
        program_id: i64,
        points: Fixed,
        awarded_at: i64,
        expires_at: Option<i64>,
        promised: bool,
        rules: Vec<String>,
    },
    Tier {
        program_id: i64,
        change_type: &'static str,
        from: String,
        to: String,
        expires_at: Option<i64>,
    },
    /// An alternate currency awarded by the program's rules.
    AlternateCurrency {
        program_id: i64,
        currency: String,
        value: Fixed,
        awarded_at: i64,
        expires_at: Option<i64>,
        promised: bool,
        rules: Vec<String>,
    },
    /// A coupon issued by an earn rule (`coupon: {seriesId}`).
    Coupon {
        program_id: i64,
        rule: String,
        series_id: i64,
        coupon_id: i64,
        code: String,
        coupon_type: String,
        discount_type: &'static str,
        discount_value: Fixed,
        valid_till: i64,
    },
}

impl SideEffect {
    pub fn to_json(&self, raw: bool) -> Value {
        match self {
            SideEffect::Points { program_id, points, awarded_at, expires_at, promised, rules } => {
                let mut v = json!({"type": "points", "awardedPoints": points.to_f64()});
                if raw {
                    v["programId"] = json!(program_id);
                    v["awardOn"] = json!(crate::transactions::time::iso_utc(*awarded_at));
                    v["expiryDate"] = json!(expires_at.map(crate::transactions::time::iso_utc));
                    v["strategyIds"] = json!(rules);
                    v["pointsType"] = json!(if *promised { "PROMISED" } else { "REGULAR" });
                }
                v
            }
            SideEffect::Tier { program_id, change_type, from, to, expires_at } => json!({
                "type": "tier", "changeType": change_type, "programId": program_id,
                "previousTier": from, "newTier": to,
                "tierExpiryDate": expires_at.map(crate::transactions::time::iso_utc),
            }),
            SideEffect::AlternateCurrency {
                program_id,
                currency,
                value,
                awarded_at,
                expires_at,
                promised,
                rules,
            } => {
                let mut v = json!({"type": "alternateCurrency", "alternateCurrencyName": currency,
                    "awardedValue": value.to_f64()});
                if raw {
                    v["programId"] = json!(program_id);
                    v["awardOn"] = json!(crate::transactions::time::iso_utc(*awarded_at));
                    v["expiryDate"] = json!(expires_at.map(crate::transactions::time::iso_utc));
                    v["strategyIds"] = json!(rules);
                    v["pointsType"] = json!(if *promised { "PROMISED" } else { "REGULAR" });
                }
                v
            }
            SideEffect::Coupon {
                program_id,
                rule,
                series_id,
                coupon_id,
                code,
                coupon_type,
                discount_type,
                discount_value,
                valid_till,
            } => {
                let mut v = json!({"type": "coupon", "couponCode": code, "couponType": coupon_type,
                    "discountType": discount_type, "discountValue": discount_value.to_f64(),
                    "seriesId": series_id, "couponId": coupon_id,
                    "validTill": crate::transactions::time::iso_utc(*valid_till)});
                if raw {
                    v["programId"] = json!(program_id);
                    v["strategyIds"] = json!([rule]);
                }
                v
            }
        }
    }
}

/// What adding a bill did.
#[derive(Clone, Debug)]
pub struct AddOutcome {
    pub transaction: TransactionRow,
    pub side_effects: Vec<SideEffect>,
    pub evaluation_log: Vec<RuleOutcome>,
}

/// Validates the bill on its own (amounts, dates, window), before any database work.
pub fn validate(
    input: &BillInput,
    settings: &TransactionSettings,
    now: i64,
) -> Result<(), TransactionError> {
    if input.bill_number.trim().is_empty() || input.bill_number.chars().count() > 100 {
        return Err(TransactionError::coded(
            Code::InvalidTransactionNumber,
            "billNumber is required (at most 100 characters)",
        ));
    }
    if input.line_items.len() > super::model::LINE_ITEMS_MAX {
        return Err(TransactionError::coded(
            Code::InvalidInput,
            format!("at most {} line items", super::model::LINE_ITEMS_MAX),
        ));
    }
    if !input.kind.is_return() {
        if let Some(min) = settings.min_bill_amount.filter(|m| input.amount < *m) {
            return Err(TransactionError::coded(
                Code::InvalidBillAmount,
                format!("bill amount is below the minimum {min}"),
            ));
        }
        if let Some(max) = settings.max_bill_amount.filter(|m| input.amount > *m) {
            return Err(TransactionError::coded(
                Code::InvalidBillAmount,
                format!("bill amount is above the maximum {max}"),
            ));
        }
    }
    if input.billing_at > now + settings.max_minutes_in_future * 60_000 {
        return Err(TransactionError::code(Code::DateTooFarInFuture));
    }
    if input.billing_at < now - settings.max_days_in_past * DAY_MS {
        return Err(TransactionError::code(Code::DateTooFarInPast));
    }
    Ok(())
}

/// Adds a bill (sale, return, not-interested or exchange) and, unless told otherwise, runs the
/// loyalty engine over it in the same database transaction.
#[tracing::instrument(skip_all, fields(org = principal.org.0, bill = %request.input.bill_number))]
pub async fn add(
    db: &Db,
    programs: &ProgramCache,
    principal: &Principal,
    request: AddRequest,
    now: i64,
) -> Result<AddOutcome, TransactionError> {
    let org = principal.org;
    let store_id =
        principal.store.ok_or_else(|| TransactionError::code(Code::InvalidStoreOrTill))?;
    let mut tx = db.begin_write().await?;
    let settings = TransactionSettings::load(&mut tx, org).await?;
    if request.evaluation == Evaluation::Simulate && !settings.simulation_enabled {
        return Err(TransactionError::coded(
            Code::PermissionDenied,
            "simulation is not enabled for the org (CONF_ENABLE_SIMULATION_API_MODE)",
        ));
    }
    validate(&request.input, &settings, now)?;
    let kind = request.input.kind;
    if kind.needs_customer() && request.customer.is_none() {
        return Err(TransactionError::code(Code::CustomerNotFound));
    }
    let customer = if kind.needs_customer() { request.customer } else { None };
    store::lock_bill_number(&mut tx, org, &request.input.bill_number).await?;
    let till = principal.till.map(|t| t.0);
    let ctx = BillContext { org, store_id: store_id.0, till, now, settings: &settings };

    let parent = match kind {
        TransactionType::Return | TransactionType::NotInterestedReturn => Some(
            find_parent(&mut tx, &ctx, &request.input, customer, &request.input.bill_number, kind)
                .await?,
        ),
        TransactionType::Mixed if request.input.line_items.iter().any(|l| l.is_return) => {
            // The exchange is a new bill: its own number is unique like a sale's.
            check_duplicate(&mut tx, &ctx, &request.input.bill_number, request.input.billing_at)
                .await?;
            let number = request.input.parent_bill_number.clone().ok_or_else(|| {
                TransactionError::coded(
                    Code::NumberToReturnNotSet,
                    "parentBillNumber is required for an exchange",
                )
            })?;
            Some(
                find_parent(
                    &mut tx,
                    &ctx,
                    &request.input,
                    customer,
                    &number,
                    TransactionType::Return,
                )
                .await?,
            )
        }
        _ => {
            check_duplicate(&mut tx, &ctx, &request.input.bill_number, request.input.billing_at)
                .await?;
            None
        }
    };
    let plan = match &parent {
        Some((row, lines)) => Some(plan_return(&request.input, row, lines)?),
        None => None,
    };

    let loyalty_status = match request.evaluation {
        Evaluation::Skip => "SKIPPED",
        Evaluation::Async if customer.is_some() => "PENDING",
        _ if customer.is_none() => "NONE",
        _ => "DONE",
    };
    let input = &request.input;
    let payment_modes = input.payment_modes.to_string();
    let extended = Value::Object(input.extended_fields.clone()).to_string();
    let custom = Value::Object(input.custom_fields.clone()).to_string();
    let amount = match (&plan, kind) {
        (Some(plan), TransactionType::Return | TransactionType::NotInterestedReturn) => plan.amount,
        _ => input.amount,
    };
    let id = store::insert_transaction(
        &mut tx,
        org,
        &NewTransaction {
            customer_id: customer,
            program_id: None,
            store_id: store_id.0,
            till_id: till,
            source: &request.source,
            account_id: &request.account_id,
            kind: kind.as_str(),
            bill_number: &input.bill_number,
            billing_at: input.billing_at,
            billing_offset: &input.billing_offset,
            amount: amount.0,
            gross_amount: input.gross_amount.0,
            discount: input.discount.0,
            note: &input.note,
            delivery_status: &input.delivery_status,
            outlier_status: &input.outlier_status,
            not_interested_reason: &input.not_interested_reason,
            return_type: plan.as_ref().map(|p| p.return_type.as_str()),
            parent_id: parent.as_ref().map(|(p, _)| p.id),
            currency_code: input.currency_code.as_deref(),
            local_amount: input.local_amount.map(|f| f.0),
            payment_modes: &payment_modes,
            extended_fields: &extended,
            custom_fields: &custom,
            loyalty_status,
            api_version: request.api_version,
            now,
        },
    )
    .await?;
    let mut line_ids = Vec::with_capacity(input.line_items.len());
    for line in &input.line_items {
        let parent_line = plan
            .as_ref()
            .filter(|_| line.is_return || kind.is_return())
            .and_then(|p| {
                p.lines.iter().find(|l| {
                    l.parent_line.item_code == line.item_code && l.input_serial == line.serial
                })
            })
            .map(|l| l.parent_line.id);
        line_ids.push(insert_line(&mut tx, org, id, line, parent_line).await?);
    }
    if let (Some(plan), Some((parent_row, _))) = (&plan, &parent) {
        store::mark_returned(
            &mut tx,
            org,
            parent_row.id,
            plan.returned_after.0,
            plan.state_after,
            now,
        )
        .await?;
        for line in &plan.lines {
            store::mark_line_returned(
                &mut tx,
                org,
                line.parent_line.id,
                line.qty_after.0,
                line.amount_after.0,
            )
            .await?;
        }
    }

    let mut transaction = store::get(&mut tx, org, id)
        .await?
        .ok_or_else(|| TransactionError::code(Code::TransactionNotFound))?;
    let mut outcome = AddOutcome {
        transaction: transaction.clone(),
        side_effects: Vec::new(),
        evaluation_log: Vec::new(),
    };
    let evaluate_now = matches!(request.evaluation, Evaluation::Inline | Evaluation::Simulate);
    if evaluate_now && let Some(customer) = customer {
        let lines = store::lines(&mut tx, org, id).await?;
        let evaluated = evaluate(
            &mut tx,
            programs,
            &ctx,
            &transaction,
            &lines,
            customer,
            parent.as_ref().map(|(p, _)| p),
            plan.as_ref(),
        )
        .await?;
        transaction.program_id = evaluated.program_id;
        transaction.points = evaluated.points.0;
        outcome.side_effects = evaluated.side_effects;
        outcome.evaluation_log = evaluated.log;
    }
    outcome.transaction = transaction;

    if request.evaluation != Evaluation::Skip {
        events::raise(
            &mut tx,
            org,
            Some(principal),
            NewEvent {
                event_type: if kind.is_return() {
                    "transaction.returned"
                } else {
                    "transaction.added"
                },
                entity_type: "TRANSACTION",
                entity_id: id,
                payload: json!({"id": id, "billNumber": input.bill_number, "type": kind.as_str(),
                "customerId": customer, "amount": amount.to_f64(), "storeId": store_id.0}),
            },
        )
        .await?;
    }
    audit::record(&mut tx, org, &AuditActor::from(principal), Change {
        entity_type: "TRANSACTION",
        entity_id: id,
        action: "CREATE",
        before: None,
        after: Some(json!({"billNumber": input.bill_number, "type": kind.as_str(), "customerId": customer, "amount": amount.to_f64()})),
    })
    .await?;
    if request.evaluation == Evaluation::Simulate {
        drop(tx); // Rolls back: a simulation writes nothing.
    } else {
        tx.commit().await?;
    }
    Ok(outcome)
}

async fn insert_line(
    c: &mut Tx,
    org: OrgId,
    txn: i64,
    line: &LineInput,
    parent_line: Option<i64>,
) -> Result<i64, TransactionError> {
    let attributes = line.attributes.to_string();
    let extended = Value::Object(line.extended_fields.clone()).to_string();
    let custom = Value::Object(line.custom_fields.clone()).to_string();
    Ok(store::insert_line(
        c,
        org,
        txn,
        &NewLine {
            serial: line.serial,
            kind: if line.is_return { "RETURN" } else { "REGULAR" },
            item_code: &line.item_code,
            description: &line.description,
            qty: line.qty.0,
            rate: line.rate.0,
            value: line.value.0,
            discount: line.discount.0,
            amount: line.amount.0,
            parent_line_id: parent_line,
            attributes: &attributes,
            extended_fields: &extended,
            custom_fields: &custom,
        },
    )
    .await?)
}

/// What every step of adding one bill shares.
struct BillContext<'a> {
    org: OrgId,
    store_id: i64,
    till: Option<i64>,
    now: i64,
    settings: &'a TransactionSettings,
}

/// 604 when the number was used in the store (or till) by a bill dated within the org's window
/// of this one (either side).
async fn check_duplicate(
    c: &mut Tx,
    ctx: &BillContext<'_>,
    number: &str,
    billing_at: i64,
) -> Result<(), TransactionError> {
    if ctx.settings.unique_days == 0 {
        return Ok(());
    }
    let window = ctx.settings.unique_days * DAY_MS;
    let since = (billing_at - window, billing_at + window);
    let (store, till) = if ctx.settings.unique_per_till {
        (None, ctx.till.or(Some(-2)))
    } else {
        (Some(ctx.store_id), None)
    };
    if store::count_same_number(c, ctx.org, number, store, till, since).await? > 0 {
        return Err(TransactionError::coded(
            Code::DuplicateTransactionNumber,
            format!("Duplicate transaction number {number}"),
        ));
    }
    Ok(())
}

/// The sale a return refers to: by id when given, else the newest sale of that number (of the
/// customer, for loyalty returns).
async fn find_parent(
    c: &mut Tx,
    ctx: &BillContext<'_>,
    input: &BillInput,
    customer: Option<i64>,
    number: &str,
    kind: TransactionType,
) -> Result<(TransactionRow, Vec<LineRow>), TransactionError> {
    if number.trim().is_empty() {
        return Err(TransactionError::code(Code::NumberToReturnNotSet));
    }
    let sale_types: &[&str] = if kind == TransactionType::NotInterestedReturn {
        &["NOT_INTERESTED"]
    } else {
        &["REGULAR", "MIXED"]
    };
    let candidates = match input.parent_id {
        Some(id) => {
            let row = store::get(c, ctx.org, id)
                .await?
                .ok_or_else(|| TransactionError::code(Code::ParentBillNotFound))?;
            if row.bill_number != number || !sale_types.contains(&row.kind.as_str()) {
                return Err(TransactionError::code(Code::ParentBillNotFound));
            }
            vec![row]
        }
        None => store::by_number(c, ctx.org, number, sale_types, 50).await?,
    };
    if candidates.is_empty() {
        return Err(TransactionError::coded(
            Code::ParentBillNotFound,
            format!("No sale with number {number}"),
        ));
    }
    let mut candidates = candidates;
    if let Some(at) = input.purchase_at {
        // Nearest sale to the remembered purchase time first.
        candidates.sort_by_key(|t| (t.billing_at - at).abs());
    }
    let parent = match customer {
        Some(customer) => {
            candidates.into_iter().find(|t| t.customer_id == Some(customer)).ok_or_else(|| {
                if input.parent_id.is_some() {
                    TransactionError::code(Code::TransactionIdNotFoundForCustomer)
                } else {
                    TransactionError::code(Code::TransactionNumberNotFoundForCustomer)
                }
            })?
        }
        None => candidates
            .into_iter()
            .next()
            .ok_or_else(|| TransactionError::code(Code::ParentBillNotFound))?,
    };
    if input.billing_at < parent.billing_at {
        return Err(TransactionError::code(Code::ReturnBeforeSale));
    }
    let lines = store::lines(c, ctx.org, parent.id).await?;
    Ok((parent, lines))
}

/// One parent line coming back, with its returned totals before and after this return.
#[derive(Clone, Debug)]
struct ReturnedLine {
    input_serial: i64,
    parent_line: LineRow,
    qty_after: Fixed,
    amount_after: Fixed,
}

/// What a return takes from its sale.
#[derive(Clone, Debug)]
struct ReturnPlan {
    return_type: ReturnType,
    /// Money returned by this return.
    amount: Fixed,
    returned_after: Fixed,
    state_after: &'static str,
    lines: Vec<ReturnedLine>,
}

/// Checks a return against what its sale allows (624-639, 660) and works out its amounts.
fn plan_return(
    input: &BillInput,
    parent: &TransactionRow,
    lines: &[LineRow],
) -> Result<ReturnPlan, TransactionError> {
    let exchange = input.kind == TransactionType::Mixed;
    let return_type = if exchange {
        ReturnType::LineItem
    } else {
        input.return_type.ok_or_else(|| {
            TransactionError::coded(
                Code::InvalidReturnType,
                "returnType must be FULL, LINE_ITEM or AMOUNT",
            )
        })?
    };
    let state = parent.return_state.as_deref();
    let bill_amount = Fixed(parent.amount);
    let returned_before = Fixed(parent.returned_amount);
    if state == Some("FULL") {
        return Err(TransactionError::code(Code::AlreadyFullyReturned));
    }
    let mut plan = ReturnPlan {
        return_type,
        amount: Fixed::ZERO,
        returned_after: returned_before,
        state_after: return_type.as_str(),
        lines: Vec::new(),
    };
    match return_type {
        ReturnType::Full => {
            if state.is_some() {
                return Err(TransactionError::code(Code::AlreadyReturned));
            }
            plan.amount = bill_amount;
            plan.returned_after = bill_amount;
            plan.state_after = "FULL";
            for (i, line) in lines.iter().enumerate() {
                plan.lines.push(ReturnedLine {
                    input_serial: i as i64 + 1,
                    parent_line: line.clone(),
                    qty_after: Fixed(line.qty),
                    amount_after: Fixed(line.amount),
                });
            }
        }
        ReturnType::Amount => {
            if state == Some("LINE_ITEM") {
                return Err(TransactionError::code(Code::AlreadyLineItemReturned));
            }
            if !input.amount.is_positive() {
                return Err(TransactionError::coded(
                    Code::InvalidBillAmount,
                    "an AMOUNT return needs a positive amount",
                ));
            }
            let after = returned_before + input.amount;
            if after > bill_amount {
                return Err(TransactionError::code(Code::ReturnAmountExceedsPurchase));
            }
            plan.amount = input.amount;
            plan.returned_after = after;
            plan.state_after = if after == bill_amount { "FULL" } else { "AMOUNT" };
        }
        ReturnType::LineItem => {
            if state == Some("AMOUNT") {
                return Err(TransactionError::code(Code::AlreadyAmountReturned));
            }
            let returning: Vec<&LineInput> =
                input.line_items.iter().filter(|l| l.is_return || !exchange).collect();
            if returning.is_empty() {
                return Err(TransactionError::coded(
                    Code::InvalidReturnLineItem,
                    "a LINE_ITEM return needs the returned line items",
                ));
            }
            let mut taken: Vec<(i64, Fixed)> = Vec::new();
            for line in returning {
                let candidates: Vec<&LineRow> = lines
                    .iter()
                    .filter(|l| {
                        l.item_code == line.item_code
                            && (line.serial <= 0
                                || l.serial == line.serial
                                || !lines.iter().any(|x| {
                                    x.serial == line.serial && x.item_code == line.item_code
                                }))
                    })
                    .collect();
                let Some(parent_line) = candidates
                    .into_iter()
                    .find(|l| {
                        let already = Fixed(l.returned_qty)
                            + taken
                                .iter()
                                .filter(|(id, _)| *id == l.id)
                                .map(|(_, q)| *q)
                                .fold(Fixed::ZERO, |a, b| a + b);
                        already < Fixed(l.qty)
                    })
                    .or_else(|| lines.iter().find(|l| l.item_code == line.item_code))
                else {
                    return Err(TransactionError::coded(
                        Code::InvalidReturnLineItem,
                        format!("item {} is not on bill {}", line.item_code, parent.bill_number),
                    ));
                };
                let qty = if line.qty.is_positive() { line.qty } else { Fixed(parent_line.qty) };
                let already = Fixed(parent_line.returned_qty)
                    + taken
                        .iter()
                        .filter(|(id, _)| *id == parent_line.id)
                        .map(|(_, q)| *q)
                        .fold(Fixed::ZERO, |a, b| a + b);
                if already + qty > Fixed(parent_line.qty) {
                    return Err(TransactionError::coded(
                        Code::ReturnQtyExceedsPurchase,
                        format!("returned quantity of {} is more than purchased", line.item_code),
                    ));
                }
                taken.push((parent_line.id, qty));
                let qty_after = already + qty;
                let line_amount = Fixed(parent_line.amount);
                let amount_before = line_amount.prorate(already.0, parent_line.qty);
                let amount_after = line_amount.prorate(qty_after.0, parent_line.qty);
                plan.amount = plan.amount + (amount_after - amount_before);
                if let Some(existing) =
                    plan.lines.iter_mut().find(|l| l.parent_line.id == parent_line.id)
                {
                    existing.qty_after = qty_after;
                    existing.amount_after = amount_after;
                } else {
                    plan.lines.push(ReturnedLine {
                        input_serial: line.serial,
                        parent_line: parent_line.clone(),
                        qty_after,
                        amount_after,
                    });
                }
            }
            plan.returned_after = (returned_before + plan.amount).min(bill_amount);
            let all_back = lines.iter().all(|l| {
                plan.lines
                    .iter()
                    .find(|p| p.parent_line.id == l.id)
                    .map(|p| p.qty_after.0)
                    .unwrap_or(l.returned_qty)
                    >= l.qty
            });
            plan.state_after = if all_back && !lines.is_empty() { "FULL" } else { "LINE_ITEM" };
        }
    }
    Ok(plan)
}

/// What the engine did for one bill.
struct Evaluated {
    program_id: Option<i64>,
    points: Fixed,
    side_effects: Vec<SideEffect>,
    log: Vec<RuleOutcome>,
}

/// Runs the program over a stored bill: awards (or takes back, for returns) points, moves the
/// tier, records the result on the transaction and raises the events. Inside the caller's
/// transaction.
#[allow(clippy::too_many_arguments)]
async fn evaluate(
    c: &mut Tx,
    programs: &ProgramCache,
    ctx: &BillContext<'_>,
    txn: &TransactionRow,
    lines: &[LineRow],
    customer: i64,
    parent: Option<&TransactionRow>,
    plan: Option<&ReturnPlan>,
) -> Result<Evaluated, TransactionError> {
    let org = ctx.org;
    let program =
        crate::programs::service::program_for_store(programs, c, org, txn.store_id).await?;
    let scope = Scope { org, customer, program: program.id.0, till: txn.till_id, now: ctx.now };
    ledger::open_account(c, scope).await?;
    ledger::expire_customer(c, scope).await?;
    let (tz, store_code) = store_locale(c, org, StoreId(txn.store_id)).await?;
    let mut side_effects = Vec::new();
    let mut log = Vec::new();
    let mut net = Fixed::ZERO;
    let kind = TransactionType::parse(&txn.kind).unwrap_or(TransactionType::Regular);

    if let (Some(parent), Some(plan)) = (parent, plan) {
        let reversed = reverse_points(c, &program, scope, ctx, txn, parent, plan).await?;
        if reversed.is_positive() {
            net = net - reversed;
            side_effects.push(SideEffect::Points {
                program_id: program.id.0,
                points: -reversed,
                awarded_at: ctx.now,
                expires_at: None,
                promised: false,
                rules: Vec::new(),
            });
        }
        // Points issued by hand against the sale are revoked wholly by any return of it.
        if ctx.settings.points_return_enabled {
            let revoked = crate::points::adjust::revoke_for_return(
                c,
                programs,
                org,
                parent.id,
                txn.id,
                txn.till_id,
                ctx.now,
            )
            .await?;
            for (program_id, points) in revoked.into_iter().filter(|(_, p)| p.is_positive()) {
                net = net - points;
                side_effects.push(SideEffect::Points {
                    program_id,
                    points: -points,
                    awarded_at: ctx.now,
                    expires_at: None,
                    promised: false,
                    rules: Vec::new(),
                });
            }
        }
        points_store::add_purchases(c, org, customer, program.id.0, -plan.amount.0, 0).await?;
    }

    if matches!(kind, TransactionType::Regular | TransactionType::Mixed) {
        let sale_lines: Vec<&LineRow> = lines.iter().filter(|l| l.kind != "RETURN").collect();
        let amount = if kind == TransactionType::Mixed {
            sale_lines.iter().fold(Fixed::ZERO, |a, l| a + Fixed(l.amount))
        } else {
            Fixed(txn.amount)
        };
        let account = points_store::lock_account(c, org, customer, program.id.0)
            .await?
            .ok_or_else(|| TransactionError::code(Code::CustomerNotFound))?;
        let customer_facts = customer_facts(c, org, customer, &program, &account).await?;
        let bill = bill_facts(txn, &sale_lines, amount, &store_code);
        let outcomes = program.evaluate_bill(&bill, &customer_facts);
        let expires_at = program.points_expiry(ctx.now, tz);
        let unlock_at = program.unlock_at(ctx.now);
        let mut rules = Vec::new();
        let mut awarded = Fixed::ZERO;
        let mut currencies = CurrencyAwards::default();
        for outcome in outcomes.iter().filter(|o| o.matched) {
            let Some(points) = Fixed::from_decimal(outcome.points).filter(|p| p.is_positive())
            else {
                continue;
            };
            let line_item_id = outcome.line_item.and_then(|i| sale_lines.get(i)).map(|l| l.id);
            let source =
                if outcome.on == EarnTrigger::LineItem { "LINE_ITEM" } else { "TRANSACTION" };
            let award = Award {
                points,
                source,
                rule: &outcome.rule,
                transaction_id: Some(txn.id),
                line_item_id,
                awarded_at: ctx.now,
                unlock_at,
                expires_at,
            };
            if let Some(currency) = &outcome.currency {
                currencies.award(c, &program, scope, tz, currency, award).await?;
                continue;
            }
            ledger::award(c, scope, &award).await?;
            awarded = awarded + points;
            rules.push(outcome.rule.clone());
        }
        side_effects.extend(currencies.finish(c, scope, Some(txn.id)).await?);
        if awarded.is_positive() {
            net = net + awarded;
            side_effects.push(SideEffect::Points {
                program_id: program.id.0,
                points: awarded,
                awarded_at: ctx.now,
                expires_at,
                promised: unlock_at.is_some(),
                rules,
            });
            events::raise(c, org, None, NewEvent { event_type: "points.awarded", entity_type: "CUSTOMER", entity_id: customer,
                payload: json!({"customerId": customer, "programId": program.id.0, "points": awarded.to_f64(), "transactionId": txn.id}) }).await?;
        }
        side_effects.extend(issue_rule_coupons(c, &program, ctx, txn, customer, &outcomes).await?);
        points_store::add_purchases(c, org, customer, program.id.0, amount.0, 1).await?;
        log = outcomes;
    }
    if let Some(change) = upgrade_tier(c, &program, scope, tz, Some(txn.id)).await? {
        side_effects.push(change);
    }
    let effects_json =
        Value::Array(side_effects.iter().map(|s| s.to_json(true)).collect()).to_string();
    let log_json = serde_json::to_string(&log).unwrap_or_else(|_| "[]".into());
    store::set_evaluation(
        c,
        org,
        txn.id,
        &store::EvaluationRecord {
            program_id: Some(program.id.0),
            loyalty_status: "DONE",
            points: net.0,
            side_effects: &effects_json,
            evaluation_log: &log_json,
        },
    )
    .await?;
    Ok(Evaluated { program_id: Some(program.id.0), points: net, side_effects, log })
}

/// What one evaluation awarded of one alternate currency.
struct CurrencyTotal {
    id: i64,
    name: String,
    value: Fixed,
    expires_at: Option<i64>,
    promised: bool,
    rules: Vec<String>,
}

/// The alternate currencies one evaluation awards, summed per currency for its side effects.
#[derive(Default)]
struct CurrencyAwards {
    /// In the order first awarded.
    totals: Vec<CurrencyTotal>,
    awarded_at: i64,
}

impl CurrencyAwards {
    /// Awards `award` in the org's currency `name`, as a lot of that currency with the
    /// currency's expiry rule (else the program's). A currency deactivated since the program was
    /// saved awards nothing.
    async fn award(
        &mut self,
        c: &mut impl Connection,
        program: &CompiledProgram,
        scope: Scope,
        tz: Tz,
        name: &str,
        award: Award<'_>,
    ) -> Result<(), TransactionError> {
        let Some(currency) = crate::currencies::service::for_award(c, scope.org, name).await?
        else {
            tracing::warn!(org = scope.org.0, currency = name, "rule names an inactive currency");
            return Ok(());
        };
        let expires_at =
            crate::currencies::service::award_expiry(&currency, program, award.awarded_at, tz);
        let award = Award { expires_at, ..award };
        ledger::award_in(c, scope, currency.id, &award).await?;
        self.awarded_at = award.awarded_at;
        let promised = award.unlock_at.is_some_and(|at| at > scope.now);
        match self.totals.iter_mut().find(|t| t.id == currency.id) {
            Some(total) => {
                total.value = total.value + award.points;
                total.rules.push(award.rule.to_string());
            }
            None => self.totals.push(CurrencyTotal {
                id: currency.id,
                name: currency.name,
                value: award.points,
                expires_at,
                promised,
                rules: vec![award.rule.to_string()],
            }),
        }
        Ok(())
    }

    /// The side effects of what was awarded, with a `currency.awarded` event per currency.
    async fn finish(
        self,
        c: &mut impl Connection,
        scope: Scope,
        transaction: Option<i64>,
    ) -> Result<Vec<SideEffect>, TransactionError> {
        let mut effects = Vec::with_capacity(self.totals.len());
        for CurrencyTotal { id, name, value, expires_at, promised, rules } in self.totals {
            events::raise(c, scope.org, None, NewEvent { event_type: "currency.awarded", entity_type: "CUSTOMER",
                entity_id: scope.customer, payload: json!({"customerId": scope.customer, "programId": scope.program,
                    "alternateCurrencyId": id, "alternateCurrencyName": name, "value": value.to_f64(),
                    "transactionId": transaction}) }).await?;
            effects.push(SideEffect::AlternateCurrency {
                program_id: scope.program,
                currency: name,
                value,
                awarded_at: self.awarded_at,
                expires_at,
                promised,
                rules,
            });
        }
        Ok(effects)
    }
}

/// Issues the coupon of every matched transaction rule that names one, in the bill's
/// transaction; a refused issue (series ended, a limit reached) is skipped and logged.
async fn issue_rule_coupons(
    c: &mut Tx,
    program: &crate::programs::engine::CompiledProgram,
    ctx: &BillContext<'_>,
    txn: &TransactionRow,
    customer: i64,
    outcomes: &[RuleOutcome],
) -> Result<Vec<SideEffect>, TransactionError> {
    let mut effects = Vec::new();
    for outcome in outcomes
        .iter()
        .filter(|o| o.matched && o.error.is_none() && o.on == EarnTrigger::Transaction)
    {
        let Some(reward) =
            program.doc.earn.iter().find(|r| r.name == outcome.rule).and_then(|r| r.coupon)
        else {
            continue;
        };
        let issue = crate::coupons::service::IssueContext {
            principal: None,
            source: "PROGRAM",
            transaction_id: Some(txn.id),
            metadata: serde_json::Map::from_iter([
                ("sourceType".to_string(), json!("PROGRAM")),
                ("sourceId".to_string(), json!(program.id.0.to_string())),
                ("sourceActivity".to_string(), json!(outcome.rule)),
            ]),
            store_id: Some(txn.store_id),
            till_id: txn.till_id,
            send_message: true,
        };
        match crate::coupons::service::issue_for_bill(
            c,
            ctx.org,
            reward.series_id,
            customer,
            &issue,
            ctx.now,
        )
        .await?
        {
            Ok((series, coupon)) => effects.push(SideEffect::Coupon {
                program_id: program.id.0,
                rule: outcome.rule.clone(),
                series_id: series.id(),
                coupon_id: coupon.id,
                code: coupon.code.to_uppercase(),
                coupon_type: series.config.client_handling_type.clone(),
                discount_type: series.config.discount_type.as_str(),
                discount_value: Fixed(series.config.discount_value),
                valid_till: crate::coupons::model::effective_expiry(
                    coupon.expires_at,
                    series.row.valid_till_at,
                ),
            }),
            Err(refused) => tracing::warn!(org = ctx.org.0, rule = %outcome.rule,
                series = reward.series_id, error = %refused, "earn rule coupon not issued"),
        }
    }
    Ok(effects)
}

/// `total * num / den`, rounded half up to a multiple of `unit` (all in ten-thousandths).
fn share(total: i64, num: i64, den: i64, unit: i64) -> i64 {
    if den <= 0 || unit <= 0 {
        return 0;
    }
    let scaled = i128::from(total) * i128::from(num);
    let divisor = i128::from(den) * i128::from(unit);
    let units = (2 * scaled + divisor) / (2 * divisor);
    i64::try_from(units * i128::from(unit)).unwrap_or(i64::MAX)
}

/// Splits `total` over lots in proportion to their awards: floor shares first, then what the
/// floors leave, one ten-thousandth at a time, to the first lots with room.
fn apportion(total: i64, weights: &[i64]) -> Vec<i64> {
    let sum: i64 = weights.iter().sum();
    if sum <= 0 {
        return vec![0; weights.len()];
    }
    let mut parts: Vec<i64> = weights.iter().map(|w| Fixed(*w).prorate(total, sum).0).collect();
    let mut left = total - parts.iter().sum::<i64>();
    for (part, weight) in parts.iter_mut().zip(weights) {
        if left <= 0 {
            break;
        }
        let room = (*weight - *part).clamp(0, left);
        *part += room;
        left -= room;
    }
    parts
}

/// Takes back what the returned part of the sale earned. A line-item lot gives back its share
/// of the returned quantity of its line; the other lots together give back their share of the
/// returned amount (line-item lots too, for amount and full returns), split over them by size.
/// Shares are cumulative over the sale's returns (each lot remembers what was taken back on its
/// account) and rounded to the program's point decimals, so a sale returned in parts gives back
/// exactly what it earned, never more.
#[allow(clippy::too_many_arguments)]
async fn reverse_points(
    c: &mut Tx,
    program: &CompiledProgram,
    scope: Scope,
    ctx: &BillContext<'_>,
    txn: &TransactionRow,
    parent: &TransactionRow,
    plan: &ReturnPlan,
) -> Result<Fixed, TransactionError> {
    if !ctx.settings.points_return_enabled || !program.doc.returns.reverse_points {
        return Ok(Fixed::ZERO);
    }
    let decimals = program.doc.rounding.points_decimals.min(crate::points::model::SCALE_DIGITS);
    let unit = 10_i64.pow(crate::points::model::SCALE_DIGITS - decimals);
    let lots: Vec<_> = points_store::lots_of_transaction(c, ctx.org, parent.id)
        .await?
        .into_iter()
        .filter(|l| l.customer_id == scope.customer && l.program_id == scope.program)
        // Manual allocations linked to the sale are revoked whole by their own hook.
        .filter(|l| l.source != crate::points::adjust::MANUAL_SOURCE)
        .collect();
    let full = plan.return_type == ReturnType::Full || plan.state_after == "FULL";
    let mut currencies: Vec<i64> = lots.iter().map(|l| l.currency_id).collect();
    currencies.sort_unstable();
    currencies.dedup();
    let mut points_taken = Fixed::ZERO;
    // Points and each alternate currency give back, each from its own lots, their share of what
    // the returned part of the sale earned.
    for currency in currencies {
        let mut wanted = Vec::new();
        let mut by_amount = Vec::new();
        for lot in lots.iter().filter(|l| l.currency_id == currency).cloned() {
            match (lot.line_item_id, plan.return_type) {
                (Some(line_id), ReturnType::LineItem) => {
                    let Some(line) = plan.lines.iter().find(|l| l.parent_line.id == line_id) else {
                        continue;
                    };
                    let target = if line.qty_after.0 >= line.parent_line.qty {
                        lot.awarded
                    } else {
                        share(lot.awarded, line.qty_after.0, line.parent_line.qty, unit)
                    };
                    let amount = (target.min(lot.awarded) - lot.reversed).max(0);
                    if amount > 0 {
                        wanted.push((lot, Fixed(amount)));
                    }
                }
                _ => by_amount.push(lot),
            }
        }
        // The amount-proportional lots: their total target, split by award size, less what each
        // already gave back; the split is then nudged so that the deltas add up to the total exactly.
        let awarded: i64 = by_amount.iter().map(|l| l.awarded).sum();
        let target =
            if full { awarded } else { share(awarded, plan.returned_after.0, parent.amount, unit) };
        let already: i64 = by_amount.iter().map(|l| l.reversed).sum();
        let total = (target - already).max(0);
        let weights: Vec<i64> = by_amount.iter().map(|l| l.awarded).collect();
        let targets = apportion(target, &weights);
        let mut deltas: Vec<i64> = by_amount
            .iter()
            .zip(&targets)
            .map(|(l, t)| (t.min(&l.awarded) - l.reversed).max(0))
            .collect();
        let mut excess = deltas.iter().sum::<i64>() - total;
        for delta in deltas.iter_mut().rev() {
            if excess <= 0 {
                break;
            }
            let cut = (*delta).min(excess);
            *delta -= cut;
            excess -= cut;
        }
        for (delta, lot) in deltas.iter_mut().zip(&by_amount) {
            if excess >= 0 {
                break;
            }
            let room = (lot.awarded - lot.reversed - *delta).clamp(0, -excess);
            *delta += room;
            excess += room;
        }
        for (lot, delta) in by_amount.into_iter().zip(deltas) {
            if delta > 0 {
                wanted.push((lot, Fixed(delta)));
            }
        }
        if wanted.is_empty() {
            continue;
        }
        for (lot, amount) in &wanted {
            points_store::add_reversed(c, ctx.org, lot.id, amount.0).await?;
        }
        let meta = EntryMeta {
            transaction_id: Some(txn.id),
            reference: &parent.bill_number,
            note: "return",
            ..EntryMeta::default()
        };
        let allow_negative = program.doc.returns.allow_negative_balance;
        let result =
            ledger::take_back_in(c, scope, currency, &wanted, allow_negative, meta).await?;
        if result.taken.is_positive() {
            let (event_type, currency_id) = if currency == ledger::POINTS {
                ("points.reversed", Value::Null)
            } else {
                ("currency.reversed", json!(currency))
            };
            events::raise(c, ctx.org, None, NewEvent { event_type, entity_type: "CUSTOMER", entity_id: scope.customer,
                payload: json!({"customerId": scope.customer, "programId": scope.program, "points": result.taken.to_f64(),
                    "alternateCurrencyId": currency_id,
                    "transactionId": txn.id, "parentTransactionId": parent.id, "forgiven": result.forgiven.to_f64()}) }).await?;
        }
        if currency == ledger::POINTS {
            points_taken = result.taken;
        }
    }
    Ok(points_taken)
}

/// Moves the customer up at once when their metrics reach a higher tier; returns the side effect.
pub async fn upgrade_tier(
    c: &mut impl Connection,
    program: &CompiledProgram,
    scope: Scope,
    tz: Tz,
    transaction: Option<i64>,
) -> Result<Option<SideEffect>, TransactionError> {
    if program.tier_count() <= 1 {
        return Ok(None);
    }
    let Some(account) =
        points_store::lock_account(c, scope.org, scope.customer, scope.program).await?
    else {
        return Ok(None);
    };
    // A tier set by hand stands until its hold ends, unless it asked to be re-assessed at the
    // next activity: then the metrics decide, downwards too, and the hold ends.
    let hold =
        crate::loyalty::store::tier_hold(c, scope.org, scope.customer, scope.program).await?;
    let reassess = match &hold {
        Some(h) if !h.reassess && h.held_until.is_none_or(|until| until > scope.now) => {
            return Ok(None);
        }
        Some(h) => {
            crate::loyalty::store::delete_tier_hold(c, scope.org, scope.customer, scope.program)
                .await?;
            h.reassess
        }
        None => false,
    };
    let metrics = tier_metrics(c, program, scope, tz, &account).await?;
    let target = program.qualifying_tier(&metrics);
    if reassess && target < account.tier_number {
        return reassess_down(c, program, scope, tz, &account, target, transaction).await.map(Some);
    }
    if target <= account.tier_number {
        return Ok(None);
    }
    let expires_at = program.tier_expiry(scope.now, tz);
    points_store::set_tier(
        c,
        scope.org,
        scope.customer,
        scope.program,
        target,
        scope.now,
        expires_at,
    )
    .await?;
    record_tier_change(
        c,
        program,
        scope,
        "UPGRADE",
        account.tier_number,
        target,
        transaction,
        expires_at,
    )
    .await?;
    Ok(Some(SideEffect::Tier {
        program_id: scope.program,
        change_type: "UPGRADE",
        from: program.tier_name(account.tier_number).to_string(),
        to: program.tier_name(target).to_string(),
        expires_at,
    }))
}

/// Moves a manually set tier down to the one the metrics qualify for, when the adjustment asked
/// for re-assessment at the next activity.
async fn reassess_down(
    c: &mut impl Connection,
    program: &CompiledProgram,
    scope: Scope,
    tz: Tz,
    account: &points_store::AccountRow,
    target: i32,
    transaction: Option<i64>,
) -> Result<SideEffect, TransactionError> {
    let expires_at = if target > 1 { program.tier_expiry(scope.now, tz) } else { None };
    points_store::set_tier(
        c,
        scope.org,
        scope.customer,
        scope.program,
        target,
        scope.now,
        expires_at,
    )
    .await?;
    record_tier_change(
        c,
        program,
        scope,
        "DOWNGRADE",
        account.tier_number,
        target,
        transaction,
        expires_at,
    )
    .await?;
    Ok(SideEffect::Tier {
        program_id: scope.program,
        change_type: "DOWNGRADE",
        from: program.tier_name(account.tier_number).to_string(),
        to: program.tier_name(target).to_string(),
        expires_at,
    })
}

/// Records a tier move and raises its event.
#[allow(clippy::too_many_arguments)]
pub async fn record_tier_change(
    c: &mut impl Connection,
    program: &CompiledProgram,
    scope: Scope,
    change_type: &'static str,
    from: i32,
    to: i32,
    transaction: Option<i64>,
    expires_at: Option<i64>,
) -> Result<(), TransactionError> {
    points_store::insert_tier_change(
        c,
        scope.org,
        &points_store::NewTierChange {
            customer_id: scope.customer,
            program_id: scope.program,
            change_type,
            from_tier: from,
            to_tier: to,
            transaction_id: transaction,
            expires_at,
            created_at: scope.now,
        },
    )
    .await?;
    events::raise(c, scope.org, None, NewEvent {
        event_type: "tier.changed",
        entity_type: "CUSTOMER",
        entity_id: scope.customer,
        payload: json!({"customerId": scope.customer, "programId": scope.program, "changeType": change_type,
            "previousTier": program.tier_name(from), "newTier": program.tier_name(to), "transactionId": transaction}),
    })
    .await?;
    Ok(())
}

/// The customer's tier metrics; the period ones only when the program's criteria use them.
pub async fn tier_metrics(
    c: &mut impl Connection,
    program: &CompiledProgram,
    scope: Scope,
    tz: Tz,
    account: &points_store::AccountRow,
) -> Result<TierMetrics, TransactionError> {
    let mut metrics = TierMetrics {
        lifetime_purchases: Fixed(account.lifetime_purchases).to_decimal(),
        lifetime_points: Fixed(account.lifetime_points).to_decimal(),
        ..TierMetrics::default()
    };
    let uses = |m: TierMetric| {
        program
            .doc
            .tiers
            .iter()
            .filter_map(|t| t.upgrade.as_ref())
            .chain(program.doc.tier_validity.iter().filter_map(|v| v.renewal.as_ref()))
            .any(|c| c.metric == m)
    };
    let since = program.period_start(scope.now, tz).unwrap_or(0);
    if uses(TierMetric::PurchasesInPeriod) || uses(TierMetric::VisitsInPeriod) {
        let (purchases, visits) =
            store::purchases_since(c, scope.org, scope.customer, since).await?;
        metrics.purchases_in_period = Fixed(purchases).to_decimal();
        metrics.visits_in_period = Decimal::from(visits);
    }
    if uses(TierMetric::PointsInPeriod) {
        metrics.points_in_period = Fixed(
            points_store::points_since(c, scope.org, scope.customer, scope.program, since).await?,
        )
        .to_decimal();
    }
    Ok(metrics)
}

fn json_map(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

fn bill_facts(
    txn: &TransactionRow,
    lines: &[&LineRow],
    amount: Fixed,
    store_code: &str,
) -> BillFacts {
    BillFacts {
        amount: amount.to_f64(),
        gross_amount: Fixed(txn.gross_amount).to_f64(),
        discount: Fixed(txn.discount).to_f64(),
        bill_number: txn.bill_number.clone(),
        billing_date: super::time::iso_utc(txn.billing_at),
        source: txn.source.clone(),
        store: store_code.to_string(),
        extended_fields: json_map(&txn.extended_fields),
        custom_fields: json_map(&txn.custom_fields),
        line_items: lines
            .iter()
            .map(|l| ItemFacts {
                item_code: l.item_code.clone(),
                qty: Fixed(l.qty).to_f64(),
                rate: Fixed(l.rate).to_f64(),
                value: Fixed(l.value).to_f64(),
                amount: Fixed(l.amount).to_f64(),
                discount: Fixed(l.discount).to_f64(),
                extended_fields: json_map(&l.extended_fields),
                custom_fields: json_map(&l.custom_fields),
            })
            .collect(),
    }
}

/// What rules see of a bill that is not stored (dry runs): the sale lines only.
pub fn facts_of_input(input: &BillInput, store_code: &str) -> BillFacts {
    BillFacts {
        amount: input.amount.to_f64(),
        gross_amount: input.gross_amount.to_f64(),
        discount: input.discount.to_f64(),
        bill_number: input.bill_number.clone(),
        billing_date: super::time::iso_utc(input.billing_at),
        source: "INSTORE".into(),
        store: store_code.to_string(),
        extended_fields: input.extended_fields.clone(),
        custom_fields: input.custom_fields.clone(),
        line_items: input
            .line_items
            .iter()
            .filter(|l| !l.is_return)
            .map(|l| ItemFacts {
                item_code: l.item_code.clone(),
                qty: l.qty.to_f64(),
                rate: l.rate.to_f64(),
                value: l.value.to_f64(),
                amount: l.amount.to_f64(),
                discount: l.discount.to_f64(),
                extended_fields: l.extended_fields.clone(),
                custom_fields: l.custom_fields.clone(),
            })
            .collect(),
    }
}

/// What rules see of the customer, in this program, before the bill.
pub async fn customer_facts(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
    program: &CompiledProgram,
    account: &points_store::AccountRow,
) -> Result<CustomerFacts, TransactionError> {
    let row = crate::customers::store::get_customer(
        c,
        org,
        crate::customers::model::CustomerId(customer),
    )
    .await?;
    let labels = crate::labels::store::customer_tags(
        c,
        org,
        crate::customers::model::CustomerId(customer),
        100,
    )
    .await?;
    Ok(CustomerFacts {
        id: customer,
        tier: program.tier_name(account.tier_number).to_string(),
        lifetime_purchases: Fixed(account.lifetime_purchases).to_f64(),
        lifetime_points: Fixed(account.lifetime_points).to_f64(),
        points: Fixed(account.current_points).to_f64(),
        labels: labels.into_iter().map(|t| t.name).collect(),
        extended_fields: row.as_ref().map(|r| json_map(&r.extended_fields)).unwrap_or_default(),
        custom_fields: row.as_ref().map(|r| json_map(&r.custom_fields)).unwrap_or_default(),
    })
}

/// Evaluates bills queued with `use_asynch=true`, oldest first, each in its own transaction;
/// returns how many were handled (at most `limit`).
pub async fn process_pending(
    db: &Db,
    programs: &ProgramCache,
    limit: i64,
    now: i64,
) -> Result<usize, TransactionError> {
    let pending = {
        let mut conn = db.read().await?;
        store::pending(&mut conn, limit).await?
    };
    for (org, id) in &pending {
        let org = OrgId(*org);
        let mut tx = db.begin_write().await?;
        if !store::claim_pending(&mut tx, org, *id).await? {
            continue;
        }
        let Some(txn) = store::get(&mut tx, org, *id).await? else { continue };
        let Some(customer) = txn.customer_id else { continue };
        let settings = TransactionSettings::load(&mut tx, org).await?;
        let ctx = BillContext {
            org,
            store_id: txn.store_id,
            till: txn.till_id,
            now,
            settings: &settings,
        };
        let lines = store::lines(&mut tx, org, txn.id).await?;
        let parent = match txn.parent_id {
            Some(p) => store::get(&mut tx, org, p).await?,
            None => None,
        };
        // A queued return is evaluated against the sale's state before it, which the stored
        // return amounts give back: the plan is rebuilt from the return's own lines.
        let plan = match &parent {
            Some(parent) => Some(replay_plan(&mut tx, org, &txn, parent, &lines).await?),
            None => None,
        };
        match evaluate(
            &mut tx,
            programs,
            &ctx,
            &txn,
            &lines,
            customer,
            parent.as_ref(),
            plan.as_ref(),
        )
        .await
        {
            Ok(_) => tx.commit().await?,
            Err(e) => {
                drop(tx);
                tracing::warn!(org = org.0, transaction = id, error = %e, "queued transaction evaluation failed");
                let mut tx = db.begin_write().await?;
                let log = json!([{"error": e.to_string()}]).to_string();
                let record = store::EvaluationRecord {
                    program_id: None,
                    loyalty_status: "FAILED",
                    points: 0,
                    side_effects: "[]",
                    evaluation_log: &log,
                };
                store::set_evaluation(&mut tx, org, *id, &record).await?;
                tx.commit().await?;
            }
        }
    }
    Ok(pending.len())
}

/// The return plan of a stored (queued) return, as it was when the return was added.
async fn replay_plan(
    c: &mut Tx,
    org: OrgId,
    txn: &TransactionRow,
    parent: &TransactionRow,
    return_lines: &[LineRow],
) -> Result<ReturnPlan, TransactionError> {
    let return_type =
        txn.return_type.as_deref().and_then(ReturnType::parse).unwrap_or(ReturnType::LineItem);
    let parent_lines = store::lines(c, org, parent.id).await?;
    // Later returns of the same sale are already counted in the parent; only this one's share
    // is taken back here, measured from the amounts before it.
    let returned_after = Fixed(parent.returned_amount);
    let mut lines = Vec::new();
    for rl in return_lines {
        if let Some(pl) = rl.parent_line_id.and_then(|id| parent_lines.iter().find(|l| l.id == id))
        {
            let mut before = pl.clone();
            before.returned_qty = pl.returned_qty - rl.qty;
            lines.push(ReturnedLine {
                input_serial: rl.serial,
                qty_after: Fixed(pl.returned_qty),
                amount_after: Fixed(pl.returned_amount),
                parent_line: before,
            });
        }
    }
    let full = return_type == ReturnType::Full
        || parent.return_state.as_deref() == Some("FULL") && returned_after.0 >= parent.amount;
    Ok(ReturnPlan {
        return_type,
        amount: Fixed(txn.amount),
        returned_after,
        state_after: if full { "FULL" } else { return_type.as_str() },
        lines,
    })
}

/// New values of a transaction's editable parts; `None` leaves a part as it is.
#[derive(Clone, Debug, Default)]
pub struct FieldUpdate {
    pub delivery_status: Option<String>,
    pub extended_fields: Option<Map<String, Value>>,
    pub custom_fields: Option<Map<String, Value>>,
    /// Line ids with their new extended fields.
    pub lines: Vec<(i64, Map<String, Value>)>,
}

/// Updates the editable parts of a transaction (fields merge over the stored ones), audits it
/// and, unless `raise_event` is off (`SKIP-DOWNSTREAM`), raises `transaction.updated`.
pub async fn update_fields(
    db: &Db,
    principal: &Principal,
    txn: &TransactionRow,
    update: FieldUpdate,
    raise_event: bool,
    now: i64,
) -> Result<(), TransactionError> {
    let org = principal.org;
    let merge = |stored: &str, new: Option<Map<String, Value>>| {
        let mut map = json_map(stored);
        for (k, v) in new.unwrap_or_default() {
            map.insert(k, v);
        }
        Value::Object(map).to_string()
    };
    let extended = merge(&txn.extended_fields, update.extended_fields);
    let custom = merge(&txn.custom_fields, update.custom_fields);
    let delivery = update.delivery_status.unwrap_or_else(|| txn.delivery_status.clone());
    let mut tx = db.begin_write().await?;
    let till = principal.till.map(|t| t.0);
    let fields = store::EditableFields {
        delivery_status: &delivery,
        extended_fields: &extended,
        custom_fields: &custom,
    };
    store::update_fields(&mut tx, org, txn.id, &fields, till, now).await?;
    let stored_lines = store::lines(&mut tx, org, txn.id).await?;
    for (line_id, fields) in update.lines {
        let stored = stored_lines
            .iter()
            .find(|l| l.id == line_id)
            .map(|l| l.extended_fields.as_str())
            .unwrap_or("{}");
        store::update_line_fields(&mut tx, org, line_id, &merge(stored, Some(fields))).await?;
    }
    audit::record(&mut tx, org, &AuditActor::from(principal), Change {
        entity_type: "TRANSACTION",
        entity_id: txn.id,
        action: "UPDATE",
        before: Some(json!({"deliveryStatus": txn.delivery_status, "extendedFields": json_map(&txn.extended_fields), "customFields": json_map(&txn.custom_fields)})),
        after: Some(json!({"deliveryStatus": delivery, "extendedFields": json_map(&extended), "customFields": json_map(&custom)})),
    })
    .await?;
    if raise_event {
        events::raise(&mut tx, org, Some(principal), NewEvent {
            event_type: "transaction.updated",
            entity_type: "TRANSACTION",
            entity_id: txn.id,
            payload: json!({"id": txn.id, "billNumber": txn.bill_number, "customerId": txn.customer_id}),
        })
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Renews or downgrades, across orgs, at most `limit` tiers whose validity ended by `now`:
/// a customer meeting the program's renewal criterion over the ended period keeps the tier for
/// another period; anyone else moves down (`oneDown` or `toQualifying`). Returns how many.
pub async fn renew_due_tiers(
    db: &Db,
    programs: &ProgramCache,
    now: i64,
    limit: i64,
) -> Result<usize, TransactionError> {
    let due = {
        let mut conn = db.read().await?;
        points_store::tiers_due(&mut conn, now, limit).await?
    };
    for (org, account) in &due {
        let org = OrgId(*org);
        let mut tx = db.begin_write().await?;
        let program = crate::programs::service::program_by_id(
            programs,
            &mut tx,
            org,
            crate::programs::model::ProgramId(account.program_id),
        )
        .await?;
        let zone =
            crate::org::store::get_org(&mut tx, org).await?.map(|o| o.timezone).unwrap_or_default();
        let tz: Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        // A server that was down for several periods catches up one period at a time.
        for _ in 0..PERIODS_CAUGHT_UP_MAX {
            let Some(current) =
                points_store::lock_account(&mut tx, org, account.customer_id, account.program_id)
                    .await?
            else {
                break;
            };
            let Some(ended_at) = current.tier_expires_at.filter(|at| *at <= now) else { break };
            let scope = Scope {
                org,
                customer: current.customer_id,
                program: current.program_id,
                till: None,
                now,
            };
            end_tier_period(&mut tx, &program, scope, tz, &current, ended_at).await?;
        }
        tx.commit().await?;
    }
    Ok(due.len())
}

/// Tier periods one job run closes for one account, at most.
const PERIODS_CAUGHT_UP_MAX: usize = 24;

/// Closes a tier period that ended at `ended_at`: the tier is renewed when the period met the
/// renewal criterion, else it falls (`oneDown` or `toQualifying`); the base tier never expires.
async fn end_tier_period(
    tx: &mut Tx,
    program: &CompiledProgram,
    scope: Scope,
    tz: Tz,
    current: &points_store::AccountRow,
    ended_at: i64,
) -> Result<(), TransactionError> {
    // A manual tier's hold ends with its period: from now on the program's rules apply.
    crate::loyalty::store::delete_tier_hold(tx, scope.org, scope.customer, scope.program).await?;
    // The period that ended is measured, not the rolling window before `now`.
    let metrics = period_metrics(tx, scope, current, ended_at).await?;
    let tier = current.tier_number;
    let (target, change) = if program.renewal_met(&metrics) {
        (tier, "RENEWAL")
    } else {
        (program.downgrade_target(tier, &metrics).clamp(1, tier), "DOWNGRADE")
    };
    let expires_at = if target > 1 { program.tier_expiry(ended_at, tz) } else { None };
    points_store::set_tier(
        tx,
        scope.org,
        scope.customer,
        scope.program,
        target,
        ended_at,
        expires_at,
    )
    .await?;
    if target != tier || change == "RENEWAL" {
        record_tier_change(tx, program, scope, change, tier, target, None, expires_at).await?;
    }
    Ok(())
}

/// Tier metrics over the tier period that ended at `ended_at` (from the tier's start).
async fn period_metrics(
    c: &mut impl Connection,
    scope: Scope,
    account: &points_store::AccountRow,
    ended_at: i64,
) -> Result<TierMetrics, TransactionError> {
    let since = account.tier_since;
    let (purchases_total, visits_total) =
        store::purchases_since(c, scope.org, scope.customer, since).await?;
    let (purchases_after, visits_after) =
        store::purchases_since(c, scope.org, scope.customer, ended_at).await?;
    let points_total =
        points_store::points_since(c, scope.org, scope.customer, scope.program, since).await?;
    let points_after =
        points_store::points_since(c, scope.org, scope.customer, scope.program, ended_at).await?;
    Ok(TierMetrics {
        lifetime_purchases: Fixed(account.lifetime_purchases).to_decimal(),
        lifetime_points: Fixed(account.lifetime_points).to_decimal(),
        purchases_in_period: Fixed(purchases_total - purchases_after).to_decimal(),
        points_in_period: Fixed(points_total - points_after).to_decimal(),
        visits_in_period: Decimal::from(visits_total - visits_after),
    })
}

/// Converts a not-interested bill into `customer`'s regular bill (retro) and evaluates it now:
/// needs `CONF_RETRO_TRANSACTION_ENABLE`, a bill younger than
/// `CONF_CLIENT_RETRO_MAX_ALLOWED_AGE_DAYS`, and a registration older than
/// `CONF_CLIENT_RETRO_DELAY_SINCE_REGISTRATION_HOURS`; 1627 when already converted.
pub async fn retro(
    db: &Db,
    programs: &ProgramCache,
    principal: &Principal,
    transaction: i64,
    customer: i64,
    note: &str,
    now: i64,
) -> Result<AddOutcome, TransactionError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let settings = TransactionSettings::load(&mut tx, org).await?;
    if !settings.retro_enabled {
        return Err(TransactionError::coded(
            Code::PermissionDenied,
            "retro transactions are not enabled for the org (CONF_RETRO_TRANSACTION_ENABLE)",
        ));
    }
    let txn = store::get(&mut tx, org, transaction)
        .await?
        .ok_or_else(|| TransactionError::code(Code::TransactionNotFound))?;
    store::lock_bill_number(&mut tx, org, &txn.bill_number).await?;
    match txn.kind.as_str() {
        "NOT_INTERESTED" => {}
        "REGULAR" => return Err(TransactionError::code(Code::AlreadyRetro)),
        other => {
            return Err(TransactionError::coded(
                Code::InvalidInput,
                format!("a {other} transaction cannot be converted"),
            ));
        }
    }
    if now - txn.billing_at > settings.retro_max_age_days * DAY_MS {
        return Err(TransactionError::coded(
            Code::DateTooFarInPast,
            format!("the bill is older than {} days", settings.retro_max_age_days),
        ));
    }
    let row = crate::customers::store::get_customer(
        &mut tx,
        org,
        crate::customers::model::CustomerId(customer),
    )
    .await?
    .ok_or_else(|| TransactionError::code(Code::CustomerNotFound))?;
    if row.registered_at + settings.retro_delay_hours * 3_600_000 > now {
        return Err(TransactionError::coded(
            Code::InvalidInput,
            format!("the customer registered less than {} hours ago", settings.retro_delay_hours),
        ));
    }
    let note = if note.is_empty() { txn.note.clone() } else { note.to_string() };
    store::convert_to_regular(&mut tx, org, txn.id, customer, &note, now).await?;
    let mut converted = store::get(&mut tx, org, txn.id)
        .await?
        .ok_or_else(|| TransactionError::code(Code::TransactionNotFound))?;
    let ctx = BillContext {
        org,
        store_id: converted.store_id,
        till: principal.till.map(|t| t.0),
        now,
        settings: &settings,
    };
    let lines = store::lines(&mut tx, org, txn.id).await?;
    let evaluated =
        evaluate(&mut tx, programs, &ctx, &converted, &lines, customer, None, None).await?;
    converted.program_id = evaluated.program_id;
    converted.points = evaluated.points.0;
    converted.loyalty_status = "DONE".into();
    events::raise(
        &mut tx,
        org,
        Some(principal),
        NewEvent {
            event_type: "transaction.retro",
            entity_type: "TRANSACTION",
            entity_id: txn.id,
            payload: json!({"id": txn.id, "billNumber": txn.bill_number, "customerId": customer}),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        org,
        &AuditActor::from(principal),
        Change {
            entity_type: "TRANSACTION",
            entity_id: txn.id,
            action: "RETRO",
            before: Some(json!({"type": "NOT_INTERESTED", "customerId": null})),
            after: Some(json!({"type": "REGULAR", "customerId": customer})),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(AddOutcome {
        transaction: converted,
        side_effects: evaluated.side_effects,
        evaluation_log: evaluated.log,
    })
}

/// Awards the program's `registration` rules to a customer who just enrolled, inside the
/// registration's own transaction. A program that cannot be resolved or evaluated is reported
/// back as a warning text: the registration itself must not fail because of it.
pub async fn award_registration(
    tx: &mut Tx,
    programs: &ProgramCache,
    org: OrgId,
    customer: i64,
    store: Option<StoreId>,
    till: Option<i64>,
    now: i64,
) -> Result<Result<Vec<SideEffect>, String>, TransactionError> {
    let Some(store) = store else { return Ok(Ok(Vec::new())) };
    let program =
        match crate::programs::service::program_for_store(programs, tx, org, store.0).await {
            Ok(p) => p,
            Err(crate::programs::model::ProgramError::Db(e)) => return Err(e.into()),
            Err(e) => return Ok(Err(e.to_string())),
        };
    let scope = Scope { org, customer, program: program.id.0, till, now };
    let account = ledger::open_account(tx, scope).await?;
    let (tz, _) = store_locale(tx, org, store).await?;
    let facts = customer_facts(tx, org, customer, &program, &account).await?;
    let outcomes = program.evaluate_registration(&facts);
    let expires_at = program.points_expiry(now, tz);
    let unlock_at = program.unlock_at(now);
    let mut awarded = Fixed::ZERO;
    let mut rules = Vec::new();
    let mut currencies = CurrencyAwards::default();
    for outcome in outcomes.iter().filter(|o| o.matched) {
        let Some(points) = Fixed::from_decimal(outcome.points).filter(|p| p.is_positive()) else {
            continue;
        };
        let award = Award {
            points,
            source: "REGISTRATION",
            rule: &outcome.rule,
            transaction_id: None,
            line_item_id: None,
            awarded_at: now,
            unlock_at,
            expires_at,
        };
        if let Some(currency) = &outcome.currency {
            currencies.award(tx, &program, scope, tz, currency, award).await?;
            continue;
        }
        ledger::award(tx, scope, &award).await?;
        awarded = awarded + points;
        rules.push(outcome.rule.clone());
    }
    let mut effects = currencies.finish(tx, scope, None).await?;
    if awarded.is_positive() {
        effects.push(SideEffect::Points {
            program_id: program.id.0,
            points: awarded,
            awarded_at: now,
            expires_at,
            promised: unlock_at.is_some(),
            rules,
        });
        events::raise(tx, org, None, NewEvent { event_type: "points.awarded", entity_type: "CUSTOMER", entity_id: customer,
            payload: json!({"customerId": customer, "programId": program.id.0, "points": awarded.to_f64(), "reason": "registration"}) }).await?;
    }
    if let Some(change) = upgrade_tier(tx, &program, scope, tz, None).await? {
        effects.push(change);
    }
    Ok(Ok(effects))
}
