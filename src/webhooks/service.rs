//! Webhook rules: subscription writes (each audited in its own transaction), replay, the inbound
//! integrations of Add Webhook, and the fan-out that turns outbox events into deliveries.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde_json::{Value, json};

use super::model::{
    EventFilter, SUBSCRIPTIONS_PER_ORG_MAX, SubscriptionId, SubscriptionKind, WebhookError,
    WebhookUrl, new_secret, new_webhook_key, parse_name,
};
use super::store::{
    self, AttemptRow, DeliveryRow, FanOutTarget, LogFilter, LogSort, NewSubscriptionRow,
    OutboxEvent, SubscriptionRow,
};
use crate::audit::{self, AuditActor, Change};
use crate::auth::Principal;
use crate::db::{Db, DbError, Tx};
use crate::org::model::OrgId;

/// Most events one replay may re-deliver; a wider range is refused (narrow it).
pub const REPLAY_EVENTS_MAX: i64 = 1_000;

/// A new outbound subscription, parsed.
pub struct NewSubscription {
    pub name: Option<String>,
    pub url: WebhookUrl,
    pub events: EventFilter,
}

/// Changes to a subscription; absent fields stay as they are.
#[derive(Default)]
pub struct SubscriptionUpdate {
    pub name: Option<String>,
    pub url: Option<WebhookUrl>,
    pub events: Option<EventFilter>,
    pub active: Option<bool>,
}

/// What a replay re-delivers.
pub enum ReplayScope {
    /// One event, by id.
    Event(i64),
    /// The events that occurred in `[from, to]` (epoch milliseconds).
    Between { from: i64, to: i64 },
}

/// The audit view of a subscription: everything but the secret.
fn audit_state(row: &SubscriptionRow) -> Value {
    json!({"kind": row.kind, "name": row.name, "url": row.url,
        "events": EventFilter::from_stored(&row.event_types).patterns(),
        "active": row.is_active, "source": row.source, "tillCode": row.till_code})
}

async fn audit(
    tx: &mut Tx,
    org: OrgId,
    principal: &Principal,
    id: SubscriptionId,
    action: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), DbError> {
    let change = Change { entity_type: "WEBHOOK", entity_id: id.0, action, before, after };
    audit::record(tx, org, &AuditActor::from(principal), change).await
}

async fn insert_checked(
    tx: &mut Tx,
    org: OrgId,
    row: &NewSubscriptionRow<'_>,
    now: i64,
) -> Result<SubscriptionRow, WebhookError> {
    if store::count_subscriptions(tx, org).await? >= SUBSCRIPTIONS_PER_ORG_MAX {
        return Err(WebhookError::invalid(
            "webhooks",
            format!("an org may hold at most {SUBSCRIPTIONS_PER_ORG_MAX} webhooks"),
        ));
    }
    let id = store::insert_subscription(tx, org, row, now).await?;
    store::get_subscription(tx, org, id).await?.ok_or(WebhookError::NotFound)
}

/// Creates an outbound subscription with a new secret; the row returned carries it.
#[tracing::instrument(skip_all, fields(org = org.0))]
pub async fn create(
    db: &Db,
    org: OrgId,
    principal: &Principal,
    input: NewSubscription,
    now: i64,
) -> Result<SubscriptionRow, WebhookError> {
    let name = match &input.name {
        Some(name) => parse_name(name)?,
        None => input.url.host(),
    };
    let secret = new_secret();
    let events = input.events.to_stored();
    let row = NewSubscriptionRow {
        kind: SubscriptionKind::Outbound.as_str(),
        name: &name,
        url: input.url.as_str(),
        event_types: &events,
        secret: &secret,
        source: None,
        till_code: None,
        webhook_key: None,
    };
    let mut tx = db.begin_write().await?;
    let created = insert_checked(&mut tx, org, &row, now).await?;
    let id = SubscriptionId(created.id);
    audit(&mut tx, org, principal, id, "CREATE", None, Some(audit_state(&created))).await?;
    tx.commit().await?;
    Ok(created)
}

/// The inbound integration of `POST /v2/events/webhook`: a subscription row of kind INBOUND whose
/// URL (`{base_url}/v2/events/webhook/{key}`) is where the third party posts events.
#[tracing::instrument(skip_all, fields(org = org.0))]
pub async fn add_integration(
    db: &Db,
    org: OrgId,
    principal: &Principal,
    source: &str,
    till_code: &str,
    base_url: &str,
    now: i64,
) -> Result<SubscriptionRow, WebhookError> {
    let key = new_webhook_key();
    let url = format!("{}{}{key}", base_url.trim_end_matches('/'), super::INBOUND_PATH_PREFIX);
    let name = format!("{source} integration ({till_code})");
    let row = NewSubscriptionRow {
        kind: SubscriptionKind::Inbound.as_str(),
        name: &name,
        url: &url,
        event_types: "[]",
        secret: &new_secret(),
        source: Some(source),
        till_code: Some(till_code),
        webhook_key: Some(&key),
    };
    let mut tx = db.begin_write().await?;
    let till = crate::org::store::find_till(
        &mut tx,
        org,
        &crate::org::store::TillLookup { code: Some(till_code.to_string()), ..Default::default() },
    )
    .await?;
    if till.is_none() {
        return Err(WebhookError::UnknownTill);
    }
    let created = insert_checked(&mut tx, org, &row, now).await?;
    let id = SubscriptionId(created.id);
    audit(&mut tx, org, principal, id, "CREATE", None, Some(audit_state(&created))).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn list(db: &Db, org: OrgId) -> Result<Vec<SubscriptionRow>, WebhookError> {
    let mut conn = db.read().await?;
    Ok(store::list_subscriptions(&mut conn, org, SUBSCRIPTIONS_PER_ORG_MAX).await?)
}

pub async fn get(db: &Db, org: OrgId, id: SubscriptionId) -> Result<SubscriptionRow, WebhookError> {
    let mut conn = db.read().await?;
    store::get_subscription(&mut conn, org, id).await?.ok_or(WebhookError::NotFound)
}

/// Loads an outbound subscription for a write; an inbound one is refused.
async fn outbound_for_write(
    tx: &mut Tx,
    org: OrgId,
    id: SubscriptionId,
) -> Result<SubscriptionRow, WebhookError> {
    let row = store::get_subscription(tx, org, id).await?.ok_or(WebhookError::NotFound)?;
    if row.kind != SubscriptionKind::Outbound.as_str() {
        return Err(WebhookError::invalid(
            "id",
            "is an inbound integration (Add Webhook): it receives no deliveries",
        ));
    }
    Ok(row)
}

/// Changes name, URL, event types or active flag. A new URL closes the circuit (a new endpoint
/// starts afresh).
#[tracing::instrument(skip_all, fields(org = org.0, webhook = id.0))]
pub async fn update(
    db: &Db,
    org: OrgId,
    principal: &Principal,
    id: SubscriptionId,
    update: SubscriptionUpdate,
    now: i64,
) -> Result<SubscriptionRow, WebhookError> {
    let name = update.name.as_deref().map(parse_name).transpose()?;
    let mut tx = db.begin_write().await?;
    let before = outbound_for_write(&mut tx, org, id).await?;
    let url = update.url.as_ref().map(WebhookUrl::as_str).unwrap_or(&before.url);
    let events = update.events.as_ref().map(EventFilter::to_stored);
    let reset_circuit = url != before.url;
    store::update_subscription(
        &mut tx,
        org,
        id,
        name.as_deref().unwrap_or(&before.name),
        url,
        events.as_deref().unwrap_or(&before.event_types),
        update.active.unwrap_or(before.is_active),
        reset_circuit,
        now,
    )
    .await?;
    let after = store::get_subscription(&mut tx, org, id).await?.ok_or(WebhookError::NotFound)?;
    let (b, a) = (Some(audit_state(&before)), Some(audit_state(&after)));
    audit(&mut tx, org, principal, id, "UPDATE", b, a).await?;
    tx.commit().await?;
    Ok(after)
}

/// Replaces the secret; every later attempt (retries included) is signed with the new one.
#[tracing::instrument(skip_all, fields(org = org.0, webhook = id.0))]
pub async fn rotate_secret(
    db: &Db,
    org: OrgId,
    principal: &Principal,
    id: SubscriptionId,
    now: i64,
) -> Result<SubscriptionRow, WebhookError> {
    let mut tx = db.begin_write().await?;
    outbound_for_write(&mut tx, org, id).await?;
    store::set_secret(&mut tx, org, id, &new_secret(), now).await?;
    let after = store::get_subscription(&mut tx, org, id).await?.ok_or(WebhookError::NotFound)?;
    audit(&mut tx, org, principal, id, "ROTATE_SECRET", None, None).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a subscription (of either kind): it receives nothing more; pending deliveries are
/// dropped with it by the retention purge.
#[tracing::instrument(skip_all, fields(org = org.0, webhook = id.0))]
pub async fn delete(
    db: &Db,
    org: OrgId,
    principal: &Principal,
    id: SubscriptionId,
    now: i64,
) -> Result<(), WebhookError> {
    let mut tx = db.begin_write().await?;
    let before = store::get_subscription(&mut tx, org, id).await?.ok_or(WebhookError::NotFound)?;
    store::mark_deleted(&mut tx, org, id, now).await?;
    audit(&mut tx, org, principal, id, "DELETE", Some(audit_state(&before)), None).await?;
    tx.commit().await?;
    Ok(())
}

/// Delivers events to the subscription again (at most [`REPLAY_EVENTS_MAX`]): each becomes
/// PENDING with a fresh attempt budget. Only event types the subscription lists are replayed;
/// returns how many were.
#[tracing::instrument(skip_all, fields(org = org.0, webhook = id.0))]
pub async fn replay(
    db: &Db,
    org: OrgId,
    principal: &Principal,
    id: SubscriptionId,
    scope: ReplayScope,
    now: i64,
) -> Result<usize, WebhookError> {
    let mut tx = db.begin_write().await?;
    let subscription = outbound_for_write(&mut tx, org, id).await?;
    let filter = EventFilter::from_stored(&subscription.event_types);
    let events: Vec<OutboxEvent> = match scope {
        ReplayScope::Event(event_id) => {
            let event = store::get_event(&mut tx, org, event_id)
                .await?
                .ok_or(WebhookError::EventNotFound)?;
            if !filter.matches(&event.event_type) {
                return Err(WebhookError::invalid(
                    "eventId",
                    format!("'{}' is not among this webhook's events", event.event_type),
                ));
            }
            vec![event]
        }
        ReplayScope::Between { from, to } => {
            let events =
                store::events_between(&mut tx, org, from, to, REPLAY_EVENTS_MAX + 1).await?;
            if events.len() as i64 > REPLAY_EVENTS_MAX {
                return Err(WebhookError::invalid(
                    "from",
                    format!(
                        "the range holds more than {REPLAY_EVENTS_MAX} events: narrow it or \
                         replay in parts"
                    ),
                ));
            }
            events.into_iter().filter(|e| filter.matches(&e.event_type)).collect()
        }
    };
    for event in &events {
        store::reset_delivery(&mut tx, id.0, event, now).await?;
    }
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let after = json!({"replayedEventIds": ids});
    audit(&mut tx, org, principal, id, "REPLAY", None, Some(after)).await?;
    tx.commit().await?;
    Ok(events.len())
}

/// Turns up to `batch` outbox events into deliveries for the active outbound subscriptions of
/// their org whose filters match, and marks them fanned out, all in one transaction (so a crash
/// fans an event out again or not at all, and the unique (subscription, event) key keeps it to
/// one delivery). A subscription receives the events raised from its creation on. Returns how
/// many events were handled.
pub async fn fan_out(db: &Db, now: i64, batch: i64) -> Result<usize, DbError> {
    {
        let mut conn = db.read().await?;
        if !store::any_event_to_fan_out(&mut conn).await? {
            return Ok(0);
        }
    }
    let mut tx = db.begin_write().await?;
    let events = store::lock_events_to_fan_out(&mut tx, batch).await?;
    let mut targets: HashMap<i64, Vec<(FanOutTarget, EventFilter)>> = HashMap::new();
    for event in &events {
        let candidates = match targets.entry(event.org_id) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let rows = store::active_outbound(&mut tx, OrgId(event.org_id)).await?;
                entry.insert(
                    rows.into_iter()
                        .map(|t| {
                            let filter = EventFilter::from_stored(&t.event_types);
                            (t, filter)
                        })
                        .collect(),
                )
            }
        };
        for (target, filter) in candidates.iter() {
            if event.occurred_at >= target.created_at && filter.matches(&event.event_type) {
                // A paused webhook's new deliveries wait for the end of the pause.
                let due = target.paused_until.map_or(now, |until| until.max(now));
                store::insert_delivery(&mut tx, target.id, event, due, now).await?;
            }
        }
    }
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    store::mark_fanned_out(&mut tx, &ids, now).await?;
    tx.commit().await?;
    Ok(events.len())
}

// ---------------------------------------------------------------- event notification logs

/// Most attempts shown per delivery in the per-event log.
pub const ATTEMPT_LOG_MAX: i64 = 50;
/// Most deliveries shown for one event (one per webhook, deleted webhooks' included until purged).
pub const EVENT_DELIVERIES_MAX: i64 = 200;

/// One page of the org's deliveries matching `filter`, and the total.
pub async fn logs(
    db: &Db,
    org: OrgId,
    filter: &LogFilter,
    sort: LogSort,
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<DeliveryRow>, i64), WebhookError> {
    let mut conn = db.read().await?;
    Ok(store::deliveries(&mut conn, org, filter, sort, descending, limit, offset).await?)
}

/// The deliveries of one of the org's events (one per webhook), each with its attempts.
pub async fn event_logs(
    db: &Db,
    org: OrgId,
    event_id: i64,
) -> Result<Vec<(DeliveryRow, Vec<AttemptRow>)>, WebhookError> {
    let mut conn = db.read().await?;
    store::get_event(&mut conn, org, event_id).await?.ok_or(WebhookError::EventNotFound)?;
    let filter = LogFilter { event_id: Some(event_id), ..LogFilter::default() };
    let (rows, _) = store::deliveries(
        &mut conn,
        org,
        &filter,
        LogSort::CreatedAt,
        false,
        EVENT_DELIVERIES_MAX,
        0,
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let attempts = store::attempts_of(&mut conn, org, row.id, ATTEMPT_LOG_MAX).await?;
        out.push((row, attempts));
    }
    Ok(out)
}
