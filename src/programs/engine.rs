//! A compiled program: its earn rules ready to evaluate over a bill and a customer, its tier
//! ladder, and the date arithmetic of its expiry and promise rules.

use std::sync::Arc;

use cel::{Env, Value};
use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use serde_json::Map;

use super::expr::{self, CompiledExpr, Facts, Sample, Yields};
use super::model::{
    DowngradeMode, EarnTrigger, ExpiryDoc, ExpiryKind, ProgramDoc, ProgramError, ProgramId,
    RoundingMode, TierCriterion, TierMetric,
};

/// What rules see as `bill` (money as plain numbers in the org's base currency).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillFacts {
    pub amount: f64,
    pub gross_amount: f64,
    pub discount: f64,
    pub bill_number: String,
    /// ISO-8601 with offset.
    pub billing_date: String,
    pub source: String,
    /// The store code.
    pub store: String,
    pub extended_fields: Map<String, serde_json::Value>,
    pub custom_fields: Map<String, serde_json::Value>,
    pub line_items: Vec<ItemFacts>,
}

/// What `lineItem` rules see as `item`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFacts {
    pub item_code: String,
    pub qty: f64,
    pub rate: f64,
    pub value: f64,
    pub amount: f64,
    pub discount: f64,
    pub extended_fields: Map<String, serde_json::Value>,
    pub custom_fields: Map<String, serde_json::Value>,
}

/// What rules see as `customer`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerFacts {
    pub id: i64,
    /// The tier name in this program.
    pub tier: String,
    pub lifetime_purchases: f64,
    pub lifetime_points: f64,
    pub points: f64,
    pub labels: Vec<String>,
    pub extended_fields: Map<String, serde_json::Value>,
    pub custom_fields: Map<String, serde_json::Value>,
}

/// One rule's verdict for one bill (or one line item of it): "why these points".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleOutcome {
    pub rule: String,
    pub on: EarnTrigger,
    /// Index into `BillFacts::line_items` for `lineItem` rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_item: Option<usize>,
    pub matched: bool,
    /// Rounded per the program's rounding; zero when not matched, never negative.
    #[serde(with = "rust_decimal::serde::float")]
    pub points: Decimal,
    /// An evaluation failure (e.g. a missing field at bill time); the rule then awards nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The alternate currency the rule awards (None: points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// The tier-relevant numbers of a customer in one program.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierMetrics {
    pub lifetime_purchases: Decimal,
    pub lifetime_points: Decimal,
    pub purchases_in_period: Decimal,
    pub points_in_period: Decimal,
    pub visits_in_period: Decimal,
}

/// A program ready to evaluate; cheap to clone (shared).
#[derive(Clone)]
pub struct CompiledProgram {
    pub id: ProgramId,
    pub version: i64,
    pub doc: Arc<ProgramDoc>,
    /// Store ids the program is limited to (resolved from the document's codes); empty = all.
    pub store_ids: Vec<i64>,
    /// The earn rules, in document order, with their compiled expressions.
    rules: Arc<[CompiledRule]>,
    env: Arc<Env>,
    /// `expiry.date` parsed, for `fixedDate`.
    fixed_date: Option<NaiveDate>,
}

impl std::fmt::Debug for CompiledProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledProgram")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("name", &self.doc.name)
            .field("store_ids", &self.store_ids)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// One earn rule with its compiled `when` (absent = always) and `points`.
#[derive(Debug)]
struct CompiledRule {
    name: String,
    on: EarnTrigger,
    when: Option<CompiledExpr>,
    points: CompiledExpr,
    currency: Option<String>,
}

/// Most tiers, earn rules and stores one program may hold.
pub const TIERS_MAX: usize = 50;
pub const EARN_RULES_MAX: usize = 200;
pub const STORES_MAX: usize = 10_000;
/// Longest program, tier and rule name, in characters.
pub const NAME_LENGTH_MAX: usize = 100;
/// Bounds of the durations a document may give.
pub const TIER_VALIDITY_MONTHS_MAX: u32 = 120;
pub const EXPIRY_DAYS_MAX: u32 = 36_500;
pub const EXPIRY_MONTHS_MAX: u32 = 1_200;
pub const PROMISED_DELAY_DAYS_MAX: u32 = 3_650;
pub const POINTS_DECIMALS_MAX: u32 = 4;
/// Decimal places a double result is rounded to before the program's rounding (binary noise).
const DOUBLE_NOISE_DECIMALS: u32 = 8;
const MILLIS_PER_DAY: i64 = 86_400_000;

impl CompiledProgram {
    /// Validates `doc` and compiles its expressions; `store_ids` are its store codes, resolved.
    pub fn compile(
        id: ProgramId,
        version: i64,
        doc: ProgramDoc,
        store_ids: Vec<i64>,
    ) -> Result<CompiledProgram, ProgramError> {
        let fixed_date = validate(&doc)?;
        let env = expr::environment();
        let first_tier = doc.tiers.first().map(|t| t.name.as_str()).unwrap_or_default();
        let sample = Sample::new(first_tier)?;
        let mut rules = Vec::with_capacity(doc.earn.len());
        for (i, rule) in doc.earn.iter().enumerate() {
            let when = match &rule.when {
                Some(source) => Some(expr::compile(
                    &format!("earn[{i}].when"),
                    source,
                    rule.on,
                    Yields::Bool,
                    &env,
                    &sample,
                )?),
                None => None,
            };
            let points = expr::compile(
                &format!("earn[{i}].points"),
                &rule.points,
                rule.on,
                Yields::Number,
                &env,
                &sample,
            )?;
            rules.push(CompiledRule {
                name: rule.name.clone(),
                on: rule.on,
                when,
                points,
                currency: rule.currency.clone(),
            });
        }
        Ok(CompiledProgram {
            id,
            version,
            doc: Arc::new(doc),
            store_ids,
            rules: rules.into(),
            env,
            fixed_date,
        })
    }

    /// Every `transaction` rule once and every `lineItem` rule once per line item, in document
    /// order; rules that do not match are included with `matched = false` and zero points.
    pub fn evaluate_bill(&self, bill: &BillFacts, customer: &CustomerFacts) -> Vec<RuleOutcome> {
        let customer_value = expr::to_cel(customer);
        let bill_value = expr::to_cel(bill);
        let (customer_value, bill_value) = match (customer_value, bill_value) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) | (_, Err(e)) => return self.all_failed(bill, &e.to_string()),
        };
        let mut item_values: Vec<Option<Value>> = Vec::new();
        let mut outcomes = Vec::new();
        for rule in self.rules.iter() {
            match rule.on {
                EarnTrigger::Transaction => {
                    let facts =
                        Facts { bill: Some(&bill_value), item: None, customer: &customer_value };
                    outcomes.push(self.run(rule, None, &facts));
                }
                EarnTrigger::LineItem => {
                    if item_values.is_empty() {
                        item_values =
                            bill.line_items.iter().map(|i| expr::to_cel(i).ok()).collect();
                    }
                    for (i, item) in item_values.iter().enumerate() {
                        let Some(item) = item else {
                            outcomes.push(failed(rule, Some(i), "line item cannot be evaluated"));
                            continue;
                        };
                        let facts = Facts {
                            bill: Some(&bill_value),
                            item: Some(item),
                            customer: &customer_value,
                        };
                        outcomes.push(self.run(rule, Some(i), &facts));
                    }
                }
                EarnTrigger::Registration => {}
            }
        }
        outcomes
    }

    /// Every `registration` rule once, in document order.
    pub fn evaluate_registration(&self, customer: &CustomerFacts) -> Vec<RuleOutcome> {
        let customer_value = match expr::to_cel(customer) {
            Ok(v) => v,
            Err(e) => {
                return self
                    .rules
                    .iter()
                    .filter(|r| r.on == EarnTrigger::Registration)
                    .map(|r| failed(r, None, &e.to_string()))
                    .collect();
            }
        };
        let facts = Facts { bill: None, item: None, customer: &customer_value };
        self.rules
            .iter()
            .filter(|r| r.on == EarnTrigger::Registration)
            .map(|r| self.run(r, None, &facts))
            .collect()
    }

    fn all_failed(&self, bill: &BillFacts, error: &str) -> Vec<RuleOutcome> {
        let mut outcomes = Vec::new();
        for rule in self.rules.iter() {
            match rule.on {
                EarnTrigger::Transaction => outcomes.push(failed(rule, None, error)),
                EarnTrigger::LineItem => outcomes
                    .extend((0..bill.line_items.len()).map(|i| failed(rule, Some(i), error))),
                EarnTrigger::Registration => {}
            }
        }
        outcomes
    }

    /// One rule over one set of facts.
    fn run(&self, rule: &CompiledRule, line_item: Option<usize>, facts: &Facts<'_>) -> RuleOutcome {
        let mut outcome = RuleOutcome {
            rule: rule.name.clone(),
            on: rule.on,
            line_item,
            matched: false,
            points: Decimal::ZERO,
            error: None,
            currency: rule.currency.clone(),
        };
        if let Some(when) = &rule.when {
            match when.execute(&self.env, facts) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => return outcome,
                Ok(other) => {
                    outcome.error =
                        Some(format!("when yields {}, not a bool", expr::type_name(&other)));
                    return outcome;
                }
                Err(e) => {
                    outcome.error = Some(format!("when: {e}"));
                    return outcome;
                }
            }
        }
        outcome.matched = true;
        match rule.points.execute(&self.env, facts) {
            Ok(value) => match number_to_decimal(&value) {
                Ok(raw) if raw < Decimal::ZERO => outcome.error = Some("negative points".into()),
                Ok(raw) => outcome.points = self.round_points(raw),
                Err(reason) => outcome.error = Some(format!("points: {reason}")),
            },
            Err(e) => outcome.error = Some(format!("points: {e}")),
        }
        outcome
    }

    /// The raw (unrounded) points of earn rule number `number` (1-based, document order) over
    /// `bill` and `customer`, ignoring the rule's `when`: the manual issue API applies a rule as a
    /// strategy by hand. None when there is no such `transaction` rule.
    pub fn strategy_points(
        &self,
        number: usize,
        bill: &BillFacts,
        customer: &CustomerFacts,
    ) -> Option<Result<Decimal, String>> {
        let rule =
            self.rules.get(number.checked_sub(1)?).filter(|r| r.on == EarnTrigger::Transaction)?;
        let (customer_value, bill_value) = match (expr::to_cel(customer), expr::to_cel(bill)) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) | (_, Err(e)) => return Some(Err(e.to_string())),
        };
        let facts = Facts { bill: Some(&bill_value), item: None, customer: &customer_value };
        Some(match rule.points.execute(&self.env, &facts) {
            Ok(value) => match number_to_decimal(&value) {
                Ok(raw) if raw < Decimal::ZERO => Err("negative points".into()),
                Ok(raw) => Ok(raw),
                Err(reason) => Err(format!("points: {reason}")),
            },
            Err(e) => Err(format!("points: {e}")),
        })
    }

    /// Rounds raw points per `rounding` (decimals, and floor / half-up / ceil).
    pub fn round_points(&self, raw: Decimal) -> Decimal {
        let strategy = match self.doc.rounding.mode {
            RoundingMode::Floor => RoundingStrategy::ToNegativeInfinity,
            RoundingMode::Round => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::Ceil => RoundingStrategy::ToPositiveInfinity,
        };
        raw.round_dp_with_strategy(self.doc.rounding.points_decimals, strategy)
    }

    /// Number of tiers (at least 1).
    pub fn tier_count(&self) -> i32 {
        i32::try_from(self.doc.tiers.len()).unwrap_or(i32::MAX).max(1)
    }

    /// The name of tier `tier_number` (1-based; out-of-range numbers are clamped).
    pub fn tier_name(&self, tier_number: i32) -> &str {
        let index = usize::try_from(tier_number.clamp(1, self.tier_count()) - 1).unwrap_or(0);
        self.doc.tiers.get(index).map(|t| t.name.as_str()).unwrap_or_default()
    }

    /// The highest tier whose upgrade criterion `m` meets; 1 if none.
    pub fn qualifying_tier(&self, m: &TierMetrics) -> i32 {
        let mut best = 1;
        for (i, tier) in self.doc.tiers.iter().enumerate().skip(1) {
            if tier.upgrade.as_ref().is_some_and(|c| criterion_met(c, m)) {
                best = i32::try_from(i + 1).unwrap_or(best);
            }
        }
        best
    }

    /// Whether `m` meets the renewal criterion (true when there is none).
    pub fn renewal_met(&self, m: &TierMetrics) -> bool {
        match self.doc.tier_validity.as_ref().and_then(|v| v.renewal.as_ref()) {
            Some(c) => criterion_met(c, m),
            None => true,
        }
    }

    /// The tier a customer in `current` falls to when the validity ends without renewal.
    pub fn downgrade_target(&self, current: i32, m: &TierMetrics) -> i32 {
        let mode = self.doc.tier_validity.as_ref().map(|v| v.downgrade).unwrap_or_default();
        match mode {
            DowngradeMode::OneDown => (current - 1).max(1),
            DowngradeMode::ToQualifying => self.qualifying_tier(m).min(current).max(1),
        }
    }

    /// When a tier reached at `from_millis` ends: the end of the local day `tierValidity.months`
    /// months later (UTC millis); None without `tierValidity`.
    pub fn tier_expiry(&self, from_millis: i64, tz: Tz) -> Option<i64> {
        let months = self.doc.tier_validity.as_ref()?.months;
        let day = local_date(from_millis, tz)?.checked_add_months(Months::new(months))?;
        end_of_day(day, tz)
    }

    /// The start (local midnight) of the window of `tierValidity.months` months that ends at
    /// `now_millis`, for the "InPeriod" metrics; None without `tierValidity` (all time).
    pub fn period_start(&self, now_millis: i64, tz: Tz) -> Option<i64> {
        let months = self.doc.tier_validity.as_ref()?.months;
        let day = local_date(now_millis, tz)?.checked_sub_months(Months::new(months))?;
        start_of_day(day, tz)
    }

    /// When points awarded at `awarded_at_millis` expire (the last millisecond of a local day);
    /// None when they never do.
    pub fn points_expiry(&self, awarded_at_millis: i64, tz: Tz) -> Option<i64> {
        expiry_instant(&self.doc.expiry, self.fixed_date, awarded_at_millis, tz)
    }

    /// When promised points awarded at `awarded_at_millis` unlock; None when they are redeemable
    /// at once (`promised.delayDays` = 0).
    pub fn unlock_at(&self, awarded_at_millis: i64) -> Option<i64> {
        match self.doc.promised.delay_days {
            0 => None,
            days => awarded_at_millis.checked_add(i64::from(days) * MILLIS_PER_DAY),
        }
    }

    /// Whether the program covers `store_id` (a program without stores covers every store).
    pub fn applies_to_store(&self, store_id: i64) -> bool {
        self.store_ids.is_empty() || self.store_ids.contains(&store_id)
    }
}

/// When an award made at `awarded_at_millis` under the expiry rule `expiry` lapses (the last
/// millisecond of a local day); None when it never does. `fixed_date` is `expiry.date` parsed.
pub fn expiry_instant(
    expiry: &ExpiryDoc,
    fixed_date: Option<NaiveDate>,
    awarded_at_millis: i64,
    tz: Tz,
) -> Option<i64> {
    let awarded = local_date(awarded_at_millis, tz)?;
    let day = match expiry.kind {
        ExpiryKind::Never => return None,
        ExpiryKind::Rolling => match (expiry.days, expiry.months) {
            (Some(days), _) if days > 0 => {
                awarded.checked_add_days(chrono::Days::new(u64::from(days)))?
            }
            (_, Some(months)) => awarded.checked_add_months(Months::new(months))?,
            _ => return None,
        },
        ExpiryKind::EndOfPeriod => {
            let first = awarded.with_day(1)?;
            let target = first.checked_add_months(Months::new(expiry.months.unwrap_or(0)))?;
            target.checked_add_months(Months::new(1))?.pred_opt()?
        }
        ExpiryKind::FixedDate => fixed_date?,
    };
    end_of_day(day, tz)
}

fn failed(rule: &CompiledRule, line_item: Option<usize>, error: &str) -> RuleOutcome {
    RuleOutcome {
        rule: rule.name.clone(),
        on: rule.on,
        line_item,
        matched: false,
        points: Decimal::ZERO,
        error: Some(error.to_string()),
        currency: rule.currency.clone(),
    }
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

fn criterion_met(c: &TierCriterion, m: &TierMetrics) -> bool {
    metric_value(c.metric, m) >= c.at_least
}

/// A CEL number as a decimal; doubles are first rounded to 8 places to cancel binary noise
/// (`114.99999999999999` → `115`).
fn number_to_decimal(value: &Value) -> Result<Decimal, String> {
    match value {
        Value::Int(i) => Ok(Decimal::from(*i)),
        Value::UInt(u) => Ok(Decimal::from(*u)),
        Value::Float(f) => Decimal::try_from(*f)
            .map(|d| {
                d.round_dp_with_strategy(
                    DOUBLE_NOISE_DECIMALS,
                    RoundingStrategy::MidpointAwayFromZero,
                )
            })
            .map_err(|_| format!("{f} is not a representable number")),
        other => Err(format!("yields {}, not a number", expr::type_name(other))),
    }
}

/// The local calendar date of an instant.
pub fn local_date(millis: i64, tz: Tz) -> Option<NaiveDate> {
    let utc = DateTime::<Utc>::from_timestamp_millis(millis)?;
    Some(utc.with_timezone(&tz).date_naive())
}

/// The first instant of local day `day` (its midnight, or the first existing time after a gap).
pub fn start_of_day(day: NaiveDate, tz: Tz) -> Option<i64> {
    let midnight = day.and_hms_opt(0, 0, 0)?;
    // A DST gap at midnight: the day starts at the first local time that exists (within 24 h).
    for quarter in 0..96 {
        let local = midnight + chrono::Duration::minutes(15 * quarter);
        if let Some(instant) = tz.from_local_datetime(&local).earliest() {
            return Some(instant.timestamp_millis());
        }
    }
    None
}

/// The last millisecond of local day `day`: the next local midnight minus 1 ms.
pub fn end_of_day(day: NaiveDate, tz: Tz) -> Option<i64> {
    start_of_day(day.succ_opt()?, tz).map(|next| next - 1)
}

/// Checks everything but the expressions; returns the parsed `fixedDate`.
fn validate(doc: &ProgramDoc) -> Result<Option<NaiveDate>, ProgramError> {
    check_name("name", &doc.name)?;
    if doc.stores.len() > STORES_MAX {
        return Err(ProgramError::invalid("stores", format!("at most {STORES_MAX} stores")));
    }
    for (i, code) in doc.stores.iter().enumerate() {
        if code.trim().is_empty() {
            return Err(ProgramError::invalid(format!("stores[{i}]"), "must not be empty"));
        }
        if doc.stores[..i].contains(code) {
            return Err(ProgramError::invalid(
                format!("stores[{i}]"),
                format!("duplicate store '{code}'"),
            ));
        }
    }
    validate_tiers(doc)?;
    if let Some(validity) = &doc.tier_validity {
        if !(1..=TIER_VALIDITY_MONTHS_MAX).contains(&validity.months) {
            return Err(ProgramError::invalid(
                "tierValidity.months",
                format!("must be 1 to {TIER_VALIDITY_MONTHS_MAX}"),
            ));
        }
        if validity.renewal.as_ref().is_some_and(|r| r.at_least < Decimal::ZERO) {
            return Err(ProgramError::invalid(
                "tierValidity.renewal.atLeast",
                "must not be negative",
            ));
        }
    }
    if doc.earn.len() > EARN_RULES_MAX {
        return Err(ProgramError::invalid("earn", format!("at most {EARN_RULES_MAX} rules")));
    }
    for (i, rule) in doc.earn.iter().enumerate() {
        if let Some(currency) = &rule.currency {
            check_name(&format!("earn[{i}].currency"), currency)?;
        }
        let field = format!("earn[{i}].name");
        check_name(&field, &rule.name)?;
        if doc.earn[..i].iter().any(|r| r.name == rule.name) {
            return Err(ProgramError::invalid(
                field,
                format!("duplicate rule name '{}'", rule.name),
            ));
        }
        if let Some(coupon) = &rule.coupon {
            if rule.on != EarnTrigger::Transaction {
                return Err(ProgramError::invalid(
                    format!("earn[{i}].coupon"),
                    "only transaction rules can issue coupons",
                ));
            }
            if coupon.series_id <= 0 {
                return Err(ProgramError::invalid(
                    format!("earn[{i}].coupon.seriesId"),
                    "must be a coupon series id",
                ));
            }
        }
    }
    let fixed_date = validate_expiry(doc)?;
    if doc.promised.delay_days > PROMISED_DELAY_DAYS_MAX {
        return Err(ProgramError::invalid(
            "promised.delayDays",
            format!("must be at most {PROMISED_DELAY_DAYS_MAX}"),
        ));
    }
    let r = &doc.redemption;
    if r.min_points < Decimal::ZERO {
        return Err(ProgramError::invalid("redemption.minPoints", "must not be negative"));
    }
    if r.multiple_of.is_some_and(|m| m <= Decimal::ZERO) {
        return Err(ProgramError::invalid("redemption.multipleOf", "must be greater than 0"));
    }
    if r.max_per_bill.is_some_and(|m| m < Decimal::ZERO) {
        return Err(ProgramError::invalid("redemption.maxPerBill", "must not be negative"));
    }
    if r.point_value <= Decimal::ZERO {
        return Err(ProgramError::invalid("redemption.pointValue", "must be greater than 0"));
    }
    if r.min_lifetime_points.is_some_and(|m| m < Decimal::ZERO) {
        return Err(ProgramError::invalid("redemption.minLifetimePoints", "must not be negative"));
    }
    if r.min_lifetime_purchases.is_some_and(|m| m < Decimal::ZERO) {
        return Err(ProgramError::invalid(
            "redemption.minLifetimePurchases",
            "must not be negative",
        ));
    }
    if doc.rounding.points_decimals > POINTS_DECIMALS_MAX {
        return Err(ProgramError::invalid(
            "rounding.pointsDecimals",
            format!("must be 0 to {POINTS_DECIMALS_MAX}"),
        ));
    }
    Ok(fixed_date)
}

fn check_name(field: &str, name: &str) -> Result<(), ProgramError> {
    if name.trim().is_empty() {
        return Err(ProgramError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > NAME_LENGTH_MAX {
        return Err(ProgramError::invalid(
            field,
            format!("must be at most {NAME_LENGTH_MAX} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ProgramError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn validate_tiers(doc: &ProgramDoc) -> Result<(), ProgramError> {
    if doc.tiers.is_empty() {
        return Err(ProgramError::invalid("tiers", "at least one tier is required"));
    }
    if doc.tiers.len() > TIERS_MAX {
        return Err(ProgramError::invalid("tiers", format!("at most {TIERS_MAX} tiers")));
    }
    for (i, tier) in doc.tiers.iter().enumerate() {
        let field = format!("tiers[{i}].name");
        check_name(&field, &tier.name)?;
        if doc.tiers[..i].iter().any(|t| t.name == tier.name) {
            return Err(ProgramError::invalid(
                field,
                format!("duplicate tier name '{}'", tier.name),
            ));
        }
        match (&tier.upgrade, i) {
            (Some(_), 0) => {
                return Err(ProgramError::invalid(
                    "tiers[0].upgrade",
                    "the first (base) tier has no upgrade criterion",
                ));
            }
            (None, i) if i > 0 => {
                return Err(ProgramError::invalid(
                    format!("tiers[{i}].upgrade"),
                    "is required on every tier after the first",
                ));
            }
            (Some(c), i) => {
                let field = format!("tiers[{i}].upgrade.atLeast");
                if c.at_least < Decimal::ZERO {
                    return Err(ProgramError::invalid(field, "must not be negative"));
                }
                let previous = doc.tiers[..i]
                    .iter()
                    .rev()
                    .filter_map(|t| t.upgrade.as_ref())
                    .find(|p| p.metric == c.metric);
                if let Some(p) = previous
                    && c.at_least <= p.at_least
                {
                    return Err(ProgramError::invalid(
                        field,
                        format!(
                            "must be greater than the threshold of the tier below ({})",
                            p.at_least
                        ),
                    ));
                }
            }
            (None, _) => {}
        }
    }
    Ok(())
}

fn validate_expiry(doc: &ProgramDoc) -> Result<Option<NaiveDate>, ProgramError> {
    validate_expiry_doc("expiry", &doc.expiry)
}

/// Checks an expiry rule (the program's, or an alternate currency's); errors name fields under
/// `field` (`expiry.days`). Returns the parsed `fixedDate`.
pub fn validate_expiry_doc(field: &str, e: &ExpiryDoc) -> Result<Option<NaiveDate>, ProgramError> {
    let kind = match e.kind {
        ExpiryKind::Rolling => "rolling",
        ExpiryKind::EndOfPeriod => "endOfPeriod",
        ExpiryKind::FixedDate => "fixedDate",
        ExpiryKind::Never => "never",
    };
    let refuse = |key: &str| {
        Err(ProgramError::invalid(
            format!("{field}.{key}"),
            format!("not allowed with type {kind}"),
        ))
    };
    if e.days.is_some_and(|days| days > EXPIRY_DAYS_MAX) {
        return Err(ProgramError::invalid(
            format!("{field}.days"),
            format!("must be at most {EXPIRY_DAYS_MAX}"),
        ));
    }
    if e.months.is_some_and(|months| months > EXPIRY_MONTHS_MAX) {
        return Err(ProgramError::invalid(
            format!("{field}.months"),
            format!("must be at most {EXPIRY_MONTHS_MAX}"),
        ));
    }
    match e.kind {
        ExpiryKind::Rolling => {
            if e.date.is_some() {
                return refuse("date");
            }
            let days = e.days.unwrap_or(0);
            let months = e.months.unwrap_or(0);
            if (days > 0) == (months > 0) || e.days.is_some() == e.months.is_some() {
                return Err(ProgramError::invalid(
                    field,
                    "rolling expiry needs exactly one of days or months, greater than 0",
                ));
            }
            Ok(None)
        }
        ExpiryKind::EndOfPeriod => {
            if e.days.is_some() {
                return refuse("days");
            }
            if e.date.is_some() {
                return refuse("date");
            }
            if e.months.is_none() {
                return Err(ProgramError::invalid(
                    format!("{field}.months"),
                    "is required with type endOfPeriod",
                ));
            }
            Ok(None)
        }
        ExpiryKind::FixedDate => {
            if e.days.is_some() {
                return refuse("days");
            }
            if e.months.is_some() {
                return refuse("months");
            }
            let Some(date) = &e.date else {
                return Err(ProgramError::invalid(
                    format!("{field}.date"),
                    "is required with type fixedDate",
                ));
            };
            let parsed = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .ok()
                .filter(|_| date.len() == 10)
                .ok_or_else(|| {
                    ProgramError::invalid(
                        format!("{field}.date"),
                        format!("'{date}' is not a YYYY-MM-DD date"),
                    )
                })?;
            Ok(Some(parsed))
        }
        ExpiryKind::Never => {
            if e.days.is_some() {
                return refuse("days");
            }
            if e.months.is_some() {
                return refuse("months");
            }
            if e.date.is_some() {
                return refuse("date");
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::programs::model::{EarnRuleDoc, ExpiryDoc, RoundingDoc};
    use chrono_tz::{America::New_York, Asia::Kolkata, Europe::London, UTC};

    const SAMPLE: &str = r#"{"name": "Default", "default": true, "stores": [],
 "tiers": [{"name": "Bronze"},
           {"name": "Silver", "upgrade": {"metric": "lifetimePurchases", "atLeast": 10000}},
           {"name": "Gold",   "upgrade": {"metric": "lifetimePurchases", "atLeast": 50000}}],
 "tierValidity": {"months": 12, "renewal": {"metric": "purchasesInPeriod", "atLeast": 5000}, "downgrade": "oneDown"},
 "earn": [{"name": "base",  "on": "transaction", "when": "true", "points": "bill.amount * 0.1"},
          {"name": "gold",  "on": "transaction", "when": "customer.tier == 'Gold'", "points": "bill.amount * 0.05"},
          {"name": "shoes", "on": "lineItem", "when": "item.extendedFields.category == 'shoes'", "points": "item.amount * 0.1"},
          {"name": "signup", "on": "registration", "points": "100"}],
 "expiry": {"type": "rolling", "days": 365},
 "promised": {"delayDays": 0},
 "redemption": {"minPoints": 100, "multipleOf": 10, "maxPerBill": 5000, "pointValue": 0.25, "validationCode": "required"},
 "returns": {"reversePoints": true, "allowNegativeBalance": false},
 "rounding": {"pointsDecimals": 2, "mode": "floor"}}"#;

    fn dd(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn sample_doc() -> ProgramDoc {
        serde_json::from_str(SAMPLE).unwrap()
    }

    fn compile(doc: ProgramDoc) -> Result<CompiledProgram, ProgramError> {
        CompiledProgram::compile(ProgramId(1), 1, doc, Vec::new())
    }

    fn sample() -> CompiledProgram {
        compile(sample_doc()).unwrap()
    }

    /// Compiles `doc` after `change` and returns the (field, reason) it is refused for.
    #[track_caller]
    fn refused(change: impl FnOnce(&mut ProgramDoc)) -> (String, String) {
        let mut doc = sample_doc();
        change(&mut doc);
        match compile(doc) {
            Err(ProgramError::Invalid { field, reason }) => (field, reason),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[track_caller]
    fn refused_field(change: impl FnOnce(&mut ProgramDoc)) -> String {
        refused(change).0
    }

    fn rule(name: &str, on: EarnTrigger, when: Option<&str>, points: &str) -> EarnRuleDoc {
        EarnRuleDoc {
            name: name.into(),
            on,
            when: when.map(Into::into),
            points: points.into(),
            currency: None,
            coupon: None,
        }
    }

    fn millis(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().timestamp_millis()
    }

    fn end_of(tz: Tz, y: i32, mo: u32, d: u32) -> i64 {
        let next = NaiveDate::from_ymd_opt(y, mo, d).unwrap().succ_opt().unwrap();
        tz.from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap()
            .timestamp_millis()
            - 1
    }

    fn bill(amount: f64, items: Vec<ItemFacts>) -> BillFacts {
        BillFacts {
            amount,
            gross_amount: amount,
            bill_number: "B1".into(),
            billing_date: "2024-01-15T10:30:00+05:30".into(),
            source: "INSTORE".into(),
            store: "s1".into(),
            line_items: items,
            ..BillFacts::default()
        }
    }

    fn item(amount: f64, category: Option<&str>) -> ItemFacts {
        let mut extended_fields = Map::new();
        if let Some(c) = category {
            extended_fields.insert("category".into(), serde_json::json!(c));
        }
        ItemFacts {
            item_code: "i".into(),
            qty: 1.0,
            amount,
            extended_fields,
            ..ItemFacts::default()
        }
    }

    fn customer(tier: &str) -> CustomerFacts {
        CustomerFacts { id: 7, tier: tier.into(), ..CustomerFacts::default() }
    }

    #[test]
    fn long_chains_do_not_exhaust_the_stack() {
        let sum = vec!["1"; 2040].join("+");
        let nots = format!("{}true", "!".repeat(4000));
        let negs = format!("{}1", "-".repeat(4000));
        let selects = format!("bill{}", ".extendedFields".repeat(250));
        let ands = vec!["true"; 800].join(" && ");
        for (when, points) in [
            (None, sum.as_str()),
            (Some(nots.as_str()), "1"),
            (None, negs.as_str()),
            (Some(ands.as_str()), "1"),
            (Some(selects.as_str()), "1"),
        ] {
            let handle = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn({
                    let when = when.map(str::to_string);
                    let points = points.to_string();
                    move || {
                        let mut doc = sample_doc();
                        doc.earn[0].when = when;
                        doc.earn[0].points = points;
                        let _ = compile(doc);
                        // A long but shallow expression is fine.
                        let mut doc = sample_doc();
                        doc.earn[0].points = vec!["1"; 90].join("+");
                        compile(doc).unwrap();
                    }
                })
                .unwrap();
            handle.join().unwrap();
        }
        let (field, reason) = refused(|d| d.earn[0].points = vec!["1"; 2040].join("+"));
        assert_eq!(field, "earn[0].points");
        assert!(reason.contains("nested"), "{reason}");
    }

    #[test]
    fn compiled_programs_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<CompiledProgram>();
    }

    #[test]
    fn the_issue_sample_document_and_the_starter_compile() {
        let p = sample();
        assert_eq!(p.tier_count(), 3);
        assert_eq!(p.doc.earn.len(), 4);
        let starter = compile(ProgramDoc::starter()).unwrap();
        assert_eq!(starter.tier_count(), 1);
        let outcomes = starter.evaluate_bill(&bill(1234.0, vec![]), &customer("Base"));
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].points, dd("123.4"));
        assert_eq!(starter.points_expiry(0, UTC), Some(366 * MILLIS_PER_DAY - 1));
    }

    #[test]
    fn yaml_gives_the_same_document() {
        let yaml = r#"
name: Default
default: true
tiers:
  - name: Bronze
  - name: Silver
    upgrade: {metric: lifetimePurchases, atLeast: 10000}
  - name: Gold
    upgrade: {metric: lifetimePurchases, atLeast: 50000}
tierValidity: {months: 12, renewal: {metric: purchasesInPeriod, atLeast: 5000}, downgrade: oneDown}
earn:
  - {name: base, on: transaction, when: "true", points: "bill.amount * 0.1"}
  - {name: gold, on: transaction, when: "customer.tier == 'Gold'", points: "bill.amount * 0.05"}
  - {name: shoes, on: lineItem, when: "item.extendedFields.category == 'shoes'", points: "item.amount * 0.1"}
  - {name: signup, on: registration, points: "100"}
expiry: {type: rolling, days: 365}
promised: {delayDays: 0}
redemption: {minPoints: 100, multipleOf: 10, maxPerBill: 5000, pointValue: 0.25, validationCode: required}
returns: {reversePoints: true, allowNegativeBalance: false}
rounding: {pointsDecimals: 2, mode: floor}
"#;
        let doc: ProgramDoc = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(doc, sample_doc());
    }

    #[test]
    fn structural_validation_names_the_field() {
        assert_eq!(refused_field(|d| d.name = " ".into()), "name");
        assert_eq!(refused_field(|d| d.tiers.clear()), "tiers");
        assert_eq!(refused_field(|d| d.tiers[1].name = String::new()), "tiers[1].name");
        let (field, reason) = refused(|d| d.tiers[2].name = "Silver".into());
        assert_eq!(field, "tiers[2].name");
        assert!(reason.contains("duplicate"), "{reason}");
        assert_eq!(
            refused_field(|d| d.tiers[0].upgrade = d.tiers[1].upgrade.clone()),
            "tiers[0].upgrade"
        );
        assert_eq!(refused_field(|d| d.tiers[1].upgrade = None), "tiers[1].upgrade");
        let (field, reason) = refused(|d| {
            if let Some(u) = d.tiers[2].upgrade.as_mut() {
                u.at_least = dd("10000");
            }
        });
        assert_eq!(field, "tiers[2].upgrade.atLeast");
        assert!(reason.contains("greater"), "{reason}");
        assert_eq!(
            refused_field(|d| {
                if let Some(u) = d.tiers[1].upgrade.as_mut() {
                    u.at_least = dd("-1");
                }
            }),
            "tiers[1].upgrade.atLeast"
        );
        // Different metrics need not increase.
        let mut doc = sample_doc();
        doc.tiers[2].upgrade =
            Some(TierCriterion { metric: TierMetric::VisitsInPeriod, at_least: dd("5") });
        compile(doc).unwrap();

        assert_eq!(
            refused_field(|d| d.tier_validity.as_mut().unwrap().months = 0),
            "tierValidity.months"
        );
        assert_eq!(
            refused_field(|d| d.tier_validity.as_mut().unwrap().months = 121),
            "tierValidity.months"
        );
        assert_eq!(refused_field(|d| d.earn[1].name = String::new()), "earn[1].name");
        assert_eq!(refused_field(|d| d.earn[3].name = "base".into()), "earn[3].name");
        assert_eq!(refused_field(|d| d.rounding.points_decimals = 5), "rounding.pointsDecimals");
        assert_eq!(refused_field(|d| d.redemption.min_points = dd("-1")), "redemption.minPoints");
        assert_eq!(
            refused_field(|d| d.redemption.multiple_of = Some(Decimal::ZERO)),
            "redemption.multipleOf"
        );
        assert_eq!(
            refused_field(|d| d.redemption.max_per_bill = Some(dd("-5"))),
            "redemption.maxPerBill"
        );
        assert_eq!(
            refused_field(|d| d.redemption.point_value = Decimal::ZERO),
            "redemption.pointValue"
        );
        assert_eq!(refused_field(|d| d.promised.delay_days = 100_000), "promised.delayDays");
        assert_eq!(refused_field(|d| d.stores = vec!["a".into(), "a".into()]), "stores[1]");
    }

    #[test]
    fn expiry_validation_names_the_field() {
        fn set(
            kind: ExpiryKind,
            days: Option<u32>,
            months: Option<u32>,
            date: Option<&'static str>,
        ) -> impl Fn(&mut ProgramDoc) {
            move |d: &mut ProgramDoc| {
                d.expiry = ExpiryDoc { kind, days, months, date: date.map(Into::into) }
            }
        }
        use ExpiryKind::*;
        assert_eq!(refused_field(set(Rolling, None, None, None)), "expiry");
        assert_eq!(refused_field(set(Rolling, Some(0), None, None)), "expiry");
        assert_eq!(refused_field(set(Rolling, Some(10), Some(2), None)), "expiry");
        assert_eq!(refused_field(set(Rolling, Some(10), None, Some("2030-01-01"))), "expiry.date");
        assert_eq!(refused_field(set(EndOfPeriod, None, None, None)), "expiry.months");
        assert_eq!(refused_field(set(EndOfPeriod, Some(3), Some(1), None)), "expiry.days");
        assert_eq!(refused_field(set(FixedDate, None, None, None)), "expiry.date");
        assert_eq!(refused_field(set(FixedDate, None, None, Some("2030-02-30"))), "expiry.date");
        assert_eq!(refused_field(set(FixedDate, None, None, Some("2030-1-5"))), "expiry.date");
        assert_eq!(refused_field(set(Never, Some(3), None, None)), "expiry.days");
        assert_eq!(refused_field(set(Never, None, Some(3), None)), "expiry.months");
        assert_eq!(refused_field(set(Rolling, Some(40_000), None, None)), "expiry.days");
        for ok in [
            set(Rolling, Some(30), None, None),
            set(Rolling, None, Some(6), None),
            set(EndOfPeriod, None, Some(0), None),
            set(FixedDate, None, None, Some("2030-12-31")),
            set(Never, None, None, None),
        ] {
            let mut doc = sample_doc();
            ok(&mut doc);
            compile(doc).unwrap();
        }
    }

    #[test]
    fn syntax_errors_name_the_field_and_position() {
        let (field, reason) = refused(|d| d.earn[2].when = Some("item.amount >".into()));
        assert_eq!(field, "earn[2].when");
        assert!(reason.starts_with("syntax error at line 1, column 14: "), "{reason}");
        let (field, reason) = refused(|d| d.earn[0].points = "bill.amount * (0.1".into());
        assert_eq!(field, "earn[0].points");
        assert!(reason.contains("syntax error at line 1"), "{reason}");
        let (field, reason) = refused(|d| d.earn[0].points = "1 +\n  * 2".into());
        assert_eq!(field, "earn[0].points");
        assert!(reason.contains("line 2"), "{reason}");
        assert_eq!(refused_field(|d| d.earn[0].points = "  ".into()), "earn[0].points");
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        let (field, reason) = refused(|d| d.earn[0].points = deep);
        assert_eq!(field, "earn[0].points");
        assert!(reason.contains("nested"), "{reason}");
        assert_eq!(refused_field(|d| d.earn[0].points = "1".repeat(5000)), "earn[0].points");
    }

    #[test]
    fn unknown_attributes_and_variables_are_refused_with_position() {
        let (field, reason) = refused(|d| d.earn[0].points = "bill.amout * 0.1".into());
        assert_eq!(field, "earn[0].points");
        assert!(reason.contains("unknown attribute 'amout' of bill"), "{reason}");
        assert!(reason.contains("line 1, column 5"), "{reason}");
        let (_, reason) = refused(|d| d.earn[1].when = Some("customer.tierr == 'Gold'".into()));
        assert!(reason.contains("unknown attribute 'tierr'"), "{reason}");
        let (_, reason) = refused(|d| d.earn[2].points = "item['amt'] * 2.0".into());
        assert!(reason.contains("unknown attribute 'amt'"), "{reason}");
        let (_, reason) =
            refused(|d| d.earn[0].when = Some("bill.lineItems.exists(i, i.itemCod == 'x')".into()));
        assert!(reason.contains("unknown attribute 'itemCod'"), "{reason}");
        let (_, reason) = refused(|d| d.earn[0].when = Some("shop == 1".into()));
        assert!(reason.contains("unknown variable 'shop'"), "{reason}");
        let (_, reason) = refused(|d| d.earn[0].points = "frobnicate(bill.amount)".into());
        assert!(reason.contains("frobnicate"), "{reason}");
    }

    #[test]
    fn rules_may_only_see_the_variables_of_their_trigger() {
        let (field, reason) = refused(|d| d.earn[3].points = "bill.amount".into());
        assert_eq!(field, "earn[3].points");
        assert!(reason.contains("registration rules may not reference bill"), "{reason}");
        let (field, reason) = refused(|d| d.earn[3].when = Some("item.qty > 1.0".into()));
        assert_eq!(field, "earn[3].when");
        assert!(reason.contains("may not reference item"), "{reason}");
        let (field, reason) = refused(|d| d.earn[0].points = "item.amount".into());
        assert_eq!(field, "earn[0].points");
        assert!(reason.contains("transaction rules may not reference item"), "{reason}");
        // A comprehension variable may shadow nothing and is fine.
        let mut doc = sample_doc();
        doc.earn.push(rule(
            "many",
            EarnTrigger::Transaction,
            Some("bill.lineItems.exists(i, i.qty > 1.0) && 'vip' in customer.labels"),
            "size(bill.lineItems) * 5",
        ));
        compile(doc).unwrap();
    }

    #[test]
    fn type_errors_are_found_by_trial_evaluation() {
        let (field, reason) = refused(|d| d.earn[1].when = Some("customer.tier".into()));
        assert_eq!(field, "earn[1].when");
        assert!(reason.contains("must yield a bool, yields string"), "{reason}");
        let (field, reason) = refused(|d| d.earn[0].points = "bill.amount > 10.0".into());
        assert_eq!(field, "earn[0].points");
        assert!(reason.contains("must yield a number, yields bool"), "{reason}");
        let (_, reason) = refused(|d| d.earn[0].points = "bill.amount + 'x'".into());
        assert!(reason.starts_with("type error"), "{reason}");
        let (_, reason) = refused(|d| d.earn[0].points = "bill.amount * 10".into());
        assert!(reason.contains("write 10.0"), "{reason}");
        let (_, reason) = refused(|d| d.earn[1].when = Some("customer.tier > 3".into()));
        assert!(reason.starts_with("type error"), "{reason}");
        // Integer and double literals mix in comparisons, and ints are numbers.
        let mut doc = sample_doc();
        doc.earn[0].when = Some("bill.amount > 100 && customer.points >= 0".into());
        doc.earn[0].points = "int(bill.amount) / 10".into();
        compile(doc).unwrap();
    }

    #[test]
    fn org_fields_are_never_refused_at_save_time() {
        let mut doc = sample_doc();
        doc.earn.push(rule(
            "brand",
            EarnTrigger::Transaction,
            Some("bill.customFields['brand'] == 'x' || bill.extendedFields.channel == 'web'"),
            "customer.extendedFields.multiplier * bill.amount",
        ));
        doc.earn.push(rule(
            "has",
            EarnTrigger::LineItem,
            Some("has(item.customFields.size) && item.customFields[bill.store] == 1"),
            "1",
        ));
        compile(doc).unwrap();
    }

    #[test]
    fn bills_are_evaluated_rule_by_rule_in_document_order() {
        let p = sample();
        let b = bill(
            1000.0,
            vec![item(600.0, Some("shoes")), item(400.0, Some("hats")), item(5.0, None)],
        );
        let outcomes = p.evaluate_bill(&b, &customer("Gold"));
        let summary: Vec<(&str, Option<usize>, bool, Decimal)> =
            outcomes.iter().map(|o| (o.rule.as_str(), o.line_item, o.matched, o.points)).collect();
        assert_eq!(
            summary,
            vec![
                ("base", None, true, dd("100")),
                ("gold", None, true, dd("50")),
                ("shoes", Some(0), true, dd("60")),
                ("shoes", Some(1), false, dd("0")),
                ("shoes", Some(2), false, dd("0")),
            ]
        );
        // A missing org field does not match, and says why.
        assert!(outcomes[4].error.as_deref().unwrap_or_default().contains("category"));
        assert_eq!(outcomes[3].error, None);
        let silver = p.evaluate_bill(&b, &customer("Silver"));
        assert!(!silver[1].matched);
        assert_eq!(silver[1].points, Decimal::ZERO);
        let registration = p.evaluate_registration(&customer("Bronze"));
        assert_eq!(registration.len(), 1);
        assert_eq!(registration[0].rule, "signup");
        assert_eq!(registration[0].points, dd("100"));
        assert!(registration[0].matched);
    }

    #[test]
    fn points_are_rounded_after_cancelling_binary_noise() {
        let mut doc = sample_doc();
        // 1150 * 0.1 = 114.99999999999999 in binary floating point.
        doc.earn = vec![rule("base", EarnTrigger::Transaction, None, "bill.amount * 0.1")];
        let p = compile(doc.clone()).unwrap();
        assert_eq!(
            p.evaluate_bill(&bill(1150.0, vec![]), &customer("Bronze"))[0].points,
            dd("115")
        );
        doc.rounding.mode = RoundingMode::Ceil;
        let p = compile(doc.clone()).unwrap();
        assert_eq!(
            p.evaluate_bill(&bill(1150.0, vec![]), &customer("Bronze"))[0].points,
            dd("115")
        );
        assert_eq!(p.round_points(dd("1.231")), dd("1.24"));
        doc.rounding = RoundingDoc { points_decimals: 0, mode: RoundingMode::Round };
        let p = compile(doc.clone()).unwrap();
        assert_eq!(p.round_points(dd("2.5")), dd("3"));
        assert_eq!(p.round_points(dd("2.49")), dd("2"));
        doc.rounding = RoundingDoc { points_decimals: 2, mode: RoundingMode::Floor };
        let p = compile(doc).unwrap();
        assert_eq!(p.round_points(dd("1.239")), dd("1.23"));
        assert_eq!(
            p.evaluate_bill(&bill(12.345, vec![]), &customer("Bronze"))[0].points,
            dd("1.23")
        );
    }

    #[test]
    fn negative_and_failing_points_award_nothing() {
        let mut doc = sample_doc();
        doc.earn = vec![
            rule("neg", EarnTrigger::Transaction, None, "bill.amount * -1.0"),
            rule("div", EarnTrigger::Transaction, None, "100 / int(bill.discount)"),
            rule("ext", EarnTrigger::Transaction, Some("true"), "bill.extendedFields.bonus * 2.0"),
        ];
        let p = compile(doc).unwrap();
        let outcomes = p.evaluate_bill(&bill(100.0, vec![]), &customer("Bronze"));
        assert_eq!(outcomes[0].points, Decimal::ZERO);
        assert_eq!(outcomes[0].error.as_deref(), Some("negative points"));
        assert!(outcomes[1].error.is_some());
        assert_eq!(outcomes[1].points, Decimal::ZERO);
        assert!(outcomes[2].matched);
        assert_eq!(outcomes[2].points, Decimal::ZERO);
        assert!(outcomes[2].error.as_deref().unwrap_or_default().contains("bonus"));
    }

    #[test]
    fn tiers() {
        let p = sample();
        assert_eq!(p.tier_name(1), "Bronze");
        assert_eq!(p.tier_name(3), "Gold");
        assert_eq!(p.tier_name(0), "Bronze");
        assert_eq!(p.tier_name(9), "Gold");
        let m = |lifetime: Decimal, period: Decimal| TierMetrics {
            lifetime_purchases: lifetime,
            purchases_in_period: period,
            ..TierMetrics::default()
        };
        assert_eq!(p.qualifying_tier(&m(dd("0"), dd("0"))), 1);
        assert_eq!(p.qualifying_tier(&m(dd("10000"), dd("0"))), 2);
        assert_eq!(p.qualifying_tier(&m(dd("49999.99"), dd("0"))), 2);
        assert_eq!(p.qualifying_tier(&m(dd("50000"), dd("0"))), 3);
        assert!(p.renewal_met(&m(dd("0"), dd("5000"))));
        assert!(!p.renewal_met(&m(dd("90000"), dd("4999"))));
        assert_eq!(p.downgrade_target(3, &m(dd("0"), dd("0"))), 2);
        assert_eq!(p.downgrade_target(1, &m(dd("0"), dd("0"))), 1);

        let mut doc = sample_doc();
        if let Some(v) = doc.tier_validity.as_mut() {
            v.downgrade = DowngradeMode::ToQualifying;
        }
        let q = compile(doc.clone()).unwrap();
        assert_eq!(q.downgrade_target(3, &m(dd("0"), dd("0"))), 1);
        assert_eq!(q.downgrade_target(3, &m(dd("20000"), dd("0"))), 2);
        assert_eq!(q.downgrade_target(2, &m(dd("90000"), dd("0"))), 2);

        doc.tier_validity = None;
        let none = compile(doc).unwrap();
        assert!(none.renewal_met(&m(dd("0"), dd("0"))));
        assert_eq!(none.tier_expiry(0, UTC), None);
        assert_eq!(none.period_start(0, UTC), None);
    }

    #[test]
    fn tier_dates_follow_the_org_time_zone() {
        let p = sample();
        // 2024-01-31 23:30 in Kolkata is still Jan 31 there (18:00 UTC).
        let from = millis(Kolkata, 2024, 1, 31, 23, 30);
        assert_eq!(p.tier_expiry(from, Kolkata), Some(end_of(Kolkata, 2025, 1, 31)));
        // The same instant is Jan 31 in UTC too, but Feb 1 in neither; in UTC+0 it is 18:00.
        let leap = millis(UTC, 2024, 2, 29, 12, 0);
        assert_eq!(p.tier_expiry(leap, UTC), Some(end_of(UTC, 2025, 2, 28)));
        let now = millis(New_York, 2024, 6, 15, 9, 0);
        assert_eq!(p.period_start(now, New_York), Some(millis(New_York, 2023, 6, 15, 0, 0)));
    }

    #[test]
    fn points_expiry_dates() {
        let mut doc = sample_doc();
        let at = millis(London, 2024, 1, 31, 10, 0);
        let with = |doc: &mut ProgramDoc, kind, days, months, date: Option<&str>| {
            doc.expiry = ExpiryDoc { kind, days, months, date: date.map(Into::into) };
            compile(doc.clone()).unwrap()
        };
        // Rolling days across the spring DST change: still the end of the local day.
        let p = with(&mut doc, ExpiryKind::Rolling, Some(60), None, None);
        assert_eq!(p.points_expiry(at, London), Some(end_of(London, 2024, 3, 31)));
        // 2024-03-31 in London is 23 hours long: its last millisecond is 22:59:59.999 UTC.
        assert_eq!(p.points_expiry(at, London), Some(millis(UTC, 2024, 3, 31, 23, 0) - 1));
        // Jan 31 + 1 month = Feb 29 (2024 is a leap year).
        let p = with(&mut doc, ExpiryKind::Rolling, None, Some(1), None);
        assert_eq!(p.points_expiry(at, London), Some(end_of(London, 2024, 2, 29)));
        let p = with(&mut doc, ExpiryKind::EndOfPeriod, None, Some(1), None);
        assert_eq!(p.points_expiry(at, London), Some(end_of(London, 2024, 2, 29)));
        let p = with(&mut doc, ExpiryKind::EndOfPeriod, None, Some(0), None);
        assert_eq!(p.points_expiry(at, London), Some(end_of(London, 2024, 1, 31)));
        let p = with(&mut doc, ExpiryKind::EndOfPeriod, None, Some(11), None);
        assert_eq!(p.points_expiry(at, London), Some(end_of(London, 2024, 12, 31)));
        let p = with(&mut doc, ExpiryKind::FixedDate, None, None, Some("2024-10-27"));
        // The autumn DST change makes that day 25 hours long in London.
        assert_eq!(p.points_expiry(at, London), Some(millis(UTC, 2024, 10, 28, 0, 0) - 1));
        let p = with(&mut doc, ExpiryKind::Never, None, None, None);
        assert_eq!(p.points_expiry(at, London), None);
        // A New York award late in the evening is still that local day.
        let p = with(&mut doc, ExpiryKind::Rolling, Some(1), None, None);
        let late = millis(New_York, 2024, 3, 9, 23, 0);
        assert_eq!(p.points_expiry(late, New_York), Some(end_of(New_York, 2024, 3, 10)));
        assert_eq!(p.points_expiry(late, New_York), Some(millis(UTC, 2024, 3, 11, 4, 0) - 1));
    }

    #[test]
    fn unlock_and_stores() {
        let mut doc = sample_doc();
        assert_eq!(sample().unlock_at(1000), None);
        doc.promised.delay_days = 2;
        let p = CompiledProgram::compile(ProgramId(1), 1, doc, vec![4, 5]).unwrap();
        assert_eq!(p.unlock_at(1000), Some(1000 + 2 * MILLIS_PER_DAY));
        assert!(p.applies_to_store(5));
        assert!(!p.applies_to_store(6));
        assert!(sample().applies_to_store(6));
    }
}
