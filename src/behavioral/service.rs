//! Behavioral event rules: defining, updating and disabling events; storing a posted event
//! (checked by [`super::check`]) with its de-duplication key, audit record and `behavioral.event`
//! outbox entry in one transaction; and the reads.

use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::check::{check_event, dedup_key, redact_psi};

use super::model::{
    Action, BehavioralError, CustomerKey, EVENTS_PER_ORG_MAX, EventDefinition, FieldDef, FieldType,
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

/// The outbox type of every accepted (non-duplicate) posted event; the event's name is in the
/// payload (`eventName`), so one subscription sees every behavioral event.
pub const POSTED_EVENT_TYPE: &str = "behavioral.event";
/// Log statuses of a posted event.
pub const STATUS_SUCCESS: &str = "EVENT_SUCCESS";
pub const STATUS_DUPLICATE: &str = "EVENT_DUPLICATE";

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
