//! The program document: one JSON (or YAML) value per program; keys may be added, never renamed.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A program id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProgramId(pub i64);

/// The whole program as its managers write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProgramDoc {
    pub name: String,
    #[serde(default)]
    pub default: bool,
    /// Store codes the program is limited to; empty means every store.
    #[serde(default)]
    pub stores: Vec<String>,
    pub tiers: Vec<TierDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_validity: Option<TierValidityDoc>,
    #[serde(default)]
    pub earn: Vec<EarnRuleDoc>,
    #[serde(default)]
    pub expiry: ExpiryDoc,
    #[serde(default)]
    pub promised: PromisedDoc,
    #[serde(default)]
    pub redemption: RedemptionDoc,
    #[serde(default)]
    pub returns: ReturnsDoc,
    #[serde(default)]
    pub rounding: RoundingDoc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierDoc {
    pub name: String,
    /// Absent on the base (first) tier; required on every other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<TierCriterion>,
}

/// "metric at least value", e.g. `lifetimePurchases >= 10000`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierCriterion {
    pub metric: TierMetric,
    #[serde(with = "rust_decimal::serde::float")]
    pub at_least: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TierMetric {
    LifetimePurchases,
    LifetimePoints,
    PurchasesInPeriod,
    PointsInPeriod,
    VisitsInPeriod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierValidityDoc {
    pub months: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal: Option<TierCriterion>,
    #[serde(default)]
    pub downgrade: DowngradeMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DowngradeMode {
    #[default]
    OneDown,
    ToQualifying,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EarnRuleDoc {
    pub name: String,
    pub on: EarnTrigger,
    /// A boolean expression; absent means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// A numeric expression giving the points; `"0"` (the default) for rules that only issue a
    /// coupon.
    #[serde(default = "no_points")]
    pub points: String,
    /// The org's alternate currency (by name) the rule awards instead of points; absent means
    /// the program's points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// A coupon of a series issued to the customer when the rule matches (transaction rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CouponRewardDoc>,
}

fn no_points() -> String {
    "0".into()
}

/// The coupon an earn rule issues: one coupon of `seriesId`, under the series' own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CouponRewardDoc {
    pub series_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EarnTrigger {
    Transaction,
    LineItem,
    Registration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpiryDoc {
    #[serde(rename = "type")]
    pub kind: ExpiryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<u32>,
    /// `YYYY-MM-DD` for `fixedDate`: points expire at the end of that day, org time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

impl Default for ExpiryDoc {
    fn default() -> Self {
        ExpiryDoc { kind: ExpiryKind::Rolling, days: Some(365), months: None, date: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExpiryKind {
    Rolling,
    EndOfPeriod,
    FixedDate,
    Never,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromisedDoc {
    /// Days an award stays promised (locked) before it becomes redeemable; 0 = at once.
    #[serde(default)]
    pub delay_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedemptionDoc {
    #[serde(default, with = "rust_decimal::serde::float")]
    pub min_points: Decimal,
    #[serde(
        default,
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub multiple_of: Option<Decimal>,
    #[serde(
        default,
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_per_bill: Option<Decimal>,
    /// Currency value of one point.
    #[serde(with = "rust_decimal::serde::float")]
    pub point_value: Decimal,
    #[serde(default)]
    pub validation_code: ValidationCodeMode,
    /// Lifetime points a customer needs before redeeming (805 below).
    #[serde(
        default,
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_lifetime_points: Option<Decimal>,
    /// Lifetime purchases a customer needs before redeeming (806 below).
    #[serde(
        default,
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_lifetime_purchases: Option<Decimal>,
}

impl Default for RedemptionDoc {
    fn default() -> Self {
        RedemptionDoc {
            min_points: Decimal::ZERO,
            multiple_of: None,
            max_per_bill: None,
            point_value: Decimal::ONE,
            validation_code: ValidationCodeMode::Optional,
            min_lifetime_points: None,
            min_lifetime_purchases: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ValidationCodeMode {
    Required,
    #[default]
    Optional,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReturnsDoc {
    #[serde(default = "yes")]
    pub reverse_points: bool,
    #[serde(default)]
    pub allow_negative_balance: bool,
}

impl Default for ReturnsDoc {
    fn default() -> Self {
        ReturnsDoc { reverse_points: true, allow_negative_balance: false }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoundingDoc {
    #[serde(default = "two")]
    pub points_decimals: u32,
    #[serde(default)]
    pub mode: RoundingMode,
}

impl Default for RoundingDoc {
    fn default() -> Self {
        RoundingDoc { points_decimals: 2, mode: RoundingMode::Floor }
    }
}

fn two() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RoundingMode {
    #[default]
    Floor,
    Round,
    Ceil,
}

impl ProgramDoc {
    /// The program every new org starts with: one tier, 10% of the net bill amount as points,
    /// expiring 365 days after the award.
    pub fn starter() -> ProgramDoc {
        ProgramDoc {
            name: "Default".into(),
            default: true,
            stores: Vec::new(),
            tiers: vec![TierDoc { name: "Base".into(), upgrade: None }],
            tier_validity: None,
            earn: vec![EarnRuleDoc {
                name: "base".into(),
                on: EarnTrigger::Transaction,
                when: None,
                points: "bill.amount * 0.1".into(),
                currency: None,
                coupon: None,
            }],
            expiry: ExpiryDoc::default(),
            promised: PromisedDoc::default(),
            redemption: RedemptionDoc::default(),
            returns: ReturnsDoc::default(),
            rounding: RoundingDoc::default(),
        }
    }
}

/// Why a program could not be saved, found or used; each maps to a documented code.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The document is invalid: `field` is its path (`earn[2].when`), `reason` says why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Another program of the org has this name.
    #[error("name: the org already has a program named '{0}'")]
    NameTaken(String),
    #[error("Program not found")]
    NotFound,
    /// The org has no program at all (not even the default one).
    #[error("The org has no loyalty program")]
    NoProgram,
    /// An earn rule names a currency the org does not have (or has deactivated).
    #[error("{field}: '{name}' is not an active alternate currency of the org")]
    UnknownCurrency { field: String, name: String },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl ProgramError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ProgramError {
        ProgramError::Invalid { field: field.into(), reason: reason.into() }
    }
}

impl From<ProgramError> for crate::error::ApiError {
    fn from(e: ProgramError) -> Self {
        use crate::error::{ApiError, Code};
        match e {
            ProgramError::Db(db) => ApiError::from(db),
            ProgramError::NotFound | ProgramError::NoProgram => {
                ApiError::with_message(Code::NotFound, e.to_string())
            }
            ProgramError::NameTaken(_) => {
                ApiError::with_message(Code::EntityNameExists, e.to_string())
            }
            ProgramError::Invalid { .. } => {
                ApiError::with_message(Code::InvalidInput, e.to_string())
            }
            ProgramError::UnknownCurrency { .. } => {
                ApiError::with_message(Code::UnknownAlternateCurrency, e.to_string())
            }
        }
    }
}
