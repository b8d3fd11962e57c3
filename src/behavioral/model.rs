//! Behavioral event types: event and field names, field types and their attributes, validated
//! definitions (`EventDefinition`), the limits, and `BehavioralError`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::customers::model::{CustomerError, IdentifierType, Source, SourceAccount};
use crate::error::{ApiError, Code};

/// Event definitions an org may hold.
pub const EVENTS_PER_ORG_MAX: i64 = 1000;
/// Fields one event may define.
pub const FIELDS_PER_EVENT_MAX: usize = 100;
/// Longest event or field name, in characters.
pub const NAME_LENGTH_MAX: usize = 100;
/// Longest event description, in characters.
pub const DESCRIPTION_LENGTH_MAX: usize = 500;
/// Allowed values of an ENUM field: how many, and the longest.
pub const POSSIBLE_VALUES_MAX: usize = 100;
pub const POSSIBLE_VALUE_LENGTH_MAX: usize = 100;
/// Longest `regex` attribute, and the compiled size it may reach.
pub const REGEX_LENGTH_MAX: usize = 500;
pub const REGEX_COMPILED_BYTES_MAX: usize = 256 * 1024;
/// Longest text value of a posted attribute (also `accountId` and identifier values).
pub const TEXT_VALUE_LENGTH_MAX: usize = 1000;
/// Largest posted event, serialised, in bytes; and the most keys it may carry.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
pub const PAYLOAD_KEYS_MAX: usize = FIELDS_PER_EVENT_MAX + 3;
/// Longest request id (`X-CAP-REQUEST-ID`), external event id and webhook id.
pub const REQUEST_ID_LENGTH_MAX: usize = 128;
pub const EXTERNAL_EVENT_ID_LENGTH_MAX: usize = 150;
pub const WEBHOOK_ID_LENGTH_MAX: usize = 100;
/// Paging of event lists: default and largest page.
pub const LIMIT_DEFAULT: i64 = 10;
pub const LIMIT_MAX: i64 = 100;
/// Most events returned for one request id.
pub const EVENTS_PER_REQUEST_MAX: i64 = 100;
/// Most attribute filters one search may carry.
pub const SEARCH_ATTRIBUTE_FILTERS_MAX: usize = 10;

/// The standard attributes every posted event may carry besides its fields.
pub const EVENT_NAME_KEY: &str = "event_name";
pub const EXTERNAL_EVENT_ID_KEY: &str = "external_event_id";
pub const EVENT_DATE_TIME_KEY: &str = "eventDateTime";
/// Names that read-backs put beside the attributes (`additonalAttributes`), so no field may use them.
const RESERVED_FIELD_NAMES: [&str; 5] =
    [EVENT_NAME_KEY, EXTERNAL_EVENT_ID_KEY, EVENT_DATE_TIME_KEY, "accountId", "isDuplicate"];

/// Why a behavioral-events request was refused; each maps to a documented code.
#[derive(Debug, thiserror::Error)]
pub enum BehavioralError {
    #[error("{0}")]
    Invalid(String),
    #[error("Event '{0}' already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidActions(String),
    #[error("{0}")]
    InvalidEventName(String),
    #[error("{0}")]
    InvalidFieldType(String),
    #[error("{0}")]
    Required(String),
    #[error("Event '{0}' is not defined in the org")]
    UnknownEvent(String),
    #[error("Event '{0}' is disabled and accepts no posts")]
    Disabled(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    InvalidTill(String),
    #[error("An org may define at most {0} events")]
    CountExceeded(i64),
    #[error("stored behavioral data is unreadable: {0}")]
    Stored(String),
    #[error(transparent)]
    Customer(#[from] CustomerError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<BehavioralError> for ApiError {
    fn from(e: BehavioralError) -> Self {
        let code = match &e {
            BehavioralError::Stored(_) => return ApiError::internal(&e),
            BehavioralError::Customer(_) | BehavioralError::Db(_) => {
                return match e {
                    BehavioralError::Customer(c) => c.into(),
                    BehavioralError::Db(db) => ApiError::from(db),
                    _ => ApiError::new(Code::Internal),
                };
            }
            BehavioralError::Invalid(_) | BehavioralError::CountExceeded(_) => Code::InvalidInput,
            BehavioralError::AlreadyExists(_) => Code::EventAlreadyExists,
            BehavioralError::InvalidActions(_) => Code::InvalidEventActions,
            BehavioralError::InvalidEventName(_) => Code::InvalidEventName,
            BehavioralError::InvalidFieldType(_) => Code::InvalidEventFieldType,
            BehavioralError::Required(_) => Code::EventAttributeRequired,
            BehavioralError::UnknownEvent(_) | BehavioralError::NotFound(_) => Code::NotFound,
            BehavioralError::Disabled(_) => Code::EventDisabled,
            BehavioralError::TooLarge(_) => Code::BodyTooLarge,
            BehavioralError::InvalidTill(_) => Code::InvalidStoreOrTill,
        };
        ApiError::with_message(code, e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> BehavioralError {
    BehavioralError::Invalid(message.into())
}

/// Checks an event name: 1–100 characters, letters, digits, `_` and `-`, not starting with `-`.
pub fn parse_event_name(raw: Option<&str>) -> Result<String, BehavioralError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Err(BehavioralError::InvalidEventName("eventName is required".into()));
    };
    let shape_ok = name.chars().count() <= NAME_LENGTH_MAX
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !shape_ok {
        return Err(BehavioralError::InvalidEventName(format!(
            "Event name '{name}' is invalid: use 1 to {NAME_LENGTH_MAX} letters, digits, '_' or '-'"
        )));
    }
    Ok(name.to_string())
}

/// Checks a field name: 1–100 characters, a letter or `_` first, then letters, digits, `_`, `-`;
/// the standard attribute names are reserved.
fn parse_field_name(field: &str, raw: Option<&str>) -> Result<String, BehavioralError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Err(invalid(format!("{field}.name is required")));
    };
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !first_ok || !rest_ok || name.chars().count() > NAME_LENGTH_MAX {
        return Err(invalid(format!(
            "{field}.name '{name}' is invalid: use 1 to {NAME_LENGTH_MAX} letters, digits, '_' \
             or '-', starting with a letter or '_'"
        )));
    }
    if RESERVED_FIELD_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(invalid(format!(
            "{field}.name '{name}' is reserved for the standard attributes of every event"
        )));
    }
    Ok(name.to_string())
}

/// Where an event's data goes (`EMFConsumer`: loyalty, `EIConsumer`: insights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "EMFConsumer")]
    Emf,
    #[serde(rename = "EIConsumer")]
    Ei,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::Emf, Action::Ei];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Emf => "EMFConsumer",
            Action::Ei => "EIConsumer",
        }
    }
}

/// Parses `actions`: 1 or 2 distinct consumers, any case.
pub fn parse_actions(raw: Option<&[Value]>) -> Result<Vec<Action>, BehavioralError> {
    let list = raw.unwrap_or_default();
    if list.is_empty() {
        return Err(BehavioralError::InvalidActions(
            "actions must list at least one of EMFConsumer, EIConsumer".into(),
        ));
    }
    let mut actions = Vec::with_capacity(list.len());
    for value in list {
        let text = value.as_str().map(str::trim).unwrap_or_default();
        let Some(action) = Action::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(text))
        else {
            return Err(BehavioralError::InvalidActions(format!(
                "Event action {value} is invalid: use EMFConsumer or EIConsumer"
            )));
        };
        if actions.contains(&action) {
            return Err(BehavioralError::InvalidActions(format!(
                "Event action {} is listed twice",
                action.as_str()
            )));
        }
        actions.push(action);
    }
    Ok(actions)
}

/// The type of an event field: standard attributes (customer, till, coupon, product) and custom
/// value types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldType {
    #[serde(rename = "CUSTOMER")]
    Customer,
    #[serde(rename = "TILLCODE")]
    TillCode,
    #[serde(rename = "COUPONCODE")]
    CouponCode,
    #[serde(rename = "PRODUCTSKU")]
    ProductSku,
    #[serde(rename = "PRODUCTBRAND")]
    ProductBrand,
    #[serde(rename = "PRODUCTCATEGORY")]
    ProductCategory,
    #[serde(rename = "GROUPID")]
    GroupId,
    #[serde(rename = "STRING")]
    String,
    #[serde(rename = "DOUBLE")]
    Double,
    #[serde(rename = "INTEGER")]
    Integer,
    #[serde(rename = "BOOLEAN")]
    Boolean,
    #[serde(rename = "DATE")]
    Date,
    #[serde(rename = "DATETIME")]
    DateTime,
    #[serde(rename = "ENUM")]
    Enum,
}

impl FieldType {
    /// The wire name (upper case, as Get Events Meta shows it).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Customer => "CUSTOMER",
            FieldType::TillCode => "TILLCODE",
            FieldType::CouponCode => "COUPONCODE",
            FieldType::ProductSku => "PRODUCTSKU",
            FieldType::ProductBrand => "PRODUCTBRAND",
            FieldType::ProductCategory => "PRODUCTCATEGORY",
            FieldType::GroupId => "GROUPID",
            FieldType::String => "STRING",
            FieldType::Double => "DOUBLE",
            FieldType::Integer => "INTEGER",
            FieldType::Boolean => "BOOLEAN",
            FieldType::Date => "DATE",
            FieldType::DateTime => "DATETIME",
            FieldType::Enum => "ENUM",
        }
    }

    /// Reads a type in any case, with the spellings clients use (`tillCode`, `till_code`,
    /// `number`, `long`, `bool`, `dateTime`, …).
    pub fn parse(raw: &str) -> Option<FieldType> {
        let key: String =
            raw.trim().chars().filter(|c| *c != '_').collect::<String>().to_ascii_lowercase();
        Some(match key.as_str() {
            "customer" => FieldType::Customer,
            "tillcode" | "till" => FieldType::TillCode,
            "couponcode" | "coupon" => FieldType::CouponCode,
            "productsku" | "sku" => FieldType::ProductSku,
            "productbrand" | "brand" => FieldType::ProductBrand,
            "productcategory" | "category" => FieldType::ProductCategory,
            "groupid" => FieldType::GroupId,
            "string" | "text" => FieldType::String,
            "double" | "number" | "float" | "decimal" => FieldType::Double,
            "integer" | "int" | "long" => FieldType::Integer,
            "boolean" | "bool" => FieldType::Boolean,
            "date" => FieldType::Date,
            "datetime" | "timestamp" => FieldType::DateTime,
            "enum" => FieldType::Enum,
            _ => return None,
        })
    }

    /// Types whose values are text (and may carry a `regex`).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::TillCode
                | FieldType::CouponCode
                | FieldType::ProductSku
                | FieldType::ProductBrand
                | FieldType::ProductCategory
                | FieldType::GroupId
                | FieldType::String
        )
    }
}

/// How a customer field names the customer: the customer id (`userId`) or an identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerKey {
    UserId,
    Identifier(IdentifierType),
}

impl CustomerKey {
    pub fn parse(raw: &str) -> Option<CustomerKey> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("userId") || raw.eq_ignore_ascii_case("id") {
            return Some(CustomerKey::UserId);
        }
        IdentifierType::parse(raw).map(CustomerKey::Identifier)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CustomerKey::UserId => "userId",
            CustomerKey::Identifier(kind) => kind.as_str(),
        }
    }
}

/// One field of an event definition, as stored (JSON) and validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    pub required: bool,
    #[serde(default)]
    pub unique_key: bool,
    #[serde(default)]
    pub psi: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub possible_values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Customer fields: `userId` or an identifier type name (default `mobile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier_type: Option<String>,
    /// Customer fields: the source account to look the identifier up in (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Stored and shown; Perks never creates customers from events.
    #[serde(default)]
    pub add_customer_if_not_exists: bool,
}

impl FieldDef {
    /// The customer key of a customer field.
    pub fn customer_key(&self) -> CustomerKey {
        self.identifier_type
            .as_deref()
            .and_then(CustomerKey::parse)
            .unwrap_or(CustomerKey::Identifier(IdentifierType::Mobile))
    }

    /// The source account a customer field looks identifiers up in, if it names one.
    pub fn source_account(&self) -> Option<SourceAccount> {
        let source = self.source.as_deref()?;
        SourceAccount::parse(Some(source), self.account_id.as_deref()).ok()
    }

    /// The field as Get Events Meta shows it: `{name, type, attributes{...{value, valueType}}}`.
    pub fn to_wire(&self) -> Value {
        let flag = |b: bool| json!({"value": b.to_string(), "valueType": "BOOLEAN"});
        let mut attributes = Map::new();
        attributes.insert("isRequired".into(), flag(self.required));
        attributes.insert("isUniqueKeyField".into(), flag(self.unique_key));
        attributes.insert("isPsiData".into(), flag(self.psi));
        if self.kind == FieldType::Customer {
            attributes.insert(
                "identifierType".into(),
                json!({"value": self.customer_key().as_str(), "valueType": "ENUM"}),
            );
            if let Some(source) = &self.source {
                attributes.insert("source".into(), json!({"value": source, "valueType": "ENUM"}));
            }
            if let Some(account) = &self.account_id {
                attributes
                    .insert("accountId".into(), json!({"value": account, "valueType": "ENUM"}));
            }
            attributes.insert(
                "addCustomerIfNotExists".into(),
                json!({"value": self.add_customer_if_not_exists.to_string(), "valueType": "Boolean"}),
            );
        }
        if self.kind == FieldType::Enum {
            attributes.insert(
                "possibleValues".into(),
                json!({"valueType": "ENUM", "values": self.possible_values}),
            );
        }
        if let Some(regex) = &self.regex {
            attributes.insert("regex".into(), json!({"value": regex, "valueType": "String"}));
        }
        json!({"name": self.name, "type": self.kind.as_str(), "attributes": attributes})
    }
}

/// A validated event definition to create or replace.
#[derive(Clone, Debug)]
pub struct EventDefinition {
    pub name: String,
    pub description: String,
    pub actions: Vec<Action>,
    pub fields: Vec<FieldDef>,
}

/// One field as the wire carries it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FieldBody {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
}

/// Body of `POST /v2/events` and `PUT /v2/events`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionBody {
    pub event_name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Vec<String>>)]
    pub actions: Option<Vec<Value>>,
    #[serde(default)]
    pub fields: Vec<FieldBody>,
}

impl EventDefinition {
    /// Validates a definition body: name (1811), actions (1810), field types (1823), `isRequired`
    /// values (1802), and every other rule (400, naming the field).
    pub fn parse(body: &DefinitionBody) -> Result<EventDefinition, BehavioralError> {
        let name = parse_event_name(body.event_name.as_deref())?;
        let actions = parse_actions(body.actions.as_deref())?;
        let description = body.description.as_deref().map(str::trim).unwrap_or_default();
        if description.chars().count() > DESCRIPTION_LENGTH_MAX {
            return Err(invalid(format!(
                "description must be at most {DESCRIPTION_LENGTH_MAX} characters"
            )));
        }
        if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(invalid("description must not contain control characters"));
        }
        if body.fields.len() > FIELDS_PER_EVENT_MAX {
            return Err(invalid(format!(
                "fields takes at most {FIELDS_PER_EVENT_MAX} entries, not {}",
                body.fields.len()
            )));
        }
        let mut fields: Vec<FieldDef> = Vec::with_capacity(body.fields.len());
        for (i, field) in body.fields.iter().enumerate() {
            let parsed = parse_field(i, field)?;
            if fields.iter().any(|f| f.name.eq_ignore_ascii_case(&parsed.name)) {
                return Err(invalid(format!(
                    "fields[{i}].name '{}' is used by another field of the event",
                    parsed.name
                )));
            }
            if parsed.kind == FieldType::Customer
                && fields.iter().any(|f| f.kind == FieldType::Customer)
            {
                return Err(invalid(format!(
                    "fields[{i}]: an event has at most one CUSTOMER field"
                )));
            }
            fields.push(parsed);
        }
        Ok(EventDefinition { name, description: description.to_string(), actions, fields })
    }

    /// The customer field, if the event has one.
    pub fn customer_field(&self) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.kind == FieldType::Customer)
    }
}

/// The value of one attribute: `{"value": …, "valueType": …}` or the bare value.
fn attribute_value(value: &Value) -> &Value {
    match value {
        Value::Object(map) => map.get("value").unwrap_or(&Value::Null),
        other => other,
    }
}

fn attribute_flag(field: &str, key: &str, value: &Value) -> Result<bool, BehavioralError> {
    let parsed = match attribute_value(value) {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        Value::Null => Some(false),
        _ => None,
    };
    parsed.ok_or_else(|| {
        let message = format!("{field}.attributes.{key} must be true or false");
        if key == "isRequired" {
            BehavioralError::Required(format!(
                "{message}: field attribute value fails for validation type isRequired"
            ))
        } else {
            invalid(message)
        }
    })
}

fn attribute_text(field: &str, key: &str, value: &Value) -> Result<String, BehavioralError> {
    match attribute_value(value) {
        Value::String(s) if !s.trim().is_empty() => {
            let s = s.trim();
            if s.chars().count() > TEXT_VALUE_LENGTH_MAX || s.chars().any(char::is_control) {
                return Err(invalid(format!("{field}.attributes.{key} is too long or malformed")));
            }
            Ok(s.to_string())
        }
        _ => Err(invalid(format!("{field}.attributes.{key} must be a non-empty text value"))),
    }
}

fn possible_values(field: &str, value: &Value) -> Result<Vec<String>, BehavioralError> {
    let items: Vec<Value> = match value {
        Value::Object(map) => match map.get("values").or_else(|| map.get("value")) {
            Some(Value::Array(list)) => list.clone(),
            Some(Value::String(s)) => s.split(',').map(|v| Value::String(v.to_string())).collect(),
            _ => Vec::new(),
        },
        Value::Array(list) => list.clone(),
        Value::String(s) => s.split(',').map(|v| Value::String(v.to_string())).collect(),
        _ => Vec::new(),
    };
    if items.is_empty() || items.len() > POSSIBLE_VALUES_MAX {
        return Err(invalid(format!(
            "{field}.attributes.possibleValues must list 1 to {POSSIBLE_VALUES_MAX} values"
        )));
    }
    let mut values: Vec<String> = Vec::with_capacity(items.len());
    for item in &items {
        let text = match item {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        if text.is_empty()
            || text.chars().count() > POSSIBLE_VALUE_LENGTH_MAX
            || text.chars().any(char::is_control)
        {
            return Err(invalid(format!(
                "{field}.attributes.possibleValues: each value must be 1 to \
                 {POSSIBLE_VALUE_LENGTH_MAX} characters"
            )));
        }
        if values.contains(&text) {
            return Err(invalid(format!("{field}.attributes.possibleValues lists '{text}' twice")));
        }
        values.push(text);
    }
    Ok(values)
}

/// Compiles a field's `regex` with a size limit (so a pathological pattern is refused here).
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_COMPILED_BYTES_MAX)
        .dfa_size_limit(REGEX_COMPILED_BYTES_MAX)
        .build()
}

fn parse_field(i: usize, body: &FieldBody) -> Result<FieldDef, BehavioralError> {
    let field = format!("fields[{i}]");
    let name = parse_field_name(&field, body.name.as_deref())?;
    let raw_type = body.kind.as_deref().map(str::trim).unwrap_or_default();
    let Some(kind) = FieldType::parse(raw_type) else {
        return Err(BehavioralError::InvalidFieldType(format!(
            "{name} invalid event field type '{raw_type}': use customer, tillCode, couponCode, \
             productSku, productBrand, productCategory, groupId, string, double, integer, \
             boolean, date, datetime or enum"
        )));
    };
    let mut def = FieldDef {
        name,
        kind,
        required: false,
        unique_key: false,
        psi: false,
        possible_values: Vec::new(),
        regex: None,
        identifier_type: None,
        source: None,
        account_id: None,
        add_customer_if_not_exists: false,
    };
    let empty = Map::new();
    let attributes = body.attributes.as_ref().unwrap_or(&empty);
    let customer_only = |key: &str| -> Result<(), BehavioralError> {
        if kind == FieldType::Customer {
            Ok(())
        } else {
            Err(invalid(format!("{field}.attributes.{key} applies to CUSTOMER fields only")))
        }
    };
    for (key, value) in attributes {
        match key.as_str() {
            "isRequired" => def.required = attribute_flag(&field, key, value)?,
            "isUniqueKeyField" => def.unique_key = attribute_flag(&field, key, value)?,
            "isPsiData" => def.psi = attribute_flag(&field, key, value)?,
            "addCustomerIfNotExists" => {
                customer_only(key)?;
                def.add_customer_if_not_exists = attribute_flag(&field, key, value)?;
            }
            "identifierType" => {
                customer_only(key)?;
                let text = attribute_text(&field, key, value)?;
                let parsed = CustomerKey::parse(&text).ok_or_else(|| {
                    invalid(format!(
                        "{field}.attributes.identifierType '{text}' is not supported: use userId, \
                         mobile, email, externalId, cardnumber, cardExternalId, wechat, \
                         martjackId, fbId, unionId, cuid or line"
                    ))
                })?;
                def.identifier_type = Some(parsed.as_str().to_string());
            }
            "source" => {
                customer_only(key)?;
                let text = attribute_text(&field, key, value)?;
                let source = Source::parse(&text).map_err(|_| {
                    invalid(format!("{field}.attributes.source '{text}' is unknown"))
                })?;
                def.source = Some(source.as_str().to_string());
            }
            "accountId" => {
                customer_only(key)?;
                // Capillary shows `accountId: {"valueType": "ENUM"}` without a value: no account.
                if !attribute_value(value).is_null() {
                    def.account_id = Some(attribute_text(&field, key, value)?);
                }
            }
            "possibleValues" => {
                if kind != FieldType::Enum {
                    return Err(invalid(format!(
                        "{field}.attributes.possibleValues applies to ENUM fields only"
                    )));
                }
                def.possible_values = possible_values(&field, value)?;
            }
            "regex" => {
                if !kind.is_text() {
                    return Err(invalid(format!(
                        "{field}.attributes.regex applies to text fields only"
                    )));
                }
                if attribute_value(value).is_null() {
                    continue;
                }
                let pattern = attribute_text(&field, key, value)?;
                if pattern.chars().count() > REGEX_LENGTH_MAX {
                    return Err(invalid(format!(
                        "{field}.attributes.regex must be at most {REGEX_LENGTH_MAX} characters"
                    )));
                }
                compile_regex(&pattern).map_err(|e| {
                    invalid(format!("{field}.attributes.regex is not a valid pattern: {e}"))
                })?;
                def.regex = Some(pattern);
            }
            other => {
                return Err(invalid(format!(
                    "{field}.attributes.{other} is not a supported attribute"
                )));
            }
        }
    }
    if kind == FieldType::Enum && def.possible_values.is_empty() {
        return Err(invalid(format!("{field}: an ENUM field needs attributes.possibleValues")));
    }
    if kind == FieldType::Customer {
        if def.psi {
            return Err(invalid(format!(
                "{field}: the customer identifier field cannot be isPsiData"
            )));
        }
        if def.account_id.is_some() && def.source.is_none() {
            return Err(invalid(format!("{field}.attributes.accountId needs attributes.source")));
        }
        if def.source.is_some() {
            SourceAccount::parse(def.source.as_deref(), def.account_id.as_deref())
                .map_err(|e| invalid(format!("{field}.attributes: {e}")))?;
        }
        def.identifier_type = Some(def.customer_key().as_str().to_string());
        // The customer identifies the event: it is always mandatory.
        def.required = true;
    }
    if def.unique_key && !def.required {
        return Err(BehavioralError::Required(format!(
            "{field}: a unique key field must also be isRequired (field attribute value fails \
             for validation type isRequired)"
        )));
    }
    Ok(def)
}

/// `limit`/`offset` of a list: limit 1–100 (default 10), offset ≥ 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub fn parse(limit: Option<&str>, offset: Option<&str>) -> Result<Page, BehavioralError> {
        let number =
            |name: &str, raw: Option<&str>, default: i64| -> Result<i64, BehavioralError> {
                match raw.map(str::trim).filter(|s| !s.is_empty()) {
                    None => Ok(default),
                    Some(s) => {
                        s.parse::<i64>().map_err(|_| invalid(format!("{name} must be a number")))
                    }
                }
            };
        let limit = number("limit", limit, LIMIT_DEFAULT)?;
        if !(1..=LIMIT_MAX).contains(&limit) {
            return Err(invalid(format!("limit must be 1 to {LIMIT_MAX}")));
        }
        let offset = number("offset", offset, 0)?;
        if offset < 0 {
            return Err(invalid("offset must not be negative"));
        }
        Ok(Page { limit, offset })
    }
}

/// A request id, external event id or webhook id: 1 to `max` visible ASCII characters.
pub fn parse_token(name: &str, raw: &str, max: usize) -> Result<String, BehavioralError> {
    let value = raw.trim();
    if value.is_empty() || value.len() > max || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(format!("{name} must be 1 to {max} visible ASCII characters")));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> DefinitionBody {
        serde_json::from_value(value).unwrap()
    }

    fn code(e: BehavioralError) -> u32 {
        ApiError::from(e).code.info().code
    }

    #[test]
    fn a_full_definition_parses_and_normalises() {
        let def = EventDefinition::parse(&body(json!({
            "eventName": "be_reserved",
            "description": " Room reservations ",
            "actions": ["emfconsumer", "EIConsumer"],
            "fields": [
                {"name": "customer_id", "type": "customer",
                 "attributes": {"identifierType": {"value": "mobile", "valueType": "ENUM"}}},
                {"name": "age", "type": "double", "attributes": {"isRequired": {"value": "true"}}},
                {"name": "nights", "type": "long"},
                {"name": "room", "type": "enum",
                 "attributes": {"possibleValues": {"valueType": "ENUM", "values": ["A", "B"]}}},
                {"name": "hotel", "type": "String",
                 "attributes": {"isRequired": true, "isUniqueKeyField": "true"}},
            ],
        })))
        .unwrap();
        assert_eq!(def.name, "be_reserved");
        assert_eq!(def.description, "Room reservations");
        assert_eq!(def.actions, [Action::Emf, Action::Ei]);
        assert_eq!(def.fields[0].kind, FieldType::Customer);
        assert!(def.fields[0].required);
        assert_eq!(def.fields[0].identifier_type.as_deref(), Some("mobile"));
        assert_eq!(def.fields[1].kind, FieldType::Double);
        assert!(def.fields[1].required);
        assert_eq!(def.fields[2].kind, FieldType::Integer);
        assert!(!def.fields[2].required);
        assert_eq!(def.fields[3].possible_values, ["A", "B"]);
        assert!(def.fields[4].unique_key);
        let wire = def.fields[0].to_wire();
        assert_eq!(wire["type"], "CUSTOMER");
        assert_eq!(wire["attributes"]["isRequired"]["value"], "true");
    }

    #[test]
    fn bad_definitions_get_their_codes() {
        let cases = [
            (json!({"actions": ["EMFConsumer"]}), 1811),
            (json!({"eventName": "has space", "actions": ["EMFConsumer"]}), 1811),
            (json!({"eventName": "x".repeat(101), "actions": ["EMFConsumer"]}), 1811),
            (json!({"eventName": "ok"}), 1810),
            (json!({"eventName": "ok", "actions": []}), 1810),
            (json!({"eventName": "ok", "actions": ["Kafka"]}), 1810),
            (json!({"eventName": "ok", "actions": ["EIConsumer", "eiconsumer"]}), 1810),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "a", "type": "blob"}]}),
                1823,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "a", "type": "string", "attributes": {"isRequired": "maybe"}}]}),
                1802,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "a", "type": "string", "attributes": {"isUniqueKeyField": true}}]}),
                1802,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "a", "type": "string"}, {"name": "A", "type": "double"}]}),
                400,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "event_name", "type": "string"}]}),
                400,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "e", "type": "enum"}]}),
                400,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "c", "type": "customer"}, {"name": "d", "type": "customer"}]}),
                400,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "c", "type": "customer",
                            "attributes": {"identifierType": "fcmToken"}}]}),
                400,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "s", "type": "string", "attributes": {"regex": "(("}}]}),
                400,
            ),
            (
                json!({"eventName": "ok", "actions": ["EIConsumer"],
                "fields": [{"name": "s", "type": "string", "attributes": {"colour": "red"}}]}),
                400,
            ),
        ];
        for (value, expected) in cases {
            let err = EventDefinition::parse(&body(value.clone())).unwrap_err();
            assert_eq!(code(err), expected, "{value}");
        }
        let too_many: Vec<Value> =
            (0..101).map(|i| json!({"name": format!("f{i}"), "type": "string"})).collect();
        let err = EventDefinition::parse(&body(
            json!({"eventName": "ok", "actions": ["EIConsumer"], "fields": too_many}),
        ))
        .unwrap_err();
        assert_eq!(code(err), 400);
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(Page::parse(None, None).unwrap(), Page { limit: 10, offset: 0 });
        assert_eq!(Page::parse(Some("100"), Some("5")).unwrap(), Page { limit: 100, offset: 5 });
        for (l, o) in
            [(Some("0"), None), (Some("101"), None), (Some("x"), None), (None, Some("-1"))]
        {
            assert!(Page::parse(l, o).is_err());
        }
    }
}
