//! Checking a posted event against its definition, without touching the database: unknown
//! keys, mandatory fields (1802), value types (400 naming the field), normalised values, the
//! search index, the de-duplication key, and the PSI mask of the stored request.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::model::{
    BehavioralError, CustomerKey, EVENT_DATE_TIME_KEY, EVENT_NAME_KEY, EXTERNAL_EVENT_ID_KEY,
    EXTERNAL_EVENT_ID_LENGTH_MAX, FieldDef, FieldType, TEXT_VALUE_LENGTH_MAX, compile_regex,
    parse_token,
};
use crate::customers::model::{CustomerId, SourceAccount};
use crate::transactions::time::local_to_millis;

/// How far ahead of now, and how far back, `eventDateTime` may be.
pub const EVENT_TIME_FUTURE_MAX_MILLIS: i64 = 24 * 3600 * 1000;
pub const EVENT_TIME_PAST_MAX_MILLIS: i64 = 3650 * 24 * 3600 * 1000;

/// A posted event checked against its definition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CheckedEvent {
    /// Normalised values of the fields present (PSI fields apart).
    pub attributes: Map<String, Value>,
    pub psi_attributes: Map<String, Value>,
    /// The customer field's key, source account and value, when the event has one.
    pub customer: Option<(CustomerKey, Option<SourceAccount>, String)>,
    /// A TILLCODE field's value: it overrides the caller's till.
    pub till_code: Option<String>,
    /// `name=value` of each unique key field, in definition order.
    pub unique_parts: Vec<String>,
    /// `(name, value as text)` of each non-PSI attribute, for search.
    pub index: Vec<(String, String)>,
    pub external_event_id: Option<String>,
    /// `eventDateTime`, when sent.
    pub event_at: Option<i64>,
    /// The fields validated, in definition order.
    pub validated: Vec<String>,
}

/// A number as search compares it: integral values without a fraction (`20`, not `20.0`).
pub fn canonical_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => canonical_number(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn naive_time(value: &str) -> Option<NaiveDateTime> {
    const FORMATS: [&str; 4] =
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];
    FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(value, f).ok()).or_else(|| {
        NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

/// An instant from RFC 3339 (its offset), a date-time or date without offset (in `tz`), or epoch
/// milliseconds.
pub fn parse_instant(value: &Value, tz: Tz) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.timestamp_millis());
            }
            naive_time(s).map(|local| local_to_millis(local, tz))
        }
        _ => None,
    }
}

fn wrong_type(field: &FieldDef, expected: &str) -> BehavioralError {
    BehavioralError::Invalid(format!(
        "Field '{}' must be {expected} ({})",
        field.name,
        field.kind.as_str()
    ))
}

/// One field's value, normalised for its type.
fn normalise(field: &FieldDef, value: &Value, tz: Tz) -> Result<Value, BehavioralError> {
    let text = |value: &Value| -> Option<String> {
        match value {
            Value::String(s) => Some(s.trim().to_string()),
            _ => None,
        }
    };
    let normalised = match field.kind {
        FieldType::Customer => {
            let raw = match value {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                _ => return Err(wrong_type(field, "a customer identifier (text)")),
            };
            if raw.is_empty() {
                return Err(BehavioralError::Required(format!(
                    "Field '{}' is required: field attribute value fails for validation type \
                     isRequired",
                    field.name
                )));
            }
            Value::String(raw)
        }
        FieldType::Double => {
            let number = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match number.filter(|f| f.is_finite()).and_then(serde_json::Number::from_f64) {
                Some(n) => Value::Number(n),
                None => return Err(wrong_type(field, "a number")),
            }
        }
        FieldType::Integer => {
            let number = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match number {
                Some(n) => Value::from(n),
                None => return Err(wrong_type(field, "a whole number")),
            }
        }
        FieldType::Boolean => match value {
            Value::Bool(b) => Value::Bool(*b),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(wrong_type(field, "true or false")),
        },
        FieldType::Date | FieldType::DateTime => match parse_instant(value, tz) {
            Some(millis) => Value::from(millis),
            None => {
                return Err(wrong_type(
                    field,
                    "a date (YYYY-MM-DD), a date-time (YYYY-MM-DD HH:MM:SS, read in the org's \
                     time zone), RFC 3339 or epoch milliseconds",
                ));
            }
        },
        FieldType::Enum => {
            let chosen = match value {
                Value::String(s) => s.trim().to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err(wrong_type(field, "one of its possible values")),
            };
            if !field.possible_values.contains(&chosen) {
                return Err(BehavioralError::Invalid(format!(
                    "Field '{}' must be one of {} (ENUM), not '{chosen}'",
                    field.name,
                    field.possible_values.join(", ")
                )));
            }
            Value::String(chosen)
        }
        _ => {
            let Some(s) = text(value) else { return Err(wrong_type(field, "text")) };
            if s.chars().count() > TEXT_VALUE_LENGTH_MAX {
                return Err(BehavioralError::Invalid(format!(
                    "Field '{}' must be at most {TEXT_VALUE_LENGTH_MAX} characters",
                    field.name
                )));
            }
            if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(BehavioralError::Invalid(format!(
                    "Field '{}' must not contain control characters",
                    field.name
                )));
            }
            if let Some(pattern) = &field.regex {
                let regex = compile_regex(pattern).map_err(|e| {
                    BehavioralError::Stored(format!("regex of {}: {e}", field.name))
                })?;
                if !regex.is_match(&s) {
                    return Err(BehavioralError::Invalid(format!(
                        "Field '{}' does not match its pattern {pattern}",
                        field.name
                    )));
                }
            }
            Value::String(s)
        }
    };
    Ok(normalised)
}

/// Checks a posted body against the event's fields: unknown keys, missing mandatory fields
/// (1802), values of the wrong type (400 naming the field); normalises every value. Pure.
pub fn check_event(
    fields: &[FieldDef],
    body: &Map<String, Value>,
    tz: Tz,
    now: i64,
) -> Result<CheckedEvent, BehavioralError> {
    let mut checked = CheckedEvent::default();
    for key in body.keys() {
        let standard = [EVENT_NAME_KEY, EXTERNAL_EVENT_ID_KEY, EVENT_DATE_TIME_KEY];
        if !standard.contains(&key.as_str()) && !fields.iter().any(|f| &f.name == key) {
            return Err(BehavioralError::Invalid(format!("'{key}' is not a field of this event")));
        }
    }
    if let Some(value) = body.get(EXTERNAL_EVENT_ID_KEY).filter(|v| !v.is_null()) {
        let raw = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => String::new(),
        };
        checked.external_event_id =
            Some(parse_token(EXTERNAL_EVENT_ID_KEY, &raw, EXTERNAL_EVENT_ID_LENGTH_MAX)?);
    }
    if let Some(value) = body.get(EVENT_DATE_TIME_KEY).filter(|v| !v.is_null()) {
        let millis = parse_instant(value, tz).ok_or_else(|| {
            BehavioralError::Invalid(format!(
                "{EVENT_DATE_TIME_KEY} must be YYYY-MM-DD HH:MM:SS (org time zone), RFC 3339 or \
                 epoch milliseconds"
            ))
        })?;
        if millis > now + EVENT_TIME_FUTURE_MAX_MILLIS || millis < now - EVENT_TIME_PAST_MAX_MILLIS
        {
            return Err(BehavioralError::Invalid(format!(
                "{EVENT_DATE_TIME_KEY} must be within the last 3650 days and the next 24 hours"
            )));
        }
        checked.event_at = Some(millis);
    }
    for field in fields {
        let value = body.get(&field.name).filter(|v| !v.is_null());
        let value = match value {
            Some(Value::String(s)) if s.trim().is_empty() && field.kind != FieldType::String => {
                None
            }
            other => other,
        };
        let Some(value) = value else {
            if field.required {
                return Err(BehavioralError::Required(format!(
                    "Field '{}' is required: field attribute value fails for validation type \
                     isRequired",
                    field.name
                )));
            }
            continue;
        };
        let normalised = normalise(field, value, tz)?;
        match field.kind {
            FieldType::Customer => {
                let key = field.customer_key();
                let raw = value_text(&normalised);
                checked.customer = Some((key, field.source_account(), raw));
            }
            FieldType::TillCode => checked.till_code = Some(value_text(&normalised)),
            _ => {}
        }
        if field.unique_key {
            checked.unique_parts.push(format!("{}={}", field.name, value_text(&normalised)));
        }
        checked.validated.push(field.name.clone());
        if field.psi {
            checked.psi_attributes.insert(field.name.clone(), normalised);
        } else {
            checked.index.push((field.name.clone(), value_text(&normalised)));
            checked.attributes.insert(field.name.clone(), normalised);
        }
    }
    Ok(checked)
}

/// The de-duplication key of an event: its unique key fields (with the customer) when the
/// definition has any, else its `external_event_id`, else none.
pub fn dedup_key(
    event_name: &str,
    customer: Option<CustomerId>,
    checked: &CheckedEvent,
) -> Option<String> {
    let material = if !checked.unique_parts.is_empty() {
        let customer = customer.map(|c| c.0.to_string()).unwrap_or_default();
        format!("unique\u{0}{event_name}\u{0}{customer}\u{0}{}", checked.unique_parts.join("\u{0}"))
    } else if let Some(external) = &checked.external_event_id {
        format!("external\u{0}{event_name}\u{0}{external}")
    } else {
        return None;
    };
    Some(hex::encode(Sha256::digest(material.as_bytes())))
}

/// Shown instead of the value of a PSI field in the stored request (the event log).
pub const PSI_MASK: &str = "******";

/// The posted body as the event log keeps it: values of PSI fields masked.
pub fn redact_psi(fields: &[FieldDef], body: &Map<String, Value>) -> Map<String, Value> {
    let mut redacted = body.clone();
    for field in fields.iter().filter(|f| f.psi) {
        if let Some(value) = redacted.get_mut(&field.name) {
            *value = Value::String(PSI_MASK.into());
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::behavioral::model::{DefinitionBody, EventDefinition};
    use crate::error::ApiError;

    const UTC: Tz = chrono_tz::UTC;

    fn fields() -> Vec<FieldDef> {
        let body: DefinitionBody = serde_json::from_value(json!({
            "eventName": "be_reserved",
            "actions": ["EMFConsumer"],
            "fields": [
                {"name": "customer_id", "type": "customer"},
                {"name": "age", "type": "double", "attributes": {"isRequired": true}},
                {"name": "nights", "type": "integer"},
                {"name": "vip", "type": "boolean"},
                {"name": "room", "type": "enum", "attributes": {"possibleValues": ["A", "B"]}},
                {"name": "hotel", "type": "string",
                 "attributes": {"isRequired": true, "isUniqueKeyField": true, "regex": "^[A-Z]"}},
                {"name": "stay", "type": "datetime"},
                {"name": "secret", "type": "string", "attributes": {"isPsiData": true}},
            ],
        }))
        .unwrap();
        EventDefinition::parse(&body).unwrap().fields
    }

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn code(e: BehavioralError) -> u32 {
        ApiError::from(e).code.info().code
    }

    #[test]
    fn a_good_event_is_normalised() {
        let now = 1_700_000_000_000;
        let checked = check_event(
            &fields(),
            &body(json!({
                "event_name": "be_reserved", "customer_id": 919800000001_i64, "age": "20",
                "nights": 3, "vip": "TRUE", "room": "A", "hotel": "Palace",
                "stay": "2023-11-14 10:00:00", "secret": "s3", "external_event_id": "X1",
                "eventDateTime": "2023-11-14 12:00:00",
            })),
            chrono_tz::Asia::Kolkata,
            now,
        )
        .unwrap();
        assert_eq!(checked.attributes["age"], json!(20.0));
        assert_eq!(checked.attributes["nights"], json!(3));
        assert_eq!(checked.attributes["vip"], json!(true));
        assert_eq!(checked.attributes["customer_id"], json!("919800000001"));
        assert_eq!(checked.attributes["stay"], json!(1_699_936_200_000_i64));
        assert!(!checked.attributes.contains_key("secret"));
        assert_eq!(checked.psi_attributes["secret"], json!("s3"));
        assert_eq!(checked.unique_parts, ["hotel=Palace"]);
        assert_eq!(checked.external_event_id.as_deref(), Some("X1"));
        assert_eq!(checked.event_at, Some(1_699_943_400_000));
        assert!(checked.index.contains(&("age".to_string(), "20".to_string())));
        let (key, account, value) = checked.customer.unwrap();
        assert_eq!(key.as_str(), "mobile");
        assert!(account.is_none());
        assert_eq!(value, "919800000001");
    }

    #[test]
    fn bad_events_are_refused_with_their_codes() {
        let now = 1_700_000_000_000;
        let base = json!({"event_name": "be_reserved", "customer_id": "1", "age": 1, "hotel": "P"});
        let with = |key: &str, value: Value| {
            let mut b = base.as_object().unwrap().clone();
            b.insert(key.into(), value);
            b
        };
        let without = |key: &str| {
            let mut b = base.as_object().unwrap().clone();
            b.remove(key);
            b
        };
        assert!(check_event(&fields(), &body(base.clone()), UTC, now).is_ok());
        let cases = [
            (without("customer_id"), 1802),
            (without("age"), 1802),
            (with("age", json!(null)), 1802),
            (with("customer_id", json!("")), 1802),
            (with("age", json!("old")), 400),
            (with("age", json!(true)), 400),
            (with("nights", json!(1.5)), 400),
            (with("vip", json!("yes")), 400),
            (with("room", json!("C")), 400),
            (with("hotel", json!("palace")), 400),
            (with("hotel", json!(42)), 400),
            (with("hotel", json!("H".repeat(1001))), 400),
            (with("stay", json!("soon")), 400),
            (with("colour", json!("red")), 400),
            (with("eventDateTime", json!("2050-01-01 00:00:00")), 400),
            (with("external_event_id", json!({"a": 1})), 400),
        ];
        for (b, expected) in cases {
            let err = check_event(&fields(), &b, UTC, now).unwrap_err();
            assert_eq!(code(err), expected, "{b:?}");
        }
    }

    #[test]
    fn dedup_keys_follow_unique_fields_then_external_ids() {
        let mut checked = CheckedEvent::default();
        assert_eq!(dedup_key("e", None, &checked), None);
        checked.external_event_id = Some("X".into());
        let by_external = dedup_key("e", Some(CustomerId(1)), &checked).unwrap();
        assert_eq!(Some(by_external.clone()), dedup_key("e", Some(CustomerId(2)), &checked));
        checked.unique_parts = vec!["hotel=P".into()];
        let by_unique = dedup_key("e", Some(CustomerId(1)), &checked).unwrap();
        assert_ne!(by_unique, by_external);
        assert_ne!(Some(by_unique), dedup_key("e", Some(CustomerId(2)), &checked));
    }

    #[test]
    fn numbers_compare_without_trailing_fractions() {
        assert_eq!(canonical_number(20.0), "20");
        assert_eq!(canonical_number(20.5), "20.5");
        assert_eq!(value_text(&json!(20.0)), "20");
        assert_eq!(value_text(&json!(true)), "true");
    }
}
