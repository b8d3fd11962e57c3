//! Task rules: adding and updating tasks with their entries (one per executor), statuses and
//! the org's status mapping, the log of every status change, reminders (created inline or on
//! their own, upserted by id), and the reads behind the Task and Store APIs.
//!
//! Every write is one transaction with its audit records and outbox events. Each item of a
//! batch runs on its own, so a bad item never blocks or half-writes a good one.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::model::{
    ACTION_TYPES, BODY_LENGTH_MAX, CANCELLED_BY_REQUEST, CANCELLED_TASK_CLOSED,
    DESCRIPTION_LENGTH_MAX, EXECUTORS_MAX, EntryFields, ExecutorType, InternalStatus,
    LOCAL_ID_LENGTH_MAX, MAPPINGS_MAX, MappingFields, POSSIBLE_STATUSES_MAX, REMARKS_LENGTH_MAX,
    REMINDERS_PER_TASK_MAX, ReminderFields, TAGS_LENGTH_MAX, TASK_CLOSED, TASK_EXPIRED, TASK_OPEN,
    TASK_TYPES_CONFIG, TASK_TYPES_DEFAULT, TEMPLATE_LENGTH_MAX, TITLE_LENGTH_MAX, TaskError,
    TaskFields, TaskId, actor_name, check_template, check_text, normalise_status,
};
use super::store::{
    self, By, EntryRow, LogFilter, LogRow, MappingRow, NewEntry, ReminderFilter, ReminderRow,
    SendRow, TaskFilter, TaskRow, TaskValues,
};
use crate::audit::{self, AuditActor, Change};
use crate::auth::{Actor, Principal};
use crate::customers::model::CustomerId;
use crate::customers::store as customer_store;
use crate::db::{Connection, Db, DbError, now_millis};
use crate::error::Code;
use crate::events::{self, NewEvent};
use crate::org::model::{OrgId, Store, StoreId};
use crate::org::store as org_store;
use crate::staff::model::STATUS_ACTIVE;
use crate::staff::service::{StoreScope, scope_of};
use crate::staff::store::{self as staff_store, StaffFilter, StaffRow};

/// Audit and event entities.
pub const TASK_ENTITY: &str = "TASK";
pub const ENTRY_ENTITY: &str = "TASK_ENTRY";
pub const REMINDER_ENTITY: &str = "TASK_REMINDER";
pub const MAPPING_ENTITY: &str = "TASK_STATUS_MAPPING";

/// The template of a reminder created without one.
pub const DEFAULT_REMINDER_TEMPLATE: &str = "Reminder: {task_title} ({store_name})";

// ---------------------------------------------------------------- the caller

/// Who calls the Task API: the principal, the stores it works with, and how it is named in
/// entries, logs and reminders.
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub scope: StoreScope,
    /// The account of a staff access token.
    pub staff: Option<i64>,
    by_type: &'static str,
    by_id: i64,
    by_name: String,
}

impl Caller<'_> {
    pub fn by(&self) -> By<'_> {
        (self.by_type, Some(self.by_id), &self.by_name)
    }

    pub fn org(&self) -> OrgId {
        self.principal.org
    }

    fn actor(&self) -> AuditActor {
        AuditActor::from(self.principal)
    }
}

/// Resolves the caller's scope (see [`StoreScope`]).
pub async fn caller<'a>(db: &Db, principal: &'a Principal) -> Result<Caller<'a>, DbError> {
    let mut conn = db.read().await?;
    let scope = scope_of(&mut conn, principal).await?;
    let (by_type, by_id) = principal.actor.audit_identity();
    let staff = match &principal.actor {
        Actor::Staff { id, .. } => Some(*id),
        _ => None,
    };
    Ok(Caller { principal, scope, staff, by_type, by_id, by_name: actor_name(&principal.actor) })
}

// ---------------------------------------------------------------- stores, zones and dates

/// The time zone of a store: its own, else the org's.
pub async fn store_zone(c: &mut impl Connection, org: OrgId, store: &Store) -> Result<Tz, DbError> {
    let zone = match store.timezone.as_deref().filter(|z| !z.is_empty()) {
        Some(z) => z.to_string(),
        None => org_store::get_org(c, org).await?.map(|o| o.timezone).unwrap_or_default(),
    };
    Ok(zone.parse().unwrap_or(chrono_tz::UTC))
}

fn parse_number(field: &str, raw: &str, code: Code) -> Result<i64, TaskError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| TaskError::new(code, format!("{field} '{raw}' is not a valid id")))
}

/// The store a write goes to: the caller's own store, or (for a caller without one) the
/// `store_id` it passes, which must be one of its stores.
async fn store_for_write(
    c: &mut impl Connection,
    caller: &Caller<'_>,
    store_id: Option<&str>,
) -> Result<Store, TaskError> {
    let org = caller.org();
    let requested = store_id.map(|s| parse_number("store_id", s, Code::TaskInvalidParameters));
    let id = match (caller.scope.store(), requested.transpose()?) {
        (Some(own), None) => own,
        (Some(own), Some(id)) if id == own => own,
        (Some(_), Some(id)) => {
            return Err(TaskError::invalid(format!("store_id {id} is not the caller's store")));
        }
        (None, None) => {
            return Err(TaskError::new(
                Code::TaskStoreIdRequired,
                "A user that is not a till must pass the store_id of the task",
            ));
        }
        (None, Some(id)) => id,
    };
    org_store::get_store(c, org, StoreId(id)).await?.filter(|s| caller.scope.covers(s)).ok_or_else(
        || TaskError::invalid(format!("store_id {id} is not a store the caller works with")),
    )
}

/// A `YYYY-MM-DD HH:MM:SS` wall-clock time in the store's zone.
pub fn parse_local(field: &str, raw: &str, tz: Tz, code: Code) -> Result<i64, TaskError> {
    const FORMATS: [&str; 3] = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw.trim(), f).ok())
        .map(|local| crate::transactions::time::local_to_millis(local, tz))
        .ok_or_else(|| {
            TaskError::new(code, format!("{field} '{raw}' is not a date-time YYYY-MM-DD HH:MM:SS"))
        })
}

/// An instant as `YYYY-MM-DD HH:MM:SS` in a zone.
pub fn local_time(millis: i64, tz: Tz) -> String {
    crate::transactions::time::v1_time(millis, tz)
}

/// Checks `start < end < expiry` (5208, 5209) and returns the instant the task expires.
fn check_dates(start: i64, end: i64, expiry: Option<i64>) -> Result<i64, TaskError> {
    if end <= start {
        return Err(TaskError::new(Code::TaskEndBeforeStart, "end_date must be after start_date"));
    }
    match expiry {
        Some(expiry) if expiry <= end => {
            Err(TaskError::new(Code::TaskExpiryBeforeEnd, "expiry_date must be after end_date"))
        }
        Some(expiry) => Ok(expiry),
        None => Ok(end),
    }
}

// ---------------------------------------------------------------- statuses

/// The org's statuses: the internal ones and the mapped ones.
pub struct Statuses {
    mapped: HashMap<String, InternalStatus>,
}

impl Statuses {
    pub async fn load(c: &mut impl Connection, org: OrgId) -> Result<Statuses, DbError> {
        let mapped = store::mappings(c, org)
            .await?
            .into_iter()
            .filter_map(|m| InternalStatus::parse(&m.internal_status).map(|i| (m.status, i)))
            .collect();
        Ok(Statuses { mapped })
    }

    /// What a status stands for: its mapping, else itself when internal; `None` otherwise.
    fn resolve(&self, status: &str) -> Option<InternalStatus> {
        self.mapped.get(status).copied().or_else(|| InternalStatus::parse(status))
    }

    /// Checks an entry status: it must be one of the task's `possible_statuses` or resolve
    /// through the mapping (5207). A custom status of the task that the org did not map counts
    /// as open work.
    fn check(&self, possible: &[String], raw: &str) -> Result<(String, InternalStatus), TaskError> {
        let status = normalise_status(raw)?;
        match self.resolve(&status) {
            Some(internal) => Ok((status, internal)),
            None if possible.contains(&status) => Ok((status, InternalStatus::Open)),
            None => Err(TaskError::new(
                Code::TaskInvalidStatus,
                format!(
                    "Invalid status passed: '{status}' is neither a possible status of the task nor a mapped status"
                ),
            )),
        }
    }

    /// The status new entries start in: `OPEN`, unless the task's possible statuses leave it
    /// out (then their first).
    fn initial(&self, possible: &[String]) -> (String, InternalStatus) {
        match possible.first() {
            Some(first) if !possible.iter().any(|p| p == "OPEN") => {
                (first.clone(), self.resolve(first).unwrap_or(InternalStatus::Open))
            }
            _ => ("OPEN".into(), InternalStatus::Open),
        }
    }
}

fn parse_possible(list: &[String]) -> Result<Vec<String>, TaskError> {
    let mut out: Vec<String> = Vec::new();
    for raw in list {
        let status = normalise_status(raw)?;
        if !out.contains(&status) {
            out.push(status);
        }
    }
    if out.len() > POSSIBLE_STATUSES_MAX {
        return Err(TaskError::invalid(format!(
            "possible_statuses lists at most {POSSIBLE_STATUSES_MAX} statuses"
        )));
    }
    Ok(out)
}

fn split_possible(csv: &str) -> Vec<String> {
    csv.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

// ---------------------------------------------------------------- vocabularies

/// The task types the org accepts (its `CONF_TASK_TYPES`, else the defaults).
pub async fn task_types(c: &mut impl Connection, org: OrgId) -> Result<Vec<String>, DbError> {
    let configured = crate::fields::store::config_value(c, org, TASK_TYPES_CONFIG).await?;
    let list: Vec<String> = configured
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|t| t.trim().to_ascii_uppercase())
        .filter(|t| !t.is_empty())
        .take(100)
        .collect();
    Ok(if list.is_empty() {
        TASK_TYPES_DEFAULT.iter().map(|t| t.to_string()).collect()
    } else {
        list
    })
}

/// Everything a client needs to build a task screen.
pub struct Metadata {
    pub types: Vec<String>,
    pub statuses: Vec<String>,
    pub mappings: Vec<MappingRow>,
}

pub async fn metadata(db: &Db, org: OrgId) -> Result<Metadata, DbError> {
    let mut conn = db.read().await?;
    let types = task_types(&mut conn, org).await?;
    let mappings = store::mappings(&mut conn, org).await?;
    let mut statuses: Vec<String> =
        InternalStatus::ALL.iter().map(|s| s.as_str().to_string()).collect();
    for m in &mappings {
        if !statuses.contains(&m.status) {
            statuses.push(m.status.clone());
        }
    }
    Ok(Metadata { types, statuses, mappings })
}

// ---------------------------------------------------------------- executors and creators

/// True when an account works in the store (its own, or its zone's or concept's).
fn works_in(staff: &StaffRow, store: &Store) -> bool {
    match staff.scope_type.as_str() {
        "STORE" => staff.store_id == Some(store.id),
        "ZONE" => staff.zone_id == Some(store.zone_id),
        "CONCEPT" => staff.concept_id == Some(store.concept_id),
        _ => false,
    }
}

/// A live account by id (a number) or username.
async fn find_staff(
    c: &mut impl Connection,
    org: OrgId,
    key: &str,
) -> Result<Option<StaffRow>, DbError> {
    match key.trim().parse::<i64>() {
        Ok(id) => staff_store::staff_by_id(c, org, id).await,
        Err(_) => staff_store::staff_by_username(c, org, &key.trim().to_ascii_lowercase()).await,
    }
}

/// The executors of a task: every active account of the type working in the store
/// (`execute_by_all`), or the listed ones, which must be such accounts (5212) or registered
/// customers (5213).
async fn resolve_executors(
    c: &mut impl Connection,
    org: OrgId,
    store: &Store,
    kind: ExecutorType,
    all: bool,
    ids: &[String],
) -> Result<Vec<i64>, TaskError> {
    let staff_ok = |s: &StaffRow| {
        s.status == STATUS_ACTIVE
            && works_in(s, store)
            && (kind != ExecutorType::Cashier || s.staff_type == "CASHIER")
    };
    if all {
        if kind == ExecutorType::Customer {
            return Err(TaskError::invalid(
                "execute_by_all cannot be used with customer executors: list executable_by_ids",
            ));
        }
        let filter = StaffFilter::WorkingIn {
            store: store.id,
            zone: store.zone_id,
            concept: store.concept_id,
        };
        let staff_type = (kind == ExecutorType::Cashier).then_some("CASHIER");
        let (rows, _) =
            staff_store::list_staff(c, org, filter, staff_type, true, EXECUTORS_MAX as i64 + 1, 0)
                .await?;
        let ids: Vec<i64> = rows.iter().filter(|s| staff_ok(s)).map(|s| s.id).collect();
        if ids.len() > EXECUTORS_MAX {
            return Err(TaskError::invalid(format!(
                "execute_by_all reaches more than {EXECUTORS_MAX} executors"
            )));
        }
        if ids.is_empty() {
            return Err(TaskError::new(
                Code::TaskInvalidExecutor,
                format!("No active {} works in store {}", kind.key(), store.code),
            ));
        }
        return Ok(ids);
    }
    if ids.is_empty() {
        return Err(TaskError::new(
            Code::TaskInvalidExecutor,
            "executable_by_ids is required unless execute_by_all is true",
        ));
    }
    if ids.len() > EXECUTORS_MAX {
        return Err(TaskError::invalid(format!("At most {EXECUTORS_MAX} executors per task")));
    }
    let mut out: Vec<i64> = Vec::with_capacity(ids.len());
    for key in ids {
        let id = if kind == ExecutorType::Customer {
            let unregistered = || {
                TaskError::new(
                    Code::TaskInvalidCustomerOrCreator,
                    format!("Customer '{key}' is not registered in this org"),
                )
            };
            let id: i64 = key.trim().parse().map_err(|_| unregistered())?;
            customer_store::get_customer(c, org, CustomerId(id)).await?.ok_or_else(unregistered)?;
            id
        } else {
            find_staff(c, org, key).await?.filter(|s| staff_ok(s)).map(|s| s.id).ok_or_else(
                || {
                    TaskError::new(
                        Code::TaskInvalidExecutor,
                        format!(
                            "Invalid executor id '{key}': no active {} of store {}",
                            kind.key(),
                            store.code
                        ),
                    )
                },
            )?
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The creator: a live associate or cashier of the org (5213); a staff token creates as
/// itself and may leave `creator` out.
async fn resolve_creator(
    c: &mut impl Connection,
    caller: &Caller<'_>,
    kind: Option<&str>,
    id: Option<&str>,
) -> Result<(String, i64), TaskError> {
    let invalid = |why: String| TaskError::new(Code::TaskInvalidCustomerOrCreator, why);
    let (kind, id) = match (kind, id, caller.staff) {
        (None, None, Some(own)) => return Ok(("associate".into(), own)),
        (_, None, _) => return Err(invalid("creator.id is required".into())),
        (kind, Some(id), _) => (kind.unwrap_or("associate"), id),
    };
    let kind = match ExecutorType::parse(kind) {
        Some(k) if k.is_staff() => k,
        _ => {
            return Err(invalid(format!(
                "Invalid creator type '{kind}': use associate or cashier"
            )));
        }
    };
    let staff = find_staff(c, caller.org(), id)
        .await?
        .filter(|s| s.status == STATUS_ACTIVE)
        .ok_or_else(|| invalid(format!("Invalid created-by id '{id}'")))?;
    if caller.staff.is_some_and(|own| own != staff.id) {
        return Err(invalid("A staff access token creates tasks as its own associate".into()));
    }
    Ok((kind.key().to_string(), staff.id))
}

// ---------------------------------------------------------------- reminders

/// A checked reminder change.
enum ReminderPlan {
    Create { remind_at: i64, template: String },
    Update { id: i64, remind_at: Option<i64>, template: Option<String> },
    Cancel { id: i64 },
}

fn reminder_error(message: impl Into<String>) -> TaskError {
    TaskError::new(Code::TaskSaveFailed, message)
}

fn plan_reminder(r: &ReminderFields, tz: Tz) -> Result<ReminderPlan, TaskError> {
    let id = r.id.as_deref().map(|raw| parse_number("reminder id", raw, Code::TaskSaveFailed));
    let id = id.transpose()?;
    let remind_at = r
        .time
        .as_deref()
        .map(|t| parse_local("reminder time", t, tz, Code::TaskSaveFailed))
        .transpose()?;
    if let Some(template) = &r.template {
        check_template("reminder template", template, Code::TaskSaveFailed)?;
    }
    Ok(match (id, r.create) {
        (Some(id), false) => ReminderPlan::Cancel { id },
        (None, false) => {
            return Err(TaskError::invalid("create=false needs the id of the reminder to cancel"));
        }
        (Some(id), true) => ReminderPlan::Update { id, remind_at, template: r.template.clone() },
        (None, true) => ReminderPlan::Create {
            remind_at: remind_at.ok_or_else(|| reminder_error("reminder time is required"))?,
            template: r.template.clone().unwrap_or_else(|| DEFAULT_REMINDER_TEMPLATE.into()),
        },
    })
}

fn check_window(task: &TaskValues, remind_at: i64) -> Result<(), TaskError> {
    if remind_at < task.start_at || remind_at > task.expires_at {
        return Err(reminder_error(
            "reminder time must lie between the task's start_date and its expiry",
        ));
    }
    Ok(())
}

/// Applies checked reminder changes to a task, in the caller's transaction; returns the ids
/// touched.
async fn apply_reminders(
    c: &mut impl Connection,
    caller: &Caller<'_>,
    task_id: i64,
    task: &TaskValues,
    plans: &[ReminderPlan],
    now: i64,
) -> Result<Vec<i64>, TaskError> {
    let org = caller.org();
    let creates = plans.iter().filter(|p| matches!(p, ReminderPlan::Create { .. })).count() as i64;
    if creates > 0
        && store::count_reminders(c, org, task_id).await? + creates > REMINDERS_PER_TASK_MAX
    {
        return Err(reminder_error(format!(
            "A task holds at most {REMINDERS_PER_TASK_MAX} reminders"
        )));
    }
    let mut ids = Vec::with_capacity(plans.len());
    for plan in plans {
        let (id, action, after) = match plan {
            ReminderPlan::Create { remind_at, template } => {
                check_window(task, *remind_at)?;
                let id =
                    store::insert_reminder(c, org, task_id, *remind_at, template, caller.by(), now)
                        .await?;
                (
                    id,
                    "CREATE",
                    json!({"taskId": task_id, "remindAt": remind_at, "template": template}),
                )
            }
            ReminderPlan::Update { id, remind_at, template } => {
                let current = store::reminder(c, org, *id)
                    .await?
                    .filter(|r| r.task_id == task_id)
                    .ok_or_else(|| {
                        reminder_error(format!("Reminder {id} is not a reminder of task {task_id}"))
                    })?;
                let remind_at = remind_at.unwrap_or(current.remind_at);
                let template = template.clone().unwrap_or(current.template);
                check_window(task, remind_at)?;
                if !store::update_reminder(c, org, *id, remind_at, &template, now).await? {
                    return Err(reminder_error(format!(
                        "Reminder {id} was already {}",
                        current.status.to_ascii_lowercase()
                    )));
                }
                (
                    *id,
                    "UPDATE",
                    json!({"taskId": task_id, "remindAt": remind_at, "template": template}),
                )
            }
            ReminderPlan::Cancel { id } => {
                let current = store::reminder(c, org, *id)
                    .await?
                    .filter(|r| r.task_id == task_id)
                    .ok_or_else(|| {
                        reminder_error(format!("Reminder {id} is not a reminder of task {task_id}"))
                    })?;
                if !store::cancel_reminder(c, org, *id, CANCELLED_BY_REQUEST, now).await? {
                    return Err(reminder_error(format!(
                        "Reminder {id} was already {}",
                        current.status.to_ascii_lowercase()
                    )));
                }
                (*id, "CANCEL", json!({"taskId": task_id, "reason": CANCELLED_BY_REQUEST}))
            }
        };
        let change = Change {
            entity_type: REMINDER_ENTITY,
            entity_id: id,
            action,
            before: None,
            after: Some(after),
        };
        audit::record(c, org, &caller.actor(), change).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Cancels the pending reminders of a task whose entries are all closed.
async fn cancel_if_closed(
    c: &mut impl Connection,
    caller: &Caller<'_>,
    task_id: i64,
    now: i64,
) -> Result<(), TaskError> {
    let org = caller.org();
    let entries = store::entries(c, org, task_id).await?;
    if entries.is_empty() || entries.iter().any(|e| e.internal_status != "CLOSED") {
        return Ok(());
    }
    for id in store::cancel_pending_of_task(c, org, task_id, CANCELLED_TASK_CLOSED, now).await? {
        record_reminder_cancelled(
            c,
            org,
            Some(caller.principal),
            id,
            task_id,
            CANCELLED_TASK_CLOSED,
        )
        .await?;
    }
    Ok(())
}

/// The audit record and `task.reminder_cancelled` event of a cancelled reminder.
pub async fn record_reminder_cancelled(
    c: &mut impl Connection,
    org: OrgId,
    principal: Option<&Principal>,
    id: i64,
    task_id: i64,
    reason: &str,
) -> Result<(), DbError> {
    let actor = principal.map(AuditActor::from).unwrap_or_else(AuditActor::system);
    let after = json!({"taskId": task_id, "status": "CANCELLED", "reason": reason});
    let change = Change {
        entity_type: REMINDER_ENTITY,
        entity_id: id,
        action: "CANCEL",
        before: None,
        after: Some(after.clone()),
    };
    audit::record(c, org, &actor, change).await?;
    let event = NewEvent {
        event_type: "task.reminder_cancelled",
        entity_type: REMINDER_ENTITY,
        entity_id: id,
        payload: json!({"reminderId": id, "taskId": task_id, "reason": reason}),
    };
    events::raise(c, org, principal, event).await?;
    Ok(())
}

// ---------------------------------------------------------------- entries

/// Writes an entry (or its new status) and its log row, and raises the status event.
async fn log_entry(
    c: &mut impl Connection,
    caller: &Caller<'_>,
    entry: &EntryRow,
    old_status: Option<&str>,
    now: i64,
) -> Result<(), TaskError> {
    let org = caller.org();
    store::insert_log(c, org, entry.task_id, entry, old_status, caller.by(), now).await?;
    if let Some(old) = old_status {
        let payload = json!({"taskId": entry.task_id, "entryId": entry.id,
            "executorType": entry.executor_type, "executorId": entry.executor_id,
            "oldStatus": old, "newStatus": entry.status, "internalStatus": entry.internal_status,
            "remarks": entry.remarks, "updatedBy": caller.by_name});
        let change = Change {
            entity_type: ENTRY_ENTITY,
            entity_id: entry.id,
            action: "STATUS_CHANGE",
            before: Some(json!({"status": old})),
            after: Some(json!({"status": entry.status, "internalStatus": entry.internal_status,
                "remarks": entry.remarks})),
        };
        audit::record(c, org, &caller.actor(), change).await?;
        let event = NewEvent {
            event_type: "task.entry_status_changed",
            entity_type: ENTRY_ENTITY,
            entity_id: entry.id,
            payload,
        };
        events::raise(c, org, Some(caller.principal), event).await?;
    }
    Ok(())
}

/// Creates the entries of new executors, each with its initial status, and logs them.
#[allow(clippy::too_many_arguments)]
async fn add_entries(
    c: &mut impl Connection,
    caller: &Caller<'_>,
    task_id: i64,
    kind: ExecutorType,
    executors: &[i64],
    initial: &[(String, InternalStatus)],
    default: &(String, InternalStatus),
    now: i64,
) -> Result<(), TaskError> {
    let org = caller.org();
    for (index, executor) in executors.iter().enumerate() {
        let (status, internal) = initial.get(index).unwrap_or(default);
        let new = NewEntry {
            executor_type: kind.as_str(),
            executor_id: *executor,
            status,
            internal_status: internal.as_str(),
            remarks: "",
        };
        let id = store::insert_entry(c, org, task_id, &new, caller.by(), now).await?;
        let entry = EntryRow {
            id,
            task_id,
            executor_type: kind.as_str().into(),
            executor_id: *executor,
            executor_name: None,
            status: status.clone(),
            internal_status: internal.as_str().into(),
            remarks: String::new(),
            updated_by_name: caller.by_name.clone(),
            created_at: now,
            updated_at: now,
        };
        log_entry(c, caller, &entry, None, now).await?;
    }
    Ok(())
}

/// The initial status of each executor, by position in `executable_by_ids` (or by
/// `executor_id` when an entry names one); 5207 for a status the task does not allow.
async fn initial_statuses(
    c: &mut impl Connection,
    org: OrgId,
    statuses: &Statuses,
    possible: &[String],
    executors: &[i64],
    entries: &[EntryFields],
) -> Result<Vec<(String, InternalStatus)>, TaskError> {
    let default = statuses.initial(possible);
    let mut out = vec![default; executors.len()];
    for (index, entry) in entries.iter().enumerate() {
        let Some(raw) = &entry.status else { continue };
        let checked = statuses.check(possible, raw)?;
        let position = match &entry.executor_id {
            Some(key) => {
                let id = match key.trim().parse::<i64>() {
                    Ok(id) => Some(id),
                    Err(_) => find_staff(c, org, key).await?.map(|s| s.id),
                };
                executors.iter().position(|e| Some(*e) == id).ok_or_else(|| {
                    TaskError::invalid(format!(
                        "entries.entry executor_id '{key}' is not an executor of the task"
                    ))
                })?
            }
            None => index,
        };
        if position >= out.len() {
            return Err(TaskError::invalid("entries.entry lists more entries than executors"));
        }
        out[position] = checked;
    }
    Ok(out)
}

// ---------------------------------------------------------------- add

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, TaskError> {
    value.as_deref().ok_or_else(|| TaskError::invalid(format!("{field} is required")))
}

/// Checks the plain text fields of a task (5205).
fn check_texts(f: &TaskFields) -> Result<(), TaskError> {
    if let Some(title) = &f.title {
        check_text("title", title, TITLE_LENGTH_MAX)?;
    }
    if let Some(body) = &f.body {
        check_text("body", body, BODY_LENGTH_MAX)?;
    }
    if let Some(tags) = &f.tags {
        check_text("tags", tags, TAGS_LENGTH_MAX)?;
    }
    if let Some(local_id) = &f.local_id {
        check_text("local_id", local_id, LOCAL_ID_LENGTH_MAX)?;
    }
    if let Some(action) = &f.action_type
        && !ACTION_TYPES.contains(&action.to_ascii_lowercase().as_str())
    {
        return Err(TaskError::invalid(format!(
            "action.type '{action}' is not one of {}",
            ACTION_TYPES.join(", ")
        )));
    }
    // The action is the executor's to carry out (a POS app fills its own placeholders), so
    // its template is only bounded; reminder templates, which Perks renders, are checked.
    if let Some(template) = &f.action_template {
        check_text("action.template", template, TEMPLATE_LENGTH_MAX)?;
    }
    Ok(())
}

async fn check_type(c: &mut impl Connection, org: OrgId, raw: &str) -> Result<String, TaskError> {
    let kind = raw.trim().to_ascii_uppercase();
    let types = task_types(c, org).await?;
    if !types.contains(&kind) {
        return Err(TaskError::invalid(format!("type '{raw}' is not one of {}", types.join(", "))));
    }
    Ok(kind)
}

/// Adds one task with its entries and reminders, in one transaction.
#[tracing::instrument(skip_all, fields(org = caller.org().0))]
pub async fn add(db: &Db, caller: &Caller<'_>, f: &TaskFields) -> Result<TaskId, TaskError> {
    let org = caller.org();
    let now = now_millis();
    check_texts(f)?;
    let mut tx = db.begin_write().await?;
    let store = store_for_write(&mut tx, caller, f.store_id.as_deref()).await?;
    let tz = store_zone(&mut tx, org, &store).await?;
    let title = required("title", &f.title)?;
    let task_type = check_type(&mut tx, org, required("type", &f.task_type)?).await?;
    let start = parse_local(
        "start_date",
        required("start_date", &f.start_date)?,
        tz,
        Code::TaskInvalidParameters,
    )?;
    let end = parse_local(
        "end_date",
        required("end_date", &f.end_date)?,
        tz,
        Code::TaskInvalidParameters,
    )?;
    let expiry = f
        .expiry_date
        .as_deref()
        .map(|d| parse_local("expiry_date", d, tz, Code::TaskInvalidParameters))
        .transpose()?;
    let expires_at = check_dates(start, end, expiry)?;
    let (creator_type, creator) =
        resolve_creator(&mut tx, caller, f.creator_type.as_deref(), f.creator_id.as_deref())
            .await?;
    let all = f.execute_by_all.unwrap_or(false);
    let kind = match f.executable_by_type.as_deref() {
        Some(raw) => ExecutorType::parse(raw).ok_or_else(|| {
            TaskError::invalid(format!(
                "executable_by_type '{raw}': use associate, cashier or customer"
            ))
        })?,
        None if all => ExecutorType::Associate,
        None => return Err(TaskError::invalid("executable_by_type is required")),
    };
    let possible = parse_possible(f.possible_statuses.as_deref().unwrap_or_default())?;
    let statuses = Statuses::load(&mut tx, org).await?;
    let executors = resolve_executors(
        &mut tx,
        org,
        &store,
        kind,
        all,
        f.executable_by_ids.as_deref().unwrap_or_default(),
    )
    .await?;
    let initial =
        initial_statuses(&mut tx, org, &statuses, &possible, &executors, &f.entries).await?;
    let plans: Vec<ReminderPlan> =
        f.reminders.iter().map(|r| plan_reminder(r, tz)).collect::<Result<_, _>>()?;
    if plans.iter().any(|p| !matches!(p, ReminderPlan::Create { .. })) {
        return Err(reminder_error("A new task's reminders cannot name an id"));
    }
    let values = TaskValues {
        store_id: store.id,
        till_id: caller.principal.till.map(|t| t.0),
        local_id: f.local_id.clone(),
        title: title.to_string(),
        body: f.body.clone().unwrap_or_default(),
        task_type,
        action_type: f.action_type.as_deref().map(str::to_ascii_lowercase),
        action_template: f.action_template.clone(),
        creator_type,
        creator_staff_id: Some(creator),
        execute_by_all: all,
        executable_by_type: kind.key().to_string(),
        possible_statuses: possible.join(","),
        tags: f.tags.clone().unwrap_or_default(),
        start_at: start,
        end_at: end,
        expiry_at: expiry,
        expires_at,
    };
    let id = store::insert_task(&mut tx, org, &values, caller.by(), now).await?;
    let default = statuses.initial(&possible);
    add_entries(&mut tx, caller, id, kind, &executors, &initial, &default, now).await?;
    apply_reminders(&mut tx, caller, id, &values, &plans, now).await?;
    let after = task_state(&values, executors.len());
    let change = Change {
        entity_type: TASK_ENTITY,
        entity_id: id,
        action: "CREATE",
        before: None,
        after: Some(after.clone()),
    };
    audit::record(&mut tx, org, &caller.actor(), change).await?;
    let event = NewEvent {
        event_type: "task.created",
        entity_type: TASK_ENTITY,
        entity_id: id,
        payload: json!({"taskId": id, "task": after}),
    };
    events::raise(&mut tx, org, Some(caller.principal), event).await?;
    tx.commit().await?;
    Ok(TaskId(id))
}

/// A task as the audit log and events show it.
fn task_state(v: &TaskValues, executors: usize) -> Value {
    json!({"storeId": v.store_id, "localId": v.local_id, "title": v.title, "type": v.task_type,
        "startAt": v.start_at, "endAt": v.end_at, "expiryAt": v.expiry_at,
        "actionType": v.action_type, "creatorStaffId": v.creator_staff_id,
        "executeByAll": v.execute_by_all, "executableByType": v.executable_by_type,
        "executors": executors, "possibleStatuses": v.possible_statuses, "tags": v.tags})
}

// ---------------------------------------------------------------- update

/// A task the caller may see, by id (5204 otherwise).
async fn visible_task(
    c: &mut impl Connection,
    caller: &Caller<'_>,
    id: i64,
) -> Result<(TaskRow, Store), TaskError> {
    let unknown = || TaskError::new(Code::TaskIdInvalid, format!("Task {id} not found"));
    let task = store::task(c, caller.org(), id).await?.ok_or_else(unknown)?;
    let store = org_store::get_store(c, caller.org(), StoreId(task.store_id))
        .await?
        .filter(|s| caller.scope.covers(s))
        .ok_or_else(unknown)?;
    Ok((task, store))
}

/// Parses a task id: 5203 when absent, 5204 when not a valid id.
pub fn task_id(raw: Option<&str>) -> Result<i64, TaskError> {
    let raw = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| TaskError::new(Code::TaskIdMissing, "No task identifier passed (id)"))?;
    parse_number("task id", raw, Code::TaskIdInvalid)
}

/// Updates one task: attributes, new executors, entry statuses (each change logged) and
/// reminders, in one transaction. A caller without a store of its own must pass `store_id`
/// (5214). A staff caller changes only its own entries, unless it created the task.
#[tracing::instrument(skip_all, fields(org = caller.org().0))]
pub async fn update(db: &Db, caller: &Caller<'_>, f: &TaskFields) -> Result<TaskId, TaskError> {
    let org = caller.org();
    let now = now_millis();
    let id = task_id(f.id.as_deref())?;
    if caller.scope.store().is_none() && f.store_id.is_none() {
        return Err(TaskError::new(
            Code::TaskStoreIdRequired,
            "A user that is not a till must pass the store_id to update a task",
        ));
    }
    check_texts(f)?;
    let mut tx = db.begin_write().await?;
    let (task, store) = visible_task(&mut tx, caller, id).await?;
    if let Some(raw) = &f.store_id
        && parse_number("store_id", raw, Code::TaskIdInvalid)? != task.store_id
    {
        return Err(TaskError::new(
            Code::TaskIdInvalid,
            format!("Task {id} is not a task of store {raw}"),
        ));
    }
    let is_creator = caller.staff.is_none_or(|own| task.creator_staff_id == Some(own));
    let changes_task = f.title.is_some()
        || f.body.is_some()
        || f.task_type.is_some()
        || f.start_date.is_some()
        || f.end_date.is_some()
        || f.expiry_date.is_some()
        || f.action_type.is_some()
        || f.action_template.is_some()
        || f.tags.is_some()
        || f.local_id.is_some()
        || f.possible_statuses.is_some()
        || f.executable_by_ids.is_some()
        || f.execute_by_all.is_some()
        || !f.reminders.is_empty();
    if changes_task && !is_creator {
        return Err(TaskError::new(
            Code::TaskUpdateFailed,
            "Only the task's creator may change the task; an executor may change its own entry",
        ));
    }
    let tz = store_zone(&mut tx, org, &store).await?;
    let before = TaskValues::of(&task);
    let mut v = before.clone();
    if let Some(title) = &f.title {
        v.title = title.clone();
    }
    if let Some(body) = &f.body {
        v.body = body.clone();
    }
    if let Some(tags) = &f.tags {
        v.tags = tags.clone();
    }
    if let Some(local_id) = &f.local_id {
        v.local_id = Some(local_id.clone());
    }
    if let Some(kind) = &f.task_type {
        v.task_type = check_type(&mut tx, org, kind).await?;
    }
    if let Some(action) = &f.action_type {
        v.action_type = Some(action.to_ascii_lowercase());
    }
    if let Some(template) = &f.action_template {
        v.action_template = Some(template.clone());
    }
    let date = |field: &str, raw: &Option<String>| {
        raw.as_deref().map(|d| parse_local(field, d, tz, Code::TaskInvalidParameters)).transpose()
    };
    if let Some(start) = date("start_date", &f.start_date)? {
        v.start_at = start;
    }
    if let Some(end) = date("end_date", &f.end_date)? {
        v.end_at = end;
    }
    if let Some(expiry) = date("expiry_date", &f.expiry_date)? {
        v.expiry_at = Some(expiry);
    }
    v.expires_at = check_dates(v.start_at, v.end_at, v.expiry_at)?;
    if let Some(list) = &f.possible_statuses {
        v.possible_statuses = parse_possible(list)?.join(",");
    }
    let possible = split_possible(&v.possible_statuses);
    let statuses = Statuses::load(&mut tx, org).await?;
    let kind = match f.executable_by_type.as_deref() {
        Some(raw) => ExecutorType::parse(raw).ok_or_else(|| {
            TaskError::invalid(format!(
                "executable_by_type '{raw}': use associate, cashier or customer"
            ))
        })?,
        None => ExecutorType::parse(&task.executable_by_type).unwrap_or(ExecutorType::Associate),
    };
    if kind.key() != task.executable_by_type {
        return Err(TaskError::invalid("executable_by_type of a task cannot change"));
    }
    let existing = store::entries(&mut tx, org, id).await?;
    // New executors join with their initial status; those already on the task are kept.
    let mut added: Vec<i64> = Vec::new();
    if f.executable_by_ids.is_some() || f.execute_by_all == Some(true) {
        let all = f.execute_by_all.unwrap_or(false);
        let ids = f.executable_by_ids.as_deref().unwrap_or_default();
        let executors = resolve_executors(&mut tx, org, &store, kind, all, ids).await?;
        added = executors
            .into_iter()
            .filter(|e| !existing.iter().any(|x| x.executor_id == *e))
            .collect();
        if existing.len() + added.len() > EXECUTORS_MAX {
            return Err(TaskError::invalid(format!("At most {EXECUTORS_MAX} executors per task")));
        }
        v.execute_by_all = v.execute_by_all || all;
    }
    // Entry changes: each names an entry by id or executor and sets status and/or remarks.
    let mut moves: Vec<(EntryRow, String, InternalStatus, String)> = Vec::new();
    for change in &f.entries {
        let entry = find_entry(&mut tx, org, &existing, change).await?;
        if caller.staff.is_some()
            && !is_creator
            && !caller
                .staff
                .is_some_and(|own| entry.executor_id == own && entry.executor_type != "CUSTOMER")
        {
            return Err(TaskError::new(
                Code::TaskUpdateFailed,
                "A staff token may change only its own entry of a task it did not create",
            ));
        }
        let (status, internal) = match &change.status {
            Some(raw) => statuses.check(&possible, raw)?,
            None => (
                entry.status.clone(),
                InternalStatus::parse(&entry.internal_status).unwrap_or(InternalStatus::Open),
            ),
        };
        let remarks = change.remarks.clone().unwrap_or_default();
        check_text("remarks", &remarks, REMARKS_LENGTH_MAX)?;
        moves.push((entry, status, internal, remarks));
    }
    let plans: Vec<ReminderPlan> =
        f.reminders.iter().map(|r| plan_reminder(r, tz)).collect::<Result<_, _>>()?;
    // Everything is checked: write.
    store::update_task(&mut tx, org, id, &v, now).await?;
    if !added.is_empty() {
        let default = statuses.initial(&possible);
        add_entries(&mut tx, caller, id, kind, &added, &[], &default, now).await?;
    }
    for (entry, status, internal, remarks) in &moves {
        store::set_entry_status(
            &mut tx,
            org,
            entry.id,
            (status, internal.as_str()),
            remarks,
            caller.by(),
            now,
        )
        .await?;
        let changed = EntryRow {
            status: status.clone(),
            internal_status: internal.as_str().into(),
            remarks: remarks.clone(),
            ..entry.clone()
        };
        log_entry(&mut tx, caller, &changed, Some(&entry.status), now).await?;
    }
    apply_reminders(&mut tx, caller, id, &v, &plans, now).await?;
    cancel_if_closed(&mut tx, caller, id, now).await?;
    let executors = existing.len() + added.len();
    let (before, after) = (task_state(&before, existing.len()), task_state(&v, executors));
    let change = Change {
        entity_type: TASK_ENTITY,
        entity_id: id,
        action: "UPDATE",
        before: Some(before),
        after: Some(after.clone()),
    };
    audit::record(&mut tx, org, &caller.actor(), change).await?;
    let event = NewEvent {
        event_type: "task.updated",
        entity_type: TASK_ENTITY,
        entity_id: id,
        payload: json!({"taskId": id, "task": after, "statusChanges": moves.len(),
            "executorsAdded": added}),
    };
    events::raise(&mut tx, org, Some(caller.principal), event).await?;
    tx.commit().await?;
    Ok(TaskId(id))
}

/// The entry an update item names: by `id`, else by `executor_id` (a number, or a staff
/// username); 5205 when it is not an entry of the task.
async fn find_entry(
    c: &mut impl Connection,
    org: OrgId,
    entries: &[EntryRow],
    change: &EntryFields,
) -> Result<EntryRow, TaskError> {
    let found = if let Some(raw) = &change.id {
        let id = parse_number("entry id", raw, Code::TaskInvalidParameters)?;
        entries.iter().find(|e| e.id == id)
    } else if let Some(key) = &change.executor_id {
        let id = match key.trim().parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => find_staff(c, org, key).await?.map(|s| s.id),
        };
        entries.iter().find(|e| Some(e.executor_id) == id)
    } else {
        return Err(TaskError::invalid("entries.entry needs its id or executor_id"));
    };
    found.cloned().ok_or_else(|| TaskError::invalid("entries.entry names no entry of the task"))
}

// ---------------------------------------------------------------- reminders on their own

/// Creates, moves or cancels one reminder of a task (Create/Update Task Reminders).
#[tracing::instrument(skip_all, fields(org = caller.org().0))]
pub async fn save_reminder(
    db: &Db,
    caller: &Caller<'_>,
    r: &ReminderFields,
) -> Result<ReminderRow, TaskError> {
    let org = caller.org();
    let now = now_millis();
    let task_id = r
        .task_id
        .as_deref()
        .map(|raw| parse_number("task_id", raw, Code::TaskIdInvalid))
        .transpose()?
        .ok_or_else(|| TaskError::new(Code::TaskIdInvalid, "task_id is required"))?;
    let mut tx = db.begin_write().await?;
    let (task, store) = visible_task(&mut tx, caller, task_id).await?;
    if caller.staff.is_some_and(|own| task.creator_staff_id != Some(own)) {
        return Err(reminder_error("Only the task's creator may change its reminders"));
    }
    if task.expires_at <= now {
        return Err(reminder_error(format!("Task {task_id} has expired")));
    }
    let tz = store_zone(&mut tx, org, &store).await?;
    let plan = plan_reminder(r, tz)?;
    if matches!(plan, ReminderPlan::Create { .. }) && task.entry_count > 0 && task.open_entries == 0
    {
        return Err(reminder_error(format!("Task {task_id} is closed")));
    }
    let ids =
        apply_reminders(&mut tx, caller, task_id, &TaskValues::of(&task), &[plan], now).await?;
    store::touch_task(&mut tx, org, task_id, now).await?;
    let id = ids.first().copied().unwrap_or_default();
    let row = store::reminder(&mut tx, org, id)
        .await?
        .ok_or_else(|| reminder_error("Unable to add the reminder"))?;
    tx.commit().await?;
    Ok(row)
}

// ---------------------------------------------------------------- status mappings

/// Adds or replaces one status mapping of the org.
#[tracing::instrument(skip_all, fields(org = principal.org.0))]
pub async fn save_mapping(
    db: &Db,
    principal: &Principal,
    m: &MappingFields,
) -> Result<MappingRow, TaskError> {
    let org = principal.org;
    let status =
        m.status.as_deref().ok_or_else(|| TaskError::invalid("status is required")).and_then(
            |s| {
                normalise_status(s).map_err(|_| TaskError::invalid(format!("Invalid status '{s}'")))
            },
        )?;
    let internal =
        m.internal_status.as_deref().and_then(InternalStatus::parse).ok_or_else(|| {
            TaskError::new(
                Code::TaskEndBeforeStart,
                format!(
                    "Invalid internal status '{}': use OPEN, IN_PROGRESS or CLOSED",
                    m.internal_status.as_deref().unwrap_or_default()
                ),
            )
        })?;
    if let Some(own) = InternalStatus::parse(&status)
        && own != internal
    {
        return Err(TaskError::invalid(format!(
            "{status} is an internal status and maps to itself"
        )));
    }
    let description = m.description.clone().unwrap_or_default();
    check_text("description", &description, DESCRIPTION_LENGTH_MAX)?;
    let row = MappingRow { status, internal_status: internal.as_str().into(), description };
    let mut tx = db.begin_write().await?;
    let current = store::mappings(&mut tx, org).await?;
    let before = current.iter().find(|c| c.status == row.status).map(|c| {
        json!({"status": c.status, "internalStatus": c.internal_status, "description": c.description})
    });
    if before.is_none() && current.len() as i64 >= MAPPINGS_MAX {
        return Err(TaskError::new(
            Code::TaskSaveFailed,
            format!("An org holds at most {MAPPINGS_MAX} status mappings"),
        ));
    }
    store::upsert_mapping(&mut tx, org, &row, now_millis()).await?;
    let after = json!({"status": row.status, "internalStatus": row.internal_status,
        "description": row.description});
    let action = if before.is_some() { "UPDATE" } else { "CREATE" };
    // Mappings have no id of their own: the record is filed under the org.
    let change = Change {
        entity_type: MAPPING_ENTITY,
        entity_id: org.0,
        action,
        before,
        after: Some(after),
    };
    audit::record(&mut tx, org, &AuditActor::from(principal), change).await?;
    tx.commit().await?;
    Ok(row)
}

/// The org's mapping: the internal statuses (each standing for itself), then its own.
pub async fn mappings(db: &Db, org: OrgId) -> Result<Vec<MappingRow>, DbError> {
    let mut conn = db.read().await?;
    let mut out: Vec<MappingRow> = InternalStatus::ALL
        .iter()
        .map(|s| MappingRow {
            status: s.as_str().into(),
            internal_status: s.as_str().into(),
            description: "Internal status".into(),
        })
        .collect();
    out.extend(store::mappings(&mut conn, org).await?);
    Ok(out)
}

// ---------------------------------------------------------------- reads

/// A task with what reads show of it.
pub struct TaskView {
    pub task: TaskRow,
    pub store_code: String,
    pub tz: Tz,
    pub entries: Vec<EntryRow>,
    pub reminders: Vec<ReminderRow>,
    /// `OPEN`, `CLOSED` or `EXPIRED`.
    pub state: &'static str,
}

fn state_of(task: &TaskRow, now: i64) -> &'static str {
    if task.expires_at <= now {
        TASK_EXPIRED
    } else if task.entry_count > 0 && task.open_entries == 0 {
        TASK_CLOSED
    } else {
        TASK_OPEN
    }
}

async fn view(
    c: &mut impl Connection,
    org: OrgId,
    task: TaskRow,
    store: &Store,
    tz: Tz,
    with_entries: bool,
    with_reminders: bool,
) -> Result<TaskView, DbError> {
    let entries = if with_entries { store::entries(c, org, task.id).await? } else { Vec::new() };
    let reminders =
        if with_reminders { store::reminders_of_task(c, org, task.id).await? } else { Vec::new() };
    let state = state_of(&task, now_millis());
    Ok(TaskView { task, store_code: store.code.clone(), tz, entries, reminders, state })
}

/// One task the caller may see (5204 otherwise).
pub async fn get(
    db: &Db,
    caller: &Caller<'_>,
    id: i64,
    with_entries: bool,
    with_reminders: bool,
) -> Result<TaskView, TaskError> {
    let mut conn = db.read().await?;
    let (task, store) = visible_task(&mut conn, caller, id).await?;
    let tz = store_zone(&mut conn, caller.org(), &store).await?;
    Ok(view(&mut conn, caller.org(), task, &store, tz, with_entries, with_reminders).await?)
}

/// The stores (and zones) of a page of rows, loaded once each.
struct StoreCache {
    stores: HashMap<i64, (Store, Tz)>,
}

impl StoreCache {
    fn new() -> StoreCache {
        StoreCache { stores: HashMap::new() }
    }

    async fn get(
        &mut self,
        c: &mut impl Connection,
        org: OrgId,
        id: i64,
    ) -> Result<Option<(Store, Tz)>, DbError> {
        if let Some(found) = self.stores.get(&id) {
            return Ok(Some(found.clone()));
        }
        let Some(store) = org_store::get_store(c, org, StoreId(id)).await? else { return Ok(None) };
        let tz = store_zone(c, org, &store).await?;
        self.stores.insert(id, (store.clone(), tz));
        Ok(Some((store, tz)))
    }
}

/// The time zone a list's date filters are read in: the store's when the caller has one (or
/// names one), else the org's.
pub async fn list_zone(db: &Db, caller: &Caller<'_>, store: Option<i64>) -> Result<Tz, DbError> {
    let mut conn = db.read().await?;
    let org = caller.org();
    if let Some(id) = store.or(caller.scope.store())
        && let Some(store) = org_store::get_store(&mut conn, org, StoreId(id)).await?
    {
        return store_zone(&mut conn, org, &store).await;
    }
    let zone = org_store::get_org(&mut conn, org).await?.map(|o| o.timezone).unwrap_or_default();
    Ok(zone.parse().unwrap_or(chrono_tz::UTC))
}

/// A page of the tasks the caller's store(s) see, newest first, with the total.
pub async fn list(
    db: &Db,
    caller: &Caller<'_>,
    filter: &TaskFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TaskView>, i64), TaskError> {
    let org = caller.org();
    let mut conn = db.read().await?;
    let (rows, total) =
        store::list_tasks(&mut conn, org, caller.scope, filter, now_millis(), limit, offset)
            .await?;
    let mut cache = StoreCache::new();
    let mut out = Vec::with_capacity(rows.len());
    for task in rows {
        let Some((store, tz)) = cache.get(&mut conn, org, task.store_id).await? else { continue };
        out.push(view(&mut conn, org, task, &store, tz, true, false).await?);
    }
    Ok((out, total))
}

/// A reminder with its task's zone and its sends.
pub struct ReminderView {
    pub reminder: ReminderRow,
    pub tz: Tz,
    pub sends: Vec<SendRow>,
}

/// A page of the reminders of the tasks the caller's store(s) see, by time, with the total.
pub async fn reminders(
    db: &Db,
    caller: &Caller<'_>,
    filter: &ReminderFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ReminderView>, i64), TaskError> {
    let org = caller.org();
    let mut conn = db.read().await?;
    if let Some(task) = filter.task_id {
        visible_task(&mut conn, caller, task).await?;
    }
    let (rows, total) =
        store::list_reminders(&mut conn, org, caller.scope, filter, limit, offset).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut sends = store::sends_of(&mut conn, org, &ids).await?;
    let mut cache = StoreCache::new();
    let mut out = Vec::with_capacity(rows.len());
    for reminder in rows {
        let tz =
            cache.get(&mut conn, org, reminder.store_id).await?.map_or(chrono_tz::UTC, |s| s.1);
        let (mine, rest): (Vec<SendRow>, Vec<SendRow>) =
            sends.into_iter().partition(|s| s.reminder_id == reminder.id);
        sends = rest;
        out.push(ReminderView { reminder, tz, sends: mine });
    }
    Ok((out, total))
}

/// A page of a task's log (5204 for a task the caller cannot see), with the task's zone.
pub async fn logs(
    db: &Db,
    caller: &Caller<'_>,
    task_id: i64,
    filter: &LogFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<LogRow>, i64, Tz), TaskError> {
    let org = caller.org();
    let mut conn = db.read().await?;
    let (_, store) = visible_task(&mut conn, caller, task_id).await?;
    let tz = store_zone(&mut conn, org, &store).await?;
    let (rows, total) = store::logs(&mut conn, org, task_id, filter, limit, offset).await?;
    Ok((rows, total, tz))
}
