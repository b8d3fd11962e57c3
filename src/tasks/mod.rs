//! Store tasks: tasks a store associate creates for associates, cashiers or customers, one
//! entry (status) per executor, the org's status mapping, the log of every status change, and
//! reminders that a scheduler fires at their local time, once per executor.
//!
//! # Layout
//! - [`model`]: ids, internal statuses, executor types, request forms, limits, [`model::TaskError`].
//! - [`store`]: the SQL of tasks, entries, logs, mappings, reminders and reminder sends.
//! - [`service`]: the rules of adding, updating and reading tasks, mappings and reminders.
//! - [`scheduler`]: firing due reminders exactly once per executor (`jobs::tasks` runs it).
//! - [`routes`]: the v1.1 Task APIs and `GET /v1.1/store/tasks`.

pub mod model;
pub mod routes;
pub mod scheduler;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.1/task/add", post(routes::add))
        .route("/v1.1/task/update", post(routes::update))
        .route("/v1.1/task/metadata", get(routes::metadata))
        .route("/v1.1/task/logs", get(routes::logs))
        .route("/v1.1/task/statusmapping", get(routes::get_mappings).post(routes::save_mappings))
        .route("/v1.1/task/reminder", get(routes::get_reminders).post(routes::save_reminders))
        .route("/v1.1/task/get", get(routes::get))
        .route("/v1.1/store/tasks", get(routes::store_tasks))
}

#[derive(OpenApi)]
#[openapi(paths(
    routes::add,
    routes::update,
    routes::metadata,
    routes::logs,
    routes::save_mappings,
    routes::get_mappings,
    routes::get_reminders,
    routes::save_reminders,
    routes::get,
    routes::store_tasks,
))]
pub struct ApiDoc;
