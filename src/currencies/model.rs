//! Alternate currencies: the org's named reward currencies ("stars", "miles") beside the
//! programs' points, their rows and the forms that create and change them, validated at the
//! boundary.

use serde::Deserialize;

use crate::error::{ApiError, Code};
use crate::programs::model::ExpiryDoc;

/// Longest currency name and description, in characters.
pub const NAME_LENGTH_MAX: usize = 50;
pub const DESCRIPTION_LENGTH_MAX: usize = 255;
/// Currencies one org may define.
pub const CURRENCIES_PER_ORG_MAX: i64 = 100;
/// Names that mean the programs' own points on the wire (`currencyType: REGULAR`), so no
/// alternate currency may take them.
const RESERVED_NAMES: [&str; 5] = ["points", "point", "regular", "main", "promised"];

/// A currency as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CurrencyRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// The expiry rule of its awards (JSON of [`ExpiryDoc`]); None: the awarding program's.
    pub expiry: Option<String>,
    pub active: bool,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CurrencyRow {
    /// The stored expiry rule, if any (a rule that no longer parses counts as none).
    pub fn expiry_doc(&self) -> Option<ExpiryDoc> {
        self.expiry.as_deref().and_then(|e| serde_json::from_str(e).ok())
    }
}

/// A currency about to be created.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCurrency {
    pub name: String,
    pub description: String,
    pub expiry: Option<ExpiryDoc>,
    pub active: bool,
}

/// What an update changes (None: unchanged; `expiry: Some(None)` clears the rule).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurrencyUpdate {
    pub description: Option<String>,
    pub expiry: Option<Option<ExpiryDoc>>,
    pub active: Option<bool>,
}

/// The key names are compared by: trimmed and lower-cased.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A currency name: 1 to 50 characters, a letter first, then letters, digits, `_`, `-` or
/// spaces; not a name that means points.
pub fn parse_name(raw: &str) -> Result<String, CurrencyError> {
    let name = raw.trim();
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(char::is_alphabetic)
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        && name.chars().count() <= NAME_LENGTH_MAX;
    if !well_formed {
        return Err(CurrencyError::Invalid(format!(
            "name must be 1 to {NAME_LENGTH_MAX} characters: a letter, then letters, digits, \
             '_', '-' or spaces"
        )));
    }
    if RESERVED_NAMES.contains(&name_key(name).as_str()) {
        return Err(CurrencyError::Invalid(format!(
            "name '{name}' is reserved for the programs' points"
        )));
    }
    Ok(name.to_string())
}

/// A description: at most 255 characters, no control characters.
pub fn parse_description(raw: &str) -> Result<String, CurrencyError> {
    let text = raw.trim();
    if text.chars().count() > DESCRIPTION_LENGTH_MAX || text.chars().any(char::is_control) {
        return Err(CurrencyError::Invalid(format!(
            "description must be at most {DESCRIPTION_LENGTH_MAX} characters, without control \
             characters"
        )));
    }
    Ok(text.to_string())
}

/// An expiry rule, checked like a program's (`expiry.days` …).
pub fn check_expiry(expiry: &ExpiryDoc) -> Result<(), CurrencyError> {
    crate::programs::engine::validate_expiry_doc("expiry", expiry)
        .map(|_| ())
        .map_err(|e| CurrencyError::Invalid(e.to_string()))
}

/// Body of `POST /x/perks/v1/currencies`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CurrencyBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The program document's `expiry` shape; absent: the awarding program's expiry.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub expiry: Option<ExpiryDoc>,
    #[serde(default)]
    pub active: Option<bool>,
}

impl CurrencyBody {
    pub fn parse(self) -> Result<NewCurrency, CurrencyError> {
        let name = parse_name(&self.name)?;
        let description = parse_description(self.description.as_deref().unwrap_or_default())?;
        if let Some(expiry) = &self.expiry {
            check_expiry(expiry)?;
        }
        Ok(NewCurrency {
            name,
            description,
            expiry: self.expiry,
            active: self.active.unwrap_or(true),
        })
    }
}

/// Why a currency could not be created, changed, found or used.
#[derive(Debug, thiserror::Error)]
pub enum CurrencyError {
    #[error("{0}")]
    Invalid(String),
    #[error("the org already has a currency named '{0}'")]
    NameTaken(String),
    #[error("Currency not found")]
    NotFound,
    /// A name that is not one of the org's currencies (840).
    #[error("'{0}' is not an alternate currency of the org")]
    Unknown(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<CurrencyError> for ApiError {
    fn from(e: CurrencyError) -> Self {
        let code = match &e {
            CurrencyError::Invalid(_) => Code::InvalidInput,
            CurrencyError::NameTaken(_) => Code::EntityNameExists,
            CurrencyError::NotFound => Code::NotFound,
            CurrencyError::Unknown(_) => Code::UnknownAlternateCurrency,
            CurrencyError::Db(_) => {
                return match e {
                    CurrencyError::Db(db) => ApiError::from(db),
                    _ => ApiError::new(Code::Internal),
                };
            }
        };
        ApiError::with_message(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_reserved_ones_refused() {
        assert_eq!(parse_name(" Stars ").unwrap(), "Stars");
        assert_eq!(parse_name("air-miles 2").unwrap(), "air-miles 2");
        for bad in ["", " ", "2stars", "st@rs", "points", "REGULAR", &"s".repeat(51)] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        assert_eq!(name_key(" Stars "), "stars");
        assert!(parse_description(&"d".repeat(256)).is_err());
        assert!(parse_description("line\nbreak").is_err());
    }
}
