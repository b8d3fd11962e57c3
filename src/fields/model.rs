//! Fields types: org config keys, custom field scopes and definitions, extended field entity and
//! data types, the built-in extended field catalogue and the v2 sources, checked at the boundary.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Longest config value, in characters.
pub const CONFIG_VALUE_MAX: usize = 1000;
/// Longest custom field name, in characters (spec 85-org, "Create a Custom Field").
pub const CUSTOM_FIELD_NAME_MAX: usize = 20;
/// Longest extended field name, in characters.
pub const EXTENDED_FIELD_NAME_MAX: usize = 50;
/// Longest label of a custom or extended field, in characters.
pub const LABEL_MAX: usize = 100;
/// Longest custom field regex, in characters.
pub const REGEX_MAX: usize = 500;
/// Longest custom or extended field value, in characters.
pub const FIELD_VALUE_MAX: usize = 1000;
/// Most allowed values of one `STANDARD_ENUM` extended field, and longest such value.
pub const POSSIBLE_VALUES_MAX: usize = 100;
pub const POSSIBLE_VALUE_LENGTH_MAX: usize = 100;

// ---------------------------------------------------------------- org configs

/// A config key name: `^[A-Z][A-Z0-9_]{1,99}$`, such as `CONF_MAX_CARDS_PER_ORG`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigKey(String);

impl ConfigKey {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
        let rest_ok = chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && (2..=100).contains(&value.len()) {
            Ok(ConfigKey(value.to_string()))
        } else {
            Err(ApiError::invalid(format!(
                "{field} '{value}' is invalid: use 2 to 100 characters A-Z, 0-9 and '_', starting with a letter"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A config's scope: an upper-case word such as `ORG` (the default), 1 to 50 characters.
pub fn parse_config_scope(value: Option<&str>) -> Result<String, ApiError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok("ORG".to_string());
    };
    let upper = value.to_ascii_uppercase();
    let mut chars = upper.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    let rest_ok = chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && upper.len() <= 50 {
        Ok(upper)
    } else {
        Err(ApiError::invalid(format!(
            "scope '{value}' is invalid: use a word of up to 50 characters A-Z, 0-9 and '_' such as ORG"
        )))
    }
}

/// A config to store, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConfig {
    pub key: ConfigKey,
    pub value: String,
    pub scope: String,
}

/// A config as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct OrgConfig {
    pub id: i64,
    pub key_name: String,
    pub value: String,
    pub scope: String,
    pub updated_at: i64,
}

// ---------------------------------------------------------------- custom fields

macro_rules! name_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($variant),*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The canonical spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }

            /// Reads a name in any case.
            pub fn from_name(value: &str) -> Option<$name> {
                let value = value.trim();
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(value))
            }

            /// Every canonical spelling, comma-separated (for error messages).
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

name_enum!(
    /// Where a custom field applies (the `scope` enum of spec 85-org).
    CustomFieldScope {
        LoyaltyRegistration => "LOYALTY_REGISTRATION",
        LoyaltyTransaction => "LOYALTY_TRANSACTION",
        CustomerFeedback => "CUSTOMER_FEEDBACK",
        PointsRedemption => "POINTS_REDEMPTION",
        VoucherRedemption => "VOUCHER_REDEMPTION",
        ZoneCustomFields => "ZONE_CUSTOM_FIELDS",
        StoreCustomFields => "STORE_CUSTOM_FIELDS",
        CustomFieldsDataLog => "CUSTOM_FIELDS_DATA_LOG",
        CheckInFeedback => "CHECK_IN_FEEDBACK",
        CustomerPreferences => "CUSTOMER_PREFERENCES",
        AdvanceFeedback => "ADVANCE_FEEDBACK",
        LoyaltyLineItems => "LOYALTY_LINE_ITEMS",
        NiCustomFields => "NI_CUSTOM_FIELDS",
        CustomerCard => "CUSTOMER_CARD",
        TillCustomFields => "TILL_CUSTOM_FIELDS",
        OrgCustomField => "ORG_CUSTOM_FIELD",
    }
);

impl CustomFieldScope {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        Self::from_name(value).ok_or_else(|| {
            ApiError::invalid(format!("{field} '{value}' is invalid: use one of {}", Self::names()))
        })
    }
}

name_enum!(
    /// The type of a custom field's value.
    CustomDataType {
        Boolean => "Boolean",
        Integer => "Integer",
        Double => "Double",
        String => "String",
    }
);

name_enum!(
    /// How a custom field is shown in forms (stored and echoed; Perks renders no forms).
    CustomFieldType {
        Text => "text",
        Textarea => "textarea",
        Select => "select",
        Checkbox => "checkbox",
        Radio => "radio",
        File => "file",
        TemplateArea => "template_area",
        Datepicker => "datepicker",
        Separator => "separator",
        Button => "button",
        EmailBody => "email_body",
        Feedback => "feedback",
        Label => "label",
    }
);

/// The org entities whose custom field values `GET /v2/orgEntity/customFields` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrgEntityKind {
    Till,
    Store,
    Zone,
}

impl OrgEntityKind {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "TILL" => Ok(OrgEntityKind::Till),
            "STORE" => Ok(OrgEntityKind::Store),
            "ZONE" => Ok(OrgEntityKind::Zone),
            _ => Err(ApiError::invalid(format!("{field} must be TILL, STORE or ZONE"))),
        }
    }

    /// The custom field scope of this kind of entity.
    pub fn scope(self) -> CustomFieldScope {
        match self {
            OrgEntityKind::Till => CustomFieldScope::TillCustomFields,
            OrgEntityKind::Store => CustomFieldScope::StoreCustomFields,
            OrgEntityKind::Zone => CustomFieldScope::ZoneCustomFields,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrgEntityKind::Till => "TILL",
            OrgEntityKind::Store => "STORE",
            OrgEntityKind::Zone => "ZONE",
        }
    }
}

/// A custom field name: 1 to 20 characters, a letter first, then letters, digits, `_` or `-`.
pub fn parse_custom_field_name(field: &str, value: &str) -> Result<String, ApiError> {
    parse_field_name(field, value, CUSTOM_FIELD_NAME_MAX, true)
}

/// An extended field name: 1 to 50 characters, a letter first, then letters, digits or `_`.
pub fn parse_extended_field_name(field: &str, value: &str) -> Result<String, ApiError> {
    parse_field_name(field, value, EXTENDED_FIELD_NAME_MAX, false)
}

fn parse_field_name(
    field: &str,
    value: &str,
    max: usize,
    hyphen: bool,
) -> Result<String, ApiError> {
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (hyphen && c == '-'));
    if first_ok && rest_ok && value.len() <= max {
        Ok(value.to_string())
    } else {
        let others =
            if hyphen { "letters, digits, '_' and '-'" } else { "letters, digits and '_'" };
        Err(ApiError::invalid(format!(
            "{field} '{value}' is invalid: use 1 to {max} characters, a letter first, then {others}"
        )))
    }
}

/// A label: at most [`LABEL_MAX`] characters; empty or missing takes `default`.
pub fn parse_label(field: &str, value: Option<&str>, default: &str) -> Result<String, ApiError> {
    let value = value.map(str::trim).filter(|v| !v.is_empty()).unwrap_or(default);
    if value.chars().count() > LABEL_MAX {
        Err(ApiError::invalid(format!("{field} must be at most {LABEL_MAX} characters")))
    } else {
        Ok(value.to_string())
    }
}

/// A custom field definition to store, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCustomField {
    pub scope: CustomFieldScope,
    pub name: String,
    pub label: String,
    pub field_type: CustomFieldType,
    pub data_type: CustomDataType,
    pub default_value: Option<String>,
    pub regex: Option<String>,
    pub is_compulsory: bool,
    pub is_updatable: bool,
    pub is_disabled: bool,
    pub options: Option<Value>,
    pub position: i64,
    /// The spec's other attributes (`phase`, `rule`, `helptext`, flags …), echoed as given.
    pub attributes: Map<String, Value>,
}

/// A custom field definition as stored.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct CustomField {
    pub id: i64,
    pub scope: String,
    pub name: String,
    pub label: String,
    pub field_type: String,
    pub data_type: String,
    pub default_value: Option<String>,
    pub regex: Option<String>,
    pub is_compulsory: bool,
    pub is_updatable: bool,
    pub is_disabled: bool,
    pub options: Option<String>,
    pub position: i64,
    pub attributes: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CustomField {
    /// The stored data type (`String` if the row holds anything else).
    pub fn data_type(&self) -> CustomDataType {
        CustomDataType::from_name(&self.data_type).unwrap_or(CustomDataType::String)
    }

    pub fn options_value(&self) -> Value {
        self.options.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null)
    }

    pub fn attributes_map(&self) -> Map<String, Value> {
        serde_json::from_str(&self.attributes).unwrap_or_default()
    }
}

/// A custom field value stored for one entity.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CustomFieldValue {
    pub id: i64,
    pub scope: String,
    pub entity_id: i64,
    pub name: String,
    pub value: String,
    pub updated_at: i64,
}

/// One custom field value of an org entity, as `GET /v2/orgEntity/customFields` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityFieldValue {
    pub name: String,
    pub value: String,
    pub data_type: CustomDataType,
    pub scope: CustomFieldScope,
}

// ---------------------------------------------------------------- extended fields

name_enum!(
    /// The base entity an extended field belongs to (spec 97-governance, `baseEntityType`).
    ExtendedEntityType {
        Customer => "customer",
        Transaction => "transaction",
        Lineitem => "lineitem",
        Profile => "profile",
        Lead => "lead",
        Company => "company",
        Card => "card",
        Usergroup2 => "usergroup2",
    }
);

impl ExtendedEntityType {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        Self::from_wire(value).ok_or_else(|| {
            ApiError::invalid(format!("{field} '{value}' is invalid: use one of {}", Self::names()))
        })
    }

    /// Reads a base entity type in any case, or the group key `GET /v2/extendedFields` uses.
    pub fn from_wire(value: &str) -> Option<Self> {
        Self::from_name(value).or_else(|| {
            Self::ALL.iter().copied().find(|t| t.group_key().eq_ignore_ascii_case(value.trim()))
        })
    }

    /// The key of this entity type's list in `GET /v2/extendedFields` (`CUSTOMER`,
    /// `REGULAR_TRANSACTION`, `REGULAR_LINEITEM`, …).
    pub fn group_key(self) -> &'static str {
        match self {
            ExtendedEntityType::Customer => "CUSTOMER",
            ExtendedEntityType::Transaction => "REGULAR_TRANSACTION",
            ExtendedEntityType::Lineitem => "REGULAR_LINEITEM",
            ExtendedEntityType::Profile => "PROFILE",
            ExtendedEntityType::Lead => "LEAD",
            ExtendedEntityType::Company => "COMPANY",
            ExtendedEntityType::Card => "CARD",
            ExtendedEntityType::Usergroup2 => "USERGROUP2",
        }
    }
}

name_enum!(
    /// The type of an extended field's value.
    ExtendedDataType {
        Integer => "INTEGER",
        String => "STRING",
        Double => "DOUBLE",
        Datetime => "DATETIME",
        StandardString => "STANDARD_STRING",
        StandardEnum => "STANDARD_ENUM",
        Boolean => "BOOLEAN",
    }
);

impl ExtendedDataType {
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        Self::from_name(value).ok_or_else(|| {
            ApiError::invalid(format!("{field} '{value}' is invalid: use one of {}", Self::names()))
        })
    }
}

/// An extended field to enable or create for an org, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewExtendedField {
    pub entity_type: ExtendedEntityType,
    pub name: String,
    pub label: String,
    pub data_type: ExtendedDataType,
    /// The allowed values of a `STANDARD_ENUM`; empty for every other type.
    pub possible_values: Vec<String>,
}

impl NewExtendedField {
    /// Checks a field to enable: a name of the standard catalogue takes the catalogue's spelling,
    /// data type, label and allowed values unless the request gives its own label or values;
    /// any other name needs a `dataType`. Allowed values belong to `STANDARD_ENUM` only.
    pub fn parse(
        entity_type: ExtendedEntityType,
        name: &str,
        label: Option<&str>,
        data_type: Option<&str>,
        possible_values: Option<Vec<String>>,
    ) -> Result<Self, ApiError> {
        let standard = standard_field(entity_type, name.trim());
        let name = match standard {
            Some(s) => s.name.to_string(),
            None => parse_extended_field_name("name", name.trim())?,
        };
        let requested = data_type
            .filter(|d| !d.trim().is_empty())
            .map(|d| ExtendedDataType::parse("dataType", d));
        let data_type = match (standard, requested.transpose()?) {
            (Some(s), Some(d)) if d != s.data_type => {
                return Err(ApiError::invalid(format!(
                    "{name} is a standard {} field of type {}, not {}",
                    entity_type.as_str(),
                    s.data_type.as_str(),
                    d.as_str()
                )));
            }
            (Some(s), _) => s.data_type,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(ApiError::invalid(format!(
                    "dataType is required: {name} is not a standard {} field",
                    entity_type.as_str()
                )));
            }
        };
        let possible_values = match possible_values {
            Some(_) if data_type != ExtendedDataType::StandardEnum => {
                return Err(ApiError::invalid(
                    "possibleValues is only allowed with dataType STANDARD_ENUM",
                ));
            }
            Some(values) => parse_possible_values(values)?,
            None => standard
                .map(|s| s.possible_values.iter().map(|v| v.to_string()).collect())
                .unwrap_or_default(),
        };
        if data_type == ExtendedDataType::StandardEnum && possible_values.is_empty() {
            return Err(ApiError::invalid(
                "possibleValues is required with dataType STANDARD_ENUM",
            ));
        }
        let label = parse_label("label", label, standard.map(|s| s.label).unwrap_or(&name))?;
        Ok(NewExtendedField { entity_type, name, label, data_type, possible_values })
    }
}

/// Allowed values of an enum: 1 to 100 distinct (in any case) non-empty values of up to 100
/// characters, trimmed.
fn parse_possible_values(values: Vec<String>) -> Result<Vec<String>, ApiError> {
    if values.is_empty() || values.len() > POSSIBLE_VALUES_MAX {
        return Err(ApiError::invalid(format!(
            "possibleValues must list 1 to {POSSIBLE_VALUES_MAX} values"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let value = value.trim().to_string();
        if value.is_empty() || value.chars().count() > POSSIBLE_VALUE_LENGTH_MAX {
            return Err(ApiError::invalid(format!(
                "possibleValues must be non-empty and at most {POSSIBLE_VALUE_LENGTH_MAX} characters"
            )));
        }
        if out.iter().any(|v| same_text(v, &value)) {
            return Err(ApiError::invalid(format!("possibleValues lists '{value}' twice")));
        }
        out.push(value);
    }
    Ok(out)
}

/// True when two texts are equal ignoring case (Unicode-aware).
pub fn same_text(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// An extended field enabled for an org, as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ExtendedField {
    pub id: i64,
    pub entity_type: String,
    pub name: String,
    pub label: String,
    pub data_type: String,
    pub possible_values: String,
    pub created_by: i64,
    pub modified_by: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ExtendedField {
    /// The stored data type (`STRING` if the row holds anything else).
    pub fn data_type(&self) -> ExtendedDataType {
        ExtendedDataType::from_name(&self.data_type).unwrap_or(ExtendedDataType::String)
    }

    pub fn entity_type(&self) -> Option<ExtendedEntityType> {
        ExtendedEntityType::from_name(&self.entity_type)
    }

    pub fn possible_values(&self) -> Vec<String> {
        serde_json::from_str(&self.possible_values).unwrap_or_default()
    }
}

/// A platform-defined extended field that any org can enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandardField {
    pub entity_type: ExtendedEntityType,
    pub name: &'static str,
    pub label: &'static str,
    pub data_type: ExtendedDataType,
    pub possible_values: &'static [&'static str],
}

const fn standard(
    entity_type: ExtendedEntityType,
    name: &'static str,
    label: &'static str,
    data_type: ExtendedDataType,
) -> StandardField {
    StandardField { entity_type, name, label, data_type, possible_values: &[] }
}

const GENDERS: &[&str] = &["Male", "Female", "Other"];
const MARITAL_STATUSES: &[&str] = &["Single", "Married", "Divorced", "Widowed", "Separated"];

/// The built-in catalogue of standard extended fields (spec 00-platform names `gender`, `city`,
/// `zip`, `ship_first_name`, `MetalRate`).
pub const CATALOGUE: &[StandardField] = {
    use ExtendedDataType as D;
    use ExtendedEntityType as E;
    &[
        StandardField {
            entity_type: E::Customer,
            name: "gender",
            label: "Gender",
            data_type: D::StandardEnum,
            possible_values: GENDERS,
        },
        standard(E::Customer, "dob", "Date of birth", D::Datetime),
        standard(E::Customer, "anniversary", "Anniversary", D::Datetime),
        standard(E::Customer, "city", "City", D::String),
        standard(E::Customer, "state", "State", D::String),
        standard(E::Customer, "country", "Country", D::String),
        standard(E::Customer, "zip", "Zip code", D::String),
        standard(E::Customer, "area", "Area", D::String),
        standard(E::Customer, "preferred_language", "Preferred language", D::String),
        StandardField {
            entity_type: E::Customer,
            name: "marital_status",
            label: "Marital status",
            data_type: D::StandardEnum,
            possible_values: MARITAL_STATUSES,
        },
        standard(E::Customer, "occupation", "Occupation", D::String),
        standard(E::Customer, "nationality", "Nationality", D::String),
        standard(E::Transaction, "MetalRate", "Metal rate", D::Double),
        standard(E::Transaction, "ship_first_name", "Shipping first name", D::String),
        standard(E::Transaction, "ship_last_name", "Shipping last name", D::String),
        standard(E::Transaction, "ship_city", "Shipping city", D::String),
        standard(E::Transaction, "ship_zip", "Shipping zip code", D::String),
        standard(E::Transaction, "delivery_date", "Delivery date", D::Datetime),
        standard(E::Lineitem, "MetalRate", "Metal rate", D::Double),
        standard(E::Lineitem, "GrossWeight", "Gross weight", D::Double),
        standard(E::Lineitem, "NetWeight", "Net weight", D::Double),
        standard(E::Lineitem, "MakingCharge", "Making charge", D::Double),
        standard(E::Lineitem, "Purity", "Purity", D::String),
    ]
};

/// The catalogue entry of `name` (any case) for an entity type.
pub fn standard_field(
    entity_type: ExtendedEntityType,
    name: &str,
) -> Option<&'static StandardField> {
    CATALOGUE.iter().find(|f| f.entity_type == entity_type && f.name.eq_ignore_ascii_case(name))
}

/// The v2 customer sources (spec 00-platform, "source / accountId"), as `GET
/// /v2/organization/sources` lists them.
pub const SOURCES: &[&str] = &[
    "INSTORE",
    "FACEBOOK",
    "WEB_ENGAGE",
    "WECHAT",
    "MARTJACK",
    "TMALL",
    "TAOBAO",
    "JD",
    "ECOMMERCE",
    "WEBSITE",
    "LINE",
    "MOBILE_APP",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_follow_the_pattern() {
        assert!(ConfigKey::parse("keyName", "CONF_MAX_CARDS_PER_ORG").is_ok());
        assert!(ConfigKey::parse("keyName", "A1").is_ok());
        assert!(ConfigKey::parse("keyName", "A").is_err());
        assert!(ConfigKey::parse("keyName", "conf_x").is_err());
        assert!(ConfigKey::parse("keyName", "1CONF").is_err());
        assert!(ConfigKey::parse("keyName", "CONF-X").is_err());
        assert!(ConfigKey::parse("keyName", &format!("A{}", "B".repeat(99))).is_ok());
        assert!(ConfigKey::parse("keyName", &format!("A{}", "B".repeat(100))).is_err());
    }

    #[test]
    fn config_scopes_default_to_org_and_are_upper_cased() {
        assert_eq!(parse_config_scope(None).unwrap(), "ORG");
        assert_eq!(parse_config_scope(Some(" ")).unwrap(), "ORG");
        assert_eq!(parse_config_scope(Some("store")).unwrap(), "STORE");
        assert!(parse_config_scope(Some("a b")).is_err());
    }

    #[test]
    fn enums_read_any_case_and_keep_the_canonical_spelling() {
        assert_eq!(
            CustomFieldScope::from_name("loyalty_registration"),
            Some(CustomFieldScope::LoyaltyRegistration)
        );
        assert_eq!(CustomFieldScope::ALL.len(), 16);
        assert_eq!(CustomDataType::from_name("INTEGER").map(|t| t.as_str()), Some("Integer"));
        assert_eq!(
            ExtendedEntityType::from_wire("REGULAR_LINEITEM"),
            Some(ExtendedEntityType::Lineitem)
        );
        assert_eq!(ExtendedEntityType::from_wire("Customer"), Some(ExtendedEntityType::Customer));
        assert_eq!(
            ExtendedDataType::from_name("standard_enum"),
            Some(ExtendedDataType::StandardEnum)
        );
        assert!(ExtendedDataType::parse("dataType", "DATE").is_err());
    }

    #[test]
    fn field_names_are_checked() {
        assert!(parse_custom_field_name("name", "favourite_colour").is_ok());
        assert!(parse_custom_field_name("name", "lane-no").is_ok());
        assert!(parse_custom_field_name("name", "a_very_long_name_over").is_err());
        assert!(parse_custom_field_name("name", "").is_err());
        assert!(parse_custom_field_name("name", "9lives").is_err());
        assert!(parse_custom_field_name("name", "two words").is_err());
        assert!(parse_extended_field_name("name", "MetalRate").is_ok());
        assert!(parse_extended_field_name("name", "metal-rate").is_err());
    }

    #[test]
    fn the_catalogue_has_the_standard_customer_fields() {
        for name in [
            "gender",
            "dob",
            "anniversary",
            "city",
            "state",
            "country",
            "zip",
            "area",
            "preferred_language",
            "marital_status",
            "occupation",
        ] {
            assert!(standard_field(ExtendedEntityType::Customer, name).is_some(), "{name}");
        }
        let gender = standard_field(ExtendedEntityType::Customer, "GENDER").unwrap();
        assert_eq!(gender.possible_values, ["Male", "Female", "Other"]);
        assert_eq!(
            standard_field(ExtendedEntityType::Transaction, "metalrate").map(|f| f.data_type),
            Some(ExtendedDataType::Double)
        );
        // Every enum has values, and no entry is listed twice.
        for f in CATALOGUE {
            assert_eq!(
                f.data_type == ExtendedDataType::StandardEnum,
                !f.possible_values.is_empty()
            );
            let same = CATALOGUE
                .iter()
                .filter(|g| g.entity_type == f.entity_type && g.name.eq_ignore_ascii_case(f.name))
                .count();
            assert_eq!(same, 1, "{}", f.name);
        }
    }
}
