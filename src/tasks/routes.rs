//! Task wire shapes and handlers: the nine v1.1 Task APIs and `GET /v1.1/store/tasks`, in
//! JSON or XML (`format`), batch bodies under `root.<entity>[]` with per-item `item_status`.

use axum::extract::State;
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::IntoParams;

use super::model::{
    ACTION_TYPES, EntryFields, ExecutorType, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, MappingFields,
    REMINDER_STATUSES, ReminderFields, TASK_CLOSED, TASK_EXPIRED, TASK_OPEN, TEMPLATE_PLACEHOLDERS,
    TaskError, TaskFields,
};
use super::service::{self, Caller, ReminderView, TaskView, local_time, parse_local, task_id};
use super::store::{
    LogFilter, LogRow, MappingRow, ReminderFilter, ReminderRow, SendRow, TaskFilter,
};
use crate::app::AppState;
use crate::auth::{Level, Principal, Resource};
use crate::customers::routes_v1::{V1BatchBody, batch_items, one_or_many, text};
use crate::error::{ApiError, Code};
use crate::http::envelope::{V1Reply, item_status};
use crate::http::extract::{Query, V1Body};

// ---------------------------------------------------------------- reading items

fn yes_no(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

/// A comma-separated list (or a JSON/XML list) of ids or statuses.
fn list(item: &Value, key: &str) -> Option<Vec<String>> {
    match item.get(key)? {
        Value::Array(values) => Some(
            values
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        _ => text(item, key).map(|csv| {
            csv.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        }),
    }
}

/// A `"true"`/`"false"` leaf; absent stays absent.
fn boolean(item: &Value, key: &str) -> Option<bool> {
    text(item, key).map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
}

fn reminder_fields(item: &Value) -> ReminderFields {
    ReminderFields {
        id: text(item, "id"),
        task_id: text(item, "task_id"),
        create: boolean(item, "create").unwrap_or(true),
        time: text(item, "time"),
        template: text(item, "template"),
    }
}

fn task_fields(item: &Value) -> TaskFields {
    let action = item.get("action").filter(|a| a.is_object());
    let creator = item.get("creator").filter(|c| c.is_object());
    let mut reminders = one_or_many(item.get("reminder"));
    if let Some(wrapped) = item.get("reminders").filter(|r| r.is_object()) {
        reminders.extend(one_or_many(wrapped.get("reminder")));
    }
    let entries = one_or_many(item.get("entries").and_then(|e| e.get("entry")));
    TaskFields {
        id: text(item, "id"),
        local_id: text(item, "local_id"),
        store_id: text(item, "store_id"),
        title: text(item, "title"),
        body: text(item, "body"),
        task_type: text(item, "type"),
        start_date: text(item, "start_date"),
        end_date: text(item, "end_date"),
        expiry_date: text(item, "expiry_date"),
        action_type: action.and_then(|a| text(a, "type")),
        action_template: action.and_then(|a| text(a, "template")),
        creator_type: creator.and_then(|c| text(c, "type")),
        creator_id: creator.and_then(|c| text(c, "id")),
        execute_by_all: boolean(item, "execute_by_all"),
        executable_by_type: text(item, "executable_by_type"),
        executable_by_ids: list(item, "executable_by_ids"),
        possible_statuses: list(item, "possible_statuses"),
        tags: text(item, "tags"),
        reminders: reminders.iter().map(reminder_fields).collect(),
        entries: entries
            .iter()
            .map(|e| EntryFields {
                id: text(e, "id"),
                executor_id: text(e, "executor_id"),
                status: text(e, "status"),
                remarks: text(e, "remarks"),
            })
            .collect(),
    }
}

/// The fields of a failed item: what identifies it in the request.
fn echo(item: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for key in keys {
        if let Some(v) = text(item, key) {
            out.insert((*key).into(), json!(v));
        }
    }
    out
}

/// A failed item: its echo and the error's code. A storage failure is logged and shown as
/// `fallback` (5201 for adds, 5021 for updates, 5206 for mappings and reminders).
fn failed(mut fields: Map<String, Value>, error: TaskError, fallback: (Code, &str)) -> Value {
    let (code, message) = match error {
        TaskError::Coded { code, message } => (code, message),
        TaskError::Db(e) => {
            let api = ApiError::from(e);
            if api.code == Code::Unavailable {
                (api.code, api.message.into_owned())
            } else {
                (fallback.0, fallback.1.to_string())
            }
        }
    };
    fields.insert("item_status".into(), item_status(false, code.info().code, &message));
    Value::Object(fields)
}

fn ok_status(message: &str) -> Value {
    item_status(true, 5200, message)
}

// ---------------------------------------------------------------- rendering

fn entry_json(e: &super::store::EntryRow, tz: Tz) -> Value {
    json!({
        "id": e.id,
        "executor_type": e.executor_type.to_ascii_lowercase(),
        "executor_id": e.executor_id,
        "executor_name": e.executor_name.clone().unwrap_or_default(),
        "status": e.status,
        "internal_status": e.internal_status,
        "remarks": e.remarks,
        "updated_by": e.updated_by_name,
        "updated_on": local_time(e.updated_at, tz),
    })
}

fn reminder_json(r: &ReminderRow, tz: Tz) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), json!(r.id));
    out.insert("task_id".into(), json!(r.task_id));
    out.insert("time".into(), json!(local_time(r.remind_at, tz)));
    out.insert("template".into(), json!(r.template));
    out.insert("status".into(), json!(r.status));
    out.insert("late".into(), json!(yes_no(r.late)));
    out.insert("fired_on".into(), json!(r.fired_at.map(|t| local_time(t, tz)).unwrap_or_default()));
    out.insert("cancel_reason".into(), json!(r.cancel_reason.clone().unwrap_or_default()));
    out.insert("created_by".into(), json!(r.created_by_name));
    out.insert("created_on".into(), json!(local_time(r.created_at, tz)));
    out
}

fn send_json(s: &SendRow, tz: Tz) -> Value {
    json!({
        "executor_type": s.executor_type.to_ascii_lowercase(),
        "executor_id": s.executor_id,
        "channel": s.channel.clone().unwrap_or_default().to_ascii_lowercase(),
        "message_id": s.message_id,
        "status": s.status,
        "detail": s.detail,
        "late": yes_no(s.late),
        "sent_on": local_time(s.created_at, tz),
    })
}

fn task_json(v: &TaskView) -> Map<String, Value> {
    let t = &v.task;
    let tz = v.tz;
    let mut out = Map::new();
    out.insert("id".into(), json!(t.id));
    out.insert("local_id".into(), json!(t.local_id.clone().unwrap_or_default()));
    out.insert("title".into(), json!(t.title));
    out.insert("body".into(), json!(t.body));
    out.insert("type".into(), json!(t.task_type));
    out.insert("status".into(), json!(v.state));
    out.insert("store_id".into(), json!(t.store_id));
    out.insert("store_code".into(), json!(v.store_code));
    out.insert("start_date".into(), json!(local_time(t.start_at, tz)));
    out.insert("end_date".into(), json!(local_time(t.end_at, tz)));
    out.insert(
        "expiry_date".into(),
        json!(t.expiry_at.map(|e| local_time(e, tz)).unwrap_or_default()),
    );
    out.insert(
        "action".into(),
        json!({"type": t.action_type.clone().unwrap_or_default(),
            "template": t.action_template.clone().unwrap_or_default()}),
    );
    out.insert(
        "creator".into(),
        json!({"type": t.creator_type, "id": t.creator_username.clone().unwrap_or_default(),
            "staff_id": t.creator_staff_id}),
    );
    out.insert("execute_by_all".into(), json!(yes_no(t.execute_by_all)));
    out.insert("executable_by_type".into(), json!(t.executable_by_type));
    if !v.entries.is_empty() || t.entry_count == 0 {
        let ids: Vec<String> = v.entries.iter().map(|e| e.executor_id.to_string()).collect();
        out.insert("executable_by_ids".into(), json!(ids.join(",")));
    }
    out.insert("possible_statuses".into(), json!(t.possible_statuses));
    out.insert("tags".into(), json!(t.tags));
    out.insert("created_by".into(), json!(t.created_by_name));
    out.insert("created_on".into(), json!(local_time(t.created_at, tz)));
    out.insert("updated_on".into(), json!(local_time(t.updated_at, tz)));
    if !v.entries.is_empty() {
        let entries: Vec<Value> = v.entries.iter().map(|e| entry_json(e, tz)).collect();
        out.insert("entries".into(), json!({"entry": entries}));
    }
    if !v.reminders.is_empty() {
        let reminders: Vec<Value> =
            v.reminders.iter().map(|r| Value::Object(reminder_json(r, tz))).collect();
        out.insert("reminders".into(), json!({"reminder": reminders}));
    }
    out
}

fn log_json(l: &LogRow, tz: Tz) -> Value {
    json!({
        "id": l.id,
        "task_id": l.task_id,
        "entry_id": l.entry_id,
        "executor_type": l.executor_type.to_ascii_lowercase(),
        "executor_id": l.executor_id,
        "old_status": l.old_status.clone().unwrap_or_default(),
        "new_status": l.new_status,
        "updated_by": l.updated_by_name,
        "updated_on": local_time(l.created_at, tz),
        "remarks": l.remarks,
    })
}

fn mapping_json(m: &MappingRow) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("status".into(), json!(m.status));
    out.insert("internal_status".into(), json!(m.internal_status));
    out.insert("description".into(), json!(m.description));
    out
}

/// `limit` (1 to 500, default 50) and `offset` (not negative); 5205 otherwise.
fn paging(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(LIST_LIMIT_DEFAULT);
    let offset = offset.unwrap_or(0);
    if !(1..=LIST_LIMIT_MAX).contains(&limit) || offset < 0 {
        return Err(ApiError::with_message(
            Code::TaskInvalidParameters,
            format!("limit must be 1 to {LIST_LIMIT_MAX} and offset not negative"),
        ));
    }
    Ok((limit, offset))
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// An optional numeric query parameter; 5205 when it is not a number.
fn number(field: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    nonempty(value)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::with_message(
                    Code::TaskInvalidParameters,
                    format!("{field} must be a number"),
                )
            })
        })
        .transpose()
}

// ---------------------------------------------------------------- add and update

/// `POST /v1.1/task/add` — adds tasks (`root.task[]`) with one entry per executor and their
/// reminders; each item succeeds (5200) or fails (5201, 5205-5209, 5212-5214) on its own.
#[utoipa::path(post, path = "/v1.1/task/add", tag = "tasks-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All added (item code 5200)"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 5205 invalid, 5207 status, 5208 end before start, 5209 expiry before end, 5212 executor, 5213 customer or creator, 5214 store id, 5206 reminder"),
        (status = 400, description = "1060 more than 100 items")))]
pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Write)?;
    let items = batch_items(&body, "task", &["title"])?;
    let caller = service::caller(&state.db, &principal).await?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let fields = task_fields(item);
        let result = match service::add(&state.db, &caller, &fields).await {
            Ok(id) => service::get(&state.db, &caller, id.0, true, true).await,
            Err(e) => Err(e),
        };
        out.push(match result {
            Ok(view) => {
                let mut task = task_json(&view);
                task.insert("item_status".into(), ok_status("Task added successfully"));
                Value::Object(task)
            }
            Err(e) => failed(
                echo(item, &["id", "local_id", "title"]),
                e,
                (Code::TaskFailed, "Unable to add the task"),
            ),
        });
    }
    Ok(V1Reply::batch("tasks", "task", out))
}

/// `POST /v1.1/task/update` — updates tasks (`root.task[]`, `id` required): attributes, new
/// executors, entry statuses (`entries.entry[] {id | executor_id, status, remarks}`, each
/// change logged) and reminders. A caller that is not a till passes `store_id` (5214).
#[utoipa::path(post, path = "/v1.1/task/update", tag = "tasks-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All updated (item code 5200)"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 5021 not updated, 5203 no id, 5204 unknown id, 5205, 5207-5209, 5212-5214"),
        (status = 400, description = "1060 more than 100 items")))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Write)?;
    let items = batch_items(&body, "task", &["id"])?;
    let caller = service::caller(&state.db, &principal).await?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let fields = task_fields(item);
        let result = match service::update(&state.db, &caller, &fields).await {
            Ok(id) => service::get(&state.db, &caller, id.0, true, true).await,
            Err(e) => Err(e),
        };
        out.push(match result {
            Ok(view) => {
                let mut task = task_json(&view);
                task.insert("item_status".into(), ok_status("Task updated successfully"));
                Value::Object(task)
            }
            Err(e) => failed(
                echo(item, &["id", "local_id", "title"]),
                e,
                (Code::TaskUpdateFailed, "Unable to update the task"),
            ),
        });
    }
    Ok(V1Reply::batch("tasks", "task", out))
}

// ---------------------------------------------------------------- reads of one task

/// Query of `GET /v1.1/task/get`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct GetQuery {
    /// The task id (5203 when absent, 5204 when unknown).
    id: Option<String>,
    /// Include `entries` (default true).
    include_entries: Option<String>,
    /// Include `reminders` (default true).
    include_reminders: Option<String>,
}

fn flag_default(value: &Option<String>, default: bool) -> bool {
    nonempty(value).map_or(default, |v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
}

/// `GET /v1.1/task/get?id=` — one task with its entries and reminders.
#[utoipa::path(get, path = "/v1.1/task/get", tag = "tasks-v1.1", params(GetQuery),
    responses((status = 200, description = "tasks.task (item code 5200)"),
        (status = 400, description = "5203 no id, 5204 unknown or invisible task")))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<GetQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Read)?;
    let id = task_id(q.id.as_deref())?;
    let caller = service::caller(&state.db, &principal).await?;
    let view = service::get(
        &state.db,
        &caller,
        id,
        flag_default(&q.include_entries, true),
        flag_default(&q.include_reminders, true),
    )
    .await?;
    let mut task = task_json(&view);
    task.insert("item_status".into(), ok_status("Task fetched successfully"));
    Ok(V1Reply::batch("tasks", "task", vec![Value::Object(task)]))
}

/// Query of `GET /v1.1/task/logs`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogsQuery {
    /// The task id (also `task_id`).
    id: Option<String>,
    task_id: Option<String>,
    /// Changes of this executor only.
    executor_id: Option<String>,
    /// Changes at or after / at or before (`YYYY-MM-DD HH:MM:SS`, the store's zone).
    start_date: Option<String>,
    end_date: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /v1.1/task/logs?id=` — the task's status log: every entry's first status and each
/// change (old → new, by whom, when, remarks), oldest first.
#[utoipa::path(get, path = "/v1.1/task/logs", tag = "tasks-v1.1", params(LogsQuery),
    responses((status = 200, description = "logs {task_id, log[], total, limit, offset, item_status 5200 or 5211}"),
        (status = 400, description = "5203 no id, 5204 unknown task, 5205 bad filter")))]
pub async fn logs(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<LogsQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Read)?;
    let id = task_id(nonempty(&q.id).or(nonempty(&q.task_id)))?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let caller = service::caller(&state.db, &principal).await?;
    let view = service::get(&state.db, &caller, id, false, false).await?;
    let tz = view.tz;
    let window = |field: &str, v: &Option<String>| {
        nonempty(v).map(|d| parse_local(field, d, tz, Code::TaskInvalidParameters)).transpose()
    };
    let filter = LogFilter {
        executor_id: number("executor_id", &q.executor_id)?,
        from: window("start_date", &q.start_date)?,
        to: window("end_date", &q.end_date)?,
    };
    let (rows, total, tz) = service::logs(&state.db, &caller, id, &filter, limit, offset).await?;
    let logs: Vec<Value> = rows.iter().map(|l| log_json(l, tz)).collect();
    let status = if logs.is_empty() {
        item_status(false, 5211, "No logs found for the task")
    } else {
        ok_status("Task update log file fetched successfully")
    };
    V1Reply::ok(
        "logs",
        json!({"task_id": id, "log": logs, "total": total, "limit": limit, "offset": offset,
            "item_status": status}),
    )
}

// ---------------------------------------------------------------- metadata

/// `GET /v1.1/task/metadata` — the vocabularies of a task screen: task types (the org's
/// `CONF_TASK_TYPES`), executor types, action types, statuses (internal and mapped), reminder
/// statuses and template placeholders.
#[utoipa::path(get, path = "/v1.1/task/metadata", tag = "tasks-v1.1",
    responses((status = 200, description = "metadata {types, executable_by_types, action_types, statuses, status_mappings, reminder_statuses, placeholders, item_status 5200}")))]
pub async fn metadata(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Read)?;
    let meta = service::metadata(&state.db, principal.org).await.map_err(|e| {
        tracing::error!(error = %e, "task metadata");
        ApiError::with_message(Code::TaskFailed, "Unable to fetch the task metadata")
    })?;
    let executor_types: Vec<&str> =
        [ExecutorType::Cashier, ExecutorType::Associate, ExecutorType::Customer]
            .iter()
            .map(|t| t.key())
            .collect();
    let mappings: Vec<Value> =
        meta.mappings.iter().map(|m| Value::Object(mapping_json(m))).collect();
    V1Reply::ok(
        "metadata",
        json!({
            "types": meta.types,
            "executable_by_types": executor_types,
            "action_types": ACTION_TYPES,
            "statuses": meta.statuses,
            "status_mappings": {"status_mapping": mappings},
            "task_statuses": [TASK_OPEN, TASK_CLOSED, TASK_EXPIRED],
            "reminder_statuses": REMINDER_STATUSES,
            "placeholders": TEMPLATE_PLACEHOLDERS,
            "item_status": ok_status("Tasks meta data retrieved successfully"),
        }),
    )
}

// ---------------------------------------------------------------- status mappings

/// `POST /v1.1/task/statusmapping` — adds or replaces status mappings
/// (`root.status_mapping[] {status, internal_status, description}`); the internal status is
/// `OPEN`, `IN_PROGRESS` or `CLOSED` (5208 otherwise).
#[utoipa::path(post, path = "/v1.1/task/statusmapping", tag = "tasks-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All saved (item code 5200)"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 5205 invalid, 5206 not saved, 5208 invalid internal status")))]
pub async fn save_mappings(
    State(state): State<AppState>,
    principal: Principal,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Write)?;
    let items = batch_items(&body, "status_mapping", &["status"])?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let fields = MappingFields {
            status: text(item, "status"),
            internal_status: text(item, "internal_status"),
            description: text(item, "description"),
        };
        out.push(match service::save_mapping(&state.db, &principal, &fields).await {
            Ok(row) => {
                let mut m = mapping_json(&row);
                m.insert("item_status".into(), ok_status("Status mapping added successfully"));
                Value::Object(m)
            }
            Err(e) => failed(
                echo(item, &["status", "internal_status"]),
                e,
                (Code::TaskSaveFailed, "Unable to add the status mapping"),
            ),
        });
    }
    Ok(V1Reply::batch("status_mappings", "status_mapping", out))
}

/// `GET /v1.1/task/statusmapping` — the org's mapping: the internal statuses, then its own.
#[utoipa::path(get, path = "/v1.1/task/statusmapping", tag = "tasks-v1.1",
    responses((status = 200, description = "status_mappings.status_mapping[] {status, internal_status, description}")))]
pub async fn get_mappings(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Read)?;
    let rows = service::mappings(&state.db, principal.org).await?;
    let list: Vec<Value> = rows.iter().map(|m| Value::Object(mapping_json(m))).collect();
    V1Reply::ok("status_mappings", json!({"status_mapping": list}))
}

// ---------------------------------------------------------------- reminders

/// Query of `GET /v1.1/task/reminder` (every parameter optional).
#[derive(Debug, Deserialize, IntoParams)]
pub struct RemindersQuery {
    /// Reminders of this task only (5204 when unknown).
    task_id: Option<String>,
    /// Reminders of this store only (a caller without a store of its own).
    store_id: Option<String>,
    /// Reminder time window (`YYYY-MM-DD HH:MM:SS`, the store's zone; the org's for a caller
    /// without a store).
    start_date: Option<String>,
    end_date: Option<String>,
    /// `PENDING`, `SENT` or `CANCELLED`.
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn reminder_view_json(v: &ReminderView) -> Value {
    let mut out = reminder_json(&v.reminder, v.tz);
    let sends: Vec<Value> = v.sends.iter().map(|s| send_json(s, v.tz)).collect();
    out.insert("sends".into(), json!({"send": sends}));
    Value::Object(out)
}

/// `GET /v1.1/task/reminder` — the reminders of every task the caller's store sees (a bare
/// GET returns them all, by time, paged), each with its sends (executor, message, status).
#[utoipa::path(get, path = "/v1.1/task/reminder", tag = "tasks-v1.1", params(RemindersQuery),
    responses((status = 200, description = "reminders {reminder[], total, limit, offset, item_status 5200 or 5211}"),
        (status = 400, description = "5204 unknown task, 5205 bad filter")))]
pub async fn get_reminders(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<RemindersQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Read)?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let caller = service::caller(&state.db, &principal).await?;
    let task = nonempty(&q.task_id).map(|t| task_id(Some(t))).transpose()?;
    let store = number("store_id", &q.store_id)?;
    let status = match nonempty(&q.status) {
        Some(s) => {
            Some(REMINDER_STATUSES.iter().copied().find(|r| r.eq_ignore_ascii_case(s)).ok_or_else(
                || {
                    ApiError::with_message(
                        Code::TaskInvalidParameters,
                        "status must be PENDING, SENT or CANCELLED",
                    )
                },
            )?)
        }
        None => None,
    };
    let tz = service::list_zone(&state.db, &caller, store).await?;
    let window = |field: &str, v: &Option<String>| {
        nonempty(v).map(|d| parse_local(field, d, tz, Code::TaskInvalidParameters)).transpose()
    };
    let filter = ReminderFilter {
        task_id: task,
        store_id: store,
        from: window("start_date", &q.start_date)?,
        to: window("end_date", &q.end_date)?,
        status,
    };
    let (rows, total) = service::reminders(&state.db, &caller, &filter, limit, offset).await?;
    let list: Vec<Value> = rows.iter().map(reminder_view_json).collect();
    let status = if list.is_empty() {
        item_status(false, 5211, "No reminders found")
    } else {
        ok_status("Task reminders retrieved successfully")
    };
    V1Reply::ok(
        "reminders",
        json!({"reminder": list, "total": total, "limit": limit, "offset": offset,
            "item_status": status}),
    )
}

/// `POST /v1.1/task/reminder` — creates reminders (`root.reminder[] {task_id, time,
/// template}`), moves them (with their `id`) or cancels them (`id`, `create: "false"`).
#[utoipa::path(post, path = "/v1.1/task/reminder", tag = "tasks-v1.1", request_body = V1BatchBody,
    responses((status = 200, description = "All saved (item code 5200)"), (status = 201, description = "Some failed"),
        (status = 500, description = "All failed: 5204 bad task id, 5205 invalid, 5206 not saved (time outside the task, already sent, task closed or expired)")))]
pub async fn save_reminders(
    State(state): State<AppState>,
    principal: Principal,
    V1Body(body): V1Body<Value>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Write)?;
    let items = batch_items(&body, "reminder", &["task_id"])?;
    let caller = service::caller(&state.db, &principal).await?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let fields = reminder_fields(item);
        out.push(match save_one_reminder(&state, &caller, &fields).await {
            Ok(mut reminder) => {
                reminder
                    .insert("item_status".into(), ok_status("Task reminder added successfully"));
                Value::Object(reminder)
            }
            Err(e) => failed(
                echo(item, &["id", "task_id", "time"]),
                e,
                (Code::TaskSaveFailed, "Unable to add the task reminder"),
            ),
        });
    }
    Ok(V1Reply::batch("reminders", "reminder", out))
}

async fn save_one_reminder(
    state: &AppState,
    caller: &Caller<'_>,
    fields: &ReminderFields,
) -> Result<Map<String, Value>, TaskError> {
    let row = service::save_reminder(&state.db, caller, fields).await?;
    let tz = service::list_zone(&state.db, caller, Some(row.store_id)).await?;
    Ok(reminder_json(&row, tz))
}

// ---------------------------------------------------------------- store tasks

/// Query of `GET /v1.1/store/tasks`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StoreTasksQuery {
    /// The store (a caller without a store of its own; default: all its stores).
    store_id: Option<String>,
    /// `OPEN`, `CLOSED` or `EXPIRED`.
    status: Option<String>,
    /// A task type.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Tasks with an entry for this associate (staff id).
    executor_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /v1.1/store/tasks` — the tasks of the calling store, newest first, with their entries.
#[utoipa::path(get, path = "/v1.1/store/tasks", tag = "tasks-v1.1", params(StoreTasksQuery),
    responses((status = 200, description = "tasks {task[], total, limit, offset, item_status 5200 or 5211}"),
        (status = 400, description = "5205 bad filter")))]
pub async fn store_tasks(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<StoreTasksQuery>,
) -> Result<V1Reply, ApiError> {
    principal.require(Resource::Task, Level::Read)?;
    let (limit, offset) = paging(q.limit, q.offset)?;
    let state_filter = match nonempty(&q.status) {
        Some(s) => Some(
            [TASK_OPEN, TASK_CLOSED, TASK_EXPIRED]
                .into_iter()
                .find(|t| t.eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    ApiError::with_message(
                        Code::TaskInvalidParameters,
                        "status must be OPEN, CLOSED or EXPIRED",
                    )
                })?,
        ),
        None => None,
    };
    let caller = service::caller(&state.db, &principal).await?;
    let filter = TaskFilter {
        store_id: number("store_id", &q.store_id)?,
        state: state_filter,
        task_type: nonempty(&q.kind).map(str::to_ascii_uppercase),
        staff_executor: number("executor_id", &q.executor_id)?,
    };
    let (views, total) = service::list(&state.db, &caller, &filter, limit, offset).await?;
    let tasks: Vec<Value> = views.iter().map(|v| Value::Object(task_json(v))).collect();
    let status = if tasks.is_empty() {
        item_status(false, 5211, "No tasks found")
    } else {
        ok_status("Tasks retrieved successfully")
    };
    V1Reply::ok(
        "tasks",
        json!({"task": tasks, "total": total, "limit": limit, "offset": offset,
            "item_status": status}),
    )
}
