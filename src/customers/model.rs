//! Customer types: sources and accounts, identifiers (normalised at the boundary), loyalty type,
//! communication channels, and the validated inputs of registration and update.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, Code};

/// A customer id (Capillary's `userId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub i64);

/// Why customer input or a customer operation was refused; each maps to a documented code.
#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    #[error("Invalid mobile number '{0}'")]
    InvalidMobile(String),
    #[error("Invalid email '{0}'")]
    InvalidEmail(String),
    #[error("Invalid external id '{0}'")]
    InvalidExternalId(String),
    #[error("Invalid value for identifier {0}")]
    InvalidIdentifier(String),
    #[error("Mobile number is required")]
    MobileRequired,
    #[error("No valid primary identifier (mobile, email or external id) given")]
    NoPrimaryIdentifier,
    #[error("Customer is already registered")]
    AlreadyRegistered,
    #[error("{0} is already used by another customer")]
    IdentifierTaken(String),
    #[error("Email is already used by another customer")]
    EmailTaken,
    #[error("Invalid source or accountId: {0}")]
    InvalidSource(String),
    #[error("Invalid identifier name '{0}'")]
    InvalidLookupIdentifier(String),
    #[error("Customer not found for the given identifiers")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("Invalid programId: {0} is not a program of the org")]
    UnknownProgram(i64),
    #[error("{0}")]
    UnknownTier(String),
    #[error("{0}")]
    TierValidity(String),
    #[error(transparent)]
    Field(#[from] crate::fields::service::FieldError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<CustomerError> for ApiError {
    fn from(e: CustomerError) -> Self {
        let e = match e {
            CustomerError::Db(db) => return ApiError::from(db),
            CustomerError::Field(field) => return ApiError::from(field),
            other => other,
        };
        let code = match &e {
            CustomerError::InvalidMobile(_) => Code::InvalidMobile,
            CustomerError::InvalidEmail(_) => Code::InvalidEmail,
            CustomerError::InvalidExternalId(_) => Code::InvalidExternalId,
            CustomerError::InvalidIdentifier(_) | CustomerError::Invalid(_) => Code::InvalidInput,
            CustomerError::MobileRequired => Code::MobileRequired,
            CustomerError::NoPrimaryIdentifier => Code::NoPrimaryIdentifier,
            CustomerError::AlreadyRegistered | CustomerError::IdentifierTaken(_) => {
                Code::CustomerAlreadyRegistered
            }
            CustomerError::EmailTaken => Code::EmailTaken,
            CustomerError::InvalidSource(_) => Code::InvalidSource,
            CustomerError::InvalidLookupIdentifier(_) => Code::InvalidLookupIdentifier,
            CustomerError::NotFound => Code::CustomerNotFound,
            CustomerError::UnknownProgram(_) => Code::InvalidProgramId,
            CustomerError::UnknownTier(_) => Code::InvalidTierName,
            CustomerError::TierValidity(_) => Code::InvalidTierValidity,
            CustomerError::Db(_) | CustomerError::Field(_) => Code::Internal,
        };
        ApiError::with_message(code, e.to_string())
    }
}

/// The channel a customer profile lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Instore,
    Facebook,
    WebEngage,
    Wechat,
    Martjack,
    Tmall,
    Taobao,
    Jd,
    Ecommerce,
    Website,
    Line,
    MobileApp,
}

impl Source {
    pub const ALL: [Source; 12] = [
        Source::Instore,
        Source::Facebook,
        Source::WebEngage,
        Source::Wechat,
        Source::Martjack,
        Source::Tmall,
        Source::Taobao,
        Source::Jd,
        Source::Ecommerce,
        Source::Website,
        Source::Line,
        Source::MobileApp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Instore => "INSTORE",
            Source::Facebook => "FACEBOOK",
            Source::WebEngage => "WEB_ENGAGE",
            Source::Wechat => "WECHAT",
            Source::Martjack => "MARTJACK",
            Source::Tmall => "TMALL",
            Source::Taobao => "TAOBAO",
            Source::Jd => "JD",
            Source::Ecommerce => "ECOMMERCE",
            Source::Website => "WEBSITE",
            Source::Line => "LINE",
            Source::MobileApp => "MOBILE_APP",
        }
    }

    pub fn parse(value: &str) -> Result<Source, CustomerError> {
        let upper = value.trim().to_ascii_uppercase();
        Source::ALL
            .into_iter()
            .find(|s| s.as_str() == upper)
            .ok_or_else(|| CustomerError::InvalidSource(format!("unknown source '{value}'")))
    }

    /// Multi-account sources need an `accountId`; `INSTORE` never takes one.
    pub fn needs_account(self) -> bool {
        matches!(self, Source::Wechat | Source::Martjack)
    }
}

/// A source and the account within it (`""` when the source has no accounts).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceAccount {
    pub source: Source,
    pub account_id: String,
}

impl SourceAccount {
    pub fn instore() -> Self {
        SourceAccount { source: Source::Instore, account_id: String::new() }
    }

    /// Parses `source` (default `INSTORE`) and `accountId`, enforcing which sources take accounts.
    pub fn parse(source: Option<&str>, account: Option<&str>) -> Result<Self, CustomerError> {
        let source = match source.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Source::parse(s)?,
            None => Source::Instore,
        };
        let account_id = account.map(str::trim).unwrap_or_default().to_string();
        if source == Source::Instore && !account_id.is_empty() {
            return Err(CustomerError::InvalidSource("INSTORE does not take an accountId".into()));
        }
        if source.needs_account() && account_id.is_empty() {
            return Err(CustomerError::InvalidSource(format!(
                "{} needs an accountId",
                source.as_str()
            )));
        }
        if account_id.chars().count() > 100 {
            return Err(CustomerError::InvalidSource("accountId is too long".into()));
        }
        Ok(SourceAccount { source, account_id })
    }
}

/// The ways to find a customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentifierType {
    Mobile,
    Email,
    ExternalId,
    CardNumber,
    CardExternalId,
    Wechat,
    MartjackId,
    FbId,
    UnionId,
    Cuid,
    Line,
    TmallUname,
    AliUname,
    JdUname,
    VipUname,
}

impl IdentifierType {
    pub const ALL: [IdentifierType; 15] = [
        IdentifierType::Mobile,
        IdentifierType::Email,
        IdentifierType::ExternalId,
        IdentifierType::CardNumber,
        IdentifierType::CardExternalId,
        IdentifierType::Wechat,
        IdentifierType::MartjackId,
        IdentifierType::FbId,
        IdentifierType::UnionId,
        IdentifierType::Cuid,
        IdentifierType::Line,
        IdentifierType::TmallUname,
        IdentifierType::AliUname,
        IdentifierType::JdUname,
        IdentifierType::VipUname,
    ];

    /// The v2 wire name (also the stored name).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierType::Mobile => "mobile",
            IdentifierType::Email => "email",
            IdentifierType::ExternalId => "externalId",
            IdentifierType::CardNumber => "cardnumber",
            IdentifierType::CardExternalId => "cardExternalId",
            IdentifierType::Wechat => "wechat",
            IdentifierType::MartjackId => "martjackId",
            IdentifierType::FbId => "fbId",
            IdentifierType::UnionId => "unionId",
            IdentifierType::Cuid => "cuid",
            IdentifierType::Line => "line",
            IdentifierType::TmallUname => "tmall_uname",
            IdentifierType::AliUname => "ali_uname",
            IdentifierType::JdUname => "jd_uname",
            IdentifierType::VipUname => "vip_uname",
        }
    }

    /// The v1.1 query/body name.
    pub fn v1_name(self) -> &'static str {
        match self {
            IdentifierType::ExternalId => "external_id",
            IdentifierType::CardNumber => "card_number",
            IdentifierType::CardExternalId => "card_external_id",
            other => other.as_str(),
        }
    }

    /// Accepts the v2 names and the v1.1 spellings (`external_id`, `card_number`, …).
    pub fn parse(name: &str) -> Option<IdentifierType> {
        let name = name.trim();
        IdentifierType::ALL.into_iter().find(|t| {
            t.as_str().eq_ignore_ascii_case(name) || t.v1_name().eq_ignore_ascii_case(name)
        })
    }

    /// Mobile, email and external id: the identifiers that can be an org's primary one.
    pub fn is_primary_kind(self) -> bool {
        matches!(self, IdentifierType::Mobile | IdentifierType::Email | IdentifierType::ExternalId)
    }
}

/// An identifier with its value normalised (mobile digits, lower-case email).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identifier {
    pub kind: IdentifierType,
    pub value: String,
}

/// Longest identifier value accepted.
pub const IDENTIFIER_LENGTH_MAX: usize = 150;

impl Identifier {
    /// Parses and normalises; `country_code` (digits, e.g. `91`) completes national mobiles.
    pub fn parse(
        kind: IdentifierType,
        raw: &str,
        country_code: Option<&str>,
    ) -> Result<Identifier, CustomerError> {
        let value = match kind {
            IdentifierType::Mobile => normalise_mobile(raw, country_code)?,
            IdentifierType::Email => normalise_email(raw)?,
            IdentifierType::ExternalId => {
                let v = raw.trim();
                if v.is_empty()
                    || v.chars().count() > IDENTIFIER_LENGTH_MAX
                    || v.chars().any(char::is_control)
                {
                    return Err(CustomerError::InvalidExternalId(raw.to_string()));
                }
                v.to_string()
            }
            other => {
                let v = raw.trim();
                if v.is_empty()
                    || v.chars().count() > IDENTIFIER_LENGTH_MAX
                    || v.chars().any(char::is_control)
                {
                    return Err(CustomerError::InvalidIdentifier(other.as_str().to_string()));
                }
                v.to_string()
            }
        };
        Ok(Identifier { kind, value })
    }
}

/// Mobile numbers are stored as digits with their country code: `+91 98450-12345` → `919845012345`.
/// A number of 10 digits or fewer gets `country_code` in front when one is known.
pub fn normalise_mobile(raw: &str, country_code: Option<&str>) -> Result<String, CustomerError> {
    let trimmed = raw.trim();
    let allowed = |c: char| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.');
    if trimmed.is_empty() || !trimmed.chars().all(allowed) || trimmed[1..].contains('+') {
        return Err(CustomerError::InvalidMobile(raw.to_string()));
    }
    let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if digits.starts_with("00") {
        digits.drain(..2);
    } else if !trimmed.starts_with('+') {
        // A national number (trunk prefix 0 dropped) of 10 digits or fewer gets the country code.
        let national = digits.trim_start_matches('0');
        let code: String =
            country_code.unwrap_or_default().chars().filter(char::is_ascii_digit).collect();
        if !code.is_empty() && national.len() <= 10 {
            digits = format!("{code}{national}");
        }
    }
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(CustomerError::InvalidMobile(raw.to_string()));
    }
    Ok(digits)
}

/// Emails are trimmed and lower-cased; the shape `local@domain.tld` is required.
pub fn normalise_email(raw: &str) -> Result<String, CustomerError> {
    let email = raw.trim().to_lowercase();
    let invalid = || CustomerError::InvalidEmail(raw.to_string());
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(email) } else { Err(invalid()) }
}

/// `loyalty` or `non_loyalty`; a customer may be upgraded, never downgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoyaltyType {
    Loyalty,
    NonLoyalty,
}

impl LoyaltyType {
    pub fn as_str(self) -> &'static str {
        match self {
            LoyaltyType::Loyalty => "loyalty",
            LoyaltyType::NonLoyalty => "non_loyalty",
        }
    }

    pub fn parse(value: &str) -> Result<LoyaltyType, CustomerError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "loyalty" => Ok(LoyaltyType::Loyalty),
            "non_loyalty" | "nonloyalty" | "non-loyalty" => Ok(LoyaltyType::NonLoyalty),
            _ => Err(CustomerError::Invalid(format!(
                "loyaltyType '{value}' must be loyalty or non_loyalty"
            ))),
        }
    }

    /// The type after asking for `requested`: upgrades apply, downgrades are refused.
    pub fn change_to(self, requested: LoyaltyType) -> Result<LoyaltyType, CustomerError> {
        match (self, requested) {
            (LoyaltyType::Loyalty, LoyaltyType::NonLoyalty) => Err(CustomerError::Invalid(
                "A loyalty customer cannot be changed to non_loyalty".into(),
            )),
            (_, requested) => Ok(requested),
        }
    }
}

/// A communication channel of a profile (`commChannels[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommChannel {
    #[serde(rename = "type")]
    pub channel_type: String,
    pub value: String,
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_viewed_date: Option<String>,
}

/// Channel types a profile may carry.
pub const COMM_CHANNEL_TYPES: [&str; 7] =
    ["mobile", "email", "wechat", "ios", "android", "line", "mobilePush"];

/// Most identifiers, channels and fields one profile may carry.
pub const PROFILE_ITEMS_MAX: usize = 50;

/// One validated profile of a registration or update.
#[derive(Clone, Debug)]
pub struct ProfileInput {
    pub account: SourceAccount,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub identifiers: Vec<Identifier>,
    pub fields: Map<String, Value>,
    pub comm_channels: Option<Vec<CommChannel>>,
}

/// A validated registration (v2 add, v1.1 add).
#[derive(Clone, Debug)]
pub struct CustomerInput {
    pub profiles: Vec<ProfileInput>,
    pub loyalty_type: Option<LoyaltyType>,
    pub extended_fields: Map<String, Value>,
    pub registered_at: Option<i64>,
    /// `loyaltyProgramEnrollments`: programs to enrol in with a starting tier and points.
    pub enrollments: Vec<super::enrolment::Enrollment>,
    /// `referralCode`: the referrer's code (v2 add only).
    pub referral_code: Option<String>,
    /// `enrollInAllPrograms=true` (v2 add): a new loyalty customer joins every program of the org.
    pub enroll_in_all_programs: bool,
}

/// Validated changes to an existing customer: attributes only, never identifiers.
#[derive(Clone, Debug, Default)]
pub struct CustomerUpdate {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub loyalty_type: Option<LoyaltyType>,
    pub fields: Option<Map<String, Value>>,
    pub extended_fields: Option<Map<String, Value>>,
    pub comm_channels: Option<Vec<CommChannel>>,
    /// `loyaltyProgramEnrollments` of the update forms: programs the customer joins.
    pub enrollments: Vec<super::enrolment::Enrollment>,
}

/// Checks a first or last name: at most 100 characters, no control characters.
pub fn parse_name(field: &str, value: Option<String>) -> Result<Option<String>, CustomerError> {
    match value {
        None => Ok(None),
        Some(v) => {
            let v = v.trim().to_string();
            if v.chars().count() > 100 || v.chars().any(char::is_control) {
                Err(CustomerError::Invalid(format!("{field} must be at most 100 characters")))
            } else {
                Ok(Some(v))
            }
        }
    }
}

/// Checks communication channels: known types, non-empty values, a bounded count.
pub fn check_comm_channels(channels: &[CommChannel]) -> Result<(), CustomerError> {
    if channels.len() > PROFILE_ITEMS_MAX {
        return Err(CustomerError::Invalid(format!(
            "commChannels takes at most {PROFILE_ITEMS_MAX} entries"
        )));
    }
    for channel in channels {
        if !COMM_CHANNEL_TYPES.contains(&channel.channel_type.as_str()) {
            return Err(CustomerError::Invalid(format!(
                "commChannels type '{}' must be one of {}",
                channel.channel_type,
                COMM_CHANNEL_TYPES.join(", ")
            )));
        }
        if channel.value.trim().is_empty() || channel.value.len() > 500 {
            return Err(CustomerError::Invalid(
                "commChannels value must be 1 to 500 characters".into(),
            ));
        }
    }
    Ok(())
}

/// Custom or extended field values must be scalars (strings, numbers, booleans) or null.
pub fn check_field_values(field: &str, values: &Map<String, Value>) -> Result<(), CustomerError> {
    if values.len() > PROFILE_ITEMS_MAX {
        return Err(CustomerError::Invalid(format!(
            "{field} takes at most {PROFILE_ITEMS_MAX} fields"
        )));
    }
    for (name, value) in values {
        if name.is_empty() || name.len() > 100 {
            return Err(CustomerError::Invalid(format!("{field} has an invalid field name")));
        }
        if value.is_array() || value.is_object() {
            return Err(CustomerError::Invalid(format!("{field}.{name} must be a single value")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobiles_are_normalised_to_digits_with_country_code() {
        assert_eq!(normalise_mobile("+91 98450-12345", None).unwrap(), "919845012345");
        assert_eq!(normalise_mobile("9845012345", Some("91")).unwrap(), "919845012345");
        assert_eq!(normalise_mobile("09845012345", Some("+91")).unwrap(), "919845012345");
        assert_eq!(normalise_mobile("0049 170 1234567", None).unwrap(), "491701234567");
        assert_eq!(normalise_mobile("919845012345", Some("91")).unwrap(), "919845012345");
        for bad in ["", "abc", "12345", "+91+98450", "98450 12345 678901 2", "0123456789"] {
            assert!(normalise_mobile(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(normalise_email(" Ana@Example.COM ").unwrap(), "ana@example.com");
        for bad in ["ana", "ana@", "@x.com", "ana@x", "ana@@x.com", "a b@x.com", "ana@x..com"] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_and_accounts_follow_the_rules() {
        assert_eq!(SourceAccount::parse(None, None).unwrap(), SourceAccount::instore());
        assert!(SourceAccount::parse(Some("instore"), Some("acc")).is_err());
        assert!(SourceAccount::parse(Some("WECHAT"), None).is_err());
        assert!(SourceAccount::parse(Some("WECHAT"), Some("wx1")).is_ok());
        assert!(SourceAccount::parse(Some("MOON"), None).is_err());
    }

    #[test]
    fn identifier_names_accept_v1_and_v2_spellings() {
        assert_eq!(IdentifierType::parse("external_id"), Some(IdentifierType::ExternalId));
        assert_eq!(IdentifierType::parse("externalId"), Some(IdentifierType::ExternalId));
        assert_eq!(IdentifierType::parse("card_number"), Some(IdentifierType::CardNumber));
        assert_eq!(IdentifierType::parse("shoe_size"), None);
    }

    #[test]
    fn loyalty_type_upgrades_only() {
        use LoyaltyType::*;
        assert_eq!(NonLoyalty.change_to(Loyalty).unwrap(), Loyalty);
        assert!(Loyalty.change_to(NonLoyalty).is_err());
        assert_eq!(Loyalty.change_to(Loyalty).unwrap(), Loyalty);
    }
}
