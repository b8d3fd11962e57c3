//! Task types: ids, internal statuses, executor kinds, the request forms read from the wire,
//! the limits and vocabularies, and `TaskError` (a Task code with its message).

use crate::auth::Actor;
use crate::db::DbError;
use crate::error::{ApiError, Code};

/// A task id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub i64);

/// Tasks, status mappings or reminders one v1.1 request may carry.
pub const ITEMS_PER_REQUEST_MAX: usize = 100;
/// Executors (entries) of one task: an `execute_by_all` task reaches at most this many.
pub const EXECUTORS_MAX: usize = 500;
/// Statuses one task may list in `possible_statuses`, and the longest status.
pub const POSSIBLE_STATUSES_MAX: usize = 20;
pub const STATUS_LENGTH_MAX: usize = 40;
/// Reminders one task may hold.
pub const REMINDERS_PER_TASK_MAX: i64 = 50;
/// Status mappings one org may hold.
pub const MAPPINGS_MAX: i64 = 100;
/// Longest text fields, in characters.
pub const TITLE_LENGTH_MAX: usize = 255;
pub const BODY_LENGTH_MAX: usize = 4_000;
pub const TAGS_LENGTH_MAX: usize = 2_000;
pub const LOCAL_ID_LENGTH_MAX: usize = 100;
pub const TEMPLATE_LENGTH_MAX: usize = 1_600;
pub const REMARKS_LENGTH_MAX: usize = 1_000;
pub const DESCRIPTION_LENGTH_MAX: usize = 255;
/// List paging (tasks, reminders, logs): default and largest page.
pub const LIST_LIMIT_DEFAULT: i64 = 50;
pub const LIST_LIMIT_MAX: i64 = 500;
/// A reminder that fires more than this after its time (the server was down, or busy) is
/// marked `late`.
pub const LATE_AFTER_MILLIS: i64 = 60_000;

/// The org config listing the task types it accepts (comma-separated); the default list
/// applies without it.
pub const TASK_TYPES_CONFIG: &str = "CONF_TASK_TYPES";
pub const TASK_TYPES_DEFAULT: [&str; 3] = ["MEMO", "CUSTOMER_TASK", "STORE_TASK"];
/// What an executor may be asked to do (`action.type`).
pub const ACTION_TYPES: [&str; 5] = ["sms", "email", "whatsapp", "call", "visit"];
/// Placeholders a reminder or action template may use.
pub const TEMPLATE_PLACEHOLDERS: [&str; 16] = [
    "name",
    "first_name",
    "last_name",
    "mobile",
    "email",
    "points",
    "title",
    "task_title",
    "task_body",
    "task_id",
    "store",
    "store_name",
    "store_code",
    "end_date",
    "expiry_date",
    "executor_id",
];

/// The platform's own statuses; every status a client uses stands for one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InternalStatus {
    Open,
    InProgress,
    Closed,
}

impl InternalStatus {
    pub const ALL: [InternalStatus; 3] =
        [InternalStatus::Open, InternalStatus::InProgress, InternalStatus::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            InternalStatus::Open => "OPEN",
            InternalStatus::InProgress => "IN_PROGRESS",
            InternalStatus::Closed => "CLOSED",
        }
    }

    pub fn parse(value: &str) -> Option<InternalStatus> {
        Self::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

/// Who executes a task entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecutorType {
    /// Any store associate (cashiers are associates too).
    Associate,
    /// Cashiers only.
    Cashier,
    /// A registered customer of the org.
    Customer,
}

impl ExecutorType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorType::Associate => "ASSOCIATE",
            ExecutorType::Cashier => "CASHIER",
            ExecutorType::Customer => "CUSTOMER",
        }
    }

    /// The wire name.
    pub fn key(self) -> &'static str {
        match self {
            ExecutorType::Associate => "associate",
            ExecutorType::Cashier => "cashier",
            ExecutorType::Customer => "customer",
        }
    }

    pub fn parse(value: &str) -> Option<ExecutorType> {
        [ExecutorType::Associate, ExecutorType::Cashier, ExecutorType::Customer]
            .into_iter()
            .find(|t| t.key().eq_ignore_ascii_case(value.trim()) || t.as_str() == value.trim())
    }

    pub fn is_staff(self) -> bool {
        self != ExecutorType::Customer
    }
}

/// A reminder's life.
pub const REMINDER_PENDING: &str = "PENDING";
pub const REMINDER_SENT: &str = "SENT";
pub const REMINDER_CANCELLED: &str = "CANCELLED";
pub const REMINDER_STATUSES: [&str; 3] = [REMINDER_PENDING, REMINDER_SENT, REMINDER_CANCELLED];
/// Why a reminder was cancelled.
pub const CANCELLED_TASK_CLOSED: &str = "TASK_CLOSED";
pub const CANCELLED_TASK_EXPIRED: &str = "TASK_EXPIRED";
pub const CANCELLED_BY_REQUEST: &str = "CANCELLED_BY_REQUEST";

/// A task's state as reads show it: `EXPIRED` after its expiry, else `CLOSED` when every entry
/// is closed, else `OPEN`.
pub const TASK_OPEN: &str = "OPEN";
pub const TASK_CLOSED: &str = "CLOSED";
pub const TASK_EXPIRED: &str = "EXPIRED";

/// The fields of one `task` item of Add Tasks or Update Tasks, as sent (text, trimmed; empty
/// means absent). Add requires some of them; update changes those present.
#[derive(Clone, Debug, Default)]
pub struct TaskFields {
    pub id: Option<String>,
    pub local_id: Option<String>,
    pub store_id: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub task_type: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub expiry_date: Option<String>,
    pub action_type: Option<String>,
    pub action_template: Option<String>,
    pub creator_type: Option<String>,
    pub creator_id: Option<String>,
    pub execute_by_all: Option<bool>,
    pub executable_by_type: Option<String>,
    pub executable_by_ids: Option<Vec<String>>,
    pub possible_statuses: Option<Vec<String>>,
    pub tags: Option<String>,
    pub reminders: Vec<ReminderFields>,
    pub entries: Vec<EntryFields>,
}

/// One reminder of a task item, or of Create/Update Task Reminders.
#[derive(Clone, Debug, Default)]
pub struct ReminderFields {
    pub id: Option<String>,
    pub task_id: Option<String>,
    /// `create: "false"` cancels the reminder named by `id`.
    pub create: bool,
    pub time: Option<String>,
    pub template: Option<String>,
}

/// One entry of a task item: an initial status (add) or a status change (update).
#[derive(Clone, Debug, Default)]
pub struct EntryFields {
    pub id: Option<String>,
    pub executor_id: Option<String>,
    pub status: Option<String>,
    pub remarks: Option<String>,
}

/// One status mapping item.
#[derive(Clone, Debug, Default)]
pub struct MappingFields {
    pub status: Option<String>,
    pub internal_status: Option<String>,
    pub description: Option<String>,
}

/// A refusal with its Task code (5201-5214), or a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{message}")]
    Coded { code: Code, message: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl TaskError {
    pub fn new(code: Code, message: impl Into<String>) -> TaskError {
        TaskError::Coded { code, message: message.into() }
    }

    /// 5205 with a message naming the parameter.
    pub fn invalid(message: impl Into<String>) -> TaskError {
        TaskError::new(Code::TaskInvalidParameters, message)
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::Coded { code, message } => ApiError::with_message(code, message),
            TaskError::Db(db) => ApiError::from(db),
        }
    }
}

impl From<crate::comms::CommsError> for TaskError {
    fn from(e: crate::comms::CommsError) -> Self {
        match e {
            crate::comms::CommsError::Db(db) => TaskError::Db(db),
            other => TaskError::invalid(other.to_string()),
        }
    }
}

/// A status as the org writes it: trimmed, upper case, 1 to 40 of letters, digits, `_`, `-`,
/// space.
pub fn normalise_status(raw: &str) -> Result<String, TaskError> {
    let status = raw.trim().to_ascii_uppercase();
    let ok = !status.is_empty()
        && status.chars().count() <= STATUS_LENGTH_MAX
        && status.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '));
    if ok {
        Ok(status)
    } else {
        Err(TaskError::new(Code::TaskInvalidStatus, format!("Invalid status passed: '{raw}'")))
    }
}

/// Checks a text's length and that it has no control characters but line breaks and tabs.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), TaskError> {
    if value.chars().count() > max
        || value.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(TaskError::invalid(format!("{field} must be at most {max} characters")));
    }
    Ok(())
}

/// Checks a template: length, and only known placeholders (so that it always renders).
pub fn check_template(field: &str, template: &str, code: Code) -> Result<(), TaskError> {
    if template.trim().is_empty() || template.chars().count() > TEMPLATE_LENGTH_MAX {
        return Err(TaskError::new(
            code,
            format!("{field} must be 1 to {TEMPLATE_LENGTH_MAX} characters"),
        ));
    }
    let unknown: Vec<String> = crate::comms::template::placeholders(template)
        .into_iter()
        .filter(|p| !TEMPLATE_PLACEHOLDERS.contains(&p.as_str()))
        .collect();
    if !unknown.is_empty() {
        return Err(TaskError::new(
            code,
            format!(
                "{field} uses unknown placeholder(s) {}; known: {}",
                unknown.join(", "),
                TEMPLATE_PLACEHOLDERS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// How a change's author is shown (`updated_by`, `created_by`): the staff username, the till
/// code, the OAuth client key, or `admin`.
pub fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::Till { code, .. } => code.clone(),
        Actor::OAuthClient { key, .. } => key.clone(),
        Actor::Admin { .. } => "admin".into(),
        Actor::Staff { username, .. } => username.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_upper_case_and_bounded() {
        assert_eq!(normalise_status(" in_progress ").unwrap(), "IN_PROGRESS");
        assert_eq!(normalise_status("ac").unwrap(), "AC");
        assert!(normalise_status("").is_err());
        assert!(normalise_status("a;b").is_err());
        assert_eq!(InternalStatus::parse("closed"), Some(InternalStatus::Closed));
        assert_eq!(InternalStatus::parse("AC"), None);
    }

    #[test]
    fn executor_types_read_wire_and_stored_names() {
        assert_eq!(ExecutorType::parse("Cashier"), Some(ExecutorType::Cashier));
        assert_eq!(ExecutorType::parse("CUSTOMER"), Some(ExecutorType::Customer));
        assert_eq!(ExecutorType::parse("robot"), None);
    }

    #[test]
    fn templates_use_known_placeholders_only() {
        assert!(
            check_template("t", "Hi {name}, {points} pts for {task_title}", Code::TaskSaveFailed)
                .is_ok()
        );
        let err = check_template("t", "Hi {nickname}", Code::TaskSaveFailed).unwrap_err();
        assert!(matches!(err, TaskError::Coded { code: Code::TaskSaveFailed, .. }));
        assert!(check_template("t", " ", Code::TaskSaveFailed).is_err());
    }
}
