//! The customer's loyalty views — standing per program, tier with the gaps to upgrade and to
//! renew, trackers, loyalty events — read from the ledger's balance projection and the tier
//! engine's records, and manual tier adjustment written through the same records.

use chrono::Days;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::model::{LoyaltyError, ProgramSelection, SlabAction, TierAdjustment, Validity};
use super::store::{self, TierHold};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Connection, Db};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;
use crate::points::ledger::{self, Scope};
use crate::points::model::Fixed;
use crate::points::store::{self as points_store, AccountRow};
use crate::programs::cache::ProgramCache;
use crate::programs::engine::{CompiledProgram, TierMetrics, end_of_day, local_date};
use crate::programs::model::{ProgramId, TierCriterion, TierMetric};

/// A customer's standing in one program: the compiled program and the account (an empty one,
/// base tier and zeros, when the customer has not been enrolled yet).
#[derive(Clone, Debug)]
pub struct ProgramState {
    pub program: CompiledProgram,
    pub account: AccountRow,
    pub enrolled: bool,
    /// When the account last changed.
    pub updated_at: Option<i64>,
}

impl ProgramState {
    pub fn id(&self) -> i64 {
        self.program.id.0
    }

    pub fn is_default(&self) -> bool {
        self.program.doc.default
    }
}

/// The org's time zone (UTC when unset or unknown): the zone of expiry days and tier periods.
pub async fn org_zone(c: &mut impl Connection, org: OrgId) -> Result<Tz, LoyaltyError> {
    let zone = crate::org::store::get_org(c, org).await?.map(|o| o.timezone).unwrap_or_default();
    Ok(zone.parse().unwrap_or(chrono_tz::UTC))
}

/// The customer of the org with this id (8015 otherwise: another org's customer looks exactly
/// like an unknown one).
pub async fn check_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: i64,
) -> Result<(), LoyaltyError> {
    crate::customers::store::get_customer(c, org, crate::customers::model::CustomerId(customer))
        .await?
        .map(|_| ())
        .ok_or(LoyaltyError::CustomerNotFound)
}

/// The customer's standing in every program of the org, the default program first.
pub async fn program_states(
    c: &mut impl Connection,
    cache: &ProgramCache,
    org: OrgId,
    customer: i64,
    now: i64,
) -> Result<Vec<ProgramState>, LoyaltyError> {
    let mut programs = crate::programs::service::programs_of_org(cache, c, org).await?;
    programs.sort_by_key(|p| (!p.doc.default, p.id.0));
    let accounts = points_store::accounts_of_customer(c, org, customer).await?;
    let updated = store::accounts_updated_at(c, org, customer).await?;
    Ok(programs
        .into_iter()
        .map(|program| {
            let id = program.id.0;
            let account = accounts.iter().find(|a| a.program_id == id).cloned();
            ProgramState {
                enrolled: account.is_some(),
                account: account.unwrap_or_else(|| AccountRow::empty(customer, id, now)),
                updated_at: updated.iter().find(|(p, _)| *p == id).map(|(_, at)| *at),
                program,
            }
        })
        .collect())
}

/// The states a selection names; `unknown` says how an unknown program id is refused.
pub fn select(
    states: &[ProgramState],
    selection: ProgramSelection,
    unknown: fn(i64) -> LoyaltyError,
) -> Result<Vec<&ProgramState>, LoyaltyError> {
    match selection {
        ProgramSelection::All => Ok(states.iter().collect()),
        ProgramSelection::One(id) => {
            let found: Vec<&ProgramState> = states.iter().filter(|s| s.id() == id).collect();
            if found.is_empty() { Err(unknown(id)) } else { Ok(found) }
        }
        ProgramSelection::Default => Ok(states.iter().filter(|s| s.is_default()).take(1).collect()),
    }
}

/// How far a customer is from a tier criterion.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    /// The tier the criterion leads to (the next tier to upgrade, the current one to renew).
    pub tier_number: i32,
    pub tier_name: String,
    pub metric: TierMetric,
    pub threshold: Decimal,
    pub current: Decimal,
    /// What is still missing (zero when the criterion is met).
    pub gap: Decimal,
    /// The window the metric is measured over (None: all time).
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
}

/// A customer's tier in one program, with the gaps to the next tier and to renewal.
#[derive(Clone, Debug, PartialEq)]
pub struct TierView {
    pub program_id: i64,
    pub program_name: String,
    pub current: i32,
    pub current_name: String,
    /// The next tier up (None at the top).
    pub next: Option<(i32, String)>,
    pub expires_at: Option<i64>,
    pub gap_to_upgrade: Option<Gap>,
    /// None when the tier needs nothing to be kept: the base tier, or a program whose tiers do
    /// not expire or renew without a criterion.
    pub gap_to_renew: Option<Gap>,
}

fn metric_value(metric: TierMetric, m: &TierMetrics) -> Decimal {
    match metric {
        TierMetric::LifetimePurchases => m.lifetime_purchases,
        TierMetric::LifetimePoints => m.lifetime_points,
        TierMetric::PurchasesInPeriod => m.purchases_in_period,
        TierMetric::PointsInPeriod => m.points_in_period,
        TierMetric::VisitsInPeriod => m.visits_in_period,
    }
}

fn is_period_metric(metric: TierMetric) -> bool {
    matches!(
        metric,
        TierMetric::PurchasesInPeriod | TierMetric::PointsInPeriod | TierMetric::VisitsInPeriod
    )
}

fn gap(
    tier_number: i32,
    tier_name: &str,
    criterion: &TierCriterion,
    metrics: &TierMetrics,
    window: (Option<i64>, Option<i64>),
) -> Gap {
    let current = metric_value(criterion.metric, metrics);
    let (period_start, period_end) =
        if is_period_metric(criterion.metric) { window } else { (None, None) };
    Gap {
        tier_number,
        tier_name: tier_name.to_string(),
        metric: criterion.metric,
        threshold: criterion.at_least,
        current,
        gap: (criterion.at_least - current).max(Decimal::ZERO),
        period_start,
        period_end,
    }
}

/// The customer's tier in the program and the gaps: to upgrade, measured as the engine measures
/// it at a bill (period metrics over the rolling `tierValidity` window); to renew, measured over
/// the current tier period so far, as the renewal job will measure it when the period ends.
pub async fn tier_view(
    c: &mut impl Connection,
    org: OrgId,
    state: &ProgramState,
    tz: Tz,
    now: i64,
) -> Result<TierView, LoyaltyError> {
    let program = &state.program;
    let account = &state.account;
    let current = account.tier_number.clamp(1, program.tier_count());
    let next = (current < program.tier_count())
        .then(|| (current + 1, program.tier_name(current + 1).to_string()));
    let scope = Scope { org, customer: account.customer_id, program: state.id(), till: None, now };
    let gap_to_upgrade = match &next {
        Some((number, name)) => {
            let criterion = usize::try_from(*number - 1)
                .ok()
                .and_then(|i| program.doc.tiers.get(i))
                .and_then(|t| t.upgrade.as_ref());
            match criterion {
                Some(criterion) => {
                    let metrics =
                        crate::transactions::service::tier_metrics(c, program, scope, tz, account)
                            .await?;
                    let window = (program.period_start(now, tz), Some(now));
                    Some(gap(*number, name, criterion, &metrics, window))
                }
                None => None,
            }
        }
        None => None,
    };
    let renewal = program.doc.tier_validity.as_ref().and_then(|v| v.renewal.as_ref());
    let gap_to_renew = match renewal {
        Some(criterion) if current > 1 => {
            let since = account.tier_since;
            let (purchases, visits) =
                crate::transactions::store::purchases_since(c, org, account.customer_id, since)
                    .await?;
            let points =
                points_store::points_since(c, org, account.customer_id, state.id(), since).await?;
            let metrics = TierMetrics {
                lifetime_purchases: Fixed(account.lifetime_purchases).to_decimal(),
                lifetime_points: Fixed(account.lifetime_points).to_decimal(),
                purchases_in_period: Fixed(purchases).to_decimal(),
                points_in_period: Fixed(points).to_decimal(),
                visits_in_period: Decimal::from(visits),
            };
            let window = (Some(since), account.tier_expires_at);
            Some(gap(current, program.tier_name(current), criterion, &metrics, window))
        }
        _ => None,
    };
    Ok(TierView {
        program_id: state.id(),
        program_name: program.doc.name.clone(),
        current,
        current_name: program.tier_name(current).to_string(),
        next,
        expires_at: account.tier_expires_at,
        gap_to_upgrade,
        gap_to_renew,
    })
}

/// An instant as ISO-8601 in UTC (the server's time zone).
pub fn iso(millis: i64) -> String {
    crate::customers::routes_v2::iso(millis)
}

/// The org-local calendar date of an instant (`YYYY-MM-DD`): the day an expiry falls on.
pub fn local_day(millis: i64, tz: Tz) -> String {
    local_date(millis, tz).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

fn decimal_json(d: Decimal) -> Value {
    use rust_decimal::prelude::ToPrimitive;
    json!(d.normalize().to_f64().unwrap_or(0.0))
}

/// A gap as the views show it.
pub fn gap_json(gap: &Gap) -> Value {
    json!({
        "tierSerialNumber": gap.tier_number,
        "tierName": gap.tier_name,
        "metric": serde_json::to_value(gap.metric).unwrap_or(Value::Null),
        "threshold": decimal_json(gap.threshold),
        "current": decimal_json(gap.current),
        "gap": decimal_json(gap.gap),
        "periodStartDate": gap.period_start.map(iso),
        "periodEndDate": gap.period_end.map(iso),
    })
}

/// One program of `tierDetails` (Capillary's `programTiers[]` item, with the gaps).
pub fn tier_json(view: &TierView, tz: Tz) -> Value {
    let (next_number, next_name) = match &view.next {
        Some((n, name)) => (*n, name.clone()),
        None => (-1, String::new()),
    };
    json!({
        "programId": view.program_id,
        "programName": view.program_name,
        "currentTierName": view.current_name,
        "currentTierSerialNumber": view.current,
        "tierExpiryDate": view.expires_at.map(|at| local_day(at, tz)),
        "tierExpiryDateISO": view.expires_at.map(iso),
        "nextTierName": next_name,
        "nextTierSerialNumber": next_number,
        "gapToUpgrade": view.gap_to_upgrade.as_ref().map(gap_json),
        "gapToRenew": view.gap_to_renew.as_ref().map(gap_json),
    })
}

/// One program of `loyaltyDetails` (the fields of Capillary's Get Loyalty Details).
pub fn loyalty_details_json(state: &ProgramState, view: &TierView) -> Value {
    let a = &state.account;
    let points = |v: i64| Fixed(v).to_f64();
    let (next_number, next_name) = match &view.next {
        Some((n, name)) => (*n, name.clone()),
        None => (-1, String::new()),
    };
    json!({
        "programId": state.id(),
        "programName": state.program.doc.name,
        "loyaltyId": if state.enrolled { a.customer_id } else { -1 },
        "loyaltyPoints": points(a.current_points),
        "lifetimePoints": points(a.lifetime_points),
        "redeemed": points(a.redeemed_points),
        "expired": points(a.expired_points),
        "returned": points(a.returned_points),
        "adjusted": points(a.adjusted_points),
        "cumulativePurchases": points(a.lifetime_purchases),
        "visits": a.visits,
        "currentSlab": view.current_name,
        "slabSNo": view.current,
        "slabExpiryDate": view.expires_at.map(iso),
        "nextSlab": next_name,
        "nextSlabSerialNumber": next_number,
        "nextSlabDescription": if next_number > 0 { format!("Tier {next_number}") } else { String::new() },
        "delayedPoints": points(a.promised_points),
        "delayedReturnedPoints": 0.0,
        "totalAvailablePoints": points(a.current_points + a.promised_points),
        "totalReturnedPoints": points(a.returned_points),
    })
}

/// Trackers of one program: the running values the tier criteria are measured on — lifetime
/// purchases, visits and points, and, when tiers have a validity, the same over the current
/// window.
pub async fn trackers(
    c: &mut impl Connection,
    org: OrgId,
    state: &ProgramState,
    tz: Tz,
    now: i64,
) -> Result<Vec<Value>, LoyaltyError> {
    let program = &state.program;
    let a = &state.account;
    let criteria: Vec<(String, &TierCriterion)> = program
        .doc
        .tiers
        .iter()
        .filter_map(|t| t.upgrade.as_ref().map(|c| (format!("upgrade to {}", t.name), c)))
        .chain(
            program
                .doc
                .tier_validity
                .iter()
                .filter_map(|v| v.renewal.as_ref().map(|c| ("renewal".to_string(), c))),
        )
        .collect();
    let condition_name = |metric: TierMetric| {
        criteria
            .iter()
            .filter(|(_, c)| c.metric == metric)
            .map(|(what, c)| format!("{what}: at least {}", c.at_least.normalize()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let updated = state.updated_at.map(iso);
    let base = state.id() * 10;
    let mut rows: Vec<(i64, TierMetric, &str, Value, Option<i64>)> = vec![
        (
            1,
            TierMetric::LifetimePurchases,
            "BILL_AMOUNT",
            json!(Fixed(a.lifetime_purchases).to_f64()),
            None,
        ),
        (2, TierMetric::VisitsInPeriod, "CUSTOMER_VISITS", json!(a.visits), None),
        (3, TierMetric::LifetimePoints, "POINTS", json!(Fixed(a.lifetime_points).to_f64()), None),
    ];
    let window_start = program.period_start(now, tz);
    if let Some(since) = window_start {
        let (purchases, visits) =
            crate::transactions::store::purchases_since(c, org, a.customer_id, since).await?;
        let points = points_store::points_since(c, org, a.customer_id, state.id(), since).await?;
        rows.push((
            4,
            TierMetric::PurchasesInPeriod,
            "BILL_AMOUNT",
            json!(Fixed(purchases).to_f64()),
            Some(since),
        ));
        rows.push((5, TierMetric::VisitsInPeriod, "CUSTOMER_VISITS", json!(visits), Some(since)));
        rows.push((
            6,
            TierMetric::PointsInPeriod,
            "POINTS",
            json!(Fixed(points).to_f64()),
            Some(since),
        ));
    }
    Ok(rows
        .into_iter()
        .map(|(k, metric, kind, value, since)| {
            // Lifetime visits have no tier metric of their own; their name says what they are.
            let name = if k == 2 {
                "visits".to_string()
            } else {
                serde_json::to_value(metric)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            };
            let conditions = if k == 2 { String::new() } else { condition_name(metric) };
            json!({
                "id": base + k, "name": name, "conditionId": base + k, "type": kind,
                "value": value, "updatedOn": updated, "conditionName": conditions,
                "periodStartDate": since.map(iso), "periodEndDate": since.map(|_| iso(now)),
                "programId": state.id(),
            })
        })
        .collect())
}

/// What a manual tier adjustment did.
#[derive(Clone, Debug)]
pub struct Adjusted {
    /// The recorded tier change.
    pub change_id: i64,
    pub from: i32,
    pub to: i32,
    pub expires_at: Option<i64>,
}

/// The 1-based number of the program tier called `name` (exact, then case-insensitive).
fn tier_number(program: &CompiledProgram, name: &str) -> Option<i32> {
    let name = name.trim();
    let tiers = &program.doc.tiers;
    let index = tiers
        .iter()
        .position(|t| t.name == name)
        .or_else(|| tiers.iter().position(|t| t.name.eq_ignore_ascii_case(name)))?;
    i32::try_from(index + 1).ok()
}

/// The end (last millisecond) of the org-local day `days` after the day of `from`.
fn days_after(from: i64, days: u32, tz: Tz) -> Option<i64> {
    let day = local_date(from, tz)?.checked_add_days(Days::new(u64::from(days)))?;
    end_of_day(day, tz)
}

/// Moves the customer's tier by hand (`/v2/slab/manualSlabAdjustment`) in one transaction with
/// the account locked: the tier and its validity, the tier change record, the hold that keeps
/// the engine from moving the tier again until it expires (or, with `reassess`, until the next
/// activity re-evaluates it), the audit record and a `tier.changed` event. Refusals write
/// nothing.
#[tracing::instrument(skip_all, fields(org = principal.org.0, customer))]
pub async fn adjust_tier(
    db: &Db,
    cache: &ProgramCache,
    principal: &Principal,
    customer: i64,
    adjustment: &TierAdjustment,
    now: i64,
) -> Result<Adjusted, LoyaltyError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    check_customer(&mut tx, org, customer).await?;
    let program = crate::programs::service::program_by_id(
        cache,
        &mut tx,
        org,
        ProgramId(adjustment.program_id),
    )
    .await
    .map_err(|e| match LoyaltyError::from(e) {
        LoyaltyError::UnknownProgram(_) => LoyaltyError::UnknownProgram(adjustment.program_id),
        other => other,
    })?;
    let tz = org_zone(&mut tx, org).await?;
    let scope =
        Scope { org, customer, program: program.id.0, till: principal.till.map(|t| t.0), now };
    let account = ledger::open_account(&mut tx, scope).await?;
    let current = account.tier_number.clamp(1, program.tier_count());
    let named = match adjustment.to_tier.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => Some(tier_number(&program, name).ok_or_else(|| {
            LoyaltyError::TierName(format!("'{name}' is not a tier of program {}", program.id.0))
        })?),
        None => None,
    };
    let target = match adjustment.action {
        SlabAction::Upgrade | SlabAction::Downgrade => {
            let target = named.ok_or_else(|| {
                LoyaltyError::TierName("toSlabName is required with UPGRADE and DOWNGRADE".into())
            })?;
            if adjustment.action == SlabAction::Upgrade && target <= current {
                return Err(LoyaltyError::TierAction(format!(
                    "UPGRADE needs a tier above the current one ({})",
                    program.tier_name(current)
                )));
            }
            if adjustment.action == SlabAction::Downgrade && current == 1 {
                return Err(LoyaltyError::TierAction(format!(
                    "the customer is already in the lowest tier ({})",
                    program.tier_name(1)
                )));
            }
            if adjustment.action == SlabAction::Downgrade && target >= current {
                return Err(LoyaltyError::TierAction(format!(
                    "DOWNGRADE needs a tier below the current one ({})",
                    program.tier_name(current)
                )));
            }
            target
        }
        SlabAction::Renewal | SlabAction::ExtendExpiry => {
            if named.is_some_and(|n| n != current) {
                return Err(LoyaltyError::TierAction(format!(
                    "{} keeps the current tier ({}); toSlabName names another",
                    adjustment.action.as_str(),
                    program.tier_name(current)
                )));
            }
            if current == 1 {
                return Err(LoyaltyError::TierAction(format!(
                    "the base tier ({}) has no expiry to {}",
                    program.tier_name(1),
                    if adjustment.action == SlabAction::Renewal { "renew" } else { "extend" }
                )));
            }
            current
        }
    };
    // Until when the new tier holds: its expiry (none for the base tier, which never expires,
    // but the hold still ends then).
    let held_until = match adjustment.validity {
        Validity::Days(days) => {
            let from = match adjustment.action {
                SlabAction::ExtendExpiry => account.tier_expires_at.unwrap_or(now),
                _ => now,
            };
            days_after(from, days, tz)
        }
        Validity::Until(date) => end_of_day(date, tz),
        Validity::CurrentExpiry => account.tier_expires_at,
        Validity::ProgramRule => program.tier_expiry(now, tz),
    };
    if held_until.is_some_and(|until| until <= now) {
        return Err(LoyaltyError::Validity("the new tier validity must end in the future".into()));
    }
    if adjustment.action == SlabAction::ExtendExpiry
        && let (Some(until), Some(expiry)) = (held_until, account.tier_expires_at)
        && until <= expiry
    {
        return Err(LoyaltyError::Validity(format!(
            "EXTEND_CURRENT_TIER_EXPIRY_DATE needs a date after the current expiry ({})",
            local_day(expiry, tz)
        )));
    }
    let expires_at = if target > 1 { held_until } else { None };
    let since =
        if adjustment.action == SlabAction::ExtendExpiry { account.tier_since } else { now };
    points_store::set_tier(&mut tx, org, customer, program.id.0, target, since, expires_at).await?;
    let change_id = points_store::insert_tier_change(
        &mut tx,
        org,
        &points_store::NewTierChange {
            customer_id: customer,
            program_id: program.id.0,
            change_type: adjustment.action.as_str(),
            from_tier: current,
            to_tier: target,
            transaction_id: None,
            expires_at,
            created_at: now,
        },
    )
    .await?;
    let hold = TierHold {
        customer_id: customer,
        program_id: program.id.0,
        reassess: adjustment.reassess,
        held_until,
        reason: adjustment.reason.clone(),
        tier_change_id: Some(change_id),
        created_at: now,
    };
    // A base tier set without an end and without re-assessment would freeze the customer for
    // good: the engine simply resumes instead.
    if target > 1 || held_until.is_some() || adjustment.reassess {
        store::put_tier_hold(&mut tx, org, &hold).await?;
    } else {
        store::delete_tier_hold(&mut tx, org, customer, program.id.0).await?;
    }
    let state = |tier: i32, expires: Option<i64>| {
        json!({"programId": program.id.0, "tierSerialNumber": tier, "tierName": program.tier_name(tier),
            "tierExpiryDate": expires.map(iso)})
    };
    audit::record(
        &mut tx,
        org,
        &AuditActor::from(principal),
        Change {
            entity_type: "CUSTOMER_TIER",
            entity_id: customer,
            action: adjustment.action.as_str(),
            before: Some(state(current, account.tier_expires_at)),
            after: Some(json!({"programId": program.id.0, "tierSerialNumber": target,
                "tierName": program.tier_name(target), "tierExpiryDate": expires_at.map(iso),
                "reassessTierOnNextActivity": adjustment.reassess, "reason": adjustment.reason,
                "tierChangeId": change_id})),
        },
    )
    .await?;
    events::raise(
        &mut tx,
        org,
        Some(principal),
        NewEvent {
            event_type: "tier.changed",
            entity_type: "CUSTOMER",
            entity_id: customer,
            payload: json!({"customerId": customer, "programId": program.id.0,
                "changeType": adjustment.action.as_str(), "manual": true,
                "previousTier": program.tier_name(current), "newTier": program.tier_name(target),
                "tierExpiryDate": expires_at.map(iso), "reason": adjustment.reason,
                "reassessTierOnNextActivity": adjustment.reassess, "transactionId": Value::Null}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Adjusted { change_id, from: current, to: target, expires_at })
}

/// The start of the org-local day of `date` (`YYYY-MM-DD`), or its end with `end_of`, as UTC
/// millis; None when not a date.
pub fn local_day_bound(date: &str, tz: Tz, end_of: bool) -> Option<i64> {
    let day = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").ok()?;
    if end_of { end_of_day(day, tz) } else { crate::programs::engine::start_of_day(day, tz) }
}
