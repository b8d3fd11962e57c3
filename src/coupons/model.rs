//! Coupon types parsed at the boundary: the series document (discount, validity, code generation,
//! limits), codes and the case they are shown in, status filters, and `CouponError` with the
//! documented code of every refusal.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use rand::Rng;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::db::DbError;
use crate::error::{ApiError, Code};
use crate::points::model::Fixed;
use crate::transactions::time::local_to_millis;

/// `-1` on a limit: unlimited, or not configured.
pub const UNLIMITED: i64 = -1;
/// Largest value any numeric limit of a series may take.
pub const LIMIT_MAX: i64 = 1_000_000_000;
/// Default and allowed length of the random part of a generated code.
pub const RANDOM_CODE_LENGTH_DEFAULT: u32 = 8;
pub const RANDOM_CODE_LENGTH_MIN: u32 = 4;
pub const RANDOM_CODE_LENGTH_MAX: u32 = 32;
/// Longest code prefix or suffix, and longest code accepted on the wire or in an upload.
pub const AFFIX_LENGTH_MAX: usize = 20;
pub const CODE_LENGTH_MAX: usize = 64;
/// Longest texts of a series.
const DESCRIPTION_LENGTH_MAX: usize = 500;
const DISCOUNT_CODE_LENGTH_MAX: usize = 100;
const TOKEN_LENGTH_MAX: usize = 50;
const TEMPLATE_LENGTH_MAX: usize = 2_000;
const INFO_LENGTH_MAX: usize = 2_000;
/// Most custom properties, restricted org entities and product restrictions of a series.
const CUSTOM_PROPERTIES_MAX: usize = 50;
const ORG_ENTITIES_MAX: usize = 1_000;
const PRODUCT_INFO_MAX: usize = 100;
/// Most mutually exclusive series a series may name.
const MUTUAL_EXCLUSIONS_MAX: usize = 100;
/// Longest expiry strategies: days, and months to a month end.
const EXPIRY_DAYS_MAX: i64 = 36_500;
const EXPIRY_MONTHS_MAX: i64 = 1_200;
/// Longest metadata value (`sourceType`, `sourceId`, … on issuance).
pub const METADATA_VALUE_LENGTH_MAX: usize = 50;
const DAY_MS: i64 = 86_400_000;

/// Why a coupon request was refused; each variant has its documented code ([`CouponError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    #[error("{0}")]
    Invalid(String),
    #[error("Coupon series id {0} is invalid")]
    SeriesNotFound(i64),
    #[error("Coupon series {0} has expired")]
    SeriesExpired(i64),
    #[error("Customer not found for the given identifier")]
    CustomerNotFound,
    #[error("{0}")]
    CustomerInvalid(String),
    #[error("Unable to issue coupon: {0}")]
    IssueRefused(String),
    #[error("Coupon code '{0}' is invalid")]
    CodeInvalid(String),
    #[error("Coupon code '{0}' does not exist")]
    CodeNotFound(String),
    #[error("Coupon code '{0}' is not valid for this organization")]
    OtherOrg(String),
    #[error("Coupon code '{0}' has been revoked")]
    Revoked(String),
    #[error("Coupon code '{0}' is not issued to this customer")]
    NotIssued(String),
    #[error("Coupon code '{0}' is not meant for this customer")]
    NotForCustomer(String),
    #[error("Coupon code '{code}' can be redeemed from {from}")]
    NotYetValid { code: String, from: String },
    #[error("Coupon code '{0}' has expired")]
    Expired(String),
    #[error("Coupon code '{0}' is already redeemed")]
    AlreadyRedeemed(String),
    #[error("Coupon code '{0}' was already redeemed by this customer")]
    RedeemedByCustomer(String),
    #[error("{0}")]
    CustomerLimit(String),
    #[error("Maximum redemptions of coupon series {0} are already reached")]
    SeriesRedemptionsExhausted(i64),
    #[error("Coupon code '{0}' cannot be redeemed at this store or till")]
    StoreNotAllowed(String),
    #[error("{0}")]
    RedemptionRefused(String),
    #[error("Transaction number is mandatory for redemption")]
    TransactionNumberRequired,
    #[error("The validation code is missing, wrong or expired")]
    ValidationCodeInvalid,
    #[error("No redemption id passed")]
    NoRedemptionId,
    #[error("Redemption id {0} is invalid")]
    InvalidRedemptionId(i64),
    #[error("{0}")]
    MessageNotSent(String),
    #[error("{0}")]
    SmsNotSent(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl CouponError {
    pub fn invalid(message: impl Into<String>) -> CouponError {
        CouponError::Invalid(message.into())
    }

    /// The documented code of this refusal.
    pub fn code(&self) -> Code {
        match self {
            CouponError::Invalid(_) => Code::CouponInvalidInput,
            CouponError::SeriesNotFound(_) => Code::InvalidCouponSeries,
            CouponError::SeriesExpired(_) => Code::CouponSeriesExpired,
            CouponError::CustomerNotFound => Code::CouponCustomerNotFound,
            CouponError::CustomerInvalid(_) => Code::CouponCustomerInvalid,
            CouponError::IssueRefused(_) => Code::CouponIssueFailed,
            CouponError::CodeInvalid(_) => Code::InvalidCouponCode,
            CouponError::CodeNotFound(_) => Code::CouponCodeNotFound,
            CouponError::OtherOrg(_) => Code::CouponNotForOrg,
            CouponError::Revoked(_) => Code::CouponRevoked,
            CouponError::NotIssued(_) => Code::CouponNotIssuedToCustomer,
            CouponError::NotForCustomer(_) => Code::CouponNotForCustomer,
            CouponError::NotYetValid { .. } => Code::UnableToRedeemCoupon,
            CouponError::Expired(_) => Code::CouponExpired,
            CouponError::AlreadyRedeemed(_) => Code::CouponAlreadyRedeemed,
            CouponError::RedeemedByCustomer(_) => Code::CouponRedeemedByCustomer,
            CouponError::CustomerLimit(_) => Code::CouponCustomerLimitReached,
            CouponError::SeriesRedemptionsExhausted(_) => Code::CouponMaxRedemptionsReached,
            CouponError::StoreNotAllowed(_) => Code::CouponStoreNotAllowed,
            CouponError::RedemptionRefused(_) => Code::CouponRedemptionFailed,
            CouponError::TransactionNumberRequired => Code::CouponTransactionNumberRequired,
            CouponError::ValidationCodeInvalid => Code::CouponValidationCodeInvalid,
            CouponError::NoRedemptionId => Code::NoRedemptionId,
            CouponError::InvalidRedemptionId(_) => Code::InvalidRedemptionIds,
            CouponError::MessageNotSent(_) => Code::CouponMessageNotSent,
            CouponError::SmsNotSent(_) => Code::CouponSmsFailed,
            CouponError::Db(_) => Code::Internal,
        }
    }
}

impl From<CouponError> for ApiError {
    fn from(e: CouponError) -> Self {
        match e {
            CouponError::Db(db) => ApiError::from(db),
            other => ApiError::with_message(other.code(), other.to_string()),
        }
    }
}

impl From<crate::customers::model::CustomerError> for CouponError {
    fn from(e: crate::customers::model::CustomerError) -> Self {
        match e {
            crate::customers::model::CustomerError::Db(db) => CouponError::Db(db),
            _ => CouponError::CustomerNotFound,
        }
    }
}

/// `ABS` (a flat amount) or `PERC` (a percentage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountType {
    Abs,
    Perc,
}

impl DiscountType {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountType::Abs => "ABS",
            DiscountType::Perc => "PERC",
        }
    }
}

/// How long an issued coupon lives: as long as its series, a number of days after issue, or to
/// the end of the month a number of months after issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExpiryStrategy {
    SeriesExpiry,
    Days,
    MonthsEnd,
}

impl ExpiryStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryStrategy::SeriesExpiry => "SERIES_EXPIRY",
            ExpiryStrategy::Days => "DAYS",
            ExpiryStrategy::MonthsEnd => "MONTHS_END",
        }
    }
}

/// The characters of the random part of generated codes (a Perks extension, `codeAlphabet`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CodeAlphabet {
    /// Upper-case letters and digits without the look-alikes `0 O 1 I L`.
    #[default]
    Alphanumeric,
    Numeric,
    Alphabetic,
}

impl CodeAlphabet {
    fn characters(self) -> &'static [u8] {
        match self {
            CodeAlphabet::Alphanumeric => b"23456789ABCDEFGHJKMNPQRSTUVWXYZ",
            CodeAlphabet::Numeric => b"0123456789",
            CodeAlphabet::Alphabetic => b"ABCDEFGHJKMNPQRSTUVWXYZ",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CodeAlphabet::Alphanumeric => "ALPHANUMERIC",
            CodeAlphabet::Numeric => "NUMERIC",
            CodeAlphabet::Alphabetic => "ALPHABETIC",
        }
    }
}

/// A store, till, zone or concept where a series' coupons may be redeemed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgEntity {
    pub kind: String,
    pub id: i64,
}

/// A series as accepted (and stored): every field of `CouponSeriesV2` except the counters.
/// Limits hold `-1` for unlimited; money is in ten-thousandths; instants are UTC millis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesConfig {
    pub description: String,
    pub discount_code: String,
    pub series_code: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub discount_upto: i64,
    pub discount_on: String,
    pub client_handling_type: String,
    pub valid_till: i64,
    /// The offset the end date was given with (`+05:30`), used to show it back.
    pub valid_till_offset: String,
    pub valid_days_from_creation: i64,
    pub expiry_strategy: ExpiryStrategy,
    pub expiry_strategy_value: i64,
    pub redemption_valid_from: Option<i64>,
    pub any_user: bool,
    pub sms_template: String,
    pub sms_disabled: bool,
    pub max_create: i64,
    pub max_redeem: i64,
    pub redemption_per_coupon_max_limit: i64,
    pub max_redemptions_in_series_per_user: i64,
    pub same_user_multiple_redeem: bool,
    pub multiple_use_allowed: bool,
    pub multiple_vouchers_per_user_allowed: bool,
    pub max_vouchers_per_user: i64,
    pub min_days_between_vouchers: i64,
    pub min_days_between_redemption: i64,
    pub do_not_resend_existing_voucher: bool,
    pub mutual_exclusive_series_ids: Vec<i64>,
    pub transferrable: bool,
    pub referral_existing_users_allowed: bool,
    pub max_referrals_per_referee: i64,
    pub validation_required: bool,
    pub valid_with_discounted_item: bool,
    pub min_bill_amount: Option<i64>,
    pub max_bill_amount: Option<i64>,
    pub product_info: Vec<Value>,
    pub redemption_org_entities: Vec<OrgEntity>,
    pub target_user_details: Value,
    pub coupon_prefix: String,
    pub prefix_enabled: bool,
    pub org_prefix_override: bool,
    pub coupon_suffix: String,
    pub suffix_enabled: bool,
    pub org_suffix_override: bool,
    pub random_code_length: u32,
    pub code_alphabet: CodeAlphabet,
    pub info: String,
    pub custom_property_map: Map<String, Value>,
}

/// Keys that must be present in an update body (spec: "Mandatory on update").
pub const UPDATE_REQUIRED: [&str; 9] = [
    "discountCode",
    "discountType",
    "discountValue",
    "anyUser",
    "smsTemplate",
    "clientHandlingType",
    "seriesCode",
    "expiryStrategyType",
    "description",
];
/// Keys that must be present when a series is created.
const CREATE_REQUIRED: [&str; 9] = [
    "description",
    "discountCode",
    "validTillDate",
    "discountType",
    "discountValue",
    "clientHandlingType",
    "expiryStrategyType",
    "anyUser",
    "smsTemplate",
];

/// Reads the fields of one `CouponSeriesV2` body with their paths in messages.
struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn text(&self, key: &str, max: usize) -> Result<Option<String>, CouponError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.chars().count() > max || s.chars().any(char::is_control) {
                    return Err(CouponError::invalid(format!(
                        "{key} must be at most {max} characters without control characters"
                    )));
                }
                Ok(Some(s.to_string()))
            }
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(CouponError::invalid(format!("{key} must be a string"))),
        }
    }

    fn required_text(&self, key: &str, max: usize) -> Result<String, CouponError> {
        self.text(key, max)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CouponError::invalid(format!("{key} is required")))
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, CouponError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(CouponError::invalid(format!("{key} must be true or false"))),
        }
    }

    fn decimal(&self, key: &str) -> Result<Option<Decimal>, CouponError> {
        let bad = || CouponError::invalid(format!("{key} must be a number"));
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.to_string().parse::<Decimal>().map(Some).map_err(|_| bad()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse::<Decimal>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A money amount, not negative, in ten-thousandths.
    fn money(&self, key: &str) -> Result<Option<i64>, CouponError> {
        let Some(value) = self.decimal(key)? else { return Ok(None) };
        if value < Decimal::ZERO {
            return Err(CouponError::invalid(format!("{key} must not be negative")));
        }
        Fixed::from_decimal(value)
            .map(|f| Some(f.0))
            .ok_or_else(|| CouponError::invalid(format!("{key} is out of range")))
    }

    fn integer(&self, key: &str) -> Result<Option<i64>, CouponError> {
        let Some(value) = self.decimal(key)? else { return Ok(None) };
        if !value.fract().is_zero() {
            return Err(CouponError::invalid(format!("{key} must be a whole number")));
        }
        use rust_decimal::prelude::ToPrimitive;
        value.to_i64().map(Some).ok_or_else(|| CouponError::invalid(format!("{key} is too large")))
    }

    /// A limit: `-1` (unlimited) or 0 to [`LIMIT_MAX`].
    fn limit(&self, key: &str) -> Result<Option<i64>, CouponError> {
        let Some(value) = self.integer(key)? else { return Ok(None) };
        if !(UNLIMITED..=LIMIT_MAX).contains(&value) {
            return Err(CouponError::invalid(format!(
                "{key} must be -1 (unlimited) to {LIMIT_MAX}"
            )));
        }
        Ok(Some(value))
    }

    fn enumeration<T: Copy>(
        &self,
        key: &str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, CouponError> {
        let Some(raw) = self.text(key, TOKEN_LENGTH_MAX)? else { return Ok(None) };
        options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&raw))
            .map(|(_, v)| Some(*v))
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                CouponError::invalid(format!("{key} must be one of {}", names.join(", ")))
            })
    }

    /// An upper-case token (`DISC_CODE`, `BILL`): letters, digits and `_`.
    fn token(&self, key: &str) -> Result<Option<String>, CouponError> {
        let Some(raw) = self.text(key, TOKEN_LENGTH_MAX)? else { return Ok(None) };
        if raw.is_empty() || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(CouponError::invalid(format!("{key} must be a name such as DISC_CODE")));
        }
        Ok(Some(raw.to_ascii_uppercase()))
    }

    fn instant(&self, key: &str, tz: Tz) -> Result<Option<(i64, String)>, CouponError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(value) => parse_instant(key, value, tz).map(Some),
        }
    }
}

/// A code prefix or suffix: up to [`AFFIX_LENGTH_MAX`] letters, digits, `-` or `_`.
fn affix(key: &str, value: Option<String>) -> Result<String, CouponError> {
    let value = value.unwrap_or_default();
    if value.chars().count() > AFFIX_LENGTH_MAX
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(CouponError::invalid(format!(
            "{key} must be at most {AFFIX_LENGTH_MAX} letters, digits, '-' or '_'"
        )));
    }
    Ok(value)
}

/// Parses a date-time of the wire: ISO-8601 with an offset is that instant (the offset is kept to
/// show it back); without an offset the time is UTC; a bare date is the end of that day in `tz`;
/// a number is epoch milliseconds (or seconds, below 10^11).
pub fn parse_instant(field: &str, value: &Value, tz: Tz) -> Result<(i64, String), CouponError> {
    let bad = || {
        CouponError::invalid(format!(
            "{field} must be an ISO-8601 date-time (YYYY-MM-DDTHH:MM:SS+hh:mm) or epoch milliseconds"
        ))
    };
    match value {
        Value::Number(n) => {
            let raw = n.as_i64().ok_or_else(bad)?;
            let millis = if raw.abs() < 100_000_000_000 { raw.saturating_mul(1000) } else { raw };
            DateTime::from_timestamp_millis(millis).ok_or_else(bad)?;
            Ok((millis, "+00:00".into()))
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                return parse_instant(field, &json!(n), tz);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s)
                .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z"))
                .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%z"))
            {
                return Ok((t.timestamp_millis(), t.format("%:z").to_string()));
            }
            for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                    return Ok((Utc.from_utc_datetime(&t).timestamp_millis(), "+00:00".into()));
                }
            }
            let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
            let end = end_of_day(day, tz).ok_or_else(bad)?;
            Ok((end, crate::transactions::time::zone_offset(end, tz)))
        }
        _ => Err(bad()),
    }
}

/// The last millisecond of `day` in `tz`.
fn end_of_day(day: NaiveDate, tz: Tz) -> Option<i64> {
    let next = day.succ_opt()?.and_hms_opt(0, 0, 0)?;
    Some(local_to_millis(next, tz) - 1)
}

impl SeriesConfig {
    /// Parses a whole series document (a create body, or an update merged over the stored
    /// series) at `now`, with bare dates read in `tz`.
    pub fn parse(
        map: &Map<String, Value>,
        tz: Tz,
        creating: bool,
    ) -> Result<SeriesConfig, CouponError> {
        let f = Fields { map };
        if creating {
            for key in CREATE_REQUIRED {
                if f.get(key).is_none() {
                    return Err(CouponError::invalid(format!("{key} is required")));
                }
            }
        }
        let description = f.required_text("description", DESCRIPTION_LENGTH_MAX)?;
        let discount_code = f.required_text("discountCode", DISCOUNT_CODE_LENGTH_MAX)?;
        let series_code = f.text("seriesCode", DISCOUNT_CODE_LENGTH_MAX)?.unwrap_or_default();
        let discount_type = f
            .enumeration(
                "discountType",
                &[("ABS", DiscountType::Abs), ("PERC", DiscountType::Perc)],
            )?
            .ok_or_else(|| CouponError::invalid("discountType is required"))?;
        let discount_value = f
            .money("discountValue")?
            .ok_or_else(|| CouponError::invalid("discountValue is required"))?;
        if discount_type == DiscountType::Perc && discount_value > 100 * 10_000 {
            return Err(CouponError::invalid("discountValue of a PERC series must be at most 100"));
        }
        let discount_upto = f.money("discountUpto")?.unwrap_or(0);
        let discount_on = f.token("discountOn")?.unwrap_or_else(|| "BILL".into());
        let client_handling_type = f
            .token("clientHandlingType")?
            .ok_or_else(|| CouponError::invalid("clientHandlingType is required"))?;
        let (valid_till, valid_till_offset) = f
            .instant("validTillDate", tz)?
            .ok_or_else(|| CouponError::invalid("validTillDate is required"))?;
        let expiry_strategy = f
            .enumeration(
                "expiryStrategyType",
                &[
                    ("SERIES_EXPIRY", ExpiryStrategy::SeriesExpiry),
                    ("DAYS", ExpiryStrategy::Days),
                    ("MONTHS_END", ExpiryStrategy::MonthsEnd),
                ],
            )?
            .ok_or_else(|| CouponError::invalid("expiryStrategyType is required"))?;
        let expiry_strategy_value = match expiry_strategy {
            // The value is always 1: the coupon lives as long as its series.
            ExpiryStrategy::SeriesExpiry => 1,
            ExpiryStrategy::Days | ExpiryStrategy::MonthsEnd => {
                let max = if expiry_strategy == ExpiryStrategy::Days {
                    EXPIRY_DAYS_MAX
                } else {
                    EXPIRY_MONTHS_MAX
                };
                let value = f.integer("expiryStrategyValue")?.ok_or_else(|| {
                    CouponError::invalid(format!(
                        "expiryStrategyValue is required with {}",
                        expiry_strategy.as_str()
                    ))
                })?;
                if !(1..=max).contains(&value) {
                    return Err(CouponError::invalid(format!(
                        "expiryStrategyValue must be 1 to {max} with {}",
                        expiry_strategy.as_str()
                    )));
                }
                value
            }
        };
        let valid_days_from_creation = f.limit("validDaysFromCreation")?.unwrap_or(UNLIMITED);
        let redemption_valid_from = f.instant("redemptionValidFrom", tz)?.map(|(t, _)| t);
        let any_user =
            f.flag("anyUser")?.ok_or_else(|| CouponError::invalid("anyUser is required"))?;
        let sms_template = match f.get("smsTemplate") {
            None => return Err(CouponError::invalid("smsTemplate is required")),
            Some(_) => f.text("smsTemplate", TEMPLATE_LENGTH_MAX)?.unwrap_or_default(),
        };
        let min_bill_amount = f.money("minBillAmount")?.filter(|a| *a > 0);
        let max_bill_amount = f.money("maxBillAmount")?.filter(|a| *a > 0);
        if let (Some(min), Some(max)) = (min_bill_amount, max_bill_amount)
            && min > max
        {
            return Err(CouponError::invalid("minBillAmount must not be above maxBillAmount"));
        }
        let random_code_length = match f.integer("randomCodeLength")? {
            None | Some(0) => RANDOM_CODE_LENGTH_DEFAULT,
            Some(n)
                if (i64::from(RANDOM_CODE_LENGTH_MIN)..=i64::from(RANDOM_CODE_LENGTH_MAX))
                    .contains(&n) =>
            {
                n as u32
            }
            Some(_) => {
                return Err(CouponError::invalid(format!(
                    "randomCodeLength must be {RANDOM_CODE_LENGTH_MIN} to {RANDOM_CODE_LENGTH_MAX}"
                )));
            }
        };
        let code_alphabet = f
            .enumeration(
                "codeAlphabet",
                &[
                    ("ALPHANUMERIC", CodeAlphabet::Alphanumeric),
                    ("NUMERIC", CodeAlphabet::Numeric),
                    ("ALPHABETIC", CodeAlphabet::Alphabetic),
                ],
            )?
            .unwrap_or_default();
        let custom_property_map = match f.get("customPropertyMap") {
            None => Map::new(),
            Some(Value::Object(m)) if m.len() <= CUSTOM_PROPERTIES_MAX => {
                for (k, v) in m {
                    let ok = k.chars().count() <= 100
                        && match v {
                            Value::String(s) => s.chars().count() <= INFO_LENGTH_MAX,
                            Value::Number(_) | Value::Bool(_) | Value::Null => true,
                            _ => false,
                        };
                    if !ok {
                        return Err(CouponError::invalid(format!(
                            "customPropertyMap.{k} must be a short text value"
                        )));
                    }
                }
                m.clone()
            }
            Some(_) => {
                return Err(CouponError::invalid(format!(
                    "customPropertyMap must be an object of at most {CUSTOM_PROPERTIES_MAX} properties"
                )));
            }
        };
        let config = SeriesConfig {
            description,
            discount_code,
            series_code,
            discount_type,
            discount_value,
            discount_upto,
            discount_on,
            client_handling_type,
            valid_till,
            valid_till_offset,
            valid_days_from_creation,
            expiry_strategy,
            expiry_strategy_value,
            redemption_valid_from,
            any_user,
            sms_template,
            sms_disabled: f.flag("isSMSDisabled")?.unwrap_or(false),
            max_create: f.limit("maxCreate")?.unwrap_or(UNLIMITED),
            max_redeem: f.limit("maxRedeem")?.unwrap_or(UNLIMITED),
            redemption_per_coupon_max_limit: f
                .limit("redemptionPerCouponMaxLimit")?
                .unwrap_or(UNLIMITED),
            max_redemptions_in_series_per_user: f
                .limit("maxRedemptionsInSeriesPerUser")?
                .unwrap_or(UNLIMITED),
            same_user_multiple_redeem: f.flag("sameUserMultipleRedeem")?.unwrap_or(false),
            multiple_use_allowed: f.flag("isMultipleUseAllowed")?.unwrap_or(false),
            multiple_vouchers_per_user_allowed: f
                .flag("isMultipleVouchersPerUserAllowed")?
                .unwrap_or(false),
            max_vouchers_per_user: f.limit("maxVouchersPerUser")?.unwrap_or(UNLIMITED),
            min_days_between_vouchers: f.limit("minDaysBetweenVouchers")?.unwrap_or(UNLIMITED),
            min_days_between_redemption: f.limit("minDaysBetweenRedemption")?.unwrap_or(UNLIMITED),
            do_not_resend_existing_voucher: f.flag("doNotResendExistingVoucher")?.unwrap_or(false),
            mutual_exclusive_series_ids: mutual_exclusions(f.get("mutualExclusiveSeriesIds"))?,
            transferrable: f.flag("isTransferrable")?.unwrap_or(false),
            referral_existing_users_allowed: f
                .flag("isReferralExistingUsersAllowed")?
                .unwrap_or(false),
            max_referrals_per_referee: f.limit("maxReferralsPerReferee")?.unwrap_or(UNLIMITED),
            validation_required: f.flag("isValidationRequired")?.unwrap_or(false),
            valid_with_discounted_item: f.flag("isValidWithDiscountedItem")?.unwrap_or(false),
            min_bill_amount,
            max_bill_amount,
            product_info: product_info(f.get("productInfo"))?,
            redemption_org_entities: org_entities(f.get("redemptionOrgEntityDetails"))?,
            target_user_details: match f.get("targetUserDetails") {
                None => json!({}),
                Some(v @ Value::Object(m)) if v.to_string().len() <= INFO_LENGTH_MAX * 4 => {
                    let _ = m;
                    v.clone()
                }
                Some(_) => {
                    return Err(CouponError::invalid("targetUserDetails must be a small object"));
                }
            },
            coupon_prefix: affix("couponPrefix", f.text("couponPrefix", AFFIX_LENGTH_MAX * 4)?)?,
            prefix_enabled: f.flag("isPrefixEnabled")?.unwrap_or(false),
            org_prefix_override: f.flag("orgPrefixOverride")?.unwrap_or(false),
            coupon_suffix: affix("couponSuffix", f.text("couponSuffix", AFFIX_LENGTH_MAX * 4)?)?,
            suffix_enabled: f.flag("isSuffixEnabled")?.unwrap_or(false),
            org_suffix_override: f.flag("orgSuffixOverride")?.unwrap_or(false),
            random_code_length,
            code_alphabet,
            info: f.text("info", INFO_LENGTH_MAX)?.unwrap_or_default(),
            custom_property_map,
        };
        Ok(config)
    }

    /// The wire form (`CouponSeriesV2` without the counters), dates in the offset they came in.
    pub fn to_wire(&self) -> Map<String, Value> {
        let offset_tz = self.valid_till_offset.parse::<chrono::FixedOffset>().ok();
        let show = |millis: i64| match offset_tz {
            Some(offset) => DateTime::from_timestamp_millis(millis)
                .map(|t| t.with_timezone(&offset).format("%Y-%m-%dT%H:%M:%S%:z").to_string())
                .unwrap_or_default(),
            None => crate::transactions::time::iso_utc(millis),
        };
        let money = |v: i64| Fixed(v).to_f64();
        let entities: Vec<Value> = self
            .redemption_org_entities
            .iter()
            .map(|e| json!({"redemptionOrgEntityType": e.kind, "orgEntityId": e.id}))
            .collect();
        let value = json!({
            "description": self.description,
            "discountCode": self.discount_code,
            "seriesCode": self.series_code,
            "validTillDate": show(self.valid_till),
            "discountType": self.discount_type.as_str(),
            "discountValue": money(self.discount_value),
            "discountUpto": money(self.discount_upto),
            "discountOn": self.discount_on,
            "clientHandlingType": self.client_handling_type,
            "expiryStrategyType": self.expiry_strategy.as_str(),
            "expiryStrategyValue": self.expiry_strategy_value,
            "validDaysFromCreation": self.valid_days_from_creation,
            "redemptionValidFrom": self.redemption_valid_from.map(show),
            "anyUser": self.any_user,
            "smsTemplate": self.sms_template,
            "isSMSDisabled": self.sms_disabled,
        });
        let rest = json!({
            "maxCreate": self.max_create,
            "maxRedeem": self.max_redeem,
            "redemptionPerCouponMaxLimit": self.redemption_per_coupon_max_limit,
            "maxRedemptionsInSeriesPerUser": self.max_redemptions_in_series_per_user,
            "sameUserMultipleRedeem": self.same_user_multiple_redeem,
            "isMultipleUseAllowed": self.multiple_use_allowed,
            "isMultipleVouchersPerUserAllowed": self.multiple_vouchers_per_user_allowed,
            "maxVouchersPerUser": self.max_vouchers_per_user,
            "minDaysBetweenVouchers": self.min_days_between_vouchers,
            "minDaysBetweenRedemption": self.min_days_between_redemption,
            "doNotResendExistingVoucher": self.do_not_resend_existing_voucher,
            "mutualExclusiveSeriesIds": mutual_exclusions_text(&self.mutual_exclusive_series_ids),
            "isTransferrable": self.transferrable,
            "isReferralExistingUsersAllowed": self.referral_existing_users_allowed,
            "maxReferralsPerReferee": self.max_referrals_per_referee,
            "isValidationRequired": self.validation_required,
            "isValidWithDiscountedItem": self.valid_with_discounted_item,
            "minBillAmount": self.min_bill_amount.map(money),
            "maxBillAmount": self.max_bill_amount.map(money),
            "productInfo": self.product_info,
            "redemptionOrgEntityDetails": entities,
            "targetUserDetails": self.target_user_details,
            "couponPrefix": self.coupon_prefix,
            "isPrefixEnabled": self.prefix_enabled,
            "orgPrefixOverride": self.org_prefix_override,
            "couponSuffix": self.coupon_suffix,
            "isSuffixEnabled": self.suffix_enabled,
            "orgSuffixOverride": self.org_suffix_override,
            "randomCodeLength": self.random_code_length,
            "codeAlphabet": self.code_alphabet.as_str(),
            "info": self.info,
            "customPropertyMap": self.custom_property_map,
        });
        let mut map = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Value::Object(rest) = rest {
            map.extend(rest);
        }
        map
    }

    /// How many times one code may be redeemed (`None`: unlimited).
    pub fn redemptions_per_code(&self) -> Option<i64> {
        if !self.multiple_use_allowed {
            return Some(1);
        }
        limit(self.redemption_per_coupon_max_limit)
    }

    /// The coupon's own expiry when issued at `issued_at` (`None`: the series end), by the
    /// strategy; the effective expiry is the earlier of this and the series end.
    pub fn coupon_expiry(&self, issued_at: i64, tz: Tz) -> Option<i64> {
        match self.expiry_strategy {
            ExpiryStrategy::SeriesExpiry => None,
            ExpiryStrategy::Days => {
                let day = local_date(issued_at, tz)?;
                let last = day.checked_add_days(chrono::Days::new(
                    u64::try_from(self.expiry_strategy_value).ok()?,
                ))?;
                end_of_day(last, tz)
            }
            ExpiryStrategy::MonthsEnd => {
                let day = local_date(issued_at, tz)?;
                let months = u32::try_from(self.expiry_strategy_value).ok()?;
                let first = NaiveDate::from_ymd_opt(day.year(), day.month(), 1)?
                    .checked_add_months(chrono::Months::new(months))?;
                let last = first.checked_add_months(chrono::Months::new(1))?.pred_opt()?;
                end_of_day(last, tz)
            }
        }
    }

    /// A new random code: prefix, the random part, suffix.
    pub fn generate_code(&self, rng: &mut impl Rng) -> String {
        let alphabet = self.code_alphabet.characters();
        let mut code = String::with_capacity(CODE_LENGTH_MAX);
        if self.prefix_enabled {
            code.push_str(&self.coupon_prefix);
        }
        for _ in 0..self.random_code_length {
            let i = rng.gen_range(0..alphabet.len());
            code.push(char::from(alphabet[i]));
        }
        if self.suffix_enabled {
            code.push_str(&self.coupon_suffix);
        }
        code
    }
}

/// `-1` (or any negative) as `None`, else the limit.
pub fn limit(value: i64) -> Option<i64> {
    (value >= 0).then_some(value)
}

fn local_date(millis: i64, tz: Tz) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(millis).map(|t| t.with_timezone(&tz).date_naive())
}

/// `mutualExclusiveSeriesIds`: a JSON array in a string (`"[-1]"` = none) or an array.
fn mutual_exclusions(value: Option<&Value>) -> Result<Vec<i64>, CouponError> {
    let bad = || {
        CouponError::invalid(format!(
            "mutualExclusiveSeriesIds must be a JSON array of at most {MUTUAL_EXCLUSIONS_MAX} series ids"
        ))
    };
    let list = match value {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|_| bad())?,
        Some(v @ Value::Array(_)) => v.clone(),
        Some(_) => return Err(bad()),
    };
    let items = list.as_array().ok_or_else(bad)?;
    if items.len() > MUTUAL_EXCLUSIONS_MAX {
        return Err(bad());
    }
    let mut ids = Vec::new();
    for item in items {
        let id = item
            .as_i64()
            .or_else(|| item.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(bad)?;
        if id > 0 && !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn mutual_exclusions_text(ids: &[i64]) -> String {
    if ids.is_empty() { "[-1]".into() } else { Value::from(ids.to_vec()).to_string() }
}

fn product_info(value: Option<&Value>) -> Result<Vec<Value>, CouponError> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= PRODUCT_INFO_MAX => {
            for item in items {
                let ok = item.get("productType").is_some_and(Value::is_string)
                    && item
                        .get("productIds")
                        .is_none_or(|ids| ids.as_array().is_some_and(|a| a.len() <= 10_000));
                if !ok {
                    return Err(CouponError::invalid(
                        "productInfo[] must be {productType, productIds[]}",
                    ));
                }
            }
            Ok(items.clone())
        }
        Some(_) => Err(CouponError::invalid(format!(
            "productInfo must be an array of at most {PRODUCT_INFO_MAX} entries"
        ))),
    }
}

fn org_entities(value: Option<&Value>) -> Result<Vec<OrgEntity>, CouponError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let items = value.as_array().filter(|a| a.len() <= ORG_ENTITIES_MAX).ok_or_else(|| {
        CouponError::invalid(format!(
            "redemptionOrgEntityDetails must be an array of at most {ORG_ENTITIES_MAX} entries"
        ))
    })?;
    let mut entities = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("redemptionOrgEntityType")
            .and_then(Value::as_str)
            .map(|k| k.trim().to_ascii_uppercase())
            .filter(|k| matches!(k.as_str(), "STORE" | "TILL" | "ZONE" | "CONCEPT"))
            .ok_or_else(|| {
                CouponError::invalid(format!(
                    "redemptionOrgEntityDetails[{i}].redemptionOrgEntityType must be STORE, TILL, ZONE or CONCEPT"
                ))
            })?;
        let id = item
            .get("orgEntityId")
            .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
            .ok_or_else(|| {
                CouponError::invalid(format!(
                    "redemptionOrgEntityDetails[{i}].orgEntityId must be an id"
                ))
            })?;
        entities.push(OrgEntity { kind, id });
    }
    Ok(entities)
}

/// The case codes are shown in (`coupon_code_case`); matching ignores case whatever it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CodeCase {
    #[default]
    Upper,
    Lower,
    AsItIs,
}

impl CodeCase {
    pub fn parse(raw: Option<&str>) -> Result<CodeCase, CouponError> {
        match raw.map(str::trim).filter(|r| !r.is_empty()) {
            None => Ok(CodeCase::Upper),
            Some(r) if r.eq_ignore_ascii_case("UPPER") => Ok(CodeCase::Upper),
            Some(r) if r.eq_ignore_ascii_case("LOWER") => Ok(CodeCase::Lower),
            Some(r) if r.eq_ignore_ascii_case("AS_IT_IS") => Ok(CodeCase::AsItIs),
            Some(_) => {
                Err(CouponError::invalid("coupon_code_case must be LOWER, UPPER or AS_IT_IS"))
            }
        }
    }

    pub fn show(self, code: &str) -> String {
        match self {
            CodeCase::Upper => code.to_uppercase(),
            CodeCase::Lower => code.to_lowercase(),
            CodeCase::AsItIs => code.to_string(),
        }
    }
}

/// The key a code is stored and matched by (upper case); `Err` when it cannot be a code.
pub fn code_key(raw: &str) -> Result<String, CouponError> {
    let code = raw.trim();
    if code.is_empty()
        || code.chars().count() > CODE_LENGTH_MAX
        || code.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(CouponError::CodeInvalid(code.chars().take(CODE_LENGTH_MAX).collect()));
    }
    Ok(code.to_uppercase())
}

/// A status filter of the customer coupon reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Redeemed,
    Unredeemed,
    Active,
    Expired,
    ActiveRedeemed,
    ActiveUnredeemed,
    ExpiredRedeemed,
    ExpiredUnredeemed,
    Redeemable,
}

impl StatusFilter {
    pub fn parse(raw: &str) -> Result<StatusFilter, CouponError> {
        let all = [
            ("REDEEMED", StatusFilter::Redeemed),
            ("UNREDEEMED", StatusFilter::Unredeemed),
            ("ACTIVE", StatusFilter::Active),
            ("EXPIRED", StatusFilter::Expired),
            ("ACTIVE_REDEEMED", StatusFilter::ActiveRedeemed),
            ("ACTIVE_UNREDEEMED", StatusFilter::ActiveUnredeemed),
            ("EXPIRED_REDEEMED", StatusFilter::ExpiredRedeemed),
            ("EXPIRED_UNREDEEMED", StatusFilter::ExpiredUnredeemed),
            ("REDEEMABLE", StatusFilter::Redeemable),
        ];
        all.iter().find(|(n, _)| n.eq_ignore_ascii_case(raw.trim())).map(|(_, f)| *f).ok_or_else(
            || {
                CouponError::invalid(
                    "status must be REDEEMED, UNREDEEMED, ACTIVE, EXPIRED, ACTIVE_REDEEMED, \
                     ACTIVE_UNREDEEMED, EXPIRED_REDEEMED, EXPIRED_UNREDEEMED or REDEEMABLE",
                )
            },
        )
    }

    /// Whether a coupon in this state passes the filter.
    pub fn admits(self, expired: bool, redeemed: bool, redeemable: bool) -> bool {
        match self {
            StatusFilter::Redeemed => redeemed,
            StatusFilter::Unredeemed => !redeemed,
            StatusFilter::Active => !expired,
            StatusFilter::Expired => expired,
            StatusFilter::ActiveRedeemed => !expired && redeemed,
            StatusFilter::ActiveUnredeemed => !expired && !redeemed,
            StatusFilter::ExpiredRedeemed => expired && redeemed,
            StatusFilter::ExpiredUnredeemed => expired && !redeemed,
            StatusFilter::Redeemable => redeemable,
        }
    }
}

/// Days as milliseconds (cooling periods).
pub fn days_ms(days: i64) -> i64 {
    days.saturating_mul(DAY_MS)
}

/// The last instant a coupon is valid: its own expiry or the series end, whichever is first.
pub fn effective_expiry(own: Option<i64>, series_end: i64) -> i64 {
    own.map_or(series_end, |own| own.min(series_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Map<String, Value> {
        match json!({"description": "Ten off", "discountCode": "TEN", "validTillDate": "2030-01-31T00:00:00+05:30",
            "discountType": "ABS", "discountValue": 10, "clientHandlingType": "DISC_CODE",
            "expiryStrategyType": "SERIES_EXPIRY", "anyUser": false, "smsTemplate": "Hi {{voucher}}"})
        {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_minimal_series_parses_with_unlimited_defaults() {
        let c = SeriesConfig::parse(&base(), chrono_tz::UTC, true).unwrap();
        assert_eq!(c.max_create, UNLIMITED);
        assert_eq!(c.redemptions_per_code(), Some(1));
        assert_eq!(c.valid_till_offset, "+05:30");
        assert_eq!(c.to_wire()["validTillDate"], "2030-01-31T00:00:00+05:30");
        assert_eq!(c.to_wire()["mutualExclusiveSeriesIds"], "[-1]");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut m = base();
        m.insert("discountType".into(), json!("HALF"));
        let e = SeriesConfig::parse(&m, chrono_tz::UTC, true).unwrap_err();
        assert!(e.to_string().contains("discountType"), "{e}");
        let mut m = base();
        m.insert("maxCreate".into(), json!(-2));
        assert!(SeriesConfig::parse(&m, chrono_tz::UTC, true).is_err());
        let mut m = base();
        m.remove("smsTemplate");
        assert!(SeriesConfig::parse(&m, chrono_tz::UTC, true).is_err());
        let mut m = base();
        m.insert("expiryStrategyType".into(), json!("DAYS"));
        assert!(SeriesConfig::parse(&m, chrono_tz::UTC, true).is_err());
    }

    #[test]
    fn expiry_strategies_end_at_local_day_ends() {
        let mut m = base();
        m.insert("expiryStrategyType".into(), json!("DAYS"));
        m.insert("expiryStrategyValue".into(), json!(2));
        let c = SeriesConfig::parse(&m, chrono_tz::UTC, true).unwrap();
        let issued = Utc.with_ymd_and_hms(2026, 1, 30, 10, 0, 0).unwrap().timestamp_millis();
        let end = Utc.with_ymd_and_hms(2026, 2, 1, 23, 59, 59).unwrap().timestamp_millis() + 999;
        assert_eq!(c.coupon_expiry(issued, chrono_tz::UTC), Some(end));
        m.insert("expiryStrategyType".into(), json!("MONTHS_END"));
        m.insert("expiryStrategyValue".into(), json!(1));
        let c = SeriesConfig::parse(&m, chrono_tz::UTC, true).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 59).unwrap().timestamp_millis() + 999;
        assert_eq!(c.coupon_expiry(issued, chrono_tz::UTC), Some(end));
    }

    #[test]
    fn generated_codes_follow_the_series() {
        let mut m = base();
        m.insert("couponPrefix".into(), json!("P-"));
        m.insert("isPrefixEnabled".into(), json!(true));
        m.insert("couponSuffix".into(), json!("-S"));
        m.insert("isSuffixEnabled".into(), json!(true));
        m.insert("randomCodeLength".into(), json!(6));
        m.insert("codeAlphabet".into(), json!("numeric"));
        let c = SeriesConfig::parse(&m, chrono_tz::UTC, true).unwrap();
        let code = c.generate_code(&mut rand::thread_rng());
        assert_eq!(code.len(), 10);
        assert!(code.starts_with("P-") && code.ends_with("-S"));
        assert!(code[2..8].chars().all(|ch| ch.is_ascii_digit()));
    }

    #[test]
    fn codes_match_ignoring_case_and_show_in_the_asked_case() {
        assert_eq!(code_key(" abC12 ").unwrap(), "ABC12");
        assert!(code_key("a b").is_err());
        assert_eq!(CodeCase::parse(Some("lower")).unwrap().show("AbC"), "abc");
        assert_eq!(CodeCase::parse(None).unwrap().show("AbC"), "ABC");
        assert_eq!(CodeCase::AsItIs.show("AbC"), "AbC");
    }
}
