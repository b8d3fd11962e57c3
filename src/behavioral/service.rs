//! Behavioral event rules: defining, updating and disabling events; checking a posted event
//! against its definition (pure, [`check_event`]); storing it with its de-duplication key, audit
//! record and `behavioral.event` outbox entry in one transaction; and the reads.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::model::{
    Action, BehavioralError, CustomerKey, EVENT_DATE_TIME_KEY, EVENT_NAME_KEY, EVENTS_PER_ORG_MAX,
    EXTERNAL_EVENT_ID_KEY, EXTERNAL_EVENT_ID_LENGTH_MAX, EventDefinition, FieldDef, FieldType,
    TEXT_VALUE_LENGTH_MAX, compile_regex, parse_token,
};
use super::store::{self, DefinitionRow, EventFilter, EventRow, NewDefinition, Order, RunningRow};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::customers::model::{CustomerError, CustomerId, Identifier, SourceAccount};
use crate::customers::store as customer_store;
use crate::db::{Connection, Db, now_millis};
use crate::events::{self, NewEvent};
use crate::org::model::OrgId;
use crate::org::store::{self as org_store, TillLookup};
use crate::transactions::time::local_to_millis;

/// The outbox type of every accepted (non-duplicate) posted event; the event's name is in the
/// payload (`eventName`), so one subscription sees every behavioral event.
pub const POSTED_EVENT_TYPE: &str = "behavioral.event";
/// Log statuses of a posted event.
pub const STATUS_SUCCESS: &str = "EVENT_SUCCESS";
pub const STATUS_DUPLICATE: &str = "EVENT_DUPLICATE";
/// How far ahead of now, and how far back, `eventDateTime` may be.
pub const EVENT_TIME_FUTURE_MAX_MILLIS: i64 = 24 * 3600 * 1000;
pub const EVENT_TIME_PAST_MAX_MILLIS: i64 = 3650 * 24 * 3600 * 1000;

/// A stored definition, decoded.
#[derive(Clone, Debug)]
pub struct DefinitionView {
    pub row: DefinitionRow,
    pub actions: Vec<Action>,
    pub fields: Vec<FieldDef>,
}

impl DefinitionView {
    fn decode(row: DefinitionRow) -> Result<DefinitionView, BehavioralError> {
        let actions: Vec<Action> = serde_json::from_str(&row.actions)
            .map_err(|e| BehavioralError::Stored(format!("actions of event {}: {e}", row.id)))?;
        let fields: Vec<FieldDef> = serde_json::from_str(&row.fields)
            .map_err(|e| BehavioralError::Stored(format!("fields of event {}: {e}", row.id)))?;
        Ok(DefinitionView { row, actions, fields })
    }

    /// `clickEventsMeta` as Get Org Events and Get Events Meta show it.
    pub fn meta(&self, org: OrgId) -> Value {
        let fields: Vec<Value> = self.fields.iter().map(FieldDef::to_wire).collect();
        let actions: Vec<&str> = self.actions.iter().map(|a| a.as_str()).collect();
        json!({
            "eventId": self.row.event_id,
            "eventName": self.row.name,
            "label": self.row.name,
            "description": self.row.description,
            "eventType": "USEREVENT",
            "actions": actions,
            "fields": fields,
            "orgId": org.0,
            "status": if self.row.is_active { "PUBLISHED" } else { "DISABLED" },
            "testStatus": "VERIFIED",
            "active": self.row.is_active,
            "version": self.row.version,
            "date": self.row.updated_at,
            "standardEvent": false,
        })
    }

    /// The audit/outbox form: the definition without org-specific decoration.
    fn audit_state(&self) -> Value {
        json!({
            "eventId": self.row.event_id,
            "eventName": self.row.name,
            "description": self.row.description,
            "actions": self.actions,
            "fields": self.fields,
            "active": self.row.is_active,
            "version": self.row.version,
        })
    }
}

fn to_json_text<T: serde::Serialize>(value: &T) -> Result<String, BehavioralError> {
    serde_json::to_string(value).map_err(|e| BehavioralError::Stored(e.to_string()))
}

async fn load_definition(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<DefinitionView, BehavioralError> {
    let row = store::definition_by_name(c, org, name)
        .await?
        .ok_or_else(|| BehavioralError::UnknownEvent(name.to_string()))?;
    DefinitionView::decode(row)
}

async fn record_change(
    c: &mut impl Connection,
    principal: &Principal,
    view: &DefinitionView,
    action: &str,
    before: Option<Value>,
    event_type: &str,
) -> Result<(), BehavioralError> {
    let org = principal.org;
    let after = view.audit_state();
    let change = Change {
        entity_type: "BEHAVIORAL_EVENT",
        entity_id: view.row.id,
        action,
        before,
        after: Some(after.clone()),
    };
    audit::record(c, org, &AuditActor::from(principal), change).await?;
    let event = NewEvent {
        event_type,
        entity_type: "BEHAVIORAL_EVENT",
        entity_id: view.row.id,
        payload: json!({"eventId": view.row.event_id, "event": after}),
    };
    events::raise(c, org, Some(principal), event).await?;
    Ok(())
}

/// Creates an event definition; a name the org already has answers 1806, and an org holds at
/// most [`EVENTS_PER_ORG_MAX`] events.
#[tracing::instrument(skip_all, fields(org = principal.org.0, event = %def.name))]
pub async fn create_event(
    db: &Db,
    principal: &Principal,
    def: &EventDefinition,
) -> Result<DefinitionView, BehavioralError> {
    let org = principal.org;
    let actions = to_json_text(&def.actions)?;
    let fields = to_json_text(&def.fields)?;
    let event_id = uuid::Uuid::new_v4().simple().to_string();
    let now = now_millis();
    let mut tx = db.begin_write().await?;
    if store::definition_by_name(&mut tx, org, &def.name).await?.is_some() {
        return Err(BehavioralError::AlreadyExists(def.name.clone()));
    }
    if store::count_definitions(&mut tx, org).await? >= EVENTS_PER_ORG_MAX {
        return Err(BehavioralError::CountExceeded(EVENTS_PER_ORG_MAX));
    }
    let new = NewDefinition {
        event_id: &event_id,
        name: &def.name,
        description: &def.description,
        actions: &actions,
        fields: &fields,
    };
    // A concurrent create of the same name loses on the unique index: the same 1806.
    if store::insert_definition(&mut tx, org, &new, now).await?.is_none() {
        return Err(BehavioralError::AlreadyExists(def.name.clone()));
    }
    let view = load_definition(&mut tx, org, &def.name).await?;
    record_change(&mut tx, principal, &view, "CREATE", None, "behavioral_definition.created")
        .await?;
    tx.commit().await?;
    Ok(view)
}

/// Replaces an event's description, actions and fields (the whole payload is resent); its
/// status is kept. An unknown name answers 404.
#[tracing::instrument(skip_all, fields(org = principal.org.0, event = %def.name))]
pub async fn update_event(
    db: &Db,
    principal: &Principal,
    def: &EventDefinition,
) -> Result<DefinitionView, BehavioralError> {
    let org = principal.org;
    let actions = to_json_text(&def.actions)?;
    let fields = to_json_text(&def.fields)?;
    let mut tx = db.begin_write().await?;
    let before = load_definition(&mut tx, org, &def.name).await?;
    store::update_definition(
        &mut tx,
        org,
        before.row.id,
        &def.description,
        &actions,
        &fields,
        now_millis(),
    )
    .await?;
    let view = load_definition(&mut tx, org, &def.name).await?;
    let previous = Some(before.audit_state());
    record_change(&mut tx, principal, &view, "UPDATE", previous, "behavioral_definition.updated")
        .await?;
    tx.commit().await?;
    Ok(view)
}

/// Disables an event: it stops accepting posts. Disabling a disabled event changes nothing
/// (`false`).
#[tracing::instrument(skip_all, fields(org = principal.org.0, event = name))]
pub async fn disable_event(
    db: &Db,
    principal: &Principal,
    name: &str,
) -> Result<(DefinitionView, bool), BehavioralError> {
    let org = principal.org;
    let mut tx = db.begin_write().await?;
    let before = load_definition(&mut tx, org, name).await?;
    if !before.row.is_active {
        return Ok((before, false));
    }
    store::set_active(&mut tx, org, before.row.id, false, now_millis()).await?;
    let view = load_definition(&mut tx, org, name).await?;
    let previous = Some(before.audit_state());
    record_change(&mut tx, principal, &view, "DISABLE", previous, "behavioral_definition.disabled")
        .await?;
    tx.commit().await?;
    Ok((view, true))
}

/// Every event the org defined, oldest first (bounded by [`EVENTS_PER_ORG_MAX`]).
pub async fn org_events(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<DefinitionView>, BehavioralError> {
    store::definitions(c, org, EVENTS_PER_ORG_MAX)
        .await?
        .into_iter()
        .map(DefinitionView::decode)
        .collect()
}

/// One event's definition; 404 when the org has no such event.
pub async fn event_meta(
    c: &mut impl Connection,
    org: OrgId,
    name: &str,
) -> Result<DefinitionView, BehavioralError> {
    load_definition(c, org, name).await
}

/// Every event with its status and the time its latest post was received.
pub async fn running(
    c: &mut impl Connection,
    org: OrgId,
) -> Result<Vec<RunningRow>, BehavioralError> {
    Ok(store::running(c, org, EVENTS_PER_ORG_MAX).await?)
}

/// One posted event by its event id; 404 when the org has none.
pub async fn event_by_id(
    c: &mut impl Connection,
    org: OrgId,
    event_id: &str,
) -> Result<EventRow, BehavioralError> {
    store::event_by_event_id(c, org, event_id)
        .await?
        .ok_or_else(|| BehavioralError::NotFound(format!("No event with eventId '{event_id}'")))
}

/// The org's time zone (UTC when it cannot be read).
pub async fn org_zone(c: &mut impl Connection, org: OrgId) -> Result<Tz, BehavioralError> {
    let zone = org_store::get_org(c, org).await?.map(|o| o.timezone).unwrap_or_default();
    Ok(zone.parse::<Tz>().unwrap_or(chrono_tz::UTC))
}

// ---------------------------------------------------------------- checking a posted event

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

// ---------------------------------------------------------------- posting an event

/// A posted event as the handler parsed it.
#[derive(Clone, Debug)]
pub struct PostInput {
    pub event_name: String,
    pub body: Map<String, Value>,
    pub request_id: String,
    pub webhook_id: Option<String>,
    pub country_code: Option<String>,
    /// When the request arrived (for `responseTime`).
    pub started_at: std::time::Instant,
}

/// What a post did.
#[derive(Clone, Debug)]
pub struct PostOutcome {
    pub event_id: String,
    pub request_id: String,
    pub is_duplicate: bool,
    pub message: String,
}

async fn resolve_customer(
    c: &mut impl Connection,
    org: OrgId,
    key: CustomerKey,
    account: Option<&SourceAccount>,
    value: &str,
    country: Option<&str>,
) -> Result<CustomerId, BehavioralError> {
    let found = match key {
        CustomerKey::UserId => match value.parse::<i64>() {
            Ok(id) => {
                customer_store::get_customer(c, org, CustomerId(id)).await?.map(|_| CustomerId(id))
            }
            Err(_) => None,
        },
        CustomerKey::Identifier(kind) => match Identifier::parse(kind, value, country) {
            Ok(identifier) => customer_store::find_owner(c, org, account, &identifier).await?,
            Err(_) => None,
        },
    };
    found.ok_or(BehavioralError::Customer(CustomerError::NotFound))
}

/// The till code of the event: a TILLCODE attribute (an active till of the org, else 671), or
/// the caller's acting till.
async fn resolve_till(
    c: &mut impl Connection,
    principal: &Principal,
    attribute: Option<&str>,
) -> Result<Option<String>, BehavioralError> {
    let org = principal.org;
    if let Some(code) = attribute {
        let lookup = TillLookup { code: Some(code.to_string()), ..TillLookup::default() };
        return match org_store::find_till(c, org, &lookup).await? {
            Some(till) if till.is_active => Ok(Some(till.code)),
            _ => Err(BehavioralError::InvalidTill(format!(
                "Till code '{code}' is not a till of the org"
            ))),
        };
    }
    let Some(till) = principal.till else { return Ok(None) };
    let lookup = TillLookup { id: Some(till.0), ..TillLookup::default() };
    Ok(org_store::find_till(c, org, &lookup).await?.map(|t| t.code))
}

fn state(status: &str, message: &str, at: i64) -> Value {
    json!({"status": status, "message": message, "date": at})
}

/// Stores a posted event after checking it against its definition: unknown event 404, disabled
/// 1812, bad attributes 400/1802, unknown customer 8015 (customers are never created). A
/// duplicate (same de-duplication key as an earlier event) is stored, marked, and not sent to
/// the outbox. One transaction: event, attribute index, key, audit record, outbox entry.
#[tracing::instrument(skip_all, fields(org = principal.org.0, event = %input.event_name))]
pub async fn post_event(
    db: &Db,
    principal: &Principal,
    input: &PostInput,
) -> Result<PostOutcome, BehavioralError> {
    let org = principal.org;
    let received_at = now_millis();
    let mut tx = db.begin_write().await?;
    let def = load_definition(&mut tx, org, &input.event_name).await?;
    if !def.row.is_active {
        return Err(BehavioralError::Disabled(def.row.name.clone()));
    }
    let tz = org_zone(&mut tx, org).await?;
    let checked = check_event(&def.fields, &input.body, tz, received_at)?;
    let customer = match &checked.customer {
        Some((key, account, value)) => Some(
            resolve_customer(
                &mut tx,
                org,
                *key,
                account.as_ref(),
                value,
                input.country_code.as_deref(),
            )
            .await?,
        ),
        None => None,
    };
    let till_code = resolve_till(&mut tx, principal, checked.till_code.as_deref()).await?;
    let (source, account_id) = match def.fields.iter().find(|f| f.kind == FieldType::Customer) {
        Some(field) => match field.source_account() {
            Some(account) => (account.source.as_str().to_string(), account.account_id),
            None => ("INSTORE".to_string(), String::new()),
        },
        None => ("INSTORE".to_string(), String::new()),
    };

    let event_id = uuid::Uuid::new_v4().to_string();
    let is_duplicate = match dedup_key(&def.row.name, customer, &checked) {
        Some(key) => !store::claim_key(&mut tx, org, &key, &event_id, received_at).await?,
        None => false,
    };
    let now = now_millis();
    let mut states = vec![state("EVENT_PROCESSING_STARTED", &def.row.name, received_at)];
    for name in &checked.validated {
        states.push(state("EVENT_FIELD_VALIDATION_FINISHED", name, now));
    }
    states.push(state("EVENT_VALIDATION_FINISHED", &def.row.name, now));
    let (status, message) = if is_duplicate {
        states.push(state("EVENT_DUPLICATE", "Duplicate event: not sent to consumers", now));
        (STATUS_DUPLICATE, "Duplicate event: recorded, not processed")
    } else {
        for action in &def.actions {
            states.push(state("EVENT_CONSUMER_QUEUED", action.as_str(), now));
        }
        (STATUS_SUCCESS, "Event processed successfully")
    };
    let event_at = checked.event_at.unwrap_or(received_at);
    let attributes = to_json_text(&checked.attributes)?;
    let psi_attributes = to_json_text(&checked.psi_attributes)?;
    let states_text = to_json_text(&states)?;
    let input_request = to_json_text(&redact_psi(&def.fields, &input.body))?;
    let response_ms = i64::try_from(input.started_at.elapsed().as_millis()).unwrap_or(i64::MAX);
    let row = store::NewEvent {
        definition_id: def.row.id,
        event_name: &def.row.name,
        event_id: &event_id,
        request_id: &input.request_id,
        customer,
        source: &source,
        account_id: &account_id,
        till_code: till_code.as_deref(),
        webhook_id: input.webhook_id.as_deref(),
        external_event_id: checked.external_event_id.as_deref(),
        attributes: &attributes,
        psi_attributes: &psi_attributes,
        input_request: &input_request,
        is_duplicate,
        status,
        message,
        states: &states_text,
        event_at,
        received_at,
        response_ms,
    };
    let data_id = store::insert_event(&mut tx, org, &row).await?;
    store::insert_attributes(&mut tx, org, data_id, &checked.index).await?;
    let summary = json!({
        "eventName": def.row.name,
        "eventId": event_id,
        "requestId": input.request_id,
        "customerId": customer.map(|c| c.0),
        "isDuplicate": is_duplicate,
    });
    let change = Change {
        entity_type: "BEHAVIORAL_EVENT_DATA",
        entity_id: data_id,
        action: "POST",
        before: None,
        after: Some(summary),
    };
    audit::record(&mut tx, org, &AuditActor::from(principal), change).await?;
    if !is_duplicate {
        let actions: Vec<&str> = def.actions.iter().map(|a| a.as_str()).collect();
        let payload = json!({
            "eventName": def.row.name,
            "eventId": event_id,
            "definitionId": def.row.event_id,
            "requestId": input.request_id,
            "customerId": customer.map(|c| c.0),
            "source": source,
            "accountId": account_id,
            "tillCode": till_code,
            "externalEventId": checked.external_event_id,
            "eventDateTime": event_at,
            "receivedAt": received_at,
            "attributes": checked.attributes,
            "actions": actions,
        });
        let event = NewEvent {
            event_type: POSTED_EVENT_TYPE,
            entity_type: "BEHAVIORAL_EVENT_DATA",
            entity_id: data_id,
            payload,
        };
        events::raise(&mut tx, org, Some(principal), event).await?;
    }
    tx.commit().await?;
    Ok(PostOutcome {
        event_id,
        request_id: input.request_id.clone(),
        is_duplicate,
        message: message.to_string(),
    })
}

// ---------------------------------------------------------------- reads

/// Events posted under one request id (at most `limit`).
pub async fn events_by_request(
    c: &mut impl Connection,
    org: OrgId,
    request_id: &str,
    limit: i64,
) -> Result<Vec<EventRow>, BehavioralError> {
    Ok(store::events_by_request(c, org, request_id, limit).await?)
}

/// One page of events matching `filter`, and the total.
pub async fn list_events(
    c: &mut impl Connection,
    org: OrgId,
    filter: &EventFilter,
    order: Order,
    limit: i64,
    offset: i64,
) -> Result<(Vec<EventRow>, i64), BehavioralError> {
    let total = store::count_events(c, org, filter).await?;
    let rows = store::events(c, org, filter, order, limit, offset).await?;
    Ok((rows, total))
}

/// One page of events matching `filter` without a total (the event logs).
pub async fn page_events(
    c: &mut impl Connection,
    org: OrgId,
    filter: &EventFilter,
    order: Order,
    limit: i64,
    offset: i64,
) -> Result<Vec<EventRow>, BehavioralError> {
    Ok(store::events(c, org, filter, order, limit, offset).await?)
}

/// A customer of the org by id, else 8015.
pub async fn require_customer(
    c: &mut impl Connection,
    org: OrgId,
    customer: CustomerId,
) -> Result<(), BehavioralError> {
    match customer_store::get_customer(c, org, customer).await? {
        Some(_) => Ok(()),
        None => Err(CustomerError::NotFound.into()),
    }
}

#[cfg(test)]
mod tests {
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
