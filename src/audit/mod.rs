//! The audit log: one record for every write, with who did it, to what, and the state before
//! and after; and the audit log API that reads it (`routes`, `service`).

pub mod routes;
pub mod service;
pub mod store;

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/auditLog/get", get(routes::entity_log))
        .route("/v2/events/audit_logs", get(routes::event_log))
}

#[derive(OpenApi)]
#[openapi(paths(routes::entity_log, routes::event_log))]
pub struct ApiDoc;

use serde_json::Value;

use crate::auth::Principal;
use crate::db::{Connection, DbError};
use crate::org::model::OrgId;

/// Who made a change: a principal's identity, or the system (CLI, jobs).
#[derive(Clone, Debug)]
pub struct AuditActor {
    pub principal_type: &'static str,
    pub principal_id: Option<i64>,
    pub request_id: Option<String>,
}

impl AuditActor {
    pub fn system() -> Self {
        AuditActor { principal_type: "SYSTEM", principal_id: None, request_id: None }
    }
}

impl From<&Principal> for AuditActor {
    fn from(p: &Principal) -> Self {
        let (principal_type, id) = p.actor.audit_identity();
        AuditActor { principal_type, principal_id: Some(id), request_id: p.request_id.clone() }
    }
}

/// One change to record: call [`record`] in the same transaction as the change itself.
pub struct Change<'a> {
    pub entity_type: &'a str,
    pub entity_id: i64,
    pub action: &'a str,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub async fn record(
    c: &mut impl Connection,
    org: OrgId,
    actor: &AuditActor,
    change: Change<'_>,
) -> Result<(), DbError> {
    store::insert(c, org, actor, &change).await
}
