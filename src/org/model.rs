//! Org hierarchy types: ids, orgs, concepts, zones, stores and tills, validated at the boundary.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
    };
}

id_type!(/// An org (tenant) id.
    OrgId);
id_type!(/// A store id.
    StoreId);
id_type!(/// A till id.
    TillId);
id_type!(/// A zone id.
    ZoneId);
id_type!(/// A concept id.
    ConceptId);

/// An org: the tenant every record belongs to.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Org {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub timezone: String,
    pub currency: String,
    pub language: String,
    pub fiscal_year_start: i64,
    pub address: Option<String>,
    pub phone: Option<String>,
}

/// The kinds of org entity the v1.1 entities API lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    Store,
    StrServer,
    Till,
    Zone,
    Concept,
}

/// The columns every org entity shares, as the entities API shows them.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EntityRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub description: String,
    pub is_active: bool,
    pub parent_id: Option<i64>,
    pub updated_at: i64,
}

/// A store as stored.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Store {
    pub id: i64,
    pub zone_id: i64,
    pub concept_id: i64,
    pub code: String,
    pub name: String,
    pub description: String,
    pub admin_type: String,
    pub is_active: bool,
    pub timezone: Option<String>,
    pub currency: Option<String>,
    pub language: Option<String>,
    pub time_zone_id: Option<i64>,
    pub currency_id: Option<i64>,
    pub language_id: Option<i64>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub landline: Option<String>,
    pub latitude: Option<String>,
    pub longitude: Option<String>,
    pub address: Option<String>,
    pub city_id: Option<i64>,
    pub area_id: Option<i64>,
    pub external_ids: String,
    pub custom_fields: String,
}

/// A till as stored (never with its password hash).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Till {
    pub id: i64,
    pub store_id: i64,
    pub code: String,
    pub name: String,
    pub description: String,
    pub admin_type: String,
    pub billable: bool,
    pub is_active: bool,
    pub is_default: bool,
    pub custom_fields: String,
}

/// `GENERAL` or `ADMIN`, as stores and tills carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminType {
    General,
    Admin,
}

impl AdminType {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminType::General => "GENERAL",
            AdminType::Admin => "ADMIN",
        }
    }

    /// Accepts `GENERAL`/`ADMIN` in any case (the docs show both `General` and `GENERAL`).
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        match value.to_ascii_uppercase().as_str() {
            "GENERAL" => Ok(AdminType::General),
            "ADMIN" => Ok(AdminType::Admin),
            _ => Err(ApiError::invalid(format!("{field} must be GENERAL or ADMIN"))),
        }
    }
}

/// An IANA time zone name, checked against the tz database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeZoneName(pub String);

impl TimeZoneName {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        chrono_tz::Tz::from_str(value)
            .map(|tz| TimeZoneName(tz.name().to_string()))
            .map_err(|_| ApiError::invalid(format!("{field} must be an IANA time zone name")))
    }
}

/// An ISO-4217 currency code (three upper-case letters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrencyCode(pub String);

impl CurrencyCode {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        let upper = value.to_ascii_uppercase();
        if upper.len() == 3 && upper.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(CurrencyCode(upper))
        } else {
            Err(ApiError::invalid(format!("{field} must be an ISO-4217 code such as USD")))
        }
    }
}

/// A BCP-47 language tag such as `en` or `en-IN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanguageTag(pub String);

impl LanguageTag {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        let mut parts = value.split('-');
        let primary = parts.next().unwrap_or_default();
        let primary_ok =
            (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
        let rest_ok = parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if primary_ok && rest_ok {
            Ok(LanguageTag(value.to_string()))
        } else {
            Err(ApiError::invalid(format!("{field} must be a BCP-47 language tag such as en")))
        }
    }
}

/// A store or till code: starts with a lower-case letter, then `[a-z0-9._-]`.
pub fn parse_code(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let len = value.chars().count();
    if first_ok && rest_ok && (min..=max).contains(&len) {
        Ok(value.to_string())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be {min} to {max} characters, start with a lower-case letter and use only a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

/// A store name: letters, digits, `_` and spaces, at most 100 characters.
pub fn parse_store_name(value: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    let ok = !trimmed.is_empty()
        && trimmed.chars().count() <= 100
        && trimmed.chars().all(|c| c.is_alphanumeric() || c == '_' || c == ' ');
    if ok {
        Ok(trimmed.to_string())
    } else {
        Err(ApiError::invalid(
            "name must be 1 to 100 characters of letters, digits, '_' and spaces",
        ))
    }
}

/// Checks an optional free-text field against its length limit.
pub fn limit_length(field: &str, value: Option<String>, max: usize) -> Result<String, ApiError> {
    let value = value.unwrap_or_default();
    if value.chars().count() > max {
        Err(ApiError::invalid(format!("{field} must be at most {max} characters")))
    } else {
        Ok(value)
    }
}

/// A validated store, ready to insert.
#[derive(Clone, Debug)]
pub struct NewStore {
    pub code: String,
    pub name: String,
    pub description: String,
    pub admin_type: AdminType,
    pub is_active: bool,
    pub zone_id: ZoneId,
    pub concept_id: ConceptId,
    pub timezone: Option<TimeZoneName>,
    pub currency: Option<CurrencyCode>,
    pub language: Option<LanguageTag>,
    pub time_zone_id: Option<i64>,
    pub currency_id: Option<i64>,
    pub language_id: Option<i64>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub landline: Option<String>,
    pub latitude: Option<String>,
    pub longitude: Option<String>,
    pub address: Option<String>,
    pub city_id: Option<i64>,
    pub area_id: Option<i64>,
    pub external_ids: Vec<String>,
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
}

/// A validated till, ready to insert (the password already hashed).
#[derive(Clone, Debug)]
pub struct NewTill {
    pub store_id: StoreId,
    pub code: String,
    pub name: String,
    pub description: String,
    pub admin_type: AdminType,
    pub billable: bool,
    pub is_default: bool,
    pub access_group_id: i64,
    pub password_hash: String,
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
}

/// Changes to a till; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct TillUpdate {
    pub description: Option<String>,
    pub billable: Option<bool>,
    pub is_active: Option<bool>,
    pub password_hash: Option<String>,
    pub custom_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A new org with its settings checked.
#[derive(Clone, Debug)]
pub struct NewOrg {
    pub name: String,
    pub timezone: TimeZoneName,
    pub currency: CurrencyCode,
    pub language: LanguageTag,
}

impl NewOrg {
    pub fn parse(
        name: &str,
        timezone: &str,
        currency: &str,
        language: &str,
    ) -> Result<NewOrg, ApiError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::invalid("name must be 1 to 100 characters"));
        }
        Ok(NewOrg {
            name: name.to_string(),
            timezone: TimeZoneName::parse("timezone", timezone)?,
            currency: CurrencyCode::parse("currency", currency)?,
            language: LanguageTag::parse("language", language)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_spec_pattern() {
        assert!(parse_code("code", "store.1_a-b", 1, 50).is_ok());
        assert!(parse_code("code", "Store", 1, 50).is_err());
        assert!(parse_code("code", "1store", 1, 50).is_err());
        assert!(parse_code("code", "st ore", 1, 50).is_err());
        assert!(parse_code("name", "ab", 3, 50).is_err());
        assert!(parse_code("code", &"a".repeat(51), 1, 50).is_err());
    }

    #[test]
    fn org_settings_are_checked() {
        assert!(NewOrg::parse("Demo", "Asia/Kolkata", "inr", "en-IN").is_ok());
        assert!(NewOrg::parse("Demo", "Mars/Olympus", "INR", "en").is_err());
        assert!(NewOrg::parse("Demo", "UTC", "RUPEE", "en").is_err());
        assert!(NewOrg::parse("", "UTC", "USD", "en").is_err());
        assert!(NewOrg::parse("Demo", "UTC", "USD", "english!").is_err());
    }

    #[test]
    fn store_names_allow_letters_digits_underscores_and_spaces() {
        assert!(parse_store_name("Main Store_1").is_ok());
        assert!(parse_store_name("Main-Store").is_err());
        assert!(parse_store_name("   ").is_err());
    }
}
