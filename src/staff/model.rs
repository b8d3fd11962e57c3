//! Staff types: ids, kinds, places, statuses, validated account forms, the limits and
//! `StaffError`.

use crate::customers::model::{normalise_email, normalise_mobile};
use crate::error::{ApiError, Code};

/// A staff account id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StaffId(pub i64);

/// Usernames: 3 to 50 of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit.
pub const USERNAME_LENGTH_MIN: usize = 3;
pub const USERNAME_LENGTH_MAX: usize = 50;
/// Passwords: 8 to 128 characters.
pub const PASSWORD_LENGTH_MIN: usize = 8;
pub const PASSWORD_LENGTH_MAX: usize = 128;
/// Longest first name, last name and title.
pub const NAME_LENGTH_MAX: usize = 100;
/// How long a staff access token lives (one long shift).
pub const TOKEN_TTL_SECONDS: i64 = 12 * 3_600;
/// Tokens one account may hold at once; the oldest is revoked beyond it.
pub const TOKENS_PER_STAFF_MAX: i64 = 20;
/// One-time codes: digits, validity, wrong tries allowed, and sends per identifier per hour.
pub const OTP_DIGITS: u32 = 6;
pub const OTP_VALIDITY_MILLIS: i64 = 10 * 60 * 1_000;
pub const OTP_ATTEMPTS_MAX: i64 = 5;
pub const OTP_SENDS_PER_HOUR_MAX: i64 = 10;
/// Staff list paging: default and largest page.
pub const LIST_LIMIT_DEFAULT: i64 = 100;
pub const LIST_LIMIT_MAX: i64 = 500;

/// What a staff member does in the store: associates and cashiers (both are store associates;
/// tasks for `cashier` executors go to cashiers only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StaffType {
    Associate,
    Cashier,
}

impl StaffType {
    /// The stored name: `ASSOCIATE` or `CASHIER`.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffType::Associate => "ASSOCIATE",
            StaffType::Cashier => "CASHIER",
        }
    }

    /// The wire name: `associate` or `cashier`.
    pub fn key(self) -> &'static str {
        match self {
            StaffType::Associate => "associate",
            StaffType::Cashier => "cashier",
        }
    }

    pub fn parse(value: &str) -> Option<StaffType> {
        match value.trim().to_ascii_lowercase().as_str() {
            "associate" => Some(StaffType::Associate),
            "cashier" => Some(StaffType::Cashier),
            _ => None,
        }
    }
}

/// Where a staff account belongs: one store, or every store of a zone or of a concept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Store(i64),
    Zone(i64),
    Concept(i64),
}

impl Placement {
    /// The stored `scope_type`.
    pub fn kind(self) -> &'static str {
        match self {
            Placement::Store(_) => "STORE",
            Placement::Zone(_) => "ZONE",
            Placement::Concept(_) => "CONCEPT",
        }
    }

    /// `(store_id, zone_id, concept_id)` columns.
    pub fn columns(self) -> (Option<i64>, Option<i64>, Option<i64>) {
        match self {
            Placement::Store(id) => (Some(id), None, None),
            Placement::Zone(id) => (None, Some(id), None),
            Placement::Concept(id) => (None, None, Some(id)),
        }
    }
}

/// An account's life: `PENDING` until its identifiers are verified, then `ACTIVE`; `REMOVED`.
pub const STATUS_PENDING: &str = "PENDING";
pub const STATUS_ACTIVE: &str = "ACTIVE";
pub const STATUS_REMOVED: &str = "REMOVED";

/// An identifier a code can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifierKind {
    Mobile,
    Email,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Mobile => "MOBILE",
            IdentifierKind::Email => "EMAIL",
        }
    }

    pub fn parse(value: &str) -> Result<IdentifierKind, StaffError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "MOBILE" => Ok(IdentifierKind::Mobile),
            "EMAIL" => Ok(IdentifierKind::Email),
            _ => Err(StaffError::Invalid("identifierType must be MOBILE or EMAIL".into())),
        }
    }

    /// Checks and normalises a value of this kind (1001/1002 when malformed).
    pub fn normalise(self, raw: &str) -> Result<String, StaffError> {
        match self {
            IdentifierKind::Mobile => {
                normalise_mobile(raw, None).map_err(|_| StaffError::InvalidMobile(raw.into()))
            }
            IdentifierKind::Email => {
                normalise_email(raw).map_err(|_| StaffError::InvalidEmail(raw.into()))
            }
        }
    }
}

/// Why a one-time code was sent: verifying the account's identifiers, or a new identifier.
pub const OTP_PURPOSE_VERIFY: &str = "VERIFY";
pub const OTP_PURPOSE_CHANGE: &str = "CHANGE_IDENTIFIER";

/// A new account, validated.
#[derive(Clone, Debug)]
pub struct NewStaff {
    pub username: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    pub title: String,
    pub staff_type: StaffType,
    pub mobile: Option<String>,
    pub email: Option<String>,
    /// Codes of the store, zone or concept; exactly one is given.
    pub place_code: PlaceCode,
}

/// The code of the store, zone or concept an account belongs to, as the request gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlaceCode {
    Store(String),
    Zone(String),
    Concept(String),
}

/// Changes to an account's details; `None` keeps a value.
#[derive(Clone, Debug, Default)]
pub struct StaffChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub staff_type: Option<StaffType>,
}

/// Why a staff request was refused; each maps to a code.
#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("{0}")]
    Invalid(String),
    #[error("Invalid mobile number '{0}'")]
    InvalidMobile(String),
    #[error("Invalid email '{0}'")]
    InvalidEmail(String),
    #[error("Username '{0}' is already used by another staff account")]
    UsernameTaken(String),
    #[error("The {0} is already used by another staff account")]
    IdentifierTaken(&'static str),
    #[error("{0}")]
    UnknownPlace(String),
    #[error("Staff account not found")]
    NotFound,
    #[error("Invalid username or password")]
    BadCredentials,
    #[error("The account is not active: verify its mobile and e-mail with the OTP first")]
    NotActive,
    #[error("Invalid or expired OTP")]
    BadOtp,
    #[error("Too many OTPs sent to this identifier in the last hour; try again later")]
    TooManyOtps,
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Comms(#[from] crate::comms::CommsError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<StaffError> for ApiError {
    fn from(e: StaffError) -> Self {
        let code = match &e {
            StaffError::Db(_) => Code::Internal,
            StaffError::Comms(c) => c.code(),
            StaffError::InvalidMobile(_) => Code::InvalidMobile,
            StaffError::InvalidEmail(_) => Code::InvalidEmail,
            StaffError::UsernameTaken(_) => Code::EntityNameExists,
            StaffError::UnknownPlace(_) => Code::InvalidParentEntity,
            StaffError::NotFound => Code::NotFound,
            StaffError::BadCredentials | StaffError::NotActive => Code::AuthenticationFailed,
            StaffError::Forbidden(_) => Code::PermissionDenied,
            StaffError::TooManyOtps => Code::RateLimited,
            StaffError::Invalid(_) | StaffError::IdentifierTaken(_) | StaffError::BadOtp => {
                Code::InvalidInput
            }
        };
        match e {
            StaffError::Db(db) => ApiError::from(db),
            StaffError::Comms(c) => ApiError::from(c),
            other => ApiError::with_message(code, other.to_string()),
        }
    }
}

/// A username: lower-cased, 3 to 50 of `a-z0-9._-`, starting with a letter or digit.
pub fn parse_username(raw: &str) -> Result<String, StaffError> {
    let name = raw.trim().to_ascii_lowercase();
    let ok = (USERNAME_LENGTH_MIN..=USERNAME_LENGTH_MAX).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(name)
    } else {
        Err(StaffError::Invalid(format!(
            "username must be {USERNAME_LENGTH_MIN} to {USERNAME_LENGTH_MAX} letters, digits, \
             '.', '_' or '-' (no other special characters)"
        )))
    }
}

/// A password: 8 to 128 characters, no control characters.
pub fn check_password(field: &str, password: &str) -> Result<(), StaffError> {
    let length = password.chars().count();
    if !(PASSWORD_LENGTH_MIN..=PASSWORD_LENGTH_MAX).contains(&length)
        || password.chars().any(char::is_control)
    {
        return Err(StaffError::Invalid(format!(
            "{field} must be {PASSWORD_LENGTH_MIN} to {PASSWORD_LENGTH_MAX} characters"
        )));
    }
    Ok(())
}

/// A name or title: at most 100 characters, no control characters, trimmed.
pub fn parse_name(field: &str, raw: &str) -> Result<String, StaffError> {
    let value = raw.trim();
    if value.chars().count() > NAME_LENGTH_MAX || value.chars().any(char::is_control) {
        return Err(StaffError::Invalid(format!(
            "{field} must be at most {NAME_LENGTH_MAX} characters"
        )));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_case_without_special_characters() {
        assert_eq!(parse_username(" George.Johnson0808 ").unwrap(), "george.johnson0808");
        assert!(parse_username("ab").is_err());
        assert!(parse_username("has space").is_err());
        assert!(parse_username("bad@name").is_err());
        assert!(parse_username(".dot").is_err());
    }

    #[test]
    fn passwords_and_names_are_bounded() {
        assert!(check_password("password", "s3cret!!").is_ok());
        assert!(check_password("password", "short").is_err());
        assert!(parse_name("firstname", &"x".repeat(101)).is_err());
        assert_eq!(parse_name("firstname", " Ana ").unwrap(), "Ana");
    }

    #[test]
    fn identifiers_are_normalised_with_their_codes() {
        assert_eq!(IdentifierKind::Email.normalise(" A@B.com ").unwrap(), "a@b.com");
        let err: ApiError = IdentifierKind::Mobile.normalise("abc").unwrap_err().into();
        assert_eq!(err.code, Code::InvalidMobile);
        assert!(IdentifierKind::parse("fax").is_err());
    }
}
