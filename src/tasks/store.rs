//! SQL for tasks, entries, logs, status mappings, reminders and reminder sends. Every function
//! takes the org id first, except [`due_reminders`], the scheduler's look across orgs.

use crate::db::{Connection, DbError, Exec};
use crate::dispatch;
use crate::org::model::OrgId;
use crate::staff::service::StoreScope;

use super::model::{REMINDER_CANCELLED, REMINDER_PENDING, REMINDER_SENT};

// ---------------------------------------------------------------- tasks

/// A task as stored, with its creator's username and its entry counts.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub store_id: i64,
    pub till_id: Option<i64>,
    pub local_id: Option<String>,
    pub title: String,
    pub body: String,
    pub task_type: String,
    pub action_type: Option<String>,
    pub action_template: Option<String>,
    pub creator_type: String,
    pub creator_staff_id: Option<i64>,
    pub creator_username: Option<String>,
    pub execute_by_all: bool,
    pub executable_by_type: String,
    pub possible_statuses: String,
    pub tags: String,
    pub start_at: i64,
    pub end_at: i64,
    pub expiry_at: Option<i64>,
    pub expires_at: i64,
    pub created_by_type: String,
    pub created_by_id: Option<i64>,
    pub created_by_name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub entry_count: i64,
    pub open_entries: i64,
}

const TASK_SELECT: &str = "SELECT t.id, t.store_id, t.till_id, t.local_id, t.title, t.body, \
    t.task_type, t.action_type, t.action_template, t.creator_type, t.creator_staff_id, \
    cs.username AS creator_username, t.execute_by_all, t.executable_by_type, \
    t.possible_statuses, t.tags, t.start_at, t.end_at, t.expiry_at, t.expires_at, \
    t.created_by_type, t.created_by_id, t.created_by_name, t.created_at, t.updated_at, \
    (SELECT COUNT(*) FROM task_entries e WHERE e.task_id = t.id) AS entry_count, \
    (SELECT COUNT(*) FROM task_entries e WHERE e.task_id = t.id \
     AND e.internal_status <> 'CLOSED') AS open_entries \
    FROM store_tasks t LEFT JOIN staff cs ON cs.id = t.creator_staff_id";

/// The columns a task write sets.
#[derive(Clone, Debug)]
pub struct TaskValues {
    pub store_id: i64,
    pub till_id: Option<i64>,
    pub local_id: Option<String>,
    pub title: String,
    pub body: String,
    pub task_type: String,
    pub action_type: Option<String>,
    pub action_template: Option<String>,
    pub creator_type: String,
    pub creator_staff_id: Option<i64>,
    pub execute_by_all: bool,
    pub executable_by_type: String,
    pub possible_statuses: String,
    pub tags: String,
    pub start_at: i64,
    pub end_at: i64,
    pub expiry_at: Option<i64>,
    pub expires_at: i64,
}

impl TaskValues {
    pub fn of(row: &TaskRow) -> TaskValues {
        TaskValues {
            store_id: row.store_id,
            till_id: row.till_id,
            local_id: row.local_id.clone(),
            title: row.title.clone(),
            body: row.body.clone(),
            task_type: row.task_type.clone(),
            action_type: row.action_type.clone(),
            action_template: row.action_template.clone(),
            creator_type: row.creator_type.clone(),
            creator_staff_id: row.creator_staff_id,
            execute_by_all: row.execute_by_all,
            executable_by_type: row.executable_by_type.clone(),
            possible_statuses: row.possible_statuses.clone(),
            tags: row.tags.clone(),
            start_at: row.start_at,
            end_at: row.end_at,
            expiry_at: row.expiry_at,
            expires_at: row.expires_at,
        }
    }
}

/// Who made a change: `(type, id, shown name)`.
pub type By<'a> = (&'a str, Option<i64>, &'a str);

pub async fn insert_task(
    c: &mut impl Connection,
    org: OrgId,
    v: &TaskValues,
    by: By<'_>,
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO store_tasks (org_id, store_id, till_id, local_id, title, body, task_type, \
         action_type, action_template, creator_type, creator_staff_id, execute_by_all, \
         executable_by_type, possible_statuses, tags, start_at, end_at, expiry_at, expires_at, \
         created_by_type, created_by_id, created_by_name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $23) RETURNING id"
    )
    .bind(org.0)
    .bind(v.store_id)
    .bind(v.till_id)
    .bind(&v.local_id)
    .bind(&v.title)
    .bind(&v.body)
    .bind(&v.task_type)
    .bind(&v.action_type)
    .bind(&v.action_template)
    .bind(&v.creator_type)
    .bind(v.creator_staff_id)
    .bind(v.execute_by_all)
    .bind(&v.executable_by_type)
    .bind(&v.possible_statuses)
    .bind(&v.tags)
    .bind(v.start_at)
    .bind(v.end_at)
    .bind(v.expiry_at)
    .bind(v.expires_at)
    .bind(by.0)
    .bind(by.1)
    .bind(by.2)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// Rewrites a task's attributes (its store, creator and author never change).
pub async fn update_task(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    v: &TaskValues,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE store_tasks SET local_id = $3, title = $4, body = $5, task_type = $6, \
         action_type = $7, action_template = $8, execute_by_all = $9, executable_by_type = $10, \
         possible_statuses = $11, tags = $12, start_at = $13, end_at = $14, expiry_at = $15, \
         expires_at = $16, updated_at = $17 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(&v.local_id)
    .bind(&v.title)
    .bind(&v.body)
    .bind(&v.task_type)
    .bind(&v.action_type)
    .bind(&v.action_template)
    .bind(v.execute_by_all)
    .bind(&v.executable_by_type)
    .bind(&v.possible_statuses)
    .bind(&v.tags)
    .bind(v.start_at)
    .bind(v.end_at)
    .bind(v.expiry_at)
    .bind(v.expires_at)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Marks a task changed (its entries or reminders moved).
pub async fn touch_task(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE store_tasks SET updated_at = $3 WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(id)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn task(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<TaskRow>, DbError> {
    let sql = format!("{TASK_SELECT} WHERE t.org_id = $1 AND t.id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, TaskRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// Filters of a task list; `None` does not filter.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub store_id: Option<i64>,
    /// `OPEN`, `CLOSED` or `EXPIRED` (see `model::TASK_OPEN`).
    pub state: Option<&'static str>,
    pub task_type: Option<String>,
    /// Tasks with an entry for this staff member.
    pub staff_executor: Option<i64>,
}

/// A page of the scope's tasks, newest first, with the total.
pub async fn list_tasks(
    c: &mut impl Connection,
    org: OrgId,
    scope: StoreScope,
    filter: &TaskFilter,
    now: i64,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TaskRow>, i64), DbError> {
    // $1 org, $2 now, $3 scope id, $4 store, $5 type, $6 executor; each filter that is off
    // compares its parameter with a value it always matches.
    let (scope_condition, scope_id) =
        scope.condition("t.store_id", 3).unwrap_or_else(|| ("$3 = $3".into(), 0));
    let state = match filter.state {
        Some("EXPIRED") => "t.expires_at <= $2",
        Some("CLOSED") => {
            "t.expires_at > $2 AND NOT EXISTS (SELECT 1 FROM task_entries e WHERE \
             e.task_id = t.id AND e.internal_status <> 'CLOSED')"
        }
        Some(_) => {
            "t.expires_at > $2 AND EXISTS (SELECT 1 FROM task_entries e WHERE \
             e.task_id = t.id AND e.internal_status <> 'CLOSED')"
        }
        None => "$2 = $2",
    };
    let where_clause = format!(
        "t.org_id = $1 AND {scope_condition} AND {state} AND ($4 = 0 OR t.store_id = $4) \
         AND ($5 = '' OR t.task_type = $5) AND ($6 = 0 OR EXISTS (SELECT 1 FROM task_entries x \
         WHERE x.task_id = t.id AND x.executor_type <> 'CUSTOMER' AND x.executor_id = $6))"
    );
    let sql = format!("{TASK_SELECT} WHERE {where_clause} ORDER BY t.id DESC LIMIT $7 OFFSET $8");
    let count_sql = format!("SELECT COUNT(*) FROM store_tasks t WHERE {where_clause}");
    let store = filter.store_id.unwrap_or(0);
    let kind = filter.task_type.clone().unwrap_or_default();
    let executor = filter.staff_executor.unwrap_or(0);
    let rows = dispatch!(c, |e| sqlx::query_as::<_, TaskRow>(&sql)
        .bind(org.0)
        .bind(now)
        .bind(scope_id)
        .bind(store)
        .bind(&kind)
        .bind(executor)
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?;
    let total = dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&count_sql)
        .bind(org.0)
        .bind(now)
        .bind(scope_id)
        .bind(store)
        .bind(&kind)
        .bind(executor)
        .fetch_one(e)
        .await)?;
    Ok((rows, total))
}

// ---------------------------------------------------------------- entries and logs

/// A task entry, with its executor's name (staff username or customer name).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EntryRow {
    pub id: i64,
    pub task_id: i64,
    pub executor_type: String,
    pub executor_id: i64,
    pub executor_name: Option<String>,
    pub status: String,
    pub internal_status: String,
    pub remarks: String,
    pub updated_by_name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const ENTRY_SELECT: &str = "SELECT e.id, e.task_id, e.executor_type, e.executor_id, \
    COALESCE(s.username, TRIM(cu.first_name || ' ' || cu.last_name)) AS executor_name, \
    e.status, e.internal_status, e.remarks, e.updated_by_name, e.created_at, e.updated_at \
    FROM task_entries e \
    LEFT JOIN staff s ON s.id = e.executor_id AND e.executor_type <> 'CUSTOMER' \
    LEFT JOIN customers cu ON cu.id = e.executor_id AND e.executor_type = 'CUSTOMER'";

/// A new entry's row.
pub struct NewEntry<'a> {
    pub executor_type: &'a str,
    pub executor_id: i64,
    pub status: &'a str,
    pub internal_status: &'a str,
    pub remarks: &'a str,
}

pub async fn insert_entry(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
    entry: &NewEntry<'_>,
    by: By<'_>,
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO task_entries (org_id, task_id, executor_type, executor_id, status, \
         internal_status, remarks, updated_by_type, updated_by_id, updated_by_name, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id"
    )
    .bind(org.0)
    .bind(task)
    .bind(entry.executor_type)
    .bind(entry.executor_id)
    .bind(entry.status)
    .bind(entry.internal_status)
    .bind(entry.remarks)
    .bind(by.0)
    .bind(by.1)
    .bind(by.2)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// The entries of a task, by id.
pub async fn entries(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
) -> Result<Vec<EntryRow>, DbError> {
    let sql = format!("{ENTRY_SELECT} WHERE e.org_id = $1 AND e.task_id = $2 ORDER BY e.id");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, EntryRow>(&sql)
        .bind(org.0)
        .bind(task)
        .fetch_all(e)
        .await)?)
}

/// Sets an entry's status and remarks.
pub async fn set_entry_status(
    c: &mut impl Connection,
    org: OrgId,
    entry: i64,
    status: (&str, &str),
    remarks: &str,
    by: By<'_>,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE task_entries SET status = $3, internal_status = $4, remarks = $5, \
         updated_by_type = $6, updated_by_id = $7, updated_by_name = $8, updated_at = $9 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(entry)
    .bind(status.0)
    .bind(status.1)
    .bind(remarks)
    .bind(by.0)
    .bind(by.1)
    .bind(by.2)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A log row: one status an entry took.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LogRow {
    pub id: i64,
    pub task_id: i64,
    pub entry_id: i64,
    pub executor_type: String,
    pub executor_id: i64,
    pub old_status: Option<String>,
    pub new_status: String,
    pub remarks: String,
    pub updated_by_type: String,
    pub updated_by_name: String,
    pub created_at: i64,
}

pub async fn insert_log(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
    entry: &EntryRow,
    old_status: Option<&str>,
    by: By<'_>,
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO task_logs (org_id, task_id, entry_id, executor_type, executor_id, \
         old_status, new_status, remarks, updated_by_type, updated_by_id, updated_by_name, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id"
    )
    .bind(org.0)
    .bind(task)
    .bind(entry.id)
    .bind(&entry.executor_type)
    .bind(entry.executor_id)
    .bind(old_status)
    .bind(&entry.status)
    .bind(&entry.remarks)
    .bind(by.0)
    .bind(by.1)
    .bind(by.2)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// Filters of a task's log.
#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub executor_id: Option<i64>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// A page of a task's log, oldest first, with the total.
pub async fn logs(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
    filter: &LogFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<LogRow>, i64), DbError> {
    let where_clause = "org_id = $1 AND task_id = $2 AND ($3 = 0 OR executor_id = $3) \
        AND created_at >= $4 AND created_at <= $5";
    let sql = format!(
        "SELECT id, task_id, entry_id, executor_type, executor_id, old_status, new_status, \
         remarks, updated_by_type, updated_by_name, created_at FROM task_logs \
         WHERE {where_clause} ORDER BY id LIMIT $6 OFFSET $7"
    );
    let count_sql = format!("SELECT COUNT(*) FROM task_logs WHERE {where_clause}");
    let executor = filter.executor_id.unwrap_or(0);
    let from = filter.from.unwrap_or(i64::MIN);
    let to = filter.to.unwrap_or(i64::MAX);
    let rows = dispatch!(c, |e| sqlx::query_as::<_, LogRow>(&sql)
        .bind(org.0)
        .bind(task)
        .bind(executor)
        .bind(from)
        .bind(to)
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?;
    let total = dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&count_sql)
        .bind(org.0)
        .bind(task)
        .bind(executor)
        .bind(from)
        .bind(to)
        .fetch_one(e)
        .await)?;
    Ok((rows, total))
}

// ---------------------------------------------------------------- status mappings

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MappingRow {
    pub status: String,
    pub internal_status: String,
    pub description: String,
}

/// The org's mappings, by status (at most [`super::model::MAPPINGS_MAX`]).
pub async fn mappings(c: &mut impl Connection, org: OrgId) -> Result<Vec<MappingRow>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, MappingRow>(
        "SELECT status, internal_status, description FROM task_status_mappings \
         WHERE org_id = $1 ORDER BY status LIMIT $2"
    )
    .bind(org.0)
    .bind(super::model::MAPPINGS_MAX)
    .fetch_all(e)
    .await)?)
}

/// Adds or replaces the mapping of `status`.
pub async fn upsert_mapping(
    c: &mut impl Connection,
    org: OrgId,
    m: &MappingRow,
    now: i64,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "INSERT INTO task_status_mappings (org_id, status, internal_status, description, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (org_id, status) DO UPDATE SET internal_status = excluded.internal_status, \
         description = excluded.description, updated_at = excluded.updated_at"
    )
    .bind(org.0)
    .bind(&m.status)
    .bind(&m.internal_status)
    .bind(&m.description)
    .bind(now)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

// ---------------------------------------------------------------- reminders

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReminderRow {
    pub id: i64,
    pub task_id: i64,
    pub store_id: i64,
    pub remind_at: i64,
    pub template: String,
    pub status: String,
    pub late: bool,
    pub fired_at: Option<i64>,
    pub cancel_reason: Option<String>,
    pub created_by_name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const REMINDER_SELECT: &str = "SELECT r.id, r.task_id, t.store_id, r.remind_at, r.template, \
    r.status, r.late, r.fired_at, r.cancel_reason, r.created_by_name, r.created_at, \
    r.updated_at FROM task_reminders r JOIN store_tasks t ON t.id = r.task_id";

pub async fn insert_reminder(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
    remind_at: i64,
    template: &str,
    by: By<'_>,
    now: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar(
        "INSERT INTO task_reminders (org_id, task_id, remind_at, template, status, \
         created_by_type, created_by_id, created_by_name, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id"
    )
    .bind(org.0)
    .bind(task)
    .bind(remind_at)
    .bind(template)
    .bind(REMINDER_PENDING)
    .bind(by.0)
    .bind(by.1)
    .bind(by.2)
    .bind(now)
    .fetch_one(e)
    .await)?)
}

/// Moves a pending reminder to a new time and template; false when it is no longer pending.
pub async fn update_reminder(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    remind_at: i64,
    template: &str,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "UPDATE task_reminders SET remind_at = $3, template = $4, updated_at = $5 \
         WHERE org_id = $1 AND id = $2 AND status = $6"
    )
    .bind(org.0)
    .bind(id)
    .bind(remind_at)
    .bind(template)
    .bind(now)
    .bind(REMINDER_PENDING)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected == 1)
}

/// Cancels a pending reminder; false when it is no longer pending.
pub async fn cancel_reminder(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    reason: &str,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "UPDATE task_reminders SET status = $3, cancel_reason = $4, updated_at = $5 \
         WHERE org_id = $1 AND id = $2 AND status = $6"
    )
    .bind(org.0)
    .bind(id)
    .bind(REMINDER_CANCELLED)
    .bind(reason)
    .bind(now)
    .bind(REMINDER_PENDING)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected == 1)
}

/// Cancels every pending reminder of a task; returns their ids.
pub async fn cancel_pending_of_task(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
    reason: &str,
    now: i64,
) -> Result<Vec<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "UPDATE task_reminders SET status = $3, cancel_reason = $4, updated_at = $5 \
         WHERE org_id = $1 AND task_id = $2 AND status = $6 RETURNING id"
    )
    .bind(org.0)
    .bind(task)
    .bind(REMINDER_CANCELLED)
    .bind(reason)
    .bind(now)
    .bind(REMINDER_PENDING)
    .fetch_all(e)
    .await)?)
}

pub async fn reminder(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<ReminderRow>, DbError> {
    let sql = format!("{REMINDER_SELECT} WHERE r.org_id = $1 AND r.id = $2");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ReminderRow>(&sql)
        .bind(org.0)
        .bind(id)
        .fetch_optional(e)
        .await)?)
}

/// A task's reminders, by time (at most [`super::model::REMINDERS_PER_TASK_MAX`]).
pub async fn reminders_of_task(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
) -> Result<Vec<ReminderRow>, DbError> {
    let sql = format!(
        "{REMINDER_SELECT} WHERE r.org_id = $1 AND r.task_id = $2 ORDER BY r.remind_at, r.id \
         LIMIT $3"
    );
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ReminderRow>(&sql)
        .bind(org.0)
        .bind(task)
        .bind(super::model::REMINDERS_PER_TASK_MAX)
        .fetch_all(e)
        .await)?)
}

pub async fn count_reminders(
    c: &mut impl Connection,
    org: OrgId,
    task: i64,
) -> Result<i64, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM task_reminders WHERE org_id = $1 AND task_id = $2"
    )
    .bind(org.0)
    .bind(task)
    .fetch_one(e)
    .await)?)
}

/// Filters of a reminder list.
#[derive(Clone, Debug, Default)]
pub struct ReminderFilter {
    pub task_id: Option<i64>,
    pub store_id: Option<i64>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub status: Option<&'static str>,
}

/// A page of the reminders of the scope's tasks, by time, with the total.
pub async fn list_reminders(
    c: &mut impl Connection,
    org: OrgId,
    scope: StoreScope,
    filter: &ReminderFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ReminderRow>, i64), DbError> {
    let (scope_condition, scope_id) =
        scope.condition("t.store_id", 2).unwrap_or_else(|| ("$2 = $2".into(), 0));
    let where_clause = format!(
        "r.org_id = $1 AND {scope_condition} AND ($3 = 0 OR r.task_id = $3) \
         AND ($4 = 0 OR t.store_id = $4) AND r.remind_at >= $5 AND r.remind_at <= $6 \
         AND ($7 = '' OR r.status = $7)"
    );
    let sql = format!(
        "{REMINDER_SELECT} WHERE {where_clause} ORDER BY r.remind_at, r.id LIMIT $8 OFFSET $9"
    );
    let count_sql = format!(
        "SELECT COUNT(*) FROM task_reminders r JOIN store_tasks t ON t.id = r.task_id \
         WHERE {where_clause}"
    );
    let task = filter.task_id.unwrap_or(0);
    let store = filter.store_id.unwrap_or(0);
    let from = filter.from.unwrap_or(i64::MIN);
    let to = filter.to.unwrap_or(i64::MAX);
    let status = filter.status.unwrap_or("");
    let rows = dispatch!(c, |e| sqlx::query_as::<_, ReminderRow>(&sql)
        .bind(org.0)
        .bind(scope_id)
        .bind(task)
        .bind(store)
        .bind(from)
        .bind(to)
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(e)
        .await)?;
    let total = dispatch!(c, |e| sqlx::query_scalar::<_, i64>(&count_sql)
        .bind(org.0)
        .bind(scope_id)
        .bind(task)
        .bind(store)
        .bind(from)
        .bind(to)
        .bind(status)
        .fetch_one(e)
        .await)?;
    Ok((rows, total))
}

// ---------------------------------------------------------------- firing reminders

/// Pending reminders that are due (their time has come, or their task has expired), oldest
/// first, across orgs: `(org, reminder)`.
pub async fn due_reminders(
    c: &mut impl Connection,
    now: i64,
    limit: i64,
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_as::<_, (i64, i64)>(
        "SELECT r.org_id, r.id FROM task_reminders r JOIN store_tasks t ON t.id = r.task_id \
         WHERE r.status = $2 AND (r.remind_at <= $1 OR t.expires_at <= $1) \
         ORDER BY r.remind_at, r.id LIMIT $3"
    )
    .bind(now)
    .bind(REMINDER_PENDING)
    .bind(limit)
    .fetch_all(e)
    .await)?)
}

/// The reminder if it is still pending, locked for this transaction (PostgreSQL: `FOR UPDATE
/// SKIP LOCKED`, so an instance firing it already makes the others pass it by; SQLite has one
/// writer).
pub async fn claim_pending_reminder(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<ReminderRow>, DbError> {
    let lock = match c.exec() {
        Exec::Sqlite(_) => "",
        Exec::Postgres(_) => " FOR UPDATE OF r SKIP LOCKED",
    };
    let sql =
        format!("{REMINDER_SELECT} WHERE r.org_id = $1 AND r.id = $2 AND r.status = $3{lock}");
    Ok(dispatch!(c, |e| sqlx::query_as::<_, ReminderRow>(&sql)
        .bind(org.0)
        .bind(id)
        .bind(REMINDER_PENDING)
        .fetch_optional(e)
        .await)?)
}

/// Marks a pending reminder sent; false when it was no longer pending.
pub async fn mark_sent(
    c: &mut impl Connection,
    org: OrgId,
    id: i64,
    late: bool,
    now: i64,
) -> Result<bool, DbError> {
    let affected = dispatch!(c, |e| sqlx::query(
        "UPDATE task_reminders SET status = $3, late = $4, fired_at = $5, updated_at = $5 \
         WHERE org_id = $1 AND id = $2 AND status = $6"
    )
    .bind(org.0)
    .bind(id)
    .bind(REMINDER_SENT)
    .bind(late)
    .bind(now)
    .bind(REMINDER_PENDING)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(affected == 1)
}

/// Records that a reminder goes to an entry's executor; `None` when it already went there
/// (the unique (reminder, entry) key).
pub async fn insert_send(
    c: &mut impl Connection,
    org: OrgId,
    reminder: i64,
    entry: &EntryRow,
    late: bool,
    now: i64,
) -> Result<Option<i64>, DbError> {
    Ok(dispatch!(c, |e| sqlx::query_scalar::<_, i64>(
        "INSERT INTO task_reminder_sends (org_id, reminder_id, entry_id, executor_type, \
         executor_id, status, late, created_at) VALUES ($1, $2, $3, $4, $5, 'PENDING', $6, $7) \
         ON CONFLICT (reminder_id, entry_id) DO NOTHING RETURNING id"
    )
    .bind(org.0)
    .bind(reminder)
    .bind(entry.id)
    .bind(&entry.executor_type)
    .bind(entry.executor_id)
    .bind(late)
    .bind(now)
    .fetch_optional(e)
    .await)?)
}

/// What became of one send.
pub struct SendOutcome<'a> {
    pub channel: Option<&'a str>,
    pub message_id: Option<i64>,
    pub status: &'a str,
    pub detail: &'a str,
}

pub async fn finish_send(
    c: &mut impl Connection,
    org: OrgId,
    send: i64,
    outcome: &SendOutcome<'_>,
) -> Result<(), DbError> {
    dispatch!(c, |e| sqlx::query(
        "UPDATE task_reminder_sends SET channel = $3, message_id = $4, status = $5, detail = $6 \
         WHERE org_id = $1 AND id = $2"
    )
    .bind(org.0)
    .bind(send)
    .bind(outcome.channel)
    .bind(outcome.message_id)
    .bind(outcome.status)
    .bind(outcome.detail)
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SendRow {
    pub reminder_id: i64,
    pub executor_type: String,
    pub executor_id: i64,
    pub channel: Option<String>,
    pub message_id: Option<i64>,
    pub status: String,
    pub detail: String,
    pub late: bool,
    pub created_at: i64,
}

/// The sends of some reminders, by id (one per executor of each).
pub async fn sends_of(
    c: &mut impl Connection,
    org: OrgId,
    reminders: &[i64],
) -> Result<Vec<SendRow>, DbError> {
    if reminders.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..reminders.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT reminder_id, executor_type, executor_id, channel, message_id, status, detail, \
         late, created_at FROM task_reminder_sends WHERE org_id = $1 AND reminder_id IN ({}) \
         ORDER BY id",
        placeholders.join(", ")
    );
    Ok(dispatch!(c, |e| {
        let mut q = sqlx::query_as::<_, SendRow>(&sql).bind(org.0);
        for id in reminders {
            q = q.bind(*id);
        }
        q.fetch_all(e).await
    })?)
}
