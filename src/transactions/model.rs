//! Transaction domain types: bill types, return types, the parsed bill, and `TransactionError`.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::error::{ApiError, Code};
use crate::points::model::Fixed;

/// Line items per bill: a bound on work per request.
pub const LINE_ITEMS_MAX: usize = 1_000;

/// A transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionType {
    Regular,
    Return,
    NotInterested,
    NotInterestedReturn,
    Mixed,
}

impl TransactionType {
    /// Case-insensitive, accepting the v1.1 lower-case spellings.
    pub fn parse(value: &str) -> Option<TransactionType> {
        match value.trim().to_ascii_uppercase().as_str() {
            "REGULAR" => Some(TransactionType::Regular),
            "RETURN" => Some(TransactionType::Return),
            "NOT_INTERESTED" => Some(TransactionType::NotInterested),
            "NOT_INTERESTED_RETURN" => Some(TransactionType::NotInterestedReturn),
            "MIXED" => Some(TransactionType::Mixed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TransactionType::Regular => "REGULAR",
            TransactionType::Return => "RETURN",
            TransactionType::NotInterested => "NOT_INTERESTED",
            TransactionType::NotInterestedReturn => "NOT_INTERESTED_RETURN",
            TransactionType::Mixed => "MIXED",
        }
    }

    /// Loyalty bills need a registered customer; not-interested ones have none.
    pub fn needs_customer(self) -> bool {
        matches!(self, TransactionType::Regular | TransactionType::Return | TransactionType::Mixed)
    }

    pub fn is_return(self) -> bool {
        matches!(self, TransactionType::Return | TransactionType::NotInterestedReturn)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnType {
    Full,
    LineItem,
    Amount,
}

impl ReturnType {
    pub fn parse(value: &str) -> Option<ReturnType> {
        match value.trim().to_ascii_uppercase().as_str() {
            "FULL" => Some(ReturnType::Full),
            "LINE_ITEM" => Some(ReturnType::LineItem),
            "AMOUNT" => Some(ReturnType::Amount),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnType::Full => "FULL",
            ReturnType::LineItem => "LINE_ITEM",
            ReturnType::Amount => "AMOUNT",
        }
    }
}

/// One line of a bill, validated (no negative money or quantity).
#[derive(Debug, Clone, Default)]
pub struct LineInput {
    pub serial: i64,
    /// `REGULAR` or `RETURN` (the latter only on MIXED bills).
    pub is_return: bool,
    pub item_code: String,
    pub description: String,
    pub qty: Fixed,
    pub rate: Fixed,
    pub value: Fixed,
    pub discount: Fixed,
    pub amount: Fixed,
    pub attributes: Value,
    pub extended_fields: Map<String, Value>,
    pub custom_fields: Map<String, Value>,
}

/// A bill as both APIs describe it, parsed into domain values.
#[derive(Debug, Clone)]
pub struct BillInput {
    pub kind: TransactionType,
    pub bill_number: String,
    /// UTC instant of the bill (or of the return).
    pub billing_at: i64,
    /// The offset the client sent (or the org's, when it sent none), kept for reads.
    pub billing_offset: String,
    pub amount: Fixed,
    pub gross_amount: Fixed,
    pub discount: Fixed,
    pub note: String,
    pub delivery_status: String,
    pub outlier_status: String,
    pub not_interested_reason: String,
    pub return_type: Option<ReturnType>,
    /// The sale a return or exchange refers to, by id (needed when numbers repeat across stores).
    pub parent_id: Option<i64>,
    /// The original sale's time as the client remembers it: picks among sales of one number.
    pub purchase_at: Option<i64>,
    /// For MIXED bills: the number of the sale whose lines come back.
    pub parent_bill_number: Option<String>,
    pub payment_modes: Value,
    pub extended_fields: Map<String, Value>,
    pub custom_fields: Map<String, Value>,
    pub line_items: Vec<LineInput>,
    pub currency_code: Option<String>,
    pub local_amount: Option<Fixed>,
}

/// Why a transaction was refused; each maps to a documented 600-series (or customer) code.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    #[error("{1}")]
    Coded(Code, String),
    #[error(transparent)]
    Customer(#[from] crate::customers::model::CustomerError),
    #[error(transparent)]
    Field(#[from] crate::fields::service::FieldError),
    #[error(transparent)]
    Program(#[from] crate::programs::model::ProgramError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl TransactionError {
    pub fn coded(code: Code, message: impl Into<String>) -> TransactionError {
        TransactionError::Coded(code, message.into())
    }

    /// The code's default message.
    pub fn code(code: Code) -> TransactionError {
        TransactionError::Coded(code, code.info().message.to_string())
    }
}

impl From<TransactionError> for ApiError {
    fn from(e: TransactionError) -> ApiError {
        match e {
            TransactionError::Coded(code, message) => ApiError::with_message(code, message),
            TransactionError::Customer(e) => e.into(),
            TransactionError::Field(e) => e.into(),
            TransactionError::Program(e) => e.into(),
            TransactionError::Db(e) => e.into(),
        }
    }
}

/// Parses a money or quantity value that must not be negative; `code` is the error for a
/// negative one, and a value that is not a number is `InvalidInput` naming `field`.
pub fn non_negative(
    field: &str,
    value: Option<&Value>,
    code: Code,
) -> Result<Fixed, TransactionError> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Fixed::ZERO) };
    let decimal = decimal_of(value).ok_or_else(|| {
        TransactionError::coded(Code::InvalidInput, format!("{field} must be a number"))
    })?;
    if decimal.is_sign_negative() && !decimal.is_zero() {
        return Err(TransactionError::coded(code, format!("{field} must not be negative")));
    }
    Fixed::from_decimal(decimal).ok_or_else(|| {
        TransactionError::coded(Code::InvalidInput, format!("{field} is out of range"))
    })
}

/// A JSON number or numeric string as a decimal.
pub fn decimal_of(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Decimal::from(i))
            } else {
                n.as_f64().and_then(|f| Decimal::try_from(f).ok()).map(|d| d.round_dp(8))
            }
        }
        Value::String(s) if s.trim().is_empty() => Some(Decimal::ZERO),
        Value::String(s) => s.trim().parse::<Decimal>().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_parse_case_insensitively() {
        assert_eq!(TransactionType::parse("not_interested"), Some(TransactionType::NotInterested));
        assert_eq!(TransactionType::parse("Regular"), Some(TransactionType::Regular));
        assert_eq!(TransactionType::parse("gift"), None);
        assert_eq!(ReturnType::parse("line_item"), Some(ReturnType::LineItem));
    }

    #[test]
    fn negative_money_gets_its_code() {
        let err = non_negative("discount", Some(&json!(-1)), Code::NegativeDiscount).unwrap_err();
        assert!(matches!(err, TransactionError::Coded(Code::NegativeDiscount, _)));
        assert_eq!(
            non_negative("amount", Some(&json!("12.50")), Code::InvalidBillAmount).unwrap(),
            Fixed(125_000)
        );
        assert_eq!(
            non_negative("amount", Some(&json!(0.1)), Code::InvalidBillAmount).unwrap(),
            Fixed(1_000)
        );
        assert!(non_negative("amount", Some(&json!("abc")), Code::InvalidBillAmount).is_err());
        assert_eq!(non_negative("amount", None, Code::InvalidBillAmount).unwrap(), Fixed::ZERO);
    }
}
