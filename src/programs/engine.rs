//! A compiled program: its earn rules ready to evaluate over a bill and a customer, its tier
//! ladder, and the date arithmetic of its expiry and promise rules.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};

use super::model::{EarnTrigger, ProgramDoc, ProgramId};

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
    pub extended_fields: Map<String, Value>,
    pub custom_fields: Map<String, Value>,
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
    pub extended_fields: Map<String, Value>,
    pub custom_fields: Map<String, Value>,
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
    pub extended_fields: Map<String, Value>,
    pub custom_fields: Map<String, Value>,
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
    pub points: Decimal,
    /// An evaluation failure (e.g. a missing field at bill time); the rule then awards nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
#[derive(Debug, Clone)]
pub struct CompiledProgram {
    pub id: ProgramId,
    pub version: i64,
    pub doc: Arc<ProgramDoc>,
    /// Store ids the program is limited to (resolved from the document's codes); empty = all.
    pub store_ids: Vec<i64>,
}
